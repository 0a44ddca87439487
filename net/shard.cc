#include "net/shard.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>

#include "core/base/check.h"
#include "core/base/clock.h"
#include "core/base/concat.h"
#include "core/base/log.h"

namespace stanzad::net {
namespace {

// user_data: operation (8 bits) | index (24 bits: slot or listener) | generation (32 bits).
enum class Op : uint8_t {
  kAccept = 1,
  kRecv = 2,
  kSend = 3,
  kDoorbell = 4,
  kIgnore = 5,
  kConnect = 6,
};

uint64_t UserData(Op op, uint32_t index = 0, uint32_t generation = 0) {
  return (static_cast<uint64_t>(op) << 56) | (static_cast<uint64_t>(index & 0xFFFFFF) << 32) |
         generation;
}
Op OpOf(uint64_t user_data) { return static_cast<Op>(user_data >> 56); }
uint32_t IndexOf(uint64_t user_data) { return static_cast<uint32_t>(user_data >> 32) & 0xFFFFFF; }
uint32_t GenerationOfData(uint64_t user_data) { return static_cast<uint32_t>(user_data); }

// Wire form of a cross-shard record: this header, then the payload.
struct RecordHeader {
  uint32_t kind;
  uint32_t reserved;
  uint64_t target;
  uint64_t argument;
};

constexpr size_t kDrainRecordsMaxPerQueue = 4096;
constexpr unsigned kCompletionsMaxPerBatch = 4096;
constexpr uint16_t kBufferGroup = 0;
// How long after close_linger_ms Stop waits for the kernel to finish
// cancelled operations before it tears the ring down regardless.
constexpr uint64_t kStopGraceMs = 2000;

// SO_LINGER with a zero timeout: close() sends RST and drops unsent bytes.
constexpr linger kResetOnClose{1, 0};

// IORING_OP_URING_CMD's SOCKET_URING_OP_SETSOCKOPT (Linux 6.7), which liburing 2.3 does
// not name: the socket option set through the ring, so a direct descriptor needs no
// plain one. The kernel reads `value` when it issues the SQE (at submit).
constexpr uint32_t kSocketUringOpSetsockopt = 3;
void PrepSetsockopt(io_uring_sqe* sqe, int direct, int level, int name, const void* value,
                    uint32_t length) {
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, direct, nullptr, 0, 0);
  sqe->cmd_op = kSocketUringOpSetsockopt;
  // The kernel's layout: level and optname share `addr`, optlen is `file_index`,
  // optval is `addr3`.
  sqe->addr =
      (static_cast<uint64_t>(static_cast<uint32_t>(name)) << 32) | static_cast<uint32_t>(level);
  sqe->file_index = length;
  sqe->addr3 = reinterpret_cast<uintptr_t>(value);
  sqe->flags |= IOSQE_FIXED_FILE;
}

std::string DescribeSetupFlags(unsigned flags) {
  std::string text;
  auto add = [&](unsigned flag, const char* name) {
    if ((flags & flag) == 0) return;
    if (!text.empty()) text += '|';
    text += name;
  };
  add(IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER");
  add(IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN");
  add(IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN");
  add(IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG");
  add(IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL");
  return text.empty() ? "none" : text;
}

}  // namespace

// ---------------------------------------------------------------------------
// ShardMailbox

ShardMailbox::ShardMailbox(int producers, size_t queue_bytes, int eventfd) : doorbell_fd(eventfd) {
  incoming.reserve(producers);
  for (int i = 0; i < producers; ++i) {
    incoming.push_back(std::make_unique<SpscByteQueue>(queue_bytes));
  }
}

ShardMailbox::~ShardMailbox() {
  if (doorbell_fd >= 0) close(doorbell_fd);
}

ShardStats ShardMailbox::Snapshot() const {
  auto load = [](const std::atomic<uint64_t>& value) {
    return value.load(std::memory_order_relaxed);
  };
  ShardStats stats;
  stats.connections_accepted = load(counters.connections_accepted);
  stats.connections_refused = load(counters.connections_refused);
  stats.connections_open = load(counters.connections_open);
  stats.bytes_received = load(counters.bytes_received);
  stats.bytes_sent = load(counters.bytes_sent);
  stats.send_calls = load(counters.send_calls);
  stats.messages_received = load(counters.messages_received);
  stats.wakeups_by_doorbell = load(wakeups_by_doorbell);
  stats.recv_buffers_exhausted = load(counters.recv_buffers_exhausted);
  stats.loop_iterations = load(counters.loop_iterations);
  stats.send_queue_bytes = load(counters.send_queue_bytes);
  stats.sends_refused_queue_full = load(counters.sends_refused_queue_full);
  stats.connections_direct = load(counters.connections_direct);
  return stats;
}

namespace {

// The record as a CrossShardMessage (its payload a view into the queue).
CrossShardMessage DecodeRecord(std::string_view record) {
  RecordHeader header;
  CHECK_GE(record.size(), sizeof(header));
  std::memcpy(&header, record.data(), sizeof(header));
  CrossShardMessage message;
  message.kind = header.kind;
  message.target = header.target;
  message.argument = header.argument;
  message.payload = record.substr(sizeof(header));
  return message;
}

}  // namespace

size_t DrainMailboxRecords(ShardMailbox& mailbox,
                           const std::function<void(int producer, const CrossShardMessage&)>& fn) {
  size_t total = 0;
  for (size_t producer = 0; producer < mailbox.incoming.size(); ++producer) {
    total += mailbox.incoming[producer]->Drain(1024, [&](std::string_view record) {
      fn(static_cast<int>(producer), DecodeRecord(record));
    });
  }
  return total;
}

void RingDoorbell(ShardMailbox& mailbox) {
  const uint64_t one = 1;
  // Cannot block: the counter would need 2^64 - 2 rings without a read.
  [[maybe_unused]] ssize_t written = write(mailbox.doorbell_fd, &one, sizeof(one));
}

bool PostToMailbox(ShardMailbox& mailbox, int producer, bool producer_is_consumer, uint32_t kind,
                   ConnectionId target, uint64_t argument, std::string_view payload) {
  CHECK(producer >= 0 && static_cast<size_t>(producer) < mailbox.incoming.size());
  const RecordHeader header{kind, 0, target, argument};
  if (!mailbox.incoming[producer]->TryPush(
          std::string_view(reinterpret_cast<const char*>(&header), sizeof(header)), payload)) {
    return false;
  }
  // A shard posting to itself is awake by definition.
  if (producer_is_consumer) return true;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (mailbox.sleeping.load(std::memory_order_relaxed) &&
      mailbox.sleeping.exchange(false, std::memory_order_relaxed)) {
    mailbox.wakeups_by_doorbell.fetch_add(1, std::memory_order_relaxed);
    RingDoorbell(mailbox);
  }
  return true;
}

// ---------------------------------------------------------------------------
// UringShard: construction and setup

UringShard::UringShard(int index, const EngineOptions& options, ShardHandler* handler,
                       std::vector<ShardMailbox*> mailboxes, ShardMailbox* control,
                       std::vector<int> listener_fds, std::vector<int> listener_tags)
    : index_(index),
      options_(options),
      handler_(handler),
      mailboxes_(std::move(mailboxes)),
      mailbox_(*mailboxes_[index]),
      control_(control),
      chunks_(options.output_chunks_free_max),
      send_slots_(new SendSlot[kSendSlotsMax]) {
  CHECK_EQ(listener_fds.size(), listener_tags.size());
  for (size_t i = 0; i < listener_fds.size(); ++i) {
    listeners_.push_back(Listener{listener_fds[i], listener_tags[i]});
  }
  connections_.reserve(std::min<size_t>(options_.connections_max_per_shard, 1024));
}

UringShard::~UringShard() {
  // Run() normally leaves nothing; this covers a shard whose Init failed.
  TearDownRing();
  for (Listener& listener : listeners_) {
    if (listener.fd >= 0) close(listener.fd);
  }
}

absl::Status UringShard::Init() {
  absl::Status status = SetUp();
  // Torn down here, on the thread that owns the ring (SINGLE_ISSUER).
  if (!status.ok()) TearDownRing();
  return status;
}

absl::Status UringShard::SetUp() {
  now_ms_ = MonotonicMs();
  next_tick_ms_ = now_ms_ + options_.tick_ms;

  // The fastest setup first; older kernels refuse newer flags with EINVAL.
  const unsigned kBase = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
  const unsigned attempts[] = {
      kBase | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN |
          IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
      kBase | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
      kBase | IORING_SETUP_SUBMIT_ALL,
      kBase,
  };
  int rc = -EINVAL;
  io_uring_params params{};
  for (size_t i = 0; i < std::size(attempts); ++i) {
    params = io_uring_params{};
    params.flags = attempts[i];
    params.cq_entries = options_.ring_entries * 4;
    rc = io_uring_queue_init_params(options_.ring_entries, &ring_, &params);
    if (rc == 0) {
      if (i > 0 && index_ == 0) {
        LogEvent(LogLevel::kWarning, "io_uring_setup_fallback",
                 Concat("wanted=", DescribeSetupFlags(attempts[0]),
                        " using=", DescribeSetupFlags(attempts[i]),
                        " reason=\"the kernel refused the faster flags\""));
      }
      break;
    }
    if (rc != -EINVAL) break;
  }
  if (rc < 0) {
    return absl::ErrnoToStatus(-rc, Concat("cannot set up io_uring with ",
                                           std::to_string(options_.ring_entries), " entries"));
  }
  ring_ready_ = true;
  if ((params.features & IORING_FEAT_SUBMIT_STABLE) == 0 ||
      (params.features & IORING_FEAT_EXT_ARG) == 0 || (params.features & IORING_FEAT_NODROP) == 0) {
    return absl::FailedPreconditionError(
        "this kernel's io_uring lacks SUBMIT_STABLE, EXT_ARG or NODROP (Linux 5.19 or later "
        "is needed)");
  }
  // Saves an fd lookup per io_uring_enter; optional.
  io_uring_register_ring_fd(&ring_);
  if (options_.direct_descriptors) SetUpDirectDescriptors();

  auto buffers = ProvidedBufferRing::Create(&ring_, kBufferGroup, options_.recv_buffer_count,
                                            options_.recv_buffer_bytes);
  if (!buffers.ok()) return buffers.status();
  buffers_ = std::move(*buffers);

  ArmDoorbell();
  for (size_t i = 0; i < listeners_.size(); ++i) ArmAccept(i);
  SubmitPending();
  return absl::OkStatus();
}

void UringShard::LogError(std::string_view event, int error) const {
  LogEvent(LogLevel::kError, event,
           Concat("shard=", std::to_string(index_), " error=", LogQuote(std::strerror(error))));
}

void UringShard::SetUpDirectDescriptors() {
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  // The kernel refuses a table larger than the soft open files limit.
  uint64_t size = std::min<uint64_t>(options_.connections_max_per_shard + kDirectSpare,
                                     options_.direct_descriptors_max);
  if (files.rlim_cur != RLIM_INFINITY) size = std::min<uint64_t>(size, files.rlim_cur);
  if (size == 0) return;
  std::string unavailable;
  if (int rc = io_uring_register_files_sparse(&ring_, static_cast<unsigned>(size)); rc < 0) {
    unavailable = Concat("registering ", std::to_string(size), " files: ", std::strerror(-rc));
  } else {
    // Resetting a connection sets SO_LINGER through the ring: try it on a socket of our own.
    // Nothing else is in flight yet, so the one completion waited for is the probe's.
    const int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int result = probe < 0 ? -errno : io_uring_register_files_update(&ring_, 0, &probe, 1);
    if (probe >= 0) close(probe);
    if (result < 0) {
      unavailable = Concat("moving a socket into the table: ", std::strerror(-result));
    } else {
      io_uring_sqe* sqe = GetSqe();
      PrepSetsockopt(sqe, 0, SOL_SOCKET, SO_LINGER, &kResetOnClose, sizeof(kResetOnClose));
      io_uring_sqe_set_data64(sqe, UserData(Op::kIgnore));
      io_uring_cqe* cqe = nullptr;
      result = io_uring_submit_and_wait(&ring_, 1);
      if (result >= 0) result = io_uring_wait_cqe(&ring_, &cqe);
      if (result >= 0) {
        result = cqe->res;
        io_uring_cqe_seen(&ring_, cqe);
      }
      const int none = -1;
      io_uring_register_files_update(&ring_, 0, &none, 1);
    }
    if (result < 0 && unavailable.empty()) {
      unavailable =
          Concat("setting a socket option through the ring (Linux 6.7): ", std::strerror(-result));
    }
    if (!unavailable.empty()) io_uring_unregister_files(&ring_);
  }
  if (!unavailable.empty()) {
    if (index_ == 0) {
      LogEvent(LogLevel::kWarning, "direct_descriptors_unavailable",
               Concat("reason=", LogQuote(unavailable),
                      " effect=\"every connection holds a plain descriptor: the open files "
                      "limit bounds the whole process\""));
    }
    return;
  }
  direct_table_size_ = static_cast<uint32_t>(size);
}

int UringShard::TakeIntoTable(int fd) {
  uint32_t index;
  if (!direct_free_.empty()) {
    index = direct_free_.back();
    direct_free_.pop_back();
  } else if (direct_table_high_ < direct_table_size_) {
    index = direct_table_high_++;
  } else {
    return -1;
  }
  if (io_uring_register_files_update(&ring_, index, &fd, 1) != 1) {
    direct_free_.push_back(index);
    return -1;
  }
  close(fd);
  mailbox_.counters.connections_direct.store(++connections_direct_, std::memory_order_relaxed);
  return static_cast<int>(index);
}

void UringShard::UseSocket(io_uring_sqe* sqe, const Connection& connection) {
  sqe->fd = connection.fd;
  if (connection.direct) sqe->flags |= IOSQE_FIXED_FILE;
}

void UringShard::ResetOnClose(const Connection& connection) {
  if (!connection.direct) {
    setsockopt(connection.fd, SOL_SOCKET, SO_LINGER, &kResetOnClose, sizeof(kResetOnClose));
    return;
  }
  // Issued at the next submit, which comes before the close (FinalizeClosed).
  io_uring_sqe* sqe = GetSqe();
  PrepSetsockopt(sqe, connection.fd, SOL_SOCKET, SO_LINGER, &kResetOnClose, sizeof(kResetOnClose));
  io_uring_sqe_set_data64(sqe, UserData(Op::kIgnore));
}

void UringShard::ShutdownWrite(const Connection& connection) {
  if (!connection.direct) {
    shutdown(connection.fd, SHUT_WR);
    return;
  }
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_shutdown(sqe, connection.fd, SHUT_WR);
  UseSocket(sqe, connection);
  io_uring_sqe_set_data64(sqe, UserData(Op::kIgnore));
}

void UringShard::CloseSocket(Connection& connection) {
  if (connection.fd < 0) return;
  if (!connection.direct) {
    close(connection.fd);
  } else {
    // The table's reference goes; operations still holding the socket finish first.
    const int none = -1;
    io_uring_register_files_update(&ring_, static_cast<unsigned>(connection.fd), &none, 1);
    direct_free_.push_back(static_cast<uint32_t>(connection.fd));
    mailbox_.counters.connections_direct.store(--connections_direct_, std::memory_order_relaxed);
  }
  connection.fd = -1;
  connection.direct = false;
}

void UringShard::TearDownRing() {
  if (!ring_ready_) return;
  buffers_.reset();
  io_uring_queue_exit(&ring_);
  ring_ready_ = false;
}

// ---------------------------------------------------------------------------
// Connection table

UringShard::Connection* UringShard::Find(ConnectionId id) {
  return const_cast<Connection*>(static_cast<const UringShard*>(this)->Find(id));
}

const UringShard::Connection* UringShard::Find(ConnectionId id) const {
  if (id == kNoConnection || ShardOf(id) != index_) return nullptr;
  const uint32_t slot = SlotOf(id);
  if (slot >= connections_.size()) return nullptr;
  const Connection& connection = connections_[slot];
  if (connection.state == State::kFree || connection.generation != GenerationOf(id)) {
    return nullptr;
  }
  return &connection;
}

ConnectionId UringShard::IdOf(uint32_t slot) const {
  return MakeConnectionId(index_, slot, connections_[slot].generation);
}

uint32_t UringShard::AllocateSlot() {
  uint32_t slot;
  if (free_head_ != UINT32_MAX) {
    slot = free_head_;
    free_head_ = connections_[slot].next_free;
  } else {
    CHECK_LT(connections_.size(), static_cast<size_t>(kSlotsMax));
    slot = static_cast<uint32_t>(connections_.size());
    connections_.emplace_back();
  }
  ++connections_open_;
  Bump(mailbox_.counters.connections_open);
  return slot;
}

void UringShard::ClearOutput(Connection& connection) {
  AddQueuedBytes(-static_cast<int64_t>(connection.output.bytes()));
  connection.output.Clear(chunks_);
}

void UringShard::AddQueuedBytes(int64_t delta) {
  queued_bytes_ = static_cast<uint64_t>(static_cast<int64_t>(queued_bytes_) + delta);
  mailbox_.counters.send_queue_bytes.store(queued_bytes_, std::memory_order_relaxed);
}

void UringShard::FreeSlot(uint32_t slot) {
  Connection& connection = connections_[slot];
  CHECK(!connection.recv_armed && !connection.send_in_flight);
  ClearOutput(connection);
  connection.close_reason = absl::OkStatus();
  CHECK(connection.fd < 0);
  connection.state = State::kFree;
  connection.in_flush_list = connection.in_rearm_list = connection.in_finalize_list = false;
  connection.peer_eof = connection.notify_closed = false;
  // Never 0, so no live id equals a stale one built before a wrap.
  if (++connection.generation == 0) connection.generation = 1;
  connection.next_free = free_head_;
  free_head_ = slot;
  --connections_open_;
  mailbox_.counters.connections_open.store(connections_open_, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------
// Submission

io_uring_sqe* UringShard::GetSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  // Full: submit. The kernel takes every SQE unless it is out of memory
  // (-EAGAIN); then give it a moment, for a bounded time.
  for (int attempt = 0; sqe == nullptr && attempt < 1000; ++attempt) {
    if (attempt > 0) usleep(1000);
    SubmitPending();
    sqe = io_uring_get_sqe(&ring_);
  }
  CHECK_MSG(sqe != nullptr, "io_uring submission queue still full after 1 s of submitting");
  return sqe;
}

void UringShard::SubmitPending() {
  const int rc = io_uring_submit(&ring_);
  if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
    LogError("io_uring_submit_failed", -rc);
  }
  // Send slots are free again once the kernel has consumed their SQEs.
  if (io_uring_sq_ready(&ring_) == 0) send_slots_used_ = 0;
}

void UringShard::ArmAccept(size_t listener) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_multishot_accept(sqe, listeners_[listener].fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, UserData(Op::kAccept, static_cast<uint32_t>(listener)));
  listeners_[listener].armed = true;
}

void UringShard::ArmRecv(uint32_t slot) {
  Connection& connection = connections_[slot];
  DCHECK(!connection.recv_armed);
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_recv_multishot(sqe, connection.fd, nullptr, 0, 0);
  UseSocket(sqe, connection);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = buffers_->group_id();
  io_uring_sqe_set_data64(sqe, UserData(Op::kRecv, slot, connection.generation));
  connection.recv_armed = true;
}

void UringShard::ArmDoorbell() {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_read(sqe, mailbox_.doorbell_fd, &doorbell_value_, sizeof(doorbell_value_), 0);
  io_uring_sqe_set_data64(sqe, UserData(Op::kDoorbell));
  doorbell_armed_ = true;
}

void UringShard::CancelAllOn(int fd, bool direct) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_cancel_fd(sqe, fd,
                          IORING_ASYNC_CANCEL_ALL | (direct ? IORING_ASYNC_CANCEL_FD_FIXED : 0));
  io_uring_sqe_set_data64(sqe, UserData(Op::kIgnore));
}

bool UringShard::SubmitSend(uint32_t slot) {
  if (send_slots_used_ == kSendSlotsMax) {
    SubmitPending();
    if (send_slots_used_ == kSendSlotsMax) return false;  // the kernel took nothing: later
  }
  // GetSqe may submit, which only frees send slots; take ours after it, so a
  // submit can never carry this SQE before its slot is filled.
  io_uring_sqe* sqe = GetSqe();
  DCHECK(send_slots_used_ < kSendSlotsMax);
  SendSlot& send = send_slots_[send_slots_used_++];
  Connection& connection = connections_[slot];
  const int count = connection.output.Gather(send.iovecs, kSendIovecsMax, kSendBytesMax);
  DCHECK(count > 0);
  send.message = msghdr{};
  send.message.msg_iov = send.iovecs;
  send.message.msg_iovlen = static_cast<size_t>(count);
  io_uring_prep_sendmsg(sqe, connection.fd, &send.message, MSG_NOSIGNAL);
  UseSocket(sqe, connection);
  io_uring_sqe_set_data64(sqe, UserData(Op::kSend, slot, connection.generation));
  connection.send_in_flight = true;
  Bump(mailbox_.counters.send_calls);
  return true;
}

void UringShard::ReleaseIdleQueuePages() {
  for (ShardMailbox* mailbox : mailboxes_) {
    mailbox->incoming[static_cast<size_t>(index_)]->ReleaseIdlePages(
        now_ms_, options_.queue_release_quiet_ms);
  }
  control_->incoming[static_cast<size_t>(index_)]->ReleaseIdlePages(
      now_ms_, options_.queue_release_quiet_ms);
}

// ---------------------------------------------------------------------------
// The loop

void UringShard::Run() {
  while (true) {
    Bump(mailbox_.counters.loop_iterations);
    if (!stopping_ && mailbox_.stop_requested.load(std::memory_order_acquire)) BeginStop();
    if (!stopping_) {
      DrainMailbox();
      if (now_ms_ >= next_tick_ms_) {
        // Late ticks are not replayed: one call, then the next period from now.
        next_tick_ms_ = std::max(next_tick_ms_ + options_.tick_ms, now_ms_ + 1);
        handler_->OnTick(*this, now_ms_);
        CheckDeadlines();
        ReleaseIdleQueuePages();
        for (size_t i = 0; i < listeners_.size(); ++i) {
          if (!listeners_[i].armed && listeners_[i].fd >= 0 &&
              now_ms_ >= listeners_[i].rearm_at_ms) {
            ArmAccept(i);
          }
        }
      }
    } else if (now_ms_ >= next_tick_ms_) {
      next_tick_ms_ = now_ms_ + options_.tick_ms;
      CheckDeadlines();
    }
    FinalizeClosed();
    if (!stopping_) handler_->OnFlush(*this);
    FlushSends();
    buffers_->Publish();
    RearmRecvs();
    if (stopping_ && StopComplete()) break;
    Wait();
    now_ms_ = MonotonicMs();
    ProcessCompletions();
  }
  TearDownRing();
}

bool UringShard::MailboxEmpty() const {
  for (const auto& queue : mailbox_.incoming) {
    if (!queue->EmptyForConsumer()) return false;
  }
  return true;
}

void UringShard::Wait() {
  bool busy = !finalize_list_.empty() || !flush_list_.empty() || !rearm_list_.empty();
  if (!busy && !stopping_) {
    mailbox_.sleeping.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    busy = !MailboxEmpty() || mailbox_.stop_requested.load(std::memory_order_relaxed);
  }
  if (busy) {
    mailbox_.sleeping.store(false, std::memory_order_relaxed);
    const int rc = io_uring_submit_and_get_events(&ring_);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      LogError("io_uring_enter_failed", -rc);
    }
  } else {
    const uint64_t now = MonotonicMs();
    const uint64_t wait_ms = next_tick_ms_ > now ? next_tick_ms_ - now : 0;
    __kernel_timespec timeout{};
    timeout.tv_sec = static_cast<int64_t>(wait_ms / 1000);
    timeout.tv_nsec = static_cast<long long>(wait_ms % 1000) * 1000000;
    io_uring_cqe* cqe = nullptr;
    const int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &timeout, nullptr);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      LogError("io_uring_wait_failed", -rc);
    }
    mailbox_.sleeping.store(false, std::memory_order_relaxed);
  }
  if (io_uring_sq_ready(&ring_) == 0) send_slots_used_ = 0;
}

