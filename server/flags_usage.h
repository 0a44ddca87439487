// Shared --help setup for the programs in cmd/: lists the flags defined in cmd/ and
// server/ sources (Abseil's default looks for a file named after the binary, which misses
// them) and answers --version. A program whose flags are many prints them in groups named
// for what an operator sets (PrintGroupedHelpIfAsked) instead of Abseil's "Flags from
// <source file>" listing. (In server/, beside the daemon's flags: the daemon's options and
// status use the version and the groups too.)
#ifndef STANZAD_SERVER_FLAGS_USAGE_H_
#define STANZAD_SERVER_FLAGS_USAGE_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"

namespace stanzad {

inline constexpr char kStanzadVersion[] = "0.1.0";

inline void ConfigureFlagsUsage(const char* usage, const char* program) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view path) {
    return path.find("cmd/") != absl::string_view::npos ||
           path.find("server/") != absl::string_view::npos;
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.version_string = [program] { return std::string(program) + " " + kStanzadVersion + "\n"; };
  absl::SetFlagsUsageConfig(config);
}

// A heading of --help and the names (without "--") of the flags under it.
struct FlagGroup {
  std::string_view title;
  std::vector<std::string_view> flags;
};

// `usage`, then every flag defined in cmd/ or server/ with its help text and default,
// under the heading of the first group that names it; a flag no group names is
// listed under "Other flags", so none is ever missing. Names of flags that do
// not exist are skipped.
std::string GroupedFlagsHelp(std::string_view usage, const std::vector<FlagGroup>& groups);

// When argv asks for --help or --helpshort (before any "--"), prints
// GroupedFlagsHelp to stdout and returns true: the caller exits 0. Otherwise
// prints nothing and returns false. Call it before absl::ParseCommandLine.
bool PrintGroupedHelpIfAsked(int argc, char** argv, std::string_view usage,
                             const std::vector<FlagGroup>& groups);

}  // namespace stanzad

#endif  // STANZAD_SERVER_FLAGS_USAGE_H_
