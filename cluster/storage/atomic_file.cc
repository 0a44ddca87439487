#include "cluster/storage/atomic_file.h"

#include <memory>

#include "core/base/concat.h"

namespace stanzad::storage {

absl::Status WriteFileAtomically(Fs& fs, const std::string& dir, std::string_view name,
                                 std::string_view contents) {
  std::string path = JoinPath(dir, name);
  std::string temporary = Concat(path, ".tmp");
  absl::StatusOr<std::unique_ptr<WritableFile>> file = fs.OpenForAppend(temporary, true);
  if (!file.ok()) return file.status();
  if (absl::Status status = (*file)->Append(contents); !status.ok()) return status;
  if (absl::Status status = (*file)->Sync(); !status.ok()) return status;
  file->reset();
  if (absl::Status status = fs.Rename(temporary, path); !status.ok()) return status;
  return fs.SyncDir(dir);
}

absl::Status RemoveTemporaryFile(Fs& fs, const std::string& dir, std::string_view name) {
  absl::Status status = fs.Remove(Concat(JoinPath(dir, name), ".tmp"));
  if (absl::IsNotFound(status)) return absl::OkStatus();
  return status;
}

}  // namespace stanzad::storage
