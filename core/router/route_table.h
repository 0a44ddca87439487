// Where a stanza goes. One RouteTable per shard holds the component addresses
// this node knows (call bridges bound on any shard) and the server's own
// domain; Resolve() turns a stanza's `to` into a destination or the stanza
// error the sender gets back. Pure: no I/O, no threads.
//
// Thread safety: none; each shard owns its table and applies route updates it
// receives from the others.
#ifndef STANZAD_CORE_ROUTER_ROUTE_TABLE_H_
#define STANZAD_CORE_ROUTER_ROUTE_TABLE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "core/xmpp/stanza.h"

namespace stanzad::router {

// The domainpart of a JID as text (raw attribute value allowed: references are
// replaced), folded to lowercase ASCII and without a trailing dot. Empty if
// there is none.
std::string CanonicalDomainOf(std::string_view jid);

// Whether CanonicalDomainOf(jid) is `domain` or a subdomain of it ("cb1.example.com"
// for "example.com"). `domain`: canonical already (lowercase, no trailing dot). Without
// a copy of the JID unless it holds a reference ('&').
bool DomainIsOrUnder(std::string_view jid, std::string_view domain);

// The shard (of `shard_count` > 0) that owns `address` on a node: it decides which
// connection holds it, and a stanza from another node for it lands there. Every node
// runs the same binary, so every node computes the same owner.
int OwnerShard(std::string_view address, int shard_count);

enum class RouteKind {
  kServer,     // the server's own domain: the server answers
  kComponent,  // a bound component: `connection` holds it
  kRemote,     // a component bound on another node of the cluster: `node`
  kError,      // answer the sender with `error`
};

struct RouteDecision {
  RouteKind kind = RouteKind::kError;
  uint64_t connection = 0;
  uint64_t node = 0;  // kRemote
  xmpp::StanzaErrorCondition error = xmpp::StanzaErrorCondition::kServiceUnavailable;
  // kRemote: the route it found, CanonicalDomainOf(raw_to) (what RouteAddressOf gives
  // for it: a component's address), for the relay to keep the stanza under.
  std::string address;
};

class RouteTable {
 public:
  explicit RouteTable(std::string server_domain);

  const std::string& server_domain() const { return server_domain_; }
  // Keeps every binding (their keys are rewritten for the new domain).
  void set_server_domain(std::string domain);

  // Binds `address` (canonical, e.g. "cb1.example.com") to `connection`.
  // Returns the connection it was bound to before, if another.
  std::optional<uint64_t> Bind(std::string_view address, uint64_t connection);
  // Removes the binding if it still points to `connection` (a newer
  // connection's binding is left alone). Returns whether it removed one.
  bool Unbind(std::string_view address, uint64_t connection);
  std::optional<uint64_t> Find(std::string_view address) const;
  // Components bound on other nodes of the cluster (address → node id). A
  // local binding of the same address wins over a remote one.
  void BindRemote(std::string_view address, uint64_t node);
  // The node a remote binding names (clients' full JIDs are bound so too).
  std::optional<uint64_t> FindRemote(std::string_view address) const;
  // Removes the remote binding if it still names `node`.
  void UnbindRemote(std::string_view address, uint64_t node);
  // Drops every remote binding of `node` (it left the cluster).
  void ForgetNode(uint64_t node);
  size_t remote_size() const { return remote_.size(); }
  size_t size() const { return routes_.size(); }

  // The destination of a stanza addressed to `raw_to`:
  //   the server domain            → kServer
  //   a bound component            → kComponent
  //   one bound on another node    → kRemote
  //   a subdomain of ours, unbound → service-unavailable (a bridge that is not connected)
  //   any other domain             → remote-server-not-found (no server-to-server)
  //   no usable domain             → jid-malformed
  RouteDecision Resolve(std::string_view raw_to) const;

 private:
  // Address → value. Every shard of every node holds every bridge's route, so a key's
  // bytes count once per shard and node (100,000 bridges on 6 shards: 600,000 keys on
  // one node). An address under the server domain ("cb1.example.com") is kept by its
  // first label ("cb1", which fits std::string's own buffer where the whole address
  // would take an allocation) in a map of labels; any other address (another domain, a
  // client's full JID) whole in a map of its own. Lookups allocate nothing.
  class AddressMap {
   public:
    uint64_t* Find(std::string_view address, std::string_view domain);
    const uint64_t* Find(std::string_view address, std::string_view domain) const;
    // The value of `address`, inserted (0) if absent.
    uint64_t& operator()(std::string_view address, std::string_view domain);
    void Erase(std::string_view address, std::string_view domain);
    void EraseValue(uint64_t value);  // every address with this value
    // Keeps every address: its keys were made for domain `from`, are now for `to`.
    void Rekey(std::string_view from, std::string_view to);
    size_t size() const { return labels_.size() + whole_.size(); }

   private:
    absl::flat_hash_map<std::string, uint64_t> labels_;
    absl::flat_hash_map<std::string, uint64_t> whole_;
  };

  std::string server_domain_;
  AddressMap routes_;  // local: address → connection
  AddressMap remote_;  // on other nodes: address → node id
};

}  // namespace stanzad::router

#endif  // STANZAD_CORE_ROUTER_ROUTE_TABLE_H_
