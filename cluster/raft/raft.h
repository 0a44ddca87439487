// Raft consensus as a pure state machine (the shape of etcd's raft package).
//
// Raft holds no sockets, threads, clocks, files or entropy of its own. The caller feeds it
// inputs and carries out what it asks for:
//
//   inputs                               output (one Ready batch at a time)
//   Tick()            a clock tick        hard_state         persist if present
//   Step(message)     from a peer         entries            append to stable storage
//   Propose...(...)   on the leader       snapshot           install and persist
//   TransferLeadership, ForgetLeader,     messages           send, AFTER the above is durable
//   Campaign, CreateSnapshot              committed_entries  apply to the state machine, in order
//                                         soft_state         leader or role changed
//
// The loop that drives it (the control-plane thread; the simulator does the same):
//
//   raft.Tick() / raft.Step(m) / raft.Propose(data) ...
//   if (raft.HasReady()) {
//     Ready ready = raft.TakeReady();
//     storage.Save(ready.hard_state, ready.snapshot, ready.entries);  // fsync
//     transport.Send(ready.messages);
//     state_machine.Apply(ready.snapshot, ready.committed_entries);
//     raft.Advance();
//   }
//
// REQUIRES: between TakeReady() and Advance() the caller makes no other call that changes
// the Raft (inputs, CreateSnapshot); Raft CHECKs this.
//
// Persistence contract (the storage must keep it; the simulator checks Raft under it):
//   - Ready.snapshot replaces the whole stored log; Ready.entries replace any stored entries
//     at or after entries.front().index; each record is written atomically, in order.
//   - The hard state is written AFTER the snapshot and the entries of the same Ready (or
//     all of it atomically). Its commit index may refer to those entries, which replace a
//     conflicting suffix: a hard state that reached the disk without them would commit
//     stale entries after a crash.
//   - A crash anywhere else while saving a Ready is tolerated: nothing of it has been sent
//     yet, and Create() repairs a term older than the stored log and a commit index beyond it.
//
// Elections follow etcd's raft: randomised timeouts, pre-vote, check-quorum with leader
// stickiness, a no-op entry at the start of each term, leadership transfer. Three additions
// make failover faster without touching safety (pre-votes bind nobody): a (pre-)candidate
// asks members that have not answered again every heartbeat_ticks; two pre-candidates of
// the same round agree which one goes on (the more complete log, then the lower id), so
// that they do not split the real vote; ForgetLeader() lets followers campaign in id order
// a few ticks apart instead of waiting for their election timeout.
//
// Membership is a map of members keyed by NodeId. It changes one member at a time through
// kAddMember/kRemoveMember entries and takes effect on each node when the entry is appended
// to its log (Raft thesis §4.1), not when it commits; a second change may be proposed only
// once the first is committed. A node that is not a member never campaigns. A leader that
// removes itself keeps leading until the removal commits, then hands leadership to the most
// up-to-date member and steps down.
//
// Thread safety: none. One Raft belongs to one thread.
#ifndef STANZAD_CLUSTER_RAFT_RAFT_H_
#define STANZAD_CLUSTER_RAFT_RAFT_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cluster/raft/log.h"
#include "cluster/raft/message.h"
#include "cluster/raft/progress.h"
#include "cluster/raft/types.h"

namespace stanzad::raft {

struct Config {
  NodeId id = kNoNode;

  // A follower that hears nothing from a leader for a random number of ticks in
  // [election_ticks, 2 * election_ticks) campaigns. A leader sends heartbeats every
  // heartbeat_ticks. REQUIRES: 0 < heartbeat_ticks < election_ticks.
  int election_ticks = 10;
  int heartbeat_ticks = 1;

  // A leader that has not heard from a majority for election_ticks steps down. Also
  // enables leader stickiness: a node that heard from a leader within election_ticks
  // ignores (pre-)vote requests that are not part of a leadership transfer.
  bool check_quorum = true;
  // Campaign first with a pre-vote that changes no term, so a node that was cut off does
  // not depose a healthy leader when it returns.
  bool pre_vote = true;

