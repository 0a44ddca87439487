// The route directory's digests and set requests (cluster/relay/directory.h): two
// directories wired by hand, every kRoutes frame between them in a queue the test can
// inspect, drop or add to, time moving only when a test says so.
#include "cluster/relay/directory.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cluster/relay/wire.h"

namespace stanzad::cluster::relay {
namespace {

constexpr NodeId kA = 1;
constexpr NodeId kB = 2;
constexpr uint64_t kDigestMs = 100;

struct Frame {
  NodeId from;
  NodeId to;
  std::string payload;
  RoutesFrame routes;  // decoded
};

DirectoryOptions Options() {
  DirectoryOptions options;
  options.digest_interval_ms = kDigestMs;
  return options;
}

// A and B, members of one another's view and linked; each is sent the other's set when
// the first turn ticks.
class Pair {
 public:
  explicit Pair(DirectoryOptions options = Options()) {
    for (const auto& [id, other] : {std::pair{kA, kB}, std::pair{kB, kA}}) {
      directories_[id] = std::make_unique<Directory>(options);
      View& view = views_[id];
      view.member = true;
      view.members.insert(other);
      view.linked.insert(other);
    }
    SetViews();
  }

  Directory& at(NodeId id) { return *directories_.at(id); }
  View& view(NodeId id) { return views_.at(id); }
  uint64_t now() const { return now_ms_; }

  void SetViews() {
    for (auto& [id, directory] : directories_) directory->SetView(views_.at(id));
    Collect();
  }
  void Bind(NodeId id, const std::string& address) {
    at(id).LocalRoute(true, address);
    Collect();
  }
  void Unbind(NodeId id, const std::string& address) {
    at(id).LocalRoute(false, address);
    Collect();
  }
  // Time passes; both tick.
  void Advance(uint64_t ms) {
    now_ms_ += ms;
    for (auto& [id, directory] : directories_) directory->Tick(now_ms_);
    Collect();
  }
  // Ticks every 10 ms for `ms`, delivering the frames after each step.
  void RunFor(uint64_t ms) {
    for (uint64_t t = 0; t < ms; t += 10) {
      Advance(10);
      Pump();
    }
  }
  // Delivers the queued frames in order, and what they make the directories send.
  void Pump() {
    for (int i = 0; i < 1000 && !wire_.empty(); ++i) {
      Frame frame = std::move(wire_.front());
      wire_.pop_front();
      if (drop && drop(frame)) continue;
      Inject(frame.from, frame.to, frame.payload);
    }
    ASSERT_TRUE(wire_.empty()) << "a frame storm";
  }
  void Inject(NodeId from, NodeId to, const std::string& payload) {
    at(to).OnRoutes(from, payload);
    Collect();
  }

  // Frames sent from `from` to `to` of `part` since the test began (or `sent` was cleared).
  int Count(NodeId from, NodeId to, RoutesPart part) const {
    int count = 0;
    for (const Frame& frame : sent) {
      count += frame.from == from && frame.to == to && frame.routes.part == part ? 1 : 0;
    }
    return count;
  }

  std::function<bool(const Frame&)> drop;
  std::vector<Frame> sent;
  std::map<NodeId, std::vector<RouteChange>> route_changes;
  std::map<NodeId, std::vector<LogLine>> logs;

 private:
  void Collect() {
    for (auto& [id, directory] : directories_) {
      Ready ready = directory->TakeReady();
      for (Send& send : ready.sends) {
        ASSERT_EQ(send.type, FrameType::kRoutes);
        absl::StatusOr<RoutesFrame> routes = DecodeRoutes(send.payload);
        ASSERT_TRUE(routes.ok()) << routes.status();
        Frame frame{id, send.to, std::move(send.payload), std::move(*routes)};
        sent.push_back(frame);
        wire_.push_back(std::move(frame));
      }
      for (RouteChange& change : ready.route_changes) {
        route_changes[id].push_back(std::move(change));
      }
      for (LogLine& line : ready.logs) logs[id].push_back(std::move(line));
      directory->CheckInvariants();
    }
  }

