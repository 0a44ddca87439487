// RaftLog: one node's replicated log in memory, with its snapshot offset and the three
// cursors Raft needs (committed, handed out for applying, persisted).
//
// Layout: a snapshot covers indexes 1..snapshot_index(); entries_ holds
// snapshot_index()+1..last_index(). Entries from unstable_from() on have not yet been handed
// to stable storage; a pending snapshot (received from the leader) has not been either.
//
// Part of the Raft state machine: no I/O, single-threaded, owned by one Raft.
#ifndef STANZAD_CLUSTER_RAFT_LOG_H_
#define STANZAD_CLUSTER_RAFT_LOG_H_

#include <cstddef>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "cluster/raft/types.h"

namespace stanzad::raft {

class RaftLog {
 public:
  // An empty log (no snapshot, no entries).
  RaftLog() = default;

  // Restores persisted state. REQUIRES: entries are contiguous from snapshot_index + 1 with
  // non-decreasing terms (Raft::Create validates this before calling).
  void Restore(Index snapshot_index, Term snapshot_term, std::vector<Entry> entries, Index commit);

  Index snapshot_index() const { return snapshot_index_; }
  Term snapshot_term() const { return snapshot_term_; }
  Index first_index() const { return snapshot_index_ + 1; }
  Index last_index() const { return snapshot_index_ + entries_.size(); }
  Term last_term() const;

  // The term of the entry at `index`, or nullopt when it is compacted or beyond the log.
  // The snapshot's own index has the snapshot's term.
  std::optional<Term> TermAt(Index index) const;
  bool MatchTerm(Index index, Term term) const;

  // REQUIRES: first_index() <= index <= last_index().
  const Entry& At(Index index) const;

  // Raft's "at least as up to date" rule for a candidate's last entry.
  bool IsUpToDate(Index last_index, Term last_term) const;

  Index commit() const { return commit_; }
  // Raises the commit index. REQUIRES: index <= last_index().
  void CommitTo(Index index);

  // The last index handed out for applying (through committed entries or a snapshot).
  Index applied() const { return applied_; }
  void SetApplied(Index index);

  // Entries at or after this index are not yet handed to stable storage.
  Index unstable_from() const { return unstable_from_; }
  void MarkStable(Index index);  // entries through `index` have been persisted
  Index stable_last_index() const { return unstable_from_ - 1; }

  // Appends entries made by the leader itself. REQUIRES: they continue the log.
  void AppendOwn(Entry entry);

  enum class AppendResult { kAppended, kMismatch, kConflictsWithCommitted };
  // Handles entries from a leader that follow (prev_index, prev_term): on a match, appends
  // those not already present (truncating a conflicting suffix) and commits up to
  // min(leader_commit, prev_index + entries.size()); *last_new is that last index.
  // REQUIRES: prev_index >= commit(); entries carry consecutive indexes from prev_index + 1.
  // Sets *truncated_from to the first index removed by truncation (0 when none).
  AppendResult MaybeAppend(Index prev_index, Term prev_term, Index leader_commit,
                           const std::vector<Entry>& entries, Index* last_new,
                           Index* truncated_from);

  // For fast backtracking: the largest index <= `index` whose term is <= `term`, with that
  // term; (index, 0) when the search runs into the compacted part.
  std::pair<Index, Term> FindConflictByTerm(Index index, Term term) const;

  // Entries [lo, hi), at most max_entries and about max_bytes of data (at least one entry
  // when lo < hi). REQUIRES: first_index() <= lo <= hi <= last_index() + 1.
  std::vector<Entry> Slice(Index lo, Index hi, size_t max_entries, size_t max_bytes) const;

  // Replaces the whole log with a snapshot received from the leader (pending until
  // persisted). Commit and applied move to the snapshot's index.
  void RestoreSnapshot(Index index, Term term);
  bool has_pending_snapshot() const { return pending_snapshot_; }
  void ClearPendingSnapshot() { pending_snapshot_ = false; }

  // Discards entries through `index` after the caller took a snapshot there.
  // REQUIRES: snapshot_index() < index <= applied(), and index is stable.
  void Compact(Index index);

  // Total data bytes of the entries in memory (for limits and status).
  size_t data_bytes() const { return data_bytes_; }

 private:
  void TruncateFrom(Index index);

  Index snapshot_index_ = 0;
  Term snapshot_term_ = 0;
  std::deque<Entry> entries_;
  Index commit_ = 0;
  Index applied_ = 0;
  Index unstable_from_ = 1;
  bool pending_snapshot_ = false;
  size_t data_bytes_ = 0;
};

}  // namespace stanzad::raft

#endif  // STANZAD_CLUSTER_RAFT_LOG_H_