  // Seeds the generator of randomised election timeouts. Nodes must differ (e.g. id mixed
  // with time of boot); the same seed gives the same timeouts, which tests rely on.
  uint64_t random_seed = 0;

  // After ForgetLeader(), members (old leader excluded, ordered by id) campaign one after
  // another, this many ticks apart, so that they do not split the vote.
  int forget_leader_stagger_ticks = 3;

  // Limits.
  size_t max_entries_per_append = 256;
  size_t max_bytes_per_append = 1 << 20;
  size_t max_inflight_appends = 64;  // per follower
  // Per follower: unacknowledged entry bytes (0: no bound). The default is half what a
  // cluster link may queue (PeerTransport::kQueueBytesMax), so that catching up a follower
  // from a log of large entries (imports of 1,000 users each) never overflows its link.
  size_t max_inflight_bytes = 8 << 20;
  size_t max_uncommitted_bytes = 16 << 20;         // proposals beyond this are refused
  size_t max_proposal_bytes = 4 << 20;             // one entry's data
  size_t max_committed_bytes_per_ready = 4 << 20;  // at least one entry is always handed out

  // The last index the caller's state machine applied before this start (0: the snapshot's
  // index). Committed entries after it are handed out again for applying.
  Index applied = 0;

  absl::Status Validate() const;
};

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
std::string_view RoleName(Role role);

// Volatile state the caller may want to show or act upon (routing to the leader).
struct SoftState {
  NodeId leader = kNoNode;
  Role role = Role::kFollower;

  friend bool operator==(const SoftState&, const SoftState&) = default;
};

// What a node had on stable storage at start.
struct PersistentState {
  HardState hard_state;
  Snapshot snapshot;           // metadata.index == 0: none
  std::vector<Entry> entries;  // after the snapshot, in order
};

struct Ready {
  std::optional<SoftState> soft_state;  // set when it changed since the last Ready
  std::optional<HardState> hard_state;  // set when it changed: persist it
  std::vector<Entry> entries;           // append to stable storage (see the contract above)
  // Install into the state machine and persist. Shared with Raft (it sends the same one on).
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<Message> messages;         // send once the above is durable
  std::vector<Entry> committed_entries;  // apply in order (after `snapshot`, if any)
};

// Where a replace-or-add sequence stands (ProposeReplaceOrAdd).
struct ReplaceProgress {
  enum class Step {
    kRemovingConflict,  // proposed removing `removed` (same address or same id); call again
    kAdding,            // proposed adding the member; call again to learn when it commits
    kWaiting,           // a membership change is not yet committed; call again later
    kDone,              // the member is in the committed configuration
  };
  Step step = Step::kWaiting;
  Index index = 0;           // the entry proposed or waited for
  NodeId removed = kNoNode;  // kRemovingConflict: the member being removed
};
std::string_view ReplaceStepName(ReplaceProgress::Step step);

// For `cluster status`: a copy of what the node knows.
struct RaftStatus {
  NodeId id = kNoNode;
  Role role = Role::kFollower;
  Term term = 0;
  NodeId vote = kNoNode;
  NodeId leader = kNoNode;
  Index commit = 0;
  Index applied = 0;
  Index first_index = 0;
  Index last_index = 0;
  Index snapshot_index = 0;
  NodeId transfer_target = kNoNode;
  std::vector<Member> members;
  struct Peer {
    NodeId id = kNoNode;
    Index match = 0;
    Index next = 0;
    Progress::State state = Progress::State::kProbe;
    bool recent_active = false;
  };
  std::vector<Peer> peers;  // leader only
};

class Raft {
 public:
  // Starts a node from what it had on disk (an empty PersistentState for a node that is
  // new: it waits, as a non-member, to be added by a leader). Returns DataLoss when the
  // state is inconsistent (entries not contiguous after the snapshot, terms decreasing).
  static absl::StatusOr<Raft> Create(const Config& config, PersistentState state);

