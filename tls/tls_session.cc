#include "tls/tls_session.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <arpa/inet.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/check.h"
#include "core/base/concat.h"
#include "tls/certificates.h"
#include "tls/wolfssl_util.h"

namespace stanzad::tls {
namespace {

using internal::Bytes;
using internal::CtxPtr;
using internal::WolfSslErrorText;

// AEAD suites with forward secrecy only. wolfSSL's defaults in Debian's build
// also allow static-RSA key exchange, CBC and anonymous suites.
constexpr char kCipherList[] =
    "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// How much of the peer's first bytes an error about a non-TLS peer quotes.
constexpr size_t kFirstBytesMax = 12;

// One wolfSSL_read takes at most one record's plaintext.
constexpr int kReadChunkBytes = 16 * 1024;

int Size(std::string_view text) {
  CHECK_LE(text.size(), static_cast<size_t>(INT_MAX));
  return static_cast<int>(text.size());
}

absl::StatusOr<CtxPtr> NewContext(TlsContext::Role role, TlsVersion max_version) {
  internal::EnsureWolfSslInitialized();
  WOLFSSL_METHOD* method = nullptr;
  if (role == TlsContext::Role::kServer) {
    method = max_version == TlsVersion::kTls12 ? wolfTLSv1_2_server_method()
                                               : wolfSSLv23_server_method();
  } else {
    method = max_version == TlsVersion::kTls12 ? wolfTLSv1_2_client_method()
                                               : wolfSSLv23_client_method();
  }
  CtxPtr ctx(method == nullptr ? nullptr : wolfSSL_CTX_new(method));
  if (ctx == nullptr) return absl::ResourceExhaustedError("TLS: cannot allocate a context");
  if (wolfSSL_CTX_SetMinVersion(ctx.get(), WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_set_cipher_list(ctx.get(), kCipherList) != WOLFSSL_SUCCESS) {
    return absl::InternalError("TLS: wolfSSL refused the protocol versions or cipher suites");
  }
  // Peers' keys: no RSA below 2048 bits, no elliptic curve below 256.
  if (wolfSSL_CTX_SetMinRsaKey_Sz(ctx.get(), 2048) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_SetMinEccKey_Sz(ctx.get(), 256) != WOLFSSL_SUCCESS) {
    return absl::InternalError("TLS: wolfSSL refused the minimum key sizes");
  }
  // TLS 1.3 key exchange: X25519 first (cheaper than P-256 in Debian's wolfSSL,
  // whose P-256 is generic big-number code; as cheap in stanzad's own build), then
  // the NIST curves peers may insist on. (wolfSSL applies groups to 1.3.)
  int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1};
  if (max_version == TlsVersion::kTls13 &&
      wolfSSL_CTX_set_groups(ctx.get(), groups, 3) != WOLFSSL_SUCCESS) {
    return absl::InternalError("TLS: wolfSSL refused the key exchange groups");
  }
  return ctx;
}

absl::Status UseCertificateAndKey(WOLFSSL_CTX* ctx, std::string_view cert_chain_pem,
                                  std::string_view key_pem) {
  int rc = wolfSSL_CTX_use_certificate_chain_buffer(ctx, Bytes(cert_chain_pem),
                                                    static_cast<long>(cert_chain_pem.size()));
  if (rc != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError(
        Concat("TLS: the certificate chain is not readable PEM: ", WolfSslErrorText(rc)));
  }
  rc = wolfSSL_CTX_use_PrivateKey_buffer(ctx, Bytes(key_pem), static_cast<long>(key_pem.size()),
                                         WOLFSSL_FILETYPE_PEM);
  if (rc != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError(
        Concat("TLS: the private key is not a readable PEM key: ", WolfSslErrorText(rc)));
  }
  // wolfSSL_CTX_check_private_key misses EC keys that do not match (5.5.4).
  if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS ||
      !CheckKeyMatchesCertificate(key_pem, cert_chain_pem).ok()) {
    return absl::InvalidArgumentError(
        "TLS: the private key does not match the certificate: use the key the certificate was "
        "issued for");
  }
  return absl::OkStatus();
}

absl::Status UseTrust(WOLFSSL_CTX* ctx, std::string_view trust_pem, int verify_mode) {
  if (trust_pem.empty()) {
    return absl::InvalidArgumentError("TLS: verifying peers needs at least one trusted root");
  }
  const int rc = wolfSSL_CTX_load_verify_buffer(
      ctx, Bytes(trust_pem), static_cast<long>(trust_pem.size()), WOLFSSL_FILETYPE_PEM);
  if (rc != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError(
        Concat("TLS: the trusted roots are not readable PEM certificates: ", WolfSslErrorText(rc)));
  }
  wolfSSL_CTX_set_verify(ctx, verify_mode, nullptr);
  return absl::OkStatus();
}

// Certificate problems named in words an operator can act on.
std::string_view CertificateProblem(int code) {
  switch (code) {
    case ASN_NO_SIGNER_E:
      return "the peer's certificate is not issued by a trusted CA";
    case ASN_SELF_SIGNED_E:
      return "the peer's certificate is self-signed and not trusted";
    case ASN_AFTER_DATE_E:
      return "the peer's certificate has expired";
    case ASN_BEFORE_DATE_E:
      return "the peer's certificate is not valid yet";
    case ASN_SIG_CONFIRM_E:
      return "the peer's certificate has a bad signature";
    case DOMAIN_NAME_MISMATCH:
      return "the peer's certificate does not cover the server name";
    case NO_PEER_CERT:
      return "the peer presented no certificate";
    case VERIFY_CERT_ERROR:
      return "the peer's certificate was rejected";
    default:
      return "";
  }
}

// `bytes` for a one-line message: printable ASCII as is, the rest as \xNN.
std::string Printable(std::string_view bytes) {
  std::string text;
  for (char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7F && c != '"' && c != '\\') {
      text.push_back(c);
    } else {
      absl::StrAppend(&text, "\\x", absl::Hex(byte, absl::kZeroPad2));
    }
  }
  return text;
}

}  // namespace

