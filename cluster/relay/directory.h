// The route directory: which member holds each route (a bridge, a client's full JID, an
// account with available resources), kept from the members' kRoutes frames.
//
// Pure, as the relay is (relay.h): no clock, no I/O, no flags. The driver (the control
// thread, or tests/simulation/relay_simulator.cc) tells it the cluster's view, the routes
// this node's shards bind and unbind, and the kRoutes frames members send; it answers with
// kRoutes frames to send and route changes for the shards (TakeReady). The relay asks it
// where routes are (RouteLookup) and is told when one is bound (Relay::RouteBound).
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
  // A kRoutes frame from member `from` (a bad one changes nothing).
  void OnRoutes(NodeId from, std::string_view payload);
  // Route sets under way go on as their links' queues allow: every turn.
  void Tick();
  // Frames (kRoutes) and route changes; nothing else is filled.
  Ready TakeReady();

  std::optional<NodeId> NodeOf(std::string_view address) const override;
  bool Claims(NodeId node, const std::string& address) const override;
  // Every route on another member the shards should know (for shards that just started).
  std::vector<RouteChange> RemoteRoutes() const;
  // CHECKs the invariants; for tests and the simulator.
  void CheckInvariants() const;

 private:
  class ClaimTable;

  bool Linked(NodeId node) const { return view_.linked.count(node) != 0; }
  void SendRouteSets();
  void SendRouteSet(NodeId peer);
  void Replace(NodeId from, const std::set<std::string>& now);

  const DirectoryOptions options_;
  View view_;
  std::set<std::string> local_routes_;
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
