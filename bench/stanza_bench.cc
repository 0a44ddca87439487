// stanza-bench: N call bridges as XEP-0114 components on one epoll thread,
// driving a server on loopback. Bridge i sends messages to bridge (i+1) % N.
//
//   stanzactl --state_dir=DIR --json callbridge list > secrets.json
//   stanza-bench --server=127.0.0.1:5223 --secrets_json=secrets.json --bridges=20
//
// Modes (--mode):
//   throughput  each bridge keeps --window messages in flight; a message counts
//               when its receiver has it. Stanzas/s over --duration_s after
//               --warmup_s, per-bridge min and max, then a drain of at most
//               --drain_s and the ids lost, duplicated or bounced with an error
//               (bounced_but_delivered: bounced, yet the receiver got it too).
//   latency     open loop at --rate stanzas/s in all (round robin over the
//               bridges); latency is measured from the time each message was
//               due, so a stall is not hidden (no coordinated omission);
//               p50/p90/p99/p999/max of the messages due in the window.
//   idle        connect and authenticate the bridges, then hold them for
//               --hold_s; with --server_pid, the server's VmRSS growth divided
//               by the number of bridges.
//
// Failover (--failover): --server takes a list (HOST:PORT,HOST:PORT,...) or
// --srv=DOMAIN resolves _xmpp-component._tcp.DOMAIN (c-ares, --dns_server) and
// orders the targets as RFC 2782 says (priority, then a weighted random order per
// bridge). A bridge whose connection drops reconnects to the next target and
// authenticates again; the report says how many reconnected, how long they were
// without a server (median and max over the failovers, and down_ms_by_bridge: in
// all, per bridge), and what was lost. Use it with --mode=latency
// (open loop): a bridge that is down sends nothing until it is back.
//
// --protocol=relay talks to bench/tcp_relay instead of an XMPP server: no
// stream or handshake, a 12-byte hello ("SBRL", index, count) per connection,
// then the same message bytes, forwarded without parsing. It is the baseline
// for what loopback and this client can do.
//
// Message ids are "SEQ-DUE_NS": the sender's sequence number and the time the
// message was due. Each sender/receiver pair is one ordered path, so a
// sequence number below the expected one is a duplicate and one above it means
// the ones between were lost.
//
// Throughput and latency modes also report max_delivery_gap_ms: the longest
// time in the measuring window (from the end of warm-up to the end of
// --duration_s, both ends included) without any bridge receiving one of the
// bench's messages (error replies and duplicates do not count). A stall of the
// whole cluster shows up there even when few messages are lost.
//
// --kill_pid=PID --kill_at_s=T: SIGKILLs PID (a cluster node) T seconds into
// the measuring window and reports kill_to_flow_ms: from the kill until the
// first delivery of a message that was due after it, i.e. until new traffic
// flows end to end again (null if none did before the drain ended). With
// --failover, lost messages are also split by path (sender -> receiver):
// paths where either bridge had to reconnect, and steady paths where neither did.
//
// Before measuring (xmpp, throughput and latency modes), each bridge sends one
// message (id 'route-N') to the next until every one has arrived, at most 10 s:
// in a cluster a bridge's route takes a moment to reach every node, and a
// stanza sent before would come back as an error that says nothing of the run.
//
// Connecting: sockets are non-blocking, and at most --connecting_max bridges
// are between their connect() and their <handshake/> at once (0: no cap), so
// the first ones authenticate while the rest still connect. Past ~20,000
// connections one source address runs out of ephemeral ports toward one server
// address, so bridge i binds (IP_BIND_ADDRESS_NO_PORT) to source address
// i % --source_ips, taken from 127.2.0.1, 127.2.0.2, ... (last octet 1-254,
// then 127.2.1.1, ...); --source_ips=0 (the default) uses 127.0.0.1's
// automatic choice up to 20,000 bridges and one address per 20,000 above it;
// --source_ip_first=K starts at address K instead (several processes, each
// with addresses of its own).
// Raises RLIMIT_NOFILE to --bridges + 1,000 (the hard limit too, where the
// process may: CAP_SYS_RESOURCE), or says why it cannot.
//
// A connect that fails (refused, reset, closed or ended by a stream error
// before <handshake/>, or not authenticated within --handshake_timeout_s) is
// retried on the bridge's next target after a backoff: --retry_backoff_ms,
// doubling up to --retry_backoff_max_ms, each drawn at random from 50% to 150%
// of that (jitter, so refused bridges do not return in lockstep). After
// --retries_max failures in a row the bridge gives up (bridges_gave_up: refused
// for good). A bridge whose authenticated connection drops reconnects at once.
// A wrong secret (<not-authorized/>, <host-unknown/>) is fatal.
//
// With --failover the report also describes the reconnect storm (storm_*):
// from the kill (or the first drop) until the last bridge was back, the TCP
// connects and handshakes completed per second (mean over the storm and the
// best 100 ms), the attempts that failed and why; and in latency mode
// flow_by_s: per second of due time [messages due, delivered] from the start
// of the measuring window, to see when stanzas flow again.
//
// Prints one JSON line, including the client's CPU use (bench_was_bottleneck
// when its thread was >= 90% busy). Every run is bounded by warm-up, duration,
// drain and hold plus --ready_timeout_s (60) for connecting.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <queue>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cmd/dns_doctor.h"
#include "core/xmpp/component_handshake.h"

namespace {

enum class Mode { kThroughput, kLatency, kIdle };
enum class Protocol { kXmpp, kRelay };

struct Options {
  std::string server = "127.0.0.1:5223";
  std::string secrets_json;
  Mode mode = Mode::kThroughput;
  Protocol protocol = Protocol::kXmpp;
  int bridges = 20;
  int window = 32;
  int payload_bytes = 100;
  double duration_s = 10;
  double warmup_s = 2;
  double drain_s = 3;
  double rate = 100000;
  double hold_s = 0;
  int server_pid = 0;
  bool failover = false;
  std::string srv_domain;  // --srv
  std::string dns_server;  // --dns_server
  int kill_pid = 0;        // SIGKILLed --kill_at_s into the measuring window
  double kill_at_s = 0;
  int source_ips = 0;         // 0: automatic (one per kBridgesPerSourceIp bridges)
  int source_ip_first = 0;    // bridge i binds to source address source_ip_first + i % source_ips
  int connecting_max = 1000;  // between connect() and <handshake/> at once; 0: no cap
  double handshake_timeout_s = 10;
  double ready_timeout_s = 60;  // for every bridge to authenticate the first time
  int retries_max = 30;         // failed attempts in a row before a bridge gives up
  int retry_backoff_ms = 50;
  int retry_backoff_max_ms = 2000;
};

// One source address toward one server address has ~28,000 ephemeral ports
// (net.ipv4.ip_local_port_range); stay well below it.
constexpr int kBridgesPerSourceIp = 20000;
constexpr int kSourceIpsMax = 254 * 256;  // 127.2.0.1 .. 127.2.255.254

struct BridgeAccount {
  std::string component;  // cb1.example.com
  std::string secret;
};

enum class Phase { kAwaitingHeader, kAwaitingHandshake, kReady };

struct Bridge {
  int fd = -1;
  BridgeAccount account;
  Phase phase = Phase::kAwaitingHeader;
  std::string in;   // bytes not yet parsed
  std::string out;  // bytes waiting for the socket
  int in_flight = 0;
  uint64_t sent = 0;                     // messages this bridge sent
  uint64_t delivered_to_next = 0;        // of those, received by the next bridge
  uint64_t bounced = 0;                  // of those, returned to it with type='error'
  uint64_t bounced_but_delivered = 0;    // of those, also received by the next bridge
  std::set<uint64_t> bounced_sequences;  // bounced, not (yet) seen delivered; while few
  uint64_t expected_from_prev = 0;       // next sequence number due from the previous bridge
  uint64_t lost_from_prev = 0;           // holes: sequence numbers skipped and not (yet) filled
  uint64_t duplicated_from_prev = 0;
  uint64_t reordered_from_prev = 0;    // arrived after a later one (filled a hole)
  std::set<uint64_t> holes_from_prev;  // the skipped ones, while few (after a failover)
  uint64_t received_in_window = 0;
  // Failover.
  std::vector<sockaddr_in> targets;  // in the order this bridge tries them
  size_t target = 0;                 // the one it uses now
  bool was_ready = false;            // authenticated at least once
  int64_t down_since = 0;            // 0: connected (or never was)
  int64_t retry_at = 0;
  uint64_t reconnects = 0;
  int64_t down_ns_max = 0;
  int64_t down_ns_total = 0;      // over all its failovers
  uint64_t unsent_dropped = 0;    // sequence numbers queued but never written
  bool route_probe_seen = false;  // the previous bridge's route probe arrived
  uint64_t skipped_while_down = 0;
  // Connecting.
  bool in_progress = false;     // between connect() and <handshake/> (counts for --connecting_max)
  bool tcp_connecting = false;  // connect() not yet completed
  int64_t opened_at = 0;
  int failures_in_a_row = 0;
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "stanza-bench: %s\n", message.c_str());
  std::exit(1);
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t SecondsToNs(double s) { return static_cast<int64_t>(s * 1e9); }

// Source address k of --source_ips: 127.2.0.1, ..., 127.2.0.254, 127.2.1.1, ...
sockaddr_in SourceAddress(int k) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr =
      htonl((127u << 24) | (2u << 16) | (static_cast<uint32_t>(k / 254) << 8) |
            static_cast<uint32_t>(k % 254 + 1));
  return address;
}

double ThreadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// Reads the "component" and "secret" fields of `stanzactl callbridge list --json`.
std::vector<BridgeAccount> ReadAccounts(const std::string& path) {
  std::ifstream in(path);
  if (!in) Die("cannot read --secrets_json " + path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string json = buffer.str();
  const auto field = [&](const std::string& name, size_t from, size_t* at) {
    const std::string key = "\"" + name + "\":\"";
    const size_t start = json.find(key, from);
    if (start == std::string::npos) return std::string();
    const size_t value = start + key.size();
    const size_t end = json.find('"', value);
    *at = end;
    return json.substr(value, end - value);
  };
  std::vector<BridgeAccount> accounts;
  size_t at = 0;
  while (true) {
    size_t component_end = 0, secret_end = 0;
    std::string component = field("component", at, &component_end);
    if (component.empty()) break;
    std::string secret = field("secret", component_end, &secret_end);
    if (secret.empty()) Die("no secret after component " + component + " in " + path);
    accounts.push_back({component, secret});
    at = secret_end;
  }
  return accounts;
}

sockaddr_in ParseServer(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) Die("--server must be HOST:PORT");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(std::atoi(text.c_str() + colon + 1)));
  if (inet_pton(AF_INET, text.substr(0, colon).c_str(), &address.sin_addr) != 1) {
    Die("--server must be an IPv4 address and port, e.g. 127.0.0.1:5223");
  }
  return address;
}

int64_t ReadRssBytes(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  Die("cannot read VmRSS of --server_pid " + std::to_string(pid));
}

// Sends what it can; false when the connection failed.
bool TryFlush(Bridge& bridge) {
  if (bridge.fd < 0) return false;
  while (!bridge.out.empty()) {
    const ssize_t n = send(bridge.fd, bridge.out.data(), bridge.out.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n <= 0) return false;
    bridge.out.erase(0, static_cast<size_t>(n));
  }
  return true;
}

std::vector<sockaddr_in> ParseServers(const std::string& text) {
  std::vector<sockaddr_in> servers;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = text.find(',', at);
    servers.push_back(ParseServer(text.substr(at, comma - at)));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return servers;
}

// RFC 2782 order: by priority, and within one priority a weighted random order.
std::vector<sockaddr_in> OrderSrvTargets(
    const std::vector<stanzad::SrvRecord>& records,
    const std::map<std::string, std::vector<std::string>>& addresses, std::mt19937_64& random) {
  std::map<uint16_t, std::vector<stanzad::SrvRecord>> by_priority;
  for (const auto& record : records) by_priority[record.priority].push_back(record);
  std::vector<sockaddr_in> ordered;
  for (auto& [priority, group] : by_priority) {
    while (!group.empty()) {
      uint64_t total = 0;
      for (const auto& record : group) total += record.weight + 1u;
      uint64_t pick = random() % total;
      size_t chosen = 0;
      for (; chosen < group.size(); ++chosen) {
        const uint64_t weight = group[chosen].weight + 1u;
        if (pick < weight) break;
        pick -= weight;
      }
      const auto& record = group[chosen];
      auto found = addresses.find(record.target);
      if (found != addresses.end()) {
        for (const std::string& ip : found->second) {
          sockaddr_in address{};
          address.sin_family = AF_INET;
          address.sin_port = htons(record.port);
          if (inet_pton(AF_INET, ip.c_str(), &address.sin_addr) == 1) ordered.push_back(address);
        }
      }
      group.erase(group.begin() + static_cast<std::ptrdiff_t>(chosen));
    }
  }
  return ordered;
}

// The value of attribute `name` in the start tag `tag`, or empty.
std::string_view Attribute(std::string_view tag, std::string_view name) {
  size_t at = 0;
  while ((at = tag.find(name, at)) != std::string_view::npos) {
    const size_t quote = at + name.size() + 1;
    if (at > 0 && tag[at - 1] == ' ' && quote < tag.size() && tag[quote - 1] == '=' &&
        (tag[quote] == '\'' || tag[quote] == '"')) {
      const size_t end = tag.find(tag[quote], quote + 1);
      if (end == std::string_view::npos) return {};
      return tag.substr(quote + 1, end - quote - 1);
    }
    at += name.size();
  }
  return {};
}

uint64_t ParseUnsigned(std::string_view text) {
  uint64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') break;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return value;
}

double Percentile(std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t index =
      std::min(sorted.size() - 1, static_cast<size_t>(p * static_cast<double>(sorted.size())));
  return static_cast<double>(sorted[index]) / 1000.0;  // microseconds
}

void Usage() {
  std::fprintf(
      stderr,
      "usage: stanza-bench --server=HOST:PORT [--secrets_json=FILE] [--protocol=xmpp|relay]\n"
      "         [--mode=throughput|latency|idle] [--bridges=20] [--window=32]\n"
      "         [--payload_bytes=100] [--duration_s=10] [--warmup_s=2] [--drain_s=3]\n"
      "         [--rate=100000] [--hold_s=0] [--server_pid=PID]\n"
      "         [--failover] [--srv=DOMAIN] [--dns_server=IP[:PORT]]\n"
      "         [--kill_pid=PID] [--kill_at_s=0] [--source_ips=0] [--source_ip_first=0]\n"
      "         [--connecting_max=1000]\n"
      "         [--handshake_timeout_s=10] [--ready_timeout_s=60] [--retries_max=30]\n"
      "         [--retry_backoff_ms=50] [--retry_backoff_max_ms=2000]\n"
      "  --secrets_json  `stanzactl --json callbridge list` output (xmpp protocol)\n"
      "  --protocol      xmpp: XEP-0114 components; relay: bench/tcp_relay baseline\n"
      "  --mode          throughput (pipelined --window per bridge), latency (open loop\n"
      "                  at --rate stanzas/s in all), idle (hold the bridges --hold_s)\n"
      "  --server_pid    the server's PID; idle mode reports its VmRSS growth per bridge\n"
      "  --server        HOST:PORT, or a list HOST:PORT,HOST:PORT,... to fail over along\n"
      "  --failover      reconnect a bridge that loses its server to the next one\n"
      "  --srv           find the servers in _xmpp-component._tcp.DOMAIN (implies --failover)\n"
      "  --dns_server    the DNS server for --srv (default: the system's)\n"
      "  --kill_pid      SIGKILL this process --kill_at_s into the measuring window\n"
      "                  (< --duration_s) and report kill_to_flow_ms: until a message\n"
      "                  due after the kill is delivered\n"
      "  --source_ips    bind bridge i to source address i %% N of 127.2.0.1, 127.2.0.2, ...\n"
      "                  (one address runs out of ports toward a server past ~28,000);\n"
      "                  0: the kernel's choice up to 20,000 bridges, one per 20,000 above\n"
      "  --source_ip_first  start at that address instead (0: 127.2.0.1), so that several\n"
      "                  stanza-bench processes (each within its own open files limit)\n"
      "                  use addresses of their own\n"
      "  --connecting_max  bridges between connect() and <handshake/> at once (0: no cap)\n"
      "  --handshake_timeout_s  an attempt not authenticated by then is retried\n"
      "  --ready_timeout_s  every bridge must authenticate within it, or the run fails\n"
      "  --retries_max   failed attempts in a row (refused, closed, timed out) before a\n"
      "                  bridge gives up; retried on its next target after a backoff from\n"
      "                  --retry_backoff_ms doubling to --retry_backoff_max_ms, +-50%% jitter\n");
}

