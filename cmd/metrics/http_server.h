// A minimal HTTP/1.1 server for /metrics and /healthz, on its own thread so a
// scrape never waits for the control plane (and a slow scraper never holds
// it). One request per connection (Connection: close), GET and HEAD only,
// requests up to 8 KiB, 2 s to send the request and 2 s to take the response:
// a client that stalls or sends garbage gets a 4xx or is dropped, and the
// next client is served.
#ifndef STANZAD_CMD_METRICS_HTTP_SERVER_H_
#define STANZAD_CMD_METRICS_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"
#include "net/engine.h"

namespace stanzad::metrics {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpServer {
 public:
  // Called on the server's thread with the request path (query string removed).
  using Handler = std::function<HttpResponse(std::string_view path)>;

  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const net::Endpoint& endpoint,
                                                           Handler handler);
  ~HttpServer();  // stops the thread and closes the socket

  // The bound address (with the port the kernel chose when asked for 0).
  const net::Endpoint& endpoint() const { return endpoint_; }

 private:
  HttpServer() = default;
  void Loop();
  void ServeConnection(int fd);

  net::Endpoint endpoint_;
  Handler handler_;
  int listen_fd_ = -1;
  int stop_fds_[2] = {-1, -1};
  std::thread thread_;
};

// "GET /metrics HTTP/1.1\r\n..." → method and path; false if it is not a
// request line.
bool ParseRequestLine(std::string_view request, std::string_view* method, std::string_view* path);

}  // namespace stanzad::metrics

#endif  // STANZAD_CMD_METRICS_HTTP_SERVER_H_
