// ConfigStateMachine: the replicated configuration, changed only by committed Raft entries.
//
// An operator's command (`domain D`, `callbridge add-secret cb1`, ...) becomes a
// ConfigCommand, is encoded with EncodeConfigCommand and proposed to Raft as a kNormal
// entry's data. Every node applies the committed entries in log order with Apply(); because
// applying is deterministic (no clock, randomness or I/O; only the entry and the current
// state decide the result), every node that applied the same log holds the same Config,
// which is how the seed's failure scenario 2 (a bridge secret that differs between nodes)
// becomes impossible.
//
// Apply() returns the command's result for the operator who proposed it. A command that
// conflicts with the state is refused with a reason the CLI prints as is, and changes
// nothing, e.g. AlreadyExists: "callbridge cb1 already has a different secret on this
// cluster; use --force to replace it". A command that asks for what is already there (the
// same bridge with the same secret) is an OK no-op. Check() gives the same answer without
// applying, so a leader can refuse a doomed proposal at once; Apply() stays the authority,
// since another proposal may commit in between.
//
// Membership entries (kAddMember / kRemoveMember, encoded by raft::EncodeMember) are
// mirrored into Config::members as they commit, so `cluster status` and snapshots carry them.
// kNoop entries change nothing.
//
// Snapshot() / Restore() move the whole state (the Config and the index of the last applied
// entry) in and out of a Raft snapshot's data.
//
// Thread safety: none; owned by the control-plane thread, which publishes copies of config().
#ifndef STANZAD_CLUSTER_CONFIG_STATE_MACHINE_H_
#define STANZAD_CLUSTER_CONFIG_STATE_MACHINE_H_

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cluster/raft/types.h"
#include "core/config/config.h"

namespace stanzad::cluster {

// `domain D`
struct SetDomain {
  std::string domain;
  friend bool operator==(const SetDomain&, const SetDomain&) = default;
};

// `listen IFACE...`: replaces the whole list.
struct SetListen {
  std::vector<std::string> addresses;
  friend bool operator==(const SetListen&, const SetListen&) = default;
};

// `certs KEY CERT [BUNDLE]`: replaces all three paths.
struct SetTlsFiles {
  config::TlsFiles files;
  friend bool operator==(const SetTlsFiles&, const SetTlsFiles&) = default;
};

// `callbridge add NAME` (with a secret the node generated) and `callbridge add-secret NAME`.
// Without `force`, a bridge that exists with another secret is refused.
struct AddCallbridge {
  std::string name;
  std::string secret;
  bool force = false;
  friend bool operator==(const AddCallbridge&, const AddCallbridge&) = default;
};

// `callbridge del NAME`
struct DeleteCallbridge {
  std::string name;
  friend bool operator==(const DeleteCallbridge&, const DeleteCallbridge&) = default;
};

// A new user; refused if the name exists with other credentials.
struct AddUser {
  std::string name;
  config::SharedCredentials credentials;  // shared with the configurations it is applied to
  friend bool operator==(const AddUser&, const AddUser&) = default;
};

struct DeleteUser {
  std::string name;
  friend bool operator==(const DeleteUser&, const DeleteUser&) = default;
};

// A password change for an existing user.
struct SetUserCredentials {
  std::string name;
  config::SharedCredentials credentials;
  friend bool operator==(const SetUserCredentials&, const SetUserCredentials&) = default;
};

// The cluster-wide key for unknown users' SCRAM salts; set once (at `cluster initialize`),
// refused when another is set (every node must keep answering with the same salts).
struct SetSaltKey {
  std::string key;
  friend bool operator==(const SetSaltKey&, const SetSaltKey&) = default;
};

// `cluster token`: a single-use approval to join. `now_unix_s` is the proposer's clock:
// tokens that expired by then are dropped in the same step (deterministic on every node).
struct AddJoinToken {
  uint64_t id = 0;
  std::string secret;
  uint64_t expires_unix_s = 0;
  uint64_t now_unix_s = 0;
  friend bool operator==(const AddJoinToken&, const AddJoinToken&) = default;
};

// A node joined with this token (the leader proposes it before it adds the node): it is
// gone, so a second join with it is refused. NotFound for an unknown or expired token.
// With TLS, the joiner's certificate key is bound to its node id in the same step.
struct UseJoinToken {
  uint64_t id = 0;
  uint64_t now_unix_s = 0;
  uint64_t member = 0;   // the joiner's node id
  std::string identity;  // its certificate's key (tls::PublicKeyDigest), or empty
  friend bool operator==(const UseJoinToken&, const UseJoinToken&) = default;
};

// Binds a member's certificate key (the first node of a TLS cluster, at initialize).
struct SetMemberIdentity {
  uint64_t member = 0;
  std::string identity;
  friend bool operator==(const SetMemberIdentity&, const SetMemberIdentity&) = default;
};

// `callbridge import FILE`, a chunk of the file at a time: the bridges added as one entry,
// all or none. Each follows AddCallbridge's rules (with its own `force`); the first one
// refused refuses the whole batch, with an error that begins "item K: " (K from 1, its
// place in `bridges`). A name twice in one batch is refused the same way.
struct ImportCallbridges {
  std::vector<AddCallbridge> bridges;  // 1..kImportBatchItemsMax
  friend bool operator==(const ImportCallbridges&, const ImportCallbridges&) = default;
};

// `user import FILE`, a chunk at a time, as ImportCallbridges: each user follows AddUser's
// rules, except that with `replace` a user who exists with other credentials gets the new
// ones (SetUserCredentials).
struct ImportUsers {
  std::vector<AddUser> users;  // 1..kImportBatchItemsMax
  bool replace = false;
  friend bool operator==(const ImportUsers&, const ImportUsers&) = default;
};

// Items in one import batch. A batch is one Raft entry, so it is also bounded by
// raft::Options::max_proposal_bytes (4 MiB): stanzactl sends at most ~1 MiB at a time.
inline constexpr size_t kImportBatchItemsMax = 10'000;

using ConfigCommand =
    std::variant<SetDomain, SetListen, SetTlsFiles, AddCallbridge, DeleteCallbridge, AddUser,
                 DeleteUser, SetUserCredentials, SetSaltKey, AddJoinToken, UseJoinToken,
                 SetMemberIdentity, ImportCallbridges, ImportUsers>;

// The data of a kNormal Raft entry (format version 1). Deterministic.
std::string EncodeConfigCommand(const ConfigCommand& command);
// The inverse; InvalidArgument, never a crash, for bytes EncodeConfigCommand could not have
// made. Checks structure and size limits only: the rules of each field are Apply's to judge.
absl::StatusOr<ConfigCommand> DecodeConfigCommand(std::string_view bytes);

class ConfigStateMachine {
 public:
  // An empty configuration; nothing applied.
  ConfigStateMachine() = default;

