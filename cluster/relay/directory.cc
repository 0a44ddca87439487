#include "cluster/relay/directory.h"

#include <utility>

#include "core/base/check.h"
#include "core/router/client_routes.h"

namespace stanzad::cluster::relay {

// The claims: which member holds each route. Claims are per node and stamped in the order
// they arrived here; a single-holder route resolves to its newest claim, an account to
// every node that claims it. The shards are told the resolved holders only.
class Directory::ClaimTable {
 public:
  void Claim(NodeId node, const std::string& address, std::vector<RouteChange>* out) {
    auto& claims = claims_[address];
    if (claims.count(node) != 0) return;  // restated: the claim keeps its age
    claims[node] = ++stamp_;
    NodeClaims& mine = by_node_[node];
    mine.addresses.insert(address);
    mine.digest.Add(address);
    Resolve(address, out);
  }

  void Withdraw(NodeId node, const std::string& address, std::vector<RouteChange>* out) {
    auto it = claims_.find(address);
    if (it == claims_.end() || it->second.erase(node) == 0) return;
    if (it->second.empty()) claims_.erase(it);
    if (auto mine = by_node_.find(node); mine != by_node_.end()) {
      mine->second.addresses.erase(address);
      mine->second.digest.Remove(address);
      if (mine->second.addresses.empty()) by_node_.erase(mine);
    }
    Resolve(address, out);
  }

  // Every claim of `node` goes; the shards forget it in one record.
  void ForgetNode(NodeId node, std::vector<RouteChange>* out) {
    auto mine = by_node_.find(node);
    if (mine == by_node_.end()) return;
    const std::set<std::string> addresses = std::move(mine->second.addresses);
    by_node_.erase(mine);
    out->push_back({RouteChange::Op::kForgetNode, node, ""});
    std::vector<RouteChange> changes;
    for (const std::string& address : addresses) {
      auto it = claims_.find(address);
      if (it == claims_.end()) continue;
      it->second.erase(node);
      if (it->second.empty()) claims_.erase(it);
      Resolve(address, &changes);
    }
    for (RouteChange& change : changes) {  // the shards already dropped `node`'s
      if (change.node != node) out->push_back(std::move(change));
    }
  }

  std::set<std::string> AddressesOf(NodeId node) const {
    auto it = by_node_.find(node);
    return it == by_node_.end() ? std::set<std::string>{} : it->second.addresses;
  }

  // `node`'s claims in brief, to compare with its digests.
  RouteDigest DigestOf(NodeId node) const {
    auto it = by_node_.find(node);
    return it == by_node_.end() ? RouteDigest{} : it->second.digest;
  }

  bool Claims(NodeId node, const std::string& address) const {
    auto it = claims_.find(address);
    return it != claims_.end() && it->second.count(node) != 0;
  }

  std::optional<NodeId> HolderOf(const std::string& address) const {
    auto it = claims_.find(address);
    if (it == claims_.end()) return std::nullopt;
    NodeId newest = raft::kNoNode;
    uint64_t newest_stamp = 0;
    for (const auto& [node, stamp] : it->second) {
      if (stamp > newest_stamp) newest = node, newest_stamp = stamp;
    }
    return newest;
  }

  void AppendTold(std::vector<RouteChange>* out) const {
    for (const auto& [address, node] : told_)
      out->push_back({RouteChange::Op::kBind, node, address});
    for (const auto& [address, nodes] : accounts_told_) {
      for (const NodeId node : nodes) out->push_back({RouteChange::Op::kBind, node, address});
    }
  }

  size_t claims() const {
    size_t count = 0;
    for (const auto& [address, claims] : claims_) count += claims.size();
    return count;
  }

  // Each node's digest sums up its claims, and no node is kept without one.
  void CheckDigests() const {
    for (const auto& [node, mine] : by_node_) {
      CHECK(!mine.addresses.empty());
      RouteDigest digest;
      for (const std::string& address : mine.addresses) {
        CHECK(Claims(node, address));
        digest.Add(address);
      }
      CHECK(digest == mine.digest);
    }
  }

