// The operator commands of a single node (the seed's `xmpp ...` commands),
// executed against its NodeConfig. Pure: the daemon supplies the runtime
// figures, persists the config when it changed and applies it. A command that
// changes the configuration says what it changed as a value (NodeChange), so the
// daemon never has to find it by comparing configurations: in a cluster it proposes
// the replicated ones as they are.
//
// Users: the daemon never sees a password. stanzactl derives the credentials and sends
//   {"user", "add" | "passwd", NAME, CREDENTIALS}   {"user", "del", NAME}   {"user", "list"}
// where NAME is what the operator typed ("alice" or "alice@DOMAIN", DOMAIN the node's,
// any case) and CREDENTIALS the sasl::EncodeUserCredentials text as one word (words after
// NAME are joined with one space, so it may also come split at its space). The user is
// stored under the canonical localpart (NodeConfig::users).
//
// Bulk commands, which stanzactl sends for `callbridge import | export | list` and
// `user import | export | list` (the operator never types these forms):
//   {"callbridge" | "user", "import-batch", ["--force"], LINES}
//       LINES: "NAME SECRET\n" (bridges) or "NAME CREDENTIALS\n" (users; CREDENTIALS the
//       sasl::EncodeUserCredentials text), at most cluster::kImportBatchItemsMax of them.
//       One change (cluster::ImportCallbridges / ImportUsers): all lines or none. A line
//       refused makes the answer "error: item K: WHY" (K from 1). --force replaces the
//       secret or credentials of names that exist. Answer: "imported ADDED REPLACED SAME\n".
//   {"callbridge" | "user", "list" | "export", "--after=NAME", "--limit=N"}
//       A page of at most N (1..kPageItemsMax) names after NAME (empty: from the first), in
//       name order. The answer's first line is "page TOTAL" when the page is the last, else
//       "page TOTAL LAST" (LAST: the page's last name, the next page's --after); then the
//       page: `list` as without --limit but for --json, which gives the page's JSON objects
//       separated by commas (no brackets); `export` "NAME SECRET\n" or
//       "NAME CREDENTIALS\n" lines. Each page is O(N + log TOTAL) for the daemon.
#ifndef STANZAD_ADMIN_NODE_COMMANDS_H_
#define STANZAD_ADMIN_NODE_COMMANDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "admin/admin_socket.h"
#include "admin/node_config.h"
#include "cluster/config_state_machine.h"

namespace stanzad {

// What the running daemon reports for `status`.
struct NodeRuntimeStatus {
  std::string version;
  uint64_t uptime_s = 0;
  bool serving = false;
  std::string not_serving_reason;      // when !serving
  std::vector<std::string> listeners;  // "127.0.0.1:5223 (call bridges)"
  // Why the TLS listeners (clients; bridges with --component_tls) refuse everyone
  // ("this node has no certificate"); empty when it has a usable one.
  std::string tls_refused_reason;
  uint64_t connections_open = 0;
  uint64_t bridges_connected = 0;
  uint64_t clients_connected = 0;  // bound client resources, all shards
  uint64_t stanzas_routed = 0;
  uint64_t stanzas_answered = 0;
  uint64_t stanzas_bounced = 0;
  uint64_t auth_failures = 0;
  uint64_t stream_errors = 0;
  std::vector<std::string> recent_problems;             // log lines, oldest first
  std::string cluster = "not clustered (single node)";  // one line for `status`
};

// `enable` and `disable`.
struct SetEnabled {
  bool enabled = false;
  friend bool operator==(const SetEnabled&, const SetEnabled&) = default;
};
// `reset`: the configuration a new node has.
struct ResetConfig {
  friend bool operator==(const ResetConfig&, const ResetConfig&) = default;
};

// What one command changed. The kinds a cluster replicates are the cluster's own commands
// (cluster/config_state_machine.h): `domain` (SetDomain), `callbridge add` and `add-secret`
// (AddCallbridge, `force` as typed), `callbridge del`, `user add | passwd | del`. The rest
// are this node's alone: `listen` (SetListen), `enable`/`disable`, `reset`.
using NodeChange = std::variant<cluster::SetDomain, cluster::SetListen, SetEnabled,
                                cluster::AddCallbridge, cluster::DeleteCallbridge, cluster::AddUser,
                                cluster::SetUserCredentials, cluster::DeleteUser, ResetConfig,
                                cluster::ImportCallbridges, cluster::ImportUsers>;

// Names in one page of a bulk `list` or `export`.
inline constexpr size_t kPageItemsMax = 10'000;

// `change` made to `config`, as the command that returned it made it.
void ApplyNodeChange(const NodeChange& change, NodeConfig* config);

// The journal records (admin/node_config.h) of a change to call bridges or users, appended to
// `edits`; false (nothing appended) for the other kinds, which rewrite the whole config.
bool JournalEdits(const NodeChange& change, std::vector<NodeConfigEdit>* edits);
bool JournalEdits(const cluster::ConfigCommand& command, std::vector<NodeConfigEdit>* edits);

// The change a cluster replicates, if `change` is of a kind it replicates.
std::optional<cluster::ConfigCommand> ReplicatedCommand(const NodeChange& change);

struct CommandResult {
  admin::AdminResponse response;
  bool config_changed = false;  // change.has_value()
  // Set only when the command changed the configuration (never on an error).
  std::optional<NodeChange> change;
};

// Runs one command. On error the config is left as it was; otherwise `change` has been
// applied to it (ApplyNodeChange).
CommandResult ExecuteNodeCommand(const admin::AdminRequest& request, NodeConfig* config,
                                 const NodeRuntimeStatus& status);
// Decides one command against `config` without changing it: the caller applies `change`
// (the daemon does so in place, at a cost that does not grow with the configuration).
CommandResult DecideNodeCommand(const admin::AdminRequest& request, const NodeConfig& config,
                                const NodeRuntimeStatus& status);

// A JSON string literal for `text` (quotes included).
std::string JsonString(std::string_view text);

}  // namespace stanzad

#endif  // STANZAD_ADMIN_NODE_COMMANDS_H_
