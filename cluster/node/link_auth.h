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
//                or version 2:  the same, with ciphers (1) after the nonce: the record
//                               ciphers the dialler offers (bit 0 ChaCha20-Poly1305, always
//                               set; bit 1 AES-256-GCM; others ignored)
//   acceptor -> kAuthChallenge  node id (8, LE) | nonce (32) | proof (32)
//                               [| cipher (1: 1 ChaCha20-Poly1305, 2 AES-256-GCM): only and
//                               always after a version 2 hello; one the dialler offered]
//   dialler  -> kAuthProof      proof (32)
//   either   -> kAuthRefused    reason (text, ≤ 255 bytes), then the link closes
//
//   transcript        = hello payload | acceptor node id (8, LE) | acceptor nonce
//                       [| cipher (1): after a version 2 hello, the acceptor's choice]
//   (each label below is followed by its terminating NUL byte)
//   acceptor proof    = HMAC-SHA256(secret, "stanzad link v1 acceptor" | transcript)
//   dialler proof     = HMAC-SHA256(secret, "stanzad link v1 dialler" | transcript)
//   key wrap (join)   = HMAC-SHA256(secret, "stanzad link v1 key wrap" | transcript)
//   dialler's key     = HMAC-SHA256(secret, "stanzad link v1 dialler key" | transcript)
//   acceptor's key    = HMAC-SHA256(secret, "stanzad link v1 acceptor key" | transcript)
//
// Without TLS, everything after the handshake is sealed (RecordSealer): the dialler's
// bytes after its proof, the acceptor's after its challenge, each side with its own key,
// in records of the chosen cipher (ChaCha20-Poly1305 after a version 1 hello) with a
// counter as nonce:
//
//   record := length (4, big endian: plaintext bytes, 1..kSealedRecordBytesMax)
//             | ciphertext (length) | tag (16); AAD: the length; nonce: 0 (4) | counter (8, LE)
//
// so a peer on the path can neither read nor change nor replay what crosses the link.
// AES-256-GCM is offered and chosen only by a node whose CPU has AES-NI and PCLMULQDQ
// (AesGcmIsFastHere): there it is constant time and about 3x as fast as ChaCha20-Poly1305
// (docs/benchmarks.md), which matters on the data links that carry the stanzas. The
// choice is in the transcript, so a peer on the path that changes the offer or the choice
// only makes the proofs disagree (the link is refused), never a weaker cipher. A version
// 1 hello (an older stanzad, or a driver that offers nothing more) still gets
// ChaCha20-Poly1305 and a challenge without the cipher byte.
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
#include <memory>
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

// The AEAD that seals a link's records (without TLS).
enum class LinkCipher : uint8_t { kChaCha20Poly1305 = 1, kAes256Gcm = 2 };
// Its bit in AuthHello::ciphers.
inline constexpr uint8_t CipherBit(LinkCipher cipher) {
  return static_cast<uint8_t>(1u << (static_cast<uint8_t>(cipher) - 1));
}
// True where AES-256-GCM runs on AES-NI and PCLMULQDQ: constant time, and faster than
// ChaCha20-Poly1305. Elsewhere a node neither offers nor chooses it.
bool AesGcmIsFastHere();
// "aes-256-gcm", "chacha20-poly1305": for logs.
std::string_view LinkCipherName(LinkCipher cipher);
// What an acceptor answers (kAuthRefused) to a hello of a version it does not know: this
// stanzad to version 3 and later, a stanzad from before December to version 2.
inline constexpr std::string_view kUnknownHelloVersionRefusal =
    "bad authentication frame: unknown version (a newer stanzad?)";

struct AuthHello {
  LinkCredential credential = LinkCredential::kClusterKey;
  uint64_t token_id = 0;  // with kJoinToken
  raft::NodeId node = raft::kNoNode;
  std::string nonce;  // kAuthNonceBytes
  // The ciphers offered (CipherBit; ChaCha20-Poly1305's always set): a version 2 hello.
  // nullopt: a version 1 hello, which offers ChaCha20-Poly1305 alone.
  std::optional<uint8_t> ciphers;
  std::string address;
};
std::string EncodeAuthHello(const AuthHello& hello);
absl::StatusOr<AuthHello> DecodeAuthHello(std::string_view payload);

