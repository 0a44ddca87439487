// NodeState: what this node is, as the control thread keeps it — its configuration
// (durable in the state dir before it is live), the SCRAM salt key, its cluster node (the
// cluster links, their TLS, the replicated configuration mirrored into its own), the
// route directory between nodes (server/route_driver.h) — and the publishing of all that
// to the shards: the router configuration, the data plane (cluster/data/data_plane.h)
// and the routes.
//
// Durability (docs/configuration-storage.md): Commit rewrites the whole config file; a
// change to one call bridge or user (CommitEdits) is a record appended to its journal and
// applied in place, also to the router configuration the shards read (two buffers: the one
// the shards gave back is brought up to date with the edits it missed), so its cost does not
// grow with the configuration. The journal is folded into the config file once it holds
// half as many bytes.
//
// It promises: Commit makes a configuration durable, then live (the shards see it, the
// engine restarts when its listeners change, the metrics snapshot shows it) before it
// returns, so a command answered "ok" is never lost by a crash and a scrape after the
// answer sees it. Every configuration change, whether from a command or mirrored from
// the cluster, goes through Commit and is logged as config_changed.
//
// It starts and stops no thread itself: the engine is the EngineSupervisor's, the poll
// is the ControlLoop's; NodeState is told of the engine's starts and stops
// (EngineSupervisor::Observer) and asks it to Apply the configuration.
//
// Thread: the control thread only.
#ifndef STANZAD_SERVER_NODE_STATE_H_
#define STANZAD_SERVER_NODE_STATE_H_

#include <poll.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "admin/node_config.h"
#include "cluster/node/cluster_node.h"
#include "net/engine.h"
#include "server/daemon_options.h"
#include "server/engine_supervisor.h"
#include "server/route_driver.h"

namespace stanzad::server {

class MetricsPublisher;

class NodeState final : private EngineSupervisor::Observer {
 public:
  // `salt_key`: LoadOrCreateSaltKey's. `options`, `engine` and `metrics` outlive this.
  // Publishes the router configuration (BuildRouterConfig) at once.
  NodeState(const DaemonOptions& options, NodeConfig config, std::string salt_key,
            EngineSupervisor* engine, MetricsPublisher* metrics);
  NodeState(const NodeState&) = delete;
  NodeState& operator=(const NodeState&) = delete;

  const NodeConfig& config() const { return config_; }
  const std::string& salt_key() const { return salt_key_; }
  const std::string& state_dir() const { return options_.state_dir; }
  double last_config_change_unix_s() const { return last_config_change_unix_s_; }

  // What the shards' routers serve: the configuration with the salt key and the client
  // certificate (read from its files now).
  std::shared_ptr<const router::RouterConfig> BuildRouterConfig() const;

  // Makes `proposed` the node's configuration: durable, then live (see the top). `what`
  // names the command in the config_changed event. An error: it was not saved (logged)
  // and nothing changed.
  absl::Status Commit(NodeConfig proposed, const std::string& what);
  // The same without saving first: for the cluster's mirror, whose state the Raft store
  // keeps; the caller saves it (an incremental rewrite).
  void Adopt(NodeConfig proposed, const std::string& what);
  // The same for changes to call bridges and users, in place. `sync`: durable in the journal
  // before live (a single node's commands); without, the cluster's Raft log is what keeps them
  // and the journal is the mirror's.
  absl::Status CommitEdits(const std::vector<NodeConfigEdit>& edits, const std::string& what,
                           bool sync);
  // Starts an incremental rewrite of the config file (a failure is logged).
  void BeginRewrite();

  // ---- The engine (EngineSupervisor) ----

  // Starts, restarts or stops the engine to match the configuration.
  void ApplyEngineState();
  void StopEngine();

  // ---- The cluster ----