  const config::Config& config() const { return config_; }
  // The index of the last entry applied (or restored from a snapshot).
  raft::Index applied_index() const { return applied_index_; }

  // What Apply() would return for `command` now, without changing anything.
  absl::Status Check(const ConfigCommand& command) const;

  // Applies one committed entry. The result is the command's answer for its proposer:
  // OK (applied, or nothing to change), or an error naming why the state is unchanged
  // (InvalidArgument: a field breaks a rule or the data does not decode; AlreadyExists:
  // conflicts with what is there; NotFound: nothing to delete or change; ResourceExhausted:
  // a limit is reached). Either way the entry is consumed: applied_index() becomes its index.
  // An entry at or below applied_index() (replayed after a restart) is ignored and OK.
  // REQUIRES: entry.index <= applied_index() + 1 (committed entries come in order, none
  // skipped); CHECKed, since a gap would let this node's state diverge silently.
  // `decoded` (may be null) receives the command of a kNormal entry that decoded, applied or
  // not: what it adds shares its users' credentials with config() (no second decode, no
  // second copy for whoever mirrors the change).
  absl::Status Apply(const raft::Entry& entry, std::optional<ConfigCommand>* decoded = nullptr);

  // The whole state as a Raft snapshot's data. Deterministic.
  std::string Snapshot() const;
  // Replaces the whole state with one from Snapshot(). Empty data is the initial state (a
  // snapshot taken before anything was applied). InvalidArgument, leaving the state as it
  // was, for data Snapshot() could not have made.
  absl::Status Restore(std::string_view data);

 private:
  absl::Status ApplyMembership(const raft::Entry& entry);

  config::Config config_;
  raft::Index applied_index_ = 0;
};

// Snapshot()'s bytes made in steps (config::ConfigEncoder), for a caller that must not hold
// its thread for the whole state at once. REQUIRES: nothing is applied to or restored into
// the machine from the encoder's construction until its last step.
class SnapshotEncoder {
 public:
  explicit SnapshotEncoder(const ConfigStateMachine& machine);

  // The applied index the snapshot is of.
  raft::Index index() const { return index_; }
  // Appends the next part to *out (up to `entries` bridges and users); true once all is out.
  bool Step(size_t entries, std::string* out);

 private:
  raft::Index index_;
  bool head_written_ = false;
  config::ConfigEncoder config_;
};

}  // namespace stanzad::cluster

#endif  // STANZAD_CLUSTER_CONFIG_STATE_MACHINE_H_
