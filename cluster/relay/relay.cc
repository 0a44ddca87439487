#include "cluster/relay/relay.h"

#include <algorithm>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "core/base/absl_compat.h"
#include "core/base/check.h"
#include "core/base/log.h"
#include "core/router/client_routes.h"
#include "core/router/route_table.h"

namespace stanzad::cluster::relay {

// The lanes that may hold an entry: at most its own (CheckInvariants), so kept inline,
// without an allocation per stanza.
class LaneSet {
 public:
  void insert(Lane lane) {
    if (std::find(lanes_.begin(), lanes_.end(), lane) == lanes_.end()) lanes_.push_back(lane);
  }
  void erase(Lane lane) {
    EraseIf([lane](Lane held) { return held == lane; });
  }
  template <typename Predicate>
  void EraseIf(Predicate predicate) {
    lanes_.erase(std::remove_if(lanes_.begin(), lanes_.end(), predicate), lanes_.end());
  }
  bool empty() const { return lanes_.empty(); }
  size_t size() const { return lanes_.size(); }
  auto begin() const { return lanes_.begin(); }
  auto end() const { return lanes_.end(); }

 private:
  absl::InlinedVector<Lane, 1> lanes_;
};

// A stanza in this node's custody.
struct Relay::Entry {
  // Its name on the wire, with the incarnation. It gets a new one when it goes to another
  // destination (resequenced_ finds it): so a destination's floor never has to wait for
  // a stanza bound elsewhere, and never passes one bound for it.
  uint64_t sequence = 0;
  uint64_t key = 0;     // its key in custody_: its first sequence
  Lane lane;            // the lane it was last sent to to be delivered (never this node's)
  Lane via;             // the lane it last left for (the leader's, or `lane`); node 0: none
  std::string address;  // its route: a bridge, a client's full JID, an account
  std::string bytes;
  SenderId sender = kNoSender;
  uint64_t first_ms = 0;            // taken into custody
  uint64_t sent_ms = 0;             // last sent, or last asked about
  uint64_t no_leader_since_ms = 0;  // waiting for a leader since; 0: it has a next hop
  // The lanes it was sent to that may hold it: each must answer before it goes
  // elsewhere (or is bounced), unless it is gone; one that never answers ends the wait
  // at the deadline (abort_wait_ms).
  LaneSet maybe_at;
  uint64_t move_asked_ms = 0;  // when the nodes that may hold it were last asked to let go
  bool expiring = false;       // past its deadline: only asked about, never sent again
  uint64_t expiring_since_ms = 0;
  // Its places in custody_by_address_'s list for its address and holding_'s for its lane.
  Entry* address_prev = nullptr;
  Entry* address_next = nullptr;
  Entry* lane_prev = nullptr;
  Entry* lane_next = nullptr;
};

void Relay::EntryList::Append(Entry& entry, Link prev, Link next) {
  entry.*prev = last;
  entry.*next = nullptr;
  (last != nullptr ? last->*next : first) = &entry;
  last = &entry;
}

void Relay::EntryList::Remove(Entry& entry, Link prev, Link next) {
  (entry.*prev != nullptr ? entry.*prev->*next : first) = entry.*next;
  (entry.*next != nullptr ? entry.*next->*prev : last) = entry.*prev;
  entry.*prev = entry.*next = nullptr;
}

// What this lane decided about the stanzas of one incarnation of one origin lane.
struct Relay::Window {
  uint64_t floor = 1;                          // below it: finished at the origin
  absl::btree_map<uint64_t, Outcome> decided;  // sequences >= floor
};

Relay::Relay(Lane self, uint64_t incarnation, std::string domain, const RouteLookup& routes,
             Options options)
    : self_(self),
      incarnation_(incarnation),
      domain_(std::move(domain)),
      options_(options),
      routes_(routes),
      checker_(std::make_unique<xmpp::RelayedStanzaChecker>(options.stanza_bytes_max)) {
  CHECK(self_.node != raft::kNoNode && self_.shard < kLanesPerNodeMax);
  CHECK(incarnation_ > 0);
  CHECK(options_.incarnations_max >= 1 && options_.decisions_max >= 1 && options_.hops_max >= 1);
  resend_budget_ = options_.resend_bytes_per_tick;
}

Relay::~Relay() = default;

void Relay::SetDomain(std::string domain) { domain_ = std::move(domain); }

// ---- The cluster's view ----

void Relay::SetView(uint64_t now_ms, const View& view) {
  const bool lanes_changed = view.members != view_.members || view.lanes != view_.lanes;
  const bool was_member = view_.member;
  view_ = view;
  if (lanes_changed) ForgetGoneLanes();
  if (view_.leader != last_leader_) {
    last_leader_ = view_.leader;
    leader_resend_pending_ = view_.leader != raft::kNoNode && !options_.direct;
  }
  if (!was_member && view_.member) leader_resend_pending_ = true;
  (void)now_ms;
}

// A member's windows stay while it is one, whatever its lane count says now: a lane that
// comes back (a restart with more shards) must still know its old lives' stanzas. Its
// frames are refused while the lane does not exist (OnFrame).
void Relay::ForgetGoneLanes() {
  std::erase_if(windows_,
                [&](const auto& item) { return view_.members.count(item.first.node) == 0; });
  for (auto& [key, entry] : custody_) {
    entry.maybe_at.EraseIf([&](Lane lane) { return !LaneExists(lane); });
  }
}

uint32_t Relay::LanesOf(NodeId node) const {
  auto it = view_.lanes.find(node);
  return it == view_.lanes.end() ? 1 : std::clamp<uint32_t>(it->second, 1, kLanesPerNodeMax);
}

Lane Relay::LaneOf(NodeId node, std::string_view address) const {
  const int lanes = static_cast<int>(LanesOf(node));
  return {node, static_cast<uint16_t>(router::OwnerShard(address, lanes))};
}

bool Relay::LaneExists(Lane lane) const {
  return view_.members.count(lane.node) != 0 && lane.shard < LanesOf(lane.node);
}

void Relay::Send(Lane to, FrameType type, std::string payload) {
  ready_.sends.push_back({to.node, type, std::move(payload), to.shard});
}

// ---- Custody (this node as the origin) ----

void Relay::Forward(uint64_t now_ms, SenderId sender, NodeId node, std::string_view bytes,
                    std::optional<std::string_view> to, std::string_view route_address) {
  if (custody_bytes_ + bytes.size() > options_.hold_bytes_max) {
    ++stats_.failed;
    if (sender != kNoSender) {
      ready_.bounces.push_back(
          {sender, std::string(bytes), xmpp::StanzaErrorCondition::kResourceConstraint});
    }
    return;
  }
  TakeInto(now_ms, sender, node, bytes, to, route_address);
}

void Relay::TakeInto(uint64_t now_ms, SenderId sender, NodeId node, std::string_view bytes,
                     std::optional<std::string_view> to, std::string_view route_address) {
  if (!to) to = xmpp::InspectStanza(bytes).to;
  DCHECK(to == xmpp::InspectStanza(bytes).to);  // the caller's is the stanza's own
  DCHECK(route_address.empty() || (to && route_address == router::RouteAddressOf(*to, domain_)));
  const uint64_t sequence = next_sequence_++;
  Entry& entry = custody_[sequence];
  entry.sequence = entry.key = sequence;
  if (!route_address.empty()) {
    entry.address.assign(route_address);
  } else {
    entry.address = to ? router::RouteAddressOf(*to, domain_) : "";
  }
  // A message for a resource bound nowhere is the account's (RFC 6121 §8.5.3.2.1): the
  // shard sent this copy to a node holding the account.
  if (const size_t slash = entry.address.find('/'); slash != std::string::npos &&
                                                    entry.address.find('@') < slash &&
                                                    !routes_.NodeOf(entry.address)) {
    entry.address.resize(slash);
  }
  entry.lane = LaneOf(node, entry.address);
  entry.bytes.assign(bytes);
  entry.sender = sender;
  entry.first_ms = entry.sent_ms = now_ms;
  custody_bytes_ += entry.bytes.size();
  custody_by_address_[entry.address].Append(entry, &Entry::address_prev, &Entry::address_next);
  Hold(entry);
  SendEntry(now_ms, entry);
}

std::optional<Lane> Relay::NextHop(const Entry& entry) const {
  const NodeId leader = view_.leader;
  if (options_.direct || leader == self_.node || leader == entry.lane.node) return entry.lane;
  if (leader == raft::kNoNode) return std::nullopt;
  return LaneOf(leader, entry.address);
}

uint64_t Relay::FloorFor(Lane destination) const {
  auto it = holding_.find(destination);
  return it == holding_.end() ? next_sequence_ : it->second.first->sequence;
}

// (The lanes that may hold an entry are at most its own lane: it moves only once they
// all gave it up. So holding_ needs only entry.lane.)
void Relay::Hold(Entry& entry) {
  EntryList& held = holding_[entry.lane];
  DCHECK(held.empty() || held.last->sequence < entry.sequence);  // the newest sequence
  held.Append(entry, &Entry::lane_prev, &Entry::lane_next);
}

void Relay::Unhold(Entry& entry) {
  auto it = holding_.find(entry.lane);
  CHECK(it != holding_.end());
  it->second.Remove(entry, &Entry::lane_prev, &Entry::lane_next);
  if (it->second.empty()) holding_.erase(it);
}

std::map<uint64_t, Relay::Entry>::iterator Relay::FindSequence(uint64_t sequence) {
  auto it = custody_.find(sequence);
  if (it != custody_.end() && it->second.sequence == sequence) return it;
  auto renamed = resequenced_.find(sequence);
  return renamed == resequenced_.end() ? custody_.end() : custody_.find(renamed->second);
}

// Sends the stanza to entry.lane, through the next hop.
void Relay::SendEntry(uint64_t now_ms, Entry& entry) {
  entry.sent_ms = now_ms;
  const std::optional<Lane> hop = NextHop(entry);
  if (!hop) {
    entry.via = Lane{};
    if (entry.no_leader_since_ms == 0) entry.no_leader_since_ms = std::max<uint64_t>(now_ms, 1);
    return;
  }
  entry.no_leader_since_ms = 0;
  if (!view_.member || !Linked(hop->node)) return;  // not sent: the resend timer tries again
  entry.via = *hop;
  entry.maybe_at.insert(entry.lane);  // held as entry.lane already
  Send(*hop, FrameType::kStanza,
       EncodeStanza({self_, incarnation_, entry.sequence, FloorFor(entry.lane), entry.lane, 0,
                     entry.bytes}));
  ++stats_.relayed_out;
}

// Asks the lanes that may hold the stanza, except `except`, what became of it: directly
// and through the leader (a question, or its answer, may only get through one way).
void Relay::SendAbort(uint64_t now_ms, Entry& entry, std::optional<Lane> except) {
  entry.sent_ms = now_ms;
  if (!view_.member) return;
  for (const Lane lane : entry.maybe_at) {
    if (lane == except) continue;
    const std::string payload =
        EncodeAbort({self_, incarnation_, FloorFor(lane), lane, 0, {entry.sequence}});
    if (Linked(lane.node)) Send(lane, FrameType::kAbort, payload);
    const NodeId leader = view_.leader;
    if (leader != raft::kNoNode && leader != self_.node && leader != lane.node && Linked(leader)) {
      Send(LaneOf(leader, entry.address), FrameType::kAbort, payload);
    }
  }
}

// Sends a waiting stanza to wherever its route is now. True when it is finished with
// (delivered here).
bool Relay::Retry(uint64_t now_ms, Entry& entry) {
  if (entry.expiring) return false;
  std::optional<NodeId> node;
  if (router::IsAccountRoute(entry.address)) {
    // Each node with resources of the account got its own copy: this one goes to its
    // node again while that node has them; otherwise it waits out the hold.
    if (routes_.Claims(entry.lane.node, entry.address)) node = entry.lane.node;
  } else {
    node = routes_.NodeOf(entry.address);
  }
  if (!node) return false;
  // The lane it goes to; none when the route is on this node now.
  const std::optional<Lane> target =
      *node == 0 ? std::nullopt : std::optional<Lane>(LaneOf(*node, entry.address));
  // Whoever may hold it, other than the target, gives it up first: it goes elsewhere only
  // once they said they never delivered it. A lane whose link is down is asked through
  // the leader; one that never answers ends at the deadline (abort_wait_ms), or when it
  // is gone. (A link that blips is not a node that died.)
  const bool others = std::any_of(entry.maybe_at.begin(), entry.maybe_at.end(),
                                  [&](Lane lane) { return lane != target; });
  if (others) {
    // Asked at once, then once per resend interval however often routes change.
    if (entry.move_asked_ms == 0 || now_ms - entry.move_asked_ms >= options_.resend_after_ms) {
      entry.move_asked_ms = std::max<uint64_t>(now_ms, 1);
      SendAbort(now_ms, entry, target);
    }
    return false;
  }
  if (!target) {  // the route is on this node now
    if (!view_.can_deliver) return false;
    ready_.deliveries.push_back({self_.node, entry.address, entry.bytes});
    ++stats_.resent;
    return true;
  }
  if (resend_budget_ < entry.bytes.size()) return false;  // the next turn
  resend_budget_ -= entry.bytes.size();
  if (*target != entry.lane) {
    // Elsewhere (every lane it went to gave it up): a new name, above every floor sent so
    // far (see Entry::sequence).
    Unhold(entry);
    Rename(entry);
    entry.lane = *target;
    Hold(entry);
  }
  ++stats_.resent;
  SendEntry(now_ms, entry);
  return false;
}

// A new sequence for `entry` (unheld: the caller holds it again).
void Relay::Rename(Entry& entry) {
  if (entry.sequence != entry.key) resequenced_.erase(entry.sequence);
  entry.sequence = next_sequence_++;
  resequenced_[entry.sequence] = entry.key;
}

std::map<uint64_t, Relay::Entry>::iterator Relay::Finish(std::map<uint64_t, Entry>::iterator it) {
  Unhold(it->second);
  if (it->second.sequence != it->second.key) resequenced_.erase(it->second.sequence);
  custody_bytes_ -= it->second.bytes.size();
  auto waiting = custody_by_address_.find(it->second.address);
  CHECK(waiting != custody_by_address_.end());
  waiting->second.Remove(it->second, &Entry::address_prev, &Entry::address_next);
  if (waiting->second.empty()) custody_by_address_.erase(waiting);
  return custody_.erase(it);
}

void Relay::BounceEntry(uint64_t now_ms, const Entry& entry, std::string_view reason) {
  const std::optional<NodeId> now_at = routes_.NodeOf(entry.address);
  Log("relay_expired", "to=" + LogQuote(entry.address) + " node=" + LaneName(entry.lane) +
                           " via=" + LaneName(entry.via) + " now_at=" +
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
  const std::optional<NodeId> node = routes_.NodeOf(sender);
  if (!node) return;
  if (*node == 0) {
    if (view_.can_deliver) ready_.deliveries.push_back({self_.node, sender, reply});
    return;
  }
  if (custody_bytes_ + reply.size() > options_.hold_bytes_max) {
    ++stats_.failed;  // custody is full: the error reply goes too (logged above)
    return;
  }
  TakeInto(now_ms, kNoSender, *node, reply, std::nullopt);
}

void Relay::OnAnswers(uint64_t now_ms, Lane answerer, const AnswerFrame& frame) {
  // A previous life's, or another lane's.
  if (frame.incarnation != incarnation_ || frame.origin_shard != self_.shard) return;
  for (const auto& [sequence, outcome] : frame.answers) {
    auto it = FindSequence(sequence);
    if (it == custody_.end()) continue;
    Entry& entry = it->second;
    if (outcome == Outcome::kDelivered) {
      Finish(it);
      continue;
    }
    entry.maybe_at.erase(answerer);
    if (!entry.maybe_at.empty()) continue;
    // "Aborted" from where the route is now is final (that lane decided for good, or
    // refused the stanza): the sender hears at once. Otherwise it may go where its route
    // is now.
    const bool route_there =
        answerer == LaneOf(answerer.node, entry.address) &&
        (router::IsAccountRoute(entry.address)
             ? answerer == entry.lane && routes_.Claims(answerer.node, entry.address)
             : routes_.NodeOf(entry.address) == std::optional<NodeId>(answerer.node));
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

Relay::Window* Relay::WindowOf(Lane origin, uint64_t incarnation, uint64_t floor) {
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

void Relay::Answer(Lane from, Lane origin, uint64_t incarnation, uint64_t sequence,
                   Outcome outcome) {
  answers_[{from, origin, incarnation}].emplace_back(sequence, outcome);
}

void Relay::FlushAnswers() {
  for (auto& [key, all] : answers_) {
    for (size_t first = 0; first < all.size(); first += kAnswersPerFrameMax) {
      const size_t last = std::min(all.size(), first + kAnswersPerFrameMax);
      SendAnswers(
          key,
          {key.incarnation, key.origin.shard, self_, {all.begin() + first, all.begin() + last}});
    }
  }
  answers_.clear();
}

// Answers go back the way the question came: to the origin (through the leader when
// there is no link to it), or through the node that passed the question on.
void Relay::SendAnswers(const AnswerKey& key, const AnswerFrame& frame) {
  const std::string payload = EncodeAnswers(frame);
  if (key.to != key.origin) {
    if (Linked(key.to.node))
      Send(key.to, FrameType::kAckRelay, EncodeAckRelay(key.origin, payload));
    return;
  }
  const NodeId leader = view_.leader;
  if (Linked(key.origin.node)) {
    Send(key.origin, FrameType::kAck, payload);
  } else if (leader != raft::kNoNode && leader != self_.node && leader != key.origin.node &&
             Linked(leader)) {
    // Any of the leader's lanes passes it on: the one with the origin's shard number.
    const Lane via{leader, static_cast<uint16_t>(key.origin.shard % LanesOf(leader))};
    Send(via, FrameType::kAckRelay, EncodeAckRelay(key.origin, payload));
  }
}

bool Relay::Accepts(const xmpp::Stanza& stanza, std::string_view bytes, std::string* why) {
  if (!checker_->Check(bytes, stanza.kind, why)) return false;
  if (!stanza.from) {
    *why = "no from";
    return false;
  }
  // A relayed stanza's `from` names this domain, one of its bridges (a subdomain), or an
  // account of it: the origin node's session checked or stamped it.
  if (router::DomainIsOrUnder(*stanza.from, domain_)) return true;
  *why = "from is not of this cluster's domain";
  return false;
}

// A frame that names an origin (or a deciding lane) other than the lane it came from was
// passed on: only the leader's lanes do that. (A lane cannot speak for another.)
bool Relay::SpeaksFor(Lane from, Lane named) const {
  return named == from || (from.node == view_.leader && from.node != raft::kNoNode);
}

// A stanza or question is taken, or passed on, only from a lane that may speak for its
// origin, and only between lanes of members (what windows_ keeps is per origin lane);
// anything else is counted as failed.
bool Relay::Admits(Lane from, Lane origin, Lane destination) {
  if (SpeaksFor(from, origin) && LaneExists(origin) &&
      (destination == self_ || (destination.node != self_.node && LaneExists(destination)))) {
    return true;
  }
  ++stats_.failed;
  return false;
}

// The leader passes a frame for another node on, keeping nothing: within the hop bound,
// never back to its origin, over a link that is up (otherwise the origin asks again).
bool Relay::MayPassOn(uint8_t hops, Lane origin, Lane destination) const {
  return hops < options_.hops_max && destination.node != origin.node && Linked(destination.node);
}

void Relay::OnStanza(Lane from, const StanzaFrame& frame) {
  if (frame.origin == self_) return;  // its own, back: it resends it itself
  if (!Admits(from, frame.origin, frame.destination)) return;
  if (frame.destination != self_) {
    if (!MayPassOn(frame.hops, frame.origin, frame.destination)) return;
    StanzaFrame onward = frame;
    ++onward.hops;
    Send(frame.destination, FrameType::kStanza, EncodeStanza(onward));
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
  const auto here = [&](std::string_view route) { return routes_.NodeOf(route) == NodeId{0}; };
  if (!router::IsAccountRoute(address) && !here(address)) {
    const size_t slash = address.find('/');
    const bool account_copy = slash != std::string::npos && address.find('@') < slash &&
                              here(std::string_view(address).substr(0, slash));
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
      Log("relay_rejected", "origin=" + LaneName(frame.origin) + " reason=" + LogQuote(why) +
                                " count=" + std::to_string(stats_.rejected));
    }
    window->decided[frame.sequence] = Outcome::kAborted;
    Answer(from, frame.origin, frame.incarnation, frame.sequence, Outcome::kAborted);
    return;
  }
  // Decided before it is delivered: asked again, this lane answers "delivered", so the
  // origin never sends elsewhere a stanza a bridge may already have. Only the death of
  // this node before its answer leaves (its decisions go with it) opens the header's
  // window of a dying destination.
  window->decided[frame.sequence] = Outcome::kDelivered;
  ++stats_.relayed_in;
  Answer(from, frame.origin, frame.incarnation, frame.sequence, Outcome::kDelivered);
  ready_.deliveries.push_back({frame.origin.node, std::move(address), std::string(frame.stanza)});
}

void Relay::OnAbort(Lane from, const AbortFrame& frame) {
  if (frame.origin == self_) return;
  if (!Admits(from, frame.origin, frame.destination)) return;
  if (frame.destination != self_) {
    if (!MayPassOn(frame.hops, frame.origin, frame.destination)) return;
    AbortFrame onward = frame;
    ++onward.hops;
    Send(frame.destination, FrameType::kAbort, EncodeAbort(onward));
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

void Relay::OnFrame(uint64_t now_ms, Lane from, FrameType type, std::string_view payload) {
  if (!LaneExists(from)) return;
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
      if (frame.ok() && SpeaksFor(from, frame->decider)) {
        OnAnswers(now_ms, frame->decider, *frame);
      }
      return;
    }
    case FrameType::kAckRelay: {
      absl::StatusOr<std::pair<Lane, std::string_view>> relayed = DecodeAckRelay(payload);
      if (!relayed.ok()) return;
      const Lane origin = relayed->first;
      if (origin == self_) {
        absl::StatusOr<AnswerFrame> frame = DecodeAnswers(relayed->second);
        if (frame.ok() && SpeaksFor(from, frame->decider)) {
          OnAnswers(now_ms, frame->decider, *frame);
        }
      } else if (origin.node != self_.node && LaneExists(origin) && Linked(origin.node)) {
        Send(origin, FrameType::kAck, std::string(relayed->second));
      }
      return;
    }
    default:
      return;
  }
}

// A route is bound now (here, or on a member): what waits for it goes there if it was
// somewhere else (or nowhere). Found by address, not a pass over all custody: a node may
// bind a million routes and hold many stanzas.
void Relay::RouteBound(uint64_t now_ms, std::string_view address) {
  if (router::IsAccountRoute(address)) return;  // each copy goes to its own holder
  auto waiting = custody_by_address_.find(ToAbsl(address));
  if (waiting == custody_by_address_.end()) return;
  const std::optional<NodeId> at = routes_.NodeOf(address);
  if (!at) return;
  // (Retry may finish entries and take others in: the keys first, then each looked up.)
  std::vector<uint64_t> keys;
  for (const Entry* entry = waiting->second.first; entry != nullptr; entry = entry->address_next) {
    keys.push_back(entry->key);
  }
  for (const uint64_t key : keys) {
    auto it = custody_.find(key);
    if (it == custody_.end()) continue;
    Entry& entry = it->second;
    const bool moved = *at == 0 || LaneOf(*at, address) != entry.lane || entry.maybe_at.empty();
    if (moved && Retry(now_ms, entry)) Finish(it);
  }
}

// ---- Time ----

void Relay::Tick(uint64_t now_ms) {
  resend_budget_ = options_.resend_bytes_per_tick;
  if (leader_resend_pending_ && view_.member) {
    // A new leader (or the first after none): what went to the old one, or waited for
    // one, goes to it now instead of after the resend delay.
    leader_resend_pending_ = false;
    for (auto it = custody_.begin(); it != custody_.end();) {
      Entry& entry = it->second;
      const std::optional<Lane> hop = NextHop(entry);
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
      entry.maybe_at.EraseIf([&](Lane lane) { return !LaneExists(lane); });
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
          SendAbort(now_ms, entry, std::nullopt);
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
        SendAbort(now_ms, entry, std::nullopt);
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
  // Each list: linked both ways, its ends right, its entries in custody_.
  const auto walk = [&](const EntryList& list, EntryList::Link prev, EntryList::Link next,
                        const auto& each) {
    CHECK(!list.empty() && list.first->*prev == nullptr && list.last->*next == nullptr);
    size_t count = 0;
    for (const Entry* entry = list.first; entry != nullptr; entry = entry->*next) {
      auto it = custody_.find(entry->key);
      CHECK(it != custody_.end() && &it->second == entry);
      CHECK(entry->*next == nullptr ? entry == list.last : entry->*next->*prev == entry);
      each(*entry);
      ++count;
    }
    return count;
  };
  size_t indexed = 0;
  // (Named, not structured bindings: clang 14, the fuzz build's, cannot capture those.)
  for (const auto& item : custody_by_address_) {
    const std::string& address = item.first;
    const EntryList& list = item.second;
    uint64_t last_key = 0;
    indexed += walk(list, &Entry::address_prev, &Entry::address_next, [&](const Entry& entry) {
      CHECK(entry.address == address && entry.key > last_key);  // oldest first
      last_key = entry.key;
    });
  }
  CHECK_MSG(indexed == custody_.size(), "custody index");
  // holding_: exactly each entry's sequence under its lane, the only one that may hold it,
  // in order.
  std::map<Lane, std::vector<uint64_t>> expected, holding;
  for (const auto& item : holding_) {
    const Lane lane = item.first;
    const EntryList& list = item.second;
    std::vector<uint64_t>& sequences = holding[lane];
    walk(list, &Entry::lane_prev, &Entry::lane_next, [&](const Entry& entry) {
      CHECK(entry.lane == lane);
      CHECK(sequences.empty() || sequences.back() < entry.sequence);
      sequences.push_back(entry.sequence);
    });
  }
  size_t renamed = 0;
  for (const auto& [key, entry] : custody_) {
    CHECK(entry.key == key && entry.sequence >= key && entry.sequence < next_sequence_);
    CHECK(entry.lane.node != self_.node && entry.lane.node != raft::kNoNode);
    expected[entry.lane].push_back(entry.sequence);
    CHECK(entry.maybe_at.empty() ||
          (entry.maybe_at.size() == 1 && *entry.maybe_at.begin() == entry.lane));
    if (entry.sequence != key) {
      auto it = resequenced_.find(entry.sequence);
      CHECK(it != resequenced_.end() && it->second == key);
      ++renamed;
    }
  }
  for (auto& [lane, sequences] : expected) std::sort(sequences.begin(), sequences.end());
  CHECK_MSG(holding == expected, "custody held per lane");
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
