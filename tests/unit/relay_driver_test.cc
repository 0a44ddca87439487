// RelayDriver (server/relay_driver.h): two drivers wired through fake links and shards
// that write one shared journal, so the order of a turn's effects is what is asserted:
// routes reach every shard, a stanza crosses, its answer leaves (and the links are
// flushed) before the destination's shard gets it, bounces go to the sender's shard.
#include "server/relay_driver.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "core/router/route_table.h"
#include "net/router_shard.h"

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

class FakeLinks final : public RelayDriver::Links {
 public:
  FakeLinks(raft::NodeId self, raft::NodeId peer, std::deque<Wire>* wire,
            std::vector<std::string>* journal)
      : self_(self), peer_(peer), wire_(wire), journal_(journal) {}
  bool member() const override { return true; }
  raft::NodeId leader() const override { return kA; }
  std::vector<raft::NodeId> peers() const override { return {peer_}; }
  bool linked(raft::NodeId) const override { return true; }
  size_t queued_bytes(raft::NodeId) const override { return 0; }
  void Send(raft::NodeId peer, cluster::FrameType type, std::string_view payload) override {
    queued_.push_back({self_, peer, type, std::string(payload)});
  }
  void Flush() override {
    for (Wire& wire : queued_) {
      journal_->push_back("node " + std::to_string(self_) + " sends frame " +
                          std::to_string(static_cast<int>(wire.type)));
      wire_->push_back(std::move(wire));
    }
    queued_.clear();
  }

 private:
  raft::NodeId self_;
  raft::NodeId peer_;
  std::deque<Wire>* wire_;
  std::vector<std::string>* journal_;
  std::vector<Wire> queued_;  // sent when flushed
};

class FakeShards final : public RelayDriver::Shards {
 public:
  FakeShards(raft::NodeId self, std::vector<std::string>* journal)
      : self_(self), journal_(journal) {}
  int count() const override { return kShards; }
  bool can_deliver() const override { return true; }
  void Post(int shard, uint32_t kind, uint64_t target, uint64_t argument,
            std::string_view payload) override {
    posts.push_back({shard, kind, target, argument, std::string(payload)});
    journal_->push_back("node " + std::to_string(self_) + " posts " + std::to_string(kind) +
                        " to shard " + std::to_string(shard));
  }
  struct Posted {
    int shard;
    uint32_t kind;
    uint64_t target;
    uint64_t argument;
    std::string payload;
  };
  std::vector<Posted> posts;

 private:
  raft::NodeId self_;
  std::vector<std::string>* journal_;
};

net::CrossShardMessage Record(uint32_t kind, net::ConnectionId target, uint64_t argument,
                              std::string_view payload) {
  net::CrossShardMessage message;
  message.kind = kind;
  message.target = target;
  message.argument = argument;
  message.payload = payload;
  return message;
}

struct TwoNodes {
  std::deque<Wire> wire;
  std::vector<std::string> journal;
  cluster::relay::Options options;
  RelayDriver a{kA, 1, "example.com", options, {5280, 1}};
  RelayDriver b{kB, 1, "example.com", options, {5290, 1}};
  FakeLinks links_a{kA, kB, &wire, &journal};
  FakeLinks links_b{kB, kA, &wire, &journal};
  FakeShards shards_a{kA, &journal};
  FakeShards shards_b{kB, &journal};
  uint64_t now_ms = 1000;

  void Turns() {
    a.Turn(now_ms, "example.com", &links_a, shards_a);
    b.Turn(now_ms, "example.com", &links_b, shards_b);
  }
  // Frames arrive (each receiver then takes a turn) until none is left.
  void Pump() {
    for (int i = 0; i < 100 && !wire.empty(); ++i) {
      Wire frame = std::move(wire.front());
      wire.pop_front();
      RelayDriver& to = frame.to == kA ? a : b;
      to.OnFrame(now_ms, frame.from, frame.type, frame.payload);
      if (frame.to == kA) {
        a.Turn(now_ms, "example.com", &links_a, shards_a);
      } else {
        b.Turn(now_ms, "example.com", &links_b, shards_b);
      }
    }
  }
};

