#include "core/jid/jid.h"

#include <unicode/bytestream.h>
#include <unicode/idna.h>
#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>
#include <unicode/uchar.h>
#include <unicode/uidna.h>
#include <unicode/unistr.h>
#include <unicode/uscript.h>
#include <unicode/utf16.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/base/decimal.h"

namespace stanzad::jid {
namespace {

// A part longer than this as given is refused before any Unicode processing,
// which bounds the work one Parse can cause. Normalisation and UTS #46 mapping
// can shrink text (combining sequences compose, ignorable code points vanish),
// so input somewhat over kJidPartBytesMax may still be valid.
constexpr size_t kPartInputBytesMax = 4 * kJidPartBytesMax;

// RFC 1035 §2.3.4, counted on the label's ASCII (A-label) form.
constexpr size_t kLabelBytesMax = 63;

// What the error messages call each part.
constexpr std::string_view kLocalpart = "JID localpart";
constexpr std::string_view kDomainpart = "JID domainpart";
constexpr std::string_view kResourcepart = "JID resourcepart";

absl::Status Invalid(std::string message) { return absl::InvalidArgumentError(message); }

// ---------------------------------------------------------------------------
// ASCII

constexpr bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
constexpr bool IsAsciiAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr char AsciiToLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
constexpr int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsAllAscii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

void AppendAsciiLowercase(std::string_view text, std::string* out) {
  for (char c : text) out->push_back(AsciiToLower(c));
}

// "U+00E9" and, where Unicode names the code point, " LATIN SMALL LETTER E WITH
// ACUTE". Only error messages use it.
std::string DescribeCodePoint(UChar32 code_point) {
  static constexpr char kHexDigits[] = "0123456789ABCDEF";
  std::string text = "U+";
  int digits = code_point > 0xFFFF ? (code_point > 0xFFFFF ? 6 : 5) : 4;
  for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) {
    text.push_back(kHexDigits[(code_point >> shift) & 0xF]);
  }
  char name[128];
  UErrorCode status = U_ZERO_ERROR;
  int32_t name_length = u_charName(code_point, U_UNICODE_CHAR_NAME, name,
                                   static_cast<int32_t>(sizeof(name)), &status);
  if (U_SUCCESS(status) && name_length > 0 && name_length < static_cast<int32_t>(sizeof(name))) {
    text.push_back(' ');
    text.append(name, static_cast<size_t>(name_length));
  }
  return text;
}

// Names the ASCII character `c` in an error message, phrased to follow
// "JID localpart contains ".
std::string DescribeAsciiCharacter(char c) {
  if (c == ' ') return "a space";
  if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
    return Concat("control character ", DescribeCodePoint(static_cast<unsigned char>(c)));
  }
  return Concat("'", std::string_view(&c, 1), "'");
}

// RFC 7622 §3.3.1 (the XMPP characters) and PRECIS IdentifierClass (space and
// controls are not in ASCII7). Returns OK if `c` may stand in a localpart.
absl::Status CheckLocalpartAscii(char c) {
  switch (c) {
    case '"':
    case '&':
    case '\'':
    case '/':
    case ':':
    case '<':
    case '>':
    case '@':
      return Invalid(Concat(kLocalpart, " contains ", DescribeAsciiCharacter(c)));
    default:
      break;
  }
  if (c <= 0x20 || c == 0x7F) {
    return Invalid(Concat(kLocalpart, " contains ", DescribeAsciiCharacter(c)));
  }
  return absl::OkStatus();
}

// OpaqueString takes any printable ASCII, the space included.
absl::Status CheckResourcepartAscii(char c) {
  if (c < 0x20 || c == 0x7F) {
    return Invalid(Concat(kResourcepart, " contains ", DescribeAsciiCharacter(c)));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// UTF-8

// True if `text` is well-formed UTF-8 (Unicode §3.9, table 3-7): no overlong
// forms, no surrogates, nothing past U+10FFFF, no truncated sequence.
bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    unsigned char second_min = 0x80;
    unsigned char second_max = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) second_min = 0xA0;  // overlong
      if (lead == 0xED) second_max = 0x9F;  // surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) second_min = 0x90;  // overlong
      if (lead == 0xF4) second_max = 0x8F;  // past U+10FFFF
    } else {
      return false;
    }
    if (text.size() - i < length) return false;
    const auto second = static_cast<unsigned char>(text[i + 1]);
    if (second < second_min || second > second_max) return false;
    for (size_t k = 2; k < length; ++k) {
      const auto continuation = static_cast<unsigned char>(text[i + k]);
      if (continuation < 0x80 || continuation > 0xBF) return false;
    }
    i += length;
  }
  return true;
}

icu::UnicodeString FromUtf8(std::string_view text) {
  return icu::UnicodeString::fromUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
}

