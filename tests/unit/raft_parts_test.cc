// RaftPartSender and RaftPartAssembler: a snapshot message crosses in parts, paced by the
// link's queue, and comes out whole; repeats of a snapshot under way are not sent again;
// parts that break the rules are refused and drop what was gathered.
#include "cluster/node/raft_parts.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cluster/raft/message_codec.h"

namespace stanzad::cluster {
namespace {

raft::Message SnapshotMessage(std::shared_ptr<const raft::Snapshot> snapshot, raft::NodeId to) {
  raft::Message message;
  message.type = raft::MessageType::kSnapshot;
  message.from = 1;
  message.to = to;
  message.term = 3;
  message.snapshot = std::move(snapshot);
  return message;
}

std::shared_ptr<const raft::Snapshot> MakeSnapshot(size_t bytes) {
  auto snapshot = std::make_shared<raft::Snapshot>();
  snapshot->metadata = {42, 3, {{1, "127.0.0.1:5999"}, {2, "127.0.0.2:5999"}}};
  snapshot->data.resize(bytes);
  for (size_t i = 0; i < bytes; ++i) snapshot->data[i] = static_cast<char>(i * 131 + i / 7);
  return snapshot;
}

// A link per peer that drains `drain` bytes a turn.
struct Links {
  std::map<raft::NodeId, std::vector<std::string>> parts;
  std::map<raft::NodeId, size_t> queued;
  bool up = true;
  size_t largest_queue = 0;

