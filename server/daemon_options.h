// stanzad's command-line flags, read in one place: every flag is defined and read in
// daemon_options.cc, checked (a value that makes no sense, such as a negative time, is an
// error naming the flag), raised to its floor where the flag's text names one, and handed
// to the daemon as one value, already in the shape of the parts it configures. The daemon
// reads no flag itself.
#ifndef STANZAD_SERVER_DAEMON_OPTIONS_H_
#define STANZAD_SERVER_DAEMON_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cluster/data/data_links.h"
#include "cluster/node/peer_transport.h"
#include "cluster/relay/directory.h"
#include "cluster/relay/relay.h"
#include "core/base/log.h"
#include "router/router_shard.h"
#include "server/flags_usage.h"

namespace stanzad {

// Filled by ReadDaemonOptions; the defaults are the flags' (the initializers here only
// keep every field defined).
struct DaemonOptions {
  std::string state_dir;
  // For a new state dir only (as 'stanzactl domain' and 'listen'); checked when used.
  std::string seed_domain;
  std::string seed_listen;  // comma-separated IP addresses
  LogLevel log_level = LogLevel::kInfo;
  int shards = 1;            // --threads, or one per CPU core
  std::string metrics_addr;  // empty: no metrics server

  // Listeners, on every listen address of the configuration.
  uint16_t component_port = 5223;
  bool component_tls = false;
  uint16_t c2s_port = 5222;
  uint16_t c2s_tls_port = 0;  // 0: none
  size_t connections_max_per_shard = 1;
  size_t connection_queue_bytes_max = 1 << 20;
  bool direct_descriptors = true;  // net::EngineOptions::direct_descriptors
  router::RouterLimits router;

  // The cluster.
  uint16_t cluster_port = 5279;
  uint16_t cluster_data_port = 5280;  // the data links' (cluster/data/data_links.h)
  std::string cluster_address;        // an IP; empty: the first listen address
  cluster::TransportLimits cluster_links;
  cluster::DataLinkLimits data_links;
  cluster::relay::Options relay;
  cluster::relay::DirectoryOptions directory;  // the route directory's (digests)
};

// The flags as options, after absl::ParseCommandLine; an error names the flag and what
// it takes.
absl::StatusOr<DaemonOptions> ReadDaemonOptions();

// Every flag of stanzad under the heading an operator looks for (stanzad --help).
std::vector<FlagGroup> DaemonFlagGroups();

}  // namespace stanzad

#endif  // STANZAD_SERVER_DAEMON_OPTIONS_H_
