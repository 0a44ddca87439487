// OutputQueue: the bytes a connection has queued for sending, as a list of
// fixed-size chunks taken from the shard's ChunkPool.
//
// Why chunks: a send in flight points into the queued bytes while more are
// appended, so queued bytes must never move (a growing vector would); and an
// idle connection should hold no buffer at all, so chunks go back to the pool
// as soon as the kernel has taken their bytes.
//
// Thread safety: none. A queue and its pool belong to one shard thread.
#ifndef STANZAD_NET_OUTPUT_QUEUE_H_
#define STANZAD_NET_OUTPUT_QUEUE_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace stanzad::net {

struct OutputChunk {
  static constexpr size_t kTotalBytes = 16 * 1024;
  static constexpr size_t kDataBytes = kTotalBytes - 2 * sizeof(uint32_t) - sizeof(void*);

  OutputChunk* next = nullptr;
  uint32_t begin = 0;  // first byte not yet sent
  uint32_t end = 0;    // one past the last byte queued
  char data[kDataBytes];
};
static_assert(sizeof(OutputChunk) == OutputChunk::kTotalBytes);

// Recycles chunks. Keeps at most `free_chunks_max` spare ones; the rest go
// back to the allocator, so a burst does not pin memory forever.
class ChunkPool {
 public:
  explicit ChunkPool(size_t free_chunks_max) : free_chunks_max_(free_chunks_max) {}
  ~ChunkPool();
  ChunkPool(const ChunkPool&) = delete;
  ChunkPool& operator=(const ChunkPool&) = delete;

  OutputChunk* Get();
  void Put(OutputChunk* chunk);

  size_t free_chunks() const { return free_chunks_; }
  size_t chunks_in_use() const { return chunks_in_use_; }

 private:
  OutputChunk* free_ = nullptr;
  size_t free_chunks_ = 0;
  size_t chunks_in_use_ = 0;
  const size_t free_chunks_max_;
};

class OutputQueue {
 public:
  OutputQueue() = default;
  // Chunks must be returned with Clear before destruction (the pool is not
  // stored, to keep a connection small).
  OutputQueue(const OutputQueue&) = delete;
  OutputQueue& operator=(const OutputQueue&) = delete;
  OutputQueue(OutputQueue&& other) noexcept;
  OutputQueue& operator=(OutputQueue&& other) noexcept;
  ~OutputQueue();

  // Queued bytes, including those of a send in flight.
  size_t bytes() const { return bytes_; }
  bool empty() const { return bytes_ == 0; }

  // Copies `bytes` to the end of the queue.
  void Append(ChunkPool& pool, std::string_view bytes);

  // Describes up to `iovecs_max` chunks (and at most `bytes_max` bytes) from
  // the front. Returns the number of iovecs filled; the memory stays valid
  // until Consume/Clear drop those bytes.
  int Gather(iovec* iovecs, int iovecs_max, size_t bytes_max) const;

  // Drops `count` bytes from the front (the kernel took them).
  // REQUIRES: count <= bytes().
  void Consume(ChunkPool& pool, size_t count);

  // Drops everything.
  void Clear(ChunkPool& pool);

 private:
  OutputChunk* head_ = nullptr;
  OutputChunk* tail_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace stanzad::net

#endif  // STANZAD_NET_OUTPUT_QUEUE_H_
