#include "core/router/route_table.h"

#include <functional>

#include "core/base/absl_compat.h"
#include "core/xml/escape.h"

namespace stanzad::router {

int OwnerShard(std::string_view address, int shard_count) {
  return static_cast<int>(std::hash<std::string_view>()(address) %
                          static_cast<size_t>(shard_count));
}

std::string CanonicalDomainOf(std::string_view jid) {
  std::string unescaped;
  if (jid.find('&') != std::string_view::npos) {
    std::optional<std::string> text = xml::Unescape(jid);
    if (!text) return {};
    unescaped = std::move(*text);
    jid = unescaped;
  }
  // RFC 7622 §3.1: the resource starts at the first '/'; the localpart ends at
  // the first '@' before it.
  std::string_view bare = jid.substr(0, jid.find('/'));
  const size_t at = bare.find('@');
  std::string_view domain = at == std::string_view::npos ? bare : bare.substr(at + 1);
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  std::string canonical(domain);
  for (char& c : canonical) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == ' ' || c == '@' || c == '/') return {};
  }
  return canonical;
}

RouteTable::RouteTable(std::string server_domain) : server_domain_(std::move(server_domain)) {}

std::optional<uint64_t> RouteTable::Bind(std::string_view address, uint64_t connection) {
  auto [it, inserted] = routes_.try_emplace(std::string(address), connection);
  if (inserted || it->second == connection) return std::nullopt;
  const uint64_t previous = it->second;
  it->second = connection;
  return previous;
}

bool RouteTable::Unbind(std::string_view address, uint64_t connection) {
  auto it = routes_.find(ToAbsl(address));
  if (it == routes_.end() || it->second != connection) return false;
  routes_.erase(it);
  return true;
}

void RouteTable::BindRemote(std::string_view address, uint64_t node) {
  remote_[ToAbsl(address)] = node;
}

std::optional<uint64_t> RouteTable::FindRemote(std::string_view address) const {
  auto it = remote_.find(ToAbsl(address));
  if (it == remote_.end()) return std::nullopt;
  return it->second;
}

void RouteTable::UnbindRemote(std::string_view address, uint64_t node) {
  auto it = remote_.find(ToAbsl(address));
  if (it != remote_.end() && it->second == node) remote_.erase(it);
}

void RouteTable::ForgetNode(uint64_t node) {
  absl::erase_if(remote_, [node](const auto& entry) { return entry.second == node; });
}

std::optional<uint64_t> RouteTable::Find(std::string_view address) const {
  auto it = routes_.find(ToAbsl(address));
  if (it == routes_.end()) return std::nullopt;
  return it->second;
}

RouteDecision RouteTable::Resolve(std::string_view raw_to) const {
  using xmpp::StanzaErrorCondition;
  const std::string domain = CanonicalDomainOf(raw_to);
  if (domain.empty()) return {RouteKind::kError, 0, 0, StanzaErrorCondition::kJidMalformed};
  if (domain == server_domain_) return {RouteKind::kServer, 0, 0, {}};
  if (auto connection = Find(domain)) return {RouteKind::kComponent, *connection, 0, {}};
  if (auto remote = remote_.find(domain); remote != remote_.end()) {
    return {RouteKind::kRemote, 0, remote->second, {}};
  }
  const bool ours = domain.size() > server_domain_.size() && domain.ends_with(server_domain_) &&
                    domain[domain.size() - server_domain_.size() - 1] == '.';
  return {RouteKind::kError, 0, 0,
          ours ? StanzaErrorCondition::kServiceUnavailable
               : StanzaErrorCondition::kRemoteServerNotFound};
}

}  // namespace stanzad::router
