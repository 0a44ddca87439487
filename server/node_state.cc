#include "server/node_state.h"

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_join.h"
#include "admin/node_commands.h"
#include "cluster/storage/fs.h"
#include "core/base/concat.h"
#include "core/base/log.h"
#include "server/metrics_publisher.h"
#include "server/state_dir.h"
#include "server/tls_files.h"

namespace stanzad::server {
namespace {

bool IsWildcard(const std::string& ip) {
  in6_addr address{};
  if (inet_pton(AF_INET, ip.c_str(), &address) == 1) {
    return reinterpret_cast<const in_addr*>(&address)->s_addr == INADDR_ANY;
  }
  return inet_pton(AF_INET6, ip.c_str(), &address) == 1 && IN6_IS_ADDR_UNSPECIFIED(&address);
}

// The data port's address: the cluster address's IP, --cluster_data_port.
absl::StatusOr<net::Endpoint> DataEndpoint(const std::string& cluster_address, uint16_t port) {
  absl::StatusOr<net::Endpoint> cluster = net::Endpoint::Parse(cluster_address, 0);
  if (!cluster.ok()) return cluster.status();
  const std::string ip = cluster->IpString();
  return net::Endpoint::Parse(
      (ip.find(':') != std::string::npos ? "[" + ip + "]" : ip) + ":" + std::to_string(port), port);
}

}  // namespace

struct NodeState::RouterConfigReturns {
  std::mutex mutex;
  std::vector<std::unique_ptr<router::RouterConfig>> returned;  // drained at every publication
};

NodeState::NodeState(const DaemonOptions& options, NodeConfig config, std::string salt_key,
                     EngineSupervisor* engine, MetricsPublisher* metrics)
    : options_(options),
      engine_(engine),
      metrics_(metrics),
      config_(std::move(config)),
      files_(options.state_dir),
      router_returns_(std::make_shared<RouterConfigReturns>()),
      salt_key_(std::move(salt_key)),
      routes_(std::make_unique<RouteDriver>(
          cluster::DataPlaneInfo{options.cluster_data_port,
                                 static_cast<uint32_t>(engine->shards())},
          options.directory)) {
  PublishRouterConfig(nullptr);
  // The journal starts from a config of its own epoch, so that the first change costs what
  // the others do. On failure the first change rewrites the whole config (and says why).
  if (absl::Status rewritten = files_.Rewrite(config_); !rewritten.ok()) {
    LogEvent(LogLevel::kError, "config_save_failed",
             "reason=" + LogQuote(std::string(rewritten.message())));
  }
}

std::shared_ptr<const router::RouterConfig> NodeState::BuildRouterConfig() const {
  return BuildRouterConfigBuffer();
}

std::unique_ptr<router::RouterConfig> NodeState::BuildRouterConfigBuffer() const {
  auto router = std::make_unique<router::RouterConfig>();
  router->domain = config_.domain;
  router->enabled = config_.ReadyToServe();
  router->bridge_secrets.reserve(config_.callbridges.size());
  for (const auto& [name, secret] : config_.callbridges) {
    router->bridge_secrets[name + "." + config_.domain] = secret;
  }
  router->users.reserve(config_.users.size());  // one table, not twenty rehashes at a million
  for (const auto& [name, credentials] : config_.users) router->users.emplace(name, credentials);
  router->client_tls = ClientTlsContext(config_);
  router->unknown_user_salt_key = salt_key_;
  return router;
}

void NodeState::EditRouterConfig(const NodeConfigEdit& edit, router::RouterConfig* router) const {
  switch (edit.kind) {
    case NodeConfigEdit::Kind::kSetCallbridge:
      router->bridge_secrets[edit.name + "." + config_.domain] = edit.secret;
      return;
    case NodeConfigEdit::Kind::kDeleteCallbridge:
      router->bridge_secrets.erase(edit.name + "." + config_.domain);
      return;
    case NodeConfigEdit::Kind::kSetUser:
      router->users.insert_or_assign(edit.name, edit.credentials);
      return;
    case NodeConfigEdit::Kind::kDeleteUser:
      router->users.erase(edit.name);
      return;
  }
}

std::unique_ptr<router::RouterConfig> NodeState::TakeSpareRouter(bool wanted) {
  std::unique_ptr<router::RouterConfig> spare;
  std::vector<std::unique_ptr<router::RouterConfig>> abandoned;  // freed outside the lock
  {
    std::lock_guard lock(router_returns_->mutex);
    for (std::unique_ptr<router::RouterConfig>& returned : router_returns_->returned) {
      if (wanted && spare == nullptr && returned.get() == spare_router_) {
        spare = std::move(returned);
      } else {
        abandoned.push_back(std::move(returned));
      }
    }
    router_returns_->returned.clear();
  }
  if (wanted && spare == nullptr && unpublished_spare_ != nullptr) {
    spare = std::move(unpublished_spare_);  // the copy made at the last whole rebuild
  }
  return spare;
}

void NodeState::PublishRouterConfig(const std::vector<NodeConfigEdit>* edits) {
  if (edits != nullptr) {
    unpublished_edits_.insert(unpublished_edits_.end(), edits->begin(), edits->end());
    (void)PublishRouterEdits(kSpareWait);
    return;
  }
  (void)TakeSpareRouter(false);
  unpublished_edits_.clear();  // the whole copy holds them
  std::unique_ptr<router::RouterConfig> next = BuildRouterConfigBuffer();
  // The change that follows edits this copy rather than build one: the whole cost falls on
  // this change (a domain, a reset, the start), not on a bridge or a user.
  unpublished_spare_ = std::make_unique<router::RouterConfig>(*next);
  spare_router_ = nullptr;
  spare_lag_.clear();
  Publish(std::move(next));
}

bool NodeState::PublishRouterEdits(std::chrono::microseconds wait) {
  if (unpublished_edits_.empty()) return true;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::unique_ptr<router::RouterConfig> next = TakeSpareRouter(true);
  while (next == nullptr && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    next = TakeSpareRouter(true);
  }
  const size_t lag_max =
      std::max(kRouterSpareLagMax, (config_.callbridges.size() + config_.users.size()) / 2);
  const bool within_lag = spare_lag_.size() + unpublished_edits_.size() <= lag_max;
  // The shards still hold the spare: a later turn publishes (a whole copy would hold the
  // control thread for the whole configuration), unless the edits waiting outgrew it.
  if (next == nullptr && within_lag) return false;
  if (next != nullptr && within_lag) {
    for (const NodeConfigEdit& edit : spare_lag_) EditRouterConfig(edit, next.get());
    for (const NodeConfigEdit& edit : unpublished_edits_) EditRouterConfig(edit, next.get());
  } else {
    next = BuildRouterConfigBuffer();
  }
  // The buffer replaced now lacks exactly the edits published now.
  spare_router_ = current_router_;
  spare_lag_ = std::move(unpublished_edits_);
  unpublished_edits_.clear();
  Publish(std::move(next));
  return true;
}

void NodeState::DeferredWork() {
  const auto start = std::chrono::steady_clock::now();
  const size_t edits = unpublished_edits_.size();
  if (!unpublished_edits_.empty() && PublishRouterEdits(std::chrono::microseconds(0))) {
    NotifyShardsOfConfig();
  }
  const auto published = std::chrono::steady_clock::now();
  if (!files_.rewriting() && files_.RewriteDue() &&
      published - last_mirror_edit_ >= kMirrorQuietMs) {
    BeginRewrite();  // the mirror's, once its changes paused
  }
  if (files_.rewriting()) {
    absl::StatusOr<bool> done = files_.ContinueRewrite(config_, kRewriteSliceEntries);
    if (!done.ok()) {
      LogEvent(LogLevel::kError, "config_save_failed",
               "reason=" + LogQuote(std::string(done.status().message())));
    }
  }
  const auto ms = [](auto from, auto to) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
  };
  const auto end = std::chrono::steady_clock::now();
  if (ms(start, end) >= kSlowStepMs) {
    LogEvent(LogLevel::kInfo, "config_deferred_work_slow",
             Concat("router_edits=", std::to_string(edits),
                    " router_ms=", std::to_string(ms(start, published)),
                    " rewrite_ms=", std::to_string(ms(published, end))));
  }
}

