#include "core/xml/escape.h"

#include <gtest/gtest.h>

#include "core/xmpp/stream_error.h"

namespace stanzad::xml {
namespace {

TEST(EscapeTest, EscapesAllFiveSpecialCharacters) {
  std::string out;
  AppendEscaped("a<b>&\"c'", &out);
  EXPECT_EQ(out, "a&lt;b&gt;&amp;&quot;c&apos;");
}

TEST(EscapeTest, UnescapesPredefinedAndCharacterReferences) {
  EXPECT_EQ(Unescape("&lt;&gt;&amp;&quot;&apos;"), "<>&\"'");
  EXPECT_EQ(Unescape("&#65;&#x42;&#x1F600;"), "AB\xF0\x9F\x98\x80");
  EXPECT_EQ(Unescape("plain"), "plain");
  EXPECT_EQ(Unescape("&#xE9;"), "\xC3\xA9");
  EXPECT_EQ(Unescape("&#x20AC;"), "\xE2\x82\xAC");
  EXPECT_EQ(Unescape("&#00000065;"), "A");
  EXPECT_EQ(Unescape("&#1114111;"), "\xF4\x8F\xBF\xBF");  // U+10FFFF
}

TEST(EscapeTest, RefusesUnknownAndInvalidReferences) {
  EXPECT_EQ(Unescape("&nbsp;"), std::nullopt);
  EXPECT_EQ(Unescape("&amp"), std::nullopt);
  EXPECT_EQ(Unescape("&#0;"), std::nullopt);
  EXPECT_EQ(Unescape("&#xD800;"), std::nullopt);
  EXPECT_EQ(Unescape("&#x110000;"), std::nullopt);
  EXPECT_EQ(Unescape("&#x;"), std::nullopt);
  EXPECT_EQ(Unescape("&#99999999999999999999;"), std::nullopt);
  EXPECT_EQ(Unescape("&#1114112;"), std::nullopt);  // 0x110000
  for (const char* text : {"&#+65;", "&#-65;", "&# 65;", "&#65 ;", "&#;", "&#6x5;"}) {
    EXPECT_EQ(Unescape(text), std::nullopt) << text;
  }
  EXPECT_FALSE(IsValidCharacterReference("#xFFFE"));
  EXPECT_TRUE(IsValidCharacterReference("#x10FFFF"));
}

TEST(EscapeTest, RoundTrip) {
  const std::string text = "if (a < b && c > d) { s = \"it's\"; }";
  std::string escaped;
  AppendEscaped(text, &escaped);
  EXPECT_EQ(Unescape(escaped), text);
}

TEST(StreamErrorTest, SerializesConditionAndEscapedText) {
  xmpp::StreamError error{xmpp::StreamErrorCondition::kNotWellFormed, "bad <tag>"};
  EXPECT_EQ(xmpp::SerializeStreamError(error),
            "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bad &lt;tag&gt;</text>"
            "</stream:error>");
  EXPECT_EQ(xmpp::StreamErrorConditionName(xmpp::StreamErrorCondition::kPolicyViolation),
            "policy-violation");
  EXPECT_EQ(xmpp::SerializeStreamError({xmpp::StreamErrorCondition::kHostUnknown, ""}),
            "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            "</stream:error>");
}

}  // namespace
}  // namespace stanzad::xml
