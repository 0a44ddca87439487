// CheckServerCertificate: one test per problem an operator can have, each with
// keys and certificates made at test time by pki.h, and the message it gets.
#include "tls/certificates.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>
#include <sys/stat.h>
#include "tests/unit/temp_dir.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/base/check.h"
#include "core/base/concat.h"
#include "tls/pki.h"

namespace stanzad::tls {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Clock = std::chrono::system_clock;

std::string Must(absl::StatusOr<std::string> value) {
  CHECK_MSG(value.ok(), "pki failed");
  return *std::move(value);
}

CertificateSpec Spec(std::string common_name, std::vector<std::string> alt_names,
                     bool is_ca = false) {
  CertificateSpec spec;
  spec.subject.common_name = std::move(common_name);
  spec.subject.subject_alt_names = std::move(alt_names);
  spec.is_ca = is_ca;
  return spec;
}

// root CA -> intermediate CA -> xmpp.example.com.
struct Chain {
  std::string root_key, root;
  std::string intermediate_key, intermediate;
  std::string leaf_key, leaf;
};

const Chain& TestChain() {
  static const Chain* chain = [] {
    auto* c = new Chain;
    c->root_key = Must(GeneratePrivateKeyPem());
    c->root = Must(MakeSelfSignedCertificatePem(c->root_key, Spec("Example Root CA", {}, true)));
    c->intermediate_key = Must(GeneratePrivateKeyPem());
    c->intermediate = Must(IssueCertificatePem(
        c->intermediate_key, Spec("Example Issuing CA", {}, true), c->root, c->root_key));
    c->leaf_key = Must(GeneratePrivateKeyPem());
    c->leaf = Must(IssueCertificatePem(c->leaf_key,
                                       Spec("xmpp.example.com", {"xmpp.example.com", "10.0.0.1"}),
                                       c->intermediate, c->intermediate_key));
    return c;
  }();
  return *chain;
}

std::string Message(const absl::Status& status) { return std::string(status.message()); }

absl::Status Check(std::string_view key, std::string_view cert, std::string_view bundle,
                   std::string_view domain = "xmpp.example.com",
                   Clock::time_point now = Clock::now()) {
  return CheckServerCertificate(key, cert, bundle, domain, now);
}

TEST(CertificatesTest, AGoodChainPasses) {
  const Chain& c = TestChain();
  EXPECT_TRUE(Check(c.leaf_key, c.leaf, c.intermediate + c.root).ok())
      << Check(c.leaf_key, c.leaf, c.intermediate + c.root);
  // Intermediates in the certificate file, the root in the bundle.
  EXPECT_TRUE(Check(c.leaf_key, c.leaf + c.intermediate, c.root).ok());
  // fullchain.pem style: the bundle repeats the certificate.
  EXPECT_TRUE(Check(c.leaf_key, c.leaf, c.leaf + c.intermediate + c.root).ok());
  // No bundle: nothing to check there.
  EXPECT_TRUE(Check(c.leaf_key, c.leaf, "").ok());
  // By IP address.
  EXPECT_TRUE(Check(c.leaf_key, c.leaf, "", "10.0.0.1").ok());
  // Domain names compare without case.
  EXPECT_TRUE(Check(c.leaf_key, c.leaf, "", "XMPP.Example.COM").ok());
}

// ReadPemFile never blocks on a FIFO and names what is wrong with the path.
TEST(CertificatesTest, ReadPemFileRefusesWhatIsNotARegularFile) {
  testing_util::TempDir dir("tls_certificates_test");
  const std::string fifo = dir.path() + "/cert.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& path : {fifo, dir.path()}) {
    EXPECT_THAT(Message(ReadPemFile(path).status()), HasSubstr("is not a regular file"));
  }
  EXPECT_THAT(Message(ReadPemFile(dir.path() + "/none.pem").status()), HasSubstr("No such file"));
  const std::string empty = dir.path() + "/empty.pem";
  std::ofstream(empty).flush();
  EXPECT_THAT(Message(ReadPemFile(empty).status()), HasSubstr("is empty"));
  const std::string pem = dir.path() + "/cert.pem";
  std::ofstream(pem) << TestChain().leaf;
  EXPECT_EQ(Must(ReadPemFile(pem)), TestChain().leaf);
}

TEST(CertificatesTest, UnreadableKey) {
  const Chain& c = TestChain();
  EXPECT_EQ(Message(Check("junk", c.leaf, "")),
            "the private key is not a readable PEM private key (EC or RSA): give the key file "
            "made with the certificate request (pki csr)");
  EXPECT_THAT(Message(Check(c.leaf, c.leaf, "")),
              HasSubstr("it holds a certificate or request: give the private key file instead"));
  EXPECT_THAT(Message(Check("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED "
                            "PRIVATE KEY-----\n",
                            c.leaf, "")),
              HasSubstr("the private key is encrypted with a passphrase: store it without one"));
}

