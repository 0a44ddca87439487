#include "admin/node_commands.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "admin/node_config.h"
#include "cluster/storage/atomic_file.h"
#include "core/base/concat.h"
#include "core/sasl/credentials.h"

namespace stanzad {
namespace {

using admin::AdminRequest;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;

CommandResult Execute(NodeConfig* config, std::vector<std::string> args, bool json = false) {
  return ExecuteNodeCommand(AdminRequest{std::move(args), json}, config, NodeRuntimeStatus());
}

NodeConfig Configured() {
  NodeConfig config;
  EXPECT_EQ(Execute(&config, {"domain", "Example.COM"}).response.exit_code, 0);
  EXPECT_EQ(Execute(&config, {"listen", "127.0.0.1", "::1"}).response.exit_code, 0);
  EXPECT_EQ(Execute(&config, {"enable"}).response.exit_code, 0);
  return config;
}

// Credentials as stanzactl makes them (fixed salts here, so tests repeat).
config::UserCredentials Credentials(std::string_view password,
                                    std::string_view salt = "sixteen-bytes-ok") {
  absl::StatusOr<config::UserCredentials> credentials =
      sasl::MakeUserCredentials(password, salt, std::string(salt) + "/256");
  EXPECT_TRUE(credentials.ok()) << credentials.status();
  return *credentials;
}

std::string CredentialsText(std::string_view password, std::string_view salt = "sixteen-bytes-ok") {
  return sasl::EncodeUserCredentials(Credentials(password, salt));
}

TEST(NodeConfigTest, SerializeParseRoundTrip) {
  NodeConfig config = Configured();
  config.callbridges["cb1"] = "kvgP1SRzWVabhiPVAb1";
  absl::StatusOr<NodeConfig> parsed = ParseNodeConfig(SerializeNodeConfig(config));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, config);
  EXPECT_TRUE(parsed->ReadyToServe());
}

TEST(NodeConfigTest, ParseRefusesWhatItDoesNotUnderstand) {
  for (const char* text :
       {"", "stanzad-config 2\n", "stanzad-config 1\ndomain ex ample\n",
        "stanzad-config 1\nlisten nowhere\n", "stanzad-config 1\ncallbridge cb1\n",
        "stanzad-config 1\ncolour blue\n", "stanzad-config 1\nenabled 1"}) {
    EXPECT_FALSE(ParseNodeConfig(text).ok()) << text;
  }
}

TEST(NodeConfigTest, UsersRoundTripAsOneLineEach) {
  NodeConfig config = Configured();
  config.users["alice"] = Credentials("pencil");
  config::UserCredentials only_sha256 = Credentials("another one", "salt-for-bob-123");
  only_sha256.scram_sha1.reset();
  config.users["bob"] = only_sha256;
  const std::string text = SerializeNodeConfig(config);
  EXPECT_THAT(text, HasSubstr(Concat("\nuser alice ", CredentialsText("pencil"), "\n")));
  EXPECT_THAT(text, HasSubstr("\nuser bob SCRAM-SHA-256$4096:"));
  EXPECT_THAT(text, Not(HasSubstr("pencil")));
  absl::StatusOr<NodeConfig> parsed = ParseNodeConfig(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, config);

  char pattern[] = "/tmp/stanzad-config-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  ASSERT_TRUE(SaveNodeConfig(dir, config).ok());
  absl::StatusOr<NodeConfig> loaded = LoadNodeConfig(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, config);
  // The keys are secrets of a kind: only the daemon's user may read them.
  EXPECT_EQ(std::filesystem::status(dir + "/config").permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  std::filesystem::remove_all(dir);
}

TEST(NodeConfigTest, ParseRefusesBadUserLinesNamingTheLineButNotTheKeys) {
  const std::string good = CredentialsText("pencil");
  struct Case {
    std::string line;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {"user alice garbage", "SASL credentials"},
           {"user alice " + good.substr(0, good.size() - 4), "SASL credentials"},
           {"user alice " + good + " SCRAM-SHA-256$4096:AAAA", "SASL credentials"},
           {"user Alice " + good, "canonical form"},
           {"user al:ice " + good, "user name"},
           {"user alice", "needs a name and credentials"},
           {"user  " + good, "user name is empty"},
       }) {
    absl::StatusOr<NodeConfig> parsed =
        ParseNodeConfig(Concat("stanzad-config 1\ndomain example.com\n", c.line, "\n"));
    ASSERT_FALSE(parsed.ok()) << c.line;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(parsed.status().message()), StartsWith("config line 3: ")) << c.line;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(c.says)) << c.line;
    EXPECT_THAT(std::string(parsed.status().message()), Not(HasSubstr(good.substr(20, 16))))
        << c.line;
  }
  absl::StatusOr<NodeConfig> twice =
      ParseNodeConfig(Concat("stanzad-config 1\nuser alice ", good, "\nuser alice ", good, "\n"));
  ASSERT_FALSE(twice.ok());
  EXPECT_THAT(std::string(twice.status().message()),
              StartsWith("config line 3: user listed twice"));
}