std::vector<UChar32> CodePointsOf(const icu::UnicodeString& text) {
  std::vector<UChar32> code_points;
  code_points.reserve(static_cast<size_t>(text.length()));
  for (int32_t i = 0; i < text.length();) {
    const UChar32 c = text.char32At(i);
    code_points.push_back(c);
    i += U16_LENGTH(c);
  }
  return code_points;
}

// ---------------------------------------------------------------------------
// PRECIS string classes (RFC 8264 §8, §9) and the contextual rules of RFC 5892.

enum class StringClass { kIdentifier, kFreeform };
enum class DerivedProperty { kValid, kContextJ, kContextO, kDisallowed, kUnassigned };

// The derived property of `c` in `string_class`, in the order of RFC 8264 §8.
// Called only for code points past ASCII, whose rules the callers apply
// themselves.
DerivedProperty PrecisPropertyOf(UChar32 c, StringClass string_class) {
  // Exceptions (RFC 5892 §2.6).
  switch (c) {
    case 0x00DF:  // LATIN SMALL LETTER SHARP S
    case 0x03C2:  // GREEK SMALL LETTER FINAL SIGMA
    case 0x06FD:
    case 0x06FE:
    case 0x0F0B:
    case 0x3007:
      return DerivedProperty::kValid;
    case 0x00B7:  // MIDDLE DOT
    case 0x0375:  // GREEK LOWER NUMERAL SIGN
    case 0x05F3:  // HEBREW PUNCTUATION GERESH
    case 0x05F4:  // HEBREW PUNCTUATION GERSHAYIM
    case 0x30FB:  // KATAKANA MIDDLE DOT
      return DerivedProperty::kContextO;
    case 0x0640:
    case 0x07FA:
    case 0x302E:
    case 0x302F:
    case 0x3031:
    case 0x3032:
    case 0x3033:
    case 0x3034:
    case 0x3035:
    case 0x303B:
      return DerivedProperty::kDisallowed;
    default:
      break;
  }
  if ((c >= 0x0660 && c <= 0x0669) || (c >= 0x06F0 && c <= 0x06F9)) {
    return DerivedProperty::kContextO;
  }
  const auto category = static_cast<int8_t>(u_charType(c));
  if (category == U_UNASSIGNED && !u_hasBinaryProperty(c, UCHAR_NONCHARACTER_CODE_POINT)) {
    return DerivedProperty::kUnassigned;
  }
  if (u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL)) return DerivedProperty::kContextJ;
  const int32_t hangul_type = u_getIntPropertyValue(c, UCHAR_HANGUL_SYLLABLE_TYPE);
  if (hangul_type == U_HST_LEADING_JAMO || hangul_type == U_HST_VOWEL_JAMO ||
      hangul_type == U_HST_TRAILING_JAMO) {
    return DerivedProperty::kDisallowed;  // OldHangulJamo
  }
  if (u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT) ||
      u_hasBinaryProperty(c, UCHAR_NONCHARACTER_CODE_POINT)) {
    return DerivedProperty::kDisallowed;  // PrecisIgnorableProperties
  }
  if (category == U_CONTROL_CHAR) return DerivedProperty::kDisallowed;
  const DerivedProperty freeform_only = string_class == StringClass::kFreeform
                                            ? DerivedProperty::kValid
                                            : DerivedProperty::kDisallowed;
  // HasCompat: toNFKC(c) != c, which for one code point is NFKC_Quick_Check=No.
  if (u_getIntPropertyValue(c, UCHAR_NFKC_QUICK_CHECK) == UNORM_NO) return freeform_only;
  switch (category) {
    case U_LOWERCASE_LETTER:  // LetterDigits
    case U_UPPERCASE_LETTER:
    case U_OTHER_LETTER:
    case U_DECIMAL_DIGIT_NUMBER:
    case U_MODIFIER_LETTER:
    case U_NON_SPACING_MARK:
    case U_COMBINING_SPACING_MARK:
      return DerivedProperty::kValid;
    case U_TITLECASE_LETTER:  // OtherLetterDigits
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
    case U_ENCLOSING_MARK:
    case U_SPACE_SEPARATOR:  // Spaces
    case U_MATH_SYMBOL:      // Symbols
    case U_CURRENCY_SYMBOL:
    case U_MODIFIER_SYMBOL:
    case U_OTHER_SYMBOL:
    case U_CONNECTOR_PUNCTUATION:  // Punctuation
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
      return freeform_only;
    default:
      return DerivedProperty::kDisallowed;  // private use, surrogates, Zl, Zp, other Cf
  }
}

bool IsVirama(UChar32 c) { return u_getCombiningClass(c) == 9; }

int32_t JoiningTypeOf(UChar32 c) { return u_getIntPropertyValue(c, UCHAR_JOINING_TYPE); }

bool HasScript(UChar32 c, UScriptCode script) {
  UErrorCode status = U_ZERO_ERROR;
  return uscript_getScript(c, &status) == script && U_SUCCESS(status);
}

