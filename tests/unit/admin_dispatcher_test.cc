// AdminDispatcher (server/admin_dispatcher.h): stanzactl's commands end to end against a
// node in a real state dir, without the socket. What the operator reads (exit code and
// text), what the state dir holds after the answer, and what the node then is: the node's
// own commands, `certs`, a cluster of one node initialized through the cluster's turns,
// `reset --force` on a member when its save fails and when it succeeds, and a cluster
// store that cannot be reopened.
#include "server/admin_dispatcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "admin/node_config.h"
#include "tests/unit/server_test_node.h"
#include "tests/unit/test_ca.h"
#include "tls/pki.h"

namespace stanzad::server {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

NodeConfig OnDisk(const testing_util::TempDir& dir) {
  absl::StatusOr<NodeConfig> loaded = LoadNodeConfig(dir.path());
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return loaded.value_or(NodeConfig());
}

TEST(AdminDispatcherTest, StatusOfANodeThatDoesNotServe) {
  TestNode test;
  ASSERT_TRUE(test.Start().ok());
  const admin::AdminResponse status = test.Run({"status"});
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_THAT(status.output, HasSubstr("XMPP state    : disabled\n"));
  EXPECT_THAT(status.output, HasSubstr("Domain        : example.com\n"));
  EXPECT_THAT(status.output, HasSubstr("Cluster       : not clustered (single node)\n"));
  // The seed's spelling, `xmpp status`, is the same command.
  EXPECT_EQ(test.Run({"xmpp", "status"}).exit_code, 0);
}

TEST(AdminDispatcherTest, AChangeIsSavedBeforeItIsAnswered) {
  TestNode test;
  ASSERT_TRUE(test.Start().ok());
  const admin::AdminResponse added = test.Run({"callbridge", "add", "cb1"});
  ASSERT_EQ(added.exit_code, 0) << added.output;
  ASSERT_TRUE(test.node().config().callbridges.contains("cb1"));
  EXPECT_EQ(OnDisk(test.dir()), test.node().config());
  const admin::AdminResponse listen = test.Run({"listen", "127.0.0.1", "::1"});
  ASSERT_EQ(listen.exit_code, 0) << listen.output;
  EXPECT_EQ(OnDisk(test.dir()).listen, (std::vector<std::string>{"127.0.0.1", "::1"}));
  EXPECT_THAT(test.Run({"callbridge", "list"}).output, HasSubstr("cb1"));
}

TEST(AdminDispatcherTest, AChangeThatCannotBeSavedIsRefusedAndNothingChanges) {
  TestNode test;
  ASSERT_TRUE(test.Start().ok());
  const NodeConfig before = test.node().config();
  ASSERT_TRUE(std::filesystem::create_directory(test.dir().Path("config.tmp")));
  const admin::AdminResponse listen = test.Run({"listen", "127.0.0.2"});
  EXPECT_EQ(listen.exit_code, 1);
  EXPECT_THAT(listen.output, StartsWith("error: the change was not saved: "));
  EXPECT_THAT(listen.output, HasSubstr("config.tmp"));
  EXPECT_EQ(test.node().config(), before);
  EXPECT_EQ(OnDisk(test.dir()), before);
}

TEST(AdminDispatcherTest, CertsAreCheckedSetAndUsedForClients) {
  TestNode test;
  ASSERT_TRUE(test.Start().ok());
  EXPECT_EQ(test.Run({"certs"}).output, "No certificate (stanzactl certs KEY CERT [BUNDLE])\n");
  EXPECT_EQ(test.Run({"certs", "relative.key", "relative.crt"}).exit_code, 2);
  const TestCa ca;
  const std::string key = *tls::GeneratePrivateKeyPem();
  tls::CertificateSpec spec;
  spec.subject.common_name = "example.com";
  spec.subject.subject_alt_names = {"example.com"};
  const std::string key_path = test.dir().Write("xmpp.key", key);
  const std::string cert_path =
      test.dir().Write("xmpp.crt", *tls::IssueCertificatePem(key, spec, ca.cert, ca.key));
  const std::string ca_path = test.dir().Write("ca.crt", ca.cert);

  const admin::AdminResponse missing = test.Run({"certs", key_path, test.dir().Path("none.crt")});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.output, HasSubstr("none.crt"));
  EXPECT_TRUE(test.node().config().tls_certificate.empty());

