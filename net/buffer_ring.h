// ProvidedBufferRing: a ring of receive buffers registered with one io_uring
// (IORING_REGISTER_PBUF_RING), from which multishot recv picks a buffer for
// each completion.
//
// liburing 2.3 has no io_uring_setup_buf_ring, so this class maps the ring
// itself and registers it with io_uring_register_buf_ring.
//
// Use: a recv completion names a buffer id; read Data(id, length), and once
// the bytes are consumed hand the buffer back with Recycle(id). Recycled
// buffers reach the kernel at the next Publish(), one release store for the
// whole batch.
//
// Thread safety: none; the ring's shard thread only.
#ifndef STANZAD_NET_BUFFER_RING_H_
#define STANZAD_NET_BUFFER_RING_H_

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"

namespace stanzad::net {

class ProvidedBufferRing {
 public:
  static constexpr uint32_t kBufferCountMax = 32768;  // kernel limit on ring entries

  // REQUIRES: `ring` outlives the returned object. Fails with a clear status
  // if `buffer_count` is not a power of two in [1, 32768], `buffer_bytes` is
  // 0, memory cannot be mapped, or the kernel refuses the registration.
  static absl::StatusOr<std::unique_ptr<ProvidedBufferRing>> Create(io_uring* ring,
                                                                    uint16_t group_id,
                                                                    uint32_t buffer_count,
                                                                    uint32_t buffer_bytes);
  ~ProvidedBufferRing();
  ProvidedBufferRing(const ProvidedBufferRing&) = delete;
  ProvidedBufferRing& operator=(const ProvidedBufferRing&) = delete;

  uint16_t group_id() const { return group_id_; }
  uint32_t buffer_count() const { return buffer_count_; }
  uint32_t buffer_bytes() const { return buffer_bytes_; }

  // The bytes the kernel wrote into buffer `buffer_id`.
  // REQUIRES: buffer_id < buffer_count(), length <= buffer_bytes().
  std::string_view Data(uint16_t buffer_id, size_t length) const;

  // Queues buffer `buffer_id` for return to the kernel at the next Publish.
  void Recycle(uint16_t buffer_id);
  // Makes every recycled buffer visible to the kernel.
  void Publish();
  // Buffers recycled and not yet published.
  uint32_t unpublished() const { return unpublished_; }

 private:
  ProvidedBufferRing(io_uring* ring, uint16_t group_id, uint32_t buffer_count,
                     uint32_t buffer_bytes)
      : ring_(ring),
        group_id_(group_id),
        buffer_count_(buffer_count),
        buffer_bytes_(buffer_bytes) {}

  io_uring* ring_;
  const uint16_t group_id_;
  const uint32_t buffer_count_;
  const uint32_t buffer_bytes_;
  io_uring_buf_ring* entries_ = nullptr;  // mmap'd, shared with the kernel
  size_t entries_bytes_ = 0;
  char* buffers_ = nullptr;  // mmap'd, buffer_count_ * buffer_bytes_
  size_t buffers_bytes_ = 0;
  bool registered_ = false;
  uint32_t unpublished_ = 0;
};

}  // namespace stanzad::net

#endif  // STANZAD_NET_BUFFER_RING_H_
