// DataLinks (cluster/data/data_links.h): two or three nodes' shards wired through fake
// connections in memory, and attackers that talk to a data port byte by byte. Asserted:
// members link up both ways and carry sealed frames; everything else — another cluster's
// key, a non-member, a join token, garbage, oversized or slow handshakes, floods from one
// address — is refused, within the bounds, and logged.
#include "cluster/data/data_links.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "cluster/node/link_handshake.h"
#include "tests/unit/test_ca.h"

namespace stanzad::cluster {
namespace {

class FakeNet;

const std::string kKey(kClusterKeyBytes, 'k');
const std::string kOtherKey(kClusterKeyBytes, 'o');

// One node's one shard.
class FakeShard final : public net::Shard {
 public:
  FakeShard(FakeNet* net, raft::NodeId node) : net_(net), node_(node) {}
  int index() const override { return 0; }
  int shard_count() const override { return 1; }
  bool Send(net::ConnectionId id, std::string_view bytes) override;
  size_t QueuedBytes(net::ConnectionId) const override { return 0; }
  void Close(net::ConnectionId id) override;
  void Abort(net::ConnectionId id) override;
  net::ConnectionId Connect(const net::Endpoint& to) override;
  bool PostToControl(uint32_t, net::ConnectionId, uint64_t, std::string_view) override {
    return true;
  }
  bool Post(int, uint32_t, net::ConnectionId, uint64_t, std::string_view) override { return true; }
  uint64_t now_ms() const override;

 private:
  FakeNet* net_;
  raft::NodeId node_;
};

struct Node {
  raft::NodeId id = raft::kNoNode;
  std::string ip;
  DataPlanePublisher publisher;
  DataLinkStats stats;
  std::unique_ptr<FakeShard> shard;
  std::unique_ptr<DataLinks> links;
  std::vector<std::pair<raft::NodeId, Frame>> frames;  // what the frame handler got
  // Under cluster TLS: its contexts, and the certificate key bound to its id.
  std::shared_ptr<const tls::TlsContext> tls_server, tls_client;
  std::string identity;
};

// A connection: each end is a node's DataLinks (node id), or the test itself (kNoNode).
struct Pipe {
  raft::NodeId a = raft::kNoNode;  // the dialler (or the test's attacker)
  raft::NodeId b = raft::kNoNode;  // the acceptor
  net::ConnectionId a_id = net::kNoConnection;
  net::ConnectionId b_id = net::kNoConnection;
  std::string a_to_b, b_to_a;  // in flight
  std::string to_attacker;     // everything b sent an attacker
  bool closing = false;        // Close: the rest is delivered, then both ends close
  bool closed = false;
};

class FakeNet {
 public:
  static constexpr uint16_t kPort = 7000;
  explicit FakeNet(DataLinkLimits limits = DataLinkLimits()) : limits_(limits) {}

