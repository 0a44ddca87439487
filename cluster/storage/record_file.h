// The on-disk framing shared by the Raft storage files: an 8-byte magic naming the file's
// kind and format version, then checksummed records.
//
//   record = payload_bytes u32 | type u8 | payload_crc u32 | header_crc u32 | payload
//
// Integers are little-endian; both CRCs are masked CRC-32C (crc32c.h), payload_crc over the
// payload and header_crc over the 9 bytes before it. The header's own checksum lets a
// reader tell a record boundary from noise cheaply, which is how ScanRecords tells a torn
// tail from damage in the middle of a file.
#ifndef STANZAD_CLUSTER_STORAGE_RECORD_FILE_H_
#define STANZAD_CLUSTER_STORAGE_RECORD_FILE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace stanzad::storage {

inline constexpr size_t kMagicBytes = 8;
inline constexpr size_t kRecordHeaderBytes = 13;

// Appends one framed record to *out. REQUIRES: payload.size() < 2^32.
void AppendRecord(uint8_t type, std::string_view payload, std::string* out);
// The same record's header alone, for a payload written in pieces: `payload_crc` is the
// (unmasked) Crc32c of the whole payload.
void AppendRecordHeader(uint8_t type, size_t payload_bytes, uint32_t payload_crc, std::string* out);

struct RecordView {
  uint8_t type = 0;
  std::string_view payload;  // a view into the scanned bytes
  size_t offset = 0;         // of the record's header, from the start of the scanned bytes
};

struct ScanResult {
  enum class End {
    kClean,    // every byte belongs to a valid record
    kTorn,     // the records end at `valid_bytes`; what follows holds no valid record: the
               // remains of a write a crash interrupted
    kCorrupt,  // the record at `valid_bytes` is damaged, and a valid record starts later at
               // `next_valid_offset`: damage in the middle, not a torn write
  };
  std::vector<RecordView> records;
  End end = End::kClean;
  size_t valid_bytes = 0;  // length of the prefix made of valid records
  size_t next_valid_offset = 0;
};

// Splits `bytes` (a file's content after its magic) into records. A record whose payload is
// larger than `payload_bytes_max` counts as damaged. Never fails: damage is described in the
// result. Cost: linear in the bytes, plus a check of a 9-byte header at every offset after
// the first damaged record (only there).
ScanResult ScanRecords(std::string_view bytes, size_t payload_bytes_max);

}  // namespace stanzad::storage

#endif  // STANZAD_CLUSTER_STORAGE_RECORD_FILE_H_