TEST(NodeConfigTest, GeneratedSecretsAreMixedAndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    const std::string secret = GenerateCallbridgeSecret();
    EXPECT_THAT(secret, MatchesRegex("[A-Za-z0-9]{20}"));
    EXPECT_TRUE(ValidateSecret(secret).ok());
    seen.insert(secret);
  }
  EXPECT_EQ(seen.size(), 200u);
}

TEST(NodeConfigTest, SaveIsAtomicAndLoadsBack) {
  char pattern[] = "/tmp/stanzad-config-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  EXPECT_EQ(LoadNodeConfig(dir).status().code(), absl::StatusCode::kNotFound);
  NodeConfig config = Configured();
  ASSERT_TRUE(SaveNodeConfig(dir, config).ok());
  EXPECT_FALSE(std::filesystem::exists(dir + "/config.tmp"));
  absl::StatusOr<NodeConfig> loaded = LoadNodeConfig(dir);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(*loaded, config);
  // A torn file is reported, never half-read.
  ASSERT_TRUE(storage::WriteFileAtomically(*storage::PosixFs(), dir, "config",
                                           "stanzad-config 1\ndomain exa")
                  .ok());
  EXPECT_EQ(LoadNodeConfig(dir).status().code(), absl::StatusCode::kDataLoss);
  std::filesystem::remove_all(dir);
}

TEST(NodeCommandsTest, CallbridgeAddListAndDelInTheSeedLayout) {
  NodeConfig config = Configured();
  const CommandResult added = Execute(&config, {"callbridge", "add", "cb1"});
  EXPECT_EQ(added.response.exit_code, 0);
  EXPECT_TRUE(added.config_changed);
  EXPECT_THAT(added.response.output,
              MatchesRegex("\\*\\*\\*\nCallbridge : cb1\nDomain     : example.com\n"
                           "Secret     : [A-Za-z0-9]{20}\n"));
  Execute(&config, {"callbridge", "add", "cb2"});
  const std::string list = Execute(&config, {"callbridge", "list"}).response.output;
  EXPECT_THAT(list, StartsWith("***\nCallbridge : cb1\n"));
  EXPECT_THAT(list, HasSubstr("***\nCallbridge : cb2\n"));
  EXPECT_THAT(
      Execute(&config, {"callbridge", "list"}, true).response.output,
      HasSubstr("\"name\":\"cb1\",\"domain\":\"example.com\",\"component\":\"cb1.example.com\""));
  EXPECT_EQ(Execute(&config, {"callbridge", "del", "cb1"}).response.exit_code, 0);
  EXPECT_FALSE(config.callbridges.contains("cb1"));
}

TEST(NodeCommandsTest, ErrorsAreOneLineAndLeaveTheConfigAlone) {
  NodeConfig config = Configured();
  Execute(&config, {"callbridge", "add", "cb1"});
  const NodeConfig before = config;
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {{"callbridge", "add", "cb1"}, 1, "already exists"},
           {{"callbridge", "add", "CB_1"}, 1, "not valid"},
           {{"callbridge", "del", "cb9"}, 1, "no call bridge named cb9"},
           {{"callbridge", "add-secret", "cb1", "--secret=different-secret"}, 1, "--force"},
           {{"callbridge", "add-secret", "cb2", "--secret=short"}, 1, "8 to 256"},
           {{"callbridge", "frobnicate", "cb1"}, 2, "usage"},
           {{"domain", "not a domain"}, 1, "not a valid DNS name"},
           {{"domain", "a.com", "b.com"}, 2, "usage"},
           {{"domain", "exa_mple.com"}, 1, "not a valid DNS name"},
           {{"listen", "localhost"}, 1, "not an IPv4 or IPv6 address"},
           {{"reset"}, 1, "--force"},
           {{"launch", "rockets"}, 2, "unknown command"},
       }) {
    const CommandResult result = Execute(&config, c.args);
    EXPECT_EQ(result.response.exit_code, c.exit_code) << c.args[0] << " " << c.args[1];
    EXPECT_THAT(result.response.output, HasSubstr(c.says));
    EXPECT_EQ(std::count(result.response.output.begin(), result.response.output.end(), '\n'), 1);
    EXPECT_FALSE(result.config_changed);
    EXPECT_EQ(config, before);
  }
}

