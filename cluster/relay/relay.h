// The relay: stanzas between the nodes of a cluster, as a pure state machine.
//
// No clock, no I/O, no flags, no threads: the driver (each shard's, server/node_shard.h,
// or tests/simulation/relay_simulator.cc) tells it the time, the cluster as the control
// plane sees it, what the router and the links brought; it answers with frames to send,
// stanzas to deliver and senders to bounce (TakeReady). Where routes are it asks a
// RouteLookup (the shard's routing tables, or the route directory, directory.h), and is
// told when one is bound.
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
//   - Identity. (origin lane, incarnation, sequence): the incarnation is durable and grows
//     on every start of a node (the driver keeps it), each lane (one per shard, Lane)
//     counts its sequences from 1 within it; no wall clock is involved.
//   - Lanes. A node runs one Relay per shard. A stanza for an address on node B goes to
//     B's lane OwnerShard(address, B's lanes) (in leader mode through the leader's lane
//     for that address); answers go back to the lane that sent it. Any lane of B may
//     deliver for B (its deliveries go to the shard that owns the address). Custody,
//     floors and windows are per lane; an origin waits for no answer from a lane that no
//     longer exists (its node left, or restarted with fewer shards), as for a member that
//     left.
//   - Duplicates. A destination lane remembers, per (origin lane, incarnation), what it decided
//     (delivered or aborted) for each sequence at or above its floor from that origin
//     (the lowest sequence the origin holds for that destination — bound for it, or sent
//     there and unanswered — carried in every frame to it); everything below the floor is
//     finished there and dropped. A stanza that goes to another destination, or again
//     after every node it went to gave it up, gets a new sequence, so a destination's
//     floor only rises and a stanza stuck for one destination holds no decisions at the
//     others. No time window: a partition of any length cannot make a destination forget
//     something the origin may still send it.
//   - Routes. Where a stanza goes is the route directory's answer (directory.h) at the
//     time it is sent or sent again; a route bound somewhere else (RouteBound) sends
//     what waits for it there.
//
// Bounds (each an Options field): custody bytes (hold_bytes_max; beyond it the sender
// is bounced with resource-constraint), resend bytes per Tick, hops a stanza may take,
// decisions remembered per (origin lane, incarnation) above the floor, incarnations
// remembered per origin lane; origin lanes only of members, below their lane count.
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

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "cluster/raft/types.h"
#include "cluster/relay/types.h"
#include "cluster/relay/wire.h"
#include "core/xmpp/stanza.h"

namespace stanzad::cluster::relay {

using raft::NodeId;

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
  size_t decisions_max = 1 << 20;     // per (origin lane, incarnation), above its floor
  size_t incarnations_max = 4;        // remembered per origin lane
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
  // `self`: this node and the shard this lane runs for. `incarnation` > 0, larger than any
  // this node had before (durable, kept by the driver; the same for all its lanes).
  // `routes` outlives the relay.
  Relay(Lane self, uint64_t incarnation, std::string domain, const RouteLookup& routes,
        Options options);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  Lane self() const { return self_; }
  uint64_t incarnation() const { return incarnation_; }
  const std::string& domain() const { return domain_; }
  void SetDomain(std::string domain);

  // Every turn, before the rest: membership, leader, links. What this node remembered
  // of members that left goes; a new leader gets what waited for one.
  void SetView(uint64_t now_ms, const View& view);
  // A route was bound (here, or the directory resolved it to a member): stanzas
  // waiting for it that were bound elsewhere, or nowhere, go there.
  void RouteBound(uint64_t now_ms, std::string_view address);
  // A stanza a shard routed to `node`. Taken into custody, or bounced at once. `to`: the
  // stanza's raw `to` attribute when the caller read it already (nullopt: read here);
  // `route_address`: router::RouteAddressOf(*to, domain()) when the caller has it (the
  // route it resolved `to` to; empty: found here).
  void Forward(uint64_t now_ms, SenderId sender, NodeId node, std::string_view bytes,
               std::optional<std::string_view> to = std::nullopt,
               std::string_view route_address = {});
  // A relay frame (kStanza, kAck, kAckRelay, kAbort) from lane `from` of a member, sent
  // to this lane.
  void OnFrame(uint64_t now_ms, Lane from, FrameType type, std::string_view payload);
  // Resends, deadlines, acknowledgements: every turn.
  void Tick(uint64_t now_ms);

  Ready TakeReady();

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
  // Answers to send this turn: per (lane to send to, origin lane, incarnation), via relay
  // when the origin is not the lane they go to.
  struct AnswerKey {
    Lane to;
    Lane origin;
    uint64_t incarnation;
    auto operator<=>(const AnswerKey&) const = default;
  };

