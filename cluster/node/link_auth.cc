#include "cluster/node/link_auth.h"

#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <algorithm>

#include "core/base/check.h"
#include "core/base/hex.h"
#include "core/base/little_endian.h"
#include "core/xmpp/component_handshake.h"

namespace stanzad::cluster {
namespace {

constexpr uint8_t kAuthVersion = 1;
constexpr uint8_t kAuthVersionWithCiphers = 2;

bool TakeBytes(std::string_view* in, size_t size, std::string* out) {
  if (in->size() < size) return false;
  out->assign(in->substr(0, size));
  in->remove_prefix(size);
  return true;
}

absl::Status Bad(std::string_view what) {
  return absl::InvalidArgumentError(std::string("bad authentication frame: ") + std::string(what));
}

std::string HmacSha256(std::string_view key, const char* label_text, std::string_view data) {
  const std::string_view label(label_text);
  Hmac hmac;
  CHECK_EQ(wc_HmacInit(&hmac, nullptr, INVALID_DEVID), 0);
  CHECK_EQ(wc_HmacSetKey(&hmac, WC_SHA256, reinterpret_cast<const byte*>(key.data()),
                         static_cast<word32>(key.size())),
           0);
  // The label ends with its NUL, so that no label is a prefix of another's input.
  CHECK_EQ(wc_HmacUpdate(&hmac, reinterpret_cast<const byte*>(label.data()),
                         static_cast<word32>(label.size() + 1)),
           0);
  CHECK_EQ(wc_HmacUpdate(&hmac, reinterpret_cast<const byte*>(data.data()),
                         static_cast<word32>(data.size())),
           0);
  std::string mac(WC_SHA256_DIGEST_SIZE, '\0');
  CHECK_EQ(wc_HmacFinal(&hmac, reinterpret_cast<byte*>(mac.data())), 0);
  wc_HmacFree(&hmac);
  return mac;
}

}  // namespace

bool AesGcmIsFastHere() {
#if defined(__x86_64__) && defined(WOLFSSL_AESNI)
  static const bool fast = __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
  return fast;
#else
  return false;
#endif
}

std::string_view LinkCipherName(LinkCipher cipher) {
  return cipher == LinkCipher::kAes256Gcm ? "aes-256-gcm" : "chacha20-poly1305";
}

std::string EncodeAuthHello(const AuthHello& hello) {
  std::string out;
  out.push_back(static_cast<char>(hello.ciphers ? kAuthVersionWithCiphers : kAuthVersion));
  out.push_back(static_cast<char>(hello.credential));
  PutLittle(&out, hello.token_id);
  PutLittle(&out, hello.node);
  out.append(hello.nonce);
  if (hello.ciphers) out.push_back(static_cast<char>(*hello.ciphers));
  out.append(hello.address);
  return out;
}

absl::StatusOr<AuthHello> DecodeAuthHello(std::string_view payload) {
  if (payload.size() < 2) return Bad("short hello");
  const auto version = static_cast<uint8_t>(payload[0]);
  if (version != kAuthVersion && version != kAuthVersionWithCiphers) {
    return Bad("unknown version (a newer stanzad?)");
  }
  AuthHello hello;
  const auto credential = static_cast<uint8_t>(payload[1]);
  if (credential != static_cast<uint8_t>(LinkCredential::kClusterKey) &&
      credential != static_cast<uint8_t>(LinkCredential::kJoinToken)) {
    return Bad("unknown credential");
  }
  hello.credential = static_cast<LinkCredential>(credential);
  payload.remove_prefix(2);
  if (!TakeLittle(&payload, &hello.token_id) || !TakeLittle(&payload, &hello.node) ||
      !TakeBytes(&payload, kAuthNonceBytes, &hello.nonce)) {
    return Bad("short hello");
  }
  if (hello.node == raft::kNoNode) return Bad("node id 0");
  if ((hello.credential == LinkCredential::kJoinToken) != (hello.token_id != 0)) {
    return Bad("token id and credential disagree");
  }
  if (version == kAuthVersionWithCiphers) {
    if (payload.empty()) return Bad("short hello");
    hello.ciphers = static_cast<uint8_t>(payload[0]);
    payload.remove_prefix(1);
    if ((*hello.ciphers & CipherBit(LinkCipher::kChaCha20Poly1305)) == 0) {
      return Bad("a hello without ChaCha20-Poly1305");
    }
  }
  if (payload.size() > raft::kMemberAddressBytesMax) return Bad("address too long");
  hello.address.assign(payload);
  return hello;
}

std::string EncodeAuthChallenge(const AuthChallenge& challenge) {
  std::string out;
  PutLittle(&out, challenge.node);
  out.append(challenge.nonce);
  out.append(challenge.proof);
  if (challenge.cipher) out.push_back(static_cast<char>(*challenge.cipher));
  return out;
}

absl::StatusOr<AuthChallenge> DecodeAuthChallenge(std::string_view payload, bool with_cipher) {
  AuthChallenge challenge;
  uint64_t cipher = 0;
  if (!TakeLittle(&payload, &challenge.node) ||
      !TakeBytes(&payload, kAuthNonceBytes, &challenge.nonce) ||
      !TakeBytes(&payload, kAuthProofBytes, &challenge.proof) ||
      (with_cipher && !TakeLittle(&payload, &cipher, 1)) || !payload.empty()) {
    return Bad("challenge of the wrong size");
  }
  if (with_cipher) {
    if (cipher != static_cast<uint8_t>(LinkCipher::kChaCha20Poly1305) &&
        cipher != static_cast<uint8_t>(LinkCipher::kAes256Gcm)) {
      return Bad("unknown cipher");
    }
    challenge.cipher = static_cast<LinkCipher>(cipher);
  }
  if (challenge.node == raft::kNoNode) return Bad("node id 0");
  return challenge;
}

AuthProofs DeriveAuthProofs(std::string_view secret, std::string_view hello_payload,
                            raft::NodeId acceptor, std::string_view acceptor_nonce,
                            std::optional<LinkCipher> cipher) {
  std::string transcript(hello_payload);
  PutLittle(&transcript, acceptor);
  transcript.append(acceptor_nonce);
  if (cipher) transcript.push_back(static_cast<char>(*cipher));
  return {HmacSha256(secret, "stanzad link v1 acceptor", transcript),
          HmacSha256(secret, "stanzad link v1 dialler", transcript),
          HmacSha256(secret, "stanzad link v1 key wrap", transcript),
          HmacSha256(secret, "stanzad link v1 dialler key", transcript),
          HmacSha256(secret, "stanzad link v1 acceptor key", transcript)};
}

namespace {

void NonceOf(uint64_t counter, byte nonce[CHACHA20_POLY1305_AEAD_IV_SIZE]) {
  for (size_t i = 0; i < 4; ++i) nonce[i] = 0;
  for (size_t i = 0; i < 8; ++i) nonce[4 + i] = static_cast<byte>((counter >> (8 * i)) & 0xff);
}

}  // namespace

struct RecordCipher::Aes {
  ::Aes context;
};

RecordCipher::RecordCipher(std::string key, LinkCipher cipher)
    : key_(std::move(key)), cipher_(cipher) {
  CHECK_EQ(key_.size(), size_t{CHACHA20_POLY1305_AEAD_KEYSIZE});
  static_assert(CHACHA20_POLY1305_AEAD_KEYSIZE == AES_256_KEY_SIZE);
  static_assert(CHACHA20_POLY1305_AEAD_IV_SIZE == GCM_NONCE_MID_SZ);
  static_assert(CHACHA20_POLY1305_AEAD_AUTHTAG_SIZE == kSealTagBytes);
  if (cipher_ == LinkCipher::kAes256Gcm) {
    aes_ = std::make_unique<Aes>();
    CHECK_EQ(wc_AesInit(&aes_->context, nullptr, INVALID_DEVID), 0);
    CHECK_EQ(wc_AesGcmSetKey(&aes_->context, reinterpret_cast<const byte*>(key_.data()),
                             static_cast<word32>(key_.size())),
             0);
  }
}

RecordCipher::~RecordCipher() {
  if (aes_) wc_AesFree(&aes_->context);
}

RecordCipher::RecordCipher(RecordCipher&& other) noexcept
    : key_(std::move(other.key_)), cipher_(other.cipher_), aes_(std::move(other.aes_)) {}

RecordCipher& RecordCipher::operator=(RecordCipher&& other) noexcept {
  if (this != &other) {
    if (aes_) wc_AesFree(&aes_->context);
    key_ = std::move(other.key_);
    cipher_ = other.cipher_;
    aes_ = std::move(other.aes_);
  }
  return *this;
}

void RecordCipher::Seal(uint64_t counter, const uint8_t* header, const uint8_t* in, size_t size,
                        uint8_t* out, uint8_t* tag) const {
  byte nonce[CHACHA20_POLY1305_AEAD_IV_SIZE];
  NonceOf(counter, nonce);
  if (aes_) {
    CHECK_EQ(wc_AesGcmEncrypt(&aes_->context, out, in, static_cast<word32>(size), nonce,
                              sizeof nonce, tag, kSealTagBytes, header, 4),
             0);
    return;
  }
  CHECK_EQ(wc_ChaCha20Poly1305_Encrypt(reinterpret_cast<const byte*>(key_.data()), nonce, header, 4,
                                       in, static_cast<word32>(size), out, tag),
           0);
}

bool RecordCipher::Open(uint64_t counter, const uint8_t* header, const uint8_t* in, size_t size,
                        const uint8_t* tag, uint8_t* out) const {
  byte nonce[CHACHA20_POLY1305_AEAD_IV_SIZE];
  NonceOf(counter, nonce);
  if (aes_) {
    return wc_AesGcmDecrypt(&aes_->context, out, in, static_cast<word32>(size), nonce, sizeof nonce,
                            tag, kSealTagBytes, header, 4) == 0;
  }
  return wc_ChaCha20Poly1305_Decrypt(reinterpret_cast<const byte*>(key_.data()), nonce, header, 4,
                                     in, static_cast<word32>(size), tag, out) == 0;
}

RecordSealer::RecordSealer(std::string key, LinkCipher cipher) : cipher_(std::move(key), cipher) {}

RecordOpener::RecordOpener(std::string key, LinkCipher cipher) : cipher_(std::move(key), cipher) {}

void RecordSealer::Seal(std::string_view plaintext, std::string* records) {
  while (!plaintext.empty()) {
    const size_t size = std::min(plaintext.size(), kSealedRecordBytesMax);
    const size_t at = records->size();
    records->resize(at + 4 + size + kSealTagBytes);
    byte* header = reinterpret_cast<byte*>(records->data() + at);
    for (int i = 0; i < 4; ++i) header[i] = static_cast<byte>(size >> (24 - 8 * i));
    cipher_.Seal(counter_++, header, reinterpret_cast<const byte*>(plaintext.data()), size,
                 header + 4, header + 4 + size);
    plaintext.remove_prefix(size);
  }
}

absl::Status RecordOpener::Open(std::string* records, std::string* plaintext) {
  size_t at = 0;
  while (records->size() - at >= 4) {
    const byte* header = reinterpret_cast<const byte*>(records->data() + at);
    size_t size = 0;
    for (int i = 0; i < 4; ++i) size = size << 8 | header[i];
    if (size == 0 || size > kSealedRecordBytesMax) {
      return absl::DataLossError("a sealed record with a bad length");
    }
    if (records->size() - at < 4 + size + kSealTagBytes) break;
    const size_t out = plaintext->size();
    plaintext->resize(out + size);
    if (!cipher_.Open(counter_++, header, header + 4, size, header + 4 + size,
                      reinterpret_cast<byte*>(plaintext->data() + out))) {
      plaintext->resize(out);
      return absl::DataLossError(
          "a sealed record does not authenticate (changed on the way, or another key)");
    }
    at += 4 + size + kSealTagBytes;
  }
  records->erase(0, at);
  return absl::OkStatus();
}

bool EqualInConstantTime(std::string_view a, std::string_view b) {
  return xmpp::ConstantTimeEquals(a, b);
}

std::string RandomBytes(size_t size) {
  std::string out(size, '\0');
  for (size_t done = 0; done < size;) {
    const size_t chunk = std::min<size_t>(256, size - done);  // getentropy's limit
    CHECK_EQ(getentropy(out.data() + done, chunk), 0);
    done += chunk;
  }
  return out;
}

std::string XorBytes(std::string_view a, std::string_view b) {
  CHECK_EQ(a.size(), b.size());
  std::string out(a);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(out[i] ^ b[i]);
  return out;
}

std::string FormatJoinToken(const JoinToken& token) {
  std::string id;
  for (int shift = 56; shift >= 0; shift -= 8) {
    id.push_back(static_cast<char>((token.id >> shift) & 0xff));
  }
  return HexOf(id) + "." + HexOf(token.secret);
}

absl::StatusOr<JoinToken> ParseJoinToken(std::string_view text) {
  const absl::Status bad = absl::InvalidArgumentError(
      "a join token looks like 0123456789abcdef.0123456789abcdef0123456789abcdef (16 hex "
      "digits, a dot, 32 hex digits); make one on a member with 'stanzactl cluster token'");
  const size_t dot = text.find('.');
  if (dot != 16 || text.size() != 16 + 1 + 2 * kJoinTokenSecretBytes) return bad;
  const std::optional<std::string> id = BytesOfHex(text.substr(0, dot));
  const std::optional<std::string> secret = BytesOfHex(text.substr(dot + 1));
  if (!id || !secret) return bad;
  JoinToken token;
  for (const char byte : *id) token.id = token.id << 8 | static_cast<unsigned char>(byte);
  if (token.id == 0) return bad;
  token.secret = *secret;
  return token;
}

}  // namespace stanzad::cluster
