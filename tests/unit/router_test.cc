#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/router/client_routes.h"
#include "core/router/route_table.h"
#include "core/router/server_responder.h"

namespace stanzad::router {
namespace {

using ::testing::HasSubstr;
using xmpp::InspectStanza;
using xmpp::StanzaErrorCondition;

TEST(RelayedStanzaCheckerTest, AcceptsExactlyOneWellFormedStanza) {
  const auto IsOneStanza = [](std::string_view bytes, size_t bytes_max, std::string* why) {
    return xmpp::RelayedStanzaChecker(bytes_max).Check(bytes, why);
  };
  std::string why;
  EXPECT_TRUE(IsOneStanza("<message to='a@b' from='c@d'><body>hi</body></message>", 1024, &why))
      << why;
  EXPECT_TRUE(IsOneStanza("<iq type='get' id='1'/>", 1024, &why)) << why;
  for (const std::string_view bad : {
           std::string_view("not xml at all</stream:stream>"),
           std::string_view("<message/><message/>"),
           std::string_view("<message>"),
           std::string_view("<message><body></message>"),
           std::string_view("<stream:error/>"),
           std::string_view("<handshake>x</handshake>"),
           std::string_view("<!DOCTYPE x><message/>"),
           std::string_view("<message/>trailing"),
           std::string_view(""),
       }) {
    EXPECT_FALSE(IsOneStanza(bad, 1024, &why)) << bad;
    EXPECT_FALSE(why.empty()) << bad;
  }
  EXPECT_FALSE(
      IsOneStanza("<message><body>" + std::string(2000, 'x') + "</body></message>", 1024, &why));
  // One checker for a whole stream of relayed stanzas: a bad one does not spoil the next.
  xmpp::RelayedStanzaChecker checker(1024);
  for (int round = 0; round < 3; ++round) {
    EXPECT_TRUE(checker.Check("<message to='a@b'><body>1</body></message>", &why)) << why;
    EXPECT_FALSE(checker.Check("<message><body>", &why));
    EXPECT_TRUE(checker.Check("<presence/>", &why)) << why;
    EXPECT_FALSE(checker.Check("<iq/><iq/>", &why));
    EXPECT_FALSE(checker.Check("</message>", &why));
    EXPECT_TRUE(checker.Check("<iq type='get' id='2'><ping xmlns='urn:xmpp:ping'/></iq>", &why))
        << why;
  }
}

TEST(CanonicalDomainTest, ExtractsAndFoldsTheDomainpart) {
  // DomainIsOrUnder answers as CanonicalDomainOf would, without its copy.
  for (const char* jid :
       {"example.com", "EXAMPLE.com.", "cb1.example.com", "u@CB1.Example.COM/r/x@y",
        "a.b.example.com", "a&amp;b@example.com", "&#x65;xample.com", "xample.com",
        "badexample.com", ".example.com", "example.com.evil", "u@", "", "&bogus;",
        "a b.example.com", "u@v@example.com", "example.org", "com"}) {
    const std::string host = CanonicalDomainOf(jid);
    const bool expected = !host.empty() && (host == "example.com" ||
                                            (host.size() > 12 && host.ends_with(".example.com")));
    EXPECT_EQ(DomainIsOrUnder(jid, "example.com"), expected) << jid;
  }
  EXPECT_EQ(CanonicalDomainOf("cb1.example.com"), "cb1.example.com");
  EXPECT_EQ(CanonicalDomainOf("User@CB1.Example.com/Res/x@y"), "cb1.example.com");
  EXPECT_EQ(CanonicalDomainOf("example.com."), "example.com");
  EXPECT_EQ(CanonicalDomainOf("a&amp;b@example.com"), "example.com");
  EXPECT_EQ(CanonicalDomainOf(""), "");
  EXPECT_EQ(CanonicalDomainOf("user@"), "");
  EXPECT_EQ(CanonicalDomainOf("&bogus;"), "");
}

TEST(RouteTableTest, BindReplaceAndUnbind) {
  RouteTable table("example.com");
  EXPECT_EQ(table.Bind("cb1.example.com", 7), std::nullopt);
  EXPECT_EQ(table.Bind("cb1.example.com", 7), std::nullopt);
  EXPECT_EQ(table.Bind("cb1.example.com", 9), 7u);   // a reconnect displaces the old one
  EXPECT_FALSE(table.Unbind("cb1.example.com", 7));  // the old one's unbind is stale
  EXPECT_EQ(table.Find("cb1.example.com"), 9u);
  EXPECT_TRUE(table.Unbind("cb1.example.com", 9));
  EXPECT_EQ(table.Find("cb1.example.com"), std::nullopt);
}

TEST(RouteTableTest, RemoteRoutesLoseToLocalOnesAndGoWithTheirNode) {
  RouteTable table("example.com");
  table.BindRemote("cb1.example.com", 42);
  RouteDecision decision = table.Resolve("room@cb1.example.com/x");
  EXPECT_EQ(decision.kind, RouteKind::kRemote);
  EXPECT_EQ(decision.node, 42u);
  table.Bind("cb1.example.com", 7);  // the bridge connected here as well: here wins
  EXPECT_EQ(table.Resolve("cb1.example.com").kind, RouteKind::kComponent);
  table.Unbind("cb1.example.com", 7);
  EXPECT_EQ(table.Resolve("cb1.example.com").kind, RouteKind::kRemote);
  table.UnbindRemote("cb1.example.com", 43);  // another node's stale unbind
  EXPECT_EQ(table.Resolve("cb1.example.com").node, 42u);
  table.BindRemote("cb2.example.com", 42);
  table.BindRemote("cb3.example.com", 43);
  table.ForgetNode(42);
  EXPECT_EQ(table.Resolve("cb1.example.com").kind, RouteKind::kError);
  EXPECT_EQ(table.Resolve("cb2.example.com").kind, RouteKind::kError);
  EXPECT_EQ(table.Resolve("cb3.example.com").node, 43u);
  EXPECT_EQ(table.remote_size(), 1u);
}

// Addresses under the domain are kept by their label, the rest whole: none of them may
// stand for another, and a new domain keeps every binding.
TEST(RouteTableTest, KeysOfLabelsAndWholeAddressesNeverClash) {
  const std::string control = std::string("\x01") + "cb1.example.com";
  const std::vector<std::pair<std::string, uint64_t>> local = {
      {"cb1.example.com", 1},
      {"cb1", 2},                // a one-label domain, not "cb1.example.com"
      {"cb1.other.org", 3},      // another domain
      {"a.cb1.example.com", 4},  // two labels under ours
      {control, 5},
  };
  const std::vector<std::pair<std::string, uint64_t>> remote = {
      {"alice@example.com/phone", 6},  // a client's full JID
      {"cb1.example.com.", 7},
  };
  RouteTable table("example.com");
  for (const auto& [address, connection] : local) table.Bind(address, connection);
  for (const auto& [address, node] : remote) table.BindRemote(address, node);
  const auto expect_all_bound = [&](std::string_view when) {
    for (const auto& [address, connection] : local) {
      EXPECT_EQ(table.Find(address), connection) << address << " " << when;
    }
    for (const auto& [address, node] : remote) {
      EXPECT_EQ(table.FindRemote(address), node) << address << " " << when;
    }
    EXPECT_EQ(table.size(), local.size()) << when;
    EXPECT_EQ(table.remote_size(), remote.size()) << when;
  };
  expect_all_bound("before");
  EXPECT_EQ(table.Find("cb2.example.com"), std::nullopt);
  EXPECT_EQ(table.Find("example.com"), std::nullopt);
  EXPECT_EQ(table.Find(".example.com"), std::nullopt);
  EXPECT_EQ(table.FindRemote("cb1.example.com"), std::nullopt);

  table.set_server_domain("example.net");  // every binding keeps its address
  EXPECT_EQ(table.server_domain(), "example.net");
  expect_all_bound("after a new domain");
  EXPECT_EQ(table.Find("cb1.example.net"), std::nullopt);
  table.Bind("cb1.example.net", 8);
  EXPECT_EQ(table.Resolve("room@cb1.example.net/x").connection, 8u);
  EXPECT_TRUE(table.Unbind("cb1.example.com", 1));
  EXPECT_EQ(table.Find("cb1.example.net"), 8u);
  EXPECT_EQ(table.size(), local.size());
}

TEST(RouteTableTest, Resolve) {
  RouteTable table("example.com");
  table.Bind("cb1.example.com", 42);
  EXPECT_EQ(table.Resolve("example.com").kind, RouteKind::kServer);
  EXPECT_EQ(table.Resolve("EXAMPLE.com/x").kind, RouteKind::kServer);
  const RouteDecision bridge = table.Resolve("room@CB1.example.com/focus");
  EXPECT_EQ(bridge.kind, RouteKind::kComponent);
  EXPECT_EQ(bridge.connection, 42u);
  const RouteDecision offline = table.Resolve("cb2.example.com");
  EXPECT_EQ(offline.kind, RouteKind::kError);
  EXPECT_EQ(offline.error, StanzaErrorCondition::kServiceUnavailable);
  EXPECT_EQ(table.Resolve("other.org").error, StanzaErrorCondition::kRemoteServerNotFound);
  EXPECT_EQ(table.Resolve("notexample.com").error, StanzaErrorCondition::kRemoteServerNotFound);
  EXPECT_EQ(table.Resolve("@").error, StanzaErrorCondition::kJidMalformed);
}

TEST(ServerResponderTest, AnswersPing) {
  auto reply = AnswerServerStanza(
      InspectStanza("<iq type='get' from='cb1.example.com' to='example.com' id='p1'>"
                    "<ping xmlns='urn:xmpp:ping'/></iq>"),
      "example.com");
  ASSERT_TRUE(reply);
  EXPECT_EQ(*reply, "<iq from='example.com' to='cb1.example.com' type='result' id='p1'/>");
}

TEST(ServerResponderTest, AnswersDiscoInfo) {
  auto reply = AnswerServerStanza(
      InspectStanza("<iq type=\"get\" from=\"cb1.example.com\" to=\"example.com\" id=\"d'1\">"
                    "<query xmlns=\"http://jabber.org/protocol/disco#info\"/></iq>"),
      "example.com");
  ASSERT_TRUE(reply);
  EXPECT_THAT(*reply, HasSubstr("id='d&apos;1'"));
  EXPECT_THAT(*reply, HasSubstr("<feature var='urn:xmpp:ping'/>"));
}

TEST(ServerResponderTest, UnsupportedIqIsServiceUnavailable) {
  auto reply = AnswerServerStanza(
      InspectStanza("<iq type='set' from='cb1.example.com' to='example.com' id='s1'>"
                    "<query xmlns='jabber:iq:private'/></iq>"),
      "example.com");
  ASSERT_TRUE(reply);
  EXPECT_THAT(*reply, HasSubstr("<error type='cancel'><service-unavailable"));
}

TEST(ServerResponderTest, NoAnswerToResultsErrorsOrPresence) {
  EXPECT_FALSE(AnswerServerStanza(
      InspectStanza("<iq type='result' from='cb1.example.com' to='example.com' id='1'/>"),
      "example.com"));
  EXPECT_FALSE(AnswerServerStanza(
      InspectStanza("<message type='error' from='cb1.example.com' to='example.com'/>"),
      "example.com"));
  EXPECT_FALSE(AnswerServerStanza(
      InspectStanza("<presence from='cb1.example.com' to='example.com'/>"), "example.com"));
}

// RFC 6121 §8.5.1, for a bare and a full JID alike: IQ requests and messages are
// answered with service-unavailable, presence of every type is ignored, and so
// are errors and IQ results.
TEST(NoSuchUserTest, EveryStanzaKindToBareAndFullJids) {
  struct Case {
    std::string stanza;  // with TO where the address goes
    std::optional<StanzaErrorCondition> error;
  };
  const std::optional<StanzaErrorCondition> kServiceUnavailable =
      StanzaErrorCondition::kServiceUnavailable;
  const std::vector<Case> cases = {
      {"<iq type='get' to=TO id='1'><ping xmlns='urn:xmpp:ping'/></iq>", kServiceUnavailable},
      {"<iq type='get' to=TO id='1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
       kServiceUnavailable},
      {"<iq type='set' to=TO id='1'><query xmlns='jabber:iq:roster'/></iq>", kServiceUnavailable},
      {"<iq type='result' to=TO id='1'/>", std::nullopt},
      {"<iq type='error' to=TO id='1'><error type='cancel'/></iq>", std::nullopt},
      {"<iq to=TO id='1'><ping xmlns='urn:xmpp:ping'/></iq>", kServiceUnavailable},
      {"<iq type='bogus' to=TO id='1'/>", kServiceUnavailable},
      {"<message to=TO id='1'><body>x</body></message>", kServiceUnavailable},
      {"<message type='normal' to=TO id='1'/>", kServiceUnavailable},
      {"<message type='chat' to=TO id='1'><body>x</body></message>", kServiceUnavailable},
      {"<message type='headline' to=TO id='1'/>", kServiceUnavailable},
      {"<message type='groupchat' to=TO id='1'/>", kServiceUnavailable},
      {"<message type='bogus' to=TO id='1'/>", kServiceUnavailable},
      {"<message type='error' to=TO id='1'><error type='cancel'/></message>", std::nullopt},
      {"<presence to=TO/>", std::nullopt},
      {"<presence type='unavailable' to=TO/>", std::nullopt},
      {"<presence type='subscribe' to=TO id='1'/>", std::nullopt},
      {"<presence type='subscribed' to=TO/>", std::nullopt},
      {"<presence type='unsubscribe' to=TO/>", std::nullopt},
      {"<presence type='unsubscribed' to=TO/>", std::nullopt},
      {"<presence type='probe' to=TO/>", std::nullopt},
      {"<presence type='error' to=TO/>", std::nullopt},
  };
  for (const std::string to : {"'nobody@example.com'", "'nobody@example.com/res'"}) {
    for (const Case& c : cases) {
      std::string text = c.stanza;
      text.replace(text.find("TO"), 2, to);
      EXPECT_EQ(NoSuchUserError(InspectStanza(text)), c.error) << text;
    }
  }
}

TEST(NoSuchUserTest, TheErrorReadsAsForAnAccountWithoutResources) {
  // The reply is MakeErrorReply's, from the address as the sender wrote it, with
  // no text that would tell an unknown account from one that is offline.
  const xmpp::Stanza ping = InspectStanza(
      "<iq type='get' from='juliet@example.com/balcony' to='nobody@example.com/res' id='p1'>"
      "<ping xmlns='urn:xmpp:ping'/></iq>");
  const std::optional<StanzaErrorCondition> error = NoSuchUserError(ping);
  ASSERT_TRUE(error);
  EXPECT_EQ(xmpp::MakeErrorReply(ping, *error, "example.com"),
            "<iq from='nobody@example.com/res' to='juliet@example.com/balcony' type='error' "
            "id='p1'><error type='cancel'><service-unavailable "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
}

TEST(UserAddressTest, ParsesAddressesOfOurDomainWithTheirLocalpart) {
  std::optional<UserAddress> user = ParseUserAddress("Nobody@EXAMPLE.com/Res", "example.com");
  ASSERT_TRUE(user);
  EXPECT_EQ(user->bare, "nobody@example.com");
  EXPECT_EQ(user->resource, "Res");  // resources keep their case
  EXPECT_EQ(user->localpart(), "nobody");
  user = ParseUserAddress("&#x4E;obody@example.com", "example.com");  // as written in XML
  ASSERT_TRUE(user);
  EXPECT_EQ(user->localpart(), "nobody");
  EXPECT_FALSE(ParseUserAddress("example.com", "example.com"));  // the server itself
  EXPECT_FALSE(ParseUserAddress("nobody@cb1.example.com", "example.com"));
  EXPECT_FALSE(ParseUserAddress("nobody@other.org/res", "example.com"));
  EXPECT_FALSE(ParseUserAddress("@example.com", "example.com"));
}

TEST(ServerResponderTest, FirstChildNamespace) {
  EXPECT_EQ(FirstChildNamespace("<iq><ping xmlns='urn:xmpp:ping'/></iq>"), "urn:xmpp:ping");
  EXPECT_EQ(FirstChildNamespace("<iq/>"), "");
  EXPECT_EQ(FirstChildNamespace("<iq></iq>"), "");
  EXPECT_EQ(FirstChildNamespace("<iq>text</iq>"), "");
}

TEST(PresencePriorityTest, ASignedNumberInRangeOrZero) {
  const auto priority = [](std::string_view text) {
    return PresencePriority("<presence><priority>" + std::string(text) + "</priority></presence>");
  };
  EXPECT_EQ(PresencePriority("<presence/>"), 0);
  EXPECT_EQ(priority("5"), 5);
  EXPECT_EQ(priority("+5"), 5);
  EXPECT_EQ(priority("-5"), -5);
  EXPECT_EQ(priority("0"), 0);
  EXPECT_EQ(priority("0127"), 127);
  EXPECT_EQ(priority("127"), 127);
  EXPECT_EQ(priority("-128"), -128);
  for (std::string_view bad :
       {"128", "-129", "+128", "9999", "12345", "", "-", "+", "+-5", "--5", " 5", "5 ", "1e2"}) {
    EXPECT_EQ(priority(bad), 0) << '"' << bad << '"';
  }
}

}  // namespace
}  // namespace stanzad::router
