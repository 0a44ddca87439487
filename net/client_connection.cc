// RouterShard::ClientConnection: one client's connection, TLS and session.
#include "absl/strings/str_cat.h"
#include "core/base/absl_compat.h"
#include "core/base/concat.h"
#include "core/base/log.h"
#include "core/jid/jid.h"
#include "net/router_connection.h"

namespace stanzad::net {

using xmpp::ClientSession;
using xmpp::StanzaErrorCondition;
using xmpp::StreamErrorCondition;

namespace {

// Room for a TLS record's header, padding and tag around one stanza.
constexpr size_t kTlsRecordOverhead = 64;

}  // namespace

xmpp::ClientSession::Options RouterShard::ClientConnection::SessionOptions(
    const RouterShard& router, bool direct_tls) {
  ClientSession::Options options;
  options.domain = router.config_->domain;
  options.unknown_user_salt_key = router.config_->unknown_user_salt_key;
  options.direct_tls = direct_tls;
  options.limits = router.limits_.tokenizer;
  return options;
}

RouterShard::ClientConnection::ClientConnection(RouterShard* router, ConnectionId id,
                                                std::string peer_ip, uint64_t now_ms,
                                                bool direct_tls)
    : Connection(router, id, std::move(peer_ip), now_ms),
      direct_tls_(direct_tls),
      session_(this, SessionOptions(*router, direct_tls)) {
  if (direct_tls_) BeginTls();
}

bool RouterShard::ClientConnection::BeginTls() {
  absl::StatusOr<std::unique_ptr<tls::TlsSession>> session =
      tls::TlsSession::NewServer(router_->config_->client_tls);
  if (!session.ok()) {
    LogEvent(
        LogLevel::kError, "tls_setup_failed",
        Concat("peer=", peer_ip_, " reason=", LogQuote(std::string(session.status().message()))));
    tls_failed_ = true;
    router_->shard_->Abort(id_);
    return false;
  }
  tls_ = *std::move(session);
  return true;
}

void RouterShard::ClientConnection::OnBytes(std::string_view bytes) {
  if (tls_failed_) return;
  if (tls_ == nullptr) {
    session_.OnBytes(bytes);  // before STARTTLS
    return;
  }
  absl::Status status = tls_->Feed(bytes);
  plaintext_.clear();
  if (status.ok()) status = tls_->Read(&plaintext_);
  if (!FlushTls()) return;
  if (!status.ok()) {
    FailTls(status);
    return;
  }
  if (!tls_up_ && tls_->handshake_done()) {
    tls_up_ = true;
    Bump(router_->stats_->tls_handshakes_ok);
    if (!direct_tls_) session_.TlsEstablished();
  }
  if (!plaintext_.empty()) {
    // The session may send (and so use TLS) while it reads: hand it a copy
    // that this buffer's reuse cannot touch.
    const std::string input = std::move(plaintext_);
    plaintext_.clear();
    session_.OnBytes(input);
  }
  if (tls_ != nullptr && tls_->peer_closed() && session_.state() != ClientSession::State::kClosed) {
    session_.Close();
  }
}

bool RouterShard::ClientConnection::FlushTls() {
  if (tls_ == nullptr || !tls_->has_output()) return true;
  tls_->TakeOutput(&ciphertext_);
  if (closed_by_engine) return false;
  if (!router_->shard_->Send(id_, ciphertext_)) {
    // Our own bytes do not fit: the client is not reading. Give up on it.
    tls_failed_ = true;
    router_->shard_->Abort(id_);
    return false;
  }
  return true;
}

void RouterShard::ClientConnection::FailTls(const absl::Status& status) {
  tls_failed_ = true;
  if (!tls_up_) Bump(router_->stats_->tls_handshakes_failed);
  LogEvent(LogLevel::kWarning, tls_up_ ? "tls_error" : "tls_handshake_failed",
           Concat("peer=", peer_ip_, full_jid_.empty() ? "" : " client=", full_jid_,
                  " reason=", LogQuote(std::string(status.message()))));
  if (!closed_by_engine) router_->shard_->Close(id_);  // after the alert, if any
}

bool RouterShard::ClientConnection::Routable() const {
  return bound_ && !closed_by_engine && !tls_failed_ &&
         session_.state() == ClientSession::State::kBound;
}

bool RouterShard::ClientConnection::Established() const {
  return bound_ || session_.state() == ClientSession::State::kClosed;
}

bool RouterShard::ClientConnection::Deliver(std::string_view stanza,
                                            StanzaErrorCondition* why_not) {
  // Checked before encrypting: a record the queue refused would break the TLS stream.
  if (router_->shard_->QueuedBytes(id_) + stanza.size() + kTlsRecordOverhead >
      router_->limits_.queue_bytes_max) {
    *why_not = StanzaErrorCondition::kResourceConstraint;
    return false;
  }
  Send(stanza);
  return true;
}

void RouterShard::ClientConnection::CloseWithError(StreamErrorCondition condition,
                                                   std::string text) {
  if (tls_failed_) {
    if (!closed_by_engine) router_->shard_->Abort(id_);
    return;
  }
  session_.CloseWithError(condition, std::move(text));
}

void RouterShard::ClientConnection::Release() {
  if (counted_as_client_) Drop(router_->stats_->clients_connected);
  if (!bind_requested_) return;
  router_->PostControl(OwnerShard(bare_jid_, router_->shard_->shard_count()), kClientUnbindRequest,
                       id_, full_jid_);
}

bool RouterShard::ClientConnection::CloseIfRemoved(const RouterConfig& config) {
  if (account_.empty() || config.users.contains(account_)) return false;
  CloseWithError(StreamErrorCondition::kNotAuthorized,
                 Concat("the account ", account_, " was deleted"));
  return true;
}

std::string RouterShard::ClientConnection::Describe() const {
  return full_jid_.empty() ? std::string() : Concat("client=", full_jid_);
}

void RouterShard::ClientConnection::Send(std::string_view bytes) {
  if (closed_by_engine || tls_failed_) return;
  if (tls_ == nullptr) {
    if (!router_->shard_->Send(id_, bytes)) router_->shard_->Abort(id_);
    return;
  }
  if (absl::Status written = tls_->Write(bytes); !written.ok()) {
    FlushTls();
    FailTls(written);
    return;
  }
  FlushTls();
}

std::string RouterShard::ClientConnection::RandomBytes(size_t count) {
  return net::RandomBytes(count);
}

void RouterShard::ClientConnection::StartTls() {
  // <proceed/> went out in the clear; from now on every byte is TLS.
  BeginTls();
}

std::string RouterShard::ClientConnection::AccountOf(std::string_view username) const {
  absl::StatusOr<jid::Jid> jid = jid::Jid::Parse(Concat(username, "@", router_->config_->domain));
  if (!jid.ok() || !jid->IsBare()) return {};
  return std::string(jid->localpart());
}

std::optional<config::UserCredentials> RouterShard::ClientConnection::CredentialsFor(
    std::string_view username) {
  const std::string account = AccountOf(username);
  if (account.empty()) return std::nullopt;
  if (router_->AccountBlocked(account, router_->shard_->now_ms())) return std::nullopt;
  auto it = router_->config_->users.find(account);
  if (it == router_->config_->users.end()) return std::nullopt;
  return it->second;
}

void RouterShard::ClientConnection::OnAuthentication(std::string_view username, bool ok,
                                                     std::string_view condition) {
  if (ok) {
    account_ = AccountOf(username);
    Bump(router_->stats_->client_logins_ok);
    return;
  }
  Bump(router_->stats_->client_logins_failed);
  const uint64_t now_ms = router_->shard_->now_ms();
  router_->RecordAuthFailure(peer_ip_, now_ms);
  const std::string account = AccountOf(username);
  const bool blocked = !account.empty() && router_->AccountBlocked(account, now_ms);
  if (!account.empty() && router_->config_->users.contains(account)) {
    router_->RecordAccountFailure(account, now_ms);
  }
  LogEvent(LogLevel::kWarning, "client_auth_failed",
           Concat("user=", LogQuote(std::string(username)), " peer=", peer_ip_,
                  " reason=", condition, blocked ? " note=account_blocked" : ""));
}

void RouterShard::ClientConnection::RequestBind(const jid::Jid& full_jid) {
  if (bind_requested_) {
    // A second bind on one stream (RFC 6120 §7.7.2.3 leaves it to the server): refused.
    session_.BindDone(absl::FailedPreconditionError("a resource is already bound"));
    return;
  }
  full_jid_ = full_jid.Full();
  bare_jid_ = full_jid.Bare().Full();
  bind_requested_ = true;
  pending_route_acks = router_->shard_->shard_count();
  router_->PostControl(OwnerShard(bare_jid_, router_->shard_->shard_count()), kClientBindRequest,
                       id_, full_jid_);
}

void RouterShard::ClientConnection::RouteAcknowledged() {
  bound_ = true;
  counted_as_client_ = true;
  Bump(router_->stats_->clients_connected);
  LogEvent(LogLevel::kInfo, "client_bound",
           Concat("client=", full_jid_, " peer=", peer_ip_,
                  " shard=", std::to_string(router_->shard_->index())));
  session_.BindDone(absl::OkStatus());
}

void RouterShard::ClientConnection::BindRefused() {
  pending_route_acks = 0;
  LogEvent(LogLevel::kWarning, "client_bind_refused",
           Concat("client=", full_jid_, " peer=", peer_ip_, " reason=too_many_resources max=",
                  std::to_string(router_->limits_.client_resources_max)));
  bind_requested_ = false;
  full_jid_.clear();
  session_.BindDone(absl::ResourceExhaustedError("too many resources"));
}

void RouterShard::ClientConnection::OnStanza(const xmpp::Stanza& stanza) {
  Bump(router_->stats_->stanzas_received);
  router_->Route(*this, stanza);
}

void RouterShard::ClientConnection::OnStreamClosed(const xmpp::StreamError* error) {
  if (error != nullptr) Bump(router_->stats_->stream_errors);
  if (tls_ != nullptr && tls_up_ && !tls_failed_) {
    (void)tls_->Shutdown();  // close_notify; a failure here changes nothing
    FlushTls();
  }
  if (!closed_by_engine) router_->shard_->Close(id_);
}

}  // namespace stanzad::net
