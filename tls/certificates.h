// Checks a server's key, certificate and CA bundle before they are used, and
// explains each problem in one line that names the cause and the fix:
//
//   the private key /etc/stanzad/xmpp.key does not match the certificate
//   /etc/stanzad/xmpp.crt (CN=xmpp.example.com): use the key that the
//   certificate request was made with
//
// What is checked, in this order: each input parses; the key matches the
// certificate; the certificate is valid at `now`; its names cover the domain
// (subjectAltName DNS names, or the CN when there are none; "*.example.com"
// covers "a.example.com" but neither "example.com" nor "a.b.example.com");
// the bundle is the chain from the certificate's issuer up to a self-signed
// root, in that order, each certificate signed by the next and valid at `now`.
//
// Thread safety: every function may be called from any thread.
#ifndef STANZAD_TLS_CERTIFICATES_H_
#define STANZAD_TLS_CERTIFICATES_H_

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stanzad::tls {

// What an operator wants to see of a certificate.
struct CertificateSummary {
  std::string subject;  // "CN=xmpp.example.com, O=Example"
  std::string issuer;
  std::vector<std::string> subject_alt_names;  // DNS names and IP addresses
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
  bool self_signed = false;

  // "subject CN=xmpp.example.com; names xmpp.example.com, *.example.com;
  //  issuer CN=Example CA; valid until 2026-05-01 12:00:00 UTC"
  std::string ToString() const;
};

// The first certificate of a PEM text.
absl::StatusOr<CertificateSummary> SummarizeCertificate(std::string_view cert_pem);

// SHA-256 of the public key (its DER SubjectPublicKeyInfo) of the first certificate of a
// PEM text: 32 bytes that name the key, the same for every certificate issued for it.
absl::StatusOr<std::string> PublicKeyDigest(std::string_view cert_pem);

// OK if `key_pem` is the private key of the (first) certificate in `cert_pem`.
absl::Status CheckKeyMatchesCertificate(std::string_view key_pem, std::string_view cert_pem);

// All the checks above. `cert_pem` may hold intermediates after the
// certificate (they count as the start of the bundle); `bundle_pem` may be
// empty (then only what cert_pem holds is checked as a chain).
absl::Status CheckServerCertificate(std::string_view key_pem, std::string_view cert_pem,
                                    std::string_view bundle_pem, std::string_view domain,
                                    std::chrono::system_clock::time_point now);

// The same for files: messages name the paths. `bundle_path` may be empty.
absl::Status CheckServerCertificateFiles(const std::string& key_path, const std::string& cert_path,
                                         const std::string& bundle_path, std::string_view domain,
                                         std::chrono::system_clock::time_point now);

// Reads a key or certificate file (at most 1 MiB); errors name the path.
absl::StatusOr<std::string> ReadPemFile(const std::string& path);

}  // namespace stanzad::tls

#endif  // STANZAD_TLS_CERTIFICATES_H_
