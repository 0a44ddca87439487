#include "router/router_shard.h"

#include <sys/random.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <variant>

#include "core/base/absl_compat.h"
#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/base/hex.h"
#include "core/base/log.h"
#include "core/router/server_responder.h"
#include "core/xmpp/stanza.h"
#include "router/router_connection.h"

namespace stanzad::router {

using xmpp::ComponentSession;
using xmpp::StanzaErrorCondition;
using xmpp::StreamErrorCondition;

std::string RandomBytes(size_t count) {
  std::string out(count, '\0');
  size_t got = 0;
  while (got < count) {
    const ssize_t n = getrandom(out.data() + got, count - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  return out;
}

// 16 hex characters from the kernel's CSPRNG: the handshake's salt must not
// be predictable.
std::string NewStreamId() { return HexOf(RandomBytes(8)); }

namespace {

bool PostEncoded(Shard& shard, int to, const router::EncodedRecord& record) {
  return shard.Post(to, record.kind(), record.target(), record.argument(), record.payload());
}

bool PostEncodedToControl(Shard& shard, const router::EncodedRecord& record) {
  return shard.PostToControl(record.kind(), record.target(), record.argument(), record.payload());
}

// A copy of a stanza without `to` (its `from` stamped) with to='`jid`' added to
// its top element. `jid` is a canonical bare JID: no quote can be in it (RFC 7622).
std::string AddressedTo(std::string_view bytes, std::string_view jid) {
  const size_t name_end = bytes.find_first_of(" \t\r\n/>");
  if (name_end == std::string_view::npos) return std::string(bytes);
  return Concat(bytes.substr(0, name_end), " to='", jid, "'", bytes.substr(name_end));
}

// A connection that has read nothing for this long gives its buffers back.
constexpr uint64_t kIdleMemoryAfterMs = 1'000;

// A record that does not decode: a bug of its sender, so loud, but never a crash.
void LogMalformedRecord(const absl::Status& status, int shard) {
  LogEvent(
      LogLevel::kError, "malformed_shard_record",
      Concat("shard=", std::to_string(shard), " reason=", LogQuote(std::string(status.message()))));
}

// Refusals of one kind are logged at most once per this interval (per address
// for the pre-auth cap): an attacker must not be able to flood the log.
constexpr uint64_t kRefusalLogIntervalMs = 10'000;

// A shard's share of an address's pre-auth cap is never below this (nor above
// the cap): the kernel spreads one address's connections over the shards
// unevenly, and with many shards an even share would refuse an address far
// below the cap.
constexpr uint32_t kPreauthShareFloor = 16;

}  // namespace

bool PostRecord(Shard& shard, int to, const router::ShardRecord& record) {
  return PostEncoded(shard, to, router::EncodeShardRecord(record));
}

// ---- Call bridges ----

RouterShard::ComponentConnection::ComponentConnection(RouterShard* router, ConnectionId id,
                                                      std::string peer_ip, uint64_t now_ms,
                                                      bool tls)
    : Connection(router, id, std::move(peer_ip), now_ms),
      session_(this, NewStreamId(), router->limits_.tokenizer) {
  if (tls) BeginTls();
}

void RouterShard::ComponentConnection::OnBytes(std::string_view bytes) {
  if (tls_failed_) return;
  if (tls_ == nullptr) {
    session_.OnBytes(bytes);
    return;
  }
  if (!ReadTls(bytes)) return;
  if (!plaintext_.empty()) {
    const std::string input = std::move(plaintext_);  // the session may write meanwhile
    plaintext_.clear();
    session_.OnBytes(input);
  }
  if (tls_ != nullptr && tls_->peer_closed()) session_.Close();
}

void RouterShard::ComponentConnection::CloseWithError(StreamErrorCondition condition,
                                                      std::string text) {
  if (tls_failed_) {
    if (!closed_by_engine) router_->shard_->Abort(id_);
    return;
  }
  session_.CloseWithError(condition, std::move(text));
}

bool RouterShard::ComponentConnection::Routable() const {
  return !closed_by_engine && !tls_failed_ &&
         session_.state() == ComponentSession::State::kAuthenticated;
}

bool RouterShard::ComponentConnection::Established() const {
  return session_.state() == ComponentSession::State::kAuthenticated ||
         session_.state() == ComponentSession::State::kClosed;
}

bool RouterShard::ComponentConnection::Deliver(std::string_view stanza,
                                               StanzaErrorCondition* why_not) {
  if (tls_ != nullptr) {
    if (!Fits(stanza.size())) {
      *why_not = StanzaErrorCondition::kResourceConstraint;
      return false;
    }
    SendBytes(stanza);
    return true;
  }
  if (!router_->shard_->Send(id_, stanza)) {
    *why_not = StanzaErrorCondition::kResourceConstraint;
    return false;
  }
  return true;
}

void RouterShard::ComponentConnection::Release() {
  if (bound_address_.empty()) return;
  Drop(router_->stats_->bridges_connected);
  router_->PostControl(router::OwnerShard(bound_address_, router_->shard_->shard_count()),
                       router::UnbindRequest{id_, bound_address_});
}

bool RouterShard::ComponentConnection::CloseIfRemoved(const RouterConfig& config) {
  const std::string& address = session_.component_address();
  if (address.empty() || config.bridge_secrets.contains(address)) return false;
  session_.CloseWithError(StreamErrorCondition::kNotAuthorized,
                          Concat("call bridge ", address, " was removed"));
  return true;
}

std::string RouterShard::ComponentConnection::Describe() const {
  return bound_address_.empty() ? std::string() : Concat("bridge=", bound_address_);
}

std::optional<std::string> RouterShard::ComponentConnection::SecretFor(std::string_view address) {
  const RouterConfig& config = *router_->config_;
  auto it = config.bridge_secrets.find(ToAbsl(address));
  if (it == config.bridge_secrets.end()) return std::nullopt;
  return it->second;
}

void RouterShard::ComponentConnection::Send(std::string_view bytes) { SendBytes(bytes); }

void RouterShard::ComponentConnection::OnAuthenticated(std::string_view address) {
  bound_address_ = std::string(address);
  Bump(router_->stats_->bridges_authenticated);
  Bump(router_->stats_->bridges_connected);
  pending_route_acks = router_->shard_->shard_count();
  router_->EndPreauth(*this);
  router_->PostControl(router::OwnerShard(address, router_->shard_->shard_count()),
                       router::BindRequest{id_, address});
  LogEvent(LogLevel::kInfo, "bridge_authenticated",
           Concat("bridge=", bound_address_, " peer=", peer_ip_,
                  " shard=", std::to_string(router_->shard_->index())));
}

void RouterShard::ComponentConnection::OnAuthenticationFailed(std::string_view address,
                                                              StreamErrorCondition condition) {
  Bump(router_->stats_->auth_failures);
  router_->RecordFailure(kFailureOfAddress, peer_ip_, router_->shard_->now_ms());
  LogEvent(LogLevel::kWarning, "bridge_auth_failed",
           Concat("bridge=", address, " peer=", peer_ip_,
                  " reason=", xmpp::StreamErrorConditionName(condition)));
}

std::optional<std::string> RouterShard::ComponentConnection::RefuseAuthentication() {
  return router_->RefuseAuthentication(*this);
}

void RouterShard::ComponentConnection::OnStanza(const xmpp::Stanza& stanza) {
  Bump(router_->stats_->stanzas_received);
  router_->Route(*this, stanza);
}

void RouterShard::ComponentConnection::OnStreamClosed(const xmpp::StreamError* error) {
  if (error != nullptr) Bump(router_->stats_->stream_errors);
  ShutdownTls();
  if (!closed_by_engine) router_->shard_->Close(id_);
}

RouterShard::RouterShard(const RouterConfigPublisher* config, RouterLimits limits,
                         RouterShardStats* stats)
    : config_publisher_(config),
      config_(config->Current()),
      limits_(limits),
      stats_(stats),
      routes_(config_->domain),
      address_failures_(limits.auth_failures_max, limits.auth_failure_window_ms,
                        limits.failure_table_entries_max),
      account_failures_(limits.account_failures_max, limits.auth_failure_window_ms,
                        limits.failure_table_entries_max) {
  CHECK(config_ != nullptr);
}

RouterShard::~RouterShard() = default;

RouterShard::Connection* RouterShard::Find(ConnectionId id) {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

bool RouterShard::AddressBlocked(const std::string& ip, uint64_t now_ms) {
  return address_failures_.Blocked(ip, now_ms) || OwnAddressFailures().Blocked(ip, now_ms);
}

FailureCounter& RouterShard::OwnAddressFailures() {
  if (!own_address_failures_) {
    const auto shards = static_cast<uint32_t>(std::max(1, shard_->shard_count()));
    own_address_failures_.emplace((limits_.auth_failures_max + shards - 1) / shards,
                                  limits_.auth_failure_window_ms,
                                  limits_.failure_table_entries_max);
  }
  return *own_address_failures_;
}

void RouterShard::RecordFailure(router::FailureOf of, const std::string& key, uint64_t now_ms) {
  // Every shard counts every failure: the kernel spreads one attacker's
  // connections over all of them.
  BroadcastToOthers(router::FailureSeen{of, key});
  const bool address = of == router::FailureOf::kAddress;
  // Its own share first: a burst on every shard at once, before the others' records
  // arrive, is still checked at most auth_failures_max times in all.
  if (address) OwnAddressFailures().Record(key, now_ms);
  if (!(address ? address_failures_ : account_failures_).Record(key, now_ms)) return;
  LogEvent(
      LogLevel::kWarning, address ? "peer_blocked" : "account_blocked",
      Concat(address ? "peer=" : "user=", key,
             address ? " reason=too_many_failed_handshakes" : " reason=too_many_failed_logins",
             " failures=",
             std::to_string(address ? limits_.auth_failures_max : limits_.account_failures_max),
             " window_ms=", std::to_string(limits_.auth_failure_window_ms)));
}

bool RouterShard::AccountBlocked(const std::string& account, uint64_t now_ms) {
  return account_failures_.Blocked(account, now_ms);
}

std::optional<std::string> RouterShard::RefuseAuthentication(const Connection& connection) {
  const uint64_t now_ms = shard_->now_ms();
  if (!AddressBlocked(connection.peer_ip(), now_ms)) return std::nullopt;
  ++refused_unchecked_unlogged_;
  if (last_refused_unchecked_log_ms_ == 0 ||
      now_ms - last_refused_unchecked_log_ms_ >= kRefusalLogIntervalMs) {
    LogEvent(
        LogLevel::kWarning, "auth_refused_unchecked",
        Concat("peer=", connection.peer_ip(),
               " reason=too_many_failures limit=", std::to_string(limits_.auth_failures_max),
               " window_s=", std::to_string(limits_.auth_failure_window_ms / 1000),
               " flag=--auth_failures_max refused=", std::to_string(refused_unchecked_unlogged_),
               " shard=", std::to_string(shard_->index())));
    last_refused_unchecked_log_ms_ = now_ms;
    refused_unchecked_unlogged_ = 0;
  }
  return Concat("too many failed authentication attempts from ", connection.peer_ip(),
                "; try again later");
}

bool RouterShard::AdmitPreauth(const std::string& ip, uint64_t now_ms) {
  const uint32_t limit = limits_.preauth_connections_per_ip_max;
  const auto shards = static_cast<uint32_t>(shard_->shard_count());
  const uint32_t share =
      std::max((limit + shards - 1) / shards, std::min(limit, kPreauthShareFloor));
  auto it = preauth_by_ip_.find(ip);
  if (it != preauth_by_ip_.end() &&
      (it->second.here + it->second.elsewhere >= limit || it->second.here >= share)) {
    PreauthCount& count = it->second;
    ++count.refusals_unlogged;
    if (count.last_refusal_log_ms == 0 ||
        now_ms - count.last_refusal_log_ms >= kRefusalLogIntervalMs) {
      LogEvent(LogLevel::kWarning, "connection_refused",
               Concat("peer=", ip, " reason=too_many_unauthenticated_connections limit=",
                      std::to_string(limit), " flag=--preauth_connections_per_ip_max refused=",
                      std::to_string(count.refusals_unlogged),
                      " shard=", std::to_string(shard_->index())));
      count.last_refusal_log_ms = now_ms;
      count.refusals_unlogged = 0;
    }
    return false;
  }
  CountPreauth(ip, /*local=*/true, +1);
  BroadcastToOthers(router::PreauthChanged{router::PreauthChange::kBegan, ip});
  return true;
}

void RouterShard::EndPreauth(Connection& connection) {
  if (!connection.counted_preauth) return;
  connection.counted_preauth = false;
  CountPreauth(connection.peer_ip(), /*local=*/true, -1);
  BroadcastToOthers(router::PreauthChanged{router::PreauthChange::kEnded, connection.peer_ip()});
}

void RouterShard::CountPreauth(std::string_view ip, bool local, int delta) {
  auto it = preauth_by_ip_.find(ToAbsl(ip));
  if (it == preauth_by_ip_.end()) {
    if (delta < 0) return;  // cannot happen: records between two shards keep their order
    it = preauth_by_ip_.try_emplace(ToAbsl(ip)).first;
  }
  uint32_t& count = local ? it->second.here : it->second.elsewhere;
  if (delta > 0) {
    ++count;
  } else if (count > 0) {
    --count;
  }
  if (it->second.here == 0 && it->second.elsewhere == 0) preauth_by_ip_.erase(it);
}

void RouterShard::BroadcastToOthers(const router::ShardRecord& record) {
  const router::EncodedRecord encoded = router::EncodeShardRecord(record);
  for (int shard = 0; shard < shard_->shard_count(); ++shard) {
    if (shard != shard_->index()) PostOrDefer(shard, encoded);
  }
}

bool RouterShard::OnAccept(Shard& shard, ConnectionId id, const Endpoint& peer, int listener_tag) {
  shard_ = &shard;
  std::string ip = peer.IpString();
  const bool client = listener_tag == kClientListener || listener_tag == kClientTlsListener;
  const bool needs_tls = client || listener_tag == kComponentTlsListener;
  if (!config_->enabled || AddressBlocked(ip, shard.now_ms())) {
    Bump(stats_->connections_refused);
    return false;
  }
  // TLS is required here, and there is no certificate to offer.
  const bool refused_for_tls = needs_tls && config_->client_tls == nullptr;
  if (refused_for_tls) {
    Bump(stats_->connections_refused);
    if (shard.now_ms() - last_refused_client_log_ms_ >= 10'000 ||
        last_refused_client_log_ms_ == 0) {
      last_refused_client_log_ms_ = shard.now_ms();
      LogEvent(LogLevel::kWarning, client ? "client_refused" : "bridge_refused",
               Concat("peer=", ip,
                      " reason=no_tls_certificate fix=\"stanzactl certs KEY CERT [BUNDLE]\""));
    }
    // A STARTTLS client is told why in XMPP (its session ends its first stream with
    // <internal-server-error/>); a port that is TLS from the first byte has no
    // way to say it, so that connection is closed at once.
    if (listener_tag != kClientListener) return false;
  }
  const bool count_preauth = limits_.preauth_connections_per_ip_max > 0;
  if (count_preauth && !AdmitPreauth(ip, shard.now_ms())) {
    if (!refused_for_tls) Bump(stats_->connections_refused);  // counted once
    return false;
  }
  if (!refused_for_tls) Bump(stats_->connections_accepted);  // counted once, as refused
  Bump(stats_->connections_open);
  std::unique_ptr<Connection> connection;
  if (client) {
    connection = std::make_unique<ClientConnection>(this, id, std::move(ip), shard.now_ms(),
                                                    listener_tag == kClientTlsListener);
  } else {
    connection = std::make_unique<ComponentConnection>(this, id, std::move(ip), shard.now_ms(),
                                                       listener_tag == kComponentTlsListener);
  }
  connection->counted_preauth = count_preauth;  // AdmitPreauth counted it
  connection->refused_no_certificate = refused_for_tls;
  connections_.emplace(id, std::move(connection));
  return true;
}

template <typename Call>
void RouterShard::CallInto(Connection& connection, Call&& call) {
  const ConnectionId id = connection.id();
  ++connection.calls_in_progress;
  std::forward<Call>(call)();
  --connection.calls_in_progress;
  DestroyIfDead(id);
}

void RouterShard::DestroyIfDead(ConnectionId id) {
  Connection* connection = Find(id);
  if (connection == nullptr || !connection->closed_by_engine || connection->calls_in_progress > 0 ||
      connection->Lingers()) {
    return;
  }
  EndPreauth(*connection);
  connection->Release();
  Drop(stats_->connections_open);
  connections_.erase(id);
}

void RouterShard::OnData(Shard& shard, ConnectionId id, std::string_view bytes) {
  shard_ = &shard;
  Connection* connection = Find(id);
  if (connection == nullptr) return;
  Bump(stats_->bytes_received, bytes.size());
  connection->set_last_activity_ms(shard.now_ms());
  CallInto(*connection, [&] { connection->OnBytes(bytes); });
}

void RouterShard::OnClosed(Shard& shard, ConnectionId id, const absl::Status& reason) {
  shard_ = &shard;
  Connection* connection = Find(id);
  if (connection == nullptr) return;
  if (const std::string who = connection->Describe(); !who.empty()) {
    LogEvent(LogLevel::kInfo,
             who.starts_with("bridge=") ? "bridge_disconnected" : "client_disconnected",
             Concat(who, " peer=", connection->peer_ip(), " reason=",
                    reason.ok() ? std::string("closed") : LogQuote(std::string(reason.message()))));
  }
  connection->closed_by_engine = true;
  CallInto(*connection, [&] { connection->OnEngineClosed(); });
}

void RouterShard::Route(Connection& sender, const xmpp::Stanza& stanza) {
  if (!stanza.to) {
    // Only clients may leave `to` out (their session checked it): for their account.
    RouteFromClientToAccount(static_cast<ClientConnection&>(sender), stanza);
    return;
  }
  const router::RouteDecision decision = routes_.Resolve(*stanza.to);
  switch (decision.kind) {
    case router::RouteKind::kServer:
      if (std::optional<router::UserAddress> user =
              router::ParseUserAddress(*stanza.to, config_->domain)) {
        RouteToUser(sender.id(), stanza, *user);
      } else if (std::optional<std::string> reply =
                     router::AnswerServerStanza(stanza, config_->domain)) {
        Bump(stats_->stanzas_answered);
        sender.SendReply(*reply);
      }
      return;
    case router::RouteKind::kComponent:
      DeliverTo(sender.id(), decision.connection, stanza.bytes);
      return;
    case router::RouteKind::kRemote:
      // The control thread relays it to that node (cluster/node, daemon).
      if (ForwardToNode(sender.id(), decision.node, stanza.bytes, stanza.to, decision.address)) {
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

void RouterShard::RouteFromClientToAccount(ClientConnection& sender, const xmpp::Stanza& stanza) {
  const std::string& bare = sender.bare_jid();
  switch (stanza.kind) {
    case xmpp::StanzaKind::kPresence: {
      // RFC 6121 §4.2 / §4.5: broadcast presence. Without a roster there are no
      // contacts; the account's own available resources get it (§4.2.2), the
      // sender included when it becomes available.
      const std::string_view type = stanza.type.value_or("");
      if (!type.empty() && type != "unavailable") return;  // nothing to do for others
      const bool available = type.empty();
      const int priority = available ? router::PresencePriority(stanza.bytes) : 0;
      // Every shard's routes learn it (this one's too, in order with the others).
      if (std::optional<router::FullJid> jid = router::FullJid::Parse(sender.full_jid())) {
        Broadcast(router::ClientPresence{sender.id(), *jid, available, priority});
      }
      std::vector<uint64_t> recipients = clients_.PresenceRecipients(bare);
      std::erase(recipients, sender.id());
      if (available) recipients.push_back(sender.id());
      for (uint64_t target : recipients) DeliverTo(sender.id(), target, stanza.bytes);
      // The account's resources on other nodes get it too: a copy addressed to the
      // bare JID, which each node delivers to its own available resources.
      ForwardToAccountNodes(sender.id(), bare, AddressedTo(stanza.bytes, bare));
      return;
    }
    case xmpp::StanzaKind::kMessage:
      RouteToUser(sender.id(), stanza, router::UserAddress{bare, ""});
      return;
    case xmpp::StanzaKind::kIq:
    case xmpp::StanzaKind::kOther:
      if (std::optional<std::string> reply = router::AnswerAccountStanza(stanza, bare, true)) {
        Bump(stats_->stanzas_answered);
        sender.SendReply(*reply);
      }
      return;
  }
}

void RouterShard::RouteToUser(ConnectionId sender, const xmpp::Stanza& stanza,
                              const router::UserAddress& to, bool from_peer) {
  if (!config_->users.contains(ToAbsl(to.localpart()))) {
    // RFC 6121 §8.5.1: no such user, by the replicated configuration (the same on
    // every node), whichever node its resources would be on.
    if (std::optional<StanzaErrorCondition> error = router::NoSuchUserError(stanza)) {
      BounceAny(sender, stanza.bytes, *error);
    }
    return;
  }
  if (!to.resource.empty()) {
    if (std::optional<uint64_t> target = clients_.Find(to.bare, to.resource)) {
      DeliverTo(sender, *target, stanza.bytes);
      return;
    }
    // Bound on another node of the cluster: the control thread relays it there.
    if (std::optional<uint64_t> node = routes_.FindRemote(Concat(to.bare, "/", to.resource))) {
      if (from_peer) {
        BounceToPeer(stanza.bytes, StanzaErrorCondition::kServiceUnavailable);  // never twice
      } else if (ForwardToNode(sender, *node, stanza.bytes)) {
        Bump(stats_->stanzas_forwarded);
      } else {
        BounceAny(sender, stanza.bytes, StanzaErrorCondition::kResourceConstraint);
      }
      return;
    }
    // RFC 6121 §8.5.3.2: no such resource. A message is handled as if sent to
    // the bare JID; an IQ request is answered with an error (a result or an
    // error is not); presence is ignored.
    if (stanza.kind == xmpp::StanzaKind::kIq) {
      if (std::optional<StanzaErrorCondition> error = router::UndeliverableIqError(stanza)) {
        BounceAny(sender, stanza.bytes, *error);
      }
      return;
    }
    if (stanza.kind != xmpp::StanzaKind::kMessage) return;
  }
  switch (stanza.kind) {
    case xmpp::StanzaKind::kMessage: {
      // Every available resource with a non-negative priority, on every node of
      // the cluster (each node with some gets one copy, and delivers it to its
      // own; a copy from another node is never sent on).
      const std::vector<uint64_t> recipients = clients_.MessageRecipients(to.bare);
      const size_t nodes = from_peer ? 0 : ForwardToAccountNodes(sender, to.bare, stanza.bytes);
      if (recipients.empty() && nodes == 0) {
        // No offline storage: the sender learns it was not delivered (§8.5.2.2.1).
        BounceAny(sender, stanza.bytes, StanzaErrorCondition::kServiceUnavailable);
        return;
      }
      for (uint64_t target : recipients) DeliverTo(sender, target, stanza.bytes);
      return;
    }
    case xmpp::StanzaKind::kPresence:
      if (!from_peer) ForwardToAccountNodes(sender, to.bare, stanza.bytes);
      for (uint64_t target : clients_.PresenceRecipients(to.bare)) {
        DeliverTo(sender, target, stanza.bytes);
      }
      return;
    case xmpp::StanzaKind::kIq:
    case xmpp::StanzaKind::kOther: {
      // An IQ to a bare JID is the server's to answer on the account's behalf.
      if (std::optional<std::string> reply =
              router::AnswerAccountStanza(stanza, to.bare, /*own_account=*/false)) {
        Bump(stats_->stanzas_answered);
        Connection* connection = sender == kNoConnection ? nullptr : Find(sender);
        if (connection != nullptr && !connection->closed_by_engine) connection->SendReply(*reply);
      }
      return;
    }
  }
}

void RouterShard::DeliverTo(ConnectionId sender, ConnectionId target, std::string_view bytes) {
  if (ShardOf(target) == shard_->index()) {
    StanzaErrorCondition why_not;
    if (DeliverLocal(target, bytes, &why_not)) {
      Bump(stats_->stanzas_routed);
    } else {
      BounceAny(sender, bytes, why_not);
    }
  } else if (!PostRecord(*shard_, ShardOf(target), router::Deliver{target, sender, bytes})) {
    BounceAny(sender, bytes, StanzaErrorCondition::kResourceConstraint);
  }
}

void RouterShard::BounceAny(ConnectionId sender, std::string_view stanza_bytes,
                            StanzaErrorCondition condition) {
  if (sender == kNoConnection) {
    BounceToPeer(stanza_bytes, condition);
  } else {
    Bounce(sender, stanza_bytes, condition);
  }
}

void RouterShard::AnnounceAccount(std::string_view bare) {
  if (router::OwnerShard(bare, shard_->shard_count()) != shard_->index()) return;
  const bool reachable = !clients_.MessageRecipients(bare).empty();
  const bool announced = announced_accounts_.contains(ToAbsl(bare));
  if (reachable == announced) return;
  if (reachable) {
    announced_accounts_.insert(std::string(bare));
  } else {
    announced_accounts_.erase(ToAbsl(bare));
  }
  if (reachable) {
    PostToControlThread(router::RouteUp{bare});
  } else {
    PostToControlThread(router::RouteDown{bare});
  }
}

size_t RouterShard::ForwardToAccountNodes(ConnectionId sender, std::string_view bare,
                                          std::string_view bytes) {
  auto it = remote_accounts_.find(ToAbsl(bare));
  if (it == remote_accounts_.end()) return 0;
  for (const uint64_t node : it->second) {
    if (ForwardToNode(sender, node, bytes)) {
      Bump(stats_->stanzas_forwarded);
    } else {
      BounceAny(sender, bytes, StanzaErrorCondition::kResourceConstraint);  // that copy
    }
  }
  return it->second.size();
}

void RouterShard::ReturnToSender(std::string_view stanza_bytes, StanzaErrorCondition condition) {
  const xmpp::Stanza stanza = xmpp::InspectStanza(stanza_bytes);
  if (stanza.is_error() || !stanza.from || stanza.kind == xmpp::StanzaKind::kPresence) {
    Bump(stats_->error_stanzas_dropped);  // errors are not answered; presence is not bounced
    return;
  }
  Bump(stats_->stanzas_bounced);
  Bump(stats_->stanzas_bounced_by_condition[static_cast<int>(condition)]);
  RouteWithoutSender(xmpp::MakeErrorReply(stanza, condition, config_->domain),
                     /*from_peer=*/false);
}

bool RouterShard::DeliverLocal(ConnectionId target, std::string_view bytes,
                               StanzaErrorCondition* why_not) {
  Connection* connection = Find(target);
  if (connection == nullptr || !connection->Routable()) {
    *why_not = StanzaErrorCondition::kServiceUnavailable;
    return false;
  }
  if (!connection->Deliver(bytes, why_not)) return false;
  if (connection->backed_up_since_ms == 0 &&
      shard_->QueuedBytes(target) > limits_.slow_reader_queue_bytes) {
    connection->backed_up_since_ms = shard_->now_ms();
  }
  return true;
}

void RouterShard::Bounce(ConnectionId sender, std::string_view stanza_bytes,
                         StanzaErrorCondition condition) {
  if (ShardOf(sender) != shard_->index()) {
    if (!PostRecord(*shard_, ShardOf(sender), router::Bounce{sender, condition, stanza_bytes})) {
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
  CallInto(*connection, [&] {
    connection->SendReply(xmpp::MakeErrorReply(stanza, condition, config_->domain));
  });
}

void RouterShard::DeliverFromPeer(Shard& shard, std::string_view address, std::string_view bytes) {
  shard_ = &shard;
  Bump(stats_->stanzas_from_peers);
  if (std::optional<uint64_t> connection = routes_.Find(address)) {
    DeliverTo(kNoConnection, *connection, bytes);
    return;
  }
  RouteWithoutSender(bytes, /*from_peer=*/true);
}

void RouterShard::RouteWithoutSender(std::string_view bytes, bool from_peer) {
  const xmpp::Stanza stanza = xmpp::InspectStanza(bytes);
  if (!stanza.to) {
    Bump(stats_->error_stanzas_dropped);
    return;
  }
  const router::RouteDecision decision = routes_.Resolve(*stanza.to);
  switch (decision.kind) {
    case router::RouteKind::kComponent:
      DeliverTo(kNoConnection, decision.connection, bytes);
      return;
    case router::RouteKind::kServer:
      if (std::optional<router::UserAddress> user =
              router::ParseUserAddress(*stanza.to, config_->domain)) {
        RouteToUser(kNoConnection, stanza, *user, from_peer);
        return;
      }
      // The sender's node answers stanzas to the domain itself; one here is stale.
      Bump(stats_->error_stanzas_dropped);
      return;
    case router::RouteKind::kRemote:
      if (from_peer) {
        // Not here after all (the bridge moved on): never relay twice.
        BounceToPeer(bytes, StanzaErrorCondition::kServiceUnavailable);
      } else if (!ForwardToNode(kNoConnection, decision.node, bytes)) {
        Bump(stats_->error_stanzas_dropped);
      }
      return;
    case router::RouteKind::kError:
      if (from_peer) {
        BounceToPeer(bytes, decision.error);
      } else {
        Bump(stats_->error_stanzas_dropped);  // the server's own error reply: not answered
      }
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
  const std::optional<uint64_t> node = RemoteNodeOf(*stanza.from);
  if (!node || !ForwardToNode(kNoConnection, *node, reply)) {
    Bump(stats_->error_stanzas_dropped);
    return;
  }
  Bump(stats_->stanzas_bounced);
  Bump(stats_->stanzas_bounced_by_condition[static_cast<int>(condition)]);
}

std::optional<uint64_t> RouterShard::RemoteNodeOf(std::string_view raw_jid) const {
  const router::RouteDecision decision = routes_.Resolve(raw_jid);
  if (decision.kind == router::RouteKind::kRemote) return decision.node;
  if (decision.kind != router::RouteKind::kServer) return std::nullopt;
  std::optional<router::UserAddress> user = router::ParseUserAddress(raw_jid, config_->domain);
  if (!user || user->resource.empty() || clients_.Find(user->bare, user->resource)) {
    return std::nullopt;
  }
  return routes_.FindRemote(Concat(user->bare, "/", user->resource));
}

bool RouterShard::ForwardToNode(ConnectionId sender, uint64_t node, std::string_view bytes,
                                std::optional<std::string_view> to,
                                std::string_view route_address) {
  if (forwarder_ == nullptr) {
    return PostEncodedToControl(*shard_,
                                router::EncodeControlRecord(router::Forward{sender, node, bytes}));
  }
  forwarder_->Forward(sender, node, bytes, to, route_address);
  return true;
}

std::optional<uint64_t> RouterShard::NodeOfRoute(std::string_view address) const {
  if (router::IsAccountRoute(address)) {
    if (!clients_.MessageRecipients(address).empty()) return 0;
    auto it = remote_accounts_.find(ToAbsl(address));
    if (it == remote_accounts_.end() || it->second.empty()) return std::nullopt;
    return it->second.front();
  }
  if (const size_t slash = address.find('/');
      slash != std::string_view::npos && address.find('@') < slash) {
    if (clients_.Find(address.substr(0, slash), address.substr(slash + 1))) return 0;
    return routes_.FindRemote(address);
  }
  const router::RouteDecision decision = routes_.Resolve(address);
  if (decision.kind == router::RouteKind::kComponent) return 0;
  if (decision.kind == router::RouteKind::kRemote) return decision.node;
  return std::nullopt;
}

bool RouterShard::AccountHeldBy(uint64_t node, std::string_view account) const {
  auto it = remote_accounts_.find(ToAbsl(account));
  return it != remote_accounts_.end() &&
         std::find(it->second.begin(), it->second.end(), node) != it->second.end();
}

void RouterShard::PostToControlThread(const router::ControlRecord& record) {
  const router::EncodedRecord encoded = router::EncodeControlRecord(record);
  if (deferred_control_.empty() && PostEncodedToControl(*shard_, encoded)) return;
  deferred_control_.push_back(encoded.Owned());
}

void RouterShard::Broadcast(const router::ShardRecord& record) {
  const router::EncodedRecord encoded = router::EncodeShardRecord(record);
  for (int shard = 0; shard < shard_->shard_count(); ++shard) PostOrDefer(shard, encoded);
}

void RouterShard::PostControl(int to, const router::ShardRecord& record) {
  PostOrDefer(to, router::EncodeShardRecord(record));
}

void RouterShard::PostOrDefer(int to, const router::EncodedRecord& record) {
  if (deferred_posts_.empty() && PostEncoded(*shard_, to, record)) return;
  if (deferred_posts_.empty()) {
    LogEvent(LogLevel::kWarning, "control_record_deferred",
             Concat("to_shard=", std::to_string(to), " kind=", std::to_string(record.kind()),
                    " reason=queue_full"));
  }
  deferred_posts_.push_back({to, record.Owned()});
}

void RouterShard::RetryDeferredPosts() {
  size_t sent = 0;
  while (sent < deferred_posts_.size()) {
    const DeferredPost& post = deferred_posts_[sent];
    if (!PostEncoded(*shard_, post.to, post.record)) break;
    ++sent;
  }
  deferred_posts_.erase(deferred_posts_.begin(),
                        deferred_posts_.begin() + static_cast<std::ptrdiff_t>(sent));
}

void RouterShard::OnMessage(Shard& shard, const CrossShardMessage& message) {
  shard_ = &shard;
  absl::StatusOr<router::ShardRecord> record = router::DecodeShardRecord(
      router::EncodedRecord(message.kind, message.target, message.argument, message.payload));
  if (!record.ok()) {
    LogMalformedRecord(record.status(), shard.index());
    return;
  }
  OnRecord(shard, *record);
}

void RouterShard::OnRecord(Shard& shard, const router::ShardRecord& record) {
  shard_ = &shard;
  std::visit([this](const auto& typed) { Handle(typed); }, record);
}

void RouterShard::Handle(const router::ConfigChanged&) { ApplyConfig(); }

// ---- Call bridges ----

void RouterShard::Handle(const router::BindRequest& bind) {
  auto [it, inserted] = owned_bindings_.try_emplace(ToAbsl(bind.address), bind.connection);
  if (!inserted && it->second != bind.connection) {
    const ConnectionId previous = it->second;
    it->second = bind.connection;
    PostControl(ShardOf(previous), router::Conflict{previous, bind.address});
  }
  Broadcast(router::RouteBind{bind.connection, bind.address});
  PostToControlThread(router::RouteUp{bind.address});
}

void RouterShard::Handle(const router::UnbindRequest& unbind) {
  auto it = owned_bindings_.find(ToAbsl(unbind.address));
  if (it != owned_bindings_.end() && it->second == unbind.connection) {
    owned_bindings_.erase(it);
    Broadcast(router::RouteUnbind{unbind.connection, unbind.address});
    PostToControlThread(router::RouteDown{unbind.address});
  }
}

void RouterShard::Handle(const router::RouteBind& bind) {
  routes_.Bind(bind.address, bind.connection);
  PostControl(ShardOf(bind.connection), router::RouteBindAck{bind.connection});
  if (forwarder_ != nullptr) forwarder_->RouteBound(bind.address);
}

void RouterShard::Handle(const router::RouteUnbind& unbind) {
  routes_.Unbind(unbind.address, unbind.connection);
}

RouterShard::Connection* RouterShard::LastRouteAck(ConnectionId id) {
  Connection* connection = Find(id);
  if (connection == nullptr || connection->pending_route_acks == 0) return nullptr;
  return --connection->pending_route_acks == 0 ? connection : nullptr;
}

void RouterShard::Handle(const router::RouteBindAck& ack) {
  auto* bridge = dynamic_cast<ComponentConnection*>(LastRouteAck(ack.connection));
  if (bridge == nullptr) return;
  CallInto(*bridge, [&] { bridge->session().AcknowledgeHandshake(); });
}

void RouterShard::Handle(const router::Conflict& conflict) {
  Connection* connection = Find(conflict.connection);
  if (connection == nullptr) return;
  CallInto(*connection, [&] {
    connection->CloseWithError(
        StreamErrorCondition::kConflict,
        conflict.address.find('@') == std::string_view::npos
            ? Concat("replaced by a newer connection of call bridge ", conflict.address)
            : Concat("replaced by a newer session of ", conflict.address));
  });
}

// ---- Stanzas ----

void RouterShard::Handle(const router::Deliver& delivery) {
  StanzaErrorCondition why_not;
  if (DeliverLocal(delivery.destination, delivery.stanza, &why_not)) {
    Bump(stats_->stanzas_routed);
  } else {
    // kNoConnection: its sender is on another node.
    BounceAny(delivery.sender, delivery.stanza, why_not);
  }
}

void RouterShard::Handle(const router::Bounce& bounce) {
  Bounce(bounce.sender, bounce.stanza, bounce.condition);
}

void RouterShard::Handle(const router::DeliverFromPeer& delivery) {
  Bump(stats_->stanzas_from_peers);
  RouteWithoutSender(delivery.stanza, /*from_peer=*/true);
}

// ---- Routes on other nodes ----

void RouterShard::Handle(const router::RemoteRouteBind& bind) {
  if (router::IsAccountRoute(bind.address)) {
    std::vector<uint64_t>& nodes = remote_accounts_[ToAbsl(bind.address)];
    if (std::find(nodes.begin(), nodes.end(), bind.node) == nodes.end()) {
      nodes.push_back(bind.node);
    }
    return;
  }
  routes_.BindRemote(bind.address, bind.node);
  if (forwarder_ != nullptr) forwarder_->RouteBound(bind.address);
}

void RouterShard::Handle(const router::RemoteRouteUnbind& unbind) {
  if (router::IsAccountRoute(unbind.address)) {
    auto it = remote_accounts_.find(ToAbsl(unbind.address));
    if (it == remote_accounts_.end()) return;
    std::erase(it->second, unbind.node);
    if (it->second.empty()) remote_accounts_.erase(it);
    return;
  }
  routes_.UnbindRemote(unbind.address, unbind.node);
}

void RouterShard::Handle(const router::ForgetNode& forget) {
  routes_.ForgetNode(forget.node);
  absl::erase_if(remote_accounts_, [node = forget.node](auto& entry) {
    std::erase(entry.second, node);
    return entry.second.empty();
  });
}

// ---- Clients ----

void RouterShard::Handle(const router::ClientBindRequest& bind) {
  const router::FullJid& jid = bind.jid;
  const bool replacing = owned_clients_.Find(jid.bare(), jid.resource()).has_value();
  if (!replacing && owned_clients_.Resources(jid.bare()).size() >= limits_.client_resources_max) {
    PostControl(ShardOf(bind.connection), router::ClientBindRefused{bind.connection, jid});
    return;
  }
  if (std::optional<uint64_t> previous =
          owned_clients_.Bind(jid.bare(), jid.resource(), bind.connection)) {
    // RFC 6120 §7.7.2.2: the newer session wins; the older one is told why.
    PostControl(ShardOf(*previous), router::Conflict{*previous, jid.text()});
  }
  Broadcast(router::ClientRouteBind{bind.connection, jid});
  PostToControlThread(router::RouteUp{jid.text()});  // the other nodes learn it
}

void RouterShard::Handle(const router::ClientUnbindRequest& unbind) {
  const router::FullJid& jid = unbind.jid;
  if (owned_clients_.Unbind(jid.bare(), jid.resource(), unbind.connection)) {
    Broadcast(router::ClientRouteUnbind{unbind.connection, jid});
    PostToControlThread(router::RouteDown{jid.text()});
  }
}

void RouterShard::Handle(const router::ClientBindRefused& refused) {
  auto* client = dynamic_cast<ClientConnection*>(Find(refused.connection));
  if (client == nullptr) return;
  CallInto(*client, [&] { client->BindRefused(); });
}

void RouterShard::Handle(const router::ClientRouteBind& bind) {
  clients_.Bind(bind.jid.bare(), bind.jid.resource(), bind.connection);
  PostControl(ShardOf(bind.connection), router::ClientRouteBindAck{bind.connection});
  AnnounceAccount(bind.jid.bare());  // a replaced resource starts unavailable
  if (forwarder_ != nullptr) forwarder_->RouteBound(bind.jid.text());
}

void RouterShard::Handle(const router::ClientRouteUnbind& unbind) {
  clients_.Unbind(unbind.jid.bare(), unbind.jid.resource(), unbind.connection);
  AnnounceAccount(unbind.jid.bare());
}

void RouterShard::Handle(const router::ClientRouteBindAck& ack) {
  auto* client = dynamic_cast<ClientConnection*>(LastRouteAck(ack.connection));
  if (client == nullptr) return;
  CallInto(*client, [&] { client->RouteAcknowledged(); });
}

void RouterShard::Handle(const router::ClientPresence& presence) {
  clients_.SetPresence(presence.jid.bare(), presence.jid.resource(), presence.connection,
                       presence.available, presence.priority);
  AnnounceAccount(presence.jid.bare());
}

// ---- Stream management resumption ----

void RouterShard::Handle(const router::SmRegister& registration) {
  sm_tokens_[ToAbsl(registration.token)] = registration.connection;
}

void RouterShard::Handle(const router::SmUnregister& unregistration) {
  auto it = sm_tokens_.find(ToAbsl(unregistration.token));
  if (it != sm_tokens_.end() && it->second == unregistration.connection) sm_tokens_.erase(it);
}

void RouterShard::Handle(const router::SmResumeLookup& lookup) {
  auto it = sm_tokens_.find(ToAbsl(lookup.request.token));
  if (it == sm_tokens_.end()) {
    PostControl(ShardOf(lookup.connection), router::ClientResumeFailed{lookup.connection});
  } else {
    PostControl(ShardOf(it->second),
                router::ClientResumeRequest{it->second, lookup.connection, lookup.request});
  }
}

void RouterShard::Handle(const router::ClientResumeRequest& resume) {
  auto* holder = dynamic_cast<ClientConnection*>(Find(resume.holder));
  bool handed = false;
  if (holder != nullptr) {
    CallInto(*holder, [&] {
      handed = holder->HandOver(resume.connection, resume.request.token, resume.request.account,
                                resume.request.handled);
    });
  }
  if (!handed) {
    PostControl(ShardOf(resume.connection), router::ClientResumeFailed{resume.connection});
  }
}

void RouterShard::Handle(const router::ClientResumeFailed& failed) {
  auto* client = dynamic_cast<ClientConnection*>(Find(failed.connection));
  if (client == nullptr) return;
  CallInto(*client, [&] { client->ResumeFailed(); });
}

void RouterShard::Handle(const router::ClientResumeStanza& resent) {
  auto* client = dynamic_cast<ClientConnection*>(Find(resent.connection));
  if (client == nullptr) {
    ReturnToSender(resent.stanza, StanzaErrorCondition::kRecipientUnavailable);
    return;
  }
  CallInto(*client, [&] { client->ResumeStanza(resent.stanza); });
}

void RouterShard::Handle(const router::ClientResumeAccepted& accepted) {
  auto* client = dynamic_cast<ClientConnection*>(Find(accepted.connection));
  if (client == nullptr) return;
  CallInto(*client, [&] { client->ResumeAccepted(accepted.jid.text(), accepted.handled_inbound); });
}

// ---- Guessing and pre-auth limits ----

void RouterShard::Handle(const router::FailureSeen& failure) {
  FailureCounter& counter =
      failure.of == router::FailureOf::kAddress ? address_failures_ : account_failures_;
  counter.Record(failure.key, shard_->now_ms());
}

void RouterShard::Handle(const router::PreauthChanged& change) {
  CountPreauth(change.ip, /*local=*/false,
               change.change == router::PreauthChange::kBegan ? +1 : -1);
}

void RouterShard::ApplyConfig() {
  config_ = config_publisher_->Current();
  routes_.set_server_domain(config_->domain);
  std::vector<ConnectionId> ids;
  ids.reserve(connections_.size());
  for (const auto& [id, connection] : connections_) {
    if (!connection->closed_by_engine) ids.push_back(id);
  }
  for (ConnectionId id : ids) {
    Connection* connection = Find(id);
    CallInto(*connection, [&] {
      if (!config_->enabled) {
        connection->CloseWithError(StreamErrorCondition::kSystemShutdown,
                                   "the XMPP service was disabled");
      } else {
        connection->CloseIfRemoved(*config_);
      }
    });
  }
}

void RouterShard::OnTick(Shard& shard, uint64_t now_ms) {
  shard_ = &shard;
  if (!deferred_posts_.empty()) RetryDeferredPosts();
  size_t sent = 0;
  while (sent < deferred_control_.size()) {
    if (!PostEncodedToControl(shard, deferred_control_[sent])) break;
    ++sent;
  }
  deferred_control_.erase(deferred_control_.begin(),
                          deferred_control_.begin() + static_cast<std::ptrdiff_t>(sent));
  if (now_ms - last_scan_ms_ < 500) return;
  last_scan_ms_ = now_ms;
  std::vector<std::pair<ConnectionId, StreamErrorCondition>> expired;
  std::vector<ConnectionId> lingered;
  for (const auto& [id, connection] : connections_) {
    if (connection->closed_by_engine) {
      if (connection->Lingers() && connection->LingerExpired(now_ms)) lingered.push_back(id);
      continue;
    }
    if (auto* client = dynamic_cast<ClientConnection*>(connection.get())) {
      client->TickStreamManagement(now_ms);
    }
    // Idle for a while: its buffers go back to the allocator (thousands of idle
    // clients should cost little memory; a busy connection keeps them warm).
    if (now_ms - connection->last_activity_ms() >= kIdleMemoryAfterMs &&
        connection->last_activity_ms() > connection->memory_released_ms) {
      connection->ReleaseIdleMemory();
      connection->memory_released_ms = now_ms;
    }
    if (!connection->Established() &&
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
  for (ConnectionId id : lingered) DestroyIfDead(id);
  for (const auto& entry : expired) {
    // (Named copies: clang 14 cannot capture structured bindings.)
    const ConnectionId id = entry.first;
    const StreamErrorCondition condition = entry.second;
    Connection* connection = Find(id);
    CallInto(*connection, [&] {
      if (condition == StreamErrorCondition::kPolicyViolation) {
        LogEvent(LogLevel::kWarning, "slow_reader_disconnected",
                 Concat(connection->Describe(), " peer=", connection->peer_ip(),
                        " queued_bytes=", std::to_string(shard.QueuedBytes(id))));
        shard.Abort(id);
      } else {
        connection->CloseWithError(condition, "no handshake or traffic in time");
      }
    });
  }
}

void RouterShard::OnStop(Shard& shard) {
  shard_ = &shard;
  std::vector<ConnectionId> open;
  for (const auto& [id, connection] : connections_) {
    if (!connection->closed_by_engine) open.push_back(id);
  }
  for (const ConnectionId id : open) {
    if (Connection* connection = Find(id)) {
      CallInto(*connection, [&] {
        connection->CloseWithError(StreamErrorCondition::kSystemShutdown,
                                   "the server is shutting down");
      });
    }
  }
  tls::ReleaseThreadCaches();  // this thread's handshakes filled them; it ends now
}

}  // namespace stanzad::router
