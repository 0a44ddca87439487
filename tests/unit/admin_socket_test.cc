#include "cmd/admin/admin_socket.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

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
