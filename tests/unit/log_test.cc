// Log rate limiting and the recent-problems memory behind `stanzactl status`.
#include "core/base/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace stanzad {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override { ResetLogStateForTest(); }
  void TearDown() override { ResetLogStateForTest(); }
};

TEST_F(LogTest, KeepsTheLastWarningsAndErrorsOnly) {
  LogEvent(LogLevel::kInfo, "info_event", "n=0");
  for (int i = 0; i < 15; ++i) {
    LogEvent(i % 2 ? LogLevel::kError : LogLevel::kWarning, "problem_" + std::to_string(i),
             "n=" + std::to_string(i));
  }
  const std::vector<std::string> recent = RecentProblems();
  ASSERT_EQ(recent.size(), kRecentProblemsMax);
  EXPECT_THAT(recent.front(), HasSubstr(" error event=problem_5 n=5"));
  EXPECT_THAT(recent.back(), HasSubstr(" warning event=problem_14 n=14"));
  for (const std::string& line : recent) EXPECT_EQ(line.find("info_event"), std::string::npos);
}

TEST_F(LogTest, AFloodOfOneEventIsCutToTheBurstThenReported) {
  for (int i = 0; i < kLogBurst + 500; ++i) {
    LogEvent(LogLevel::kWarning, "flood", "i=" + std::to_string(i));
  }
  // Only the burst got through: the newest kept line is the last of the burst.
  EXPECT_THAT(RecentProblems().back(), EndsWith("i=" + std::to_string(kLogBurst - 1)));
  // Another event is not held back by the flood.
  LogEvent(LogLevel::kWarning, "other", "x=1");
  EXPECT_THAT(RecentProblems().back(), HasSubstr("event=other x=1"));
  // Once a token is back, the next line says how many were dropped.
  std::this_thread::sleep_for(std::chrono::milliseconds(1000 / kLogPerSecond + 20));
  LogEvent(LogLevel::kWarning, "flood", "i=last");
  EXPECT_THAT(RecentProblems().back(), EndsWith("event=flood i=last suppressed=500"));
}

}  // namespace
}  // namespace stanzad
