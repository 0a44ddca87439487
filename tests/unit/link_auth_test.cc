// The cluster link handshake's pure parts: encodings, proofs, tokens.
#include "cluster/node/link_auth.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>

#include "cluster/node/frames.h"
#include "core/base/hex.h"

namespace stanzad::cluster {
namespace {

AuthHello MakeHello() {
  AuthHello hello;
  hello.credential = LinkCredential::kJoinToken;
  hello.token_id = 0x0102030405060708;
  hello.node = 42;
  hello.nonce = std::string(kAuthNonceBytes, 'n');
  hello.address = "127.0.0.1:5279";
  return hello;
}

TEST(LinkAuthTest, HelloAndChallengeRoundTripAndRefuseWhatCannotBe) {
  const std::string hello = EncodeAuthHello(MakeHello());
  absl::StatusOr<AuthHello> decoded = DecodeAuthHello(hello);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(EncodeAuthHello(*decoded), hello);
  for (size_t cut = 0; cut < 2 + 8 + 8 + kAuthNonceBytes; ++cut) {
    EXPECT_FALSE(DecodeAuthHello(hello.substr(0, cut)).ok()) << "cut at " << cut;
  }
  std::string future = hello;
  future[0] = 3;  // (2 is the hello that offers ciphers: below)
  EXPECT_FALSE(DecodeAuthHello(future).ok());
  // The text a dialler recognises as "an older stanzad" (cluster/data/data_links.cc).
  EXPECT_EQ(std::string(DecodeAuthHello(future).status().message()),
            std::string(kUnknownHelloVersionRefusal));
  AuthHello no_token = MakeHello();
  no_token.token_id = 0;  // a join token credential without a token
  EXPECT_FALSE(DecodeAuthHello(EncodeAuthHello(no_token)).ok());
  AuthHello node_zero = MakeHello();
  node_zero.node = 0;
  EXPECT_FALSE(DecodeAuthHello(EncodeAuthHello(node_zero)).ok());
  AuthHello long_address = MakeHello();
  long_address.address = std::string(raft::kMemberAddressBytesMax + 1, 'a');
  EXPECT_FALSE(DecodeAuthHello(EncodeAuthHello(long_address)).ok());
  AuthHello longest = MakeHello();
  longest.address = std::string(raft::kMemberAddressBytesMax, 'a');
  ASSERT_TRUE(DecodeAuthHello(EncodeAuthHello(longest)).ok());
  EXPECT_LT(EncodeAuthHello(longest).size() + 1, kAuthFrameBytesMax)
      << "the longest hello fits the pre-authentication frame bound";

  const AuthChallenge challenge{7, std::string(kAuthNonceBytes, 'm'),
                                std::string(kAuthProofBytes, 'p'), std::nullopt};
  const std::string bytes = EncodeAuthChallenge(challenge);
  ASSERT_TRUE(DecodeAuthChallenge(bytes, /*with_cipher=*/false).ok());
  EXPECT_FALSE(DecodeAuthChallenge(bytes + "x", false).ok());
  EXPECT_FALSE(DecodeAuthChallenge(bytes.substr(0, bytes.size() - 1), false).ok());
  EXPECT_FALSE(DecodeAuthChallenge(bytes, /*with_cipher=*/true).ok()) << "the cipher is missing";
}

// A version 2 hello offers ciphers; the challenge that answers it names the one chosen.
TEST(LinkAuthTest, AHelloThatOffersCiphersAndTheChallengeThatChooses) {
  const uint8_t both = CipherBit(LinkCipher::kChaCha20Poly1305) | CipherBit(LinkCipher::kAes256Gcm);
  AuthHello offer = MakeHello();
  offer.ciphers = both;
  const std::string hello = EncodeAuthHello(offer);
  EXPECT_EQ(hello[0], 2);
  EXPECT_EQ(EncodeAuthHello(MakeHello())[0], 1) << "no offer: the hello every stanzad takes";
  absl::StatusOr<AuthHello> decoded = DecodeAuthHello(hello);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->ciphers, std::optional<uint8_t>(both));
  EXPECT_EQ(decoded->address, offer.address);
  EXPECT_EQ(EncodeAuthHello(*decoded), hello);
  for (size_t cut = 0; cut < 2 + 8 + 8 + kAuthNonceBytes + 1; ++cut) {
    EXPECT_FALSE(DecodeAuthHello(hello.substr(0, cut)).ok()) << "cut at " << cut;
  }
  AuthHello aes_only = MakeHello();
  aes_only.ciphers = CipherBit(LinkCipher::kAes256Gcm);
  EXPECT_FALSE(DecodeAuthHello(EncodeAuthHello(aes_only)).ok())
      << "every hello offers ChaCha20-Poly1305, which every node has";
  AuthHello unknown_too = MakeHello();
  unknown_too.ciphers = both | 0x80;  // a later cipher: ignored, not refused
  absl::StatusOr<AuthHello> later = DecodeAuthHello(EncodeAuthHello(unknown_too));
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->ciphers, std::optional<uint8_t>(both | 0x80));

