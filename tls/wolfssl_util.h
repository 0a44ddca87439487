// What the tls/ files share about wolfSSL: initialisation, error text, owning
// pointers and private keys. Internal to tls/; includes wolfSSL's headers in
// the right order (options.h first) so that no other file has to.
#ifndef STANZAD_TLS_WOLFSSL_UTIL_H_
#define STANZAD_TLS_WOLFSSL_UTIL_H_

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>
// clang-format on

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace stanzad::tls::internal {

// Calls wolfSSL_Init once per process (thread-safe); every entry point that
// uses wolfSSL calls this first.
void EnsureWolfSslInitialized();

// "wolfSSL error -188: ASN no signer error to confirm failure".
std::string WolfSslErrorText(int code);

struct X509Deleter {
  void operator()(WOLFSSL_X509* x509) const { wolfSSL_X509_free(x509); }
};
using X509Ptr = std::unique_ptr<WOLFSSL_X509, X509Deleter>;

struct CtxDeleter {
  void operator()(WOLFSSL_CTX* ctx) const { wolfSSL_CTX_free(ctx); }
};
using CtxPtr = std::unique_ptr<WOLFSSL_CTX, CtxDeleter>;

inline const unsigned char* Bytes(std::string_view text) {
  return reinterpret_cast<const unsigned char*>(text.data());
}

// A decoded EC or RSA private key.
class PrivateKey {
 public:
  // SEC 1, PKCS #1 or unencrypted PKCS #8 PEM. Errors say what the text is not.
  static absl::StatusOr<std::unique_ptr<PrivateKey>> FromPem(std::string_view pem);
  ~PrivateKey();
  PrivateKey(const PrivateKey&) = delete;
  PrivateKey& operator=(const PrivateKey&) = delete;

  int type() const { return type_; }  // ECC_TYPE or RSA_TYPE
  void* key() { return type_ == ECC_TYPE ? static_cast<void*>(&ecc_) : &rsa_; }
  int signature_type() const { return type_ == ECC_TYPE ? CTC_SHA256wECDSA : CTC_SHA256wRSA; }

  // The public key as a DER SubjectPublicKeyInfo, computed from the private
  // key (not copied from the file), as a certificate holds it.
  absl::StatusOr<std::string> PublicKeyDer();

 private:
  PrivateKey() = default;

  int type_ = 0;
  ecc_key ecc_;
  RsaKey rsa_;
  bool ecc_initialized_ = false;
  bool rsa_initialized_ = false;
};

}  // namespace stanzad::tls::internal

#endif  // STANZAD_TLS_WOLFSSL_UTIL_H_
