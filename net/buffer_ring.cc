#include "net/buffer_ring.h"

#include <sys/mman.h>

#include <bit>
#include <cerrno>
#include <string>

#include "absl/status/status.h"
#include "core/base/check.h"
#include "core/base/concat.h"

namespace stanzad::net {

absl::StatusOr<std::unique_ptr<ProvidedBufferRing>> ProvidedBufferRing::Create(
    io_uring* ring, uint16_t group_id, uint32_t buffer_count, uint32_t buffer_bytes) {
  if (buffer_count == 0 || buffer_count > kBufferCountMax || !std::has_single_bit(buffer_count)) {
    return absl::InvalidArgumentError(
        Concat("recv buffer count must be a power of two in [1, 32768], not ",
               std::to_string(buffer_count)));
  }
  if (buffer_bytes == 0) {
    return absl::InvalidArgumentError("recv buffer size must be at least 1 byte");
  }
  std::unique_ptr<ProvidedBufferRing> result(
      new ProvidedBufferRing(ring, group_id, buffer_count, buffer_bytes));

  result->entries_bytes_ = sizeof(io_uring_buf) * buffer_count;
  void* entries = mmap(nullptr, result->entries_bytes_, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (entries == MAP_FAILED) {
    return absl::ErrnoToStatus(errno, "cannot map the provided-buffer ring");
  }
  result->entries_ = static_cast<io_uring_buf_ring*>(entries);

  result->buffers_bytes_ = static_cast<size_t>(buffer_count) * buffer_bytes;
  void* buffers = mmap(nullptr, result->buffers_bytes_, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buffers == MAP_FAILED) {
    return absl::ErrnoToStatus(errno, Concat("cannot map ", std::to_string(result->buffers_bytes_),
                                             " bytes of recv buffers"));
  }
  result->buffers_ = static_cast<char*>(buffers);

  io_uring_buf_ring_init(result->entries_);
  io_uring_buf_reg registration{};
  registration.ring_addr = reinterpret_cast<uint64_t>(result->entries_);
  registration.ring_entries = buffer_count;
  registration.bgid = group_id;
  const int rc = io_uring_register_buf_ring(ring, &registration, 0);
  if (rc < 0) {
    return absl::ErrnoToStatus(
        -rc, "cannot register the provided-buffer ring (needs Linux 5.19 or later)");
  }
  result->registered_ = true;

  for (uint32_t id = 0; id < buffer_count; ++id) result->Recycle(static_cast<uint16_t>(id));
  result->Publish();
  return result;
}

ProvidedBufferRing::~ProvidedBufferRing() {
  if (registered_) io_uring_unregister_buf_ring(ring_, group_id_);
  if (buffers_ != nullptr) munmap(buffers_, buffers_bytes_);
  if (entries_ != nullptr) munmap(entries_, entries_bytes_);
}

std::string_view ProvidedBufferRing::Data(uint16_t buffer_id, size_t length) const {
  CHECK_LT(static_cast<uint32_t>(buffer_id), buffer_count_);
  CHECK_LE(length, static_cast<size_t>(buffer_bytes_));
  return std::string_view(buffers_ + static_cast<size_t>(buffer_id) * buffer_bytes_, length);
}

void ProvidedBufferRing::Recycle(uint16_t buffer_id) {
  DCHECK_LT(static_cast<uint32_t>(buffer_id), buffer_count_);
  DCHECK_LT(unpublished_, buffer_count_);
  io_uring_buf_ring_add(entries_, buffers_ + static_cast<size_t>(buffer_id) * buffer_bytes_,
                        buffer_bytes_, buffer_id, io_uring_buf_ring_mask(buffer_count_),
                        static_cast<int>(unpublished_));
  ++unpublished_;
}

void ProvidedBufferRing::Publish() {
  if (unpublished_ == 0) return;
  io_uring_buf_ring_advance(entries_, static_cast<int>(unpublished_));
  unpublished_ = 0;
}

}  // namespace stanzad::net
