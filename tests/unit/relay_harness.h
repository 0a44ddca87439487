// A hand-driven cluster of relays (cluster/relay/relay.h) and their route directories, for
// the relay's unit tests (relay_test.cc) and scenario transcripts (relay_scenario_test.cc):
// every frame between them goes through a queue a test can inspect, drop or replay, and
// time moves only when a test says so. tests/simulation/relay_simulator.h does the same
// at random.
#ifndef STANZAD_TESTS_UNIT_RELAY_HARNESS_H_
#define STANZAD_TESTS_UNIT_RELAY_HARNESS_H_

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cluster/relay/directory.h"
#include "cluster/relay/relay.h"
#include "cluster/relay/wire.h"

namespace stanzad::cluster::relay {

inline constexpr NodeId kA = 1;
inline constexpr NodeId kB = 2;
inline constexpr NodeId kC = 3;
inline constexpr SenderId kSender = 77;

inline std::string Message(const std::string& id, const std::string& to = "cb2.example.com",
                           const std::string& from = "a@example.com/r") {
  return "<message from='" + from + "' to='" + to + "' id='" + id + "'/>";
}

struct Frame {
  NodeId from;
  NodeId to;
  FrameType type;
  std::string payload;
};

// Relays on nodes 1..n, all members, all linked, with the outputs of each collected.
class Cluster {
 public:
  Cluster(int nodes, Options options, DirectoryOptions directory_options = {})
      : options_(options), directory_options_(directory_options) {
    for (NodeId id = 1; id <= static_cast<NodeId>(nodes); ++id) {
      directories_[id] = std::make_unique<Directory>(directory_options_);
      relays_[id] =
          std::make_unique<Relay>(Lane{id, 0}, 1, "example.com", *directories_[id], options_);
      View& view = views_[id];
      view.member = true;
      view.can_deliver = true;
    }
    for (auto& [id, view] : views_) {
      for (const auto& [other, relay] : relays_) {
        if (other == id) continue;
        view.members.insert(other);
        view.linked.insert(other);
      }
    }
    SetViews();
  }

  bool has(NodeId id) const { return relays_.count(id) != 0; }
  Relay& relay(NodeId id) { return *relays_.at(id); }
  Directory& directory(NodeId id) { return *directories_.at(id); }
  View& view(NodeId id) { return views_.at(id); }
  uint64_t now() const { return now_ms_; }

  void SetLeader(NodeId leader) {
    for (auto& [id, view] : views_) view.leader = leader;
    SetViews();
  }
  void SetViews() {
    for (auto& [id, relay] : relays_) {
      directories_.at(id)->SetView(views_.at(id));
      relay->SetView(now_ms_, views_.at(id));
    }
    Collect();
  }
  // Cuts (or restores) the link between a and b on both sides.
  void Cut(NodeId a, NodeId b, bool cut = true) {
    if (cut) {
      views_.at(a).linked.erase(b);
      views_.at(b).linked.erase(a);
    } else {
      views_.at(a).linked.insert(b);
      views_.at(b).linked.insert(a);
    }
    SetViews();
  }
  // A process restart: a new Relay with a larger incarnation, nothing remembered.
  void Restart(NodeId id, uint64_t incarnation) {
    relays_[id].reset();
    directories_[id] = std::make_unique<Directory>(directory_options_);
    relays_[id] = std::make_unique<Relay>(Lane{id, 0}, incarnation, "example.com",
                                          *directories_[id], options_);
    directories_[id]->SetView(views_.at(id));
    relays_[id]->SetView(now_ms_, views_.at(id));
  }
  void Bind(NodeId id, const std::string& address) {
    directory(id).LocalRoute(true, address);
    relay(id).RouteBound(now_ms_, address);
    Collect();
  }
  void Unbind(NodeId id, const std::string& address) {
    directory(id).LocalRoute(false, address);
    Collect();
  }
  // Every link comes up: each side sends its full route set.
  void LinkAll() {
    for (auto& [id, directory] : directories_) {
      for (NodeId peer : views_.at(id).linked) directory->LinkUp(peer);
      directory->Tick(now_ms_);  // the sets leave (the relays' timers are not touched)
    }
    Collect();
  }
  void Forward(NodeId origin, NodeId node, const std::string& bytes) {
    relay(origin).Forward(now_ms_, kSender, node, bytes);
    Collect();
  }

