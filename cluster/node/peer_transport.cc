#include "cluster/node/peer_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/base/log.h"
#include "tls/certificates.h"

namespace stanzad::cluster {
namespace {

absl::Status Errno(std::string_view what, int error) {
  return absl::UnavailableError(Concat(what, ": ", std::strerror(error)));
}

}  // namespace

PeerTransport::PeerTransport(LinkSelf self, const TransportLimits& limits, FrameHandler on_frame,
                             CloseHandler on_close)
    : self_(std::move(self)),
      limits_(limits),
      on_frame_(std::move(on_frame)),
      on_close_(std::move(on_close)) {}

PeerTransport::~PeerTransport() {
  StopListening();
  for (auto& [id, link] : links_) close(link->fd);
}

absl::Status PeerTransport::Listen(const net::Endpoint& endpoint) {
  StopListening();
  const int fd = socket(endpoint.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Errno("socket", errno);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length) != 0 ||
      listen(fd, 128) != 0) {
    const int error = errno;
    close(fd);
    return Errno(Concat("cannot listen on the cluster port ", endpoint.ToString()), error);
  }
  listen_fd_ = fd;
  listen_endpoint_ = endpoint;
  listen_endpoint_.length = sizeof(listen_endpoint_.address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&listen_endpoint_.address), &listen_endpoint_.length);
  return absl::OkStatus();
}

void PeerTransport::StopListening() {
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
}

void PeerTransport::CloseAll(const absl::Status& reason) {
  std::vector<LinkId> all;
  for (const auto& [id, link] : links_) all.push_back(id);
  for (const LinkId id : all) CloseLink(id, reason);
}

void PeerTransport::SetPeers(const std::map<raft::NodeId, std::string>& peers, uint64_t now_ms) {
  now_ms_ = now_ms;
  for (auto it = dialers_.begin(); it != dialers_.end();) {
    const auto wanted = peers.find(it->first);
    if (wanted == peers.end() || wanted->second != it->second.address) {
      if (it->second.link != kNoLink)
        CloseLink(it->second.link, absl::CancelledError("not a peer"));
      it = dialers_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [id, address] : peers) {
    if (dialers_.count(id) == 0) dialers_[id] = Dialer{address, kNoLink, now_ms, 100};
  }
  Tick(now_ms);
}

void PeerTransport::RecheckLinks() {
  if (!peer_check_) return;
  std::vector<std::pair<LinkId, absl::Status>> refused;
  for (const auto& [id, link] : links_) {
    if (!link->authenticated || link->join_token != 0) continue;
    absl::Status allowed = peer_check_(LinkPeer{link->peer, 0, link->identity});
    if (!allowed.ok()) refused.emplace_back(id, std::move(allowed));
  }
  for (const auto& [id, reason] : refused) {
    ++links_refused_;
    const Link& link = *links_.at(id);
    LogEvent(LogLevel::kWarning, "cluster_link_refused",
             Concat("peer=", link.outgoing ? link.address : link.remote_ip, " id=",
                    std::to_string(link.peer), link.outgoing ? " direction=out" : " direction=in",
                    " reason=", LogQuote(std::string(reason.message())),
                    " note=", LogQuote("an open link, checked again at a membership change")));
    CloseLink(id, reason);
  }
}

PeerTransport::Link* PeerTransport::Find(LinkId id) {
  auto it = links_.find(id);
  return it == links_.end() ? nullptr : it->second.get();
}

bool PeerTransport::Connected(raft::NodeId peer) const {
  for (const auto& [id, link] : links_) {
    if (link->peer == peer && link->authenticated && link->join_token == 0) return true;
  }
  return false;
}

bool PeerTransport::SendOn(LinkId id, FrameType type, std::string_view payload) {
  Link* link = Find(id);
  if (link == nullptr) return false;
  std::string& queue = link->authenticated ? link->out : link->waiting;
  if (link->out.size() + link->waiting.size() + link->cipher_out.size() + payload.size() >
      kQueueBytesMax) {
    ++frames_dropped_;
    CloseLink(id, absl::ResourceExhaustedError("the peer does not take what is sent to it"));
    return false;
  }
  AppendFrame(type, payload, &queue);
  // Written by FlushAll (end of HandlePoll, Tick, or the caller's loop): frames
  // queued in one turn leave in one send.
  return true;
}

void PeerTransport::FlushAll() {
  std::vector<LinkId> ids;
  for (const auto& [id, link] : links_) {
    if (!link->connecting && (!link->out.empty() || !link->cipher_out.empty())) {
      ids.push_back(id);
    }
  }
  for (const LinkId id : ids) {
    if (Link* link = Find(id)) WriteTo(*link);
  }
}

const PeerTransport::Link* PeerTransport::LinkTo(raft::NodeId peer) const {
  // Our own link first (connected or connecting: its queue leaves once it is up).
  auto dialer = dialers_.find(peer);
  if (dialer != dialers_.end() && dialer->second.link != kNoLink) {
    auto it = links_.find(dialer->second.link);
    if (it != links_.end() && !it->second->connecting) return it->second.get();
  }
  for (const auto& [id, link] : links_) {
    if (!link->outgoing && link->authenticated && link->join_token == 0 && link->peer == peer) {
      return link.get();
    }
  }
  return nullptr;
}

bool PeerTransport::SendTo(raft::NodeId peer, FrameType type, std::string_view payload) {
  if (const Link* link = LinkTo(peer)) return SendOn(link->id, type, payload);
  ++frames_dropped_;
  return false;
}

size_t PeerTransport::QueuedTo(raft::NodeId peer) const {
  const Link* link = LinkTo(peer);
  return link == nullptr ? 0 : link->out.size() + link->waiting.size() + link->cipher_out.size();
}

namespace {

// "IP:PORT" or "[IPv6]:PORT" -> the IP.
std::string HostOf(std::string_view address) {
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    return std::string(address.substr(1, close == std::string_view::npos ? 0 : close - 1));
  }
  const size_t colon = address.rfind(':');
  return std::string(colon == std::string_view::npos ? address : address.substr(0, colon));
}

}  // namespace

