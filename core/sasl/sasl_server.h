// What the server side of every SASL mechanism shares: the result of one step of an
// exchange, the failure conditions of RFC 6120 §6.5, and the two questions a mechanism
// asks its caller (who is this user, and may they act for that authzid).
//
// A mechanism object (ScramServer, PlainServer) is a pure state machine: it is handed each
// client message, already base64-decoded by the XMPP session (RFC 6120 §6.4.2), and
// answers with a SaslStep. It never does I/O; the caller sends the bytes.
//
//   SaslStep step = mechanism.Step(decoded_client_message);
//   switch (step.kind) {
//     case SaslStep::Kind::kChallenge:  send <challenge>base64(step.data)</challenge>
//     case SaslStep::Kind::kSuccess:    send <success>base64(step.data)</success>
//     case SaslStep::Kind::kFailure:    send <failure><CONDITION/></failure>; log step.reason
//   }
#ifndef STANZAD_CORE_SASL_SASL_SERVER_H_
#define STANZAD_CORE_SASL_SASL_SERVER_H_

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/config/config.h"

namespace stanzad::sasl {

// The SASL failure conditions of RFC 6120 §6.5.
enum class SaslCondition {
  kAborted,
  kAccountDisabled,
  kCredentialsExpired,
  kEncryptionRequired,
  kIncorrectEncoding,
  kInvalidAuthzid,
  kInvalidMechanism,
  kMalformedRequest,
  kMechanismTooWeak,
  kNotAuthorized,
  kTemporaryAuthFailure,
};

// The element name RFC 6120 gives the condition, e.g. "not-authorized".
std::string_view SaslConditionName(SaslCondition condition);

// The server's answer to one client message.
struct SaslStep {
  enum class Kind {
    kChallenge,  // send `data` in <challenge/>; the exchange goes on
    kSuccess,    // send `data` in <success/> (empty for PLAIN); the client is authenticated
    kFailure,    // send <failure/> with `condition`; the exchange is over
  };

  static SaslStep Challenge(std::string data) {
    return SaslStep{Kind::kChallenge, std::move(data), SaslCondition::kNotAuthorized, {}};
  }
  static SaslStep Success(std::string data) {
    return SaslStep{Kind::kSuccess, std::move(data), SaslCondition::kNotAuthorized, {}};
  }
  static SaslStep Failure(SaslCondition condition, std::string reason) {
    return SaslStep{Kind::kFailure, {}, condition, std::move(reason)};
  }

  Kind kind;
  std::string data;
  SaslCondition condition;  // only for kFailure
  // Only for kFailure: why, in a sentence for the server's log. It may name what the
  // client sent wrong, but never says whether a user exists: it is not for the peer.
  std::string reason;
};

// Returns the stored credentials of `username` (a SASLprep'd name, as the client gave it:
// the callee maps it to its own key, e.g. a canonical JID localpart), or nullopt if there
// is no such user. A user without credentials for the mechanism in use is treated as
// unknown. Called at most once per exchange, from the thread that calls Step.
using CredentialsLookup =
    std::function<std::optional<config::UserCredentials>(std::string_view username)>;

// Whether the authenticated `username` may act as `authzid` (non-empty, valid UTF-8, as
// the client sent it). XMPP servers typically allow only the user's own bare JID (RFC 6120
// §6.3.8). An empty function allows no authzid.
using AuthorizationCheck = std::function<bool(std::string_view username, std::string_view authzid)>;

}  // namespace stanzad::sasl

#endif  // STANZAD_CORE_SASL_SASL_SERVER_H_
