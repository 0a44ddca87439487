#include "tls/certificates.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include "core/base/check.h"
#include "core/base/concat.h"
#include "tls/wolfssl_util.h"

// clang-format off
#include <wolfssl/openssl/evp.h>
#include <wolfssl/wolfcrypt/sha256.h>
// clang-format on

namespace stanzad::tls {
namespace {

using internal::Bytes;
using internal::WolfSslErrorText;
using internal::X509Ptr;
using Clock = std::chrono::system_clock;

constexpr size_t kPemFileBytesMax = 1024 * 1024;
constexpr std::string_view kBeginCertificate = "-----BEGIN CERTIFICATE-----";
constexpr std::string_view kEndCertificate = "-----END CERTIFICATE-----";

struct EvpPkeyDeleter {
  void operator()(WOLFSSL_EVP_PKEY* key) const { wolfSSL_EVP_PKEY_free(key); }
};
using EvpPkeyPtr = std::unique_ptr<WOLFSSL_EVP_PKEY, EvpPkeyDeleter>;

// Names an input in messages: "the private key /etc/x.key" or "the private key".
struct Inputs {
  std::string key;
  std::string cert;
  std::string bundle;
};

std::string FormatTime(Clock::time_point when) {
  const time_t seconds = Clock::to_time_t(when);
  struct tm utc;
  if (gmtime_r(&seconds, &utc) == nullptr) return "?";
  char text[40];
  strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S UTC", &utc);
  return text;
}

std::optional<Clock::time_point> ToTimePoint(const WOLFSSL_ASN1_TIME* time) {
  if (time == nullptr) return std::nullopt;
  struct tm calendar;
  std::memset(&calendar, 0, sizeof(calendar));
  if (wolfSSL_ASN1_TIME_to_tm(time, &calendar) != WOLFSSL_SUCCESS) return std::nullopt;
  return Clock::from_time_t(timegm(&calendar));
}

// "/C=GB/O=Example/CN=xmpp.example.com" -> "C=GB, O=Example, CN=xmpp.example.com".
std::string NameText(WOLFSSL_X509_NAME* name) {
  if (name == nullptr) return "";
  char buffer[1024] = {};
  if (wolfSSL_X509_NAME_oneline(name, buffer, sizeof(buffer)) == nullptr) return "";
  std::string text;
  std::string_view rest(buffer);
  if (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
  for (char c : rest) {
    if (c == '/') {
      text.append(", ");
    } else if (static_cast<unsigned char>(c) >= 0x20) {
      text.push_back(c);
    }
  }
  return text;
}

// One DER element: reads the tag and value at the front of *in and drops them.
bool ReadElement(std::string_view* in, unsigned char* tag, std::string_view* value) {
  if (in->size() < 2) return false;
  *tag = static_cast<unsigned char>((*in)[0]);
  size_t length = static_cast<unsigned char>((*in)[1]);
  size_t header = 2;
  if (length & 0x80) {
    const size_t octets = length & 0x7F;
    if (octets == 0 || octets > 3 || in->size() < 2 + octets) return false;
    length = 0;
    for (size_t i = 0; i < octets; ++i) {
      length = (length << 8) | static_cast<unsigned char>((*in)[2 + i]);
    }
    header += octets;
  }
  if (in->size() - header < length) return false;
  *value = in->substr(header, length);
  in->remove_prefix(header + length);
  return true;
}

// The subjectAltName DNS names and IP addresses, in the certificate's order
// (wolfSSL's own list comes reversed). RFC 5280 §4.1 and §4.2.1.6.
std::vector<std::string> AltNames(std::string_view der) {
  std::vector<std::string> names;
  unsigned char tag = 0;
  std::string_view certificate, tbs, element;
  if (!ReadElement(&der, &tag, &certificate) || tag != 0x30) return names;
  if (!ReadElement(&certificate, &tag, &tbs) || tag != 0x30) return names;
  while (ReadElement(&tbs, &tag, &element)) {
    if (tag != 0xA3) continue;  // [3] extensions
    std::string_view extensions, extension;
    if (!ReadElement(&element, &tag, &extensions) || tag != 0x30) return names;
    while (ReadElement(&extensions, &tag, &extension)) {
      std::string_view oid, value;
      if (tag != 0x30 || !ReadElement(&extension, &tag, &oid) || tag != 0x06) return names;
      if (oid != std::string_view("\x55\x1D\x11", 3)) continue;  // 2.5.29.17
      if (!ReadElement(&extension, &tag, &value)) return names;
      if (tag == 0x01 && !ReadElement(&extension, &tag, &value)) return names;  // critical
      std::string_view general_names, name;
      if (tag != 0x04 || !ReadElement(&value, &tag, &general_names) || tag != 0x30) return names;
      while (ReadElement(&general_names, &tag, &name)) {
        char text[INET6_ADDRSTRLEN] = {};
        if (tag == 0x82) {  // dNSName
          names.emplace_back(name);
        } else if (tag == 0x87 && (name.size() == 4 || name.size() == 16) &&
                   inet_ntop(name.size() == 4 ? AF_INET : AF_INET6, name.data(), text,
                             sizeof(text)) != nullptr) {  // iPAddress
          names.emplace_back(text);
        }
      }
      return names;
    }
  }
  return names;
}

std::string CommonName(WOLFSSL_X509* x509) {
  char buffer[256] = {};
  const int length = wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(x509),
                                                       NID_commonName, buffer, sizeof(buffer));
  return length > 0 ? std::string(buffer, static_cast<size_t>(length)) : "";
}

std::string Lower(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!lower.empty() && lower.back() == '.') lower.pop_back();
  return lower;
}

// RFC 6125 §6.4.3, restricted: a wildcard is a whole left-most label.
bool NameCovers(std::string_view pattern_text, std::string_view domain_text) {
  const std::string pattern = Lower(pattern_text);
  const std::string domain = Lower(domain_text);
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    const std::string_view suffix = std::string_view(pattern).substr(1);  // ".example.com"
    if (domain.size() <= suffix.size() || !domain.ends_with(suffix)) return false;
    const std::string_view label =
        std::string_view(domain).substr(0, domain.size() - suffix.size());
    return label.find('.') == std::string_view::npos;
  }
  return pattern == domain;
}

