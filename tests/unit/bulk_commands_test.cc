// stanzactl's imports, exports and paged lists (cmd/bulk_commands.h), against the node's
// real command handling (ExecuteNodeCommand on a configuration in memory) in place of the
// admin socket: chunks, the line named on a refusal, what is kept before it, and round
// trips through export.
#include "cmd/bulk_commands.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "admin/node_commands.h"
#include "core/base/concat.h"
#include "core/sasl/credentials.h"

namespace stanzad {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A node in memory answering stanzactl's requests as the daemon would.
class Node {
 public:
  Node() {
    (void)Run({"domain", "example.com"});
    io.send = [this](const admin::AdminRequest& request) {
      ++requests;
      largest_request = std::max(largest_request, admin::EncodeRequest(request).size());
      return absl::StatusOr<admin::AdminResponse>(
          ExecuteNodeCommand(request, &config, NodeRuntimeStatus()).response);
    };
    io.out = open_memstream(&out_buffer, &out_size);
    io.err = open_memstream(&err_buffer, &err_size);
    io.progress = false;
  }
  ~Node() {
    std::fclose(io.out);
    std::fclose(io.err);
    std::free(out_buffer);
    std::free(err_buffer);
  }

  admin::AdminResponse Run(std::vector<std::string> args) {
    return ExecuteNodeCommand({std::move(args), false}, &config, NodeRuntimeStatus()).response;
  }
  std::string Out() {
    std::fflush(io.out);
    return std::string(out_buffer, out_size);
  }
  std::string Err() {
    std::fflush(io.err);
    return std::string(err_buffer, err_size);
  }

  NodeConfig config;
  BulkIo io;
  size_t requests = 0;
  size_t largest_request = 0;

 private:
  char* out_buffer = nullptr;
  size_t out_size = 0;
  char* err_buffer = nullptr;
  size_t err_size = 0;
};

class BulkCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           Concat("bulk_commands_test.", std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  std::filesystem::path dir_;
};

std::string Bridges(int from, int to) {
  std::string text;
  for (int i = from; i < to; ++i)
    text += Concat("cb", std::to_string(i), " secret-", std::to_string(i), "\n");
  return text;
}

TEST(CallbridgeLineTest, PlainAndJsonLines) {
  using Pair = std::pair<std::string, std::string>;
  EXPECT_EQ(*ParseCallbridgeLine("  cb1\tkvgP1SRzWVabhiPVAb1 \r"),
            Pair("cb1", "kvgP1SRzWVabhiPVAb1"));
  EXPECT_EQ(*ParseCallbridgeLine(R"({"name":"cb1", "domain":"x", "secret":"a\"b\\c\u0041"})"),
            Pair("cb1", "a\"b\\cA"));
  EXPECT_FALSE(ParseCallbridgeLine("cb1").ok());
  EXPECT_FALSE(ParseCallbridgeLine("cb1 two words").ok());
  EXPECT_FALSE(ParseCallbridgeLine(R"({"name":"cb1"})").ok());
  EXPECT_FALSE(ParseCallbridgeLine(R"({"name":"cb1","secret":"s",})").ok());
  EXPECT_FALSE(ParseCallbridgeLine(R"({"name":"cb1","secret":"\ud800"})").ok());
  EXPECT_FALSE(ParseCallbridgeLine(R"({"name":"cb1","secret":"s")").ok());
}

