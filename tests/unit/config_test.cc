// Config: field validation, whole-value validation, and the deterministic encoding (round
// trips, one encoding per value, and decode of damaged or random bytes never crashing).
#include "core/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/base/concat.h"

namespace stanzad::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string MessageOf(const absl::Status& status) { return std::string(status.message()); }

ScramSecret MakeScramSecret(size_t key_bytes, char fill) {
  return ScramSecret{std::string(16, fill), 4096, std::string(key_bytes, fill),
                     std::string(key_bytes, static_cast<char>(fill + 1))};
}

UserCredentials MakeCredentials(char fill) {
  UserCredentials credentials;
  credentials.scram_sha256 = MakeScramSecret(kSha256Bytes, fill);
  return credentials;
}

Config MakeConfig() {
  Config config;
  config.version = 17;
  config.domain = "tptac9.com";
  config.listen = {"eth0", "10.0.0.1", "::1"};
  config.tls = {"/etc/stanzad/abhiatl.key", "/etc/stanzad/abhiatl.cer", "/etc/stanzad/certatl.cer"};
  config.callbridges["cb1"].secret = "kvgP1SRzWVabhiPVAb1";
  config.callbridges["cb2"].secret = "uBiLLdIU8vVqj86CAb1";
  config.callbridges["cb3"].secret = "RJTmSh4smhLYguGpAb1";
  config.users["alice"] = MakeCredentials('a');
  UserCredentials both = MakeCredentials('b');
  both.scram_sha1 = MakeScramSecret(kSha1Bytes, 'c');
  config.users["bob"] = both;
  config.members[0x1234] = "10.0.0.1:7000";
  config.members[0xfedcba9876543210] = "10.0.0.2:7000";
  return config;
}

// EncodeConfig's bytes are those the encoder before ConfigEncoder (fec633b) wrote for the same
// configuration (snapshots and config files of that version load, and members of both
// versions write the same snapshots); the golden bytes are that version's output.
TEST(ConfigEncodingTest, TheBytesAreThoseOfThePreviousEncoder) {
  Config config = MakeConfig();
  config.unknown_user_salt_key = std::string(32, 'k');
  config.join_tokens[5] = JoinTokenGrant{"tok", 99};
  config.member_identities[0x1234] = "n1.cluster";
  const std::string golden_hex =
      "0211000000000000000a0000007470746163392e636f6d0300000004000000657468300800000031302e302e"
      "302e31030000003a3a31180000002f6574632f7374616e7a61642f6162686961746c2e6b6579180000002f65"
      "74632f7374616e7a61642f6162686961746c2e636572180000002f6574632f7374616e7a61642f6365727461"
      "746c2e6365720300000003000000636231130000006b7667503153527a575661626869505641623103000000"
      "636232130000007542694c4c644955387656716a3836434162310300000063623313000000524a546d536834"
      "736d684c59677547704162310200000005000000616c69636502100000006161616161616161616161616161"
      "6161001000002000000061616161616161616161616161616161616161616161616161616161616161612000"
      "0000626262626262626262626262626262626262626262626262626262626262626203000000626f62031000"
      "0000636363636363636363636363636363630010000014000000636363636363636363636363636363636363"
      "6363140000006464646464646464646464646464646464646464100000006262626262626262626262626262"
      "6262001000002000000062626262626262626262626262626262626262626262626262626262626262622000"
      "0000636363636363636363636363636363636363636363636363636363636363636302000000341200000000"
      "00000d00000031302e302e302e313a373030301032547698badcfe0d00000031302e302e302e323a37303030"
      "200000006b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b0100000005000000"
      "0000000003000000746f6b63000000000000000100000034120000000000000a0000006e312e636c75737465"
      "72";
  std::string golden;
  for (size_t i = 0; i < golden_hex.size(); i += 2) {
    golden.push_back(static_cast<char>(std::stoi(golden_hex.substr(i, 2), nullptr, 16)));
  }
  EXPECT_EQ(EncodeConfig(config), golden);
  for (size_t slice : {size_t{1}, size_t{2}, size_t{3}}) {
    ConfigEncoder encoder(config);
    std::string out;
    int steps = 0;
    while (!encoder.Step(slice, &out)) ASSERT_LT(++steps, 100);
    EXPECT_EQ(out, golden) << "slice " << slice;
  }
}

