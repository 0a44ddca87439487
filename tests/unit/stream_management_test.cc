// xmpp::StreamManagement: the server's side of XEP-0198 (the client's stanzas
// counted, the stanzas sent to it held until acknowledged), driven by hand with
// explicit times and stanzas; what it returns is what goes on the wire or back
// to senders.
#include "core/xmpp/stream_management.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/xmpp/stream_error.h"

namespace stanzad::xmpp {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<std::string> Contents(const StanzaQueue& queue) {
  return std::vector<std::string>(queue.begin(), queue.end());
}

std::string Message(int id) { return "<message id='m" + std::to_string(id) + "'/>"; }

StreamManagement::Options SmallOptions() {
  StreamManagement::Options options;
  options.ack_request_every_stanzas = 3;
  options.ack_request_after_ms = 1'000;
  options.unacked_bytes_max = 100;
  return options;
}

// Sends `count` stanzas m<first>.. and returns the requests it asked to send after them.
std::string SendMessages(StreamManagement& sm, int first, int count, uint64_t now_ms = 0) {
  std::string requests;
  for (int i = first; i < first + count; ++i) requests += sm.OnSent(Message(i), now_ms);
  return requests;
}

TEST(StreamManagementTest, OffItCountsAndHoldsNothing) {
  StreamManagement sm(SmallOptions());
  EXPECT_FALSE(sm.enabled());
  EXPECT_EQ(SendMessages(sm, 1, 5), "");
  EXPECT_EQ(sm.sent(), 0u);
  EXPECT_EQ(sm.held_bytes(), 0u);
  EXPECT_EQ(sm.OnTick(1'000'000), "");
  // An <a/> before <enable/> is the session's to refuse; here it changes nothing.
  EXPECT_EQ(sm.OnAck(3), std::nullopt);
  // The client's stanzas before <enable/> do not count (XEP-0198 §4).
  sm.OnReceived(StanzaKind::kMessage);
  EXPECT_EQ(sm.received(), 0u);
  // Only a stanza bigger than the whole bound is refused.
  EXPECT_TRUE(sm.Admits(100));
  EXPECT_FALSE(sm.Admits(101));
}

TEST(StreamManagementTest, EnableWithoutIdIsNotResumable) {
  StreamManagement sm(SmallOptions());
  sm.Enable("", 0);
  EXPECT_TRUE(sm.enabled());
  EXPECT_FALSE(sm.resumable());
  EXPECT_EQ(sm.resumption_id(), "");
}

TEST(StreamManagementDeathTest, EnableTwiceIsAnInvariantViolation) {
  // The session answers a second <enable/> itself (<failed/>), so a second
  // Enable() is a bug in the caller, not input from the network.
  StreamManagement sm(SmallOptions());
  sm.Enable("id-1", 0);
  EXPECT_DEATH(sm.Enable("id-2", 0), "");
}

// XEP-0198 §4: the server's h counts the client's stanzas (message, presence, iq) from
// <enable/> on; what is not a stanza does not count, and <a h/> says the count.
TEST(StreamManagementTest, ReceivedStanzasCountFromEnable) {
  StreamManagement sm(SmallOptions());
  sm.OnReceived(StanzaKind::kIq);  // before <enable/>
  EXPECT_EQ(sm.Acknowledgement(), "<a xmlns='urn:xmpp:sm:3' h='0'/>");
  sm.Enable("", 0);
  EXPECT_EQ(sm.received(), 0u);
  sm.OnReceived(StanzaKind::kMessage);
  sm.OnReceived(StanzaKind::kPresence);
  sm.OnReceived(StanzaKind::kIq);
  sm.OnReceived(StanzaKind::kOther);  // not a stanza
  EXPECT_EQ(sm.received(), 3u);
  EXPECT_EQ(sm.Acknowledgement(), "<a xmlns='urn:xmpp:sm:3' h='3'/>");
  // Acknowledging what was sent to the client changes nothing of the count.
  (void)SendMessages(sm, 1, 2);
  ASSERT_EQ(sm.OnAck(2), std::nullopt);
  EXPECT_EQ(sm.received(), 3u);
  // A session that ended counts no more.
  (void)sm.End();
  sm.OnReceived(StanzaKind::kMessage);
  EXPECT_EQ(sm.received(), 3u);
}

TEST(StreamManagementTest, ReceivedCountWrapsAtTwoToTheThirtyTwo) {
  StreamManagement sm(SmallOptions());
  sm.Resume("id-1", 0, UINT32_MAX - 1);  // the holder had counted 2^32 - 2
  EXPECT_EQ(sm.Acknowledgement(), "<a xmlns='urn:xmpp:sm:3' h='4294967294'/>");
  for (int i = 0; i < 3; ++i) sm.OnReceived(StanzaKind::kMessage);
  EXPECT_EQ(sm.received(), 1u);
  EXPECT_EQ(sm.Acknowledgement(), "<a xmlns='urn:xmpp:sm:3' h='1'/>");
}

TEST(StreamManagementTest, AcknowledgementsDropWhatTheyCover) {
  StreamManagement sm(SmallOptions());
  sm.Enable("id-1", 0);
  EXPECT_TRUE(sm.resumable());
  EXPECT_EQ(sm.resumption_id(), "id-1");
  (void)SendMessages(sm, 1, 2);
  EXPECT_EQ(sm.sent(), 2u);
  EXPECT_EQ(sm.unacknowledged_count(), 2u);
  EXPECT_EQ(sm.held_bytes(), 2 * Message(1).size());
  EXPECT_EQ(sm.OnAck(1), std::nullopt);
  EXPECT_EQ(sm.acknowledged(), 1u);
  EXPECT_EQ(sm.unacknowledged_count(), 1u);
  EXPECT_EQ(sm.OnAck(1), std::nullopt);  // the same h again: nothing new
  EXPECT_EQ(sm.unacknowledged_count(), 1u);
  EXPECT_EQ(sm.OnAck(2), std::nullopt);
  EXPECT_EQ(sm.unacknowledged_count(), 0u);
  EXPECT_EQ(sm.held_bytes(), 0u);
}

// XEP-0198 §6: an h above the count sent ends the stream with undefined-condition
// and <handled-count-too-high h send-count/>.
TEST(StreamManagementTest, AckOfMoreThanWasSentIsTheXepStreamError) {
  StreamManagement sm(SmallOptions());
  sm.Enable("", 0);
  (void)SendMessages(sm, 1, 2);
  const std::optional<StreamError> error = sm.OnAck(5);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->condition, StreamErrorCondition::kUndefinedCondition);
  EXPECT_EQ(error->application_condition,
            "<handled-count-too-high xmlns='urn:xmpp:sm:3' h='5' send-count='2'/>");
  EXPECT_EQ(SerializeStreamError(*error),
            "<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>You acknowledged 5 stanzas, but "
            "only 2 were sent</text>"
            "<handled-count-too-high xmlns='urn:xmpp:sm:3' h='5' send-count='2'/></stream:error>");
  // Nothing changed: the stanzas are still held for their senders.
  EXPECT_EQ(sm.unacknowledged_count(), 2u);
  EXPECT_EQ(sm.acknowledged(), 0u);
}