std::string Join(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& name : names) {
    if (!text.empty()) text.append(", ");
    text.append(name);
  }
  return text;
}

// One parsed certificate and how messages name it.
struct ParsedCertificate {
  X509Ptr x509;
  std::string label;  // "the certificate xmpp.crt (CN=xmpp.example.com)"
  std::string subject;
  std::string issuer;
  std::string der;
};

absl::Status NotACertificate(std::string_view pem, std::string_view name) {
  std::string_view what = "no PEM certificate (-----BEGIN CERTIFICATE-----)";
  std::string_view fix = "give the certificate file your CA returned";
  if (pem.find("CERTIFICATE REQUEST-----") != std::string_view::npos) {
    what = "a certificate request, not a certificate";
    fix = "send the request to your CA and give the certificate it returns";
  } else if (pem.find("PRIVATE KEY-----") != std::string_view::npos) {
    what = "a private key, not a certificate";
    fix = "give the certificate file here and the key file as the key";
  } else if (!pem.empty() && static_cast<unsigned char>(pem[0]) == 0x30) {
    what = "DER, not PEM";
    fix = "convert it: openssl x509 -inform der -in FILE -out FILE.pem";
  }
  return absl::InvalidArgumentError(Concat(name, " holds ", what, ": ", fix));
}

