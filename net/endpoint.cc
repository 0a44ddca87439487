// Endpoint: parsing and printing of "HOST:PORT", "[V6]:PORT" and bare IPs.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include <cstring>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "core/base/concat.h"
#include "core/base/decimal.h"
#include "net/engine.h"

namespace stanzad::net {
namespace {

absl::Status Invalid(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(Concat("invalid address \"", text, "\": ", why));
}

bool ParsePort(std::string_view text, uint16_t* port) {
  if (text.size() > 5) return false;
  const std::optional<uint16_t> value = ParseDecimal<uint16_t>(text);
  if (!value) return false;
  *port = *value;
  return true;
}

// "fe80::1%eth0" or "fe80::1%2": the zone names an interface or is its index.
bool ParseZone(std::string_view zone, uint32_t* scope_id) {
  if (zone.empty() || zone.size() >= IF_NAMESIZE) return false;
  if (const std::optional<uint32_t> index = ParseDecimal<uint32_t>(zone)) {
    *scope_id = *index;
    return true;
  }
  const std::string name(zone);
  *scope_id = if_nametoindex(name.c_str());
  return *scope_id != 0;
}

}  // namespace

std::string Endpoint::ToString() const {
  char host[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET && length >= sizeof(sockaddr_in)) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(address);
    inet_ntop(AF_INET, &v4.sin_addr, host, sizeof(host));
    return Concat(host, ":", std::to_string(ntohs(v4.sin_port)));
  }
  if (address.ss_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(address);
    inet_ntop(AF_INET6, &v6.sin6_addr, host, sizeof(host));
    const std::string zone =
        v6.sin6_scope_id == 0 ? std::string() : Concat("%", std::to_string(v6.sin6_scope_id));
    return Concat("[", host, zone, "]:", std::to_string(ntohs(v6.sin6_port)));
  }
  return "<unknown address>";
}

std::string Endpoint::IpString() const {
  std::string text = ToString();
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return text;
  text.resize(colon);
  if (text.size() >= 2 && text.front() == '[') text = text.substr(1, text.size() - 2);
  return text;
}

absl::StatusOr<Endpoint> Endpoint::Parse(std::string_view text, uint16_t default_port) {
  std::string_view host = text;
  uint16_t port = default_port;
  bool bracketed = false;
  if (text.empty()) return Invalid(text, "empty");
  if (text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return Invalid(text, "missing ']'");
    host = text.substr(1, close - 1);
    bracketed = true;
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return Invalid(text, "expected ':PORT' after ']'");
      if (!ParsePort(rest.substr(1), &port)) return Invalid(text, "port must be 0 to 65535");
    }
  } else {
    const size_t colon = text.rfind(':');
    // One colon: HOST:PORT. Several: a bare IPv6 address, which needs
    // brackets to carry a port.
    if (colon != std::string_view::npos && text.find(':') == colon) {
      host = text.substr(0, colon);
      if (!ParsePort(text.substr(colon + 1), &port)) {
        return Invalid(text, "port must be 0 to 65535");
      }
    }
  }
  if (host.empty()) return Invalid(text, "no IP address");

  Endpoint endpoint;
  const std::string host_text(host);
  sockaddr_in v4{};
  if (!bracketed && inet_pton(AF_INET, host_text.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(&endpoint.address, &v4, sizeof(v4));
    endpoint.length = sizeof(v4);
    return endpoint;
  }
  sockaddr_in6 v6{};
  std::string address_text = host_text;
  const size_t percent = host_text.find('%');
  if (percent != std::string::npos) {
    address_text = host_text.substr(0, percent);
    if (!ParseZone(std::string_view(host_text).substr(percent + 1), &v6.sin6_scope_id)) {
      return Invalid(text, "unknown IPv6 zone (interface)");
    }
  }
  if (inet_pton(AF_INET6, address_text.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    std::memcpy(&endpoint.address, &v6, sizeof(v6));
    endpoint.length = sizeof(v6);
    return endpoint;
  }
  return Invalid(text, bracketed ? "not an IPv6 address"
                                 : "not an IP address (host names are not resolved here)");
}

}  // namespace stanzad::net