// --- TlsContext ---

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::Server(
    std::string_view cert_chain_pem, std::string_view key_pem, const TlsServerOptions& options) {
  absl::StatusOr<CtxPtr> ctx = NewContext(Role::kServer, options.max_version);
  if (!ctx.ok()) return ctx.status();
  absl::Status status = UseCertificateAndKey(ctx->get(), cert_chain_pem, key_pem);
  if (!status.ok()) return status;
  const bool verifies_peer = !options.client_trust_pem.empty();
  if (verifies_peer) {
    status = UseTrust(ctx->get(), options.client_trust_pem,
                      WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    if (!status.ok()) return status;
#ifndef NO_SESSION_CACHE
    // Mutual TLS resumes nothing: every link shows its certificate again. wolfSSL's
    // session-ID cache is one per process and its server side matches on the id
    // alone, so a session a client port made would otherwise resume here, with no
    // certificate to check (tickets' keys are per context, but off too).
    if (wolfSSL_CTX_set_session_cache_mode(ctx->get(), WOLFSSL_SESS_CACHE_OFF) != WOLFSSL_SUCCESS) {
      return absl::InternalError("TLS: wolfSSL refused to turn resumption off");
    }
#endif
#ifdef HAVE_SESSION_TICKET
    if (wolfSSL_CTX_NoTicketTLSv12(ctx->get()) != WOLFSSL_SUCCESS) {
      return absl::InternalError("TLS: wolfSSL refused to turn TLS 1.2 tickets off");
    }
#ifdef WOLFSSL_TLS13
    if (wolfSSL_CTX_no_ticket_TLSv13(ctx->get()) != 0) {  // 0 is success here
      return absl::InternalError("TLS: wolfSSL refused to turn TLS 1.3 tickets off");
    }
#endif
#endif
  } else {
    wolfSSL_CTX_set_verify(ctx->get(), WOLFSSL_VERIFY_NONE, nullptr);
  }
  return std::shared_ptr<const TlsContext>(
      new TlsContext(Role::kServer, verifies_peer, ctx->release()));
}

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::Client(
    std::string_view trust_pem, bool verify_peer, const TlsClientOptions& options) {
  absl::StatusOr<CtxPtr> ctx = NewContext(Role::kClient, options.max_version);
  if (!ctx.ok()) return ctx.status();
  if (verify_peer) {
    absl::Status status = UseTrust(ctx->get(), trust_pem, WOLFSSL_VERIFY_PEER);
    if (!status.ok()) return status;
  } else {
    wolfSSL_CTX_set_verify(ctx->get(), WOLFSSL_VERIFY_NONE, nullptr);
  }
  if (options.cert_chain_pem.empty() != options.key_pem.empty()) {
    return absl::InvalidArgumentError(
        "TLS: a client certificate needs both the certificate chain and its key");
  }
  if (!options.cert_chain_pem.empty()) {
    absl::Status status = UseCertificateAndKey(ctx->get(), options.cert_chain_pem, options.key_pem);
    if (!status.ok()) return status;
  }
  return std::shared_ptr<const TlsContext>(
      new TlsContext(Role::kClient, verify_peer, ctx->release()));
}

TlsContext::~TlsContext() { wolfSSL_CTX_free(ctx_); }

// --- TlsSession ---

absl::StatusOr<std::unique_ptr<TlsSession>> TlsSession::NewServer(
    std::shared_ptr<const TlsContext> context, const TlsSessionLimits& limits) {
  CHECK(context != nullptr);
  CHECK_MSG(context->role() == TlsContext::Role::kServer, "NewServer needs a server context");
  std::unique_ptr<TlsSession> session(new TlsSession(std::move(context), limits));
  absl::Status status = session->Init("");
  if (!status.ok()) return status;
  return session;
}

absl::StatusOr<std::unique_ptr<TlsSession>> TlsSession::NewClient(
    std::shared_ptr<const TlsContext> context, std::string_view server_name,
    const TlsSessionLimits& limits) {
  CHECK(context != nullptr);
  CHECK_MSG(context->role() == TlsContext::Role::kClient, "NewClient needs a client context");
  std::unique_ptr<TlsSession> session(new TlsSession(std::move(context), limits));
  absl::Status status = session->Init(server_name);
  if (!status.ok()) return status;
  return session;
}

TlsSession::TlsSession(std::shared_ptr<const TlsContext> context, const TlsSessionLimits& limits)
    : context_(std::move(context)), limits_(limits) {}

TlsSession::~TlsSession() {
  if (ssl_ != nullptr) wolfSSL_free(ssl_);
}

absl::Status TlsSession::Init(std::string_view server_name) {
  ssl_ = wolfSSL_new(context_->ctx_);
  if (ssl_ == nullptr) return absl::ResourceExhaustedError("TLS: cannot allocate a session");
  // Memory instead of a socket: wolfSSL reads what Feed stored, writes to output_.
  wolfSSL_SSLSetIORecv(ssl_, &ReceiveCallback);
  wolfSSL_SSLSetIOSend(ssl_, &SendCallback);
  wolfSSL_SetIOReadCtx(ssl_, this);
  wolfSSL_SetIOWriteCtx(ssl_, this);
  if (context_->role() == TlsContext::Role::kServer) return absl::OkStatus();

  server_name_ = std::string(server_name);
  if (!server_name_.empty()) {
    unsigned char address[16];
    const bool is_address = inet_pton(AF_INET, server_name_.c_str(), address) == 1 ||
                            inet_pton(AF_INET6, server_name_.c_str(), address) == 1;
    // SNI carries host names only (RFC 6066 §3); an address is still checked below.
    if (!is_address &&
        (server_name_.size() > UINT16_MAX ||
         wolfSSL_UseSNI(ssl_, WOLFSSL_SNI_HOST_NAME, server_name_.data(),
                        static_cast<unsigned short>(server_name_.size())) != WOLFSSL_SUCCESS)) {
      return absl::InvalidArgumentError(Concat("TLS: bad server name \"", server_name_, "\""));
    }
    if (context_->verifies_peer() &&
        wolfSSL_check_domain_name(ssl_, server_name_.c_str()) != WOLFSSL_SUCCESS) {
      return absl::InternalError("TLS: wolfSSL refused the server name check");
    }
  }
  return Advance();  // the client hello
}

int TlsSession::ReceiveCallback(WOLFSSL* /*ssl*/, char* buffer, int size, void* context) {
  auto* session = static_cast<TlsSession*>(context);
  const size_t available = session->input_.size() - session->input_begin_;
  if (available == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
  const size_t count = std::min(available, static_cast<size_t>(std::max(size, 0)));
  std::memcpy(buffer, session->input_.data() + session->input_begin_, count);
  session->input_begin_ += count;
  if (session->input_begin_ == session->input_.size()) {
    session->input_.clear();
    session->input_begin_ = 0;
  }
  return static_cast<int>(count);
}

int TlsSession::SendCallback(WOLFSSL* /*ssl*/, char* buffer, int size, void* context) {
  auto* session = static_cast<TlsSession*>(context);
  session->output_.append(buffer, static_cast<size_t>(std::max(size, 0)));
  return size;
}

absl::Status TlsSession::Feed(std::string_view ciphertext) {
  if (!error_.ok()) return error_;
  const size_t waiting = input_.size() - input_begin_;
  if (ciphertext.size() > limits_.input_bytes_max - std::min(waiting, limits_.input_bytes_max)) {
    return Fail(absl::ResourceExhaustedError(
        Concat("TLS: more than ", std::to_string(limits_.input_bytes_max),
               " bytes from the peer are waiting to be read")));
  }
  if (input_begin_ > 0) {
    input_.erase(0, input_begin_);
    input_begin_ = 0;
  }
  if (first_bytes_.size() < kFirstBytesMax) {
    first_bytes_.append(ciphertext.substr(0, kFirstBytesMax - first_bytes_.size()));
  }
  input_.append(ciphertext);
  return Advance();
}

absl::Status TlsSession::Advance() {
  if (handshake_done_) return absl::OkStatus();
  const int rc = wolfSSL_negotiate(ssl_);
  if (rc != WOLFSSL_SUCCESS) {
    const int code = wolfSSL_get_error(ssl_, rc);
    if (code == WOLFSSL_ERROR_WANT_READ || code == WOLFSSL_ERROR_WANT_WRITE) {
      return absl::OkStatus();
    }
    return FailWith(code);
  }
  handshake_done_ = true;
  // wolfSSL already frees them at this point unless told to keep them; saying
  // so here keeps that promise if a default changes. Safe for TLS 1.3: built
  // with WOLFSSL_POST_HANDSHAKE_AUTH (Debian's wolfSSL, not stanzad's own) it
  // keeps the transcript hash.
  wolfSSL_FreeHandshakeResources(ssl_);
  if (!early_plaintext_.empty()) {
    std::string early = std::move(early_plaintext_);
    early_plaintext_ = std::string();
    return Write(early);
  }
  return absl::OkStatus();
}

void TlsSession::ReleaseIdleMemory() {
  if (input_begin_ == input_.size()) {
    std::string().swap(input_);
    input_begin_ = 0;
  }
  if (output_.empty()) std::string().swap(output_);
  if (handshake_done_) std::string().swap(first_bytes_);
}

absl::Status TlsSession::Read(std::string* plaintext) {
  CHECK(plaintext != nullptr);
  if (!error_.ok()) return error_;
  if (!handshake_done_) {
    absl::Status status = Advance();
    if (!status.ok() || !handshake_done_) return status;
  }
  char chunk[kReadChunkBytes];
  while (!peer_closed_) {
    const int count = wolfSSL_read(ssl_, chunk, sizeof(chunk));
    if (count > 0) {
      plaintext->append(chunk, static_cast<size_t>(count));
      continue;
    }
    const int code = wolfSSL_get_error(ssl_, count);
    if (code == WOLFSSL_ERROR_WANT_READ || code == WOLFSSL_ERROR_WANT_WRITE) break;
    if (code == WOLFSSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      break;
    }
    return FailWith(code);
  }
  return absl::OkStatus();
}

absl::Status TlsSession::Write(std::string_view plaintext) {
  if (!error_.ok()) return error_;
  if (shut_down_) return absl::FailedPreconditionError("TLS: write after shutdown");
  if (!handshake_done_) {
    if (plaintext.size() > limits_.early_plaintext_bytes_max - early_plaintext_.size()) {
      return Fail(absl::ResourceExhaustedError(
          Concat("TLS: more than ", std::to_string(limits_.early_plaintext_bytes_max),
                 " bytes written before the handshake finished")));
    }
    early_plaintext_.append(plaintext);
    return absl::OkStatus();
  }
  while (!plaintext.empty()) {
    const std::string_view piece = plaintext.substr(0, kReadChunkBytes);
    const int count = wolfSSL_write(ssl_, piece.data(), Size(piece));
    if (count <= 0) return FailWith(wolfSSL_get_error(ssl_, count));
    plaintext.remove_prefix(static_cast<size_t>(count));
  }
  return absl::OkStatus();
}

void TlsSession::TakeOutput(std::string* ciphertext) {
  CHECK(ciphertext != nullptr);
  ciphertext->clear();
  ciphertext->swap(output_);
}

absl::Status TlsSession::Shutdown() {
  if (!error_.ok()) return error_;
  if (shut_down_) return absl::OkStatus();
  shut_down_ = true;
  early_plaintext_.clear();
  if (!handshake_done_) return absl::OkStatus();
  const int rc = wolfSSL_shutdown(ssl_);
  if (rc != WOLFSSL_SUCCESS && rc != WOLFSSL_SHUTDOWN_NOT_DONE) {
    return FailWith(wolfSSL_get_error(ssl_, rc));
  }
  return absl::OkStatus();
}

std::string_view TlsSession::protocol_version() const {
  if (!handshake_done_) return "";
  const char* version = wolfSSL_get_version(ssl_);
  return version == nullptr ? "" : version;
}

std::string_view TlsSession::cipher_suite() const {
  if (!handshake_done_) return "";
  const char* name = wolfSSL_get_cipher_name(ssl_);
  return name == nullptr ? "" : name;
}

std::string TlsSession::PeerCertificatePem() const {
  // A copy of the leaf the peer presented (kept by wolfSSL's KEEP_PEER_CERT;
  // not the whole chain, which would cost every session ~37 KB: SESSION_CERTS).
  internal::X509Ptr x509(wolfSSL_get_peer_certificate(ssl_));
  if (x509 == nullptr) return "";
  int der_size = 0;
  const unsigned char* der = wolfSSL_X509_get_der(x509.get(), &der_size);
  if (der == nullptr || der_size <= 0) return "";
  std::string pem(static_cast<size_t>(der_size) * 2 + 128, '\0');
  const int length =
      wc_DerToPem(der, static_cast<word32>(der_size), reinterpret_cast<unsigned char*>(pem.data()),
                  static_cast<word32>(pem.size()), CERT_TYPE);
  if (length <= 0) return "";
  pem.resize(static_cast<size_t>(length));
  return pem;
}

absl::Status TlsSession::Fail(absl::Status status) {
  CHECK(!status.ok());
  if (error_.ok()) error_ = std::move(status);
  early_plaintext_.clear();
  return error_;
}

absl::Status TlsSession::FailWith(int code) {
  wolfSSL_ERR_clear_error();  // wolfSSL's per-thread queue would otherwise grow
  const std::string_view stage = handshake_done_ ? "TLS" : "TLS handshake failed";
  if (code == FATAL_ERROR) {
    WOLFSSL_ALERT_HISTORY history;
    std::memset(&history, 0, sizeof(history));
    wolfSSL_get_alert_history(ssl_, &history);
    const char* alert = wolfSSL_alert_desc_string_long(history.last_rx.code);
    return Fail(absl::AbortedError(
        Concat(stage, ": the peer sent the alert \"", alert == nullptr ? "unknown" : alert, "\"")));
  }
  const std::string_view problem = CertificateProblem(code);
  if (!problem.empty()) {
    std::string text = Concat(stage, ": ", problem);
    if (code == DOMAIN_NAME_MISMATCH) text = Concat(text, " \"", server_name_, "\"");
    return Fail(absl::UnauthenticatedError(Concat(text, " (", WolfSslErrorText(code), ")")));
  }
  if (code == MEMORY_E) return Fail(absl::ResourceExhaustedError(Concat(stage, ": out of memory")));
  // A TLS peer's first record is a handshake (22) or an alert (21).
  if (!handshake_done_ && !first_bytes_.empty() && first_bytes_[0] != '\x16' &&
      first_bytes_[0] != '\x15') {
    return Fail(absl::InvalidArgumentError(
        Concat(stage, ": the peer does not speak TLS; it began with \"", Printable(first_bytes_),
               "\" (plain XMPP on a TLS port, or the wrong port?)")));
  }
  return Fail(absl::InvalidArgumentError(
      Concat(stage, ": the peer's bytes are not acceptable TLS: ", WolfSslErrorText(code))));
}

void ReleaseThreadCaches() {
#ifdef FP_ECC
  wc_ecc_fp_free();
#endif
}

}  // namespace stanzad::tls