TEST(NodeCommandsTest, AddSecretIsIdempotentAndForceReplaces) {
  NodeConfig config = Configured();
  EXPECT_TRUE(
      Execute(&config, {"callbridge", "add-secret", "cb1", "--secret=secret-one"}).config_changed);
  const CommandResult again =
      Execute(&config, {"callbridge", "add-secret", "cb1", "--secret=secret-one"});
  EXPECT_EQ(again.response.exit_code, 0);
  EXPECT_FALSE(again.config_changed);
  EXPECT_EQ(again.response.output,
            "Call bridge cb1: secret unchanged (it is the one configured)\n");
  EXPECT_TRUE(
      Execute(&config, {"callbridge", "add-secret", "cb1", "--secret=secret-two", "--force"})
          .config_changed);
  EXPECT_EQ(config.callbridges["cb1"], "secret-two");
}

// Each command that changes the configuration says what it changed, as a value: applied
// to the configuration before the command, it gives the one after; the kinds a cluster
// replicates are exactly the cluster's commands; errors and reads change nothing.
TEST(NodeCommandsTest, EachChangeIsTypedAndReplaysToTheSameConfiguration) {
  NodeConfig config = Configured();
  const std::string alice = CredentialsText("old password");
  const std::string alice_new = CredentialsText("new password", "another-salt-16b");
  struct Case {
    std::vector<std::string> args;
    std::optional<NodeChange> change;  // nullopt: nothing changed
    bool replicated = false;
  };
  const std::vector<Case> cases = {
      {{"domain", "Example.ORG"}, cluster::SetDomain{"example.org"}, true},
      {{"listen", "127.0.0.2"}, cluster::SetListen{{"127.0.0.2"}}, false},
      {{"callbridge", "add-secret", "cb1", "--secret=kvgP1SRzWVabhiPVAb1"},
       cluster::AddCallbridge{"cb1", "kvgP1SRzWVabhiPVAb1", false},
       true},
      {{"callbridge", "add-secret", "cb1", "--secret=another-secret-value", "--force"},
       cluster::AddCallbridge{"cb1", "another-secret-value", true},
       true},
      {{"callbridge", "list"}, std::nullopt},
      {{"callbridge", "del", "cb1"}, cluster::DeleteCallbridge{"cb1"}, true},
      {{"callbridge", "del", "nobody"}, std::nullopt},  // an error
      {{"user", "add", "Alice", alice},
       cluster::AddUser{"alice", Credentials("old password")},
       true},
      {{"user", "passwd", "alice", alice_new},
       cluster::SetUserCredentials{"alice", Credentials("new password", "another-salt-16b")},
       true},
      {{"user", "del", "alice@example.org"}, cluster::DeleteUser{"alice"}, true},
      {{"disable"}, SetEnabled{false}, false},
      {{"enable"}, SetEnabled{true}, false},
      {{"status"}, std::nullopt},
      {{"reset", "--force"}, ResetConfig{}, false},
  };
  for (const Case& c : cases) {
    const std::string command = absl::StrJoin(c.args, " ");
    const NodeConfig before = config;
    const CommandResult result = Execute(&config, c.args);
    ASSERT_EQ(result.change.has_value(), c.change.has_value())
        << command << ": " << result.response.output;
    EXPECT_EQ(result.config_changed, result.change.has_value()) << command;
    if (!c.change) {
      EXPECT_EQ(config, before) << command;
      continue;
    }
    EXPECT_EQ(*result.change, *c.change) << command;
    EXPECT_EQ(ReplicatedCommand(*result.change).has_value(), c.replicated) << command;
    NodeConfig replayed = before;
    ApplyNodeChange(*result.change, &replayed);
    EXPECT_EQ(replayed, config) << command;
  }
}

