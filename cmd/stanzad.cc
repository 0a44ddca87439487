// stanzad: the XMPP stanza router daemon.
//
//   stanzad --state_dir=/var/lib/stanzad
//   stanzad --state_dir=/tmp/n1 --domain=example.com --listen=127.0.0.1   (new state dir)
//
// The main thread is the control plane: it serves the admin socket, keeps the
// node's configuration durable in the state dir, and starts, restarts or stops
// the io_uring engine (one shard thread per core) as the configuration says.
// Call bridges connect on --component_port of every listen address.
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cluster/node/cluster_node.h"
#include "cluster/storage/atomic_file.h"
#include "cmd/admin/admin_socket.h"
#include "cmd/file_access.h"
#include "cmd/flags_usage.h"
#include "cmd/metrics/http_server.h"
#include "cmd/metrics/prometheus_text.h"
#include "cmd/node_commands.h"
#include "cmd/node_config.h"
#include "cmd/node_metrics.h"
#include "core/base/concat.h"
#include "core/base/log.h"
#include "core/router/client_routes.h"
#include "core/router/route_table.h"
#include "core/xmpp/stanza.h"
#include "net/engine.h"
#include "net/router_shard.h"
#include "server/cluster_commands.h"
#include "server/daemon_options.h"
#include "server/node_shard.h"
#include "server/route_driver.h"
#include "server/shard_mail.h"
#include "server/state_dir.h"
#include "server/tls_files.h"
#include "tls/certificates.h"