  const admin::AdminResponse set = test.Run({"certs", key_path, cert_path});
  ASSERT_EQ(set.exit_code, 0) << set.output;
  EXPECT_THAT(set.output, StartsWith("Certificate accepted for example.com\n"));
  EXPECT_THAT(set.output, HasSubstr("once both 'stanzactl certs KEY CERT' and 'stanzactl "
                                    "cluster trust BUNDLE' are set"));
  EXPECT_EQ(OnDisk(test.dir()).tls_certificate, cert_path);
  EXPECT_NE(test.engine().router_config().Current()->client_tls, nullptr);

  // With the cluster's trust bundle too, the cluster links use mutual TLS (the store
  // is reopened with the contexts).
  const admin::AdminResponse trust = test.Run({"cluster", "trust", ca_path});
  ASSERT_EQ(trust.exit_code, 0) << trust.output;
  EXPECT_THAT(trust.output, HasSubstr("Cluster links now use mutual TLS"));
  ASSERT_NE(test.node().cluster(), nullptr);
  EXPECT_TRUE(test.node().cluster()->tls());
  EXPECT_EQ(test.node().cluster_tls_error(), "");
}

TEST(AdminDispatcherTest, ClusterOfOneNodeInitializedThroughTheClustersTurns) {
  TestNode test;
  ASSERT_TRUE(test.Start().ok());
  EXPECT_THAT(test.Run({"cluster", "status"}).output, StartsWith("State: DISABLED"));
  const admin::AdminResponse refused = test.Run({"cluster", "initialize"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.output, HasSubstr("run 'stanzactl cluster enable' first"));

  EXPECT_EQ(test.Run({"cluster", "enable"}).output, "Cluster enabled; cluster port 127.0.0.1:0\n");
  EXPECT_TRUE(OnDisk(test.dir()).cluster_enabled);
  EXPECT_TRUE(test.node().cluster_listening());
  const admin::AdminResponse initialized = test.Run({"cluster", "initialize"});
  ASSERT_EQ(initialized.exit_code, 0) << initialized.output;
  EXPECT_THAT(initialized.output,
              StartsWith("Cluster initialized with this node (127.0.0.1:0) as its only member "
                         "and leader; domain example.com and 0 call bridges are now the "
                         "cluster's.\n"));
  EXPECT_THAT(initialized.output, HasSubstr("stanzactl cluster join 127.0.0.1:0 --token="));
  EXPECT_THAT(test.Run({"cluster", "status"}).output, StartsWith("State: LEADER\n"));
  EXPECT_THAT(test.Run({"status"}).output,
              HasSubstr("Cluster       : LEADER, 1 members, leader 127.0.0.1:0\n"));

  // A call bridge now goes through the cluster's log and is mirrored into the config.
  const admin::AdminResponse added = test.Run({"callbridge", "add", "cb1"});
  ASSERT_EQ(added.exit_code, 0) << added.output;
  ASSERT_TRUE(test.Drive([&] { return test.node().config().callbridges.contains("cb1"); }));
  EXPECT_TRUE(test.node().cluster()->config().callbridges.contains("cb1"));
  EXPECT_EQ(OnDisk(test.dir()).callbridges, test.node().config().callbridges);
}

TEST(AdminDispatcherTest, ResetOfAMemberNeedsForce) {
  TestNode test;
  ASSERT_TRUE(test.Start().ok());
  test.InitializeCluster();
  const admin::AdminResponse reset = test.Run({"reset"});
  EXPECT_EQ(reset.exit_code, 1);
  EXPECT_THAT(reset.output,
              HasSubstr("this node is a member of a cluster; remove it first (on another node: "
                        "stanzactl cluster remove 127.0.0.1:0)"));
  EXPECT_TRUE(test.node().cluster()->is_member());
  EXPECT_EQ(OnDisk(test.dir()), test.node().config());
}

TEST(AdminDispatcherTest, ResetForceThatCannotBeSavedKeepsTheNodeInItsCluster) {
  TestNode test;
  ASSERT_TRUE(test.Start().ok());
  test.InitializeCluster();
  const NodeConfig before = test.node().config();
  const raft::NodeId id = test.node().cluster()->id();
  ASSERT_TRUE(std::filesystem::create_directory(test.dir().Path("config.tmp")));

  const admin::AdminResponse reset = test.Run({"reset", "--force"});
  EXPECT_EQ(reset.exit_code, 1);
  EXPECT_THAT(reset.output, StartsWith("error: the reset was not saved ("));
  EXPECT_THAT(reset.output, HasSubstr("Is a directory"));
  EXPECT_THAT(reset.output, HasSubstr("run 'stanzactl reset --force' again\n"));
  EXPECT_EQ(test.node().config(), before);
  EXPECT_EQ(OnDisk(test.dir()), before);
  EXPECT_TRUE(before.cluster_enabled);
  EXPECT_EQ(test.node().cluster()->id(), id);
  EXPECT_TRUE(test.node().cluster()->is_member());
  // Still leading its cluster, whose changes it still takes.
  EXPECT_THAT(test.Run({"cluster", "status"}).output, StartsWith("State: LEADER\n"));

  // The cause fixed, the same command finishes the reset.
  ASSERT_TRUE(std::filesystem::remove(test.dir().Path("config.tmp")));
  const admin::AdminResponse again = test.Run({"reset", "--force"});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, StartsWith("Configuration reset; XMPP disabled\n"));
  EXPECT_THAT(again.output,
              HasSubstr("The node left its cluster state behind (node id, Raft log, cluster key "
                        "in " +
                        test.StorePath() + "); it joins as a new node"));
  EXPECT_EQ(test.node().config(), NodeConfig());
  EXPECT_EQ(OnDisk(test.dir()), NodeConfig());
  ASSERT_NE(test.node().cluster(), nullptr);
  EXPECT_NE(test.node().cluster()->id(), id);
  EXPECT_FALSE(test.node().cluster()->has_state());
  EXPECT_THAT(test.Run({"cluster", "status"}).output, StartsWith("State: DISABLED"));
  EXPECT_THAT(test.Run({"status"}).output,
              HasSubstr("Cluster       : not clustered (single node)\n"));
}

