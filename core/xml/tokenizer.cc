#include "core/xml/tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstring>

#include "core/base/check.h"
#include "core/xml/escape.h"
#include "core/xml/start_tag.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace stanzad::xml {

using xmpp::StreamErrorCondition;

enum class Tokenizer::State : uint8_t {
  kStreamStart,    // first byte of a stream: '<' (declaration or header) or whitespace
  kProlog,         // before the header: whitespace or '<'
  kPrologMarkup,   // after '<' before the header
  kDeclaration,    // inside "<?xml ... ?>"
  kStreamLevel,    // between stanzas: whitespace or '<'
  kMarkup,         // after '<' between stanzas or inside one
  kBang,           // after "<!"
  kCdata,          // inside "<![CDATA[ ... ]]>"
  kContent,        // character data inside a stanza
  kStartTagName,   // the element name of a start tag
  kTagSpace,       // in a start tag: whitespace, '>', "/>" or an attribute name
  kEmptyTagSlash,  // after '/' in a start tag
  kAttributeName,
  kAttributeAfterName,    // whitespace before '='
  kAttributeAfterEquals,  // whitespace before the opening quote
  kAttributeValue,
  kAfterAttributeValue,  // whitespace, '>' or "/>"
  kEndTagName,
  kEndTagSpace,  // whitespace before '>' of an end tag
  kEntity,       // after '&'
  kClosed,       // after the stream's end tag
  kFailed,
};

namespace {

constexpr uint8_t kWhitespaceClass = 1;
constexpr uint8_t kNameStartClass = 2;
constexpr uint8_t kNameClass = 4;

constexpr std::array<uint8_t, 256> MakeCharacterClasses() {
  std::array<uint8_t, 256> table{};
  for (int c : {' ', '\t', '\r', '\n'}) table[c] = kWhitespaceClass;
  for (int c = 0; c < 256; ++c) {
    bool start =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || c >= 0x80;
    bool name = start || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (start) table[c] |= kNameStartClass;
    if (name) table[c] |= kNameClass;
  }
  return table;
}

constexpr std::array<uint8_t, 256> kCharacterClasses = MakeCharacterClasses();

inline bool IsWhitespace(char c) {
  return kCharacterClasses[static_cast<uint8_t>(c)] & kWhitespaceClass;
}
inline bool IsNameStart(char c) {
  return kCharacterClasses[static_cast<uint8_t>(c)] & kNameStartClass;
}
inline bool IsNameChar(char c) { return kCharacterClasses[static_cast<uint8_t>(c)] & kNameClass; }

// Returns the first byte in [p, end) that is '<', '&', `stop`, a control
// character or not ASCII: everything else is plain character data.
inline const char* ScanPlainText(const char* p, const char* end, char stop) {
#if defined(__SSE2__)
  const __m128i less_than = _mm_set1_epi8('<');
  const __m128i ampersand = _mm_set1_epi8('&');
  const __m128i stop_byte = _mm_set1_epi8(stop);
  // Signed compare: bytes >= 0x80 are negative, so one compare finds both
  // control characters and the start of multi-byte UTF-8.
  const __m128i space = _mm_set1_epi8(0x20);
  while (end - p >= 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i special =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, less_than), _mm_cmpeq_epi8(v, ampersand)),
                     _mm_or_si128(_mm_cmpeq_epi8(v, stop_byte), _mm_cmplt_epi8(v, space)));
    int mask = _mm_movemask_epi8(special);
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  while (p < end) {
    const uint8_t c = static_cast<uint8_t>(*p);
    if (c < 0x20 || c >= 0x80 || c == '<' || c == '&' || c == static_cast<uint8_t>(stop)) break;
    ++p;
  }
  return p;
}

constexpr std::array<bool, 256> MakeAsciiNameTable() {
  std::array<bool, 256> table{};
  for (int c = 0; c < 0x80; ++c) table[c] = kCharacterClasses[c] & kNameClass;
  return table;
}

constexpr std::array<bool, 256> kAsciiNameTable = MakeAsciiNameTable();

inline bool IsAsciiNameChar(char c) { return kAsciiNameTable[static_cast<uint8_t>(c)]; }

// Returns the first byte in [p, end) that is not an ASCII name character
// ([A-Za-z0-9_:.-]); sets *colon if the name so far holds a ':'. Scalar on
// purpose: names are short, and a vector version measured slower.
inline const char* ScanAsciiName(const char* p, const char* end, bool* colon) {
  while (p < end && IsAsciiNameChar(*p)) {
    *colon |= *p == ':';
    ++p;
  }
  return p;
}

// Validates one whole UTF-8 character at p (a byte >= 0x80) lying in [p, end).
// Returns the byte after it, or nullptr if it is invalid or incomplete.
inline const char* FastUtf8(const char* p, const char* end) {
  const uint8_t lead = static_cast<uint8_t>(p[0]);
  uint32_t code_point;
  int length;
  uint32_t minimum;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, code_point = lead & 0x1F, minimum = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, code_point = lead & 0x0F, minimum = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, code_point = lead & 0x07, minimum = 0x10000;
  } else {
    return nullptr;
  }
  if (end - p < length) return nullptr;
  for (int i = 1; i < length; ++i) {
    const uint8_t byte = static_cast<uint8_t>(p[i]);
    if ((byte & 0xC0) != 0x80) return nullptr;
    code_point = (code_point << 6) | (byte & 0x3F);
  }
  if (code_point < minimum || !IsXmlChar(code_point)) return nullptr;
  return p + length;
}

