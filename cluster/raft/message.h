// The messages Raft nodes exchange. Plain data; the transport (cluster links) carries them
// between nodes and hands them to Raft::Step on the receiving side.
//
// Raft never trusts a message: a malformed, stale or unexpected one is ignored (Step returns
// an error status for the caller's log), never a crash.
#ifndef STANZAD_CLUSTER_RAFT_MESSAGE_H_
#define STANZAD_CLUSTER_RAFT_MESSAGE_H_

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "cluster/raft/types.h"

namespace stanzad::raft {

enum class MessageType : uint8_t {
  kPreVote = 1,  // "would you vote for me at `term`?" (term is not changed by either side)
  kPreVoteResponse = 2,
  kVote = 3,  // request a vote at `term`
  kVoteResponse = 4,
  kAppend = 5,  // log entries after (index, log_term), and the leader's commit index
  kAppendResponse = 6,
  kHeartbeat = 7,  // leadership keepalive with a commit index the follower may apply
  kHeartbeatResponse = 8,
  kSnapshot = 9,     // install `snapshot`; answered with kAppendResponse
  kTimeoutNow = 10,  // leadership transfer: campaign now, without pre-vote or stickiness
};

inline constexpr MessageType kMessageTypeMax = MessageType::kTimeoutNow;

std::string_view MessageTypeName(MessageType type);

struct Message {
  MessageType type = MessageType::kAppend;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  // The sender's term; for kPreVote the term the sender would campaign at, and for a granted
  // kPreVoteResponse that same term.
  Term term = 0;

  // kAppend: the entry just before `entries`. kVote/kPreVote: the candidate's last entry.
  // kAppendResponse: the index now known to match (accepted), or the rejected `index` of
  // the append (reject). With reject, `log_term` is the term at `reject_hint`.
  Index index = 0;
  Term log_term = 0;

  // kAppend/kHeartbeat: the index up to which the receiver may commit.
  Index commit = 0;

  std::vector<Entry> entries;  // kAppend only

  // Responses: the request was refused (vote not granted, append does not match).
  bool reject = false;
  // kAppendResponse with reject: the follower's guess of the last index that may match.
  Index reject_hint = 0;

  // kVote/kPreVote sent because of a leadership transfer: voters ignore leader stickiness.
  bool transfer = false;

  // kSnapshot only. Shared because one snapshot goes to many followers unchanged.
  std::shared_ptr<const Snapshot> snapshot;
};

}  // namespace stanzad::raft

#endif  // STANZAD_CLUSTER_RAFT_MESSAGE_H_
