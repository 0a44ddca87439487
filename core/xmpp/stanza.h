// Stanzas as the router sees them: the bytes of one top-level element plus its
// addressing, read with the start-tag scanner (no tree is built), and the
// stanza errors of RFC 6120 §8.3 that the router sends back.
#ifndef STANZAD_CORE_XMPP_STANZA_H_
#define STANZAD_CORE_XMPP_STANZA_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace stanzad::xml {
class Tokenizer;
}  // namespace stanzad::xml

namespace stanzad::xmpp {

enum class StanzaKind { kMessage, kPresence, kIq, kOther };

// A stanza's bytes and addressing. Attribute values are raw (as written, entity
// references not replaced). Views into the bytes the tokenizer returned: valid
// only as long as those.
struct Stanza {
  std::string_view bytes;
  std::string_view name;  // qualified element name
  StanzaKind kind = StanzaKind::kOther;
  std::optional<std::string_view> to;
  std::optional<std::string_view> from;
  std::optional<std::string_view> type;
  std::optional<std::string_view> id;
  std::optional<std::string_view> xmlns;  // an xmlns attribute on the stanza itself

  bool is_error() const { return type.has_value() && *type == "error"; }
};

// Reads the addressing of `element` (a complete element from the tokenizer).
Stanza InspectStanza(std::string_view element);

// Checks stanzas that arrive from another node before they are delivered, never
// trusting them: Check() says whether `bytes` is exactly one well-formed message,
// presence or iq within `stanza_bytes_max`, as the tokenizer would have returned it from
// a client or a bridge (RFC 6120 §11's restrictions included), and `why` not. One
// tokenizer reads a stream header once and each stanza as its next element (a stanza
// that fails costs a fresh tokenizer). Thread safety: none; one per thread.
class RelayedStanzaChecker {
 public:
  explicit RelayedStanzaChecker(size_t stanza_bytes_max);
  ~RelayedStanzaChecker();
  bool Check(std::string_view bytes, std::string* why);
  // The same, for a caller that inspected `bytes` already (InspectStanza(bytes).kind).
  bool Check(std::string_view bytes, StanzaKind kind, std::string* why);

 private:
  void Start();

  size_t stanza_bytes_max_;
  std::unique_ptr<xml::Tokenizer> tokenizer_;
};

// RFC 6120 §8.3.3 defined conditions.
enum class StanzaErrorCondition {
  kBadRequest,
  kConflict,
  kFeatureNotImplemented,
  kForbidden,
  kGone,
  kInternalServerError,
  kItemNotFound,
  kJidMalformed,
  kNotAcceptable,
  kNotAllowed,
  kNotAuthorized,
  kPolicyViolation,
  kRecipientUnavailable,
  kRedirect,
  kRegistrationRequired,
  kRemoteServerNotFound,
  kRemoteServerTimeout,
  kResourceConstraint,
  kServiceUnavailable,
  kSubscriptionRequired,
  kUndefinedCondition,
  kUnexpectedRequest,
};
inline constexpr int kStanzaErrorConditionCount =
    static_cast<int>(StanzaErrorCondition::kUnexpectedRequest) + 1;

// "service-unavailable", ...
std::string_view StanzaErrorConditionName(StanzaErrorCondition condition);
// The error type RFC 6120 §8.3.3 gives the condition: "cancel", "modify", "wait" or "auth".
std::string_view StanzaErrorDefaultType(StanzaErrorCondition condition);

// The error reply to `original`: same element name and id, `to` and `from`
// swapped (from defaults to `server_address` when the original had no `to`),
// type='error', and an <error/> child with the condition and optional text.
// REQUIRES: !original.is_error() (an error is never answered with an error).
std::string MakeErrorReply(const Stanza& original, StanzaErrorCondition condition,
                           std::string_view server_address, std::string_view text = "");

// A result IQ for `request` (from/to swapped, same id) with `payload` as its
// child ("" for an empty result).
std::string MakeIqResult(const Stanza& request, std::string_view server_address,
                         std::string_view payload = "");

}  // namespace stanzad::xmpp

#endif  // STANZAD_CORE_XMPP_STANZA_H_
