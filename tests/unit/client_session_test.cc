#include "core/xmpp/client_session.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/sasl/base64.h"
#include "core/sasl/credentials.h"
#include "core/sasl/scram.h"
#include "core/xmpp/stream_management.h"

namespace stanzad::xmpp {
namespace {

using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

constexpr std::string_view kHeader =
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
constexpr std::string_view kStartTls = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
constexpr std::string_view kBindBalcony =
    "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    "<resource>balcony</resource></bind></iq>";
constexpr std::string_view kMessage =
    "<message to='romeo@example.net' from='mallory@evil.example' type='chat'>"
    "<body>hi</body></message>";
constexpr std::string_view kStampedMessage =
    "<message from='juliet@example.com/balcony' to='romeo@example.net' type='chat'>"
    "<body>hi</body></message>";

const config::UserCredentials& JulietCredentials() {
  static const config::UserCredentials credentials =
      *sasl::MakeUserCredentials("pencil", "sha1-salt-16byte", "sha256-salt-16by");
  return credentials;
}

// Records everything the session asks for, and drives stream management's counts as
// RouterShard::ClientConnection does.
class RecordingDelegate : public ClientSession::Delegate {
 public:
  void Send(std::string_view bytes) override { sent.append(bytes); }
  std::string RandomBytes(size_t count) override {
    // Deterministic, and different on each call.
    ++random_calls;
    return std::string(count, static_cast<char>('A' + random_calls % 26));
  }
  void StartTls() override { ++tls_started; }
  std::optional<config::UserCredentials> CredentialsFor(std::string_view username) override {
    if (username == "juliet") return JulietCredentials();
    return std::nullopt;
  }
  void OnAuthentication(std::string_view username, bool ok, std::string_view condition) override {
    auth_log.push_back(Concat(username, ok ? ":ok" : ":", condition));
  }
  std::optional<std::string> RefuseAuthentication() override { return refusal; }
  void RequestBind(const jid::Jid& full_jid) override {
    ++bind_requests;
    if (defer_bind) {
      deferred_bind = full_jid.Full();
      return;
    }
    session->BindDone(Answer(full_jid.Full()));
  }
  absl::Status Answer(const std::string& full_jid) {
    if (taken.count(full_jid) != 0) return absl::AlreadyExistsError("taken");
    bound.push_back(full_jid);
    return absl::OkStatus();
  }
  std::string EnableStreamManagement(bool resume) override {
    sm_enables.push_back(resume);
    const std::string id = resume ? "sm-id-1" : "";
    sm->Enable(id, 0);
    return id;
  }
  void OnAcknowledged(uint32_t h) override { acks.push_back(h); }
  void OnAckRequested() override { Send(sm->Acknowledgement()); }
  void RequestResume(std::string_view previd, uint32_t h) override {
    resume_requests.push_back(Concat(previd, ":", std::to_string(h)));
  }
  void OnStanza(const Stanza& stanza) override {
    sm->OnReceived(stanza.kind);
    stanzas.emplace_back(stanza.bytes);
    if (stanza.from) stanza_froms.emplace_back(*stanza.from);
  }
  void OnStreamClosed(const StreamError* error) override {
    ++closed;
    if (error != nullptr) close_condition = std::string(StreamErrorConditionName(error->condition));
  }

  // What was sent since the last call.
  std::string TakeSent() {
    std::string out = sent.substr(taken_offset);
    taken_offset = sent.size();
    return out;
  }

  bool operator==(const RecordingDelegate& other) const {
    return sent == other.sent && tls_started == other.tls_started && auth_log == other.auth_log &&
           bound == other.bound && stanzas == other.stanzas && stanza_froms == other.stanza_froms &&
           closed == other.closed && close_condition == other.close_condition;
  }

