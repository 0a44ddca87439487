// stanza-frame: runs the stanzad tokenizer over a captured XMPP stream and
// prints what the server would see: the stream header, each stanza, the
// stream end, or the stream error it would send before closing.
//
//   stanza-frame tests/data/streams/client_session.xml
//   printf '<stream:stream ...><m>&nbsp;</m>' | stanza-frame
//
// Exit status: 0 if every input was a well-formed stream, 1 if any input drew a
// stream error, 2 on a usage or I/O error.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "core/xml/tokenizer.h"
#include "core/xmpp/stream_error.h"
#include "server/flags_usage.h"

ABSL_FLAG(size_t, chunk_bytes, 4096,
          "Feed the input to the tokenizer in reads of this many bytes, as a socket would "
          "deliver it (1 = byte by byte). The result does not depend on it.");
ABSL_FLAG(size_t, stanza_bytes_max, 256 * 1024,
          "Largest stanza accepted, in bytes; a larger one is a policy-violation stream error.");
ABSL_FLAG(uint32_t, depth_max, 64, "Deepest element nesting accepted inside the stream.");
ABSL_FLAG(bool, print_stanzas, true, "Print each stanza's bytes, not just its name and size.");

namespace {

using stanzad::xml::Token;
using stanzad::xml::Tokenizer;
using stanzad::xml::TokenType;

// Returns true if the stream was well formed.
bool FrameStream(std::istream& in, const std::string& label) {
  stanzad::xml::TokenizerLimits limits;
  limits.stanza_bytes_max = absl::GetFlag(FLAGS_stanza_bytes_max);
  limits.depth_max = absl::GetFlag(FLAGS_depth_max);
  Tokenizer tokenizer(limits);
  std::vector<char> buffer(std::max<size_t>(1, absl::GetFlag(FLAGS_chunk_bytes)));
  int stanzas = 0;
  std::printf("== %s\n", label.c_str());
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize got = in.gcount();
    if (got <= 0) break;
    tokenizer.Feed(std::string_view(buffer.data(), static_cast<size_t>(got)));
    for (Token token = tokenizer.Next(); token.type != TokenType::kNeedMoreData;
         token = tokenizer.Next()) {
      switch (token.type) {
        case TokenType::kStreamHeader: {
          const auto& header = tokenizer.header();
          std::printf("stream header <%s>", header.name.c_str());
          for (const auto& attribute : header.attributes) {
            std::printf(" %s=%s", attribute.name.c_str(), attribute.value.c_str());
          }
          for (const auto& ns : header.namespaces) {
            std::printf(" xmlns%s%s=%s", ns.prefix.empty() ? "" : ":", ns.prefix.c_str(),
                        ns.uri.c_str());
          }
          std::printf("\n");
          break;
        }
        case TokenType::kElement:
          ++stanzas;
          std::printf("stanza %d <%.*s> %zu bytes", stanzas, static_cast<int>(token.name.size()),
                      token.name.data(), token.bytes.size());
          if (absl::GetFlag(FLAGS_print_stanzas)) {
            std::printf(": %.*s", static_cast<int>(token.bytes.size()), token.bytes.data());
          }
          std::printf("\n");
          break;
        case TokenType::kStreamEnd:
          std::printf("stream end after %d stanzas\n", stanzas);
          break;
        case TokenType::kError:
          std::printf(
              "stream error at byte %llu: %s (%s)\n  would send: %s\n",
              static_cast<unsigned long long>(tokenizer.offset()),
              std::string(stanzad::xmpp::StreamErrorConditionName(tokenizer.error().condition))
                  .c_str(),
              tokenizer.error().text.c_str(),
              stanzad::xmpp::SerializeStreamError(tokenizer.error()).c_str());
          return false;
        case TokenType::kNeedMoreData:
          break;
      }
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  stanzad::ConfigureFlagsUsage(
      "Frames a captured XMPP stream with stanzad's tokenizer and prints each stanza or the "
      "stream error.\nUsage: stanza-frame [flags] [FILE...]   (no FILE: read standard input)",
      "stanza-frame");
  std::vector<char*> files = absl::ParseCommandLine(argc, argv);
  bool all_well_formed = true;
  if (files.size() <= 1) {
    all_well_formed = FrameStream(std::cin, "standard input");
  }
  for (size_t i = 1; i < files.size(); ++i) {
    std::ifstream in(files[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "stanza-frame: cannot open %s: %s\n", files[i], std::strerror(errno));
      return 2;
    }
    all_well_formed = FrameStream(in, files[i]) && all_well_formed;
  }
  return all_well_formed ? 0 : 1;
}
