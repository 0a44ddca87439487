// SCRAM-SHA-1 and SCRAM-SHA-256: the RFC 5802 §5 and RFC 7677 §3 exchanges byte for byte
// through server and client, every malformed message we could think of, unknown users,
// authzids; and the pieces underneath: strict base64, SASLprep, and the text form of the
// stored credentials.
#include "core/sasl/scram.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/concat.h"
#include "core/sasl/base64.h"
#include "core/sasl/credentials.h"
#include "core/sasl/sasl_server.h"
#include "core/sasl/saslprep.h"

namespace stanzad::sasl {
namespace {

using namespace std::string_literals;
using namespace std::string_view_literals;
using ::testing::HasSubstr;

constexpr std::string_view kUnknownUserSaltKey = "0123456789abcdef-test-key";

std::string Decode(std::string_view base64) {
  std::optional<std::string> bytes = Base64Decode(base64);
  EXPECT_TRUE(bytes.has_value()) << base64;
  return bytes.value_or("");
}

// The RFC 5802 §5 exchange (SCRAM-SHA-1, user "user", password "pencil").
struct Rfc5802 {
  static constexpr std::string_view kSalt = "QSXCR+Q6sek8bf92";
  static constexpr std::string_view kClientNonce = "fyko+d2lbbFgONRv9qkxdawL";
  static constexpr std::string_view kServerNonce = "3rfcNHYJY1ZVvWVs7j";
  static constexpr std::string_view kClientFirst = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL";
  static constexpr std::string_view kServerFirst =
      "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
  static constexpr std::string_view kClientFinal =
      "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
  static constexpr std::string_view kServerFinal = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";
};

// The RFC 7677 §3 exchange (SCRAM-SHA-256, user "user", password "pencil").
struct Rfc7677 {
  static constexpr std::string_view kSalt = "W22ZaJ0SNY7soEsUEjb6gQ==";
  static constexpr std::string_view kClientNonce = "rOprNGfwEbeRWgbNEkqO";
  static constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
  static constexpr std::string_view kClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
  static constexpr std::string_view kServerFirst =
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
  static constexpr std::string_view kClientFinal =
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
      "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
  static constexpr std::string_view kServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
};

// Users by name, as the node configuration would hold them; records every lookup.
class UserTable {
 public:
  void Add(std::string name, std::string_view password, uint32_t iteration_count = 4096) {
    absl::StatusOr<config::UserCredentials> credentials = MakeUserCredentials(
        password, Concat("sha1-salt-", name), Concat("sha256-salt-", name), iteration_count);
    ASSERT_TRUE(credentials.ok()) << credentials.status();
    users_[std::move(name)] = *credentials;
  }
  void Set(std::string name, config::UserCredentials credentials) {
    users_[std::move(name)] = std::move(credentials);
  }

  CredentialsLookup Lookup() {
    return [this](std::string_view name) -> std::optional<config::UserCredentials> {
      looked_up_.emplace_back(name);
      auto it = users_.find(std::string(name));
      if (it == users_.end()) return std::nullopt;
      return it->second;
    };
  }
  const std::vector<std::string>& looked_up() const { return looked_up_; }

