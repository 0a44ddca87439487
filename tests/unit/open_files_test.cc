// OpenFiles (server/open_files.h): what --connections_max needs, and the soft limit raised
// towards it, never lowered, never past the hard limit, with an error that says how to
// raise it when the hard limit is too low. The raise is tested on this process's own
// limit, restored after each test.
#include "server/open_files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace stanzad::server {
namespace {

class OpenFilesTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved_), 0); }
  void TearDown() override { setrlimit(RLIMIT_NOFILE, &saved_); }

  static uint64_t Soft() {
    rlimit files{};
    getrlimit(RLIMIT_NOFILE, &files);
    return files.rlim_cur;
  }
  // A soft limit of 100 under a hard one above `room`, as a node may be started with.
  void StartLow(uint64_t room) {
    ASSERT_GT(saved_.rlim_max, room);
    rlimit low{100, saved_.rlim_max};
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  }

  rlimit saved_{};
};

TEST(OpenFilesNeededTest, EveryConnectionAndTheNodesOwnFiles) {
  DaemonOptions options;
  options.shards = 2;
  options.connections_max_per_shard = 55000;
  options.cluster_links.unauthenticated_links_max = 256;
  options.direct_descriptors = false;
  const uint64_t needed = OpenFilesNeeded(options);
  EXPECT_GE(needed, 110000u + 256u + 2u * 4u);
  EXPECT_LE(needed, 110000u + 2000u);  // the reserve stays small beside the connections
}

TEST(OpenFilesNeededTest, WithDirectDescriptorsOneShardsShareOfTheConnections) {
  DaemonOptions options;
  options.shards = 6;
  options.connections_max_per_shard = 18000;
  options.cluster_links.unauthenticated_links_max = 256;
  ASSERT_TRUE(options.direct_descriptors);  // the default
  const uint64_t needed = OpenFilesNeeded(options);
  EXPECT_GE(needed, 18000u + 64u);  // a shard's table may not outgrow the limit
  EXPECT_LT(needed, 20000u);        // so 108,000 connections fit under a limit of 20,000
  options.connections_max_per_shard = 10;
  EXPECT_GE(OpenFilesNeeded(options), 256u + 6u * 4u);  // the node's own files
}

TEST(SoftLimitForTest, RaisedToWhatIsNeededWithinTheHardLimit) {
  EXPECT_EQ(SoftLimitFor(110000, 1024, 1048576), 110000u);
  EXPECT_EQ(SoftLimitFor(110000, 1024, 20000), 20000u);  // as far as it goes
  EXPECT_EQ(SoftLimitFor(110000, 1024, RLIM_INFINITY), 110000u);
  EXPECT_EQ(SoftLimitFor(5000, 65536, 1048576), 65536u);  // never lowered
}

TEST_F(OpenFilesTest, RaisesTheSoftLimitWhenTheHardOneAllows) {
  StartLow(200);
  if (HasFatalFailure()) return;
  uint64_t limit = 0;
  EXPECT_TRUE(RaiseOpenFilesLimit(200, 200, &limit).ok());
  EXPECT_EQ(limit, 200u);
  EXPECT_EQ(Soft(), 200u);
}

// With direct descriptors the node needs one shard's share but asks for every connection,
// so that a kernel without them still finds the limit as high as the hard one allows.
TEST_F(OpenFilesTest, RaisesTowardsWhatItWantsAndIsContentWithWhatItNeeds) {
  StartLow(300);
  if (HasFatalFailure()) return;
  uint64_t limit = 0;
  EXPECT_TRUE(RaiseOpenFilesLimit(200, 300, &limit).ok());
  EXPECT_EQ(limit, 300u);
  EXPECT_EQ(Soft(), 300u);
  DaemonOptions options;
  options.shards = 4;
  options.connections_max_per_shard = 10000;
  EXPECT_GE(OpenFilesWanted(options), 40000u);
  EXPECT_LT(OpenFilesNeeded(options), 11000u);
}

TEST_F(OpenFilesTest, NeverLowersTheSoftLimit) {
  rlimit high{std::min<rlim_t>(saved_.rlim_max, 4096), saved_.rlim_max};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &high), 0);
  uint64_t limit = 0;
  EXPECT_TRUE(RaiseOpenFilesLimit(64, 64, &limit).ok());
  EXPECT_EQ(limit, high.rlim_cur);
  EXPECT_EQ(Soft(), high.rlim_cur);
}

// In a child: a hard limit of 400 cannot be raised back without privilege. Exits 0 when
// the error names the limit, what is needed and how to raise it, and the soft limit was
// raised as far as it goes.
[[noreturn]] void RaiseUnderALowHardLimit() {
  rlimit capped{300, 400};
  if (setrlimit(RLIMIT_NOFILE, &capped) != 0) std::_Exit(3);
  uint64_t limit = 0;
  const absl::Status status = RaiseOpenFilesLimit(100000, 100000, &limit);
  const std::string text(status.message());
  const bool named = status.code() == absl::StatusCode::kFailedPrecondition &&
                     text.find("open files limit is 400") != std::string::npos &&
                     text.find("100000") != std::string::npos &&
                     text.find("LimitNOFILE=") != std::string::npos &&
                     text.find("--connections_max") != std::string::npos;
  std::_Exit(named && limit == 400 ? 0 : 1);
}

TEST_F(OpenFilesTest, AHardLimitTooLowIsAnErrorThatSaysHowToRaiseIt) {
  testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_EXIT(RaiseUnderALowHardLimit(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace stanzad::server
