// What the simulation tests share about their seeds. Each reads, with EnvNumber:
//   STANZAD_SIM_SEEDS=N        how many (the test's default otherwise)
//   STANZAD_SIM_FIRST_SEED=S   where the range starts (the test's default otherwise)
//   STANZAD_SIM_TRACE_LINES=N  the trace's length in a replay
// and SeedsToRun applies STANZAD_SIM_SEED=S: that one seed only, replayed with a trace.
#ifndef STANZAD_TESTS_SIMULATION_SEEDS_H_
#define STANZAD_TESTS_SIMULATION_SEEDS_H_

#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace stanzad::sim {

inline uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  uint64_t number = 0;
  if (value == nullptr || !absl::SimpleAtoi(value, &number)) return fallback;
  return number;
}

struct SeedRange {
  uint64_t first = 1;
  uint64_t count = 0;
  bool replaying = false;  // one seed, traced
};

// [first, first + count), or the one seed STANZAD_SIM_SEED names.
inline SeedRange SeedsToRun(uint64_t first, uint64_t count) {
  if (std::getenv("STANZAD_SIM_SEED") == nullptr) return {first, count, false};
  return {EnvNumber("STANZAD_SIM_SEED", first), 1, true};
}

// The command that replays `seed` of `test` (Suite.Name) in `binary`.
inline std::string ReplayCommand(uint64_t seed, const char* binary, const char* test) {
  return absl::StrCat("STANZAD_SIM_SEED=", seed, " ./", binary, " --gtest_filter=", test);
}

}  // namespace stanzad::sim

#endif  // STANZAD_TESTS_SIMULATION_SEEDS_H_
