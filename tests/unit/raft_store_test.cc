// RaftStore and its pieces: CRC-32C, record framing, the store on the real file system
// (round trips, torn tails at every offset, damage in the middle) and on MemFs with a
// simulated crash at every write point.
#include "cluster/storage/raft_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cluster/storage/crc32c.h"
#include "cluster/storage/mem_fs.h"
#include "cluster/storage/record_file.h"
#include "core/base/concat.h"

namespace stanzad::storage {
namespace {

using raft::Entry;
using raft::EntryType;
using raft::HardState;
using raft::Snapshot;
using ::testing::HasSubstr;

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it at the end.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        Concat(base != nullptr && base[0] != '\0' ? base : "/tmp", "/raft_store_test.XXXXXX");
    char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr);
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string Sub(std::string_view name) const { return Concat(path_, "/", name); }

 private:
  std::string path_;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteAll(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Entry data that depends on term and index and varies in length, so that a lost or
// misplaced entry cannot compare equal to the expected one.
Entry MakeEntry(raft::Term term, raft::Index index, EntryType type = EntryType::kNormal) {
  std::string data = Concat("term ", std::to_string(term), " index ", std::to_string(index), ":");
  data.append((index * 7 + term) % 40, static_cast<char>('a' + index % 26));
  return Entry{term, index, type, std::move(data)};
}

std::vector<Entry> MakeEntries(raft::Term term, raft::Index first, raft::Index last) {
  std::vector<Entry> entries;
  for (raft::Index i = first; i <= last; ++i) entries.push_back(MakeEntry(term, i));
  return entries;
}

Snapshot MakeSnapshot(raft::Index index, raft::Term term) {
  Snapshot snapshot;
  snapshot.metadata.index = index;
  snapshot.metadata.term = term;
  snapshot.metadata.members = {{0x1111, "10.0.0.1:7000"}, {0x2222, "10.0.0.2:7000"}};
  snapshot.data = Concat("configuration through ", std::to_string(index));
  return snapshot;
}

std::unique_ptr<RaftStore> OpenOrDie(const std::string& dir, Fs* fs = nullptr) {
  absl::StatusOr<std::unique_ptr<RaftStore>> store = RaftStore::Open(dir, {.fs = fs});
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

// Everything a store reports, to compare stores and expectations in one assertion.
struct State {
  HardState hard_state;
  Snapshot snapshot;
  std::vector<Entry> entries;

  friend bool operator==(const State&, const State&) = default;
};

State StateOf(const RaftStore& store) {
  return State{store.hard_state(), store.snapshot(), store.entries()};
}

std::string Describe(const State& state) {
  std::string text = Concat("hard state (", std::to_string(state.hard_state.term), ",",
                            std::to_string(state.hard_state.commit), ") snapshot ",
                            std::to_string(state.snapshot.metadata.index), " entries [");
  for (const Entry& entry : state.entries) {
    text += Concat(std::to_string(entry.index), "@", std::to_string(entry.term), " ");
  }
  text += "]";
  return text;
}

// ---------------------------------------------------------------------------------------
// CRC-32C

TEST(Crc32cTest, MatchesKnownVectors) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);    // RFC 3720 B.4
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);  // RFC 3720 B.4
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);  // RFC 3720 B.4
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32cTest, HardwareAndTableAgreeAndExtendInPieces) {
  std::mt19937_64 random(7);
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(random()));
  for (size_t length = 0; length < 100; ++length) {
    for (size_t start = 0; start < 9; ++start) {
      std::string_view piece = std::string_view(data).substr(start, length);
      EXPECT_EQ(Crc32cExtend(0, piece), Crc32cExtendPortable(0, piece));
    }
  }
  uint32_t whole = Crc32c(data);
  for (size_t cut = 0; cut <= data.size(); cut += 37) {
    std::string_view view = data;
    EXPECT_EQ(Crc32cExtend(Crc32c(view.substr(0, cut)), view.substr(cut)), whole);
  }
}

TEST(Crc32cTest, MaskRoundTrips) {
  for (uint32_t crc : {0u, 1u, 0xE3069283u, 0xffffffffu}) {
    EXPECT_NE(MaskCrc(crc), crc);
    EXPECT_EQ(UnmaskCrc(MaskCrc(crc)), crc);
  }
}

// ---------------------------------------------------------------------------------------
// Record framing