TEST(CertificatesTest, UnreadableCertificate) {
  const Chain& c = TestChain();
  EXPECT_EQ(Message(Check(c.leaf_key, "junk", "")),
            "the certificate holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the "
            "certificate file your CA returned");
  CertificateSubject subject;
  subject.common_name = "xmpp.example.com";
  const std::string csr = Must(MakeCertificateRequestPem(c.leaf_key, subject));
  EXPECT_EQ(Message(Check(c.leaf_key, csr, "")),
            "the certificate holds a certificate request, not a certificate: send the request "
            "to your CA and give the certificate it returns");
  EXPECT_THAT(Message(Check(c.leaf_key, c.leaf_key, "")), HasSubstr("holds a private key"));
  EXPECT_THAT(Message(Check(c.leaf_key, std::string("\x30\x82\x01\x00", 4), "")),
              HasSubstr("DER, not PEM: convert it"));

  std::string damaged = c.leaf;
  damaged[100] = '!';
  EXPECT_THAT(Message(Check(c.leaf_key, damaged, "")),
              HasSubstr("certificate 1 of the certificate is damaged"));
  EXPECT_THAT(Message(Check(c.leaf_key, c.leaf.substr(0, c.leaf.size() / 2), "")),
              HasSubstr("has no END CERTIFICATE line: the file is cut short"));
  EXPECT_THAT(Message(Check(c.leaf_key, c.leaf, "junk")),
              HasSubstr("the bundle holds no PEM certificate"));
}

TEST(CertificatesTest, KeyDoesNotMatchCertificate) {
  const Chain& c = TestChain();
  const std::string expected =
      "the private key does not match the certificate (CN=xmpp.example.com): use the key that "
      "the certificate request was made with, or request a new certificate for this key";
  EXPECT_EQ(Message(Check(c.root_key, c.leaf, "")), expected);
  // An RSA key, too; and the same through CheckKeyMatchesCertificate.
  const std::string rsa_key = Must(GeneratePrivateKeyPem(KeyType::kRsa2048));
  EXPECT_EQ(Message(Check(rsa_key, c.leaf, "")), expected);
  EXPECT_TRUE(CheckKeyMatchesCertificate(c.leaf_key, c.leaf).ok());
  EXPECT_FALSE(CheckKeyMatchesCertificate(rsa_key, c.leaf).ok());
  const std::string rsa_cert =
      Must(MakeSelfSignedCertificatePem(rsa_key, Spec("rsa.example.com", {"rsa.example.com"})));
  EXPECT_TRUE(CheckKeyMatchesCertificate(rsa_key, rsa_cert).ok());
  EXPECT_FALSE(CheckKeyMatchesCertificate(c.leaf_key, rsa_cert).ok());
}

TEST(CertificatesTest, ExpiredCertificateSaysWhen) {
  const Chain& c = TestChain();
  CertificateSpec spec = Spec("xmpp.example.com", {"xmpp.example.com"});
  spec.validity.not_before = Clock::from_time_t(1577836800);  // 2020-01-01
  spec.validity.not_after = Clock::from_time_t(1609459199);   // 2020-12-31 23:59:59
  const std::string expired = Must(MakeSelfSignedCertificatePem(c.leaf_key, spec));
  EXPECT_EQ(Message(Check(c.leaf_key, expired, "")),
            "the certificate (CN=xmpp.example.com) expired on 2020-12-31 23:59:59 UTC: renew it "
            "with your CA (pki csr makes the request) and install the new one");
  // A good certificate checked at a time after its end.
  EXPECT_THAT(Message(Check(c.leaf_key, c.leaf, "", "xmpp.example.com",
                            Clock::now() + std::chrono::hours(24 * 400))),
              HasSubstr("expired on"));
}

TEST(CertificatesTest, NotYetValidCertificateSaysWhen) {
  const Chain& c = TestChain();
  CertificateSpec spec = Spec("xmpp.example.com", {"xmpp.example.com"});
  spec.validity.not_before = Clock::from_time_t(4102444800);  // 2100-01-01
  spec.validity.not_after = Clock::from_time_t(4133980800);
  const std::string future = Must(MakeSelfSignedCertificatePem(c.leaf_key, spec));
  const Clock::time_point now = Clock::from_time_t(1700000000);  // 2023-11-14 22:13:20
  EXPECT_EQ(Message(Check(c.leaf_key, future, "", "xmpp.example.com", now)),
            "the certificate (CN=xmpp.example.com) is not valid until 2100-01-01 00:00:00 UTC "
            "(now is 2023-11-14 22:13:20 UTC): check this machine's clock, or wait until then");
}

