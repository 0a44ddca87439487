// A minimal HTTP/1.1 server for /metrics and /healthz, on its own thread so a
// scrape never waits for the control plane (and a slow scraper never holds
// it). One request per connection (Connection: close), GET and HEAD only.
//
// No client can keep another from its /healthz: the thread polls every
// connection on non-blocking sockets and never waits on one. Each connection
// has kRequestTimeoutMs from its accept to send a whole request head of at
// most kRequestBytesMax, however slowly the bytes trickle in, and then
// kResponseTimeoutMs to take the response; at most kConnectionsMax are open
// at once, and one more is closed as soon as it is accepted. A client that
// stalls or sends garbage gets a 4xx or is dropped.
#ifndef STANZAD_METRICS_HTTP_SERVER_H_
#define STANZAD_METRICS_HTTP_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "net/engine.h"

namespace stanzad::metrics {

inline constexpr size_t kConnectionsMax = 64;
inline constexpr size_t kRequestBytesMax = 8 * 1024;  // the request line and headers
inline constexpr int64_t kRequestTimeoutMs = 2000;    // from accept to the end of the head
inline constexpr int64_t kResponseTimeoutMs = 2000;   // to take the whole response

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
  ~HttpServer();  // stops the thread and closes every socket

  // The bound address (with the port the kernel chose when asked for 0).
  const net::Endpoint& endpoint() const { return endpoint_; }

 private:
  struct Connection;

  HttpServer() = default;
  void Loop();
  void AcceptAll(int64_t now_ms);
  void Receive(Connection& connection, int64_t now_ms);
  void Send(Connection& connection);

  net::Endpoint endpoint_;
  Handler handler_;
  int listen_fd_ = -1;
  int stop_fds_[2] = {-1, -1};
  // Only the server's thread touches these.
  std::vector<Connection> connections_;  // at most kConnectionsMax
  int64_t accept_paused_until_ms_ = 0;   // out of descriptors: accept again later
  std::thread thread_;
};

// "GET /metrics HTTP/1.1\r\n..." → method and path; false if it is not a
// request line.
bool ParseRequestLine(std::string_view request, std::string_view* method, std::string_view* path);

// What the bytes a client has sent so far amount to.
enum class RequestStatus {
  kIncomplete,  // no blank line yet, and still room for one
  kComplete,    // a request head with a good request line
  kMalformed,   // a bad request line, or no end of the head within kRequestBytesMax
};
struct HttpRequest {
  std::string_view method;
  std::string_view path;  // starts with '/', without the query string
};
// Parses `received` (the first bytes of a connection). With kComplete,
// *request holds views into `received`. A bad request line is kMalformed as
// soon as the line is complete; once kComplete or kMalformed, more bytes never
// change the outcome.
RequestStatus ParseRequest(std::string_view received, HttpRequest* request);

}  // namespace stanzad::metrics

#endif  // STANZAD_METRICS_HTTP_SERVER_H_
