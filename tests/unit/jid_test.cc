#include "core/jid/jid.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/hash/hash_testing.h"

namespace stanzad::jid {
namespace {

using namespace std::string_view_literals;

// The canonical text of `text`, or "error: " and the message.
std::string Canonical(std::string_view text) {
  absl::StatusOr<Jid> jid = Jid::Parse(text);
  if (!jid.ok()) return "error: " + std::string(jid.status().message());
  return jid->ToString();
}

// The error message for `text`, or "ok" if it parses.
std::string ErrorOf(std::string_view text) {
  absl::StatusOr<Jid> jid = Jid::Parse(text);
  if (jid.ok()) return "ok";
  EXPECT_EQ(jid.status().code(), absl::StatusCode::kInvalidArgument) << text;
  return std::string(jid.status().message());
}

Jid ParseOrDie(std::string_view text) {
  absl::StatusOr<Jid> jid = Jid::Parse(text);
  EXPECT_TRUE(jid.ok()) << text << ": " << jid.status();
  return jid.ok() ? *jid : *Jid::Parse("parse.failed.invalid");
}

std::string Repeat(std::string_view piece, size_t times) {
  std::string out;
  for (size_t i = 0; i < times; ++i) out.append(piece);
  return out;
}

// A domain name of exactly `bytes` bytes made of 62-byte labels and a shorter last one.
std::string DomainOfLength(size_t bytes) {
  std::string domain;
  while (bytes - domain.size() > 63) domain += Repeat("d", 62) + ".";
  domain += Repeat("e", bytes - domain.size());
  return domain;
}

// Checks what must hold for every Jid, however it was made.
void ExpectInvariants(const Jid& jid) {
  EXPECT_FALSE(jid.domainpart().empty());
  EXPECT_LE(jid.localpart().size(), kJidPartBytesMax);
  EXPECT_LE(jid.domainpart().size(), kJidPartBytesMax);
  EXPECT_LE(jid.resourcepart().size(), kJidPartBytesMax);
  EXPECT_EQ(jid.has_localpart(), !jid.localpart().empty());
  EXPECT_EQ(jid.has_resource(), !jid.resourcepart().empty());
  std::string assembled;
  if (jid.has_localpart()) assembled += std::string(jid.localpart()) + "@";
  assembled += jid.domainpart();
  if (jid.has_resource()) assembled += "/" + std::string(jid.resourcepart());
  EXPECT_EQ(assembled, jid.ToString());
  // The canonical form is a fixed point.
  absl::StatusOr<Jid> again = Jid::Parse(jid.ToString());
  ASSERT_TRUE(again.ok()) << jid << ": " << again.status();
  EXPECT_EQ(*again, jid);
  EXPECT_TRUE(jid.Bare().IsBare());
  EXPECT_EQ(jid.Bare().domainpart(), jid.domainpart());
  EXPECT_EQ(jid.Bare().localpart(), jid.localpart());
}

TEST(JidTest, AcceptsTheValidExamplesOfRfc7622Section3_5) {
  struct Example {
    std::string_view text;
    std::string_view localpart;
    std::string_view domainpart;
    std::string_view resourcepart;
  };
  const Example kExamples[] = {
      {"juliet@example.com", "juliet", "example.com", ""},
      {"juliet@example.com/foo", "juliet", "example.com", "foo"},
      {"juliet@example.com/foo bar", "juliet", "example.com", "foo bar"},
      {"juliet@example.com/foo@bar", "juliet", "example.com", "foo@bar"},
      {"foo\\20bar@example.com", "foo\\20bar", "example.com", ""},
      {"fussball@example.com", "fussball", "example.com", ""},
      {"fußball@example.com", "fußball", "example.com", ""},
      {"π@example.com", "π", "example.com", ""},
      {"Σ@example.com/foo", "σ", "example.com", "foo"},
      {"σ@example.com/foo", "σ", "example.com", "foo"},
      {"ς@example.com/foo", "ς", "example.com", "foo"},
      {"king@example.com/♚", "king", "example.com", "♚"},
      {"example.com", "", "example.com", ""},
      {"example.com/foobar", "", "example.com", "foobar"},
      {"a.example.com/b@example.net", "", "a.example.com", "b@example.net"},
  };
  for (const Example& example : kExamples) {
    SCOPED_TRACE(example.text);
    absl::StatusOr<Jid> jid = Jid::Parse(example.text);
    ASSERT_TRUE(jid.ok()) << jid.status();
    EXPECT_EQ(jid->localpart(), example.localpart);
    EXPECT_EQ(jid->domainpart(), example.domainpart);
    EXPECT_EQ(jid->resourcepart(), example.resourcepart);
    ExpectInvariants(*jid);
  }
}

TEST(JidTest, RefusesTheInvalidExamplesOfRfc7622Section3_6) {
  EXPECT_EQ(ErrorOf("\"juliet\"@example.com"), "JID localpart contains '\"'");
  EXPECT_EQ(ErrorOf("foo bar@example.com"), "JID localpart contains a space");
  EXPECT_EQ(ErrorOf("@example.com/"), "JID localpart is empty");
  // Ⅳ lowercases to ⅳ, a compatibility character that IdentifierClass refuses.
  EXPECT_EQ(ErrorOf("henriⅣ@example.com"),
            "JID localpart contains disallowed code point U+2173 SMALL ROMAN NUMERAL FOUR");
  EXPECT_EQ(ErrorOf("♚@example.com"),
            "JID localpart contains disallowed code point U+265A BLACK CHESS KING");
  EXPECT_EQ(ErrorOf("juliet@"), "JID domainpart is empty");
  EXPECT_EQ(ErrorOf("/foobar"), "JID domainpart is empty");
}

// §3.6 also lists "juliet@example.com/ foo", but OpaqueString allows spaces
// anywhere; jid.h explains why the router accepts it.
TEST(JidTest, AcceptsALeadingSpaceInTheResourcepart) {
  EXPECT_EQ(Canonical("juliet@example.com/ foo"), "juliet@example.com/ foo");
  EXPECT_EQ(Canonical("juliet@example.com/ "), "juliet@example.com/ ");
}

TEST(JidTest, SplitsAtTheFirstSlashAndTheAtSignBeforeIt) {
  Jid jid = ParseOrDie("a@b/c@d/e");
  EXPECT_EQ(jid.localpart(), "a");
  EXPECT_EQ(jid.domainpart(), "b");
  EXPECT_EQ(jid.resourcepart(), "c@d/e");

  jid = ParseOrDie("example.net/x@y");
  EXPECT_FALSE(jid.has_localpart());
  EXPECT_EQ(jid.domainpart(), "example.net");
  EXPECT_EQ(jid.resourcepart(), "x@y");

  jid = ParseOrDie("example.net//@//");
  EXPECT_EQ(jid.resourcepart(), "/@//");

  EXPECT_EQ(ErrorOf("a@b@example.com"), "JID domainpart contains '@'");
}

TEST(JidTest, RefusesEmptyParts) {
  EXPECT_EQ(ErrorOf(""), "JID domainpart is empty");
  EXPECT_EQ(ErrorOf("@"), "JID localpart is empty");
  EXPECT_EQ(ErrorOf("@d"), "JID localpart is empty");
  EXPECT_EQ(ErrorOf("a@"), "JID domainpart is empty");
  EXPECT_EQ(ErrorOf("a@/r"), "JID domainpart is empty");
  EXPECT_EQ(ErrorOf("d/"), "JID resourcepart is empty");
  EXPECT_EQ(ErrorOf("a@d/"), "JID resourcepart is empty");
  EXPECT_EQ(ErrorOf("/"), "JID domainpart is empty");
  EXPECT_EQ(ErrorOf("."), "JID domainpart is empty");
  EXPECT_EQ(ErrorOf("a@./r"), "JID domainpart is empty");
}

TEST(JidTest, LimitsEachPartTo1023Bytes) {
  const std::string local_1023 = Repeat("l", 1023);
  const std::string local_1024 = Repeat("l", 1024);
  EXPECT_EQ(Canonical(local_1023 + "@example.com"), local_1023 + "@example.com");
  EXPECT_EQ(ErrorOf(local_1024 + "@example.com"), "JID localpart longer than 1023 bytes");

  const std::string domain_1023 = DomainOfLength(1023);
  ASSERT_EQ(domain_1023.size(), 1023u);
  EXPECT_EQ(Canonical(domain_1023), domain_1023);
  EXPECT_EQ(Canonical(domain_1023 + "."), domain_1023) << "the final dot goes first";
  EXPECT_EQ(ErrorOf(DomainOfLength(1024)), "JID domainpart longer than 1023 bytes");

  const std::string resource_1023 = Repeat("R", 1023);
  EXPECT_EQ(Canonical("example.com/" + resource_1023), "example.com/" + resource_1023);
  EXPECT_EQ(ErrorOf("example.com/" + Repeat("R", 1024)), "JID resourcepart longer than 1023 bytes");

  // The largest JID: three full parts and two separators.
  const std::string largest = local_1023 + "@" + domain_1023 + "/" + resource_1023;
  EXPECT_EQ(Canonical(largest).size(), 3071u);
}

TEST(JidTest, CountsTheBytesOfTheCanonicalForm) {
  // "é" is two bytes in UTF-8.
  EXPECT_EQ(ErrorOf(Repeat("é", 511) + "a@example.com"), "ok");
  EXPECT_EQ(ErrorOf(Repeat("é", 512) + "@example.com"), "JID localpart longer than 1023 bytes");
  // U+1F600 GRINNING FACE is four.
  EXPECT_EQ(ErrorOf("example.com/" + Repeat("\U0001F600", 255) + "abc"), "ok");
  EXPECT_EQ(ErrorOf("example.com/" + Repeat("\U0001F600", 256)),
            "JID resourcepart longer than 1023 bytes");
  // e + U+0301 (three bytes) composes to é (two): 1200 bytes given, 800 kept.
  EXPECT_EQ(Canonical(Repeat("e\u0301", 400) + "@x"), Repeat("é", 400) + "@x");
  // İ (two bytes) lowercases to i + U+0307 (three): 800 bytes given, 1200 kept.
  EXPECT_EQ(ErrorOf(Repeat("İ", 400) + "@x"), "JID localpart longer than 1023 bytes");
}

TEST(JidTest, LimitsDomainLabelsTo63BytesInTheirAsciiForm) {
  EXPECT_EQ(Canonical(Repeat("a", 63) + ".example"), Repeat("a", 63) + ".example");
  EXPECT_EQ(ErrorOf(Repeat("a", 64) + ".example"), "JID domainpart label longer than 63 bytes");
  EXPECT_EQ(ErrorOf("example." + Repeat("a", 64)), "JID domainpart label longer than 63 bytes");
  // 57 × é is the A-label "xn--" + 59 bytes; 58 × é needs 64 bytes.
  EXPECT_EQ(Canonical(Repeat("é", 57) + ".example"), Repeat("é", 57) + ".example");
  EXPECT_EQ(ErrorOf(Repeat("é", 58) + ".example"), "JID domainpart label longer than 63 bytes");
}

TEST(JidTest, FoldsLocalpartAndDomainpartToLowercase) {
  EXPECT_EQ(Canonical("JuLiEt@ExAmPlE.CoM/BaLcOnY"), "juliet@example.com/BaLcOnY");
  EXPECT_EQ(Canonical("ÄÖ@EXAMPLE.COM"), "äö@example.com");
  EXPECT_EQ(Canonical("A\u0308O\u0308@example.com"), "äö@example.com");
  EXPECT_EQ(Canonical("ÉLAN@BÜCHER.EXAMPLE/Élan"), "élan@bücher.example/Élan");
  EXPECT_EQ(Canonical("ΣΑΣ@example.com"), "σας@example.com") << "final sigma in context";
  EXPECT_EQ(Canonical("İ@example.com"), "i\u0307@example.com");
  // Width mapping: fullwidth letters are the same identity as plain ones.
  EXPECT_EQ(Canonical("ＪＵＬＩＥＴ@example.com"), "juliet@example.com");
  EXPECT_EQ(Canonical("ｶﾞ@example.com"), "ガ@example.com");
  // Distinct identities stay distinct.
  EXPECT_NE(ParseOrDie("fußball@example.com"), ParseOrDie("fussball@example.com"));
  EXPECT_NE(ParseOrDie("ς@example.com"), ParseOrDie("σ@example.com"));
  EXPECT_NE(ParseOrDie("a@example.com/R"), ParseOrDie("a@example.com/r"));
}

TEST(JidTest, NormalisesTheResourcepartButKeepsItsCase) {
  EXPECT_EQ(Canonical("a@example.com/A\u0308"), "a@example.com/Ä");
  EXPECT_EQ(Canonical("a@example.com/x\u00A0y"), "a@example.com/x y");
  EXPECT_EQ(Canonical("a@example.com/\u2003x\u3000"), "a@example.com/ x ");
  // OpaqueString takes symbols and compatibility characters as they are.
  EXPECT_EQ(Canonical("a@example.com/Ⅳ ＲＥＳ 😀"), "a@example.com/Ⅳ ＲＥＳ 😀");
}

TEST(JidTest, NamesTheCharacterALocalpartMayNotHold) {
  EXPECT_EQ(ErrorOf("a&b@example.com"), "JID localpart contains '&'");
  EXPECT_EQ(ErrorOf("a'b@example.com"), "JID localpart contains '''");
  EXPECT_EQ(ErrorOf("a:b@example.com"), "JID localpart contains ':'");
  EXPECT_EQ(ErrorOf("a<b@example.com"), "JID localpart contains '<'");
  EXPECT_EQ(ErrorOf("a>b@example.com"), "JID localpart contains '>'");
  EXPECT_EQ(ErrorOf("a\tb@example.com"), "JID localpart contains control character U+0009");
  EXPECT_EQ(ErrorOf("a\x7F@example.com"), "JID localpart contains control character U+007F");
  EXPECT_EQ(ErrorOf("a\0b@example.com"sv), "JID localpart contains control character U+0000");
  // Width mapping must not smuggle in the characters RFC 7622 keeps out.
  EXPECT_EQ(ErrorOf("a＠b@example.com"), "JID localpart contains '@'");
  EXPECT_EQ(ErrorOf("a／b@example.com"), "JID localpart contains '/'");
  EXPECT_EQ(ErrorOf("a\u3000b@example.com"), "JID localpart contains a space");
  EXPECT_EQ(ErrorOf("a\u00A0b@example.com"),
            "JID localpart contains disallowed code point U+00A0 NO-BREAK SPACE");
  EXPECT_EQ(ErrorOf("a\u00ADb@example.com"),
            "JID localpart contains disallowed code point U+00AD SOFT HYPHEN");
  EXPECT_EQ(ErrorOf("\u0378@example.com"), "JID localpart contains unassigned code point U+0378");
  EXPECT_EQ(ErrorOf("\uE000@example.com"), "JID localpart contains disallowed code point U+E000");
  EXPECT_EQ(ErrorOf("\u1100@example.com"),
            "JID localpart contains disallowed code point U+1100 HANGUL CHOSEONG KIYEOK");
  EXPECT_EQ(ErrorOf("\u0640@example.com"),
            "JID localpart contains disallowed code point U+0640 ARABIC TATWEEL");
}

TEST(JidTest, AppliesTheContextualRulesOfRfc5892ToTheLocalpart) {
  EXPECT_EQ(Canonical("col·la@example.com"), "col·la@example.com");
  EXPECT_EQ(Canonical("L·L@example.com"), "l·l@example.com");
  EXPECT_EQ(ErrorOf("co·lla@example.com"),
            "JID localpart contains U+00B7 MIDDLE DOT where RFC 5892 appendix A does not allow it");
  EXPECT_EQ(Canonical("\u0375α@example.com"), "\u0375α@example.com");
  EXPECT_NE(ErrorOf("\u0375a@example.com"), "ok");
  EXPECT_EQ(Canonical("א\u05F3@example.com"), "א\u05F3@example.com");
  EXPECT_NE(ErrorOf("\u05F3א@example.com"), "ok");
  EXPECT_EQ(Canonical("カ・a@example.com"), "カ・a@example.com");
  EXPECT_NE(ErrorOf("a・b@example.com"), "ok");
  EXPECT_EQ(Canonical("क्\u200Dष@example.com"), "क्\u200Dष@example.com");
  EXPECT_EQ(Canonical("ب\u200Cب@example.com"), "ب\u200Cب@example.com");
  EXPECT_NE(ErrorOf("a\u200Cb@example.com"), "ok");
  EXPECT_NE(ErrorOf("a\u200Db@example.com"), "ok");
  EXPECT_NE(ErrorOf("\u0661\u06F2@example.com"), "ok");
}

TEST(JidTest, AppliesTheBidiRuleToTheLocalpart) {
  EXPECT_EQ(Canonical("אב1@example.com"), "אב1@example.com");
  EXPECT_EQ(ErrorOf("אבa@example.com"), "JID localpart breaks the Bidi rule of RFC 5893");
  EXPECT_EQ(ErrorOf("aאב@example.com"), "JID localpart breaks the Bidi rule of RFC 5893");
  EXPECT_EQ(ErrorOf("1אב@example.com"), "JID localpart breaks the Bidi rule of RFC 5893");
}

TEST(JidTest, RefusesControlAndInvisibleCodePointsInTheResourcepart) {
  EXPECT_EQ(ErrorOf("a@example.com/x\x01"), "JID resourcepart contains control character U+0001");
  EXPECT_EQ(ErrorOf("a@example.com/\x7F"), "JID resourcepart contains control character U+007F");
  EXPECT_EQ(ErrorOf("a@example.com/x\ny"), "JID resourcepart contains control character U+000A");
  EXPECT_EQ(ErrorOf("a@example.com/\u0085"),
            "JID resourcepart contains disallowed code point U+0085");
  EXPECT_EQ(ErrorOf("a@example.com/a\u00ADb"),
            "JID resourcepart contains disallowed code point U+00AD SOFT HYPHEN");
  EXPECT_EQ(ErrorOf("a@example.com/\uE000"),
            "JID resourcepart contains disallowed code point U+E000");
  EXPECT_EQ(ErrorOf("a@example.com/\u0378"),
            "JID resourcepart contains unassigned code point U+0378");
  EXPECT_NE(ErrorOf("a@example.com/a\u200Db"), "ok");
  EXPECT_NE(ErrorOf("a@example.com/a·b"), "ok");
}

TEST(JidTest, StripsOneTrailingDotFromTheDomainpart) {
  EXPECT_EQ(Canonical("juliet@example.com./r"), "juliet@example.com/r");
  EXPECT_EQ(Canonical("A.Example.nEt."), "a.example.net");
  EXPECT_EQ(ParseOrDie("example.com."), ParseOrDie("example.com"));
  EXPECT_EQ(ErrorOf("example.com.."), "JID domainpart has an empty label");
  EXPECT_EQ(ErrorOf(".example.com"), "JID domainpart has an empty label");
  EXPECT_EQ(ErrorOf("a..b"), "JID domainpart has an empty label");
}

TEST(JidTest, HoldsDomainNamesToLetterDigitHyphenRules) {
  EXPECT_EQ(Canonical("localhost"), "localhost");
  EXPECT_EQ(Canonical("a-b.x-1.example"), "a-b.x-1.example");
  EXPECT_EQ(ErrorOf("-a.example"), "JID domainpart label starts with '-'");
  EXPECT_EQ(ErrorOf("a-.example"), "JID domainpart label ends with '-'");
  EXPECT_EQ(ErrorOf("ab--cd.example"),
            "JID domainpart label has '--' in its third and fourth positions");
  EXPECT_EQ(ErrorOf("_xmpp.example"), "JID domainpart contains '_'");
  EXPECT_EQ(ErrorOf("a b.example"), "JID domainpart contains a space");
  EXPECT_EQ(ErrorOf("a\tb.example"), "JID domainpart contains control character U+0009");
  EXPECT_EQ(ErrorOf("example.com:5222"), "JID domainpart contains ':'");
  EXPECT_EQ(ErrorOf("::1"), "JID domainpart contains ':'");
  EXPECT_EQ(ErrorOf("a%20b.example"), "JID domainpart contains '%'");
}

TEST(JidTest, ProcessesInternationalDomainNamesWithUts46) {
  EXPECT_EQ(Canonical("BÜCHER.example"), "bücher.example");
  EXPECT_EQ(Canonical("BU\u0308CHER.example"), "bücher.example");
  EXPECT_EQ(Canonical("XN--BCHER-KVA.example"), "bücher.example");
  EXPECT_EQ(ParseOrDie("xn--bcher-kva.example"), ParseOrDie("bücher.example"));
  EXPECT_EQ(Canonical("ＥＸＡＭＰＬＥ。com"), "example.com");
  EXPECT_EQ(Canonical("faß.de"), "faß.de") << "nontransitional: ß stays";
  EXPECT_EQ(Canonical("xn--fa-hia.de"), "faß.de");
  EXPECT_EQ(Canonical("例え.テスト"), "例え.テスト");
  EXPECT_EQ(Canonical("l·l.cat"), "l·l.cat");
  EXPECT_EQ(ErrorOf("xn--.example"),
            "JID domainpart has an A-label that does not decode to a valid U-label");
  EXPECT_EQ(ErrorOf("xn--zzzzzzzzzzzz.example"),
            "JID domainpart has an A-label that is not valid Punycode");
  EXPECT_NE(ErrorOf("xn--abc-.example"), "ok");
  // UTS #46 lets symbols through; IDNA2008 does not.
  EXPECT_EQ(ErrorOf("😀.example"),
            "JID domainpart contains disallowed code point U+1F600 GRINNING FACE");
  EXPECT_EQ(ErrorOf("xn--i-n3p.example"),
            "JID domainpart contains disallowed code point U+2665 BLACK HEART SUIT");
  EXPECT_NE(ErrorOf("a·b.example"), "ok");
  EXPECT_NE(ErrorOf("\u0301a.example"), "ok");
  EXPECT_NE(ErrorOf("a\u200Db.example"), "ok");
  EXPECT_EQ(ErrorOf("אבa.example"), "JID domainpart breaks the Bidi rule of RFC 5893");
  EXPECT_EQ(ErrorOf("\u0661\u06F2.example"),
            "JID domainpart mixes Arabic-Indic and extended Arabic-Indic digits");
  EXPECT_EQ(ErrorOf("ü_x.example"), "JID domainpart contains '_'");
  EXPECT_EQ(ErrorOf("ü\u3000x.example"), "JID domainpart contains a space");
  EXPECT_EQ(ErrorOf("ü＠x.example"), "JID domainpart contains '@'");
  EXPECT_EQ(ErrorOf("\u00AD.example"), "JID domainpart has an empty label");
}

TEST(JidTest, AcceptsIpAddressesAsDomainparts) {
  EXPECT_EQ(Canonical("127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(Canonical("juliet@192.0.2.1/r"), "juliet@192.0.2.1/r");
  EXPECT_EQ(Canonical("[::1]"), "[::1]");
  EXPECT_EQ(Canonical("juliet@[::1]/balcony"), "juliet@[::1]/balcony");
  EXPECT_EQ(Canonical("[::1]."), "[::1]");
  EXPECT_EQ(Canonical("[::]"), "[::]");
  // RFC 5952 text, so that one address has one JID.
  EXPECT_EQ(Canonical("[2001:0DB8:0:0:0:0:0:1]"), "[2001:db8::1]");
  EXPECT_EQ(Canonical("[2001:db8:0:0:1:0:0:1]"), "[2001:db8::1:0:0:1]");
  EXPECT_EQ(Canonical("[2001:db8:0:1:1:1:1:1]"), "[2001:db8:0:1:1:1:1:1]");
  EXPECT_EQ(Canonical("[1::]"), "[1::]");
  EXPECT_EQ(Canonical("[::FFFF:192.0.2.1]"), "[::ffff:192.0.2.1]");
  EXPECT_EQ(Canonical("[0:0:0:0:0:ffff:c000:201]"), "[::ffff:192.0.2.1]");
  EXPECT_EQ(Canonical("[1:2:3:4:5:6:192.0.2.1]"), "[1:2:3:4:5:6:c000:201]");

  EXPECT_EQ(ErrorOf("[::1"), "JID domainpart IP literal does not end with ']'");
  EXPECT_EQ(ErrorOf("[::1]:5222"), "JID domainpart IP literal does not end with ']'");
  EXPECT_EQ(ErrorOf("[]"), "JID domainpart IP literal is not a valid IPv6 address");
  for (std::string_view literal :
       {"[::gg]", "[1::2::3]", "[::1%25eth0]", "[1:2:3:4:5:6:7:8:9]", "[1:2:3:4:5:6:7]",
        "[1:2:3:4:5:6:7:8::]", "[12345::]", "[:1::]", "[1:]", "[::1.2.3]", "[::256.0.0.1]",
        "[1:2:3:4:5:6:7:1.2.3.4]", "[ ::1]", "[::1.2.3.4:5]"}) {
    EXPECT_EQ(ErrorOf(literal), "JID domainpart IP literal is not a valid IPv6 address") << literal;
  }
  EXPECT_EQ(ErrorOf("[v1.example]"),
            "JID domainpart is an IPvFuture literal, which is not supported");
  for (std::string_view address : {"256.0.0.1", "1.2.3", "01.2.3.4", "1.2.3.4.5", "1234",
                                   "1.2.3.1234", "1.2.3.0400", "1.2.3.00", "1.2.3.99999999999"}) {
    EXPECT_EQ(ErrorOf(address),
              "JID domainpart is made of digits and dots but is not an IPv4 address")
        << address;
  }
  EXPECT_EQ(Canonical("１２７.０.０.１"), "127.0.0.1");
}

TEST(JidTest, RefusesInvalidUtf8) {
  EXPECT_EQ(ErrorOf("\xC3@example.com"), "JID localpart is not valid UTF-8");
  EXPECT_EQ(ErrorOf("\xC0\xAF@example.com"), "JID localpart is not valid UTF-8");
  EXPECT_EQ(ErrorOf("\x80@example.com"), "JID localpart is not valid UTF-8");
  EXPECT_EQ(ErrorOf("\xF4\x90\x80\x80@example.com"), "JID localpart is not valid UTF-8");
  EXPECT_EQ(ErrorOf("\xE0\x80\xAF@example.com"), "JID localpart is not valid UTF-8");
  EXPECT_EQ(ErrorOf("a@exa\xFFmple.com"), "JID domainpart is not valid UTF-8");
  EXPECT_EQ(ErrorOf("a@example.com/\xED\xA0\x80"), "JID resourcepart is not valid UTF-8");
  EXPECT_EQ(ErrorOf("a@example.com/\xF0\x9F\x98"), "JID resourcepart is not valid UTF-8");
}

TEST(JidTest, BareDropsTheResourcepart) {
  const Jid full = ParseOrDie("Juliet@Example.com/Balcony");
  EXPECT_TRUE(full.has_resource());
  EXPECT_FALSE(full.IsBare());
  EXPECT_EQ(full.Full(), "juliet@example.com/Balcony");
  EXPECT_EQ(full.ToString(), full.Full());

  const Jid bare = full.Bare();
  EXPECT_TRUE(bare.IsBare());
  EXPECT_FALSE(bare.has_resource());
  EXPECT_EQ(bare.ToString(), "juliet@example.com");
  EXPECT_EQ(bare.resourcepart(), "");
  EXPECT_EQ(bare, ParseOrDie("juliet@example.com"));
  EXPECT_EQ(bare.Bare(), bare);

  const Jid domain = ParseOrDie("example.com/r");
  EXPECT_FALSE(domain.has_localpart());
  EXPECT_EQ(domain.localpart(), "");
  EXPECT_EQ(domain.Bare().ToString(), "example.com");

  std::ostringstream printed;
  printed << full;
  EXPECT_EQ(printed.str(), "juliet@example.com/Balcony");
}

TEST(JidTest, EqualsHashesAndOrdersByCanonicalForm) {
  const Jid upper = ParseOrDie("JULIET@EXAMPLE.COM.");
  const Jid lower = ParseOrDie("juliet@example.com");
  EXPECT_EQ(upper, lower);
  EXPECT_EQ(absl::Hash<Jid>()(upper), absl::Hash<Jid>()(lower));
  EXPECT_EQ(ParseOrDie("ÄÖ@BÜCHER.EXAMPLE"), ParseOrDie("a\u0308o\u0308@xn--bcher-kva.example"));
  EXPECT_NE(ParseOrDie("juliet@example.com/a"), lower);

  absl::flat_hash_set<Jid> set = {upper, lower, ParseOrDie("Juliet@Example.Com")};
  EXPECT_EQ(set.size(), 1u);
  absl::flat_hash_map<Jid, int> sessions;
  sessions[ParseOrDie("romeo@example.net/Orchard")] = 7;
  EXPECT_EQ(sessions.count(ParseOrDie("ROMEO@example.net./Orchard")), 1u);
  EXPECT_EQ(sessions.count(ParseOrDie("romeo@example.net/orchard")), 0u);

  EXPECT_TRUE(absl::VerifyTypeImplementsAbslHashCorrectly({
      ParseOrDie("juliet@example.com"),
      ParseOrDie("juliet@example.com/balcony"),
      ParseOrDie("example.com"),
      ParseOrDie("example.com/juliet@example.com"),
      ParseOrDie("[::1]"),
      ParseOrDie("ä@bücher.example/Ä"),
  }));

  EXPECT_LT(ParseOrDie("a@example.com"), ParseOrDie("b@example.com"));
  EXPECT_LT(ParseOrDie("a@example.com"), ParseOrDie("a@example.com/r"));
  EXPECT_FALSE(upper < lower);
  EXPECT_FALSE(lower < upper);
  const std::set<Jid> ordered = {ParseOrDie("c.example"), ParseOrDie("A.example"),
                                 ParseOrDie("b.example"), ParseOrDie("a.example")};
  ASSERT_EQ(ordered.size(), 3u);
  EXPECT_EQ(ordered.begin()->ToString(), "a.example");
}

TEST(JidTest, IsACompactValue) {
  EXPECT_LE(sizeof(Jid), sizeof(std::string) + 8);
  Jid original = ParseOrDie("juliet@example.com/balcony");
  Jid copy = original;
  Jid moved = std::move(original);
  EXPECT_EQ(copy, moved);
  EXPECT_EQ(moved.resourcepart(), "balcony");
  copy = ParseOrDie("example.net");
  EXPECT_EQ(copy.ToString(), "example.net");
}

// Random bytes, weighted toward separators and the first bytes of UTF-8
// sequences, never crash the parser; whatever it accepts is canonical.
TEST(JidTest, SurvivesRandomBytes) {
  std::mt19937 random(7622);
  constexpr std::string_view kInteresting = "@/.[]:-_aZx9n\\ \t\x80\xBF\xC3\xE2\xED\xF0\xF4\xFF";
  int accepted = 0;
  for (int round = 0; round < 100000; ++round) {
    const size_t length = random() % 40;
    std::string text;
    for (size_t i = 0; i < length; ++i) {
      if (random() % 2 == 0) {
        text.push_back(kInteresting[random() % kInteresting.size()]);
      } else {
        text.push_back(static_cast<char>(random() % 256));
      }
    }
    absl::StatusOr<Jid> jid = Jid::Parse(text);
    if (!jid.ok()) {
      ASSERT_FALSE(jid.status().message().empty());
      continue;
    }
    ++accepted;
    ExpectInvariants(*jid);
    if (HasFailure()) FAIL() << "input bytes: " << testing::PrintToString(text);
  }
  EXPECT_GT(accepted, 0);
}

// Random strings of code points that exercise the Unicode paths: case and
// width mapping, composition, context rules, Bidi, UTS #46 mappings.
TEST(JidTest, SurvivesRandomUnicode) {
  // clang-format off
  const std::vector<std::string_view> kPieces = {
      // ASCII, separators and the ACE prefix
      "a", "Z", "n", "x", "l", "1", "-", ".", "@", "/", "[", "]", ":", " ", "\t", "xn--",
      // case mapping and compatibility characters
      "ä", "Ä", "ß", "ẞ", "Σ", "ς", "İ", "ǅ", "ǈ", "ﬀ", "Ⅳ",
      // width mapping, spaces, full stops
      "Ａ", "ｶ", "ﾞ", "＠", "／", "．", "。", "\u3000", "\u00A0",
      // composition
      "\u0301", "\u0308", "\u1100", "\u1161",
      // contextual rules
      "\u200C", "\u200D", "\u094D", "क", "·", "\u0375", "α", "\u05F3", "・", "カ",
      // Bidi and digits
      "א", "ב", "ب", "\u064E", "١", "۲",
      // disallowed everywhere or in some parts
      "\U0001F600", "\u00AD", "\uFE0F", "\u0378", "\uE000", "\u0085", "\u2028",
  };
  // clang-format on
  std::mt19937 random(8265);
  int accepted = 0;
  for (int round = 0; round < 30000; ++round) {
    const size_t pieces = 1 + random() % 12;
    std::string text;
    for (size_t i = 0; i < pieces; ++i) text.append(kPieces[random() % kPieces.size()]);
    absl::StatusOr<Jid> jid = Jid::Parse(text);
    if (!jid.ok()) continue;
    ++accepted;
    ExpectInvariants(*jid);
    if (HasFailure()) FAIL() << "input: " << text;
  }
  EXPECT_GT(accepted, 1000);
}

}  // namespace
}  // namespace stanzad::jid
