#include "server/shard_mail.h"

#include "core/base/check.h"

namespace stanzad {

ShardMail::ShardMail(int shards, size_t full_records)
    : full_records_(full_records), mail_(static_cast<size_t>(shards)) {}

void ShardMail::Send(const Post& post, int shard, uint32_t kind, uint64_t target, uint64_t argument,
                     std::string_view payload) {
  CHECK(shard >= 0 && static_cast<size_t>(shard) < mail_.size());
  std::deque<Letter>& waiting = mail_[static_cast<size_t>(shard)];
  if (waiting.empty() && post(shard, kind, target, argument, payload)) return;
  waiting.push_back({kind, target, argument, std::string(payload)});
  ++waiting_;
}

void ShardMail::Flush(const Post& post) {
  if (waiting_ == 0) return;
  for (size_t shard = 0; shard < mail_.size(); ++shard) {
    std::deque<Letter>& waiting = mail_[shard];
    while (!waiting.empty()) {
      const Letter& letter = waiting.front();
      if (!post(static_cast<int>(shard), letter.kind, letter.target, letter.argument,
                letter.payload)) {
        break;
      }
      waiting.pop_front();
      --waiting_;
    }
  }
}

size_t ShardMail::Drop(uint32_t kind) {
  size_t dropped = 0;
  for (std::deque<Letter>& waiting : mail_) {
    for (const Letter& letter : waiting) dropped += letter.kind == kind;
    waiting.clear();
  }
  waiting_ = 0;
  return dropped;
}

}  // namespace stanzad