  uint64_t now_ms_ = 1000;
  std::map<NodeId, std::unique_ptr<Directory>> directories_;
  std::map<NodeId, View> views_;
  std::deque<Frame> wire_;
};

std::string Digest(RouteDigest digest) { return EncodeRoutes({RoutesPart::kDigest, {}, digest}); }
std::string Request() { return EncodeRoutes({RoutesPart::kSetRequest, {}}); }

// Digests go every digest_interval_ms (the first one that long after the first Tick), carry
// the sender's routes in brief, and a receiver that holds the same asks for nothing.
TEST(DirectoryDigest, EqualDigestsAskForNothing) {
  Pair pair;
  pair.Bind(kA, "cb1.example.com");
  pair.Bind(kA, "juliet@example.com/balcony");
  pair.Advance(0);  // the first Tick: the sets go, no digest yet
  pair.Pump();
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kDigest), 0);
  pair.Advance(kDigestMs - 1);
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kDigest), 0);
  pair.Advance(1);
  ASSERT_EQ(pair.Count(kA, kB, RoutesPart::kDigest), 1);
  const Frame& digest = *std::find_if(pair.sent.begin(), pair.sent.end(), [](const Frame& frame) {
    return frame.from == kA && frame.routes.part == RoutesPart::kDigest;
  });
  EXPECT_EQ(digest.routes.digest.count, 2u);
  EXPECT_EQ(digest.routes.digest, pair.at(kA).local_digest());
  EXPECT_EQ(digest.payload.size(), kRoutesHeaderBytes + kRouteDigestBytes);
  pair.Advance(0);  // the same time again: no second digest
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kDigest), 1);
  pair.Pump();
  pair.RunFor(10 * kDigestMs);
  EXPECT_GE(pair.Count(kA, kB, RoutesPart::kDigest), 10);
  EXPECT_GE(pair.Count(kB, kA, RoutesPart::kDigest), 10);  // B's: of no routes
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kSetRequest), 0);
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 0);
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kWhole), 1);  // the set of the first turn only
  EXPECT_EQ(pair.at(kB).NodeOf("cb1.example.com"), kA);
}

// A change lost on a link that stays up: the first mismatched digest asks for nothing, the
// second asks for the whole set, which makes the receiver whole; then the digests match
// and nothing more is asked.
TEST(DirectoryDigest, ALostChangeIsAskedForOnTheSecondMismatchAndTheSetRepairsIt) {
  Pair pair;
  pair.Bind(kA, "x.example.com");
  pair.Bind(kA, "gone.example.com");
  pair.Advance(0);
  pair.Pump();
  ASSERT_EQ(pair.at(kB).NodeOf("gone.example.com"), kA);
  pair.drop = [](const Frame& frame) {
    return frame.from == kA && frame.routes.part == RoutesPart::kChanges;
  };
  pair.Bind(kA, "y.example.com");
  pair.Unbind(kA, "gone.example.com");
  pair.Pump();
  pair.drop = nullptr;
  EXPECT_EQ(pair.at(kB).NodeOf("y.example.com"), std::nullopt);
  EXPECT_EQ(pair.at(kB).NodeOf("gone.example.com"), kA);
  pair.route_changes.clear();

  pair.RunFor(kDigestMs);  // the first digest after the loss
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kDigest), 1);
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 0);
  pair.RunFor(kDigestMs);  // the second: B asks, A's set goes at its next turn
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kDigest), 2);
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 1);
  pair.RunFor(10);
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kWhole), 2);
  EXPECT_EQ(pair.at(kB).NodeOf("x.example.com"), kA);
  EXPECT_EQ(pair.at(kB).NodeOf("y.example.com"), kA);
  EXPECT_EQ(pair.at(kB).NodeOf("gone.example.com"), std::nullopt);
  // The shards were told exactly what changed.
  ASSERT_EQ(pair.route_changes[kB].size(), 2u);
  EXPECT_EQ(pair.route_changes[kB][0].op, RouteChange::Op::kUnbind);
  EXPECT_EQ(pair.route_changes[kB][0].address, "gone.example.com");
  EXPECT_EQ(pair.route_changes[kB][1].op, RouteChange::Op::kBind);
  EXPECT_EQ(pair.route_changes[kB][1].address, "y.example.com");

  pair.RunFor(10 * kDigestMs);
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 1);
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kWhole), 2);
}

// Two mismatches in a row, not two in all: a matching digest between them starts the count
// again. A request lost on the way is asked again after two more.
// A holds x.example.com and B has heard it; returns A's digest (what B holds of A).
RouteDigest BindOneAndLink(Pair& pair) {
  pair.Bind(kA, "x.example.com");
  pair.Advance(0);
  pair.Pump();
  return pair.at(kA).local_digest();
}

