#include "cluster/relay/relay.h"

#include <algorithm>
#include <utility>

#include "core/base/check.h"
#include "core/base/log.h"
#include "core/router/client_routes.h"
#include "core/router/route_table.h"

namespace stanzad::cluster::relay {

// A stanza in this node's custody.
struct Relay::Entry {
  // Its name on the wire, with the incarnation. The first is its key in custody_; a
  // stanza that goes to another destination, or again after every node it went to gave
  // it up, gets a new one (resequenced_): a destination's floor then never has to wait
  // for it, and never passes it.
  uint64_t sequence = 0;
  uint64_t key = 0;             // its key in custody_ (its first sequence)
  bool sent = false;            // sent under this sequence
  NodeId node = raft::kNoNode;  // where it was last sent to be delivered
  NodeId via = raft::kNoNode;   // the link it last left on (the leader, or `node`)
  std::string address;          // its route: a bridge, a client's full JID, an account
  std::string bytes;
  SenderId sender = kNoSender;
  uint64_t first_ms = 0;            // taken into custody
  uint64_t sent_ms = 0;             // last sent, or last asked about
  uint64_t no_leader_since_ms = 0;  // waiting for a leader since; 0: it has a next hop
  // The nodes it was sent to that may hold it: each must answer before it goes
  // elsewhere (or is bounced), unless it left the cluster; one that never answers ends
  // the wait at the deadline (abort_wait_ms).
  std::set<NodeId> maybe_at;
  uint64_t move_asked_ms = 0;  // when the nodes that may hold it were last asked to let go
  bool expiring = false;       // past its deadline: only asked about, never sent again
  uint64_t expiring_since_ms = 0;
};

// What this node decided about the stanzas of one incarnation of one origin.
struct Relay::Window {
  uint64_t floor = 1;                   // below it: finished at the origin
  std::map<uint64_t, Outcome> decided;  // sequences >= floor
};

// The one route directory: which member holds each route. Claims are per node and
// stamped in the order they arrived here; a single-holder route resolves to its newest
// claim, an account to every node that claims it. The shards are told the resolved
// holders only.
class Relay::Directory {
 public:
  void Claim(NodeId node, const std::string& address, std::vector<RouteChange>* out) {
    auto& claims = claims_[address];
    if (claims.count(node) != 0) return;  // restated: the claim keeps its age
    claims[node] = ++stamp_;
    by_node_[node].insert(address);
    Resolve(address, out);
  }

  void Withdraw(NodeId node, const std::string& address, std::vector<RouteChange>* out) {
    auto it = claims_.find(address);
    if (it == claims_.end() || it->second.erase(node) == 0) return;
    if (it->second.empty()) claims_.erase(it);
    if (auto mine = by_node_.find(node); mine != by_node_.end()) {
      mine->second.erase(address);
      if (mine->second.empty()) by_node_.erase(mine);
    }
    Resolve(address, out);
  }