// A user's credentials, shared by every copy of a map: a copy holds the same object, and
// two handles compare by what they hold.
TEST(SharedCredentialsTest, CopiesShareOneObjectAndCompareByValue) {
  const SharedCredentials none;
  EXPECT_FALSE(none->scram_sha1.has_value());
  EXPECT_FALSE(none->scram_sha256.has_value());
  EXPECT_FALSE(ValidateUserCredentials(none).ok());
  EXPECT_TRUE(none.SharesWith(SharedCredentials()));  // one empty object, not one each

  UserCredentials made;
  made.scram_sha256 =
      ScramSecret{std::string(16, 's'), 4096, std::string(32, 'k'), std::string(32, 'v')};
  const SharedCredentials shared = made;
  std::map<std::string, SharedCredentials> users = {{"alice", shared}};
  const std::map<std::string, SharedCredentials> copy = users;
  EXPECT_TRUE(copy.at("alice").SharesWith(shared));
  EXPECT_EQ(&*copy.at("alice"), &*shared);

  const SharedCredentials equal = made;  // made again: another object, the same value
  EXPECT_FALSE(equal.SharesWith(shared));
  EXPECT_EQ(equal, shared);
  EXPECT_EQ(shared, made);
  EXPECT_FALSE(none == shared);
  users["alice"] = none;  // the copy keeps what it had
  EXPECT_EQ(copy.at("alice"), made);
}

// The parts of a SCRAM secret, held inline: they read and compare as their bytes.
TEST(InlineBytesTest, HoldsUpToItsCapacityAndComparesAsBytes) {
  InlineBytes<4> bytes;
  EXPECT_TRUE(bytes.empty());
  bytes = std::string("ab\0c", 4);
  EXPECT_EQ(bytes.size(), 4u);
  EXPECT_EQ(bytes.view(), std::string_view("ab\0c", 4));
  EXPECT_EQ(bytes, std::string("ab\0c", 4));
  EXPECT_FALSE(bytes == "ab");
  InlineBytes<4> copy = bytes;
  EXPECT_EQ(copy, bytes);
  copy.assign(3, 'x');
  EXPECT_EQ(copy.str(), "xxx");
  EXPECT_FALSE(copy == bytes);
  copy.assign("");
  EXPECT_TRUE(copy.empty());
  EXPECT_DEATH(copy.assign("abcde"), "more bytes than it holds");
}

TEST(ConfigValidationTest, AcceptsDnsNames) {
  for (std::string_view domain : {"example.com", "tptac9.com", "a.b-c.d", "localhost",
                                  "xn--bcher-kva.example", "1a.example", "example.c0m"}) {
    EXPECT_TRUE(ValidateDomain(domain).ok()) << domain << ": " << ValidateDomain(domain);
  }
  std::string longest = Concat(std::string(63, 'a'), ".", std::string(63, 'b'), ".",
                               std::string(63, 'c'), ".", std::string(61, 'd'));
  ASSERT_EQ(longest.size(), 253u);
  EXPECT_TRUE(ValidateDomain(longest).ok());
}

TEST(ConfigValidationTest, RefusesWhatIsNotALowercaseDnsName) {
  struct Case {
    std::string domain;
    std::string why;
  };
  std::vector<Case> cases = {
      {"", "empty"},
      {"Example.com", "lowercase"},
      {"-a.com", "starts or ends with '-'"},
      {"a-.com", "starts or ends with '-'"},
      {"a..com", "empty label"},
      {".com", "empty label"},
      {"example.com.", "empty label"},
      {"1.2.3.4", "not an address"},
      {"example.123", "not an address"},
      {Concat(std::string(64, 'a'), ".com"), "longer than 63"},
      {Concat(std::string(63, 'a'), ".", std::string(63, 'b'), ".", std::string(63, 'c'), ".",
              std::string(62, 'd')),
       "longer than 253"},
      {"exa mple.com", "only letters, digits"},
      {"a_b.com", "only letters, digits"},
      {"caf\xc3\xa9.com", "only letters, digits"},
      {std::string("a\0b.com", 7), "only letters, digits"},
  };
  for (const Case& c : cases) {
    absl::Status status = ValidateDomain(c.domain);
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << c.domain;
    EXPECT_THAT(MessageOf(status), HasSubstr(c.why)) << c.domain;
  }
  // Bytes that are not printable are shown escaped, so a message stays one clean line.
  EXPECT_THAT(MessageOf(ValidateDomain(std::string("a\nb\0", 4))), HasSubstr("a\\x0ab\\x00"));
}

