// MonotonicMs: milliseconds of CLOCK_MONOTONIC (steady, never stepped back), the one
// clock the shards' ticks, the control loop's turns and the engine's timers read.
//
// Any thread.
#ifndef STANZAD_CORE_BASE_CLOCK_H_
#define STANZAD_CORE_BASE_CLOCK_H_

#include <chrono>
#include <cstdint>

namespace stanzad {

inline uint64_t MonotonicMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace stanzad

#endif  // STANZAD_CORE_BASE_CLOCK_H_