  for (const LinkCipher cipher : {LinkCipher::kChaCha20Poly1305, LinkCipher::kAes256Gcm}) {
    const AuthChallenge challenge{7, std::string(kAuthNonceBytes, 'm'),
                                  std::string(kAuthProofBytes, 'p'), cipher};
    const std::string bytes = EncodeAuthChallenge(challenge);
    absl::StatusOr<AuthChallenge> chose = DecodeAuthChallenge(bytes, /*with_cipher=*/true);
    ASSERT_TRUE(chose.ok()) << chose.status();
    EXPECT_EQ(chose->cipher, std::optional<LinkCipher>(cipher));
    EXPECT_FALSE(DecodeAuthChallenge(bytes, /*with_cipher=*/false).ok());
    EXPECT_FALSE(DecodeAuthChallenge(bytes + "x", true).ok());
  }
  std::string unknown_cipher = EncodeAuthChallenge(
      {7, std::string(kAuthNonceBytes, 'm'), std::string(kAuthProofBytes, 'p'), std::nullopt});
  for (const char value : {'\0', '\3', '\xff'}) {
    EXPECT_FALSE(DecodeAuthChallenge(unknown_cipher + value, true).ok()) << int{value};
  }
}

TEST(LinkAuthTest, ProofsNeedTheSecretAndBothNonces) {
  const std::string secret(kClusterKeyBytes, 'k');
  const std::string hello = EncodeAuthHello(MakeHello());
  const std::string nonce(kAuthNonceBytes, 'a');
  const AuthProofs proofs = DeriveAuthProofs(secret, hello, 9, nonce);
  EXPECT_EQ(proofs.acceptor.size(), kAuthProofBytes);
  EXPECT_NE(proofs.acceptor, proofs.dialler) << "one side's proof is not the other's";
  EXPECT_NE(proofs.key_wrap, proofs.dialler);
  EXPECT_EQ(DeriveAuthProofs(secret, hello, 9, nonce).dialler, proofs.dialler) << "deterministic";
  EXPECT_NE(DeriveAuthProofs(std::string(kClusterKeyBytes, 'x'), hello, 9, nonce).dialler,
            proofs.dialler);
  EXPECT_NE(DeriveAuthProofs(secret, hello, 10, nonce).dialler, proofs.dialler);
  EXPECT_NE(DeriveAuthProofs(secret, hello, 9, std::string(kAuthNonceBytes, 'b')).dialler,
            proofs.dialler);
  AuthHello other = MakeHello();
  other.nonce[0] = 'o';
  EXPECT_NE(DeriveAuthProofs(secret, EncodeAuthHello(other), 9, nonce).dialler, proofs.dialler);
  // The acceptor's choice of cipher is in the transcript: a changed choice changes every
  // proof and key.
  const AuthProofs chacha =
      DeriveAuthProofs(secret, hello, 9, nonce, LinkCipher::kChaCha20Poly1305);
  const AuthProofs aes = DeriveAuthProofs(secret, hello, 9, nonce, LinkCipher::kAes256Gcm);
  for (const AuthProofs* chosen : {&chacha, &aes}) {
    EXPECT_NE(chosen->acceptor, proofs.acceptor);
    EXPECT_NE(chosen->dialler, proofs.dialler);
    EXPECT_NE(chosen->dialler_key, proofs.dialler_key);
  }
  EXPECT_NE(chacha.acceptor, aes.acceptor);
  EXPECT_NE(chacha.acceptor_key, aes.acceptor_key);
  // The wrapped key unwraps with the same pad, and only with it.
  const std::string key(kClusterKeyBytes, 'K');
  EXPECT_EQ(XorBytes(XorBytes(key, proofs.key_wrap), proofs.key_wrap), key);
  EXPECT_NE(XorBytes(key, proofs.key_wrap), key);
}

TEST(LinkAuthTest, ConstantTimeEqualityAndRandomBytes) {
  EXPECT_TRUE(EqualInConstantTime("abc", "abc"));
  EXPECT_FALSE(EqualInConstantTime("abc", "abd"));
  EXPECT_FALSE(EqualInConstantTime("abc", "abcd"));
  EXPECT_EQ(RandomBytes(300).size(), 300u);
  EXPECT_NE(RandomBytes(32), RandomBytes(32));
}

