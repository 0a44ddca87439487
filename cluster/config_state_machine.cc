#include "cluster/config_state_machine.h"

#include <limits>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/config/byte_codec.h"

namespace stanzad::cluster {
namespace {

using config::ByteReader;
using config::ByteWriter;

constexpr uint8_t kCommandFormatVersion = 1;
constexpr uint8_t kSnapshotFormatVersion = 1;

// Command kinds on the wire. Never renumber: old entries stay in logs and snapshots.
enum class CommandKind : uint8_t {
  kSetDomain = 1,
  kSetListen = 2,
  kSetTlsFiles = 3,
  kAddCallbridge = 4,
  kDeleteCallbridge = 5,
  kAddUser = 6,
  kDeleteUser = 7,
  kSetUserCredentials = 8,
  kSetSaltKey = 9,
  kAddJoinToken = 10,
  kUseJoinToken = 11,
  kSetMemberIdentity = 12,
  kImportCallbridges = 13,
  kImportUsers = 14,
};

constexpr uint8_t kHasScramSha1 = 1;
constexpr uint8_t kHasScramSha256 = 2;

std::string_view MessageOf(const absl::Status& status) {
  return std::string_view(status.message().data(), status.message().size());
}

void PutScramSecret(const config::ScramSecret& secret, ByteWriter* w) {
  w->PutString(secret.salt);
  w->PutU32(secret.iteration_count);
  w->PutString(secret.stored_key);
  w->PutString(secret.server_key);
}

void PutCredentials(const config::UserCredentials& credentials, ByteWriter* w) {
  w->PutU8((credentials.scram_sha1.has_value() ? kHasScramSha1 : 0) |
           (credentials.scram_sha256.has_value() ? kHasScramSha256 : 0));
  if (credentials.scram_sha1.has_value()) PutScramSecret(*credentials.scram_sha1, w);
  if (credentials.scram_sha256.has_value()) PutScramSecret(*credentials.scram_sha256, w);
}

bool GetScramSecret(ByteReader* r, config::ScramSecret* secret) {
  return r->GetString(&secret->salt, config::kScramSaltBytesMax) &&
         r->GetU32(&secret->iteration_count) &&
         r->GetString(&secret->stored_key, config::kSha256Bytes) &&
         r->GetString(&secret->server_key, config::kSha256Bytes);
}

bool GetCredentials(ByteReader* r, config::SharedCredentials* shared) {
  uint8_t flags = 0;
  if (!r->GetU8(&flags) || (flags & ~(kHasScramSha1 | kHasScramSha256)) != 0) return false;
  config::UserCredentials credentials;
  if ((flags & kHasScramSha1) != 0 && !GetScramSecret(r, &credentials.scram_sha1.emplace())) {
    return false;
  }
  if ((flags & kHasScramSha256) != 0 && !GetScramSecret(r, &credentials.scram_sha256.emplace())) {
    return false;
  }
  *shared = std::move(credentials);
  return true;
}

// Writes one command's kind and fields.
struct CommandEncoder {
  ByteWriter* w;