// Every certificate of a PEM text, in order. `name` names the text in messages.
absl::StatusOr<std::vector<ParsedCertificate>> ParseCertificates(std::string_view pem,
                                                                 std::string_view name) {
  std::vector<ParsedCertificate> certificates;
  size_t position = 0;
  while (true) {
    const size_t begin = pem.find(kBeginCertificate, position);
    if (begin == std::string_view::npos) break;
    const size_t end = pem.find(kEndCertificate, begin);
    const std::string number = std::to_string(certificates.size() + 1);
    if (end == std::string_view::npos) {
      return absl::InvalidArgumentError(Concat("certificate ", number, " of ", name,
                                               " has no END CERTIFICATE line: the file is cut "
                                               "short; copy it again"));
    }
    const std::string_view block = pem.substr(begin, end + kEndCertificate.size() - begin);
    X509Ptr x509(wolfSSL_X509_load_certificate_buffer(Bytes(block), static_cast<int>(block.size()),
                                                      WOLFSSL_FILETYPE_PEM));
    if (x509 == nullptr) {
      return absl::InvalidArgumentError(Concat("certificate ", number, " of ", name,
                                               " is damaged (not valid base64 DER X.509): copy "
                                               "it again from the CA's file"));
    }
    ParsedCertificate certificate;
    certificate.subject = NameText(wolfSSL_X509_get_subject_name(x509.get()));
    certificate.issuer = NameText(wolfSSL_X509_get_issuer_name(x509.get()));
    int der_size = 0;
    const unsigned char* der = wolfSSL_X509_get_der(x509.get(), &der_size);
    if (der != nullptr && der_size > 0) {
      certificate.der.assign(reinterpret_cast<const char*>(der), static_cast<size_t>(der_size));
    }
    certificate.label =
        Concat("certificate ", number, " of ", name, " (", certificate.subject, ")");
    certificate.x509 = std::move(x509);
    certificates.push_back(std::move(certificate));
    position = end + kEndCertificate.size();
  }
  return certificates;
}

// OK if `key_pem` parses and belongs to `certificate`.
absl::Status CheckKey(std::string_view key_pem, const ParsedCertificate& certificate,
                      const Inputs& inputs) {
  if (key_pem.find("ENCRYPTED") != std::string_view::npos) {
    return absl::InvalidArgumentError(
        Concat(inputs.key,
               " is encrypted with a passphrase: store it without one (openssl pkey -in KEY "
               "-out PLAIN_KEY) and keep it readable only by stanzad"));
  }
  absl::StatusOr<std::unique_ptr<internal::PrivateKey>> key =
      internal::PrivateKey::FromPem(key_pem);
  if (!key.ok()) {
    std::string_view hint = "give the key file made with the certificate request (pki csr)";
    if (key_pem.find("-----BEGIN CERTIFICATE") != std::string_view::npos) {
      hint = "it holds a certificate or request: give the private key file instead";
    }
    return absl::InvalidArgumentError(
        Concat(inputs.key, " is not a readable PEM private key (EC or RSA): ", hint));
  }
  absl::StatusOr<std::string> public_key = (*key)->PublicKeyDer();
  if (!public_key.ok()) {
    return absl::InvalidArgumentError(
        Concat(inputs.key, " is damaged (", std::string(public_key.status().message()),
               "): use the key file made with the certificate request"));
  }
  unsigned char certificate_key[4096];
  int certificate_key_size = sizeof(certificate_key);
  if (wolfSSL_X509_get_pubkey_buffer(certificate.x509.get(), certificate_key,
                                     &certificate_key_size) != WOLFSSL_SUCCESS ||
      std::string_view(reinterpret_cast<const char*>(certificate_key),
                       static_cast<size_t>(certificate_key_size)) != *public_key) {
    return absl::InvalidArgumentError(Concat(inputs.key, " does not match ", inputs.cert, " (",
                                             certificate.subject,
                                             "): use the key that the certificate request was "
                                             "made with, or request a new certificate for this "
                                             "key"));
  }
  return absl::OkStatus();
}

