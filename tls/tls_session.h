// TLS over memory buffers: wolfSSL driven through custom IO callbacks, so that
// the engine (io_uring) stays the only code that touches sockets.
//
// A TlsContext holds what every connection of one role shares: the server's
// certificate chain and key, or a client's trust roots. Build one per role at
// start-up and share it (std::shared_ptr) between all sessions and shards.
//
// A TlsSession is one connection's TLS endpoint, as a state machine:
//
//   session->Feed(bytes_from_socket);     // ciphertext in; advances the handshake
//   session->Read(&plaintext);            // the application bytes it carried
//   session->Write("<stream:stream ...>"); // plaintext out (queued until the handshake is done)
//   session->TakeOutput(&ciphertext);     // what to send to the peer, in order
//
// Every call advances the handshake as far as the fed bytes allow; nothing
// blocks. After any call the caller sends what TakeOutput() returns. A
// failure is final: the call returns it, error() keeps it, and TakeOutput()
// may still hold an alert for the peer; send it, then close the connection.
// Bad input from the peer is such an error, never a crash.
//
// Protocol: TLS 1.2 and 1.3 only, AEAD cipher suites with forward secrecy.
//
// Thread safety: a TlsContext is immutable after creation and may be shared by
// all threads. A TlsSession belongs to one connection on one thread.
#ifndef STANZAD_TLS_TLS_SESSION_H_
#define STANZAD_TLS_TLS_SESSION_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct WOLFSSL_CTX;
struct WOLFSSL;

namespace stanzad::tls {

enum class TlsVersion { kTls12, kTls13 };

struct TlsServerOptions {
  // Non-empty: mutual TLS (cluster links). Every client must present a
  // certificate that chains to one of these PEM roots, or the handshake fails;
  // such a context resumes no session. Other server contexts resume sessions by
  // ticket (keys per context) or by id (one cache per process, shared by them).
  std::string_view client_trust_pem;
  TlsVersion max_version = TlsVersion::kTls13;
};

struct TlsClientOptions {
  // Presented when the server asks for a client certificate (mutual TLS).
  // Both or neither; the chain is PEM, leaf first.
  std::string_view cert_chain_pem;
  std::string_view key_pem;
  TlsVersion max_version = TlsVersion::kTls13;
};

class TlsContext {
 public:
  enum class Role { kServer, kClient };

  // A server's context. `cert_chain_pem`: the certificate, then the
  // intermediates that issued it (leaf first); `key_pem`: its private key.
  // Fails with a clear message if either does not parse or they do not match
  // (certificates.h explains such problems in more detail).
  static absl::StatusOr<std::shared_ptr<const TlsContext>> Server(
      std::string_view cert_chain_pem, std::string_view key_pem,
      const TlsServerOptions& options = {});

  // A client's context. With `verify_peer`, the server's certificate must chain
  // to one of the PEM roots in `trust_pem` (which must then hold at least one)
  // and cover the server name given to TlsSession::NewClient. Without it any
  // certificate is accepted: for tests and labs only.
  static absl::StatusOr<std::shared_ptr<const TlsContext>> Client(
      std::string_view trust_pem, bool verify_peer, const TlsClientOptions& options = {});

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  Role role() const { return role_; }
  bool verifies_peer() const { return verifies_peer_; }

 private:
  friend class TlsSession;
  TlsContext(Role role, bool verifies_peer, WOLFSSL_CTX* ctx)
      : role_(role), verifies_peer_(verifies_peer), ctx_(ctx) {}

  const Role role_;
  const bool verifies_peer_;
  WOLFSSL_CTX* const ctx_;  // owned
};

struct TlsSessionLimits {
  // Ciphertext fed but not yet taken by TLS. One record is at most ~16.7 KiB;
  // a caller that reads after every Feed holds at most one recv buffer more.
  size_t input_bytes_max = 256 * 1024;
  // Plaintext written before the handshake is done, waiting for it.
  size_t early_plaintext_bytes_max = 64 * 1024;
};

// Frees what wolfSSL keeps per thread (this build's fixed-point ECC tables, which
// handshakes fill): call at the end of a thread that ran TLS, or its memory leaks when
// the thread exits.
void ReleaseThreadCaches();

class TlsSession {
 public:
  // A server session; it waits for the client's hello.
  // REQUIRES: context->role() == kServer.
  static absl::StatusOr<std::unique_ptr<TlsSession>> NewServer(
      std::shared_ptr<const TlsContext> context, const TlsSessionLimits& limits = {});