  void operator()(const SetDomain& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kSetDomain));
    w->PutString(c.domain);
  }
  void operator()(const SetListen& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kSetListen));
    w->PutU32(static_cast<uint32_t>(c.addresses.size()));
    for (const std::string& address : c.addresses) w->PutString(address);
  }
  void operator()(const SetTlsFiles& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kSetTlsFiles));
    w->PutString(c.files.key_path);
    w->PutString(c.files.certificate_path);
    w->PutString(c.files.bundle_path);
  }
  void operator()(const AddCallbridge& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kAddCallbridge));
    w->PutString(c.name);
    w->PutString(c.secret);
    w->PutU8(c.force ? 1 : 0);
  }
  void operator()(const DeleteCallbridge& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kDeleteCallbridge));
    w->PutString(c.name);
  }
  void operator()(const AddUser& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kAddUser));
    w->PutString(c.name);
    PutCredentials(c.credentials, w);
  }
  void operator()(const DeleteUser& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kDeleteUser));
    w->PutString(c.name);
  }
  void operator()(const SetUserCredentials& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kSetUserCredentials));
    w->PutString(c.name);
    PutCredentials(c.credentials, w);
  }
  void operator()(const SetSaltKey& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kSetSaltKey));
    w->PutString(c.key);
  }
  void operator()(const AddJoinToken& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kAddJoinToken));
    w->PutU64(c.id);
    w->PutString(c.secret);
    w->PutU64(c.expires_unix_s);
    w->PutU64(c.now_unix_s);
  }
  void operator()(const UseJoinToken& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kUseJoinToken));
    w->PutU64(c.id);
    w->PutU64(c.now_unix_s);
    w->PutU64(c.member);
    w->PutString(c.identity);
  }
  void operator()(const SetMemberIdentity& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kSetMemberIdentity));
    w->PutU64(c.member);
    w->PutString(c.identity);
  }
  void operator()(const ImportCallbridges& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kImportCallbridges));
    w->PutU32(static_cast<uint32_t>(c.bridges.size()));
    for (const AddCallbridge& bridge : c.bridges) {
      w->PutString(bridge.name);
      w->PutString(bridge.secret);
      w->PutU8(bridge.force ? 1 : 0);
    }
  }
  void operator()(const ImportUsers& c) const {
    w->PutU8(static_cast<uint8_t>(CommandKind::kImportUsers));
    w->PutU8(c.replace ? 1 : 0);
    w->PutU32(static_cast<uint32_t>(c.users.size()));
    for (const AddUser& user : c.users) {
      w->PutString(user.name);
      PutCredentials(user.credentials, w);
    }
  }
};

// "item K: MESSAGE" with the status's code.
absl::Status AtItem(size_t index, const absl::Status& status) {
  return absl::Status(status.code(),
                      Concat("item ", std::to_string(index + 1), ": ", MessageOf(status)));
}

// Decides a command against `current` and, when `target` is set (it is `current` itself,
// writable), carries it out. Keeping both paths in one function is what makes Check() and
// Apply() always agree.
class CommandExecutor {
 public:
  CommandExecutor(const config::Config& current, config::Config* target)
      : current_(current), target_(target) {}

  bool changed() const { return changed_; }

  absl::Status operator()(const SetDomain& c) {
    if (absl::Status status = config::ValidateDomain(c.domain); !status.ok()) return status;
    for (const auto& [name, bridge] : current_.callbridges) {
      if (name.size() + 1 + c.domain.size() > config::kDomainBytesMax) {
        return absl::InvalidArgumentError(Concat("domain ", c.domain, " would make callbridge ",
                                                 name, "'s address longer than 253 bytes"));
      }
    }
    if (current_.domain == c.domain) return absl::OkStatus();
    if (target_ != nullptr) target_->domain = c.domain;
    changed_ = true;
    return absl::OkStatus();
  }

  absl::Status operator()(const SetListen& c) {
    if (absl::Status s = config::ValidateListenAddresses(c.addresses); !s.ok()) return s;
    if (current_.listen == c.addresses) return absl::OkStatus();
    if (target_ != nullptr) target_->listen = c.addresses;
    changed_ = true;
    return absl::OkStatus();
  }

  absl::Status operator()(const SetTlsFiles& c) {
    if (absl::Status status = config::ValidateTlsFiles(c.files); !status.ok()) return status;
    if (current_.tls == c.files) return absl::OkStatus();
    if (target_ != nullptr) target_->tls = c.files;
    changed_ = true;
    return absl::OkStatus();
  }