  Node& AddNode(raft::NodeId id, const std::string& key) {
    auto node = std::make_unique<Node>();
    node->id = id;
    node->ip = "127.0.0." + std::to_string(id);
    node->shard = std::make_unique<FakeShard>(this, id);
    node->links = std::make_unique<DataLinks>(&node->publisher, limits_, &node->stats);
    Node* raw = node.get();
    node->links->set_frame_handler([raw](raft::NodeId from, const FrameView& frame) {
      raw->frames.emplace_back(from, Frame{frame.type, std::string(frame.payload)});
    });
    keys_[id] = key;
    nodes_[id] = std::move(node);
    return *raw;
  }
  // Node `id` learns the given members (with their data ports) and its key.
  void Configure(raft::NodeId id, const std::vector<raft::NodeId>& members) {
    Node& node = *nodes_.at(id);
    auto config = std::make_shared<DataPlaneConfig>();
    config->self = id;
    config->self_address = node.ip + ":5279";
    config->cluster_key = keys_.at(id);
    config->tls_server = node.tls_server;
    config->tls_client = node.tls_client;
    for (const raft::NodeId member : members) {
      if (member == id) continue;
      DataPlaneConfig::Member& entry = config->members[member];
      entry.ip = "127.0.0." + std::to_string(member);
      if (nodes_.count(member) == 0) continue;  // a member whose data port is not known
      entry.endpoint =
          *net::Endpoint::Parse(nodes_.at(member)->ip + ":" + std::to_string(kPort), 0);
      entry.identity = nodes_.at(member)->identity;
    }
    node.publisher.Publish(config);
    node.links->OnConfigChanged(*node.shard);
  }
  Node& node(raft::NodeId id) { return *nodes_.at(id); }
  // Nodes 1..count with the cluster key, each listing all of them, linked up.
  void FormMembers(int count) {
    std::vector<raft::NodeId> members;
    for (raft::NodeId id = 1; id <= static_cast<raft::NodeId>(count); ++id) {
      AddNode(id, kKey);
      members.push_back(id);
    }
    for (const raft::NodeId id : members) Configure(id, members);
    Run(100);
  }
  uint64_t now_ms() const { return now_ms_; }

  // Ticks every node, moves bytes until nothing moves, `ms` times 10 ms.
  void Run(uint64_t ms) {
    for (uint64_t t = 0; t < ms; t += 10) {
      now_ms_ += 10;
      for (auto& [id, node] : nodes_) node->links->OnTick(*node->shard, now_ms_);
      Pump();
    }
  }
  void Pump() {
    for (int round = 0; round < 100; ++round) {
      for (auto& [id, node] : nodes_) node->links->Flush(*node->shard);  // OnFlush
      bool moved = false;
      for (auto& [key, pipe] : pipes_) {
        if (pipe.closed) continue;
        if (!pipe.a_to_b.empty()) {
          std::string bytes = std::move(pipe.a_to_b);
          pipe.a_to_b.clear();
          if (on_dialler_bytes_ && pipe.a != raft::kNoNode) on_dialler_bytes_(&bytes);
          Deliver(pipe.b, pipe.b_id, bytes);
          moved = true;
        }
        if (!pipe.b_to_a.empty()) {
          const std::string bytes = std::move(pipe.b_to_a);
          pipe.b_to_a.clear();
          if (pipe.a == raft::kNoNode) {
            pipe.to_attacker += bytes;
          } else {
            Deliver(pipe.a, pipe.a_id, bytes);
          }
          moved = true;
        }
        if (pipe.closing && pipe.a_to_b.empty() && pipe.b_to_a.empty()) {
          CloseBoth(pipe, absl::OkStatus());
          moved = true;
        }
      }
      if (!moved) return;
    }
  }

  // An attacker's connection to node `to`'s data port from `ip`: its pipe key, or -1
  // when the node refused it at accept.
  int Attack(raft::NodeId to, const std::string& ip) {
    Pipe pipe;
    pipe.b = to;
    pipe.b_id = next_id_++;
    Node& node = *nodes_.at(to);
    if (!node.links->OnAccept(*node.shard, pipe.b_id, *net::Endpoint::Parse(ip + ":40000", 0))) {
      return -1;
    }
    const int key = next_pipe_++;
    by_id_[pipe.b_id] = key;
    pipes_[key] = pipe;
    return key;
  }
  void AttackerSends(int key, std::string_view bytes) {
    pipes_.at(key).a_to_b.append(bytes);
    Pump();
  }
  Pipe& pipe(int key) { return pipes_.at(key); }
  bool Open(int key) const { return !pipes_.at(key).closed; }
  // Sees (and may change) every byte a dialler sends before its acceptor reads it.
  void set_on_dialler_bytes(std::function<void(std::string*)> hook) {
    on_dialler_bytes_ = std::move(hook);
  }
  // Every connection breaks at once (as when a network blips): each side redials.
  void BreakAll() {
    for (auto& [key, pipe] : pipes_) CloseBoth(pipe, absl::UnavailableError("broken"));
  }

