// Diagnose(): what `stanzactl doctor dns` concludes from DNS answers.
#include "cmd/dns_doctor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "admin/node_commands.h"

namespace stanzad {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

DnsAnswers Good() {
  DnsAnswers answers;
  answers.srv["_xmpp-component._tcp"] = {{0, 0, 5223, "x1.example.com"},
                                         {0, 0, 5223, "x2.example.com"}};
  answers.srv["_xmpp-client._tcp"] = {{0, 0, 5222, "x1.example.com"}};
  answers.addresses["x1.example.com"] = {"10.0.0.1"};
  answers.addresses["x2.example.com"] = {"10.0.0.2", "fd00::2"};
  return answers;
}

TEST(DnsDoctorTest, GoodRecordsHaveNoProblems) {
  NodeFacts facts;
  facts.member_ips = {"10.0.0.1", "10.0.0.2"};
  const Diagnosis diagnosis = Diagnose("example.com", Good(), facts);
  EXPECT_TRUE(diagnosis.problems.empty()) << diagnosis.Text();
  EXPECT_THAT(diagnosis.Text(), HasSubstr("every cluster member (2) is a target"));
  EXPECT_THAT(diagnosis.Text(), HasSubstr("No problems found"));
}

TEST(DnsDoctorTest, EachProblemHasItsFix) {
  DnsAnswers answers = Good();
  answers.srv.erase("_xmpp-client._tcp");
  answers.srv_error["_xmpp-client._tcp"] = "Domain name not found";
  answers.srv["_xmpp-component._tcp"].push_back({0, 0, 5299, "x3.example.com"});
  NodeFacts facts;
  facts.member_ips = {"10.0.0.1", "10.0.0.2", "10.0.0.9"};
  const Diagnosis diagnosis = Diagnose("example.com", answers, facts);
  ASSERT_EQ(diagnosis.problems.size(), 4u) << diagnosis.Text();
  const std::string text = diagnosis.Text();
  EXPECT_THAT(text, HasSubstr("no SRV records for _xmpp-client._tcp.example.com (Domain name "
                              "not found)"));
  EXPECT_THAT(text, HasSubstr("x3.example.com, which has no A or AAAA record"));
  EXPECT_THAT(text, HasSubstr("to port 5299 but this node listens on 5223"));
  EXPECT_THAT(text, HasSubstr("cluster member 10.0.0.9 is not a target"));
  for (const std::string& problem : diagnosis.problems) {
    EXPECT_THAT(problem, HasSubstr("fix:"));
  }
  EXPECT_THAT(text, HasSubstr("4 problems found"));
}

TEST(DnsDoctorTest, AServerThatDoesNotAnswerIsNamedNotTheRecords) {
  DnsAnswers answers;
  answers.server = "127.0.0.1:1";
  answers.server_unreachable = "connection refused (nothing listens on that address and port)";
  answers.srv["_xmpp-component._tcp"] = {};
  answers.srv["_xmpp-client._tcp"] = {};
  NodeFacts facts;
  facts.member_ips = {"10.0.0.1"};
  const Diagnosis diagnosis = Diagnose("example.com", answers, facts);
  ASSERT_EQ(diagnosis.problems.size(), 1u) << diagnosis.Text();
  EXPECT_THAT(diagnosis.problems[0],
              HasSubstr("cannot reach the DNS server 127.0.0.1:1: connection refused"));
  EXPECT_THAT(diagnosis.problems[0], HasSubstr("fix: point --dns_server=IP[:PORT]"));
  EXPECT_THAT(diagnosis.Text(), Not(HasSubstr("no SRV records")));
  EXPECT_THAT(diagnosis.Text(), Not(HasSubstr("add one record per node")));
}

TEST(DnsDoctorTest, AServerThatFailsTheQueryIsNamedNotTheRecords) {
  DnsAnswers answers = Good();
  answers.server = "192.0.2.53:53";
  answers.srv["_xmpp-client._tcp"] = {};
  answers.srv_server_failure["_xmpp-client._tcp"] = "Server failure";
  const Diagnosis diagnosis = Diagnose("example.com", answers, NodeFacts{});
  ASSERT_EQ(diagnosis.problems.size(), 1u) << diagnosis.Text();
  EXPECT_THAT(diagnosis.problems[0],
              HasSubstr("the DNS server 192.0.2.53:53 could not look up "
                        "_xmpp-client._tcp.example.com (Server failure). fix:"));
  EXPECT_THAT(diagnosis.Text(), Not(HasSubstr("add one record per node")));
}

// The facts come from the daemon's `status --json`: read through Status() itself,
// with the listener labels the daemon gives, so that a change of either shows here.
std::string StatusJson(const NodeRuntimeStatus& status) {
  NodeConfig config;
  config.enabled = true;
  return ExecuteNodeCommand(admin::AdminRequest{{"status"}, true}, &config, status).response.output;
}

TEST(DnsDoctorTest, NodeFactsComeFromTheStatusListeners) {
  NodeRuntimeStatus status;
  status.serving = true;
  status.listeners = {"127.0.0.1:15223 (call bridges)", "127.0.0.1:15222 (clients, STARTTLS)",
                      "127.0.0.1:15224 (clients, direct TLS)"};
  const NodeFacts facts = NodeFactsFromStatusJson(StatusJson(status));
  EXPECT_EQ(facts.component_port, 15223);
  EXPECT_EQ(facts.c2s_port, 15222);
  EXPECT_TRUE(facts.c2s_served);
  EXPECT_EQ(facts.c2s_refused_reason, "");
}

// Before a certificate the client listener is still the node's client port: the
// records pointing at it are right, and the doctor says why clients are refused.
TEST(DnsDoctorTest, ClientsRefusedUntilACertificateIsANoteNotAProblem) {
  NodeRuntimeStatus status;
  status.serving = true;
  status.listeners = {"127.0.0.1:5223 (call bridges, TLS: refused, no certificate)",
                      "[::1]:21283 (clients, STARTTLS: refused, no certificate)"};
  status.tls_refused_reason = "this node has no \"certificate\"";
  const NodeFacts facts = NodeFactsFromStatusJson(StatusJson(status));
  EXPECT_EQ(facts.component_port, 5223);
  EXPECT_EQ(facts.c2s_port, 21283);
  EXPECT_TRUE(facts.c2s_served);
  EXPECT_EQ(facts.c2s_refused_reason, "this node has no \"certificate\"");

  DnsAnswers answers = Good();
  answers.srv["_xmpp-client._tcp"] = {{0, 0, 21283, "x1.example.com"}};
  const Diagnosis diagnosis = Diagnose("example.com", answers, facts);
  EXPECT_TRUE(diagnosis.problems.empty()) << diagnosis.Text();
  EXPECT_THAT(diagnosis.Text(),
              HasSubstr("ok: _xmpp-client._tcp.example.com is set; note: this stanzad refuses "
                        "clients until a certificate is set with stanzactl certs KEY CERT "
                        "[BUNDLE] (this node has no \"certificate\")\n"));
  EXPECT_THAT(diagnosis.Text(), Not(HasSubstr("does not serve clients yet")));
}

TEST(DnsDoctorTest, NoClientListenerIsSaid) {
  NodeRuntimeStatus status;
  status.serving = true;
  status.listeners = {"127.0.0.1:5223 (call bridges)"};
  const NodeFacts facts = NodeFactsFromStatusJson(StatusJson(status));
  EXPECT_FALSE(facts.c2s_served);
  const Diagnosis diagnosis = Diagnose("example.com", Good(), facts);
  EXPECT_THAT(diagnosis.Text(), HasSubstr("note: this stanzad does not serve clients yet"));
}

// What c-ares would take silently (junk as [::]:53, port 70000) is refused first,
// before anything is asked.
TEST(DnsDoctorTest, ADnsServerThatIsNotAnAddressIsRefused) {
  for (const std::string server :
       {"junk", "127.0.0.1:70000", "127.0.0.1:0", "127.0.0.1:", "127.0.0.1,127.0.0.2", "[::1",
        "[::1]x", "::1:53:99x", "127.0.0.1:5x", "127.0.0.1:+53", "127.0.0.1: 53", "127.0.0.1:53 ",
        "127.0.0.1:-53", "[::1]:+53", "127.0.0.1:4294967349"}) {
    const absl::StatusOr<DnsAnswers> answers = LookupXmppDns("example.com", server);
    ASSERT_FALSE(answers.ok()) << server;
    EXPECT_THAT(std::string(answers.status().message()),
                AllOf(HasSubstr("'" + server + "' is not an address"), HasSubstr("IP:PORT")))
        << server;
  }
}

}  // namespace
}  // namespace stanzad