TEST(NodeCommandsTest, ImportBatchesAreOneTypedChangeOrAnErrorNamingTheItem) {
  NodeConfig config = Configured();
  ASSERT_EQ(Execute(&config, {"callbridge", "add-secret", "cb1", "--secret=kvgP1SRzWVabhiPVAb1"})
                .response.exit_code,
            0);
  const NodeConfig before = config;
  CommandResult conflict =
      Execute(&config, {"callbridge", "import-batch", "cb2 secret-number-2\ncb1 another-secret"});
  EXPECT_EQ(conflict.response.exit_code, 1);
  EXPECT_THAT(conflict.response.output,
              StartsWith("error: item 2: call bridge cb1 already has a different secret"));
  EXPECT_EQ(config, before);
  EXPECT_THAT(Execute(&config, {"callbridge", "import-batch", "cb2 short"}).response.output,
              StartsWith("error: item 1: call bridge cb2: secret must be 8"));
  EXPECT_THAT(Execute(&config, {"callbridge", "import-batch", "cb2 secret-number-2\ncb2 x12345678"})
                  .response.output,
              StartsWith("error: item 2: call bridge cb2 appears twice"));
  EXPECT_THAT(
      Execute(&config, {"callbridge", "import-batch", "cb2 secret-number-2\n\ncb3 x12345678"})
          .response.output,
      StartsWith("error: item 2: "));  // an empty line is a line
  EXPECT_EQ(config, before);

  CommandResult forced = Execute(&config, {"callbridge", "import-batch", "--force",
                                           "cb2 secret-number-2\ncb1 another-secret"});
  EXPECT_EQ(forced.response.output, "imported 1 1 0\n");
  ASSERT_TRUE(forced.change.has_value());
  EXPECT_EQ(*forced.change,
            NodeChange(cluster::ImportCallbridges{
                {{"cb2", "secret-number-2", true}, {"cb1", "another-secret", true}}}));
  EXPECT_TRUE(ReplicatedCommand(*forced.change).has_value());
  std::vector<NodeConfigEdit> edits;
  EXPECT_TRUE(JournalEdits(*forced.change, &edits));
  EXPECT_EQ(edits.size(), 2u);
  EXPECT_EQ(config.callbridges.at("cb1"), "another-secret");
  // Again: nothing changes, and it says so.
  CommandResult again = Execute(&config, {"callbridge", "import-batch", "--force",
                                          "cb2 secret-number-2\ncb1 another-secret"});
  EXPECT_EQ(again.response.output, "imported 0 0 2\n");
  EXPECT_FALSE(again.change.has_value());

  const std::string alice = CredentialsText("old password");
  CommandResult users =
      Execute(&config, {"user", "import-batch", Concat("alice ", alice, "\nbob ", alice)});
  EXPECT_EQ(users.response.output, "imported 2 0 0\n");
  EXPECT_EQ(config.users.size(), 2u);
  const std::string other = CredentialsText("new password", "another-salt-16b");
  EXPECT_THAT(Execute(&config, {"user", "import-batch", Concat("bob ", other)}).response.output,
              StartsWith("error: item 1: user bob already exists with another password"));
  EXPECT_THAT(Execute(&config, {"user", "import-batch", "Bob " + other}).response.output,
              StartsWith("error: item 1: "));  // not a canonical localpart
  EXPECT_EQ(
      Execute(&config, {"user", "import-batch", "--force", Concat("bob ", other)}).response.output,
      "imported 0 1 0\n");
  EXPECT_EQ(config.users.at("bob"), Credentials("new password", "another-salt-16b"));
}

