#include "tests/simulation/relay_simulator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stanzad::cluster::relay::sim {
namespace {

constexpr char kDomain[] = "example.com";
constexpr int64_t kNever = INT64_MAX / 4;

uint64_t Mix(uint64_t a, uint64_t b) {
  uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  return z ^ (z >> 27);
}

// The stanza number in id='s<number>', or -1.
int64_t StanzaNumber(std::string_view bytes) {
  const size_t at = bytes.find("id='s");
  if (at == std::string_view::npos) return -1;
  int64_t number = 0;
  size_t i = at + 5;
  if (i >= bytes.size() || bytes[i] < '0' || bytes[i] > '9') return -1;
  for (; i < bytes.size() && bytes[i] >= '0' && bytes[i] <= '9'; ++i) {
    number = number * 10 + (bytes[i] - '0');
  }
  return number;
}

std::string ReasonOf(const std::string& fields) {
  const size_t at = fields.find("reason=");
  return at == std::string::npos ? "" : fields.substr(at + 7);
}

const char* FrameName(FrameType type) {
  switch (type) {
    case FrameType::kRoutes:
      return "routes";
    case FrameType::kStanza:
      return "stanza";
    case FrameType::kAck:
      return "ack";
    case FrameType::kAckRelay:
      return "ack-relay";
    case FrameType::kAbort:
      return "abort";
    default:
      return "other";
  }
}

std::string AnswersText(const AnswerFrame& frame) {
  std::string out = absl::StrCat("inc=", frame.incarnation, " for-shard=", frame.origin_shard,
                                 " by=", LaneName(frame.decider), " [");
  for (const auto& [sequence, outcome] : frame.answers) {
    absl::StrAppend(&out, " ", sequence,
                    outcome == Outcome::kDelivered ? ":delivered" : ":aborted");
  }
  return out + " ]";
}

}  // namespace

void RelaySimStats::Add(const RelaySimStats& o) {
  events += o.events;
  stanzas += o.stanzas;
  delivered += o.delivered;
  bounced += o.bounced;
  refused += o.refused;
  frames_sent += o.frames_sent;
  frames_lost += o.frames_lost;
  crashes += o.crashes;
  mid_turn_crashes += o.mid_turn_crashes;
  link_breaks += o.link_breaks;
  one_way_losses += o.one_way_losses;
  isolations += o.isolations;
  delays += o.delays;
  leader_changes += o.leader_changes;
  leaderless += o.leaderless;
  bridge_moves += o.bridge_moves;
  lanes += o.lanes;
  route_digests += o.route_digests;
  route_set_requests += o.route_set_requests;
  window_duplicates += o.window_duplicates;
  window_delivered_and_bounced += o.window_delivered_and_bounced;
  window_lost += o.window_lost;
  custody_lost += o.custody_lost;
  unconfirmed += o.unconfirmed;
}

std::string RelaySimStats::ToString() const {
  return absl::StrCat(
      "events=", events, " stanzas=", stanzas, " delivered=", delivered, " bounced=", bounced,
      " refused=", refused, " frames_sent=", frames_sent, " frames_lost=", frames_lost,
      " crashes=", crashes, " mid_turn_crashes=", mid_turn_crashes, " link_breaks=", link_breaks,
      " one_way_losses=", one_way_losses, " isolations=", isolations, " delays=", delays,
      " leader_changes=", leader_changes, " leaderless=", leaderless,
      " bridge_moves=", bridge_moves, " lanes=", lanes, " route_digests=", route_digests,
      " route_set_requests=", route_set_requests, " window_duplicates=", window_duplicates,
      " window_delivered_and_bounced=", window_delivered_and_bounced, " window_lost=", window_lost,
      " custody_lost=", custody_lost, " unconfirmed=", unconfirmed);
}

RelaySimulator::RelaySimulator(const RelaySimOptions& options)
    : options_(options), rng_(Mix(options.seed, 0x7e1a7)) {
  relay_options_.hold_ms = options_.hold_ms;
  relay_options_.no_leader_hold_ms = options_.hold_ms;
  relay_options_.abort_wait_ms = options_.abort_wait_ms;
  relay_options_.resend_after_ms = options_.resend_after_ms;
  relay_options_.service_every_ms = options_.service_every_ms;
  relay_options_.direct = options_.direct;
  directory_options_.digest_interval_ms = options_.digest_interval_ms;
  if (options_.vary_per_seed) {
    relay_options_.direct = rng_.Chance(0.5);
    // Now and then a custody that holds a few stanzas only.
    if (rng_.Chance(0.2)) relay_options_.hold_bytes_max = rng_.Range(300, 1500);
    // Now and then route sets in frames of one or two routes, paced by a small queue.
    if (rng_.Chance(0.3)) {
      directory_options_.routes_frame_bytes_max = rng_.Range(1, 70);
      directory_options_.routes_queued_bytes_max = rng_.Range(1, 200);
    }
  }
}

RelaySimulator::~RelaySimulator() = default;

// ---- Events ----

void RelaySimulator::Schedule(int64_t at_ms, EventType type, NodeId node, NodeId peer,
                              int64_t arg) {
  Event event;
  event.type = type;
  event.node = node;
  event.peer = peer;
  event.arg = arg;
  queue_.emplace(std::make_pair(at_ms, next_event_++), std::move(event));
}