  // Time passes; every relay ticks.
  void Advance(uint64_t ms) {
    now_ms_ += ms;
    for (auto& [id, relay] : relays_) {
      directories_.at(id)->Tick(now_ms_);
      relay->Tick(now_ms_);
    }
    Collect();
  }
  // Ticks in steps of `step_ms` for `ms`, delivering frames after each step.
  void RunFor(uint64_t ms, uint64_t step_ms = 50) {
    for (uint64_t t = 0; t < ms; t += step_ms) {
      Advance(step_ms);
      Pump();
    }
  }

  // Delivers queued frames in order until none is left or `frames_max` went (an answer
  // storm would otherwise never end); returns how many were delivered.
  int Pump(int frames_max = 200) {
    int delivered = 0;
    while (!wire_.empty() && delivered < frames_max) {
      Frame frame = std::move(wire_.front());
      wire_.pop_front();
      if (drop && drop(frame)) {
        ++dropped;
        continue;
      }
      ++delivered;
      Deliver(frame);
    }
    return delivered;
  }
  // Takes the next queued frame without delivering it.
  Frame Take() {
    EXPECT_FALSE(wire_.empty());
    Frame frame = std::move(wire_.front());
    wire_.pop_front();
    return frame;
  }
  void Inject(const Frame& frame) { Deliver(frame); }
  const std::deque<Frame>& wire() const { return wire_; }
  void ClearWire() { wire_.clear(); }

  std::function<bool(const Frame&)> drop;
  int dropped = 0;
  std::map<NodeId, std::vector<Delivery>> deliveries;
  std::map<NodeId, std::vector<Bounce>> bounces;
  std::map<NodeId, std::vector<LogLine>> logs;
  std::map<NodeId, std::vector<RouteChange>> route_changes;
  std::vector<Frame> sent;  // every frame ever queued

 private:
  void Deliver(const Frame& frame) {
    if (frame.type == FrameType::kRoutes) {
      directory(frame.to).OnRoutes(frame.from, frame.payload);
    } else {
      relay(frame.to).OnFrame(now_ms_, Lane{frame.from, 0}, frame.type, frame.payload);
    }
    Collect();
  }

  // The routes' outputs first (a bound route sends what waited for it), then the relay's.
  void Collect() {
    for (auto& [id, relay] : relays_) {
      Ready routes = directories_.at(id)->TakeReady();
      for (RouteChange& change : routes.route_changes) {
        if (change.op == RouteChange::Op::kBind) relay->RouteBound(now_ms_, change.address);
        route_changes[id].push_back(std::move(change));
      }
      Ready ready = relay->TakeReady();
      ready.sends.insert(ready.sends.begin(), std::make_move_iterator(routes.sends.begin()),
                         std::make_move_iterator(routes.sends.end()));
      for (Send& send : ready.sends) {
        Frame frame{id, send.to, send.type, std::move(send.payload)};
        sent.push_back(frame);
        wire_.push_back(std::move(frame));
      }
      for (Delivery& d : ready.deliveries) deliveries[id].push_back(std::move(d));
      for (Bounce& b : ready.bounces) bounces[id].push_back(std::move(b));
      for (LogLine& l : ready.logs) logs[id].push_back(std::move(l));
      relay->CheckInvariants();
      directories_.at(id)->CheckInvariants();
    }
  }

  Options options_;
  DirectoryOptions directory_options_;
  uint64_t now_ms_ = 1000;
  std::map<NodeId, std::unique_ptr<Directory>> directories_;  // before relays_: they read them
  std::map<NodeId, std::unique_ptr<Relay>> relays_;
  std::map<NodeId, View> views_;
  std::deque<Frame> wire_;
};

inline Options Direct() {
  Options options;
  options.direct = true;
  return options;
}

}  // namespace stanzad::cluster::relay

#endif  // STANZAD_TESTS_UNIT_RELAY_HARNESS_H_
