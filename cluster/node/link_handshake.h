// LinkHandshake: one link's side of the cluster link handshake (link_auth.h), as a pure
// state machine. Frames in, frames out; no sockets, clock, flags, randomness or logging,
// so every behaviour is a test in memory, and every driver (PeerTransport's poll() loop
// today, a shard's io_uring next: docs/data-links.md, step 3) runs the same one.
//
// A driver makes one per link — Dialler() for a link it opens, Acceptor() for one it
// accepted — and then:
//   1. sends what TakeOutput() gives (the dialler's hello is there from the start);
//   2. feeds every frame the peer sends to Step(), in order, while state() is
//      kHandshaking;
//   3. on kCheckingPeer, decides whether the peer may be who it proved to be and
//      answers PeerChecked() (see "Peer checks" below);
//   4. once TakeSealer() gives a sealer (links without TLS), seals everything it sends
//      after the output taken so far; once the state is kAuthenticated, opens everything
//      the peer sent after the frame just stepped with TakeOpener()'s opener;
//   5. ends on kAuthenticated (authenticated()) or kRefused (refusal()).
// Frames the driver queues for the peer meanwhile wait until kAuthenticated.
//
// Why frames and not bytes: the framing (frames.h), its pre-authentication bound
// (kAuthFrameBytesMax), the byte and time bounds and the detection of a peer that
// speaks TLS when this node does not (or the reverse) belong to the link's reader,
// which both drivers have anyway; and after the handshake's last frame the bytes are
// sealed records the driver opens, so the driver must see where the handshake ends —
// a frame boundary. What the machine answers is frames too (appended to a buffer, in
// the clear: under TLS when the link has it, and never sealed: a sealer starts after
// them, step 4).
//
// Peer checks: an explicit step, not callbacks. Whether a peer is acceptable is the
// driver's policy (with mutual TLS: its certificate's key, which only the driver's TLS
// session knows, against the key bound to its node id; a shard would ask its snapshot of
// the membership): the machine stops at kCheckingPeer with the proven peer() and the
// driver answers, so the machine holds no reference into its driver, a test answers with
// a value, and a driver may answer later (the handshake deadline still bounds it). The
// join token lookup stays a function: it is data the acceptor needs to go on (the
// secret), not a decision, and its refusal text is the machine's.
//
// Without TLS every sealer and opener is used; under TLS the driver drops them (TLS
// already protects the link). The machine does not know whether the link has TLS, so a
// driver cannot end up with a plaintext link by telling it wrongly.
//
// Refusals: refusal() carries the reason (what kAuthRefused carries, cut to
// kAuthRefusalBytesMax by AppendRefusalFrame), the hint for the operator's log, and
// whether to tell the peer at all (not when the peer refused this node). Refusals the
// driver finds itself (bounds, deadlines, framing, TLS) it sends the same way, with
// AppendRefusalFrame, sealed when it holds a sealer.
//
// Thread safety: none; owned by one link.
#ifndef STANZAD_CLUSTER_NODE_LINK_HANDSHAKE_H_
#define STANZAD_CLUSTER_NODE_LINK_HANDSHAKE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "cluster/node/frames.h"
#include "cluster/node/link_auth.h"
#include "cluster/raft/types.h"

namespace stanzad::cluster {

// The reason a kAuthRefused carries is cut to this many bytes.
inline constexpr size_t kAuthRefusalBytesMax = 255;

// Appends the kAuthRefused frame that tells a peer `reason` (its first
// kAuthRefusalBytesMax bytes).
void AppendRefusalFrame(std::string_view reason, std::string* out);

// The reason a peer's kAuthRefused gave, made safe to log and to show an operator (it
// may come from anyone on the path before authentication): its first
// kAuthRefusalBytesMax bytes, each byte outside printable ASCII replaced with '?'.
std::string PeerRefusalText(std::string_view payload);

// This node, as it introduces itself on the links it dials.
struct LinkSelf {
  raft::NodeId id = raft::kNoNode;
  std::string address;  // its cluster address, "IP:PORT"
};

// Who is at the other end of an authenticated link.
struct LinkPeer {
  raft::NodeId id = raft::kNoNode;  // the node id it proved with its credential
  uint64_t join_token = 0;          // not 0: authenticated by this join token, not the key
  std::string identity;             // with TLS: its certificate's key (tls::PublicKeyDigest)
};

// The secret of a join token that is valid now, or nullopt.
using TokenLookup = std::function<std::optional<std::string>(uint64_t token_id)>;

// What a dialler knows before it connects.
struct DiallerOptions {
  LinkSelf self;
  // The join token to authenticate with (a node asking to join), else the cluster key.
  std::optional<JoinToken> token;
  std::string cluster_key;  // REQUIRED (not empty) when there is no token
  // The member it means to reach (its node id), or kNoNode for any holder of the secret.
  raft::NodeId expected_peer = raft::kNoNode;
  std::string address;  // the address it dials, "IP:PORT" (named in refusals)
  std::string nonce;    // kAuthNonceBytes of fresh randomness (RandomBytes)
  // Offer AES-256-GCM besides ChaCha20-Poly1305 (a version 2 hello; link_auth.h). Only
  // where AesGcmIsFastHere(), and not to a peer that refused a version 2 hello (an
  // older stanzad): false sends the version 1 hello every stanzad takes.
  bool offer_aes_gcm = false;
};

// What an acceptor knows when the dialler starts to talk. Make the acceptor when the
// link's first frame arrives, not at accept: a node that is joining gets its cluster key
// after the leader has already dialled it.
struct AcceptorOptions {
  raft::NodeId self = raft::kNoNode;
  std::string cluster_key;   // empty: this node is in no cluster, links with a key are refused
  TokenLookup token_lookup;  // may be null: no token is valid
  std::string nonce;         // kAuthNonceBytes of fresh randomness (RandomBytes)
  // Choose AES-256-GCM when the dialler offers it (only where AesGcmIsFastHere());
  // otherwise ChaCha20-Poly1305.
  bool accept_aes_gcm = false;
};

// The outcome of a handshake that succeeded.
struct LinkAuthenticated {
  raft::NodeId peer = raft::kNoNode;
  uint64_t join_token = 0;  // not 0: a joining node's link, authenticated by this token
  std::string key_wrap;     // with join_token: the pad the cluster key travels under
};

// The outcome of a handshake that failed: the link ends.
struct LinkRefusal {
  std::string reason;     // for kAuthRefused and the log
  std::string fix;        // what the operator can do, for the log; empty when nothing
  bool tell_peer = true;  // false: the peer refused this node (reason is its text)
};

class LinkHandshake {
 public:
  enum class State {
    kHandshaking,    // Step() the peer's next frame
    kCheckingPeer,   // answer PeerChecked() about peer()
    kAuthenticated,  // done: authenticated()
    kRefused,        // done: refusal()
  };