// RFC 5892 appendix A: whether the CONTEXTJ or CONTEXTO code point at
// `index` may stand where it is in `text`.
bool ContextRuleAllows(const std::vector<UChar32>& text, size_t index) {
  const UChar32 c = text[index];
  const UChar32 before = index > 0 ? text[index - 1] : -1;
  const UChar32 after = index + 1 < text.size() ? text[index + 1] : -1;
  switch (c) {
    case 0x200C: {  // ZERO WIDTH NON-JOINER (A.1)
      if (before >= 0 && IsVirama(before)) return true;
      // (Joining_Type:{L,D})(Joining_Type:T)* ZWNJ (Joining_Type:T)*(Joining_Type:{R,D})
      size_t left = index;
      while (left > 0 && JoiningTypeOf(text[left - 1]) == U_JT_TRANSPARENT) --left;
      if (left == 0) return false;
      const int32_t left_type = JoiningTypeOf(text[left - 1]);
      if (left_type != U_JT_LEFT_JOINING && left_type != U_JT_DUAL_JOINING) return false;
      size_t right = index + 1;
      while (right < text.size() && JoiningTypeOf(text[right]) == U_JT_TRANSPARENT) ++right;
      if (right == text.size()) return false;
      const int32_t right_type = JoiningTypeOf(text[right]);
      return right_type == U_JT_RIGHT_JOINING || right_type == U_JT_DUAL_JOINING;
    }
    case 0x200D:  // ZERO WIDTH JOINER (A.2)
      return before >= 0 && IsVirama(before);
    case 0x00B7:  // MIDDLE DOT, only in Catalan "l·l" (A.3)
      return before == 'l' && after == 'l';
    case 0x0375:  // GREEK LOWER NUMERAL SIGN (A.4)
      return after >= 0 && HasScript(after, USCRIPT_GREEK);
    case 0x05F3:  // HEBREW PUNCTUATION GERESH (A.5)
    case 0x05F4:  // HEBREW PUNCTUATION GERSHAYIM (A.6)
      return before >= 0 && HasScript(before, USCRIPT_HEBREW);
    case 0x30FB:  // KATAKANA MIDDLE DOT (A.7)
      for (UChar32 other : text) {
        if (HasScript(other, USCRIPT_HIRAGANA) || HasScript(other, USCRIPT_KATAKANA) ||
            HasScript(other, USCRIPT_HAN)) {
          return true;
        }
      }
      return false;
    default:
      break;
  }
  // ARABIC-INDIC DIGITS (A.8) and EXTENDED ARABIC-INDIC DIGITS (A.9) do not mix.
  const bool arabic_indic = c >= 0x0660 && c <= 0x0669;
  const UChar32 other_first = arabic_indic ? 0x06F0 : 0x0660;
  for (UChar32 other : text) {
    if (other >= other_first && other <= other_first + 9) return false;
  }
  return true;
}

// The Bidi rule of RFC 5893 §2, which UsernameCaseMapped applies to strings
// that hold right-to-left characters.
bool SatisfiesBidiRule(const std::vector<UChar32>& text) {
  bool has_right_to_left = false;
  for (UChar32 c : text) {
    const UCharDirection direction = u_charDirection(c);
    if (direction == U_RIGHT_TO_LEFT || direction == U_RIGHT_TO_LEFT_ARABIC ||
        direction == U_ARABIC_NUMBER) {
      has_right_to_left = true;
      break;
    }
  }
  if (!has_right_to_left || text.empty()) return true;

  const UCharDirection first = u_charDirection(text.front());
  if (first != U_LEFT_TO_RIGHT && first != U_RIGHT_TO_LEFT && first != U_RIGHT_TO_LEFT_ARABIC) {
    return false;  // 1
  }
  const bool right_to_left = first != U_LEFT_TO_RIGHT;
  bool has_european_number = false;
  bool has_arabic_number = false;
  for (UChar32 c : text) {
    const UCharDirection direction = u_charDirection(c);
    switch (direction) {
      case U_EUROPEAN_NUMBER:
        has_european_number = true;
        break;
      case U_ARABIC_NUMBER:
        has_arabic_number = true;
        if (!right_to_left) return false;  // 5
        break;
      case U_RIGHT_TO_LEFT:
      case U_RIGHT_TO_LEFT_ARABIC:
        if (!right_to_left) return false;  // 5
        break;
      case U_LEFT_TO_RIGHT:
        if (right_to_left) return false;  // 2
        break;
      case U_EUROPEAN_NUMBER_SEPARATOR:
      case U_COMMON_NUMBER_SEPARATOR:
      case U_EUROPEAN_NUMBER_TERMINATOR:
      case U_OTHER_NEUTRAL:
      case U_BOUNDARY_NEUTRAL:
      case U_DIR_NON_SPACING_MARK:
        break;
      default:
        return false;  // 2, 5
    }
  }
  if (right_to_left && has_european_number && has_arabic_number) return false;  // 4
  // 3, 6: the last character that is not a nonspacing mark.
  size_t last = text.size();
  while (last > 0 && u_charDirection(text[last - 1]) == U_DIR_NON_SPACING_MARK) --last;
  if (last == 0) return false;
  const UCharDirection end = u_charDirection(text[last - 1]);
  if (right_to_left) {
    return end == U_RIGHT_TO_LEFT || end == U_RIGHT_TO_LEFT_ARABIC || end == U_EUROPEAN_NUMBER ||
           end == U_ARABIC_NUMBER;
  }
  return end == U_LEFT_TO_RIGHT || end == U_EUROPEAN_NUMBER;
}