TEST(DirectoryDigest, OnlyMismatchesInARowAskAndALostRequestIsAskedAgain) {
  Pair pair;
  const RouteDigest right = BindOneAndLink(pair);
  RouteDigest wrong = right;
  wrong.Add("y.example.com");
  pair.sent.clear();
  pair.Inject(kA, kB, Digest(wrong));
  pair.Inject(kA, kB, Digest(right));
  pair.Inject(kA, kB, Digest(wrong));
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 0);
  pair.Inject(kA, kB, Digest(wrong));
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 1);
  pair.Inject(kA, kB, Digest(wrong));  // counted again from zero
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 1);
  pair.Inject(kA, kB, Digest(wrong));  // the request was lost (never answered): as soon
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 2);
  // A matching digest ends the spell: two mismatches ask again.
  pair.Inject(kA, kB, Digest(right));
  pair.Inject(kA, kB, Digest(wrong));
  pair.Inject(kA, kB, Digest(wrong));
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 3);
}

// A mismatch that no set repairs (here: digests that never match what B holds; in the
// field, a route B refuses) is asked about less and less often, never in a loop, and
// said once in the log.
TEST(DirectoryDigest, AMismatchNoSetRepairsIsAskedAboutLessAndLessOften) {
  Pair pair;
  RouteDigest wrong = BindOneAndLink(pair);
  wrong.Add("never.example.com");
  pair.sent.clear();
  std::vector<int> asked_at;  // the mismatches after which B asked
  for (int digest = 1; digest <= 300; ++digest) {
    const int before = pair.Count(kB, kA, RoutesPart::kSetRequest);
    pair.Inject(kA, kB, Digest(wrong));
    pair.Pump();      // B's request reaches A
    pair.Advance(0);  // A's set leaves
    pair.Pump();      // and reaches B, and changes nothing
    if (pair.Count(kB, kA, RoutesPart::kSetRequest) > before) asked_at.push_back(digest);
  }
  // A's whole set came before the first mismatch (at the link's start) and every request
  // is answered by another: twice as many mismatches each time, 2, 4, 8 ... up to 128.
  EXPECT_EQ(asked_at, (std::vector<int>{2, 6, 14, 30, 62, 126, 254}));
  ASSERT_EQ(pair.logs[kB].size(), 1u);
  EXPECT_EQ(pair.logs[kB][0].event, "route_digest_mismatch_persists");
  EXPECT_NE(pair.logs[kB][0].fields.find("member=1"), std::string::npos);
}

// A request while a set is under way to the asker does not restart it (one set in flight
// per member), and no digest goes to a member while its set is under way.
TEST(DirectoryDigest, ARequestWhileASetIsUnderWayIsIgnored) {
  DirectoryOptions paced = Options();
  paced.routes_frame_bytes_max = 25;  // one route per frame
  paced.routes_queued_bytes_max = 1;  // one frame per turn while the link takes them
  Pair pair(paced);
  for (const char* route : {"a.example.com", "b.example.com", "c.example.com", "d.example.com"}) {
    pair.Bind(kA, route);
  }
  pair.Advance(0);  // the set's first part
  pair.Pump();
  ASSERT_EQ(pair.Count(kA, kB, RoutesPart::kFirst), 1);
  pair.view(kA).queued_bytes[kB] = 1000;  // the link is full: the set waits
  pair.SetViews();
  pair.Inject(kB, kA, Request());
  pair.Inject(kB, kA, Request());
  pair.RunFor(5 * kDigestMs);
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kFirst), 1);
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kMore), 0);
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kDigest), 0);
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 0);  // B heard no digest from A
  pair.view(kA).queued_bytes.clear();
  pair.SetViews();
  pair.RunFor(3 * kDigestMs);
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kFirst), 1);  // not restarted
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kMore), 2);
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kLast), 1);
  EXPECT_GE(pair.Count(kA, kB, RoutesPart::kDigest), 2);
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 0);
  EXPECT_EQ(pair.at(kB).NodeOf("d.example.com"), kA);

  // Once no set is under way, a request starts one, whole.
  pair.Inject(kB, kA, Request());
  pair.RunFor(10 * kDigestMs);
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kFirst), 2);
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kLast), 2);
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 0);
}

// A digest after a set's first part means the rest was lost (the sender sends none while
// its set is under way): the receiver gives the set up, keeps what its parts claimed, and
// asks for a new one on the second mismatch; a late part of the old set changes nothing.
TEST(DirectoryDigest, ADigestInTheMiddleOfASetGivesItUp) {
  Pair pair;
  RouteDigest all;
  for (const char* route : {"a.example.com", "b.example.com", "c.example.com"}) all.Add(route);
  pair.Inject(kA, kB, EncodeRoutes({RoutesPart::kFirst, {{true, "a.example.com"}}}));
  EXPECT_EQ(pair.at(kB).NodeOf("a.example.com"), kA);
  pair.sent.clear();
  pair.Inject(kA, kB, Digest(all));
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 0);
  pair.Inject(kA, kB, EncodeRoutes({RoutesPart::kLast, {{true, "c.example.com"}}}));
  EXPECT_EQ(pair.at(kB).NodeOf("c.example.com"), std::nullopt);  // no set under way
  EXPECT_EQ(pair.at(kB).NodeOf("a.example.com"), kA);
  pair.Inject(kA, kB, Digest(all));
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 1);
}