TEST_F(BulkCommandsTest, ABigFileGoesInChunksAndAgainChangesNothing) {
  Node node;
  const std::string path = Write("bridges.txt", "# made by a test\n\n" + Bridges(0, 70'000));
  EXPECT_EQ(ImportCallbridges(path, false, node.io), 0) << node.Err();
  EXPECT_EQ(node.config.callbridges.size(), 70'000u);
  EXPECT_EQ(node.config.callbridges.at("cb69999"), "secret-69999");
  EXPECT_GE(node.requests, 2u);  // more than one chunk
  EXPECT_LE(node.largest_request, size_t{1} << 20);
  EXPECT_THAT(node.Out(), HasSubstr("Imported 70000 call bridges from"));
  EXPECT_THAT(node.Out(), HasSubstr("70000 added, 0 replaced, 0 unchanged"));
  EXPECT_EQ(ImportCallbridges(path, false, node.io), 0) << node.Err();
  EXPECT_THAT(node.Out(), HasSubstr("0 added, 0 replaced, 70000 unchanged"));
}

TEST_F(BulkCommandsTest, ARefusedLineIsNamedAndEverythingBeforeItIsKept) {
  Node node;
  ASSERT_EQ(node.Run({"callbridge", "add-secret", "cb30000", "--secret=the-old-secret"}).exit_code,
            0);
  // cb30000 has another secret: refused by the node, in the middle of a chunk.
  const std::string path = Write("bridges.txt", Bridges(0, 40'000));
  EXPECT_EQ(ImportCallbridges(path, false, node.io), 1);
  EXPECT_THAT(node.Err(), HasSubstr("bridges.txt:30001: call bridge cb30000 already has a "
                                    "different secret; use --force to replace it"));
  EXPECT_EQ(node.config.callbridges.size(), 30'001u);  // lines 1..30000, and cb30000 as it was
  EXPECT_EQ(node.config.callbridges.at("cb29999"), "secret-29999");
  EXPECT_EQ(node.config.callbridges.at("cb30000"), "the-old-secret");
  EXPECT_FALSE(node.config.callbridges.contains("cb30001"));
  EXPECT_THAT(node.Out(), StartsWith("Stopped after importing 30000 call bridges"));
  // With --force the rest goes in, and the secret is replaced.
  EXPECT_EQ(ImportCallbridges(path, true, node.io), 0) << node.Err();
  EXPECT_EQ(node.config.callbridges.size(), 40'000u);
  EXPECT_EQ(node.config.callbridges.at("cb30000"), "secret-30000");
}

TEST_F(BulkCommandsTest, AChunkRefusedForWantOfALeaderIsSentAgain) {
  Node node;
  node.io.retry_wait_ms = 0;
  const AdminSend real = node.io.send;
  int refusals = 3;  // an election: the leader lost mid-chunk, two answers without one
  node.io.send = [&](const admin::AdminRequest& request) -> absl::StatusOr<admin::AdminResponse> {
    if (request.args.size() >= 2 && request.args[1] == "import-batch" && refusals > 0) {
      --refusals;
      if (refusals == 2) {  // it may have committed: sent again, it changes nothing twice
        (void)real(request);
        return admin::AdminResponse{
            1,
            "error: the leader changed before the change was committed; run the command "
            "again\n"};
      }
      return admin::AdminResponse{1, "error: no leader now (no quorum?); try again\n"};
    }
    return real(request);
  };
  EXPECT_EQ(ImportCallbridges(Write("bridges.txt", Bridges(0, 10)), false, node.io), 0)
      << node.Err();
  EXPECT_EQ(node.config.callbridges.size(), 10u);
  EXPECT_THAT(node.Err(), HasSubstr("bridges.txt:1: error: no leader now (no quorum?); try "
                                    "again; sending it again in 0.0 s"));
  EXPECT_THAT(node.Err(), HasSubstr("bridges.txt:1: error: the leader changed before the change "
                                    "was committed"));
  // A leader that never comes back: the import stops, naming the first line not imported.
  refusals = 1000;
  EXPECT_EQ(ImportCallbridges(Write("more.txt", Bridges(10, 20)), false, node.io), 1);
  EXPECT_THAT(node.Err(), HasSubstr("more.txt:1: no leader now"));
  EXPECT_EQ(refusals, 1000 - 1 - kChunkRetries);
  EXPECT_EQ(node.config.callbridges.size(), 10u);
}

TEST_F(BulkCommandsTest, ABadLineStopsTheImportAfterTheLinesBeforeIt) {
  Node node;
  const std::string path = Write("bridges.txt", Bridges(0, 9) + "cb9 short\n" + Bridges(10, 20));
  EXPECT_EQ(ImportCallbridges(path, false, node.io), 1);
  EXPECT_THAT(node.Err(), HasSubstr("bridges.txt:10: secret must be 8 to 256 characters"));
  EXPECT_EQ(node.config.callbridges.size(), 9u);
  const std::string twice =
      Write("twice.txt", "cb1 secret-one1\ncb2 secret-two2\ncb1 secret-one1\n");
  EXPECT_EQ(ImportCallbridges(twice, false, node.io), 1);
  EXPECT_THAT(node.Err(), HasSubstr("twice.txt:3: call bridge cb1 is also on line 1"));
  EXPECT_EQ(ImportCallbridges((dir_ / "missing").string(), false, node.io), 1);
  EXPECT_THAT(node.Err(), HasSubstr("cannot read"));
}

TEST_F(BulkCommandsTest, BridgesRoundTripThroughJsonExport) {
  Node node;
  ASSERT_EQ(ImportCallbridges(Write("bridges.txt", Bridges(0, 12'000)), false, node.io), 0);
  const NodeConfig before = node.config;
  const size_t printed = node.Out().size();
  ASSERT_EQ(ExportCallbridges(true, node.io), 0);
  const std::string exported = node.Out().substr(printed);
  EXPECT_EQ(exported.substr(0, 35), "{\"name\":\"cb0\",\"secret\":\"secret-0\"}\n");
  Node other;
  ASSERT_EQ(ImportCallbridges(Write("exported.json", exported), false, other.io), 0) << other.Err();
  EXPECT_EQ(other.config.callbridges, before.callbridges);
}

TEST_F(BulkCommandsTest, ListsArePagedIntoOneDocument) {
  Node node;
  ASSERT_EQ(ImportCallbridges(Write("bridges.txt", Bridges(0, 12'000)), false, node.io), 0);
  const std::string imported = node.Out();
  const size_t before = node.requests;
  ASSERT_EQ(ListPaged("callbridge", true, node.io), 0);
  const std::string json = node.Out().substr(imported.size());
  EXPECT_EQ(node.requests - before, 3u);  // 12,000 in pages of 5,000
  EXPECT_THAT(json, StartsWith("[{\"name\":\"cb0\""));
  EXPECT_EQ(json.substr(json.size() - 3), "}]\n");
  size_t objects = 0;
  for (size_t at = json.find("\"name\""); at != std::string::npos;
       at = json.find("\"name\"", at + 1)) {
    ++objects;
  }
  EXPECT_EQ(objects, 12'000u);
  EXPECT_EQ(json.find(",,"), std::string::npos);
  EXPECT_EQ(json.find("]["), std::string::npos);
  // Empty: the daemon's own words.
  Node empty;
  ASSERT_EQ(ListPaged("user", false, empty.io), 0);
  EXPECT_THAT(empty.Out(), StartsWith("No users."));
}

TEST_F(BulkCommandsTest, UsersFromPasswordLinesAreHashedHere) {
  Node node;
  const std::string path = Write("users.txt",
                                 "alice pencil\n"
                                 "Bob@EXAMPLE.com correct horse battery staple\n"
                                 "# a comment\n");
  ASSERT_EQ(ImportUsers(path, false, 4096, node.io), 0) << node.Err();
  ASSERT_EQ(node.config.users.size(), 2u);  // names as JID localparts: "Bob" is bob
  EXPECT_TRUE(node.config.users.contains("alice"));
  EXPECT_TRUE(node.config.users.contains("bob"));
  const std::string bad = Write("bad.txt", "carol secret\ndave\nerin secret\n");
  EXPECT_EQ(ImportUsers(bad, false, 4096, node.io), 1);
  EXPECT_THAT(node.Err(), HasSubstr("bad.txt:2: user dave has no password"));
  EXPECT_TRUE(node.config.users.contains("carol"));
  EXPECT_FALSE(node.config.users.contains("erin"));
  const std::string other = Write("other.txt", "frank@example.org secret\n");
  EXPECT_EQ(ImportUsers(other, false, 4096, node.io), 1);
  EXPECT_THAT(node.Err(), HasSubstr("other.txt:1: frank@example.org is not in this node's domain"));
}

TEST_F(BulkCommandsTest, UsersOfEjabberdKeepTheirKeysAndRoundTripThroughXep0227) {
  Node node;
  ASSERT_EQ(node.Run({"domain", "scram-sha256.example"}).exit_code, 0);
  const std::string main =
      Concat(STANZAD_SOURCE_DIR, "/tests/unit/testdata/xep0227/ejabberd-23.01/20261207-022157.xml");
  ASSERT_EQ(ImportUsers(main, false, 4096, node.io), 0) << node.Err();
  EXPECT_THAT(node.Out(), HasSubstr("Imported 3 users"));
  EXPECT_THAT(node.Out(), HasSubstr("Skipped 9 users of other hosts than scram-sha256.example"));
  ASSERT_EQ(node.config.users.size(), 3u);
  EXPECT_TRUE(node.config.users.at("alice")->scram_sha256.has_value());
  const NodeConfig before = node.config;
  const size_t printed = node.Out().size();
  ASSERT_EQ(ExportUsers(node.io), 0) << node.Err();
  const std::string exported = node.Out().substr(printed);
  EXPECT_THAT(exported, HasSubstr("<host jid='scram-sha256.example'>"));
  Node other;
  ASSERT_EQ(other.Run({"domain", "scram-sha256.example"}).exit_code, 0);
  ASSERT_EQ(ImportUsers(Write("exported.xml", exported), false, 4096, other.io), 0) << other.Err();
  EXPECT_EQ(other.config.users, before.users);
}

TEST_F(BulkCommandsTest, APipeIsReadOnceAndALongLineIsNamed) {
  Node node;
  const std::string fifo = (dir_ / "pipe").string();
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] { std::ofstream(fifo) << "\n\nalice pencil\nbob pencil2\n"; });
  EXPECT_EQ(ImportUsers(fifo, false, 4096, node.io), 0) << node.Err();
  writer.join();
  EXPECT_EQ(node.config.users.size(), 2u);
  EXPECT_TRUE(node.config.users.contains("alice"));
  const std::string xml = (dir_ / "xml-pipe").string();
  ASSERT_EQ(mkfifo(xml.c_str(), 0600), 0);
  std::thread xml_writer([&] {
    std::ofstream(xml) << "  <server-data xmlns='urn:xmpp:pie:0'><host jid='example.com'>"
                          "<user name='carol' password='pencil'/></host></server-data>";
  });
  EXPECT_EQ(ImportUsers(xml, false, 4096, node.io), 0) << node.Err();
  xml_writer.join();
  EXPECT_TRUE(node.config.users.contains("carol"));
  const std::string big =
      Write("big.txt", "cb1 secret-one1\n" + std::string(70'000, 'x') + "\ncb3 secret-three\n");
  EXPECT_EQ(ImportCallbridges(big, false, node.io), 1);
  EXPECT_THAT(node.Err(), HasSubstr("big.txt:2: a line longer than 65536 bytes"));
  EXPECT_TRUE(node.config.callbridges.contains("cb1"));
  EXPECT_FALSE(node.config.callbridges.contains("cb3"));
  EXPECT_EQ(ImportCallbridges(dir_.string(), false, node.io), 1);
  EXPECT_THAT(node.Err(), HasSubstr("is a directory, not a file to import"));
}

TEST_F(BulkCommandsTest, ANameThatLooksLikeAnOptionIsANameAndTheLimitNamesItsLine) {
  Node node;
  EXPECT_EQ(ImportUsers(Write("dash.txt", "--foo password1\nbob p2\n"), false, 4096, node.io), 0)
      << node.Err();
  EXPECT_TRUE(node.config.users.contains("--foo"));
  EXPECT_EQ(node.Err().find("SCRAM-SHA"), std::string::npos);  // no keys echoed
  // 99,998 bridges: the third new one of the file is the one that does not fit.
  for (int i = 0; i < 99'998; ++i)
    node.config.callbridges[Concat("f", std::to_string(i))] = "s-12345678";
  EXPECT_EQ(ImportCallbridges(Write("more.txt", Bridges(0, 5)), false, node.io), 1);
  EXPECT_THAT(node.Err(), HasSubstr("more.txt:3: cannot add call bridge cb2"));
  EXPECT_EQ(node.config.callbridges.size(), 100'000u);  // the two lines before it went in
}

TEST_F(BulkCommandsTest, IncludesAreFollowedOnlyBesideTheFile) {
  Node node;
  const std::string host =
      "<host xmlns='urn:xmpp:pie:0' jid='example.com'><user name='ann' password='pencil'/></host>";
  Write("host.xml", host);
  const std::string main =
      Write("main.xml",
            "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'>"
            "<xi:include href='host.xml'/></server-data>");
  EXPECT_EQ(ImportUsers(main, false, 4096, node.io), 0) << node.Err();
  EXPECT_TRUE(node.config.users.contains("ann"));
  std::filesystem::create_directories(dir_ / "x");
  std::filesystem::create_symlink(dir_ / "host.xml", dir_ / "x" / "link.xml");
  Write("x/host2.xml", host);
  const std::string via_link =
      Write("x/main.xml",
            "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'>"
            "<xi:include href='link.xml'/></server-data>");
  EXPECT_EQ(ImportUsers(via_link, false, 4096, node.io), 1);
  EXPECT_THAT(node.Err(), HasSubstr("include 'link.xml' is not a file beside this one"));
  for (const char* href : {"/etc/passwd", "../host.xml", "sub/../../host.xml"}) {
    const std::string outside = Write(
        "outside.xml",
        Concat("<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'>"
               "<xi:include href='",
               href, "'/></server-data>"));
    EXPECT_EQ(ImportUsers(outside, false, 4096, node.io), 1) << href;
    EXPECT_THAT(node.Err(),
                HasSubstr(Concat("include '", href, "' is not a file beside this one")));
  }
}

}  // namespace
}  // namespace stanzad
