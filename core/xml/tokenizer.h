// The streaming XMPP tokenizer: frames an XML stream into its stream header and
// its complete top-level elements (stanzas), and rejects what RFC 6120 §11
// forbids.
//
// It is a pure, resumable state machine over bytes: feed it whatever a read
// returned, split anywhere (even inside a multi-byte UTF-8 character), and it
// yields the same tokens as for the unsplit stream. An element that lies wholly
// in the buffer passed to Feed() is returned as a view into that buffer; only an
// element that spans two buffers is copied (into one internal buffer that is
// reused, bounded by TokenizerLimits::stanza_bytes_max).
//
// What it checks (each failure is a stream error, fatal to the stream):
//   restricted-xml        DOCTYPE, comments, processing instructions other than
//                         the leading XML declaration, entity references other
//                         than the five predefined ones and character references
//   not-well-formed       malformed markup, mismatched or unclosed tags, duplicate
//                         attributes, '<' in attribute values, "]]>" in text,
//                         invalid UTF-8, characters outside XML 1.0's Char range
//   bad-namespace-prefix  an element or attribute prefix that no ancestor (or the
//                         stream header) declares
//   invalid-namespace     a stream header that is not <stream> in
//                         http://etherx.jabber.org/streams
//   unsupported-encoding  an XML declaration naming an encoding other than UTF-8
//   bad-format            character data between stanzas, data after the stream end
//   policy-violation      a stanza or header over its byte limit, nesting deeper than
//                         depth_max, more than attributes_max attributes on an
//                         element, a name longer than name_bytes_max
// It does not check that two prefixes bound to the same URI make duplicate
// expanded attribute names; the server re-checks elements it parses itself.
//
// Thread safety: none; a Tokenizer belongs to one connection on one shard.
//
// Usage:
//   Tokenizer tokenizer;
//   tokenizer.Feed(bytes_just_read);
//   for (Token t = tokenizer.Next(); t.type != TokenType::kNeedMoreData; t = tokenizer.Next()) {
//     switch (t.type) { case TokenType::kElement: Route(t.bytes); ... }
//   }
#ifndef STANZAD_CORE_XML_TOKENIZER_H_
#define STANZAD_CORE_XML_TOKENIZER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/xmpp/stream_error.h"

namespace stanzad::xml {

struct TokenizerLimits {
  // A complete top-level element, from '<' to the final '>'.
  size_t stanza_bytes_max = 256 * 1024;
  // The stream header start tag (and the XML declaration before it).
  size_t header_bytes_max = 16 * 1024;
  // Open elements inside the stream: a stanza is depth 1, its children depth 2...
  uint32_t depth_max = 64;
  // Attributes (namespace declarations included) on one element.
  uint32_t attributes_max = 64;
  // An element or attribute name, prefix included.
  uint32_t name_bytes_max = 256;
};

enum class TokenType {
  kNeedMoreData,  // everything fed has been consumed: Feed() more bytes
  kStreamHeader,  // the stream's start tag: see Tokenizer::header()
  kElement,       // a complete top-level element (a stanza, <stream:features/>...)
  kStreamEnd,     // the peer closed the stream with its end tag
  kError,         // a stream error: see Tokenizer::error(); every later call returns it too
};

struct Token {
  TokenType type = TokenType::kNeedMoreData;
  // kElement: the element's bytes exactly as received, from '<' to the last '>'.
  // kStreamHeader: the header start tag. kStreamEnd: the end tag.
  // Valid until the next call to Next(), Feed() or Restart().
  std::string_view bytes;
  // kElement: the element's qualified name (a view into `bytes`), e.g. "message".
  std::string_view name;
};

struct NamespaceDeclaration {
  std::string prefix;  // empty for the default namespace
  std::string uri;

  friend bool operator==(const NamespaceDeclaration&, const NamespaceDeclaration&) = default;
};

struct HeaderAttribute {
  std::string name;   // as written, e.g. "to", "xml:lang"
  std::string value;  // with entity and character references replaced

  friend bool operator==(const HeaderAttribute&, const HeaderAttribute&) = default;
};

// The stream header, copied out of the stream (it is small and read once).
struct StreamHeader {
  std::string name;    // qualified, e.g. "stream:stream"
  std::string prefix;  // e.g. "stream"; empty when the header used the default namespace
  std::vector<HeaderAttribute> attributes;       // xmlns declarations excluded
  std::vector<NamespaceDeclaration> namespaces;  // in the order written

  // The value of attribute `attribute_name`, or nullptr if absent.
  const std::string* Find(std::string_view attribute_name) const;
  // The URI bound to `ns_prefix` ("" = default namespace), or nullptr.
  const std::string* FindNamespace(std::string_view ns_prefix) const;
};

inline constexpr std::string_view kStreamsNamespace = "http://etherx.jabber.org/streams";

class Tokenizer {
 public:
  explicit Tokenizer(const TokenizerLimits& limits = TokenizerLimits());

  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Hands over the next bytes of the stream. The bytes must stay valid and
  // unchanged until Next() returns kNeedMoreData or kError.
  // REQUIRES: the previous buffer is drained (Next() returned kNeedMoreData or kError).
  void Feed(std::string_view bytes);