class Bench {
 public:
  explicit Bench(Options options) : options_(std::move(options)) {}

  int Run();

 private:
  void Connect(const std::vector<BridgeAccount>& accounts);
  // Starts bridge i's non-blocking connect to its current target.
  void OpenConnection(size_t i, int64_t now);
  // The connect finished (EPOLLOUT or an error on a connecting socket).
  void OnConnectDone(Bridge& bridge);
  // Sends what it can; a failed connection is handled (retry, failover) or fatal.
  void Flush(Bridge& bridge);
  void OnDisconnected(Bridge& bridge, const std::string& why);
  void OnReady(Bridge& bridge);
  // Opens the connections that are due, within --connecting_max.
  void OpenDue(int64_t now);
  // Drops the attempts that have not authenticated within --handshake_timeout_s.
  void ExpireHandshakes(int64_t now);
  void ScheduleOpen(size_t i, int64_t at);
  void OnReadable(Bridge& bridge, int64_t now);
  void OnHandshakeBytes(Bridge& bridge, std::string_view data);
  void ParseMessages(Bridge& bridge, int64_t now);
  void QueueMessage(size_t from, int64_t due);
  // Latency mode: one more message due at `due`, or one delivered (flow_by_s).
  void CountFlow(int64_t due, bool delivered);
  // A message due at `due` reached its receiver at `now` (not a duplicate).
  void OnDelivered(int64_t now, int64_t due);
  bool Measuring(int64_t due) const { return due >= window_start_ && due < window_end_; }
  void Report(double cpu_seconds, int64_t rss_before, int64_t rss_after);
  // The storm_* fields and flow_by_s (--failover).
  void ReportStorm();

  Options options_;
  std::vector<Bridge> bridges_;
  std::string payload_;
  int epoll_fd_ = -1;
  size_t ready_ = 0;
  bool started_ = false;
  // Route probe (xmpp, throughput and latency modes): once every bridge is
  // authenticated, each sends one message to the next until every one has
  // arrived (at most kProbeNs), so that no measured stanza leaves before the
  // receiver's route has reached the sender's server (in a cluster it takes
  // a moment to reach every node).
  static constexpr int64_t kProbeNs = 10'000'000'000;
  bool probing_ = false, probed_ = false;
  int64_t probe_deadline_ = 0, probe_next_ = 0;
  int64_t start_ = 0;  // when all bridges were ready
  int64_t window_start_ = 0, window_end_ = 0;
  uint64_t scheduled_ = 0;  // latency mode: messages due so far
  uint64_t backlogged_ = 0;
  std::vector<int64_t> latencies_ns_;
  std::vector<int64_t> down_ns_;  // each failover: from the drop to authenticated again
  int64_t last_delivery_ns_ = 0;  // in the measuring window; 0: none yet
  int64_t max_delivery_gap_ns_ = 0;
  int64_t kill_ns_ = 0;           // when --kill_pid was killed; 0: not yet
  int64_t kill_to_flow_ns_ = -1;  // -1: nothing due after the kill delivered yet
  // Connecting: bridges to open (bridge index, not before this time), soonest first.
  std::priority_queue<std::pair<int64_t, size_t>, std::vector<std::pair<int64_t, size_t>>,
                      std::greater<>>
      to_open_;
  size_t in_progress_ = 0;  // bridges between connect() and <handshake/>
  int64_t next_expiry_check_ = 0;
  std::mt19937_64 jitter_{777};
  uint64_t connect_attempts_ = 0, failed_attempts_ = 0, refused_ = 0, timed_out_ = 0;
  uint64_t stream_errors_before_ready_ = 0, gave_up_ = 0;
  // The storm: from the first drop of an authenticated bridge.
  int64_t first_drop_ns_ = 0;
  std::vector<int64_t> connected_ns_;  // TCP connects completed after it
  std::vector<int64_t> back_ns_;       // bridges authenticated again after it
  std::vector<int64_t> drop_ns_;       // authenticated connections lost
  // This thread's CPU seconds at the first drop and at the last bridge back.
  double storm_cpu_start_ = 0;
  double storm_cpu_end_ = 0;
  // Latency mode: per second of due time since the window's start, [due, delivered].
  std::vector<std::pair<uint64_t, uint64_t>> flow_by_s_;
};

void Bench::Connect(const std::vector<BridgeAccount>& accounts) {
  std::vector<sockaddr_in> servers;
  std::vector<stanzad::SrvRecord> srv;
  std::map<std::string, std::vector<std::string>> srv_addresses;
  if (!options_.srv_domain.empty()) {
    absl::StatusOr<stanzad::DnsAnswers> answers =
        stanzad::LookupXmppDns(options_.srv_domain, options_.dns_server);
    if (!answers.ok()) Die(std::string(answers.status().message()));
    srv = answers->srv["_xmpp-component._tcp"];
    srv_addresses = answers->addresses;
    if (srv.empty()) {
      Die("no _xmpp-component._tcp." + options_.srv_domain + " SRV records (stanzactl doctor dns " +
          options_.srv_domain + " says why)");
    }
  } else {
    servers = ParseServers(options_.server);
  }
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  bridges_.resize(static_cast<size_t>(options_.bridges));
  std::mt19937_64 random(12345);
  const int64_t now = NowNs();
  for (size_t i = 0; i < bridges_.size(); ++i) {
    Bridge& bridge = bridges_[i];
    bridge.account = accounts[i];
    if (!srv.empty()) {
      bridge.targets = OrderSrvTargets(srv, srv_addresses, random);
      if (bridge.targets.empty()) Die("no SRV target of " + options_.srv_domain + " resolves");
    } else {
      // A static list: bridges start spread over it and fail over in its order.
      for (size_t k = 0; k < servers.size(); ++k) {
        bridge.targets.push_back(servers[(i + k) % servers.size()]);
      }
    }
    ScheduleOpen(i, now);
  }
}

void Bench::ScheduleOpen(size_t i, int64_t at) { to_open_.emplace(at, i); }

void Bench::OpenDue(int64_t now) {
  // A bounded batch per loop iteration, so that the ones already connecting
  // are served (and authenticate within the server's pre-auth time) meanwhile.
  constexpr int kOpensPerIterationMax = 256;
  for (int opened = 0; opened < kOpensPerIterationMax && !to_open_.empty(); ++opened) {
    if (to_open_.top().first > now) break;
    if (options_.connecting_max > 0 &&
        in_progress_ >= static_cast<size_t>(options_.connecting_max)) {
      break;
    }
    const size_t i = to_open_.top().second;
    to_open_.pop();
    OpenConnection(i, now);
  }
}