absl::Status CheckDates(const ParsedCertificate& certificate, Clock::time_point now) {
  const std::optional<Clock::time_point> not_before =
      ToTimePoint(wolfSSL_X509_get_notBefore(certificate.x509.get()));
  const std::optional<Clock::time_point> not_after =
      ToTimePoint(wolfSSL_X509_get_notAfter(certificate.x509.get()));
  if (!not_before.has_value() || !not_after.has_value()) {
    return absl::InvalidArgumentError(
        Concat(certificate.label, " has unreadable validity dates: get it reissued"));
  }
  if (now < *not_before) {
    return absl::FailedPreconditionError(
        Concat(certificate.label, " is not valid until ", FormatTime(*not_before), " (now is ",
               FormatTime(now), "): check this machine's clock, or wait until then"));
  }
  if (now > *not_after) {
    return absl::FailedPreconditionError(Concat(certificate.label, " expired on ",
                                                FormatTime(*not_after),
                                                ": renew it with your CA (pki csr makes the "
                                                "request) and install the new one"));
  }
  return absl::OkStatus();
}

// `issuer`'s subject is `subject`'s issuer name.
bool NamesMatch(const ParsedCertificate& issuer, const ParsedCertificate& subject) {
  return wolfSSL_X509_NAME_cmp(wolfSSL_X509_get_subject_name(issuer.x509.get()),
                               wolfSSL_X509_get_issuer_name(subject.x509.get())) == 0;
}

// `issuer` signed `subject`: names match and the signature verifies.
bool Signed(const ParsedCertificate& issuer, const ParsedCertificate& subject) {
  if (!NamesMatch(issuer, subject)) return false;
  EvpPkeyPtr key(wolfSSL_X509_get_pubkey(issuer.x509.get()));
  return key != nullptr && wolfSSL_X509_verify(subject.x509.get(), key.get()) == WOLFSSL_SUCCESS;
}

absl::Status CheckChain(const ParsedCertificate& leaf, std::vector<ParsedCertificate>& chain,
                        const Inputs& inputs, Clock::time_point now) {
  // A bundle that repeats the certificate itself (fullchain.pem) is fine.
  std::erase_if(chain, [&](const ParsedCertificate& c) { return c.der == leaf.der; });
  const ParsedCertificate* current = &leaf;
  size_t next = 0;
  while (!Signed(*current, *current)) {
    if (next == chain.size()) {
      if (chain.empty()) return absl::OkStatus();  // no bundle: nothing to check
      return absl::InvalidArgumentError(
          Concat(inputs.bundle, " does not reach a root: ", current->label, " is issued by ",
                 current->issuer, ", which it does not hold: append that CA's certificate",
                 " (the chain goes up to a self-signed root)"));
    }
    if (Signed(chain[next], *current)) {
      current = &chain[next++];
      if (absl::Status status = CheckDates(*current, now); !status.ok()) return status;
      continue;
    }
    for (size_t k = 0; k < chain.size(); ++k) {
      if (k != next && Signed(chain[k], *current)) {
        return absl::InvalidArgumentError(Concat(
            inputs.bundle, " is in the wrong order: the issuer of ", current->label, " is ",
            chain[k].label, ", but ", chain[next].label,
            " comes next: list the issuer of the server's certificate first and the root last"));
      }
    }
    if (NamesMatch(chain[next], *current)) {
      return absl::InvalidArgumentError(
          Concat(chain[next].label, " has the name of the issuer of ", current->label,
                 " but did not sign it: the bundle is from another CA (or an older key) with the "
                 "same name; get the bundle from the CA that issued the certificate"));
    }
    return absl::InvalidArgumentError(Concat(
        inputs.bundle, " does not hold the issuer of ", current->label, " (", current->issuer,
        "): ", chain[next].label, " is not it; put that CA's certificate in the bundle"));
  }
  if (next < chain.size()) {
    return absl::InvalidArgumentError(Concat(
        chain[next].label, " is not part of the chain: ", current->label,
        " is a self-signed root, so nothing comes after it; remove it from ", inputs.bundle));
  }
  return absl::OkStatus();
}

