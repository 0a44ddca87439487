#include "cluster/storage/mem_fs.h"

#include <utility>

#include "core/base/concat.h"

namespace stanzad::storage {
namespace {

std::string DirOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

}  // namespace

class MemWritableFile final : public WritableFile {
 public:
  MemWritableFile(MemFs* fs, std::shared_ptr<MemFs::Inode> inode)
      : fs_(fs), inode_(std::move(inode)) {}

  absl::Status Append(std::string_view data) override {
    if (absl::Status status = fs_->CountCall("append"); !status.ok()) {
      inode_->data.append(data.substr(0, data.size() / 2));  // a short write, then death
      return status;
    }
    inode_->data.append(data);
    return absl::OkStatus();
  }

  absl::Status Sync() override {
    if (absl::Status status = fs_->CountCall("sync"); !status.ok()) return status;
    inode_->durable_data = inode_->data;
    return absl::OkStatus();
  }

  absl::Status Truncate(uint64_t size) override {
    if (absl::Status status = fs_->CountCall("truncate"); !status.ok()) return status;
    if (size < inode_->data.size()) inode_->data.resize(size);
    return absl::OkStatus();
  }

 private:
  MemFs* fs_;
  std::shared_ptr<MemFs::Inode> inode_;
};

class MemFileLock final : public FileLock {
 public:
  MemFileLock(MemFs* fs, std::string path) : fs_(fs), path_(std::move(path)) {}
  ~MemFileLock() override { fs_->locked_.erase(path_); }

 private:
  MemFs* fs_;
  std::string path_;
};

MemFs::MemFs() = default;
MemFs::~MemFs() = default;

void MemFs::FailAfter(uint64_t successful_calls) {
  calls_before_fault_ = successful_calls;
  failed_ = false;
}

void MemFs::ClearFault() {
  calls_before_fault_.reset();
  failed_ = false;
}

absl::Status MemFs::CountCall(std::string_view operation) {
  ++mutating_calls_;
  if (failed_) return absl::InternalError(Concat("injected fault (", operation, ")"));
  if (calls_before_fault_.has_value()) {
    if (*calls_before_fault_ == 0) {
      failed_ = true;
      return absl::InternalError(Concat("injected fault (", operation, ")"));
    }
    --*calls_before_fault_;
  }
  return absl::OkStatus();
}

void MemFs::Crash(CrashMode mode) {
  ClearFault();
  locked_.clear();
  if (mode == CrashMode::kLoseUnsynced) names_ = durable_names_;
  std::set<Inode*> seen;
  for (auto& [path, inode] : names_) {
    if (!seen.insert(inode.get()).second) continue;
    std::string& data = inode->data;
    const std::string& durable = inode->durable_data;
    bool appended_since_sync = data.size() >= durable.size() && data.starts_with(durable);
    switch (mode) {
      case CrashMode::kLoseUnsynced:
        data = durable;
        break;
      case CrashMode::kKeepUnsynced:
        break;
      case CrashMode::kTornUnsynced:
        if (appended_since_sync) {
          data.resize(durable.size() + (data.size() - durable.size()) / 2);
        } else {
          data = durable;
        }
        break;
    }
    inode->durable_data = data;
  }
  durable_names_ = names_;
}

std::optional<std::string> MemFs::Contents(const std::string& path) const {
  auto it = names_.find(path);
  if (it == names_.end()) return std::nullopt;
  return it->second->data;
}

void MemFs::SetContents(const std::string& path, std::string contents) {
  auto it = names_.find(path);
  if (it == names_.end()) {
    auto inode = std::make_shared<Inode>();
    it = names_.emplace(path, inode).first;
    durable_names_[path] = inode;
  }
  it->second->data = contents;
  it->second->durable_data = std::move(contents);
}

absl::StatusOr<std::string> MemFs::ReadFile(const std::string& path) {
  auto it = names_.find(path);
  if (it == names_.end()) return absl::NotFoundError(Concat("open ", path, ": no such file"));
  return it->second->data;
}

absl::StatusOr<std::unique_ptr<WritableFile>> MemFs::OpenForAppend(const std::string& path,
                                                                   bool truncate) {
  if (!dirs_.contains(DirOf(path))) {
    return absl::NotFoundError(Concat("open ", path, ": no such directory"));
  }
  auto it = names_.find(path);
  if (!truncate) {
    if (it == names_.end()) return absl::NotFoundError(Concat("open ", path, ": no such file"));
    return std::unique_ptr<WritableFile>(new MemWritableFile(this, it->second));
  }
  if (absl::Status status = CountCall("create"); !status.ok()) return status;
  if (it == names_.end()) {
    it = names_.emplace(path, std::make_shared<Inode>()).first;
  } else {
    it->second->data.clear();
  }
  return std::unique_ptr<WritableFile>(new MemWritableFile(this, it->second));
}

absl::Status MemFs::Rename(const std::string& from, const std::string& to) {
  if (absl::Status status = CountCall("rename"); !status.ok()) return status;
  auto it = names_.find(from);
  if (it == names_.end()) return absl::NotFoundError(Concat("rename ", from, ": no such file"));
  std::shared_ptr<Inode> inode = it->second;
  names_.erase(it);
  names_[to] = std::move(inode);
  return absl::OkStatus();
}

absl::Status MemFs::Remove(const std::string& path) {
  if (absl::Status status = CountCall("remove"); !status.ok()) return status;
  if (names_.erase(path) == 0)
    return absl::NotFoundError(Concat("unlink ", path, ": no such file"));
  return absl::OkStatus();
}

absl::Status MemFs::SyncDir(const std::string& dir) {
  if (absl::Status status = CountCall("syncdir"); !status.ok()) return status;
  std::erase_if(durable_names_, [&](const auto& pair) { return DirOf(pair.first) == dir; });
  for (const auto& [path, inode] : names_) {
    if (DirOf(path) == dir) durable_names_[path] = inode;
  }
  return absl::OkStatus();
}

absl::Status MemFs::CreateDir(const std::string& dir) {
  dirs_.insert(dir);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FileLock>> MemFs::Lock(const std::string& path) {
  if (!locked_.insert(path).second) {
    return absl::FailedPreconditionError(Concat(path, " is locked"));
  }
  return std::unique_ptr<FileLock>(new MemFileLock(this, path));
}

}  // namespace stanzad::storage
