// WriteFileAtomically: replaces a file so that a crash at any instant leaves the old content
// or the new, never a mix (DESIGN.md §7): write "<name>.tmp", fsync it, rename it over
// "<name>", fsync the directory. When it returns OK the new content is durable.
//
// A crash before the rename may leave "<name>.tmp" behind; the next call overwrites it, and
// RemoveTemporaryFile() lets an owner tidy up at start.
#ifndef STANZAD_CLUSTER_STORAGE_ATOMIC_FILE_H_
#define STANZAD_CLUSTER_STORAGE_ATOMIC_FILE_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "cluster/storage/fs.h"

namespace stanzad::storage {

absl::Status WriteFileAtomically(Fs& fs, const std::string& dir, std::string_view name,
                                 std::string_view contents);

// Removes "<dir>/<name>.tmp" if it exists.
absl::Status RemoveTemporaryFile(Fs& fs, const std::string& dir, std::string_view name);

}  // namespace stanzad::storage

#endif  // STANZAD_CLUSTER_STORAGE_ATOMIC_FILE_H_
