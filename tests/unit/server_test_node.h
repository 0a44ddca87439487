// TestNode: the control thread's parts of a stanzad node (server/) assembled in a temporary
// state dir the way cmd/stanzad.cc assembles them: EngineSupervisor, MetricsPublisher,
// NodeState and AdminDispatcher. The engine never runs (the configuration never asks the
// node to serve), there is no metrics port and no admin socket: a test hands commands to
// the dispatcher and drives the cluster's turns itself, on a clock of its own that moves
// 10 ms per turn, so nothing waits on the wall clock.
//
// The cluster port is 127.0.0.1:0 (the kernel picks a free one), so tests run side by side.
#ifndef STANZAD_TESTS_UNIT_SERVER_TEST_NODE_H_
#define STANZAD_TESTS_UNIT_SERVER_TEST_NODE_H_

#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "admin/admin_socket.h"
#include "admin/node_config.h"
#include "server/admin_dispatcher.h"
#include "server/daemon_options.h"
#include "server/engine_supervisor.h"
#include "server/metrics_publisher.h"
#include "server/node_state.h"
#include "tests/unit/temp_dir.h"

namespace stanzad::server {

// What a node that was given a domain and a listen address has, without serving.
inline NodeConfig ConfiguredNotServing() {
  NodeConfig config;
  config.domain = "example.com";
  config.listen = {"127.0.0.1"};
  return config;
}

inline DaemonOptions TestNodeOptions(const std::string& state_dir) {
  DaemonOptions options;
  options.state_dir = state_dir;
  options.shards = 1;
  options.cluster_port = 0;
  options.cluster_data_port = 0;
  options.component_port = 0;
  options.c2s_port = 0;
  return options;
}

class TestNode {
 public:
  // Turns Drive takes at most before it gives up: 100 s of the node's clock, where a
  // single node's election takes 0.6 s at most.
  static constexpr int kTurnsMax = 10000;

  explicit TestNode(NodeConfig config = ConfiguredNotServing())
      : options_(TestNodeOptions(dir_.path())),
        engine_(options_),
        metrics_(engine_, "", started_),
        node_(options_, std::move(config), std::string(64, 'a'), &engine_, &metrics_),
        dispatcher_(options_, node_, engine_, started_) {}
  TestNode(const TestNode&) = delete;
  TestNode& operator=(const TestNode&) = delete;

  const testing_util::TempDir& dir() const { return dir_; }
  const DaemonOptions& options() const { return options_; }
  NodeState& node() { return node_; }
  EngineSupervisor& engine() { return engine_; }
  MetricsPublisher& metrics() { return metrics_; }
  AdminDispatcher& dispatcher() { return dispatcher_; }
  std::string StorePath() const { return dir_.Path("cluster"); }

  // What cmd/stanzad.cc does before its loop: the cluster store opened, the engine told
  // the configuration, the first metrics snapshot. An error: OpenCluster's.
  absl::Status Start() {
    absl::Status opened = node_.OpenCluster();
    node_.ApplyEngineState();
    metrics_.Start(node_);
    return opened;
  }

  // One turn of the control loop, without the admin socket (server/control_loop.cc).
  void Turn() {
    std::vector<pollfd> fds;
    const bool cluster_active = node_.cluster_active();
    if (cluster_active) node_.AppendClusterPollFds(&fds);
    poll(fds.data(), fds.size(), 0);
    now_ms_ += 10;
    const bool clustered = cluster_active && node_.cluster() != nullptr && node_.cluster_active();
    if (clustered) node_.ClusterTurn(fds, 0, now_ms_);
    node_.DeferredWork();
    node_.DriveRoutes(clustered);
    node_.PublishDataPlane(clustered);
  }

  // Turns until `done` holds; false when it never did within kTurnsMax.
  bool Drive(const std::function<bool()>& done) {
    for (int turn = 0; turn < kTurnsMax; ++turn) {
      if (done()) return true;
      Turn();
    }
    return done();
  }

  // Runs one command as stanzactl sends it, turning until it is answered.
  admin::AdminResponse Run(std::vector<std::string> args, bool json = false) {
    std::optional<admin::AdminResponse> answer;
    int answers = 0;
    dispatcher_.Handle(admin::AdminRequest{std::move(args), json},
                       [&answer, &answers](const admin::AdminResponse& response) {
                         answer = response;
                         ++answers;
                       });
    EXPECT_TRUE(Drive([&] { return answer.has_value(); })) << "the command was never answered";
    EXPECT_EQ(answers, 1) << "a command is answered exactly once";
    return answer.value_or(admin::AdminResponse{-1, "(no answer)"});
  }

  // `cluster enable`, then `cluster initialize`: a cluster of this one node, which leads it.
  void InitializeCluster() {
    const admin::AdminResponse enabled = Run({"cluster", "enable"});
    ASSERT_EQ(enabled.exit_code, 0) << enabled.output;
    const admin::AdminResponse initialized = Run({"cluster", "initialize"});
    ASSERT_EQ(initialized.exit_code, 0) << initialized.output;
    ASSERT_TRUE(node_.cluster()->is_member());
  }

 private:
  testing_util::TempDir dir_{"stanzad_server"};
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  // The cluster node starts from the monotonic clock; its turns go on from there.
  uint64_t now_ms_ = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(started_.time_since_epoch()).count());
  const DaemonOptions options_;
  EngineSupervisor engine_;
  MetricsPublisher metrics_;
  NodeState node_;
  AdminDispatcher dispatcher_;
};

}  // namespace stanzad::server

#endif  // STANZAD_TESTS_UNIT_SERVER_TEST_NODE_H_
