// CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected), the checksum of the Raft storage
// records. Uses the SSE4.2 crc32 instruction when the CPU has it, a table otherwise; both
// give the same values (crc32c_test checks them against each other and RFC 3720's vectors).
//
// Abseil 20220623 has no absl/crc, hence this file.
#ifndef STANZAD_CLUSTER_STORAGE_CRC32C_H_
#define STANZAD_CLUSTER_STORAGE_CRC32C_H_

#include <cstdint>
#include <string_view>

namespace stanzad::storage {

// The CRC-32C of `data`, continuing from `crc` (the value returned for the bytes before).
//   Crc32c("123456789") == 0xE3069283
uint32_t Crc32cExtend(uint32_t crc, std::string_view data);
inline uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data); }

// The table-driven version, always; exposed so that tests compare it with the hardware one.
uint32_t Crc32cExtendPortable(uint32_t crc, std::string_view data);

// A CRC stored next to the data it covers is masked (as LevelDB does), so that the CRC of
// bytes that themselves contain CRCs does not degenerate.
inline uint32_t MaskCrc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }
inline uint32_t UnmaskCrc(uint32_t masked) {
  uint32_t rotated = masked - 0xa282ead8u;
  return (rotated >> 17) | (rotated << 15);
}

}  // namespace stanzad::storage

#endif  // STANZAD_CLUSTER_STORAGE_CRC32C_H_
