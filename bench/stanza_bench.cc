// stanza-bench (throughput mode): N call bridges as XEP-0114 components on one
// epoll thread. Bridge i sends messages to bridge (i+1) % N, keeping --window
// messages in flight; a message counts when its receiver has it. After
// --warmup_s, the stanzas received during --duration_s are counted.
//
//   stanzactl --state_dir=DIR --json callbridge list > secrets.json
//   stanza-bench --server=127.0.0.1:5223 --secrets_json=secrets.json --bridges=20
//
// Prints one JSON line: stanzas_per_s, per-bridge min and max, errors seen, and
// the client's CPU use (bench_was_bottleneck when its thread was >= 90% busy).
// Only throughput is here; latency and idle modes, and the relay baseline, are
// open work (issue 4). Every run is bounded by --duration_s + --warmup_s + 30 s.
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
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/xmpp/component_handshake.h"

namespace {

struct Options {
  std::string server = "127.0.0.1:5223";
  std::string secrets_json;
  int bridges = 20;
  int window = 32;
  int payload_bytes = 100;
  double duration_s = 10;
  double warmup_s = 2;
};

struct BridgeAccount {
  std::string component;  // cb1.example.com
  std::string secret;
};

enum class Phase { kAwaitingHeader, kAwaitingHandshake, kReady };

struct Bridge {
  int fd = -1;
  BridgeAccount account;
  Phase phase = Phase::kAwaitingHeader;
  std::string in;   // unparsed input (header phase) or the tail kept for matching
  std::string out;  // bytes waiting for the socket
  int in_flight = 0;
  uint64_t sent = 0;
  uint64_t received = 0;
  uint64_t received_in_window = 0;
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "stanza-bench: %s\n", message.c_str());
  std::exit(1);
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
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

void Flush(Bridge& bridge) {
  while (!bridge.out.empty()) {
    const ssize_t n = send(bridge.fd, bridge.out.data(), bridge.out.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) Die(bridge.account.component + ": send failed: " + std::strerror(errno));
    bridge.out.erase(0, static_cast<size_t>(n));
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
    } else if (name == "--bridges") {
      options.bridges = std::atoi(value.c_str());
    } else if (name == "--window") {
      options.window = std::atoi(value.c_str());
    } else if (name == "--payload_bytes") {
      options.payload_bytes = std::atoi(value.c_str());
    } else if (name == "--duration_s") {
      options.duration_s = std::atof(value.c_str());
    } else if (name == "--warmup_s") {
      options.warmup_s = std::atof(value.c_str());
    } else {
      std::fprintf(stderr,
                   "usage: stanza-bench --server=HOST:PORT --secrets_json=FILE [--bridges=20] "
                   "[--window=32] [--payload_bytes=100] [--duration_s=10] [--warmup_s=2]\n");
      return 2;
    }
  }
  std::vector<BridgeAccount> accounts = ReadAccounts(options.secrets_json);
  if (options.bridges < 2 || options.bridges > static_cast<int>(accounts.size())) {
    Die("--bridges must be between 2 and the " + std::to_string(accounts.size()) + " bridges in " +
        options.secrets_json);
  }
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;
  setrlimit(RLIMIT_NOFILE, &files);

