// Where the clients of this node are: for each account (bare JID) its bound
// resources, the connection that holds each, and whether the resource is
// available (has sent presence) with what priority. One copy per shard, kept
// in step by the router's broadcasts; pure, no I/O.
//
// Also the rules of RFC 6121 §8.5.2 that choose the recipients of a stanza
// sent to the bare JID of an account of ours: MessageRecipients(),
// PresenceRecipients(). (§8.5.1, an account that does not exist:
// NoSuchUserError() in server_responder.h.)
//
// Thread safety: none; each shard owns its copy.
#ifndef STANZAD_CORE_ROUTER_CLIENT_ROUTES_H_
#define STANZAD_CORE_ROUTER_CLIENT_ROUTES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace stanzad::router {

struct ClientResource {
  std::string resource;
  uint64_t connection = 0;
  bool available = false;  // sent available presence (RFC 6121 §4.2), not since unavailable
  int priority = 0;        // of that presence, -128..127
};

// A JID at our domain with a localpart, in canonical form (PRECIS, RFC 7622):
// `bare` is "user@domain", `resource` may be empty.
struct UserAddress {
  std::string bare;
  std::string resource;

  // "user" of "user@domain": the key of the account in the configuration.
  std::string_view localpart() const { return std::string_view(bare).substr(0, bare.find('@')); }
};

// The user address `raw_to` names (an attribute value as written: references
// are replaced), if it has a localpart and its domain is `domain`; nullopt for
// anything else, a malformed JID included.
std::optional<UserAddress> ParseUserAddress(std::string_view raw_to, std::string_view domain);

// The key a destination is routed by across the cluster: a client's canonical
// full JID ("user@domain/resource"; its bare JID if it has no resource) for an
// address of ours with a localpart, the canonical domain otherwise (a bridge:
// "cb1.example.com"). Empty if there is none.
std::string RouteAddressOf(std::string_view raw_jid, std::string_view server_domain);

// A route address (RouteAddressOf) that names an account: "juliet@example.com".
// Every node where the account has resources that a message to its bare JID goes
// to announces it, so it can have several holders; every other route (a bridge,
// a client's full JID) has one.
inline bool IsAccountRoute(std::string_view address) {
  return address.find('@') != std::string_view::npos && address.find('/') == std::string_view::npos;
}

class ClientRoutes {
 public:
  // Binds bare/resource to `connection` (unavailable until SetPresence).
  // Returns the connection it was bound to before, if another.
  std::optional<uint64_t> Bind(std::string_view bare, std::string_view resource,
                               uint64_t connection);
  // Removes the binding if it still points to `connection`; whether it did.
  bool Unbind(std::string_view bare, std::string_view resource, uint64_t connection);
  // Records the resource's presence, if bound to `connection` (a late update
  // for a resource already gone or replaced changes nothing).
  void SetPresence(std::string_view bare, std::string_view resource, uint64_t connection,
                   bool available, int priority);

  // The connection holding bare/resource, if bound.
  std::optional<uint64_t> Find(std::string_view bare, std::string_view resource) const;
  // Every bound resource of `bare` (empty if none).
  const std::vector<ClientResource>& Resources(std::string_view bare) const;
  // RFC 6121 §8.5.2.1.1: a message to a bare JID goes to the available resources
  // with non-negative priority (all of them, as the RFC allows). Presence goes to
  // every available resource (§8.5.2.1.2). Empty: nobody to deliver to.
  std::vector<uint64_t> MessageRecipients(std::string_view bare) const;
  std::vector<uint64_t> PresenceRecipients(std::string_view bare) const;

  size_t accounts() const { return accounts_.size(); }
  size_t resources() const { return resources_; }

 private:
  absl::flat_hash_map<std::string, std::vector<ClientResource>> accounts_;
  size_t resources_ = 0;
};

}  // namespace stanzad::router

#endif  // STANZAD_CORE_ROUTER_CLIENT_ROUTES_H_
