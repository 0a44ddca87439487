#include "core/xmpp/stanza.h"

#include "core/base/check.h"
#include "core/xml/escape.h"
#include "core/xml/start_tag.h"
#include "core/xml/tokenizer.h"

namespace stanzad::xmpp {
namespace {

// Appends ` name='value'` with `raw_value` (as written in some input, either
// quote style) re-escaped for single quotes.
void AppendAttribute(std::string* out, std::string_view name, std::string_view raw_value) {
  out->append(" ").append(name).append("='");
  if (raw_value.find_first_of("&'\"<>") == std::string_view::npos) {
    out->append(raw_value);
  } else if (std::optional<std::string> value = xml::Unescape(raw_value)) {
    xml::AppendEscaped(*value, out);
  } else {
    xml::AppendEscaped(raw_value, out);
  }
  out->push_back('\'');
}

void AppendReplyStart(std::string* out, const Stanza& original, std::string_view server_address,
                      std::string_view type) {
  out->append("<").append(original.name);
  AppendAttribute(out, "from", original.to.value_or(server_address));
  if (original.from) AppendAttribute(out, "to", *original.from);
  AppendAttribute(out, "type", type);
  if (original.id) AppendAttribute(out, "id", *original.id);
}

}  // namespace

Stanza InspectStanza(std::string_view element) {
  Stanza stanza;
  stanza.bytes = element;
  stanza.name = xml::ElementName(element);
  if (stanza.name == "message") {
    stanza.kind = StanzaKind::kMessage;
  } else if (stanza.name == "presence") {
    stanza.kind = StanzaKind::kPresence;
  } else if (stanza.name == "iq") {
    stanza.kind = StanzaKind::kIq;
  }
  xml::ForEachAttribute(element, [&](std::string_view name, std::string_view value) {
    if (name == "to") {
      stanza.to = value;
    } else if (name == "from") {
      stanza.from = value;
    } else if (name == "type") {
      stanza.type = value;
    } else if (name == "id") {
      stanza.id = value;
    } else if (name == "xmlns") {
      stanza.xmlns = value;
    }
    return true;
  });
  return stanza;
}

std::string_view StanzaErrorConditionName(StanzaErrorCondition condition) {
  using C = StanzaErrorCondition;
  switch (condition) {
    case C::kBadRequest:
      return "bad-request";
    case C::kConflict:
      return "conflict";
    case C::kFeatureNotImplemented:
      return "feature-not-implemented";
    case C::kForbidden:
      return "forbidden";
    case C::kGone:
      return "gone";
    case C::kInternalServerError:
      return "internal-server-error";
    case C::kItemNotFound:
      return "item-not-found";
    case C::kJidMalformed:
      return "jid-malformed";
    case C::kNotAcceptable:
      return "not-acceptable";
    case C::kNotAllowed:
      return "not-allowed";
    case C::kNotAuthorized:
      return "not-authorized";
    case C::kPolicyViolation:
      return "policy-violation";
    case C::kRecipientUnavailable:
      return "recipient-unavailable";
    case C::kRedirect:
      return "redirect";
    case C::kRegistrationRequired:
      return "registration-required";
    case C::kRemoteServerNotFound:
      return "remote-server-not-found";
    case C::kRemoteServerTimeout:
      return "remote-server-timeout";
    case C::kResourceConstraint:
      return "resource-constraint";
    case C::kServiceUnavailable:
      return "service-unavailable";
    case C::kSubscriptionRequired:
      return "subscription-required";
    case C::kUndefinedCondition:
      return "undefined-condition";
    case C::kUnexpectedRequest:
      return "unexpected-request";
  }
  return "undefined-condition";
}

std::string_view StanzaErrorDefaultType(StanzaErrorCondition condition) {
  using C = StanzaErrorCondition;
  switch (condition) {
    case C::kBadRequest:
    case C::kJidMalformed:
    case C::kNotAcceptable:
    case C::kPolicyViolation:
    case C::kRedirect:
      return "modify";
    case C::kForbidden:
    case C::kNotAuthorized:
    case C::kRegistrationRequired:
    case C::kSubscriptionRequired:
      return "auth";
    case C::kRecipientUnavailable:
    case C::kRemoteServerTimeout:
    case C::kResourceConstraint:
    case C::kUnexpectedRequest:
      return "wait";
    default:
      return "cancel";
  }
}

std::string MakeErrorReply(const Stanza& original, StanzaErrorCondition condition,
                           std::string_view server_address, std::string_view text) {
  CHECK(!original.is_error());
  std::string out;
  out.reserve(256 + text.size());
  AppendReplyStart(&out, original, server_address, "error");
  out.append("><error type='").append(StanzaErrorDefaultType(condition)).append("'><");
  out.append(StanzaErrorConditionName(condition));
  out.append(" xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
  if (!text.empty()) {
    out.append("<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>");
    xml::AppendEscaped(text, &out);
    out.append("</text>");
  }
  out.append("</error></").append(original.name).append(">");
  return out;
}

std::string MakeIqResult(const Stanza& request, std::string_view server_address,
                         std::string_view payload) {
  std::string out;
  out.reserve(160 + payload.size());
  AppendReplyStart(&out, request, server_address, "result");
  if (payload.empty()) {
    out.append("/>");
  } else {
    out.append(">").append(payload).append("</iq>");
  }
  return out;
}

namespace {

// The stream header every session's tokenizer sees first; relayed stanzas come after it.
constexpr std::string_view kRelayStreamHeader =
    "<stream:stream xmlns='jabber:component:accept' "
    "xmlns:stream='http://etherx.jabber.org/streams'>";

}  // namespace

RelayedStanzaChecker::RelayedStanzaChecker(size_t stanza_bytes_max)
    : stanza_bytes_max_(stanza_bytes_max) {
  Start();
}

RelayedStanzaChecker::~RelayedStanzaChecker() = default;

void RelayedStanzaChecker::Start() {
  xml::TokenizerLimits limits;
  limits.stanza_bytes_max = stanza_bytes_max_;
  tokenizer_ = std::make_unique<xml::Tokenizer>(limits);
  tokenizer_->Feed(kRelayStreamHeader);
  CHECK(tokenizer_->Next().type == xml::TokenType::kStreamHeader);
  CHECK(tokenizer_->Next().type == xml::TokenType::kNeedMoreData);
}

bool RelayedStanzaChecker::Check(std::string_view bytes, std::string* why) {
  return Check(bytes, InspectStanza(bytes).kind, why);
}

bool RelayedStanzaChecker::Check(std::string_view bytes, StanzaKind kind, std::string* why) {
  tokenizer_->Feed(bytes);
  const xml::Token first = tokenizer_->Next();
  bool ok = false;
  if (first.type == xml::TokenType::kError) {
    *why = std::string(StreamErrorConditionName(tokenizer_->error().condition));
  } else if (first.type != xml::TokenType::kElement || first.bytes.size() != bytes.size()) {
    *why = "not exactly one complete element";
  } else if (kind == StanzaKind::kOther) {  // first.bytes is all of `bytes`
    *why = "not a message, presence or iq";
  } else if (tokenizer_->Next().type != xml::TokenType::kNeedMoreData) {
    *why = "bytes after the element";
  } else {
    ok = true;
  }
  if (!ok) Start();  // whatever it left half-read goes with it
  return ok;
}

}  // namespace stanzad::xmpp