// Checks every code point of `text` (prepared, not yet validated) against
// `string_class`; ASCII goes to `check_ascii`, the part's own rule.
absl::Status CheckCodePoints(const std::vector<UChar32>& text, StringClass string_class,
                             std::string_view part, absl::Status (*check_ascii)(char)) {
  for (size_t i = 0; i < text.size(); ++i) {
    const UChar32 c = text[i];
    if (c < 0x80) {
      absl::Status status = check_ascii(static_cast<char>(c));
      if (!status.ok()) return status;
      continue;
    }
    switch (PrecisPropertyOf(c, string_class)) {
      case DerivedProperty::kValid:
        break;
      case DerivedProperty::kContextJ:
      case DerivedProperty::kContextO:
        if (!ContextRuleAllows(text, i)) {
          return Invalid(Concat(part, " contains ", DescribeCodePoint(c),
                                " where RFC 5892 appendix A does not allow it"));
        }
        break;
      case DerivedProperty::kDisallowed:
        return Invalid(Concat(part, " contains disallowed code point ", DescribeCodePoint(c)));
      case DerivedProperty::kUnassigned:
        return Invalid(Concat(part, " contains unassigned code point ", DescribeCodePoint(c)));
    }
  }
  return absl::OkStatus();
}

absl::Status IcuUnavailable() { return absl::InternalError("ICU data could not be loaded"); }

absl::Status CheckPreparedLength(std::string_view part, size_t prepared_bytes) {
  if (prepared_bytes == 0) return Invalid(Concat(part, " is empty"));
  if (prepared_bytes > kJidPartBytesMax) {
    return Invalid(Concat(part, " longer than 1023 bytes"));
  }
  return absl::OkStatus();
}

