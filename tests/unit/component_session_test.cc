#include "core/xmpp/component_session.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/xmpp/component_handshake.h"

namespace stanzad::xmpp {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Records everything the session asks for.
class RecordingDelegate : public ComponentSession::Delegate {
 public:
  std::optional<std::string> SecretFor(std::string_view address) override {
    if (address == "cb1.example.com") return std::string("secret-1234");
    return std::nullopt;
  }
  void Send(std::string_view bytes) override { sent.append(bytes); }
  void OnAuthenticated(std::string_view address) override {
    authenticated.emplace_back(address);
    if (session != nullptr) session->AcknowledgeHandshake();
  }
  void OnAuthenticationFailed(std::string_view address, StreamErrorCondition condition) override {
    failed.emplace_back(std::string(address) + ":" +
                        std::string(StreamErrorConditionName(condition)));
  }
  std::optional<std::string> RefuseAuthentication() override { return refusal; }
  void OnStanza(const Stanza& stanza) override { stanzas.emplace_back(stanza.bytes); }
  void OnStreamClosed(const StreamError* error) override {
    ++closed;
    if (error != nullptr) close_condition = std::string(StreamErrorConditionName(error->condition));
  }

  ComponentSession* session = nullptr;
  std::optional<std::string> refusal;  // RefuseAuthentication's answer
  std::string sent;
  std::vector<std::string> authenticated;
  std::vector<std::string> failed;
  std::vector<std::string> stanzas;
  int closed = 0;
  std::string close_condition;

