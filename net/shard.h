// The engine's insides: one UringShard per thread, and the ShardMailbox
// through which other threads reach it. engine.h is the public contract;
// this header is for engine.cc and tests.
//
// A shard's loop, each iteration: drain its incoming cross-shard queues
// (OnMessage), tick when due (OnTick), report finished closes (OnClosed), let the
// handler send what it batched (OnFlush),
// submit one sendmsg per connection with queued bytes and no send in flight,
// re-arm recvs that stopped, return recv buffers, then submit and wait for
// completions (accept → OnAccept, recv → OnData, send, doorbell) and handle
// them.
//
// Doorbell protocol (why no wake-up is ever lost): before blocking, the shard
// stores `sleeping = true`, issues a seq_cst fence, and looks at every
// incoming queue again; it blocks only if all are empty. A producer publishes
// its record, issues a seq_cst fence, and rings the eventfd if it reads
// `sleeping == true` (exchanging it to false so that one ring suffices). With
// both fences, either the shard sees the record or the producer sees the
// flag. The shard keeps a read of its eventfd armed in its ring, so a ring
// completes its wait.
//
// Connection states: kOpen → (Close or peer EOF) kDraining: flush the queue →
// kLingering: write side shut down, input discarded until the peer's EOF →
// kTearingDown: recv/send cancelled (cancel by fd), waiting for their final
// completions → the fd is closed (a direct descriptor's table entry freed), the slot
// freed (its generation bumped) and OnClosed called. Abort, errors and deadlines jump straight to
// kTearingDown.
#ifndef STANZAD_NET_SHARD_H_
#define STANZAD_NET_SHARD_H_

#include <liburing.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "net/buffer_ring.h"
#include "net/engine.h"
#include "net/output_queue.h"
#include "net/spsc_queue.h"

namespace stanzad::net {

// ConnectionId layout: shard + 1 (12 bits, so no id is 0), slot (20 bits),
// generation (32 bits).
inline constexpr int kShardsMax = 4094;
inline constexpr uint32_t kSlotsMax = 1u << 20;
inline uint32_t SlotOf(ConnectionId id) {
  return static_cast<uint32_t>(id >> 32) & (kSlotsMax - 1);
}
inline uint32_t GenerationOf(ConnectionId id) { return static_cast<uint32_t>(id); }

// What other threads may touch of a shard: its incoming queues (one per
// producer: every shard, then the external producer), its doorbell and its
// counters.
struct ShardMailbox {
  // Takes ownership of `eventfd`.
  ShardMailbox(int producers, size_t queue_bytes, int eventfd);
  ~ShardMailbox();
  ShardMailbox(const ShardMailbox&) = delete;
  ShardMailbox& operator=(const ShardMailbox&) = delete;

  // Counters written by the shard thread only (load + store, no locked
  // instruction) and read by anyone.
  struct Counters {
    std::atomic<uint64_t> connections_accepted{0};
    std::atomic<uint64_t> connections_refused{0};
    std::atomic<uint64_t> connections_open{0};
    std::atomic<uint64_t> bytes_received{0};
    std::atomic<uint64_t> bytes_sent{0};
    std::atomic<uint64_t> send_calls{0};
    std::atomic<uint64_t> messages_received{0};
    std::atomic<uint64_t> recv_buffers_exhausted{0};
    std::atomic<uint64_t> loop_iterations{0};
    std::atomic<uint64_t> send_queue_bytes{0};  // gauge: bytes queued on all connections
    std::atomic<uint64_t> sends_refused_queue_full{0};
    std::atomic<uint64_t> connections_direct{0};  // gauge
  };

  ShardStats Snapshot() const;

