// Fixed-width little-endian integers in byte strings: the one encoder of the cluster's
// wire formats (frames, link authentication, relay records).
#ifndef STANZAD_CORE_BASE_LITTLE_ENDIAN_H_
#define STANZAD_CORE_BASE_LITTLE_ENDIAN_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace stanzad {

// Appends the low `bytes` bytes of `value` (1..8), least significant first.
inline void PutLittle(std::string* out, uint64_t value, int bytes = 8) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// Takes `bytes` bytes (1..8) off the front of *in; false (and *in untouched) when
// fewer remain.
inline bool TakeLittle(std::string_view* in, uint64_t* value, int bytes = 8) {
  if (in->size() < static_cast<size_t>(bytes)) return false;
  *value = 0;
  for (int i = 0; i < bytes; ++i) {
    *value |= static_cast<uint64_t>(static_cast<unsigned char>((*in)[i])) << (8 * i);
  }
  in->remove_prefix(static_cast<size_t>(bytes));
  return true;
}

}  // namespace stanzad

#endif  // STANZAD_CORE_BASE_LITTLE_ENDIAN_H_