  ClientSession* session = nullptr;  // the session this delegate serves
  // Movable, as the delegate is (RunScript returns it).
  std::unique_ptr<StreamManagement> sm =
      std::make_unique<StreamManagement>(StreamManagement::Options());
  std::optional<std::string> refusal;  // RefuseAuthentication's answer
  std::vector<bool> sm_enables;
  std::vector<uint32_t> acks;
  std::vector<std::string> resume_requests;
  bool defer_bind = false;  // answer RequestBind later (AnswerDeferredBind)
  std::string deferred_bind;
  int bind_requests = 0;
  std::string sent;
  size_t taken_offset = 0;
  int random_calls = 0;
  int tls_started = 0;
  std::vector<std::string> auth_log;
  std::set<std::string> taken;
  std::vector<std::string> bound;
  std::vector<std::string> stanzas;
  std::vector<std::string> stanza_froms;
  int closed = 0;
  std::string close_condition;
};

ClientSession::Options TestOptions() {
  ClientSession::Options options;
  options.domain = "example.com";
  options.unknown_user_salt_key = "a server secret of some length";
  return options;
}

std::string Auth(std::string_view mechanism, std::string_view message) {
  return Concat("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='", mechanism, "'>",
                message.empty() ? std::string("=") : sasl::Base64Encode(message), "</auth>");
}

std::string Response(std::string_view message) {
  return Concat("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>", sasl::Base64Encode(message),
                "</response>");
}

std::string PlainMessage(std::string_view user, std::string_view password) {
  return Concat(std::string_view("\0", 1), user, std::string_view("\0", 1), password);
}

// The decoded text of the last <NAME xmlns=...>base64</NAME> in `sent`.
std::string SaslData(std::string_view sent, std::string_view name) {
  const std::string open = Concat("<", name, " xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
  const size_t start = sent.rfind(open);
  if (start == std::string_view::npos) return "";
  const size_t end = sent.find('<', start + open.size());
  const std::optional<std::string> decoded =
      sasl::Base64Decode(sent.substr(start + open.size(), end - start - open.size()));
  return decoded.value_or("");
}

class ClientSessionTest : public ::testing::Test {
 protected:
  explicit ClientSessionTest(const ClientSession::Options& options = TestOptions())
      : session_(&delegate_, options) {
    delegate_.session = &session_;
  }

  void ToTls() {
    session_.OnBytes(kHeader);
    session_.OnBytes(kStartTls);
    ASSERT_EQ(session_.state(), ClientSession::State::kAwaitingTls);
    session_.TlsEstablished();
    session_.OnBytes(kHeader);
    ASSERT_EQ(session_.state(), ClientSession::State::kAwaitingAuth);
    delegate_.TakeSent();
  }

  void ToAuthenticated() {
    ToTls();
    session_.OnBytes(Auth("PLAIN", PlainMessage("juliet", "pencil")));
    session_.OnBytes(kHeader);
    ASSERT_EQ(session_.state(), ClientSession::State::kAwaitingBind);
    delegate_.TakeSent();
  }

  void ToBound() {
    ToAuthenticated();
    session_.OnBytes(kBindBalcony);
    ASSERT_EQ(session_.state(), ClientSession::State::kBound);
    delegate_.TakeSent();
  }

  RecordingDelegate delegate_;
  ClientSession session_;
};

TEST_F(ClientSessionTest, HappyPathWithScramSha256) {
  session_.OnBytes(kHeader);
  std::string sent = delegate_.TakeSent();
  EXPECT_THAT(sent, StartsWith("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                               "xmlns:stream='http://etherx.jabber.org/streams' id='"));
  EXPECT_THAT(sent, HasSubstr("from='example.com' version='1.0'"));
  EXPECT_THAT(sent, EndsWith("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                             "<required/></starttls></stream:features>"));
  const std::string first_id = session_.stream_id();
  EXPECT_EQ(first_id.size(), 32u);

  session_.OnBytes(kStartTls);
  EXPECT_EQ(delegate_.TakeSent(), "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
  EXPECT_EQ(delegate_.tls_started, 1);
  session_.TlsEstablished();

  session_.OnBytes(kHeader);
  sent = delegate_.TakeSent();
  EXPECT_NE(session_.stream_id(), first_id);
  EXPECT_THAT(sent,
              EndsWith("<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                       "<mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism>"
                       "<mechanism>PLAIN</mechanism></mechanisms></stream:features>"));

  absl::StatusOr<sasl::ScramClient> client = sasl::ScramClient::Create(
      {sasl::ScramMechanism::kSha256, "juliet", "pencil", "", "client-nonce-0123456789"});
  ASSERT_TRUE(client.ok()) << client.status();
  session_.OnBytes(Auth("SCRAM-SHA-256", client->client_first()));
  const std::string server_first = SaslData(delegate_.TakeSent(), "challenge");
  absl::StatusOr<std::string> client_final = client->HandleServerFirst(server_first);
  ASSERT_TRUE(client_final.ok()) << client_final.status() << " " << server_first;
  session_.OnBytes(Response(*client_final));
  sent = delegate_.TakeSent();
  EXPECT_THAT(sent, StartsWith("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"));
  EXPECT_TRUE(client->HandleServerFinal(SaslData(sent, "success")).ok());
  EXPECT_THAT(delegate_.auth_log, ElementsAre("juliet:ok"));
  EXPECT_EQ(session_.username(), "juliet");

  session_.OnBytes(kHeader);
  EXPECT_THAT(delegate_.TakeSent(),
              EndsWith("<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                       "<sm xmlns='urn:xmpp:sm:3'/></stream:features>"));
  EXPECT_EQ(session_.state(), ClientSession::State::kAwaitingBind);

  session_.OnBytes(kBindBalcony);
  sent = delegate_.TakeSent();
  EXPECT_EQ(sent,
            "<iq from='example.com' type='result' id='b1'>"
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<jid>juliet@example.com/balcony</jid></bind></iq>");
  EXPECT_THAT(delegate_.bound, ElementsAre("juliet@example.com/balcony"));
  ASSERT_TRUE(session_.full_jid().has_value());
  EXPECT_EQ(session_.full_jid()->Full(), "juliet@example.com/balcony");

  session_.OnBytes(kMessage);
  session_.OnBytes(" \n ");  // a whitespace keepalive
  session_.OnBytes("<presence/>");
  EXPECT_THAT(delegate_.stanzas, ElementsAre(std::string(kStampedMessage),
                                             "<presence from='juliet@example.com/balcony'/>"));
  EXPECT_THAT(delegate_.stanza_froms,
              ElementsAre("juliet@example.com/balcony", "juliet@example.com/balcony"));

  session_.OnBytes("</stream:stream>");
  EXPECT_EQ(delegate_.TakeSent(), "</stream:stream>");
  EXPECT_EQ(delegate_.closed, 1);
  EXPECT_EQ(delegate_.close_condition, "");
  EXPECT_EQ(session_.state(), ClientSession::State::kClosed);
}

// The scripted client of the happy path: what it sends in the clear, and over TLS.
struct Script {
  std::string plain;
  std::string tls;
};

Script HappyScript() {
  // The server nonce comes from the delegate's deterministic RandomBytes, so a
  // dry run yields the server-first message every later run will see.
  RecordingDelegate delegate;
  ClientSession session(&delegate, TestOptions());
  delegate.session = &session;
  absl::StatusOr<sasl::ScramClient> client = sasl::ScramClient::Create(
      {sasl::ScramMechanism::kSha256, "juliet", "pencil", "", "client-nonce-0123456789"});
  CHECK(client.ok());
  Script script;
  script.plain = Concat(kHeader, kStartTls);
  session.OnBytes(script.plain);
  session.TlsEstablished();
  const std::string auth = Auth("SCRAM-SHA-256", client->client_first());
  session.OnBytes(kHeader);
  session.OnBytes(auth);
  absl::StatusOr<std::string> client_final =
      client->HandleServerFirst(SaslData(delegate.sent, "challenge"));
  CHECK(client_final.ok());
  script.tls =
      Concat(kHeader, auth, Response(*client_final), kHeader, kBindBalcony, "\n", kMessage, " ",
             "<iq type='get' id='p1' to='example.com'>"
             "<ping xmlns='urn:xmpp:ping'/></iq>",
             "</stream:stream>");
  return script;
}

// Runs `script`, the clear part split at `plain_cuts` and the TLS part at `tls_cuts`.
RecordingDelegate RunScript(const Script& script, const std::vector<size_t>& plain_cuts,
                            const std::vector<size_t>& tls_cuts) {
  RecordingDelegate delegate;
  ClientSession session(&delegate, TestOptions());
  delegate.session = &session;
  auto feed = [&](std::string_view input, const std::vector<size_t>& cuts) {
    size_t at = 0;
    for (size_t cut : cuts) {
      session.OnBytes(std::string(input.substr(at, cut - at)));
      at = cut;
    }
    session.OnBytes(std::string(input.substr(at)));
  };
  feed(script.plain, plain_cuts);
  session.TlsEstablished();
  feed(script.tls, tls_cuts);
  return delegate;
}

TEST(ClientSessionSplitTest, HappyPathIsTheSameSplitAtEveryByte) {
  const Script script = HappyScript();
  const RecordingDelegate whole = RunScript(script, {}, {});
  EXPECT_THAT(whole.auth_log, ElementsAre("juliet:ok"));
  EXPECT_THAT(whole.bound, ElementsAre("juliet@example.com/balcony"));
  ASSERT_EQ(whole.stanzas.size(), 2u);
  EXPECT_EQ(whole.stanzas[0], kStampedMessage);
  EXPECT_THAT(whole.stanzas[1], StartsWith("<iq from='juliet@example.com/balcony' type='get'"));
  EXPECT_EQ(whole.closed, 1);
  EXPECT_EQ(whole.close_condition, "");
  for (size_t cut = 1; cut < script.plain.size(); ++cut) {
    ASSERT_EQ(RunScript(script, {cut}, {}), whole) << "clear part cut at " << cut;
  }
  for (size_t cut = 1; cut < script.tls.size(); ++cut) {
    ASSERT_EQ(RunScript(script, {}, {cut}), whole) << "TLS part cut at " << cut;
  }
  std::vector<size_t> every_plain, every_tls;
  for (size_t i = 1; i < script.plain.size(); ++i) every_plain.push_back(i);
  for (size_t i = 1; i < script.tls.size(); ++i) every_tls.push_back(i);
  EXPECT_EQ(RunScript(script, every_plain, every_tls), whole) << "one byte at a time";
}

TEST_F(ClientSessionTest, PlainSucceedsWithEmptySuccess) {
  ToTls();
  session_.OnBytes(Auth("PLAIN", PlainMessage("juliet", "pencil")));
  EXPECT_EQ(delegate_.TakeSent(), "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
  EXPECT_THAT(delegate_.auth_log, ElementsAre("juliet:ok"));
  EXPECT_EQ(session_.state(), ClientSession::State::kAwaitingHeader);
}

TEST_F(ClientSessionTest, AuthWithoutInitialResponseGetsEmptyChallenge) {
  ToTls();
  session_.OnBytes("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'/>");
  EXPECT_EQ(delegate_.TakeSent(), "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
  session_.OnBytes(Response(PlainMessage("juliet", "pencil")));
  EXPECT_EQ(delegate_.TakeSent(), "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
}

TEST_F(ClientSessionTest, WrongPasswordFailsAndTheClientMayRetry) {
  ToTls();
  session_.OnBytes(Auth("PLAIN", PlainMessage("juliet", "pencil2")));
  EXPECT_EQ(delegate_.TakeSent(),
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>");
  EXPECT_EQ(session_.state(), ClientSession::State::kAwaitingAuth);
  session_.OnBytes(Auth("PLAIN", PlainMessage("juliet", "pencil")));
  EXPECT_EQ(delegate_.TakeSent(), "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
  EXPECT_THAT(delegate_.auth_log, ElementsAre("juliet:not-authorized", "juliet:ok"));
}

TEST_F(ClientSessionTest, ScramWithWrongPasswordIsNotAuthorized) {
  ToTls();
  absl::StatusOr<sasl::ScramClient> client = sasl::ScramClient::Create(
      {sasl::ScramMechanism::kSha1, "juliet", "wrong", "", "client-nonce-0123456789"});
  ASSERT_TRUE(client.ok());
  session_.OnBytes(Auth("SCRAM-SHA-1", client->client_first()));
  absl::StatusOr<std::string> client_final =
      client->HandleServerFirst(SaslData(delegate_.TakeSent(), "challenge"));
  ASSERT_TRUE(client_final.ok());
  session_.OnBytes(Response(*client_final));
  EXPECT_EQ(delegate_.TakeSent(),
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>");
  EXPECT_EQ(session_.state(), ClientSession::State::kAwaitingAuth);
}

TEST_F(ClientSessionTest, TooManyFailuresArePolicyViolation) {
  ToTls();
  for (int i = 0; i < 3; ++i) session_.OnBytes(Auth("PLAIN", PlainMessage("juliet", "nope")));
  const std::string sent = delegate_.TakeSent();
  EXPECT_THAT(sent, HasSubstr("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"));
  EXPECT_THAT(sent, EndsWith("</stream:stream>"));
  EXPECT_EQ(delegate_.auth_log.size(), 3u);
  EXPECT_EQ(delegate_.close_condition, "policy-violation");
}

// The delegate's throttle: the login is not checked (the right password gets
// no <success/>), and it is no SASL failure of its own.
TEST_F(ClientSessionTest, RefusedAuthIsPolicyViolationUnchecked) {
  ToTls();
  delegate_.refusal = "too many failed attempts; try again later";
  session_.OnBytes(Auth("PLAIN", PlainMessage("juliet", "pencil")));
  const std::string sent = delegate_.TakeSent();
  EXPECT_THAT(sent, HasSubstr("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"));
  EXPECT_THAT(sent, HasSubstr("too many failed attempts; try again later"));
  EXPECT_THAT(sent, Not(HasSubstr("<success")));
  EXPECT_TRUE(delegate_.auth_log.empty());
  EXPECT_EQ(session_.state(), ClientSession::State::kClosed);
}

// SCRAM's proof comes in a <response/>: asked again there, since the address
// may have been blocked after the <auth/>.
TEST_F(ClientSessionTest, RefusalIsAskedAgainBeforeTheScramProof) {
  ToTls();
  absl::StatusOr<sasl::ScramClient> client = sasl::ScramClient::Create(
      {sasl::ScramMechanism::kSha1, "juliet", "pencil", "", "client-nonce-0123456789"});
  ASSERT_TRUE(client.ok());
  session_.OnBytes(Auth("SCRAM-SHA-1", client->client_first()));
  absl::StatusOr<std::string> client_final =
      client->HandleServerFirst(SaslData(delegate_.TakeSent(), "challenge"));
  ASSERT_TRUE(client_final.ok());
  delegate_.refusal = "too many failed attempts";
  session_.OnBytes(Response(*client_final));
  const std::string sent = delegate_.TakeSent();
  EXPECT_THAT(sent, HasSubstr("<policy-violation "));
  EXPECT_THAT(sent, Not(HasSubstr("<success")));
  EXPECT_EQ(delegate_.close_condition, "policy-violation");
}

TEST_F(ClientSessionTest, BadSaslInputIsAnsweredWithItsCondition) {
  ToTls();
  session_.OnBytes(
      "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGll dA==</auth>");
  EXPECT_THAT(delegate_.TakeSent(), HasSubstr("<incorrect-encoding/>"));
  session_.OnBytes(Auth("DIGEST-MD5", "x"));
  EXPECT_THAT(delegate_.TakeSent(), HasSubstr("<invalid-mechanism/>"));
  EXPECT_EQ(session_.state(), ClientSession::State::kAwaitingAuth);
}

TEST_F(ClientSessionTest, UnknownUserIsNotAuthorized) {
  ToTls();
  session_.OnBytes(Auth("PLAIN", PlainMessage("romeo", "pencil")));
  EXPECT_THAT(delegate_.TakeSent(), HasSubstr("<not-authorized/>"));
}

TEST_F(ClientSessionTest, StanzaBeforeTlsIsPolicyViolation) {
  session_.OnBytes(kHeader);
  session_.OnBytes(kMessage);
  EXPECT_EQ(delegate_.close_condition, "policy-violation");
  EXPECT_THAT(delegate_.stanzas, IsEmpty());
}

TEST_F(ClientSessionTest, AuthBeforeTlsIsPolicyViolation) {
  session_.OnBytes(kHeader);
  session_.OnBytes(Auth("PLAIN", PlainMessage("juliet", "pencil")));
  EXPECT_EQ(delegate_.close_condition, "policy-violation");
  EXPECT_THAT(delegate_.auth_log, IsEmpty());
}

TEST_F(ClientSessionTest, BytesAfterStartTlsInTheClearAreDiscarded) {
  session_.OnBytes(Concat(kHeader, kStartTls, kMessage));
  session_.OnBytes("garbage in the clear <");
  EXPECT_EQ(delegate_.tls_started, 1);
  EXPECT_EQ(delegate_.closed, 0);
  session_.TlsEstablished();
  session_.OnBytes(kHeader);
  EXPECT_EQ(session_.state(), ClientSession::State::kAwaitingAuth);
  EXPECT_THAT(delegate_.stanzas, IsEmpty());
}

TEST_F(ClientSessionTest, StanzaBeforeAuthIsNotAuthorized) {
  ToTls();
  session_.OnBytes(kMessage);
  EXPECT_EQ(delegate_.close_condition, "not-authorized");
  EXPECT_THAT(delegate_.stanzas, IsEmpty());
}

// The delegate may answer a bind later (the router asks other shards first):
// input that arrives meanwhile waits, in order, and nothing is answered early.
TEST_F(ClientSessionTest, DeferredBindHoldsLaterInputUntilAnswered) {
  ToAuthenticated();
  delegate_.defer_bind = true;
  session_.OnBytes(Concat(kBindBalcony, kMessage));
  EXPECT_EQ(session_.state(), ClientSession::State::kBinding);
  EXPECT_EQ(delegate_.deferred_bind, "juliet@example.com/balcony");
  EXPECT_EQ(delegate_.TakeSent(), "");
  session_.OnBytes("<presence/>");
  EXPECT_TRUE(delegate_.stanzas.empty());
  EXPECT_EQ(delegate_.bind_requests, 1);

  session_.BindDone(absl::OkStatus());
  EXPECT_EQ(session_.state(), ClientSession::State::kBound);
  EXPECT_THAT(delegate_.TakeSent(), HasSubstr("<jid>juliet@example.com/balcony</jid>"));
  EXPECT_THAT(delegate_.stanzas, ElementsAre(std::string(kStampedMessage),
                                             "<presence from='juliet@example.com/balcony'/>"));
  session_.BindDone(absl::OkStatus());  // a second answer changes nothing
  EXPECT_EQ(delegate_.TakeSent(), "");
}

TEST_F(ClientSessionTest, DeferredBindRefusedLetsTheClientTryAgain) {
  ToAuthenticated();
  delegate_.defer_bind = true;
  session_.OnBytes(kBindBalcony);
  session_.BindDone(absl::ResourceExhaustedError("too many resources"));
  EXPECT_EQ(session_.state(), ClientSession::State::kAwaitingBind);
  EXPECT_THAT(delegate_.TakeSent(), HasSubstr("<resource-constraint"));
  delegate_.defer_bind = false;
  session_.OnBytes(kBindBalcony);
  EXPECT_EQ(session_.state(), ClientSession::State::kBound);
}

TEST_F(ClientSessionTest, StanzaBeforeBindIsNotAuthorized) {
  ToAuthenticated();
  session_.OnBytes(kMessage);
  EXPECT_EQ(delegate_.close_condition, "not-authorized");
  EXPECT_THAT(delegate_.stanzas, IsEmpty());
}

TEST_F(ClientSessionTest, ResourceConflictIsAStanzaErrorAndTheClientMayRetry) {
  delegate_.taken.insert("juliet@example.com/balcony");
  ToAuthenticated();
  session_.OnBytes(kBindBalcony);
  const std::string sent = delegate_.TakeSent();
  EXPECT_THAT(sent, HasSubstr("type='error'"));
  EXPECT_THAT(sent, HasSubstr("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"));
  EXPECT_EQ(session_.state(), ClientSession::State::kAwaitingBind);
  session_.OnBytes(
      "<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
      "<resource>orchard</resource></bind></iq>");
  EXPECT_THAT(delegate_.TakeSent(), HasSubstr("<jid>juliet@example.com/orchard</jid>"));
  EXPECT_EQ(session_.state(), ClientSession::State::kBound);
}

TEST_F(ClientSessionTest, EmptyResourceIsGenerated) {
  ToAuthenticated();
  session_.OnBytes("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
  ASSERT_EQ(delegate_.bound.size(), 1u);
  EXPECT_THAT(delegate_.bound[0], StartsWith("juliet@example.com/"));
  EXPECT_EQ(delegate_.bound[0].size(), std::string("juliet@example.com/").size() + 16);
  EXPECT_EQ(session_.state(), ClientSession::State::kBound);
}

TEST_F(ClientSessionTest, InvalidResourceIsBadRequest) {
  ToAuthenticated();
  // Longer than RFC 7622's 1023 bytes.
  session_.OnBytes(
      Concat("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
             "<resource>",
             std::string(1024, 'r'), "</resource></bind></iq>"));
  EXPECT_THAT(delegate_.TakeSent(), HasSubstr("<bad-request"));
  EXPECT_EQ(session_.state(), ClientSession::State::kAwaitingBind);
}

TEST_F(ClientSessionTest, FromIsStampedWhateverTheClientWrote) {
  ToBound();
  session_.OnBytes("<message to=\"a@b\" from=\"x@y/z\"><body/></message>");
  session_.OnBytes("<iq id='1' type='get'><query xmlns='jabber:iq:roster'/></iq>");
  EXPECT_THAT(delegate_.stanzas,
              ElementsAre("<message from='juliet@example.com/balcony' to=\"a@b\"><body/></message>",
                          "<iq from='juliet@example.com/balcony' id='1' type='get'>"
                          "<query xmlns='jabber:iq:roster'/></iq>"));
}

TEST_F(ClientSessionTest, NonStanzaAfterBindIsUnsupportedStanzaType) {
  ToBound();
  session_.OnBytes("<foo xmlns='urn:example:foo'/>");
  EXPECT_EQ(delegate_.close_condition, "unsupported-stanza-type");
}

// XEP-0198: enable after bind, count handled stanzas, answer <r/>, pass <a/> on.
TEST_F(ClientSessionTest, StreamManagementCountsAndAcknowledges) {
  ToBound();
  session_.OnBytes("<r xmlns='urn:xmpp:sm:3'/>");  // before <enable/>
  EXPECT_THAT(delegate_.TakeSent(), HasSubstr("<unexpected-request "));
  session_.OnBytes("<message to='a@b'/>");  // not counted: SM is off
  session_.OnBytes("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
  EXPECT_EQ(delegate_.TakeSent(), "<enabled xmlns='urn:xmpp:sm:3' id='sm-id-1' resume='true'/>");
  EXPECT_TRUE(session_.stream_management());
  session_.OnBytes("<message to='a@b'/><presence/><iq type='get' id='1'/>");
  session_.OnBytes("<r xmlns='urn:xmpp:sm:3'/>");
  EXPECT_EQ(delegate_.TakeSent(), "<a xmlns='urn:xmpp:sm:3' h='3'/>");
  session_.OnBytes("<a xmlns='urn:xmpp:sm:3' h='7'/>");
  EXPECT_THAT(delegate_.acks, ElementsAre(7u));
  session_.OnBytes("<enable xmlns='urn:xmpp:sm:3'/>");  // twice
  EXPECT_THAT(delegate_.TakeSent(), HasSubstr("<unexpected-request "));
  session_.OnBytes("<a xmlns='urn:xmpp:sm:3' h='4294967296'/>");  // beyond 2^32 - 1
  EXPECT_EQ(delegate_.close_condition, "bad-format");
}

TEST_F(ClientSessionTest, EnableWithoutResumeHasNoId) {
  ToBound();
  session_.OnBytes("<enable xmlns='urn:xmpp:sm:3'/>");
  EXPECT_EQ(delegate_.TakeSent(), "<enabled xmlns='urn:xmpp:sm:3'/>");
  EXPECT_THAT(delegate_.sm_enables, ElementsAre(false));
}

TEST_F(ClientSessionTest, ResumeInsteadOfBind) {
  ToAuthenticated();
  session_.OnBytes("<enable xmlns='urn:xmpp:sm:3'/>");  // enable is for after bind
  EXPECT_THAT(delegate_.TakeSent(), HasSubstr("<unexpected-request "));
  session_.OnBytes("<resume xmlns='urn:xmpp:sm:3' previd='old-1' h='5'/><message to='a@b'/>");
  EXPECT_EQ(session_.state(), ClientSession::State::kResuming);
  EXPECT_THAT(delegate_.resume_requests, ElementsAre("old-1:5"));
  EXPECT_TRUE(delegate_.stanzas.empty());  // held until the answer
  delegate_.sm->Resume("old-1", 5, 12);    // the holder handed the session over
  session_.ResumeDone(*jid::Jid::Parse("juliet@example.com/balcony"), 12, "old-1");
  EXPECT_EQ(delegate_.TakeSent(), "<resumed xmlns='urn:xmpp:sm:3' previd='old-1' h='12'/>");
  EXPECT_EQ(session_.state(), ClientSession::State::kBound);
  EXPECT_THAT(delegate_.stanzas,
              ElementsAre("<message from='juliet@example.com/balcony' to='a@b'/>"));
  session_.OnBytes("<r xmlns='urn:xmpp:sm:3'/>");
  EXPECT_EQ(delegate_.TakeSent(), "<a xmlns='urn:xmpp:sm:3' h='13'/>");
}

TEST_F(ClientSessionTest, FailedResumeLetsTheClientBind) {
  ToAuthenticated();
  session_.OnBytes("<resume xmlns='urn:xmpp:sm:3' previd='gone' h='0'/>");
  session_.ResumeDone(std::nullopt, 0, "gone");
  EXPECT_THAT(delegate_.TakeSent(), HasSubstr("<failed xmlns='urn:xmpp:sm:3'><item-not-found "));
  session_.OnBytes(kBindBalcony);
  EXPECT_EQ(session_.state(), ClientSession::State::kBound);
  session_.OnBytes("<resume xmlns='urn:xmpp:sm:3' previd='x' h='-1'/>");  // after bind
  EXPECT_THAT(delegate_.TakeSent(), HasSubstr("<failed "));
}

// A <resume/> on a bound stream is a request out of order (XEP-0198 §6: <failed/>).
TEST_F(ClientSessionTest, ResumeAfterBindIsUnexpected) {
  ToBound();
  session_.OnBytes("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
  delegate_.TakeSent();
  session_.OnBytes("<resume xmlns='urn:xmpp:sm:3' previd='sm-id-1' h='0'/>");
  EXPECT_EQ(delegate_.TakeSent(),
            "<failed xmlns='urn:xmpp:sm:3'><unexpected-request "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>");
  EXPECT_TRUE(delegate_.resume_requests.empty());
  EXPECT_EQ(session_.state(), ClientSession::State::kBound);
}

class ClientSessionWithoutResumptionTest : public ClientSessionTest {
 protected:
  ClientSessionWithoutResumptionTest() : ClientSessionTest(Options()) {}
  static ClientSession::Options Options() {
    ClientSession::Options options = TestOptions();
    options.resumption = false;
    return options;
  }
};

// XEP-0198 §5: a server that does not resume streams answers <resume/> with
// <failed/> and feature-not-implemented; the client may bind instead.
TEST_F(ClientSessionWithoutResumptionTest, ResumeIsNotImplementedAndEnableOffersNoId) {
  ToAuthenticated();
  session_.OnBytes("<resume xmlns='urn:xmpp:sm:3' previd='old-1' h='5'/>");
  EXPECT_EQ(delegate_.TakeSent(),
            "<failed xmlns='urn:xmpp:sm:3'><feature-not-implemented "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>");
  EXPECT_TRUE(delegate_.resume_requests.empty());
  session_.OnBytes(kBindBalcony);
  ASSERT_EQ(session_.state(), ClientSession::State::kBound);
  delegate_.TakeSent();
  session_.OnBytes("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
  EXPECT_EQ(delegate_.TakeSent(), "<enabled xmlns='urn:xmpp:sm:3'/>");
  EXPECT_THAT(delegate_.sm_enables, ElementsAre(false));
}

TEST(ClientSessionHeaderTest, WrongToIsHostUnknownAfterOurHeader) {
  RecordingDelegate delegate;
  ClientSession session(&delegate, TestOptions());
  delegate.session = &session;
  session.OnBytes(
      "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
      "to='example.org' version='1.0'>");
  EXPECT_EQ(delegate.close_condition, "host-unknown");
  EXPECT_THAT(delegate.sent, StartsWith("<?xml version='1.0'?><stream:stream"));
  EXPECT_THAT(delegate.sent,
              HasSubstr("<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"));
  EXPECT_THAT(delegate.sent, Not(HasSubstr("features")));
  EXPECT_THAT(delegate.sent, EndsWith("</stream:stream>"));
}

TEST(ClientSessionHeaderTest, WithoutACertificateTheHeaderIsAnsweredWithTheReason) {
  RecordingDelegate delegate;
  ClientSession::Options options = TestOptions();
  options.tls_unavailable = "no certificate yet";
  ClientSession session(&delegate, options);
  delegate.session = &session;
  session.OnBytes(std::string(kHeader) + std::string(kStartTls));
  EXPECT_EQ(delegate.close_condition, "internal-server-error");
  EXPECT_EQ(session.state(), ClientSession::State::kClosed);
  EXPECT_THAT(delegate.sent, StartsWith("<?xml version='1.0'?><stream:stream"));
  EXPECT_THAT(delegate.sent,
              HasSubstr("<stream:error><internal-server-error "
                        "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text "
                        "xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no certificate yet</text>"));
  EXPECT_THAT(delegate.sent, Not(HasSubstr("features")));
  EXPECT_THAT(delegate.sent, Not(HasSubstr("proceed")));
  EXPECT_THAT(delegate.sent, EndsWith("</stream:stream>"));
}

TEST(ClientSessionHeaderTest, DirectTlsIgnoresTlsUnavailable) {
  RecordingDelegate delegate;
  ClientSession::Options options = TestOptions();
  options.direct_tls = true;  // TLS is already up: the certificate was there
  options.tls_unavailable = "no certificate yet";
  ClientSession session(&delegate, options);
  delegate.session = &session;
  session.OnBytes(kHeader);
  EXPECT_EQ(session.state(), ClientSession::State::kAwaitingAuth);
}

TEST(ClientSessionHeaderTest, ToIsCaseInsensitiveWithOptionalTrailingDot) {
  RecordingDelegate delegate;
  ClientSession session(&delegate, TestOptions());
  delegate.session = &session;
  session.OnBytes(
      "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
      "to='Example.COM.' version='1.0'>");
  EXPECT_EQ(session.state(), ClientSession::State::kAwaitingStartTls);
}

TEST(ClientSessionHeaderTest, WrongNamespaceIsInvalidNamespace) {
  RecordingDelegate delegate;
  ClientSession session(&delegate, TestOptions());
  delegate.session = &session;
  session.OnBytes(
      "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
      "to='example.com' version='1.0'>");
  EXPECT_EQ(delegate.close_condition, "invalid-namespace");
}

TEST(ClientSessionHeaderTest, MissingVersionIsUnsupportedVersion) {
  RecordingDelegate delegate;
  ClientSession session(&delegate, TestOptions());
  delegate.session = &session;
  session.OnBytes(
      "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
      "to='example.com'>");
  EXPECT_EQ(delegate.close_condition, "unsupported-version");
}

TEST(ClientSessionHeaderTest, MalformedXmlIsNotWellFormed) {
  RecordingDelegate delegate;
  ClientSession session(&delegate, TestOptions());
  delegate.session = &session;
  session.OnBytes(Concat(kHeader, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'></stls>"));
  EXPECT_EQ(delegate.close_condition, "not-well-formed");
  EXPECT_EQ(delegate.closed, 1);
  session.OnBytes(kStartTls);  // ignored once closed
  EXPECT_EQ(delegate.tls_started, 0);
}

TEST(ClientSessionHeaderTest, CommentIsRestrictedXml) {
  RecordingDelegate delegate;
  ClientSession session(&delegate, TestOptions());
  delegate.session = &session;
  session.OnBytes(Concat(kHeader, "<!-- hi -->"));
  EXPECT_EQ(delegate.close_condition, "restricted-xml");
}

}  // namespace
}  // namespace stanzad::xmpp
