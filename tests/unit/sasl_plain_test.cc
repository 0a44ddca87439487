// PLAIN: the RFC 4616 message format (vectors, bounds, NULs, UTF-8) and the server's check
// of the password against stored SCRAM credentials.
#include "core/sasl/plain.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/concat.h"
#include "core/sasl/credentials.h"
#include "core/sasl/sasl_server.h"
#include "core/sasl/scram.h"

namespace stanzad::sasl {
namespace {

using namespace std::string_literals;
using namespace std::string_view_literals;
using ::testing::HasSubstr;

// "authzid|authcid|password" of a parsed message, or "error: …".
std::string Fields(std::string_view message) {
  absl::StatusOr<PlainMessage> parsed = ParsePlainMessage(message);
  if (!parsed.ok()) return Concat("error: ", std::string(parsed.status().message()));
  return Concat(parsed->authzid, "|", parsed->authcid, "|", parsed->password);
}

TEST(PlainMessageTest, Rfc4616Examples) {
  // RFC 4616 §4: "tim" with password "tanstaaftanstaaf", without and with an authzid.
  EXPECT_EQ(Fields("\0tim\0tanstaaftanstaaf"sv), "|tim|tanstaaftanstaaf");
  EXPECT_EQ(Fields("Ursel\0Kurt\0xipj3plmq"sv), "Ursel|Kurt|xipj3plmq");
}

TEST(PlainMessageTest, AcceptsUtf8AndFieldsUpToTheLimit) {
  EXPECT_EQ(Fields("\0\xC3\xA9l\xC3\xA8ve\0p\xC3\xA4ss w\xF0\x9F\x98\x80rd"sv),
            "|\xC3\xA9l\xC3\xA8ve|p\xC3\xA4ss w\xF0\x9F\x98\x80rd");
  const std::string longest(kPlainFieldBytesMax, 'x');
  EXPECT_EQ(Fields(Concat(longest, "\0"sv, longest, "\0"sv, longest)),
            Concat(longest, "|", longest, "|", longest));
  // Bytes other than NUL pass as they are; SASLprep happens later.
  EXPECT_EQ(Fields("\0a b\0\x01\x7F"sv), "|a b|\x01\x7F");
}

TEST(PlainMessageTest, RefusesMalformedMessages) {
  const std::string too_long(kPlainFieldBytesMax + 1, 'x');
  const std::vector<std::string> cases = {
      "",
      "tim",
      "tim\0"s,
      "\0tim"s,
      "\0\0"s,
      "\0tim\0"s,       // empty password
      "\0\0password"s,  // empty authcid
      "zid\0\0password"s,
      "\0tim\0pass\0"s,  // three NULs
      "\0tim\0pa\0ss"s,
      "\0\0\0"s,
      "a\0b\0c\0d"s,
      too_long + "\0tim\0pass"s,
      "\0"s + too_long + "\0pass"s,
      "\0tim\0"s + too_long,
      "\0tim\0pa\xFFss"s,      // not UTF-8
      "\0t\xC3\0pass"s,        // truncated sequence
      "\0tim\0\xC0\xAF"s,      // overlong '/'
      "\0tim\0\xED\xA0\x80"s,  // surrogate
      "\xF4\x90\x80\x80\0tim\0pass"s,
  };
  for (const std::string& message : cases) {
    absl::StatusOr<PlainMessage> parsed = ParsePlainMessage(message);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << Fields(message);
  }
  EXPECT_THAT(Fields("\0tim\0pass\0"sv), HasSubstr("more than two NUL"));
  EXPECT_THAT(Fields("\0tim\0"sv), HasSubstr("password is empty"));
}

// Users as the node configuration holds them.
class PlainServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<config::UserCredentials> both =
        MakeUserCredentials("tanstaaftanstaaf", "salt-for-sha-1", "salt-for-sha-256");
    ASSERT_TRUE(both.ok()) << both.status();
    users_["tim"] = *both;
    config::UserCredentials only_sha1;
    only_sha1.scram_sha1 = *MakeScramCredentials(ScramMechanism::kSha1, "old", "salt-salt-salt");
    users_["sha1-only"] = only_sha1;
    config::UserCredentials only_sha256;
    only_sha256.scram_sha256 =
        *MakeScramCredentials(ScramMechanism::kSha256, "new", "salt-salt-salt", 5000);
    users_["sha256-only"] = only_sha256;
    // RFC 4013 §3: "I<U+00AD>X" and "IX" are one password after SASLprep.
    users_["prepped"] = *MakeUserCredentials("IX", "salt-for-sha-1", "salt-for-sha-256");
  }

