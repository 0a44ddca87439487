#include "admin/node_config.h"

#include <arpa/inet.h>
#include <sys/random.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "cluster/storage/atomic_file.h"
#include "cluster/storage/record_file.h"
#include "core/base/concat.h"
#include "core/sasl/credentials.h"

namespace stanzad {
namespace {

constexpr char kConfigHeader[] = "stanzad-config 1\n";
constexpr char kJournalName[] = "config.journal";
// An incremental rewrite's files: the new config as it is written, and the journal that
// follows it (the edits made while it was written) until both are renamed into place.
constexpr char kRewriteName[] = "config.rewrite";
constexpr char kNextJournalName[] = "config.journal.next";
constexpr std::string_view kJournalMagic = "STZCJNL1";
constexpr uint8_t kJournalHeaderRecord = 1;
// A record holds one name and one secret or credentials text: far below this.
constexpr size_t kJournalRecordBytesMax = 64 << 10;

std::string EpochText(uint64_t epoch) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text(16, '0');
  for (int i = 15; i >= 0; --i, epoch >>= 4) text[static_cast<size_t>(i)] = kHex[epoch & 15];
  return text;
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

namespace {

// The config file's parts, in order: the head (with `epoch` when not empty), a line per
// call bridge, a line per user, the tail.
void AppendHead(const NodeConfig& config, std::string_view epoch, std::string* out) {
  out->append(kConfigHeader);
  if (!epoch.empty()) out->append(Concat("journal_epoch ", epoch, "\n"));
  if (!config.domain.empty()) out->append(Concat("domain ", config.domain, "\n"));
  for (const std::string& address : config.listen) out->append(Concat("listen ", address, "\n"));
  out->append(config.enabled ? "enabled 1\n" : "enabled 0\n");
}

void AppendBridge(const std::string& name, const std::string& secret, std::string* out) {
  out->append(Concat("callbridge ", name, " ", secret, "\n"));
}

void AppendUser(const std::string& name, const config::UserCredentials& credentials,
                std::string* out) {
  out->append(Concat("user ", name, " ", sasl::EncodeUserCredentials(credentials), "\n"));
}

void AppendTail(const NodeConfig& config, std::string* out) {
  std::string& tail = *out;
  if (config.cluster_enabled) tail.append("cluster_enabled 1\n");
  if (!config.cluster_trust.empty()) {
    tail.append(Concat("cluster_trust ", config.cluster_trust, "\n"));
  }
  if (!config.tls_key.empty()) tail.append(Concat("tls_key ", config.tls_key, "\n"));
  if (!config.tls_certificate.empty()) {
    tail.append(Concat("tls_certificate ", config.tls_certificate, "\n"));
  }
  if (!config.tls_bundle.empty()) tail.append(Concat("tls_bundle ", config.tls_bundle, "\n"));
}

}  // namespace

std::string SerializeNodeConfig(const NodeConfig& config) {
  std::string out;
  AppendHead(config, "", &out);
  for (const auto& [name, secret] : config.callbridges) AppendBridge(name, secret, &out);
  for (const auto& [name, credentials] : config.users) AppendUser(name, credentials, &out);
  AppendTail(config, &out);
  return out;
}

namespace {

// ParseNodeConfig, also returning the `journal_epoch` line's value (empty without one).
absl::StatusOr<NodeConfig> ParseNodeConfigText(std::string_view text, std::string* epoch) {
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
      // Twice the limit: a file an incremental rewrite wrote holds names from several
      // moments (a user deleted after it was written, one added before it was reached), which
      // its journal then settles within the limit.
      if (config.users.size() >= 2 * config::kUsersMax) {
        return bad(Concat("more than ", std::to_string(2 * config::kUsersMax), " users"), shown);
      }
      if (!config.users.emplace(name, *std::move(credentials)).second) {
        return bad("user listed twice", shown);
      }
    } else if (key == "journal_epoch") {
      if (value.size() != 16 || value.find_first_not_of("0123456789abcdef") != value.npos) {
        return bad("journal_epoch must be 16 hex digits");
      }
      *epoch = std::string(value);
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

std::string EncodeEdit(const NodeConfigEdit& edit) {
  switch (edit.kind) {
    case NodeConfigEdit::Kind::kSetCallbridge:
      return Concat(edit.name, " ", edit.secret);
    case NodeConfigEdit::Kind::kSetUser:
      return Concat(edit.name, " ", sasl::EncodeUserCredentials(edit.credentials));
    case NodeConfigEdit::Kind::kDeleteCallbridge:
    case NodeConfigEdit::Kind::kDeleteUser:
      return edit.name;
  }
  return edit.name;
}

// Replays the journal's records over `config`, checking each as the config's own lines are.
absl::Status ReplayJournal(std::string_view bytes, const std::string& epoch, NodeConfig* config,
                           bool* matched = nullptr) {
  if (matched != nullptr) *matched = false;
  if (!bytes.starts_with(kJournalMagic)) {
    // A journal cut before its magic was complete was never written to: nothing to replay.
    if (bytes.size() < kJournalMagic.size()) return absl::OkStatus();
    return absl::DataLossError("config.journal: not a stanzad config journal");
  }
  storage::ScanResult scan =
      storage::ScanRecords(bytes.substr(kJournalMagic.size()), kJournalRecordBytesMax);
  if (scan.end == storage::ScanResult::End::kCorrupt) {
    return absl::DataLossError(Concat("config.journal: damaged record at offset ",
                                      std::to_string(kJournalMagic.size() + scan.valid_bytes)));
  }
  if (scan.records.empty() || scan.records.front().type != kJournalHeaderRecord ||
      scan.records.front().payload != epoch) {
    return absl::OkStatus();  // another config's journal: that config is gone, its changes kept
  }
  if (matched != nullptr) *matched = true;
  for (size_t i = 1; i < scan.records.size(); ++i) {
    const storage::RecordView& record = scan.records[i];
    const auto bad = [&](std::string_view why) {
      return absl::DataLossError(Concat("config.journal: record ", std::to_string(i), ": ", why));
    };
    const auto kind = static_cast<NodeConfigEdit::Kind>(record.type);
    NodeConfigEdit edit{kind, std::string(record.payload), "", {}};
    const size_t space = record.payload.find(' ');
    if (kind == NodeConfigEdit::Kind::kSetCallbridge || kind == NodeConfigEdit::Kind::kSetUser) {
      if (space == std::string_view::npos) return bad("no value");
      edit.name = std::string(record.payload.substr(0, space));
    }
    const std::string_view value = record.payload.substr(space + 1);
    switch (kind) {
      case NodeConfigEdit::Kind::kSetCallbridge:
        if (!ValidateSecret(value).ok()) return bad("invalid call bridge secret");
        edit.secret = std::string(value);
        [[fallthrough]];
      case NodeConfigEdit::Kind::kDeleteCallbridge:
        if (!ValidateCallbridgeName(edit.name).ok()) return bad("invalid call bridge name");
        break;
      case NodeConfigEdit::Kind::kSetUser: {
        absl::StatusOr<config::UserCredentials> credentials = sasl::ParseUserCredentials(value);
        if (!credentials.ok()) return bad(std::string(credentials.status().message()));
        edit.credentials = *std::move(credentials);
        if (!config->users.contains(edit.name) && config->users.size() >= config::kUsersMax) {
          return bad(Concat("more than ", std::to_string(config::kUsersMax), " users"));
        }
        [[fallthrough]];
      }
      case NodeConfigEdit::Kind::kDeleteUser:
        if (!config::ValidateUserName(edit.name).ok()) return bad("invalid user name");
        break;
      default:
        return bad("unknown record type");
    }
    ApplyNodeConfigEdit(edit, config);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<NodeConfig> ParseNodeConfig(std::string_view text) {
  std::string epoch;
  return ParseNodeConfigText(text, &epoch);
}

void ApplyNodeConfigEdit(const NodeConfigEdit& edit, NodeConfig* config) {
  switch (edit.kind) {
    case NodeConfigEdit::Kind::kSetCallbridge:
      config->callbridges[edit.name] = edit.secret;
      return;
    case NodeConfigEdit::Kind::kDeleteCallbridge:
      config->callbridges.erase(edit.name);
      return;
    case NodeConfigEdit::Kind::kSetUser:
      config->users.insert_or_assign(edit.name, edit.credentials);
      return;
    case NodeConfigEdit::Kind::kDeleteUser:
      config->users.erase(edit.name);
      return;
  }
}

absl::StatusOr<NodeConfig> LoadNodeConfig(const std::string& state_dir, storage::Fs* fs) {
  const std::string path = storage::JoinPath(state_dir, "config");
  absl::StatusOr<std::string> content = fs->ReadFile(path);
  if (!content.ok()) {
    if (absl::IsNotFound(content.status())) {
      return absl::NotFoundError(Concat("no configuration at ", path));
    }
    return content.status();
  }
  std::string epoch;
  absl::StatusOr<NodeConfig> config = ParseNodeConfigText(*content, &epoch);
  if (!config.ok()) {
    return absl::DataLossError(Concat(path, ": ", std::string(config.status().message())));
  }
  if (epoch.empty()) return config;  // written before journals, or by hand
  // The journal of this config's epoch: config.journal, or config.journal.next when an
  // incremental rewrite stopped between its two renames (NodeConfigFiles).
  for (const char* name : {kJournalName, kNextJournalName}) {
    absl::StatusOr<std::string> journal = fs->ReadFile(storage::JoinPath(state_dir, name));
    if (!journal.ok()) {
      if (absl::IsNotFound(journal.status())) continue;
      return journal.status();
    }
    bool matched = false;
    if (absl::Status replayed = ReplayJournal(*journal, epoch, &*config, &matched);
        !replayed.ok()) {
      return absl::DataLossError(Concat(state_dir, "/", std::string(replayed.message())));
    }
    if (matched) break;
  }
  return config;
}

absl::Status SaveNodeConfig(const std::string& state_dir, const NodeConfig& config) {
  return NodeConfigFiles(state_dir).Rewrite(config);
}

NodeConfigFiles::NodeConfigFiles(std::string state_dir, storage::Fs* fs)
    : state_dir_(std::move(state_dir)), fs_(fs) {}

namespace {

std::string NewEpoch() {
  uint64_t random = 0;
  while (random == 0) {
    if (getrandom(&random, sizeof(random), 0) != sizeof(random)) random = 0;
  }
  return EpochText(random);
}

}  // namespace

struct NodeConfigFiles::Rewriting {
  std::string epoch;
  std::unique_ptr<storage::WritableFile> file;  // config.rewrite
  bool bridges_done = false;
  std::optional<std::string> last;  // the last name written (bridges, then users)
  std::string late_records;         // the journal records Appended since it began
  uint64_t bytes = 0;
};

NodeConfigFiles::~NodeConfigFiles() = default;

absl::Status NodeConfigFiles::Rewrite(const NodeConfig& config) {
  journal_.reset();
  rewriting_.reset();  // this one replaces what an incremental rewrite was writing
  const std::string epoch = NewEpoch();
  std::string text;
  AppendHead(config, epoch, &text);
  for (const auto& [name, secret] : config.callbridges) AppendBridge(name, secret, &text);
  for (const auto& [name, credentials] : config.users) AppendUser(name, credentials, &text);
  AppendTail(config, &text);
  // 1. The new config, durable: from here on the old journal (another epoch) is ignored.
  if (absl::Status written = storage::WriteFileAtomically(*fs_, state_dir_, "config", text);
      !written.ok()) {
    return written;
  }
  // 2. An empty journal of the new epoch, also replaced atomically.
  std::string journal(kJournalMagic);
  storage::AppendRecord(kJournalHeaderRecord, epoch, &journal);
  if (absl::Status written = storage::WriteFileAtomically(*fs_, state_dir_, kJournalName, journal);
      !written.ok()) {
    return written;
  }
  absl::StatusOr<std::unique_ptr<storage::WritableFile>> file =
      fs_->OpenForAppend(storage::JoinPath(state_dir_, kJournalName), false);
  if (!file.ok()) return file.status();
  journal_ = *std::move(file);
  config_bytes_ = text.size();
  journal_bytes_ = journal.size();
  return absl::OkStatus();
}

absl::Status NodeConfigFiles::Append(const std::vector<NodeConfigEdit>& edits) {
  if (journal_ == nullptr) {
    return absl::FailedPreconditionError("the config journal is not open (a write failed)");
  }
  std::string records;
  for (const NodeConfigEdit& edit : edits) {
    storage::AppendRecord(static_cast<uint8_t>(edit.kind), EncodeEdit(edit), &records);
  }
  if (absl::Status appended = journal_->Append(records); !appended.ok()) {
    journal_.reset();  // what reached the file is unknown: the next Rewrite starts again
    return appended;
  }
  journal_bytes_ += records.size();
  if (rewriting_ != nullptr) {
    // The new journal carries them too: the new config may have passed their names.
    if (rewriting_->late_records.size() + records.size() > kLateRecordsBytesMax) {
      rewriting_.reset();  // too much changed meanwhile: a later rewrite starts again
    } else {
      rewriting_->late_records.append(records);
    }
  }
  return absl::OkStatus();
}

absl::Status NodeConfigFiles::BeginRewrite(const NodeConfig& config) {
  if (rewriting_ != nullptr) return absl::OkStatus();
  if (journal_ == nullptr) {
    return absl::FailedPreconditionError("the config journal is not open (a write failed)");
  }
  auto rewriting = std::make_unique<Rewriting>();
  rewriting->epoch = NewEpoch();
  absl::StatusOr<std::unique_ptr<storage::WritableFile>> file =
      fs_->OpenForAppend(storage::JoinPath(state_dir_, kRewriteName), true);
  if (!file.ok()) return file.status();
  rewriting->file = *std::move(file);
  std::string head;
  AppendHead(config, rewriting->epoch, &head);
  if (absl::Status written = rewriting->file->Append(head); !written.ok()) return written;
  rewriting->bytes = head.size();
  rewriting_ = std::move(rewriting);
  return absl::OkStatus();
}

absl::Status NodeConfigFiles::RestartRewrite(const NodeConfig& config) {
  rewriting_.reset();
  return BeginRewrite(config);
}

absl::StatusOr<bool> NodeConfigFiles::ContinueRewrite(const NodeConfig& config,
                                                      size_t entries_max) {
  if (rewriting_ == nullptr) return false;
  Rewriting& r = *rewriting_;
  std::string text;
  size_t entries = 0;
  const auto slice = [&](const auto& map, auto append) {
    auto it = r.last ? map.upper_bound(*r.last) : map.begin();
    for (; it != map.end() && entries < entries_max; ++it, ++entries) {
      append(it->first, it->second, &text);
      r.last = it->first;
    }
    return it == map.end();
  };
  if (!r.bridges_done) {
    r.bridges_done = slice(config.callbridges, AppendBridge);
    if (r.bridges_done) r.last.reset();
  }
  const bool users_done = r.bridges_done && slice(config.users, AppendUser);
  if (users_done) AppendTail(config, &text);
  absl::Status status = r.file->Append(text);
  r.bytes += text.size();
  // Written out as it goes, so that the fsync at the end (on the control thread) does not
  // wait for the whole file: hundreds of MB at a million users.
  if (status.ok()) r.file->StartWriteback();
  if (status.ok() && users_done) status = FinishRewrite();
  if (!status.ok()) {
    rewriting_.reset();  // the current config and journal stay as they were
    return status;
  }
  return users_done;
}

// The new config is whole: durable, then the journal of its epoch (the edits made while it
// was written), then the two renames. A crash before the first rename leaves the old config
// and journal; after it, LoadNodeConfig finds the new epoch's journal under either name.
absl::Status NodeConfigFiles::FinishRewrite() {
  Rewriting& r = *rewriting_;
  if (absl::Status synced = r.file->Sync(); !synced.ok()) return synced;
  r.file.reset();
  std::string journal(kJournalMagic);
  storage::AppendRecord(kJournalHeaderRecord, r.epoch, &journal);
  journal.append(r.late_records);
  if (absl::Status written =
          storage::WriteFileAtomically(*fs_, state_dir_, kNextJournalName, journal);
      !written.ok()) {
    return written;
  }
  const auto path = [&](const char* name) { return storage::JoinPath(state_dir_, name); };
  if (absl::Status renamed = fs_->Rename(path(kRewriteName), path("config")); !renamed.ok()) {
    return renamed;
  }
  // From here the new config is the one read: the old journal is done with.
  journal_.reset();
  absl::Status status = fs_->SyncDir(state_dir_);
  if (status.ok()) status = fs_->Rename(path(kNextJournalName), path(kJournalName));
  if (status.ok()) status = fs_->SyncDir(state_dir_);
  absl::StatusOr<std::unique_ptr<storage::WritableFile>> file =
      status.ok() ? fs_->OpenForAppend(path(kJournalName), false)
                  : absl::StatusOr<std::unique_ptr<storage::WritableFile>>(status);
  if (!file.ok()) return file.status();  // the journal stays closed: a whole Rewrite follows
  journal_ = *std::move(file);
  config_bytes_ = r.bytes;
  journal_bytes_ = journal.size();
  rewriting_.reset();
  return absl::OkStatus();
}

absl::Status NodeConfigFiles::Sync() {
  if (journal_ == nullptr) {
    return absl::FailedPreconditionError("the config journal is not open (a write failed)");
  }
  absl::Status synced = journal_->Sync();
  if (!synced.ok()) journal_.reset();
  return synced;
}

bool NodeConfigFiles::RewriteDue(uint64_t percent) const {
  return rewriting_ == nullptr &&
         journal_bytes_ > std::max<uint64_t>(kJournalBytesMin, config_bytes_ / 100 * percent);
}

}  // namespace stanzad
