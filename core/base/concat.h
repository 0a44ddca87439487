// Concat: joins string-like pieces into one std::string with one allocation.
//
// Why not absl::StrCat: Debian's Abseil 20220623 is built with its own
// absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), so StrCat does not
// accept std::string_view; and g++ 12 at -O3 raises a false -Wrestrict on
// `"literal" + std::string(...)` chains (GCC bug 105651).
//
//   std::string text = Concat("no call bridge is configured for ", address);
#ifndef STANZAD_CORE_BASE_CONCAT_H_
#define STANZAD_CORE_BASE_CONCAT_H_

#include <string>
#include <string_view>

namespace stanzad {

template <typename... Pieces>
std::string Concat(const Pieces&... pieces) {
  std::string out;
  out.reserve((std::string_view(pieces).size() + ... + 0));
  (out.append(std::string_view(pieces)), ...);
  return out;
}

}  // namespace stanzad

#endif  // STANZAD_CORE_BASE_CONCAT_H_