void UringShard::ProcessCompletions() {
  unsigned head;
  io_uring_cqe* cqe;
  unsigned count = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    // Copied: handlers may submit, and the slot is ours until cq_advance anyway.
    const io_uring_cqe copy = *cqe;
    HandleCompletion(copy);
    if (++count == kCompletionsMaxPerBatch) break;
  }
  io_uring_cq_advance(&ring_, count);
}

void UringShard::HandleCompletion(const io_uring_cqe& cqe) {
  const uint64_t data = cqe.user_data;
  switch (OpOf(data)) {
    case Op::kAccept:
      OnAcceptCompletion(IndexOf(data), cqe.res, cqe.flags);
      return;
    case Op::kRecv:
    case Op::kSend:
    case Op::kConnect: {
      const uint32_t slot = IndexOf(data);
      // An operation in flight keeps its slot alive: the slot cannot have been reused.
      CHECK(slot < connections_.size() && connections_[slot].state != State::kFree &&
            connections_[slot].generation == GenerationOfData(data));
      if (OpOf(data) == Op::kRecv) {
        OnRecvCompletion(slot, cqe.res, cqe.flags);
      } else if (OpOf(data) == Op::kSend) {
        OnSendCompletion(slot, cqe.res);
      } else {
        OnConnectCompletion(slot, cqe.res);
      }
      return;
    }
    case Op::kDoorbell:
      OnDoorbellCompletion(cqe.res);
      return;
    case Op::kIgnore:
      return;
  }
  CHECK_MSG(false, "completion with unknown user_data");
}

