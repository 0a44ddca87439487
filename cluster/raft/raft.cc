#include "cluster/raft/raft.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/check.h"

namespace stanzad::raft {

namespace {

bool IsValidEntryType(EntryType type) {
  return static_cast<uint8_t>(type) <= static_cast<uint8_t>(EntryType::kRemoveMember);
}

bool IsConfigEntry(const Entry& entry) {
  return entry.type == EntryType::kAddMember || entry.type == EntryType::kRemoveMember;
}

// Folds one membership entry into `members`. Deterministic on every node, including for
// data that does not decode (then nothing changes).
void FoldConfigEntry(const Entry& entry, std::map<NodeId, Member>& members) {
  Member member;
  if (!DecodeMember(entry.data, &member)) return;
  if (entry.type == EntryType::kAddMember) {
    members[member.id] = std::move(member);
  } else if (entry.type == EntryType::kRemoveMember) {
    members.erase(member.id);
  }
}

bool AreValidMembers(const std::vector<Member>& members) {
  std::set<NodeId> ids;
  std::set<std::string> addresses;
  for (const Member& member : members) {
    if (member.id == kNoNode || member.address.empty() ||
        member.address.size() > kMemberAddressBytesMax) {
      return false;
    }
    if (!ids.insert(member.id).second || !addresses.insert(member.address).second) return false;
  }
  return true;
}

absl::Status ValidateMessage(const Message& m) {
  if (m.type < MessageType::kPreVote || m.type > kMessageTypeMax) {
    return absl::InvalidArgumentError("unknown message type");
  }
  if (m.from == kNoNode) return absl::InvalidArgumentError("message without sender");
  if (m.term == 0) return absl::InvalidArgumentError("message without term");
  if (!m.entries.empty() && m.type != MessageType::kAppend) {
    return absl::InvalidArgumentError("entries in a message that is not an append");
  }
  Term previous_term = m.log_term;
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const Entry& entry = m.entries[i];
    if (entry.index != m.index + 1 + i) {
      return absl::InvalidArgumentError("append entries are not consecutive");
    }
    if (entry.term < previous_term || entry.term > m.term || !IsValidEntryType(entry.type)) {
      return absl::InvalidArgumentError("append entry with an impossible term or type");
    }
    previous_term = entry.term;
  }
  if (m.type == MessageType::kSnapshot) {
    if (m.snapshot == nullptr) return absl::InvalidArgumentError("snapshot message without one");
    const SnapshotMetadata& meta = m.snapshot->metadata;
    if (meta.index == 0 || meta.term == 0 || meta.term > m.term || meta.members.empty() ||
        !AreValidMembers(meta.members)) {
      return absl::InvalidArgumentError("snapshot with invalid metadata");
    }
  } else if (m.snapshot != nullptr) {
    return absl::InvalidArgumentError("snapshot in a message that is not kSnapshot");
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kPreVote:
      return "PreVote";
    case MessageType::kPreVoteResponse:
      return "PreVoteResponse";
    case MessageType::kVote:
      return "Vote";
    case MessageType::kVoteResponse:
      return "VoteResponse";
    case MessageType::kAppend:
      return "Append";
    case MessageType::kAppendResponse:
      return "AppendResponse";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatResponse:
      return "HeartbeatResponse";
    case MessageType::kSnapshot:
      return "Snapshot";
    case MessageType::kTimeoutNow:
      return "TimeoutNow";
  }
  return "Unknown";
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "unknown";
}

std::string_view ReplaceStepName(ReplaceProgress::Step step) {
  switch (step) {
    case ReplaceProgress::Step::kRemovingConflict:
      return "removing-conflict";
    case ReplaceProgress::Step::kAdding:
      return "adding";
    case ReplaceProgress::Step::kWaiting:
      return "waiting";
    case ReplaceProgress::Step::kDone:
      return "done";
  }
  return "unknown";
}

absl::Status Config::Validate() const {
  if (id == kNoNode) return absl::InvalidArgumentError("raft config: id must not be 0");
  if (heartbeat_ticks <= 0) return absl::InvalidArgumentError("raft config: heartbeat_ticks <= 0");
  if (election_ticks <= heartbeat_ticks) {
    return absl::InvalidArgumentError("raft config: election_ticks must exceed heartbeat_ticks");
  }
  if (forget_leader_stagger_ticks < 0) {
    return absl::InvalidArgumentError("raft config: forget_leader_stagger_ticks < 0");
  }
  if (max_entries_per_append == 0 || max_inflight_appends == 0 || max_bytes_per_append == 0) {
    return absl::InvalidArgumentError("raft config: append limits must be positive");
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Construction

Raft::Raft(const Config& config) : config_(config), id_(config.id) {
  random_state_ = config.random_seed;
  ResetRandomizedElectionTimeout();
}

absl::StatusOr<Raft> Raft::Create(const Config& config, PersistentState state) {
  if (absl::Status status = config.Validate(); !status.ok()) return status;
  const Snapshot& snapshot = state.snapshot;
  if (!AreValidMembers(snapshot.metadata.members)) {
    return absl::DataLossError("raft state: snapshot with invalid members");
  }
  // Keep the entries after the snapshot; they must continue it without gaps.
  std::vector<Entry> entries;
  entries.reserve(state.entries.size());
  Index expected = snapshot.metadata.index + 1;
  Term previous_term = snapshot.metadata.term;
  for (Entry& entry : state.entries) {
    if (entry.index <= snapshot.metadata.index) continue;
    if (entry.index != expected) {
      return absl::DataLossError(absl::StrCat("raft state: log has a gap at index ", expected));
    }
    if (entry.term < previous_term || !IsValidEntryType(entry.type)) {
      return absl::DataLossError(absl::StrCat("raft state: bad entry at index ", entry.index));
    }
    previous_term = entry.term;
    ++expected;
    entries.push_back(std::move(entry));
  }

  Raft raft(config);
  const HardState& hs = state.hard_state;
  Index last = snapshot.metadata.index + entries.size();
  Term last_term = entries.empty() ? snapshot.metadata.term : entries.back().term;
  // A crash while saving a Ready may have kept entries but not the hard state, or the hard
  // state but not the entries; nothing of that Ready was sent, so repair both ways.
  raft.term_ = std::max(hs.term, last_term);
  raft.vote_ = raft.term_ == hs.term ? hs.vote : kNoNode;
  Index commit = std::clamp(hs.commit, snapshot.metadata.index, last);
  raft.log_.Restore(snapshot.metadata.index, snapshot.metadata.term, std::move(entries), commit);
  if (config.applied > snapshot.metadata.index) {
    raft.log_.SetApplied(std::min(config.applied, commit));
  }
  if (snapshot.metadata.index > 0) {
    raft.snapshot_ = std::make_shared<const Snapshot>(snapshot);
  }
  for (const Member& member : snapshot.metadata.members) {
    raft.snapshot_members_[member.id] = member;
  }
  raft.RecomputeMembers();
  raft.last_hard_state_ = hs;
  raft.last_soft_state_ = SoftState{kNoNode, Role::kFollower};
  return raft;
}

absl::StatusOr<PersistentState> Raft::Bootstrap(const std::vector<Member>& members) {
  if (members.empty()) return absl::InvalidArgumentError("bootstrap: no members");
  if (!AreValidMembers(members)) {
    return absl::InvalidArgumentError(
        "bootstrap: members need a non-zero id, an address, and no id or address twice");
  }
  PersistentState state;
  for (const Member& member : members) {
    Index index = state.entries.size() + 1;
    state.entries.push_back(Entry{1, index, EntryType::kAddMember, EncodeMember(member)});
  }
  state.hard_state = HardState{1, kNoNode, static_cast<Index>(members.size())};
  return state;
}

// ---------------------------------------------------------------------------------------
// Small helpers

uint64_t Raft::NextRandom() {
  // splitmix64: tiny, full period, and good enough to spread election timeouts.
  uint64_t z = (random_state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      config_.election_ticks +
      static_cast<int>(NextRandom() % static_cast<uint64_t>(config_.election_ticks));
}

void Raft::Send(Message m) {
  CHECK_NE(m.to, id_);
  m.from = id_;
  outbox_.push_back(std::move(m));
}

absl::Status Raft::NotLeaderError() const {
  if (leader_ == kNoNode) {
    return absl::FailedPreconditionError("not the leader; no leader is known");
  }
  return absl::FailedPreconditionError(absl::StrCat("not the leader; the leader is ", leader_));
}

void Raft::FinishInput() {
  if (step_down_pending_) {
    step_down_pending_ = false;
    if (role_ == Role::kLeader) StepDownAfterRemoval();
  }
}

// ---------------------------------------------------------------------------------------
// Membership

void Raft::ApplyConfigEntry(const Entry& entry) {
  FoldConfigEntry(entry, members_);
  config_index_ = entry.index;
  if (role_ == Role::kLeader) SyncProgressWithMembers();
}

void Raft::RecomputeMembers() {
  members_ = snapshot_members_;
  config_index_ = log_.snapshot_index();
  for (Index i = log_.first_index(); i <= log_.last_index(); ++i) {
    const Entry& entry = log_.At(i);
    if (IsConfigEntry(entry)) {
      FoldConfigEntry(entry, members_);
      config_index_ = i;
    }
  }
  if (role_ == Role::kLeader) SyncProgressWithMembers();
}

void Raft::SyncProgressWithMembers() {
  for (const auto& [id, member] : members_) {
    if (id == id_ || progress_.count(id) != 0) continue;
    Progress pr(config_.max_inflight_appends, config_.max_inflight_bytes);
    pr.next = log_.last_index() + 1;
    pr.recent_active = true;  // a newcomer gets one CheckQuorum round of grace
    progress_.emplace(id, std::move(pr));
  }
  for (auto it = progress_.begin(); it != progress_.end();) {
    if (members_.count(it->first) == 0) {
      if (transfer_target_ == it->first) transfer_target_ = kNoNode;
      it = progress_.erase(it);
    } else {
      ++it;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Transitions

void Raft::ResetTerm(Term term) {
  if (term != term_) {
    term_ = term;
    vote_ = kNoNode;
  }
  leader_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  transfer_target_ = kNoNode;
  votes_.clear();
  progress_.clear();
  broadcast_pending_ = false;
  step_down_pending_ = false;
  uncommitted_bytes_ = 0;
}

void Raft::BecomeFollower(Term term, NodeId leader) {
  ResetTerm(term);
  role_ = Role::kFollower;
  leader_ = leader;
}

void Raft::BecomePreCandidate() {
  CHECK(role_ != Role::kLeader);
  // The term does not change: a pre-vote asks "would you", and costs nobody a term.
  role_ = Role::kPreCandidate;
  leader_ = kNoNode;
  votes_.clear();
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
}

void Raft::BecomeCandidate() {
  CHECK(role_ != Role::kLeader);
  ResetTerm(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void Raft::BecomeLeader() {
  CHECK(role_ == Role::kCandidate);
  ResetTerm(term_);
  role_ = Role::kLeader;
  leader_ = id_;
  SyncProgressWithMembers();
  // The no-op lets the new leader commit (and so learn the commit index) in its own term.
  log_.AppendOwn(Entry{term_, log_.last_index() + 1, EntryType::kNoop, {}});
  broadcast_pending_ = true;
}

void Raft::StartCampaign(CampaignKind kind) {
  if (!is_member() || role_ == Role::kLeader) return;
  if (kind == CampaignKind::kPreElection) {
    BecomePreCandidate();
  } else {
    BecomeCandidate();
  }
  campaign_transfer_ = kind == CampaignKind::kTransfer;
  Role campaigning_as = role_;
  PollAndMaybeWin(id_, true);
  if (role_ != campaigning_as) return;  // a cluster of one wins at once
  SendVoteRequests();
}

void Raft::SendVoteRequests() {
  bool pre = role_ == Role::kPreCandidate;
  for (const auto& [id, member] : members_) {
    if (id == id_ || votes_.count(id) != 0) continue;
    Message m;
    m.type = pre ? MessageType::kPreVote : MessageType::kVote;
    m.to = id;
    m.term = pre ? term_ + 1 : term_;
    m.index = log_.last_index();
    m.log_term = log_.last_term();
    m.transfer = campaign_transfer_;
    Send(std::move(m));
  }
}

void Raft::PollAndMaybeWin(NodeId from, bool granted) {
  if (members_.count(from) == 0) return;
  votes_.emplace(from, granted);  // the first answer counts
  size_t granted_count = 0;
  size_t rejected_count = 0;
  for (const auto& [id, vote] : votes_) {
    if (members_.count(id) == 0) continue;
    (vote ? granted_count : rejected_count)++;
  }
  if (granted_count >= Quorum()) {
    if (role_ == Role::kPreCandidate) {
      StartCampaign(CampaignKind::kElection);
    } else {
      BecomeLeader();
    }
  } else if (rejected_count > members_.size() - Quorum()) {
    BecomeFollower(term_, kNoNode);
  }
}

// ---------------------------------------------------------------------------------------
// Ticks

void Raft::Tick() {
  CHECK_MSG(!ready_outstanding_, "Tick between TakeReady and Advance");
  if (role_ == Role::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
  FinishInput();
}

void Raft::TickElection() {
  ++election_elapsed_;
  if (is_member() && election_elapsed_ >= randomized_election_timeout_) {
    election_elapsed_ = 0;
    StartCampaign(config_.pre_vote ? CampaignKind::kPreElection : CampaignKind::kElection);
    return;
  }
  if (role_ == Role::kPreCandidate || role_ == Role::kCandidate) {
    // Ask again whoever has not answered: the request may have been lost, or refused
    // unanswered by a node that still heard from the old leader a moment ago.
    if (++heartbeat_elapsed_ >= config_.heartbeat_ticks) {
      heartbeat_elapsed_ = 0;
      SendVoteRequests();
    }
  }
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_ticks) {
    election_elapsed_ = 0;
    if (config_.check_quorum && !CheckQuorumActive()) {
      BecomeFollower(term_, kNoNode);
      return;
    }
    transfer_target_ = kNoNode;  // a transfer that took a whole election timeout failed
  }
  if (heartbeat_elapsed_ >= config_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    BroadcastHeartbeat();
  }
}

bool Raft::CheckQuorumActive() {
  size_t active = 0;
  for (const auto& [id, member] : members_) {
    if (id == id_) {
      ++active;
      continue;
    }
    auto it = progress_.find(id);
    if (it != progress_.end() && it->second.recent_active) ++active;
  }
  for (auto& [id, pr] : progress_) pr.recent_active = false;
  return active >= Quorum();
}

// ---------------------------------------------------------------------------------------
// Messages

absl::Status Raft::Step(const Message& m) {
  CHECK_MSG(!ready_outstanding_, "Step between TakeReady and Advance");
  if (m.to != id_) return absl::InvalidArgumentError("message for another node");
  if (m.from == id_) return absl::InvalidArgumentError("message from this node itself");
  if (absl::Status status = ValidateMessage(m); !status.ok()) return status;

  if (m.term > term_) {
    if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
      // Leader stickiness: while we hear from a leader, a (pre-)candidate is more likely
      // a node that was cut off than a sign that the leader is gone.
      bool in_lease =
          config_.check_quorum && leader_ != kNoNode && election_elapsed_ < config_.election_ticks;
      if (in_lease && !m.transfer) return absl::OkStatus();
    }
    if (m.type == MessageType::kPreVote) {
      // A pre-vote changes no term.
    } else if (m.type == MessageType::kPreVoteResponse && !m.reject) {
      // A pre-vote granted for the term we would campaign at.
    } else if (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
               m.type == MessageType::kSnapshot) {
      BecomeFollower(m.term, m.from);
    } else if (m.type == MessageType::kVote) {
      // Only a granted vote restarts the election timer (Raft §5.2). Otherwise candidates
      // with stale logs, campaigning in turn, could keep the node with the most complete
      // log from ever campaigning.
      int elapsed = election_elapsed_;
      BecomeFollower(m.term, kNoNode);
      election_elapsed_ = elapsed;
    } else {
      BecomeFollower(m.term, kNoNode);
    }
  } else if (m.term < term_) {
    if (m.type == MessageType::kHeartbeat || m.type == MessageType::kAppend ||
        m.type == MessageType::kSnapshot) {
      // A leader from an older term (cut off, now back): tell it our term so it steps
      // down (Raft §5.1). Without this a stale leader and a node that cannot campaign
      // (pre-vote refused, or not a member in its own stale configuration) could wait on
      // each other forever.
      Message response;
      response.type = MessageType::kAppendResponse;
      response.to = m.from;
      response.term = term_;
      Send(std::move(response));
    } else if (m.type == MessageType::kPreVote || m.type == MessageType::kVote) {
      // Refuse with our term so that the candidate catches up. Ignoring it, as etcd does
      // for votes, can leave a candidate forever a term behind a node that campaigns in a
      // stale configuration that does not include it.
      Message response;
      response.type = m.type == MessageType::kPreVote ? MessageType::kPreVoteResponse
                                                      : MessageType::kVoteResponse;
      response.to = m.from;
      response.term = term_;
      response.reject = true;
      Send(std::move(response));
    }
    FinishInput();
    return absl::OkStatus();
  }

  if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
    HandleVoteRequest(m);
  } else {
    switch (role_) {
      case Role::kLeader:
        StepLeader(m);
        break;
      case Role::kPreCandidate:
      case Role::kCandidate:
        StepCandidate(m);
        break;
      case Role::kFollower:
        StepFollower(m);
        break;
    }
  }
  FinishInput();
  return absl::OkStatus();
}

void Raft::HandleVoteRequest(const Message& m) {
  bool pre = m.type == MessageType::kPreVote;
  bool can_vote =
      vote_ == m.from || (vote_ == kNoNode && leader_ == kNoNode) || (pre && m.term > term_);
  Message response;
  response.type = pre ? MessageType::kPreVoteResponse : MessageType::kVoteResponse;
  response.to = m.from;
  if (pre && role_ == Role::kPreCandidate && m.term == term_ + 1) {
    // Two pre-candidates of the same round would both win their pre-votes and then split
    // the real vote. Both decide alike which one goes on: the more complete log, then the
    // lower id. The other grants and steps back.
    bool theirs_longer = m.log_term > log_.last_term() ||
                         (m.log_term == log_.last_term() && m.index > log_.last_index());
    bool same_log = m.log_term == log_.last_term() && m.index == log_.last_index();
    if (theirs_longer || (same_log && m.from < id_)) {
      BecomeFollower(term_, kNoNode);
      response.term = m.term;
    } else {
      response.term = term_;
      response.reject = true;
    }
    Send(std::move(response));
    return;
  }
  if (can_vote && log_.IsUpToDate(m.index, m.log_term)) {
    response.term = m.term;
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    response.term = term_;
    response.reject = true;
  }
  Send(std::move(response));
}

void Raft::StepFollower(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      election_elapsed_ = 0;
      leader_ = m.from;
      HandleAppend(m);
      break;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      leader_ = m.from;
      HandleHeartbeat(m);
      break;
    case MessageType::kSnapshot:
      election_elapsed_ = 0;
      leader_ = m.from;
      HandleSnapshot(m);
      break;
    case MessageType::kTimeoutNow:
      // Only the leader may hand leadership over; from anyone else it would be a way
      // around leader stickiness.
      if (m.from == leader_) StartCampaign(CampaignKind::kTransfer);
      break;
    default:
      break;  // stale responses from a past role
  }
}

void Raft::StepCandidate(const Message& m) {
  MessageType response_type =
      role_ == Role::kPreCandidate ? MessageType::kPreVoteResponse : MessageType::kVoteResponse;
  switch (m.type) {
    case MessageType::kAppend:
    case MessageType::kHeartbeat:
    case MessageType::kSnapshot:
      // Someone won this term.
      BecomeFollower(m.term, m.from);
      StepFollower(m);
      return;
    default:
      break;
  }
  if (m.type != response_type) return;
  // A granted pre-vote is only for the term we would campaign at.
  if (role_ == Role::kPreCandidate && !m.reject && m.term != term_ + 1) return;
  PollAndMaybeWin(m.from, !m.reject);
}

void Raft::StepLeader(const Message& m) {
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;  // not (or no longer) a member
  Progress& pr = it->second;
  switch (m.type) {
    case MessageType::kAppendResponse:
      pr.recent_active = true;
      HandleAppendResponse(m, pr);
      break;
    case MessageType::kHeartbeatResponse:
      pr.recent_active = true;
      pr.probe_sent = false;
      if (pr.state == Progress::State::kReplicate && pr.inflights.full()) {
        // Perhaps an append was lost: free a slot so that the next one finds out.
        pr.inflights.FreeFirst();
      }
      if (pr.match < log_.last_index()) SendAppend(m.from, true);
      break;
    default:
      break;
  }
}

void Raft::HandleAppendResponse(const Message& m, Progress& pr) {
  if (m.index > log_.last_index()) return;  // acknowledges what we never sent
  if (m.reject) {
    Index hint = m.reject_hint;
    if (m.log_term > 0) hint = log_.FindConflictByTerm(m.reject_hint, m.log_term).first;
    if (pr.MaybeDecreaseTo(m.index, hint)) {
      if (pr.state == Progress::State::kReplicate) pr.BecomeProbe();
      SendAppend(m.from, true);
    }
    return;
  }
  bool was_paused = pr.IsPaused();
  if (!pr.MaybeUpdate(m.index)) return;
  switch (pr.state) {
    case Progress::State::kProbe:
      pr.BecomeReplicate();
      break;
    case Progress::State::kSnapshot:
      if (pr.match + 1 >= log_.first_index()) {
        pr.BecomeReplicate();
      } else {
        pr.BecomeProbe();  // it needs a newer snapshot: the next append sends one
      }
      break;
    case Progress::State::kReplicate:
      pr.inflights.FreeUpTo(m.index);
      break;
  }
  NodeId from = m.from;
  if (MaybeCommit()) {
    broadcast_pending_ = true;  // followers learn the new commit index
  } else if (was_paused) {
    SendAppend(from, true);
  }
  while (SendAppend(from, false)) {
  }
  if (from == transfer_target_ && pr.match == log_.last_index()) SendTimeoutNow(from);
}

void Raft::HandleAppend(const Message& m) {
  Message response;
  response.type = MessageType::kAppendResponse;
  response.to = m.from;
  response.term = term_;
  if (m.index < log_.commit()) {
    response.index = log_.commit();
    Send(std::move(response));
    return;
  }
  Index old_last = log_.last_index();
  Index last_new = 0;
  Index truncated_from = 0;
  switch (log_.MaybeAppend(m.index, m.log_term, m.commit, m.entries, &last_new, &truncated_from)) {
    case RaftLog::AppendResult::kAppended:
      if (truncated_from != 0) {
        RecomputeMembers();
      } else {
        for (const Entry& entry : m.entries) {
          if (entry.index > old_last && IsConfigEntry(entry)) ApplyConfigEntry(entry);
        }
      }
      response.index = last_new;
      break;
    case RaftLog::AppendResult::kMismatch: {
      Index hint = std::min(m.index, log_.last_index());
      auto [hint_index, hint_term] = log_.FindConflictByTerm(hint, m.log_term);
      response.index = m.index;
      response.reject = true;
      response.reject_hint = hint_index;
      response.log_term = hint_term;
      break;
    }
    case RaftLog::AppendResult::kConflictsWithCommitted:
      return;  // a broken leader; do not answer
  }
  Send(std::move(response));
}

void Raft::HandleHeartbeat(const Message& m) {
  // The leader sends min(its commit, what it knows we match), so this never commits an
  // entry of ours that disagrees with the leader.
  log_.CommitTo(std::min(m.commit, log_.last_index()));
  Message response;
  response.type = MessageType::kHeartbeatResponse;
  response.to = m.from;
  response.term = term_;
  Send(std::move(response));
}

void Raft::HandleSnapshot(const Message& m) {
  const SnapshotMetadata& meta = m.snapshot->metadata;
  Message response;
  response.type = MessageType::kAppendResponse;
  response.to = m.from;
  response.term = term_;
  if (meta.index <= log_.commit()) {
    response.index = log_.commit();
  } else if (log_.MatchTerm(meta.index, meta.term)) {
    // We have the entries already; they only needed committing.
    log_.CommitTo(meta.index);
    response.index = log_.commit();
  } else {
    log_.RestoreSnapshot(meta.index, meta.term);
    snapshot_ = m.snapshot;
    snapshot_members_.clear();
    for (const Member& member : meta.members) snapshot_members_[member.id] = member;
    RecomputeMembers();
    response.index = log_.last_index();
  }
  Send(std::move(response));
}

// ---------------------------------------------------------------------------------------
// Leader: replication and commit

bool Raft::SendAppend(NodeId to, bool send_if_empty) {
  auto it = progress_.find(to);
  if (it == progress_.end()) return false;
  Progress& pr = it->second;
  if (pr.IsPaused()) return false;
  Index prev = pr.next - 1;
  std::optional<Term> prev_term = log_.TermAt(prev);
  if (!prev_term.has_value()) {
    SendSnapshot(to, pr);
    return false;
  }
  std::vector<Entry> entries;
  if (pr.next <= log_.last_index()) {
    entries = log_.Slice(pr.next, log_.last_index() + 1, config_.max_entries_per_append,
                         config_.max_bytes_per_append);
  }
  if (entries.empty() && !send_if_empty) return false;
  Message m;
  m.type = MessageType::kAppend;
  m.to = to;
  m.term = term_;
  m.index = prev;
  m.log_term = *prev_term;
  m.commit = log_.commit();
  size_t bytes = 0;
  for (const Entry& entry : entries) bytes += entry.data.size();
  pr.SentEntries(entries.empty() ? prev : entries.back().index, entries.size(), bytes);
  m.entries = std::move(entries);
  Send(std::move(m));
  return true;
}

void Raft::SendSnapshot(NodeId to, Progress& pr) {
  // Entries before first_index() are gone only because a snapshot covers them.
  CHECK(snapshot_ != nullptr);
  pr.BecomeSnapshot(snapshot_->metadata.index);
  Message m;
  m.type = MessageType::kSnapshot;
  m.to = to;
  m.term = term_;
  m.snapshot = snapshot_;
  Send(std::move(m));
}

void Raft::SendHeartbeat(NodeId to) {
  const Progress& pr = progress_.at(to);
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = to;
  m.term = term_;
  m.commit = std::min(pr.match, log_.commit());
  Send(std::move(m));
}

void Raft::SendTimeoutNow(NodeId to) {
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  m.term = term_;
  Send(std::move(m));
}

void Raft::BroadcastAppend() {
  // One append each (to carry the commit index), then as many as flow control allows.
  for (auto& [id, pr] : progress_) {
    if (SendAppend(id, true)) {
      while (SendAppend(id, false)) {
      }
    }
  }
}

void Raft::BroadcastHeartbeat() {
  for (auto& [id, pr] : progress_) {
    if (pr.state == Progress::State::kSnapshot &&
        ++pr.snapshot_heartbeats * config_.heartbeat_ticks >= config_.election_ticks) {
      // No answer to the snapshot for an election timeout: assume it was lost.
      pr.BecomeProbe();
    }
    SendHeartbeat(id);
  }
}

bool Raft::MaybeCommit() {
  if (members_.empty()) return false;
  std::vector<Index> matches;
  matches.reserve(members_.size());
  for (const auto& [id, member] : members_) {
    if (id == id_) {
      matches.push_back(log_.stable_last_index());
    } else {
      auto it = progress_.find(id);
      matches.push_back(it == progress_.end() ? 0 : it->second.match);
    }
  }
  std::sort(matches.begin(), matches.end(), std::greater<Index>());
  Index candidate = matches[Quorum() - 1];
  if (candidate <= log_.commit()) return false;
  // Only an entry of the current term is committed by counting (Raft §5.4.2).
  if (log_.TermAt(candidate) != term_) return false;
  Index old_commit = log_.commit();
  log_.CommitTo(candidate);
  AfterCommit(old_commit);
  return true;
}

void Raft::AfterCommit(Index old_commit) {
  for (Index i = old_commit + 1; i <= log_.commit(); ++i) {
    const Entry& entry = log_.At(i);
    if (entry.term == term_) {
      uncommitted_bytes_ -= std::min(uncommitted_bytes_, entry.data.size());
    }
  }
  if (!is_member() && config_index_ <= log_.commit()) step_down_pending_ = true;
}

void Raft::StepDownAfterRemoval() {
  // Our removal is committed. Tell everyone about the commit, hand leadership to the most
  // up-to-date member so that nobody waits for an election timeout, and step down.
  BroadcastAppend();
  NodeId successor = kNoNode;
  for (const auto& [id, pr] : progress_) {
    if (pr.match == log_.last_index()) {
      successor = id;
      break;
    }
  }
  if (successor != kNoNode) SendTimeoutNow(successor);
  BecomeFollower(term_, kNoNode);
}

absl::StatusOr<Index> Raft::AppendByLeader(EntryType type, std::string data) {
  Entry entry{term_, log_.last_index() + 1, type, std::move(data)};
  Index index = entry.index;
  uncommitted_bytes_ += entry.data.size();
  bool config = IsConfigEntry(entry);
  log_.AppendOwn(std::move(entry));
  if (config) {
    ApplyConfigEntry(log_.At(index));
    MaybeCommit();  // a smaller quorum may commit what was waiting
  }
  broadcast_pending_ = true;
  FinishInput();
  return index;
}

// ---------------------------------------------------------------------------------------
// Proposals

absl::StatusOr<Index> Raft::Propose(std::string data) {
  CHECK_MSG(!ready_outstanding_, "Propose between TakeReady and Advance");
  if (role_ != Role::kLeader) return NotLeaderError();
  if (transfer_target_ != kNoNode) {
    return absl::FailedPreconditionError(
        absl::StrCat("leadership transfer to ", transfer_target_, " in progress"));
  }
  if (!is_member()) {
    return absl::FailedPreconditionError("this leader is being removed from the cluster");
  }
  if (data.size() > config_.max_proposal_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("proposal of ", data.size(), " bytes exceeds ", config_.max_proposal_bytes));
  }
  if (uncommitted_bytes_ > 0 && uncommitted_bytes_ + data.size() > config_.max_uncommitted_bytes) {
    return absl::ResourceExhaustedError("too many uncommitted bytes; try again shortly");
  }
  return AppendByLeader(EntryType::kNormal, std::move(data));
}

absl::Status Raft::CheckCanProposeMembership() const {
  if (role_ != Role::kLeader) return NotLeaderError();
  if (transfer_target_ != kNoNode) {
    return absl::FailedPreconditionError(
        absl::StrCat("leadership transfer to ", transfer_target_, " in progress"));
  }
  if (!is_member()) {
    return absl::FailedPreconditionError("this leader is being removed from the cluster");
  }
  if (config_index_ > log_.commit()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the membership change at index ", config_index_, " is not committed yet"));
  }
  // Single-server changes are only safe once the leader committed in its own term
  // (Ongaro, raft-dev 2015): otherwise two leaders could use disjoint majorities.
  if (log_.TermAt(log_.commit()) != term_) {
    return absl::FailedPreconditionError(
        "the leader has not committed an entry of its term yet; try again shortly");
  }
  return absl::OkStatus();
}

absl::Status Raft::ValidateNewMember(const Member& member) const {
  if (member.id == kNoNode) return absl::InvalidArgumentError("member id must not be 0");
  if (member.address.empty() || member.address.size() > kMemberAddressBytesMax) {
    return absl::InvalidArgumentError("member address must be 1 to 300 bytes");
  }
  return absl::OkStatus();
}

absl::StatusOr<Index> Raft::ProposeAddMember(const Member& member) {
  CHECK_MSG(!ready_outstanding_, "ProposeAddMember between TakeReady and Advance");
  if (absl::Status status = ValidateNewMember(member); !status.ok()) return status;
  if (absl::Status status = CheckCanProposeMembership(); !status.ok()) return status;
  if (members_.count(member.id) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("node ", member.id, " is already a member"));
  }
  for (const auto& [id, existing] : members_) {
    if (existing.address == member.address) {
      return absl::AlreadyExistsError(
          absl::StrCat("address ", member.address, " belongs to member ", id,
                       "; remove it first (a node reset and rejoined gets a new id: use replace)"));
    }
  }
  return AppendByLeader(EntryType::kAddMember, EncodeMember(member));
}

absl::StatusOr<Index> Raft::ProposeRemoveMember(NodeId id) {
  CHECK_MSG(!ready_outstanding_, "ProposeRemoveMember between TakeReady and Advance");
  if (absl::Status status = CheckCanProposeMembership(); !status.ok()) return status;
  auto it = members_.find(id);
  if (it == members_.end()) {
    return absl::NotFoundError(absl::StrCat("node ", id, " is not a member"));
  }
  if (members_.size() == 1) {
    return absl::FailedPreconditionError("cannot remove the last member of the cluster");
  }
  return AppendByLeader(EntryType::kRemoveMember, EncodeMember(it->second));
}

absl::StatusOr<ReplaceProgress> Raft::ProposeReplaceOrAdd(const Member& member) {
  CHECK_MSG(!ready_outstanding_, "ProposeReplaceOrAdd between TakeReady and Advance");
  if (absl::Status status = ValidateNewMember(member); !status.ok()) return status;
  if (role_ != Role::kLeader) return NotLeaderError();
  ReplaceProgress progress;
  auto same_id = members_.find(member.id);
  if (same_id != members_.end() && same_id->second.address == member.address) {
    // Already there; done once the entry that added it is committed.
    progress.index = config_index_;
    progress.step = config_index_ <= log_.commit() ? ReplaceProgress::Step::kDone
                                                   : ReplaceProgress::Step::kWaiting;
    return progress;
  }
  NodeId conflict = kNoNode;
  if (same_id != members_.end()) {
    conflict = member.id;  // the same node at a new address: remove, then add again
  } else {
    for (const auto& [id, existing] : members_) {
      if (existing.address == member.address) conflict = id;
    }
  }
  if (conflict == id_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "address ", member.address, " belongs to this leader; transfer leadership first"));
  }
  if (absl::Status status = CheckCanProposeMembership(); !status.ok()) {
    if (config_index_ > log_.commit() || log_.TermAt(log_.commit()) != term_) {
      progress.step = ReplaceProgress::Step::kWaiting;
      progress.index = config_index_;
      return progress;
    }
    return status;
  }
  absl::StatusOr<Index> index =
      conflict != kNoNode ? ProposeRemoveMember(conflict) : ProposeAddMember(member);
  if (!index.ok()) return index.status();
  progress.index = *index;
  progress.removed = conflict;
  progress.step = conflict != kNoNode ? ReplaceProgress::Step::kRemovingConflict
                                      : ReplaceProgress::Step::kAdding;
  return progress;
}

absl::Status Raft::TransferLeadership(NodeId target) {
  CHECK_MSG(!ready_outstanding_, "TransferLeadership between TakeReady and Advance");
  if (role_ != Role::kLeader) return NotLeaderError();
  if (target == id_) return absl::OkStatus();
  auto it = progress_.find(target);
  if (it == progress_.end()) {
    return absl::NotFoundError(absl::StrCat("node ", target, " is not a member"));
  }
  if (transfer_target_ == target) return absl::OkStatus();
  transfer_target_ = target;
  election_elapsed_ = 0;  // the transfer must finish within an election timeout
  if (it->second.match == log_.last_index()) {
    SendTimeoutNow(target);
  } else {
    SendAppend(target, true);
  }
  return absl::OkStatus();
}

void Raft::ForgetLeader() {
  CHECK_MSG(!ready_outstanding_, "ForgetLeader between TakeReady and Advance");
  if (role_ != Role::kFollower || leader_ == kNoNode) return;
  NodeId old_leader = leader_;
  leader_ = kNoNode;
  if (!is_member()) return;
  // Members campaign in id order (the old leader left out), stagger ticks apart: the first
  // usually wins before the second starts, instead of both splitting the vote.
  int rank = 0;
  for (const auto& [id, member] : members_) {
    if (id == old_leader) continue;
    if (id == id_) break;
    ++rank;
  }
  int wait_ticks = 1 + rank * config_.forget_leader_stagger_ticks;
  election_elapsed_ = std::max(election_elapsed_, randomized_election_timeout_ - wait_ticks);
}

absl::Status Raft::Campaign() {
  CHECK_MSG(!ready_outstanding_, "Campaign between TakeReady and Advance");
  if (role_ == Role::kLeader) return absl::FailedPreconditionError("already the leader");
  if (!is_member()) return absl::FailedPreconditionError("not a member of the cluster");
  StartCampaign(config_.pre_vote ? CampaignKind::kPreElection : CampaignKind::kElection);
  FinishInput();
  return absl::OkStatus();
}

absl::StatusOr<SnapshotMetadata> Raft::SnapshotMetadataAt(Index index) const {
  if (index <= log_.snapshot_index() || index > log_.applied()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot snapshot at ", index, ": must be in (",
                                                   log_.snapshot_index(), ", ", log_.applied(),
                                                   "]"));
  }
  std::map<NodeId, Member> members = snapshot_members_;
  for (Index i = log_.first_index(); i <= index; ++i) {
    const Entry& entry = log_.At(i);
    if (IsConfigEntry(entry)) FoldConfigEntry(entry, members);
  }
  SnapshotMetadata metadata;
  metadata.index = index;
  metadata.term = *log_.TermAt(index);
  for (const auto& [id, member] : members) metadata.members.push_back(member);
  return metadata;
}

absl::Status Raft::CreateSnapshot(std::shared_ptr<const Snapshot> snapshot) {
  CHECK_MSG(!ready_outstanding_, "CreateSnapshot between TakeReady and Advance");
  CHECK(snapshot != nullptr);
  absl::StatusOr<SnapshotMetadata> metadata = SnapshotMetadataAt(snapshot->metadata.index);
  if (!metadata.ok()) return metadata.status();
  if (*metadata != snapshot->metadata) {
    return absl::InvalidArgumentError(absl::StrCat("the snapshot's metadata is not that of entry ",
                                                   snapshot->metadata.index, " now"));
  }
  log_.Compact(metadata->index);
  snapshot_members_.clear();
  for (const Member& member : metadata->members) snapshot_members_[member.id] = member;
  snapshot_ = std::move(snapshot);
  return absl::OkStatus();
}

absl::StatusOr<Snapshot> Raft::CreateSnapshot(Index index, std::string data) {
  absl::StatusOr<SnapshotMetadata> metadata = SnapshotMetadataAt(index);
  if (!metadata.ok()) return metadata.status();
  auto snapshot = std::make_shared<Snapshot>(Snapshot{*std::move(metadata), std::move(data)});
  if (absl::Status created = CreateSnapshot(snapshot); !created.ok()) return created;
  return *snapshot;
}

// ---------------------------------------------------------------------------------------
// Ready

bool Raft::HasReady() const {
  if (ready_outstanding_) return false;
  return SoftState{leader_, role_} != last_soft_state_ || CurrentHardState() != last_hard_state_ ||
         !outbox_.empty() || log_.unstable_from() <= log_.last_index() ||
         log_.has_pending_snapshot() || log_.commit() > log_.applied() ||
         (role_ == Role::kLeader && broadcast_pending_);
}

Ready Raft::TakeReady() {
  CHECK_MSG(!ready_outstanding_, "TakeReady twice without Advance");
  if (role_ == Role::kLeader && broadcast_pending_) {
    // Entries proposed since the last Ready go out in one append per follower.
    broadcast_pending_ = false;
    BroadcastAppend();
  }
  Ready ready;
  SoftState soft{leader_, role_};
  if (soft != last_soft_state_) {
    ready.soft_state = soft;
    last_soft_state_ = soft;
  }
  HardState hard = CurrentHardState();
  if (hard != last_hard_state_) {
    ready.hard_state = hard;
    last_hard_state_ = hard;
  }
  ready_has_snapshot_ = log_.has_pending_snapshot();
  if (ready_has_snapshot_) ready.snapshot = snapshot_;
  ready_last_entry_ = 0;
  if (log_.unstable_from() <= log_.last_index()) {
    ready.entries = log_.Slice(log_.unstable_from(), log_.last_index() + 1, static_cast<size_t>(-1),
                               static_cast<size_t>(-1));
    ready_last_entry_ = log_.last_index();
  }
  size_t committed_bytes = 0;
  Index apply_to = log_.applied();
  while (apply_to < log_.commit()) {
    const Entry& entry = log_.At(apply_to + 1);
    if (!ready.committed_entries.empty() &&
        committed_bytes + entry.data.size() > config_.max_committed_bytes_per_ready) {
      break;
    }
    committed_bytes += entry.data.size();
    ready.committed_entries.push_back(entry);
    ++apply_to;
  }
  log_.SetApplied(apply_to);
  ready.messages = std::move(outbox_);
  outbox_.clear();
  ready_outstanding_ = true;
  return ready;
}

void Raft::Advance() {
  CHECK_MSG(ready_outstanding_, "Advance without TakeReady");
  ready_outstanding_ = false;
  if (ready_has_snapshot_) log_.ClearPendingSnapshot();
  ready_has_snapshot_ = false;
  if (ready_last_entry_ != 0) log_.MarkStable(ready_last_entry_);
  ready_last_entry_ = 0;
  // The leader's own entries count toward commit only once they are on its disk.
  if (role_ == Role::kLeader && MaybeCommit()) broadcast_pending_ = true;
  FinishInput();
}

RaftStatus Raft::GetStatus() const {
  RaftStatus status;
  status.id = id_;
  status.role = role_;
  status.term = term_;
  status.vote = vote_;
  status.leader = leader_;
  status.commit = log_.commit();
  status.applied = log_.applied();
  status.first_index = log_.first_index();
  status.last_index = log_.last_index();
  status.snapshot_index = log_.snapshot_index();
  status.transfer_target = transfer_target_;
  for (const auto& [id, member] : members_) status.members.push_back(member);
  for (const auto& [id, pr] : progress_) {
    status.peers.push_back(RaftStatus::Peer{id, pr.match, pr.next, pr.state, pr.recent_active});
  }
  return status;
}

}  // namespace stanzad::raft
