// Engine: validates options, binds the listeners (one SO_REUSEPORT socket per
// shard and listener), builds the mailboxes and starts one UringShard thread
// per shard.
#include "net/engine.h"

#include <netinet/in.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <future>
#include <string>
#include <thread>

#include "core/base/check.h"
#include "core/base/clock.h"
#include "core/base/concat.h"
#include "net/buffer_ring.h"
#include "net/shard.h"

namespace stanzad::net {

int ShardOf(ConnectionId id) { return static_cast<int>(id >> 52) - 1; }

ConnectionId MakeConnectionId(int shard, uint32_t slot, uint32_t generation) {
  CHECK(shard >= 0 && shard < kShardsMax);
  CHECK_LT(slot, kSlotsMax);
  return (static_cast<uint64_t>(shard + 1) << 52) | (static_cast<uint64_t>(slot) << 32) |
         generation;
}

namespace {

class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  int release() { return std::exchange(fd_, -1); }
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::Status ValidateOptions(const EngineOptions& options) {
  auto invalid = [](const std::string& message) { return absl::InvalidArgumentError(message); };
  if (options.shards < 1 || options.shards > kShardsMax) {
    return invalid(Concat("shards must be 1 to ", std::to_string(kShardsMax), ", not ",
                          std::to_string(options.shards)));
  }
  if (options.connections_max_per_shard < 1 || options.connections_max_per_shard > kSlotsMax) {
    return invalid(Concat("connections_max_per_shard must be 1 to ", std::to_string(kSlotsMax)));
  }
  if (options.connection_queue_bytes_max < 1) {
    return invalid("connection_queue_bytes_max must be at least 1");
  }
  if (options.recv_buffer_count == 0 ||
      options.recv_buffer_count > ProvidedBufferRing::kBufferCountMax ||
      !std::has_single_bit(options.recv_buffer_count)) {
    return invalid(Concat("recv_buffer_count must be a power of two from 1 to 32768, not ",
                          std::to_string(options.recv_buffer_count)));
  }
  if (options.recv_buffer_bytes < 512) return invalid("recv_buffer_bytes must be at least 512");
  if (options.cross_shard_queue_bytes < 4096 || options.cross_shard_queue_bytes > (1ull << 32)) {
    return invalid("cross_shard_queue_bytes must be 4096 to 4 GiB");
  }
  if (options.tick_ms < 1) return invalid("tick_ms must be at least 1");
  if (options.ring_entries < 8 || options.ring_entries > 32768) {
    return invalid("ring_entries must be 8 to 32768");
  }
  for (const ListenerConfig& listener : options.listeners) {
    const int family = listener.endpoint.address.ss_family;
    if ((family != AF_INET && family != AF_INET6) || listener.endpoint.length == 0) {
      return invalid("a listener has no IPv4 or IPv6 address");
    }
  }
  return absl::OkStatus();
}

// One socket bound to `endpoint`; `reuse_port` joins the shard group.
absl::StatusOr<int> BindSocket(const Endpoint& endpoint, bool reuse_port, bool do_listen,
                               int backlog) {
  const std::string where = Concat("cannot listen on ", endpoint.ToString());
  FdCloser fd(socket(endpoint.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return absl::ErrnoToStatus(errno, where);
  const int one = 1;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    return absl::ErrnoToStatus(errno, where);
  }
  if (reuse_port && setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return absl::ErrnoToStatus(errno, where);
  }
  // "[::]" then means IPv6 only, so "0.0.0.0" can be listened on beside it.
  if (endpoint.address.ss_family == AF_INET6 &&
      setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
    return absl::ErrnoToStatus(errno, where);
  }
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length) != 0) {
    return absl::ErrnoToStatus(errno, where);
  }
  if (do_listen && listen(fd.get(), backlog) != 0) return absl::ErrnoToStatus(errno, where);
  return fd.release();
}

// Binds one socket per shard for `endpoint`; returns the bound endpoint.
absl::StatusOr<Endpoint> BindListener(const Endpoint& endpoint, int shards, int backlog,
                                      std::vector<int>* fds) {
  // A probe without SO_REUSEPORT first: a port held by another process
  // (even one using SO_REUSEPORT under our user id) fails here instead of
  // silently sharing its connections with it. It also resolves port 0.
  absl::StatusOr<int> probe = BindSocket(endpoint, /*reuse_port=*/false, /*do_listen=*/false, 0);
  if (!probe.ok()) return probe.status();
  Endpoint bound;
  bound.length = sizeof(bound.address);
  const int rc = getsockname(*probe, reinterpret_cast<sockaddr*>(&bound.address), &bound.length);
  const int error = errno;
  close(*probe);
  if (rc != 0) return absl::ErrnoToStatus(error, Concat("cannot listen on ", endpoint.ToString()));
  for (int shard = 0; shard < shards; ++shard) {
    absl::StatusOr<int> fd = BindSocket(bound, /*reuse_port=*/true, /*do_listen=*/true, backlog);
    if (!fd.ok()) return fd.status();
    fds->push_back(*fd);
  }
  return bound;
}

class EngineImpl final : public Engine {
 public:
  EngineImpl() = default;
  ~EngineImpl() override { Stop(); }

  absl::Status Start(const EngineOptions& options, const HandlerFactory& factory);

  bool Post(int to, uint32_t kind, ConnectionId target, uint64_t argument,
            std::string_view payload) override {
    CHECK_MSG(to >= 0 && static_cast<size_t>(to) < mailboxes_.size(),
              "Post to a shard that does not exist");
    return PostToMailbox(*mailboxes_[to], static_cast<int>(mailboxes_.size()), false, kind, target,
                         argument, payload);
  }

  std::vector<Endpoint> listening_endpoints() const override { return endpoints_; }

