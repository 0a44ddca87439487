// The io_uring engine over real loopback sockets (127.0.0.1 and ::1, port 0).
// Every wait is bounded; a hang fails the test instead of stalling the run.
#include "net/engine.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace stanzad::net {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Server side: a handler whose behaviour each test plugs in.

struct Hooks {
  std::function<bool(Shard&, ConnectionId, const Endpoint&, int)> on_accept;
  // Default: echo.
  std::function<void(Shard&, ConnectionId, std::string_view)> on_data;
  std::function<void(Shard&, ConnectionId, const absl::Status&)> on_closed;
  std::function<void(Shard&, const CrossShardMessage&)> on_message;
  std::function<void(Shard&, uint64_t)> on_tick;
  std::function<void(Shard&)> on_stop;
  std::function<void(Shard&, ConnectionId)> on_connected;
};

// What every handler records, shared by all shards of an engine.
struct Record {
  std::mutex mutex;
  std::map<ConnectionId, int> closed_count;  // guarded by mutex
  std::map<ConnectionId, absl::Status> closed_reason;
  std::set<ConnectionId> open;
  std::atomic<int> accepted{0};
  std::atomic<int> connected{0};
  std::atomic<int> closed{0};
  std::atomic<int> stopped{0};
  std::atomic<int> callbacks_after_stop{0};  // OnTick/OnMessage after OnStop: must stay 0
  std::atomic<bool> wrong_thread{false};

  int ClosedCount(ConnectionId id) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = closed_count.find(id);
    return it == closed_count.end() ? 0 : it->second;
  }
  absl::Status Reason(ConnectionId id) {
    std::lock_guard<std::mutex> lock(mutex);
    return closed_reason.count(id) ? closed_reason[id] : absl::UnknownError("not closed");
  }
  std::vector<ConnectionId> Open() {
    std::lock_guard<std::mutex> lock(mutex);
    return std::vector<ConnectionId>(open.begin(), open.end());
  }
};

class HookHandler final : public ShardHandler {
 public:
  HookHandler(const Hooks& hooks, Record& record) : hooks_(hooks), record_(record) {}

  bool OnAccept(Shard& shard, ConnectionId id, const Endpoint& peer, int tag) override {
    CheckThread();
    EXPECT_EQ(ShardOf(id), shard.index());
    if (hooks_.on_accept && !hooks_.on_accept(shard, id, peer, tag)) return false;
    std::lock_guard<std::mutex> lock(record_.mutex);
    record_.open.insert(id);
    record_.accepted.fetch_add(1);
    return true;
  }
  void OnData(Shard& shard, ConnectionId id, std::string_view bytes) override {
    CheckThread();
    if (hooks_.on_data) {
      hooks_.on_data(shard, id, bytes);
    } else {
      EXPECT_TRUE(shard.Send(id, bytes));
    }
  }
  void OnClosed(Shard& shard, ConnectionId id, const absl::Status& reason) override {
    CheckThread();
    EXPECT_FALSE(shard.Send(id, "x")) << "a closed id must be dead";
    {
      std::lock_guard<std::mutex> lock(record_.mutex);
      ++record_.closed_count[id];
      record_.closed_reason[id] = reason;
      record_.open.erase(id);
    }
    record_.closed.fetch_add(1);
    if (hooks_.on_closed) hooks_.on_closed(shard, id, reason);
  }
  void OnConnected(Shard& shard, ConnectionId id) override {
    CheckThread();
    EXPECT_EQ(ShardOf(id), shard.index());
    {
      std::lock_guard<std::mutex> lock(record_.mutex);
      EXPECT_EQ(record_.open.count(id), 1u) << "OnConnected for an id Connect did not return";
    }
    record_.connected.fetch_add(1);
    if (hooks_.on_connected) hooks_.on_connected(shard, id);
  }
  void OnMessage(Shard& shard, const CrossShardMessage& message) override {
    CheckThread();
    if (stopped_) record_.callbacks_after_stop.fetch_add(1);
    if (hooks_.on_message) hooks_.on_message(shard, message);
  }
  void OnTick(Shard& shard, uint64_t now_ms) override {
    CheckThread();
    if (stopped_) record_.callbacks_after_stop.fetch_add(1);
    if (hooks_.on_tick) hooks_.on_tick(shard, now_ms);
  }
  void OnStop(Shard& shard) override {
    CheckThread();
    stopped_ = true;
    record_.stopped.fetch_add(1);
    if (hooks_.on_stop) hooks_.on_stop(shard);
  }

 private:
  void CheckThread() {
    if (thread_ == std::thread::id()) thread_ = std::this_thread::get_id();
    if (thread_ != std::this_thread::get_id()) record_.wrong_thread = true;
  }

  const Hooks& hooks_;
  Record& record_;
  std::thread::id thread_;
  bool stopped_ = false;
};

// An engine with HookHandlers, stopped and checked on destruction.
class TestEngine {
 public:
  TestEngine(EngineOptions options, Hooks hooks) : hooks_(std::move(hooks)) {
    auto engine = Engine::Start(options, [this](int) -> std::unique_ptr<ShardHandler> {
      return std::make_unique<HookHandler>(hooks_, record_);
    });
    if (!engine.ok()) {
      status_ = engine.status();
      return;
    }
    engine_ = std::move(*engine);
  }
  ~TestEngine() { Stop(); }

  void Stop() {
    if (engine_ == nullptr) return;
    engine_->Stop();
    EXPECT_FALSE(record_.wrong_thread) << "a callback ran on another shard's thread";
    EXPECT_EQ(record_.callbacks_after_stop.load(), 0);
    std::lock_guard<std::mutex> lock(record_.mutex);
    EXPECT_TRUE(record_.open.empty()) << record_.open.size() << " connections got no OnClosed";
    for (const auto& [id, count] : record_.closed_count) EXPECT_EQ(count, 1) << "id " << id;
  }

  const absl::Status& status() const { return status_; }
  Engine& engine() { return *engine_; }
  Record& record() { return record_; }
  Endpoint endpoint(size_t i = 0) const { return engine_->listening_endpoints().at(i); }

 private:
  Hooks hooks_;
  Record record_;
  absl::Status status_;
  std::unique_ptr<Engine> engine_;
};

EngineOptions Options(int shards, std::vector<std::string> addresses = {"127.0.0.1:0"}) {
  EngineOptions options;
  options.shards = shards;
  options.tick_ms = 10;
  options.recv_buffer_count = 256;
  options.ring_entries = 256;
  options.cross_shard_queue_bytes = 64 * 1024;
  for (size_t i = 0; i < addresses.size(); ++i) {
    absl::StatusOr<Endpoint> endpoint = Endpoint::Parse(addresses[i], 0);
    EXPECT_TRUE(endpoint.ok()) << endpoint.status();
    options.listeners.push_back(ListenerConfig{*endpoint, static_cast<int>(i)});
  }
  return options;
}

