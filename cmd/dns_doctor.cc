#include "cmd/dns_doctor.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <sys/select.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "core/base/concat.h"
#include "core/base/decimal.h"

namespace stanzad {
namespace {

// IP, IP:PORT, [IPv6] or [IPv6]:PORT, port 1-65535: c-ares takes much else silently
// (junk becomes [::]:53, port 70000 is kept).
bool IsServerAddress(std::string_view server) {
  std::string host(server);
  std::string_view port;
  if (!server.empty() && server.front() == '[') {
    const size_t close = server.find(']');
    if (close == std::string_view::npos) return false;
    host = std::string(server.substr(1, close - 1));
    const std::string_view rest = server.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
      if (port.empty()) return false;
    }
    in6_addr v6{};
    if (inet_pton(AF_INET6, host.c_str(), &v6) != 1) return false;
  } else if (const size_t colon = server.find(':');
             colon != std::string_view::npos &&
             server.find(':', colon + 1) == std::string_view::npos) {
    host = std::string(server.substr(0, colon));
    port = server.substr(colon + 1);
    if (port.empty()) return false;
    in_addr v4{};
    if (inet_pton(AF_INET, host.c_str(), &v4) != 1) return false;
  } else {
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, host.c_str(), &v4) != 1 && inet_pton(AF_INET6, host.c_str(), &v6) != 1) {
      return false;
    }
  }
  if (port.empty()) return true;
  const std::optional<uint16_t> number = ParseDecimal<uint16_t>(port);
  return number && *number >= 1;
}

constexpr const char* kComponent = "_xmpp-component._tcp";
constexpr const char* kClient = "_xmpp-client._tcp";

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!text.empty() && text.back() == '.') text.pop_back();
  return text;
}

// Runs c-ares until every query on `channel` is answered.
void Wait(ares_channel channel) {
  while (true) {
    fd_set read_fds, write_fds;
    FD_ZERO(&read_fds);
    FD_ZERO(&write_fds);
    const int nfds = ares_fds(channel, &read_fds, &write_fds);
    if (nfds == 0) return;
    timeval wait{};
    timeval* timeout = ares_timeout(channel, nullptr, &wait);
    select(nfds, &read_fds, &write_fds, nullptr, timeout);
    ares_process(channel, &read_fds, &write_fds);
  }
}

constexpr int kQueryTimeoutMs = 2000;
constexpr int kQueryTries = 2;

struct SrvResult {
  // Set before the query: whether c-ares passes a SERVFAIL or REFUSED answer on
  // (ARES_FLAG_NOCHECKRESP) instead of trying the next server and, when none is
  // left, reporting ECONNREFUSED as if nothing had answered.
  bool answers_checked_here = false;
  std::vector<SrvRecord> records;
  std::string error;           // answered, without records
  std::string server_failure;  // answered with SERVFAIL or REFUSED
  std::string unreachable;     // no answer at all
};

void OnSrv(void* arg, int status, int /*timeouts*/, unsigned char* answer, int length) {
  auto* result = static_cast<SrvResult*>(arg);
  if (status == ARES_ETIMEOUT) {
    result->unreachable = Concat("no answer (timed out, ", std::to_string(kQueryTries), " tries)");
    return;
  }
  if (status == ARES_ECONNREFUSED) {
    result->unreachable = result->answers_checked_here
                              ? "connection refused (nothing listens on that address and port)"
                              : "connection refused, or every server refused or failed the query";
    return;
  }
  if (status == ARES_ESERVFAIL || status == ARES_EREFUSED) {
    result->server_failure = ares_strerror(status);
    return;
  }
  if (status != ARES_SUCCESS) {
    result->error = ares_strerror(status);
    return;
  }
  ares_srv_reply* replies = nullptr;
  const int parsed = ares_parse_srv_reply(answer, length, &replies);
  if (parsed != ARES_SUCCESS) {
    result->error = ares_strerror(parsed);
    return;
  }
  for (ares_srv_reply* reply = replies; reply != nullptr; reply = reply->next) {
    result->records.push_back({reply->priority, reply->weight, reply->port, Lower(reply->host)});
  }
  ares_free_data(replies);
}

