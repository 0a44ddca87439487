#include "metrics/http_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace stanzad::metrics {

// One accepted client: its request while it arrives, then its response.
struct HttpServer::Connection {
  int fd = -1;
  std::string received;  // at most kRequestBytesMax
  std::string response;  // empty while the request is arriving
  size_t sent = 0;
  int64_t deadline_ms = 0;  // the request's, then the response's
  bool done = false;        // answered, gone or expired: close it
};

namespace {

// While accept() fails for want of descriptors, the listener stays readable;
// polling it then would spin, so it waits this long.
constexpr int64_t kAcceptPauseMs = 100;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string_view Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

// The bytes to send for a request that is complete or malformed.
std::string Respond(RequestStatus status, const HttpRequest& request,
                    const HttpServer::Handler& handler) {
  HttpResponse response;
  std::string extra_headers;
  if (status != RequestStatus::kComplete) {
    response = {400, "text/plain; charset=utf-8", "bad request\n"};
  } else if (request.method != "GET" && request.method != "HEAD") {
    response = {405, "text/plain; charset=utf-8", "only GET and HEAD\n"};
    extra_headers = "Allow: GET, HEAD\r\n";
  } else {
    response = handler(request.path);
  }
  std::string bytes = "HTTP/1.1 " + std::to_string(response.status) + " " +
                      std::string(Reason(response.status)) +
                      "\r\nContent-Type: " + response.content_type +
                      "\r\nContent-Length: " + std::to_string(response.body.size()) +
                      "\r\nConnection: close\r\n" + extra_headers + "\r\n";
  if (status != RequestStatus::kComplete || request.method != "HEAD") bytes += response.body;
  return bytes;
}

}  // namespace

bool ParseRequestLine(std::string_view request, std::string_view* method, std::string_view* path) {
  const size_t line_end = request.find("\r\n");
  const std::string_view line = request.substr(0, line_end);
  const size_t first = line.find(' ');
  if (first == std::string_view::npos || first == 0) return false;
  const size_t second = line.find(' ', first + 1);
  if (second == std::string_view::npos || second == first + 1) return false;
  if (line.substr(second + 1).rfind("HTTP/1.", 0) != 0) return false;
  *method = line.substr(0, first);
  std::string_view target = line.substr(first + 1, second - first - 1);
  if (target.empty() || target[0] != '/') return false;
  *path = target.substr(0, target.find('?'));
  return true;
}

RequestStatus ParseRequest(std::string_view received, HttpRequest* request) {
  const size_t line_end = received.find("\r\n");
  if (line_end == std::string_view::npos) {
    return received.size() >= kRequestBytesMax ? RequestStatus::kMalformed
                                               : RequestStatus::kIncomplete;
  }
  HttpRequest parsed;
  if (!ParseRequestLine(received.substr(0, line_end + 2), &parsed.method, &parsed.path)) {
    return RequestStatus::kMalformed;
  }
  // The head ends at the first blank line, which must lie within the limit.
  const size_t head_end = received.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    return received.size() >= kRequestBytesMax ? RequestStatus::kMalformed
                                               : RequestStatus::kIncomplete;
  }
  if (head_end + 4 > kRequestBytesMax) return RequestStatus::kMalformed;
  *request = parsed;
  return RequestStatus::kComplete;
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const net::Endpoint& endpoint,
                                                              Handler handler) {
  std::unique_ptr<HttpServer> server(new HttpServer);
  server->handler_ = std::move(handler);
  server->endpoint_ = endpoint;
  const int fd = socket(endpoint.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::InternalError(std::string("socket: ") + std::strerror(errno));
  server->listen_fd_ = fd;
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length) != 0 ||
      listen(fd, static_cast<int>(kConnectionsMax)) != 0) {
    return absl::UnavailableError("cannot listen on " + endpoint.ToString() + ": " +
                                  std::strerror(errno));
  }
  server->endpoint_.length = sizeof(server->endpoint_.address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&server->endpoint_.address),
              &server->endpoint_.length);
  if (pipe2(server->stop_fds_, O_CLOEXEC) != 0) {
    return absl::InternalError(std::string("pipe: ") + std::strerror(errno));
  }
  server->connections_.reserve(kConnectionsMax);
  server->thread_ = std::thread([raw = server.get()] { raw->Loop(); });
  return server;
}

