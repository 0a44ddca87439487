#include "server/route_driver.h"

#include <utility>
#include <variant>

#include "cluster/node/peer_transport.h"
#include "core/base/check.h"
#include "core/base/log.h"

namespace stanzad::server {

using cluster::relay::Ready;
using cluster::relay::RouteChange;

// Route sets pace themselves well below what a cluster link may queue (more closes it).
static_assert(cluster::relay::DirectoryOptions{}.routes_queued_bytes_max +
                      cluster::relay::DirectoryOptions{}.routes_frame_bytes_max <=
                  cluster::PeerTransport::kQueueBytesMax / 2,
              "a route set could fill a cluster link's queue");

namespace {

// The record that tells a shard of `change` (its views are into `change`).
router::ShardRecord RecordOf(const RouteChange& change) {
  switch (change.op) {
    case RouteChange::Op::kBind:
      return router::RemoteRouteBind{change.node, change.address};
    case RouteChange::Op::kUnbind:
      return router::RemoteRouteUnbind{change.node, change.address};
    case RouteChange::Op::kForgetNode:
      return router::ForgetNode{change.node};
  }
  return router::ForgetNode{change.node};  // not reached: every Op is above
}

}  // namespace

RouteDriver::RouteDriver(cluster::DataPlaneInfo data_plane,
                         cluster::relay::DirectoryOptions directory, Clock clock)
    : data_plane_(data_plane),
      clock_(std::move(clock)),
      directory_(std::make_unique<cluster::relay::Directory>(directory)) {
  CHECK(clock_ != nullptr);
}

void RouteDriver::OnFrame(raft::NodeId from, cluster::FrameType type, std::string_view payload) {
  if (type == cluster::FrameType::kRoutes) {
    directory_->OnRoutes(from, payload);
  } else if (type == cluster::FrameType::kDataPlane) {
    absl::StatusOr<cluster::DataPlaneInfo> info = cluster::DecodeDataPlaneInfo(payload);
    if (!info.ok()) return;
    auto [it, added] = data_planes_.emplace(from, *info);
    if (added || !(it->second == *info)) {
      it->second = *info;
      ++data_planes_generation_;
    }
  }
}

void RouteDriver::OnLinkUp(raft::NodeId peer) {
  directory_->LinkUp(peer);
  data_plane_owed_.insert(peer);
}

void RouteDriver::OnShardRecord(const router::ControlRecord& record) {
  if (const auto* up = std::get_if<router::RouteUp>(&record)) {
    directory_->LocalRoute(true, up->address);
  } else if (const auto* down = std::get_if<router::RouteDown>(&record)) {
    directory_->LocalRoute(false, down->address);
  }
}

void RouteDriver::DropLocalRoutes() { directory_->DropLocalRoutes(); }

std::vector<RouteChange> RouteDriver::RemoteRoutes() const { return directory_->RemoteRoutes(); }

void RouteDriver::Turn(Links* links, Shards& shards) {
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
  if (std::erase_if(data_planes_,
                    [&](const auto& item) { return view.members.count(item.first) == 0; }) > 0) {
    ++data_planes_generation_;
  }
  directory_->SetView(view);
  directory_->Tick(clock_());
  Ready routes = directory_->TakeReady();
  if (links != nullptr) {
    for (const cluster::relay::Send& send : routes.sends) {
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
  for (const cluster::relay::LogLine& line : routes.logs) {
    LogEvent(line.warning ? LogLevel::kWarning : LogLevel::kInfo, line.event, line.fields);
  }
  for (const RouteChange& change : routes.route_changes) {
    const router::ShardRecord record = RecordOf(change);
    for (int shard = 0; shard < shards.count(); ++shard) shards.Post(shard, record);
  }
}

ShardMail::Post MailedShards::EnginePost() const {
  return [engine = engine_](int shard, uint32_t kind, uint64_t target, uint64_t argument,
                            std::string_view payload) {
    return engine->Post(shard, kind, target, argument, payload);
  };
}

void MailedShards::Post(int shard, const router::ShardRecord& record) {
  if (engine_ != nullptr) PostEncoded(shard, router::EncodeShardRecord(record));
}

void MailedShards::PostEncoded(int shard, const router::EncodedRecord& record) {
  if (engine_ == nullptr) return;
  mail_.Send(EnginePost(), shard, record.kind(), record.target(), record.argument(),
             record.payload());
}

void MailedShards::Flush() {
  if (engine_ != nullptr) mail_.Flush(EnginePost());
}

}  // namespace stanzad::server
