// StateDir (server/state_dir.h): the state dir made private, its configuration loaded or
// seeded from the flags, the SCRAM salt key kept across restarts and the incarnation that
// grows by one per start. Every error names the file and what to do.
#include "server/state_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <limits>
#include <string>

#include "tests/unit/temp_dir.h"

namespace stanzad::server {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

mode_t ModeOf(const std::string& path) {
  struct stat info {};
  EXPECT_EQ(stat(path.c_str(), &info), 0) << path;
  return info.st_mode & 07777;
}

DaemonOptions Seeded(const std::string& state_dir, std::string domain, std::string listen) {
  DaemonOptions options;
  options.state_dir = state_dir;
  options.seed_domain = std::move(domain);
  options.seed_listen = std::move(listen);
  return options;
}

TEST(StateDirTest, ANewStateDirIsMadePrivateAndSeededFromTheFlags) {
  const testing_util::TempDir dir("stanzad_state_dir");
  const std::string state_dir = dir.Path("node");
  const absl::StatusOr<NodeConfig> config =
      LoadOrSeedNodeConfig(Seeded(state_dir, "example.com", "127.0.0.1,::1"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(ModeOf(state_dir), 0700u);
  EXPECT_EQ(config->domain, "example.com");
  EXPECT_EQ(config->listen, (std::vector<std::string>{"127.0.0.1", "::1"}));
  EXPECT_TRUE(config->enabled);  // both given: it serves at once
  EXPECT_FALSE(config->cluster_enabled);
  const absl::StatusOr<NodeConfig> saved = LoadNodeConfig(state_dir);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(*saved, *config);
}

TEST(StateDirTest, WithoutADomainTheSeededNodeDoesNotServe) {
  const testing_util::TempDir dir("stanzad_state_dir");
  const absl::StatusOr<NodeConfig> config = LoadOrSeedNodeConfig(Seeded(dir.path(), "", ""));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config, NodeConfig());
}

TEST(StateDirTest, AConfiguredStateDirKeepsItsConfigurationOverTheSeed) {
  const testing_util::TempDir dir("stanzad_state_dir");
  NodeConfig configured;
  configured.domain = "configured.example";
  configured.callbridges["cb1"] = "kvgP1SRzWVabhiPVAb1";
  ASSERT_TRUE(SaveNodeConfig(dir.path(), configured).ok());
  const absl::StatusOr<NodeConfig> config =
      LoadOrSeedNodeConfig(Seeded(dir.path(), "seed.example", "127.0.0.1"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config, configured);
}

TEST(StateDirTest, AStateDirOthersCanReadIsTightened) {
  const testing_util::TempDir dir("stanzad_state_dir");
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
  ASSERT_TRUE(LoadOrSeedNodeConfig(Seeded(dir.path(), "", "")).ok());
  EXPECT_EQ(ModeOf(dir.path()), 0700u);
}

TEST(StateDirTest, ErrorsNameTheFlagAndTheCause) {
  const testing_util::TempDir dir("stanzad_state_dir");
  const std::string file = dir.Write("a-file", "");
  const absl::StatusOr<NodeConfig> not_a_dir = LoadOrSeedNodeConfig(Seeded(file, "", ""));
  ASSERT_FALSE(not_a_dir.ok());
  EXPECT_EQ(not_a_dir.status().message(), "--state_dir " + file + " is not a directory");

  const absl::StatusOr<NodeConfig> no_parent =
      LoadOrSeedNodeConfig(Seeded(dir.Path("missing/node"), "", ""));
  ASSERT_FALSE(no_parent.ok());
  EXPECT_THAT(no_parent.status().message(), HasSubstr("cannot create --state_dir "));

  const absl::StatusOr<NodeConfig> bad_domain =
      LoadOrSeedNodeConfig(Seeded(dir.Path("a"), "not a domain", ""));
  ASSERT_FALSE(bad_domain.ok());
  EXPECT_THAT(std::string(bad_domain.status().message()), MatchesRegex("--domain: .+"));

  const absl::StatusOr<NodeConfig> bad_listen =
      LoadOrSeedNodeConfig(Seeded(dir.Path("b"), "example.com", "127.0.0.1,nowhere"));
  ASSERT_FALSE(bad_listen.ok());
  EXPECT_THAT(std::string(bad_listen.status().message()), MatchesRegex("--listen: .+"));
  // Nothing half-seeded is left to be loaded at the next start.
  EXPECT_FALSE(std::filesystem::exists(dir.Path("b/config")));

  dir.Write("config", "this is not a config\n");
  EXPECT_FALSE(LoadOrSeedNodeConfig(Seeded(dir.path(), "", "")).ok());  // never half-read
}

TEST(StateDirTest, TheSaltKeyIsMadeOnceAndKept) {
  const testing_util::TempDir dir("stanzad_state_dir");
  const std::string key = LoadOrCreateSaltKey(dir.path());
  EXPECT_THAT(key, MatchesRegex("[0-9a-f]{64}"));
  EXPECT_EQ(ModeOf(dir.Path("sasl_salt_key")) & 077, 0u);
  EXPECT_EQ(LoadOrCreateSaltKey(dir.path()), key);
  const testing_util::TempDir other("stanzad_state_dir");
  EXPECT_NE(LoadOrCreateSaltKey(other.path()), key);  // random, per node
}

TEST(StateDirTest, TheClustersSaltKeyReplacesTheNodesAcrossRestarts) {
  const testing_util::TempDir dir("stanzad_state_dir");
  (void)LoadOrCreateSaltKey(dir.path());
  const std::string cluster_key(64, 'c');
  SaveSaltKey(dir.path(), cluster_key);
  EXPECT_EQ(LoadOrCreateSaltKey(dir.path()), cluster_key);
}

TEST(StateDirTest, ASaltKeyTooShortToBeOneIsReplaced) {
  const testing_util::TempDir dir("stanzad_state_dir");
  dir.Write("sasl_salt_key", "abc\n");
  const std::string key = LoadOrCreateSaltKey(dir.path());
  EXPECT_THAT(key, MatchesRegex("[0-9a-f]{64}"));
  EXPECT_EQ(LoadOrCreateSaltKey(dir.path()), key);
}

TEST(StateDirTest, ASaltKeyThatCannotBeStoredIsStillMade) {
  const testing_util::TempDir dir("stanzad_state_dir");
  // Its temporary file is a directory: the key cannot be written, even by root.
  ASSERT_TRUE(std::filesystem::create_directory(dir.Path("sasl_salt_key.tmp")));
  const std::string key = LoadOrCreateSaltKey(dir.path());
  EXPECT_THAT(key, MatchesRegex("[0-9a-f]{64}"));  // for this run (logged)
  EXPECT_FALSE(std::filesystem::exists(dir.Path("sasl_salt_key")));
}

TEST(StateDirTest, TheIncarnationGrowsByOnePerStart) {
  const testing_util::TempDir dir("stanzad_state_dir");
  for (uint64_t expected = 1; expected <= 3; ++expected) {
    const absl::StatusOr<uint64_t> incarnation = NextIncarnation(dir.path());
    ASSERT_TRUE(incarnation.ok()) << incarnation.status();
    EXPECT_EQ(*incarnation, expected);
  }
  dir.Write("incarnation", " 41\n");
  EXPECT_EQ(NextIncarnation(dir.path()).value_or(0), 42u);
}

TEST(StateDirTest, AnIncarnationThatCannotGoOnSaysWhatToRemove) {
  const testing_util::TempDir dir("stanzad_state_dir");
  dir.Write("incarnation", "forty-one\n");
  const absl::StatusOr<uint64_t> unreadable = NextIncarnation(dir.path());
  ASSERT_FALSE(unreadable.ok());
  EXPECT_EQ(unreadable.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(unreadable.status().message(),
              HasSubstr(dir.Path("incarnation") + " (not a number); remove it"));

  dir.Write("incarnation", std::to_string(std::numeric_limits<uint64_t>::max()) + "\n");
  const absl::StatusOr<uint64_t> largest = NextIncarnation(dir.path());
  ASSERT_FALSE(largest.ok());
  EXPECT_EQ(largest.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(largest.status().message(), HasSubstr("remove the file to start over"));

  // Not written: the same start gets the same error, never a reused incarnation.
  dir.Write("incarnation", "7\n");
  ASSERT_TRUE(std::filesystem::create_directory(dir.Path("incarnation.tmp")));
  EXPECT_FALSE(NextIncarnation(dir.path()).ok());
  std::filesystem::remove(dir.Path("incarnation.tmp"));
  EXPECT_EQ(NextIncarnation(dir.path()).value_or(0), 8u);
}

}  // namespace
}  // namespace stanzad::server
