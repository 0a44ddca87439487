// A tiny synchronous cluster for Raft unit and scenario tests: nodes with in-memory stable
// storage, a network that delivers instantly (or drops across cuts), and a state machine
// that records what it applied. Time moves only when a test ticks.
#ifndef STANZAD_TESTS_UNIT_RAFT_HARNESS_H_
#define STANZAD_TESTS_UNIT_RAFT_HARNESS_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cluster/raft/raft.h"
#include "core/base/check.h"

namespace stanzad::raft::testing {

struct HarnessNode {
  Member member;
  Config config;
  PersistentState disk;  // what survives a crash
  std::optional<Raft> raft;
  // The state machine: data of applied kNormal entries, and the last applied index.
  std::vector<std::string> applied_data;
  Index applied_index = 0;
  std::vector<Entry> applied_entries;  // every entry applied since start (for assertions)

  bool up() const { return raft.has_value(); }
};

class Harness {
 public:
  Config BaseConfig(NodeId id) const {
    Config config;
    config.id = id;
    config.election_ticks = 10;
    config.heartbeat_ticks = 1;
    config.check_quorum = true;
    config.pre_vote = true;
    config.random_seed = id;
    config.max_entries_per_append = 4;
    config.max_inflight_appends = 8;
    return config;
  }

  // Nodes of a new cluster, bootstrapped with all of `members`.
  void Bootstrap(const std::vector<Member>& members) {
    PersistentState state = *Raft::Bootstrap(members);
    for (const Member& member : members) {
      HarnessNode& node = nodes_[member.id];
      node.member = member;
      node.config = BaseConfig(member.id);
      node.disk = state;
      Start(member.id);
    }
  }

  // A node with an empty disk that waits to be added.
  void AddEmptyNode(const Member& member) {
    HarnessNode& node = nodes_[member.id];
    node = HarnessNode{};
    node.member = member;
    node.config = BaseConfig(member.id);
    Start(member.id);
  }

  void Start(NodeId id) {
    HarnessNode& node = nodes_.at(id);
    node.applied_data.clear();
    node.applied_index = node.disk.snapshot.metadata.index;
    if (node.applied_index > 0) node.applied_data = SplitData(node.disk.snapshot.data);
    absl::StatusOr<Raft> raft = Raft::Create(node.config, node.disk);
    CHECK_MSG(raft.ok(), std::string(raft.status().message()).c_str());
    node.raft.emplace(std::move(*raft));
  }

  // Loses everything not on disk.
  void Crash(NodeId id) { nodes_.at(id).raft.reset(); }
  void Restart(NodeId id) {
    if (!nodes_.at(id).up()) Start(id);
  }

  // Cuts both directions between the two groups (or heals everything).
  void Partition(const std::vector<NodeId>& a, const std::vector<NodeId>& b) {
    for (NodeId x : a) {
      for (NodeId y : b) {
        cut_.insert({x, y});
        cut_.insert({y, x});
      }
    }
  }
  void CutOneWay(NodeId from, NodeId to) { cut_.insert({from, to}); }
  void Heal() { cut_.clear(); }
  bool IsCut(NodeId from, NodeId to) const { return cut_.count({from, to}) != 0; }
  // Isolates one node from everyone.
  void Isolate(NodeId id) {
    for (auto& [other, node] : nodes_) {
      if (other == id) continue;
      cut_.insert({id, other});
      cut_.insert({other, id});
    }
  }