TEST(StreamManagementTest, AckThatGoesBackIsRefusedToo) {
  StreamManagement sm(SmallOptions());
  sm.Enable("", 0);
  (void)SendMessages(sm, 1, 3);
  ASSERT_EQ(sm.OnAck(2), std::nullopt);
  // Acks arrive in order on one stream: an h below the last one is as wrong as one too
  // high, and its error says so (not "too high": it is not).
  const std::optional<StreamError> error = sm.OnAck(1);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->condition, StreamErrorCondition::kUndefinedCondition);
  EXPECT_EQ(error->text, "You acknowledged 1 stanzas after acknowledging 2: h never goes back");
  EXPECT_EQ(error->application_condition, "");
  EXPECT_EQ(sm.unacknowledged_count(), 1u);
  // One too high still carries XEP-0198 §6's element.
  const std::optional<StreamError> high = sm.OnAck(4);
  ASSERT_TRUE(high.has_value());
  EXPECT_EQ(high->application_condition,
            "<handled-count-too-high xmlns='urn:xmpp:sm:3' h='4' send-count='3'/>");
}

// The counts are modulo 2^32 (XEP-0198 §4): after 2^32 - 1 comes 0.
TEST(StreamManagementTest, CountsWrapAtTwoToTheThirtyTwo) {
  StreamManagement sm(SmallOptions());
  sm.Resume("id-1", UINT32_MAX - 1, 0);  // the client had handled 2^32 - 2
  (void)SendMessages(sm, 1, 4);          // numbered 2^32 - 1, 0, 1, 2
  EXPECT_EQ(sm.sent(), 2u);
  EXPECT_EQ(sm.unacknowledged_count(), 4u);
  EXPECT_EQ(sm.OnAck(UINT32_MAX), std::nullopt);
  EXPECT_EQ(sm.unacknowledged_count(), 3u);
  EXPECT_EQ(sm.OnAck(1), std::nullopt);  // across the wrap
  EXPECT_EQ(sm.unacknowledged_count(), 1u);
  const std::optional<StreamError> error = sm.OnAck(3);  // one past what was sent
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->application_condition,
            "<handled-count-too-high xmlns='urn:xmpp:sm:3' h='3' send-count='2'/>");
  EXPECT_EQ(sm.OnAck(2), std::nullopt);
  EXPECT_EQ(sm.unacknowledged_count(), 0u);
  EXPECT_EQ(sm.acknowledged(), 2u);
}

