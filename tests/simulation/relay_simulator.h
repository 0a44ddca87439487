// A deterministic simulator for the relay (cluster/relay/relay.h).
//
// N nodes (3 to 5), each with one to lanes_max real Relays (its lanes: one per shard, as
// docs/data-links.md has them; a restart may change the count) sharing one route
// directory, one simulated clock, and links that are FIFO queues with a latency per
// direction, carrying every lane's frames between two nodes. A stanza is taken by a random
// lane of its sender's node. From one seed it breaks links (what was in flight is
// lost; both sides get LinkUp when the link heals), drops every frame one way while the link
// stays up, silences a node for longer than every hold, delays a direction, changes or loses
// the leader (each node learns of it at its own time), moves bridges between nodes (unbound on
// one, bound on another later: the announcements race), crashes nodes (sometimes in the middle
// of a turn, after its frames left and before its deliveries reached the shards) and restarts
// them with a larger incarnation. Bridges on the nodes send one another stanzas, each with a
// unique id.
//
// The oracle, after every event:
//   - no stanza delivered twice, none both delivered and bounced, none bounced twice, except
//     in the header's documented windows: the delivering node crashed after delivering (its
//     memory went with it), or the origin gave up ("unconfirmed") while a fault cut it or the
//     destination off;
//   - a delivery goes to a node where the bridge really is bound at that moment, and never
//     on another node for a stanza whose `from` is not of the cluster's domain (its origin may
//     deliver it itself when the bridge comes to it: its own session vouched for it);
//   - a bounce comes from the stanza's origin lane, in the incarnation that accepted it;
//   - Relay::CheckInvariants(), and custody bytes <= hold_bytes_max;
//   - no stanza is sent by its origin more often than its resend pacing allows (with room
//     for the resends that route and leader changes bring): no answer/resend storm;
//   - a node asks a member for its route set at most once per two route digests it heard
//     from that member (directory.h's rule): no request storm.
// At quiet points (every fault healed, nothing moved for a while) every node resolves every
// bridge to where it really is (NodeOf and the shards' table built from route_changes). At
// the end (healed, no new stanzas, longer than hold + abort wait) every stanza was delivered
// or bounced, unless its origin crashed while it held it or its destination died between
// acknowledging and delivering it; every custody is empty.
//
// A run stops at its first violation. Same seed, same run: no wall clock, no unordered
// iteration.
#ifndef STANZAD_TESTS_SIMULATION_RELAY_SIMULATOR_H_
#define STANZAD_TESTS_SIMULATION_RELAY_SIMULATOR_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "cluster/relay/directory.h"
#include "cluster/relay/relay.h"
#include "tests/simulation/raft_simulator.h"  // Rng

namespace stanzad::cluster::relay::sim {

using raft::sim::Rng;

struct RelaySimOptions {
  uint64_t seed = 1;
  int nodes_min = 3;
  int nodes_max = 5;
  uint32_t lanes_max = 3;  // per node, 1 to this, drawn per seed and on every restart
  // Per seed: direct or leader mode, a small hold_bytes_max now and then.
  bool vary_per_seed = true;
  bool direct = false;  // when !vary_per_seed

  // The relay's timers, scaled down so that a seed runs in a few milliseconds.
  uint64_t hold_ms = 800;
  uint64_t abort_wait_ms = 1500;
  uint64_t resend_after_ms = 150;
  uint64_t service_every_ms = 50;
  int64_t tick_ms = 50;

  int64_t latency_min_ms = 1;
  int64_t latency_max_ms = 20;
  int64_t delay_max_ms = 300;  // added to one direction by a delay fault

  // The run: `rounds` of chaos, each followed by healing and a quiet check of the routes;
  // then the workload stops and the cluster settles.
  bool faults = true;
  int rounds = 3;
  int64_t chaos_ms = 3000;
  int64_t quiet_ms = 800;
  int64_t fault_interval_ms = 120;
  int64_t send_interval_ms = 25;  // mean gap between two stanzas
  int routes = 5;                 // bridges and one client resource
  // One-way loss and silence heal by breaking the link (as a TCP keepalive would) unless
  // this is set: then the link just starts carrying frames again, and only the route
  // digests (directory.h) repair what was lost.
  bool heal_loss_without_relink = false;
  // The directory's; well under quiet_ms, by which the routes must have converged.
  uint64_t digest_interval_ms = 100;

