// The connections of a RouterShard, for router_shard.cc and
// client_connection.cc only: a common base (what the router asks of every
// connection) and one class per kind of peer.
//
// Thread safety: each runs on its shard's thread only.
#ifndef STANZAD_ROUTER_ROUTER_CONNECTION_H_
#define STANZAD_ROUTER_ROUTER_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/xmpp/client_session.h"
#include "core/xmpp/component_session.h"
#include "core/xmpp/stream_management.h"
#include "router/router_shard.h"
#include "tls/tls_session.h"

namespace stanzad::router {

// 16 hex characters from the kernel's CSPRNG.
std::string NewStreamId();
// `count` bytes from the kernel's CSPRNG.
std::string RandomBytes(size_t count);

inline void Bump(std::atomic<uint64_t>& counter, uint64_t by = 1) {
  counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}
inline void Drop(std::atomic<uint64_t>& counter) {
  counter.store(counter.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

class RouterShard::Connection {
 public:
  Connection(RouterShard* router, ConnectionId id, std::string peer_ip, uint64_t now_ms)
      : router_(router),
        id_(id),
        peer_ip_(std::move(peer_ip)),
        accepted_ms_(now_ms),
        last_activity_ms_(now_ms) {}
  virtual ~Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Bytes read from the socket.
  virtual void OnBytes(std::string_view bytes) = 0;
  // Stanzas may be delivered to it (a bridge authenticated, a client bound).
  virtual bool Routable() const = 0;
  // Done with authentication (and bind): the pre-auth deadline is over.
  virtual bool Established() const = 0;
  // Queues a stanza routed to this peer; false, with *why_not, if it cannot.
  virtual bool Deliver(std::string_view stanza, xmpp::StanzaErrorCondition* why_not) = 0;
  // Bytes the server itself sends (error replies, answers).
  virtual void SendReply(std::string_view bytes) = 0;
  virtual void CloseWithError(xmpp::StreamErrorCondition condition, std::string text) = 0;
  // The connection is gone: give up its routes. Called once, from DestroyIfDead.
  virtual void Release() = 0;
  // Closes it if the new configuration no longer allows it (returns true then).
  virtual bool CloseIfRemoved(const RouterConfig& config) = 0;
  // For log lines: "bridge=cb1.example.com", "client=juliet@example.com/x", or "".
  virtual std::string Describe() const = 0;
  // Gives back the memory of buffers an idle connection does not need.
  virtual void ReleaseIdleMemory();
  // The engine closed the connection (closed_by_engine is set).
  virtual void OnEngineClosed() {}
  // Kept after the engine closed it: a client session waiting to be resumed,
  // or one forwarding to the connection that resumed it.
  virtual bool Lingers() const { return false; }
  // On ticks: true once a lingering connection is done (it is then destroyed).
  virtual bool LingerExpired(uint64_t /*now_ms*/) { return true; }

  ConnectionId id() const { return id_; }
  const std::string& peer_ip() const { return peer_ip_; }
  uint64_t accepted_ms() const { return accepted_ms_; }
  uint64_t last_activity_ms() const { return last_activity_ms_; }
  void set_last_activity_ms(uint64_t now_ms) { last_activity_ms_ = now_ms; }

  uint64_t backed_up_since_ms = 0;
  uint64_t memory_released_ms = 0;  // when ReleaseIdleMemory last ran
  int pending_route_acks = 0;       // shards that have not yet applied this connection's route
  bool closed_by_engine = false;
  int calls_in_progress = 0;
  // Counted in its address's pre-auth connections (RouterShard::AdmitPreauth).
  bool counted_preauth = false;
  // A STARTTLS client taken only to be told that there is no certificate yet: counted
  // as refused, and its stream error is the answer, not a problem of this node.
  bool refused_no_certificate = false;

 protected:
  // TLS (server side, the certificate of RouterConfig::client_tls) over this
  // connection's bytes (router/connection_tls.cc).
  // Creates the TLS session; false (logged, connection aborted) if it cannot.
  bool BeginTls();
  // Feeds ciphertext read from the peer; what it decrypts is in plaintext_.
  // Calls OnTlsUp() when the handshake completes. False once TLS has failed
  // (logged, the alert sent, the connection closing): read nothing more.
  bool ReadTls(std::string_view ciphertext);
  // Sends what TLS has for the peer; false if it did not fit (the connection is aborted).
  bool FlushTls();
  // A TLS error: logged, the alert sent, the connection closed.
  void FailTls(const absl::Status& status);
  // Bytes for the peer: through TLS once it is on, as they are before.
  void SendBytes(std::string_view bytes);
  // Sends close_notify if TLS is up.
  void ShutdownTls();
  virtual void OnTlsUp() {}
  // Would `bytes` fit in the connection's queue (TLS overhead included)?
  bool Fits(size_t bytes) const;

  RouterShard* const router_;
  const ConnectionId id_;
  const std::string peer_ip_;
  const uint64_t accepted_ms_;
  uint64_t last_activity_ms_;
  std::unique_ptr<tls::TlsSession> tls_;
  bool tls_up_ = false;      // handshake done
  bool tls_failed_ = false;  // no more bytes through TLS
  std::string plaintext_;    // reused: what TLS decrypted
  std::string ciphertext_;   // reused: what TLS has for the peer
};

// A call bridge (XEP-0114).
class RouterShard::ComponentConnection final : public RouterShard::Connection,
                                               public xmpp::ComponentSession::Delegate {
 public:
  // `tls`: the bridge speaks TLS from the first byte (--component_tls).
  ComponentConnection(RouterShard* router, ConnectionId id, std::string peer_ip, uint64_t now_ms,
                      bool tls);

  xmpp::ComponentSession& session() { return session_; }
  const std::string& bound_address() const { return bound_address_; }

  // Connection.
  void OnBytes(std::string_view bytes) override;
  bool Routable() const override;
  bool Established() const override;
  bool Deliver(std::string_view stanza, xmpp::StanzaErrorCondition* why_not) override;
  void SendReply(std::string_view bytes) override { Send(bytes); }
  void CloseWithError(xmpp::StreamErrorCondition condition, std::string text) override;
  void Release() override;
  bool CloseIfRemoved(const RouterConfig& config) override;
  std::string Describe() const override;

  // ComponentSession::Delegate.
  std::optional<std::string> SecretFor(std::string_view address) override;
  void Send(std::string_view bytes) override;
  void OnAuthenticated(std::string_view address) override;
  void OnAuthenticationFailed(std::string_view address,
                              xmpp::StreamErrorCondition condition) override;
  std::optional<std::string> RefuseAuthentication() override;
  void OnStanza(const xmpp::Stanza& stanza) override;
  void OnStreamClosed(const xmpp::StreamError* error) override;

 private:
  std::string bound_address_;
  xmpp::ComponentSession session_;
};

// A client (RFC 6120): plaintext until STARTTLS (or TLS from the first byte on
// the direct-TLS port), then every byte through its TlsSession.
class RouterShard::ClientConnection final : public RouterShard::Connection,
                                            public xmpp::ClientSession::Delegate {
 public:
  ClientConnection(RouterShard* router, ConnectionId id, std::string peer_ip, uint64_t now_ms,
                   bool direct_tls);

  xmpp::ClientSession& session() { return session_; }
  // Canonical "user@domain/resource" once a bind was asked for; "" before.
  const std::string& full_jid() const { return full_jid_; }
  const std::string& bare_jid() const { return bare_jid_; }
  // The bind this connection asked for is in every shard's routes.
  void RouteAcknowledged();
  void BindRefused();

  // Connection.
  void OnBytes(std::string_view bytes) override;
  bool Routable() const override;
  bool Established() const override;
  bool Deliver(std::string_view stanza, xmpp::StanzaErrorCondition* why_not) override;
  // Counted by stream management: the client counts every stanza it gets.
  void SendReply(std::string_view bytes) override;
  void CloseWithError(xmpp::StreamErrorCondition condition, std::string text) override;
  void Release() override;
  bool CloseIfRemoved(const RouterConfig& config) override;
  std::string Describe() const override;

  void OnEngineClosed() override;
  bool Lingers() const override { return sm_.detached() || moved_to_ != kNoConnection; }
  bool LingerExpired(uint64_t now_ms) override;

  // Stream management (XEP-0198, its protocol in xmpp::StreamManagement),
  // driven by RouterShard::OnMessage / OnTick.
  // On the shard holding a session: hands it to `to`, the connection that
  // resumed it, if `token` and `account` are this session's and `h` is
  // plausible; a stream still open here ends with conflict. False (nothing
  // changed) otherwise.
  bool HandOver(ConnectionId to, std::string_view token, std::string_view account, uint32_t h);
  // On the resuming connection's shard: the answers to RequestResume.
  void ResumeFailed();
  void ResumeStanza(std::string_view stanza);
  void ResumeAccepted(std::string_view full_jid, uint32_t handled_inbound);
  // Asks the client for an acknowledgement when one is due.
  void TickStreamManagement(uint64_t now_ms);

  // ClientSession::Delegate.
  void Send(std::string_view bytes) override;
  std::string RandomBytes(size_t count) override;
  void StartTls() override;
  std::optional<config::UserCredentials> CredentialsFor(std::string_view username) override;
  void OnAuthentication(std::string_view username, bool ok, std::string_view condition) override;
  std::optional<std::string> RefuseAuthentication() override;
  void RequestBind(const jid::Jid& full_jid) override;
  void ReleaseIdleMemory() override;
  std::string EnableStreamManagement(bool resume) override;
  void OnAcknowledged(uint32_t h) override;
  void OnAckRequested() override;
  void RequestResume(std::string_view previd, uint32_t h) override;
  void OnStanza(const xmpp::Stanza& stanza) override;
  void OnStreamClosed(const xmpp::StreamError* error) override;

 private:
  static xmpp::ClientSession::Options SessionOptions(const RouterShard& router, bool direct_tls);
  void OnTlsUp() override;
  // The account of a SASL username (canonical localpart), or "" if it cannot be one.
  std::string AccountOf(std::string_view username) const;
  // full_jid_ as the records carry it (a view into it).
  // REQUIRES: a bind was asked for (RequestBind, ResumeAccepted).
  router::FullJid RecordJid() const;
  // Sends a routed stanza; with stream management, counts it, keeps a copy
  // until the client acknowledges it, and asks for acknowledgements.
  void SendStanza(std::string_view stanza);
  // The session ends for good: every stanza not acknowledged (or waiting) is
  // answered to its sender, and the resumption token is given up.
  void ReturnUnacknowledged();

  static xmpp::StreamManagement::Options StreamManagementOptions(const RouterShard& router);

  xmpp::StreamManagement sm_;
  ConnectionId moved_to_ = kNoConnection;  // resumed there: forward to it
  uint64_t moved_at_ms_ = 0;
  // This connection resumes an earlier session:
  bool resuming_ = false;
  bool resume_accepted_ = false;
  std::string resume_previd_;
  uint32_t resume_h_ = 0;  // the client's count, from <resume h/>

  const bool direct_tls_;
  bool bind_requested_ = false;
  bool bound_ = false;
  bool counted_as_client_ = false;
  std::string account_;   // the canonical localpart once authenticated
  std::string bare_jid_;  // user@domain once a bind was asked for
  std::string full_jid_;
  xmpp::ClientSession session_;
};

}  // namespace stanzad::router

#endif  // STANZAD_ROUTER_ROUTER_CONNECTION_H_
