#include "server/daemon_options.h"

#include <arpa/inet.h>

#include <algorithm>
#include <string>
#include <thread>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/status/status.h"

ABSL_FLAG(std::string, state_dir, "",
          "Directory for this node's durable state (configuration, admin socket). Created "
          "with mode 0700 if missing. Required.");
ABSL_FLAG(std::string, domain, "",
          "XMPP domain to set when the state dir is new (as 'stanzactl domain'). Ignored once "
          "the node has a configuration.");
ABSL_FLAG(std::string, listen, "",
          "Comma-separated IP addresses to listen on when the state dir is new (as 'stanzactl "
          "listen'); with --domain it also enables the node. Ignored once configured.");
ABSL_FLAG(uint16_t, component_port, 5223,
          "TCP port for call bridges (XEP-0114 components) on every listen address.");
ABSL_FLAG(bool, component_tls, false,
          "Call bridges speak TLS from the first byte on --component_port (with the certificate "
          "of 'stanzactl certs'); plain XEP-0114 connections are then refused there. Off: "
          "plain XEP-0114, for bridges on a trusted network.");
ABSL_FLAG(uint16_t, c2s_port, 5222,
          "TCP port for XMPP clients (RFC 6120: STARTTLS required, then SASL SCRAM-SHA-256, "
          "SCRAM-SHA-1 or PLAIN) on every listen address. Until the node has a certificate "
          "(stanzactl certs KEY CERT) a client's stream is ended with <internal-server-error/> "
          "saying so.");
ABSL_FLAG(uint16_t, c2s_tls_port, 0,
          "TCP port for clients that start TLS at once (XEP-0368 direct TLS, usually 5223 when "
          "call bridges use another port); 0: off.");
ABSL_FLAG(int, resume_timeout_s, 300,
          "A client with XEP-0198 stream management that loses its connection may resume its "
          "session within this many seconds (its routes stay; stanzas for it wait); after it, "
          "the stanzas it did not acknowledge are returned to their senders with "
          "<recipient-unavailable/>. 0: no resumption.");
ABSL_FLAG(int, client_resources_max, 16,
          "Most resources (simultaneous client sessions) one account may bind; one more is "
          "refused with <resource-constraint/>.");
ABSL_FLAG(int, account_failures_max, 5,
          "Failed logins of one account within --auth_failure_window_s after which its "
          "logins are refused, even with the right password, until the window passes.");
ABSL_FLAG(uint16_t, cluster_port, 5279,
          "TCP port for cluster peers (Raft, configuration and routes; stanzas between nodes "
          "use --cluster_data_port), on the first listen address. Opened by 'stanzactl cluster "
          "enable'. Every "
          "link is authenticated with the cluster key (made by 'cluster initialize', handed "
          "to nodes that join with a token) before anything else is read; mutual TLS as well "
          "once the node has a certificate ('certs') and the cluster a trust bundle ('cluster "
          "trust'). Without TLS, what follows the handshake is sealed with keys derived from it "
          "(no forward secrecy: TLS adds that).");
ABSL_FLAG(int, cluster_data_port, 0,
          "TCP port for the data links between the nodes' threads (stanzas between nodes), on "
          "the cluster address; opened by 'stanzactl cluster enable'. 0: --cluster_port + 1. "
          "Links are authenticated as cluster links are (the cluster key; mutual TLS with the "
          "cluster's trust bundle once it has one), and only members are let in.");
ABSL_FLAG(std::string, cluster_address, "",
          "This node's cluster address: the IP the cluster port opens on and the other nodes "
          "dial. Empty: the first listen address (which must not then be a wildcard such as "
          "0.0.0.0 or ::).");
ABSL_FLAG(int, cluster_handshake_timeout_ms, 5000,
          "A cluster link must connect, finish TLS and authenticate within this many "
          "milliseconds, or it is closed.");
ABSL_FLAG(int, cluster_unauthenticated_links_max, 256,
          "Most incoming cluster links that have not authenticated yet, in total; more are "
          "closed at once (members reconnect; an attacker cannot hold the port).");
ABSL_FLAG(int, cluster_unauthenticated_links_per_ip_max, 8,
          "Most incoming cluster links that have not authenticated yet from one IP address.");
ABSL_FLAG(std::string, routing, "leader",
          "How a stanza for a bridge on another node travels: 'leader' (the seed's model: a "
          "follower sends it to the leader, which sends it to the bridge's node) or 'direct' "
          "(straight to the bridge's node). Stanzas for bridges on the same node never leave "
          "it.");
