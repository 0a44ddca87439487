// RouterShard: the XMPP side of one shard. It owns the sessions of the
// connections its shard accepted (call bridges on the component port, clients
// on the c2s ports, over TLS), a copy of the route tables, and (for the
// component addresses and accounts that hash to it) the authority over which
// connection speaks for a bridge or a client resource.
//
// How a bridge gets routable (all through Shard::Post, so per-pair order holds):
//   session on shard S authenticates cb1.example.com
//     → BindRequest to the owner shard O = hash(address) % shards
//     → O records it; if another connection held the address, that one's
//       shard gets Conflict and closes it with <conflict/>
//     → O broadcasts RouteBind to every shard, which updates its RouteTable
//       and acknowledges to S; with every shard's ack S sends <handshake/>,
//       so a bridge that has seen <handshake/> is reachable from every shard.
//   Closing runs the same way with UnbindRequest / RouteUnbind, and a stale
//   unbind (from a connection already replaced) changes nothing.
//
// A client resource the same way (kClient* records): the owner of the account
// (hash of the bare JID) refuses a bind beyond the resource cap, replaces an
// older connection of the same full JID (<conflict/>), and broadcasts the
// route; the bind result goes to the client once every shard has it. Presence
// without `to` (available / unavailable, priority) is broadcast by the
// client's shard; RFC 6121's rules then pick the resources a stanza to a bare
// JID reaches (core/router/client_routes.h).
//
// A stanza's way: the session checks it; the local RouteTable resolves `to`;
// a bridge on this shard gets the bytes at once, one on another shard through
// a Deliver record; anything that cannot be delivered (no route, the bridge
// went away, its queue is full) is answered to the sender with the stanza
// error that says why. Error stanzas are never answered with errors.
//
// What a peer that has not authenticated can make the node hold (RouterLimits):
//   - connections: preauth_connections_per_ip_max (the cap) per IP address,
//     counted over all shards: each tells the others when one begins and ends,
//     and a new connection is closed at accept once the count it knows of
//     reaches the cap. A shard reads a burst of accepts before the others'
//     records, so each also holds at most its share of the cap,
//     max(ceil(cap / N), min(cap, 16)) with N shards (16: the kernel spreads an
//     address's connections unevenly). So a burst that lands on every shard at
//     once gets at most N times the share (N * ceil(cap / N) while N <= cap / 16,
//     16 * N beyond), and the cap when the records arrive between accepts.
//     Authenticated connections never count.
//   - guesses: every failed handshake or login is recorded by its shard and told
//     to the others (kFailureSeen). An address with auth_failures_max failures
//     in the window is refused at accept, and its open connections' handshakes
//     and logins are answered <policy-violation/> unchecked (no oracle). A shard
//     checks a guess only while the failures it knows of are below the limit and
//     its own failures from that address are below its share, ceil(limit / N):
//     so with N shards at most N * ceil(auth_failures_max / N) guesses from one
//     address are checked per window, even when a burst lands on every shard
//     before the records arrive (auth_failures_max when N divides it).
//   - memory: the failure tables are bounded (failure_table_entries_max, LRU
//     with blocked addresses kept longest); the pre-auth table has one entry per
//     pre-auth connection at most.
//
// Thread safety: every method runs on the shard's thread (ShardHandler
// contract). RouterConfigPublisher and RouterShardStats may be used from any
// thread.
#ifndef STANZAD_ROUTER_ROUTER_SHARD_H_
#define STANZAD_ROUTER_ROUTER_SHARD_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "core/config/config.h"
#include "core/router/client_routes.h"
#include "core/router/route_table.h"
#include "core/router/shard_records.h"
#include "core/xml/tokenizer.h"
#include "core/xmpp/component_session.h"
#include "net/engine.h"
#include "router/failure_counter.h"
#include "tls/tls_session.h"

