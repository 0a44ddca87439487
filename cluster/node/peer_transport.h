// PeerTransport: the TCP links of the cluster port, for the control-plane thread.
//
// Non-blocking sockets driven by the caller's poll() loop (AppendPollFds, then
// HandlePoll with the results) and Tick(). For each peer given to SetPeers, the transport
// keeps one outgoing link, re-dialled with a back-off (100 ms doubling to 1 s) whenever it
// fails; SendTo(peer) uses it, or an incoming link from that peer while it is down. Dial()
// opens a one-off link (a node asking to join talks to a node that does not know it yet);
// replies travel back on the link a request came in on (SendOn).
//
// Trust (docs/security.md): every link is authenticated before any other frame is read,
// by the handshake of link_auth.h (run by link_handshake.h's LinkHandshake; the transport
// answers its peer checks and keeps the bounds): with the cluster key (set_cluster_key; a node
// without one refuses such links), or with a join token's secret (Dial with a token; an acceptor
// finds the secret with the token lookup). A link authenticated by a token is a joining
// node's: the caller lets it ask to join, nothing else (LinkPeer::join_token). Frames
// queued before the handshake is done wait for it. The dialler checks that the node it
// reached is the one it meant (SetPeers links). What an unauthenticated peer can make the
// node hold is bounded (TransportLimits): bytes per link, time to authenticate, links in
// total (the oldest is evicted for a newcomer, so idle links cannot lock members out) and
// per IP (a newcomer beyond it is refused); on EMFILE/ENFILE the listener pauses instead
// of spinning. Refusals
// are logged once per peer and reason a minute (event=cluster_link_refused).
//
// Without TLS, what follows the handshake is sealed (ChaCha20-Poly1305 records keyed by
// the handshake, link_auth.h): read, changed or replayed on the way, it ends the link.
//
// Mutual TLS (set_tls): beneath the handshake, every link is a TLS session
// (tls/tls_session.h) — the dialler is the TLS client, the acceptor the server, each
// presenting the node's certificate, which must chain to the cluster's trust bundle.
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
#include "cluster/node/link_auth.h"
#include "cluster/node/link_handshake.h"
#include "net/engine.h"
#include "tls/tls_session.h"

namespace stanzad::cluster {

using LinkId = uint64_t;
inline constexpr LinkId kNoLink = 0;

// Bounds on what peers that have not authenticated can make the node hold.
struct TransportLimits {
  uint64_t handshake_timeout_ms = 5000;         // connect + TLS + authentication
  size_t unauthenticated_links_max = 256;       // incoming, in total
  size_t unauthenticated_links_per_ip_max = 8;  // incoming, from one IP address
  size_t unauthenticated_bytes_max = 64 << 10;  // buffered per link before authentication
};

class PeerTransport {
 public:
  static constexpr size_t kQueueBytesMax = 16 << 20;
  static constexpr uint64_t kConnectTimeoutMs = 2000;
  static constexpr uint64_t kAcceptedAfterMs = 1000;
  static constexpr size_t kRefusalBytesMax = kAuthRefusalBytesMax;

  // A frame arrived on an authenticated link (never an authentication frame).
  using FrameHandler = std::function<void(LinkId link, const LinkPeer& peer, Frame frame)>;
  // A link closed (a one-off Dial's callers want to know; `peer` is who it led to,
  // 0 when unknown).
  using CloseHandler =
      std::function<void(LinkId link, raft::NodeId peer, const absl::Status& reason)>;

  // A link to a peer came up (authenticated with the cluster key, either direction).
  using PeerUpHandler = std::function<void(raft::NodeId peer)>;
  // The secret of a join token that is valid now, or nullopt.
  using TokenLookup = cluster::TokenLookup;
  // Whether the peer a link authenticated may be who it says (with TLS: its certificate's
  // key against the one bound to its node id); an error refuses the link with its text.
  using PeerCheck = std::function<absl::Status(const LinkPeer& peer)>;

