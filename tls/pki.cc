#include "tls/pki.h"

#include <arpa/inet.h>
#include <time.h>

#include <cstring>
#include <memory>
#include <utility>

#include "core/base/check.h"
#include "core/base/concat.h"
#include "tls/certificates.h"
#include "tls/wolfssl_util.h"

namespace stanzad::tls {
namespace {

using internal::Bytes;
using internal::PrivateKey;
using internal::WolfSslErrorText;

// Room for a certificate or request: a 2048-bit RSA key, names and up to
// CTC_MAX_ALT_SIZE bytes of subjectAltName.
constexpr size_t kDerBytesMax = 8 * 1024 + CTC_MAX_ALT_SIZE;

absl::Status WolfCryptError(std::string_view what, int code) {
  return absl::InternalError(Concat("pki: ", what, " failed: ", WolfSslErrorText(code)));
}

class Rng {
 public:
  Rng() : initialized_(wc_InitRng(&rng_) == 0) {}
  ~Rng() {
    if (initialized_) wc_FreeRng(&rng_);
  }
  Rng(const Rng&) = delete;
  Rng& operator=(const Rng&) = delete;
  bool ok() const { return initialized_; }
  WC_RNG* get() { return &rng_; }

 private:
  WC_RNG rng_;
  const bool initialized_;
};

// The key, or an error that says which key ("the issuer's key") is wrong.
absl::StatusOr<std::unique_ptr<PrivateKey>> LoadKey(std::string_view pem, std::string_view which) {
  absl::StatusOr<std::unique_ptr<PrivateKey>> key = PrivateKey::FromPem(pem);
  if (!key.ok()) {
    std::string message(key.status().message());
    if (!which.empty()) message.replace(0, std::string_view("the private key").size(), which);
    return absl::InvalidArgumentError(Concat("pki: ", message));
  }
  return key;
}

absl::StatusOr<std::string> DerToPem(const byte* der, int der_size, int type) {
  std::string pem(static_cast<size_t>(der_size) * 2 + 256, '\0');
  const int pem_size =
      wc_DerToPem(der, static_cast<word32>(der_size), reinterpret_cast<byte*>(pem.data()),
                  static_cast<word32>(pem.size()), type);
  if (pem_size <= 0) return WolfCryptError("PEM encoding", pem_size);
  pem.resize(static_cast<size_t>(pem_size));
  return pem;
}

absl::Status CopyName(std::string_view field, const std::string& value,
                      char (&out)[CTC_NAME_SIZE]) {
  if (value.size() >= CTC_NAME_SIZE) {
    return absl::InvalidArgumentError(Concat("pki: ", field, " \"", value, "\" is longer than ",
                                             std::to_string(CTC_NAME_SIZE - 1), " bytes"));
  }
  if (value.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(Concat("pki: ", field, " contains a NUL byte"));
  }
  std::memcpy(out, value.data(), value.size());
  out[value.size()] = '\0';
  return absl::OkStatus();
}

void AppendDerLength(size_t length, std::string* out) {
  if (length < 0x80) {
    out->push_back(static_cast<char>(length));
  } else if (length <= 0xFF) {
    out->push_back(static_cast<char>(0x81));
    out->push_back(static_cast<char>(length));
  } else {
    out->push_back(static_cast<char>(0x82));
    out->push_back(static_cast<char>(length >> 8));
    out->push_back(static_cast<char>(length & 0xFF));
  }
}

// GeneralNames (RFC 5280 §4.2.1.6): dNSName [2] or iPAddress [7] for each name.
absl::StatusOr<std::string> EncodeAltNames(const std::vector<std::string>& names) {
  std::string body;
  for (const std::string& name : names) {
    unsigned char address[16];
    if (inet_pton(AF_INET, name.c_str(), address) == 1) {
      body.push_back(static_cast<char>(0x87));
      AppendDerLength(4, &body);
      body.append(reinterpret_cast<const char*>(address), 4);
    } else if (inet_pton(AF_INET6, name.c_str(), address) == 1) {
      body.push_back(static_cast<char>(0x87));
      AppendDerLength(16, &body);
      body.append(reinterpret_cast<const char*>(address), 16);
    } else {
      if (name.empty() || name.size() > 253) {
        return absl::InvalidArgumentError(
            Concat("pki: subjectAltName \"", name, "\" is not a DNS name or IP address"));
      }
      for (char c : name) {
        const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                             (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '*';
        if (!allowed) {
          return absl::InvalidArgumentError(
              Concat("pki: subjectAltName \"", name, "\" is not a DNS name or IP address"));
        }
      }
      body.push_back(static_cast<char>(0x82));
      AppendDerLength(name.size(), &body);
      body.append(name);
    }
  }
  std::string sequence(1, static_cast<char>(0x30));
  AppendDerLength(body.size(), &sequence);
  sequence.append(body);
  if (sequence.size() > CTC_MAX_ALT_SIZE) {
    return absl::InvalidArgumentError("pki: the subjectAltName list is too long");
  }
  return sequence;
}

absl::Status FillSubject(const CertificateSubject& subject, Cert* cert) {
  if (subject.common_name.empty() && subject.subject_alt_names.empty()) {
    return absl::InvalidArgumentError("pki: give a common name (CN:) or subjectAltName");
  }
  if (!subject.country.empty() && subject.country.size() != 2) {
    return absl::InvalidArgumentError(
        Concat("pki: country \"", subject.country, "\" must be a two-letter code (C:GB)"));
  }
  for (absl::Status status :
       {CopyName("common name", subject.common_name, cert->subject.commonName),
        CopyName("organization", subject.organization, cert->subject.org),
        CopyName("organizational unit", subject.organizational_unit, cert->subject.unit),
        CopyName("locality", subject.locality, cert->subject.locality),
        CopyName("state", subject.state, cert->subject.state),
        CopyName("country", subject.country, cert->subject.country)}) {
    if (!status.ok()) return status;
  }
  if (!subject.subject_alt_names.empty()) {
    absl::StatusOr<std::string> alt_names = EncodeAltNames(subject.subject_alt_names);
    if (!alt_names.ok()) return alt_names.status();
    std::memcpy(cert->altNames, alt_names->data(), alt_names->size());
    cert->altNamesSz = static_cast<int>(alt_names->size());
  }
  return absl::OkStatus();
}

// An X.509 Time (RFC 5280 §4.1.2.5): UTCTime through 2049, GeneralizedTime after.
absl::Status EncodeTime(std::chrono::system_clock::time_point when, byte (&out)[CTC_DATE_SIZE],
                        int* size) {
  const time_t seconds = std::chrono::system_clock::to_time_t(when);
  struct tm utc;
  if (gmtime_r(&seconds, &utc) == nullptr || utc.tm_year + 1900 < 1950 ||
      utc.tm_year + 1900 > 9999) {
    return absl::InvalidArgumentError("pki: validity dates must lie between 1950 and 9999");
  }
  char text[20];
  const bool utc_time = utc.tm_year + 1900 < 2050;
  const size_t length = utc_time ? strftime(text, sizeof(text), "%y%m%d%H%M%SZ", &utc)
                                 : strftime(text, sizeof(text), "%Y%m%d%H%M%SZ", &utc);
  CHECK(length == 13 || length == 15);
  out[0] = utc_time ? 0x17 : 0x18;
  out[1] = static_cast<byte>(length);
  std::memcpy(out + 2, text, length);
  *size = static_cast<int>(length) + 2;
  return absl::OkStatus();
}

absl::StatusOr<std::string> CertificatePemToDer(std::string_view pem) {
  std::string der(pem.size(), '\0');
  const int size =
      wc_CertPemToDer(Bytes(pem), static_cast<int>(pem.size()), reinterpret_cast<byte*>(der.data()),
                      static_cast<int>(der.size()), CERT_TYPE);
  if (size <= 0) {
    return absl::InvalidArgumentError(
        Concat("pki: the issuer certificate is not PEM: ", WolfSslErrorText(size)));
  }
  der.resize(static_cast<size_t>(size));
  return der;
}

// Makes and signs a certificate for `subject_key`. `issuer_der` empty: self-signed.
absl::StatusOr<std::string> MakeCertificate(PrivateKey& subject_key, const CertificateSpec& spec,
                                            PrivateKey& signer, std::string_view issuer_der) {
  if (spec.validity.not_after <= spec.validity.not_before) {
    return absl::InvalidArgumentError("pki: the validity must end after it begins");
  }
  Rng rng;
  if (!rng.ok()) return absl::InternalError("pki: cannot initialise the random generator");
  auto cert = std::make_unique<Cert>();
  if (const int rc = wc_InitCert(cert.get()); rc != 0) return WolfCryptError("wc_InitCert", rc);
  absl::Status status = FillSubject(spec.subject, cert.get());
  if (!status.ok()) return status;
  status = EncodeTime(spec.validity.not_before, cert->beforeDate, &cert->beforeDateSz);
  if (!status.ok()) return status;
  status = EncodeTime(spec.validity.not_after, cert->afterDate, &cert->afterDateSz);
  if (!status.ok()) return status;
  cert->sigType = signer.signature_type();
  if (spec.is_ca) {
    cert->isCA = 1;
    cert->keyUsage = KEYUSE_KEY_CERT_SIGN | KEYUSE_CRL_SIGN | KEYUSE_DIGITAL_SIG;
  } else {
    cert->keyUsage = KEYUSE_DIGITAL_SIG;
    if (subject_key.type() == RSA_TYPE) cert->keyUsage |= KEYUSE_KEY_ENCIPHER;
    // Cluster links use the same certificate as TLS server and client.
    cert->extKeyUsage = EXTKEYUSE_SERVER_AUTH | EXTKEYUSE_CLIENT_AUTH;
  }
  int rc = wc_SetSubjectKeyIdFromPublicKey_ex(cert.get(), subject_key.type(), subject_key.key());
  if (rc != 0) return WolfCryptError("subject key id", rc);
  if (issuer_der.empty()) {
    cert->selfSigned = 1;
    rc = wc_SetAuthKeyIdFromPublicKey_ex(cert.get(), subject_key.type(), subject_key.key());
    if (rc != 0) return WolfCryptError("authority key id", rc);
  } else {
    cert->selfSigned = 0;
    rc = wc_SetIssuerBuffer(cert.get(), Bytes(issuer_der), static_cast<int>(issuer_der.size()));
    if (rc != 0) return WolfCryptError("issuer name", rc);
    rc =
        wc_SetAuthKeyIdFromCert(cert.get(), Bytes(issuer_der), static_cast<int>(issuer_der.size()));
    if (rc != 0) return WolfCryptError("authority key id", rc);
  }
  std::string der(kDerBytesMax, '\0');
  auto* buffer = reinterpret_cast<byte*>(der.data());
  rc = wc_MakeCert_ex(cert.get(), buffer, static_cast<word32>(der.size()), subject_key.type(),
                      subject_key.key(), rng.get());
  if (rc < 0) return WolfCryptError("making the certificate", rc);
  rc = wc_SignCert_ex(cert->bodySz, cert->sigType, buffer, static_cast<word32>(der.size()),
                      signer.type(), signer.key(), rng.get());
  if (rc < 0) return WolfCryptError("signing the certificate", rc);
  return DerToPem(buffer, rc, CERT_TYPE);
}

}  // namespace

Validity Validity::DaysFromNow(int days) {
  const auto now = std::chrono::system_clock::now();
  return Validity{.not_before = now - std::chrono::minutes(5),
                  .not_after = now + std::chrono::hours(24) * days};
}

absl::StatusOr<CertificateSubject> ParseSubjectArguments(
    const std::vector<std::string>& arguments) {
  CertificateSubject subject;
  struct Field {
    std::string_view key;
    std::string* value;
  };
  const Field fields[] = {{"CN", &subject.common_name},
                          {"O", &subject.organization},
                          {"OU", &subject.organizational_unit},
                          {"L", &subject.locality},
                          {"ST", &subject.state},
                          {"C", &subject.country}};
  bool alt_names_seen = false;
  for (const std::string& argument : arguments) {
    const size_t colon = argument.find(':');
    if (colon == std::string::npos || colon == 0) {
      return absl::InvalidArgumentError(Concat(
          "pki: \"", argument, "\" is not KEY:VALUE (keys: CN, O, OU, L, ST, C, subjectAltName)"));
    }
    const std::string_view key = std::string_view(argument).substr(0, colon);
    const std::string_view value = std::string_view(argument).substr(colon + 1);
    if (key == "subjectAltName" || key == "subAltName") {
      if (alt_names_seen) return absl::InvalidArgumentError("pki: subjectAltName given twice");
      alt_names_seen = true;
      size_t begin = 0;
      while (begin <= value.size()) {
        size_t end = value.find(',', begin);
        if (end == std::string_view::npos) end = value.size();
        if (end == begin) {
          return absl::InvalidArgumentError(
              Concat("pki: empty name in subjectAltName \"", value, "\""));
        }
        subject.subject_alt_names.emplace_back(value.substr(begin, end - begin));
        begin = end + 1;
      }
      continue;
    }
    bool known = false;
    for (const Field& field : fields) {
      if (key != field.key) continue;
      known = true;
      if (!field.value->empty()) {
        return absl::InvalidArgumentError(Concat("pki: ", key, " given twice"));
      }
      if (value.empty()) return absl::InvalidArgumentError(Concat("pki: ", key, " is empty"));
      *field.value = std::string(value);
    }
    if (!known) {
      return absl::InvalidArgumentError(
          Concat("pki: unknown key \"", key, "\" (keys: CN, O, OU, L, ST, C, subjectAltName)"));
    }
  }
  if (subject.common_name.empty() && subject.subject_alt_names.empty()) {
    return absl::InvalidArgumentError("pki: give CN:NAME or subjectAltName:NAME,...");
  }
  return subject;
}

absl::StatusOr<std::string> GeneratePrivateKeyPem(KeyType type) {
  internal::EnsureWolfSslInitialized();
  Rng rng;
  if (!rng.ok()) return absl::InternalError("pki: cannot initialise the random generator");
  byte der[4096];
  int der_size = 0;
  if (type == KeyType::kEcP256) {
    ecc_key key;
    if (const int rc = wc_ecc_init(&key); rc != 0) return WolfCryptError("wc_ecc_init", rc);
    int rc = wc_ecc_make_key_ex(rng.get(), 32, &key, ECC_SECP256R1);
    der_size = rc == 0 ? wc_EccKeyToDer(&key, der, sizeof(der)) : rc;
    wc_ecc_free(&key);
    if (der_size <= 0) return WolfCryptError("EC key generation", der_size);
    return DerToPem(der, der_size, ECC_PRIVATEKEY_TYPE);
  }
  RsaKey key;
  if (const int rc = wc_InitRsaKey(&key, nullptr); rc != 0) return WolfCryptError("RSA init", rc);
  const int rc = wc_MakeRsaKey(&key, 2048, WC_RSA_EXPONENT, rng.get());
  der_size = rc == 0 ? wc_RsaKeyToDer(&key, der, sizeof(der)) : rc;
  wc_FreeRsaKey(&key);
  if (der_size <= 0) return WolfCryptError("RSA key generation", der_size);
  return DerToPem(der, der_size, PRIVATEKEY_TYPE);
}

absl::StatusOr<std::string> MakeCertificateRequestPem(std::string_view key_pem,
                                                      const CertificateSubject& subject) {
  internal::EnsureWolfSslInitialized();
  absl::StatusOr<std::unique_ptr<PrivateKey>> key = LoadKey(key_pem, "");
  if (!key.ok()) return key.status();
  Rng rng;
  if (!rng.ok()) return absl::InternalError("pki: cannot initialise the random generator");
  auto request = std::make_unique<Cert>();
  if (const int rc = wc_InitCert(request.get()); rc != 0) return WolfCryptError("wc_InitCert", rc);
  request->version = 0;  // PKCS #10 v1
  request->sigType = (*key)->signature_type();
  absl::Status status = FillSubject(subject, request.get());
  if (!status.ok()) return status;
  std::string der(kDerBytesMax, '\0');
  auto* buffer = reinterpret_cast<byte*>(der.data());
  int rc = wc_MakeCertReq_ex(request.get(), buffer, static_cast<word32>(der.size()), (*key)->type(),
                             (*key)->key());
  if (rc < 0) return WolfCryptError("making the request", rc);
  rc = wc_SignCert_ex(request->bodySz, request->sigType, buffer, static_cast<word32>(der.size()),
                      (*key)->type(), (*key)->key(), rng.get());
  if (rc < 0) return WolfCryptError("signing the request", rc);
  return DerToPem(buffer, rc, CERTREQ_TYPE);
}

absl::StatusOr<std::string> MakeSelfSignedCertificatePem(std::string_view key_pem,
                                                         const CertificateSpec& spec) {
  internal::EnsureWolfSslInitialized();
  absl::StatusOr<std::unique_ptr<PrivateKey>> key = LoadKey(key_pem, "");
  if (!key.ok()) return key.status();
  return MakeCertificate(**key, spec, **key, "");
}

absl::StatusOr<std::string> IssueCertificatePem(std::string_view subject_key_pem,
                                                const CertificateSpec& spec,
                                                std::string_view issuer_cert_pem,
                                                std::string_view issuer_key_pem) {
  internal::EnsureWolfSslInitialized();
  absl::StatusOr<std::unique_ptr<PrivateKey>> subject_key =
      LoadKey(subject_key_pem, "the subject's key");
  if (!subject_key.ok()) return subject_key.status();
  absl::StatusOr<std::unique_ptr<PrivateKey>> issuer_key =
      LoadKey(issuer_key_pem, "the issuer's key");
  if (!issuer_key.ok()) return issuer_key.status();
  absl::StatusOr<std::string> issuer_der = CertificatePemToDer(issuer_cert_pem);
  if (!issuer_der.ok()) return issuer_der.status();
  if (absl::Status match = CheckKeyMatchesCertificate(issuer_key_pem, issuer_cert_pem);
      !match.ok()) {
    return absl::InvalidArgumentError(
        Concat("pki: the issuer's key does not match the issuer's certificate"));
  }
  return MakeCertificate(**subject_key, spec, **issuer_key, *issuer_der);
}

}  // namespace stanzad::tls
