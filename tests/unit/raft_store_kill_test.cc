// RaftStore under real SIGKILLs: a child process appends, syncs and reports each index it
// has synced through a pipe; the parent kills it at a random moment, reopens the store and
// checks that every reported index is there, intact. The store lives on the real file
// system, so this covers what MemFs cannot: the real write/fdatasync/rename calls.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include "cluster/storage/raft_store.h"
#include "core/base/concat.h"

namespace stanzad::storage {
namespace {

constexpr int kIterations = 30;
constexpr int kKillDelayMicrosMax = 30'000;
constexpr int kFirstAcknowledgementTimeoutMs = 5'000;
constexpr auto kTimeBudget = std::chrono::seconds(10);  // a bound, not the expected time
constexpr raft::Index kSnapshotEveryEntries = 64;
constexpr raft::Index kCompactEveryEntries = 256;

std::string ExpectedData(raft::Index index) {
  // Sizes from a few bytes to a few pages, so that kills land inside writes of every size.
  std::string data = Concat("entry ", std::to_string(index), " ");
  data.append((index * 1237) % 9000, static_cast<char>('a' + index % 26));
  return data;
}

std::string SnapshotData(raft::Index index) {
  return Concat("state through ", std::to_string(index));
}

// The child: appends forever (until killed), reporting each synced index. Uses only
// async-signal-safe exits; never returns into gtest.
[[noreturn]] void RunChild(const std::string& dir, int report_fd) {
  absl::StatusOr<std::unique_ptr<RaftStore>> opened = RaftStore::Open(dir);
  if (!opened.ok()) _exit(3);
  RaftStore& store = **opened;
  for (raft::Index index = store.last_index() + 1; index < 1'000'000; ++index) {
    if (!store.Append({raft::Entry{1, index, raft::EntryType::kNormal, ExpectedData(index)}})
             .ok() ||
        !store.SetHardState({1, 0, index}).ok() || !store.Sync().ok()) {
      _exit(4);
    }
    if (write(report_fd, &index, sizeof(index)) != sizeof(index)) _exit(5);
    if (index % kSnapshotEveryEntries == 0) {
      raft::Snapshot snapshot;
      snapshot.metadata = {index, 1, {{42, "127.0.0.1:7000"}}};
      snapshot.data = SnapshotData(index);
      if (!store.SaveSnapshot(snapshot).ok()) _exit(6);
    }
    if (index % kCompactEveryEntries == 0 && !store.Compact().ok()) _exit(7);
  }
  _exit(0);
}

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        Concat(base != nullptr && base[0] != '\0' ? base : "/tmp", "/raft_store_kill_test.XXXXXX");
    EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(RaftStoreKillTest, SigkillNeverLosesAnAcknowledgedEntry) {
  TempDir tmp;
  std::string dir = Concat(tmp.path(), "/state");
  uint64_t seed = std::random_device()();
  SCOPED_TRACE(Concat("seed ", std::to_string(seed)));
  std::mt19937_64 random(seed);
  raft::Index acknowledged = 0;
  raft::NodeId node_id = raft::kNoNode;
  int kills_after_progress = 0;
  int iterations_run = 0;
  auto deadline = std::chrono::steady_clock::now() + kTimeBudget;

  for (int iteration = 0; iteration < kIterations; ++iteration) {
    if (std::chrono::steady_clock::now() > deadline) break;
    ++iterations_run;
    SCOPED_TRACE(Concat("iteration ", std::to_string(iteration)));
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      RunChild(dir, fds[1]);
    }
    close(fds[1]);

    // On odd iterations wait for the first acknowledgement, so that half of the kills land
    // after progress however slow the disk; the others may land anywhere, even in Open.
    raft::Index reported = 0;
    raft::Index index = 0;
    if (iteration % 2 == 1) {
      pollfd readable = {fds[0], POLLIN, 0};
      ASSERT_EQ(poll(&readable, 1, kFirstAcknowledgementTimeoutMs), 1);
      ASSERT_EQ(read(fds[0], &index, sizeof(index)), static_cast<ssize_t>(sizeof(index)));
      reported = index;
    }
    // Let it run for a random while, then kill it wherever it is.
    std::uniform_int_distribution<int> delay(0, kKillDelayMicrosMax);
    usleep(static_cast<useconds_t>(delay(random)));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int wait_status = 0;
    ASSERT_EQ(waitpid(pid, &wait_status, 0), pid);
    // Killed, not exited on an error of its own.
    ASSERT_TRUE(WIFSIGNALED(wait_status)) << "child exited with " << WEXITSTATUS(wait_status);

    // Every index the child reported before dying (the pipe keeps them after its death).
    ssize_t n = 0;
    while ((n = read(fds[0], &index, sizeof(index))) == sizeof(index)) {
      EXPECT_EQ(index, reported == 0 ? index : reported + 1);
      reported = index;
    }
    close(fds[0]);
    if (reported > acknowledged) {
      acknowledged = reported;
      ++kills_after_progress;
    }

    absl::StatusOr<std::unique_ptr<RaftStore>> store = RaftStore::Open(dir);
    ASSERT_TRUE(store.ok()) << store.status();
    if (node_id == raft::kNoNode) node_id = (*store)->node_id();
    EXPECT_EQ((*store)->node_id(), node_id);
    ASSERT_GE((*store)->last_index(), acknowledged);
    EXPECT_GE((*store)->hard_state().commit, acknowledged);
    const raft::Snapshot& snapshot = (*store)->snapshot();
    if (snapshot.metadata.index > 0) {
      EXPECT_EQ(snapshot.metadata.index % kSnapshotEveryEntries, 0u);
      EXPECT_EQ(snapshot.data, SnapshotData(snapshot.metadata.index));
    }
    raft::Index expected_index = (*store)->first_index();
    for (const raft::Entry& entry : (*store)->entries()) {
      ASSERT_EQ(entry.index, expected_index);
      ASSERT_EQ(entry.data, ExpectedData(entry.index)) << "entry " << entry.index;
      ++expected_index;
    }
  }
  // The loop must have exercised something: kills that landed after some progress.
  EXPECT_GT(acknowledged, 0u);
  EXPECT_GE(iterations_run, 10);
  EXPECT_GE(kills_after_progress, iterations_run / 2);
}

}  // namespace
}  // namespace stanzad::storage
