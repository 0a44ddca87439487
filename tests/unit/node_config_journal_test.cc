// The config file and its journal (admin/node_config.h): replay, torn tails at every offset,
// damage, and a simulated crash (MemFs) at every write of a workload of appends and rewrites,
// followed by the load a restart does.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "admin/node_config.h"
#include "cluster/storage/mem_fs.h"
#include "core/base/concat.h"
#include "core/sasl/credentials.h"

namespace stanzad {
namespace {

using storage::MemFs;
using Kind = NodeConfigEdit::Kind;

constexpr char kDir[] = "/state";

config::UserCredentials Credentials(std::string_view password) {
  absl::StatusOr<config::UserCredentials> credentials =
      sasl::MakeUserCredentials(password, "sixteen-bytes-ok", "sixteen-bytes-ok/256");
  EXPECT_TRUE(credentials.ok()) << credentials.status();
  return *credentials;
}

NodeConfig Base() {
  NodeConfig config;
  config.domain = "example.com";
  config.listen = {"127.0.0.1"};
  config.enabled = true;
  config.callbridges["cb1"] = "kvgP1SRzWVabhiPVAb1";
  config.users["alice"] = Credentials("alice password");
  return config;
}

// One step of the workload: a rewrite of the whole config, or one edit appended and synced,
// or a step of an incremental rewrite (begun, or one more entry written; the last step
// writes what is left).
struct Step {
  std::optional<NodeConfig> rewrite;
  std::optional<NodeConfigEdit> edit;
  enum class Incremental { kNo, kBegin, kOne, kRest } incremental = Incremental::kNo;
};
constexpr auto kBegin = Step::Incremental::kBegin;
constexpr auto kOne = Step::Incremental::kOne;
constexpr auto kRest = Step::Incremental::kRest;

std::vector<Step> Workload() {
  NodeConfig reset;  // `reset` then a bridge: bob and alice must not come back from the journal
  reset.domain = "example.org";
  reset.callbridges["cb9"] = "secret-of-cb9";
  reset.users["erin"] = Credentials("erin password");
  reset.users["frank"] = Credentials("frank password");
  return {
      {Base(), std::nullopt},
      {std::nullopt, NodeConfigEdit{Kind::kSetCallbridge, "cb2", "secret-of-cb2", {}}},
      {std::nullopt, NodeConfigEdit{Kind::kSetUser, "bob", "", Credentials("bob password")}},
      {std::nullopt, NodeConfigEdit{Kind::kDeleteUser, "alice", "", {}}},
      {std::nullopt, NodeConfigEdit{Kind::kSetCallbridge, "cb1", "a-new-secret-1", {}}},
      {reset, std::nullopt},
      // Edits made while an incremental rewrite writes the config, before and after its
      // cursor: each is in the new config's journal.
      {std::nullopt, std::nullopt, kBegin},
      {std::nullopt, NodeConfigEdit{Kind::kSetCallbridge, "cb2", "other-secret-2", {}}},
      {std::nullopt, std::nullopt, kOne},
      {std::nullopt, NodeConfigEdit{Kind::kSetCallbridge, "cb1", "secret-number-1", {}}},
      {std::nullopt, std::nullopt, kOne},
      {std::nullopt, NodeConfigEdit{Kind::kDeleteCallbridge, "cb9", "", {}}},
      {std::nullopt, NodeConfigEdit{Kind::kDeleteCallbridge, "cb1", "", {}}},
      {std::nullopt, std::nullopt, kOne},  // erin
      {std::nullopt, NodeConfigEdit{Kind::kSetUser, "carol", "", Credentials("carol pw")}},
      {std::nullopt, NodeConfigEdit{Kind::kDeleteUser, "erin", "", {}}},
      {std::nullopt, std::nullopt, kOne},  // frank
      {std::nullopt, NodeConfigEdit{Kind::kDeleteUser, "frank", "", {}}},
      {std::nullopt, std::nullopt, kRest},
      {std::nullopt, NodeConfigEdit{Kind::kSetUser, "dave", "", Credentials("dave pw")}},
      {std::nullopt, NodeConfigEdit{Kind::kDeleteUser, "dave", "", {}}},
  };
}

// Runs the workload until a write fails (the process dies there). `acknowledged`: the state
// of the last step that returned OK (nullopt: none); `in_flight`: the failed step's target.
struct Outcome {
  bool finished = false;
  std::optional<NodeConfig> acknowledged;
  std::optional<NodeConfig> in_flight;
};

Outcome RunWorkload(MemFs* fs) {
  Outcome outcome;
  EXPECT_TRUE(fs->CreateDir(kDir).ok());
  NodeConfigFiles files(kDir, fs);
  std::optional<NodeConfig> state;
  for (const Step& step : Workload()) {
    NodeConfig target = state.value_or(NodeConfig());
    absl::Status status;
    if (step.incremental == kBegin) {
      status = files.BeginRewrite(target);
    } else if (step.incremental != Step::Incremental::kNo) {
      absl::StatusOr<bool> done = files.ContinueRewrite(target, step.incremental == kOne ? 1 : 100);
      status = done.status();
      if (status.ok() && step.incremental == kRest) {
        EXPECT_FALSE(files.rewriting());  // ended now or at an earlier slice
      }
    } else if (step.rewrite) {
      target = *step.rewrite;
      status = files.Rewrite(target);
    } else {
      ApplyNodeConfigEdit(*step.edit, &target);
      status = files.Append(*step.edit);
      if (status.ok()) status = files.Sync();
    }
    if (!status.ok()) {
      outcome.in_flight = target;
      return outcome;
    }
    state = target;
    outcome.acknowledged = state;
  }
  outcome.finished = true;
  return outcome;
}

std::string Describe(const std::optional<NodeConfig>& config) {
  return config ? SerializeNodeConfig(*config) : "(no config)";
}

TEST(NodeConfigJournalTest, ReplaysEditsOverTheConfig) {
  MemFs fs;
  Outcome outcome = RunWorkload(&fs);
  ASSERT_TRUE(outcome.finished);
  absl::StatusOr<NodeConfig> loaded = LoadNodeConfig(kDir, &fs);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, *outcome.acknowledged);
  EXPECT_EQ(loaded->callbridges.size(), 1u);  // cb2 only: cb9 deleted, cb1 gone with reset
  EXPECT_EQ(loaded->callbridges.at("cb2"), "other-secret-2");
  EXPECT_EQ(loaded->users.size(), 1u);  // carol: bob and alice went with reset
  EXPECT_TRUE(loaded->users.contains("carol"));
}

TEST(NodeConfigJournalTest, CrashAtEveryWriteLosesNothingAcknowledged) {
  uint64_t calls = 0;
  {
    MemFs fs;
    ASSERT_TRUE(RunWorkload(&fs).finished);
    calls = fs.mutating_calls();
  }
  ASSERT_GT(calls, 20u);
  int crashes = 0;
  for (uint64_t fault_at = 0; fault_at <= calls; ++fault_at) {
    for (MemFs::CrashMode mode : {MemFs::CrashMode::kLoseUnsynced, MemFs::CrashMode::kKeepUnsynced,
                                  MemFs::CrashMode::kTornUnsynced}) {
      SCOPED_TRACE(Concat("fault at call ", std::to_string(fault_at), ", crash mode ",
                          std::to_string(static_cast<int>(mode))));
      MemFs fs;
      fs.FailAfter(fault_at);
      const Outcome outcome = RunWorkload(&fs);
      EXPECT_EQ(outcome.finished, fault_at >= calls);
      fs.Crash(mode);
      ++crashes;
      // The restart: what it loads is the acknowledged state, or the one being written.
      absl::StatusOr<NodeConfig> loaded = LoadNodeConfig(kDir, &fs);
      std::optional<NodeConfig> recovered;
      if (loaded.ok()) {
        recovered = *loaded;
      } else {
        ASSERT_TRUE(absl::IsNotFound(loaded.status())) << loaded.status();
      }
      EXPECT_TRUE(recovered == outcome.acknowledged || recovered == outcome.in_flight)
          << "recovered " << Describe(recovered) << "\nacknowledged "
          << Describe(outcome.acknowledged) << "\nin flight " << Describe(outcome.in_flight);
      if (!recovered) continue;
      // The daemon goes on from there: it rewrites, appends, and a second restart sees it.
      NodeConfigFiles files(kDir, &fs);
      ASSERT_TRUE(files.Rewrite(*recovered).ok());
      const NodeConfigEdit edit{Kind::kSetCallbridge, "after", "secret-after", {}};
      ASSERT_TRUE(files.Append(edit).ok());
      ASSERT_TRUE(files.Sync().ok());
      ApplyNodeConfigEdit(edit, &*recovered);
      absl::StatusOr<NodeConfig> again = LoadNodeConfig(kDir, &fs);
      ASSERT_TRUE(again.ok()) << again.status();
      EXPECT_EQ(*again, *recovered);
    }
  }
  EXPECT_GT(crashes, 60);
}

TEST(NodeConfigJournalTest, ATornLastRecordIsIgnoredAtEveryOffset) {
  MemFs fs;
  ASSERT_TRUE(fs.CreateDir(kDir).ok());
  NodeConfigFiles files(kDir, &fs);
  ASSERT_TRUE(files.Rewrite(Base()).ok());
  ASSERT_TRUE(files.Append({Kind::kSetCallbridge, "cb2", "secret-of-cb2", {}}).ok());
  ASSERT_TRUE(files.Sync().ok());
  const std::string before = *fs.Contents("/state/config.journal");
  ASSERT_TRUE(files.Append({Kind::kSetUser, "bob", "", Credentials("bob password")}).ok());
  ASSERT_TRUE(files.Sync().ok());
  const std::string after = *fs.Contents("/state/config.journal");
  NodeConfig expected = Base();
  expected.callbridges["cb2"] = "secret-of-cb2";
  for (size_t cut = before.size(); cut < after.size(); ++cut) {
    SCOPED_TRACE(Concat("cut at ", std::to_string(cut)));
    fs.SetContents("/state/config.journal", after.substr(0, cut));
    absl::StatusOr<NodeConfig> loaded = LoadNodeConfig(kDir, &fs);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(*loaded, expected);
  }
  fs.SetContents("/state/config.journal", after);
  absl::StatusOr<NodeConfig> whole = LoadNodeConfig(kDir, &fs);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_TRUE(whole->users.contains("bob"));
}

TEST(NodeConfigJournalTest, DamageBeforeTheLastRecordIsDataLoss) {
  MemFs fs;
  ASSERT_TRUE(fs.CreateDir(kDir).ok());
  NodeConfigFiles files(kDir, &fs);
  ASSERT_TRUE(files.Rewrite(Base()).ok());
  const size_t header_bytes = fs.Contents("/state/config.journal")->size();
  ASSERT_TRUE(files.Append({Kind::kSetCallbridge, "cb2", "secret-of-cb2", {}}).ok());
  ASSERT_TRUE(files.Append({Kind::kSetCallbridge, "cb3", "secret-of-cb3", {}}).ok());
  ASSERT_TRUE(files.Sync().ok());
  std::string journal = *fs.Contents("/state/config.journal");
  journal[header_bytes + 20] ^= 0x01;  // inside cb2's record
  fs.SetContents("/state/config.journal", journal);
  absl::StatusOr<NodeConfig> loaded = LoadNodeConfig(kDir, &fs);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << loaded.status();
}

TEST(NodeConfigJournalTest, AJournalOfAnotherEpochIsIgnored) {
  MemFs fs;
  ASSERT_TRUE(fs.CreateDir(kDir).ok());
  NodeConfigFiles files(kDir, &fs);
  ASSERT_TRUE(files.Rewrite(Base()).ok());
  ASSERT_TRUE(files.Append({Kind::kSetCallbridge, "cb2", "secret-of-cb2", {}}).ok());
  ASSERT_TRUE(files.Sync().ok());
  const std::string old_journal = *fs.Contents("/state/config.journal");
  NodeConfig reset;
  ASSERT_TRUE(files.Rewrite(reset).ok());
  // As if the crash came between the config's rename and the new journal's.
  fs.SetContents("/state/config.journal", old_journal);
  absl::StatusOr<NodeConfig> loaded = LoadNodeConfig(kDir, &fs);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, reset);
}