HttpServer::~HttpServer() {
  if (thread_.joinable()) {
    const char stop = 1;
    [[maybe_unused]] ssize_t written = write(stop_fds_[1], &stop, 1);
    thread_.join();
  }
  for (const Connection& connection : connections_) close(connection.fd);
  for (const int fd : {listen_fd_, stop_fds_[0], stop_fds_[1]}) {
    if (fd >= 0) close(fd);
  }
}

void HttpServer::Loop() {
  std::vector<pollfd> fds;
  fds.reserve(2 + kConnectionsMax);
  while (true) {
    int64_t now_ms = NowMs();
    const bool accepting = now_ms >= accept_paused_until_ms_;
    int64_t wake_ms = accepting ? -1 : accept_paused_until_ms_;
    fds.assign({{stop_fds_[0], POLLIN, 0}, {accepting ? listen_fd_ : -1, POLLIN, 0}});
    for (const Connection& connection : connections_) {
      fds.push_back(
          {connection.fd, connection.response.empty() ? short{POLLIN} : short{POLLOUT}, 0});
      if (wake_ms < 0 || connection.deadline_ms < wake_ms) wake_ms = connection.deadline_ms;
    }
    const int timeout_ms =
        wake_ms < 0 ? -1 : static_cast<int>(std::max<int64_t>(0, wake_ms - now_ms));
    if (poll(fds.data(), fds.size(), timeout_ms) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) return;
    now_ms = NowMs();
    // fds[2 + i] is connections_[i]: serve them before accepting appends more.
    for (size_t i = 0; i < connections_.size(); ++i) {
      Connection& connection = connections_[i];
      const short revents = fds[2 + i].revents;
      if (revents & (POLLERR | POLLNVAL)) {
        connection.done = true;
      } else if (connection.response.empty() && (revents & (POLLIN | POLLHUP))) {
        Receive(connection, now_ms);
      } else if (!connection.response.empty() && (revents & (POLLOUT | POLLHUP))) {
        Send(connection);
      }
      if (now_ms >= connection.deadline_ms) connection.done = true;  // stalled or trickling
    }
    std::erase_if(connections_, [](const Connection& connection) {
      if (connection.done) close(connection.fd);
      return connection.done;
    });
    if (fds[1].revents & POLLIN) AcceptAll(now_ms);
  }
}

void HttpServer::AcceptAll(int64_t now_ms) {
  // Bounded so that a flood of connections cannot keep the loop from the others.
  for (size_t accepted = 0; accepted < kConnectionsMax; ++accepted) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        accept_paused_until_ms_ = now_ms + kAcceptPauseMs;
      }
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    if (connections_.size() >= kConnectionsMax) {
      close(fd);  // full: closed at once rather than left waiting in the backlog
      continue;
    }
    Connection& connection = connections_.emplace_back();
    connection.fd = fd;
    connection.deadline_ms = now_ms + kRequestTimeoutMs;
  }
}

void HttpServer::Receive(Connection& connection, int64_t now_ms) {
  char buffer[4096];
  const size_t room = std::min(sizeof(buffer), kRequestBytesMax - connection.received.size());
  const ssize_t n = recv(connection.fd, buffer, room, 0);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) connection.done = true;
    return;
  }
  if (n == 0) {
    connection.done = true;  // gone before the request was complete: nobody to answer
    return;
  }
  connection.received.append(buffer, static_cast<size_t>(n));
  HttpRequest request;
  const RequestStatus status = ParseRequest(connection.received, &request);
  if (status == RequestStatus::kIncomplete) return;
  connection.response = Respond(status, request, handler_);
  connection.deadline_ms = now_ms + kResponseTimeoutMs;
  Send(connection);  // most responses fit the socket buffer: no need to wait for POLLOUT
}

void HttpServer::Send(Connection& connection) {
  while (connection.sent < connection.response.size()) {
    const ssize_t n = send(connection.fd, connection.response.data() + connection.sent,
                           connection.response.size() - connection.sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // when POLLOUT says
    if (n <= 0) break;  // the client went away: nothing to do
    connection.sent += static_cast<size_t>(n);
  }
  connection.done = true;
}

}  // namespace stanzad::metrics