void OnHost(void* arg, int status, int /*timeouts*/, hostent* host) {
  auto* addresses = static_cast<std::vector<std::string>*>(arg);
  if (status != ARES_SUCCESS || host == nullptr) return;
  char text[INET6_ADDRSTRLEN];
  for (char** address = host->h_addr_list; *address != nullptr; ++address) {
    if (inet_ntop(host->h_addrtype, *address, text, sizeof(text)) != nullptr) {
      addresses->push_back(text);
    }
  }
}

// The JSON string that starts at json[*at] (its opening quote), unescaped (JsonString's
// escapes); *at ends past its closing quote. Empty, *at at the end, if there is none.
std::string ReadJsonString(std::string_view json, size_t* at) {
  std::string text;
  if (*at >= json.size() || json[*at] != '"') {
    *at = json.size();
    return text;
  }
  for (++*at; *at < json.size(); ++*at) {
    char c = json[*at];
    if (c == '"') {
      ++*at;
      return text;
    }
    if (c == '\\' && *at + 1 < json.size()) {
      c = json[++*at];
      c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
    }
    text.push_back(c);
  }
  return text;
}

}  // namespace

NodeFacts NodeFactsFromStatusJson(std::string_view json) {
  NodeFacts facts;
  // "listeners":["127.0.0.1:5223 (call bridges)","[::1]:5222 (clients, STARTTLS)"]
  constexpr std::string_view kListeners = "\"listeners\":[";
  size_t at = json.find(kListeners);
  at = at == std::string_view::npos ? json.size() : at + kListeners.size();
  while (at < json.size() && json[at] == '"') {
    const std::string entry = ReadJsonString(json, &at);
    if (at < json.size() && json[at] == ',') ++at;
    const size_t paren = entry.find(" (");
    const size_t colon = entry.rfind(':', paren);
    if (paren == std::string::npos || colon == std::string::npos) continue;
    const auto port = static_cast<uint16_t>(std::atoi(entry.c_str() + colon + 1));
    // "(clients, STARTTLS)", or "(clients, STARTTLS: refused, no certificate)"
    const std::string_view what = std::string_view(entry).substr(paren + 2);
    if (what.starts_with("call bridges")) {
      facts.component_port = port;
    } else if (what.starts_with("clients, STARTTLS)") || what.starts_with("clients, STARTTLS:")) {
      facts.c2s_port = port;
      facts.c2s_served = true;
    }
  }
  constexpr std::string_view kReason = "\"tls_refused_reason\":";
  if (const size_t found = json.find(kReason); found != std::string_view::npos) {
    size_t reason_at = found + kReason.size();
    facts.c2s_refused_reason = ReadJsonString(json, &reason_at);
  }
  return facts;
}

std::string Diagnosis::Text() const {
  std::string out;
  for (const std::string& line : ok) out += "ok: " + line + "\n";
  for (const std::string& line : problems) out += "problem: " + line + "\n";
  out += problems.empty() ? "No problems found\n"
                          : Concat(std::to_string(problems.size()), " problem",
                                   problems.size() == 1 ? "" : "s", " found\n");
  return out;
}

