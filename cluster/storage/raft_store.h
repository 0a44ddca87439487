// RaftStore: the durable state of one Raft node — its identity, hard state, log and latest
// snapshot — in a directory of its own.
//
// Files (in `dir`):
//   node_id        the node's random 64-bit id, made once from getrandom(2); never 0
//   raft_snapshot  the latest snapshot
//   raft_log       an append-only log of records: entry, truncate-from-index, hard state,
//                  and "log reset after a snapshot"
//   raft_lock      flock'd while a RaftStore has the directory open
// node_id, raft_snapshot and a compacted raft_log are replaced atomically (write a temp file,
// fsync, rename, fsync the directory). Every record carries CRC-32C checksums
// (record_file.h).
//
// What is durable after which call:
//   Open            the node id (made and stored on the first Open of an empty directory).
//   Append, SetHardState
//                   nothing yet: they change the state this object reports at once and queue
//                   records in memory.
//   Sync            everything queued before it. A crash before Sync returns may keep any
//                   prefix of the records queued since the last Sync (each entry, truncation
//                   and hard state is one record), never a record without those before it.
//   SaveSnapshot, InstallSnapshot, Compact
//                   everything: they Sync what was queued, then make their own change
//                   durable before returning.
// So the order of calls is the order of durability: a hard state set after the entries it
// commits never reaches the disk without them (the contract in cluster/raft/raft.h).
//
// At Open, a torn tail (a record a crash cut short, or noise after the last valid record) is
// discarded and the file truncated there; discarded_tail_bytes() says how much. A damaged
// record followed by valid ones is not a crash's doing: Open fails with DataLoss and a
// message that names the file and offset, and changes nothing. Open never returns a state
// that differs from what the records say.
//
// A torn tail looks the same as damage to the last record itself, so a bit flip in the last
// record of the log is discarded like a torn write (as in LevelDB). A crash that persists
// pages of an unsynced write out of order (a hole, then valid records) is reported as
// damage, not repaired; ext4's default data=ordered mode does not do that.
//
// Errors: InvalidArgument for calls that break the REQUIRES below (nothing is changed);
// DataLoss for files that are damaged or inconsistent with each other; other codes from the
// file system. An I/O error is sticky: after one, every mutating call returns it, since what
// reached the disk is then unknown; reopen the store (restart the process) to go on.
//
// Thread safety: none, but for PrepareSnapshot, which may run on another thread (one at a
// time) while the owner uses the store: it touches only its own file, through the Fs, so the
// Fs must be thread-safe for distinct files (PosixFs is; MemFs, for tests, is not). One
// RaftStore belongs to the control-plane thread.
#ifndef STANZAD_CLUSTER_STORAGE_RAFT_STORE_H_
#define STANZAD_CLUSTER_STORAGE_RAFT_STORE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cluster/raft/types.h"
#include "cluster/storage/fs.h"

namespace stanzad::storage {

// The largest entry data accepted by Append.
inline constexpr size_t kEntryDataBytesMax = 16 << 20;
// The largest snapshot data accepted by SaveSnapshot / InstallSnapshot.
inline constexpr size_t kSnapshotDataBytesMax = size_t{1} << 30;

struct RaftStoreOptions {
  Fs* fs = nullptr;  // null: PosixFs()
};

class RaftStore {
 public:
  // Opens the store in `dir`, creating the directory and a fresh node id when it does not
  // exist or is empty, and loads everything. FailedPrecondition when another RaftStore has
  // the directory open; DataLoss when its files are damaged (see above) or some are missing
  // (a log without a node id: the node must not take a new identity under an old log).
  static absl::StatusOr<std::unique_ptr<RaftStore>> Open(const std::string& dir,
                                                         RaftStoreOptions options = {});

  ~RaftStore();
  RaftStore(const RaftStore&) = delete;
  RaftStore& operator=(const RaftStore&) = delete;

  // What the store holds: as loaded at Open, then as changed by the calls since.
  raft::NodeId node_id() const { return node_id_; }
  const raft::HardState& hard_state() const { return hard_state_; }
  // The latest snapshot; metadata.index == 0 when there is none.
  const raft::Snapshot& snapshot() const { return *snapshot_; }
  // The entries after the snapshot, contiguous: first_index() .. last_index().
  const std::vector<raft::Entry>& entries() const { return entries_; }
  raft::Index first_index() const { return snapshot_->metadata.index + 1; }
  raft::Index last_index() const { return snapshot_->metadata.index + entries_.size(); }

  // Appends entries, first removing the stored entries at and after entries.front().index
  // (a conflicting suffix). REQUIRES (else InvalidArgument): indexes consecutive;
  // snapshot().metadata.index < entries.front().index <= last_index() + 1; each data at
  // most kEntryDataBytesMax.
  absl::Status Append(const std::vector<raft::Entry>& entries);