// ---------------------------------------------------------------------------
// Completions

void UringShard::OnAcceptCompletion(size_t index, int result, uint32_t flags) {
  CHECK_LT(index, listeners_.size());
  Listener& listener = listeners_[index];
  if ((flags & IORING_CQE_F_MORE) == 0) listener.armed = false;
  if (result >= 0) {
    AdoptConnection(result, listener.tag);
  } else if (result != -ECANCELED) {
    if (now_ms_ >= last_accept_error_log_ms_ + 1000) {
      last_accept_error_log_ms_ = now_ms_;
      LogEvent(LogLevel::kWarning, "accept_failed",
               Concat("shard=", std::to_string(index_), " error=", LogQuote(std::strerror(-result)),
                      " action=retry_next_tick"));
    }
    // EMFILE and friends persist: retry at the next tick, not in a tight loop.
    listener.rearm_at_ms = now_ms_ + options_.tick_ms;
  }
  Listener& again = listeners_[index];  // AdoptConnection runs the handler
  if (!again.armed && again.fd >= 0) {
    if (stopping_) {
      close(again.fd);
      again.fd = -1;
    } else if (result >= 0) {
      ArmAccept(index);
    }
  }
}

void UringShard::AdoptConnection(int fd, int tag) {
  Bump(mailbox_.counters.connections_accepted);
  if (stopping_ || connections_open_ >= options_.connections_max_per_shard) {
    Bump(mailbox_.counters.connections_refused);
    close(fd);
    ++refusals_unlogged_;
    if (now_ms_ >= last_refusal_log_ms_ + 1000) {
      LogEvent(
          LogLevel::kWarning, "connections_refused",
          Concat("shard=", std::to_string(index_), " count=", std::to_string(refusals_unlogged_),
                 " reason=", stopping_ ? "stopping" : "connections_max_per_shard",
                 " limit=", std::to_string(options_.connections_max_per_shard)));
      last_refusal_log_ms_ = now_ms_;
      refusals_unlogged_ = 0;
    }
    return;
  }
  Endpoint peer;
  peer.length = sizeof(peer.address);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer.address), &peer.length) != 0) {
    // Reset before we looked at it: nothing to report.
    close(fd);
    return;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

  const int direct = direct_table_size_ > 0 ? TakeIntoTable(fd) : -1;
  const uint32_t slot = AllocateSlot();
  {
    Connection& connection = connections_[slot];
    connection.fd = direct >= 0 ? direct : fd;
    connection.direct = direct >= 0;
    connection.state = State::kOpen;
    connection.notify_closed = true;
  }
  const bool accepted = handler_->OnAccept(*this, IdOf(slot), peer, tag);
  Connection& connection = connections_[slot];
  if (!accepted) {
    Bump(mailbox_.counters.connections_refused);
    connection.notify_closed = false;
    TearDown(slot, absl::OkStatus());
    return;
  }
  if (connection.state == State::kOpen || connection.state == State::kDraining) ArmRecv(slot);
}

