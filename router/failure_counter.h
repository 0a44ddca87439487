// FailureCounter: failed logins or handshakes per key (an IP address, an
// account) within a window, in a table of bounded size. RouterShard keeps one
// per kind of key and throttles the keys it says are blocked.
//
// A key is blocked once `max` failures were recorded for it within one window
// (which starts at its first failure after the previous one ended), until that
// window passes. Time is what the caller says it is (`now_ms`, monotonic).
//
// Bounded memory: at most `entries_max` keys. Recording a new key when the
// table is full forgets one other key, in this order:
//   1. a blocked key whose window has passed (it blocks nothing any more);
//   2. the least recently failing key that is not blocked;
//   3. the least recently failing blocked key.
// So the throttle keeps working for the keys still in the table, and a blocked
// offender is forgotten only once the table holds `entries_max` other blocked
// keys: an attacker must fail `max` times from each of `entries_max` addresses
// within one window to flush it, not once from each. A key that is not yet
// blocked can be pushed out by `entries_max` single failures of other keys; it
// then starts counting again (the throttle slows it, it does not stop it).
//
// Thread safety: none; each shard owns its own.
#ifndef STANZAD_ROUTER_FAILURE_COUNTER_H_
#define STANZAD_ROUTER_FAILURE_COUNTER_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"

namespace stanzad::router {

class FailureCounter {
 public:
  // REQUIRES: max >= 1, entries_max >= 1.
  FailureCounter(uint32_t max, uint64_t window_ms, size_t entries_max);
  FailureCounter(const FailureCounter&) = delete;
  FailureCounter& operator=(const FailureCounter&) = delete;

  // Has `key` reached `max` failures in its current window? Forgets the key if
  // its window has passed.
  bool Blocked(std::string_view key, uint64_t now_ms);
  // Counts one failure of `key`; true when this one reaches `max` (the key is
  // blocked from now on, and the caller may say so once).
  bool Record(std::string_view key, uint64_t now_ms);

  size_t size() const { return index_.size(); }
  // Keys forgotten to make room for new ones since construction.
  uint64_t evictions() const { return evictions_; }

 private:
  struct Entry {
    std::string key;
    uint32_t count = 0;
    uint64_t window_start_ms = 0;
    bool blocked = false;  // count reached max_ (in which list it is)
  };
  using List = std::list<Entry>;  // most recently failing first

  void Erase(List::iterator entry);
  void EvictOne(uint64_t now_ms);
  bool Expired(const Entry& entry, uint64_t now_ms) const {
    return now_ms - entry.window_start_ms >= window_ms_;
  }

  const uint32_t max_;
  const uint64_t window_ms_;
  const size_t entries_max_;
  List open_;     // below max_ failures
  List blocked_;  // at max_ failures (some may have an expired window)
  // Views of the entries' own keys: list nodes never move.
  absl::flat_hash_map<std::string_view, List::iterator> index_;
  uint64_t evictions_ = 0;
};

}  // namespace stanzad::router

#endif  // STANZAD_ROUTER_FAILURE_COUNTER_H_
