#include "cluster/storage/record_file.h"

#include "cluster/storage/crc32c.h"
#include "core/config/byte_codec.h"

namespace stanzad::storage {
namespace {

uint32_t ReadU32(std::string_view bytes, size_t offset) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    value |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[offset + i])) << (8 * i);
  }
  return value;
}

enum class Parse {
  kValid,
  kTruncated,   // the file ends inside the header, or inside a payload whose header is valid
  kBadHeader,   // the header fails its checksum or names an impossible size
  kBadPayload,  // the header is valid (so is the boundary after it); the payload is not
};

// Parses the record at `offset`; on kValid fills *record, and on kValid and kBadPayload sets
// *end to the offset just after the record.
Parse ParseAt(std::string_view bytes, size_t offset, size_t payload_bytes_max, RecordView* record,
              size_t* end) {
  if (bytes.size() - offset < kRecordHeaderBytes) return Parse::kTruncated;
  std::string_view header = bytes.substr(offset, kRecordHeaderBytes);
  if (UnmaskCrc(ReadU32(header, 9)) != Crc32c(header.substr(0, 9))) return Parse::kBadHeader;
  uint32_t payload_bytes = ReadU32(header, 0);
  if (payload_bytes > payload_bytes_max) return Parse::kBadHeader;
  if (bytes.size() - offset - kRecordHeaderBytes < payload_bytes) return Parse::kTruncated;
  std::string_view payload = bytes.substr(offset + kRecordHeaderBytes, payload_bytes);
  *end = offset + kRecordHeaderBytes + payload_bytes;
  if (UnmaskCrc(ReadU32(header, 5)) != Crc32c(payload)) return Parse::kBadPayload;
  record->type = static_cast<uint8_t>(header[4]);
  record->payload = payload;
  record->offset = offset;
  return Parse::kValid;
}

// The first offset at or after `from` where a whole valid record starts, or 0 when none.
size_t FindValidRecord(std::string_view bytes, size_t from, size_t payload_bytes_max) {
  for (size_t offset = from; offset + kRecordHeaderBytes <= bytes.size(); ++offset) {
    RecordView record;
    size_t end = 0;
    if (ParseAt(bytes, offset, payload_bytes_max, &record, &end) == Parse::kValid) return offset;
  }
  return 0;
}

}  // namespace

void AppendRecordHeader(uint8_t type, size_t payload_bytes, uint32_t payload_crc,
                        std::string* out) {
  config::ByteWriter header;
  header.PutU32(static_cast<uint32_t>(payload_bytes));
  header.PutU8(type);
  header.PutU32(MaskCrc(payload_crc));
  header.PutU32(MaskCrc(Crc32c(header.bytes())));
  out->append(header.bytes());
}

void AppendRecord(uint8_t type, std::string_view payload, std::string* out) {
  AppendRecordHeader(type, payload.size(), Crc32c(payload), out);
  out->append(payload);
}

ScanResult ScanRecords(std::string_view bytes, size_t payload_bytes_max) {
  ScanResult result;
  size_t offset = 0;
  while (offset < bytes.size()) {
    RecordView record;
    size_t end = 0;
    Parse parse = ParseAt(bytes, offset, payload_bytes_max, &record, &end);
    if (parse == Parse::kValid) {
      result.records.push_back(record);
      offset = end;
      continue;
    }
    result.valid_bytes = offset;
    result.end = ScanResult::End::kTorn;
    // A truncated record runs to the end of the file: nothing can follow it. Otherwise look
    // for a valid record after the damage: past the bad payload when the header (and so the
    // record's length) is trustworthy, from the next byte when it is not.
    if (parse == Parse::kTruncated) return result;
    size_t search_from = parse == Parse::kBadPayload ? end : offset + 1;
    size_t next = FindValidRecord(bytes, search_from, payload_bytes_max);
    if (next != 0) {
      result.end = ScanResult::End::kCorrupt;
      result.next_valid_offset = next;
    }
    return result;
  }
  result.valid_bytes = offset;
  return result;
}

}  // namespace stanzad::storage
