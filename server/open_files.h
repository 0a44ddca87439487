// The open files limit (RLIMIT_NOFILE) the node needs for --connections_max. A process
// starts with the soft limit its parent gave it (1,024 in a login shell, whatever
// LimitNOFILE= says under systemd), far below 100,000 connections; past it accept() fails
// with EMFILE and new connections wait in the kernel's backlog until they time out. So
// the node raises its soft limit at start, as far as the hard limit allows, and says
// plainly when even that is too low. It never lowers a limit, and never raises the hard
// one (that is the operator's: LimitNOFILE=, ulimit -Hn).
//
// Thread: main, before the engine starts.
#ifndef STANZAD_SERVER_OPEN_FILES_H_
#define STANZAD_SERVER_OPEN_FILES_H_

#include <cstdint>

#include "absl/status/status.h"
#include "server/daemon_options.h"

namespace stanzad::server {

// The open files limit the node needs: what it holds as plain descriptors (per shard its
// ring, eventfd and listeners; the cluster's links, unauthenticated ones included; the
// admin socket, the metrics server, state files), and beside them one per connection of
// --connections_max. With direct descriptors the connections are not in the process's
// table, but each shard's table may not outgrow the limit: one shard's share (and a
// spare) is what they need.
uint64_t OpenFilesNeeded(const DaemonOptions& options);

// What the node would need if every connection held a plain descriptor: what it asks for
// even with direct descriptors (raising a soft limit costs nothing), so that a kernel
// without them (the shards fall back to plain descriptors) finds the limit as high as the
// hard one allows.
uint64_t OpenFilesWanted(const DaemonOptions& options);

// The soft limit to set: `needed`, within [current soft, hard] (never lowered, never
// above the hard limit; a hard limit of RLIM_INFINITY is no bound).
uint64_t SoftLimitFor(uint64_t needed, uint64_t soft, uint64_t hard);

// Raises this process's soft RLIMIT_NOFILE towards max(`needed`, `wanted`), as far as the
// hard limit allows. OK when the limit is now at least `needed`; else FAILED_PRECONDITION naming
// the limit, what is needed and how to raise it (the limit is raised as far as it goes all the
// same). `*limit` (if not null) gets the soft limit in force afterwards.
absl::Status RaiseOpenFilesLimit(uint64_t needed, uint64_t wanted, uint64_t* limit);

}  // namespace stanzad::server

#endif  // STANZAD_SERVER_OPEN_FILES_H_