  PlainServer MakeServer(AuthorizationCheck authorize = {}) {
    PlainServer::Params params;
    params.lookup = [this](std::string_view name) -> std::optional<config::UserCredentials> {
      looked_up_.emplace_back(name);
      auto it = users_.find(std::string(name));
      if (it == users_.end()) return std::nullopt;
      return it->second;
    };
    params.authorize = std::move(authorize);
    return PlainServer(std::move(params));
  }

  // "success", or "failure: <condition>".
  std::string Authenticate(std::string_view message, AuthorizationCheck authorize = {}) {
    PlainServer server = MakeServer(std::move(authorize));
    SaslStep step = server.Step(message);
    EXPECT_TRUE(server.finished());
    if (step.kind == SaslStep::Kind::kSuccess) {
      EXPECT_TRUE(step.data.empty());
      EXPECT_TRUE(server.succeeded());
      return "success";
    }
    EXPECT_EQ(step.kind, SaslStep::Kind::kFailure);
    EXPECT_FALSE(step.reason.empty());
    EXPECT_FALSE(server.succeeded());
    EXPECT_EQ(server.username(), "");
    return Concat("failure: ", SaslConditionName(step.condition));
  }

  std::map<std::string, config::UserCredentials> users_;
  std::vector<std::string> looked_up_;
};

TEST_F(PlainServerTest, RightPasswordSucceeds) {
  PlainServer server = MakeServer();
  EXPECT_EQ(server.Step("\0tim\0tanstaaftanstaaf"sv).kind, SaslStep::Kind::kSuccess);
  EXPECT_EQ(server.username(), "tim");
  EXPECT_EQ(server.authzid(), "");
  EXPECT_EQ(looked_up_, std::vector<std::string>{"tim"});
  EXPECT_EQ(Authenticate("\0sha1-only\0old"sv), "success");
  EXPECT_EQ(Authenticate("\0sha256-only\0new"sv), "success");
}

TEST_F(PlainServerTest, WrongPasswordOrUnknownUserIsNotAuthorized) {
  EXPECT_EQ(Authenticate("\0tim\0tanstaaftanstaaF"sv), "failure: not-authorized");
  EXPECT_EQ(Authenticate("\0tim\0tanstaaftanstaa"sv), "failure: not-authorized");
  EXPECT_EQ(Authenticate("\0tim\0tanstaaftanstaaf "sv), "failure: not-authorized");
  EXPECT_EQ(Authenticate("\0Tim\0tanstaaftanstaaf"sv), "failure: not-authorized");
  EXPECT_EQ(Authenticate("\0nobody\0tanstaaftanstaaf"sv), "failure: not-authorized");
  EXPECT_EQ(Authenticate("\0sha1-only\0new"sv), "failure: not-authorized");
  // A password SASLprep refuses can match nothing.
  EXPECT_EQ(Authenticate("\0tim\0tanstaaf\x07"sv), "failure: not-authorized");
}

TEST_F(PlainServerTest, UsernameAndPasswordAreSaslPrepped) {
  EXPECT_EQ(Authenticate("\0prepped\0I\xC2\xADX"sv), "success");
  EXPECT_EQ(Authenticate("\0prepped\0\xE2\x85\xA8"sv), "success");  // ROMAN NUMERAL NINE
  EXPECT_EQ(Authenticate("\0pre\xC2\xADpped\0IX"sv), "success");
  EXPECT_EQ(looked_up_.back(), "prepped");
  EXPECT_EQ(Authenticate("\0ti\x07m\0tanstaaftanstaaf"sv), "failure: malformed-request");
  EXPECT_EQ(Authenticate("\0\xC2\xAD\0tanstaaftanstaaf"sv), "failure: malformed-request");
}

