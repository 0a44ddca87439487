#include "cmd/admin/admin_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/base/concat.h"

namespace stanzad::admin {
namespace {

constexpr size_t kRequestBytesMax = 64 * 1024;
constexpr size_t kResponseBytesMax = 16 * 1024 * 1024;
constexpr int kIoTimeoutSeconds = 5;

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

bool ParseNumber(std::string_view text, size_t* value) {
  if (text.empty() || text.size() > 9) return false;
  *value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    *value = *value * 10 + static_cast<size_t>(c - '0');
  }
  return true;
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

absl::StatusOr<AdminRequest> DecodeRequest(std::string_view bytes) {
  size_t at = 0;
  std::string_view line;
  if (!ReadLine(bytes, &at, &line) || line != "stanzactl 1") {
    return absl::InvalidArgumentError("not a stanzactl request (version mismatch?)");
  }
  AdminRequest request;
  if (!ReadLine(bytes, &at, &line) || (line != "json 0" && line != "json 1")) {
    return absl::InvalidArgumentError("malformed request: json flag");
  }
  request.json = line == "json 1";
  while (true) {
    if (!ReadLine(bytes, &at, &line)) return absl::InvalidArgumentError("truncated request");
    if (line == "end") return request;
    size_t length = 0;
    if (!line.starts_with("arg ") || !ParseNumber(line.substr(4), &length) ||
        at + length + 1 > bytes.size() || bytes[at + length] != '\n') {
      return absl::InvalidArgumentError("malformed request: argument");
    }
    request.args.emplace_back(bytes.substr(at, length));
    at += length + 1;
    if (request.args.size() > 64) return absl::InvalidArgumentError("too many arguments");
  }
}

std::string EncodeResponse(const AdminResponse& response) {
  return Concat("exit ", std::to_string(response.exit_code), "\n", response.output);
}

absl::StatusOr<AdminResponse> DecodeResponse(std::string_view bytes) {
  size_t at = 0;
  std::string_view line;
  size_t code = 0;
  if (!ReadLine(bytes, &at, &line) || !line.starts_with("exit ") ||
      !ParseNumber(line.substr(5), &code) || code > 255) {
    return absl::InternalError("malformed response from stanzad");
  }
  return AdminResponse{static_cast<int>(code), std::string(bytes.substr(at))};
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
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
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
  if (listen(fd, 16) != 0) {
    const int error = errno;
    close(fd);
    return Errno("cannot listen on the admin socket", error);
  }
  return std::unique_ptr<AdminServer>(new AdminServer(fd, path));
}

AdminServer::~AdminServer() {
  close(fd_);
  unlink(path_.c_str());
}

void AdminServer::ServeOne(int timeout_ms, const Handler& handler) {
  pollfd waiting{fd_, POLLIN, 0};
  if (poll(&waiting, 1, timeout_ms) <= 0) return;
  AcceptOne([&](const AdminRequest& request, const PeerCredentials& peer, Reply reply) {
    reply(handler(request, peer));
  });
}

namespace {

// The accepted client of one request: closed when the reply is sent or when the
// last Reply holding it is gone.
struct PendingClient {
  int fd = -1;
  ~PendingClient() {
    if (fd >= 0) close(fd);
  }
  void Send(const AdminResponse& response) {
    if (fd < 0) return;
    WriteAll(fd, EncodeResponse(response));
    close(fd);
    fd = -1;
  }
};

}  // namespace

void AdminServer::AcceptOne(const AsyncHandler& handler) {
  const int client = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (client < 0) return;
  SetTimeouts(client);
  auto pending = std::make_shared<PendingClient>();
  pending->fd = client;
  Reply reply = [pending](const AdminResponse& response) { pending->Send(response); };
  ucred credentials{};
  socklen_t length = sizeof(credentials);
  if (getsockopt(client, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    return reply({1, "error: cannot read the client's credentials\n"});
  }
  if (credentials.uid != 0 && credentials.uid != geteuid()) {
    return reply({1, Concat("error: permission denied: user ", std::to_string(credentials.uid),
                            " may not administer this stanzad; run as root or as user ",
                            std::to_string(geteuid()), "\n")});
  }
  std::string bytes;
  const bool complete = ReadUntil(client, kRequestBytesMax, &bytes,
                                  [](const std::string& b) { return b.ends_with("\nend\n"); });
  absl::StatusOr<AdminRequest> request =
      complete ? DecodeRequest(bytes) : absl::InvalidArgumentError("request incomplete");
  if (!request.ok()) {
    return reply({2, Concat("error: ", std::string(request.status().message()), "\n")});
  }
  handler(*request, {credentials.pid, credentials.uid, credentials.gid}, std::move(reply));
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