// The mirror replaced whole (a snapshot from the leader) while an incremental rewrite was
// under way: the rewrite starts again from the new configuration, and what the first one had
// written (a bridge the new one lacks) does not come back.
TEST(NodeConfigJournalTest, ARestartedRewriteWritesOnlyTheNewConfiguration) {
  MemFs fs;
  ASSERT_TRUE(fs.CreateDir(kDir).ok());
  NodeConfigFiles files(kDir, &fs);
  NodeConfig before = Base();
  before.callbridges["cb0"] = "secret-of-cb0";
  ASSERT_TRUE(files.Rewrite(before).ok());
  ASSERT_TRUE(files.BeginRewrite(before).ok());
  ASSERT_FALSE(*files.ContinueRewrite(before, 1));  // cb0 is in the first file's slices
  NodeConfig replaced;
  replaced.domain = "example.org";
  replaced.callbridges["cb9"] = "secret-of-cb9";
  replaced.users["erin"] = Credentials("erin password");
  ASSERT_TRUE(files.RestartRewrite(replaced).ok());
  // Until it ends, the old file is the one read.
  absl::StatusOr<NodeConfig> loaded = LoadNodeConfig(kDir, &fs);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, before);
  ASSERT_TRUE(files.Append({Kind::kSetCallbridge, "cb8", "secret-of-cb8", {}}).ok());
  replaced.callbridges["cb8"] = "secret-of-cb8";
  int steps = 0;
  while (!*files.ContinueRewrite(replaced, 1)) ASSERT_LT(++steps, 10);
  ASSERT_TRUE(files.Sync().ok());
  loaded = LoadNodeConfig(kDir, &fs);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, replaced);
}

TEST(NodeConfigJournalTest, AppendBeforeRewriteIsRefused) {
  MemFs fs;
  NodeConfigFiles files(kDir, &fs);
  EXPECT_EQ(files.Append({Kind::kDeleteUser, "alice", "", {}}).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(NodeConfigJournalTest, RewriteIsDueOnceTheJournalOutgrowsHalfTheConfig) {
  MemFs fs;
  ASSERT_TRUE(fs.CreateDir(kDir).ok());
  NodeConfigFiles files(kDir, &fs);
  ASSERT_TRUE(files.Rewrite(Base()).ok());
  const std::string secret(200, 's');
  int appended = 0;
  while (!files.RewriteDue() && appended < 100'000) {
    ASSERT_TRUE(files.Append({Kind::kSetCallbridge, "cb2", secret, {}}).ok());
    ++appended;
  }
  EXPECT_TRUE(files.RewriteDue());
  // A small config waits for kJournalBytesMin: about 4 MiB of 200-byte records.
  EXPECT_GT(appended, 15'000);
  ASSERT_TRUE(files.Rewrite(Base()).ok());
  EXPECT_FALSE(files.RewriteDue());
}

}  // namespace
}  // namespace stanzad