namespace stanzad::router {

// The engine's terms, as the router uses them everywhere.
using net::CrossShardMessage;
using net::Endpoint;
using net::kNoConnection;
using net::Shard;
using net::ShardHandler;
using net::ShardOf;

// What the shards need of the node's configuration: immutable once published.
struct RouterConfig {
  std::string domain;
  bool enabled = true;
  // Component address ("cb1.example.com") → shared secret.
  // Node maps: growing one to a million entries moves 8-byte pointers, not the entries (a
  // flat map's resize at 229,376 users allocated and moved 67 MB on the control thread, on
  // every node at the same change, and cost the cluster its leader).
  absl::node_hash_map<std::string, std::string> bridge_secrets;
  // Client accounts: canonical localpart → SCRAM credentials (the node configuration's own
  // objects, shared: a buffer costs a pointer per user, not a copy of its keys).
  absl::node_hash_map<std::string, config::SharedCredentials> users;
  // The server certificate for clients (STARTTLS and direct TLS) and for bridges
  // with --component_tls; null: none is configured, and connections that need
  // TLS are refused.
  std::shared_ptr<const tls::TlsContext> client_tls;
  // Derives the salt shown for unknown users (same on every node and restart).
  std::string unknown_user_salt_key;
};

// Listener tags (EngineOptions::listeners) the router understands.
enum RouterListener : int {
  kComponentListener = 0,     // XEP-0114 call bridges
  kClientListener = 1,        // RFC 6120 clients, STARTTLS
  kClientTlsListener = 2,     // clients with TLS from the first byte (XEP-0368)
  kComponentTlsListener = 3,  // call bridges with TLS from the first byte (--component_tls)
};

// Hands the current RouterConfig from the control plane to the shards.
class RouterConfigPublisher {
 public:
  explicit RouterConfigPublisher(std::shared_ptr<const RouterConfig> initial)
      : current_(std::move(initial)) {}
  void Publish(std::shared_ptr<const RouterConfig> config) { current_.store(std::move(config)); }
  std::shared_ptr<const RouterConfig> Current() const { return current_.load(); }

