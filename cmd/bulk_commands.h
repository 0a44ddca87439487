// stanzactl's bulk commands: call bridges and users imported from a file and exported to
// standard output, and the lists, moved in chunks and pages over the admin socket (the
// bulk forms in admin/node_commands.h) so that 100,000 bridges or 1,000,000 users cost the
// daemon's control thread a bounded time per request.
//
//   callbridge import FILE [--force]   lines "NAME SECRET", or the JSON lines of
//                                      `callbridge export --json` ({"name":…,"secret":…})
//   callbridge export [--json]         the same lines, in name order
//   user import FILE [--force] [--iterations=N]
//                                      XEP-0227 (Prosody, ejabberd: SCRAM credentials kept
//                                      as they are, plain passwords hashed here), or lines
//                                      "NAME PASSWORD" (hashed here, on every core)
//   user export                        XEP-0227 of the node's domain
//   callbridge list, user list         as before, a page at a time
//
// Imports: blank lines and lines starting with '#' are skipped (line files); every line is
// checked here first, and each chunk (kChunkLines lines or kChunkBytes, one Raft entry in a
// cluster) is applied whole or not at all. A line refused — here or by the daemon — stops
// the import with "FILE:LINE: WHY"; every line before it is imported (the daemon's
// refusal of a chunk is followed by the chunk's lines before the refused one), nothing
// after it. A chunk refused for want of a leader is sent again (BulkIo::retry_wait_ms).
// Importing is idempotent (but for users hashed here from passwords: fresh salts each run,
// so a rerun needs --force) (a name that exists with the same secret or
// credentials is left as it is), so rerunning a stopped import after fixing the line is
// safe. Progress goes to standard error (a bar on a terminal, a line every few seconds
// otherwise); the summary to standard output.
//
// Thread safety: each call runs on the caller's thread (user import hashes on helper
// threads it joins before returning).
#ifndef STANZAD_CMD_BULK_COMMANDS_H_
#define STANZAD_CMD_BULK_COMMANDS_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "admin/admin_socket.h"
#include "core/config/config.h"

namespace stanzad {

// Sends one admin request to the daemon (admin::SendAdminRequest, or a test's stand-in).
using AdminSend =
    std::function<absl::StatusOr<admin::AdminResponse>(const admin::AdminRequest& request)>;

struct BulkIo {
  AdminSend send;
  std::FILE* out = stdout;  // exports, lists and the summary
  std::FILE* err = stderr;  // errors and progress
  bool progress = true;     // progress lines on `err`
  // A chunk the cluster could not take for want of a leader ("no leader now", "no answer
  // from … within 10 s": an election, a stalled leader) is sent again after this long,
  // doubling, kChunkRetries times at most (an import is idempotent, so a chunk that did
  // go in before the answer was lost changes nothing the second time).
  uint64_t retry_wait_ms = 500;
};

inline constexpr int kChunkRetries = 6;  // 0.5 + 1 + 2 + 4 + 8 + 16 s

// One import chunk: at most this many request bytes (within the admin socket's 1 MiB
// limit) and lines, so that the daemon answers each within a fraction of a second.
inline constexpr size_t kChunkBytes = 900 << 10;
inline constexpr size_t kChunkLines = 1'000;
// Users hashed from plain passwords per chunk (so progress moves every few seconds).
inline constexpr size_t kHashedUsersPerChunk = 2'000;
// Names per page of an export or list.
inline constexpr size_t kPageItems = 5'000;

// Each returns stanzactl's exit status: 0 done, 1 a line or the daemon refused (the
// message says which and why), 2 usage, 3 the daemon could not be reached.
int ImportCallbridges(const std::string& path, bool force, BulkIo& io);
int ImportUsers(const std::string& path, bool force, uint32_t iterations, BulkIo& io);
int ExportCallbridges(bool json, BulkIo& io);
int ExportUsers(BulkIo& io);
// `callbridge list` (what == "callbridge") and `user list` (what == "user").
int ListPaged(std::string_view what, bool json, BulkIo& io);

// SCRAM-SHA-1 and -256 credentials for `password`, with fresh 16-byte salts from the
// kernel's CSPRNG (RFC 5802 leaves the size open; 128 bits rules out precomputation):
// what `user add` and `user import` send instead of the password. Thread-safe.
absl::StatusOr<config::UserCredentials> CredentialsFromPassword(std::string_view password,
                                                                uint32_t iterations);

// One line of a bridges file: "NAME SECRET" or {"name":"NAME","secret":"SECRET"} (other
// string members ignored); surrounding whitespace ignored. Exposed for tests.
absl::StatusOr<std::pair<std::string, std::string>> ParseCallbridgeLine(std::string_view line);

}  // namespace stanzad

#endif  // STANZAD_CMD_BULK_COMMANDS_H_
