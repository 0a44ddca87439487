// A deterministic simulator for the Raft state machine.
//
// Everything a real cluster does to Raft happens here in simulated time from one seed:
// clocks that tick with their own phase, a network that delays (so reorders), loses and
// duplicates messages and that can be partitioned symmetrically or one way, disks that take
// time to fsync and lose what was not yet synced when a node crashes, disks wiped (the node
// returns with a new id at the same address and an operator replaces it), and membership
// churn driven through the leader's API.
//
// After every event the simulator checks the safety properties of Raft:
//   - election safety: at most one leader per term;
//   - log matching: two stable logs holding an entry with the same index and term hold
//     the same entries up to it (a hash chain over each log, compared across nodes);
//   - leader completeness: a new leader of term T holds every entry committed in a term
//     before T;
//   - committed entries are never lost or changed: every node that commits index i has the
//     same term there;
//   - state-machine safety: every node that applies index i reaches the same state digest;
//   - membership: no node lists two members at one address.
// RunRandomized() then heals every fault and checks liveness: a leader accepted by a
// majority within a bounded time, a new entry applied by every member, and the operator's
// replacements finished.
//
// A violation cannot be lost: every path that finds one returns it, the run stops at that
// event, and the simulator remembers it, so any later Run* call returns it again (a run is
// never continued past a violation, whose state may be half-applied).
//
// Same seed, same run: no wall clock, no unordered iteration, no std distributions.
#ifndef STANZAD_TESTS_SIMULATION_RAFT_SIMULATOR_H_
#define STANZAD_TESTS_SIMULATION_RAFT_SIMULATOR_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "cluster/raft/raft.h"

namespace stanzad::raft::sim {

// A small, fast, portable PRNG (splitmix64) with the helpers the simulator needs.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi].
  int64_t Range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Next() % static_cast<uint64_t>(hi - lo + 1));
  }
  bool Chance(double p) { return static_cast<double>(Next() >> 11) * 0x1.0p-53 < p; }

 private:
  uint64_t state_;
};

struct SimOptions {
  uint64_t seed = 1;

  // Time. One tick is tick_us of simulated time.
  int64_t tick_us = 10'000;
  int election_ticks = 10;
  int heartbeat_ticks = 2;
  bool pre_vote = true;
  bool check_quorum = true;
  int64_t network_delay_min_us = 1'000;
  int64_t network_delay_max_us = 5'000;
  int64_t disk_sync_min_us = 50;
  int64_t disk_sync_max_us = 500;

  // The cluster.
  int initial_members_min = 3;
  int initial_members_max = 5;
  int members_max = 5;
  size_t snapshot_every_entries = 24;

  // RunRandomized: a chaos phase, then faults heal and liveness is checked.
  int64_t chaos_duration_us = 3'000'000;
  int64_t fault_interval_us = 100'000;  // how often a fault may be injected
  int64_t client_interval_us = 25'000;  // how often a client proposes to the leader
  int64_t operator_interval_us = 30'000;
  bool faults = true;
  bool membership_churn = true;
  // After healing, each liveness step must finish within this many election timeouts.
  int liveness_election_timeouts = 12;
  // RunRandomized also varies, per seed, the append and inflight limits, the fault rate and
  // how often a new leader is crashed soon after its election (the "figure 8" pattern).
  bool vary_per_seed = true;
  size_t max_entries_per_append = 8;
  size_t max_inflight_appends = 16;
  double crash_new_leader_chance = 0.1;

  // Send every message through EncodeMessage/DecodeMessage.
  bool wire_codec = true;

  // Keep the last trace_lines events in a trace (costly; for replaying a failed seed).
  size_t trace_lines = 0;
};

