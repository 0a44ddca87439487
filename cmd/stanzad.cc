// stanzad: the XMPP stanza router daemon.
//
//   stanzad --state_dir=/var/lib/stanzad
//   stanzad --state_dir=/tmp/n1 --domain=example.com --listen=127.0.0.1   (new state dir)
//
// The main thread is the control plane: it serves the admin socket, keeps the
// node's configuration durable in the state dir, and starts, restarts or stops
// the io_uring engine (one shard thread per core) as the configuration says.
// Call bridges connect on --component_port of every listen address.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "cmd/admin/admin_socket.h"
#include "cmd/flags_usage.h"
#include "cmd/metrics/http_server.h"
#include "cmd/metrics/prometheus_text.h"
#include "cmd/node_commands.h"
#include "cmd/node_config.h"
#include "cmd/node_metrics.h"
#include "core/base/log.h"
#include "net/engine.h"
#include "net/router_shard.h"

ABSL_FLAG(std::string, state_dir, "",
          "Directory for this node's durable state (configuration, admin socket). Created "
          "with mode 0700 if missing. Required.");
ABSL_FLAG(std::string, domain, "",
          "XMPP domain to set when the state dir is new (as 'stanzactl domain'). Ignored once "
          "the node has a configuration.");
ABSL_FLAG(std::string, listen, "",
          "Comma-separated IP addresses to listen on when the state dir is new (as 'stanzactl "
          "listen'); with --domain it also enables the node. Ignored once configured.");
ABSL_FLAG(uint16_t, component_port, 5223,
          "TCP port for call bridges (XEP-0114 components) on every listen address.");
ABSL_FLAG(uint16_t, c2s_port, 5222,
          "TCP port for XMPP clients. Reserved: client connections (TLS, SASL) are not served "
          "yet.");
ABSL_FLAG(uint16_t, cluster_port, 5279,
          "TCP port for cluster peers. Reserved: clustering is not available yet.");
ABSL_FLAG(int, threads, 0, "Shard threads, one io_uring each. 0 means one per CPU core.");
ABSL_FLAG(std::string, metrics_addr, "127.0.0.1:9464",
          "IP:PORT (or [IPv6]:PORT) serving Prometheus metrics at /metrics and a health check "
          "at /healthz (200 when routing, 503 with the reason otherwise). No authentication: "
          "keep it on loopback or a management network. Empty: off.");
ABSL_FLAG(std::string, log_level, "info", "Least severe log level printed: info, warning, error.");
ABSL_FLAG(int, connections_max, 100000,
          "Most simultaneous connections on this node (split evenly across shards); further "
          "connections are refused.");
ABSL_FLAG(int, stanza_bytes_max, 256 * 1024,
          "Largest stanza accepted, in bytes; a larger one ends the stream with "
          "<policy-violation/>.");
ABSL_FLAG(int, queue_bytes_max, 1 << 20,
          "Most bytes queued for sending to one connection; stanzas beyond it are bounced to "
          "their sender with <resource-constraint/>.");
ABSL_FLAG(int, slow_reader_timeout_ms, 10000,
          "A connection whose send queue stays above a quarter of --queue_bytes_max for this "
          "long is disconnected.");
ABSL_FLAG(int, preauth_timeout_ms, 10000,
          "Time a new connection has to complete its handshake before it is closed with "
          "<connection-timeout/>.");
ABSL_FLAG(int, idle_timeout_s, 0,
          "Close connections that send nothing for this many seconds (0: never; bridges send "
          "whitespace keepalives).");
ABSL_FLAG(int, auth_failures_max, 10,
          "Failed handshakes from one IP address within --auth_failure_window_s after which "
          "that address is refused for the rest of the window.");
ABSL_FLAG(int, auth_failure_window_s, 60, "Window for --auth_failures_max, in seconds.");

namespace stanzad {
namespace {

constexpr const char* kVersion = kStanzadVersion;

std::atomic<bool> g_stop_requested{false};

void OnSignal(int) { g_stop_requested.store(true); }

class Daemon {
 public:
  Daemon(std::string state_dir, NodeConfig config)
      : state_dir_(std::move(state_dir)),
        config_(std::move(config)),
        publisher_(BuildRouterConfig()),
        started_(std::chrono::steady_clock::now()) {
    shards_ = absl::GetFlag(FLAGS_threads);
    if (shards_ <= 0) shards_ = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    stats_ = std::make_unique<net::RouterShardStats[]>(static_cast<size_t>(shards_));
  }

