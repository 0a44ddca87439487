// MetricsPublisher: /metrics and /healthz for this node (metrics/node_metrics.h renders
// them). The control thread publishes a snapshot of the node (its state, the engine's
// counters, the cluster's, the relay lanes' sums) every 100 ms and after every
// configuration change; the HTTP server's own thread serves the latest snapshot together
// with the routers' per-shard counters, which it reads directly (relaxed atomics): nothing
// on the data path waits for a scrape.
//
// It promises: the node routes whether or not the metrics port opens. A port that is
// taken is logged (metrics_listen_failed) and tried again every 5 s; an address that does
// not parse is logged once and given up.
//
// Thread: Start, Publish, Turn and Stop on the control thread; the HTTP thread reads the
// snapshot (an atomic shared_ptr) and the EngineSupervisor's counters, which outlive it.
#ifndef STANZAD_SERVER_METRICS_PUBLISHER_H_
#define STANZAD_SERVER_METRICS_PUBLISHER_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "metrics/http_server.h"
#include "metrics/node_metrics.h"
#include "server/engine_supervisor.h"

namespace stanzad::server {

class NodeState;

class MetricsPublisher {
 public:
  // `addr`: --metrics_addr (empty: no server). `started`: when the node started (uptime).
  MetricsPublisher(const EngineSupervisor& engine, std::string addr,
                   std::chrono::steady_clock::time_point started);
  // Stops the HTTP server first: its thread reads what this refers to.
  ~MetricsPublisher();
  MetricsPublisher(const MetricsPublisher&) = delete;
  MetricsPublisher& operator=(const MetricsPublisher&) = delete;

  // A new snapshot of `node` and the engine, for the next scrape.
  void Publish(const NodeState& node);
  // The first snapshot of `node`, then /metrics and /healthz served on the address from
  // a thread of its own.
  void Start(const NodeState& node);
  // Once per turn of the control loop: a snapshot every 100 ms, a start that failed
  // tried again every 5 s.
  void Turn(const NodeState& node, std::chrono::steady_clock::time_point now);
  // The HTTP server stops (the node is stopping).
  void Stop();

 private:
  void Listen();
  // On the metrics thread.
  metrics::HttpResponse Serve(std::string_view path) const;

  const EngineSupervisor& engine_;
  std::string addr_;  // cleared when it cannot be parsed
  const std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_publish_;
  std::chrono::steady_clock::time_point last_start_attempt_;
  std::atomic<std::shared_ptr<const NodeMetricsSnapshot>> snapshot_;
  // Last, so it stops (its thread reads the snapshot) before the rest goes.
  std::unique_ptr<metrics::HttpServer> server_;
};

}  // namespace stanzad::server

#endif  // STANZAD_SERVER_METRICS_PUBLISHER_H_
