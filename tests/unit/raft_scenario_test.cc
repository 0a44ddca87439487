// Runs the Raft scenario transcripts in tests/unit/testdata/raft/*.txt.
//
// A transcript is a list of commands, one per line; '#' starts a comment. Commands act on a
// Harness (instant network, in-memory disks); `expect ...` lines check what the nodes
// report. Any command may end in `-> error TEXT`: it must then fail with a message
// containing TEXT. Nodes are written ID or ID@ADDRESS (default address node-ID:7070).
//
//   bootstrap 1 2 3        new cluster of these members      start 4@host:1   empty node
//   campaign 1 [2..]       they campaign now, at once        timeout 1        ticks until it does
//   tick 1 [N]             ticks one node (settling after)   ticks N          all nodes, N rounds
//   stabilize              deliver everything                propose 1 DATA   on node 1
//   add 1 4@host:1         propose adding a member           remove 1 3       propose a removal
//   replace 1 5            drive ProposeReplaceOrAdd to done for node 5's id and address
//   transfer 1 2           leadership transfer               forget 2         ForgetLeader on 2
//   snapshot 1             snapshot at node 1's applied index
//   crash 1 / restart 1    lose memory / start from disk     wipe 3 13        3's disk gone; it
//                                                            comes back as empty node 13
//   isolate 1 / heal       cut 1 from all / heal all         partition 1 2 | 3
//   cut 1 2                drop messages from 1 to 2 only
//   expect leader 1        1 leads; every reachable node follows it
//   expect leader-among 2 3  one of them leads, as above
//   expect no-leader       no live node is leader
//   In place of a node id, "leader" names the one live leader.
//   expect role 1 follower / expect term 1 5 / expect commit 1 7 / expect leader-of 2 1
//   expect members 1 2 3   every live node among them reports exactly these members
//   expect members-of 4 1 2 3  node 4 reports exactly members 1 2 3
//   expect applied 2 a b   node 2 applied exactly these data entries (none: "expect applied 2")
//   expect snapshot-index 4 9 / expect first-index 4 10
//   print                  dumps every node's status to stdout
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/unit/raft_harness.h"

namespace stanzad::raft::testing {
namespace {

std::string DumpStatus(Harness& harness) {
  std::ostringstream out;
  for (auto& [id, node] : harness.nodes()) {
    if (!node.up()) {
      out << "  node " << id << ": down\n";
      continue;
    }
    RaftStatus s = node.raft->GetStatus();
    std::vector<std::string> members;
    for (const Member& m : s.members) members.push_back(absl::StrCat(m.id, "@", m.address));
    out << "  node " << id << ": " << RoleName(s.role) << " term=" << s.term
        << " leader=" << s.leader << " vote=" << s.vote << " commit=" << s.commit
        << " applied=" << s.applied << " log=[" << s.first_index << ".." << s.last_index
        << "] members={" << absl::StrJoin(members, ",") << "} data=["
        << absl::StrJoin(node.applied_data, ",") << "]\n";
  }
  return out.str();
}

class ScenarioRunner {
 public:
  explicit ScenarioRunner(std::string file) : file_(std::move(file)) {}

  void Run() {
    std::ifstream in(file_);
    ASSERT_TRUE(in.good()) << "cannot open " << file_;
    std::string line;
    while (std::getline(in, line)) {
      ++line_number_;
      std::string text = line.substr(0, line.find('#'));
      absl::StripAsciiWhitespace(&text);
      if (text.empty()) continue;
      line_ = std::string(text);
      std::string expected_error;
      if (size_t arrow = line_.find("-> error"); arrow != std::string::npos) {
        expected_error = std::string(absl::StripAsciiWhitespace(line_.substr(arrow + 8)));
        line_ = std::string(absl::StripAsciiWhitespace(line_.substr(0, arrow)));
        expect_error_ = true;
      } else {
        expect_error_ = false;
      }
      std::vector<std::string> words = absl::StrSplit(line_, ' ', absl::SkipEmpty());
      absl::Status status = Execute(words);
      if (expect_error_) {
        if (status.ok()) {
          Fail(absl::StrCat("expected an error containing \"", expected_error, "\""));
        } else if (std::string(status.message()).find(expected_error) == std::string::npos) {
          Fail(absl::StrCat("expected an error containing \"", expected_error, "\", got ",
                            status.ToString()));
        }
      } else if (!status.ok()) {
        Fail(status.ToString());
      }
      if (::testing::Test::HasFatalFailure()) return;
      CheckUniqueAddresses();
    }
  }