 private:
  std::atomic<std::shared_ptr<const RouterConfig>> current_;
};

struct RouterLimits {
  // A connection must complete the handshake within this time.
  uint64_t preauth_timeout_ms = 10'000;
  // A connection that sends nothing for this long is closed (0: never).
  uint64_t idle_timeout_ms = 0;
  // A peer whose send queue stays above slow_reader_queue_bytes for this long
  // is disconnected.
  uint64_t slow_reader_timeout_ms = 10'000;
  size_t slow_reader_queue_bytes = 256 * 1024;
  // Failed handshakes and logins (wrong secret, unknown bridge, wrong password)
  // from one IP address within the window, after which that address's new
  // connections are refused, and the handshakes and logins of its open ones are
  // answered with <policy-violation/> without being checked, until the window
  // passes. Every shard counts them all, and checks at most its share (see
  // RouterShard: with N shards, at most N * ceil(auth_failures_max / N) are checked
  // and answered not-authorized per window).
  // REQUIRES: >= 1.
  uint32_t auth_failures_max = 10;
  uint64_t auth_failure_window_ms = 60'000;
  // Addresses (and accounts) each shard's failure tables remember; when full,
  // the least recently failing one that is not blocked is forgotten first
  // (router/failure_counter.h). About 150 bytes each.
  size_t failure_table_entries_max = 65'536;
  // Connections from one IP address that have not authenticated yet (no
  // component handshake or SASL success so far), counted over all shards (each
  // also holds at most its share: see above); one more is closed at accept.
  // Keeps one address from taking the node's connections (connections_max)
  // with idle or slow handshakes. 0: no cap.
  uint32_t preauth_connections_per_ip_max = 64;
  xml::TokenizerLimits tokenizer;
  // As the engine's connection_queue_bytes_max: a TLS record that would not fit
  // is not written (a client's stanza gets resource-constraint instead).
  size_t queue_bytes_max = 1 << 20;
  // A client with resumable stream management whose connection drops keeps its
  // session (routes, unacknowledged stanzas) this long for it to resume.
  uint64_t resume_timeout_ms = 300'000;
  // Bound resources per account (all shards); one more is refused.
  uint32_t client_resources_max = 16;
  // Most bytes of stanzas sent to one client and not yet acknowledged (or
  // waiting while it is away); beyond it new ones are bounced.
  size_t unacked_bytes_max = 1 << 20;
  // Failed logins of one account within auth_failure_window_ms after which its
  // logins are refused (even with the right password) until the window passes.
  uint32_t account_failures_max = 5;
};

// Counters of one shard, written only by its thread, read by anyone.
struct alignas(64) RouterShardStats {
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_refused{0};
  std::atomic<uint64_t> connections_open{0};
  std::atomic<uint64_t> bridges_authenticated{0};
  std::atomic<uint64_t> bridges_connected{0};
  std::atomic<uint64_t> auth_failures{0};
  std::atomic<uint64_t> stanzas_received{0};
  std::atomic<uint64_t> stanzas_routed{0};
  std::atomic<uint64_t> stanzas_answered{0};
  std::atomic<uint64_t> stanzas_bounced{0};
  // stanzas_bounced by the condition of the error sent back.
  std::atomic<uint64_t> stanzas_bounced_by_condition[xmpp::kStanzaErrorConditionCount] = {};
  std::atomic<uint64_t> error_stanzas_dropped{0};
  std::atomic<uint64_t> stream_errors{0};
  std::atomic<uint64_t> bytes_received{0};
  // Cluster: stanzas handed to the control thread for another node, and ones
  // that arrived from another node.
  std::atomic<uint64_t> stanzas_forwarded{0};
  std::atomic<uint64_t> stanzas_from_peers{0};
  // Clients.
  std::atomic<uint64_t> clients_connected{0};        // gauge: bound resources on this shard
  std::atomic<uint64_t> client_connections_open{0};  // gauge: of connections_open
  std::atomic<uint64_t> client_logins_ok{0};
  std::atomic<uint64_t> client_logins_failed{0};
  std::atomic<uint64_t> tls_handshakes_ok{0};
  std::atomic<uint64_t> tls_handshakes_failed{0};
  std::atomic<uint64_t> sm_resumed{0};
  std::atomic<uint64_t> sm_resume_failed{0};
  std::atomic<uint64_t> sm_expired{0};  // detached sessions whose time ran out
  std::atomic<uint64_t> stanzas_returned_unacked{0};
};

// The records between the router's shards, and from them to the control thread, are
// typed in core/router/shard_records.h.
inline constexpr router::FailureOf kFailureOfAddress = router::FailureOf::kAddress;
inline constexpr router::FailureOf kFailureOfAccount = router::FailureOf::kAccount;

// Posts `record` to shard `to` (Shard::Post: false, and nothing sent, when that queue is
// full).
bool PostRecord(Shard& shard, int to, const router::ShardRecord& record);

class RouterShard : public ShardHandler {
 public:
  RouterShard(const RouterConfigPublisher* config, RouterLimits limits, RouterShardStats* stats);
  ~RouterShard() override;

  // The relay lane of this shard, when the node runs one (server/node_shard.h): stanzas
  // for other nodes go to it instead of the control thread (kCtlForward), and it hears
  // of every route that gets bound, here or on another node.
  class Forwarder {
   public:
    virtual ~Forwarder() = default;
    // A stanza for member `node` (it answers the sender itself if it cannot take it).
    // `to`: the stanza's raw `to` attribute when the router read it already (nullopt:
    // the forwarder reads the stanza itself); `route_address`: the route the router
    // resolved it to (RouteDecision::address; empty: the forwarder finds it).
    virtual void Forward(ConnectionId sender, uint64_t node, std::string_view bytes,
                         std::optional<std::string_view> to, std::string_view route_address) = 0;
    // `address` (a bridge, a client's full JID, an account) is bound now, somewhere.
    virtual void RouteBound(std::string_view address) = 0;
  };
  // The domain of the configuration this shard runs with.
  const std::string& domain() const { return config_->domain; }
  // `forwarder` outlives this; null: stanzas for other nodes go to the control thread.
  void set_forwarder(Forwarder* forwarder) { forwarder_ = forwarder; }
  // Where a route is bound as this shard knows it: 0 on this node, a member's id, nullopt
  // nowhere; for an account, a node holding it (this one if it does).
  std::optional<uint64_t> NodeOfRoute(std::string_view address) const;
  // `node` (another member) holds resources of `account`, as this shard knows it.
  bool AccountHeldBy(uint64_t node, std::string_view account) const;