  // FakeShard's calls.
  bool Send(raft::NodeId node, net::ConnectionId id, std::string_view bytes) {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return false;
    Pipe& pipe = pipes_.at(it->second);
    if (pipe.closed || pipe.closing) return false;
    (node == pipe.a && id == pipe.a_id ? pipe.a_to_b : pipe.b_to_a).append(bytes);
    return true;
  }
  void Close(net::ConnectionId id) {
    auto it = by_id_.find(id);
    if (it != by_id_.end()) pipes_.at(it->second).closing = true;
  }
  void Abort(net::ConnectionId id) {
    auto it = by_id_.find(id);
    if (it != by_id_.end()) CloseBoth(pipes_.at(it->second), absl::CancelledError("aborted"));
  }
  net::ConnectionId Connect(raft::NodeId from, const net::Endpoint& to) {
    for (auto& [id, node] : nodes_) {
      if (net::Endpoint::Parse(node->ip + ":" + std::to_string(kPort), 0)->ToString() !=
          to.ToString()) {
        continue;
      }
      Pipe pipe;
      pipe.a = from;
      pipe.b = id;
      pipe.a_id = next_id_++;
      pipe.b_id = next_id_++;
      if (!node->links->OnAccept(*node->shard, pipe.b_id,
                                 *net::Endpoint::Parse(nodes_.at(from)->ip + ":41000", 0))) {
        return net::kNoConnection;  // (the engine would report a reset: close at once)
      }
      const int key = next_pipe_++;
      by_id_[pipe.a_id] = key;
      by_id_[pipe.b_id] = key;
      pipes_[key] = pipe;
      return pipe.a_id;
    }
    return net::kNoConnection;
  }

 private:
  void Deliver(raft::NodeId node, net::ConnectionId id, const std::string& bytes) {
    Node& to = *nodes_.at(node);
    to.links->OnData(*to.shard, id, bytes);
  }
  void CloseBoth(Pipe& pipe, const absl::Status& reason) {
    if (pipe.closed) return;
    pipe.closed = true;
    if (pipe.a != raft::kNoNode) {
      Node& a = *nodes_.at(pipe.a);
      a.links->OnClosed(*a.shard, pipe.a_id, reason);
    }
    Node& b = *nodes_.at(pipe.b);
    b.links->OnClosed(*b.shard, pipe.b_id, reason);
  }

