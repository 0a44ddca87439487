// ParseDecimal: the one strict reader of an unsigned decimal number (wire fields, counts,
// ports, flags, lines of our own files).
//
// Why not absl::SimpleAtoi alone: it skips ASCII whitespace around the number and takes a
// leading '+' (and '-' for signed types), which a port, a header or a count from a peer must
// refuse; and it reads only 32- and 64-bit integers. This checks the text first, then lets
// SimpleAtoi do the arithmetic and the overflow test.
//
//   const std::optional<uint16_t> port = ParseDecimal<uint16_t>("5222");
//
// Pure function; any thread.
#ifndef STANZAD_CORE_BASE_DECIMAL_H_
#define STANZAD_CORE_BASE_DECIMAL_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>
#include <type_traits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "core/base/absl_compat.h"

namespace stanzad {

// The value of `text` if it is one or more ASCII digits '0'..'9' and fits in `Unsigned`;
// nullopt for empty text, a sign, whitespace, any other byte, or a value above
// std::numeric_limits<Unsigned>::max() (never wraps). Leading zeros are accepted: a caller
// whose grammar forbids them, or bounds the length, checks that itself.
template <typename Unsigned>
std::optional<Unsigned> ParseDecimal(std::string_view text) {
  static_assert(std::is_unsigned_v<Unsigned> && !std::is_same_v<Unsigned, bool>,
                "ParseDecimal reads unsigned integers; a sign is the caller's to handle");
  static_assert(sizeof(Unsigned) <= sizeof(uint64_t));
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(), [](char c) { return absl::ascii_isdigit(c); })) {
    return std::nullopt;
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(ToAbsl(text), &value) || value > std::numeric_limits<Unsigned>::max()) {
    return std::nullopt;
  }
  return static_cast<Unsigned>(value);
}

}  // namespace stanzad

#endif  // STANZAD_CORE_BASE_DECIMAL_H_