  bool OnAccept(Shard& shard, ConnectionId id, const Endpoint& peer, int listener_tag) override;
  void OnData(Shard& shard, ConnectionId id, std::string_view bytes) override;
  void OnClosed(Shard& shard, ConnectionId id, const absl::Status& reason) override;
  // Decodes the record (a malformed one is logged and dropped) and handles it: OnRecord.
  void OnMessage(Shard& shard, const CrossShardMessage& message) override;
  // A record for this shard, already typed (a relay lane on this shard hands its bounces
  // here without a trip through the queue).
  void OnRecord(Shard& shard, const router::ShardRecord& record);
  // kDeliverFromPeer on this shard, when the relay lane already resolved the stanza's
  // route to `address` (router::RouteAddressOf): a component bound here gets it without
  // a second look at the stanza; anything else is routed as kDeliverFromPeer is.
  void DeliverFromPeer(Shard& shard, std::string_view address, std::string_view bytes);
  void OnTick(Shard& shard, uint64_t now_ms) override;
  void OnStop(Shard& shard) override;

 private:
  class Connection;
  class ComponentConnection;
  class ClientConnection;

  Connection* Find(ConnectionId id);
  void Route(Connection& sender, const xmpp::Stanza& stanza);
  // A stanza from client `sender` without `to`: for its own account.
  void RouteFromClientToAccount(ClientConnection& sender, const xmpp::Stanza& stanza);
  // A stanza to an address of our domain with a localpart, from a local
  // connection or kNoConnection (the server itself, or `from_peer`: another
  // node, so it is never relayed on). One for an account that is not configured
  // is answered or ignored as RFC 6121 §8.5.1 says (router::NoSuchUserError).
  void RouteToUser(ConnectionId sender, const xmpp::Stanza& stanza, const router::UserAddress& to,
                   bool from_peer = false);
  // The node of the cluster that holds `raw_jid` (a bridge, or a client's full
  // JID) if it is another one.
  std::optional<uint64_t> RemoteNodeOf(std::string_view raw_jid) const;
  // A stanza for member `node`: to the forwarder, or to the control thread. False: that
  // queue is full (the caller bounces it).
  bool ForwardToNode(ConnectionId sender, uint64_t node, std::string_view bytes,
                     std::optional<std::string_view> to = std::nullopt,
                     std::string_view route_address = {});
  // Delivers to `target` on any shard, or answers `sender` with the error.
  void DeliverTo(ConnectionId sender, ConnectionId target, std::string_view bytes);
  // Bounce() for a local sender, BounceToPeer() for kNoConnection.
  void BounceAny(ConnectionId sender, std::string_view stanza_bytes,
                 xmpp::StanzaErrorCondition condition);
  // On the account's owner shard: tells the control thread (and so the other
  // nodes) when the account gains its first or loses its last resource that a
  // message to its bare JID goes to here (a route named by the bare JID).
  void AnnounceAccount(std::string_view bare);
  // Sends a stanza for account `bare` to every other node with resources of it
  // that a message to the bare JID goes to; how many nodes those are (a copy the
  // control thread's queue cannot take is answered with resource-constraint).
  size_t ForwardToAccountNodes(ConnectionId sender, std::string_view bare, std::string_view bytes);
  // Answers `stanza_bytes` to its sender, wherever it is, with `condition` (a
  // stanza the server itself could not deliver).
  void ReturnToSender(std::string_view stanza_bytes, xmpp::StanzaErrorCondition condition);
  // Sends `bytes` to a connection of this shard; false if it is gone or full.
  bool DeliverLocal(ConnectionId target, std::string_view bytes,
                    xmpp::StanzaErrorCondition* why_not);
  // Answers `stanza_bytes` (from `sender`, on any shard) with a stanza error.
  void Bounce(ConnectionId sender, std::string_view stanza_bytes,
              xmpp::StanzaErrorCondition condition);
  // PostControl to every shard, this one included (in order with the others).
  void Broadcast(const router::ShardRecord& record);
  // A stanza with no sender connection here: from another node (`from_peer`:
  // delivered here or answered with an error that travels back to its node,
  // never relayed on), or the server's own error reply (sent on to wherever
  // its addressee is, another node included).
  void RouteWithoutSender(std::string_view bytes, bool from_peer);
  // Every call from the engine or another shard into a connection goes through here:
  // while `call` runs, a close inside it only marks the connection (it may be a sender
  // further up the stack); after it, a connection that died is destroyed. (The periodic
  // scan, OnTick, walks connections_ and calls in directly: it destroys nothing during
  // the walk, and what it closes goes through here afterwards.)
  template <typename Call>
  void CallInto(Connection& connection, Call&& call);
  // The error reply to a stanza whose sender is on another node.
  void BounceToPeer(std::string_view stanza_bytes, xmpp::StanzaErrorCondition condition);
  // PostToControl, kept and retried on ticks when the queue is full.
  void PostToControlThread(const router::ControlRecord& record);
  // Posts a control record (binds, routes, acks, conflicts). If the queue is
  // full it is kept, in order, and retried on every tick: control records are
  // never dropped, and never overtake one another.
  void PostControl(int to, const router::ShardRecord& record);
  // PostControl of a record encoded already (a broadcast encodes once).
  void PostOrDefer(int to, const router::EncodedRecord& record);
  void RetryDeferredPosts();
  void ApplyConfig();
  bool AddressBlocked(const std::string& ip, uint64_t now_ms);
  FailureCounter& OwnAddressFailures();
  bool AccountBlocked(const std::string& account, uint64_t now_ms);
  // Asked before a handshake or login of `connection` is checked: the text of
  // the <policy-violation/> that refuses it unchecked (its address failed too
  // often: checking would let it go on guessing), or nullopt to check it.
  std::optional<std::string> RefuseAuthentication(const Connection& connection);
  // At accept: may one more connection from `ip` wait for authentication (below
  // the cap over all shards, and below this shard's share)? If so it is counted
  // (here and, through kPreauthChanged, on every other shard) until EndPreauth.
  // Refusals are logged once per address per kRefusalLogIntervalMs.
  bool AdmitPreauth(const std::string& ip, uint64_t now_ms);
  // `connection` authenticated or is gone: it no longer counts. Idempotent.
  void EndPreauth(Connection& connection);
  // Applies one change of the pre-auth count of `ip`: here (`local`) or on
  // another shard.
  void CountPreauth(std::string_view ip, bool local, int delta);
  // A failed handshake or login `of` an address (kFailureOfAddress: key = IP)
  // or an account (key = its localpart): counted here and on every other shard.
  void RecordFailure(router::FailureOf of, const std::string& key, uint64_t now_ms);
  // PostControl to every shard but this one.
  void BroadcastToOthers(const router::ShardRecord& record);