  // REQUIRES: options.nonce.size() == kAuthNonceBytes; a token or a cluster key
  // (CHECKed). TakeOutput() holds the hello.
  static LinkHandshake Dialler(DiallerOptions options);
  // REQUIRES: options.nonce.size() == kAuthNonceBytes (CHECKed).
  static LinkHandshake Acceptor(AcceptorOptions options);

  // One frame the peer sent, any type (a frame that does not belong in the handshake
  // refuses the link). REQUIRES: state() == kHandshaking (CHECKed).
  void Step(const Frame& frame);
  // The driver's verdict on peer(): OK goes on, an error refuses the link with its
  // message as the reason. REQUIRES: state() == kCheckingPeer (CHECKed).
  void PeerChecked(const absl::Status& verdict);

  State state() const { return state_; }
  // Appends the frames to send, in order, and forgets them.
  void TakeOutput(std::string* out);
  // Once, when this side's last frame in the clear is in the output (the acceptor's
  // challenge, the dialler's proof): seals what this side sends from then on.
  std::optional<RecordSealer> TakeSealer();
  // Once, on kAuthenticated: opens what the peer sends after the frame that ended the
  // handshake.
  std::optional<RecordOpener> TakeOpener();

  // With kCheckingPeer and kAuthenticated: who the peer proved to be (no identity: that
  // is the driver's to find).
  LinkPeer peer() const { return LinkPeer{peer_, join_token_, ""}; }
  // Acceptor: the cluster address the dialler's hello announced, once a hello was taken.
  const std::optional<std::string>& announced_address() const { return announced_address_; }
  // The cipher the sealer and opener use (known once the acceptor chose it).
  LinkCipher cipher() const { return cipher_.value_or(LinkCipher::kChaCha20Poly1305); }
  // REQUIRES: state() == kAuthenticated (CHECKed).
  LinkAuthenticated authenticated() const;
  // REQUIRES: state() == kRefused (CHECKed).
  const LinkRefusal& refusal() const;

 private:
  enum class Role { kDialler, kAcceptor };
  LinkHandshake(Role role, raft::NodeId self, std::string nonce);

  void OnHello(const Frame& frame);
  void OnChallenge(const Frame& frame);
  void OnProof(const Frame& frame);
  void Refuse(std::string reason, std::string fix, bool tell_peer = true);

  Role role_;
  raft::NodeId self_;
  std::string nonce_;  // this side's
  State state_ = State::kHandshaking;
  std::string output_;
  // Dialler: what it knows before it dials.
  std::optional<uint64_t> token_id_;
  bool offered_ciphers_ = false;  // its hello was version 2
  bool offered_aes_gcm_ = false;  // ... and offered AES-256-GCM
  raft::NodeId expected_peer_ = raft::kNoNode;
  std::string address_;
  // Acceptor: where the secret comes from.
  std::string cluster_key_;
  TokenLookup token_lookup_;
  bool accept_aes_gcm_ = false;
  bool challenged_ = false;
  std::optional<std::string> announced_address_;
  // The handshake itself: the hello as sent, the secret in use, what both derive.
  std::string hello_payload_;
  std::string secret_;
  AuthProofs proofs_;
  raft::NodeId peer_ = raft::kNoNode;
  uint64_t join_token_ = 0;
  std::optional<LinkCipher> cipher_;  // the acceptor's choice (nullopt: a version 1 hello)
  std::optional<RecordSealer> sealer_;
  std::optional<RecordOpener> opener_;
  LinkRefusal refusal_;
};

}  // namespace stanzad::cluster

#endif  // STANZAD_CLUSTER_NODE_LINK_HANDSHAKE_H_
