#include "core/router/route_table.h"

#include <functional>

#include "core/base/absl_compat.h"
#include "core/base/concat.h"
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

namespace {

// Starts every key that is not a label (KeyOf).
constexpr char kWholeAddress = '\x01';

// The first label of `address` when the rest of it is `domain`; nullopt otherwise.
std::optional<std::string_view> LabelUnder(std::string_view address, std::string_view domain) {
  if (domain.empty() || address.size() <= domain.size() + 1 || !address.ends_with(domain) ||
      address[address.size() - domain.size() - 1] != '.') {
    return std::nullopt;
  }
  std::string_view label = address.substr(0, address.size() - domain.size() - 1);
  if (label.front() == kWholeAddress || label.find_first_of(".@/") != std::string_view::npos) {
    return std::nullopt;
  }
  return label;
}

}  // namespace

RouteTable::RouteTable(std::string server_domain) : server_domain_(std::move(server_domain)) {}

std::string RouteTable::KeyOf(std::string_view address, std::string_view domain) {
  if (std::optional<std::string_view> label = LabelUnder(address, domain)) {
    return std::string(*label);
  }
  std::string key;
  key.reserve(address.size() + 1);
  key.push_back(kWholeAddress);
  key.append(address);
  return key;
}

std::string_view RouteTable::LookupKey(std::string_view address, std::string* storage) const {
  if (std::optional<std::string_view> label = LabelUnder(address, server_domain_)) return *label;
  *storage = KeyOf(address, server_domain_);
  return *storage;
}

std::string RouteTable::AddressOf(std::string_view key, std::string_view domain) {
  if (!key.empty() && key.front() == kWholeAddress) return std::string(key.substr(1));
  return Concat(key, ".", domain);
}

void RouteTable::set_server_domain(std::string domain) {
  if (domain == server_domain_) return;
  const auto rekeyed = [&](const absl::flat_hash_map<std::string, uint64_t>& table) {
    absl::flat_hash_map<std::string, uint64_t> next;
    next.reserve(table.size());
    for (const auto& [key, value] : table) {
      next.emplace(KeyOf(AddressOf(key, server_domain_), domain), value);
    }
    return next;
  };
  routes_ = rekeyed(routes_);
  remote_ = rekeyed(remote_);
  server_domain_ = std::move(domain);
}

std::optional<uint64_t> RouteTable::Bind(std::string_view address, uint64_t connection) {
  auto [it, inserted] = routes_.try_emplace(KeyOf(address, server_domain_), connection);
  if (inserted || it->second == connection) return std::nullopt;
  const uint64_t previous = it->second;
  it->second = connection;
  return previous;
}

bool RouteTable::Unbind(std::string_view address, uint64_t connection) {
  std::string storage;
  auto it = routes_.find(ToAbsl(LookupKey(address, &storage)));
  if (it == routes_.end() || it->second != connection) return false;
  routes_.erase(it);
  return true;
}

void RouteTable::BindRemote(std::string_view address, uint64_t node) {
  remote_[KeyOf(address, server_domain_)] = node;
}

std::optional<uint64_t> RouteTable::FindRemote(std::string_view address) const {
  std::string storage;
  auto it = remote_.find(ToAbsl(LookupKey(address, &storage)));
  if (it == remote_.end()) return std::nullopt;
  return it->second;
}

void RouteTable::UnbindRemote(std::string_view address, uint64_t node) {
  std::string storage;
  auto it = remote_.find(ToAbsl(LookupKey(address, &storage)));
  if (it != remote_.end() && it->second == node) remote_.erase(it);
}

void RouteTable::ForgetNode(uint64_t node) {
  absl::erase_if(remote_, [node](const auto& entry) { return entry.second == node; });
}

std::optional<uint64_t> RouteTable::Find(std::string_view address) const {
  std::string storage;
  auto it = routes_.find(ToAbsl(LookupKey(address, &storage)));
  if (it == routes_.end()) return std::nullopt;
  return it->second;
}

RouteDecision RouteTable::Resolve(std::string_view raw_to) const {
  using xmpp::StanzaErrorCondition;
  const std::string domain = CanonicalDomainOf(raw_to);
  if (domain.empty()) return {RouteKind::kError, 0, 0, StanzaErrorCondition::kJidMalformed};
  if (domain == server_domain_) return {RouteKind::kServer, 0, 0, {}};
  if (auto connection = Find(domain)) return {RouteKind::kComponent, *connection, 0, {}};
  if (auto remote = FindRemote(domain)) return {RouteKind::kRemote, 0, *remote, {}};
  const bool ours = domain.size() > server_domain_.size() && domain.ends_with(server_domain_) &&
                    domain[domain.size() - server_domain_.size() - 1] == '.';
  return {RouteKind::kError, 0, 0,
          ours ? StanzaErrorCondition::kServiceUnavailable
               : StanzaErrorCondition::kRemoteServerNotFound};
}

}  // namespace stanzad::router