void NodeState::Publish(std::unique_ptr<router::RouterConfig> next) {
  current_router_ = next.get();
  std::shared_ptr<RouterConfigReturns> returns = router_returns_;
  engine_->router_config().Publish(std::shared_ptr<const router::RouterConfig>(
      next.release(), [returns](const router::RouterConfig* config) {
        // On whichever thread let go of it last (a shard's, mostly).
        std::lock_guard lock(returns->mutex);
        returns->returned.emplace_back(const_cast<router::RouterConfig*>(config));
      }));
}

void NodeState::ConfigChanged(const std::string& what) {
  last_config_change_unix_s_ =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  LogEvent(LogLevel::kInfo, "config_changed", "command=" + LogQuote(what));
}

absl::Status NodeState::CommitEdits(const std::vector<NodeConfigEdit>& edits,
                                    const std::string& what, bool sync) {
  if (edits.empty()) return absl::OkStatus();
  absl::Status saved = files_.Append(edits);
  if (saved.ok() && sync) saved = files_.Sync();
  if (!saved.ok() && absl::IsFailedPrecondition(saved)) {
    // No journal yet (the first change since start, or a write failed): the whole config.
    NodeConfig proposed = config_;
    for (const NodeConfigEdit& edit : edits) ApplyNodeConfigEdit(edit, &proposed);
    return Commit(std::move(proposed), what);
  }
  if (!saved.ok()) {
    LogEvent(LogLevel::kError, "config_save_failed",
             "reason=" + LogQuote(std::string(saved.message())));
    return saved;
  }
  for (const NodeConfigEdit& edit : edits) ApplyNodeConfigEdit(edit, &config_);
  ConfigChanged(what);
  PublishRouterConfig(&edits);
  NotifyShardsOfConfig();
  metrics_->Publish(*this);  // before the command is answered: a scrape after sees it
  if (!sync) last_mirror_edit_ = std::chrono::steady_clock::now();
  // The mirror's rewrite waits for a pause (DeferredWork) unless its journal grew far.
  if (sync ? files_.RewriteDue() : files_.RewriteDue(kMirrorJournalPercentMax)) BeginRewrite();
  return absl::OkStatus();
}