std::string ThreeRecords(std::vector<size_t>* ends) {
  std::string bytes;
  for (std::string_view payload : {"first", "", "the third record"}) {
    AppendRecord(7, payload, &bytes);
    ends->push_back(bytes.size());
  }
  return bytes;
}

TEST(RecordFileTest, ScansWhatWasWritten) {
  std::vector<size_t> ends;
  std::string bytes = ThreeRecords(&ends);
  ScanResult scan = ScanRecords(bytes, 1024);
  EXPECT_EQ(scan.end, ScanResult::End::kClean);
  EXPECT_EQ(scan.valid_bytes, bytes.size());
  ASSERT_EQ(scan.records.size(), 3u);
  EXPECT_EQ(scan.records[0].payload, "first");
  EXPECT_EQ(scan.records[1].payload, "");
  EXPECT_EQ(scan.records[2].payload, "the third record");
  EXPECT_EQ(scan.records[2].type, 7);
  EXPECT_EQ(scan.records[2].offset, ends[1]);
}

TEST(RecordFileTest, EveryCutIsATornTailKeepingTheWholeRecordsBefore) {
  std::vector<size_t> ends;
  std::string bytes = ThreeRecords(&ends);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    ScanResult scan = ScanRecords(std::string_view(bytes).substr(0, cut), 1024);
    size_t whole = 0;
    while (whole < ends.size() && ends[whole] <= cut) ++whole;
    EXPECT_EQ(scan.records.size(), whole) << "cut at " << cut;
    EXPECT_EQ(scan.valid_bytes, whole == 0 ? 0 : ends[whole - 1]) << "cut at " << cut;
    EXPECT_EQ(scan.end, scan.valid_bytes == cut ? ScanResult::End::kClean : ScanResult::End::kTorn)
        << "cut at " << cut;
  }
}

TEST(RecordFileTest, ZerosOrNoiseAfterTheLastRecordAreATornTail) {
  std::vector<size_t> ends;
  std::string bytes = ThreeRecords(&ends);
  for (std::string tail : {std::string(4096, '\0'), std::string(100, '\x5a')}) {
    ScanResult scan = ScanRecords(bytes + tail, 1024);
    EXPECT_EQ(scan.end, ScanResult::End::kTorn);
    EXPECT_EQ(scan.valid_bytes, bytes.size());
    EXPECT_EQ(scan.records.size(), 3u);
  }
}

TEST(RecordFileTest, DamageBeforeAValidRecordIsCorruptionAtEveryByte) {
  std::vector<size_t> ends;
  std::string bytes = ThreeRecords(&ends);
  // Every byte of the first two records, flipped, is damage followed by a valid record.
  for (size_t i = 0; i < ends[1]; ++i) {
    std::string damaged = bytes;
    damaged[i] ^= 0x10;
    ScanResult scan = ScanRecords(damaged, 1024);
    EXPECT_EQ(scan.end, ScanResult::End::kCorrupt) << "byte " << i;
    EXPECT_EQ(scan.valid_bytes, i < ends[0] ? 0 : ends[0]) << "byte " << i;
    EXPECT_EQ(scan.next_valid_offset, i < ends[0] ? ends[0] : ends[1]) << "byte " << i;
  }
}

TEST(RecordFileTest, OversizedPayloadIsDamage) {
  std::string bytes;
  AppendRecord(1, std::string(100, 'x'), &bytes);
  EXPECT_EQ(ScanRecords(bytes, 99).end, ScanResult::End::kTorn);
  EXPECT_EQ(ScanRecords(bytes, 100).end, ScanResult::End::kClean);
}

// ---------------------------------------------------------------------------------------
// RaftStore on the real file system

TEST(RaftStoreTest, FreshDirectoryGetsADurableRandomNodeId) {
  TempDir tmp;
  raft::NodeId first = 0;
  {
    std::unique_ptr<RaftStore> store = OpenOrDie(tmp.Sub("a"));
    ASSERT_NE(store, nullptr);
    first = store->node_id();
    EXPECT_NE(first, raft::kNoNode);
    EXPECT_EQ(store->last_index(), 0u);
    EXPECT_EQ(store->first_index(), 1u);
    EXPECT_EQ(store->hard_state(), HardState{});
    EXPECT_EQ(store->snapshot().metadata.index, 0u);
  }
  std::unique_ptr<RaftStore> again = OpenOrDie(tmp.Sub("a"));
  EXPECT_EQ(again->node_id(), first);
  std::unique_ptr<RaftStore> other = OpenOrDie(tmp.Sub("b"));
  EXPECT_NE(other->node_id(), first);
}