bool PeerTransport::Isolated(const Link& link) const {
  if (isolated_from_.empty()) return false;
  return isolated_from_.count(link.remote_ip) != 0 ||
         ((link.outgoing || link.authenticated) && isolated_from_.count(HostOf(link.address)) != 0);
}

void PeerTransport::SetIsolatedFrom(std::set<std::string> hosts) {
  isolated_from_ = std::move(hosts);
  std::vector<LinkId> cut;
  for (const auto& [id, link] : links_) {
    if (Isolated(*link)) cut.push_back(id);
  }
  for (const LinkId id : cut) CloseLink(id, absl::UnavailableError("isolated (cluster isolate)"));
}

LinkId PeerTransport::Dial(const std::string& address, const std::optional<JoinToken>& token,
                           uint64_t now_ms, absl::Status* error) {
  return Open(address, raft::kNoNode, false, token, now_ms, error);
}

std::string PeerTransport::KeyWrapOf(LinkId id) const {
  auto it = links_.find(id);
  if (it == links_.end() || !it->second->authenticated || it->second->join_token == 0) return "";
  return it->second->key_wrap;
}

LinkId PeerTransport::Open(const std::string& address, raft::NodeId peer, bool persistent,
                           const std::optional<JoinToken>& token, uint64_t now_ms,
                           absl::Status* error) {
  if (!token && cluster_key_.empty()) {
    *error = absl::FailedPreconditionError(
        "this node has no cluster key yet (it gets one with 'cluster initialize' or "
        "'cluster join HOST --token=TOKEN')");
    return kNoLink;
  }
  absl::StatusOr<net::Endpoint> endpoint = net::Endpoint::Parse(address, 5279);
  if (!endpoint.ok()) {
    *error = endpoint.status();
    return kNoLink;
  }
  if (isolated_from_.count(HostOf(address)) != 0) {
    *error = absl::UnavailableError(
        Concat("this node is isolated from ", address, " (stanzactl cluster isolate off)"));
    return kNoLink;
  }
  const int fd = socket(endpoint->address.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    *error = Errno("socket", errno);
    return kNoLink;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  auto link = std::make_unique<Link>();
  link->id = next_link_++;
  link->fd = fd;
  link->outgoing = true;
  link->persistent = persistent;
  link->peer = peer;
  link->address = address;
  link->connecting = true;
  link->connect_deadline_ms = now_ms + kConnectTimeoutMs;
  link->deadline_ms = now_ms + limits_.handshake_timeout_ms;
  link->handshake.emplace(LinkHandshake::Dialler({.self = self_,
                                                  .token = token,
                                                  .cluster_key = token ? "" : cluster_key_,
                                                  .expected_peer = peer,
                                                  .address = address,
                                                  .nonce = RandomBytes(kAuthNonceBytes)}));
  link->handshake->TakeOutput(&link->out);  // the hello
  if (connect(fd, reinterpret_cast<const sockaddr*>(&endpoint->address), endpoint->length) == 0) {
    link->connecting = false;
  } else if (errno != EINPROGRESS) {
    *error = Errno(Concat("cannot connect to ", address), errno);
    close(fd);
    return kNoLink;
  }
  const LinkId id = link->id;
  links_[id] = std::move(link);
  if (!links_[id]->connecting) {
    if (!StartTls(*links_[id])) {
      *error = absl::InternalError("TLS could not start (see the log)");
      return kNoLink;
    }
    WriteTo(*links_[id]);
  }
  return id;
}

void PeerTransport::Close(LinkId link) { CloseLink(link, absl::CancelledError("closed")); }

void PeerTransport::CloseLink(LinkId id, const absl::Status& reason) {
  auto it = links_.find(id);
  if (it == links_.end()) return;
  std::unique_ptr<Link> link = std::move(it->second);
  links_.erase(it);
  close(link->fd);
  if (link->authenticated && link->join_token == 0) {
    // A member link going away is rare and always worth a line: the reason is the one
    // clue to a leader lost or a stanza resent.
    LogEvent(LogLevel::kInfo, "cluster_link_closed",
             Concat("peer=", link->address, " id=", std::to_string(link->peer),
                    " direction=", link->outgoing ? "out" : "in",
                    " reason=", LogQuote(std::string(reason.message()))));
  }
  if (!link->authenticated || link->join_token != 0) ForgetUnauthenticated(*link);
  if (link->persistent) {
    for (auto& [peer, dialer] : dialers_) {
      if (dialer.link != id) continue;
      dialer.link = kNoLink;
      dialer.retry_at_ms = now_ms_ + dialer.backoff_ms;
      dialer.backoff_ms = std::min<uint64_t>(dialer.backoff_ms * 2, 1000);
    }
  }
  if (on_close_) on_close_(id, link->authenticated || link->persistent ? link->peer : 0, reason);
}

bool PeerTransport::StartTls(Link& link) {
  if (!tls()) return true;
  absl::StatusOr<std::unique_ptr<tls::TlsSession>> session =
      link.outgoing ? tls::TlsSession::NewClient(tls_client_, "")
                    : tls::TlsSession::NewServer(tls_server_);
  if (!session.ok()) {
    CloseLink(link.id, session.status());
    return false;
  }
  link.tls = std::move(*session);
  return true;
}

void PeerTransport::WriteTo(Link& link) {
  const LinkId id = link.id;
  if (link.tls) {
    // Frames go into TLS once the handshake is done; until then only its records.
    if (link.tls->handshake_done() && !link.out.empty()) {
      absl::Status written = link.tls->Write(link.out);
      link.out.clear();
      if (!written.ok()) {
        CloseLink(id, written);
        return;
      }
    }
    std::string records;
    link.tls->TakeOutput(&records);
    link.cipher_out.append(records);
  } else if (link.sealer) {
    // The handshake's last clear frames, then records.
    link.cipher_out.append(link.out, 0, link.clear_bytes);
    if (link.out.size() > link.clear_bytes) {
      link.sealer->Seal(std::string_view(link.out).substr(link.clear_bytes), &link.cipher_out);
    }
    link.out.clear();
    link.clear_bytes = 0;
  }
  std::string& pending = link.tls || link.sealer ? link.cipher_out : link.out;
  while (!pending.empty()) {
    const ssize_t n = send(link.fd, pending.data(), pending.size(), MSG_NOSIGNAL);
    if (n > 0) {
      pending.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    CloseLink(id, Errno(Concat("send to ", link.address), errno));
    return;
  }
}

void PeerTransport::ReadFrom(Link& link) {
  const LinkId id = link.id;
  char buffer[64 * 1024];
  while (true) {
    const ssize_t n = recv(link.fd, buffer, sizeof(buffer), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (n <= 0) {
      CloseLink(id, n == 0 ? absl::UnavailableError("closed by the peer")
                           : Errno(Concat("recv from ", link.address), errno));
      return;
    }
    const bool first_bytes = !link.received_any;
    link.received_any = true;
    if (link.tls) {
      absl::Status fed = link.tls->Feed(std::string_view(buffer, static_cast<size_t>(n)));
      if (fed.ok()) fed = link.tls->Read(&link.in);
      if (!fed.ok() && first_bytes && !link.outgoing && buffer[0] != 0x16) {
        // A node without TLS dialled: tell it why in the clear it speaks, so its
        // operator reads the cause, not "closed by the peer".
        std::string refusal;
        AppendFrame(FrameType::kAuthRefused,
                    "this cluster's links use TLS and this node has none: give it 'stanzactl "
                    "certs' and 'stanzactl cluster trust' first",
                    &refusal);
        (void)send(link.fd, refusal.data(), refusal.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      if (!fed.ok()) {
        WriteTo(link);  // the alert, if any
        if (Find(id) == nullptr) return;
        Refuse(link, Concat("TLS: ", std::string(fed.message())),
               "both nodes need 'stanzactl certs' with certificates that chain to the bundle "
               "set by 'cluster trust'");
        return;
      }
      WriteTo(link);  // handshake replies, and frames that waited for it
      if (Find(id) == nullptr) return;
    } else if (link.opener) {
      link.sealed_in.append(buffer, static_cast<size_t>(n));
      if (absl::Status opened = link.opener->Open(&link.sealed_in, &link.in); !opened.ok()) {
        LogEvent(
            LogLevel::kWarning, "cluster_link_bad_record",
            Concat("peer=", link.address, " reason=", LogQuote(std::string(opened.message()))));
        CloseLink(id, opened);
        return;
      }
    } else {
      link.in.append(buffer, static_cast<size_t>(n));
    }
    // Before authentication: parse what one read brought before reading more, so the
    // handshake's frames are taken before the (sealed) frames behind them count.
    if (!link.authenticated || static_cast<size_t>(n) < sizeof(buffer)) break;
  }
  size_t offset = 0;
  while (true) {
    Link* current = Find(id);  // a handler may close it
    if (current == nullptr) return;
    absl::StatusOr<std::optional<Frame>> frame = ParseFrameAt(
        current->in, &offset, current->authenticated ? kFrameBytesMax : kAuthFrameBytesMax);
    if (!frame.ok()) {
      if (!current->authenticated && !current->tls && !current->in.empty() &&
          current->in[0] == 0x16) {
        Refuse(*current, "the peer speaks TLS and this node does not",
               "give this node a certificate ('stanzactl certs') and the trust bundle ('cluster "
               "trust'), or take them from the peer");
        return;
      }
      if (current->authenticated) {
        LogEvent(LogLevel::kWarning, "cluster_link_bad_frame",
                 Concat("peer=", current->address,
                        " reason=", LogQuote(std::string(frame.status().message()))));
        CloseLink(id, frame.status());
      } else {
        Refuse(*current,
               Concat("not a stanzad cluster link (", std::string(frame.status().message()), ")"),
               "");
      }
      return;
    }
    if (!frame->has_value()) {
      current->in.erase(0, offset);
      if (!current->authenticated && current->in.size() > limits_.unauthenticated_bytes_max) {
        Refuse(*current, "sent more than an authentication handshake before authenticating", "");
      }
      return;
    }
    Frame& got = **frame;
    if (!current->authenticated) {
      if (!current->handshake) {
        // Made with the first frame, not at accept: the key may come meanwhile (a
        // joining node is dialled by the leader before its join is answered).
        current->handshake.emplace(
            LinkHandshake::Acceptor({.self = self_.id,
                                     .cluster_key = cluster_key_,
                                     .token_lookup = token_lookup_,
                                     .nonce = RandomBytes(kAuthNonceBytes)}));
      }
      current->handshake->Step(got);
      if (!OnHandshakeStep(*current)) return;
      current = Find(id);
      if (current != nullptr && current->opener_pending) {
        // What follows the handshake in this read is sealed already.
        current->opener_pending = false;
        current->sealed_in.assign(current->in, offset);
        current->in.clear();
        offset = 0;
        if (absl::Status opened = current->opener->Open(&current->sealed_in, &current->in);
            !opened.ok()) {
          CloseLink(id, opened);
          return;
        }
      }
      continue;
    }
    if (got.type == FrameType::kAuthRefused) {  // the acceptor's check said no, sealed
      CloseLink(id, absl::PermissionDeniedError(Concat(
                        current->address, " refused this node: ", PeerRefusalText(got.payload))));
      return;
    }
    if (IsHandshakeFrame(got.type)) {
      CloseLink(id, absl::InvalidArgumentError("an authentication frame after authentication"));
      return;
    }
    last_heard_ms_[current->peer] = now_ms_;
    if (!current->accepted) Accepted(*current);
    on_frame_(id, LinkPeer{current->peer, current->join_token, current->identity}, std::move(got));
  }
}

bool PeerTransport::OnHandshakeStep(Link& link) {
  // `link` may be freed by any call that can close it (WriteTo, Refuse, Authenticated):
  // after one, only `id` is looked at.
  const LinkId id = link.id;
  LinkHandshake& handshake = *link.handshake;
  if (!link.outgoing && handshake.announced_address()) {
    link.address = *handshake.announced_address();  // what it says it is, for the log
  }
  if (handshake.state() == LinkHandshake::State::kCheckingPeer) {
    handshake.PeerChecked(CheckPeer(link, handshake.peer()));
  }
  handshake.TakeOutput(&link.out);
  // Under TLS the handshake's sealer and opener are not used: TLS protects the link.
  if (std::optional<RecordSealer> sealer = handshake.TakeSealer(); sealer && !link.tls) {
    link.sealer = std::make_unique<RecordSealer>(std::move(*sealer));
    link.clear_bytes = link.out.size();  // the handshake's frames so far go in the clear
  }
  switch (handshake.state()) {
    case LinkHandshake::State::kHandshaking:
      WriteTo(link);
      return Find(id) != nullptr;
    case LinkHandshake::State::kCheckingPeer:  // answered above
      break;
    case LinkHandshake::State::kRefused: {
      const LinkRefusal refusal = handshake.refusal();
      if (refusal.tell_peer) {
        Refuse(link, refusal.reason, refusal.fix);
      } else {
        CloseLink(id, absl::PermissionDeniedError(
                          Concat(link.address, " refused this node: ", refusal.reason)));
      }
      return false;
    }
    case LinkHandshake::State::kAuthenticated: {
      const LinkAuthenticated outcome = handshake.authenticated();
      link.peer = outcome.peer;
      link.join_token = outcome.join_token;
      link.key_wrap = outcome.key_wrap;
      if (std::optional<RecordOpener> opener = handshake.TakeOpener(); opener && !link.tls) {
        link.opener = std::make_unique<RecordOpener>(std::move(*opener));
        link.opener_pending = true;
      }
      link.handshake.reset();
      Authenticated(link);
      return Find(id) != nullptr;
    }
  }
  CHECK(false);  // every state is handled above
  return false;
}

void PeerTransport::Authenticated(Link& link) {
  const LinkId id = link.id;
  if (!link.outgoing && isolated_from_.count(HostOf(link.address)) != 0) {
    CloseLink(id, absl::UnavailableError("isolated (cluster isolate)"));
    return;
  }
  // A join token's link stays within the bounds of unauthenticated links (caps,
  // deadline): it may ask to join, once, and has no business staying.
  if (link.join_token == 0) ForgetUnauthenticated(link);
  link.authenticated = true;
  link.authenticated_ms = now_ms_;
  link.out.append(link.waiting);
  link.waiting.clear();
  link.waiting.shrink_to_fit();
  last_heard_ms_[link.peer] = now_ms_;
  WriteTo(link);
  if (Find(id) == nullptr) return;
  if (link.join_token == 0 && on_peer_up_) on_peer_up_(link.peer);
}

void PeerTransport::Accepted(Link& link) {
  // The back-off starts again once the peer took the link, not when it connects: a peer
  // that refuses this node (it was removed) is dialled ever less often, up to once a
  // second, not every 100 ms with a handshake each time.
  link.accepted = true;
  for (auto& [peer, dialer] : dialers_) {
    if (dialer.link == link.id) dialer.backoff_ms = 100;
  }
}

void PeerTransport::ForgetUnauthenticated(Link& link) {
  if (link.outgoing) return;  // only incoming links are counted
  --unauthenticated_links_;
  auto per_ip = unauthenticated_per_ip_.find(link.remote_ip);
  if (per_ip != unauthenticated_per_ip_.end() && --per_ip->second == 0) {
    unauthenticated_per_ip_.erase(per_ip);
  }
}

absl::Status PeerTransport::CheckPeer(Link& link, const LinkPeer& proven) {
  if (link.tls) {
    absl::StatusOr<std::string> identity = tls::PublicKeyDigest(link.tls->PeerCertificatePem());
    if (!identity.ok()) {
      return absl::PermissionDeniedError(Concat("its certificate's key cannot be read: ",
                                                std::string(identity.status().message())));
    }
    link.identity = *identity;
  }
  if (!peer_check_) return absl::OkStatus();
  return peer_check_(LinkPeer{proven.id, proven.join_token, link.identity});
}

bool PeerTransport::ShouldLog(const std::string& key) {
  if (last_logged_ms_.size() > 4096) last_logged_ms_.clear();  // bounded; worst case: more lines
  auto [it, inserted] = last_logged_ms_.emplace(key, now_ms_);
  if (!inserted && now_ms_ < it->second + 60'000) return false;
  it->second = now_ms_;
  return true;
}

void PeerTransport::Refuse(Link& link, const std::string& reason, const std::string& fix) {
  const LinkId id = link.id;  // WriteTo may free the link
  ++links_refused_;
  const std::string peer = link.outgoing ? link.address : link.remote_ip;
  if (ShouldLog(peer + "|" + reason)) {
    LogEvent(LogLevel::kWarning, "cluster_link_refused",
             Concat("peer=", peer, link.outgoing ? " direction=out" : " direction=in", " reason=",
                    LogQuote(reason), fix.empty() ? std::string() : Concat(" fix=", LogQuote(fix)),
                    " note=", LogQuote("logged once a minute per peer and reason")));
  }
  // Only an authentication frame could have been read: telling the peer why reveals
  // nothing it did not send.
  if (!link.tls || link.tls->handshake_done()) {
    link.out.clear();
    link.clear_bytes = 0;
    AppendRefusalFrame(reason, &link.out);
    WriteTo(link);
  }
  if (Find(id) != nullptr) CloseLink(id, absl::PermissionDeniedError(reason));
}

void PeerTransport::AppendPollFds(std::vector<pollfd>* fds) {
  polled_.clear();
  listener_polled_ = listen_fd_ >= 0 && now_ms_ >= accept_paused_until_ms_;
  if (listener_polled_) fds->push_back({listen_fd_, POLLIN, 0});
  for (const auto& [id, link] : links_) {
    short events = POLLIN;
    if (link->connecting || !link->out.empty() || !link->cipher_out.empty()) events |= POLLOUT;
    fds->push_back({link->fd, events, 0});
    polled_.push_back(id);
  }
}

void PeerTransport::Accept(uint64_t now_ms) {
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage from{};
    socklen_t from_length = sizeof(from);
    const int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&from), &from_length,
                           SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // The pending connection stays queued and the listener readable: polling it
        // now would spin. Rest, and let the handshake deadline free descriptors.
        accept_paused_until_ms_ = now_ms + 100;
        if (ShouldLog("accept|" + std::to_string(errno))) {
          LogEvent(LogLevel::kError, "cluster_accept_paused",
                   Concat("reason=", LogQuote(std::strerror(errno)), " fix=",
                          LogQuote("raise the open files limit (LimitNOFILE=, ulimit "
                                   "-n) or find who holds so many connections")));
        }
      }
      break;
    }
    char ip[INET6_ADDRSTRLEN] = "";
    if (from.ss_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&from)->sin_addr, ip, sizeof(ip));
    } else if (from.ss_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&from)->sin6_addr, ip, sizeof(ip));
    }
    std::string_view host = ip;
    if (host.starts_with("::ffff:") && host.find('.') != std::string_view::npos) {
      host.remove_prefix(7);  // an IPv4 peer on an IPv6 listener
    }
    const std::string remote(host);
    if (isolated_from_.count(remote) != 0) {
      close(fd);
      continue;
    }
    const auto per_ip = unauthenticated_per_ip_.find(remote);
    if (unauthenticated_links_ >= limits_.unauthenticated_links_max &&
        (per_ip == unauthenticated_per_ip_.end() ||
         per_ip->second < limits_.unauthenticated_links_per_ip_max)) {
      // Full: the oldest link that has not authenticated makes room for a newcomer its
      // address admits. A member or a joining node authenticates within a round trip;
      // idle links held by someone who cannot are the old ones, so refusing the
      // newcomer would lock members out.
      for (auto& [id, held] : links_) {
        if (held->outgoing || (held->authenticated && held->join_token == 0)) continue;
        Refuse(*held, "evicted: too many links that have not authenticated", "");
        break;
      }
    }
    size_t& from_ip = unauthenticated_per_ip_[remote];
    if (unauthenticated_links_ >= limits_.unauthenticated_links_max ||
        from_ip >= limits_.unauthenticated_links_per_ip_max) {
      if (from_ip == 0) unauthenticated_per_ip_.erase(remote);
      close(fd);
      ++links_refused_;
      if (ShouldLog(remote + "|cap")) {
        LogEvent(LogLevel::kWarning, "cluster_link_refused",
                 Concat("peer=", remote, " direction=in reason=",
                        LogQuote(Concat("too many links that have not authenticated (",
                                        std::to_string(from_ip), " from this address, ",
                                        std::to_string(unauthenticated_links_), " in all)")),
                        " note=", LogQuote("logged once a minute per peer and reason")));
      }
      continue;
    }
    ++from_ip;
    ++unauthenticated_links_;
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto link = std::make_unique<Link>();
    link->id = next_link_++;
    link->fd = fd;
    link->address = "(incoming)";
    link->remote_ip = remote;
    link->deadline_ms = now_ms + limits_.handshake_timeout_ms;
    Link& added = *link;
    links_[link->id] = std::move(link);
    StartTls(added);
  }
}

