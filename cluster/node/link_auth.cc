#include "cluster/node/link_auth.h"

#include <unistd.h>

#include <wolfssl/options.h>
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

std::string EncodeAuthHello(const AuthHello& hello) {
  std::string out;
  out.push_back(static_cast<char>(kAuthVersion));
  out.push_back(static_cast<char>(hello.credential));
  PutLittle(&out, hello.token_id);
  PutLittle(&out, hello.node);
  out.append(hello.nonce);
  out.append(hello.address);
  return out;
}

absl::StatusOr<AuthHello> DecodeAuthHello(std::string_view payload) {
  if (payload.size() < 2) return Bad("short hello");
  if (static_cast<uint8_t>(payload[0]) != kAuthVersion) {
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
  if (payload.size() > raft::kMemberAddressBytesMax) return Bad("address too long");
  hello.address.assign(payload);
  return hello;
}

std::string EncodeAuthChallenge(const AuthChallenge& challenge) {
  std::string out;
  PutLittle(&out, challenge.node);
  out.append(challenge.nonce);
  out.append(challenge.proof);
  return out;
}

absl::StatusOr<AuthChallenge> DecodeAuthChallenge(std::string_view payload) {
  AuthChallenge challenge;
  if (!TakeLittle(&payload, &challenge.node) ||
      !TakeBytes(&payload, kAuthNonceBytes, &challenge.nonce) ||
      !TakeBytes(&payload, kAuthProofBytes, &challenge.proof) || !payload.empty()) {
    return Bad("challenge of the wrong size");
  }
  if (challenge.node == raft::kNoNode) return Bad("node id 0");
  return challenge;
}

AuthProofs DeriveAuthProofs(std::string_view secret, std::string_view hello_payload,
                            raft::NodeId acceptor, std::string_view acceptor_nonce) {
  std::string transcript(hello_payload);
  PutLittle(&transcript, acceptor);
  transcript.append(acceptor_nonce);
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

RecordSealer::RecordSealer(std::string key) : key_(std::move(key)) {
  CHECK_EQ(key_.size(), size_t{CHACHA20_POLY1305_AEAD_KEYSIZE});
}

RecordOpener::RecordOpener(std::string key) : key_(std::move(key)) {
  CHECK_EQ(key_.size(), size_t{CHACHA20_POLY1305_AEAD_KEYSIZE});
}

void RecordSealer::Seal(std::string_view plaintext, std::string* records) {
  while (!plaintext.empty()) {
    const size_t size = std::min(plaintext.size(), kSealedRecordBytesMax);
    const size_t at = records->size();
    records->resize(at + 4 + size + kSealTagBytes);
    byte* header = reinterpret_cast<byte*>(records->data() + at);
    for (int i = 0; i < 4; ++i) header[i] = static_cast<byte>(size >> (24 - 8 * i));
    byte nonce[CHACHA20_POLY1305_AEAD_IV_SIZE];
    NonceOf(counter_++, nonce);
    CHECK_EQ(wc_ChaCha20Poly1305_Encrypt(reinterpret_cast<const byte*>(key_.data()), nonce, header,
                                         4, reinterpret_cast<const byte*>(plaintext.data()),
                                         static_cast<word32>(size), header + 4, header + 4 + size),
             0);
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
    byte nonce[CHACHA20_POLY1305_AEAD_IV_SIZE];
    NonceOf(counter_++, nonce);
    if (wc_ChaCha20Poly1305_Decrypt(reinterpret_cast<const byte*>(key_.data()), nonce, header, 4,
                                    header + 4, static_cast<word32>(size), header + 4 + size,
                                    reinterpret_cast<byte*>(plaintext->data() + out)) != 0) {
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
