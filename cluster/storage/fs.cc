#include "cluster/storage/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "core/base/concat.h"

namespace stanzad::storage {
namespace {

absl::Status ErrnoStatus(std::string_view operation, std::string_view path, int error) {
  std::string message = Concat(operation, " ", path, ": ", std::strerror(error));
  switch (error) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override { ::close(fd_); }

  absl::Status Append(std::string_view data) override {
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("write", path_, errno);
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

  absl::Status Sync() override {
    if (::fdatasync(fd_) != 0) return ErrnoStatus("fdatasync", path_, errno);
    return absl::OkStatus();
  }

  void StartWriteback() override {
    // Best effort: an error here shows again at the Sync that follows.
    (void)::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
  }

  void PaceWriteback() override {
    // Best effort, as StartWriteback.
    const off_t end = ::lseek(fd_, 0, SEEK_CUR);
    if (end < 0) return;
    if (started_to_ > waited_to_) {  // what the last call started
      (void)::sync_file_range(fd_, waited_to_, started_to_ - waited_to_,
                              SYNC_FILE_RANGE_WAIT_BEFORE);
      waited_to_ = started_to_;
    }
    if (end > started_to_) {
      (void)::sync_file_range(fd_, started_to_, end - started_to_, SYNC_FILE_RANGE_WRITE);
      started_to_ = end;
    }
  }

  absl::Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      return ErrnoStatus("ftruncate", path_, errno);
    }
    return absl::OkStatus();
  }

 private:
  std::string path_;
  int fd_;
  off_t waited_to_ = 0;   // PaceWriteback: written out up to here
  off_t started_to_ = 0;  // and asked to be up to here
};

class PosixFileLock final : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override { ::close(fd_); }  // closing releases the flock

 private:
  int fd_;
};

std::string ParentDir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

class PosixFileSystem final : public Fs {
 public:
  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    std::string content;
    char buffer[1 << 16];
    while (true) {
      ssize_t n = ::read(fd, buffer, sizeof(buffer));
      if (n < 0) {
        if (errno == EINTR) continue;
        int error = errno;
        ::close(fd);
        return ErrnoStatus("read", path, error);
      }
      if (n == 0) break;
      content.append(buffer, static_cast<size_t>(n));
    }
    ::close(fd);
    return content;
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> OpenForAppend(const std::string& path,
                                                              bool truncate) override {
    int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (truncate ? O_CREAT | O_TRUNC : 0);
    int fd = ::open(path.c_str(), flags, 0600);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd));
  }

  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoStatus("rename", Concat(from, " to ", to), errno);
    }
    return absl::OkStatus();
  }

  absl::Status Remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return ErrnoStatus("unlink", path, errno);
    return absl::OkStatus();
  }

  absl::Status SyncDir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open", dir, errno);
    int result = ::fsync(fd);
    int error = errno;
    ::close(fd);
    if (result != 0) return ErrnoStatus("fsync", dir, error);
    return absl::OkStatus();
  }

  absl::Status CreateDir(const std::string& dir) override {
    if (::mkdir(dir.c_str(), 0700) != 0) {
      if (errno != EEXIST) return ErrnoStatus("mkdir", dir, errno);
      struct stat info;
      if (::stat(dir.c_str(), &info) != 0) return ErrnoStatus("stat", dir, errno);
      if (!S_ISDIR(info.st_mode)) {
        return absl::FailedPreconditionError(Concat(dir, " exists and is not a directory"));
      }
      return absl::OkStatus();
    }
    return SyncDir(ParentDir(dir));
  }

  absl::StatusOr<std::unique_ptr<FileLock>> Lock(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int error = errno;
      ::close(fd);
      if (error == EWOULDBLOCK) {
        return absl::FailedPreconditionError(
            Concat(path, " is locked: another process uses this state directory"));
      }
      return ErrnoStatus("flock", path, error);
    }
    return std::unique_ptr<FileLock>(new PosixFileLock(fd));
  }
};

}  // namespace

Fs* PosixFs() {
  static PosixFileSystem* const fs = new PosixFileSystem();
  return fs;
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  if (!dir.empty() && dir.back() == '/') return Concat(dir, name);
  return Concat(dir, "/", name);
}

}  // namespace stanzad::storage
