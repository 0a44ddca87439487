// Bridges std::string_view to Abseil. Debian's Abseil 20220623 is built with
// its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), which does
// not convert from std::string_view: heterogeneous lookups in absl containers
// and absl::Status messages need this.
#ifndef STANZAD_CORE_BASE_ABSL_COMPAT_H_
#define STANZAD_CORE_BASE_ABSL_COMPAT_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace stanzad {

inline absl::string_view ToAbsl(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

}  // namespace stanzad

#endif  // STANZAD_CORE_BASE_ABSL_COMPAT_H_
