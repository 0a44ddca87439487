#include "core/xmpp/component_handshake.h"

// wolfSSL's headers need its build options first.
// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha.h>
// clang-format on

#include "core/base/check.h"
#include "core/base/hex.h"

namespace stanzad::xmpp {

std::string ComponentHandshakeDigest(std::string_view stream_id, std::string_view secret) {
  wc_Sha sha;
  CHECK_EQ(wc_InitSha(&sha), 0);
  CHECK_EQ(wc_ShaUpdate(&sha, reinterpret_cast<const byte*>(stream_id.data()),
                        static_cast<word32>(stream_id.size())),
           0);
  CHECK_EQ(wc_ShaUpdate(&sha, reinterpret_cast<const byte*>(secret.data()),
                        static_cast<word32>(secret.size())),
           0);
  byte digest[WC_SHA_DIGEST_SIZE];
  CHECK_EQ(wc_ShaFinal(&sha, digest), 0);
  wc_ShaFree(&sha);
  return HexOf(std::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return difference == 0;
}

}  // namespace stanzad::xmpp
