// RouterShard over a fake multi-shard engine: posts between shards are queued
// and pumped in order, sends land in per-connection outboxes. Exercises the
// bind/unbind protocol, cross-shard delivery, bounces and limits without
// sockets or threads.
#include "router/router_shard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/base/log.h"
#include "core/sasl/base64.h"
#include "core/sasl/credentials.h"
#include "core/xmpp/component_handshake.h"
#include "router/failure_counter.h"
#include "tls/pki.h"
#include "tls/tls_session.h"

namespace stanzad::router {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class FakeEngine;

class FakeShard : public Shard {
 public:
  FakeShard(FakeEngine* engine, int index) : engine_(engine), index_(index) {}
  int index() const override { return index_; }
  int shard_count() const override;
  bool Send(ConnectionId id, std::string_view bytes) override;
  size_t QueuedBytes(ConnectionId id) const override;
  void Close(ConnectionId id) override;
  void Abort(ConnectionId id) override;
  ConnectionId Connect(const Endpoint&) override { return kNoConnection; }
  bool PostToControl(uint32_t kind, ConnectionId target, uint64_t argument,
                     std::string_view payload) override;
  bool Post(int to, uint32_t kind, ConnectionId target, uint64_t argument,
            std::string_view payload) override;
  uint64_t now_ms() const override;

 private:
  FakeEngine* engine_;
  int index_;
};

struct FakeConnection {
  std::string outbox;  // everything sent to the peer
  size_t queued = 0;   // bytes "not yet read" by the peer
  bool closed = false;
  bool aborted = false;
  size_t queue_limit = 1 << 20;  // as EngineOptions::connection_queue_bytes_max
};

class FakeEngine {
 public:
  struct Posted {
    int to;  // the shard (for control posts: the shard that posted)
    uint32_t kind;
    ConnectionId target;
    uint64_t argument;
    std::string payload;
  };

  explicit FakeEngine(int shards, RouterLimits limits = RouterLimits()) {
    auto config = std::make_shared<RouterConfig>();
    config->domain = "example.com";
    for (const char* name : {"cb1", "cb2", "cb3"}) {
      config->bridge_secrets[std::string(name) + ".example.com"] = std::string("secret-") + name;
    }
    config->users["juliet"] = TestCredentials();
    config->users["romeo"] = TestCredentials();
    config->client_tls = ServerTls();
    config->unknown_user_salt_key = "a server secret of some length";
    publisher_ = std::make_unique<RouterConfigPublisher>(config);
    stats_.resize(static_cast<size_t>(shards));
    for (int i = 0; i < shards; ++i) {
      shards_.push_back(std::make_unique<FakeShard>(this, i));
      handlers_.push_back(
          std::make_unique<RouterShard>(publisher_.get(), limits, &stats_[static_cast<size_t>(i)]));
    }
  }

  // The password of every test user is "pencil".
  static const config::UserCredentials& TestCredentials() {
    static const config::UserCredentials credentials =
        *sasl::MakeUserCredentials("pencil", "sha1-salt-16byte", "sha256-salt-16by");
    return credentials;
  }

  // A self-signed certificate for example.com, made once.
  static std::shared_ptr<const tls::TlsContext> ServerTls() {
    static const std::shared_ptr<const tls::TlsContext> context = [] {
      const std::string key = *tls::GeneratePrivateKeyPem();
      tls::CertificateSpec spec;
      spec.subject.common_name = "example.com";
      spec.subject.subject_alt_names = {"example.com"};
      return *tls::TlsContext::Server(*tls::MakeSelfSignedCertificatePem(key, spec), key);
    }();
    return context;
  }

  // Accepts a connection on `shard` from `ip`; returns its id or kNoConnection if refused.
  ConnectionId Connect(int shard, const std::string& ip = "127.0.0.1",
                       int tag = kComponentListener) {
    const ConnectionId id = net::MakeConnectionId(shard, next_slot_++, 1);
    auto endpoint = Endpoint::Parse(ip + ":40000", 0);
    EXPECT_TRUE(endpoint.ok());
    if (!handlers_[static_cast<size_t>(shard)]->OnAccept(*shards_[static_cast<size_t>(shard)], id,
                                                         *endpoint, tag)) {
      return kNoConnection;
    }
    connections_[id] = FakeConnection();
    if (!holding_posts_) Pump();
    return id;
  }

  void Receive(ConnectionId id, std::string_view bytes) {
    const int shard = ShardOf(id);
    handlers_[static_cast<size_t>(shard)]->OnData(*shards_[static_cast<size_t>(shard)], id, bytes);
    if (!holding_posts_) Pump();
  }

  // While held, posts between shards wait (as records in flight do while every
  // shard is busy reading) until Pump(); Connect and Receive do not pump.
  void HoldPosts(bool hold) { holding_posts_ = hold; }

  // Sends bridge `name`'s stream header on `id`; returns the stream id the server gave.
  std::string OpenBridgeStream(ConnectionId id, const std::string& name) {
    Receive(id,
            "<stream:stream xmlns='jabber:component:accept' "
            "xmlns:stream='http://etherx.jabber.org/streams' to='" +
                name + ".example.com'>");
    const std::string& out = connections_[id].outbox;
    const size_t id_at = out.find("id='") + 4;
    return out.substr(id_at, out.find('\'', id_at) - id_at);
  }

  // The handshake of bridge `name` with its right secret on a stream opened for it.
  void SendRightHandshake(ConnectionId id, const std::string& name, const std::string& stream_id) {
    Receive(id, "<handshake>" + xmpp::ComponentHandshakeDigest(stream_id, "secret-" + name) +
                    "</handshake>");
  }

  // Connects (from `ip`) and authenticates bridge `name` on `shard`.
  ConnectionId ConnectBridge(int shard, const std::string& name,
                             const std::string& ip = "127.0.0.1") {
    const ConnectionId id = Connect(shard, ip);
    SendRightHandshake(id, name, OpenBridgeStream(id, name));
    EXPECT_THAT(connections_[id].outbox, HasSubstr("<handshake/>"));
    return id;
  }

  // Delivers queued posts and engine-side closes until nothing is left.
  void Pump() {
    while (!posts_.empty() || !closing_.empty()) {
      if (!posts_.empty()) {
        Posted post = std::move(posts_.front());
        posts_.pop_front();
        CrossShardMessage message{post.kind, post.target, post.argument, post.payload};
        handlers_[static_cast<size_t>(post.to)]->OnMessage(*shards_[static_cast<size_t>(post.to)],
                                                           message);
        continue;
      }
      const ConnectionId id = closing_.front();
      closing_.pop_front();
      const int shard = ShardOf(id);
      handlers_[static_cast<size_t>(shard)]->OnClosed(*shards_[static_cast<size_t>(shard)], id,
                                                      absl::OkStatus());
    }
  }

  // The peer's TCP connection is gone (no stream end): the engine reports it closed.
  void DropConnection(ConnectionId id) {
    FakeConnection& connection = connections_[id];
    if (connection.closed) return;
    connection.closed = true;
    closing_.push_back(id);
    Pump();
  }

  void Tick(uint64_t advance_ms) {
    now_ms_ += advance_ms;
    for (size_t i = 0; i < shards_.size(); ++i) handlers_[i]->OnTick(*shards_[i], now_ms_);
    Pump();
  }

  void PublishConfig(std::shared_ptr<RouterConfig> config) {
    publisher_->Publish(std::move(config));
    for (int i = 0; i < static_cast<int>(shards_.size()); ++i) {
      posts_.push_back({i, kConfigChanged, kNoConnection, 0, ""});
    }
    Pump();
  }

  std::shared_ptr<RouterConfig> CopyConfig() {
    return std::make_shared<RouterConfig>(*publisher_->Current());
  }

  // A record from the control thread to `shard` (as Engine::Post).
  void PostFromControl(int shard, uint32_t kind, uint64_t argument, std::string_view payload) {
    posts_.push_back({shard, kind, kNoConnection, argument, std::string(payload)});
    Pump();
  }
  // Any record, as another shard would post it.
  void PostFromShard(int shard, uint32_t kind, ConnectionId target, uint64_t argument,
                     std::string_view payload) {
    posts_.push_back({shard, kind, target, argument, std::string(payload)});
    Pump();
  }
  const std::vector<Posted>& control_posts() const { return control_posts_; }

  FakeConnection& connection(ConnectionId id) { return connections_[id]; }
  RouterShardStats& stats(int shard) { return stats_[static_cast<size_t>(shard)]; }

 private:
  friend class FakeShard;

