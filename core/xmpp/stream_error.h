// Stream-level error conditions of RFC 6120 §4.9.3.
//
// A stream error is fatal to the stream: the server sends
// <stream:error><CONDITION xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>
// and closes. The parts of stanzad that detect a problem return the condition
// as a value; the session turns it into bytes on the wire.
#ifndef STANZAD_CORE_XMPP_STREAM_ERROR_H_
#define STANZAD_CORE_XMPP_STREAM_ERROR_H_

#include <string>
#include <string_view>
#include <utility>

namespace stanzad::xmpp {

enum class StreamErrorCondition {
  kBadFormat,
  kBadNamespacePrefix,
  kConflict,
  kConnectionTimeout,
  kHostGone,
  kHostUnknown,
  kImproperAddressing,
  kInternalServerError,
  kInvalidFrom,
  kInvalidNamespace,
  kInvalidXml,
  kNotAuthorized,
  kNotWellFormed,
  kPolicyViolation,
  kRemoteConnectionFailed,
  kReset,
  kResourceConstraint,
  kRestrictedXml,
  kSeeOtherHost,
  kSystemShutdown,
  kUndefinedCondition,
  kUnsupportedEncoding,
  kUnsupportedFeature,
  kUnsupportedStanzaType,
  kUnsupportedVersion,
};

// The element name of the condition as RFC 6120 spells it, e.g. "not-well-formed".
std::string_view StreamErrorConditionName(StreamErrorCondition condition);

// A stream error: the condition plus a human-readable explanation, which is
// sent in <text/> and logged, and optionally an application-specific condition
// (RFC 6120 §4.9.4): one complete element, qualified by its own namespace,
// sent after <text/> (XEP-0198's <handled-count-too-high/>, for one).
struct StreamError {
  StreamError() = default;
  StreamError(StreamErrorCondition condition_in, std::string text_in,
              std::string application_condition_in = {})
      : condition(condition_in),
        text(std::move(text_in)),
        application_condition(std::move(application_condition_in)) {}

  StreamErrorCondition condition = StreamErrorCondition::kUndefinedCondition;
  std::string text;
  std::string application_condition;  // raw XML, or ""
};

// The complete <stream:error> element for `error`, with the text escaped.
// `stream_prefix` is the prefix the peer's stream header bound to
// http://etherx.jabber.org/streams (almost always "stream").
std::string SerializeStreamError(const StreamError& error,
                                 std::string_view stream_prefix = "stream");

// Ends a stream from the server's side, for the sessions' Close and
// CloseWithError: sends `error` if there is one, then </stream:stream>, through
// `delegate`, and tells it the stream is over (OnStreamClosed).
template <typename Delegate>
void EndStream(Delegate* delegate, const StreamError* error) {
  delegate->Send(error == nullptr ? std::string("</stream:stream>")
                                  : SerializeStreamError(*error) + "</stream:stream>");
  delegate->OnStreamClosed(error);
}

}  // namespace stanzad::xmpp

#endif  // STANZAD_CORE_XMPP_STREAM_ERROR_H_