  std::vector<std::unique_ptr<SpscByteQueue>> incoming;
  const int doorbell_fd;
  alignas(64) std::atomic<bool> sleeping{false};
  std::atomic<bool> stop_requested{false};
  std::atomic<uint64_t> wakeups_by_doorbell{0};  // many writers
  Counters counters;
};

// Pushes one cross-shard record from `producer` into `mailbox` and rings its
// doorbell if the consumer sleeps. REQUIRES: the caller is the only thread
// posting as `producer`.
bool PostToMailbox(ShardMailbox& mailbox, int producer, bool producer_is_consumer, uint32_t kind,
                   ConnectionId target, uint64_t argument, std::string_view payload);

// Wakes the shard whatever it is doing (Stop uses it).
void RingDoorbell(ShardMailbox& mailbox);

// Hands every record waiting in `mailbox` to `fn` (for the control mailbox,
// whose consumer is not a shard).
size_t DrainMailboxRecords(ShardMailbox& mailbox,
                           const std::function<void(int producer, const CrossShardMessage&)>& fn);

class UringShard final : public Shard {
 public:
  // `mailboxes` holds every shard's mailbox, by index. `listener_fds` are this
  // shard's listening sockets (parallel to `listener_tags`); the shard owns
  // and closes them. `handler` must outlive the shard.
  UringShard(int index, const EngineOptions& options, ShardHandler* handler,
             std::vector<ShardMailbox*> mailboxes, ShardMailbox* control,
             std::vector<int> listener_fds, std::vector<int> listener_tags);
  ~UringShard() override;
  UringShard(const UringShard&) = delete;
  UringShard& operator=(const UringShard&) = delete;

  // On the shard's thread, before Run: sets the ring and buffers up.
  absl::Status Init();
  // On the shard's thread: the loop, until the mailbox's stop_requested is
  // seen and every connection is closed. Tears the ring down before returning.
  void Run();

  // Shard.
  int index() const override { return index_; }
  int shard_count() const override { return static_cast<int>(mailboxes_.size()); }
  bool Send(ConnectionId id, std::string_view bytes) override;
  size_t QueuedBytes(ConnectionId id) const override;
  void Close(ConnectionId id) override;
  void Abort(ConnectionId id) override;
  ConnectionId Connect(const Endpoint& to) override;
  bool PostToControl(uint32_t kind, ConnectionId target, uint64_t argument,
                     std::string_view payload) override;
  bool Post(int to, uint32_t kind, ConnectionId target, uint64_t argument,
            std::string_view payload) override;
  uint64_t now_ms() const override { return now_ms_; }

 private:
  enum class State : uint8_t { kFree, kConnecting, kOpen, kDraining, kLingering, kTearingDown };

  struct Connection {
    OutputQueue output;
    absl::Status close_reason;
    uint64_t deadline_ms = 0;  // kDraining/kLingering: when to give up on the peer
    int fd = -1;               // a direct descriptor's index in the ring's table when `direct`
    uint32_t generation = 1;
    uint32_t next_free = 0;
    State state = State::kFree;
    bool recv_armed = false;
    bool send_in_flight = false;
    bool connect_in_flight = false;
    bool in_flush_list = false;
    bool in_rearm_list = false;
    bool in_finalize_list = false;
    bool peer_eof = false;
    bool notify_closed = false;  // false for a connection OnAccept refused
    bool direct = false;
    // Connect's destination: the kernel may read it until the connect completes.
    std::unique_ptr<Endpoint> connect_to;
  };

  struct Listener {
    int fd = -1;
    int tag = 0;
    bool armed = false;
    uint64_t rearm_at_ms = 0;  // after an accept error: retry then, not in a tight loop
  };

  // One sendmsg's header and iovecs. The kernel copies them when it consumes
  // the SQE (IORING_FEAT_SUBMIT_STABLE), so a slot is reusable after submit.
  static constexpr int kSendIovecsMax = 32;
  static constexpr size_t kSendBytesMax = 1 << 20;
  static constexpr int kSendSlotsMax = 128;
  struct SendSlot {
    msghdr message;
    iovec iovecs[kSendIovecsMax];
  };

  using SlotRef = std::pair<uint32_t, uint32_t>;  // slot, generation

  absl::Status SetUp();
  Connection* Find(ConnectionId id);
  const Connection* Find(ConnectionId id) const;
  ConnectionId IdOf(uint32_t slot) const;
  uint32_t AllocateSlot();
  void FreeSlot(uint32_t slot);
  // Drops a connection's unsent output and keeps send_queue_bytes true.
  void ClearOutput(Connection& connection);
  void AddQueuedBytes(int64_t delta);

  io_uring_sqe* GetSqe();
  void SubmitPending();
  void Wait();
  void ProcessCompletions();
  void HandleCompletion(const io_uring_cqe& cqe);

  void ArmAccept(size_t listener);
  void ArmRecv(uint32_t slot);
  void ArmDoorbell();
  bool SubmitSend(uint32_t slot);
  // Cancels every operation on `fd` (a table entry when `direct`).
  void CancelAllOn(int fd, bool direct = false);