// Checks the length of a part as given: not empty, and short enough to be
// worth preparing.
absl::Status CheckInputLength(std::string_view part, std::string_view text, bool all_ascii) {
  if (text.empty()) return Invalid(Concat(part, " is empty"));
  // Only non-ASCII text can shrink when it is prepared.
  const size_t bytes_max = all_ascii ? kJidPartBytesMax : kPartInputBytesMax;
  if (text.size() > bytes_max) return Invalid(Concat(part, " longer than 1023 bytes"));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Localpart

// UsernameCaseMapped (RFC 8265 §3.3) for text with non-ASCII characters.
absl::Status AppendUnicodeLocalpart(std::string_view localpart, std::string* out) {
  if (!IsValidUtf8(localpart)) return Invalid(Concat(kLocalpart, " is not valid UTF-8"));
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  const icu::Normalizer2* nfkc = icu::Normalizer2::getNFKCInstance(status);
  if (U_FAILURE(status)) return IcuUnavailable();

  // Width mapping: fullwidth and halfwidth forms become their decomposition.
  const icu::UnicodeString input = FromUtf8(localpart);
  icu::UnicodeString mapped;
  icu::UnicodeString decomposition;
  for (int32_t i = 0; i < input.length();) {
    const UChar32 c = input.char32At(i);
    i += U16_LENGTH(c);
    const int32_t type = u_getIntPropertyValue(c, UCHAR_DECOMPOSITION_TYPE);
    if ((type == U_DT_WIDE || type == U_DT_NARROW) && nfkc->getRawDecomposition(c, decomposition)) {
      mapped.append(decomposition);
    } else {
      mapped.append(c);
    }
  }
  // Case mapping: full, language-independent toLower.
  mapped.toLower(icu::Locale::getRoot());
  const icu::UnicodeString prepared = nfc->normalize(mapped, status);
  if (U_FAILURE(status)) return IcuUnavailable();

  const std::vector<UChar32> code_points = CodePointsOf(prepared);
  absl::Status valid =
      CheckCodePoints(code_points, StringClass::kIdentifier, kLocalpart, CheckLocalpartAscii);
  if (!valid.ok()) return valid;
  if (!SatisfiesBidiRule(code_points)) {
    return Invalid(Concat(kLocalpart, " breaks the Bidi rule of RFC 5893"));
  }
  const size_t begin = out->size();
  prepared.toUTF8String(*out);
  return CheckPreparedLength(kLocalpart, out->size() - begin);
}

absl::Status AppendLocalpart(std::string_view localpart, std::string* out) {
  const bool all_ascii = IsAllAscii(localpart);
  absl::Status length = CheckInputLength(kLocalpart, localpart, all_ascii);
  if (!length.ok()) return length;
  if (!all_ascii) return AppendUnicodeLocalpart(localpart, out);
  for (char c : localpart) {
    absl::Status status = CheckLocalpartAscii(c);
    if (!status.ok()) return status;
  }
  AppendAsciiLowercase(localpart, out);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Resourcepart

// OpaqueString (RFC 8265 §4.2) for text with non-ASCII characters.
absl::Status AppendUnicodeResourcepart(std::string_view resourcepart, std::string* out) {
  if (!IsValidUtf8(resourcepart)) return Invalid(Concat(kResourcepart, " is not valid UTF-8"));
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) return IcuUnavailable();

  // Additional mapping: non-ASCII spaces become U+0020.
  const icu::UnicodeString input = FromUtf8(resourcepart);
  icu::UnicodeString mapped;
  for (int32_t i = 0; i < input.length();) {
    const UChar32 c = input.char32At(i);
    i += U16_LENGTH(c);
    mapped.append(u_charType(c) == U_SPACE_SEPARATOR ? UChar32{0x20} : c);
  }
  const icu::UnicodeString prepared = nfc->normalize(mapped, status);
  if (U_FAILURE(status)) return IcuUnavailable();

  absl::Status valid = CheckCodePoints(CodePointsOf(prepared), StringClass::kFreeform,
                                       kResourcepart, CheckResourcepartAscii);
  if (!valid.ok()) return valid;
  const size_t begin = out->size();
  prepared.toUTF8String(*out);
  return CheckPreparedLength(kResourcepart, out->size() - begin);
}

absl::Status AppendResourcepart(std::string_view resourcepart, std::string* out) {
  const bool all_ascii = IsAllAscii(resourcepart);
  absl::Status length = CheckInputLength(kResourcepart, resourcepart, all_ascii);
  if (!length.ok()) return length;
  if (!all_ascii) return AppendUnicodeResourcepart(resourcepart, out);
  for (char c : resourcepart) {
    absl::Status status = CheckResourcepartAscii(c);
    if (!status.ok()) return status;
  }
  out->append(resourcepart);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Domainpart: IP addresses

// A dotted-quad IPv4 address: four decimal numbers 0..255 without leading
// zeros, which some resolvers would read as octal.
bool ParseIpv4(std::string_view text, uint32_t* address) {
  uint32_t value = 0;
  size_t i = 0;
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (i == text.size() || text[i] != '.') return false;
      ++i;
    }
    const size_t start = i;
    while (i < text.size() && IsAsciiDigit(text[i])) ++i;
    const std::string_view digits = text.substr(start, i - start);
    const std::optional<uint8_t> number = ParseDecimal<uint8_t>(digits);
    if (!number || (digits.size() > 1 && digits[0] == '0')) return false;
    value = (value << 8) | *number;
  }
  if (i != text.size()) return false;
  *address = value;
  return true;
}

// The text form of RFC 4291 §2.2 (hex pieces, one "::", an IPv4 tail).
bool ParseIpv6(std::string_view text, std::array<uint16_t, 8>* address) {
  std::array<uint16_t, 8> pieces = {};
  size_t count = 0;
  int gap = -1;  // index in `pieces` where "::" stands
  size_t i = 0;
  if (text.size() >= 2 && text[0] == ':' && text[1] == ':') {
    gap = 0;
    i = 2;
  } else if (text.empty() || text[0] == ':') {
    return false;
  }
  while (i < text.size()) {
    const size_t start = i;
    uint32_t value = 0;
    while (i < text.size() && HexDigitValue(text[i]) >= 0 && i - start < 4) {
      value = value * 16 + static_cast<uint32_t>(HexDigitValue(text[i]));
      ++i;
    }
    if (i < text.size() && text[i] == '.') {
      uint32_t ipv4 = 0;
      if (count > 6 || !ParseIpv4(text.substr(start), &ipv4)) return false;
      pieces[count++] = static_cast<uint16_t>(ipv4 >> 16);
      pieces[count++] = static_cast<uint16_t>(ipv4 & 0xFFFF);
      break;
    }
    if (i == start || count == 8) return false;
    pieces[count++] = static_cast<uint16_t>(value);
    if (i == text.size()) break;
    if (text[i] != ':') return false;
    ++i;
    if (i < text.size() && text[i] == ':') {
      if (gap >= 0) return false;
      gap = static_cast<int>(count);
      ++i;
    } else if (i == text.size()) {
      return false;  // a trailing single ':'
    }
  }
  if (gap < 0) {
    if (count != 8) return false;
    *address = pieces;
    return true;
  }
  if (count > 7) return false;  // "::" stands for at least one zero piece
  const size_t zeros = 8 - count;
  address->fill(0);
  for (size_t k = 0; k < count; ++k) {
    const size_t target = k < static_cast<size_t>(gap) ? k : k + zeros;
    (*address)[target] = pieces[k];
  }
  return true;
}

