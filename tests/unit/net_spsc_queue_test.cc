#include "net/spsc_queue.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace stanzad::net {
namespace {

std::vector<std::string> DrainAll(SpscByteQueue& queue, size_t records_max = SIZE_MAX) {
  std::vector<std::string> records;
  queue.Drain(records_max, [&](std::string_view record) { records.emplace_back(record); });
  return records;
}

// The bytes of record `sequence`: its length varies, its content is checkable.
std::string RecordFor(uint64_t sequence, size_t length_max) {
  const size_t length = (sequence * 7919) % (length_max + 1);
  std::string record(length, '\0');
  for (size_t i = 0; i < length; ++i) record[i] = static_cast<char>((sequence + i * 31) & 0xFF);
  if (length >= sizeof(sequence)) std::memcpy(record.data(), &sequence, sizeof(sequence));
  return record;
}

// What the consumer thread of a two-thread test saw.
struct Consumed {
  uint64_t records = 0;
  uint64_t mismatches = 0;  // records not as RecordFor(their sequence) makes them
};

// Drains on this thread until the producer has published its total (UINT64_MAX until
// then) and every record of it is taken; checks each against RecordFor.
Consumed ConsumeUntilTotal(SpscByteQueue& queue, const std::atomic<uint64_t>& produced_total,
                           size_t length_max) {
  Consumed consumed;
  while (true) {
    const uint64_t total = produced_total.load(std::memory_order_acquire);
    const size_t drained = queue.Drain(1000, [&](std::string_view record) {
      if (record != RecordFor(consumed.records, length_max)) ++consumed.mismatches;
      ++consumed.records;
    });
    if (drained == 0) {
      if (total != UINT64_MAX && consumed.records == total) return consumed;
      std::this_thread::yield();
    }
  }
}

TEST(SpscByteQueueTest, RoundsCapacityToPowerOfTwo) {
  EXPECT_EQ(SpscByteQueue(1000).capacity(), 1024u);
  EXPECT_EQ(SpscByteQueue(4096).capacity(), 4096u);
  EXPECT_EQ(SpscByteQueue(1).capacity(), SpscByteQueue::kCapacityMinBytes);
  EXPECT_EQ(SpscByteQueue(4096).max_record_bytes(), 2048u - SpscByteQueue::kRecordHeaderBytes);
}

TEST(SpscByteQueueTest, EmptyQueueDrainsNothing) {
  SpscByteQueue queue(1024);
  EXPECT_TRUE(queue.EmptyForConsumer());
  EXPECT_TRUE(DrainAll(queue).empty());
}

TEST(SpscByteQueueTest, RecordsComeOutInOrderWithTheirBytes) {
  SpscByteQueue queue(1024);
  ASSERT_TRUE(queue.TryPush("alpha"));
  ASSERT_TRUE(queue.TryPush(""));
  ASSERT_TRUE(queue.TryPush("be", "ta"));
  ASSERT_TRUE(queue.TryPush(std::string_view("\0x\0", 3)));
  EXPECT_FALSE(queue.EmptyForConsumer());
  EXPECT_EQ(DrainAll(queue),
            (std::vector<std::string>{"alpha", "", "beta", std::string("\0x\0", 3)}));
  EXPECT_TRUE(queue.EmptyForConsumer());
}

TEST(SpscByteQueueTest, RefusesWhenFullAndAcceptsAgainAfterDrain) {
  SpscByteQueue queue(256);
  const std::string record(24, 'x');  // 32 bytes with its header
  int pushed = 0;
  while (queue.TryPush(record)) ++pushed;
  EXPECT_EQ(pushed, 8);
  EXPECT_FALSE(queue.TryPush(""));
  EXPECT_EQ(DrainAll(queue, 1).size(), 1u);
  EXPECT_TRUE(queue.TryPush(record));
  EXPECT_FALSE(queue.TryPush(record));
  EXPECT_EQ(DrainAll(queue).size(), 8u);
}

TEST(SpscByteQueueTest, RefusesRecordsLargerThanHalfTheRing) {
  SpscByteQueue queue(1024);
  EXPECT_FALSE(queue.TryPush(std::string(queue.max_record_bytes() + 1, 'a')));
  EXPECT_FALSE(queue.TryPush(std::string(400, 'a'), std::string(400, 'b')));
  EXPECT_TRUE(queue.EmptyForConsumer());
}

TEST(SpscByteQueueTest, LargestRecordAlwaysFitsInAnEmptyQueueWhereverItsHeadIs) {
  SpscByteQueue queue(1024);
  const std::string largest(queue.max_record_bytes(), 'L');
  for (size_t shift = 0; shift < 1024; shift += 8) {
    // Moves the head on by `shift` bytes, in records of at most 256.
    for (size_t left = shift; left > 0;) {
      const size_t step = std::min<size_t>(left, 256);
      ASSERT_TRUE(queue.TryPush(std::string(step - SpscByteQueue::kRecordHeaderBytes, 's')));
      DrainAll(queue);
      left -= step;
    }
    ASSERT_TRUE(queue.TryPush(largest)) << "shift " << shift;
    ASSERT_EQ(DrainAll(queue), std::vector<std::string>{largest});
  }
}

TEST(SpscByteQueueTest, WrapsAroundManyTimesWithVariableSizes) {
  SpscByteQueue queue(4096);
  std::mt19937 random(42);
  uint64_t next_push = 0;
  uint64_t next_pop = 0;
  for (int round = 0; round < 20000; ++round) {
    const int pushes = static_cast<int>(random() % 8);
    for (int i = 0; i < pushes; ++i) {
      if (!queue.TryPush(RecordFor(next_push, 700))) break;
      ++next_push;
    }
    queue.Drain(random() % 6, [&](std::string_view record) {
      ASSERT_EQ(record, RecordFor(next_pop, 700));
      ++next_pop;
    });
  }
  queue.Drain(SIZE_MAX, [&](std::string_view record) {
    ASSERT_EQ(record, RecordFor(next_pop, 700));
    ++next_pop;
  });
  EXPECT_EQ(next_pop, next_push);
  EXPECT_GT(next_push, 20000u);
}

TEST(SpscByteQueueTest, RecordsPushedDuringADrainWaitForTheNextDrain) {
  SpscByteQueue queue(1024);
  ASSERT_TRUE(queue.TryPush("first"));
  std::vector<std::string> seen;
  queue.Drain(SIZE_MAX, [&](std::string_view record) {
    seen.emplace_back(record);
    ASSERT_TRUE(queue.TryPush("again"));  // the same thread produces and consumes
  });
  EXPECT_EQ(seen, std::vector<std::string>{"first"});
  EXPECT_EQ(DrainAll(queue), std::vector<std::string>{"again"});
}

// One producer and one consumer thread, for a bounded time: every record
// arrives once, in order, intact.
TEST(SpscByteQueueTest, TwoThreadStressKeepsOrderAndContent) {
  SpscByteQueue queue(8192);
  constexpr size_t kLengthMax = 300;
  constexpr uint64_t kRecordsMax = 3'000'000;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  std::atomic<uint64_t> produced_total{UINT64_MAX};

  std::thread producer([&] {
    uint64_t sequence = 0;
    while (sequence < kRecordsMax && std::chrono::steady_clock::now() < deadline) {
      const std::string record = RecordFor(sequence, kLengthMax);
      for (int spins = 0; !queue.TryPush(record); ++spins) {
        if (spins > 64) std::this_thread::yield();
      }
      ++sequence;
    }
    produced_total.store(sequence, std::memory_order_release);
  });

  const Consumed consumed = ConsumeUntilTotal(queue, produced_total, kLengthMax);
  producer.join();
  EXPECT_EQ(consumed.mismatches, 0u);
  EXPECT_EQ(consumed.records, produced_total.load());
  EXPECT_GT(consumed.records, 1000u);
  EXPECT_TRUE(queue.EmptyForConsumer());
}

// A burst leaves the ring resident; once the producer has seen it quiet long enough and
// taken, it gives back what was written, and records keep coming out intact through the
// released pages.
TEST(SpscByteQueueTest, AQuietTakenRingGivesItsPagesBack) {
  constexpr uint64_t kQuietMs = 1000;
  SpscByteQueue queue(1 << 20);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  EXPECT_EQ(queue.ReleaseIdlePages(0, kQuietMs), 0u);  // never used: nothing to give back
  EXPECT_EQ(queue.ResidentBytes(), 0u);
  const std::string record(1000, 'r');
  for (int i = 0; i < 600; ++i) ASSERT_TRUE(queue.TryPush(record));
  EXPECT_GE(queue.ResidentBytes(), 580'000u);

  EXPECT_EQ(queue.ReleaseIdlePages(100, kQuietMs), 0u);   // pushed since the last look
  EXPECT_EQ(queue.ReleaseIdlePages(1099, kQuietMs), 0u);  // quiet, not for long enough
  EXPECT_EQ(queue.ReleaseIdlePages(1100, kQuietMs), 0u);  // the consumer has not taken them
  EXPECT_EQ(DrainAll(queue).size(), 600u);
  EXPECT_GE(queue.ReleaseIdlePages(1200, kQuietMs), 580'000u);
  EXPECT_LE(queue.ResidentBytes(), page);                 // the page the next record starts in
  EXPECT_EQ(queue.ReleaseIdlePages(9000, kQuietMs), 0u);  // once per quiet spell

  // Busy: a record every 10 ms, each taken at once, is never released.
  for (uint64_t now_ms = 10'000; now_ms < 15'000; now_ms += 10) {
    ASSERT_TRUE(queue.TryPush(record));
    ASSERT_EQ(DrainAll(queue).size(), 1u);
    ASSERT_EQ(queue.ReleaseIdlePages(now_ms, kQuietMs), 0u) << now_ms;
  }
  // Quiet again: what the busy spell wrote goes back, not more (it wrote ~500 KB).
  const size_t released = queue.ReleaseIdlePages(16'000, kQuietMs);
  EXPECT_GE(released, 490'000u);
  EXPECT_LE(released, 520'000u);

  // Round the ring twice more, through the released pages: every record as pushed.
  uint64_t now_ms = 20'000;
  for (uint64_t sequence = 0; sequence < 3000; ++sequence) {
    ASSERT_TRUE(queue.TryPush(RecordFor(sequence, 2000)));
    if (sequence % 100 == 99) {
      const std::vector<std::string> records = DrainAll(queue);
      ASSERT_EQ(records.size(), 100u);
      for (size_t i = 0; i < records.size(); ++i) {
        ASSERT_EQ(records[i], RecordFor(sequence - 99 + i, 2000)) << sequence;
      }
      EXPECT_EQ(queue.ReleaseIdlePages(now_ms, kQuietMs), 0u);  // a first look
      EXPECT_GT(queue.ReleaseIdlePages(now_ms += kQuietMs, kQuietMs), 0u);
    }
  }
}

// A ring smaller than two pages has no page to spare: nothing is released.
TEST(SpscByteQueueTest, ARingOfOnePageIsNeverReleased) {
  SpscByteQueue queue(4096);
  ASSERT_TRUE(queue.TryPush("record"));
  ASSERT_EQ(DrainAll(queue).size(), 1u);
  EXPECT_EQ(queue.ReleaseIdlePages(0, 0), 0u);
  EXPECT_EQ(queue.ReleaseIdlePages(1, 0), 0u);
  ASSERT_TRUE(queue.TryPush("again"));
  EXPECT_EQ(DrainAll(queue), std::vector<std::string>{"again"});
}

// The producer gives pages back between bursts while the consumer drains on its own
// thread, for a bounded time: every record arrives once, in order, intact.
TEST(SpscByteQueueTest, ReleasingBetweenBurstsWhileTheConsumerRunsLosesNothing) {
  SpscByteQueue queue(64 * 1024);
  constexpr size_t kLengthMax = 2000;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1000);
  std::atomic<uint64_t> produced_total{UINT64_MAX};
  std::atomic<uint64_t> released_bytes{0};

  std::thread producer([&] {
    uint64_t sequence = 0;
    uint64_t now_ms = 0;  // the producer's own clock: a millisecond a look
    while (std::chrono::steady_clock::now() < deadline) {
      for (int burst = 0; burst < 50; ++burst, ++sequence) {
        const std::string record = RecordFor(sequence, kLengthMax);
        while (!queue.TryPush(record)) std::this_thread::yield();
      }
      // Looks until the consumer has taken the burst and the pages go back.
      size_t released = 0;
      while (released == 0 && std::chrono::steady_clock::now() < deadline) {
        released = queue.ReleaseIdlePages(++now_ms, 1);
        std::this_thread::yield();
      }
      released_bytes.fetch_add(released);
    }
    produced_total.store(sequence, std::memory_order_release);
  });

  const Consumed consumed = ConsumeUntilTotal(queue, produced_total, kLengthMax);
  producer.join();
  EXPECT_EQ(consumed.mismatches, 0u);
  EXPECT_EQ(consumed.records, produced_total.load());
  EXPECT_GT(consumed.records, 1000u);
  EXPECT_GT(released_bytes.load(), 0u);
}

}  // namespace
}  // namespace stanzad::net