  std::vector<std::unique_ptr<FakeShard>> shards_;
  std::vector<std::unique_ptr<RouterShard>> handlers_;
  std::unique_ptr<RouterConfigPublisher> publisher_;
  std::deque<RouterShardStats> stats_;
  std::map<ConnectionId, FakeConnection> connections_;
  std::deque<Posted> posts_;
  std::vector<Posted> control_posts_;  // PostToControl, in order
  std::deque<ConnectionId> closing_;
  bool holding_posts_ = false;
  uint32_t next_slot_ = 1;
  uint64_t now_ms_ = 1'000'000;
};

int FakeShard::shard_count() const { return static_cast<int>(engine_->shards_.size()); }

bool FakeShard::Send(ConnectionId id, std::string_view bytes) {
  auto it = engine_->connections_.find(id);
  if (it == engine_->connections_.end() || it->second.closed) return false;
  if (it->second.queued + bytes.size() > it->second.queue_limit) return false;
  it->second.outbox.append(bytes);
  it->second.queued += bytes.size();
  return true;
}

size_t FakeShard::QueuedBytes(ConnectionId id) const {
  auto it = engine_->connections_.find(id);
  return it == engine_->connections_.end() ? 0 : it->second.queued;
}

void FakeShard::Close(ConnectionId id) {
  auto it = engine_->connections_.find(id);
  if (it == engine_->connections_.end() || it->second.closed) return;
  it->second.closed = true;
  engine_->closing_.push_back(id);
}

void FakeShard::Abort(ConnectionId id) {
  auto it = engine_->connections_.find(id);
  if (it == engine_->connections_.end() || it->second.closed) return;
  it->second.aborted = true;
  Close(id);
}

bool FakeShard::Post(int to, uint32_t kind, ConnectionId target, uint64_t argument,
                     std::string_view payload) {
  engine_->posts_.push_back({to, kind, target, argument, std::string(payload)});
  return true;
}

bool FakeShard::PostToControl(uint32_t kind, ConnectionId target, uint64_t argument,
                              std::string_view payload) {
  engine_->control_posts_.push_back({index_, kind, target, argument, std::string(payload)});
  return true;
}

uint64_t FakeShard::now_ms() const { return engine_->now_ms_; }

TEST(RouterShardTest, ClusterRoutesAnnounceForwardAndDeliverFromPeers) {
  FakeEngine engine(3);
  const ConnectionId cb1 = engine.ConnectBridge(1, "cb1");
  // The owner shard told the control thread that cb1 is bound here.
  bool announced = false;
  for (const auto& post : engine.control_posts()) {
    announced |= post.kind == kCtlRouteUp && post.payload == "cb1.example.com";
  }
  EXPECT_TRUE(announced);
  // cb2 is on node 77: every shard learns it; a stanza to it goes to the control thread.
  for (int shard = 0; shard < 3; ++shard) {
    engine.PostFromControl(shard, kRemoteRouteBind, 77, "cb2.example.com");
  }
  const std::string stanza =
      "<message from='cb1.example.com' to='cb2.example.com' id='r1'><body>x</body></message>";
  engine.Receive(cb1, stanza);
  const auto& forwarded = engine.control_posts().back();
  EXPECT_EQ(forwarded.kind, kCtlForward);
  EXPECT_EQ(forwarded.argument, 77u);
  EXPECT_EQ(forwarded.target, cb1);
  EXPECT_EQ(forwarded.payload, stanza);
  // A stanza from node 77 for cb1 is delivered, whichever shard gets it.
  engine.PostFromControl(2, kDeliverFromPeer, 77,
                         "<message from='cb2.example.com' to='cb1.example.com' id='r2'/>");
  EXPECT_THAT(engine.connection(cb1).outbox, HasSubstr("id='r2'/>"));
  // One for a bridge not here is answered with an error that travels back to node 77.
  engine.PostFromControl(0, kDeliverFromPeer, 77,
                         "<message from='cb2.example.com' to='cb9.example.com' id='r3'/>");
  const auto& bounced = engine.control_posts().back();
  EXPECT_EQ(bounced.kind, kCtlForward);
  EXPECT_EQ(bounced.argument, 77u);
  EXPECT_THAT(bounced.payload, HasSubstr("type='error' id='r3'"));
  EXPECT_THAT(bounced.payload, HasSubstr("service-unavailable"));
  // An error from a peer is never answered with another error.
  const size_t before = engine.control_posts().size();
  engine.PostFromControl(0, kDeliverFromPeer, 77,
                         "<message from='cb2.example.com' to='cb9.example.com' type='error' "
                         "id='r4'/>");
  EXPECT_EQ(engine.control_posts().size(), before);
  // The node leaves: its routes go, and cb2 is unknown again.
  for (int shard = 0; shard < 3; ++shard) engine.PostFromControl(shard, kForgetNode, 77, "");
  engine.Receive(cb1, "<message from='cb1.example.com' to='cb2.example.com' id='r5'/>");
  EXPECT_THAT(engine.connection(cb1).outbox, HasSubstr("type='error' id='r5'"));
}

// A record that does not decode is logged and dropped: nothing is guessed from it, and
// nothing crashes.
TEST(RouterShardTest, MalformedRecordsAreRefused) {
  FakeEngine engine(2);
  const ConnectionId cb1 = engine.ConnectBridge(1, "cb1");
  const std::string outbox = engine.connection(cb1).outbox;
  const std::string stanza = "<message from='cb1.example.com' to='cb2.example.com' id='x1'/>";
  // A condition past the last one would index past the per-condition counters.
  engine.PostFromShard(1, kBounce, cb1, xmpp::kStanzaErrorConditionCount, stanza);
  engine.PostFromShard(1, kBounce, cb1, ~uint64_t{0}, stanza);
  engine.PostFromShard(1, 999, cb1, 0, stanza);
  engine.PostFromShard(0, kClientRouteBind, cb1, 0, "juliet@example.com");  // no resource
  engine.PostFromShard(0, kClientPresence, cb1, 1024, "juliet@example.com/balcony");
  engine.PostFromShard(0, kSmResumeLookup, cb1, 0, "a-token-without-account-or-h");
  engine.PostFromShard(1, kClientResumeAccepted, cb1, 0, "juliet@example.com/balcony");
  EXPECT_EQ(engine.connection(cb1).outbox, outbox);
  EXPECT_FALSE(engine.connection(cb1).closed);
  EXPECT_EQ(engine.stats(1).stanzas_bounced.load(), 0u);
  // The same bounce, well formed, is answered; and the router goes on routing.
  engine.PostFromShard(1, kBounce, cb1,
                       static_cast<uint64_t>(xmpp::StanzaErrorCondition::kItemNotFound), stanza);
  EXPECT_THAT(engine.connection(cb1).outbox, HasSubstr("type='error' id='x1'"));
  EXPECT_THAT(engine.connection(cb1).outbox, HasSubstr("item-not-found"));
  EXPECT_EQ(engine.stats(1).stanzas_bounced.load(), 1u);
  engine.PostFromControl(0, kDeliverFromPeer, 77,
                         "<message from='cb2.example.com' to='cb1.example.com' id='r2'/>");
  EXPECT_THAT(engine.connection(cb1).outbox, HasSubstr("id='r2'/>"));
}

TEST(RouterShardTest, BridgesOnDifferentShardsExchangeStanzas) {
  FakeEngine engine(3);
  const ConnectionId cb1 = engine.ConnectBridge(0, "cb1");
  const ConnectionId cb2 = engine.ConnectBridge(2, "cb2");
  engine.Receive(cb1,
                 "<message from='room@cb1.example.com/a' to='room@cb2.example.com' "
                 "id='m1'><body>héllo &amp; bye</body></message>");
  EXPECT_THAT(engine.connection(cb2).outbox,
              HasSubstr("<message from='room@cb1.example.com/a' to='room@cb2.example.com' "
                        "id='m1'><body>héllo &amp; bye</body></message>"));
  engine.Receive(cb2, "<iq type='result' from='cb2.example.com' to='cb1.example.com' id='i1'/>");
  EXPECT_THAT(engine.connection(cb1).outbox,
              HasSubstr("<iq type='result' from='cb2.example.com' to='cb1.example.com' id='i1'/>"));
  uint64_t routed = 0;
  for (int shard = 0; shard < 3; ++shard) routed += engine.stats(shard).stanzas_routed.load();
  EXPECT_EQ(routed, 2u);
}

TEST(RouterShardTest, SameShardDeliveryIsDirect) {
  FakeEngine engine(1);
  const ConnectionId cb1 = engine.ConnectBridge(0, "cb1");
  const ConnectionId cb2 = engine.ConnectBridge(0, "cb2");
  engine.Receive(cb1, "<presence from='cb1.example.com' to='cb2.example.com'/>");
  EXPECT_THAT(engine.connection(cb2).outbox,
              HasSubstr("<presence from='cb1.example.com' to='cb2.example.com'/>"));
}

TEST(RouterShardTest, UnknownDestinationsAreAnsweredWithErrors) {
  FakeEngine engine(2);
  const ConnectionId cb1 = engine.ConnectBridge(1, "cb1");
  engine.Receive(cb1,
                 "<message from='cb1.example.com' to='cb3.example.com' id='a'/>"
                 "<message from='cb1.example.com' to='x@other.org' id='b'/>"
                 "<message from='cb1.example.com' to='cb3.example.com' type='error' id='c'/>");
  const std::string& out = engine.connection(cb1).outbox;
  EXPECT_THAT(out, HasSubstr("from='cb3.example.com' to='cb1.example.com' type='error' id='a'>"
                             "<error type='cancel'><service-unavailable"));
  EXPECT_THAT(out, HasSubstr("id='b'><error type='cancel'><remote-server-not-found"));
  EXPECT_THAT(out, Not(HasSubstr("id='c'")));  // errors are never answered with errors
  EXPECT_EQ(engine.stats(1).stanzas_bounced.load(), 2u);
  EXPECT_EQ(engine.stats(1).error_stanzas_dropped.load(), 1u);
}

TEST(RouterShardTest, ServerAnswersPing) {
  FakeEngine engine(2);
  const ConnectionId cb1 = engine.ConnectBridge(1, "cb1");
  engine.Receive(cb1,
                 "<iq type='get' from='cb1.example.com' to='example.com' id='p'>"
                 "<ping xmlns='urn:xmpp:ping'/></iq>");
  EXPECT_THAT(engine.connection(cb1).outbox,
              HasSubstr("<iq from='example.com' to='cb1.example.com' type='result' id='p'/>"));
}

TEST(RouterShardTest, ReconnectReplacesTheOldConnectionWithConflict) {
  FakeEngine engine(3);
  const ConnectionId old_cb1 = engine.ConnectBridge(0, "cb1");
  const ConnectionId cb2 = engine.ConnectBridge(1, "cb2");
  const ConnectionId new_cb1 = engine.ConnectBridge(2, "cb1");
  EXPECT_THAT(engine.connection(old_cb1).outbox, HasSubstr("<conflict "));
  EXPECT_TRUE(engine.connection(old_cb1).closed);
  engine.Receive(cb2, "<message from='cb2.example.com' to='cb1.example.com' id='after'/>");
  EXPECT_THAT(engine.connection(new_cb1).outbox, HasSubstr("id='after'"));
  EXPECT_THAT(engine.connection(old_cb1).outbox, Not(HasSubstr("id='after'")));
}

TEST(RouterShardTest, ClosedBridgeIsUnroutable) {
  FakeEngine engine(2);
  const ConnectionId cb1 = engine.ConnectBridge(0, "cb1");
  const ConnectionId cb2 = engine.ConnectBridge(1, "cb2");
  engine.Receive(cb2, "</stream:stream>");
  EXPECT_TRUE(engine.connection(cb2).closed);
  engine.Receive(cb1, "<message from='cb1.example.com' to='cb2.example.com' id='late'/>");
  EXPECT_THAT(engine.connection(cb1).outbox, HasSubstr("id='late'><error type='cancel'>"
                                                       "<service-unavailable"));
}

TEST(RouterShardTest, FullQueueBouncesWithResourceConstraint) {
  FakeEngine engine(2);
  const ConnectionId cb1 = engine.ConnectBridge(0, "cb1");
  const ConnectionId cb2 = engine.ConnectBridge(1, "cb2");
  engine.connection(cb2).queue_limit = engine.connection(cb2).queued + 10;
  engine.Receive(cb1,
                 "<message from='cb1.example.com' to='cb2.example.com' id='big'>"
                 "<body>this does not fit</body></message>");
  EXPECT_THAT(engine.connection(cb1).outbox,
              HasSubstr("id='big'><error type='wait'><resource-constraint"));
}

TEST(RouterShardTest, SlowReaderIsDisconnected) {
  RouterLimits limits;
  limits.slow_reader_queue_bytes = 100;
  limits.slow_reader_timeout_ms = 2000;
  FakeEngine engine(1, limits);
  const ConnectionId cb1 = engine.ConnectBridge(0, "cb1");
  const ConnectionId cb2 = engine.ConnectBridge(0, "cb2");
  engine.Receive(cb1, "<message from='cb1.example.com' to='cb2.example.com'><body>" +
                          std::string(200, 'x') + "</body></message>");
  engine.Tick(1000);
  EXPECT_FALSE(engine.connection(cb2).closed);
  engine.Tick(3000);
  EXPECT_TRUE(engine.connection(cb2).aborted);
}

TEST(RouterShardTest, RemovedBridgeIsDisconnected) {
  FakeEngine engine(2);
  const ConnectionId cb1 = engine.ConnectBridge(0, "cb1");
  const ConnectionId cb2 = engine.ConnectBridge(1, "cb2");
  auto config = engine.CopyConfig();
  config->bridge_secrets.erase("cb2.example.com");
  engine.PublishConfig(config);
  EXPECT_THAT(engine.connection(cb2).outbox, HasSubstr("call bridge cb2.example.com was removed"));
  EXPECT_TRUE(engine.connection(cb2).closed);
  EXPECT_FALSE(engine.connection(cb1).closed);
}

TEST(RouterShardTest, DisabledNodeRefusesAndClosesConnections) {
  FakeEngine engine(1);
  const ConnectionId cb1 = engine.ConnectBridge(0, "cb1");
  auto config = engine.CopyConfig();
  config->enabled = false;
  engine.PublishConfig(config);
  EXPECT_THAT(engine.connection(cb1).outbox, HasSubstr("<system-shutdown "));
  EXPECT_EQ(engine.Connect(0), kNoConnection);
}

TEST(RouterShardTest, RepeatedAuthFailuresBlockTheAddress) {
  RouterLimits limits;
  limits.auth_failures_max = 3;
  FakeEngine engine(1, limits);
  for (int i = 0; i < 3; ++i) {
    const ConnectionId id = engine.Connect(0, "192.0.2.9");
    ASSERT_NE(id, kNoConnection);
    engine.Receive(id,
                   "<stream:stream xmlns='jabber:component:accept' "
                   "xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.com'>"
                   "<handshake>0000000000000000000000000000000000000000</handshake>");
    EXPECT_THAT(engine.connection(id).outbox, HasSubstr("<not-authorized "));
  }
  EXPECT_EQ(engine.Connect(0, "192.0.2.9"), kNoConnection);
  EXPECT_NE(engine.Connect(0, "192.0.2.10"), kNoConnection);  // others are unaffected
  engine.Tick(61'000);
  EXPECT_NE(engine.Connect(0, "192.0.2.9"), kNoConnection);  // the window passed
}

TEST(RouterShardTest, HandshakeMustArriveInTime) {
  RouterLimits limits;
  limits.preauth_timeout_ms = 5000;
  FakeEngine engine(1, limits);
  const ConnectionId id = engine.Connect(0);
  engine.Tick(6000);
  EXPECT_THAT(engine.connection(id).outbox, HasSubstr("<connection-timeout "));
  EXPECT_TRUE(engine.connection(id).closed);
}

// ---- What a peer that has not authenticated can make the node hold ----

constexpr char kWrongHandshake[] =
    "<handshake>0000000000000000000000000000000000000000</handshake>";

// A connection from `ip` on `shard` that offers bridge cb1 a wrong handshake.
void FailHandshake(FakeEngine& engine, const std::string& ip, int shard = 0) {
  const ConnectionId id = engine.Connect(shard, ip);
  ASSERT_NE(id, kNoConnection) << ip;
  engine.OpenBridgeStream(id, "cb1");
  engine.Receive(id, kWrongHandshake);
  ASSERT_THAT(engine.connection(id).outbox, HasSubstr("<not-authorized "));
}

bool Answered(FakeEngine& engine, ConnectionId id, const std::string& condition) {
  return engine.connection(id).outbox.find("<" + condition + " ") != std::string::npos;
}

TEST(RouterPortLimitsTest, UnauthenticatedConnectionsPerAddressAreCappedOverAllShards) {
  RouterLimits limits;
  limits.preauth_connections_per_ip_max = 3;
  FakeEngine engine(2, limits);
  std::vector<ConnectionId> idle;
  for (int i = 0; i < 3; ++i) {
    idle.push_back(engine.Connect(i % 2, "192.0.2.1"));
    ASSERT_NE(idle.back(), kNoConnection);
  }
  // The fourth is refused whichever shard takes it (each counts the other's),
  // on the client port too.
  EXPECT_EQ(engine.Connect(0, "192.0.2.1"), kNoConnection);
  EXPECT_EQ(engine.Connect(1, "192.0.2.1"), kNoConnection);
  EXPECT_EQ(engine.Connect(1, "192.0.2.1", kClientListener), kNoConnection);
  EXPECT_EQ(engine.stats(0).connections_refused.load() + engine.stats(1).connections_refused.load(),
            3u);
  // Another address is not affected: a bridge from it connects and authenticates.
  engine.ConnectBridge(1, "cb1", "192.0.2.2");
  // A connection that closes gives its place back, on every shard.
  engine.DropConnection(idle[0]);
  EXPECT_NE(engine.Connect(1, "192.0.2.1"), kNoConnection);
  EXPECT_EQ(engine.Connect(0, "192.0.2.1"), kNoConnection);
}

// A burst of accepts on every shard before any of them reads the others'
// records: each holds at most its share of the cap.
TEST(RouterPortLimitsTest, ABurstOnEveryShardGetsAtMostEachShardsShare) {
  RouterLimits limits;
  limits.preauth_connections_per_ip_max = 64;
  for (const int shards : {2, 8}) {
    FakeEngine engine(shards, limits);
    engine.HoldPosts(true);
    int admitted = 0;
    for (int i = 0; i < 100 * shards; ++i) {
      admitted += engine.Connect(i % shards, "192.0.2.1") != kNoConnection ? 1 : 0;
    }
    engine.HoldPosts(false);
    engine.Pump();
    // The share: ceil(64 / 2) = 32 on 2 shards; never below 16, so 16 on 8.
    EXPECT_EQ(admitted, shards == 2 ? 64 : 8 * 16) << shards << " shards";
    // Once the records arrived no shard admits another.
    for (int shard = 0; shard < shards; ++shard) {
      EXPECT_EQ(engine.Connect(shard, "192.0.2.1"), kNoConnection) << shard;
    }
  }
}

// Uneven spreading: one shard may hold more than an even share while the
// address is below the cap.
TEST(RouterPortLimitsTest, OneShardMayHoldMoreThanAnEvenShareBelowTheCap) {
  RouterLimits limits;
  limits.preauth_connections_per_ip_max = 20;
  FakeEngine engine(8, limits);
  for (int i = 0; i < 16; ++i) ASSERT_NE(engine.Connect(3, "192.0.2.1"), kNoConnection) << i;
  EXPECT_EQ(engine.Connect(3, "192.0.2.1"), kNoConnection);  // the share's floor, 16
  for (int i = 0; i < 4; ++i) ASSERT_NE(engine.Connect(5, "192.0.2.1"), kNoConnection) << i;
  EXPECT_EQ(engine.Connect(6, "192.0.2.1"), kNoConnection);  // the cap, 20
}

TEST(RouterPortLimitsTest, AuthenticatedBridgesDoNotCountTowardThePreauthCap) {
  RouterLimits limits;
  limits.preauth_connections_per_ip_max = 2;
  FakeEngine engine(2, limits);
  // Three bridges from one address, more than the cap, each authenticated.
  engine.ConnectBridge(0, "cb1", "192.0.2.1");
  engine.ConnectBridge(1, "cb2", "192.0.2.1");
  // One that authenticates while two others wait: it stops counting at once.
  const ConnectionId waiting = engine.Connect(0, "192.0.2.1");
  const std::string stream_id = engine.OpenBridgeStream(waiting, "cb3");
  const ConnectionId idle = engine.Connect(1, "192.0.2.1");
  ASSERT_NE(idle, kNoConnection);
  EXPECT_EQ(engine.Connect(1, "192.0.2.1"), kNoConnection);
  engine.SendRightHandshake(waiting, "cb3", stream_id);
  EXPECT_THAT(engine.connection(waiting).outbox, HasSubstr("<handshake/>"));
  EXPECT_NE(engine.Connect(1, "192.0.2.1"), kNoConnection);
  EXPECT_EQ(engine.Connect(0, "192.0.2.1"), kNoConnection);
  // An authenticated bridge that leaves frees nothing of the cap (it held no place).
  engine.DropConnection(waiting);
  EXPECT_EQ(engine.Connect(0, "192.0.2.1"), kNoConnection);
}

TEST(RouterPortLimitsTest, TimedOutConnectionsGiveTheirPlaceBack) {
  RouterLimits limits;
  limits.preauth_connections_per_ip_max = 2;
  limits.preauth_timeout_ms = 5000;
  FakeEngine engine(2, limits);
  const ConnectionId first = engine.Connect(0, "192.0.2.1");
  const ConnectionId second = engine.Connect(1, "192.0.2.1");
  EXPECT_EQ(engine.Connect(0, "192.0.2.1"), kNoConnection);
  engine.Tick(6000);
  EXPECT_TRUE(engine.connection(first).closed);
  EXPECT_TRUE(engine.connection(second).closed);
  EXPECT_NE(engine.Connect(0, "192.0.2.1"), kNoConnection);
  EXPECT_NE(engine.Connect(1, "192.0.2.1"), kNoConnection);
}

TEST(RouterPortLimitsTest, ZeroMeansNoPreauthCap) {
  RouterLimits limits;
  limits.preauth_connections_per_ip_max = 0;
  FakeEngine engine(2, limits);
  for (int i = 0; i < 500; ++i) ASSERT_NE(engine.Connect(i % 2, "192.0.2.1"), kNoConnection);
}

// Connections opened first, wrong handshakes after (the throttle used to be
// looked at only at accept): only auth_failures_max are checked; the others,
// the right secret too, end with <policy-violation/> unchecked.
TEST(RouterPortLimitsTest, HandshakesOfABlockedAddressAreRefusedUnchecked) {
  RouterLimits limits;
  limits.auth_failures_max = 3;
  FakeEngine engine(1, limits);
  std::vector<std::pair<ConnectionId, std::string>> streams;
  for (int i = 0; i < 8; ++i) {
    const ConnectionId id = engine.Connect(0, "192.0.2.9");
    streams.emplace_back(id, engine.OpenBridgeStream(id, "cb1"));
  }
  const ConnectionId no_header_yet = engine.Connect(0, "192.0.2.9");
  int not_authorized = 0, refused = 0;
  for (int i = 0; i < 7; ++i) {
    const ConnectionId id = streams[static_cast<size_t>(i)].first;
    engine.Receive(id, kWrongHandshake);
    not_authorized += Answered(engine, id, "not-authorized") ? 1 : 0;
    if (Answered(engine, id, "policy-violation")) {
      ++refused;
      EXPECT_THAT(engine.connection(id).outbox,
                  HasSubstr("too many failed authentication attempts from 192.0.2.9"));
    }
    EXPECT_TRUE(engine.connection(id).closed);
  }
  EXPECT_EQ(not_authorized, 3);
  EXPECT_EQ(refused, 4);
  EXPECT_EQ(engine.stats(0).auth_failures.load(), 3u);
  // The right secret is not checked either: the answer must not tell a guess apart.
  const auto& [last, last_stream_id] = streams.back();
  engine.SendRightHandshake(last, "cb1", last_stream_id);
  EXPECT_TRUE(Answered(engine, last, "policy-violation"));
  EXPECT_THAT(engine.connection(last).outbox, Not(HasSubstr("<handshake/>")));
  // Nor is a header's bridge name (host-unknown would say which bridges exist).
  engine.Receive(no_header_yet,
                 "<stream:stream xmlns='jabber:component:accept' "
                 "xmlns:stream='http://etherx.jabber.org/streams' to='nobody.example.com'>");
  EXPECT_TRUE(Answered(engine, no_header_yet, "policy-violation"));
  EXPECT_FALSE(Answered(engine, no_header_yet, "host-unknown"));
  // Other addresses are not affected; after the window this one is checked again.
  engine.ConnectBridge(0, "cb2", "192.0.2.10");
  engine.Tick(61'000);
  engine.ConnectBridge(0, "cb1", "192.0.2.9");
}

// The kernel spreads one attacker's connections over every shard, and a shard
// may read a whole burst before the other shards' kFailureSeen records: each
// shard checks at most its share, ceil(auth_failures_max / N), so all N shards
// together at most auth_failures_max (when N divides it). Once the records
// arrive every shard refuses them all.
TEST(RouterPortLimitsTest, ConcurrentWrongHandshakesOnNShardsAreBoundedByTheLimit) {
  RouterLimits limits;
  limits.auth_failures_max = 3;
  constexpr int kShards = 3;
  FakeEngine engine(kShards, limits);
  std::vector<ConnectionId> ids;
  for (int i = 0; i < 30; ++i) {
    ids.push_back(engine.Connect(i % kShards, "192.0.2.9"));
    engine.OpenBridgeStream(ids.back(), "cb1");
  }
  engine.HoldPosts(true);
  for (ConnectionId id : ids) engine.Receive(id, kWrongHandshake);
  engine.HoldPosts(false);
  engine.Pump();
  int not_authorized[kShards] = {};
  int refused = 0;
  for (ConnectionId id : ids) {
    not_authorized[ShardOf(id)] += Answered(engine, id, "not-authorized") ? 1 : 0;
    refused += Answered(engine, id, "policy-violation") ? 1 : 0;
  }
  for (int shard = 0; shard < kShards; ++shard) EXPECT_EQ(not_authorized[shard], 1) << shard;
  EXPECT_EQ(refused, 30 - 3);
  for (int shard = 0; shard < kShards; ++shard) {
    EXPECT_EQ(engine.Connect(shard, "192.0.2.9"), kNoConnection) << shard;
  }
}

// The same handshakes when the records arrive between them (the usual case):
// exactly auth_failures_max are checked over all shards.
TEST(RouterPortLimitsTest, WrongHandshakesSpreadOverShardsGiveExactlyTheLimit) {
  RouterLimits limits;
  limits.auth_failures_max = 3;
  FakeEngine engine(3, limits);
  std::vector<ConnectionId> ids;
  for (int i = 0; i < 30; ++i) {
    ids.push_back(engine.Connect(i % 3, "192.0.2.9"));
    engine.OpenBridgeStream(ids.back(), "cb1");
  }
  int not_authorized = 0;
  for (ConnectionId id : ids) {
    engine.Receive(id, kWrongHandshake);
    not_authorized += Answered(engine, id, "not-authorized") ? 1 : 0;
  }
  EXPECT_EQ(not_authorized, 3);
}

// 65,536 addresses failing once used to fill the table for good, and from then
// on no new address was counted. Now the table forgets the least recently
// failing address that is not blocked; the blocked ones stay.
TEST(RouterPortLimitsTest, FailureTableIsBoundedAndKeepsBlockingItsOffenders) {
  RouterLimits limits;
  limits.auth_failures_max = 2;
  limits.failure_table_entries_max = 4;
  FakeEngine engine(1, limits);
  for (int i = 0; i < 2; ++i) FailHandshake(engine, "198.51.100.1");
  EXPECT_EQ(engine.Connect(0, "198.51.100.1"), kNoConnection);
  // Many more addresses than the table holds, each failing once, do not flush it.
  for (int i = 0; i < 100; ++i) FailHandshake(engine, "203.0.113." + std::to_string(i));
  EXPECT_EQ(engine.Connect(0, "198.51.100.1"), kNoConnection);
  // A new offender is still counted and blocked.
  for (int i = 0; i < 2; ++i) FailHandshake(engine, "198.51.100.2");
  EXPECT_EQ(engine.Connect(0, "198.51.100.2"), kNoConnection);
  // A recent single failure is remembered: one more blocks its address; the
  // oldest was forgotten and starts counting again.
  FailHandshake(engine, "203.0.113.99");
  EXPECT_EQ(engine.Connect(0, "203.0.113.99"), kNoConnection);
  FailHandshake(engine, "203.0.113.0");
  EXPECT_NE(engine.Connect(0, "203.0.113.0"), kNoConnection);
  // Both offenders are still blocked after all that.
  EXPECT_EQ(engine.Connect(0, "198.51.100.1"), kNoConnection);
  EXPECT_EQ(engine.Connect(0, "198.51.100.2"), kNoConnection);
}

TEST(FailureCounterTest, ForgetsExpiredBlockedThenLeastRecentlyFailingThenBlocked) {
  FailureCounter counter(/*max=*/2, /*window_ms=*/1000, /*entries_max=*/3);
  EXPECT_FALSE(counter.Record("a", 0));
  EXPECT_TRUE(counter.Record("a", 0));  // reaches the maximum: blocked
  EXPECT_FALSE(counter.Record("b", 10));
  EXPECT_FALSE(counter.Record("c", 20));
  EXPECT_EQ(counter.size(), 3u);
  // Full: d pushes out b, the least recently failing key that is not blocked.
  EXPECT_FALSE(counter.Record("d", 30));
  EXPECT_EQ(counter.size(), 3u);
  EXPECT_EQ(counter.evictions(), 1u);
  EXPECT_TRUE(counter.Blocked("a", 40));  // the blocked one stays
  EXPECT_FALSE(counter.Record("b", 50));  // forgotten: its first failure again (c goes)
  EXPECT_TRUE(counter.Record("d", 60));   // remembered: its second
  // a's window has passed: a goes, before b, which still counts.
  EXPECT_FALSE(counter.Record("e", 1020));
  EXPECT_FALSE(counter.Blocked("a", 1020));
  EXPECT_TRUE(counter.Record("b", 1040));  // b's window (from 50) still runs
  EXPECT_EQ(counter.size(), 3u);
  // Every key blocked: the least recently failing blocked one goes.
  FailureCounter all_blocked(/*max=*/1, /*window_ms=*/1000, /*entries_max=*/2);
  EXPECT_TRUE(all_blocked.Record("x", 0));
  EXPECT_TRUE(all_blocked.Record("y", 1));
  EXPECT_TRUE(all_blocked.Record("z", 2));
  EXPECT_FALSE(all_blocked.Blocked("x", 3));
  EXPECT_TRUE(all_blocked.Blocked("y", 3));
  EXPECT_TRUE(all_blocked.Blocked("z", 3));
  EXPECT_EQ(all_blocked.size(), 2u);
}

// ---- Clients ----

constexpr char kClientHeader[] =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    "to='example.com' version='1.0'>";

// A client over real TLS (wolfSSL, no certificate check) through the fake
// engine: what the server sends lands in the connection's outbox, is fed to
// the client's TLS session, and its plaintext collects in `received`.
class TestClient {
 public:
  TestClient(FakeEngine* engine, int shard, const std::string& ip = "127.0.0.1",
             int tag = kClientListener)
      : engine_(engine), id_(engine->Connect(shard, ip, tag)) {}

  ConnectionId id() const { return id_; }
  bool refused() const { return id_ == kNoConnection; }
  std::string received;  // plaintext from the server, once TLS is up

  // STARTTLS and the TLS handshake.
  void StartTls() {
    engine_->Receive(id_, kClientHeader);
    engine_->Receive(id_, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    ASSERT_THAT(engine_->connection(id_).outbox, HasSubstr("<proceed "));
    consumed_ = engine_->connection(id_).outbox.size();
    BeginTls();
    Exchange();
    ASSERT_TRUE(tls_->handshake_done());
  }

  // TLS from here on (at once on a direct-TLS listener, after <proceed/> otherwise).
  void BeginTls() {
    auto context = tls::TlsContext::Client("", /*verify_peer=*/false);
    ASSERT_TRUE(context.ok());
    auto session = tls::TlsSession::NewClient(*context, "example.com");
    ASSERT_TRUE(session.ok());
    tls_ = *std::move(session);
  }

  // Sends plaintext through TLS and collects what comes back.
  void Send(std::string_view plaintext) {
    ASSERT_TRUE(tls_->Write(plaintext).ok());
    Exchange();
  }

  // STARTTLS and SASL PLAIN as `user`, then the restarted stream; true if it succeeded.
  bool Authenticate(const std::string& user, const std::string& password = "pencil") {
    StartTls();
    Send(kClientHeader);
    const std::string plain = std::string("\0", 1) + user + std::string("\0", 1) + password;
    Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" +
         sasl::Base64Encode(plain) + "</auth>");
    if (received.find("<success") == std::string::npos) return false;
    Send(kClientHeader);
    return true;
  }

  // Authenticate, then bind `resource`; true if bound.
  bool Login(const std::string& user, const std::string& resource,
             const std::string& password = "pencil") {
    if (!Authenticate(user, password)) return false;
    Send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" +
         resource + "</resource></bind></iq>");
    return received.find("<jid>" + user + "@example.com/" + resource + "</jid>") !=
           std::string::npos;
  }

  // Available presence, as a client sends after login.
  void Available(int priority = 0) {
    Send(priority == 0
             ? std::string("<presence/>")
             : "<presence><priority>" + std::to_string(priority) + "</priority></presence>");
  }

  // What arrived since the last call.
  std::string TakeReceived() {
    Exchange();
    std::string out = received.substr(taken_);
    taken_ = received.size();
    return out;
  }

  // Moves bytes both ways until neither side has more.
  void Exchange() {
    for (int round = 0; round < 100; ++round) {
      bool moved = false;
      const std::string& outbox = engine_->connection(id_).outbox;
      if (outbox.size() > consumed_) {
        EXPECT_TRUE(tls_->Feed(std::string_view(outbox).substr(consumed_)).ok());
        consumed_ = outbox.size();
        EXPECT_TRUE(tls_->Read(&received).ok());
        moved = true;
      }
      if (tls_->has_output()) {
        std::string out;
        tls_->TakeOutput(&out);
        engine_->Receive(id_, out);
        moved = true;
      }
      if (!moved) return;
    }
  }

 private:
  FakeEngine* engine_;
  ConnectionId id_;
  std::unique_ptr<tls::TlsSession> tls_;
  size_t consumed_ = 0;
  size_t taken_ = 0;
};

TEST(RouterClientsTest, ClientsOnTwoShardsExchangeByFullAndBareJid) {
  FakeEngine engine(3);
  TestClient juliet(&engine, 0);
  TestClient romeo(&engine, 1);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  ASSERT_TRUE(romeo.Login("romeo", "garden"));
  EXPECT_EQ(engine.stats(0).clients_connected.load() + engine.stats(1).clients_connected.load(),
            2u);
  juliet.TakeReceived();
  romeo.TakeReceived();

  // Full JID: delivered, `from` stamped with the sender's full JID.
  juliet.Send(
      "<message to='romeo@example.com/garden' id='m1' from='evil@example.com'>"
      "<body>hi</body></message>");
  std::string got = romeo.TakeReceived();
  EXPECT_THAT(got, HasSubstr("from='juliet@example.com/balcony'"));
  EXPECT_THAT(got, HasSubstr("id='m1'"));
  EXPECT_THAT(got, Not(HasSubstr("evil")));

  // Bare JID before romeo is available: no resource to deliver to, so the
  // sender learns it (no offline storage).
  juliet.Send("<message to='romeo@example.com' id='m2'><body>x</body></message>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("type='error' id='m2'"));
  EXPECT_THAT(romeo.TakeReceived(), Not(HasSubstr("id='m2'")));

  // Once available, the bare JID reaches him; his own presence is echoed to him.
  romeo.Available();
  EXPECT_THAT(romeo.TakeReceived(), HasSubstr("<presence from='romeo@example.com/garden'"));
  juliet.Send("<message to='Romeo@Example.COM' id='m3'><body>x</body></message>");
  EXPECT_THAT(romeo.TakeReceived(), HasSubstr("id='m3'"));

  // A message to a resource that is not bound goes to the bare JID instead;
  // an IQ to it is answered with an error.
  juliet.Send("<message to='romeo@example.com/nowhere' id='m4'/>");
  EXPECT_THAT(romeo.TakeReceived(), HasSubstr("id='m4'"));
  juliet.Send("<iq to='romeo@example.com/nowhere' type='get' id='q1'><x xmlns='urn:x'/></iq>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("type='error' id='q1'"));
}

TEST(RouterClientsTest, BareJidReachesAvailableResourcesWithNonNegativePriority) {
  FakeEngine engine(2);
  TestClient a(&engine, 0);
  TestClient b(&engine, 1);
  TestClient c(&engine, 1);
  TestClient romeo(&engine, 0);
  ASSERT_TRUE(a.Login("juliet", "a"));
  ASSERT_TRUE(b.Login("juliet", "b"));
  ASSERT_TRUE(c.Login("juliet", "c"));
  ASSERT_TRUE(romeo.Login("romeo", "r"));
  a.Available(5);
  b.Available(-1);
  // c never sends presence.
  EXPECT_THAT(a.TakeReceived(), HasSubstr("<presence from='juliet@example.com/a'"));
  // b's presence went to a (available), a's was sent before b was.
  EXPECT_THAT(a.TakeReceived(), Not(HasSubstr("juliet@example.com/c")));
  b.TakeReceived();
  c.TakeReceived();
  romeo.Send("<message to='juliet@example.com' id='m1'><body>x</body></message>");
  EXPECT_THAT(a.TakeReceived(), HasSubstr("id='m1'"));
  EXPECT_THAT(b.TakeReceived(), Not(HasSubstr("id='m1'")));  // negative priority
  EXPECT_THAT(c.TakeReceived(), Not(HasSubstr("id='m1'")));  // not available
  // Presence to the bare JID reaches every available resource, negative priority too.
  romeo.Send("<presence to='juliet@example.com' type='subscribe' id='p1'/>");
  EXPECT_THAT(a.TakeReceived(), HasSubstr("id='p1'"));
  EXPECT_THAT(b.TakeReceived(), HasSubstr("id='p1'"));
  // a goes away: the bare JID has nobody left with priority >= 0.
  a.Send("<presence type='unavailable'/>");
  romeo.Send("<message to='juliet@example.com' id='m2'><body>x</body></message>");
  EXPECT_THAT(romeo.TakeReceived(), HasSubstr("type='error' id='m2'"));
}

TEST(RouterClientsTest, SameFullJidReplacesTheOlderSession) {
  FakeEngine engine(2);
  TestClient first(&engine, 0);
  TestClient second(&engine, 1);
  TestClient romeo(&engine, 1);
  ASSERT_TRUE(first.Login("juliet", "balcony"));
  ASSERT_TRUE(second.Login("juliet", "balcony"));
  EXPECT_THAT(first.TakeReceived(), HasSubstr("<conflict "));
  EXPECT_TRUE(engine.connection(first.id()).closed);
  ASSERT_TRUE(romeo.Login("romeo", "r"));
  romeo.Send("<message to='juliet@example.com/balcony' id='m1'/>");
  EXPECT_THAT(second.TakeReceived(), HasSubstr("id='m1'"));
}

TEST(RouterClientsTest, ResourcesPerAccountAreCapped) {
  RouterLimits limits;
  limits.client_resources_max = 2;
  FakeEngine engine(2, limits);
  TestClient a(&engine, 0);
  TestClient b(&engine, 1);
  TestClient c(&engine, 0);
  ASSERT_TRUE(a.Login("juliet", "a"));
  ASSERT_TRUE(b.Login("juliet", "b"));
  EXPECT_FALSE(c.Login("juliet", "c"));
  EXPECT_THAT(c.TakeReceived(), HasSubstr("<resource-constraint "));
  // Once one leaves, there is room again: the refused client may bind now.
  a.Send("</stream:stream>");
  c.Send(
      "<iq type='set' id='bind2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
      "<resource>c</resource></bind></iq>");
  EXPECT_THAT(c.TakeReceived(), HasSubstr("<jid>juliet@example.com/c</jid>"));
}

TEST(RouterClientsTest, ClientAndBridgeExchangeStanzas) {
  FakeEngine engine(2);
  const ConnectionId cb1 = engine.ConnectBridge(1, "cb1");
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  juliet.TakeReceived();
  juliet.Send("<message to='cb1.example.com' id='m1'><body>join</body></message>");
  EXPECT_THAT(engine.connection(cb1).outbox,
              HasSubstr("<message from='juliet@example.com/balcony' to='cb1.example.com' "
                        "id='m1'><body>join</body></message>"));
  engine.Receive(cb1,
                 "<message from='cb1.example.com' to='juliet@example.com/balcony' "
                 "id='m2'><body>ok</body></message>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("id='m2'><body>ok</body>"));
  // A bridge's message to the bare JID of a user with no available resource bounces.
  engine.Receive(cb1, "<message from='cb1.example.com' to='romeo@example.com' id='m3'/>");
  EXPECT_THAT(engine.connection(cb1).outbox, HasSubstr("type='error' id='m3'"));
}

TEST(RouterClientsTest, ServerAnswersPingRosterAndRefusesTheRest) {
  FakeEngine engine(1);
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  juliet.TakeReceived();
  juliet.Send("<iq to='example.com' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("type='result' id='p1'"));
  juliet.Send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
  std::string got = juliet.TakeReceived();
  EXPECT_THAT(got, HasSubstr("type='result' id='r1'"));
  EXPECT_THAT(got, HasSubstr("<query xmlns='jabber:iq:roster'/>"));
  juliet.Send("<iq type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("<service-unavailable "));
  juliet.Send("<iq to='romeo@example.com' type='get' id='v2'><vCard xmlns='vcard-temp'/></iq>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("<service-unavailable "));
}

// RFC 6121 §8.5.1: a stanza to an address of our domain whose localpart is not
// a configured user is answered, or ignored, by its kind alone, bare and full
// JID alike; one to an account that exists but has no resource goes by §8.5.2
// and §8.5.3 as before. Presence is never answered.
TEST(RouterClientsTest, StanzasToAnAccountThatDoesNotExist) {
  FakeEngine engine(2);
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  juliet.TakeReceived();
  const auto answer = [&](const std::string& stanza) {
    juliet.Send(stanza);
    return juliet.TakeReceived();
  };
  const std::string unavailable =
      "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
      "</error>";
  for (const std::string to : {"nobody@example.com", "nobody@example.com/res"}) {
    SCOPED_TRACE(to);
    const std::string attributes = "to='" + to + "' id='s1'";
    const std::string error_reply =
        "from='" + to + "' to='juliet@example.com/balcony' type='error' id='s1'>" + unavailable;
    EXPECT_THAT(answer("<iq type='get' " + attributes + "><ping xmlns='urn:xmpp:ping'/></iq>"),
                HasSubstr("<iq " + error_reply + "</iq>"));
    EXPECT_THAT(answer("<iq type='set' " + attributes + "><query xmlns='jabber:iq:roster'/></iq>"),
                HasSubstr("<iq " + error_reply + "</iq>"));
    EXPECT_EQ(answer("<iq type='result' " + attributes + "/>"), "");
    EXPECT_EQ(answer("<iq type='error' " + attributes + "><error type='cancel'/></iq>"), "");
    for (const std::string type :
         {"", " type='normal'", " type='chat'", " type='headline'", " type='groupchat'"}) {
      EXPECT_THAT(answer("<message" + type + " " + attributes + "><body>x</body></message>"),
                  HasSubstr("<message " + error_reply + "</message>"))
          << type;
    }
    EXPECT_EQ(answer("<message type='error' " + attributes + "><error type='cancel'/></message>"),
              "");
    for (const std::string type :
         {"", " type='unavailable'", " type='subscribe'", " type='subscribed'",
          " type='unsubscribe'", " type='unsubscribed'", " type='probe'"}) {
      EXPECT_EQ(answer("<presence" + type + " " + attributes + "/>"), "") << type;
    }
  }
  // The localpart is compared in canonical form.
  EXPECT_THAT(answer("<iq type='get' to='NoBody@Example.COM' id='c1'><ping xmlns='urn:xmpp:ping'/>"
                     "</iq>"),
              HasSubstr("type='error' id='c1'><error type='cancel'><service-unavailable "));
  // Romeo exists and has no resource: a ping to his bare JID is the server's to
  // answer (RFC 6120 §10.5.3.3), one to a full JID is service-unavailable
  // (§8.5.3.2.3); a message is service-unavailable (no offline storage,
  // §8.5.2.2.1); presence is ignored.
  EXPECT_THAT(answer("<iq type='get' to='romeo@example.com' id='r1'><ping xmlns='urn:xmpp:ping'/>"
                     "</iq>"),
              HasSubstr("<iq from='romeo@example.com' to='juliet@example.com/balcony' "
                        "type='result' id='r1'/>"));
  EXPECT_THAT(answer("<iq type='get' to='romeo@example.com/garden' id='r2'><ping "
                     "xmlns='urn:xmpp:ping'/></iq>"),
              HasSubstr("type='error' id='r2'>" + unavailable));
  for (const std::string to : {"romeo@example.com", "romeo@example.com/garden"}) {
    EXPECT_THAT(answer("<message type='chat' to='" + to + "' id='r3'><body>x</body></message>"),
                HasSubstr("type='error' id='r3'>" + unavailable))
        << to;
    EXPECT_EQ(answer("<presence type='subscribe' to='" + to + "'/>"), "") << to;
  }
  // By a full JID, nobody can tell an account that does not exist from one without
  // that resource: every stanza gets the same answer, or none.
  for (const std::string stanza :
       {"<iq type='get' to='TO' id='x1'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<iq type='set' to='TO' id='x2'><query xmlns='jabber:iq:roster'/></iq>",
        "<iq to='TO' id='x3'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<iq type='result' to='TO' id='x4'/>",
        "<iq type='error' to='TO' id='x5'><error type='cancel'/></iq>",
        "<message type='chat' to='TO' id='x6'><body>x</body></message>",
        "<message type='groupchat' to='TO' id='x7'/>", "<message type='headline' to='TO' id='x8'/>",
        "<message type='error' to='TO' id='x9'/>", "<presence to='TO'/>",
        "<presence type='subscribe' to='TO'/>", "<presence type='probe' to='TO'/>"}) {
    // The answer to `stanza` sent to `user`'s full JID, with TO where that JID was.
    const auto answer_for = [&](const std::string& user) {
      const std::string address = user + "@example.com/x";
      std::string text = stanza;
      text.replace(text.find("TO"), 2, address);
      std::string got = answer(text);
      if (const size_t at = got.find(address); at != std::string::npos) {
        got.replace(at, address.size(), "TO");
      }
      return got;
    };
    EXPECT_EQ(answer_for("nobody"), answer_for("romeo")) << stanza;
  }
  // The server's own answers are unchanged.
  EXPECT_THAT(answer("<iq type='get' to='example.com' id='d1'>"
                     "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"),
              HasSubstr("<feature var='urn:xmpp:ping'/>"));
  EXPECT_THAT(answer("<iq type='get' to='example.com' id='d2'><ping xmlns='urn:xmpp:ping'/></iq>"),
              HasSubstr("type='result' id='d2'/>"));
  // Nothing for `nobody` reached the other nodes.
  for (const auto& post : engine.control_posts()) {
    EXPECT_THAT(post.payload, Not(HasSubstr("nobody@"))) << post.kind;
  }
}

// "Does not exist" is the replicated configuration's word, never "no resource
// on this node": an account with resources on another node only is reached
// there; an address that names no configured user is answered here, whatever a
// peer announced; an account added later is an account at once.
TEST(RouterClientsTest, AccountsExistByTheConfigurationNotByThisNode) {
  FakeEngine engine(2);
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  const ConnectionId cb1 = engine.ConnectBridge(1, "cb1");
  juliet.TakeReceived();
  for (int shard = 0; shard < 2; ++shard) {
    engine.PostFromControl(shard, kRemoteRouteBind, 42, "romeo@example.com");
    engine.PostFromControl(shard, kRemoteRouteBind, 42, "romeo@example.com/garden");
    // A peer whose configuration lags (or lies) announcing an unknown account.
    engine.PostFromControl(shard, kRemoteRouteBind, 42, "nobody@example.com");
    engine.PostFromControl(shard, kRemoteRouteBind, 42, "nobody@example.com/res");
  }
  const auto forwarded_to_42 = [&](std::string_view id) {
    const auto& last = engine.control_posts().back();
    return last.kind == kCtlForward && last.argument == 42u &&
           last.payload.find(id) != std::string::npos;
  };
  juliet.Send("<message type='chat' to='romeo@example.com' id='f1'><body>x</body></message>");
  EXPECT_TRUE(forwarded_to_42("id='f1'"));
  juliet.Send(
      "<iq type='get' to='romeo@example.com/garden' id='f2'><ping xmlns='urn:xmpp:ping'/>"
      "</iq>");
  EXPECT_TRUE(forwarded_to_42("id='f2'"));
  juliet.Send("<presence type='subscribe' to='romeo@example.com' id='f3'/>");
  EXPECT_TRUE(forwarded_to_42("id='f3'"));
  EXPECT_EQ(juliet.TakeReceived(), "");

  const size_t posts = engine.control_posts().size();
  juliet.Send("<message type='chat' to='nobody@example.com' id='n1'><body>x</body></message>");
  juliet.Send(
      "<iq type='get' to='nobody@example.com/res' id='n2'><ping xmlns='urn:xmpp:ping'/>"
      "</iq>");
  juliet.Send("<presence type='subscribe' to='nobody@example.com' id='n3'/>");
  const std::string got = juliet.TakeReceived();
  EXPECT_THAT(got, HasSubstr("type='error' id='n1'><error type='cancel'><service-unavailable "));
  EXPECT_THAT(got, HasSubstr("type='error' id='n2'><error type='cancel'><service-unavailable "));
  EXPECT_THAT(got, Not(HasSubstr("id='n3'")));
  EXPECT_EQ(engine.control_posts().size(), posts);

  // A bridge is answered the same way.
  engine.Receive(cb1,
                 "<iq type='get' from='cb1.example.com' to='nobody@example.com' id='b1'>"
                 "<ping xmlns='urn:xmpp:ping'/></iq>");
  EXPECT_THAT(engine.connection(cb1).outbox,
              HasSubstr("<iq from='nobody@example.com' to='cb1.example.com' type='error' "
                        "id='b1'><error type='cancel'><service-unavailable "));
  // So is another node's client: the error travels back to node 42.
  engine.PostFromControl(0, kDeliverFromPeer, 42,
                         "<iq from='romeo@example.com/garden' to='nobody@example.com' "
                         "type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
  EXPECT_TRUE(forwarded_to_42("type='error' id='p1'><error type='cancel'><service-unavailable "));

  // Once `nobody` is configured, a ping to the bare JID is answered for the account.
  std::shared_ptr<RouterConfig> config = engine.CopyConfig();
  config->users["nobody"] = FakeEngine::TestCredentials();
  engine.PublishConfig(config);
  juliet.Send("<iq type='get' to='nobody@example.com' id='a1'><ping xmlns='urn:xmpp:ping'/></iq>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("type='result' id='a1'/>"));
}

TEST(RouterClientsTest, WrongPasswordAndUnknownUserAreRefused) {
  FakeEngine engine(1);
  TestClient bad(&engine, 0);
  EXPECT_FALSE(bad.Login("juliet", "balcony", "wrong"));
  EXPECT_THAT(bad.TakeReceived(), HasSubstr("<not-authorized/>"));
  TestClient nobody(&engine, 0);
  EXPECT_FALSE(nobody.Login("nobody", "x"));
  EXPECT_EQ(engine.stats(0).client_logins_failed.load(), 2u);
}

TEST(RouterClientsTest, AccountBlockedAfterRepeatedFailures) {
  RouterLimits limits;
  limits.account_failures_max = 2;
  limits.auth_failures_max = 100;
  FakeEngine engine(1, limits);
  for (int i = 0; i < 2; ++i) {
    TestClient bad(&engine, 0);
    EXPECT_FALSE(bad.Login("juliet", "x", "wrong"));
  }
  TestClient right(&engine, 0);
  EXPECT_FALSE(right.Login("juliet", "x"));  // blocked, the right password too
  TestClient other(&engine, 0);
  EXPECT_TRUE(other.Login("romeo", "x"));  // other accounts are not
  engine.Tick(61'000);
  TestClient later(&engine, 0);
  EXPECT_TRUE(later.Login("juliet", "x"));  // the window passed
}

// The kernel spreads one attacker's connections over every shard: each shard
// counts the failures of all of them.
TEST(RouterClientsTest, FailuresCountAcrossShards) {
  RouterLimits limits;
  limits.account_failures_max = 2;
  limits.auth_failures_max = 3;
  FakeEngine engine(2, limits);
  TestClient first(&engine, 0, "192.0.2.7");
  EXPECT_FALSE(first.Login("juliet", "x", "wrong"));
  TestClient second(&engine, 1, "192.0.2.7");
  EXPECT_FALSE(second.Login("juliet", "x", "wrong"));
  for (int shard = 0; shard < 2; ++shard) {
    TestClient right(&engine, shard);
    EXPECT_FALSE(right.Login("juliet", "x")) << "shard " << shard;
  }
  TestClient third(&engine, 0, "192.0.2.7");
  EXPECT_FALSE(third.Login("romeo", "x", "wrong"));  // the address's third failure
  EXPECT_EQ(engine.Connect(1, "192.0.2.7", kClientListener), kNoConnection);
  EXPECT_EQ(engine.Connect(0, "192.0.2.7", kClientListener), kNoConnection);
}

std::string PlainAuth(const std::string& user, const std::string& password) {
  return "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" +
         sasl::Base64Encode(std::string("\0", 1) + user + std::string("\0", 1) + password) +
         "</auth>";
}

// Logins on connections opened before the address was blocked are refused
// unchecked, the right password too (no oracle), with <policy-violation/>.
TEST(RouterClientsTest, LoginsOfABlockedAddressAreRefusedUnchecked) {
  RouterLimits limits;
  limits.auth_failures_max = 2;
  limits.account_failures_max = 100;
  FakeEngine engine(2, limits);
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<TestClient>(&engine, i % 2, "192.0.2.7"));
    clients.back()->StartTls();
    clients.back()->Send(kClientHeader);
  }
  for (int i = 0; i < 2; ++i) {
    clients[static_cast<size_t>(i)]->Send(PlainAuth("juliet", "wrong"));
    EXPECT_THAT(clients[static_cast<size_t>(i)]->TakeReceived(), HasSubstr("<not-authorized/>"));
  }
  for (int i = 2; i < 4; ++i) {
    TestClient& client = *clients[static_cast<size_t>(i)];
    client.Send(PlainAuth("romeo", "pencil"));
    const std::string got = client.TakeReceived();
    EXPECT_THAT(got, HasSubstr("<policy-violation "));
    EXPECT_THAT(got, HasSubstr("too many failed authentication attempts"));
    EXPECT_THAT(got, Not(HasSubstr("<success")));
    EXPECT_TRUE(engine.connection(client.id()).closed);
  }
  TestClient other(&engine, 1, "192.0.2.8");
  EXPECT_TRUE(other.Login("romeo", "garden"));
}

TEST(RouterClientsTest, AuthenticatedClientsDoNotCountTowardThePreauthCap) {
  RouterLimits limits;
  limits.preauth_connections_per_ip_max = 2;
  FakeEngine engine(2, limits);
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<TestClient>(&engine, i % 2, "192.0.2.1"));
    ASSERT_FALSE(clients.back()->refused());
    EXPECT_TRUE(clients.back()->Authenticate(i % 2 == 0 ? "juliet" : "romeo"));
  }
  TestClient waiting(&engine, 0, "192.0.2.1");
  TestClient also_waiting(&engine, 1, "192.0.2.1");
  EXPECT_FALSE(waiting.refused());
  EXPECT_FALSE(also_waiting.refused());
  TestClient one_too_many(&engine, 0, "192.0.2.1");
  EXPECT_TRUE(one_too_many.refused());
}

// Without a certificate a STARTTLS client is let in only to be told why in XMPP:
// its stream header is answered with ours and <internal-server-error/> with a text,
// then the connection closes. It still counts and logs as refused. A direct-TLS
// client cannot be told anything, so it is refused at once.
TEST(RouterClientsTest, NoCertificateRefusesClientsAndDeletedUsersAreDisconnected) {
  ResetLogStateForTest();
  FakeEngine engine(1);
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  juliet.TakeReceived();
  auto config = engine.CopyConfig();
  config->users.erase("juliet");
  config->client_tls = nullptr;
  engine.PublishConfig(config);
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("<not-authorized "));
  EXPECT_TRUE(engine.connection(juliet.id()).closed);

  const uint64_t refused_before = engine.stats(0).connections_refused.load();
  const uint64_t accepted_before = engine.stats(0).connections_accepted.load();
  const uint64_t stream_errors_before = engine.stats(0).stream_errors.load();
  TestClient late(&engine, 0);
  ASSERT_FALSE(late.refused());
  EXPECT_EQ(engine.stats(0).connections_refused.load(), refused_before + 1);
  EXPECT_EQ(engine.stats(0).connections_accepted.load(), accepted_before);  // counted once
  EXPECT_FALSE(engine.connection(late.id()).closed);  // waits for the client's header
  engine.Receive(late.id(), kClientHeader);
  const std::string& said = engine.connection(late.id()).outbox;
  EXPECT_THAT(said, HasSubstr("<stream:stream "));
  EXPECT_THAT(said, HasSubstr("<stream:error><internal-server-error "));
  EXPECT_THAT(said, HasSubstr("this server has no TLS certificate yet"));
  EXPECT_THAT(said, HasSubstr("stanzactl certs KEY CERT"));
  EXPECT_THAT(said, HasSubstr("</stream:stream>"));
  EXPECT_THAT(said, Not(HasSubstr("<starttls")));  // no features: nothing to offer
  EXPECT_TRUE(engine.connection(late.id()).closed);
  // The answer it was given is not a problem of this node (status lists stream errors).
  EXPECT_EQ(engine.stats(0).stream_errors.load(), stream_errors_before);
  bool logged = false;
  for (const std::string& line : RecentProblems()) {
    logged |= line.find("event=client_refused") != std::string::npos &&
              line.find("reason=no_tls_certificate") != std::string::npos;
  }
  EXPECT_TRUE(logged);

  TestClient direct(&engine, 0, "127.0.0.1", kClientTlsListener);
  EXPECT_TRUE(direct.refused());
  EXPECT_EQ(engine.stats(0).connections_refused.load(), refused_before + 2);
  EXPECT_NE(engine.Connect(0), kNoConnection);  // call bridges are still welcome
  ResetLogStateForTest();
}

TEST(RouterClientsTest, TlsGarbageClosesOnlyThatConnection) {
  FakeEngine engine(1);
  TestClient juliet(&engine, 0);
  TestClient romeo(&engine, 0);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  ASSERT_TRUE(romeo.Login("romeo", "garden"));
  const ConnectionId garbage = engine.Connect(0, "127.0.0.1", kClientListener);
  engine.Receive(garbage, kClientHeader);
  engine.Receive(garbage, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
  engine.Receive(garbage, std::string(300, 'A'));
  EXPECT_TRUE(engine.connection(garbage).closed);
  EXPECT_EQ(engine.stats(0).tls_handshakes_failed.load(), 1u);
  juliet.TakeReceived();
  romeo.TakeReceived();
  juliet.Send("<message to='romeo@example.com/garden' id='m1'/>");
  EXPECT_THAT(romeo.TakeReceived(), HasSubstr("id='m1'"));
}

TEST(RouterClientsTest, DirectTlsSkipsStartTls) {
  FakeEngine engine(1);
  TestClient client(&engine, 0, "127.0.0.1", kClientTlsListener);
  ASSERT_FALSE(client.refused());
  client.BeginTls();
  client.Send(kClientHeader);
  EXPECT_THAT(client.received, HasSubstr("<mechanism>SCRAM-SHA-256</mechanism>"));
  EXPECT_THAT(client.received, Not(HasSubstr("starttls")));
}

TEST(RouterClientsTest, BridgeOverTlsWithComponentTls) {
  FakeEngine engine(1);
  TestClient bridge(&engine, 0, "127.0.0.1", kComponentTlsListener);
  ASSERT_FALSE(bridge.refused());
  bridge.BeginTls();
  bridge.Send(
      "<stream:stream xmlns='jabber:component:accept' "
      "xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.com'>");
  const std::string& received = bridge.received;
  const size_t id_at = received.find("id='") + 4;
  const std::string stream_id = received.substr(id_at, received.find('\'', id_at) - id_at);
  bridge.Send("<handshake>" + xmpp::ComponentHandshakeDigest(stream_id, "secret-cb1") +
              "</handshake>");
  EXPECT_THAT(bridge.received, HasSubstr("<handshake/>"));
  // Stanzas reach it through TLS.
  const ConnectionId cb2 = engine.ConnectBridge(0, "cb2");
  engine.Receive(cb2, "<message from='cb2.example.com' to='cb1.example.com' id='t1'/>");
  EXPECT_THAT(bridge.TakeReceived(), HasSubstr("id='t1'"));
  // Plain bytes on the TLS port are refused, and logged as such.
  const ConnectionId plain = engine.Connect(0, "127.0.0.1", kComponentTlsListener);
  engine.Receive(plain, "<stream:stream xmlns='jabber:component:accept' to='cb2.example.com'>");
  EXPECT_TRUE(engine.connection(plain).closed);
}

// Clients of different nodes reach each other by full JID, and bridges there
// reach clients here: the owner shard announces each bound full JID to the
// control thread, which tells the other nodes.
TEST(RouterClientsTest, FullJidsRouteAcrossNodes) {
  FakeEngine engine(2);
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  bool announced = false;
  for (const auto& post : engine.control_posts()) {
    announced |= post.kind == kCtlRouteUp && post.payload == "juliet@example.com/balcony";
  }
  EXPECT_TRUE(announced);
  // romeo/garden is bound on node 42.
  for (int shard = 0; shard < 2; ++shard) {
    engine.PostFromControl(shard, kRemoteRouteBind, 42, "romeo@example.com/garden");
  }
  juliet.TakeReceived();
  juliet.Send("<message to='romeo@example.com/garden' id='x1'/>");
  const auto& forwarded = engine.control_posts().back();
  EXPECT_EQ(forwarded.kind, kCtlForward);
  EXPECT_EQ(forwarded.argument, 42u);
  EXPECT_THAT(forwarded.payload, HasSubstr("id='x1'"));
  // From node 42 to juliet: delivered here.
  engine.PostFromControl(1, kDeliverFromPeer, 42,
                         "<message from='romeo@example.com/garden' "
                         "to='juliet@example.com/balcony' id='x2'/>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("id='x2'"));
  // An error for a stanza from node 42 goes back there.
  engine.PostFromControl(0, kDeliverFromPeer, 42,
                         "<iq from='romeo@example.com/garden' to='juliet@example.com/gone' "
                         "type='get' id='x3'><q xmlns='urn:x'/></iq>");
  const auto& bounced = engine.control_posts().back();
  EXPECT_EQ(bounced.kind, kCtlForward);
  EXPECT_EQ(bounced.argument, 42u);
  EXPECT_THAT(bounced.payload, HasSubstr("type='error' id='x3'"));
  // When she leaves, the other nodes are told.
  juliet.Send("</stream:stream>");
  bool withdrawn = false;
  for (const auto& post : engine.control_posts()) {
    withdrawn |= post.kind == kCtlRouteDown && post.payload == "juliet@example.com/balcony";
  }
  EXPECT_TRUE(engine.connection(juliet.id()).closed);
  EXPECT_TRUE(withdrawn);
}

// An account is a cluster route while it has resources here that a message to
// its bare JID goes to (available, priority >= 0): announced by its owner shard
// when the first appears, withdrawn when the last goes. A message to a bare JID
// goes to every node that announced the account, and to the resources here.
TEST(RouterClientsTest, BareJidsRouteToEveryNodeWithAvailableResources) {
  FakeEngine engine(2);
  const auto count = [&](uint32_t kind, std::string_view payload) {
    int n = 0;
    for (const auto& post : engine.control_posts()) {
      n += post.kind == kind && post.payload == payload ? 1 : 0;
    }
    return n;
  };
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  EXPECT_EQ(count(kCtlRouteUp, "juliet@example.com"), 0) << "bound, but not available yet";
  juliet.Send("<presence><priority>-1</priority></presence>");
  EXPECT_EQ(count(kCtlRouteUp, "juliet@example.com"), 0) << "a negative priority gets none";
  juliet.Send("<presence/>");
  EXPECT_EQ(count(kCtlRouteUp, "juliet@example.com"), 1);
  juliet.Send("<presence><priority>5</priority></presence>");
  EXPECT_EQ(count(kCtlRouteUp, "juliet@example.com"), 1) << "announced once";
  // Her presence reaches her resources on other nodes: a copy to her bare JID
  // for each node that has some.
  for (int shard = 0; shard < 2; ++shard) {
    engine.PostFromControl(shard, kRemoteRouteBind, 44, "juliet@example.com");
  }
  juliet.Send("<presence><show>away</show></presence>");
  const auto& copy = engine.control_posts().back();
  EXPECT_EQ(copy.kind, kCtlForward);
  EXPECT_EQ(copy.argument, 44u);
  EXPECT_THAT(copy.payload, HasSubstr("<presence to='juliet@example.com' "
                                      "from='juliet@example.com/balcony'><show>away</show>"));
  // Romeo has available resources on nodes 42 and 43, none here.
  for (int shard = 0; shard < 2; ++shard) {
    engine.PostFromControl(shard, kRemoteRouteBind, 42, "romeo@example.com");
    engine.PostFromControl(shard, kRemoteRouteBind, 43, "romeo@example.com");
  }
  juliet.TakeReceived();
  const size_t before = engine.control_posts().size();
  juliet.Send("<message to='romeo@example.com' id='b1'/>");
  std::set<uint64_t> nodes;
  for (size_t i = before; i < engine.control_posts().size(); ++i) {
    const auto& post = engine.control_posts()[i];
    if (post.kind == kCtlForward && post.payload.find("id='b1'") != std::string::npos) {
      nodes.insert(post.argument);
    }
  }
  EXPECT_EQ(nodes, (std::set<uint64_t>{42, 43}));
  EXPECT_THAT(juliet.TakeReceived(), Not(HasSubstr("error")));
  // A copy from another node is delivered here only, never sent on.
  const size_t posts = engine.control_posts().size();
  engine.PostFromControl(1, kDeliverFromPeer, 42,
                         "<message from='romeo@example.com/garden' to='juliet@example.com' "
                         "id='b2'/>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("id='b2'"));
  EXPECT_EQ(engine.control_posts().size(), posts);
  // Node 42 withdraws romeo, then 43: nobody left, the sender gets an error.
  for (int shard = 0; shard < 2; ++shard) {
    engine.PostFromControl(shard, kRemoteRouteUnbind, 42, "romeo@example.com");
    engine.PostFromControl(shard, kForgetNode, 43, "");
  }
  juliet.Send("<message to='romeo@example.com' id='b3'/>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("service-unavailable"));
  // Unavailable: withdrawn.
  juliet.Send("<presence type='unavailable'/>");
  EXPECT_EQ(count(kCtlRouteDown, "juliet@example.com"), 1);
}

// ---- Stream management (XEP-0198) ----

// The h of the last <a/> or <resumed/> in `text`.
std::string CountIn(const std::string& text, const std::string& element) {
  const size_t at = text.rfind("<" + element + " ");
  if (at == std::string::npos) return "";
  const size_t h = text.find(" h='", at);
  return text.substr(h + 4, text.find('\'', h + 4) - h - 4);
}

std::string SmIdIn(const std::string& text) {
  const size_t at = text.find("<enabled ");
  if (at == std::string::npos) return "";
  const size_t id = text.find(" id='", at);
  return text.substr(id + 5, text.find('\'', id + 5) - id - 5);
}

TEST(RouterStreamManagementTest, CountsAcknowledgesAndAsksForAcks) {
  FakeEngine engine(2);
  TestClient juliet(&engine, 0);
  TestClient romeo(&engine, 1);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  ASSERT_TRUE(romeo.Login("romeo", "garden"));
  juliet.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
  EXPECT_FALSE(SmIdIn(juliet.TakeReceived()).empty());
  for (int i = 0; i < 3; ++i) {
    romeo.Send("<message to='juliet@example.com/balcony' id='m" + std::to_string(i) + "'/>");
  }
  juliet.Send("<message to='romeo@example.com/garden' id='j1'/>");
  juliet.Send("<r xmlns='urn:xmpp:sm:3'/>");
  EXPECT_EQ(CountIn(juliet.TakeReceived(), "a"), "1");  // the server handled one of hers
  juliet.Send("<a xmlns='urn:xmpp:sm:3' h='2'/>");
  // After 8 unacknowledged stanzas the server asks for an acknowledgement.
  for (int i = 0; i < 8; ++i) romeo.Send("<message to='juliet@example.com/balcony'/>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("<r xmlns='urn:xmpp:sm:3'/>"));
  juliet.Send("<a xmlns='urn:xmpp:sm:3' h='99'/>");  // more than was sent
  const std::string error = juliet.TakeReceived();
  EXPECT_THAT(error, HasSubstr("<undefined-condition "));
  // XEP-0198 §6 names the condition, the h it got and the count sent.
  EXPECT_THAT(error,
              HasSubstr("<handled-count-too-high xmlns='urn:xmpp:sm:3' h='99' send-count='11'/>"));
}

// The client counts every stanza it gets, the server's own answers too.
TEST(RouterStreamManagementTest, ServerAnswersAreCounted) {
  FakeEngine engine(1);
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  juliet.Send("<enable xmlns='urn:xmpp:sm:3'/>");
  juliet.Send("<iq to='example.com' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
  juliet.Send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("id='r1'"));
  juliet.Send("<a xmlns='urn:xmpp:sm:3' h='2'/>");
  EXPECT_THAT(juliet.TakeReceived(), Not(HasSubstr("undefined-condition")));
  juliet.Send("<a xmlns='urn:xmpp:sm:3' h='3'/>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("undefined-condition"));
}

TEST(RouterStreamManagementTest, ResumeOnAnotherShardResendsWhatWasNotAcknowledged) {
  FakeEngine engine(3);
  TestClient juliet(&engine, 0);
  TestClient romeo(&engine, 1);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  ASSERT_TRUE(romeo.Login("romeo", "garden"));
  juliet.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
  const std::string sm_id = SmIdIn(juliet.TakeReceived());
  ASSERT_FALSE(sm_id.empty());
  romeo.Send("<message to='juliet@example.com/balcony' id='m1'/>");
  romeo.Send("<message to='juliet@example.com/balcony' id='m2'/>");
  juliet.Send("<a xmlns='urn:xmpp:sm:3' h='1'/>");  // she saw m1 only
  engine.DropConnection(juliet.id());
  // While she is away, stanzas for her wait instead of bouncing.
  romeo.Send("<message to='juliet@example.com/balcony' id='m3'/>");
  EXPECT_THAT(romeo.TakeReceived(), Not(HasSubstr("type='error'")));

  TestClient again(&engine, 2);
  ASSERT_TRUE(again.Authenticate("juliet"));
  again.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + sm_id + "' h='1'/>");
  const std::string got = again.TakeReceived();
  EXPECT_THAT(got, HasSubstr("<resumed xmlns='urn:xmpp:sm:3' previd='" + sm_id + "' h='0'/>"));
  EXPECT_THAT(got, Not(HasSubstr("id='m1'")));
  EXPECT_THAT(got, HasSubstr("id='m2'"));
  EXPECT_THAT(got, HasSubstr("id='m3'"));
  EXPECT_LT(got.find("id='m2'"), got.find("id='m3'"));
  // The route moved: new stanzas reach the new connection, and it counts on from h.
  romeo.Send("<message to='juliet@example.com/balcony' id='m4'/>");
  EXPECT_THAT(again.TakeReceived(), HasSubstr("id='m4'"));
  again.Send("<a xmlns='urn:xmpp:sm:3' h='4'/>");  // m2, m3, m4 handled
  EXPECT_THAT(again.TakeReceived(), Not(HasSubstr("undefined-condition")));
  EXPECT_EQ(engine.stats(2).sm_resumed.load(), 1u);
  // The old session forwards for a while, then is gone; the new one stays.
  engine.Tick(11'000);
  romeo.Send("<message to='juliet@example.com/balcony' id='m5'/>");
  EXPECT_THAT(again.TakeReceived(), HasSubstr("id='m5'"));
}

// The server's h counts the client's stanzas from <enable/> on, never its nonzas, and
// goes with the session to the connection that resumes it (<resumed h/>, then <a h/>).
TEST(RouterStreamManagementTest, TheClientsStanzasAreCountedAcrossResumption) {
  FakeEngine engine(3);
  TestClient juliet(&engine, 0);
  TestClient romeo(&engine, 1);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  ASSERT_TRUE(romeo.Login("romeo", "garden"));
  juliet.Send("<message to='romeo@example.com/garden' id='before'/>");  // before <enable/>
  juliet.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
  const std::string sm_id = SmIdIn(juliet.TakeReceived());
  ASSERT_FALSE(sm_id.empty());
  juliet.Send("<message to='romeo@example.com/garden' id='j1'/>");
  juliet.Send("<r xmlns='urn:xmpp:sm:3'/> ");
  EXPECT_EQ(CountIn(juliet.TakeReceived(), "a"), "1");
  juliet.Send(
      "<presence/><iq to='example.com' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
  juliet.Send("<message to='nobody@example.com' id='j4'/>");  // answered with an error: handled
  juliet.Send("<a xmlns='urn:xmpp:sm:3' h='0'/><r xmlns='urn:xmpp:sm:3'/>");
  EXPECT_EQ(CountIn(juliet.TakeReceived(), "a"), "4");
  engine.DropConnection(juliet.id());

  TestClient again(&engine, 2);
  ASSERT_TRUE(again.Authenticate("juliet"));
  again.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + sm_id + "' h='0'/>");
  EXPECT_EQ(CountIn(again.TakeReceived(), "resumed"), "4");
  again.Send("<message to='romeo@example.com/garden' id='j5'/><r xmlns='urn:xmpp:sm:3'/>");
  EXPECT_EQ(CountIn(again.TakeReceived(), "a"), "5");
  EXPECT_THAT(romeo.TakeReceived(), HasSubstr("id='j5'"));
}

// XEP-0198 §5: a session resumed while its old stream is still open ends that
// stream with a conflict stream error.
TEST(RouterStreamManagementTest, ResumingEndsTheOldStreamStillOpenWithConflict) {
  FakeEngine engine(2);
  TestClient juliet(&engine, 0);
  TestClient romeo(&engine, 1);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  ASSERT_TRUE(romeo.Login("romeo", "garden"));
  juliet.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
  const std::string sm_id = SmIdIn(juliet.TakeReceived());
  ASSERT_FALSE(sm_id.empty());
  romeo.Send("<message to='juliet@example.com/balcony' id='m1'/>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("id='m1'"));

  TestClient again(&engine, 1);  // her old connection looks alive to the server
  ASSERT_TRUE(again.Authenticate("juliet"));
  again.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + sm_id + "' h='0'/>");
  const std::string got = again.TakeReceived();
  EXPECT_THAT(got, HasSubstr("<resumed xmlns='urn:xmpp:sm:3' previd='" + sm_id + "' h='0'/>"));
  EXPECT_THAT(got, HasSubstr("id='m1'"));
  const std::string old_stream = juliet.TakeReceived();
  EXPECT_THAT(old_stream, HasSubstr("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"));
  EXPECT_THAT(old_stream, HasSubstr("</stream:stream>"));
  EXPECT_TRUE(engine.connection(juliet.id()).closed);
  EXPECT_FALSE(engine.connection(juliet.id()).aborted);
  // Nothing was returned to romeo: the stanza lives on in the resumed session.
  EXPECT_THAT(romeo.TakeReceived(), Not(HasSubstr("type='error'")));
}

// The server's own answers count as unacknowledged stanzas too; a client that
// keeps asking and never acknowledges cannot make the server hold them without
// bound.
TEST(RouterStreamManagementTest, AnswersBeyondTheUnacknowledgedBoundEndTheStream) {
  RouterLimits limits;
  limits.unacked_bytes_max = 1'000;
  FakeEngine engine(1, limits);
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  juliet.Send("<enable xmlns='urn:xmpp:sm:3'/>");
  (void)juliet.TakeReceived();
  std::string got;
  for (int i = 0; i < 100 && got.find("</stream:stream>") == std::string::npos; ++i) {
    juliet.Send("<iq to='example.com' type='get' id='p" + std::to_string(i) +
                "'><ping xmlns='urn:xmpp:ping'/></iq>");
    got += juliet.TakeReceived();
  }
  EXPECT_THAT(got, HasSubstr("<resource-constraint "));
  EXPECT_TRUE(engine.connection(juliet.id()).closed);
}

TEST(RouterStreamManagementTest, UnknownSessionFailsAndTheClientBinds) {
  FakeEngine engine(2);
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Authenticate("juliet"));
  juliet.Send("<resume xmlns='urn:xmpp:sm:3' previd='0123456789abcdef' h='0'/>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("<failed xmlns='urn:xmpp:sm:3'><item-not-found "));
  juliet.Send(
      "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
      "<resource>x</resource></bind></iq>");
  EXPECT_THAT(juliet.TakeReceived(), HasSubstr("<jid>juliet@example.com/x</jid>"));
}

TEST(RouterStreamManagementTest, WithoutResumptionResumeIsNotImplemented) {
  RouterLimits limits;
  limits.resume_timeout_ms = 0;  // --resume_timeout_s=0
  FakeEngine engine(2, limits);
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Authenticate("juliet"));
  juliet.Send("<resume xmlns='urn:xmpp:sm:3' previd='0123456789abcdef' h='0'/>");
  EXPECT_THAT(juliet.TakeReceived(),
              HasSubstr("<failed xmlns='urn:xmpp:sm:3'><feature-not-implemented "));
  EXPECT_EQ(engine.stats(0).sm_resume_failed.load(), 0u);  // nothing was looked up
}

TEST(RouterStreamManagementTest, AnotherAccountCannotResumeTheSession) {
  FakeEngine engine(2);
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  juliet.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
  const std::string sm_id = SmIdIn(juliet.TakeReceived());
  engine.DropConnection(juliet.id());
  TestClient romeo(&engine, 1);
  ASSERT_TRUE(romeo.Authenticate("romeo"));
  romeo.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + sm_id + "' h='0'/>");
  EXPECT_THAT(romeo.TakeReceived(), HasSubstr("<item-not-found "));
}

TEST(RouterStreamManagementTest, ExpiredSessionReturnsUnacknowledgedStanzas) {
  RouterLimits limits;
  limits.resume_timeout_ms = 30'000;
  FakeEngine engine(2, limits);
  const ConnectionId cb1 = engine.ConnectBridge(1, "cb1");
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  juliet.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
  engine.Receive(cb1, "<message from='cb1.example.com' to='juliet@example.com/balcony' id='x1'/>");
  engine.DropConnection(juliet.id());
  engine.Receive(cb1, "<message from='cb1.example.com' to='juliet@example.com/balcony' id='x2'/>");
  EXPECT_THAT(engine.connection(cb1).outbox, Not(HasSubstr("type='error'")));
  engine.Tick(20'000);
  EXPECT_THAT(engine.connection(cb1).outbox, Not(HasSubstr("type='error'")));
  engine.Tick(11'000);
  const std::string& out = engine.connection(cb1).outbox;
  EXPECT_THAT(out, HasSubstr("type='error' id='x1'"));
  EXPECT_THAT(out, HasSubstr("type='error' id='x2'"));
  EXPECT_THAT(out, HasSubstr("<recipient-unavailable "));
  // And the route is gone: a new stanza for her bounces at once.
  engine.Receive(cb1, "<message from='cb1.example.com' to='juliet@example.com/balcony' id='x3'/>");
  EXPECT_THAT(engine.connection(cb1).outbox, HasSubstr("type='error' id='x3'"));
}

TEST(RouterStreamManagementTest, CleanCloseReturnsUnacknowledgedStanzas) {
  FakeEngine engine(1);
  const ConnectionId cb1 = engine.ConnectBridge(0, "cb1");
  TestClient juliet(&engine, 0);
  ASSERT_TRUE(juliet.Login("juliet", "balcony"));
  juliet.Send("<enable xmlns='urn:xmpp:sm:3'/>");
  engine.Receive(cb1, "<message from='cb1.example.com' to='juliet@example.com/balcony' id='y1'/>");
  juliet.Send("</stream:stream>");
  EXPECT_THAT(engine.connection(cb1).outbox, HasSubstr("type='error' id='y1'"));
}

}  // namespace
}  // namespace stanzad::router