template <typename Predicate>
bool WaitFor(Predicate predicate, milliseconds timeout = milliseconds(5000)) {
  const auto deadline = Clock::now() + timeout;
  while (!predicate()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

// ---------------------------------------------------------------------------
// Client side: blocking sockets with timeouts.

class Client {
 public:
  explicit Client(const Endpoint& endpoint, int receive_buffer_bytes = 0) {
    fd_ = socket(endpoint.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    timeval timeout{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    if (receive_buffer_bytes > 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof(receive_buffer_bytes));
    }
    if (connect(fd_, reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  bool Write(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads exactly `count` bytes, or fewer on EOF, error or timeout.
  std::string Read(size_t count) {
    std::string bytes;
    char buffer[65536];
    while (bytes.size() < count) {
      const ssize_t n = recv(fd_, buffer, std::min(sizeof(buffer), count - bytes.size()), 0);
      if (n <= 0) break;
      bytes.append(buffer, static_cast<size_t>(n));
    }
    return bytes;
  }

  // Reads until EOF. Returns false on error or timeout.
  bool ReadToEof(std::string* bytes) {
    char buffer[65536];
    while (true) {
      const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n == 0) return true;
      if (n < 0) return false;
      bytes->append(buffer, static_cast<size_t>(n));
    }
  }

  // True if the server closed the connection (EOF or reset) within the timeout.
  bool SeesClose(milliseconds timeout = milliseconds(5000)) {
    pollfd poll_fd{fd_, POLLIN, 0};
    if (poll(&poll_fd, 1, static_cast<int>(timeout.count())) != 1) return false;
    char byte;
    const ssize_t n = recv(fd_, &byte, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

  // True if the server reset the connection (RST, not FIN) within the timeout; any
  // bytes before it are read and dropped.
  bool SeesReset() {
    char buffer[65536];
    while (true) {
      const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n > 0) continue;
      return n < 0 && errno == ECONNRESET;
    }
  }

  // Closes with RST instead of FIN.
  void Reset() {
    linger option{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &option, sizeof(option));
    close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

std::string Pattern(size_t length, uint64_t seed) {
  std::string bytes(length, '\0');
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < length; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    bytes[i] = static_cast<char>(state);
  }
  return bytes;
}

int CountOpenFds() {
  int count = 0;
  DIR* directory = opendir("/proc/self/fd");
  if (directory == nullptr) return -1;
  while (dirent* entry = readdir(directory)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(directory);
  return count - 1;  // the directory's own fd
}

bool Ipv6LoopbackWorks() {
  const int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_addr = in6addr_loopback;
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return ok;
}

// ---------------------------------------------------------------------------

TEST(EngineTest, EchoRoundTripIpv4) {
  TestEngine server(Options(1), Hooks{});
  ASSERT_TRUE(server.status().ok()) << server.status();
  EXPECT_EQ(server.endpoint().ToString().rfind("127.0.0.1:", 0), 0u);
  EXPECT_NE(server.endpoint().ToString(), "127.0.0.1:0");
  Client client(server.endpoint());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Write("hello, engine"));
  EXPECT_EQ(client.Read(13), "hello, engine");
  const std::string big = Pattern(300000, 1);  // many recv buffers, several sends
  ASSERT_TRUE(client.Write(big));
  EXPECT_EQ(client.Read(big.size()), big);
}

TEST(EngineTest, EchoRoundTripIpv6) {
  if (!Ipv6LoopbackWorks()) GTEST_SKIP() << "no IPv6 loopback here";
  TestEngine server(Options(2, {"[::1]:0", "127.0.0.1:0"}), Hooks{});
  ASSERT_TRUE(server.status().ok()) << server.status();
  EXPECT_EQ(server.endpoint(0).ToString().rfind("[::1]:", 0), 0u);
  for (int i = 0; i < 8; ++i) {
    Client client(server.endpoint(0));
    ASSERT_TRUE(client.connected());
    const std::string message = "over ipv6 #" + std::to_string(i);
    ASSERT_TRUE(client.Write(message));
    EXPECT_EQ(client.Read(message.size()), message);
  }
  Client v4(server.endpoint(1));
  ASSERT_TRUE(v4.Write("v4 too"));
  EXPECT_EQ(v4.Read(6), "v4 too");
}

TEST(EngineTest, ListenerTagAndPeerReachOnAccept) {
  std::atomic<int> tag_seen{-1};
  std::mutex mutex;
  std::string peer_seen;
  Hooks hooks;
  hooks.on_accept = [&](Shard&, ConnectionId, const Endpoint& peer, int tag) {
    std::lock_guard<std::mutex> lock(mutex);
    peer_seen = peer.ToString();
    tag_seen = tag;
    return true;
  };
  TestEngine server(Options(1, {"127.0.0.1:0", "127.0.0.1:0"}), hooks);
  ASSERT_TRUE(server.status().ok()) << server.status();
  Client client(server.endpoint(1));
  ASSERT_TRUE(client.Write("x"));
  EXPECT_EQ(client.Read(1), "x");
  EXPECT_EQ(tag_seen.load(), 1);
  sockaddr_storage local{};
  socklen_t length = sizeof(local);
  getsockname(client.fd(), reinterpret_cast<sockaddr*>(&local), &length);
  Endpoint local_endpoint{local, length};
  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_EQ(peer_seen, local_endpoint.ToString());
}

// 2 shards, 500 connections, each sending its own byte pattern in pieces:
// every connection gets exactly its bytes back, in order.
TEST(EngineTest, ManyConnectionsOnTwoShardsKeepTheirBytesInOrder) {
  constexpr int kConnections = 500;
  constexpr size_t kBytesPerConnection = 20000;
  constexpr size_t kPieceBytes = 1000;
  TestEngine server(Options(2), Hooks{});
  ASSERT_TRUE(server.status().ok()) << server.status();

  struct Peer {
    int fd = -1;
    std::string expected;
    size_t written = 0;
    std::string received;
  };
  std::vector<Peer> peers(kConnections);
  for (int i = 0; i < kConnections; ++i) {
    Client client(server.endpoint());
    ASSERT_TRUE(client.connected()) << "connection " << i;
    peers[i].fd = dup(client.fd());
    fcntl(peers[i].fd, F_SETFL, O_NONBLOCK);
    peers[i].expected = Pattern(kBytesPerConnection, i);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  size_t done = 0;
  char buffer[65536];
  while (done < kConnections && Clock::now() < deadline) {
    std::vector<pollfd> polls;
    for (Peer& peer : peers) {
      short events = 0;
      if (peer.received.size() < kBytesPerConnection) events |= POLLIN;
      // Keep at most a few pieces in flight, so both directions interleave.
      if (peer.written < kBytesPerConnection &&
          peer.written < peer.received.size() + 4 * kPieceBytes) {
        events |= POLLOUT;
      }
      polls.push_back(pollfd{peer.fd, events, 0});
    }
    if (poll(polls.data(), polls.size(), 100) < 0) break;
    for (size_t i = 0; i < peers.size(); ++i) {
      Peer& peer = peers[i];
      if (polls[i].revents & POLLOUT) {
        const size_t count = std::min(kPieceBytes, kBytesPerConnection - peer.written);
        const ssize_t n = send(peer.fd, peer.expected.data() + peer.written, count, MSG_NOSIGNAL);
        if (n > 0) peer.written += static_cast<size_t>(n);
      }
      if (polls[i].revents & (POLLIN | POLLERR | POLLHUP)) {
        const ssize_t n = recv(peer.fd, buffer, sizeof(buffer), 0);
        ASSERT_NE(n, 0) << "server closed connection " << i;
        if (n > 0) {
          peer.received.append(buffer, static_cast<size_t>(n));
          if (peer.received.size() == kBytesPerConnection) ++done;
        }
      }
    }
  }
  EXPECT_EQ(done, kConnections);
  for (int i = 0; i < kConnections; ++i) {
    ASSERT_EQ(peers[i].received, peers[i].expected) << "connection " << i;
    close(peers[i].fd);
  }
  const std::vector<ShardStats> stats = server.engine().stats();
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].connections_accepted + stats[1].connections_accepted, kConnections);
  // SO_REUSEPORT spreads by hash: with 500 connections both shards get some.
  EXPECT_GT(stats[0].connections_accepted, 0u);
  EXPECT_GT(stats[1].connections_accepted, 0u);
  std::printf("balance: shard0=%llu shard1=%llu; bytes per send call %.0f\n",
              static_cast<unsigned long long>(stats[0].connections_accepted),
              static_cast<unsigned long long>(stats[1].connections_accepted),
              static_cast<double>(stats[0].bytes_sent + stats[1].bytes_sent) /
                  static_cast<double>(stats[0].send_calls + stats[1].send_calls));
  EXPECT_TRUE(WaitFor([&] { return server.record().closed.load() == kConnections; }));
}

// Every shard and the external producer post numbered records to every shard
// (itself included), through queues small enough to fill up: each receiver
// sees each producer's records complete and in order.
TEST(EngineTest, CrossShardPostsArriveInOrderBetweenEveryPair) {
  constexpr int kShards = 3;
  constexpr int kProducers = kShards + 1;
  constexpr uint64_t kRecords = 20000;
  std::atomic<int> errors{0};
  // [receiver][producer], each touched only by the receiver's thread.
  std::vector<std::vector<uint64_t>> next(kShards, std::vector<uint64_t>(kProducers, 0));
  std::atomic<uint64_t> delivered{0};
  // [producer][receiver]: records sent so far, touched only by the producer.
  std::vector<std::vector<uint64_t>> sent(kProducers, std::vector<uint64_t>(kShards, 0));

  auto payload = [](uint64_t producer, uint64_t sequence) {
    return Pattern(sequence % 97, producer * 1000003 + sequence);
  };
  auto produce = [&](auto&& post, int producer) {
    for (int to = 0; to < kShards; ++to) {
      uint64_t& count = sent[producer][to];
      while (count < kRecords && post(to, 7, MakeConnectionId(to, 1, 1),
                                      (uint64_t{static_cast<uint32_t>(producer)} << 32) | count,
                                      payload(producer, count))) {
        ++count;
      }
    }
  };
  Hooks hooks;
  hooks.on_tick = [&](Shard& shard, uint64_t) {
    produce([&](int to, uint32_t kind, ConnectionId target, uint64_t argument,
                const std::string& bytes) { return shard.Post(to, kind, target, argument, bytes); },
            shard.index());
  };
  hooks.on_message = [&](Shard& shard, const CrossShardMessage& message) {
    const uint64_t producer = message.argument >> 32;
    const uint64_t sequence = message.argument & 0xFFFFFFFF;
    if (message.kind != 7 || message.target != MakeConnectionId(shard.index(), 1, 1) ||
        producer >= kProducers || sequence != next[shard.index()][producer] ||
        message.payload != payload(producer, sequence)) {
      errors.fetch_add(1);
      return;
    }
    ++next[shard.index()][producer];
    delivered.fetch_add(1);
  };
  EngineOptions options = Options(kShards, {});
  options.tick_ms = 1;
  options.cross_shard_queue_bytes = 16 * 1024;  // fills up: Post must say so
  TestEngine server(options, hooks);
  ASSERT_TRUE(server.status().ok()) << server.status();

  const auto deadline = Clock::now() + std::chrono::seconds(30);
  bool external_done = false;
  while (!external_done && Clock::now() < deadline) {
    produce(
        [&](int to, uint32_t kind, ConnectionId target, uint64_t argument,
            const std::string& bytes) {
          return server.engine().Post(to, kind, target, argument, bytes);
        },
        kShards);
    external_done = true;
    for (int to = 0; to < kShards; ++to) external_done &= sent[kShards][to] == kRecords;
    if (!external_done) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  EXPECT_TRUE(WaitFor([&] { return delivered.load() == kShards * kProducers * kRecords; },
                      std::chrono::seconds(30)))
      << delivered.load() << " of " << kShards * kProducers * kRecords;
  EXPECT_EQ(errors.load(), 0);
  server.Stop();
  uint64_t messages = 0;
  for (const ShardStats& stats : server.engine().stats()) messages += stats.messages_received;
  EXPECT_EQ(messages, kShards * kProducers * kRecords);
}

// With ticks an hour apart, shards sleep in the kernel: only the doorbell can
// wake them, from the external producer and from another shard.
TEST(EngineTest, DoorbellWakesSleepingShards) {
  constexpr uint32_t kPing = 1;
  constexpr uint32_t kPong = 2;
  std::atomic<int> external_seen{0};
  Hooks hooks;
  hooks.on_data = [&](Shard& shard, ConnectionId id, std::string_view) {
    // Around every other shard and back: ping → shard (i+1) → pong → owner.
    shard.Post((shard.index() + 1) % shard.shard_count(), kPing, id, 0, "ping");
  };
  hooks.on_message = [&](Shard& shard, const CrossShardMessage& message) {
    if (message.kind == kPing) {
      shard.Post(ShardOf(message.target), kPong, message.target, 0, "pong");
    } else if (message.kind == kPong) {
      EXPECT_EQ(ShardOf(message.target), shard.index());
      shard.Send(message.target, message.payload);
    } else {
      external_seen.fetch_add(1);
    }
  };
  EngineOptions options = Options(2);
  options.tick_ms = 3600 * 1000;
  TestEngine server(options, hooks);
  ASSERT_TRUE(server.status().ok()) << server.status();
  std::this_thread::sleep_for(milliseconds(50));  // let both shards fall asleep
  // Asleep, not spinning: an idle shard loops only when woken.
  const uint64_t iterations_before = server.engine().stats()[0].loop_iterations;
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_LE(server.engine().stats()[0].loop_iterations - iterations_before, 2u);

  for (int round = 0; round < 20; ++round) {
    const auto start = Clock::now();
    ASSERT_TRUE(server.engine().Post(round % 2, 99, kNoConnection, 0, "wake up"));
    ASSERT_TRUE(WaitFor([&] { return external_seen.load() == round + 1; }, milliseconds(2000)));
    EXPECT_LT(Clock::now() - start, milliseconds(1000));
  }
  for (int i = 0; i < 20; ++i) {
    Client client(server.endpoint());
    ASSERT_TRUE(client.Write("?"));
    EXPECT_EQ(client.Read(4), "pong") << "connection " << i;
  }
  uint64_t wakeups = 0;
  for (const ShardStats& stats : server.engine().stats()) wakeups += stats.wakeups_by_doorbell;
  EXPECT_GT(wakeups, 0u);
}

// Two small recv buffers for 20 busy connections: recv runs out of buffers
// (-ENOBUFS) and must be re-armed without losing or reordering a byte.
TEST(EngineTest, RecvBufferExhaustionLosesNothing) {
  EngineOptions options = Options(1);
  options.recv_buffer_count = 2;
  options.recv_buffer_bytes = 512;
  TestEngine server(options, Hooks{});
  ASSERT_TRUE(server.status().ok()) << server.status();
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::string> sent;
  for (int i = 0; i < 20; ++i) {
    clients.push_back(std::make_unique<Client>(server.endpoint()));
    ASSERT_TRUE(clients.back()->connected());
  }
  for (int round = 0; round < 3; ++round) {
    sent.clear();
    for (int i = 0; i < 20; ++i) {
      sent.push_back(Pattern(40000, round * 100 + i));
      ASSERT_TRUE(clients[i]->Write(sent.back()));
    }
    for (int i = 0; i < 20; ++i) ASSERT_EQ(clients[i]->Read(sent[i].size()), sent[i]) << i;
  }
  // The test is about the re-arm: it must have happened (thousands of times here).
  EXPECT_GT(server.engine().stats()[0].recv_buffers_exhausted, 0u);
}

TEST(EngineTest, OnTickRunsPeriodicallyWithAMonotonicClock) {
  constexpr int kTicks = 10;
  constexpr uint64_t kTickMs = 20;
  std::mutex mutex;
  std::vector<uint64_t> times_ms;  // each tick's now_ms, the first kTicks
  std::atomic<bool> clock_differs{false};
  Hooks hooks;
  hooks.on_tick = [&](Shard& shard, uint64_t now_ms) {
    if (shard.now_ms() != now_ms) clock_differs = true;
    std::lock_guard<std::mutex> lock(mutex);
    if (times_ms.size() < kTicks) times_ms.push_back(now_ms);
  };
  EngineOptions options = Options(1, {});
  options.tick_ms = kTickMs;
  timespec before;
  clock_gettime(CLOCK_MONOTONIC, &before);  // the shard's clock, read before it starts
  const uint64_t before_ms =
      static_cast<uint64_t>(before.tv_sec) * 1000 + static_cast<uint64_t>(before.tv_nsec) / 1000000;
  TestEngine server(options, hooks);
  ASSERT_TRUE(server.status().ok()) << server.status();
  // Waits for the ticks instead of counting those within a fixed sleep: a loaded
  // machine delays ticks, so only what it cannot do is asserted.
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard<std::mutex> lock(mutex);
        return times_ms.size() == kTicks;
      },
      milliseconds(10000)));
  server.Stop();
  EXPECT_FALSE(clock_differs.load());
  std::lock_guard<std::mutex> lock(mutex);
  for (size_t k = 0; k < times_ms.size(); ++k) {
    // A monotonic clock, and never ahead of the schedule: tick k is due tick_ms after
    // tick k-1 was due (late ones are not replayed), the first tick_ms after start.
    if (k > 0) {
      EXPECT_GT(times_ms[k], times_ms[k - 1]) << "tick " << k;
    }
    EXPECT_GE(times_ms[k], before_ms + (k + 1) * kTickMs) << "tick " << k;
  }
}

// A client that never reads: its queue fills to the limit, Send says no, and
// the engine keeps serving everyone else.
TEST(EngineTest, SlowReaderHitsTheQueueLimitAndOthersStayServed) {
  constexpr size_t kQueueMax = 256 * 1024;
  std::atomic<ConnectionId> flood_id{kNoConnection};
  std::atomic<bool> flooding{false};
  std::atomic<bool> refused{false};
  std::atomic<size_t> queued_when_refused{0};
  const std::string piece(4096, 'f');
  Hooks hooks;
  hooks.on_data = [&](Shard& shard, ConnectionId id, std::string_view bytes) {
    if (bytes == "flood") {
      flood_id = id;
      flooding = true;
    } else {
      shard.Send(id, bytes);
    }
  };
  hooks.on_tick = [&](Shard& shard, uint64_t) {
    if (!flooding.load()) return;
    const ConnectionId id = flood_id.load();
    for (int i = 0; i < 100; ++i) {
      const size_t before = shard.QueuedBytes(id);
      if (!shard.Send(id, piece)) {
        EXPECT_GT(before + piece.size(), kQueueMax);
        EXPECT_EQ(shard.QueuedBytes(id), before);
        queued_when_refused = before;
        refused = true;
        // Once: a later tick would find the connection the test resets at its end (a
        // send refused then is not the queue's: 12 of 400 runs failed so under load).
        flooding = false;
        return;
      }
      EXPECT_LE(shard.QueuedBytes(id), kQueueMax);
    }
  };
  EngineOptions options = Options(1);
  options.connection_queue_bytes_max = kQueueMax;
  TestEngine server(options, hooks);
  ASSERT_TRUE(server.status().ok()) << server.status();

  // (The "reset" once blamed on a 4 KiB receive buffer was the test's own: a tick after
  // slow.Reset() below sent again; fixed with `flooding`.)
  Client slow(server.endpoint(), /*receive_buffer_bytes=*/65536);
  ASSERT_TRUE(slow.Write("flood"));
  ASSERT_TRUE(WaitFor([&] { return refused.load(); }));
  EXPECT_GT(queued_when_refused.load(), kQueueMax - piece.size());

  for (int i = 0; i < 20; ++i) {
    Client other(server.endpoint());
    const std::string message = "still here " + std::to_string(i);
    ASSERT_TRUE(other.Write(message));
    EXPECT_EQ(other.Read(message.size()), message);
  }
  const ConnectionId id = flood_id.load();
  EXPECT_EQ(server.record().ClosedCount(id), 0);
  slow.Reset();
  EXPECT_TRUE(WaitFor([&] { return server.record().ClosedCount(id) == 1; }));
}

// A client that dribbles one byte at a time (slowloris) holds nothing up.
TEST(EngineTest, SlowSenderDoesNotHoldOthersUp) {
  TestEngine server(Options(1), Hooks{});
  ASSERT_TRUE(server.status().ok()) << server.status();
  Client slow(server.endpoint());
  const std::string message = "<stream:stream to='example.com'>";
  for (size_t i = 0; i < message.size(); ++i) {
    ASSERT_TRUE(slow.Write(message.substr(i, 1)));
    Client other(server.endpoint());
    ASSERT_TRUE(other.Write("quick"));
    ASSERT_EQ(other.Read(5), "quick");
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(slow.Read(message.size()), message);
}

// The peer resets while the server is streaming to it and it to the server.
TEST(EngineTest, PeerResetMidStreamGivesExactlyOneOnClosed) {
  std::atomic<ConnectionId> stream_id{kNoConnection};
  const std::string piece(16384, 's');
  Hooks hooks;
  hooks.on_data = [&](Shard&, ConnectionId id, std::string_view) { stream_id = id; };
  hooks.on_tick = [&](Shard& shard, uint64_t) {
    const ConnectionId id = stream_id.load();
    while (id != kNoConnection && shard.QueuedBytes(id) < 128 * 1024 && shard.Send(id, piece)) {
    }
  };
  EngineOptions options = Options(1);
  options.tick_ms = 1;
  TestEngine server(options, hooks);
  ASSERT_TRUE(server.status().ok()) << server.status();
  for (int round = 0; round < 10; ++round) {
    stream_id = kNoConnection;
    Client client(server.endpoint());
    ASSERT_TRUE(client.Write(Pattern(50000, round)));
    ASSERT_TRUE(WaitFor([&] { return stream_id.load() != kNoConnection; }));
    EXPECT_EQ(client.Read(100000).size(), 100000u);
    const ConnectionId id = stream_id.load();
    client.Write(Pattern(10000, round));
    client.Reset();
    ASSERT_TRUE(WaitFor([&] { return server.record().ClosedCount(id) >= 1; }));
    std::this_thread::sleep_for(milliseconds(30));
    EXPECT_EQ(server.record().ClosedCount(id), 1);
    EXPECT_FALSE(server.record().Reason(id).ok());
  }
}

// Connections come and go in every way at once: the server echoes, closes or
// aborts on data; clients close, reset or half-close at any point. Every
// connection gets exactly one OnClosed (TestEngine checks) and nothing leaks.
TEST(EngineTest, ChurnOfOpensAndClosesInEveryOrder) {
  Hooks hooks;
  hooks.on_data = [](Shard& shard, ConnectionId id, std::string_view bytes) {
    switch (bytes.empty() ? 0 : bytes[0]) {
      case 'c':
        shard.Send(id, std::string(20000, 'c'));
        shard.Close(id);
        break;
      case 'a':
        shard.Send(id, std::string(20000, 'a'));
        shard.Abort(id);
        break;
      default:
        shard.Send(id, bytes);
    }
  };
  const int fds_before = CountOpenFds();
  {
    EngineOptions options = Options(2);
    options.close_linger_ms = 300;
    TestEngine server(options, hooks);
    ASSERT_TRUE(server.status().ok()) << server.status();
    const auto deadline = Clock::now() + milliseconds(1500);
    int connections = 0;
    std::vector<std::unique_ptr<Client>> lingering;
    for (uint32_t i = 0; Clock::now() < deadline && i < 3000; ++i, ++connections) {
      auto client = std::make_unique<Client>(server.endpoint());
      ASSERT_TRUE(client->connected());
      const char command = "ceaxyz"[i % 6];
      client->Write(std::string(1 + i % 3000, command));
      switch ((i / 6) % 4) {
        case 0:
          client->Reset();
          break;
        case 1:
          shutdown(client->fd(), SHUT_WR);
          lingering.push_back(std::move(client));
          break;
        case 2:
          client->Read(i % 100);
          break;  // closes with FIN, maybe with unread bytes (then RST)
        case 3:
          lingering.push_back(std::move(client));  // kept open until Stop
          break;
      }
      if (lingering.size() > 200) lingering.erase(lingering.begin(), lingering.begin() + 100);
    }
    std::printf("churn: %d connections\n", connections);
    server.Stop();
    EXPECT_EQ(server.record().accepted.load(), server.record().closed.load());
  }
  EXPECT_EQ(CountOpenFds(), fds_before);
}

TEST(EngineTest, CloseFlushesQueuedBytesFirst) {
  const std::string goodbye = Pattern(3 << 20, 77);  // more than socket buffers hold
  Hooks hooks;
  hooks.on_data = [&](Shard& shard, ConnectionId id, std::string_view) {
    EXPECT_TRUE(shard.Send(id, goodbye));
    shard.Close(id);
    EXPECT_FALSE(shard.Send(id, "after close")) << "Send after Close must fail";
  };
  EngineOptions options = Options(1);
  options.connection_queue_bytes_max = 4 << 20;
  TestEngine server(options, hooks);
  ASSERT_TRUE(server.status().ok()) << server.status();
  for (int i = 0; i < 3; ++i) {
    Client client(server.endpoint());
    ASSERT_TRUE(client.Write("bye"));
    std::this_thread::sleep_for(milliseconds(50));  // make the server wait for us
    std::string received;
    EXPECT_TRUE(client.ReadToEof(&received));
    EXPECT_EQ(received.size(), goodbye.size());
    EXPECT_TRUE(received == goodbye);
  }
  ASSERT_TRUE(WaitFor([&] { return server.record().closed.load() == 3; }));
  std::lock_guard<std::mutex> lock(server.record().mutex);
  for (const auto& [id, reason] : server.record().closed_reason) EXPECT_TRUE(reason.ok()) << reason;
}

TEST(EngineTest, PeerHalfCloseStillGetsTheReply) {
  TestEngine server(Options(1), Hooks{});
  ASSERT_TRUE(server.status().ok()) << server.status();
  Client client(server.endpoint());
  ASSERT_TRUE(client.Write("last words"));
  shutdown(client.fd(), SHUT_WR);
  std::string received;
  EXPECT_TRUE(client.ReadToEof(&received));
  EXPECT_EQ(received, "last words");
  ASSERT_TRUE(WaitFor([&] { return server.record().closed.load() == 1; }));
  EXPECT_TRUE(server.record().closed_reason.begin()->second.ok());
}

TEST(EngineTest, AbortDropsQueuedBytesAndResets) {
  Hooks hooks;
  hooks.on_data = [&](Shard& shard, ConnectionId id, std::string_view) {
    EXPECT_TRUE(shard.Send(id, std::string(100000, 'a')));
    shard.Abort(id);
    shard.Abort(id);  // harmless twice
    shard.Close(id);  // and after
    EXPECT_EQ(shard.QueuedBytes(id), 0u);
  };
  TestEngine server(Options(1), hooks);
  ASSERT_TRUE(server.status().ok()) << server.status();
  Client client(server.endpoint());
  ASSERT_TRUE(client.Write("x"));
  EXPECT_TRUE(client.SeesClose());
  ASSERT_TRUE(WaitFor([&] { return server.record().closed.load() == 1; }));
  const absl::Status reason = server.record().closed_reason.begin()->second;
  EXPECT_EQ(reason.code(), absl::StatusCode::kCancelled) << reason;
}

TEST(EngineTest, RefusedByOnAcceptGetsNoOnClosed) {
  Hooks hooks;
  hooks.on_accept = [](Shard& shard, ConnectionId id, const Endpoint&, int) {
    shard.Send(id, "you will never see this");
    return false;
  };
  TestEngine server(Options(1), hooks);
  ASSERT_TRUE(server.status().ok()) << server.status();
  for (int i = 0; i < 5; ++i) {
    Client client(server.endpoint());
    EXPECT_TRUE(client.SeesClose());
  }
  ASSERT_TRUE(WaitFor([&] { return server.engine().stats()[0].connections_refused == 5; }));
  EXPECT_TRUE(WaitFor([&] { return server.engine().stats()[0].connections_open == 0; }));
  EXPECT_EQ(server.record().closed.load(), 0);
}

TEST(EngineTest, ConnectionLimitRefusesExtraConnections) {
  EngineOptions options = Options(1);
  options.connections_max_per_shard = 3;
  TestEngine server(options, Hooks{});
  ASSERT_TRUE(server.status().ok()) << server.status();
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<Client>(server.endpoint()));
    ASSERT_TRUE(clients.back()->Write("a"));
    ASSERT_EQ(clients.back()->Read(1), "a");
  }
  for (int i = 0; i < 3; ++i) {
    Client extra(server.endpoint());
    EXPECT_TRUE(extra.SeesClose()) << "extra connection " << i << " was not refused";
  }
  EXPECT_EQ(server.engine().stats()[0].connections_refused, 3u);
  EXPECT_EQ(server.record().accepted.load(), 3);
  // A freed place is usable again once its OnClosed has run.
  clients.pop_back();
  ASSERT_TRUE(WaitFor([&] { return server.record().closed.load() == 1; }));
  Client again(server.endpoint());
  ASSERT_TRUE(again.Write("b"));
  EXPECT_EQ(again.Read(1), "b");
}

TEST(EngineTest, StopWithLiveConnectionsIsClean) {
  const int fds_before = CountOpenFds();
  std::vector<std::unique_ptr<Client>> clients;
  {
    Hooks hooks;
    hooks.on_stop = [](Shard& shard) { shard.Post(shard.index(), 1, kNoConnection, 0, "late"); };
    EngineOptions options = Options(2);
    options.close_linger_ms = 500;  // clients that do not read hold Stop this long
    TestEngine server(options, hooks);
    ASSERT_TRUE(server.status().ok()) << server.status();
    for (int i = 0; i < 50; ++i) {
      clients.push_back(std::make_unique<Client>(server.endpoint()));
      ASSERT_TRUE(clients.back()->Write("hi"));
      ASSERT_EQ(clients.back()->Read(2), "hi");
    }
    // Some with bytes still on their way in, some with replies queued.
    for (int i = 0; i < 50; i += 2) clients[i]->Write(Pattern(200000, i));
    const auto start = Clock::now();
    server.Stop();
    EXPECT_LT(Clock::now() - start, milliseconds(3000));
    EXPECT_EQ(server.record().stopped.load(), 2);
    EXPECT_EQ(server.record().closed.load(), 50);
    server.engine().Stop();  // idempotent
  }
  for (auto& client : clients) {
    // EOF or reset; either way the server side is gone.
    std::string ignored;
    pollfd poll_fd{client->fd(), POLLIN, 0};
    EXPECT_EQ(poll(&poll_fd, 1, 2000), 1);
  }
  clients.clear();
  EXPECT_EQ(CountOpenFds(), fds_before);
}

// ---------------------------------------------------------------------------
// Outgoing connections (Shard::Connect), started from a shard's OnMessage.

constexpr uint32_t kConnectRequest = 77;
constexpr uint32_t kAbortRequest = 78;  // target: the connection to abort

// Makes a shard connect to `target` when it gets kConnectRequest, and abort a
// connection on kAbortRequest. The ids go into the record's open set so the
// engine's checks on OnClosed (exactly once, none missing) cover them.
struct Connector {
  Endpoint target;
  Record* record = nullptr;  // set once the engine exists, before any request
  std::string greeting;      // sent right after Connect, before it completes
  std::mutex mutex;
  std::vector<ConnectionId> ids;
  std::map<ConnectionId, std::string> received;

  void OnMessage(Shard& shard, const CrossShardMessage& message) {
    if (message.kind == kAbortRequest) {
      shard.Abort(message.target);
      return;
    }
    if (message.kind != kConnectRequest) return;
    const ConnectionId id = shard.Connect(target);
    ASSERT_NE(id, kNoConnection);
    EXPECT_EQ(ShardOf(id), shard.index());
    {
      std::lock_guard<std::mutex> lock(record->mutex);
      record->open.insert(id);
    }
    if (!greeting.empty()) {
      EXPECT_TRUE(shard.Send(id, greeting));
    }
    std::lock_guard<std::mutex> lock(mutex);
    ids.push_back(id);
  }
  bool IsOutgoing(ConnectionId id) {
    std::lock_guard<std::mutex> lock(mutex);
    return std::find(ids.begin(), ids.end(), id) != ids.end();
  }
  std::vector<ConnectionId> Ids() {
    std::lock_guard<std::mutex> lock(mutex);
    return ids;
  }
  Hooks MakeHooks() {
    Hooks hooks;
    hooks.on_message = [this](Shard& shard, const CrossShardMessage& message) {
      OnMessage(shard, message);
    };
    hooks.on_data = [this](Shard& shard, ConnectionId id, std::string_view bytes) {
      if (IsOutgoing(id)) {
        std::lock_guard<std::mutex> lock(mutex);
        received[id].append(bytes);
      } else {
        EXPECT_TRUE(shard.Send(id, bytes));  // the accepted side echoes
      }
    };
    return hooks;
  }
};

// A listening socket that never accepts, its accept queue full, so a further
// connect gets no answer.
class BlackHole {
 public:
  BlackHole() {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(listen(listener_, 0), 0);
    endpoint_.length = sizeof(endpoint_.address);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&endpoint_.address), &endpoint_.length);
    for (int i = 0; i < 4; ++i) {
      const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      connect(fd, reinterpret_cast<const sockaddr*>(&endpoint_.address), endpoint_.length);
      fillers_.push_back(fd);
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  ~BlackHole() {
    for (const int fd : fillers_) close(fd);
    close(listener_);
  }
  const Endpoint& endpoint() const { return endpoint_; }

 private:
  int listener_ = -1;
  std::vector<int> fillers_;
  Endpoint endpoint_;
};

TEST(EngineTest, ConnectSendsWhatWasQueuedAndReceives) {
  Connector connector;
  connector.greeting = "hello from a connect";
  TestEngine engine(Options(2), connector.MakeHooks());  // connects to its own listener
  ASSERT_TRUE(engine.status().ok()) << engine.status();
  connector.target = engine.endpoint();
  connector.record = &engine.record();
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(engine.engine().Post(i % 2, kConnectRequest, kNoConnection, 0, ""));
  }
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(connector.mutex);
    if (connector.received.size() != 6) return false;
    for (const auto& [id, bytes] : connector.received) {
      if (bytes != connector.greeting) return false;
    }
    return true;
  }));
  EXPECT_EQ(engine.record().connected.load(), 6);
  EXPECT_EQ(engine.record().accepted.load(), 6);
  // Both ends close cleanly when the engine stops (checked by TestEngine).
}