  absl::Status SetHardState(const raft::HardState& hard_state);

  // Makes every call before it durable.
  absl::Status Sync();

  // Stores a snapshot this node took (after applying through snapshot.metadata.index). The
  // entries after it stay when the stored entry at its index has its term, as in the Raft
  // paper's InstallSnapshot rule; otherwise all entries go. Entries covered by the snapshot
  // are no longer reported; they leave the file at the next Compact(). Durable on return.
  // REQUIRES (else InvalidArgument): snapshot().metadata.index < snapshot.metadata.index;
  // data at most kSnapshotDataBytesMax.
  absl::Status SaveSnapshot(const raft::Snapshot& snapshot);

  // Stores a snapshot received from the leader: it replaces the whole log (Ready.snapshot in
  // cluster/raft/raft.h). Durable on return. REQUIRES: as SaveSnapshot.
  absl::Status InstallSnapshot(const raft::Snapshot& snapshot);
  absl::Status InstallSnapshot(std::shared_ptr<const raft::Snapshot> snapshot);

  // SaveSnapshot in two steps, so that a large snapshot's file is written (and fsynced) away
  // from the thread that owns the store:
  //   PrepareSnapshot  writes the snapshot's file under a name of its own (8 MiB at a time,
  //                    each step written out before the next: WritableFile::PaceWriteback),
  //                    durable on return, and touches nothing else: it may run on another
  //                    thread (SaveSnapshot and InstallSnapshot run it on the caller's) while
  //                    the store is used, one PrepareSnapshot at a time. REQUIRES (else
  //                    InvalidArgument): as SaveSnapshot's bounds on the data and members.
  //   CommitSnapshot   on the owning thread: makes the prepared file the snapshot (a rename)
  //                    and drops the entries it covers, as SaveSnapshot. FailedPrecondition,
  //                    not sticky, when the store meanwhile holds a snapshot at or past this
  //                    one (one from the leader): the prepared file is removed.
  // A crash between the two leaves the old snapshot and the whole log (Open removes the
  // prepared file).
  absl::Status PrepareSnapshot(const raft::Snapshot& snapshot) const;
  absl::Status CommitSnapshot(std::shared_ptr<const raft::Snapshot> snapshot);

  // Rewrites the log file with only what is live (the entries after the snapshot and the
  // hard state), replacing it atomically. Durable on return.
  absl::Status Compact();

  // The size of the log file including records not yet synced, and the part of it that
  // Compact() would keep: the caller compacts when the difference grows large.
  uint64_t log_file_bytes() const { return log_file_bytes_ + pending_.size(); }
  uint64_t log_live_bytes() const;

  // Bytes of a torn tail that Open discarded (0 when the log ended cleanly).
  uint64_t discarded_tail_bytes() const { return discarded_tail_bytes_; }

 private:
  RaftStore(Fs* fs, std::string dir);

  absl::Status Load();
  absl::Status LoadNodeId(bool log_exists, bool snapshot_exists);
  absl::Status LoadSnapshot(const std::string& bytes);
  absl::Status LoadLog(const std::string& bytes);
  // Checks a snapshot against the bounds and the stored one (see SaveSnapshot).
  absl::Status CheckSnapshot(const raft::Snapshot& snapshot) const;
  // Makes the prepared file the snapshot and drops the entries it covers.
  absl::Status StoreSnapshot(std::shared_ptr<const raft::Snapshot> snapshot,
                             bool keep_following_entries);
  bool KeepsFollowingEntries(const raft::Snapshot& snapshot) const;
  absl::Status CheckWritable() const;
  absl::Status Fail(absl::Status status);

  Fs* fs_;
  std::string dir_;
  std::unique_ptr<FileLock> lock_;
  std::unique_ptr<WritableFile> log_;

  raft::NodeId node_id_ = raft::kNoNode;
  raft::HardState hard_state_;
  std::shared_ptr<const raft::Snapshot> snapshot_;  // never null
  std::vector<raft::Entry> entries_;

  std::string pending_;          // records queued since the last Sync
  uint64_t log_file_bytes_ = 0;  // bytes written to the log file
  uint64_t discarded_tail_bytes_ = 0;
  absl::Status failed_;  // the sticky I/O error, once there is one
};

// A fresh random node id from the kernel's CSPRNG; never kNoNode.
absl::StatusOr<raft::NodeId> GenerateNodeId();

}  // namespace stanzad::storage

#endif  // STANZAD_CLUSTER_STORAGE_RAFT_STORE_H_
