// The relay: stanzas between the nodes of a cluster, as a pure state machine.
//
// No clock, no I/O, no flags, no threads: the driver (the daemon's control thread, or
// tests/simulation/relay_simulator.cc) tells it the time, the cluster as the control
// plane sees it, what the shards and the links brought; it answers with frames to send,
// stanzas to deliver, senders to bounce and route changes for the shards (TakeReady).
//
// The contract, checked by the simulator after every event:
//
//   Every stanza Forward() accepts is delivered exactly once, or its sender gets an
//   error (a bounce, or an error reply for a stanza that came from another node) —
//   never both, never neither. Apart from these windows: what a node had answered
//   "delivered" and not yet handed to its shards when it died is lost; what it had
//   delivered and whose answer was lost may be delivered again after a restart of the
//   *destination* (its memory of what it decided goes with it); and a destination cut
//   off (both ways, and through the leader) for longer than hold_ms + abort_wait_ms may
//   have delivered a stanza whose sender is then told "error" (counted as unconfirmed).
//
// How:
//   - Custody. The origin keeps each stanza (by its sequence in this incarnation) until
//     the destination answers "delivered" or "aborted". It resends every
//     resend_after_ms to wherever the stanza's route is now (through the leader in
//     leader mode). What was never sent (no route, no leader, no link) is bounced at
//     its deadline: its fate is known. What was sent and is unanswered at the deadline
//     (hold_ms) is asked about: an Abort goes to the destination, directly and through
//     the leader; the destination answers with what it did (delivered) or promises never
//     to deliver it (aborted). Only "aborted" bounces the sender. A destination that
//     answers nothing for abort_wait_ms more (one that died and stays away), or leaves
//     the membership, ends the wait with a bounce: the documented window.
//   - Identity. (origin, incarnation, sequence): the incarnation is durable and grows on
//     every start of a node (the driver keeps it), sequences count from 1 within it; no
//     wall clock is involved.
//   - Duplicates. A destination remembers, per (origin, incarnation), what it decided
//     (delivered or aborted) for each sequence at or above its floor from that origin
//     (the lowest sequence the origin holds for that destination — bound for it, or sent
//     there and unanswered — carried in every frame to it); everything below the floor is
//     finished there and dropped. A stanza that goes to another destination, or again
//     after every node it went to gave it up, gets a new sequence, so a destination's
//     floor only rises and a stanza stuck for one destination holds no decisions at the
//     others. No time window: a partition of any length cannot make a destination forget
//     something the origin may still send it.
//   - Routes. One directory: which node holds each route (a bridge, a client's resource:
//     one holder; an account with available resources: any number). Each node's
//     announcements change only its own claims; when several nodes claim one
//     single-holder route, the newest claim to arrive wins, and a withdrawal falls back
//     to the claims that remain — a stale node re-announcing and withdrawing never leaves
//     a route nowhere. The shards are told the resolved holder only (route_changes).
//
// Bounds (each an Options field): custody bytes (hold_bytes_max; beyond it the sender
// is bounced with resource-constraint), resend bytes per Tick, route-set bytes per frame
// and waiting on a link, hops a stanza may take,
// decisions remembered per (origin, incarnation) above the floor, incarnations
// remembered per origin.
#ifndef STANZAD_CLUSTER_RELAY_RELAY_H_
#define STANZAD_CLUSTER_RELAY_RELAY_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/raft/types.h"
#include "cluster/relay/wire.h"
#include "core/xmpp/stanza.h"

