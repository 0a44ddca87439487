// The relay (cluster/relay/relay.h) with two or three instances wired by hand
// (relay_harness.h): every frame between them goes through a queue the test can inspect,
// drop or replay, and time moves only when a test says so.
#include "cluster/relay/relay.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cluster/relay/directory.h"
#include "cluster/relay/wire.h"
#include "core/router/route_table.h"
#include "tests/unit/relay_harness.h"

namespace stanzad::cluster::relay {
namespace {

int Count(const std::vector<Frame>& frames, NodeId from, NodeId to, FrameType type) {
  int count = 0;
  for (const Frame& frame : frames) {
    count += frame.from == from && frame.to == to && frame.type == type ? 1 : 0;
  }
  return count;
}

std::vector<std::pair<uint64_t, Outcome>> AnswersIn(const Frame& frame) {
  std::string_view payload = frame.payload;
  if (frame.type == FrameType::kAckRelay) {
    auto relayed = DecodeAckRelay(payload);
    EXPECT_TRUE(relayed.ok());
    payload = relayed->second;
  }
  auto answers = DecodeAnswers(payload);
  EXPECT_TRUE(answers.ok());
  return answers->answers;
}

bool HasLog(const std::vector<LogLine>& logs, const std::string& event, const std::string& text) {
  for (const LogLine& line : logs) {
    if (line.event == event && line.fields.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST(Relay, DeliveredOnceAndAnsweredCustodyEmpties) {
  Cluster cluster(2, Direct());
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  EXPECT_EQ(cluster.directory(kA).NodeOf("cb2.example.com"), kB);

  cluster.Forward(kA, kB, Message("m1"));
  EXPECT_EQ(cluster.relay(kA).custody_count(), 1u);
  ASSERT_EQ(cluster.wire().size(), 1u);
  EXPECT_EQ(cluster.wire().front().type, FrameType::kStanza);
  cluster.Pump();
  ASSERT_EQ(cluster.deliveries[kB].size(), 1u);
  EXPECT_EQ(cluster.deliveries[kB][0].address, "cb2.example.com");
  EXPECT_EQ(cluster.deliveries[kB][0].origin, kA);
  EXPECT_EQ(cluster.deliveries[kB][0].bytes, Message("m1"));
  EXPECT_EQ(cluster.relay(kA).custody_count(), 0u);
  EXPECT_EQ(cluster.relay(kA).custody_bytes(), 0u);
  EXPECT_EQ(cluster.relay(kA).stats().relayed_out, 1u);
  EXPECT_EQ(cluster.relay(kB).stats().relayed_in, 1u);
  // Nothing more happens: no resend, no bounce.
  cluster.RunFor(20000);
  EXPECT_EQ(cluster.deliveries[kB].size(), 1u);
  EXPECT_TRUE(cluster.bounces[kA].empty());
  EXPECT_EQ(Count(cluster.sent, kA, kB, FrameType::kStanza), 1);
}

TEST(Relay, DuplicateFrameIsDroppedAndAnsweredAgain) {
  Cluster cluster(2, Direct());
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  cluster.Forward(kA, kB, Message("m1"));
  const Frame stanza = cluster.Take();
  cluster.Inject(stanza);
  const Frame first_answer = cluster.Take();
  cluster.Inject(stanza);  // the same frame again (a resend that crossed the answer)
  const Frame second_answer = cluster.Take();
  EXPECT_EQ(cluster.deliveries[kB].size(), 1u);
  EXPECT_EQ(cluster.relay(kB).stats().duplicates_dropped, 1u);
  ASSERT_EQ(first_answer.type, FrameType::kAck);
  ASSERT_EQ(second_answer.type, FrameType::kAck);
  EXPECT_EQ(AnswersIn(second_answer), AnswersIn(first_answer));
  EXPECT_EQ(AnswersIn(second_answer)[0].second, Outcome::kDelivered);
  cluster.Inject(first_answer);
  cluster.Inject(second_answer);  // a second answer for what is finished: nothing
  EXPECT_EQ(cluster.relay(kA).custody_count(), 0u);
  EXPECT_TRUE(cluster.bounces[kA].empty());
}

TEST(Relay, LeaderModePassesThroughTheLeader) {
  Cluster cluster(3, Options{});
  cluster.SetLeader(kC);
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  cluster.sent.clear();
  cluster.Forward(kA, kB, Message("m1"));
  cluster.Pump();
  ASSERT_EQ(cluster.deliveries[kB].size(), 1u);
  EXPECT_EQ(cluster.relay(kA).custody_count(), 0u);
  // A -> C (hops 0), C -> B (hops 1); B's answer goes back the way the stanza came.
  ASSERT_EQ(cluster.sent.size(), 4u);
  EXPECT_EQ(cluster.sent[0].to, kC);
  auto first = DecodeStanza(cluster.sent[0].payload);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->destination, (Lane{kB, 0}));
  EXPECT_EQ(first->hops, 0);
  EXPECT_EQ(cluster.sent[1].from, kC);
  EXPECT_EQ(cluster.sent[1].to, kB);
  auto onward = DecodeStanza(cluster.sent[1].payload);
  ASSERT_TRUE(onward.ok());
  EXPECT_EQ(onward->hops, 1);
  EXPECT_EQ(cluster.sent[2].from, kB);
  EXPECT_EQ(cluster.sent[2].to, kC);
  EXPECT_EQ(cluster.sent[2].type, FrameType::kAckRelay);
  EXPECT_EQ(cluster.sent[3].from, kC);
  EXPECT_EQ(cluster.sent[3].to, kA);
  EXPECT_EQ(cluster.sent[3].type, FrameType::kAck);
  EXPECT_EQ(cluster.relay(kC).custody_count(), 0u);  // the leader keeps nothing
  EXPECT_TRUE(cluster.deliveries[kC].empty());
}

TEST(Relay, LeaderPassesOnAtMostHopsMax) {
  Options options;
  options.hops_max = 2;
  Cluster cluster(3, options);
  cluster.SetLeader(kC);
  cluster.Bind(kB, "cb2.example.com");
  cluster.ClearWire();
  const std::string bytes = Message("m1");
  StanzaFrame frame{{kA, 0}, 1, 1, 1, {kB, 0}, 1, bytes};
  cluster.Inject({kA, kC, FrameType::kStanza, EncodeStanza(frame)});
  ASSERT_EQ(cluster.wire().size(), 1u);
  auto onward = DecodeStanza(cluster.Take().payload);
  ASSERT_TRUE(onward.ok());
  EXPECT_EQ(onward->hops, 2);
  frame.hops = 2;  // as many as allowed: dropped, the origin sends it again
  cluster.Inject({kA, kC, FrameType::kStanza, EncodeStanza(frame)});
  EXPECT_TRUE(cluster.wire().empty());
}

TEST(Relay, DestinationWithoutTheRouteNeitherDeliversNorAnswers) {
  Cluster cluster(2, Direct());
  cluster.LinkAll();
  cluster.Pump();
  cluster.Forward(kA, kB, Message("m1"));  // A's shard believed B holds it
  cluster.Pump();
  EXPECT_TRUE(cluster.deliveries[kB].empty());
  EXPECT_EQ(Count(cluster.sent, kB, kA, FrameType::kAck), 0);
  EXPECT_EQ(cluster.relay(kB).stats().misrouted, 1u);
  EXPECT_EQ(cluster.relay(kB).decisions_count(), 0u);
  EXPECT_EQ(cluster.relay(kA).custody_count(), 1u);
}

TEST(Relay, CustodyFullBouncesWithResourceConstraint) {
  Options options = Direct();
  options.hold_bytes_max = 100;
  Cluster cluster(2, options);
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  cluster.Cut(kA, kB);  // nothing leaves custody
  const std::string small = Message("m1");
  ASSERT_LT(small.size(), 100u);
  cluster.Forward(kA, kB, small);
  EXPECT_EQ(cluster.relay(kA).custody_count(), 1u);
  cluster.Forward(kA, kB, Message("m2"));  // small.size() * 2 > 100
  ASSERT_EQ(cluster.bounces[kA].size(), 1u);
  EXPECT_EQ(cluster.bounces[kA][0].condition, xmpp::StanzaErrorCondition::kResourceConstraint);
  EXPECT_EQ(cluster.bounces[kA][0].sender, kSender);
  EXPECT_EQ(cluster.bounces[kA][0].bytes, Message("m2"));
  EXPECT_EQ(cluster.relay(kA).stats().failed, 1u);
  EXPECT_EQ(cluster.relay(kA).custody_count(), 1u);
  EXPECT_LE(cluster.relay(kA).custody_bytes(), 100u);
}

TEST(Relay, FramesFromNonMembersAreIgnored) {
  Cluster cluster(2, Direct());
  cluster.Bind(kB, "cb2.example.com");
  cluster.ClearWire();
  const std::string bytes = Message("m1");
  const NodeId stranger = 9;
  cluster.Inject({stranger, kB, FrameType::kStanza,
                  EncodeStanza({{stranger, 0}, 1, 1, 1, {kB, 0}, 0, bytes})});
  cluster.Inject({stranger, kB, FrameType::kRoutes,
                  EncodeRoutes({RoutesPart::kWhole, {{true, "cb7.example.com"}}})});
  cluster.Inject(
      {stranger, kB, FrameType::kAbort, EncodeAbort({{stranger, 0}, 1, 1, {kB, 0}, 0, {1}})});
  EXPECT_TRUE(cluster.deliveries[kB].empty());
  EXPECT_TRUE(cluster.wire().empty());
  EXPECT_EQ(cluster.directory(kB).NodeOf("cb7.example.com"), std::nullopt);
  EXPECT_EQ(cluster.relay(kB).decisions_count(), 0u);
  // A member's frame naming a non-member as its origin is refused as well.
  cluster.Inject(
      {kA, kB, FrameType::kStanza, EncodeStanza({{stranger, 0}, 1, 1, 1, {kB, 0}, 0, bytes})});
  EXPECT_TRUE(cluster.deliveries[kB].empty());
  EXPECT_EQ(cluster.relay(kB).stats().failed, 1u);
}

TEST(Relay, NeverSentWithoutLeaderBouncesAtItsDeadline) {
  Options options;  // leader mode
  Cluster cluster(2, options);
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  cluster.Forward(kA, kB, Message("m1"));
  EXPECT_TRUE(cluster.wire().empty());  // no leader: nowhere to send it
  cluster.RunFor(options.no_leader_hold_ms - 300);
  EXPECT_TRUE(cluster.bounces[kA].empty());
  cluster.RunFor(600);
  ASSERT_EQ(cluster.bounces[kA].size(), 1u);
  EXPECT_EQ(cluster.bounces[kA][0].condition, xmpp::StanzaErrorCondition::kServiceUnavailable);
  EXPECT_TRUE(HasLog(cluster.logs[kA], "relay_expired", "reason=no_leader"));
  EXPECT_EQ(cluster.relay(kA).stats().expired, 1u);
  EXPECT_EQ(cluster.relay(kA).custody_count(), 0u);
  EXPECT_TRUE(cluster.deliveries[kB].empty());
}

TEST(Relay, NeverSentOverADownLinkBouncesAtHold) {
  Options options = Direct();
  Cluster cluster(2, options);
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  cluster.Cut(kA, kB);
  cluster.Forward(kA, kB, Message("m1"));
  cluster.RunFor(options.hold_ms + 400);
  ASSERT_EQ(cluster.bounces[kA].size(), 1u);
  EXPECT_TRUE(HasLog(cluster.logs[kA], "relay_expired", "reason=forward_hold"));
  EXPECT_EQ(Count(cluster.sent, kA, kB, FrameType::kAbort), 0);  // no one to ask
}

// Sent, never answered: at hold_ms the origin asks; "aborted" bounces the sender.
TEST(Relay, UnansweredAtDeadlineIsAskedAndBouncedOnAborted) {
  Options options = Direct();
  Cluster cluster(2, options);
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  cluster.drop = [](const Frame& f) { return f.type == FrameType::kStanza; };  // lost
  cluster.Forward(kA, kB, Message("m1"));
  cluster.RunFor(options.hold_ms - 100);
  EXPECT_GT(cluster.relay(kA).stats().resent, 0u);
  EXPECT_EQ(Count(cluster.sent, kA, kB, FrameType::kAbort), 0);
  EXPECT_TRUE(cluster.bounces[kA].empty());
  cluster.RunFor(300);
  EXPECT_GE(Count(cluster.sent, kA, kB, FrameType::kAbort), 1);
  ASSERT_EQ(cluster.bounces[kA].size(), 1u);  // B answered "aborted"
  EXPECT_EQ(cluster.relay(kB).stats().aborted, 1u);
  EXPECT_EQ(cluster.relay(kA).custody_count(), 0u);
  // B keeps its promise: the stanza arriving late is not delivered.
  cluster.drop = nullptr;
  cluster.Inject(
      {kA, kB, FrameType::kStanza, EncodeStanza({{kA, 0}, 1, 1, 1, {kB, 0}, 0, Message("m1")})});
  EXPECT_TRUE(cluster.deliveries[kB].empty());
}

TEST(Relay, UnansweredAtDeadlineButDeliveredIsNotBounced) {
  Options options = Direct();
  Cluster cluster(2, options);
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  // B's answers are lost until the deadline; the stanzas arrive (and are resent).
  bool answers_lost = true;
  cluster.drop = [&](const Frame& f) { return answers_lost && f.type == FrameType::kAck; };
  cluster.Forward(kA, kB, Message("m1"));
  cluster.RunFor(options.hold_ms + 100);
  EXPECT_EQ(cluster.deliveries[kB].size(), 1u);
  EXPECT_GT(cluster.relay(kB).stats().duplicates_dropped, 0u);
  EXPECT_GE(Count(cluster.sent, kA, kB, FrameType::kAbort), 1);
  answers_lost = false;
  cluster.RunFor(1000);
  EXPECT_TRUE(cluster.bounces[kA].empty());
  EXPECT_EQ(cluster.relay(kA).custody_count(), 0u);
  EXPECT_EQ(cluster.relay(kA).stats().expired, 0u);
  EXPECT_EQ(cluster.deliveries[kB].size(), 1u);
}

TEST(Relay, NoAnswerForAbortWaitBouncesUnconfirmed) {
  Options options = Direct();
  Cluster cluster(2, options);
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  cluster.drop = [](const Frame& f) { return f.from == kB; };  // B is heard by no one
  cluster.Forward(kA, kB, Message("m1"));
  cluster.RunFor(options.hold_ms + options.abort_wait_ms - 200);
  EXPECT_TRUE(cluster.bounces[kA].empty());
  cluster.RunFor(500);
  ASSERT_EQ(cluster.bounces[kA].size(), 1u);
  EXPECT_EQ(cluster.relay(kA).stats().unconfirmed, 1u);
  EXPECT_EQ(cluster.relay(kA).stats().expired, 1u);
  EXPECT_TRUE(HasLog(cluster.logs[kA], "relay_expired", "reason=unconfirmed"));
  // The documented window: B did deliver it.
  EXPECT_EQ(cluster.deliveries[kB].size(), 1u);
}

// The origin restarts: its new incarnation counts sequences from 1 again; answers meant for
// the old one change nothing, and the destination does not take the new sequence 1 for the
// old one.
TEST(Relay, OriginRestartIgnoresAnswersOfItsPreviousLife) {
  Cluster cluster(2, Direct());
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  cluster.Forward(kA, kB, Message("old"));
  cluster.Pump();
  ASSERT_EQ(cluster.deliveries[kB].size(), 1u);
  const Frame old_answer{kB, kA, FrameType::kAck,
                         EncodeAnswers({1, 0, {kB, 0}, {{1, Outcome::kDelivered}}})};

  cluster.Restart(kA, 2);
  cluster.LinkAll();
  cluster.Pump();
  cluster.Cut(kA, kB);
  cluster.Forward(kA, kB, Message("new"));  // sequence 1 of incarnation 2, not sent yet
  EXPECT_EQ(cluster.relay(kA).custody_count(), 1u);
  cluster.Cut(kA, kB, false);
  cluster.Inject(old_answer);
  EXPECT_EQ(cluster.relay(kA).custody_count(), 1u);  // not taken for the new stanza
  cluster.RunFor(1000);
  ASSERT_EQ(cluster.deliveries[kB].size(), 2u);
  EXPECT_EQ(cluster.deliveries[kB][1].bytes, Message("new"));
  EXPECT_EQ(cluster.relay(kA).custody_count(), 0u);
  EXPECT_TRUE(cluster.bounces[kA].empty());
}

// The production bug: B took X over, a stale full set from A restated X, A withdrew X: X
// must resolve to B, on C and in C's shards.
TEST(Relay, StaleReannouncementAndWithdrawalLeaveTheRouteWithItsHolder) {
  Cluster cluster(3, Direct());
  const std::string x = "cbx.example.com";
  auto shard_holder = [&](NodeId at) {
    std::map<std::string, NodeId> table;
    for (const RouteChange& change : cluster.route_changes[at]) {
      if (change.op == RouteChange::Op::kBind) table[change.address] = change.node;
      if (change.op == RouteChange::Op::kUnbind && table[change.address] == change.node) {
        table.erase(change.address);
      }
      if (change.op == RouteChange::Op::kForgetNode) {
        for (auto it = table.begin(); it != table.end();) {
          it = it->second == change.node ? table.erase(it) : std::next(it);
        }
      }
    }
    auto it = table.find(x);
    return it == table.end() ? raft::kNoNode : it->second;
  };
  // A held X (its full set), B claims it.
  cluster.Inject({kA, kC, FrameType::kRoutes, EncodeRoutes({RoutesPart::kWhole, {{true, x}}})});
  EXPECT_EQ(cluster.directory(kC).NodeOf(x), kA);
  cluster.Inject({kB, kC, FrameType::kRoutes, EncodeRoutes({RoutesPart::kChanges, {{true, x}}})});
  EXPECT_EQ(cluster.directory(kC).NodeOf(x), kB);
  // A's stale full set restates X, then A withdraws it.
  cluster.Inject({kA, kC, FrameType::kRoutes, EncodeRoutes({RoutesPart::kWhole, {{true, x}}})});
  EXPECT_EQ(cluster.directory(kC).NodeOf(x), kB);
  cluster.Inject({kA, kC, FrameType::kRoutes, EncodeRoutes({RoutesPart::kChanges, {{false, x}}})});
  EXPECT_EQ(cluster.directory(kC).NodeOf(x), kB);
  EXPECT_EQ(shard_holder(kC), kB);

  // The same when A's withdrawal had already arrived: the stale claim is the newest, so it
  // wins for a moment; the withdrawal after it falls back to B.
  cluster.Inject({kA, kC, FrameType::kRoutes, EncodeRoutes({RoutesPart::kWhole, {{true, x}}})});
  EXPECT_EQ(cluster.directory(kC).NodeOf(x), kA);
  cluster.Inject({kA, kC, FrameType::kRoutes, EncodeRoutes({RoutesPart::kChanges, {{false, x}}})});
  EXPECT_EQ(cluster.directory(kC).NodeOf(x), kB);
  EXPECT_EQ(shard_holder(kC), kB);
  // B withdraws: nowhere.
  cluster.Inject({kB, kC, FrameType::kRoutes, EncodeRoutes({RoutesPart::kChanges, {{false, x}}})});
  EXPECT_EQ(cluster.directory(kC).NodeOf(x), std::nullopt);
  EXPECT_EQ(shard_holder(kC), raft::kNoNode);
}

// A stanza whose `from` is another domain: B rejects it, answers "aborted", A bounces its
// sender — promptly (a resend would fail the same way) and with one exchange.
TEST(Relay, ForeignFromIsRejectedAndTheSenderBounced) {
  Options options = Direct();
  Cluster cluster(2, options);
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  cluster.sent.clear();
  cluster.Forward(kA, kB, Message("m1", "cb2.example.com", "mallory@example.org"));
  cluster.Pump(50);
  EXPECT_TRUE(cluster.deliveries[kB].empty());
  EXPECT_EQ(cluster.relay(kB).stats().rejected, 1u);
  EXPECT_TRUE(HasLog(cluster.logs[kB], "relay_rejected", "reason="));
  // The answer is "aborted".
  bool aborted = false;
  for (const Frame& frame : cluster.sent) {
    if (frame.from == kB && frame.type == FrameType::kAck) {
      aborted |= AnswersIn(frame).at(0).second == Outcome::kAborted;
    }
  }
  EXPECT_TRUE(aborted);
  EXPECT_EQ(Count(cluster.sent, kA, kB, FrameType::kStanza), 1)
      << "the origin sent the rejected stanza again right away";
  cluster.RunFor(options.hold_ms + 500);
  ASSERT_EQ(cluster.bounces[kA].size(), 1u);
  EXPECT_EQ(cluster.relay(kA).custody_count(), 0u);
  EXPECT_LE(Count(cluster.sent, kA, kB, FrameType::kStanza), 3)
      << "the rejected stanza went back and forth until its deadline";
}

TEST(Relay, CountersMoveAsTheyShould) {
  Options options = Direct();
  Cluster cluster(2, options);
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  // misrouted at B: not holding the route (failed at A, custody full, is covered above).
  cluster.Forward(kA, kB, Message("m1", "cb9.example.com"));
  cluster.Pump();
  EXPECT_EQ(cluster.relay(kB).stats().misrouted, 1u);
  EXPECT_EQ(cluster.relay(kB).stats().relayed_in, 0u);
  // expired: asked at hold, "aborted" (B never decided), bounced.
  cluster.RunFor(options.hold_ms + 300);
  EXPECT_EQ(cluster.relay(kA).stats().expired, 1u);
  EXPECT_EQ(cluster.relay(kB).stats().aborted, 1u);
  EXPECT_EQ(cluster.relay(kA).stats().unconfirmed, 0u);
  // duplicates_dropped: B answered, the answer was lost, A sent it again.
  cluster.drop = [](const Frame& f) { return f.type == FrameType::kAck; };
  cluster.Forward(kA, kB, Message("m2"));
  cluster.RunFor(2 * options.resend_after_ms + 200);
  EXPECT_EQ(cluster.relay(kB).stats().relayed_in, 1u);
  EXPECT_GE(cluster.relay(kB).stats().duplicates_dropped, 1u);
  EXPECT_GE(cluster.relay(kA).stats().resent, 1u);
  cluster.drop = nullptr;
  cluster.RunFor(1000);
  EXPECT_EQ(cluster.relay(kA).custody_count(), 0u);
  EXPECT_EQ(cluster.deliveries[kB].size(), 1u);
  EXPECT_EQ(cluster.relay(kA).stats().expired, 1u);
}

// Delivered on B, the answer lost, B's link gone, the bridge comes to C: the stanza must not
// be delivered again on C before B answers (the simulator found this; see relay.cc Retry).
TEST(Relay, RouteMovesWhileHolderIsCutOffNoSecondDelivery) {
  Options options = Direct();
  Cluster cluster(3, options);
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  cluster.drop = [](const Frame& f) { return f.type == FrameType::kAck; };
  cluster.Forward(kA, kB, Message("m1"));
  cluster.Pump();
  ASSERT_EQ(cluster.deliveries[kB].size(), 1u);
  cluster.drop = nullptr;
  cluster.Cut(kA, kB);
  cluster.Unbind(kB, "cb2.example.com");
  cluster.Bind(kC, "cb2.example.com");
  cluster.Pump();
  EXPECT_EQ(cluster.directory(kA).NodeOf("cb2.example.com"), kC);
  cluster.RunFor(options.hold_ms + options.abort_wait_ms + 1000);
  EXPECT_EQ(cluster.deliveries[kB].size() + cluster.deliveries[kC].size(), 1u)
      << "delivered on B and again on C";
}

// Only the leader passes frames on: a member that is not the leader cannot send a
// stanza, or an answer, in another member's name (found by a review of the relay).
TEST(Relay, AMemberCannotSpeakForAnother) {
  Cluster cluster(3, Direct());
  cluster.SetLeader(kA);
  cluster.Bind(kC, "cb3.example.com");
  cluster.LinkAll();
  cluster.Pump();
  // B forges a stanza from A for C's bridge: dropped, counted.
  const std::string forged =
      EncodeStanza({{kA, 0}, 1, 1, 1, {kC, 0}, 0, Message("forged", "cb3.example.com")});
  cluster.Inject({kB, kC, FrameType::kStanza, forged});
  EXPECT_TRUE(cluster.deliveries[kC].empty());
  EXPECT_EQ(cluster.relay(kC).stats().failed, 1u);
  // The same frame passed on by the leader is taken.
  cluster.Inject(
      {kA, kC, FrameType::kStanza,
       EncodeStanza({{kB, 0}, 1, 1, 1, {kC, 0}, 1, Message("passed", "cb3.example.com")})});
  EXPECT_EQ(cluster.deliveries[kC].size(), 1u);
  cluster.ClearWire();

  // B forges C's answer "aborted" to a stanza A holds for C: A keeps it.
  cluster.Forward(kA, kC, Message("m1", "cb3.example.com"));
  cluster.ClearWire();  // the stanza never arrives
  ASSERT_EQ(cluster.relay(kA).custody_count(), 1u);
  cluster.Inject(
      {kB, kA, FrameType::kAck, EncodeAnswers({1, 0, {kC, 0}, {{1, Outcome::kAborted}}})});
  EXPECT_EQ(cluster.relay(kA).custody_count(), 1u);
  EXPECT_TRUE(cluster.bounces[kA].empty());
  // C's own answer counts.
  cluster.Inject(
      {kC, kA, FrameType::kAck, EncodeAnswers({1, 0, {kC, 0}, {{1, Outcome::kDelivered}}})});
  EXPECT_EQ(cluster.relay(kA).custody_count(), 0u);
}

// A stanza whose route moved asks the node that may hold it to let go at once, then
// once per resend interval: not once per route frame (route churn would multiply it).
TEST(Relay, AMoveAsksOncePerResendIntervalWhateverTheRouteChurn) {
  Cluster cluster(3, Direct());
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  cluster.Forward(kA, kB, Message("m1"));
  cluster.Pump(1);  // B gets it... and its answer is lost:
  cluster.drop = [](const Frame& frame) {
    return frame.type == FrameType::kAck || frame.type == FrameType::kAbort;
  };
  cluster.Pump();
  ASSERT_EQ(cluster.relay(kA).custody_count(), 1u);
  cluster.Unbind(kB, "cb2.example.com");
  cluster.Bind(kC, "cb2.example.com");
  cluster.Pump();
  EXPECT_EQ(Count(cluster.sent, kA, kB, FrameType::kAbort), 1);
  for (int i = 0; i < 10; ++i) {  // other routes come and go on C
    cluster.Inject(
        {kC, kA, FrameType::kRoutes,
         EncodeRoutes({RoutesPart::kChanges, {{true, "x" + std::to_string(i) + ".example.com"}}})});
  }
  EXPECT_EQ(Count(cluster.sent, kA, kB, FrameType::kAbort), 1);
  EXPECT_EQ(Count(cluster.sent, kA, kC, FrameType::kStanza), 0);  // not before B answers
  cluster.RunFor(800);  // past the resend interval (and a service tick): asked again
  EXPECT_EQ(Count(cluster.sent, kA, kB, FrameType::kAbort), 2);
  cluster.drop = nullptr;  // B answers now: it had delivered it, so C never gets it
  cluster.RunFor(600);
  EXPECT_EQ(cluster.relay(kA).custody_count(), 0u);
  EXPECT_EQ(cluster.deliveries[kB].size(), 1u);
  EXPECT_TRUE(cluster.deliveries[kC].empty());
}

TEST(RelayWire, AbortsAndAnswersAreBounded) {
  AbortFrame abort{{kA, 0}, 1, 1, {kB, 0}, 0, {}};
  for (uint64_t sequence = 1; sequence <= kAbortSequencesMax; ++sequence) {
    abort.sequences.push_back(sequence);
  }
  EXPECT_TRUE(DecodeAbort(EncodeAbort(abort)).ok());
  abort.sequences.push_back(kAbortSequencesMax + 1);
  EXPECT_FALSE(DecodeAbort(EncodeAbort(abort)).ok());
  EXPECT_FALSE(DecodeAbort(EncodeAbort({{kA, 0}, 1, 1, {kB, 0}, 0, {5, 5}})).ok());  // repeated
  EXPECT_FALSE(DecodeAbort(EncodeAbort({{kA, 0}, 1, 1, {kB, 0}, 0, {6, 5}})).ok());  // descending
  AnswerFrame answers{1, 0, {kB, 0}, {}};
  answers.answers.assign(kAnswersPerFrameMax + 1, {1, Outcome::kDelivered});
  EXPECT_FALSE(DecodeAnswers(EncodeAnswers(answers)).ok());
}

// A node with many routes sends them to a member that links up in frames of a bounded
// size, only while its link's queue is short; the member holds the whole set at the end,
// and what its old set had and the new lacks goes with the last frame, not before.
TEST(Relay, ARouteSetGoesInBoundedFramesPacedByTheLinkQueue) {
  DirectoryOptions paced;
  paced.routes_frame_bytes_max = 100;   // a few routes per frame
  paced.routes_queued_bytes_max = 250;  // a few frames per turn
  Cluster cluster(2, Direct(), paced);
  std::vector<std::string> routes;
  for (int i = 0; i < 40; ++i) {
    routes.push_back("cb" + std::to_string(100 + i) + ".example.com");  // 20 bytes in a frame
    cluster.directory(kA).LocalRoute(true, routes.back());
  }
  // What B had from A before: one route A no longer has.
  cluster.Inject({kA, kB, FrameType::kRoutes,
                  EncodeRoutes({RoutesPart::kWhole, {{true, "stale.example.com"}}})});
  ASSERT_EQ(cluster.directory(kB).NodeOf("stale.example.com"), kA);
  cluster.ClearWire();
  cluster.sent.clear();

  cluster.view(kA).queued_bytes[kB] = 250;  // the link is full: nothing goes
  cluster.SetViews();
  cluster.directory(kA).LinkUp(kB);
  cluster.Advance(10);
  EXPECT_EQ(Count(cluster.sent, kA, kB, FrameType::kRoutes), 0);
  cluster.Pump();  // B's own (empty) set to A
  cluster.view(kA).queued_bytes.erase(kB);
  cluster.SetViews();
  std::vector<RoutesPart> parts;
  for (int turn = 0; turn < 20; ++turn) {
    cluster.Advance(10);
    size_t before_last = 0, this_turn = 0;  // bytes sent this turn before its last frame
    while (!cluster.wire().empty()) {
      Frame frame = cluster.Take();
      ASSERT_EQ(frame.type, FrameType::kRoutes);
      EXPECT_LE(frame.payload.size(), 100u);
      auto decoded = DecodeRoutes(frame.payload);
      ASSERT_TRUE(decoded.ok());
      parts.push_back(decoded->part);
      before_last = this_turn;
      this_turn += frame.payload.size();
      cluster.Inject(frame);
      if (decoded->part != RoutesPart::kLast) {
        // Until the set is whole, the stale route stays (B cannot tell it is stale yet).
        EXPECT_EQ(cluster.directory(kB).NodeOf("stale.example.com"), kA);
      }
    }
    // A frame goes only while less than 250 bytes wait (the test's link takes nothing).
    EXPECT_LT(before_last, 250u) << turn;
    ASSERT_FALSE(parts.empty());
    if (parts.back() == RoutesPart::kLast) break;
    EXPECT_GE(this_turn, 250u) << turn;
  }
  ASSERT_EQ(parts.size(), 10u);  // 40 routes, 4 in a frame
  EXPECT_EQ(parts.front(), RoutesPart::kFirst);
  EXPECT_EQ(parts.back(), RoutesPart::kLast);
  for (size_t i = 1; i + 1 < parts.size(); ++i) EXPECT_EQ(parts[i], RoutesPart::kMore) << i;
  for (const std::string& route : routes)
    EXPECT_EQ(cluster.directory(kB).NodeOf(route), kA) << route;
  EXPECT_EQ(cluster.directory(kB).NodeOf("stale.example.com"), std::nullopt);
  // Nothing more goes once the set is sent.
  cluster.Advance(10);
  EXPECT_TRUE(cluster.wire().empty());
}

// Changes made while a set is under way: a route removed after its frame went is not
// brought back by the set's last frame, one added ahead of the set comes with it, one
// added behind it comes as a change. A part whose first frame was lost with a link is
// ignored until the set sent on the new link.
TEST(Relay, ChangesDuringARouteSetAndAPartWithoutItsFirst) {
  DirectoryOptions paced;
  paced.routes_frame_bytes_max = 25;  // one route per frame
  paced.routes_queued_bytes_max = 1;
  Cluster cluster(2, Direct(), paced);
  for (const char* route : {"b.example.com", "d.example.com", "f.example.com"}) {
    cluster.directory(kA).LocalRoute(true, route);
  }
  cluster.ClearWire();
  cluster.directory(kA).LinkUp(kB);
  cluster.Advance(10);  // first: b
  cluster.Pump();
  EXPECT_EQ(cluster.directory(kB).NodeOf("b.example.com"), kA);
  cluster.Unbind(kA, "b.example.com");  // behind the set: a change
  cluster.Bind(kA, "a.example.com");    // behind the set: a change
  cluster.Bind(kA, "e.example.com");    // ahead of it: comes with the set
  cluster.Pump();
  for (int turn = 0; turn < 6; ++turn) {
    cluster.Advance(10);
    cluster.Pump();
  }
  EXPECT_EQ(cluster.directory(kB).NodeOf("a.example.com"), kA);
  EXPECT_EQ(cluster.directory(kB).NodeOf("b.example.com"), std::nullopt);
  EXPECT_EQ(cluster.directory(kB).NodeOf("d.example.com"), kA);
  EXPECT_EQ(cluster.directory(kB).NodeOf("e.example.com"), kA);
  EXPECT_EQ(cluster.directory(kB).NodeOf("f.example.com"), kA);

  // The link breaks after a set's first frame arrived: B forgets the part it has, and a
  // later part without a first (never on one TCP link; a check all the same) changes
  // nothing.
  cluster.directory(kA).LinkUp(kB);
  cluster.Advance(10);
  const Frame first = cluster.Take();
  ASSERT_EQ(DecodeRoutes(first.payload)->part, RoutesPart::kFirst);
  cluster.Inject(first);
  cluster.Cut(kA, kB);
  cluster.Cut(kA, kB, false);
  cluster.Inject(
      {kA, kB, FrameType::kRoutes, EncodeRoutes({RoutesPart::kLast, {{true, "z.example.com"}}})});
  EXPECT_EQ(cluster.directory(kB).NodeOf("z.example.com"), std::nullopt);
  EXPECT_EQ(cluster.directory(kB).NodeOf("d.example.com"), kA);  // and withdraws nothing
}

// The floor a destination is sent is the lowest sequence bound for it (or that it may
// hold), not the lowest in all custody: a stanza stuck for one destination (it answers
// no one, for up to hold + abort wait) does not make the others remember every decision
// meanwhile (at 100k stanzas/s that filled decisions_max and stalled healthy paths).
TEST(Relay, AStanzaStuckForOneDestinationHoldsNoDecisionsElsewhere) {
  Options options = Direct();
  Cluster cluster(3, options);
  cluster.Bind(kB, "cb2.example.com");
  cluster.Bind(kC, "cb3.example.com");
  cluster.LinkAll();
  cluster.Pump();
  cluster.drop = [](const Frame& f) { return f.from == kC; };  // C answers no one
  cluster.Forward(kA, kC, Message("stuck", "cb3.example.com"));
  for (int i = 0; i < 100; ++i) {
    cluster.Forward(kA, kB, Message("m" + std::to_string(i)));
    cluster.RunFor(20, 10);
  }
  EXPECT_EQ(cluster.deliveries[kB].size(), 100u);
  EXPECT_EQ(cluster.relay(kA).custody_count(), 1u);  // the stuck one only
  EXPECT_LE(cluster.relay(kB).decisions_count(), 1u);
  EXPECT_EQ(cluster.relay(kC).decisions_count(), 1u);  // C keeps what it decided
  EXPECT_EQ(cluster.relay(kB).stats().duplicates_dropped, 0u);
}

// A link may come up before the sender's view lists the member (it has not applied the
// entry that adds it): the set then goes when the member is linked in the view, whole.
TEST(Relay, ARouteSetGoesWholeOnceTheMemberIsLinkedInTheView) {
  DirectoryOptions paced;
  paced.routes_frame_bytes_max = 100;
  paced.routes_queued_bytes_max = 250;
  Cluster cluster(2, Direct(), paced);
  std::vector<std::string> routes;
  for (int i = 0; i < 40; ++i) {
    routes.push_back("cb" + std::to_string(100 + i) + ".example.com");
    cluster.directory(kA).LocalRoute(true, routes.back());
  }
  cluster.view(kA).members.erase(kB);
  cluster.view(kA).linked.erase(kB);
  cluster.SetViews();
  cluster.ClearWire();
  cluster.directory(kA).LinkUp(kB);  // the transport's link is up; A's view lacks B
  cluster.Advance(10);
  cluster.Pump();
  cluster.view(kA).members.insert(kB);
  cluster.view(kA).linked.insert(kB);
  cluster.SetViews();
  cluster.RunFor(500, 10);
  for (const std::string& route : routes) {
    EXPECT_EQ(cluster.directory(kB).NodeOf(route), kA) << route;
  }
}

// LinkUp in the middle of a turn and the turn's Tick send one burst, not two: the queue
// the view measured does not hold what this turn queued.
TEST(Relay, ALinkUpAndTheTurnsTickSendOneBurst) {
  DirectoryOptions paced;
  paced.routes_frame_bytes_max = 100;
  paced.routes_queued_bytes_max = 250;
  Cluster cluster(2, Direct(), paced);
  for (int i = 0; i < 40; ++i) {
    cluster.directory(kA).LocalRoute(true, "cb" + std::to_string(100 + i) + ".example.com");
  }
  cluster.Advance(10);  // the sets the first view started
  cluster.ClearWire();
  cluster.directory(kA).LinkUp(kB);
  cluster.SetViews();
  cluster.Advance(10);
  size_t bytes = 0;
  for (const Frame& frame : cluster.wire()) bytes += frame.payload.size();
  EXPECT_LT(bytes, 250u + 100u);
}

// A stanza whose route moves gets a new sequence at its new destination (whose floor
// may have passed the old one); a late copy of the old one at the old destination is
// not delivered.
TEST(Relay, AMovedStanzaGoesUnderANewSequence) {
  Cluster cluster(3, Direct());
  cluster.Bind(kB, "cb2.example.com");
  cluster.LinkAll();
  cluster.Pump();
  cluster.Forward(kA, kB, Message("m"));
  const Frame old_copy = cluster.Take();  // B does not get it now
  ASSERT_EQ(DecodeStanza(old_copy.payload)->sequence, 1u);
  cluster.Unbind(kB, "cb2.example.com");
  cluster.Bind(kC, "cb2.example.com");
  cluster.Pump();  // A asks B, B answers "aborted", A sends it to C
  std::vector<uint64_t> to_c;
  for (const Frame& frame : cluster.sent) {
    if (frame.from != kA || frame.to != kC || frame.type != FrameType::kStanza) continue;
    auto decoded = DecodeStanza(frame.payload);
    to_c.push_back(decoded->sequence);
    EXPECT_EQ(decoded->floor, decoded->sequence);
  }
  ASSERT_EQ(to_c.size(), 1u);
  EXPECT_EQ(to_c[0], 2u);
  EXPECT_EQ(cluster.deliveries[kC].size(), 1u);
  cluster.Inject(old_copy);
  EXPECT_TRUE(cluster.deliveries[kB].empty());
  EXPECT_EQ(cluster.relay(kA).custody_count(), 0u);
  EXPECT_TRUE(cluster.bounces[kA].empty());
}

// Two lanes per node, wired by hand (the shards' relays, docs/data-links.md): each lane
// names its stanzas with its own sequences, a stanza goes to the destination's lane that
// owns its address, its answer comes back to the lane that sent it, and the destination
// keeps windows per origin lane, so two lanes' sequence 1 are two stanzas.
TEST(RelayLanes, EachLaneNamesItsOwnStanzasAndIsAnsweredAlone) {
  Options options = Direct();
  Directory directory_a, directory_b;
  View view_a, view_b;
  for (View* view : {&view_a, &view_b}) {
    view->member = true;
    view->can_deliver = true;
    view->lanes = {{kA, 2}, {kB, 2}};
  }
  view_a.members = view_a.linked = {kB};
  view_b.members = view_b.linked = {kA};
  Relay a0({kA, 0}, 1, "example.com", directory_a, options);
  Relay a1({kA, 1}, 1, "example.com", directory_a, options);
  Relay b0({kB, 0}, 1, "example.com", directory_b, options);
  Relay b1({kB, 1}, 1, "example.com", directory_b, options);
  directory_a.SetView(view_a);
  directory_b.SetView(view_b);
  for (Relay* relay : {&a0, &a1}) relay->SetView(1000, view_a);
  for (Relay* relay : {&b0, &b1}) relay->SetView(1000, view_b);
  directory_b.LocalRoute(true, "cb2.example.com");
  directory_a.OnRoutes(kB, EncodeRoutes({RoutesPart::kWhole, {{true, "cb2.example.com"}}}));
  ASSERT_EQ(directory_a.NodeOf("cb2.example.com"), kB);
  const uint16_t owner = static_cast<uint16_t>(router::OwnerShard("cb2.example.com", 2));
  Relay& b_owner = owner == 0 ? b0 : b1;
  Relay& b_other = owner == 0 ? b1 : b0;

  a0.Forward(1000, kSender, kB, Message("from-a0"));
  a1.Forward(1000, kSender, kB, Message("from-a1"));
  Ready ready0 = a0.TakeReady();
  Ready ready1 = a1.TakeReady();
  ASSERT_EQ(ready0.sends.size(), 1u);
  ASSERT_EQ(ready1.sends.size(), 1u);
  EXPECT_EQ(ready0.sends[0].shard, owner);
  EXPECT_EQ(ready1.sends[0].shard, owner);
  auto first = DecodeStanza(ready0.sends[0].payload);
  auto second = DecodeStanza(ready1.sends[0].payload);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->origin, (Lane{kA, 0}));
  EXPECT_EQ(second->origin, (Lane{kA, 1}));
  EXPECT_EQ(first->sequence, 1u);
  EXPECT_EQ(second->sequence, 1u);
  EXPECT_EQ(first->destination, (Lane{kB, owner}));

  b_owner.OnFrame(1000, {kA, 0}, FrameType::kStanza, ready0.sends[0].payload);
  b_owner.OnFrame(1000, {kA, 1}, FrameType::kStanza, ready1.sends[0].payload);
  b_owner.OnFrame(1000, {kA, 0}, FrameType::kStanza, ready0.sends[0].payload);  // again
  Ready at_b = b_owner.TakeReady();
  ASSERT_EQ(at_b.deliveries.size(), 2u);  // both, once each
  EXPECT_EQ(b_owner.stats().duplicates_dropped, 1u);
  std::map<uint16_t, std::string> answers;  // by the lane they go to
  for (const Send& send : at_b.sends) {
    ASSERT_EQ(send.type, FrameType::kAck);
    EXPECT_EQ(send.to, kA);
    answers[send.shard] = send.payload;
  }
  ASSERT_EQ(answers.size(), 2u);

  // An answer reaches only the lane whose stanza it names.
  a1.OnFrame(1000, {kB, owner}, FrameType::kAck, answers[0]);
  EXPECT_EQ(a1.custody_count(), 1u);
  a0.OnFrame(1000, {kB, owner}, FrameType::kAck, answers[0]);
  a1.OnFrame(1000, {kB, owner}, FrameType::kAck, answers[1]);
  EXPECT_EQ(a0.custody_count(), 0u);
  EXPECT_EQ(a1.custody_count(), 0u);

  // A lane the membership does not list (B has two) is refused; so is a frame for another
  // lane of this node.
  const uint64_t failed = b_owner.stats().failed;
  const std::string stray_bytes = Message("stray");  // outlives the frame's view of it
  StanzaFrame stray{{kA, 1}, 1, 2, 2, {kB, owner}, 0, stray_bytes};
  b_owner.OnFrame(1000, {kA, 5}, FrameType::kStanza, EncodeStanza(stray));
  stray.origin = {kA, 5};
  b_owner.OnFrame(1000, {kA, 1}, FrameType::kStanza, EncodeStanza(stray));
  stray.origin = {kA, 1};
  stray.destination = {kB, static_cast<uint16_t>(1 - owner)};
  b_owner.OnFrame(1000, {kA, 1}, FrameType::kStanza, EncodeStanza(stray));
  EXPECT_EQ(b_owner.stats().failed, failed + 2);  // the first was not even looked at
  EXPECT_TRUE(b_owner.TakeReady().deliveries.empty());
  EXPECT_TRUE(b_other.TakeReady().empty());
}

}  // namespace
}  // namespace stanzad::cluster::relay