struct AuthChallenge {
  raft::NodeId node = raft::kNoNode;
  std::string nonce;  // kAuthNonceBytes
  std::string proof;  // kAuthProofBytes
  // The acceptor's choice: set exactly when the hello was version 2.
  std::optional<LinkCipher> cipher;
};
std::string EncodeAuthChallenge(const AuthChallenge& challenge);
// `with_cipher`: the hello it answers was version 2 (the cipher byte must be there).
absl::StatusOr<AuthChallenge> DecodeAuthChallenge(std::string_view payload, bool with_cipher);

// The three values both sides derive from the secret and the transcript.
struct AuthProofs {
  std::string acceptor;
  std::string dialler;
  std::string key_wrap;
  std::string dialler_key;   // seals what the dialler sends
  std::string acceptor_key;  // seals what the acceptor sends
};
// `hello_payload` exactly as sent (EncodeAuthHello's output); `cipher`: the acceptor's
// choice after a version 2 hello (nullopt after a version 1 hello).
AuthProofs DeriveAuthProofs(std::string_view secret, std::string_view hello_payload,
                            raft::NodeId acceptor, std::string_view acceptor_nonce,
                            std::optional<LinkCipher> cipher = std::nullopt);

inline constexpr size_t kSealedRecordBytesMax = 64 << 10;
inline constexpr size_t kSealTagBytes = 16;

// A key and a cipher: seals or opens one record (RecordSealer, RecordOpener). The AES key
// schedule is made once, not per record. Movable, not copyable.
class RecordCipher {
 public:
  // REQUIRES: key.size() == 32 (CHECKed).
  RecordCipher(std::string key, LinkCipher cipher);
  ~RecordCipher();
  RecordCipher(RecordCipher&&) noexcept;
  RecordCipher& operator=(RecordCipher&&) noexcept;

  LinkCipher cipher() const { return cipher_; }
  // `size` bytes of `in` to `out`, the tag to `tag`; `header`: the 4 bytes of AAD.
  void Seal(uint64_t counter, const uint8_t* header, const uint8_t* in, size_t size, uint8_t* out,
            uint8_t* tag) const;
  // False when the record does not authenticate.
  bool Open(uint64_t counter, const uint8_t* header, const uint8_t* in, size_t size,
            const uint8_t* tag, uint8_t* out) const;

 private:
  struct Aes;
  std::string key_;
  LinkCipher cipher_;
  std::unique_ptr<Aes> aes_;  // with kAes256Gcm
};

// One direction of a sealed link: plaintext in, records out.
class RecordSealer {
 public:
  // REQUIRES: key.size() == 32 (CHECKed).
  explicit RecordSealer(std::string key, LinkCipher cipher = LinkCipher::kChaCha20Poly1305);
  // Appends `plaintext` to *records, as records of at most kSealedRecordBytesMax.
  void Seal(std::string_view plaintext, std::string* records);
  LinkCipher cipher() const { return cipher_.cipher(); }

 private:
  RecordCipher cipher_;
  uint64_t counter_ = 0;
};

// The other end of that direction: records in, plaintext out.
class RecordOpener {
 public:
  // REQUIRES: key.size() == 32 (CHECKed).
  explicit RecordOpener(std::string key, LinkCipher cipher = LinkCipher::kChaCha20Poly1305);
  // Opens every complete record at the front of *records (erasing it) and appends its
  // plaintext to *plaintext. DataLoss for a record that does not authenticate (changed,
  // replayed, reordered, sealed with another key or cipher) or has a bad length: the
  // link ends.
  absl::Status Open(std::string* records, std::string* plaintext);
  LinkCipher cipher() const { return cipher_.cipher(); }

 private:
  RecordCipher cipher_;
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