  absl::Status operator()(const AddCallbridge& c) {
    if (absl::Status status = config::ValidateCallbridgeName(c.name); !status.ok()) return status;
    if (absl::Status s = config::ValidateCallbridgeSecret(c.secret); !s.ok()) return s;
    auto it = current_.callbridges.find(c.name);
    if (it != current_.callbridges.end()) {
      if (it->second.secret == c.secret) return absl::OkStatus();
      if (!c.force) {
        return absl::AlreadyExistsError(
            Concat("callbridge ", c.name,
                   " already has a different secret on this cluster; use --force to replace it"));
      }
    } else {
      if (current_.callbridges.size() >= config::kCallbridgesMax) {
        return absl::ResourceExhaustedError(
            Concat("cannot add callbridge ", c.name, ": the cluster already has 100000"));
      }
      if (!current_.domain.empty() &&
          c.name.size() + 1 + current_.domain.size() > config::kDomainBytesMax) {
        return absl::InvalidArgumentError(Concat("callbridge address ",
                                                 config::CallbridgeAddress(c.name, current_.domain),
                                                 " would be longer than 253 bytes"));
      }
    }
    if (target_ != nullptr) target_->callbridges[c.name].secret = c.secret;
    changed_ = true;
    return absl::OkStatus();
  }

  absl::Status operator()(const DeleteCallbridge& c) {
    if (absl::Status status = config::ValidateCallbridgeName(c.name); !status.ok()) return status;
    if (!current_.callbridges.contains(c.name)) {
      return absl::NotFoundError(Concat("callbridge ", c.name, " is not configured"));
    }
    if (target_ != nullptr) target_->callbridges.erase(c.name);
    changed_ = true;
    return absl::OkStatus();
  }

  absl::Status operator()(const AddUser& c) {
    if (absl::Status status = config::ValidateUserName(c.name); !status.ok()) return status;
    if (absl::Status s = config::ValidateUserCredentials(c.credentials); !s.ok()) return s;
    auto it = current_.users.find(c.name);
    if (it != current_.users.end()) {
      if (it->second == c.credentials) return absl::OkStatus();
      return absl::AlreadyExistsError(
          Concat("user ", c.name, " already exists on this cluster; change its password instead"));
    }
    if (current_.users.size() >= config::kUsersMax) {
      return absl::ResourceExhaustedError(
          Concat("cannot add user ", c.name, ": the cluster already has 1000000"));
    }
    if (target_ != nullptr) target_->users.emplace(c.name, c.credentials);
    changed_ = true;
    return absl::OkStatus();
  }

  absl::Status operator()(const DeleteUser& c) {
    if (absl::Status status = config::ValidateUserName(c.name); !status.ok()) return status;
    if (!current_.users.contains(c.name)) {
      return absl::NotFoundError(Concat("user ", c.name, " does not exist"));
    }
    if (target_ != nullptr) target_->users.erase(c.name);
    changed_ = true;
    return absl::OkStatus();
  }

  absl::Status operator()(const SetUserCredentials& c) {
    if (absl::Status status = config::ValidateUserName(c.name); !status.ok()) return status;
    if (absl::Status s = config::ValidateUserCredentials(c.credentials); !s.ok()) return s;
    auto it = current_.users.find(c.name);
    if (it == current_.users.end()) {
      return absl::NotFoundError(Concat("user ", c.name, " does not exist"));
    }
    if (it->second == c.credentials) return absl::OkStatus();
    if (target_ != nullptr) target_->users[c.name] = c.credentials;
    changed_ = true;
    return absl::OkStatus();
  }

  // A batch: every item is decided against the state before the batch (names are distinct,
  // so no item decides another's fate), the count checked for the batch as a whole, and
  // only then is anything written.
  absl::Status operator()(const ImportCallbridges& c) {
    if (c.bridges.empty() || c.bridges.size() > kImportBatchItemsMax) {
      return absl::InvalidArgumentError("an import batch holds 1 to 10000 call bridges");
    }
    absl::flat_hash_set<std::string_view> names;
    size_t added = 0;
    CommandExecutor check(current_, nullptr);
    for (size_t i = 0; i < c.bridges.size(); ++i) {
      const AddCallbridge& bridge = c.bridges[i];
      if (!names.insert(bridge.name).second) {
        return AtItem(i, absl::InvalidArgumentError(
                             Concat("callbridge ", bridge.name, " appears twice in the batch")));
      }
      if (absl::Status status = check(bridge); !status.ok()) return AtItem(i, status);
      if (!current_.callbridges.contains(bridge.name) &&
          current_.callbridges.size() + ++added > config::kCallbridgesMax) {
        return AtItem(
            i, absl::ResourceExhaustedError(Concat("cannot add callbridge ", bridge.name,
                                                   ": the cluster would have more than 100000")));
      }
    }
    if (!check.changed()) return absl::OkStatus();
    for (const AddCallbridge& bridge : c.bridges) (void)(*this)(bridge);
    return absl::OkStatus();
  }