// Validates a whole reference at p ('&') lying in [p, end): one of the five
// predefined entities or a character reference to an XML character. Returns the
// byte after ';', or nullptr to leave the case to the resumable path.
inline const char* FastReference(const char* p, const char* end) {
  const size_t available = static_cast<size_t>(end - p);
  if (available >= 5 && p[1] == 'a' && p[2] == 'm' && p[3] == 'p' && p[4] == ';') return p + 5;
  if (available >= 4 && (p[1] == 'l' || p[1] == 'g') && p[2] == 't' && p[3] == ';') return p + 4;
  if (available >= 6 &&
      ((std::memcmp(p + 1, "quot;", 5) == 0) || (std::memcmp(p + 1, "apos;", 5) == 0))) {
    return p + 6;
  }
  if (available < 4 || p[1] != '#') return nullptr;
  const char* semicolon =
      static_cast<const char*>(std::memchr(p + 2, ';', std::min<size_t>(available, 12) - 2));
  if (semicolon == nullptr ||
      !ParseCharacterReference(std::string_view(p + 1, static_cast<size_t>(semicolon - p - 1)))) {
    return nullptr;
  }
  return semicolon + 1;
}

#if defined(__x86_64__)
// The AVX2 scan for long runs of character data (message bodies), chosen at
// run time so the binary still runs on CPUs without AVX2.
__attribute__((target("avx2"))) const char* ScanPlainTextAvx2(const char* p, const char* end,
                                                              char stop) {
  const __m256i less_than = _mm256_set1_epi8('<');
  const __m256i ampersand = _mm256_set1_epi8('&');
  const __m256i stop_byte = _mm256_set1_epi8(stop);
  const __m256i space = _mm256_set1_epi8(0x20);
  while (end - p >= 32) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    __m256i special = _mm256_or_si256(
        _mm256_or_si256(_mm256_cmpeq_epi8(v, less_than), _mm256_cmpeq_epi8(v, ampersand)),
        _mm256_or_si256(_mm256_cmpeq_epi8(v, stop_byte), _mm256_cmpgt_epi8(space, v)));
    unsigned mask = static_cast<unsigned>(_mm256_movemask_epi8(special));
    if (mask != 0) return p + __builtin_ctz(mask);
    p += 32;
  }
  return ScanPlainText(p, end, stop);
}

using ScanFunction = const char* (*)(const char*, const char*, char);

ScanFunction ChooseLongScan() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") ? ScanPlainTextAvx2 : ScanPlainText;
}

const ScanFunction kScanLongText = ChooseLongScan();
#else
constexpr auto kScanLongText = ScanPlainText;
#endif

// Character data: short runs stay inline; a run longer than 16 bytes goes to
// the widest scanner the CPU has.
inline const char* ScanCharacterData(const char* p, const char* end, char stop) {
  const char* short_end = end - p > 16 ? p + 16 : end;
  const char* q = ScanPlainText(p, short_end, stop);
  if (q < short_end || q == end) return q;
  return kScanLongText(q, end, stop);
}

// A qualified name: at most one colon, not first or last, and the local part
// starts like a name.
bool IsValidQualifiedName(std::string_view name) {
  const size_t colon = name.find(':');
  if (colon == std::string_view::npos) return true;
  if (colon == 0 || colon + 1 >= name.size()) return false;
  if (name.find(':', colon + 1) != std::string_view::npos) return false;
  return IsNameStart(name[colon + 1]);
}

std::string_view PrefixOf(std::string_view qualified_name) {
  const size_t colon = qualified_name.find(':');
  return colon == std::string_view::npos ? std::string_view() : qualified_name.substr(0, colon);
}

std::string Quote(std::string_view name) {
  std::string quoted;
  quoted.reserve(name.size() + 2);
  quoted.push_back('\'');
  quoted.append(name);
  quoted.push_back('\'');
  return quoted;
}

std::string DescribeByte(uint8_t byte) {
  char text[8];
  std::snprintf(text, sizeof(text), "0x%02X", byte);
  return text;
}

}  // namespace

const std::string* StreamHeader::Find(std::string_view attribute_name) const {
  for (const HeaderAttribute& attribute : attributes) {
    if (attribute.name == attribute_name) return &attribute.value;
  }
  return nullptr;
}

const std::string* StreamHeader::FindNamespace(std::string_view ns_prefix) const {
  for (const NamespaceDeclaration& declaration : namespaces) {
    if (declaration.prefix == ns_prefix) return &declaration.uri;
  }
  return nullptr;
}

Tokenizer::Tokenizer(const TokenizerLimits& limits)
    : limits_(limits), state_(State::kStreamStart), entity_return_state_(State::kContent) {
  CHECK_GT(limits_.stanza_bytes_max, 0u);
  CHECK_GT(limits_.header_bytes_max, 0u);
  CHECK_GT(limits_.depth_max, 0u);
  CHECK_GT(limits_.name_bytes_max, 0u);
}

void Tokenizer::Feed(std::string_view bytes) {
  CHECK_MSG(pos_ == len_ || state_ == State::kFailed, "Feed() before the previous buffer drained");
  base_offset_ += pos_;
  buf_ = bytes.data();
  len_ = bytes.size();
  pos_ = 0;
}

void Tokenizer::Restart() {
  if (state_ == State::kFailed) return;
  state_ = State::kStreamStart;
  in_element_ = false;
  spilling_ = false;
  in_header_ = false;
  depth_ = 0;
  open_names_.clear();
  open_name_ends_.clear();
  stanza_prefixes_.clear();
  text_brackets_ = 0;
  utf8_remaining_ = 0;
  xml_declaration_allowed_ = true;
  header_ = StreamHeader();
}

Token Tokenizer::Next() {
  if (state_ == State::kFailed) return Token{TokenType::kError, {}, {}};
  return Run();
}

Token Tokenizer::Fail(StreamErrorCondition condition, std::string text, const char* at) {
  state_ = State::kFailed;
  error_.condition = condition;
  error_.text = std::move(text);
  pos_ = static_cast<size_t>(at - buf_);
  return Token{TokenType::kError, {}, {}};
}

std::string* Tokenizer::CurrentName() {
  switch (state_) {
    case State::kStartTagName:
      return &open_names_;
    case State::kAttributeName:
      return &attribute_names_;
    case State::kEndTagName:
      return &end_name_;
    default:
      return nullptr;
  }
}