  // The stable state of a member of a brand-new cluster: the members, as committed
  // kAddMember entries 1..n of term 1. Every initial member starts from the same state.
  // InvalidArgument for an empty list, id 0, a duplicated id or address.
  static absl::StatusOr<PersistentState> Bootstrap(const std::vector<Member>& members);

  Raft(Raft&&) = default;
  Raft& operator=(Raft&&) = default;

  // ---- Inputs ----

  // Advances logical time by one tick.
  void Tick();

  // Handles a message from a peer. Returns InvalidArgument for a message that is
  // malformed or not addressed to this node, and OK for everything else, including stale
  // messages that are ignored by design.
  absl::Status Step(const Message& message);

  // Appends a kNormal entry and returns its index. It is committed when it shows up in
  // committed_entries at that index with the term it was proposed at (term() then); a
  // leader change may replace it. FailedPrecondition on a follower (naming the leader, if
  // known) or during a leadership transfer; ResourceExhausted past the size limits.
  absl::StatusOr<Index> Propose(std::string data);

  // Single-server membership changes (leader only). FailedPrecondition while another
  // change is uncommitted, or before the leader committed an entry of its term;
  // AlreadyExists for an id or address already present; NotFound for an unknown id.
  absl::StatusOr<Index> ProposeAddMember(const Member& member);
  absl::StatusOr<Index> ProposeRemoveMember(NodeId id);

  // Brings `member` into the cluster without the member list ever holding two members at
  // one address (a node reset and rejoined with a new id): removes the member at the same
  // address (or with the same id at another address) first, waits for that to commit,
  // then adds. Call it again after each Ready until it returns kDone. Errors as above;
  // FailedPrecondition when the conflicting member is this leader itself.
  absl::StatusOr<ReplaceProgress> ProposeReplaceOrAdd(const Member& member);

  // Leader only: makes `target` the leader as soon as its log is complete (kTimeoutNow).
  // Proposals are refused until it completes or election_ticks pass.
  absl::Status TransferLeadership(NodeId target);

  // The data plane saw the links to the leader drop: forget it, so that this follower
  // grants votes at once and campaigns within a few ticks (staggered by id across
  // followers). No effect unless this node is a follower that knows a leader.
  void ForgetLeader();

  // Starts an election now (pre-vote first when configured). FailedPrecondition when this
  // node is the leader or not a member.
  absl::Status Campaign();

  // The caller's state machine has applied everything through `index` and serialised it
  // as `data`: record a snapshot there and drop the log up to it. Returns the snapshot,
  // which the caller persists (then it may drop its stored entries through `index`).
  // REQUIRES: no Ready outstanding. InvalidArgument unless
  // snapshot_index() < index <= applied_index().
  absl::StatusOr<Snapshot> CreateSnapshot(Index index, std::string data);

  // The same in two steps, for a caller that makes the data (and its file) away from this
  // thread: the metadata of a snapshot at `index` (its term and the members as of it), then
  // the snapshot made with it, recorded without a copy. The second checks the bounds again
  // (a snapshot from the leader may have arrived in between) and that the metadata is
  // still that of SnapshotMetadataAt.
  absl::StatusOr<SnapshotMetadata> SnapshotMetadataAt(Index index) const;
  absl::Status CreateSnapshot(std::shared_ptr<const Snapshot> snapshot);

  // ---- Output ----

  bool HasReady() const;
  Ready TakeReady();
  void Advance();

  // ---- Observers ----

