// Frames on a link between two cluster nodes (the cluster port, --cluster_port).
//
//   frame   := length (4 bytes, big endian: type + payload) | type (1 byte) | payload
//
// Every link starts with the authentication handshake of cluster/node/link_auth.h
// (kAuthHello, kAuthChallenge, kAuthProof, kAuthRefused); no other frame is read before it
// has succeeded, and before it no frame may be longer than kAuthFrameBytesMax.
//
// Types:
//   kLegacyHello   the first frame of a stanzad from before link authentication: refused
//                  with a message that says to upgrade it
//   kRaft          a Raft message (cluster/raft/message_codec.h)
//   kRaftPart      a part of a Raft message that carries a snapshot (cluster/node/raft_parts.h)
//   kRequest       request id (8) | kind (1) | body. Sent to any node; a node that is
//                  not the leader answers kRedirect or an error. Kinds:
//                    kJoin      body: encoded Member (raft::EncodeMember) of the joiner
//                    kPropose   body: an encoded ConfigCommand
//                    kRemove    body: node id (8) | address (either may be empty/0)
//   kReply         request id (8) | code (1: absl::StatusCode) | leader address length (2)
//                  | leader address | wrapped key length (1) | wrapped key | message: the
//                  request's outcome; a non-leader puts the leader's address (when known)
//                  with kUnavailable; an accepted join carries the cluster key, XORed with
//                  the link's key wrap (link_auth.h)
//   kRoutes, kStanza, kAck, kAckRelay, kAbort
//                  the relay's frames: stanzas between nodes, their answers and the
//                  routes each node holds (cluster/relay/wire.h)
//   kDataPlane     where a member's shards take data links, and how many lanes it runs
//                  (cluster/data/data_plane.h); sent on every cluster link that comes up
//   kDataPing      on a data link (the data port, cluster/data/data_links.h): "still
//                  here"; empty
//   kLane          on a data link: a relay frame between two lanes (cluster/data/
//                  data_plane.h: from shard, to shard, the relay frame's type and payload)
//
// Decoding never trusts its input: lengths are checked against what remains and against
// kFrameBytesMax; a bad frame is an error, never a crash.
#ifndef STANZAD_CLUSTER_NODE_FRAMES_H_
#define STANZAD_CLUSTER_NODE_FRAMES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cluster/raft/types.h"

namespace stanzad::cluster {

inline constexpr size_t kFrameBytesMax = 64 << 20;

enum class FrameType : uint8_t {
  kLegacyHello = 1,
  kRaft = 2,
  kRequest = 3,
  kReply = 4,
  kRoutes = 5,
  kStanza = 6,
  kAck = 7,
  kAckRelay = 8,
  kAuthHello = 9,
  kAuthChallenge = 10,
  kAuthProof = 11,
  kAuthRefused = 12,
  kAbort = 13,
  kDataPlane = 14,
  kDataPing = 15,
  kLane = 16,
  kRaftPart = 17,
};
inline constexpr FrameType kLastFrameType = FrameType::kRaftPart;

// A frame of the link handshake (or of the pre-handshake protocol): never valid once a
// link is authenticated. Named one by one: types are added after these.
constexpr bool IsHandshakeFrame(FrameType type) {
  switch (type) {
    case FrameType::kLegacyHello:
    case FrameType::kAuthHello:
    case FrameType::kAuthChallenge:
    case FrameType::kAuthProof:
    case FrameType::kAuthRefused:
      return true;
    default:
      return false;
  }
}
enum class RequestKind : uint8_t { kJoin = 1, kPropose = 2, kRemove = 3 };

struct Frame {
  FrameType type = FrameType::kAuthHello;
  std::string payload;
};

// A frame whose payload is a view into the buffer it was parsed from.
struct FrameView {
  FrameType type = FrameType::kAuthHello;
  std::string_view payload;
};

// Appends one frame.
void AppendFrame(FrameType type, std::string_view payload, std::string* out);
// Appends one frame whose payload is `head` then `rest` (no copy made to join them).
void AppendFrame(FrameType type, std::string_view head, std::string_view rest, std::string* out);

// Takes one complete frame off the front of *buffer: the frame, nullopt when more
// bytes are needed, or an error for a length that is out of bounds (above
// `frame_bytes_max`) or a bad type.
absl::StatusOr<std::optional<Frame>> TakeFrame(std::string* buffer,
                                               size_t frame_bytes_max = kFrameBytesMax);
// The same for the frame that starts at *offset, advancing *offset past it and
// leaving `buffer` alone (a reader erases what it consumed once, not per frame).
absl::StatusOr<std::optional<Frame>> ParseFrameAt(std::string_view buffer, size_t* offset,
                                                  size_t frame_bytes_max = kFrameBytesMax);
// The same without copying the payload: a view into `buffer`.
absl::StatusOr<std::optional<FrameView>> ParseFrameViewAt(std::string_view buffer, size_t* offset,
                                                          size_t frame_bytes_max = kFrameBytesMax);

struct Request {
  uint64_t id = 0;
  RequestKind kind = RequestKind::kPropose;
  std::string body;
};
std::string EncodeRequest(const Request& request);
absl::StatusOr<Request> DecodeRequest(std::string_view payload);

struct Reply {
  uint64_t id = 0;
  absl::Status status;
  std::string leader_address;  // with kUnavailable from a node that is not the leader
  std::string wrapped_key;     // an accepted join: the cluster key, wrapped (link_auth.h)
};
std::string EncodeReply(const Reply& reply);
absl::StatusOr<Reply> DecodeReply(std::string_view payload);

struct RemoveTarget {
  raft::NodeId id = raft::kNoNode;  // 0: by address
  std::string address;
};
std::string EncodeRemoveTarget(const RemoveTarget& target);
absl::StatusOr<RemoveTarget> DecodeRemoveTarget(std::string_view body);

}  // namespace stanzad::cluster

#endif  // STANZAD_CLUSTER_NODE_FRAMES_H_