  PeerTransport(LinkSelf self, const TransportLimits& limits, FrameHandler on_frame,
                CloseHandler on_close);
  void set_peer_up_handler(PeerUpHandler handler) { on_peer_up_ = std::move(handler); }
  // Both set: every link from now on is mutual TLS. Both null: plain TCP.
  void set_tls(std::shared_ptr<const tls::TlsContext> server,
               std::shared_ptr<const tls::TlsContext> client) {
    tls_server_ = std::move(server);
    tls_client_ = std::move(client);
  }
  bool tls() const { return tls_server_ != nullptr; }
  // The cluster key (kClusterKeyBytes), or empty: links with it are refused both ways.
  void set_cluster_key(std::string key) { cluster_key_ = std::move(key); }
  bool has_cluster_key() const { return !cluster_key_.empty(); }
  void set_token_lookup(TokenLookup lookup) { token_lookup_ = std::move(lookup); }
  void set_peer_check(PeerCheck check) { peer_check_ = std::move(check); }
  ~PeerTransport();

  absl::Status Listen(const net::Endpoint& endpoint);
  void StopListening();
  bool listening() const { return listen_fd_ >= 0; }
  // Closes every link (cluster disable); the peers' dialers re-open theirs on Tick.
  void CloseAll(const absl::Status& reason);
  const net::Endpoint& listen_endpoint() const { return listen_endpoint_; }

  // The peers to keep links to (this node excluded by the caller).
  void SetPeers(const std::map<raft::NodeId, std::string>& peers, uint64_t now_ms);

  // Queues a frame to `peer`; false when there is no link (the frame is dropped).
  bool SendTo(raft::NodeId peer, FrameType type, std::string_view payload);
  // Bytes waiting to leave on the link SendTo(peer) would use (0: none, or no link).
  size_t QueuedTo(raft::NodeId peer) const;
  // The link SendTo(peer) would use now, or kNoLink. (A request sent on it with SendOn is
  // answered on it; when it closes, the close handler names it.)
  LinkId LinkIdTo(raft::NodeId peer) const {
    const Link* link = LinkTo(peer);
    return link == nullptr ? kNoLink : link->id;
  }
  // Queues a frame on one link; false when the link is gone.
  bool SendOn(LinkId link, FrameType type, std::string_view payload);
  // Closes every authenticated link (but a join token's) whose peer the peer check refuses
  // now, counted as refused and logged (cluster_link_refused): a member removed, a key
  // unbound. The check runs when a link authenticates; without this, a link would outlive
  // the membership that admitted it. O(links): call it when the membership changed.
  void RecheckLinks();
  // Opens a one-off link to "IP:PORT", authenticated with `token` when given (a node
  // asking to join), else with the cluster key; kNoLink with *error set when the address
  // is bad, no socket can be made, or there is no credential.
  LinkId Dial(const std::string& address, const std::optional<JoinToken>& token, uint64_t now_ms,
              absl::Status* error);
  void Close(LinkId link);
  // A join token link's key wrap (link_auth.h), both ends; empty for other links.
  std::string KeyWrapOf(LinkId link) const;

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
  uint64_t links_refused() const { return links_refused_; }
  // Incoming links that have not authenticated yet.
  size_t unauthenticated_links() const { return unauthenticated_links_; }

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
    // The peer took the link: a frame other than a refusal came after authentication, or
    // none came for kAcceptedAfterMs (a refusal follows the handshake at once).
    bool accepted = false;
    uint64_t authenticated_ms = 0;
    bool connecting = false;
    bool authenticated = false;
    bool received_any = false;  // a byte from the peer arrived
    // Outgoing: the node it must reach (SetPeers), else 0 until authenticated;
    // incoming: the node it proved to be.
    raft::NodeId peer = raft::kNoNode;
    uint64_t join_token = 0;  // authenticated by this join token
    std::string identity;     // with TLS: the peer certificate's key digest
    std::string address;
    std::string remote_ip;  // incoming: the connecting host
    std::string in, out;    // plaintext: frames read, frames to send
    std::string waiting;    // frames queued before authentication
    uint64_t connect_deadline_ms = 0;
    uint64_t deadline_ms = 0;  // to connect and authenticate
    // Until authenticated: this side of the handshake (link_handshake.h); an incoming
    // link's is made when its first frame arrives.
    std::optional<LinkHandshake> handshake;
    std::string key_wrap;                  // a join token link's (link_auth.h)
    std::unique_ptr<tls::TlsSession> tls;  // with mutual TLS
    std::string cipher_out;                // TLS or sealed records waiting for the socket
    // Without TLS, after the handshake (link_auth.h): `out` is sealed from its byte
    // `clear_bytes` on (the handshake's last frames go in the clear), and what arrives
    // is opened from `sealed_in` into `in` (opener_pending: from the next frame on).
    std::unique_ptr<RecordSealer> sealer;
    size_t clear_bytes = 0;
    std::unique_ptr<RecordOpener> opener;
    bool opener_pending = false;
    std::string sealed_in;
  };
  struct Dialer {  // one per SetPeers peer
    std::string address;
    LinkId link = kNoLink;
    uint64_t retry_at_ms = 0;
    uint64_t backoff_ms = 100;
  };