  // Direct descriptors (EngineOptions::direct_descriptors).
  void SetUpDirectDescriptors();
  // Moves `fd` into the ring's table and closes it: its index, or -1 (the table is full
  // or off, and `fd` stays a plain descriptor).
  int TakeIntoTable(int fd);
  // Sets the SQE's descriptor to the connection's, plain or direct.
  static void UseSocket(io_uring_sqe* sqe, const Connection& connection);
  // Makes the close send RST and drop unsent bytes: for Abort and for peers that
  // stopped reading, so their kernel buffers are freed now.
  void ResetOnClose(const Connection& connection);
  void ShutdownWrite(const Connection& connection);
  // Closes the socket (frees its table entry). REQUIRES: nothing naming it waits in the
  // submission queue.
  void CloseSocket(Connection& connection);

  void OnAcceptCompletion(size_t listener, int result, uint32_t flags);
  void OnRecvCompletion(uint32_t slot, int result, uint32_t flags);
  void OnSendCompletion(uint32_t slot, int result);
  void OnConnectCompletion(uint32_t slot, int result);
  void OnDoorbellCompletion(int result);

  void AdoptConnection(int fd, int tag);
  void OnPeerEof(uint32_t slot);
  void StartDraining(uint32_t slot, absl::Status reason);
  void StartLingering(uint32_t slot);
  void TearDown(uint32_t slot, absl::Status reason);
  void MaybeFinalize(uint32_t slot);
  void MarkForFlush(uint32_t slot);
  void MarkForRearm(uint32_t slot);

  void DrainMailbox();
  bool MailboxEmpty() const;
  void FinalizeClosed();
  void FlushSends();
  void RearmRecvs();
  void CheckDeadlines();
  // Gives back the pages of the queues this shard posts into that have been quiet for
  // queue_release_quiet_ms (SpscByteQueue::ReleaseIdlePages).
  void ReleaseIdleQueuePages();
  void BeginStop();
  bool StopComplete();
  void TearDownRing();
  void LogError(std::string_view event, int error) const;

  template <typename Counter>
  static void Bump(Counter& counter, uint64_t amount = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + amount, std::memory_order_relaxed);
  }

  const int index_;
  const EngineOptions options_;
  ShardHandler* const handler_;
  const std::vector<ShardMailbox*> mailboxes_;
  ShardMailbox& mailbox_;        // mailboxes_[index_]
  ShardMailbox* const control_;  // to the control thread (Engine::DrainControl)

  io_uring ring_{};
  bool ring_ready_ = false;
  std::unique_ptr<ProvidedBufferRing> buffers_;
  ChunkPool chunks_;

  std::vector<Listener> listeners_;
  std::vector<Connection> connections_;
  uint32_t free_head_ = UINT32_MAX;  // free list through Connection::next_free
  size_t connections_open_ = 0;
  uint64_t queued_bytes_ = 0;            // sum of every connection's output.bytes()
  __kernel_timespec connect_timeout_{};  // read by the kernel when linked timeouts are submitted

  std::vector<SlotRef> flush_list_;
  std::vector<SlotRef> rearm_list_;
  std::vector<uint32_t> finalize_list_;
  std::vector<SlotRef> closing_list_;  // kDraining/kLingering, for deadlines

  std::unique_ptr<SendSlot[]> send_slots_;
  int send_slots_used_ = 0;

  uint64_t doorbell_value_ = 0;  // the eventfd read's target
  bool doorbell_armed_ = false;
  bool doorbell_cancelled_ = false;

  uint64_t now_ms_ = 0;
  uint64_t next_tick_ms_ = 0;
  bool stopping_ = false;
  uint64_t stop_give_up_ms_ = 0;
  uint64_t last_refusal_log_ms_ = 0;
  uint64_t last_accept_error_log_ms_ = 0;
  uint64_t refusals_unlogged_ = 0;

  uint32_t direct_table_size_ = 0;     // 0: direct descriptors off
  uint32_t direct_table_high_ = 0;     // entries below it have been handed out at least once
  std::vector<uint32_t> direct_free_;  // freed entries below direct_table_high_
  uint64_t connections_direct_ = 0;
};

}  // namespace stanzad::net

#endif  // STANZAD_NET_SHARD_H_
