#include "core/config/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <limits>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/config/byte_codec.h"
#include "core/jid/jid.h"

namespace stanzad::config {
namespace {

constexpr uint8_t kFormatVersion = 1;
// Format 2 is format 1 followed by the cluster section (the unknown-user salt key and the
// join tokens); a configuration without them is still written as format 1, byte for byte.
constexpr uint8_t kFormatVersionWithClusterSection = 2;
constexpr uint8_t kHasScramSha1 = 1;
constexpr uint8_t kHasScramSha256 = 2;

// `text` in double quotes for an error message: non-printable bytes as \xHH, cut at 80
// bytes, so that a message stays one readable line whatever the input was.
std::string Quoted(std::string_view text) {
  constexpr size_t kShownBytesMax = 80;
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < kShownBytesMax; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    }
  }
  if (text.size() > kShownBytesMax) out.append("...");
  out.push_back('"');
  return out;
}

absl::Status Invalid(std::string message) { return absl::InvalidArgumentError(message); }

std::string_view MessageOf(const absl::Status& status) {
  return std::string_view(status.message().data(), status.message().size());
}

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One DNS label in canonical (lowercase) form; `what` names it in the message.
absl::Status ValidateLabel(std::string_view label, std::string_view what, std::string_view whole) {
  if (label.empty()) return Invalid(Concat(what, " ", Quoted(whole), " has an empty label"));
  if (label.size() > kDnsLabelBytesMax) {
    return Invalid(Concat(what, " ", Quoted(whole), " has a label longer than 63 bytes"));
  }
  for (char c : label) {
    if (IsLowerAlnum(c) || c == '-') continue;
    if (c >= 'A' && c <= 'Z') {
      return Invalid(Concat(what, " ", Quoted(whole), " must be lowercase"));
    }
    return Invalid(Concat(what, " ", Quoted(whole),
                          " may hold only letters, digits and '-' (and dots between labels)"));
  }
  if (label.front() == '-' || label.back() == '-') {
    return Invalid(Concat(what, " ", Quoted(whole), " has a label that starts or ends with '-'"));
  }
  return absl::OkStatus();
}

absl::Status ValidateScramSecret(const ScramSecret& secret, size_t key_bytes,
                                 std::string_view mechanism) {
  if (secret.salt.size() < kScramSaltBytesMin || secret.salt.size() > kScramSaltBytesMax) {
    return Invalid(Concat(mechanism, " salt must be 8..128 bytes"));
  }
  if (secret.iteration_count < kScramIterationsMin ||
      secret.iteration_count > kScramIterationsMax) {
    return Invalid(Concat(mechanism, " iteration count must be 4096..10000000"));
  }
  if (secret.stored_key.size() != key_bytes || secret.server_key.size() != key_bytes) {
    return Invalid(Concat(mechanism, " stored key and server key must be ",
                          key_bytes == kSha1Bytes ? "20" : "32", " bytes each"));
  }
  return absl::OkStatus();
}

absl::Status ValidatePath(std::string_view path, std::string_view what) {
  if (path.empty()) return absl::OkStatus();
  if (path.size() > kPathBytesMax) return Invalid(Concat(what, " path is too long"));
  if (path.front() != '/') {
    return Invalid(Concat(what, " path ", Quoted(path), " must be absolute"));
  }
  if (path.find('\0') != std::string_view::npos) {
    return Invalid(Concat(what, " path ", Quoted(path), " contains a NUL byte"));
  }
  return absl::OkStatus();
}

void PutScramSecret(const ScramSecret& secret, ByteWriter* w) {
  w->PutString(secret.salt);
  w->PutU32(secret.iteration_count);
  w->PutString(secret.stored_key);
  w->PutString(secret.server_key);
}

bool GetScramSecret(ByteReader* r, ScramSecret* secret) {
  return r->GetString(&secret->salt, kScramSaltBytesMax) && r->GetU32(&secret->iteration_count) &&
         r->GetString(&secret->stored_key, kSha256Bytes) &&
         r->GetString(&secret->server_key, kSha256Bytes);
}

// Smallest encodings, to bound item counts by the bytes left (ByteReader::GetCount).
constexpr size_t kStringBytesMin = 4;
constexpr size_t kCallbridgeBytesMin = 2 * kStringBytesMin;
constexpr size_t kUserBytesMin = kStringBytesMin + 1;
constexpr size_t kMemberBytesMin = 8 + kStringBytesMin;

}  // namespace