Diagnosis Diagnose(const std::string& domain, const DnsAnswers& answers, const NodeFacts& facts) {
  Diagnosis result;
  if (!answers.server_unreachable.empty()) {
    // Nothing was learnt about the records: saying they are missing would send the
    // operator to edit a zone that may be right.
    result.problems.push_back(Concat(
        "cannot reach the DNS server ", answers.server, ": ", answers.server_unreachable,
        "; the records were not checked. fix: point --dns_server=IP[:PORT] at a DNS "
        "server that serves ",
        domain, " (or, without --dns_server, fix the nameserver lines of /etc/resolv.conf)"));
    return result;
  }
  std::set<std::string> target_ips;
  for (const char* service : {kComponent, kClient}) {
    const std::string name = Concat(service, ".", domain);
    const bool component = std::string(service) == kComponent;
    const uint16_t expected_port = component ? facts.component_port : facts.c2s_port;
    auto found = answers.srv.find(service);
    if (auto failure = answers.srv_server_failure.find(service);
        failure != answers.srv_server_failure.end() &&
        (found == answers.srv.end() || found->second.empty())) {
      result.problems.push_back(
          Concat("the DNS server ", answers.server, " could not look up ", name, " (",
                 failure->second, "). fix: ask it for ", domain,
                 " where it is served (--dns_server=IP[:PORT] of a server for the zone), or let "
                 "it resolve for this host"));
      continue;
    }
    if (found == answers.srv.end() || found->second.empty()) {
      auto error = answers.srv_error.find(service);
      result.problems.push_back(Concat(
          "no SRV records for ", name,
          error != answers.srv_error.end() ? " (" + error->second + ")" : "",
          component ? " — call bridges that leave 'Server address' empty cannot find the cluster"
                    : " — clients cannot find the cluster",
          ". fix: add one record per node, e.g. '", name, ". 86400 IN SRV 0 0 ",
          std::to_string(expected_port), " xmpp1.", domain, ".'"));
      continue;
    }
    result.ok.push_back(Concat(name, ": ", std::to_string(found->second.size()), " SRV record",
                               found->second.size() == 1 ? "" : "s"));
    for (const SrvRecord& record : found->second) {
      auto addresses = answers.addresses.find(record.target);
      if (addresses == answers.addresses.end() || addresses->second.empty()) {
        result.problems.push_back(Concat(name, " names ", record.target,
                                         ", which has no A or AAAA record (the seed's \"No DNS A "
                                         "or AAAA records\"). fix: add an A (or AAAA) record for ",
                                         record.target, " with that node's address"));
      } else {
        for (const std::string& ip : addresses->second) {
          if (component) target_ips.insert(ip);
        }
        result.ok.push_back(Concat(record.target, " resolves to ", [&] {
          std::string list;
          for (const std::string& ip : addresses->second) {
            list += (list.empty() ? "" : ", ") + ip;
          }
          return list;
        }()));
      }
      if (record.port != expected_port) {
        result.problems.push_back(
            Concat(name, " sends ", record.target, " to port ", std::to_string(record.port),
                   " but this node listens on ", std::to_string(expected_port), " for ",
                   component ? "call bridges" : "clients", ". fix: make the record's port ",
                   std::to_string(expected_port), " (or start stanzad with --",
                   component ? "component_port=" : "c2s_port=", std::to_string(record.port), ")"));
      }
    }
    if (!component && !facts.c2s_served) {
      result.ok.push_back(Concat(name, " is set; note: this stanzad does not serve clients yet"));
    } else if (!component && !facts.c2s_refused_reason.empty()) {
      result.ok.push_back(Concat(name,
                                 " is set; note: this stanzad refuses clients until a certificate "
                                 "is set with stanzactl certs KEY CERT [BUNDLE] (",
                                 facts.c2s_refused_reason, ")"));
    }
  }
  for (const std::string& member : facts.member_ips) {
    if (answers.srv.count(kComponent) != 0 && !answers.srv.at(kComponent).empty() &&
        target_ips.count(member) == 0) {
      result.problems.push_back(
          Concat("cluster member ", member, " is not a target of ", kComponent, ".", domain,
                 ": bridges cannot fail over to it. fix: add an SRV record naming a host whose A "
                 "record is ",
                 member));
    }
  }
  if (!facts.member_ips.empty() && answers.srv.count(kComponent) != 0) {
    bool all = true;
    for (const std::string& member : facts.member_ips) all = all && target_ips.count(member) != 0;
    if (all) {
      result.ok.push_back(Concat("every cluster member (", std::to_string(facts.member_ips.size()),
                                 ") is a target of ", kComponent));
    }
  }
  return result;
}