bool Tokenizer::StepUtf8(uint8_t byte) {
  if (utf8_remaining_ > 0) {
    if ((byte & 0xC0) != 0x80) return false;
    utf8_code_point_ = (utf8_code_point_ << 6) | (byte & 0x3F);
    if (--utf8_remaining_ > 0) return true;
    const uint32_t c = utf8_code_point_;
    return c >= utf8_minimum_ && c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF) && c != 0xFFFE &&
           c != 0xFFFF;
  }
  if (byte >= 0xC2 && byte <= 0xDF) {
    utf8_remaining_ = 1;
    utf8_code_point_ = byte & 0x1F;
    utf8_minimum_ = 0x80;
  } else if (byte >= 0xE0 && byte <= 0xEF) {
    utf8_remaining_ = 2;
    utf8_code_point_ = byte & 0x0F;
    utf8_minimum_ = 0x800;
  } else if (byte >= 0xF0 && byte <= 0xF4) {
    utf8_remaining_ = 3;
    utf8_code_point_ = byte & 0x07;
    utf8_minimum_ = 0x10000;
  } else {
    return false;
  }
  return true;
}

bool Tokenizer::PrefixDeclared(std::string_view qualified_name) const {
  const std::string_view prefix = PrefixOf(qualified_name);
  if (prefix.empty() || prefix == "xml" || prefix == "xmlns") return true;
  for (const auto& [declared, depth] : stanza_prefixes_) {
    if (declared == prefix) return true;
  }
  return header_.FindNamespace(prefix) != nullptr;
}

bool Tokenizer::FinishEntity(std::string* problem, bool* restricted) const {
  const std::string_view name(entity_, entity_length_);
  if (name.empty()) {
    *problem = "empty entity reference '&;'";
    return false;
  }
  if (name[0] == '#') {
    if (IsValidCharacterReference(name)) return true;
    *problem =
        "character reference &" + std::string(name) + "; is malformed or not an XML character";
    return false;
  }
  if (name == "amp" || name == "lt" || name == "gt" || name == "quot" || name == "apos") {
    return true;
  }
  *restricted = true;
  *problem = "entity reference &" + std::string(name) +
             "; is not allowed: XMPP permits only the five predefined entities";
  return false;
}

bool Tokenizer::CheckXmlDeclaration(std::string* problem, bool* unsupported_encoding) const {
  // markup_ holds everything after "<?" up to and including "?>".
  const std::string_view declaration(markup_);
  if (declaration.size() < 5 || declaration.substr(0, 3) != "xml" ||
      !IsWhitespace(declaration[3])) {
    *problem = "processing instructions are not allowed";
    return false;
  }
  const std::string_view body = declaration.substr(3, declaration.size() - 5);
  const size_t encoding = body.find("encoding");
  if (encoding != std::string_view::npos) {
    size_t i = encoding + 8;
    while (i < body.size() && (IsWhitespace(body[i]) || body[i] == '=')) ++i;
    if (i < body.size() && (body[i] == '\'' || body[i] == '"')) {
      const char quote = body[i];
      const size_t end = body.find(quote, i + 1);
      std::string name(body.substr(i + 1, end == std::string_view::npos ? 0 : end - i - 1));
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name != "utf-8") {
        *unsupported_encoding = true;
        *problem = "encoding " + Quote(name) + " is not supported: XMPP streams are UTF-8";
        return false;
      }
    }
  }
  for (char c : body) {
    if (static_cast<uint8_t>(c) >= 0x80 || (static_cast<uint8_t>(c) < 0x20 && !IsWhitespace(c))) {
      *problem = "XML declaration contains a non-ASCII or control character";
      return false;
    }
  }
  return true;
}

Token Tokenizer::EmitElement(const char* after) {
  std::string_view bytes;
  if (spilling_) {
    spill_.append(buf_, static_cast<size_t>(after - buf_));
    bytes = spill_;
  } else {
    bytes =
        std::string_view(buf_ + element_start_, static_cast<size_t>(after - buf_) - element_start_);
  }
  in_element_ = false;
  spilling_ = false;
  state_ = State::kStreamLevel;
  pos_ = static_cast<size_t>(after - buf_);
  return Token{TokenType::kElement, bytes, ElementName(bytes)};
}

Token Tokenizer::FinishHeader(const char* after) {
  std::string_view bytes;
  if (spilling_) {
    spill_.append(buf_, static_cast<size_t>(after - buf_));
    bytes = spill_;
  } else {
    bytes =
        std::string_view(buf_ + element_start_, static_cast<size_t>(after - buf_) - element_start_);
  }
  header_ = StreamHeader();
  header_.name = open_names_.substr(tag_name_start_);
  header_.prefix = std::string(PrefixOf(header_.name));
  open_names_.resize(tag_name_start_);
  bool bad_reference = false;
  ForEachAttribute(bytes, [&](std::string_view name, std::string_view raw_value) {
    std::optional<std::string> value = Unescape(raw_value);
    if (!value) {
      bad_reference = true;
      return false;
    }
    if (name == "xmlns") {
      header_.namespaces.push_back({"", std::move(*value)});
    } else if (name.substr(0, 6) == "xmlns:") {
      header_.namespaces.push_back({std::string(name.substr(6)), std::move(*value)});
    } else {
      header_.attributes.push_back({std::string(name), std::move(*value)});
    }
    return true;
  });
  const char* at = after - 1;
  if (bad_reference) {
    // Unreachable for input the state machine accepted; kept as a guard.
    return Fail(StreamErrorCondition::kNotWellFormed, "malformed reference in stream header", at);
  }
  for (const NamespaceDeclaration& declaration : header_.namespaces) {
    if (!declaration.prefix.empty() && declaration.uri.empty()) {
      return Fail(StreamErrorCondition::kNotWellFormed,
                  "namespace prefix " + Quote(declaration.prefix) + " bound to an empty URI", at);
    }
  }
  const std::string* uri = header_.FindNamespace(header_.prefix);
  if (uri == nullptr && !header_.prefix.empty()) {
    return Fail(StreamErrorCondition::kBadNamespacePrefix,
                "stream header prefix " + Quote(header_.prefix) + " is not declared", at);
  }
  const std::string_view local_name =
      std::string_view(header_.name).substr(header_.prefix.empty() ? 0 : header_.prefix.size() + 1);
  if (local_name != "stream" || uri == nullptr || *uri != kStreamsNamespace) {
    return Fail(StreamErrorCondition::kInvalidNamespace,
                "stream header must be <stream> in namespace http://etherx.jabber.org/streams", at);
  }
  for (const HeaderAttribute& attribute : header_.attributes) {
    if (!PrefixDeclared(attribute.name)) {
      return Fail(StreamErrorCondition::kBadNamespacePrefix,
                  "attribute prefix of " + Quote(attribute.name) + " is not declared", at);
    }
  }
  in_header_ = false;
  in_element_ = false;
  spilling_ = false;
  state_ = State::kStreamLevel;
  pos_ = static_cast<size_t>(after - buf_);
  return Token{TokenType::kStreamHeader, bytes, {}};
}