  // One handler per record (core/router/shard_records.h says who sends it and why).
  void Handle(const router::ConfigChanged& record);
  void Handle(const router::BindRequest& record);
  void Handle(const router::UnbindRequest& record);
  void Handle(const router::RouteBind& record);
  void Handle(const router::RouteUnbind& record);
  void Handle(const router::RouteBindAck& record);
  void Handle(const router::Conflict& record);
  void Handle(const router::Deliver& record);
  void Handle(const router::Bounce& record);
  void Handle(const router::DeliverFromPeer& record);
  void Handle(const router::RemoteRouteBind& record);
  void Handle(const router::RemoteRouteUnbind& record);
  void Handle(const router::ForgetNode& record);
  void Handle(const router::ClientBindRequest& record);
  void Handle(const router::ClientUnbindRequest& record);
  void Handle(const router::ClientBindRefused& record);
  void Handle(const router::ClientRouteBind& record);
  void Handle(const router::ClientRouteUnbind& record);
  void Handle(const router::ClientRouteBindAck& record);
  void Handle(const router::ClientPresence& record);
  void Handle(const router::SmRegister& record);
  void Handle(const router::SmUnregister& record);
  void Handle(const router::SmResumeLookup& record);
  void Handle(const router::ClientResumeRequest& record);
  void Handle(const router::ClientResumeFailed& record);
  void Handle(const router::ClientResumeStanza& record);
  void Handle(const router::ClientResumeAccepted& record);
  void Handle(const router::FailureSeen& record);
  void Handle(const router::PreauthChanged& record);
  // One shard's acknowledgement of the route of `id`: the connection if it was the last
  // one awaited, else null.
  Connection* LastRouteAck(ConnectionId id);

