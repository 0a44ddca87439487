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

#include "core/base/concat.h"
#include "core/base/log.h"

namespace stanzad::cluster {
namespace {

absl::Status Errno(std::string_view what, int error) {
  return absl::UnavailableError(Concat(what, ": ", std::strerror(error)));
}

}  // namespace

PeerTransport::PeerTransport(Hello self, FrameHandler on_frame, CloseHandler on_close)
    : self_(std::move(self)), on_frame_(std::move(on_frame)), on_close_(std::move(on_close)) {}

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

PeerTransport::Link* PeerTransport::Find(LinkId id) {
  auto it = links_.find(id);
  return it == links_.end() ? nullptr : it->second.get();
}

bool PeerTransport::Connected(raft::NodeId peer) const {
  for (const auto& [id, link] : links_) {
    if (link->peer == peer && !link->connecting && (link->outgoing || link->hello_seen) &&
        (!link->tls || link->tls->handshake_done())) {
      return true;
    }
  }
  return false;
}

bool PeerTransport::SendOn(LinkId id, FrameType type, std::string_view payload) {
  Link* link = Find(id);
  if (link == nullptr) return false;
  if (link->out.size() + payload.size() > kQueueBytesMax) {
    ++frames_dropped_;
    CloseLink(id, absl::ResourceExhaustedError("the peer does not take what is sent to it"));
    return false;
  }
  AppendFrame(type, payload, &link->out);
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

bool PeerTransport::SendTo(raft::NodeId peer, FrameType type, std::string_view payload) {
  // Our own link first (connected or connecting: its queue leaves once it is up).
  auto dialer = dialers_.find(peer);
  if (dialer != dialers_.end() && dialer->second.link != kNoLink) {
    Link* link = Find(dialer->second.link);
    if (link != nullptr && !link->connecting) return SendOn(link->id, type, payload);
  }
  for (const auto& [id, link] : links_) {
    if (!link->outgoing && link->hello_seen && link->peer == peer) {
      return SendOn(id, type, payload);
    }
  }
  ++frames_dropped_;
  return false;
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
         ((link.outgoing || link.hello_seen) && isolated_from_.count(HostOf(link.address)) != 0);
}

void PeerTransport::SetIsolatedFrom(std::set<std::string> hosts) {
  isolated_from_ = std::move(hosts);
  std::vector<LinkId> cut;
  for (const auto& [id, link] : links_) {
    if (Isolated(*link)) cut.push_back(id);
  }
  for (const LinkId id : cut) CloseLink(id, absl::UnavailableError("isolated (cluster isolate)"));
}

LinkId PeerTransport::Dial(const std::string& address, uint64_t now_ms, absl::Status* error) {
  return Open(address, raft::kNoNode, false, now_ms, error);
}

LinkId PeerTransport::Open(const std::string& address, raft::NodeId peer, bool persistent,
                           uint64_t now_ms, absl::Status* error) {
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
  AppendFrame(FrameType::kHello, EncodeHello(self_), &link->out);
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
    if (!StartTls(*links_[id])) return kNoLink;
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
  if (link->persistent) {
    for (auto& [peer, dialer] : dialers_) {
      if (dialer.link != id) continue;
      dialer.link = kNoLink;
      dialer.retry_at_ms = now_ms_ + dialer.backoff_ms;
      dialer.backoff_ms = std::min<uint64_t>(dialer.backoff_ms * 2, 1000);
    }
  }
  if (on_close_) on_close_(id, link->hello_seen || link->persistent ? link->peer : 0, reason);
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
  }
  std::string& pending = link.tls ? link.cipher_out : link.out;
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
    if (link.tls) {
      const bool was_done = link.tls->handshake_done();
      absl::Status fed = link.tls->Feed(std::string_view(buffer, static_cast<size_t>(n)));
      if (fed.ok()) fed = link.tls->Read(&link.in);
      if (!fed.ok()) {
        LogEvent(
            LogLevel::kWarning, "cluster_link_refused",
            Concat("peer=", link.address, " reason=", LogQuote(std::string(fed.message())), " fix=",
                   LogQuote("both nodes need 'stanzactl certs' with certificates "
                            "that chain to the bundle set by 'cluster trust'")));
        WriteTo(link);  // the alert, if any
        if (Find(id) != nullptr) CloseLink(id, fed);
        return;
      }
      if (!was_done && link.tls->handshake_done() && link.outgoing && link.persistent &&
          on_peer_up_) {
        // Our link is usable now (with TLS, "connected" means the handshake is done).
        WriteTo(link);
        if (Find(id) == nullptr) return;
        on_peer_up_(link.peer);
        if (Find(id) == nullptr) return;
      }
      WriteTo(link);  // handshake replies, and frames that waited for it
      if (Find(id) == nullptr) return;
    } else {
      link.in.append(buffer, static_cast<size_t>(n));
    }
    if (static_cast<size_t>(n) < sizeof(buffer)) break;
  }
  size_t offset = 0;
  while (true) {
    Link* current = Find(id);  // a handler may close it
    if (current == nullptr) return;
    absl::StatusOr<std::optional<Frame>> frame = ParseFrameAt(current->in, &offset);
    if (!frame.ok()) {
      LogEvent(LogLevel::kWarning, "cluster_link_bad_frame",
               Concat("peer=", current->address,
                      " reason=", LogQuote(std::string(frame.status().message()))));
      CloseLink(id, frame.status());
      return;
    }
    if (!frame->has_value()) {
      current->in.erase(0, offset);
      return;
    }
    Frame& got = **frame;
    if (got.type == FrameType::kHello) {
      absl::StatusOr<Hello> hello = DecodeHello(got.payload);
      if (!hello.ok() || current->outgoing || current->hello_seen) {
        CloseLink(id, absl::InvalidArgumentError("unexpected or bad hello"));
        return;
      }
      current->hello_seen = true;
      current->peer = hello->id;
      current->address = hello->address;
      if (Isolated(*current)) {
        CloseLink(id, absl::UnavailableError("isolated (cluster isolate)"));
        return;
      }
      if (on_peer_up_) on_peer_up_(hello->id);
      continue;
    }
    if (!current->outgoing && !current->hello_seen) {
      CloseLink(id, absl::InvalidArgumentError("frames before hello"));
      return;
    }
    if (current->peer != raft::kNoNode) last_heard_ms_[current->peer] = now_ms_;
    on_frame_(id, current->peer, std::move(got));
  }
}