Token Tokenizer::FinishStartTag(const char* after, bool empty) {
  const char* at = after - 1;
  if (in_header_) {
    if (empty) {
      return Fail(StreamErrorCondition::kNotWellFormed,
                  "the stream header must not be an empty element", at);
    }
    return FinishHeader(after);
  }
  const std::string_view name = std::string_view(open_names_).substr(tag_name_start_);
  if (!PrefixDeclared(name)) {
    return Fail(StreamErrorCondition::kBadNamespacePrefix,
                "element prefix of " + Quote(name) + " is not declared", at);
  }
  uint32_t attribute_start = 0;
  for (uint32_t attribute_end : attribute_name_ends_) {
    const std::string_view attribute =
        std::string_view(attribute_names_).substr(attribute_start, attribute_end - attribute_start);
    if (!PrefixDeclared(attribute)) {
      return Fail(StreamErrorCondition::kBadNamespacePrefix,
                  "attribute prefix of " + Quote(attribute) + " is not declared", at);
    }
    attribute_start = attribute_end;
  }
  if (depth_ + 1 > limits_.depth_max) {
    return Fail(StreamErrorCondition::kPolicyViolation,
                "elements nested deeper than " + std::to_string(limits_.depth_max), at);
  }
  if (empty) {
    while (!stanza_prefixes_.empty() && stanza_prefixes_.back().second == depth_ + 1) {
      stanza_prefixes_.pop_back();
    }
    const size_t name_length = name.size();
    open_names_.resize(tag_name_start_);
    if (depth_ == 0) {
      Token token = EmitElement(after);
      token.name = token.bytes.substr(1, name_length);
      return token;
    }
    state_ = State::kContent;
  } else {
    ++depth_;
    open_name_ends_.push_back(static_cast<uint32_t>(open_names_.size()));
    state_ = State::kContent;
  }
  pos_ = static_cast<size_t>(after - buf_);
  return Token{TokenType::kNeedMoreData, {}, {}};
}

Token Tokenizer::FinishEndTag(const char* after) {
  const char* at = after - 1;
  if (depth_ == 0) {
    if (end_name_ != header_.name) {
      return Fail(StreamErrorCondition::kNotWellFormed,
                  "end tag </" + end_name_ + "> does not match the stream's <" + header_.name + ">",
                  at);
    }
    std::string_view bytes;
    if (spilling_) {
      spill_.append(buf_, static_cast<size_t>(after - buf_));
      bytes = spill_;
    } else {
      bytes = std::string_view(buf_ + element_start_,
                               static_cast<size_t>(after - buf_) - element_start_);
    }
    in_element_ = false;
    spilling_ = false;
    state_ = State::kClosed;
    pos_ = static_cast<size_t>(after - buf_);
    return Token{TokenType::kStreamEnd, bytes, {}};
  }
  const uint32_t name_end = open_name_ends_.back();
  const uint32_t name_start =
      open_name_ends_.size() >= 2 ? open_name_ends_[open_name_ends_.size() - 2] : 0;
  const std::string_view open_name =
      std::string_view(open_names_).substr(name_start, name_end - name_start);
  if (open_name != end_name_) {
    return Fail(
        StreamErrorCondition::kNotWellFormed,
        "end tag </" + end_name_ + "> does not match start tag <" + std::string(open_name) + ">",
        at);
  }
  return CloseElement(after);
}

Token Tokenizer::CloseElement(const char* after) {
  const uint32_t name_end = open_name_ends_.back();
  const uint32_t name_start =
      open_name_ends_.size() >= 2 ? open_name_ends_[open_name_ends_.size() - 2] : 0;
  while (!stanza_prefixes_.empty() && stanza_prefixes_.back().second == depth_) {
    stanza_prefixes_.pop_back();
  }
  open_names_.resize(name_start);
  open_name_ends_.pop_back();
  --depth_;
  if (depth_ == 0) {
    Token token = EmitElement(after);
    token.name = token.bytes.substr(1, name_end - name_start);
    return token;
  }
  state_ = State::kContent;
  pos_ = static_cast<size_t>(after - buf_);
  return Token{TokenType::kNeedMoreData, {}, {}};
}

const char* Tokenizer::FastEndTag(const char* p, const char* end) const {
  // p is just after "</".
  const uint32_t name_end = open_name_ends_.back();
  const uint32_t name_start =
      open_name_ends_.size() >= 2 ? open_name_ends_[open_name_ends_.size() - 2] : 0;
  const size_t length = name_end - name_start;
  if (static_cast<size_t>(end - p) <= length || p[length] != '>' ||
      std::memcmp(p, open_names_.data() + name_start, length) != 0) {
    return nullptr;
  }
  return p + length + 1;
}

