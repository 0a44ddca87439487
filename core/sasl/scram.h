// SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677): the server as a pure state machine,
// a client (for tests and stanza-bench), and the credentials the server stores.
//
// The server keeps per user and hash only salt, iteration count, StoredKey = H(ClientKey)
// and ServerKey (config::ScramSecret), never the password. An exchange is two client
// messages:
//
//   client-first   n,,n=user,r=<client nonce>
//   server-first   r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>
//   client-final   c=biws,r=<both nonces>,p=<base64 ClientProof>
//   server-final   v=<base64 ServerSignature>
//
// What ScramServer accepts, and what it answers otherwise (RFC 6120 §6.5 conditions):
//   - Messages of at most kScramMessageBytesMax bytes of UTF-8 without NUL, in the exact
//     grammar of RFC 5802 §7: attributes in their order, each once; usernames and authzids
//     with '=' and ',' escaped as "=3D" and "=2C" (and no other '='); nonces of printable
//     ASCII without ','; canonical base64. Anything else is malformed-request.
//   - gs2 flag 'n' or 'y'. We offer no SCRAM-*-PLUS mechanism, so 'y' (the client could
//     bind but believes we cannot) is correct, and 'p' (channel binding asked for in a
//     mechanism without it) is malformed-request.
//   - "m=" (a mandatory extension) is malformed-request: none is supported. Optional
//     extensions (another letter "=" value) are ignored.
//   - The username goes through SASLprep (saslprep.h, query mode) before the lookup.
//   - A wrong proof, a changed nonce or channel-binding header, an unknown user: all are
//     not-authorized, with a comparison in constant time. An unknown user (or one without
//     credentials for this hash) gets a complete exchange with a salt derived from the
//     username and a server secret, so a client cannot tell whether the user exists.
//   - An authzid is allowed only if the AuthorizationCheck says so, after the proof is
//     checked; otherwise invalid-authzid.
//
// Thread safety: ScramServer and ScramClient are single-threaded objects; the free
// functions may run on any thread.
#ifndef STANZAD_CORE_SASL_SCRAM_H_
#define STANZAD_CORE_SASL_SCRAM_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/config/config.h"
#include "core/sasl/sasl_server.h"

namespace stanzad::sasl {

enum class ScramMechanism { kSha1, kSha256 };

// "SCRAM-SHA-1" or "SCRAM-SHA-256", as in <mechanism/> and <auth mechanism='…'/>.
std::string_view ScramMechanismName(ScramMechanism mechanism);
// The inverse of ScramMechanismName; nullopt for any other text (including "-PLUS").
std::optional<ScramMechanism> ScramMechanismFromName(std::string_view name);
// Bytes of the hash, and so of StoredKey, ServerKey, proofs and signatures: 20 or 32.
size_t ScramKeyBytes(ScramMechanism mechanism);

// RFC 7677 §4: at least 4096. The iteration count MakeScramCredentials uses by default,
// and the one a server pretends an unknown user has.
inline constexpr uint32_t kScramIterationsDefault = 4096;
static_assert(kScramIterationsDefault >= config::kScramIterationsMin);

// Limits on what a peer sends. Messages longer than this are refused unread.
inline constexpr size_t kScramMessageBytesMax = 4096;
// A nonce from the peer, and our own; ours must be at least kScramNonceBytesMin.
inline constexpr size_t kScramNonceBytesMax = 512;
inline constexpr size_t kScramNonceBytesMin = 16;
// Random bytes for one nonce: 144 bits, 24 characters of base64.
inline constexpr size_t kScramNonceRandomBytes = 18;

// A nonce for ScramServer or ScramClient: the base64 of `random_bytes`, which the caller
// draws fresh from a cryptographic random source for each exchange (core has none).
// REQUIRES: random_bytes.size() >= 12 (so the nonce has at least 16 characters).
std::string MakeScramNonce(std::string_view random_bytes);

// The credentials a server stores for `password` (SASLprep'd in stored mode: code points
// unassigned in Unicode 3.2 are refused), with PBKDF2 over `salt` (8..128 bytes, random)
// and `iteration_count` (config::kScramIterationsMin..kScramIterationsMax).
// InvalidArgumentError for a password that SASLprep refuses or makes empty, or parameters
// out of bounds.
absl::StatusOr<config::ScramSecret> MakeScramCredentials(
    ScramMechanism mechanism, std::string_view password, std::string_view salt,
    uint32_t iteration_count = kScramIterationsDefault);

// The keys of an already SASLprep'd password: the work of MakeScramCredentials without
// its checks, for PLAIN verification and the client. Costs `iteration_count` HMACs.
// REQUIRES: iteration_count >= 1.
config::ScramSecret DeriveScramSecret(ScramMechanism mechanism, std::string_view prepared_password,
                                      std::string_view salt, uint32_t iteration_count);

// The server side of one SCRAM exchange.
class ScramServer {
 public:
  struct Params {
    ScramMechanism mechanism = ScramMechanism::kSha256;
    CredentialsLookup lookup;      // required
    AuthorizationCheck authorize;  // empty: no authzid is allowed
    // This exchange's part of the nonce: MakeScramNonce of fresh random bytes (tests may
    // fix it). kScramNonceBytesMin..kScramNonceBytesMax printable ASCII characters without
    // ','.
    std::string server_nonce;
    // A secret of the server (at least 16 bytes, the same on every node and across
    // restarts) from which the salt shown for an unknown user is derived, so that it is the
    // same every time that user is tried, as a real user's is.
    std::string unknown_user_salt_key;
  };

