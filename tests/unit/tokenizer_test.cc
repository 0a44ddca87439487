#include "core/xml/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/xml/start_tag.h"

namespace stanzad::xml {
namespace {

using ::testing::ElementsAre;
using xmpp::StreamErrorCondition;

// What a whole run of the tokenizer produced, with views copied out so runs
// over differently split input can be compared.
struct Event {
  TokenType type;
  std::string bytes;
  std::string name;
  StreamErrorCondition condition = StreamErrorCondition::kUndefinedCondition;
  uint64_t offset = 0;

  friend bool operator==(const Event&, const Event&) = default;
  friend std::ostream& operator<<(std::ostream& out, const Event& e) {
    out << "{type=" << static_cast<int>(e.type) << " name=" << e.name << " bytes=" << e.bytes;
    if (e.type == TokenType::kError) {
      out << " condition=" << xmpp::StreamErrorConditionName(e.condition) << " offset=" << e.offset;
    }
    return out << "}";
  }
};

// Feeds `input` in the chunks given by `cuts` (increasing offsets) and collects
// every token until the input is exhausted or an error occurs.
std::vector<Event> Tokenize(std::string_view input, const std::vector<size_t>& cuts,
                            const TokenizerLimits& limits = TokenizerLimits()) {
  Tokenizer tokenizer(limits);
  std::vector<Event> events;
  size_t start = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(input.size());
  for (size_t end : ends) {
    // Each chunk lives in its own allocation, so a view that outlives its
    // buffer is caught by ASan.
    std::string chunk(input.substr(start, end - start));
    start = end;
    tokenizer.Feed(chunk);
    while (true) {
      Token token = tokenizer.Next();
      if (token.type == TokenType::kNeedMoreData) break;
      Event event{token.type, std::string(token.bytes), std::string(token.name)};
      if (token.type == TokenType::kStreamHeader) {
        event.name = tokenizer.header().name;
      }
      if (token.type == TokenType::kError) {
        event.condition = tokenizer.error().condition;
        event.offset = tokenizer.offset();
        events.push_back(event);
        return events;
      }
      events.push_back(event);
    }
  }
  return events;
}

std::vector<Event> TokenizeWhole(std::string_view input,
                                 const TokenizerLimits& limits = TokenizerLimits()) {
  return Tokenize(input, {}, limits);
}

// The property every input must have: however it is split, the tokens are the
// same as for the unsplit input. Checks every single split point, byte-at-a-
// time feeding and random chunkings.
void ExpectSplitInvariant(std::string_view input,
                          const TokenizerLimits& limits = TokenizerLimits()) {
  const std::vector<Event> whole = TokenizeWhole(input, limits);
  for (size_t cut = 1; cut < input.size(); ++cut) {
    ASSERT_EQ(Tokenize(input, {cut}, limits), whole) << "split at offset " << cut;
  }
  std::vector<size_t> every_byte;
  for (size_t i = 1; i < input.size(); ++i) every_byte.push_back(i);
  ASSERT_EQ(Tokenize(input, every_byte, limits), whole) << "byte at a time";
  std::mt19937 random(static_cast<uint32_t>(input.size()));
  for (int round = 0; round < 100; ++round) {
    std::vector<size_t> cuts;
    size_t at = 0;
    while (true) {
      at += 1 + random() % 40;
      if (at >= input.size()) break;
      cuts.push_back(at);
    }
    ASSERT_EQ(Tokenize(input, cuts, limits), whole) << "random chunking round " << round;
  }
}

constexpr std::string_view kComponentHeader =
    "<stream:stream xmlns='jabber:component:accept' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.com'>";

std::string Stream(std::string_view body) {
  return std::string(kComponentHeader) + std::string(body);
}

std::vector<std::filesystem::path> CapturedStreams() {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(STANZAD_SOURCE_DIR) +
                                                               "/tests/data/streams")) {
    files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

TEST(TokenizerTest, ComponentStreamYieldsHeaderStanzasAndEnd) {
  const std::string input =
      "<?xml version='1.0'?>" + Stream(
                                    "<handshake>abc</handshake>\n"
                                    "<message to='cb2.example.com' from='cb1.example.com'>"
                                    "<body>hi</body></message> <presence/></stream:stream>");
  const std::vector<Event> events = TokenizeWhole(input);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].type, TokenType::kStreamHeader);
  EXPECT_EQ(events[0].bytes, kComponentHeader);
  EXPECT_EQ(events[1].bytes, "<handshake>abc</handshake>");
  EXPECT_EQ(events[1].name, "handshake");
  EXPECT_EQ(events[2].bytes,
            "<message to='cb2.example.com' from='cb1.example.com'><body>hi</body></message>");
  EXPECT_EQ(events[2].name, "message");
  EXPECT_EQ(events[3].bytes, "<presence/>");
  EXPECT_EQ(events[3].name, "presence");
  EXPECT_EQ(events[4].type, TokenType::kStreamEnd);
  EXPECT_EQ(events[4].bytes, "</stream:stream>");
  ExpectSplitInvariant(input);
}

