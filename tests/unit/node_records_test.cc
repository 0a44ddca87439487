// The node's own records to its shards (server/node_shard.h): each kind laid out and read
// back by the one codec, and every other kind left to the router.
#include <gtest/gtest.h>

#include <string>
#include <variant>

#include "core/router/shard_records.h"
#include "server/node_shard.h"

namespace stanzad::server {
namespace {

net::CrossShardMessage AsSent(const router::EncodedRecord& record) {
  return net::CrossShardMessage{record.kind(), record.target(), record.argument(),
                                record.payload()};
}

TEST(NodeRecordsTest, EachKindRoundTripsAndRouterKindsAreNotTheNodes) {
  const std::string payload("\x01\x00\x02\x00\x05stanza", 10);
  const router::EncodedRecord lane = EncodeNodeRecord(LaneFrameFromPeer{7, payload});
  const std::optional<NodeRecord> decoded = DecodeNodeRecord(AsSent(lane));
  ASSERT_TRUE(decoded.has_value());
  const auto* from_peer = std::get_if<LaneFrameFromPeer>(&*decoded);
  ASSERT_NE(from_peer, nullptr);
  EXPECT_EQ(from_peer->from, 7u);
  EXPECT_EQ(from_peer->payload, payload);

  const std::optional<NodeRecord> changed =
      DecodeNodeRecord(AsSent(EncodeNodeRecord(DataPlaneChanged{})));
  ASSERT_TRUE(changed.has_value());
  EXPECT_TRUE(std::holds_alternative<DataPlaneChanged>(*changed));

  // Every router record is the router's: the node decodes none of them.
  const router::EncodedRecord bounce = router::EncodeShardRecord(
      router::Bounce{5, xmpp::StanzaErrorCondition::kServiceUnavailable, "<message/>"});
  EXPECT_FALSE(DecodeNodeRecord(AsSent(bounce)).has_value());
  for (uint32_t kind = 0; kind < kDataPlaneChanged; ++kind) {
    EXPECT_FALSE(DecodeNodeRecord(net::CrossShardMessage{kind, 0, 0, ""}).has_value()) << kind;
  }
}

}  // namespace
}  // namespace stanzad::server
