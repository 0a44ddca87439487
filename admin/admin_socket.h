// The admin channel between stanzactl and the local stanzad: a Unix stream
// socket in the state dir (mode 0600), one request and one response per
// connection, peers checked by their credentials (SO_PEERCRED: root or the
// daemon's own user).
//
// Wire format (length-prefixed, so any byte may appear in an argument):
//   request:  "stanzactl 1\n" "json <0|1>\n" { "arg <length>\n" <bytes> "\n" } "end\n"
//   response: "exit <code>\n" <output bytes to the end>
// Limits: 1 MiB per request (an import chunk), 16 MiB per response. The daemon's side never
// blocks its control thread (which also runs Raft): its sockets are
// non-blocking and driven by the control thread's poll() loop; a client has
// kRequestTimeoutMs from its accept to send the whole request, however slowly
// it trickles in, and kResponseTimeoutMs to take the response; at most
// kPendingClientsMax clients are read at once (one more is closed as soon as
// it is accepted).
#ifndef STANZAD_ADMIN_ADMIN_SOCKET_H_
#define STANZAD_ADMIN_ADMIN_SOCKET_H_

#include <poll.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
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
// For a reader that may have only part of a request: the request once `bytes`
// hold all of it, nullopt while more are needed, an error as soon as a whole
// line or argument in them is wrong. Bytes after "end\n" are ignored.
absl::StatusOr<std::optional<AdminRequest>> DecodePartialRequest(std::string_view bytes);
std::string EncodeResponse(const AdminResponse& response);
absl::StatusOr<AdminResponse> DecodeResponse(std::string_view bytes);

// "<state_dir>/stanzad.sock".
std::string AdminSocketPath(std::string_view state_dir);

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

inline constexpr size_t kPendingClientsMax = 16;      // clients whose request is arriving
inline constexpr size_t kAnsweringClientsMax = 16;    // responses larger than a socket buffer
inline constexpr uint64_t kRequestTimeoutMs = 5000;   // from accept to the end of the request
inline constexpr uint64_t kResponseTimeoutMs = 5000;  // to take the rest of the response

class AdminServer {
 public:
  using Handler = std::function<AdminResponse(const AdminRequest&, const PeerCredentials&)>;

  // Binds the socket at `path` (replacing a stale one left by a crash; refusing
  // if another daemon answers there) with mode 0600.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Listen(const std::string& path);
  ~AdminServer();  // closes every client still being read or answered

  // For the control thread's own poll() loop; neither call blocks.
  // AppendPollFds adds the listening socket and the clients being read or
  // answered at the end of *fds; HandlePoll reads the results from `first` on:
  // it accepts, reads what arrived, drops clients past their deadline, and
  // hands each complete request to `handler` with a reply function that may be
  // called later (at most once; the client waits up to kReplyWaitSeconds). A
  // reply never called closes the client's connection once the last copy of it
  // is gone. `now_ms` is a monotonic clock, the same one on every call; call
  // HandlePoll at least every 100 ms so that deadlines are kept. Requests that
  // are malformed or too late are answered with exit code 2, peers that may not
  // administer with exit code 1, without reaching `handler`. Not thread-safe:
  // the server and its Reply functions are used from the one control thread.
  using Reply = std::function<void(const AdminResponse&)>;
  using AsyncHandler =
      std::function<void(const AdminRequest&, const PeerCredentials&, Reply reply)>;
  void AppendPollFds(std::vector<pollfd>* fds);
  void HandlePoll(const std::vector<pollfd>& fds, size_t first, uint64_t now_ms,
                  const AsyncHandler& handler);

  // For tests and simple tools: runs its own poll loop for up to `timeout_ms`
  // until one request has been handled and answered.
  void ServeOne(int timeout_ms, const Handler& handler);

  // Clients whose request is still arriving (at most kPendingClientsMax).
  size_t pending_clients() const;
  const std::string& path() const { return path_; }

 private:
  struct Reading;   // a client whose request is arriving
  struct Replying;  // a client whose request is with the handler
  struct Outbox;    // clients whose response did not fit their socket at once

  AdminServer(int fd, std::string path);
  void AcceptAll(uint64_t now_ms);
  // Reads what arrived from `client`: its request once complete (the caller
  // takes client.fd), else nullopt; client.fd is -1 once the client was
  // answered with an error or closed.
  std::optional<AdminRequest> Receive(Reading& client);

  int fd_;
  std::string path_;
  std::vector<Reading> reading_;    // at most kPendingClientsMax
  std::shared_ptr<Outbox> outbox_;  // shared with Reply functions, which may outlive the server
  uint64_t accept_paused_until_ms_ = 0;  // out of descriptors: accept again later
  // What the last AppendPollFds added, for HandlePoll.
  bool listener_polled_ = false;
  size_t reading_polled_ = 0;
  size_t answering_polled_ = 0;
};

// How long stanzactl waits for an answer (a cluster join or a change committed
// through the leader can take a few seconds).
inline constexpr int kReplyWaitSeconds = 30;

// Sends `request` to the daemon at `path` and returns its response. Errors
// name the cause and the fix ("stanzad is not running (no socket at ...)").
absl::StatusOr<AdminResponse> SendAdminRequest(const std::string& path,
                                               const AdminRequest& request);

}  // namespace stanzad::admin

#endif  // STANZAD_ADMIN_ADMIN_SOCKET_H_
