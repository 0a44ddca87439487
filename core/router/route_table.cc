#include "core/router/route_table.h"

#include <functional>
#include <utility>

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

bool DomainIsOrUnder(std::string_view jid, std::string_view domain) {
  std::string unescaped;
  std::string_view host;
  if (jid.find('&') != std::string_view::npos) {
    unescaped = CanonicalDomainOf(jid);  // canonical already: the checks below hold
    host = unescaped;
  } else {
    host = jid.substr(0, jid.find('/'));
    if (const size_t at = host.find('@'); at != std::string_view::npos) host.remove_prefix(at + 1);
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    for (const char c : host) {
      if (c == ' ' || c == '@') return false;  // no domain at all (CanonicalDomainOf's "")
    }
  }
  if (host.empty() || domain.empty() || host.size() < domain.size()) return false;
  const size_t offset = host.size() - domain.size();
  for (size_t i = 0; i < domain.size(); ++i) {
    const char c = host[offset + i];
    if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) != domain[i]) return false;
  }
  return offset == 0 || (offset >= 2 && host[offset - 1] == '.');
}

namespace {

// The first label of `address` when the rest of it is `domain`; nullopt otherwise.
std::optional<std::string_view> LabelUnder(std::string_view address, std::string_view domain) {
  if (domain.empty() || address.size() <= domain.size() + 1 || !address.ends_with(domain) ||
      address[address.size() - domain.size() - 1] != '.') {
    return std::nullopt;
  }
  std::string_view label = address.substr(0, address.size() - domain.size() - 1);
  if (label.find_first_of(".@/") != std::string_view::npos) return std::nullopt;
  return label;
}

}  // namespace

// ---- AddressMap ----

const uint64_t* RouteTable::AddressMap::Find(std::string_view address,
                                             std::string_view domain) const {
  std::optional<std::string_view> label = LabelUnder(address, domain);
  const auto& map = label ? labels_ : whole_;
  auto it = map.find(ToAbsl(label.value_or(address)));
  return it == map.end() ? nullptr : &it->second;
}

uint64_t* RouteTable::AddressMap::Find(std::string_view address, std::string_view domain) {
  return const_cast<uint64_t*>(std::as_const(*this).Find(address, domain));
}

uint64_t& RouteTable::AddressMap::operator()(std::string_view address, std::string_view domain) {
  std::optional<std::string_view> label = LabelUnder(address, domain);
  return (label ? labels_ : whole_)[std::string(label.value_or(address))];
}

void RouteTable::AddressMap::Erase(std::string_view address, std::string_view domain) {
  std::optional<std::string_view> label = LabelUnder(address, domain);
  auto& map = label ? labels_ : whole_;
  if (auto it = map.find(ToAbsl(label.value_or(address))); it != map.end()) map.erase(it);
}

void RouteTable::AddressMap::EraseValue(uint64_t value) {
  const auto named = [value](const auto& entry) { return entry.second == value; };
  absl::erase_if(labels_, named);
  absl::erase_if(whole_, named);
}

void RouteTable::AddressMap::Rekey(std::string_view from, std::string_view to) {
  AddressMap next;
  for (const auto& [label, value] : labels_) next(Concat(label, ".", from), to) = value;
  for (const auto& [address, value] : whole_) next(address, to) = value;
  *this = std::move(next);
}

// ---- RouteTable ----

RouteTable::RouteTable(std::string server_domain) : server_domain_(std::move(server_domain)) {}

void RouteTable::set_server_domain(std::string domain) {
  if (domain == server_domain_) return;
  routes_.Rekey(server_domain_, domain);
  remote_.Rekey(server_domain_, domain);
  server_domain_ = std::move(domain);
}

std::optional<uint64_t> RouteTable::Bind(std::string_view address, uint64_t connection) {
  uint64_t* bound = routes_.Find(address, server_domain_);
  if (bound == nullptr) {
    routes_(address, server_domain_) = connection;
    return std::nullopt;
  }
  if (*bound == connection) return std::nullopt;
  const uint64_t previous = *bound;
  *bound = connection;
  return previous;
}

bool RouteTable::Unbind(std::string_view address, uint64_t connection) {
  const uint64_t* bound = routes_.Find(address, server_domain_);
  if (bound == nullptr || *bound != connection) return false;
  routes_.Erase(address, server_domain_);
  return true;
}

void RouteTable::BindRemote(std::string_view address, uint64_t node) {
  remote_(address, server_domain_) = node;
}

std::optional<uint64_t> RouteTable::FindRemote(std::string_view address) const {
  const uint64_t* node = remote_.Find(address, server_domain_);
  if (node == nullptr) return std::nullopt;
  return *node;
}

void RouteTable::UnbindRemote(std::string_view address, uint64_t node) {
  const uint64_t* bound = remote_.Find(address, server_domain_);
  if (bound != nullptr && *bound == node) remote_.Erase(address, server_domain_);
}

void RouteTable::ForgetNode(uint64_t node) { remote_.EraseValue(node); }

std::optional<uint64_t> RouteTable::Find(std::string_view address) const {
  const uint64_t* connection = routes_.Find(address, server_domain_);
  if (connection == nullptr) return std::nullopt;
  return *connection;
}

RouteDecision RouteTable::Resolve(std::string_view raw_to) const {
  using xmpp::StanzaErrorCondition;
  std::string domain = CanonicalDomainOf(raw_to);
  if (domain.empty()) return {RouteKind::kError, 0, 0, StanzaErrorCondition::kJidMalformed, {}};
  if (domain == server_domain_) return {RouteKind::kServer, 0, 0, {}, {}};
  if (auto connection = Find(domain)) return {RouteKind::kComponent, *connection, 0, {}, {}};
  if (auto remote = FindRemote(domain)) {
    return {RouteKind::kRemote, 0, *remote, {}, std::move(domain)};
  }
  const bool ours = domain.size() > server_domain_.size() && domain.ends_with(server_domain_) &&
                    domain[domain.size() - server_domain_.size() - 1] == '.';
  return {RouteKind::kError,
          0,
          0,
          ours ? StanzaErrorCondition::kServiceUnavailable
               : StanzaErrorCondition::kRemoteServerNotFound,
          {}};
}

}  // namespace stanzad::router