absl::Status RelaySimulator::Run() {
  const int count = static_cast<int>(rng_.Range(options_.nodes_min, options_.nodes_max));
  for (NodeId id = 1; id <= static_cast<NodeId>(count); ++id) {
    Node& node = nodes_[id];
    node.id = id;
    node.directory = std::make_unique<Directory>(directory_options_);
    MakeLanes(node);
  }
  for (const auto& [a, node_a] : nodes_) {
    for (const auto& [b, node_b] : nodes_) {
      if (a == b) continue;
      directions_[{a, b}].latency_ms = rng_.Range(options_.latency_min_ms, options_.latency_max_ms);
      if (a < b) links_[{a, b}];
    }
  }
  leader_ = static_cast<NodeId>(rng_.Range(1, count));
  for (auto& [id, node] : nodes_) node.leader_view = leader_;
  Trace(absl::StrCat("start: ", count, " nodes, ", relay_options_.direct ? "direct" : "leader",
                     " mode, hold_bytes_max=", relay_options_.hold_bytes_max, ", leader ",
                     leader_));
  for (int i = 0; i < options_.routes; ++i) {
    Route route;
    // The last route is a client's full JID: single holder like a bridge.
    route.address = i + 1 == options_.routes ? absl::StrCat("u", i, "@", kDomain, "/phone")
                                             : absl::StrCat("cb", i, ".", kDomain);
    route.sender = 100 + i;
    routes_.push_back(std::move(route));
  }
  for (Route& route : routes_) {
    if (absl::Status s = Bind(route, static_cast<NodeId>(rng_.Range(1, count))); !s.ok()) return s;
  }
  for (auto& [key, link] : links_) {
    if (absl::Status s = UpLink(key.first, key.second); !s.ok()) return s;
  }
  for (const auto& [id, node] : nodes_) {
    Schedule(rng_.Range(0, options_.tick_ms - 1), EventType::kTick, id);
  }
  workload_ = true;
  chaos_ = options_.faults;
  rounds_left_ = options_.rounds;
  Schedule(rng_.Range(1, options_.send_interval_ms), EventType::kSend, 0);
  if (chaos_) Schedule(options_.fault_interval_ms, EventType::kFault, 0);
  Schedule(options_.chaos_ms, EventType::kQuiet, 0);

  while (!ended_ && !queue_.empty()) {
    auto handle = queue_.extract(queue_.begin());
    now_ms_ = handle.key().first;
    Event& event = handle.mapped();
    ++stats_.events;
    fingerprint_ = Mix(fingerprint_, Mix(static_cast<uint64_t>(now_ms_),
                                         (static_cast<uint64_t>(event.type) << 48) ^
                                             (event.node << 24) ^ event.peer));
    if (absl::Status s = Dispatch(event); !s.ok()) return s;
  }
  return violation_;
}

absl::Status RelaySimulator::Dispatch(Event& event) {
  switch (event.type) {
    case EventType::kFrame: {
      Node& to = nodes_.at(event.node);
      Direction& direction = DirectionOf(event.peer, event.node);
      direction.in_flight_bytes -= event.payload.size();
      if (!to.alive || static_cast<uint64_t>(event.arg) < direction.valid_from_epoch) {
        ++stats_.frames_lost;
        if (tracing()) {
          Trace(absl::StrCat(now_ms_, " lost at arrival ", event.peer, "->", event.node, " ",
                             Describe(event.frame_type, event.payload)));
        }
        return absl::OkStatus();
      }
      if (tracing()) {
        Trace(absl::StrCat(now_ms_, " recv ", event.peer, "->", event.node, " ",
                           Describe(event.frame_type, event.payload)));
      }
      if (event.frame_type != FrameType::kRoutes && event.shard >= to.lanes.size()) {
        ++stats_.frames_lost;  // for a lane it no longer has (it restarted with fewer)
        return absl::OkStatus();
      }
      if (event.frame_type == FrameType::kRoutes) {
        absl::StatusOr<RoutesFrame> routes = DecodeRoutes(event.payload);
        if (routes.ok() && routes->part == RoutesPart::kDigest) {
          ++route_digests_heard_[{event.node, event.peer}];
        }
      }
      return Turn(to, [&](Node& at) {
        if (event.frame_type == FrameType::kRoutes) {
          at.directory->OnRoutes(event.peer, event.payload);
        } else {
          at.lanes[event.shard]->OnFrame(now_ms_, Lane{event.peer, event.peer_shard},
                                         event.frame_type, event.payload);
        }
      });
    }
    case EventType::kTick: {
      Schedule(now_ms_ + options_.tick_ms, EventType::kTick, event.node);
      return Turn(nodes_.at(event.node), [](Node&) {});
    }
    case EventType::kSend:
      if (!workload_) return absl::OkStatus();
      Schedule(now_ms_ + rng_.Range(1, 2 * options_.send_interval_ms), EventType::kSend, 0);
      return OnSend();
    case EventType::kFault:
      if (!chaos_) return absl::OkStatus();
      Schedule(now_ms_ + rng_.Range(1, 2 * options_.fault_interval_ms), EventType::kFault, 0);
      return OnFault();
    case EventType::kHeal:
      return HealFault(event.arg);
    case EventType::kRestart: {
      Node& node = nodes_.at(event.node);
      if (node.alive) return absl::OkStatus();
      return Restart(node);
    }
    case EventType::kLeaderView: {
      Node& node = nodes_.at(event.node);
      node.leader_view = leader_;
      if (tracing()) Trace(absl::StrCat(now_ms_, " node ", node.id, " learns leader ", leader_));
      return Turn(node, [](Node&) {});
    }
    case EventType::kBind: {
      Route& route = routes_.at(event.peer);
      if (route.generation != static_cast<uint64_t>(event.arg) || route.at != raft::kNoNode) {
        return absl::OkStatus();
      }
      NodeId target = event.node;
      if (!nodes_.at(target).alive) {
        std::vector<NodeId> alive;
        for (const auto& [id, node] : nodes_) {
          if (node.alive) alive.push_back(id);
        }
        if (alive.empty()) {
          Schedule(now_ms_ + 100, EventType::kBind, target, event.peer, event.arg);
          return absl::OkStatus();
        }
        target = alive[rng_.Range(0, static_cast<int64_t>(alive.size()) - 1)];
      }
      return Bind(route, target);
    }
    case EventType::kCanDeliver: {
      Node& node = nodes_.at(event.node);
      node.can_deliver = true;
      return Turn(node, [](Node&) {});
    }
    case EventType::kQuiet: {
      chaos_ = false;
      for (const auto& [record, fault] : faults_) {
        if (fault.kind == Fault::Kind::kIsolation) {  // it lasts its time: that is its point
          Schedule(now_ms_ + 100, EventType::kQuiet, 0);
          return absl::OkStatus();
        }
      }
      if (absl::Status s = HealAll(); !s.ok()) return s;
      // The quiet time counts from when the last frame sent during the chaos has landed:
      // a delay fault may hold frames (a route change among them) past quiet_ms, and
      // routes are due to converge once what the faults held has arrived, not before.
      int64_t landed_ms = now_ms_;
      for (const auto& [key, direction] : directions_) {
        landed_ms = std::max(landed_ms, direction.last_arrival_ms);
      }
      Schedule(landed_ms + options_.quiet_ms, EventType::kCheckRoutes, 0);
      return absl::OkStatus();
    }
    case EventType::kCheckRoutes: {
      if (absl::Status s = CheckRoutes(); !s.ok()) return s;
      if (--rounds_left_ > 0) {
        chaos_ = options_.faults;
        if (chaos_) Schedule(now_ms_ + options_.fault_interval_ms, EventType::kFault, 0);
        Schedule(now_ms_ + options_.chaos_ms, EventType::kQuiet, 0);
      } else {
        workload_ = false;
        const int64_t settle_ms = static_cast<int64_t>(options_.hold_ms + options_.abort_wait_ms +
                                                       4 * options_.service_every_ms + 1000);
        Schedule(now_ms_ + settle_ms, EventType::kEnd, 0);
      }
      return absl::OkStatus();
    }
    case EventType::kEnd:
      ended_ = true;
      return CheckEnd();
  }
  return absl::OkStatus();
}

