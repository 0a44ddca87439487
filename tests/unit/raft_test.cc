// Unit tests of the Raft state machine's pieces and of rules that the scenario transcripts
// (raft_scenario_test.cc) do not show step by step.
#include <string>
#include <vector>

#include "cluster/raft/log.h"
#include "cluster/raft/message_codec.h"
#include "cluster/raft/progress.h"
#include "cluster/raft/raft.h"
#include "gtest/gtest.h"
#include "tests/unit/raft_harness.h"

namespace stanzad::raft {
namespace {

using testing::Harness;

std::vector<Member> ThreeMembers() {
  return {{1, "node-1:7070"}, {2, "node-2:7070"}, {3, "node-3:7070"}};
}

Entry MakeEntry(Term term, Index index, std::string data = "") {
  return Entry{term, index, EntryType::kNormal, std::move(data)};
}

// ---- Member encoding -------------------------------------------------------------------

TEST(MemberCodecTest, RoundTrips) {
  Member member{0x0123456789abcdefULL, "10.0.0.1:4369"};
  Member decoded;
  ASSERT_TRUE(DecodeMember(EncodeMember(member), &decoded));
  EXPECT_EQ(decoded, member);
}

TEST(MemberCodecTest, RejectsMalformed) {
  Member decoded;
  EXPECT_FALSE(DecodeMember("", &decoded));
  EXPECT_FALSE(DecodeMember("1234567", &decoded));                        // shorter than an id
  EXPECT_FALSE(DecodeMember(std::string(8, '\0') + "host:1", &decoded));  // id 0
  EXPECT_FALSE(
      DecodeMember(EncodeMember({1, std::string(kMemberAddressBytesMax + 1, 'a')}), &decoded));
}

// ---- RaftLog -----------------------------------------------------------------------------

TEST(RaftLogTest, AppendsAndTruncatesAConflictingSuffix) {
  RaftLog log;
  log.Restore(0, 0, {MakeEntry(1, 1), MakeEntry(1, 2), MakeEntry(2, 3), MakeEntry(2, 4)}, 1);
  Index last_new = 0;
  Index truncated = 0;
  // Entries 3 and 4 (term 2) lose to a leader whose entry 3 is of term 3.
  ASSERT_EQ(log.MaybeAppend(2, 1, 3, {MakeEntry(3, 3, "x")}, &last_new, &truncated),
            RaftLog::AppendResult::kAppended);
  EXPECT_EQ(last_new, 3u);
  EXPECT_EQ(truncated, 3u);
  EXPECT_EQ(log.last_index(), 3u);
  EXPECT_EQ(log.TermAt(3), 3u);
  EXPECT_EQ(log.commit(), 3u);
  EXPECT_EQ(log.unstable_from(), 3u);  // entry 3 must be written again
}

TEST(RaftLogTest, KeepsEntriesThatAlreadyMatch) {
  RaftLog log;
  log.Restore(0, 0, {MakeEntry(1, 1), MakeEntry(1, 2), MakeEntry(1, 3)}, 0);
  Index last_new = 0;
  Index truncated = 0;
  // A duplicated, older append must not cut entry 3.
  ASSERT_EQ(log.MaybeAppend(0, 0, 0, {MakeEntry(1, 1)}, &last_new, &truncated),
            RaftLog::AppendResult::kAppended);
  EXPECT_EQ(last_new, 1u);
  EXPECT_EQ(truncated, 0u);
  EXPECT_EQ(log.last_index(), 3u);
}

TEST(RaftLogTest, RefusesMismatchAndConflictWithCommitted) {
  RaftLog log;
  log.Restore(0, 0, {MakeEntry(1, 1), MakeEntry(2, 2)}, 2);
  Index last_new = 0;
  Index truncated = 0;
  EXPECT_EQ(log.MaybeAppend(2, 1, 2, {}, &last_new, &truncated), RaftLog::AppendResult::kMismatch);
  EXPECT_EQ(log.MaybeAppend(1, 1, 2, {MakeEntry(3, 2)}, &last_new, &truncated),
            RaftLog::AppendResult::kConflictsWithCommitted);
  EXPECT_EQ(log.TermAt(2), 2u);
}

TEST(RaftLogTest, FindConflictByTermSkipsWholeTerms) {
  RaftLog log;
  std::vector<Entry> entries;
  for (Index i = 1; i <= 10; ++i) entries.push_back(MakeEntry(i <= 3 ? 1 : (i <= 6 ? 2 : 4), i));
  log.Restore(0, 0, entries, 0);
  EXPECT_EQ(log.FindConflictByTerm(10, 3), std::make_pair(Index{6}, Term{2}));
  EXPECT_EQ(log.FindConflictByTerm(10, 1), std::make_pair(Index{3}, Term{1}));
  EXPECT_EQ(log.FindConflictByTerm(10, 0), std::make_pair(Index{0}, Term{0}));
  EXPECT_EQ(log.FindConflictByTerm(99, 4), std::make_pair(Index{10}, Term{4}));
}

TEST(RaftLogTest, CompactKeepsTheSnapshotTerm) {
  RaftLog log;
  log.Restore(0, 0, {MakeEntry(1, 1), MakeEntry(2, 2), MakeEntry(2, 3)}, 3);
  log.SetApplied(3);
  log.Compact(2);
  EXPECT_EQ(log.first_index(), 3u);
  EXPECT_EQ(log.TermAt(2), 2u);
  EXPECT_EQ(log.TermAt(1), std::nullopt);
  EXPECT_EQ(log.TermAt(4), std::nullopt);
  EXPECT_TRUE(log.IsUpToDate(3, 2));
  EXPECT_FALSE(log.IsUpToDate(2, 2));
  EXPECT_TRUE(log.IsUpToDate(1, 3));
}

TEST(RaftLogTest, SliceRespectsLimitsButReturnsAtLeastOneEntry) {
  RaftLog log;
  log.Restore(0, 0,
              {MakeEntry(1, 1, std::string(100, 'a')), MakeEntry(1, 2, std::string(100, 'b')),
               MakeEntry(1, 3, "c")},
              0);
  EXPECT_EQ(log.Slice(1, 4, 10, 10).size(), 1u);  // bigger than the byte limit alone
  EXPECT_EQ(log.Slice(1, 4, 10, 200).size(), 2u);
  EXPECT_EQ(log.Slice(1, 4, 2, 1000).size(), 2u);
  EXPECT_EQ(log.Slice(2, 2, 10, 1000).size(), 0u);
}

// ---- Progress ----------------------------------------------------------------------------

TEST(InflightsTest, BoundedFifo) {
  Inflights inflights(3);
  inflights.Add(5);
  inflights.Add(7);
  inflights.Add(9);
  EXPECT_TRUE(inflights.full());
  inflights.FreeUpTo(7);
  EXPECT_EQ(inflights.count(), 1u);
  inflights.Add(11);
  inflights.Add(12);
  EXPECT_TRUE(inflights.full());
  inflights.FreeFirst();
  EXPECT_EQ(inflights.count(), 2u);
  inflights.FreeUpTo(100);
  EXPECT_EQ(inflights.count(), 0u);
}

// Large entries fill the window by bytes before by count: what waits for one follower stays
// below what its link may queue.
TEST(InflightsTest, BoundedByBytesToo) {
  Inflights inflights(64, 1000);
  inflights.Add(1, 400);
  inflights.Add(2, 500);
  EXPECT_FALSE(inflights.full());
  inflights.Add(3, 200);
  EXPECT_TRUE(inflights.full());
  EXPECT_EQ(inflights.bytes(), 1100u);
  inflights.FreeUpTo(1);
  EXPECT_FALSE(inflights.full());
  EXPECT_EQ(inflights.bytes(), 700u);
  inflights.FreeFirst();
  EXPECT_EQ(inflights.bytes(), 200u);
  inflights.Reset();
  EXPECT_EQ(inflights.bytes(), 0u);
  EXPECT_EQ(inflights.count(), 0u);
}

// A follower far behind a log of large entries gets them a window of bytes at a time.
TEST(ProgressTest, ReplicationPausesAtTheBytesInFlight) {
  Progress pr(64, 2 << 20);
  pr.match = 1;
  pr.BecomeReplicate();
  pr.SentEntries(5, 4, 1 << 20);
  EXPECT_FALSE(pr.IsPaused());
  pr.SentEntries(9, 4, 1 << 20);
  EXPECT_TRUE(pr.IsPaused());
  ASSERT_TRUE(pr.MaybeUpdate(5));
  pr.inflights.FreeUpTo(5);
  EXPECT_FALSE(pr.IsPaused());
}

TEST(ProgressTest, StaleRejectionsAreIgnored) {
  Progress pr(4);
  pr.match = 5;
  pr.next = 9;
  pr.BecomeReplicate();
  EXPECT_EQ(pr.next, 6u);
  EXPECT_FALSE(pr.MaybeDecreaseTo(4, 0));  // rejects an index we know matches
  EXPECT_TRUE(pr.MaybeDecreaseTo(7, 0));
  pr.BecomeProbe();
  pr.probe_sent = true;
  EXPECT_FALSE(pr.MaybeDecreaseTo(3, 0));  // not the probe we sent (next - 1 == 5)
  EXPECT_TRUE(pr.MaybeDecreaseTo(5, 5));
  EXPECT_FALSE(pr.probe_sent);
  EXPECT_EQ(pr.next, 6u);
}

// ---- Construction ------------------------------------------------------------------------

TEST(RaftCreateTest, ValidatesConfig) {
  Config config;
  EXPECT_FALSE(Raft::Create(config, {}).ok());  // id 0
  config.id = 1;
  config.heartbeat_ticks = 10;
  config.election_ticks = 10;
  EXPECT_FALSE(Raft::Create(config, {}).ok());
  config.election_ticks = 11;
  EXPECT_TRUE(Raft::Create(config, {}).ok());
}

TEST(RaftCreateTest, BootstrapRejectsBadMemberLists) {
  EXPECT_FALSE(Raft::Bootstrap({}).ok());
  EXPECT_FALSE(Raft::Bootstrap({{0, "a:1"}}).ok());
  EXPECT_FALSE(Raft::Bootstrap({{1, "a:1"}, {1, "b:1"}}).ok());
  EXPECT_FALSE(Raft::Bootstrap({{1, "a:1"}, {2, "a:1"}}).ok());
  EXPECT_FALSE(Raft::Bootstrap({{1, ""}}).ok());
  absl::StatusOr<PersistentState> state = Raft::Bootstrap(ThreeMembers());
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->entries.size(), 3u);
  EXPECT_EQ(state->hard_state.commit, 3u);
}

TEST(RaftCreateTest, RestoresAndRepairsPersistedState) {
  PersistentState state = *Raft::Bootstrap(ThreeMembers());
  state.entries.push_back(Entry{5, 4, EntryType::kNoop, ""});
  state.hard_state = HardState{4, 2, 99};  // term older than the log, commit beyond it
  Config config;
  config.id = 1;
  absl::StatusOr<Raft> raft = Raft::Create(config, state);
  ASSERT_TRUE(raft.ok());
  EXPECT_EQ(raft->term(), 5u);
  EXPECT_EQ(raft->vote(), kNoNode);  // a vote of term 4 says nothing about term 5
  EXPECT_EQ(raft->commit_index(), 4u);
  EXPECT_EQ(raft->members().size(), 3u);
  // The repaired hard state is handed out to be persisted.
  Ready ready = raft->TakeReady();
  ASSERT_TRUE(ready.hard_state.has_value());
  EXPECT_EQ(ready.hard_state->term, 5u);
  // Committed entries are handed out again for applying after a restart.
  EXPECT_EQ(ready.committed_entries.size(), 4u);
}

TEST(RaftCreateTest, RejectsALogWithAGapOrFallingTerms) {
  Config config;
  config.id = 1;
  PersistentState gap = *Raft::Bootstrap(ThreeMembers());
  gap.entries.push_back(MakeEntry(1, 5));
  EXPECT_EQ(Raft::Create(config, gap).status().code(), absl::StatusCode::kDataLoss);
  PersistentState falling = *Raft::Bootstrap(ThreeMembers());
  falling.entries.push_back(MakeEntry(3, 4));
  falling.entries.push_back(MakeEntry(2, 5));
  EXPECT_EQ(Raft::Create(config, falling).status().code(), absl::StatusCode::kDataLoss);
}

TEST(RaftCreateTest, MembershipComesFromSnapshotAndLog) {
  PersistentState state;
  state.snapshot.metadata = SnapshotMetadata{10, 3, {{1, "a:1"}, {2, "b:1"}}};
  state.snapshot.data = "state";
  state.entries.push_back(Entry{3, 11, EntryType::kAddMember, EncodeMember({3, "c:1"})});
  state.entries.push_back(Entry{3, 12, EntryType::kRemoveMember, EncodeMember({1, "a:1"})});
  state.hard_state = HardState{3, 0, 11};
  Config config;
  config.id = 2;
  absl::StatusOr<Raft> raft = Raft::Create(config, state);
  ASSERT_TRUE(raft.ok());
  // Uncommitted (12) counts: membership takes effect when appended.
  std::vector<NodeId> ids;
  for (const auto& [id, member] : raft->members()) ids.push_back(id);
  EXPECT_EQ(ids, (std::vector<NodeId>{2, 3}));
  EXPECT_EQ(raft->config_index(), 12u);
  EXPECT_EQ(raft->first_index(), 11u);
}

// ---- Single node and the Ready contract ----------------------------------------------------

TEST(RaftReadyTest, SingleNodeElectsItselfAndCommitsAfterPersisting) {
  Config config;
  config.id = 1;
  absl::StatusOr<Raft> created = Raft::Create(config, *Raft::Bootstrap({{1, "a:1"}}));
  ASSERT_TRUE(created.ok());
  Raft& raft = *created;
  Ready first = raft.TakeReady();  // the bootstrap entry is committed: apply it
  EXPECT_EQ(first.committed_entries.size(), 1u);
  raft.Advance();
  EXPECT_FALSE(raft.HasReady());
  ASSERT_TRUE(raft.Campaign().ok());
  EXPECT_EQ(raft.role(), Role::kLeader);
  Ready ready = raft.TakeReady();
  ASSERT_TRUE(ready.soft_state.has_value());
  EXPECT_EQ(ready.soft_state->leader, 1u);
  ASSERT_TRUE(ready.hard_state.has_value());
  EXPECT_EQ(ready.hard_state->term, 2u);
  EXPECT_EQ(ready.hard_state->vote, 1u);
  ASSERT_EQ(ready.entries.size(), 1u);  // the no-op
  EXPECT_EQ(ready.entries[0].type, EntryType::kNoop);
  // Not committed yet: the leader's own entry counts only once it is on disk.
  EXPECT_TRUE(ready.committed_entries.empty());
  EXPECT_TRUE(ready.messages.empty());
  raft.Advance();
  EXPECT_EQ(raft.commit_index(), 2u);
  absl::StatusOr<Index> index = raft.Propose("hello");
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(*index, 3u);
  Ready next = raft.TakeReady();
  ASSERT_EQ(next.committed_entries.size(), 1u);  // the no-op
  ASSERT_EQ(next.entries.size(), 1u);
  EXPECT_EQ(next.entries[0].data, "hello");
  raft.Advance();
  Ready last = raft.TakeReady();
  ASSERT_EQ(last.committed_entries.size(), 1u);
  EXPECT_EQ(last.committed_entries[0].data, "hello");
  EXPECT_FALSE(last.hard_state.has_value() && last.hard_state->term != 2u);
  raft.Advance();
  EXPECT_FALSE(raft.HasReady());
}

TEST(RaftReadyDeathTest, InputsBetweenTakeReadyAndAdvanceAreAProgrammingError) {
  Config config;
  config.id = 1;
  Raft raft = *Raft::Create(config, *Raft::Bootstrap({{1, "a:1"}}));
  (void)raft.TakeReady();
  EXPECT_DEATH(raft.Tick(), "between TakeReady and Advance");
}

// ---- Messages from the network -------------------------------------------------------------

TEST(RaftStepTest, MalformedMessagesAreRefusedWithoutEffect) {
  Harness h;
  h.Bootstrap(ThreeMembers());
  h.ElectionTimeout(1);
  ASSERT_EQ(h.Leader(), 1u);
  Raft& follower = h.raft(2);
  Index last = follower.last_index();
  auto append = [&] {
    Message m;
    m.type = MessageType::kAppend;
    m.from = 1;
    m.to = 2;
    m.term = follower.term();
    m.index = last;
    m.log_term = *follower.TermAt(last);
    return m;
  };
  Message wrong_to = append();
  wrong_to.to = 3;
  Message from_self = append();
  from_self.from = 2;
  Message no_term = append();
  no_term.term = 0;
  Message bad_type = append();
  bad_type.type = static_cast<MessageType>(77);
  Message gap = append();
  gap.entries = {MakeEntry(gap.term, last + 2)};
  Message future_term_entry = append();
  future_term_entry.entries = {MakeEntry(gap.term + 1, last + 1)};
  Message no_snapshot = append();
  no_snapshot.type = MessageType::kSnapshot;
  Message bad_snapshot = no_snapshot;
  bad_snapshot.snapshot = std::make_shared<Snapshot>();  // index 0, no members
  for (const Message& m : {wrong_to, from_self, no_term, bad_type, gap, future_term_entry,
                           no_snapshot, bad_snapshot}) {
    EXPECT_EQ(follower.Step(m).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(follower.last_index(), last);
  EXPECT_FALSE(follower.HasReady());
}

TEST(RaftStepTest, AStaleLeaderLearnsTheNewTermFromAnyFollower) {
  Harness h;
  h.Bootstrap(ThreeMembers());
  h.ElectionTimeout(1);
  // Nodes 2 and 3 move on to term 3 while node 1, cut off, still believes it leads term 2.
  h.Partition({1}, {2, 3});
  h.raft(2).ForgetLeader();
  h.raft(3).ForgetLeader();
  h.Tick(2);
  ASSERT_EQ(h.raft(2).role(), Role::kLeader);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  ASSERT_EQ(h.raft(1).term(), 2u);
  h.Heal();
  // Node 1's next heartbeat is answered with term 3: it steps down at once.
  h.Tick(1);
  EXPECT_EQ(h.raft(1).role(), Role::kFollower);
  EXPECT_EQ(h.raft(1).term(), 3u);
}

// ---- Elections ---------------------------------------------------------------------------

TEST(RaftElectionTest, ANodeVotesOnceATermEvenAfterARestart) {
  Harness h;
  h.Bootstrap(ThreeMembers());
  Raft& voter = h.raft(3);
  auto vote_request = [&](NodeId from) {
    Message m;
    m.type = MessageType::kVote;
    m.from = from;
    m.to = 3;
    m.term = 5;
    m.index = 3;
    m.log_term = 1;
    return m;
  };
  ASSERT_TRUE(voter.Step(vote_request(1)).ok());
  h.ProcessReady(3);  // persists the vote, then sends the grant
  h.DropAllMessages();
  h.Crash(3);
  h.Restart(3);
  ASSERT_TRUE(h.raft(3).Step(vote_request(2)).ok());
  Ready ready = h.raft(3).TakeReady();
  ASSERT_EQ(ready.messages.size(), 1u);
  EXPECT_EQ(ready.messages[0].type, MessageType::kVoteResponse);
  EXPECT_TRUE(ready.messages[0].reject);
  h.raft(3).Advance();
  EXPECT_EQ(h.raft(3).vote(), 1u);
}

TEST(RaftElectionTest, ACandidateWithAShorterLogLoses) {
  Harness h;
  h.Bootstrap(ThreeMembers());
  h.ElectionTimeout(1);
  h.Isolate(3);
  ASSERT_TRUE(h.raft(1).Propose("only-on-1-and-2").ok());
  h.Stabilize();
  h.Crash(1);
  h.Heal();
  h.raft(2).ForgetLeader();  // so that node 2 answers node 3 at all
  Term term = h.raft(3).term();
  // Node 3 lacks the entry: node 2 refuses even its pre-vote, so no term is spent.
  ASSERT_TRUE(h.raft(3).Campaign().ok());
  h.Stabilize();
  EXPECT_EQ(h.raft(3).role(), Role::kPreCandidate);
  EXPECT_EQ(h.raft(3).term(), term);
  h.TickAll(40);
  EXPECT_EQ(h.Leader(), 2u);
  EXPECT_EQ(h.node(3).applied_data, (std::vector<std::string>{"only-on-1-and-2"}));
}

TEST(RaftElectionTest, StickinessIgnoresVotesUnlessATransferAsks) {
  Harness h;
  h.Bootstrap(ThreeMembers());
  h.ElectionTimeout(1);
  Raft& follower = h.raft(2);
  Message vote;
  vote.type = MessageType::kVote;
  vote.from = 3;
  vote.to = 2;
  vote.term = follower.term() + 1;
  vote.index = follower.last_index();
  vote.log_term = *follower.TermAt(follower.last_index());
  ASSERT_TRUE(follower.Step(vote).ok());
  EXPECT_EQ(follower.term(), vote.term - 1);  // ignored: it hears from its leader
  EXPECT_FALSE(follower.HasReady());
  vote.transfer = true;
  ASSERT_TRUE(follower.Step(vote).ok());
  EXPECT_EQ(follower.term(), vote.term);
  EXPECT_EQ(follower.vote(), 3u);
}

TEST(RaftElectionTest, ForgetLeaderStaggersCampaignsById) {
  Harness h;
  h.Bootstrap({{1, "a:1"}, {2, "b:1"}, {3, "c:1"}, {4, "d:1"}});
  h.ElectionTimeout(1);
  ASSERT_EQ(h.Leader(), 1u);
  h.Crash(1);
  for (NodeId id : {2, 3, 4}) h.raft(id).ForgetLeader();
  // Without messages flowing, each node's own timer shows when it would campaign.
  h.Isolate(2);
  h.Isolate(3);
  h.Isolate(4);
  h.raft(2).Tick();
  EXPECT_EQ(h.raft(2).role(), Role::kPreCandidate);  // first in line: next tick
  for (int i = 0; i < 3; ++i) h.raft(3).Tick();
  EXPECT_EQ(h.raft(3).role(), Role::kFollower);
  h.raft(3).Tick();  // 1 + stagger (3) ticks
  EXPECT_EQ(h.raft(3).role(), Role::kPreCandidate);
  for (int i = 0; i < 6; ++i) h.raft(4).Tick();
  EXPECT_EQ(h.raft(4).role(), Role::kFollower);
  h.raft(4).Tick();  // 1 + 2 * 3 ticks
  EXPECT_EQ(h.raft(4).role(), Role::kPreCandidate);
}

// ---- Replication -------------------------------------------------------------------------

// Raft §5.4.2 ("figure 8"): a leader must not commit an entry of an earlier term by counting
// the copies; only once an entry of its own term is on a majority.
TEST(RaftReplicationTest, OnlyEntriesOfTheCurrentTermCommitByCounting) {
  Harness h;
  h.Bootstrap(ThreeMembers());
  for (auto& [id, node] : h.nodes()) {
    // One entry per append and one append in flight: `old` is acknowledged before the no-op
    // is even sent, so a leader that counts old-term copies commits it where this test sees.
    node.config.max_entries_per_append = 1;
    node.config.max_inflight_appends = 1;
    h.Crash(id);
    h.Restart(id);
  }
  h.ElectionTimeout(1);
  ASSERT_EQ(h.Leader(), 1u);
  // Entry `old` (term 2) reaches node 2, but the acknowledgement is lost, so it stays
  // uncommitted; then node 1 dies.
  h.Partition({1}, {3});
  h.CutOneWay(2, 1);
  Index old = *h.raft(1).Propose("old");
  h.Stabilize();
  ASSERT_EQ(h.raft(2).last_index(), old);
  ASSERT_LT(h.raft(2).commit_index(), old);
  h.Crash(1);
  h.Heal();
  h.raft(2).ForgetLeader();
  h.raft(3).ForgetLeader();
  // Node 2 leads term 3 and sends node 3 one entry at a time: first `old`, then its no-op.
  ASSERT_TRUE(h.raft(2).Campaign().ok());
  for (bool progress = true; progress;) {
    progress = h.ProcessReady(2);
    progress |= h.ProcessReady(3);
    progress |= h.DeliverOne();
    if (h.raft(2).role() == Role::kLeader && h.raft(2).commit_index() >= old) {
      // Committing `old` is only allowed once node 3 also has the term-3 no-op.
      ASSERT_GE(h.raft(3).last_index(), old + 1);
      EXPECT_EQ(h.raft(3).TermAt(old + 1), 3u);
    }
  }
  EXPECT_EQ(h.Leader(), 2u);
  EXPECT_EQ(h.raft(2).commit_index(), old + 1);
  EXPECT_EQ(h.node(3).applied_data, (std::vector<std::string>{"old"}));
}

TEST(RaftReplicationTest, FastBacktrackingSkipsAConflictingTermInOneRoundTrip) {
  Harness h;
  h.Bootstrap(ThreeMembers());
  h.ElectionTimeout(1);
  // Node 1, cut off, piles up 40 entries that will never commit.
  h.Partition({1}, {2, 3});
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(h.raft(1).Propose("doomed").ok());
  h.Stabilize();
  h.TickAll(40);  // node 1 steps down; 2 or 3 leads a later term
  NodeId leader = h.Leader();
  ASSERT_TRUE(leader == 2 || leader == 3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(h.raft(leader).Propose("kept").ok());
  h.Stabilize();
  // A newer leader starts probing node 1 at its last index (10, term 3), where node 1
  // has a doomed term-2 entry.
  leader = leader == 2 ? 3 : 2;
  ASSERT_TRUE(h.raft(5 - leader).TransferLeadership(leader).ok());
  h.Stabilize();
  ASSERT_EQ(h.Leader(), leader);
  int rejections = 0;
  h.SetObserver([&](const Message& m) {
    if (m.from == 1 && m.type == MessageType::kAppendResponse && m.reject) ++rejections;
  });
  h.Heal();
  h.TickAll(3);
  EXPECT_EQ(rejections, 1);  // one round trip, not one per conflicting entry
  EXPECT_EQ(h.node(1).applied_data, h.node(leader).applied_data);
  EXPECT_EQ(h.raft(1).last_index(), h.raft(leader).last_index());
}

TEST(RaftReplicationTest, InflightLimitBoundsUnacknowledgedAppends) {
  Harness h;
  h.Bootstrap(ThreeMembers());
  for (auto& [id, node] : h.nodes()) {
    node.config.max_inflight_appends = 2;
    node.config.max_entries_per_append = 1;
    h.Crash(id);
    h.Restart(id);
  }
  h.ElectionTimeout(1);
  ASSERT_EQ(h.Leader(), 1u);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(h.raft(1).Propose("x").ok());
  // One Ready pipelines as many appends as the window allows, and no more.
  int appends_to_3 = 0;
  Ready ready = h.raft(1).TakeReady();
  for (const Message& m : ready.messages) {
    if (m.to == 3 && m.type == MessageType::kAppend && !m.entries.empty()) ++appends_to_3;
  }
  h.raft(1).Advance();
  EXPECT_EQ(appends_to_3, 2);
  // Acknowledgements open the window again; everything arrives.
  h.TickAll(2);
  EXPECT_EQ(h.node(3).applied_data.size(), 10u);
}

TEST(RaftProposalTest, LimitsAndRoles) {
  Harness h;
  h.Bootstrap(ThreeMembers());
  h.node(1).config.max_uncommitted_bytes = 100;
  h.node(1).config.max_proposal_bytes = 60;
  h.Crash(1);
  h.Restart(1);
  h.ElectionTimeout(1);
  EXPECT_EQ(h.raft(2).Propose("x").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(h.raft(1).Propose(std::string(61, 'a')).status().code(),
            absl::StatusCode::kResourceExhausted);
  h.Isolate(1);  // nothing commits
  ASSERT_TRUE(h.raft(1).Propose(std::string(60, 'a')).ok());
  EXPECT_EQ(h.raft(1).Propose(std::string(50, 'a')).status().code(),
            absl::StatusCode::kResourceExhausted);
  h.Heal();
  h.TickAll(2);
  EXPECT_TRUE(h.raft(1).Propose(std::string(50, 'a')).ok());
}

// ---- Membership --------------------------------------------------------------------------

TEST(RaftMembershipTest, ReplaceOrAddGoesThroughRemoveThenAdd) {
  Harness h;
  h.Bootstrap(ThreeMembers());
  h.ElectionTimeout(1);
  h.AddEmptyNode({33, "node-3:7070"});
  h.Crash(3);
  Raft& leader = h.raft(1);
  absl::StatusOr<ReplaceProgress> step = leader.ProposeReplaceOrAdd({33, "node-3:7070"});
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(step->step, ReplaceProgress::Step::kRemovingConflict);
  EXPECT_EQ(step->removed, 3u);
  // Until the removal commits, nothing else happens.
  step = leader.ProposeReplaceOrAdd({33, "node-3:7070"});
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(step->step, ReplaceProgress::Step::kWaiting);
  h.Stabilize();
  step = leader.ProposeReplaceOrAdd({33, "node-3:7070"});
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(step->step, ReplaceProgress::Step::kAdding);
  h.Stabilize();
  step = leader.ProposeReplaceOrAdd({33, "node-3:7070"});
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(step->step, ReplaceProgress::Step::kDone);
  EXPECT_EQ(leader.members().size(), 3u);
  EXPECT_EQ(h.raft(33).members().size(), 3u);
  // The same id at a new address also goes remove-then-add.
  step = leader.ProposeReplaceOrAdd({2, "moved:7070"});
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(step->step, ReplaceProgress::Step::kRemovingConflict);
  EXPECT_EQ(step->removed, 2u);
  // A conflict with the leader itself cannot be solved by the leader.
  h.Stabilize();
  EXPECT_EQ(leader.ProposeReplaceOrAdd({99, "node-1:7070"}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(RaftMembershipTest, ANewLeaderMustCommitInItsTermBeforeAChange) {
  Harness h;
  h.Bootstrap(ThreeMembers());
  ASSERT_TRUE(h.raft(1).Campaign().ok());
  // Step messages until node 1 has won, before its no-op is replicated.
  while (h.raft(1).role() != Role::kLeader) {
    bool progress = h.ProcessReady(1);
    progress |= h.ProcessReady(2);
    progress |= h.ProcessReady(3);
    progress |= h.DeliverOne();
    ASSERT_TRUE(progress);
  }
  absl::StatusOr<Index> early = h.raft(1).ProposeAddMember({4, "node-4:7070"});
  EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(early.status().message()).find("its term"), std::string::npos);
  h.Stabilize();
  EXPECT_TRUE(h.raft(1).ProposeAddMember({4, "node-4:7070"}).ok());
  // One at a time.
  EXPECT_EQ(h.raft(1).ProposeRemoveMember(2).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(RaftSnapshotTest, SnapshotRecordsMembersAsOfItsIndex) {
  Harness h;
  h.Bootstrap(ThreeMembers());
  h.ElectionTimeout(1);
  ASSERT_TRUE(h.raft(1).Propose("a").ok());
  h.Stabilize();
  Index applied = h.raft(1).applied_index();
  // A membership change appended after the snapshot point is not in the snapshot.
  h.Isolate(1);
  ASSERT_TRUE(h.raft(1).ProposeRemoveMember(3).ok());
  absl::StatusOr<Snapshot> snapshot = h.raft(1).CreateSnapshot(applied, "state");
  ASSERT_TRUE(snapshot.ok());
  EXPECT_EQ(snapshot->metadata.index, applied);
  EXPECT_EQ(snapshot->metadata.members.size(), 3u);
  EXPECT_EQ(h.raft(1).members().size(), 2u);
  EXPECT_FALSE(h.raft(1).CreateSnapshot(applied, "again").ok());
  EXPECT_FALSE(h.raft(1).CreateSnapshot(applied + 5, "ahead").ok());
}

TEST(RaftStatusTest, ReportsPeersOnTheLeader) {
  Harness h;
  h.Bootstrap(ThreeMembers());
  h.ElectionTimeout(1);
  RaftStatus status = h.raft(1).GetStatus();
  EXPECT_EQ(status.role, Role::kLeader);
  EXPECT_EQ(status.leader, 1u);
  EXPECT_EQ(status.members.size(), 3u);
  ASSERT_EQ(status.peers.size(), 2u);
  EXPECT_EQ(status.peers[0].match, status.last_index);
  EXPECT_EQ(status.peers[0].state, Progress::State::kReplicate);
  EXPECT_TRUE(h.raft(2).GetStatus().peers.empty());
  EXPECT_EQ(h.raft(1).Campaign().code(), absl::StatusCode::kFailedPrecondition);
}

// ---- Wire encoding -------------------------------------------------------------------------

std::vector<Message> SampleMessages() {
  std::vector<Message> out;
  Message append;
  append.type = MessageType::kAppend;
  append.from = 0x1122334455667788ULL;
  append.to = 2;
  append.term = 7;
  append.index = 41;
  append.log_term = 6;
  append.commit = 40;
  append.entries = {Entry{7, 42, EntryType::kNormal, "data"},
                    Entry{7, 43, EntryType::kAddMember, EncodeMember({9, "h:1"})},
                    Entry{7, 44, EntryType::kNoop, ""}};
  out.push_back(append);
  Message response;
  response.type = MessageType::kAppendResponse;
  response.from = 2;
  response.to = 1;
  response.term = 7;
  response.index = 41;
  response.reject = true;
  response.reject_hint = 30;
  response.log_term = 5;
  out.push_back(response);
  Message vote;
  vote.type = MessageType::kPreVote;
  vote.from = 3;
  vote.to = 1;
  vote.term = 8;
  vote.transfer = true;
  out.push_back(vote);
  Message snapshot;
  snapshot.type = MessageType::kSnapshot;
  snapshot.from = 1;
  snapshot.to = 4;
  snapshot.term = 7;
  auto snap = std::make_shared<Snapshot>();
  snap->metadata = SnapshotMetadata{40, 6, {{1, "a:1"}, {2, "b:2"}}};
  snap->data = std::string(300, 'z');
  snapshot.snapshot = snap;
  out.push_back(snapshot);
  return out;
}

TEST(MessageCodecTest, RoundTrips) {
  for (const Message& m : SampleMessages()) {
    std::string wire;
    EncodeMessage(m, &wire);
    absl::StatusOr<Message> decoded = DecodeMessage(wire);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    std::string again;
    EncodeMessage(*decoded, &again);
    EXPECT_EQ(again, wire);
    EXPECT_EQ(decoded->type, m.type);
    EXPECT_EQ(decoded->entries, m.entries);
    EXPECT_EQ(decoded->reject, m.reject);
    EXPECT_EQ(decoded->transfer, m.transfer);
    EXPECT_EQ(decoded->snapshot == nullptr, m.snapshot == nullptr);
    if (m.snapshot != nullptr) {
      EXPECT_EQ(*decoded->snapshot, *m.snapshot);
    }
  }
}

TEST(MessageCodecTest, EveryTruncationIsRefused) {
  for (const Message& m : SampleMessages()) {
    std::string wire;
    EncodeMessage(m, &wire);
    for (size_t size = 0; size < wire.size(); ++size) {
      EXPECT_FALSE(DecodeMessage(std::string_view(wire).substr(0, size)).ok()) << size;
    }
    EXPECT_FALSE(DecodeMessage(wire + "x").ok());
  }
}

TEST(MessageCodecTest, CorruptFramesNeverCrashOrOverAllocate) {
  uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  };
  for (const Message& m : SampleMessages()) {
    std::string wire;
    EncodeMessage(m, &wire);
    for (int round = 0; round < 2000; ++round) {
      std::string bad = wire;
      for (int flips = 1 + static_cast<int>(next() % 4); flips > 0; --flips) {
        bad[next() % bad.size()] = static_cast<char>(next());
      }
      absl::StatusOr<Message> decoded = DecodeMessage(bad);
      if (decoded.ok()) {
        // Whatever decodes is then judged by Raft, which must not crash either.
        Config config;
        config.id = decoded->to == kNoNode ? 1 : decoded->to;
        Raft raft = *Raft::Create(config, *Raft::Bootstrap({{config.id, "self:1"}}));
        (void)raft.Step(*decoded);
      }
    }
  }
  MessageLimits limits;
  limits.entries_max = 2;
  std::string wire;
  EncodeMessage(SampleMessages()[0], &wire);
  EXPECT_FALSE(DecodeMessage(wire, limits).ok());
}

}  // namespace
}  // namespace stanzad::raft