TEST(RaftStoreTest, GeneratedNodeIdsAreNeverZeroAndDiffer) {
  std::set<raft::NodeId> ids;
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<raft::NodeId> id = GenerateNodeId();
    ASSERT_TRUE(id.ok());
    EXPECT_NE(*id, raft::kNoNode);
    ids.insert(*id);
  }
  EXPECT_EQ(ids.size(), 100u);
}

TEST(RaftStoreTest, RoundTripsEntriesAndHardStateThroughReopen) {
  TempDir tmp;
  State expected;
  {
    std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
    ASSERT_TRUE(store->Append(MakeEntries(1, 1, 3)).ok());
    ASSERT_TRUE(store->Append({MakeEntry(1, 4, EntryType::kAddMember)}).ok());
    ASSERT_TRUE(store->Append({MakeEntry(2, 5, EntryType::kNoop)}).ok());
    ASSERT_TRUE(store->SetHardState({2, 0xabcdef, 4}).ok());
    ASSERT_TRUE(store->Sync().ok());
    expected = StateOf(*store);
    EXPECT_EQ(store->last_index(), 5u);
    EXPECT_EQ(expected.entries.size(), 5u);
  }
  std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
  EXPECT_EQ(StateOf(*store), expected);
  EXPECT_EQ(store->entries()[3].type, EntryType::kAddMember);
  EXPECT_EQ(store->discarded_tail_bytes(), 0u);
}

TEST(RaftStoreTest, WhatWasNotSyncedIsNotPromised) {
  TempDir tmp;
  {
    std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
    ASSERT_TRUE(store->Append(MakeEntries(1, 1, 2)).ok());
    ASSERT_TRUE(store->Sync().ok());
    ASSERT_TRUE(store->Append(MakeEntries(1, 3, 4)).ok());
    EXPECT_EQ(store->last_index(), 4u);  // reported at once
  }
  EXPECT_EQ(OpenOrDie(tmp.path())->last_index(), 2u);
}

TEST(RaftStoreTest, AppendReplacesAConflictingSuffix) {
  TempDir tmp;
  {
    std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
    ASSERT_TRUE(store->Append(MakeEntries(1, 1, 5)).ok());
    ASSERT_TRUE(store->Sync().ok());
    ASSERT_TRUE(store->Append(MakeEntries(2, 3, 4)).ok());
    ASSERT_TRUE(store->Sync().ok());
    EXPECT_EQ(store->last_index(), 4u);
  }
  std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
  std::vector<Entry> expected = MakeEntries(1, 1, 2);
  for (Entry& entry : MakeEntries(2, 3, 4)) expected.push_back(entry);
  EXPECT_EQ(store->entries(), expected);
}

TEST(RaftStoreTest, RefusesAppendsThatDoNotContinueTheLog) {
  TempDir tmp;
  std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
  ASSERT_TRUE(store->Append(MakeEntries(1, 1, 3)).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(store->Append({MakeEntry(1, 5)})));  // a gap
  EXPECT_TRUE(absl::IsInvalidArgument(store->Append({MakeEntry(1, 0)})));
  EXPECT_TRUE(absl::IsInvalidArgument(store->Append({MakeEntry(1, 4), MakeEntry(1, 6)})));
  Entry huge = MakeEntry(1, 4);
  huge.data.assign(kEntryDataBytesMax + 1, 'x');
  EXPECT_TRUE(absl::IsInvalidArgument(store->Append({huge})));
  EXPECT_TRUE(store->Append({}).ok());
  EXPECT_EQ(store->last_index(), 3u);
  ASSERT_TRUE(store->SaveSnapshot(MakeSnapshot(2, 1)).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(store->Append({MakeEntry(2, 2)})));  // under the snapshot
  EXPECT_TRUE(store->Append({MakeEntry(2, 3)}).ok());
}

TEST(RaftStoreTest, SecondOpenOfTheSameDirectoryIsRefused) {
  TempDir tmp;
  std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
  absl::StatusOr<std::unique_ptr<RaftStore>> second = RaftStore::Open(tmp.path());
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  store.reset();
  EXPECT_TRUE(RaftStore::Open(tmp.path()).ok());
}

