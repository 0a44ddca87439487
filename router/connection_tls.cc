// RouterShard::Connection's TLS layer, shared by clients and (with
// --component_tls) call bridges.
#include "core/base/concat.h"
#include "core/base/log.h"
#include "router/router_connection.h"

namespace stanzad::router {
namespace {

// Room for a TLS record's header, padding and tag around one stanza.
constexpr size_t kTlsRecordOverhead = 64;

}  // namespace

bool RouterShard::Connection::BeginTls() {
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

bool RouterShard::Connection::ReadTls(std::string_view ciphertext) {
  absl::Status status = tls_->Feed(ciphertext);
  plaintext_.clear();
  if (status.ok()) status = tls_->Read(&plaintext_);
  if (!FlushTls()) return false;
  if (!status.ok()) {
    FailTls(status);
    return false;
  }
  if (!tls_up_ && tls_->handshake_done()) {
    tls_up_ = true;
    Bump(router_->stats_->tls_handshakes_ok);
    OnTlsUp();
  }
  return true;
}

bool RouterShard::Connection::FlushTls() {
  if (tls_ == nullptr || !tls_->has_output()) return true;
  tls_->TakeOutput(&ciphertext_);
  if (closed_by_engine) return false;
  if (!router_->shard_->Send(id_, ciphertext_)) {
    // Our own bytes do not fit: the peer is not reading. Give up on it.
    tls_failed_ = true;
    router_->shard_->Abort(id_);
    return false;
  }
  return true;
}

void RouterShard::Connection::FailTls(const absl::Status& status) {
  tls_failed_ = true;
  if (!tls_up_) Bump(router_->stats_->tls_handshakes_failed);
  const std::string who = Describe();
  LogEvent(LogLevel::kWarning, tls_up_ ? "tls_error" : "tls_handshake_failed",
           Concat("peer=", peer_ip_, who.empty() ? "" : " ", who,
                  " reason=", LogQuote(std::string(status.message()))));
  if (!closed_by_engine) router_->shard_->Close(id_);  // after the alert, if any
}

void RouterShard::Connection::SendBytes(std::string_view bytes) {
  if (closed_by_engine || tls_failed_) return;
  if (tls_ == nullptr) {
    // Our own protocol bytes that do not fit: the peer is not reading. Give up on it.
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

void RouterShard::Connection::ShutdownTls() {
  if (tls_ == nullptr || !tls_up_ || tls_failed_) return;
  (void)tls_->Shutdown();  // close_notify; a failure here changes nothing
  FlushTls();
}

void RouterShard::Connection::ReleaseIdleMemory() {
  std::string().swap(plaintext_);
  std::string().swap(ciphertext_);
  if (tls_ != nullptr) tls_->ReleaseIdleMemory();
}

bool RouterShard::Connection::Fits(size_t bytes) const {
  // Checked before encrypting: a record the queue refused would break the TLS stream.
  const size_t overhead = tls_ == nullptr ? 0 : kTlsRecordOverhead;
  return router_->shard_->QueuedBytes(id_) + bytes + overhead <= router_->limits_.queue_bytes_max;
}

}  // namespace stanzad::router