  size_t trace_lines = 0;  // keep the last ones (for a replay)
};

struct RelaySimStats {
  uint64_t events = 0;
  uint64_t stanzas = 0;
  uint64_t delivered = 0;
  uint64_t bounced = 0;
  uint64_t refused = 0;  // bounced at Forward: custody full
  uint64_t frames_sent = 0;
  uint64_t frames_lost = 0;
  uint64_t crashes = 0;
  uint64_t mid_turn_crashes = 0;
  uint64_t link_breaks = 0;
  uint64_t one_way_losses = 0;
  uint64_t isolations = 0;
  uint64_t delays = 0;
  uint64_t leader_changes = 0;
  uint64_t leaderless = 0;
  uint64_t bridge_moves = 0;
  uint64_t lanes = 0;               // lanes that ran (every node's, every life)
  uint64_t route_digests = 0;       // kRoutes digests sent
  uint64_t route_set_requests = 0;  // kRoutes set requests sent
  // Outcomes the documented windows allowed.
  uint64_t window_duplicates = 0;
  uint64_t window_delivered_and_bounced = 0;
  uint64_t window_lost = 0;   // acknowledged, not delivered, the destination died
  uint64_t custody_lost = 0;  // in a crashed origin's custody, never resolved
  uint64_t unconfirmed = 0;   // Stats::unconfirmed summed

  void Add(const RelaySimStats& other);
  std::string ToString() const;
};

class RelaySimulator {
 public:
  explicit RelaySimulator(const RelaySimOptions& options);
  ~RelaySimulator();

  // The whole run. OK or the first violation ("kind: details").
  absl::Status Run();

  const RelaySimStats& stats() const { return stats_; }
  uint64_t fingerprint() const { return fingerprint_; }
  std::string TraceTail() const;
  bool direct() const { return relay_options_.direct; }
  int node_count() const { return static_cast<int>(nodes_.size()); }
  // A node had more than one lane at some point.
  bool several_lanes() const { return several_lanes_; }

 private:
  enum class EventType : uint8_t {
    kFrame,
    kTick,
    kSend,
    kFault,
    kHeal,  // one fault ends (arg: its record)
    kRestart,
    kLeaderView,  // a node learns the current leader
    kBind,        // a moving route arrives on its new node (peer: route, arg: generation)
    kCanDeliver,
    kQuiet,  // the end of a round of chaos: heal everything
    kCheckRoutes,
    kEnd,
  };

  struct Node {
    NodeId id = raft::kNoNode;
    bool alive = true;
    uint64_t incarnation = 1;
    std::unique_ptr<Directory> directory;       // before lanes: they read it
    std::vector<std::unique_ptr<Relay>> lanes;  // by shard
    uint32_t lane_count = 1;             // as it last ran (the membership's word while it is dead)
    NodeId leader_view = raft::kNoNode;  // the leader as this node knows it
    bool can_deliver = true;
    bool crash_mid_turn = false;  // dies in its next turn with deliveries, before them
    std::map<std::string, NodeId> shard_routes;  // built from route_changes
    std::vector<int64_t> crash_times_ms;
    int active_faults = 0;
    int64_t fault_end_ms = -1;      // when the last fault on this node ended
    uint64_t unconfirmed_seen = 0;  // summed over its lanes
  };
  struct Direction {
    int64_t latency_ms = 1;
    int64_t extra_ms = 0;           // delay faults
    int lossy = 0;                  // one-way loss or isolation faults: frames dropped
    int64_t last_arrival_ms = 0;    // FIFO
    size_t in_flight_bytes = 0;     // sent, not arrived (or lost) yet: the link's queue
    uint64_t valid_from_epoch = 0;  // older frames were lost with a broken link
  };
  struct Link {
    bool up = false;
    int breaks = 0;  // active link-break faults
    uint64_t epoch = 1;
  };
  struct Route {
    std::string address;
    NodeId at = raft::kNoNode;  // where it is bound now; kNoNode: nowhere (moving)
    uint64_t generation = 0;    // a pending bind of an older move is void
    SenderId sender = kNoSender;
  };
  struct Tracked {  // one stanza, by its number (id='s<number>')
    NodeId origin = raft::kNoNode;
    uint16_t origin_shard = 0;  // the lane that took it
    uint64_t incarnation = 0;
    int64_t accepted_ms = 0;
    size_t route = 0;
    bool foreign = false;  // from another domain: must never be delivered
    std::vector<std::pair<NodeId, int64_t>> deliveries;
    int bounces = 0;
    std::string bounce_reason;
    bool origin_crashed = false;  // in its origin's custody when the origin died
    bool lost_in_window = false;  // acknowledged (or bounced) in a turn its node died in
  };
  struct Event {
    EventType type = EventType::kTick;
    NodeId node = raft::kNoNode;
    NodeId peer = raft::kNoNode;
    uint16_t shard = 0;       // kFrame: the lane of `node` it is for
    uint16_t peer_shard = 0;  // kFrame: the lane of `peer` that sent it
    int64_t arg = 0;
    FrameType frame_type = FrameType::kStanza;
    std::string payload;
  };
  struct Fault {
    enum class Kind { kLinkBreak, kOneWayLoss, kIsolation, kDelay } kind = Kind::kLinkBreak;
    NodeId a = raft::kNoNode;
    NodeId b = raft::kNoNode;
    int64_t extra_ms = 0;
  };

