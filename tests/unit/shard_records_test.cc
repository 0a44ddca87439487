#include "core/router/shard_records.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace stanzad::router {
namespace {

using ::testing::HasSubstr;
using xmpp::StanzaErrorCondition;

FullJid Jid(std::string_view text) {
  std::optional<FullJid> jid = FullJid::Parse(text);
  EXPECT_TRUE(jid.has_value()) << text;
  return jid.value_or(*FullJid::Parse("x/y"));
}

// One record of every kind, with fields that differ from one another and from 0.
std::vector<ShardRecord> OneOfEach() {
  const ResumeRequest request{"0123abcd", "juliet", 4'000'000'000u};
  return {
      ConfigChanged{},
      BindRequest{11, "cb1.example.com"},
      UnbindRequest{12, "cb1.example.com"},
      RouteBind{13, "cb2.example.com"},
      RouteUnbind{14, "cb2.example.com"},
      RouteBindAck{15},
      Conflict{16, "juliet@example.com/balcony"},
      Deliver{17, 18, "<message to='cb1.example.com'/>"},
      Bounce{19, StanzaErrorCondition::kRecipientUnavailable, "<iq id='1'/>"},
      DeliverFromPeer{77, "<message from='a@b/c'/>"},
      RemoteRouteBind{78, "romeo@example.com"},
      RemoteRouteUnbind{79, "romeo@example.com/garden"},
      ForgetNode{80},
      ClientBindRequest{21, Jid("juliet@example.com/balcony")},
      ClientUnbindRequest{22, Jid("juliet@example.com/balcony")},
      ClientBindRefused{23, Jid("juliet@example.com/17")},
      ClientRouteBind{24, Jid("romeo@example.com/garden")},
      ClientRouteUnbind{25, Jid("romeo@example.com/garden")},
      ClientRouteBindAck{26},
      ClientPresence{27, Jid("juliet@example.com/balcony"), true, -5},
      SmRegister{28, "0123abcd"},
      SmUnregister{29, "0123abcd"},
      SmResumeLookup{30, request},
      ClientResumeRequest{31, 32, request},
      ClientResumeFailed{33},
      ClientResumeStanza{34, "<message id='m1'/>"},
      ClientResumeAccepted{35, Jid("juliet@example.com/balcony"), 4'294'967'295u},
      FailureSeen{FailureOf::kAccount, "juliet"},
      PreauthChanged{PreauthChange::kEnded, "192.0.2.7"},
  };
}

TEST(ShardRecordsTest, EveryRecordSurvivesARoundTrip) {
  std::set<size_t> alternatives;
  std::set<uint32_t> kinds;
  for (const ShardRecord& record : OneOfEach()) {
    alternatives.insert(record.index());
    const EncodedRecord encoded = EncodeShardRecord(record);
    kinds.insert(encoded.kind());
    EXPECT_NE(ShardRecordKindName(encoded.kind()), "unknown") << encoded.kind();
    absl::StatusOr<ShardRecord> decoded = DecodeShardRecord(encoded);
    ASSERT_TRUE(decoded.ok()) << ShardRecordKindName(encoded.kind()) << ": " << decoded.status();
    EXPECT_TRUE(*decoded == record) << ShardRecordKindName(encoded.kind());
    // As the engine carries it: the fields copied, the payload in bytes of its own.
    const std::string bytes(encoded.payload());
    decoded = DecodeShardRecord(
        EncodedRecord(encoded.kind(), encoded.target(), encoded.argument(), bytes));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_TRUE(*decoded == record) << ShardRecordKindName(encoded.kind());
  }
  EXPECT_EQ(alternatives.size(), std::variant_size_v<ShardRecord>) << "a kind has no test";
  EXPECT_EQ(kinds.size(), std::variant_size_v<ShardRecord>) << "two records share a kind";
}

TEST(ShardRecordsTest, ClientPresenceKeepsEveryPriority) {
  for (const bool available : {false, true}) {
    for (int priority = -128; priority <= 127; ++priority) {
      const ShardRecord record = ClientPresence{1, Jid("a@b/c"), available, priority};
      absl::StatusOr<ShardRecord> decoded = DecodeShardRecord(EncodeShardRecord(record));
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      EXPECT_TRUE(*decoded == record) << priority;
    }
  }
}

// Every poster builds its record now, so no code depends on these layouts but the
// codec; they stay pinned because the fuzzer's seeds (tests/fuzz/corpus/shard_records)
// are written in them, and a change of layout should be a decision, not an accident.
TEST(ShardRecordsTest, LayoutsArePinned) {
  const EncodedRecord lookup = EncodeShardRecord(SmResumeLookup{7, {"0a1b", "juliet", 42}});
  EXPECT_EQ(lookup.kind(), 23u);
  EXPECT_EQ(lookup.target(), 7u);
  EXPECT_EQ(lookup.payload(), "0a1b\njuliet\n42");
  const EncodedRecord request = EncodeShardRecord(ClientResumeRequest{8, 7, {"0a1b", "j", 0}});
  EXPECT_EQ(request.kind(), 24u);
  EXPECT_EQ(request.target(), 8u);
  EXPECT_EQ(request.argument(), 7u);
  EXPECT_EQ(request.payload(), "0a1b\nj\n0");
  const EncodedRecord accepted = EncodeShardRecord(ClientResumeAccepted{7, Jid("j@e/r"), 3});
  EXPECT_EQ(accepted.kind(), 27u);
  EXPECT_EQ(accepted.payload(), "j@e/r\n3");
  const EncodedRecord presence = EncodeShardRecord(ClientPresence{5, Jid("j@e/r"), true, 3});
  EXPECT_EQ(presence.kind(), 20u);
  EXPECT_EQ(presence.argument(), 1u | (131u << 1));
  const EncodedRecord bounce =
      EncodeShardRecord(Bounce{9, StanzaErrorCondition::kServiceUnavailable, "<iq/>"});
  EXPECT_EQ(bounce.kind(), 7u);
  EXPECT_EQ(bounce.target(), 9u);
  EXPECT_EQ(bounce.argument(), static_cast<uint64_t>(StanzaErrorCondition::kServiceUnavailable));
  const EncodedRecord remote = EncodeShardRecord(RemoteRouteBind{42, "cb2.example.com"});
  EXPECT_EQ(remote.kind(), 10u);
  EXPECT_EQ(remote.target(), 0u);
  EXPECT_EQ(remote.argument(), 42u);
  EXPECT_EQ(remote.payload(), "cb2.example.com");
  const EncodedRecord peer = EncodeShardRecord(DeliverFromPeer{42, "<message/>"});
  EXPECT_EQ(peer.kind(), 13u);
  EXPECT_EQ(peer.argument(), 42u);
  EXPECT_EQ(EncodeShardRecord(ConfigChanged{}).kind(), 1u);
  EXPECT_EQ(EncodeShardRecord(ForgetNode{3}).kind(), 12u);
  EXPECT_EQ(EncodeShardRecord(FailureSeen{FailureOf::kAddress, "192.0.2.1"}).argument(), 0u);
  EXPECT_EQ(EncodeShardRecord(PreauthChanged{PreauthChange::kBegan, "192.0.2.1"}).argument(), 0u);
}

void ExpectRefused(uint32_t kind, uint64_t target, uint64_t argument, std::string_view payload) {
  absl::StatusOr<ShardRecord> decoded =
      DecodeShardRecord(EncodedRecord(kind, target, argument, payload));
  ASSERT_FALSE(decoded.ok()) << "kind " << kind << " argument " << argument << " payload "
                             << payload;
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(decoded.status().message(), HasSubstr(std::to_string(kind)));
}

TEST(ShardRecordsTest, UnknownKindsAreRefused) {
  for (const uint32_t kind : {0u, 30u, 31u, 1000u, std::numeric_limits<uint32_t>::max()}) {
    ExpectRefused(kind, 1, 1, "x");
  }
}

TEST(ShardRecordsTest, MalformedFieldsAreRefused) {
  const uint64_t max64 = std::numeric_limits<uint64_t>::max();
  // A condition out of range would index past the per-condition counters.
  ExpectRefused(kBounce, 1, xmpp::kStanzaErrorConditionCount, "<iq/>");
  ExpectRefused(kBounce, 1, max64, "<iq/>");
  for (const uint32_t kind : {kClientBindRequest, kClientUnbindRequest, kClientBindRefused,
                              kClientRouteBind, kClientRouteUnbind, kClientPresence}) {
    ExpectRefused(kind, 1, 0, "juliet@example.com");  // no resource
    ExpectRefused(kind, 1, 0, "/balcony");            // no bare JID
    ExpectRefused(kind, 1, 0, "");
  }
  ExpectRefused(kClientPresence, 1, 512, "a@b/c");  // a priority above 127
  ExpectRefused(kClientPresence, 1, max64, "a@b/c");
  for (const uint32_t kind : {kSmResumeLookup, kClientResumeRequest}) {
    for (const std::string_view payload :
         {"", "0a1b", "0a1b\njuliet", "0a1b\njuliet\n", "0a1b\njuliet\n-1", "0a1b\njuliet\n+1",
          "0a1b\njuliet\n 1", "0a1b\njuliet\n4294967296", "0a1b\njuliet\n1\n2"}) {
      ExpectRefused(kind, 1, 2, payload);
    }
  }
  for (const std::string_view payload :
       {"", "j@e/r", "j@e/r\n", "j@e\n3", "/r\n3", "j@e/r\nx", "j@e/r\n4294967296"}) {
    ExpectRefused(kClientResumeAccepted, 1, 0, payload);
  }
  ExpectRefused(kFailureSeen, 0, 2, "192.0.2.1");
  ExpectRefused(kFailureSeen, 0, max64, "192.0.2.1");
  ExpectRefused(kPreauthChanged, 0, 2, "192.0.2.1");
  ExpectRefused(kPreauthChanged, 0, max64, "192.0.2.1");
}

// Whatever the fields, decoding returns (never crashes), and what it accepts encodes back
// to a record that decodes the same.
TEST(ShardRecordsTest, AnyFieldsDecodeOrAreRefused) {
  const std::vector<uint64_t> numbers = {0, 1, 2, 255, 256, 511, 512, 1u << 31, ~0ull};
  const std::vector<std::string_view> payloads = {"",
                                                  "\n",
                                                  "/",
                                                  "a/",
                                                  "a@b/c",
                                                  "a@b/c\n0",
                                                  "t\na\n7",
                                                  "t\n\n7",
                                                  "\n\n0",
                                                  "a/b\n\n",
                                                  std::string_view("\0/\0\n9", 5)};
  for (uint32_t kind = 0; kind <= 32; ++kind) {
    for (const uint64_t argument : numbers) {
      for (const std::string_view payload : payloads) {
        absl::StatusOr<ShardRecord> decoded =
            DecodeShardRecord(EncodedRecord(kind, 5, argument, payload));
        if (!decoded.ok()) continue;
        const EncodedRecord again = EncodeShardRecord(*decoded);
        EXPECT_EQ(again.kind(), kind);
        absl::StatusOr<ShardRecord> twice = DecodeShardRecord(again);
        ASSERT_TRUE(twice.ok()) << twice.status();
        EXPECT_TRUE(*twice == *decoded) << ShardRecordKindName(kind);
      }
    }
  }
}

TEST(ShardRecordsTest, AnOwnedCopyOutlivesTheStringsItWasEncodedFrom) {
  std::string address = "cb1.example.com";
  const EncodedRecord owned = EncodeShardRecord(BindRequest{3, address}).Owned();
  address.assign(address.size(), 'x');
  EXPECT_EQ(owned.kind(), kBindRequest);
  EXPECT_EQ(owned.target(), 3u);
  EXPECT_EQ(owned.payload(), "cb1.example.com");
  const EncodedRecord copy = owned;  // a copy views its own payload, not the original's
  EXPECT_NE(copy.payload().data(), owned.payload().data());
  EXPECT_EQ(copy.payload(), "cb1.example.com");
}

TEST(ShardRecordsTest, FullJidSplitsAtTheFirstSlash) {
  const FullJid jid = Jid("juliet@example.com/balcony/upstairs");
  EXPECT_EQ(jid.bare(), "juliet@example.com");
  EXPECT_EQ(jid.resource(), "balcony/upstairs");
  EXPECT_EQ(jid.text(), "juliet@example.com/balcony/upstairs");
  EXPECT_EQ(Jid("a@b/").resource(), "");
  EXPECT_FALSE(FullJid::Parse("juliet@example.com").has_value());
  EXPECT_FALSE(FullJid::Parse("/balcony").has_value());
}

TEST(ControlRecordsTest, EveryRecordSurvivesARoundTrip) {
  const std::vector<ControlRecord> records = {RouteUp{"cb1.example.com"},
                                              RouteDown{"juliet@example.com"},
                                              Forward{7, 42, "<message to='cb2.example.com'/>"}};
  std::set<size_t> alternatives;
  for (const ControlRecord& record : records) {
    alternatives.insert(record.index());
    absl::StatusOr<ControlRecord> decoded = DecodeControlRecord(EncodeControlRecord(record));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_TRUE(*decoded == record);
  }
  EXPECT_EQ(alternatives.size(), std::variant_size_v<ControlRecord>);
  const EncodedRecord forward = EncodeControlRecord(Forward{7, 42, "<m/>"});
  EXPECT_EQ(forward.kind(), 3u);
  EXPECT_EQ(forward.target(), 7u);
  EXPECT_EQ(forward.argument(), 42u);
  EXPECT_EQ(EncodeControlRecord(RouteUp{"a"}).kind(), 1u);
  EXPECT_EQ(EncodeControlRecord(RouteDown{"a"}).kind(), 2u);
  for (const uint32_t kind : {0u, 4u, 1000u}) {
    EXPECT_EQ(DecodeControlRecord(EncodedRecord(kind, 0, 0, "")).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace stanzad::router