absl::Status RelaySimulator::OnSend() {
  std::vector<size_t> senders;
  for (size_t i = 0; i < routes_.size(); ++i) {
    if (routes_[i].at != raft::kNoNode) senders.push_back(i);
  }
  if (senders.empty()) return absl::OkStatus();
  const size_t from = senders[rng_.Range(0, static_cast<int64_t>(senders.size()) - 1)];
  size_t to = rng_.Range(0, static_cast<int64_t>(routes_.size()) - 2);
  if (to >= from) ++to;
  Node& origin = nodes_.at(routes_[from].at);
  // The shard routes it by its table, as the relay's directory told it.
  const std::optional<NodeId> node = origin.directory->NodeOf(routes_[to].address);
  if (!node || *node == 0) return absl::OkStatus();  // nowhere, or here: not the relay's
  const size_t number = tracked_.size();
  Tracked tracked;
  tracked.origin = origin.id;
  // The shard of the sender's connection: any.
  tracked.origin_shard =
      static_cast<uint16_t>(rng_.Range(0, static_cast<int64_t>(origin.lanes.size()) - 1));
  tracked.incarnation = origin.incarnation;
  tracked.accepted_ms = now_ms_;
  tracked.route = to;
  tracked.foreign = rng_.Chance(0.03);
  tracked_.push_back(tracked);
  ++stats_.stanzas;
  const std::string from_jid =
      tracked.foreign ? std::string("mallory.example.org") : routes_[from].address;
  const std::string bytes =
      absl::StrCat("<message from='", from_jid, "' to='", routes_[to].address, "' id='s", number,
                   "'><body>", std::string(rng_.Range(0, 120), 'x'), "</body></message>");
  if (tracing()) {
    Trace(absl::StrCat(now_ms_, " forward s", number, " at ",
                       LaneName({origin.id, tracked.origin_shard}), " (inc ", origin.incarnation,
                       ") to ", routes_[to].address, " on ", *node,
                       tracked.foreign ? " (foreign from)" : ""));
  }
  const SenderId sender = routes_[from].sender;
  const uint16_t shard = tracked.origin_shard;
  return Turn(origin, [&](Node& at) { at.lanes[shard]->Forward(now_ms_, sender, *node, bytes); });
}

absl::Status RelaySimulator::OnFault() {
  std::vector<NodeId> alive;
  for (const auto& [id, node] : nodes_) {
    if (node.alive) alive.push_back(id);
  }
  if (alive.empty()) return absl::OkStatus();
  auto pick = [&](const std::vector<NodeId>& from) {
    return from[rng_.Range(0, static_cast<int64_t>(from.size()) - 1)];
  };
  const int64_t dice = rng_.Range(0, 99);
  if (dice < 12) {  // a crash, now or in the middle of a turn
    if (alive.size() < 2) return absl::OkStatus();
    Node& node = nodes_.at(pick(alive));
    if (rng_.Chance(0.3)) {
      node.crash_mid_turn = true;
      return absl::OkStatus();
    }
    if (absl::Status s = Crash(node); !s.ok()) return s;
    Schedule(now_ms_ + rng_.Range(100, 2000), EventType::kRestart, node.id);
    return absl::OkStatus();
  }
  if (dice < 55) {  // something between two nodes, or one node and the rest
    const NodeId a = pick(alive);
    NodeId b = a;
    while (b == a) b = static_cast<NodeId>(rng_.Range(1, static_cast<int64_t>(nodes_.size())));
    const int64_t record = next_fault_record_++;
    Fault fault;
    fault.a = a;
    fault.b = b;
    int64_t lasts_ms = 0;
    if (dice < 30) {
      fault.kind = Fault::Kind::kLinkBreak;
      lasts_ms = rng_.Range(20, 1500);
      ++stats_.link_breaks;
      Link& link = LinkOf(a, b);
      ++link.breaks;
      if (tracing()) Trace(absl::StrCat(now_ms_, " fault: link ", a, "-", b, " breaks"));
      if (absl::Status s = BreakLink(a, b, false, false); !s.ok()) return s;
    } else if (dice < 42) {
      fault.kind = Fault::Kind::kOneWayLoss;
      lasts_ms = rng_.Range(100, 2500);
      ++stats_.one_way_losses;
      ++DirectionOf(a, b).lossy;
      if (tracing()) Trace(absl::StrCat(now_ms_, " fault: frames ", a, "->", b, " dropped"));
    } else if (dice < 47) {
      fault.kind = Fault::Kind::kIsolation;
      // Longer than every hold: the origins give up on what this node may hold.
      lasts_ms =
          static_cast<int64_t>(options_.hold_ms + options_.abort_wait_ms) + rng_.Range(200, 1200);
      ++stats_.isolations;
      for (const auto& [other, node] : nodes_) {
        if (other == a) continue;
        ++DirectionOf(a, other).lossy;
        ++DirectionOf(other, a).lossy;
      }
      if (tracing()) Trace(absl::StrCat(now_ms_, " fault: node ", a, " silenced"));
    } else {
      fault.kind = Fault::Kind::kDelay;
      lasts_ms = rng_.Range(200, 2000);
      fault.extra_ms = rng_.Range(20, options_.delay_max_ms);
      ++stats_.delays;
      DirectionOf(a, b).extra_ms += fault.extra_ms;
      if (tracing()) {
        Trace(absl::StrCat(now_ms_, " fault: ", a, "->", b, " delayed ", fault.extra_ms, " ms"));
      }
    }
    if (fault.kind != Fault::Kind::kDelay) {  // a delay is no cut: no window
      MarkFault(a, true);
      MarkFault(fault.kind == Fault::Kind::kIsolation ? a : b, true);
    }
    faults_[record] = fault;
    Schedule(now_ms_ + lasts_ms, EventType::kHeal, 0, 0, record);
    return absl::OkStatus();
  }
  if (dice < 70) {  // a new leader, or none for a while
    const NodeId leader = rng_.Chance(0.2) ? raft::kNoNode : pick(alive);
    SetLeader(leader);
    return absl::OkStatus();
  }
  if (dice < 95) {  // a bridge moves: unbound here, bound there a little later
    std::vector<size_t> bound;
    for (size_t i = 0; i < routes_.size(); ++i) {
      if (routes_[i].at != raft::kNoNode) bound.push_back(i);
    }
    if (bound.empty()) return absl::OkStatus();
    Route& route = routes_[bound[rng_.Range(0, static_cast<int64_t>(bound.size()) - 1)]];
    ++stats_.bridge_moves;
    if (absl::Status s = Unbind(route); !s.ok()) return s;
    Schedule(now_ms_ + rng_.Range(0, 400), EventType::kBind, pick(alive),
             static_cast<NodeId>(&route - routes_.data()), static_cast<int64_t>(route.generation));
    return absl::OkStatus();
  }
  // The shards stop taking deliveries for a while.
  Node& node = nodes_.at(pick(alive));
  node.can_deliver = false;
  Schedule(now_ms_ + rng_.Range(50, 400), EventType::kCanDeliver, node.id);
  return Turn(node, [](Node&) {});
}