absl::Status ValidateDomain(std::string_view domain) {
  if (domain.empty()) return Invalid("domain is empty");
  if (domain.size() > kDomainBytesMax) {
    return Invalid(Concat("domain ", Quoted(domain), " is longer than 253 bytes"));
  }
  std::string_view last_label;
  std::string_view rest = domain;
  while (true) {
    size_t dot = rest.find('.');
    std::string_view label = rest.substr(0, dot);
    if (absl::Status status = ValidateLabel(label, "domain", domain); !status.ok()) return status;
    last_label = label;
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  bool all_digits = true;
  for (char c : last_label) all_digits = all_digits && c >= '0' && c <= '9';
  if (all_digits) {
    return Invalid(Concat("domain ", Quoted(domain),
                          " must be a DNS name, not an address (its last label is all digits)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCallbridgeName(std::string_view name) {
  if (name.empty()) return Invalid("callbridge name is empty");
  if (name.size() > kCallbridgeNameBytesMax) {
    return Invalid(Concat("callbridge name ", Quoted(name), " is longer than 63 bytes"));
  }
  if (name.find('.') != std::string_view::npos) {
    return Invalid(Concat("callbridge name ", Quoted(name),
                          " must be one DNS label (no dots): the bridge connects as "
                          "<name>.<domain>"));
  }
  return ValidateLabel(name, "callbridge name", name);
}

absl::Status ValidateCallbridgeSecret(std::string_view secret) {
  // The secret itself never appears in a message: messages end up in logs.
  if (secret.empty()) return Invalid("callbridge secret is empty");
  if (secret.size() > kCallbridgeSecretBytesMax) {
    return Invalid("callbridge secret is longer than 256 bytes");
  }
  for (char c : secret) {
    if (c < 0x21 || c > 0x7e) {
      return Invalid("callbridge secret may hold only printable ASCII characters, no spaces");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateUserName(std::string_view name) {
  if (name.empty()) return Invalid("user name is empty");
  if (name.size() > kUserNameBytesMax) {
    return Invalid(Concat("user name ", Quoted(name), " is longer than 1023 bytes"));
  }
  // A user name is a JID localpart in canonical form: the JID module's rules.
  absl::StatusOr<jid::Jid> address = jid::Jid::Parse(Concat(name, "@example.invalid"));
  if (!address.ok()) {
    return Invalid(
        Concat("user name ", Quoted(name), ": ", std::string(address.status().message())));
  }
  if (address->localpart() != name) {
    return Invalid(Concat("user name ", Quoted(name), " is not in canonical form; use ",
                          Quoted(address->localpart())));
  }
  return absl::OkStatus();
}

SharedCredentials::SharedCredentials() {
  // One object for every empty value (a map's operator[], a decoder's blank): no allocation.
  static const auto* const kNone =
      new std::shared_ptr<const UserCredentials>(std::make_shared<const UserCredentials>());
  credentials_ = *kNone;
}

absl::Status ValidateUserCredentials(const UserCredentials& credentials) {
  if (!credentials.scram_sha1.has_value() && !credentials.scram_sha256.has_value()) {
    return Invalid("user credentials hold neither SCRAM-SHA-1 nor SCRAM-SHA-256 keys");
  }
  if (credentials.scram_sha1.has_value()) {
    absl::Status status = ValidateScramSecret(*credentials.scram_sha1, kSha1Bytes, "SCRAM-SHA-1");
    if (!status.ok()) return status;
  }
  if (credentials.scram_sha256.has_value()) {
    absl::Status status =
        ValidateScramSecret(*credentials.scram_sha256, kSha256Bytes, "SCRAM-SHA-256");
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status ValidateListenAddress(std::string_view address) {
  if (address.empty()) return Invalid("listen address is empty");
  if (address.size() <= INET6_ADDRSTRLEN) {
    std::string terminated(address);
    unsigned char buffer[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, terminated.c_str(), buffer) == 1) return absl::OkStatus();
    if (inet_pton(AF_INET6, terminated.c_str(), buffer) == 1) return absl::OkStatus();
  }
  // Not an address: it must be an interface name as Linux accepts it (dev_valid_name).
  if (address.size() > kInterfaceNameBytesMax || address == "." || address == "..") {
    return Invalid(Concat("listen address ", Quoted(address),
                          " is neither an IP address nor an interface name"));
  }
  for (char c : address) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '/' || c == ':') {
      return Invalid(Concat("listen address ", Quoted(address),
                            " is neither an IP address nor an interface name"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateListenAddresses(const std::vector<std::string>& addresses) {
  if (addresses.size() > kListenAddressesMax) {
    return Invalid("more than 16 listen addresses");
  }
  std::set<std::string_view> seen;
  for (const std::string& address : addresses) {
    if (absl::Status status = ValidateListenAddress(address); !status.ok()) return status;
    if (!seen.insert(address).second) {
      return Invalid(Concat("listen address ", Quoted(address), " is given twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTlsFiles(const TlsFiles& files) {
  if (absl::Status s = ValidatePath(files.key_path, "key"); !s.ok()) return s;
  if (absl::Status s = ValidatePath(files.certificate_path, "certificate"); !s.ok()) return s;
  if (absl::Status s = ValidatePath(files.bundle_path, "bundle"); !s.ok()) return s;
  if (files.key_path.empty() != files.certificate_path.empty()) {
    return Invalid("a key needs a certificate and a certificate needs a key");
  }
  if (!files.bundle_path.empty() && files.key_path.empty()) {
    return Invalid("a bundle needs a key and a certificate");
  }
  return absl::OkStatus();
}

absl::Status ValidateMemberAddress(std::string_view address) {
  if (address.empty()) return Invalid("member address is empty");
  if (address.size() > kMemberAddressBytesMax) {
    return Invalid(Concat("member address ", Quoted(address), " is longer than 300 bytes"));
  }
  return absl::OkStatus();
}

std::string CallbridgeAddress(std::string_view name, std::string_view domain) {
  return Concat(name, ".", domain);
}

absl::Status Config::Validate() const {
  if (!domain.empty()) {
    if (absl::Status status = ValidateDomain(domain); !status.ok()) return status;
  }
  if (absl::Status status = ValidateListenAddresses(listen); !status.ok()) return status;
  if (absl::Status status = ValidateTlsFiles(tls); !status.ok()) return status;
  if (callbridges.size() > kCallbridgesMax) return Invalid("more than 100000 call bridges");
  for (const auto& [name, bridge] : callbridges) {
    if (absl::Status status = ValidateCallbridgeName(name); !status.ok()) return status;
    if (absl::Status status = ValidateCallbridgeSecret(bridge.secret); !status.ok()) {
      return Invalid(Concat("callbridge ", name, ": ", MessageOf(status)));
    }
    if (!domain.empty() && name.size() + 1 + domain.size() > kDomainBytesMax) {
      return Invalid(Concat("callbridge address ", CallbridgeAddress(name, domain),
                            " is longer than 253 bytes"));
    }
  }
  if (users.size() > kUsersMax) return Invalid("more than 1000000 users");
  for (const auto& [name, credentials] : users) {
    if (absl::Status status = ValidateUserName(name); !status.ok()) return status;
    if (absl::Status status = ValidateUserCredentials(credentials); !status.ok()) {
      return Invalid(Concat("user ", name, ": ", MessageOf(status)));
    }
  }
  if (!unknown_user_salt_key.empty() &&
      (unknown_user_salt_key.size() < 32 || unknown_user_salt_key.size() > kSaltKeyBytesMax)) {
    return Invalid("the unknown-user salt key must have 32 to 128 bytes");
  }
  if (join_tokens.size() > kJoinTokensMax) return Invalid("more than 64 join tokens");
  if (member_identities.size() > kMembersMax + kJoinTokensMax) {
    return Invalid("too many member identities");
  }
  for (const auto& [id, identity] : member_identities) {
    if (id == 0 || identity.size() != kMemberIdentityBytes) {
      return Invalid("a member identity with node id 0 or of the wrong size");
    }
  }
  for (const auto& [id, token] : join_tokens) {
    if (id == 0 || token.secret.size() != kJoinTokenSecretBytes) {
      return Invalid("a join token with id 0 or a secret of the wrong size");
    }
  }
  if (members.size() > kMembersMax) return Invalid("more than 1024 cluster members");
  std::set<std::string_view> addresses;
  for (const auto& [id, address] : members) {
    if (id == 0) return Invalid("cluster member with node id 0");
    if (absl::Status status = ValidateMemberAddress(address); !status.ok()) return status;
    if (!addresses.insert(address).second) {
      return Invalid(Concat("two cluster members have the address ", Quoted(address)));
    }
  }
  return absl::OkStatus();
}

namespace {

bool HasClusterSection(const Config& config) {
  return !config.unknown_user_salt_key.empty() || !config.join_tokens.empty() ||
         !config.member_identities.empty();
}

}  // namespace

ConfigEncoder::ConfigEncoder(const Config& config)
    : config_(config),
      next_callbridge_(config.callbridges.begin()),
      next_user_(config.users.begin()) {
  DCHECK(config.Validate().ok());
}

bool ConfigEncoder::Step(size_t entries, std::string* out) {
  CHECK_GT(entries, 0u);
  ByteWriter w(std::move(*out));
  if (part_ == Part::kHead) {
    w.PutU8(HasClusterSection(config_) ? kFormatVersionWithClusterSection : kFormatVersion);
    w.PutU64(config_.version);
    w.PutString(config_.domain);
    w.PutU32(static_cast<uint32_t>(config_.listen.size()));
    for (const std::string& address : config_.listen) w.PutString(address);
    w.PutString(config_.tls.key_path);
    w.PutString(config_.tls.certificate_path);
    w.PutString(config_.tls.bundle_path);
    w.PutU32(static_cast<uint32_t>(config_.callbridges.size()));
    part_ = Part::kCallbridges;
  }
  for (; part_ == Part::kCallbridges && entries > 0; --entries) {
    if (next_callbridge_ == config_.callbridges.end()) {
      w.PutU32(static_cast<uint32_t>(config_.users.size()));
      part_ = Part::kUsers;
      break;
    }
    w.PutString(next_callbridge_->first);
    w.PutString(next_callbridge_->second.secret);
    ++next_callbridge_;
  }
  for (; part_ == Part::kUsers && entries > 0; --entries) {
    if (next_user_ == config_.users.end()) {
      part_ = Part::kTail;
      break;
    }
    const std::string& name = next_user_->first;
    const UserCredentials& credentials = *next_user_->second;
    w.PutString(name);
    const uint8_t flags = (credentials.scram_sha1.has_value() ? kHasScramSha1 : 0) |
                          (credentials.scram_sha256.has_value() ? kHasScramSha256 : 0);
    w.PutU8(flags);
    if (credentials.scram_sha1.has_value()) PutScramSecret(*credentials.scram_sha1, &w);
    if (credentials.scram_sha256.has_value()) PutScramSecret(*credentials.scram_sha256, &w);
    ++next_user_;
  }
  if (part_ == Part::kUsers && next_user_ == config_.users.end()) part_ = Part::kTail;
  if (part_ == Part::kTail) {
    w.PutU32(static_cast<uint32_t>(config_.members.size()));
    for (const auto& [id, address] : config_.members) {
      w.PutU64(id);
      w.PutString(address);
    }
    if (HasClusterSection(config_)) {
      w.PutString(config_.unknown_user_salt_key);
      w.PutU32(static_cast<uint32_t>(config_.join_tokens.size()));
      for (const auto& [id, token] : config_.join_tokens) {
        w.PutU64(id);
        w.PutString(token.secret);
        w.PutU64(token.expires_unix_s);
      }
      w.PutU32(static_cast<uint32_t>(config_.member_identities.size()));
      for (const auto& [id, identity] : config_.member_identities) {
        w.PutU64(id);
        w.PutString(identity);
      }
    }
    part_ = Part::kDone;
  }
  *out = w.Take();
  return part_ == Part::kDone;
}

std::string EncodeConfig(const Config& config) {
  ConfigEncoder encoder(config);
  std::string out;
  while (!encoder.Step(std::numeric_limits<size_t>::max(), &out)) {
  }
  return out;
}

absl::StatusOr<Config> DecodeConfig(std::string_view bytes) {
  ByteReader r(bytes);
  Config config;
  uint8_t format = 0;
  if (!r.GetU8(&format)) return Invalid("configuration: empty input");
  if (format != kFormatVersion && format != kFormatVersionWithClusterSection) {
    return Invalid(Concat("configuration: unknown format version ", std::to_string(format)));
  }
  auto truncated = [] { return Invalid("configuration: truncated or malformed"); };
  uint32_t count = 0;
  if (!r.GetU64(&config.version) || !r.GetString(&config.domain, kDomainBytesMax) ||
      !r.GetCount(&count, kListenAddressesMax, kStringBytesMin)) {
    return truncated();
  }
  config.listen.resize(count);
  for (std::string& address : config.listen) {
    if (!r.GetString(&address, INET6_ADDRSTRLEN)) return truncated();
  }
  if (!r.GetString(&config.tls.key_path, kPathBytesMax) ||
      !r.GetString(&config.tls.certificate_path, kPathBytesMax) ||
      !r.GetString(&config.tls.bundle_path, kPathBytesMax) ||
      !r.GetCount(&count, kCallbridgesMax, kCallbridgeBytesMin)) {
    return truncated();
  }
  // Keys must come strictly ascending, as EncodeConfig writes them: one encoding per value.
  for (uint32_t i = 0; i < count; ++i) {
    std::string name;
    Callbridge bridge;
    if (!r.GetString(&name, kCallbridgeNameBytesMax) ||
        !r.GetString(&bridge.secret, kCallbridgeSecretBytesMax)) {
      return truncated();
    }
    if (!config.callbridges.empty() && config.callbridges.rbegin()->first >= name) {
      return Invalid("configuration: call bridges out of order");
    }
    config.callbridges.emplace_hint(config.callbridges.end(), std::move(name), std::move(bridge));
  }
  if (!r.GetCount(&count, kUsersMax, kUserBytesMin)) return truncated();
  for (uint32_t i = 0; i < count; ++i) {
    std::string name;
    uint8_t flags = 0;
    UserCredentials credentials;
    if (!r.GetString(&name, kUserNameBytesMax) || !r.GetU8(&flags)) return truncated();
    if ((flags & ~(kHasScramSha1 | kHasScramSha256)) != 0) {
      return Invalid("configuration: unknown credential kind");
    }
    if ((flags & kHasScramSha1) != 0 && !GetScramSecret(&r, &credentials.scram_sha1.emplace())) {
      return truncated();
    }
    if ((flags & kHasScramSha256) != 0 &&
        !GetScramSecret(&r, &credentials.scram_sha256.emplace())) {
      return truncated();
    }
    if (!config.users.empty() && config.users.rbegin()->first >= name) {
      return Invalid("configuration: users out of order");
    }
    config.users.emplace_hint(config.users.end(), std::move(name), std::move(credentials));
  }
  if (!r.GetCount(&count, kMembersMax, kMemberBytesMin)) return truncated();
  for (uint32_t i = 0; i < count; ++i) {
    uint64_t id = 0;
    std::string address;
    if (!r.GetU64(&id) || !r.GetString(&address, kMemberAddressBytesMax)) return truncated();
    if (!config.members.empty() && config.members.rbegin()->first >= id) {
      return Invalid("configuration: members out of order");
    }
    config.members.emplace_hint(config.members.end(), id, std::move(address));
  }
  if (format == kFormatVersionWithClusterSection) {
    if (!r.GetString(&config.unknown_user_salt_key, kSaltKeyBytesMax) ||
        !r.GetCount(&count, kJoinTokensMax, 8 + 4 + kJoinTokenSecretBytes + 8)) {
      return truncated();
    }
    for (uint32_t i = 0; i < count; ++i) {
      uint64_t id = 0;
      JoinTokenGrant token;
      if (!r.GetU64(&id) || !r.GetString(&token.secret, kJoinTokenSecretBytes) ||
          !r.GetU64(&token.expires_unix_s)) {
        return truncated();
      }
      if (!config.join_tokens.empty() && config.join_tokens.rbegin()->first >= id) {
        return Invalid("configuration: join tokens out of order");
      }
      config.join_tokens.emplace_hint(config.join_tokens.end(), id, std::move(token));
    }
    if (!r.GetCount(&count, kMembersMax + kJoinTokensMax, 8 + 4 + kMemberIdentityBytes)) {
      return truncated();
    }
    for (uint32_t i = 0; i < count; ++i) {
      uint64_t id = 0;
      std::string identity;
      if (!r.GetU64(&id) || !r.GetString(&identity, kMemberIdentityBytes)) return truncated();
      if (!config.member_identities.empty() && config.member_identities.rbegin()->first >= id) {
        return Invalid("configuration: member identities out of order");
      }
      config.member_identities.emplace_hint(config.member_identities.end(), id,
                                            std::move(identity));
    }
    if (config.unknown_user_salt_key.empty() && config.join_tokens.empty() &&
        config.member_identities.empty()) {
      return Invalid("configuration: an empty cluster section");
    }
  }
  if (!r.empty()) return Invalid("configuration: trailing bytes");
  if (absl::Status status = config.Validate(); !status.ok()) {
    return Invalid(Concat("configuration: ", MessageOf(status)));
  }
  return config;
}

}  // namespace stanzad::config