TEST(LinkAuthTest, JoinTokensPrintAndParse) {
  const JoinToken token{0x00ab00cd00ef0012, std::string("0123456789abcdef")};
  const std::string text = FormatJoinToken(token);
  EXPECT_EQ(text, "00ab00cd00ef0012." + HexOf(token.secret));
  absl::StatusOr<JoinToken> parsed = ParseJoinToken(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->id, token.id);
  EXPECT_EQ(parsed->secret, token.secret);
  for (const std::string_view bad : {"", "00ab00cd00ef0012", "00ab00cd00ef0012.",
                                     "0000000000000000.30313233343536373839616263646566",
                                     "00ab00cd00ef001.0303132333435363738396162636465666",
                                     "zzab00cd00ef0012.30313233343536373839616263646566",
                                     "00ab00cd00ef0012.3031323334353637383961626364656",
                                     "00ab00cd00ef0012-30313233343536373839616263646566"}) {
    absl::StatusOr<JoinToken> refused = ParseJoinToken(bad);
    EXPECT_FALSE(refused.ok()) << bad;
    if (!refused.ok()) {
      EXPECT_NE(std::string(refused.status().message()).find("cluster token"), std::string::npos);
    }
  }
}

class SealedRecordsTest : public testing::TestWithParam<LinkCipher> {};

INSTANTIATE_TEST_SUITE_P(EachCipher, SealedRecordsTest,
                         testing::Values(LinkCipher::kChaCha20Poly1305, LinkCipher::kAes256Gcm));

TEST_P(SealedRecordsTest, OpenAtEverySplitAndRefuseTampering) {
  const LinkCipher cipher = GetParam();
  const std::string key(kClusterKeyBytes, 'k');
  RecordSealer sealer(key, cipher);
  std::string records;
  sealer.Seal("first", &records);
  sealer.Seal(std::string(kSealedRecordBytesMax + 10, 'x'), &records);  // two records
  sealer.Seal("last", &records);
  const std::string expected = "first" + std::string(kSealedRecordBytesMax + 10, 'x') + "last";
  EXPECT_EQ(records.find("first"), std::string::npos) << "not in the clear";
  for (const size_t split : {size_t{0}, size_t{1}, size_t{3}, size_t{4}, size_t{20}, size_t{26},
                             size_t{100}, records.size() - 1}) {
    RecordOpener opener(key, cipher);
    std::string pending = records.substr(0, split);
    std::string plaintext;
    ASSERT_TRUE(opener.Open(&pending, &plaintext).ok()) << split;
    pending += records.substr(split);
    ASSERT_TRUE(opener.Open(&pending, &plaintext).ok()) << split;
    EXPECT_EQ(plaintext, expected) << split;
    EXPECT_TRUE(pending.empty());
  }
  {  // a flipped bit anywhere in a record
    std::string changed = records;
    changed[10] = static_cast<char>(changed[10] ^ 1);
    std::string plaintext;
    EXPECT_EQ(RecordOpener(key, cipher).Open(&changed, &plaintext).code(),
              absl::StatusCode::kDataLoss);
  }
  {  // another key
    std::string copy = records;
    std::string plaintext;
    EXPECT_FALSE(
        RecordOpener(std::string(kClusterKeyBytes, 'j'), cipher).Open(&copy, &plaintext).ok());
  }
  {  // a record replayed: the counter moved on
    RecordSealer one(key, cipher);
    std::string record;
    one.Seal("pay me", &record);
    std::string twice = record + record;
    std::string plaintext;
    EXPECT_FALSE(RecordOpener(key, cipher).Open(&twice, &plaintext).ok());
  }
  {  // a length beyond the bound is refused at once
    std::string bad("\x00\x02\x00\x01", 4);
    std::string plaintext;
    EXPECT_FALSE(RecordOpener(key, cipher).Open(&bad, &plaintext).ok());
  }
  {  // the same key with the other cipher
    const LinkCipher other =
        cipher == LinkCipher::kAes256Gcm ? LinkCipher::kChaCha20Poly1305 : LinkCipher::kAes256Gcm;
    std::string copy = records;
    std::string plaintext;
    EXPECT_EQ(RecordOpener(key, other).Open(&copy, &plaintext).code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(plaintext.empty());
  }
  {  // a sealer and opener moved from where they were made go on with the same counter
    RecordSealer first(key, cipher);
    std::string two;
    first.Seal("one", &two);
    RecordSealer moved = std::move(first);
    moved.Seal("two", &two);
    RecordOpener opener(key, cipher);
    std::string plaintext;
    ASSERT_TRUE(opener.Open(&two, &plaintext).ok());
    EXPECT_EQ(plaintext, "onetwo");
  }
}

TEST(LinkAuthTest, FramesBeforeAuthenticationAreBounded) {
  std::string buffer;
  AppendFrame(FrameType::kAuthHello, std::string(kAuthFrameBytesMax, 'x'), &buffer);
  size_t offset = 0;
  EXPECT_FALSE(ParseFrameAt(buffer, &offset, kAuthFrameBytesMax).ok()) << "one byte too long";
  // A header that announces 60 MiB is refused from its first four bytes.
  const std::string huge("\x03\xc0\x00\x00\x09", 5);
  offset = 0;
  EXPECT_FALSE(ParseFrameAt(huge, &offset, kAuthFrameBytesMax).ok());
}

}  // namespace
}  // namespace stanzad::cluster