void NodeState::BeginRewrite() {
  // Written a slice per turn (DeferredWork); a failure leaves the current files in use.
  if (absl::Status begun = files_.BeginRewrite(config_); !begun.ok()) {
    LogEvent(LogLevel::kError, "config_save_failed",
             "reason=" + LogQuote(std::string(begun.message())));
  }
}

absl::Status NodeState::Commit(NodeConfig proposed, const std::string& what) {
  // Durable before acknowledged: a crash after "ok" never loses the change.
  if (absl::Status saved = files_.Rewrite(proposed); !saved.ok()) {
    LogEvent(LogLevel::kError, "config_save_failed",
             "reason=" + LogQuote(std::string(saved.message())));
    return saved;
  }
  Adopt(std::move(proposed), what);
  return absl::OkStatus();
}

void NodeState::Adopt(NodeConfig proposed, const std::string& what) {
  // (Enabling the cluster opens its data port on the shards.)
  const bool listeners_changed =
      proposed.listen != config_.listen || proposed.cluster_enabled != config_.cluster_enabled ||
      proposed.ReadyToServe() != config_.ReadyToServe() || proposed.domain != config_.domain;
  config_ = std::move(proposed);
  ConfigChanged(what);
  PublishRouterConfig(nullptr);
  if (listeners_changed) {
    ApplyEngineState();
  } else {
    NotifyShardsOfConfig();
  }
  metrics_->Publish(*this);  // before the command is answered: a scrape after sees it
}

// Tells every shard that the router configuration publisher holds a new one.
void NodeState::NotifyShardsOfConfig() { engine_->PostToAllShards(router::ConfigChanged{}); }

// ---- The engine ----

void NodeState::ApplyEngineState() {
  std::optional<net::Endpoint> data_listener;
  if (config_.cluster_enabled && !ClusterAddress().empty()) {
    absl::StatusOr<net::Endpoint> data = DataEndpoint(ClusterAddress(), options_.cluster_data_port);
    if (data.ok()) data_listener = *data;
  }
  engine_->Apply(config_, data_listener, *this);
}

void NodeState::StopEngine() { engine_->Stop(*this); }