TEST(ConfigValidationTest, CallbridgeNamesAreOneLowercaseDnsLabel) {
  for (std::string_view name : {"cb1", "a", "call-bridge-01", "0"}) {
    EXPECT_TRUE(ValidateCallbridgeName(name).ok()) << name;
  }
  EXPECT_TRUE(ValidateCallbridgeName(std::string(63, 'x')).ok());
  for (std::string_view name : {"", "CB1", "cb.1", "-cb", "cb-", "cb_1", "cb 1", "cb/1"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ValidateCallbridgeName(name))) << name;
  }
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateCallbridgeName(std::string(64, 'x'))));
  EXPECT_THAT(MessageOf(ValidateCallbridgeName("cb.1")), HasSubstr("<name>.<domain>"));
  EXPECT_THAT(MessageOf(ValidateCallbridgeName("CB1")), HasSubstr("lowercase"));
}

TEST(ConfigValidationTest, CallbridgeSecretsArePrintableAndNeverEchoed) {
  EXPECT_TRUE(ValidateCallbridgeSecret("kvgP1SRzWVabhiPVAb1").ok());
  EXPECT_TRUE(ValidateCallbridgeSecret("!#$%&'()*+,-./:;<=>?@[]^_`{|}~").ok());
  EXPECT_TRUE(ValidateCallbridgeSecret(std::string(256, 'k')).ok());
  for (std::string secret : {std::string(), std::string("has space"), std::string(257, 'k'),
                             std::string("tab\tsecret"), std::string("caf\xc3\xa9")}) {
    absl::Status status = ValidateCallbridgeSecret(secret);
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << secret;
    if (!secret.empty()) {
      EXPECT_THAT(MessageOf(status), Not(HasSubstr(secret)));
    }
  }
}

TEST(ConfigValidationTest, UserNamesAreCanonicalLocalparts) {
  for (std::string_view name : {"alice", "bob.smith", "a+b", "x_y-z", "0", "caf\xc3\xa9"}) {
    EXPECT_TRUE(ValidateUserName(name).ok()) << name;
  }
  for (std::string_view name : {"", "Alice", "a@b", "a b", "a/b", "a:b", "a<b", "a'b", "a\"b",
                                "a&b", "Caf\xc3\xa9", "cafe\xcc\x81", "\xff"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ValidateUserName(name))) << name;
  }
  EXPECT_TRUE(ValidateUserName(std::string(1023, 'u')).ok());
  EXPECT_FALSE(ValidateUserName(std::string(1024, 'u')).ok());
}

TEST(ConfigValidationTest, CredentialsNeedOneMechanismWithKeysOfItsSize) {
  EXPECT_TRUE(ValidateUserCredentials(MakeCredentials('a')).ok());
  UserCredentials sha1_only;
  sha1_only.scram_sha1 = MakeScramSecret(kSha1Bytes, 'a');
  EXPECT_TRUE(ValidateUserCredentials(sha1_only).ok());

  EXPECT_THAT(MessageOf(ValidateUserCredentials(UserCredentials{})), HasSubstr("neither"));
  UserCredentials wrong_size;
  wrong_size.scram_sha1 = MakeScramSecret(kSha256Bytes, 'a');
  EXPECT_THAT(MessageOf(ValidateUserCredentials(wrong_size)), HasSubstr("20 bytes"));
  UserCredentials few_iterations = MakeCredentials('a');
  few_iterations.scram_sha256->iteration_count = 4095;
  EXPECT_THAT(MessageOf(ValidateUserCredentials(few_iterations)), HasSubstr("iteration"));
  UserCredentials short_salt = MakeCredentials('a');
  short_salt.scram_sha256->salt = "1234567";
  EXPECT_THAT(MessageOf(ValidateUserCredentials(short_salt)), HasSubstr("salt"));
}