void Bench::OpenConnection(size_t i, int64_t now) {
  Bridge& bridge = bridges_[i];
  const sockaddr_in& server = bridge.targets[bridge.target % bridge.targets.size()];
  bridge.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (bridge.fd < 0) Die("socket: " + std::string(std::strerror(errno)));
  ++connect_attempts_;
  bridge.in_progress = true;
  bridge.tcp_connecting = true;
  bridge.opened_at = now;
  ++in_progress_;
  bridge.phase = Phase::kAwaitingHeader;
  bridge.in.clear();
  bridge.out.clear();
  if (options_.source_ips > 0) {
    const int one = 1;
    // The port is chosen at connect() for the whole 4-tuple, not at bind().
    setsockopt(bridge.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    const sockaddr_in source = SourceAddress(std::min(
        kSourceIpsMax - 1, options_.source_ip_first + static_cast<int>(i % options_.source_ips)));
    if (bind(bridge.fd, reinterpret_cast<const sockaddr*>(&source), sizeof(source)) != 0) {
      Die("cannot bind a source address: " + std::string(std::strerror(errno)));
    }
  }
  const int one = 1;
  setsockopt(bridge.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  epoll_event event{};
  event.events = EPOLLIN | EPOLLOUT | EPOLLET;
  event.data.u64 = i;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, bridge.fd, &event);
  if (connect(bridge.fd, reinterpret_cast<const sockaddr*>(&server), sizeof(server)) != 0 &&
      errno != EINPROGRESS) {
    if (errno == EADDRNOTAVAIL) {
      Die("out of local ports (EADDRNOTAVAIL) after " + std::to_string(connect_attempts_) +
          " connects: spread the bridges over more source addresses (--source_ips)");
    }
    if (errno == ECONNREFUSED) ++refused_;
    OnDisconnected(bridge, "connect: " + std::string(std::strerror(errno)));
    return;
  }
  // The first bytes wait for the connect to complete (EPOLLOUT).
  if (options_.protocol == Protocol::kRelay) {
    char hello[12] = {'S', 'B', 'R', 'L'};
    const uint32_t index = htonl(static_cast<uint32_t>(i));
    const uint32_t count = htonl(static_cast<uint32_t>(bridges_.size()));
    std::memcpy(hello + 4, &index, 4);
    std::memcpy(hello + 8, &count, 4);
    bridge.out.assign(hello, sizeof(hello));
  } else {
    bridge.out =
        "<stream:stream xmlns='jabber:component:accept' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='" +
        bridge.account.component + "'>";
  }
}

void Bench::OnConnectDone(Bridge& bridge) {
  int error = 0;
  socklen_t length = sizeof(error);
  if (getsockopt(bridge.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
  if (error != 0) {
    if (error == ECONNREFUSED) ++refused_;
    OnDisconnected(bridge, "connect: " + std::string(std::strerror(error)));
    return;
  }
  bridge.tcp_connecting = false;
  if (first_drop_ns_ != 0) connected_ns_.push_back(NowNs());
  Flush(bridge);
}

void Bench::ExpireHandshakes(int64_t now) {
  if (now < next_expiry_check_) return;
  next_expiry_check_ = now + 100'000'000;
  const int64_t limit = SecondsToNs(options_.handshake_timeout_s);
  for (Bridge& bridge : bridges_) {
    if (bridge.in_progress && bridge.fd >= 0 && now - bridge.opened_at > limit) {
      ++timed_out_;
      OnDisconnected(bridge, "not authenticated within --handshake_timeout_s");
    }
  }
}

void Bench::Flush(Bridge& bridge) {
  if (bridge.fd < 0 || bridge.tcp_connecting) return;  // down, or not connected yet
  if (!TryFlush(bridge)) {
    OnDisconnected(bridge, "send failed: " + std::string(std::strerror(errno)));
  }
}

void Bench::OnDisconnected(Bridge& bridge, const std::string& why) {
  const size_t index = static_cast<size_t>(&bridge - bridges_.data());
  const bool failed_attempt = bridge.in_progress;
  if (!failed_attempt && !options_.failover) Die(bridge.account.component + ": " + why);
  if (bridge.fd >= 0) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, bridge.fd, nullptr);
    close(bridge.fd);
    bridge.fd = -1;
  }
  // Messages that never left are not lost by the server: count them apart.
  for (size_t at = bridge.out.find("<message"); at != std::string::npos;
       at = bridge.out.find("<message", at + 1)) {
    ++bridge.unsent_dropped;
    --bridge.in_flight;
  }
  bridge.out.clear();
  bridge.in.clear();
  bridge.phase = Phase::kAwaitingHeader;
  const int64_t now = NowNs();
  if (bridge.was_ready && bridge.down_since == 0) {
    bridge.down_since = now;
    drop_ns_.push_back(now);
    if (first_drop_ns_ == 0) {
      first_drop_ns_ = now;
      storm_cpu_start_ = ThreadCpuSeconds();
    }
  }
  bridge.target = (bridge.target + 1) % bridge.targets.size();
  if (!failed_attempt) {  // it was authenticated: reconnect at once
    ScheduleOpen(index, now);
    return;
  }
  bridge.in_progress = false;
  bridge.tcp_connecting = false;
  --in_progress_;
  ++failed_attempts_;
  if (++bridge.failures_in_a_row > options_.retries_max) {
    ++gave_up_;  // not scheduled again: refused for good
    if (!options_.failover) {
      Die(bridge.account.component + ": gave up after " + std::to_string(options_.retries_max) +
          " failed attempts; the last: " + why);
    }
    std::fprintf(stderr, "stanza-bench: %s gave up after %d failed attempts; the last: %s\n",
                 bridge.account.component.c_str(), options_.retries_max, why.c_str());
    return;
  }
  // Exponential backoff with jitter: 50% to 150% of the step.
  const int shift = std::min(bridge.failures_in_a_row - 1, 20);
  const double step_ms = std::min<double>(
      options_.retry_backoff_max_ms, static_cast<double>(options_.retry_backoff_ms) * (1 << shift));
  const double factor = 0.5 + static_cast<double>(jitter_() % 1001) / 1000.0;
  ScheduleOpen(index, now + static_cast<int64_t>(step_ms * factor * 1e6));
}

void Bench::CountFlow(int64_t due, bool delivered) {
  if (options_.mode != Mode::kLatency || due < window_start_) return;
  const auto second = static_cast<size_t>((due - window_start_) / 1'000'000'000);
  if (second >= 3600) return;
  if (flow_by_s_.size() <= second) flow_by_s_.resize(second + 1);
  ++(delivered ? flow_by_s_[second].second : flow_by_s_[second].first);
}

void Bench::QueueMessage(size_t from, int64_t due) {
  CountFlow(due, /*delivered=*/false);
  Bridge& sender = bridges_[from];
  if (sender.phase != Phase::kReady) {  // a bridge without a server sends nothing
    ++sender.skipped_while_down;
    return;
  }
  const Bridge& receiver = bridges_[(from + 1) % bridges_.size()];
  std::string& out = sender.out;
  out += "<message from='";
  out += sender.account.component;
  out += "' to='";
  out += receiver.account.component;
  out += "' id='";
  out += std::to_string(sender.sent);
  out += '-';
  out += std::to_string(due);
  out += "'><body>";
  out += payload_;
  out += "</body></message>";
  ++sender.sent;
  ++sender.in_flight;
}

void Bench::OnHandshakeBytes(Bridge& bridge, std::string_view data) {
  bridge.in.append(data);
  if (options_.protocol == Protocol::kRelay) {
    if (bridge.in[0] != 'R') Die("the relay answered the hello with something else");
    bridge.in.erase(0, 1);
    bridge.phase = Phase::kReady;
    OnReady(bridge);
    return;
  }
  if (bridge.in.find("<stream:error") != std::string::npos) {
    // A wrong secret or name is fatal even with --failover: the configuration
    // is wrong, and trying other servers won't help. Anything else (a limit,
    // a server shutting down) is a failed attempt, retried after a backoff.
    if (bridge.in.find("not-authorized") != std::string::npos ||
        bridge.in.find("host-unknown") != std::string::npos) {
      Die(bridge.account.component + ": stream error: " + bridge.in);
    }
    ++stream_errors_before_ready_;
    OnDisconnected(bridge, "stream error: " + bridge.in.substr(0, 400));
    return;
  }
  if (bridge.phase == Phase::kAwaitingHeader) {
    size_t id = bridge.in.find(" id='");
    if (id == std::string::npos) id = bridge.in.find(" id=\"");
    const size_t close = bridge.in.find('>', id == std::string::npos ? 0 : id);
    if (id != std::string::npos && close != std::string::npos) {
      const char quote = bridge.in[id + 4];
      const size_t end = bridge.in.find(quote, id + 5);
      const std::string stream_id = bridge.in.substr(id + 5, end - id - 5);
      bridge.out += "<handshake>" +
                    stanzad::xmpp::ComponentHandshakeDigest(stream_id, bridge.account.secret) +
                    "</handshake>";
      Flush(bridge);
      if (bridge.fd < 0) return;  // the send failed: it was retried or failed over
      bridge.phase = Phase::kAwaitingHandshake;
      bridge.in.erase(0, close + 1);
    }
  }
  if (bridge.phase == Phase::kAwaitingHandshake) {
    const size_t ok = bridge.in.find("<handshake/>");
    if (ok != std::string::npos) {
      bridge.phase = Phase::kReady;
      bridge.in.erase(0, ok + 12);
      OnReady(bridge);
    }
  }
}

void Bench::OnReady(Bridge& bridge) {
  if (bridge.in_progress) {
    bridge.in_progress = false;
    --in_progress_;
  }
  bridge.failures_in_a_row = 0;
  if (first_drop_ns_ != 0) {
    back_ns_.push_back(NowNs());
    storm_cpu_end_ = ThreadCpuSeconds();
  }
  if (!bridge.was_ready) {
    bridge.was_ready = true;
    ++ready_;
  }
  if (bridge.down_since != 0) {  // back after a failover
    bridge.down_ns_max = std::max(bridge.down_ns_max, NowNs() - bridge.down_since);
    bridge.down_ns_total += NowNs() - bridge.down_since;
    down_ns_.push_back(NowNs() - bridge.down_since);
    bridge.down_since = 0;
    ++bridge.reconnects;
  }
}

// Takes every complete <message> out of bridge.in.
void Bench::ParseMessages(Bridge& bridge, int64_t now) {
  const size_t self = static_cast<size_t>(&bridge - bridges_.data());
  const size_t previous = (self + bridges_.size() - 1) % bridges_.size();
  std::string_view in = bridge.in;
  size_t consumed = 0;
  while (true) {
    const size_t start = in.find('<', consumed);
    if (start == std::string_view::npos) {
      consumed = in.size();  // whitespace keepalives
      break;
    }
    if (in.substr(start, 13) == "<stream:error" || in.substr(start, 15) == "</stream:stream") {
      OnDisconnected(bridge, "the server ended the stream: " + std::string(in.substr(start, 400)));
      return;
    }
    const size_t tag_end = in.find('>', start);
    if (tag_end == std::string_view::npos) break;
    const std::string_view tag = in.substr(start, tag_end - start);
    size_t end;
    if (in[tag_end - 1] == '/') {
      end = tag_end + 1;
    } else {
      const std::string_view name = tag.substr(1, tag.find_first_of(" \t\r\n") - 1);
      const std::string closing =
          name == "message" ? std::string("</message>") : "</" + std::string(name) + ">";
      const size_t close = in.find(closing, tag_end);
      if (close == std::string_view::npos) break;
      end = close + closing.size();
    }
    consumed = end;
    if (tag.substr(0, 8) != "<message") continue;
    const std::string_view id = Attribute(tag, "id");
    if (id.substr(0, 6) == "route-") {  // a route probe; one that bounced is sent again
      if (Attribute(tag, "type") != "error") bridge.route_probe_seen = true;
      continue;
    }
    const size_t dash = id.find('-');
    const uint64_t sequence = ParseUnsigned(id);
    const int64_t due = dash == std::string_view::npos
                            ? 0
                            : static_cast<int64_t>(ParseUnsigned(id.substr(dash + 1)));
    if (Attribute(tag, "type") == "error") {
      // Our own message, bounced back to us by the server.
      ++bridge.bounced;
      --bridge.in_flight;
      const Bridge& receiver = bridges_[(self + 1) % bridges_.size()];
      if (sequence < receiver.expected_from_prev && !receiver.holes_from_prev.contains(sequence)) {
        // The server said it failed, but the receiver has it: the sender would send it again.
        ++bridge.bounced_but_delivered;
        ++bridge.in_flight;  // answered twice, counted once
      } else if (bridge.bounced_sequences.size() < 100'000) {
        bridge.bounced_sequences.insert(sequence);
      }
      if (options_.mode == Mode::kThroughput && now < window_end_) QueueMessage(self, now);
      continue;
    }
    Bridge& sender = bridges_[previous];
    if (sequence < bridge.expected_from_prev) {
      // Late (sent again after a failover) or a duplicate.
      if (bridge.holes_from_prev.erase(sequence) == 0) {
        ++bridge.duplicated_from_prev;
        continue;
      }
      --bridge.lost_from_prev;
      ++bridge.reordered_from_prev;
    } else {
      const uint64_t skipped = sequence - bridge.expected_from_prev;
      bridge.lost_from_prev += skipped;
      if (skipped <= 100'000) {
        for (uint64_t hole = bridge.expected_from_prev; hole < sequence; ++hole) {
          bridge.holes_from_prev.insert(hole);
        }
      }
      bridge.expected_from_prev = sequence + 1;
    }
    ++sender.delivered_to_next;
    --sender.in_flight;
    if (!sender.bounced_sequences.empty() && sender.bounced_sequences.erase(sequence) != 0) {
      ++sender.bounced_but_delivered;  // delivered after its error reply
      ++sender.in_flight;
    }
    OnDelivered(now, due);
    CountFlow(due, /*delivered=*/true);
    if (Measuring(due)) {
      ++bridge.received_in_window;
      if (options_.mode == Mode::kLatency) latencies_ns_.push_back(now - due);
    }
    if (options_.mode == Mode::kThroughput && now < window_end_) QueueMessage(previous, now);
  }
  bridge.in.erase(0, consumed);
  if (options_.mode == Mode::kThroughput) {
    Flush(bridges_[previous]);
    Flush(bridge);
  }
}

void Bench::OnDelivered(int64_t now, int64_t due) {
  if (now >= window_start_ && now < window_end_) {
    max_delivery_gap_ns_ =
        std::max(max_delivery_gap_ns_, now - std::max(last_delivery_ns_, window_start_));
    last_delivery_ns_ = now;
  }
  if (kill_ns_ != 0 && kill_to_flow_ns_ < 0 && due > kill_ns_) kill_to_flow_ns_ = now - kill_ns_;
}

void Bench::OnReadable(Bridge& bridge, int64_t now) {
  char buffer[256 * 1024];
  while (bridge.fd >= 0) {
    const ssize_t n = recv(bridge.fd, buffer, sizeof(buffer), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
      OnDisconnected(bridge, "connection closed by the server: " + bridge.in.substr(0, 400));
      return;
    }
    std::string_view data(buffer, static_cast<size_t>(n));
    if (bridge.phase != Phase::kReady) {
      OnHandshakeBytes(bridge, data);
      if (bridge.fd < 0) return;
      if (bridge.phase != Phase::kReady) continue;
    } else {
      bridge.in.append(data);
    }
    if (started_ || probing_) ParseMessages(bridge, now);
    if (bridge.fd < 0) return;  // it failed over meanwhile
    // A short read drained the socket; with edge-triggered epoll, data that
    // arrives later raises a new event, so the EAGAIN read can be skipped.
    if (static_cast<size_t>(n) < sizeof(buffer)) return;
  }
}

int Bench::Run() {
  std::vector<BridgeAccount> accounts;
  if (options_.protocol == Protocol::kRelay) {
    for (int i = 0; i < options_.bridges; ++i) {
      accounts.push_back({"b" + std::to_string(i) + ".example.com", ""});
    }
  } else {
    if (options_.secrets_json.empty()) Die("--secrets_json is required with --protocol=xmpp");
    accounts = ReadAccounts(options_.secrets_json);
  }
  if (options_.bridges < 2 || options_.bridges > static_cast<int>(accounts.size())) {
    Die("--bridges must be between 2 and the " + std::to_string(accounts.size()) + " bridges in " +
        options_.secrets_json);
  }
  // One descriptor per bridge, and some to spare.
  const rlim_t files_needed = static_cast<rlim_t>(options_.bridges) + 1000;
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  if (files.rlim_max < files_needed) files.rlim_max = files_needed;  // root may raise it
  files.rlim_cur = std::max(files.rlim_cur, files_needed);
  if (setrlimit(RLIMIT_NOFILE, &files) != 0) {
    getrlimit(RLIMIT_NOFILE, &files);
    if (files.rlim_max < files_needed) {
      Die("--bridges=" + std::to_string(options_.bridges) + " needs " +
          std::to_string(files_needed) + " open files; the hard limit is " +
          std::to_string(files.rlim_max) + " (raise it: ulimit -Hn, or run as root)");
    }
    files.rlim_cur = files_needed;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  if (options_.source_ips == 0 && options_.bridges > kBridgesPerSourceIp) {
    options_.source_ips = (options_.bridges + kBridgesPerSourceIp - 1) / kBridgesPerSourceIp;
  }
  payload_.assign(static_cast<size_t>(std::max(1, options_.payload_bytes)), 'x');

  const int64_t rss_before = options_.server_pid > 0 ? ReadRssBytes(options_.server_pid) : 0;
  int64_t rss_after = 0;
  Connect(accounts);

  const int64_t connect_deadline = NowNs() + SecondsToNs(options_.ready_timeout_s);
  int64_t drain_end = 0;
  double cpu_start = -1, cpu_end = -1;
  std::vector<epoll_event> events(1024);
  while (true) {
    const int64_t now = NowNs();
    if (!started_ && now > connect_deadline) {
      Die("timed out after " + std::to_string(options_.ready_timeout_s) + " s with " +
          std::to_string(ready_) + " of " + std::to_string(bridges_.size()) +
          " bridges authenticated (" + std::to_string(gave_up_) + " gave up)");
    }
    if (!started_ && gave_up_ > 0 && ready_ + gave_up_ == bridges_.size()) {
      Die(std::to_string(gave_up_) + " bridges gave up connecting (see above)");
    }
    const bool probe = options_.protocol == Protocol::kXmpp && options_.mode != Mode::kIdle;
    if (!started_ && ready_ == bridges_.size() && probe && !probed_) {
      if (!probing_) {
        probing_ = true;
        probe_deadline_ = now + kProbeNs;
      }
      size_t seen = 0;
      for (const Bridge& bridge : bridges_) seen += bridge.route_probe_seen ? 1 : 0;
      if (seen < bridges_.size() && now < probe_deadline_) {
        if (now >= probe_next_) {
          for (size_t i = 0; i < bridges_.size(); ++i) {
            const Bridge& receiver = bridges_[(i + 1) % bridges_.size()];
            if (receiver.route_probe_seen) continue;
            bridges_[i].out += "<message from='" + bridges_[i].account.component + "' to='" +
                               receiver.account.component + "' id='route-" + std::to_string(i) +
                               "'/>";
            Flush(bridges_[i]);
          }
          probe_next_ = now + 100'000'000;
        }
      } else {
        probing_ = false;
        probed_ = true;
        if (seen < bridges_.size()) {
          std::fprintf(stderr,
                       "stanza-bench: warning: after %.0f s only %zu of %zu bridges had a "
                       "message from the previous one; running anyway\n",
                       static_cast<double>(kProbeNs) / 1e9, seen, bridges_.size());
        }
      }
    }
    if (!started_ && ready_ == bridges_.size() && (!probe || probed_)) {
      started_ = true;
      start_ = now;
      window_start_ = now + SecondsToNs(options_.warmup_s);
      window_end_ = window_start_ + SecondsToNs(options_.duration_s);
      drain_end = window_end_ + SecondsToNs(options_.drain_s);
      std::fprintf(stderr, "stanza-bench: %zu bridges ready; running\n", ready_);
      if (options_.mode == Mode::kIdle) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        if (options_.server_pid > 0) rss_after = ReadRssBytes(options_.server_pid);
        std::this_thread::sleep_for(std::chrono::duration<double>(options_.hold_s));
        break;
      }
      for (size_t i = 0; i < bridges_.size(); ++i) {
        if (!bridges_[i].in.empty()) ParseMessages(bridges_[i], now);
        if (options_.mode == Mode::kThroughput) {
          for (int k = 0; k < options_.window; ++k) QueueMessage(i, now);
          Flush(bridges_[i]);
        }
      }
    }
    OpenDue(now);
    ExpireHandshakes(now);
    if (started_) {
      if (cpu_start < 0 && now >= window_start_) cpu_start = ThreadCpuSeconds();
      if (cpu_end < 0 && now >= window_end_) cpu_end = ThreadCpuSeconds();
      if (options_.kill_pid > 0 && kill_ns_ == 0 &&
          now >= window_start_ + SecondsToNs(options_.kill_at_s)) {
        if (kill(options_.kill_pid, SIGKILL) != 0) {
          Die("cannot kill --kill_pid " + std::to_string(options_.kill_pid) + ": " +
              std::strerror(errno));
        }
        kill_ns_ = NowNs();  // messages queued from here on are due after the kill
        std::fprintf(stderr, "stanza-bench: killed %d\n", options_.kill_pid);
      }
      if (options_.mode == Mode::kLatency && now < window_end_) {
        // Everything due by now, round robin, each with the time it was due.
        const uint64_t due_count =
            static_cast<uint64_t>(static_cast<double>(now - start_) * options_.rate / 1e9);
        const size_t first = scheduled_ % bridges_.size();
        const uint64_t batch = due_count - scheduled_;
        for (; scheduled_ < due_count; ++scheduled_) {
          const int64_t due =
              start_ + static_cast<int64_t>(static_cast<double>(scheduled_) * 1e9 / options_.rate);
          QueueMessage(scheduled_ % bridges_.size(), due);
        }
        for (uint64_t k = 0; k < std::min<uint64_t>(batch, bridges_.size()); ++k) {
          Bridge& bridge = bridges_[(first + k) % bridges_.size()];
          Flush(bridge);
          if (bridge.out.size() > (4u << 20)) ++backlogged_;
        }
      }
      if (now >= window_end_) {
        bool drained = true;
        for (const Bridge& bridge : bridges_) drained = drained && bridge.in_flight == 0;
        if (drained || now >= drain_end) break;
      }
    }
    // Latency mode wakes at least every 50 us to send what has fallen due, so
    // batching adds at most that to a message's latency, without spinning.
    int64_t timeout_ns = started_ && options_.mode == Mode::kLatency ? 50'000 : 10'000'000;
    if (!to_open_.empty() && (options_.connecting_max == 0 ||
                              in_progress_ < static_cast<size_t>(options_.connecting_max))) {
      timeout_ns = std::clamp<int64_t>(to_open_.top().first - NowNs(), 0, timeout_ns);
    }
    const timespec timeout{0, timeout_ns};
    const int count =
        epoll_pwait2(epoll_fd_, events.data(), static_cast<int>(events.size()), &timeout, nullptr);
    const int64_t after = NowNs();
    for (int e = 0; e < count; ++e) {
      Bridge& bridge = bridges_[events[e].data.u64];
      if (bridge.tcp_connecting && bridge.fd >= 0 &&
          (events[e].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        OnConnectDone(bridge);
      } else if (events[e].events & EPOLLOUT) {
        Flush(bridge);
      }
      if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) OnReadable(bridge, after);
    }
  }
  if (cpu_end < 0) cpu_end = ThreadCpuSeconds();
  Report(cpu_start < 0 ? 0 : cpu_end - cpu_start, rss_before, rss_after);
  for (const Bridge& bridge : bridges_) close(bridge.fd);
  return 0;
}

void Bench::Report(double cpu_seconds, int64_t rss_before, int64_t rss_after) {
  const char* mode = options_.mode == Mode::kThroughput ? "throughput"
                     : options_.mode == Mode::kLatency  ? "latency"
                                                        : "idle";
  std::printf("{\"mode\":\"%s\",\"protocol\":\"%s\",\"server\":\"%s\",\"bridges\":%d", mode,
              options_.protocol == Protocol::kRelay ? "relay" : "xmpp", options_.server.c_str(),
              options_.bridges);
  if (options_.mode == Mode::kIdle) {
    std::printf(",\"server_pid\":%d,\"rss_before_bytes\":%" PRId64 ",\"rss_after_bytes\":%" PRId64
                ",\"per_connection_bytes\":%.0f}\n",
                options_.server_pid, rss_before, rss_after,
                options_.server_pid > 0 ? static_cast<double>(rss_after - rss_before) /
                                              static_cast<double>(options_.bridges)
                                        : 0.0);
    return;
  }
  uint64_t in_window = 0, min_bridge = UINT64_MAX, max_bridge = 0;
  uint64_t sent = 0, delivered = 0, bounced = 0, lost = 0, duplicated = 0, unanswered = 0;
  uint64_t bounced_but_delivered = 0;
  uint64_t reordered = 0;
  for (const Bridge& bridge : bridges_) {
    in_window += bridge.received_in_window;
    min_bridge = std::min(min_bridge, bridge.received_in_window);
    max_bridge = std::max(max_bridge, bridge.received_in_window);
    sent += bridge.sent;
    delivered += bridge.delivered_to_next;
    bounced += bridge.bounced;
    bounced_but_delivered += bridge.bounced_but_delivered;
    lost += bridge.lost_from_prev;
    duplicated += bridge.duplicated_from_prev;
    reordered += bridge.reordered_from_prev;
    unanswered += static_cast<uint64_t>(std::max(0, bridge.in_flight));
  }
  // A bounced message leaves a gap at its receiver too (unless it was delivered
  // as well): it was answered, not lost; so does one a disconnect kept from ever
  // leaving the client.
  uint64_t never_sent = 0;
  for (const Bridge& bridge : bridges_) never_sent += bridge.unsent_dropped;
  const uint64_t answered = bounced - bounced_but_delivered + never_sent;
  lost = lost > answered ? lost - answered : 0;
  // The window's ends count as deliveries, so silence at its end is a gap too.
  const int64_t gap_ns =
      std::max(max_delivery_gap_ns_, window_end_ - std::max(last_delivery_ns_, window_start_));
  const double duration = options_.duration_s;
  std::printf(
      ",\"payload_bytes\":%d,\"duration_s\":%.1f,\"stanzas_per_s\":%.0f,"
      "\"per_bridge_min_per_s\":%.0f,\"per_bridge_max_per_s\":%.0f,\"sent\":%" PRIu64
      ",\"delivered\":%" PRIu64 ",\"bounced\":%" PRIu64 ",\"bounced_but_delivered\":%" PRIu64
      ",\"lost\":%" PRIu64 ",\"duplicated\":%" PRIu64 ",\"reordered\":%" PRIu64
      ",\"unanswered_after_drain\":%" PRIu64 ",\"max_delivery_gap_ms\":%.1f",
      options_.payload_bytes, duration, static_cast<double>(in_window) / duration,
      static_cast<double>(min_bridge) / duration, static_cast<double>(max_bridge) / duration, sent,
      delivered, bounced, bounced_but_delivered, lost, duplicated, reordered, unanswered,
      static_cast<double>(gap_ns) / 1e6);
  if (options_.kill_pid > 0) {
    std::printf(",\"kill_pid\":%d,\"kill_at_s\":%.3f,\"kill_to_flow_ms\":", options_.kill_pid,
                options_.kill_at_s);
    if (kill_to_flow_ns_ < 0) {
      std::printf("null");
    } else {
      std::printf("%.1f", static_cast<double>(kill_to_flow_ns_) / 1e6);
    }
  }
  if (options_.mode == Mode::kThroughput) {
    std::printf(",\"window\":%d", options_.window);
  } else {
    std::sort(latencies_ns_.begin(), latencies_ns_.end());
    std::printf(
        ",\"rate\":%.0f,\"samples\":%zu,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
        "\"p999_us\":%.1f,\"max_us\":%.1f,\"send_backlog_events\":%" PRIu64,
        options_.rate, latencies_ns_.size(), Percentile(latencies_ns_, 0.5),
        Percentile(latencies_ns_, 0.9), Percentile(latencies_ns_, 0.99),
        Percentile(latencies_ns_, 0.999),
        latencies_ns_.empty() ? 0.0 : static_cast<double>(latencies_ns_.back()) / 1000.0,
        backlogged_);
  }
  if (options_.failover) {
    uint64_t reconnects = 0, bridges_failed_over = 0, still_down = 0, unsent = 0, skipped = 0;
    for (const Bridge& bridge : bridges_) {
      reconnects += bridge.reconnects;
      bridges_failed_over += bridge.reconnects > 0 ? 1 : 0;
      still_down += bridge.down_since != 0 ? 1 : 0;
      unsent += bridge.unsent_dropped;
      skipped += bridge.skipped_while_down;
    }
    // Per path (bridge i -> i+1): one whose sender or receiver reconnected may lose
    // what the dying node held; a steady one (both kept their server) should not.
    const auto moved = [](const Bridge& b) { return b.reconnects > 0 || b.down_since != 0; };
    uint64_t lost_failed_over = 0, lost_steady = 0, steady_paths = 0;
    for (size_t i = 0; i < bridges_.size(); ++i) {
      const Bridge& sender = bridges_[i];
      const Bridge& receiver = bridges_[(i + 1) % bridges_.size()];
      const uint64_t path_answered =
          sender.bounced - sender.bounced_but_delivered + sender.unsent_dropped;
      const uint64_t path_lost =
          receiver.lost_from_prev > path_answered ? receiver.lost_from_prev - path_answered : 0;
      if (moved(sender) || moved(receiver)) {
        lost_failed_over += path_lost;
      } else {
        lost_steady += path_lost;
        ++steady_paths;
      }
    }
    std::sort(down_ns_.begin(), down_ns_.end());
    std::printf(",\"steady_paths\":%" PRIu64 ",\"lost_on_steady_paths\":%" PRIu64
                ",\"lost_on_failed_over_paths\":%" PRIu64,
                steady_paths, lost_steady, lost_failed_over);
    std::printf(",\"reconnects\":%" PRIu64 ",\"bridges_failed_over\":%" PRIu64
                ",\"bridges_still_down\":%" PRIu64
                ",\"down_ms_median\":%.1f"
                ",\"down_ms_max\":%.1f,\"unsent_at_disconnect\":%" PRIu64
                ",\"skipped_while_down\":%" PRIu64,
                reconnects, bridges_failed_over, still_down,
                down_ns_.empty() ? 0.0 : static_cast<double>(down_ns_[down_ns_.size() / 2]) / 1e6,
                down_ns_.empty() ? 0.0 : static_cast<double>(down_ns_.back()) / 1e6, unsent,
                skipped);
    // Each bridge that lost its server: how long it was without one in all (a
    // bridge still down at the end counts until then, and is listed apart).
    // At most kListedMax of each, so that a storm of 100,000 keeps the line readable.
    constexpr size_t kListedMax = 1000;
    const int64_t end = NowNs();
    std::string by_bridge, still;
    size_t listed = 0, listed_still = 0;
    for (const Bridge& bridge : bridges_) {
      if (bridge.reconnects == 0 && bridge.down_since == 0) continue;
      if (listed >= kListedMax && (bridge.down_since == 0 || listed_still >= kListedMax)) continue;
      const int64_t down =
          bridge.down_ns_total + (bridge.down_since != 0 ? end - bridge.down_since : 0);
      char value[32];
      std::snprintf(value, sizeof(value), "%.1f", static_cast<double>(down) / 1e6);
      if (listed < kListedMax) {
        ++listed;
        by_bridge += (by_bridge.empty() ? "\"" : ",\"") + bridge.account.component + "\":" + value;
      }
      if (bridge.down_since != 0 && listed_still < kListedMax) {
        ++listed_still;
        still += (still.empty() ? "\"" : ",\"") + bridge.account.component + "\"";
      }
    }
    std::printf(",\"down_ms_by_bridge\":{%s},\"bridges_down_at_end\":[%s]", by_bridge.c_str(),
                still.c_str());
    ReportStorm();
  }
  const double busy = cpu_seconds / duration;
  std::printf(",\"client_cpu_busy_fraction\":%.2f,\"bench_was_bottleneck\":%s}\n", busy,
              busy >= 0.9 ? "true" : "false");
  if (busy >= 0.9) {
    std::fprintf(stderr,
                 "stanza-bench: warning: the client thread was %.0f%% busy; the figures may "
                 "measure stanza-bench, not the server\n",
                 busy * 100);
  }
}

void Bench::ReportStorm() {
  // From the kill when there was one, else from the first drop.
  const int64_t from = kill_ns_ != 0 ? kill_ns_ : first_drop_ns_;
  const auto ms = [from](int64_t t) { return static_cast<double>(t - from) / 1e6; };
  std::sort(back_ns_.begin(), back_ns_.end());
  std::sort(connected_ns_.begin(), connected_ns_.end());
  // Mean over [from, last back], and the best 100 ms window.
  const auto rates = [&](const std::vector<int64_t>& times, double* mean, double* best) {
    *mean = *best = 0;
    if (times.empty() || from == 0) return;
    const double span_s = static_cast<double>(std::max<int64_t>(times.back() - from, 1)) / 1e9;
    *mean = static_cast<double>(times.size()) / span_s;
    size_t lo = 0;
    for (size_t hi = 0; hi < times.size(); ++hi) {
      while (times[hi] - times[lo] >= 100'000'000) ++lo;
      *best = std::max(*best, static_cast<double>(hi - lo + 1) * 10);
    }
  };
  double connects_mean = 0, connects_best = 0, handshakes_mean = 0, handshakes_best = 0;
  rates(connected_ns_, &connects_mean, &connects_best);
  rates(back_ns_, &handshakes_mean, &handshakes_best);
  const auto at = [&](double p) {
    if (back_ns_.empty() || from == 0) return 0.0;
    return ms(back_ns_[std::min(back_ns_.size() - 1,
                                static_cast<size_t>(p * static_cast<double>(back_ns_.size())))]);
  };
  // How many came back (and how many dropped) in each 100 ms from `from`, 10 minutes at most.
  const auto per_100ms = [from](const std::vector<int64_t>& times) {
    std::string text;
    if (from == 0 || times.empty()) return text;
    std::vector<uint64_t> buckets(std::min<size_t>(
        6000, static_cast<size_t>(std::max<int64_t>(times.back() - from, 0) / 100'000'000) + 1));
    for (const int64_t t : times) {
      const auto bucket = static_cast<size_t>(std::max<int64_t>(t - from, 0) / 100'000'000);
      if (bucket < buckets.size()) ++buckets[bucket];
    }
    for (const uint64_t count : buckets) text += (text.empty() ? "" : ",") + std::to_string(count);
    return text;
  };
  const std::string back_by_100ms = per_100ms(back_ns_);
  std::printf(",\"storm_drops_by_100ms\":[%s]", per_100ms(drop_ns_).c_str());
  // The client's own CPU over the storm: near 1, it measures stanza-bench, not the servers.
  const double storm_s =
      back_ns_.empty() ? 0 : static_cast<double>(back_ns_.back() - first_drop_ns_) / 1e9;
  std::printf(",\"storm_client_cpu_busy_fraction\":%.2f",
              storm_s > 0 ? (storm_cpu_end_ - storm_cpu_start_) / storm_s : 0.0);
  std::printf(",\"storm_first_back_ms\":%.1f,\"storm_back_by_100ms\":[%s]",
              back_ns_.empty() || from == 0 ? 0.0 : ms(back_ns_.front()), back_by_100ms.c_str());
  std::printf(
      ",\"storm_from\":\"%s\",\"storm_first_drop_ms\":%.1f,\"storm_bridges_back\":%zu"
      ",\"storm_back_ms_p50\":%.1f,\"storm_back_ms_p90\":%.1f,\"storm_back_ms_p99\":%.1f"
      ",\"storm_last_back_ms\":%.1f,\"storm_tcp_connects_per_s\":%.0f"
      ",\"storm_tcp_connects_per_s_best_100ms\":%.0f,\"storm_handshakes_per_s\":%.0f"
      ",\"storm_handshakes_per_s_best_100ms\":%.0f,\"connect_attempts\":%" PRIu64
      ",\"failed_attempts\":%" PRIu64 ",\"refused\":%" PRIu64 ",\"handshake_timeouts\":%" PRIu64
      ",\"stream_errors_before_ready\":%" PRIu64 ",\"bridges_gave_up\":%" PRIu64,
      kill_ns_ != 0 ? "kill" : "first_drop",
      first_drop_ns_ != 0 && from != 0 ? ms(first_drop_ns_) : 0.0, back_ns_.size(), at(0.5),
      at(0.9), at(0.99), back_ns_.empty() || from == 0 ? 0.0 : ms(back_ns_.back()), connects_mean,
      connects_best, handshakes_mean, handshakes_best, connect_attempts_, failed_attempts_,
      refused_, timed_out_, stream_errors_before_ready_, gave_up_);
  if (options_.mode == Mode::kLatency) {
    std::printf(",\"flow_by_s\":[");
    for (size_t s = 0; s < flow_by_s_.size(); ++s) {
      std::printf("%s[%" PRIu64 ",%" PRIu64 "]", s == 0 ? "" : ",", flow_by_s_[s].first,
                  flow_by_s_[s].second);
    }
    std::printf("]");
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t equals = arg.find('=');
    const std::string name = arg.substr(0, equals);
    const std::string value = equals == std::string::npos ? "" : arg.substr(equals + 1);
    if (name == "--server") {
      options.server = value;
    } else if (name == "--secrets_json") {
      options.secrets_json = value;
    } else if (name == "--mode" &&
               (value == "throughput" || value == "latency" || value == "idle")) {
      options.mode = value == "throughput" ? Mode::kThroughput
                     : value == "latency"  ? Mode::kLatency
                                           : Mode::kIdle;
    } else if (name == "--protocol" && (value == "xmpp" || value == "relay")) {
      options.protocol = value == "xmpp" ? Protocol::kXmpp : Protocol::kRelay;
    } else if (name == "--bridges") {
      options.bridges = std::atoi(value.c_str());
    } else if (name == "--window") {
      options.window = std::max(1, std::atoi(value.c_str()));
    } else if (name == "--payload_bytes") {
      options.payload_bytes = std::atoi(value.c_str());
    } else if (name == "--duration_s") {
      options.duration_s = std::max(0.1, std::atof(value.c_str()));
    } else if (name == "--warmup_s") {
      options.warmup_s = std::max(0.0, std::atof(value.c_str()));
    } else if (name == "--drain_s") {
      options.drain_s = std::max(0.0, std::atof(value.c_str()));
    } else if (name == "--rate") {
      options.rate = std::max(1.0, std::atof(value.c_str()));
    } else if (name == "--hold_s") {
      options.hold_s = std::max(0.0, std::atof(value.c_str()));
    } else if (name == "--server_pid") {
      options.server_pid = std::atoi(value.c_str());
    } else if (name == "--failover") {
      options.failover = true;
    } else if (name == "--srv") {
      options.srv_domain = value;
      options.failover = true;
    } else if (name == "--dns_server") {
      options.dns_server = value;
    } else if (name == "--kill_pid") {
      options.kill_pid = std::atoi(value.c_str());
    } else if (name == "--kill_at_s") {
      options.kill_at_s = std::max(0.0, std::atof(value.c_str()));
    } else if (name == "--source_ips") {
      options.source_ips = std::clamp(std::atoi(value.c_str()), 0, kSourceIpsMax);
    } else if (name == "--source_ip_first") {
      options.source_ip_first = std::clamp(std::atoi(value.c_str()), 0, kSourceIpsMax - 1);
    } else if (name == "--connecting_max") {
      options.connecting_max = std::max(0, std::atoi(value.c_str()));
    } else if (name == "--handshake_timeout_s") {
      options.handshake_timeout_s = std::max(0.1, std::atof(value.c_str()));
    } else if (name == "--ready_timeout_s") {
      options.ready_timeout_s = std::max(1.0, std::atof(value.c_str()));
    } else if (name == "--retries_max") {
      options.retries_max = std::max(0, std::atoi(value.c_str()));
    } else if (name == "--retry_backoff_ms") {
      options.retry_backoff_ms = std::max(1, std::atoi(value.c_str()));
    } else if (name == "--retry_backoff_max_ms") {
      options.retry_backoff_max_ms = std::max(1, std::atoi(value.c_str()));
    } else {
      if (name != "--help") std::fprintf(stderr, "stanza-bench: bad flag %s\n", arg.c_str());
      Usage();
      return name == "--help" ? 0 : 2;
    }
  }
  if (options.kill_pid > 0 &&
      (options.mode == Mode::kIdle || options.kill_at_s >= options.duration_s)) {
    std::fprintf(stderr,
                 "stanza-bench: --kill_pid needs --mode=throughput or latency and "
                 "--kill_at_s below --duration_s\n");
    return 2;
  }
  return Bench(std::move(options)).Run();
}
