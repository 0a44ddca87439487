#include "admin/admin_socket.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace stanzad::admin {
namespace {

using ::testing::HasSubstr;

TEST(AdminProtocolTest, RequestRoundTripsAnyBytes) {
  AdminRequest request{{"callbridge", "add-secret", "cb1", std::string("a\nb\0c end\n", 10)}, true};
  absl::StatusOr<AdminRequest> decoded = DecodeRequest(EncodeRequest(request));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, request);
}

TEST(AdminProtocolTest, MalformedRequestsAreRefused) {
  for (const char* bytes :
       {"", "hello\n", "stanzactl 1\njson 2\nend\n", "stanzactl 1\njson 0\narg 99\nshort\nend\n",
        "stanzactl 1\njson 0\narg x\nend\n", "stanzactl 1\njson 0\n"}) {
    EXPECT_FALSE(DecodeRequest(bytes).ok()) << bytes;
  }
}

TEST(AdminProtocolTest, PartialRequestIsCompleteOnlyAtItsEnd) {
  // Arguments that look like the end of a request must not end it early.
  const AdminRequest request{{"user", "add", "x\nend\n", "end", "", "a\nend"}, true};
  const std::string bytes = EncodeRequest(request);
  for (size_t split = 0; split < bytes.size(); ++split) {
    absl::StatusOr<std::optional<AdminRequest>> partial =
        DecodePartialRequest(std::string_view(bytes).substr(0, split));
    ASSERT_TRUE(partial.ok()) << split << ": " << partial.status();
    EXPECT_FALSE(partial->has_value()) << split;
  }
  absl::StatusOr<std::optional<AdminRequest>> whole = DecodePartialRequest(bytes);
  ASSERT_TRUE(whole.ok() && whole->has_value());
  EXPECT_EQ(**whole, request);
}

TEST(AdminProtocolTest, PartialRequestIsRefusedOnceALineIsWrong) {
  for (const char* bytes :
       {"hello\n", "stanzactl 1\njson 2\n", "stanzactl 1\njson 0\narg x\n",
        "stanzactl 1\njson 0\narg 1048577\n", "stanzactl 1\njson 0\narg 2\nabc"}) {
    EXPECT_FALSE(DecodePartialRequest(bytes).ok()) << bytes;
  }
}

TEST(AdminProtocolTest, LengthsAndExitCodesAreDigitsOnly) {
  for (const char* bytes :
       {"stanzactl 1\njson 0\narg +1\nx\nend\n", "stanzactl 1\njson 0\narg  1\nx\nend\n",
        "stanzactl 1\njson 0\narg 1 \nx\nend\n", "stanzactl 1\njson 0\narg -1\nx\nend\n",
        "stanzactl 1\njson 0\narg \n\nend\n", "stanzactl 1\njson 0\narg 0000000001\nx\nend\n"}) {
    EXPECT_FALSE(DecodeRequest(bytes).ok()) << bytes;
  }
  absl::StatusOr<AdminRequest> padded =
      DecodeRequest("stanzactl 1\njson 0\narg 000000001\nx\nend\n");
  ASSERT_TRUE(padded.ok()) << padded.status();
  EXPECT_EQ(padded->args, std::vector<std::string>{"x"});
  for (const char* bytes : {"exit +1\n", "exit  1\n", "exit 1 \n", "exit -1\n", "exit 256\n",
                            "exit \n", "exit 18446744073709551617\n"}) {
    EXPECT_FALSE(DecodeResponse(bytes).ok()) << bytes;
  }
  absl::StatusOr<AdminResponse> code = DecodeResponse("exit 255\nout");
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(code->exit_code, 255);
}

TEST(AdminProtocolTest, ResponseRoundTrip) {
  AdminResponse response{1, "error: unknown call bridge cb9\n"};
  absl::StatusOr<AdminResponse> decoded = DecodeResponse(EncodeResponse(response));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, response);
  EXPECT_FALSE(DecodeResponse("garbage").ok());
}

class AdminSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/stanzad-admin-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(AdminSocketTest, ServesARequestAndChecksPermissions) {
  absl::StatusOr<std::unique_ptr<AdminServer>> server = AdminServer::Listen(AdminSocketPath(dir_));
  ASSERT_TRUE(server.ok()) << server.status();
  struct stat info {};
  ASSERT_EQ(stat((*server)->path().c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  std::atomic<bool> served = false;
  std::thread serving([&] {
    (*server)->ServeOne(5000, [&](const AdminRequest& request, const PeerCredentials& peer) {
      served = true;
      EXPECT_EQ(peer.uid, geteuid());
      return AdminResponse{request.args.size() == 2 ? 0 : 2,
                           "got " + request.args[0] + "/" + request.args[1] + "\n"};
    });
  });
  absl::StatusOr<AdminResponse> response =
      SendAdminRequest(AdminSocketPath(dir_), AdminRequest{{"callbridge", "list"}, false});
  serving.join();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(served);
  EXPECT_EQ(response->exit_code, 0);
  EXPECT_EQ(response->output, "got callbridge/list\n");
}

// One turn of a control loop like stanzad's: poll at most 10 ms, then handle.
void Turn(AdminServer& server, uint64_t now_ms, const AdminServer::AsyncHandler& handler) {
  std::vector<pollfd> fds;
  fds.push_back({-1, POLLIN, 0});  // the caller's own descriptors come first
  server.AppendPollFds(&fds);
  poll(fds.data(), fds.size(), 10);
  server.HandlePoll(fds, 1, now_ms, handler);
}

// Turns until `done()`, for at most 5 s of real time.
template <typename Done>
bool TurnUntil(AdminServer& server, uint64_t now_ms, const AdminServer::AsyncHandler& handler,
               Done done) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    Turn(server, now_ms, handler);
  }
  return true;
}

void NoRequestExpected(const AdminRequest& request, const PeerCredentials&, AdminServer::Reply) {
  ADD_FAILURE() << "unexpected request " << request.args.size();
}

int Connect(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  return fd;
}

// What the daemon sent `fd` until it closed it, waiting at most 5 s.
std::string ReadToEof(int fd) {
  std::string bytes;
  char chunk[4096];
  pollfd readable{fd, POLLIN, 0};
  while (poll(&readable, 1, 5000) == 1) {
    const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return bytes;
    bytes.append(chunk, static_cast<size_t>(n));
  }
  ADD_FAILURE() << "no EOF within 5 s";
  return bytes;
}

// A request from another thread, served by the test's own loop.
class RequestInFlight {
 public:
  RequestInFlight(const std::string& path, AdminRequest request)
      : thread_([this, path, request] {
          response_ = SendAdminRequest(path, request);
          done_ = true;
        }) {}
  ~RequestInFlight() { Join(); }
  bool done() const { return done_; }
  const absl::StatusOr<AdminResponse>& response() {
    Join();
    return response_;
  }

 private:
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  std::atomic<bool> done_ = false;
  absl::StatusOr<AdminResponse> response_ = absl::UnknownError("not yet");
  std::thread thread_;
};

AdminServer::AsyncHandler Echo(int* handled) {
  return [handled](const AdminRequest& request, const PeerCredentials&, AdminServer::Reply reply) {
    ++*handled;
    reply({0, "got " + request.args.at(0) + "\n"});
  };
}