 private:
  std::map<std::string, config::UserCredentials> users_;
  std::vector<std::string> looked_up_;
};

// A table with the RFCs' user: "user", "pencil", with the RFCs' salts.
UserTable RfcUsers() {
  UserTable users;
  config::UserCredentials credentials;
  credentials.scram_sha1 =
      *MakeScramCredentials(ScramMechanism::kSha1, "pencil", Decode(Rfc5802::kSalt), 4096);
  credentials.scram_sha256 =
      *MakeScramCredentials(ScramMechanism::kSha256, "pencil", Decode(Rfc7677::kSalt), 4096);
  users.Set("user", credentials);
  return users;
}

ScramServer MakeServer(ScramMechanism mechanism, UserTable& users,
                       std::string_view server_nonce = "server-nonce-0123456789",
                       AuthorizationCheck authorize = {}) {
  ScramServer::Params params;
  params.mechanism = mechanism;
  params.lookup = users.Lookup();
  params.authorize = std::move(authorize);
  params.server_nonce = std::string(server_nonce);
  params.unknown_user_salt_key = std::string(kUnknownUserSaltKey);
  return ScramServer(std::move(params));
}

ScramClient MakeClient(ScramMechanism mechanism, std::string_view username,
                       std::string_view password, std::string_view client_nonce,
                       std::string_view authzid = "") {
  ScramClient::Params params;
  params.mechanism = mechanism;
  params.username = std::string(username);
  params.password = std::string(password);
  params.client_nonce = std::string(client_nonce);
  params.authzid = std::string(authzid);
  absl::StatusOr<ScramClient> client = ScramClient::Create(std::move(params));
  EXPECT_TRUE(client.ok()) << client.status();
  return std::move(client).value();
}

// "challenge: …", "success: …" or "failure: <condition>", for compact expectations.
std::string Describe(const SaslStep& step) {
  switch (step.kind) {
    case SaslStep::Kind::kChallenge:
      return Concat("challenge: ", step.data);
    case SaslStep::Kind::kSuccess:
      return Concat("success: ", step.data);
    case SaslStep::Kind::kFailure:
      return Concat("failure: ", SaslConditionName(step.condition));
  }
  return "?";
}

// Runs client and server against each other; returns the server's last step.
SaslStep RunExchange(ScramServer& server, ScramClient& client) {
  SaslStep first = server.Step(client.client_first());
  if (first.kind != SaslStep::Kind::kChallenge) return first;
  absl::StatusOr<std::string> client_final = client.HandleServerFirst(first.data);
  EXPECT_TRUE(client_final.ok()) << client_final.status();
  SaslStep last = server.Step(client_final.value_or(""));
  if (last.kind == SaslStep::Kind::kSuccess) {
    EXPECT_TRUE(client.HandleServerFinal(last.data).ok());
  }
  return last;
}

// ---------------------------------------------------------------------------
// The RFC exchanges

template <typename Vector>
void ExpectServerReproduces(ScramMechanism mechanism) {
  UserTable users = RfcUsers();
  ScramServer server = MakeServer(mechanism, users, Vector::kServerNonce);
  EXPECT_EQ(Describe(server.Step(Vector::kClientFirst)),
            Concat("challenge: ", Vector::kServerFirst));
  EXPECT_FALSE(server.finished());
  EXPECT_EQ(Describe(server.Step(Vector::kClientFinal)), Concat("success: ", Vector::kServerFinal));
  EXPECT_TRUE(server.finished());
  EXPECT_TRUE(server.succeeded());
  EXPECT_EQ(server.username(), "user");
  EXPECT_EQ(server.authzid(), "");
  EXPECT_EQ(users.looked_up(), std::vector<std::string>{"user"});
}

template <typename Vector>
void ExpectClientReproduces(ScramMechanism mechanism) {
  ScramClient client = MakeClient(mechanism, "user", "pencil", Vector::kClientNonce);
  EXPECT_EQ(client.client_first(), Vector::kClientFirst);
  absl::StatusOr<std::string> client_final = client.HandleServerFirst(Vector::kServerFirst);
  ASSERT_TRUE(client_final.ok()) << client_final.status();
  EXPECT_EQ(*client_final, Vector::kClientFinal);
  EXPECT_TRUE(client.HandleServerFinal(Vector::kServerFinal).ok());
}

TEST(ScramRfcVectorTest, Rfc5802ServerSha1) {
  ExpectServerReproduces<Rfc5802>(ScramMechanism::kSha1);
}
TEST(ScramRfcVectorTest, Rfc5802ClientSha1) {
  ExpectClientReproduces<Rfc5802>(ScramMechanism::kSha1);
}
TEST(ScramRfcVectorTest, Rfc7677ServerSha256) {
  ExpectServerReproduces<Rfc7677>(ScramMechanism::kSha256);
}
TEST(ScramRfcVectorTest, Rfc7677ClientSha256) {
  ExpectClientReproduces<Rfc7677>(ScramMechanism::kSha256);
}

TEST(ScramRfcVectorTest, StoredKeysMatchRfc5803) {
  // RFC 5803 §4 stores the RFC 5802 user as this authPassword value.
  absl::StatusOr<config::ScramSecret> secret =
      MakeScramCredentials(ScramMechanism::kSha1, "pencil", Decode(Rfc5802::kSalt));
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(Base64Encode(secret->stored_key), "6dlGYMOdZcOPutkcNY8U2g7vK9Y=");
  EXPECT_EQ(Base64Encode(secret->server_key), "D+CSWLOshSulAsxiupA+qs2/fTE=");
  EXPECT_EQ(secret->iteration_count, 4096u);
  EXPECT_EQ(secret->salt, Decode(Rfc5802::kSalt));
}

TEST(ScramRfcVectorTest, MechanismNames) {
  EXPECT_EQ(ScramMechanismName(ScramMechanism::kSha1), "SCRAM-SHA-1");
  EXPECT_EQ(ScramMechanismName(ScramMechanism::kSha256), "SCRAM-SHA-256");
  EXPECT_EQ(ScramMechanismFromName("SCRAM-SHA-1"), ScramMechanism::kSha1);
  EXPECT_EQ(ScramMechanismFromName("SCRAM-SHA-256"), ScramMechanism::kSha256);
  EXPECT_EQ(ScramMechanismFromName("SCRAM-SHA-256-PLUS"), std::nullopt);
  EXPECT_EQ(ScramMechanismFromName("scram-sha-1"), std::nullopt);
  EXPECT_EQ(ScramKeyBytes(ScramMechanism::kSha1), 20u);
  EXPECT_EQ(ScramKeyBytes(ScramMechanism::kSha256), 32u);
}

// ---------------------------------------------------------------------------
// Whole exchanges

std::string HashName(const ::testing::TestParamInfo<ScramMechanism>& mechanism) {
  return mechanism.param == ScramMechanism::kSha1 ? "Sha1" : "Sha256";
}

class ScramExchangeTest : public ::testing::TestWithParam<ScramMechanism> {};

INSTANTIATE_TEST_SUITE_P(BothHashes, ScramExchangeTest,
                         ::testing::Values(ScramMechanism::kSha1, ScramMechanism::kSha256),
                         HashName);

TEST_P(ScramExchangeTest, RightPasswordSucceeds) {
  UserTable users;
  users.Add("alice", "correct horse battery staple");
  ScramServer server = MakeServer(GetParam(), users);
  ScramClient client =
      MakeClient(GetParam(), "alice", "correct horse battery staple", "client-nonce-abcdefgh");
  EXPECT_EQ(RunExchange(server, client).kind, SaslStep::Kind::kSuccess);
  EXPECT_EQ(server.username(), "alice");
}

TEST_P(ScramExchangeTest, WrongPasswordIsNotAuthorized) {
  UserTable users;
  users.Add("alice", "correct horse battery staple");
  ScramServer server = MakeServer(GetParam(), users);
  ScramClient client =
      MakeClient(GetParam(), "alice", "Correct horse battery staple", "client-nonce-abcdefgh");
  SaslStep last = RunExchange(server, client);
  EXPECT_EQ(Describe(last), "failure: not-authorized");
  EXPECT_THAT(last.reason, HasSubstr("wrong password"));
  EXPECT_TRUE(server.finished());
  EXPECT_FALSE(server.succeeded());
  EXPECT_EQ(server.username(), "");
  EXPECT_EQ(server.claimed_username(), "alice");
}

TEST_P(ScramExchangeTest, UnknownUserLooksLikeAKnownOneUntilTheEnd) {
  UserTable users;
  users.Add("alice", "secret");
  auto server_first_of = [&](std::string_view username) {
    ScramServer server = MakeServer(GetParam(), users);
    return server.Step(Concat("n,,n=", username, ",r=client-nonce"));
  };
  SaslStep first = server_first_of("mallory");
  ASSERT_EQ(first.kind, SaslStep::Kind::kChallenge);
  // The same salt each time for the same name, another for another name, and the
  // default iteration count.
  EXPECT_EQ(first.data, server_first_of("mallory").data);
  EXPECT_NE(first.data, server_first_of("mallery").data);
  EXPECT_THAT(first.data, HasSubstr(",i=4096"));
  const std::string salt_b64 = first.data.substr(
      first.data.find(",s=") + 3, first.data.find(",i=") - first.data.find(",s=") - 3);
  EXPECT_EQ(Decode(salt_b64).size(), 16u);

  ScramServer server = MakeServer(GetParam(), users);
  ScramClient client = MakeClient(GetParam(), "mallory", "secret", "client-nonce-abcdefgh");
  EXPECT_EQ(Describe(RunExchange(server, client)), "failure: not-authorized");
}

TEST_P(ScramExchangeTest, UserWithoutCredentialsForThisHashIsUnknown) {
  UserTable users;
  absl::StatusOr<config::ScramSecret> other = MakeScramCredentials(
      GetParam() == ScramMechanism::kSha1 ? ScramMechanism::kSha256 : ScramMechanism::kSha1,
      "secret", "salt-salt-salt");
  ASSERT_TRUE(other.ok());
  config::UserCredentials credentials;
  (GetParam() == ScramMechanism::kSha1 ? credentials.scram_sha256 : credentials.scram_sha1) =
      *other;
  users.Set("alice", credentials);
  ScramServer server = MakeServer(GetParam(), users);
  ScramClient client = MakeClient(GetParam(), "alice", "secret", "client-nonce-abcdefgh");
  EXPECT_EQ(Describe(RunExchange(server, client)), "failure: not-authorized");
}

TEST_P(ScramExchangeTest, InvalidStoredCredentialsAreATemporaryFailure) {
  UserTable users;
  config::UserCredentials broken;
  broken.scram_sha1 = config::ScramSecret{"short", 4096, "k", "k"};
  broken.scram_sha256 = config::ScramSecret{"short", 4096, "k", "k"};
  users.Set("alice", broken);
  ScramServer server = MakeServer(GetParam(), users);
  EXPECT_EQ(Describe(server.Step("n,,n=alice,r=abc")), "failure: temporary-auth-failure");
}

TEST_P(ScramExchangeTest, StoredIterationCountAndSaltAreSent) {
  UserTable users;
  users.Add("alice", "secret", 10'000);
  ScramServer server = MakeServer(GetParam(), users, "server-nonce-0123456789");
  const std::string salt =
      GetParam() == ScramMechanism::kSha1 ? "sha1-salt-alice" : "sha256-salt-alice";
  EXPECT_EQ(Describe(server.Step("n,,n=alice,r=abc")),
            Concat("challenge: r=abcserver-nonce-0123456789,s=", Base64Encode(salt), ",i=10000"));
  ScramServer again = MakeServer(GetParam(), users);
  ScramClient client = MakeClient(GetParam(), "alice", "secret", "client-nonce-abcdefgh");
  EXPECT_EQ(RunExchange(again, client).kind, SaslStep::Kind::kSuccess);
}

TEST_P(ScramExchangeTest, ChannelBindingFlagYIsAccepted) {
  // 'y': the client could bind but thinks we cannot. We offer no -PLUS, so that is right.
  UserTable users;
  users.Add("alice", "secret");
  ScramServer server = MakeServer(GetParam(), users);
  SaslStep first = server.Step("y,,n=alice,r=abc");
  ASSERT_EQ(first.kind, SaslStep::Kind::kChallenge);
  // Its client-final must repeat "y,," ("eSws"); "n,," ("biws") is a downgrade.
  const std::string nonce = first.data.substr(2, first.data.find(',') - 2);
  ScramServer copy = MakeServer(GetParam(), users);
  ASSERT_EQ(copy.Step("y,,n=alice,r=abc").kind, SaslStep::Kind::kChallenge);
  const std::string proof(ScramKeyBytes(GetParam()), 'x');
  EXPECT_EQ(Describe(server.Step(Concat("c=biws,r=", nonce, ",p=", Base64Encode(proof)))),
            "failure: not-authorized");
  EXPECT_EQ(Describe(copy.Step(Concat("c=eSws,r=", nonce, ",p=", Base64Encode(proof)))),
            "failure: not-authorized");  // parsed, and only the proof is wrong
}

TEST_P(ScramExchangeTest, UsernameIsUnescapedAndSaslPrepped) {
  UserTable users;
  users.Add("a,b=c", "secret");
  users.Add("IX", "secret");
  ScramServer server = MakeServer(GetParam(), users);
  ScramClient client = MakeClient(GetParam(), "a,b=c", "secret", "client-nonce-abcdefgh");
  EXPECT_EQ(client.client_first(), "n,,n=a=2Cb=3Dc,r=client-nonce-abcdefgh");
  EXPECT_EQ(RunExchange(server, client).kind, SaslStep::Kind::kSuccess);
  EXPECT_EQ(server.username(), "a,b=c");

  // RFC 4013 §3: "I<U+00AD>X" is "IX" (the soft hyphen maps to nothing).
  ScramServer second = MakeServer(GetParam(), users);
  EXPECT_EQ(second.Step("n,,n=I\xC2\xADX,r=abc").kind, SaslStep::Kind::kChallenge);
  EXPECT_EQ(users.looked_up().back(), "IX");
}

TEST_P(ScramExchangeTest, NonAsciiPasswordsArePreparedAlike) {
  UserTable users;
  // NO-BREAK SPACE becomes SPACE, and ROMAN NUMERAL NINE becomes "IX" (NFKC).
  users.Add("alice", "pass word \xE2\x85\xA8");
  ScramServer server = MakeServer(GetParam(), users);
  ScramClient client =
      MakeClient(GetParam(), "alice", "pass\xC2\xA0word IX", "client-nonce-abcdefgh");
  EXPECT_EQ(RunExchange(server, client).kind, SaslStep::Kind::kSuccess);
}

TEST_P(ScramExchangeTest, AuthzidNeedsTheAuthorizationCheck) {
  UserTable users;
  users.Add("alice", "secret");
  auto authorize = [](std::string_view username, std::string_view authzid) {
    return authzid == Concat(username, "@example.com");
  };
  {
    ScramServer server = MakeServer(GetParam(), users, "server-nonce-0123456789", authorize);
    ScramClient client =
        MakeClient(GetParam(), "alice", "secret", "client-nonce-abcdefgh", "alice@example.com");
    EXPECT_EQ(client.client_first(), "n,a=alice@example.com,n=alice,r=client-nonce-abcdefgh");
    EXPECT_EQ(RunExchange(server, client).kind, SaslStep::Kind::kSuccess);
    EXPECT_EQ(server.authzid(), "alice@example.com");
  }
  {
    ScramServer server = MakeServer(GetParam(), users, "server-nonce-0123456789", authorize);
    ScramClient client =
        MakeClient(GetParam(), "alice", "secret", "client-nonce-abcdefgh", "bob@example.com");
    EXPECT_EQ(Describe(RunExchange(server, client)), "failure: invalid-authzid");
  }
  {
    // Without a check, no authzid is allowed.
    ScramServer server = MakeServer(GetParam(), users);
    ScramClient client =
        MakeClient(GetParam(), "alice", "secret", "client-nonce-abcdefgh", "alice@example.com");
    EXPECT_EQ(Describe(RunExchange(server, client)), "failure: invalid-authzid");
  }
  {
    // A wrong password with an authzid is not-authorized: the proof is checked first.
    ScramServer server = MakeServer(GetParam(), users, "server-nonce-0123456789", authorize);
    ScramClient client =
        MakeClient(GetParam(), "alice", "wrong", "client-nonce-abcdefgh", "bob@example.com");
    EXPECT_EQ(Describe(RunExchange(server, client)), "failure: not-authorized");
  }
  {
    // The authzid is escaped like a username.
    ScramServer server = MakeServer(GetParam(), users, "server-nonce-0123456789",
                                    [](std::string_view, std::string_view) { return true; });
    ScramClient client =
        MakeClient(GetParam(), "alice", "secret", "client-nonce-abcdefgh", "x,y=z");
    EXPECT_EQ(client.client_first(), "n,a=x=2Cy=3Dz,n=alice,r=client-nonce-abcdefgh");
    EXPECT_EQ(RunExchange(server, client).kind, SaslStep::Kind::kSuccess);
    EXPECT_EQ(server.authzid(), "x,y=z");
  }
}

TEST_P(ScramExchangeTest, NothingIsAcceptedAfterTheEnd) {
  UserTable users;
  users.Add("alice", "secret");
  ScramServer server = MakeServer(GetParam(), users);
  ScramClient client = MakeClient(GetParam(), "alice", "secret", "client-nonce-abcdefgh");
  ASSERT_EQ(RunExchange(server, client).kind, SaslStep::Kind::kSuccess);
  EXPECT_EQ(Describe(server.Step(client.client_first())), "failure: malformed-request");
  EXPECT_TRUE(server.succeeded());  // a late message does not undo the success

  ScramServer failed = MakeServer(GetParam(), users);
  EXPECT_EQ(Describe(failed.Step("garbage")), "failure: malformed-request");
  EXPECT_EQ(Describe(failed.Step(client.client_first())), "failure: malformed-request");
}

// ---------------------------------------------------------------------------
// Malformed client-first

struct BadMessage {
  std::string message;
  std::string condition;
};

std::vector<BadMessage> BadClientFirstMessages() {
  const std::string long_nonce(kScramNonceBytesMax + 1, 'a');
  return {
      {"", "malformed-request"},
      {"n", "malformed-request"},
      {"n,", "malformed-request"},
      {"n,,", "malformed-request"},
      {",,n=user,r=abc", "malformed-request"},
      {"x,,n=user,r=abc", "malformed-request"},
      {"N,,n=user,r=abc", "malformed-request"},
      {"nn,,n=user,r=abc", "malformed-request"},
      {"p=tls-unique,,n=user,r=abc", "malformed-request"},
      {"p=tls-exporter,a=user,n=user,r=abc", "malformed-request"},
      {"n,a=,n=user,r=abc", "malformed-request"},       // empty authzid
      {"n,b=user,n=user,r=abc", "malformed-request"},   // not "a="
      {"n,a=us=er,n=user,r=abc", "malformed-request"},  // bad escape
      {"n,a=us=2,n=user,r=abc", "malformed-request"},   // truncated escape
      {"n,a=user,", "malformed-request"},
      {"n,,n=user", "malformed-request"},        // no nonce
      {"n,,r=abc,n=user", "malformed-request"},  // order
      {"n,,r=abc", "malformed-request"},
      {"n,,n=user,r=", "malformed-request"},  // empty nonce
      {"n,,n=,r=abc", "malformed-request"},   // empty username
      {"n,,=user,r=abc", "malformed-request"},
      {"n,,user,r=abc", "malformed-request"},
      {"n,,N=user,r=abc", "malformed-request"},
      {"n,,n=us=er,r=abc", "malformed-request"},
      {"n,,n=us=2cer,r=abc", "malformed-request"},  // escapes are uppercase
      {"n,,n=us=3der,r=abc", "malformed-request"},
      {"n,,n=user=,r=abc", "malformed-request"},
      {"n,,n=user=2,r=abc", "malformed-request"},
      {"n,,n=user,r=ab c", "malformed-request"},        // space in nonce
      {"n,,n=user,r=ab\x7F", "malformed-request"},      // DEL in nonce
      {"n,,n=user,r=ab\xC3\xA9", "malformed-request"},  // non-ASCII nonce
      {"n,,n=user,r=" + long_nonce, "malformed-request"},
      {"n,,n=user,r=abc,", "malformed-request"},  // empty attribute
      {"n,,n=user,r=abc,,x=1", "malformed-request"},
      {"n,,n=user,r=abc,x=", "malformed-request"},  // empty extension value
      {"n,,n=user,r=abc,x", "malformed-request"},
      {"n,,n=user,r=abc,1=x", "malformed-request"},    // extension name not a letter
      {"n,,n=user,r=abc,r=def", "malformed-request"},  // repeated attribute
      {"n,,n=user,r=abc,n=other", "malformed-request"},
      {"n,,n=user,r=abc,p=eA==", "malformed-request"},
      {"n,,m=ext,n=user,r=abc", "malformed-request"},  // mandatory extension
      {"n,,m=,n=user,r=abc", "malformed-request"},
      {"n,,n=user,m=ext,r=abc", "malformed-request"},
      {"n,,n=us\0er,r=abc"s, "malformed-request"},  // NUL
      {"n,,n=user,r=abc\0"s, "malformed-request"},
      {"n,,n=\xFF,r=abc", "malformed-request"},              // not UTF-8
      {"n,,n=\xC0\xAF,r=abc", "malformed-request"},          // overlong
      {"n,,n=\xED\xA0\x80,r=abc", "malformed-request"},      // surrogate
      {"n,,n=\xF4\x90\x80\x80,r=abc", "malformed-request"},  // past U+10FFFF
      {"n,,n=\xE2\x82,r=abc", "malformed-request"},          // truncated sequence
      {"n,,n=\x07user,r=abc", "malformed-request"},          // SASLprep: control
      {"n,,n=\xEE\x80\x80,r=abc", "malformed-request"},      // SASLprep: private use
      {"n,,n=\xD8\xA7"
       "1,r=abc",
       "malformed-request"},                                               // SASLprep: bidi rule
      {"n,,n=\xC2\xAD,r=abc", "malformed-request"},                        // empty after SASLprep
      {"n,,n=" + std::string(1024, 'u') + ",r=abc", "malformed-request"},  // > 1023 bytes
      {"n,,n=user,r=abc,x=" + std::string(kScramMessageBytesMax, 'x'), "malformed-request"},
  };
}

TEST_P(ScramExchangeTest, MalformedClientFirstIsRefused) {
  const UserTable rfc_users = RfcUsers();
  for (const BadMessage& bad : BadClientFirstMessages()) {
    UserTable users = rfc_users;
    ScramServer server = MakeServer(GetParam(), users);
    SaslStep step = server.Step(bad.message);
    EXPECT_EQ(Describe(step), Concat("failure: ", bad.condition)) << bad.message;
    EXPECT_FALSE(step.reason.empty());
    EXPECT_TRUE(server.finished());
    EXPECT_TRUE(users.looked_up().empty()) << bad.message;
  }
}

TEST_P(ScramExchangeTest, ChannelBindingRequestExplainsItself) {
  UserTable users;
  ScramServer server = MakeServer(GetParam(), users);
  SaslStep step = server.Step("p=tls-unique,,n=user,r=abc");
  EXPECT_EQ(step.condition, SaslCondition::kMalformedRequest);
  EXPECT_THAT(step.reason, HasSubstr("channel binding"));
  EXPECT_THAT(step.reason, HasSubstr("PLUS"));
}

TEST_P(ScramExchangeTest, WellFormedClientFirstVariantsAreAccepted) {
  const UserTable rfc_users = RfcUsers();
  for (std::string_view message : {
           "n,,n=user,r=abc"sv,
           "y,,n=user,r=abc"sv,
           "n,,n=user,r=abc,x=extension"sv,
           "n,,n=user,r=abc,x=1,Y=2,z==3"sv,  // '=' may stand in an extension value
           "n,,n=user,r=!\"#$%&'()*+-./:;<=>?@[\\]^_`{|}~"sv,
           "n,,n=\xC3\xA9l\xC3\xA8ve,r=abc"sv,
       }) {
    UserTable users = rfc_users;
    ScramServer server = MakeServer(GetParam(), users);
    EXPECT_EQ(server.Step(message).kind, SaslStep::Kind::kChallenge) << message;
  }
}

// ---------------------------------------------------------------------------
// Malformed client-final

class ScramClientFinalTest : public ::testing::TestWithParam<ScramMechanism> {
 protected:
  // A server that has answered the client-first of "user"; returns the combined nonce.
  std::string Start(ScramServer& server, std::string_view client_first = "n,,n=user,r=abc") {
    SaslStep first = server.Step(client_first);
    EXPECT_EQ(first.kind, SaslStep::Kind::kChallenge);
    return first.data.substr(2, first.data.find(',') - 2);
  }
  std::string Proof(char fill = 'x') {
    return Base64Encode(std::string(ScramKeyBytes(GetParam()), fill));
  }
};

INSTANTIATE_TEST_SUITE_P(BothHashes, ScramClientFinalTest,
                         ::testing::Values(ScramMechanism::kSha1, ScramMechanism::kSha256),
                         HashName);

TEST_P(ScramClientFinalTest, MalformedClientFinalIsRefused) {
  UserTable users = RfcUsers();
  const std::string nonce = "abcserver-nonce-0123456789";
  const std::string proof = Proof();
  const std::string short_proof = Base64Encode(std::string(ScramKeyBytes(GetParam()) - 1, 'x'));
  const std::string long_proof = Base64Encode(std::string(ScramKeyBytes(GetParam()) + 1, 'x'));
  std::string non_canonical = proof;  // set bits in the padding's low bits
  non_canonical[non_canonical.find('=') - 1] = 'z';
  const std::vector<BadMessage> cases = {
      {"", "malformed-request"},
      {"c=biws", "malformed-request"},
      {"c=biws,r=" + nonce, "malformed-request"},
      {"r=" + nonce + ",p=" + proof, "malformed-request"},
      {"c=biws,p=" + proof, "malformed-request"},
      {"r=" + nonce + ",c=biws,p=" + proof, "malformed-request"},
      {"c=biws,r=" + nonce + ",p=", "malformed-request"},
      {"c=biws,r=" + nonce + ",p=!!!!", "malformed-request"},
      {"c=biws,r=" + nonce + ",p=" + short_proof, "malformed-request"},
      {"c=biws,r=" + nonce + ",p=" + long_proof, "malformed-request"},
      {"c=biws,r=" + nonce + ",p=" + non_canonical, "malformed-request"},
      {"c=biws,r=" + nonce + ",p=" + proof.substr(0, proof.size() - 1), "malformed-request"},
      {"c=biws,r=" + nonce + ",p= " + proof, "malformed-request"},
      {"c=biws,r=" + nonce + ",p=" + proof + ",x=ext", "malformed-request"},  // p not last
      {"c=biws,r=" + nonce + ",p=" + proof + ",p=" + proof, "malformed-request"},
      {"c=biws,r=" + nonce + ",r=" + nonce + ",p=" + proof, "malformed-request"},
      {"c=biws,c=biws,r=" + nonce + ",p=" + proof, "malformed-request"},
      {"c=biws,r=" + nonce + ",,p=" + proof, "malformed-request"},
      {"c=biws,r=" + nonce + ",p=" + proof + ",", "malformed-request"},
      {"c=biw,r=" + nonce + ",p=" + proof, "malformed-request"},  // not base64
      {"c=biws=,r=" + nonce + ",p=" + proof, "malformed-request"},
      {"c=,r=" + nonce + ",p=" + proof, "not-authorized"},      // empty gs2 header
      {"c=eSws,r=" + nonce + ",p=" + proof, "not-authorized"},  // "y,," downgrade
      {"c=biwsCg==,r=" + nonce + ",p=" + proof, "not-authorized"},
      {"c=cD10bHMtdW5pcXVlLCw=,r=" + nonce + ",p=" + proof, "not-authorized"},  // "p=tls-unique,,"
      {"c=biws,r=abc,p=" + proof, "not-authorized"},  // only the client nonce
      {"c=biws,r=" + nonce + "x,p=" + proof, "not-authorized"},
      {"c=biws,r=" + nonce.substr(0, nonce.size() - 1) + ",p=" + proof, "not-authorized"},
      {"c=biws,r=,p=" + proof, "malformed-request"},
      {"c=biws,r=" + nonce + " ,p=" + proof, "malformed-request"},
      {"c=biws,r=" + nonce + ",p=" + proof + "\0"s, "malformed-request"},
      {"c=biws,r=" + nonce + ",x=\xFF,p=" + proof, "malformed-request"},
      {"c=biws,r=" + nonce + ",m=ext,p=" + proof, "malformed-request"},
      {"c=biws,r=" + nonce + ",x=,p=" + proof, "malformed-request"},
      {"c=biws,r=" + nonce + ",x=ext,p=" + proof, "not-authorized"},  // parsed; proof wrong
      {"c=biws,r=" + nonce + ",p=" + proof, "not-authorized"},
      {std::string(kScramMessageBytesMax + 1, 'c'), "malformed-request"},
  };
  for (const BadMessage& bad : cases) {
    ScramServer server = MakeServer(GetParam(), users);
    ASSERT_EQ(Start(server), nonce);
    SaslStep step = server.Step(bad.message);
    EXPECT_EQ(Describe(step), Concat("failure: ", bad.condition)) << bad.message;
    EXPECT_FALSE(step.reason.empty());
    EXPECT_TRUE(server.finished());
    EXPECT_FALSE(server.succeeded());
  }
}

TEST_P(ScramClientFinalTest, EveryTruncationAndByteFlipOfAGoodClientFinalFails) {
  UserTable users;
  users.Add("alice", "secret");
  ScramClient client = MakeClient(GetParam(), "alice", "secret", "client-nonce-abcdefgh");
  std::string server_first;
  {
    ScramServer server = MakeServer(GetParam(), users);
    server_first = server.Step(client.client_first()).data;
  }
  absl::StatusOr<std::string> client_final = client.HandleServerFirst(server_first);
  ASSERT_TRUE(client_final.ok());
  auto step_with = [&](std::string_view message) {
    ScramServer server = MakeServer(GetParam(), users);
    EXPECT_EQ(server.Step(client.client_first()).kind, SaslStep::Kind::kChallenge);
    return server.Step(message);
  };
  EXPECT_EQ(step_with(*client_final).kind, SaslStep::Kind::kSuccess);
  for (size_t length = 0; length < client_final->size(); ++length) {
    EXPECT_EQ(step_with(client_final->substr(0, length)).kind, SaslStep::Kind::kFailure) << length;
  }
  for (size_t at = 0; at < client_final->size(); ++at) {
    std::string flipped = *client_final;
    flipped[at] = static_cast<char>(flipped[at] ^ 0x01);
    EXPECT_EQ(step_with(flipped).kind, SaslStep::Kind::kFailure) << flipped;
  }
}

// ---------------------------------------------------------------------------
// The client's checks on what a server sends

TEST_P(ScramClientFinalTest, ClientRefusesABadServerFirst) {
  const std::string salt = Base64Encode("0123456789ab");
  const std::vector<std::string> cases = {
      "",
      "r=client-nonce-abcdefgh,s=" + salt + ",i=4096",  // no server part
      "r=other-nonce-abcdefghX,s=" + salt + ",i=4096",  // does not extend ours
      "r=client-nonce-abcdefg,s=" + salt + ",i=4096",
      "r=client-nonce-abcdefghX,s=,i=4096",
      "r=client-nonce-abcdefghX,s=!!!!,i=4096",
      "r=client-nonce-abcdefghX,s=" + salt + ",i=4095",  // below RFC 7677's minimum
      "r=client-nonce-abcdefghX,s=" + salt + ",i=04096",
      "r=client-nonce-abcdefghX,s=" + salt + ",i=0",
      "r=client-nonce-abcdefghX,s=" + salt + ",i=-4096",
      "r=client-nonce-abcdefghX,s=" + salt + ",i=4096x",
      "r=client-nonce-abcdefghX,s=" + salt + ",i=10000001",  // above the bound
      "r=client-nonce-abcdefghX,s=" + salt + ",i=99999999999",
      "r=client-nonce-abcdefghX,s=" + salt,
      "r=client-nonce-abcdefghX,i=4096,s=" + salt,
      "m=ext,r=client-nonce-abcdefghX,s=" + salt + ",i=4096",
      "r=client-nonce-abcdefghX,s=" + salt + ",i=4096,",
      "r=client-nonce-abcdefghX,s=" + salt + ",i=4096,r=again",
      "r=client-nonce-abcdefgh X,s=" + salt + ",i=4096",
      "e=other-error",
  };
  for (const std::string& server_first : cases) {
    ScramClient client = MakeClient(GetParam(), "alice", "secret", "client-nonce-abcdefgh");
    absl::StatusOr<std::string> client_final = client.HandleServerFirst(server_first);
    EXPECT_EQ(client_final.status().code(), absl::StatusCode::kInvalidArgument) << server_first;
    // A failed client stays failed.
    EXPECT_EQ(
        client.HandleServerFirst("r=client-nonce-abcdefghX,s=" + salt + ",i=4096").status().code(),
        absl::StatusCode::kFailedPrecondition);
  }
  ScramClient client = MakeClient(GetParam(), "alice", "secret", "client-nonce-abcdefgh");
  EXPECT_TRUE(
      client.HandleServerFirst("r=client-nonce-abcdefghX,s=" + salt + ",i=4096,x=ext").ok());
}

TEST_P(ScramClientFinalTest, ClientChecksTheServerSignature) {
  UserTable users;
  users.Add("alice", "secret");
  auto client_after_server_first = [&](ScramServer& server) {
    ScramClient client = MakeClient(GetParam(), "alice", "secret", "client-nonce-abcdefgh");
    EXPECT_EQ(client.HandleServerFinal("v=abcd").code(), absl::StatusCode::kFailedPrecondition);
    absl::StatusOr<std::string> client_final =
        client.HandleServerFirst(server.Step(client.client_first()).data);
    EXPECT_TRUE(client_final.ok());
    return std::make_pair(std::move(client), client_final.value_or(""));
  };
  {
    ScramServer server = MakeServer(GetParam(), users);
    auto [client, client_final] = client_after_server_first(server);
    SaslStep last = server.Step(client_final);
    ASSERT_EQ(last.kind, SaslStep::Kind::kSuccess);
    std::string forged = last.data;
    forged[2] = forged[2] == 'A' ? 'B' : 'A';
    EXPECT_EQ(client.HandleServerFinal(forged).code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(client.HandleServerFinal(last.data).code(), absl::StatusCode::kFailedPrecondition);
  }
  for (std::string_view bad : {"", "v=", "v=!!!!", "v=AAAA", "x=1", "v=abc,", "p=AAAA"}) {
    ScramServer server = MakeServer(GetParam(), users);
    auto [client, client_final] = client_after_server_first(server);
    EXPECT_EQ(client.HandleServerFinal(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  {
    ScramServer server = MakeServer(GetParam(), users);
    auto [client, client_final] = client_after_server_first(server);
    EXPECT_EQ(client.HandleServerFinal("e=invalid-proof").code(),
              absl::StatusCode::kPermissionDenied);
  }
}

TEST(ScramClientTest, CreateRefusesWhatItCannotSend) {
  auto create = [](std::string_view username, std::string_view password, std::string_view nonce,
                   std::string_view authzid = "") {
    ScramClient::Params params;
    params.username = std::string(username);
    params.password = std::string(password);
    params.client_nonce = std::string(nonce);
    params.authzid = std::string(authzid);
    return ScramClient::Create(std::move(params)).status().code();
  };
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(create("alice", "secret", "client-nonce-abcdefgh"), absl::StatusCode::kOk);
  EXPECT_EQ(create("", "secret", "client-nonce-abcdefgh"), kInvalid);
  EXPECT_EQ(create("alice", "", "client-nonce-abcdefgh"), kInvalid);
  EXPECT_EQ(create("alice", "\xC2\xAD", "client-nonce-abcdefgh"), kInvalid);
  EXPECT_EQ(create("al\x07ice", "secret", "client-nonce-abcdefgh"), kInvalid);
  EXPECT_EQ(create("alice", "sec\xFFret", "client-nonce-abcdefgh"), kInvalid);
  EXPECT_EQ(create("alice", "secret", "short"), kInvalid);
  EXPECT_EQ(create("alice", "secret", "client nonce abcdefgh"), kInvalid);
  EXPECT_EQ(create("alice", "secret", "client,nonce,abcdefgh"), kInvalid);
  EXPECT_EQ(create("alice", "secret", "client-nonce-abcdefgh", "a\0b"sv), kInvalid);
  EXPECT_EQ(create("alice", "secret", "client-nonce-abcdefgh", "\xFF"), kInvalid);
}

// ---------------------------------------------------------------------------
// Credentials

TEST(ScramCredentialsTest, MakeScramCredentialsChecksItsInputs) {
  const std::string salt = "0123456789abcdef";
  EXPECT_TRUE(MakeScramCredentials(ScramMechanism::kSha256, "secret", salt).ok());
  EXPECT_EQ(MakeScramCredentials(ScramMechanism::kSha256, "secret", salt)->iteration_count, 4096u);
  EXPECT_FALSE(MakeScramCredentials(ScramMechanism::kSha256, "secret", "1234567").ok());
  EXPECT_FALSE(MakeScramCredentials(ScramMechanism::kSha256, "secret", std::string(129, 's')).ok());
  EXPECT_FALSE(MakeScramCredentials(ScramMechanism::kSha256, "secret", salt, 4095).ok());
  EXPECT_FALSE(MakeScramCredentials(ScramMechanism::kSha256, "secret", salt, 10'000'001).ok());
  EXPECT_FALSE(MakeScramCredentials(ScramMechanism::kSha256, "", salt).ok());
  EXPECT_FALSE(MakeScramCredentials(ScramMechanism::kSha256, "\xC2\xAD", salt).ok());
  EXPECT_FALSE(MakeScramCredentials(ScramMechanism::kSha256, "a\x07", salt).ok());
  EXPECT_FALSE(MakeScramCredentials(ScramMechanism::kSha256, "\xFF", salt).ok());
  // Stored mode: U+0221 was unassigned in Unicode 3.2, so no credentials are made of it.
  EXPECT_FALSE(MakeScramCredentials(ScramMechanism::kSha256, "a\xC8\xA1", salt).ok());
  // Different salts, different keys; the same inputs, the same keys.
  EXPECT_NE(MakeScramCredentials(ScramMechanism::kSha256, "secret", salt)->stored_key,
            MakeScramCredentials(ScramMechanism::kSha256, "secret", salt + "x")->stored_key);
  EXPECT_EQ(MakeScramCredentials(ScramMechanism::kSha256, "secret", salt)->stored_key,
            MakeScramCredentials(ScramMechanism::kSha256, "secret", salt)->stored_key);
}

TEST(ScramCredentialsTest, MakeScramNonceIsBase64OfTheRandomBytes) {
  EXPECT_EQ(MakeScramNonce("0123456789abcdefgh"), "MDEyMzQ1Njc4OWFiY2RlZmdo");
  EXPECT_EQ(MakeScramNonce(std::string(kScramNonceRandomBytes, '\xFF')).size(), 24u);
}

TEST(UserCredentialsTextTest, RoundTripsAndMatchesRfc5803) {
  config::UserCredentials credentials;
  credentials.scram_sha1 =
      *MakeScramCredentials(ScramMechanism::kSha1, "pencil", Decode(Rfc5802::kSalt));
  credentials.scram_sha256 =
      *MakeScramCredentials(ScramMechanism::kSha256, "pencil", Decode(Rfc7677::kSalt));
  const std::string text = EncodeUserCredentials(credentials);
  EXPECT_EQ(
      text,
      "SCRAM-SHA-1$4096:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/"
      "fTE= SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLm"
      "tbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
  absl::StatusOr<config::UserCredentials> parsed = ParseUserCredentials(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, credentials);

  config::UserCredentials only_sha256;
  only_sha256.scram_sha256 = credentials.scram_sha256;
  EXPECT_EQ(*ParseUserCredentials(EncodeUserCredentials(only_sha256)), only_sha256);
  config::UserCredentials only_sha1;
  only_sha1.scram_sha1 = credentials.scram_sha1;
  EXPECT_EQ(*ParseUserCredentials(EncodeUserCredentials(only_sha1)), only_sha1);
}

TEST(UserCredentialsTextTest, MakeUserCredentialsGivesBothHashes) {
  absl::StatusOr<config::UserCredentials> credentials =
      MakeUserCredentials("secret", "salt-for-sha1", "salt-for-sha256");
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  ASSERT_TRUE(credentials->scram_sha1.has_value());
  ASSERT_TRUE(credentials->scram_sha256.has_value());
  EXPECT_EQ(credentials->scram_sha1->salt, "salt-for-sha1");
  EXPECT_EQ(credentials->scram_sha256->stored_key.size(), 32u);
  EXPECT_TRUE(config::ValidateUserCredentials(*credentials).ok());
  EXPECT_FALSE(MakeUserCredentials("secret", "short", "salt-for-sha256").ok());
  EXPECT_FALSE(MakeUserCredentials("", "salt-for-sha1", "salt-for-sha256").ok());
}

TEST(UserCredentialsTextTest, RefusesEverythingElse) {
  const std::string sha1 =
      "SCRAM-SHA-1$4096:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE=";
  const std::string sha256 =
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
      "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
  ASSERT_TRUE(ParseUserCredentials(sha1).ok());
  ASSERT_TRUE(ParseUserCredentials(sha256).ok());
  ASSERT_TRUE(ParseUserCredentials(sha1 + " " + sha256).ok());
  // Salts and keys longer than a secret holds (it keeps them inline) are refused, not held.
  const std::string long_salt = Base64Encode(std::string(129, 's'));
  const std::string long_key = Base64Encode(std::string(33, 'k'));
  const std::vector<std::string> cases = {
      "SCRAM-SHA-1$4096:" + long_salt +
          "$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE=",
      "SCRAM-SHA-1$4096:QSXCR+Q6sek8bf92$" + long_key + ":D+CSWLOshSulAsxiupA+qs2/fTE=",
      "SCRAM-SHA-1$4096:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:" + long_key,
      "",
      " ",
      sha1 + " ",
      " " + sha1,
      sha1 + "  " + sha256,
      sha256 + " " + sha1,  // order
      sha1 + " " + sha1,    // repeated
      sha256 + " " + sha256,
      "SCRAM-SHA-512$4096:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/"
      "fTE=",
      "scram-sha-1$4096:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE=",
      "SCRAM-SHA-1$04096:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/"
      "fTE=",
      "SCRAM-SHA-1$4095:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE=",
      "SCRAM-SHA-1$+4096:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/"
      "fTE=",
      "SCRAM-SHA-1$99999999999:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+"
      "qs2/fTE=",
      "SCRAM-SHA-1$:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE=",
      "SCRAM-SHA-1$4096:QSXCR+Q6sek8bf9$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE=",
      "SCRAM-SHA-1$4096:QSXCRQ==$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE=",
      "SCRAM-SHA-1$4096:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y:D+CSWLOshSulAsxiupA+qs2/fTE=",
      "SCRAM-SHA-1$4096:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTF=",
      "SCRAM-SHA-1$4096:QSXCR+Q6sek8bf92$" + sha256.substr(sha256.rfind('$') + 1),  // key sizes
      "SCRAM-SHA-1$4096:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=",
      "SCRAM-SHA-1$4096:QSXCR+Q6sek8bf92",
      "SCRAM-SHA-1$4096$QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE=",
      "SCRAM-SHA-1",
      "SCRAM-SHA-1$",
      sha1 + "$",
      sha1 + ":",
      sha1 + "\n",
      sha1 + " " + std::string(2000, 'x'),
  };
  for (const std::string& text : cases) {
    absl::StatusOr<config::UserCredentials> parsed = ParseUserCredentials(text);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
}

// ---------------------------------------------------------------------------
// Base64 and SASLprep

TEST(Base64Test, EncodesRfc4648Vectors) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(Base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode("\xFB\xFF"), "+/8=");
  for (std::string_view bytes : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xFB\xFF"}) {
    EXPECT_EQ(Base64Decode(Base64Encode(bytes)), std::string(bytes));
  }
}

TEST(Base64Test, DecodesOnlyCanonicalText) {
  for (std::string_view text : {"Zg",    "Zg=",    "Zg===",    "Zh==",     "Zm9=",
                                "Zm8",   "Z",      "====",     "Zg==Zg==", "Zm 9v",
                                " Zm9v", "Zm9v\n", "Zm9-",     "Zm9_",     "Zm=v",
                                "=Zm9",  "Zm9v=",  "Zm9v====", "Z===",     "\xC3\xA9\xC3\xA9"}) {
    EXPECT_EQ(Base64Decode(text), std::nullopt) << text;
  }
  // Every one-character change of a valid text either fails or decodes to other bytes
  // that encode back to that text.
  const std::string valid = Base64Encode("any carnal pleas");
  for (size_t at = 0; at < valid.size(); ++at) {
    for (int c = 0; c < 256; ++c) {
      std::string changed = valid;
      changed[at] = static_cast<char>(c);
      std::optional<std::string> bytes = Base64Decode(changed);
      if (bytes.has_value()) {
        EXPECT_EQ(Base64Encode(*bytes), changed);
      }
    }
  }
}

TEST(SaslPrepTest, Rfc4013Examples) {
  auto prep = [](std::string_view text, SaslPrepMode mode = SaslPrepMode::kQuery) {
    absl::StatusOr<std::string> prepared = SaslPrep(text, mode);
    return prepared.ok() ? *prepared : Concat("error: ", std::string(prepared.status().message()));
  };
  // RFC 4013 §3.
  EXPECT_EQ(prep("I\xC2\xADX"), "IX");  // soft hyphen mapped to nothing
  EXPECT_EQ(prep("user"), "user");      // no transformation
  EXPECT_EQ(prep("USER"), "USER");      // case preserved
  EXPECT_EQ(prep("\xC2\xAA"), "a");     // NFKC
  EXPECT_EQ(prep("\xE2\x85\xA8"), "IX");
  EXPECT_THAT(prep("\x07"), HasSubstr("prohibits"));
  EXPECT_THAT(prep("\xD8\xA7"
                   "1"),
              HasSubstr("bidirectional"));
  // Non-ASCII space becomes SPACE; ASCII passes as it is.
  EXPECT_EQ(prep("a\xC2\xA0"
                 "b"),
            "a b");
  EXPECT_EQ(prep(" !~"), " !~");
  EXPECT_EQ(prep(""), "");
  EXPECT_EQ(prep("\xC2\xAD"), "");
  // Query mode lets unassigned code points through; stored mode does not.
  EXPECT_EQ(prep("\xC8\xA1"), "\xC8\xA1");
  EXPECT_THAT(prep("\xC8\xA1", SaslPrepMode::kStored), HasSubstr("unassigned"));
  EXPECT_THAT(prep("\xFF"), HasSubstr("UTF-8"));
  EXPECT_THAT(prep(std::string(kSaslPrepInputBytesMax + 1, 'a')), HasSubstr("longer"));
  // A mapping that lengthens the text a great deal (U+FDFA is 18 code points in NFKC).
  const std::string lengthening = [] {
    std::string text;
    for (int i = 0; i < 100; ++i) text.append("\xEF\xB7\xBA");
    return text;
  }();
  absl::StatusOr<std::string> long_result = SaslPrep(lengthening, SaslPrepMode::kQuery);
  ASSERT_TRUE(long_result.ok()) << long_result.status();
  EXPECT_GT(long_result->size(), 3000u);
}

TEST(SaslPrepTest, ValidatesUtf8) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF"));
  for (std::string_view bad : {"\x80", "\xC3", "\xC0\x80", "\xE0\x80\x80", "\xED\xA0\x80",
                               "\xF4\x90\x80\x80", "\xF8\x88\x80\x80\x80", "\xFF", "a\xE2\x82"}) {
    EXPECT_FALSE(IsValidUtf8(bad)) << bad;
  }
}

TEST(SaslConditionTest, NamesAreRfc6120Elements) {
  EXPECT_EQ(SaslConditionName(SaslCondition::kNotAuthorized), "not-authorized");
  EXPECT_EQ(SaslConditionName(SaslCondition::kMalformedRequest), "malformed-request");
  EXPECT_EQ(SaslConditionName(SaslCondition::kInvalidAuthzid), "invalid-authzid");
  EXPECT_EQ(SaslConditionName(SaslCondition::kTemporaryAuthFailure), "temporary-auth-failure");
  EXPECT_EQ(SaslConditionName(SaslCondition::kIncorrectEncoding), "incorrect-encoding");
}

}  // namespace
}  // namespace stanzad::sasl
