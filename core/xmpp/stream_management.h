// The server's side of XEP-0198 stream management (urn:xmpp:sm:3) for one
// client session, as a pure state machine: how many stanzas the client sent
// that count, what was sent to it and not yet acknowledged, what to ask the
// client, what an <a h/> or a <resume h/> means, and what becomes of
// unacknowledged stanzas when the session ends or moves. No I/O, clock, flags
// or randomness: the caller passes in the time (now_ms) and the resumption id,
// and gets back bytes to send, stanzas to resend or to answer to their senders,
// and stream errors as values.
//
// ClientSession parses every stream management element and answers the
// negotiation itself (<enabled/>, <resumed/>, <failed/>); the counts of both
// directions are here, and the connection drives them, because it is what
// sends routed stanzas and what the session hands the client's stanzas to:
//
//   enable      Enable(id, now_ms) when the client's <enable/> is accepted
//               (the <enabled/> that follows carries id; "" = not resumable).
//   receive     OnReceived(kind) for each stanza the session hands on from the
//               client; Acknowledgement() is the <a h/> that answers its <r/>.
//   send        Admits(bytes) before queueing a stanza for the client; then
//               OnSent(stanza, now_ms) after writing it, and write what it
//               returns (an <r/> every ack_request_every_stanzas stanzas).
//               OnTick(now_ms) returns an <r/> when unacknowledged stanzas
//               have waited ack_request_after_ms since the last request.
//   lost        Detach(now_ms) when the connection drops without a clean
//               close (XEP-0198 §7): a resumable session waits to be resumed
//               until ResumptionExpired(now_ms); any other ends (End()).
//               StopWaiting() when a waiting session must end early.
//   keep        Keep(stanza) while the client is away (detached, or its
//               resumption not yet accepted): kept in order after the sent
//               ones, not counted until TakePending() hands them out to send.
//   ack         OnAck(h) for the client's <a h/>: drops what it acknowledges,
//               or returns the stream error XEP-0198 §6 prescribes when h
//               acknowledges more than was sent.
//   resume      On the connection that held the session: HandOver(h), for a
//               <resume h/> elsewhere, returns what the client has not handled
//               (to resend there) and the count of the client's stanzas (for
//               <resumed h/>), and gives the session up. On the resuming
//               connection: Resume(id, h, received) once the holder handed it
//               over.
//   end         End() when the session ends for good: every stanza not
//               acknowledged (or kept), oldest first, for the caller to answer
//               to its sender (recipient-unavailable), and the id to withdraw.
//
// Counting (XEP-0198 §4): every count is modulo 2^32. Inbound, the server's h
// counts the client's stanzas (message, presence, iq) handled since <enable/>
// (or, after resumption, since the <enable/> of the stream resumed); nonzas
// (<r/>, <a/>, <enable/>, whitespace) and stanzas before <enable/> do not count.
// Outbound, the client's h is the count of stanzas it handled since <enable/>,
// so h - acknowledged (mod 2^32) is how many it newly acknowledges. An h that is
// behind the last acknowledged one also reads as "too many": acknowledgements
// arrive in order over one stream, so that h is as wrong as one beyond what was
// sent.
//
// Bounds: Admits() lets a stanza in only while the bytes held (sent and not
// acknowledged, plus kept) stay within Options::unacked_bytes_max; the caller
// bounces one it refuses (resource-constraint) or, for the server's own replies,
// which have no sender to bounce to, ends the stream. Stanzas handed over at
// resumption are kept without asking (refusing them would lose them): the
// holder admitted them within the same bound, and ClientConnection takes them
// before it admits anything new, so held_bytes() stays within the bound there.
// Once over it (a caller that keeps more), Admits() refuses everything. The
// number of stanzas held is bounded by the same bytes.
//
// Thread safety: none; one instance belongs to one connection on one shard.
#ifndef STANZAD_CORE_XMPP_STREAM_MANAGEMENT_H_
#define STANZAD_CORE_XMPP_STREAM_MANAGEMENT_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "core/xmpp/stanza.h"
#include "core/xmpp/stream_error.h"

