#include "server/state_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cluster/storage/atomic_file.h"
#include "core/base/log.h"

namespace stanzad::server {

void SaveSaltKey(const std::string& state_dir, const std::string& key) {
  if (absl::Status saved =
          storage::WriteFileAtomically(*storage::PosixFs(), state_dir, "sasl_salt_key", key + "\n");
      !saved.ok()) {
    LogEvent(LogLevel::kWarning, "salt_key_not_saved",
             "dir=" + state_dir + " reason=" + LogQuote(std::string(saved.message())));
  }
}

std::string LoadOrCreateSaltKey(const std::string& state_dir) {
  const std::string path = state_dir + "/sasl_salt_key";
  if (FILE* in = std::fopen(path.c_str(), "r")) {
    char buffer[128] = {};
    const size_t n = std::fread(buffer, 1, sizeof(buffer) - 1, in);
    std::fclose(in);
    std::string key(buffer, n);
    while (!key.empty() && (key.back() == '\n' || key.back() == ' ')) key.pop_back();
    if (key.size() >= 32) return key;
  }
  std::string key;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) {
    unsigned char byte = 0;
    while (getentropy(&byte, 1) != 0) {
    }
    key.push_back(kHex[byte >> 4]);
    key.push_back(kHex[byte & 0xF]);
  }
  SaveSaltKey(state_dir, key);
  return key;
}

absl::StatusOr<uint64_t> NextIncarnation(const std::string& dir) {
  uint64_t last = 0;
  if (FILE* in = std::fopen((dir + "/incarnation").c_str(), "r")) {
    char text[32] = {};
    const size_t read = std::fread(text, 1, sizeof(text) - 1, in);
    std::fclose(in);
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(text, read)), &last)) {
      return absl::DataLossError("cannot read " + dir +
                                 "/incarnation (not a number); remove it to start over at 1");
    }
  }
  if (last == std::numeric_limits<uint64_t>::max()) {
    return absl::OutOfRangeError("the incarnation in " + dir +
                                 "/incarnation is at its largest; remove the file to start over");
  }
  if (absl::Status written = storage::WriteFileAtomically(*storage::PosixFs(), dir, "incarnation",
                                                          std::to_string(last + 1) + "\n");
      !written.ok()) {
    return written;
  }
  return last + 1;
}

absl::StatusOr<NodeConfig> LoadOrSeedNodeConfig(const DaemonOptions& options) {
  const std::string& state_dir = options.state_dir;
  if (mkdir(state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError("cannot create --state_dir " + state_dir + ": " +
                                         std::strerror(errno));
  }
  // It holds the cluster key, secrets and the admin socket: nobody else may look in.
  struct stat info {};
  if (stat(state_dir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return absl::FailedPreconditionError("--state_dir " + state_dir + " is not a directory");
  }
  if ((info.st_mode & 077) != 0) {
    if (chmod(state_dir.c_str(), 0700) != 0) {
      return absl::FailedPreconditionError(
          "--state_dir " + state_dir + " can be read by other users (mode " +
          absl::StrFormat("%04o", info.st_mode & 07777) +
          ") and cannot be tightened: " + std::strerror(errno) + "; fix: chmod 700 " + state_dir);
    }
    LogEvent(LogLevel::kWarning, "state_dir_tightened",
             "dir=" + state_dir + " reason=\"other users could read it\" mode=0700");
  }
  absl::StatusOr<NodeConfig> loaded = LoadNodeConfig(state_dir);
  if (loaded.ok() || loaded.status().code() != absl::StatusCode::kNotFound) return loaded;
  NodeConfig config;
  const std::string& domain = options.seed_domain;
  const std::string& listen = options.seed_listen;
  if (!domain.empty()) {
    if (absl::Status valid = ValidateDomain(domain); !valid.ok()) {
      return absl::InvalidArgumentError("--domain: " + std::string(valid.message()));
    }
    config.domain = domain;
  }
  for (absl::string_view address : absl::StrSplit(listen, ',', absl::SkipEmpty())) {
    if (absl::Status valid = ValidateListenAddress(std::string(address)); !valid.ok()) {
      return absl::InvalidArgumentError("--listen: " + std::string(valid.message()));
    }
    config.listen.emplace_back(address);
  }
  config.enabled = !config.domain.empty() && !config.listen.empty();
  if (absl::Status saved = SaveNodeConfig(state_dir, config); !saved.ok()) return saved;
  return config;
}

}  // namespace stanzad::server
