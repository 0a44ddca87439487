// RelayDriver: the relay and the route directory (cluster/relay) driven for the control
// thread. It owns both, feeds them what arrives (frames from members, links that came up,
// the shards' records) and turns their outputs into frames on the cluster links and
// records for the shards, in the order the relay's contract needs.
//
// One turn (Turn), in this order:
//   1. the view of the cluster (membership, leader, links, queues) into both;
//   2. the directory's tick; routes it bound tell the relay (what waited for them goes);
//   3. the relay's tick;
//   4. frames out, the directory's first, then the relay's (answers before the stanzas
//      they cover), and the links flushed;
//   5. then, for the shards: route changes (to every shard), bounces (to the sender's
//      shard), log lines, and last the deliveries (to the shard that owns the address),
//      so a destination's "delivered" has left before its shards can deliver.
//
// Each node runs one lane today (shard 0, docs/data-links.md): every member is told to
// have one, so every relay frame is for shard 0.
//
// Thread: the control thread only. The Links and Shards it is given outlive the call.
#ifndef STANZAD_SERVER_RELAY_DRIVER_H_
#define STANZAD_SERVER_RELAY_DRIVER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/data/data_plane.h"
#include "cluster/node/cluster_node.h"
#include "cluster/node/frames.h"
#include "cluster/raft/types.h"
#include "cluster/relay/directory.h"
#include "cluster/relay/relay.h"
#include "net/engine.h"
#include "server/shard_mail.h"

namespace stanzad::server {

class RelayDriver {
 public:
  // The cluster links, as the driver uses them (the daemon's ClusterNode).
  class Links {
   public:
    virtual ~Links() = default;
    virtual bool member() const = 0;
    virtual raft::NodeId leader() const = 0;
    virtual std::vector<raft::NodeId> peers() const = 0;  // the other members
    virtual bool linked(raft::NodeId peer) const = 0;
    virtual size_t queued_bytes(raft::NodeId peer) const = 0;
    virtual void Send(raft::NodeId peer, cluster::FrameType type, std::string_view payload) = 0;
    // What this turn queued leaves, one send per link.
    virtual void Flush() = 0;
  };
  // The shards, as the driver reaches them (the daemon's ShardMail over the engine).
  class Shards {
   public:
    virtual ~Shards() = default;
    virtual int count() const = 0;
    // The shards run and take deliveries now (their mail is not backed up).
    virtual bool can_deliver() const = 0;
    virtual void Post(int shard, uint32_t kind, uint64_t target, uint64_t argument,
                      std::string_view payload) = 0;
  };

  // `incarnation`: this start's, larger than any before (server/ keeps it durable).
  // `data_plane`: what this node tells every member whose link comes up (kDataPlane).
  RelayDriver(raft::NodeId self, uint64_t incarnation, std::string domain,
              const cluster::relay::Options& options, cluster::DataPlaneInfo data_plane);
  RelayDriver(const RelayDriver&) = delete;
  RelayDriver& operator=(const RelayDriver&) = delete;

  raft::NodeId self() const { return self_; }

  // A relay, routes or data plane frame from member `from` (any time between turns).
  void OnFrame(uint64_t now_ms, raft::NodeId from, cluster::FrameType type,
               std::string_view payload);
  // A link to `peer` came up: it gets this node's whole route set and its data plane.
  void OnLinkUp(raft::NodeId peer);
  // What each member told of its data plane (members only).
  const std::map<raft::NodeId, cluster::DataPlaneInfo>& data_planes() const { return data_planes_; }
  // A record a shard posted to the control thread (kCtlRouteUp, kCtlRouteDown, kCtlForward;
  // others are not the relay's and are ignored).
  void OnShardRecord(uint64_t now_ms, const net::CrossShardMessage& message);
  // The shards stopped: the routes bound on them are withdrawn.
  void DropLocalRoutes();
  // Every route bound on another node, for shards that just started.
  std::vector<cluster::relay::RouteChange> RemoteRoutes() const;

  // One turn (see the top). `links` null: not in a cluster now (nothing is sent).
  void Turn(uint64_t now_ms, const std::string& domain, Links* links, Shards& shards);

  const cluster::relay::Stats& stats() const { return relay_->stats(); }
  size_t custody_count() const { return relay_->custody_count(); }
  size_t custody_bytes() const { return relay_->custody_bytes(); }

 private:
  const raft::NodeId self_;
  const cluster::DataPlaneInfo data_plane_;
  std::map<raft::NodeId, cluster::DataPlaneInfo> data_planes_;  // the members'
  std::set<raft::NodeId> data_plane_owed_;                      // links up since the last turn
  std::unique_ptr<cluster::relay::Directory> directory_;        // before relay_: it reads it
  std::unique_ptr<cluster::relay::Relay> relay_;
};

// The driver's links over the node's ClusterNode.
class ClusterNodeLinks final : public RelayDriver::Links {
 public:
  explicit ClusterNodeLinks(cluster::ClusterNode& node) : node_(node) {}
  bool member() const override { return node_.is_member(); }
  raft::NodeId leader() const override { return node_.leader_id(); }
  std::vector<raft::NodeId> peers() const override { return node_.PeerIds(); }
  bool linked(raft::NodeId peer) const override { return node_.LinkedTo(peer); }
  size_t queued_bytes(raft::NodeId peer) const override { return node_.QueuedTo(peer); }
  void Send(raft::NodeId peer, cluster::FrameType type, std::string_view payload) override {
    node_.SendData(peer, type, payload);
  }
  void Flush() override { node_.FlushLinks(); }

 private:
  cluster::ClusterNode& node_;
};

// The driver's shards: the running engine (null: none runs), through the records that
// wait for its queues (shard_mail.h), which decide can_deliver.
class MailedShards final : public RelayDriver::Shards {
 public:
  MailedShards(net::Engine* engine, ShardMail& mail, int count)
      : engine_(engine), mail_(mail), count_(count) {}
  int count() const override { return count_; }
  bool can_deliver() const override { return engine_ != nullptr && !mail_.full(); }
  void Post(int shard, uint32_t kind, uint64_t target, uint64_t argument,
            std::string_view payload) override;
  // What waits goes, as far as the shards' queues take it.
  void Flush();

 private:
  ShardMail::Post EnginePost() const;

  net::Engine* engine_;
  ShardMail& mail_;
  const int count_;
};

}  // namespace stanzad::server

#endif  // STANZAD_SERVER_RELAY_DRIVER_H_
