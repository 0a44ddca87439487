// What the relay (relay.h) and the route directory (directory.h) are told each turn, and
// what they hand their driver: frames to send, stanzas to deliver, senders to bounce,
// route changes for the shards, log lines.
#ifndef STANZAD_CLUSTER_RELAY_TYPES_H_
#define STANZAD_CLUSTER_RELAY_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/raft/types.h"
#include "cluster/relay/wire.h"
#include "core/xmpp/stanza.h"

namespace stanzad::cluster::relay {

using raft::NodeId;

// The shard connection that sent a stanza (net::ConnectionId); kNoSender for a stanza
// with no sender connection here (it came from another node, or it is an error reply).
using SenderId = uint64_t;
inline constexpr SenderId kNoSender = 0;

// The cluster as the control plane sees it this turn.
struct View {
  bool member = false;            // this node is a member (otherwise nothing is sent)
  NodeId leader = raft::kNoNode;  // kNoNode: none known
  std::set<NodeId> members;       // the other members
  std::set<NodeId> linked;        // members with a link up now
  bool can_deliver = false;       // the shards take deliveries (the engine runs)
  // Bytes waiting to leave on the link to a member (missing: none).
  std::map<NodeId, size_t> queued_bytes;
  // Each member's lanes (its shard count, 1 to kLanesPerNodeMax; missing: 1). A stanza for
  // an address on a member goes to its lane OwnerShard(address, lanes): the shard that owns
  // the address there; any lane of a node may deliver for that node.
  std::map<NodeId, uint32_t> lanes;
};

// Outputs.
struct Send {
  NodeId to = raft::kNoNode;
  FrameType type = FrameType::kStanza;
  std::string payload;
  uint16_t shard = 0;  // the lane of `to` it goes to (a relay frame); 0 for a routes frame
};
struct Delivery {  // to the shard that owns `address`, as kDeliverFromPeer
  NodeId origin = raft::kNoNode;
  std::string address;
  std::string bytes;
};
struct Bounce {  // the sender's shard answers it with an error
  SenderId sender = kNoSender;
  std::string bytes;
  xmpp::StanzaErrorCondition condition = xmpp::StanzaErrorCondition::kServiceUnavailable;
};
struct RouteChange {  // for every shard's table of routes on other nodes
  enum class Op { kBind, kUnbind, kForgetNode } op = Op::kBind;
  NodeId node = raft::kNoNode;
  std::string address;  // empty for kForgetNode
};
struct LogLine {
  bool warning = true;
  std::string event;   // "relay_expired", "relay_rejected", "relay_unconfirmed"
  std::string fields;  // key=value ...
};
struct Ready {
  std::vector<Send> sends;  // in order
  std::vector<Delivery> deliveries;
  std::vector<Bounce> bounces;
  std::vector<RouteChange> route_changes;
  std::vector<LogLine> logs;
  bool empty() const {
    return sends.empty() && deliveries.empty() && bounces.empty() && route_changes.empty() &&
           logs.empty();
  }
};

// Where routes are, as the relay asks it (the directory; a shard's table later).
class RouteLookup {
 public:
  virtual ~RouteLookup() = default;
  // Where `address` is bound now: 0 here, a member's id, nullopt nowhere. For an
  // account, one of the members holding it.
  virtual std::optional<NodeId> NodeOf(std::string_view address) const = 0;
  // `node` holds `address` (for an account: one of its holders).
  virtual bool Claims(NodeId node, const std::string& address) const = 0;
};

}  // namespace stanzad::cluster::relay

#endif  // STANZAD_CLUSTER_RELAY_TYPES_H_