 private:
  // Tells the shards what changed for `address`.
  void Resolve(const std::string& address, std::vector<RouteChange>* out) {
    if (router::IsAccountRoute(address)) {
      // Every claim is a route: the shards' table holds (node, account) pairs.
      std::set<NodeId> now;
      if (auto it = claims_.find(address); it != claims_.end()) {
        for (const auto& [node, stamp] : it->second) now.insert(node);
      }
      std::set<NodeId>& told = accounts_told_[address];
      for (NodeId node : told) {
        if (now.count(node) == 0) out->push_back({RouteChange::Op::kUnbind, node, address});
      }
      for (NodeId node : now) {
        if (told.count(node) == 0) out->push_back({RouteChange::Op::kBind, node, address});
      }
      told = std::move(now);
      if (told.empty()) accounts_told_.erase(address);
      return;
    }
    const std::optional<NodeId> holder = HolderOf(address);
    auto told = told_.find(address);
    const NodeId before = told == told_.end() ? raft::kNoNode : told->second;
    const NodeId after = holder.value_or(raft::kNoNode);
    if (before == after) return;
    if (before != raft::kNoNode) out->push_back({RouteChange::Op::kUnbind, before, address});
    if (after != raft::kNoNode) {
      out->push_back({RouteChange::Op::kBind, after, address});
      told_[address] = after;
    } else {
      told_.erase(address);
    }
  }

  struct NodeClaims {
    std::set<std::string> addresses;
    RouteDigest digest;  // of `addresses`, as the node's digests sum up its routes
  };

