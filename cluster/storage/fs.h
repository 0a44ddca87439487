// Fs: the few file system calls the Raft storage makes, behind an interface, so that tests
// can run the storage on MemFs (mem_fs.h), which fails on demand and forgets unsynced
// writes the way a machine that loses power does.
//
// PosixFs() is the real one. Its durability rules are Linux's, and the storage relies on
// exactly these:
//   - bytes appended to a file are durable once WritableFile::Sync() returns OK (fdatasync);
//   - a file's name (after create or rename) is durable once SyncDir() of its directory
//     returns OK (fsync of the directory);
//   - Rename() replaces its target atomically: after a crash the name holds the old file or
//     the new one, never a mix.
//
// Errors are absl::Status values naming the path and the errno text; a missing file is
// NotFound. Thread safety: PosixFs may be used from any thread; one WritableFile belongs to
// one thread.
#ifndef STANZAD_CLUSTER_STORAGE_FS_H_
#define STANZAD_CLUSTER_STORAGE_FS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stanzad::storage {

class WritableFile {
 public:
  virtual ~WritableFile() = default;

  // Appends at the end of the file.
  virtual absl::Status Append(std::string_view data) = 0;
  // Makes the file's content (and size) durable.
  virtual absl::Status Sync() = 0;
  // Asks for what was appended to be written out now, without waiting for it, so that a
  // later Sync of a large file has little left to wait for. Durable only after Sync.
  virtual void StartWriteback() {}
  // Waits until what the previous call asked for is written out, then asks for what was
  // appended since, without waiting for it. Called between appends of a large file, it
  // keeps at most the bytes appended between two calls waiting for the disk, so that an
  // fsync elsewhere (the Raft log's) does not queue behind hundreds of MB. It blocks its
  // caller for up to one step's writeback. Durable only after Sync. Best effort.
  virtual void PaceWriteback() {}
  // Cuts the file to `size` bytes (durable after Sync()).
  virtual absl::Status Truncate(uint64_t size) = 0;
};

// An exclusive lock on a path, held until destroyed.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

class Fs {
 public:
  virtual ~Fs() = default;

  // The whole file. NotFound when it does not exist.
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) = 0;
  // Opens `path` for appending: an existing file as it is, or (with `truncate`) a file
  // created or emptied for the caller.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> OpenForAppend(const std::string& path,
                                                                      bool truncate) = 0;
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  // Removes a file; NotFound when it does not exist.
  virtual absl::Status Remove(const std::string& path) = 0;
  // Makes the names in `dir` durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  // Creates `dir` (its parent must exist) and makes its name durable. OK if it exists.
  virtual absl::Status CreateDir(const std::string& dir) = 0;
  // Takes an exclusive lock on `path` (creating the file); FailedPrecondition when another
  // holder has it.
  virtual absl::StatusOr<std::unique_ptr<FileLock>> Lock(const std::string& path) = 0;
};

// The real file system. Never null; lives for the whole process.
Fs* PosixFs();

// "dir" + "/" + "name".
std::string JoinPath(std::string_view dir, std::string_view name);

}  // namespace stanzad::storage

#endif  // STANZAD_CLUSTER_STORAGE_FS_H_
