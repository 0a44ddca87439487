// The admin channel between stanzactl and the local stanzad: a Unix stream
// socket in the state dir (mode 0600), one request and one response per
// connection, peers checked by their credentials (SO_PEERCRED: root or the
// daemon's own user).
//
// Wire format (length-prefixed, so any byte may appear in an argument):
//   request:  "stanzactl 1\n" "json <0|1>\n" { "arg <length>\n" <bytes> "\n" } "end\n"
//   response: "exit <code>\n" <output bytes to the end>
// Limits: 64 KiB per request, 16 MiB per response, 5 s I/O timeouts, so a stuck
// or hostile client cannot hold the daemon's control thread.
#ifndef STANZAD_CMD_ADMIN_ADMIN_SOCKET_H_
#define STANZAD_CMD_ADMIN_ADMIN_SOCKET_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stanzad::admin {

struct AdminRequest {
  std::vector<std::string> args;  // the command words, e.g. {"callbridge", "add", "cb1"}
  bool json = false;              // --json: machine-readable output

  friend bool operator==(const AdminRequest&, const AdminRequest&) = default;
};

struct AdminResponse {
  int exit_code = 0;   // 0 success; 1 the command failed; 2 usage error
  std::string output;  // printed as is (ends with a newline when non-empty)

  friend bool operator==(const AdminResponse&, const AdminResponse&) = default;
};

std::string EncodeRequest(const AdminRequest& request);
absl::StatusOr<AdminRequest> DecodeRequest(std::string_view bytes);
std::string EncodeResponse(const AdminResponse& response);
absl::StatusOr<AdminResponse> DecodeResponse(std::string_view bytes);

// "<state_dir>/stanzad.sock".
std::string AdminSocketPath(std::string_view state_dir);

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

class AdminServer {
 public:
  using Handler = std::function<AdminResponse(const AdminRequest&, const PeerCredentials&)>;

  // Binds the socket at `path` (replacing a stale one left by a crash; refusing
  // if another daemon answers there) with mode 0600.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Listen(const std::string& path);
  ~AdminServer();

  // Waits up to `timeout_ms` for one client and serves its request. Returns
  // after serving one or after the timeout; errors of a single client are
  // answered to it or dropped, never returned.
  void ServeOne(int timeout_ms, const Handler& handler);

  // For a caller's own poll() loop: the listening socket, and AcceptOne to call
  // when it is readable. AcceptOne reads one client's request and hands it to
  // `handler` with a reply function that may be called later (at most once; the
  // client waits up to kReplyWaitSeconds). A reply never called closes the
  // client's connection once the last copy of it is gone.
  using Reply = std::function<void(const AdminResponse&)>;
  using AsyncHandler =
      std::function<void(const AdminRequest&, const PeerCredentials&, Reply reply)>;
  int fd() const { return fd_; }
  void AcceptOne(const AsyncHandler& handler);

  const std::string& path() const { return path_; }

 private:
  AdminServer(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

// How long stanzactl waits for an answer (a cluster join or a change committed
// through the leader can take a few seconds).
inline constexpr int kReplyWaitSeconds = 30;

// Sends `request` to the daemon at `path` and returns its response. Errors
// name the cause and the fix ("stanzad is not running (no socket at ...)").
absl::StatusOr<AdminResponse> SendAdminRequest(const std::string& path,
                                               const AdminRequest& request);

}  // namespace stanzad::admin

#endif  // STANZAD_CMD_ADMIN_ADMIN_SOCKET_H_