void UringShard::OnRecvCompletion(uint32_t slot, int result, uint32_t flags) {
  const bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (!more) connections_[slot].recv_armed = false;
  bool rearm = false;
  if (result > 0) {
    if ((flags & IORING_CQE_F_BUFFER) == 0) {
      TearDown(slot, absl::InternalError("recv completed without a provided buffer"));
    } else {
      const auto buffer_id = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
      Bump(mailbox_.counters.bytes_received, static_cast<uint64_t>(result));
      if (connections_[slot].state == State::kOpen) {
        handler_->OnData(*this, IdOf(slot), buffers_->Data(buffer_id, static_cast<size_t>(result)));
      }
      // Input after Close or during the linger is discarded.
      buffers_->Recycle(buffer_id);
      rearm = !more;
    }
  } else if (result == 0) {
    if ((flags & IORING_CQE_F_BUFFER) != 0) {
      buffers_->Recycle(static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT));
    }
    connections_[slot].peer_eof = true;
    OnPeerEof(slot);
  } else if (result == -ENOBUFS) {
    // Every buffer is in use: they come back at the end of this batch (Publish
    // runs before RearmRecvs), so re-arm then.
    Bump(mailbox_.counters.recv_buffers_exhausted);
    rearm = !more;
  } else if (result == -ECANCELED) {
    // Ours, from TearDown; anything else (never expected) must not leave the
    // connection deaf.
    rearm = !more;
  } else {
    TearDown(slot, absl::ErrnoToStatus(-result, "recv"));
  }
  Connection& connection = connections_[slot];
  if (rearm && !connection.recv_armed &&
      (connection.state == State::kOpen || connection.state == State::kDraining ||
       connection.state == State::kLingering)) {
    MarkForRearm(slot);
  }
  if (connection.state == State::kTearingDown) MaybeFinalize(slot);
}

