#include "admin/admin_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/base/decimal.h"

namespace stanzad::admin {
namespace {

constexpr size_t kRequestBytesMax = 1 << 20;  // an import chunk (cmd/bulk_commands.h)
constexpr size_t kResponseBytesMax = 16 * 1024 * 1024;
// stanzactl's side, which may block: longer than a cluster request may take
// (ClusterNode::kRequestTimeoutMs, 10 s), so that it hears how a change ended.
constexpr int kIoTimeoutSeconds = 15;
// While accept() fails for want of descriptors, the listener stays readable;
// polling it then would spin the control thread, so it waits this long.
constexpr uint64_t kAcceptPauseMs = 100;

std::string ErrnoText(int error) { return std::strerror(error); }

absl::Status Errno(std::string_view what, int error) {
  return absl::UnavailableError(Concat(what, ": ", ErrnoText(error)));
}

void SetTimeouts(int fd) {
  timeval timeout{kIoTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
}

bool WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads until `done(buffer)` or EOF or the limit. False on error/timeout/limit.
template <typename Done>
bool ReadUntil(int fd, size_t limit, std::string* buffer, Done done) {
  char chunk[4096];
  while (!done(*buffer)) {
    const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    buffer->append(chunk, static_cast<size_t>(n));
    if (buffer->size() > limit) return false;
  }
  return true;
}

// Reads one "word <number>\n" line at *at.
bool ReadLine(std::string_view bytes, size_t* at, std::string_view* line) {
  const size_t end = bytes.find('\n', *at);
  if (end == std::string_view::npos) return false;
  *line = bytes.substr(*at, end - *at);
  *at = end + 1;
  return true;
}

// An argument's length or an exit code: at most 9 digits, so a longer line is malformed
// even with leading zeros.
std::optional<size_t> ParseNumber(std::string_view text) {
  if (text.size() > 9) return std::nullopt;
  return ParseDecimal<size_t>(text);
}

absl::StatusOr<sockaddr_un> SocketAddress(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        Concat("admin socket path too long (", std::to_string(path.size()),
               " bytes, at most 107): ", path, "; use a shorter --state_dir"));
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

}  // namespace

std::string EncodeRequest(const AdminRequest& request) {
  std::string out = Concat("stanzactl 1\njson ", request.json ? "1" : "0", "\n");
  for (const std::string& arg : request.args) {
    out.append(Concat("arg ", std::to_string(arg.size()), "\n", arg, "\n"));
  }
  out.append("end\n");
  return out;
}

absl::StatusOr<std::optional<AdminRequest>> DecodePartialRequest(std::string_view bytes) {
  size_t at = 0;
  std::string_view line;
  if (!ReadLine(bytes, &at, &line)) return std::nullopt;
  if (line != "stanzactl 1") {
    return absl::InvalidArgumentError("not a stanzactl request (version mismatch?)");
  }
  AdminRequest request;
  if (!ReadLine(bytes, &at, &line)) return std::nullopt;
  if (line != "json 0" && line != "json 1") {
    return absl::InvalidArgumentError("malformed request: json flag");
  }
  request.json = line == "json 1";
  while (true) {
    if (!ReadLine(bytes, &at, &line)) return std::nullopt;
    if (line == "end") return request;
    const std::optional<size_t> length =
        line.starts_with("arg ") ? ParseNumber(line.substr(4)) : std::nullopt;
    if (!length || *length > kRequestBytesMax) {
      return absl::InvalidArgumentError("malformed request: argument");
    }
    if (at + *length + 1 > bytes.size()) return std::nullopt;
    if (bytes[at + *length] != '\n')
      return absl::InvalidArgumentError("malformed request: argument");
    request.args.emplace_back(bytes.substr(at, *length));
    at += *length + 1;
    if (request.args.size() > 64) return absl::InvalidArgumentError("too many arguments");
  }
}

absl::StatusOr<AdminRequest> DecodeRequest(std::string_view bytes) {
  absl::StatusOr<std::optional<AdminRequest>> request = DecodePartialRequest(bytes);
  if (!request.ok()) return request.status();
  if (!request->has_value()) return absl::InvalidArgumentError("truncated request");
  return std::move(**request);
}

std::string EncodeResponse(const AdminResponse& response) {
  return Concat("exit ", std::to_string(response.exit_code), "\n", response.output);
}

absl::StatusOr<AdminResponse> DecodeResponse(std::string_view bytes) {
  size_t at = 0;
  std::string_view line;
  std::optional<size_t> code;
  if (ReadLine(bytes, &at, &line) && line.starts_with("exit ")) code = ParseNumber(line.substr(5));
  if (!code || *code > 255) return absl::InternalError("malformed response from stanzad");
  return AdminResponse{static_cast<int>(*code), std::string(bytes.substr(at))};
}

std::string AdminSocketPath(std::string_view state_dir) {
  std::string path(state_dir);
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return Concat(path, "/stanzad.sock");
}

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Listen(const std::string& path) {
  absl::StatusOr<sockaddr_un> address = SocketAddress(path);
  if (!address.ok()) return address.status();
  // A socket file that nobody answers on was left by a crash: replace it.
  // One that answers belongs to a running daemon: refuse.
  const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    const bool live =
        connect(probe, reinterpret_cast<const sockaddr*>(&*address), sizeof(*address)) == 0;
    close(probe);
    if (live) {
      return absl::AlreadyExistsError(
          Concat("another stanzad is already running with this state dir (it answers on ", path,
                 "); stop it first or use another --state_dir"));
    }
  }
  unlink(path.c_str());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Errno("cannot create the admin socket", errno);
  // Created 0600 from the start: no window in which others could connect.
  const mode_t old_mask = umask(0177);
  const int bound = bind(fd, reinterpret_cast<const sockaddr*>(&*address), sizeof(*address));
  const int bind_error = errno;
  umask(old_mask);
  if (bound != 0) {
    close(fd);
    return Errno(Concat("cannot bind the admin socket ", path), bind_error);
  }
  if (listen(fd, static_cast<int>(kPendingClientsMax)) != 0) {
    const int error = errno;
    close(fd);
    return Errno("cannot listen on the admin socket", error);
  }
  return std::unique_ptr<AdminServer>(new AdminServer(fd, path));
}

struct AdminServer::Reading {
  int fd = -1;  // -1 once handed on
  PeerCredentials peer;
  std::string received;  // at most kRequestBytesMax
  uint64_t deadline_ms = 0;
};

struct AdminServer::Outbox {
  struct Answering {
    int fd = -1;
    std::string bytes;
    size_t sent = 0;
    uint64_t deadline_ms = 0;
  };

