// DataLinks: one shard's links on the cluster's data port (docs/data-links.md, step 3).
//
// Each shard of a node keeps one outgoing link to every other member's data port (the
// port its kDataPlane frame announced, on the IP of its cluster address), dialled with a
// back-off (redial_ms_min doubling to redial_ms_max) while it is down, and accepts the
// links other members' shards dial. A shard sends on its outgoing links and reads what
// arrives on the links it accepted, so no link is shared between threads.
//
// Trust: exactly the cluster port's (docs/security.md). Every link runs the handshake of
// cluster/node/link_handshake.h with the cluster key before anything else is read — a
// join token is refused here (a joining node has no business on the data port) — and
// the peer must be a member by the configuration the shard was last given. What follows
// is sealed both ways (ChaCha20-Poly1305 records keyed by the handshake), or, on a
// cluster whose links use TLS, runs beneath mutual TLS with the cluster port's contexts
// and must present the certificate key bound to the peer's node id when it joined (then
// nothing is sealed twice).
//
// What a peer that has not authenticated can make a shard hold (DataLinkLimits), per
// shard: unauthenticated links in total (the oldest is closed for a newcomer, so idle
// ones cannot lock members out) and per IP address (a newcomer beyond it is refused at
// accept), bytes buffered (kAuthFrameBytesMax per frame, unauthenticated_bytes_max in
// all) and time (handshake_timeout_ms). Refusals are logged once a minute per peer and
// reason (event=data_link_refused).
//
// Liveness: an authenticated link sends kDataPing every ping_every_ms when it has sent
// nothing else; one that hears nothing for silence_ms_max is closed (and, outgoing,
// dialled again).
//
// What authenticated links carry is the caller's: frames other than kDataPing go to the
// frame handler (the shard's relay lane, server/node_shard.h). A member may keep its lane
// count plus one links here; the oldest beyond go.
//
// Thread safety: one instance per shard, on its thread only. DataLinkStats may be read
// from any thread.
#ifndef STANZAD_CLUSTER_DATA_DATA_LINKS_H_
#define STANZAD_CLUSTER_DATA_DATA_LINKS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "cluster/data/data_plane.h"
#include "cluster/node/frames.h"
#include "cluster/node/link_auth.h"
#include "cluster/node/link_handshake.h"
#include "net/engine.h"

namespace stanzad::cluster {

struct DataLinkLimits {
  uint64_t handshake_timeout_ms = 5000;         // connect + authentication
  size_t unauthenticated_links_max = 64;        // incoming, per shard
  size_t unauthenticated_links_per_ip_max = 8;  // incoming, from one IP address, per shard
  size_t unauthenticated_bytes_max = 64 << 10;  // buffered per link before authentication
  size_t frame_bytes_max = 2 << 20;             // once authenticated (a stanza is ≤ 1 MiB)
  // Queued on a link, sealed or not: below the engine's connection_queue_bytes_max, so
  // what Flush hands it always fits.
  size_t queue_bytes_max = 960 << 10;
  uint64_t ping_every_ms = 1000;
  uint64_t silence_ms_max = 5000;
  uint64_t redial_ms_min = 100;
  uint64_t redial_ms_max = 2000;
  // A member that refused the version 2 hello as an unknown version (an older stanzad,
  // or anyone answering at its address) is dialled with version 1 for this long, then
  // offered AES-256-GCM again: a refusal nobody authenticated changes nothing for good.
  uint64_t hello_version_1_ms = 10 * 60 * 1000;
};

// One shard's counters; written by its thread, read by any.
struct alignas(64) DataLinkStats {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> refused{0};        // at accept, or by the handshake (either side)
  std::atomic<uint64_t> authenticated{0};  // handshakes that succeeded (either side)
  std::atomic<uint64_t> frames_in{0};      // after authentication, pings included
  std::atomic<uint64_t> frames_out{0};
  // The members this shard's outgoing links reach now (authenticated).
  std::atomic<std::shared_ptr<const std::set<raft::NodeId>>> up{
      std::make_shared<const std::set<raft::NodeId>>()};
};

class DataLinks {
 public:
  // A frame from member `from` on an authenticated link (never a handshake frame or a
  // ping); its payload is valid only during the call.
  using FrameHandler = std::function<void(raft::NodeId from, const FrameView& frame)>;

  // `config` and `stats` outlive this.
  DataLinks(const DataPlanePublisher* config, DataLinkLimits limits, DataLinkStats* stats);
  ~DataLinks();
  DataLinks(const DataLinks&) = delete;
  DataLinks& operator=(const DataLinks&) = delete;