TEST(ConfigValidationTest, ListenAddressesAreIpLiteralsOrInterfaceNames) {
  for (std::string_view address : {"10.0.0.1", "0.0.0.0", "::", "::1", "fe80::1", "2001:db8::1",
                                   "a", "eth0", "enp0s31f6", "br-lan.10"}) {
    EXPECT_TRUE(ValidateListenAddress(address).ok()) << address;
  }
  for (std::string_view address : {"", "eth0:1", "has space", "a/b", ".", "..", "sixteen-chars-xx",
                                   "[::1]", "10.0.0.1:5222"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ValidateListenAddress(address))) << address;
  }
  EXPECT_THAT(MessageOf(ValidateListenAddresses({"eth0", "eth0"})), HasSubstr("twice"));
  EXPECT_FALSE(ValidateListenAddresses(std::vector<std::string>(17, "eth0")).ok());
  EXPECT_TRUE(ValidateListenAddresses({}).ok());
}

TEST(ConfigValidationTest, TlsFilesAreAbsoluteAndComeInPairs) {
  EXPECT_TRUE(ValidateTlsFiles({}).ok());
  EXPECT_TRUE(ValidateTlsFiles({"/k.key", "/c.crt", ""}).ok());
  EXPECT_TRUE(ValidateTlsFiles({"/k.key", "/c.crt", "/b.crt"}).ok());
  EXPECT_THAT(MessageOf(ValidateTlsFiles({"k.key", "/c.crt", ""})), HasSubstr("absolute"));
  EXPECT_FALSE(ValidateTlsFiles({"/k.key", "", ""}).ok());
  EXPECT_FALSE(ValidateTlsFiles({"", "", "/b.crt"}).ok());
}

TEST(ConfigTest, AValidConfigValidates) {
  EXPECT_TRUE(MakeConfig().Validate().ok()) << MakeConfig().Validate();
  EXPECT_TRUE(Config().Validate().ok());
  EXPECT_EQ(CallbridgeAddress("cb1", "example.com"), "cb1.example.com");
}

TEST(ConfigTest, ValidateJoinsFields) {
  Config config = MakeConfig();
  config.domain = Concat(std::string(63, 'a'), ".", std::string(63, 'b'), ".", std::string(63, 'c'),
                         ".", std::string(61, 'd'));
  ASSERT_TRUE(ValidateDomain(config.domain).ok());
  EXPECT_THAT(MessageOf(config.Validate()), HasSubstr("longer than 253"));

  config = MakeConfig();
  config.members[99] = "10.0.0.1:7000";
  EXPECT_THAT(MessageOf(config.Validate()), HasSubstr("two cluster members"));
  config = MakeConfig();
  config.members[0] = "10.0.0.9:7000";
  EXPECT_THAT(MessageOf(config.Validate()), HasSubstr("node id 0"));
  config = MakeConfig();
  config.callbridges["cb4"].secret = "bad secret";
  EXPECT_THAT(MessageOf(config.Validate()), HasSubstr("callbridge cb4"));
  config = MakeConfig();
  config.users["carol"] = UserCredentials{};
  EXPECT_THAT(MessageOf(config.Validate()), HasSubstr("user carol"));
}

TEST(ConfigEncodingTest, RoundTrips) {
  for (const Config& config : {Config(), MakeConfig()}) {
    std::string bytes = EncodeConfig(config);
    absl::StatusOr<Config> decoded = DecodeConfig(bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, config);
    EXPECT_EQ(EncodeConfig(*decoded), bytes);
  }
}

TEST(ConfigEncodingTest, IsDeterministicWhateverTheOrderOfInsertion) {
  Config forward;
  Config backward;
  for (int i = 0; i < 50; ++i) {
    forward.callbridges[Concat("cb", std::to_string(i))].secret = Concat("s", std::to_string(i));
    backward.callbridges[Concat("cb", std::to_string(49 - i))].secret =
        Concat("s", std::to_string(49 - i));
    forward.users[Concat("u", std::to_string(i))] =
        MakeCredentials(static_cast<char>('a' + i % 20));
    backward.users[Concat("u", std::to_string(49 - i))] =
        MakeCredentials(static_cast<char>('a' + (49 - i) % 20));
  }
  EXPECT_EQ(EncodeConfig(forward), EncodeConfig(backward));
  // And the bytes are stable across builds: the format is part of the snapshot format.
  Config small;
  small.version = 1;
  small.domain = "a.b";
  EXPECT_EQ(EncodeConfig(small), std::string("\x01"
                                             "\x01\0\0\0\0\0\0\0"
                                             "\x03\0\0\0a.b"
                                             "\0\0\0\0"
                                             "\0\0\0\0\0\0\0\0\0\0\0\0"
                                             "\0\0\0\0\0\0\0\0\0\0\0\0",
                                             1 + 8 + 7 + 4 + 12 + 12));
}

