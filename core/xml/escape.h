// Escaping and unescaping of XML character data and attribute values.
#ifndef STANZAD_CORE_XML_ESCAPE_H_
#define STANZAD_CORE_XML_ESCAPE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stanzad::xml {

// Appends `text` to `out` with & < > " ' replaced by entity references, so the
// result is safe both as character data and inside either quote style.
void AppendEscaped(std::string_view text, std::string* out);

// Replaces the five predefined entity references and character references in
// `raw` (an attribute value or character data the tokenizer has validated).
// Returns nullopt if `raw` holds a reference that is not one of those.
std::optional<std::string> Unescape(std::string_view raw);

// True if `body` (the text between '&' and ';', e.g. "#x41" or "#65") is a
// character reference to a character XML 1.0 allows.
bool IsValidCharacterReference(std::string_view body);

// The code point of a character reference's body ("#65", "#x41"), or nullopt
// if it is malformed or not a character XML 1.0 allows.
std::optional<uint32_t> ParseCharacterReference(std::string_view body);

// XML 1.0's Char production.
inline bool IsXmlChar(uint32_t c) {
  return c == 0x9 || c == 0xA || c == 0xD || (c >= 0x20 && c <= 0xD7FF) ||
         (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF);
}

}  // namespace stanzad::xml

#endif  // STANZAD_CORE_XML_ESCAPE_H_
