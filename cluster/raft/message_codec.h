// The wire form of a Raft Message, for the cluster links that carry them between nodes.
//
// Layout (all integers little-endian, fixed width):
//   u8 version (1) | u8 type | u64 from | u64 to | u64 term | u64 index | u64 log_term |
//   u64 commit | u64 reject_hint | u8 flags (1: reject, 2: transfer) |
//   u32 entry count, then per entry: u64 term | u64 index | u8 type | u32 size | data |
//   u8 has_snapshot, then if 1: u64 index | u64 term | u32 member count, per member:
//   u64 id | u16 address size | address | u32 data size | data
//
// DecodeMessage never trusts its input: every length is checked against what remains and
// against MessageLimits, and a bad frame is an InvalidArgument error, never a crash or an
// allocation larger than the frame. Raft::Step checks the decoded message's meaning.
#ifndef STANZAD_CLUSTER_RAFT_MESSAGE_CODEC_H_
#define STANZAD_CLUSTER_RAFT_MESSAGE_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "cluster/raft/message.h"

namespace stanzad::raft {

inline constexpr uint8_t kMessageCodecVersion = 1;

struct MessageLimits {
  size_t frame_bytes_max = 64 << 20;  // a snapshot of the configuration fits many times
  size_t entries_max = 4096;
  size_t members_max = 1024;
};

// Appends the encoding of `message` to *out.
void EncodeMessage(const Message& message, std::string* out);
// The same without the snapshot's data, which is the encoding's last bytes: EncodeMessage
// is EncodeMessageHead, then message.snapshot->data (when there is a snapshot). For a sender
// that streams a large snapshot in parts without copying it whole.
void EncodeMessageHead(const Message& message, std::string* out);

absl::StatusOr<Message> DecodeMessage(std::string_view frame, const MessageLimits& limits = {});

}  // namespace stanzad::raft

#endif  // STANZAD_CLUSTER_RAFT_MESSAGE_CODEC_H_