  // The cluster node; null only when its store could not be opened.
  cluster::ClusterNode* cluster() { return cluster_.get(); }
  const cluster::ClusterNode* cluster() const { return cluster_.get(); }
  // Set when TLS was asked for on the cluster links and its files do not load: the node
  // then stays out of the cluster (it still serves its own bridges).
  const std::string& cluster_tls_error() const { return cluster_tls_error_; }
  bool cluster_listening() const { return cluster_listening_; }
  // The cluster is enabled and may run (its TLS, if asked for, loaded).
  bool cluster_active() const {
    return cluster_ != nullptr && config_.cluster_enabled && cluster_tls_error_.empty();
  }
  // Why cluster() is null (the store could not be opened), with the store's path and the
  // fix, for status, /healthz and refusals.
  std::string ClusterStoreProblem() const;
  // This node's cluster address: the first listen address and --cluster_port
  // (--cluster_address when given). Empty when there is none, or when the first listen
  // address is a wildcard that no peer could dial.
  std::string ClusterAddress() const;
  // What is wrong with this node's cluster, for status and /healthz; empty when whole.
  std::string ClusterProblem(const cluster::ClusterStatus& cluster) const;

  // (Re)opens the cluster node from the state dir with the TLS files now configured, and
  // its port when the cluster is enabled. An error when the store cannot be opened
  // (cluster() is then null; the error is ClusterStoreProblem()) or TLS was asked for and
  // does not load.
  absl::Status OpenCluster();
  // Opens the cluster port (a failure is logged; cluster_listening() says).
  void ListenCluster();
  // Closes the cluster port and links (`cluster disable`).
  void DisconnectCluster();
  // `reset --force` on a node in a cluster: makes `proposed` (with the cluster disabled)
  // the configuration through Commit, durable first; only then forgets the cluster: its
  // store (identity, Raft log and key) is moved aside in one rename (synced), and removed;
  // then OpenCluster makes a new, empty store with a new identity. Returns the store's
  // directory. An error names the cause and the fix: when the configuration could not be
  // saved, nothing changed (memory, config file and store are as they were); when the
  // store could not be moved aside, the configuration is reset but the node keeps its
  // identity, and the same command run again finishes it (a crash between the save and
  // the move leaves that state too); when the new store does not open, OpenCluster's.
  absl::StatusOr<std::string> ForgetCluster(NodeConfig proposed, const std::string& what);
  // Copies the replicated domain, call bridges, users and salt key into the node's
  // configuration whenever they change (Commit "cluster").
  void MirrorClusterConfig();

  // ---- The control loop's turn (server/control_loop.h) ----

  void AppendClusterPollFds(std::vector<pollfd>* fds);
  // A record a shard posted to the control thread.
  void OnShardRecord(const net::CrossShardMessage& message);
  // The cluster's links read, its tick, the replicated configuration mirrored.
  void ClusterTurn(const std::vector<pollfd>& fds, size_t first, uint64_t now_ms);
  // The members none of the shards has a data link up to (none while the engine does
  // not run data links): ClusterNode::SetDataLinksDown.
  std::set<raft::NodeId> DataLinksDown() const;
  // One turn of the routes, then what waits for the shards goes.
  void DriveRoutes(bool clustered);
  // What a change left for later turns: the configuration edits a busy shard kept from
  // being published at once, and a slice of the config file's rewrite.
  void DeferredWork();
  // What the shards' data links and lanes need, published when it changes.
  void PublishDataPlane(bool clustered);
  // A start that failed is tried again (every 5 s) while the node should serve.
  void RetryEngineStart(std::chrono::steady_clock::time_point now);

 private:
  // EngineSupervisor::Observer.
  void OnEngineStopped() override;
  void OnEngineStarting() override;
  void OnEngineStarted() override;