TEST(TokenizerTest, HeaderAttributesAndNamespaces) {
  Tokenizer tokenizer;
  const std::string input =
      "<stream:stream to='example.com' version=\"1.0\" xml:lang='en' xmlns='jabber:client' "
      "xmlns:stream='http://etherx.jabber.org/streams' from='a&amp;b'>";
  tokenizer.Feed(input);
  ASSERT_EQ(tokenizer.Next().type, TokenType::kStreamHeader);
  const StreamHeader& header = tokenizer.header();
  EXPECT_EQ(header.name, "stream:stream");
  EXPECT_EQ(header.prefix, "stream");
  ASSERT_NE(header.Find("to"), nullptr);
  EXPECT_EQ(*header.Find("to"), "example.com");
  EXPECT_EQ(*header.Find("version"), "1.0");
  EXPECT_EQ(*header.Find("xml:lang"), "en");
  EXPECT_EQ(*header.Find("from"), "a&b");
  EXPECT_EQ(header.Find("id"), nullptr);
  EXPECT_THAT(header.namespaces,
              ElementsAre(NamespaceDeclaration{"", "jabber:client"},
                          NamespaceDeclaration{"stream", "http://etherx.jabber.org/streams"}));
  EXPECT_EQ(tokenizer.Next().type, TokenType::kNeedMoreData);
}

// A session that has read the header's attributes frees them; the stream goes on as
// before: its prefixes still resolve and its end tag still matches.
TEST(TokenizerTest, ReleasedHeaderAttributesLeaveTheStreamAsItWas) {
  Tokenizer tokenizer;
  tokenizer.Feed(
      "<stream:stream to='cb1.example.com' xmlns='jabber:component:accept' "
      "xmlns:stream='http://etherx.jabber.org/streams'>");
  ASSERT_EQ(tokenizer.Next().type, TokenType::kStreamHeader);
  ASSERT_NE(tokenizer.header().Find("to"), nullptr);
  tokenizer.ReleaseHeaderAttributes();
  EXPECT_TRUE(tokenizer.header().attributes.empty());
  EXPECT_EQ(tokenizer.header().attributes.capacity(), 0u);
  EXPECT_EQ(tokenizer.header().name, "stream:stream");
  EXPECT_EQ(tokenizer.header().namespaces.size(), 2u);
  tokenizer.Feed("<stream:error><x/></stream:error><undeclared:x/>");
  Token token = tokenizer.Next();
  ASSERT_EQ(token.type, TokenType::kElement);
  EXPECT_EQ(token.bytes, "<stream:error><x/></stream:error>");
  EXPECT_EQ(tokenizer.Next().type, TokenType::kError);  // "undeclared" still is not
}

TEST(TokenizerTest, UnprefixedStreamHeaderInStreamsNamespace) {
  const std::string input = "<stream xmlns='http://etherx.jabber.org/streams'><message/></stream>";
  const std::vector<Event> events = TokenizeWhole(input);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].name, "stream");
  EXPECT_EQ(events[1].bytes, "<message/>");
  EXPECT_EQ(events[2].type, TokenType::kStreamEnd);
}