  // Persists, sends and applies one node's Ready. Returns whether there was one.
  bool ProcessReady(NodeId id) {
    HarnessNode& node = nodes_.at(id);
    if (!node.up() || !node.raft->HasReady()) return false;
    Ready ready = node.raft->TakeReady();
    if (ready.hard_state) node.disk.hard_state = *ready.hard_state;
    if (ready.snapshot) {
      node.disk.snapshot = *ready.snapshot;
      node.disk.entries.clear();
      node.applied_data = SplitData(ready.snapshot->data);
      node.applied_index = ready.snapshot->metadata.index;
    }
    if (!ready.entries.empty()) {
      std::vector<Entry>& log = node.disk.entries;
      Index first = ready.entries.front().index;
      while (!log.empty() && log.back().index >= first) log.pop_back();
      for (Entry& entry : ready.entries) log.push_back(std::move(entry));
    }
    for (Message& m : ready.messages) network_.push_back(std::move(m));
    for (const Entry& entry : ready.committed_entries) {
      CHECK_EQ(entry.index, node.applied_index + 1);
      node.applied_index = entry.index;
      if (entry.type == EntryType::kNormal) node.applied_data.push_back(entry.data);
      node.applied_entries.push_back(entry);
    }
    node.raft->Advance();
    return true;
  }

  // Delivers one message; false when none is queued.
  bool DeliverOne() {
    if (network_.empty()) return false;
    Message m = std::move(network_.front());
    network_.pop_front();
    ++delivered_;
    if (observer_) observer_(m);
    auto it = nodes_.find(m.to);
    if (it == nodes_.end() || !it->second.up() || cut_.count({m.from, m.to}) != 0) {
      return true;  // lost
    }
    (void)it->second.raft->Step(m);
    return true;
  }

  // Runs until no node has a Ready and no message is in flight.
  void Stabilize() {
    for (int round = 0; round < 100000; ++round) {
      bool progress = false;
      for (auto& [id, node] : nodes_) progress |= ProcessReady(id);
      while (DeliverOne()) progress = true;
      if (!progress) return;
    }
    CHECK_MSG(false, "harness: cluster does not stabilize");
  }

  void Tick(NodeId id, int ticks = 1) {
    for (int i = 0; i < ticks; ++i) {
      if (nodes_.at(id).up()) nodes_.at(id).raft->Tick();
      Stabilize();
    }
  }
  // Every live node ticks once per round; the network settles after each round.
  void TickAll(int rounds) {
    for (int i = 0; i < rounds; ++i) {
      for (auto& [id, node] : nodes_) {
        if (node.up()) node.raft->Tick();
      }
      Stabilize();
    }
  }
  // Ticks a node until its election timer fires (it campaigns), then settles.
  void ElectionTimeout(NodeId id) {
    Raft& raft = *nodes_.at(id).raft;
    for (int i = 0; i < 1000 && raft.role() == Role::kFollower; ++i) raft.Tick();
    Stabilize();
  }

  // The leader every live node that knows one agrees on, or kNoNode.
  NodeId Leader() const {
    NodeId leader = kNoNode;
    for (const auto& [id, node] : nodes_) {
      if (node.up() && node.raft->role() == Role::kLeader) {
        if (leader != kNoNode) return kNoNode;
        leader = id;
      }
    }
    return leader;
  }

  HarnessNode& node(NodeId id) { return nodes_.at(id); }
  Raft& raft(NodeId id) { return *nodes_.at(id).raft; }
  std::map<NodeId, HarnessNode>& nodes() { return nodes_; }
  size_t in_flight() const { return network_.size(); }
  void DropAllMessages() { network_.clear(); }
  // Sees every message the network is about to deliver (or lose).
  void SetObserver(std::function<void(const Message&)> observer) {
    observer_ = std::move(observer);
  }

  static std::vector<std::string> SplitData(const std::string& data) {
    if (data.empty()) return {};
    return absl::StrSplit(data, '\n');
  }
  static std::string JoinData(const std::vector<std::string>& data) {
    return absl::StrJoin(data, "\n");
  }

 private:
  std::map<NodeId, HarnessNode> nodes_;
  std::deque<Message> network_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  uint64_t delivered_ = 0;
  std::function<void(const Message&)> observer_;
};

}  // namespace stanzad::raft::testing

#endif  // STANZAD_TESTS_UNIT_RAFT_HARNESS_H_