  void set_frame_handler(FrameHandler handler) { on_frame_ = std::move(handler); }

  // The engine's calls for the connections of the data port and the links this dialled
  // (Owns), in the ShardHandler's terms.
  bool Owns(net::ConnectionId id) const { return links_.count(id) != 0; }
  bool OnAccept(net::Shard& shard, net::ConnectionId id, const net::Endpoint& peer);
  void OnConnected(net::Shard& shard, net::ConnectionId id);
  void OnData(net::Shard& shard, net::ConnectionId id, std::string_view bytes);
  void OnClosed(net::Shard& shard, net::ConnectionId id, const absl::Status& reason);
  void OnTick(net::Shard& shard, uint64_t now_ms);
  // A new DataPlaneConfig was published: links of members that left, or made with a
  // key that changed, close; new members are dialled on the next tick.
  void OnConfigChanged(net::Shard& shard);

  // Queues a frame to member `to` on this shard's outgoing link; false when that link is
  // not up (authenticated, and the peer answered since) or more than queue_bytes_max
  // wait on it. What is queued leaves at Flush.
  bool Send(net::Shard& shard, raft::NodeId to, FrameType type, std::string_view payload);
  // The same for a frame whose payload is `head` then `rest` (queued without joining them).
  bool Send(net::Shard& shard, raft::NodeId to, FrameType type, std::string_view head,
            std::string_view rest);
  bool LinkedTo(raft::NodeId member) const;
  // Seals (or writes into TLS) what each link queued since the last call, as one
  // record per 64 KiB, and hands it to the engine: once per loop iteration (OnFlush).
  void Flush(net::Shard& shard);

 private:
  struct Link;
  struct Dialler {  // per member: this shard's outgoing link, or when to dial again
    net::ConnectionId link = net::kNoConnection;
    uint64_t next_dial_ms = 0;
    uint64_t backoff_ms = 0;
    // Until then it is dialled with the version 1 hello (so ChaCha20-Poly1305): it
    // refused a version 2 hello as an unknown version (link_auth.h).
    uint64_t hello_version_1_until_ms = 0;
  };

  void Dial(net::Shard& shard, raft::NodeId member, const DataPlaneConfig::Member& where);
  // Handshake frames in `link.in`, then records once authenticated. False: it closed.
  bool ReadHandshake(net::Shard& shard, Link& link);
  void ReadFrames(net::Shard& shard, Link& link);
  void OnAuthenticated(net::Shard& shard, Link& link);
  // Tells the peer why (when `tell_peer`), logs, closes.
  void Refuse(net::Shard& shard, Link& link, const std::string& reason, const std::string& fix,
              bool tell_peer = true);
  // Frames for the peer wait in the link's pending bytes until Flush.
  void Queue(Link& link, FrameType type, std::string_view head, std::string_view rest);
  void FlushLink(net::Shard& shard, Link& link);
  // Bytes for the peer: through TLS when the link has it, else sealed (`sealed`, once the
  // handshake gave a sealer) or in the clear. False when they could not be queued.
  bool Write(net::Shard& shard, Link& link, std::string_view bytes, bool sealed);
  void TakeHandshakeOutput(net::Shard& shard, Link& link);
  // A member by the configuration this shard was last given; under TLS, with the
  // certificate key bound to it.
  absl::Status CheckPeer(const Link& link);
  void ForgetUnauthenticated(Link& link);
  void LimitLinksFrom(net::Shard& shard, raft::NodeId peer);
  void PublishUp();
  bool ShouldLog(const std::string& key, uint64_t now_ms);

  const DataPlanePublisher* const config_publisher_;
  const DataLinkLimits limits_;
  DataLinkStats* const stats_;
  std::shared_ptr<const DataPlaneConfig> config_;
  FrameHandler on_frame_;

  std::map<net::ConnectionId, std::unique_ptr<Link>> links_;
  std::map<raft::NodeId, Dialler> diallers_;
  std::vector<net::ConnectionId> flush_list_;  // links with pending frames
  size_t unauthenticated_ = 0;
  std::map<std::string, size_t> unauthenticated_per_ip_;
  std::map<std::string, uint64_t> last_logged_ms_;
  uint64_t now_ms_ = 0;
};

}  // namespace stanzad::cluster

#endif  // STANZAD_CLUSTER_DATA_DATA_LINKS_H_