void UringShard::OnSendCompletion(uint32_t slot, int result) {
  Connection& connection = connections_[slot];
  connection.send_in_flight = false;
  if (result > 0) {
    connection.output.Consume(chunks_, static_cast<size_t>(result));
    AddQueuedBytes(-static_cast<int64_t>(result));
    Bump(mailbox_.counters.bytes_sent, static_cast<uint64_t>(result));
  } else if (result == 0 || result == -ECANCELED) {
    // 0: nothing taken; retried below unless the connection is going away.
  } else if (result != -EINTR && result != -EAGAIN) {
    if (result == -EPIPE || result == -ECONNRESET) ResetOnClose(connection);
    TearDown(slot, absl::ErrnoToStatus(-result, "send"));
  }
  switch (connection.state) {
    case State::kTearingDown:
      MaybeFinalize(slot);
      break;
    case State::kOpen:
    case State::kDraining:
      if (!connection.output.empty()) {
        MarkForFlush(slot);
      } else if (connection.state == State::kDraining) {
        StartLingering(slot);
      }
      break;
    default:
      break;
  }
}

void UringShard::OnDoorbellCompletion(int result) {
  doorbell_armed_ = false;
  if (result < 0 && result != -ECANCELED && result != -EAGAIN && result != -EINTR) {
    LogError("doorbell_read_failed", -result);
  }
  if (!doorbell_cancelled_) ArmDoorbell();
}