  RaftPartSender::QueuedTo queued_to() {
    return [this](raft::NodeId peer) { return queued[peer]; };
  }
  RaftPartSender::SendPart send_part() {
    return [this](raft::NodeId peer, std::string_view payload) {
      if (!up) return false;
      parts[peer].emplace_back(payload);
      queued[peer] += payload.size();
      largest_queue = std::max(largest_queue, queued[peer]);
      return true;
    };
  }
  void Drain() { queued.clear(); }
};

TEST(RaftPartsTest, ASnapshotCrossesInPartsPacedByTheQueueAndComesOutWhole) {
  const auto snapshot = MakeSnapshot(9 * kRaftPartBytes + 12345);
  const raft::Message message = SnapshotMessage(snapshot, 2);
  RaftPartSender sender;
  Links links;
  sender.Send(message, 0);
  EXPECT_EQ(sender.active(), 1u);
  RaftPartAssembler assembler;
  std::optional<RaftPartAssembler::Whole> whole;
  for (int turn = 0; turn < 20 && !whole; ++turn) {
    sender.Pump(links.queued_to(), links.send_part());
    for (const std::string& part : links.parts[2]) {
      ASSERT_FALSE(whole.has_value());
      absl::StatusOr<std::optional<RaftPartAssembler::Whole>> added = assembler.Add(1, part, turn);
      ASSERT_TRUE(added.ok()) << added.status();
      whole = *added;
    }
    links.parts[2].clear();
    links.Drain();
  }
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(sender.active(), 0u);
  // Never much more than the bound waits on the link.
  EXPECT_LE(links.largest_queue, RaftPartSender::kQueuedBytesMax + kRaftPartBytes + 64);
  EXPECT_EQ(assembler.held_bytes(), 0u);
  std::string expected;
  raft::EncodeMessage(message, &expected);
  EXPECT_EQ(whole->bytes, expected);
  EXPECT_EQ(whole->first_ms, 0u);  // the turn its first part came
  absl::StatusOr<raft::Message> decoded =
      raft::DecodeMessage(whole->bytes, {.frame_bytes_max = kRaftMessageBytesMax});
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded->snapshot, *snapshot);
}

TEST(RaftPartsTest, ARepeatOfTheSameSnapshotIsNotSentAgainUnlessTheLinkClosed) {
  const auto snapshot = MakeSnapshot(3 * kRaftPartBytes);
  RaftPartSender sender;
  Links links;
  sender.Send(SnapshotMessage(snapshot, 2), 0);
  sender.Pump(links.queued_to(), links.send_part());
  links.Drain();
  sender.Send(SnapshotMessage(snapshot, 2), 10);  // under way
  sender.Pump(links.queued_to(), links.send_part());
  EXPECT_EQ(links.parts[2].size(), 4u);             // 3 MiB and the head: once
  sender.Send(SnapshotMessage(snapshot, 2), 1000);  // sent a moment ago
  sender.Pump(links.queued_to(), links.send_part());
  EXPECT_EQ(links.parts[2].size(), 4u);
  // After a while, or once the link closed, it goes again; so does a newer snapshot at once.
  sender.Send(SnapshotMessage(snapshot, 2), RaftPartSender::kResendAfterMs + 1);
  sender.Pump(links.queued_to(), links.send_part());
  EXPECT_EQ(links.parts[2].size(), 8u);
  links.Drain();
  sender.Forget(2);
  sender.Send(SnapshotMessage(snapshot, 2), RaftPartSender::kResendAfterMs + 2);
  sender.Pump(links.queued_to(), links.send_part());
  EXPECT_EQ(links.parts[2].size(), 12u);
  links.Drain();
  auto newer = std::make_shared<raft::Snapshot>(*MakeSnapshot(10));
  newer->metadata.index = 43;  // a snapshot is named by its index and term
  sender.Send(SnapshotMessage(newer, 2), RaftPartSender::kResendAfterMs + 3);
  sender.Pump(links.queued_to(), links.send_part());
  EXPECT_EQ(links.parts[2].size(), 13u);
  // Another peer has its own stream.
  sender.Send(SnapshotMessage(snapshot, 3), 0);
  sender.Pump(links.queued_to(), links.send_part());
  EXPECT_EQ(links.parts[3].size(), 4u);
}

// A snapshot fully queued is not kept alive by the sender: at size it is hundreds of MB,
// and Raft may have replaced it with a newer one meanwhile. A repeat is still dropped.
TEST(RaftPartsTest, ASnapshotSentWholeIsNotHeldBySender) {
  auto snapshot = MakeSnapshot(3 * kRaftPartBytes);
  const std::weak_ptr<const raft::Snapshot> weak = snapshot;
  RaftPartSender sender;
  Links links;
  sender.Send(SnapshotMessage(snapshot, 2), 0);
  for (int turn = 0; turn < 10 && sender.active() > 0; ++turn) {
    sender.Pump(links.queued_to(), links.send_part());
    links.Drain();
  }
  ASSERT_EQ(sender.active(), 0u);
  EXPECT_EQ(links.parts[2].size(), 4u);
  sender.Send(SnapshotMessage(snapshot, 2), 10);  // a repeat: dropped
  sender.Pump(links.queued_to(), links.send_part());
  EXPECT_EQ(links.parts[2].size(), 4u);
  snapshot.reset();
  EXPECT_TRUE(weak.expired());
}

TEST(RaftPartsTest, WithoutALinkTheMessageIsAbandoned) {
  RaftPartSender sender;
  Links links;
  links.up = false;
  const auto snapshot = MakeSnapshot(3 * kRaftPartBytes);
  sender.Send(SnapshotMessage(snapshot, 2), 0);
  sender.Pump(links.queued_to(), links.send_part());
  EXPECT_EQ(sender.active(), 0u);
  // Raft's repeat is sent once there is a link.
  links.up = true;
  sender.Send(SnapshotMessage(snapshot, 2), 1);
  sender.Pump(links.queued_to(), links.send_part());
  EXPECT_EQ(links.parts[2].size(), 4u);
}

TEST(RaftPartsTest, PartsThatBreakTheRulesAreRefusedAndDropWhatWasGathered) {
  RaftPartAssembler assembler;
  const std::string bytes(100, 'x');
  ASSERT_TRUE(assembler.Add(7, EncodeRaftPart(300, 0, bytes), 0).ok());
  EXPECT_EQ(assembler.held_bytes(), 100u);
  // A gap.
  EXPECT_FALSE(assembler.Add(7, EncodeRaftPart(300, 150, bytes), 0).ok());
  EXPECT_EQ(assembler.held_bytes(), 0u);
  // Another total halfway, more than the total, empty, short, too large.
  ASSERT_TRUE(assembler.Add(7, EncodeRaftPart(300, 0, bytes), 0).ok());
  EXPECT_FALSE(assembler.Add(7, EncodeRaftPart(301, 100, bytes), 0).ok());
  ASSERT_TRUE(assembler.Add(7, EncodeRaftPart(150, 0, bytes), 0).ok());
  EXPECT_FALSE(assembler.Add(7, EncodeRaftPart(150, 100, bytes), 0).ok());
  ASSERT_TRUE(assembler.Add(7, EncodeRaftPart(300, 0, bytes), 0).ok());
  EXPECT_FALSE(assembler.Add(7, EncodeRaftPart(300, 100, ""), 0).ok());
  EXPECT_FALSE(assembler.Add(7, "short", 0).ok());
  EXPECT_FALSE(assembler.Add(7, EncodeRaftPart(kRaftMessageBytesMax + 1, 0, bytes), 0).ok());
  EXPECT_FALSE(assembler.Add(7, EncodeRaftPart(0, 0, ""), 0).ok());
  EXPECT_EQ(assembler.held_bytes(), 0u);
  // A new message (offset 0), from any peer, replaces an unfinished one: one is held.
  ASSERT_TRUE(assembler.Add(7, EncodeRaftPart(300, 0, bytes), 0).ok());
  ASSERT_TRUE(assembler.Add(8, EncodeRaftPart(200, 0, bytes), 0).ok());
  EXPECT_EQ(assembler.held_bytes(), 100u);
  EXPECT_FALSE(assembler.Add(7, EncodeRaftPart(300, 100, bytes), 1).ok());  // 7's went
  EXPECT_EQ(assembler.held_bytes(), 100u);                                  // 8's stays
  ASSERT_TRUE(assembler.Add(7, EncodeRaftPart(200, 0, bytes), 5).ok());
  absl::StatusOr<std::optional<RaftPartAssembler::Whole>> whole =
      assembler.Add(7, EncodeRaftPart(200, 100, std::string(100, 'y')), 6);
  ASSERT_TRUE(whole.ok());
  ASSERT_TRUE(whole->has_value());
  EXPECT_EQ((*whole)->bytes, bytes + std::string(100, 'y'));
  EXPECT_EQ((*whole)->first_ms, 5u);
  EXPECT_EQ(assembler.held_bytes(), 0u);  // 8's went when 7 began again
  // What a peer stopped sending goes after kIdleMs.
  ASSERT_TRUE(assembler.Add(8, EncodeRaftPart(200, 0, bytes), 0).ok());
  EXPECT_EQ(assembler.held_bytes(), 100u);
  assembler.Expire(RaftPartAssembler::kIdleMs - 1);
  EXPECT_EQ(assembler.held_bytes(), 100u);
  assembler.Expire(RaftPartAssembler::kIdleMs);
  EXPECT_EQ(assembler.held_bytes(), 0u);
}

// What a misbehaving member may send: parts overlapping, repeated, out of order, with
// totals that change, from several peers. Each is refused or taken; nothing is held past
// what the parts in order gave, one peer's at most, and only a whole message in order
// comes out.
TEST(RaftPartsTest, RandomPartsFromSeveralPeersAreRefusedOrJoinedInOrder) {
  std::mt19937_64 random(20261207);
  RaftPartAssembler assembler;
  std::map<raft::NodeId, std::string> in_order;  // what each peer's parts joined give
  for (int i = 0; i < 20000; ++i) {
    const raft::NodeId peer = 1 + random() % 4;
    std::string& gathered = in_order[peer];
    const uint64_t total = 1 + random() % 64;
    const uint64_t offset = random() % 3 == 0 ? 0 : random() % 80;
    const std::string bytes(random() % 70, static_cast<char>('a' + random() % 26));
    // A first part voids what every peer sent: one message is held at a time.
    if (offset == 0) {
      for (auto& [id, part] : in_order) part.clear();
    }
    absl::StatusOr<std::optional<RaftPartAssembler::Whole>> added =
        assembler.Add(peer, EncodeRaftPart(total, offset, bytes), i);
    if (!added.ok()) {
      gathered.clear();
      continue;
    }
    if (offset == 0) gathered.clear();
    ASSERT_EQ(offset, gathered.size());  // taken only in order
    gathered += bytes;
    ASSERT_LE(gathered.size(), total);
    if (added->has_value()) {
      EXPECT_EQ((*added)->bytes, gathered);
      EXPECT_EQ(gathered.size(), total);
      gathered.clear();
    }
    size_t held = 0;
    size_t holding = 0;
    for (const auto& [id, part] : in_order) {
      held += part.size();
      holding += part.empty() ? 0 : 1;
    }
    ASSERT_EQ(assembler.held_bytes(), held);
    ASSERT_LE(holding, 1u);
  }
  // An overlap (a part sent again) is refused and drops what was gathered.
  ASSERT_TRUE(assembler.Add(9, EncodeRaftPart(300, 0, std::string(100, 'x')), 0).ok());
  EXPECT_FALSE(assembler.Add(9, EncodeRaftPart(300, 50, std::string(100, 'x')), 0).ok());
  EXPECT_FALSE(assembler.Add(9, EncodeRaftPart(300, 100, std::string(100, 'x')), 0).ok());
}

}  // namespace
}  // namespace stanzad::cluster