  absl::Status operator()(const ImportUsers& c) {
    if (c.users.empty() || c.users.size() > kImportBatchItemsMax) {
      return absl::InvalidArgumentError("an import batch holds 1 to 10000 users");
    }
    absl::flat_hash_set<std::string_view> names;
    size_t added = 0;
    CommandExecutor check(current_, nullptr);
    for (size_t i = 0; i < c.users.size(); ++i) {
      const AddUser& user = c.users[i];
      if (!names.insert(user.name).second) {
        return AtItem(i, absl::InvalidArgumentError(
                             Concat("user ", user.name, " appears twice in the batch")));
      }
      const bool exists = current_.users.contains(user.name);
      absl::Status status = exists && c.replace
                                ? check(SetUserCredentials{user.name, user.credentials})
                                : check(user);
      if (!status.ok()) return AtItem(i, status);
      if (!exists && current_.users.size() + ++added > config::kUsersMax) {
        return AtItem(
            i, absl::ResourceExhaustedError(Concat("cannot add user ", user.name,
                                                   ": the cluster would have more than 1000000")));
      }
    }
    if (!check.changed()) return absl::OkStatus();
    for (const AddUser& user : c.users) {
      if (c.replace && current_.users.contains(user.name)) {
        (void)(*this)(SetUserCredentials{user.name, user.credentials});
      } else {
        (void)(*this)(user);
      }
    }
    return absl::OkStatus();
  }

  absl::Status operator()(const SetSaltKey& c) {
    if (c.key.size() < 32 || c.key.size() > config::kSaltKeyBytesMax) {
      return absl::InvalidArgumentError("the unknown-user salt key must have 32 to 128 bytes");
    }
    if (current_.unknown_user_salt_key == c.key) return absl::OkStatus();
    if (!current_.unknown_user_salt_key.empty()) {
      return absl::AlreadyExistsError("the cluster already has an unknown-user salt key");
    }
    if (target_ != nullptr) target_->unknown_user_salt_key = c.key;
    changed_ = true;
    return absl::OkStatus();
  }

  absl::Status operator()(const AddJoinToken& c) {
    if (c.id == 0 || c.secret.size() != config::kJoinTokenSecretBytes) {
      return absl::InvalidArgumentError("a join token needs an id and a 16-byte secret");
    }
    if (c.expires_unix_s <= c.now_unix_s) {
      return absl::InvalidArgumentError("a join token must expire in the future");
    }
    if (current_.join_tokens.contains(c.id)) {
      return absl::AlreadyExistsError("a join token with this id exists");
    }
    size_t live = 0;
    for (const auto& [id, token] : current_.join_tokens) {
      live += token.expires_unix_s > c.now_unix_s ? 1 : 0;
    }
    if (live >= config::kJoinTokensMax) {
      return absl::ResourceExhaustedError(
          "the cluster already has 64 unused join tokens; wait for some to expire or be used");
    }
    if (target_ != nullptr) {
      std::erase_if(target_->join_tokens,
                    [&](const auto& entry) { return entry.second.expires_unix_s <= c.now_unix_s; });
      target_->join_tokens[c.id] = {c.secret, c.expires_unix_s};
    }
    changed_ = true;
    return absl::OkStatus();
  }