TEST(CertificatesTest, NamesThatDoNotCoverTheDomain) {
  const Chain& c = TestChain();
  EXPECT_EQ(Message(Check(c.leaf_key, c.leaf, "", "example.com")),
            "the certificate (CN=xmpp.example.com) covers xmpp.example.com, 10.0.0.1 but not "
            "example.com: get a certificate whose subjectAltName includes example.com (pki csr "
            "... subjectAltName:example.com)");

  const std::string wildcard = Must(
      MakeSelfSignedCertificatePem(c.leaf_key, Spec("Example", {"*.example.com", "example.net"})));
  EXPECT_TRUE(Check(c.leaf_key, wildcard, "", "a.example.com").ok());
  EXPECT_TRUE(Check(c.leaf_key, wildcard, "", "example.net").ok());
  EXPECT_THAT(Message(Check(c.leaf_key, wildcard, "", "example.com")),
              HasSubstr("covers *.example.com, example.net but not example.com"));
  EXPECT_THAT(Message(Check(c.leaf_key, wildcard, "", "a.b.example.com")),
              HasSubstr("but not a.b.example.com"));

  // No DNS names: the CN counts.
  const std::string cn_only =
      Must(MakeSelfSignedCertificatePem(c.leaf_key, Spec("cn.example.com", {})));
  EXPECT_TRUE(Check(c.leaf_key, cn_only, "", "cn.example.com").ok());
  EXPECT_THAT(Message(Check(c.leaf_key, cn_only, "", "other.example.com")),
              HasSubstr("covers cn.example.com but not other.example.com"));
  // With DNS names the CN does not count (RFC 6125).
  const std::string cn_and_san =
      Must(MakeSelfSignedCertificatePem(c.leaf_key, Spec("cn.example.com", {"san.example.com"})));
  EXPECT_THAT(Message(Check(c.leaf_key, cn_and_san, "", "cn.example.com")),
              HasSubstr("covers san.example.com but not cn.example.com"));
}

TEST(CertificatesTest, BundleInTheWrongOrder) {
  const Chain& c = TestChain();
  EXPECT_EQ(Message(Check(c.leaf_key, c.leaf, c.root + c.intermediate)),
            "the bundle is in the wrong order: the issuer of the certificate "
            "(CN=xmpp.example.com) is certificate 2 of the bundle (CN=Example Issuing CA), but "
            "certificate 1 of the bundle (CN=Example Root CA) comes next: list the issuer of the "
            "server's certificate first and the root last");
}

TEST(CertificatesTest, BundleThatDoesNotReachARoot) {
  const Chain& c = TestChain();
  EXPECT_EQ(Message(Check(c.leaf_key, c.leaf, c.intermediate)),
            "the bundle does not reach a root: certificate 1 of the bundle (CN=Example Issuing "
            "CA) is issued by CN=Example Root CA, which it does not hold: append that CA's "
            "certificate (the chain goes up to a self-signed root)");
}

TEST(CertificatesTest, BundleFromAnotherCa) {
  const Chain& c = TestChain();
  const std::string other_key = Must(GeneratePrivateKeyPem());
  const std::string other =
      Must(MakeSelfSignedCertificatePem(other_key, Spec("Other Root CA", {}, true)));
  EXPECT_EQ(Message(Check(c.leaf_key, c.leaf, other)),
            "the bundle does not hold the issuer of the certificate (CN=xmpp.example.com) "
            "(CN=Example Issuing CA): certificate 1 of the bundle (CN=Other Root CA) is not it; "
            "put that CA's certificate in the bundle");
  // Same name as the real issuer, other key.
  const std::string impostor =
      Must(MakeSelfSignedCertificatePem(other_key, Spec("Example Issuing CA", {}, true)));
  EXPECT_THAT(Message(Check(c.leaf_key, c.leaf, impostor)),
              HasSubstr("has the name of the issuer of the certificate (CN=xmpp.example.com) but "
                        "did not sign it"));
}

