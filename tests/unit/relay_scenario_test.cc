// Runs the relay's scenario transcripts, tests/unit/testdata/relay/*.txt, in the manner of
// etcd's datadriven tests: each command is followed by "----" and what it made happen,
// printed from the real relays and route directories of relay_harness.h (every frame
// queued, with its fields decoded; every delivery, bounce and log line), and the run must
// print exactly that. A transcript is a story told frame by frame: a reader sees what
// crosses between the nodes, and a change to the relay that changes the story fails
// here with the difference. STANZAD_REWRITE=1 writes what the run printed back into the
// files (then read the diff before committing it).
//
//   # a comment (kept by a rewrite)
//   COMMAND ARGS...
//   ----
//   OUTPUT LINES (none: the next line is blank)
//   <a blank line ends the block>
//
// Commands (N, A, B: node ids 1..n; the stanza's id names it in the output):
//   cluster N direct|leader   N nodes, all members, all linked (first, once)
//   leader N                  every node's view names N the leader (0: none)
//   bind N ADDR / unbind N ADDR   a route bound or unbound on node N
//   link-all                  every link comes up: route sets are sent
//   forward A ID TO NODE      node A's shard routed stanza ID (to TO) to node NODE
//   pump                      delivers every queued frame, in order, and what they cause
//   pump-drop A B             the same, but frames from A to B are lost
//   cut A B / heal A B        the link between A and B goes down / comes back
//   advance MS                time passes once by MS: every relay and directory ticks
//   run MS                    MS of time in 50 ms steps, each followed by a pump
//   restart N INCARNATION     node N's process starts again: nothing remembered
//   where N ADDR              where node N's route directory says ADDR is
//   custody                   each node's custody (stanzas, bytes)
// Route digests (the directories', every second) are counted in one line, not listed.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/unit/relay_harness.h"

