// libFuzzer target for the streaming tokenizer.
//
// Oracle: the tokens (and the error, with its offset) must be the same whether
// the input is fed whole or in chunks whose sizes the input itself chooses; any
// crash, sanitizer report or mismatch is a finding. The first byte picks the
// chunking seed and whether small limits apply; half the inputs get a valid
// stream header prepended so the fuzzer spends its time inside stanzas.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/xml/tokenizer.h"

namespace {

using stanzad::xml::Token;
using stanzad::xml::Tokenizer;
using stanzad::xml::TokenizerLimits;
using stanzad::xml::TokenType;

struct Event {
  TokenType type;
  std::string bytes;
  int condition;
  uint64_t offset;
  bool operator==(const Event&) const = default;
};

std::vector<Event> Run(std::string_view input, const TokenizerLimits& limits, uint32_t seed) {
  Tokenizer tokenizer(limits);
  std::vector<Event> events;
  size_t at = 0;
  while (at < input.size()) {
    size_t size = input.size() - at;
    if (seed != 0) {
      seed = seed * 1103515245u + 12345u;
      size = std::min<size_t>(size, 1 + (seed >> 16) % 64);
    }
    std::string chunk(input.substr(at, size));  // own allocation: stale views trip ASan
    at += size;
    tokenizer.Feed(chunk);
    while (true) {
      Token token = tokenizer.Next();
      if (token.type == TokenType::kNeedMoreData) break;
      if (token.type == TokenType::kError) {
        events.push_back(
            {token.type, "", static_cast<int>(tokenizer.error().condition), tokenizer.offset()});
        return events;
      }
      events.push_back({token.type, std::string(token.bytes), 0, 0});
    }
  }
  return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = data[0];
  std::string input;
  if (control & 1) {
    input =
        "<stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='example.com'>";
  }
  input.append(reinterpret_cast<const char*>(data + 1), size - 1);
  TokenizerLimits limits;
  if (control & 2) {
    limits.stanza_bytes_max = 64;
    limits.header_bytes_max = 160;
    limits.depth_max = 4;
    limits.attributes_max = 3;
    limits.name_bytes_max = 6;
  }
  const std::vector<Event> whole = Run(input, limits, 0);
  const std::vector<Event> split = Run(input, limits, 1u + (control >> 2));
  if (whole != split) {
    std::fprintf(stderr, "tokens differ between whole and split input\n");
    std::abort();
  }
  return 0;
}
