// Base64 (RFC 4648 §4, the standard alphabet with '=' padding), as SASL uses it: SCRAM's
// salt, proofs and verifiers (RFC 5802 §7), and the XMPP encoding of every SASL message
// (RFC 6120 §6.4.2).
//
// Base64Decode is strict, for bytes from the network: it accepts exactly the strings that
// Base64Encode produces. So there is one encoding per value, and no leniency an attacker
// could use to make two parties read one message differently: no whitespace, no missing
// or extra padding, no characters outside the alphabet, and no set bits in the unused low
// bits of the last character.
//
//   std::string text = Base64Encode("pencil");          // "cGVuY2ls"
//   std::optional<std::string> bytes = Base64Decode(text);
//
// Thread safety: pure functions.
#ifndef STANZAD_CORE_SASL_BASE64_H_
#define STANZAD_CORE_SASL_BASE64_H_

#include <optional>
#include <string>
#include <string_view>

namespace stanzad::sasl {

std::string Base64Encode(std::string_view bytes);

// The bytes `text` encodes, or nullopt if it is not a canonical encoding. The empty
// string decodes to no bytes.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace stanzad::sasl

#endif  // STANZAD_CORE_SASL_BASE64_H_
