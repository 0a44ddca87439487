#include "server/engine_supervisor.h"

#include <algorithm>
#include <utility>

#include "core/base/concat.h"
#include "core/base/log.h"
#include "server/state_dir.h"

namespace stanzad::server {

EngineSupervisor::EngineSupervisor(const DaemonOptions& options)
    : options_(options),
      shards_(options.shards),
      router_config_(std::make_shared<const router::RouterConfig>()),
      router_stats_(std::make_unique<router::RouterShardStats[]>(static_cast<size_t>(shards_))),
      data_link_stats_(std::make_unique<cluster::DataLinkStats[]>(static_cast<size_t>(shards_))),
      lane_stats_(std::make_unique<LaneStats[]>(static_cast<size_t>(shards_))) {}

void EngineSupervisor::PostToAllShards(const router::ShardRecord& record) {
  MailedShards shards = Shards();
  for (int shard = 0; shard < shards_; ++shard) shards.Post(shard, record);
}

void EngineSupervisor::NotifyDataPlaneChanged() {
  MailedShards shards = Shards();
  const router::EncodedRecord record = EncodeNodeRecord(DataPlaneChanged{});
  for (int shard = 0; shard < shards_; ++shard) shards.PostEncoded(shard, record);
}

void EngineSupervisor::DrainControl(
    const std::function<void(int, const net::CrossShardMessage&)>& handler) {
  if (engine_) engine_->DrainControl(handler);
}

bool EngineSupervisor::RetryDue(std::chrono::steady_clock::time_point now) const {
  return !engine_ && now - last_start_attempt_ > std::chrono::seconds(5);
}

void EngineSupervisor::Stop(Observer& observer) {
  if (!engine_) return;
  engine_->Stop();
  engine_.reset();
  // What waited for the shards goes. Stanzas among it were answered "delivered" to their
  // origins: counted and logged, the window of a stopping node.
  if (const size_t stanzas = mail_.Drop(router::kDeliverFromPeer); stanzas > 0) {
    LogEvent(LogLevel::kWarning, "relay_deliveries_dropped",
             "count=" + std::to_string(stanzas) + " reason=\"the shards stopped\"");
  }
  observer.OnEngineStopped();
  LogEvent(LogLevel::kInfo, "serving_stopped");
}

void EngineSupervisor::Apply(const NodeConfig& config,
                             const std::optional<net::Endpoint>& data_listener,
                             Observer& observer) {
  Stop(observer);
  last_start_attempt_ = std::chrono::steady_clock::now();
  if (!config.enabled) {
    not_serving_reason_ = "XMPP is disabled (stanzactl enable)";
    return;
  }
  if (config.domain.empty()) {
    not_serving_reason_ = "no domain (stanzactl domain example.com)";
    return;
  }
  if (config.listen.empty()) {
    not_serving_reason_ = "no listen address (stanzactl listen 127.0.0.1)";
    return;
  }
  net::EngineOptions options;
  options.shards = shards_;
  for (const std::string& address : config.listen) {
    absl::StatusOr<net::Endpoint> endpoint = net::Endpoint::Parse(address, options_.component_port);
    if (!endpoint.ok()) {
      not_serving_reason_ = std::string(endpoint.status().message());
      LogEvent(LogLevel::kError, "listen_failed", "reason=" + LogQuote(not_serving_reason_));
      return;
    }
    options.listeners.push_back({*endpoint, options_.component_tls ? router::kComponentTlsListener
                                                                   : router::kComponentListener});
    endpoint = net::Endpoint::Parse(address, options_.c2s_port);
    if (endpoint.ok()) options.listeners.push_back({*endpoint, router::kClientListener});
    if (const uint16_t port = options_.c2s_tls_port; port != 0) {
      endpoint = net::Endpoint::Parse(address, port);
      if (endpoint.ok()) options.listeners.push_back({*endpoint, router::kClientTlsListener});
    }
  }
  if (data_listener) options.listeners.push_back({*data_listener, cluster::kClusterDataListener});
  options.connections_max_per_shard = options_.connections_max_per_shard;
  options.connection_queue_bytes_max = options_.connection_queue_bytes_max;
  options.direct_descriptors = options_.direct_descriptors;
  const router::RouterLimits& limits = options_.router;
  for (int i = 0; i < shards_; ++i) {
    router::RouterShardStats& s = router_stats_[static_cast<size_t>(i)];
    s.connections_open.store(0);
    s.bridges_connected.store(0);
    s.clients_connected.store(0);
    s.client_connections_open.store(0);
  }
  // The lanes' timers (resends, deadlines) and a new leader's resends run on ticks.
  options.tick_ms = 20;
  // The shards' lanes name their stanzas (lane, incarnation, sequence), each counting its
  // sequences from 1: every engine start takes a new incarnation, larger than any before
  // (durable), so no two lives of a lane share one.
  absl::StatusOr<uint64_t> incarnation = NextIncarnation(options_.state_dir + "/cluster");
  if (!incarnation.ok()) {
    not_serving_reason_ =
        Concat("the relay's incarnation: ", std::string(incarnation.status().message()));
    LogEvent(LogLevel::kError, "listen_failed", "reason=" + LogQuote(not_serving_reason_));
    return;
  }
  incarnation_ = *incarnation;
  observer.OnEngineStarting();
  // Each lane holds its share of the node's custody bound.
  cluster::relay::Options lane_options = options_.relay;
  lane_options.hold_bytes_max =
      std::max<size_t>(1, lane_options.hold_bytes_max / static_cast<size_t>(shards_));
  absl::StatusOr<std::unique_ptr<net::Engine>> engine =
      net::Engine::Start(options, [this, limits, lane_options](int shard) {
        const size_t index = static_cast<size_t>(shard);
        return std::make_unique<NodeShard>(
            std::make_unique<router::RouterShard>(&router_config_, limits, &router_stats_[index]),
            std::make_unique<cluster::DataLinks>(&data_plane_, options_.data_links,
                                                 &data_link_stats_[index]),
            &data_plane_, lane_options, &lane_stats_[index]);
      });
  if (!engine.ok()) {
    not_serving_reason_ = std::string(engine.status().message());
    LogEvent(LogLevel::kError, "listen_failed", "reason=" + LogQuote(not_serving_reason_));
    return;
  }
  engine_ = std::move(*engine);
  listener_tags_.clear();
  for (const net::ListenerConfig& listener : options.listeners) {
    listener_tags_.push_back(listener.tag);
  }
  not_serving_reason_.clear();
  observer.OnEngineStarted();
  std::string listening;
  for (const net::Endpoint& endpoint : engine_->listening_endpoints()) {
    listening += (listening.empty() ? "" : ",") + endpoint.ToString();
  }
  LogEvent(LogLevel::kInfo, "serving",
           "domain=" + config.domain + " listen=" + listening +
               " bridges=" + std::to_string(config.callbridges.size()));
}

}  // namespace stanzad::server
