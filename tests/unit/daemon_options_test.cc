// ReadDaemonOptions (server/daemon_options.h): the flags as the daemon gets them — floors,
// units, the per-shard split — and the errors that name a flag.
#include "server/daemon_options.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"

ABSL_DECLARE_FLAG(std::string, state_dir);
ABSL_DECLARE_FLAG(std::string, log_level);
ABSL_DECLARE_FLAG(std::string, routing);
ABSL_DECLARE_FLAG(std::string, cluster_address);
ABSL_DECLARE_FLAG(int, threads);
ABSL_DECLARE_FLAG(int, route_digest_ms);
ABSL_DECLARE_FLAG(int, connections_max);
ABSL_DECLARE_FLAG(int, queue_bytes_max);
ABSL_DECLARE_FLAG(int, stanza_bytes_max);
ABSL_DECLARE_FLAG(int, idle_timeout_s);
ABSL_DECLARE_FLAG(int, slow_reader_timeout_ms);
ABSL_DECLARE_FLAG(int, cluster_handshake_timeout_ms);
ABSL_DECLARE_FLAG(int, forward_hold_ms);

namespace stanzad {
namespace {

TEST(DaemonOptionsTest, DefaultsInTheShapeThePartsTake) {
  absl::FlagSaver restore;
  absl::SetFlag(&FLAGS_state_dir, "/var/lib/stanzad");
  absl::SetFlag(&FLAGS_threads, 4);
  absl::StatusOr<DaemonOptions> options = ReadDaemonOptions();
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->shards, 4);
  EXPECT_EQ(options->connections_max_per_shard, 25000u);  // 100,000 over 4 shards
  EXPECT_EQ(options->connection_queue_bytes_max, 1u << 20);
  EXPECT_EQ(options->router.slow_reader_queue_bytes, (1u << 20) / 4);
  EXPECT_EQ(options->router.resume_timeout_ms, 300'000u);
  EXPECT_EQ(options->router.auth_failure_window_ms, 60'000u);
  EXPECT_EQ(options->router.idle_timeout_ms, 0u);
  EXPECT_EQ(options->relay.hold_ms, 5000u);
  EXPECT_EQ(options->relay.abort_wait_ms, 10'000u);
  EXPECT_EQ(options->relay.no_leader_hold_ms, 3000u);
  EXPECT_EQ(options->directory.digest_interval_ms, 1000u);
  EXPECT_FALSE(options->relay.direct);
  EXPECT_EQ(options->relay.stanza_bytes_max, 256u * 1024 + 1024);
  EXPECT_EQ(options->cluster_links.handshake_timeout_ms, 5000u);
  EXPECT_EQ(options->log_level, LogLevel::kInfo);
}

TEST(DaemonOptionsTest, ValuesBelowAFloorAreRaisedAndSecondsBecomeMilliseconds) {
  absl::FlagSaver restore;
  absl::SetFlag(&FLAGS_state_dir, "/tmp/n1");
  absl::SetFlag(&FLAGS_threads, 2);
  absl::SetFlag(&FLAGS_connections_max, 1);
  absl::SetFlag(&FLAGS_queue_bytes_max, 10);
  absl::SetFlag(&FLAGS_stanza_bytes_max, 1);
  absl::SetFlag(&FLAGS_cluster_handshake_timeout_ms, 5);
  absl::SetFlag(&FLAGS_forward_hold_ms, 0);
  absl::SetFlag(&FLAGS_idle_timeout_s, 7);
  absl::SetFlag(&FLAGS_routing, "direct");
  absl::StatusOr<DaemonOptions> options = ReadDaemonOptions();
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->connections_max_per_shard, 1u);
  EXPECT_EQ(options->connection_queue_bytes_max, 4096u);
  EXPECT_EQ(options->router.tokenizer.stanza_bytes_max, 1024u);
  EXPECT_EQ(options->relay.stanza_bytes_max, 2048u);
  EXPECT_EQ(options->cluster_links.handshake_timeout_ms, 100u);
  EXPECT_EQ(options->relay.hold_ms, 1u);
  EXPECT_EQ(options->router.idle_timeout_ms, 7000u);
  EXPECT_TRUE(options->relay.direct);
}

TEST(DaemonOptionsTest, EachErrorNamesItsFlag) {
  struct Case {
    std::function<void()> set;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {[] {}, "--state_dir is required"},
           {[] { absl::SetFlag(&FLAGS_log_level, "loud"); },
            "--log_level must be info, warning or error, not 'loud'"},
           {[] { absl::SetFlag(&FLAGS_routing, "fast"); },
            "--routing must be leader or direct, not 'fast'"},
           {[] { absl::SetFlag(&FLAGS_cluster_address, "1.2.3.4:5"); },
            "--cluster_address must be this node's IP address"},
           {[] { absl::SetFlag(&FLAGS_idle_timeout_s, -1); },
            "--idle_timeout_s must be 0 or more, not -1"},
           {[] { absl::SetFlag(&FLAGS_slow_reader_timeout_ms, -5); },
            "--slow_reader_timeout_ms must be 0 or more, not -5"},
           {[] { absl::SetFlag(&FLAGS_route_digest_ms, 99); },
            "--route_digest_ms must be 100 to 600000, not 99"},
           {[] { absl::SetFlag(&FLAGS_route_digest_ms, 600001); },
            "--route_digest_ms must be 100 to 600000, not 600001"},
       }) {
    absl::FlagSaver restore;
    if (c.message.find("state_dir") == std::string::npos) {
      absl::SetFlag(&FLAGS_state_dir, "/tmp/n1");
    }
    c.set();
    absl::StatusOr<DaemonOptions> options = ReadDaemonOptions();
    ASSERT_FALSE(options.ok()) << c.message;
    EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(options.status().message()).find(c.message), std::string::npos)
        << options.status();
  }
}

}  // namespace
}  // namespace stanzad