namespace stanzad::cluster::relay {
namespace {

// The value of attribute `name` in a stanza's start tag, for naming it in a trace.
std::string Attribute(std::string_view stanza, std::string_view name) {
  const std::string key = std::string(name) + "='";
  const size_t at = stanza.find(key);
  if (at == std::string_view::npos) return "?";
  const size_t start = at + key.size();
  return std::string(stanza.substr(start, stanza.find('\'', start) - start));
}

std::string Answers(const AnswerFrame& frame) {
  std::vector<std::string> each;
  for (const auto& [sequence, outcome] : frame.answers) {
    each.push_back(
        absl::StrCat(sequence, outcome == Outcome::kDelivered ? ":delivered" : ":aborted"));
  }
  return absl::StrCat("inc=", frame.incarnation, " decider=", LaneName(frame.decider), " ",
                      absl::StrJoin(each, " "));
}

// One frame as a trace line (an undecodable one says so: the relays never send one).
std::string Describe(const Frame& frame) {
  const std::string head = absl::StrCat(frame.from, " -> ", frame.to, " ");
  switch (frame.type) {
    case FrameType::kStanza: {
      absl::StatusOr<StanzaFrame> s = DecodeStanza(frame.payload);
      if (!s.ok()) break;
      return absl::StrCat(head, "stanza ", Attribute(s->stanza, "id"),
                          " origin=", LaneName(s->origin), " inc=", s->incarnation,
                          " seq=", s->sequence, " floor=", s->floor,
                          " dest=", LaneName(s->destination), " hops=", s->hops);
    }
    case FrameType::kAck: {
      absl::StatusOr<AnswerFrame> a = DecodeAnswers(frame.payload);
      if (!a.ok()) break;
      return absl::StrCat(head, "ack ", Answers(*a));
    }
    case FrameType::kAckRelay: {
      absl::StatusOr<std::pair<Lane, std::string_view>> r = DecodeAckRelay(frame.payload);
      if (!r.ok()) break;
      absl::StatusOr<AnswerFrame> a = DecodeAnswers(r->second);
      if (!a.ok()) break;
      return absl::StrCat(head, "ack-relay for=", LaneName(r->first), " ", Answers(*a));
    }
    case FrameType::kAbort: {
      absl::StatusOr<AbortFrame> a = DecodeAbort(frame.payload);
      if (!a.ok()) break;
      return absl::StrCat(head, "abort origin=", LaneName(a->origin), " inc=", a->incarnation,
                          " floor=", a->floor, " dest=", LaneName(a->destination),
                          " hops=", a->hops, " seqs=", absl::StrJoin(a->sequences, ","));
    }
    case FrameType::kRoutes: {
      absl::StatusOr<RoutesFrame> r = DecodeRoutes(frame.payload);
      if (!r.ok()) break;
      std::vector<std::string> updates;
      for (const RouteUpdate& update : r->updates) {
        updates.push_back(absl::StrCat(update.add ? "+" : "-", update.address));
      }
      return absl::StrCat(head, "routes part=", static_cast<int>(r->part),
                          updates.empty() ? "" : " ", absl::StrJoin(updates, " "));
    }
    default:
      break;
  }
  return absl::StrCat(head, "frame type ", static_cast<int>(frame.type), " (undecodable)");
}

bool IsDigest(const Frame& frame) {
  if (frame.type != FrameType::kRoutes) return false;
  absl::StatusOr<RoutesFrame> r = DecodeRoutes(frame.payload);
  return r.ok() && r->part == RoutesPart::kDigest;
}

struct Block {
  std::vector<std::string> comments;  // before the command
  std::string command;
  int line = 0;
  std::vector<std::string> expected;
};

std::vector<Block> Parse(const std::string& path) {
  std::ifstream in(path);
  std::vector<Block> blocks;
  Block block;
  std::string text;
  int number = 0;
  bool in_output = false;
  while (std::getline(in, text)) {
    ++number;
    if (in_output) {
      if (text.empty()) {
        blocks.push_back(std::move(block));
        block = Block();
        in_output = false;
      } else {
        block.expected.push_back(text);
      }
      continue;
    }
    if (text.empty() || text[0] == '#') {
      block.comments.push_back(text);
    } else if (text == "----") {
      in_output = true;
    } else {
      block.command = text;
      block.line = number;
    }
  }
  if (in_output || !block.command.empty()) blocks.push_back(std::move(block));
  return blocks;
}

class Scenario {
 public:
  // What the command made happen, one line each; an error for a command it does not know.
  absl::StatusOr<std::vector<std::string>> Execute(const std::string& command) {
    const std::vector<std::string> w = absl::StrSplit(command, ' ', absl::SkipEmpty());
    if (w.empty()) return absl::InvalidArgumentError("empty command");
    if (w[0] == "cluster") {
      int nodes = 0;
      if (w.size() != 3 || !absl::SimpleAtoi(w[1], &nodes) || cluster_) {
        return absl::InvalidArgumentError("cluster N direct|leader, once");
      }
      Options options;
      options.direct = w[2] == "direct";
      cluster_ = std::make_unique<Cluster>(nodes, options);
      return Observe();
    }
    if (!cluster_) return absl::FailedPreconditionError("no cluster yet");
    Cluster& c = *cluster_;
    const auto node = [&](size_t i) -> absl::StatusOr<NodeId> {
      NodeId id = 0;
      if (i >= w.size() || !absl::SimpleAtoi(w[i], &id)) {
        return absl::InvalidArgumentError(absl::StrCat("a node id as word ", i + 1));
      }
      return id;
    };
    if (w[0] == "leader") {
      absl::StatusOr<NodeId> id = node(1);
      if (!id.ok()) return id.status();
      c.SetLeader(*id);
    } else if ((w[0] == "bind" || w[0] == "unbind") && w.size() == 3) {
      absl::StatusOr<NodeId> id = node(1);
      if (!id.ok()) return id.status();
      if (w[0] == "bind") {
        c.Bind(*id, w[2]);
      } else {
        c.Unbind(*id, w[2]);
      }
    } else if (w[0] == "link-all") {
      c.LinkAll();
    } else if (w[0] == "forward" && w.size() == 5) {
      absl::StatusOr<NodeId> origin = node(1), to_node = node(4);
      if (!origin.ok() || !to_node.ok()) return absl::InvalidArgumentError("forward A ID TO NODE");
      c.Forward(*origin, *to_node, Message(w[2], w[3]));
    } else if (w[0] == "pump") {
      c.Pump();
    } else if (w[0] == "pump-drop" && w.size() == 3) {
      absl::StatusOr<NodeId> from = node(1), to = node(2);
      if (!from.ok() || !to.ok()) return absl::InvalidArgumentError("pump-drop A B");
      c.drop = [&](const Frame& frame) { return frame.from == *from && frame.to == *to; };
      c.Pump();
      c.drop = nullptr;
    } else if ((w[0] == "cut" || w[0] == "heal") && w.size() == 3) {
      absl::StatusOr<NodeId> a = node(1), b = node(2);
      if (!a.ok() || !b.ok()) return absl::InvalidArgumentError("cut|heal A B");
      c.Cut(*a, *b, w[0] == "cut");
    } else if ((w[0] == "advance" || w[0] == "run") && w.size() == 2) {
      uint64_t ms = 0;
      if (!absl::SimpleAtoi(w[1], &ms)) return absl::InvalidArgumentError("advance|run MS");
      if (w[0] == "advance") {
        c.Advance(ms);
      } else {
        c.RunFor(ms);
      }
    } else if (w[0] == "restart" && w.size() == 3) {
      absl::StatusOr<NodeId> id = node(1);
      uint64_t incarnation = 0;
      if (!id.ok() || !absl::SimpleAtoi(w[2], &incarnation)) {
        return absl::InvalidArgumentError("restart N INCARNATION");
      }
      c.Restart(*id, incarnation);
    } else if (w[0] == "where" && w.size() == 3) {
      absl::StatusOr<NodeId> id = node(1);
      if (!id.ok()) return id.status();
      std::vector<std::string> out = Observe();
      const std::optional<NodeId> at = c.directory(*id).NodeOf(w[2]);
      out.push_back(absl::StrCat(*id, " routes ", w[2], " to ",
                                 !at        ? std::string("nowhere")
                                 : *at == 0 ? std::string("itself")
                                            : absl::StrCat("node ", *at)));
      return out;
    } else if (w[0] == "custody" && w.size() == 1) {
      std::vector<std::string> out = Observe();
      for (NodeId id = 1; c.has(id); ++id) {
        out.push_back(absl::StrCat(id, " holds ", c.relay(id).custody_count(), " (",
                                   c.relay(id).custody_bytes(), " bytes)"));
      }
      return out;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown command: ", command));
    }
    return Observe();
  }

