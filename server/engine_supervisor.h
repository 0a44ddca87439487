// EngineSupervisor: starts, restarts and stops the io_uring engine (net/engine.h) so that
// it serves what the node's configuration says, and owns everything the engine's shards
// share with the control thread: the router configuration and data plane they read
// (publishers), their counters (the router's, the data links', the relay lanes'), and the
// records that wait for their queues (shard_mail.h).
//
// It promises: after Apply, the engine runs with one listener set per listen address
// (call bridges, clients, clients with direct TLS when --c2s_tls_port is set) plus the
// cluster data port when given one, or does not run and not_serving_reason() says why in
// the operator's terms. A failed start (a port taken) may be retried with RetryDue. Each
// start takes a new incarnation (server/state_dir.h) for the shards' relay lanes. What
// the rest of the node must do as the shards stop and start (routes, the data plane) it
// is told through Observer, in the order of the calls there.
//
// It decides nothing about the cluster or the configuration's contents beyond "may this
// node serve": those stay with NodeState.
//
// Thread: the control thread only. The publishers and counters it hands out may be read
// from any thread (the shards', the metrics server's) as long as it lives.
#ifndef STANZAD_SERVER_ENGINE_SUPERVISOR_H_
#define STANZAD_SERVER_ENGINE_SUPERVISOR_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "admin/node_config.h"
#include "cluster/data/data_links.h"
#include "cluster/data/data_plane.h"
#include "net/engine.h"
#include "router/router_shard.h"
#include "server/daemon_options.h"
#include "server/node_shard.h"
#include "server/route_driver.h"
#include "server/shard_mail.h"

namespace stanzad::server {

class EngineSupervisor {
 public:
  // What the rest of the node does as the shards stop and start (NodeState).
  class Observer {
   public:
    virtual ~Observer() = default;
    // The shards stopped: the bridges bound on them are gone.
    virtual void OnEngineStopped() = 0;
    // The shards are about to start, with a new incarnation(): what they read as they
    // start (the data plane) is published now.
    virtual void OnEngineStarting() = 0;
    // The shards run and know nothing yet of the routes of other nodes.
    virtual void OnEngineStarted() = 0;
  };

  // `options` outlives this. The router configuration is empty until published.
  explicit EngineSupervisor(const DaemonOptions& options);
  EngineSupervisor(const EngineSupervisor&) = delete;
  EngineSupervisor& operator=(const EngineSupervisor&) = delete;

  // Starts, restarts or stops the engine to match `config`; `data_listener`: the cluster
  // data port to open as well (when the cluster is enabled and has an address).
  void Apply(const NodeConfig& config, const std::optional<net::Endpoint>& data_listener,
             Observer& observer);
  // Stops the engine if it runs; records still waiting for its shards go (logged when
  // stanzas were among them).
  void Stop(Observer& observer);
  // A start that failed (a listener could not be opened) is tried again every 5 s.
  bool RetryDue(std::chrono::steady_clock::time_point now) const;

  bool serving() const { return engine_ != nullptr; }
  // Why the engine does not run (empty while it does).
  const std::string& not_serving_reason() const { return not_serving_reason_; }
  // The running engine (null when none runs), and the tag of each of its listeners, in
  // the order of its listening_endpoints().
  const net::Engine* engine() const { return engine_.get(); }
  const std::vector<int>& listener_tags() const { return listener_tags_; }
  // The last start's incarnation (0 before the first).
  uint64_t incarnation() const { return incarnation_; }
  int shards() const { return shards_; }

  // What the shards read.
  router::RouterConfigPublisher& router_config() { return router_config_; }
  const router::RouterConfigPublisher& router_config() const { return router_config_; }
  cluster::DataPlanePublisher& data_plane() { return data_plane_; }
  const cluster::DataPlanePublisher& data_plane() const { return data_plane_; }
  // The shards' counters, one per shard (shards() of them).
  const router::RouterShardStats* router_stats() const { return router_stats_.get(); }
  const cluster::DataLinkStats* data_link_stats() const { return data_link_stats_.get(); }
  const LaneStats* lane_stats() const { return lane_stats_.get(); }

  // The shards, through the records that wait for their queues (records for a node that
  // does not serve are dropped).
  MailedShards Shards() { return MailedShards(engine_.get(), mail_, shards_); }
  // `record` to every shard.
  void PostToAllShards(const router::ShardRecord& record);
  // kDataPlaneChanged to every shard: data_plane() holds a new configuration.
  void NotifyDataPlaneChanged();
  // The records the shards posted to the control thread; none while not serving.
  int control_fd() const { return engine_ ? engine_->control_fd() : -1; }
  void DrainControl(const std::function<void(int, const net::CrossShardMessage&)>& handler);

 private:
  static constexpr size_t kMailRecordsFull = 65536;  // waiting: the relay takes no more

  const DaemonOptions& options_;
  const int shards_;
  router::RouterConfigPublisher router_config_;
  cluster::DataPlanePublisher data_plane_;
  std::unique_ptr<router::RouterShardStats[]> router_stats_;
  std::unique_ptr<cluster::DataLinkStats[]> data_link_stats_;
  std::unique_ptr<LaneStats[]> lane_stats_;
  ShardMail mail_{shards_, kMailRecordsFull};  // records the shards' queues did not take yet
  std::unique_ptr<net::Engine> engine_;
  std::vector<int> listener_tags_;  // of the running engine's listeners, in order
  std::string not_serving_reason_;
  std::chrono::steady_clock::time_point last_start_attempt_;
  uint64_t incarnation_ = 0;  // the running engine's lanes' (NextIncarnation)
};

}  // namespace stanzad::server

#endif  // STANZAD_SERVER_ENGINE_SUPERVISOR_H_
