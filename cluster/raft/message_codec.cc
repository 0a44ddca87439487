#include "cluster/raft/message_codec.h"

#include <memory>
#include <utility>

namespace stanzad::raft {

namespace {

void PutFixed(std::string* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

void PutBytes(std::string* out, const std::string& bytes, int size_bytes) {
  PutFixed(out, bytes.size(), size_bytes);
  out->append(bytes);
}

// Reads from a frame, failing (and staying failed) at the first short read.
class Reader {
 public:
  explicit Reader(std::string_view frame) : rest_(frame) {}

  bool ok() const { return ok_; }
  size_t remaining() const { return rest_.size(); }

  uint64_t Fixed(int bytes) {
    if (!ok_ || rest_.size() < static_cast<size_t>(bytes)) {
      ok_ = false;
      return 0;
    }
    uint64_t value = 0;
    for (int i = 0; i < bytes; ++i) {
      value |= static_cast<uint64_t>(static_cast<unsigned char>(rest_[i])) << (8 * i);
    }
    rest_.remove_prefix(static_cast<size_t>(bytes));
    return value;
  }

  std::string Bytes(int size_bytes) {
    uint64_t size = Fixed(size_bytes);
    if (!ok_ || rest_.size() < size) {
      ok_ = false;
      return {};
    }
    std::string out(rest_.substr(0, size));
    rest_.remove_prefix(size);
    return out;
  }

 private:
  std::string_view rest_;
  bool ok_ = true;
};

absl::Status Malformed(const char* what) {
  return absl::InvalidArgumentError(std::string("malformed raft message: ") + what);
}

// The smallest encodings, to bound counts by the bytes left before allocating.
constexpr size_t kEntryBytesMin = 8 + 8 + 1 + 4;
constexpr size_t kMemberBytesMin = 8 + 2;

}  // namespace

void EncodeMessage(const Message& m, std::string* out) {
  EncodeMessageHead(m, out);
  if (m.snapshot != nullptr) out->append(m.snapshot->data);
}

void EncodeMessageHead(const Message& m, std::string* out) {
  PutFixed(out, kMessageCodecVersion, 1);
  PutFixed(out, static_cast<uint8_t>(m.type), 1);
  PutFixed(out, m.from, 8);
  PutFixed(out, m.to, 8);
  PutFixed(out, m.term, 8);
  PutFixed(out, m.index, 8);
  PutFixed(out, m.log_term, 8);
  PutFixed(out, m.commit, 8);
  PutFixed(out, m.reject_hint, 8);
  PutFixed(out, (m.reject ? 1 : 0) | (m.transfer ? 2 : 0), 1);
  PutFixed(out, m.entries.size(), 4);
  for (const Entry& entry : m.entries) {
    PutFixed(out, entry.term, 8);
    PutFixed(out, entry.index, 8);
    PutFixed(out, static_cast<uint8_t>(entry.type), 1);
    PutBytes(out, entry.data, 4);
  }
  PutFixed(out, m.snapshot != nullptr ? 1 : 0, 1);
  if (m.snapshot != nullptr) {
    const SnapshotMetadata& meta = m.snapshot->metadata;
    PutFixed(out, meta.index, 8);
    PutFixed(out, meta.term, 8);
    PutFixed(out, meta.members.size(), 4);
    for (const Member& member : meta.members) {
      PutFixed(out, member.id, 8);
      PutBytes(out, member.address, 2);
    }
    PutFixed(out, m.snapshot->data.size(), 4);
  }
}

absl::StatusOr<Message> DecodeMessage(std::string_view frame, const MessageLimits& limits) {
  if (frame.size() > limits.frame_bytes_max) return Malformed("frame too large");
  Reader in(frame);
  if (in.Fixed(1) != kMessageCodecVersion) return Malformed("unknown version");
  Message m;
  uint64_t type = in.Fixed(1);
  if (type < static_cast<uint8_t>(MessageType::kPreVote) ||
      type > static_cast<uint8_t>(kMessageTypeMax)) {
    return Malformed("unknown type");
  }
  m.type = static_cast<MessageType>(type);
  m.from = in.Fixed(8);
  m.to = in.Fixed(8);
  m.term = in.Fixed(8);
  m.index = in.Fixed(8);
  m.log_term = in.Fixed(8);
  m.commit = in.Fixed(8);
  m.reject_hint = in.Fixed(8);
  uint64_t flags = in.Fixed(1);
  if (flags > 3) return Malformed("unknown flags");
  m.reject = (flags & 1) != 0;
  m.transfer = (flags & 2) != 0;
  uint64_t entry_count = in.Fixed(4);
  if (!in.ok()) return Malformed("truncated header");
  if (entry_count > limits.entries_max || entry_count * kEntryBytesMin > in.remaining()) {
    return Malformed("too many entries");
  }
  m.entries.reserve(entry_count);
  for (uint64_t i = 0; i < entry_count; ++i) {
    Entry entry;
    entry.term = in.Fixed(8);
    entry.index = in.Fixed(8);
    uint64_t entry_type = in.Fixed(1);
    if (entry_type > static_cast<uint8_t>(EntryType::kRemoveMember)) {
      return Malformed("unknown entry type");
    }
    entry.type = static_cast<EntryType>(entry_type);
    entry.data = in.Bytes(4);
    if (!in.ok()) return Malformed("truncated entry");
    m.entries.push_back(std::move(entry));
  }
  uint64_t has_snapshot = in.Fixed(1);
  if (!in.ok() || has_snapshot > 1) return Malformed("bad snapshot flag");
  if (has_snapshot == 1) {
    auto snapshot = std::make_shared<Snapshot>();
    snapshot->metadata.index = in.Fixed(8);
    snapshot->metadata.term = in.Fixed(8);
    uint64_t member_count = in.Fixed(4);
    if (!in.ok()) return Malformed("truncated snapshot");
    if (member_count > limits.members_max || member_count * kMemberBytesMin > in.remaining()) {
      return Malformed("too many members");
    }
    for (uint64_t i = 0; i < member_count; ++i) {
      Member member;
      member.id = in.Fixed(8);
      member.address = in.Bytes(2);
      if (!in.ok()) return Malformed("truncated member");
      snapshot->metadata.members.push_back(std::move(member));
    }
    snapshot->data = in.Bytes(4);
    if (!in.ok()) return Malformed("truncated snapshot data");
    m.snapshot = std::move(snapshot);
  }
  if (in.remaining() != 0) return Malformed("trailing bytes");
  return m;
}

}  // namespace stanzad::raft