absl::StatusOr<DnsAnswers> LookupXmppDns(const std::string& domain, const std::string& server) {
  static const int initialized = ares_library_init(ARES_LIB_INIT_ALL);
  if (initialized != ARES_SUCCESS) return absl::InternalError("c-ares did not initialise");
  ares_options options{};
  options.timeout = kQueryTimeoutMs;
  options.tries = kQueryTries;
  // The servers the operator named: what each answers is reported as it is. The
  // system's: a failing one is skipped for the next, as every resolver does.
  const bool answers_checked_here = !server.empty();
  options.flags = answers_checked_here ? ARES_FLAG_NOCHECKRESP : 0;
  ares_channel channel = nullptr;
  if (const int status = ares_init_options(&channel, &options,
                                           ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS);
      status != ARES_SUCCESS) {
    return absl::UnavailableError(Concat("cannot start the DNS resolver: ", ares_strerror(status)));
  }
  if (!server.empty()) {
    if (!IsServerAddress(server)) {
      ares_destroy(channel);
      return absl::InvalidArgumentError(
          Concat("--dns_server '", server,
                 "' is not an address: use IP, IP:PORT, [IPv6] or [IPv6]:PORT (port 1-65535)"));
    }
    if (const int status = ares_set_servers_ports_csv(channel, server.c_str());
        status != ARES_SUCCESS) {
      ares_destroy(channel);
      return absl::InvalidArgumentError(
          Concat("--dns_server '", server, "': ", ares_strerror(status), " (use IP or IP:PORT)"));
    }
  }
  DnsAnswers answers;
  answers.server = server;
  if (answers.server.empty()) {
    ares_addr_port_node* servers = nullptr;
    if (ares_get_servers_ports(channel, &servers) == ARES_SUCCESS) {
      char text[INET6_ADDRSTRLEN];
      for (ares_addr_port_node* node = servers; node != nullptr; node = node->next) {
        if (inet_ntop(node->family, &node->addr, text, sizeof(text)) == nullptr) continue;
        const int port = node->udp_port != 0 ? node->udp_port : 53;
        answers.server +=
            Concat(answers.server.empty() ? "" : ", ", text, ":", std::to_string(port));
      }
      ares_free_data(servers);
    }
    answers.server = Concat(answers.server.empty() ? "(none)" : answers.server,
                            " (the system's, from /etc/resolv.conf)");
  }
  SrvResult results[2];
  const char* services[2] = {kComponent, kClient};
  for (int i = 0; i < 2; ++i) {
    results[i].answers_checked_here = answers_checked_here;
    const std::string name = Concat(services[i], ".", domain);
    ares_query(channel, name.c_str(), ns_c_in, ns_t_srv, OnSrv, &results[i]);
  }
  Wait(channel);
  std::set<std::string> targets;
  // Both queries went to the same server: when neither got an answer it is unreachable;
  // one lost answer of two is that name's failure.
  if (!results[0].unreachable.empty() && !results[1].unreachable.empty()) {
    answers.server_unreachable = results[0].unreachable;
  }
  for (int i = 0; i < 2; ++i) {
    if (!results[i].unreachable.empty() && results[i].server_failure.empty()) {
      results[i].server_failure = results[i].unreachable;
    }
    answers.srv[services[i]] = results[i].records;
    if (!results[i].error.empty()) answers.srv_error[services[i]] = results[i].error;
    if (!results[i].server_failure.empty()) {
      answers.srv_server_failure[services[i]] = results[i].server_failure;
    }
    for (const SrvRecord& record : results[i].records) targets.insert(record.target);
  }
  if (!answers.server_unreachable.empty()) {
    ares_destroy(channel);
    return answers;
  }
  for (const std::string& target : targets) {
    std::vector<std::string>& addresses = answers.addresses[target];
    ares_gethostbyname(channel, target.c_str(), AF_INET, OnHost, &addresses);
    ares_gethostbyname(channel, target.c_str(), AF_INET6, OnHost, &addresses);
  }
  Wait(channel);
  ares_destroy(channel);
  for (auto& [target, addresses] : answers.addresses) {
    std::sort(addresses.begin(), addresses.end());
    addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  }
  return answers;
}

}  // namespace stanzad
