#include "core/router/client_routes.h"

#include "core/base/absl_compat.h"
#include "core/base/concat.h"
#include "core/jid/jid.h"
#include "core/router/route_table.h"
#include "core/xml/escape.h"

namespace stanzad::router {

std::optional<UserAddress> ParseUserAddress(std::string_view raw_to, std::string_view domain) {
  // Cheap refusals first: most stanzas go to components (no '@').
  const size_t slash = raw_to.find('/');
  const std::string_view bare_part = raw_to.substr(0, slash);
  if (bare_part.find('@') == std::string_view::npos) return std::nullopt;
  std::string unescaped;
  if (raw_to.find('&') != std::string_view::npos) {
    std::optional<std::string> text = xml::Unescape(raw_to);
    if (!text) return std::nullopt;
    unescaped = std::move(*text);
    raw_to = unescaped;
  }
  absl::StatusOr<jid::Jid> parsed = jid::Jid::Parse(raw_to);
  if (!parsed.ok() || parsed->localpart().empty() || parsed->domainpart() != domain) {
    return std::nullopt;
  }
  return UserAddress{parsed->Bare().ToString(), std::string(parsed->resourcepart())};
}

std::string RouteAddressOf(std::string_view raw_jid, std::string_view server_domain) {
  if (std::optional<UserAddress> user = ParseUserAddress(raw_jid, server_domain)) {
    if (user->resource.empty()) return std::move(user->bare);
    return Concat(user->bare, "/", user->resource);
  }
  return CanonicalDomainOf(raw_jid);
}

std::optional<uint64_t> ClientRoutes::Bind(std::string_view bare, std::string_view resource,
                                           uint64_t connection) {
  std::vector<ClientResource>& resources = accounts_[ToAbsl(bare)];
  for (ClientResource& bound : resources) {
    if (bound.resource != resource) continue;
    if (bound.connection == connection) return std::nullopt;
    const uint64_t previous = bound.connection;
    bound = ClientResource{std::string(resource), connection, false, 0};
    return previous;
  }
  resources.push_back(ClientResource{std::string(resource), connection, false, 0});
  ++resources_;
  return std::nullopt;
}

bool ClientRoutes::Unbind(std::string_view bare, std::string_view resource, uint64_t connection) {
  auto it = accounts_.find(ToAbsl(bare));
  if (it == accounts_.end()) return false;
  std::vector<ClientResource>& resources = it->second;
  for (size_t i = 0; i < resources.size(); ++i) {
    if (resources[i].resource != resource || resources[i].connection != connection) continue;
    resources[i] = std::move(resources.back());
    resources.pop_back();
    --resources_;
    if (resources.empty()) accounts_.erase(it);
    return true;
  }
  return false;
}

void ClientRoutes::SetPresence(std::string_view bare, std::string_view resource,
                               uint64_t connection, bool available, int priority) {
  auto it = accounts_.find(ToAbsl(bare));
  if (it == accounts_.end()) return;
  for (ClientResource& bound : it->second) {
    if (bound.resource == resource && bound.connection == connection) {
      bound.available = available;
      bound.priority = priority;
      return;
    }
  }
}

std::optional<uint64_t> ClientRoutes::Find(std::string_view bare, std::string_view resource) const {
  auto it = accounts_.find(ToAbsl(bare));
  if (it == accounts_.end()) return std::nullopt;
  for (const ClientResource& bound : it->second) {
    if (bound.resource == resource) return bound.connection;
  }
  return std::nullopt;
}

const std::vector<ClientResource>& ClientRoutes::Resources(std::string_view bare) const {
  static const std::vector<ClientResource> kNone;
  auto it = accounts_.find(ToAbsl(bare));
  return it == accounts_.end() ? kNone : it->second;
}

std::vector<uint64_t> ClientRoutes::MessageRecipients(std::string_view bare) const {
  std::vector<uint64_t> out;
  for (const ClientResource& bound : Resources(bare)) {
    if (bound.available && bound.priority >= 0) out.push_back(bound.connection);
  }
  return out;
}

std::vector<uint64_t> ClientRoutes::PresenceRecipients(std::string_view bare) const {
  std::vector<uint64_t> out;
  for (const ClientResource& bound : Resources(bare)) {
    if (bound.available) out.push_back(bound.connection);
  }
  return out;
}

}  // namespace stanzad::router
