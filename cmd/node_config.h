// The configuration of a single stanzad node, as the operator sets it with
// stanzactl, and its durable form in the state dir.
//
// Durable form (state_dir/config, text, one item per line, written atomically):
//   stanzad-config 1
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
// they change, so this file always shows what the node serves. Listen addresses,
// `enabled` and the cluster settings stay local to the node.
#ifndef STANZAD_CMD_NODE_CONFIG_H_
#define STANZAD_CMD_NODE_CONFIG_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/config/config.h"

namespace stanzad {

struct NodeConfig {
  std::string domain;
  std::vector<std::string> listen;  // IP addresses (IPv4 or IPv6), without port
  bool enabled = false;
  std::map<std::string, std::string> callbridges;  // name ("cb1") → shared secret
  // Canonical localpart ("alice") → SCRAM credentials; at most config::kUsersMax.
  std::map<std::string, config::UserCredentials> users;
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

// Reads `<state_dir>/config`; NotFound if the node has never been configured.
absl::StatusOr<NodeConfig> LoadNodeConfig(const std::string& state_dir);
// Replaces `<state_dir>/config` atomically (storage::WriteFileAtomically: a
// crash at any instant leaves the old or the new file).
absl::Status SaveNodeConfig(const std::string& state_dir, const NodeConfig& config);

}  // namespace stanzad

#endif  // STANZAD_CMD_NODE_CONFIG_H_