void AppendIpv4(uint32_t address, std::string* out) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    const uint32_t octet = (address >> shift) & 0xFF;
    if (octet >= 100) out->push_back(static_cast<char>('0' + octet / 100));
    if (octet >= 10) out->push_back(static_cast<char>('0' + octet / 10 % 10));
    out->push_back(static_cast<char>('0' + octet % 10));
    if (shift > 0) out->push_back('.');
  }
}

// RFC 5952 §4 text: lowercase, no leading zeros, the longest run of two or
// more zero pieces (the first of equals) as "::"; IPv4-mapped addresses with
// a dotted-quad tail (§5).
void AppendIpv6(const std::array<uint16_t, 8>& address, std::string* out) {
  const bool ipv4_mapped = address[0] == 0 && address[1] == 0 && address[2] == 0 &&
                           address[3] == 0 && address[4] == 0 && address[5] == 0xFFFF;
  const size_t hex_pieces = ipv4_mapped ? 6 : 8;
  size_t best_start = 0;
  size_t best_length = 0;
  for (size_t start = 0; start < hex_pieces;) {
    if (address[start] != 0) {
      ++start;
      continue;
    }
    size_t end = start;
    while (end < hex_pieces && address[end] == 0) ++end;
    if (end - start > best_length) {
      best_start = start;
      best_length = end - start;
    }
    start = end;
  }
  if (best_length < 2) best_length = 0;
  for (size_t k = 0; k < hex_pieces;) {
    if (best_length > 0 && k == best_start) {
      out->append("::");
      k += best_length;
      continue;
    }
    if (k > 0 && out->back() != ':') out->push_back(':');
    absl::StrAppend(out, absl::Hex(address[k]));  // lowercase, no leading zeros
    ++k;
  }
  if (ipv4_mapped) {
    if (out->back() != ':') out->push_back(':');
    AppendIpv4((uint32_t{address[6]} << 16) | address[7], out);
  }
}

