#include "net/output_queue.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace stanzad::net {
namespace {

std::string Gathered(const OutputQueue& queue, int iovecs_max = 64, size_t bytes_max = SIZE_MAX) {
  std::vector<iovec> iovecs(iovecs_max);
  const int count = queue.Gather(iovecs.data(), iovecs_max, bytes_max);
  std::string bytes;
  for (int i = 0; i < count; ++i) {
    bytes.append(static_cast<const char*>(iovecs[i].iov_base), iovecs[i].iov_len);
  }
  return bytes;
}

std::string Pattern(size_t length, int seed) {
  std::string bytes(length, '\0');
  for (size_t i = 0; i < length; ++i) bytes[i] = static_cast<char>((i * 13 + seed) & 0xFF);
  return bytes;
}

TEST(OutputQueueTest, EmptyQueueHoldsNoChunk) {
  ChunkPool pool(4);
  OutputQueue queue;
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(Gathered(queue), "");
  queue.Append(pool, "");
  EXPECT_EQ(pool.chunks_in_use(), 0u);
  queue.Clear(pool);
}

TEST(OutputQueueTest, AppendsAcrossChunksAndGathersInOrder) {
  ChunkPool pool(4);
  OutputQueue queue;
  const std::string big = Pattern(OutputChunk::kDataBytes * 2 + 100, 1);
  queue.Append(pool, "head:");
  queue.Append(pool, big);
  EXPECT_EQ(queue.bytes(), big.size() + 5);
  EXPECT_EQ(pool.chunks_in_use(), 3u);
  EXPECT_EQ(Gathered(queue), "head:" + big);
  EXPECT_EQ(Gathered(queue, 1), ("head:" + big).substr(0, OutputChunk::kDataBytes));
  EXPECT_EQ(Gathered(queue, 64, 10), "head:" + big.substr(0, 5));
  queue.Clear(pool);
  EXPECT_EQ(pool.chunks_in_use(), 0u);
  EXPECT_EQ(pool.free_chunks(), 3u);
}

TEST(OutputQueueTest, PartialConsumeKeepsTheRestInOrder) {
  ChunkPool pool(4);
  OutputQueue queue;
  const std::string bytes = Pattern(OutputChunk::kDataBytes * 3, 2);
  queue.Append(pool, bytes);
  size_t sent = 0;
  for (size_t step : {1ul, 100ul, OutputChunk::kDataBytes - 101, OutputChunk::kDataBytes + 7,
                      OutputChunk::kDataBytes - 7}) {
    queue.Consume(pool, step);
    sent += step;
    ASSERT_EQ(Gathered(queue), bytes.substr(sent));
    ASSERT_EQ(queue.bytes(), bytes.size() - sent);
  }
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(pool.chunks_in_use(), 0u);
  // Appending after a full drain starts a fresh chunk.
  queue.Append(pool, "again");
  EXPECT_EQ(Gathered(queue), "again");
  queue.Clear(pool);
}

TEST(OutputQueueTest, AppendWhileFrontIsPartlySent) {
  ChunkPool pool(4);
  OutputQueue queue;
  queue.Append(pool, "0123456789");
  queue.Consume(pool, 4);
  queue.Append(pool, "abc");
  EXPECT_EQ(Gathered(queue), "456789abc");
  queue.Clear(pool);
}

TEST(OutputQueueTest, PoolKeepsAtMostItsLimit) {
  ChunkPool pool(1);
  OutputQueue queue;
  queue.Append(pool, Pattern(OutputChunk::kDataBytes * 3, 3));
  EXPECT_EQ(pool.chunks_in_use(), 3u);
  queue.Clear(pool);
  EXPECT_EQ(pool.free_chunks(), 1u);
  queue.Append(pool, "x");
  EXPECT_EQ(pool.free_chunks(), 0u);
  queue.Clear(pool);
}

}  // namespace
}  // namespace stanzad::net
