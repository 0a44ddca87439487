// The kRoutes frame (cluster/relay/wire.h): its bytes, every part round trip, and the
// decoder's refusal of what is not a frame (cut at every byte offset, too long, unknown).
#include "cluster/relay/wire.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace stanzad::cluster::relay {
namespace {

std::string Little64(uint64_t value) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  return out;
}

// Pinned: a digest is compared between processes and nodes, so the hash must never change
// (FNV-1a 64, then fmix64; computed independently of this code).
TEST(RouteDigestWire, TheAddressHashIsFixed) {
  EXPECT_EQ(RouteAddressHash(""), 0xefd01f60ba992926ULL);
  EXPECT_EQ(RouteAddressHash("cb1.example.com"), 0xa4eed6fc7585991cULL);
  EXPECT_EQ(RouteAddressHash("juliet@example.com/balcony"), 0xecb69afb9fde40bcULL);
}

TEST(RouteDigestWire, ADigestDoesNotDependOnOrderAndTakesAnAddressOut) {
  RouteDigest one, other;
  one.Add("cb1.example.com");
  one.Add("juliet@example.com/balcony");
  other.Add("juliet@example.com/balcony");
  other.Add("cb1.example.com");
  EXPECT_EQ(one, other);
  EXPECT_EQ(one.count, 2u);
  EXPECT_EQ(one.hash, 0x91a571f81563d9d8ULL);
  other.Add("cb2.example.com");
  EXPECT_NE(one, other);
  other.Remove("cb2.example.com");
  EXPECT_EQ(one, other);
  one.Remove("cb1.example.com");
  one.Remove("juliet@example.com/balcony");
  EXPECT_EQ(one, RouteDigest{});
}

TEST(RouteDigestWire, DigestAndRequestBytes) {
  RoutesFrame digest{RoutesPart::kDigest, {}, {2, 0x91a571f81563d9d8ULL}};
  const std::string bytes = EncodeRoutes(digest);
  EXPECT_EQ(bytes, std::string("\x05", 1) + Little64(2) + Little64(0x91a571f81563d9d8ULL));
  EXPECT_EQ(bytes.size(), kRoutesHeaderBytes + kRouteDigestBytes);
  absl::StatusOr<RoutesFrame> decoded = DecodeRoutes(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->part, RoutesPart::kDigest);
  EXPECT_EQ(decoded->digest, digest.digest);
  EXPECT_TRUE(decoded->updates.empty());

  const std::string request = EncodeRoutes({RoutesPart::kSetRequest, {}});
  EXPECT_EQ(request, std::string("\x06", 1));
  decoded = DecodeRoutes(request);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->part, RoutesPart::kSetRequest);
  EXPECT_TRUE(decoded->updates.empty());
  EXPECT_EQ(decoded->digest, RouteDigest{});
}

TEST(RouteDigestWire, EveryPartRoundTrips) {
  for (const RoutesPart part : {RoutesPart::kChanges, RoutesPart::kWhole, RoutesPart::kFirst,
                                RoutesPart::kMore, RoutesPart::kLast}) {
    const RoutesFrame frame{part, {{true, "cb1.example.com"}, {false, "a@example.com/r"}}};
    const std::string bytes = EncodeRoutes(frame);
    absl::StatusOr<RoutesFrame> decoded = DecodeRoutes(bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->part, part);
    ASSERT_EQ(decoded->updates.size(), 2u);
    EXPECT_TRUE(decoded->updates[0].add);
    EXPECT_EQ(decoded->updates[0].address, "cb1.example.com");
    EXPECT_FALSE(decoded->updates[1].add);
    EXPECT_EQ(decoded->updates[1].address, "a@example.com/r");
    EXPECT_EQ(EncodeRoutes(*decoded), bytes);
  }
}

// A digest or request cut anywhere, or with a byte more, is no frame.
TEST(RouteDigestWire, ADigestOrRequestCutOrLongerIsRefused) {
  const std::string digest = EncodeRoutes({RoutesPart::kDigest, {}, {7, 0x0123456789abcdefULL}});
  for (size_t size = 0; size < digest.size(); ++size) {
    EXPECT_FALSE(DecodeRoutes(digest.substr(0, size)).ok()) << size;
  }
  EXPECT_FALSE(DecodeRoutes(digest + std::string(1, '\0')).ok());
  EXPECT_FALSE(DecodeRoutes(std::string("\x06\x00", 2)).ok());
  EXPECT_FALSE(
      DecodeRoutes(
          EncodeRoutes({RoutesPart::kWhole, {{true, "x.example.com"}}}).replace(0, 1, "\x06"))
          .ok());
}

TEST(RouteDigestWire, UnknownPartsAndBadEntriesAreRefused) {
  EXPECT_FALSE(DecodeRoutes("").ok());
  for (int part = static_cast<int>(kLastRoutesPart) + 1; part < 256; ++part) {
    EXPECT_FALSE(DecodeRoutes(std::string(1, static_cast<char>(part))).ok()) << part;
  }
  const std::string entry_ok = std::string("\x00\x01\x01\x00x", 5);
  EXPECT_TRUE(DecodeRoutes(entry_ok).ok());
  EXPECT_FALSE(DecodeRoutes(std::string("\x00\x02\x01\x00x", 5)).ok());  // op 2
  EXPECT_FALSE(DecodeRoutes(std::string("\x00\x01\x00\x00", 4)).ok());   // empty address
  EXPECT_FALSE(DecodeRoutes(std::string("\x00\x01\x02\x00x", 5)).ok());  // longer than given
  RoutesFrame too_long{RoutesPart::kChanges, {{true, std::string(kRouteAddressBytesMax + 1, 'a')}}};
  EXPECT_FALSE(DecodeRoutes(EncodeRoutes(too_long)).ok());
  // A client's full JID with every part at RFC 7622's 1023 bytes is a route like any other.
  const std::string longest_jid =
      std::string(1023, 'u') + "@" + std::string(1023, 'd') + "/" + std::string(1023, 'r');
  absl::StatusOr<RoutesFrame> longest =
      DecodeRoutes(EncodeRoutes({RoutesPart::kChanges, {{true, longest_jid}}}));
  ASSERT_TRUE(longest.ok()) << longest.status();
  EXPECT_EQ(longest->updates.at(0).address, longest_jid);
}

// A routes frame cut at any offset decodes to the routes before the cut (at an entry's end)
// or not at all.
TEST(RouteDigestWire, ARoutesFrameCutAtEveryOffset) {
  const RoutesFrame frame{RoutesPart::kWhole,
                          {{true, "cb1.example.com"}, {true, "cb2.example.com"}, {true, "c.org"}}};
  const std::string bytes = EncodeRoutes(frame);
  size_t whole_prefixes = 0;
  for (size_t size = 0; size < bytes.size(); ++size) {
    absl::StatusOr<RoutesFrame> decoded = DecodeRoutes(bytes.substr(0, size));
    if (!decoded.ok()) continue;
    ++whole_prefixes;
    ASSERT_LT(decoded->updates.size(), frame.updates.size());
    for (size_t i = 0; i < decoded->updates.size(); ++i) {
      EXPECT_EQ(decoded->updates[i].address, frame.updates[i].address);
    }
  }
  EXPECT_EQ(whole_prefixes, 3u);  // the header alone, then after the first and second route
}

}  // namespace
}  // namespace stanzad::cluster::relay
