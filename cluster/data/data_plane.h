// The data plane's side of the cluster (docs/data-links.md): what a member tells the others
// about its data links (kDataPlane, on every cluster link that comes up), and what the
// control thread tells its shards about the cluster (DataPlaneConfig, published whole).
//
//   kDataPlane payload := version (1) = 1 | data port (2, LE) | lanes (2, LE: its shard
//                         count, 1 to relay::kLanesPerNodeMax)
//   kLane payload      := from shard (2, LE) | to shard (2, LE) | type (1: a relay frame's,
//                         kStanza, kAck, kAckRelay or kAbort) | that frame's payload
//
// Decoding never trusts its input: a bad payload is an error, never a crash.
//
// Thread safety: DataPlanePublisher may be used from any thread; the rest are values.
#ifndef STANZAD_CLUSTER_DATA_DATA_PLANE_H_
#define STANZAD_CLUSTER_DATA_DATA_PLANE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "cluster/node/frames.h"
#include "cluster/raft/types.h"
#include "net/engine.h"
#include "tls/tls_session.h"

namespace stanzad::cluster {

// The engine listener tag of the data port (beside router::RouterListener's).
inline constexpr int kClusterDataListener = 16;

struct DataPlaneInfo {
  uint16_t port = 0;   // its data port (on the IP of its cluster address)
  uint32_t lanes = 1;  // its shards
  friend bool operator==(const DataPlaneInfo&, const DataPlaneInfo&) = default;
};
std::string EncodeDataPlaneInfo(const DataPlaneInfo& info);
absl::StatusOr<DataPlaneInfo> DecodeDataPlaneInfo(std::string_view payload);

// A relay frame between two lanes, on a data link.
struct LaneFrame {
  uint16_t from_shard = 0;
  uint16_t to_shard = 0;
  FrameType type = FrameType::kStanza;
  std::string_view payload;  // a view into the decoded kLane payload
};
std::string EncodeLaneFrame(uint16_t from_shard, uint16_t to_shard, FrameType type,
                            std::string_view payload);
// Its first bytes, up to the payload (for DataLinks::Send's head: the payload then goes
// into the link's queue without a copy of its own).
std::string LaneFrameHead(uint16_t from_shard, uint16_t to_shard, FrameType type);
absl::StatusOr<LaneFrame> DecodeLaneFrame(std::string_view payload);

// What the shards need to run data links: immutable once published.
struct DataPlaneConfig {
  raft::NodeId self = raft::kNoNode;
  std::string self_address;  // its cluster address, as its links introduce it
  uint64_t incarnation = 0;  // this start's (the relay's; 0: none yet)
  bool member = false;       // this node is in the membership
  raft::NodeId leader = raft::kNoNode;
  // The cluster key (link_auth.h); empty: no data links (not in a cluster yet).
  std::string cluster_key;
  struct Member {
    std::string ip;          // of its cluster address (what 'cluster isolate' names)
    net::Endpoint endpoint;  // its data port (unset: not told yet)
    uint32_t lanes = 1;
    // The SHA-256 of the certificate key bound to it when it joined (Config::
    // member_identities); under TLS its links must present that key. Empty: none bound.
    std::string identity;
  };
  // Every other member; those that have not told their data port yet (on a cluster
  // link) have no endpoint: they are let in, not dialled.
  std::map<raft::NodeId, Member> members;
  // A drill ('cluster isolate'): no data link to or from these hosts (IP addresses), as
  // none on the cluster port.
  std::set<std::string> isolated_from;
  // Mutual TLS beneath the handshake, as on the cluster port (both set, or neither).
  std::shared_ptr<const tls::TlsContext> tls_server;
  std::shared_ptr<const tls::TlsContext> tls_client;
};

// Hands the current DataPlaneConfig from the control thread to the shards.
class DataPlanePublisher {
 public:
  DataPlanePublisher() : current_(std::make_shared<const DataPlaneConfig>()) {}
  void Publish(std::shared_ptr<const DataPlaneConfig> config) { current_.store(std::move(config)); }
  std::shared_ptr<const DataPlaneConfig> Current() const { return current_.load(); }

 private:
  std::atomic<std::shared_ptr<const DataPlaneConfig>> current_;
};

}  // namespace stanzad::cluster

#endif  // STANZAD_CLUSTER_DATA_DATA_PLANE_H_
