// NodeShard: what runs on each of the engine's shards — the XMPP router (net/router_shard.h)
// and the shard's data links (cluster/data/data_links.h) — behind the one ShardHandler the
// engine calls. Connections go to the part that owns them (the data port's and the links
// the data links dialled to DataLinks, every other to the router); records by kind.
//
// Thread safety: as ShardHandler: on its shard's thread only.
#ifndef STANZAD_SERVER_NODE_SHARD_H_
#define STANZAD_SERVER_NODE_SHARD_H_

#include <cstdint>
#include <memory>

#include "cluster/data/data_links.h"
#include "net/engine.h"
#include "net/router_shard.h"

namespace stanzad::server {

// Record kinds of Shard::Post for the node's parts other than the router (whose kinds are
// below this).
enum NodeMessageKind : uint32_t {
  kDataPlaneChanged = 1000,  // a new DataPlaneConfig was published
};

class NodeShard final : public net::ShardHandler {
 public:
  NodeShard(std::unique_ptr<net::RouterShard> router, std::unique_ptr<cluster::DataLinks> links)
      : router_(std::move(router)), links_(std::move(links)) {}

  bool OnAccept(net::Shard& shard, net::ConnectionId id, const net::Endpoint& peer,
                int listener_tag) override;
  void OnData(net::Shard& shard, net::ConnectionId id, std::string_view bytes) override;
  void OnClosed(net::Shard& shard, net::ConnectionId id, const absl::Status& reason) override;
  void OnMessage(net::Shard& shard, const net::CrossShardMessage& message) override;
  void OnConnected(net::Shard& shard, net::ConnectionId id) override;
  void OnTick(net::Shard& shard, uint64_t now_ms) override;
  void OnStop(net::Shard& shard) override;

 private:
  std::unique_ptr<net::RouterShard> router_;
  std::unique_ptr<cluster::DataLinks> links_;
};

}  // namespace stanzad::server

#endif  // STANZAD_SERVER_NODE_SHARD_H_