  int Run() {
    absl::StatusOr<std::unique_ptr<admin::AdminServer>> admin =
        admin::AdminServer::Listen(admin::AdminSocketPath(state_dir_));
    if (!admin.ok()) {
      LogEvent(LogLevel::kError, "admin_socket_failed",
               "reason=" + LogQuote(std::string(admin.status().message())));
      return 1;
    }
    LogEvent(LogLevel::kInfo, "started",
             "version=" + std::string(kVersion) + " state_dir=" + state_dir_ +
                 " shards=" + std::to_string(shards_));
    ApplyEngineState();
    PublishMetricsSnapshot();
    StartMetrics();
    while (!g_stop_requested.load()) {
      (*admin)->ServeOne(200, [this](const admin::AdminRequest& request,
                                     const admin::PeerCredentials&) { return Handle(request); });
      PublishMetricsSnapshot();
      if (!metrics_server_ && !metrics_addr_.empty() &&
          std::chrono::steady_clock::now() - last_metrics_attempt_ > std::chrono::seconds(5)) {
        StartMetrics();
      }
      // A listener that could not be opened (port taken) is retried every 5 s.
      if (!engine_ && config_.ReadyToServe() &&
          std::chrono::steady_clock::now() - last_start_attempt_ > std::chrono::seconds(5)) {
        ApplyEngineState();
      }
    }
    LogEvent(LogLevel::kInfo, "stopping");
    metrics_server_.reset();
    StopEngine();
    return 0;
  }

 private:
  // Serves /metrics and /healthz on --metrics_addr from a thread of its own.
  // A taken port is logged and retried every 5 s; the node routes regardless.
  void StartMetrics() {
    last_metrics_attempt_ = std::chrono::steady_clock::now();
    if (metrics_addr_.empty()) return;
    absl::StatusOr<net::Endpoint> endpoint = net::Endpoint::Parse(metrics_addr_, 9464);
    absl::StatusOr<std::unique_ptr<metrics::HttpServer>> server =
        endpoint.ok() ? metrics::HttpServer::Start(
                            *endpoint, [this](std::string_view path) { return ServeMetrics(path); })
                      : absl::StatusOr<std::unique_ptr<metrics::HttpServer>>(endpoint.status());
    if (!server.ok()) {
      LogEvent(LogLevel::kError, "metrics_listen_failed",
               "addr=" + metrics_addr_ +
                   " reason=" + LogQuote(std::string(server.status().message())) +
                   " fix=" + LogQuote("free the port or pass another --metrics_addr (empty: off)"));
      if (!endpoint.ok()) metrics_addr_.clear();  // a bad address will not get better
      return;
    }
    metrics_server_ = std::move(*server);
    LogEvent(LogLevel::kInfo, "metrics_serving", "addr=" + metrics_server_->endpoint().ToString());
  }

  // On the metrics thread.
  metrics::HttpResponse ServeMetrics(std::string_view path) const {
    const std::shared_ptr<const NodeMetricsSnapshot> snapshot = metrics_snapshot_.load();
    if (path == "/metrics") {
      return {200, std::string(metrics::kPrometheusContentType),
              RenderNodeMetrics(*snapshot, stats_.get(), shards_)};
    }
    if (path == "/healthz") return NodeHealth(*snapshot);
    return {404, "text/plain; charset=utf-8", "not found: try /metrics or /healthz\n"};
  }

  void PublishMetricsSnapshot() {
    auto snapshot = std::make_shared<NodeMetricsSnapshot>();
    snapshot->version = kVersion;
    snapshot->uptime_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    snapshot->serving = engine_ != nullptr;
    snapshot->not_serving_reason = not_serving_reason_;
    snapshot->bridges_configured = config_.callbridges.size();
    snapshot->last_config_change_unix_s = last_config_change_unix_s_;
    if (engine_) snapshot->engine = engine_->stats();
    metrics_snapshot_.store(std::move(snapshot));
  }

  std::shared_ptr<const net::RouterConfig> BuildRouterConfig() const {
    auto router = std::make_shared<net::RouterConfig>();
    router->domain = config_.domain;
    router->enabled = config_.ReadyToServe();
    for (const auto& [name, secret] : config_.callbridges) {
      router->bridge_secrets[name + "." + config_.domain] = secret;
    }
    return router;
  }