TEST(RaftStoreTest, SaveSnapshotKeepsTheEntriesAfterItAndCompactDropsTheRest) {
  TempDir tmp;
  State expected;
  uint64_t uncompacted_bytes = 0;
  {
    std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
    ASSERT_TRUE(store->Append(MakeEntries(1, 1, 50)).ok());
    ASSERT_TRUE(store->SetHardState({1, 7, 40}).ok());
    ASSERT_TRUE(store->Sync().ok());
    ASSERT_TRUE(store->SaveSnapshot(MakeSnapshot(40, 1)).ok());
    EXPECT_EQ(store->first_index(), 41u);
    EXPECT_EQ(store->last_index(), 50u);
    EXPECT_EQ(store->entries().front(), MakeEntry(1, 41));
    expected = StateOf(*store);
    uncompacted_bytes = store->log_file_bytes();
    EXPECT_GT(uncompacted_bytes, store->log_live_bytes());
  }
  {
    // Durable before any Compact.
    std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
    EXPECT_EQ(StateOf(*store), expected);
    ASSERT_TRUE(store->Compact().ok());
    EXPECT_LT(store->log_file_bytes(), uncompacted_bytes / 3);
    EXPECT_EQ(store->log_file_bytes(), store->log_live_bytes());
    EXPECT_EQ(ReadAll(tmp.Sub("raft_log")).size(), store->log_file_bytes());
    EXPECT_EQ(StateOf(*store), expected);
    // The log goes on after a compaction.
    ASSERT_TRUE(store->Append({MakeEntry(2, 51)}).ok());
    ASSERT_TRUE(store->Sync().ok());
    expected = StateOf(*store);
  }
  std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
  EXPECT_EQ(StateOf(*store), expected);
  EXPECT_EQ(store->snapshot(), MakeSnapshot(40, 1));
  EXPECT_FALSE(std::filesystem::exists(tmp.Sub("raft_log.tmp")));
  EXPECT_FALSE(std::filesystem::exists(tmp.Sub("raft_snapshot.tmp")));
}

// A large snapshot's file is written on another thread while the store goes on (entries are
// appended meanwhile), then made the snapshot on the owning thread.
TEST(RaftStoreTest, PreparedOnAnotherThreadThenCommitted) {
  TempDir tmp;
  State expected;
  {
    std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
    ASSERT_TRUE(store->Append(MakeEntries(1, 1, 50)).ok());
    ASSERT_TRUE(store->SetHardState({1, 7, 40}).ok());
    ASSERT_TRUE(store->Sync().ok());
    auto snapshot = std::make_shared<const Snapshot>(MakeSnapshot(40, 1));
    absl::Status prepared;
    std::thread writer([&] { prepared = store->PrepareSnapshot(*snapshot); });
    ASSERT_TRUE(store->Append(MakeEntries(1, 51, 60)).ok());
    ASSERT_TRUE(store->Sync().ok());
    writer.join();
    ASSERT_TRUE(prepared.ok()) << prepared;
    EXPECT_EQ(store->snapshot().metadata.index, 0u);  // not yet the snapshot
    ASSERT_TRUE(store->CommitSnapshot(snapshot).ok());
    EXPECT_EQ(&store->snapshot(), snapshot.get());  // kept, not copied
    EXPECT_EQ(store->first_index(), 41u);
    EXPECT_EQ(store->last_index(), 60u);
    expected = StateOf(*store);
  }
  std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
  EXPECT_EQ(StateOf(*store), expected);
  EXPECT_FALSE(std::filesystem::exists(tmp.Sub("raft_snapshot.next")));
}

// A snapshot from the leader overtook the one being written: the commit is refused without
// harm (the store goes on), and its file is gone.
TEST(RaftStoreTest, APreparedSnapshotOvertakenByAnInstalledOneIsDropped) {
  TempDir tmp;
  std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
  ASSERT_TRUE(store->Append(MakeEntries(1, 1, 50)).ok());
  auto mine = std::make_shared<const Snapshot>(MakeSnapshot(40, 1));
  ASSERT_TRUE(store->PrepareSnapshot(*mine).ok());
  ASSERT_TRUE(store->InstallSnapshot(MakeSnapshot(45, 2)).ok());
  const absl::Status committed = store->CommitSnapshot(mine);
  EXPECT_TRUE(absl::IsFailedPrecondition(committed)) << committed;
  EXPECT_FALSE(std::filesystem::exists(tmp.Sub("raft_snapshot.next")));
  EXPECT_EQ(store->snapshot(), MakeSnapshot(45, 2));
  ASSERT_TRUE(store->Append({MakeEntry(2, 46)}).ok());  // not sticky
  ASSERT_TRUE(store->Sync().ok());
}

