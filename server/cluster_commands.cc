#include "server/cluster_commands.h"

#include <cstdio>
#include <ctime>

#include "absl/strings/str_join.h"
#include "admin/cluster_address.h"
#include "admin/node_commands.h"
#include "core/base/concat.h"
#include "core/base/decimal.h"

namespace stanzad {
namespace {

std::string RoleText(const cluster::ClusterStatus& status) {
  if (!status.member) return "NOT A MEMBER";
  switch (status.role) {
    case raft::Role::kLeader:
      return "LEADER";
    case raft::Role::kFollower:
      return "FOLLOWER";
    default:
      return "CANDIDATE";
  }
}

std::string Time(std::chrono::system_clock::time_point when) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%b-%d %H:%M:%S", &utc);
  return text;
}

std::string OrNone(const std::string& value) { return value.empty() ? "(none)" : value; }

}  // namespace

std::string ClusterStatusText(const cluster::ClusterStatus& status, const NodeConfig& config,
                              bool listening) {
  std::string out;
  if (!config.cluster_enabled) {
    out = "State: DISABLED (stanzactl cluster enable)\n";
  } else if (!status.member) {
    out = Concat(
        "State: NOT A MEMBER (run 'stanzactl cluster initialize' on the first node, "
        "'stanzactl cluster join HOST --token=TOKEN' on the others)\n");
  } else {
    out = Concat("State: ", RoleText(status), "\n");
  }
  out += "List of peers\n";
  for (const cluster::MemberStatus& member : status.members) {
    out += Concat(member.address, member.leader ? " (Leader)" : "", "\n");
  }
  out += Concat("Last state change: ", Time(status.last_state_change), "\n");
  out += Concat("Key file           : ", OrNone(config.tls_key), "\n");
  out += Concat("Certificate file   : ", OrNone(config.tls_certificate), "\n");
  out += Concat("Trust bundle       : ", OrNone(config.cluster_trust), "\n");
  out += Concat("Node id            : ", std::to_string(status.id), "\n");
  out += Concat("Cluster address    : ", OrNone(status.address),
                listening ? "" : (config.cluster_enabled ? " (not listening)" : ""), "\n");
  out += Concat("Term               : ", std::to_string(status.term), "\n");
  out += Concat("Cluster links      : ",
                !status.has_cluster_key
                    ? "no cluster key yet (cluster initialize, or cluster join HOST --token=TOKEN)"
                : status.tls ? "authenticated with the cluster key, over mutual TLS"
                             : "authenticated and sealed with the cluster key (no TLS: set "
                               "'certs' and 'cluster trust' on every node for it)",
                "\n");
  if (status.links_refused > 0) {
    out += Concat("Links refused      : ", std::to_string(status.links_refused),
                  " (event=cluster_link_refused in the log says who and why)\n");
  }
  if (!status.members.empty()) {
    out += "Peers:\n";
    for (const cluster::MemberStatus& member : status.members) {
      out += Concat(
          "  ", member.address, "  id=", std::to_string(member.id),
          member.self ? "  this node" : (member.connected ? "  connected" : "  unreachable"),
          member.leader ? "  leader" : "",
          member.self ? ""
          : member.last_contact_ms_ago
              ? Concat("  last contact ", std::to_string(*member.last_contact_ms_ago), " ms ago")
              : std::string("  never heard from"),
          member.data_links_total > 0
              ? Concat("  data links ", std::to_string(member.data_links_up), "/",
                       std::to_string(member.data_links_total))
              : std::string(),
          "\n");
    }
  }
  if (status.members.size() == 2) {
    out +=
        "warning: a two-node cluster tolerates no failure: if either node stops, the other "
        "cannot commit changes or elect a leader; add a third node\n";
  }
  if (!status.isolated_from.empty()) {
    out +=
        Concat("warning: this node's cluster links to ", absl::StrJoin(status.isolated_from, ", "),
               " are cut by a drill ('stanzactl cluster isolate off' ends it)\n");
  }
  if (!status.failed.ok()) {
    out +=
        Concat("error: this node's cluster stopped: ", std::string(status.failed.message()), "\n");
  }
  return out;
}

std::string ClusterStatusJson(const cluster::ClusterStatus& status, const NodeConfig& config,
                              bool listening) {
  std::string members = "[";
  for (const cluster::MemberStatus& member : status.members) {
    if (members.size() > 1) members += ",";
    members += Concat(
        "{\"id\":\"", std::to_string(member.id), "\",\"address\":", JsonString(member.address),
        ",\"leader\":", member.leader ? "true" : "false",
        ",\"self\":", member.self ? "true" : "false",
        ",\"connected\":", member.connected ? "true" : "false", ",\"last_contact_ms_ago\":",
        member.last_contact_ms_ago ? std::to_string(*member.last_contact_ms_ago)
                                   : std::string("null"),
        ",\"data_links_up\":", std::to_string(member.data_links_up),
        ",\"data_links_total\":", std::to_string(member.data_links_total), "}");
  }
  members += "]";
  std::string isolated;
  for (const std::string& host : status.isolated_from) {
    if (!isolated.empty()) isolated += ",";
    isolated += JsonString(host);
  }
  return Concat(
      "{\"enabled\":", config.cluster_enabled ? "true" : "false",
      ",\"listening\":", listening ? "true" : "false",
      ",\"member\":", status.member ? "true" : "false",
      ",\"state\":", JsonString(config.cluster_enabled ? RoleText(status) : "DISABLED"),
      ",\"node_id\":\"", std::to_string(status.id), "\",\"address\":", JsonString(status.address),
      ",\"term\":", std::to_string(status.term), ",\"leader\":", JsonString(status.leader_address),
      ",\"last_state_change\":", JsonString(Time(status.last_state_change)),
      ",\"trust_bundle\":", JsonString(config.cluster_trust),
      ",\"tls\":", status.tls ? "true" : "false", ",\"isolated_from\":[", isolated, "]",
      ",\"members\":", members, "}\n");
}

cluster::RemoveTarget ParseRemoveTarget(std::string_view text, uint16_t default_port) {
  cluster::RemoveTarget target;
  // Ids are large; a bare port-like number is not one.
  if (text.size() > 5 && text.size() <= 20 &&
      text.find_first_not_of("0123456789") == std::string_view::npos) {
    // Above 2^64-1 no node has it: kept as text (never resolved), the answer names it.
    const std::optional<uint64_t> id = ParseDecimal<uint64_t>(text);
    if (id) {
      target.id = *id;
    } else {
      target.address = std::string(text);
    }
    return target;
  }
  absl::StatusOr<std::string> address = ClusterAddressOf(text, default_port);
  target.address = address.ok() ? *address : std::string(text);
  return target;
}

}  // namespace stanzad