  bool operator==(const RecordingDelegate& other) const {
    return sent == other.sent && authenticated == other.authenticated && failed == other.failed &&
           stanzas == other.stanzas && closed == other.closed &&
           close_condition == other.close_condition;
  }
};

constexpr std::string_view kStreamId = "3BF96D32";
constexpr std::string_view kHeader =
    "<stream:stream xmlns='jabber:component:accept' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.com'>";

std::string Handshake() {
  return "<handshake>" + ComponentHandshakeDigest(kStreamId, "secret-1234") + "</handshake>";
}

RecordingDelegate Drive(std::string_view input, size_t chunk = 0) {
  RecordingDelegate delegate;
  ComponentSession session(&delegate, std::string(kStreamId));
  delegate.session = &session;
  if (chunk == 0) chunk = input.size() + 1;
  for (size_t at = 0; at < input.size(); at += chunk) {
    std::string piece(input.substr(at, chunk));
    session.OnBytes(piece);
  }
  return delegate;
}

std::string ReadCapture() {
  std::ifstream in(std::string(STANZAD_SOURCE_DIR) + "/tests/data/streams/slixmpp_component.xml");
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

TEST(ComponentHandshakeTest, DigestIsLowercaseHexSha1OfIdAndSecret) {
  // From the slixmpp capture: stream id 3BF96D32, secret "secret-1234".
  EXPECT_EQ(ComponentHandshakeDigest("3BF96D32", "secret-1234"),
            "d961a96149ae575e67f770d96d87e6faed01ccfe");
  // SHA-1 of the empty string.
  EXPECT_EQ(ComponentHandshakeDigest("", ""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
}

TEST(ComponentSessionTest, SlixmppSessionAuthenticatesAndRoutesItsStanzas) {
  const std::string capture = ReadCapture();
  ASSERT_FALSE(capture.empty());
  const RecordingDelegate delegate = Drive(capture);
  EXPECT_THAT(delegate.authenticated, ElementsAre("cb1.example.com"));
  EXPECT_TRUE(delegate.failed.empty());
  ASSERT_EQ(delegate.stanzas.size(), 4u);
  EXPECT_THAT(delegate.stanzas[0], StartsWith("<message type=\"chat\""));
  EXPECT_THAT(delegate.stanzas[0], HasSubstr("Grüße aus Zürich"));
  EXPECT_THAT(delegate.stanzas[1], StartsWith("<presence"));
  EXPECT_THAT(delegate.stanzas[3], HasSubstr("urn:xmpp:ping"));
  EXPECT_THAT(delegate.sent, StartsWith("<?xml version='1.0'?><stream:stream "));
  EXPECT_THAT(delegate.sent, HasSubstr("id='3BF96D32' from='cb1.example.com'>"));
  EXPECT_THAT(delegate.sent, HasSubstr("<handshake/>"));
  EXPECT_EQ(delegate.closed, 1);
  EXPECT_EQ(delegate.close_condition, "");
  // The same however the bytes arrive.
  for (size_t chunk : {1, 2, 3, 7, 64}) {
    EXPECT_EQ(Drive(capture, chunk), delegate) << "chunk " << chunk;
  }
}

TEST(ComponentSessionTest, WrongSecretIsNotAuthorized) {
  const RecordingDelegate delegate =
      Drive(std::string(kHeader) + "<handshake>" + std::string(40, 'a') + "</handshake>");
  EXPECT_TRUE(delegate.authenticated.empty());
  EXPECT_THAT(delegate.failed, ElementsAre("cb1.example.com:not-authorized"));
  EXPECT_EQ(delegate.close_condition, "not-authorized");
  EXPECT_THAT(delegate.sent,
              HasSubstr("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"));
  EXPECT_THAT(delegate.sent, testing::EndsWith("</stream:stream>"));
}

TEST(ComponentSessionTest, EmptyHandshakeIsNotAuthorized) {
  EXPECT_EQ(Drive(std::string(kHeader) + "<handshake/>").close_condition, "not-authorized");
}

TEST(ComponentSessionTest, UnknownBridgeIsHostUnknownAfterOurHeader) {
  const RecordingDelegate delegate = Drive(
      "<stream:stream xmlns='jabber:component:accept' "
      "xmlns:stream='http://etherx.jabber.org/streams' to='cb9.example.com'>");
  EXPECT_EQ(delegate.close_condition, "host-unknown");
  EXPECT_THAT(delegate.failed, ElementsAre("cb9.example.com:host-unknown"));
  // RFC 6120 §4.9.1.3: the opening header goes out before the error.
  EXPECT_THAT(delegate.sent, StartsWith("<?xml version='1.0'?><stream:stream"));
  EXPECT_THAT(delegate.sent, HasSubstr("cb9.example.com"));
}

// The delegate's throttle: the handshake is not checked, so the answer says
// nothing about the guess, and it is no failure of its own.
TEST(ComponentSessionTest, RefusedHandshakeIsPolicyViolationUnchecked) {
  RecordingDelegate delegate;
  ComponentSession session(&delegate, std::string(kStreamId));
  delegate.session = &session;
  session.OnBytes(kHeader);
  delegate.refusal = "too many failed attempts; try again later";
  session.OnBytes(Handshake());  // the right secret
  EXPECT_TRUE(delegate.authenticated.empty());
  EXPECT_TRUE(delegate.failed.empty());
  EXPECT_EQ(delegate.close_condition, "policy-violation");
  EXPECT_THAT(delegate.sent, HasSubstr("too many failed attempts; try again later"));
  EXPECT_THAT(delegate.sent, testing::Not(HasSubstr("<handshake/>")));
}

TEST(ComponentSessionTest, RefusedHeaderIsPolicyViolationWithoutLookingTheBridgeUp) {
  RecordingDelegate delegate;
  delegate.refusal = "too many failed attempts";
  ComponentSession session(&delegate, std::string(kStreamId));
  session.OnBytes(
      "<stream:stream xmlns='jabber:component:accept' "
      "xmlns:stream='http://etherx.jabber.org/streams' to='cb9.example.com'>");
  EXPECT_EQ(delegate.close_condition, "policy-violation");
  EXPECT_TRUE(delegate.failed.empty());
  EXPECT_THAT(delegate.sent, testing::Not(HasSubstr("host-unknown")));
}

TEST(ComponentSessionTest, HeaderAddressIsCaseInsensitive) {
  const RecordingDelegate delegate = Drive(
      "<stream:stream xmlns='jabber:component:accept' "
      "xmlns:stream='http://etherx.jabber.org/streams' to='CB1.Example.COM.'>" +
      Handshake());
  EXPECT_THAT(delegate.authenticated, ElementsAre("cb1.example.com"));
}

TEST(ComponentSessionTest, ClientNamespaceIsInvalidNamespace) {
  EXPECT_EQ(Drive("<stream:stream xmlns='jabber:client' "
                  "xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.com'>")
                .close_condition,
            "invalid-namespace");
}

TEST(ComponentSessionTest, StanzaBeforeHandshakeIsNotAuthorized) {
  const RecordingDelegate delegate =
      Drive(std::string(kHeader) + "<message from='cb1.example.com' to='cb2.example.com'/>");
  EXPECT_EQ(delegate.close_condition, "not-authorized");
  EXPECT_TRUE(delegate.stanzas.empty());
}

TEST(ComponentSessionTest, ForeignFromIsInvalidFrom) {
  for (const char* from :
       {"cb2.example.com", "example.com", "a@cb1.example.com.evil", "x.cb1.example.com"}) {
    SCOPED_TRACE(from);
    const RecordingDelegate delegate = Drive(std::string(kHeader) + Handshake() +
                                             "<message from='" + from + "' to='cb2.example.com'/>");
    EXPECT_EQ(delegate.close_condition, "invalid-from");
    EXPECT_TRUE(delegate.stanzas.empty());
  }
  EXPECT_EQ(
      Drive(std::string(kHeader) + Handshake() + "<message to='cb2.example.com'/>").close_condition,
      "invalid-from");
}

TEST(ComponentSessionTest, FromAnyJidInTheBridgeDomainIsAccepted) {
  const RecordingDelegate delegate =
      Drive(std::string(kHeader) + Handshake() +
            "<message from='room1@cb1.example.com/focus' to='a@example.com'/>"
            "<presence from='CB1.example.com' to='b@example.com'/>"
            "<iq from='cb1.example.com/x' to='example.com' type='get' id='1'><ping "
            "xmlns='urn:xmpp:ping'/></iq>");
  EXPECT_EQ(delegate.stanzas.size(), 3u);
  EXPECT_EQ(delegate.closed, 0);
}

TEST(ComponentSessionTest, MissingToIsAStanzaErrorAndTheStreamStays) {
  const RecordingDelegate delegate =
      Drive(std::string(kHeader) + Handshake() +
            "<iq from='cb1.example.com' type='get' id='q1'><query/></iq>"
            "<message from='cb1.example.com' type='error'/>"
            "<message from='cb1.example.com' to='x@example.com'/>");
  EXPECT_THAT(delegate.sent,
              HasSubstr("<iq from='cb1.example.com' to='cb1.example.com' type='error' id='q1'>"
                        "<error type='modify'><jid-malformed "));
  // An error stanza is never answered with an error.
  EXPECT_EQ(delegate.sent.find("<message from"), std::string::npos);
  EXPECT_EQ(delegate.stanzas.size(), 1u);
  EXPECT_EQ(delegate.closed, 0);
}

TEST(ComponentSessionTest, NonStanzaElementIsUnsupportedStanzaType) {
  EXPECT_EQ(Drive(std::string(kHeader) + Handshake() + "<foo/>").close_condition,
            "unsupported-stanza-type");
}

TEST(ComponentSessionTest, XmlErrorsBecomeStreamErrors) {
  EXPECT_EQ(Drive(std::string(kHeader) + Handshake() +
                  "<message from='cb1.example.com' to='a@b'>&xxe;</message>")
                .close_condition,
            "restricted-xml");
  EXPECT_EQ(Drive("<?xml version='1.0'?><!DOCTYPE x>").close_condition, "restricted-xml");
  EXPECT_EQ(Drive(std::string(kHeader) + "<a></b>").close_condition, "not-well-formed");
}

TEST(ComponentSessionTest, ServerSideCloseWithConflict) {
  RecordingDelegate delegate;
  ComponentSession session(&delegate, std::string(kStreamId));
  delegate.session = &session;
  session.OnBytes(std::string(kHeader) + Handshake());
  ASSERT_EQ(session.state(), ComponentSession::State::kAuthenticated);
  session.CloseWithError(StreamErrorCondition::kConflict, "replaced by a newer connection");
  EXPECT_EQ(delegate.close_condition, "conflict");
  EXPECT_EQ(session.state(), ComponentSession::State::kClosed);
  session.OnBytes("<message from='cb1.example.com' to='a@b'/>");  // ignored once closed
  EXPECT_TRUE(delegate.stanzas.empty());
  EXPECT_EQ(delegate.closed, 1);
}

}  // namespace
}  // namespace stanzad::xmpp