absl::Status CheckAll(std::string_view key_pem, std::string_view cert_pem,
                      std::string_view bundle_pem, std::string_view domain, Clock::time_point now,
                      const Inputs& inputs) {
  internal::EnsureWolfSslInitialized();
  absl::StatusOr<std::vector<ParsedCertificate>> certificates =
      ParseCertificates(cert_pem, inputs.cert);
  if (!certificates.ok()) return certificates.status();
  if (certificates->empty()) return NotACertificate(cert_pem, inputs.cert);
  absl::StatusOr<std::vector<ParsedCertificate>> bundle =
      ParseCertificates(bundle_pem, inputs.bundle);
  if (!bundle.ok()) return bundle.status();
  if (bundle->empty() && !bundle_pem.empty()) return NotACertificate(bundle_pem, inputs.bundle);

  ParsedCertificate& leaf = certificates->front();
  leaf.label = Concat(inputs.cert, " (", leaf.subject, ")");
  if (absl::Status status = CheckKey(key_pem, leaf, inputs); !status.ok()) return status;
  if (absl::Status status = CheckDates(leaf, now); !status.ok()) return status;

  if (!domain.empty()) {
    std::vector<std::string> names = AltNames(leaf.der);
    bool has_dns_name = false;
    for (const std::string& name : names) {
      unsigned char address[16];
      if (inet_pton(AF_INET, name.c_str(), address) != 1 &&
          inet_pton(AF_INET6, name.c_str(), address) != 1) {
        has_dns_name = true;
      }
    }
    // RFC 6125 §6.4.4: the CN counts only when there is no DNS name.
    if (!has_dns_name) {
      const std::string common_name = CommonName(leaf.x509.get());
      if (!common_name.empty()) names.push_back(common_name);
    }
    bool covered = false;
    for (const std::string& name : names) covered = covered || NameCovers(name, domain);
    if (!covered) {
      return absl::InvalidArgumentError(
          Concat(leaf.label, " covers ", names.empty() ? "no names" : Join(names), " but not ",
                 domain, ": get a certificate whose subjectAltName includes ", domain,
                 " (pki csr ... subjectAltName:", domain, ")"));
    }
  }

  // Intermediates after the certificate in its own file come first in the chain.
  std::vector<ParsedCertificate> chain;
  for (size_t i = 1; i < certificates->size(); ++i) chain.push_back(std::move((*certificates)[i]));
  for (ParsedCertificate& certificate : *bundle) chain.push_back(std::move(certificate));
  return CheckChain(leaf, chain, inputs, now);
}

}  // namespace

std::string CertificateSummary::ToString() const {
  return Concat("subject ", subject, "; names ",
                subject_alt_names.empty() ? "(none)" : Join(subject_alt_names), "; issuer ",
                self_signed ? "itself (self-signed)" : issuer, "; valid ", FormatTime(not_before),
                " to ", FormatTime(not_after));
}

absl::StatusOr<CertificateSummary> SummarizeCertificate(std::string_view cert_pem) {
  internal::EnsureWolfSslInitialized();
  absl::StatusOr<std::vector<ParsedCertificate>> certificates =
      ParseCertificates(cert_pem, "the certificate");
  if (!certificates.ok()) return certificates.status();
  if (certificates->empty()) return NotACertificate(cert_pem, "the certificate");
  const ParsedCertificate& certificate = certificates->front();
  CertificateSummary summary;
  summary.subject = certificate.subject;
  summary.issuer = certificate.issuer;
  summary.subject_alt_names = AltNames(certificate.der);
  summary.not_before =
      ToTimePoint(wolfSSL_X509_get_notBefore(certificate.x509.get())).value_or(Clock::time_point());
  summary.not_after =
      ToTimePoint(wolfSSL_X509_get_notAfter(certificate.x509.get())).value_or(Clock::time_point());
  summary.self_signed = Signed(certificate, certificate);
  return summary;
}

absl::Status CheckKeyMatchesCertificate(std::string_view key_pem, std::string_view cert_pem) {
  internal::EnsureWolfSslInitialized();
  const Inputs inputs{.key = "the private key", .cert = "the certificate", .bundle = ""};
  absl::StatusOr<std::vector<ParsedCertificate>> certificates =
      ParseCertificates(cert_pem, inputs.cert);
  if (!certificates.ok()) return certificates.status();
  if (certificates->empty()) return NotACertificate(cert_pem, inputs.cert);
  return CheckKey(key_pem, certificates->front(), inputs);
}