  // Returns the next token from the bytes fed so far.
  Token Next();

  // Starts a new stream at the current position (RFC 6120 stream restart after
  // STARTTLS or SASL success): the next bytes must be a new XML declaration
  // and/or stream header. Bytes already fed and not yet consumed are kept.
  void Restart();

  // The stream header. REQUIRES: Next() returned kStreamHeader.
  const StreamHeader& header() const { return header_; }
  // Frees the header's attributes once the caller has read them (an idle stream keeps
  // what it holds for as long as it is open). Its name and namespaces stay: the
  // tokenizer checks the closing tag and the stanzas' prefixes against them.
  void ReleaseHeaderAttributes() { std::vector<HeaderAttribute>().swap(header_.attributes); }

  // The error. REQUIRES: Next() returned kError.
  const xmpp::StreamError& error() const { return error_; }

  // Bytes consumed since construction (not reset by Restart()). On error, the
  // offset of the offending byte.
  uint64_t offset() const { return base_offset_ + pos_; }

 private:
  enum class State : uint8_t;

  Token Run();
  Token Fail(xmpp::StreamErrorCondition condition, std::string text, const char* at);
  Token FinishStartTag(const char* after, bool empty);
  Token FinishEndTag(const char* after);
  Token FinishHeader(const char* after);
  Token EmitElement(const char* after);
  // Pops the innermost open element, whose end tag ended just before `after`.
  Token CloseElement(const char* after);
  // Fast paths for markup that lies wholly in [p, end): they return the byte
  // after the tag, or nullptr (with no state changed) to use the resumable path.
  const char* FastStartTag(const char* p, const char* end, bool* empty);
  const char* FastEndTag(const char* p, const char* end) const;
  bool CheckXmlDeclaration(std::string* problem, bool* unsupported_encoding) const;
  bool PrefixDeclared(std::string_view qualified_name) const;
  // Validates one byte of non-ASCII UTF-8 (a lead or a continuation byte).
  bool StepUtf8(uint8_t byte);
  // Handles the byte after "&...;" text: false if the reference is refused.
  bool FinishEntity(std::string* problem, bool* restricted) const;
  std::string* CurrentName();

  TokenizerLimits limits_;

  // The buffer being consumed.
  const char* buf_ = nullptr;
  size_t len_ = 0;
  size_t pos_ = 0;
  uint64_t base_offset_ = 0;

  State state_;
  State entity_return_state_;

  // The top-level element (or header) being read: where it starts in buf_, or,
  // when it began in an earlier buffer, its bytes so far in spill_.
  bool in_element_ = false;
  bool spilling_ = false;
  bool in_header_ = false;
  size_t element_start_ = 0;           // in buf_, when !spilling_
  uint64_t element_start_offset_ = 0;  // in the whole stream
  std::string spill_;

  // Open elements inside the current stanza, as concatenated names.
  uint32_t depth_ = 0;
  std::string open_names_;
  std::vector<uint32_t> open_name_ends_;

  // The start tag being read.
  uint32_t tag_name_start_ = 0;  // offset of its name in open_names_
  std::string attribute_names_;
  std::vector<uint32_t> attribute_name_ends_;
  uint32_t attribute_count_ = 0;
  char attribute_quote_ = 0;
  uint32_t attribute_value_bytes_ = 0;
  bool attribute_is_declaration_ = false;
  // Prefixes declared inside the current stanza, with the depth that declared them.
  std::vector<std::pair<std::string, uint32_t>> stanza_prefixes_;
  size_t pending_declarations_ = 0;  // declarations in this tag not yet pushed

  // Attribute names of the start tag on the fast path (views into the buffer).
  std::vector<std::string_view> fast_attributes_;

  // The end tag being read.
  std::string end_name_;

  // Character or entity reference after '&', without the '&'.
  char entity_[12];
  uint8_t entity_length_ = 0;

  // Markup after "<!" or "<?".
  std::string markup_;
  // CDATA section: trailing ']' seen (0, 1 or 2+); text: the same, for "]]>".
  uint8_t cdata_brackets_ = 0;
  uint8_t text_brackets_ = 0;
  bool xml_declaration_allowed_ = true;

  // A multi-byte UTF-8 character in progress.
  uint8_t utf8_remaining_ = 0;
  uint32_t utf8_code_point_ = 0;
  uint32_t utf8_minimum_ = 0;

  StreamHeader header_;
  xmpp::StreamError error_;
};

}  // namespace stanzad::xml

#endif  // STANZAD_CORE_XML_TOKENIZER_H_