  std::map<std::string, std::map<NodeId, uint64_t>> claims_;  // address -> node -> stamp
  std::map<NodeId, NodeClaims> by_node_;
  std::map<std::string, NodeId> told_;                     // single-holder: the shards'
  std::map<std::string, std::set<NodeId>> accounts_told_;  // accounts: the shards'
  uint64_t stamp_ = 0;
};

Directory::Directory(DirectoryOptions options)
    : options_(options), claims_(std::make_unique<ClaimTable>()) {
  CHECK(options_.routes_frame_bytes_max >= 1 && options_.routes_queued_bytes_max >= 1);
  CHECK(options_.digest_interval_ms >= 1);
}

Directory::~Directory() = default;

void Directory::SetView(const View& view) {
  for (const NodeId gone : view_.members) {
    if (view.members.count(gone) != 0) continue;
    unlinked_.erase(gone);
    route_sets_in_.erase(gone);
    route_sets_out_.erase(gone);
    digest_mismatches_.erase(gone);
    unrepaired_.erase(gone);
    answered_.erase(gone);
    claims_->ForgetNode(gone, &ready_.route_changes);
  }
  // A member linked now and not before gets the whole set (whatever LinkUp said: a link
  // may come up before the member is in the view, and changes went only to linked ones).
  for (const NodeId node : view.linked) {
    if (view_.linked.count(node) == 0) route_sets_out_[node] = std::nullopt;
  }
  view_ = view;
  // A member whose link is down cannot take an account's copies (its clients reconnect
  // elsewhere): its account routes go, once per outage; its full set comes back with
  // the link.
  for (const NodeId node : view_.members) {
    if (Linked(node)) {
      unlinked_.erase(node);
      continue;
    }
    route_sets_in_.erase(node);  // its set comes again, whole, on its next link
    digest_mismatches_.erase(node);
    unrepaired_.erase(node);
    answered_.erase(node);
    if (!unlinked_.insert(node).second) continue;
    for (const std::string& address : claims_->AddressesOf(node)) {
      if (router::IsAccountRoute(address)) claims_->Withdraw(node, address, &ready_.route_changes);
    }
  }
}

void Directory::LocalRoute(bool up, std::string_view address_view) {
  const std::string address(address_view);
  const bool changed = up ? local_routes_.insert(address).second : local_routes_.erase(address) > 0;
  if (!changed) return;
  if (up) {
    local_digest_.Add(address);
  } else {
    local_digest_.Remove(address);
  }
  if (!view_.member) return;
  const std::string frame = EncodeRoutes({RoutesPart::kChanges, {{up, address}}});
  for (const NodeId peer : view_.linked) ready_.sends.push_back({peer, FrameType::kRoutes, frame});
}

void Directory::DropLocalRoutes() {
  local_routes_.clear();
  local_digest_ = RouteDigest{};
  route_sets_out_.clear();  // the empty set below replaces any set under way
  if (!view_.member) return;
  const std::string frame = EncodeRoutes({RoutesPart::kWhole, {}});
  for (const NodeId peer : view_.linked) ready_.sends.push_back({peer, FrameType::kRoutes, frame});
}

void Directory::LinkUp(NodeId peer) {
  route_sets_out_[peer] = std::nullopt;  // from the start, again if one was under way
}

// The route sets under way, each as far as its link's queue allows this turn.
void Directory::SendRouteSets() {
  for (auto it = route_sets_out_.begin(); it != route_sets_out_.end();) {
    const NodeId peer = (it++)->first;
    if (!Linked(peer)) {
      route_sets_out_.erase(peer);  // it starts over when it is linked again
    } else {
      SendRouteSet(peer);
    }
  }
}

// The set under way to `peer`, on while less than routes_queued_bytes_max waits on its
// link. A change made meanwhile goes as it happens: one before the set's position as a
// change, one after it with the set.
void Directory::SendRouteSet(NodeId peer) {
  auto it = route_sets_out_.find(peer);
  if (it == route_sets_out_.end()) return;
  std::optional<std::string>& sent = it->second;
  const auto queued = view_.queued_bytes.find(peer);
  size_t waiting = queued == view_.queued_bytes.end() ? 0 : queued->second;
  while (waiting < options_.routes_queued_bytes_max) {
    auto next = sent ? local_routes_.upper_bound(*sent) : local_routes_.begin();
    RoutesFrame frame;
    size_t bytes = kRoutesHeaderBytes;
    while (next != local_routes_.end() &&
           (frame.updates.empty() ||
            bytes + RouteUpdateBytes(*next) <= options_.routes_frame_bytes_max)) {
      bytes += RouteUpdateBytes(*next);
      frame.updates.push_back({true, *next});
      ++next;
    }
    const bool done = next == local_routes_.end();
    frame.part = !sent ? (done ? RoutesPart::kWhole : RoutesPart::kFirst)
                       : (done ? RoutesPart::kLast : RoutesPart::kMore);
    ready_.sends.push_back({peer, FrameType::kRoutes, EncodeRoutes(frame)});
    if (done) {
      route_sets_out_.erase(it);
      return;
    }
    sent = frame.updates.back().address;
    waiting += bytes;
  }
}

void Directory::OnRoutes(NodeId from, std::string_view payload) {
  if (view_.members.count(from) == 0) return;
  absl::StatusOr<RoutesFrame> decoded = DecodeRoutes(payload);
  if (!decoded.ok()) {
    if (Linked(from)) answered_.insert(from);  // it sent what this node cannot take
    return;
  }
  const RoutesFrame& routes = *decoded;
  switch (routes.part) {
    case RoutesPart::kChanges: {
      auto arriving = route_sets_in_.find(from);
      for (const RouteUpdate& update : routes.updates) {
        if (update.add) {
          claims_->Claim(from, update.address, &ready_.route_changes);
          if (arriving != route_sets_in_.end()) arriving->second.insert(update.address);
        } else {
          claims_->Withdraw(from, update.address, &ready_.route_changes);
          if (arriving != route_sets_in_.end()) arriving->second.erase(update.address);
        }
      }
      break;
    }
    case RoutesPart::kWhole: {
      route_sets_in_.erase(from);
      std::set<std::string> now;
      for (const RouteUpdate& update : routes.updates) {
        if (update.add) now.insert(update.address);
      }
      Replace(from, now);
      digest_mismatches_.erase(from);  // whole with `from` now
      if (Linked(from)) answered_.insert(from);
      break;
    }
    case RoutesPart::kFirst:
    case RoutesPart::kMore:
    case RoutesPart::kLast: {
      // The parts are claimed as they come (what they say is true now); what the set
      // lacks is withdrawn with its last part. A part without its first (the link that
      // carried the first went down) waits for the set sent on the new link.
      if (routes.part == RoutesPart::kFirst) route_sets_in_[from].clear();
      auto arriving = route_sets_in_.find(from);
      if (arriving == route_sets_in_.end()) return;
      for (const RouteUpdate& update : routes.updates) {
        if (!update.add) continue;
        arriving->second.insert(update.address);
        claims_->Claim(from, update.address, &ready_.route_changes);
      }
      if (routes.part != RoutesPart::kLast) break;
      const std::set<std::string> now = std::move(arriving->second);
      route_sets_in_.erase(arriving);
      Replace(from, now);
      digest_mismatches_.erase(from);  // whole with `from` now
      if (Linked(from)) answered_.insert(from);
      break;
    }
    case RoutesPart::kDigest:
      OnDigest(from, routes.digest);
      break;
    case RoutesPart::kSetRequest:
      OnSetRequest(from);
      break;
  }
}

// Compared with what `from` claims here; asked for its set on the second mismatch in a
// row (the header says why).
void Directory::OnDigest(NodeId from, const RouteDigest& digest) {
  if (!Linked(from)) return;  // its whole set comes with the link
  // `from` sends no digest while its set to this node is under way, and the link keeps the
  // order: the rest of a set still arriving was lost. What its parts claimed stays.
  route_sets_in_.erase(from);
  if (claims_->DigestOf(from) == digest) {
    digest_mismatches_.erase(from);
    unrepaired_.erase(from);
    answered_.erase(from);
    return;
  }
  int& mismatches = digest_mismatches_[from];
  if (++mismatches < MismatchesBeforeRequest(from)) return;
  digest_mismatches_.erase(from);
  // Its set came (or a frame of it this node refused), and still the digests differ: a
  // difference its set does not repair. A set lost on the way is not that: asked again
  // as soon.
  if (answered_.erase(from) != 0 && ++unrepaired_[from] == 2) {
    ready_.logs.push_back(
        {true, "route_digest_mismatch_persists",
         "member=" + std::to_string(from) +
             " note=\"its routes still differ after its whole set came twice (a route this "
             "node refuses?); asking less and less often, up to every " +
             std::to_string(kMismatchesBeforeRequest << kRequestBackoffMax) + " digests\""});
  }
  ready_.sends.push_back({from, FrameType::kRoutes, EncodeRoutes({RoutesPart::kSetRequest, {}})});
}

int Directory::MismatchesBeforeRequest(NodeId from) const {
  auto it = unrepaired_.find(from);
  const int unrepaired = it == unrepaired_.end() ? 0 : it->second;
  return kMismatchesBeforeRequest << std::min(unrepaired, kRequestBackoffMax);
}

// A set to `from`, unless one is under way to it: that one goes on, not restarted (the
// header says why).
void Directory::OnSetRequest(NodeId from) {
  if (!Linked(from)) return;  // its whole set goes with the link
  route_sets_out_.try_emplace(from, std::nullopt);
}

// A digest to each linked member no route set is under way to (the set's last part
// makes that member whole; a digest meanwhile would not match what it holds).
void Directory::SendDigests() {
  if (!view_.member) return;
  const std::string frame = EncodeRoutes({RoutesPart::kDigest, {}, local_digest_});
  for (const NodeId peer : view_.linked) {
    if (route_sets_out_.count(peer) == 0) ready_.sends.push_back({peer, FrameType::kRoutes, frame});
  }
}

// `from`'s routes are `now`: the rest of its claims go.
void Directory::Replace(NodeId from, const std::set<std::string>& now) {
  for (const std::string& address : claims_->AddressesOf(from)) {
    if (now.count(address) == 0) claims_->Withdraw(from, address, &ready_.route_changes);
  }
  for (const std::string& address : now) claims_->Claim(from, address, &ready_.route_changes);
}

void Directory::Tick(uint64_t now_ms) {
  SendRouteSets();  // first: a set finished now leaves before the digest that follows it
  if (!next_digest_ms_) {
    next_digest_ms_ = now_ms + options_.digest_interval_ms;
    return;
  }
  if (now_ms < *next_digest_ms_) return;
  next_digest_ms_ = now_ms + options_.digest_interval_ms;
  SendDigests();
}

Ready Directory::TakeReady() {
  Ready ready = std::move(ready_);
  ready_ = Ready{};
  return ready;
}

std::optional<NodeId> Directory::NodeOf(std::string_view address_view) const {
  const std::string address(address_view);
  if (local_routes_.count(address) != 0) return NodeId{0};
  return claims_->HolderOf(address);
}

bool Directory::Claims(NodeId node, const std::string& address) const {
  return claims_->Claims(node, address);
}

std::vector<RouteChange> Directory::RemoteRoutes() const {
  std::vector<RouteChange> routes;
  claims_->AppendTold(&routes);
  return routes;
}

void Directory::CheckInvariants() const {
  for (const auto& [node, arriving] : route_sets_in_) {
    CHECK(view_.members.count(node) != 0);
  }
  for (const auto& [node, sent] : route_sets_out_) CHECK(node != raft::kNoNode);
  for (const auto& [node, mismatches] : digest_mismatches_) {
    CHECK(Linked(node));
    CHECK(mismatches >= 1 && mismatches < MismatchesBeforeRequest(node));
  }
  for (const auto& [node, count] : unrepaired_) CHECK(Linked(node) && count >= 1);
  for (const NodeId node : answered_) CHECK(Linked(node));
  RouteDigest local;
  for (const std::string& address : local_routes_) local.Add(address);
  CHECK(local == local_digest_);
  claims_->CheckDigests();
}

}  // namespace stanzad::cluster::relay
