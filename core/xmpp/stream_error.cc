#include "core/xmpp/stream_error.h"

#include "core/xml/escape.h"

namespace stanzad::xmpp {

std::string_view StreamErrorConditionName(StreamErrorCondition condition) {
  switch (condition) {
    case StreamErrorCondition::kBadFormat:
      return "bad-format";
    case StreamErrorCondition::kBadNamespacePrefix:
      return "bad-namespace-prefix";
    case StreamErrorCondition::kConflict:
      return "conflict";
    case StreamErrorCondition::kConnectionTimeout:
      return "connection-timeout";
    case StreamErrorCondition::kHostGone:
      return "host-gone";
    case StreamErrorCondition::kHostUnknown:
      return "host-unknown";
    case StreamErrorCondition::kImproperAddressing:
      return "improper-addressing";
    case StreamErrorCondition::kInternalServerError:
      return "internal-server-error";
    case StreamErrorCondition::kInvalidFrom:
      return "invalid-from";
    case StreamErrorCondition::kInvalidNamespace:
      return "invalid-namespace";
    case StreamErrorCondition::kInvalidXml:
      return "invalid-xml";
    case StreamErrorCondition::kNotAuthorized:
      return "not-authorized";
    case StreamErrorCondition::kNotWellFormed:
      return "not-well-formed";
    case StreamErrorCondition::kPolicyViolation:
      return "policy-violation";
    case StreamErrorCondition::kRemoteConnectionFailed:
      return "remote-connection-failed";
    case StreamErrorCondition::kReset:
      return "reset";
    case StreamErrorCondition::kResourceConstraint:
      return "resource-constraint";
    case StreamErrorCondition::kRestrictedXml:
      return "restricted-xml";
    case StreamErrorCondition::kSeeOtherHost:
      return "see-other-host";
    case StreamErrorCondition::kSystemShutdown:
      return "system-shutdown";
    case StreamErrorCondition::kUndefinedCondition:
      return "undefined-condition";
    case StreamErrorCondition::kUnsupportedEncoding:
      return "unsupported-encoding";
    case StreamErrorCondition::kUnsupportedFeature:
      return "unsupported-feature";
    case StreamErrorCondition::kUnsupportedStanzaType:
      return "unsupported-stanza-type";
    case StreamErrorCondition::kUnsupportedVersion:
      return "unsupported-version";
  }
  return "undefined-condition";
}

std::string SerializeStreamError(const StreamError& error, std::string_view stream_prefix) {
  std::string out;
  out.reserve(160 + error.text.size() + error.application_condition.size());
  out.append("<").append(stream_prefix).append(":error><");
  out.append(StreamErrorConditionName(error.condition));
  out.append(" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
  if (!error.text.empty()) {
    out.append("<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>");
    xml::AppendEscaped(error.text, &out);
    out.append("</text>");
  }
  out.append(error.application_condition);
  out.append("</").append(stream_prefix).append(":error>");
  return out;
}

}  // namespace stanzad::xmpp
