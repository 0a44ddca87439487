#include "core/xml/escape.h"

#include <cstdint>

#include "core/base/decimal.h"

namespace stanzad::xml {
namespace {

void AppendUtf8(uint32_t code_point, std::string* out) {
  if (code_point < 0x80) {
    out->push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

}  // namespace

std::optional<uint32_t> ParseCharacterReference(std::string_view body) {
  if (body.size() < 2 || body[0] != '#') return std::nullopt;
  uint32_t value = 0;
  if (body[1] == 'x') {
    if (body.size() < 3) return std::nullopt;
    for (char c : body.substr(2)) {
      uint32_t digit;
      if (c >= '0' && c <= '9') {
        digit = static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        digit = static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        digit = static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return std::nullopt;
      }
      value = value * 16 + digit;
      if (value > 0x10FFFF) return std::nullopt;
    }
  } else {
    const std::optional<uint32_t> decimal = ParseDecimal<uint32_t>(body.substr(1));
    if (!decimal || *decimal > 0x10FFFF) return std::nullopt;
    value = *decimal;
  }
  if (!IsXmlChar(value)) return std::nullopt;
  return value;
}

bool IsValidCharacterReference(std::string_view body) {
  return ParseCharacterReference(body).has_value();
}

void AppendEscaped(std::string_view text, std::string* out) {
  for (char c : text) {
    switch (c) {
      case '&':
        out->append("&amp;");
        break;
      case '<':
        out->append("&lt;");
        break;
      case '>':
        out->append("&gt;");
        break;
      case '"':
        out->append("&quot;");
        break;
      case '\'':
        out->append("&apos;");
        break;
      default:
        out->push_back(c);
    }
  }
}

std::optional<std::string> Unescape(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  size_t i = 0;
  while (i < raw.size()) {
    size_t amp = raw.find('&', i);
    if (amp == std::string_view::npos) {
      out.append(raw.substr(i));
      break;
    }
    out.append(raw.substr(i, amp - i));
    size_t semicolon = raw.find(';', amp);
    if (semicolon == std::string_view::npos) return std::nullopt;
    std::string_view name = raw.substr(amp + 1, semicolon - amp - 1);
    if (name == "amp") {
      out.push_back('&');
    } else if (name == "lt") {
      out.push_back('<');
    } else if (name == "gt") {
      out.push_back('>');
    } else if (name == "quot") {
      out.push_back('"');
    } else if (name == "apos") {
      out.push_back('\'');
    } else if (auto code_point = ParseCharacterReference(name)) {
      AppendUtf8(*code_point, &out);
    } else {
      return std::nullopt;
    }
    i = semicolon + 1;
  }
  return out;
}

}  // namespace stanzad::xml