void PeerTransport::AppendPollFds(std::vector<pollfd>* fds) {
  polled_.clear();
  listener_polled_ = listen_fd_ >= 0;
  if (listener_polled_) fds->push_back({listen_fd_, POLLIN, 0});
  for (const auto& [id, link] : links_) {
    short events = POLLIN;
    if (link->connecting || !link->out.empty() || !link->cipher_out.empty()) events |= POLLOUT;
    fds->push_back({link->fd, events, 0});
    polled_.push_back(id);
  }
}

void PeerTransport::HandlePoll(const std::vector<pollfd>& fds, size_t first, uint64_t now_ms) {
  now_ms_ = now_ms;
  size_t at = first;
  if (listener_polled_) {
    if (fds[at].revents & POLLIN) {
      for (int i = 0; i < 64; ++i) {
        sockaddr_storage from{};
        socklen_t from_length = sizeof(from);
        const int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&from), &from_length,
                               SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;
        char ip[INET6_ADDRSTRLEN] = "";
        if (from.ss_family == AF_INET) {
          inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&from)->sin_addr, ip,
                    sizeof(ip));
        } else if (from.ss_family == AF_INET6) {
          inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&from)->sin6_addr, ip,
                    sizeof(ip));
        }
        std::string_view host = ip;
        if (host.starts_with("::ffff:") && host.find('.') != std::string_view::npos) {
          host.remove_prefix(7);  // an IPv4 peer on an IPv6 listener
        }
        if (isolated_from_.count(std::string(host)) != 0) {
          close(fd);
          continue;
        }
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        auto link = std::make_unique<Link>();
        link->id = next_link_++;
        link->fd = fd;
        link->address = "(incoming)";
        link->remote_ip = host;
        Link& added = *link;
        links_[link->id] = std::move(link);
        StartTls(added);
      }
    }
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
      for (auto& [peer, dialer] : dialers_) {
        if (dialer.link == id) dialer.backoff_ms = 100;
      }
      if (!StartTls(*link)) continue;
      if (link->persistent && on_peer_up_ && !link->tls) {
        on_peer_up_(link->peer);
        link = Find(id);
        if (link == nullptr) continue;
      }
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
    if (link->connecting && now_ms >= link->connect_deadline_ms) expired.push_back(id);
  }
  for (const LinkId id : expired) {
    CloseLink(id, absl::DeadlineExceededError("connect timed out"));
  }
  for (auto& [peer, dialer] : dialers_) {
    if (dialer.link != kNoLink || now_ms < dialer.retry_at_ms) continue;
    absl::Status error;
    dialer.link = Open(dialer.address, peer, true, now_ms, &error);
    if (dialer.link == kNoLink) {
      dialer.retry_at_ms = now_ms + dialer.backoff_ms;
      dialer.backoff_ms = std::min<uint64_t>(dialer.backoff_ms * 2, 1000);
    }
  }
}

}  // namespace stanzad::cluster
