#include "server/admin_dispatcher.h"

#include <arpa/inet.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "admin/cluster_address.h"
#include "admin/file_access.h"
#include "cluster/config_state_machine.h"
#include "core/base/log.h"
#include "server/cluster_commands.h"
#include "server/flags_usage.h"
#include "tls/certificates.h"

namespace stanzad::server {
namespace {

constexpr uint64_t kJoinTokenTtlSDefault = 3600;
// Bridges or users per Raft entry when `cluster initialize` seeds the cluster with them.
constexpr size_t kSeedBatchItems = 1000;

admin::AdminResponse Error(const absl::Status& status) {
  return {1, "error: " + std::string(status.message()) + "\n"};
}

}  // namespace

AdminDispatcher::AdminDispatcher(const DaemonOptions& options, NodeState& node,
                                 const EngineSupervisor& engine,
                                 std::chrono::steady_clock::time_point started)
    : options_(options), node_(node), engine_(engine), started_(started) {}

void AdminDispatcher::CountDataLinks(cluster::ClusterStatus* status) const {
  if (!engine_.serving() || engine_.data_plane().Current()->cluster_key.empty()) return;
  for (cluster::MemberStatus& member : status->members) {
    if (member.self) continue;
    member.data_links_total = engine_.shards();
    for (int shard = 0; shard < engine_.shards(); ++shard) {
      member.data_links_up +=
          engine_.data_link_stats()[static_cast<size_t>(shard)].up.load()->count(member.id) != 0
              ? 1
              : 0;
    }
  }
}

std::string AdminDispatcher::JoinInstructions(const cluster::JoinToken& token,
                                              uint64_t ttl_s) const {
  return "Join another node with (the token admits one node, within " +
         std::to_string(ttl_s / 60 > 0 ? ttl_s / 60 : 1) + (ttl_s >= 120 ? " minutes" : " minute") +
         "):\n  stanzactl cluster join " + node_.cluster()->address() +
         " --token=" + cluster::FormatJoinToken(token) + "\nMore tokens: stanzactl cluster token\n";
}

void AdminDispatcher::Handle(const admin::AdminRequest& original, admin::AdminServer::Reply reply) {
  admin::AdminRequest request = original;
  if (!request.args.empty() && request.args[0] == "xmpp") {
    request.args.erase(request.args.begin());
  }
  if (node_.cluster() == nullptr && !(request.args.size() == 1 && request.args[0] == "status")) {
    // Its store could not be opened again (after a reset, certs or cluster enable): the
    // commands below read it; status says what it can.
    return reply({1, "error: " + node_.ClusterStoreProblem() + "\n"});
  }
  if (!request.args.empty() && request.args[0] == "cluster") {
    return HandleCluster(request, std::move(reply));
  }
  if (!request.args.empty() && request.args[0] == "certs") {
    return reply(HandleCerts(request));
  }
  const bool clustered = node_.cluster() != nullptr && node_.cluster()->has_state();
  const bool force =
      std::find(request.args.begin(), request.args.end(), "--force") != request.args.end();
  if (clustered && !request.args.empty() && request.args[0] == "reset") {
    if (node_.cluster()->is_member() && !force) {
      return reply({1,
                    "error: this node is a member of a cluster; remove it first (on another "
                    "node: stanzactl cluster remove " +
                        node_.cluster()->address() +
                        "), or use 'stanzactl reset --force' (it then joins as a new node)\n"});
    }
  }
  // Decided against the configuration as it is, not a copy: a copy costs its whole size.
  CommandResult result = DecideNodeCommand(request, node_.config(), RuntimeStatus());
  if (!result.change) return reply(result.response);
  if (clustered) {
    // What the cluster replicates goes through it, as the command typed it.
    if (std::optional<cluster::ConfigCommand> change = ReplicatedCommand(*result.change)) {
      // Committed through the leader; this node mirrors it once applied.
      admin::AdminResponse ok = result.response;
      node_.cluster()->Propose(*change, [this, ok, reply](const absl::Status& status) {
        if (!status.ok()) return reply(Error(status));
        node_.MirrorClusterConfig();
        reply(ok);
      });
      return;
    }
  }
  if (std::vector<NodeConfigEdit> edits; JournalEdits(*result.change, &edits)) {
    // Call bridges or users: journal records, durable before the answer.
    if (absl::Status saved = node_.CommitEdits(edits, request.args[0], true); !saved.ok()) {
      return reply({1, "error: the change was not saved: " + std::string(saved.message()) + "\n"});
    }
  } else if (std::holds_alternative<ResetConfig>(*result.change) && clustered) {
    NodeConfig proposed = node_.config();
    ApplyNodeChange(*result.change, &proposed);
    proposed.cluster_trust.clear();
    // reset --force on a member: it forgets its cluster identity too, once the reset is saved.
    absl::StatusOr<std::string> dir = node_.ForgetCluster(std::move(proposed), "reset");
    if (!dir.ok()) return reply(Error(dir.status()));
    result.response.output +=
        "The node left its cluster state behind (node id, Raft log, cluster key in " + *dir +
        "); it joins as a new node, with a token from a member (stanzactl cluster token)\n";
    return reply(result.response);
  } else {
    NodeConfig proposed = node_.config();
    ApplyNodeChange(*result.change, &proposed);
    if (absl::Status saved = node_.Commit(std::move(proposed), request.args[0]); !saved.ok()) {
      return reply({1, "error: the change was not saved: " + std::string(saved.message()) + "\n"});
    }
  }
  if (!engine_.not_serving_reason().empty() && node_.config().ReadyToServe()) {
    result.response.output += "warning: not serving: " + engine_.not_serving_reason() + "\n";
  }
  reply(result.response);
}

std::string AdminDispatcher::ApplyClusterTls() {
  if (node_.config().tls_certificate.empty() || node_.config().cluster_trust.empty()) {
    return "note: cluster links use mutual TLS once both 'stanzactl certs KEY CERT' and "
           "'stanzactl cluster trust BUNDLE' are set\n";
  }
  if (absl::Status opened = node_.OpenCluster(); !opened.ok()) {
    LogEvent(LogLevel::kError, "cluster_tls_failed",
             "reason=" + LogQuote(std::string(opened.message())));
    return "error: " + std::string(opened.message()) + "\n";
  }
  return "Cluster links now use mutual TLS (every member needs a certificate from this "
         "trust bundle)\n";
}

// `certs` shows this node's TLS files; `certs KEY CERT [BUNDLE]` checks and sets
// them (the seed's `xmpp certs`).
admin::AdminResponse AdminDispatcher::HandleCerts(const admin::AdminRequest& request) {
  const size_t n = request.args.size();
  if (n == 1) {
    if (node_.config().tls_certificate.empty()) {
      return {0, "No certificate (stanzactl certs KEY CERT [BUNDLE])\n"};
    }
    std::string out =
        "Key file           : " + node_.config().tls_key +
        "\nCertificate file   : " + node_.config().tls_certificate + "\nTrust bundle       : " +
        (node_.config().tls_bundle.empty() ? "(none)" : node_.config().tls_bundle) + "\n";
    absl::StatusOr<std::string> pem = tls::ReadPemFile(node_.config().tls_certificate);
    if (pem.ok()) {
      if (auto summary = tls::SummarizeCertificate(*pem); summary.ok()) {
        out += "Certificate        : " + summary->ToString() + "\n";
      }
    }
    return {0, out};
  }
  if (n != 3 && n != 4) return {2, "usage: stanzactl certs [KEY CERT [BUNDLE]]\n"};
  for (size_t i = 1; i < n; ++i) {
    if (request.args[i].empty() || request.args[i].front() != '/') {
      return {2, "error: give absolute paths (stanzactl makes them so)\n"};
    }
  }
  if (node_.config().domain.empty()) {
    return {1,
            "error: set the domain first (stanzactl domain example.com): the certificate "
            "must cover it\n"};
  }
  // Read as the daemon's user sees them (the packaged one is not root): a file it
  // cannot open gets the exact chown/chmod, or the unit setting that hides it.
  for (size_t i = 1; i < n; ++i) {
    if (absl::Status readable = CheckDaemonCanRead(request.args[i],
                                                   i == 1   ? "private key"
                                                   : i == 2 ? "certificate"
                                                            : "bundle",
                                                   i == 1);
        !readable.ok()) {
      return Error(readable);
    }
  }
  const std::string bundle = n == 4 ? request.args[3] : "";
  if (absl::Status checked =
          tls::CheckServerCertificateFiles(request.args[1], request.args[2], bundle,
                                           node_.config().domain, std::chrono::system_clock::now());
      !checked.ok()) {
    return Error(checked);
  }
  NodeConfig proposed = node_.config();
  proposed.tls_key = request.args[1];
  proposed.tls_certificate = request.args[2];
  proposed.tls_bundle = bundle;
  if (absl::Status saved = node_.Commit(proposed, "certs"); !saved.ok()) return Error(saved);
  std::string out = "Certificate accepted for " + node_.config().domain + "\n";
  absl::StatusOr<std::string> pem = tls::ReadPemFile(node_.config().tls_certificate);
  if (pem.ok()) {
    if (auto summary = tls::SummarizeCertificate(*pem); summary.ok()) {
      out += summary->ToString() + "\n";
    }
  }
  out += "New client connections use this certificate; connected clients keep theirs\n";
  out += ApplyClusterTls();
  return {0, out};
}

void AdminDispatcher::HandleCluster(const admin::AdminRequest& request,
                                    admin::AdminServer::Reply reply) {
  const std::string verb = request.args.size() > 1 ? request.args[1] : "";
  const uint16_t port = options_.cluster_port;
  const auto usage = [&] {
    reply({2,
           "usage: stanzactl cluster enable | disable | initialize | token [--ttl=SECONDS] | "
           "join HOST[:PORT] --token=TOKEN | remove NODE | status | trust BUNDLE | "
           "isolate IP... | isolate off\n"});
  };
  if (verb == "status") {
    if (request.args.size() != 2) return usage();
    cluster::ClusterStatus status = node_.cluster()->Status();
    CountDataLinks(&status);
    std::string out = request.json
                          ? ClusterStatusJson(status, node_.config(), node_.cluster_listening())
                          : ClusterStatusText(status, node_.config(), node_.cluster_listening());
    if (!request.json && !node_.cluster_tls_error().empty())
      out += "error: " + node_.cluster_tls_error() + "\n";
    return reply({0, out});
  }
  if (verb == "enable" || verb == "disable") {
    if (request.args.size() != 2) return usage();
    NodeConfig proposed = node_.config();
    proposed.cluster_enabled = verb == "enable";
    if (proposed.cluster_enabled && node_.config().listen.empty() &&
        options_.cluster_address.empty()) {
      return reply({1,
                    "error: set a listen address first (stanzactl listen IP): the cluster "
                    "port opens on the first one\n"});
    }
    if (proposed.cluster_enabled && node_.ClusterAddress().empty()) {
      return reply({1, "error: the first listen address (" + node_.config().listen.front() +
                           ") is a wildcard that other nodes cannot dial; start stanzad with "
                           "--cluster_address=THIS_NODE_IP (the address the other nodes "
                           "reach it at), or list that address first (stanzactl listen "
                           "IP)\n"});
    }
    if (absl::Status saved = node_.Commit(proposed, "cluster " + verb); !saved.ok()) {
      return reply(Error(saved));
    }
    if (node_.config().cluster_enabled) {
      if (!node_.cluster()->has_state() && node_.cluster()->address() != node_.ClusterAddress()) {
        if (absl::Status opened = node_.OpenCluster(); !opened.ok()) return reply(Error(opened));
      } else {
        node_.ListenCluster();
      }
      if (!node_.cluster_listening()) {
        return reply({1, "error: cluster enabled but the cluster port " + node_.ClusterAddress() +
                             " could not be opened (see the log); is it taken?\n"});
      }
      return reply({0, "Cluster enabled; cluster port " + node_.ClusterAddress() + "\n"});
    }
    node_.DisconnectCluster();
    return reply({0, std::string("Cluster disabled") +
                         (node_.cluster()->is_member()
                              ? "; this node is still a member: the others see it as down "
                                "until 'cluster enable' (or remove it: cluster remove " +
                                    node_.cluster()->address() + ")\n"
                              : "\n")});
  }
  if (verb == "trust") {
    if (request.args.size() != 3) return usage();
    const std::string& path = request.args[2];
    if (absl::Status readable = CheckDaemonCanRead(path, "trust bundle", false); !readable.ok()) {
      return reply(Error(readable));
    }
    NodeConfig proposed = node_.config();
    proposed.cluster_trust = path;
    if (absl::Status saved = node_.Commit(proposed, "cluster trust"); !saved.ok()) {
      return reply(Error(saved));
    }
    return reply({0, "Trust bundle set: " + path + "\n" + ApplyClusterTls()});
  }
  if (!node_.config().cluster_enabled) {
    return reply({1,
                  "error: the cluster is not enabled on this node: run 'stanzactl cluster "
                  "enable' first\n"});
  }
  if (verb == "initialize") {
    if (request.args.size() != 2) return usage();
    if (node_.config().domain.empty()) {
      return reply({1, "error: set the domain first (stanzactl domain example.com)\n"});
    }
    std::vector<cluster::ConfigCommand> seed = {cluster::SetDomain{node_.config().domain},
                                                cluster::SetSaltKey{node_.salt_key()}};
    // The bridges and users in batches, as an import sends them (one Raft entry each).
    for (const auto& [name, secret] : node_.config().callbridges) {
      if (!std::holds_alternative<cluster::ImportCallbridges>(seed.back()) ||
          std::get<cluster::ImportCallbridges>(seed.back()).bridges.size() == kSeedBatchItems) {
        seed.push_back(cluster::ImportCallbridges{});
      }
      std::get<cluster::ImportCallbridges>(seed.back()).bridges.push_back({name, secret, false});
    }
    for (const auto& [name, credentials] : node_.config().users) {
      if (!std::holds_alternative<cluster::ImportUsers>(seed.back()) ||
          std::get<cluster::ImportUsers>(seed.back()).users.size() == kSeedBatchItems) {
        seed.push_back(cluster::ImportUsers{});
      }
      std::get<cluster::ImportUsers>(seed.back()).users.push_back({name, credentials});
    }
    // Checked whole first: a seed refused half way would leave the cluster, and so this
    // node's mirror of it, with part of the node's configuration.
    {
      cluster::ConfigStateMachine check;
      raft::Index index = 0;
      for (const cluster::ConfigCommand& command : seed) {
        absl::Status status = check.Apply(raft::Entry{1, ++index, raft::EntryType::kNormal,
                                                      cluster::EncodeConfigCommand(command)});
        if (!status.ok()) {
          return reply({1, "error: this node's configuration cannot become the cluster's: " +
                               std::string(status.message()) +
                               "; fix it (stanzactl callbridge del NAME, user del NAME) and "
                               "initialize again\n"});
        }
      }
    }
    const size_t bridges = node_.config().callbridges.size();
    node_.cluster()->Initialize(
        std::move(seed), [this, reply, bridges](const absl::Status& status) {
          if (!status.ok()) return reply(Error(status));
          node_.MirrorClusterConfig();
          const std::string made =
              "Cluster initialized with this node (" + node_.cluster()->address() +
              ") as its only member and leader; domain " + node_.config().domain + " and " +
              std::to_string(bridges) + (bridges == 1 ? " call bridge is" : " call bridges are") +
              " now the cluster's.\n";
          // The first join token, so that the operator's next step is one command.
          node_.cluster()->CreateJoinToken(
              kJoinTokenTtlSDefault,
              [this, reply, made](const absl::StatusOr<cluster::JoinToken>& token) {
                if (!token.ok()) {
                  return reply({0, made + "warning: no join token made (" +
                                       std::string(token.status().message()) +
                                       "); make one with: stanzactl cluster token\n"});
                }
                reply({0, made + JoinInstructions(*token, kJoinTokenTtlSDefault)});
              });
        });
    return;
  }
  if (verb == "token") {
    uint64_t ttl_s = kJoinTokenTtlSDefault;
    for (size_t i = 2; i < request.args.size(); ++i) {
      const std::string& arg = request.args[i];
      if (!arg.starts_with("--ttl=") || !absl::SimpleAtoi(arg.substr(6), &ttl_s) || ttl_s == 0 ||
          ttl_s > 7 * 24 * 3600) {
        return reply({2,
                      "usage: stanzactl cluster token [--ttl=SECONDS] (1 to 604800; default "
                      "3600)\n"});
      }
    }
    if (!node_.cluster()->is_member()) {
      return reply({1,
                    "error: this node is not a member of a cluster: make the tokens on a "
                    "member ('stanzactl cluster status' shows whether this node is one)\n"});
    }
    node_.cluster()->CreateJoinToken(
        ttl_s, [this, reply, ttl_s](const absl::StatusOr<cluster::JoinToken>& token) {
          if (!token.ok()) return reply(Error(token.status()));
          reply({0, JoinInstructions(*token, ttl_s)});
        });
    return;
  }
  if (verb == "join") {
    std::vector<std::string> words;
    std::optional<cluster::JoinToken> token;
    for (size_t i = 2; i < request.args.size(); ++i) {
      const std::string& arg = request.args[i];
      if (!arg.starts_with("--token=")) {
        words.push_back(arg);
        continue;
      }
      absl::StatusOr<cluster::JoinToken> parsed = cluster::ParseJoinToken(arg.substr(8));
      if (!parsed.ok()) return reply({2, "error: --token: " + parsed.status().ToString() + "\n"});
      token = *parsed;
    }
    if (words.size() != 1) return usage();
    if (!token) {
      return reply({2,
                    "error: joining needs a member's approval: on a member run 'stanzactl "
                    "cluster token', then here: stanzactl cluster join " +
                        words[0] + " --token=TOKEN\n"});
    }
    absl::StatusOr<std::string> address = ClusterAddressOf(words[0], port);
    if (!address.ok()) return reply(Error(address.status()));
    if (*address == node_.cluster()->address()) {
      return reply({1, "error: that is this node's own address; join another member\n"});
    }
    const std::map<std::string, std::string> local = node_.config().callbridges;
    node_.cluster()->Join(
        *address, *token, [this, reply, local, address](const absl::Status& status) {
          if (!status.ok()) return reply(Error(status));
          node_.MirrorClusterConfig();
          std::string out = "Joined the cluster through " + *address + "; leader " +
                            node_.cluster()->Status().leader_address + "\n";
          // Bridges this node had: the cluster's secrets win; those it lacks are added.
          for (const auto& [name, secret] : local) {
            auto it = node_.cluster()->config().callbridges.find(name);
            if (it == node_.cluster()->config().callbridges.end()) {
              node_.cluster()->Propose(cluster::AddCallbridge{name, secret, false},
                                       [](const absl::Status&) {});
              out += "callbridge " + name + ": added to the cluster\n";
            } else if (it->second.secret != secret) {
              out += "warning: callbridge " + name +
                     " has a different secret on the cluster; the cluster's is kept (change it "
                     "with: stanzactl callbridge add-secret " +
                     name + " --force)\n";
            }
          }
          reply({0, out});
        });
    return;
  }
  if (verb == "isolate") {
    // A drill for failover and partition tests: this node's cluster and data links
    // to and from these hosts are cut until 'isolate off' or a restart.
    if (request.args.size() < 3) return usage();
    std::set<std::string> hosts;
    if (!(request.args.size() == 3 && request.args[2] == "off")) {
      for (size_t i = 2; i < request.args.size(); ++i) {
        std::string host = request.args[i];
        if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
          host = host.substr(1, host.size() - 2);
        }
        in6_addr parsed{};
        char text[INET6_ADDRSTRLEN] = "";
        const int family = inet_pton(AF_INET, host.c_str(), &parsed) == 1    ? AF_INET
                           : inet_pton(AF_INET6, host.c_str(), &parsed) == 1 ? AF_INET6
                                                                             : 0;
        if (family == 0 || inet_ntop(family, &parsed, text, sizeof(text)) == nullptr) {
          return reply({2, "error: '" + request.args[i] +
                               "' is not an IP address; usage: stanzactl cluster isolate "
                               "IP [IP...] | isolate off\n"});
        }
        hosts.insert(text);  // as the transport writes addresses
      }
    }
    const std::string list = absl::StrJoin(hosts, ",");
    node_.cluster()->IsolateFrom(hosts);
    LogEvent(hosts.empty() ? LogLevel::kInfo : LogLevel::kWarning, "cluster_isolated",
             "hosts=" + (hosts.empty() ? std::string("none") : list));
    return reply({0, hosts.empty() ? "Cluster links restored\n"
                                   : "Cluster links to and from " + list +
                                         " cut (a drill: 'stanzactl cluster isolate off' or "
                                         "a restart ends it)\n"});
  }
  if (verb == "remove") {
    if (request.args.size() != 3) return usage();
    const cluster::RemoveTarget target = ParseRemoveTarget(request.args[2], port);
    node_.cluster()->Remove(target, [reply, name = request.args[2]](const absl::Status& status) {
      if (!status.ok()) return reply(Error(status));
      reply({0, "Removed " + name + " from the cluster\n"});
    });
    return;
  }
  usage();
}

