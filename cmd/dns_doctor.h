// `stanzactl doctor dns DOMAIN`: checks the DNS records call bridges and clients
// use to find the cluster (the seed's troubleshooting scenario 1, "XMPP connection
// failed due to DNS error"):
//   - _xmpp-component._tcp.DOMAIN and _xmpp-client._tcp.DOMAIN have SRV records;
//   - every SRV target resolves to an A or AAAA address;
//   - every cluster member (when the local daemon is in a cluster) is a target;
//   - the SRV ports match the node's listeners (--component_port, --c2s_port).
// Each problem is printed with its fix.
//
// DnsAnswers is what was looked up; Diagnose() is pure (unit-tested); Lookup() asks
// a DNS server with c-ares (the system's, or --dns_server=IP[:PORT]).
#ifndef STANZAD_CMD_DNS_DOCTOR_H_
#define STANZAD_CMD_DNS_DOCTOR_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace stanzad {

struct SrvRecord {
  uint16_t priority = 0;
  uint16_t weight = 0;
  uint16_t port = 0;
  std::string target;
};

struct DnsAnswers {
  // The DNS server(s) asked, as an operator names them: "IP:PORT" of --dns_server,
  // or the system's (/etc/resolv.conf).
  std::string server;
  // Why no answer came back from `server` at all (it timed out, or the port is
  // closed), when that is so: nothing else was learnt. Empty when it answered.
  std::string server_unreachable;
  // By service ("_xmpp-component._tcp"): its records, or why there are none:
  // srv_error when the server answered without records (no such name, no SRV
  // data), srv_server_failure when it answered with an error of its own
  // (SERVFAIL, REFUSED: it could not or would not look the name up).
  std::map<std::string, std::vector<SrvRecord>> srv;
  std::map<std::string, std::string> srv_error;
  std::map<std::string, std::string> srv_server_failure;
  // By target name: its addresses (empty when it does not resolve).
  std::map<std::string, std::vector<std::string>> addresses;
};

struct NodeFacts {
  uint16_t component_port = 5223;
  uint16_t c2s_port = 5222;
  bool c2s_served = false;  // the node has a STARTTLS client listener
  // Why that listener refuses every client for now ("this node has no certificate");
  // empty when it serves them. The records can be right all the same: a note.
  std::string c2s_refused_reason;
  std::vector<std::string> member_ips;  // the cluster's members (IPs), if any
};

struct Diagnosis {
  std::vector<std::string> ok;        // "ok: ..."
  std::vector<std::string> problems;  // "problem: ... fix: ..."
  std::string Text() const;
};

Diagnosis Diagnose(const std::string& domain, const DnsAnswers& answers, const NodeFacts& facts);

// The node's facts from its `status --json` (NodeRuntimeStatus): the ports of its
// "listeners" ("127.0.0.1:5222 (clients, STARTTLS: refused, no certificate)") and
// "tls_refused_reason". What the text does not say keeps NodeFacts' default;
// member_ips are left empty (they come from `cluster status`).
NodeFacts NodeFactsFromStatusJson(std::string_view json);

// Looks up both SRV names and every target's A and AAAA records. `server`:
// "" for the system's resolvers, or "IP[:PORT]". Each query is bounded (2 s,
// 2 tries). A server that does not answer is an answer too (server_unreachable),
// so that Diagnose names it instead of missing records.
absl::StatusOr<DnsAnswers> LookupXmppDns(const std::string& domain, const std::string& server);

}  // namespace stanzad

#endif  // STANZAD_CMD_DNS_DOCTOR_H_
