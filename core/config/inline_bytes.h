// InlineBytes<N>: at most N bytes held in the object itself, never on the heap.
//
// For the parts of a SCRAM secret (config::ScramSecret): every configured user's credentials
// are copied into the replicated state, the node's mirror and the routers' tables, a million
// times at size, and as std::string each part was an allocation of its own (the salts and
// keys are longer than the small-string buffer). Inline, a copy is a memcpy.
//
// Reads like a std::string_view (implicitly); built from one (implicitly, so that a
// std::string or a literal can be assigned). Assigning more than N bytes is a bug of the
// caller, who must check lengths from untrusted input first (the decoders do): CHECKed.
//
// Thread safety: a value type.
#ifndef STANZAD_CORE_CONFIG_INLINE_BYTES_H_
#define STANZAD_CORE_CONFIG_INLINE_BYTES_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/base/check.h"

namespace stanzad::config {

template <size_t N>
class InlineBytes {
  static_assert(N > 0 && N <= 255, "the size is kept in one byte");

 public:
  static constexpr size_t kCapacity = N;

  InlineBytes() = default;
  InlineBytes(std::string_view bytes) { assign(bytes); }  // NOLINT: implicit on purpose
  InlineBytes(const std::string& bytes) : InlineBytes(std::string_view(bytes)) {}  // NOLINT
  InlineBytes(const char* bytes) : InlineBytes(std::string_view(bytes)) {}         // NOLINT

  // REQUIRES: bytes.size() <= N (CHECKed).
  void assign(std::string_view bytes) {
    CHECK_MSG(bytes.size() <= N, "InlineBytes: more bytes than it holds");
    size_ = static_cast<uint8_t>(bytes.size());
    if (!bytes.empty()) std::memcpy(bytes_.data(), bytes.data(), bytes.size());
  }
  void assign(size_t count, char c) {
    CHECK_MSG(count <= N, "InlineBytes: more bytes than it holds");
    size_ = static_cast<uint8_t>(count);
    std::memset(bytes_.data(), c, count);
  }

  const char* data() const { return bytes_.data(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return std::string_view(bytes_.data(), size_); }
  operator std::string_view() const { return view(); }  // NOLINT: implicit on purpose
  std::string str() const { return std::string(view()); }

  friend bool operator==(const InlineBytes& a, const InlineBytes& b) {
    return a.view() == b.view();
  }
  friend bool operator==(const InlineBytes& a, std::string_view b) { return a.view() == b; }
  friend bool operator==(const InlineBytes& a, const std::string& b) { return a.view() == b; }
  friend bool operator==(const InlineBytes& a, const char* b) { return a.view() == b; }

 private:
  uint8_t size_ = 0;
  std::array<char, N> bytes_;  // the first size_ are the value; the rest is never read
};

}  // namespace stanzad::config

#endif  // STANZAD_CORE_CONFIG_INLINE_BYTES_H_
