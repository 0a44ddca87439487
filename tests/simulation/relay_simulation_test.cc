// Randomized, deterministic simulation of the relay (see relay_simulator.h).
//
//   relay_simulation_test                           2,000 seeds (a few seconds)
//   STANZAD_SIM_SEEDS=100000 relay_simulation_test   more seeds (nightly)
//   STANZAD_SIM_SEED=1234 relay_simulation_test      replays one seed, with a trace of every
//                                                    frame and event (STANZAD_SIM_TRACE_LINES)
//   STANZAD_SIM_FIRST_SEED=5000                      starts the seed range elsewhere
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/simulation/relay_simulator.h"
#include "tests/simulation/seeds.h"

namespace stanzad::cluster::relay::sim {
namespace {

using stanzad::sim::EnvNumber;

struct SeedRun {
  uint64_t seeds = 0;
  int failures = 0;
  RelaySimStats stats;
  // Failing seeds by kind of violation (the text before the first ':').
  std::map<std::string, std::vector<uint64_t>> failing;
  uint64_t seeds_with_crash = 0;
  uint64_t seeds_with_link_break = 0;
  uint64_t seeds_with_one_way_loss = 0;
  uint64_t seeds_with_isolation = 0;
  uint64_t seeds_with_leader_change = 0;
  uint64_t seeds_with_bridge_move = 0;
  uint64_t direct_seeds = 0;
  uint64_t seeds_with_several_lanes = 0;
};

// Runs seeds [first, first + count); reports the first seeds of each kind of violation with
// the command that replays them and the tail of the trace.
SeedRun RunSeeds(RelaySimOptions options, uint64_t first, uint64_t count, const char* test_name) {
  SeedRun run;
  const stanzad::sim::SeedRange range = stanzad::sim::SeedsToRun(first, count);
  const bool replaying = range.replaying;
  first = range.first;
  count = range.count;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    options.seed = seed;
    options.trace_lines = replaying ? EnvNumber("STANZAD_SIM_TRACE_LINES", 100000) : 0;
    RelaySimulator simulator(options);
    const absl::Status status = simulator.Run();
    ++run.seeds;
    const RelaySimStats& stats = simulator.stats();
    run.stats.Add(stats);
    run.seeds_with_crash += stats.crashes > 0 ? 1 : 0;
    run.seeds_with_link_break += stats.link_breaks > 0 ? 1 : 0;
    run.seeds_with_one_way_loss += stats.one_way_losses > 0 ? 1 : 0;
    run.seeds_with_isolation += stats.isolations > 0 ? 1 : 0;
    run.seeds_with_leader_change += stats.leader_changes > 0 ? 1 : 0;
    run.seeds_with_bridge_move += stats.bridge_moves > 0 ? 1 : 0;
    run.direct_seeds += simulator.direct() ? 1 : 0;
    run.seeds_with_several_lanes += simulator.several_lanes() ? 1 : 0;
    if (replaying) {
      std::cout << "seed " << seed << " (" << simulator.node_count() << " nodes, "
                << (simulator.direct() ? "direct" : "leader") << " mode): " << status << "\n"
                << stats.ToString() << "\ntrace:\n"
                << simulator.TraceTail() << "\n";
    }
    if (status.ok()) continue;
    ++run.failures;
    const std::string message(status.message());
    std::vector<uint64_t>& seeds = run.failing[message.substr(0, message.find(':'))];
    seeds.push_back(seed);
    if (seeds.size() > 3 || replaying) continue;  // three of a kind are enough to read
    RelaySimOptions traced = options;
    traced.trace_lines = 40;
    RelaySimulator replay(traced);
    const absl::Status replay_status = replay.Run();
    ADD_FAILURE() << "seed " << seed << " (" << simulator.node_count() << " nodes, "
                  << (simulator.direct() ? "direct" : "leader") << " mode): " << message
                  << "\nreplay: "
                  << stanzad::sim::ReplayCommand(seed, "relay_simulation_test", test_name)
                  << "\n(replay " << (replay_status == status ? "reproduced it" : "DIFFERED")
                  << ") last events:\n"
                  << replay.TraceTail();
  }
  return run;
}

void Report(const SeedRun& run, uint64_t first, double seconds) {
  std::cout << "simulated " << run.seeds << " seeds from " << first << " in " << seconds << " s ("
            << (seconds > 0 ? run.seeds / seconds : 0) << " seeds/s); failures: " << run.failures
            << "\ntotals: " << run.stats.ToString()
            << "\nseeds in direct mode: " << run.direct_seeds
            << "; with a crash: " << run.seeds_with_crash
            << ", a link break: " << run.seeds_with_link_break
            << ", one-way loss: " << run.seeds_with_one_way_loss
            << ", a silenced node: " << run.seeds_with_isolation
            << ", a leader change: " << run.seeds_with_leader_change
            << ", a bridge move: " << run.seeds_with_bridge_move
            << ", a node with several lanes: " << run.seeds_with_several_lanes << "\n";
  for (const auto& [kind, seeds] : run.failing) {
    std::cout << "  " << kind << ": " << seeds.size() << " seeds, first:";
    for (size_t i = 0; i < seeds.size() && i < 10; ++i) std::cout << " " << seeds[i];
    std::cout << "\n";
  }
}

// A simulation passes falsely when its faults stop happening: over a range of seeds, most
// must have had each kind. A replay (under 100 seeds) is too small for that.
void ExpectFaultsExercised(const SeedRun& run) {
  if (run.seeds < 100) return;
  const uint64_t most = run.seeds * 8 / 10;
  EXPECT_GE(run.seeds_with_crash, most);
  EXPECT_GE(run.seeds_with_link_break, most);
  EXPECT_GE(run.seeds_with_one_way_loss, most);
  EXPECT_GE(run.seeds_with_leader_change, most);
  EXPECT_GE(run.seeds_with_bridge_move, most);
  EXPECT_GE(run.seeds_with_several_lanes, most);
  EXPECT_GE(run.seeds_with_isolation, run.seeds / 4);
  EXPECT_GT(run.stats.mid_turn_crashes, 0u);
  EXPECT_GT(run.stats.leaderless, 0u);
  EXPECT_GT(run.stats.delays, 0u);
  EXPECT_GT(run.stats.refused, 0u);
  EXPECT_GT(run.direct_seeds, run.seeds / 4);
  EXPECT_LT(run.direct_seeds, run.seeds * 3 / 4);
  // The workload did its job: most stanzas were delivered.
  EXPECT_GT(run.stats.delivered, run.stats.stanzas / 2);
}

TEST(RelaySimulation, RandomizedSeeds) {
  const uint64_t first = EnvNumber("STANZAD_SIM_FIRST_SEED", 1);
  const uint64_t count = EnvNumber("STANZAD_SIM_SEEDS", 2000);
  const auto start = std::chrono::steady_clock::now();
  const SeedRun run = RunSeeds(RelaySimOptions{}, first, count, "RelaySimulation.RandomizedSeeds");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Report(run, first, seconds);
  EXPECT_EQ(run.failures, 0);
  ExpectFaultsExercised(run);
}

// A link that drops frames one way and then carries them again without breaking (a queue
// that overflowed, not a TCP connection) restates nothing by itself: the route digests
// (directory.h) find what it lost and the routes converge all the same.
TEST(RelaySimulation, LossHealedWithoutRelink) {
  RelaySimOptions options;
  options.heal_loss_without_relink = true;
  const uint64_t count = EnvNumber("STANZAD_SIM_SEEDS", 500);
  const auto start = std::chrono::steady_clock::now();
  const SeedRun run = RunSeeds(options, 1, count, "RelaySimulation.LossHealedWithoutRelink");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Report(run, 1, seconds);
  EXPECT_EQ(run.failures, 0);
}

TEST(RelaySimulation, SameSeedSameRun) {
  RelaySimOptions options;
  options.seed = 42;
  RelaySimulator a(options);
  RelaySimulator b(options);
  const absl::Status status_a = a.Run();
  const absl::Status status_b = b.Run();
  EXPECT_EQ(status_a, status_b);
  EXPECT_EQ(a.fingerprint(), b.fingerprint());
  EXPECT_EQ(a.stats().events, b.stats().events);
  options.seed = 43;
  RelaySimulator c(options);
  (void)c.Run();
  EXPECT_NE(a.fingerprint(), c.fingerprint());
}

// Without faults nothing is bounced or lost, and every stanza is delivered exactly once.
TEST(RelaySimulation, HealthyClusterDeliversEverything) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    RelaySimOptions options;
    options.seed = seed;
    options.faults = false;
    RelaySimulator simulator(options);
    const absl::Status status = simulator.Run();
    ASSERT_TRUE(status.ok()) << "seed " << seed << ": " << status;
    const RelaySimStats& stats = simulator.stats();
    EXPECT_GT(stats.stanzas, 0u);
    EXPECT_EQ(stats.delivered + stats.bounced, stats.stanzas) << "seed " << seed;
    EXPECT_EQ(stats.window_duplicates + stats.window_delivered_and_bounced, 0u);
  }
}

}  // namespace
}  // namespace stanzad::cluster::relay::sim
