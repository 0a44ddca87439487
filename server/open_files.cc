#include "server/open_files.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "core/base/concat.h"
#include "net/engine.h"

namespace stanzad::server {

namespace {

uint64_t Shards(const DaemonOptions& options) {
  return static_cast<uint64_t>(std::max(1, options.shards));
}

// What the node holds as plain descriptors besides its connections.
uint64_t OwnFiles(const DaemonOptions& options) {
  // Per shard: the ring, its eventfd, a listener per port and address, data links.
  constexpr uint64_t kPerShard = 32;
  // Admin connections, the metrics server's, state files, stdio, c-ares.
  constexpr uint64_t kControl = 256;
  return Shards(options) * kPerShard + kControl + options.cluster_links.unauthenticated_links_max;
}

}  // namespace

uint64_t OpenFilesNeeded(const DaemonOptions& options) {
  if (options.direct_descriptors) {
    return std::max<uint64_t>(OwnFiles(options),
                              options.connections_max_per_shard + net::kDirectSpare);
  }
  return OpenFilesWanted(options);
}

uint64_t OpenFilesWanted(const DaemonOptions& options) {
  return options.connections_max_per_shard * Shards(options) + OwnFiles(options);
}

uint64_t SoftLimitFor(uint64_t needed, uint64_t soft, uint64_t hard) {
  const uint64_t ceiling = hard == RLIM_INFINITY ? needed : std::min(needed, hard);
  return std::max(soft, ceiling);
}

absl::Status RaiseOpenFilesLimit(uint64_t needed, uint64_t wanted, uint64_t* limit) {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) != 0) {
    return absl::ErrnoToStatus(errno, "cannot read the open files limit (RLIMIT_NOFILE)");
  }
  const uint64_t soft = SoftLimitFor(std::max(needed, wanted), files.rlim_cur, files.rlim_max);
  if (soft > files.rlim_cur) {
    rlimit raised = files;
    raised.rlim_cur = soft;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) files = raised;
  }
  if (limit != nullptr) *limit = files.rlim_cur;
  if (files.rlim_cur >= needed) return absl::OkStatus();
  return absl::FailedPreconditionError(Concat(
      "the open files limit is ", std::to_string(files.rlim_cur), " (hard limit ",
      files.rlim_max == RLIM_INFINITY ? std::string("unlimited") : std::to_string(files.rlim_max),
      "), but the node needs ", std::to_string(needed),
      " (a thread's share of --connections_max with --direct_descriptors, all of it "
      "without, and the node's own files)",
      ": connections past the limit wait unaccepted until they time out. Raise the hard limit "
      "(LimitNOFILE= in the systemd unit, ulimit -Hn as root) or lower --connections_max"));
}

}  // namespace stanzad::server