  // Events.
  void Schedule(int64_t at_ms, EventType type, NodeId node, NodeId peer = 0, int64_t arg = 0);
  absl::Status Dispatch(Event& event);
  absl::Status OnFault();
  absl::Status OnSend();
  absl::Status HealFault(int64_t fault);
  absl::Status HealAll();

  // Node plumbing.
  View ViewOf(const Node& node) const;
  // A turn: SetView, `input`, Tick, TakeReady, then the Ready's effects.
  template <typename Input>
  absl::Status Turn(Node& node, Input input);
  // `routes`: the directory's outputs; `lanes`: each lane's, by shard.
  absl::Status Apply(Node& node, Ready routes, std::vector<Ready> lanes);
  void Transmit(Node& from, uint16_t from_shard, const Send& send);
  void MakeLanes(Node& node);
  absl::Status Crash(Node& node);
  absl::Status Restart(Node& node);
  absl::Status BreakLink(NodeId a, NodeId b, bool flush_from_a, bool flush_from_b);
  absl::Status UpLink(NodeId a, NodeId b);
  absl::Status Unbind(Route& route);
  absl::Status Bind(Route& route, NodeId node);
  void SetLeader(NodeId leader);
  Link& LinkOf(NodeId a, NodeId b);
  Direction& DirectionOf(NodeId from, NodeId to);
  void CheckFloorRises(Lane origin, uint64_t incarnation, Lane destination, uint64_t floor);
  void MarkFault(NodeId node, bool active);

  // The oracle.
  absl::Status OnDelivered(Node& node, const Delivery& delivery);
  absl::Status OnBounced(Node& node, uint16_t shard, const Bounce& bounce,
                         const std::string& reason);
  absl::Status CheckRoutes();
  absl::Status CheckEnd();
  bool CrashedSince(NodeId node, int64_t since_ms) const;
  bool FaultSince(NodeId node, int64_t since_ms) const;
  absl::Status Violation(const std::string& kind, const std::string& details);

  void Trace(const std::string& line);
  bool tracing() const { return options_.trace_lines > 0; }
  std::string Describe(FrameType type, const std::string& payload) const;

  RelaySimOptions options_;
  Options relay_options_;
  DirectoryOptions directory_options_;
  Rng rng_;
  int64_t now_ms_ = 0;
  uint64_t next_event_ = 0;
  uint64_t fingerprint_ = 0;
  std::map<std::pair<int64_t, uint64_t>, Event> queue_;  // (time, order)
  std::map<NodeId, Node> nodes_;
  std::map<std::pair<NodeId, NodeId>, Link> links_;            // a < b
  std::map<std::pair<NodeId, NodeId>, Direction> directions_;  // (from, to)
  std::vector<Route> routes_;
  std::vector<Tracked> tracked_;  // by stanza number
  // First-hop stanza frames per (origin lane, incarnation, sequence).
  std::map<std::tuple<Lane, uint64_t, uint64_t>, uint64_t> stanza_sends_;
  // Route digests each node heard from each member, and the set requests it sent that
  // member: (node, member).
  std::map<std::pair<NodeId, NodeId>, uint64_t> route_digests_heard_;
  std::map<std::pair<NodeId, NodeId>, uint64_t> route_set_requests_;
  // The highest floor each (origin lane, incarnation) sent each destination lane: floors
  // only rise.
  std::map<std::tuple<Lane, uint64_t, Lane>, uint64_t> floors_sent_;
  bool several_lanes_ = false;
  NodeId leader_ = raft::kNoNode;
  bool chaos_ = false;     // faults and moves happen
  bool workload_ = false;  // stanzas are sent
  int rounds_left_ = 0;
  int64_t next_fault_record_ = 0;
  std::map<int64_t, Fault> faults_;  // active, by record
  bool ended_ = false;
  RelaySimStats stats_;
  absl::Status violation_;
  std::deque<std::string> trace_;
};

}  // namespace stanzad::cluster::relay::sim

#endif  // STANZAD_TESTS_SIMULATION_RELAY_SIMULATOR_H_
