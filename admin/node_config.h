// The configuration of a single stanzad node, as the operator sets it with
// stanzactl, and its durable form in the state dir.
//
// Durable form: state_dir/config, the whole configuration (text, one item per line, written
// atomically), and state_dir/config.journal, the call bridge and user changes made since
// (docs/configuration-storage.md):
//   stanzad-config 1
//   journal_epoch 8f1c2a9b03d4e5f6
//   domain example.com
//   listen 127.0.0.1
//   enabled 1
//   callbridge cb1 kvgP1SRzWVabhiPVAb1
//   user alice SCRAM-SHA-1$4096:QSXCR+Q6sek8bf92$6dlG…:D+CS… SCRAM-SHA-256$4096:W22Z…$WG5d…:wfPL…
//   cluster_enabled 1
//   cluster_trust /etc/stanzad/cluster-bundle.pem
//   tls_key /etc/stanzad/xmpp.key
//   tls_certificate /etc/stanzad/xmpp.crt
//   tls_bundle /etc/stanzad/bundle.pem
// A `user` line is the canonical localpart, one space, then the credentials in the
// text form of sasl::EncodeUserCredentials (which itself holds a space between its
// two mechanisms; the example cuts the base64 short). Only SCRAM salts, iteration
// counts and keys are stored, never a password; the file is mode 0600.
// Loading refuses anything it does not understand, naming the line: a config
// is never half-read.
//
// In a cluster, the domain, the call bridges and the users are the replicated
// configuration's (cluster/config_state_machine.h): the daemon mirrors them here as
// they change, so this file and its journal always show what the node serves. Listen addresses,
// `enabled` and the cluster settings stay local to the node.
//
// The journal: an 8-byte magic, then records framed as cluster/storage/record_file.h says.
// Its first record names the epoch of the config file it follows (the config's
// `journal_epoch` line); a journal of another epoch is ignored, since the config written
// after it already holds its changes. Each further record sets or deletes one call bridge or
// user (NodeConfigEdit), so replaying them over the config gives the latest state at a cost
// that does not depend on the size of the configuration. A torn last record (a crash cut it
// short, so it was never acknowledged) is ignored; damage before the last record is DataLoss.
#ifndef STANZAD_ADMIN_NODE_CONFIG_H_
#define STANZAD_ADMIN_NODE_CONFIG_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cluster/storage/fs.h"
#include "core/config/config.h"

namespace stanzad {

struct NodeConfig {
  std::string domain;
  std::vector<std::string> listen;  // IP addresses (IPv4 or IPv6), without port
  bool enabled = false;
  std::map<std::string, std::string> callbridges;  // name ("cb1") → shared secret
  // Canonical localpart ("alice") → SCRAM credentials; at most config::kUsersMax.
  std::map<std::string, config::SharedCredentials> users;
  bool cluster_enabled = false;  // `cluster enable`: the cluster port is open
  std::string cluster_trust;     // `cluster trust BUNDLE`: its path
  // `certs KEY CERT [BUNDLE]`: this node's TLS files (absolute paths), checked
  // when set.
  std::string tls_key;
  std::string tls_certificate;
  std::string tls_bundle;

  friend bool operator==(const NodeConfig&, const NodeConfig&) = default;