TEST(EngineTest, ConnectRefusedGivesOnClosedWithTheReason) {
  // A port nobody listens on: bind, note it, close.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  Endpoint closed;
  closed.length = sizeof(closed.address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&closed.address), &closed.length);
  close(fd);

  const int fds_before = CountOpenFds();
  Connector connector;
  connector.greeting = "queued, never sent";
  {
    TestEngine engine(Options(1), connector.MakeHooks());
    ASSERT_TRUE(engine.status().ok()) << engine.status();
    connector.target = closed;
    connector.record = &engine.record();
    ASSERT_TRUE(engine.engine().Post(0, kConnectRequest, kNoConnection, 0, ""));
    ASSERT_TRUE(WaitFor([&] { return engine.record().closed.load() == 1; }));
    const ConnectionId id = connector.Ids().at(0);
    EXPECT_EQ(engine.record().connected.load(), 0);
    EXPECT_NE(engine.record().Reason(id).message().find("connect"), std::string::npos)
        << engine.record().Reason(id);
    EXPECT_NE(engine.record().Reason(id).message().find("refused"), std::string::npos)
        << engine.record().Reason(id);
  }
  EXPECT_EQ(CountOpenFds(), fds_before);
}

TEST(EngineTest, ConnectTimesOutAndAbortCancelsIt) {
  BlackHole hole;
  const int fds_before = CountOpenFds();
  Connector connector;
  {
    EngineOptions options = Options(1);
    options.connect_timeout_ms = 300;
    TestEngine engine(options, connector.MakeHooks());
    ASSERT_TRUE(engine.status().ok()) << engine.status();
    connector.target = hole.endpoint();
    connector.record = &engine.record();
    const auto start = Clock::now();
    ASSERT_TRUE(engine.engine().Post(0, kConnectRequest, kNoConnection, 0, ""));
    ASSERT_TRUE(engine.engine().Post(0, kConnectRequest, kNoConnection, 0, ""));
    ASSERT_TRUE(WaitFor([&] { return connector.Ids().size() == 2; }));
    const ConnectionId aborted = connector.Ids()[0], timed_out = connector.Ids()[1];
    ASSERT_TRUE(engine.engine().Post(0, kAbortRequest, aborted, 0, ""));
    ASSERT_TRUE(WaitFor([&] { return engine.record().closed.load() == 2; }));
    EXPECT_GE(Clock::now() - start, milliseconds(250));
    EXPECT_EQ(engine.record().Reason(aborted).code(), absl::StatusCode::kCancelled)
        << engine.record().Reason(aborted);
    EXPECT_EQ(engine.record().Reason(timed_out).code(), absl::StatusCode::kDeadlineExceeded)
        << engine.record().Reason(timed_out);
    EXPECT_EQ(engine.record().connected.load(), 0);
  }
  EXPECT_EQ(CountOpenFds(), fds_before);
}