  // A client session; its hello is in TakeOutput() at once. `server_name` is
  // sent as SNI and, if the context verifies peers, is the name that the
  // server's certificate must cover (empty: no SNI, no name check).
  // REQUIRES: context->role() == kClient.
  static absl::StatusOr<std::unique_ptr<TlsSession>> NewClient(
      std::shared_ptr<const TlsContext> context, std::string_view server_name,
      const TlsSessionLimits& limits = {});

  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Takes ciphertext read from the peer and advances the handshake. Fails
  // (ResourceExhausted) if more than limits.input_bytes_max would wait unread.
  absl::Status Feed(std::string_view ciphertext);

  // Appends to *plaintext the application data that the fed ciphertext
  // carries. Returns OK with nothing appended when more bytes are needed, or
  // once the peer has closed (peer_closed()).
  absl::Status Read(std::string* plaintext);

  // Encrypts `plaintext` for the peer. Before the handshake is done it waits
  // (up to limits.early_plaintext_bytes_max) and is sent as soon as it is.
  absl::Status Write(std::string_view plaintext);

  // Replaces *ciphertext with the bytes to send to the peer, in order, and
  // clears them here. The two strings swap buffers, so a caller that reuses
  // its string does not allocate in steady state.
  void TakeOutput(std::string* ciphertext);
  bool has_output() const { return !output_.empty(); }

  // Sends close_notify (in TakeOutput()); later Writes fail. The caller may
  // close the connection once that is sent: waiting for the peer's reply is
  // not required (RFC 8446 §6.1).
  absl::Status Shutdown();

  // Gives back the memory of buffers that hold nothing now (for an idle
  // connection: thousands of them should cost little). No effect on state.
  void ReleaseIdleMemory();

  bool handshake_done() const { return handshake_done_; }
  // The peer sent close_notify: it will send nothing more.
  bool peer_closed() const { return peer_closed_; }
  // OK, or the error that ended the session.
  const absl::Status& error() const { return error_; }

  // After the handshake: "TLSv1.2" or "TLSv1.3", and the cipher suite's name.
  std::string_view protocol_version() const;
  std::string_view cipher_suite() const;
  // The certificate the peer presented (PEM), or "" if none.
  std::string PeerCertificatePem() const;

 private:
  TlsSession(std::shared_ptr<const TlsContext> context, const TlsSessionLimits& limits);
  absl::Status Init(std::string_view server_name);
  // Runs the handshake as far as it goes; flushes early plaintext when done.
  absl::Status Advance();
  // Makes `status` the session's final error and returns it.
  absl::Status Fail(absl::Status status);
  // Fails with wolfSSL's error `code`, explained.
  absl::Status FailWith(int code);

  static int ReceiveCallback(WOLFSSL* ssl, char* buffer, int size, void* context);
  static int SendCallback(WOLFSSL* ssl, char* buffer, int size, void* context);

  const std::shared_ptr<const TlsContext> context_;
  const TlsSessionLimits limits_;
  WOLFSSL* ssl_ = nullptr;  // owned
  std::string server_name_;
  std::string first_bytes_;  // the peer's first few bytes, to explain a non-TLS peer

  std::string input_;            // fed ciphertext; bytes before input_begin_ are taken
  size_t input_begin_ = 0;       // first byte TLS has not taken
  std::string output_;           // ciphertext for the peer
  std::string early_plaintext_;  // written before the handshake was done

  bool handshake_done_ = false;
  bool peer_closed_ = false;
  bool shut_down_ = false;
  absl::Status error_;
};

}  // namespace stanzad::tls

#endif  // STANZAD_TLS_TLS_SESSION_H_
