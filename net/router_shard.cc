#include "net/router_shard.h"

#include <sys/random.h>

#include <cstdio>
#include <functional>

#include "core/base/absl_compat.h"
#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/base/log.h"
#include "core/router/server_responder.h"
#include "core/xmpp/stanza.h"

namespace stanzad::net {

using xmpp::ComponentSession;
using xmpp::StanzaErrorCondition;
using xmpp::StreamErrorCondition;

namespace {

// 16 hex characters from the kernel's CSPRNG: the handshake's salt must not
// be predictable.
std::string NewStreamId() {
  uint8_t random[8] = {};
  size_t got = 0;
  while (got < sizeof(random)) {
    const ssize_t n = getrandom(random + got, sizeof(random) - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(16, '0');
  for (size_t i = 0; i < sizeof(random); ++i) {
    id[2 * i] = kHex[random[i] >> 4];
    id[2 * i + 1] = kHex[random[i] & 0xF];
  }
  return id;
}

// The IP address of an endpoint without its port.
std::string IpOf(const Endpoint& endpoint) {
  std::string text = endpoint.ToString();
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return text;
  text.resize(colon);
  if (text.size() >= 2 && text.front() == '[') text = text.substr(1, text.size() - 2);
  return text;
}

void Bump(std::atomic<uint64_t>& counter, uint64_t by = 1) {
  counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}
void Drop(std::atomic<uint64_t>& counter) {
  counter.store(counter.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

}  // namespace

// One accepted connection: its session and the bookkeeping around it.
class RouterShard::Connection : public ComponentSession::Delegate {
 public:
  Connection(RouterShard* router, ConnectionId id, std::string peer_ip, uint64_t now_ms)
      : router_(router),
        id_(id),
        peer_ip_(std::move(peer_ip)),
        accepted_ms_(now_ms),
        last_activity_ms_(now_ms),
        session_(this, NewStreamId(), router->limits_.tokenizer) {}

  ComponentSession& session() { return session_; }
  ConnectionId id() const { return id_; }
  const std::string& peer_ip() const { return peer_ip_; }
  const std::string& bound_address() const { return bound_address_; }
  uint64_t accepted_ms() const { return accepted_ms_; }
  uint64_t last_activity_ms() const { return last_activity_ms_; }
  void set_last_activity_ms(uint64_t now_ms) { last_activity_ms_ = now_ms; }
  uint64_t backed_up_since_ms = 0;
  int pending_route_acks = 0;  // shards that have not yet applied this bridge's route
  bool closed_by_engine = false;
  int calls_in_progress = 0;

  std::optional<std::string> SecretFor(std::string_view address) override {
    const RouterConfig& config = *router_->config_;
    auto it = config.bridge_secrets.find(ToAbsl(address));
    if (it == config.bridge_secrets.end()) return std::nullopt;
    return it->second;
  }

  void Send(std::string_view bytes) override {
    if (closed_by_engine) return;
    if (!router_->shard_->Send(id_, bytes)) {
      // Our own protocol bytes do not fit: the peer is not reading. Give up on it.
      router_->shard_->Abort(id_);
    }
  }

  void OnAuthenticated(std::string_view address) override {
    bound_address_ = std::string(address);
    Bump(router_->stats_->bridges_authenticated);
    Bump(router_->stats_->bridges_connected);
    pending_route_acks = router_->shard_->shard_count();
    router_->PostControl(OwnerShard(address, router_->shard_->shard_count()), kBindRequest, id_,
                         address);
    LogEvent(LogLevel::kInfo, "bridge_authenticated",
             Concat("bridge=", bound_address_, " peer=", peer_ip_,
                    " shard=", std::to_string(router_->shard_->index())));
  }

  void OnAuthenticationFailed(std::string_view address, StreamErrorCondition condition) override {
    Bump(router_->stats_->auth_failures);
    router_->RecordAuthFailure(peer_ip_, router_->shard_->now_ms());
    LogEvent(LogLevel::kWarning, "bridge_auth_failed",
             Concat("bridge=", address, " peer=", peer_ip_,
                    " reason=", xmpp::StreamErrorConditionName(condition)));
  }

  void OnStanza(const xmpp::Stanza& stanza) override {
    Bump(router_->stats_->stanzas_received);
    router_->Route(*this, stanza);
  }

  void OnStreamClosed(const xmpp::StreamError* error) override {
    if (error != nullptr) Bump(router_->stats_->stream_errors);
    if (!closed_by_engine) router_->shard_->Close(id_);
  }

 private:
  RouterShard* router_;
  ConnectionId id_;
  std::string peer_ip_;
  uint64_t accepted_ms_;
  uint64_t last_activity_ms_;
  std::string bound_address_;
  ComponentSession session_;
};

RouterShard::RouterShard(const RouterConfigPublisher* config, RouterLimits limits,
                         RouterShardStats* stats)
    : config_publisher_(config),
      config_(config->Current()),
      limits_(limits),
      stats_(stats),
      routes_(config_->domain) {
  CHECK(config_ != nullptr);
}

RouterShard::~RouterShard() = default;

int RouterShard::OwnerShard(std::string_view address, int shard_count) {
  return static_cast<int>(std::hash<std::string_view>()(address) %
                          static_cast<size_t>(shard_count));
}

RouterShard::Connection* RouterShard::Find(ConnectionId id) {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

bool RouterShard::AddressBlocked(const std::string& ip, uint64_t now_ms) {
  auto it = auth_failures_.find(ip);
  if (it == auth_failures_.end()) return false;
  if (now_ms - it->second.window_start_ms >= limits_.auth_failure_window_ms) {
    auth_failures_.erase(it);
    return false;
  }
  return it->second.count >= limits_.auth_failures_max;
}

void RouterShard::RecordAuthFailure(const std::string& ip, uint64_t now_ms) {
  // Bounded: an attacker with many addresses cannot grow the table without end.
  if (auth_failures_.size() >= 65536 && !auth_failures_.contains(ip)) return;
  AuthFailures& failures = auth_failures_[ip];
  if (failures.count == 0 || now_ms - failures.window_start_ms >= limits_.auth_failure_window_ms) {
    failures.count = 0;
    failures.window_start_ms = now_ms;
  }
  if (++failures.count == limits_.auth_failures_max) {
    LogEvent(LogLevel::kWarning, "peer_blocked",
             Concat("peer=", ip,
                    " reason=too_many_failed_handshakes failures=", std::to_string(failures.count),
                    " window_ms=", std::to_string(limits_.auth_failure_window_ms)));
  }
}

bool RouterShard::OnAccept(Shard& shard, ConnectionId id, const Endpoint& peer, int) {
  shard_ = &shard;
  std::string ip = IpOf(peer);
  if (!config_->enabled || AddressBlocked(ip, shard.now_ms())) {
    Bump(stats_->connections_refused);
    return false;
  }
  Bump(stats_->connections_accepted);
  Bump(stats_->connections_open);
  connections_.emplace(id, std::make_unique<Connection>(this, id, std::move(ip), shard.now_ms()));
  return true;
}

void RouterShard::DestroyIfDead(ConnectionId id) {
  Connection* connection = Find(id);
  if (connection == nullptr || !connection->closed_by_engine || connection->calls_in_progress > 0) {
    return;
  }
  if (!connection->bound_address().empty()) {
    Drop(stats_->bridges_connected);
    const std::string& address = connection->bound_address();
    PostControl(OwnerShard(address, shard_->shard_count()), kUnbindRequest, id, address);
  }
  Drop(stats_->connections_open);
  connections_.erase(id);
}

void RouterShard::OnData(Shard& shard, ConnectionId id, std::string_view bytes) {
  shard_ = &shard;
  Connection* connection = Find(id);
  if (connection == nullptr) return;
  Bump(stats_->bytes_received, bytes.size());
  connection->set_last_activity_ms(shard.now_ms());
  ++connection->calls_in_progress;
  connection->session().OnBytes(bytes);
  --connection->calls_in_progress;
  DestroyIfDead(id);
}

void RouterShard::OnClosed(Shard& shard, ConnectionId id, const absl::Status& reason) {
  shard_ = &shard;
  Connection* connection = Find(id);
  if (connection == nullptr) return;
  if (!connection->bound_address().empty()) {
    LogEvent(
        LogLevel::kInfo, "bridge_disconnected",
        Concat("bridge=", connection->bound_address(), " peer=", connection->peer_ip(), " reason=",
               reason.ok() ? std::string("closed") : LogQuote(std::string(reason.message()))));
  }
  connection->closed_by_engine = true;
  DestroyIfDead(id);
}

void RouterShard::Route(Connection& sender, const xmpp::Stanza& stanza) {
  const router::RouteDecision decision = routes_.Resolve(*stanza.to);
  switch (decision.kind) {
    case router::RouteKind::kServer:
      if (std::optional<std::string> reply = router::AnswerServerStanza(stanza, config_->domain)) {
        Bump(stats_->stanzas_answered);
        sender.Send(*reply);
      }
      return;
    case router::RouteKind::kComponent: {
      const int target_shard = ShardOf(decision.connection);
      if (target_shard == shard_->index()) {
        StanzaErrorCondition why_not;
        if (DeliverLocal(decision.connection, stanza.bytes, &why_not)) {
          Bump(stats_->stanzas_routed);
        } else {
          Bounce(sender.id(), stanza.bytes, why_not);
        }
      } else if (!shard_->Post(target_shard, kDeliver, decision.connection, sender.id(),
                               stanza.bytes)) {
        Bounce(sender.id(), stanza.bytes, StanzaErrorCondition::kResourceConstraint);
      }
      return;
    }
    case router::RouteKind::kRemote:
      // The control thread relays it to that node (cluster/node, daemon).
      if (shard_->PostToControl(kCtlForward, sender.id(), decision.node, stanza.bytes)) {
        Bump(stats_->stanzas_forwarded);
      } else {
        Bounce(sender.id(), stanza.bytes, StanzaErrorCondition::kResourceConstraint);
      }
      return;
    case router::RouteKind::kError:
      Bounce(sender.id(), stanza.bytes, decision.error);
      return;
  }
}

bool RouterShard::DeliverLocal(ConnectionId target, std::string_view bytes,
                               StanzaErrorCondition* why_not) {
  Connection* connection = Find(target);
  if (connection == nullptr || connection->closed_by_engine ||
      connection->session().state() != ComponentSession::State::kAuthenticated) {
    *why_not = StanzaErrorCondition::kServiceUnavailable;
    return false;
  }
  if (!shard_->Send(target, bytes)) {
    *why_not = StanzaErrorCondition::kResourceConstraint;
    return false;
  }
  if (connection->backed_up_since_ms == 0 &&
      shard_->QueuedBytes(target) > limits_.slow_reader_queue_bytes) {
    connection->backed_up_since_ms = shard_->now_ms();
  }
  return true;
}

void RouterShard::Bounce(ConnectionId sender, std::string_view stanza_bytes,
                         StanzaErrorCondition condition) {
  if (ShardOf(sender) != shard_->index()) {
    if (!shard_->Post(ShardOf(sender), kBounce, sender, static_cast<uint64_t>(condition),
                      stanza_bytes)) {
      Bump(stats_->error_stanzas_dropped);  // both queues full: nothing left to tell
    }
    return;
  }
  const xmpp::Stanza stanza = xmpp::InspectStanza(stanza_bytes);
  Connection* connection = Find(sender);
  if (stanza.is_error() || connection == nullptr || connection->closed_by_engine) {
    Bump(stats_->error_stanzas_dropped);
    return;
  }
  Bump(stats_->stanzas_bounced);
  Bump(stats_->stanzas_bounced_by_condition[static_cast<int>(condition)]);
  connection->Send(xmpp::MakeErrorReply(stanza, condition, config_->domain));
}

void RouterShard::RouteFromPeer(std::string_view bytes) {
  const xmpp::Stanza stanza = xmpp::InspectStanza(bytes);
  if (!stanza.to) {
    Bump(stats_->error_stanzas_dropped);
    return;
  }
  const router::RouteDecision decision = routes_.Resolve(*stanza.to);
  switch (decision.kind) {
    case router::RouteKind::kComponent: {
      const int target_shard = ShardOf(decision.connection);
      if (target_shard == shard_->index()) {
        StanzaErrorCondition why_not;
        if (DeliverLocal(decision.connection, bytes, &why_not)) {
          Bump(stats_->stanzas_routed);
        } else {
          BounceToPeer(bytes, why_not);
        }
      } else if (!shard_->Post(target_shard, kDeliver, decision.connection, kNoConnection, bytes)) {
        BounceToPeer(bytes, StanzaErrorCondition::kResourceConstraint);
      }
      return;
    }
    case router::RouteKind::kServer:
      // The sender's node answers stanzas to the domain itself; one here is stale.
      Bump(stats_->error_stanzas_dropped);
      return;
    case router::RouteKind::kRemote:
      // Not here after all (the bridge moved on): never relay twice.
      BounceToPeer(bytes, StanzaErrorCondition::kServiceUnavailable);
      return;
    case router::RouteKind::kError:
      BounceToPeer(bytes, decision.error);
      return;
  }
}

void RouterShard::BounceToPeer(std::string_view stanza_bytes, StanzaErrorCondition condition) {
  const xmpp::Stanza stanza = xmpp::InspectStanza(stanza_bytes);
  if (stanza.is_error() || !stanza.from) {
    Bump(stats_->error_stanzas_dropped);
    return;
  }
  const std::string reply = xmpp::MakeErrorReply(stanza, condition, config_->domain);
  const router::RouteDecision back = routes_.Resolve(*stanza.from);
  if (back.kind != router::RouteKind::kRemote ||
      !shard_->PostToControl(kCtlForward, kNoConnection, back.node, reply)) {
    Bump(stats_->error_stanzas_dropped);
    return;
  }
  Bump(stats_->stanzas_bounced);
  Bump(stats_->stanzas_bounced_by_condition[static_cast<int>(condition)]);
}

void RouterShard::PostToControlThread(uint32_t kind, ConnectionId target, uint64_t argument,
                                      std::string_view payload) {
  if (deferred_control_.empty() && shard_->PostToControl(kind, target, argument, payload)) return;
  deferred_control_.push_back({kind, target, argument, std::string(payload)});
}

void RouterShard::Broadcast(uint32_t kind, ConnectionId target, std::string_view payload) {
  for (int shard = 0; shard < shard_->shard_count(); ++shard) {
    PostControl(shard, kind, target, payload);
  }
}

void RouterShard::PostControl(int to, uint32_t kind, ConnectionId target,
                              std::string_view payload) {
  if (deferred_posts_.empty() && shard_->Post(to, kind, target, 0, payload)) return;
  if (deferred_posts_.empty()) {
    LogEvent(LogLevel::kWarning, "control_record_deferred",
             Concat("to_shard=", std::to_string(to), " kind=", std::to_string(kind),
                    " reason=queue_full"));
  }
  deferred_posts_.push_back({to, kind, target, std::string(payload)});
}

void RouterShard::RetryDeferredPosts() {
  size_t sent = 0;
  while (sent < deferred_posts_.size()) {
    const DeferredPost& post = deferred_posts_[sent];
    if (!shard_->Post(post.to, post.kind, post.target, 0, post.payload)) break;
    ++sent;
  }
  deferred_posts_.erase(deferred_posts_.begin(),
                        deferred_posts_.begin() + static_cast<std::ptrdiff_t>(sent));
}

void RouterShard::OnMessage(Shard& shard, const CrossShardMessage& message) {
  shard_ = &shard;
  switch (message.kind) {
    case kConfigChanged:
      ApplyConfig();
      return;
    case kBindRequest: {
      auto [it, inserted] = owned_bindings_.try_emplace(ToAbsl(message.payload), message.target);
      if (!inserted && it->second != message.target) {
        const ConnectionId previous = it->second;
        it->second = message.target;
        PostControl(ShardOf(previous), kConflict, previous, message.payload);
      }
      Broadcast(kRouteBind, message.target, message.payload);
      PostToControlThread(kCtlRouteUp, message.target, 0, message.payload);
      return;
    }
    case kUnbindRequest: {
      auto it = owned_bindings_.find(ToAbsl(message.payload));
      if (it != owned_bindings_.end() && it->second == message.target) {
        owned_bindings_.erase(it);
        Broadcast(kRouteUnbind, message.target, message.payload);
        PostToControlThread(kCtlRouteDown, message.target, 0, message.payload);
      }
      return;
    }
    case kRouteBind:
      routes_.Bind(message.payload, message.target);
      PostControl(ShardOf(message.target), kRouteBindAck, message.target, "");
      return;
    case kRouteBindAck: {
      Connection* connection = Find(message.target);
      if (connection == nullptr || connection->pending_route_acks == 0) return;
      if (--connection->pending_route_acks == 0) {
        ++connection->calls_in_progress;
        connection->session().AcknowledgeHandshake();
        --connection->calls_in_progress;
        DestroyIfDead(message.target);
      }
      return;
    }
    case kRouteUnbind:
      routes_.Unbind(message.payload, message.target);
      return;
    case kDeliver: {
      StanzaErrorCondition why_not;
      if (DeliverLocal(message.target, message.payload, &why_not)) {
        Bump(stats_->stanzas_routed);
      } else if (message.argument == kNoConnection) {
        BounceToPeer(message.payload, why_not);  // its sender is on another node
      } else {
        Bounce(message.argument, message.payload, why_not);
      }
      return;
    }
    case kRemoteRouteBind:
      routes_.BindRemote(message.payload, message.argument);
      return;
    case kRemoteRouteUnbind:
      routes_.UnbindRemote(message.payload, message.argument);
      return;
    case kForgetNode:
      routes_.ForgetNode(message.argument);
      return;
    case kDeliverFromPeer:
      Bump(stats_->stanzas_from_peers);
      RouteFromPeer(message.payload);
      return;
    case kBounce:
      Bounce(message.target, message.payload, static_cast<StanzaErrorCondition>(message.argument));
      return;
    case kConflict: {
      Connection* connection = Find(message.target);
      if (connection == nullptr) return;
      ++connection->calls_in_progress;
      connection->session().CloseWithError(
          StreamErrorCondition::kConflict,
          Concat("replaced by a newer connection of call bridge ", message.payload));
      --connection->calls_in_progress;
      DestroyIfDead(message.target);
      return;
    }
    default:
      LogEvent(LogLevel::kError, "unknown_shard_message",
               Concat("kind=", std::to_string(message.kind)));
  }
}

void RouterShard::ApplyConfig() {
  config_ = config_publisher_->Current();
  routes_.set_server_domain(config_->domain);
  std::vector<ConnectionId> to_close;
  for (const auto& [id, connection] : connections_) {
    const std::string& address = connection->session().component_address();
    if (!config_->enabled || (!address.empty() && !config_->bridge_secrets.contains(address))) {
      to_close.push_back(id);
    }
  }
  for (ConnectionId id : to_close) {
    Connection* connection = Find(id);
    ++connection->calls_in_progress;
    if (!config_->enabled) {
      connection->session().CloseWithError(StreamErrorCondition::kSystemShutdown,
                                           "the XMPP service was disabled");
    } else {
      connection->session().CloseWithError(
          StreamErrorCondition::kNotAuthorized,
          Concat("call bridge ", connection->session().component_address(), " was removed"));
    }
    --connection->calls_in_progress;
    DestroyIfDead(id);
  }
}

void RouterShard::OnTick(Shard& shard, uint64_t now_ms) {
  shard_ = &shard;
  if (!deferred_posts_.empty()) RetryDeferredPosts();
  size_t sent = 0;
  while (sent < deferred_control_.size()) {
    const DeferredControl& post = deferred_control_[sent];
    if (!shard_->PostToControl(post.kind, post.target, post.argument, post.payload)) break;
    ++sent;
  }
  deferred_control_.erase(deferred_control_.begin(),
                          deferred_control_.begin() + static_cast<std::ptrdiff_t>(sent));
  if (now_ms - last_scan_ms_ < 500) return;
  last_scan_ms_ = now_ms;
  std::vector<std::pair<ConnectionId, StreamErrorCondition>> expired;
  for (const auto& [id, connection] : connections_) {
    if (connection->closed_by_engine) continue;
    const auto state = connection->session().state();
    if (state != ComponentSession::State::kAuthenticated &&
        state != ComponentSession::State::kClosed &&
        now_ms - connection->accepted_ms() > limits_.preauth_timeout_ms) {
      expired.emplace_back(id, StreamErrorCondition::kConnectionTimeout);
    } else if (limits_.idle_timeout_ms > 0 &&
               now_ms - connection->last_activity_ms() > limits_.idle_timeout_ms) {
      expired.emplace_back(id, StreamErrorCondition::kConnectionTimeout);
    } else if (connection->backed_up_since_ms != 0) {
      if (shard.QueuedBytes(id) <= limits_.slow_reader_queue_bytes) {
        connection->backed_up_since_ms = 0;
      } else if (now_ms - connection->backed_up_since_ms > limits_.slow_reader_timeout_ms) {
        expired.emplace_back(id, StreamErrorCondition::kPolicyViolation);
      }
    }
  }
  for (const auto& [id, condition] : expired) {
    Connection* connection = Find(id);
    ++connection->calls_in_progress;
    if (condition == StreamErrorCondition::kPolicyViolation) {
      LogEvent(LogLevel::kWarning, "slow_reader_disconnected",
               Concat("bridge=", connection->bound_address(), " peer=", connection->peer_ip(),
                      " queued_bytes=", std::to_string(shard.QueuedBytes(id))));
      shard.Abort(id);
    } else {
      connection->session().CloseWithError(condition, "no handshake or traffic in time");
    }
    --connection->calls_in_progress;
    DestroyIfDead(id);
  }
}

void RouterShard::OnStop(Shard& shard) {
  shard_ = &shard;
  for (auto& [id, connection] : connections_) {
    if (connection->closed_by_engine) continue;
    ++connection->calls_in_progress;
    connection->session().CloseWithError(StreamErrorCondition::kSystemShutdown,
                                         "the server is shutting down");
    --connection->calls_in_progress;
  }
}

}  // namespace stanzad::net
