// SpscByteQueue: a bounded, lock-free queue of variable-length byte records
// between exactly one producer thread and one consumer thread.
//
// The engine keeps one per ordered pair (producer, consumer shard) for
// cross-shard messages. Records live in one ring of bytes mapped once:
// pushing copies the record in, and draining hands out views into the ring
// until the drain returns, so no record costs an allocation.
//
// Layout: each record is an 8-byte header (its length) followed by its bytes,
// padded to 8. A record never wraps around the end of the ring: when it does
// not fit in the space left before the end, the producer writes a wrap marker
// there and starts the record at offset 0.
//
// Ordering: the producer publishes a record with one release store of `head`
// after copying it in; the consumer releases space with one release store of
// `tail` after the whole drain, so a batch costs one cache-line transfer each
// way, not one per record.
//
// Memory: the ring is mapped, not allocated, and its pages are backed only once
// records reach them. A burst (100,000 bridges binding at once, each bind sent to
// every shard) would leave every ring of every pair of shards resident for good;
// ReleaseIdlePages gives back what a ring quiet for a while has been written.
//
// Thread safety: TryPush and ReleaseIdlePages only from the producer thread, Drain
// and EmptyForConsumer only from the consumer thread (the same thread may be
// both). capacity(), max_record_bytes() and ResidentBytes() from any thread.
#ifndef STANZAD_NET_SPSC_QUEUE_H_
#define STANZAD_NET_SPSC_QUEUE_H_

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>
#include <vector>

#include "core/base/check.h"

namespace stanzad::net {

class SpscByteQueue {
 public:
  static constexpr size_t kRecordHeaderBytes = 8;
  static constexpr size_t kCapacityMinBytes = 64;

  // `capacity_bytes` is rounded up to a power of two (at least 64).
  // CHECK-fails if the ring cannot be mapped (no memory: as `new` would).
  explicit SpscByteQueue(size_t capacity_bytes)
      : capacity_(
            std::bit_ceil(capacity_bytes < kCapacityMinBytes ? kCapacityMinBytes : capacity_bytes)),
        mask_(capacity_ - 1),
        // Page-aligned, so that ReleaseIdlePages can give pages back; unbacked until
        // records reach them.
        ring_(static_cast<char*>(
            mmap(nullptr, capacity_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))) {
    CHECK_MSG(ring_ != MAP_FAILED, "SpscByteQueue: cannot map its ring");
    // Small pages: one record must not back 2 MiB, nor a release split a huge page.
    madvise(ring_, capacity_, MADV_NOHUGEPAGE);
  }
  ~SpscByteQueue() { munmap(ring_, capacity_); }

  SpscByteQueue(const SpscByteQueue&) = delete;
  SpscByteQueue& operator=(const SpscByteQueue&) = delete;

  size_t capacity() const { return capacity_; }

  // The largest record TryPush can ever accept. Half the ring: a record that
  // must skip the unusable end of the ring then still fits in an empty queue.
  size_t max_record_bytes() const { return capacity_ / 2 - kRecordHeaderBytes; }

  // Producer. Appends one record made of `first` followed by `second`.
  // Returns false, writing nothing, if the queue has no room for it now, or
  // if it is larger than max_record_bytes().
  bool TryPush(std::string_view first, std::string_view second = {}) {
    const size_t length = first.size() + second.size();
    if (length > max_record_bytes()) return false;
    const size_t need = RecordBytes(length);
    uint64_t head = producer_.head.load(std::memory_order_relaxed);
    const size_t offset = head & mask_;
    const size_t contiguous = capacity_ - offset;
    const size_t skip = need <= contiguous ? 0 : contiguous;
    if (!HasRoom(head, skip + need)) return false;
    if (skip != 0) {
      // There is always room for a header: offsets and capacity are multiples of 8.
      WriteHeader(offset, kWrapMarker);
      head += skip;
    }
    const size_t start = head & mask_;
    WriteHeader(start, static_cast<uint32_t>(length));
    char* data = ring_ + start + kRecordHeaderBytes;
    if (!first.empty()) std::memcpy(data, first.data(), first.size());
    if (!second.empty()) std::memcpy(data + first.size(), second.data(), second.size());
    producer_.head.store(head + need, std::memory_order_release);
    return true;
  }