  DataLinkLimits limits_;
  std::function<void(std::string*)> on_dialler_bytes_;
  std::map<raft::NodeId, std::unique_ptr<Node>> nodes_;
  std::map<raft::NodeId, std::string> keys_;
  std::map<int, Pipe> pipes_;
  std::map<net::ConnectionId, int> by_id_;
  net::ConnectionId next_id_ = 1;
  int next_pipe_ = 0;
  uint64_t now_ms_ = 1000;
};

bool FakeShard::Send(net::ConnectionId id, std::string_view bytes) {
  return net_->Send(node_, id, bytes);
}
void FakeShard::Close(net::ConnectionId id) { net_->Close(id); }
void FakeShard::Abort(net::ConnectionId id) { net_->Abort(id); }
net::ConnectionId FakeShard::Connect(const net::Endpoint& to) { return net_->Connect(node_, to); }
uint64_t FakeShard::now_ms() const { return net_->now_ms(); }

std::string Hello(raft::NodeId node, LinkCredential credential = LinkCredential::kClusterKey) {
  AuthHello hello;
  hello.credential = credential;
  hello.token_id = credential == LinkCredential::kJoinToken ? 7 : 0;
  hello.node = node;
  hello.nonce = std::string(kAuthNonceBytes, 'n');
  hello.address = "127.0.0.9:5279";
  std::string out;
  AppendFrame(FrameType::kAuthHello, EncodeAuthHello(hello), &out);
  return out;
}

// The reason of the kAuthRefused an attacker got, or "".
std::string RefusalIn(const std::string& bytes) {
  std::string buffer = bytes;
  while (true) {
    absl::StatusOr<std::optional<Frame>> frame = TakeFrame(&buffer, kAuthFrameBytesMax);
    if (!frame.ok() || !frame->has_value()) return "";
    if ((*frame)->type == FrameType::kAuthRefused) return (*frame)->payload;
  }
}

TEST(DataLinks, MembersLinkBothWaysAndCarrySealedFrames) {
  FakeNet net;
  net.FormMembers(2);
  EXPECT_TRUE(net.node(1).links->LinkedTo(2));
  EXPECT_TRUE(net.node(2).links->LinkedTo(1));
  EXPECT_EQ(net.node(1).stats.up.load()->count(2), 1u);
  EXPECT_EQ(net.node(2).stats.authenticated.load(), 2u);  // its own and the one it accepted

  ASSERT_TRUE(net.node(1).links->Send(*net.node(1).shard, 2, FrameType::kStanza, "payload"));
  net.Pump();
  ASSERT_EQ(net.node(2).frames.size(), 1u);
  EXPECT_EQ(net.node(2).frames[0].first, 1u);
  EXPECT_EQ(net.node(2).frames[0].second.type, FrameType::kStanza);
  EXPECT_EQ(net.node(2).frames[0].second.payload, "payload");

  // Pings keep quiet links up well past the silence bound; no ping reaches the handler.
  net.Run(20'000);
  EXPECT_TRUE(net.node(1).links->LinkedTo(2));
  EXPECT_TRUE(net.node(2).links->LinkedTo(1));
  EXPECT_EQ(net.node(2).frames.size(), 1u);
  EXPECT_GT(net.node(2).stats.frames_in.load(), 10u);
}

// Where the CPU has AES-NI, links are sealed with AES-256-GCM, offered in a version 2
// hello. A member that refuses that hello as an unknown version (an older stanzad: its
// refusal is replayed here by making the version unknown to node 2 as well) is dialled
// with the version 1 hello for a while, and the link comes up with ChaCha20-Poly1305;
// after that while (the member upgraded, or the refusal was someone else's) it is
// offered AES-256-GCM again.
TEST(DataLinks, AMemberThatRefusesTheNewerHelloIsDialledWithTheOlderOne) {
  DataLinkLimits limits;
  limits.hello_version_1_ms = 5000;
  FakeNet net(limits);
  std::vector<int> hello_versions;  // of node 1's hellos to node 2, in order
  bool older_peer = true;
  net.set_on_dialler_bytes([&](std::string* bytes) {
    // A hello is the first frame of a link: type (1) after the length (4).
    if (bytes->size() < 6 || static_cast<FrameType>((*bytes)[4]) != FrameType::kAuthHello) return;
    hello_versions.push_back((*bytes)[5]);
    if (older_peer && (*bytes)[5] == 2) (*bytes)[5] = 3;
  });
  net.FormMembers(2);
  net.Run(3000);
  EXPECT_TRUE(net.node(1).links->LinkedTo(2));
  EXPECT_TRUE(net.node(2).links->LinkedTo(1));
  ASSERT_FALSE(hello_versions.empty());
  if (AesGcmIsFastHere()) {
    EXPECT_EQ(hello_versions.front(), 2) << "AES-256-GCM is offered first";
    EXPECT_EQ(hello_versions.back(), 1) << "then the hello an older stanzad takes";
    EXPECT_GE(net.node(1).stats.refused.load(), 1u);
  } else {
    EXPECT_EQ(hello_versions.front(), 1) << "no AES-NI: nothing more is offered";
  }
  // Frames still cross both ways.
  ASSERT_TRUE(net.node(1).links->Send(*net.node(1).shard, 2, FrameType::kStanza, "up"));
  ASSERT_TRUE(net.node(2).links->Send(*net.node(2).shard, 1, FrameType::kStanza, "down"));
  net.Pump();
  ASSERT_EQ(net.node(2).frames.size(), 1u);
  EXPECT_EQ(net.node(2).frames[0].second.payload, "up");
  ASSERT_EQ(net.node(1).frames.size(), 1u);
  EXPECT_EQ(net.node(1).frames[0].second.payload, "down");

  // Node 2 is upgraded; within the while, a redial still uses version 1; after it, 2.
  older_peer = false;
  hello_versions.clear();
  net.BreakAll();
  net.Run(1000);
  EXPECT_TRUE(net.node(1).links->LinkedTo(2));
  ASSERT_FALSE(hello_versions.empty());
  EXPECT_EQ(hello_versions.back(), 1);
  net.Run(5000);
  hello_versions.clear();
  net.BreakAll();
  net.Run(1000);
  EXPECT_TRUE(net.node(1).links->LinkedTo(2));
  ASSERT_FALSE(hello_versions.empty());
  EXPECT_EQ(hello_versions.back(), AesGcmIsFastHere() ? 2 : 1);
}

TEST(DataLinks, AnotherClustersKeyANonMemberAndAForgottenMemberAreRefused) {
  FakeNet net;
  net.AddNode(1, kKey);
  net.AddNode(2, kOtherKey);  // another cluster's node
  net.AddNode(3, kKey);       // the right key, but node 1 does not list it
  net.Configure(1, {1});
  net.Configure(2, {1, 2});
  net.Configure(3, {1, 3});
  net.Run(3000);
  EXPECT_FALSE(net.node(2).links->LinkedTo(1));
  EXPECT_FALSE(net.node(3).links->LinkedTo(1));
  EXPECT_EQ(net.node(1).stats.authenticated.load(), 0u);
  EXPECT_GE(net.node(1).stats.refused.load(), 2u);
  EXPECT_GE(net.node(2).stats.refused.load(), 1u);  // its dialler saw the refusal too
  // Dialled again with a back-off, not in a loop: at most one attempt per 100 ms at first,
  // then every 2 s.
  EXPECT_LT(net.node(1).stats.accepted.load(), 20u);

  // Node 1 learns of 3: it links. Then forgets it: the links close.
  net.Configure(1, {1, 3});
  net.Run(3000);
  EXPECT_TRUE(net.node(3).links->LinkedTo(1));
  net.Configure(1, {1});
  net.Run(100);
  EXPECT_FALSE(net.node(1).links->LinkedTo(3));
  EXPECT_FALSE(net.node(3).links->LinkedTo(1));
}

TEST(DataLinks, AJoinTokenIsRefusedOnTheDataPort) {
  FakeNet net;
  net.AddNode(1, kKey);
  net.Configure(1, {1, 2});
  const int attacker = net.Attack(1, "10.0.0.1");
  ASSERT_GE(attacker, 0);
  net.AttackerSends(attacker, Hello(2, LinkCredential::kJoinToken));
  EXPECT_EQ(RefusalIn(net.pipe(attacker).to_attacker),
            "the join token is unknown, used or expired");
  net.Pump();
  EXPECT_FALSE(net.Open(attacker));
}

TEST(DataLinks, GarbageOversizedFramesAndSlowHandshakesAreCut) {
  FakeNet net;
  net.AddNode(1, kKey);
  net.Configure(1, {1, 2});
  // Not a frame (an XMPP client on the wrong port).
  int attacker = net.Attack(1, "10.0.0.1");
  net.AttackerSends(attacker, "<?xml version='1.0'?><stream:stream to='example.com'>");
  net.Pump();
  EXPECT_FALSE(net.Open(attacker));
  // A frame longer than any handshake frame, announced before it is sent.
  attacker = net.Attack(1, "10.0.0.1");
  std::string huge(4, '\0');
  huge[1] = 1;  // 65536 bytes announced
  net.AttackerSends(attacker, huge + "\x09");
  net.Pump();
  EXPECT_FALSE(net.Open(attacker));
  // A frame after the hello that is not the proof.
  attacker = net.Attack(1, "10.0.0.1");
  net.AttackerSends(attacker, Hello(2));
  std::string stanza;
  AppendFrame(FrameType::kStanza, "early", &stanza);
  net.AttackerSends(attacker, stanza);
  net.Pump();
  EXPECT_FALSE(net.Open(attacker));
  EXPECT_TRUE(net.node(1).frames.empty());
  // Nothing at all: cut at the deadline, not before.
  attacker = net.Attack(1, "10.0.0.1");
  net.Run(4000);
  EXPECT_TRUE(net.Open(attacker));
  net.Run(1100);
  EXPECT_FALSE(net.Open(attacker));
  EXPECT_EQ(net.node(1).stats.authenticated.load(), 0u);
}

TEST(DataLinks, UnauthenticatedLinksAreBoundedPerAddressAndInAll) {
  DataLinkLimits limits;
  limits.unauthenticated_links_per_ip_max = 3;
  limits.unauthenticated_links_max = 5;
  FakeNet net(limits);
  net.AddNode(1, kKey);
  net.Configure(1, {1, 2});
  std::vector<int> from_one;
  for (int i = 0; i < 3; ++i) from_one.push_back(net.Attack(1, "10.0.0.1"));
  for (const int key : from_one) EXPECT_GE(key, 0);
  EXPECT_EQ(net.Attack(1, "10.0.0.1"), -1);  // a fourth from the same address
  const int second = net.Attack(1, "10.0.0.2");
  const int third = net.Attack(1, "10.0.0.3");
  ASSERT_GE(second, 0);
  ASSERT_GE(third, 0);
  // Five wait; a sixth from elsewhere makes the oldest go.
  const int sixth = net.Attack(1, "10.0.0.4");
  ASSERT_GE(sixth, 0);
  EXPECT_FALSE(net.Open(from_one[0]));
  EXPECT_TRUE(net.Open(from_one[1]));
  EXPECT_TRUE(net.Open(sixth));
  // A member still gets in.
  net.AddNode(2, kKey);
  net.Configure(2, {1, 2});
  net.Run(200);
  EXPECT_TRUE(net.node(2).links->LinkedTo(1));
}

// ... and each side's `up` (what the control thread reads each turn: SetDataLinksDown)
// loses the other.
TEST(DataLinks, AKeyChangeClosesEveryLink) {
  FakeNet net;
  net.FormMembers(2);
  ASSERT_TRUE(net.node(1).links->LinkedTo(2));
  ASSERT_EQ(net.node(1).stats.up.load()->count(2), 1u);
  auto config = std::make_shared<DataPlaneConfig>(*net.node(1).publisher.Current());
  config->cluster_key = kOtherKey;
  net.node(1).publisher.Publish(config);
  net.node(1).links->OnConfigChanged(*net.node(1).shard);
  net.Pump();
  EXPECT_FALSE(net.node(1).links->LinkedTo(2));
  EXPECT_FALSE(net.node(2).links->LinkedTo(1));
  EXPECT_EQ(net.node(1).stats.up.load()->count(2), 0u);
  EXPECT_EQ(net.node(2).stats.up.load()->count(1), 0u);
}

// With cluster TLS the links run beneath mutual TLS: members link up; a certificate
// from the trusted CA whose key is not the one bound to the node id it claims is refused,
// and so is a node that speaks no TLS.
TEST(DataLinks, UnderTlsMembersLinkAndAnotherKeyOrNoTlsIsRefused) {
  const TestCa ca;
  FakeNet net;
  for (const raft::NodeId id : {1, 2, 3}) {
    Node& node = net.AddNode(id, kKey);
    std::tie(node.tls_server, node.tls_client) =
        ca.NodeContexts("node" + std::to_string(id), ca.cert, &node.identity);
  }
  Node& plain = net.AddNode(4, kKey);  // the right key, no TLS
  (void)plain;
  // Node 3's certificate is the CA's, but node 1 has another key bound to node 3.
  std::string other;
  (void)ca.NodeContexts("node3", ca.cert, &other);
  const std::string bound_3 = net.node(3).identity;
  net.node(3).identity = other;
  net.Configure(1, {1, 2, 3, 4});
  net.node(3).identity = bound_3;
  net.Configure(2, {1, 2});
  net.Configure(3, {1, 3});
  net.Configure(4, {1, 4});
  net.Run(500);
  EXPECT_TRUE(net.node(2).links->LinkedTo(1));
  EXPECT_TRUE(net.node(1).links->LinkedTo(2));
  ASSERT_TRUE(net.node(2).links->Send(*net.node(2).shard, 1, FrameType::kStanza, "over TLS"));
  net.Pump();
  ASSERT_EQ(net.node(1).frames.size(), 1u);
  EXPECT_EQ(net.node(1).frames[0].second.payload, "over TLS");
  EXPECT_FALSE(net.node(3).links->LinkedTo(1));
  EXPECT_FALSE(net.node(4).links->LinkedTo(1));
  EXPECT_EQ(net.node(1).stats.authenticated.load(), 2u);  // node 2's link, and its own to 2
}

// What members tell one another of their data planes, and the lane frames on data links:
// encoded and decoded alike, and anything out of bounds refused.
TEST(DataPlaneWire, InfoAndLaneFramesRoundTripAndRefuseWhatIsOutOfBounds) {
  const DataPlaneInfo info{5280, 16};
  EXPECT_EQ(*DecodeDataPlaneInfo(EncodeDataPlaneInfo(info)), info);
  std::string payload = EncodeDataPlaneInfo(info);
  EXPECT_FALSE(DecodeDataPlaneInfo(payload + "x").ok());                   // trailing bytes
  EXPECT_FALSE(DecodeDataPlaneInfo(payload.substr(0, 4)).ok());            // short
  EXPECT_FALSE(DecodeDataPlaneInfo("\x02" + payload.substr(1)).ok());      // unknown version
  EXPECT_FALSE(DecodeDataPlaneInfo(EncodeDataPlaneInfo({0, 1})).ok());     // no port
  EXPECT_FALSE(DecodeDataPlaneInfo(EncodeDataPlaneInfo({5280, 0})).ok());  // no lanes
  EXPECT_FALSE(DecodeDataPlaneInfo(EncodeDataPlaneInfo({5280, 1025})).ok());

  const std::string lane = EncodeLaneFrame(3, 7, FrameType::kAbort, "payload");
  absl::StatusOr<LaneFrame> frame = DecodeLaneFrame(lane);
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->from_shard, 3);
  EXPECT_EQ(frame->to_shard, 7);
  EXPECT_EQ(frame->type, FrameType::kAbort);
  EXPECT_EQ(frame->payload, "payload");
  for (const FrameType type : {FrameType::kStanza, FrameType::kAck, FrameType::kAckRelay}) {
    EXPECT_TRUE(DecodeLaneFrame(EncodeLaneFrame(0, 0, type, "")).ok());
  }
  // Only the relay's frames travel between lanes.
  for (const FrameType type : {FrameType::kRaft, FrameType::kRequest, FrameType::kRoutes,
                               FrameType::kAuthHello, FrameType::kDataPing, FrameType::kLane}) {
    EXPECT_FALSE(DecodeLaneFrame(EncodeLaneFrame(0, 0, type, "")).ok());
  }
  EXPECT_FALSE(DecodeLaneFrame(EncodeLaneFrame(1024, 0, FrameType::kStanza, "")).ok());
  EXPECT_FALSE(DecodeLaneFrame(EncodeLaneFrame(0, 1024, FrameType::kStanza, "")).ok());
  EXPECT_FALSE(DecodeLaneFrame(lane.substr(0, 4)).ok());
}

}  // namespace
}  // namespace stanzad::cluster