// A crash between the two steps: the old snapshot and the whole log, and no stray file.
TEST(RaftStoreTest, ACrashBetweenPrepareAndCommitKeepsTheOldState) {
  TempDir tmp;
  State expected;
  {
    std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
    ASSERT_TRUE(store->Append(MakeEntries(1, 1, 50)).ok());
    ASSERT_TRUE(store->SaveSnapshot(MakeSnapshot(20, 1)).ok());
    ASSERT_TRUE(store->Sync().ok());
    expected = StateOf(*store);
    ASSERT_TRUE(store->PrepareSnapshot(MakeSnapshot(40, 1)).ok());
    EXPECT_TRUE(std::filesystem::exists(tmp.Sub("raft_snapshot.next")));
  }
  std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
  EXPECT_EQ(StateOf(*store), expected);
  EXPECT_FALSE(std::filesystem::exists(tmp.Sub("raft_snapshot.next")));
}

TEST(RaftStoreTest, SaveSnapshotWithAnotherTermOrPastTheLogDropsAllEntries) {
  TempDir tmp;
  {
    std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
    ASSERT_TRUE(store->Append(MakeEntries(1, 1, 10)).ok());
    ASSERT_TRUE(store->SaveSnapshot(MakeSnapshot(5, 2)).ok());  // entry 5 has term 1
    EXPECT_TRUE(store->entries().empty());
    EXPECT_EQ(store->last_index(), 5u);
    ASSERT_TRUE(store->Append(MakeEntries(2, 6, 7)).ok());
    ASSERT_TRUE(store->SaveSnapshot(MakeSnapshot(20, 3)).ok());  // past the log
    EXPECT_TRUE(store->entries().empty());
    EXPECT_EQ(store->last_index(), 20u);
    ASSERT_TRUE(store->Append({MakeEntry(3, 21)}).ok());
    ASSERT_TRUE(store->Sync().ok());
  }
  std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
  EXPECT_EQ(store->snapshot(), MakeSnapshot(20, 3));
  EXPECT_EQ(store->entries(), std::vector<Entry>{MakeEntry(3, 21)});
}

TEST(RaftStoreTest, InstallSnapshotReplacesTheWholeLog) {
  TempDir tmp;
  {
    std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
    ASSERT_TRUE(store->Append(MakeEntries(1, 1, 10)).ok());
    ASSERT_TRUE(store->Sync().ok());
    // Entry 5 has the snapshot's term, and still every entry goes (the Ready contract).
    ASSERT_TRUE(store->InstallSnapshot(MakeSnapshot(5, 1)).ok());
    EXPECT_TRUE(store->entries().empty());
    EXPECT_EQ(store->last_index(), 5u);
    EXPECT_EQ(store->first_index(), 6u);
  }
  {
    std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
    EXPECT_TRUE(store->entries().empty());
    EXPECT_EQ(store->snapshot(), MakeSnapshot(5, 1));
    ASSERT_TRUE(store->Append(MakeEntries(4, 6, 8)).ok());
    ASSERT_TRUE(store->SetHardState({4, 0, 8}).ok());
    ASSERT_TRUE(store->Sync().ok());
  }
  std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
  EXPECT_EQ(store->entries(), MakeEntries(4, 6, 8));
  EXPECT_EQ(store->hard_state(), (HardState{4, 0, 8}));
}

TEST(RaftStoreTest, RefusesSnapshotsThatDoNotMoveForward) {
  TempDir tmp;
  std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
  ASSERT_TRUE(store->Append(MakeEntries(1, 1, 10)).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(store->SaveSnapshot(MakeSnapshot(0, 1))));
  ASSERT_TRUE(store->SaveSnapshot(MakeSnapshot(6, 1)).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(store->SaveSnapshot(MakeSnapshot(6, 1))));
  EXPECT_TRUE(absl::IsInvalidArgument(store->InstallSnapshot(MakeSnapshot(3, 1))));
  EXPECT_EQ(store->snapshot(), MakeSnapshot(6, 1));
}

// Builds a synced log in `dir` and returns the file size before the last record was synced
// and the state then.
struct TwoBatches {
  size_t first_batch_bytes = 0;
  State first_batch_state;
  State both_batches_state;
};