namespace stanzad {
namespace {

constexpr const char* kVersion = kStanzadVersion;

std::atomic<bool> g_stop_requested{false};

void OnSignal(int) { g_stop_requested.store(true); }

class Daemon {
 public:
  Daemon(DaemonOptions options, NodeConfig config)
      : options_(std::move(options)),
        state_dir_(options_.state_dir),
        config_(std::move(config)),
        salt_key_(server::LoadOrCreateSaltKey(state_dir_)),
        publisher_(BuildRouterConfig()),
        started_(std::chrono::steady_clock::now()),
        shards_(options_.shards),
        metrics_addr_(options_.metrics_addr) {
    stats_ = std::make_unique<net::RouterShardStats[]>(static_cast<size_t>(shards_));
    data_link_stats_ = std::make_unique<cluster::DataLinkStats[]>(static_cast<size_t>(shards_));
    lane_stats_ = std::make_unique<server::LaneStats[]>(static_cast<size_t>(shards_));
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
    if (absl::Status opened = OpenCluster(); !opened.ok()) {
      LogEvent(LogLevel::kError, "cluster_open_failed",
               "reason=" + LogQuote(std::string(opened.message())));
      if (cluster_ == nullptr || routes_ == nullptr) return 1;  // the store itself failed
    }
    ApplyEngineState();
    PublishMetricsSnapshot();
    StartMetrics();
    auto last_publish = std::chrono::steady_clock::now();
    std::vector<pollfd> fds;
    while (!g_stop_requested.load()) {
      // One poll for the engine, the cluster links and the admin socket with its
      // clients (read as their bytes arrive, never waited for); at most 10 ms,
      // the Raft tick.
      fds.assign(1, pollfd{engine_ ? engine_->control_fd() : -1, POLLIN, 0});
      const bool cluster_active = config_.cluster_enabled && cluster_tls_error_.empty();
      const size_t cluster_first = fds.size();
      if (cluster_active) cluster_->AppendPollFds(&fds);
      const size_t admin_first = fds.size();
      (*admin)->AppendPollFds(&fds);
      poll(fds.data(), fds.size(), 10);
      const uint64_t now_ms = MonotonicMs();
      if (engine_) {
        engine_->DrainControl([this, now_ms](int, const net::CrossShardMessage& message) {
          if (message.kind == server::kCtlDataLinkLost) {
            if (cluster_) cluster_->OnDataLinkLost(message.argument);
            return;
          }
          routes_->OnShardRecord(message);
        });
      }
      (*admin)->HandlePoll(
          fds, admin_first, now_ms,
          [this](const admin::AdminRequest& request, const admin::PeerCredentials&,
                 admin::AdminServer::Reply reply) { Handle(request, std::move(reply)); });
      turn_now_ms_ = now_ms;
      const bool clustered =
          cluster_active && cluster_ && config_.cluster_enabled && cluster_tls_error_.empty();
      if (clustered) {
        cluster_->HandlePoll(fds, cluster_first, now_ms);
        cluster_->Tick(now_ms);
        MirrorClusterConfig();
      }
      DriveRoutes(clustered);
      PublishDataPlane(clustered);
      const auto now = std::chrono::steady_clock::now();
      if (now - last_publish >= std::chrono::milliseconds(100)) {
        PublishMetricsSnapshot();
        last_publish = now;
      }
      if (!metrics_server_ && !metrics_addr_.empty() &&
          now - last_metrics_attempt_ > std::chrono::seconds(5)) {
        StartMetrics();
      }
      // A listener that could not be opened (port taken) is retried every 5 s.
      if (!engine_ && config_.ReadyToServe() &&
          now - last_start_attempt_ > std::chrono::seconds(5)) {
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
    if (cluster_ && cluster_->has_state()) {
      const cluster::ClusterStatus cluster = cluster_->Status();
      snapshot->cluster_problem = ClusterProblem(cluster);
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
      snapshot->cluster_last_state_change_unix_s =
          std::chrono::duration<double>(cluster.last_state_change.time_since_epoch()).count();
    }
    // The shards' relay lanes, summed.
    for (int shard = 0; shard < shards_; ++shard) {
      const server::LaneStats& lane = lane_stats_[static_cast<size_t>(shard)];
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
    metrics_snapshot_.store(std::move(snapshot));
  }

  std::shared_ptr<const net::RouterConfig> BuildRouterConfig() const {
    auto router = std::make_shared<net::RouterConfig>();
    router->domain = config_.domain;
    router->enabled = config_.ReadyToServe();
    for (const auto& [name, secret] : config_.callbridges) {
      router->bridge_secrets[name + "." + config_.domain] = secret;
    }
    for (const auto& [name, credentials] : config_.users) router->users[name] = credentials;
    router->client_tls = server::ClientTlsContext(config_);
    router->unknown_user_salt_key = salt_key_;
    return router;
  }

  static uint64_t MonotonicMs() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
  }

  // ---- The cluster ----

  // This node's cluster address: the first listen address and --cluster_port.
  // (--cluster_address when given.) Empty when there is none, or when the first listen
  // address is a wildcard that no peer could dial.
  std::string ClusterAddress() const {
    const std::string port = std::to_string(options_.cluster_port);
    std::string ip = options_.cluster_address;
    if (ip.empty()) {
      if (config_.listen.empty() || IsWildcard(config_.listen.front())) return "";
      ip = config_.listen.front();
    }
    return ip.find(':') != std::string::npos ? "[" + ip + "]:" + port : ip + ":" + port;
  }

  static bool IsWildcard(const std::string& ip) {
    in6_addr address{};
    if (inet_pton(AF_INET, ip.c_str(), &address) == 1) {
      return reinterpret_cast<const in_addr*>(&address)->s_addr == INADDR_ANY;
    }
    return inet_pton(AF_INET6, ip.c_str(), &address) == 1 && IN6_IS_ADDR_UNSPECIFIED(&address);
  }

  absl::Status OpenCluster() {
    cluster_.reset();
    cluster_tls_error_.clear();
    cluster::ClusterNodeOptions options;
    options.dir = state_dir_ + "/cluster";
    options.address = ClusterAddress();
    options.limits = options_.cluster_links;
    // Mutual TLS on the cluster links once the node has a certificate (certs) and the
    // cluster a trust bundle (cluster trust). Never in the clear when TLS was asked for: the
    // node stays out of the cluster (it still serves its own bridges) until the files are
    // fixed.
    if (absl::StatusOr<server::ClusterTls> tls = server::LoadClusterTls(config_); tls.ok()) {
      options.tls_server = tls->server;
      options.tls_client = tls->client;
      options.tls_identity = tls->identity;
    } else {
      cluster_tls_error_ = std::string(tls.status().message());
    }
    absl::StatusOr<std::unique_ptr<cluster::ClusterNode>> node =
        cluster::ClusterNode::Open(options);
    if (!node.ok()) return node.status();
    cluster_ = std::move(*node);
    if (absl::Status routes = OpenRoutes(); !routes.ok()) return routes;
    if (!cluster_tls_error_.empty() && options.tls_server == nullptr) {
      LogEvent(LogLevel::kError, "cluster_tls_failed", "reason=" + LogQuote(cluster_tls_error_));
    }
    cluster_->SetDataHandlers(
        [this](raft::NodeId from, const cluster::Frame& frame) {
          routes_->OnFrame(from, frame.type, frame.payload);
        },
        [this](raft::NodeId peer) { routes_->OnLinkUp(peer); });
    mirrored_generation_ = 0;
    cluster_listening_ = false;
    if (!cluster_tls_error_.empty()) return absl::FailedPreconditionError(cluster_tls_error_);
    if (config_.cluster_enabled) ListenCluster();
    return absl::OkStatus();
  }

  void ListenCluster() {
    cluster_listening_ = false;
    const std::string address = ClusterAddress();
    absl::StatusOr<net::Endpoint> endpoint = net::Endpoint::Parse(address, 0);
    absl::Status listened = endpoint.ok() ? cluster_->Listen(*endpoint) : endpoint.status();
    if (!listened.ok()) {
      LogEvent(LogLevel::kError, "cluster_listen_failed",
               "address=" + address + " reason=" + LogQuote(std::string(listened.message())));
      return;
    }
    cluster_listening_ = true;
    LogEvent(LogLevel::kInfo, "cluster_listening", "address=" + address);
  }

  // Copies the replicated domain and call bridges into the node's configuration
  // whenever they change, so everything that reads config_ sees the cluster's.
  void MirrorClusterConfig() {
    if (!cluster_->has_state() || cluster_->config_generation() == mirrored_generation_) return;
    mirrored_generation_ = cluster_->config_generation();
    const config::Config& replicated = cluster_->config();
    if (!replicated.unknown_user_salt_key.empty() &&
        replicated.unknown_user_salt_key != salt_key_) {
      salt_key_ = replicated.unknown_user_salt_key;  // the cluster's: the same on every node
      server::SaveSaltKey(state_dir_, salt_key_);
      publisher_.Publish(BuildRouterConfig());
      NotifyShardsOfConfig();
    }
    // Before the cluster's configuration has arrived (initialize or join in
    // progress) there is nothing to mirror: the node keeps serving what it has.
    if (replicated.domain.empty()) return;
    NodeConfig proposed = config_;
    proposed.domain = replicated.domain;
    proposed.callbridges.clear();
    for (const auto& [name, bridge] : replicated.callbridges) {
      proposed.callbridges[name] = bridge.secret;
    }
    proposed.users = replicated.users;
    if (proposed == config_) return;
    (void)CommitLocal(std::move(proposed), "cluster");  // a failure is logged
  }

  // Makes `proposed` the node's configuration: durable, then live.
  absl::Status CommitLocal(NodeConfig proposed, const std::string& what) {
    // Durable before acknowledged: a crash after "ok" never loses the change.
    if (absl::Status saved = SaveNodeConfig(state_dir_, proposed); !saved.ok()) {
      LogEvent(LogLevel::kError, "config_save_failed",
               "reason=" + LogQuote(std::string(saved.message())));
      return saved;
    }
    // (Enabling the cluster opens its data port on the shards.)
    const bool listeners_changed =
        proposed.listen != config_.listen || proposed.cluster_enabled != config_.cluster_enabled ||
        proposed.ReadyToServe() != config_.ReadyToServe() || proposed.domain != config_.domain;
    config_ = std::move(proposed);
    last_config_change_unix_s_ =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    LogEvent(LogLevel::kInfo, "config_changed", "command=" + LogQuote(what));
    publisher_.Publish(BuildRouterConfig());
    if (listeners_changed) {
      ApplyEngineState();
    } else {
      NotifyShardsOfConfig();
    }
    PublishMetricsSnapshot();  // before the command is answered: a scrape after sees it
    return absl::OkStatus();
  }

  // Tells every shard that publisher_ holds a new router configuration.
  void NotifyShardsOfConfig() {
    for (int shard = 0; shard < shards_; ++shard) {
      PostToShard(shard, net::kConfigChanged, net::kNoConnection, 0, "");
    }
  }

  // ---- Records for the shards (server/shard_mail.h) ----

  static constexpr size_t kMailRecordsFull = 65536;  // waiting: the relay takes no more

  // The shards, through the records that wait for their queues.
  server::MailedShards Shards() { return server::MailedShards(engine_.get(), mail_, shards_); }

  void PostToShard(int shard, uint32_t kind, uint64_t target, uint64_t argument,
                   std::string_view payload) {
    Shards().Post(shard, kind, target, argument, payload);
  }

  void PostToAllShards(uint32_t kind, uint64_t argument, std::string_view payload) {
    server::MailedShards shards = Shards();
    for (int shard = 0; shard < shards_; ++shard) {
      shards.Post(shard, kind, net::kNoConnection, argument, payload);
    }
  }

  // The shards stopped: what waited for them goes. Stanzas among it were answered
  // "delivered" to their origins: counted and logged, the window of a stopping node.
  void DropMail() {
    if (const size_t stanzas = mail_.Drop(net::kDeliverFromPeer); stanzas > 0) {
      LogEvent(LogLevel::kWarning, "relay_deliveries_dropped",
               "count=" + std::to_string(stanzas) + " reason=\"the shards stopped\"");
    }
  }

  // ---- Between nodes: routes here (server/route_driver.h), stanzas on the shards' lanes ----

  absl::Status OpenRoutes() {
    if (routes_) return absl::OkStatus();
    routes_ = std::make_unique<server::RouteDriver>(
        cluster::DataPlaneInfo{options_.cluster_data_port, static_cast<uint32_t>(shards_)});
    return absl::OkStatus();
  }

  // The shards' lanes name their stanzas (lane, incarnation, sequence), each counting its
  // sequences from 1: every engine start takes a new incarnation, larger than any before
  // (durable), so no two lives of a lane share one.
  absl::Status NewIncarnation() {
    absl::StatusOr<uint64_t> incarnation = server::NextIncarnation(state_dir_ + "/cluster");
    if (!incarnation.ok()) return incarnation.status();
    incarnation_ = *incarnation;
    return absl::OkStatus();
  }

  // ---- Data links (cluster/data/data_links.h) ----

  // The data port's address: the cluster address's IP, --cluster_data_port.
  static absl::StatusOr<net::Endpoint> DataEndpoint(const std::string& cluster_address,
                                                    uint16_t port) {
    absl::StatusOr<net::Endpoint> cluster = net::Endpoint::Parse(cluster_address, 0);
    if (!cluster.ok()) return cluster.status();
    const std::string ip = cluster->IpString();
    return net::Endpoint::Parse(
        (ip.find(':') != std::string::npos ? "[" + ip + "]" : ip) + ":" + std::to_string(port),
        port);
  }

  // What the shards' data links and lanes need, published when it changes (looked at
  // every turn: a new leader reaches the lanes at once): links run between members that
  // told their data port, with the cluster key (and TLS when the cluster has it).
  void PublishDataPlane(bool clustered) {
    const bool ready = clustered && cluster_->has_state() && !cluster_->cluster_key().empty();
    std::string key = ready ? Concat(std::to_string(cluster_->leader_id()), "/",
                                     cluster_->is_member() ? "m" : "-", "/",
                                     std::to_string(cluster_->config_generation()), "/",
                                     std::to_string(routes_->data_planes_generation()))
                            : std::string("-");
    for (const raft::NodeId peer : ready ? cluster_->PeerIds() : std::vector<raft::NodeId>()) {
      key += "/" + std::to_string(peer);
    }
    key += "/" + std::to_string(incarnation_);
    if (ready) {
      for (const std::string& host : cluster_->isolated_from()) key += "/i" + host;
    }
    if (key == data_plane_key_) return;
    data_plane_key_ = key;
    auto next = std::make_shared<cluster::DataPlaneConfig>();
    next->incarnation = incarnation_;
    if (ready) {
      next->member = cluster_->is_member();
      next->leader = cluster_->leader_id();
      next->self = cluster_->id();
      next->self_address = cluster_->address();
      next->cluster_key = cluster_->cluster_key();
      next->isolated_from = cluster_->isolated_from();
      if (cluster_->tls()) {
        next->tls_server = cluster_->tls_server();
        next->tls_client = cluster_->tls_client();
      }
      const auto& identities = cluster_->config().member_identities;
      for (const cluster::MemberStatus& member : cluster_->Status().members) {
        if (member.self) continue;
        cluster::DataPlaneConfig::Member& entry = next->members[member.id];
        if (absl::StatusOr<net::Endpoint> cluster = net::Endpoint::Parse(member.address, 0);
            cluster.ok()) {
          entry.ip = cluster->IpString();
        }
        if (auto bound = identities.find(member.id); bound != identities.end()) {
          entry.identity = bound->second;
        }
        auto info = routes_->data_planes().find(member.id);
        if (info == routes_->data_planes().end()) continue;
        absl::StatusOr<net::Endpoint> endpoint = DataEndpoint(member.address, info->second.port);
        if (endpoint.ok()) entry.endpoint = *endpoint;
        entry.lanes = info->second.lanes;
      }
    }
    data_plane_.Publish(std::move(next));
    for (int shard = 0; shard < shards_; ++shard) {
      PostToShard(shard, server::kDataPlaneChanged, net::kNoConnection, 0, "");
    }
  }

  // Each member's data links from this node's shards (DataLinkStats::up).
  void CountDataLinks(cluster::ClusterStatus* status) const {
    if (!engine_ || data_plane_.Current()->cluster_key.empty()) return;
    for (cluster::MemberStatus& member : status->members) {
      if (member.self) continue;
      member.data_links_total = shards_;
      for (int shard = 0; shard < shards_; ++shard) {
        member.data_links_up +=
            data_link_stats_[static_cast<size_t>(shard)].up.load()->count(member.id) != 0 ? 1 : 0;
      }
    }
  }

  // One turn of the routes, then what waits for the shards goes.
  void DriveRoutes(bool cluster_active) {
    server::MailedShards shards = Shards();
    if (cluster_active) {
      server::ClusterNodeLinks links(*cluster_);
      routes_->Turn(&links, shards);
    } else {
      routes_->Turn(nullptr, shards);
    }
    shards.Flush();
  }

  static constexpr uint64_t kJoinTokenTtlSDefault = 3600;

  // What an operator types on the next node, with a token `cluster token` made.
  std::string JoinInstructions(const cluster::JoinToken& token, uint64_t ttl_s) const {
    return "Join another node with (the token admits one node, within " +
           std::to_string(ttl_s / 60 > 0 ? ttl_s / 60 : 1) +
           (ttl_s >= 120 ? " minutes" : " minute") + "):\n  stanzactl cluster join " +
           cluster_->address() + " --token=" + cluster::FormatJoinToken(token) +
           "\nMore tokens: stanzactl cluster token\n";
  }

  static admin::AdminResponse Error(const absl::Status& status) {
    return {1, "error: " + std::string(status.message()) + "\n"};
  }

  // The replicated change a command makes, if it makes one: the difference between
  // the configuration before and after it (one command changes one thing).
  static std::optional<cluster::ConfigCommand> ReplicatedChange(const NodeConfig& before,
                                                                const NodeConfig& after,
                                                                bool force) {
    if (before.domain != after.domain) return cluster::SetDomain{after.domain};
    for (const auto& [name, secret] : after.callbridges) {
      auto old = before.callbridges.find(name);
      if (old == before.callbridges.end() || old->second != secret) {
        return cluster::AddCallbridge{name, secret, force};
      }
    }
    for (const auto& [name, secret] : before.callbridges) {
      if (after.callbridges.count(name) == 0) return cluster::DeleteCallbridge{name};
    }
    for (const auto& [name, credentials] : after.users) {
      auto old = before.users.find(name);
      if (old == before.users.end()) return cluster::AddUser{name, credentials};
      if (old->second != credentials) return cluster::SetUserCredentials{name, credentials};
    }
    for (const auto& [name, credentials] : before.users) {
      if (after.users.count(name) == 0) return cluster::DeleteUser{name};
    }
    return std::nullopt;
  }

  void Handle(const admin::AdminRequest& original, admin::AdminServer::Reply reply) {
    admin::AdminRequest request = original;
    if (!request.args.empty() && request.args[0] == "xmpp") {
      request.args.erase(request.args.begin());
    }
    if (!request.args.empty() && request.args[0] == "cluster") {
      return HandleCluster(request, std::move(reply));
    }
    if (!request.args.empty() && request.args[0] == "certs") {
      return reply(HandleCerts(request));
    }
    const bool clustered = cluster_->has_state();
    const bool force =
        std::find(request.args.begin(), request.args.end(), "--force") != request.args.end();
    if (clustered && !request.args.empty() && request.args[0] == "reset") {
      if (cluster_->is_member() && !force) {
        return reply({1,
                      "error: this node is a member of a cluster; remove it first (on another "
                      "node: stanzactl cluster remove " +
                          cluster_->address() +
                          "), or use 'stanzactl reset --force' (it then joins as a new node)\n"});
      }
    }
    NodeConfig proposed = config_;
    CommandResult result = ExecuteNodeCommand(request, &proposed, RuntimeStatus());
    if (!result.config_changed) return reply(result.response);
    if (clustered && !request.args.empty() && request.args[0] != "reset") {
      if (std::optional<cluster::ConfigCommand> change =
              ReplicatedChange(config_, proposed, force)) {
        // Committed through the leader; this node mirrors it once applied.
        admin::AdminResponse ok = result.response;
        cluster_->Propose(*change, [this, ok, reply](const absl::Status& status) {
          if (!status.ok()) return reply(Error(status));
          MirrorClusterConfig();
          reply(ok);
        });
        return;
      }
    }
    if (!request.args.empty() && request.args[0] == "reset" && clustered) {
      // reset --force on a member: it forgets its cluster identity too.
      config_.cluster_enabled = false;
      const std::string dir = state_dir_ + "/cluster";
      cluster_.reset();
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
      proposed.cluster_enabled = false;
      proposed.cluster_trust.clear();
      if (absl::Status saved = CommitLocal(proposed, "reset"); !saved.ok()) {
        return reply(Error(saved));
      }
      if (absl::Status opened = OpenCluster(); !opened.ok()) return reply(Error(opened));
      result.response.output +=
          "The node left its cluster state behind (node id, Raft log, cluster key in " + dir +
          "); it joins as a new node, with a token from a member (stanzactl cluster token)\n";
      return reply(result.response);
    }
    if (absl::Status saved = CommitLocal(std::move(proposed), request.args[0]); !saved.ok()) {
      return reply({1, "error: the change was not saved: " + std::string(saved.message()) + "\n"});
    }
    if (!not_serving_reason_.empty() && config_.ReadyToServe()) {
      result.response.output += "warning: not serving: " + not_serving_reason_ + "\n";
    }
    reply(result.response);
  }

  // Reopens the cluster node so its links use the TLS files now configured.
  std::string ApplyClusterTls() {
    if (config_.tls_certificate.empty() || config_.cluster_trust.empty()) {
      return "note: cluster links use mutual TLS once both 'stanzactl certs KEY CERT' and "
             "'stanzactl cluster trust BUNDLE' are set\n";
    }
    if (absl::Status opened = OpenCluster(); !opened.ok()) {
      LogEvent(LogLevel::kError, "cluster_tls_failed",
               "reason=" + LogQuote(std::string(opened.message())));
      return "error: " + std::string(opened.message()) + "\n";
    }
    return "Cluster links now use mutual TLS (every member needs a certificate from this "
           "trust bundle)\n";
  }

  // `certs` shows this node's TLS files; `certs KEY CERT [BUNDLE]` checks and sets
  // them (the seed's `xmpp certs`).
  admin::AdminResponse HandleCerts(const admin::AdminRequest& request) {
    const size_t n = request.args.size();
    if (n == 1) {
      if (config_.tls_certificate.empty()) {
        return {0, "No certificate (stanzactl certs KEY CERT [BUNDLE])\n"};
      }
      std::string out =
          "Key file           : " + config_.tls_key +
          "\nCertificate file   : " + config_.tls_certificate +
          "\nTrust bundle       : " + (config_.tls_bundle.empty() ? "(none)" : config_.tls_bundle) +
          "\n";
      absl::StatusOr<std::string> pem = tls::ReadPemFile(config_.tls_certificate);
      if (pem.ok()) {
        if (auto summary = tls::SummarizeCertificate(*pem); summary.ok()) {
          out += "Certificate        : " + summary->ToString() + "\n";
        }
      }
      return {0, out};
    }
    if (n != 3 && n != 4) return {2, "usage: stanzactl certs [KEY CERT [BUNDLE]]\n"};
    for (size_t i = 1; i < n; ++i) {
      if (request.args[i].empty() || request.args[i].front() != '/') {
        return {2, "error: give absolute paths (stanzactl makes them so)\n"};
      }
    }
    if (config_.domain.empty()) {
      return {1,
              "error: set the domain first (stanzactl domain example.com): the certificate "
              "must cover it\n"};
    }
    // Read as the daemon's user sees them (the packaged one is not root): a file it
    // cannot open gets the exact chown/chmod, or the unit setting that hides it.
    for (size_t i = 1; i < n; ++i) {
      if (absl::Status readable = CheckDaemonCanRead(request.args[i],
                                                     i == 1   ? "private key"
                                                     : i == 2 ? "certificate"
                                                              : "bundle",
                                                     i == 1);
          !readable.ok()) {
        return Error(readable);
      }
    }
    const std::string bundle = n == 4 ? request.args[3] : "";
    if (absl::Status checked =
            tls::CheckServerCertificateFiles(request.args[1], request.args[2], bundle,
                                             config_.domain, std::chrono::system_clock::now());
        !checked.ok()) {
      return Error(checked);
    }
    NodeConfig proposed = config_;
    proposed.tls_key = request.args[1];
    proposed.tls_certificate = request.args[2];
    proposed.tls_bundle = bundle;
    if (absl::Status saved = CommitLocal(proposed, "certs"); !saved.ok()) return Error(saved);
    std::string out = "Certificate accepted for " + config_.domain + "\n";
    absl::StatusOr<std::string> pem = tls::ReadPemFile(config_.tls_certificate);
    if (pem.ok()) {
      if (auto summary = tls::SummarizeCertificate(*pem); summary.ok()) {
        out += summary->ToString() + "\n";
      }
    }
    out += "New client connections use this certificate; connected clients keep theirs\n";
    out += ApplyClusterTls();
    return {0, out};
  }

  void HandleCluster(const admin::AdminRequest& request, admin::AdminServer::Reply reply) {
    const std::string verb = request.args.size() > 1 ? request.args[1] : "";
    const uint16_t port = options_.cluster_port;
    const auto usage = [&] {
      reply({2,
             "usage: stanzactl cluster enable | disable | initialize | token [--ttl=SECONDS] | "
             "join HOST[:PORT] --token=TOKEN | remove NODE | status | trust BUNDLE | "
             "isolate IP... | isolate off\n"});
    };
    if (verb == "status") {
      if (request.args.size() != 2) return usage();
      cluster::ClusterStatus status = cluster_->Status();
      CountDataLinks(&status);
      std::string out = request.json ? ClusterStatusJson(status, config_, cluster_listening_)
                                     : ClusterStatusText(status, config_, cluster_listening_);
      if (!request.json && !cluster_tls_error_.empty())
        out += "error: " + cluster_tls_error_ + "\n";
      return reply({0, out});
    }
    if (verb == "enable" || verb == "disable") {
      if (request.args.size() != 2) return usage();
      NodeConfig proposed = config_;
      proposed.cluster_enabled = verb == "enable";
      if (proposed.cluster_enabled && config_.listen.empty() && options_.cluster_address.empty()) {
        return reply({1,
                      "error: set a listen address first (stanzactl listen IP): the cluster "
                      "port opens on the first one\n"});
      }
      if (proposed.cluster_enabled && ClusterAddress().empty()) {
        return reply({1, "error: the first listen address (" + config_.listen.front() +
                             ") is a wildcard that other nodes cannot dial; start stanzad with "
                             "--cluster_address=THIS_NODE_IP (the address the other nodes "
                             "reach it at), or list that address first (stanzactl listen "
                             "IP)\n"});
      }
      if (absl::Status saved = CommitLocal(proposed, "cluster " + verb); !saved.ok()) {
        return reply(Error(saved));
      }
      if (config_.cluster_enabled) {
        if (!cluster_->has_state() && cluster_->address() != ClusterAddress()) {
          if (absl::Status opened = OpenCluster(); !opened.ok()) return reply(Error(opened));
        } else {
          ListenCluster();
        }
        if (!cluster_listening_) {
          return reply({1, "error: cluster enabled but the cluster port " + ClusterAddress() +
                               " could not be opened (see the log); is it taken?\n"});
        }
        return reply({0, "Cluster enabled; cluster port " + ClusterAddress() + "\n"});
      }
      // Links too: a node that stops serving them must not look connected to the others.
      cluster_->Disconnect();
      cluster_listening_ = false;
      return reply({0, std::string("Cluster disabled") +
                           (cluster_->is_member()
                                ? "; this node is still a member: the others see it as down "
                                  "until 'cluster enable' (or remove it: cluster remove " +
                                      cluster_->address() + ")\n"
                                : "\n")});
    }
    if (verb == "trust") {
      if (request.args.size() != 3) return usage();
      const std::string& path = request.args[2];
      if (absl::Status readable = CheckDaemonCanRead(path, "trust bundle", false); !readable.ok()) {
        return reply(Error(readable));
      }
      NodeConfig proposed = config_;
      proposed.cluster_trust = path;
      if (absl::Status saved = CommitLocal(proposed, "cluster trust"); !saved.ok()) {
        return reply(Error(saved));
      }
      return reply({0, "Trust bundle set: " + path + "\n" + ApplyClusterTls()});
    }
    if (!config_.cluster_enabled) {
      return reply({1,
                    "error: the cluster is not enabled on this node: run 'stanzactl cluster "
                    "enable' first\n"});
    }
    if (verb == "initialize") {
      if (request.args.size() != 2) return usage();
      if (config_.domain.empty()) {
        return reply({1, "error: set the domain first (stanzactl domain example.com)\n"});
      }
      std::vector<cluster::ConfigCommand> seed = {cluster::SetDomain{config_.domain},
                                                  cluster::SetSaltKey{salt_key_}};
      for (const auto& [name, secret] : config_.callbridges) {
        seed.push_back(cluster::AddCallbridge{name, secret, false});
      }
      for (const auto& [name, credentials] : config_.users) {
        seed.push_back(cluster::AddUser{name, credentials});
      }
      const size_t bridges = config_.callbridges.size();
      cluster_->Initialize(std::move(seed), [this, reply, bridges](const absl::Status& status) {
        if (!status.ok()) return reply(Error(status));
        MirrorClusterConfig();
        const std::string made = "Cluster initialized with this node (" + cluster_->address() +
                                 ") as its only member and leader; domain " + config_.domain +
                                 " and " + std::to_string(bridges) +
                                 (bridges == 1 ? " call bridge is" : " call bridges are") +
                                 " now the cluster's.\n";
        // The first join token, so that the operator's next step is one command.
        cluster_->CreateJoinToken(
            kJoinTokenTtlSDefault,
            [this, reply, made](const absl::StatusOr<cluster::JoinToken>& token) {
              if (!token.ok()) {
                return reply({0, made + "warning: no join token made (" +
                                     std::string(token.status().message()) +
                                     "); make one with: stanzactl cluster token\n"});
              }
              reply({0, made + JoinInstructions(*token, kJoinTokenTtlSDefault)});
            });
      });
      return;
    }
    if (verb == "token") {
      uint64_t ttl_s = kJoinTokenTtlSDefault;
      for (size_t i = 2; i < request.args.size(); ++i) {
        const std::string& arg = request.args[i];
        if (!arg.starts_with("--ttl=") || !absl::SimpleAtoi(arg.substr(6), &ttl_s) || ttl_s == 0 ||
            ttl_s > 7 * 24 * 3600) {
          return reply({2,
                        "usage: stanzactl cluster token [--ttl=SECONDS] (1 to 604800; default "
                        "3600)\n"});
        }
      }
      if (!cluster_->is_member()) {
        return reply({1,
                      "error: this node is not a member of a cluster: make the tokens on a "
                      "member ('stanzactl cluster status' shows whether this node is one)\n"});
      }
      cluster_->CreateJoinToken(
          ttl_s, [this, reply, ttl_s](const absl::StatusOr<cluster::JoinToken>& token) {
            if (!token.ok()) return reply(Error(token.status()));
            reply({0, JoinInstructions(*token, ttl_s)});
          });
      return;
    }
    if (verb == "join") {
      std::vector<std::string> words;
      std::optional<cluster::JoinToken> token;
      for (size_t i = 2; i < request.args.size(); ++i) {
        const std::string& arg = request.args[i];
        if (!arg.starts_with("--token=")) {
          words.push_back(arg);
          continue;
        }
        absl::StatusOr<cluster::JoinToken> parsed = cluster::ParseJoinToken(arg.substr(8));
        if (!parsed.ok()) return reply({2, "error: --token: " + parsed.status().ToString() + "\n"});
        token = *parsed;
      }
      if (words.size() != 1) return usage();
      if (!token) {
        return reply({2,
                      "error: joining needs a member's approval: on a member run 'stanzactl "
                      "cluster token', then here: stanzactl cluster join " +
                          words[0] + " --token=TOKEN\n"});
      }
      absl::StatusOr<std::string> address = ResolveClusterAddress(words[0], port);
      if (!address.ok()) return reply(Error(address.status()));
      if (*address == cluster_->address()) {
        return reply({1, "error: that is this node's own address; join another member\n"});
      }
      const std::map<std::string, std::string> local = config_.callbridges;
      cluster_->Join(*address, *token, [this, reply, local, address](const absl::Status& status) {
        if (!status.ok()) return reply(Error(status));
        MirrorClusterConfig();
        std::string out = "Joined the cluster through " + *address + "; leader " +
                          cluster_->Status().leader_address + "\n";
        // Bridges this node had: the cluster's secrets win; those it lacks are added.
        for (const auto& [name, secret] : local) {
          auto it = cluster_->config().callbridges.find(name);
          if (it == cluster_->config().callbridges.end()) {
            cluster_->Propose(cluster::AddCallbridge{name, secret, false},
                              [](const absl::Status&) {});
            out += "callbridge " + name + ": added to the cluster\n";
          } else if (it->second.secret != secret) {
            out += "warning: callbridge " + name +
                   " has a different secret on the cluster; the cluster's is kept (change it "
                   "with: stanzactl callbridge add-secret " +
                   name + " --force)\n";
          }
        }
        reply({0, out});
      });
      return;
    }
    if (verb == "isolate") {
      // A drill for failover and partition tests: this node's cluster and data links
      // to and from these hosts are cut until 'isolate off' or a restart.
      if (request.args.size() < 3) return usage();
      std::set<std::string> hosts;
      if (!(request.args.size() == 3 && request.args[2] == "off")) {
        for (size_t i = 2; i < request.args.size(); ++i) {
          std::string host = request.args[i];
          if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
            host = host.substr(1, host.size() - 2);
          }
          in6_addr parsed{};
          char text[INET6_ADDRSTRLEN] = "";
          const int family = inet_pton(AF_INET, host.c_str(), &parsed) == 1    ? AF_INET
                             : inet_pton(AF_INET6, host.c_str(), &parsed) == 1 ? AF_INET6
                                                                               : 0;
          if (family == 0 || inet_ntop(family, &parsed, text, sizeof(text)) == nullptr) {
            return reply({2, "error: '" + request.args[i] +
                                 "' is not an IP address; usage: stanzactl cluster isolate "
                                 "IP [IP...] | isolate off\n"});
          }
          hosts.insert(text);  // as the transport writes addresses
        }
      }
      const std::string list = absl::StrJoin(hosts, ",");
      cluster_->IsolateFrom(hosts);
      LogEvent(hosts.empty() ? LogLevel::kInfo : LogLevel::kWarning, "cluster_isolated",
               "hosts=" + (hosts.empty() ? std::string("none") : list));
      return reply({0, hosts.empty() ? "Cluster links restored\n"
                                     : "Cluster links to and from " + list +
                                           " cut (a drill: 'stanzactl cluster isolate off' or "
                                           "a restart ends it)\n"});
    }
    if (verb == "remove") {
      if (request.args.size() != 3) return usage();
      const cluster::RemoveTarget target = ParseRemoveTarget(request.args[2], port);
      cluster_->Remove(target, [reply, name = request.args[2]](const absl::Status& status) {
        if (!status.ok()) return reply(Error(status));
        reply({0, "Removed " + name + " from the cluster\n"});
      });
      return;
    }
    usage();
  }

  // What is wrong with this node's cluster, for status and /healthz; empty when whole.
  std::string ClusterProblem(const cluster::ClusterStatus& cluster) const {
    if (!cluster.failed.ok()) return "stopped: " + std::string(cluster.failed.message());
    if (!cluster_tls_error_.empty()) return "stopped: " + cluster_tls_error_;
    if (!config_.cluster_enabled || !cluster.member) return "";
    std::vector<std::string> unreachable;
    for (const cluster::MemberStatus& member : cluster.members) {
      if (!member.connected) unreachable.push_back(member.address);
    }
    if (unreachable.empty()) return "";
    return "degraded: " + std::to_string(unreachable.size()) + " of " +
           std::to_string(cluster.members.size()) + " members unreachable (" +
           absl::StrJoin(unreachable, ", ") + ")";
  }

  NodeRuntimeStatus RuntimeStatus() const {
    NodeRuntimeStatus status;
    status.version = kVersion;
    status.uptime_s = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                                std::chrono::steady_clock::now() - started_)
                                                .count());
    status.serving = engine_ != nullptr;
    status.not_serving_reason = not_serving_reason_;
    // Without a certificate the TLS ports are open but serve no one (a STARTTLS
    // client is told why in its stream): status must not read as if they worked.
    const bool tls_ready = publisher_.Current()->client_tls != nullptr;
    if (!tls_ready && engine_ != nullptr) {
      status.tls_refused_reason =
          config_.tls_certificate.empty()
              ? "this node has no certificate"
              : "its certificate files do not load: event=client_tls_unavailable in the log";
    }
    if (engine_) {
      const std::vector<net::Endpoint> endpoints = engine_->listening_endpoints();
      for (size_t i = 0; i < endpoints.size() && i < listener_tags_.size(); ++i) {
        const int tag = listener_tags_[i];
        const bool data = tag == cluster::kClusterDataListener;
        std::string what = tag == net::kComponentListener      ? " (call bridges"
                           : tag == net::kComponentTlsListener ? " (call bridges, TLS"
                           : tag == net::kClientListener       ? " (clients, STARTTLS"
                           : data                              ? " (cluster data links"
                                                               : " (clients, direct TLS";
        if (!tls_ready && tag != net::kComponentListener && !data) {
          what += ": refused, no certificate";
        }
        status.listeners.push_back(endpoints[i].ToString() + what + ")");
      }
    }
    for (int i = 0; i < shards_; ++i) {
      const net::RouterShardStats& s = stats_[static_cast<size_t>(i)];
      status.connections_open += s.connections_open.load(std::memory_order_relaxed);
      status.bridges_connected += s.bridges_connected.load(std::memory_order_relaxed);
      status.clients_connected += s.clients_connected.load(std::memory_order_relaxed);
      status.stanzas_routed += s.stanzas_routed.load(std::memory_order_relaxed);
      status.stanzas_answered += s.stanzas_answered.load(std::memory_order_relaxed);
      status.stanzas_bounced += s.stanzas_bounced.load(std::memory_order_relaxed);
      status.auth_failures += s.auth_failures.load(std::memory_order_relaxed);
      status.stream_errors += s.stream_errors.load(std::memory_order_relaxed);
    }
    status.recent_problems = RecentProblems();
    if (cluster_ && cluster_->has_state()) {
      const cluster::ClusterStatus cluster = cluster_->Status();
      std::string role = cluster.role == raft::Role::kLeader     ? "LEADER"
                         : cluster.role == raft::Role::kFollower ? "FOLLOWER"
                                                                 : "CANDIDATE";
      status.cluster = role + ", " + std::to_string(cluster.members.size()) + " members, leader " +
                       (cluster.leader_address.empty() ? "unknown" : cluster.leader_address);
      if (const std::string problem = ClusterProblem(cluster); !problem.empty()) {
        status.cluster += "; " + problem;
      }
    } else {
      status.cluster =
          config_.cluster_enabled ? "enabled, not in a cluster yet" : "not clustered (single node)";
    }
    return status;
  }

