// PeerTransport over real loopback sockets: the handshake's edges, in one process.
#include "cluster/node/peer_transport.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cluster/node/link_auth.h"

namespace stanzad::cluster {
namespace {

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

class PeerTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 2; ++i) {
      transports_.push_back(std::make_unique<PeerTransport>(
          LinkSelf{static_cast<raft::NodeId>(100 + i), "127.0.0.1:0"}, TransportLimits{},
          [this, i](LinkId, const LinkPeer& peer, Frame frame) {
            frames_[i].push_back({peer.id, std::move(frame)});
          },
          [this, i](LinkId, raft::NodeId, const absl::Status&) { ++closes_[i]; }));
      transports_.back()->set_cluster_key(key_);
    }
    ASSERT_TRUE(transports_[1]->Listen(*net::Endpoint::Parse("127.0.0.1:0", 0)).ok());
  }

  std::string Address() const {
    return "127.0.0.1:" + std::to_string(ntohs(reinterpret_cast<const sockaddr_in&>(
                                                   transports_[1]->listen_endpoint().address)
                                                   .sin_port));
  }

  bool RunUntil(const std::function<bool()>& done, int timeout_ms = 5000) {
    const uint64_t deadline = NowMs() + static_cast<uint64_t>(timeout_ms);
    while (!done()) {
      if (NowMs() > deadline) return false;
      std::vector<pollfd> fds;
      std::vector<size_t> firsts;
      for (auto& transport : transports_) {
        firsts.push_back(fds.size());
        transport->AppendPollFds(&fds);
      }
      poll(fds.data(), fds.size(), 5);
      const uint64_t now = NowMs();
      for (size_t i = 0; i < transports_.size(); ++i) {
        transports_[i]->HandlePoll(fds, firsts[i], now);
        transports_[i]->Tick(now);
      }
    }
    return true;
  }

  const std::string key_ = std::string(kClusterKeyBytes, 'k');
  std::vector<std::unique_ptr<PeerTransport>> transports_;
  std::vector<std::pair<raft::NodeId, Frame>> frames_[2];
  int closes_[2] = {0, 0};
};

TEST_F(PeerTransportTest, FramesRightBehindTheProofDoNotCountAgainstThePreAuthBound) {
  absl::Status error;
  const LinkId link = transports_[0]->Dial(Address(), std::nullopt, NowMs(), &error);
  ASSERT_NE(link, kNoLink) << error;
  // Queued before the handshake is done: it leaves with the proof, in one write.
  const std::string routes(200 << 10, 'r');
  ASSERT_TRUE(transports_[0]->SendOn(link, FrameType::kRoutes, routes));
  ASSERT_TRUE(RunUntil([&] { return !frames_[1].empty(); }));
  EXPECT_EQ(frames_[1][0].first, 100u);
  EXPECT_EQ(frames_[1][0].second.type, FrameType::kRoutes);
  EXPECT_EQ(frames_[1][0].second.payload, routes);
  EXPECT_EQ(transports_[1]->links_refused(), 0u);
}

TEST_F(PeerTransportTest, APeerThatResetsRightAfterItsHelloIsForgotten) {
  for (int round = 0; round < 20; ++round) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    const net::Endpoint endpoint = *net::Endpoint::Parse(Address(), 0);
    ASSERT_EQ(connect(fd, reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length),
              0);
    AuthHello hello;
    hello.node = 4242;
    hello.nonce = std::string(kAuthNonceBytes, 'n');
    std::string bytes;
    AppendFrame(FrameType::kAuthHello, EncodeAuthHello(hello), &bytes);
    if (round % 2 == 1) bytes = "junk that is not a frame at all";
    ASSERT_EQ(send(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    const linger reset{1, 0};  // close with RST: the node's answer meets a dead socket
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    close(fd);
    // (Under ASan a use of the freed link would end the test here.)
    ASSERT_TRUE(RunUntil([&] { return transports_[1]->unauthenticated_links() == 0; }));
  }
  EXPECT_TRUE(frames_[1].empty());
}

TEST_F(PeerTransportTest, ANodeThatReachesItselfIsRefused) {
  absl::Status error;
  // Node 101 dials its own listener: the hello carries its own id.
  const LinkId link = transports_[1]->Dial(Address(), std::nullopt, NowMs(), &error);
  ASSERT_NE(link, kNoLink) << error;
  ASSERT_TRUE(RunUntil([&] { return transports_[1]->links_refused() > 0; }));
  EXPECT_TRUE(frames_[1].empty());
}

TEST_F(PeerTransportTest, AnAuthenticatedLinkCarriesEveryFrameTypeButTheHandshakes) {
  absl::Status error;
  const LinkId link = transports_[0]->Dial(Address(), std::nullopt, NowMs(), &error);
  ASSERT_NE(link, kNoLink) << error;
  // Every type the reader accepts, in order: a type added later is covered too (a
  // range check once closed the link on the relay's kAbort, the type after the
  // handshake's).
  std::vector<FrameType> carried;
  for (int type = 1; type <= static_cast<int>(kLastFrameType); ++type) {
    if (IsHandshakeFrame(static_cast<FrameType>(type))) continue;
    carried.push_back(static_cast<FrameType>(type));
    ASSERT_TRUE(transports_[0]->SendOn(link, carried.back(), "payload " + std::to_string(type)));
  }
  ASSERT_GE(carried.size(), 8u);
  ASSERT_TRUE(RunUntil([&] { return frames_[1].size() == carried.size(); }));
  for (size_t i = 0; i < carried.size(); ++i) {
    EXPECT_EQ(frames_[1][i].second.type, carried[i]) << i;
    EXPECT_EQ(frames_[1][i].second.payload,
              "payload " + std::to_string(static_cast<int>(carried[i])));
  }
  EXPECT_EQ(closes_[0] + closes_[1], 0);
  // A handshake frame once authenticated is a protocol error: the link closes.
  ASSERT_TRUE(transports_[0]->SendOn(link, FrameType::kAuthProof, "again"));
  ASSERT_TRUE(RunUntil([&] { return closes_[1] > 0; }));
  EXPECT_EQ(frames_[1].size(), carried.size());
}

}  // namespace
}  // namespace stanzad::cluster
