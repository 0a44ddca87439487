// Tokenizer throughput against libexpat doing the same framing job.
//
// The job: find every top-level element of an XMPP stream and its byte range,
// with the input arriving in recv-sized chunks. stanzad's Tokenizer does it
// while enforcing RFC 6120's restrictions; expat (what ejabberd's fast_xml and
// Prosody's lxp use) is driven through its streaming API with start/end
// handlers that track depth and record each depth-1 element's byte range.
//
// The corpus is generated deterministically: messages with bodies of 100 B to
// 4 KiB (a share of them non-ASCII), presence with caps and colibri stats,
// IQs with nested payloads, entity and character references.
//
//   build/bench/tokenizer_bench --benchmark_min_time=2
#include <expat.h>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>

#include "core/xml/tokenizer.h"

namespace {

constexpr std::string_view kHeader =
    "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.com'>";

// `reference_one_in`: one word separator in that many is an entity or character
// reference instead of a space.
std::string Text(std::mt19937& random, size_t bytes, bool non_ascii, unsigned reference_one_in) {
  static constexpr std::string_view kWords[] = {
      "bridge", "call", "meeting", "audio", "video", "participant", "joined", "left",   "the",
      "a",      "of",   "screen",  "share", "muted", "unmuted",     "room",   "quality"};
  static constexpr std::string_view kWide[] = {"Grüße", "会议", "参加者", "é", "😀", "Zürich"};
  std::string text;
  while (text.size() < bytes) {
    if (non_ascii && random() % 4 == 0) {
      text.append(kWide[random() % std::size(kWide)]);
    } else {
      text.append(kWords[random() % std::size(kWords)]);
    }
    if (random() % reference_one_in != 0) {
      text.push_back(' ');
      continue;
    }
    switch (random() % 4) {
      case 0:
        text.append(" &amp; ");
        break;
      case 1:
        text.append(" &lt;b&gt; ");
        break;
      case 2:
        text.append("&apos;");
        break;
      default:
        text.append("&#x20AC;");
        break;
    }
  }
  return text;
}

std::string Stanza(std::mt19937& random, int sequence, unsigned reference_one_in) {
  const std::string id = std::to_string(sequence);
  const std::string bridge = "cb" + std::to_string(random() % 200) + ".example.com";
  switch (random() % 10) {
    case 0:
    case 1:
      return "<presence from='" + bridge + "' to='focus@auth.example.com/focus' id='p" + id +
             "'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
             "node='https://jitsi.org/jicofo' ver='dxcVoC8iYuCcj8bN0uFz/aGmFFo='/>"
             "<stats xmlns='http://jitsi.org/protocol/colibri'><stat name='stress_level' "
             "value='0.013'/><stat name='participants' value='12'/></stats></presence>";
    case 2:
      return "<iq type='get' from='" + bridge + "' to='example.com' id='ping-" + id +
             "'><ping xmlns='urn:xmpp:ping'/></iq>";
    case 3:
      return "<iq type='set' from='" + bridge + "' to='focus@auth.example.com/focus' id='j" + id +
             "'><jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='a1b2c3'>"
             "<content creator='initiator' name='video'><transport "
             "xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='8hhy' pwd='asd88fgpdd777uzj'>"
             "<candidate component='1' foundation='1' generation='0' id='c" +
             id +
             "' ip='192.0.2.7' network='1' port='10000' priority='2130706431' protocol='udp' "
             "type='host'/></transport></content></jingle></iq>";
    default: {
      // Bodies from 100 B to 4 KiB, skewed towards the small end.
      size_t body = 100 + (random() % 100 < 80 ? random() % 400 : random() % 3996);
      return "<message from='" + bridge + "' to='user" + std::to_string(random() % 1000) +
             "@example.com/phone' type='chat' id='m" + id + "'><body>" +
             Text(random, body, random() % 4 == 0, reference_one_in) +
             "</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>";
    }
  }
}

struct Corpus {
  std::string bytes;
  int64_t stanzas = 0;
};

Corpus MakeCorpus(unsigned reference_one_in) {
  Corpus c;
  std::mt19937 random(42);
  c.bytes.append(kHeader);
  while (c.bytes.size() < 8 * 1024 * 1024) {
    c.bytes.append(Stanza(random, static_cast<int>(c.stanzas), reference_one_in));
    ++c.stanzas;
    if (random() % 50 == 0) c.bytes.push_back(' ');  // a whitespace keepalive
  }
  return c;
}

// Corpus 0, "mixed": a reference every ~24 words of a body (quotes, apostrophes,
// ampersands in chat text). Corpus 1, "reference-heavy": every ~5 words, a
// stress case for the paths that leave the vector scan.
const Corpus& GetCorpus(int64_t which) {
  static const Corpus mixed = MakeCorpus(24);
  static const Corpus heavy = MakeCorpus(5);
  return which == 0 ? mixed : heavy;
}

void BM_Tokenizer(benchmark::State& state) {
  const Corpus& corpus = GetCorpus(state.range(0));
  const size_t chunk_bytes = static_cast<size_t>(state.range(1));
  int64_t elements = 0;
  uint64_t checksum = 0;
  for (auto _ : state) {
    stanzad::xml::Tokenizer tokenizer;
    std::string_view rest = corpus.bytes;
    elements = 0;
    while (!rest.empty()) {
      const std::string_view chunk = rest.substr(0, chunk_bytes);
      rest.remove_prefix(chunk.size());
      tokenizer.Feed(chunk);
      for (auto token = tokenizer.Next(); token.type != stanzad::xml::TokenType::kNeedMoreData;
           token = tokenizer.Next()) {
        if (token.type == stanzad::xml::TokenType::kError) {
          state.SkipWithError(tokenizer.error().text.c_str());
          return;
        }
        if (token.type == stanzad::xml::TokenType::kElement) {
          ++elements;
          checksum += token.bytes.size();
        }
      }
    }
    benchmark::DoNotOptimize(checksum);
  }
  if (elements != corpus.stanzas) state.SkipWithError("wrong element count");
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(corpus.bytes.size()));
  state.SetItemsProcessed(state.iterations() * corpus.stanzas);
}