  admin::AdminResponse Handle(const admin::AdminRequest& request) {
    NodeConfig proposed = config_;
    CommandResult result = ExecuteNodeCommand(request, &proposed, RuntimeStatus());
    if (!result.config_changed) return result.response;
    // Durable before acknowledged: a crash after "ok" never loses the change.
    if (absl::Status saved = SaveNodeConfig(state_dir_, proposed); !saved.ok()) {
      LogEvent(LogLevel::kError, "config_save_failed",
               "reason=" + LogQuote(std::string(saved.message())));
      return {1, "error: the change was not saved: " + std::string(saved.message()) + "\n"};
    }
    const bool listeners_changed =
        proposed.listen != config_.listen || proposed.ReadyToServe() != config_.ReadyToServe();
    config_ = std::move(proposed);
    last_config_change_unix_s_ =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    LogEvent(LogLevel::kInfo, "config_changed",
             "command=" + LogQuote(request.args[0] +
                                   (request.args.size() > 1 ? " " + request.args[1] : "")));
    publisher_.Publish(BuildRouterConfig());
    if (listeners_changed) {
      ApplyEngineState();
    } else if (engine_) {
      for (int shard = 0; shard < shards_; ++shard) {
        // The control thread is the engine's single external producer.
        while (!engine_->Post(shard, net::kConfigChanged, net::kNoConnection, 0, "")) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }
    }
    if (!not_serving_reason_.empty() && config_.ReadyToServe()) {
      result.response.output += "warning: not serving: " + not_serving_reason_ + "\n";
    }
    return result.response;
  }

  NodeRuntimeStatus RuntimeStatus() const {
    NodeRuntimeStatus status;
    status.version = kVersion;
    status.uptime_s = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                                std::chrono::steady_clock::now() - started_)
                                                .count());
    status.serving = engine_ != nullptr;
    status.not_serving_reason = not_serving_reason_;
    if (engine_) {
      for (const net::Endpoint& endpoint : engine_->listening_endpoints()) {
        status.listeners.push_back(endpoint.ToString() + " (call bridges)");
      }
    }
    for (int i = 0; i < shards_; ++i) {
      const net::RouterShardStats& s = stats_[static_cast<size_t>(i)];
      status.connections_open += s.connections_open.load(std::memory_order_relaxed);
      status.bridges_connected += s.bridges_connected.load(std::memory_order_relaxed);
      status.stanzas_routed += s.stanzas_routed.load(std::memory_order_relaxed);
      status.stanzas_answered += s.stanzas_answered.load(std::memory_order_relaxed);
      status.stanzas_bounced += s.stanzas_bounced.load(std::memory_order_relaxed);
      status.auth_failures += s.auth_failures.load(std::memory_order_relaxed);
      status.stream_errors += s.stream_errors.load(std::memory_order_relaxed);
    }
    status.recent_problems = RecentProblems();
    return status;
  }

  void StopEngine() {
    if (!engine_) return;
    engine_->Stop();
    engine_.reset();
    LogEvent(LogLevel::kInfo, "serving_stopped");
  }

  // Starts, restarts or stops the engine to match the configuration.
  void ApplyEngineState() {
    StopEngine();
    last_start_attempt_ = std::chrono::steady_clock::now();
    if (!config_.enabled) {
      not_serving_reason_ = "XMPP is disabled (stanzactl enable)";
      return;
    }
    if (config_.domain.empty()) {
      not_serving_reason_ = "no domain (stanzactl domain example.com)";
      return;
    }
    if (config_.listen.empty()) {
      not_serving_reason_ = "no listen address (stanzactl listen 127.0.0.1)";
      return;
    }
    net::EngineOptions options;
    options.shards = shards_;
    for (const std::string& address : config_.listen) {
      absl::StatusOr<net::Endpoint> endpoint =
          net::Endpoint::Parse(address, absl::GetFlag(FLAGS_component_port));
      if (!endpoint.ok()) {
        not_serving_reason_ = std::string(endpoint.status().message());
        LogEvent(LogLevel::kError, "listen_failed", "reason=" + LogQuote(not_serving_reason_));
        return;
      }
      options.listeners.push_back({*endpoint, 0});
    }
    options.connections_max_per_shard =
        static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_connections_max) / shards_));
    options.connection_queue_bytes_max =
        static_cast<size_t>(std::max(4096, absl::GetFlag(FLAGS_queue_bytes_max)));
    net::RouterLimits limits;
    limits.preauth_timeout_ms = static_cast<uint64_t>(absl::GetFlag(FLAGS_preauth_timeout_ms));
    limits.idle_timeout_ms = static_cast<uint64_t>(absl::GetFlag(FLAGS_idle_timeout_s)) * 1000;
    limits.slow_reader_timeout_ms =
        static_cast<uint64_t>(absl::GetFlag(FLAGS_slow_reader_timeout_ms));
    limits.slow_reader_queue_bytes = options.connection_queue_bytes_max / 4;
    limits.auth_failures_max = static_cast<uint32_t>(absl::GetFlag(FLAGS_auth_failures_max));
    limits.auth_failure_window_ms =
        static_cast<uint64_t>(absl::GetFlag(FLAGS_auth_failure_window_s)) * 1000;
    limits.tokenizer.stanza_bytes_max =
        static_cast<size_t>(std::max(1024, absl::GetFlag(FLAGS_stanza_bytes_max)));
    for (int i = 0; i < shards_; ++i) {
      net::RouterShardStats& s = stats_[static_cast<size_t>(i)];
      s.connections_open.store(0);
      s.bridges_connected.store(0);
    }
    absl::StatusOr<std::unique_ptr<net::Engine>> engine =
        net::Engine::Start(options, [this, limits](int shard) {
          return std::make_unique<net::RouterShard>(&publisher_, limits,
                                                    &stats_[static_cast<size_t>(shard)]);
        });
    if (!engine.ok()) {
      not_serving_reason_ = std::string(engine.status().message());
      LogEvent(LogLevel::kError, "listen_failed", "reason=" + LogQuote(not_serving_reason_));
      return;
    }
    engine_ = std::move(*engine);
    not_serving_reason_.clear();
    std::string listening;
    for (const net::Endpoint& endpoint : engine_->listening_endpoints()) {
      listening += (listening.empty() ? "" : ",") + endpoint.ToString();
    }
    LogEvent(LogLevel::kInfo, "serving",
             "domain=" + config_.domain + " listen=" + listening +
                 " bridges=" + std::to_string(config_.callbridges.size()));
  }

  std::string state_dir_;
  NodeConfig config_;
  net::RouterConfigPublisher publisher_;
  std::chrono::steady_clock::time_point started_;
  int shards_ = 1;
  std::unique_ptr<net::RouterShardStats[]> stats_;
  std::unique_ptr<net::Engine> engine_;
  std::string not_serving_reason_;
  std::chrono::steady_clock::time_point last_start_attempt_;
  std::string metrics_addr_ = absl::GetFlag(FLAGS_metrics_addr);
  std::chrono::steady_clock::time_point last_metrics_attempt_;
  double last_config_change_unix_s_ = 0;
  std::atomic<std::shared_ptr<const NodeMetricsSnapshot>> metrics_snapshot_;
  // Last, so it stops (its thread reads stats_ and the snapshot) before they go.
  std::unique_ptr<metrics::HttpServer> metrics_server_;
};

