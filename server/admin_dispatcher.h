// AdminDispatcher: runs the admin commands that arrive on the admin socket
// (admin/admin_socket.h) — the node's own (admin/node_commands.h: domain, listen,
// callbridge, user, enable, status, reset...), `certs`, and `cluster ...` — against the
// node, and answers each exactly once through its Reply. A command that changes the
// configuration is answered after the change is durable and live (NodeState::Commit);
// in a cluster, a change to what the cluster replicates (domain, call bridges, users) is
// proposed to the leader and answered once it has been applied here. Commands that wait
// for the cluster (initialize, token, join, remove) are answered from a later turn of the
// control loop.
//
// Replies, their wording and exit codes are the admin protocol's: stanzactl prints them
// as they are.
//
// Thread: the control thread only.
#ifndef STANZAD_SERVER_ADMIN_DISPATCHER_H_
#define STANZAD_SERVER_ADMIN_DISPATCHER_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "admin/admin_socket.h"
#include "admin/node_commands.h"
#include "cluster/node/cluster_node.h"
#include "server/daemon_options.h"
#include "server/engine_supervisor.h"
#include "server/node_state.h"

namespace stanzad::server {

class AdminDispatcher {
 public:
  // `started`: when the node started (`status` shows the uptime). All outlive this.
  AdminDispatcher(const DaemonOptions& options, NodeState& node, const EngineSupervisor& engine,
                  std::chrono::steady_clock::time_point started);
  AdminDispatcher(const AdminDispatcher&) = delete;
  AdminDispatcher& operator=(const AdminDispatcher&) = delete;

  // Runs one command; `reply` is called once, now or from a later turn.
  void Handle(const admin::AdminRequest& request, admin::AdminServer::Reply reply);

 private:
  void HandleCluster(const admin::AdminRequest& request, admin::AdminServer::Reply reply);
  // `certs` shows this node's TLS files; `certs KEY CERT [BUNDLE]` checks and sets them.
  admin::AdminResponse HandleCerts(const admin::AdminRequest& request);
  // Reopens the cluster node so its links use the TLS files now configured.
  std::string ApplyClusterTls();
  // What `status` shows of the running node.
  NodeRuntimeStatus RuntimeStatus() const;
  // Each member's data links from this node's shards (DataLinkStats::up).
  void CountDataLinks(cluster::ClusterStatus* status) const;
  // What an operator types on the next node, with a token `cluster token` made.
  std::string JoinInstructions(const cluster::JoinToken& token, uint64_t ttl_s) const;

  const DaemonOptions& options_;
  NodeState& node_;
  const EngineSupervisor& engine_;
  const std::chrono::steady_clock::time_point started_;
};

}  // namespace stanzad::server

#endif  // STANZAD_SERVER_ADMIN_DISPATCHER_H_
