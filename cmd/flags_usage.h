// Shared --help setup for the programs in cmd/: lists the flags defined in
// cmd/ sources (Abseil's default looks for a file named after the binary,
// which misses them) and answers --version.
#ifndef STANZAD_CMD_FLAGS_USAGE_H_
#define STANZAD_CMD_FLAGS_USAGE_H_

#include <string>

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"

namespace stanzad {

inline constexpr char kStanzadVersion[] = "0.1.0";

inline void ConfigureFlagsUsage(const char* usage, const char* program) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view path) {
    return path.find("cmd/") != absl::string_view::npos;
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.version_string = [program] { return std::string(program) + " " + kStanzadVersion + "\n"; };
  absl::SetFlagsUsageConfig(config);
}

}  // namespace stanzad

#endif  // STANZAD_CMD_FLAGS_USAGE_H_