namespace stanzad::xmpp {

// The request for an acknowledgement the server sends.
inline constexpr std::string_view kAckRequest = "<r xmlns='urn:xmpp:sm:3'/>";

// Stanzas kept for a client, oldest first. Holds no memory until the first one
// (an empty std::deque allocates ~576 B, which every idle client would pay);
// then, like a deque, no allocation per stanza beyond the stanza's own.
class StanzaQueue {
 public:
  void emplace_back(std::string_view stanza) {
    if (!stanzas_) stanzas_.emplace();
    stanzas_->emplace_back(stanza);
  }
  bool empty() const { return !stanzas_ || stanzas_->empty(); }
  size_t size() const { return stanzas_ ? stanzas_->size() : 0; }
  const std::string& front() const { return stanzas_->front(); }  // REQUIRES: !empty()
  void pop_front() { stanzas_->pop_front(); }                     // REQUIRES: !empty()
  void clear() { stanzas_.reset(); }
  std::deque<std::string>::const_iterator begin() const {
    return stanzas_ ? stanzas_->cbegin() : Empty().cbegin();
  }
  std::deque<std::string>::const_iterator end() const {
    return stanzas_ ? stanzas_->cend() : Empty().cend();
  }

 private:
  static const std::deque<std::string>& Empty() {
    static const std::deque<std::string>* const empty = new std::deque<std::string>();
    return *empty;
  }
  std::optional<std::deque<std::string>> stanzas_;
};

class StreamManagement {
 public:
  struct Options {
    // Ask for an acknowledgement after this many stanzas sent since the last
    // request. REQUIRES: > 0.
    uint32_t ack_request_every_stanzas = 8;
    // ... or once some are unacknowledged and this long passed since the last
    // request (or since enabling).
    uint64_t ack_request_after_ms = 5'000;
    // Most bytes of stanzas held for the client: sent and not acknowledged,
    // plus those kept while it is away.
    size_t unacked_bytes_max = 1 << 20;
    // How long a resumable session whose connection dropped waits to be
    // resumed. 0: it does not wait (and the caller should offer no resumption).
    uint64_t resume_timeout_ms = 300'000;
  };

  explicit StreamManagement(Options options);

  StreamManagement(const StreamManagement&) = delete;
  StreamManagement& operator=(const StreamManagement&) = delete;

  // The client enabled stream management: stanzas sent and received from now on
  // are counted from 0. `resumption_id` is the id <enabled/> gave, "" if not
  // resumable.
  // REQUIRES: !enabled() (the session refuses a second <enable/>).
  void Enable(std::string resumption_id, uint64_t now_ms);

  // The session handed on a stanza from the client, a `kind` element. Counted
  // (mod 2^32) if it is a stanza (message, presence or iq; kOther is not) and
  // stream management is on; else nothing changes. Call it as the stanza is
  // handed on, whatever becomes of it: delivered, answered or bounced, it was
  // handled (XEP-0198 §4).
  void OnReceived(StanzaKind kind);

  // The answer to the client's <r/> (which the session passes on only after
  // <enable/>): <a h/> with received().
  std::string Acknowledgement() const;

  // Would one more stanza of `stanza_bytes` keep held_bytes() within
  // unacked_bytes_max? (Asked whether or not stream management is on: a
  // session that is not enabled holds nothing, so only a stanza over the bound
  // is refused.)
  bool Admits(size_t stanza_bytes) const {
    return held_bytes_ <= options_.unacked_bytes_max &&
           stanza_bytes <= options_.unacked_bytes_max - held_bytes_;
  }

  // `stanza` was written to the client. With stream management on it is
  // counted and held until acknowledged; returns kAckRequest when one is due
  // (write it after the stanza), else "". Off: does nothing, returns "".
  [[nodiscard]] std::string_view OnSent(std::string_view stanza, uint64_t now_ms);

  // Called on the connection's ticks: kAckRequest when stanzas have waited
  // unacknowledged for ack_request_after_ms since the last request, else ""
  // (always "" while detached: there is no stream to ask on).
  [[nodiscard]] std::string_view OnTick(uint64_t now_ms);

  // The client's <a h/>. Drops the stanzas it acknowledges and returns nullopt;
  // or, if h acknowledges more than was sent (or goes back), changes nothing
  // and returns the stream error XEP-0198 §6 says to close with:
  // undefined-condition with <handled-count-too-high h send-count/>.
  // Ignored while off (a session handed over may still read its client's
  // last acks; the client's <a/> before <enable/> is the session's to refuse).
  std::optional<StreamError> OnAck(uint32_t h);

  // Holds `stanza` for a client that is away, after every stanza held so far;
  // it is not sent or counted until TakePending() hands it out. Ask Admits()
  // first for a new stanza; one handed over at resumption is kept regardless.
  void Keep(std::string_view stanza);

