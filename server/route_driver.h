// RouteDriver: the route directory (cluster/relay/directory.h) driven for the control
// thread, and what members tell one another of their data planes (kDataPlane). It owns
// the directory, feeds it what arrives (routes frames from members, links that came up,
// the shards' records of routes bound and unbound here) and turns its outputs into frames
// on the cluster links and records for the shards.
//
// Stanzas do not pass here: each shard's relay lane sends them on the shard's data links
// (server/node_shard.h). Routes do: they change at login rate, not stanza rate, and every
// shard needs all of them.
//
// One turn (Turn), in this order: the view of the cluster (membership, links, queues) in;
// the directory's tick, with the time (route digests go by it); frames out (route sets,
// digests and requests, and the data plane owed to members whose link came up), the links
// flushed; then the route changes, to every shard.
//
// Thread: the control thread only. The Links and Shards it is given outlive the call.
#ifndef STANZAD_SERVER_ROUTE_DRIVER_H_
#define STANZAD_SERVER_ROUTE_DRIVER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
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
#include "core/base/clock.h"
#include "core/router/shard_records.h"
#include "net/engine.h"
#include "server/shard_mail.h"

namespace stanzad::server {

class RouteDriver {
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
    // `record` to `shard`, after what was posted to it before (its views are read
    // during the call only).
    virtual void Post(int shard, const router::ShardRecord& record) = 0;
  };

  // Milliseconds that never go back: the directory's digests are timed by it.
  using Clock = std::function<uint64_t()>;

  // `data_plane`: what this node tells every member whose link comes up (kDataPlane).
  // `clock`: a test's own, or the one the control loop reads.
  // `directory`: the route directory's options (its digests' interval).
  explicit RouteDriver(cluster::DataPlaneInfo data_plane,
                       cluster::relay::DirectoryOptions directory = {}, Clock clock = MonotonicMs);
  RouteDriver(const RouteDriver&) = delete;
  RouteDriver& operator=(const RouteDriver&) = delete;

  // A routes or data plane frame from member `from` (others are not for it: ignored).
  void OnFrame(raft::NodeId from, cluster::FrameType type, std::string_view payload);
  // A link to `peer` came up: it gets this node's whole route set and its data plane.
  void OnLinkUp(raft::NodeId peer);
  // A record a shard posted to the control thread (RouteUp, RouteDown; Forward is not the
  // driver's and is ignored).
  void OnShardRecord(const router::ControlRecord& record);
  // The shards stopped: the routes bound on them are withdrawn.
  void DropLocalRoutes();
  // Every route bound on another node, for shards that just started.
  std::vector<cluster::relay::RouteChange> RemoteRoutes() const;
  // What each member told of its data plane (members only), and a number that grows
  // whenever that changes.
  const std::map<raft::NodeId, cluster::DataPlaneInfo>& data_planes() const { return data_planes_; }
  uint64_t data_planes_generation() const { return data_planes_generation_; }

  // One turn (see the top). `links` null: not in a cluster now (nothing is sent).
  void Turn(Links* links, Shards& shards);

 private:
  const cluster::DataPlaneInfo data_plane_;
  const Clock clock_;
  std::map<raft::NodeId, cluster::DataPlaneInfo> data_planes_;  // the members'
  uint64_t data_planes_generation_ = 0;
  std::set<raft::NodeId> data_plane_owed_;  // links up, not yet told
  std::unique_ptr<cluster::relay::Directory> directory_;
};

// The driver's links over the node's ClusterNode.
class ClusterNodeLinks final : public RouteDriver::Links {
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
// wait for its queues (shard_mail.h).
class MailedShards final : public RouteDriver::Shards {
 public:
  MailedShards(net::Engine* engine, ShardMail& mail, int count)
      : engine_(engine), mail_(mail), count_(count) {}
  int count() const override { return count_; }
  void Post(int shard, const router::ShardRecord& record) override;
  // A record of the node's own kinds (server/node_shard.h's NodeMessageKind), which
  // have no type of their own yet.
  void PostEncoded(int shard, const router::EncodedRecord& record);
  // What waits goes, as far as the shards' queues take it.
  void Flush();

 private:
  ShardMail::Post EnginePost() const;

  net::Engine* engine_;
  ShardMail& mail_;
  const int count_;
};

}  // namespace stanzad::server

#endif  // STANZAD_SERVER_ROUTE_DRIVER_H_