  void DestroyIfDead(ConnectionId id);

  const RouterConfigPublisher* config_publisher_;
  Forwarder* forwarder_ = nullptr;
  std::shared_ptr<const RouterConfig> config_;
  RouterLimits limits_;
  RouterShardStats* stats_;
  Shard* shard_ = nullptr;  // set on the first callback; the engine owns it
  router::RouteTable routes_;
  router::ClientRoutes clients_;
  // Authoritative bindings for the addresses this shard owns.
  absl::flat_hash_map<std::string, ConnectionId> owned_bindings_;
  // Authoritative client bindings for the accounts this shard owns.
  router::ClientRoutes owned_clients_;
  // Accounts this shard owns that have message recipients on this node, as told
  // to the control thread (AnnounceAccount).
  absl::flat_hash_set<std::string> announced_accounts_;
  // Other nodes' accounts with message recipients there: bare JID -> node ids.
  absl::flat_hash_map<std::string, std::vector<uint64_t>> remote_accounts_;
  // Stream management tokens that hash to this shard → the connection holding
  // that session now.
  absl::flat_hash_map<std::string, ConnectionId> sm_tokens_;
  absl::flat_hash_map<ConnectionId, std::unique_ptr<Connection>> connections_;
  FailureCounter address_failures_;
  // This shard's own failed checks per address, blocked at its share of the limit
  // (made when the shard count is known).
  std::optional<FailureCounter> own_address_failures_;
  FailureCounter account_failures_;
  // Connections that have not authenticated, per IP address: this shard's and
  // the other shards' (as their kPreauthChanged records said). An entry lives
  // while either count is above zero, so there are never more entries than
  // pre-auth connections on the node.
  struct PreauthCount {
    uint32_t here = 0;
    uint32_t elsewhere = 0;
    uint64_t refusals_unlogged = 0;
    uint64_t last_refusal_log_ms = 0;  // 0: none logged while this entry lived
  };
  absl::flat_hash_map<std::string, PreauthCount> preauth_by_ip_;
  // Handshakes and logins refused unchecked (RefuseAuthentication), for a
  // rate-limited log line.
  uint64_t refused_unchecked_unlogged_ = 0;
  uint64_t last_refused_unchecked_log_ms_ = 0;
  uint64_t last_refused_client_log_ms_ = 0;
  uint64_t last_scan_ms_ = 0;
  struct DeferredPost {
    int to;
    router::EncodedRecord record;  // Owned()
  };
  std::vector<DeferredPost> deferred_posts_;
  std::vector<router::EncodedRecord> deferred_control_;  // Owned()
};

}  // namespace stanzad::router

#endif  // STANZAD_ROUTER_ROUTER_SHARD_H_
