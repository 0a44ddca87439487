#include "admin/cluster_address.h"

#include <gtest/gtest.h>

namespace stanzad {
namespace {

TEST(ClusterAddressTest, SplitsHostAndPortAndNamesWhatIsWrong) {
  absl::StatusOr<HostPort> v4 = SplitHostPort("127.0.0.2:5280");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->host, "127.0.0.2");
  EXPECT_EQ(v4->port, 5280);
  absl::StatusOr<HostPort> v6 = SplitHostPort("[::1]:5280");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 5280);
  absl::StatusOr<HostPort> bare = SplitHostPort("::1");
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(bare->host, "::1");
  EXPECT_FALSE(bare->port.has_value());
  for (const char* bad : {"", ":5280", "host:0", "host:65536", "host:12ab", "[::1", "[::1]x"}) {
    EXPECT_FALSE(SplitHostPort(bad).ok()) << bad;
  }
}

// The daemon takes IP literals only: its control thread never waits for DNS.
TEST(ClusterAddressTest, TheDaemonsSideTakesIpLiteralsAndRefusesNames) {
  EXPECT_EQ(*ClusterAddressOf("127.0.0.2", 5279), "127.0.0.2:5279");
  EXPECT_EQ(*ClusterAddressOf("127.0.0.2:6000", 5279), "127.0.0.2:6000");
  EXPECT_EQ(*ClusterAddressOf("[::1]", 5279), "[::1]:5279");
  EXPECT_EQ(*ClusterAddressOf("::1", 5279), "[::1]:5279");
  const absl::StatusOr<std::string> name = ClusterAddressOf("node2.example.com:5279", 5279);
  ASSERT_FALSE(name.ok());
  EXPECT_NE(name.status().message().find("stanzactl resolves names"), std::string::npos)
      << name.status();
}

// stanzactl's side: a literal as it is; "localhost" (in /etc/hosts, no DNS server needed)
// becomes an address the daemon takes, its port kept.
TEST(ClusterAddressTest, StanzactlResolvesNamesAndKeepsThePort) {
  EXPECT_EQ(*ResolveNameIn("127.0.0.3:7000"), "127.0.0.3:7000");
  absl::StatusOr<std::string> local = ResolveNameIn("localhost:7000");
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_TRUE(*local == "127.0.0.1:7000" || *local == "[::1]:7000") << *local;
  EXPECT_TRUE(ClusterAddressOf(*local, 5279).ok());
}

}  // namespace
}  // namespace stanzad
