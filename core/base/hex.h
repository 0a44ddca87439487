// Hexadecimal text for bytes and back: the one encoder of the code base (keys, tokens,
// digests in logs and files).
#ifndef STANZAD_CORE_BASE_HEX_H_
#define STANZAD_CORE_BASE_HEX_H_

#include <optional>
#include <string>
#include <string_view>

namespace stanzad {

// Two lowercase hex digits per byte (absl::BytesToHexString).
std::string HexOf(std::string_view bytes);
// Lowercase or uppercase digits; nullopt for an odd length or a character that is not one.
std::optional<std::string> BytesOfHex(std::string_view hex);

}  // namespace stanzad

#endif  // STANZAD_CORE_BASE_HEX_H_
