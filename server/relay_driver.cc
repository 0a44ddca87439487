#include "server/relay_driver.h"

#include <utility>

#include "cluster/node/peer_transport.h"
#include "core/base/log.h"
#include "core/router/route_table.h"
#include "net/router_shard.h"

namespace stanzad::server {

using cluster::relay::Lane;
using cluster::relay::Ready;
using cluster::relay::RouteChange;

// Route sets pace themselves well below what a cluster link may queue (more closes it).
static_assert(cluster::relay::DirectoryOptions{}.routes_queued_bytes_max +
                      cluster::relay::DirectoryOptions{}.routes_frame_bytes_max <=
                  cluster::PeerTransport::kQueueBytesMax / 2,
              "a route set could fill a cluster link's queue");

RelayDriver::RelayDriver(raft::NodeId self, uint64_t incarnation, std::string domain,
                         const cluster::relay::Options& options, cluster::DataPlaneInfo data_plane)
    : self_(self),
      data_plane_(data_plane),
      directory_(std::make_unique<cluster::relay::Directory>()),
      relay_(std::make_unique<cluster::relay::Relay>(Lane{self, 0}, incarnation, std::move(domain),
                                                     *directory_, options)) {}

void RelayDriver::OnFrame(uint64_t now_ms, raft::NodeId from, cluster::FrameType type,
                          std::string_view payload) {
  if (type == cluster::FrameType::kRoutes) {
    directory_->OnRoutes(from, payload);
  } else if (type == cluster::FrameType::kDataPlane) {
    absl::StatusOr<cluster::DataPlaneInfo> info = cluster::DecodeDataPlaneInfo(payload);
    if (info.ok()) data_planes_[from] = *info;
  } else {
    relay_->OnFrame(now_ms, Lane{from, 0}, type, payload);
  }
}

void RelayDriver::OnLinkUp(raft::NodeId peer) {
  directory_->LinkUp(peer);
  data_plane_owed_.insert(peer);
}

void RelayDriver::OnShardRecord(uint64_t now_ms, const net::CrossShardMessage& message) {
  switch (message.kind) {
    case net::kCtlRouteUp:
    case net::kCtlRouteDown:
      directory_->LocalRoute(message.kind == net::kCtlRouteUp, message.payload);
      if (message.kind == net::kCtlRouteUp) relay_->RouteBound(now_ms, message.payload);
      return;
    case net::kCtlForward:
      relay_->Forward(now_ms, message.target, message.argument, message.payload);
      return;
    default:
      return;
  }
}

void RelayDriver::DropLocalRoutes() { directory_->DropLocalRoutes(); }

std::vector<RouteChange> RelayDriver::RemoteRoutes() const { return directory_->RemoteRoutes(); }

void RelayDriver::Turn(uint64_t now_ms, const std::string& domain, Links* links, Shards& shards) {
  cluster::relay::View view;
  if (links != nullptr) {
    view.member = links->member();
    view.leader = links->leader();
    for (const raft::NodeId peer : links->peers()) {
      view.members.insert(peer);
      if (links->linked(peer)) view.linked.insert(peer);
      if (const size_t queued = links->queued_bytes(peer); queued > 0) {
        view.queued_bytes[peer] = queued;
      }
    }
  }
  view.can_deliver = shards.can_deliver();
  std::erase_if(data_planes_,
                [&](const auto& item) { return view.members.count(item.first) == 0; });
  if (relay_->domain() != domain) relay_->SetDomain(domain);
  directory_->SetView(view);
  relay_->SetView(now_ms, view);
  directory_->Tick();
  Ready routes = directory_->TakeReady();
  for (const RouteChange& change : routes.route_changes) {
    if (change.op == RouteChange::Op::kBind) relay_->RouteBound(now_ms, change.address);
  }
  relay_->Tick(now_ms);
  Ready ready = relay_->TakeReady();
  if (links != nullptr) {
    for (const cluster::relay::Send& send : routes.sends) {
      links->Send(send.to, send.type, send.payload);
    }
    for (const cluster::relay::Send& send : ready.sends) {
      links->Send(send.to, send.type, send.payload);
    }
    // Owed to a peer not yet a member in this node's view: it waits for that.
    for (auto it = data_plane_owed_.begin(); it != data_plane_owed_.end();) {
      if (view.members.count(*it) == 0) {
        ++it;
        continue;
      }
      links->Send(*it, cluster::FrameType::kDataPlane, cluster::EncodeDataPlaneInfo(data_plane_));
      it = data_plane_owed_.erase(it);
    }
    links->Flush();
  }
  for (const RouteChange& change : routes.route_changes) {
    const uint32_t kind = change.op == RouteChange::Op::kBind     ? net::kRemoteRouteBind
                          : change.op == RouteChange::Op::kUnbind ? net::kRemoteRouteUnbind
                                                                  : net::kForgetNode;
    for (int shard = 0; shard < shards.count(); ++shard) {
      shards.Post(shard, kind, net::kNoConnection, change.node, change.address);
    }
  }
  for (const cluster::relay::Bounce& bounce : ready.bounces) {
    shards.Post(net::ShardOf(bounce.sender), net::kBounce, bounce.sender,
                static_cast<uint64_t>(bounce.condition), bounce.bytes);
  }
  for (const cluster::relay::LogLine& line : ready.logs) {
    LogEvent(line.warning ? LogLevel::kWarning : LogLevel::kInfo, line.event, line.fields);
  }
  for (const cluster::relay::Delivery& delivery : ready.deliveries) {
    shards.Post(router::OwnerShard(delivery.address, shards.count()), net::kDeliverFromPeer,
                net::kNoConnection, delivery.origin, delivery.bytes);
  }
}

ShardMail::Post MailedShards::EnginePost() const {
  return [engine = engine_](int shard, uint32_t kind, uint64_t target, uint64_t argument,
                            std::string_view payload) {
    return engine->Post(shard, kind, target, argument, payload);
  };
}

void MailedShards::Post(int shard, uint32_t kind, uint64_t target, uint64_t argument,
                        std::string_view payload) {
  if (engine_ != nullptr) mail_.Send(EnginePost(), shard, kind, target, argument, payload);
}

void MailedShards::Flush() {
  if (engine_ != nullptr) mail_.Flush(EnginePost());
}

}  // namespace stanzad::server
