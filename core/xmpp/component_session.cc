#include "core/xmpp/component_session.h"

#include <algorithm>
#include <utility>

#include "core/base/concat.h"
#include "core/xml/escape.h"
#include "core/xml/start_tag.h"
#include "core/xmpp/component_handshake.h"

namespace stanzad::xmpp {
namespace {

bool EqualsIgnoringAsciiCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// The domainpart of a JID's text (RFC 7622 §3.1: the resource starts at the
// first '/', the localpart ends at the last '@' before it), without one
// trailing dot.
std::string_view DomainOf(std::string_view jid) {
  const size_t slash = jid.find('/');
  std::string_view bare = jid.substr(0, slash);
  const size_t at = bare.find('@');
  std::string_view domain = at == std::string_view::npos ? bare : bare.substr(at + 1);
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  return domain;
}

}  // namespace

ComponentSession::ComponentSession(Delegate* delegate, std::string stream_id,
                                   const xml::TokenizerLimits& limits)
    : delegate_(delegate), stream_id_(std::move(stream_id)), tokenizer_(limits) {}

void ComponentSession::OnBytes(std::string_view bytes) {
  if (state_ == State::kClosed) return;
  tokenizer_.Feed(bytes);
  while (state_ != State::kClosed) {
    const xml::Token token = tokenizer_.Next();
    switch (token.type) {
      case xml::TokenType::kNeedMoreData:
        return;
      case xml::TokenType::kStreamHeader:
        HandleHeader();
        break;
      case xml::TokenType::kElement:
        HandleElement(token);
        break;
      case xml::TokenType::kStreamEnd:
        Close();
        return;
      case xml::TokenType::kError: {
        const StreamError error = tokenizer_.error();
        CloseWithError(error.condition, error.text);
        return;
      }
    }
  }
}

void ComponentSession::SendHeaderIfNeeded() {
  if (header_sent_) return;
  header_sent_ = true;
  std::string header =
      "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' "
      "xmlns='jabber:component:accept' id='";
  header.append(stream_id_).append("'");
  if (!component_address_.empty()) {
    header.append(" from='");
    xml::AppendEscaped(component_address_, &header);
    header.append("'");
  }
  header.append(">");
  delegate_->Send(header);
}

void ComponentSession::HandleHeader() {
  const xml::StreamHeader& header = tokenizer_.header();
  const std::string* content_namespace = header.FindNamespace("");
  if (content_namespace == nullptr || *content_namespace != kComponentNamespace) {
    CloseWithError(StreamErrorCondition::kInvalidNamespace,
                   "a component stream must use the namespace jabber:component:accept");
    return;
  }
  const std::string* to = header.Find("to");
  if (to == nullptr || to->empty()) {
    CloseWithError(StreamErrorCondition::kHostUnknown,
                   "the stream header must name the component in 'to'");
    return;
  }
  std::string address = *to;
  for (char& c : address) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (!address.empty() && address.back() == '.') address.pop_back();
  if (std::optional<std::string> refusal = delegate_->RefuseAuthentication()) {
    CloseWithError(StreamErrorCondition::kPolicyViolation, std::move(*refusal));
    return;
  }
  std::optional<std::string> secret = delegate_->SecretFor(address);
  if (!secret) {
    delegate_->OnAuthenticationFailed(address, StreamErrorCondition::kHostUnknown);
    CloseWithError(StreamErrorCondition::kHostUnknown,
                   Concat("no call bridge is configured for ", address));
    return;
  }
  component_address_ = std::move(address);
  secret_ = std::move(*secret);
  tokenizer_.ReleaseHeaderAttributes();  // read; `header` refers to them no more
  state_ = State::kAwaitingHandshake;
  SendHeaderIfNeeded();
}

void ComponentSession::HandleElement(const xml::Token& token) {
  if (state_ == State::kAwaitingHandshake) {
    HandleHandshake(token.bytes);
  } else if (state_ == State::kAuthenticated) {
    HandleStanza(token.bytes);
  }
}

void ComponentSession::HandleHandshake(std::string_view element) {
  if (xml::ElementName(element) != "handshake") {
    CloseWithError(StreamErrorCondition::kNotAuthorized,
                   "the component must send <handshake/> before any stanza");
    return;
  }
  if (std::optional<std::string> refusal = delegate_->RefuseAuthentication()) {
    CloseWithError(StreamErrorCondition::kPolicyViolation, std::move(*refusal));
    return;
  }
  // <handshake>DIGEST</handshake>, possibly with attributes; an empty
  // element has no digest.
  std::string_view digest;
  const size_t content_start = element.find('>');
  if (content_start != std::string_view::npos && element[content_start - 1] != '/') {
    const size_t content_end = element.rfind("</");
    if (content_end != std::string_view::npos && content_end > content_start) {
      digest = element.substr(content_start + 1, content_end - content_start - 1);
    }
  }
  const std::string expected = ComponentHandshakeDigest(stream_id_, secret_);
  if (!ConstantTimeEquals(digest, expected)) {
    delegate_->OnAuthenticationFailed(component_address_, StreamErrorCondition::kNotAuthorized);
    CloseWithError(
        StreamErrorCondition::kNotAuthorized,
        Concat("handshake does not match the secret configured for ", component_address_));
    return;
  }
  // The secret is not needed again: do not keep it in memory.
  std::fill(secret_.begin(), secret_.end(), '\0');
  std::string().swap(secret_);  // its memory too: held for as long as the bridge stays
  state_ = State::kAuthenticated;
  delegate_->OnAuthenticated(component_address_);
}

bool ComponentSession::FromIsValid(std::string_view raw_from) const {
  std::string_view domain = DomainOf(raw_from);
  if (raw_from.find('&') != std::string_view::npos) {
    std::optional<std::string> from = xml::Unescape(raw_from);
    return from && EqualsIgnoringAsciiCase(DomainOf(*from), component_address_);
  }
  return EqualsIgnoringAsciiCase(domain, component_address_);
}

void ComponentSession::HandleStanza(std::string_view element) {
  const Stanza stanza = InspectStanza(element);
  if (stanza.kind == StanzaKind::kOther) {
    CloseWithError(StreamErrorCondition::kUnsupportedStanzaType,
                   Concat("<", stanza.name, "> is not a stanza (message, presence or iq)"));
    return;
  }
  if (stanza.xmlns && *stanza.xmlns != kComponentNamespace && *stanza.xmlns != "jabber:client") {
    CloseWithError(StreamErrorCondition::kInvalidNamespace,
                   Concat("stanza in namespace ", *stanza.xmlns));
    return;
  }
  if (!stanza.from || !FromIsValid(*stanza.from)) {
    CloseWithError(StreamErrorCondition::kInvalidFrom, Concat("stanzas from ", component_address_,
                                                              " must have a 'from' in its domain"));
    return;
  }
  if (!stanza.to || DomainOf(*stanza.to).empty()) {
    if (!stanza.is_error()) {
      delegate_->Send(MakeErrorReply(stanza, StanzaErrorCondition::kJidMalformed,
                                     component_address_, "missing or malformed 'to'"));
    }
    return;
  }
  delegate_->OnStanza(stanza);
}

void ComponentSession::AcknowledgeHandshake() {
  if (state_ != State::kAuthenticated || handshake_acknowledged_) return;
  handshake_acknowledged_ = true;
  delegate_->Send("<handshake/>");
}

void ComponentSession::CloseWithError(StreamErrorCondition condition, std::string text) {
  if (state_ == State::kClosed) return;
  SendHeaderIfNeeded();
  state_ = State::kClosed;
  const StreamError error{condition, std::move(text)};
  EndStream(delegate_, &error);
}

void ComponentSession::Close() {
  if (state_ == State::kClosed) return;
  SendHeaderIfNeeded();
  state_ = State::kClosed;
  EndStream(delegate_, nullptr);
}

}  // namespace stanzad::xmpp