TEST(TokenizerTest, ZeroCopyWhenElementLiesInOneBuffer) {
  const std::string input = Stream("<message><body>x</body></message>");
  Tokenizer tokenizer;
  tokenizer.Feed(input);
  ASSERT_EQ(tokenizer.Next().type, TokenType::kStreamHeader);
  Token token = tokenizer.Next();
  ASSERT_EQ(token.type, TokenType::kElement);
  EXPECT_GE(token.bytes.data(), input.data());
  EXPECT_LT(token.bytes.data(), input.data() + input.size());
}

TEST(TokenizerTest, ElementSpanningBuffersIsCopiedWhole) {
  const std::string head = Stream("<message><bo");
  const std::string tail = "dy>x</body></message><presence/>";
  Tokenizer tokenizer;
  tokenizer.Feed(head);
  ASSERT_EQ(tokenizer.Next().type, TokenType::kStreamHeader);
  ASSERT_EQ(tokenizer.Next().type, TokenType::kNeedMoreData);
  tokenizer.Feed(tail);
  Token message = tokenizer.Next();
  ASSERT_EQ(message.type, TokenType::kElement);
  EXPECT_EQ(message.bytes, "<message><body>x</body></message>");
  EXPECT_EQ(message.name, "message");
  Token presence = tokenizer.Next();
  ASSERT_EQ(presence.type, TokenType::kElement);
  EXPECT_EQ(presence.bytes, "<presence/>");
  // The second element lay wholly in the second buffer: a view into it.
  EXPECT_GE(presence.bytes.data(), tail.data());
  EXPECT_LT(presence.bytes.data(), tail.data() + tail.size());
}

TEST(TokenizerTest, WhitespaceKeepalivesBetweenStanzas) {
  const std::string input = Stream(" \n\t \r\n<a/>  \n <b/> ");
  const std::vector<Event> events = TokenizeWhole(input);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[1].bytes, "<a/>");
  EXPECT_EQ(events[2].bytes, "<b/>");
  ExpectSplitInvariant(input);
}

TEST(TokenizerTest, BothQuoteStylesAndQuotesInsideValues) {
  const std::string input = Stream("<m a='say \"hi\"' b=\"it's\" c = 'x' />");
  const std::vector<Event> events = TokenizeWhole(input);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].type, TokenType::kElement);
  EXPECT_EQ(FindRawAttribute(events[1].bytes, "a"), "say \"hi\"");
  EXPECT_EQ(FindRawAttribute(events[1].bytes, "b"), "it's");
  EXPECT_EQ(FindRawAttribute(events[1].bytes, "c"), "x");
  EXPECT_EQ(FindRawAttribute(events[1].bytes, "d"), std::nullopt);
  ExpectSplitInvariant(input);
}

TEST(TokenizerTest, CdataEntitiesAndCharacterReferences) {
  const std::string input = Stream(
      "<message><body><![CDATA[<not-a-tag> & ]] ]]]></body>"
      "<x a='&lt;&gt;&amp;&quot;&apos;&#65;&#x1F600;'>&#x10FFFF;&#9;&#xA;&#13;</x></message>");
  const std::vector<Event> events = TokenizeWhole(input);
  ASSERT_EQ(events.size(), 2u) << events.back();
  EXPECT_EQ(events[1].type, TokenType::kElement);
  ExpectSplitInvariant(input);
}

TEST(TokenizerTest, MultiByteUtf8SplitAcrossReads) {
  // 2-, 3- and 4-byte characters in text, attribute values and names.
  const std::string input =
      Stream("<message to='ÄÖÜ@例え.jp'><body>é€😀 你好</body><名前 属性='値'/></message>");
  const std::vector<Event> events = TokenizeWhole(input);
  ASSERT_EQ(events.size(), 2u) << events.back();
  EXPECT_EQ(events[1].type, TokenType::kElement);
  ExpectSplitInvariant(input);
}