TEST(EngineTest, StopWhileConnectingIsClean) {
  BlackHole hole;
  Connector connector;
  TestEngine engine(Options(2), connector.MakeHooks());
  ASSERT_TRUE(engine.status().ok()) << engine.status();
  connector.target = hole.endpoint();
  connector.record = &engine.record();
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(engine.engine().Post(i % 2, kConnectRequest, kNoConnection, 0, ""));
  }
  ASSERT_TRUE(WaitFor([&] { return connector.Ids().size() == 4; }));
  const auto start = Clock::now();
  engine.Stop();
  EXPECT_LT(Clock::now() - start, milliseconds(3000));
  EXPECT_EQ(engine.record().closed.load(), 4);
  for (const ConnectionId id : connector.Ids()) {
    EXPECT_EQ(engine.record().Reason(id).code(), absl::StatusCode::kCancelled);
  }
}

TEST(EngineTest, ListenErrorsSayWhereAndWhy) {
  const int holder = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(holder, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(holder, 1), 0);
  socklen_t length = sizeof(address);
  getsockname(holder, reinterpret_cast<sockaddr*>(&address), &length);
  const std::string where = "127.0.0.1:" + std::to_string(ntohs(address.sin_port));

  const int fds_before = CountOpenFds();
  TestEngine server(Options(2, {"127.0.0.1:0", where}), Hooks{});
  EXPECT_FALSE(server.status().ok());
  EXPECT_EQ(server.status().message(), "cannot listen on " + where + ": Address already in use");
  EXPECT_EQ(CountOpenFds(), fds_before);
  close(holder);
}