  const sockaddr_in server = ParseServer(options.server);
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Bridge> bridges(static_cast<size_t>(options.bridges));
  for (size_t i = 0; i < bridges.size(); ++i) {
    Bridge& bridge = bridges[i];
    bridge.account = accounts[i];
    bridge.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(bridge.fd, reinterpret_cast<const sockaddr*>(&server), sizeof(server)) != 0) {
      Die("cannot connect to " + options.server + ": " + std::strerror(errno));
    }
    const int one = 1;
    setsockopt(bridge.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(bridge.fd, F_SETFL, O_NONBLOCK);
    epoll_event event{};
    event.events = EPOLLIN | EPOLLOUT | EPOLLET;
    event.data.u64 = i;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, bridge.fd, &event);
    bridge.out =
        "<stream:stream xmlns='jabber:component:accept' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='" +
        bridge.account.component + "'>";
    Flush(bridge);
  }

  const std::string payload(static_cast<size_t>(std::max(1, options.payload_bytes)), 'x');
  const auto queue_message = [&](size_t from) {
    Bridge& sender = bridges[from];
    const Bridge& receiver = bridges[(from + 1) % bridges.size()];
    sender.out += "<message from='" + sender.account.component + "' to='" +
                  receiver.account.component + "' id='" + std::to_string(sender.sent) + "'><body>" +
                  payload + "</body></message>";
    ++sender.sent;
    ++sender.in_flight;
  };

  size_t ready = 0;
  uint64_t errors = 0;
  bool started = false;
  double window_start = 0, window_end = 0;
  double cpu_start = 0;
  const double deadline = Now() + options.warmup_s + options.duration_s + 30;
  std::vector<char> buffer(256 * 1024);
  std::vector<epoll_event> events(1024);
  constexpr std::string_view kEnd = "</message>";
  while (true) {
    const double now = Now();
    if (now > deadline) Die("timed out (" + std::to_string(ready) + " bridges ready)");
    if (started && now >= window_end) break;
    if (!started && ready == bridges.size()) {
      started = true;
      window_start = now + options.warmup_s;
      window_end = window_start + options.duration_s;
      std::fprintf(stderr, "stanza-bench: %zu bridges authenticated; running\n", ready);
      for (size_t i = 0; i < bridges.size(); ++i) {
        for (int k = 0; k < options.window; ++k) queue_message(i);
        Flush(bridges[i]);
      }
    }
    const bool measuring = started && now >= window_start;
    if (measuring && cpu_start == 0) cpu_start = ThreadCpuSeconds();
    const int count = epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()), 100);
    for (int e = 0; e < count; ++e) {
      Bridge& bridge = bridges[events[e].data.u64];
      if (events[e].events & EPOLLOUT) Flush(bridge);
      if (!(events[e].events & EPOLLIN)) continue;
      while (true) {
        const ssize_t n = recv(bridge.fd, buffer.data(), buffer.size(), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (n <= 0)
          Die(bridge.account.component +
              ": connection closed by the server: " + bridge.in.substr(0, 400));
        std::string_view data(buffer.data(), static_cast<size_t>(n));
        if (bridge.phase != Phase::kReady) {
          bridge.in.append(data);
          if (bridge.in.find("<stream:error") != std::string::npos) {
            Die(bridge.account.component + ": stream error: " + bridge.in);
          }
          if (bridge.phase == Phase::kAwaitingHeader) {
            size_t id = bridge.in.find(" id='");
            if (id == std::string::npos) id = bridge.in.find(" id=\"");
            const size_t close = bridge.in.find('>', id == std::string::npos ? 0 : id);
            if (id != std::string::npos && close != std::string::npos) {
              const char quote = bridge.in[id + 4];
              const size_t end = bridge.in.find(quote, id + 5);
              const std::string stream_id = bridge.in.substr(id + 5, end - id - 5);
              bridge.out +=
                  "<handshake>" +
                  stanzad::xmpp::ComponentHandshakeDigest(stream_id, bridge.account.secret) +
                  "</handshake>";
              Flush(bridge);
              bridge.phase = Phase::kAwaitingHandshake;
            }
          }
          if (bridge.phase == Phase::kAwaitingHandshake &&
              bridge.in.find("<handshake/>") != std::string::npos) {
            bridge.phase = Phase::kReady;
            bridge.in.clear();
            ++ready;
          }
          continue;
        }
        // Count complete messages; keep a tail in case "</message>" is split.
        std::string joined = bridge.in;
        joined.append(data);
        size_t at = 0;
        uint64_t got = 0;
        while ((at = joined.find(kEnd, at)) != std::string::npos) {
          ++got;
          at += kEnd.size();
        }
        if (joined.find("type='error'") != std::string::npos) ++errors;
        // A match needs all of kEnd, so keeping one byte less never counts twice.
        const size_t keep = kEnd.size() - 1;
        bridge.in = joined.substr(joined.size() > keep ? joined.size() - keep : 0);
        bridge.received += got;
        if (Now() >= window_start && started) bridge.received_in_window += got;
        // Each message received frees a slot of the bridge that sent it.
        const size_t sender = (&bridge - bridges.data() + bridges.size() - 1) % bridges.size();
        Bridge& from = bridges[sender];
        for (uint64_t k = 0; k < got; ++k) {
          --from.in_flight;
          queue_message(sender);
        }
        Flush(from);
      }
    }
  }
  const double cpu = ThreadCpuSeconds() - cpu_start;
  uint64_t total = 0, min_bridge = UINT64_MAX, max_bridge = 0;
  for (const Bridge& bridge : bridges) {
    total += bridge.received_in_window;
    min_bridge = std::min(min_bridge, bridge.received_in_window);
    max_bridge = std::max(max_bridge, bridge.received_in_window);
    close(bridge.fd);
  }
  const double busy = cpu / options.duration_s;
  std::printf(
      "{\"mode\":\"throughput\",\"server\":\"%s\",\"bridges\":%d,\"window\":%d,"
      "\"payload_bytes\":%d,\"duration_s\":%.1f,\"stanzas_per_s\":%.0f,"
      "\"per_bridge_min_per_s\":%.0f,\"per_bridge_max_per_s\":%.0f,\"error_replies\":%llu,"
      "\"client_cpu_busy_fraction\":%.2f,\"bench_was_bottleneck\":%s}\n",
      options.server.c_str(), options.bridges, options.window, options.payload_bytes,
      options.duration_s, static_cast<double>(total) / options.duration_s,
      static_cast<double>(min_bridge) / options.duration_s,
      static_cast<double>(max_bridge) / options.duration_s, static_cast<unsigned long long>(errors),
      busy, busy >= 0.9 ? "true" : "false");
  return 0;
}