  // Every claim of `node` goes; the shards forget it in one record.
  void ForgetNode(NodeId node, std::vector<RouteChange>* out) {
    auto mine = by_node_.find(node);
    if (mine == by_node_.end()) return;
    const std::set<std::string> addresses = std::move(mine->second);
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
    return it == by_node_.end() ? std::set<std::string>{} : it->second;
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

  std::map<std::string, std::map<NodeId, uint64_t>> claims_;  // address -> node -> stamp
  std::map<NodeId, std::set<std::string>> by_node_;
  std::map<std::string, NodeId> told_;                     // single-holder: the shards'
  std::map<std::string, std::set<NodeId>> accounts_told_;  // accounts: the shards'
  uint64_t stamp_ = 0;
};

Relay::Relay(NodeId self, uint64_t incarnation, std::string domain, Options options)
    : self_(self),
      incarnation_(incarnation),
      domain_(std::move(domain)),
      options_(options),
      directory_(std::make_unique<Directory>()),
      checker_(std::make_unique<xmpp::RelayedStanzaChecker>(options.stanza_bytes_max)) {
  CHECK(self_ != raft::kNoNode);
  CHECK(incarnation_ > 0);
  CHECK(options_.incarnations_max >= 1 && options_.decisions_max >= 1 && options_.hops_max >= 1);
  resend_budget_ = options_.resend_bytes_per_tick;
}

Relay::~Relay() = default;

void Relay::SetDomain(std::string domain) { domain_ = std::move(domain); }

// ---- The cluster's view ----

void Relay::SetView(uint64_t now_ms, const View& view) {
  for (const NodeId gone : view_.members) {
    if (view.members.count(gone) != 0) continue;
    windows_.erase(gone);
    unlinked_.erase(gone);
    route_sets_in_.erase(gone);
    route_sets_out_.erase(gone);
    directory_->ForgetNode(gone, &ready_.route_changes);
    for (auto& [key, entry] : custody_) {
      if (entry.maybe_at.count(gone) == 0) continue;
      Hold(entry, false);
      entry.maybe_at.erase(gone);
      Hold(entry, true);
    }
  }
  const bool was_member = view_.member;
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
    if (!unlinked_.insert(node).second) continue;
    for (const std::string& address : directory_->AddressesOf(node)) {
      if (router::IsAccountRoute(address)) {
        directory_->Withdraw(node, address, &ready_.route_changes);
      }
    }
  }
  if (view_.leader != last_leader_) {
    last_leader_ = view_.leader;
    leader_resend_pending_ = view_.leader != raft::kNoNode && !options_.direct;
  }
  if (!was_member && view_.member) leader_resend_pending_ = true;
  (void)now_ms;
}

void Relay::LinkUp(NodeId peer) {
  if (peer == self_) return;
  route_sets_out_[peer] = std::nullopt;  // from the start, again if one was under way
  SendRouteSet(peer);                    // the rest with the next Ticks
}

void Relay::DropLocalRoutes() {
  local_routes_.clear();
  route_sets_out_.clear();  // the empty set below replaces any set under way
  if (!view_.member) return;
  const std::string frame = EncodeRoutes({RoutesPart::kWhole, {}});
  for (const NodeId peer : view_.linked) ready_.sends.push_back({peer, FrameType::kRoutes, frame});
}

// The route sets under way, each as far as its link's queue allows this turn.
void Relay::SendRouteSets() {
  for (auto it = route_sets_out_.begin(); it != route_sets_out_.end();) {
    const NodeId peer = (it++)->first;
    if (!Linked(peer)) {
      route_sets_out_.erase(peer);  // its next LinkUp starts over
    } else {
      SendRouteSet(peer);
    }
  }
}

// The set under way to `peer`, on while less than routes_queued_bytes_max waits on its
// link. A change made meanwhile goes as it happens: one before the set's position as a
// change, one after it with the set.
void Relay::SendRouteSet(NodeId peer) {
  auto it = route_sets_out_.find(peer);
  if (it == route_sets_out_.end()) return;
  std::optional<std::string>& sent = it->second;
  const auto queued = view_.queued_bytes.find(peer);
  size_t waiting = queued == view_.queued_bytes.end() ? 0 : queued->second;
  while (waiting < options_.routes_queued_bytes_max) {
    auto next = sent ? local_routes_.upper_bound(*sent) : local_routes_.begin();
    RoutesFrame frame;
    size_t bytes = 1;
    while (
        next != local_routes_.end() &&
        (frame.updates.empty() || bytes + RouteUpdateBytes(*next) <= options_.routes_frame_bytes)) {
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

void Relay::LocalRoute(uint64_t now_ms, bool up, std::string_view address_view) {
  const std::string address(address_view);
  const bool changed = up ? local_routes_.insert(address).second : local_routes_.erase(address) > 0;
  if (up) RetryRoute(now_ms, address);  // stanzas that waited for this route elsewhere
  if (!changed || !view_.member) return;
  const std::string frame = EncodeRoutes({RoutesPart::kChanges, {{up, address}}});
  for (const NodeId peer : view_.linked) ready_.sends.push_back({peer, FrameType::kRoutes, frame});
}

std::optional<NodeId> Relay::NodeOf(std::string_view address_view) const {
  const std::string address(address_view);
  if (local_routes_.count(address) != 0) return NodeId{0};
  return directory_->HolderOf(address);
}

// ---- Custody (this node as the origin) ----

void Relay::Forward(uint64_t now_ms, SenderId sender, NodeId node, std::string_view bytes) {
  if (custody_bytes_ + bytes.size() > options_.hold_bytes_max) {
    ++stats_.failed;
    if (sender != kNoSender) {
      ready_.bounces.push_back(
          {sender, std::string(bytes), xmpp::StanzaErrorCondition::kResourceConstraint});
    }
    return;
  }
  TakeInto(now_ms, sender, node, bytes);
}

void Relay::TakeInto(uint64_t now_ms, SenderId sender, NodeId node, std::string_view bytes) {
  const xmpp::Stanza stanza = xmpp::InspectStanza(bytes);
  const uint64_t sequence = next_sequence_++;
  Entry& entry = custody_[sequence];
  entry.sequence = entry.key = sequence;
  entry.node = node;
  entry.address = stanza.to ? router::RouteAddressOf(*stanza.to, domain_) : "";
  // A message for a resource bound nowhere is the account's (RFC 6121 §8.5.3.2.1): the
  // shard sent this copy to a node holding the account.
  if (const size_t slash = entry.address.find('/');
      slash != std::string::npos && entry.address.find('@') < slash && !NodeOf(entry.address)) {
    entry.address.resize(slash);
  }
  entry.bytes.assign(bytes);
  entry.sender = sender;
  entry.first_ms = entry.sent_ms = now_ms;
  custody_bytes_ += entry.bytes.size();
  custody_by_address_[entry.address].insert(sequence);
  Hold(entry, true);
  SendEntry(now_ms, entry);
}

std::optional<NodeId> Relay::NextHop(NodeId destination) const {
  if (options_.direct || view_.leader == self_) return destination;
  if (view_.leader == raft::kNoNode) return std::nullopt;
  return view_.leader;
}

uint64_t Relay::FloorFor(NodeId destination) const {
  auto it = holding_.find(destination);
  return it == holding_.end() ? next_sequence_ : *it->second.begin();
}

void Relay::Hold(const Entry& entry, bool on) {
  const auto one = [&](NodeId node) {
    if (on) {
      holding_[node].insert(entry.sequence);
      return;
    }
    auto it = holding_.find(node);
    if (it == holding_.end()) return;
    it->second.erase(entry.sequence);
    if (it->second.empty()) holding_.erase(it);
  };
  one(entry.node);
  for (const NodeId node : entry.maybe_at) {
    if (node != entry.node) one(node);
  }
}

std::map<uint64_t, Relay::Entry>::iterator Relay::FindSequence(uint64_t sequence) {
  auto it = custody_.find(sequence);
  if (it != custody_.end() && it->second.sequence == sequence) return it;
  auto renamed = resequenced_.find(sequence);
  return renamed == resequenced_.end() ? custody_.end() : custody_.find(renamed->second);
}

// Sends the stanza to entry.node, through the next hop.
void Relay::SendEntry(uint64_t now_ms, Entry& entry) {
  entry.sent_ms = now_ms;
  const std::optional<NodeId> hop = NextHop(entry.node);
  if (!hop) {
    entry.via = raft::kNoNode;
    if (entry.no_leader_since_ms == 0) entry.no_leader_since_ms = std::max<uint64_t>(now_ms, 1);
    return;
  }
  entry.no_leader_since_ms = 0;
  if (!view_.member || !Linked(*hop)) return;  // not sent: the resend timer tries again
  entry.via = *hop;
  entry.sent = true;
  entry.maybe_at.insert(entry.node);  // held as entry.node already
  ready_.sends.push_back({*hop, FrameType::kStanza,
                          EncodeStanza({self_, incarnation_, entry.sequence, FloorFor(entry.node),
                                        entry.node, 0, entry.bytes})});
  ++stats_.relayed_out;
}

// Asks the nodes that may hold the stanza, except `except`, what became of it: directly
// and through the leader (a question, or its answer, may only get through one way).
void Relay::SendAbort(uint64_t now_ms, Entry& entry, NodeId except) {
  entry.sent_ms = now_ms;
  if (!view_.member) return;
  for (const NodeId node : entry.maybe_at) {
    if (node == except) continue;
    const std::string payload =
        EncodeAbort({self_, incarnation_, FloorFor(node), node, 0, {entry.sequence}});
    if (Linked(node)) ready_.sends.push_back({node, FrameType::kAbort, payload});
    const NodeId leader = view_.leader;
    if (leader != raft::kNoNode && leader != self_ && leader != node && Linked(leader)) {
      ready_.sends.push_back({leader, FrameType::kAbort, payload});
    }
  }
}

// Sends a waiting stanza to wherever its route is now. True when it is finished with
// (delivered here).
bool Relay::Retry(uint64_t now_ms, Entry& entry) {
  if (entry.expiring) return false;
  std::optional<NodeId> target;
  if (router::IsAccountRoute(entry.address)) {
    // Each node with resources of the account got its own copy: this one goes to its
    // node again while that node has them; otherwise it waits out the hold.
    if (directory_->Claims(entry.node, entry.address)) target = entry.node;
  } else {
    target = NodeOf(entry.address);
  }
  if (!target) return false;
  // Whoever may hold it, other than the target, gives it up first: it goes elsewhere only
  // once they said they never delivered it. A node whose link is down is asked through
  // the leader; one that never answers ends at the deadline (abort_wait_ms), or when it
  // leaves the cluster. (A link that blips is not a node that died.)
  const bool others = std::any_of(entry.maybe_at.begin(), entry.maybe_at.end(),
                                  [&](NodeId node) { return node != *target; });
  if (others) {
    // Asked at once, then once per resend interval however often routes change.
    if (entry.move_asked_ms == 0 || now_ms - entry.move_asked_ms >= options_.resend_after_ms) {
      entry.move_asked_ms = std::max<uint64_t>(now_ms, 1);
      SendAbort(now_ms, entry, *target);
    }
    return false;
  }
  if (*target == 0) {  // the route is on this node now
    if (!view_.can_deliver) return false;
    ready_.deliveries.push_back({self_, entry.address, entry.bytes});
    ++stats_.resent;
    return true;
  }
  if (resend_budget_ < entry.bytes.size()) return false;  // the next turn
  resend_budget_ -= entry.bytes.size();
  if (*target != entry.node || (entry.sent && entry.maybe_at.empty())) {
    // Elsewhere, or again after every node it went to gave it up: a new name, above
    // every floor sent so far (see Entry::sequence).
    Hold(entry, false);
    Rename(entry);
    entry.node = *target;
    Hold(entry, true);
  }
  ++stats_.resent;
  SendEntry(now_ms, entry);
  return false;
}

void Relay::RetryRoute(uint64_t now_ms, const std::string& address) {
  auto waiting = custody_by_address_.find(address);
  if (waiting == custody_by_address_.end()) return;
  const std::vector<uint64_t> sequences(waiting->second.begin(), waiting->second.end());
  for (const uint64_t sequence : sequences) {
    auto it = custody_.find(sequence);
    if (it != custody_.end() && Retry(now_ms, it->second)) Finish(it);
  }
}

// A new sequence for `entry` (unheld: the caller holds it again).
void Relay::Rename(Entry& entry) {
  if (entry.sequence != entry.key) resequenced_.erase(entry.sequence);
  entry.sequence = next_sequence_++;
  entry.sent = false;
  resequenced_[entry.sequence] = entry.key;
}

std::map<uint64_t, Relay::Entry>::iterator Relay::Finish(std::map<uint64_t, Entry>::iterator it) {
  Hold(it->second, false);
  if (it->second.sequence != it->second.key) resequenced_.erase(it->second.sequence);
  custody_bytes_ -= it->second.bytes.size();
  auto waiting = custody_by_address_.find(it->second.address);
  CHECK(waiting != custody_by_address_.end());
  waiting->second.erase(it->first);
  if (waiting->second.empty()) custody_by_address_.erase(waiting);
  return custody_.erase(it);
}

void Relay::BounceEntry(uint64_t now_ms, const Entry& entry, std::string_view reason) {
  const std::optional<NodeId> now_at = NodeOf(entry.address);
  Log("relay_expired", "to=" + LogQuote(entry.address) + " node=" + std::to_string(entry.node) +
                           " via=" + std::to_string(entry.via) + " now_at=" +
                           (now_at ? std::to_string(*now_at) : std::string("nowhere")) +
                           " waited_ms=" + std::to_string(now_ms - entry.first_ms) +
                           " reason=" + std::string(reason));
  if (entry.sender != kNoSender) {
    ready_.bounces.push_back(
        {entry.sender, entry.bytes, xmpp::StanzaErrorCondition::kServiceUnavailable});
    return;
  }
  // A stanza that came from another node: its sender there gets an error reply.
  const xmpp::Stanza stanza = xmpp::InspectStanza(entry.bytes);
  if (stanza.is_error() || !stanza.from) return;  // never an error for an error
  const std::string reply =
      xmpp::MakeErrorReply(stanza, xmpp::StanzaErrorCondition::kServiceUnavailable, domain_);
  const std::string sender = router::RouteAddressOf(*stanza.from, domain_);
  const std::optional<NodeId> node = NodeOf(sender);
  if (!node) return;
  if (*node == 0) {
    if (view_.can_deliver) ready_.deliveries.push_back({self_, sender, reply});
    return;
  }
  if (custody_bytes_ + reply.size() > options_.hold_bytes_max) {
    ++stats_.failed;  // custody is full: the error reply goes too (logged above)
    return;
  }
  TakeInto(now_ms, kNoSender, *node, reply);
}

void Relay::OnAnswers(uint64_t now_ms, NodeId answerer, const AnswerFrame& frame) {
  if (frame.incarnation != incarnation_) return;  // a previous life's
  for (const auto& [sequence, outcome] : frame.answers) {
    auto it = FindSequence(sequence);
    if (it == custody_.end()) continue;
    Entry& entry = it->second;
    if (outcome == Outcome::kDelivered) {
      Finish(it);
      continue;
    }
    Hold(entry, false);
    entry.maybe_at.erase(answerer);
    Hold(entry, true);
    if (!entry.maybe_at.empty()) continue;
    // "Aborted" from where the route is now is final (that node decided for good, or
    // refused the stanza): the sender hears at once. Otherwise it may go where its route
    // is now.
    const bool route_there =
        router::IsAccountRoute(entry.address)
            ? answerer == entry.node && directory_->Claims(answerer, entry.address)
            : NodeOf(entry.address) == std::optional<NodeId>(answerer);
    if (entry.expiring || route_there) {
      ++stats_.expired;
      BounceEntry(now_ms, entry, entry.expiring ? "forward_hold" : "aborted");
      Finish(it);
    } else if (Retry(now_ms, entry)) {
      Finish(it);
    }
  }
}

// ---- This node as a destination, or passing frames on ----

Relay::Window* Relay::WindowOf(NodeId origin, uint64_t incarnation, uint64_t floor) {
  std::map<uint64_t, Window>& lives = windows_[origin];
  auto it = lives.find(incarnation);
  if (it == lives.end()) {
    if (lives.size() >= options_.incarnations_max && incarnation < lives.begin()->first) {
      return nullptr;  // older than every life remembered: that process is gone
    }
    it = lives.emplace(incarnation, Window{}).first;
    while (lives.size() > options_.incarnations_max) lives.erase(lives.begin());
  }
  Window& window = it->second;
  if (floor > window.floor) {
    window.decided.erase(window.decided.begin(), window.decided.lower_bound(floor));
    window.floor = floor;
  }
  return &window;
}

void Relay::Answer(NodeId from, NodeId origin, uint64_t incarnation, uint64_t sequence,
                   Outcome outcome) {
  answers_[{from, origin, incarnation}].emplace_back(sequence, outcome);
}

void Relay::FlushAnswers() {
  for (auto& [key, all] : answers_) {
    for (size_t first = 0; first < all.size(); first += kAnswersPerFrameMax) {
      const size_t last = std::min(all.size(), first + kAnswersPerFrameMax);
      SendAnswers(key, {key.incarnation, self_, {all.begin() + first, all.begin() + last}});
    }
  }
  answers_.clear();
}

// Answers go back the way the question came: to the origin (through the leader when
// there is no link to it), or through the node that passed the question on.
void Relay::SendAnswers(const AnswerKey& key, const AnswerFrame& frame) {
  const std::string payload = EncodeAnswers(frame);
  if (key.to != key.origin) {
    if (Linked(key.to)) {
      ready_.sends.push_back({key.to, FrameType::kAckRelay, EncodeAckRelay(key.origin, payload)});
    }
    return;
  }
  if (Linked(key.origin)) {
    ready_.sends.push_back({key.origin, FrameType::kAck, payload});
  } else if (view_.leader != raft::kNoNode && view_.leader != self_ && view_.leader != key.origin &&
             Linked(view_.leader)) {
    ready_.sends.push_back(
        {view_.leader, FrameType::kAckRelay, EncodeAckRelay(key.origin, payload)});
  }
}

bool Relay::Accepts(const xmpp::Stanza& stanza, std::string_view bytes, std::string* why) {
  if (!checker_->Check(bytes, why)) return false;
  if (!stanza.from) {
    *why = "no from";
    return false;
  }
  // A relayed stanza's `from` names this domain, one of its bridges (a subdomain), or an
  // account of it: the origin node's session checked or stamped it.
  const std::string host = router::CanonicalDomainOf(*stanza.from);
  const std::string_view domain = domain_;
  if (host == domain || (host.size() > domain.size() + 1 && host.ends_with(domain) &&
                         host[host.size() - domain.size() - 1] == '.')) {
    return true;
  }
  *why = "from is not of this cluster's domain";
  return false;
}

// A frame that names an origin (or a deciding node) other than the member it came from
// was passed on: only the leader does that. (A member cannot speak for another.)
bool Relay::SpeaksFor(NodeId from, NodeId named) const {
  return named == from || (from == view_.leader && from != raft::kNoNode);
}

// A stanza or question is taken, or passed on, only from a member that may speak for
// its origin, and only between members (what windows_ keeps is per origin); anything
// else is counted as failed.
bool Relay::Admits(NodeId from, NodeId origin, NodeId destination) {
  if (SpeaksFor(from, origin) && view_.members.count(origin) != 0 &&
      (destination == self_ || view_.members.count(destination) != 0)) {
    return true;
  }
  ++stats_.failed;
  return false;
}

// The leader passes a frame for another node on, keeping nothing: within the hop bound,
// never back to its origin, over a link that is up (otherwise the origin asks again).
bool Relay::MayPassOn(uint8_t hops, NodeId origin, NodeId destination) const {
  return hops < options_.hops_max && destination != origin && Linked(destination);
}

void Relay::OnStanza(NodeId from, const StanzaFrame& frame) {
  if (frame.origin == self_) return;  // its own, back: it resends it itself
  if (!Admits(from, frame.origin, frame.destination)) return;
  if (frame.destination != self_) {
    if (!MayPassOn(frame.hops, frame.origin, frame.destination)) return;
    StanzaFrame onward = frame;
    ++onward.hops;
    ready_.sends.push_back({frame.destination, FrameType::kStanza, EncodeStanza(onward)});
    ++stats_.relayed_in;
    ++stats_.relayed_out;
    return;
  }
  Window* window = WindowOf(frame.origin, frame.incarnation, frame.floor);
  if (window == nullptr || frame.sequence < window->floor) {
    ++stats_.duplicates_dropped;  // finished at the origin
    return;
  }
  if (auto decided = window->decided.find(frame.sequence); decided != window->decided.end()) {
    ++stats_.duplicates_dropped;
    Answer(from, frame.origin, frame.incarnation, frame.sequence, decided->second);
    return;
  }
  const xmpp::Stanza stanza = xmpp::InspectStanza(frame.stanza);
  std::string address = stanza.to ? router::RouteAddressOf(*stanza.to, domain_) : "";
  // Not here (any more), or nowhere to deliver now: no decision, no answer. The origin
  // asks before it sends it elsewhere, and sends it again here otherwise.
  if (address.empty() || !view_.can_deliver || window->decided.size() >= options_.decisions_max) {
    ++stats_.failed;
    return;
  }
  if (!router::IsAccountRoute(address) && local_routes_.count(address) == 0) {
    const size_t slash = address.find('/');
    const bool account_copy = slash != std::string::npos && address.find('@') < slash &&
                              local_routes_.count(address.substr(0, slash)) != 0;
    if (!account_copy) {
      ++stats_.misrouted;
      return;
    }
    address.resize(slash);
  }
  // Never trusted: tokenized again, and from this cluster's domain. What fails is
  // answered "aborted" (a resend would fail the same way): its sender gets an error.
  std::string why;
  if (!Accepts(stanza, frame.stanza, &why)) {
    ++stats_.failed;
    ++stats_.rejected;
    if (stats_.rejected <= 10 || stats_.rejected % 1000 == 0) {
      Log("relay_rejected", "origin=" + std::to_string(frame.origin) + " reason=" + LogQuote(why) +
                                " count=" + std::to_string(stats_.rejected));
    }
    window->decided[frame.sequence] = Outcome::kAborted;
    Answer(from, frame.origin, frame.incarnation, frame.sequence, Outcome::kAborted);
    return;
  }
  // Decided and answered first, delivered after: the driver sends this turn's frames
  // before it hands its deliveries to the shards, so the origin never sends elsewhere a
  // stanza a bridge may already have; if this node dies in between, it is one it held.
  window->decided[frame.sequence] = Outcome::kDelivered;
  ++stats_.relayed_in;
  Answer(from, frame.origin, frame.incarnation, frame.sequence, Outcome::kDelivered);
  ready_.deliveries.push_back({frame.origin, std::move(address), std::string(frame.stanza)});
}

void Relay::OnAbort(NodeId from, const AbortFrame& frame) {
  if (frame.origin == self_) return;
  if (!Admits(from, frame.origin, frame.destination)) return;
  if (frame.destination != self_) {
    if (!MayPassOn(frame.hops, frame.origin, frame.destination)) return;
    AbortFrame onward = frame;
    ++onward.hops;
    ready_.sends.push_back({frame.destination, FrameType::kAbort, EncodeAbort(onward)});
    return;
  }
  Window* window = WindowOf(frame.origin, frame.incarnation, frame.floor);
  if (window == nullptr) return;
  for (const uint64_t sequence : frame.sequences) {
    if (sequence < window->floor) continue;
    auto decided = window->decided.find(sequence);
    if (decided == window->decided.end()) {
      if (window->decided.size() >= options_.decisions_max) continue;  // asked again later
      decided = window->decided.emplace(sequence, Outcome::kAborted).first;
      ++stats_.aborted;
    }
    Answer(from, frame.origin, frame.incarnation, sequence, decided->second);
  }
}

void Relay::OnFrame(uint64_t now_ms, NodeId from, FrameType type, std::string_view payload) {
  if (view_.members.count(from) == 0) return;
  switch (type) {
    case FrameType::kStanza: {
      absl::StatusOr<StanzaFrame> frame = DecodeStanza(payload);
      if (frame.ok()) OnStanza(from, *frame);
      return;
    }
    case FrameType::kAbort: {
      absl::StatusOr<AbortFrame> frame = DecodeAbort(payload);
      if (frame.ok()) OnAbort(from, *frame);
      return;
    }
    case FrameType::kAck: {
      absl::StatusOr<AnswerFrame> frame = DecodeAnswers(payload);
      if (frame.ok() && SpeaksFor(from, frame->node)) OnAnswers(now_ms, frame->node, *frame);
      return;
    }
    case FrameType::kAckRelay: {
      absl::StatusOr<std::pair<NodeId, std::string_view>> relayed = DecodeAckRelay(payload);
      if (!relayed.ok()) return;
      if (relayed->first == self_) {
        absl::StatusOr<AnswerFrame> frame = DecodeAnswers(relayed->second);
        if (frame.ok() && SpeaksFor(from, frame->node)) OnAnswers(now_ms, frame->node, *frame);
      } else if (Linked(relayed->first)) {
        ready_.sends.push_back({relayed->first, FrameType::kAck, std::string(relayed->second)});
      }
      return;
    }
    case FrameType::kRoutes: {
      absl::StatusOr<RoutesFrame> routes = DecodeRoutes(payload);
      if (routes.ok()) OnRoutes(now_ms, from, *routes);
      return;
    }
    default:
      return;
  }
}

void Relay::OnRoutes(uint64_t now_ms, NodeId from, const RoutesFrame& routes) {
  const size_t changes_before = ready_.route_changes.size();
  switch (routes.part) {
    case RoutesPart::kChanges: {
      auto arriving = route_sets_in_.find(from);
      for (const RouteUpdate& update : routes.updates) {
        if (update.add) {
          directory_->Claim(from, update.address, &ready_.route_changes);
          if (arriving != route_sets_in_.end()) arriving->second.insert(update.address);
        } else {
          directory_->Withdraw(from, update.address, &ready_.route_changes);
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
      ReplaceRoutes(from, now);
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
        directory_->Claim(from, update.address, &ready_.route_changes);
      }
      if (routes.part != RoutesPart::kLast) break;
      const std::set<std::string> now = std::move(arriving->second);
      route_sets_in_.erase(arriving);
      ReplaceRoutes(from, now);
      break;
    }
  }
  // What waits for a route this frame moved (found by address: not a pass over all
  // custody per frame, as a node may hold a million routes and many stanzas): if the
  // route is somewhere else now, or the stanza had none, it goes there.
  std::set<std::string> moved_routes;
  for (size_t i = changes_before; i < ready_.route_changes.size(); ++i) {
    const RouteChange& change = ready_.route_changes[i];
    if (change.op == RouteChange::Op::kBind && !router::IsAccountRoute(change.address) &&
        custody_by_address_.count(change.address) != 0) {
      moved_routes.insert(change.address);
    }
  }
  for (const std::string& address : moved_routes) {
    const std::optional<NodeId> at = NodeOf(address);
    if (!at) continue;
    const std::set<uint64_t> sequences = custody_by_address_.at(address);
    for (const uint64_t sequence : sequences) {
      auto it = custody_.find(sequence);
      if (it == custody_.end()) continue;
      Entry& entry = it->second;
      const bool moved = *at != entry.node || entry.maybe_at.empty();
      if (moved && Retry(now_ms, entry)) Finish(it);
    }
  }
}

// `from`'s routes are `now`: the rest of its claims go.
void Relay::ReplaceRoutes(NodeId from, const std::set<std::string>& now) {
  for (const std::string& address : directory_->AddressesOf(from)) {
    if (now.count(address) == 0) directory_->Withdraw(from, address, &ready_.route_changes);
  }
  for (const std::string& address : now) directory_->Claim(from, address, &ready_.route_changes);
}

// ---- Time ----

void Relay::Tick(uint64_t now_ms) {
  resend_budget_ = options_.resend_bytes_per_tick;
  SendRouteSets();
  if (leader_resend_pending_ && view_.member) {
    // A new leader (or the first after none): what went to the old one, or waited for
    // one, goes to it now instead of after the resend delay.
    leader_resend_pending_ = false;
    for (auto it = custody_.begin(); it != custody_.end();) {
      Entry& entry = it->second;
      const std::optional<NodeId> hop = NextHop(entry.node);
      if (entry.expiring || !hop || *hop == entry.via) {
        ++it;
        continue;
      }
      if (resend_budget_ < entry.bytes.size()) {
        leader_resend_pending_ = true;
        break;
      }
      it = Retry(now_ms, entry) ? Finish(it) : std::next(it);
    }
  }
  if (now_ms >= last_service_ms_ + options_.service_every_ms) {
    last_service_ms_ = now_ms;
    for (auto it = custody_.begin(); it != custody_.end();) {
      Entry& entry = it->second;
      if (entry.no_leader_since_ms != 0 && view_.leader != raft::kNoNode) {
        entry.no_leader_since_ms = 0;  // a leader now: its turn comes with the resends
      }
      if (std::any_of(entry.maybe_at.begin(), entry.maybe_at.end(),
                      [&](NodeId node) { return view_.members.count(node) == 0; })) {
        Hold(entry, false);
        std::erase_if(entry.maybe_at, [&](NodeId node) { return view_.members.count(node) == 0; });
        Hold(entry, true);
      }
      const uint64_t waited = now_ms - std::min(now_ms, entry.first_ms);
      if (entry.expiring) {
        if (entry.maybe_at.empty() ||
            now_ms - std::min(now_ms, entry.expiring_since_ms) > options_.abort_wait_ms) {
          if (!entry.maybe_at.empty()) ++stats_.unconfirmed;
          ++stats_.expired;
          BounceEntry(now_ms, entry, entry.maybe_at.empty() ? "forward_hold" : "unconfirmed");
          it = Finish(it);
          continue;
        }
        if (now_ms - std::min(now_ms, entry.sent_ms) > options_.resend_after_ms) {
          SendAbort(now_ms, entry, raft::kNoNode);
        }
        ++it;
        continue;
      }
      const bool no_leader =
          entry.no_leader_since_ms != 0 &&
          now_ms - std::min(now_ms, entry.no_leader_since_ms) > options_.no_leader_hold_ms;
      if (waited > options_.hold_ms || no_leader) {
        if (entry.maybe_at.empty()) {  // it never reached anyone: its fate is known
          ++stats_.expired;
          BounceEntry(now_ms, entry, no_leader ? "no_leader" : "forward_hold");
          it = Finish(it);
          continue;
        }
        entry.expiring = true;  // it may have been delivered: ask
        entry.expiring_since_ms = now_ms;
        SendAbort(now_ms, entry, raft::kNoNode);
        ++it;
        continue;
      }
      if (now_ms - std::min(now_ms, entry.sent_ms) > options_.resend_after_ms &&
          Retry(now_ms, entry)) {
        it = Finish(it);
        continue;
      }
      ++it;
    }
  }
  FlushAnswers();
}

Ready Relay::TakeReady() {
  FlushAnswers();
  Ready ready = std::move(ready_);
  ready_ = Ready{};
  return ready;
}

void Relay::Log(std::string event, std::string fields) {
  ready_.logs.push_back({true, std::move(event), std::move(fields)});
}

std::vector<RouteChange> Relay::RemoteRoutes() const {
  std::vector<RouteChange> routes;
  directory_->AppendTold(&routes);
  return routes;
}

size_t Relay::decisions_count() const {
  size_t count = 0;
  for (const auto& [origin, lives] : windows_) {
    for (const auto& [incarnation, window] : lives) count += window.decided.size();
  }
  return count;
}

void Relay::CheckInvariants() const {
  size_t bytes = 0;
  for (const auto& [key, entry] : custody_) bytes += entry.bytes.size();
  CHECK_MSG(bytes == custody_bytes_, "custody byte sum");
  size_t indexed = 0;
  for (const auto& [address, sequences] : custody_by_address_) {
    CHECK(!sequences.empty());
    for (const uint64_t sequence : sequences) {
      auto it = custody_.find(sequence);
      CHECK(it != custody_.end() && it->second.address == address);
      ++indexed;
    }
  }
  CHECK_MSG(indexed == custody_.size(), "custody index");
  // holding_: exactly each entry's sequence under its node and the nodes that may hold it.
  std::map<NodeId, std::set<uint64_t>> holding;
  size_t renamed = 0;
  for (const auto& [key, entry] : custody_) {
    CHECK(entry.key == key && entry.sequence >= key && entry.sequence < next_sequence_);
    holding[entry.node].insert(entry.sequence);
    for (const NodeId node : entry.maybe_at) holding[node].insert(entry.sequence);
    if (entry.sequence != key) {
      auto it = resequenced_.find(entry.sequence);
      CHECK(it != resequenced_.end() && it->second == key);
      ++renamed;
    }
  }
  CHECK_MSG(holding == holding_, "custody held per node");
  CHECK_MSG(renamed == resequenced_.size(), "renamed custody");
  for (const auto& [origin, lives] : windows_) {
    CHECK(lives.size() <= options_.incarnations_max);
    for (const auto& [incarnation, window] : lives) {
      CHECK(window.decided.size() <= options_.decisions_max);
      CHECK(window.decided.empty() || window.decided.begin()->first >= window.floor);
    }
  }
}

}  // namespace stanzad::cluster::relay
