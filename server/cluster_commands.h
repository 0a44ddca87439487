// The text the `stanzactl cluster ...` commands print, and the parsing of their
// arguments. The admin dispatcher (server/admin_dispatcher.h) runs the commands, since most of
// them wait for the cluster. Thread: the control thread; nothing here blocks.
#ifndef STANZAD_SERVER_CLUSTER_COMMANDS_H_
#define STANZAD_SERVER_CLUSTER_COMMANDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "admin/node_config.h"
#include "cluster/node/cluster_node.h"

namespace stanzad {

// `cluster status` in the seed's layout:
//   State: FOLLOWER
//   List of peers
//   127.0.0.1:5279 (Leader)
//   127.0.0.2:5279
//   Last state change: 2026-Nov-29 07:37:12
//   Key file           : ...
//   Certificate file   : ...
//   Trust bundle       : ...
// then the node id, term and each peer's id and link state.
std::string ClusterStatusText(const cluster::ClusterStatus& status, const NodeConfig& config,
                              bool listening);
std::string ClusterStatusJson(const cluster::ClusterStatus& status, const NodeConfig& config,
                              bool listening);

// `cluster remove NODE`: a node id (decimal, as `cluster status` prints it) or an address
// (an IP literal: stanzactl resolves names, admin/cluster_address.h).
cluster::RemoveTarget ParseRemoveTarget(std::string_view text, uint16_t default_port);

}  // namespace stanzad

#endif  // STANZAD_SERVER_CLUSTER_COMMANDS_H_
