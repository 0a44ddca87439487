// The link handshake as a state machine: a dialler and an acceptor talking through
// memory, and each side fed what a broken or hostile peer would send. (The encodings
// and proofs themselves: link_auth_test.cc; the handshake over sockets, with its
// bounds: peer_transport_test.cc.)
#include "cluster/node/link_handshake.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "cluster/node/frames.h"
#include "cluster/node/link_auth.h"

namespace stanzad::cluster {
namespace {

using State = LinkHandshake::State;

constexpr raft::NodeId kDiallerId = 11;
constexpr raft::NodeId kAcceptorId = 22;
const std::string kKey(kClusterKeyBytes, 'k');
const std::string kOtherKey(kClusterKeyBytes, 'o');
const std::string kDiallerNonce(kAuthNonceBytes, 'd');
const std::string kAcceptorNonce(kAuthNonceBytes, 'a');
const JoinToken kToken{0x1234, std::string(kJoinTokenSecretBytes, 's')};
constexpr std::string_view kUpgrade = "upgrade both nodes to the same stanzad version";

DiallerOptions DiallWithKey(std::string key = kKey) {
  DiallerOptions options;
  options.self = {kDiallerId, "10.0.0.1:5279"};
  options.cluster_key = std::move(key);
  options.address = "10.0.0.2:5279";
  options.nonce = kDiallerNonce;
  return options;
}

DiallerOptions DiallWithToken(JoinToken token = kToken) {
  DiallerOptions options = DiallWithKey("");
  options.token = std::move(token);
  return options;
}

AcceptorOptions AcceptWithKey(std::string key = kKey) {
  AcceptorOptions options;
  options.self = kAcceptorId;
  options.cluster_key = std::move(key);
  options.token_lookup = [](uint64_t id) -> std::optional<std::string> {
    if (id == kToken.id) return kToken.secret;
    return std::nullopt;
  };
  options.nonce = kAcceptorNonce;
  return options;
}

// Every frame a side has to send, taken off its output.
std::vector<Frame> FramesOf(LinkHandshake& side) {
  std::string bytes;
  side.TakeOutput(&bytes);
  std::vector<Frame> frames;
  while (true) {
    absl::StatusOr<std::optional<Frame>> frame = TakeFrame(&bytes, kAuthFrameBytesMax);
    EXPECT_TRUE(frame.ok()) << frame.status();
    if (!frame.ok() || !frame->has_value()) break;
    frames.push_back(std::move(**frame));
  }
  EXPECT_TRUE(bytes.empty()) << "only whole frames";
  return frames;
}

Frame FrameOf(FrameType type, std::string payload) { return Frame{type, std::move(payload)}; }

// The peer checks each side's driver answers, and who they were asked about.
struct Checks {
  absl::Status dialler_verdict;
  absl::Status acceptor_verdict;
  std::vector<LinkPeer> dialler_asked, acceptor_asked;
};

// Delivers frames both ways until neither side has more to say; the sealers each side
// handed out are kept, as a driver keeps them.
struct Conversation {
  Conversation(DiallerOptions dialler_options, AcceptorOptions acceptor_options, Checks given)
      : dialler(LinkHandshake::Dialler(std::move(dialler_options))),
        acceptor(LinkHandshake::Acceptor(std::move(acceptor_options))),
        checks(std::move(given)) {}

  LinkHandshake dialler;
  LinkHandshake acceptor;
  Checks checks;
  std::optional<RecordSealer> dialler_sealer, acceptor_sealer;
  bool acceptor_sealed_before_authenticated = false;

  void Run() {
    for (int turn = 0; turn < 8; ++turn) {
      bool moved = false;
      moved |= Deliver(dialler, acceptor, checks.acceptor_verdict, &checks.acceptor_asked);
      TakeSealers();
      moved |= Deliver(acceptor, dialler, checks.dialler_verdict, &checks.dialler_asked);
      TakeSealers();
      if (!moved) return;
    }
  }

  static bool Deliver(LinkHandshake& from, LinkHandshake& to, const absl::Status& verdict,
                      std::vector<LinkPeer>* asked) {
    const std::vector<Frame> frames = FramesOf(from);
    for (const Frame& frame : frames) {
      if (to.state() != State::kHandshaking) break;
      to.Step(frame);
      if (to.state() == State::kCheckingPeer) {
        asked->push_back(to.peer());
        to.PeerChecked(verdict);
      }
    }
    return !frames.empty();
  }

