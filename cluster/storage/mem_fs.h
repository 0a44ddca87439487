// MemFs: an in-memory Fs for tests that crashes like a real machine.
//
// It keeps, for every file, the bytes written and the bytes made durable by Sync(); and for
// every directory, the names as they are and the names made durable by SyncDir(). Crash()
// forgets what was not made durable (all of it, or, to model a torn write, only part), the
// way a power loss does; then the storage is opened again on the same MemFs to check what
// survived.
//
// Fault injection: FailAfter(n) lets n more mutating calls (Append, Sync, Truncate, Rename,
// Remove, SyncDir, OpenForAppend with truncate) succeed; the next one fails (an Append first
// writes half of its bytes, as a short write would), and so does every one after it, as if
// the process had died there. Reads keep working.
//
// Thread safety: none. Paths are plain strings; a directory is the text before the last '/'.
#ifndef STANZAD_CLUSTER_STORAGE_MEM_FS_H_
#define STANZAD_CLUSTER_STORAGE_MEM_FS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "cluster/storage/fs.h"

namespace stanzad::storage {

class MemFs final : public Fs {
 public:
  // What survives a crash of the data that was written but not synced.
  enum class CrashMode {
    kLoseUnsynced,  // nothing unsynced: file contents and names revert to their durable state
    kKeepUnsynced,  // everything (a process crash: the kernel still writes its page cache)
    kTornUnsynced,  // names keep their latest state; each file keeps its durable bytes plus
                    // the first half of the bytes appended since (a torn write)
  };

  MemFs();
  ~MemFs() override;

  // Fault injection (see above). FailAfter(0) fails the very next mutating call.
  void FailAfter(uint64_t successful_calls);
  void ClearFault();
  // Mutating calls made so far (to size a fault-injection loop).
  uint64_t mutating_calls() const { return mutating_calls_; }

  // Simulates a machine crash (see CrashMode) and clears any fault. Files opened before must
  // not be used after it.
  void Crash(CrashMode mode);

  // Test access to a file's current bytes (nullopt when it does not exist) and a way to
  // damage them.
  std::optional<std::string> Contents(const std::string& path) const;
  void SetContents(const std::string& path, std::string contents);  // durable at once

  // Fs
  absl::StatusOr<std::string> ReadFile(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<WritableFile>> OpenForAppend(const std::string& path,
                                                              bool truncate) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::Status CreateDir(const std::string& dir) override;
  absl::StatusOr<std::unique_ptr<FileLock>> Lock(const std::string& path) override;

 private:
  friend class MemWritableFile;
  friend class MemFileLock;

  struct Inode {
    std::string data;          // as written
    std::string durable_data;  // as of the last Sync()
  };

  // Counts a mutating call; returns the injected error when it must fail.
  absl::Status CountCall(std::string_view operation);

  std::map<std::string, std::shared_ptr<Inode>> names_;
  std::map<std::string, std::shared_ptr<Inode>> durable_names_;
  std::set<std::string> dirs_;
  std::set<std::string> locked_;
  uint64_t mutating_calls_ = 0;
  std::optional<uint64_t> calls_before_fault_;
  bool failed_ = false;
};

}  // namespace stanzad::storage

#endif  // STANZAD_CLUSTER_STORAGE_MEM_FS_H_
