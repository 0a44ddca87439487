#include "core/base/hex.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "core/base/absl_compat.h"

namespace stanzad {

std::string HexOf(std::string_view bytes) { return absl::BytesToHexString(ToAbsl(bytes)); }

std::optional<std::string> BytesOfHex(std::string_view hex) {
  // absl::HexStringToBytes does not check its input (Abseil 20220623): refuse here what it
  // would turn into arbitrary bytes.
  if (hex.size() % 2 != 0 ||
      !std::all_of(hex.begin(), hex.end(), [](char c) { return absl::ascii_isxdigit(c); })) {
    return std::nullopt;
  }
  return absl::HexStringToBytes(ToAbsl(hex));
}

}  // namespace stanzad
