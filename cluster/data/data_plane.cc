#include "cluster/data/data_plane.h"

#include "cluster/relay/wire.h"
#include "core/base/little_endian.h"

namespace stanzad::cluster {

std::string EncodeDataPlaneInfo(const DataPlaneInfo& info) {
  std::string out;
  PutLittle(&out, 1, 1);
  PutLittle(&out, info.port, 2);
  PutLittle(&out, info.lanes, 2);
  return out;
}

absl::StatusOr<DataPlaneInfo> DecodeDataPlaneInfo(std::string_view payload) {
  uint64_t version = 0, port = 0, lanes = 0;
  if (!TakeLittle(&payload, &version, 1) || !TakeLittle(&payload, &port, 2) ||
      !TakeLittle(&payload, &lanes, 2) || !payload.empty()) {
    return absl::InvalidArgumentError("bad data plane frame: length");
  }
  if (version != 1) return absl::InvalidArgumentError("bad data plane frame: unknown version");
  if (port == 0 || lanes == 0 || lanes > relay::kLanesPerNodeMax) {
    return absl::InvalidArgumentError("bad data plane frame: port or lanes out of range");
  }
  return DataPlaneInfo{static_cast<uint16_t>(port), static_cast<uint32_t>(lanes)};
}

}  // namespace stanzad::cluster