  absl::Status operator()(const UseJoinToken& c) {
    auto it = current_.join_tokens.find(c.id);
    if (it == current_.join_tokens.end() || it->second.expires_unix_s <= c.now_unix_s) {
      return absl::NotFoundError(
          "the join token is unknown, used or expired; make a new one on a member with "
          "'stanzactl cluster token'");
    }
    if (c.member == 0 ||
        (!c.identity.empty() && c.identity.size() != config::kMemberIdentityBytes)) {
      return absl::InvalidArgumentError("a join needs the joiner's node id and a 32-byte identity");
    }
    if (!c.identity.empty()) {
      if (absl::Status bindable = Bindable(c.member, c.identity); !bindable.ok()) return bindable;
    }
    if (target_ != nullptr) {
      target_->join_tokens.erase(c.id);
      if (!c.identity.empty()) target_->member_identities[c.member] = c.identity;
    }
    changed_ = true;
    return absl::OkStatus();
  }

  absl::Status operator()(const SetMemberIdentity& c) {
    if (c.member == 0 || c.identity.size() != config::kMemberIdentityBytes) {
      return absl::InvalidArgumentError("a member identity needs a node id and 32 bytes");
    }
    auto it = current_.member_identities.find(c.member);
    if (it != current_.member_identities.end() && it->second == c.identity) {
      return absl::OkStatus();
    }
    if (absl::Status bindable = Bindable(c.member, c.identity); !bindable.ok()) return bindable;
    if (target_ != nullptr) target_->member_identities[c.member] = c.identity;
    changed_ = true;
    return absl::OkStatus();
  }

 private:
  // A node id gets one certificate key, once (until it is removed), and the bindings
  // stay within what a configuration may hold.
  absl::Status Bindable(uint64_t member, const std::string& identity) const {
    auto it = current_.member_identities.find(member);
    if (it != current_.member_identities.end()) {
      return it->second == identity
                 ? absl::OkStatus()
                 : absl::AlreadyExistsError("this node id has another certificate key bound");
    }
    if (current_.member_identities.size() >= config::kMembersMax + config::kJoinTokensMax) {
      return absl::ResourceExhaustedError("too many member identities");
    }
    return absl::OkStatus();
  }

  const config::Config& current_;
  config::Config* target_;
  bool changed_ = false;
};

}  // namespace

std::string EncodeConfigCommand(const ConfigCommand& command) {
  ByteWriter w;
  w.PutU8(kCommandFormatVersion);
  std::visit(CommandEncoder{&w}, command);
  return w.Take();
}