void NodeState::RetryEngineStart(std::chrono::steady_clock::time_point now) {
  // A listener that could not be opened (port taken) is retried every 5 s.
  if (config_.ReadyToServe() && engine_->RetryDue(now)) ApplyEngineState();
}

void NodeState::OnEngineStopped() {
  // Its bridges are gone: the other nodes forget them.
  routes_->DropLocalRoutes();
}

void NodeState::OnEngineStarting() {
  PublishDataPlane(config_.cluster_enabled && cluster_ && cluster_tls_error_.empty());
}

void NodeState::OnEngineStarted() {
  // The new shards learn the routes of the other nodes.
  for (const cluster::relay::RouteChange& route : routes_->RemoteRoutes()) {
    engine_->PostToAllShards(router::RemoteRouteBind{route.node, route.address});
  }
}

// ---- The cluster ----

std::string NodeState::ClusterAddress() const {
  const std::string port = std::to_string(options_.cluster_port);
  std::string ip = options_.cluster_address;
  if (ip.empty()) {
    if (config_.listen.empty() || IsWildcard(config_.listen.front())) return "";
    ip = config_.listen.front();
  }
  return ip.find(':') != std::string::npos ? "[" + ip + "]:" + port : ip + ":" + port;
}

std::string NodeState::ClusterProblem(const cluster::ClusterStatus& cluster) const {
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

std::string NodeState::ClusterStoreProblem() const {
  return "the cluster store " + options_.state_dir + "/cluster could not be opened (" +
         std::string(cluster_open_error_.message()) +
         "); fix the cause (disk space, permissions) and restart stanzad";
}

absl::Status NodeState::OpenCluster() {
  cluster_.reset();
  cluster_tls_error_.clear();
  cluster::ClusterNodeOptions options;
  options.dir = options_.state_dir + "/cluster";
  options.address = ClusterAddress();
  options.limits = options_.cluster_links;
  // Mutual TLS on the cluster links once the node has a certificate (certs) and the
  // cluster a trust bundle (cluster trust). Never in the clear when TLS was asked for: the
  // node stays out of the cluster (it still serves its own bridges) until the files are
  // fixed.
  if (absl::StatusOr<ClusterTls> tls = LoadClusterTls(config_); tls.ok()) {
    options.tls_server = tls->server;
    options.tls_client = tls->client;
    options.tls_identity = tls->identity;
  } else {
    cluster_tls_error_ = std::string(tls.status().message());
  }
  absl::StatusOr<std::unique_ptr<cluster::ClusterNode>> node = cluster::ClusterNode::Open(options);
  if (!node.ok()) {
    cluster_open_error_ = node.status();
    return absl::Status(node.status().code(), ClusterStoreProblem());  // the store, the fix
  }
  cluster_open_error_ = absl::OkStatus();
  cluster_ = std::move(*node);
  if (!cluster_tls_error_.empty() && options.tls_server == nullptr) {
    LogEvent(LogLevel::kError, "cluster_tls_failed", "reason=" + LogQuote(cluster_tls_error_));
  }
  cluster_->SetDataHandlers(
      [this](raft::NodeId from, const cluster::Frame& frame) {
        routes_->OnFrame(from, frame.type, frame.payload);
      },
      [this](raft::NodeId peer) { routes_->OnLinkUp(peer); });
  mirrored_generation_ = 0;
  mirror_whole_pending_ = true;
  cluster_listening_ = false;
  if (!cluster_tls_error_.empty()) return absl::FailedPreconditionError(cluster_tls_error_);
  if (config_.cluster_enabled) ListenCluster();
  return absl::OkStatus();
}

void NodeState::ListenCluster() {
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

void NodeState::DisconnectCluster() {
  // Links too: a node that stops serving them must not look connected to the others.
  cluster_->Disconnect();
  cluster_listening_ = false;
}

absl::StatusOr<std::string> NodeState::ForgetCluster(NodeConfig proposed, const std::string& what) {
  const std::string dir = options_.state_dir + "/cluster";
  // Saved first: a failure leaves the node in its cluster, config and store as they were.
  proposed.cluster_enabled = false;
  if (absl::Status saved = Commit(std::move(proposed), what); !saved.ok()) {
    return absl::Status(saved.code(), "the reset was not saved (" + std::string(saved.message()) +
                                          "), so this node keeps its configuration and its "
                                          "cluster state in " +
                                          dir + "; fix the cause (disk space, permissions of " +
                                          options_.state_dir +
                                          ") and run 'stanzactl reset --force' again");
  }
  if (cluster_ != nullptr) DisconnectCluster();  // disabled now: its port closes
  // Moved aside in one step (a crash never leaves half a store), then removed.
  const std::string forgotten = dir + ".forgotten";
  std::error_code ignored;
  std::filesystem::remove_all(forgotten, ignored);  // left by an earlier removal that failed
  if (absl::Status moved = storage::PosixFs()->Rename(dir, forgotten); !moved.ok()) {
    LogEvent(LogLevel::kError, "cluster_forget_failed",
             "dir=" + dir + " reason=" + LogQuote(std::string(moved.message())));
    return absl::Status(moved.code(), "the configuration was reset, but the cluster state in " +
                                          dir + " could not be moved aside (" +
                                          std::string(moved.message()) +
                                          "), so this node keeps its cluster identity; fix the "
                                          "cause and run 'stanzactl reset --force' again");
  }
  if (absl::Status synced = storage::PosixFs()->SyncDir(options_.state_dir); !synced.ok()) {
    // Moved all the same; a crash before the move is durable leaves the state of a crash
    // before the move (the header's second case).
    LogEvent(LogLevel::kWarning, "cluster_forget_not_durable",
             "dir=" + dir + " reason=" + LogQuote(std::string(synced.message())));
  }
  cluster_.reset();
  std::error_code removed;
  std::filesystem::remove_all(forgotten, removed);
  if (removed) {
    // Nothing opens it: the reset stands, only the disk space is not back yet.
    LogEvent(LogLevel::kWarning, "cluster_store_not_removed",
             "dir=" + forgotten + " reason=" + LogQuote(removed.message()) +
                 " fix=" + LogQuote("rm -r " + forgotten));
  }
  if (absl::Status opened = OpenCluster(); !opened.ok()) return opened;
  return dir;
}

void NodeState::MirrorClusterConfig() {
  if (!cluster_->has_state() || cluster_->config_generation() == mirrored_generation_) return;
  mirrored_generation_ = cluster_->config_generation();
  const config::Config& replicated = cluster_->config();
  if (!replicated.unknown_user_salt_key.empty() && replicated.unknown_user_salt_key != salt_key_) {
    salt_key_ = replicated.unknown_user_salt_key;  // the cluster's: the same on every node
    SaveSaltKey(options_.state_dir, salt_key_);
    PublishRouterConfig(nullptr);
    NotifyShardsOfConfig();
  }
  cluster::ClusterNode::AppliedChanges changes = cluster_->TakeAppliedChanges();
  mirror_whole_pending_ |= changes.whole;
  // Before the cluster's configuration has arrived (initialize or join in progress) there
  // is nothing to mirror: the node keeps serving what it has, and copies it all once it has.
  if (replicated.domain.empty()) {
    mirror_whole_pending_ = true;
    return;
  }
  if (!mirror_whole_pending_ && replicated.domain == config_.domain) {
    // Change by change, in place (sync: no, the Raft log keeps them).
    const auto start = std::chrono::steady_clock::now();
    std::vector<NodeConfigEdit> edits;
    for (const cluster::ConfigCommand& command : changes.commands) {
      JournalEdits(command, &edits);
    }
    if (!CommitEdits(edits, "cluster", false).ok()) mirror_whole_pending_ = true;  // logged
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    if (ms >= kSlowStepMs) {
      LogEvent(LogLevel::kInfo, "cluster_mirror_slow",
               Concat("edits=", std::to_string(edits.size()), " ms=", std::to_string(ms)));
    }
    return;
  }
  mirror_whole_pending_ = false;
  const auto start = std::chrono::steady_clock::now();
  NodeConfig proposed = config_;
  proposed.domain = replicated.domain;
  proposed.callbridges.clear();
  for (const auto& [name, bridge] : replicated.callbridges) {
    proposed.callbridges[name] = bridge.secret;
  }
  proposed.users = replicated.users;
  if (proposed == config_) return;
  const auto since = [](std::chrono::steady_clock::time_point from) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - from)
                              .count());
  };
  const std::string copy_ms = since(start);
  const auto adopted = std::chrono::steady_clock::now();
  Adopt(std::move(proposed), "cluster");
  // The Raft store keeps this state: the file follows a slice per turn (DeferredWork)
  // instead of holding this thread for the whole of it. A crash meanwhile leaves the old
  // file, and the node mirrors the cluster's state again as it starts.
  if (absl::Status begun = files_.RestartRewrite(config_); !begun.ok()) {
    LogEvent(LogLevel::kError, "config_save_failed",
             "reason=" + LogQuote(std::string(begun.message())));
  }
  // The whole state on this thread (after a snapshot from the leader): said with its cost.
  LogEvent(LogLevel::kInfo, "cluster_config_mirrored",
           Concat("bridges=", std::to_string(config_.callbridges.size()),
                  " users=", std::to_string(config_.users.size()), " copy_ms=", copy_ms,
                  " adopt_ms=", since(adopted), " ms=", since(start)));
}

