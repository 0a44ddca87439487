#include "cmd/node_commands.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <set>

#include "cluster/storage/atomic_file.h"
#include "cmd/node_config.h"

namespace stanzad {
namespace {

using admin::AdminRequest;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
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
  EXPECT_TRUE(
      Execute(&config, {"callbridge", "add-secret", "cb1", "--secret=secret-two", "--force"})
          .config_changed);
  EXPECT_EQ(config.callbridges["cb1"], "secret-two");
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

TEST(NodeCommandsTest, StatusInTextAndJson) {
  NodeConfig config = Configured();
  NodeRuntimeStatus status;
  status.version = "0.1.0";
  status.serving = true;
  status.listeners = {"127.0.0.1:5223"};
  status.bridges_connected = 2;
  status.stanzas_routed = 99;
  const auto text =
      ExecuteNodeCommand(AdminRequest{{"status"}, false}, &config, status).response.output;
  EXPECT_THAT(text, HasSubstr("XMPP state    : enabled, serving\n"));
  EXPECT_THAT(text, HasSubstr("Listening on  : 127.0.0.1:5223\n"));
  EXPECT_THAT(text, HasSubstr("Stanzas       : 99 routed"));
  const auto json =
      ExecuteNodeCommand(AdminRequest{{"status"}, true}, &config, status).response.output;
  EXPECT_THAT(json, HasSubstr("\"serving\":true"));
  EXPECT_THAT(json, HasSubstr("\"listeners\":[\"127.0.0.1:5223\"]"));
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
