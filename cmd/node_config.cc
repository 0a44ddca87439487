#include "cmd/node_config.h"

#include <arpa/inet.h>
#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "cluster/storage/atomic_file.h"
#include "core/base/concat.h"
#include "core/sasl/credentials.h"

namespace stanzad {
namespace {

absl::Status ErrnoError(std::string_view what, int error) {
  return absl::InternalError(Concat(what, ": ", std::strerror(error)));
}

bool IsLabel(std::string_view label) {
  if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
    return false;
  }
  for (char c : label) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

}  // namespace

absl::Status ValidateDomain(std::string_view domain) {
  if (domain.empty() || domain.size() > 253) {
    return absl::InvalidArgumentError("domain must be 1 to 253 characters, e.g. example.com");
  }
  size_t start = 0;
  while (true) {
    const size_t dot = domain.find('.', start);
    const std::string_view label = domain.substr(start, dot - start);
    if (!IsLabel(label)) {
      return absl::InvalidArgumentError(
          Concat("domain '", domain,
                 "' is not a valid DNS name: use lower-case letters, digits, '-' and '.' "
                 "(labels of 1-63 characters), e.g. example.com"));
    }
    if (dot == std::string_view::npos) return absl::OkStatus();
    start = dot + 1;
  }
}

absl::Status ValidateCallbridgeName(std::string_view name) {
  if (!IsLabel(name)) {
    return absl::InvalidArgumentError(
        Concat("call bridge name '", name,
               "' is not valid: use 1-63 lower-case letters, digits or '-' (it becomes the "
               "component address NAME.DOMAIN)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSecret(std::string_view secret) {
  if (secret.size() < 8 || secret.size() > 256) {
    return absl::InvalidArgumentError("secret must be 8 to 256 characters");
  }
  for (char c : secret) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7F) {
      return absl::InvalidArgumentError(
          "secret may contain only printable ASCII characters without spaces");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateListenAddress(std::string_view address) {
  std::string text(address);
  unsigned char buffer[16];
  if (inet_pton(AF_INET, text.c_str(), buffer) == 1 ||
      inet_pton(AF_INET6, text.c_str(), buffer) == 1) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      Concat("listen address '", address,
             "' is not an IPv4 or IPv6 address (e.g. 127.0.0.1, 0.0.0.0, ::1 or ::)"));
}

std::string GenerateCallbridgeSecret() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  while (true) {
    std::string secret;
    while (secret.size() < 20) {
      unsigned char random[32];
      const ssize_t got = getrandom(random, sizeof(random), 0);
      if (got <= 0) continue;
      for (ssize_t i = 0; i < got && secret.size() < 20; ++i) {
        // 62 * 4 = 248: rejecting 248..255 keeps every character equally likely.
        if (random[i] < 248) secret.push_back(kAlphabet[random[i] % 62]);
      }
    }
    bool upper = false, lower = false, digit = false;
    for (char c : secret) {
      upper |= c >= 'A' && c <= 'Z';
      lower |= c >= 'a' && c <= 'z';
      digit |= c >= '0' && c <= '9';
    }
    if (upper && lower && digit) return secret;
  }
}

std::string SerializeNodeConfig(const NodeConfig& config) {
  std::string out = "stanzad-config 1\n";
  if (!config.domain.empty()) out.append(Concat("domain ", config.domain, "\n"));
  for (const std::string& address : config.listen) out.append(Concat("listen ", address, "\n"));
  out.append(config.enabled ? "enabled 1\n" : "enabled 0\n");
  for (const auto& [name, secret] : config.callbridges) {
    out.append(Concat("callbridge ", name, " ", secret, "\n"));
  }
  for (const auto& [name, credentials] : config.users) {
    out.append(Concat("user ", name, " ", sasl::EncodeUserCredentials(credentials), "\n"));
  }
  if (config.cluster_enabled) out.append("cluster_enabled 1\n");
  if (!config.cluster_trust.empty())
    out.append(Concat("cluster_trust ", config.cluster_trust, "\n"));
  if (!config.tls_key.empty()) out.append(Concat("tls_key ", config.tls_key, "\n"));
  if (!config.tls_certificate.empty()) {
    out.append(Concat("tls_certificate ", config.tls_certificate, "\n"));
  }
  if (!config.tls_bundle.empty()) out.append(Concat("tls_bundle ", config.tls_bundle, "\n"));
  return out;
}

absl::StatusOr<NodeConfig> ParseNodeConfig(std::string_view text) {
  NodeConfig config;
  size_t at = 0;
  int line_number = 0;
  bool saw_header = false;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string_view::npos) {
      return absl::DataLossError("config ends without a newline: it was cut short");
    }
    const std::string_view line = text.substr(at, end - at);
    at = end + 1;
    ++line_number;
    // `shown`: the line as quoted in the error (a user line's keys are left out).
    const auto bad = [&](std::string_view why, std::string_view shown = {}) {
      return absl::DataLossError(Concat("config line ", std::to_string(line_number), ": ", why,
                                        ": '", shown.empty() ? line : shown, "'"));
    };
    if (!saw_header) {
      if (line != "stanzad-config 1") return bad("not a stanzad config (version 1)");
      saw_header = true;
      continue;
    }
    const size_t space = line.find(' ');
    const std::string_view key = line.substr(0, space);
    const std::string_view value = space == std::string_view::npos ? "" : line.substr(space + 1);
    if (key == "domain") {
      if (!ValidateDomain(value).ok()) return bad("invalid domain");
      config.domain = std::string(value);
    } else if (key == "listen") {
      if (!ValidateListenAddress(value).ok()) return bad("invalid listen address");
      config.listen.emplace_back(value);
    } else if (key == "enabled") {
      if (value != "0" && value != "1") return bad("enabled must be 0 or 1");
      config.enabled = value == "1";
    } else if (key == "callbridge") {
      const size_t split = value.find(' ');
      if (split == std::string_view::npos) return bad("callbridge needs a name and a secret");
      const std::string_view name = value.substr(0, split);
      const std::string_view secret = value.substr(split + 1);
      if (!ValidateCallbridgeName(name).ok() || !ValidateSecret(secret).ok()) {
        return bad("invalid call bridge");
      }
      config.callbridges[std::string(name)] = std::string(secret);
    } else if (key == "user") {
      const size_t split = value.find(' ');
      const std::string_view name = value.substr(0, split);
      const std::string shown = Concat("user ", name, " …");
      if (split == std::string_view::npos) return bad("user needs a name and credentials", shown);
      if (absl::Status valid = config::ValidateUserName(name); !valid.ok()) {
        return bad(std::string(valid.message()), shown);
      }
      absl::StatusOr<config::UserCredentials> credentials =
          sasl::ParseUserCredentials(value.substr(split + 1));
      if (!credentials.ok()) return bad(std::string(credentials.status().message()), shown);
      if (config.users.size() >= config::kUsersMax) {
        return bad(Concat("more than ", std::to_string(config::kUsersMax), " users"), shown);
      }
      if (!config.users.emplace(name, *std::move(credentials)).second) {
        return bad("user listed twice", shown);
      }
    } else if (key == "cluster_enabled") {
      if (value != "0" && value != "1") return bad("cluster_enabled must be 0 or 1");
      config.cluster_enabled = value == "1";
    } else if (key == "tls_key" || key == "tls_certificate" || key == "tls_bundle") {
      if (value.empty() || value.size() > 4096 || value.front() != '/') {
        return bad("a TLS file must be an absolute path");
      }
      (key == "tls_key"           ? config.tls_key
       : key == "tls_certificate" ? config.tls_certificate
                                  : config.tls_bundle) = std::string(value);
    } else if (key == "cluster_trust") {
      if (value.empty() || value.size() > 4096 || value.find('\n') != std::string_view::npos) {
        return bad("invalid trust bundle path");
      }
      config.cluster_trust = std::string(value);
    } else {
      return bad("unknown setting");
    }
  }
  if (!saw_header) return absl::DataLossError("config is empty");
  return config;
}

absl::StatusOr<NodeConfig> LoadNodeConfig(const std::string& state_dir) {
  const std::string path = state_dir + "/config";
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return absl::NotFoundError(Concat("no configuration at ", path));
    return ErrnoError(Concat("cannot read ", path), errno);
  }
  std::stringstream content;
  content << in.rdbuf();
  absl::StatusOr<NodeConfig> config = ParseNodeConfig(content.str());
  if (!config.ok()) {
    return absl::DataLossError(Concat(path, ": ", std::string(config.status().message())));
  }
  return config;
}

absl::Status SaveNodeConfig(const std::string& state_dir, const NodeConfig& config) {
  return storage::WriteFileAtomically(*storage::PosixFs(), state_dir, "config",
                                      SerializeNodeConfig(config));
}

}  // namespace stanzad
