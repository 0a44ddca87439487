#include "server/control_loop.h"

#include <poll.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/base/clock.h"
#include "core/base/concat.h"
#include "core/base/log.h"

namespace stanzad::server {

void ControlLoop::Run(const std::atomic<bool>& stop) {
  std::vector<pollfd> fds;
  // Each step's time in this turn: a turn long enough to cost the leader its quorum check
  // (an election timeout is 300 ms) is logged with where the time went.
  std::array<int64_t, kSteps> step_ms{};
  auto step_start = std::chrono::steady_clock::now();
  const auto step_done = [&](Step step) {
    const auto now = std::chrono::steady_clock::now();
    step_ms[static_cast<size_t>(step)] =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - step_start).count();
    step_start = now;
  };
  while (!stop.load()) {
    fds.assign(1, pollfd{engine_.control_fd(), POLLIN, 0});
    const bool cluster_active = node_.cluster_active();
    const size_t cluster_first = fds.size();
    if (cluster_active) node_.AppendClusterPollFds(&fds);
    const size_t admin_first = fds.size();
    admin_.AppendPollFds(&fds);
    poll(fds.data(), fds.size(), 10);
    const uint64_t now_ms = MonotonicMs();
    step_start = std::chrono::steady_clock::now();
    const auto turn_start = step_start;
    engine_.DrainControl(
        [this](int, const net::CrossShardMessage& message) { node_.OnShardRecord(message); });
    step_done(Step::kShards);
    admin_.HandlePoll(
        fds, admin_first, now_ms,
        [this](const admin::AdminRequest& request, const admin::PeerCredentials&,
               admin::AdminServer::Reply reply) { dispatcher_.Handle(request, std::move(reply)); });
    step_done(Step::kAdmin);
    // A command may have changed the cluster since the poll: asked again.
    const bool clustered = cluster_active && node_.cluster() != nullptr && node_.cluster_active();
    if (clustered) node_.ClusterTurn(fds, cluster_first, now_ms);
    step_done(Step::kCluster);
    node_.DeferredWork();
    step_done(Step::kDeferred);
    node_.DriveRoutes(clustered);
    node_.PublishDataPlane(clustered);
    step_done(Step::kRoutes);
    const auto now = std::chrono::steady_clock::now();
    metrics_.Turn(node_, now);
    node_.RetryEngineStart(now);
    step_done(Step::kMetrics);
    const int64_t turn_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(step_start - turn_start).count();
    if (turn_ms >= kSlowTurnMs) {
      LogEvent(LogLevel::kWarning, "control_turn_slow",
               Concat("ms=", std::to_string(turn_ms), " shards_ms=", std::to_string(step_ms[0]),
                      " admin_ms=", std::to_string(step_ms[1]), " cluster_ms=",
                      std::to_string(step_ms[2]), " deferred_ms=", std::to_string(step_ms[3]),
                      " routes_ms=", std::to_string(step_ms[4]),
                      " metrics_ms=", std::to_string(step_ms[5])));
    }
  }
}

}  // namespace stanzad::server