// ---------------------------------------------------------------------------
// Closing

void UringShard::OnPeerEof(uint32_t slot) {
  Connection& connection = connections_[slot];
  switch (connection.state) {
    case State::kOpen:
      StartDraining(slot, absl::OkStatus());
      break;
    case State::kLingering:
      TearDown(slot, connection.close_reason);
      break;
    default:
      // kDraining: StartLingering sees peer_eof once the queue is flushed.
      break;
  }
}

void UringShard::StartDraining(uint32_t slot, absl::Status reason) {
  Connection& connection = connections_[slot];
  DCHECK(connection.state == State::kOpen);
  connection.state = State::kDraining;
  connection.close_reason = std::move(reason);
  connection.deadline_ms = now_ms_ + options_.close_linger_ms;
  closing_list_.emplace_back(slot, connection.generation);
  if (connection.output.empty() && !connection.send_in_flight) StartLingering(slot);
}

void UringShard::StartLingering(uint32_t slot) {
  Connection& connection = connections_[slot];
  DCHECK(connection.state == State::kDraining);
  if (connection.peer_eof) {
    TearDown(slot, connection.close_reason);
    return;
  }
  // Our FIN goes out now; the peer's unread input is drained until its EOF,
  // because closing with unread input sends RST, which can destroy the bytes
  // just flushed before the peer reads them.
  ShutdownWrite(connection);
  connection.state = State::kLingering;
  if (!connection.recv_armed && !connection.in_rearm_list) MarkForRearm(slot);
}

void UringShard::TearDown(uint32_t slot, absl::Status reason) {
  Connection& connection = connections_[slot];
  if (connection.state == State::kTearingDown || connection.state == State::kFree) return;
  connection.state = State::kTearingDown;
  connection.close_reason = std::move(reason);
  // A send in flight may still read the queue; otherwise free it now.
  if (!connection.send_in_flight) ClearOutput(connection);
  if (connection.recv_armed || connection.send_in_flight || connection.connect_in_flight) {
    CancelAllOn(connection.fd, connection.direct);
  }
  MaybeFinalize(slot);
}

void UringShard::MaybeFinalize(uint32_t slot) {
  Connection& connection = connections_[slot];
  if (connection.state != State::kTearingDown || connection.recv_armed ||
      connection.send_in_flight || connection.connect_in_flight || connection.in_finalize_list) {
    return;
  }
  connection.in_finalize_list = true;
  finalize_list_.push_back(slot);
}