TEST_F(AdminSocketTest, SilentAndHalfSentClientsDoNotDelayAnother) {
  absl::StatusOr<std::unique_ptr<AdminServer>> server = AdminServer::Listen(AdminSocketPath(dir_));
  ASSERT_TRUE(server.ok()) << server.status();
  AdminServer& admin = **server;
  const int silent = Connect(admin.path());
  const int half = Connect(admin.path());
  const std::string half_request = "stanzactl 1\njson 0\narg 6\nsta";
  ASSERT_EQ(send(half, half_request.data(), half_request.size(), 0),
            static_cast<ssize_t>(half_request.size()));
  // The clock stands still: the first two are never dropped, so the request is
  // served only if nothing waits for them.
  const uint64_t now_ms = 1000;
  ASSERT_TRUE(
      TurnUntil(admin, now_ms, NoRequestExpected, [&] { return admin.pending_clients() == 2; }));
  int handled = 0;
  const auto start = std::chrono::steady_clock::now();
  RequestInFlight status(admin.path(), AdminRequest{{"status"}, false});
  EXPECT_TRUE(TurnUntil(admin, now_ms, Echo(&handled), [&] { return status.done(); }));
  ASSERT_TRUE(status.response().ok()) << status.response().status();
  EXPECT_EQ(status.response()->output, "got status\n");
  EXPECT_EQ(handled, 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_EQ(admin.pending_clients(), 2u);
  close(silent);
  close(half);
}

TEST_F(AdminSocketTest, ClientThatDoesNotFinishItsRequestIsDroppedAtTheDeadline) {
  absl::StatusOr<std::unique_ptr<AdminServer>> server = AdminServer::Listen(AdminSocketPath(dir_));
  ASSERT_TRUE(server.ok()) << server.status();
  AdminServer& admin = **server;
  const int trickling = Connect(admin.path());
  const uint64_t accepted_ms = 1000;
  ASSERT_TRUE(TurnUntil(admin, accepted_ms, NoRequestExpected,
                        [&] { return admin.pending_clients() == 1; }));
  // Each byte arrives in time for a per-read timeout, never for the request's.
  for (const char byte : std::string("stanzactl 1\n")) {
    ASSERT_EQ(send(trickling, &byte, 1, 0), 1);
    Turn(admin, accepted_ms + kRequestTimeoutMs - 1, NoRequestExpected);
  }
  EXPECT_EQ(admin.pending_clients(), 1u);
  Turn(admin, accepted_ms + kRequestTimeoutMs, NoRequestExpected);
  EXPECT_EQ(admin.pending_clients(), 0u);
  EXPECT_THAT(ReadToEof(trickling), ::testing::StartsWith("exit 2\nerror: request incomplete"));
  close(trickling);
}

TEST_F(AdminSocketTest, ClientBeyondThePendingLimitIsClosedAtOnce) {
  absl::StatusOr<std::unique_ptr<AdminServer>> server = AdminServer::Listen(AdminSocketPath(dir_));
  ASSERT_TRUE(server.ok()) << server.status();
  AdminServer& admin = **server;
  std::vector<int> silent;
  for (size_t i = 0; i < kPendingClientsMax; ++i) {
    silent.push_back(Connect(admin.path()));
    ASSERT_TRUE(
        TurnUntil(admin, 0, NoRequestExpected, [&] { return admin.pending_clients() == i + 1; }));
  }
  const int extra = Connect(admin.path());
  Turn(admin, 0, NoRequestExpected);
  EXPECT_EQ(ReadToEof(extra), "");
  close(extra);
  EXPECT_EQ(admin.pending_clients(), kPendingClientsMax);
  // One that goes away makes room for a request.
  close(silent.back());
  silent.pop_back();
  ASSERT_TRUE(TurnUntil(admin, 0, NoRequestExpected,
                        [&] { return admin.pending_clients() < kPendingClientsMax; }));
  int handled = 0;
  RequestInFlight status(admin.path(), AdminRequest{{"status"}, false});
  EXPECT_TRUE(TurnUntil(admin, 0, Echo(&handled), [&] { return status.done(); }));
  ASSERT_TRUE(status.response().ok()) << status.response().status();
  EXPECT_EQ(status.response()->output, "got status\n");
  for (const int fd : silent) close(fd);
}

TEST_F(AdminSocketTest, LateAndLargeRepliesAreSentWithoutBlocking) {
  absl::StatusOr<std::unique_ptr<AdminServer>> server = AdminServer::Listen(AdminSocketPath(dir_));
  ASSERT_TRUE(server.ok()) << server.status();
  AdminServer& admin = **server;
  std::map<std::string, AdminServer::Reply> replies;  // by the request's word
  auto keep = [&](const AdminRequest& request, const PeerCredentials&, AdminServer::Reply reply) {
    replies[request.args.at(0)] = std::move(reply);
  };
  RequestInFlight large(admin.path(), AdminRequest{{"large"}, false});
  RequestInFlight forgotten(admin.path(), AdminRequest{{"forgotten"}, false});
  ASSERT_TRUE(TurnUntil(admin, 0, keep, [&] { return replies.size() == 2; }));
  // Far more than a socket buffer: the rest goes out as the client reads.
  const std::string output(4 << 20, 'x');
  replies.at("large")({0, output});
  replies.clear();  // the reply to "forgotten" is never called
  EXPECT_TRUE(
      TurnUntil(admin, 0, NoRequestExpected, [&] { return large.done() && forgotten.done(); }));
  ASSERT_TRUE(large.response().ok()) << large.response().status();
  EXPECT_EQ(large.response()->output.size(), output.size());
  EXPECT_FALSE(forgotten.response().ok());  // closed without an answer
}

TEST_F(AdminSocketTest, SecondDaemonOnTheSameStateDirIsRefused) {
  absl::StatusOr<std::unique_ptr<AdminServer>> first = AdminServer::Listen(AdminSocketPath(dir_));
  ASSERT_TRUE(first.ok());
  absl::StatusOr<std::unique_ptr<AdminServer>> second = AdminServer::Listen(AdminSocketPath(dir_));
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("already running"));
}

TEST_F(AdminSocketTest, NoDaemonGivesAClearError) {
  absl::StatusOr<AdminResponse> response =
      SendAdminRequest(AdminSocketPath(dir_), AdminRequest{{"status"}, false});
  ASSERT_FALSE(response.ok());
  EXPECT_THAT(std::string(response.status().message()), HasSubstr("stanzad is not running"));
}

TEST_F(AdminSocketTest, StaleSocketFromACrashIsReplaced) {
  // A crashed daemon leaves its socket file behind with nobody listening.
  const std::string path = AdminSocketPath(dir_);
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  close(fd);
  ASSERT_TRUE(std::filesystem::exists(path));
  EXPECT_TRUE(AdminServer::Listen(path).ok());
}

}  // namespace
}  // namespace stanzad::admin
