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

std::string LaneFrameHead(uint16_t from_shard, uint16_t to_shard, FrameType type) {
  std::string out;  // 5 bytes: no allocation
  PutLittle(&out, from_shard, 2);
  PutLittle(&out, to_shard, 2);
  PutLittle(&out, static_cast<uint8_t>(type), 1);
  return out;
}

std::string EncodeLaneFrame(uint16_t from_shard, uint16_t to_shard, FrameType type,
                            std::string_view payload) {
  std::string out = LaneFrameHead(from_shard, to_shard, type);
  out.append(payload);
  return out;
}

absl::StatusOr<LaneFrame> DecodeLaneFrame(std::string_view payload) {
  uint64_t from = 0, to = 0, type = 0;
  if (!TakeLittle(&payload, &from, 2) || !TakeLittle(&payload, &to, 2) ||
      !TakeLittle(&payload, &type, 1)) {
    return absl::InvalidArgumentError("bad lane frame: short");
  }
  const auto relay_type = static_cast<FrameType>(type);
  if (relay_type != FrameType::kStanza && relay_type != FrameType::kAck &&
      relay_type != FrameType::kAckRelay && relay_type != FrameType::kAbort) {
    return absl::InvalidArgumentError("bad lane frame: not a relay frame");
  }
  if (from >= relay::kLanesPerNodeMax || to >= relay::kLanesPerNodeMax) {
    return absl::InvalidArgumentError("bad lane frame: shard out of range");
  }
  return LaneFrame{static_cast<uint16_t>(from), static_cast<uint16_t>(to), relay_type, payload};
}

}  // namespace stanzad::cluster