void UringShard::FinalizeClosed() {
  // OnClosed may close more connections; they are finalised next iteration.
  if (finalize_list_.empty()) return;
  // A cancel (or option) by fd still waiting in the submission queue must reach
  // the kernel before the fd number (or table entry) is closed and possibly reused.
  if (io_uring_sq_ready(&ring_) != 0) SubmitPending();
  std::vector<uint32_t> slots;
  slots.swap(finalize_list_);
  for (uint32_t slot : slots) {
    Connection& connection = connections_[slot];
    DCHECK(connection.state == State::kTearingDown && connection.in_finalize_list);
    CloseSocket(connection);
    const ConnectionId id = IdOf(slot);
    const bool notify = connection.notify_closed;
    absl::Status reason = std::move(connection.close_reason);
    FreeSlot(slot);  // first, so the id is dead during OnClosed
    if (notify) handler_->OnClosed(*this, id, reason);
  }
  if (finalize_list_.empty()) {
    slots.clear();
    finalize_list_.swap(slots);  // keep the capacity
  }
}

void UringShard::CheckDeadlines() {
  size_t kept = 0;
  for (const SlotRef& ref : closing_list_) {
    const uint32_t slot = ref.first;
    Connection& connection = connections_[slot];
    if (connection.generation != ref.second ||
        (connection.state != State::kDraining && connection.state != State::kLingering)) {
      continue;
    }
    if (now_ms_ < connection.deadline_ms) {
      closing_list_[kept++] = ref;
      continue;
    }
    if (connection.state == State::kDraining) {
      const size_t unsent = connection.output.bytes();
      ResetOnClose(connection);
      TearDown(slot,
               absl::DeadlineExceededError(Concat(
                   "close: the peer did not take the last ", std::to_string(unsent),
                   " queued bytes within ", std::to_string(options_.close_linger_ms), " ms")));
    } else {
      // Our bytes were flushed and our FIN sent; the peer just never closed.
      TearDown(slot, connection.close_reason);
    }
  }
  closing_list_.resize(kept);
}

// ---------------------------------------------------------------------------
// Per-iteration work

void UringShard::MarkForFlush(uint32_t slot) {
  Connection& connection = connections_[slot];
  if (connection.in_flush_list) return;
  connection.in_flush_list = true;
  flush_list_.emplace_back(slot, connection.generation);
}

void UringShard::MarkForRearm(uint32_t slot) {
  Connection& connection = connections_[slot];
  if (connection.in_rearm_list) return;
  connection.in_rearm_list = true;
  rearm_list_.emplace_back(slot, connection.generation);
}

void UringShard::FlushSends() {
  size_t done = 0;
  for (; done < flush_list_.size(); ++done) {
    const SlotRef ref = flush_list_[done];
    Connection& connection = connections_[ref.first];
    if (connection.generation != ref.second || !connection.in_flush_list) continue;
    if ((connection.state == State::kOpen || connection.state == State::kDraining) &&
        !connection.send_in_flight && !connection.output.empty() && !SubmitSend(ref.first)) {
      break;  // no send slot now: this one and the rest go next iteration
    }
    connection.in_flush_list = false;
  }
  flush_list_.erase(flush_list_.begin(), flush_list_.begin() + static_cast<ptrdiff_t>(done));
}

void UringShard::RearmRecvs() {
  for (const SlotRef& ref : rearm_list_) {
    Connection& connection = connections_[ref.first];
    if (connection.generation != ref.second || !connection.in_rearm_list) continue;
    connection.in_rearm_list = false;
    if ((connection.state == State::kOpen || connection.state == State::kDraining ||
         connection.state == State::kLingering) &&
        !connection.recv_armed && !connection.peer_eof) {
      ArmRecv(ref.first);
    }
  }
  rearm_list_.clear();
}

void UringShard::DrainMailbox() {
  for (auto& queue : mailbox_.incoming) {
    const size_t records = queue->Drain(kDrainRecordsMaxPerQueue, [this](std::string_view record) {
      handler_->OnMessage(*this, DecodeRecord(record));
    });
    if (records != 0) Bump(mailbox_.counters.messages_received, records);
  }
}

// ---------------------------------------------------------------------------
// Shard API

bool UringShard::Send(ConnectionId id, std::string_view bytes) {
  Connection* connection = Find(id);
  if (connection == nullptr ||
      (connection->state != State::kOpen && connection->state != State::kConnecting)) {
    return false;
  }
  if (bytes.empty()) return true;
  if (connection->output.bytes() + bytes.size() > options_.connection_queue_bytes_max) {
    Bump(mailbox_.counters.sends_refused_queue_full);
    return false;
  }
  connection->output.Append(chunks_, bytes);
  AddQueuedBytes(static_cast<int64_t>(bytes.size()));
  MarkForFlush(SlotOf(id));
  return true;
}

size_t UringShard::QueuedBytes(ConnectionId id) const {
  const Connection* connection = Find(id);
  // A connection being torn down will send nothing more.
  if (connection == nullptr || connection->state == State::kTearingDown) return 0;
  return connection->output.bytes();
}

void UringShard::Close(ConnectionId id) {
  Connection* connection = Find(id);
  if (connection == nullptr) return;
  if (connection->state == State::kConnecting) {
    TearDown(SlotOf(id), absl::CancelledError("connect cancelled: closed by the server"));
    return;
  }
  if (connection->state != State::kOpen) return;
  StartDraining(SlotOf(id), absl::OkStatus());
}