// What happened in a run, to show that the faults were exercised.
struct SimStats {
  uint64_t leaders = 0;         // distinct (term, leader) pairs
  uint64_t leader_changes = 0;  // leaders after the first
  uint64_t fault_events = 0;    // chances the chaos phase had to inject a fault
  uint64_t crashes = 0;         // injected (Crash), not members retired or wiped
  uint64_t leader_crashes = 0;  // crashes of a node that was leader then
  uint64_t wipes = 0;
  uint64_t partitions = 0;
  uint64_t members_added = 0;  // replace-or-add sequences finished
  uint64_t members_removed = 0;
  uint64_t snapshots_installed = 0;
  uint64_t messages_sent = 0;
  uint64_t messages_dropped = 0;
  uint64_t entries_committed = 0;  // highest committed index

  void Add(const SimStats& other);
  std::string ToString() const;
};

class Simulator {
 public:
  explicit Simulator(const SimOptions& options);

  // The whole randomized run: bootstrap, chaos, heal, liveness. OK or the first violation.
  // With faults on it also fails when the chaos phase did not do what it is for: fewer
  // fault events than its schedule guarantees, or a crashed leader never replaced.
  absl::Status RunRandomized();

  // ---- Building blocks (the failover benchmark uses these) ----
  // Each returns the first violation found, as the Run* calls do.

  // Bootstraps `members` nodes as one new cluster and starts them.
  absl::Status Bootstrap(int members);
  // Runs events until now() reaches `until_us` or an invariant fails.
  absl::Status RunUntil(int64_t until_us);
  // Runs until `done()` holds (checked after each event) or `deadline_us`. *reached says which.
  absl::Status RunUntilCondition(const std::function<bool()>& done, int64_t deadline_us,
                                 bool* reached);
  // A crash keeps a random prefix of the Ready being written, so it checks that prefix.
  absl::Status Crash(NodeId id);
  absl::Status Restart(NodeId id);
  // Calls ForgetLeader on the node at `at_us` (when it is up).
  void ScheduleForgetLeader(NodeId id, int64_t at_us);
  // Starts a client that proposes to the leader every options().client_interval_us.
  void StartClients();

  // A leader and term that a majority of the leader's configuration (itself included,
  // only live nodes) acknowledges as leader, or kNoNode.
  NodeId LeaderAcceptedByMajority(Term* term = nullptr) const;
  // The live leader with the highest term, or kNoNode.
  NodeId CurrentLeader() const;
  std::vector<NodeId> LiveNodes() const;
  int64_t now_us() const { return now_us_; }
  uint64_t events() const { return events_; }
  // A fingerprint of the run (for determinism tests).
  uint64_t fingerprint() const { return fingerprint_; }
  std::string TraceTail() const;
  const SimOptions& options() const { return options_; }
  SimStats stats() const;

 private:
  struct StableState {
    HardState hard_state;
    Snapshot snapshot;
    std::vector<Entry> entries;
    std::vector<uint64_t> chains;  // hash chain of the log through each entry
  };

  struct Node {
    NodeId id = kNoNode;
    std::string address;
    bool alive = false;
    bool retired = false;  // removed from the cluster or disk wiped: never restarts
    uint64_t incarnation = 0;
    std::optional<Raft> raft;
    StableState disk;
    // A Ready being written to disk; inputs wait meanwhile.
    bool busy = false;
    std::optional<Ready> pending;
    std::deque<Message> inbox;
    int deferred_ticks = 0;
    bool deferred_forget = false;
    // The state machine (volatile): a digest chained over applied entries.
    Index applied = 0;
    uint64_t digest = 0;
    // Invariant bookkeeping.
    Index checked_commit = 0;
    Role last_role = Role::kFollower;
    Term last_term = 0;
    Index traced_config_index = 0;
    size_t traced_members = 0;
  };

  enum class EventType : uint8_t {
    kTick,
    kDeliver,
    kPersisted,
    kRestart,
    kForgetLeader,
    kHealNetwork,
    kFault,
    kClient,
    kOperator,
    kRetire,
    kCrash,
  };

