// XEP-0114 §3 handshake: the component proves it knows the shared secret by
// sending lowercase hex SHA-1(stream id ‖ secret).
#ifndef STANZAD_CORE_XMPP_COMPONENT_HANDSHAKE_H_
#define STANZAD_CORE_XMPP_COMPONENT_HANDSHAKE_H_

#include <string>
#include <string_view>

namespace stanzad::xmpp {

// Lowercase hex SHA-1 of stream_id followed by secret (40 characters).
std::string ComponentHandshakeDigest(std::string_view stream_id, std::string_view secret);

// Compares in time that depends only on the lengths (which are not secret).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace stanzad::xmpp

#endif  // STANZAD_CORE_XMPP_COMPONENT_HANDSHAKE_H_