// `literal` begins with '['.
absl::Status AppendIpLiteral(std::string_view literal, std::string* out) {
  if (literal.size() < 2 || literal.back() != ']') {
    return Invalid(Concat(kDomainpart, " IP literal does not end with ']'"));
  }
  const std::string_view address_text = literal.substr(1, literal.size() - 2);
  if (!address_text.empty() && (address_text[0] == 'v' || address_text[0] == 'V')) {
    return Invalid(Concat(kDomainpart, " is an IPvFuture literal, which is not supported"));
  }
  std::array<uint16_t, 8> address;
  if (!ParseIpv6(address_text, &address)) {
    return Invalid(Concat(kDomainpart, " IP literal is not a valid IPv6 address"));
  }
  out->push_back('[');
  AppendIpv6(address, out);
  out->push_back(']');
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Domainpart: names

// The rules a domain name's labels obey whether it came in as ASCII or out of
// UTS #46 processing: labels are not empty; ASCII in them is letters, digits
// and '-' (RFC 5890 NR-LDH); no label starts or ends with '-' or has "--" in
// positions 3 and 4; an all-ASCII label is at most 63 bytes (non-ASCII labels
// are measured in A-label form by the caller). A name of digits and dots only
// must be an IPv4 address.
absl::Status CheckDomainName(std::string_view name) {
  bool digits_and_dots_only = true;
  size_t label_begin = 0;
  while (true) {
    const size_t dot = name.find('.', label_begin);
    const std::string_view label =
        name.substr(label_begin, dot == std::string_view::npos ? dot : dot - label_begin);
    if (label.empty()) return Invalid(Concat(kDomainpart, " has an empty label"));
    bool label_is_ascii = true;
    for (char c : label) {
      if (static_cast<unsigned char>(c) >= 0x80) {
        label_is_ascii = false;
        digits_and_dots_only = false;
        continue;
      }
      if (IsAsciiDigit(c)) continue;
      digits_and_dots_only = false;
      if (IsAsciiAlpha(c) || c == '-') continue;
      return Invalid(Concat(kDomainpart, " contains ", DescribeAsciiCharacter(c)));
    }
    if (label_is_ascii && label.size() > kLabelBytesMax) {
      return Invalid(Concat(kDomainpart, " label longer than 63 bytes"));
    }
    if (label.front() == '-') return Invalid(Concat(kDomainpart, " label starts with '-'"));
    if (label.back() == '-') return Invalid(Concat(kDomainpart, " label ends with '-'"));
    if (label.size() >= 4 && label[2] == '-' && label[3] == '-') {
      return Invalid(Concat(kDomainpart, " label has '--' in its third and fourth positions"));
    }
    if (dot == std::string_view::npos) break;
    label_begin = dot + 1;
  }
  uint32_t unused_address = 0;
  if (digits_and_dots_only && !ParseIpv4(name, &unused_address)) {
    return Invalid(Concat(kDomainpart, " is made of digits and dots but is not an IPv4 address"));
  }
  return absl::OkStatus();
}

// True if a label of the ASCII `name` starts with the ACE prefix "xn--": its
// U-label form is canonical, so UTS #46 has to decode it.
bool HasAceLabel(std::string_view name) {
  size_t label_begin = 0;
  while (label_begin < name.size()) {
    const std::string_view rest = name.substr(label_begin);
    if (rest.size() >= 4 && AsciiToLower(rest[0]) == 'x' && AsciiToLower(rest[1]) == 'n' &&
        rest[2] == '-' && rest[3] == '-') {
      return true;
    }
    const size_t dot = rest.find('.');
    if (dot == std::string_view::npos) break;
    label_begin += dot + 1;
  }
  return false;
}

// UTS #46 for domain names with non-ASCII characters or A-labels. STD3 rules
// are off so that CheckDomainName, which also serves the ASCII path, reports
// the ASCII characters that are not allowed; DNS length limits are checked
// separately because RFC 7622 allows 1023 bytes for the whole domainpart.
const icu::IDNA* Uts46() {
  static const icu::IDNA* const idna = [] {
    UErrorCode status = U_ZERO_ERROR;
    icu::IDNA* created = icu::IDNA::createUTS46Instance(
        UIDNA_NONTRANSITIONAL_TO_UNICODE | UIDNA_NONTRANSITIONAL_TO_ASCII | UIDNA_CHECK_BIDI |
            UIDNA_CHECK_CONTEXTJ | UIDNA_CHECK_CONTEXTO,
        status);
    if (U_FAILURE(status)) {
      delete created;
      return static_cast<icu::IDNA*>(nullptr);
    }
    return created;  // Never freed: shared by all threads until exit.
  }();
  return idna;
}

// The first of the UTS #46 errors in `errors` that a JID cares about, as a
// message; empty if there is none.
std::string DescribeIdnaErrors(uint32_t errors) {
  struct Message {
    uint32_t error;
    std::string_view text;
  };
  static constexpr Message kMessages[] = {
      {UIDNA_ERROR_EMPTY_LABEL, " has an empty label"},
      {UIDNA_ERROR_LEADING_HYPHEN, " label starts with '-'"},
      {UIDNA_ERROR_TRAILING_HYPHEN, " label ends with '-'"},
      {UIDNA_ERROR_HYPHEN_3_4, " label has '--' in its third and fourth positions"},
      {UIDNA_ERROR_LEADING_COMBINING_MARK, " label starts with a combining mark"},
      {UIDNA_ERROR_DISALLOWED, " contains a code point that IDNA disallows"},
      {UIDNA_ERROR_PUNYCODE, " has an A-label that is not valid Punycode"},
      {UIDNA_ERROR_LABEL_HAS_DOT, " label contains a dot"},
      {UIDNA_ERROR_INVALID_ACE_LABEL, " has an A-label that does not decode to a valid U-label"},
      {UIDNA_ERROR_CONTEXTJ, " has a zero-width joiner where RFC 5892 does not allow it"},
      {UIDNA_ERROR_CONTEXTO_PUNCTUATION, " has punctuation where RFC 5892 does not allow it"},
      {UIDNA_ERROR_CONTEXTO_DIGITS, " mixes Arabic-Indic and extended Arabic-Indic digits"},
      {UIDNA_ERROR_BIDI, " breaks the Bidi rule of RFC 5893"},
  };
  for (const Message& message : kMessages) {
    if ((errors & message.error) != 0) return Concat(kDomainpart, message.text);
  }
  if ((errors & ~uint32_t{UIDNA_ERROR_LABEL_TOO_LONG | UIDNA_ERROR_DOMAIN_NAME_TOO_LONG}) != 0) {
    return Concat(kDomainpart, " is not a valid internationalized domain name");
  }
  return std::string();
}

// UTS #46 accepts some code points that IDNA2008 (RFC 5892) does not, such as
// symbols and emoji. On text UTS #46 has mapped (lowercase, NFC, stable under
// NFKC_Casefold), the IDNA2008 derived property is PRECIS IdentifierClass less
// the IgnorableBlocks; the contextual rules ICU has checked already.
absl::Status CheckIdna2008CodePoints(std::string_view unicode) {
  for (UChar32 c : CodePointsOf(FromUtf8(unicode))) {
    if (c < 0x80) continue;  // CheckDomainName's business
    // IgnorableBlocks: combining marks for symbols, musical notation.
    const bool in_ignorable_block = (c >= 0x20D0 && c <= 0x20FF) || (c >= 0x1D100 && c <= 0x1D24F);
    const DerivedProperty property = in_ignorable_block
                                         ? DerivedProperty::kDisallowed
                                         : PrecisPropertyOf(c, StringClass::kIdentifier);
    if (property == DerivedProperty::kDisallowed) {
      return Invalid(Concat(kDomainpart, " contains disallowed code point ", DescribeCodePoint(c)));
    }
    if (property == DerivedProperty::kUnassigned) {
      return Invalid(Concat(kDomainpart, " contains unassigned code point ", DescribeCodePoint(c)));
    }
  }
  return absl::OkStatus();
}

absl::Status AppendInternationalDomainName(std::string_view name, std::string* out) {
  if (!IsValidUtf8(name)) return Invalid(Concat(kDomainpart, " is not valid UTF-8"));
  const icu::IDNA* idna = Uts46();
  if (idna == nullptr) return IcuUnavailable();

  std::string unicode;
  icu::StringByteSink<std::string> unicode_sink(&unicode);
  icu::IDNAInfo info;
  UErrorCode status = U_ZERO_ERROR;
  idna->nameToUnicodeUTF8(icu::StringPiece(name.data(), static_cast<int32_t>(name.size())),
                          unicode_sink, info, status);
  if (U_FAILURE(status)) return IcuUnavailable();
  std::string problem = DescribeIdnaErrors(info.getErrors());
  if (!problem.empty()) return Invalid(std::move(problem));
  absl::Status valid = CheckDomainName(unicode);
  if (!valid.ok()) return valid;
  valid = CheckIdna2008CodePoints(unicode);
  if (!valid.ok()) return valid;

  // The 63-byte limit is the DNS one, so it applies to the A-label form.
  std::string ascii;
  icu::StringByteSink<std::string> ascii_sink(&ascii);
  icu::IDNAInfo ascii_info;
  idna->nameToASCII_UTF8(icu::StringPiece(unicode.data(), static_cast<int32_t>(unicode.size())),
                         ascii_sink, ascii_info, status);
  if (U_FAILURE(status)) return IcuUnavailable();
  if ((ascii_info.getErrors() & UIDNA_ERROR_LABEL_TOO_LONG) != 0) {
    return Invalid(Concat(kDomainpart, " label longer than 63 bytes"));
  }
  problem = DescribeIdnaErrors(ascii_info.getErrors());
  if (!problem.empty()) return Invalid(std::move(problem));

  absl::Status length = CheckPreparedLength(kDomainpart, unicode.size());
  if (!length.ok()) return length;
  out->append(unicode);
  return absl::OkStatus();
}

absl::Status AppendDomainpart(std::string_view domainpart, std::string* out) {
  // RFC 7622 §3.2: a final '.' is removed before anything else.
  if (!domainpart.empty() && domainpart.back() == '.') domainpart.remove_suffix(1);
  const bool all_ascii = IsAllAscii(domainpart);
  absl::Status length = CheckInputLength(kDomainpart, domainpart, all_ascii);
  if (!length.ok()) return length;
  if (domainpart.front() == '[') return AppendIpLiteral(domainpart, out);
  if (!all_ascii || HasAceLabel(domainpart)) return AppendInternationalDomainName(domainpart, out);
  absl::Status valid = CheckDomainName(domainpart);
  if (!valid.ok()) return valid;
  AppendAsciiLowercase(domainpart, out);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Jid> Jid::Parse(std::string_view text) {
  // RFC 7622 §3.1: find the separators before any transformation, which could
  // produce '@' or '/' from other code points.
  const size_t slash = text.find('/');
  const std::string_view bare = text.substr(0, slash);
  const size_t at = bare.find('@');

  std::string canonical;
  canonical.reserve(text.size());
  if (at != std::string_view::npos) {
    absl::Status status = AppendLocalpart(bare.substr(0, at), &canonical);
    if (!status.ok()) return status;
    canonical.push_back('@');
  }
  const size_t domain_begin = canonical.size();
  absl::Status status =
      AppendDomainpart(at == std::string_view::npos ? bare : bare.substr(at + 1), &canonical);
  if (!status.ok()) return status;
  const size_t domain_end = canonical.size();
  if (slash != std::string_view::npos) {
    canonical.push_back('/');
    status = AppendResourcepart(text.substr(slash + 1), &canonical);
    if (!status.ok()) return status;
  }
  CHECK_LE(canonical.size(), 3 * kJidPartBytesMax + 2);
  return Jid(std::move(canonical), static_cast<uint16_t>(domain_begin),
             static_cast<uint16_t>(domain_end));
}

Jid Jid::Bare() const { return Jid(canonical_.substr(0, domain_end_), domain_begin_, domain_end_); }

std::ostream& operator<<(std::ostream& stream, const Jid& jid) { return stream << jid.canonical_; }

}  // namespace stanzad::jid
