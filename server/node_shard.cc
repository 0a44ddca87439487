#include "server/node_shard.h"

namespace stanzad::server {

bool NodeShard::OnAccept(net::Shard& shard, net::ConnectionId id, const net::Endpoint& peer,
                         int listener_tag) {
  if (listener_tag == cluster::kClusterDataListener) return links_->OnAccept(shard, id, peer);
  return router_->OnAccept(shard, id, peer, listener_tag);
}

void NodeShard::OnData(net::Shard& shard, net::ConnectionId id, std::string_view bytes) {
  if (links_->Owns(id)) {
    links_->OnData(shard, id, bytes);
  } else {
    router_->OnData(shard, id, bytes);
  }
}

void NodeShard::OnClosed(net::Shard& shard, net::ConnectionId id, const absl::Status& reason) {
  if (links_->Owns(id)) {
    links_->OnClosed(shard, id, reason);
  } else {
    router_->OnClosed(shard, id, reason);
  }
}

void NodeShard::OnMessage(net::Shard& shard, const net::CrossShardMessage& message) {
  if (message.kind == kDataPlaneChanged) {
    links_->OnConfigChanged(shard);
  } else {
    router_->OnMessage(shard, message);
  }
}

void NodeShard::OnConnected(net::Shard& shard, net::ConnectionId id) {
  if (links_->Owns(id)) links_->OnConnected(shard, id);
}

void NodeShard::OnTick(net::Shard& shard, uint64_t now_ms) {
  router_->OnTick(shard, now_ms);
  links_->OnTick(shard, now_ms);
}

void NodeShard::OnStop(net::Shard& shard) { router_->OnStop(shard); }

}  // namespace stanzad::server
