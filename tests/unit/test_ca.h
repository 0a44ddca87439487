// TestCa: a certificate authority made for a test, and the mutual-TLS contexts of a node
// whose certificate it issued (the cluster port's and the data port's, as a node with
// 'certs' and 'cluster trust' has them).
#ifndef STANZAD_TESTS_UNIT_TEST_CA_H_
#define STANZAD_TESTS_UNIT_TEST_CA_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>

#include "tls/certificates.h"
#include "tls/pki.h"
#include "tls/tls_session.h"

namespace stanzad {

// A CA, and contexts for a node whose certificate that CA issued.
struct TestCa {
  std::string key, cert;
  TestCa() {
    key = *tls::GeneratePrivateKeyPem();
    tls::CertificateSpec spec;
    spec.subject.common_name = "cluster CA";
    spec.is_ca = true;
    cert = *tls::MakeSelfSignedCertificatePem(key, spec);
  }
  // (server, client); *identity: the certificate key's digest (tls::PublicKeyDigest).
  std::pair<std::shared_ptr<const tls::TlsContext>, std::shared_ptr<const tls::TlsContext>>
  NodeContexts(const std::string& name, const std::string& trust,
               std::string* identity = nullptr) const {
    const std::string node_key = *tls::GeneratePrivateKeyPem();
    tls::CertificateSpec spec;
    spec.subject.common_name = name;
    spec.subject.subject_alt_names = {name};
    const std::string node_cert = *tls::IssueCertificatePem(node_key, spec, cert, key);
    if (identity != nullptr) *identity = *tls::PublicKeyDigest(node_cert);
    auto server = tls::TlsContext::Server(node_cert, node_key, {trust});
    auto client = tls::TlsContext::Client(trust, true, {node_cert, node_key});
    EXPECT_TRUE(server.ok()) << server.status();
    EXPECT_TRUE(client.ok()) << client.status();
    return {*server, *client};
  }
};

}  // namespace stanzad

#endif  // STANZAD_TESTS_UNIT_TEST_CA_H_