absl::StatusOr<ConfigCommand> DecodeConfigCommand(std::string_view bytes) {
  ByteReader r(bytes);
  uint8_t format = 0;
  uint8_t kind = 0;
  if (!r.GetU8(&format) || !r.GetU8(&kind)) {
    return absl::InvalidArgumentError("configuration command: truncated");
  }
  if (format != kCommandFormatVersion) {
    return absl::InvalidArgumentError(
        Concat("configuration command: unknown format version ", std::to_string(format)));
  }
  ConfigCommand command;
  bool ok = false;
  switch (static_cast<CommandKind>(kind)) {
    case CommandKind::kSetDomain: {
      SetDomain c;
      ok = r.GetString(&c.domain, config::kDomainBytesMax);
      command = std::move(c);
      break;
    }
    case CommandKind::kSetListen: {
      SetListen c;
      uint32_t count = 0;
      ok = r.GetCount(&count, config::kListenAddressesMax, 4);
      c.addresses.resize(ok ? count : 0);
      for (std::string& address : c.addresses) {
        ok = ok && r.GetString(&address, config::kPathBytesMax);
      }
      command = std::move(c);
      break;
    }
    case CommandKind::kSetTlsFiles: {
      SetTlsFiles c;
      ok = r.GetString(&c.files.key_path, config::kPathBytesMax) &&
           r.GetString(&c.files.certificate_path, config::kPathBytesMax) &&
           r.GetString(&c.files.bundle_path, config::kPathBytesMax);
      command = std::move(c);
      break;
    }
    case CommandKind::kAddCallbridge: {
      AddCallbridge c;
      uint8_t force = 0;
      ok = r.GetString(&c.name, config::kCallbridgeNameBytesMax) &&
           r.GetString(&c.secret, config::kCallbridgeSecretBytesMax) && r.GetU8(&force) &&
           force <= 1;
      c.force = force == 1;
      command = std::move(c);
      break;
    }
    case CommandKind::kDeleteCallbridge: {
      DeleteCallbridge c;
      ok = r.GetString(&c.name, config::kCallbridgeNameBytesMax);
      command = std::move(c);
      break;
    }
    case CommandKind::kAddUser: {
      AddUser c;
      ok = r.GetString(&c.name, config::kUserNameBytesMax) && GetCredentials(&r, &c.credentials);
      command = std::move(c);
      break;
    }
    case CommandKind::kDeleteUser: {
      DeleteUser c;
      ok = r.GetString(&c.name, config::kUserNameBytesMax);
      command = std::move(c);
      break;
    }
    case CommandKind::kSetUserCredentials: {
      SetUserCredentials c;
      ok = r.GetString(&c.name, config::kUserNameBytesMax) && GetCredentials(&r, &c.credentials);
      command = std::move(c);
      break;
    }
    case CommandKind::kSetSaltKey: {
      SetSaltKey c;
      ok = r.GetString(&c.key, config::kSaltKeyBytesMax);
      command = std::move(c);
      break;
    }
    case CommandKind::kAddJoinToken: {
      AddJoinToken c;
      ok = r.GetU64(&c.id) && r.GetString(&c.secret, config::kJoinTokenSecretBytes) &&
           r.GetU64(&c.expires_unix_s) && r.GetU64(&c.now_unix_s);
      command = std::move(c);
      break;
    }
    case CommandKind::kUseJoinToken: {
      UseJoinToken c;
      ok = r.GetU64(&c.id) && r.GetU64(&c.now_unix_s) && r.GetU64(&c.member) &&
           r.GetString(&c.identity, config::kMemberIdentityBytes);
      command = std::move(c);
      break;
    }
    case CommandKind::kSetMemberIdentity: {
      SetMemberIdentity c;
      ok = r.GetU64(&c.member) && r.GetString(&c.identity, config::kMemberIdentityBytes);
      command = std::move(c);
      break;
    }
    case CommandKind::kImportCallbridges: {
      ImportCallbridges c;
      uint32_t count = 0;
      ok = r.GetCount(&count, kImportBatchItemsMax, 9);
      c.bridges.resize(ok ? count : 0);
      for (AddCallbridge& bridge : c.bridges) {
        uint8_t force = 0;
        ok = ok && r.GetString(&bridge.name, config::kCallbridgeNameBytesMax) &&
             r.GetString(&bridge.secret, config::kCallbridgeSecretBytesMax) && r.GetU8(&force) &&
             force <= 1;
        bridge.force = force == 1;
      }
      command = std::move(c);
      break;
    }
    case CommandKind::kImportUsers: {
      ImportUsers c;
      uint8_t replace = 0;
      uint32_t count = 0;
      ok = r.GetU8(&replace) && replace <= 1 && r.GetCount(&count, kImportBatchItemsMax, 5);
      c.replace = replace == 1;
      c.users.resize(ok ? count : 0);
      for (AddUser& user : c.users) {
        ok = ok && r.GetString(&user.name, config::kUserNameBytesMax) &&
             GetCredentials(&r, &user.credentials);
      }
      command = std::move(c);
      break;
    }
    default:
      return absl::InvalidArgumentError(
          Concat("configuration command: unknown kind ", std::to_string(kind)));
  }
  if (!ok) return absl::InvalidArgumentError("configuration command: truncated or malformed");
  if (!r.empty()) return absl::InvalidArgumentError("configuration command: trailing bytes");
  return command;
}

absl::Status ConfigStateMachine::Check(const ConfigCommand& command) const {
  CommandExecutor executor(config_, nullptr);
  return std::visit(executor, command);
}

