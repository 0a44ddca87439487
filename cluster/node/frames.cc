#include "cluster/node/frames.h"

#include <algorithm>

#include "core/base/little_endian.h"

namespace stanzad::cluster {
namespace {

absl::Status Bad(std::string_view what) {
  return absl::InvalidArgumentError(std::string("bad cluster frame: ") + std::string(what));
}

}  // namespace

void AppendFrame(FrameType type, std::string_view payload, std::string* out) {
  AppendFrame(type, {}, payload, out);
}

void AppendFrame(FrameType type, std::string_view head, std::string_view rest, std::string* out) {
  const uint32_t length = static_cast<uint32_t>(head.size() + rest.size() + 1);
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(length >> shift));
  out->push_back(static_cast<char>(type));
  out->append(head);
  out->append(rest);
}

absl::StatusOr<std::optional<Frame>> ParseFrameAt(std::string_view buffer, size_t* offset,
                                                  size_t frame_bytes_max) {
  absl::StatusOr<std::optional<FrameView>> view = ParseFrameViewAt(buffer, offset, frame_bytes_max);
  if (!view.ok()) return view.status();
  if (!view->has_value()) return std::nullopt;
  return Frame{(*view)->type, std::string((*view)->payload)};
}

absl::StatusOr<std::optional<FrameView>> ParseFrameViewAt(std::string_view buffer, size_t* offset,
                                                          size_t frame_bytes_max) {
  const std::string_view rest = buffer.substr(*offset);
  if (rest.size() < 4) return std::nullopt;
  uint32_t length = 0;
  for (int i = 0; i < 4; ++i) length = (length << 8) | static_cast<unsigned char>(rest[i]);
  if (length == 0 || length > frame_bytes_max) return Bad("length out of bounds");
  if (rest.size() < 5) return std::nullopt;
  const uint8_t type = static_cast<unsigned char>(rest[4]);
  if (type < 1 || type > static_cast<uint8_t>(kLastFrameType)) {
    return Bad("unknown type");
  }
  if (rest.size() < 4 + static_cast<size_t>(length)) return std::nullopt;
  const FrameView frame{static_cast<FrameType>(type), rest.substr(5, length - 1)};
  *offset += 4 + static_cast<size_t>(length);
  return frame;
}

absl::StatusOr<std::optional<Frame>> TakeFrame(std::string* buffer, size_t frame_bytes_max) {
  size_t offset = 0;
  absl::StatusOr<std::optional<Frame>> frame = ParseFrameAt(*buffer, &offset, frame_bytes_max);
  if (frame.ok() && frame->has_value()) buffer->erase(0, offset);
  return frame;
}

std::string EncodeRequest(const Request& request) {
  std::string out;
  PutLittle(&out, request.id, 8);
  out.push_back(static_cast<char>(request.kind));
  out.append(request.body);
  return out;
}

absl::StatusOr<Request> DecodeRequest(std::string_view payload) {
  Request request;
  uint64_t kind = 0;
  if (!TakeLittle(&payload, &request.id, 8) || !TakeLittle(&payload, &kind, 1)) {
    return Bad("short request");
  }
  if (kind < 1 || kind > 3) return Bad("unknown request kind");
  request.kind = static_cast<RequestKind>(kind);
  request.body.assign(payload);
  return request;
}

std::string EncodeReply(const Reply& reply) {
  std::string out;
  PutLittle(&out, reply.id, 8);
  out.push_back(static_cast<char>(reply.status.code()));
  PutLittle(&out, reply.leader_address.size(), 2);
  out.append(reply.leader_address);
  PutLittle(&out, std::min<size_t>(reply.wrapped_key.size(), 255), 1);
  out.append(reply.wrapped_key.substr(0, 255));
  const auto message = reply.status.message();
  out.append(message.data(), message.size());
  return out;
}

absl::StatusOr<Reply> DecodeReply(std::string_view payload) {
  Reply reply;
  uint64_t code = 0, length = 0;
  if (!TakeLittle(&payload, &reply.id, 8) || !TakeLittle(&payload, &code, 1) ||
      !TakeLittle(&payload, &length, 2) || payload.size() < length) {
    return Bad("short reply");
  }
  if (code > static_cast<uint64_t>(absl::StatusCode::kUnauthenticated)) return Bad("status code");
  reply.leader_address.assign(payload.substr(0, length));
  payload.remove_prefix(length);
  if (!TakeLittle(&payload, &length, 1) || payload.size() < length) return Bad("short reply");
  reply.wrapped_key.assign(payload.substr(0, length));
  payload.remove_prefix(length);
  reply.status = absl::Status(static_cast<absl::StatusCode>(code),
                              absl::string_view(payload.data(), payload.size()));
  return reply;
}

std::string EncodeRemoveTarget(const RemoveTarget& target) {
  std::string out;
  PutLittle(&out, target.id, 8);
  out.append(target.address);
  return out;
}

absl::StatusOr<RemoveTarget> DecodeRemoveTarget(std::string_view body) {
  RemoveTarget target;
  if (!TakeLittle(&body, &target.id, 8)) return Bad("short remove target");
  if (body.size() > raft::kMemberAddressBytesMax) return Bad("address too long");
  target.address.assign(body);
  return target;
}

}  // namespace stanzad::cluster
