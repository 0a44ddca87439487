// What /metrics and /healthz show for one node. The control thread publishes
// a NodeMetricsSnapshot (its own state plus the engine's counters) after every
// turn of its loop; the metrics thread renders it together with the router's
// per-shard counters, which it reads directly (single-writer relaxed atomics:
// nothing on the data path is shared or locked for metrics). Counters are
// per shard (label shard="N"); Prometheus sums them with sum().
#ifndef STANZAD_METRICS_NODE_METRICS_H_
#define STANZAD_METRICS_NODE_METRICS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "metrics/http_server.h"
#include "net/engine.h"
#include "router/router_shard.h"

namespace stanzad {

// A histogram of milliseconds, rendered in seconds.
struct MsHistogram {
  std::vector<double> bounds_ms;  // upper bounds
  std::vector<uint64_t> buckets;  // cumulative counts, one per bound
  uint64_t count = 0;
  double sum_ms = 0;
};

struct NodeMetricsSnapshot {
  std::string version;
  double uptime_s = 0;
  bool serving = false;
  std::string not_serving_reason;
  uint64_t bridges_configured = 0;
  double last_config_change_unix_s = 0;  // 0: none since start
  std::vector<net::ShardStats> engine;   // one per shard; empty while not serving
  // The cluster (all zero when the node is not in one).
  bool cluster_member = false;
  // Empty when the cluster is whole; else what is wrong ("stopped: ...", or "degraded:
  // 1 of 3 members unreachable (10.0.0.3:5279)"): /healthz says it.
  std::string cluster_problem;
  bool cluster_leader = false;
  uint64_t cluster_term = 0;
  uint64_t cluster_leader_id = 0;
  std::string cluster_leader_address;
  uint64_t cluster_members = 0;
  uint64_t cluster_members_connected = 0;  // this node included
  uint64_t cluster_elections_won = 0;
  double cluster_last_state_change_unix_s = 0;
  MsHistogram failovers;    // ClusterStatus::failover_*
  MsHistogram leader_gaps;  // ClusterStatus::leader_gap_*
  uint64_t leader_gap_max_ms = 0;
  uint64_t relayed_out = 0, relayed_in = 0, relay_failed = 0;
  uint64_t relay_resent = 0, relay_duplicates = 0, relay_expired = 0;
  uint64_t relay_aborted = 0, relay_unconfirmed = 0, relay_misrouted = 0;
  uint64_t forward_waiting = 0, forward_waiting_bytes = 0;
};

std::string RenderNodeMetrics(const NodeMetricsSnapshot& snapshot,
                              const router::RouterShardStats* shards, int shard_count);

// 200 "serving" when the node routes; 503 with the reason otherwise.
metrics::HttpResponse NodeHealth(const NodeMetricsSnapshot& snapshot);

}  // namespace stanzad

#endif  // STANZAD_METRICS_NODE_METRICS_H_