ABSL_FLAG(int, forward_hold_ms, 5000,
          "A stanza for a bridge on another node is kept until that node has taken it, and "
          "sent again (to wherever the bridge is then) when it did not. After this long its "
          "sender gets an error: at once if no node may have it; else once the node it was "
          "sent to confirms it will not deliver it, or, when that node answers nothing, 2 x "
          "this later (up to 3 x in all: the sender is never told 'error' for a stanza "
          "delivered, unless the node was cut off that long).");
ABSL_FLAG(int, no_leader_hold_ms, 3000,
          "With --routing=leader, how long a stanza for a bridge on another node waits while "
          "the cluster has no leader (an election, or this node is on the minority side of a "
          "partition) before it is answered to its sender with <service-unavailable/>. Within "
          "--forward_hold_ms and --forward_hold_bytes.");
ABSL_FLAG(int, route_digest_ms, 1000,
          "How often each member is sent a 17-byte digest of this node's routes (bridges and "
          "client resources bound here). A member whose routes for this node disagree with two "
          "digests in a row asks for them all again: a route change lost on the way is "
          "repaired within two of these. 100 to 600000.");
ABSL_FLAG(int, forward_hold_bytes, 64 << 20,
          "Most bytes of stanzas kept waiting for another node (split evenly among the "
          "threads); beyond it new ones are answered with <resource-constraint/> at once.");
ABSL_FLAG(int, threads, 0, "Shard threads, one io_uring each. 0 means one per CPU core.");
ABSL_FLAG(std::string, metrics_addr, "127.0.0.1:9464",
          "IP:PORT (or [IPv6]:PORT) serving Prometheus metrics at /metrics and a health check "
          "at /healthz (200 when routing, 503 with the reason otherwise). No authentication: "
          "keep it on loopback or a management network. Empty: off.");
ABSL_FLAG(std::string, log_level, "info", "Least severe log level printed: info, warning, error.");
ABSL_FLAG(int, connections_max, 100000,
          "Most simultaneous connections on this node (split evenly across shards); further "
          "connections are refused. The kernel spreads connections over the shards only "
          "roughly evenly, so leave some headroom (for 100,000 bridges, 110,000). The node "
          "raises its open files limit to match at start, as far as the hard limit "
          "(LimitNOFILE=) allows.");
ABSL_FLAG(bool, direct_descriptors, true,
          "Keep each connection's socket only in its thread's io_uring table of registered "
          "files, not in the process's descriptor table: the open files limit then bounds "
          "the connections of each thread, not of the whole node (4 threads hold 4 times as "
          "many), and no receive or send looks a descriptor up. Needs Linux 6.7; on an older "
          "kernel the node logs direct_descriptors_unavailable and uses plain descriptors.");
ABSL_FLAG(int, stanza_bytes_max, 256 * 1024,
          "Largest stanza accepted, in bytes; a larger one ends the stream with "
          "<policy-violation/>.");
ABSL_FLAG(int, queue_bytes_max, 1 << 20,
          "Most bytes queued for sending to one connection; stanzas beyond it are bounced to "
          "their sender with <resource-constraint/>.");
ABSL_FLAG(int, slow_reader_timeout_ms, 10000,
          "A connection whose send queue stays above a quarter of --queue_bytes_max for this "
          "long is disconnected.");
ABSL_FLAG(int, preauth_timeout_ms, 10000,
          "Time a new connection has to complete its handshake before it is closed with "
          "<connection-timeout/>.");
ABSL_FLAG(int, idle_timeout_s, 0,
          "Close connections that send nothing for this many seconds (0: never; bridges send "
          "whitespace keepalives).");
ABSL_FLAG(int, auth_failures_max, 10,
          "Failed bridge handshakes and client logins from one IP address within "
          "--auth_failure_window_s (counted over all shards) after which that address is "
          "refused for the rest of the window: new connections are closed at once, and "
          "handshakes and logins on its open ones end with <policy-violation/> unchecked. "
          "With N shards a burst may have up to N times this many checked. At least 1.");
ABSL_FLAG(int, auth_failure_window_s, 60, "Window for --auth_failures_max, in seconds.");
ABSL_FLAG(int, preauth_connections_per_ip_max, 64,
          "Most connections from one IP address that have not authenticated yet (no bridge "
          "handshake or client login so far), on all ports and shards together; one more is "
          "closed at once. Authenticated connections do not count. 0: no cap (for benchmarks "
          "that open thousands of bridges from one address).");