TEST(EngineTest, LargestRingStarts) {
  EngineOptions options = Options(1);
  options.ring_entries = 32768;  // its completion queue (4×) is clamped to the kernel's maximum
  TestEngine server(options, Hooks{});
  ASSERT_TRUE(server.status().ok()) << server.status();
  Client client(server.endpoint());
  ASSERT_TRUE(client.Write("big ring"));
  EXPECT_EQ(client.Read(8), "big ring");
}

TEST(EngineTest, InvalidOptionsAreRefused) {
  EngineOptions options = Options(1);
  options.recv_buffer_count = 1000;
  TestEngine not_power_of_two(options, Hooks{});
  EXPECT_EQ(not_power_of_two.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(not_power_of_two.status().message().find("power of two"), absl::string_view::npos);
  options = Options(0);
  TestEngine no_shards(options, Hooks{});
  EXPECT_EQ(no_shards.status().code(), absl::StatusCode::kInvalidArgument);
}

// Direct descriptors need Linux 6.7 (socket options through the ring); before it the
// engine keeps plain descriptors, and says so.
bool KernelHasDirectSockets() {
  utsname name{};
  if (uname(&name) != 0) return false;
  int major = 0;
  int minor = 0;
  if (std::sscanf(name.release, "%d.%d", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 7);
}

// The sockets of `count` echo round trips, each on its own connection, kept open.
std::vector<std::unique_ptr<Client>> OpenEchoed(const Endpoint& endpoint, int count) {
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < count; ++i) {
    clients.push_back(std::make_unique<Client>(endpoint));
    const std::string message = "echo #" + std::to_string(i);
    EXPECT_TRUE(clients.back()->Write(message));
    EXPECT_EQ(clients.back()->Read(message.size()), message);
  }
  return clients;
}

// Every test above runs with direct descriptors on (the default). Here: that the
// sockets are then out of the process's descriptor table, that a full table leaves the
// rest as plain descriptors, and that plain ones still work with the option off.
TEST(EngineTest, DirectDescriptorsKeepSocketsOutOfTheDescriptorTable) {
  constexpr int kConnections = 200;
  const int fds_before = CountOpenFds();
  {
    EngineOptions options = Options(2);
    options.close_linger_ms = 300;
    TestEngine server(options, Hooks{});
    ASSERT_TRUE(server.status().ok()) << server.status();
    const int fds_started = CountOpenFds();
    auto clients = OpenEchoed(server.endpoint(), kConnections);
    uint64_t direct = 0;
    for (const ShardStats& shard : server.engine().stats()) direct += shard.connections_direct;
    // Our side holds one descriptor per connection; the server's side holds none.
    const int fds_grown = CountOpenFds() - fds_started;
    if (KernelHasDirectSockets()) {
      EXPECT_EQ(direct, static_cast<uint64_t>(kConnections));
      EXPECT_EQ(fds_grown, kConnections);
    } else {
      EXPECT_EQ(direct, 0u);
      EXPECT_EQ(fds_grown, 2 * kConnections);
    }
    // The peer's close and the server's own (at Stop) work on them.
    clients.erase(clients.begin() + 1);
    ASSERT_TRUE(WaitFor([&] { return server.record().closed.load() == 1; }));
    server.Stop();
    EXPECT_EQ(server.record().closed.load(), kConnections);
  }
  EXPECT_EQ(CountOpenFds(), fds_before);
}

TEST(EngineTest, AFullTableOfDirectDescriptorsLeavesTheRestPlain) {
  Hooks hooks;
  hooks.on_data = [](Shard& shard, ConnectionId id, std::string_view bytes) {
    if (bytes == "abort") {
      shard.Send(id, std::string(100000, 'a'));
      shard.Abort(id);
    } else if (bytes == "close") {
      shard.Send(id, "bye");
      shard.Close(id);
    } else {
      shard.Send(id, bytes);
    }
  };
  const int fds_before = CountOpenFds();
  {
    EngineOptions options = Options(1);
    options.direct_descriptors_max = 8;
    options.close_linger_ms = 300;
    TestEngine server(options, hooks);
    ASSERT_TRUE(server.status().ok()) << server.status();
    auto clients = OpenEchoed(server.endpoint(), 20);
    const uint64_t direct = KernelHasDirectSockets() ? 8 : 0;
    EXPECT_EQ(server.engine().stats()[0].connections_direct, direct);
    // The first 8 are direct, the rest plain: abort (a reset, SO_LINGER set through the
    // ring for a direct one) and close one of each kind.
    for (int i : {0, 19}) {
      ASSERT_TRUE(clients[i]->Write("abort"));
      EXPECT_TRUE(clients[i]->SeesReset()) << "client " << i;
    }
    for (int i : {1, 18}) {
      ASSERT_TRUE(clients[i]->Write("close"));
      std::string received;
      EXPECT_TRUE(clients[i]->ReadToEof(&received));
      EXPECT_EQ(received, "bye");
    }
    ASSERT_TRUE(WaitFor([&] { return server.record().closed.load() == 4; }));
    EXPECT_EQ(server.engine().stats()[0].connections_direct, direct == 0 ? 0 : direct - 2);
    // Freed entries are taken again.
    auto more = OpenEchoed(server.endpoint(), 4);
    EXPECT_EQ(server.engine().stats()[0].connections_direct, direct);
    std::lock_guard<std::mutex> lock(server.record().mutex);
    for (const auto& [id, reason] : server.record().closed_reason) {
      EXPECT_TRUE(reason.ok() || reason.code() == absl::StatusCode::kCancelled) << reason;
    }
  }
  EXPECT_EQ(CountOpenFds(), fds_before);
}

TEST(EngineTest, PlainDescriptorsServeWithDirectOnesOff) {
  EngineOptions options = Options(1);
  options.direct_descriptors = false;
  TestEngine server(options, Hooks{});
  ASSERT_TRUE(server.status().ok()) << server.status();
  const int fds_started = CountOpenFds();
  auto clients = OpenEchoed(server.endpoint(), 10);
  EXPECT_EQ(server.engine().stats()[0].connections_direct, 0u);
  EXPECT_EQ(CountOpenFds() - fds_started, 20);
}

}  // namespace
}  // namespace stanzad::net