namespace stanzad::cluster::relay {

using raft::NodeId;

// The shard connection that sent a stanza (net::ConnectionId); kNoSender for a stanza
// with no sender connection here (it came from another node, or it is an error reply).
using SenderId = uint64_t;
inline constexpr SenderId kNoSender = 0;

struct Options {
  uint64_t hold_ms = 5000;            // a sent stanza's fate is asked for after this
  uint64_t no_leader_hold_ms = 5000;  // an unsent stanza waits this long for a leader
  uint64_t abort_wait_ms = 10000;     // after hold_ms, for an answer to the abort
  uint64_t resend_after_ms = 500;     // unanswered for this long: sent again
  uint64_t service_every_ms = 200;    // deadlines and resends are looked at this often
  size_t hold_bytes_max = 64 << 20;   // stanza bytes in custody
  size_t resend_bytes_per_tick = 4 << 20;
  bool direct = false;                // --routing=direct: to the destination, not the leader
  uint8_t hops_max = 3;               // nodes that may pass a stanza on
  size_t stanza_bytes_max = 1 << 20;  // a relayed stanza longer than this is refused
  size_t decisions_max = 1 << 20;     // per (origin, incarnation), above its floor
  size_t incarnations_max = 4;        // remembered per origin
  // A member that links up gets every route of this node, in kRoutes frames of at most
  // about routes_frame_bytes (at least one route each), sent while less than
  // routes_queued_bytes_max waits on its link (a link's queue is bounded: 16 MiB).
  size_t routes_frame_bytes = 256 << 10;
  size_t routes_queued_bytes_max = 4 << 20;
};

// The cluster as the control plane sees it this turn.
struct View {
  bool member = false;            // this node is a member (otherwise nothing is sent)
  NodeId leader = raft::kNoNode;  // kNoNode: none known
  std::set<NodeId> members;       // the other members
  std::set<NodeId> linked;        // members with a link up now
  bool can_deliver = false;       // the shards take deliveries (the engine runs)
  // Bytes waiting to leave on the link to a member (missing: none).
  std::map<NodeId, size_t> queued_bytes;
};

// Outputs.
struct Send {
  NodeId to = raft::kNoNode;
  FrameType type = FrameType::kStanza;
  std::string payload;
};
struct Delivery {  // to the shard that owns `address`, as kDeliverFromPeer
  NodeId origin = raft::kNoNode;
  std::string address;
  std::string bytes;
};
struct Bounce {  // the sender's shard answers it with an error
  SenderId sender = kNoSender;
  std::string bytes;
  xmpp::StanzaErrorCondition condition = xmpp::StanzaErrorCondition::kServiceUnavailable;
};
struct RouteChange {  // for every shard's table of routes on other nodes
  enum class Op { kBind, kUnbind, kForgetNode } op = Op::kBind;
  NodeId node = raft::kNoNode;
  std::string address;  // empty for kForgetNode
};
struct LogLine {
  bool warning = true;
  std::string event;   // "relay_expired", "relay_rejected", "relay_unconfirmed"
  std::string fields;  // key=value ...
};
struct Ready {
  std::vector<Send> sends;  // in order; acknowledgements before the deliveries they cover
  std::vector<Delivery> deliveries;
  std::vector<Bounce> bounces;
  std::vector<RouteChange> route_changes;
  std::vector<LogLine> logs;
  bool empty() const {
    return sends.empty() && deliveries.empty() && bounces.empty() && route_changes.empty() &&
           logs.empty();
  }
};

struct Stats {
  uint64_t relayed_out = 0;         // stanza frames sent (first sends, resends, passed on)
  uint64_t relayed_in = 0;          // stanzas taken in: for delivery here, or passed on
  uint64_t failed = 0;              // refused: custody full, bad, not a member's, no route
  uint64_t resent = 0;              // sent again
  uint64_t duplicates_dropped = 0;  // arrived again after a decision
  uint64_t expired = 0;             // bounced at the deadline
  uint64_t rejected = 0;            // failed the checks on arrival
  uint64_t aborted = 0;             // answered "aborted" here (never delivered)
  uint64_t unconfirmed = 0;         // bounced without the destination's answer
  uint64_t misrouted = 0;           // arrived where the route is not (any more): not answered
};

class Relay {
 public:
  // `incarnation` > 0, larger than any this node had before (durable, kept by the driver).
  Relay(NodeId self, uint64_t incarnation, std::string domain, Options options);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  NodeId self() const { return self_; }
  uint64_t incarnation() const { return incarnation_; }
  const std::string& domain() const { return domain_; }
  void SetDomain(std::string domain);

  // Every turn, before the rest: membership, leader, links. Members that left lose
  // their routes and what this node remembered of them; a new leader gets what waited
  // for one; a member whose link went down loses its account routes.
  void SetView(uint64_t now_ms, const View& view);
  // A route bound (up) or unbound on this node's shards.
  void LocalRoute(uint64_t now_ms, bool up, std::string_view address);
  // The shards stopped: every route of this node is gone (the members are told).
  void DropLocalRoutes();
  // A link to `peer` came up: it is sent every route of this node, in frames paced by
  // the link's queue (Tick sends them; changes meanwhile go as they happen).
  void LinkUp(NodeId peer);
  // A stanza a shard routed to `node`. Taken into custody, or bounced at once.
  void Forward(uint64_t now_ms, SenderId sender, NodeId node, std::string_view bytes);
  // A relay frame (kRoutes, kStanza, kAck, kAckRelay, kAbort) from member `from`.
  void OnFrame(uint64_t now_ms, NodeId from, FrameType type, std::string_view payload);
  // Resends, deadlines, acknowledgements: every turn.
  void Tick(uint64_t now_ms);

  Ready TakeReady();

  // Where `address` is bound now: 0 here, a member's id, nullopt nowhere. For an
  // account, one of the members holding it.
  std::optional<NodeId> NodeOf(std::string_view address) const;
  // Every route on another member the shards should know (for shards that just started).
  std::vector<RouteChange> RemoteRoutes() const;
  const Stats& stats() const { return stats_; }
  size_t custody_count() const { return custody_.size(); }
  size_t custody_bytes() const { return custody_bytes_; }
  // Every remembered decision, for bounds checks.
  size_t decisions_count() const;
  // CHECKs the invariants (custody byte sum, bounds); for tests and the simulator.
  void CheckInvariants() const;

