#include "core/router/server_responder.h"

#include "core/base/decimal.h"
#include "core/xml/start_tag.h"

namespace stanzad::router {

std::string_view FirstChildNamespace(std::string_view element) {
  const size_t start_tag_end = element.find('>');
  if (start_tag_end == std::string_view::npos || element[start_tag_end - 1] == '/') return {};
  const size_t child = element.find('<', start_tag_end);
  if (child == std::string_view::npos || child + 1 >= element.size() || element[child + 1] == '/') {
    return {};
  }
  return xml::FindRawAttribute(element.substr(child), "xmlns").value_or(std::string_view());
}

std::optional<std::string> AnswerServerStanza(const xmpp::Stanza& stanza,
                                              std::string_view server_domain) {
  using xmpp::StanzaErrorCondition;
  using xmpp::StanzaKind;
  if (stanza.is_error()) return std::nullopt;
  switch (stanza.kind) {
    case StanzaKind::kPresence:
      return std::nullopt;
    case StanzaKind::kMessage:
      return xmpp::MakeErrorReply(stanza, StanzaErrorCondition::kServiceUnavailable, server_domain,
                                  "the server does not accept messages");
    case StanzaKind::kIq: {
      const std::string_view type = stanza.type.value_or("");
      if (type == "result") return std::nullopt;
      if (type != "get" && type != "set") {
        return xmpp::MakeErrorReply(stanza, StanzaErrorCondition::kBadRequest, server_domain,
                                    "iq type must be get, set, result or error");
      }
      const std::string_view ns = FirstChildNamespace(stanza.bytes);
      if (type == "get" && ns == "urn:xmpp:ping") {
        return xmpp::MakeIqResult(stanza, server_domain);
      }
      if (type == "get" && ns == "http://jabber.org/protocol/disco#info") {
        return xmpp::MakeIqResult(stanza, server_domain,
                                  "<query xmlns='http://jabber.org/protocol/disco#info'>"
                                  "<identity category='server' type='im' name='stanzad'/>"
                                  "<feature var='http://jabber.org/protocol/disco#info'/>"
                                  "<feature var='urn:xmpp:ping'/></query>");
      }
      return xmpp::MakeErrorReply(stanza, StanzaErrorCondition::kServiceUnavailable, server_domain);
    }
    case StanzaKind::kOther:
      return std::nullopt;
  }
  return std::nullopt;
}

std::optional<std::string> AnswerAccountStanza(const xmpp::Stanza& stanza,
                                               std::string_view bare_jid, bool own_account) {
  using xmpp::StanzaErrorCondition;
  if (stanza.is_error() || stanza.kind != xmpp::StanzaKind::kIq) return std::nullopt;
  const std::string_view type = stanza.type.value_or("");
  if (type == "result") return std::nullopt;
  if (type != "get" && type != "set") {
    return xmpp::MakeErrorReply(stanza, StanzaErrorCondition::kBadRequest, bare_jid,
                                "iq type must be get, set, result or error");
  }
  const std::string_view ns = FirstChildNamespace(stanza.bytes);
  if (type == "get" && ns == "urn:xmpp:ping") return xmpp::MakeIqResult(stanza, bare_jid);
  if (own_account && ns == "jabber:iq:roster") {
    if (type == "get") {
      return xmpp::MakeIqResult(stanza, bare_jid, "<query xmlns='jabber:iq:roster'/>");
    }
    return xmpp::MakeErrorReply(stanza, StanzaErrorCondition::kServiceUnavailable, bare_jid,
                                "this server keeps no roster yet");
  }
  return xmpp::MakeErrorReply(stanza, StanzaErrorCondition::kServiceUnavailable, bare_jid);
}

std::optional<xmpp::StanzaErrorCondition> UndeliverableIqError(const xmpp::Stanza& iq) {
  if (iq.is_error() || iq.type == "result") return std::nullopt;
  return xmpp::StanzaErrorCondition::kServiceUnavailable;
}

std::optional<xmpp::StanzaErrorCondition> NoSuchUserError(const xmpp::Stanza& stanza) {
  switch (stanza.kind) {
    case xmpp::StanzaKind::kIq:
      return UndeliverableIqError(stanza);
    case xmpp::StanzaKind::kMessage:
      // Normal, chat, headline, groupchat, and an unknown type (read as normal,
      // RFC 6121 §5.2.2) alike.
      if (stanza.is_error()) return std::nullopt;
      return xmpp::StanzaErrorCondition::kServiceUnavailable;
    case xmpp::StanzaKind::kPresence:
    case xmpp::StanzaKind::kOther:
      return std::nullopt;
  }
  return std::nullopt;
}

int PresencePriority(std::string_view presence) {
  const size_t open = presence.find("<priority>");
  if (open == std::string_view::npos) return 0;
  const size_t begin = open + 10;
  const size_t end = presence.find("</priority>", begin);
  if (end == std::string_view::npos || end == begin || end - begin > 4) return 0;
  std::string_view text = presence.substr(begin, end - begin);
  bool negative = false;
  if (text.front() == '-' || text.front() == '+') {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  const std::optional<uint32_t> magnitude = ParseDecimal<uint32_t>(text);  // at most 4 digits
  if (!magnitude) return 0;
  const int value = negative ? -static_cast<int>(*magnitude) : static_cast<int>(*magnitude);
  return value < -128 || value > 127 ? 0 : value;
}

}  // namespace stanzad::router
