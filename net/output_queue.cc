#include "net/output_queue.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/base/check.h"

namespace stanzad::net {

ChunkPool::~ChunkPool() {
  CHECK_MSG(chunks_in_use_ == 0, "output chunks still in use when their pool is destroyed");
  while (free_ != nullptr) {
    OutputChunk* next = free_->next;
    delete free_;
    free_ = next;
  }
}

OutputChunk* ChunkPool::Get() {
  OutputChunk* chunk = free_;
  if (chunk != nullptr) {
    free_ = chunk->next;
    --free_chunks_;
  } else {
    chunk = new OutputChunk;
  }
  chunk->next = nullptr;
  chunk->begin = 0;
  chunk->end = 0;
  ++chunks_in_use_;
  return chunk;
}

void ChunkPool::Put(OutputChunk* chunk) {
  DCHECK(chunks_in_use_ > 0);
  --chunks_in_use_;
  if (free_chunks_ >= free_chunks_max_) {
    delete chunk;
    return;
  }
  chunk->next = free_;
  free_ = chunk;
  ++free_chunks_;
}

OutputQueue::OutputQueue(OutputQueue&& other) noexcept
    : head_(std::exchange(other.head_, nullptr)),
      tail_(std::exchange(other.tail_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)) {}

OutputQueue& OutputQueue::operator=(OutputQueue&& other) noexcept {
  CHECK_MSG(head_ == nullptr, "overwriting an output queue that still holds chunks");
  head_ = std::exchange(other.head_, nullptr);
  tail_ = std::exchange(other.tail_, nullptr);
  bytes_ = std::exchange(other.bytes_, 0);
  return *this;
}

OutputQueue::~OutputQueue() {
  CHECK_MSG(head_ == nullptr, "output queue destroyed while holding chunks");
}

void OutputQueue::Append(ChunkPool& pool, std::string_view bytes) {
  while (!bytes.empty()) {
    if (tail_ == nullptr || tail_->end == OutputChunk::kDataBytes) {
      OutputChunk* chunk = pool.Get();
      if (tail_ == nullptr) {
        head_ = chunk;
      } else {
        tail_->next = chunk;
      }
      tail_ = chunk;
    }
    const size_t count = std::min(bytes.size(), OutputChunk::kDataBytes - tail_->end);
    std::memcpy(tail_->data + tail_->end, bytes.data(), count);
    tail_->end += static_cast<uint32_t>(count);
    bytes_ += count;
    bytes.remove_prefix(count);
  }
}

int OutputQueue::Gather(iovec* iovecs, int iovecs_max, size_t bytes_max) const {
  int count = 0;
  size_t total = 0;
  for (OutputChunk* chunk = head_; chunk != nullptr && count < iovecs_max && total < bytes_max;
       chunk = chunk->next) {
    const size_t length = std::min<size_t>(chunk->end - chunk->begin, bytes_max - total);
    if (length == 0) continue;
    iovecs[count].iov_base = chunk->data + chunk->begin;
    iovecs[count].iov_len = length;
    ++count;
    total += length;
  }
  return count;
}

void OutputQueue::Consume(ChunkPool& pool, size_t count) {
  CHECK_LE(count, bytes_);
  bytes_ -= count;
  while (count > 0) {
    DCHECK(head_ != nullptr);
    const size_t available = head_->end - head_->begin;
    if (count < available) {
      head_->begin += static_cast<uint32_t>(count);
      return;
    }
    count -= available;
    OutputChunk* next = head_->next;
    pool.Put(head_);
    head_ = next;
  }
  if (head_ == nullptr) tail_ = nullptr;
}

void OutputQueue::Clear(ChunkPool& pool) {
  while (head_ != nullptr) {
    OutputChunk* next = head_->next;
    pool.Put(head_);
    head_ = next;
  }
  tail_ = nullptr;
  bytes_ = 0;
}

}  // namespace stanzad::net