absl::Status CheckServerCertificate(std::string_view key_pem, std::string_view cert_pem,
                                    std::string_view bundle_pem, std::string_view domain,
                                    Clock::time_point now) {
  return CheckAll(
      key_pem, cert_pem, bundle_pem, domain, now,
      Inputs{.key = "the private key", .cert = "the certificate", .bundle = "the bundle"});
}

absl::Status CheckServerCertificateFiles(const std::string& key_path, const std::string& cert_path,
                                         const std::string& bundle_path, std::string_view domain,
                                         Clock::time_point now) {
  absl::StatusOr<std::string> key = ReadPemFile(key_path);
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> cert = ReadPemFile(cert_path);
  if (!cert.ok()) return cert.status();
  std::string bundle;
  if (!bundle_path.empty()) {
    absl::StatusOr<std::string> contents = ReadPemFile(bundle_path);
    if (!contents.ok()) return contents.status();
    bundle = *std::move(contents);
  }
  return CheckAll(*key, *cert, bundle, domain, now,
                  Inputs{.key = Concat("the private key ", key_path),
                         .cert = Concat("the certificate ", cert_path),
                         .bundle = Concat("the bundle ", bundle_path)});
}

absl::StatusOr<std::string> ReadPemFile(const std::string& path) {
  // O_NONBLOCK: a FIFO given as a key must not hold the caller (the daemon's control
  // thread) until something writes to it; it is refused below as not a file.
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    const int error = errno;
    return absl::NotFoundError(
        Concat("cannot read ", path, ": ", std::strerror(error),
               error == EACCES ? " (stanzad's user needs read permission)" : ""));
  }
  struct stat info {};
  if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(
        Concat(path, " is not a regular file (a directory, FIFO, socket or device)",
               ". fix: give the path of the PEM file itself"));
  }
  std::string contents;
  char chunk[16 * 1024];
  while (true) {
    const ssize_t got = read(fd, chunk, sizeof(chunk));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int error = errno;
      close(fd);
      return absl::DataLossError(Concat("cannot read ", path, ": ", std::strerror(error)));
    }
    if (got == 0) break;
    contents.append(chunk, static_cast<size_t>(got));
    if (contents.size() > kPemFileBytesMax) {
      close(fd);
      return absl::InvalidArgumentError(
          Concat(path, " is larger than 1 MiB: it is not a key or certificate file"));
    }
  }
  close(fd);
  if (contents.empty()) return absl::InvalidArgumentError(Concat(path, " is empty"));
  return contents;
}

absl::StatusOr<std::string> PublicKeyDigest(std::string_view cert_pem) {
  internal::EnsureWolfSslInitialized();
  absl::StatusOr<std::vector<ParsedCertificate>> certificates =
      ParseCertificates(cert_pem, "the certificate");
  if (!certificates.ok()) return certificates.status();
  if (certificates->empty()) return NotACertificate(cert_pem, "the certificate");
  WOLFSSL_X509* x509 = certificates->front().x509.get();
  int size = 0;
  if (wolfSSL_X509_get_pubkey_buffer(x509, nullptr, &size) != WOLFSSL_SUCCESS || size <= 0) {
    return absl::InvalidArgumentError("the certificate's public key cannot be read");
  }
  std::string key(static_cast<size_t>(size), '\0');
  if (wolfSSL_X509_get_pubkey_buffer(x509, reinterpret_cast<unsigned char*>(key.data()), &size) !=
      WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError("the certificate's public key cannot be read");
  }
  key.resize(static_cast<size_t>(size));
  std::string digest(WC_SHA256_DIGEST_SIZE, '\0');
  if (wc_Sha256Hash(reinterpret_cast<const byte*>(key.data()), static_cast<word32>(key.size()),
                    reinterpret_cast<byte*>(digest.data())) != 0) {
    return absl::InternalError("SHA-256 failed");
  }
  return digest;
}

}  // namespace stanzad::tls
