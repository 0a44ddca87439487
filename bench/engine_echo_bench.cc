// engine_echo_bench: echo round trips per second and MB/s through the io_uring
// engine on loopback.
//
// The engine runs an echo handler on --shards shards; --client_threads
// threads (epoll, non-blocking sockets) drive --connections connections, each
// keeping --pipeline messages of --message_bytes in flight: when a message's
// bytes have come back, the next one is sent. After --warmup_seconds, the
// round trips completed in --seconds are counted. One line of results.
//
//   engine_echo_bench --connections=64 --shards=1 --message_bytes=128 --seconds=3
//
// The clients share the machine with the engine, so the figure is a floor for
// the engine alone; process_cpu_s (engine and clients together) near
// cores × seconds says the machine, not the engine, was the limit.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "net/engine.h"

namespace {

using stanzad::net::ConnectionId;
using stanzad::net::CrossShardMessage;
using stanzad::net::Endpoint;
using stanzad::net::Shard;
using stanzad::net::ShardHandler;

struct Flags {
  int connections = 64;
  int shards = 1;
  int client_threads = 1;
  int message_bytes = 128;
  int pipeline = 1;
  double seconds = 3;
  double warmup_seconds = 0.5;
  std::string address = "127.0.0.1:0";
};

bool ParseFlag(std::string_view argument, std::string_view name, std::string* value) {
  const std::string prefix = "--" + std::string(name) + "=";
  if (argument.substr(0, prefix.size()) != prefix) return false;
  *value = std::string(argument.substr(prefix.size()));
  return true;
}

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr,
               "engine_echo_bench: %s\nflags: --connections=N --shards=N --client_threads=N "
               "--message_bytes=N --pipeline=N --seconds=S --warmup_seconds=S --address=IP:PORT\n",
               why);
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string value;
    const std::string_view argument = argv[i];
    if (ParseFlag(argument, "connections", &value)) {
      flags.connections = std::atoi(value.c_str());
    } else if (ParseFlag(argument, "shards", &value)) {
      flags.shards = std::atoi(value.c_str());
    } else if (ParseFlag(argument, "client_threads", &value)) {
      flags.client_threads = std::atoi(value.c_str());
    } else if (ParseFlag(argument, "message_bytes", &value)) {
      flags.message_bytes = std::atoi(value.c_str());
    } else if (ParseFlag(argument, "pipeline", &value)) {
      flags.pipeline = std::atoi(value.c_str());
    } else if (ParseFlag(argument, "seconds", &value)) {
      flags.seconds = std::atof(value.c_str());
    } else if (ParseFlag(argument, "warmup_seconds", &value)) {
      flags.warmup_seconds = std::atof(value.c_str());
    } else if (ParseFlag(argument, "address", &value)) {
      flags.address = value;
    } else {
      Usage(("unknown argument " + std::string(argument)).c_str());
    }
  }
  if (flags.connections < 1 || flags.shards < 1 || flags.client_threads < 1 ||
      flags.message_bytes < 1 || flags.pipeline < 1 || flags.seconds <= 0) {
    Usage("every count must be at least 1");
  }
  return flags;
}

class EchoHandler final : public ShardHandler {
 public:
  bool OnAccept(Shard&, ConnectionId, const Endpoint&, int) override { return true; }
  void OnData(Shard& shard, ConnectionId id, std::string_view bytes) override {
    if (!shard.Send(id, bytes)) shard.Abort(id);
  }
  void OnClosed(Shard&, ConnectionId, const absl::Status&) override {}
  void OnMessage(Shard&, const CrossShardMessage&) override {}
  void OnTick(Shard&, uint64_t) override {}
};

struct ClientConnection {
  int fd = -1;
  uint64_t received = 0;   // bytes echoed back
  uint64_t requested = 0;  // bytes sent or waiting to be sent
  uint64_t sent = 0;
  bool want_write = false;
};