  void TakeSealers() {
    if (std::optional<RecordSealer> sealer = dialler.TakeSealer())
      dialler_sealer = std::move(sealer);
    if (std::optional<RecordSealer> sealer = acceptor.TakeSealer()) {
      acceptor_sealer = std::move(sealer);
      acceptor_sealed_before_authenticated = acceptor.state() != State::kAuthenticated;
    }
  }
};

Conversation Talk(DiallerOptions dialler, AcceptorOptions acceptor, Checks checks = {}) {
  Conversation conversation(std::move(dialler), std::move(acceptor), std::move(checks));
  conversation.Run();
  return conversation;
}

void ExpectRefused(const LinkHandshake& side, std::string_view reason, std::string_view fix) {
  ASSERT_EQ(side.state(), State::kRefused);
  EXPECT_EQ(side.refusal().reason, reason);
  EXPECT_EQ(side.refusal().fix, fix);
  EXPECT_TRUE(side.refusal().tell_peer);
}

// An acceptor that has taken a valid hello and sent its challenge; *challenge is it.
LinkHandshake ChallengedAcceptor(AcceptorOptions options, std::string hello_payload,
                                 Frame* challenge = nullptr) {
  LinkHandshake acceptor = LinkHandshake::Acceptor(std::move(options));
  acceptor.Step(FrameOf(FrameType::kAuthHello, std::move(hello_payload)));
  EXPECT_EQ(acceptor.state(), State::kHandshaking);
  std::vector<Frame> frames = FramesOf(acceptor);
  EXPECT_EQ(frames.size(), 1u);
  if (challenge != nullptr && !frames.empty()) *challenge = frames[0];
  return acceptor;
}

std::string HelloPayload(const DiallerOptions& options) {
  LinkHandshake dialler = LinkHandshake::Dialler(options);
  std::vector<Frame> frames = FramesOf(dialler);
  EXPECT_EQ(frames.size(), 1u);
  return frames.empty() ? "" : frames[0].payload;
}

TEST(LinkHandshakeTest, TheClusterKeyAuthenticatesBothSidesWithTheWireBytesOfLinkAuth) {
  LinkHandshake dialler = LinkHandshake::Dialler(DiallWithKey());
  LinkHandshake acceptor = LinkHandshake::Acceptor(AcceptWithKey());
  // The hello, exactly as link_auth.h specifies it.
  std::string sent;
  dialler.TakeOutput(&sent);
  AuthHello hello;
  hello.node = kDiallerId;
  hello.nonce = kDiallerNonce;
  hello.address = "10.0.0.1:5279";
  std::string expected;
  AppendFrame(FrameType::kAuthHello, EncodeAuthHello(hello), &expected);
  ASSERT_EQ(sent, expected);
  EXPECT_FALSE(dialler.TakeSealer()) << "the dialler seals only after its proof";

  acceptor.Step(FrameOf(FrameType::kAuthHello, EncodeAuthHello(hello)));
  ASSERT_EQ(acceptor.state(), State::kHandshaking);
  EXPECT_EQ(acceptor.announced_address(), "10.0.0.1:5279");
  const AuthProofs proofs =
      DeriveAuthProofs(kKey, EncodeAuthHello(hello), kAcceptorId, kAcceptorNonce);
  sent.clear();
  acceptor.TakeOutput(&sent);
  expected.clear();
  AppendFrame(FrameType::kAuthChallenge,
              EncodeAuthChallenge({kAcceptorId, kAcceptorNonce, proofs.acceptor, std::nullopt}),
              &expected);
  ASSERT_EQ(sent, expected);
  std::optional<RecordSealer> acceptor_sealer = acceptor.TakeSealer();
  ASSERT_TRUE(acceptor_sealer) << "what the acceptor sends after its challenge is sealed";
  EXPECT_FALSE(acceptor.TakeSealer()) << "once";
  EXPECT_FALSE(acceptor.TakeOpener()) << "nothing to open before the proof";

  dialler.Step(FrameOf(FrameType::kAuthChallenge, sent.substr(5)));
  ASSERT_EQ(dialler.state(), State::kCheckingPeer);
  EXPECT_EQ(dialler.peer().id, kAcceptorId);
  EXPECT_EQ(dialler.peer().join_token, 0u);
  sent.clear();
  dialler.TakeOutput(&sent);
  EXPECT_TRUE(sent.empty()) << "no proof before the driver's check";
  dialler.PeerChecked(absl::OkStatus());
  ASSERT_EQ(dialler.state(), State::kAuthenticated);
  dialler.TakeOutput(&sent);
  expected.clear();
  AppendFrame(FrameType::kAuthProof, proofs.dialler, &expected);
  ASSERT_EQ(sent, expected);
  EXPECT_EQ(dialler.authenticated().peer, kAcceptorId);
  EXPECT_EQ(dialler.authenticated().join_token, 0u);
  EXPECT_EQ(dialler.authenticated().key_wrap, "") << "a key wrap only for join links";

  acceptor.Step(FrameOf(FrameType::kAuthProof, proofs.dialler));
  ASSERT_EQ(acceptor.state(), State::kCheckingPeer);
  EXPECT_EQ(acceptor.peer().id, kDiallerId);
  acceptor.PeerChecked(absl::OkStatus());
  ASSERT_EQ(acceptor.state(), State::kAuthenticated);
  EXPECT_EQ(acceptor.authenticated().peer, kDiallerId);
  sent.clear();
  acceptor.TakeOutput(&sent);
  EXPECT_TRUE(sent.empty()) << "the acceptor answers a proof with nothing";

  // Sealed both ways, each side with its own key.
  std::optional<RecordSealer> dialler_sealer = dialler.TakeSealer();
  std::optional<RecordOpener> dialler_opener = dialler.TakeOpener();
  std::optional<RecordOpener> acceptor_opener = acceptor.TakeOpener();
  ASSERT_TRUE(dialler_sealer && dialler_opener && acceptor_opener);
  std::string records, plaintext;
  dialler_sealer->Seal("to the acceptor", &records);
  std::string copy = records;
  ASSERT_TRUE(RecordOpener(proofs.dialler_key).Open(&copy, &plaintext).ok())
      << "keyed as link_auth.h says";
  plaintext.clear();
  ASSERT_TRUE(acceptor_opener->Open(&records, &plaintext).ok());
  EXPECT_EQ(plaintext, "to the acceptor");
  acceptor_sealer->Seal("to the dialler", &records);
  copy = records;
  plaintext.clear();
  ASSERT_TRUE(RecordOpener(proofs.acceptor_key).Open(&copy, &plaintext).ok())
      << "keyed as link_auth.h says";
  plaintext.clear();
  ASSERT_TRUE(dialler_opener->Open(&records, &plaintext).ok());
  EXPECT_EQ(plaintext, "to the dialler");
}

// The cipher: AES-256-GCM only when the dialler offers it and the acceptor takes it;
// ChaCha20-Poly1305 otherwise, with a version 1 hello when nothing more is offered (what
// an older stanzad sends and takes). Records cross either way.
TEST(LinkHandshakeTest, TheCipherIsAesGcmOnlyWhenOfferedAndAccepted) {
  struct Case {
    bool offer, accept;
    LinkCipher expected;
  };
  for (const Case& c :
       {Case{true, true, LinkCipher::kAes256Gcm}, Case{true, false, LinkCipher::kChaCha20Poly1305},
        Case{false, true, LinkCipher::kChaCha20Poly1305},
        Case{false, false, LinkCipher::kChaCha20Poly1305}}) {
    SCOPED_TRACE(testing::Message() << "offer " << c.offer << " accept " << c.accept);
    DiallerOptions dial = DiallWithKey();
    dial.offer_aes_gcm = c.offer;
    AcceptorOptions accept = AcceptWithKey();
    accept.accept_aes_gcm = c.accept;
    EXPECT_EQ(HelloPayload(dial)[0], c.offer ? 2 : 1);
    Conversation talk = Talk(dial, accept);
    ASSERT_EQ(talk.dialler.state(), State::kAuthenticated);
    ASSERT_EQ(talk.acceptor.state(), State::kAuthenticated);
    EXPECT_EQ(talk.dialler.cipher(), c.expected);
    EXPECT_EQ(talk.acceptor.cipher(), c.expected);
    std::optional<RecordOpener> dialler_opener = talk.dialler.TakeOpener();
    std::optional<RecordOpener> acceptor_opener = talk.acceptor.TakeOpener();
    ASSERT_TRUE(talk.dialler_sealer && talk.acceptor_sealer && dialler_opener && acceptor_opener);
    EXPECT_EQ(talk.dialler_sealer->cipher(), c.expected);
    EXPECT_EQ(acceptor_opener->cipher(), c.expected);
    std::string records, plaintext;
    talk.dialler_sealer->Seal("up", &records);
    ASSERT_TRUE(acceptor_opener->Open(&records, &plaintext).ok());
    EXPECT_EQ(plaintext, "up");
    plaintext.clear();
    talk.acceptor_sealer->Seal("down", &records);
    ASSERT_TRUE(dialler_opener->Open(&records, &plaintext).ok());
    EXPECT_EQ(plaintext, "down");
  }
}

// A peer on the path that changes the acceptor's choice (or the dialler's offer) makes
// the proofs disagree: the link is refused, never sealed with another cipher than both
// chose.
TEST(LinkHandshakeTest, AChangedChoiceOfCipherRefusesTheLink) {
  DiallerOptions dial = DiallWithKey();
  dial.offer_aes_gcm = true;
  AcceptorOptions accept = AcceptWithKey();
  accept.accept_aes_gcm = true;
  Frame challenge;
  LinkHandshake acceptor = ChallengedAcceptor(accept, HelloPayload(dial), &challenge);
  ASSERT_EQ(challenge.payload.back(), static_cast<char>(LinkCipher::kAes256Gcm));
  challenge.payload.back() = static_cast<char>(LinkCipher::kChaCha20Poly1305);
  LinkHandshake dialler = LinkHandshake::Dialler(dial);
  FramesOf(dialler);
  dialler.Step(challenge);
  ExpectRefused(dialler, "the peer does not hold this cluster's key",
                "check the address: it is not a member of this node's cluster");

  // The offer taken out of the hello on the way: the acceptor answers without AES, and
  // the dialler's proof (over the hello it sent) no longer matches.
  LinkHandshake honest = LinkHandshake::Dialler(dial);
  std::string hello = FramesOf(honest)[0].payload;
  hello[0] = 1;  // as a version 1 hello: the cipher byte becomes part of the address
  hello.erase(2 + 8 + 8 + kAuthNonceBytes, 1);
  Frame downgraded;
  LinkHandshake fooled = ChallengedAcceptor(accept, hello, &downgraded);
  honest.Step(FrameOf(FrameType::kAuthChallenge, downgraded.payload));
  EXPECT_EQ(honest.state(), State::kRefused) << "a challenge without the cipher byte";
}

TEST(LinkHandshakeTest, SealedRecordsCrossAnAuthenticatedLinkBothWays) {
  Conversation talk = Talk(DiallWithKey(), AcceptWithKey());
  ASSERT_EQ(talk.dialler.state(), State::kAuthenticated);
  ASSERT_EQ(talk.acceptor.state(), State::kAuthenticated);
  EXPECT_TRUE(talk.acceptor_sealed_before_authenticated);
  ASSERT_TRUE(talk.dialler_sealer && talk.acceptor_sealer);
  std::optional<RecordOpener> dialler_opener = talk.dialler.TakeOpener();
  std::optional<RecordOpener> acceptor_opener = talk.acceptor.TakeOpener();
  ASSERT_TRUE(dialler_opener && acceptor_opener);
  EXPECT_FALSE(talk.dialler.TakeOpener()) << "once";
  for (int round = 0; round < 3; ++round) {
    std::string records, plaintext;
    talk.dialler_sealer->Seal("up " + std::to_string(round), &records);
    EXPECT_EQ(records.find("up"), std::string::npos) << "not in the clear";
    ASSERT_TRUE(acceptor_opener->Open(&records, &plaintext).ok());
    EXPECT_EQ(plaintext, "up " + std::to_string(round));
    plaintext.clear();
    talk.acceptor_sealer->Seal("down " + std::to_string(round), &records);
    ASSERT_TRUE(dialler_opener->Open(&records, &plaintext).ok());
    EXPECT_EQ(plaintext, "down " + std::to_string(round));
  }
  // A side cannot open its own records: the two directions have different keys.
  std::string own, plaintext;
  talk.dialler_sealer->Seal("echo", &own);
  EXPECT_FALSE(dialler_opener->Open(&own, &plaintext).ok());
  // The peer checks were asked about who each side proved to be.
  ASSERT_EQ(talk.checks.dialler_asked.size(), 1u);
  EXPECT_EQ(talk.checks.dialler_asked[0].id, kAcceptorId);
  ASSERT_EQ(talk.checks.acceptor_asked.size(), 1u);
  EXPECT_EQ(talk.checks.acceptor_asked[0].id, kDiallerId);
  EXPECT_EQ(talk.checks.acceptor_asked[0].join_token, 0u);
}

TEST(LinkHandshakeTest, AWrongClusterKeyIsRefusedByEitherSide) {
  // The dialler finds out first: the acceptor's proof is not made with its key.
  Conversation talk = Talk(DiallWithKey(kKey), AcceptWithKey(kOtherKey));
  ExpectRefused(talk.dialler, "the peer does not hold this cluster's key",
                "check the address: it is not a member of this node's cluster");
  EXPECT_FALSE(talk.dialler_sealer) << "its refusal goes in the clear";
  EXPECT_EQ(talk.acceptor.state(), State::kHandshaking) << "it is told by the driver, not us";
  EXPECT_TRUE(talk.checks.dialler_asked.empty());

  // A dialler that sends a proof made with another key anyway: the acceptor refuses,
  // after its challenge (so its refusal is sealed).
  const std::string hello = HelloPayload(DiallWithKey(kOtherKey));
  LinkHandshake acceptor = ChallengedAcceptor(AcceptWithKey(kKey), hello);
  EXPECT_TRUE(acceptor.TakeSealer());
  acceptor.Step(FrameOf(FrameType::kAuthProof,
                        DeriveAuthProofs(kOtherKey, hello, kAcceptorId, kAcceptorNonce).dialler));
  ExpectRefused(acceptor, "wrong cluster key", "the node is not a member of this cluster");
  // A proof of the wrong size, or none at all.
  LinkHandshake empty = ChallengedAcceptor(AcceptWithKey(kKey), hello);
  empty.Step(FrameOf(FrameType::kAuthProof, ""));
  ExpectRefused(empty, "wrong cluster key", "the node is not a member of this cluster");
}

TEST(LinkHandshakeTest, AJoinTokenAuthenticatesAJoiningNodeAndBothSidesShareTheKeyWrap) {
  // The acceptor needs no cluster key for a token link... and a joining node has none.
  Conversation talk = Talk(DiallWithToken(), AcceptWithKey(kKey));
  ASSERT_EQ(talk.dialler.state(), State::kAuthenticated);
  ASSERT_EQ(talk.acceptor.state(), State::kAuthenticated);
  EXPECT_EQ(talk.dialler.authenticated().join_token, kToken.id);
  EXPECT_EQ(talk.acceptor.authenticated().join_token, kToken.id);
  EXPECT_EQ(talk.acceptor.authenticated().peer, kDiallerId);
  const std::string wrap = talk.dialler.authenticated().key_wrap;
  EXPECT_EQ(wrap.size(), kClusterKeyBytes);
  EXPECT_EQ(talk.acceptor.authenticated().key_wrap, wrap);
  EXPECT_EQ(wrap, DeriveAuthProofs(kToken.secret, HelloPayload(DiallWithToken()), kAcceptorId,
                                   kAcceptorNonce)
                      .key_wrap);
  ASSERT_EQ(talk.checks.acceptor_asked.size(), 1u);
  EXPECT_EQ(talk.checks.acceptor_asked[0].join_token, kToken.id);
  ASSERT_EQ(talk.checks.dialler_asked.size(), 1u);
  EXPECT_EQ(talk.checks.dialler_asked[0].join_token, kToken.id);

  Conversation keyless = Talk(DiallWithToken(), AcceptWithKey(""));
  EXPECT_EQ(keyless.acceptor.state(), State::kAuthenticated);
}

TEST(LinkHandshakeTest, AnUnknownOrWrongJoinTokenIsRefused) {
  const std::string_view new_one = "make a new one on a member: stanzactl cluster token";
  Conversation unknown = Talk(DiallWithToken({0x9999, kToken.secret}), AcceptWithKey());
  ExpectRefused(unknown.acceptor, "the join token is unknown, used or expired", new_one);
  EXPECT_FALSE(unknown.acceptor_sealer) << "refused before its challenge: in the clear";
  AcceptorOptions no_lookup = AcceptWithKey();
  no_lookup.token_lookup = nullptr;
  Conversation nobody = Talk(DiallWithToken(), std::move(no_lookup));
  ExpectRefused(nobody.acceptor, "the join token is unknown, used or expired", new_one);

  // The right id with another secret: the dialler sees the acceptor does not know it...
  Conversation wrong =
      Talk(DiallWithToken({kToken.id, std::string(kJoinTokenSecretBytes, 'x')}), AcceptWithKey());
  ExpectRefused(wrong.dialler, "the peer does not know this join token",
                "check the address: it is not a member of this node's cluster");
  // ...and the acceptor, a proof made with it.
  const std::string hello =
      HelloPayload(DiallWithToken({kToken.id, std::string(kJoinTokenSecretBytes, 'x')}));
  LinkHandshake acceptor = ChallengedAcceptor(AcceptWithKey(), hello);
  acceptor.Step(FrameOf(
      FrameType::kAuthProof,
      DeriveAuthProofs(std::string(kJoinTokenSecretBytes, 'x'), hello, kAcceptorId, kAcceptorNonce)
          .dialler));
  ExpectRefused(acceptor, "wrong join token secret",
                "make a new token on a member: stanzactl cluster token");
}

TEST(LinkHandshakeTest, AnAcceptorWithoutAClusterKeyRefusesKeyLinks) {
  Conversation talk = Talk(DiallWithKey(), AcceptWithKey(""));
  ExpectRefused(talk.acceptor, "this node is not in a cluster (it has no cluster key)",
                "join it to the cluster: stanzactl cluster join HOST --token=TOKEN");
  EXPECT_EQ(talk.dialler.state(), State::kHandshaking);
}

TEST(LinkHandshakeTest, ANodesOwnIdComingBackIsRefused) {
  // A hello with the acceptor's own id: its proof would be reflected back at it.
  DiallerOptions mirror = DiallWithKey();
  mirror.self.id = kAcceptorId;
  Conversation talk = Talk(std::move(mirror), AcceptWithKey());
  ExpectRefused(talk.acceptor, "a link from this node's own id (reflected?)", kUpgrade);
  EXPECT_FALSE(talk.acceptor.announced_address()) << "a refused hello is not taken";
  // A challenge with the dialler's own id.
  LinkHandshake dialler = LinkHandshake::Dialler(DiallWithKey());
  FramesOf(dialler);
  dialler.Step(FrameOf(FrameType::kAuthChallenge,
                       EncodeAuthChallenge({kDiallerId, kAcceptorNonce,
                                            std::string(kAuthProofBytes, 'p'), std::nullopt})));
  ExpectRefused(dialler, "unexpected challenge", kUpgrade);
  // Its own hello sent back to it.
  LinkHandshake reflected = LinkHandshake::Dialler(DiallWithKey());
  reflected.Step(FramesOf(reflected).at(0));
  ExpectRefused(reflected, "a link from this node's own id (reflected?)", kUpgrade);
}

TEST(LinkHandshakeTest, FramesOutOfTurnAreRefused) {
  const std::string hello = HelloPayload(DiallWithKey());
  {  // a hello to a dialler
    LinkHandshake dialler = LinkHandshake::Dialler(DiallWithKey());
    AuthHello other;
    other.node = 99;
    other.nonce = kAcceptorNonce;
    dialler.Step(FrameOf(FrameType::kAuthHello, EncodeAuthHello(other)));
    ExpectRefused(dialler, "unexpected hello", kUpgrade);
    std::string sent;
    dialler.TakeOutput(&sent);
    EXPECT_EQ(sent, "") << "refused: its unsent hello is dropped, nothing else is said";
  }
  {  // a proof before any challenge
    LinkHandshake acceptor = LinkHandshake::Acceptor(AcceptWithKey());
    acceptor.Step(FrameOf(FrameType::kAuthProof, std::string(kAuthProofBytes, 'p')));
    ExpectRefused(acceptor, "unexpected proof", kUpgrade);
  }
  {  // a proof to a dialler
    LinkHandshake dialler = LinkHandshake::Dialler(DiallWithKey());
    dialler.Step(FrameOf(FrameType::kAuthProof, std::string(kAuthProofBytes, 'p')));
    ExpectRefused(dialler, "unexpected proof", kUpgrade);
  }
  {  // a second hello
    LinkHandshake acceptor = ChallengedAcceptor(AcceptWithKey(), hello);
    acceptor.Step(FrameOf(FrameType::kAuthHello, hello));
    ExpectRefused(acceptor, "unexpected hello", kUpgrade);
  }
  {  // a challenge to an acceptor
    LinkHandshake acceptor = LinkHandshake::Acceptor(AcceptWithKey());
    acceptor.Step(FrameOf(FrameType::kAuthChallenge,
                          EncodeAuthChallenge({kDiallerId, kDiallerNonce,
                                               std::string(kAuthProofBytes, 'p'), std::nullopt})));
    ExpectRefused(acceptor, "unexpected challenge", kUpgrade);
  }
  // Any other frame before authentication, on either side, before or after the hello.
  for (int type = 1; type <= static_cast<int>(kLastFrameType); ++type) {
    if (IsHandshakeFrame(static_cast<FrameType>(type))) continue;
    const Frame frame = FrameOf(static_cast<FrameType>(type), "payload");
    LinkHandshake acceptor = LinkHandshake::Acceptor(AcceptWithKey());
    acceptor.Step(frame);
    ExpectRefused(acceptor, "a frame before authentication", kUpgrade);
    LinkHandshake challenged = ChallengedAcceptor(AcceptWithKey(), hello);
    challenged.Step(frame);
    ExpectRefused(challenged, "a frame before authentication", kUpgrade);
    LinkHandshake dialler = LinkHandshake::Dialler(DiallWithKey());
    dialler.Step(frame);
    ExpectRefused(dialler, "a frame before authentication", kUpgrade);
  }
  // A stanzad from before authentication.
  LinkHandshake acceptor = LinkHandshake::Acceptor(AcceptWithKey());
  acceptor.Step(FrameOf(FrameType::kLegacyHello, "old"));
  ExpectRefused(acceptor, "the peer runs a stanzad from before cluster links were authenticated",
                kUpgrade);
}

TEST(LinkHandshakeTest, ADiallerThatReachesAnotherNodeThanTheMemberItMeantRefuses) {
  DiallerOptions to_seven = DiallWithKey();
  to_seven.expected_peer = 7;
  Conversation talk = Talk(std::move(to_seven), AcceptWithKey());
  ExpectRefused(talk.dialler, "reached node 22 at 10.0.0.2:5279, not the member 7",
                "a node was reset at that address; remove the old member (cluster remove)");
  EXPECT_TRUE(talk.checks.dialler_asked.empty()) << "refused before the peer check";
  DiallerOptions to_acceptor = DiallWithKey();
  to_acceptor.expected_peer = kAcceptorId;
  EXPECT_EQ(Talk(std::move(to_acceptor), AcceptWithKey()).dialler.state(), State::kAuthenticated);
}

TEST(LinkHandshakeTest, APeerCheckThatSaysNoRefusesWithItsMessage) {
  Checks acceptor_says_no;
  acceptor_says_no.acceptor_verdict = absl::PermissionDeniedError("node 11 is not a member");
  Conversation refused = Talk(DiallWithKey(), AcceptWithKey(), acceptor_says_no);
  ExpectRefused(refused.acceptor, "node 11 is not a member", "");
  ASSERT_EQ(refused.checks.acceptor_asked.size(), 1u);
  EXPECT_EQ(refused.checks.acceptor_asked[0].id, kDiallerId);
  EXPECT_FALSE(refused.acceptor.TakeOpener());
  // The dialler had sent its proof: it is authenticated until the (sealed) refusal comes.
  EXPECT_EQ(refused.dialler.state(), State::kAuthenticated);

  Checks dialler_says_no;
  dialler_says_no.dialler_verdict = absl::PermissionDeniedError("certificate of another node");
  Conversation dialler = Talk(DiallWithKey(), AcceptWithKey(), dialler_says_no);
  ExpectRefused(dialler.dialler, "certificate of another node", "");
  EXPECT_FALSE(dialler.dialler_sealer) << "no proof, no sealing";
  EXPECT_EQ(dialler.acceptor.state(), State::kHandshaking) << "it never got a proof";
}

TEST(LinkHandshakeTest, BadHandshakeFramesAreRefusedWithWhatWasWrong) {
  {
    LinkHandshake acceptor = LinkHandshake::Acceptor(AcceptWithKey());
    acceptor.Step(FrameOf(FrameType::kAuthHello, "\x01"));
    ExpectRefused(acceptor, "bad authentication frame: short hello", kUpgrade);
  }
  {
    std::string future = HelloPayload(DiallWithKey());
    future[0] = 3;  // (2 is the hello that offers ciphers)
    LinkHandshake acceptor = LinkHandshake::Acceptor(AcceptWithKey());
    acceptor.Step(FrameOf(FrameType::kAuthHello, future));
    ExpectRefused(acceptor, "bad authentication frame: unknown version (a newer stanzad?)",
                  kUpgrade);
  }
  {  // a bad hello to a dialler: what was wrong comes before that it was unexpected
    LinkHandshake dialler = LinkHandshake::Dialler(DiallWithKey());
    dialler.Step(FrameOf(FrameType::kAuthHello, ""));
    ExpectRefused(dialler, "bad authentication frame: short hello", kUpgrade);
  }
  for (const std::string& payload :
       {std::string(), std::string(8 + kAuthNonceBytes + kAuthProofBytes - 1, 'x'),
        std::string(8 + kAuthNonceBytes + kAuthProofBytes + 1, 'x')}) {
    LinkHandshake dialler = LinkHandshake::Dialler(DiallWithKey());
    dialler.Step(FrameOf(FrameType::kAuthChallenge, payload));
    ExpectRefused(dialler, "bad challenge", kUpgrade);
  }
  {  // a bad challenge to an acceptor
    LinkHandshake acceptor = LinkHandshake::Acceptor(AcceptWithKey());
    acceptor.Step(FrameOf(FrameType::kAuthChallenge, "short"));
    ExpectRefused(acceptor, "bad challenge", kUpgrade);
  }
}

TEST(LinkHandshakeTest, APeersRefusalEndsTheHandshakeWithoutAnAnswer) {
  LinkHandshake dialler = LinkHandshake::Dialler(DiallWithKey());
  FramesOf(dialler);
  dialler.Step(FrameOf(FrameType::kAuthRefused, std::string(300, 'r')));
  ASSERT_EQ(dialler.state(), State::kRefused);
  EXPECT_FALSE(dialler.refusal().tell_peer);
  EXPECT_EQ(dialler.refusal().reason, std::string(kAuthRefusalBytesMax, 'r'));
  EXPECT_EQ(dialler.refusal().fix, "");
  std::string sent;
  dialler.TakeOutput(&sent);
  EXPECT_EQ(sent, "");

  LinkHandshake acceptor = ChallengedAcceptor(AcceptWithKey(), HelloPayload(DiallWithKey()));
  acceptor.Step(FrameOf(FrameType::kAuthRefused, "certificate of another node"));
  ASSERT_EQ(acceptor.state(), State::kRefused);
  EXPECT_FALSE(acceptor.refusal().tell_peer);
  EXPECT_EQ(acceptor.refusal().reason, "certificate of another node");
}

TEST(LinkHandshakeTest, ARefusalFrameCarriesTheFirstBytesOfItsReason) {
  std::string bytes;
  AppendRefusalFrame(std::string(kAuthRefusalBytesMax, 'a') + "tail", &bytes);
  absl::StatusOr<std::optional<Frame>> frame = TakeFrame(&bytes, kAuthFrameBytesMax);
  ASSERT_TRUE(frame.ok() && frame->has_value());
  EXPECT_EQ((*frame)->type, FrameType::kAuthRefused);
  EXPECT_EQ((*frame)->payload, std::string(kAuthRefusalBytesMax, 'a'));
  bytes.clear();
  AppendRefusalFrame("short", &bytes);
  EXPECT_EQ(bytes, std::string("\x00\x00\x00\x06\x0c", 5) + "short");
}

// A refusal's text may come from anyone on the path: what reaches a log or an
// operator's terminal has no control bytes (no forged log lines, no escape sequences).
TEST(LinkHandshakeTest, APeersRefusalTextIsMadePrintable) {
  LinkHandshake dialler = LinkHandshake::Dialler(DiallWithKey());
  FramesOf(dialler);
  dialler.Step(FrameOf(FrameType::kAuthRefused, "ok\nevent=forged \x1b[31mred\xff"));
  ASSERT_EQ(dialler.state(), State::kRefused);
  EXPECT_EQ(dialler.refusal().reason, "ok?event=forged ?[31mred?");
  EXPECT_EQ(PeerRefusalText(std::string(300, 'x')), std::string(kAuthRefusalBytesMax, 'x'));
}

}  // namespace
}  // namespace stanzad::cluster