absl::Status RelaySimulator::HealFault(int64_t record) {
  auto it = faults_.find(record);
  if (it == faults_.end()) return absl::OkStatus();
  const Fault fault = it->second;
  faults_.erase(it);
  if (fault.kind != Fault::Kind::kDelay) {
    MarkFault(fault.a, false);
    MarkFault(fault.kind == Fault::Kind::kIsolation ? fault.a : fault.b, false);
  }
  // A link that dropped frames without breaking breaks now (a keepalive notices): both sides
  // then restate their routes.
  auto relink = [&](NodeId a, NodeId b) -> absl::Status {
    if (options_.heal_loss_without_relink || !LinkOf(a, b).up) return absl::OkStatus();
    if (absl::Status s = BreakLink(a, b, false, false); !s.ok()) return s;
    return UpLink(a, b);
  };
  switch (fault.kind) {
    case Fault::Kind::kLinkBreak: {
      if (tracing()) Trace(absl::StrCat(now_ms_, " heal: link ", fault.a, "-", fault.b));
      Link& link = LinkOf(fault.a, fault.b);
      --link.breaks;
      return UpLink(fault.a, fault.b);
    }
    case Fault::Kind::kOneWayLoss:
      if (tracing()) Trace(absl::StrCat(now_ms_, " heal: frames ", fault.a, "->", fault.b));
      --DirectionOf(fault.a, fault.b).lossy;
      return relink(fault.a, fault.b);
    case Fault::Kind::kIsolation:
      if (tracing()) Trace(absl::StrCat(now_ms_, " heal: node ", fault.a, " heard again"));
      for (const auto& [other, node] : nodes_) {
        if (other == fault.a) continue;
        --DirectionOf(fault.a, other).lossy;
        --DirectionOf(other, fault.a).lossy;
        if (absl::Status s = relink(fault.a, other); !s.ok()) return s;
      }
      return absl::OkStatus();
    case Fault::Kind::kDelay:
      DirectionOf(fault.a, fault.b).extra_ms -= fault.extra_ms;
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status RelaySimulator::HealAll() {
  if (tracing()) Trace(absl::StrCat(now_ms_, " heal everything"));
  while (!faults_.empty()) {
    if (absl::Status s = HealFault(faults_.begin()->first); !s.ok()) return s;
  }
  for (auto& [id, node] : nodes_) {
    node.crash_mid_turn = false;
    if (!node.alive) {
      if (absl::Status s = Restart(node); !s.ok()) return s;
    }
  }
  for (auto& [key, link] : links_) {
    if (absl::Status s = UpLink(key.first, key.second); !s.ok()) return s;
  }
  for (Route& route : routes_) {
    if (route.at != raft::kNoNode) continue;
    const NodeId target = static_cast<NodeId>(rng_.Range(1, static_cast<int64_t>(nodes_.size())));
    if (absl::Status s = Bind(route, target); !s.ok()) return s;
  }
  if (leader_ == raft::kNoNode || !nodes_.at(leader_).alive || rng_.Chance(0.3)) {
    SetLeader(static_cast<NodeId>(rng_.Range(1, static_cast<int64_t>(nodes_.size()))));
  }
  for (auto& [id, node] : nodes_) {
    if (node.can_deliver) continue;
    node.can_deliver = true;
    if (absl::Status s = Turn(node, [](Node&) {}); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// ---- Node plumbing ----

RelaySimulator::Link& RelaySimulator::LinkOf(NodeId a, NodeId b) {
  return links_.at({std::min(a, b), std::max(a, b)});
}

RelaySimulator::Direction& RelaySimulator::DirectionOf(NodeId from, NodeId to) {
  return directions_.at({from, to});
}

void RelaySimulator::MarkFault(NodeId id, bool active) {
  Node& node = nodes_.at(id);
  node.fault_end_ms = now_ms_;
  node.active_faults += active ? 1 : -1;
  CHECK(node.active_faults >= 0);
}

View RelaySimulator::ViewOf(const Node& node) const {
  View view;
  view.member = true;
  view.leader = node.leader_view;
  view.can_deliver = node.can_deliver;
  for (const auto& [id, other] : nodes_) {
    if (id == node.id) continue;
    view.members.insert(id);
    if (links_.at({std::min(id, node.id), std::max(id, node.id)}).up) view.linked.insert(id);
    // As the membership says: a dead node's lanes as it last ran.
    view.lanes[id] = other.lane_count;
    const size_t queued = directions_.at({node.id, id}).in_flight_bytes;
    if (queued > 0) view.queued_bytes[id] = queued;
  }
  return view;
}

template <typename Input>
absl::Status RelaySimulator::Turn(Node& node, Input input) {
  if (!violation_.ok()) return violation_;
  if (!node.alive) return absl::OkStatus();
  const View view = ViewOf(node);
  node.directory->SetView(view);
  for (auto& lane : node.lanes) lane->SetView(now_ms_, view);
  input(node);
  node.directory->Tick(static_cast<uint64_t>(now_ms_));
  // As the daemon drives them: a route bound sends what waited for it, in every lane; the
  // route frames leave before the lanes'.
  Ready routes = node.directory->TakeReady();
  for (const RouteChange& change : routes.route_changes) {
    if (change.op != RouteChange::Op::kBind) continue;
    for (auto& lane : node.lanes) lane->RouteBound(now_ms_, change.address);
  }
  std::vector<Ready> lanes;
  for (auto& lane : node.lanes) {
    lane->Tick(now_ms_);
    lanes.push_back(lane->TakeReady());
  }
  return Apply(node, std::move(routes), std::move(lanes));
}

absl::Status RelaySimulator::Apply(Node& node, Ready routes, std::vector<Ready> lanes) {
  // The frames leave first; then the shards get the deliveries (relay.h's order).
  for (const Send& send : routes.sends) Transmit(node, 0, send);
  bool deliveries = false;
  for (size_t shard = 0; shard < lanes.size(); ++shard) {
    for (const Send& send : lanes[shard].sends) {
      Transmit(node, static_cast<uint16_t>(shard), send);
    }
    deliveries |= !lanes[shard].deliveries.empty();
  }
  if (node.crash_mid_turn && deliveries) {
    for (const Ready& ready : lanes) {
      for (const Delivery& delivery : ready.deliveries) {
        const int64_t number = StanzaNumber(delivery.bytes);
        if (number >= 0 && static_cast<size_t>(number) < tracked_.size()) {
          tracked_[number].lost_in_window = true;
        }
      }
      for (const Bounce& bounce : ready.bounces) {
        const int64_t number = StanzaNumber(bounce.bytes);
        if (number >= 0 && static_cast<size_t>(number) < tracked_.size()) {
          tracked_[number].lost_in_window = true;
        }
      }
    }
    ++stats_.mid_turn_crashes;
    if (tracing()) Trace(absl::StrCat(now_ms_, " node ", node.id, " dies before its deliveries"));
    if (absl::Status s = Crash(node); !s.ok()) return s;
    Schedule(now_ms_ + rng_.Range(100, 2000), EventType::kRestart, node.id);
    return absl::OkStatus();
  }
  for (size_t shard = 0; shard < lanes.size(); ++shard) {
    const Ready& ready = lanes[shard];
    // Each relay_expired line is one BounceEntry; each of those with a sender (all of this
    // workload's) is one service-unavailable bounce, in the same order.
    std::vector<std::string> reasons;
    for (const LogLine& line : ready.logs) {
      if (line.event == "relay_expired") reasons.push_back(ReasonOf(line.fields));
      if (tracing()) {
        Trace(absl::StrCat(now_ms_, " lane ", LaneName({node.id, static_cast<uint16_t>(shard)}),
                           " log ", line.event, " ", line.fields));
      }
    }
    size_t next_reason = 0;
    for (const Delivery& delivery : ready.deliveries) {
      if (absl::Status s = OnDelivered(node, delivery); !s.ok()) return s;
    }
    for (const Bounce& bounce : ready.bounces) {
      std::string reason = "custody_full";
      if (bounce.condition == xmpp::StanzaErrorCondition::kServiceUnavailable) {
        if (next_reason >= reasons.size()) {
          return Violation("oracle", "a bounce without its relay_expired line");
        }
        reason = reasons[next_reason++];
      } else if (bounce.condition != xmpp::StanzaErrorCondition::kResourceConstraint) {
        return Violation("bounce condition", "neither service-unavailable nor resource-constraint");
      }
      if (absl::Status s = OnBounced(node, static_cast<uint16_t>(shard), bounce, reason); !s.ok()) {
        return s;
      }
    }
  }
  for (const RouteChange& change : routes.route_changes) {
    switch (change.op) {
      case RouteChange::Op::kBind:
        node.shard_routes[change.address] = change.node;
        break;
      case RouteChange::Op::kUnbind:
        if (auto it = node.shard_routes.find(change.address);
            it != node.shard_routes.end() && it->second == change.node) {
          node.shard_routes.erase(it);
        } else {
          return Violation("route changes",
                           absl::StrCat("node ", node.id, " unbinds ", change.address, " from ",
                                        change.node, " which the shards do not have there"));
        }
        break;
      case RouteChange::Op::kForgetNode:
        for (auto it = node.shard_routes.begin(); it != node.shard_routes.end();) {
          it = it->second == change.node ? node.shard_routes.erase(it) : std::next(it);
        }
        break;
    }
  }
  uint64_t unconfirmed = 0;
  for (const auto& lane : node.lanes) {
    lane->CheckInvariants();
    unconfirmed += lane->stats().unconfirmed;
    if (lane->custody_bytes() > relay_options_.hold_bytes_max) {
      return Violation("custody bytes", absl::StrCat("lane ", LaneName(lane->self()), " holds ",
                                                     lane->custody_bytes(), " bytes"));
    }
  }
  node.directory->CheckInvariants();
  stats_.unconfirmed += unconfirmed - node.unconfirmed_seen;
  node.unconfirmed_seen = unconfirmed;
  return absl::OkStatus();
}

void RelaySimulator::Transmit(Node& from, uint16_t from_shard, const Send& send) {
  ++stats_.frames_sent;
  const NodeId to = send.to;
  const FrameType type = send.type;
  std::string payload = send.payload;
  const Lane from_lane{from.id, from_shard};
  if (type == FrameType::kStanza) {
    // Resends are paced (resend_after_ms) while a stanza waits out its hold; besides them a
    // stanza goes again when its route or the leader changes. Far more is a storm.
    absl::StatusOr<StanzaFrame> frame = DecodeStanza(payload);
    if (frame.ok() && frame->origin == from_lane) {
      if (frame->floor > frame->sequence) {
        (void)Violation(
            "floor above the stanza",
            absl::StrCat("lane ", LaneName(from_lane), " sent seq ", frame->sequence,
                         " with floor ", frame->floor, " to ", LaneName(frame->destination)));
      }
      CheckFloorRises(from_lane, frame->incarnation, frame->destination, frame->floor);
      const uint64_t sends = ++stanza_sends_[{frame->origin, frame->incarnation, frame->sequence}];
      const uint64_t sends_max = 3 * options_.hold_ms / options_.resend_after_ms + 10;
      if (sends > sends_max) {
        (void)Violation("resend storm", absl::StrCat("lane ", LaneName(from_lane), " sent s",
                                                     StanzaNumber(frame->stanza), " (seq ",
                                                     frame->sequence, ") ", sends, " times"));
      }
    }
  }
  if (type == FrameType::kRoutes) {
    absl::StatusOr<RoutesFrame> routes = DecodeRoutes(payload);
    if (routes.ok() && routes->part == RoutesPart::kDigest) ++stats_.route_digests;
    if (routes.ok() && routes->part == RoutesPart::kSetRequest) {
      ++stats_.route_set_requests;
      // Asked after two mismatched digests in a row, then counted again from zero.
      const uint64_t requests = ++route_set_requests_[{from.id, to}];
      const uint64_t heard = route_digests_heard_[{from.id, to}];
      if (2 * requests > heard) {
        (void)Violation("route set request storm",
                        absl::StrCat("node ", from.id, " asked ", to, " for its set ", requests,
                                     " times, having heard ", heard, " digests from it"));
      }
    }
  }
  if (type == FrameType::kAbort) {
    absl::StatusOr<AbortFrame> frame = DecodeAbort(payload);
    if (frame.ok() && frame->origin == from_lane) {
      CheckFloorRises(from_lane, frame->incarnation, frame->destination, frame->floor);
    }
  }
  const Link& link = LinkOf(from.id, to);
  Direction& direction = DirectionOf(from.id, to);
  if (!link.up || direction.lossy > 0) {
    ++stats_.frames_lost;
    if (tracing()) {
      Trace(absl::StrCat(now_ms_, " drop ", from.id, "->", to, link.up ? " (lossy) " : " (down) ",
                         Describe(type, payload)));
    }
    return;
  }
  const int64_t arrival =
      std::max(now_ms_ + direction.latency_ms + direction.extra_ms, direction.last_arrival_ms);
  direction.last_arrival_ms = arrival;
  direction.in_flight_bytes += payload.size();
  if (tracing()) {
    Trace(absl::StrCat(now_ms_, " send ", from.id, "->", to, " ", Describe(type, payload),
                       " arrives ", arrival));
  }
  Event event;
  event.type = EventType::kFrame;
  event.node = to;
  event.peer = from.id;
  event.shard = send.shard;
  event.peer_shard = from_shard;
  event.arg = static_cast<int64_t>(link.epoch);
  event.frame_type = type;
  event.payload = std::move(payload);
  queue_.emplace(std::make_pair(arrival, next_event_++), std::move(event));
}

void RelaySimulator::CheckFloorRises(Lane origin, uint64_t incarnation, Lane destination,
                                     uint64_t floor) {
  uint64_t& highest = floors_sent_[{origin, incarnation, destination}];
  if (floor < highest) {
    (void)Violation("a floor went down",
                    absl::StrCat("lane ", LaneName(origin), " (inc ", incarnation, ") sent ",
                                 LaneName(destination), " floor ", floor, " after ", highest));
  }
  highest = std::max(highest, floor);
}

absl::Status RelaySimulator::Crash(Node& node) {
  ++stats_.crashes;
  if (tracing()) Trace(absl::StrCat(now_ms_, " node ", node.id, " crashes"));
  node.crash_mid_turn = false;
  // What it had sent may still arrive (the kernel flushes a dead process's socket), or not.
  const bool flush = rng_.Chance(0.5);
  for (auto& [id, other] : nodes_) {
    if (id == node.id) continue;
    if (absl::Status s = BreakLink(node.id, id, flush, false); !s.ok()) return s;
  }
  node.alive = false;
  node.crash_times_ms.push_back(now_ms_);
  MarkFault(node.id, true);
  for (Tracked& tracked : tracked_) {
    if (tracked.origin == node.id && tracked.incarnation == node.incarnation &&
        tracked.deliveries.empty() && tracked.bounces == 0) {
      tracked.origin_crashed = true;
    }
  }
  // Its bridges reconnect somewhere a little later.
  for (Route& route : routes_) {
    if (route.at != node.id) continue;
    route.at = raft::kNoNode;
    ++route.generation;
    Schedule(now_ms_ + rng_.Range(50, 1500), EventType::kBind,
             static_cast<NodeId>(rng_.Range(1, static_cast<int64_t>(nodes_.size()))),
             static_cast<NodeId>(&route - routes_.data()), static_cast<int64_t>(route.generation));
  }
  node.lanes.clear();
  node.directory.reset();
  node.shard_routes.clear();
  node.unconfirmed_seen = 0;
  return absl::OkStatus();
}

absl::Status RelaySimulator::Restart(Node& node) {
  ++node.incarnation;
  if (tracing())
    Trace(absl::StrCat(now_ms_, " node ", node.id, " restarts, inc ", node.incarnation));
  node.directory = std::make_unique<Directory>(directory_options_);
  MakeLanes(node);
  node.alive = true;
  MarkFault(node.id, false);
  node.leader_view = leader_;
  if (rng_.Chance(0.5)) {  // its engine starts a little later
    node.can_deliver = false;
    Schedule(now_ms_ + rng_.Range(10, 300), EventType::kCanDeliver, node.id);
  } else {
    node.can_deliver = true;
  }
  if (absl::Status s = Turn(node, [](Node&) {}); !s.ok()) return s;
  for (auto& [id, other] : nodes_) {
    if (id == node.id) continue;
    if (absl::Status s = UpLink(node.id, id); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// A new life's lanes: 1 to lanes_max of them, all with the node's incarnation.
void RelaySimulator::MakeLanes(Node& node) {
  const uint32_t count =
      static_cast<uint32_t>(rng_.Range(1, std::max<uint32_t>(options_.lanes_max, 1)));
  several_lanes_ |= count > 1;
  node.lane_count = count;
  stats_.lanes += count;
  node.lanes.clear();
  for (uint32_t shard = 0; shard < count; ++shard) {
    node.lanes.push_back(std::make_unique<Relay>(Lane{node.id, static_cast<uint16_t>(shard)},
                                                 node.incarnation, kDomain, *node.directory,
                                                 relay_options_));
  }
}

absl::Status RelaySimulator::BreakLink(NodeId a, NodeId b, bool flush_from_a, bool flush_from_b) {
  Link& link = LinkOf(a, b);
  if (!link.up) return absl::OkStatus();
  link.up = false;
  ++link.epoch;
  if (!flush_from_a) DirectionOf(a, b).valid_from_epoch = link.epoch;
  if (!flush_from_b) DirectionOf(b, a).valid_from_epoch = link.epoch;
  if (absl::Status s = Turn(nodes_.at(a), [](Node&) {}); !s.ok()) return s;
  return Turn(nodes_.at(b), [](Node&) {});
}

absl::Status RelaySimulator::UpLink(NodeId a, NodeId b) {
  Link& link = LinkOf(a, b);
  if (link.up || link.breaks > 0 || !nodes_.at(a).alive || !nodes_.at(b).alive) {
    return absl::OkStatus();
  }
  link.up = true;
  if (tracing()) Trace(absl::StrCat(now_ms_, " link ", a, "-", b, " up"));
  if (absl::Status s = Turn(nodes_.at(a), [&](Node& at) { at.directory->LinkUp(b); }); !s.ok()) {
    return s;
  }
  return Turn(nodes_.at(b), [&](Node& at) { at.directory->LinkUp(a); });
}

absl::Status RelaySimulator::Unbind(Route& route) {
  Node& node = nodes_.at(route.at);
  if (tracing()) Trace(absl::StrCat(now_ms_, " ", route.address, " leaves node ", node.id));
  route.at = raft::kNoNode;
  ++route.generation;
  return Turn(node, [&](Node& at) { at.directory->LocalRoute(false, route.address); });
}

absl::Status RelaySimulator::Bind(Route& route, NodeId id) {
  Node& node = nodes_.at(id);
  if (!node.alive) return absl::OkStatus();
  if (tracing()) Trace(absl::StrCat(now_ms_, " ", route.address, " binds on node ", id));
  route.at = id;
  ++route.generation;
  return Turn(node, [&](Node& at) {
    at.directory->LocalRoute(true, route.address);
    for (auto& lane : at.lanes) lane->RouteBound(now_ms_, route.address);
  });
}

void RelaySimulator::SetLeader(NodeId leader) {
  if (leader == leader_) return;
  leader_ = leader;
  if (leader == raft::kNoNode) {
    ++stats_.leaderless;
  } else {
    ++stats_.leader_changes;
  }
  if (tracing()) Trace(absl::StrCat(now_ms_, " leader is now ", leader));
  for (const auto& [id, node] : nodes_) {
    Schedule(now_ms_ + rng_.Range(0, 150), EventType::kLeaderView, id);
  }
}

// ---- The oracle ----

bool RelaySimulator::CrashedSince(NodeId id, int64_t since_ms) const {
  const std::vector<int64_t>& crashes = nodes_.at(id).crash_times_ms;
  return !crashes.empty() && crashes.back() >= since_ms;
}

bool RelaySimulator::FaultSince(NodeId id, int64_t since_ms) const {
  const Node& node = nodes_.at(id);
  return node.active_faults > 0 || node.fault_end_ms >= since_ms;
}

absl::Status RelaySimulator::OnDelivered(Node& node, const Delivery& delivery) {
  const int64_t number = StanzaNumber(delivery.bytes);
  if (number < 0 || static_cast<size_t>(number) >= tracked_.size()) {
    return Violation("unknown delivery", delivery.bytes);
  }
  Tracked& tracked = tracked_[number];
  const Route& route = routes_[tracked.route];
  const std::string what =
      absl::StrCat("s", number, " (from node ", tracked.origin, " inc ", tracked.incarnation,
                   ", accepted at ", tracked.accepted_ms, ") on node ", node.id);
  if (tracing()) Trace(absl::StrCat(now_ms_, " DELIVERED ", what));
  if (delivery.address != route.address) {
    return Violation("delivery to the wrong route",
                     absl::StrCat(what, " for ", delivery.address, ", sent to ", route.address));
  }
  if (route.at != node.id) {
    return Violation("lost delivery",
                     absl::StrCat(what, ": ", route.address, " is on node ", route.at, " now"));
  }
  // Checked when it comes from another node; its own node's session vouched for it.
  if (tracked.foreign && node.id != tracked.origin) {
    return Violation("foreign stanza delivered", what);
  }
  if (!tracked.deliveries.empty()) {
    bool window = false;
    for (const auto& [at, when] : tracked.deliveries) window |= CrashedSince(at, when);
    if (!window) {
      return Violation("delivered twice",
                       absl::StrCat(what, ", first on node ", tracked.deliveries[0].first, " at ",
                                    tracked.deliveries[0].second));
    }
    ++stats_.window_duplicates;
  }
  if (tracked.bounces > 0) {
    const bool window = tracked.bounce_reason == "unconfirmed" &&
                        (FaultSince(tracked.origin, tracked.accepted_ms) ||
                         FaultSince(node.id, tracked.accepted_ms));
    if (!window) {
      return Violation("bounced, then delivered",
                       absl::StrCat(what, ", bounced for ", tracked.bounce_reason));
    }
    ++stats_.window_delivered_and_bounced;
  }
  tracked.deliveries.emplace_back(node.id, now_ms_);
  ++stats_.delivered;
  return absl::OkStatus();
}

absl::Status RelaySimulator::OnBounced(Node& node, uint16_t shard, const Bounce& bounce,
                                       const std::string& reason) {
  const int64_t number = StanzaNumber(bounce.bytes);
  if (number < 0 || static_cast<size_t>(number) >= tracked_.size()) {
    return Violation("unknown bounce", bounce.bytes);
  }
  Tracked& tracked = tracked_[number];
  const std::string what = absl::StrCat(
      "s", number, " (from node ", tracked.origin, " inc ", tracked.incarnation, ", accepted at ",
      tracked.accepted_ms, ") bounced on lane ", LaneName({node.id, shard}), " for ", reason);
  if (tracing()) Trace(absl::StrCat(now_ms_, " BOUNCED ", what));
  if (node.id != tracked.origin || shard != tracked.origin_shard ||
      node.incarnation != tracked.incarnation) {
    return Violation("bounce from elsewhere", what);
  }
  if (tracked.bounces > 0) return Violation("bounced twice", what);
  if (reason == "custody_full") ++stats_.refused;
  if (!tracked.deliveries.empty()) {
    bool window = false;
    for (const auto& [at, when] : tracked.deliveries) {
      window |= CrashedSince(at, when);
      window |= reason == "unconfirmed" && (FaultSince(tracked.origin, tracked.accepted_ms) ||
                                            FaultSince(at, tracked.accepted_ms));
    }
    if (!window) {
      return Violation("delivered and bounced",
                       absl::StrCat(what, ", delivered on node ", tracked.deliveries[0].first,
                                    " at ", tracked.deliveries[0].second));
    }
    ++stats_.window_delivered_and_bounced;
  }
  ++tracked.bounces;
  tracked.bounce_reason = reason;
  ++stats_.bounced;
  return absl::OkStatus();
}

absl::Status RelaySimulator::CheckRoutes() {
  for (const auto& [id, node] : nodes_) {
    if (!node.alive) continue;
    for (const Route& route : routes_) {
      std::optional<NodeId> expected;
      if (route.at == id) {
        expected = 0;
      } else if (route.at != raft::kNoNode) {
        expected = route.at;
      }
      const std::optional<NodeId> resolved = node.directory->NodeOf(route.address);
      if (resolved != expected) {
        return Violation(
            "routes did not converge",
            absl::StrCat("node ", id, " resolves ", route.address, " to ",
                         resolved ? absl::StrCat(*resolved) : "nowhere", ", it is on ", route.at));
      }
      const auto shard = node.shard_routes.find(route.address);
      const NodeId in_shards = shard == node.shard_routes.end() ? raft::kNoNode : shard->second;
      const NodeId shards_expected = route.at == id ? raft::kNoNode : route.at;
      if (in_shards != shards_expected) {
        return Violation("shard routes did not converge",
                         absl::StrCat("node ", id, "'s shards have ", route.address, " on ",
                                      in_shards, ", it is on ", route.at));
      }
    }
  }
  if (tracing()) Trace(absl::StrCat(now_ms_, " routes converged"));
  return absl::OkStatus();
}

absl::Status RelaySimulator::CheckEnd() {
  for (size_t number = 0; number < tracked_.size(); ++number) {
    const Tracked& tracked = tracked_[number];
    if (!tracked.deliveries.empty() || tracked.bounces > 0) continue;
    if (tracked.origin_crashed) {
      ++stats_.custody_lost;
    } else if (tracked.lost_in_window) {
      ++stats_.window_lost;
    } else {
      return Violation("neither delivered nor bounced",
                       absl::StrCat("s", number, " from node ", tracked.origin, " inc ",
                                    tracked.incarnation, " to ", routes_[tracked.route].address,
                                    ", accepted at ", tracked.accepted_ms));
    }
  }
  for (const auto& [id, node] : nodes_) {
    for (const auto& lane : node.lanes) {
      if (lane->custody_count() != 0) {
        return Violation(
            "custody not empty at the end",
            absl::StrCat("lane ", LaneName(lane->self()), " holds ", lane->custody_count()));
      }
    }
  }
  return CheckRoutes();
}

absl::Status RelaySimulator::Violation(const std::string& kind, const std::string& details) {
  if (violation_.ok()) {
    violation_ = absl::InternalError(absl::StrCat(kind, ": ", details, " (t=", now_ms_, " ms)"));
    if (tracing()) Trace(absl::StrCat(now_ms_, " VIOLATION ", violation_.message()));
  }
  return violation_;
}

// ---- Trace ----

void RelaySimulator::Trace(const std::string& line) {
  if (!tracing()) return;
  trace_.push_back(line);
  while (trace_.size() > options_.trace_lines) trace_.pop_front();
}

std::string RelaySimulator::TraceTail() const { return absl::StrJoin(trace_, "\n"); }

std::string RelaySimulator::Describe(FrameType type, const std::string& payload) const {
  std::string out = FrameName(type);
  switch (type) {
    case FrameType::kRoutes: {
      absl::StatusOr<RoutesFrame> routes = DecodeRoutes(payload);
      if (!routes.ok()) return out + " (bad)";
      if (routes->part == RoutesPart::kDigest) {
        return absl::StrCat(out, " digest n=", routes->digest.count, " h=", routes->digest.hash);
      }
      if (routes->part == RoutesPart::kSetRequest) return out + " set request";
      static constexpr const char* kParts[] = {"", " whole", " first", " more", " last"};
      absl::StrAppend(&out, kParts[static_cast<int>(routes->part)], " [");
      for (const RouteUpdate& update : routes->updates) {
        absl::StrAppend(&out, " ", update.add ? "+" : "-", update.address);
      }
      return out + " ]";
    }
    case FrameType::kStanza: {
      absl::StatusOr<StanzaFrame> frame = DecodeStanza(payload);
      if (!frame.ok()) return out + " (bad)";
      return absl::StrCat(out, " o=", LaneName(frame->origin), " inc=", frame->incarnation,
                          " seq=", frame->sequence, " floor=", frame->floor,
                          " dest=", LaneName(frame->destination), " hops=", frame->hops, " s",
                          StanzaNumber(frame->stanza));
    }
    case FrameType::kAbort: {
      absl::StatusOr<AbortFrame> frame = DecodeAbort(payload);
      if (!frame.ok()) return out + " (bad)";
      return absl::StrCat(out, " o=", LaneName(frame->origin), " inc=", frame->incarnation,
                          " floor=", frame->floor, " dest=", LaneName(frame->destination),
                          " hops=", frame->hops, " seqs=", absl::StrJoin(frame->sequences, ","));
    }
    case FrameType::kAck: {
      absl::StatusOr<AnswerFrame> frame = DecodeAnswers(payload);
      return frame.ok() ? absl::StrCat(out, " ", AnswersText(*frame)) : out + " (bad)";
    }
    case FrameType::kAckRelay: {
      auto relayed = DecodeAckRelay(payload);
      if (!relayed.ok()) return out + " (bad)";
      absl::StatusOr<AnswerFrame> frame = DecodeAnswers(relayed->second);
      return frame.ok()
                 ? absl::StrCat(out, " for ", LaneName(relayed->first), " ", AnswersText(*frame))
                 : out + " (bad)";
    }
    default:
      return out;
  }
}

}  // namespace stanzad::cluster::relay::sim