  NodeId id() const { return id_; }
  Term term() const { return term_; }
  Role role() const { return role_; }
  NodeId leader() const { return leader_; }
  NodeId vote() const { return vote_; }
  Index commit_index() const { return log_.commit(); }
  Index applied_index() const { return log_.applied(); }
  Index first_index() const { return log_.first_index(); }
  Index last_index() const { return log_.last_index(); }
  Index snapshot_index() const { return log_.snapshot_index(); }
  std::optional<Term> TermAt(Index index) const { return log_.TermAt(index); }
  // REQUIRES: first_index() <= index <= last_index().
  const Entry& EntryAt(Index index) const { return log_.At(index); }
  // Membership as of the last membership entry in the log (committed or not).
  const std::map<NodeId, Member>& members() const { return members_; }
  bool is_member() const { return members_.count(id_) != 0; }
  // The last membership entry's index (the snapshot's index when the log holds none).
  Index config_index() const { return config_index_; }
  // The latest snapshot (taken here or received), or null.
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }
  RaftStatus GetStatus() const;

 private:
  enum class CampaignKind { kPreElection, kElection, kTransfer };

  explicit Raft(const Config& config);

  // Transitions.
  void BecomeFollower(Term term, NodeId leader);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void ResetTerm(Term term);
  void ResetRandomizedElectionTimeout();
  void StartCampaign(CampaignKind kind);
  void SendVoteRequests();  // to members that have not answered yet
  void PollAndMaybeWin(NodeId from, bool granted);

  // Per role.
  void TickElection();
  void TickHeartbeat();
  void StepLeader(const Message& m);
  void StepCandidate(const Message& m);
  void StepFollower(const Message& m);
  void HandleVoteRequest(const Message& m);
  void HandleAppend(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  void HandleAppendResponse(const Message& m, Progress& pr);

  // Leader's replication.
  bool SendAppend(NodeId to, bool send_if_empty);
  void SendSnapshot(NodeId to, Progress& pr);
  void SendHeartbeat(NodeId to);
  void SendTimeoutNow(NodeId to);
  void BroadcastAppend();
  void BroadcastHeartbeat();
  bool MaybeCommit();
  void AfterCommit(Index old_commit);
  bool CheckQuorumActive();
  absl::StatusOr<Index> AppendByLeader(EntryType type, std::string data);
  absl::Status CheckCanProposeMembership() const;
  absl::Status ValidateNewMember(const Member& member) const;

  // Membership.
  void ApplyConfigEntry(const Entry& entry);
  void RecomputeMembers();
  void SyncProgressWithMembers();
  size_t Quorum() const { return members_.size() / 2 + 1; }

  void StepDownAfterRemoval();
  // Runs at the end of every input: effects that must not happen in the middle of one.
  void FinishInput();

  void Send(Message m);
  uint64_t NextRandom();
  HardState CurrentHardState() const { return HardState{term_, vote_, log_.commit()}; }
  absl::Status NotLeaderError() const;

  Config config_;
  NodeId id_ = kNoNode;
  Term term_ = 0;
  NodeId vote_ = kNoNode;
  NodeId leader_ = kNoNode;
  Role role_ = Role::kFollower;
  RaftLog log_;

  std::map<NodeId, Member> members_;
  std::map<NodeId, Member> snapshot_members_;  // members as of log_.snapshot_index()
  Index config_index_ = 0;
  std::shared_ptr<const Snapshot> snapshot_;

  std::map<NodeId, Progress> progress_;  // leader: every member but itself
  std::map<NodeId, bool> votes_;         // candidate: who granted (true) or refused
  NodeId transfer_target_ = kNoNode;
  bool campaign_transfer_ = false;  // candidate: campaigning because of a transfer
  bool broadcast_pending_ = false;  // leader: new entries to send at the next Ready
  bool step_down_pending_ = false;  // leader: its own removal committed
  size_t uncommitted_bytes_ = 0;

  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  uint64_t random_state_ = 0;

  std::vector<Message> outbox_;
  HardState last_hard_state_;
  SoftState last_soft_state_;

  // The Ready handed out and not yet acknowledged.
  bool ready_outstanding_ = false;
  Index ready_last_entry_ = 0;  // last index of Ready.entries (0: none)
  bool ready_has_snapshot_ = false;
};

}  // namespace stanzad::raft

#endif  // STANZAD_CLUSTER_RAFT_RAFT_H_