TEST(ConfigEncodingTest, RefusesEveryTruncationAndTrailingBytes) {
  std::string bytes = EncodeConfig(MakeConfig());
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_TRUE(absl::IsInvalidArgument(DecodeConfig(bytes.substr(0, cut)).status()))
        << "cut at " << cut;
  }
  EXPECT_THAT(MessageOf(DecodeConfig(bytes + "x").status()), HasSubstr("trailing"));
  std::string future = bytes;
  future[0] = 3;  // 2 is the format with the cluster section now
  EXPECT_THAT(MessageOf(DecodeConfig(future).status()), HasSubstr("format version 3"));
}

TEST(ConfigEncodingTest, TheClusterSectionRoundTripsAndRefusesEveryTruncation) {
  Config config = MakeConfig();
  const std::string without = EncodeConfig(config);
  EXPECT_EQ(without[0], 1) << "a configuration without the section keeps format 1";
  config.unknown_user_salt_key = std::string(64, 'k');
  config.join_tokens[7] = {std::string(kJoinTokenSecretBytes, 's'), 1'900'000'000};
  config.join_tokens[9] = {std::string(kJoinTokenSecretBytes, 't'), 1'900'000'001};
  config.member_identities[11] = std::string(kMemberIdentityBytes, 'i');
  const std::string bytes = EncodeConfig(config);
  EXPECT_EQ(bytes[0], 2);
  absl::StatusOr<Config> decoded = DecodeConfig(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, config);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_TRUE(absl::IsInvalidArgument(DecodeConfig(bytes.substr(0, cut)).status()))
        << "cut at " << cut;
  }
  EXPECT_THAT(MessageOf(DecodeConfig(bytes + "x").status()), HasSubstr("trailing"));
  std::string empty_section = without + std::string(12, '\0');
  empty_section[0] = 2;
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeConfig(empty_section).status()));
}

TEST(ConfigEncodingTest, RefusesKeysOutOfOrderAndInvalidValues) {
  Config config;
  config.callbridges["ab"].secret = "x";
  config.callbridges["cd"].secret = "y";
  std::string bytes = EncodeConfig(config);
  std::string swapped = bytes;
  size_t ab = swapped.find("ab");
  size_t cd = swapped.find("cd");
  swapped.replace(ab, 2, "cd");
  swapped.replace(cd, 2, "ab");
  EXPECT_THAT(MessageOf(DecodeConfig(swapped).status()), HasSubstr("out of order"));
  std::string repeated = bytes;
  repeated.replace(cd, 2, "ab");
  EXPECT_THAT(MessageOf(DecodeConfig(repeated).status()), HasSubstr("out of order"));
  std::string invalid = bytes;
  invalid.replace(ab, 2, "A!");
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeConfig(invalid).status()));
}

TEST(ConfigEncodingTest, EveryByteFlipIsRefusedOrDecodesToAValidCanonicalConfig) {
  std::string bytes = EncodeConfig(MakeConfig());
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = bytes;
      damaged[i] ^= static_cast<char>(1 << bit);
      absl::StatusOr<Config> decoded = DecodeConfig(damaged);
      if (!decoded.ok()) continue;
      EXPECT_TRUE(decoded->Validate().ok());
      EXPECT_EQ(EncodeConfig(*decoded), damaged);
    }
  }
}

TEST(ConfigEncodingTest, RandomBytesNeverCrash) {
  std::mt19937_64 random(12345);
  std::string valid = EncodeConfig(MakeConfig());
  for (int round = 0; round < 20000; ++round) {
    std::string bytes;
    if (round % 2 == 0) {
      // Random bytes after a valid prefix, to get past the first checks.
      bytes = valid.substr(0, random() % valid.size());
    }
    size_t length = random() % 200;
    for (size_t i = 0; i < length; ++i) bytes.push_back(static_cast<char>(random()));
    absl::StatusOr<Config> decoded = DecodeConfig(bytes);
    if (decoded.ok()) {
      EXPECT_EQ(EncodeConfig(*decoded), bytes);
    }
  }
  // A count that claims far more items than the bytes hold is refused before allocating.
  std::string huge("\x01\0\0\0\0\0\0\0\0\0\0\0\0\xff\xff\xff\xff", 17);
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeConfig(huge).status()));
}

}  // namespace
}  // namespace stanzad::config
