// ControlLoop (server/control_loop.h) with a real admin socket in a temporary state dir:
// the loop runs on the test's thread, as on the daemon's control thread, and a client
// thread talks to it as stanzactl does. A command that waits for the cluster
// (`cluster initialize`) is answered only because the loop's later turns drive the
// cluster; the loop ends after the turn in which it sees `stop`.
//
// The order of the steps inside one turn is not observable from outside without fakes of
// the parts, which the loop takes as concrete classes; it is covered by the parts' own
// tests and by what these commands need of it (admin, then cluster, in every turn).
#include "server/control_loop.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "admin/admin_socket.h"
#include "tests/unit/server_test_node.h"

namespace stanzad::server {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(ControlLoopTest, StopsBeforeAnyTurnWhenAskedFirst) {
  TestNode test;
  ASSERT_TRUE(test.Start().ok());
  absl::StatusOr<std::unique_ptr<admin::AdminServer>> admin =
      admin::AdminServer::Listen(admin::AdminSocketPath(test.dir().path()));
  ASSERT_TRUE(admin.ok()) << admin.status();
  const std::atomic<bool> stop{true};
  ControlLoop(**admin, test.dispatcher(), test.node(), test.engine(), test.metrics()).Run(stop);
  EXPECT_EQ((*admin)->pending_clients(), 0u);
}

TEST(ControlLoopTest, AnswersCommandsAndDrivesTheClusterUntilStopped) {
  TestNode test;
  ASSERT_TRUE(test.Start().ok());
  const std::string socket = admin::AdminSocketPath(test.dir().path());
  absl::StatusOr<std::unique_ptr<admin::AdminServer>> admin = admin::AdminServer::Listen(socket);
  ASSERT_TRUE(admin.ok()) << admin.status();

  std::atomic<bool> stop{false};
  std::vector<absl::StatusOr<admin::AdminResponse>> answers;
  std::thread stanzactl([&] {
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"status"}, {"cluster", "enable"}, {"cluster", "initialize"}, {"cluster", "status"}}) {
      answers.push_back(admin::SendAdminRequest(socket, admin::AdminRequest{args, false}));
    }
    stop.store(true);
  });
  ControlLoop(**admin, test.dispatcher(), test.node(), test.engine(), test.metrics()).Run(stop);
  stanzactl.join();

  ASSERT_EQ(answers.size(), 4u);
  for (const absl::StatusOr<admin::AdminResponse>& answer : answers) {
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer->exit_code, 0) << answer->output;
  }
  EXPECT_THAT(answers[0]->output, HasSubstr("Cluster       : not clustered (single node)\n"));
  EXPECT_THAT(answers[1]->output, StartsWith("Cluster enabled; cluster port 127.0.0.1:0"));
  EXPECT_THAT(answers[2]->output, StartsWith("Cluster initialized with this node"));
  EXPECT_THAT(answers[3]->output, StartsWith("State: LEADER\n"));
  ASSERT_NE(test.node().cluster(), nullptr);
  EXPECT_TRUE(test.node().cluster()->is_member());
}

}  // namespace
}  // namespace stanzad::server
