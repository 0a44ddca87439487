// Fuzzes the decoders of the records between the router's shards and to the control
// thread (core/router/shard_records.h): any (kind, target, argument, payload) either is
// refused or decodes to a record whose encoding decodes again to the same encoding.
// Input: kind (4 bytes), target (8), argument (8), little endian, then the payload.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/router/shard_records.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

uint64_t Little(const uint8_t* data, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | data[i];
  return value;
}

bool SameEncoding(const stanzad::router::EncodedRecord& a,
                  const stanzad::router::EncodedRecord& b) {
  return a.kind() == b.kind() && a.target() == b.target() && a.argument() == b.argument() &&
         a.payload() == b.payload();
}

template <typename Decode, typename Encode>
void RoundTrip(const stanzad::router::EncodedRecord& input, Decode decode, Encode encode) {
  auto record = decode(input);
  if (!record.ok()) return;
  const stanzad::router::EncodedRecord once = encode(*record);
  auto again = decode(once);
  Check(again.ok());
  Check(SameEncoding(encode(*again), once));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace stanzad::router;
  if (size < 20) return 0;
  const EncodedRecord input(static_cast<uint32_t>(Little(data, 4)), Little(data + 4, 8),
                            Little(data + 12, 8),
                            std::string_view(reinterpret_cast<const char*>(data + 20), size - 20));
  RoundTrip(input, DecodeShardRecord, EncodeShardRecord);
  RoundTrip(input, DecodeControlRecord, EncodeControlRecord);
  return 0;
}
