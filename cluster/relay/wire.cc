#include "cluster/relay/wire.h"

#include "core/base/check.h"
#include "core/base/little_endian.h"

namespace stanzad::cluster::relay {
namespace {

absl::Status Bad(std::string_view what) {
  return absl::InvalidArgumentError(std::string("bad relay frame: ") + std::string(what));
}

void PutLane(std::string* out, Lane lane) {
  PutLittle(out, lane.node);
  PutLittle(out, lane.shard, 2);
}

// A lane with a node and a shard below kLanesPerNodeMax.
bool TakeLane(std::string_view* in, Lane* lane) {
  uint64_t shard = 0;
  if (!TakeLittle(in, &lane->node) || !TakeLittle(in, &shard, 2)) return false;
  lane->shard = static_cast<uint16_t>(shard);
  return lane->node != raft::kNoNode && shard < kLanesPerNodeMax;
}

}  // namespace

std::string LaneName(Lane lane) {
  return std::to_string(lane.node) + "/" + std::to_string(lane.shard);
}

uint64_t RouteAddressHash(std::string_view address) {
  uint64_t hash = 0xcbf29ce484222325ULL;  // FNV-1a 64: offset basis, prime
  for (const char c : address) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  hash ^= hash >> 33;  // fmix64
  hash *= 0xff51afd7ed558ccdULL;
  hash ^= hash >> 33;
  hash *= 0xc4ceb9fe1a85ec53ULL;
  hash ^= hash >> 33;
  return hash;
}

std::string EncodeRoutes(const RoutesFrame& routes) {
  std::string out;
  out.push_back(static_cast<char>(routes.part));
  if (routes.part == RoutesPart::kDigest || routes.part == RoutesPart::kSetRequest) {
    CHECK(routes.updates.empty());
    if (routes.part == RoutesPart::kDigest) {
      PutLittle(&out, routes.digest.count);
      PutLittle(&out, routes.digest.hash);
    }
    return out;
  }
  for (const RouteUpdate& update : routes.updates) {
    out.push_back(update.add ? 1 : 0);
    PutLittle(&out, update.address.size(), 2);
    out.append(update.address);
  }
  return out;
}

absl::StatusOr<RoutesFrame> DecodeRoutes(std::string_view payload) {
  RoutesFrame routes;
  uint64_t part = 0;
  if (!TakeLittle(&payload, &part, 1) || part > static_cast<uint64_t>(kLastRoutesPart)) {
    return Bad("routes header");
  }
  routes.part = static_cast<RoutesPart>(part);
  if (routes.part == RoutesPart::kDigest) {
    if (payload.size() != kRouteDigestBytes) return Bad("routes digest length");
    TakeLittle(&payload, &routes.digest.count);
    TakeLittle(&payload, &routes.digest.hash);
    return routes;
  }
  if (routes.part == RoutesPart::kSetRequest) {
    if (!payload.empty()) return Bad("routes set request with a body");
    return routes;
  }
  while (!payload.empty()) {
    uint64_t op = 0, length = 0;
    if (!TakeLittle(&payload, &op, 1) || op > 1 || !TakeLittle(&payload, &length, 2) ||
        length == 0 || length > kRouteAddressBytesMax || payload.size() < length) {
      return Bad("route entry");
    }
    routes.updates.push_back({op == 1, std::string(payload.substr(0, length))});
    payload.remove_prefix(length);
  }
  return routes;
}

std::string EncodeStanza(const StanzaFrame& frame) {
  std::string out;
  out.reserve(45 + frame.stanza.size());
  PutLane(&out, frame.origin);
  PutLittle(&out, frame.incarnation);
  PutLittle(&out, frame.sequence);
  PutLittle(&out, frame.floor);
  PutLane(&out, frame.destination);
  PutLittle(&out, frame.hops, 1);
  out.append(frame.stanza);
  return out;
}

absl::StatusOr<StanzaFrame> DecodeStanza(std::string_view payload) {
  StanzaFrame frame;
  uint64_t hops = 0;
  if (!TakeLane(&payload, &frame.origin) || !TakeLittle(&payload, &frame.incarnation) ||
      !TakeLittle(&payload, &frame.sequence) || !TakeLittle(&payload, &frame.floor) ||
      !TakeLane(&payload, &frame.destination) || !TakeLittle(&payload, &hops, 1)) {
    return Bad("stanza frame too short, or without an origin or destination lane");
  }
  if (frame.incarnation == 0 || frame.sequence == 0 || frame.floor > frame.sequence) {
    return Bad("stanza frame with a bad incarnation, sequence or floor");
  }
  frame.hops = static_cast<uint8_t>(hops);
  frame.stanza = payload;
  return frame;
}

std::string EncodeAbort(const AbortFrame& frame) {
  std::string out;
  out.reserve(37 + 8 * frame.sequences.size());
  PutLane(&out, frame.origin);
  PutLittle(&out, frame.incarnation);
  PutLittle(&out, frame.floor);
  PutLane(&out, frame.destination);
  PutLittle(&out, frame.hops, 1);
  for (const uint64_t sequence : frame.sequences) PutLittle(&out, sequence);
  return out;
}

absl::StatusOr<AbortFrame> DecodeAbort(std::string_view payload) {
  AbortFrame frame;
  uint64_t hops = 0;
  if (!TakeLane(&payload, &frame.origin) || !TakeLittle(&payload, &frame.incarnation) ||
      !TakeLittle(&payload, &frame.floor) || !TakeLane(&payload, &frame.destination) ||
      !TakeLittle(&payload, &hops, 1) || payload.empty() || payload.size() % 8 != 0) {
    return Bad("abort frame length, or without an origin or destination lane");
  }
  if (frame.incarnation == 0) return Bad("abort frame without an incarnation");
  frame.hops = static_cast<uint8_t>(hops);
  if (payload.size() / 8 > kAbortSequencesMax) return Bad("abort with too many sequences");
  while (!payload.empty()) {
    uint64_t sequence = 0;
    TakeLittle(&payload, &sequence);
    if (sequence < frame.floor) return Bad("abort below the floor");
    if (!frame.sequences.empty() && sequence <= frame.sequences.back()) {
      return Bad("abort sequences not ascending");
    }
    frame.sequences.push_back(sequence);
  }
  return frame;
}

std::string EncodeAnswers(const AnswerFrame& frame) {
  std::string out;
  out.reserve(20 + 9 * frame.answers.size());
  PutLittle(&out, frame.incarnation);
  PutLittle(&out, frame.origin_shard, 2);
  PutLane(&out, frame.decider);
  for (const auto& [sequence, outcome] : frame.answers) {
    PutLittle(&out, sequence);
    PutLittle(&out, static_cast<uint8_t>(outcome), 1);
  }
  return out;
}

absl::StatusOr<AnswerFrame> DecodeAnswers(std::string_view payload) {
  AnswerFrame frame;
  uint64_t origin_shard = 0;
  if (!TakeLittle(&payload, &frame.incarnation) || !TakeLittle(&payload, &origin_shard, 2) ||
      !TakeLane(&payload, &frame.decider) || frame.incarnation == 0 ||
      origin_shard >= kLanesPerNodeMax || payload.size() % 9 != 0 ||
      payload.size() / 9 > kAnswersPerFrameMax) {
    return Bad("answers length, or without an incarnation or lanes");
  }
  frame.origin_shard = static_cast<uint16_t>(origin_shard);
  while (!payload.empty()) {
    uint64_t sequence = 0, outcome = 0;
    TakeLittle(&payload, &sequence);
    TakeLittle(&payload, &outcome, 1);
    if (outcome != static_cast<uint8_t>(Outcome::kDelivered) &&
        outcome != static_cast<uint8_t>(Outcome::kAborted)) {
      return Bad("answer outcome");
    }
    frame.answers.emplace_back(sequence, static_cast<Outcome>(outcome));
  }
  return frame;
}

std::string EncodeAckRelay(Lane origin, std::string_view answers) {
  std::string out;
  out.reserve(10 + answers.size());
  PutLane(&out, origin);
  out.append(answers);
  return out;
}

absl::StatusOr<std::pair<Lane, std::string_view>> DecodeAckRelay(std::string_view payload) {
  Lane origin;
  if (!TakeLane(&payload, &origin)) return Bad("ack relay origin");
  absl::StatusOr<AnswerFrame> answers = DecodeAnswers(payload);
  if (!answers.ok()) return Bad("ack relay answers");
  if (answers->origin_shard != origin.shard) return Bad("ack relay for another lane");
  return std::make_pair(origin, payload);
}

}  // namespace stanzad::cluster::relay
