#include "server/metrics_publisher.h"

#include <iterator>
#include <utility>

#include "core/base/log.h"
#include "metrics/prometheus_text.h"
#include "server/flags_usage.h"
#include "server/node_state.h"

namespace stanzad::server {

MetricsPublisher::MetricsPublisher(const EngineSupervisor& engine, std::string addr,
                                   std::chrono::steady_clock::time_point started)
    : engine_(engine), addr_(std::move(addr)), started_(started) {}

MetricsPublisher::~MetricsPublisher() { Stop(); }

void MetricsPublisher::Stop() { server_.reset(); }

void MetricsPublisher::Start(const NodeState& node) {
  Publish(node);
  Listen();
  last_publish_ = std::chrono::steady_clock::now();
}

void MetricsPublisher::Listen() {
  last_start_attempt_ = std::chrono::steady_clock::now();
  if (addr_.empty()) return;
  absl::StatusOr<net::Endpoint> endpoint = net::Endpoint::Parse(addr_, 9464);
  absl::StatusOr<std::unique_ptr<metrics::HttpServer>> server =
      endpoint.ok() ? metrics::HttpServer::Start(
                          *endpoint, [this](std::string_view path) { return Serve(path); })
                    : absl::StatusOr<std::unique_ptr<metrics::HttpServer>>(endpoint.status());
  if (!server.ok()) {
    LogEvent(LogLevel::kError, "metrics_listen_failed",
             "addr=" + addr_ + " reason=" + LogQuote(std::string(server.status().message())) +
                 " fix=" + LogQuote("free the port or pass another --metrics_addr (empty: off)"));
    if (!endpoint.ok()) addr_.clear();  // a bad address will not get better
    return;
  }
  server_ = std::move(*server);
  LogEvent(LogLevel::kInfo, "metrics_serving", "addr=" + server_->endpoint().ToString());
}

void MetricsPublisher::Turn(const NodeState& node, std::chrono::steady_clock::time_point now) {
  if (now - last_publish_ >= std::chrono::milliseconds(100)) {
    Publish(node);
    last_publish_ = now;
  }
  if (!server_ && !addr_.empty() && now - last_start_attempt_ > std::chrono::seconds(5)) {
    Listen();
  }
}

metrics::HttpResponse MetricsPublisher::Serve(std::string_view path) const {
  const std::shared_ptr<const NodeMetricsSnapshot> snapshot = snapshot_.load();
  if (path == "/metrics") {
    return {200, std::string(metrics::kPrometheusContentType),
            RenderNodeMetrics(*snapshot, engine_.router_stats(), engine_.shards())};
  }
  if (path == "/healthz") return NodeHealth(*snapshot);
  return {404, "text/plain; charset=utf-8", "not found: try /metrics or /healthz\n"};
}

void MetricsPublisher::Publish(const NodeState& node) {
  auto snapshot = std::make_shared<NodeMetricsSnapshot>();
  snapshot->version = kStanzadVersion;
  snapshot->uptime_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  snapshot->serving = engine_.serving();
  snapshot->not_serving_reason = engine_.not_serving_reason();
  snapshot->bridges_configured = node.config().callbridges.size();
  snapshot->last_config_change_unix_s = node.last_config_change_unix_s();
  if (engine_.serving()) snapshot->engine = engine_.engine()->stats();
  if (const cluster::ClusterNode* cluster_node = node.cluster();
      cluster_node != nullptr && cluster_node->has_state()) {
    const cluster::ClusterStatus cluster = cluster_node->Status();
    snapshot->cluster_problem = node.ClusterProblem(cluster);
    snapshot->cluster_member = cluster.member;
    snapshot->cluster_leader = cluster.role == raft::Role::kLeader;
    snapshot->cluster_term = cluster.term;
    snapshot->cluster_leader_id = cluster.leader;
    snapshot->cluster_leader_address = cluster.leader_address;
    snapshot->cluster_members = cluster.members.size();
    for (const cluster::MemberStatus& member : cluster.members) {
      snapshot->cluster_members_connected += member.connected ? 1 : 0;
    }
    snapshot->cluster_elections_won = cluster.elections;
    snapshot->failovers = {{std::begin(cluster::ClusterNode::kFailoverBucketsMs),
                            std::end(cluster::ClusterNode::kFailoverBucketsMs)},
                           cluster.failover_buckets,
                           cluster.failover_count,
                           cluster.failover_sum_ms};
    snapshot->leader_gaps = {{std::begin(cluster::ClusterNode::kLeaderGapBucketsMs),
                              std::end(cluster::ClusterNode::kLeaderGapBucketsMs)},
                             cluster.leader_gap_buckets,
                             cluster.leader_gap_count,
                             cluster.leader_gap_sum_ms};
    snapshot->leader_gap_max_ms = cluster.leader_gap_max_ms;
    snapshot->cluster_last_state_change_unix_s =
        std::chrono::duration<double>(cluster.last_state_change.time_since_epoch()).count();
  } else if (node.cluster() == nullptr) {
    snapshot->cluster_problem = node.ClusterStoreProblem();
  }
  // The shards' relay lanes, summed.
  for (int shard = 0; shard < engine_.shards(); ++shard) {
    const LaneStats& lane = engine_.lane_stats()[static_cast<size_t>(shard)];
    const auto get = [](const std::atomic<uint64_t>& value) {
      return value.load(std::memory_order_relaxed);
    };
    snapshot->relayed_out += get(lane.relayed_out);
    snapshot->relayed_in += get(lane.relayed_in);
    snapshot->relay_failed += get(lane.failed);
    snapshot->relay_resent += get(lane.resent);
    snapshot->relay_duplicates += get(lane.duplicates_dropped);
    snapshot->relay_expired += get(lane.expired);
    snapshot->relay_aborted += get(lane.aborted);
    snapshot->relay_unconfirmed += get(lane.unconfirmed);
    snapshot->relay_misrouted += get(lane.misrouted);
    snapshot->forward_waiting += get(lane.custody_count);
    snapshot->forward_waiting_bytes += get(lane.custody_bytes);
  }
  snapshot_.store(std::move(snapshot));
}

}  // namespace stanzad::server
