#include "server/flags_usage.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"

namespace stanzad {
namespace {

constexpr size_t kHelpColumns = 80;
constexpr std::string_view kTextIndent = "      ";

// `text` wrapped at word boundaries to kHelpColumns, each line indented.
void AppendWrapped(std::string_view text, std::string* out) {
  std::string line(kTextIndent);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view word = text.substr(start, end - start);
    start = end + 1;
    if (word.empty()) continue;
    if (line.size() > kTextIndent.size() && line.size() + 1 + word.size() > kHelpColumns) {
      out->append(line).push_back('\n');
      line.assign(kTextIndent);
    }
    if (line.size() > kTextIndent.size()) line.push_back(' ');
    line.append(word);
  }
  if (line.size() > kTextIndent.size()) out->append(line).push_back('\n');
}

// What an operator types after '=': the kind of value, not the C++ type.
std::string_view ValueName(const absl::CommandLineFlag& flag) {
  if (flag.IsOfType<bool>()) return "true|false";
  if (flag.IsOfType<std::string>()) return "TEXT";
  return "N";
}

void AppendFlag(const absl::CommandLineFlag& flag, std::string* out) {
  out->append("  --")
      .append(std::string(flag.Name()))
      .append("=")
      .append(ValueName(flag))
      .push_back('\n');
  AppendWrapped(flag.Help(), out);
  const std::string value = flag.DefaultValue();
  out->append(kTextIndent)
      .append("Default: ")
      .append(flag.IsOfType<std::string>() ? "\"" + value + "\"" : value)
      .append("\n");
}

}  // namespace

std::string GroupedFlagsHelp(std::string_view usage, const std::vector<FlagGroup>& groups) {
  // Abseil registers the flags of every linked library too; ours are the ones
  // defined in cmd/ and server/ (their file name is the build's, which means nothing here).
  std::map<std::string, const absl::CommandLineFlag*> ours;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    const std::string file(flag->Filename());
    if (file.find("cmd/") != std::string::npos || file.find("server/") != std::string::npos) {
      ours[std::string(name)] = flag;
    }
  }
  std::string out(usage);
  if (!out.empty() && out.back() != '\n') out.push_back('\n');
  std::set<std::string> listed;
  for (const FlagGroup& group : groups) {
    out.append("\n").append(group.title).append(":\n");
    for (std::string_view name : group.flags) {
      auto it = ours.find(std::string(name));
      if (it == ours.end() || !listed.insert(it->first).second) continue;
      AppendFlag(*it->second, &out);
    }
  }
  // A flag someone added without placing it in a group is still shown.
  bool other_heading = false;
  for (const auto& [name, flag] : ours) {
    if (listed.count(name) != 0) continue;
    if (!other_heading) out.append("\nOther flags:\n");
    other_heading = true;
    AppendFlag(*flag, &out);
  }
  out.append(
      "\nAlso: --version; --helpfull lists these with the flags of the libraries stanzad is "
      "built on.\n");
  return out;
}

bool PrintGroupedHelpIfAsked(int argc, char** argv, std::string_view usage,
                             const std::vector<FlagGroup>& groups) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) return false;
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-help") == 0 ||
        std::strcmp(argv[i], "--helpshort") == 0 || std::strcmp(argv[i], "-helpshort") == 0) {
      const std::string text = GroupedFlagsHelp(usage, groups);
      std::fwrite(text.data(), 1, text.size(), stdout);
      return true;
    }
  }
  return false;
}

}  // namespace stanzad