  int control_fd() const override { return control_->doorbell_fd; }

  size_t DrainControl(
      const std::function<void(int shard, const CrossShardMessage&)>& handler) override {
    uint64_t value = 0;
    [[maybe_unused]] ssize_t got = read(control_->doorbell_fd, &value, sizeof(value));
    // Keep ringing: a record pushed after this drain must wake the next poll.
    control_->sleeping.store(true);
    const size_t records = DrainMailboxRecords(*control_, handler);
    // The queues this thread posts into (Post): released as a shard releases its own.
    const uint64_t now_ms = MonotonicMs();
    if (now_ms >= next_release_ms_) {
      next_release_ms_ = now_ms + options_.tick_ms;
      const size_t external = mailboxes_.size();  // Post's producer index
      for (auto& mailbox : mailboxes_) {
        mailbox->incoming[external]->ReleaseIdlePages(now_ms, options_.queue_release_quiet_ms);
      }
    }
    return records;
  }

  std::vector<ShardStats> stats() const override {
    std::vector<ShardStats> result;
    for (const auto& mailbox : mailboxes_) result.push_back(mailbox->Snapshot());
    return result;
  }

  void Stop() override {
    for (auto& mailbox : mailboxes_) {
      mailbox->stop_requested.store(true, std::memory_order_release);
      RingDoorbell(*mailbox);
    }
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
    threads_.clear();
    shards_.clear();
  }

 private:
  std::vector<std::unique_ptr<ShardMailbox>> mailboxes_;
  std::unique_ptr<ShardMailbox> control_;  // shards → control thread; outlives the shards
  EngineOptions options_;
  uint64_t next_release_ms_ = 0;  // when DrainControl next looks at Post's queues
  std::vector<std::unique_ptr<ShardHandler>> handlers_;
  std::vector<std::unique_ptr<UringShard>> shards_;
  std::vector<std::thread> threads_;
  std::vector<Endpoint> endpoints_;
};

absl::Status EngineImpl::Start(const EngineOptions& options, const HandlerFactory& factory) {
  if (absl::Status status = ValidateOptions(options); !status.ok()) return status;
  const int shards = options.shards;
  options_ = options;

  // listener_fds[shard] parallel to listener_tags.
  std::vector<std::vector<int>> listener_fds(shards);
  std::vector<int> listener_tags;
  auto close_all = [&listener_fds] {
    for (auto& fds : listener_fds) {
      for (int fd : fds) close(fd);
      fds.clear();
    }
  };
  for (const ListenerConfig& listener : options.listeners) {
    std::vector<int> fds;
    absl::StatusOr<Endpoint> bound =
        BindListener(listener.endpoint, shards, options.listen_backlog, &fds);
    for (size_t i = 0; i < fds.size(); ++i) listener_fds[i].push_back(fds[i]);
    if (!bound.ok()) {
      close_all();
      return bound.status();
    }
    endpoints_.push_back(*bound);
    listener_tags.push_back(listener.tag);
  }

  for (int i = 0; i < shards; ++i) {
    const int doorbell = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (doorbell < 0) {
      close_all();
      return absl::ErrnoToStatus(errno, "cannot create a shard's eventfd");
    }
    mailboxes_.push_back(
        std::make_unique<ShardMailbox>(shards + 1, options.cross_shard_queue_bytes, doorbell));
  }
  std::vector<ShardMailbox*> mailbox_pointers;
  for (auto& mailbox : mailboxes_) mailbox_pointers.push_back(mailbox.get());
  {
    const int doorbell = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (doorbell < 0) {
      close_all();
      return absl::ErrnoToStatus(errno, "cannot create the control eventfd");
    }
    control_ = std::make_unique<ShardMailbox>(shards, options.cross_shard_queue_bytes, doorbell);
    control_->sleeping.store(true);  // the control thread is woken for every record
  }

  for (int i = 0; i < shards; ++i) {
    std::unique_ptr<ShardHandler> handler = factory(i);
    if (handler == nullptr) {
      close_all();
      return absl::InvalidArgumentError(
          Concat("the handler factory returned no handler for shard ", std::to_string(i)));
    }
    handlers_.push_back(std::move(handler));
  }
  for (int i = 0; i < shards; ++i) {
    shards_.push_back(std::make_unique<UringShard>(i, options, handlers_[i].get(), mailbox_pointers,
                                                   control_.get(), std::move(listener_fds[i]),
                                                   listener_tags));
    listener_fds[i].clear();
  }

  // Each ring is created on its own thread: SINGLE_ISSUER ties it to its creator.
  std::vector<std::promise<absl::Status>> ready(shards);
  std::vector<std::future<absl::Status>> results;
  for (auto& promise : ready) results.push_back(promise.get_future());
  for (int i = 0; i < shards; ++i) {
    threads_.emplace_back([shard = shards_[i].get(), promise = &ready[i], i] {
      const std::string name = Concat("shard-", std::to_string(i));
      pthread_setname_np(pthread_self(), name.c_str());
      absl::Status status = shard->Init();
      const bool ok = status.ok();
      promise->set_value(std::move(status));
      if (ok) shard->Run();
    });
  }
  absl::Status first_error;
  for (int i = 0; i < shards; ++i) {
    absl::Status status = results[i].get();
    if (!status.ok() && first_error.ok()) {
      first_error = absl::Status(
          status.code(), Concat("shard ", std::to_string(i), ": ", std::string(status.message())));
    }
  }
  if (!first_error.ok()) {
    Stop();
    return first_error;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Start(const EngineOptions& options,
                                                      HandlerFactory factory) {
  auto engine = std::make_unique<EngineImpl>();
  if (absl::Status status = engine->Start(options, factory); !status.ok()) return status;
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace stanzad::net
