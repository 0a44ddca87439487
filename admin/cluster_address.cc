#include "admin/cluster_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>

#include "core/base/concat.h"
#include "core/base/decimal.h"

namespace stanzad {
namespace {

bool IsIpLiteral(const std::string& host, bool* v6) {
  in6_addr scratch{};
  if (inet_pton(AF_INET, host.c_str(), &scratch) == 1) {
    *v6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &scratch) == 1) {
    *v6 = true;
    return true;
  }
  return false;
}

std::string Join(const std::string& host, bool v6, std::optional<uint16_t> port) {
  const std::string bracketed = v6 ? Concat("[", host, "]") : host;
  return port ? Concat(bracketed, ":", std::to_string(*port)) : bracketed;
}

}  // namespace

absl::StatusOr<HostPort> SplitHostPort(std::string_view text) {
  HostPort out;
  std::string_view port_text;
  bool has_port = false;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(Concat("missing ']' in '", text, "'"));
    }
    out.host = std::string(text.substr(1, close - 1));
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') {
        return absl::InvalidArgumentError(Concat("expected :PORT after ] in '", text, "'"));
      }
      port_text = text.substr(close + 2);
      has_port = true;
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    const size_t colon = text.find(':');
    out.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    has_port = true;
  } else {
    out.host = std::string(text);  // a name, IPv4, or a bare IPv6 address
  }
  if (has_port) {
    const std::optional<uint16_t> port = ParseDecimal<uint16_t>(port_text);
    if (!port || *port == 0) {
      return absl::InvalidArgumentError(Concat("bad port in '", text, "' (1 to 65535)"));
    }
    out.port = *port;
  }
  if (out.host.empty()) return absl::InvalidArgumentError("no host given (HOST[:PORT])");
  return out;
}

absl::StatusOr<std::string> ClusterAddressOf(std::string_view text, uint16_t default_port) {
  absl::StatusOr<HostPort> split = SplitHostPort(text);
  if (!split.ok()) return split.status();
  bool v6 = false;
  if (!IsIpLiteral(split->host, &v6)) {
    return absl::InvalidArgumentError(
        Concat("'", split->host,
               "' is a name: stanzactl resolves names before it sends them (this node's control "
               "thread never waits for DNS); give the node's IP address, or use the stanzactl "
               "that came with this stanzad"));
  }
  return Join(split->host, v6, split->port.value_or(default_port));
}

absl::StatusOr<std::string> ResolveNameIn(std::string_view text) {
  absl::StatusOr<HostPort> split = SplitHostPort(text);
  if (!split.ok()) return split.status();
  bool v6 = false;
  if (IsIpLiteral(split->host, &v6)) return std::string(text);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(split->host.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) {
    return absl::NotFoundError(
        Concat("cannot resolve '", split->host, "': give the node's IP address or a name in DNS"));
  }
  char ip[INET6_ADDRSTRLEN] = {};
  v6 = found->ai_family == AF_INET6;
  if (v6) {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(found->ai_addr)->sin6_addr, ip,
              sizeof(ip));
  } else {
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr, ip, sizeof(ip));
  }
  freeaddrinfo(found);
  return Join(ip, v6, split->port);
}

}  // namespace stanzad
