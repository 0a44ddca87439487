// Fuzzes what a node reads from its cluster port: the framing (with the bound of an
// authenticated link and of one that has not authenticated yet), every frame decoder
// (authentication hello and challenge, Raft message, request, reply, remove target; the
// relay's routes, stanza, abort and answers; Raft message parts, joined) and the sealed-record
// opener, fed in arbitrary chunks. A decoded value must encode back to what was decoded.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cluster/config_state_machine.h"
#include "cluster/data/data_plane.h"
#include "cluster/node/frames.h"
#include "cluster/node/link_auth.h"
#include "cluster/node/raft_parts.h"
#include "cluster/raft/message_codec.h"
#include "cluster/relay/wire.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

void Decode(const stanzad::cluster::Frame& frame) {
  using namespace stanzad::cluster;
  switch (frame.type) {
    case FrameType::kLegacyHello:
    case FrameType::kAuthProof:
    case FrameType::kAuthRefused:
      return;
    case FrameType::kAuthHello:
      if (auto hello = DecodeAuthHello(frame.payload); hello.ok()) {
        Check(EncodeAuthHello(*hello) == frame.payload);
      }
      return;
    case FrameType::kAuthChallenge:
      for (const bool with_cipher : {false, true}) {
        if (auto challenge = DecodeAuthChallenge(frame.payload, with_cipher); challenge.ok()) {
          Check(challenge->cipher.has_value() == with_cipher);
          Check(EncodeAuthChallenge(*challenge) == frame.payload);
        }
      }
      return;
    case FrameType::kRaft:
      (void)stanzad::raft::DecodeMessage(frame.payload);
      return;
    case FrameType::kRequest:
      if (auto request = DecodeRequest(frame.payload); request.ok()) {
        Check(EncodeRequest(*request) == frame.payload);
        (void)DecodeConfigCommand(request->body);
        (void)DecodeRemoveTarget(request->body);
      }
      return;
    case FrameType::kReply:
      (void)DecodeReply(frame.payload);
      return;
    case FrameType::kRoutes:
      if (auto routes = relay::DecodeRoutes(frame.payload); routes.ok()) {
        Check(relay::EncodeRoutes(*routes) == frame.payload);
      }
      return;
    case FrameType::kStanza:
      if (auto stanza = relay::DecodeStanza(frame.payload); stanza.ok()) {
        Check(relay::EncodeStanza(*stanza) == frame.payload);
      }
      return;
    case FrameType::kAbort:
      if (auto abort = relay::DecodeAbort(frame.payload); abort.ok()) {
        Check(relay::EncodeAbort(*abort) == frame.payload);
      }
      return;
    case FrameType::kAck:
      if (auto answers = relay::DecodeAnswers(frame.payload); answers.ok()) {
        Check(relay::EncodeAnswers(*answers) == frame.payload);
      }
      return;
    case FrameType::kAckRelay:
      if (auto relayed = relay::DecodeAckRelay(frame.payload); relayed.ok()) {
        Check(relay::EncodeAckRelay(relayed->first, relayed->second) == frame.payload);
        Check(relay::DecodeAnswers(relayed->second).ok());
      }
      return;
    case FrameType::kDataPlane:
      if (auto info = DecodeDataPlaneInfo(frame.payload); info.ok()) {
        Check(EncodeDataPlaneInfo(*info) == frame.payload);
      }
      return;
    case FrameType::kDataPing:
      return;
    case FrameType::kRaftPart: {
      // Parts from one peer, joined as a node joins them: a whole message is decoded.
      static RaftPartAssembler assembler;
      auto whole = assembler.Add(1, frame.payload, 0);
      if (whole.ok() && whole->has_value()) {
        Check((*whole)->bytes.size() <= kRaftMessageBytesMax);
        (void)stanzad::raft::DecodeMessage((*whole)->bytes,
                                           {.frame_bytes_max = kRaftMessageBytesMax});
      }
      Check(assembler.held_bytes() <= kRaftMessageBytesMax);
      return;
    }
    case FrameType::kLane:
      if (auto lane = DecodeLaneFrame(frame.payload); lane.ok()) {
        Check(EncodeLaneFrame(lane->from_shard, lane->to_shard, lane->type, lane->payload) ==
              frame.payload);
      }
      return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the read size, as the socket would split the stream.
  const size_t chunk = 1 + data[0] % 64;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  // As an authenticated link reads (frames up to kFrameBytesMax) and as a link that has
  // not authenticated yet does (frames up to kAuthFrameBytesMax: nothing longer is held).
  for (const size_t frame_bytes_max :
       {stanzad::cluster::kFrameBytesMax, stanzad::cluster::kAuthFrameBytesMax}) {
    std::string buffer;
    bool closed = false;
    for (size_t at = 0; at < input.size() && !closed; at += chunk) {
      buffer.append(input.substr(at, chunk));
      while (true) {
        auto frame = stanzad::cluster::TakeFrame(&buffer, frame_bytes_max);
        if (!frame.ok()) {  // the link would be closed here
          closed = true;
          break;
        }
        if (!frame->has_value()) break;
        Check((*frame)->payload.size() < frame_bytes_max);
        Decode(**frame);
      }
    }
  }
  // As a sealed link opens records, with either cipher: never more plaintext than was
  // fed, never a crash.
  for (const auto cipher : {stanzad::cluster::LinkCipher::kChaCha20Poly1305,
                            stanzad::cluster::LinkCipher::kAes256Gcm}) {
    stanzad::cluster::RecordOpener opener(std::string(stanzad::cluster::kClusterKeyBytes, 'k'),
                                          cipher);
    std::string records, plaintext;
    for (size_t at = 0; at < input.size(); at += chunk) {
      records.append(input.substr(at, chunk));
      if (!opener.Open(&records, &plaintext).ok()) break;
      Check(plaintext.size() <= at + chunk);
    }
  }
  return 0;
}
