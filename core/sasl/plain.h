// PLAIN (RFC 4616): the client sends [authzid] NUL authcid NUL passwd in one message, and
// the server checks the password against the SCRAM credentials it stores (scram.h), so
// that no plaintext password is ever stored. XMPP offers PLAIN only over TLS (RFC 6120
// §6.4.1, the session's business).
//
// What PlainServer accepts, and what it answers otherwise (RFC 6120 §6.5 conditions):
//   - Exactly two NUL bytes; a non-empty authcid and password; each field at most
//     kPlainFieldBytesMax bytes (RFC 4616 asks servers to take at least 255); all of it
//     well-formed UTF-8. Anything else is malformed-request.
//   - authcid and password go through SASLprep (saslprep.h, query mode); an authcid that
//     SASLprep refuses is malformed-request, a password it refuses is not-authorized.
//   - The password is checked by deriving the stored hash's keys from it with the stored
//     salt and iteration count (SCRAM-SHA-256 if the user has it, else SCRAM-SHA-1) and
//     comparing StoredKey in constant time. An unknown user costs a derivation too (SHA-256,
//     kScramIterationsDefault), so that the time taken does not readily tell whether the
//     user exists. Either way: not-authorized.
//   - An authzid is allowed only if the AuthorizationCheck says so, after the password is
//     checked; otherwise invalid-authzid.
//
// Cost: one PBKDF2 of the stored iteration count (about 1 ms at 4096), per attempt.
//
// Thread safety: PlainServer is a single-threaded object; ParsePlainMessage and
// PlainPasswordMatches may run on any thread.
#ifndef STANZAD_CORE_SASL_PLAIN_H_
#define STANZAD_CORE_SASL_PLAIN_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/config/config.h"
#include "core/sasl/sasl_server.h"

namespace stanzad::sasl {

inline constexpr size_t kPlainFieldBytesMax = 1023;
inline constexpr size_t kPlainMessageBytesMax = 3 * kPlainFieldBytesMax + 2;

// The three fields of a PLAIN message, as views into it, not yet prepared.
struct PlainMessage {
  std::string_view authzid;  // empty: none
  std::string_view authcid;
  std::string_view password;
};

// Splits `message` (RFC 4616 §2), or InvalidArgumentError saying what is wrong with it.
absl::StatusOr<PlainMessage> ParsePlainMessage(std::string_view message);

// True if `prepared_password` (SASLprep'd) is the password `credentials` were made from.
// Uses SCRAM-SHA-256 if present, else SCRAM-SHA-1. REQUIRES: credentials are valid
// (config::ValidateUserCredentials).
bool PlainPasswordMatches(const config::UserCredentials& credentials,
                          std::string_view prepared_password);

// The server side of one PLAIN exchange.
class PlainServer {
 public:
  struct Params {
    CredentialsLookup lookup;      // required
    AuthorizationCheck authorize;  // empty: no authzid is allowed
  };

  // REQUIRES: params.lookup is set.
  explicit PlainServer(Params params);

  PlainServer(const PlainServer&) = delete;
  PlainServer& operator=(const PlainServer&) = delete;
  PlainServer(PlainServer&&) noexcept = default;
  PlainServer& operator=(PlainServer&&) noexcept = default;

  // Handles the client's message: success (with no data) or failure. Any further message
  // is a failure (malformed-request).
  SaslStep Step(std::string_view client_message);

  bool finished() const { return finished_; }
  bool succeeded() const { return succeeded_; }
  // After success: the SASLprep'd authcid, and the authzid (empty if none). Empty before.
  std::string_view username() const { return succeeded_ ? username_ : std::string_view(); }
  std::string_view authzid() const { return succeeded_ ? authzid_ : std::string_view(); }
  // The SASLprep'd authcid of a well-formed message, authenticated or not: for logs.
  std::string_view claimed_username() const { return username_; }

 private:
  SaslStep Fail(SaslCondition condition, std::string reason);

  Params params_;
  bool finished_ = false;
  bool succeeded_ = false;
  std::string username_;
  std::string authzid_;
};

}  // namespace stanzad::sasl

#endif  // STANZAD_CORE_SASL_PLAIN_H_