TEST(RelayDriver, RoutesReachEveryShardAndAStanzaCrossesAnsweredFirst) {
  TwoNodes nodes;
  nodes.Turns();
  nodes.a.OnLinkUp(kB);
  nodes.b.OnLinkUp(kA);
  nodes.b.OnShardRecord(nodes.now_ms,
                        Record(net::kCtlRouteUp, net::kNoConnection, 0, "cb2.example.com"));
  nodes.Turns();
  nodes.Pump();
  // A's shards, every one of them, learn that cb2 is on B.
  int binds = 0;
  for (const FakeShards::Posted& post : nodes.shards_a.posts) {
    if (post.kind != net::kRemoteRouteBind) continue;
    EXPECT_EQ(post.argument, kB);
    EXPECT_EQ(post.payload, "cb2.example.com");
    ++binds;
  }
  EXPECT_EQ(binds, kShards);
  ASSERT_EQ(nodes.a.RemoteRoutes().size(), 1u);

  const net::ConnectionId sender = net::MakeConnectionId(1, 7, 1);
  const std::string stanza =
      "<message from='cb1.example.com' to='cb2.example.com' id='m1'><body>x</body></message>";
  nodes.a.OnShardRecord(nodes.now_ms, Record(net::kCtlForward, sender, kB, stanza));
  EXPECT_EQ(nodes.a.custody_count(), 1u);
  nodes.journal.clear();
  nodes.Turns();
  nodes.Pump();
  EXPECT_EQ(nodes.a.custody_count(), 0u);  // answered "delivered"
  // B answered (and flushed its links) before its shard got the stanza.
  const std::string answer =
      "node 2 sends frame " + std::to_string(static_cast<int>(cluster::FrameType::kAck));
  const std::string delivery = "node 2 posts " + std::to_string(net::kDeliverFromPeer) +
                               " to shard " +
                               std::to_string(router::OwnerShard("cb2.example.com", kShards));
  auto answered = std::find(nodes.journal.begin(), nodes.journal.end(), answer);
  auto delivered = std::find(nodes.journal.begin(), nodes.journal.end(), delivery);
  ASSERT_NE(answered, nodes.journal.end());
  ASSERT_NE(delivered, nodes.journal.end());
  EXPECT_LT(answered, delivered);
  int deliveries = 0;
  for (const FakeShards::Posted& post : nodes.shards_b.posts) {
    if (post.kind != net::kDeliverFromPeer) continue;
    EXPECT_EQ(post.argument, kA);  // the origin
    EXPECT_EQ(post.payload, stanza);
    ++deliveries;
  }
  EXPECT_EQ(deliveries, 1);
}

// Out of the cluster nothing is sent; a stanza with nowhere to go is bounced, at its
// deadline, to the shard of the connection that sent it.
TEST(RelayDriver, WithoutLinksAStanzaIsBouncedToItsSendersShard) {
  std::vector<std::string> journal;
  cluster::relay::Options options;
  options.no_leader_hold_ms = 100;
  RelayDriver driver(kA, 1, "example.com", options, {5280, 1});
  FakeShards shards(kA, &journal);
  const net::ConnectionId sender = net::MakeConnectionId(1, 3, 9);
  const std::string stanza = "<message from='cb1.example.com' to='cb2.example.com' id='m1'/>";
  driver.Turn(1000, "example.com", nullptr, shards);
  driver.OnShardRecord(1000, Record(net::kCtlForward, sender, kB, stanza));
  for (uint64_t now_ms = 1000; now_ms <= 7000; now_ms += 200) {
    driver.Turn(now_ms, "example.com", nullptr, shards);
  }
  ASSERT_EQ(shards.posts.size(), 1u);
  EXPECT_EQ(shards.posts[0].kind, net::kBounce);
  EXPECT_EQ(shards.posts[0].shard, 1);
  EXPECT_EQ(shards.posts[0].target, sender);
  EXPECT_EQ(shards.posts[0].payload, stanza);
  EXPECT_EQ(driver.custody_count(), 0u);
}

}  // namespace
}  // namespace stanzad::server
