// The connections of a RouterShard, for router_shard.cc and
// client_connection.cc only: a common base (what the router asks of every
// connection) and one class per kind of peer.
//
// Thread safety: each runs on its shard's thread only.
#ifndef STANZAD_NET_ROUTER_CONNECTION_H_
#define STANZAD_NET_ROUTER_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/xmpp/client_session.h"
#include "core/xmpp/component_session.h"
#include "net/router_shard.h"
#include "tls/tls_session.h"

namespace stanzad::net {

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

  ConnectionId id() const { return id_; }
  const std::string& peer_ip() const { return peer_ip_; }
  uint64_t accepted_ms() const { return accepted_ms_; }
  uint64_t last_activity_ms() const { return last_activity_ms_; }
  void set_last_activity_ms(uint64_t now_ms) { last_activity_ms_ = now_ms; }

  uint64_t backed_up_since_ms = 0;
  int pending_route_acks = 0;  // shards that have not yet applied this connection's route
  bool closed_by_engine = false;
  int calls_in_progress = 0;

 protected:
  RouterShard* const router_;
  const ConnectionId id_;
  const std::string peer_ip_;
  const uint64_t accepted_ms_;
  uint64_t last_activity_ms_;
};

// A call bridge (XEP-0114).
class RouterShard::ComponentConnection final : public RouterShard::Connection,
                                               public xmpp::ComponentSession::Delegate {
 public:
  ComponentConnection(RouterShard* router, ConnectionId id, std::string peer_ip, uint64_t now_ms);

  xmpp::ComponentSession& session() { return session_; }
  const std::string& bound_address() const { return bound_address_; }

  // Connection.
  void OnBytes(std::string_view bytes) override { session_.OnBytes(bytes); }
  bool Routable() const override;
  bool Established() const override;
  bool Deliver(std::string_view stanza, xmpp::StanzaErrorCondition* why_not) override;
  void SendReply(std::string_view bytes) override { Send(bytes); }
  void CloseWithError(xmpp::StreamErrorCondition condition, std::string text) override {
    session_.CloseWithError(condition, std::move(text));
  }
  void Release() override;
  bool CloseIfRemoved(const RouterConfig& config) override;
  std::string Describe() const override;

  // ComponentSession::Delegate.
  std::optional<std::string> SecretFor(std::string_view address) override;
  void Send(std::string_view bytes) override;
  void OnAuthenticated(std::string_view address) override;
  void OnAuthenticationFailed(std::string_view address,
                              xmpp::StreamErrorCondition condition) override;
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
  void SendReply(std::string_view bytes) override { Send(bytes); }
  void CloseWithError(xmpp::StreamErrorCondition condition, std::string text) override;
  void Release() override;
  bool CloseIfRemoved(const RouterConfig& config) override;
  std::string Describe() const override;

  // ClientSession::Delegate.
  void Send(std::string_view bytes) override;
  std::string RandomBytes(size_t count) override;
  void StartTls() override;
  std::optional<config::UserCredentials> CredentialsFor(std::string_view username) override;
  void OnAuthentication(std::string_view username, bool ok, std::string_view condition) override;
  void RequestBind(const jid::Jid& full_jid) override;
  void OnStanza(const xmpp::Stanza& stanza) override;
  void OnStreamClosed(const xmpp::StreamError* error) override;

 private:
  static xmpp::ClientSession::Options SessionOptions(const RouterShard& router, bool direct_tls);
  // Creates the TLS session (server side); false if it cannot (logged, closed).
  bool BeginTls();
  // Sends what TLS has for the peer; false if it did not fit (the connection is aborted).
  bool FlushTls();
  // A TLS error: logged, the alert sent, the connection closed.
  void FailTls(const absl::Status& status);
  // The account of a SASL username (canonical localpart), or "" if it cannot be one.
  std::string AccountOf(std::string_view username) const;

  const bool direct_tls_;
  std::unique_ptr<tls::TlsSession> tls_;
  bool tls_up_ = false;      // handshake done
  bool tls_failed_ = false;  // no more bytes through TLS
  bool bind_requested_ = false;
  bool bound_ = false;
  bool counted_as_client_ = false;
  std::string account_;   // the canonical localpart once authenticated
  std::string bare_jid_;  // user@domain once a bind was asked for
  std::string full_jid_;
  std::string plaintext_;   // reused: what TLS decrypted
  std::string ciphertext_;  // reused: what TLS has for the peer
  xmpp::ClientSession session_;
};

}  // namespace stanzad::net

#endif  // STANZAD_NET_ROUTER_CONNECTION_H_