void PeerTransport::HandlePoll(const std::vector<pollfd>& fds, size_t first, uint64_t now_ms) {
  now_ms_ = now_ms;
  size_t at = first;
  if (listener_polled_) {
    if (fds[at].revents & POLLIN) Accept(now_ms);
    ++at;
  }
  for (const LinkId id : polled_) {
    const short revents = fds[at++].revents;
    Link* link = Find(id);
    if (link == nullptr || revents == 0) continue;
    if (link->connecting) {
      int error = 0;
      socklen_t length = sizeof(error);
      getsockopt(link->fd, SOL_SOCKET, SO_ERROR, &error, &length);
      if (error != 0) {
        CloseLink(id, Errno(Concat("cannot connect to ", link->address), error));
        continue;
      }
      if ((revents & POLLOUT) == 0) continue;
      link->connecting = false;
      if (!StartTls(*link)) continue;
    }
    if (revents & POLLOUT) WriteTo(*link);
    link = Find(id);
    if (link != nullptr && (revents & (POLLIN | POLLHUP | POLLERR))) ReadFrom(*link);
  }
}

void PeerTransport::Tick(uint64_t now_ms) {
  now_ms_ = now_ms;
  FlushAll();
  std::vector<LinkId> expired;
  for (const auto& [id, link] : links_) {
    const bool bounded = !link->authenticated || (link->join_token != 0 && !link->outgoing);
    if ((link->connecting && now_ms >= link->connect_deadline_ms) ||
        (bounded && now_ms >= link->deadline_ms)) {
      expired.push_back(id);
    }
  }
  for (const LinkId id : expired) {
    Link* link = Find(id);
    if (link->connecting) {
      CloseLink(id, absl::DeadlineExceededError(
                        Concat("cannot connect to ", link->address, ": connect timed out")));
    } else {
      Refuse(*link,
             link->authenticated ? Concat("a join link stays at most ",
                                          std::to_string(limits_.handshake_timeout_ms), " ms")
                                 : Concat("did not authenticate within ",
                                          std::to_string(limits_.handshake_timeout_ms), " ms"),
             "");
    }
  }
  for (auto& [peer, dialer] : dialers_) {
    if (dialer.link != kNoLink) {
      Link* link = Find(dialer.link);
      if (link != nullptr && link->authenticated && !link->accepted &&
          now_ms >= link->authenticated_ms + kAcceptedAfterMs) {
        Accepted(*link);
      }
      continue;
    }
    if (now_ms < dialer.retry_at_ms) continue;
    absl::Status error;
    dialer.link = Open(dialer.address, peer, true, std::nullopt, now_ms, &error);
    if (dialer.link == kNoLink) {
      dialer.retry_at_ms = now_ms + dialer.backoff_ms;
      dialer.backoff_ms = std::min<uint64_t>(dialer.backoff_ms * 2, 1000);
    }
  }
}

}  // namespace stanzad::cluster
