// Fuzzes the relay (cluster/relay/relay.h) and its route directory (directory.h) as a hostile
// or confused member would drive them: frames of every relay type from members (built from
// the encoders, routes digests and set requests among them, and raw bytes), interleaved with
// time, membership and link changes, local routes and stanzas to forward. After every step
// the relay's own invariants hold and what it keeps stays within its bounds; a crash or a
// CHECK is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cluster/relay/directory.h"
#include "cluster/relay/relay.h"
#include "cluster/relay/wire.h"

namespace {

using namespace stanzad::cluster::relay;

constexpr NodeId kSelf = 1;
constexpr size_t kMembers = 3;     // nodes 2..4
constexpr uint32_t kLanesMax = 3;  // per member

void Check(bool ok) {
  if (!ok) std::abort();
}

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return at_ >= size_; }
  uint8_t Byte() { return at_ < size_ ? data_[at_++] : 0; }
  uint64_t Small() { return Byte() % 8; }   // sequences, incarnations: collide often
  NodeId Node() { return 2 + Byte() % 4; }  // a member, or 5: not one
  // A lane of `node`: one of its lanes, or one past them.
  Lane LaneOf(NodeId node) { return {node, static_cast<uint16_t>(Byte() % (kLanesMax + 1))}; }
  std::string Bytes(size_t max) {
    const size_t n = std::min<size_t>(Byte() % (max + 1), size_ - std::min(at_, size_));
    std::string out(reinterpret_cast<const char*>(data_ + at_), n);
    at_ += n;
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

const char* const kBridges[] = {"cb1.example.com", "cb2.example.com", "a@example.com",
                                "a@example.com/r", "other.org"};

std::string Stanza(Input& in) {
  const std::string to = kBridges[in.Byte() % 5];
  const std::string from = in.Byte() % 4 == 0 ? "x@evil.org" : "u@example.com/r";
  return "<message from='" + from + "' to='" + to + "' id='" + std::to_string(in.Byte()) + "'/>";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  Options options;
  options.direct = in.Byte() % 2 == 0;
  options.hold_bytes_max = 4096;
  options.decisions_max = 16;
  options.incarnations_max = 2;
  options.resend_bytes_per_tick = 1024;
  DirectoryOptions routes_options;
  routes_options.routes_frame_bytes_max = 1 + in.Small();
  routes_options.routes_queued_bytes_max = 1 + in.Small();
  Directory directory(routes_options);
  const Lane self{kSelf, static_cast<uint16_t>(in.Byte() % 2)};
  Relay relay(self, 1 + in.Small(), "example.com", directory, options);
  View view;
  view.member = true;
  view.can_deliver = true;
  for (NodeId node = 2; node < 2 + kMembers; ++node) {
    view.members.insert(node);
    view.linked.insert(node);
    view.lanes[node] = 1 + in.Byte() % kLanesMax;
  }
  uint64_t now_ms = 1000;
  const auto set_view = [&] {
    directory.SetView(view);
    relay.SetView(now_ms, view);
  };
  set_view();
  while (!in.empty()) {
    const NodeId peer = 2 + in.Byte() % (kMembers + 1);  // 5: not a member
    switch (in.Byte() % 12) {
      case 0:
        now_ms += 50 * in.Byte();
        directory.Tick(now_ms);
        relay.Tick(now_ms);
        break;
      case 1:
        if (view.linked.count(peer) != 0) {
          view.linked.erase(peer);
        } else if (view.members.count(peer) != 0) {
          view.linked.insert(peer);
          directory.LinkUp(peer);
        }
        set_view();
        break;
      case 2:
        view.leader = in.Byte() % 2 ? peer : kSelf;
        if (in.Byte() % 8 == 0) view.members.erase(peer);
        if (in.Byte() % 8 == 0) view.can_deliver = !view.can_deliver;
        if (in.Byte() % 8 == 0) view.lanes[peer] = 1 + in.Byte() % kLanesMax;
        set_view();
        break;
      case 3:
        if (in.Byte() % 2 == 0) {
          const std::string address = kBridges[in.Byte() % 5];
          directory.LocalRoute(true, address);
          relay.RouteBound(now_ms, address);
        } else {
          directory.LocalRoute(false, kBridges[in.Byte() % 5]);
        }
        break;
      case 4:
        relay.Forward(now_ms, in.Byte(), peer, Stanza(in));
        break;
      case 5: {
        const std::string stanza = Stanza(in);
        const Lane from = in.LaneOf(peer);
        const Lane origin = in.LaneOf(in.Node());
        const Lane destination = in.Byte() % 2 ? self : in.LaneOf(peer);
        relay.OnFrame(now_ms, from, FrameType::kStanza,
                      EncodeStanza({origin, 1 + in.Small(), 1 + in.Small(), in.Small(), destination,
                                    static_cast<uint8_t>(in.Small()), stanza}));
        break;
      }
      case 6: {
        const Lane from = in.LaneOf(peer);
        AbortFrame abort{
            in.LaneOf(in.Node()), 1 + in.Small(), 0, in.Byte() % 2 ? self : in.LaneOf(peer), 0, {}};
        for (uint64_t sequence = 1 + in.Small(); abort.sequences.size() < in.Small() + 1;
             sequence += 1 + in.Small()) {
          abort.sequences.push_back(sequence);
        }
        relay.OnFrame(now_ms, from, FrameType::kAbort, EncodeAbort(abort));
        break;
      }
      case 7: {
        const Lane from = in.LaneOf(peer);
        const uint16_t origin_shard = in.Byte() % 2 ? self.shard : in.Byte() % kLanesMax;
        AnswerFrame answers{1 + in.Small(), origin_shard, in.LaneOf(in.Node()), {}};
        for (uint64_t n = in.Small(); n > 0; --n) {
          answers.answers.emplace_back(in.Small(),
                                       in.Byte() % 2 ? Outcome::kDelivered : Outcome::kAborted);
        }
        const std::string payload = EncodeAnswers(answers);
        if (in.Byte() % 2) {
          relay.OnFrame(now_ms, from, FrameType::kAck, payload);
        } else {
          const Lane origin = in.Byte() % 2 ? self : Lane{peer, origin_shard};
          relay.OnFrame(now_ms, from, FrameType::kAckRelay, EncodeAckRelay(origin, payload));
        }
        break;
      }
      case 8: {
        RoutesFrame routes{
            static_cast<RoutesPart>(in.Byte() % (static_cast<int>(kLastRoutesPart) + 1)), {}, {}};
        if (routes.part == RoutesPart::kDigest) {
          // Of a few of the bridges: it matches what the member claims here now and then.
          const uint8_t which = in.Byte();
          for (int i = 0; i < 5; ++i) {
            if ((which >> i) & 1) routes.digest.Add(kBridges[i]);
          }
          if (in.Byte() % 4 == 0) routes.digest.count = in.Small();
        } else if (routes.part != RoutesPart::kSetRequest) {
          for (uint64_t n = in.Small(); n > 0; --n) {
            routes.updates.push_back({in.Byte() % 2 == 0, kBridges[in.Byte() % 5]});
          }
        }
        directory.OnRoutes(peer, EncodeRoutes(routes));
        break;
      }
      default: {  // raw bytes as any relay frame
        const FrameType types[] = {FrameType::kStanza, FrameType::kAbort, FrameType::kAck,
                                   FrameType::kAckRelay, FrameType::kRoutes};
        const FrameType type = types[in.Byte() % 5];
        if (type == FrameType::kRoutes) {
          directory.OnRoutes(peer, in.Bytes(64));
        } else {
          relay.OnFrame(now_ms, in.LaneOf(peer), type, in.Bytes(64));
        }
        break;
      }
    }
    for (const RouteChange& change : directory.TakeReady().route_changes) {
      if (change.op == RouteChange::Op::kBind) relay.RouteBound(now_ms, change.address);
    }
    (void)relay.TakeReady();
    relay.CheckInvariants();
    directory.CheckInvariants();
    Check(relay.custody_bytes() <= options.hold_bytes_max);
    Check(relay.decisions_count() <=
          kMembers * kLanesMax * options.incarnations_max * options.decisions_max);
  }
  return 0;
}
