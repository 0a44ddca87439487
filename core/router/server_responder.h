// Answers stanzas addressed to the server's own domain: XEP-0199 ping,
// XEP-0030 disco#info; anything else that expects an answer gets
// service-unavailable. Pure: returns the reply bytes, or nothing.
#ifndef STANZAD_CORE_ROUTER_SERVER_RESPONDER_H_
#define STANZAD_CORE_ROUTER_SERVER_RESPONDER_H_

#include <optional>
#include <string>
#include <string_view>

#include "core/xmpp/stanza.h"

namespace stanzad::router {

// The namespace of the first child element of `element` ("" if none).
std::string_view FirstChildNamespace(std::string_view element);

// The reply to `stanza`, sent to the server domain `server_domain`, or nullopt
// when none is due (results and errors, presence).
std::optional<std::string> AnswerServerStanza(const xmpp::Stanza& stanza,
                                              std::string_view server_domain);

}  // namespace stanzad::router

#endif  // STANZAD_CORE_ROUTER_SERVER_RESPONDER_H_