 private:
  struct Entry;
  struct Window;
  class Directory;
  // Answers to send this turn: per (node to send to, origin, incarnation), via relay
  // when the origin is not the node they go to.
  struct AnswerKey {
    NodeId to;
    NodeId origin;
    uint64_t incarnation;
    auto operator<=>(const AnswerKey&) const = default;
  };

  // Custody.
  void TakeInto(uint64_t now_ms, SenderId sender, NodeId node, std::string_view bytes);
  void SendEntry(uint64_t now_ms, Entry& entry);
  void SendAbort(uint64_t now_ms, Entry& entry, NodeId except);
  bool Retry(uint64_t now_ms, Entry& entry);  // true: finished here
  void Rename(Entry& entry);
  void Hold(const Entry& entry, bool on);  // in holding_, or out
  std::map<uint64_t, Entry>::iterator FindSequence(uint64_t sequence);
  void RetryRoute(uint64_t now_ms, const std::string& address);
  std::map<uint64_t, Entry>::iterator Finish(std::map<uint64_t, Entry>::iterator it);
  void BounceEntry(uint64_t now_ms, const Entry& entry, std::string_view reason);
  void OnAnswers(uint64_t now_ms, NodeId answerer, const AnswerFrame& frame);
  // The floor sent to `destination`: the lowest sequence it may decide (it holds it, or
  // it is bound for it); next_sequence_ if none.
  uint64_t FloorFor(NodeId destination) const;
  std::optional<NodeId> NextHop(NodeId destination) const;
  bool Linked(NodeId node) const { return view_.linked.count(node) != 0; }

  // Destination.
  void OnStanza(NodeId from, const StanzaFrame& frame);
  void OnAbort(NodeId from, const AbortFrame& frame);
  Window* WindowOf(NodeId origin, uint64_t incarnation, uint64_t floor);
  void Answer(NodeId from, NodeId origin, uint64_t incarnation, uint64_t sequence, Outcome outcome);
  void FlushAnswers();
  void SendAnswers(const AnswerKey& key, const AnswerFrame& frame);
  bool SpeaksFor(NodeId from, NodeId named) const;
  bool Admits(NodeId from, NodeId origin, NodeId destination);
  bool MayPassOn(uint8_t hops, NodeId origin, NodeId destination) const;
  bool Accepts(const xmpp::Stanza& stanza, std::string_view bytes, std::string* why);

  // Routes.
  void SendRouteSets();
  void SendRouteSet(NodeId peer);
  void OnRoutes(uint64_t now_ms, NodeId from, const RoutesFrame& routes);
  void ReplaceRoutes(NodeId from, const std::set<std::string>& now);
  void Log(std::string event, std::string fields);

  const NodeId self_;
  const uint64_t incarnation_;
  std::string domain_;
  const Options options_;
  View view_;
  NodeId last_leader_ = raft::kNoNode;
  bool leader_resend_pending_ = false;
  uint64_t last_service_ms_ = 0;
  size_t resend_budget_ = 0;

  uint64_t next_sequence_ = 1;
  std::map<uint64_t, Entry> custody_;                             // by sequence
  std::map<std::string, std::set<uint64_t>> custody_by_address_;  // the same, by route
  std::map<uint64_t, uint64_t> resequenced_;  // a renamed entry's sequence -> its key
  // Per node: the sequences of entries bound for it or that it may hold (never empty).
  std::map<NodeId, std::set<uint64_t>> holding_;
  size_t custody_bytes_ = 0;

  // Per origin: its incarnations' windows (at most incarnations_max, newest kept).
  std::map<NodeId, std::map<uint64_t, Window>> windows_;
  std::map<AnswerKey, std::vector<std::pair<uint64_t, Outcome>>> answers_;  // this turn's

  std::set<std::string> local_routes_;
  // Route sets being sent: per member, the last address sent (nullopt: none yet).
  std::map<NodeId, std::optional<std::string>> route_sets_out_;
  // Route sets arriving in several frames: per member, what it has sent so far (with
  // the changes it sent meanwhile). At most every route the member has.
  std::map<NodeId, std::set<std::string>> route_sets_in_;
  std::unique_ptr<Directory> directory_;
  std::set<NodeId> unlinked_;  // members whose account routes were dropped this outage
  std::unique_ptr<xmpp::RelayedStanzaChecker> checker_;
  Ready ready_;
  Stats stats_;
};

}  // namespace stanzad::cluster::relay

#endif  // STANZAD_CLUSTER_RELAY_RELAY_H_
