#include "cluster/storage/raft_store.h"

#include <errno.h>
#include <sys/random.h>

#include <cstring>
#include <utility>

#include "cluster/storage/atomic_file.h"
#include "cluster/storage/crc32c.h"
#include "cluster/storage/record_file.h"
#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/config/byte_codec.h"

namespace stanzad::storage {
namespace {

using config::ByteReader;
using config::ByteWriter;

constexpr std::string_view kNodeIdFile = "node_id";
constexpr std::string_view kSnapshotFile = "raft_snapshot";
constexpr std::string_view kPreparedSnapshotFile = "raft_snapshot.next";  // PrepareSnapshot
constexpr std::string_view kLogFile = "raft_log";
constexpr std::string_view kLockFile = "raft_lock";

// Magic numbers: the file's kind and format version. A new format gets a new magic.
constexpr std::string_view kNodeIdMagic = "SZNODE01";
constexpr std::string_view kSnapshotMagic = "SZSNAP01";
constexpr std::string_view kLogMagic = "SZRLOG01";
static_assert(kNodeIdMagic.size() == kMagicBytes && kSnapshotMagic.size() == kMagicBytes &&
              kLogMagic.size() == kMagicBytes);

// Record types. Never renumber.
enum RecordType : uint8_t {
  kEntryRecord = 1,      // term u64 | index u64 | type u8 | data
  kTruncateRecord = 2,   // index u64: entries at and after it are removed
  kHardStateRecord = 3,  // term u64 | vote u64 | commit u64
  kResetRecord = 4,      // index u64: the log is empty; the next entry is index + 1
  kSnapshotRecord = 10,  // index u64 | term u64 | members | data
  kNodeIdRecord = 20,    // id u64
};

constexpr size_t kEntryHeaderBytes = 17;
constexpr size_t kLogPayloadBytesMax = kEntryHeaderBytes + kEntryDataBytesMax;
constexpr size_t kSnapshotPayloadBytesMax = kSnapshotDataBytesMax + (1 << 20);
constexpr size_t kMembersMax = 1024;

void AppendEntryRecord(const raft::Entry& entry, std::string* out) {
  ByteWriter w;
  w.PutU64(entry.term);
  w.PutU64(entry.index);
  w.PutU8(static_cast<uint8_t>(entry.type));
  w.PutRaw(entry.data);
  AppendRecord(kEntryRecord, w.bytes(), out);
}

void AppendIndexRecord(RecordType type, raft::Index index, std::string* out) {
  ByteWriter w;
  w.PutU64(index);
  AppendRecord(type, w.bytes(), out);
}

void AppendHardStateRecord(const raft::HardState& hard_state, std::string* out) {
  ByteWriter w;
  w.PutU64(hard_state.term);
  w.PutU64(hard_state.vote);
  w.PutU64(hard_state.commit);
  AppendRecord(kHardStateRecord, w.bytes(), out);
}

absl::Status CheckSnapshotBounds(const raft::Snapshot& snapshot) {
  if (snapshot.data.size() > kSnapshotDataBytesMax) {
    return absl::InvalidArgumentError("snapshot: data is larger than 1 GiB");
  }
  if (snapshot.metadata.members.size() > kMembersMax) {
    return absl::InvalidArgumentError("snapshot: too many members");
  }
  for (const raft::Member& member : snapshot.metadata.members) {
    if (member.address.size() > raft::kMemberAddressBytesMax) {
      return absl::InvalidArgumentError("snapshot: a member address is too long");
    }
  }
  return absl::OkStatus();
}

// The snapshot file up to its data: the magic, the record header, then the metadata (the
// data follows, to the record's end).
std::string SnapshotFileHead(const raft::Snapshot& snapshot) {
  ByteWriter w;
  w.PutU64(snapshot.metadata.index);
  w.PutU64(snapshot.metadata.term);
  w.PutU32(static_cast<uint32_t>(snapshot.metadata.members.size()));
  for (const raft::Member& member : snapshot.metadata.members) {
    w.PutU64(member.id);
    w.PutString(member.address);
  }
  const std::string metadata = w.Take();
  std::string head(kSnapshotMagic);
  AppendRecordHeader(kSnapshotRecord, metadata.size() + snapshot.data.size(),
                     Crc32cExtend(Crc32c(metadata), snapshot.data), &head);
  head.append(metadata);
  return head;
}

std::string OffsetText(size_t offset) { return std::to_string(offset); }

}  // namespace

absl::StatusOr<raft::NodeId> GenerateNodeId() {
  while (true) {
    raft::NodeId id = raft::kNoNode;
    ssize_t n = getrandom(&id, sizeof(id), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(Concat("getrandom: ", std::strerror(errno)));
    }
    if (static_cast<size_t>(n) == sizeof(id) && id != raft::kNoNode) return id;
  }
}

RaftStore::RaftStore(Fs* fs, std::string dir)
    : fs_(fs), dir_(std::move(dir)), snapshot_(std::make_shared<const raft::Snapshot>()) {}

RaftStore::~RaftStore() = default;

absl::StatusOr<std::unique_ptr<RaftStore>> RaftStore::Open(const std::string& dir,
                                                           RaftStoreOptions options) {
  Fs* fs = options.fs != nullptr ? options.fs : PosixFs();
  std::unique_ptr<RaftStore> store(new RaftStore(fs, dir));
  if (absl::Status status = store->Load(); !status.ok()) return status;
  return store;
}

absl::Status RaftStore::Load() {
  if (absl::Status status = fs_->CreateDir(dir_); !status.ok()) return status;
  absl::StatusOr<std::unique_ptr<FileLock>> lock = fs_->Lock(JoinPath(dir_, kLockFile));
  if (!lock.ok()) return lock.status();
  lock_ = *std::move(lock);
  for (std::string_view name : {kNodeIdFile, kSnapshotFile, kLogFile}) {
    if (absl::Status status = RemoveTemporaryFile(*fs_, dir_, name); !status.ok()) return status;
  }
  if (absl::Status status = fs_->Remove(JoinPath(dir_, kPreparedSnapshotFile));
      !status.ok() && !absl::IsNotFound(status)) {
    return status;
  }

  absl::StatusOr<std::string> snapshot_bytes = fs_->ReadFile(JoinPath(dir_, kSnapshotFile));
  if (!snapshot_bytes.ok() && !absl::IsNotFound(snapshot_bytes.status())) {
    return snapshot_bytes.status();
  }
  absl::StatusOr<std::string> log_bytes = fs_->ReadFile(JoinPath(dir_, kLogFile));
  if (!log_bytes.ok() && !absl::IsNotFound(log_bytes.status())) return log_bytes.status();

  if (absl::Status status = LoadNodeId(log_bytes.ok(), snapshot_bytes.ok()); !status.ok()) {
    return status;
  }
  if (snapshot_bytes.ok()) {
    if (absl::Status status = LoadSnapshot(*snapshot_bytes); !status.ok()) return status;
  }
  if (log_bytes.ok()) {
    if (absl::Status status = LoadLog(*log_bytes); !status.ok()) return status;
  } else {
    if (snapshot_bytes.ok()) {
      return absl::DataLossError(Concat("state directory ", dir_, " has a ", kSnapshotFile,
                                        " but no ", kLogFile, "; refusing to start"));
    }
    absl::Status status = WriteFileAtomically(*fs_, dir_, kLogFile, kLogMagic);
    if (!status.ok()) return status;
    log_file_bytes_ = kLogMagic.size();
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> log =
      fs_->OpenForAppend(JoinPath(dir_, kLogFile), false);
  if (!log.ok()) return log.status();
  log_ = *std::move(log);
  if (discarded_tail_bytes_ > 0) {
    // Cut the torn tail off for good before anything is appended after it.
    if (absl::Status status = log_->Truncate(log_file_bytes_); !status.ok()) return status;
    if (absl::Status status = log_->Sync(); !status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status RaftStore::LoadNodeId(bool log_exists, bool snapshot_exists) {
  std::string path = JoinPath(dir_, kNodeIdFile);
  absl::StatusOr<std::string> bytes = fs_->ReadFile(path);
  if (absl::IsNotFound(bytes.status())) {
    if (log_exists || snapshot_exists) {
      return absl::DataLossError(
          Concat("state directory ", dir_, " has a Raft log but no ", kNodeIdFile,
                 "; refusing to start under a new identity (wipe the directory to rejoin the "
                 "cluster as a new node)"));
    }
    absl::StatusOr<raft::NodeId> id = GenerateNodeId();
    if (!id.ok()) return id.status();
    ByteWriter w;
    w.PutU64(*id);
    std::string file(kNodeIdMagic);
    AppendRecord(kNodeIdRecord, w.bytes(), &file);
    if (absl::Status status = WriteFileAtomically(*fs_, dir_, kNodeIdFile, file); !status.ok()) {
      return status;
    }
    node_id_ = *id;
    return absl::OkStatus();
  }
  if (!bytes.ok()) return bytes.status();
  std::string_view view = *bytes;
  if (!view.starts_with(kNodeIdMagic)) {
    return absl::DataLossError(Concat(path, " is not a stanzad node id file"));
  }
  ScanResult scan = ScanRecords(view.substr(kMagicBytes), 64);
  ByteReader r(scan.records.empty() ? std::string_view() : scan.records[0].payload);
  uint64_t id = 0;
  if (scan.end != ScanResult::End::kClean || scan.records.size() != 1 ||
      scan.records[0].type != kNodeIdRecord || !r.GetU64(&id) || !r.empty() ||
      id == raft::kNoNode) {
    return absl::DataLossError(Concat(path, " is damaged; the node's identity is lost"));
  }
  node_id_ = id;
  return absl::OkStatus();
}

absl::Status RaftStore::LoadSnapshot(const std::string& bytes) {
  std::string path = JoinPath(dir_, kSnapshotFile);
  std::string_view view = bytes;
  if (!view.starts_with(kSnapshotMagic)) {
    return absl::DataLossError(Concat(path, " is not a stanzad snapshot file"));
  }
  ScanResult scan = ScanRecords(view.substr(kMagicBytes), kSnapshotPayloadBytesMax);
  if (scan.end != ScanResult::End::kClean || scan.records.size() != 1 ||
      scan.records[0].type != kSnapshotRecord) {
    return absl::DataLossError(Concat(path, " is damaged (checksum mismatch or truncated)"));
  }
  ByteReader r(scan.records[0].payload);
  raft::Snapshot snapshot;
  uint32_t count = 0;
  bool ok = r.GetU64(&snapshot.metadata.index) && r.GetU64(&snapshot.metadata.term) &&
            r.GetCount(&count, kMembersMax, 12);
  for (uint32_t i = 0; ok && i < count; ++i) {
    raft::Member& member = snapshot.metadata.members.emplace_back();
    ok = r.GetU64(&member.id) && r.GetString(&member.address, raft::kMemberAddressBytesMax);
  }
  std::string_view data;
  ok = ok && r.GetRaw(r.remaining(), &data);
  if (!ok || snapshot.metadata.index == 0) {
    return absl::DataLossError(Concat(path, " holds a malformed snapshot"));
  }
  snapshot.data.assign(data);
  snapshot_ = std::make_shared<const raft::Snapshot>(std::move(snapshot));
  return absl::OkStatus();
}

absl::Status RaftStore::LoadLog(const std::string& bytes) {
  std::string path = JoinPath(dir_, kLogFile);
  std::string_view view = bytes;
  if (!view.starts_with(kLogMagic)) {
    return absl::DataLossError(Concat(path, " is not a stanzad Raft log (or not this version)"));
  }
  ScanResult scan = ScanRecords(view.substr(kMagicBytes), kLogPayloadBytesMax);
  if (scan.end == ScanResult::End::kCorrupt) {
    return absl::DataLossError(
        Concat(path, " is damaged: the record at byte ", OffsetText(kMagicBytes + scan.valid_bytes),
               " fails its checksum, yet a valid record follows at byte ",
               OffsetText(kMagicBytes + scan.next_valid_offset),
               "; this is not a torn write, so nothing is discarded. Restore the directory "
               "from a backup, or wipe it and rejoin the cluster as a new node"));
  }
  log_file_bytes_ = kMagicBytes + scan.valid_bytes;
  discarded_tail_bytes_ = view.size() - log_file_bytes_;

  // Replay into the raw log: entries base+1 .. base+raw.size(), as the records say.
  raft::Index base = 0;
  std::vector<raft::Entry> raw;
  for (const RecordView& record : scan.records) {
    ByteReader r(record.payload);
    auto damaged = [&](std::string_view why) {
      return absl::DataLossError(
          Concat(path, ": the record at byte ", OffsetText(kMagicBytes + record.offset), " ", why));
    };
    switch (record.type) {
      case kEntryRecord: {
        raft::Entry entry;
        uint8_t type = 0;
        std::string_view data;
        if (!r.GetU64(&entry.term) || !r.GetU64(&entry.index) || !r.GetU8(&type) ||
            !r.GetRaw(r.remaining(), &data) ||
            type > static_cast<uint8_t>(raft::EntryType::kRemoveMember)) {
          return damaged("is a malformed entry");
        }
        if (entry.index != base + raw.size() + 1) {
          return damaged(Concat("holds entry ", std::to_string(entry.index), " where entry ",
                                std::to_string(base + raw.size() + 1), " belongs"));
        }
        entry.type = static_cast<raft::EntryType>(type);
        entry.data.assign(data);
        raw.push_back(std::move(entry));
        break;
      }
      case kTruncateRecord: {
        raft::Index index = 0;
        if (!r.GetU64(&index) || !r.empty()) return damaged("is a malformed truncation");
        if (index <= base || index > base + raw.size() + 1) {
          return damaged(
              Concat("truncates from entry ", std::to_string(index), ", outside the log"));
        }
        raw.resize(index - base - 1);
        break;
      }
      case kHardStateRecord: {
        if (!r.GetU64(&hard_state_.term) || !r.GetU64(&hard_state_.vote) ||
            !r.GetU64(&hard_state_.commit) || !r.empty()) {
          return damaged("is a malformed hard state");
        }
        break;
      }
      case kResetRecord: {
        if (!r.GetU64(&base) || !r.empty()) return damaged("is a malformed reset");
        raw.clear();
        break;
      }
      default:
        return damaged(Concat("has unknown type ", std::to_string(record.type)));
    }
  }

  // Join the log to the snapshot. A reset record is only written after its snapshot is
  // durable, so a log that starts past the snapshot means a file went missing or back.
  raft::Index snapshot_index = snapshot_->metadata.index;
  if (base > snapshot_index) {
    return absl::DataLossError(Concat(
        path, " starts after entry ", std::to_string(base), " but the snapshot ends at entry ",
        std::to_string(snapshot_index), "; the entries between are lost"));
  }
  if (snapshot_index == 0 || raw.empty() || base == snapshot_index) {
    entries_ = std::move(raw);
  } else if (base + raw.size() < snapshot_index) {
    entries_.clear();  // the log ends before the snapshot: all of it is covered
  } else {
    // The log holds the snapshot's index: keep what follows if the terms agree (Raft's
    // InstallSnapshot rule); a crash between storing a snapshot and its reset record leaves
    // either case.
    const raft::Entry& at_snapshot = raw[snapshot_index - base - 1];
    if (at_snapshot.term == snapshot_->metadata.term) {
      entries_.assign(std::make_move_iterator(raw.begin() + (snapshot_index - base)),
                      std::make_move_iterator(raw.end()));
    } else {
      entries_.clear();
    }
  }
  return absl::OkStatus();
}

absl::Status RaftStore::CheckWritable() const { return failed_; }

absl::Status RaftStore::Fail(absl::Status status) {
  DCHECK(!status.ok());
  if (failed_.ok()) failed_ = status;
  return status;
}

absl::Status RaftStore::Append(const std::vector<raft::Entry>& entries) {
  if (absl::Status status = CheckWritable(); !status.ok()) return status;
  if (entries.empty()) return absl::OkStatus();
  raft::Index first = entries.front().index;
  if (first <= snapshot_->metadata.index || first > last_index() + 1) {
    return absl::InvalidArgumentError(
        Concat("append: entry ", std::to_string(first), " does not continue the stored log (",
               std::to_string(first_index()), "..", std::to_string(last_index()), ")"));
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].index != first + i) {
      return absl::InvalidArgumentError("append: entry indexes are not consecutive");
    }
    if (entries[i].data.size() > kEntryDataBytesMax) {
      return absl::InvalidArgumentError("append: entry data is larger than 16 MiB");
    }
  }
  if (first <= last_index()) {
    AppendIndexRecord(kTruncateRecord, first, &pending_);
    entries_.resize(first - first_index());
  }
  for (const raft::Entry& entry : entries) {
    AppendEntryRecord(entry, &pending_);
    entries_.push_back(entry);
  }
  return absl::OkStatus();
}

absl::Status RaftStore::SetHardState(const raft::HardState& hard_state) {
  if (absl::Status status = CheckWritable(); !status.ok()) return status;
  if (hard_state == hard_state_) return absl::OkStatus();
  AppendHardStateRecord(hard_state, &pending_);
  hard_state_ = hard_state;
  return absl::OkStatus();
}

absl::Status RaftStore::Sync() {
  if (absl::Status status = CheckWritable(); !status.ok()) return status;
  if (pending_.empty()) return absl::OkStatus();
  // Counted before the write: after a failed write the file's length is unknown, and the
  // store refuses further writes anyway.
  log_file_bytes_ += pending_.size();
  if (absl::Status status = log_->Append(pending_); !status.ok()) return Fail(status);
  pending_.clear();
  if (absl::Status status = log_->Sync(); !status.ok()) return Fail(status);
  return absl::OkStatus();
}

bool RaftStore::KeepsFollowingEntries(const raft::Snapshot& snapshot) const {
  const raft::Index index = snapshot.metadata.index;
  return index >= first_index() && index <= last_index() &&
         entries_[index - first_index()].term == snapshot.metadata.term;
}

absl::Status RaftStore::SaveSnapshot(const raft::Snapshot& snapshot) {
  if (absl::Status status = CheckWritable(); !status.ok()) return status;
  if (absl::Status status = CheckSnapshot(snapshot); !status.ok()) return status;
  if (absl::Status status = PrepareSnapshot(snapshot); !status.ok()) return Fail(status);
  auto shared = std::make_shared<const raft::Snapshot>(snapshot);
  return StoreSnapshot(shared, KeepsFollowingEntries(*shared));
}

absl::Status RaftStore::InstallSnapshot(const raft::Snapshot& snapshot) {
  return InstallSnapshot(std::make_shared<const raft::Snapshot>(snapshot));
}

absl::Status RaftStore::InstallSnapshot(std::shared_ptr<const raft::Snapshot> snapshot) {
  if (absl::Status status = CheckWritable(); !status.ok()) return status;
  if (absl::Status status = CheckSnapshot(*snapshot); !status.ok()) return status;
  if (absl::Status status = PrepareSnapshot(*snapshot); !status.ok()) return Fail(status);
  return StoreSnapshot(std::move(snapshot), false);
}

absl::Status RaftStore::CommitSnapshot(std::shared_ptr<const raft::Snapshot> snapshot) {
  if (absl::Status status = CheckWritable(); !status.ok()) return status;
  if (snapshot->metadata.index <= snapshot_->metadata.index) {
    absl::Status removed = fs_->Remove(JoinPath(dir_, kPreparedSnapshotFile));
    if (!removed.ok() && !absl::IsNotFound(removed)) return Fail(removed);
    return absl::FailedPreconditionError(Concat(
        "snapshot: entry ", std::to_string(snapshot->metadata.index),
        " is not past the stored snapshot (", std::to_string(snapshot_->metadata.index), ")"));
  }
  const bool keep = KeepsFollowingEntries(*snapshot);
  return StoreSnapshot(std::move(snapshot), keep);
}

absl::Status RaftStore::CheckSnapshot(const raft::Snapshot& snapshot) const {
  const raft::Index index = snapshot.metadata.index;
  if (index <= snapshot_->metadata.index) {
    return absl::InvalidArgumentError(Concat("snapshot: entry ", std::to_string(index),
                                             " is not past the stored snapshot (",
                                             std::to_string(snapshot_->metadata.index), ")"));
  }
  return CheckSnapshotBounds(snapshot);
}

absl::Status RaftStore::PrepareSnapshot(const raft::Snapshot& snapshot) const {
  if (absl::Status status = CheckSnapshotBounds(snapshot); !status.ok()) return status;
  absl::StatusOr<std::unique_ptr<WritableFile>> file =
      fs_->OpenForAppend(JoinPath(dir_, kPreparedSnapshotFile), true);
  if (!file.ok()) return file.status();
  if (absl::Status status = (*file)->Append(SnapshotFileHead(snapshot)); !status.ok()) {
    return status;
  }
  // In steps, each written out before the next: hundreds of MB at size, which would
  // otherwise sit in the page cache and then hold up the Raft log's fsync behind them.
  constexpr size_t kStepBytes = 8 << 20;
  for (size_t offset = 0; offset < snapshot.data.size(); offset += kStepBytes) {
    const std::string_view step = std::string_view(snapshot.data).substr(offset, kStepBytes);
    if (absl::Status status = (*file)->Append(step); !status.ok()) return status;
    (*file)->PaceWriteback();
  }
  return (*file)->Sync();
}

absl::Status RaftStore::StoreSnapshot(std::shared_ptr<const raft::Snapshot> snapshot,
                                      bool keep_following_entries) {
  // The entries the snapshot may keep must be on disk before the snapshot that refers to them.
  if (absl::Status status = Sync(); !status.ok()) return status;
  if (absl::Status status =
          fs_->Rename(JoinPath(dir_, kPreparedSnapshotFile), JoinPath(dir_, kSnapshotFile));
      !status.ok()) {
    return Fail(status);
  }
  if (absl::Status status = fs_->SyncDir(dir_); !status.ok()) return Fail(status);
  const raft::Index index = snapshot->metadata.index;
  if (keep_following_entries) {
    entries_.erase(entries_.begin(), entries_.begin() + (index - first_index() + 1));
  } else {
    entries_.clear();
    AppendIndexRecord(kResetRecord, index, &pending_);
  }
  snapshot_ = std::move(snapshot);
  return Sync();
}

uint64_t RaftStore::log_live_bytes() const {
  uint64_t bytes = kMagicBytes + 2 * kRecordHeaderBytes + 8 + 24;  // reset and hard state
  for (const raft::Entry& entry : entries_) {
    bytes += kRecordHeaderBytes + kEntryHeaderBytes + entry.data.size();
  }
  return bytes;
}

absl::Status RaftStore::Compact() {
  if (absl::Status status = CheckWritable(); !status.ok()) return status;
  std::string file(kLogMagic);
  file.reserve(log_live_bytes());
  AppendIndexRecord(kResetRecord, snapshot_->metadata.index, &file);
  for (const raft::Entry& entry : entries_) AppendEntryRecord(entry, &file);
  AppendHardStateRecord(hard_state_, &file);
  // The old file stays whole until the rename: a crash before it finds the old log and the
  // records queued for it are simply not written (they were never synced).
  log_.reset();
  if (absl::Status status = WriteFileAtomically(*fs_, dir_, kLogFile, file); !status.ok()) {
    return Fail(status);
  }
  pending_.clear();
  log_file_bytes_ = file.size();
  absl::StatusOr<std::unique_ptr<WritableFile>> log =
      fs_->OpenForAppend(JoinPath(dir_, kLogFile), false);
  if (!log.ok()) return Fail(log.status());
  log_ = *std::move(log);
  return absl::OkStatus();
}

}  // namespace stanzad::storage