ConnectionId UringShard::Connect(const Endpoint& to) {
  if (stopping_ || connections_open_ >= options_.connections_max_per_shard) return kNoConnection;
  const int fd = socket(to.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    LogError("connect_socket_failed", errno);
    return kNoConnection;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  const int direct = direct_table_size_ > 0 ? TakeIntoTable(fd) : -1;
  const uint32_t slot = AllocateSlot();
  Connection& connection = connections_[slot];
  connection.fd = direct >= 0 ? direct : fd;
  connection.direct = direct >= 0;
  connection.state = State::kConnecting;
  connection.notify_closed = true;
  connection.connect_to = std::make_unique<Endpoint>(to);
  // The connect and its linked timeout must go to the kernel in one submission.
  if (io_uring_sq_space_left(&ring_) < 2) SubmitPending();
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_connect(sqe, connection.fd,
                        reinterpret_cast<const sockaddr*>(&connection.connect_to->address),
                        connection.connect_to->length);
  UseSocket(sqe, connection);
  io_uring_sqe_set_data64(sqe, UserData(Op::kConnect, slot, connection.generation));
  sqe->flags |= IOSQE_IO_LINK;
  // The timeout's own completion says nothing we need: the connect's does.
  connect_timeout_.tv_sec = options_.connect_timeout_ms / 1000;
  connect_timeout_.tv_nsec = static_cast<long long>(options_.connect_timeout_ms % 1000) * 1'000'000;
  io_uring_sqe* timer = GetSqe();
  io_uring_prep_link_timeout(timer, &connect_timeout_, 0);
  io_uring_sqe_set_data64(timer, UserData(Op::kIgnore));
  connection.connect_in_flight = true;
  return IdOf(slot);
}

void UringShard::OnConnectCompletion(uint32_t slot, int result) {
  Connection& connection = connections_[slot];
  connection.connect_in_flight = false;
  connection.connect_to.reset();
  if (connection.state == State::kTearingDown) {
    MaybeFinalize(slot);
    return;
  }
  DCHECK(connection.state == State::kConnecting);
  if (result < 0) {
    TearDown(slot, result == -ECANCELED ? absl::DeadlineExceededError(Concat(
                                              "connect: no answer within ",
                                              std::to_string(options_.connect_timeout_ms), " ms"))
                                        : absl::ErrnoToStatus(-result, "connect"));
    return;
  }
  connection.state = State::kOpen;
  handler_->OnConnected(*this, IdOf(slot));
  Connection& now = connections_[slot];
  if (now.state == State::kOpen || now.state == State::kDraining) {
    ArmRecv(slot);
    if (!now.output.empty()) MarkForFlush(slot);
  }
}

void UringShard::Abort(ConnectionId id) {
  Connection* connection = Find(id);
  if (connection == nullptr || connection->state == State::kTearingDown) return;
  ResetOnClose(*connection);
  TearDown(SlotOf(id), absl::CancelledError("connection aborted by the server"));
}

bool UringShard::PostToControl(uint32_t kind, ConnectionId target, uint64_t argument,
                               std::string_view payload) {
  // The control mailbox is always "sleeping": every record rings its eventfd.
  return PostToMailbox(*control_, index_, false, kind, target, argument, payload);
}

bool UringShard::Post(int to, uint32_t kind, ConnectionId target, uint64_t argument,
                      std::string_view payload) {
  CHECK_MSG(to >= 0 && to < shard_count(), "Post to a shard that does not exist");
  return PostToMailbox(*mailboxes_[to], index_, to == index_, kind, target, argument, payload);
}

// ---------------------------------------------------------------------------
// Stopping

void UringShard::BeginStop() {
  stopping_ = true;
  stop_give_up_ms_ = now_ms_ + options_.close_linger_ms + kStopGraceMs;
  for (Listener& listener : listeners_) {
    if (listener.fd < 0) continue;
    if (listener.armed) {
      CancelAllOn(listener.fd);  // closed when its accept completes
    } else {
      close(listener.fd);
      listener.fd = -1;
    }
  }
  handler_->OnStop(*this);
  for (uint32_t slot = 0; slot < connections_.size(); ++slot) {
    if (connections_[slot].state == State::kOpen) {
      StartDraining(slot, absl::CancelledError("the engine is stopping"));
    } else if (connections_[slot].state == State::kConnecting) {
      TearDown(slot, absl::CancelledError("the engine is stopping"));
    }
  }
}

bool UringShard::StopComplete() {
  const bool listeners_closed =
      std::all_of(listeners_.begin(), listeners_.end(),
                  [](const Listener& listener) { return listener.fd < 0; });
  const bool connections_closed = connections_open_ == 0 && finalize_list_.empty();
  if (listeners_closed && connections_closed) {
    if (!doorbell_armed_) return true;
    if (!doorbell_cancelled_) {
      doorbell_cancelled_ = true;
      CancelAllOn(mailbox_.doorbell_fd);
    }
    return false;
  }
  if (now_ms_ < stop_give_up_ms_) return false;
  // The kernel has not finished cancelled operations in time (should not
  // happen). Close what is left; tearing the ring down cancels the rest.
  LogEvent(LogLevel::kError, "shard_stop_timed_out",
           Concat("shard=", std::to_string(index_), " connections_left=",
                  std::to_string(connections_open_), " action=closing_regardless"));
  // Tearing the ring down first: it may still read queued bytes.
  TearDownRing();
  for (uint32_t slot = 0; slot < connections_.size(); ++slot) {
    Connection& connection = connections_[slot];
    if (connection.state == State::kFree) continue;
    // The ring's teardown closed the direct descriptors.
    if (!connection.direct) close(connection.fd);
    connection.fd = -1;
    connection.direct = false;
    const ConnectionId id = IdOf(slot);
    const bool notify = connection.notify_closed;
    connection.recv_armed = connection.send_in_flight = false;
    FreeSlot(slot);
    if (notify) handler_->OnClosed(*this, id, absl::CancelledError("the engine is stopping"));
  }
  connections_direct_ = 0;
  mailbox_.counters.connections_direct.store(0, std::memory_order_relaxed);
  for (Listener& listener : listeners_) {
    if (listener.fd >= 0) close(listener.fd);
    listener.fd = -1;
  }
  return true;
}

}  // namespace stanzad::net
