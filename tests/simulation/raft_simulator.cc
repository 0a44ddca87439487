#include "tests/simulation/raft_simulator.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cluster/raft/message_codec.h"
#include "core/base/check.h"

namespace stanzad::raft::sim {

namespace {

uint64_t Mix(uint64_t a, uint64_t b) {
  uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t HashBytes(const std::string& data) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a
  for (unsigned char c : data) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

uint64_t EntryHash(const Entry& entry) {
  return Mix(Mix(Mix(entry.index, entry.term), static_cast<uint64_t>(entry.type)),
             HashBytes(entry.data));
}

uint64_t EntryKey(Index index, Term term) { return (index << 24) ^ term; }

// The simulated state machine's snapshot: the index and the digest reached there.
std::string EncodeDigest(Index index, uint64_t digest) {
  std::string out(16, '\0');
  std::memcpy(out.data(), &index, 8);
  std::memcpy(out.data() + 8, &digest, 8);
  return out;
}

bool DecodeDigest(const std::string& data, Index* index, uint64_t* digest) {
  if (data.size() != 16) return false;
  std::memcpy(index, data.data(), 8);
  std::memcpy(digest, data.data() + 8, 8);
  return true;
}

const char* EventName(int type) {
  static const char* kNames[] = {"tick",  "deliver", "persisted", "restart", "forget", "heal",
                                 "fault", "client",  "operator",  "retire",  "crash"};
  return kNames[type];
}

}  // namespace

void SimStats::Add(const SimStats& o) {
  leaders += o.leaders;
  leader_changes += o.leader_changes;
  fault_events += o.fault_events;
  crashes += o.crashes;
  leader_crashes += o.leader_crashes;
  wipes += o.wipes;
  partitions += o.partitions;
  members_added += o.members_added;
  members_removed += o.members_removed;
  snapshots_installed += o.snapshots_installed;
  messages_sent += o.messages_sent;
  messages_dropped += o.messages_dropped;
  entries_committed += o.entries_committed;
}

std::string SimStats::ToString() const {
  return absl::StrCat(
      "leaders=", leaders, " leader_changes=", leader_changes, " fault_events=", fault_events,
      " crashes=", crashes, " leader_crashes=", leader_crashes, " wipes=", wipes,
      " partitions=", partitions, " members_added=", members_added,
      " members_removed=", members_removed, " snapshots_installed=", snapshots_installed,
      " messages=", messages_sent, " dropped=", messages_dropped, " committed=", entries_committed);
}

SimStats Simulator::stats() const {
  SimStats stats = stats_;
  stats.leaders = leaders_.size();
  stats.leader_changes = leaders_.empty() ? 0 : leaders_.size() - 1;
  stats.entries_committed = committed_terms_.empty() ? 0 : committed_terms_.size() - 1;
  return stats;
}

Simulator::Simulator(const SimOptions& options)
    : options_(options), rng_(Mix(options.seed, 0x5eed)) {}

// ---------------------------------------------------------------------------------------
// Event loop

void Simulator::Schedule(int64_t at_us, EventType type, NodeId node, uint64_t incarnation,
                         Message message) {
  Event event;
  event.time_us = at_us;
  event.sequence = next_sequence_++;
  event.type = type;
  event.node = node;
  event.incarnation = incarnation;
  event.message = std::move(message);
  queue_.push_back(std::move(event));
  std::push_heap(queue_.begin(), queue_.end(), EventLater());
}

absl::Status Simulator::RunUntil(int64_t until_us) {
  bool reached = false;
  absl::Status status = RunUntilCondition([] { return false; }, until_us, &reached);
  now_us_ = std::max(now_us_, until_us);
  return status;
}

absl::Status Simulator::RunUntilCondition(const std::function<bool()>& done, int64_t deadline_us,
                                          bool* reached) {
  *reached = false;
  if (!violation_.ok()) return violation_;
  *reached = done();
  while (!*reached && !queue_.empty() && queue_.front().time_us <= deadline_us) {
    std::pop_heap(queue_.begin(), queue_.end(), EventLater());
    Event event = std::move(queue_.back());
    queue_.pop_back();
    now_us_ = event.time_us;
    ++events_;
    fingerprint_ = Mix(fingerprint_, Mix(static_cast<uint64_t>(event.time_us),
                                         Mix(static_cast<uint64_t>(event.type), event.node)));
    if (absl::Status status = Dispatch(event); !status.ok()) return status;
    // A violation some path found but did not return.
    if (!violation_.ok()) return violation_;
    *reached = done();
    if (!violation_.ok()) return violation_;  // found by what done() did
  }
  return violation_;
}

absl::Status Simulator::Dispatch(Event& event) {
  if (tracing() && event.type != EventType::kDeliver) {
    Trace(absl::StrCat(EventName(static_cast<int>(event.type)), " node=", event.node));
  }
  auto live = [&](NodeId id, uint64_t incarnation) -> Node* {
    auto it = nodes_.find(id);
    if (it == nodes_.end() || !it->second.alive || it->second.incarnation != incarnation) {
      return nullptr;
    }
    return &it->second;
  };
  switch (event.type) {
    case EventType::kTick: {
      Node* node = live(event.node, event.incarnation);
      if (node == nullptr) return absl::OkStatus();
      Schedule(now_us_ + options_.tick_us, EventType::kTick, node->id, node->incarnation);
      return OnTick(*node);
    }
    case EventType::kDeliver:
      return OnDeliver(event.message);
    case EventType::kPersisted: {
      Node* node = live(event.node, event.incarnation);
      if (node == nullptr) return absl::OkStatus();
      return OnPersisted(*node);
    }
    case EventType::kRestart:
      return Restart(event.node);
    case EventType::kForgetLeader: {
      auto it = nodes_.find(event.node);
      if (it == nodes_.end() || !it->second.alive) return absl::OkStatus();
      Node& node = it->second;
      if (node.busy) {
        node.deferred_forget = true;
        return absl::OkStatus();
      }
      node.raft->ForgetLeader();
      return AfterInput(node);
    }
    case EventType::kHealNetwork:
      blocked_.clear();
      return absl::OkStatus();
    case EventType::kFault:
      return OnFault();
    case EventType::kClient:
      return OnClient();
    case EventType::kOperator:
      return OnOperator();
    case EventType::kRetire:
      return Retire(event.node);
    case EventType::kCrash: {
      if (live(event.node, event.incarnation) == nullptr || !chaos_) return absl::OkStatus();
      absl::Status status = Crash(event.node);
      Schedule(now_us_ + rng_.Range(10'000, 400'000), EventType::kRestart, event.node);
      return status;
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Nodes

NodeId Simulator::NewNodeId() {
  // Small ids keep traces readable; real ids are random 64-bit values.
  for (;;) {
    NodeId id = static_cast<NodeId>(rng_.Range(1, 9999));
    if (nodes_.count(id) == 0) return id;
  }
}

std::string Simulator::NewAddress() { return absl::StrCat("10.0.0.", next_address_++, ":4369"); }

Simulator::Node& Simulator::AddNode(NodeId id, const std::string& address) {
  Node& node = nodes_[id];
  node.id = id;
  node.address = address;
  return node;
}

absl::Status Simulator::StartNode(Node& node) {
  CHECK(!node.alive && !node.retired);
  Config config;
  config.id = node.id;
  config.election_ticks = options_.election_ticks;
  config.heartbeat_ticks = options_.heartbeat_ticks;
  config.pre_vote = options_.pre_vote;
  config.check_quorum = options_.check_quorum;
  config.random_seed = rng_.Next();
  config.max_entries_per_append = options_.max_entries_per_append;
  config.max_inflight_appends = options_.max_inflight_appends;
  PersistentState state{node.disk.hard_state, node.disk.snapshot, node.disk.entries};
  absl::StatusOr<Raft> raft = Raft::Create(config, std::move(state));
  if (!raft.ok()) {
    // The disk holds only what Raft asked to persist, in the order its contract gives.
    return Violation(absl::StrCat(
        "node ", node.id, " cannot restart from what Raft persisted: ", raft.status().ToString()));
  }
  node.raft.emplace(std::move(*raft));
  node.alive = true;
  node.busy = false;
  node.pending.reset();
  node.inbox.clear();
  node.deferred_ticks = 0;
  node.deferred_forget = false;
  node.applied = node.disk.snapshot.metadata.index;
  node.digest = 0;
  if (node.applied > 0) {
    Index index = 0;
    if (!DecodeDigest(node.disk.snapshot.data, &index, &node.digest) || index != node.applied) {
      return Violation(absl::StrCat("node ", node.id, " restarts from a snapshot it never took"));
    }
  }
  node.checked_commit = node.raft->snapshot_index();
  node.last_role = Role::kFollower;
  node.last_term = node.raft->term();
  Schedule(now_us_ + rng_.Range(1, options_.tick_us), EventType::kTick, node.id, node.incarnation);
  if (tracing()) Trace(absl::StrCat("start node=", node.id, " term=", node.raft->term()));
  return absl::OkStatus();
}

absl::Status Simulator::Bootstrap(int members) {
  std::vector<Member> list;
  for (int i = 0; i < members; ++i) {
    Member member{NewNodeId(), NewAddress()};
    AddNode(member.id, member.address);
    list.push_back(member);
  }
  absl::StatusOr<PersistentState> state = Raft::Bootstrap(list);
  CHECK(state.ok());
  for (const Member& member : list) {
    Node& node = nodes_.at(member.id);
    node.disk.hard_state = state->hard_state;
    node.disk.entries = state->entries;
    if (absl::Status status = CheckStableAppend(node, 0); !status.ok()) return status;
    if (absl::Status status = StartNode(node); !status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status Simulator::Crash(NodeId id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || !it->second.alive) return absl::OkStatus();
  ++stats_.crashes;
  if (it->second.raft->role() == Role::kLeader) ++stats_.leader_crashes;
  if (tracing()) Trace(absl::StrCat("crash node=", id));
  return PowerOff(it->second);
}

absl::Status Simulator::PowerOff(Node& node) {
  absl::Status persisted = absl::OkStatus();
  if (node.busy && node.pending.has_value()) {
    // The Ready being written: some prefix of its writes made it to disk.
    size_t writes = (node.pending->hard_state ? 1 : 0) + (node.pending->snapshot ? 1 : 0) +
                    node.pending->entries.size();
    persisted = Persist(node, static_cast<size_t>(rng_.Range(0, static_cast<int64_t>(writes))));
  }
  node.alive = false;
  node.raft.reset();
  node.busy = false;
  node.pending.reset();
  node.inbox.clear();
  node.deferred_ticks = 0;
  node.deferred_forget = false;
  ++node.incarnation;
  return persisted;
}

absl::Status Simulator::Restart(NodeId id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || it->second.alive || it->second.retired) return absl::OkStatus();
  return StartNode(it->second);
}

absl::Status Simulator::Retire(NodeId id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return absl::OkStatus();
  it->second.retired = true;
  if (!it->second.alive) return absl::OkStatus();
  if (tracing()) Trace(absl::StrCat("retire node=", id));
  return PowerOff(it->second);
}

absl::Status Simulator::Wipe(NodeId id) {
  Node& old_node = nodes_.at(id);
  std::string address = old_node.address;
  if (absl::Status status = Retire(id); !status.ok()) return status;
  nodes_.at(id).disk = StableState{};
  // The machine comes back with an empty disk, so with a new id, at the same address.
  NodeId new_id = NewNodeId();
  Node& node = AddNode(new_id, address);
  pending_adds_.push_back(Member{new_id, address});
  ++stats_.wipes;
  if (tracing()) Trace(absl::StrCat("wipe node=", id, " returns as ", new_id));
  return StartNode(node);
}

void Simulator::StartClients() {
  Schedule(now_us_ + rng_.Range(0, options_.client_interval_us), EventType::kClient, kNoNode);
}

void Simulator::ScheduleForgetLeader(NodeId id, int64_t at_us) {
  Schedule(at_us, EventType::kForgetLeader, id);
}

// ---------------------------------------------------------------------------------------
// Inputs and Ready handling

absl::Status Simulator::OnTick(Node& node) {
  if (node.busy) {
    ++node.deferred_ticks;
    return absl::OkStatus();
  }
  node.raft->Tick();
  return AfterInput(node);
}

absl::Status Simulator::OnDeliver(Message& message) {
  auto it = nodes_.find(message.to);
  if (it == nodes_.end() || !it->second.alive) return absl::OkStatus();
  if (blocked_.count({message.from, message.to}) != 0) {
    ++stats_.messages_dropped;
    return absl::OkStatus();
  }
  Node& node = it->second;
  if (tracing()) {
    Trace(absl::StrCat("deliver ", std::string(MessageTypeName(message.type)), " ", message.from,
                       "->", message.to, " term=", message.term, " index=", message.index,
                       " log_term=", message.log_term, " entries=", message.entries.size(),
                       " commit=", message.commit, message.reject ? " reject" : ""));
  }
  if (node.busy) {
    if (node.inbox.size() < 4096) node.inbox.push_back(std::move(message));
    return absl::OkStatus();
  }
  if (absl::Status status = node.raft->Step(message); !status.ok()) {
    return Violation(
        absl::StrCat("node ", node.id, " refused a message Raft made: ", status.ToString()));
  }
  return AfterInput(node);
}

absl::Status Simulator::AfterInput(Node& node) {
  if (absl::Status status = CheckNode(node); !status.ok()) return status;
  if (node.busy || !node.raft->HasReady()) return absl::OkStatus();
  Ready ready = node.raft->TakeReady();
  bool needs_disk = ready.hard_state || ready.snapshot || !ready.entries.empty();
  node.pending = std::move(ready);
  node.busy = true;
  if (!needs_disk) return OnPersisted(node);
  Schedule(now_us_ + rng_.Range(options_.disk_sync_min_us, options_.disk_sync_max_us),
           EventType::kPersisted, node.id, node.incarnation);
  return absl::OkStatus();
}

absl::Status Simulator::Persist(Node& node, size_t write_count) {
  Ready& ready = *node.pending;
  // Records are written in the order Raft's contract asks for: snapshot, entries, and the
  // hard state last. A crash keeps any prefix of them.
  size_t written = 0;
  if (ready.snapshot && written < write_count) {
    node.disk.snapshot = *ready.snapshot;
    node.disk.entries.clear();
    node.disk.chains.clear();
    ++written;
  }
  if (!ready.entries.empty() && written < write_count) {
    Index first = ready.entries.front().index;
    while (!node.disk.entries.empty() && node.disk.entries.back().index >= first) {
      node.disk.entries.pop_back();
      node.disk.chains.pop_back();
    }
    size_t position = node.disk.entries.size();
    for (const Entry& entry : ready.entries) {
      if (written >= write_count) break;
      node.disk.entries.push_back(entry);
      ++written;
    }
    if (absl::Status status = CheckStableAppend(node, position); !status.ok()) return status;
  }
  if (ready.hard_state && written < write_count) {
    node.disk.hard_state = *ready.hard_state;
    ++written;
  }
  return absl::OkStatus();
}

absl::Status Simulator::OnPersisted(Node& node) {
  CHECK(node.busy && node.pending.has_value());
  Ready& ready = *node.pending;
  size_t writes = (ready.hard_state ? 1 : 0) + (ready.snapshot ? 1 : 0) + ready.entries.size();
  if (absl::Status status = Persist(node, writes); !status.ok()) return status;
  if (absl::Status status = SendMessages(ready.messages); !status.ok()) return status;
  if (absl::Status status = ApplyCommitted(node, ready); !status.ok()) return status;
  node.pending.reset();
  node.busy = false;
  node.raft->Advance();
  if (absl::Status status = CheckNode(node); !status.ok()) return status;
  if (absl::Status status = MaybeSnapshot(node); !status.ok()) return status;
  return DrainDeferred(node);
}

absl::Status Simulator::DrainDeferred(Node& node) {
  if (node.busy) return absl::OkStatus();
  if (node.deferred_ticks == 0 && !node.deferred_forget && node.inbox.empty()) {
    return AfterInput(node);
  }
  // Each input is checked on its own, as when it is not deferred.
  for (; node.deferred_ticks > 0; --node.deferred_ticks) {
    node.raft->Tick();
    if (absl::Status status = CheckNode(node); !status.ok()) return status;
  }
  if (node.deferred_forget) {
    node.deferred_forget = false;
    node.raft->ForgetLeader();
    if (absl::Status status = CheckNode(node); !status.ok()) return status;
  }
  while (!node.inbox.empty()) {
    Message message = std::move(node.inbox.front());
    node.inbox.pop_front();
    if (absl::Status status = node.raft->Step(message); !status.ok()) {
      return Violation(
          absl::StrCat("node ", node.id, " refused a message Raft made: ", status.ToString()));
    }
    if (absl::Status status = CheckNode(node); !status.ok()) return status;
  }
  return AfterInput(node);
}

absl::Status Simulator::ApplyCommitted(Node& node, const Ready& ready) {
  auto record = [&](Index index, uint64_t digest) -> absl::Status {
    if (applied_digests_.size() <= index) applied_digests_.resize(index + 1, 0);
    if (applied_digests_[index] == 0) {
      applied_digests_[index] = digest;
    } else if (applied_digests_[index] != digest) {
      return Violation(absl::StrCat("state-machine safety: node ", node.id,
                                    " reached another state at index ", index));
    }
    return absl::OkStatus();
  };
  if (ready.snapshot) {
    Index index = 0;
    uint64_t digest = 0;
    if (!DecodeDigest(ready.snapshot->data, &index, &digest) ||
        index != ready.snapshot->metadata.index) {
      return Violation("snapshot data does not match its metadata");
    }
    node.applied = index;
    node.digest = digest;
    ++stats_.snapshots_installed;
    if (absl::Status status = record(index, digest); !status.ok()) return status;
  }
  for (const Entry& entry : ready.committed_entries) {
    if (entry.index != node.applied + 1) {
      return Violation(
          absl::StrCat("node ", node.id, " applies index ", entry.index, " after ", node.applied));
    }
    node.applied = entry.index;
    node.digest = Mix(node.digest, EntryHash(entry));
    if (absl::Status status = record(entry.index, node.digest); !status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status Simulator::SendMessages(std::vector<Message>& messages) {
  for (Message& message : messages) {
    ++stats_.messages_sent;
    if (blocked_.count({message.from, message.to}) != 0 || (loss_ > 0 && rng_.Chance(loss_))) {
      ++stats_.messages_dropped;
      continue;
    }
    if (duplication_ > 0 && rng_.Chance(duplication_)) {
      Schedule(now_us_ + rng_.Range(options_.network_delay_min_us, options_.network_delay_max_us),
               EventType::kDeliver, message.to, 0, message);
    }
    int64_t at = now_us_ + rng_.Range(options_.network_delay_min_us, options_.network_delay_max_us);
    NodeId to = message.to;
    if (options_.wire_codec) {
      // What arrives is what the wire carried.
      std::string wire;
      EncodeMessage(message, &wire);
      absl::StatusOr<Message> decoded = DecodeMessage(wire);
      if (!decoded.ok()) {
        return Violation(absl::StrCat("a message Raft made does not survive the wire codec: ",
                                      decoded.status().ToString()));
      }
      message = std::move(*decoded);
    }
    Schedule(at, EventType::kDeliver, to, 0, std::move(message));
  }
  return absl::OkStatus();
}

absl::Status Simulator::MaybeSnapshot(Node& node) {
  Raft& raft = *node.raft;
  if (node.busy || node.applied < raft.snapshot_index() + options_.snapshot_every_entries) {
    return absl::OkStatus();
  }
  absl::StatusOr<Snapshot> snapshot =
      raft.CreateSnapshot(node.applied, EncodeDigest(node.applied, node.digest));
  if (!snapshot.ok()) {
    return Violation(absl::StrCat("node ", node.id, " refused a snapshot at applied index ",
                                  node.applied, ": ", snapshot.status().ToString()));
  }
  // The snapshot is written, then the log before it dropped.
  size_t drop = 0;
  while (drop < node.disk.entries.size() &&
         node.disk.entries[drop].index <= snapshot->metadata.index) {
    ++drop;
  }
  node.disk.snapshot = std::move(*snapshot);
  node.disk.entries.erase(node.disk.entries.begin(), node.disk.entries.begin() + drop);
  node.disk.chains.erase(node.disk.chains.begin(), node.disk.chains.begin() + drop);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Invariants

absl::Status Simulator::Violation(const std::string& what) {
  absl::Status status = absl::InternalError(absl::StrCat("t=", now_us_ / 1000.0, "ms: ", what));
  if (violation_.ok()) violation_ = status;
  return status;
}

absl::Status Simulator::CheckStableAppend(Node& node, size_t from_position) {
  // Log matching, via a hash chain: equal (index, term) must mean equal logs up to there.
  StableState& disk = node.disk;
  disk.chains.resize(from_position);
  for (size_t i = from_position; i < disk.entries.size(); ++i) {
    const Entry& entry = disk.entries[i];
    uint64_t previous;
    if (i > 0) {
      previous = disk.chains[i - 1];
    } else if (disk.snapshot.metadata.index == 0) {
      previous = 0;
    } else {
      auto it =
          chain_by_entry_.find(EntryKey(disk.snapshot.metadata.index, disk.snapshot.metadata.term));
      if (it == chain_by_entry_.end()) {
        return Violation("a snapshot at an entry no node ever persisted");
      }
      previous = it->second;
    }
    if (entry.index != (i > 0 ? disk.entries[i - 1].index : disk.snapshot.metadata.index) + 1) {
      return Violation(absl::StrCat("node ", node.id, " stored a log with a gap at ", entry.index));
    }
    uint64_t chain = Mix(previous, EntryHash(entry));
    disk.chains.push_back(chain);
    auto [it, inserted] = chain_by_entry_.emplace(EntryKey(entry.index, entry.term), chain);
    if (!inserted && it->second != chain) {
      return Violation(absl::StrCat("log matching: node ", node.id, " stored index ", entry.index,
                                    " term ", entry.term,
                                    " with a different history than another node"));
    }
  }
  return absl::OkStatus();
}

absl::Status Simulator::CheckNode(Node& node) {
  const Raft& raft = *node.raft;
  Role role = raft.role();
  Term term = raft.term();
  if (raft.commit_index() > raft.last_index() || raft.applied_index() > raft.commit_index()) {
    return Violation(absl::StrCat("node ", node.id, " has commit or applied beyond its log"));
  }
  if (role == Role::kLeader && (node.last_role != Role::kLeader || node.last_term != term)) {
    // Election safety.
    auto [it, inserted] = leaders_.emplace(term, node.id);
    if (!inserted && it->second != node.id) {
      return Violation(absl::StrCat("election safety: nodes ", it->second, " and ", node.id,
                                    " both lead term ", term));
    }
    // Leader completeness: every entry committed in an earlier term is in its log.
    for (Index i = std::max<Index>(raft.snapshot_index(), 1); i < committed_terms_.size(); ++i) {
      if (committed_terms_[i] == 0 || committed_in_term_[i] >= term) continue;
      if (i > raft.last_index()) {
        return Violation(absl::StrCat("leader completeness: leader ", node.id, " of term ", term,
                                      " lacks index ", i, " committed in term ",
                                      committed_in_term_[i]));
      }
      if (raft.TermAt(i) != committed_terms_[i]) {
        return Violation(absl::StrCat("leader completeness: leader ", node.id, " of term ", term,
                                      " has another entry at committed index ", i));
      }
    }
    if (tracing()) Trace(absl::StrCat("leader node=", node.id, " term=", term));
    // A leader that dies after replicating part of what it has is how logs diverge.
    if (chaos_ && options_.faults && rng_.Chance(options_.crash_new_leader_chance)) {
      Schedule(now_us_ + rng_.Range(0, 30'000), EventType::kCrash, node.id, node.incarnation);
    }
  }
  node.last_role = role;
  node.last_term = term;
  // Committed entries never change: every node that commits index i agrees on its term.
  Index commit = raft.commit_index();
  if (commit > node.checked_commit) {
    if (committed_terms_.size() <= commit) {
      committed_terms_.resize(commit + 1, 0);
      committed_in_term_.resize(commit + 1, 0);
    }
    for (Index i = std::max(node.checked_commit + 1, raft.snapshot_index()); i <= commit; ++i) {
      Term t = *raft.TermAt(i);
      if (committed_terms_[i] == 0) {
        committed_terms_[i] = t;
        committed_in_term_[i] = term;
      } else if (committed_terms_[i] != t) {
        return Violation(absl::StrCat("committed entry changed: node ", node.id, " committed term ",
                                      t, " at index ", i, ", others term ", committed_terms_[i]));
      }
    }
    node.checked_commit = commit;
  }
  // Membership: one member per address, as every node sees it.
  const std::map<NodeId, Member>& members = raft.members();
  if (tracing() &&
      (raft.config_index() != node.traced_config_index || members.size() != node.traced_members)) {
    node.traced_config_index = raft.config_index();
    node.traced_members = members.size();
    std::vector<NodeId> ids;
    for (const auto& [id, member] : members) ids.push_back(id);
    Trace(absl::StrCat("members node=", node.id, " config_index=", raft.config_index(),
                       " commit=", raft.commit_index(), " {", absl::StrJoin(ids, ","), "}"));
  }
  for (auto a = members.begin(); a != members.end(); ++a) {
    for (auto b = std::next(a); b != members.end(); ++b) {
      if (a->second.address == b->second.address) {
        return Violation(absl::StrCat("node ", node.id, " lists members ", a->first, " and ",
                                      b->first, " at one address ", a->second.address));
      }
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Faults, clients, the operator

std::vector<NodeId> Simulator::LiveNodes() const {
  std::vector<NodeId> out;
  for (const auto& [id, node] : nodes_) {
    if (node.alive) out.push_back(id);
  }
  return out;
}

NodeId Simulator::CurrentLeader() const {
  NodeId leader = kNoNode;
  Term best = 0;
  for (const auto& [id, node] : nodes_) {
    if (node.alive && node.raft->role() == Role::kLeader && node.raft->term() >= best) {
      leader = id;
      best = node.raft->term();
    }
  }
  return leader;
}

NodeId Simulator::LeaderAcceptedByMajority(Term* term) const {
  for (const auto& [id, node] : nodes_) {
    if (!node.alive || node.raft->role() != Role::kLeader) continue;
    const std::map<NodeId, Member>& members = node.raft->members();
    size_t accepted = 0;
    for (const auto& [member_id, member] : members) {
      auto it = nodes_.find(member_id);
      if (it == nodes_.end() || !it->second.alive) continue;
      const Raft& follower = *it->second.raft;
      if (follower.leader() == id && follower.term() == node.raft->term()) ++accepted;
    }
    if (accepted >= members.size() / 2 + 1) {
      if (term != nullptr) *term = node.raft->term();
      return id;
    }
  }
  return kNoNode;
}

absl::Status Simulator::OnFault() {
  if (!chaos_ || !options_.faults) return absl::OkStatus();
  Schedule(now_us_ + rng_.Range(options_.fault_interval_us / 2, options_.fault_interval_us * 3 / 2),
           EventType::kFault, kNoNode);
  ++stats_.fault_events;
  std::vector<NodeId> live = LiveNodes();
  if (live.empty()) return absl::OkStatus();
  auto pick = [&](const std::vector<NodeId>& from) {
    return from[static_cast<size_t>(rng_.Range(0, static_cast<int64_t>(from.size()) - 1))];
  };
  auto restart_later = [&](NodeId id) {
    Schedule(now_us_ + rng_.Range(20'000, 800'000), EventType::kRestart, id);
  };
  auto heal_later = [&] {
    Schedule(now_us_ + rng_.Range(50'000, 1'000'000), EventType::kHealNetwork, kNoNode);
  };
  int64_t action = rng_.Range(0, 99);
  if (action < 12) {
    NodeId id = pick(live);
    absl::Status status = Crash(id);
    restart_later(id);
    return status;
  } else if (action < 22) {
    NodeId leader = CurrentLeader();
    if (leader != kNoNode) {
      absl::Status status = Crash(leader);
      restart_later(leader);
      return status;
    }
  } else if (action < 32) {
    ++stats_.partitions;
    // A symmetric partition into two random groups.
    std::vector<NodeId> shuffled = live;
    for (size_t i = shuffled.size(); i > 1; --i) {
      std::swap(shuffled[i - 1], shuffled[static_cast<size_t>(rng_.Range(0, i - 1))]);
    }
    size_t split = static_cast<size_t>(rng_.Range(1, static_cast<int64_t>(shuffled.size())));
    for (size_t i = 0; i < split; ++i) {
      for (size_t j = split; j < shuffled.size(); ++j) {
        blocked_.insert({shuffled[i], shuffled[j]});
        blocked_.insert({shuffled[j], shuffled[i]});
      }
    }
    heal_later();
  } else if (action < 38) {
    ++stats_.partitions;
    // Isolate the leader (or anyone).
    NodeId id = CurrentLeader() != kNoNode && rng_.Chance(0.5) ? CurrentLeader() : pick(live);
    for (const auto& [other, node] : nodes_) {
      if (other == id) continue;
      blocked_.insert({id, other});
      blocked_.insert({other, id});
    }
    heal_later();
  } else if (action < 46) {
    ++stats_.partitions;
    // Asymmetric: one direction of one link, or everything one node sends.
    NodeId from = pick(live);
    if (rng_.Chance(0.5)) {
      for (const auto& [other, node] : nodes_) {
        if (other != from) blocked_.insert({from, other});
      }
    } else {
      NodeId to = pick(live);
      if (to != from) blocked_.insert({from, to});
    }
    heal_later();
  } else if (action < 56) {
    static constexpr double kLoss[] = {0, 0.02, 0.1, 0.3};
    static constexpr double kDuplication[] = {0, 0.05, 0.2};
    loss_ = kLoss[rng_.Range(0, 3)];
    duplication_ = kDuplication[rng_.Range(0, 2)];
  } else if (action < 62) {
    NodeId id = pick(live);
    Schedule(now_us_, EventType::kForgetLeader, id);
  } else if (action < 68) {
    NodeId leader = CurrentLeader();
    if (leader != kNoNode && !nodes_.at(leader).busy) {
      std::vector<NodeId> members;
      for (const auto& [id, member] : nodes_.at(leader).raft->members()) members.push_back(id);
      if (!members.empty()) {
        // Refusing (a transfer under way, a target that is itself) is an answer, not a fault.
        (void)nodes_.at(leader).raft->TransferLeadership(pick(members));
        return AfterInput(nodes_.at(leader));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Simulator::OnClient() {
  Schedule(now_us_ + options_.client_interval_us, EventType::kClient, kNoNode);
  NodeId leader = CurrentLeader();
  if (leader == kNoNode) return absl::OkStatus();
  Node& node = nodes_.at(leader);
  if (node.busy) return absl::OkStatus();
  // A leader may refuse (stepping down, transferring, over its uncommitted bound).
  (void)node.raft->Propose(absl::StrCat("client-", ++proposals_));
  return AfterInput(node);
}

absl::Status Simulator::OnOperator() {
  Schedule(now_us_ + options_.operator_interval_us, EventType::kOperator, kNoNode);
  NodeId leader_id = CurrentLeader();
  if (leader_id == kNoNode) return absl::OkStatus();
  Node& leader = nodes_.at(leader_id);
  if (leader.busy) return absl::OkStatus();
  Raft& raft = *leader.raft;
  if (!pending_adds_.empty()) {
    Member member = pending_adds_.front();
    if (nodes_.at(member.id).retired) {
      pending_adds_.pop_front();
      return absl::OkStatus();
    }
    absl::StatusOr<ReplaceProgress> progress = raft.ProposeReplaceOrAdd(member);
    if (progress.ok()) {
      if (progress->step == ReplaceProgress::Step::kDone) {
        pending_adds_.pop_front();
        ++stats_.members_added;
      }
      if (progress->step == ReplaceProgress::Step::kRemovingConflict) {
        // The old member is on its way out; it is never coming back.
        Schedule(now_us_ + rng_.Range(0, 300'000), EventType::kRetire, progress->removed);
      }
    }
    return AfterInput(leader);
  }
  if (!pending_removes_.empty()) {
    NodeId id = pending_removes_.front();
    if (raft.members().count(id) == 0 && raft.config_index() <= raft.commit_index()) {
      pending_removes_.pop_front();
      ++stats_.members_removed;
      Schedule(now_us_ + rng_.Range(0, 300'000), EventType::kRetire, id);
      return absl::OkStatus();
    }
    // Refused while another change is uncommitted: the operator asks again next time.
    (void)raft.ProposeRemoveMember(id);
    return AfterInput(leader);
  }
  if (!chaos_ || !options_.membership_churn || !rng_.Chance(0.08)) return absl::OkStatus();
  std::vector<NodeId> members;
  for (const auto& [id, member] : raft.members()) members.push_back(id);
  bool all_intact = std::all_of(members.begin(), members.end(), [&](NodeId id) {
    auto it = nodes_.find(id);
    return it != nodes_.end() && !it->second.retired;
  });
  int64_t action = rng_.Range(0, 2);
  if (action == 0 && members.size() < static_cast<size_t>(options_.members_max)) {
    Member member{NewNodeId(), NewAddress()};
    pending_adds_.push_back(member);
    return StartNode(AddNode(member.id, member.address));
  } else if (action == 1 && members.size() > 3) {
    pending_removes_.push_back(
        members[static_cast<size_t>(rng_.Range(0, static_cast<int64_t>(members.size()) - 1))]);
  } else if (action == 2 && members.size() >= 3 && all_intact) {
    return Wipe(
        members[static_cast<size_t>(rng_.Range(0, static_cast<int64_t>(members.size()) - 1))]);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Runs

absl::Status Simulator::HealAll() {
  chaos_ = false;
  blocked_.clear();
  loss_ = 0;
  duplication_ = 0;
  if (tracing()) Trace("heal all");
  for (auto& [id, node] : nodes_) {
    if (node.alive || node.retired) continue;
    if (absl::Status status = StartNode(node); !status.ok()) return status;
  }
  return absl::OkStatus();
}

bool Simulator::AllMembersApplied(Index index) const {
  NodeId leader = CurrentLeader();
  if (leader == kNoNode) return false;
  for (const auto& [id, member] : nodes_.at(leader).raft->members()) {
    auto it = nodes_.find(id);
    if (it == nodes_.end() || !it->second.alive || it->second.applied < index) return false;
  }
  return true;
}

absl::Status Simulator::CheckLiveness() {
  const int64_t bound_us =
      options_.liveness_election_timeouts * options_.election_ticks * options_.tick_us;
  bool reached = false;
  int64_t healed_at = now_us_;
  absl::Status status = RunUntilCondition([&] { return LeaderAcceptedByMajority() != kNoNode; },
                                          now_us_ + bound_us, &reached);
  if (!status.ok()) return status;
  if (!reached) {
    return Violation(absl::StrCat("liveness: no leader accepted by a majority ", bound_us / 1000,
                                  "ms after faults healed"));
  }
  status = RunUntilCondition([&] { return OperatorIdle(); }, now_us_ + 4 * bound_us, &reached);
  if (!status.ok()) return status;
  if (!reached) {
    return Violation(absl::StrCat("liveness: membership changes not finished ",
                                  (now_us_ - healed_at) / 1000, "ms after faults healed"));
  }
  // A new entry reaches every member's state machine.
  Index target = 0;
  absl::Status proposed = absl::OkStatus();
  status = RunUntilCondition(
      [&] {
        if (target == 0) {
          NodeId leader = CurrentLeader();
          if (leader == kNoNode || nodes_.at(leader).busy) return false;
          absl::StatusOr<Index> index = nodes_.at(leader).raft->Propose("liveness-marker");
          if (!index.ok()) return false;
          target = *index;
          proposed = AfterInput(nodes_.at(leader));
          if (!proposed.ok()) return true;  // stop here and report it
        }
        return AllMembersApplied(target);
      },
      now_us_ + bound_us, &reached);
  if (!proposed.ok()) return proposed;
  if (!status.ok()) return status;
  if (!reached) {
    return Violation(absl::StrCat("liveness: an entry proposed after healing (index ", target,
                                  ") was not applied by every member in time"));
  }
  // The final membership: every member live, one per address (CheckNode checked the
  // latter everywhere), at least the three the operator never goes below.
  NodeId leader = CurrentLeader();
  for (const auto& [id, member] : nodes_.at(leader).raft->members()) {
    if (nodes_.count(id) == 0 || nodes_.at(id).retired) {
      return Violation(absl::StrCat("membership: retired node ", id, " is still a member"));
    }
  }
  return absl::OkStatus();
}

absl::Status Simulator::RunRandomized() {
  if (options_.vary_per_seed) {
    static constexpr size_t kEntries[] = {1, 2, 8};
    static constexpr size_t kInflight[] = {1, 4, 16};
    static constexpr int64_t kFaultInterval[] = {30'000, 100'000, 200'000};
    static constexpr double kCrashNewLeader[] = {0, 0.1, 0.4};
    options_.max_entries_per_append = kEntries[rng_.Range(0, 2)];
    options_.max_inflight_appends = kInflight[rng_.Range(0, 2)];
    options_.fault_interval_us = kFaultInterval[rng_.Range(0, 2)];
    options_.crash_new_leader_chance = kCrashNewLeader[rng_.Range(0, 2)];
    options_.network_delay_max_us = rng_.Chance(0.5) ? 5'000 : 20'000;
  }
  if (absl::Status status = Bootstrap(
          static_cast<int>(rng_.Range(options_.initial_members_min, options_.initial_members_max)));
      !status.ok()) {
    return status;
  }
  chaos_ = true;
  Schedule(rng_.Range(0, options_.fault_interval_us), EventType::kFault, kNoNode);
  StartClients();
  Schedule(rng_.Range(0, options_.operator_interval_us), EventType::kOperator, kNoNode);
  if (absl::Status status = RunUntil(options_.chaos_duration_us); !status.ok()) return status;
  // The first fault comes within one interval, each next within 1.5 intervals: a run with
  // fewer fault events did not test what it claims to (a broken schedule, not bad luck).
  const int64_t interval_us = options_.fault_interval_us;
  const uint64_t fault_events_min =
      options_.chaos_duration_us < interval_us
          ? 0
          : static_cast<uint64_t>((options_.chaos_duration_us - interval_us) * 2 /
                                  (3 * interval_us)) +
                1;
  if (options_.faults && stats_.fault_events < fault_events_min) {
    return Violation(absl::StrCat("simulator: the chaos phase had ", stats_.fault_events,
                                  " fault events; its schedule guarantees ", fault_events_min));
  }
  if (absl::Status status = HealAll(); !status.ok()) return status;
  if (absl::Status status = CheckLiveness(); !status.ok()) return status;
  // A crashed leader cannot lead its term again, and liveness found a leader: so a run that
  // crashed a leader has seen a leader change. Holds for every seed, whatever its luck.
  if (stats_.leader_crashes > 0 && leaders_.size() < 2) {
    return Violation(absl::StrCat("simulator: ", stats_.leader_crashes,
                                  " leader crashes but one leader in the whole run"));
  }
  return absl::OkStatus();
}

void Simulator::Trace(const std::string& line) {
  trace_.push_back(absl::StrCat(now_us_ / 1000.0, "ms ", line));
  while (trace_.size() > options_.trace_lines) trace_.pop_front();
}

std::string Simulator::TraceTail() const { return absl::StrJoin(trace_, "\n"); }

}  // namespace stanzad::raft::sim
