// TlsSession: a server and a client handshaking over memory, with the keys and
// certificates made at test time by pki.h.
#include "tls/tls_session.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>

#include "core/base/check.h"
#include "tls/certificates.h"
#include "tls/pki.h"

namespace stanzad::tls {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using Clock = std::chrono::system_clock;

// A CA, a server certificate it issued for xmpp.example.com, a client
// certificate it issued, and an unrelated CA.
struct Pki {
  std::string ca_key, ca_cert;
  std::string server_key, server_cert;
  std::string client_key, client_cert;
  std::string other_ca_key, other_ca_cert;
  std::string expired_key, expired_cert;
};

std::string Must(absl::StatusOr<std::string> value) {
  CHECK_MSG(value.ok(), "pki failed");
  return *std::move(value);
}

CertificateSpec Spec(std::string common_name, bool is_ca) {
  CertificateSpec spec;
  spec.subject.common_name = common_name;
  if (!is_ca) spec.subject.subject_alt_names = {common_name};
  spec.is_ca = is_ca;
  return spec;
}

const Pki& TestPki() {
  static const Pki* pki = [] {
    auto* p = new Pki;
    p->ca_key = Must(GeneratePrivateKeyPem());
    p->ca_cert = Must(MakeSelfSignedCertificatePem(p->ca_key, Spec("Test CA", true)));
    p->server_key = Must(GeneratePrivateKeyPem());
    p->server_cert = Must(
        IssueCertificatePem(p->server_key, Spec("xmpp.example.com", false), p->ca_cert, p->ca_key));
    p->client_key = Must(GeneratePrivateKeyPem());
    p->client_cert = Must(IssueCertificatePem(p->client_key, Spec("node2.example.com", false),
                                              p->ca_cert, p->ca_key));
    p->other_ca_key = Must(GeneratePrivateKeyPem());
    p->other_ca_cert = Must(MakeSelfSignedCertificatePem(p->other_ca_key, Spec("Other CA", true)));
    p->expired_key = Must(GeneratePrivateKeyPem());
    CertificateSpec expired = Spec("xmpp.example.com", false);
    expired.validity.not_before = Clock::now() - std::chrono::hours(24 * 30);
    expired.validity.not_after = Clock::now() - std::chrono::hours(24);
    p->expired_cert = Must(IssueCertificatePem(p->expired_key, expired, p->ca_cert, p->ca_key));
    return p;
  }();
  return *pki;
}

std::shared_ptr<const TlsContext> ServerContext(const TlsServerOptions& options = {}) {
  absl::StatusOr<std::shared_ptr<const TlsContext>> context =
      TlsContext::Server(TestPki().server_cert, TestPki().server_key, options);
  CHECK_MSG(context.ok(), "server context");
  return *context;
}

std::shared_ptr<const TlsContext> ClientContext(const TlsClientOptions& options = {}) {
  absl::StatusOr<std::shared_ptr<const TlsContext>> context =
      TlsContext::Client(TestPki().ca_cert, /*verify_peer=*/true, options);
  CHECK_MSG(context.ok(), "client context");
  return *context;
}

// Moves ciphertext between the two sessions until both are quiet, `chunk_bytes`
// at a time (0: all at once), reading plaintext as it arrives.
class Link {
 public:
  Link(std::unique_ptr<TlsSession> client, std::unique_ptr<TlsSession> server)
      : client_(std::move(client)), server_(std::move(server)) {}

  void Pump(size_t chunk_bytes = 0) {
    for (int round = 0; round < 10000; ++round) {
      const bool moved = Move(*client_, *server_, &server_received_, chunk_bytes) |
                         Move(*server_, *client_, &client_received_, chunk_bytes);
      if (!moved) return;
    }
    FAIL() << "the sessions never went quiet";
  }

  TlsSession& client() { return *client_; }
  TlsSession& server() { return *server_; }
  std::string& client_received() { return client_received_; }
  std::string& server_received() { return server_received_; }
  absl::Status client_status, server_status;

