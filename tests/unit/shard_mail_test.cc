// ShardMail (server/shard_mail.h): records wait in order per shard while a shard's queue is
// full, go when it takes them, and are counted when dropped.
#include "server/shard_mail.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace stanzad {
namespace {

// Two shards whose queues take `room[shard]` more records each.
struct FakeShards {
  int room[2] = {0, 0};
  std::vector<std::string> got[2];
  ShardMail::Post post() {
    return [this](int shard, uint32_t kind, uint64_t target, uint64_t argument,
                  std::string_view payload) {
      if (room[shard] == 0) return false;
      --room[shard];
      got[shard].push_back(std::to_string(kind) + ":" + std::string(payload) +
                           (target != 0 || argument != 0
                                ? "/" + std::to_string(target) + "/" + std::to_string(argument)
                                : ""));
      return true;
    };
  }
};

TEST(ShardMailTest, WaitsInOrderPerShardAndGoesWhenTheQueueTakesIt) {
  FakeShards shards;
  shards.room[1] = 10;
  ShardMail mail(2, 100);
  mail.Send(shards.post(), 0, 1, 0, 0, "a");
  mail.Send(shards.post(), 1, 1, 0, 0, "x");  // shard 1 has room: at once
  shards.room[0] = 1;
  mail.Send(shards.post(), 0, 2, 0, 0, "b");  // shard 0 has room, but "a" waits first
  EXPECT_EQ(mail.waiting(), 2u);
  EXPECT_TRUE(shards.got[0].empty());
  EXPECT_EQ(shards.got[1], std::vector<std::string>({"1:x"}));
  mail.Flush(shards.post());  // room for one: "a" only
  EXPECT_EQ(shards.got[0], std::vector<std::string>({"1:a"}));
  EXPECT_EQ(mail.waiting(), 1u);
  shards.room[0] = 5;
  mail.Flush(shards.post());
  EXPECT_EQ(shards.got[0], std::vector<std::string>({"1:a", "2:b"}));
  EXPECT_EQ(mail.waiting(), 0u);
}

TEST(ShardMailTest, FullAtItsBoundAndDropCountsOneKind) {
  FakeShards shards;  // no room anywhere
  ShardMail mail(2, 3);
  mail.Send(shards.post(), 0, 7, 0, 0, "stanza");
  mail.Send(shards.post(), 1, 7, 0, 0, "stanza");
  EXPECT_FALSE(mail.full());
  mail.Send(shards.post(), 1, 9, 0, 0, "route");
  EXPECT_TRUE(mail.full());
  EXPECT_EQ(mail.Drop(7), 2u);
  EXPECT_EQ(mail.waiting(), 0u);
  EXPECT_FALSE(mail.full());
  shards.room[0] = shards.room[1] = 5;
  mail.Flush(shards.post());  // nothing left to go
  EXPECT_TRUE(shards.got[0].empty() && shards.got[1].empty());
}

// What waits is a copy (the caller's buffer may be gone), with its target and argument;
// a blocked shard does not hold up another's.
TEST(ShardMailTest, KeepsItsOwnCopyAndABlockedShardHoldsUpNoOther) {
  FakeShards shards;
  ShardMail mail(2, 100);
  {
    std::string payload = "stanza bytes";
    mail.Send(shards.post(), 0, 5, 11, 22, payload);
    mail.Send(shards.post(), 1, 6, 33, 44, payload);
    payload.assign(payload.size(), 'x');  // the caller reuses its buffer
  }
  shards.room[1] = 1;  // shard 0 stays full
  mail.Flush(shards.post());
  EXPECT_TRUE(shards.got[0].empty());
  EXPECT_EQ(shards.got[1], std::vector<std::string>({"6:stanza bytes/33/44"}));
  shards.room[0] = 1;
  mail.Flush(shards.post());
  EXPECT_EQ(shards.got[0], std::vector<std::string>({"5:stanza bytes/11/22"}));
}

}  // namespace
}  // namespace stanzad
