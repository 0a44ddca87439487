#include "core/base/check.h"

#include <cstdio>
#include <cstdlib>

namespace stanzad::internal {

void CheckFailed(const char* file, int line, const char* expression, const char* message) {
  if (message != nullptr && message[0] != '\0') {
    std::fprintf(stderr, "%s:%d: CHECK failed: %s (%s)\n", file, line, expression, message);
  } else {
    std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, expression);
  }
  std::fflush(stderr);
  std::abort();
}

}  // namespace stanzad::internal