TEST(TokenizerTest, RestartBeginsANewStream) {
  const std::string first = Stream("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
  Tokenizer tokenizer;
  tokenizer.Feed(first);
  ASSERT_EQ(tokenizer.Next().type, TokenType::kStreamHeader);
  ASSERT_EQ(tokenizer.Next().type, TokenType::kElement);
  tokenizer.Restart();
  ASSERT_EQ(tokenizer.Next().type, TokenType::kNeedMoreData);
  const std::string second =
      "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
      "xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
  tokenizer.Feed(second);
  ASSERT_EQ(tokenizer.Next().type, TokenType::kStreamHeader);
  EXPECT_EQ(*tokenizer.header().FindNamespace(""), "jabber:client");
}

TEST(TokenizerTest, CapturedStreamsTokenizeAndSurviveEverySplit) {
  const auto files = CapturedStreams();
  ASSERT_GE(files.size(), 4u);
  for (const auto& file : files) {
    SCOPED_TRACE(file.filename().string());
    const std::string input = ReadFile(file);
    const std::vector<Event> events = TokenizeWhole(input);
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.front().type, TokenType::kStreamHeader);
    EXPECT_EQ(events.back().type, TokenType::kStreamEnd) << events.back();
    for (size_t i = 1; i + 1 < events.size(); ++i) {
      EXPECT_EQ(events[i].type, TokenType::kElement);
      EXPECT_EQ(events[i].name, ElementName(events[i].bytes));
      // Each element is exactly the bytes of the input.
      EXPECT_NE(input.find(events[i].bytes), std::string::npos);
    }
    ExpectSplitInvariant(input);
  }
}

TEST(TokenizerTest, ElementAtExactlyTheByteLimitIsAccepted) {
  TokenizerLimits limits;
  limits.stanza_bytes_max = 64;
  std::string element = "<m>" + std::string(64 - 7, 'x') + "</m>";
  ASSERT_EQ(element.size(), 64u);
  const std::string input = Stream(element + "<n/>");
  const std::vector<Event> events = TokenizeWhole(input, limits);
  ASSERT_EQ(events.size(), 3u) << events.back();
  EXPECT_EQ(events[1].bytes, element);
  ExpectSplitInvariant(input, limits);
}

struct Rejection {
  const char* description;
  std::string input;
  StreamErrorCondition condition;
  TokenizerLimits limits = TokenizerLimits();
};

TokenizerLimits SmallLimits() {
  TokenizerLimits limits;
  limits.stanza_bytes_max = 100;
  limits.header_bytes_max = 200;
  limits.depth_max = 3;
  limits.attributes_max = 2;
  limits.name_bytes_max = 8;
  return limits;
}

