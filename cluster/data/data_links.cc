#include "cluster/data/data_links.h"

#include <algorithm>
#include <utility>

#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/base/log.h"
#include "tls/certificates.h"

namespace stanzad::cluster {

struct DataLinks::Link {
  net::ConnectionId id = net::kNoConnection;
  bool outgoing = false;
  raft::NodeId peer = raft::kNoNode;       // outgoing: the member dialled; incoming: once proven
  std::string remote;                      // incoming: the peer's IP; outgoing: the address dialled
  std::optional<LinkHandshake> handshake;  // until it ends
  bool authenticated = false;
  // The peer sent a frame after the handshake: it took this side's proof (an acceptor
  // that refused sends kAuthRefused instead). Only then is an outgoing link up.
  bool confirmed = false;
  bool counted_unauthenticated = false;  // incoming, in unauthenticated_ and per IP
  // Under cluster TLS: the session everything passes through (no sealer, no opener).
  std::unique_ptr<tls::TlsSession> tls;
  std::optional<RecordSealer> sealer;
  std::optional<RecordOpener> opener;
  std::string pending;  // frames queued this loop iteration, sealed and written by Flush
  std::string in;       // bytes read, not yet taken (frames, then records)
  std::string plain;    // opened records, not yet taken as frames
  uint64_t created_ms = 0;
  uint64_t heard_ms = 0;
  uint64_t sent_ms = 0;
};

DataLinks::DataLinks(const DataPlanePublisher* config, DataLinkLimits limits, DataLinkStats* stats)
    : config_publisher_(config), limits_(limits), stats_(stats), config_(config->Current()) {}

DataLinks::~DataLinks() = default;

namespace {

void Bump(std::atomic<uint64_t>& counter) {
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

}  // namespace

// ---- Accepting ----

bool DataLinks::OnAccept(net::Shard& shard, net::ConnectionId id, const net::Endpoint& peer) {
  now_ms_ = shard.now_ms();
  std::string ip = peer.IpString();
  const auto refuse = [&](const std::string& reason) {
    Bump(stats_->refused);
    if (ShouldLog(ip + "|" + reason, now_ms_)) {
      LogEvent(LogLevel::kWarning, "data_link_refused",
               Concat("peer=", ip, " direction=in reason=", LogQuote(reason),
                      " note=", LogQuote("logged once a minute per peer and reason")));
    }
    return false;
  };
  if (config_->cluster_key.empty()) return refuse("this node is not in a cluster");
  if (config_->isolated_from.count(ip) != 0) return refuse("isolated (cluster isolate)");
  if (auto it = unauthenticated_per_ip_.find(ip);
      it != unauthenticated_per_ip_.end() &&
      it->second >= limits_.unauthenticated_links_per_ip_max) {
    return refuse("too many unauthenticated links from this address");
  }
  std::unique_ptr<tls::TlsSession> tls;
  if (config_->tls_server) {
    absl::StatusOr<std::unique_ptr<tls::TlsSession>> session =
        tls::TlsSession::NewServer(config_->tls_server);
    if (!session.ok()) return refuse(Concat("TLS: ", std::string(session.status().message())));
    tls = std::move(*session);
  }
  if (unauthenticated_ >= limits_.unauthenticated_links_max) {
    // The oldest unauthenticated link makes room: idle ones cannot lock members out.
    Link* oldest = nullptr;
    for (auto& [link_id, link] : links_) {
      if (link->counted_unauthenticated &&
          (oldest == nullptr || link->created_ms < oldest->created_ms)) {
        oldest = link.get();
      }
    }
    if (oldest != nullptr) {
      ForgetUnauthenticated(*oldest);
      shard.Abort(oldest->id);
    }
  }
  Bump(stats_->accepted);
  auto link = std::make_unique<Link>();
  link->id = id;
  link->remote = ip;
  link->created_ms = link->heard_ms = now_ms_;
  link->handshake = LinkHandshake::Acceptor({config_->self, config_->cluster_key,
                                             /*token_lookup=*/nullptr, RandomBytes(kAuthNonceBytes),
                                             /*accept_aes_gcm=*/AesGcmIsFastHere()});
  link->tls = std::move(tls);
  link->counted_unauthenticated = true;
  ++unauthenticated_;
  ++unauthenticated_per_ip_[ip];
  links_[id] = std::move(link);
  return true;
}

void DataLinks::ForgetUnauthenticated(Link& link) {
  if (!link.counted_unauthenticated) return;
  link.counted_unauthenticated = false;
  --unauthenticated_;
  auto it = unauthenticated_per_ip_.find(link.remote);
  if (it != unauthenticated_per_ip_.end() && --it->second == 0) unauthenticated_per_ip_.erase(it);
}

// ---- Dialling ----

void DataLinks::Dial(net::Shard& shard, raft::NodeId member, const DataPlaneConfig::Member& where) {
  Dialler& dialler = diallers_[member];
  const net::ConnectionId id = shard.Connect(where.endpoint);
  dialler.backoff_ms = dialler.backoff_ms == 0
                           ? limits_.redial_ms_min
                           : std::min(limits_.redial_ms_max, dialler.backoff_ms * 2);
  dialler.next_dial_ms = now_ms_ + dialler.backoff_ms;
  if (id == net::kNoConnection) return;
  auto link = std::make_unique<Link>();
  link->id = id;
  link->outgoing = true;
  link->peer = member;
  link->remote = where.endpoint.ToString();
  link->created_ms = link->heard_ms = now_ms_;
  DiallerOptions options;
  options.self = {config_->self, config_->self_address};
  options.cluster_key = config_->cluster_key;
  options.expected_peer = member;
  options.address = link->remote;
  options.nonce = RandomBytes(kAuthNonceBytes);
  options.offer_aes_gcm = AesGcmIsFastHere() && now_ms_ >= dialler.hello_version_1_until_ms;
  link->handshake = LinkHandshake::Dialler(std::move(options));
  if (config_->tls_client) {
    absl::StatusOr<std::unique_ptr<tls::TlsSession>> session =
        tls::TlsSession::NewClient(config_->tls_client, "");
    if (!session.ok()) {
      shard.Abort(id);  // OnClosed finds no link; the next dial is after the back-off
      return;
    }
    link->tls = std::move(*session);
  }
  std::string hello;
  link->handshake->TakeOutput(&hello);
  Link& added = *link;
  dialler.link = id;
  links_[id] = std::move(link);
  Write(shard, added, hello, /*sealed=*/false);  // leaves once connected (and TLS is up)
}

void DataLinks::OnConnected(net::Shard& shard, net::ConnectionId /*id*/) {
  now_ms_ = shard.now_ms();
}

// ---- Reading ----

void DataLinks::OnData(net::Shard& shard, net::ConnectionId id, std::string_view bytes) {
  now_ms_ = shard.now_ms();
  auto it = links_.find(id);
  if (it == links_.end()) return;
  Link& link = *it->second;
  if (link.tls) {
    absl::Status fed = link.tls->Feed(bytes);
    if (fed.ok()) fed = link.tls->Read(&link.in);
    if (!fed.ok()) {
      if (!link.authenticated) {
        Refuse(shard, link, Concat("TLS: ", std::string(fed.message())), "", /*tell_peer=*/false);
      } else {
        shard.Abort(id);
      }
      return;
    }
    Write(shard, link, "", /*sealed=*/false);  // the handshake's records
  } else {
    link.in.append(bytes);
  }
  if (!link.authenticated) {
    if (link.in.size() > limits_.unauthenticated_bytes_max) {
      Refuse(shard, link, "too many bytes before authentication", "");
      return;
    }
    if (!ReadHandshake(shard, link)) return;
  }
  if (link.authenticated) ReadFrames(shard, link);
}

bool DataLinks::ReadHandshake(net::Shard& shard, Link& link) {
  const net::ConnectionId id = link.id;
  size_t offset = 0;
  while (link.handshake && link.handshake->state() == LinkHandshake::State::kHandshaking) {
    absl::StatusOr<std::optional<Frame>> frame = ParseFrameAt(link.in, &offset, kAuthFrameBytesMax);
    if (!frame.ok()) {
      Refuse(shard, link,
             Concat("a bad frame before authentication: ", std::string(frame.status().message())),
             "");
      return false;
    }
    if (!frame->has_value()) break;
    link.handshake->Step(**frame);
    TakeHandshakeOutput(shard, link);
    if (link.handshake->state() == LinkHandshake::State::kCheckingPeer) {
      link.handshake->PeerChecked(CheckPeer(link));
      TakeHandshakeOutput(shard, link);
    }
  }
  link.in.erase(0, offset);
  if (!link.handshake) return false;
  switch (link.handshake->state()) {
    case LinkHandshake::State::kRefused: {
      const LinkRefusal refusal = link.handshake->refusal();
      if (link.outgoing && !refusal.tell_peer && refusal.reason == kUnknownHelloVersionRefusal &&
          AesGcmIsFastHere()) {
        // An older stanzad (or anyone answering at its address): its hello for a while.
        diallers_[link.peer].hello_version_1_until_ms = now_ms_ + limits_.hello_version_1_ms;
        if (ShouldLog(Concat(link.remote, "|hello_version_1"), now_ms_)) {
          LogEvent(
              LogLevel::kWarning, "data_link_hello_version_1",
              Concat("peer=", link.remote, " for_ms=", std::to_string(limits_.hello_version_1_ms),
                     " reason=", LogQuote("it refused the version 2 hello (an older stanzad?)"),
                     " note=", LogQuote("its links are sealed with ChaCha20-Poly1305 meanwhile")));
        }
      }
      Refuse(shard, link, refusal.reason, refusal.fix, refusal.tell_peer);
      return false;
    }
    case LinkHandshake::State::kAuthenticated:
      OnAuthenticated(shard, link);
      return links_.count(id) != 0;
    default:
      return true;
  }
}

void DataLinks::OnAuthenticated(net::Shard& shard, Link& link) {
  const LinkAuthenticated result = link.handshake->authenticated();
  if (result.join_token != 0) {  // no such thing is asked of this side, but never trust it
    Refuse(shard, link, "a join token is not valid on the data port", "");
    return;
  }
  link.opener = link.handshake->TakeOpener();
  if (link.tls) link.opener.reset();  // TLS protects the link
  if (link.outgoing) {
    const std::string_view sealed =
        link.tls ? std::string_view("tls") : LinkCipherName(link.handshake->cipher());
    if (ShouldLog(Concat(link.remote, "|up|", sealed), now_ms_)) {
      LogEvent(LogLevel::kInfo, "data_link_up",
               Concat("peer=", link.remote, " node=", std::to_string(result.peer),
                      " sealed=", sealed, " note=", LogQuote("logged once a minute per peer")));
    }
  }
  link.handshake.reset();
  link.peer = result.peer;
  link.authenticated = true;
  link.heard_ms = now_ms_;
  ForgetUnauthenticated(link);
  Bump(stats_->authenticated);
  Queue(link, FrameType::kDataPing, {}, {});  // confirms it to the peer at once
  if (!link.outgoing) LimitLinksFrom(shard, link.peer);
}

// A member dials one link per shard of its own; a few more may linger while it
// redials. Beyond that the oldest go: a key holder cannot pile links up here.
void DataLinks::LimitLinksFrom(net::Shard& shard, raft::NodeId peer) {
  auto member = config_->members.find(peer);
  const size_t allowed = (member == config_->members.end() ? 1 : member->second.lanes) + 1;
  std::vector<std::pair<uint64_t, net::ConnectionId>> from_peer;  // (created, id)
  for (const auto& [id, other] : links_) {
    if (!other->outgoing && other->authenticated && other->peer == peer) {
      from_peer.emplace_back(other->created_ms, id);
    }
  }
  if (from_peer.size() <= allowed) return;
  std::sort(from_peer.begin(), from_peer.end());
  for (size_t i = 0; i + allowed < from_peer.size(); ++i) shard.Abort(from_peer[i].second);
}

void DataLinks::ReadFrames(net::Shard& shard, Link& link) {
  const net::ConnectionId id = link.id;
  if (link.opener) {
    if (absl::Status opened = link.opener->Open(&link.in, &link.plain); !opened.ok()) {
      LogEvent(LogLevel::kWarning, "data_link_closed",
               Concat("peer=", std::to_string(link.peer), " reason=",
                      LogQuote(Concat("a record does not open: ", std::string(opened.message())))));
      shard.Abort(id);
      return;
    }
  } else {
    link.plain.append(link.in);
    link.in.clear();
  }
  size_t offset = 0;
  while (true) {
    absl::StatusOr<std::optional<FrameView>> frame =
        ParseFrameViewAt(link.plain, &offset, limits_.frame_bytes_max);
    if (frame.ok() && frame->has_value() && (*frame)->type == FrameType::kAuthRefused) {
      // The acceptor's check said no after this side's proof (sealed, as all it sends).
      Bump(stats_->refused);
      const std::string reason = PeerRefusalText((*frame)->payload);
      if (ShouldLog(Concat(link.remote, "|refused|", reason), now_ms_)) {
        LogEvent(LogLevel::kWarning, "data_link_refused",
                 Concat("peer=", link.remote, " direction=out reason=",
                        LogQuote(Concat("the peer refused this node: ", reason))));
      }
      shard.Abort(id);
      return;
    }
    if (!frame.ok() || (frame->has_value() && IsHandshakeFrame((*frame)->type))) {
      LogEvent(LogLevel::kWarning, "data_link_closed",
               Concat("peer=", std::to_string(link.peer), " reason=",
                      LogQuote(frame.ok() ? "a handshake frame after authentication"
                                          : Concat("a bad frame: ",
                                                   std::string(frame.status().message())))));
      shard.Abort(id);
      return;
    }
    if (!frame->has_value()) break;
    Bump(stats_->frames_in);
    link.heard_ms = now_ms_;  // a whole frame: a byte at a time keeps nothing alive
    if (!link.confirmed) {
      link.confirmed = true;
      if (link.outgoing) {
        diallers_[link.peer].backoff_ms = 0;
        PublishUp();
      }
    }
    if ((*frame)->type != FrameType::kDataPing && on_frame_) on_frame_(link.peer, **frame);
    if (links_.count(id) == 0) return;  // the handler closed it
  }
  link.plain.erase(0, offset);
}

// ---- Writing ----

void DataLinks::TakeHandshakeOutput(net::Shard& shard, Link& link) {
  std::string out;
  link.handshake->TakeOutput(&out);
  if (!out.empty()) Write(shard, link, out, /*sealed=*/false);
  if (std::optional<RecordSealer> sealer = link.handshake->TakeSealer()) {
    if (!link.tls) link.sealer = std::move(sealer);  // under TLS: TLS protects the link
  }
}

absl::Status DataLinks::CheckPeer(const Link& link) {
  const raft::NodeId peer = link.handshake->peer().id;
  auto member = config_->members.find(peer);
  if (member == config_->members.end()) {
    return absl::PermissionDeniedError(
        Concat("node ", std::to_string(peer), " is not a member of this cluster"));
  }
  // The drill cuts a member by its address, wherever its links come from.
  if (config_->isolated_from.count(member->second.ip) != 0) {
    return absl::UnavailableError("isolated (cluster isolate)");
  }
  if (!link.tls) return absl::OkStatus();
  // Under TLS, the certificate key bound to that node id when it joined (as on the
  // cluster port: one member cannot pose as another).
  absl::StatusOr<std::string> identity = tls::PublicKeyDigest(link.tls->PeerCertificatePem());
  if (!identity.ok()) {
    return absl::PermissionDeniedError(
        Concat("its certificate's key cannot be read: ", std::string(identity.status().message())));
  }
  if (!member->second.identity.empty() &&
      !EqualInConstantTime(member->second.identity, *identity)) {
    return absl::PermissionDeniedError(
        Concat("node ", std::to_string(peer),
               " presented a certificate whose key is not the one bound to it when it joined"));
  }
  return absl::OkStatus();
}

bool DataLinks::Write(net::Shard& shard, Link& link, std::string_view bytes, bool sealed) {
  std::string out;
  if (link.tls) {
    if (!bytes.empty() && !link.tls->Write(bytes).ok()) return false;
    link.tls->TakeOutput(&out);
  } else if (sealed && link.sealer) {
    link.sealer->Seal(bytes, &out);
  } else {
    out.assign(bytes);
  }
  return out.empty() || shard.Send(link.id, out);
}

void DataLinks::Queue(Link& link, FrameType type, std::string_view head, std::string_view rest) {
  if (link.pending.empty()) flush_list_.push_back(link.id);
  AppendFrame(type, head, rest, &link.pending);
  link.sent_ms = now_ms_;
  Bump(stats_->frames_out);
}

void DataLinks::FlushLink(net::Shard& shard, Link& link) {
  if (link.pending.empty()) return;
  const bool written = Write(shard, link, link.pending, /*sealed=*/true);
  link.pending.clear();
  if (!written) {
    // Sealed but not sent: the peer could open nothing after it. The link goes (and is
    // dialled again); what its frames carried, the lanes send again.
    LogEvent(LogLevel::kWarning, "data_link_closed",
             Concat("peer=", std::to_string(link.peer),
                    " reason=", LogQuote("its queue in the engine is full")));
    shard.Abort(link.id);
  }
}

void DataLinks::Flush(net::Shard& shard) {
  for (const net::ConnectionId id : flush_list_) {
    auto it = links_.find(id);
    if (it != links_.end()) FlushLink(shard, *it->second);
  }
  flush_list_.clear();
}

bool DataLinks::Send(net::Shard& shard, raft::NodeId to, FrameType type, std::string_view payload) {
  return Send(shard, to, type, {}, payload);
}

bool DataLinks::Send(net::Shard& shard, raft::NodeId to, FrameType type, std::string_view head,
                     std::string_view rest) {
  auto dialler = diallers_.find(to);
  if (dialler == diallers_.end()) return false;
  auto it = links_.find(dialler->second.link);
  if (it == links_.end() || !it->second->confirmed) return false;
  Link& link = *it->second;
  if (link.pending.size() + shard.QueuedBytes(link.id) + head.size() + rest.size() >
      limits_.queue_bytes_max) {
    return false;  // the peer does not keep up: the relay holds it and sends it again
  }
  Queue(link, type, head, rest);
  return true;
}

bool DataLinks::LinkedTo(raft::NodeId member) const {
  auto dialler = diallers_.find(member);
  if (dialler == diallers_.end()) return false;
  auto it = links_.find(dialler->second.link);
  return it != links_.end() && it->second->confirmed;
}

void DataLinks::Refuse(net::Shard& shard, Link& link, const std::string& reason,
                       const std::string& fix, bool tell_peer) {
  Bump(stats_->refused);
  if (ShouldLog(link.remote + "|" + reason, now_ms_)) {
    LogEvent(LogLevel::kWarning, "data_link_refused",
             Concat("peer=", link.remote, link.outgoing ? " direction=out" : " direction=in",
                    " reason=", LogQuote(reason),
                    fix.empty() ? std::string() : Concat(" fix=", LogQuote(fix)),
                    " note=", LogQuote("logged once a minute per peer and reason")));
  }
  if (tell_peer && (!link.tls || link.tls->handshake_done())) {
    FlushLink(shard, link);
    std::string refusal;
    AppendRefusalFrame(reason, &refusal);
    Write(shard, link, refusal, /*sealed=*/true);
  }
  // Still counted in the bounds of unauthenticated links until OnClosed: the close
  // waits for the peer's EOF (close_linger_ms), and a peer that never sends it must
  // not hold descriptors beyond them (the oldest is evicted for a newcomer).
  link.handshake.reset();
  shard.Close(link.id);  // flushes the refusal; OnClosed forgets the link
}

// ---- Closing, time, configuration ----

void DataLinks::OnClosed(net::Shard& shard, net::ConnectionId id, const absl::Status& reason) {
  now_ms_ = shard.now_ms();
  auto it = links_.find(id);
  if (it == links_.end()) return;
  Link& link = *it->second;
  ForgetUnauthenticated(link);
  const bool was_up = link.outgoing && link.confirmed;
  if (link.outgoing) {
    auto dialler = diallers_.find(link.peer);
    if (dialler != diallers_.end() && dialler->second.link == id) {
      dialler->second.link = net::kNoConnection;
    }
    if (was_up && ShouldLog(Concat("down|", std::to_string(link.peer)), now_ms_)) {
      LogEvent(LogLevel::kWarning, "data_link_down",
               Concat("peer=", std::to_string(link.peer), " reason=",
                      LogQuote(reason.ok() ? "closed" : std::string(reason.message()))));
    }
  }
  links_.erase(it);
  if (was_up) PublishUp();
}

void DataLinks::OnTick(net::Shard& shard, uint64_t now_ms) {
  now_ms_ = now_ms;
  std::vector<net::ConnectionId> silent;
  std::vector<net::ConnectionId> late;
  for (auto& [id, link] : links_) {
    if (!link->authenticated) {
      if (link->handshake && now_ms >= link->created_ms + limits_.handshake_timeout_ms) {
        late.push_back(id);
      }
      continue;
    }
    if (now_ms >= link->heard_ms + limits_.silence_ms_max) {
      silent.push_back(id);
      continue;
    }
    // Both ways, so each side hears the other even when data flows one way.
    if (now_ms >= link->sent_ms + limits_.ping_every_ms) {
      Queue(*link, FrameType::kDataPing, {}, {});
    }
  }
  for (const net::ConnectionId id : late) {
    auto it = links_.find(id);
    if (it != links_.end()) Refuse(shard, *it->second, "no authentication within the deadline", "");
  }
  for (const net::ConnectionId id : silent) shard.Abort(id);
  // Every member with a known data port gets this shard's link.
  for (const auto& [member, where] : config_->members) {
    if (member == config_->self || where.endpoint.length == 0) continue;
    if (config_->isolated_from.count(where.ip) != 0) continue;
    Dialler& dialler = diallers_[member];
    if (dialler.link != net::kNoConnection || now_ms < dialler.next_dial_ms) continue;
    Dial(shard, member, where);
  }
}

void DataLinks::OnConfigChanged(net::Shard& shard) {
  now_ms_ = shard.now_ms();
  std::shared_ptr<const DataPlaneConfig> next = config_publisher_->Current();
  const bool key_changed = next->cluster_key != config_->cluster_key || next->self != config_->self;
  std::vector<net::ConnectionId> closing;
  for (const auto& [id, link] : links_) {
    const bool member = link->peer == raft::kNoNode || next->members.count(link->peer) != 0;
    auto where = next->members.find(link->peer);
    const bool moved = link->outgoing && where != next->members.end() &&
                       where->second.endpoint.ToString() != link->remote;
    // A member by its address (its links may come from any of its host's); a peer not
    // yet proven by the address it comes from.
    const std::string ip = where != next->members.end() ? where->second.ip : link->remote;
    const bool isolated = next->isolated_from.count(ip) != 0;
    if (key_changed || !member || moved || isolated) closing.push_back(id);
  }
  for (auto it = diallers_.begin(); it != diallers_.end();) {
    it = next->members.count(it->first) == 0 && it->second.link == net::kNoConnection
             ? diallers_.erase(it)
             : std::next(it);
  }
  config_ = std::move(next);
  for (const net::ConnectionId id : closing) shard.Abort(id);
}

void DataLinks::PublishUp() {
  auto up = std::make_shared<std::set<raft::NodeId>>();
  for (const auto& [member, dialler] : diallers_) {
    auto it = links_.find(dialler.link);
    if (it != links_.end() && it->second->confirmed) up->insert(member);
  }
  stats_->up.store(std::move(up));
}

bool DataLinks::ShouldLog(const std::string& key, uint64_t now_ms) {
  if (last_logged_ms_.size() > 4096) last_logged_ms_.clear();  // bounded; worst case: more lines
  auto [it, inserted] = last_logged_ms_.emplace(key, now_ms);
  if (!inserted && now_ms < it->second + 60'000) return false;
  it->second = now_ms;
  return true;
}

}  // namespace stanzad::cluster
