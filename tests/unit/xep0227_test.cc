// XEP-0227 import and export (core/config/xep0227.h): files written by the real ejabberd
// 23.01 and Prosody 0.12.3 of Debian 12 (tests/unit/testdata/xep0227/README.md) are read,
// and their users log in with their old passwords through stanzad's own SCRAM server; the
// writer's files read back to the same credentials; every byte split gives the same
// users; malformed files are errors naming the line and the user.
#include "core/config/xep0227.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/concat.h"
#include "core/config/config.h"
#include "core/sasl/base64.h"
#include "core/sasl/credentials.h"
#include "core/sasl/sasl_server.h"
#include "core/sasl/scram.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stanzad::config {
namespace {

using sasl::SaslStep;
using sasl::ScramMechanism;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::filesystem::path kTestdata =
    std::filesystem::path(STANZAD_SOURCE_DIR) / "tests/unit/testdata/xep0227";

// The accounts made on both servers (README.md), with their passwords.
struct KnownUser {
  std::string_view name;
  std::string_view password;
};
constexpr KnownUser kKnownUsers[] = {
    {"alice", "pencil"},
    {"bob", "correct horse battery staple"},
    {"carol", "P\xc3\xa4ssw\xc3\xb6rd<&>\"'"},  // "Pässwörd<&>\"'"
};

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

struct ReadResult {
  absl::Status status;
  std::vector<ImportedUser> users;
  std::vector<Xep0227Include> includes;
  uint64_t skipped_users = 0;
};

// Feeds `pieces` one after the other, draining users after each, then finishes.
ReadResult ReadPieces(const std::vector<std::string_view>& pieces,
                      Xep0227ReaderOptions options = Xep0227ReaderOptions()) {
  Xep0227Reader reader(std::move(options));
  ReadResult result;
  for (std::string_view piece : pieces) {
    result.status = reader.Feed(piece);
    while (std::optional<ImportedUser> user = reader.Next()) result.users.push_back(*user);
    if (!result.status.ok()) return result;
  }
  result.status = reader.Finish();
  while (std::optional<ImportedUser> user = reader.Next()) result.users.push_back(*user);
  result.includes = reader.includes();
  result.skipped_users = reader.skipped_users();
  return result;
}

ReadResult Read(std::string_view bytes, std::string_view domain = "") {
  Xep0227ReaderOptions options;
  options.domain = std::string(domain);
  return ReadPieces({bytes}, std::move(options));
}

// One complete SCRAM exchange between sasl::ScramClient (the user's client, knowing only
// the password) and sasl::ScramServer holding `credentials`: what a login does.
bool LogsIn(const UserCredentials& credentials, ScramMechanism mechanism, std::string_view name,
            std::string_view password) {
  sasl::ScramServer::Params server_params;
  server_params.mechanism = mechanism;
  server_params.lookup = [&](std::string_view username) -> std::optional<UserCredentials> {
    if (username != name) return std::nullopt;
    return credentials;
  };
  server_params.server_nonce = "server-nonce-0123456789";
  server_params.unknown_user_salt_key = std::string(32, 'k');
  sasl::ScramServer server(std::move(server_params));

  sasl::ScramClient::Params client_params;
  client_params.mechanism = mechanism;
  client_params.username = std::string(name);
  client_params.password = std::string(password);
  client_params.client_nonce = "client-nonce-0123456789";
  absl::StatusOr<sasl::ScramClient> client = sasl::ScramClient::Create(std::move(client_params));
  if (!client.ok()) return false;
  const SaslStep challenge = server.Step(client->client_first());
  if (challenge.kind != SaslStep::Kind::kChallenge) return false;
  absl::StatusOr<std::string> client_final = client->HandleServerFirst(challenge.data);
  if (!client_final.ok()) return false;
  const SaslStep outcome = server.Step(*client_final);
  if (outcome.kind != SaslStep::Kind::kSuccess) return false;
  return client->HandleServerFinal(outcome.data).ok() && server.succeeded();
}

// Each known user is in `users` with credentials for `mechanism` (and no other), and logs
// in with the old password and not with another.
void ExpectOldPasswordsWork(const std::vector<ImportedUser>& users, ScramMechanism mechanism,
                            uint32_t iterations) {
  ASSERT_EQ(users.size(), std::size(kKnownUsers));
  for (size_t i = 0; i < users.size(); ++i) {
    const ImportedUser& user = users[i];
    SCOPED_TRACE(user.name);
    EXPECT_EQ(user.name, kKnownUsers[i].name);
    ASSERT_TRUE(user.credentials.has_value());
    EXPECT_FALSE(user.password.has_value());
    const std::optional<ScramSecret>& secret = mechanism == ScramMechanism::kSha1
                                                   ? user.credentials->scram_sha1
                                                   : user.credentials->scram_sha256;
    const std::optional<ScramSecret>& other = mechanism == ScramMechanism::kSha1
                                                  ? user.credentials->scram_sha256
                                                  : user.credentials->scram_sha1;
    ASSERT_TRUE(secret.has_value());
    EXPECT_FALSE(other.has_value());
    EXPECT_EQ(secret->iteration_count, iterations);
    EXPECT_TRUE(LogsIn(*user.credentials, mechanism, user.name, kKnownUsers[i].password));
    EXPECT_FALSE(LogsIn(*user.credentials, mechanism, user.name, "not the password"));
  }
}

// --- Files from ejabberd 23.01 -----------------------------------------------------------

TEST(Xep0227EjabberdTest, ScramSha1UsersLogInWithTheirOldPasswords) {
  const ReadResult read =
      Read(ReadFile(kTestdata / "ejabberd-23.01/20261207-022157_scram-sha1_example.xml"));
  ASSERT_TRUE(read.status.ok()) << read.status;
  ExpectOldPasswordsWork(read.users, ScramMechanism::kSha1, 4096);
  for (const ImportedUser& user : read.users) {
    EXPECT_EQ(user.host, "scram-sha1.example");
    EXPECT_TRUE(user.double_base64);  // ejabberd 23.01's exporter
    EXPECT_EQ(user.credentials->scram_sha1->salt.size(), 16u);
    EXPECT_EQ(user.line, 1u);
  }
}

TEST(Xep0227EjabberdTest, ScramSha256UsersLogInWithTheirOldPasswords) {
  const ReadResult read =
      Read(ReadFile(kTestdata / "ejabberd-23.01/20261207-022157_scram-sha256_example.xml"));
  ASSERT_TRUE(read.status.ok()) << read.status;
  ExpectOldPasswordsWork(read.users, ScramMechanism::kSha256, 4096);
}

TEST(Xep0227EjabberdTest, ScramSha512OnlyUsersAreRefusedByLineAndName) {
  const ReadResult read =
      Read(ReadFile(kTestdata / "ejabberd-23.01/20261207-022157_scram-sha512_example.xml"));
  EXPECT_TRUE(read.users.empty());
  EXPECT_EQ(read.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status.message(), HasSubstr("line 1, column "));
  EXPECT_THAT(read.status.message(),
              HasSubstr("user \"alice\" (line 1): only SCRAM-SHA-512 credentials, which "
                        "stanzad cannot use"));
}

TEST(Xep0227EjabberdTest, PlainPasswordsAreHandedOverForHashing) {
  const ReadResult read =
      Read(ReadFile(kTestdata / "ejabberd-23.01/20261207-022157_plain_example.xml"));
  ASSERT_TRUE(read.status.ok()) << read.status;
  ASSERT_EQ(read.users.size(), std::size(kKnownUsers));
  for (size_t i = 0; i < read.users.size(); ++i) {
    const ImportedUser& user = read.users[i];
    EXPECT_EQ(user.name, kKnownUsers[i].name);
    EXPECT_FALSE(user.credentials.has_value());
    ASSERT_TRUE(user.password.has_value());
    EXPECT_EQ(*user.password, kKnownUsers[i].password);
    // What the import command does with it: hash it, as `stanzactl user add` does.
    absl::StatusOr<UserCredentials> hashed =
        sasl::MakeUserCredentials(*user.password, "salt-one-16bytes", "salt-two-16bytes");
    ASSERT_TRUE(hashed.ok()) << hashed.status();
    EXPECT_TRUE(LogsIn(*hashed, ScramMechanism::kSha256, user.name, kKnownUsers[i].password));
  }
}

TEST(Xep0227EjabberdTest, MainFileListsTheHostFilesToInclude) {
  const ReadResult read = Read(ReadFile(kTestdata / "ejabberd-23.01/20261207-022157.xml"));
  ASSERT_TRUE(read.status.ok()) << read.status;
  EXPECT_TRUE(read.users.empty());
  std::vector<std::string> hrefs;
  for (const Xep0227Include& include : read.includes) {
    EXPECT_EQ(include.host, "");
    hrefs.push_back(include.href);
  }
  EXPECT_THAT(hrefs, ElementsAre("20261207-022157_scram-sha1_example.xml",
                                 "20261207-022157_scram-sha256_example.xml",
                                 "20261207-022157_scram-sha512_example.xml",
                                 "20261207-022157_plain_example.xml"));
}

TEST(Xep0227EjabberdTest, UsersOfAnotherDomainAreSkippedAndCounted) {
  const std::string file =
      ReadFile(kTestdata / "ejabberd-23.01/20261207-022157_scram-sha1_example.xml");
  const ReadResult other = Read(file, "example.com");
  ASSERT_TRUE(other.status.ok()) << other.status;
  EXPECT_TRUE(other.users.empty());
  EXPECT_EQ(other.skipped_users, 3u);
  const ReadResult same = Read(file, "SCRAM-sha1.example");  // DNS names ignore case
  EXPECT_EQ(same.users.size(), 3u);
  EXPECT_EQ(same.skipped_users, 0u);
}

// --- Files from Prosody 0.12.3 (prosody-migrator, one file per user) ---------------------

TEST(Xep0227ProsodyTest, HashedUsersLogInWithTheirOldPasswords) {
  std::vector<ImportedUser> users;
  for (const KnownUser& known : kKnownUsers) {
    const ReadResult read =
        Read(ReadFile(kTestdata / "prosody-0.12.3" / Concat(known.name, "@hashed.example.xml")),
             "hashed.example");
    ASSERT_TRUE(read.status.ok()) << read.status;
    ASSERT_EQ(read.users.size(), 1u);
    EXPECT_FALSE(read.users[0].double_base64);
    // Prosody's salt is a UUID's text: 36 bytes.
    EXPECT_EQ(read.users[0].credentials->scram_sha1->salt.size(), 36u);
    users.push_back(read.users[0]);
  }
  ExpectOldPasswordsWork(users, ScramMechanism::kSha1, 10000);
}

TEST(Xep0227ProsodyTest, PlainPasswordsAreHandedOverForHashing) {
  for (const KnownUser& known : kKnownUsers) {
    const ReadResult read =
        Read(ReadFile(kTestdata / "prosody-0.12.3" / Concat(known.name, "@plain.example.xml")));
    ASSERT_TRUE(read.status.ok()) << read.status;
    ASSERT_EQ(read.users.size(), 1u);
    EXPECT_EQ(read.users[0].host, "plain.example");
    EXPECT_FALSE(read.users[0].credentials.has_value());
    EXPECT_EQ(read.users[0].password, std::string(known.password));
  }
}

// --- The writer --------------------------------------------------------------------------

UserCredentials CredentialsFor(std::string_view password, bool sha1, bool sha256) {
  UserCredentials credentials =
      *sasl::MakeUserCredentials(password, "sha1-salt-16byte", "sha256-salt-16by", 4096);
  if (!sha1) credentials.scram_sha1.reset();
  if (!sha256) credentials.scram_sha256.reset();
  return credentials;
}

std::string WriteFile(const std::vector<std::pair<std::string, UserCredentials>>& users,
                      ScramEncoding encoding) {
  std::string file;
  AppendXep0227Header("example.com", &file);
  for (const auto& [name, credentials] : users) {
    AppendXep0227User(name, credentials, encoding, &file);
  }
  AppendXep0227Footer(&file);
  return file;
}

class Xep0227WriterTest : public ::testing::TestWithParam<ScramEncoding> {};

TEST_P(Xep0227WriterTest, WrittenFilesReadBackToTheSameCredentials) {
  const std::vector<std::pair<std::string, UserCredentials>> users = {
      {"alice", CredentialsFor("pencil", true, true)},
      {"bob", CredentialsFor("secret", false, true)},
      {"carol", CredentialsFor("secret", true, false)},
      {"zo\xc3\xab", CredentialsFor("x", true, true)},  // "zoë": UTF-8 passes through
  };
  const std::string file = WriteFile(users, GetParam());
  const ReadResult read = Read(file, "example.com");
  ASSERT_TRUE(read.status.ok()) << read.status << "\n" << file;
  ASSERT_EQ(read.users.size(), users.size());
  for (size_t i = 0; i < users.size(); ++i) {
    EXPECT_EQ(read.users[i].name, users[i].first);
    EXPECT_EQ(read.users[i].credentials, users[i].second);
    EXPECT_FALSE(read.users[i].password.has_value());
    EXPECT_EQ(read.users[i].double_base64, GetParam() == ScramEncoding::kDoubleBase64);
    EXPECT_EQ(read.users[i].line, 4 + i);  // one user per line after the header
  }
  EXPECT_TRUE(LogsIn(*read.users[0].credentials, ScramMechanism::kSha1, "alice", "pencil"));
  EXPECT_TRUE(LogsIn(*read.users[0].credentials, ScramMechanism::kSha256, "alice", "pencil"));
}

INSTANTIATE_TEST_SUITE_P(BothEncodings, Xep0227WriterTest,
                         ::testing::Values(ScramEncoding::kXep0227, ScramEncoding::kDoubleBase64));

TEST(Xep0227WriterTest, WritesTheXepForm) {
  UserCredentials credentials;
  credentials.scram_sha1 = ScramSecret{.salt = "saltsalt",
                                       .iteration_count = 4096,
                                       .stored_key = std::string(20, 'a'),
                                       .server_key = std::string(20, 'b')};
  EXPECT_EQ(WriteFile({{"alice", credentials}}, ScramEncoding::kXep0227),
            "<?xml version='1.0' encoding='UTF-8'?>\n"
            "<server-data xmlns='urn:xmpp:pie:0'>\n"
            "<host jid='example.com'>\n"
            "<user name='alice'><scram-credentials xmlns='urn:xmpp:pie:0#scram' "
            "mechanism='SCRAM-SHA-1'><iter-count>4096</iter-count><salt>c2FsdHNhbHQ=</salt>"
            "<server-key>YmJiYmJiYmJiYmJiYmJiYmJiYmI=</server-key>"
            "<stored-key>YWFhYWFhYWFhYWFhYWFhYWFhYWE=</stored-key></scram-credentials></user>\n"
            "</host>\n"
            "</server-data>\n");
}

// --- Splitting and streaming -------------------------------------------------------------

void ExpectSameUsersAtEverySplit(const std::string& file) {
  const ReadResult whole = Read(file);
  ASSERT_TRUE(whole.status.ok()) << whole.status;
  for (size_t split = 0; split <= file.size(); ++split) {
    const std::string_view bytes(file);
    const ReadResult read = ReadPieces({bytes.substr(0, split), bytes.substr(split)});
    ASSERT_TRUE(read.status.ok()) << "split at " << split << ": " << read.status;
    ASSERT_EQ(read.users, whole.users) << "split at " << split;
  }
  std::vector<std::string_view> bytes_one_by_one;
  for (size_t i = 0; i < file.size(); ++i)
    bytes_one_by_one.push_back(std::string_view(file).substr(i, 1));
  const ReadResult read = ReadPieces(bytes_one_by_one);
  ASSERT_TRUE(read.status.ok()) << read.status;
  EXPECT_EQ(read.users, whole.users);
}

TEST(Xep0227SplitTest, EjabberdFileGivesTheSameUsersSplitAnywhere) {
  ExpectSameUsersAtEverySplit(
      ReadFile(kTestdata / "ejabberd-23.01/20261207-022157_scram-sha256_example.xml"));
  ExpectSameUsersAtEverySplit(
      ReadFile(kTestdata / "ejabberd-23.01/20261207-022157_plain_example.xml"));
}

TEST(Xep0227SplitTest, ProsodyFileGivesTheSameUsersSplitAnywhere) {
  ExpectSameUsersAtEverySplit(ReadFile(kTestdata / "prosody-0.12.3/carol@hashed.example.xml"));
}

// 100,000 users written and read in 64 KiB chunks, neither side holding the whole file: the
// writer's buffer is fed and cleared as it grows, as an export to a pipe would be.
TEST(Xep0227StreamTest, HundredThousandUsersStreamThroughChunks) {
  constexpr size_t kUsers = 100'000;
  constexpr size_t kChunkBytes = 64 * 1024;
  const UserCredentials credentials = CredentialsFor("pencil", true, true);
  Xep0227ReaderOptions options;
  options.domain = "example.com";
  Xep0227Reader reader(std::move(options));
  std::string buffer;
  size_t read_users = 0;
  size_t buffer_bytes_max = 0;
  auto drain = [&](bool all) {
    while (buffer.size() >= kChunkBytes || (all && !buffer.empty())) {
      const size_t take = std::min(buffer.size(), kChunkBytes);
      ASSERT_TRUE(reader.Feed(std::string_view(buffer).substr(0, take)).ok());
      buffer.erase(0, take);
      while (std::optional<ImportedUser> user = reader.Next()) {
        ASSERT_EQ(user->name, Concat("user", std::to_string(read_users)));
        ASSERT_EQ(user->credentials, credentials);
        ++read_users;
      }
    }
  };
  AppendXep0227Header("example.com", &buffer);
  for (size_t i = 0; i < kUsers; ++i) {
    AppendXep0227User(Concat("user", std::to_string(i)), credentials, ScramEncoding::kXep0227,
                      &buffer);
    buffer_bytes_max = std::max(buffer_bytes_max, buffer.size());
    drain(false);
  }
  AppendXep0227Footer(&buffer);
  drain(true);
  ASSERT_TRUE(reader.Finish().ok());
  EXPECT_EQ(read_users, kUsers);
  EXPECT_EQ(reader.users(), kUsers);
  EXPECT_LT(buffer_bytes_max, kChunkBytes + 1024);
}

// --- Malformed input ---------------------------------------------------------------------

constexpr std::string_view kHead = "<server-data xmlns='urn:xmpp:pie:0'><host jid='example.com'>\n";
constexpr std::string_view kTail = "\n</host></server-data>";
// SCRAM-SHA-1 of "pencil" with RFC 5802's salt.
constexpr std::string_view kGoodScram =
    "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>"
    "<iter-count>4096</iter-count><salt>QSXCR+Q6sek8bf92</salt>"
    "<server-key>D+CSWLOshSulAsxiupA+qs2/fTE=</server-key>"
    "<stored-key>6dlGYMOdZcOPutkcNY8U2g7vK9Y=</stored-key></scram-credentials>";

std::string Scram(std::string_view mechanism, std::string_view iterations, std::string_view salt,
                  std::string_view server_key, std::string_view stored_key) {
  return Concat("<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='", mechanism,
                "'><iter-count>", iterations, "</iter-count><salt>", salt, "</salt><server-key>",
                server_key, "</server-key><stored-key>", stored_key,
                "</stored-key></scram-credentials>");
}

std::string Repeat(std::string_view text, size_t times) {
  std::string out;
  for (size_t i = 0; i < times; ++i) out.append(text);
  return out;
}

struct MalformedCase {
  std::string_view what;
  std::string input;
  std::string_view message;  // a part of the error
};

std::vector<MalformedCase> MalformedCases() {
  const std::string key20 = "D+CSWLOshSulAsxiupA+qs2/fTE=";
  const std::string user = "<user name='alice'>";
  return {
      {"empty file", "", "line 1, column 1 (byte 0): not well-formed XML: no element found"},
      {"truncated", Concat(kHead, user, kGoodScram), "not well-formed XML: no element found"},
      {"not XML", "hello", "line 1, column 1 (byte 0): not well-formed XML: syntax error"},
      {"wrong root", "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>",
       "the root element <stream> in namespace \"http://etherx.jabber.org/streams\" is not"},
      {"root without namespace", "<server-data/>", "is not XEP-0227's <server-data/>"},
      {"DOCTYPE with entities",
       "<!DOCTYPE x [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;'>]>"
       "<server-data xmlns='urn:xmpp:pie:0'/>",
       "line 1, column 13 (byte 12): a DOCTYPE is not allowed"},
      {"host without jid", "<server-data xmlns='urn:xmpp:pie:0'><host/></server-data>",
       "a <host/> without jid"},
      {"user outside a host",
       "<server-data xmlns='urn:xmpp:pie:0'><user name='alice' password='x'/></server-data>",
       "line 1, column 37 (byte 36): a <user/> outside a <host/>: its domain is unknown"},
      {"user without name", Concat(kHead, "<user password='x'/>", kTail),
       "line 2, column 1 (byte 61): a <user/> without name"},
      {"name not canonical", Concat(kHead, "<user name='Alice' password='x'/>", kTail),
       "user \"Alice\" (line 2): user name \"Alice\" is not in canonical form; use \"alice\""},
      {"name not a localpart", Concat(kHead, "<user name='a@b' password='x'/>", kTail),
       "user \"a@b\" (line 2): user name \"a@b\""},
      {"no credentials", Concat(kHead, "\n<user name='alice'/>", kTail),
       "line 3, column 21 (byte 82): user \"alice\" (line 3): neither SCRAM-SHA-1 or SCRAM-SHA-256 "
       "credentials nor a password"},
      {"empty password", Concat(kHead, "<user name='alice' password=''/>", kTail),
       "user \"alice\" (line 2): an empty password"},
      {"password too long",
       Concat(kHead, "<user name='alice' password='", std::string(1025, 'x'), "'/>", kTail),
       "a password longer than 1024 bytes"},
      {"old ejabberd scram password",
       Concat(kHead, "<user name='alice' password='scram:abc,def,ghi,4096'/>", kTail),
       "the format of ejabberd before 21.12"},
      {"scram without mechanism",
       Concat(kHead, user, "<scram-credentials xmlns='urn:xmpp:pie:0#scram'/></user>", kTail),
       "a <scram-credentials/> without mechanism"},
      {"scram value missing",
       Concat(kHead, user,
              "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>"
              "<iter-count>4096</iter-count></scram-credentials></user>",
              kTail),
       "user \"alice\" (line 2): SCRAM-SHA-1: no <salt/>"},
      {"scram value twice",
       Concat(kHead, user,
              "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>"
              "<salt>QSXCR+Q6sek8bf92</salt><salt>QSXCR+Q6sek8bf92</salt></scram-credentials>"
              "</user>",
              kTail),
       "SCRAM-SHA-1: <salt/> twice"},
      {"element inside a value",
       Concat(kHead, user,
              "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>"
              "<salt><b/></salt></scram-credentials></user>",
              kTail),
       "SCRAM-SHA-1: an element inside <salt/>"},
      {"mechanism twice", Concat(kHead, user, kGoodScram, kGoodScram, "</user>", kTail),
       "SCRAM-SHA-1 credentials twice"},
      {"iterations not a number",
       Concat(kHead, user, Scram("SCRAM-SHA-1", "-1", "QSXCR+Q6sek8bf92", key20, key20), "</user>",
              kTail),
       "SCRAM-SHA-1: <iter-count/> \"-1\" is not a decimal number"},
      {"too few iterations",
       Concat(kHead, user, Scram("SCRAM-SHA-1", "1000", "QSXCR+Q6sek8bf92", key20, key20),
              "</user>", kTail),
       "SCRAM-SHA-1: 1000 iterations; stanzad accepts 4096 to 10000000"},
      {"stored key not base64",
       Concat(kHead, user, Scram("SCRAM-SHA-1", "4096", "QSXCR+Q6sek8bf92", key20, "not*base64"),
              "</user>", kTail),
       "SCRAM-SHA-1: <stored-key/> is not base64"},
      {"stored key of the wrong size",
       Concat(kHead, user, Scram("SCRAM-SHA-256", "4096", "QSXCR+Q6sek8bf92", key20, key20),
              "</user>", kTail),
       "SCRAM-SHA-256: <stored-key/> has 20 bytes, not 32"},
      {"server key not base64",
       Concat(kHead, user, Scram("SCRAM-SHA-1", "4096", "QSXCR+Q6sek8bf92", "%%", key20), "</user>",
              kTail),
       "SCRAM-SHA-1: <server-key/> is not base64"},
      {"server key of the wrong size",
       Concat(kHead, user, Scram("SCRAM-SHA-1", "4096", "QSXCR+Q6sek8bf92", "AAAA", key20),
              "</user>", kTail),
       "SCRAM-SHA-1: <server-key/> has 3 bytes, not 20"},
      {"salt too short",
       Concat(kHead, user, Scram("SCRAM-SHA-1", "4096", "AAAA", key20, key20), "</user>", kTail),
       "SCRAM-SHA-1: a salt of 3 bytes; stanzad accepts 8 to 128"},
      // Longer than a secret holds inline (config::ScramSecret): refused, never assigned.
      {"salt too long",
       Concat(kHead, user,
              Scram("SCRAM-SHA-1", "4096", sasl::Base64Encode(std::string(129, 's')), key20, key20),
              "</user>", kTail),
       "SCRAM-SHA-1: a salt of 129 bytes; stanzad accepts 8 to 128"},
      {"salt too long, double base64",
       Concat(kHead, user,
              Scram("SCRAM-SHA-1", "4096",
                    sasl::Base64Encode(sasl::Base64Encode(std::string(255, 's'))),
                    sasl::Base64Encode(key20), sasl::Base64Encode(key20)),
              "</user>", kTail),
       "SCRAM-SHA-1: a salt of 255 bytes; stanzad accepts 8 to 128"},
      {"keys of 33 bytes",
       Concat(kHead, user,
              Scram("SCRAM-SHA-256", "4096", "QSXCR+Q6sek8bf92",
                    sasl::Base64Encode(std::string(33, 'k')),
                    sasl::Base64Encode(std::string(33, 'k'))),
              "</user>", kTail),
       "SCRAM-SHA-256: <stored-key/> has 33 bytes, not 32"},
      {"server key of 33 bytes",
       Concat(kHead, user,
              Scram("SCRAM-SHA-256", "4096", "QSXCR+Q6sek8bf92",
                    sasl::Base64Encode(std::string(33, 'k')),
                    sasl::Base64Encode(std::string(32, 'k'))),
              "</user>", kTail),
       "SCRAM-SHA-256: <server-key/> has 33 bytes, not 32"},
      {"double base64 keys, single base64 salt",
       Concat(kHead, user,
              Scram("SCRAM-SHA-1", "4096", "QSXCR+Q6sek8bf92",
                    "RCtDU1dMT3NoU3VsQXN4aXVwQStxczIvZlRFPQ==",
                    "RCtDU1dMT3NoU3VsQXN4aXVwQStxczIvZlRFPQ=="),
              "</user>", kTail),
       "SCRAM-SHA-1: <salt/> is not base64 of base64, as <stored-key/> is"},
      {"scram value too long",
       Concat(kHead, user, Scram("SCRAM-SHA-1", "4096", std::string(2000, 'A'), key20, key20),
              "</user>", kTail),
       "SCRAM-SHA-1: <salt/> longer than 1024 bytes"},
      {"only an unusable mechanism",
       Concat(kHead, user,
              "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA3-512'/>"
              "</user>",
              kTail),
       "user \"alice\" (line 2): only SCRAM-SHA3-512 credentials, which stanzad cannot use"},
      {"too deep", Concat(kHead, user, Repeat("<a>", 70)), "elements nested deeper than 64"},
      {"invalid UTF-8", Concat(kHead, "<user name='al\xff'/>", kTail),
       "line 2, column 15 (byte 75): not well-formed XML: not well-formed (invalid token)"},
      {"undefined entity", Concat(kHead, "<user name='alice' password='&foo;'/>", kTail),
       "not well-formed XML: undefined entity"},
      {"data after the root", Concat(kHead, kTail, "<x/>"),
       "not well-formed XML: junk after document element"},
      {"unbound prefix", "<p:server-data xmlns='urn:xmpp:pie:0'/>",
       "not well-formed XML: unbound prefix"},
  };
}

TEST(Xep0227MalformedTest, EachIsAnErrorNamingWhereAndWho) {
  for (const MalformedCase& malformed : MalformedCases()) {
    SCOPED_TRACE(malformed.what);
    const ReadResult read = Read(malformed.input);
    EXPECT_EQ(read.status.code(), absl::StatusCode::kInvalidArgument) << read.status;
    EXPECT_THAT(std::string(read.status.message()), HasSubstr(malformed.message));
    EXPECT_THAT(std::string(read.status.message()), ::testing::StartsWith("line "));
    EXPECT_TRUE(read.users.empty());
    // Split anywhere, the same error (the place may differ only for expat's own errors).
    for (size_t split = 0; split <= malformed.input.size(); split += 7) {
      const std::string_view bytes(malformed.input);
      const ReadResult split_read = ReadPieces({bytes.substr(0, split), bytes.substr(split)});
      EXPECT_EQ(split_read.status.code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(Xep0227MalformedTest, UsersBeforeTheErrorAreYieldedAndNothingAfter) {
  const std::string file =
      Concat(kHead, "<user name='alice' password='a'/>\n<user name='bob' password='b'/>\n",
             "<user name='Carol' password='c'/>\n<user name='dave' password='d'/>", kTail);
  Xep0227Reader reader;
  const absl::Status status = reader.Feed(file);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("line 4, column 1 (byte 127): user \"Carol\""));
  std::vector<std::string> names;
  while (std::optional<ImportedUser> user = reader.Next()) names.push_back(user->name);
  EXPECT_THAT(names, ElementsAre("alice", "bob"));
  EXPECT_EQ(reader.Feed("more").message(), status.message());
  EXPECT_EQ(reader.Finish().message(), status.message());
}

TEST(Xep0227MalformedTest, ATokenLongerThanTheBoundIsRefused) {
  Xep0227ReaderOptions options;
  options.token_bytes_max = 4096;
  Xep0227Reader reader(std::move(options));
  ASSERT_TRUE(reader.Feed(Concat(kHead, "<user name='alice' password='")).ok());
  absl::Status status;
  for (int i = 0; i < 100 && status.ok(); ++i) status = reader.Feed(std::string(1000, 'x'));
  EXPECT_THAT(status.message(), HasSubstr("a tag or text longer than 4096 bytes"));
}

TEST(Xep0227ReaderTest, SkipsWhatStanzadDoesNotKeepAndAcceptsTheOldNamespace) {
  const std::string file = Concat(
      "<?xml version='1.0'?><!-- exported --><?pi x?>\n"
      "<server-data xmlns='http://www.xmpp.org/extensions/xep-0227.html#ns' "
      "xmlns:xi='http://www.w3.org/2001/XInclude'>\n"
      "<host jid='example.com'><xi:include href='more.xml'/>\n"
      "<user name='alice' password='pencil'>"
      "<query xmlns='jabber:iq:roster'><item jid='bob@example.com'><group>g</group></item></query>"
      "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>\n"
      "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-512'>"
      "<iter-count>1</iter-count></scram-credentials>\n",
      // Values with whitespace around them, children in Prosody's order.
      "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>\n"
      "  <server-key> D+CSWLOshSulAsxiupA+qs2/fTE= </server-key>\n"
      "  <stored-key>6dlGYMOdZcOPutkcNY8U2g7vK9Y=</stored-key>\n"
      "  <iter-count>4096</iter-count> <salt>QSXCR+Q6sek8bf92</salt>\n"
      "</scram-credentials></user></host></server-data>");
  const ReadResult read = Read(file, "example.com");
  ASSERT_TRUE(read.status.ok()) << read.status;
  ASSERT_EQ(read.users.size(), 1u);
  const ImportedUser& alice = read.users[0];
  EXPECT_EQ(alice.line, 4u);
  EXPECT_EQ(alice.password, "pencil");
  EXPECT_THAT(alice.ignored_mechanisms, ElementsAre("SCRAM-SHA-512"));
  ASSERT_TRUE(alice.credentials.has_value());
  EXPECT_EQ(sasl::EncodeUserCredentials(*alice.credentials),
            "SCRAM-SHA-1$4096:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:"
            "D+CSWLOshSulAsxiupA+qs2/fTE=");
  EXPECT_TRUE(LogsIn(*alice.credentials, ScramMechanism::kSha1, "alice", "pencil"));
  ASSERT_EQ(read.includes.size(), 1u);
  EXPECT_EQ(read.includes[0], (Xep0227Include{"more.xml", "example.com", 3}));
}

}  // namespace
}  // namespace stanzad::config
