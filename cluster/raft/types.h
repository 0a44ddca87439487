// Value types shared by the Raft state machine, its durable storage and the
// replicated configuration. Plain data: no behaviour, no I/O.
#ifndef STANZAD_CLUSTER_RAFT_TYPES_H_
#define STANZAD_CLUSTER_RAFT_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace stanzad::raft {

// A node's identity: a random 64-bit value made once per node and kept on disk.
// 0 is never a valid id ("none").
using NodeId = uint64_t;
using Term = uint64_t;
using Index = uint64_t;

inline constexpr NodeId kNoNode = 0;

// A cluster member: its durable id and the address (host:port) of its cluster port.
struct Member {
  NodeId id = kNoNode;
  std::string address;

  friend bool operator==(const Member&, const Member&) = default;
};

enum class EntryType : uint8_t {
  kNormal = 0,        // data: a replicated configuration command (opaque to Raft)
  kNoop = 1,          // appended by each new leader at the start of its term
  kAddMember = 2,     // data: an encoded Member
  kRemoveMember = 3,  // data: an encoded Member (only its id is used)
};

struct Entry {
  Term term = 0;
  Index index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;

  friend bool operator==(const Entry&, const Entry&) = default;
};

// What must be on disk before a message that depends on it is sent.
struct HardState {
  Term term = 0;
  NodeId vote = kNoNode;
  Index commit = 0;

  friend bool operator==(const HardState&, const HardState&) = default;
};

struct SnapshotMetadata {
  Index index = 0;              // last entry the snapshot covers
  Term term = 0;                // term of that entry
  std::vector<Member> members;  // membership as of `index`

  friend bool operator==(const SnapshotMetadata&, const SnapshotMetadata&) = default;
};

struct Snapshot {
  SnapshotMetadata metadata;
  std::string data;  // the replicated configuration state, serialised

  friend bool operator==(const Snapshot&, const Snapshot&) = default;
};

// The longest member address accepted (host:port; a DNS name is at most 253 bytes).
inline constexpr size_t kMemberAddressBytesMax = 300;

// The data of a kAddMember / kRemoveMember entry: the id as 8 bytes little-endian,
// then the address bytes. Shared by Raft, its storage and the configuration state machine,
// so that all of them read membership entries the same way.
inline std::string EncodeMember(const Member& member) {
  std::string out;
  out.reserve(8 + member.address.size());
  for (int shift = 0; shift < 64; shift += 8) {
    out.push_back(static_cast<char>((member.id >> shift) & 0xff));
  }
  out.append(member.address);
  return out;
}

// Returns false, leaving *member unspecified, when `data` is not an encoding that
// EncodeMember could have made for a valid member (too short, id 0, address too long).
inline bool DecodeMember(std::string_view data, Member* member) {
  if (data.size() < 8 || data.size() - 8 > kMemberAddressBytesMax) return false;
  NodeId id = 0;
  for (int i = 0; i < 8; ++i) {
    id |= static_cast<NodeId>(static_cast<unsigned char>(data[i])) << (8 * i);
  }
  if (id == kNoNode) return false;
  member->id = id;
  member->address.assign(data.substr(8));
  return true;
}

}  // namespace stanzad::raft

#endif  // STANZAD_CLUSTER_RAFT_TYPES_H_
