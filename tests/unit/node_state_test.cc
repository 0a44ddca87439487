// NodeState (server/node_state.h) in a real state dir: a configuration is durable before it
// is live and a failed save changes nothing; a cluster store that cannot be opened is named
// (path, cause, fix) and nothing dereferences the missing cluster node; `reset --force`'s
// ForgetCluster saves first and forgets the cluster only once the save succeeded.
//
// Failures are real ones that hold even for root: the config's temporary file is a
// directory (the save cannot write it), the cluster store's path is a regular file.
#include "server/node_state.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "admin/node_config.h"
#include "tests/unit/server_test_node.h"

namespace stanzad::server {
namespace {

using ::testing::HasSubstr;

// The next save of the config fails until UnblockConfigSave: the file it writes first
// (config.tmp, then renamed over config) is a directory.
void BlockConfigSave(const testing_util::TempDir& dir) {
  ASSERT_TRUE(std::filesystem::create_directory(dir.Path("config.tmp")));
}
void UnblockConfigSave(const testing_util::TempDir& dir) {
  ASSERT_TRUE(std::filesystem::remove(dir.Path("config.tmp")));
}

NodeConfig OnDisk(const testing_util::TempDir& dir) {
  absl::StatusOr<NodeConfig> loaded = LoadNodeConfig(dir.path());
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return loaded.value_or(NodeConfig());
}

TEST(NodeStateTest, StartsWithItsConfigurationSavedAndPublished) {
  TestNode test;
  EXPECT_EQ(OnDisk(test.dir()), ConfiguredNotServing());
  const auto published = test.engine().router_config().Current();
  EXPECT_EQ(published->domain, "example.com");
  EXPECT_FALSE(published->enabled);  // not `enable`d: the engine does not serve
  EXPECT_EQ(published->unknown_user_salt_key, std::string(64, 'a'));
  EXPECT_FALSE(test.engine().serving());
}

TEST(NodeStateTest, CommitMakesAChangeDurableThenLive) {
  TestNode test;
  NodeConfig proposed = test.node().config();
  proposed.callbridges["cb1"] = "kvgP1SRzWVabhiPVAb1";
  ASSERT_TRUE(test.node().Commit(proposed, "callbridge").ok());
  EXPECT_EQ(test.node().config(), proposed);
  EXPECT_EQ(OnDisk(test.dir()), proposed);
  EXPECT_EQ(test.engine().router_config().Current()->bridge_secrets.at("cb1.example.com"),
            "kvgP1SRzWVabhiPVAb1");
  EXPECT_GT(test.node().last_config_change_unix_s(), 0);
}

TEST(NodeStateTest, CommitThatCannotBeSavedChangesNothing) {
  TestNode test;
  const NodeConfig before = test.node().config();
  const auto published = test.engine().router_config().Current();
  BlockConfigSave(test.dir());
  NodeConfig proposed = before;
  proposed.domain = "other.example";
  const absl::Status saved = test.node().Commit(proposed, "domain");
  EXPECT_FALSE(saved.ok());
  EXPECT_THAT(saved.message(), HasSubstr(test.dir().Path("config.tmp")));
  EXPECT_EQ(test.node().config(), before);
  EXPECT_EQ(OnDisk(test.dir()), before);
  EXPECT_EQ(test.engine().router_config().Current(), published);
  EXPECT_EQ(test.node().last_config_change_unix_s(), 0);
}

TEST(NodeStateTest, EditsAreJournaledDurablyAndPublishedInPlace) {
  TestNode test;
  NodeConfigEdit add{NodeConfigEdit::Kind::kSetCallbridge, "cb1", "kvgP1SRzWVabhiPVAb1", {}};
  NodeConfigEdit other{NodeConfigEdit::Kind::kSetCallbridge, "cb2", "Zq9wE3rTy7uIo1pAs2D", {}};
  ASSERT_TRUE(test.node().CommitEdits({add, other}, "callbridge", true).ok());
  NodeConfigEdit del{NodeConfigEdit::Kind::kDeleteCallbridge, "cb1", "", {}};
  ASSERT_TRUE(test.node().CommitEdits({del}, "callbridge", true).ok());
  NodeConfig expected = ConfiguredNotServing();
  expected.callbridges["cb2"] = "Zq9wE3rTy7uIo1pAs2D";
  EXPECT_EQ(test.node().config(), expected);
  EXPECT_EQ(OnDisk(test.dir()), expected);  // the config and its journal, replayed
  const auto published = test.engine().router_config().Current();
  EXPECT_EQ(published->bridge_secrets.size(), 1u);
  EXPECT_EQ(published->bridge_secrets.at("cb2.example.com"), "Zq9wE3rTy7uIo1pAs2D");
}

TEST(NodeStateTest, OpensItsClusterStoreWithoutJoiningAnything) {
  TestNode test;
  ASSERT_TRUE(test.node().OpenCluster().ok());
  ASSERT_NE(test.node().cluster(), nullptr);
  EXPECT_TRUE(std::filesystem::is_directory(test.StorePath()));
  EXPECT_FALSE(test.node().cluster()->has_state());
  EXPECT_FALSE(test.node().cluster_active());  // not enabled
  EXPECT_FALSE(test.node().cluster_listening());
  EXPECT_EQ(test.node().cluster()->address(), "127.0.0.1:0");
}

TEST(NodeStateTest, AStoreThatCannotBeOpenedIsNamedWithItsCauseAndFix) {
  TestNode test;
  test.dir().Write("cluster", "not a directory\n");
  const absl::Status opened = test.node().OpenCluster();
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(test.node().cluster(), nullptr);
  for (const std::string& text :
       {std::string(opened.message()), test.node().ClusterStoreProblem()}) {
    EXPECT_THAT(text, HasSubstr("the cluster store " + test.StorePath() + " could not be opened"));
    EXPECT_THAT(text, HasSubstr("exists and is not a directory"));  // the cause
    EXPECT_THAT(text, HasSubstr("fix the cause"));
  }
  // Every step of the control loop's turn copes without a cluster node.
  EXPECT_FALSE(test.node().cluster_active());
  test.Turn();
  test.node().ApplyEngineState();
  test.node().RetryEngineStart(std::chrono::steady_clock::now() + std::chrono::minutes(1));
  test.metrics().Turn(test.node(), std::chrono::steady_clock::now() + std::chrono::minutes(1));
  test.node().StopEngine();
  // The cause fixed, the store opens.
  ASSERT_TRUE(std::filesystem::remove(test.StorePath()));
  ASSERT_TRUE(test.node().OpenCluster().ok());
  EXPECT_NE(test.node().cluster(), nullptr);
}

TEST(NodeStateTest, ClusterAddressIsTheFirstListenAddressUnlessAWildcard) {
  NodeConfig config = ConfiguredNotServing();
  config.listen = {"::1", "127.0.0.1"};
  TestNode v6(config);
  EXPECT_EQ(v6.node().ClusterAddress(), "[::1]:0");
  config.listen = {"0.0.0.0"};
  TestNode wildcard(config);
  EXPECT_EQ(wildcard.node().ClusterAddress(), "");  // no peer could dial it
  config.listen = {};
  TestNode none(config);
  EXPECT_EQ(none.node().ClusterAddress(), "");
}

// The node as a member has it: the cluster enabled, its store holding its identity.
NodeConfig ClusterEnabled() {
  NodeConfig config = ConfiguredNotServing();
  config.cluster_enabled = true;
  return config;
}

TEST(NodeStateTest, ForgetClusterThatCannotSaveLeavesMemoryDiskAndStoreAsTheyWere) {
  TestNode test(ClusterEnabled());
  ASSERT_TRUE(test.node().OpenCluster().ok());
  ASSERT_TRUE(test.node().cluster_listening());
  const raft::NodeId id = test.node().cluster()->id();
  BlockConfigSave(test.dir());

  const absl::StatusOr<std::string> forgotten = test.node().ForgetCluster(NodeConfig(), "reset");
  ASSERT_FALSE(forgotten.ok());
  EXPECT_THAT(forgotten.status().message(), HasSubstr("the reset was not saved ("));
  EXPECT_THAT(forgotten.status().message(), HasSubstr("Is a directory"));  // the cause
  EXPECT_THAT(forgotten.status().message(),
              HasSubstr("keeps its configuration and its cluster state in " + test.StorePath()));
  EXPECT_THAT(forgotten.status().message(), HasSubstr("run 'stanzactl reset --force' again"));
  // Memory, disk and store agree, as before the command.
  EXPECT_EQ(test.node().config(), ClusterEnabled());
  EXPECT_EQ(OnDisk(test.dir()), ClusterEnabled());
  ASSERT_NE(test.node().cluster(), nullptr);
  EXPECT_EQ(test.node().cluster()->id(), id);
  EXPECT_TRUE(test.node().cluster_active());
  EXPECT_TRUE(test.node().cluster_listening());
  EXPECT_TRUE(std::filesystem::is_directory(test.StorePath()));
}

TEST(NodeStateTest, ForgetClusterSavesThenForgetsTheStoreAndMakesANewIdentity) {
  TestNode test(ClusterEnabled());
  ASSERT_TRUE(test.node().OpenCluster().ok());
  const raft::NodeId id = test.node().cluster()->id();
  // A first attempt failed to save; the operator fixed the cause and runs it again.
  BlockConfigSave(test.dir());
  ASSERT_FALSE(test.node().ForgetCluster(NodeConfig(), "reset").ok());
  UnblockConfigSave(test.dir());

  const absl::StatusOr<std::string> forgotten = test.node().ForgetCluster(NodeConfig(), "reset");
  ASSERT_TRUE(forgotten.ok()) << forgotten.status();
  EXPECT_EQ(*forgotten, test.StorePath());
  EXPECT_EQ(test.node().config(), NodeConfig());
  EXPECT_EQ(OnDisk(test.dir()), NodeConfig());
  ASSERT_NE(test.node().cluster(), nullptr);  // a new, empty store
  EXPECT_NE(test.node().cluster()->id(), id);
  EXPECT_FALSE(test.node().cluster()->has_state());
  EXPECT_FALSE(test.node().cluster_active());
  EXPECT_FALSE(test.node().cluster_listening());
  EXPECT_TRUE(std::filesystem::is_directory(test.StorePath()));
  EXPECT_FALSE(std::filesystem::exists(test.StorePath() + ".forgotten"));
}

TEST(NodeStateTest, ForgetClusterClearsWhatAnEarlierRemovalLeftBehind) {
  TestNode test(ClusterEnabled());
  ASSERT_TRUE(test.node().OpenCluster().ok());
  const std::string left = test.StorePath() + ".forgotten";
  ASSERT_TRUE(std::filesystem::create_directory(left));
  test.dir().Write("cluster.forgotten/raft.log", "old");
  ASSERT_TRUE(test.node().ForgetCluster(NodeConfig(), "reset").ok());
  EXPECT_FALSE(std::filesystem::exists(left));
  EXPECT_TRUE(std::filesystem::is_directory(test.StorePath()));
}

}  // namespace
}  // namespace stanzad::server