TEST(StreamManagementTest, AsksForAnAckEveryNStanzas) {
  StreamManagement sm(SmallOptions());
  sm.Enable("", 0);
  EXPECT_EQ(sm.OnSent(Message(1), 10), "");
  EXPECT_EQ(sm.OnSent(Message(2), 10), "");
  EXPECT_EQ(sm.OnSent(Message(3), 10), kAckRequest);
  EXPECT_EQ(SendMessages(sm, 4, 2), "");
  EXPECT_EQ(sm.OnSent(Message(6), 10), kAckRequest);
  // The count restarts after each request, acknowledged or not.
  ASSERT_EQ(sm.OnAck(6), std::nullopt);
  EXPECT_EQ(SendMessages(sm, 7, 2), "");
  EXPECT_EQ(sm.OnSent(Message(9), 10), kAckRequest);
}

TEST(StreamManagementTest, AsksForAnAckWhenStanzasWaitTooLong) {
  StreamManagement sm(SmallOptions());
  sm.Enable("", 5'000);
  EXPECT_EQ(sm.OnTick(7'000), "");  // nothing sent yet
  (void)SendMessages(sm, 1, 1, 5'100);
  EXPECT_EQ(sm.OnTick(5'999), "");  // under ack_request_after_ms since enabling
  EXPECT_EQ(sm.OnTick(6'000), kAckRequest);
  EXPECT_EQ(sm.OnTick(6'400), "");  // asked already; nothing sent since
  (void)SendMessages(sm, 2, 1, 6'500);
  EXPECT_EQ(sm.OnTick(6'999), "");  // measured from the last request
  EXPECT_EQ(sm.OnTick(7'000), kAckRequest);
  // Everything acknowledged: nothing to ask about.
  (void)SendMessages(sm, 3, 1, 7'000);
  ASSERT_EQ(sm.OnAck(3), std::nullopt);
  EXPECT_EQ(sm.OnTick(60'000), "");
}

TEST(StreamManagementTest, UnacknowledgedBytesAreBounded) {
  StreamManagement sm(SmallOptions());  // 100 bytes
  sm.Enable("", 0);
  const std::string forty(40, 'x');
  ASSERT_TRUE(sm.Admits(forty.size()));
  (void)sm.OnSent(forty, 0);
  ASSERT_TRUE(sm.Admits(forty.size()));
  (void)sm.OnSent(forty, 0);
  EXPECT_TRUE(sm.Admits(20));   // exactly at the bound
  EXPECT_FALSE(sm.Admits(21));  // one byte over: the caller bounces it
  sm.Keep(std::string(20, 'k'));
  EXPECT_EQ(sm.held_bytes(), 100u);
  EXPECT_FALSE(sm.Admits(1));
  EXPECT_TRUE(sm.Admits(0));
  // An acknowledgement makes room.
  ASSERT_EQ(sm.OnAck(1), std::nullopt);
  EXPECT_EQ(sm.held_bytes(), 60u);
  EXPECT_TRUE(sm.Admits(40));
  EXPECT_FALSE(sm.Admits(41));
}

TEST(StreamManagementTest, BeyondTheBoundNothingIsAdmitted) {
  // Stanzas handed over at resumption are kept without asking; then held bytes
  // may pass the bound, and nothing new gets in (no unsigned wrap in Admits).
  StreamManagement sm(SmallOptions());
  sm.Keep(std::string(90, 'a'));
  sm.Keep(std::string(30, 'b'));
  EXPECT_EQ(sm.held_bytes(), 120u);
  EXPECT_FALSE(sm.Admits(0));
  EXPECT_FALSE(sm.Admits(1));
}

TEST(StreamManagementTest, OnlyAResumableSessionWaitsForItsClient) {
  StreamManagement off(SmallOptions());
  EXPECT_FALSE(off.Detach(0));  // never enabled: it ends
  StreamManagement plain(SmallOptions());
  plain.Enable("", 0);
  EXPECT_FALSE(plain.Detach(0));  // not resumable: it ends
  EXPECT_FALSE(plain.detached());
  StreamManagement::Options no_wait = SmallOptions();
  no_wait.resume_timeout_ms = 0;
  StreamManagement resumable_but_no_time(no_wait);
  resumable_but_no_time.Enable("id-1", 0);
  EXPECT_FALSE(resumable_but_no_time.Detach(0));
}

TEST(StreamManagementTest, DetachedSessionWaitsUntilItsTimeIsOver) {
  StreamManagement::Options options = SmallOptions();
  options.resume_timeout_ms = 30'000;
  StreamManagement sm(options);
  sm.Enable("id-1", 0);
  (void)SendMessages(sm, 1, 2, 100);
  ASSERT_TRUE(sm.Detach(1'000));
  EXPECT_TRUE(sm.detached());
  EXPECT_EQ(sm.OnTick(20'000), "");  // no stream to ask on
  sm.Keep(Message(3));
  EXPECT_FALSE(sm.ResumptionExpired(30'999));
  EXPECT_TRUE(sm.ResumptionExpired(31'000));
  sm.StopWaiting();
  EXPECT_FALSE(sm.detached());
  EXPECT_FALSE(sm.ResumptionExpired(31'000));
  // Its stanzas, sent ones first, go back to their senders.
  EXPECT_THAT(Contents(sm.End().unacknowledged), ElementsAre(Message(1), Message(2), Message(3)));
}

TEST(StreamManagementTest, HandOverEndsTheWait) {
  StreamManagement sm(SmallOptions());
  sm.Enable("id-1", 0);
  (void)SendMessages(sm, 1, 1);
  ASSERT_TRUE(sm.Detach(0));
  ASSERT_TRUE(sm.HandOver(0).has_value());
  EXPECT_FALSE(sm.detached());
}

TEST(StreamManagementTest, KeptStanzasWaitUncountedUntilTaken) {
  StreamManagement sm(SmallOptions());
  sm.Keep(Message(1));
  sm.Keep(Message(2));
  EXPECT_EQ(sm.pending_count(), 2u);
  EXPECT_EQ(sm.sent(), 0u);
  const StanzaQueue pending = sm.TakePending();
  EXPECT_THAT(Contents(pending), ElementsAre(Message(1), Message(2)));
  EXPECT_EQ(sm.pending_count(), 0u);
  EXPECT_EQ(sm.held_bytes(), 0u);
}

TEST(StreamManagementTest, HandOverResendsWhatTheClientHasNotHandled) {
  StreamManagement sm(SmallOptions());
  sm.Enable("id-1", 0);
  (void)SendMessages(sm, 1, 3);
  ASSERT_EQ(sm.OnAck(1), std::nullopt);
  sm.OnReceived(StanzaKind::kMessage);
  sm.OnReceived(StanzaKind::kPresence);
  sm.Keep(Message(4));  // arrived while the client was away
  const std::optional<StreamManagement::Handover> handover = sm.HandOver(2);  // it saw m2 too
  ASSERT_TRUE(handover.has_value());
  EXPECT_THAT(Contents(handover->resend), ElementsAre(Message(3), Message(4)));
  EXPECT_EQ(handover->received, 2u);  // the client's two stanzas, for <resumed h/>
  // The session lives on elsewhere: nothing is left here to return, resume or count.
  EXPECT_FALSE(sm.enabled());
  sm.OnReceived(StanzaKind::kMessage);
  EXPECT_EQ(sm.received(), 2u);
  EXPECT_FALSE(sm.resumable());
  EXPECT_EQ(sm.held_bytes(), 0u);
  const StreamManagement::Ended ended = sm.End();
  EXPECT_THAT(Contents(ended.unacknowledged), IsEmpty());
  EXPECT_EQ(ended.resumption_id, "");
  EXPECT_EQ(sm.OnAck(7), std::nullopt);  // a late ack read on the old stream
}

TEST(StreamManagementTest, HandOverWithAnImplausibleHChangesNothing) {
  StreamManagement sm(SmallOptions());
  sm.Enable("id-1", 0);
  (void)SendMessages(sm, 1, 3);
  ASSERT_EQ(sm.OnAck(2), std::nullopt);
  EXPECT_EQ(sm.HandOver(4), std::nullopt);  // more than was sent
  EXPECT_EQ(sm.HandOver(1), std::nullopt);  // stale: below what it acknowledged
  EXPECT_TRUE(sm.resumable());
  EXPECT_EQ(sm.unacknowledged_count(), 1u);
  // The real count still works.
  const std::optional<StreamManagement::Handover> handover = sm.HandOver(2);
  ASSERT_TRUE(handover.has_value());
  EXPECT_THAT(Contents(handover->resend), ElementsAre(Message(3)));
}

TEST(StreamManagementTest, ResumedSessionCountsOnFromTheClientsH) {
  StreamManagement sm(SmallOptions());
  sm.Keep(Message(3));  // handed over before the route moved here
  sm.Resume("id-1", 7, 12);
  EXPECT_TRUE(sm.enabled());
  EXPECT_EQ(sm.resumption_id(), "id-1");
  EXPECT_EQ(sm.sent(), 7u);
  EXPECT_EQ(sm.acknowledged(), 7u);
  // The client's stanzas count on from the holder's count.
  EXPECT_EQ(sm.received(), 12u);
  sm.OnReceived(StanzaKind::kMessage);
  EXPECT_EQ(sm.Acknowledgement(), "<a xmlns='urn:xmpp:sm:3' h='13'/>");
  const StanzaQueue pending = sm.TakePending();
  for (const std::string& stanza : pending) (void)sm.OnSent(stanza, 0);
  (void)sm.OnSent(Message(4), 0);
  EXPECT_EQ(sm.sent(), 9u);
  EXPECT_TRUE(sm.OnAck(10).has_value());  // beyond 9
  EXPECT_EQ(sm.OnAck(9), std::nullopt);
  EXPECT_EQ(sm.held_bytes(), 0u);
}

TEST(StreamManagementTest, EndReturnsEverythingHeldOldestFirst) {
  StreamManagement sm(SmallOptions());
  sm.Enable("id-1", 0);
  (void)SendMessages(sm, 1, 3);
  ASSERT_EQ(sm.OnAck(1), std::nullopt);
  sm.Keep(Message(4));
  const StreamManagement::Ended ended = sm.End();
  EXPECT_THAT(Contents(ended.unacknowledged), ElementsAre(Message(2), Message(3), Message(4)));
  EXPECT_EQ(ended.resumption_id, "id-1");
  EXPECT_FALSE(sm.enabled());
  EXPECT_FALSE(sm.resumable());
  EXPECT_EQ(sm.held_bytes(), 0u);
  EXPECT_EQ(sm.unacknowledged_count(), 0u);
  // Ending twice returns nothing twice.
  const StreamManagement::Ended again = sm.End();
  EXPECT_THAT(Contents(again.unacknowledged), IsEmpty());
  EXPECT_EQ(again.resumption_id, "");
}

// Random sends, acks (right, too high, stale), keeps, takes and stanzas from the
// client against a plain model with 64-bit counts, starting just below the 2^32
// wrap; the state is compared after every event. Seeded: a failure names its seed
// and step.
TEST(StreamManagementTest, MatchesAModelOverRandomEvents) {
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    std::mt19937 random(seed);
    StreamManagement::Options options = SmallOptions();
    options.unacked_bytes_max = 400;
    StreamManagement sm(options);
    const uint64_t start = UINT32_MAX - 20;           // every run crosses 2^32
    const uint64_t start_received = UINT32_MAX - 10;  // crossed after ~11 of ~32
    sm.Resume("id", static_cast<uint32_t>(start), static_cast<uint32_t>(start_received));
    uint64_t received = start_received;
    uint64_t sent = start;
    uint64_t acknowledged = start;
    std::deque<std::string> unacknowledged;  // sent - acknowledged of them
    std::deque<std::string> pending;
    size_t bytes = 0;
    int next_id = 0;
    for (int step = 0; step < 300; ++step) {
      SCOPED_TRACE("seed " + std::to_string(seed) + " step " + std::to_string(step));
      const std::string stanza = Message(next_id++) + std::string(random() % 30, ' ');
      switch (random() % 7) {
        case 0:
        case 1:  // send, if it fits
          if (bytes + stanza.size() > options.unacked_bytes_max) {
            ASSERT_FALSE(sm.Admits(stanza.size()));
            break;
          }
          ASSERT_TRUE(sm.Admits(stanza.size()));
          (void)sm.OnSent(stanza, 0);
          unacknowledged.push_back(stanza);
          ++sent;
          bytes += stanza.size();
          break;
        case 2: {  // a right ack
          const uint64_t h = acknowledged + random() % (sent - acknowledged + 1);
          ASSERT_EQ(sm.OnAck(static_cast<uint32_t>(h)), std::nullopt);
          for (; acknowledged < h; ++acknowledged) {
            bytes -= unacknowledged.front().size();
            unacknowledged.pop_front();
          }
          break;
        }
        case 3: {  // too high, or stale: refused, nothing changes
          const bool stale = random() % 2 == 0 && acknowledged > start;
          const uint64_t h = stale ? acknowledged - 1 - random() % (acknowledged - start)
                                   : sent + 1 + random() % 5;
          ASSERT_TRUE(sm.OnAck(static_cast<uint32_t>(h)).has_value());
          break;
        }
        case 4:  // kept while away, if it fits
          if (bytes + stanza.size() > options.unacked_bytes_max) break;
          sm.Keep(stanza);
          pending.push_back(stanza);
          bytes += stanza.size();
          break;
        case 5: {  // the client is back: the kept ones go out
          const StanzaQueue taken = sm.TakePending();
          ASSERT_EQ(Contents(taken), std::vector<std::string>(pending.begin(), pending.end()));
          for (const std::string& kept : taken) {
            (void)sm.OnSent(kept, 0);
            unacknowledged.push_back(kept);
            ++sent;
          }
          pending.clear();
          break;
        }
        case 6: {  // from the client: a stanza counts, anything else does not
          const StanzaKind kind = static_cast<StanzaKind>(random() % 4);
          sm.OnReceived(kind);
          if (kind != StanzaKind::kOther) ++received;
          break;
        }
      }
      ASSERT_EQ(sm.received(), static_cast<uint32_t>(received));
      ASSERT_EQ(sm.sent(), static_cast<uint32_t>(sent));
      ASSERT_EQ(sm.acknowledged(), static_cast<uint32_t>(acknowledged));
      ASSERT_EQ(sm.unacknowledged_count(), unacknowledged.size());
      ASSERT_EQ(sm.pending_count(), pending.size());
      ASSERT_EQ(sm.held_bytes(), bytes);
      ASSERT_LE(sm.held_bytes(), options.unacked_bytes_max);
    }
    // However it ended, End() returns exactly what the model holds, in order.
    std::vector<std::string> held(unacknowledged.begin(), unacknowledged.end());
    held.insert(held.end(), pending.begin(), pending.end());
    EXPECT_EQ(Contents(sm.End().unacknowledged), held);
  }
}

TEST(StreamManagementTest, EmptyQueueHoldsNoMemory) {
  StanzaQueue queue;
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.begin(), queue.end());
  queue.emplace_back("a");
  queue.emplace_back("b");
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_EQ(queue.front(), "a");
  queue.pop_front();
  EXPECT_THAT(Contents(queue), ElementsAre("b"));
  queue.clear();
  EXPECT_TRUE(queue.empty());
}

}  // namespace
}  // namespace stanzad::xmpp
