// Progress: what a leader knows about one follower's log, and the flow control that decides
// when to send it more (etcd raft's tracker, in small).
//
//   kProbe      the leader does not know where the follower's log matches; it sends one
//               append at a time and waits for the answer (or the next heartbeat answer).
//   kReplicate  the follower matches up to `match`; appends are pipelined, at most
//               `max_inflight` (and `max_inflight_bytes` of entries) unacknowledged.
//   kSnapshot   the entries the follower needs are compacted; a snapshot is on its way.
#ifndef STANZAD_CLUSTER_RAFT_PROGRESS_H_
#define STANZAD_CLUSTER_RAFT_PROGRESS_H_

#include <algorithm>
#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/raft/types.h"
#include "core/base/check.h"

namespace stanzad::raft {

// A bounded FIFO of the unacknowledged appends (the last index of each, and its bytes): full
// at `capacity` appends or once `bytes_max` bytes are unacknowledged (0: no byte bound), so
// that what waits for one follower stays below what its link may queue.
class Inflights {
 public:
  explicit Inflights(size_t capacity = 1, size_t bytes_max = 0)
      : ring_(std::max<size_t>(capacity, 1)), bytes_max_(bytes_max) {}

  bool full() const { return count_ == ring_.size() || (bytes_max_ > 0 && bytes_ >= bytes_max_); }
  size_t count() const { return count_; }
  size_t bytes() const { return bytes_; }

  // REQUIRES: !full(), and `last_index` is larger than any index added before.
  void Add(Index last_index, size_t bytes = 0) {
    CHECK(!full());
    ring_[(start_ + count_) % ring_.size()] = {last_index, bytes};
    ++count_;
    bytes_ += bytes;
  }
  // Frees every append whose last index is <= `index` (the follower acknowledged it).
  void FreeUpTo(Index index) {
    while (count_ > 0 && ring_[start_].first <= index) FreeFirst();
  }
  void FreeFirst() {
    if (count_ == 0) return;
    bytes_ -= ring_[start_].second;
    start_ = (start_ + 1) % ring_.size();
    --count_;
  }
  void Reset() {
    start_ = 0;
    count_ = 0;
    bytes_ = 0;
  }

 private:
  std::vector<std::pair<Index, size_t>> ring_;
  size_t bytes_max_;
  size_t start_ = 0;
  size_t count_ = 0;
  size_t bytes_ = 0;
};

struct Progress {
  enum class State { kProbe, kReplicate, kSnapshot };

  explicit Progress(size_t max_inflight, size_t max_inflight_bytes = 0)
      : inflights(max_inflight, max_inflight_bytes) {}

  Index match = 0;  // highest index known to be in the follower's log
  Index next = 1;   // next index to send
  State state = State::kProbe;
  bool probe_sent = false;      // kProbe: an append is unanswered; send no other
  Index pending_snapshot = 0;   // kSnapshot: index of the snapshot on its way
  int snapshot_heartbeats = 0;  // kSnapshot: heartbeats sent since, to retry a lost one
  bool recent_active = false;   // heard from since the last CheckQuorum round
  Inflights inflights;

  void BecomeProbe() {
    // After a snapshot the follower is at least at the snapshot's index if it arrived.
    if (state == State::kSnapshot) {
      next = std::max(match + 1, pending_snapshot + 1);
    } else {
      next = match + 1;
    }
    ResetState(State::kProbe);
  }
  void BecomeReplicate() {
    next = match + 1;
    ResetState(State::kReplicate);
  }
  void BecomeSnapshot(Index snapshot_index) {
    ResetState(State::kSnapshot);
    pending_snapshot = snapshot_index;
  }

  // An acknowledgement that the follower matches through `index`. Returns whether it
  // told the leader something new.
  bool MaybeUpdate(Index index) {
    bool updated = false;
    if (match < index) {
      match = index;
      updated = true;
      probe_sent = false;
    }
    next = std::max(next, index + 1);
    return updated;
  }

  // A rejection of the append that followed `rejected`; `match_hint` is the leader's best
  // guess of the last matching index. Returns false when the rejection is stale.
  bool MaybeDecreaseTo(Index rejected, Index match_hint) {
    if (state == State::kReplicate) {
      if (rejected <= match) return false;
      next = match + 1;
      return true;
    }
    if (next == 0 || next - 1 != rejected) return false;
    next = std::max(std::min(rejected, match_hint + 1), match + 1);
    probe_sent = false;
    return true;
  }

  bool IsPaused() const {
    switch (state) {
      case State::kProbe:
        return probe_sent;
      case State::kReplicate:
        return inflights.full();
      case State::kSnapshot:
        return true;
    }
    return true;
  }

  // Bookkeeping after sending an append whose last entry is `last_index` (== next - 1
  // for an empty probe), of `bytes` bytes of entry data.
  void SentEntries(Index last_index, size_t entry_count, size_t bytes = 0) {
    if (state == State::kReplicate) {
      if (entry_count > 0) {
        next = last_index + 1;
        inflights.Add(last_index, bytes);
      }
    } else if (state == State::kProbe) {
      probe_sent = true;
    }
  }

 private:
  void ResetState(State new_state) {
    state = new_state;
    probe_sent = false;
    pending_snapshot = 0;
    snapshot_heartbeats = 0;
    inflights.Reset();
  }
};

inline std::string_view ProgressStateName(Progress::State state) {
  switch (state) {
    case Progress::State::kProbe:
      return "probe";
    case Progress::State::kReplicate:
      return "replicate";
    case Progress::State::kSnapshot:
      return "snapshot";
  }
  return "?";
}

}  // namespace stanzad::raft

#endif  // STANZAD_CLUSTER_RAFT_PROGRESS_H_