NodeRuntimeStatus AdminDispatcher::RuntimeStatus() const {
  NodeRuntimeStatus status;
  status.version = kStanzadVersion;
  status.uptime_s = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count());
  status.serving = engine_.serving();
  status.not_serving_reason = engine_.not_serving_reason();
  // Without a certificate the TLS ports are open but serve no one (a STARTTLS
  // client is told why in its stream): status must not read as if they worked.
  const bool tls_ready = engine_.router_config().Current()->client_tls != nullptr;
  if (!tls_ready && engine_.serving()) {
    status.tls_refused_reason =
        node_.config().tls_certificate.empty()
            ? "this node has no certificate"
            : "its certificate files do not load: event=client_tls_unavailable in the log";
  }
  if (engine_.serving()) {
    const std::vector<net::Endpoint> endpoints = engine_.engine()->listening_endpoints();
    for (size_t i = 0; i < endpoints.size() && i < engine_.listener_tags().size(); ++i) {
      const int tag = engine_.listener_tags()[i];
      const bool data = tag == cluster::kClusterDataListener;
      std::string what = tag == router::kComponentListener      ? " (call bridges"
                         : tag == router::kComponentTlsListener ? " (call bridges, TLS"
                         : tag == router::kClientListener       ? " (clients, STARTTLS"
                         : data                                 ? " (cluster data links"
                                                                : " (clients, direct TLS";
      if (!tls_ready && tag != router::kComponentListener && !data) {
        what += ": refused, no certificate";
      }
      status.listeners.push_back(endpoints[i].ToString() + what + ")");
    }
  }
  for (int i = 0; i < engine_.shards(); ++i) {
    const router::RouterShardStats& s = engine_.router_stats()[static_cast<size_t>(i)];
    status.connections_open += s.connections_open.load(std::memory_order_relaxed);
    status.bridges_connected += s.bridges_connected.load(std::memory_order_relaxed);
    status.clients_connected += s.clients_connected.load(std::memory_order_relaxed);
    status.stanzas_routed += s.stanzas_routed.load(std::memory_order_relaxed);
    status.stanzas_answered += s.stanzas_answered.load(std::memory_order_relaxed);
    status.stanzas_bounced += s.stanzas_bounced.load(std::memory_order_relaxed);
    status.auth_failures += s.auth_failures.load(std::memory_order_relaxed);
    status.stream_errors += s.stream_errors.load(std::memory_order_relaxed);
  }
  status.recent_problems = RecentProblems();
  if (node_.cluster() != nullptr && node_.cluster()->has_state()) {
    const cluster::ClusterStatus cluster = node_.cluster()->Status();
    std::string role = cluster.role == raft::Role::kLeader     ? "LEADER"
                       : cluster.role == raft::Role::kFollower ? "FOLLOWER"
                                                               : "CANDIDATE";
    status.cluster = role + ", " + std::to_string(cluster.members.size()) + " members, leader " +
                     (cluster.leader_address.empty() ? "unknown" : cluster.leader_address);
    if (const std::string problem = node_.ClusterProblem(cluster); !problem.empty()) {
      status.cluster += "; " + problem;
    }
  } else if (node_.cluster() == nullptr) {
    status.cluster = "error: " + node_.ClusterStoreProblem();
  } else {
    status.cluster = node_.config().cluster_enabled ? "enabled, not in a cluster yet"
                                                    : "not clustered (single node)";
  }
  return status;
}

}  // namespace stanzad::server
