// Raft messages too large for one cluster frame, in parts.
//
// A snapshot message carries the whole replicated configuration: about 190 MB with
// 1,000,000 users and 100,000 bridges, more than a frame may be (kFrameBytesMax) and more
// than a link may queue (PeerTransport::kQueueBytesMax). So every snapshot message travels
// as kRaftPart frames:
//
//   part := total (u64, little-endian: the encoded message's bytes) | offset (u64) | bytes
//
// The parts of one message follow each other on one link, offset 0 first; the receiver joins
// them and decodes the message once the last one is in.
//
// RaftPartSender (the sending node) streams a message from its shared snapshot: no copy of
// the data is made, and parts are queued only while the link's queue is short (Pump, every
// turn), so a snapshot never fills a link that heartbeats and appends share. Raft sends
// the same snapshot again while the receiver is still taking the first (no answer within an
// election timeout): a send of the snapshot already under way, or sent to that peer within
// kResendAfterMs, is dropped, unless the peer's link closed since (Forget).
//
// RaftPartAssembler (the receiving node) holds one message at a time, only from the
// leader's authenticated link (the caller's check: a member's parts could void the
// leader's snapshot under way): at most kRaftMessageBytesMax, parts in order
// (anything else drops what was gathered), a message begun by any peer replacing the one
// under way (snapshots come from the leader, and a new leader's supersedes the old
// one's), and nothing a peer stopped sending for kIdleMs (Expire).
//
// Thread safety: none; the control thread.
#ifndef STANZAD_CLUSTER_NODE_RAFT_PARTS_H_
#define STANZAD_CLUSTER_NODE_RAFT_PARTS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "cluster/raft/message.h"

namespace stanzad::cluster {

// The bytes of one part (the last may be shorter), and of a whole message: the largest
// snapshot a store takes (storage::kSnapshotDataBytesMax) with room for the message around
// it.
inline constexpr size_t kRaftPartBytes = 1 << 20;
inline constexpr size_t kRaftMessageBytesMax = (size_t{1} << 30) + (1 << 20);

class RaftPartSender {
 public:
  static constexpr uint64_t kResendAfterMs = 30000;
  // Parts are queued while fewer bytes than this wait on the link.
  static constexpr size_t kQueuedBytesMax = 4 << 20;

  using QueuedTo = std::function<size_t(raft::NodeId peer)>;
  // Queues one kRaftPart frame; false when there is no link (the message is abandoned).
  using SendPart = std::function<bool(raft::NodeId peer, std::string_view payload)>;

  // Starts streaming `message` (which has a snapshot) to message.to, unless the same
  // snapshot is under way or was sent there within kResendAfterMs.
  void Send(const raft::Message& message, uint64_t now_ms);
  // Queues the next parts of every stream while its peer's queue is short.
  void Pump(const QueuedTo& queued_to, const SendPart& send_part);
  // The link to `peer` closed: what was sent there may be lost, so a repeat is sent anew.
  void Forget(raft::NodeId peer) { streams_.erase(peer); }
  // Streams with parts still to queue.
  size_t active() const;

 private:
  struct Stream {
    // Released once every part is queued: at size hundreds of MB, which Raft may have
    // replaced with a newer snapshot meanwhile.
    std::shared_ptr<const raft::Snapshot> snapshot;
    // Which snapshot (one index and term name one state), to drop repeats once released.
    raft::Index index = 0;
    raft::Term term = 0;
    std::string head;  // raft::EncodeMessageHead; the snapshot's data follows it
    size_t total = 0;  // bytes of head + data
    size_t sent = 0;   // of them queued
    uint64_t started_ms = 0;
  };
  std::map<raft::NodeId, Stream> streams_;  // by peer; kept once done, to drop repeats
};

class RaftPartAssembler {
 public:
  static constexpr uint64_t kIdleMs = 30000;

  struct Whole {
    std::string bytes;      // the encoded message
    uint64_t first_ms = 0;  // when its first part arrived
  };
  // A kRaftPart frame's payload from `peer`: the whole message once this was its last part,
  // nullopt while parts are missing, or InvalidArgument for a part that breaks the rules
  // (what was gathered from that peer is dropped). A first part (offset 0) drops what was
  // gathered from every peer.
  absl::StatusOr<std::optional<Whole>> Add(raft::NodeId peer, std::string_view payload,
                                           uint64_t now_ms);
  // Drops what peers stopped sending kIdleMs ago.
  void Expire(uint64_t now_ms);
  // Bytes held for messages not yet whole.
  size_t held_bytes() const;

 private:
  struct Assembly {
    uint64_t total = 0;
    std::string bytes;
    uint64_t first_ms = 0;
    uint64_t last_ms = 0;
  };
  std::map<raft::NodeId, Assembly> assemblies_;
};

// One part's payload (exposed for tests and the fuzz target).
std::string EncodeRaftPart(uint64_t total, uint64_t offset, std::string_view bytes);

}  // namespace stanzad::cluster

#endif  // STANZAD_CLUSTER_NODE_RAFT_PARTS_H_
