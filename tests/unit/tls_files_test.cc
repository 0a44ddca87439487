// TlsFiles (server/tls_files.h): the node's TLS files read into contexts. No certificate
// means no client context; files that do not load mean none either (never a half-set
// one); the cluster's mutual TLS is all or nothing, and an error says how to fix it.
#include "server/tls_files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/unit/temp_dir.h"
#include "tests/unit/test_ca.h"
#include "tls/certificates.h"
#include "tls/pki.h"

namespace stanzad::server {
namespace {

using ::testing::HasSubstr;

// A node's files: its key and a certificate for example.com from a test CA, the CA's
// certificate as the cluster's trust bundle.
struct NodeFiles {
  testing_util::TempDir dir{"stanzad_tls_files"};
  TestCa ca;
  std::string key_path, cert_path, trust_path;
  std::string cert;

  NodeFiles() {
    const std::string key = *tls::GeneratePrivateKeyPem();
    tls::CertificateSpec spec;
    spec.subject.common_name = "example.com";
    spec.subject.subject_alt_names = {"example.com"};
    cert = *tls::IssueCertificatePem(key, spec, ca.cert, ca.key);
    key_path = dir.Write("xmpp.key", key);
    cert_path = dir.Write("xmpp.crt", cert);
    trust_path = dir.Write("cluster-ca.crt", ca.cert);
  }

  NodeConfig Config(bool with_trust) const {
    NodeConfig config;
    config.domain = "example.com";
    config.tls_key = key_path;
    config.tls_certificate = cert_path;
    if (with_trust) config.cluster_trust = trust_path;
    return config;
  }
};

TEST(TlsFilesTest, NoCertificateNoClientContext) {
  EXPECT_EQ(ClientTlsContext(NodeConfig()), nullptr);
}

TEST(TlsFilesTest, ClientContextFromTheFiles) {
  const NodeFiles files;
  EXPECT_NE(ClientTlsContext(files.Config(false)), nullptr);
  NodeConfig with_bundle = files.Config(false);
  with_bundle.tls_bundle = files.trust_path;  // the chain after the leaf
  EXPECT_NE(ClientTlsContext(with_bundle), nullptr);
}

TEST(TlsFilesTest, FilesThatDoNotLoadGiveNoClientContext) {
  const NodeFiles files;
  NodeConfig missing_key = files.Config(false);
  missing_key.tls_key = files.dir.Path("gone.key");
  EXPECT_EQ(ClientTlsContext(missing_key), nullptr);
  NodeConfig missing_bundle = files.Config(false);
  missing_bundle.tls_bundle = files.dir.Path("gone.pem");
  EXPECT_EQ(ClientTlsContext(missing_bundle), nullptr);
  NodeConfig wrong_key = files.Config(false);
  wrong_key.tls_key = files.dir.Write("other.key", *tls::GeneratePrivateKeyPem());
  EXPECT_EQ(ClientTlsContext(wrong_key), nullptr);  // the certificate is not for it
}

TEST(TlsFilesTest, ClusterTlsOnlyWithKeyCertificateAndTrust) {
  const NodeFiles files;
  for (const NodeConfig& config : {NodeConfig(), files.Config(false)}) {
    const absl::StatusOr<ClusterTls> tls = LoadClusterTls(config);
    ASSERT_TRUE(tls.ok()) << tls.status();
    EXPECT_EQ(tls->server, nullptr);
    EXPECT_EQ(tls->client, nullptr);
    EXPECT_EQ(tls->identity, "");
  }
  const absl::StatusOr<ClusterTls> tls = LoadClusterTls(files.Config(true));
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_NE(tls->server, nullptr);
  EXPECT_NE(tls->client, nullptr);
  EXPECT_EQ(tls->identity, *tls::PublicKeyDigest(files.cert));
}

TEST(TlsFilesTest, ClusterTlsThatDoesNotLoadSaysHowToFixIt) {
  const NodeFiles files;
  NodeConfig missing_trust = files.Config(true);
  missing_trust.cluster_trust = files.dir.Path("gone.pem");
  NodeConfig bad_trust = files.Config(true);
  bad_trust.cluster_trust = files.dir.Write("garbage.pem", "not a certificate\n");
  NodeConfig wrong_key = files.Config(true);
  wrong_key.tls_key = files.dir.Write("other.key", *tls::GeneratePrivateKeyPem());
  for (const NodeConfig& config : {missing_trust, bad_trust, wrong_key}) {
    const absl::StatusOr<ClusterTls> tls = LoadClusterTls(config);
    ASSERT_FALSE(tls.ok());
    EXPECT_EQ(tls.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(tls.status().message(), HasSubstr("the cluster's TLS files do not load: "));
    EXPECT_THAT(tls.status().message(),
                HasSubstr("(fix them, then 'stanzactl certs' or 'cluster trust' again)"));
  }
  EXPECT_THAT(LoadClusterTls(missing_trust).status().message(), HasSubstr("gone.pem"));
}

}  // namespace
}  // namespace stanzad::server