  void StopEngine() {
    if (!engine_) return;
    engine_->Stop();
    engine_.reset();
    DropMail();
    // Its bridges are gone: the other nodes forget them.
    routes_->DropLocalRoutes();
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
          net::Endpoint::Parse(address, options_.component_port);
      if (!endpoint.ok()) {
        not_serving_reason_ = std::string(endpoint.status().message());
        LogEvent(LogLevel::kError, "listen_failed", "reason=" + LogQuote(not_serving_reason_));
        return;
      }
      options.listeners.push_back({*endpoint, options_.component_tls ? net::kComponentTlsListener
                                                                     : net::kComponentListener});
      endpoint = net::Endpoint::Parse(address, options_.c2s_port);
      if (endpoint.ok()) options.listeners.push_back({*endpoint, net::kClientListener});
      if (const uint16_t port = options_.c2s_tls_port; port != 0) {
        endpoint = net::Endpoint::Parse(address, port);
        if (endpoint.ok()) options.listeners.push_back({*endpoint, net::kClientTlsListener});
      }
    }
    if (config_.cluster_enabled && !ClusterAddress().empty()) {
      absl::StatusOr<net::Endpoint> data =
          DataEndpoint(ClusterAddress(), options_.cluster_data_port);
      if (data.ok()) options.listeners.push_back({*data, cluster::kClusterDataListener});
    }
    options.connections_max_per_shard = options_.connections_max_per_shard;
    options.connection_queue_bytes_max = options_.connection_queue_bytes_max;
    const net::RouterLimits& limits = options_.router;
    for (int i = 0; i < shards_; ++i) {
      net::RouterShardStats& s = stats_[static_cast<size_t>(i)];
      s.connections_open.store(0);
      s.bridges_connected.store(0);
      s.clients_connected.store(0);
      s.client_connections_open.store(0);
    }
    // The lanes' timers (resends, deadlines) and a new leader's resends run on ticks.
    options.tick_ms = 20;
    if (absl::Status taken = NewIncarnation(); !taken.ok()) {
      not_serving_reason_ = Concat("the relay's incarnation: ", std::string(taken.message()));
      LogEvent(LogLevel::kError, "listen_failed", "reason=" + LogQuote(not_serving_reason_));
      return;
    }
    PublishDataPlane(config_.cluster_enabled && cluster_ && cluster_tls_error_.empty());
    // Each lane holds its share of the node's custody bound.
    cluster::relay::Options lane_options = options_.relay;
    lane_options.hold_bytes_max =
        std::max<size_t>(1, lane_options.hold_bytes_max / static_cast<size_t>(shards_));
    absl::StatusOr<std::unique_ptr<net::Engine>> engine =
        net::Engine::Start(options, [this, limits, lane_options](int shard) {
          const size_t index = static_cast<size_t>(shard);
          return std::make_unique<server::NodeShard>(
              std::make_unique<net::RouterShard>(&publisher_, limits, &stats_[index]),
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
    // The new shards learn the routes of the other nodes.
    for (const cluster::relay::RouteChange& route : routes_->RemoteRoutes()) {
      PostToAllShards(net::kRemoteRouteBind, route.node, route.address);
    }
    std::string listening;
    for (const net::Endpoint& endpoint : engine_->listening_endpoints()) {
      listening += (listening.empty() ? "" : ",") + endpoint.ToString();
    }
    LogEvent(LogLevel::kInfo, "serving",
             "domain=" + config_.domain + " listen=" + listening +
                 " bridges=" + std::to_string(config_.callbridges.size()));
  }

  const DaemonOptions options_;  // the flags, read once
  std::string state_dir_;
  NodeConfig config_;
  std::string salt_key_;  // see LoadOrCreateSaltKey
  net::RouterConfigPublisher publisher_;
  std::vector<int> listener_tags_;  // of the running engine's listeners, in order
  std::chrono::steady_clock::time_point started_;
  const int shards_;
  std::unique_ptr<net::RouterShardStats[]> stats_;
  std::unique_ptr<net::Engine> engine_;
  std::string not_serving_reason_;
  std::chrono::steady_clock::time_point last_start_attempt_;
  std::string metrics_addr_;  // cleared when it cannot be parsed
  std::unique_ptr<cluster::ClusterNode> cluster_;
  bool cluster_listening_ = false;
  std::string cluster_tls_error_;  // set: TLS was asked for and failed; the node stays out
  std::unique_ptr<server::RouteDriver> routes_;
  uint64_t incarnation_ = 0;    // the running engine's lanes' (NewIncarnation)
  std::string data_plane_key_;  // what the last published DataPlaneConfig was made of
  cluster::DataPlanePublisher data_plane_;
  std::unique_ptr<cluster::DataLinkStats[]> data_link_stats_;
  std::unique_ptr<server::LaneStats[]> lane_stats_;
  ShardMail mail_{shards_, kMailRecordsFull};  // records the shards' queues did not take yet
  uint64_t turn_now_ms_ = 0;                   // the control loop's clock this turn
  uint64_t mirrored_generation_ = 0;
  std::chrono::steady_clock::time_point last_metrics_attempt_;
  double last_config_change_unix_s_ = 0;
  std::atomic<std::shared_ptr<const NodeMetricsSnapshot>> metrics_snapshot_;
  // Last, so it stops (its thread reads stats_ and the snapshot) before they go.
  std::unique_ptr<metrics::HttpServer> metrics_server_;
};

}  // namespace
}  // namespace stanzad

int main(int argc, char** argv) {
  static constexpr char kUsage[] =
      "The stanzad XMPP stanza router.\n"
      "Usage: stanzad --state_dir=DIR [flags]\n"
      "Configure it with stanzactl --state_dir=DIR (domain, listen, callbridge add, enable).";
  // --help in the terms an operator thinks in (cmd/daemon_options.cc names every flag).
  if (stanzad::PrintGroupedHelpIfAsked(argc, argv, kUsage, stanzad::DaemonFlagGroups())) return 0;
  stanzad::ConfigureFlagsUsage(kUsage, "stanzad");
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<stanzad::DaemonOptions> options = stanzad::ReadDaemonOptions();
  if (!options.ok()) {
    std::fprintf(stderr, "stanzad: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  stanzad::SetLogLevel(options->log_level);
  absl::StatusOr<stanzad::NodeConfig> config = stanzad::server::LoadOrSeedNodeConfig(*options);
  if (!config.ok()) {
    std::fprintf(stderr, "stanzad: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  struct sigaction action {};
  action.sa_handler = stanzad::OnSignal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
  stanzad::Daemon daemon(std::move(*options), std::move(*config));
  return daemon.Run();
}
