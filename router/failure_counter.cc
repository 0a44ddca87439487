#include "router/failure_counter.h"

#include "core/base/check.h"

namespace stanzad::router {

FailureCounter::FailureCounter(uint32_t max, uint64_t window_ms, size_t entries_max)
    : max_(max), window_ms_(window_ms), entries_max_(entries_max) {
  CHECK(max_ >= 1);
  CHECK(entries_max_ >= 1);
}

bool FailureCounter::Blocked(std::string_view key, uint64_t now_ms) {
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  if (Expired(*it->second, now_ms)) {
    Erase(it->second);
    return false;
  }
  return it->second->blocked;
}

bool FailureCounter::Record(std::string_view key, uint64_t now_ms) {
  List::iterator entry;
  if (auto it = index_.find(key); it != index_.end()) {
    entry = it->second;
  } else {
    if (index_.size() >= entries_max_) EvictOne(now_ms);
    open_.push_front(Entry{std::string(key), 0, now_ms, false});
    entry = open_.begin();
    index_.emplace(std::string_view(entry->key), entry);
  }
  List& was_in = entry->blocked ? blocked_ : open_;
  if (Expired(*entry, now_ms)) entry->count = 0;
  if (entry->count == 0) entry->window_start_ms = now_ms;
  ++entry->count;
  entry->blocked = entry->count >= max_;
  // Most recently failing first, in the list of its state. Nodes are spliced,
  // never copied: the index's views of their keys stay valid.
  List& now_in = entry->blocked ? blocked_ : open_;
  now_in.splice(now_in.begin(), was_in, entry);
  return entry->count == max_;
}

void FailureCounter::Erase(List::iterator entry) {
  index_.erase(std::string_view(entry->key));
  (entry->blocked ? blocked_ : open_).erase(entry);
}

void FailureCounter::EvictOne(uint64_t now_ms) {
  ++evictions_;
  if (!blocked_.empty() && Expired(blocked_.back(), now_ms)) {
    Erase(std::prev(blocked_.end()));
  } else if (!open_.empty()) {
    Erase(std::prev(open_.end()));
  } else {
    Erase(std::prev(blocked_.end()));
  }
}

}  // namespace stanzad::router