  ~Outbox() {
    for (const Answering& client : clients) close(client.fd);
  }

  // Sends what fits now and returns; the rest is sent from HandlePoll when the
  // server is still there and has room, else the client is closed. Takes `fd`.
  static void Answer(const std::weak_ptr<Outbox>& outbox, int fd, std::string bytes) {
    Answering client{fd, std::move(bytes)};
    if (!Send(client)) {
      close(fd);
      return;
    }
    const std::shared_ptr<Outbox> alive = outbox.lock();
    if (alive == nullptr || alive->clients.size() >= kAnsweringClientsMax) {
      close(fd);  // the client gets a truncated response, which it reports
      return;
    }
    client.deadline_ms = alive->now_ms + kResponseTimeoutMs;
    alive->clients.push_back(std::move(client));
  }

  // Writes without waiting: true while bytes are left for a later turn.
  static bool Send(Answering& client) {
    while (client.sent < client.bytes.size()) {
      const ssize_t n = send(client.fd, client.bytes.data() + client.sent,
                             client.bytes.size() - client.sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n <= 0) return false;  // the client went away
      client.sent += static_cast<size_t>(n);
    }
    return false;
  }

  uint64_t now_ms = 0;             // of the last HandlePoll: the clock for deadlines set by replies
  std::vector<Answering> clients;  // at most kAnsweringClientsMax
};

// The accepted client of one request: answered when the reply is sent, closed
// when the last Reply holding it is gone unsent.
struct AdminServer::Replying {
  int fd = -1;
  std::weak_ptr<Outbox> outbox;
  ~Replying() {
    if (fd >= 0) close(fd);
  }
  void Send(const AdminResponse& response) {
    if (fd < 0) return;
    Outbox::Answer(outbox, std::exchange(fd, -1), EncodeResponse(response));
  }
};

AdminServer::AdminServer(int fd, std::string path)
    : fd_(fd), path_(std::move(path)), outbox_(std::make_shared<Outbox>()) {
  reading_.reserve(kPendingClientsMax);
}

AdminServer::~AdminServer() {
  for (const Reading& client : reading_) {
    if (client.fd >= 0) close(client.fd);
  }
  close(fd_);
  unlink(path_.c_str());
}

size_t AdminServer::pending_clients() const { return reading_.size(); }

void AdminServer::AppendPollFds(std::vector<pollfd>* fds) {
  listener_polled_ = outbox_->now_ms >= accept_paused_until_ms_;
  fds->push_back({listener_polled_ ? fd_ : -1, POLLIN, 0});
  for (const Reading& client : reading_) fds->push_back({client.fd, POLLIN, 0});
  for (const Outbox::Answering& client : outbox_->clients) {
    fds->push_back({client.fd, POLLOUT, 0});
  }
  reading_polled_ = reading_.size();
  answering_polled_ = outbox_->clients.size();
}

void AdminServer::HandlePoll(const std::vector<pollfd>& fds, size_t first, uint64_t now_ms,
                             const AsyncHandler& handler) {
  CHECK_LE(first + 1 + reading_polled_ + answering_polled_, fds.size());
  outbox_->now_ms = now_ms;
  const bool listener_readable = listener_polled_ && (fds[first].revents & POLLIN) != 0;
  size_t at = first + 1;
  // Clients whose request is arriving: those polled are reading_[0, reading_polled_).
  struct Ready {
    int fd;
    PeerCredentials peer;
    AdminRequest request;
  };
  std::vector<Ready> ready;
  for (size_t i = 0; i < reading_.size(); ++i) {
    Reading& client = reading_[i];
    if (i < reading_polled_ && fds[at + i].revents != 0) {
      if (std::optional<AdminRequest> request = Receive(client)) {
        ready.push_back({std::exchange(client.fd, -1), client.peer, std::move(*request)});
      }
    }
    if (client.fd >= 0 && now_ms >= client.deadline_ms) {
      Outbox::Answer(outbox_, std::exchange(client.fd, -1),
                     EncodeResponse({2, "error: request incomplete: not sent within " +
                                            std::to_string(kRequestTimeoutMs / 1000) + " s\n"}));
    }
  }
  std::erase_if(reading_, [](const Reading& client) { return client.fd < 0; });
  at += reading_polled_;
  // Responses still being sent: outbox_->clients[0, answering_polled_); replies
  // since AppendPollFds were added after those.
  std::vector<Outbox::Answering>& answering = outbox_->clients;
  for (size_t i = 0; i < answering.size(); ++i) {
    Outbox::Answering& client = answering[i];
    bool more = true;
    if (i < answering_polled_ && fds[at + i].revents != 0) more = Outbox::Send(client);
    if (!more || now_ms >= client.deadline_ms) {
      close(client.fd);
      client.fd = -1;
    }
  }
  std::erase_if(answering, [](const Outbox::Answering& client) { return client.fd < 0; });
  reading_polled_ = answering_polled_ = 0;
  listener_polled_ = false;
  if (listener_readable) AcceptAll(now_ms);
  // Last, so that a handler that replies at once finds the server consistent.
  for (Ready& client : ready) {
    auto replying = std::make_shared<Replying>();
    replying->fd = client.fd;
    replying->outbox = outbox_;
    handler(client.request, client.peer,
            [replying](const AdminResponse& response) { replying->Send(response); });
  }
}

void AdminServer::AcceptAll(uint64_t now_ms) {
  // Bounded so that a flood of connections cannot keep the control thread.
  for (size_t accepted = 0; accepted <= kPendingClientsMax; ++accepted) {
    const int client = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (client < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        accept_paused_until_ms_ = now_ms + kAcceptPauseMs;
      }
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    if (reading_.size() >= kPendingClientsMax) {
      close(client);  // full: closed at once rather than left waiting in the backlog
      continue;
    }
    ucred credentials{};
    socklen_t length = sizeof(credentials);
    if (getsockopt(client, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
      Outbox::Answer(outbox_, client,
                     EncodeResponse({1, "error: cannot read the client's credentials\n"}));
      continue;
    }
    if (credentials.uid != 0 && credentials.uid != geteuid()) {
      Outbox::Answer(
          outbox_, client,
          EncodeResponse(
              {1, Concat("error: permission denied: user ", std::to_string(credentials.uid),
                         " may not administer this stanzad; run as root or as user ",
                         std::to_string(geteuid()), "\n")}));
      continue;
    }
    reading_.push_back({client,
                        {credentials.pid, credentials.uid, credentials.gid},
                        {},
                        now_ms + kRequestTimeoutMs});
  }
}

std::optional<AdminRequest> AdminServer::Receive(Reading& client) {
  char chunk[4096];
  const size_t room = kRequestBytesMax - client.received.size();
  const ssize_t n = recv(client.fd, chunk, std::min(sizeof(chunk), room), 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return std::nullopt;
    close(std::exchange(client.fd, -1));
    return std::nullopt;
  }
  if (n > 0) client.received.append(chunk, static_cast<size_t>(n));
  // Every request ends so; parsing only then keeps a trickle of bytes linear.
  const bool may_be_complete = client.received.ends_with("\nend\n");
  if (n > 0 && !may_be_complete && client.received.size() < kRequestBytesMax) return std::nullopt;
  absl::StatusOr<std::optional<AdminRequest>> request = DecodePartialRequest(client.received);
  if (request.ok() && request->has_value()) return std::move(**request);
  std::string error;
  if (!request.ok()) {
    error = std::string(request.status().message());
  } else if (client.received.size() >= kRequestBytesMax) {
    error = Concat("request larger than ", std::to_string(kRequestBytesMax / 1024), " KiB");
  } else if (n > 0) {
    return std::nullopt;  // an argument ends with "\nend": more to come
  } else {
    error = "request incomplete";  // the client stopped sending
  }
  Outbox::Answer(outbox_, std::exchange(client.fd, -1),
                 EncodeResponse({2, Concat("error: ", error, "\n")}));
  return std::nullopt;
}

void AdminServer::ServeOne(int timeout_ms, const Handler& handler) {
  const auto now_ms = [] {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
  };
  const uint64_t deadline_ms = now_ms() + static_cast<uint64_t>(std::max(timeout_ms, 0));
  bool served = false;
  std::vector<pollfd> fds;
  for (uint64_t now = now_ms(); now < deadline_ms; now = now_ms()) {
    if (served && outbox_->clients.empty()) return;
    fds.clear();
    AppendPollFds(&fds);
    poll(fds.data(), fds.size(), static_cast<int>(std::min<uint64_t>(deadline_ms - now, 100)));
    HandlePoll(fds, 0, now_ms(),
               [&](const AdminRequest& request, const PeerCredentials& peer, Reply reply) {
                 served = true;
                 reply(handler(request, peer));
               });
  }
}

absl::StatusOr<AdminResponse> SendAdminRequest(const std::string& path,
                                               const AdminRequest& request) {
  absl::StatusOr<sockaddr_un> address = SocketAddress(path);
  if (!address.ok()) return address.status();
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("cannot create a socket", errno);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&*address), sizeof(*address)) != 0) {
    const int error = errno;
    close(fd);
    if (error == ENOENT || error == ECONNREFUSED) {
      return absl::UnavailableError(Concat("stanzad is not running (nothing answers on ", path,
                                           "); start it with: stanzad --state_dir=<dir>"));
    }
    if (error == EACCES) {
      return absl::PermissionDeniedError(
          Concat("permission denied on ", path, ": run stanzactl as root or as stanzad's user"));
    }
    return Errno(Concat("cannot connect to ", path), error);
  }
  SetTimeouts(fd);
  timeval wait{kReplyWaitSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
  std::string bytes;
  if (!WriteAll(fd, EncodeRequest(request)) ||
      !ReadUntil(fd, kResponseBytesMax, &bytes, [](const std::string&) { return false; })) {
    close(fd);
    return absl::UnavailableError("stanzad did not answer in time (is it overloaded or stuck?)");
  }
  close(fd);
  return DecodeResponse(bytes);
}

}  // namespace stanzad::admin
