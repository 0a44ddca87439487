// LinkAuth: the handshake that authenticates a cluster link before any other frame is
// read (docs/security.md). Pure code: bytes in, bytes out; no sockets, clocks or flags.
//
// Both sides prove that they hold the same secret without sending it: the cluster key
// (32 random bytes every member keeps in <state_dir>/cluster/link_key), or a join token's
// secret (single use, made by `stanzactl cluster token`, known to every member through the
// replicated configuration) for a node asking to join. Three frames, each side's nonce
// making the other side's proof fresh:
//
//   dialler  -> kAuthHello      version (1) = 1 | credential (1: 1 cluster key, 2 join token)
//                               | token id (8, LE; 0 with the cluster key) | node id (8, LE)
//                               | nonce (32) | cluster address (the rest, ≤ 300 bytes)
//   acceptor -> kAuthChallenge  node id (8, LE) | nonce (32) | proof (32)
//   dialler  -> kAuthProof      proof (32)
//   either   -> kAuthRefused    reason (text, ≤ 255 bytes), then the link closes
//
//   transcript        = hello payload | acceptor node id (8, LE) | acceptor nonce
//   (each label below is followed by its terminating NUL byte)
//   acceptor proof    = HMAC-SHA256(secret, "stanzad link v1 acceptor" | transcript)
//   dialler proof     = HMAC-SHA256(secret, "stanzad link v1 dialler" | transcript)
//   key wrap (join)   = HMAC-SHA256(secret, "stanzad link v1 key wrap" | transcript)
//   dialler's key     = HMAC-SHA256(secret, "stanzad link v1 dialler key" | transcript)
//   acceptor's key    = HMAC-SHA256(secret, "stanzad link v1 acceptor key" | transcript)
//
// Without TLS, everything after the handshake is sealed (RecordSealer): the dialler's
// bytes after its proof, the acceptor's after its challenge, each side with its own key,
// in records of ChaCha20-Poly1305 with a counter as nonce:
//
//   record := length (4, big endian: plaintext bytes, 1..kSealedRecordBytesMax)
//             | ciphertext (length) | tag (16); AAD: the length; nonce: 0 (4) | counter (8, LE)
//
// so a peer on the path can neither read nor change nor replay what crosses the link.
//
// The dialler checks the acceptor's proof (it reached a holder of the secret) and, when
// it dialled a known member, that member's node id; the acceptor checks the dialler's
// proof before it reads anything else. A join token link learns the cluster key from the
// leader's answer, XORed with the key wrap (a one-time pad: fresh nonces every link).
// Proofs are compared in constant time. Decoding never trusts its input.
//
// Thread safety: none needed; value types and a state machine owned by one link.
#ifndef STANZAD_CLUSTER_NODE_LINK_AUTH_H_
#define STANZAD_CLUSTER_NODE_LINK_AUTH_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cluster/raft/types.h"

namespace stanzad::cluster {

inline constexpr size_t kClusterKeyBytes = 32;
inline constexpr size_t kJoinTokenSecretBytes = 16;
inline constexpr size_t kAuthNonceBytes = 32;
inline constexpr size_t kAuthProofBytes = 32;
// No authentication frame is longer; a longer one before authentication is an attack.
inline constexpr size_t kAuthFrameBytesMax = 512;

enum class LinkCredential : uint8_t { kClusterKey = 1, kJoinToken = 2 };

struct AuthHello {
  LinkCredential credential = LinkCredential::kClusterKey;
  uint64_t token_id = 0;  // with kJoinToken
  raft::NodeId node = raft::kNoNode;
  std::string nonce;  // kAuthNonceBytes
  std::string address;
};
std::string EncodeAuthHello(const AuthHello& hello);
absl::StatusOr<AuthHello> DecodeAuthHello(std::string_view payload);

struct AuthChallenge {
  raft::NodeId node = raft::kNoNode;
  std::string nonce;  // kAuthNonceBytes
  std::string proof;  // kAuthProofBytes
};
std::string EncodeAuthChallenge(const AuthChallenge& challenge);
absl::StatusOr<AuthChallenge> DecodeAuthChallenge(std::string_view payload);

// The three values both sides derive from the secret and the transcript.
struct AuthProofs {
  std::string acceptor;
  std::string dialler;
  std::string key_wrap;
  std::string dialler_key;   // seals what the dialler sends
  std::string acceptor_key;  // seals what the acceptor sends
};
// `hello_payload` exactly as sent (EncodeAuthHello's output).
AuthProofs DeriveAuthProofs(std::string_view secret, std::string_view hello_payload,
                            raft::NodeId acceptor, std::string_view acceptor_nonce);

inline constexpr size_t kSealedRecordBytesMax = 64 << 10;
inline constexpr size_t kSealTagBytes = 16;

// One direction of a sealed link: plaintext in, records out.
class RecordSealer {
 public:
  // REQUIRES: key.size() == 32 (CHECKed).
  explicit RecordSealer(std::string key);
  // Appends `plaintext` to *records, as records of at most kSealedRecordBytesMax.
  void Seal(std::string_view plaintext, std::string* records);

 private:
  std::string key_;
  uint64_t counter_ = 0;
};

// The other end of that direction: records in, plaintext out.
class RecordOpener {
 public:
  // REQUIRES: key.size() == 32 (CHECKed).
  explicit RecordOpener(std::string key);
  // Opens every complete record at the front of *records (erasing it) and appends its
  // plaintext to *plaintext. DataLoss for a record that does not authenticate (changed,
  // replayed, reordered or sealed with another key) or has a bad length: the link ends.
  absl::Status Open(std::string* records, std::string* plaintext);

 private:
  std::string key_;
  uint64_t counter_ = 0;
};

// Constant-time equality of two byte strings (false when the sizes differ).
bool EqualInConstantTime(std::string_view a, std::string_view b);

// `size` random bytes from the kernel (getentropy); CHECKs that it got them.
std::string RandomBytes(size_t size);

// a XOR b. REQUIRES: a.size() == b.size().
std::string XorBytes(std::string_view a, std::string_view b);

// A join token as the operator sees it: "<token id, 16 hex digits>.<secret, 32 hex>".
struct JoinToken {
  uint64_t id = 0;
  std::string secret;  // kJoinTokenSecretBytes
};
std::string FormatJoinToken(const JoinToken& token);
// InvalidArgument naming the expected form for anything else.
absl::StatusOr<JoinToken> ParseJoinToken(std::string_view text);

}  // namespace stanzad::cluster

#endif  // STANZAD_CLUSTER_NODE_LINK_AUTH_H_
