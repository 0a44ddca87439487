// RouterShard::ClientConnection: one client's connection, TLS and session.
#include "absl/strings/str_cat.h"
#include "core/base/absl_compat.h"
#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/base/hex.h"
#include "core/base/log.h"
#include "core/jid/jid.h"
#include "router/router_connection.h"

namespace stanzad::router {

using xmpp::ClientSession;
using xmpp::StanzaErrorCondition;
using xmpp::StreamErrorCondition;

namespace {

// A session that moved to the connection that resumed it forwards stanzas
// that were already on their way for this long.
constexpr uint64_t kMovedGraceMs = 10'000;

}  // namespace

xmpp::ClientSession::Options RouterShard::ClientConnection::SessionOptions(
    const RouterShard& router, bool direct_tls) {
  ClientSession::Options options;
  options.domain = router.config_->domain;
  options.unknown_user_salt_key = router.config_->unknown_user_salt_key;
  options.direct_tls = direct_tls;
  options.resumption = router.limits_.resume_timeout_ms != 0;
  if (router.config_->client_tls == nullptr) {
    // OnAccept lets a STARTTLS client in without a certificate only to say why it
    // cannot be served.
    options.tls_unavailable =
        "this server has no TLS certificate yet, so it cannot offer STARTTLS, which it "
        "requires; its operator must set one (stanzactl certs KEY CERT)";
  }
  options.limits = router.limits_.tokenizer;
  return options;
}

xmpp::StreamManagement::Options RouterShard::ClientConnection::StreamManagementOptions(
    const RouterShard& router) {
  xmpp::StreamManagement::Options options;
  options.unacked_bytes_max = router.limits_.unacked_bytes_max;
  options.resume_timeout_ms = router.limits_.resume_timeout_ms;
  return options;
}

RouterShard::ClientConnection::ClientConnection(RouterShard* router, ConnectionId id,
                                                std::string peer_ip, uint64_t now_ms,
                                                bool direct_tls)
    : Connection(router, id, std::move(peer_ip), now_ms),
      sm_(StreamManagementOptions(*router)),
      direct_tls_(direct_tls),
      session_(this, SessionOptions(*router, direct_tls)) {
  if (direct_tls_) BeginTls();
}

void RouterShard::ClientConnection::OnBytes(std::string_view bytes) {
  if (tls_failed_) return;
  if (tls_ == nullptr) {
    session_.OnBytes(bytes);  // before STARTTLS
    return;
  }
  if (!ReadTls(bytes)) return;
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

void RouterShard::ClientConnection::ReleaseIdleMemory() {
  Connection::ReleaseIdleMemory();
  session_.ReleaseIdleMemory();
}

void RouterShard::ClientConnection::OnTlsUp() {
  if (!direct_tls_) session_.TlsEstablished();
}

bool RouterShard::ClientConnection::Routable() const {
  if (moved_to_ != kNoConnection || sm_.detached()) return true;  // forwards, or keeps
  if (resuming_) return resume_accepted_;                         // keeps until resumed
  return bound_ && !closed_by_engine && !tls_failed_ &&
         session_.state() == ClientSession::State::kBound;
}

bool RouterShard::ClientConnection::Established() const {
  return bound_ || session_.state() == ClientSession::State::kClosed;
}

bool RouterShard::ClientConnection::Deliver(std::string_view stanza,
                                            StanzaErrorCondition* why_not) {
  if (moved_to_ != kNoConnection) {
    router_->DeliverTo(kNoConnection, moved_to_, stanza);
    return true;
  }
  if (!sm_.Admits(stanza.size())) {
    *why_not = StanzaErrorCondition::kResourceConstraint;  // the client is not acknowledging
    return false;
  }
  if (sm_.detached() || resuming_) {
    // Kept for the client: sent when it resumes, returned to the sender if it does not.
    sm_.Keep(stanza);
    return true;
  }
  if (!Fits(stanza.size())) {
    *why_not = StanzaErrorCondition::kResourceConstraint;
    return false;
  }
  SendStanza(stanza);
  return true;
}

void RouterShard::ClientConnection::SendReply(std::string_view bytes) {
  if (sm_.enabled() && !sm_.Admits(bytes.size())) {
    // The server's own answers have no sender to bounce to; a client that asks
    // and never acknowledges would otherwise hold them without bound.
    CloseWithError(StreamErrorCondition::kResourceConstraint,
                   Concat("more than ", std::to_string(router_->limits_.unacked_bytes_max),
                          " bytes of stanzas are unacknowledged"));
    return;
  }
  SendStanza(bytes);
}

void RouterShard::ClientConnection::SendStanza(std::string_view stanza) {
  Send(stanza);
  const std::string_view request = sm_.OnSent(stanza, router_->shard_->now_ms());
  if (!request.empty()) Send(request);
}

void RouterShard::ClientConnection::TickStreamManagement(uint64_t now_ms) {
  if (closed_by_engine) return;
  const std::string_view request = sm_.OnTick(now_ms);
  if (!request.empty()) Send(request);
}

std::string RouterShard::ClientConnection::EnableStreamManagement(bool resume) {
  std::string token;
  if (resume && router_->limits_.resume_timeout_ms != 0) {
    token = HexOf(router::RandomBytes(16));
    router_->PostControl(router::OwnerShard(token, router_->shard_->shard_count()),
                         router::SmRegister{id_, token});
  }
  sm_.Enable(token, router_->shard_->now_ms());
  return token;
}

void RouterShard::ClientConnection::OnAcknowledged(uint32_t h) {
  if (moved_to_ != kNoConnection) return;  // its last acks, read after the hand-over
  if (std::optional<xmpp::StreamError> error = sm_.OnAck(h)) {
    session_.CloseWithError(std::move(*error));
  }
}

void RouterShard::ClientConnection::RequestResume(std::string_view previd, uint32_t h) {
  if (previd.size() > 64 || previd.find('\n') != std::string_view::npos) {
    session_.ResumeDone(std::nullopt, 0, previd);
    return;
  }
  resuming_ = true;
  resume_previd_ = std::string(previd);
  resume_h_ = h;
  router_->PostControl(router::OwnerShard(previd, router_->shard_->shard_count()),
                       router::SmResumeLookup{id_, router::ResumeRequest{previd, account_, h}});
}

bool RouterShard::ClientConnection::HandOver(ConnectionId to, std::string_view token,
                                             std::string_view account, uint32_t h) {
  if (!sm_.resumable() || token != sm_.resumption_id() || account != account_ || !bound_ ||
      moved_to_ != kNoConnection) {
    return false;
  }
  const router::FullJid jid = RecordJid();
  const std::string resumption_id = sm_.resumption_id();
  const bool was_detached = sm_.detached();
  std::optional<xmpp::StreamManagement::Handover> handover = sm_.HandOver(h);
  if (!handover) return false;
  const int target_shard = ShardOf(to);
  for (const std::string& stanza : handover->resend) {
    router_->PostControl(target_shard, router::ClientResumeStanza{to, stanza});
  }
  router_->PostControl(target_shard, router::ClientResumeAccepted{to, jid, handover->received});
  router_->PostControl(router::OwnerShard(resumption_id, router_->shard_->shard_count()),
                       router::SmRegister{to, resumption_id});
  LogEvent(LogLevel::kInfo, "client_session_moved",
           Concat("client=", full_jid_, " resent=", std::to_string(handover->resend.size()),
                  " detached=", was_detached ? "yes" : "no"));
  moved_to_ = to;
  moved_at_ms_ = router_->shard_->now_ms();
  if (closed_by_engine) return true;
  // The client left this stream for another one. XEP-0198 §5: the old stream,
  // if still open, ends with a conflict stream error.
  if (tls_failed_) {
    router_->shard_->Abort(id_);
  } else {
    session_.CloseWithError(StreamErrorCondition::kConflict,
                            "this session was resumed on another connection");
  }
  return true;
}

void RouterShard::ClientConnection::ResumeFailed() {
  if (!resuming_) return;
  resuming_ = false;
  Bump(router_->stats_->sm_resume_failed);
  LogEvent(LogLevel::kInfo, "client_resume_failed",
           Concat("user=", account_, " peer=", peer_ip_, " reason=unknown_or_expired_session"));
  session_.ResumeDone(std::nullopt, 0, resume_previd_);
}

void RouterShard::ClientConnection::ResumeStanza(std::string_view stanza) {
  if (!resuming_) {
    router_->ReturnToSender(stanza, StanzaErrorCondition::kRecipientUnavailable);
    return;
  }
  sm_.Keep(stanza);
}

void RouterShard::ClientConnection::ResumeAccepted(std::string_view full_jid,
                                                   uint32_t handled_inbound) {
  if (!resuming_ || resume_accepted_) return;
  const size_t slash = full_jid.find('/');
  if (slash == std::string_view::npos) return;
  resume_accepted_ = true;
  full_jid_ = std::string(full_jid);
  bare_jid_ = full_jid_.substr(0, slash);
  // The token's shard now names this connection. The session hands on no stanza
  // before ResumeDone, so received() is still handled_inbound then.
  sm_.Resume(resume_previd_, resume_h_, handled_inbound);
  // The route moves here as a bind of the same full JID would.
  bind_requested_ = true;
  pending_route_acks = router_->shard_->shard_count();
  router_->PostControl(router::OwnerShard(bare_jid_, router_->shard_->shard_count()),
                       router::ClientBindRequest{id_, RecordJid()});
}

void RouterShard::ClientConnection::OnEngineClosed() {
  // A stream the client closed (or that ended with an error) is over; only a
  // dropped connection leaves a session to resume.
  if (!bound_ || moved_to_ != kNoConnection || session_.state() == ClientSession::State::kClosed ||
      !sm_.Detach(router_->shard_->now_ms())) {
    return;
  }
  LogEvent(LogLevel::kInfo, "client_detached",
           Concat("client=", full_jid_, " peer=", peer_ip_,
                  " unacked=", std::to_string(sm_.unacknowledged_count()),
                  " resume_timeout_s=", std::to_string(router_->limits_.resume_timeout_ms / 1000)));
}

bool RouterShard::ClientConnection::LingerExpired(uint64_t now_ms) {
  if (moved_to_ != kNoConnection) {
    if (now_ms - moved_at_ms_ < kMovedGraceMs) return false;
    moved_to_ = kNoConnection;
    return true;
  }
  if (!sm_.detached()) return true;
  if (!sm_.ResumptionExpired(now_ms)) return false;
  sm_.StopWaiting();  // Release (when the connection is destroyed) returns what it held
  Bump(router_->stats_->sm_expired);
  LogEvent(LogLevel::kInfo, "client_resume_expired",
           Concat("client=", full_jid_,
                  " returned=", std::to_string(sm_.unacknowledged_count() + sm_.pending_count())));
  return true;
}

void RouterShard::ClientConnection::ReturnUnacknowledged() {
  xmpp::StreamManagement::Ended ended = sm_.End();
  for (const std::string& stanza : ended.unacknowledged) {
    Bump(router_->stats_->stanzas_returned_unacked);
    router_->ReturnToSender(stanza, StanzaErrorCondition::kRecipientUnavailable);
  }
  if (!ended.resumption_id.empty()) {
    router_->PostControl(router::OwnerShard(ended.resumption_id, router_->shard_->shard_count()),
                         router::SmUnregister{id_, ended.resumption_id});
  }
}

void RouterShard::ClientConnection::CloseWithError(StreamErrorCondition condition,
                                                   std::string text) {
  if (moved_to_ != kNoConnection) return;  // it lives on elsewhere
  if (sm_.detached()) {
    // No stream left to close: the session waiting to be resumed ends now
    // (replaced by a new one of the same resource, deleted account, shutdown).
    sm_.StopWaiting();
    return;
  }
  if (tls_failed_) {
    if (!closed_by_engine) router_->shard_->Abort(id_);
    return;
  }
  session_.CloseWithError(condition, std::move(text));
}

void RouterShard::ClientConnection::Release() {
  Drop(router_->stats_->client_connections_open);
  ReturnUnacknowledged();
  if (counted_as_client_) Drop(router_->stats_->clients_connected);
  if (!bind_requested_) return;
  router_->PostControl(router::OwnerShard(bare_jid_, router_->shard_->shard_count()),
                       router::ClientUnbindRequest{id_, RecordJid()});
}

bool RouterShard::ClientConnection::CloseIfRemoved(const RouterConfig& config) {
  if (account_.empty() || config.users.contains(account_)) return false;
  CloseWithError(StreamErrorCondition::kNotAuthorized,
                 Concat("the account ", account_, " was deleted"));
  return true;
}

router::FullJid RouterShard::ClientConnection::RecordJid() const {
  const std::optional<router::FullJid> jid = router::FullJid::Parse(full_jid_);
  CHECK_MSG(jid.has_value(), "a client connection's records need the full JID it asked to bind");
  return *jid;
}

std::string RouterShard::ClientConnection::Describe() const {
  return full_jid_.empty() ? std::string() : Concat("client=", full_jid_);
}

void RouterShard::ClientConnection::Send(std::string_view bytes) { SendBytes(bytes); }

std::string RouterShard::ClientConnection::RandomBytes(size_t count) {
  return router::RandomBytes(count);
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
    router_->EndPreauth(*this);
    return;
  }
  Bump(router_->stats_->client_logins_failed);
  const uint64_t now_ms = router_->shard_->now_ms();
  router_->RecordFailure(kFailureOfAddress, peer_ip_, now_ms);
  const std::string account = AccountOf(username);
  const bool blocked = !account.empty() && router_->AccountBlocked(account, now_ms);
  if (!account.empty() && router_->config_->users.contains(account)) {
    router_->RecordFailure(kFailureOfAccount, account, now_ms);
  }
  LogEvent(LogLevel::kWarning, "client_auth_failed",
           Concat("user=", LogQuote(std::string(username)), " peer=", peer_ip_,
                  " reason=", condition, blocked ? " note=account_blocked" : ""));
}

std::optional<std::string> RouterShard::ClientConnection::RefuseAuthentication() {
  return router_->RefuseAuthentication(*this);
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
  router_->PostControl(router::OwnerShard(bare_jid_, router_->shard_->shard_count()),
                       router::ClientBindRequest{id_, RecordJid()});
}

void RouterShard::ClientConnection::RouteAcknowledged() {
  bound_ = true;
  counted_as_client_ = true;
  Bump(router_->stats_->clients_connected);
  if (resuming_) {
    resuming_ = false;
    Bump(router_->stats_->sm_resumed);
    LogEvent(LogLevel::kInfo, "client_resumed",
             Concat("client=", full_jid_, " peer=", peer_ip_,
                    " resent=", std::to_string(sm_.pending_count()),
                    " shard=", std::to_string(router_->shard_->index())));
    absl::StatusOr<jid::Jid> jid = jid::Jid::Parse(full_jid_);
    if (!jid.ok()) {
      // Not resumed after all (the session goes back to waiting for a bind, with stream
      // management off): this side ends it too, so an <enable/> starts it afresh.
      ReturnUnacknowledged();
    }
    session_.ResumeDone(jid.ok() ? std::optional<jid::Jid>(*jid) : std::nullopt, sm_.received(),
                        resume_previd_);
    const xmpp::StanzaQueue pending = sm_.TakePending();
    for (const std::string& stanza : pending) SendStanza(stanza);
    return;
  }
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

void RouterShard::ClientConnection::OnAckRequested() { Send(sm_.Acknowledgement()); }

void RouterShard::ClientConnection::OnStanza(const xmpp::Stanza& stanza) {
  sm_.OnReceived(stanza.kind);
  Bump(router_->stats_->stanzas_received);
  router_->Route(*this, stanza);
}

void RouterShard::ClientConnection::OnStreamClosed(const xmpp::StreamError* error) {
  if (error != nullptr && !refused_no_certificate) Bump(router_->stats_->stream_errors);
  ShutdownTls();
  if (!closed_by_engine) router_->shard_->Close(id_);
}

}  // namespace stanzad::router
