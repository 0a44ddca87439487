#include "tls/wolfssl_util.h"

#include "core/base/check.h"
#include "core/base/concat.h"

namespace stanzad::tls::internal {

void EnsureWolfSslInitialized() {
  static const int result = wolfSSL_Init();
  CHECK_MSG(result == WOLFSSL_SUCCESS, "wolfSSL_Init failed");
}

std::string WolfSslErrorText(int code) {
  char text[WOLFSSL_MAX_ERROR_SZ] = {};
  wolfSSL_ERR_error_string_n(static_cast<unsigned long>(code), text, sizeof(text));
  return Concat("wolfSSL error ", std::to_string(code), ": ", text);
}

absl::StatusOr<std::unique_ptr<PrivateKey>> PrivateKey::FromPem(std::string_view pem) {
  EnsureWolfSslInitialized();
  if (pem.find("ENCRYPTED") != std::string_view::npos) {
    return absl::InvalidArgumentError("the private key is encrypted with a passphrase");
  }
  std::string der(pem.size(), '\0');
  const int der_size =
      wc_KeyPemToDer(Bytes(pem), static_cast<int>(pem.size()), reinterpret_cast<byte*>(der.data()),
                     static_cast<int>(der.size()), nullptr);
  if (der_size <= 0) {
    return absl::InvalidArgumentError(
        Concat("the private key is not a PEM private key: ", WolfSslErrorText(der_size)));
  }
  auto* bytes = reinterpret_cast<byte*>(der.data());
  const auto size = static_cast<word32>(der_size);
  word32 start = 0;
  if (wc_GetPkcs8TraditionalOffset(bytes, &start, size) < 0) start = 0;

  std::unique_ptr<PrivateKey> key(new PrivateKey());
  word32 index = start;
  if (wc_ecc_init(&key->ecc_) == 0) {
    key->ecc_initialized_ = true;
    if (wc_EccPrivateKeyDecode(bytes, &index, &key->ecc_, size) == 0) {
      key->type_ = ECC_TYPE;
      return key;
    }
  }
  index = start;
  if (wc_InitRsaKey(&key->rsa_, nullptr) == 0) {
    key->rsa_initialized_ = true;
    if (wc_RsaPrivateKeyDecode(bytes, &index, &key->rsa_, size) == 0) {
      key->type_ = RSA_TYPE;
      return key;
    }
  }
  return absl::InvalidArgumentError("the private key is neither an EC nor an RSA key");
}

PrivateKey::~PrivateKey() {
  if (ecc_initialized_) wc_ecc_free(&ecc_);
  if (rsa_initialized_) wc_FreeRsaKey(&rsa_);
}

absl::StatusOr<std::string> PrivateKey::PublicKeyDer() {
  std::string der(2048, '\0');
  auto* out = reinterpret_cast<byte*>(der.data());
  int size = 0;
  if (type_ == ECC_TYPE) {
    // wolfSSL 5.5.4 does not check that a file's public point belongs to its
    // private scalar (nor does wolfSSL_CTX_check_private_key): compute it.
    const int rc = wc_ecc_make_pub(&ecc_, nullptr);
    if (rc != 0) {
      return absl::InvalidArgumentError(
          Concat("the EC private key is damaged: ", WolfSslErrorText(rc)));
    }
    size = wc_EccPublicKeyToDer(&ecc_, out, static_cast<word32>(der.size()), 1);
  } else {
    size = wc_RsaKeyToPublicDer(&rsa_, out, static_cast<word32>(der.size()));
  }
  if (size <= 0) {
    return absl::InternalError(Concat("cannot encode the public key: ", WolfSslErrorText(size)));
  }
  der.resize(static_cast<size_t>(size));
  return der;
}

}  // namespace stanzad::tls::internal