absl::StatusOr<NodeConfig> LoadOrSeed(const std::string& state_dir) {
  if (mkdir(state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError("cannot create --state_dir " + state_dir + ": " +
                                         std::strerror(errno));
  }
  absl::StatusOr<NodeConfig> loaded = LoadNodeConfig(state_dir);
  if (loaded.ok() || loaded.status().code() != absl::StatusCode::kNotFound) return loaded;
  NodeConfig config;
  const std::string domain = absl::GetFlag(FLAGS_domain);
  const std::string listen = absl::GetFlag(FLAGS_listen);
  if (!domain.empty()) {
    if (absl::Status valid = ValidateDomain(domain); !valid.ok()) {
      return absl::InvalidArgumentError("--domain: " + std::string(valid.message()));
    }
    config.domain = domain;
  }
  for (absl::string_view address : absl::StrSplit(listen, ',', absl::SkipEmpty())) {
    if (absl::Status valid = ValidateListenAddress(std::string(address)); !valid.ok()) {
      return absl::InvalidArgumentError("--listen: " + std::string(valid.message()));
    }
    config.listen.emplace_back(address);
  }
  config.enabled = !config.domain.empty() && !config.listen.empty();
  if (absl::Status saved = SaveNodeConfig(state_dir, config); !saved.ok()) return saved;
  return config;
}

}  // namespace
}  // namespace stanzad

int main(int argc, char** argv) {
  stanzad::ConfigureFlagsUsage(
      "The stanzad XMPP stanza router.\n"
      "Usage: stanzad --state_dir=DIR [flags]\n"
      "Configure it with stanzactl --state_dir=DIR (domain, listen, callbridge add, enable).",
      "stanzad");
  absl::ParseCommandLine(argc, argv);

  const std::string state_dir = absl::GetFlag(FLAGS_state_dir);
  if (state_dir.empty()) {
    std::fprintf(stderr, "stanzad: --state_dir is required (see stanzad --help)\n");
    return 2;
  }
  const std::string level = absl::GetFlag(FLAGS_log_level);
  if (level != "info" && level != "warning" && level != "error") {
    std::fprintf(stderr, "stanzad: --log_level must be info, warning or error, not '%s'\n",
                 level.c_str());
    return 2;
  }
  stanzad::SetLogLevel(level == "error"     ? stanzad::LogLevel::kError
                       : level == "warning" ? stanzad::LogLevel::kWarning
                                            : stanzad::LogLevel::kInfo);
  absl::StatusOr<stanzad::NodeConfig> config = stanzad::LoadOrSeed(state_dir);
  if (!config.ok()) {
    std::fprintf(stderr, "stanzad: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  struct sigaction action {};
  action.sa_handler = stanzad::OnSignal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
  stanzad::Daemon daemon(state_dir, std::move(*config));
  return daemon.Run();
}