TEST(AdminDispatcherTest, AClusterStoreThatCannotBeReopenedIsNamedInEveryAnswer) {
  TestNode test;
  ASSERT_TRUE(test.Start().ok());
  ASSERT_EQ(test.Run({"listen", "127.0.0.2"}).exit_code, 0);
  // The store breaks under the running node; `cluster enable` for another address reopens it.
  std::filesystem::remove_all(test.StorePath());
  test.dir().Write("cluster", "not a directory\n");
  const std::string problem = "the cluster store " + test.StorePath() + " could not be opened (" +
                              test.StorePath() + " exists and is not a directory); fix the cause";

  const admin::AdminResponse enabled = test.Run({"cluster", "enable"});
  EXPECT_EQ(enabled.exit_code, 1);
  EXPECT_THAT(enabled.output, HasSubstr(problem));
  EXPECT_EQ(test.node().cluster(), nullptr);

  const admin::AdminResponse status = test.Run({"status"});
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_THAT(status.output, HasSubstr("Cluster       : error: " + problem));
  EXPECT_THAT(test.Run({"status"}, true).output, HasSubstr(problem));
  for (const std::vector<std::string>& command :
       std::vector<std::vector<std::string>>{{"cluster", "status"},
                                             {"cluster", "disable"},
                                             {"callbridge", "add", "cb1"},
                                             {"certs"},
                                             {"reset", "--force"}}) {
    const admin::AdminResponse refused = test.Run(command);
    EXPECT_EQ(refused.exit_code, 1) << command[0];
    EXPECT_THAT(refused.output, StartsWith("error: " + problem)) << command[0];
  }
  EXPECT_THAT(test.node().config().callbridges, ::testing::IsEmpty());
  // The control loop's turns go on without the cluster node.
  for (int turn = 0; turn < 10; ++turn) test.Turn();
  test.metrics().Publish(test.node());
}

TEST(AdminDispatcherTest, UsageErrorsAreExitCodeTwo) {
  TestNode test;
  ASSERT_TRUE(test.Start().ok());
  EXPECT_EQ(test.Run({"cluster", "status", "extra"}).exit_code, 2);
  EXPECT_EQ(test.Run({"nonsense"}).exit_code, 2);
  const admin::AdminResponse enabled = test.Run({"cluster", "enable"});
  ASSERT_EQ(enabled.exit_code, 0) << enabled.output;
  EXPECT_THAT(test.Run({"cluster", "bogus"}).output, StartsWith("usage: stanzactl cluster "));
  EXPECT_EQ(test.Run({"cluster", "bogus"}).exit_code, 2);
  const admin::AdminResponse no_token = test.Run({"cluster", "join", "127.0.0.3"});
  EXPECT_EQ(no_token.exit_code, 2);
  EXPECT_THAT(no_token.output, HasSubstr("'stanzactl cluster token'"));
  EXPECT_THAT(test.Run({"cluster", "isolate", "not-an-ip"}).output,
              HasSubstr("is not an IP address"));
  const admin::AdminResponse token = test.Run({"cluster", "token"});
  EXPECT_EQ(token.exit_code, 1);
  EXPECT_THAT(token.output, HasSubstr("this node is not a member of a cluster"));
}

}  // namespace
}  // namespace stanzad::server