std::vector<Rejection> Rejections() {
  using C = StreamErrorCondition;
  return {
      {"doctype", "<!DOCTYPE stream>" + Stream(""), C::kRestrictedXml},
      {"comment before header", "<!-- hi -->" + Stream(""), C::kRestrictedXml},
      {"comment in stanza", Stream("<m><!-- hi --></m>"), C::kRestrictedXml},
      {"comment between stanzas", Stream("<!-- hi -->"), C::kRestrictedXml},
      {"processing instruction", Stream("<?php echo 1; ?>"), C::kRestrictedXml},
      {"processing instruction in stanza", Stream("<m><?pi x?></m>"), C::kRestrictedXml},
      {"pi instead of declaration", "<?foo bar?>" + Stream(""), C::kRestrictedXml},
      {"declaration after whitespace", " <?xml version='1.0'?>" + Stream(""), C::kRestrictedXml},
      {"second declaration", "<?xml version='1.0'?><?xml version='1.0'?>", C::kRestrictedXml},
      {"entity declaration", Stream("<!ENTITY x 'y'>"), C::kRestrictedXml},
      {"undeclared entity", Stream("<m>&nbsp;</m>"), C::kRestrictedXml},
      {"undeclared entity in attribute", Stream("<m a='&foo;'/>"), C::kRestrictedXml},
      {"utf-16 declaration", "<?xml version='1.0' encoding='UTF-16'?>", C::kUnsupportedEncoding},
      {"mismatched tags", Stream("<a><b></a></b>"), C::kNotWellFormed},
      {"mismatched stream end", Stream("</stream:streem>"), C::kNotWellFormed},
      {"end tag before header", "</stream:stream>", C::kNotWellFormed},
      {"garbage before header", "hello", C::kNotWellFormed},
      {"unquoted attribute", Stream("<m a=b/>"), C::kNotWellFormed},
      {"missing equals", Stream("<m a 'b'/>"), C::kNotWellFormed},
      {"no space between attributes", Stream("<m a='1'b='2'/>"), C::kNotWellFormed},
      {"duplicate attribute", Stream("<m a='1' a='2'/>"), C::kNotWellFormed},
      {"less-than in attribute", Stream("<m a='<'/>"), C::kNotWellFormed},
      {"cdata end in text", Stream("<m>a]]>b</m>"), C::kNotWellFormed},
      {"bare ampersand", Stream("<m>a & b</m>"), C::kNotWellFormed},
      {"unterminated reference", Stream("<m>&amp</m>"), C::kNotWellFormed},
      {"char ref to NUL", Stream("<m>&#0;</m>"), C::kNotWellFormed},
      {"char ref to surrogate", Stream("<m>&#xD800;</m>"), C::kNotWellFormed},
      {"char ref out of range", Stream("<m>&#x110000;</m>"), C::kNotWellFormed},
      {"control character", Stream("<m>a\x01</m>"), C::kNotWellFormed},
      {"NUL byte", Stream(std::string("<m>a\0</m>", 9)), C::kNotWellFormed},
      {"control in attribute", Stream("<m a='\x1f'/>"), C::kNotWellFormed},
      {"invalid utf-8 lead", Stream("<m>\xff</m>"), C::kNotWellFormed},
      {"truncated utf-8", Stream("<m>\xc3</m>"), C::kNotWellFormed},
      {"overlong utf-8", Stream("<m>\xc0\xaf</m>"), C::kNotWellFormed},
      {"overlong 3-byte", Stream("<m>\xe0\x80\xaf</m>"), C::kNotWellFormed},
      {"utf-8 surrogate", Stream("<m>\xed\xa0\x80</m>"), C::kNotWellFormed},
      {"utf-8 above U+10FFFF", Stream("<m>\xf4\x90\x80\x80</m>"), C::kNotWellFormed},
      {"U+FFFE", Stream("<m>\xef\xbf\xbe</m>"), C::kNotWellFormed},
      {"invalid utf-8 in name", Stream("<m\xff/>"), C::kNotWellFormed},
      {"name starts with digit", Stream("<1m/>"), C::kNotWellFormed},
      {"double colon", Stream("<a:b:c xmlns:a='x'/>"), C::kNotWellFormed},
      {"empty prefix binding", Stream("<m xmlns:p=''/>"), C::kNotWellFormed},
      {"empty stream header", "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>",
       C::kNotWellFormed},
      {"slash without gt", Stream("<m/ >"), C::kNotWellFormed},
      {"cdata between stanzas", Stream("<![CDATA[x]]>"), C::kBadFormat},
      {"text between stanzas", Stream("hello"), C::kBadFormat},
      {"data after stream end", Stream("</stream:stream><m/>"), C::kBadFormat},
      {"undeclared element prefix", Stream("<foo:m/>"), C::kBadNamespacePrefix},
      {"undeclared attribute prefix", Stream("<m foo:a='1'/>"), C::kBadNamespacePrefix},
      {"prefix out of scope", Stream("<m><a xmlns:p='u'/><p:b/></m>"), C::kBadNamespacePrefix},
      {"undeclared header prefix", "<stream:stream>", C::kBadNamespacePrefix},
      {"wrong stream namespace", "<stream:stream xmlns:stream='jabber:client'>",
       C::kInvalidNamespace},
      {"wrong stream name", "<s:flow xmlns:s='http://etherx.jabber.org/streams'>",
       C::kInvalidNamespace},
      {"stanza over byte limit", Stream("<m>" + std::string(200, 'x') + "</m>"),
       C::kPolicyViolation, SmallLimits()},
      {"header over byte limit",
       "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='" +
           std::string(300, 'x') + "'>",
       C::kPolicyViolation, SmallLimits()},
      {"too deep",
       "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"
       "<a><b><c><d/></c></b></a>",
       C::kPolicyViolation, SmallLimits()},
      {"too many attributes",
       "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a x='1' y='2' z='3'/>",
       C::kPolicyViolation, SmallLimits()},
      {"long element name",
       "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><abcdefghij/>",
       C::kPolicyViolation, SmallLimits()},
      {"long attribute name",
       "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a abcdefghij='1'/>",
       C::kPolicyViolation, SmallLimits()},
      {"long end tag name",
       "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a></abcdefghij>",
       C::kPolicyViolation, SmallLimits()},
      {"stanza too big with later error",
       "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a>" +
           std::string(150, 'x') + "\x01</a>",
       C::kPolicyViolation, SmallLimits()},
  };
}

