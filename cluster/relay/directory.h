// The route directory: which member holds each route (a bridge, a client's full JID, an
// account with available resources), kept from the members' kRoutes frames.
//
// Pure, as the relay is (relay.h): no clock, no I/O, no flags. The driver (the control
// thread, or tests/simulation/relay_simulator.cc) tells it the cluster's view, the time
// (Tick), the routes this node's shards bind and unbind, and the kRoutes frames members
// send; it answers with kRoutes frames to send and route changes for the shards
// (TakeReady). The relay asks it where routes are (RouteLookup) and is told when one is
// bound (Relay::RouteBound).
//
// Rules:
//   - Each member's announcements change only its own claims. When several members claim
//     one single-holder route, the newest claim to arrive wins; a withdrawal falls back
//     to the claims that remain, so a stale node re-announcing and withdrawing never
//     leaves a route nowhere. An account may have any number of holders.
//   - A member that links up is sent every route of this node, in frames of at most
//     routes_frame_bytes_max (or one route), sent while less than
//     routes_queued_bytes_max waits on its link (a link's queue is bounded: 16 MiB); the
//     receiver claims each part as it comes and withdraws what the whole set lacks with
//     its last part. Changes made meanwhile go as they happen.
//   - A member whose link is down loses its account routes (its clients reconnect
//     elsewhere), once per outage, until its set comes back with the link; a member that
//     leaves loses every route.
//   - A route bound here wins over every claim (NodeOf answers 0).
//   - Self-healing: a change lost on a link that stays up (a queue that overflowed, not a
//     closed connection) is found and repaired. Every digest_interval_ms each linked
//     member is sent a digest of this node's routes (wire.h's RouteDigest: their count
//     and a sum of a fixed 64-bit hash of each, kept as routes come and go, so a digest
//     costs O(1)), except a member a route set is under way to: its last part is what
//     makes that member whole. The receiver keeps the same digest of each member's
//     claims and compares. A link keeps its frames in order, so a digest follows every
//     change sent before it, and a receiver that lost none matches; still, a mismatch
//     seen once is not acted on (a race this argument missed, such as frames of an old
//     and a new connection, must not become a request storm): after two mismatched
//     digests in a row from a member, and only then, it asks that member for its whole
//     set (a kSetRequest), and counts again from zero. So it asks a member at most once
//     per two digests it hears from it. A mismatch the member's set does not repair (a
//     route this node refuses) must not become a loop either: each time its whole set
//     came (or a routes frame of it was refused) and the digests still differ, twice as
//     many mismatches are needed before the next request (2, 4, 8 ... up to 128
//     digests), until a digest matches again; the second such time is logged
//     (route_digest_mismatch_persists). A set lost on the way does not slow the asking:
//     the next is asked for two digests later, as the first was.
//   - A digest from a member whose set is arriving here means the rest of that set was
//     lost (the member sends none while its set is under way, and the link keeps the
//     order): the set is given up (what its parts claimed stays claimed) and the digest
//     compared. A digest or request from a member whose link is down here is ignored:
//     the whole set comes with the link.
//   - A request starts a set to that member unless one is under way to it; then it is
//     ignored, not restarted: repeated requests cannot keep a set from finishing, and
//     the set under way makes the asker whole with its last part (if that is lost too,
//     the digest after it tells). So a request costs at most one set in flight per
//     member, paced like every set.
#ifndef STANZAD_CLUSTER_RELAY_DIRECTORY_H_
#define STANZAD_CLUSTER_RELAY_DIRECTORY_H_

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/relay/types.h"

namespace stanzad::cluster::relay {

struct DirectoryOptions {
  size_t routes_frame_bytes_max = 256 << 10;  // a kRoutes frame of a route set
  size_t routes_queued_bytes_max = 4 << 20;   // a route set waits while more is queued
  // How often each linked member is sent a digest of this node's routes (17 bytes): a
  // lost change is repaired within two of these, and the time its set takes.
  uint64_t digest_interval_ms = 1000;
};

class Directory final : public RouteLookup {
 public:
  explicit Directory(DirectoryOptions options = {});
  ~Directory() override;
  Directory(const Directory&) = delete;
  Directory& operator=(const Directory&) = delete;

