// Keys, certificate requests and certificates, all PEM: what an operator
// needs to get a certificate for a node (the seed's `pki csr`), and what labs
// and tests need to do without a CA (`pki selfsigned`, a small CA for cluster
// links).
//
//   std::string key = *GeneratePrivateKeyPem();              // EC P-256
//   CertificateSubject subject = *ParseSubjectArguments({"CN:xmpp.example.com",
//                                                        "subjectAltName:a.example.com,10.0.0.1"});
//   std::string csr = *MakeCertificateRequestPem(key, subject);
//
// Thread safety: every function may be called from any thread.
#ifndef STANZAD_TLS_PKI_H_
#define STANZAD_TLS_PKI_H_

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stanzad::tls {

enum class KeyType { kEcP256, kRsa2048 };

// A certificate's or request's subject. Each field is at most 63 bytes (a
// wolfSSL limit); empty fields are left out. Country is two letters.
struct CertificateSubject {
  std::string common_name;          // CN
  std::string organization;         // O
  std::string organizational_unit;  // OU
  std::string locality;             // L
  std::string state;                // ST
  std::string country;              // C
  // DNS names ("a.example.com", "*.example.com") and IP addresses.
  std::vector<std::string> subject_alt_names;
};

// Parses the seed's `pki csr NAME ...` arguments that follow NAME:
// "CN:value", "O:", "OU:", "L:", "ST:", "C:" and "subjectAltName:a,b,c"
// (also spelled "subAltName:"). Each key at most once.
absl::StatusOr<CertificateSubject> ParseSubjectArguments(const std::vector<std::string>& arguments);

// A new private key: "-----BEGIN EC PRIVATE KEY-----" (SEC 1) for kEcP256,
// "-----BEGIN RSA PRIVATE KEY-----" (PKCS #1) for kRsa2048.
absl::StatusOr<std::string> GeneratePrivateKeyPem(KeyType type = KeyType::kEcP256);

// A PKCS #10 request ("-----BEGIN CERTIFICATE REQUEST-----") for `subject`,
// signed with `key_pem` (EC or RSA, SEC 1 / PKCS #1 / PKCS #8, unencrypted).
absl::StatusOr<std::string> MakeCertificateRequestPem(std::string_view key_pem,
                                                      const CertificateSubject& subject);

struct Validity {
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;

  // From five minutes ago (for peers whose clocks lag) for `days` days.
  static Validity DaysFromNow(int days);
};

struct CertificateSpec {
  CertificateSubject subject;
  Validity validity = Validity::DaysFromNow(365);
  // A CA certificate (basicConstraints CA:TRUE, keyCertSign) instead of a
  // server/client one (digitalSignature, serverAuth and clientAuth).
  bool is_ca = false;
};

// A certificate for `key_pem` signed by itself ("-----BEGIN CERTIFICATE-----").
absl::StatusOr<std::string> MakeSelfSignedCertificatePem(std::string_view key_pem,
                                                         const CertificateSpec& spec);

// A certificate for the public half of `subject_key_pem`, issued by the CA
// whose certificate and key are given. Fails if that key does not match that
// certificate.
absl::StatusOr<std::string> IssueCertificatePem(std::string_view subject_key_pem,
                                                const CertificateSpec& spec,
                                                std::string_view issuer_cert_pem,
                                                std::string_view issuer_key_pem);

}  // namespace stanzad::tls

#endif  // STANZAD_TLS_PKI_H_
