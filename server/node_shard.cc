#include "server/node_shard.h"

#include <utility>
#include <variant>

#include "core/base/concat.h"
#include "core/base/log.h"
#include "core/router/route_table.h"
#include "core/router/shard_records.h"

namespace stanzad::server {

using cluster::relay::Lane;

// Where routes are, for the lane: the router's tables on this shard.
class NodeShard::Routes final : public cluster::relay::RouteLookup {
 public:
  explicit Routes(const router::RouterShard& router) : router_(router) {}
  std::optional<cluster::relay::NodeId> NodeOf(std::string_view address) const override {
    return router_.NodeOfRoute(address);
  }
  bool Claims(cluster::relay::NodeId node, const std::string& address) const override {
    return router_.AccountHeldBy(node, address);
  }

 private:
  const router::RouterShard& router_;
};

router::EncodedRecord EncodeNodeRecord(const NodeRecord& record) {
  struct Encoder {  // one overload per kind: a new kind without one does not compile
    router::EncodedRecord operator()(const DataPlaneChanged&) const {
      return router::EncodedRecord(kDataPlaneChanged, net::kNoConnection, 0, "");
    }
    router::EncodedRecord operator()(const LaneFrameFromPeer& lane) const {
      return router::EncodedRecord(kLaneFrame, net::kNoConnection, lane.from, lane.payload);
    }
  };
  return std::visit(Encoder{}, record);
}

std::optional<NodeRecord> DecodeNodeRecord(const net::CrossShardMessage& message) {
  switch (message.kind) {
    case kDataPlaneChanged:
      return DataPlaneChanged{};
    case kLaneFrame:
      return LaneFrameFromPeer{message.argument, message.payload};
    default:
      return std::nullopt;
  }
}

NodeShard::NodeShard(std::unique_ptr<router::RouterShard> router,
                     std::unique_ptr<cluster::DataLinks> links,
                     const cluster::DataPlanePublisher* config,
                     cluster::relay::Options lane_options, LaneStats* stats)
    : router_(std::move(router)),
      links_(std::move(links)),
      config_publisher_(config),
      config_(config->Current()),
      lane_options_(lane_options),
      stats_(stats),
      routes_(std::make_unique<Routes>(*router_)) {
  router_->set_forwarder(this);
  links_->set_frame_handler(
      [this](raft::NodeId from, const cluster::FrameView& frame) { OnLinkFrame(from, frame); });
}

NodeShard::~NodeShard() = default;

bool NodeShard::OnAccept(net::Shard& shard, net::ConnectionId id, const net::Endpoint& peer,
                         int listener_tag) {
  shard_ = &shard;
  if (listener_tag == cluster::kClusterDataListener) return links_->OnAccept(shard, id, peer);
  return router_->OnAccept(shard, id, peer, listener_tag);
}

void NodeShard::OnData(net::Shard& shard, net::ConnectionId id, std::string_view bytes) {
  shard_ = &shard;
  if (links_->Owns(id)) {
    links_->OnData(shard, id, bytes);
  } else {
    router_->OnData(shard, id, bytes);
  }
}

void NodeShard::OnClosed(net::Shard& shard, net::ConnectionId id, const absl::Status& reason) {
  shard_ = &shard;
  if (links_->Owns(id)) {
    links_->OnClosed(shard, id, reason);
  } else {
    router_->OnClosed(shard, id, reason);
  }
}

void NodeShard::OnMessage(net::Shard& shard, const net::CrossShardMessage& message) {
  shard_ = &shard;
  const std::optional<NodeRecord> record = DecodeNodeRecord(message);
  if (!record) {
    router_->OnMessage(shard, message);
    return;
  }
  if (const auto* from_peer = std::get_if<LaneFrameFromPeer>(&*record)) {
    if (absl::StatusOr<cluster::LaneFrame> lane = cluster::DecodeLaneFrame(from_peer->payload);
        lane.ok()) {
      OnLaneFrame(from_peer->from, *lane);
    }
    return;
  }
  // DataPlaneChanged.
  links_->OnConfigChanged(shard);
  config_ = config_publisher_->Current();
  UpdateLane();
  if (lane_) {  // a new leader gets what waited for one at once, not at the next tick
    lane_->SetView(shard.now_ms(), LaneView());
    lane_->Tick(shard.now_ms());
    Apply();
  }
}

void NodeShard::OnConnected(net::Shard& shard, net::ConnectionId id) {
  shard_ = &shard;
  if (links_->Owns(id)) links_->OnConnected(shard, id);
}

void NodeShard::OnTick(net::Shard& shard, uint64_t now_ms) {
  shard_ = &shard;
  router_->OnTick(shard, now_ms);
  links_->OnTick(shard, now_ms);
  if (!lane_) UpdateLane();  // a new engine's shards: the configuration published before
  if (lane_) {
    lane_->SetView(now_ms, LaneView());
    lane_->Tick(now_ms);
    Apply();
  }
  PublishStats();
}

void NodeShard::OnFlush(net::Shard& shard) {
  shard_ = &shard;
  if (!waiting_deliveries_.empty()) PostWaitingDeliveries();
  if (lane_ && lane_dirty_) Apply();
  links_->Flush(shard);
}

void NodeShard::OnStop(net::Shard& shard) {
  shard_ = &shard;
  router_->OnStop(shard);
  // The counts since the last tick; what the lane holds goes with this engine (its
  // senders' connections go too, so none can be told): the window of a stopping node,
  // said in the log rather than lost unseen.
  PublishStats();
  if (lane_ && (lane_->custody_count() > 0 || !waiting_deliveries_.empty())) {
    LogEvent(LogLevel::kWarning, "relay_custody_dropped",
             Concat("shard=", std::to_string(shard.index()),
                    " custody=", std::to_string(lane_->custody_count()),
                    " bytes=", std::to_string(lane_->custody_bytes()),
                    " deliveries_waiting=", std::to_string(waiting_deliveries_.size()),
                    " reason=", LogQuote("the shards stopped (serving restarted or ended)")));
  }
  stats_->custody_count.store(0, std::memory_order_relaxed);
  stats_->custody_bytes.store(0, std::memory_order_relaxed);
  stats_->deliveries_waiting.store(0, std::memory_order_relaxed);
}

// ---- The lane ----

void NodeShard::UpdateLane() {
  const Lane self{config_->self, static_cast<uint16_t>(shard_->index())};
  if (config_->self == raft::kNoNode || config_->incarnation == 0) return;
  if (lane_ && lane_->self() == self && lane_->incarnation() == config_->incarnation) return;
  if (lane_ && lane_->custody_count() > 0) {
    LogEvent(LogLevel::kWarning, "relay_lane_replaced",
             Concat("shard=", std::to_string(shard_->index()),
                    " custody=", std::to_string(lane_->custody_count())));
  }
  PublishStats();  // the old lane's last counts
  published_ = {};
  lane_ = std::make_unique<cluster::relay::Relay>(self, config_->incarnation, router_->domain(),
                                                  *routes_, lane_options_);
  lane_->SetView(shard_->now_ms(), LaneView());
}

cluster::relay::View NodeShard::LaneView() const {
  cluster::relay::View view;
  view.member = config_->member;
  view.leader = config_->leader;
  view.can_deliver = waiting_deliveries_.size() < kWaitingDeliveriesMax;
  for (const auto& [id, member] : config_->members) {
    view.members.insert(id);
    view.lanes[id] = member.lanes;
    if (links_->LinkedTo(id)) view.linked.insert(id);
  }
  return view;
}

void NodeShard::Forward(net::ConnectionId sender, uint64_t node, std::string_view bytes,
                        std::optional<std::string_view> to, std::string_view route_address) {
  if (!lane_) {  // not in a cluster (yet): nowhere to take it
    if (sender != net::kNoConnection) {
      router::PostRecord(
          *shard_, net::ShardOf(sender),
          router::Bounce{sender, xmpp::StanzaErrorCondition::kServiceUnavailable, bytes});
    }
    return;
  }
  if (lane_->domain() != router_->domain()) lane_->SetDomain(router_->domain());
  lane_->Forward(shard_->now_ms(), sender, node, bytes, to, route_address);
  lane_dirty_ = true;
}

void NodeShard::RouteBound(std::string_view address) {
  if (!lane_) return;
  lane_->RouteBound(shard_->now_ms(), address);
  lane_dirty_ = true;
}

void NodeShard::OnLinkFrame(raft::NodeId from, const cluster::FrameView& frame) {
  if (frame.type != cluster::FrameType::kLane) return;  // nothing else travels here yet
  absl::StatusOr<cluster::LaneFrame> lane = cluster::DecodeLaneFrame(frame.payload);
  if (!lane.ok() || lane->to_shard >= shard_->shard_count()) return;
  if (lane->to_shard != shard_->index()) {
    // Another shard's lane: through its queue (a full one drops it: the origin resends).
    const router::EncodedRecord record = EncodeNodeRecord(LaneFrameFromPeer{from, frame.payload});
    shard_->Post(lane->to_shard, record.kind(), record.target(), record.argument(),
                 record.payload());
    return;
  }
  OnLaneFrame(from, *lane);
}

void NodeShard::OnLaneFrame(raft::NodeId from, const cluster::LaneFrame& frame) {
  if (!lane_) return;
  lane_->OnFrame(shard_->now_ms(), Lane{from, frame.from_shard}, frame.type, frame.payload);
  lane_dirty_ = true;
}

void NodeShard::Apply() {
  lane_dirty_ = false;
  cluster::relay::Ready ready = lane_->TakeReady();
  const uint16_t index = static_cast<uint16_t>(shard_->index());
  for (const cluster::relay::Send& send : ready.sends) {
    links_->Send(*shard_, send.to, cluster::FrameType::kLane,
                 cluster::LaneFrameHead(index, send.shard, send.type), send.payload);
  }
  for (const cluster::relay::Bounce& bounce : ready.bounces) {
    const router::Bounce record{bounce.sender, bounce.condition, bounce.bytes};
    if (net::ShardOf(bounce.sender) == shard_->index()) {
      router_->OnRecord(*shard_, record);
    } else {
      router::PostRecord(*shard_, net::ShardOf(bounce.sender), record);
    }
  }
  for (const cluster::relay::LogLine& line : ready.logs) {
    LogEvent(line.warning ? LogLevel::kWarning : LogLevel::kInfo, line.event, line.fields);
  }
  for (const cluster::relay::Delivery& delivery : ready.deliveries) {
    const int owner = router::OwnerShard(delivery.address, shard_->shard_count());
    if (owner == shard_->index()) {
      router_->DeliverFromPeer(*shard_, delivery.address, delivery.bytes);
    } else if (!waiting_deliveries_.empty() ||
               !router::PostRecord(*shard_, owner,
                                   router::DeliverFromPeer{delivery.origin, delivery.bytes})) {
      // Answered "delivered" already: it waits here, in order, until that shard's queue
      // takes it (and the lane decides no more while too many wait: LaneView).
      waiting_deliveries_.push_back({owner, delivery.origin, delivery.bytes});
    }
  }
}

void NodeShard::PostWaitingDeliveries() {
  while (!waiting_deliveries_.empty()) {
    const WaitingDelivery& delivery = waiting_deliveries_.front();
    if (!router::PostRecord(*shard_, delivery.shard,
                            router::DeliverFromPeer{delivery.origin, delivery.bytes})) {
      return;
    }
    waiting_deliveries_.pop_front();
  }
}

void NodeShard::PublishStats() {
  if (!lane_) return;
  const cluster::relay::Stats& s = lane_->stats();
  cluster::relay::Stats& was = published_;
  // Counters: what grew since the last call, so they keep rising across a lane made
  // again and an engine started again (LaneStats outlives both).
  const auto add = [](std::atomic<uint64_t>& to, uint64_t now, uint64_t& published) {
    to.fetch_add(now - published, std::memory_order_relaxed);
    published = now;
  };
  add(stats_->relayed_out, s.relayed_out, was.relayed_out);
  add(stats_->relayed_in, s.relayed_in, was.relayed_in);
  add(stats_->failed, s.failed, was.failed);
  add(stats_->resent, s.resent, was.resent);
  add(stats_->duplicates_dropped, s.duplicates_dropped, was.duplicates_dropped);
  add(stats_->expired, s.expired, was.expired);
  add(stats_->aborted, s.aborted, was.aborted);
  add(stats_->unconfirmed, s.unconfirmed, was.unconfirmed);
  add(stats_->misrouted, s.misrouted, was.misrouted);
  const auto set = [](std::atomic<uint64_t>& to, uint64_t value) {
    to.store(value, std::memory_order_relaxed);
  };
  set(stats_->custody_count, lane_->custody_count());
  set(stats_->custody_bytes, lane_->custody_bytes());
  set(stats_->deliveries_waiting, waiting_deliveries_.size());
}

}  // namespace stanzad::server