// Bad digests and requests change nothing: no frame, no route change, no count toward a
// request, no set; nor do good ones from a member whose link is down here, or from a node
// that is no member.
TEST(DirectoryDigest, MalformedOrMisplacedDigestsAndRequestsChangeNothing) {
  Pair pair;
  RouteDigest wrong = BindOneAndLink(pair);
  wrong.Add("y.example.com");
  const std::string good = Digest(wrong);
  const std::vector<std::string> bad = {
      good.substr(0, good.size() - 1),  // short
      good + "x",                       // long
      good.substr(0, 1),                // no body
      Request() + "x",                  // a request with a body
      std::string("\x07", 1),           // no such part
      "",
  };
  pair.sent.clear();
  pair.route_changes.clear();
  for (const std::string& payload : bad) {
    pair.Inject(kA, kB, payload);
    pair.Inject(kB, kA, payload);
  }
  EXPECT_TRUE(pair.sent.empty());
  EXPECT_TRUE(pair.route_changes.empty());
  pair.Advance(1);
  EXPECT_TRUE(pair.sent.empty());  // no set started by a bad request
  EXPECT_EQ(pair.at(kB).NodeOf("x.example.com"), kA);

  pair.Inject(kA, kB, good);  // a first mismatch: the bad ones did not count
  EXPECT_TRUE(pair.sent.empty());
  for (const std::string& payload : bad) pair.Inject(kA, kB, payload);
  pair.Inject(kA, kB, good);  // nor did they break the row
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 1);

  // From no member, or over a link that is down here: ignored.
  pair.sent.clear();
  for (int i = 0; i < 4; ++i) {
    pair.Inject(9, kB, good);
    pair.Inject(9, kA, Request());
  }
  pair.view(kB).linked.clear();
  pair.view(kA).linked.clear();
  pair.SetViews();
  for (int i = 0; i < 4; ++i) {
    pair.Inject(kA, kB, good);
    pair.Inject(kB, kA, Request());
  }
  pair.Advance(1);
  EXPECT_TRUE(pair.sent.empty());
  // Linked again: one whole set each way, as for any link, and nothing the ignored frames
  // asked for.
  pair.view(kB).linked.insert(kA);
  pair.view(kA).linked.insert(kB);
  pair.SetViews();
  pair.Advance(1);
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kWhole), 1);
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kWhole), 1);
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 0);
}

// B saw its link to A go down and come back; A saw nothing (its view never changed), so A
// sends no new set. B dropped A's account routes for the outage: A's digests bring them back.
TEST(DirectoryDigest, AccountRoutesDroppedForAnOutageOnlyOneSideSawComeBack) {
  Pair pair;
  pair.Bind(kA, "juliet@example.com");
  pair.Advance(0);
  pair.Pump();
  ASSERT_EQ(pair.at(kB).NodeOf("juliet@example.com"), kA);
  pair.view(kB).linked.clear();
  pair.SetViews();
  EXPECT_EQ(pair.at(kB).NodeOf("juliet@example.com"), std::nullopt);
  pair.view(kB).linked.insert(kA);
  pair.SetViews();
  pair.sent.clear();
  pair.RunFor(3 * kDigestMs);
  EXPECT_EQ(pair.Count(kA, kB, RoutesPart::kWhole), 1);  // asked for, once
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 1);
  EXPECT_EQ(pair.at(kB).NodeOf("juliet@example.com"), kA);
}

// Routes dropped all at once: the digest is of no routes, and the receiver agrees.
TEST(DirectoryDigest, DroppedRoutesDigestToNothing) {
  Pair pair;
  pair.Bind(kA, "x.example.com");
  pair.Bind(kA, "z@example.com");
  pair.Advance(0);
  pair.Pump();
  pair.at(kA).DropLocalRoutes();
  EXPECT_EQ(pair.at(kA).local_digest(), RouteDigest{});
  pair.RunFor(5 * kDigestMs);
  EXPECT_EQ(pair.at(kB).NodeOf("x.example.com"), std::nullopt);
  EXPECT_EQ(pair.Count(kB, kA, RoutesPart::kSetRequest), 0);
}

}  // namespace
}  // namespace stanzad::cluster::relay
