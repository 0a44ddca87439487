// A tiny scanner for the start tag of an element the Tokenizer has already
// validated: the element's name and its attributes, as views into the element.
// This is the hot-path way to read `to`, `from`, `type` and `id` of a stanza
// without building a tree.
//
// Values are raw: entity and character references are left as written (use
// xml::Unescape() where the decoded value matters). On input the tokenizer has
// not validated, results are unspecified but always within `element`'s bounds.
#ifndef STANZAD_CORE_XML_START_TAG_H_
#define STANZAD_CORE_XML_START_TAG_H_

#include <optional>
#include <string_view>

namespace stanzad::xml {

inline bool IsXmlWhitespace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// The qualified name of the element that `element` starts with ("" if none).
inline std::string_view ElementName(std::string_view element) {
  if (element.empty() || element[0] != '<') return {};
  size_t end = 1;
  while (end < element.size() && !IsXmlWhitespace(element[end]) && element[end] != '>' &&
         element[end] != '/') {
    ++end;
  }
  return element.substr(1, end - 1);
}

// Calls visit(name, raw_value) for each attribute of the start tag, in order,
// until visit returns false. Returns false if the start tag ended unexpectedly.
template <typename Visitor>
bool ForEachAttribute(std::string_view element, Visitor&& visit) {
  size_t i = 1 + ElementName(element).size();
  const size_t n = element.size();
  while (true) {
    while (i < n && IsXmlWhitespace(element[i])) ++i;
    if (i >= n) return false;
    if (element[i] == '>' || element[i] == '/') return true;
    const size_t name_start = i;
    while (i < n && element[i] != '=' && !IsXmlWhitespace(element[i])) ++i;
    const std::string_view name = element.substr(name_start, i - name_start);
    while (i < n && element[i] != '\'' && element[i] != '"') ++i;
    if (i >= n) return false;
    const char quote = element[i++];
    const size_t value_start = i;
    while (i < n && element[i] != quote) ++i;
    if (i >= n) return false;
    if (!visit(name, element.substr(value_start, i - value_start))) return true;
    ++i;
  }
}

// The raw value of attribute `name` on the start tag, or nullopt if absent.
inline std::optional<std::string_view> FindRawAttribute(std::string_view element,
                                                        std::string_view name) {
  std::optional<std::string_view> found;
  ForEachAttribute(element, [&](std::string_view attribute, std::string_view value) {
    if (attribute != name) return true;
    found = value;
    return false;
  });
  return found;
}

}  // namespace stanzad::xml

#endif  // STANZAD_CORE_XML_START_TAG_H_
