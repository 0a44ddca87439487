// Fuzzes what the metrics server reads from a client: ParseRequest on the bytes
// as they arrive in arbitrary reads, and ParseRequestLine. Oracles: the first
// outcome that is not kIncomplete is the outcome of all the bytes (more bytes
// never change it); a complete request has a method and a path as promised and
// agrees with ParseRequestLine; a full buffer is never kIncomplete.
//
// The first byte picks the read size (bits 0-5) and whether the rest repeats
// past kRequestBytesMax (bit 7), which inputs of libFuzzer's default length do
// not reach; repeated inputs are read in chunks 64 times bigger.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "metrics/http_server.h"

namespace {

using stanzad::metrics::HttpRequest;
using stanzad::metrics::kRequestBytesMax;
using stanzad::metrics::ParseRequest;
using stanzad::metrics::ParseRequestLine;
using stanzad::metrics::RequestStatus;

void Check(bool ok) {
  if (!ok) std::abort();
}

bool Within(std::string_view part, std::string_view whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

void CheckRequest(const HttpRequest& request, std::string_view received) {
  Check(Within(request.method, received) && Within(request.path, received));
  Check(!request.method.empty() && request.method.find(' ') == std::string_view::npos);
  Check(!request.path.empty() && request.path[0] == '/');
  Check(request.path.find_first_of(" ?") == std::string_view::npos);
  std::string_view method, path;
  Check(ParseRequestLine(received, &method, &path));
  Check(method == request.method && path == request.path);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool repeat = (data[0] & 0x80) != 0;
  const size_t chunk = (1 + data[0] % 64) * (repeat ? 64 : 1);
  std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (repeat && !input.empty()) {
    while (input.size() <= kRequestBytesMax) input.append(input);
  }
  // The server reads no more than the limit.
  if (input.size() > kRequestBytesMax) input.resize(kRequestBytesMax);

  // As the server reads: stop at the first outcome.
  std::string received;
  RequestStatus first = RequestStatus::kIncomplete;
  HttpRequest first_request;
  for (size_t at = 0; at < input.size() && first == RequestStatus::kIncomplete; at += chunk) {
    received.append(std::string_view(input).substr(at, chunk));
    first = ParseRequest(received, &first_request);
  }
  if (first == RequestStatus::kComplete) CheckRequest(first_request, received);

  HttpRequest request;
  const RequestStatus whole = ParseRequest(input, &request);
  Check(whole == first);
  if (whole == RequestStatus::kComplete) {
    CheckRequest(request, input);
    Check(request.method == first_request.method && request.path == first_request.path);
  }
  if (input.size() >= kRequestBytesMax) Check(whole != RequestStatus::kIncomplete);

  // ParseRequestLine alone, on anything.
  std::string_view method, path;
  if (ParseRequestLine(input, &method, &path)) {
    Check(Within(method, input) && Within(path, input) && !path.empty() && path[0] == '/');
  }
  return 0;
}
