// RouteDriver (server/route_driver.h): two drivers wired through fake links and shards, on
// a clock the test moves. A route bound on one node's shards reaches every shard of the
// other, and one whose frame was lost gets there by the route digests; each node tells the
// other its data plane when their link comes up; out of a cluster nothing is sent.
#include "server/route_driver.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

#include "router/router_shard.h"

namespace stanzad::server {
namespace {

constexpr raft::NodeId kA = 1;
constexpr raft::NodeId kB = 2;
constexpr int kShards = 2;

struct Wire {
  raft::NodeId from;
  raft::NodeId to;
  cluster::FrameType type;
  std::string payload;
};

class FakeLinks final : public RouteDriver::Links {
 public:
  FakeLinks(raft::NodeId self, raft::NodeId peer, std::deque<Wire>* wire)
      : self_(self), peer_(peer), wire_(wire) {}
  bool member() const override { return true; }
  raft::NodeId leader() const override { return kA; }
  std::vector<raft::NodeId> peers() const override { return {peer_}; }
  bool linked(raft::NodeId) const override { return true; }
  size_t queued_bytes(raft::NodeId) const override { return 0; }
  void Send(raft::NodeId peer, cluster::FrameType type, std::string_view payload) override {
    queued_.push_back({self_, peer, type, std::string(payload)});
  }
  void Flush() override {
    for (Wire& wire : queued_) wire_->push_back(std::move(wire));
    queued_.clear();
  }

 private:
  raft::NodeId self_;
  raft::NodeId peer_;
  std::deque<Wire>* wire_;
  std::vector<Wire> queued_;  // sent when flushed
};

class FakeShards final : public RouteDriver::Shards {
 public:
  int count() const override { return kShards; }
  void Post(int shard, const router::ShardRecord& record) override {
    Posted posted{shard, "other", 0, ""};
    if (const auto* bind = std::get_if<router::RemoteRouteBind>(&record)) {
      posted = {shard, "RemoteRouteBind", bind->node, std::string(bind->address)};
    } else if (const auto* unbind = std::get_if<router::RemoteRouteUnbind>(&record)) {
      posted = {shard, "RemoteRouteUnbind", unbind->node, std::string(unbind->address)};
    } else if (const auto* forget = std::get_if<router::ForgetNode>(&record)) {
      posted = {shard, "ForgetNode", forget->node, ""};
    }
    posts.push_back(std::move(posted));
  }
  // A record as posted (its views do not outlive the call).
  struct Posted {
    int shard;
    std::string record;  // "RemoteRouteBind", ...
    uint64_t node;
    std::string address;
  };
  std::vector<Posted> posts;
};

struct TwoNodes {
  uint64_t now_ms = 1000;
  std::deque<Wire> wire;
  RouteDriver a{{5280, 2}, {}, [this] { return now_ms; }};
  RouteDriver b{{5290, 4}, {}, [this] { return now_ms; }};
  FakeLinks links_a{kA, kB, &wire};
  FakeLinks links_b{kB, kA, &wire};
  FakeShards shards_a, shards_b;

  void Turns() {
    a.Turn(&links_a, shards_a);
    b.Turn(&links_b, shards_b);
  }
  void Pump() {
    for (int i = 0; i < 100 && !wire.empty(); ++i) {
      Wire frame = std::move(wire.front());
      wire.pop_front();
      (frame.to == kA ? a : b).OnFrame(frame.from, frame.type, frame.payload);
      Turns();
    }
  }
  // Both links come up and cb2.example.com is bound on B; what that sends is delivered.
  void LinkAndBindOnB() {
    Turns();
    a.OnLinkUp(kB);
    b.OnLinkUp(kA);
    b.OnShardRecord(router::RouteUp{"cb2.example.com"});
    Turns();
    Pump();
  }
};

TEST(RouteDriver, RoutesReachEveryShardAndDataPlanesAreTold) {
  TwoNodes nodes;
  nodes.LinkAndBindOnB();
  // Each learned the other's data port and lanes.
  ASSERT_EQ(nodes.a.data_planes().count(kB), 1u);
  EXPECT_EQ(nodes.a.data_planes().at(kB), (cluster::DataPlaneInfo{5290, 4}));
  EXPECT_EQ(nodes.b.data_planes().at(kA), (cluster::DataPlaneInfo{5280, 2}));
  EXPECT_GT(nodes.a.data_planes_generation(), 0u);
  // A's shards, every one of them, learn that cb2 is on B.
  int binds = 0;
  for (const FakeShards::Posted& post : nodes.shards_a.posts) {
    if (post.record != "RemoteRouteBind") continue;
    EXPECT_EQ(post.node, kB);
    EXPECT_EQ(post.address, "cb2.example.com");
    ++binds;
  }
  EXPECT_EQ(binds, kShards);
  ASSERT_EQ(nodes.a.RemoteRoutes().size(), 1u);
  // Unbound there: withdrawn here, on every shard.
  nodes.b.OnShardRecord(router::RouteDown{"cb2.example.com"});
  nodes.Turns();
  nodes.Pump();
  int unbinds = 0;
  for (const FakeShards::Posted& post : nodes.shards_a.posts) {
    unbinds += post.record == "RemoteRouteUnbind" ? 1 : 0;
  }
  EXPECT_EQ(unbinds, kShards);
  EXPECT_TRUE(nodes.a.RemoteRoutes().empty());
  // Relay frames are not the driver's: stanzas travel on the shards' data links.
  nodes.a.OnFrame(kB, cluster::FrameType::kStanza, "anything");
  nodes.Turns();
  EXPECT_TRUE(nodes.wire.empty());
}

// The routes frame of a route bound on B is lost on a link that stays up: B's digests (one a
// second, by the driver's clock) make A ask for B's set, and A's shards learn the route.
TEST(RouteDriver, ALostRoutesFrameIsRepairedByTheDigests) {
  TwoNodes nodes;
  nodes.LinkAndBindOnB();
  ASSERT_EQ(nodes.a.RemoteRoutes().size(), 1u);
  nodes.b.OnShardRecord(router::RouteUp{"cb3.example.com"});
  nodes.Turns();
  ASSERT_EQ(nodes.wire.size(), 1u);
  nodes.wire.clear();  // lost
  nodes.shards_a.posts.clear();
  const cluster::relay::DirectoryOptions options;
  for (int digest = 0; digest < 2; ++digest) {  // the second mismatch asks
    EXPECT_EQ(nodes.a.RemoteRoutes().size(), 1u) << digest;
    nodes.now_ms += options.digest_interval_ms;
    nodes.Turns();
    nodes.Pump();
  }
  EXPECT_EQ(nodes.a.RemoteRoutes().size(), 2u);
  int binds = 0;
  for (const FakeShards::Posted& post : nodes.shards_a.posts) {
    if (post.record != "RemoteRouteBind") continue;
    EXPECT_EQ(post.node, kB);
    EXPECT_EQ(post.address, "cb3.example.com");
    ++binds;
  }
  EXPECT_EQ(binds, kShards);
}

TEST(RouteDriver, OutOfAClusterNothingIsSent) {
  std::deque<Wire> wire;
  RouteDriver driver({5280, 1});
  FakeShards shards;
  driver.OnLinkUp(kB);
  driver.OnShardRecord(router::RouteUp{"cb1.example.com"});
  driver.Turn(nullptr, shards);
  EXPECT_TRUE(wire.empty());
  EXPECT_TRUE(shards.posts.empty());
}

}  // namespace
}  // namespace stanzad::server