TEST(CertificatesTest, BundleWithAnExtraCertificateAfterTheRoot) {
  const Chain& c = TestChain();
  const std::string other_key = Must(GeneratePrivateKeyPem());
  const std::string other =
      Must(MakeSelfSignedCertificatePem(other_key, Spec("Other Root CA", {}, true)));
  EXPECT_THAT(Message(Check(c.leaf_key, c.leaf, c.intermediate + c.root + other)),
              HasSubstr("certificate 3 of the bundle (CN=Other Root CA) is not part of the "
                        "chain: certificate 2 of the bundle (CN=Example Root CA) is a self-signed "
                        "root"));
}

TEST(CertificatesTest, ExpiredIntermediate) {
  const Chain& c = TestChain();
  CertificateSpec spec = Spec("Example Issuing CA", {}, true);
  spec.validity.not_before = Clock::from_time_t(1577836800);
  spec.validity.not_after = Clock::from_time_t(1609459199);
  const std::string old_intermediate =
      Must(IssueCertificatePem(c.intermediate_key, spec, c.root, c.root_key));
  EXPECT_THAT(Message(Check(c.leaf_key, c.leaf, old_intermediate + c.root)),
              HasSubstr("certificate 1 of the bundle (CN=Example Issuing CA) expired on "
                        "2020-12-31 23:59:59 UTC"));
}

// TempDir with this test's name.
class TempDir : public testing_util::TempDir {
 public:
  TempDir() : testing_util::TempDir("tls_certificates_test") {}
};

TEST(CertificatesTest, FilesAreNamedInMessages) {
  const Chain& c = TestChain();
  TempDir dir;
  const std::string key = dir.Write("xmpp.key", c.leaf_key);
  const std::string cert = dir.Write("xmpp.crt", c.leaf);
  const std::string bundle = dir.Write("bundle.crt", c.intermediate + c.root);
  const Clock::time_point now = Clock::now();
  EXPECT_TRUE(CheckServerCertificateFiles(key, cert, bundle, "xmpp.example.com", now).ok());
  EXPECT_TRUE(CheckServerCertificateFiles(key, cert, "", "xmpp.example.com", now).ok());

  EXPECT_EQ(Message(CheckServerCertificateFiles(dir.Path("missing.key"), cert, "",
                                                "xmpp.example.com", now)),
            Concat("cannot read ", dir.Path("missing.key"), ": No such file or directory"));
  const std::string wrong_key = dir.Write("wrong.key", c.root_key);
  EXPECT_THAT(Message(CheckServerCertificateFiles(wrong_key, cert, "", "xmpp.example.com", now)),
              HasSubstr(Concat("the private key ", wrong_key, " does not match the certificate ",
                               cert, " (CN=xmpp.example.com)")));
  const std::string reversed = dir.Write("reversed.crt", c.root + c.intermediate);
  EXPECT_THAT(Message(CheckServerCertificateFiles(key, cert, reversed, "xmpp.example.com", now)),
              HasSubstr(Concat("the bundle ", reversed, " is in the wrong order")));
  const std::string empty = dir.Write("empty.crt", "");
  EXPECT_EQ(Message(CheckServerCertificateFiles(key, empty, "", "xmpp.example.com", now)),
            Concat(empty, " is empty"));
}

TEST(CertificatesTest, Summary) {
  const Chain& c = TestChain();
  absl::StatusOr<CertificateSummary> summary = SummarizeCertificate(c.leaf + c.intermediate);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->subject, "CN=xmpp.example.com");
  EXPECT_EQ(summary->issuer, "CN=Example Issuing CA");
  EXPECT_THAT(summary->subject_alt_names, ElementsAre("xmpp.example.com", "10.0.0.1"));
  EXPECT_FALSE(summary->self_signed);
  EXPECT_LT(summary->not_before, Clock::now());
  EXPECT_GT(summary->not_after, Clock::now() + std::chrono::hours(24 * 364));
  EXPECT_THAT(summary->ToString(),
              HasSubstr("subject CN=xmpp.example.com; names xmpp.example.com, 10.0.0.1; issuer "
                        "CN=Example Issuing CA; valid "));

  CertificateSpec spec = Spec("lab.example.com", {});
  spec.subject.organization = "Example Ltd";
  spec.subject.country = "GB";
  absl::StatusOr<CertificateSummary> lab =
      SummarizeCertificate(Must(MakeSelfSignedCertificatePem(c.leaf_key, spec)));
  ASSERT_TRUE(lab.ok());
  EXPECT_EQ(lab->subject, "C=GB, O=Example Ltd, CN=lab.example.com");
  EXPECT_TRUE(lab->self_signed);
  EXPECT_THAT(lab->ToString(), HasSubstr("names (none); issuer itself (self-signed)"));
  EXPECT_FALSE(SummarizeCertificate("junk").ok());
}

}  // namespace
}  // namespace stanzad::tls
