// The user-space work a stanza costs to cross from one node's lane to another's, without
// the kernel, the scheduler or the routers at either end (issue 13's CPU goal): the
// origin lane takes it into custody and frames it (cluster/relay), the link queues the
// lane frame, seals what it queued and the other side opens and parses it
// (cluster/data, cluster/node/link_auth.h), the destination lane checks, decides and
// answers, and the answers come back the same way and finish the custody. A run of
// `batch` stanzas per loop iteration is what one engine loop iteration carries.
//
// Steadier than the CPU seconds of real processes on a shared machine, so it is the one
// to compare builds with when cutting the cost of the path; the end-to-end figures stay
// bench/cross_node_cpu.py's.
//
//   build/bench/relay_path_bench [--benchmark_filter=...]
//
// Arguments: batch (stanzas per iteration), sealed (2: AES-256-GCM records, as the data
// links use without TLS where the CPU has AES-NI; 1: ChaCha20-Poly1305 records, as
// elsewhere and before; 0: the frames as they are, to see what sealing costs),
// to_known (1: the router passes the `to` it read, as it does; 0: the lane reads the
// stanza again, as before 7227ee0).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cluster/data/data_plane.h"
#include "cluster/node/frames.h"
#include "cluster/node/link_auth.h"
#include "cluster/relay/relay.h"
#include "core/base/check.h"

namespace stanzad::cluster::relay {
namespace {

// Every address is on one node: `node` (0: here).
class OneNodeRoutes final : public RouteLookup {
 public:
  explicit OneNodeRoutes(NodeId node) : node_(node) {}
  std::optional<NodeId> NodeOf(std::string_view) const override { return node_; }
  bool Claims(NodeId node, const std::string&) const override { return node == node_; }

 private:
  const NodeId node_;
};

View TwoNodes(NodeId other) {
  View view;
  view.member = true;
  view.leader = 1;
  view.members = {other};
  view.linked = {other};
  view.can_deliver = true;
  return view;
}

LinkCipher CipherOf(int64_t sealed) {
  return sealed == 2 ? LinkCipher::kAes256Gcm : LinkCipher::kChaCha20Poly1305;
}

// One direction of a data link: lane frames queued, then (sealed and opened) parsed.
class LinkDirection {
 public:
  // `sealed`: as the benchmark's argument (0: frames as they are).
  explicit LinkDirection(int64_t sealed)
      : sealed_(sealed != 0),
        sealer_(std::string(32, 'k'), CipherOf(sealed)),
        opener_(std::string(32, 'k'), CipherOf(sealed)) {}

  void Queue(const Send& send) {
    AppendFrame(FrameType::kLane, LaneFrameHead(0, send.shard, send.type), send.payload, &pending_);
  }
  template <typename OnFrame>
  void Carry(OnFrame&& on_frame) {
    if (sealed_) {
      sealer_.Seal(pending_, &records_);
      pending_.clear();
      CHECK(opener_.Open(&records_, &plain_).ok());
    } else {
      plain_.append(pending_);
      pending_.clear();
    }
    size_t offset = 0;
    while (true) {
      absl::StatusOr<std::optional<FrameView>> frame = ParseFrameViewAt(plain_, &offset);
      CHECK(frame.ok());
      if (!frame->has_value()) break;
      absl::StatusOr<LaneFrame> lane = DecodeLaneFrame((*frame)->payload);
      CHECK(lane.ok());
      on_frame(*lane);
    }
    plain_.erase(0, offset);
  }

 private:
  const bool sealed_;
  RecordSealer sealer_;
  RecordOpener opener_;
  std::string pending_, records_, plain_;
};

void BM_StanzaCrossesTwoLanes(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const int64_t sealed = state.range(1);
  const std::optional<std::string_view> to =
      state.range(2) != 0 ? std::optional<std::string_view>("b1.example.com") : std::nullopt;
  const OneNodeRoutes on_b(2), here(0);
  Options options;
  options.direct = true;
  Relay a(Lane{1, 0}, 1, "example.com", on_b, options);
  Relay b(Lane{2, 0}, 1, "example.com", here, options);
  a.SetView(0, TwoNodes(2));
  b.SetView(0, TwoNodes(1));
  // A call bridge's message as stanza-bench sends it (100 bytes of body).
  const std::string stanza =
      "<message from='b0.example.com' to='b1.example.com' id='1234567'><body>" +
      std::string(100, 'x') + "</body></message>";
  LinkDirection a_to_b(sealed), b_to_a(sealed);
  uint64_t now_ms = 1;
  uint64_t delivered = 0;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) a.Forward(now_ms, 7, 2, stanza, to);
    for (const Send& send : a.TakeReady().sends) a_to_b.Queue(send);
    a_to_b.Carry([&](const LaneFrame& frame) {
      b.OnFrame(now_ms, Lane{1, frame.from_shard}, frame.type, frame.payload);
    });
    Ready at_b = b.TakeReady();
    delivered += at_b.deliveries.size();
    for (const Send& send : at_b.sends) b_to_a.Queue(send);
    b_to_a.Carry([&](const LaneFrame& frame) {
      a.OnFrame(now_ms, Lane{2, frame.from_shard}, frame.type, frame.payload);
    });
    benchmark::DoNotOptimize(a.TakeReady());
    ++now_ms;
  }
  CHECK(delivered == static_cast<uint64_t>(state.iterations()) * static_cast<uint64_t>(batch));
  CHECK(a.custody_count() == 0);
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_StanzaCrossesTwoLanes)
    ->ArgNames({"batch", "sealed", "to_known"})
    ->Args({1, 2, 1})
    ->Args({16, 2, 1})
    ->Args({64, 2, 1})
    ->Args({64, 1, 1})
    ->Args({64, 0, 1})
    ->Args({64, 2, 0});

}  // namespace
}  // namespace stanzad::cluster::relay

BENCHMARK_MAIN();