TEST(NodeCommandsTest, PagesWalkEveryNameOnceInOrder) {
  NodeConfig config = Configured();
  std::string lines;
  for (int i = 0; i < 25; ++i)
    lines += Concat(lines.empty() ? "" : "\n", "cb", std::to_string(i), " secret-",
                    std::to_string(i), "x");
  ASSERT_EQ(Execute(&config, {"callbridge", "import-batch", lines}).response.exit_code, 0);
  std::vector<std::string> seen;
  std::string after;
  for (int pages = 1;; ++pages) {
    ASSERT_LE(pages, 3);
    const CommandResult page =
        Execute(&config, {"callbridge", "export", "--after=" + after, "--limit=10"});
    ASSERT_EQ(page.response.exit_code, 0) << page.response.output;
    std::vector<std::string> rows = absl::StrSplit(page.response.output, '\n', absl::SkipEmpty());
    ASSERT_FALSE(rows.empty());
    const std::vector<std::string> head = absl::StrSplit(rows[0], ' ');
    ASSERT_EQ(head[0], "page");
    EXPECT_EQ(head[1], "25");
    seen.insert(seen.end(), rows.begin() + 1, rows.end());
    if (head.size() == 2) break;
    after = head[2];
    EXPECT_EQ(after, seen.back().substr(0, seen.back().find(' ')));
  }
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(seen.front(), "cb0 secret-0x");
  // A JSON page holds the objects, separated by commas.
  const CommandResult json =
      Execute(&config, {"callbridge", "list", "--after=cb7", "--limit=1"}, true);
  EXPECT_THAT(json.response.output, StartsWith("page 25 cb8\n{\"name\":\"cb8\""));
  EXPECT_EQ(Execute(&config, {"callbridge", "list", "--limit=0"}).response.exit_code, 2);
  EXPECT_EQ(Execute(&config, {"user", "export", "--limit=10"}).response.output, "page 0\n");
}

TEST(NodeCommandsTest, NeedsADomainBeforeBridges) {
  NodeConfig config;
  EXPECT_THAT(Execute(&config, {"callbridge", "add", "cb1"}).response.output,
              HasSubstr("set the XMPP domain first"));
}

TEST(NodeCommandsTest, ResetWithForceForgetsEverything) {
  NodeConfig config = Configured();
  Execute(&config, {"callbridge", "add", "cb1"});
  EXPECT_EQ(Execute(&config, {"reset", "--force"}).response.exit_code, 0);
  EXPECT_EQ(config, NodeConfig());
}

TEST(NodeCommandsTest, UserAddListPasswdDel) {
  NodeConfig config = Configured();
  EXPECT_EQ(Execute(&config, {"user", "list"}).response.output,
            "No users. Add one with: stanzactl user add NAME (it asks for the password)\n");
  EXPECT_EQ(Execute(&config, {"user", "list"}, true).response.output,
            "{\"total\":0,\"users\":[]}\n");

  const CommandResult added = Execute(&config, {"user", "add", "alice", CredentialsText("pencil")});
  EXPECT_EQ(added.response, (admin::AdminResponse{
                                0, "User alice@example.com added (SCRAM-SHA-1, SCRAM-SHA-256)\n"}));
  EXPECT_TRUE(added.config_changed);
  EXPECT_EQ(config.users.at("alice"), Credentials("pencil"));

  config::UserCredentials only_sha256 = Credentials("x", "salt-for-bob-123");
  only_sha256.scram_sha1.reset();
  EXPECT_TRUE(
      Execute(&config, {"user", "add", "bob@example.com", sasl::EncodeUserCredentials(only_sha256)})
          .config_changed);
  const std::string list = Execute(&config, {"user", "list"}).response.output;
  EXPECT_EQ(list,
            "alice@example.com SCRAM-SHA-1 SCRAM-SHA-256\n"
            "bob@example.com SCRAM-SHA-256\n");
  EXPECT_EQ(
      Execute(&config, {"user", "list"}, true).response.output,
      "{\"total\":2,\"users\":["
      "{\"jid\":\"alice@example.com\",\"name\":\"alice\","
      "\"mechanisms\":[\"SCRAM-SHA-1\",\"SCRAM-SHA-256\"]},"
      "{\"jid\":\"bob@example.com\",\"name\":\"bob\",\"mechanisms\":[\"SCRAM-SHA-256\"]}]}\n");

  const CommandResult changed =
      Execute(&config, {"user", "passwd", "ALICE@Example.Com", CredentialsText("new one")});
  EXPECT_EQ(changed.response.exit_code, 0) << changed.response.output;
  EXPECT_EQ(changed.response.output,
            "Password of alice@example.com changed (SCRAM-SHA-1, SCRAM-SHA-256)\n");
  EXPECT_TRUE(changed.config_changed);
  EXPECT_EQ(config.users.at("alice"), Credentials("new one"));
  // The same credentials again change nothing.
  EXPECT_FALSE(
      Execute(&config, {"user", "passwd", "alice", CredentialsText("new one")}).config_changed);

  const CommandResult deleted = Execute(&config, {"user", "del", "alice"});
  EXPECT_EQ(deleted.response, (admin::AdminResponse{0, "User alice@example.com removed\n"}));
  EXPECT_TRUE(deleted.config_changed);
  EXPECT_EQ(Execute(&config, {"user", "list"}).response.output, "bob@example.com SCRAM-SHA-256\n");
}