  LinkId Open(const std::string& address, raft::NodeId peer, bool persistent,
              const std::optional<JoinToken>& token, uint64_t now_ms, absl::Status* error);
  void Accept(uint64_t now_ms);
  // Acts on what the handshake made of the frame just stepped (or of the hello):
  // answers its peer check, queues its frames, takes its sealer and opener, refuses or
  // authenticates the link. False when the link was closed.
  bool OnHandshakeStep(Link& link);
  void Authenticated(Link& link);
  // Takes an incoming link out of the counts of unauthenticated links.
  void Accepted(Link& link);  // resets its dialer's back-off
  void ForgetUnauthenticated(Link& link);
  // The transport's verdict on the peer a handshake proved: computes its certificate's
  // key (TLS, kept in link.identity) and asks the peer check.
  absl::Status CheckPeer(Link& link, const LinkPeer& proven);
  // Refuses a link: tells the peer why (kAuthRefused), logs it (once a minute per peer
  // and reason) and closes it.
  void Refuse(Link& link, const std::string& reason, const std::string& fix);
  bool ShouldLog(const std::string& key);
  void CloseLink(LinkId id, const absl::Status& reason);
  void ReadFrom(Link& link);
  void WriteTo(Link& link);
  // Starts TLS on a link (client when it dialled); false (link closed) on error.
  bool StartTls(Link& link);
  Link* Find(LinkId id);
  const Link* LinkTo(raft::NodeId peer) const;  // the link SendTo uses
  bool Isolated(const Link& link) const;

  LinkSelf self_;
  TransportLimits limits_;
  std::string cluster_key_;
  TokenLookup token_lookup_;
  PeerCheck peer_check_;
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
  uint64_t links_refused_ = 0;
  size_t unauthenticated_links_ = 0;  // incoming
  std::map<std::string, size_t> unauthenticated_per_ip_;
  uint64_t accept_paused_until_ms_ = 0;             // out of descriptors: the listener rests
  std::map<std::string, uint64_t> last_logged_ms_;  // by peer and reason
  std::set<std::string> isolated_from_;
  std::map<raft::NodeId, uint64_t> last_heard_ms_;
  uint64_t now_ms_ = 0;
  std::vector<LinkId> polled_;  // link per pollfd after the listener's
  bool listener_polled_ = false;
};

}  // namespace stanzad::cluster

#endif  // STANZAD_CLUSTER_NODE_PEER_TRANSPORT_H_