  // Custody.
  void TakeInto(uint64_t now_ms, SenderId sender, NodeId node, std::string_view bytes,
                std::optional<std::string_view> to, std::string_view route_address = {});
  void SendEntry(uint64_t now_ms, Entry& entry);
  void SendAbort(uint64_t now_ms, Entry& entry, std::optional<Lane> except);
  bool Retry(uint64_t now_ms, Entry& entry);  // true: finished here
  void Rename(Entry& entry);
  void Hold(Entry& entry);  // into holding_
  void Unhold(Entry& entry);
  std::map<uint64_t, Entry>::iterator FindSequence(uint64_t sequence);
  std::map<uint64_t, Entry>::iterator Finish(std::map<uint64_t, Entry>::iterator it);
  void BounceEntry(uint64_t now_ms, const Entry& entry, std::string_view reason);
  void OnAnswers(uint64_t now_ms, Lane answerer, const AnswerFrame& frame);
  // The floor sent to `destination`: the lowest sequence bound for it (sent there or
  // not yet); next_sequence_ if none.
  uint64_t FloorFor(Lane destination) const;
  // The lane the entry leaves on: its own (direct), or the leader's for its address.
  std::optional<Lane> NextHop(const Entry& entry) const;
  bool Linked(NodeId node) const { return view_.linked.count(node) != 0; }
  uint32_t LanesOf(NodeId node) const;
  // The lane of member `node` for `address`: the shard that owns it there.
  Lane LaneOf(NodeId node, std::string_view address) const;
  // A member's lane below its lane count (this one's own, too).
  bool LaneExists(Lane lane) const;

  // Destination.
  void OnStanza(Lane from, const StanzaFrame& frame);
  void OnAbort(Lane from, const AbortFrame& frame);
  Window* WindowOf(Lane origin, uint64_t incarnation, uint64_t floor);
  void Answer(Lane from, Lane origin, uint64_t incarnation, uint64_t sequence, Outcome outcome);
  void FlushAnswers();
  void SendAnswers(const AnswerKey& key, const AnswerFrame& frame);
  bool SpeaksFor(Lane from, Lane named) const;
  bool Admits(Lane from, Lane origin, Lane destination);
  bool MayPassOn(uint8_t hops, Lane origin, Lane destination) const;
  // Forgets what the relay kept of members that left, and gives up waiting for lanes that
  // are gone (their node left, or has fewer now).
  void ForgetGoneLanes();
  void Send(Lane to, FrameType type, std::string payload);
  bool Accepts(const xmpp::Stanza& stanza, std::string_view bytes, std::string* why);

  void Log(std::string event, std::string fields);

  const Lane self_;
  const uint64_t incarnation_;
  std::string domain_;
  const Options options_;
  const RouteLookup& routes_;
  View view_;
  NodeId last_leader_ = raft::kNoNode;
  bool leader_resend_pending_ = false;
  uint64_t last_service_ms_ = 0;
  size_t resend_budget_ = 0;

  uint64_t next_sequence_ = 1;
  std::map<uint64_t, Entry> custody_;  // by sequence
  // (custody_ is a std::map: its iterators and entries must outlive insertions, which
  // an error reply's TakeInto makes while a caller holds them. So the indexes below are
  // lists through the entries themselves: no allocation, no search per stanza.)
  struct EntryList {
    Entry* first = nullptr;
    Entry* last = nullptr;
    using Link = Entry* Entry::*;  // one of an entry's two pairs of links
    bool empty() const { return first == nullptr; }
    void Append(Entry& entry, Link prev, Link next);
    void Remove(Entry& entry, Link prev, Link next);
  };
  // Per route: the entries for it, oldest first (never an empty list).
  absl::flat_hash_map<std::string, EntryList> custody_by_address_;
  absl::btree_map<uint64_t, uint64_t> resequenced_;  // a renamed entry's sequence -> its key
  // Per destination lane: the entries bound for it, by sequence (never an empty list). An
  // entry is held only with a sequence newer than every other (taken in, or renamed), so
  // appending keeps the order and the first is the floor.
  std::map<Lane, EntryList> holding_;
  size_t custody_bytes_ = 0;

  // Per origin lane: its incarnations' windows (at most incarnations_max, newest kept).
  std::map<Lane, std::map<uint64_t, Window>> windows_;
  std::map<AnswerKey, std::vector<std::pair<uint64_t, Outcome>>> answers_;  // this turn's

  std::unique_ptr<xmpp::RelayedStanzaChecker> checker_;
  Ready ready_;
  Stats stats_;
};

}  // namespace stanzad::cluster::relay

#endif  // STANZAD_CLUSTER_RELAY_RELAY_H_