TEST(NodeCommandsTest, UserNamesAreLocalpartsOfTheNodesDomain) {
  NodeConfig config = Configured();
  const std::string credentials = CredentialsText("pencil");
  for (const char* typed :
       {"alice", "alice@example.com", "Alice@EXAMPLE.com", "ALICE", "alice@example.com."}) {
    NodeConfig fresh = config;
    const CommandResult result = Execute(&fresh, {"user", "add", typed, credentials});
    EXPECT_EQ(result.response.exit_code, 0) << typed << ": " << result.response.output;
    EXPECT_EQ(fresh.users.size(), 1u);
    EXPECT_TRUE(fresh.users.contains("alice")) << typed;
  }
  // The text form may also arrive split at its space.
  const size_t space = credentials.find(' ');
  ASSERT_NE(space, std::string::npos);
  EXPECT_EQ(Execute(&config, {"user", "add", "carol", credentials.substr(0, space),
                              credentials.substr(space + 1)})
                .response.exit_code,
            0);
  EXPECT_EQ(config.users.at("carol"), Credentials("pencil"));

  NodeConfig no_domain;
  const CommandResult early = Execute(&no_domain, {"user", "add", "alice", credentials});
  EXPECT_EQ(early.response.exit_code, 1);
  EXPECT_THAT(early.response.output, HasSubstr("set the domain first"));
  EXPECT_THAT(Execute(&no_domain, {"user", "del", "alice@example.com"}).response.output,
              HasSubstr("set the domain first"));
  EXPECT_EQ(no_domain, NodeConfig());
}

TEST(NodeCommandsTest, UserErrorsAreOneLineNameTheFixAndLeaveTheConfigAlone) {
  NodeConfig config = Configured();
  const std::string credentials = CredentialsText("pencil");
  Execute(&config, {"user", "add", "alice", credentials});
  const NodeConfig before = config;
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {{"user", "add", "alice", credentials},
            1,
            "user alice@example.com already exists; to change the password use: stanzactl user "
            "passwd alice@example.com"},
           {{"user", "add", "Alice@Example.com", credentials}, 1, "already exists"},
           {{"user", "del", "bob"}, 1, "no user bob@example.com (see: stanzactl user list)"},
           {{"user", "passwd", "bob", credentials}, 1, "no user bob@example.com; add it with"},
           {{"user", "add", "bob@example.org", credentials}, 1, "not in this node's domain"},
           {{"user", "add", "bob@sub.example.com", credentials}, 1, "not in this node's domain"},
           {{"user", "add", "bob@example.com/phone", credentials}, 1, "not a user address"},
           {{"user", "add", "example.com@", credentials}, 1, "not a valid user address"},
           {{"user", "add", "@example.com", credentials}, 1, "not a valid user address"},
           {{"user", "add", "b:ob", credentials}, 1, "not a valid user address"},
           {{"user", "add", "bob", "SCRAM-SHA-1$4096:c2FsdA==$AAAA:AAAA"},
            1,
            "bad credentials text"},
           {{"user", "add", "bob", "pencil"}, 1, "let stanzactl make it: stanzactl user add"},
           {{"user", "passwd", "alice", credentials + "x"}, 1, "bad credentials text"},
           {{"user", "add", "bob"}, 2, "usage: user add NAME CREDENTIALS"},
           {{"user", "del"}, 2, "usage: user del NAME"},
           {{"user", "del", "alice", "bob"}, 2, "usage: user del NAME"},
           {{"user", "list", "alice"}, 2, "usage: user list"},
           {{"user", "add", "bob", credentials, "--force"}, 2, "unknown option --force"},
           {{"user", "del", "alice", "--secret=x"}, 2, "unknown option --secret=x"},
           {{"user", "rename", "alice"}, 2, "usage: user add NAME"},
           {{"user"}, 2, "usage: user add NAME"},
           {{"reset"},
            1,
            "0 call bridges with their secrets and 1 user; run 'stanzactl reset --force'"},
       }) {
    const CommandResult result = Execute(&config, c.args);
    EXPECT_EQ(result.response.exit_code, c.exit_code) << c.args.back();
    EXPECT_THAT(result.response.output, HasSubstr(c.says)) << c.args.back();
    EXPECT_EQ(std::count(result.response.output.begin(), result.response.output.end(), '\n'), 1)
        << result.response.output;
    EXPECT_FALSE(result.config_changed);
    EXPECT_EQ(config, before);
  }
}