 private:
  void Fail(const std::string& why) {
    ADD_FAILURE_AT(file_.c_str(), line_number_) << "`" << line_ << "`: " << why << "\n"
                                                << DumpStatus(harness_);
  }

  // The property the "peer listed twice" bug violated, checked after every command.
  void CheckUniqueAddresses() {
    for (auto& [id, node] : harness_.nodes()) {
      if (!node.up()) continue;
      std::set<std::string> addresses;
      for (const auto& [member_id, member] : node.raft->members()) {
        if (!addresses.insert(member.address).second) {
          Fail(absl::StrCat("node ", id, " lists address ", member.address, " twice"));
        }
      }
    }
  }

  static absl::StatusOr<Member> ParseMember(const std::string& word) {
    std::vector<std::string> parts = absl::StrSplit(word, absl::MaxSplits('@', 1));
    Member member;
    if (!absl::SimpleAtoi(parts[0], &member.id) || member.id == kNoNode) {
      return absl::InvalidArgumentError(absl::StrCat("bad node id: ", word));
    }
    member.address = parts.size() > 1 ? parts[1] : absl::StrCat("node-", member.id, ":7070");
    return member;
  }

  static absl::StatusOr<uint64_t> ParseNumber(const std::vector<std::string>& words, size_t i) {
    uint64_t value = 0;
    if (i >= words.size() || !absl::SimpleAtoi(words[i], &value)) {
      return absl::InvalidArgumentError(absl::StrCat("expected a number as word ", i + 1));
    }
    return value;
  }

  // A node that is up, by id, or "leader": the one live node that is leader.
  absl::StatusOr<NodeId> LiveNode(const std::vector<std::string>& words, size_t i) {
    if (i < words.size() && words[i] == "leader") {
      NodeId leader = harness_.Leader();
      if (leader == kNoNode) return absl::FailedPreconditionError("no single leader");
      return leader;
    }
    absl::StatusOr<uint64_t> id = ParseNumber(words, i);
    if (!id.ok()) return id.status();
    auto it = harness_.nodes().find(*id);
    if (it == harness_.nodes().end()) return absl::NotFoundError(absl::StrCat("no node ", *id));
    if (!it->second.up())
      return absl::FailedPreconditionError(absl::StrCat("node ", *id, " is down"));
    return *id;
  }

  // Whether messages flow both ways between a and b.
  bool Connected(NodeId a, NodeId b) {
    return a == b || (!harness_.IsCut(a, b) && !harness_.IsCut(b, a));
  }