 private:
  bool Move(TlsSession& from, TlsSession& to, std::string* received, size_t chunk_bytes) {
    std::string bytes;
    from.TakeOutput(&bytes);
    if (bytes.empty()) return false;
    absl::Status& status = &to == server_.get() ? server_status : client_status;
    std::string_view rest = bytes;
    while (!rest.empty() && status.ok()) {
      const size_t count = chunk_bytes == 0 ? rest.size() : std::min(chunk_bytes, rest.size());
      status = to.Feed(rest.substr(0, count));
      if (status.ok()) status = to.Read(received);
      rest.remove_prefix(count);
    }
    return true;
  }

  std::unique_ptr<TlsSession> client_, server_;
  std::string client_received_, server_received_;
};

Link Connect(std::shared_ptr<const TlsContext> client_context,
             std::shared_ptr<const TlsContext> server_context,
             std::string_view server_name = "xmpp.example.com") {
  absl::StatusOr<std::unique_ptr<TlsSession>> client =
      TlsSession::NewClient(std::move(client_context), server_name);
  absl::StatusOr<std::unique_ptr<TlsSession>> server =
      TlsSession::NewServer(std::move(server_context));
  CHECK_MSG(client.ok() && server.ok(), "session");
  return Link(*std::move(client), *std::move(server));
}

std::string Pattern(size_t size) {
  std::string text(size, '\0');
  for (size_t i = 0; i < size; ++i) text[i] = static_cast<char>('a' + (i * 7 + i / 26) % 26);
  return text;
}

class TlsVersionTest : public ::testing::TestWithParam<TlsVersion> {};

TEST_P(TlsVersionTest, HandshakeThenDataBothWays) {
  TlsClientOptions options;
  options.max_version = GetParam();
  Link link = Connect(ClientContext(options), ServerContext());
  EXPECT_TRUE(link.client().has_output());  // the client hello, at once
  link.Pump();
  ASSERT_TRUE(link.client_status.ok()) << link.client_status;
  ASSERT_TRUE(link.server_status.ok()) << link.server_status;
  ASSERT_TRUE(link.client().handshake_done());
  ASSERT_TRUE(link.server().handshake_done());
  const std::string_view version = GetParam() == TlsVersion::kTls13 ? "TLSv1.3" : "TLSv1.2";
  EXPECT_EQ(link.client().protocol_version(), version);
  EXPECT_EQ(link.server().protocol_version(), version);
  EXPECT_THAT(std::string(link.server().cipher_suite()), HasSubstr("GCM"));

  ASSERT_TRUE(link.client().Write("<stream:stream to='example.com'>").ok());
  ASSERT_TRUE(link.server().Write("<stream:stream from='example.com'>").ok());
  link.Pump();
  EXPECT_EQ(link.server_received(), "<stream:stream to='example.com'>");
  EXPECT_EQ(link.client_received(), "<stream:stream from='example.com'>");

  // More than one record each way.
  const std::string big = Pattern(300 * 1024);
  link.server_received().clear();
  link.client_received().clear();
  ASSERT_TRUE(link.client().Write(big).ok());
  ASSERT_TRUE(link.server().Write(big).ok());
  link.Pump(/*chunk_bytes=*/64 * 1024);
  EXPECT_TRUE(link.server_received() == big);
  EXPECT_TRUE(link.client_received() == big);
  EXPECT_TRUE(link.client_status.ok() && link.server_status.ok());
}

TEST_P(TlsVersionTest, ByteAtATime) {
  TlsClientOptions options;
  options.max_version = GetParam();
  Link link = Connect(ClientContext(options), ServerContext());
  link.Pump(/*chunk_bytes=*/1);
  ASSERT_TRUE(link.client_status.ok()) << link.client_status;
  ASSERT_TRUE(link.server_status.ok()) << link.server_status;
  ASSERT_TRUE(link.client().handshake_done() && link.server().handshake_done());
  ASSERT_TRUE(link.client().Write("hello").ok());
  ASSERT_TRUE(link.server().Write("world").ok());
  link.Pump(/*chunk_bytes=*/1);
  EXPECT_EQ(link.server_received(), "hello");
  EXPECT_EQ(link.client_received(), "world");
}

TEST_P(TlsVersionTest, WritesBeforeTheHandshakeAreSentAfterIt) {
  TlsClientOptions options;
  options.max_version = GetParam();
  Link link = Connect(ClientContext(options), ServerContext());
  ASSERT_TRUE(link.client().Write("early ").ok());
  ASSERT_TRUE(link.client().Write("bytes").ok());
  link.Pump();
  EXPECT_EQ(link.server_received(), "early bytes");
}

TEST_P(TlsVersionTest, ShutdownIsSeenByThePeer) {
  TlsClientOptions options;
  options.max_version = GetParam();
  Link link = Connect(ClientContext(options), ServerContext());
  link.Pump();
  ASSERT_TRUE(link.client().Write("last words").ok());
  ASSERT_TRUE(link.client().Shutdown().ok());
  EXPECT_EQ(link.client().Write("more").code(), absl::StatusCode::kFailedPrecondition);
  link.Pump();
  EXPECT_EQ(link.server_received(), "last words");
  EXPECT_TRUE(link.server().peer_closed());
  EXPECT_TRUE(link.server_status.ok()) << link.server_status;
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsVersionTest,
                         ::testing::Values(TlsVersion::kTls12, TlsVersion::kTls13),
                         [](const auto& param_info) {
                           return param_info.param == TlsVersion::kTls12 ? "Tls12" : "Tls13";
                         });

TEST(TlsSessionTest, ServerLimitedToTls12) {
  TlsServerOptions options;
  options.max_version = TlsVersion::kTls12;
  Link link = Connect(ClientContext(), ServerContext(options));
  link.Pump();
  ASSERT_TRUE(link.client().handshake_done());
  EXPECT_EQ(link.client().protocol_version(), "TLSv1.2");
}

TEST(TlsSessionTest, GarbageFromAClientIsAnErrorAndAnAlert) {
  absl::StatusOr<std::unique_ptr<TlsSession>> server = TlsSession::NewServer(ServerContext());
  ASSERT_TRUE(server.ok());
  // A client that speaks XMPP without TLS first.
  absl::Status status = (*server)->Feed("<?xml version='1.0'?><stream:stream to='example.com'>");
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_EQ(status.message(),
            "TLS handshake failed: the peer does not speak TLS; it began with \"<?xml versio\" "
            "(plain XMPP on a TLS port, or the wrong port?)");
  EXPECT_EQ((*server)->error(), status);
  std::string alert;
  (*server)->TakeOutput(&alert);
  ASSERT_GE(alert.size(), 7u);
  EXPECT_EQ(alert[0], '\x15');  // an alert record
  // Everything after is refused the same way.
  EXPECT_EQ((*server)->Feed("more").code(), status.code());
  std::string plaintext;
  EXPECT_FALSE((*server)->Read(&plaintext).ok());
  EXPECT_FALSE((*server)->Write("x").ok());
  EXPECT_THAT(plaintext, IsEmpty());
}

TEST(TlsSessionTest, GarbageFromAServerIsAnError) {
  absl::StatusOr<std::unique_ptr<TlsSession>> client =
      TlsSession::NewClient(ClientContext(), "xmpp.example.com");
  ASSERT_TRUE(client.ok());
  std::string hello;
  (*client)->TakeOutput(&hello);
  EXPECT_EQ(hello[0], '\x16');  // a handshake record
  absl::Status status = (*client)->Feed("HTTP/1.1 400 Bad Request\r\n\r\n");
  EXPECT_THAT(std::string(status.message()), HasSubstr("it began with \"HTTP/1.1 400\""));
}

TEST(TlsSessionTest, DamagedRecordAfterTheHandshakeIsAnError) {
  Link link = Connect(ClientContext(), ServerContext());
  link.Pump();
  ASSERT_TRUE(link.client().Write("secret").ok());
  std::string record;
  link.client().TakeOutput(&record);
  record[record.size() - 3] ^= 0x40;
  absl::Status status = link.server().Feed(record);
  std::string plaintext;
  if (status.ok()) status = link.server().Read(&plaintext);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(plaintext, IsEmpty());
}

TEST(TlsSessionTest, RandomBytesNeverCrash) {
  std::mt19937 random(12345);
  const std::shared_ptr<const TlsContext> server_context = ServerContext();
  const std::shared_ptr<const TlsContext> client_context = ClientContext();
  std::string hello;
  {
    absl::StatusOr<std::unique_ptr<TlsSession>> client =
        TlsSession::NewClient(client_context, "xmpp.example.com");
    ASSERT_TRUE(client.ok());
    (*client)->TakeOutput(&hello);
  }
  for (int i = 0; i < 300; ++i) {
    absl::StatusOr<std::unique_ptr<TlsSession>> server = TlsSession::NewServer(server_context);
    ASSERT_TRUE(server.ok());
    // A real hello with random damage, or random bytes behind a record header.
    std::string input = hello;
    if (i % 2 == 0) {
      for (int flips = 0; flips < 1 + i % 8; ++flips) {
        input[random() % input.size()] = static_cast<char>(random());
      }
    } else {
      input = std::string("\x16\x03\x03", 3);
      const size_t size = random() % 600;
      input.push_back(static_cast<char>(size >> 8));
      input.push_back(static_cast<char>(size & 0xFF));
      for (size_t k = 0; k < size; ++k) input.push_back(static_cast<char>(random()));
    }
    absl::Status status = (*server)->Feed(input);
    std::string out;
    (*server)->TakeOutput(&out);
    std::string plaintext;
    if (status.ok()) status = (*server)->Read(&plaintext);
    EXPECT_THAT(plaintext, IsEmpty());
  }
}

TEST(TlsSessionTest, ClientRejectsACertificateFromAnUntrustedCa) {
  absl::StatusOr<std::shared_ptr<const TlsContext>> client_context =
      TlsContext::Client(TestPki().other_ca_cert, /*verify_peer=*/true);
  ASSERT_TRUE(client_context.ok());
  Link link = Connect(*client_context, ServerContext());
  link.Pump();
  EXPECT_FALSE(link.client().handshake_done());
  EXPECT_EQ(link.client_status.code(), absl::StatusCode::kUnauthenticated) << link.client_status;
  EXPECT_THAT(link.client_status.message(), HasSubstr("not issued by a trusted CA"));
  // The server hears why.
  EXPECT_EQ(link.server_status.code(), absl::StatusCode::kAborted) << link.server_status;
  EXPECT_THAT(link.server_status.message(), HasSubstr("the peer sent the alert"));
}

TEST(TlsSessionTest, ClientRejectsACertificateForAnotherName) {
  Link link = Connect(ClientContext(), ServerContext(), "other.example.com");
  link.Pump();
  EXPECT_FALSE(link.client().handshake_done());
  EXPECT_EQ(link.client_status.code(), absl::StatusCode::kUnauthenticated) << link.client_status;
  EXPECT_THAT(link.client_status.message(),
              HasSubstr("does not cover the server name \"other.example.com\""));
}

TEST(TlsSessionTest, ClientRejectsAnExpiredCertificate) {
  absl::StatusOr<std::shared_ptr<const TlsContext>> server_context =
      TlsContext::Server(TestPki().expired_cert, TestPki().expired_key);
  ASSERT_TRUE(server_context.ok()) << server_context.status();
  Link link = Connect(ClientContext(), *server_context);
  link.Pump();
  EXPECT_FALSE(link.client().handshake_done());
  EXPECT_THAT(link.client_status.message(), HasSubstr("has expired")) << link.client_status;
}

TEST(TlsSessionTest, ClientWithoutVerificationAcceptsAnyCertificate) {
  absl::StatusOr<std::shared_ptr<const TlsContext>> client_context =
      TlsContext::Client("", /*verify_peer=*/false);
  ASSERT_TRUE(client_context.ok());
  Link link = Connect(*client_context, ServerContext(), "other.example.com");
  link.Pump();
  EXPECT_TRUE(link.client().handshake_done()) << link.client_status;
}

TEST(TlsSessionTest, MutualTls) {
  TlsServerOptions server_options;
  server_options.client_trust_pem = TestPki().ca_cert;
  const std::shared_ptr<const TlsContext> server_context = ServerContext(server_options);

  // With a certificate from the trusted CA: accepted, and the server sees it.
  TlsClientOptions with_cert;
  with_cert.cert_chain_pem = TestPki().client_cert;
  with_cert.key_pem = TestPki().client_key;
  for (TlsVersion version : {TlsVersion::kTls12, TlsVersion::kTls13}) {
    with_cert.max_version = version;
    Link link = Connect(ClientContext(with_cert), server_context);
    link.Pump();
    ASSERT_TRUE(link.server().handshake_done()) << link.server_status;
    ASSERT_TRUE(link.client().handshake_done()) << link.client_status;
    absl::StatusOr<CertificateSummary> peer =
        SummarizeCertificate(link.server().PeerCertificatePem());
    ASSERT_TRUE(peer.ok()) << peer.status();
    EXPECT_EQ(peer->subject, "CN=node2.example.com");
    ASSERT_TRUE(link.client().Write("ping").ok());
    link.Pump();
    EXPECT_EQ(link.server_received(), "ping");
  }

  // Without a certificate: refused.
  {
    Link link = Connect(ClientContext(), server_context);
    link.Pump();
    EXPECT_FALSE(link.server().handshake_done());
    EXPECT_EQ(link.server_status.code(), absl::StatusCode::kUnauthenticated) << link.server_status;
    EXPECT_FALSE(link.client_status.ok());
  }

  // With a certificate from another CA: refused.
  {
    TlsClientOptions other;
    other.cert_chain_pem = TestPki().other_ca_cert;
    other.key_pem = TestPki().other_ca_key;
    Link link = Connect(ClientContext(other), server_context);
    link.Pump();
    EXPECT_FALSE(link.server().handshake_done());
    EXPECT_EQ(link.server_status.code(), absl::StatusCode::kUnauthenticated) << link.server_status;
  }
}

TEST(TlsSessionTest, InputThatIsNeverReadIsCapped) {
  TlsSessionLimits limits;
  limits.input_bytes_max = 4096;
  absl::StatusOr<std::unique_ptr<TlsSession>> client =
      TlsSession::NewClient(ClientContext(), "xmpp.example.com", limits);
  absl::StatusOr<std::unique_ptr<TlsSession>> server =
      TlsSession::NewServer(ServerContext(), limits);
  ASSERT_TRUE(client.ok() && server.ok());
  Link link(*std::move(client), *std::move(server));
  link.Pump();
  ASSERT_TRUE(link.server().handshake_done());
  ASSERT_TRUE(link.client().Write(Pattern(20000)).ok());
  std::string records;
  link.client().TakeOutput(&records);
  // Fed without Read in between: the bytes pile up.
  absl::Status status;
  for (size_t offset = 0; offset < records.size() && status.ok(); offset += 1000) {
    status = link.server().Feed(std::string_view(records).substr(offset, 1000));
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
}

TEST(TlsSessionTest, EarlyWritesAreCapped) {
  TlsSessionLimits limits;
  limits.early_plaintext_bytes_max = 10;
  absl::StatusOr<std::unique_ptr<TlsSession>> client =
      TlsSession::NewClient(ClientContext(), "xmpp.example.com", limits);
  ASSERT_TRUE(client.ok());
  EXPECT_TRUE((*client)->Write("0123456789").ok());
  EXPECT_EQ((*client)->Write("x").code(), absl::StatusCode::kResourceExhausted);
}

TEST(TlsSessionTest, ContextErrorsSayWhatIsWrong) {
  const Pki& pki = TestPki();
  EXPECT_THAT(TlsContext::Server("junk", pki.server_key).status().message(),
              HasSubstr("the certificate chain is not readable PEM"));
  EXPECT_THAT(TlsContext::Server(pki.server_cert, "junk").status().message(),
              HasSubstr("the private key is not a readable PEM key"));
  EXPECT_THAT(TlsContext::Server(pki.server_cert, pki.client_key).status().message(),
              HasSubstr("does not match the certificate"));
  EXPECT_THAT(TlsContext::Client("", /*verify_peer=*/true).status().message(),
              HasSubstr("needs at least one trusted root"));
  TlsClientOptions half;
  half.cert_chain_pem = pki.client_cert;
  EXPECT_THAT(TlsContext::Client(pki.ca_cert, true, half).status().message(),
              HasSubstr("needs both"));
}

}  // namespace
}  // namespace stanzad::tls
