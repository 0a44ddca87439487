// NodeShard: what runs on each of the engine's shards — the XMPP router
// (router/router_shard.h), the shard's data links (cluster/data/data_links.h) and its relay
// lane (cluster/relay/relay.h) — behind the one ShardHandler the engine calls.
// Connections go to the part that owns them (the data port's, and the links the data
// links dialled, to DataLinks; every other to the router); records by kind.
//
// The lane (docs/data-links.md, step 4): a stanza the router sends to another node goes
// into this shard's lane (custody, its own sequences); the lane's frames leave on this
// shard's data link to that node (in leader mode, to the leader's), wrapped as kLane
// frames that name the lane they are for. A kLane frame that arrives on a link this shard
// accepted goes to the lane it names: this one, or another shard's through its queue
// (kLaneFrame). The lane's outputs are applied once per loop iteration (OnFlush): its
// frames queue on the data links, which seal and hand them to the engine at the end of
// that call; its deliveries go to the shard that owns the address at once, as records
// from the control thread did (kDeliverFromPeer); its bounces to the sender's shard. So
// an answer may leave a few microseconds after the stanza it answers was handed over:
// a destination that dies in between is relay.h's window of a dying destination. The
// lane asks the router where routes are (RouterShard::NodeOfRoute) and hears of every
// route bound (RouterShard::Forwarder). Its view of the cluster (membership, leader, each
// member's lanes) is the DataPlaneConfig the control thread publishes; its links are
// this shard's data links. Until the node has been in a cluster (no lane yet), a stanza
// for another node is answered service-unavailable; a node that leaves keeps its lane,
// which, with no members in its view, sends nothing and bounces at its deadlines.
//
// Thread safety: as ShardHandler: on its shard's thread only. LaneStats may be read from
// any thread.
#ifndef STANZAD_SERVER_NODE_SHARD_H_
#define STANZAD_SERVER_NODE_SHARD_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "cluster/data/data_links.h"
#include "cluster/data/data_plane.h"
#include "cluster/relay/relay.h"
#include "core/router/shard_records.h"
#include "net/engine.h"
#include "router/router_shard.h"

namespace stanzad::server {

// The node's own records to its shards, beside the router's (core/router/shard_records.h),
// typed the same way: only EncodeNodeRecord lays one out in the engine's four fields, and
// only DecodeNodeRecord reads one back. Their kinds are above every router kind.
enum NodeMessageKind : uint32_t {
  kDataPlaneChanged = 1000,
  kLaneFrame,
};
// The control thread → every shard: the DataPlanePublisher holds a new configuration.
struct DataPlaneChanged {};
// A shard → another: a kLane payload (cluster/data/data_plane.h) for that shard's lane,
// from member `from`, that came in on a data link the sender owns.
struct LaneFrameFromPeer {
  raft::NodeId from = raft::kNoNode;
  std::string_view payload;  // a view, as router records' strings are
};
using NodeRecord = std::variant<DataPlaneChanged, LaneFrameFromPeer>;
router::EncodedRecord EncodeNodeRecord(const NodeRecord& record);
// nullopt: not one of the node's kinds (the router's, to decode there).
std::optional<NodeRecord> DecodeNodeRecord(const net::CrossShardMessage& message);

// One shard's lane counters (relay::Stats and custody), for /metrics; written by its
// thread, read by any. It outlives the shard's lanes and engines: the counters only rise
// (each lane adds what it counted), custody and deliveries_waiting are now's.
struct alignas(64) LaneStats {
  std::atomic<uint64_t> relayed_out{0};
  std::atomic<uint64_t> relayed_in{0};
  std::atomic<uint64_t> failed{0};
  std::atomic<uint64_t> resent{0};
  std::atomic<uint64_t> duplicates_dropped{0};
  std::atomic<uint64_t> expired{0};
  std::atomic<uint64_t> aborted{0};
  std::atomic<uint64_t> unconfirmed{0};
  std::atomic<uint64_t> misrouted{0};
  std::atomic<uint64_t> custody_count{0};
  std::atomic<uint64_t> custody_bytes{0};
  std::atomic<uint64_t> deliveries_waiting{0};  // for a shard whose queue was full
};

class NodeShard final : public net::ShardHandler, private router::RouterShard::Forwarder {
 public:
  // `config` and `stats` outlive this. `lane_options`: this shard's lane's (its custody
  // bound a share of the node's).
  NodeShard(std::unique_ptr<router::RouterShard> router, std::unique_ptr<cluster::DataLinks> links,
            const cluster::DataPlanePublisher* config, cluster::relay::Options lane_options,
            LaneStats* stats);
  ~NodeShard() override;

  bool OnAccept(net::Shard& shard, net::ConnectionId id, const net::Endpoint& peer,
                int listener_tag) override;
  void OnData(net::Shard& shard, net::ConnectionId id, std::string_view bytes) override;
  void OnClosed(net::Shard& shard, net::ConnectionId id, const absl::Status& reason) override;
  void OnMessage(net::Shard& shard, const net::CrossShardMessage& message) override;
  void OnConnected(net::Shard& shard, net::ConnectionId id) override;
  void OnTick(net::Shard& shard, uint64_t now_ms) override;
  // The lane's outputs of the whole loop iteration at once (its answers in one frame per
  // origin lane), then the data links seal what they queued: one record per link.
  void OnFlush(net::Shard& shard) override;
  void OnStop(net::Shard& shard) override;

 private:
  class Routes;

  // RouterShard::Forwarder.
  void Forward(net::ConnectionId sender, uint64_t node, std::string_view bytes,
               std::optional<std::string_view> to, std::string_view route_address) override;
  void RouteBound(std::string_view address) override;

  // A frame from member `from` on one of this shard's data links.
  void OnLinkFrame(raft::NodeId from, const cluster::FrameView& frame);
  void OnLaneFrame(raft::NodeId from, const cluster::LaneFrame& frame);
  // The lane for the published configuration (made, or made again for a new identity).
  void UpdateLane();
  cluster::relay::View LaneView() const;
  // The lane's outputs: frames first, then bounces, logs and deliveries.
  void Apply();
  void PublishStats();
  // Deliveries another shard's full queue did not take, in order (a few at most: the
  // lane decides nothing more while kWaitingDeliveriesMax wait).
  void PostWaitingDeliveries();
  static constexpr size_t kWaitingDeliveriesMax = 4096;
  struct WaitingDelivery {
    int shard = 0;
    uint64_t origin = 0;
    std::string bytes;
  };
  std::deque<WaitingDelivery> waiting_deliveries_;

  std::unique_ptr<router::RouterShard> router_;
  std::unique_ptr<cluster::DataLinks> links_;
  const cluster::DataPlanePublisher* const config_publisher_;
  std::shared_ptr<const cluster::DataPlaneConfig> config_;
  const cluster::relay::Options lane_options_;
  LaneStats* const stats_;
  std::unique_ptr<Routes> routes_;  // before lane_: it reads it
  std::unique_ptr<cluster::relay::Relay> lane_;
  cluster::relay::Stats published_;  // lane_'s counts as last added to stats_
  bool lane_dirty_ = false;          // it took something this iteration: Apply at OnFlush
  net::Shard* shard_ = nullptr;      // set on every call from the engine
};

}  // namespace stanzad::server

#endif  // STANZAD_SERVER_NODE_SHARD_H_