struct ExpatFraming {
  XML_Parser parser = nullptr;
  int depth = 0;
  int64_t elements = 0;
  int64_t element_start = 0;
  uint64_t checksum = 0;
};

void XMLCALL OnStart(void* data, const XML_Char*, const XML_Char**) {
  auto* framing = static_cast<ExpatFraming*>(data);
  if (++framing->depth == 2) framing->element_start = XML_GetCurrentByteIndex(framing->parser);
}

void XMLCALL OnEnd(void* data, const XML_Char*) {
  auto* framing = static_cast<ExpatFraming*>(data);
  if (framing->depth-- == 2) {
    ++framing->elements;
    framing->checksum +=
        static_cast<uint64_t>(XML_GetCurrentByteIndex(framing->parser) - framing->element_start);
  }
}

void RunExpat(benchmark::State& state, bool namespaces) {
  const Corpus& corpus = GetCorpus(state.range(0));
  const size_t chunk_bytes = static_cast<size_t>(state.range(1));
  int64_t elements = 0;
  for (auto _ : state) {
    ExpatFraming framing;
    framing.parser = namespaces ? XML_ParserCreateNS("UTF-8", ' ') : XML_ParserCreate("UTF-8");
    XML_SetUserData(framing.parser, &framing);
    XML_SetElementHandler(framing.parser, OnStart, OnEnd);
    std::string_view rest = corpus.bytes;
    while (!rest.empty()) {
      const std::string_view chunk = rest.substr(0, chunk_bytes);
      rest.remove_prefix(chunk.size());
      if (XML_Parse(framing.parser, chunk.data(), static_cast<int>(chunk.size()), 0) ==
          XML_STATUS_ERROR) {
        state.SkipWithError(XML_ErrorString(XML_GetErrorCode(framing.parser)));
        XML_ParserFree(framing.parser);
        return;
      }
    }
    elements = framing.elements;
    benchmark::DoNotOptimize(framing.checksum);
    XML_ParserFree(framing.parser);
  }
  if (elements != corpus.stanzas) state.SkipWithError("wrong element count");
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(corpus.bytes.size()));
  state.SetItemsProcessed(state.iterations() * corpus.stanzas);
}

void BM_Expat(benchmark::State& state) { RunExpat(state, false); }
void BM_ExpatNamespaces(benchmark::State& state) { RunExpat(state, true); }

// Args: {corpus (0 mixed, 1 reference-heavy), read size}. 64 KiB: a recv into a
// provided buffer; 4 KiB: small reads, so more elements span two reads.
BENCHMARK(BM_Tokenizer)
    ->ArgNames({"corpus", "read"})
    ->Args({0, 64 * 1024})
    ->Args({0, 4 * 1024})
    ->Args({1, 64 * 1024})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Expat)
    ->ArgNames({"corpus", "read"})
    ->Args({0, 64 * 1024})
    ->Args({0, 4 * 1024})
    ->Args({1, 64 * 1024})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ExpatNamespaces)
    ->ArgNames({"corpus", "read"})
    ->Args({0, 64 * 1024})
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  for (int which = 0; which < 2; ++which) {
    const Corpus& corpus = GetCorpus(which);
    std::printf("corpus %d (%s): %zu bytes, %lld stanzas, mean %.0f bytes/stanza\n", which,
                which == 0 ? "mixed" : "reference-heavy", corpus.bytes.size(),
                static_cast<long long>(corpus.stanzas),
                static_cast<double>(corpus.bytes.size()) / static_cast<double>(corpus.stanzas));
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