  absl::Status Execute(const std::vector<std::string>& w) {
    const std::string& cmd = w[0];
#define ASSIGN_OR_RETURN_NODE(var, index)               \
  absl::StatusOr<NodeId> var##_or = LiveNode(w, index); \
  if (!var##_or.ok()) return var##_or.status();         \
  NodeId var = *var##_or;

    if (cmd == "bootstrap") {
      std::vector<Member> members;
      for (size_t i = 1; i < w.size(); ++i) {
        absl::StatusOr<Member> member = ParseMember(w[i]);
        if (!member.ok()) return member.status();
        members.push_back(*member);
      }
      absl::StatusOr<PersistentState> state = Raft::Bootstrap(members);
      if (!state.ok()) return state.status();
      harness_.Bootstrap(members);
      return absl::OkStatus();
    }
    if (cmd == "start") {
      if (w.size() != 2) return absl::InvalidArgumentError("start ID[@ADDR]");
      absl::StatusOr<Member> member = ParseMember(w[1]);
      if (!member.ok()) return member.status();
      harness_.AddEmptyNode(*member);
      return absl::OkStatus();
    }
    if (cmd == "campaign") {
      // Every node listed campaigns before any message moves.
      absl::Status status;
      for (size_t i = 1; i < w.size(); ++i) {
        absl::StatusOr<NodeId> id = LiveNode(w, i);
        if (!id.ok()) return id.status();
        if (absl::Status s = harness_.raft(*id).Campaign(); !s.ok()) status = s;
      }
      harness_.Stabilize();
      return status;
    }
    if (cmd == "timeout") {
      ASSIGN_OR_RETURN_NODE(id, 1);
      harness_.ElectionTimeout(id);
      return absl::OkStatus();
    }
    if (cmd == "tick") {
      ASSIGN_OR_RETURN_NODE(id, 1);
      uint64_t n = 1;
      if (w.size() > 2) {
        absl::StatusOr<uint64_t> count = ParseNumber(w, 2);
        if (!count.ok()) return count.status();
        n = *count;
      }
      harness_.Tick(id, static_cast<int>(n));
      return absl::OkStatus();
    }
    if (cmd == "ticks") {
      absl::StatusOr<uint64_t> n = ParseNumber(w, 1);
      if (!n.ok()) return n.status();
      harness_.TickAll(static_cast<int>(*n));
      return absl::OkStatus();
    }
    if (cmd == "stabilize") {
      harness_.Stabilize();
      return absl::OkStatus();
    }
    if (cmd == "propose") {
      ASSIGN_OR_RETURN_NODE(id, 1);
      if (w.size() != 3) return absl::InvalidArgumentError("propose ID DATA");
      absl::StatusOr<Index> index = harness_.raft(id).Propose(w[2]);
      harness_.Stabilize();
      return index.status();
    }
    if (cmd == "add") {
      ASSIGN_OR_RETURN_NODE(id, 1);
      if (w.size() != 3) return absl::InvalidArgumentError("add ID NEWID[@ADDR]");
      absl::StatusOr<Member> member = ParseMember(w[2]);
      if (!member.ok()) return member.status();
      absl::StatusOr<Index> index = harness_.raft(id).ProposeAddMember(*member);
      harness_.Stabilize();
      return index.status();
    }
    if (cmd == "remove") {
      ASSIGN_OR_RETURN_NODE(id, 1);
      absl::StatusOr<uint64_t> victim = ParseNumber(w, 2);
      if (!victim.ok()) return victim.status();
      absl::StatusOr<Index> index = harness_.raft(id).ProposeRemoveMember(*victim);
      harness_.Stabilize();
      return index.status();
    }
    if (cmd == "replace") {
      ASSIGN_OR_RETURN_NODE(id, 1);
      absl::StatusOr<uint64_t> target = ParseNumber(w, 2);
      if (!target.ok()) return target.status();
      if (harness_.nodes().count(*target) == 0) return absl::NotFoundError("replace: no such node");
      Member member = harness_.node(*target).member;
      for (int round = 0; round < 100; ++round) {
        if (!harness_.node(id).up()) return absl::FailedPreconditionError("replace: leader down");
        absl::StatusOr<ReplaceProgress> progress = harness_.raft(id).ProposeReplaceOrAdd(member);
        if (!progress.ok()) return progress.status();
        if (progress->step == ReplaceProgress::Step::kDone) return absl::OkStatus();
        harness_.Stabilize();
        CheckUniqueAddresses();
        harness_.TickAll(1);
      }
      return absl::DeadlineExceededError("replace did not finish in 100 rounds");
    }
    if (cmd == "transfer") {
      ASSIGN_OR_RETURN_NODE(id, 1);
      absl::StatusOr<uint64_t> target = ParseNumber(w, 2);
      if (!target.ok()) return target.status();
      absl::Status status = harness_.raft(id).TransferLeadership(*target);
      harness_.Stabilize();
      return status;
    }
    if (cmd == "forget") {
      ASSIGN_OR_RETURN_NODE(id, 1);
      harness_.raft(id).ForgetLeader();
      harness_.Stabilize();
      return absl::OkStatus();
    }
    if (cmd == "snapshot") {
      ASSIGN_OR_RETURN_NODE(id, 1);
      HarnessNode& node = harness_.node(id);
      absl::StatusOr<Snapshot> snapshot =
          node.raft->CreateSnapshot(node.applied_index, Harness::JoinData(node.applied_data));
      if (!snapshot.ok()) return snapshot.status();
      node.disk.snapshot = *snapshot;
      std::erase_if(node.disk.entries,
                    [&](const Entry& e) { return e.index <= snapshot->metadata.index; });
      return absl::OkStatus();
    }
    if (cmd == "crash") {
      ASSIGN_OR_RETURN_NODE(id, 1);
      harness_.Crash(id);
      return absl::OkStatus();
    }
    if (cmd == "restart") {
      absl::StatusOr<uint64_t> id = ParseNumber(w, 1);
      if (!id.ok()) return id.status();
      if (harness_.nodes().count(*id) == 0) return absl::NotFoundError("restart: no such node");
      harness_.Restart(*id);
      harness_.Stabilize();
      return absl::OkStatus();
    }
    if (cmd == "wipe") {
      absl::StatusOr<uint64_t> id = ParseNumber(w, 1);
      absl::StatusOr<uint64_t> new_id = ParseNumber(w, 2);
      if (!id.ok() || !new_id.ok()) return absl::InvalidArgumentError("wipe ID NEWID");
      if (harness_.nodes().count(*id) == 0) return absl::NotFoundError("wipe: no such node");
      Member member{*new_id, harness_.node(*id).member.address};
      harness_.Crash(*id);
      harness_.node(*id).disk = PersistentState{};
      harness_.AddEmptyNode(member);
      return absl::OkStatus();
    }
    if (cmd == "isolate") {
      absl::StatusOr<uint64_t> id = ParseNumber(w, 1);
      if (!id.ok()) return id.status();
      harness_.Isolate(*id);
      return absl::OkStatus();
    }
    if (cmd == "partition") {
      std::vector<NodeId> a, b;
      bool second = false;
      for (size_t i = 1; i < w.size(); ++i) {
        if (w[i] == "|") {
          second = true;
          continue;
        }
        uint64_t id = 0;
        if (!absl::SimpleAtoi(w[i], &id)) return absl::InvalidArgumentError("partition A.. | B..");
        (second ? b : a).push_back(id);
      }
      harness_.Partition(a, b);
      return absl::OkStatus();
    }
    if (cmd == "cut") {
      absl::StatusOr<uint64_t> from = ParseNumber(w, 1);
      absl::StatusOr<uint64_t> to = ParseNumber(w, 2);
      if (!from.ok() || !to.ok()) return absl::InvalidArgumentError("cut FROM TO");
      harness_.CutOneWay(*from, *to);
      return absl::OkStatus();
    }
    if (cmd == "heal") {
      harness_.Heal();
      return absl::OkStatus();
    }
    if (cmd == "print") {
      std::cout << file_ << ":" << line_number_ << "\n" << DumpStatus(harness_);
      return absl::OkStatus();
    }
    if (cmd == "expect") return Expect(w);
    return absl::InvalidArgumentError(absl::StrCat("unknown command ", cmd));
#undef ASSIGN_OR_RETURN_NODE
  }

  absl::Status Expect(const std::vector<std::string>& w) {
    if (w.size() < 2) return absl::InvalidArgumentError("expect WHAT ...");
    const std::string& what = w[1];
    auto mismatch = [](const std::string& what_failed) {
      return absl::FailedPreconditionError(what_failed);
    };
    if (what == "leader") {
      absl::StatusOr<NodeId> id = LiveNode(w, 2);
      if (!id.ok()) return id.status();
      if (harness_.raft(*id).role() != Role::kLeader) {
        return mismatch(absl::StrCat("node ", *id, " is not the leader"));
      }
      // Every live member of the leader's configuration that can hear it follows it.
      for (auto& [other, node] : harness_.nodes()) {
        if (!node.up() || !Connected(*id, other) ||
            harness_.raft(*id).members().count(other) == 0) {
          continue;
        }
        if (node.raft->leader() != *id) {
          return mismatch(absl::StrCat("node ", other, " follows ", node.raft->leader()));
        }
        if (node.raft->term() != harness_.raft(*id).term()) {
          return mismatch(absl::StrCat("node ", other, " is at another term"));
        }
      }
      return absl::OkStatus();
    }
    if (what == "leader-among") {
      NodeId leader = harness_.Leader();
      bool listed = false;
      for (size_t i = 2; i < w.size(); ++i) listed |= w[i] == absl::StrCat(leader);
      if (leader == kNoNode || !listed) {
        return mismatch(absl::StrCat("the leader is ", leader, ", not one of those"));
      }
      return Expect({"expect", "leader", absl::StrCat(leader)});
    }
    if (what == "no-leader") {
      for (auto& [id, node] : harness_.nodes()) {
        if (node.up() && node.raft->role() == Role::kLeader) {
          return mismatch(absl::StrCat("node ", id, " is leader"));
        }
      }
      return absl::OkStatus();
    }
    if (what == "role") {
      absl::StatusOr<NodeId> id = LiveNode(w, 2);
      if (!id.ok()) return id.status();
      if (w.size() != 4) return absl::InvalidArgumentError("expect role ID ROLE");
      std::string role(RoleName(harness_.raft(*id).role()));
      if (role != w[3]) return mismatch(absl::StrCat("role is ", role));
      return absl::OkStatus();
    }
    if (what == "term" || what == "commit" || what == "leader-of" || what == "snapshot-index" ||
        what == "first-index") {
      absl::StatusOr<NodeId> id = LiveNode(w, 2);
      if (!id.ok()) return id.status();
      absl::StatusOr<uint64_t> want = ParseNumber(w, 3);
      if (!want.ok()) return want.status();
      Raft& raft = harness_.raft(*id);
      uint64_t got = what == "term"             ? raft.term()
                     : what == "commit"         ? raft.commit_index()
                     : what == "leader-of"      ? raft.leader()
                     : what == "snapshot-index" ? raft.snapshot_index()
                                                : raft.first_index();
      if (got != *want) return mismatch(absl::StrCat(what, " is ", got));
      return absl::OkStatus();
    }
    if (what == "members" || what == "members-of") {
      std::set<NodeId> want;
      size_t first = 2;
      std::vector<NodeId> check;
      if (what == "members-of") {
        absl::StatusOr<NodeId> id = LiveNode(w, 2);
        if (!id.ok()) return id.status();
        check.push_back(*id);
        first = 3;
      }
      for (size_t i = first; i < w.size(); ++i) {
        uint64_t id = 0;
        if (!absl::SimpleAtoi(w[i], &id)) return absl::InvalidArgumentError("expect members IDS");
        want.insert(id);
      }
      if (check.empty()) check.assign(want.begin(), want.end());
      for (NodeId id : check) {
        auto it = harness_.nodes().find(id);
        if (it == harness_.nodes().end() || !it->second.up()) continue;
        std::set<NodeId> got;
        for (const auto& [member_id, member] : it->second.raft->members()) got.insert(member_id);
        if (got != want) {
          return mismatch(absl::StrCat("node ", id, " has members ", absl::StrJoin(got, " ")));
        }
      }
      return absl::OkStatus();
    }
    if (what == "applied") {
      absl::StatusOr<NodeId> id = LiveNode(w, 2);
      if (!id.ok()) return id.status();
      std::vector<std::string> want(w.begin() + 3, w.end());
      const std::vector<std::string>& got = harness_.node(*id).applied_data;
      if (got != want) return mismatch(absl::StrCat("applied [", absl::StrJoin(got, " "), "]"));
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(absl::StrCat("unknown expectation ", what));
  }

  std::string file_;
  std::string line_;
  int line_number_ = 0;
  bool expect_error_ = false;
  Harness harness_;
};

std::vector<std::string> ScenarioFiles() {
  std::vector<std::string> files;
  std::filesystem::path dir =
      std::filesystem::path(STANZAD_SOURCE_DIR) / "tests/unit/testdata/raft";
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".txt") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

class RaftScenarioTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RaftScenarioTest, Transcript) { ScenarioRunner(GetParam()).Run(); }

INSTANTIATE_TEST_SUITE_P(Testdata, RaftScenarioTest, ::testing::ValuesIn(ScenarioFiles()),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           std::string name =
                               std::filesystem::path(param_info.param).stem().string();
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace stanzad::raft::testing
