// The relay's frames on a cluster link (their types are in cluster/node/frames.h).
// Integers are little endian.
//
//   kRoutes   part (1) | then per route: op (1: 1 add, 0 remove) | length (2) | route
//             address. part 0: changes to the sender's routes; 1: every route of the
//             sender (it replaces what the receiver had from it); 2, 3, 4: the first,
//             a middle and the last frame of such a set sent in several (a link's
//             queue is bounded, a node may hold a million routes).
//             part 5, a digest of the sender's routes: count (8) | hash (8), nothing
//             else (RouteDigest: the receiver compares it with what it holds from the
//             sender). part 6, a request for the receiver's whole set: nothing after
//             the part. A node that predates parts 5 and 6 rejects them as bad frames,
//             which changes nothing there (cluster/relay/directory.h).
//   A lane is a node (8) and one of its shards (2); see Lane.
//   kStanza   origin lane (10) | incarnation (8) | sequence (8) | floor (8) | destination
//             lane (10) | hops (1) | the stanza. (origin lane, incarnation, sequence)
//             names it; floor is the lowest sequence of that incarnation the origin lane
//             holds for the destination lane (everything below is finished there); a
//             receiver that is not the destination's node (the leader) passes it on, hops + 1
//   kAbort    origin lane (10) | incarnation (8) | floor (8) | destination lane (10) |
//             hops (1) | sequences (8 each, 1 to kAbortSequencesMax, strictly ascending):
//             the origin asks what became of these; passed on like kStanza
//   kAck      incarnation (8) | origin shard (2) | decider lane (10: the one that decided)
//             | per stanza: sequence (8) | outcome (1: 1 delivered, 2 aborted): a
//             destination's answers about the receiving lane's own stanzas
//   kAckRelay origin lane (10) | a kAck payload: answers that travel through the receiver
//             to the origin lane (no direct link, or the question came that way)
//
// Decoding never trusts its input: a bad payload is an error, never a crash.
#ifndef STANZAD_CLUSTER_RELAY_WIRE_H_
#define STANZAD_CLUSTER_RELAY_WIRE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "cluster/node/frames.h"
#include "cluster/raft/types.h"

namespace stanzad::cluster::relay {

using cluster::FrameType;

// A relay lane: one Relay per shard of a node (docs/data-links.md). A stanza's name is
// (origin lane, incarnation, sequence): each lane counts its own sequences, the
// incarnation is the node's (one per start of its shards).
struct Lane {
  raft::NodeId node = raft::kNoNode;
  uint16_t shard = 0;
  auto operator<=>(const Lane&) const = default;
};
// The most lanes (shards) a node may have: a shard index fits the wire's 2 bytes.
inline constexpr uint32_t kLanesPerNodeMax = 1024;
// "node/shard", for logs and traces.
std::string LaneName(Lane lane);

// A full JID's (RFC 7622: three parts of at most 1023 bytes, and two separators): a client
// bound with the longest resource is announced like any other route.
inline constexpr size_t kRouteAddressBytesMax = 3 * 1023 + 2;
inline constexpr size_t kAbortSequencesMax = 64;      // per kAbort, strictly ascending
inline constexpr size_t kAnswersPerFrameMax = 65536;  // per kAck (590 KB)

struct RouteUpdate {
  bool add = true;
  std::string address;
};
enum class RoutesPart : uint8_t {
  kChanges = 0,     // adds and removes
  kWhole = 1,       // every route of the sender, in this one frame
  kFirst = 2,       // every route of the sender, in several frames: the first
  kMore = 3,        // ... one in the middle
  kLast = 4,        // ... the last (the set is whole: what it lacks is withdrawn)
  kDigest = 5,      // the sender's routes in brief (RouteDigest), no updates
  kSetRequest = 6,  // "send me your whole set": no updates, no digest
};
inline constexpr RoutesPart kLastRoutesPart = RoutesPart::kSetRequest;

// A fixed 64-bit hash of a route address, the same in every process and on every node:
// FNV-1a 64 over the address's bytes, then MurmurHash3's fmix64 finalizer so that every
// input bit reaches every output bit (FNV-1a alone mixes its last bytes poorly, and the
// digest adds these values up). Not absl::Hash or std::hash: those may be seeded per
// process or differ between standard libraries, and a digest is compared across nodes.
uint64_t RouteAddressHash(std::string_view address);

// A set of route addresses in brief: how many, and the sum (mod 2^64) of their
// RouteAddressHash. A sum does not depend on the order the set was built in and takes an
// address in or out in O(1); two sets that differ give equal digests with a chance of
// about 2^-64 (a differing count aside).
struct RouteDigest {
  uint64_t count = 0;
  uint64_t hash = 0;
  // REQUIRES: `address` is not in the set (Add) or is in it (Remove).
  void Add(std::string_view address) { ++count, hash += RouteAddressHash(address); }
  void Remove(std::string_view address) { --count, hash -= RouteAddressHash(address); }
  bool operator==(const RouteDigest&) const = default;
};
inline constexpr size_t kRouteDigestBytes = 16;

struct RoutesFrame {
  RoutesPart part = RoutesPart::kChanges;
  std::vector<RouteUpdate> updates;  // parts kChanges to kLast only
  RouteDigest digest = {};           // kDigest only
};
// The bytes of a kRoutes frame: its header, and each route in it.
inline constexpr size_t kRoutesHeaderBytes = 1;
inline size_t RouteUpdateBytes(const std::string& address) { return 3 + address.size(); }
// REQUIRES: a kDigest or kSetRequest frame has no updates.
std::string EncodeRoutes(const RoutesFrame& routes);
absl::StatusOr<RoutesFrame> DecodeRoutes(std::string_view payload);

struct StanzaFrame {
  Lane origin;
  uint64_t incarnation = 0;
  uint64_t sequence = 0;
  uint64_t floor = 0;
  Lane destination;
  uint8_t hops = 0;
  std::string_view stanza;  // a view into the decoded payload
};
std::string EncodeStanza(const StanzaFrame& frame);
absl::StatusOr<StanzaFrame> DecodeStanza(std::string_view payload);

struct AbortFrame {
  Lane origin;
  uint64_t incarnation = 0;
  uint64_t floor = 0;
  Lane destination;
  uint8_t hops = 0;
  std::vector<uint64_t> sequences;
};
std::string EncodeAbort(const AbortFrame& frame);
absl::StatusOr<AbortFrame> DecodeAbort(std::string_view payload);

enum class Outcome : uint8_t { kDelivered = 1, kAborted = 2 };
struct AnswerFrame {
  uint64_t incarnation = 0;                           // the origin's, as in its frames
  uint16_t origin_shard = 0;                          // the origin lane's shard
  Lane decider;                                       // the lane that decided
  std::vector<std::pair<uint64_t, Outcome>> answers;  // (sequence, outcome)
};
std::string EncodeAnswers(const AnswerFrame& frame);
absl::StatusOr<AnswerFrame> DecodeAnswers(std::string_view payload);

std::string EncodeAckRelay(Lane origin, std::string_view answers);
// The origin lane and a view of the kAck payload inside `payload`.
absl::StatusOr<std::pair<Lane, std::string_view>> DecodeAckRelay(std::string_view payload);

}  // namespace stanzad::cluster::relay

#endif  // STANZAD_CLUSTER_RELAY_WIRE_H_
