#include "core/xmpp/stream_management.h"

#include <utility>

#include "core/base/check.h"
#include "core/base/concat.h"

namespace stanzad::xmpp {

StreamManagement::StreamManagement(Options options) : options_(options) {
  CHECK(options_.ack_request_every_stanzas > 0);
}

void StreamManagement::Enable(std::string resumption_id, uint64_t now_ms) {
  CHECK(!enabled_);
  enabled_ = true;
  resumption_id_ = std::move(resumption_id);
  received_ = 0;
  sent_ = 0;
  acknowledged_ = 0;
  sent_since_request_ = 0;
  last_request_ms_ = now_ms;
}

void StreamManagement::OnReceived(StanzaKind kind) {
  if (!enabled_ || kind == StanzaKind::kOther) return;
  ++received_;  // wraps at 2^32, as XEP-0198 §4 counts
}

std::string StreamManagement::Acknowledgement() const {
  return Concat("<a xmlns='urn:xmpp:sm:3' h='", std::to_string(received_), "'/>");
}

std::string_view StreamManagement::OnSent(std::string_view stanza, uint64_t now_ms) {
  if (!enabled_) return {};
  unacknowledged_.emplace_back(stanza);
  held_bytes_ += stanza.size();
  ++sent_;  // wraps at 2^32, as XEP-0198 §4 counts
  if (++sent_since_request_ < options_.ack_request_every_stanzas) return {};
  sent_since_request_ = 0;
  last_request_ms_ = now_ms;
  return kAckRequest;
}

std::string_view StreamManagement::OnTick(uint64_t now_ms) {
  if (!enabled_ || detached_ || unacknowledged_.empty() || sent_since_request_ == 0 ||
      now_ms - last_request_ms_ < options_.ack_request_after_ms) {
    return {};
  }
  sent_since_request_ = 0;
  last_request_ms_ = now_ms;
  return kAckRequest;
}

std::optional<uint32_t> StreamManagement::NewlyHandled(uint32_t h) const {
  // Every difference is mod 2^32: the counts wrap, and so does h.
  const uint32_t handled = h - acknowledged_;
  const uint32_t outstanding = sent_ - acknowledged_;
  CHECK(outstanding == unacknowledged_.size());
  if (handled > outstanding) return std::nullopt;
  return handled;
}

void StreamManagement::DropHandled(uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) {
    held_bytes_ -= unacknowledged_.front().size();
    unacknowledged_.pop_front();
  }
  acknowledged_ += count;
}

std::optional<StreamError> StreamManagement::OnAck(uint32_t h) {
  if (!enabled_) return std::nullopt;
  const std::optional<uint32_t> handled = NewlyHandled(h);
  if (!handled) {
    const std::string h_text = std::to_string(h);
    const std::string sent_text = std::to_string(sent_);
    // Below the last one (mod 2^32, within half the range): acks arrive in order on one
    // stream, so it is as wrong, but it is not "too high".
    if (const uint32_t behind = acknowledged_ - h; behind != 0 && behind < (1u << 31)) {
      return StreamError{StreamErrorCondition::kUndefinedCondition,
                         Concat("You acknowledged ", h_text, " stanzas after acknowledging ",
                                std::to_string(acknowledged_), ": h never goes back"),
                         ""};
    }
    // XEP-0198 §6: an h beyond what was sent ends the stream with
    // undefined-condition and this application-specific condition.
    return StreamError{
        StreamErrorCondition::kUndefinedCondition,
        Concat("You acknowledged ", h_text, " stanzas, but only ", sent_text, " were sent"),
        Concat("<handled-count-too-high xmlns='urn:xmpp:sm:3' h='", h_text, "' send-count='",
               sent_text, "'/>")};
  }
  DropHandled(*handled);
  return std::nullopt;
}

bool StreamManagement::Detach(uint64_t now_ms) {
  if (!enabled_ || resumption_id_.empty() || options_.resume_timeout_ms == 0) return false;
  detached_ = true;
  resume_deadline_ms_ = now_ms + options_.resume_timeout_ms;
  return true;
}

void StreamManagement::Keep(std::string_view stanza) {
  pending_.emplace_back(stanza);
  held_bytes_ += stanza.size();
}

StanzaQueue StreamManagement::TakePending() {
  for (const std::string& stanza : pending_) held_bytes_ -= stanza.size();
  StanzaQueue pending = std::move(pending_);
  pending_.clear();
  return pending;
}

std::optional<StreamManagement::Handover> StreamManagement::HandOver(uint32_t h) {
  CHECK(resumable());
  const std::optional<uint32_t> handled = NewlyHandled(h);
  if (!handled) return std::nullopt;
  DropHandled(*handled);
  Handover handover;
  handover.resend = std::move(unacknowledged_);
  unacknowledged_.clear();
  for (const std::string& stanza : pending_) handover.resend.emplace_back(stanza);
  pending_.clear();
  handover.received = received_;
  held_bytes_ = 0;
  acknowledged_ = sent_;
  enabled_ = false;
  detached_ = false;
  resumption_id_.clear();
  return handover;
}

void StreamManagement::Resume(std::string resumption_id, uint32_t h, uint32_t received) {
  CHECK(!enabled_);
  CHECK(unacknowledged_.empty());
  enabled_ = true;
  resumption_id_ = std::move(resumption_id);
  // What the client handled of the earlier stream the holder dropped; the rest
  // it resends here, counted on from h (XEP-0198 §5).
  sent_ = h;
  acknowledged_ = h;
  // The client's stanzas count on from what the holder had counted of them.
  received_ = received;
}

StreamManagement::Ended StreamManagement::End() {
  Ended ended;
  ended.unacknowledged = std::move(unacknowledged_);
  unacknowledged_.clear();
  for (const std::string& stanza : pending_) ended.unacknowledged.emplace_back(stanza);
  pending_.clear();
  held_bytes_ = 0;
  ended.resumption_id = std::move(resumption_id_);
  resumption_id_.clear();
  enabled_ = false;
  detached_ = false;
  acknowledged_ = sent_;
  return ended;
}

}  // namespace stanzad::xmpp
