#include "cluster/raft/log.h"

#include <algorithm>

#include "core/base/check.h"

namespace stanzad::raft {

void RaftLog::Restore(Index snapshot_index, Term snapshot_term, std::vector<Entry> entries,
                      Index commit) {
  snapshot_index_ = snapshot_index;
  snapshot_term_ = snapshot_term;
  entries_.clear();
  data_bytes_ = 0;
  for (Entry& entry : entries) {
    CHECK_EQ(entry.index, last_index() + 1);
    data_bytes_ += entry.data.size();
    entries_.push_back(std::move(entry));
  }
  CHECK_GE(commit, snapshot_index);
  CHECK_LE(commit, last_index());
  commit_ = commit;
  applied_ = snapshot_index;
  unstable_from_ = last_index() + 1;
  pending_snapshot_ = false;
}

Term RaftLog::last_term() const { return entries_.empty() ? snapshot_term_ : entries_.back().term; }

std::optional<Term> RaftLog::TermAt(Index index) const {
  if (index == snapshot_index_) return snapshot_term_;
  if (index < snapshot_index_ || index > last_index()) return std::nullopt;
  return entries_[index - snapshot_index_ - 1].term;
}

bool RaftLog::MatchTerm(Index index, Term term) const {
  std::optional<Term> t = TermAt(index);
  return t.has_value() && *t == term;
}

const Entry& RaftLog::At(Index index) const {
  CHECK(index > snapshot_index_ && index <= last_index());
  return entries_[index - snapshot_index_ - 1];
}

bool RaftLog::IsUpToDate(Index candidate_last_index, Term candidate_last_term) const {
  Term our_last_term = last_term();
  return candidate_last_term > our_last_term ||
         (candidate_last_term == our_last_term && candidate_last_index >= last_index());
}

void RaftLog::CommitTo(Index index) {
  if (index <= commit_) return;
  CHECK_LE(index, last_index());
  commit_ = index;
}

void RaftLog::SetApplied(Index index) {
  CHECK_LE(index, commit_);
  CHECK_GE(index, applied_);
  applied_ = index;
}

void RaftLog::MarkStable(Index index) {
  if (index + 1 > unstable_from_) unstable_from_ = index + 1;
}

void RaftLog::AppendOwn(Entry entry) {
  CHECK_EQ(entry.index, last_index() + 1);
  CHECK_GE(entry.term, last_term());
  data_bytes_ += entry.data.size();
  entries_.push_back(std::move(entry));
}

void RaftLog::TruncateFrom(Index index) {
  CHECK_GT(index, commit_);
  while (!entries_.empty() && entries_.back().index >= index) {
    data_bytes_ -= entries_.back().data.size();
    entries_.pop_back();
  }
  unstable_from_ = std::min(unstable_from_, index);
}

RaftLog::AppendResult RaftLog::MaybeAppend(Index prev_index, Term prev_term, Index leader_commit,
                                           const std::vector<Entry>& entries, Index* last_new,
                                           Index* truncated_from) {
  *truncated_from = 0;
  if (!MatchTerm(prev_index, prev_term)) return AppendResult::kMismatch;
  // The first entry that is new or disagrees with ours.
  size_t first_new = 0;
  while (first_new < entries.size()) {
    const Entry& entry = entries[first_new];
    if (entry.index > last_index()) break;
    if (!MatchTerm(entry.index, entry.term)) {
      // Entries at or below commit are on a majority and can never disagree with a
      // leader's; a leader that says otherwise is broken, and we refuse its message.
      if (entry.index <= commit_) return AppendResult::kConflictsWithCommitted;
      *truncated_from = entry.index;
      TruncateFrom(entry.index);
      break;
    }
    ++first_new;
  }
  for (size_t i = first_new; i < entries.size(); ++i) {
    data_bytes_ += entries[i].data.size();
    entries_.push_back(entries[i]);
  }
  *last_new = prev_index + entries.size();
  CommitTo(std::min(leader_commit, *last_new));
  return AppendResult::kAppended;
}

std::pair<Index, Term> RaftLog::FindConflictByTerm(Index index, Term term) const {
  index = std::min(index, last_index());
  while (index > 0) {
    std::optional<Term> our_term = TermAt(index);
    if (!our_term.has_value()) return {index, 0};
    if (*our_term <= term) return {index, *our_term};
    --index;
  }
  return {0, 0};
}

std::vector<Entry> RaftLog::Slice(Index lo, Index hi, size_t max_entries, size_t max_bytes) const {
  CHECK(lo >= first_index() && lo <= hi && hi <= last_index() + 1);
  std::vector<Entry> out;
  size_t bytes = 0;
  for (Index i = lo; i < hi && out.size() < max_entries; ++i) {
    const Entry& entry = entries_[i - snapshot_index_ - 1];
    if (!out.empty() && bytes + entry.data.size() > max_bytes) break;
    bytes += entry.data.size();
    out.push_back(entry);
  }
  return out;
}

void RaftLog::RestoreSnapshot(Index index, Term term) {
  CHECK_GT(index, commit_);
  entries_.clear();
  data_bytes_ = 0;
  snapshot_index_ = index;
  snapshot_term_ = term;
  commit_ = index;
  applied_ = index;
  unstable_from_ = index + 1;
  pending_snapshot_ = true;
}

void RaftLog::Compact(Index index) {
  CHECK_GT(index, snapshot_index_);
  CHECK_LE(index, applied_);
  CHECK_LT(index, unstable_from_);
  std::optional<Term> term = TermAt(index);
  CHECK(term.has_value());
  while (!entries_.empty() && entries_.front().index <= index) {
    data_bytes_ -= entries_.front().data.size();
    entries_.pop_front();
  }
  snapshot_index_ = index;
  snapshot_term_ = *term;
}

}  // namespace stanzad::raft