absl::Status ConfigStateMachine::Apply(const raft::Entry& entry,
                                       std::optional<ConfigCommand>* decoded) {
  if (decoded != nullptr) decoded->reset();
  if (entry.index <= applied_index_) return absl::OkStatus();
  CHECK_MSG(entry.index == applied_index_ + 1, "committed entries applied out of order");
  applied_index_ = entry.index;
  switch (entry.type) {
    case raft::EntryType::kNoop:
      return absl::OkStatus();
    case raft::EntryType::kAddMember:
    case raft::EntryType::kRemoveMember:
      return ApplyMembership(entry);
    case raft::EntryType::kNormal:
      break;
    default:
      return absl::InvalidArgumentError(
          Concat("entry type ", std::to_string(static_cast<int>(entry.type)), " is unknown"));
  }
  absl::StatusOr<ConfigCommand> command = DecodeConfigCommand(entry.data);
  if (!command.ok()) return command.status();
  CommandExecutor executor(config_, &config_);
  absl::Status status = std::visit(executor, *command);
  if (executor.changed()) {
    DCHECK(status.ok());
    config_.version = entry.index;
  }
  if (decoded != nullptr) *decoded = *std::move(command);
  return status;
}

absl::Status ConfigStateMachine::ApplyMembership(const raft::Entry& entry) {
  raft::Member member;
  if (!raft::DecodeMember(entry.data, &member)) {
    return absl::InvalidArgumentError("membership entry does not decode");
  }
  if (entry.type == raft::EntryType::kRemoveMember) {
    // A removed member's certificate key stops naming anyone: its links are refused.
    const bool identity = config_.member_identities.erase(member.id) > 0;
    if (config_.members.erase(member.id) > 0 || identity) config_.version = entry.index;
    return absl::OkStatus();
  }
  if (absl::Status status = config::ValidateMemberAddress(member.address); !status.ok()) {
    return status;
  }
  auto it = config_.members.find(member.id);
  if (it != config_.members.end() && it->second == member.address) return absl::OkStatus();
  if (it == config_.members.end() && config_.members.size() >= config::kMembersMax) {
    return absl::ResourceExhaustedError("the cluster already has 1024 members");
  }
  // Raft removes a member before it adds another at the same address; should an entry
  // still name a taken address, the newer id replaces the older, so that no address (and
  // no node of the seed's scenario 3) is ever listed twice.
  std::erase_if(config_.members, [&](const auto& pair) {
    return pair.first != member.id && pair.second == member.address;
  });
  config_.members[member.id] = member.address;
  config_.version = entry.index;
  return absl::OkStatus();
}

std::string ConfigStateMachine::Snapshot() const {
  SnapshotEncoder encoder(*this);
  std::string out;
  while (!encoder.Step(std::numeric_limits<size_t>::max(), &out)) {
  }
  return out;
}

SnapshotEncoder::SnapshotEncoder(const ConfigStateMachine& machine)
    : index_(machine.applied_index()), config_(machine.config()) {}

bool SnapshotEncoder::Step(size_t entries, std::string* out) {
  if (!head_written_) {
    ByteWriter w(std::move(*out));
    w.PutU8(kSnapshotFormatVersion);
    w.PutU64(index_);
    *out = w.Take();
    head_written_ = true;
  }
  return config_.Step(entries, out);
}

absl::Status ConfigStateMachine::Restore(std::string_view data) {
  if (data.empty()) {
    config_ = config::Config();
    applied_index_ = 0;
    return absl::OkStatus();
  }
  ByteReader r(data);
  uint8_t format = 0;
  uint64_t applied_index = 0;
  if (!r.GetU8(&format) || !r.GetU64(&applied_index)) {
    return absl::InvalidArgumentError("configuration snapshot: truncated");
  }
  if (format != kSnapshotFormatVersion) {
    return absl::InvalidArgumentError(
        Concat("configuration snapshot: unknown format version ", std::to_string(format)));
  }
  absl::StatusOr<config::Config> decoded = config::DecodeConfig(data.substr(9));
  if (!decoded.ok()) {
    return absl::InvalidArgumentError(
        Concat("configuration snapshot: ", MessageOf(decoded.status())));
  }
  if (decoded->version > applied_index) {
    return absl::InvalidArgumentError(
        "configuration snapshot: version is beyond the applied index");
  }
  config_ = *std::move(decoded);
  applied_index_ = applied_index;
  return absl::OkStatus();
}

}  // namespace stanzad::cluster