  // Producer. Gives back to the kernel the pages written since the last release (all
  // but the one the next record starts in) once no record has been pushed for
  // `quiet_ms` and the consumer has taken every record; once per quiet spell. Call it
  // periodically (a shard's tick) with a monotonic clock in ms: a queue pushed to more
  // often than every `quiet_ms` is never released, so steady traffic pays no page
  // faults. Safe while the consumer runs: it reads only published records, all taken
  // by then, and only the producer writes the rest. Returns the bytes advised away
  // (written since the last release; the kernel frees those it backs).
  size_t ReleaseIdlePages(uint64_t now_ms, uint64_t quiet_ms) {
    const uint64_t head = producer_.head.load(std::memory_order_relaxed);
    if (head != producer_.head_at_last_look) {
      producer_.head_at_last_look = head;  // pushed since: quiet from now on, maybe
      producer_.quiet_since_ms = now_ms;
      return 0;
    }
    if (head == producer_.head_at_release || now_ms - producer_.quiet_since_ms < quiet_ms) {
      return 0;
    }
    // Acquire: every read of the records the consumer took happened before.
    if (consumer_.tail.load(std::memory_order_acquire) != head) return 0;
    const uint64_t written = head - producer_.head_at_release;
    producer_.head_at_release = head;
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    if (capacity_ < 2 * page) return 0;
    const size_t kept = (head & mask_) / page * page;  // where the next record starts
    // The written span, in ring offsets: [first, kept + page) when it does not wrap.
    if (written >= capacity_ - page) return Advise(0, kept) + Advise(kept + page, capacity_);
    const size_t first = ((head - written) & mask_) / page * page;
    if (first <= kept) return Advise(first, kept);
    return Advise(first, capacity_) + Advise(0, kept);
  }

  // The ring's bytes backed by memory now (mincore): what a queue costs in RSS.
  size_t ResidentBytes() const {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t pages = (capacity_ + page - 1) / page;
    std::vector<unsigned char> resident(pages);
    if (mincore(ring_, capacity_, resident.data()) != 0) return 0;
    size_t bytes = 0;
    for (unsigned char flags : resident) bytes += (flags & 1) != 0 ? page : 0;
    return bytes;
  }

  // Consumer. Calls `fn(std::string_view record)` for up to `records_max`
  // records that were published when the call began, oldest first. The views
  // are valid until Drain returns. Returns how many records were handed out.
  // Records pushed while draining (`fn` may push to this very queue when the
  // producer and consumer are the same thread) wait for the next Drain.
  template <typename Fn>
  size_t Drain(size_t records_max, Fn&& fn) {
    const uint64_t head = producer_.head.load(std::memory_order_acquire);
    uint64_t tail = consumer_.tail.load(std::memory_order_relaxed);
    size_t records = 0;
    while (tail != head && records < records_max) {
      const size_t offset = tail & mask_;
      const uint32_t length = ReadHeader(offset);
      if (length == kWrapMarker) {
        tail += capacity_ - offset;
        continue;
      }
      DCHECK_LE(static_cast<size_t>(length), max_record_bytes());
      fn(std::string_view(ring_ + offset + kRecordHeaderBytes, length));
      tail += RecordBytes(length);
      ++records;
    }
    consumer_.tail.store(tail, std::memory_order_release);
    return records;
  }

  // Consumer. True if no record is published. Pair it with a fence when it
  // decides whether to sleep (see Shard's doorbell protocol).
  bool EmptyForConsumer() const {
    return producer_.head.load(std::memory_order_acquire) ==
           consumer_.tail.load(std::memory_order_relaxed);
  }

 private:
  static constexpr uint32_t kWrapMarker = 0xFFFFFFFFu;

  // madvise(MADV_DONTNEED) on ring offsets [begin, end): what it advised.
  size_t Advise(size_t begin, size_t end) {
    if (begin >= end) return 0;
    return madvise(ring_ + begin, end - begin, MADV_DONTNEED) == 0 ? end - begin : 0;
  }

  static size_t RecordBytes(size_t length) {
    return kRecordHeaderBytes + ((length + 7) & ~static_cast<size_t>(7));
  }

  bool HasRoom(uint64_t head, size_t bytes) {
    if (capacity_ - (head - producer_.cached_tail) >= bytes) return true;
    producer_.cached_tail = consumer_.tail.load(std::memory_order_acquire);
    return capacity_ - (head - producer_.cached_tail) >= bytes;
  }

  void WriteHeader(size_t offset, uint32_t length) {
    std::memcpy(ring_ + offset, &length, sizeof(length));
  }
  uint32_t ReadHeader(size_t offset) const {
    uint32_t length;
    std::memcpy(&length, ring_ + offset, sizeof(length));
    return length;
  }

  // Each side's fields on its own cache line, so neither side's writes evict
  // the other's reads except when it publishes.
  struct alignas(64) ProducerSide {
    std::atomic<uint64_t> head{0};
    uint64_t cached_tail = 0;  // the producer's last look at consumer_.tail
    // ReleaseIdlePages: `head` at its previous call and since when (ms) it has been
    // there, and `head` at the last release.
    uint64_t head_at_last_look = 0;
    uint64_t quiet_since_ms = 0;
    uint64_t head_at_release = 0;
  };
  struct alignas(64) ConsumerSide {
    std::atomic<uint64_t> tail{0};
  };

  const size_t capacity_;
  const size_t mask_;
  char* const ring_;  // mapped, capacity_ bytes
  ProducerSide producer_;
  ConsumerSide consumer_;
};

}  // namespace stanzad::net

#endif  // STANZAD_NET_SPSC_QUEUE_H_