namespace stanzad {

absl::StatusOr<DaemonOptions> ReadDaemonOptions() {
  DaemonOptions options;
  options.state_dir = absl::GetFlag(FLAGS_state_dir);
  if (options.state_dir.empty()) {
    return absl::InvalidArgumentError("--state_dir is required (see stanzad --help)");
  }
  options.seed_domain = absl::GetFlag(FLAGS_domain);
  options.seed_listen = absl::GetFlag(FLAGS_listen);
  const std::string level = absl::GetFlag(FLAGS_log_level);
  if (level != "info" && level != "warning" && level != "error") {
    return absl::InvalidArgumentError("--log_level must be info, warning or error, not '" + level +
                                      "'");
  }
  options.log_level = level == "error"     ? LogLevel::kError
                      : level == "warning" ? LogLevel::kWarning
                                           : LogLevel::kInfo;
  const std::string routing = absl::GetFlag(FLAGS_routing);
  if (routing != "leader" && routing != "direct") {
    return absl::InvalidArgumentError("--routing must be leader or direct, not '" + routing + "'");
  }
  options.cluster_address = absl::GetFlag(FLAGS_cluster_address);
  if (!options.cluster_address.empty()) {
    in6_addr parsed{};
    if (inet_pton(AF_INET, options.cluster_address.c_str(), &parsed) != 1 &&
        inet_pton(AF_INET6, options.cluster_address.c_str(), &parsed) != 1) {
      return absl::InvalidArgumentError(
          "--cluster_address must be this node's IP address (no port: --cluster_port), not '" +
          options.cluster_address + "'");
    }
  }
  // A negative time would wrap to hundreds of millions of years: refused, not clamped.
  for (const auto& [name, value] :
       {std::pair<const char*, int>{"idle_timeout_s", absl::GetFlag(FLAGS_idle_timeout_s)},
        {"auth_failure_window_s", absl::GetFlag(FLAGS_auth_failure_window_s)},
        {"preauth_timeout_ms", absl::GetFlag(FLAGS_preauth_timeout_ms)},
        {"slow_reader_timeout_ms", absl::GetFlag(FLAGS_slow_reader_timeout_ms)}}) {
    if (value < 0) {
      return absl::InvalidArgumentError(std::string("--") + name + " must be 0 or more, not " +
                                        std::to_string(value));
    }
  }
  options.shards = absl::GetFlag(FLAGS_threads);
  if (options.shards <= 0) {
    options.shards = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  options.metrics_addr = absl::GetFlag(FLAGS_metrics_addr);

  options.component_port = absl::GetFlag(FLAGS_component_port);
  options.component_tls = absl::GetFlag(FLAGS_component_tls);
  options.c2s_port = absl::GetFlag(FLAGS_c2s_port);
  options.c2s_tls_port = absl::GetFlag(FLAGS_c2s_tls_port);
  options.connections_max_per_shard =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_connections_max) / options.shards));
  options.connection_queue_bytes_max =
      static_cast<size_t>(std::max(4096, absl::GetFlag(FLAGS_queue_bytes_max)));
  options.direct_descriptors = absl::GetFlag(FLAGS_direct_descriptors);
  const size_t stanza_bytes_max =
      static_cast<size_t>(std::max(1024, absl::GetFlag(FLAGS_stanza_bytes_max)));
  router::RouterLimits& limits = options.router;
  limits.preauth_timeout_ms = static_cast<uint64_t>(absl::GetFlag(FLAGS_preauth_timeout_ms));
  limits.idle_timeout_ms = static_cast<uint64_t>(absl::GetFlag(FLAGS_idle_timeout_s)) * 1000;
  limits.slow_reader_timeout_ms =
      static_cast<uint64_t>(absl::GetFlag(FLAGS_slow_reader_timeout_ms));
  limits.slow_reader_queue_bytes = options.connection_queue_bytes_max / 4;
  limits.auth_failures_max =
      static_cast<uint32_t>(std::max(1, absl::GetFlag(FLAGS_auth_failures_max)));
  limits.preauth_connections_per_ip_max =
      static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_preauth_connections_per_ip_max)));
  limits.auth_failure_window_ms =
      static_cast<uint64_t>(absl::GetFlag(FLAGS_auth_failure_window_s)) * 1000;
  limits.tokenizer.stanza_bytes_max = stanza_bytes_max;
  limits.queue_bytes_max = options.connection_queue_bytes_max;
  limits.resume_timeout_ms =
      static_cast<uint64_t>(std::max(0, absl::GetFlag(FLAGS_resume_timeout_s))) * 1000;
  limits.unacked_bytes_max = options.connection_queue_bytes_max;
  limits.client_resources_max =
      static_cast<uint32_t>(std::max(1, absl::GetFlag(FLAGS_client_resources_max)));
  limits.account_failures_max =
      static_cast<uint32_t>(std::max(1, absl::GetFlag(FLAGS_account_failures_max)));

  options.cluster_port = absl::GetFlag(FLAGS_cluster_port);
  const int data_port = absl::GetFlag(FLAGS_cluster_data_port);
  if (data_port < 0 || data_port > 65535 || (data_port == 0 && options.cluster_port == 65535)) {
    return absl::InvalidArgumentError(
        "--cluster_data_port must be a TCP port (1 to 65535), or 0 for --cluster_port + 1");
  }
  options.cluster_data_port =
      static_cast<uint16_t>(data_port != 0 ? data_port : options.cluster_port + 1);
  if (options.cluster_data_port == options.cluster_port) {
    return absl::InvalidArgumentError("--cluster_data_port must differ from --cluster_port");
  }
  options.cluster_links.handshake_timeout_ms =
      static_cast<uint64_t>(std::max(100, absl::GetFlag(FLAGS_cluster_handshake_timeout_ms)));
  options.cluster_links.unauthenticated_links_max =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_cluster_unauthenticated_links_max)));
  options.cluster_links.unauthenticated_links_per_ip_max = static_cast<size_t>(
      std::max(1, absl::GetFlag(FLAGS_cluster_unauthenticated_links_per_ip_max)));
  // The data port's shards share the cluster port's bounds (each shard holds its share).
  options.data_links.handshake_timeout_ms = options.cluster_links.handshake_timeout_ms;
  options.data_links.unauthenticated_links_max =
      std::max<size_t>(1, options.cluster_links.unauthenticated_links_max /
                              static_cast<size_t>(std::max(1, options.shards)));
  options.data_links.unauthenticated_links_per_ip_max =
      options.cluster_links.unauthenticated_links_per_ip_max;
  options.data_links.queue_bytes_max = options.connection_queue_bytes_max / 16 * 15;
  // A frame is at most a relayed stanza, or a frame of answers, with their headers.
  options.data_links.frame_bytes_max =
      std::max<size_t>(stanza_bytes_max + 1024, 9 * cluster::relay::kAnswersPerFrameMax) + 4096;
  cluster::relay::Options& relay = options.relay;
  relay.hold_ms = static_cast<uint64_t>(std::max(1, absl::GetFlag(FLAGS_forward_hold_ms)));
  relay.no_leader_hold_ms =
      static_cast<uint64_t>(std::max(1, absl::GetFlag(FLAGS_no_leader_hold_ms)));
  relay.abort_wait_ms = 2 * relay.hold_ms;
  relay.hold_bytes_max = static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_forward_hold_bytes)));
  relay.direct = routing == "direct";
  const int route_digest_ms = absl::GetFlag(FLAGS_route_digest_ms);
  if (route_digest_ms < 100 || route_digest_ms > 600000) {
    return absl::InvalidArgumentError("--route_digest_ms must be 100 to 600000, not " +
                                      std::to_string(route_digest_ms));
  }
  options.directory.digest_interval_ms = static_cast<uint64_t>(route_digest_ms);
  // Stamping `from` on a client's stanza may lengthen it a little past the bound.
  relay.stanza_bytes_max = stanza_bytes_max + 1024;
  return options;
}

std::vector<FlagGroup> DaemonFlagGroups() {
  return {
      {"State and first start", {"state_dir", "domain", "listen"}},
      {"Listening (TLS with the certificate of 'stanzactl certs')",
       {"c2s_port", "c2s_tls_port", "component_port", "component_tls"}},
      {"Clients", {"resume_timeout_s", "client_resources_max", "account_failures_max"}},
      {"Cluster",
       {"cluster_port", "cluster_data_port", "cluster_address", "cluster_handshake_timeout_ms",
        "cluster_unauthenticated_links_max", "cluster_unauthenticated_links_per_ip_max", "routing",
        "forward_hold_ms", "no_leader_hold_ms", "forward_hold_bytes", "route_digest_ms"}},
      {"Limits",
       {"connections_max", "direct_descriptors", "stanza_bytes_max", "queue_bytes_max",
        "slow_reader_timeout_ms", "preauth_timeout_ms", "idle_timeout_s", "auth_failures_max",
        "auth_failure_window_s", "preauth_connections_per_ip_max"}},
      {"Logging, metrics and threads", {"log_level", "metrics_addr", "threads"}},
  };
}

}  // namespace stanzad