  // Every turn, before the rest: members that left lose their routes, a member whose
  // link is down its account routes.
  void SetView(const View& view);
  // A route bound (up) or unbound on this node's shards: the members are told.
  void LocalRoute(bool up, std::string_view address);
  // The shards stopped: every route of this node is gone (the members are told).
  void DropLocalRoutes();
  // A link to `peer` came up: it is sent every route of this node (Tick sends them; a
  // member that becomes linked in the view gets them too).
  void LinkUp(NodeId peer);
  // A kRoutes frame from member `from` (a bad one changes nothing): routes, a digest or
  // a request for this node's set.
  void OnRoutes(NodeId from, std::string_view payload);
  // Every turn, with the driver's clock (milliseconds, never going back): route sets
  // under way go on as their links' queues allow, and digests go when one is due (the
  // first digest_interval_ms after the first Tick). A time and not a count of turns: the
  // control loop turns whenever something happens, so a count would send more digests
  // the busier the node.
  void Tick(uint64_t now_ms);
  // Frames (kRoutes), route changes and log lines; nothing else is filled.
  Ready TakeReady();

  std::optional<NodeId> NodeOf(std::string_view address) const override;
  bool Claims(NodeId node, const std::string& address) const override;
  // Every route on another member the shards should know (for shards that just started).
  std::vector<RouteChange> RemoteRoutes() const;
  // CHECKs the invariants (the digests against the routes they sum up: O(routes)); for
  // tests and the simulator.
  void CheckInvariants() const;
  // This node's routes in brief, as its digests send them.
  const RouteDigest& local_digest() const { return local_digest_; }

 private:
  class ClaimTable;

  bool Linked(NodeId node) const { return view_.linked.count(node) != 0; }
  void SendRouteSets();
  void SendRouteSet(NodeId peer);
  void SendDigests();
  void OnDigest(NodeId from, const RouteDigest& digest);
  void OnSetRequest(NodeId from);
  void Replace(NodeId from, const std::set<std::string>& now);

  // Mismatched digests in a row from one member before it is asked for its set.
  static constexpr int kMismatchesBeforeRequest = 2;
  // After each request that the member's set answered and the digests still differ,
  // twice as many mismatches before the next, up to 2^this times kMismatchesBeforeRequest
  // (128 digests).
  static constexpr int kRequestBackoffMax = 6;
  int MismatchesBeforeRequest(NodeId from) const;

  const DirectoryOptions options_;
  View view_;
  std::set<std::string> local_routes_;
  RouteDigest local_digest_;                // of local_routes_
  std::optional<uint64_t> next_digest_ms_;  // none before the first Tick
  // Per member, the mismatched digests in a row heard from it (missing: none). Only
  // linked members, fewer than MismatchesBeforeRequest each.
  std::map<NodeId, int> digest_mismatches_;
  // Per member, the requests since its digest last matched that its set answered and did
  // not repair (missing: none): such a mismatch (a route this node cannot take) is asked
  // about less and less often, never in a loop. Only linked members.
  std::map<NodeId, int> unrepaired_;
  // Members whose whole set came (or a routes frame this node refused) since this node
  // last asked them or their digest matched. Only linked members.
  std::set<NodeId> answered_;
  std::unique_ptr<ClaimTable> claims_;
  std::set<NodeId> unlinked_;  // members whose account routes were dropped this outage
  // Route sets being sent: per member, the last address sent (nullopt: none yet).
  std::map<NodeId, std::optional<std::string>> route_sets_out_;
  // Route sets arriving in several frames: per member, what it has sent so far (with
  // the changes it sent meanwhile). At most every route the member has.
  std::map<NodeId, std::set<std::string>> route_sets_in_;
  Ready ready_;
};

}  // namespace stanzad::cluster::relay

#endif  // STANZAD_CLUSTER_RELAY_DIRECTORY_H_