// ---- The control loop's turn ----

void NodeState::AppendClusterPollFds(std::vector<pollfd>* fds) { cluster_->AppendPollFds(fds); }

void NodeState::OnShardRecord(const net::CrossShardMessage& message) {
  absl::StatusOr<router::ControlRecord> record = router::DecodeControlRecord(
      router::EncodedRecord(message.kind, message.target, message.argument, message.payload));
  if (!record.ok()) {
    // A bug of the shard that sent it: loud, but never a crash.
    LogEvent(LogLevel::kError, "malformed_control_record",
             "reason=" + LogQuote(std::string(record.status().message())));
    return;
  }
  routes_->OnShardRecord(*record);
}

std::set<raft::NodeId> NodeState::DataLinksDown() const {
  std::set<raft::NodeId> down;
  if (!engine_->serving() || engine_->data_plane().Current()->cluster_key.empty()) return down;
  for (const raft::NodeId peer : cluster_->PeerIds()) {
    bool up = false;
    for (int shard = 0; shard < engine_->shards() && !up; ++shard) {
      up = engine_->data_link_stats()[static_cast<size_t>(shard)].up.load()->count(peer) != 0;
    }
    if (!up) down.insert(peer);
  }
  return down;
}

void NodeState::ClusterTurn(const std::vector<pollfd>& fds, size_t first, uint64_t now_ms) {
  cluster_->SetDataLinksDown(DataLinksDown());
  cluster_->HandlePoll(fds, first, now_ms);
  cluster_->Tick(now_ms);
  MirrorClusterConfig();
}

