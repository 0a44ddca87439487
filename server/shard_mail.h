// Records for the shards that their queues did not take yet.
//
// The control thread is the engine's single external producer and never waits for a
// shard (Raft keeps its ticks): a record a full shard queue does not take now waits
// here, in order per shard, and goes in a later turn (Flush). A record for a shard that
// has others waiting goes behind them, so each shard sees the control thread's records
// in the order they were sent. Send never refuses: once `full_records` wait, full() says
// so and the relay takes no more stanzas to deliver (their origins keep them and send
// them again); routes, configuration and bounces still wait their turn (they are few and
// none can be sent again later).
//
// Thread: the control thread only.
#ifndef STANZAD_SERVER_SHARD_MAIL_H_
#define STANZAD_SERVER_SHARD_MAIL_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace stanzad {

class ShardMail {
 public:
  // Hands one record to a shard's queue (net::Engine::Post); false when it is full.
  using Post = std::function<bool(int shard, uint32_t kind, uint64_t target, uint64_t argument,
                                  std::string_view payload)>;

  ShardMail(int shards, size_t full_records);

  // To `shard` now if nothing waits for it and `post` takes it; otherwise it waits.
  // REQUIRES: 0 <= shard < shards.
  void Send(const Post& post, int shard, uint32_t kind, uint64_t target, uint64_t argument,
            std::string_view payload);
  // What waits, for as long as each shard's queue takes it.
  void Flush(const Post& post);
  // The shards stopped: everything waiting goes. Returns how many were of `kind`.
  size_t Drop(uint32_t kind);

  size_t waiting() const { return waiting_; }
  bool full() const { return waiting_ >= full_records_; }

 private:
  struct Letter {
    uint32_t kind = 0;
    uint64_t target = 0;
    uint64_t argument = 0;
    std::string payload;
  };

  const size_t full_records_;
  std::vector<std::deque<Letter>> mail_;  // per shard
  size_t waiting_ = 0;
};

}  // namespace stanzad

#endif  // STANZAD_SERVER_SHARD_MAIL_H_