const char* Tokenizer::FastStartTag(const char* p, const char* end, bool* empty) {
  // p is at the first byte of the element name. Any surprise returns nullptr
  // with nothing changed, and the resumable path takes over from p.
  bool name_has_colon = false;
  const char* q = ScanAsciiName(p, end, &name_has_colon);
  if (q == end || static_cast<uint8_t>(*q) >= 0x80) return nullptr;
  const std::string_view name(p, static_cast<size_t>(q - p));
  if (name.size() > limits_.name_bytes_max || (name_has_colon && !IsValidQualifiedName(name))) {
    return nullptr;
  }
  const size_t prefixes_before = stanza_prefixes_.size();
  fast_attributes_.clear();
  bool any_prefixed_attribute = false;
  const auto bail = [&]() -> const char* {
    stanza_prefixes_.resize(prefixes_before);
    return nullptr;
  };
  while (true) {
    const char* space = q;
    while (q < end && IsWhitespace(*q)) ++q;
    if (q == end) return bail();
    const char c = *q;
    if (c == '>') {
      ++q;
      *empty = false;
      break;
    }
    if (c == '/') {
      if (q + 1 == end || q[1] != '>') return bail();
      q += 2;
      *empty = true;
      break;
    }
    if (q == space || !IsNameStart(c) || static_cast<uint8_t>(c) >= 0x80) return bail();
    const char* attribute_start = q;
    bool attribute_has_colon = false;
    q = ScanAsciiName(q, end, &attribute_has_colon);
    const std::string_view attribute(attribute_start, static_cast<size_t>(q - attribute_start));
    if (attribute.size() > limits_.name_bytes_max ||
        fast_attributes_.size() >= limits_.attributes_max ||
        (attribute_has_colon && !IsValidQualifiedName(attribute))) {
      return bail();
    }
    for (std::string_view other : fast_attributes_) {
      if (other == attribute) return bail();
    }
    while (q < end && IsWhitespace(*q)) ++q;
    if (q == end || *q != '=') return bail();
    ++q;
    while (q < end && IsWhitespace(*q)) ++q;
    if (q == end || (*q != '\'' && *q != '"')) return bail();
    const char quote = *q++;
    const char* value_start = q;
    while (true) {
      q = ScanPlainText(q, end, quote);
      if (q == end) return bail();
      const char v = *q;
      if (v == quote) break;
      if (v == '&') {
        q = FastReference(q, end);
      } else if (static_cast<uint8_t>(v) >= 0x80) {
        q = FastUtf8(q, end);
      } else if (v == '\t' || v == '\n' || v == '\r') {
        ++q;
      } else {
        q = nullptr;
      }
      if (q == nullptr) return bail();
    }
    const bool value_empty = q == value_start;
    ++q;
    if (attribute_has_colon) {
      if (attribute.starts_with("xmlns:")) {
        if (value_empty) return bail();
        stanza_prefixes_.emplace_back(std::string(attribute.substr(6)), depth_ + 1);
      } else {
        any_prefixed_attribute = true;
      }
    }
    fast_attributes_.push_back(attribute);
  }
  if (depth_ + 1 > limits_.depth_max || (name_has_colon && !PrefixDeclared(name))) return bail();
  if (any_prefixed_attribute) {
    for (std::string_view attribute : fast_attributes_) {
      if (!PrefixDeclared(attribute)) return bail();
    }
  }
  if (*empty) {
    stanza_prefixes_.resize(prefixes_before);
  } else {
    open_names_.append(name);
    open_name_ends_.push_back(static_cast<uint32_t>(open_names_.size()));
    ++depth_;
  }
  return q;
}