TwoBatches WriteTwoBatches(const std::string& dir) {
  TwoBatches result;
  std::unique_ptr<RaftStore> store = OpenOrDie(dir);
  EXPECT_TRUE(store->Append(MakeEntries(1, 1, 6)).ok());
  EXPECT_TRUE(store->SetHardState({1, 9, 3}).ok());
  EXPECT_TRUE(store->Sync().ok());
  result.first_batch_bytes = store->log_file_bytes();
  result.first_batch_state = StateOf(*store);
  EXPECT_TRUE(store->Append({MakeEntry(1, 7)}).ok());
  EXPECT_TRUE(store->Sync().ok());
  result.both_batches_state = StateOf(*store);
  return result;
}

TEST(RaftStoreTest, TornTailAtEveryByteOfTheLastRecordIsDiscarded) {
  TempDir tmp;
  TwoBatches batches = WriteTwoBatches(tmp.path());
  std::string full = ReadAll(tmp.Sub("raft_log"));
  ASSERT_GT(full.size(), batches.first_batch_bytes);
  for (size_t cut = batches.first_batch_bytes; cut < full.size(); ++cut) {
    WriteAll(tmp.Sub("raft_log"), std::string_view(full).substr(0, cut));
    {
      std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
      ASSERT_NE(store, nullptr) << "cut at " << cut;
      EXPECT_EQ(StateOf(*store), batches.first_batch_state) << "cut at " << cut;
      EXPECT_EQ(store->discarded_tail_bytes(), cut - batches.first_batch_bytes);
      // The torn bytes are gone from the file, so new records follow the good ones.
      EXPECT_EQ(ReadAll(tmp.Sub("raft_log")).size(), batches.first_batch_bytes);
      ASSERT_TRUE(store->Append({MakeEntry(3, 7)}).ok());
      ASSERT_TRUE(store->Sync().ok());
    }
    std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
    EXPECT_EQ(store->discarded_tail_bytes(), 0u);
    EXPECT_EQ(store->entries().back(), MakeEntry(3, 7)) << "cut at " << cut;
  }
  // And the whole file is whole.
  WriteAll(tmp.Sub("raft_log"), full);
  EXPECT_EQ(StateOf(*OpenOrDie(tmp.path())), batches.both_batches_state);
}

TEST(RaftStoreTest, ZerosAfterTheLastRecordAreDiscarded) {
  TempDir tmp;
  TwoBatches batches = WriteTwoBatches(tmp.path());
  std::string full = ReadAll(tmp.Sub("raft_log"));
  WriteAll(tmp.Sub("raft_log"), full + std::string(8192, '\0'));
  std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
  EXPECT_EQ(StateOf(*store), batches.both_batches_state);
  EXPECT_EQ(store->discarded_tail_bytes(), 8192u);
}

TEST(RaftStoreTest, DamageInTheMiddleIsReportedAndNothingIsDiscarded) {
  TempDir tmp;
  TwoBatches batches = WriteTwoBatches(tmp.path());
  std::string full = ReadAll(tmp.Sub("raft_log"));
  // Every byte of every record but the last, one bit flipped.
  for (size_t offset = kMagicBytes; offset < batches.first_batch_bytes; ++offset) {
    std::string damaged = full;
    damaged[offset] ^= static_cast<char>(1 << (offset % 8));
    WriteAll(tmp.Sub("raft_log"), damaged);
    absl::StatusOr<std::unique_ptr<RaftStore>> store = RaftStore::Open(tmp.path());
    ASSERT_TRUE(absl::IsDataLoss(store.status())) << "byte " << offset << ": " << store.status();
    EXPECT_THAT(std::string(store.status().message()), HasSubstr("raft_log is damaged"));
    EXPECT_THAT(std::string(store.status().message()), HasSubstr("a valid record follows"));
    EXPECT_EQ(ReadAll(tmp.Sub("raft_log")), damaged) << "the file must be left as it was";
  }
}

