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

// The reply to a stanza addressed to an account of ours, `bare_jid`, that the
// server answers on the account's behalf (RFC 6120 §10.5.3.3: an IQ to a bare
// JID; a client's IQ without `to`). `own_account`: the sender is that
// account's client, so a jabber:iq:roster get is answered, with an empty
// roster (stanzad keeps no roster yet). XEP-0199 ping gets a result;
// anything else that expects an answer, service-unavailable.
std::optional<std::string> AnswerAccountStanza(const xmpp::Stanza& stanza,
                                               std::string_view bare_jid, bool own_account);

// The error for an IQ that no entity will take: addressed to an account that
// does not exist (RFC 6121 §8.5.1) or to a full JID with no such resource
// (§8.5.3.2.3). service-unavailable for a request (get, set, or no valid
// type); nullopt for a result or an error, which are never answered (RFC 6120
// §8.2.3, §8.3.1).
std::optional<xmpp::StanzaErrorCondition> UndeliverableIqError(const xmpp::Stanza& iq);

// RFC 6121 §8.5.1 ("No Such User"): what becomes of `stanza` when it is
// addressed to a JID of our domain, bare or full, whose localpart is not a
// configured user. "Not configured" means absent from the replicated
// configuration, never "no resource on this node". Returns the condition of
// the stanza error to send back, or nullopt when the stanza is ignored:
//   IQ                          → UndeliverableIqError()
//   message, any type but error → service-unavailable (§8.5.1 allows ignoring
//                                 it; an error leaves the sender a trace)
//   message error               → ignored (RFC 6120 §8.3.1)
//   presence, any type          → ignored (§8.5.1: MUST/SHOULD silently ignore;
//                                 a probe may be ignored too)
// The errors carry no text and match those for a full JID of an account that
// exists but has no resource (§8.5.3.2), so that nobody can tell the two apart
// by full JIDs and harvest the names of accounts. (A bare JID tells them apart
// by design: the server answers some IQs for an account that exists.)
std::optional<xmpp::StanzaErrorCondition> NoSuchUserError(const xmpp::Stanza& stanza);

// The <priority/> of an available presence (RFC 6121 §4.7.2.3): -128..127, 0
// when absent or not a number in range.
int PresencePriority(std::string_view presence);

}  // namespace stanzad::router

#endif  // STANZAD_CORE_ROUTER_SERVER_RESPONDER_H_
