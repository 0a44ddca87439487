// pki: keys, requests and certificates that wolfSSL and openssl both accept.
#include "tls/pki.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include "tests/unit/temp_dir.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/base/concat.h"
#include "tls/certificates.h"

namespace stanzad::tls {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using Clock = std::chrono::system_clock;

// TempDir with this test's name.
class TempDir : public testing_util::TempDir {
 public:
  TempDir() : testing_util::TempDir("tls_pki_test") {}
};

bool HaveOpenssl() { return std::system("openssl version >/dev/null 2>&1") == 0; }

// Runs a shell command; returns its exit status and fills *output with stdout+stderr.
int RunCommand(const std::string& command, std::string* output) {
  FILE* pipe = ::popen(Concat(command, " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  size_t count;
  while ((count = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output->append(buffer, count);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

CertificateSubject Subject(std::string common_name, std::vector<std::string> alt_names) {
  CertificateSubject subject;
  subject.common_name = std::move(common_name);
  subject.subject_alt_names = std::move(alt_names);
  return subject;
}

TEST(PkiTest, GeneratesEcAndRsaKeys) {
  absl::StatusOr<std::string> ec = GeneratePrivateKeyPem();
  ASSERT_TRUE(ec.ok()) << ec.status();
  EXPECT_THAT(*ec, StartsWith("-----BEGIN EC PRIVATE KEY-----\n"));
  absl::StatusOr<std::string> ec2 = GeneratePrivateKeyPem(KeyType::kEcP256);
  ASSERT_TRUE(ec2.ok());
  EXPECT_NE(*ec, *ec2);
  absl::StatusOr<std::string> rsa = GeneratePrivateKeyPem(KeyType::kRsa2048);
  ASSERT_TRUE(rsa.ok()) << rsa.status();
  EXPECT_THAT(*rsa, StartsWith("-----BEGIN RSA PRIVATE KEY-----\n"));
  if (!HaveOpenssl()) GTEST_SKIP() << "openssl not installed";
  TempDir dir;
  std::string output;
  EXPECT_EQ(RunCommand(Concat("openssl pkey -noout -text -in ", dir.Write("ec.key", *ec)), &output),
            0)
      << output;
  EXPECT_THAT(output, HasSubstr("prime256v1"));
  output.clear();
  EXPECT_EQ(
      RunCommand(Concat("openssl pkey -noout -text -in ", dir.Write("rsa.key", *rsa)), &output), 0)
      << output;
  EXPECT_THAT(output, HasSubstr("2048 bit"));
}

TEST(PkiTest, CertificateRequestThatOpensslParses) {
  absl::StatusOr<std::string> key = GeneratePrivateKeyPem();
  ASSERT_TRUE(key.ok());
  absl::StatusOr<CertificateSubject> subject = ParseSubjectArguments(
      {"CN:xmpp.example.com", "O:Example Ltd", "OU:Voice", "L:London", "ST:England", "C:GB",
       "subjectAltName:xmpp.example.com,conference.example.com,10.1.2.3"});
  ASSERT_TRUE(subject.ok()) << subject.status();
  absl::StatusOr<std::string> csr = MakeCertificateRequestPem(*key, *subject);
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_THAT(*csr, StartsWith("-----BEGIN CERTIFICATE REQUEST-----\n"));
  if (!HaveOpenssl()) GTEST_SKIP() << "openssl not installed";
  TempDir dir;
  std::string output;
  ASSERT_EQ(RunCommand(Concat("openssl req -noout -text -verify -in ", dir.Write("xmpp.csr", *csr)),
                       &output),
            0)
      << output;
  EXPECT_THAT(output, HasSubstr("verify OK"));
  EXPECT_THAT(output, HasSubstr("CN = xmpp.example.com"));
  EXPECT_THAT(output, HasSubstr("O = Example Ltd"));
  EXPECT_THAT(output, HasSubstr("C = GB"));
  EXPECT_THAT(output, HasSubstr("DNS:xmpp.example.com, DNS:conference.example.com, "
                                "IP Address:10.1.2.3"));
  EXPECT_THAT(output, HasSubstr("ASN1 OID: prime256v1"));
}

TEST(PkiTest, RsaCertificateRequest) {
  absl::StatusOr<std::string> key = GeneratePrivateKeyPem(KeyType::kRsa2048);
  ASSERT_TRUE(key.ok());
  absl::StatusOr<std::string> csr =
      MakeCertificateRequestPem(*key, Subject("xmpp.example.com", {"xmpp.example.com"}));
  ASSERT_TRUE(csr.ok()) << csr.status();
  if (!HaveOpenssl()) GTEST_SKIP() << "openssl not installed";
  TempDir dir;
  std::string output;
  ASSERT_EQ(RunCommand(Concat("openssl req -noout -text -verify -in ", dir.Write("r.csr", *csr)),
                       &output),
            0)
      << output;
  EXPECT_THAT(output, HasSubstr("Public-Key: (2048 bit)"));
  EXPECT_THAT(output, HasSubstr("DNS:xmpp.example.com"));
}

TEST(PkiTest, SelfSignedCertificatePassesTheServerCheckForItsNames) {
  for (KeyType type : {KeyType::kEcP256, KeyType::kRsa2048}) {
    absl::StatusOr<std::string> key = GeneratePrivateKeyPem(type);
    ASSERT_TRUE(key.ok());
    CertificateSpec spec;
    spec.subject =
        Subject("lab.example.com", {"lab.example.com", "*.lab.example.com", "127.0.0.1"});
    absl::StatusOr<std::string> cert = MakeSelfSignedCertificatePem(*key, spec);
    ASSERT_TRUE(cert.ok()) << cert.status();
    const Clock::time_point now = Clock::now();
    for (std::string_view name : {"lab.example.com", "a.lab.example.com", "127.0.0.1"}) {
      EXPECT_TRUE(CheckServerCertificate(*key, *cert, "", name, now).ok())
          << name << ": " << CheckServerCertificate(*key, *cert, "", name, now);
    }
    // It is its own bundle's root, too.
    EXPECT_TRUE(CheckServerCertificate(*key, *cert, *cert, "lab.example.com", now).ok());
    absl::StatusOr<CertificateSummary> summary = SummarizeCertificate(*cert);
    ASSERT_TRUE(summary.ok());
    EXPECT_TRUE(summary->self_signed);
    EXPECT_EQ(summary->subject, "CN=lab.example.com");
    EXPECT_THAT(summary->subject_alt_names,
                ::testing::ElementsAre("lab.example.com", "*.lab.example.com", "127.0.0.1"));
  }
}

TEST(PkiTest, ValidityDatesAreThoseAskedFor) {
  absl::StatusOr<std::string> key = GeneratePrivateKeyPem();
  ASSERT_TRUE(key.ok());
  CertificateSpec spec;
  spec.subject = Subject("dates.example.com", {});
  // 2001-09-09 01:46:40 UTC to 2055-01-01 00:00:00 UTC (GeneralizedTime after 2049).
  spec.validity.not_before = Clock::from_time_t(1000000000);
  spec.validity.not_after = Clock::from_time_t(2682374400);
  absl::StatusOr<std::string> cert = MakeSelfSignedCertificatePem(*key, spec);
  ASSERT_TRUE(cert.ok()) << cert.status();
  absl::StatusOr<CertificateSummary> summary = SummarizeCertificate(*cert);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(Clock::to_time_t(summary->not_before), 1000000000);
  EXPECT_EQ(Clock::to_time_t(summary->not_after), 2682374400);
  EXPECT_THAT(summary->ToString(), HasSubstr("valid 2001-09-09 01:46:40 UTC to 2055-01-01 "
                                             "00:00:00 UTC"));
  if (!HaveOpenssl()) GTEST_SKIP() << "openssl not installed";
  TempDir dir;
  std::string output;
  ASSERT_EQ(
      RunCommand(Concat("openssl x509 -noout -dates -in ", dir.Write("d.crt", *cert)), &output), 0)
      << output;
  EXPECT_THAT(output, HasSubstr("notBefore=Sep  9 01:46:40 2001 GMT"));
  EXPECT_THAT(output, HasSubstr("notAfter=Jan  1 00:00:00 2055 GMT"));
}

TEST(PkiTest, IssuedCertificateChainsToItsCa) {
  absl::StatusOr<std::string> ca_key = GeneratePrivateKeyPem();
  absl::StatusOr<std::string> node_key = GeneratePrivateKeyPem(KeyType::kRsa2048);
  ASSERT_TRUE(ca_key.ok() && node_key.ok());
  CertificateSpec ca_spec;
  ca_spec.subject = Subject("Cluster CA", {});
  ca_spec.is_ca = true;
  absl::StatusOr<std::string> ca = MakeSelfSignedCertificatePem(*ca_key, ca_spec);
  ASSERT_TRUE(ca.ok()) << ca.status();
  CertificateSpec node_spec;
  node_spec.subject = Subject("node1.example.com", {"node1.example.com"});
  absl::StatusOr<std::string> node = IssueCertificatePem(*node_key, node_spec, *ca, *ca_key);
  ASSERT_TRUE(node.ok()) << node.status();
  absl::Status check =
      CheckServerCertificate(*node_key, *node, *ca, "node1.example.com", Clock::now());
  EXPECT_TRUE(check.ok()) << check;
  absl::StatusOr<CertificateSummary> summary = SummarizeCertificate(*node);
  ASSERT_TRUE(summary.ok());
  EXPECT_FALSE(summary->self_signed);
  EXPECT_EQ(summary->issuer, "CN=Cluster CA");

  // The CA's certificate with another key: refused.
  EXPECT_THAT(IssueCertificatePem(*node_key, node_spec, *ca, *node_key).status().message(),
              HasSubstr("the issuer's key does not match"));

  if (!HaveOpenssl()) GTEST_SKIP() << "openssl not installed";
  TempDir dir;
  std::string output;
  ASSERT_EQ(RunCommand(Concat("openssl verify -CAfile ", dir.Write("ca.crt", *ca),
                              " -purpose sslserver ", dir.Write("node.crt", *node)),
                       &output),
            0)
      << output;
  output.clear();
  ASSERT_EQ(
      RunCommand(Concat("openssl x509 -noout -text -in ", dir.Write("ca2.crt", *ca)), &output), 0);
  EXPECT_THAT(output, HasSubstr("CA:TRUE"));
}

TEST(PkiTest, ParsesTheSeedsArguments) {
  absl::StatusOr<CertificateSubject> subject =
      ParseSubjectArguments({"CN:a.example.com", "subAltName:a.example.com,b.example.com"});
  ASSERT_TRUE(subject.ok()) << subject.status();
  EXPECT_EQ(subject->common_name, "a.example.com");
  EXPECT_THAT(subject->subject_alt_names, ::testing::ElementsAre("a.example.com", "b.example.com"));

  EXPECT_THAT(ParseSubjectArguments({"CN:a", "CN:b"}).status().message(),
              HasSubstr("CN given twice"));
  EXPECT_THAT(ParseSubjectArguments({"XX:a"}).status().message(), HasSubstr("unknown key \"XX\""));
  EXPECT_THAT(ParseSubjectArguments({"CNa"}).status().message(), HasSubstr("is not KEY:VALUE"));
  EXPECT_THAT(ParseSubjectArguments({"subjectAltName:a,,b"}).status().message(),
              HasSubstr("empty name"));
  EXPECT_THAT(ParseSubjectArguments({"O:Example"}).status().message(), HasSubstr("give CN:"));
}

TEST(PkiTest, RefusesBadInput) {
  absl::StatusOr<std::string> key = GeneratePrivateKeyPem();
  ASSERT_TRUE(key.ok());
  EXPECT_THAT(MakeCertificateRequestPem("not a key", Subject("a", {})).status().message(),
              HasSubstr("not a PEM private key"));
  EXPECT_THAT(MakeCertificateRequestPem(*key, Subject(std::string(64, 'a'), {})).status().message(),
              HasSubstr("longer than 63 bytes"));
  EXPECT_THAT(MakeCertificateRequestPem(*key, Subject("a", {"bad name!"})).status().message(),
              HasSubstr("not a DNS name or IP address"));
  CertificateSubject country = Subject("a", {});
  country.country = "GBR";
  EXPECT_THAT(MakeCertificateRequestPem(*key, country).status().message(), HasSubstr("two-letter"));
  CertificateSpec backwards;
  backwards.subject = Subject("a", {});
  std::swap(backwards.validity.not_before, backwards.validity.not_after);
  EXPECT_THAT(MakeSelfSignedCertificatePem(*key, backwards).status().message(),
              HasSubstr("must end after it begins"));
}

}  // namespace
}  // namespace stanzad::tls