TEST_F(PlainServerTest, MalformedMessagesAreMalformedRequests) {
  for (std::string_view message :
       {""sv, "tim"sv, "\0tim\0"sv, "\0tim\0a\0b"sv, "\0tim\0\xFF"sv, "\0\0tanstaaftanstaaf"sv}) {
    EXPECT_EQ(Authenticate(message), "failure: malformed-request") << Fields(message);
  }
  EXPECT_TRUE(looked_up_.empty());
}

TEST_F(PlainServerTest, AuthzidNeedsTheAuthorizationCheck) {
  auto own_jid = [](std::string_view username, std::string_view authzid) {
    return authzid == Concat(username, "@example.com");
  };
  PlainServer server = MakeServer(own_jid);
  EXPECT_EQ(server.Step("tim@example.com\0tim\0tanstaaftanstaaf"sv).kind, SaslStep::Kind::kSuccess);
  EXPECT_EQ(server.authzid(), "tim@example.com");
  EXPECT_EQ(Authenticate("kurt@example.com\0tim\0tanstaaftanstaaf"sv, own_jid),
            "failure: invalid-authzid");
  EXPECT_EQ(Authenticate("tim@example.com\0tim\0tanstaaftanstaaf"sv), "failure: invalid-authzid");
  // The password is checked first: a wrong one says nothing about the authzid.
  EXPECT_EQ(Authenticate("kurt@example.com\0tim\0wrong"sv, own_jid), "failure: not-authorized");
}

TEST_F(PlainServerTest, InvalidStoredCredentialsAreATemporaryFailure) {
  config::UserCredentials broken;
  broken.scram_sha256 = config::ScramSecret{"short", 4096, "k", "k"};
  users_["broken"] = broken;
  EXPECT_EQ(Authenticate("\0broken\0x"sv), "failure: temporary-auth-failure");
}

TEST_F(PlainServerTest, NothingIsAcceptedAfterTheEnd) {
  PlainServer server = MakeServer();
  ASSERT_EQ(server.Step("\0tim\0tanstaaftanstaaf"sv).kind, SaslStep::Kind::kSuccess);
  SaslStep again = server.Step("\0tim\0tanstaaftanstaaf"sv);
  EXPECT_EQ(again.kind, SaslStep::Kind::kFailure);
  EXPECT_EQ(again.condition, SaslCondition::kMalformedRequest);
  EXPECT_TRUE(server.succeeded());
}

TEST_F(PlainServerTest, EveryTruncationOfAGoodMessageFails) {
  const std::string_view good = "\0tim\0tanstaaftanstaaf"sv;
  for (size_t length = 0; length < good.size(); ++length) {
    EXPECT_NE(Authenticate(good.substr(0, length)), "success") << length;
  }
}

TEST(PlainPasswordMatchesTest, ComparesAgainstTheStrongestStoredHash) {
  absl::StatusOr<config::UserCredentials> credentials =
      MakeUserCredentials("secret", "salt-for-sha-1", "salt-for-sha-256");
  ASSERT_TRUE(credentials.ok());
  EXPECT_TRUE(PlainPasswordMatches(*credentials, "secret"));
  EXPECT_FALSE(PlainPasswordMatches(*credentials, "Secret"));
  // With both present, SCRAM-SHA-256 decides: a mismatching SHA-1 record is not consulted.
  config::UserCredentials mixed = *credentials;
  mixed.scram_sha1 = *MakeScramCredentials(ScramMechanism::kSha1, "other", "salt-salt-salt");
  EXPECT_TRUE(PlainPasswordMatches(mixed, "secret"));
  EXPECT_FALSE(PlainPasswordMatches(mixed, "other"));
}

}  // namespace
}  // namespace stanzad::sasl