  // REQUIRES: params.lookup is set; server_nonce and unknown_user_salt_key as described.
  explicit ScramServer(Params params);

  ScramServer(const ScramServer&) = delete;
  ScramServer& operator=(const ScramServer&) = delete;
  ScramServer(ScramServer&&) noexcept = default;
  ScramServer& operator=(ScramServer&&) noexcept = default;

  // Handles the next client message: client-first (answered with a challenge holding
  // server-first), then client-final (answered with success holding server-final, or
  // failure). Once an exchange has succeeded or failed, any further message is a
  // failure too (malformed-request).
  SaslStep Step(std::string_view client_message);

  ScramMechanism mechanism() const { return params_.mechanism; }
  bool finished() const { return state_ == State::kFinished; }
  bool succeeded() const { return succeeded_; }
  // After success: the SASLprep'd username the client authenticated as, and the authzid
  // it asked for (unescaped; empty if none). Empty before.
  std::string_view username() const { return succeeded_ ? username_ : std::string_view(); }
  std::string_view authzid() const { return succeeded_ ? authzid_ : std::string_view(); }
  // The SASLprep'd username of a well-formed client-first message, authenticated or not:
  // for logs of failed attempts only.
  std::string_view claimed_username() const { return username_; }

 private:
  enum class State { kAwaitingClientFirst, kAwaitingClientFinal, kFinished };

  SaslStep HandleClientFirst(std::string_view message);
  SaslStep HandleClientFinal(std::string_view message);
  SaslStep Fail(SaslCondition condition, std::string reason);

  Params params_;
  State state_ = State::kAwaitingClientFirst;
  bool succeeded_ = false;
  bool user_known_ = false;
  std::string username_;
  std::string authzid_;
  std::string gs2_header_;         // e.g. "n,," as the client sent it
  std::string client_first_bare_;  // "n=…,r=…[,ext]"
  std::string server_first_;
  std::string nonce_;  // client nonce followed by server nonce
  config::ScramSecret secret_;
};

// The client side of one SCRAM exchange, without channel binding (gs2 flag 'n').
class ScramClient {
 public:
  struct Params {
    ScramMechanism mechanism = ScramMechanism::kSha256;
    std::string username;
    std::string password;
    std::string authzid;  // empty: none
    // kScramNonceBytesMin..kScramNonceBytesMax printable ASCII without ',': MakeScramNonce
    // of fresh random bytes (tests may fix it).
    std::string client_nonce;
    // The iteration counts the client accepts from the server. The maximum bounds the
    // work a hostile server can make the client do.
    uint32_t iteration_count_min = kScramIterationsDefault;
    uint32_t iteration_count_max = config::kScramIterationsMax;
  };

  // Prepares username and password with SASLprep (query mode). InvalidArgumentError if
  // either is refused or empty, or the nonce or authzid is not valid.
  static absl::StatusOr<ScramClient> Create(Params params);

  // The client-first message, e.g. "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL".
  const std::string& client_first() const { return client_first_; }

  // Checks the server-first message and returns client-final. InvalidArgumentError if the
  // server's message is malformed, does not extend our nonce, or asks for an iteration
  // count outside the bounds; FailedPreconditionError if called out of order.
  absl::StatusOr<std::string> HandleServerFirst(std::string_view server_first);

  // Checks server-final: OK only if it holds the ServerSignature that proves the server
  // knows our credentials. PermissionDeniedError for "e=…" (the server refused us),
  // UnauthenticatedError for a wrong signature, InvalidArgumentError if malformed,
  // FailedPreconditionError if called out of order.
  absl::Status HandleServerFinal(std::string_view server_final);

 private:
  enum class State { kAwaitingServerFirst, kAwaitingServerFinal, kFinished };

  ScramClient(Params params, std::string prepared_password, std::string client_first,
              size_t gs2_header_bytes);

  Params params_;
  std::string prepared_password_;
  std::string client_first_;
  size_t gs2_header_bytes_;
  State state_ = State::kAwaitingServerFirst;
  std::string expected_server_signature_;
};

}  // namespace stanzad::sasl

#endif  // STANZAD_CORE_SASL_SCRAM_H_
