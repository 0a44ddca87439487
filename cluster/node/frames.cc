#include "cluster/node/frames.h"

#include <algorithm>

namespace stanzad::cluster {
namespace {

void PutLittle(std::string* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

bool TakeLittle(std::string_view* in, int bytes, uint64_t* value) {
  if (in->size() < static_cast<size_t>(bytes)) return false;
  *value = 0;
  for (int i = 0; i < bytes; ++i) {
    *value |= static_cast<uint64_t>(static_cast<unsigned char>((*in)[i])) << (8 * i);
  }
  in->remove_prefix(static_cast<size_t>(bytes));
  return true;
}

absl::Status Bad(std::string_view what) {
  return absl::InvalidArgumentError(std::string("bad cluster frame: ") + std::string(what));
}

}  // namespace

void AppendFrame(FrameType type, std::string_view payload, std::string* out) {
  const uint32_t length = static_cast<uint32_t>(payload.size() + 1);
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(length >> shift));
  out->push_back(static_cast<char>(type));
  out->append(payload);
}

absl::StatusOr<std::optional<Frame>> ParseFrameAt(std::string_view buffer, size_t* offset,
                                                  size_t frame_bytes_max) {
  const std::string_view rest = buffer.substr(*offset);
  if (rest.size() < 4) return std::nullopt;
  uint32_t length = 0;
  for (int i = 0; i < 4; ++i) length = (length << 8) | static_cast<unsigned char>(rest[i]);
  if (length == 0 || length > frame_bytes_max) return Bad("length out of bounds");
  if (rest.size() < 5) return std::nullopt;
  const uint8_t type = static_cast<unsigned char>(rest[4]);
  if (type < 1 || type > static_cast<uint8_t>(FrameType::kAuthRefused)) {
    return Bad("unknown type");
  }
  if (rest.size() < 4 + static_cast<size_t>(length)) return std::nullopt;
  Frame frame{static_cast<FrameType>(type), std::string(rest.substr(5, length - 1))};
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
  if (!TakeLittle(&payload, 8, &request.id) || !TakeLittle(&payload, 1, &kind)) {
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
  if (!TakeLittle(&payload, 8, &reply.id) || !TakeLittle(&payload, 1, &code) ||
      !TakeLittle(&payload, 2, &length) || payload.size() < length) {
    return Bad("short reply");
  }
  if (code > static_cast<uint64_t>(absl::StatusCode::kUnauthenticated)) return Bad("status code");
  reply.leader_address.assign(payload.substr(0, length));
  payload.remove_prefix(length);
  if (!TakeLittle(&payload, 1, &length) || payload.size() < length) return Bad("short reply");
  reply.wrapped_key.assign(payload.substr(0, length));
  payload.remove_prefix(length);
  reply.status = absl::Status(static_cast<absl::StatusCode>(code),
                              absl::string_view(payload.data(), payload.size()));
  return reply;
}

std::string EncodeRoutes(const Routes& routes) {
  std::string out;
  out.push_back(routes.full ? 1 : 0);
  for (const RouteUpdate& update : routes.updates) {
    out.push_back(update.add ? 1 : 0);
    PutLittle(&out, update.address.size(), 2);
    out.append(update.address);
  }
  return out;
}

absl::StatusOr<Routes> DecodeRoutes(std::string_view payload) {
  Routes routes;
  uint64_t full = 0;
  if (!TakeLittle(&payload, 1, &full) || full > 1) return Bad("routes header");
  routes.full = full == 1;
  while (!payload.empty()) {
    uint64_t op = 0, length = 0;
    if (!TakeLittle(&payload, 1, &op) || op > 1 || !TakeLittle(&payload, 2, &length) ||
        length == 0 || length > 1023 || payload.size() < length) {
      return Bad("route entry");
    }
    routes.updates.push_back({op == 1, std::string(payload.substr(0, length))});
    payload.remove_prefix(length);
  }
  return routes;
}

std::string EncodeStanzaFrame(const StanzaFrame& frame) {
  std::string out;
  out.reserve(25 + frame.stanza.size());
  PutLittle(&out, frame.origin, 8);
  PutLittle(&out, frame.sequence, 8);
  PutLittle(&out, frame.destination, 8);
  out.push_back(static_cast<char>(frame.hops));
  out.append(frame.stanza);
  return out;
}

absl::StatusOr<StanzaFrame> DecodeStanzaFrame(std::string_view payload) {
  StanzaFrame frame;
  uint64_t hops = 0;
  if (!TakeLittle(&payload, 8, &frame.origin) || !TakeLittle(&payload, 8, &frame.sequence) ||
      !TakeLittle(&payload, 8, &frame.destination) || !TakeLittle(&payload, 1, &hops)) {
    return Bad("short stanza frame");
  }
  if (frame.origin == raft::kNoNode || frame.destination == raft::kNoNode) {
    return Bad("stanza frame without an origin or destination");
  }
  frame.hops = static_cast<uint8_t>(hops);
  frame.stanza = payload;
  return frame;
}

void AppendAck(uint64_t sequence, std::string* payload) { PutLittle(payload, sequence, 8); }

absl::StatusOr<std::vector<uint64_t>> DecodeAcks(std::string_view payload) {
  if (payload.size() % 8 != 0) return Bad("ack length");
  std::vector<uint64_t> sequences;
  while (!payload.empty()) {
    uint64_t sequence = 0;
    TakeLittle(&payload, 8, &sequence);
    sequences.push_back(sequence);
  }
  return sequences;
}

std::string EncodeAckRelay(raft::NodeId origin, std::string_view acks) {
  std::string out;
  out.reserve(8 + acks.size());
  PutLittle(&out, origin, 8);
  out.append(acks);
  return out;
}

absl::StatusOr<std::pair<raft::NodeId, std::string_view>> DecodeAckRelay(std::string_view payload) {
  uint64_t origin = 0;
  if (!TakeLittle(&payload, 8, &origin) || origin == raft::kNoNode) return Bad("ack relay origin");
  if (payload.size() % 8 != 0) return Bad("ack length");
  return std::make_pair(origin, payload);
}

std::string EncodeRemoveTarget(const RemoveTarget& target) {
  std::string out;
  PutLittle(&out, target.id, 8);
  out.append(target.address);
  return out;
}

absl::StatusOr<RemoveTarget> DecodeRemoveTarget(std::string_view body) {
  RemoveTarget target;
  if (!TakeLittle(&body, 8, &target.id)) return Bad("short remove target");
  if (body.size() > raft::kMemberAddressBytesMax) return Bad("address too long");
  target.address.assign(body);
  return target;
}

}  // namespace stanzad::cluster