  struct Event {
    int64_t time_us = 0;
    uint64_t sequence = 0;
    EventType type = EventType::kTick;
    NodeId node = kNoNode;
    uint64_t incarnation = 0;
    Message message;
  };
  struct EventLater {
    bool operator()(const Event& a, const Event& b) const {
      return a.time_us != b.time_us ? a.time_us > b.time_us : a.sequence > b.sequence;
    }
  };

  // Events.
  void Schedule(int64_t at_us, EventType type, NodeId node, uint64_t incarnation = 0,
                Message message = {});
  absl::Status Dispatch(Event& event);
  absl::Status OnTick(Node& node);
  absl::Status OnDeliver(Message& message);
  absl::Status OnPersisted(Node& node);
  absl::Status OnFault();
  absl::Status OnClient();
  absl::Status OnOperator();

  // Node plumbing.
  Node& AddNode(NodeId id, const std::string& address);
  absl::Status StartNode(Node& node);
  // Takes a node down as a power cut does (see Crash); counts nothing.
  absl::Status PowerOff(Node& node);
  absl::Status AfterInput(Node& node);
  absl::Status DrainDeferred(Node& node);
  absl::Status Persist(Node& node, size_t write_count);
  absl::Status ApplyCommitted(Node& node, const Ready& ready);
  absl::Status SendMessages(std::vector<Message>& messages);
  absl::Status MaybeSnapshot(Node& node);
  absl::Status Retire(NodeId id);
  absl::Status Wipe(NodeId id);
  NodeId NewNodeId();
  std::string NewAddress();

  // Invariants.
  absl::Status CheckNode(Node& node);
  absl::Status CheckStableAppend(Node& node, size_t from_position);
  // Makes the violation's status and remembers the first one (see violation_).
  absl::Status Violation(const std::string& what);

  // Liveness after healing.
  absl::Status HealAll();
  absl::Status CheckLiveness();
  bool AllMembersApplied(Index index) const;
  bool OperatorIdle() const { return pending_adds_.empty() && pending_removes_.empty(); }

  void Trace(const std::string& line);
  bool tracing() const { return options_.trace_lines > 0; }

  SimOptions options_;
  Rng rng_;
  int64_t now_us_ = 0;
  uint64_t next_sequence_ = 0;
  uint64_t events_ = 0;
  uint64_t fingerprint_ = 0;
  std::vector<Event> queue_;  // a heap ordered by EventLater
  std::map<NodeId, Node> nodes_;
  std::set<std::pair<NodeId, NodeId>> blocked_;  // (from, to) pairs the network drops
  double loss_ = 0;
  double duplication_ = 0;
  bool chaos_ = false;
  uint64_t proposals_ = 0;
  int next_address_ = 1;
  SimStats stats_;
  // The first violation found. Run* returns it from then on, so a violation that some path
  // failed to return still fails the run, and nothing runs on a state it left half-applied.
  absl::Status violation_;

  // The operator: members to bring in (ProposeReplaceOrAdd) and ids to remove.
  std::deque<Member> pending_adds_;
  std::deque<NodeId> pending_removes_;

  // Global knowledge for the invariants.
  std::map<Term, NodeId> leaders_;
  std::unordered_map<uint64_t, uint64_t> chain_by_entry_;  // hash(index, term) -> chain
  std::vector<Term> committed_terms_;                      // [index] -> term, 0 = unknown
  // [index] -> the term in which the entry was first known committed (the committing
  // leader's). Leader completeness covers entries committed in earlier terms only: a
  // candidate may still win an older term with votes cast before a newer term commits.
  std::vector<Term> committed_in_term_;
  std::vector<uint64_t> applied_digests_;  // [index] -> digest, 0 = unknown

  std::deque<std::string> trace_;
};

}  // namespace stanzad::raft::sim

#endif  // STANZAD_TESTS_SIMULATION_RAFT_SIMULATOR_H_
