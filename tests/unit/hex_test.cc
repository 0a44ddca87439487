// HexOf and BytesOfHex: lowercase out, either case in, nothing else accepted.
#include "core/base/hex.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace stanzad {
namespace {

TEST(HexTest, EncodesEveryByteAsTwoLowercaseDigits) {
  EXPECT_EQ(HexOf(""), "");
  EXPECT_EQ(HexOf(std::string("\x00\x01\x7f\x80\xab\xff", 6)), "00017f80abff");
  std::string all;
  for (int byte = 0; byte < 256; ++byte) all.push_back(static_cast<char>(byte));
  const std::string hex = HexOf(all);
  ASSERT_EQ(hex.size(), 512u);
  EXPECT_EQ(hex.substr(0, 8), "00010203");
  EXPECT_EQ(hex.substr(504), "fcfdfeff");
  EXPECT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(BytesOfHex(hex), all);
}

TEST(HexTest, DecodesEitherCase) {
  EXPECT_EQ(BytesOfHex(""), "");
  EXPECT_EQ(BytesOfHex("00ABcdEf"), std::string("\x00\xab\xcd\xef", 4));
}

TEST(HexTest, RefusesOddLengthsAndOtherCharacters) {
  for (const char* text : {"0", "abc", "0g", "g0", " 00", "00 ", "+0", "-0", "0x00", "zz"}) {
    EXPECT_EQ(BytesOfHex(text), std::nullopt) << text;
  }
  EXPECT_EQ(BytesOfHex(std::string("0\0", 2)), std::nullopt);
}

}  // namespace
}  // namespace stanzad
