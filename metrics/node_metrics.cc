#include "metrics/node_metrics.h"

#include <algorithm>
#include <cstdio>
#include <string_view>

#include "core/base/concat.h"
#include "core/xmpp/stanza.h"
#include "metrics/prometheus_text.h"

namespace stanzad {
namespace {

using metrics::Labels;
using metrics::PrometheusText;

uint64_t Load(const std::atomic<uint64_t>& value) { return value.load(std::memory_order_relaxed); }

// One family with a sample per shard from the router's counters.
template <typename Get>
void PerShard(PrometheusText& text, std::string_view name, std::string_view help,
              std::string_view type, const router::RouterShardStats* shards, int count, Get get) {
  text.Family(name, help, type);
  for (int i = 0; i < count; ++i) {
    text.Sample(name, {{"shard", std::to_string(i)}}, get(shards[i]));
  }
}

// One family with a sample per shard from the engine's counters (none while
// the node is not serving).
template <typename Get>
void PerEngineShard(PrometheusText& text, std::string_view name, std::string_view help,
                    std::string_view type, const std::vector<net::ShardStats>& engine, Get get) {
  text.Family(name, help, type);
  for (size_t i = 0; i < engine.size(); ++i) {
    text.Sample(name, {{"shard", std::to_string(i)}}, get(engine[i]));
  }
}

// A histogram family in seconds from one kept in milliseconds.
void Histogram(PrometheusText& text, std::string_view name, std::string_view help,
               const MsHistogram& histogram) {
  text.Family(name, help, "histogram");
  const std::string bucket = Concat(name, "_bucket");
  for (size_t i = 0; i < histogram.buckets.size() && i < histogram.bounds_ms.size(); ++i) {
    char bound[32];
    std::snprintf(bound, sizeof(bound), "%g", histogram.bounds_ms[i] / 1000.0);
    text.Sample(bucket, {{"le", bound}}, histogram.buckets[i]);
  }
  text.Sample(bucket, {{"le", "+Inf"}}, histogram.count);
  text.Sample(Concat(name, "_sum"), {}, histogram.sum_ms / 1000.0);
  text.Sample(Concat(name, "_count"), {}, histogram.count);
}

}  // namespace

std::string RenderNodeMetrics(const NodeMetricsSnapshot& snapshot,
                              const router::RouterShardStats* shards, int count) {
  PrometheusText text;
  text.Family("stanzad_build_info", "The running stanzad's version (always 1).", "gauge");
  text.Sample("stanzad_build_info", {{"version", snapshot.version}}, uint64_t{1});
  text.Family("stanzad_uptime_seconds", "Seconds since the daemon started.", "gauge");
  text.Sample("stanzad_uptime_seconds", {}, snapshot.uptime_s);
  text.Family("stanzad_serving",
              "1 when the node accepts XMPP traffic; 0 when it does not (see /healthz for why).",
              "gauge");
  text.Sample("stanzad_serving", {}, uint64_t{snapshot.serving ? 1u : 0u});
  text.Family("stanzad_bridges_configured", "Call bridges in the node's configuration.", "gauge");
  text.Sample("stanzad_bridges_configured", {}, snapshot.bridges_configured);
  text.Family("stanzad_last_config_change_timestamp_seconds",
              "Unix time of the last configuration change applied (0: none since start).", "gauge");
  text.Sample("stanzad_last_config_change_timestamp_seconds", {},
              snapshot.last_config_change_unix_s);

  text.Family("stanzad_connections_open", "Connections open now, by kind.", "gauge");
  for (int i = 0; i < count; ++i) {
    const uint64_t all = Load(shards[i].connections_open);
    const uint64_t clients = std::min(all, Load(shards[i].client_connections_open));
    text.Sample("stanzad_connections_open", {{"shard", std::to_string(i)}, {"kind", "component"}},
                all - clients);
    text.Sample("stanzad_connections_open", {{"shard", std::to_string(i)}, {"kind", "client"}},
                clients);
  }
  PerShard(text, "stanzad_connections_accepted_total", "Connections accepted.", "counter", shards,
           count, [](const auto& s) { return Load(s.connections_accepted); });
  PerShard(text, "stanzad_connections_refused_total",
           "Connections refused (over --connections_max, or from an address blocked after "
           "failed handshakes).",
           "counter", shards, count, [](const auto& s) { return Load(s.connections_refused); });
  PerShard(text, "stanzad_bridges_connected", "Call bridges authenticated and connected now.",
           "gauge", shards, count, [](const auto& s) { return Load(s.bridges_connected); });
  const auto outcomes = [&](const char* name, const char* help, const char* ok_label,
                            const char* failed_label, auto ok, auto failed) {
    text.Family(name, help, "counter");
    for (int i = 0; i < count; ++i) {
      const std::string shard = std::to_string(i);
      text.Sample(name, {{"shard", shard}, {"outcome", ok_label}}, ok(shards[i]));
      text.Sample(name, {{"shard", shard}, {"outcome", failed_label}}, failed(shards[i]));
    }
  };
  outcomes(
      "stanzad_handshakes_total", "XEP-0114 component handshakes, by outcome.", "ok", "failed",
      [](const auto& s) { return Load(s.bridges_authenticated); },
      [](const auto& s) { return Load(s.auth_failures); });
  PerShard(text, "stanzad_clients_connected",
           "Client resources bound now (sessions waiting to be resumed included).", "gauge", shards,
           count, [](const auto& s) { return Load(s.clients_connected); });
  outcomes(
      "stanzad_client_logins_total", "Client SASL logins, by outcome.", "ok", "failed",
      [](const auto& s) { return Load(s.client_logins_ok); },
      [](const auto& s) { return Load(s.client_logins_failed); });
  outcomes(
      "stanzad_tls_handshakes_total", "TLS handshakes (clients, and bridges with TLS), by outcome.",
      "ok", "failed", [](const auto& s) { return Load(s.tls_handshakes_ok); },
      [](const auto& s) { return Load(s.tls_handshakes_failed); });
  text.Family("stanzad_stream_resumptions_total",
              "XEP-0198 sessions resumed, resumptions refused, and detached sessions that "
              "expired.",
              "counter");
  for (int i = 0; i < count; ++i) {
    const std::string shard = std::to_string(i);
    text.Sample("stanzad_stream_resumptions_total", {{"shard", shard}, {"outcome", "resumed"}},
                Load(shards[i].sm_resumed));
    text.Sample("stanzad_stream_resumptions_total", {{"shard", shard}, {"outcome", "failed"}},
                Load(shards[i].sm_resume_failed));
    text.Sample("stanzad_stream_resumptions_total", {{"shard", shard}, {"outcome", "expired"}},
                Load(shards[i].sm_expired));
  }
  PerShard(text, "stanzad_stanzas_returned_unacked_total",
           "Stanzas a client never acknowledged, returned to their senders when its session "
           "ended.",
           "counter", shards, count,
           [](const auto& s) { return Load(s.stanzas_returned_unacked); });
  PerShard(text, "stanzad_stanzas_received_total", "Stanzas received from connections.", "counter",
           shards, count, [](const auto& s) { return Load(s.stanzas_received); });
  PerShard(text, "stanzad_stanzas_routed_total", "Stanzas delivered to their destination.",
           "counter", shards, count, [](const auto& s) { return Load(s.stanzas_routed); });
  PerShard(text, "stanzad_stanzas_answered_total",
           "Stanzas to the server itself that it answered (ping, disco#info, errors).", "counter",
           shards, count, [](const auto& s) { return Load(s.stanzas_answered); });
  text.Family("stanzad_stanzas_bounced_total",
              "Stanzas returned to their sender with an error, by the error's condition.",
              "counter");
  for (int i = 0; i < count; ++i) {
    for (int c = 0; c < xmpp::kStanzaErrorConditionCount; ++c) {
      const uint64_t value = Load(shards[i].stanzas_bounced_by_condition[c]);
      // The conditions a router can bounce with are always shown; others once seen.
      const auto condition = static_cast<xmpp::StanzaErrorCondition>(c);
      if (value == 0 && condition != xmpp::StanzaErrorCondition::kServiceUnavailable &&
          condition != xmpp::StanzaErrorCondition::kResourceConstraint &&
          condition != xmpp::StanzaErrorCondition::kRemoteServerNotFound) {
        continue;
      }
      text.Sample("stanzad_stanzas_bounced_total",
                  {{"shard", std::to_string(i)},
                   {"reason", std::string(xmpp::StanzaErrorConditionName(condition))}},
                  value);
    }
  }
  PerShard(text, "stanzad_error_stanzas_dropped_total",
           "Error stanzas that could not be delivered (never answered with another error).",
           "counter", shards, count, [](const auto& s) { return Load(s.error_stanzas_dropped); });
  PerShard(text, "stanzad_stream_errors_total", "Streams closed with a stream error.", "counter",
           shards, count, [](const auto& s) { return Load(s.stream_errors); });

  PerShard(text, "stanzad_stanzas_forwarded_total",
           "Stanzas for a bridge on another node, handed to the cluster relay.", "counter", shards,
           count, [](const auto& s) { return Load(s.stanzas_forwarded); });
  PerShard(text, "stanzad_stanzas_from_peers_total", "Stanzas that arrived from another node.",
           "counter", shards, count, [](const auto& s) { return Load(s.stanzas_from_peers); });

  text.Family("stanzad_cluster_member", "1 when this node is a member of a cluster.", "gauge");
  text.Sample("stanzad_cluster_member", {}, uint64_t{snapshot.cluster_member ? 1u : 0u});
  text.Family("stanzad_cluster_leader", "1 when this node is the cluster's leader.", "gauge");
  text.Sample("stanzad_cluster_leader", {}, uint64_t{snapshot.cluster_leader ? 1u : 0u});
  text.Family("stanzad_raft_term", "The Raft term this node is in.", "gauge");
  text.Sample("stanzad_raft_term", {}, snapshot.cluster_term);
  // A 64-bit id as a sample value would be rounded (a double): it goes in a label.
  text.Family("stanzad_cluster_leader_node",
              "The leader this node knows, by node id and cluster address (no sample: none).",
              "gauge");
  if (snapshot.cluster_leader_id != 0) {
    text.Sample("stanzad_cluster_leader_node",
                {{"id", std::to_string(snapshot.cluster_leader_id)},
                 {"address", snapshot.cluster_leader_address}},
                uint64_t{1});
  }
  text.Family("stanzad_cluster_members", "Members of the cluster, and those with a link up.",
              "gauge");
  text.Sample("stanzad_cluster_members", {{"state", "all"}}, snapshot.cluster_members);
  text.Sample("stanzad_cluster_members", {{"state", "connected"}},
              snapshot.cluster_members_connected);
  text.Family("stanzad_raft_elections_won_total", "Times this node became the leader.", "counter");
  text.Sample("stanzad_raft_elections_won_total", {}, snapshot.cluster_elections_won);
  text.Family("stanzad_cluster_last_state_change_timestamp_seconds",
              "Unix time of this node's last Raft role change.", "gauge");
  text.Sample("stanzad_cluster_last_state_change_timestamp_seconds", {},
              snapshot.cluster_last_state_change_unix_s);
  Histogram(text, "stanzad_cluster_failover_seconds",
            "How long this node knew no leader, each time it lost one (from losing it to "
            "knowing the next).",
            snapshot.failovers);
  Histogram(text, "stanzad_raft_leader_gap_seconds",
            "On a follower: the time between two Raft messages from its leader in one term, "
            "as read (heartbeats every 50 ms; elections start after 300-600 ms without).",
            snapshot.leader_gaps);
  text.Family("stanzad_raft_leader_gap_max_seconds",
              "On a follower: the longest time between two Raft messages from its leader in "
              "one term since this node started.",
              "gauge");
  text.Sample("stanzad_raft_leader_gap_max_seconds", {},
              static_cast<double>(snapshot.leader_gap_max_ms) / 1000.0);
  text.Family("stanzad_cluster_relayed_total",
              "Stanzas this node's relay lanes sent to and took from other nodes, by direction.",
              "counter");
  text.Sample("stanzad_cluster_relayed_total", {{"direction", "out"}}, snapshot.relayed_out);
  text.Sample("stanzad_cluster_relayed_total", {{"direction", "in"}}, snapshot.relayed_in);
  text.Sample("stanzad_cluster_relayed_total", {{"direction", "failed"}}, snapshot.relay_failed);
  text.Sample("stanzad_cluster_relayed_total", {{"direction", "resent"}}, snapshot.relay_resent);
  text.Sample("stanzad_cluster_relayed_total", {{"direction", "duplicate_dropped"}},
              snapshot.relay_duplicates);
  text.Sample("stanzad_cluster_relayed_total", {{"direction", "expired"}}, snapshot.relay_expired);
  // Asked about past their deadline and never delivered here; bounced without an
  // answer from the destination; arrived at a node that did not hold their route.
  text.Sample("stanzad_cluster_relayed_total", {{"direction", "aborted"}}, snapshot.relay_aborted);
  text.Sample("stanzad_cluster_relayed_total", {{"direction", "unconfirmed"}},
              snapshot.relay_unconfirmed);
  text.Sample("stanzad_cluster_relayed_total", {{"direction", "misrouted"}},
              snapshot.relay_misrouted);
  text.Family("stanzad_cluster_forward_waiting",
              "Stanzas for other nodes not yet acknowledged by them (count, bytes).", "gauge");
  text.Sample("stanzad_cluster_forward_waiting", {{"unit", "stanzas"}}, snapshot.forward_waiting);
  text.Sample("stanzad_cluster_forward_waiting", {{"unit", "bytes"}},
              snapshot.forward_waiting_bytes);

  const auto& engine = snapshot.engine;
  PerEngineShard(text, "stanzad_bytes_received_total", "Bytes read from connections.", "counter",
                 engine, [](const net::ShardStats& s) { return s.bytes_received; });
  PerEngineShard(text, "stanzad_bytes_sent_total", "Bytes written to connections.", "counter",
                 engine, [](const net::ShardStats& s) { return s.bytes_sent; });
  PerEngineShard(text, "stanzad_send_calls_total",
                 "Send submissions (bytes_sent / send_calls is the write batching).", "counter",
                 engine, [](const net::ShardStats& s) { return s.send_calls; });
  PerEngineShard(text, "stanzad_send_queue_bytes",
                 "Bytes queued for sending on all of a shard's connections now.", "gauge", engine,
                 [](const net::ShardStats& s) { return s.send_queue_bytes; });
  PerEngineShard(text, "stanzad_send_queue_full_total",
                 "Stanzas not queued because the destination's queue was full (each is bounced "
                 "with resource-constraint).",
                 "counter", engine,
                 [](const net::ShardStats& s) { return s.sends_refused_queue_full; });
  PerEngineShard(text, "stanzad_connections_direct",
                 "Open connections held only in the shard's io_uring table (direct "
                 "descriptors), outside the process's open files.",
                 "gauge", engine, [](const net::ShardStats& s) { return s.connections_direct; });
  PerEngineShard(text, "stanzad_shard_messages_total",
                 "Records received from other shards over the SPSC queues.", "counter", engine,
                 [](const net::ShardStats& s) { return s.messages_received; });
  PerEngineShard(text, "stanzad_shard_doorbell_wakeups_total",
                 "Times another shard had to wake this one through its doorbell.", "counter",
                 engine, [](const net::ShardStats& s) { return s.wakeups_by_doorbell; });
  PerEngineShard(text, "stanzad_recv_buffers_exhausted_total",
                 "Receives that found the shard's buffer ring empty (re-armed; a sign of "
                 "overload).",
                 "counter", engine,
                 [](const net::ShardStats& s) { return s.recv_buffers_exhausted; });
  return text.Take();
}

metrics::HttpResponse NodeHealth(const NodeMetricsSnapshot& snapshot) {
  if (snapshot.serving) {
    // Still serving its own bridges and clients: healthy for a load balancer, with the
    // cluster's trouble said for the operator.
    return {200, "text/plain; charset=utf-8",
            snapshot.cluster_problem.empty()
                ? "serving\n"
                : "serving\ncluster " + snapshot.cluster_problem + "\n"};
  }
  return {503, "text/plain; charset=utf-8", "not serving: " + snapshot.not_serving_reason + "\n"};
}

}  // namespace stanzad
