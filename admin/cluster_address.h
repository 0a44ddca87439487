// A cluster member's address as an operator types it, "HOST[:PORT]" (HOST an IPv4
// address, [IPv6], or a name), for `stanzactl cluster join` and `cluster remove`.
//
// Names are resolved by stanzactl (ResolveNameIn), never by the daemon: its control
// thread runs Raft, and a resolver that takes seconds would cost the cluster its leader.
// The daemon takes the address stanzactl sent as an IP literal (ClusterAddressOf).
//
// Thread safety: pure functions; ResolveNameIn blocks on DNS (stanzactl only).
#ifndef STANZAD_ADMIN_CLUSTER_ADDRESS_H_
#define STANZAD_ADMIN_CLUSTER_ADDRESS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace stanzad {

struct HostPort {
  std::string host;  // without the brackets of [IPv6]
  std::optional<uint16_t> port;
};
// "HOST[:PORT]" or "[IPv6][:PORT]" split; an error names what is wrong with it.
absl::StatusOr<HostPort> SplitHostPort(std::string_view text);

// The daemon's side: "IP:PORT" or "[IPv6]:PORT" for an IP literal, with `default_port`
// when none is given; a name is refused (stanzactl resolves names).
absl::StatusOr<std::string> ClusterAddressOf(std::string_view text, uint16_t default_port);

// stanzactl's side: `text` with a name replaced by the first address it resolves to (the
// port, if any, kept); an IP literal is returned as it is. Blocks on DNS.
absl::StatusOr<std::string> ResolveNameIn(std::string_view text);

}  // namespace stanzad

#endif  // STANZAD_ADMIN_CLUSTER_ADDRESS_H_