  // The node serves XMPP only with a domain, a listen address and `enabled`.
  bool ReadyToServe() const { return enabled && !domain.empty() && !listen.empty(); }
};

std::string SerializeNodeConfig(const NodeConfig& config);
absl::StatusOr<NodeConfig> ParseNodeConfig(std::string_view text);

// Validation with operator-facing messages that say what is wrong and what is allowed.
absl::Status ValidateDomain(std::string_view domain);
absl::Status ValidateCallbridgeName(std::string_view name);
absl::Status ValidateSecret(std::string_view secret);
absl::Status ValidateListenAddress(std::string_view address);

// 20 characters from [A-Za-z0-9] drawn from the kernel's CSPRNG, with at least
// one upper-case letter, one lower-case letter and one digit.
std::string GenerateCallbridgeSecret();

// One call bridge or user set or deleted: a journal record.
struct NodeConfigEdit {
  enum class Kind : uint8_t { kSetCallbridge = 2, kDeleteCallbridge, kSetUser, kDeleteUser };
  Kind kind = Kind::kSetCallbridge;
  std::string name;
  std::string secret;                     // kSetCallbridge
  config::SharedCredentials credentials;  // kSetUser
};

// Makes `edit` in `config`. Absolute, never conditional, so a replay ends in the same state.
void ApplyNodeConfigEdit(const NodeConfigEdit& edit, NodeConfig* config);

// Reads `<state_dir>/config` and replays the journal that follows it; NotFound if the node has
// never been configured.
absl::StatusOr<NodeConfig> LoadNodeConfig(const std::string& state_dir,
                                          storage::Fs* fs = storage::PosixFs());
// Replaces `<state_dir>/config` atomically (storage::WriteFileAtomically: a crash at any
// instant leaves the old or the new file) and starts an empty journal after it.
absl::Status SaveNodeConfig(const std::string& state_dir, const NodeConfig& config);

// The writer of a state dir's config and journal. A crash at any instant loses no change
// that Rewrite or Sync acknowledged: until the new config's rename is durable the old config
// and its journal are read; after it, the new config, whose epoch the old journal lacks.
// Thread safety: none (the daemon's control thread).
class NodeConfigFiles {
 public:
  explicit NodeConfigFiles(std::string state_dir, storage::Fs* fs = storage::PosixFs());
  NodeConfigFiles(const NodeConfigFiles&) = delete;
  NodeConfigFiles& operator=(const NodeConfigFiles&) = delete;

  ~NodeConfigFiles();

  // Writes the whole `config` with a new epoch atomically, then an empty journal of that
  // epoch. Durable on return. O(size of the configuration). Ends an incremental rewrite.
  absl::Status Rewrite(const NodeConfig& config);

  // The same outcome as Rewrite, a slice at a time, so that the control thread is never
  // held for the whole configuration: BeginRewrite, then ContinueRewrite with the live
  // configuration (the one the edits Appended meanwhile were made to) until it returns true.
  // Edits Appended meanwhile go to the current journal, durable as ever, and are carried
  // into the new config's journal, since the new file may have passed their names. A crash
  // at any instant loses nothing: until the new config's rename is durable the old config
  // and journal are read; after it, the new one and its journal (config.journal, or
  // config.journal.next if the crash came between the two renames). On an error the
  // current files stay in use and a later BeginRewrite starts again.
  absl::Status BeginRewrite(const NodeConfig& config);
  // BeginRewrite after dropping a rewrite under way: for a configuration replaced whole
  // (the slices already written hold what it no longer has).
  absl::Status RestartRewrite(const NodeConfig& config);
  // Writes at most `entries_max` more call bridges and users; true when the rewrite ended.
  absl::StatusOr<bool> ContinueRewrite(const NodeConfig& config, size_t entries_max);
  bool rewriting() const { return rewriting_ != nullptr; }
  // Queues records (written to the file at once, in one write; durable after Sync).
  // REQUIRES: the last Rewrite succeeded (else FailedPrecondition). O(edits).
  absl::Status Append(const std::vector<NodeConfigEdit>& edits);
  absl::Status Append(const NodeConfigEdit& edit) { return Append(std::vector{edit}); }
  // Makes every Append before it durable (fdatasync).
  absl::Status Sync();
  // The journal has grown past `percent` of the config's size (and kJournalBytesMin): a
  // Rewrite now keeps both the replay at start and the disk used in proportion to the
  // configuration, at an amortised cost per change that does not grow with it.
  bool RewriteDue(uint64_t percent = 50) const;

  static constexpr uint64_t kJournalBytesMin = 4 << 20;
  // Journal records an incremental rewrite carries into the new journal; beyond this it
  // gives up and a later one starts again.
  static constexpr uint64_t kLateRecordsBytesMax = 64 << 20;

 private:
  struct Rewriting;
  absl::Status FinishRewrite();
  std::string state_dir_;
  storage::Fs* fs_;
  std::unique_ptr<storage::WritableFile> journal_;  // null until a Rewrite succeeded
  uint64_t config_bytes_ = 0;
  uint64_t journal_bytes_ = 0;
  std::unique_ptr<Rewriting> rewriting_;  // an incremental rewrite in progress, or null
};

}  // namespace stanzad

#endif  // STANZAD_ADMIN_NODE_CONFIG_H_