TEST(RaftStoreTest, DamagedOrMissingFilesAreReported) {
  TempDir tmp;
  {
    std::unique_ptr<RaftStore> store = OpenOrDie(tmp.path());
    ASSERT_TRUE(store->Append(MakeEntries(1, 1, 4)).ok());
    ASSERT_TRUE(store->SaveSnapshot(MakeSnapshot(2, 1)).ok());
  }
  auto open_status = [&] { return RaftStore::Open(tmp.path()).status(); };
  for (std::string_view name : {"node_id", "raft_snapshot", "raft_log"}) {
    std::string original = ReadAll(tmp.Sub(name));
    std::string damaged = original;
    damaged[kMagicBytes + 15] ^= 0x01;
    WriteAll(tmp.Sub(name), damaged);
    EXPECT_TRUE(absl::IsDataLoss(open_status())) << name << ": " << open_status();
    std::string wrong_magic = original;
    wrong_magic[0] = 'X';
    WriteAll(tmp.Sub(name), wrong_magic);
    EXPECT_TRUE(absl::IsDataLoss(open_status())) << name << ": " << open_status();
    WriteAll(tmp.Sub(name), original);
    EXPECT_TRUE(open_status().ok()) << name;
  }
  std::filesystem::remove(tmp.Sub("node_id"));
  EXPECT_TRUE(absl::IsDataLoss(open_status()));
  EXPECT_THAT(std::string(open_status().message()), HasSubstr("new identity"));
}

// ---------------------------------------------------------------------------------------
// Simulated crashes at every write point (MemFs)

// Drives a fixed workload through a store on a MemFs and keeps the states a crash may leave:
// after an acknowledgement (Sync, SaveSnapshot, InstallSnapshot, Compact returning OK),
// the acknowledged state and the ones that the record-by-record progress since could leave.
class CrashWorkload {
 public:
  CrashWorkload(MemFs* fs, std::string dir) : fs_(fs), dir_(std::move(dir)) {}

  // Runs until the end or the first error. Returns whether it ran to the end.
  bool Run() {
    absl::StatusOr<std::unique_ptr<RaftStore>> opened = RaftStore::Open(dir_, {.fs = fs_});
    if (!opened.ok()) return false;
    store_ = *std::move(opened);
    node_id_ = store_->node_id();
    Acknowledge();
    bool ok = Append(MakeEntries(1, 1, 3)) && SetHardState({1, 0x77, 0}) && Sync() &&
              Append(MakeEntries(1, 4, 5)) && SetHardState({1, 0x77, 3}) && Sync() &&
              Append(MakeEntries(2, 4, 6)) && SetHardState({2, 0x88, 4}) && Sync() &&
              SaveSnapshot(MakeSnapshot(4, 2)) && Append({MakeEntry(2, 7)}) && Sync() &&
              Compact() && Append(MakeEntries(2, 8, 10)) && SetHardState({2, 0x88, 9}) && Sync() &&
              InstallSnapshot(MakeSnapshot(12, 3)) && Append(MakeEntries(3, 13, 14)) &&
              SetHardState({3, 0x99, 13}) && Sync() && InstallSnapshot(MakeSnapshot(14, 3)) &&
              Append({MakeEntry(3, 15)}) && Sync() && Append(MakeEntries(3, 16, 17)) &&
              InstallSnapshot(MakeSnapshot(16, 5)) && SaveSnapshot(MakeSnapshot(20, 5)) &&
              Compact() && Append({MakeEntry(5, 21)}) && SetHardState({5, 0, 21}) && Sync() &&
              Append({MakeEntry(5, 22)});  // left unsynced
    store_.reset();
    return ok;
  }

  raft::NodeId node_id() const { return node_id_; }
  const std::vector<State>& candidates() const { return candidates_; }

 private:
  State Current() const { return StateOf(*store_); }
  void Candidate(State state) { candidates_.push_back(std::move(state)); }
  void Acknowledge() { candidates_ = {Current()}; }

