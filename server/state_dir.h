// The files of the node's state dir that the daemon itself keeps, beside the
// configuration (admin/node_config.h) and the cluster's store (cluster/node): the dir made
// private, the configuration seeded from the flags on a first start, the SCRAM salt key
// and the relay's incarnation.
//
// Thread: the control thread (and main, before it runs).
#ifndef STANZAD_SERVER_STATE_DIR_H_
#define STANZAD_SERVER_STATE_DIR_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "admin/node_config.h"
#include "server/daemon_options.h"

namespace stanzad::server {

// Makes --state_dir (mode 0700: it holds the cluster key, secrets and the admin socket;
// a looser mode is tightened, logged) and loads its configuration; a state dir without
// one gets the configuration --domain and --listen seed, saved. An error says what to fix.
absl::StatusOr<NodeConfig> LoadOrSeedNodeConfig(const DaemonOptions& options);

// The key from which SCRAM derives the salt it shows for a user that does not exist (so
// that a client cannot tell unknown users from known ones): 32 random bytes, hex, made
// once in <state_dir>/sasl_salt_key (mode 0600) and kept across restarts; in a cluster,
// the cluster's (replicated) key replaces it, so every node shows the same salts. A key
// that cannot be stored is used for this run only (logged).
std::string LoadOrCreateSaltKey(const std::string& state_dir);
// Writes <state_dir>/sasl_salt_key atomically (a crash leaves the old key or the new); a
// failure is logged.
void SaveSaltKey(const std::string& state_dir, const std::string& key);

// This start's incarnation of the node: one more than the last, kept in dir/incarnation
// (written durably before it is returned), so (node, incarnation, sequence) names a
// relayed stanza uniquely across restarts, whatever the clock does.
absl::StatusOr<uint64_t> NextIncarnation(const std::string& dir);

}  // namespace stanzad::server

#endif  // STANZAD_SERVER_STATE_DIR_H_