  // The kept stanzas, oldest first, to send now (each then goes to OnSent);
  // their bytes no longer count.
  StanzaQueue TakePending();

  // What a session handed over takes to the connection that resumes it.
  struct Handover {
    // The stanzas to resend there, oldest first: those sent and not handled,
    // then those kept.
    StanzaQueue resend;
    // received() here: the h of <resumed h/>, and where counting goes on.
    uint32_t received = 0;
  };
  // On the connection holding a resumable session that the client resumes
  // elsewhere, saying it handled `h` of the stanzas sent to it: nullopt (and
  // nothing changed) if h is not plausible, as in OnAck. Otherwise what the new
  // connection takes, and this session gives everything up: it is no longer
  // enabled (counts nothing), holds nothing, and has no resumption id.
  // REQUIRES: resumable().
  std::optional<Handover> HandOver(uint32_t h);

  // On the connection resuming session `resumption_id`, once its holder handed
  // it over: stream management is on and resumable; the stanzas sent from now
  // on are counted from `h` (the client's count, from its <resume h/>: what it
  // handled is what the holder dropped), and the client's from `received` (the
  // holder's Handover::received). Kept stanzas stay kept.
  // REQUIRES: !enabled().
  void Resume(std::string resumption_id, uint32_t h, uint32_t received);

  // The connection dropped without the client closing its stream. True if the
  // session now waits to be resumed (it is resumable and resume_timeout_ms >
  // 0), until now_ms + resume_timeout_ms; false if it ends now (call End()).
  bool Detach(uint64_t now_ms);
  bool detached() const { return detached_; }
  // While detached: true once the time to resume is over (then call End()).
  bool ResumptionExpired(uint64_t now_ms) const {
    return detached_ && now_ms >= resume_deadline_ms_;
  }
  // A detached session must end before its time (replaced by a new session of
  // the same resource, account deleted, shutdown): it waits no more.
  void StopWaiting() { detached_ = false; }

  // What End() leaves the caller to do.
  struct Ended {
    // Every stanza held (sent and not acknowledged, then kept), oldest first:
    // each is answered to its sender, as for a resource that is unavailable
    // (XEP-0198 §4: the server's choice of error, alternate resource or
    // offline storage; stanzad has only the first).
    StanzaQueue unacknowledged;
    // The resumption id to withdraw, "" if the session was not resumable.
    std::string resumption_id;
  };
  // The session ends for good (clean close, expiry, replaced, deleted): it
  // holds nothing afterwards, is off and cannot be resumed.
  Ended End();

  bool enabled() const { return enabled_; }
  bool resumable() const { return !resumption_id_.empty(); }
  const std::string& resumption_id() const { return resumption_id_; }
  // Stanzas received from the client since enabled (mod 2^32): the server's h.
  uint32_t received() const { return received_; }
  // Stanzas sent since enabled (mod 2^32), and the client's last h.
  uint32_t sent() const { return sent_; }
  uint32_t acknowledged() const { return acknowledged_; }
  // Sent and not yet acknowledged; kept (not yet sent).
  size_t unacknowledged_count() const { return unacknowledged_.size(); }
  size_t pending_count() const { return pending_.size(); }
  // Bytes of every stanza held (unacknowledged and kept).
  size_t held_bytes() const { return held_bytes_; }

 private:
  // How many of the unacknowledged stanzas `h` acknowledges, or nullopt if it
  // claims more than were sent.
  std::optional<uint32_t> NewlyHandled(uint32_t h) const;
  void DropHandled(uint32_t count);

  const Options options_;
  bool enabled_ = false;
  bool detached_ = false;
  uint64_t resume_deadline_ms_ = 0;  // while detached_
  std::string resumption_id_;        // "" unless resumable
  uint32_t received_ = 0;            // mod 2^32
  uint32_t sent_ = 0;                // mod 2^32
  uint32_t acknowledged_ = 0;        // the client's last h, mod 2^32
  uint32_t sent_since_request_ = 0;
  uint64_t last_request_ms_ = 0;
  StanzaQueue unacknowledged_;  // sent_ - acknowledged_ of them, oldest first
  StanzaQueue pending_;         // kept while the client is away
  size_t held_bytes_ = 0;       // of both queues
};

}  // namespace stanzad::xmpp

#endif  // STANZAD_CORE_XMPP_STREAM_MANAGEMENT_H_