  void NotifyShardsOfConfig();
  // Publishes the router configuration: a whole rebuild (`edits` null), or the current one
  // with `edits` made, in the buffer the shards gave back when there is one.
  void PublishRouterConfig(const std::vector<NodeConfigEdit>* edits);
  // Publishes unpublished_edits_ in the spare buffer once the shards gave it back, waiting
  // up to `wait` for it; false when it is not back (a later turn publishes them).
  bool PublishRouterEdits(std::chrono::microseconds wait);
  // The spare buffer if the shards gave it back (`wanted`; else nullptr) or the unpublished
  // copy; frees every other buffer they gave back.
  std::unique_ptr<router::RouterConfig> TakeSpareRouter(bool wanted);
  void Publish(std::unique_ptr<router::RouterConfig> next);
  std::unique_ptr<router::RouterConfig> BuildRouterConfigBuffer() const;
  void EditRouterConfig(const NodeConfigEdit& edit, router::RouterConfig* router) const;
  // Logs and publishes a change made to config_ (durable already).
  void ConfigChanged(const std::string& what);

  struct RouterConfigReturns;  // buffers the shards let go of, handed back across threads
  // Edits the spare may lag behind and still be brought up to date rather than rebuilt:
  // this many, or more in a configuration so large that a rebuild costs more than half of
  // it (an import's chunk of 5,000 must not cost the whole configuration).
  static constexpr size_t kRouterSpareLagMax = 4096;
  // How long a change waits for the shards to give the spare back before its edits are
  // left for a later turn: a shard lets go of a buffer on its next loop, within microseconds
  // unless it is busy.
  static constexpr std::chrono::microseconds kSpareWait{20'000};
  // Call bridges and users the config file's rewrite writes per turn (a few ms).
  static constexpr size_t kRewriteSliceEntries = 10'000;
  // The cluster's mirror (whose state the Raft store keeps) rewrites its file once the
  // changes have paused for kMirrorQuietMs, or once its journal outgrew the config
  // kMirrorJournalPercentMax times over: while an import streams in, the rewrites' writes
  // (hundreds of MB at a million users) no longer compete with the Raft log's fsyncs on
  // the disk, which stalled the control threads of all nodes at once (elections).
  static constexpr std::chrono::milliseconds kMirrorQuietMs{2000};
  static constexpr uint64_t kMirrorJournalPercentMax = 300;
  // A mirror step or deferred work this long is logged (cluster_mirror_slow,
  // config_deferred_work_slow): half of what makes a slow control turn
  // (server/control_loop.h, kSlowTurnMs), so that a slow turn's log says where it went.
  static constexpr int64_t kSlowStepMs = 50;

  const DaemonOptions& options_;
  EngineSupervisor* const engine_;
  MetricsPublisher* const metrics_;
  NodeConfig config_;
  NodeConfigFiles files_;
  std::shared_ptr<RouterConfigReturns> router_returns_;
  const router::RouterConfig* current_router_ = nullptr;  // published
  const router::RouterConfig* spare_router_ = nullptr;    // published before it; may come back
  std::vector<NodeConfigEdit> spare_lag_;                 // what spare_router_ lacks
  std::vector<NodeConfigEdit> unpublished_edits_;         // made, not yet published
  // A copy of the last whole rebuild, never published; lacks spare_lag_ too.
  std::unique_ptr<router::RouterConfig> unpublished_spare_;
  bool mirror_whole_pending_ = true;  // the next mirror copies the whole configuration
  std::string salt_key_;              // see LoadOrCreateSaltKey
  double last_config_change_unix_s_ = 0;
  // The last change the mirror journaled without a sync (a cluster's), for kMirrorQuietMs.
  std::chrono::steady_clock::time_point last_mirror_edit_{};
  std::unique_ptr<cluster::ClusterNode> cluster_;
  bool cluster_listening_ = false;
  std::string cluster_tls_error_;
  absl::Status cluster_open_error_;
  uint64_t mirrored_generation_ = 0;
  std::unique_ptr<RouteDriver> routes_;  // never null, even while cluster_ is
  std::string data_plane_key_;           // what the last published DataPlaneConfig was made of
};

}  // namespace stanzad::server

#endif  // STANZAD_SERVER_NODE_STATE_H_