TEST(TokenizerTest, RejectsWithTheRightConditionHoweverSplit) {
  for (const Rejection& rejection : Rejections()) {
    SCOPED_TRACE(rejection.description);
    const std::vector<Event> events = TokenizeWhole(rejection.input, rejection.limits);
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().type, TokenType::kError) << events.back();
    EXPECT_EQ(events.back().condition, rejection.condition) << events.back();
    ExpectSplitInvariant(rejection.input, rejection.limits);
  }
}

TEST(TokenizerTest, ErrorIsStickyAndExplains) {
  Tokenizer tokenizer;
  const std::string input = Stream("<m><!-- x --></m>");
  tokenizer.Feed(input);
  ASSERT_EQ(tokenizer.Next().type, TokenType::kStreamHeader);
  ASSERT_EQ(tokenizer.Next().type, TokenType::kError);
  EXPECT_EQ(tokenizer.error().condition, StreamErrorCondition::kRestrictedXml);
  EXPECT_THAT(tokenizer.error().text, ::testing::HasSubstr("comment"));
  // The offset of the byte that made "<!--": "<m><!-" is 6 bytes into the body.
  EXPECT_EQ(tokenizer.offset(), kComponentHeader.size() + 6);
  EXPECT_EQ(tokenizer.Next().type, TokenType::kError);
  tokenizer.Feed("<m/>");
  EXPECT_EQ(tokenizer.Next().type, TokenType::kError);
}

TEST(TokenizerTest, SpilledElementIsBoundedByTheLimit) {
  TokenizerLimits limits;
  limits.stanza_bytes_max = 1024;
  Tokenizer tokenizer(limits);
  const std::string start = Stream("<message><body>");
  tokenizer.Feed(start);
  ASSERT_EQ(tokenizer.Next().type, TokenType::kStreamHeader);
  ASSERT_EQ(tokenizer.Next().type, TokenType::kNeedMoreData);
  const std::string chunk(100, 'x');
  int fed = 0;
  Token token;
  do {
    tokenizer.Feed(chunk);
    token = tokenizer.Next();
    ++fed;
  } while (token.type == TokenType::kNeedMoreData && fed < 100);
  EXPECT_EQ(token.type, TokenType::kError);
  EXPECT_EQ(tokenizer.error().condition, StreamErrorCondition::kPolicyViolation);
  EXPECT_EQ(fed, 11);
}

TEST(StartTagTest, NameAndAttributes) {
  const std::string_view element = "<iq type='get'\tto=\"a@b\" id='1'><ping/></iq>";
  EXPECT_EQ(ElementName(element), "iq");
  std::vector<std::pair<std::string, std::string>> seen;
  EXPECT_TRUE(ForEachAttribute(element, [&](std::string_view name, std::string_view value) {
    seen.emplace_back(name, value);
    return true;
  }));
  EXPECT_THAT(seen, ElementsAre(std::pair<std::string, std::string>{"type", "get"},
                                std::pair<std::string, std::string>{"to", "a@b"},
                                std::pair<std::string, std::string>{"id", "1"}));
  EXPECT_EQ(ElementName("<presence/>"), "presence");
  EXPECT_EQ(FindRawAttribute("<presence/>", "to"), std::nullopt);
  // Never reads out of bounds on truncated input.
  EXPECT_FALSE(ForEachAttribute("<m a='1", [](auto, auto) { return true; }));
  EXPECT_EQ(ElementName(""), "");
}

}  // namespace
}  // namespace stanzad::xml