 private:
  // Everything new since the last call, in a fixed order.
  std::vector<std::string> Observe() {
    std::vector<std::string> out;
    if (!cluster_) return out;
    Cluster& c = *cluster_;
    int digests = 0;
    for (size_t i = frames_seen_; i < c.sent.size(); ++i) {
      if (IsDigest(c.sent[i])) {
        ++digests;
      } else {
        out.push_back(Describe(c.sent[i]));
      }
    }
    frames_seen_ = c.sent.size();
    if (digests > 0) out.push_back(absl::StrCat("(", digests, " route digests)"));
    for (NodeId id = 1; c.has(id); ++id) {
      const std::vector<Delivery>& deliveries = c.deliveries[id];
      for (size_t i = seen_[id].deliveries; i < deliveries.size(); ++i) {
        out.push_back(absl::StrCat(id, " delivers ", Attribute(deliveries[i].bytes, "id"), " to ",
                                   deliveries[i].address, " (from node ", deliveries[i].origin,
                                   ")"));
      }
      seen_[id].deliveries = deliveries.size();
      const std::vector<Bounce>& bounces = c.bounces[id];
      for (size_t i = seen_[id].bounces; i < bounces.size(); ++i) {
        out.push_back(
            absl::StrCat(id, " bounces ", Attribute(bounces[i].bytes, "id"), " ",
                         std::string(xmpp::StanzaErrorConditionName(bounces[i].condition))));
      }
      seen_[id].bounces = bounces.size();
      const std::vector<LogLine>& logs = c.logs[id];
      for (size_t i = seen_[id].logs; i < logs.size(); ++i) {
        out.push_back(absl::StrCat(id, " logs ", logs[i].event, " ", logs[i].fields));
      }
      seen_[id].logs = logs.size();
    }
    return out;
  }

  struct Seen {
    size_t deliveries = 0, bounces = 0, logs = 0;
  };
  std::unique_ptr<Cluster> cluster_;
  size_t frames_seen_ = 0;
  std::map<NodeId, Seen> seen_;
};

std::string Write(const std::vector<Block>& blocks,
                  const std::vector<std::vector<std::string>>& outputs) {
  std::ostringstream out;
  for (size_t i = 0; i < blocks.size(); ++i) {
    for (const std::string& comment : blocks[i].comments) out << comment << "\n";
    out << blocks[i].command << "\n----\n";
    for (const std::string& line : outputs[i]) out << line << "\n";
    out << "\n";
  }
  std::string text = out.str();
  while (text.size() > 1 && text.ends_with("\n\n")) text.pop_back();
  return text;
}

class RelayScenarioTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RelayScenarioTest, PrintsWhatTheTranscriptSays) {
  const std::string path = GetParam();
  const std::vector<Block> blocks = Parse(path);
  ASSERT_FALSE(blocks.empty()) << path;
  Scenario scenario;
  std::vector<std::vector<std::string>> outputs;
  for (const Block& block : blocks) {
    absl::StatusOr<std::vector<std::string>> printed = scenario.Execute(block.command);
    ASSERT_TRUE(printed.ok()) << path << ":" << block.line << ": " << printed.status();
    outputs.push_back(*printed);
    if (!std::getenv("STANZAD_REWRITE")) {
      EXPECT_EQ(absl::StrJoin(*printed, "\n"), absl::StrJoin(block.expected, "\n"))
          << path << ":" << block.line << ": `" << block.command << "`";
    }
  }
  if (std::getenv("STANZAD_REWRITE")) {
    std::ofstream(path) << Write(blocks, outputs);
  }
}

std::vector<std::string> Transcripts() {
  std::vector<std::string> files;
  const std::filesystem::path dir =
      std::filesystem::path(STANZAD_SOURCE_DIR) / "tests/unit/testdata/relay";
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".txt") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

INSTANTIATE_TEST_SUITE_P(Transcripts, RelayScenarioTest, ::testing::ValuesIn(Transcripts()),
                         [](const ::testing::TestParamInfo<std::string>& transcript) {
                           std::string name =
                               std::filesystem::path(transcript.param).stem().string();
                           for (char& ch : name) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace stanzad::cluster::relay
