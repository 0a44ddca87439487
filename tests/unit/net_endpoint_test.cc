#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include <string>

#include "gtest/gtest.h"
#include "net/engine.h"
#include "net/shard.h"

namespace stanzad::net {
namespace {

std::string RoundTrip(std::string_view text, uint16_t default_port = 5223) {
  absl::StatusOr<Endpoint> endpoint = Endpoint::Parse(text, default_port);
  if (!endpoint.ok()) return "error: " + std::string(endpoint.status().message());
  return endpoint->ToString();
}

TEST(EndpointTest, ParsesIpv4WithPort) {
  absl::StatusOr<Endpoint> endpoint = Endpoint::Parse("127.0.0.1:5222", 1);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  ASSERT_EQ(endpoint->address.ss_family, AF_INET);
  EXPECT_EQ(endpoint->length, sizeof(sockaddr_in));
  const auto& v4 = reinterpret_cast<const sockaddr_in&>(endpoint->address);
  EXPECT_EQ(ntohs(v4.sin_port), 5222);
  EXPECT_EQ(ntohl(v4.sin_addr.s_addr), 0x7F000001u);
  EXPECT_EQ(endpoint->ToString(), "127.0.0.1:5222");
}

TEST(EndpointTest, BareAddressesTakeTheDefaultPort) {
  EXPECT_EQ(RoundTrip("10.1.2.3"), "10.1.2.3:5223");
  EXPECT_EQ(RoundTrip("::1"), "[::1]:5223");
  EXPECT_EQ(RoundTrip("[::1]"), "[::1]:5223");
  EXPECT_EQ(RoundTrip("0.0.0.0", 0), "0.0.0.0:0");
}

TEST(EndpointTest, ParsesBracketedIpv6WithPort) {
  absl::StatusOr<Endpoint> endpoint = Endpoint::Parse("[2001:db8::1]:443", 1);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  ASSERT_EQ(endpoint->address.ss_family, AF_INET6);
  EXPECT_EQ(endpoint->length, sizeof(sockaddr_in6));
  EXPECT_EQ(endpoint->ToString(), "[2001:db8::1]:443");
  EXPECT_EQ(RoundTrip("[::]:0"), "[::]:0");
  EXPECT_EQ(RoundTrip("[::ffff:1.2.3.4]:9"), "[::ffff:1.2.3.4]:9");
}

TEST(EndpointTest, PortBounds) {
  EXPECT_EQ(RoundTrip("1.2.3.4:65535"), "1.2.3.4:65535");
  EXPECT_EQ(RoundTrip("1.2.3.4:0"), "1.2.3.4:0");
  EXPECT_NE(RoundTrip("1.2.3.4:65536").find("port must be 0 to 65535"), std::string::npos);
  EXPECT_NE(RoundTrip("1.2.3.4:").find("port"), std::string::npos);
  EXPECT_NE(RoundTrip("1.2.3.4:-1").find("port"), std::string::npos);
  EXPECT_NE(RoundTrip("1.2.3.4:5x").find("port"), std::string::npos);
  EXPECT_NE(RoundTrip("[::1]:99999").find("port"), std::string::npos);
  EXPECT_EQ(RoundTrip("1.2.3.4:00080"), "1.2.3.4:80");
  EXPECT_EQ(RoundTrip("1.2.3.4:65535"), "1.2.3.4:65535");
  for (const char* text :
       {"1.2.3.4:+80", "1.2.3.4: 80", "1.2.3.4:80 ", "1.2.3.4:000080", "1.2.3.4:4294967376"}) {
    EXPECT_NE(RoundTrip(text).find("port"), std::string::npos) << text;
  }
}

TEST(EndpointTest, RejectsWhatIsNotAnAddress) {
  for (const char* text :
       {"", ":5222", "localhost:5222", "example.com", "1.2.3:5", "256.1.1.1:5", "[::1", "[::1]x",
        "[::1]:", "[1.2.3.4]:5", "1.2.3.4:5:6", "[]:5", "[::1%]:5"}) {
    absl::StatusOr<Endpoint> endpoint = Endpoint::Parse(text, 5222);
    EXPECT_FALSE(endpoint.ok()) << "\"" << text << "\" parsed as " << endpoint->ToString();
    if (!endpoint.ok()) {
      EXPECT_EQ(endpoint.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(endpoint.status().message().find(text), absl::string_view::npos)
          << endpoint.status();
    }
  }
}

TEST(EndpointTest, Ipv6ZoneByNameOrIndex) {
  const unsigned loopback = if_nametoindex("lo");
  if (loopback == 0) GTEST_SKIP() << "no interface named lo";
  absl::StatusOr<Endpoint> by_name = Endpoint::Parse("[fe80::1%lo]:7", 1);
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(reinterpret_cast<const sockaddr_in6&>(by_name->address).sin6_scope_id, loopback);
  EXPECT_EQ(by_name->ToString(), "[fe80::1%" + std::to_string(loopback) + "]:7");
  EXPECT_EQ(RoundTrip("[fe80::1%" + std::to_string(loopback) + "]:7"), by_name->ToString());
  EXPECT_FALSE(Endpoint::Parse("[fe80::1%no-such-if0]:7", 1).ok());
  EXPECT_FALSE(Endpoint::Parse("[fe80::1%4294967296]:7", 1).ok());  // no index wraps to 0
}

TEST(EndpointTest, UnsetEndpointPrintsAsUnknown) {
  EXPECT_EQ(Endpoint().ToString(), "<unknown address>");
}

TEST(ConnectionIdTest, PacksShardSlotAndGeneration) {
  for (int shard : {0, 1, 7, kShardsMax - 1}) {
    for (uint32_t slot : {0u, 1u, kSlotsMax - 1}) {
      for (uint32_t generation : {0u, 1u, 0xFFFFFFFFu}) {
        const ConnectionId id = MakeConnectionId(shard, slot, generation);
        EXPECT_NE(id, kNoConnection);
        EXPECT_EQ(ShardOf(id), shard);
        EXPECT_EQ(SlotOf(id), slot);
        EXPECT_EQ(GenerationOf(id), generation);
      }
    }
  }
  EXPECT_NE(MakeConnectionId(0, 5, 1), MakeConnectionId(0, 5, 2));
  EXPECT_NE(MakeConnectionId(0, 5, 1), MakeConnectionId(1, 5, 1));
  EXPECT_EQ(ShardOf(kNoConnection), -1);
}

}  // namespace
}  // namespace stanzad::net
