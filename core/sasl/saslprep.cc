#include "core/sasl/saslprep.h"

#include <unicode/stringpiece.h>
#include <unicode/unistr.h>
#include <unicode/usprep.h>
#include <unicode/utf8.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "core/base/concat.h"

namespace stanzad::sasl {
namespace {

bool IsPrintableAscii(std::string_view text) {
  for (char c : text) {
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

// Opened once and shared: a profile is immutable after loading, and usprep_prepare only
// reads it.
const UStringPrepProfile* SaslPrepProfile() {
  static const UStringPrepProfile* const profile = [] {
    UErrorCode status = U_ZERO_ERROR;
    UStringPrepProfile* opened = usprep_openByType(USPREP_RFC4013_SASLPREP, &status);
    if (U_FAILURE(status)) {
      if (opened != nullptr) usprep_close(opened);
      return static_cast<UStringPrepProfile*>(nullptr);
    }
    return opened;  // Never closed: used by every thread until exit.
  }();
  return profile;
}

std::string DescribeFailure(UErrorCode status) {
  switch (status) {
    case U_STRINGPREP_PROHIBITED_ERROR:
      return "contains a code point that SASLprep prohibits (RFC 4013 §2.3)";
    case U_STRINGPREP_UNASSIGNED_ERROR:
      return "contains a code point unassigned in Unicode 3.2 (RFC 4013 §2.5)";
    case U_STRINGPREP_CHECK_BIDI_ERROR:
      return "breaks the bidirectional rule of RFC 3454 §6";
    default:
      return Concat("failed SASLprep (", u_errorName(status), ")");
  }
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  if (text.size() > static_cast<size_t>(INT32_MAX)) return false;  // ICU counts in int32_t
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  const auto length = static_cast<int32_t>(text.size());
  int32_t i = 0;
  while (i < length) {
    UChar32 c = 0;
    U8_NEXT(bytes, i, length, c);  // c < 0 for an ill-formed sequence
    if (c < 0) return false;
  }
  return true;
}

absl::StatusOr<std::string> SaslPrep(std::string_view text, SaslPrepMode mode) {
  if (text.size() > kSaslPrepInputBytesMax) {
    return absl::InvalidArgumentError("text is longer than SASLprep accepts");
  }
  if (IsPrintableAscii(text)) return std::string(text);
  if (!IsValidUtf8(text)) return absl::InvalidArgumentError("text is not valid UTF-8");
  const UStringPrepProfile* profile = SaslPrepProfile();
  if (profile == nullptr) return absl::InternalError("ICU's SASLprep data could not be loaded");

  const icu::UnicodeString input = icu::UnicodeString::fromUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  // Mapping can lengthen text (NFKC of U+FDFA is 18 code points), so retry once with the
  // size ICU asks for.
  icu::UnicodeString output;
  int32_t capacity = input.length() * 2 + 16;
  for (int attempt = 0; attempt < 2; ++attempt) {
    UErrorCode status = U_ZERO_ERROR;
    char16_t* buffer = output.getBuffer(capacity);
    if (buffer == nullptr) return absl::ResourceExhaustedError("out of memory in SASLprep");
    const int32_t length = usprep_prepare(
        profile, input.getBuffer(), input.length(), buffer, capacity,
        mode == SaslPrepMode::kQuery ? USPREP_ALLOW_UNASSIGNED : USPREP_DEFAULT, nullptr, &status);
    output.releaseBuffer(U_SUCCESS(status) ? length : 0);
    if (status == U_BUFFER_OVERFLOW_ERROR && attempt == 0) {
      capacity = length;
      continue;
    }
    if (U_FAILURE(status))
      return absl::InvalidArgumentError(Concat("text ", DescribeFailure(status)));
    std::string prepared;
    output.toUTF8String(prepared);
    return prepared;
  }
  return absl::InternalError("SASLprep output did not fit the size ICU asked for");
}

}  // namespace stanzad::sasl
