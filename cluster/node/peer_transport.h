// PeerTransport: the TCP links of the cluster port, for the control-plane thread.
//
// Non-blocking sockets driven by the caller's poll() loop (AppendPollFds, then
// HandlePoll with the results) and Tick(). Every connection starts with a kHello from
// the side that dialled, so both sides know whom they talk to. For each peer given to
// SetPeers, the transport keeps one outgoing link, re-dialled with a back-off (100 ms
// doubling to 1 s) whenever it fails; SendTo(peer) uses it, or an incoming link from
// that peer while it is down. Dial() opens a one-off link (a node asking to join talks
// to a node that does not know it yet); replies travel back on the link a request came
// in on (SendOn).
//
// Mutual TLS (set_tls): every link is a TLS session (tls/tls_session.h) — the
// dialler is the TLS client, the acceptor the server, each presenting the node's
// certificate, which must chain to the cluster's trust bundle. Frames wait as
// plaintext until the handshake is done. A peer that fails the handshake is
// refused with a log line that says why (event=cluster_link_refused).
//
// Raft tolerates lost messages, so a frame that cannot be sent (no link, or more than
// kQueueBytesMax waiting on one) is dropped and counted; the link with the full queue
// is closed and dialled again.
//
// Thread safety: none; one control-plane thread.
#ifndef STANZAD_CLUSTER_NODE_PEER_TRANSPORT_H_
#define STANZAD_CLUSTER_NODE_PEER_TRANSPORT_H_

#include <poll.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "cluster/node/frames.h"
#include "net/engine.h"
#include "tls/tls_session.h"

namespace stanzad::cluster {

using LinkId = uint64_t;
inline constexpr LinkId kNoLink = 0;

class PeerTransport {
 public:
  static constexpr size_t kQueueBytesMax = 16 << 20;
  static constexpr uint64_t kConnectTimeoutMs = 2000;

  // A frame other than kHello arrived. `peer` is the sender's id from its hello (for a
  // link we dialled: the id we dialled, or 0 for a one-off Dial).
  using FrameHandler = std::function<void(LinkId link, raft::NodeId peer, Frame frame)>;
  // A link closed (a one-off Dial's callers want to know; `peer` is who it led to,
  // 0 when unknown).
  using CloseHandler =
      std::function<void(LinkId link, raft::NodeId peer, const absl::Status& reason)>;

  // A link to a peer came up (its hello arrived, or our link to it connected).
  using PeerUpHandler = std::function<void(raft::NodeId peer)>;

  PeerTransport(Hello self, FrameHandler on_frame, CloseHandler on_close);
  void set_peer_up_handler(PeerUpHandler handler) { on_peer_up_ = std::move(handler); }
  // Both set: every link from now on is mutual TLS. Both null: plain TCP.
  void set_tls(std::shared_ptr<const tls::TlsContext> server,
               std::shared_ptr<const tls::TlsContext> client) {
    tls_server_ = std::move(server);
    tls_client_ = std::move(client);
  }
  bool tls() const { return tls_server_ != nullptr; }
  ~PeerTransport();

  absl::Status Listen(const net::Endpoint& endpoint);
  void StopListening();
  bool listening() const { return listen_fd_ >= 0; }
  const net::Endpoint& listen_endpoint() const { return listen_endpoint_; }

  // The peers to keep links to (this node excluded by the caller).
  void SetPeers(const std::map<raft::NodeId, std::string>& peers, uint64_t now_ms);

  // Queues a frame to `peer`; false when there is no link (the frame is dropped).
  bool SendTo(raft::NodeId peer, FrameType type, std::string_view payload);
  // Queues a frame on one link; false when the link is gone.
  bool SendOn(LinkId link, FrameType type, std::string_view payload);
  // Opens a one-off link to "IP:PORT" (hello first); kNoLink with *error set when the
  // address is bad or no socket can be made.
  LinkId Dial(const std::string& address, uint64_t now_ms, absl::Status* error);
  void Close(LinkId link);

  bool Connected(raft::NodeId peer) const;
  // When the last frame from `peer` arrived (the now_ms of HandlePoll), if one has.
  std::optional<uint64_t> LastHeardMs(raft::NodeId peer) const {
    auto it = last_heard_ms_.find(peer);
    if (it == last_heard_ms_.end()) return std::nullopt;
    return it->second;
  }

  // A drill (stanzactl cluster isolate): no link to or from these hosts (IP
  // addresses as text) — existing ones close, new ones are refused both ways —
  // until the set is changed. Empty: none blocked.
  void SetIsolatedFrom(std::set<std::string> hosts);
  const std::set<std::string>& isolated_from() const { return isolated_from_; }
  uint64_t frames_dropped() const { return frames_dropped_; }

  // poll() integration: AppendPollFds adds this transport's descriptors at the end of
  // *fds; HandlePoll reads the results from `first` on.
  void AppendPollFds(std::vector<pollfd>* fds);
  void HandlePoll(const std::vector<pollfd>& fds, size_t first, uint64_t now_ms);
  // Re-dials, connect timeouts; also writes what is queued. Call at least every
  // 100 ms.
  void Tick(uint64_t now_ms);
  // Writes what SendTo/SendOn queued (they only queue). Call after each turn.
  void FlushAll();

 private:
  struct Link {
    LinkId id = kNoLink;
    int fd = -1;
    bool outgoing = false;
    bool persistent = false;  // a SetPeers link: re-dialled when it fails
    bool connecting = false;
    bool hello_seen = false;  // incoming: its kHello arrived
    raft::NodeId peer = raft::kNoNode;
    std::string address;
    std::string remote_ip;  // incoming: the connecting host
    std::string in, out;    // plaintext: frames read, frames to send
    uint64_t connect_deadline_ms = 0;
    std::unique_ptr<tls::TlsSession> tls;  // with mutual TLS
    std::string cipher_out;                // TLS records waiting for the socket
  };
  struct Dialer {  // one per SetPeers peer
    std::string address;
    LinkId link = kNoLink;
    uint64_t retry_at_ms = 0;
    uint64_t backoff_ms = 100;
  };

  LinkId Open(const std::string& address, raft::NodeId peer, bool persistent, uint64_t now_ms,
              absl::Status* error);
  void CloseLink(LinkId id, const absl::Status& reason);
  void ReadFrom(Link& link);
  void WriteTo(Link& link);
  // Starts TLS on a link (client when it dialled); false (link closed) on error.
  bool StartTls(Link& link);
  Link* Find(LinkId id);
  bool Isolated(const Link& link) const;

  Hello self_;
  FrameHandler on_frame_;
  CloseHandler on_close_;
  PeerUpHandler on_peer_up_;
  std::shared_ptr<const tls::TlsContext> tls_server_, tls_client_;
  int listen_fd_ = -1;
  net::Endpoint listen_endpoint_;
  std::map<LinkId, std::unique_ptr<Link>> links_;
  std::map<raft::NodeId, Dialer> dialers_;
  LinkId next_link_ = 1;
  uint64_t frames_dropped_ = 0;
  std::set<std::string> isolated_from_;
  std::map<raft::NodeId, uint64_t> last_heard_ms_;
  uint64_t now_ms_ = 0;
  std::vector<LinkId> polled_;  // link per pollfd after the listener's
  bool listener_polled_ = false;
};

}  // namespace stanzad::cluster

#endif  // STANZAD_CLUSTER_NODE_PEER_TRANSPORT_H_
