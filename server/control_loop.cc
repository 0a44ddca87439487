#include "server/control_loop.h"

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <vector>

namespace stanzad::server {
namespace {

uint64_t MonotonicMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

void ControlLoop::Run(const std::atomic<bool>& stop) {
  std::vector<pollfd> fds;
  while (!stop.load()) {
    fds.assign(1, pollfd{engine_.control_fd(), POLLIN, 0});
    const bool cluster_active = node_.cluster_active();
    const size_t cluster_first = fds.size();
    if (cluster_active) node_.AppendClusterPollFds(&fds);
    const size_t admin_first = fds.size();
    admin_.AppendPollFds(&fds);
    poll(fds.data(), fds.size(), 10);
    const uint64_t now_ms = MonotonicMs();
    engine_.DrainControl(
        [this](int, const net::CrossShardMessage& message) { node_.OnShardRecord(message); });
    admin_.HandlePoll(
        fds, admin_first, now_ms,
        [this](const admin::AdminRequest& request, const admin::PeerCredentials&,
               admin::AdminServer::Reply reply) { dispatcher_.Handle(request, std::move(reply)); });
    // A command may have changed the cluster since the poll: asked again.
    const bool clustered = cluster_active && node_.cluster() != nullptr && node_.cluster_active();
    if (clustered) node_.ClusterTurn(fds, cluster_first, now_ms);
    node_.DeferredWork();
    node_.DriveRoutes(clustered);
    node_.PublishDataPlane(clustered);
    const auto now = std::chrono::steady_clock::now();
    metrics_.Turn(node_, now);
    node_.RetryEngineStart(now);
  }
}

}  // namespace stanzad::server