void NodeState::DriveRoutes(bool clustered) {
  MailedShards shards = engine_->Shards();
  if (clustered) {
    ClusterNodeLinks links(*cluster_);
    routes_->Turn(&links, shards);
  } else {
    routes_->Turn(nullptr, shards);
  }
  shards.Flush();
}

// Looked at every turn, so a new leader reaches the lanes at once: links run between
// members that told their data port, with the cluster key (and TLS when the cluster has
// it).
void NodeState::PublishDataPlane(bool clustered) {
  const uint64_t incarnation = engine_->incarnation();
  const bool ready = clustered && cluster_->has_state() && !cluster_->cluster_key().empty();
  std::string key =
      ready ? Concat(std::to_string(cluster_->leader_id()), "/", cluster_->is_member() ? "m" : "-",
                     "/", std::to_string(cluster_->config_generation()), "/",
                     std::to_string(routes_->data_planes_generation()))
            : std::string("-");
  for (const raft::NodeId peer : ready ? cluster_->PeerIds() : std::vector<raft::NodeId>()) {
    key += "/" + std::to_string(peer);
  }
  key += "/" + std::to_string(incarnation);
  if (ready) {
    for (const std::string& host : cluster_->isolated_from()) key += "/i" + host;
  }
  if (key == data_plane_key_) return;
  data_plane_key_ = key;
  auto next = std::make_shared<cluster::DataPlaneConfig>();
  next->incarnation = incarnation;
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
  engine_->data_plane().Publish(std::move(next));
  engine_->NotifyDataPlaneChanged();
}

}  // namespace stanzad::server
