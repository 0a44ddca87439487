// The io_uring engine: one shard thread per core, each owning its own ring,
// listening sockets (SO_REUSEPORT), connections and timers. Shards share
// nothing mutable; they talk through bounded single-producer/single-consumer
// byte queues, one per ordered pair, with a doorbell rung only when the
// receiver sleeps.
//
// The engine moves bytes and knows nothing of XMPP. The server plugs in a
// ShardHandler per shard; every callback of a shard's handler runs on that
// shard's thread, and the Shard methods may be called only from that thread.
// Engine::Post and Engine::DrainControl belong to one other thread (the control
// thread): Post fills the queues whose pages DrainControl gives back.
//
// Lifecycle of a connection: OnAccept (the handler may refuse it) → any number
// of OnData → exactly one OnClosed, whether the peer closed, an error occurred,
// or the handler called Close/Abort. After OnClosed the id is dead; using it is
// a harmless no-op (ids carry a generation, so a reused slot never aliases).
#ifndef STANZAD_NET_ENGINE_H_
#define STANZAD_NET_ENGINE_H_

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stanzad::net {

// Identifies a connection across the whole engine: the shard index, a slot in
// that shard's table and a generation, packed in 64 bits.
using ConnectionId = uint64_t;
inline constexpr ConnectionId kNoConnection = 0;

// The shard that owns a connection id.
int ShardOf(ConnectionId id);
// Packs an id; never returns kNoConnection. Tests use it to build fake shards.
ConnectionId MakeConnectionId(int shard, uint32_t slot, uint32_t generation);

// An IPv4 or IPv6 address with port.
struct Endpoint {
  sockaddr_storage address{};
  socklen_t length = 0;

  // "127.0.0.1:5223", "[::1]:5223".
  std::string ToString() const;
  // The address alone: "127.0.0.1", "::1".
  std::string IpString() const;
  // Parses "HOST:PORT", "[V6]:PORT", or a bare IP with `default_port`.
  static absl::StatusOr<Endpoint> Parse(std::string_view text, uint16_t default_port);
};

struct ListenerConfig {
  Endpoint endpoint;
  int tag = 0;  // handed to OnAccept: which service this listener is (component, c2s...)
};

struct EngineOptions {
  int shards = 1;
  std::vector<ListenerConfig> listeners;
  size_t connections_max_per_shard = 65536;
  // Bytes queued for sending on one connection; Send beyond it fails.
  size_t connection_queue_bytes_max = 1 << 20;
  // Provided-buffer ring for multishot recv, per shard: count is a power of
  // two, at most 32768; bytes at least 512.
  uint32_t recv_buffer_bytes = 16 * 1024;
  uint32_t recv_buffer_count = 1024;
  // Each cross-shard queue (one per ordered pair of producers and shards),
  // rounded up to a power of two. One record (payload + 32 bytes) may take at
  // most half of it. Memory is touched only as records reach it.
  size_t cross_shard_queue_bytes = 4 << 20;
  // A cross-shard queue nothing was posted to for this long, and whose records were
  // all taken, gives back the pages it was written in (SpscByteQueue::ReleaseIdlePages).
  uint64_t queue_release_quiet_ms = 1000;
  // Period of ShardHandler::OnTick.
  uint32_t tick_ms = 100;
  uint32_t ring_entries = 4096;
  // How long Close (or a peer's EOF) may take to flush the queue and see the
  // peer close its side; past it the connection is reset. Also bounds how long
  // Stop waits for connections to say goodbye.
  uint32_t close_linger_ms = 2000;
  // Backlog of each listening socket (the kernel caps it at somaxconn).
  int listen_backlog = 4096;
  // Spare 16 KiB output chunks each shard keeps for reuse. Each one a shard has used
  // stays resident (a page or more; at most 2 MiB for 128), so this bounds a per-shard
  // cost that idle connections do not need: 1,024 kept ~4 MB per shard after a burst of
  // handshakes (docs/benchmarks.md, "Memory per idle call bridge connection").
  size_t output_chunks_free_max = 128;
  // An outgoing connection (Shard::Connect) not established within this time
  // fails with DEADLINE_EXCEEDED.
  uint32_t connect_timeout_ms = 5000;
  // Keep each connection's socket only in its shard's io_uring table of registered files
  // (a "direct descriptor") instead of the process's descriptor table. The open files
  // limit then bounds the sockets of each shard, not of the whole process (so N shards
  // hold N times as many), and no recv or send looks a descriptor up. A shard's table
  // holds min(connections_max_per_shard + kDirectSpare, direct_descriptors_max, the soft
  // open files limit) sockets; a socket that finds it full stays a plain descriptor. Needs
  // Linux 6.7 (socket options set through the ring); on an older kernel every socket stays
  // a plain descriptor and shard 0 logs direct_descriptors_unavailable.
  bool direct_descriptors = true;
  uint32_t direct_descriptors_max = 1u << 20;
};

// Table entries each shard keeps beyond connections_max_per_shard (for connections
// being closed while new ones arrive).
inline constexpr uint32_t kDirectSpare = 64;

// Counters of one shard, for metrics and balance checks. Read with
// Engine::stats() from any thread; each value is individually up to date.
struct ShardStats {
  uint64_t connections_accepted = 0;  // taken from the kernel, refused ones included
  uint64_t connections_refused = 0;   // over connections_max_per_shard, or OnAccept said no
  uint64_t connections_open = 0;      // now, including those being closed
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  uint64_t send_calls = 0;           // sendmsg submissions: bytes_sent / send_calls is the batching
  uint64_t messages_received = 0;    // cross-shard records delivered to OnMessage
  uint64_t wakeups_by_doorbell = 0;  // times a producer had to wake this shard
  uint64_t recv_buffers_exhausted = 0;  // -ENOBUFS completions (recv_buffer_count too small)
  uint64_t loop_iterations = 0;
  uint64_t send_queue_bytes = 0;          // now: bytes queued for sending on all connections
  uint64_t sends_refused_queue_full = 0;  // Send() refused: the connection's queue was full
  uint64_t connections_direct = 0;        // now: open connections held as direct descriptors
};

class Shard;

// A record from another shard (or an external producer) via Engine/Shard::Post.
struct CrossShardMessage {
  uint32_t kind = 0;  // the handler's own message types
  ConnectionId target = kNoConnection;
  uint64_t argument = 0;
  std::string_view payload;  // valid only during OnMessage
};

// Implemented by the server, one instance per shard.
class ShardHandler {
 public:
  virtual ~ShardHandler() = default;

  // A connection was accepted on a listener of this shard. Return false to
  // refuse it (the engine closes it at once; no OnClosed follows).
  virtual bool OnAccept(Shard& shard, ConnectionId id, const Endpoint& peer, int listener_tag) = 0;

  // Bytes arrived. `bytes` is a view into a recv buffer, valid only during the
  // call: copy what must outlive it.
  virtual void OnData(Shard& shard, ConnectionId id, std::string_view bytes) = 0;

  // The connection is gone. `reason` is OK for an orderly close (peer EOF or
  // our Close after flushing), else what went wrong: CANCELLED after Abort or
  // when the engine stops, DEADLINE_EXCEEDED when the peer did not take the
  // queued bytes within close_linger_ms, the errno's code for a recv or send
  // error ("recv: Connection reset by peer").
  virtual void OnClosed(Shard& shard, ConnectionId id, const absl::Status& reason) = 0;

  // A message posted to this shard.
  virtual void OnMessage(Shard& shard, const CrossShardMessage& message) = 0;

  // An outgoing connection from Shard::Connect is established. Bytes sent
  // while it was connecting leave now. (A failed one gets OnClosed instead.)
  virtual void OnConnected(Shard& /*shard*/, ConnectionId /*id*/) {}

  // Called every EngineOptions::tick_ms with a monotonic clock in milliseconds.
  virtual void OnTick(Shard& shard, uint64_t now_ms) = 0;

  // Called once per loop iteration, after its events (completions, records, the tick)
  // and before the bytes queued meanwhile leave: what a handler batches over an
  // iteration (frames to seal once, answers to send together) it sends here.
  virtual void OnFlush(Shard& /*shard*/) {}

  // Called once on the shard's thread before it stops.
  virtual void OnStop(Shard& /*shard*/) {}
};

class Shard {
 public:
  virtual ~Shard() = default;

  virtual int index() const = 0;
  virtual int shard_count() const = 0;

  // Queues bytes for sending (copied); they leave in one batched sendmsg per
  // loop iteration. Returns false, queuing nothing, if the connection is gone,
  // closing, not this shard's, or its queue would exceed
  // connection_queue_bytes_max.
  virtual bool Send(ConnectionId id, std::string_view bytes) = 0;
  // Bytes queued and not yet acknowledged by the kernel.
  virtual size_t QueuedBytes(ConnectionId id) const = 0;

  // Sends what is queued, then closes (shutting the write side down and
  // waiting for the peer's EOF, within close_linger_ms). Input arriving
  // meanwhile is discarded. OnClosed follows.
  virtual void Close(ConnectionId id) = 0;
  // Closes at once with a reset, dropping what is queued. OnClosed follows.
  virtual void Abort(ConnectionId id) = 0;

  // Opens an outgoing TCP connection on this shard. Returns its id at once,
  // or kNoConnection when the shard is stopping or full (or the socket cannot
  // be made). Then exactly one of: OnConnected, or OnClosed with the reason
  // ("connect: Connection refused", DEADLINE_EXCEEDED after
  // connect_timeout_ms, CANCELLED after Abort/Close/Stop). Send may be used
  // at once: the bytes wait for the connection. Close or Abort while
  // connecting cancels it, dropping what is queued.
  virtual ConnectionId Connect(const Endpoint& to) = 0;

  // Posts a record to the control thread (Engine::DrainControl). Copies the
  // payload; records of one shard arrive in order. False when that queue is
  // full: the caller decides (bounce). Rings the control eventfd each time.
  virtual bool PostToControl(uint32_t kind, ConnectionId target, uint64_t argument,
                             std::string_view payload) = 0;

  // Posts a record to shard `to` (may be this shard). Copies the payload.
  // Records from one producer to one shard arrive in order. Returns false if
  // that queue is full (or the payload exceeds half of it): the caller decides
  // (bounce, retry). REQUIRES: 0 <= to < shard_count().
  virtual bool Post(int to, uint32_t kind, ConnectionId target, uint64_t argument,
                    std::string_view payload) = 0;

  virtual uint64_t now_ms() const = 0;
};

class Engine {
 public:
  using HandlerFactory = std::function<std::unique_ptr<ShardHandler>(int shard_index)>;

  // Binds every listener on every shard (SO_REUSEPORT) and starts the threads.
  static absl::StatusOr<std::unique_ptr<Engine>> Start(const EngineOptions& options,
                                                       HandlerFactory factory);
  virtual ~Engine() = default;

  // Posts from outside the shards: only from the thread that calls DrainControl
  // (the control thread), which also releases these queues' pages. Returns false
  // if the queue is full.
  virtual bool Post(int to, uint32_t kind, ConnectionId target, uint64_t argument,
                    std::string_view payload) = 0;

  // Records the shards posted with PostToControl: control_fd() (an eventfd)
  // is readable when some wait; DrainControl hands each to `handler`, in order
  // per shard. For the control thread only (one consumer). Call it every turn:
  // at most once a tick it also gives back the pages of the queues Post fills
  // that have been quiet for queue_release_quiet_ms (SpscByteQueue::ReleaseIdlePages).
  virtual int control_fd() const = 0;
  virtual size_t DrainControl(
      const std::function<void(int shard, const CrossShardMessage&)>& handler) = 0;

  // The bound endpoints of the listeners (port 0 resolved), in options order.
  virtual std::vector<Endpoint> listening_endpoints() const = 0;

  // One entry per shard. Any thread.
  virtual std::vector<ShardStats> stats() const = 0;

  // Stops all shards, closes every socket, joins the threads. Each shard stops
  // accepting, calls OnStop, then closes each connection still open as Close
  // does (flushing what is queued, within close_linger_ms); OnClosed follows
  // for every connection, after OnStop, and no OnTick or OnMessage does.
  // Idempotent; the destructor calls it. REQUIRES: not called from a shard
  // thread (it joins them).
  virtual void Stop() = 0;
};

}  // namespace stanzad::net

#endif  // STANZAD_NET_ENGINE_H_