TEST(NodeCommandsTest, StatusCountsUsers) {
  NodeConfig config = Configured();
  Execute(&config, {"user", "add", "alice", CredentialsText("pencil")});
  EXPECT_THAT(Execute(&config, {"status"}).response.output,
              HasSubstr("\nUsers         : 1 configured\n"));
  EXPECT_THAT(Execute(&config, {"status"}, true).response.output,
              HasSubstr("\"users_configured\":1,"));
}

TEST(NodeCommandsTest, StatusInTextAndJson) {
  NodeConfig config = Configured();
  NodeRuntimeStatus status;
  status.version = "0.1.0";
  status.serving = true;
  status.listeners = {"127.0.0.1:5223"};
  status.bridges_connected = 2;
  status.clients_connected = 3;
  status.stanzas_routed = 99;
  const auto text =
      ExecuteNodeCommand(AdminRequest{{"status"}, false}, &config, status).response.output;
  EXPECT_THAT(text, HasSubstr("XMPP state    : enabled, serving\n"));
  EXPECT_THAT(text, HasSubstr("Listening on  : 127.0.0.1:5223\n"));
  EXPECT_THAT(text, HasSubstr("Stanzas       : 99 routed"));
  EXPECT_THAT(text, HasSubstr("Clients       : 3 connected\n"));
  const auto json =
      ExecuteNodeCommand(AdminRequest{{"status"}, true}, &config, status).response.output;
  EXPECT_THAT(json, HasSubstr("\"serving\":true"));
  EXPECT_THAT(json, HasSubstr("\"listeners\":[\"127.0.0.1:5223\"]"));
  EXPECT_THAT(json, HasSubstr("\"clients_connected\":3,"));
  EXPECT_EQ(JsonString("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
}

TEST(NodeCommandsTest, StatusShowsUptimeAsTheSeedAndRecentProblems) {
  NodeConfig config = Configured();
  NodeRuntimeStatus status;
  status.version = "0.1.0";
  const auto text_for = [&](uint64_t uptime_s) {
    status.uptime_s = uptime_s;
    return ExecuteNodeCommand(AdminRequest{{"status"}, false}, &config, status).response.output;
  };
  EXPECT_THAT(text_for(0), HasSubstr("Uptime        : 0 seconds\n"));
  EXPECT_THAT(text_for(24 * 60 + 26), HasSubstr("Uptime        : 24 minutes, 26 seconds\n"));
  EXPECT_THAT(text_for(86400 + 17 * 3600 + 41 * 60 + 5),
              HasSubstr("Uptime        : 1 day, 17 hours, 41 minutes\n"));
  EXPECT_THAT(text_for(3600), HasSubstr("Uptime        : 1 hour, 0 minutes, 0 seconds\n"));
  EXPECT_THAT(text_for(1), HasSubstr("Build version : 0.1.0\n"));
  EXPECT_THAT(text_for(1), HasSubstr("Recent errors and warnings: none\n"));
  status.recent_problems = {"2026-11-29T07:00:00.000Z warning event=bridge_auth_failed bridge=x"};
  EXPECT_THAT(text_for(1), HasSubstr("Recent errors and warnings:\n  2026-11-29T07:00:00.000Z "
                                     "warning event=bridge_auth_failed bridge=x\n"));
  const auto json =
      ExecuteNodeCommand(AdminRequest{{"status"}, true}, &config, status).response.output;
  EXPECT_THAT(json, HasSubstr("\"recent_problems\":[\"2026-11-29T07:00:00.000Z warning"));
}

}  // namespace
}  // namespace stanzad
