// ControlLoop: the control thread's loop. One poll, at most 10 ms (the Raft tick), for
// the engine's records to the control thread, the cluster links and the admin socket
// with its clients; then one turn, always in this order:
//   1. the shards' records (routes bound and unbound, data links lost) → NodeState;
//   2. the admin socket: requests read as their bytes arrive → AdminDispatcher;
//   3. the cluster, when it runs: its links read, its tick, its configuration mirrored;
//      then what a change left for later (NodeState::DeferredWork);
//   4. the routes between nodes driven, what waits for the shards flushed;
//   5. the data plane published if it changed (a new leader reaches the lanes at once);
//   6. the metrics snapshot (every 100 ms), a metrics port that failed tried again;
//   7. an engine start that failed (a port taken) tried again.
// It holds no state of the node and decides nothing: each step is the part's. A turn that
// takes kSlowTurnMs or more is logged (event=control_turn_slow) with each step's time.
//
// Thread: the control thread (the one that calls Run). Every part outlives Run.
#ifndef STANZAD_SERVER_CONTROL_LOOP_H_
#define STANZAD_SERVER_CONTROL_LOOP_H_

#include <atomic>

#include "admin/admin_socket.h"
#include "server/admin_dispatcher.h"
#include "server/engine_supervisor.h"
#include "server/metrics_publisher.h"
#include "server/node_state.h"

namespace stanzad::server {

class ControlLoop {
 public:
  ControlLoop(admin::AdminServer& admin, AdminDispatcher& dispatcher, NodeState& node,
              EngineSupervisor& engine, MetricsPublisher& metrics)
      : admin_(admin), dispatcher_(dispatcher), node_(node), engine_(engine), metrics_(metrics) {}
  ControlLoop(const ControlLoop&) = delete;
  ControlLoop& operator=(const ControlLoop&) = delete;

  // Turns until `stop` is set (a signal handler may set it); returns after the turn in
  // which it was seen.
  void Run(const std::atomic<bool>& stop);

  // A turn this long is logged (control_turn_slow) with the time of each step: at a third
  // of the shortest election timeout it already delays heartbeats.
  static constexpr int64_t kSlowTurnMs = 100;

 private:
  enum class Step { kShards, kAdmin, kCluster, kDeferred, kRoutes, kMetrics };
  static constexpr size_t kSteps = 6;
  admin::AdminServer& admin_;
  AdminDispatcher& dispatcher_;
  NodeState& node_;
  EngineSupervisor& engine_;
  MetricsPublisher& metrics_;
};

}  // namespace stanzad::server

#endif  // STANZAD_SERVER_CONTROL_LOOP_H_
