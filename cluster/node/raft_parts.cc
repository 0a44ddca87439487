#include "cluster/node/raft_parts.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/status/status.h"
#include "cluster/raft/message_codec.h"
#include "core/config/byte_codec.h"

namespace stanzad::cluster {

std::string EncodeRaftPart(uint64_t total, uint64_t offset, std::string_view bytes) {
  config::ByteWriter w;
  w.PutU64(total);
  w.PutU64(offset);
  w.PutRaw(bytes);
  return w.Take();
}

void RaftPartSender::Send(const raft::Message& message, uint64_t now_ms) {
  if (message.snapshot == nullptr) return;
  const raft::SnapshotMetadata& metadata = message.snapshot->metadata;
  auto it = streams_.find(message.to);
  if (it != streams_.end() && it->second.index == metadata.index &&
      it->second.term == metadata.term &&
      (it->second.sent < it->second.total || now_ms < it->second.started_ms + kResendAfterMs)) {
    return;  // under way, or sent a moment ago: the receiver is installing it
  }
  Stream& stream = streams_[message.to];
  stream.snapshot = message.snapshot;
  stream.index = metadata.index;
  stream.term = metadata.term;
  stream.head.clear();
  raft::EncodeMessageHead(message, &stream.head);
  stream.total = stream.head.size() + stream.snapshot->data.size();
  stream.sent = 0;
  stream.started_ms = now_ms;
}

void RaftPartSender::Pump(const QueuedTo& queued_to, const SendPart& send_part) {
  for (auto it = streams_.begin(); it != streams_.end();) {
    const raft::NodeId peer = it->first;
    Stream& stream = it->second;
    const size_t total = stream.total;
    bool abandoned = false;
    while (stream.sent < total && queued_to(peer) < kQueuedBytesMax) {
      const size_t offset = stream.sent;
      const size_t n = std::min(kRaftPartBytes, total - offset);
      // The part's bytes: the rest of the head, then the data (views: no copy of the data).
      std::string_view from_head;
      if (offset < stream.head.size()) {
        from_head = std::string_view(stream.head).substr(offset, n);
      }
      const size_t data_offset = offset + from_head.size() - stream.head.size();
      const std::string_view from_data =
          std::string_view(stream.snapshot->data).substr(data_offset, n - from_head.size());
      config::ByteWriter w;
      w.PutU64(total);
      w.PutU64(offset);
      w.PutRaw(from_head);
      w.PutRaw(from_data);
      if (!send_part(peer, w.bytes())) {
        abandoned = true;  // no link: Raft sends it again, and then it goes anew
        break;
      }
      stream.sent += n;
    }
    if (!abandoned && stream.sent == total) stream.snapshot.reset();
    it = abandoned ? streams_.erase(it) : std::next(it);
  }
}

size_t RaftPartSender::active() const {
  return static_cast<size_t>(std::count_if(streams_.begin(), streams_.end(), [](const auto& entry) {
    return entry.second.sent < entry.second.total;
  }));
}

absl::StatusOr<std::optional<RaftPartAssembler::Whole>> RaftPartAssembler::Add(
    raft::NodeId peer, std::string_view payload, uint64_t now_ms) {
  config::ByteReader r(payload);
  uint64_t total = 0;
  uint64_t offset = 0;
  if (!r.GetU64(&total) || !r.GetU64(&offset)) {
    assemblies_.erase(peer);
    return absl::InvalidArgumentError("a message part shorter than its header");
  }
  const std::string_view bytes = payload.substr(16);
  if (total == 0 || total > kRaftMessageBytesMax) {
    assemblies_.erase(peer);
    return absl::InvalidArgumentError("a message in parts larger than a snapshot may be");
  }
  // A new message: whatever came before is void, from every peer. Only a leader sends
  // snapshots, and a new leader's supersedes the old one's: so one message is held at a
  // time, whatever the number of members.
  if (offset == 0) assemblies_.clear();
  Assembly& assembly = assemblies_[peer];
  if (offset == 0) {
    assembly.total = total;
    assembly.first_ms = now_ms;
    // Pages are touched only as parts arrive; beyond this the string grows as it must.
    assembly.bytes.reserve(std::min<uint64_t>(total, uint64_t{256} << 20));
  }
  if (assembly.total != total || offset != assembly.bytes.size() || bytes.size() > total - offset ||
      bytes.empty()) {
    assemblies_.erase(peer);
    return absl::InvalidArgumentError("a message part out of order");
  }
  assembly.bytes.append(bytes);
  assembly.last_ms = now_ms;
  if (assembly.bytes.size() < total) return std::nullopt;
  Whole whole{std::move(assembly.bytes), assembly.first_ms};
  assemblies_.erase(peer);
  return whole;
}

void RaftPartAssembler::Expire(uint64_t now_ms) {
  std::erase_if(assemblies_,
                [now_ms](const auto& entry) { return now_ms >= entry.second.last_ms + kIdleMs; });
}

size_t RaftPartAssembler::held_bytes() const {
  size_t bytes = 0;
  for (const auto& [peer, assembly] : assemblies_) bytes += assembly.bytes.size();
  return bytes;
}

}  // namespace stanzad::cluster
