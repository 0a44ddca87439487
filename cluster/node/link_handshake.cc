#include "cluster/node/link_handshake.h"

#include <utility>

#include "core/base/check.h"
#include "core/base/concat.h"

namespace stanzad::cluster {
namespace {

// The hint for every refusal that means the two nodes do not speak the same protocol.
constexpr std::string_view kUpgrade = "upgrade both nodes to the same stanzad version";

}  // namespace

void AppendRefusalFrame(std::string_view reason, std::string* out) {
  AppendFrame(FrameType::kAuthRefused, reason.substr(0, kAuthRefusalBytesMax), out);
}

std::string PeerRefusalText(std::string_view payload) {
  std::string text(payload.substr(0, kAuthRefusalBytesMax));
  for (char& c : text) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return text;
}

LinkHandshake::LinkHandshake(Role role, raft::NodeId self, std::string nonce)
    : role_(role), self_(self), nonce_(std::move(nonce)) {
  CHECK_EQ(nonce_.size(), kAuthNonceBytes);
}

LinkHandshake LinkHandshake::Dialler(DiallerOptions options) {
  LinkHandshake handshake(Role::kDialler, options.self.id, std::move(options.nonce));
  if (options.token) {
    handshake.token_id_ = options.token->id;
    handshake.secret_ = std::move(options.token->secret);
  } else {
    CHECK(!options.cluster_key.empty());
    handshake.secret_ = std::move(options.cluster_key);
  }
  handshake.expected_peer_ = options.expected_peer;
  handshake.address_ = std::move(options.address);
  AuthHello hello;
  hello.credential = options.token ? LinkCredential::kJoinToken : LinkCredential::kClusterKey;
  hello.token_id = handshake.token_id_.value_or(0);
  hello.node = options.self.id;
  hello.nonce = handshake.nonce_;
  if (options.offer_aes_gcm) {
    hello.ciphers = CipherBit(LinkCipher::kChaCha20Poly1305) | CipherBit(LinkCipher::kAes256Gcm);
    handshake.offered_ciphers_ = handshake.offered_aes_gcm_ = true;
  }
  hello.address = std::move(options.self.address);
  handshake.hello_payload_ = EncodeAuthHello(hello);
  AppendFrame(FrameType::kAuthHello, handshake.hello_payload_, &handshake.output_);
  return handshake;
}

LinkHandshake LinkHandshake::Acceptor(AcceptorOptions options) {
  LinkHandshake handshake(Role::kAcceptor, options.self, std::move(options.nonce));
  handshake.cluster_key_ = std::move(options.cluster_key);
  handshake.token_lookup_ = std::move(options.token_lookup);
  handshake.accept_aes_gcm_ = options.accept_aes_gcm;
  return handshake;
}

void LinkHandshake::Step(const Frame& frame) {
  CHECK(state_ == State::kHandshaking);
  switch (frame.type) {
    case FrameType::kLegacyHello:
      Refuse("the peer runs a stanzad from before cluster links were authenticated",
             std::string(kUpgrade));
      return;
    case FrameType::kAuthRefused:
      Refuse(PeerRefusalText(frame.payload), "", /*tell_peer=*/false);
      return;
    case FrameType::kAuthHello:
      OnHello(frame);
      return;
    case FrameType::kAuthChallenge:
      OnChallenge(frame);
      return;
    case FrameType::kAuthProof:
      OnProof(frame);
      return;
    default:
      Refuse("a frame before authentication", std::string(kUpgrade));
      return;
  }
}

void LinkHandshake::OnHello(const Frame& frame) {
  absl::StatusOr<AuthHello> hello = DecodeAuthHello(frame.payload);
  if (role_ != Role::kAcceptor || challenged_ || !hello.ok() || hello->node == self_) {
    Refuse(!hello.ok()            ? std::string(hello.status().message())
           : hello->node == self_ ? "a link from this node's own id (reflected?)"
                                  : "unexpected hello",
           std::string(kUpgrade));
    return;
  }
  announced_address_ = hello->address;
  if (hello->credential == LinkCredential::kJoinToken) {
    std::optional<std::string> secret =
        token_lookup_ ? token_lookup_(hello->token_id) : std::nullopt;
    if (!secret) {
      Refuse("the join token is unknown, used or expired",
             "make a new one on a member: stanzactl cluster token");
      return;
    }
    secret_ = std::move(*secret);
    join_token_ = hello->token_id;
  } else if (cluster_key_.empty()) {
    Refuse("this node is not in a cluster (it has no cluster key)",
           "join it to the cluster: stanzactl cluster join HOST --token=TOKEN");
    return;
  } else {
    secret_ = cluster_key_;
  }
  peer_ = hello->node;
  hello_payload_ = frame.payload;
  if (hello->ciphers) {
    const bool aes = accept_aes_gcm_ && (*hello->ciphers & CipherBit(LinkCipher::kAes256Gcm)) != 0;
    cipher_ = aes ? LinkCipher::kAes256Gcm : LinkCipher::kChaCha20Poly1305;
  }
  proofs_ = DeriveAuthProofs(secret_, hello_payload_, self_, nonce_, cipher_);
  challenged_ = true;
  AppendFrame(FrameType::kAuthChallenge,
              EncodeAuthChallenge({self_, nonce_, proofs_.acceptor, cipher_}), &output_);
  // The challenge is this side's last frame in the clear.
  sealer_.emplace(proofs_.acceptor_key, cipher());
}

void LinkHandshake::OnChallenge(const Frame& frame) {
  absl::StatusOr<AuthChallenge> challenge = DecodeAuthChallenge(frame.payload, offered_ciphers_);
  if (role_ != Role::kDialler || !challenge.ok() || challenge->node == self_) {
    Refuse(challenge.ok() ? "unexpected challenge" : "bad challenge", std::string(kUpgrade));
    return;
  }
  if (challenge->cipher == LinkCipher::kAes256Gcm && !offered_aes_gcm_) {
    Refuse("the peer chose a cipher this node did not offer", std::string(kUpgrade));
    return;
  }
  cipher_ = challenge->cipher;
  proofs_ = DeriveAuthProofs(secret_, hello_payload_, challenge->node, challenge->nonce, cipher_);
  if (!EqualInConstantTime(proofs_.acceptor, challenge->proof)) {
    Refuse(token_id_ ? "the peer does not know this join token"
                     : "the peer does not hold this cluster's key",
           "check the address: it is not a member of this node's cluster");
    return;
  }
  if (expected_peer_ != raft::kNoNode && expected_peer_ != challenge->node) {
    Refuse(Concat("reached node ", std::to_string(challenge->node), " at ", address_,
                  ", not the member ", std::to_string(expected_peer_)),
           "a node was reset at that address; remove the old member (cluster remove)");
    return;
  }
  peer_ = challenge->node;
  join_token_ = token_id_.value_or(0);
  state_ = State::kCheckingPeer;
}

void LinkHandshake::OnProof(const Frame& frame) {
  if (role_ != Role::kAcceptor || !challenged_) {
    Refuse("unexpected proof", std::string(kUpgrade));
    return;
  }
  if (!EqualInConstantTime(proofs_.dialler, frame.payload)) {
    Refuse(join_token_ != 0 ? "wrong join token secret" : "wrong cluster key",
           join_token_ != 0 ? "make a new token on a member: stanzactl cluster token"
                            : "the node is not a member of this cluster");
    return;
  }
  state_ = State::kCheckingPeer;
}

void LinkHandshake::PeerChecked(const absl::Status& verdict) {
  CHECK(state_ == State::kCheckingPeer);
  if (!verdict.ok()) {
    Refuse(std::string(verdict.message()), "");
    return;
  }
  if (role_ == Role::kDialler) {
    AppendFrame(FrameType::kAuthProof, proofs_.dialler, &output_);
    sealer_.emplace(proofs_.dialler_key, cipher());  // the proof is its last frame in the clear
    opener_.emplace(proofs_.acceptor_key, cipher());
  } else {
    opener_.emplace(proofs_.dialler_key, cipher());
  }
  state_ = State::kAuthenticated;
}

void LinkHandshake::TakeOutput(std::string* out) {
  out->append(output_);
  output_.clear();
}

std::optional<RecordSealer> LinkHandshake::TakeSealer() { return std::exchange(sealer_, {}); }

std::optional<RecordOpener> LinkHandshake::TakeOpener() {
  if (state_ != State::kAuthenticated) return std::nullopt;
  return std::exchange(opener_, {});
}

LinkAuthenticated LinkHandshake::authenticated() const {
  CHECK(state_ == State::kAuthenticated);
  return LinkAuthenticated{peer_, join_token_, join_token_ != 0 ? proofs_.key_wrap : ""};
}

const LinkRefusal& LinkHandshake::refusal() const {
  CHECK(state_ == State::kRefused);
  return refusal_;
}

void LinkHandshake::Refuse(std::string reason, std::string fix, bool tell_peer) {
  state_ = State::kRefused;
  output_.clear();  // a refusal is all the peer is told from now on
  refusal_ = LinkRefusal{std::move(reason), std::move(fix), tell_peer};
}

}  // namespace stanzad::cluster
