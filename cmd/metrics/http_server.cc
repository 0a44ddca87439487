#include "cmd/metrics/http_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>

#include <cerrno>
#include <cstring>

namespace stanzad::metrics {
namespace {

constexpr size_t kRequestBytesMax = 8 * 1024;

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

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // timed out or the client went away: nothing to do
    data.remove_prefix(static_cast<size_t>(n));
  }
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

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const net::Endpoint& endpoint,
                                                              Handler handler) {
  std::unique_ptr<HttpServer> server(new HttpServer);
  server->handler_ = std::move(handler);
  server->endpoint_ = endpoint;
  const int fd = socket(endpoint.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(std::string("socket: ") + std::strerror(errno));
  server->listen_fd_ = fd;
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length) != 0 ||
      listen(fd, 64) != 0) {
    return absl::UnavailableError("cannot listen on " + endpoint.ToString() + ": " +
                                  std::strerror(errno));
  }
  server->endpoint_.length = sizeof(server->endpoint_.address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&server->endpoint_.address),
              &server->endpoint_.length);
  if (pipe2(server->stop_fds_, O_CLOEXEC) != 0) {
    return absl::InternalError(std::string("pipe: ") + std::strerror(errno));
  }
  server->thread_ = std::thread([raw = server.get()] { raw->Loop(); });
  return server;
}

HttpServer::~HttpServer() {
  if (thread_.joinable()) {
    const char stop = 1;
    [[maybe_unused]] ssize_t written = write(stop_fds_[1], &stop, 1);
    thread_.join();
  }
  for (const int fd : {listen_fd_, stop_fds_[0], stop_fds_[1]}) {
    if (fd >= 0) close(fd);
  }
}

void HttpServer::Loop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fds_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ServeConnection(fd);
    close(fd);
  }
}

void HttpServer::ServeConnection(int fd) {
  timeval timeout{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  std::string request;
  char buffer[2048];
  while (request.find("\r\n\r\n") == std::string::npos) {
    if (request.size() > kRequestBytesMax) break;
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // closed or stalled: nobody to answer
    request.append(buffer, static_cast<size_t>(n));
  }
  HttpResponse response;
  std::string_view method, path;
  std::string extra_headers;
  if (request.size() > kRequestBytesMax || !ParseRequestLine(request, &method, &path)) {
    response = {400, "text/plain; charset=utf-8", "bad request\n"};
  } else if (method != "GET" && method != "HEAD") {
    response = {405, "text/plain; charset=utf-8", "only GET and HEAD\n"};
    extra_headers = "Allow: GET, HEAD\r\n";
  } else {
    response = handler_(path);
  }
  std::string head = "HTTP/1.1 " + std::to_string(response.status) + " " +
                     std::string(Reason(response.status)) +
                     "\r\nContent-Type: " + response.content_type +
                     "\r\nContent-Length: " + std::to_string(response.body.size()) +
                     "\r\nConnection: close\r\n" + extra_headers + "\r\n";
  WriteAll(fd, head);
  if (method != "HEAD") WriteAll(fd, response.body);
}

}  // namespace stanzad::metrics
