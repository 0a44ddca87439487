// ParseDecimal: digits only, never wraps, whatever absl::SimpleAtoi would forgive.
#include "core/base/decimal.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace stanzad {
namespace {

TEST(ParseDecimalTest, ReadsDigits) {
  EXPECT_EQ(ParseDecimal<uint32_t>("0"), 0u);
  EXPECT_EQ(ParseDecimal<uint32_t>("7"), 7u);
  EXPECT_EQ(ParseDecimal<uint32_t>("5222"), 5222u);
  EXPECT_EQ(ParseDecimal<uint64_t>("1234567890123"), 1234567890123u);
}

TEST(ParseDecimalTest, AcceptsLeadingZeros) {
  EXPECT_EQ(ParseDecimal<uint16_t>("00080"), 80u);
  EXPECT_EQ(ParseDecimal<uint32_t>("0000000000000000000000042"), 42u);
}

TEST(ParseDecimalTest, RefusesEmptyText) { EXPECT_EQ(ParseDecimal<uint32_t>(""), std::nullopt); }

TEST(ParseDecimalTest, RefusesWhitespaceThatSimpleAtoiWouldSkip) {
  for (const char* text : {" 1", "1 ", "\t1", "1\n", "\n", " ", "1 2", "\v1", "1\r", "\f1"}) {
    EXPECT_EQ(ParseDecimal<uint32_t>(text), std::nullopt) << '"' << text << '"';
    EXPECT_EQ(ParseDecimal<uint64_t>(text), std::nullopt) << '"' << text << '"';
  }
}

TEST(ParseDecimalTest, RefusesSigns) {
  for (const char* text : {"+1", "-1", "-0", "+0", "+", "-", "1-", "1+"}) {
    EXPECT_EQ(ParseDecimal<uint32_t>(text), std::nullopt) << text;
    EXPECT_EQ(ParseDecimal<uint64_t>(text), std::nullopt) << text;
  }
}

TEST(ParseDecimalTest, RefusesOtherBytes) {
  const std::vector<std::string> texts = {
      "0x10", "1e3", "1.0", "12a", "a12", "\xd9\xa1", std::string("1\0", 2)};
  for (const std::string& text : texts) {
    EXPECT_EQ(ParseDecimal<uint32_t>(text), std::nullopt);
  }
}

TEST(ParseDecimalTest, ReadsTheMaximumOfEachType) {
  EXPECT_EQ(ParseDecimal<uint8_t>("255"), 255u);
  EXPECT_EQ(ParseDecimal<uint16_t>("65535"), 65535u);
  EXPECT_EQ(ParseDecimal<uint32_t>("4294967295"), 4294967295u);
  EXPECT_EQ(ParseDecimal<uint64_t>("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(ParseDecimal<size_t>("18446744073709551615"), SIZE_MAX);
}

TEST(ParseDecimalTest, RefusesOneAboveTheMaximumInsteadOfWrapping) {
  EXPECT_EQ(ParseDecimal<uint8_t>("256"), std::nullopt);
  EXPECT_EQ(ParseDecimal<uint16_t>("65536"), std::nullopt);
  EXPECT_EQ(ParseDecimal<uint16_t>("4294967296"), std::nullopt);  // 0 if cut to 32 bits
  EXPECT_EQ(ParseDecimal<uint32_t>("4294967296"), std::nullopt);
  EXPECT_EQ(ParseDecimal<uint64_t>("18446744073709551616"), std::nullopt);
  EXPECT_EQ(ParseDecimal<uint64_t>("99999999999999999999"), std::nullopt);
  EXPECT_EQ(ParseDecimal<uint64_t>(std::string(100, '9')), std::nullopt);
}

}  // namespace
}  // namespace stanzad