  bool Append(const std::vector<Entry>& entries) {
    // One record per truncation and per entry: a crash may keep any prefix of them.
    State state = Current();
    raft::Index first = entries.front().index;
    if (first <= store_->last_index()) {
      state.entries.resize(first - store_->first_index());
      Candidate(state);
    }
    for (const Entry& entry : entries) {
      state.entries.push_back(entry);
      Candidate(state);
    }
    EXPECT_TRUE(store_->Append(entries).ok());
    return true;
  }
  bool SetHardState(const HardState& hard_state) {
    EXPECT_TRUE(store_->SetHardState(hard_state).ok());
    Candidate(Current());
    return true;
  }
  bool Sync() {
    if (!store_->Sync().ok()) return false;
    Acknowledge();
    return true;
  }
  // The states a stored snapshot may leave: the log joined to it by Raft's rule (which is
  // what a crash before the reset record gives), and the log emptied.
  void SnapshotCandidates(const Snapshot& snapshot) {
    State state = Current();
    state.snapshot = snapshot;
    raft::Index index = snapshot.metadata.index;
    std::vector<Entry> kept;
    if (index >= store_->first_index() && index <= store_->last_index() &&
        store_->entries()[index - store_->first_index()].term == snapshot.metadata.term) {
      kept.assign(store_->entries().begin() + (index - store_->first_index() + 1),
                  store_->entries().end());
    }
    state.entries = kept;
    Candidate(state);
    state.entries.clear();
    Candidate(state);
  }
  bool SaveSnapshot(const Snapshot& snapshot) {
    SnapshotCandidates(snapshot);
    if (!store_->SaveSnapshot(snapshot).ok()) return false;
    Acknowledge();
    return true;
  }
  bool InstallSnapshot(const Snapshot& snapshot) {
    SnapshotCandidates(snapshot);
    if (!store_->InstallSnapshot(snapshot).ok()) return false;
    Acknowledge();
    return true;
  }
  bool Compact() {
    if (!store_->Compact().ok()) return false;
    Acknowledge();
    return true;
  }

  MemFs* fs_;
  std::string dir_;
  std::unique_ptr<RaftStore> store_;
  raft::NodeId node_id_ = raft::kNoNode;
  std::vector<State> candidates_ = {State{}};
};

TEST(RaftStoreCrashTest, CrashAtEveryWritePointLosesNothingAcknowledged) {
  uint64_t calls = 0;
  {
    MemFs fs;
    CrashWorkload workload(&fs, "/state");
    ASSERT_TRUE(workload.Run());
    calls = fs.mutating_calls();
  }
  ASSERT_GT(calls, 30u);
  int crashes = 0;
  for (uint64_t fault_at = 0; fault_at <= calls; ++fault_at) {
    for (MemFs::CrashMode mode : {MemFs::CrashMode::kLoseUnsynced, MemFs::CrashMode::kKeepUnsynced,
                                  MemFs::CrashMode::kTornUnsynced}) {
      SCOPED_TRACE(Concat("fault at call ", std::to_string(fault_at), ", crash mode ",
                          std::to_string(static_cast<int>(mode))));
      MemFs fs;
      fs.FailAfter(fault_at);
      CrashWorkload workload(&fs, "/state");
      bool finished = workload.Run();
      EXPECT_EQ(finished, fault_at >= calls);
      fs.Crash(mode);
      ++crashes;
      absl::StatusOr<std::unique_ptr<RaftStore>> store = RaftStore::Open("/state", {.fs = &fs});
      ASSERT_TRUE(store.ok()) << store.status();
      State recovered = StateOf(**store);
      bool acceptable = false;
      for (const State& candidate : workload.candidates()) acceptable |= candidate == recovered;
      std::string wanted;
      for (const State& candidate : workload.candidates())
        wanted += Concat("\n  ", Describe(candidate));
      EXPECT_TRUE(acceptable) << "recovered " << Describe(recovered) << "\nexpected one of"
                              << wanted;
      if (workload.node_id() != raft::kNoNode) {
        EXPECT_EQ((*store)->node_id(), workload.node_id());
      }
      // Recovery is stable: opening again gives the same state, with no tail left to cut.
      store->reset();
      std::unique_ptr<RaftStore> again = OpenOrDie("/state", &fs);
      EXPECT_EQ(StateOf(*again), recovered);
      EXPECT_EQ(again->discarded_tail_bytes(), 0u);
    }
  }
  EXPECT_GT(crashes, 90);
}

TEST(RaftStoreCrashTest, AnIoErrorIsSticky) {
  MemFs fs;
  std::unique_ptr<RaftStore> store = OpenOrDie("/state", &fs);
  ASSERT_TRUE(store->Append(MakeEntries(1, 1, 2)).ok());
  fs.FailAfter(0);
  EXPECT_FALSE(store->Sync().ok());
  fs.ClearFault();
  EXPECT_FALSE(store->Sync().ok());
  EXPECT_FALSE(store->Append({MakeEntry(1, 3)}).ok());
  EXPECT_FALSE(store->SetHardState({1, 0, 1}).ok());
  EXPECT_FALSE(store->Compact().ok());
  EXPECT_FALSE(store->SaveSnapshot(MakeSnapshot(1, 1)).ok());
}

}  // namespace
}  // namespace stanzad::storage