struct Counters {
  std::atomic<uint64_t> round_trips{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<bool> failed{false};
};

// Drives `connections` echo connections until `stop`.
void RunClient(const Endpoint& server, int connections, const Flags& flags,
               const std::atomic<bool>& stop, Counters& counters) {
  const uint64_t message_bytes = static_cast<uint64_t>(flags.message_bytes);
  const std::string payload(message_bytes * static_cast<uint64_t>(flags.pipeline), 'e');
  std::vector<char> buffer(256 * 1024);
  const int epoll = epoll_create1(EPOLL_CLOEXEC);
  std::vector<ClientConnection> peers(connections);
  for (int i = 0; i < connections; ++i) {
    ClientConnection& peer = peers[i];
    peer.fd = socket(server.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (peer.fd < 0 ||
        connect(peer.fd, reinterpret_cast<const sockaddr*>(&server.address), server.length) != 0) {
      std::perror("engine_echo_bench: connect");
      counters.failed = true;
      return;
    }
    const int one = 1;
    setsockopt(peer.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(peer.fd, F_SETFL, O_NONBLOCK);
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(epoll, EPOLL_CTL_ADD, peer.fd, &event);
    peer.requested = payload.size();
  }
  auto flush = [&](ClientConnection& peer, uint32_t index) {
    while (peer.sent < peer.requested) {
      const size_t count = std::min<uint64_t>(peer.requested - peer.sent, payload.size());
      const ssize_t n = send(peer.fd, payload.data(), count, MSG_NOSIGNAL);
      if (n > 0) {
        peer.sent += static_cast<uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EAGAIN) break;
      counters.failed = true;
      return;
    }
    const bool want_write = peer.sent < peer.requested;
    if (want_write != peer.want_write) {
      peer.want_write = want_write;
      epoll_event event{};
      event.events = EPOLLIN | (want_write ? static_cast<uint32_t>(EPOLLOUT) : 0u);
      event.data.u32 = index;
      epoll_ctl(epoll, EPOLL_CTL_MOD, peer.fd, &event);
    }
  };
  for (int i = 0; i < connections; ++i) flush(peers[i], static_cast<uint32_t>(i));

  std::vector<epoll_event> events(256);
  uint64_t round_trips = 0;
  uint64_t bytes = 0;
  while (!stop.load(std::memory_order_relaxed) && !counters.failed.load()) {
    const int ready = epoll_wait(epoll, events.data(), static_cast<int>(events.size()), 50);
    for (int e = 0; e < ready; ++e) {
      const uint32_t index = events[e].data.u32;
      ClientConnection& peer = peers[index];
      if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        const ssize_t n = recv(peer.fd, buffer.data(), buffer.size(), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
          std::fprintf(stderr, "engine_echo_bench: the server closed a connection\n");
          counters.failed = true;
          break;
        }
        if (n > 0) {
          const uint64_t before = peer.received / message_bytes;
          peer.received += static_cast<uint64_t>(n);
          const uint64_t completed = peer.received / message_bytes - before;
          round_trips += completed;
          bytes += static_cast<uint64_t>(n);
          peer.requested += completed * message_bytes;  // the next messages
        }
      }
      flush(peer, index);
    }
    counters.round_trips.store(round_trips, std::memory_order_relaxed);
    counters.bytes.store(bytes, std::memory_order_relaxed);
  }
  for (ClientConnection& peer : peers) close(peer.fd);
  close(epoll);
}

double CpuSeconds(int who) {
  rusage usage{};
  getrusage(who, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  absl::StatusOr<Endpoint> address = Endpoint::Parse(flags.address, 0);
  if (!address.ok()) Usage(std::string(address.status().message()).c_str());

  stanzad::net::EngineOptions options;
  options.shards = flags.shards;
  options.listeners.push_back({*address, 0});
  auto engine =
      stanzad::net::Engine::Start(options, [](int) { return std::make_unique<EchoHandler>(); });
  if (!engine.ok()) {
    std::fprintf(stderr, "engine_echo_bench: %s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  const Endpoint server = (*engine)->listening_endpoints().at(0);

  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<Counters>> counters;
  std::vector<std::thread> clients;
  for (int t = 0; t < flags.client_threads; ++t) {
    const int share = flags.connections / flags.client_threads +
                      (t < flags.connections % flags.client_threads ? 1 : 0);
    counters.push_back(std::make_unique<Counters>());
    if (share == 0) continue;
    clients.emplace_back(RunClient, server, share, std::cref(flags), std::cref(stop),
                         std::ref(*counters.back()));
  }
  auto totals = [&](uint64_t* round_trips, uint64_t* bytes) {
    *round_trips = *bytes = 0;
    for (const auto& c : counters) {
      *round_trips += c->round_trips.load();
      *bytes += c->bytes.load();
    }
  };
  std::this_thread::sleep_for(std::chrono::duration<double>(flags.warmup_seconds));
  uint64_t round_trips_start, bytes_start;
  totals(&round_trips_start, &bytes_start);
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = CpuSeconds(RUSAGE_SELF);
  const auto stats_start = (*engine)->stats();
  std::this_thread::sleep_for(std::chrono::duration<double>(flags.seconds));
  uint64_t round_trips_end, bytes_end;
  totals(&round_trips_end, &bytes_end);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = CpuSeconds(RUSAGE_SELF) - cpu_start;
  const auto stats_end = (*engine)->stats();
  stop = true;
  for (std::thread& client : clients) client.join();
  (*engine)->Stop();

  bool failed = false;
  for (const auto& c : counters) failed |= c->failed.load();
  uint64_t sent = 0, send_calls = 0;
  std::string accepted;
  for (size_t i = 0; i < stats_end.size(); ++i) {
    sent += stats_end[i].bytes_sent - stats_start[i].bytes_sent;
    send_calls += stats_end[i].send_calls - stats_start[i].send_calls;
    accepted += (i ? "/" : "") + std::to_string(stats_end[i].connections_accepted);
  }
  const double round_trips_per_s =
      static_cast<double>(round_trips_end - round_trips_start) / elapsed;
  const double megabytes_per_s = static_cast<double>(bytes_end - bytes_start) / elapsed / 1e6;
  std::printf(
      "engine_echo_bench connections=%d shards=%d client_threads=%d message_bytes=%d pipeline=%d "
      "seconds=%.2f round_trips_per_s=%.0f echo_MB_per_s=%.1f bytes_per_send_call=%.0f "
      "accepted_per_shard=%s process_cpu_s=%.2f%s\n",
      flags.connections, flags.shards, flags.client_threads, flags.message_bytes, flags.pipeline,
      elapsed, round_trips_per_s, megabytes_per_s,
      send_calls ? static_cast<double>(sent) / static_cast<double>(send_calls) : 0.0,
      accepted.c_str(), cpu, failed ? " FAILED" : "");
  return failed ? 1 : 0;
}