Token Tokenizer::Run() {
  const char* p = buf_ + pos_;
  const char* const buffer_end = buf_ + len_;
  using C = StreamErrorCondition;

  while (true) {
    // Inside a top-level element nothing may be consumed past its byte limit;
    // reaching the limit with bytes left is the error, wherever the split falls.
    const char* end = buffer_end;
    if (in_element_) {
      const uint64_t limit = in_header_ ? limits_.header_bytes_max : limits_.stanza_bytes_max;
      const uint64_t limit_offset = element_start_offset_ + limit;
      const uint64_t here = base_offset_ + static_cast<uint64_t>(p - buf_);
      if (limit_offset - here < static_cast<uint64_t>(buffer_end - p)) {
        end = p + (limit_offset - here);
      }
      if (p == end && end < buffer_end) {
        return Fail(C::kPolicyViolation,
                    std::string(in_header_ ? "stream header" : "stanza") + " larger than " +
                        std::to_string(limit) + " bytes",
                    p);
      }
    }
    if (p == buffer_end) break;

    switch (state_) {
      case State::kStreamStart:
      case State::kProlog:
        if (IsWhitespace(*p)) {
          // The XML declaration, if any, must be the very first bytes.
          xml_declaration_allowed_ = false;
          state_ = State::kProlog;
          while (p < end && IsWhitespace(*p)) ++p;
          if (p == end) break;
        }
        if (*p != '<') {
          return Fail(C::kNotWellFormed, "expected the stream header, got " + DescribeByte(*p), p);
        }
        in_element_ = true;
        in_header_ = true;
        spilling_ = false;
        element_start_ = static_cast<size_t>(p - buf_);
        element_start_offset_ = base_offset_ + element_start_;
        ++p;
        state_ = State::kPrologMarkup;
        break;

      case State::kPrologMarkup: {
        const char c = *p;
        if (c == '?') {
          if (!xml_declaration_allowed_) {
            return Fail(C::kRestrictedXml, "processing instructions are not allowed", p);
          }
          in_element_ = false;
          in_header_ = false;
          markup_.clear();
          xml_declaration_allowed_ = false;
          ++p;
          state_ = State::kDeclaration;
        } else if (c == '!') {
          xml_declaration_allowed_ = false;
          markup_.clear();
          ++p;
          state_ = State::kBang;
        } else if (IsNameStart(c)) {
          xml_declaration_allowed_ = false;
          tag_name_start_ = static_cast<uint32_t>(open_names_.size());
          attribute_names_.clear();
          attribute_name_ends_.clear();
          attribute_count_ = 0;
          state_ = State::kStartTagName;
        } else {
          return Fail(C::kNotWellFormed, "expected the stream header's name after '<'", p);
        }
        break;
      }

      case State::kDeclaration:
        // Byte by byte: it is short, once per stream, and the bound must be exact.
        while (p < end) {
          const char c = *p++;
          markup_.push_back(c);
          if (markup_.size() > 256) {
            return Fail(C::kPolicyViolation, "XML declaration longer than 256 bytes", p - 1);
          }
          if (c == '>' && markup_.size() >= 2 && markup_[markup_.size() - 2] == '?') {
            std::string problem;
            bool unsupported_encoding = false;
            if (!CheckXmlDeclaration(&problem, &unsupported_encoding)) {
              const C condition = unsupported_encoding                ? C::kUnsupportedEncoding
                                  : problem.starts_with("processing") ? C::kRestrictedXml
                                                                      : C::kNotWellFormed;
              return Fail(condition, problem, p - 1);
            }
            state_ = State::kProlog;
            break;
          }
        }
        break;

      case State::kStreamLevel:
        while (p < end && IsWhitespace(*p)) ++p;
        if (p == end) break;
        if (*p != '<') {
          return Fail(C::kBadFormat, "character data between stanzas", p);
        }
        in_element_ = true;
        spilling_ = false;
        element_start_ = static_cast<size_t>(p - buf_);
        element_start_offset_ = base_offset_ + element_start_;
        ++p;
        state_ = State::kMarkup;
        break;

      case State::kClosed:
        while (p < end && IsWhitespace(*p)) ++p;
        if (p == end) break;
        return Fail(C::kBadFormat, "data after the end of the stream", p);

      case State::kMarkup: {
        const char c = *p;
        if (c == '/') {
          if (depth_ > 0) {
            if (const char* after = FastEndTag(p + 1, end)) {
              p = after;
              Token token = CloseElement(p);
              if (token.type != TokenType::kNeedMoreData) return token;
              break;
            }
          }
          end_name_.clear();
          ++p;
          state_ = State::kEndTagName;
        } else if (IsNameStart(c)) {
          bool empty = false;
          if (const char* after = FastStartTag(p, end, &empty)) {
            p = after;
            state_ = State::kContent;
            if (empty && depth_ == 0) {
              Token token = EmitElement(p);
              token.name = ElementName(token.bytes);
              return token;
            }
            break;
          }
          tag_name_start_ = static_cast<uint32_t>(open_names_.size());
          attribute_names_.clear();
          attribute_name_ends_.clear();
          attribute_count_ = 0;
          state_ = State::kStartTagName;
        } else if (c == '!') {
          markup_.clear();
          ++p;
          state_ = State::kBang;
        } else if (c == '?') {
          return Fail(C::kRestrictedXml, "processing instructions are not allowed", p);
        } else {
          return Fail(C::kNotWellFormed, "expected a name after '<', got " + DescribeByte(c), p);
        }
        break;
      }

      case State::kBang:
        while (p < end) {
          markup_.push_back(*p++);
          if (markup_ == "--") {
            return Fail(C::kRestrictedXml, "comments are not allowed", p - 1);
          }
          if (markup_ == "DOCTYPE") {
            return Fail(C::kRestrictedXml, "document type declarations are not allowed", p - 1);
          }
          if (markup_ == "[CDATA[") {
            if (depth_ == 0) {
              return Fail(C::kBadFormat, "CDATA section outside a stanza", p - 1);
            }
            cdata_brackets_ = 0;
            state_ = State::kCdata;
            break;
          }
          const std::string_view seen(markup_);
          const bool may_match = std::string_view("--").starts_with(seen) ||
                                 std::string_view("DOCTYPE").starts_with(seen) ||
                                 std::string_view("[CDATA[").starts_with(seen);
          if (!may_match) {
            if (seen[0] >= 'A' && seen[0] <= 'Z') {
              return Fail(C::kRestrictedXml, "markup declarations are not allowed", p - 1);
            }
            return Fail(C::kNotWellFormed, "malformed markup after '<!'", p - 1);
          }
        }
        break;

      case State::kCdata:
        while (p < end) {
          if (cdata_brackets_ == 0 && utf8_remaining_ == 0) {
            p = ScanPlainText(p, end, ']');
            if (p == end) break;
          }
          const uint8_t c = static_cast<uint8_t>(*p);
          if (c >= 0x80 || utf8_remaining_ > 0) {
            if (!StepUtf8(c)) return Fail(C::kNotWellFormed, "invalid UTF-8", p);
            cdata_brackets_ = 0;
            ++p;
            continue;
          }
          ++p;
          if (c == ']') {
            if (cdata_brackets_ < 2) ++cdata_brackets_;
          } else if (c == '>' && cdata_brackets_ == 2) {
            state_ = State::kContent;
            break;
          } else {
            cdata_brackets_ = 0;
            if (c < 0x20 && !IsWhitespace(static_cast<char>(c))) {
              return Fail(C::kNotWellFormed, "control character " + DescribeByte(c), p - 1);
            }
          }
        }
        break;

      case State::kContent:
        while (p < end) {
          if (utf8_remaining_ == 0) {
            p = ScanCharacterData(p, end, '>');
            if (p == end) break;
          }
          const uint8_t c = static_cast<uint8_t>(*p);
          if (c >= 0x80 || utf8_remaining_ > 0) {
            if (utf8_remaining_ == 0) {
              // Non-Latin text is runs of multi-byte characters: take the run.
              const char* run_start = p;
              const char* after;
              while ((after = FastUtf8(p, end)) != nullptr) {
                p = after;
                if (p == end || static_cast<uint8_t>(*p) < 0x80) break;
              }
              if (p != run_start) continue;
            }
            if (!StepUtf8(c)) return Fail(C::kNotWellFormed, "invalid UTF-8", p);
            ++p;
            continue;
          }
          if (c == '<') {
            // Most markup inside a stanza lies wholly in the buffer: take the
            // fast paths here without a trip through the dispatch loop.
            if (end - p >= 2) {
              if (p[1] == '/') {
                if (const char* after = FastEndTag(p + 2, end)) {
                  p = after;
                  Token token = CloseElement(p);
                  if (token.type != TokenType::kNeedMoreData) return token;
                  continue;
                }
              } else if (IsNameStart(p[1])) {
                bool empty = false;
                if (const char* after = FastStartTag(p + 1, end, &empty)) {
                  p = after;
                  continue;
                }
              }
            }
            ++p;
            state_ = State::kMarkup;
            break;
          }
          if (c == '&') {
            if (const char* after = FastReference(p, end)) {
              p = after;
              continue;
            }
            ++p;
            entity_length_ = 0;
            entity_return_state_ = State::kContent;
            state_ = State::kEntity;
            break;
          }
          if (c == '>') {
            // "]]>" may not appear in character data.
            int brackets = 0;
            const char* q = p;
            while (brackets < 2 && q > buf_ && q[-1] == ']') {
              --q;
              ++brackets;
            }
            if (q == buf_) brackets += text_brackets_;
            if (brackets >= 2) {
              return Fail(C::kNotWellFormed, "']]>' is not allowed in character data", p);
            }
            ++p;
            continue;
          }
          if (!IsWhitespace(static_cast<char>(c))) {
            return Fail(C::kNotWellFormed, "control character " + DescribeByte(c), p);
          }
          ++p;
        }
        break;

      case State::kEntity:
        while (p < end) {
          const char c = *p;
          if (c == ';') {
            std::string problem;
            bool restricted = false;
            if (!FinishEntity(&problem, &restricted)) {
              return Fail(restricted ? C::kRestrictedXml : C::kNotWellFormed, problem, p);
            }
            ++p;
            state_ = entity_return_state_;
            break;
          }
          const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                               (c >= '0' && c <= '9') || c == '#' || c == '_' || c == '-' ||
                               c == '.';
          if (!allowed || entity_length_ >= sizeof(entity_)) {
            return Fail(C::kNotWellFormed, "malformed entity or character reference", p);
          }
          entity_[entity_length_++] = c;
          ++p;
        }
        break;

      case State::kStartTagName:
      case State::kAttributeName:
      case State::kEndTagName: {
        std::string* name = CurrentName();
        const size_t name_start =
            state_ == State::kStartTagName ? tag_name_start_
            : state_ == State::kAttributeName
                ? (attribute_name_ends_.empty() ? 0 : attribute_name_ends_.back())
                : 0;
        const size_t have = name->size() - name_start;
        // Scan at most one byte past the limit so the error falls on the same byte
        // however the stream is split.
        const char* name_end = end;
        if (static_cast<size_t>(end - p) > limits_.name_bytes_max + 1 - have) {
          name_end = p + (limits_.name_bytes_max + 1 - have);
        }
        const char* start = p;
        while (p < name_end) {
          const uint8_t c = static_cast<uint8_t>(*p);
          if (c >= 0x80 || utf8_remaining_ > 0) {
            if (!StepUtf8(c)) return Fail(C::kNotWellFormed, "invalid UTF-8 in a name", p);
            ++p;
            continue;
          }
          if (!IsNameChar(static_cast<char>(c))) break;
          ++p;
        }
        name->append(start, static_cast<size_t>(p - start));
        const size_t length = name->size() - name_start;
        if (length > limits_.name_bytes_max) {
          return Fail(C::kPolicyViolation,
                      "name longer than " + std::to_string(limits_.name_bytes_max) + " bytes",
                      p - 1);
        }
        if (p == end) break;
        const char c = *p;
        const std::string_view complete = std::string_view(*name).substr(name_start);
        if (complete.empty() || !IsNameStart(complete[0])) {
          return Fail(C::kNotWellFormed, "expected a name, got " + DescribeByte(c), p);
        }
        if (!IsValidQualifiedName(complete)) {
          return Fail(C::kNotWellFormed, "malformed qualified name " + Quote(complete), p);
        }
        if (state_ == State::kStartTagName) {
          if (IsWhitespace(c)) {
            state_ = State::kTagSpace;
            ++p;
          } else if (c == '>') {
            Token token = FinishStartTag(++p, false);
            if (token.type != TokenType::kNeedMoreData) return token;
          } else if (c == '/') {
            state_ = State::kEmptyTagSlash;
            ++p;
          } else {
            return Fail(C::kNotWellFormed, "unexpected " + DescribeByte(c) + " after element name",
                        p);
          }
        } else if (state_ == State::kEndTagName) {
          if (IsWhitespace(c)) {
            state_ = State::kEndTagSpace;
            ++p;
          } else if (c == '>') {
            Token token = FinishEndTag(++p);
            if (token.type != TokenType::kNeedMoreData) return token;
          } else {
            return Fail(C::kNotWellFormed, "unexpected " + DescribeByte(c) + " in end tag", p);
          }
        } else {
          // An attribute name is complete: refuse duplicates, note declarations.
          uint32_t other_start = 0;
          for (uint32_t other_end : attribute_name_ends_) {
            if (std::string_view(attribute_names_).substr(other_start, other_end - other_start) ==
                complete) {
              return Fail(C::kNotWellFormed, "duplicate attribute " + Quote(complete), p);
            }
            other_start = other_end;
          }
          attribute_is_declaration_ = complete == "xmlns" || complete.starts_with("xmlns:");
          if (!in_header_ && complete.starts_with("xmlns:")) {
            stanza_prefixes_.emplace_back(std::string(complete.substr(6)), depth_ + 1);
          }
          attribute_name_ends_.push_back(static_cast<uint32_t>(attribute_names_.size()));
          if (IsWhitespace(c)) {
            state_ = State::kAttributeAfterName;
          } else if (c == '=') {
            state_ = State::kAttributeAfterEquals;
          } else {
            return Fail(C::kNotWellFormed, "expected '=' after attribute " + Quote(complete), p);
          }
          ++p;
        }
        break;
      }

      case State::kTagSpace:
      case State::kAfterAttributeValue: {
        const bool had_space = state_ == State::kTagSpace;
        const char* start = p;
        while (p < end && IsWhitespace(*p)) ++p;
        if (p != start) state_ = State::kTagSpace;
        if (p == end) break;
        const char c = *p;
        if (c == '>') {
          Token token = FinishStartTag(++p, false);
          if (token.type != TokenType::kNeedMoreData) return token;
        } else if (c == '/') {
          state_ = State::kEmptyTagSlash;
          ++p;
        } else if (IsNameStart(c)) {
          if (!had_space && p == start) {
            return Fail(C::kNotWellFormed, "attributes must be separated by whitespace", p);
          }
          if (++attribute_count_ > limits_.attributes_max) {
            return Fail(C::kPolicyViolation,
                        "more than " + std::to_string(limits_.attributes_max) +
                            " attributes on one element",
                        p);
          }
          state_ = State::kAttributeName;
        } else {
          return Fail(C::kNotWellFormed, "unexpected " + DescribeByte(c) + " in a start tag", p);
        }
        break;
      }

      case State::kEmptyTagSlash: {
        if (*p != '>') return Fail(C::kNotWellFormed, "expected '>' after '/'", p);
        Token token = FinishStartTag(++p, true);
        if (token.type != TokenType::kNeedMoreData) return token;
        break;
      }

      case State::kAttributeAfterName:
        while (p < end && IsWhitespace(*p)) ++p;
        if (p == end) break;
        if (*p != '=') return Fail(C::kNotWellFormed, "expected '=' after attribute name", p);
        ++p;
        state_ = State::kAttributeAfterEquals;
        break;

      case State::kAttributeAfterEquals:
        while (p < end && IsWhitespace(*p)) ++p;
        if (p == end) break;
        if (*p != '"' && *p != '\'') {
          return Fail(C::kNotWellFormed, "attribute value must be quoted", p);
        }
        attribute_quote_ = *p++;
        attribute_value_bytes_ = 0;
        state_ = State::kAttributeValue;
        break;

      case State::kAttributeValue:
        while (p < end) {
          if (utf8_remaining_ == 0) {
            const char* start = p;
            p = ScanPlainText(p, end, attribute_quote_);
            attribute_value_bytes_ += static_cast<uint32_t>(p - start);
            if (p == end) break;
          }
          const uint8_t c = static_cast<uint8_t>(*p);
          if (c >= 0x80 || utf8_remaining_ > 0) {
            if (!StepUtf8(c)) return Fail(C::kNotWellFormed, "invalid UTF-8", p);
            ++attribute_value_bytes_;
            ++p;
            continue;
          }
          if (c == static_cast<uint8_t>(attribute_quote_)) {
            if (attribute_is_declaration_ && attribute_value_bytes_ == 0 &&
                attribute_name_ends_.size() >= 1) {
              const uint32_t start = attribute_name_ends_.size() >= 2
                                         ? attribute_name_ends_[attribute_name_ends_.size() - 2]
                                         : 0;
              if (std::string_view(attribute_names_).substr(start).starts_with("xmlns:")) {
                return Fail(C::kNotWellFormed, "namespace prefix bound to an empty URI", p);
              }
            }
            ++p;
            state_ = State::kAfterAttributeValue;
            break;
          }
          if (c == '&') {
            ++p;
            ++attribute_value_bytes_;
            entity_length_ = 0;
            entity_return_state_ = State::kAttributeValue;
            state_ = State::kEntity;
            break;
          }
          if (c == '<') return Fail(C::kNotWellFormed, "'<' in an attribute value", p);
          if (!IsWhitespace(static_cast<char>(c))) {
            return Fail(C::kNotWellFormed, "control character " + DescribeByte(c), p);
          }
          ++attribute_value_bytes_;
          ++p;
        }
        break;

      case State::kEndTagSpace:
        while (p < end && IsWhitespace(*p)) ++p;
        if (p == end) break;
        if (*p != '>') return Fail(C::kNotWellFormed, "expected '>' to close the end tag", p);
        {
          Token token = FinishEndTag(++p);
          if (token.type != TokenType::kNeedMoreData) return token;
        }
        break;

      case State::kFailed:
        return Token{TokenType::kError, {}, {}};
    }
    if (state_ == State::kFailed) return Token{TokenType::kError, {}, {}};
    // FinishStartTag/FinishEndTag move pos_; keep p authoritative.
  }

  // The buffer is consumed. Keep what belongs to an unfinished element.
  if (in_element_) {
    if (spilling_) {
      spill_.append(buf_, len_);
    } else {
      spill_.assign(buf_ + element_start_, len_ - element_start_);
      spilling_ = true;
    }
  }
  if (state_ == State::kContent) {
    uint8_t brackets = 0;
    const char* q = buffer_end;
    while (brackets < 2 && q > buf_ && q[-1] == ']') {
      --q;
      ++brackets;
    }
    if (q == buf_) brackets = static_cast<uint8_t>(std::min(2, brackets + text_brackets_));
    text_brackets_ = brackets;
  } else {
    text_brackets_ = 0;
  }
  pos_ = len_;
  return Token{TokenType::kNeedMoreData, {}, {}};
}

}  // namespace stanzad::xml
