#include "core/sasl/scram.h"

// wolfSSL's headers need its build options first.
// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/pwdbased.h>
// clang-format on

#include <string.h>

#include <climits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/base/decimal.h"
#include "core/sasl/base64.h"
#include "core/sasl/saslprep.h"
#include "core/xmpp/component_handshake.h"

namespace stanzad::sasl {
namespace {

// Bytes of the salt shown for an unknown user: what a typical stored salt has.
constexpr size_t kUnknownUserSaltBytes = 16;
constexpr size_t kUnknownUserSaltKeyBytesMin = 16;
// An authzid (a JID in XMPP) longer than this is refused (RFC 7622 §3.1: 3071 + 2).
constexpr size_t kAuthzidBytesMax = 3 * config::kUserNameBytesMax + 2;

// ---------------------------------------------------------------------------
// Hashes

int WolfHashType(ScramMechanism mechanism) {
  // WC_SHA and WC_SHA256 belong to different enums: no conditional expression.
  if (mechanism == ScramMechanism::kSha1) return WC_SHA;
  return WC_SHA256;
}

std::string HashOf(ScramMechanism mechanism, std::string_view data) {
  std::string digest(ScramKeyBytes(mechanism), '\0');
  const auto* in = reinterpret_cast<const byte*>(data.data());
  const auto size = static_cast<word32>(data.size());
  auto* out = reinterpret_cast<byte*>(digest.data());
  const int result =
      mechanism == ScramMechanism::kSha1 ? wc_ShaHash(in, size, out) : wc_Sha256Hash(in, size, out);
  CHECK_EQ(result, 0);
  return digest;
}

std::string HmacOf(ScramMechanism mechanism, std::string_view key, std::string_view data) {
  Hmac hmac;
  CHECK_EQ(wc_HmacInit(&hmac, nullptr, INVALID_DEVID), 0);
  CHECK_EQ(wc_HmacSetKey(&hmac, WolfHashType(mechanism), reinterpret_cast<const byte*>(key.data()),
                         static_cast<word32>(key.size())),
           0);
  CHECK_EQ(wc_HmacUpdate(&hmac, reinterpret_cast<const byte*>(data.data()),
                         static_cast<word32>(data.size())),
           0);
  std::string mac(ScramKeyBytes(mechanism), '\0');
  CHECK_EQ(wc_HmacFinal(&hmac, reinterpret_cast<byte*>(mac.data())), 0);
  wc_HmacFree(&hmac);
  return mac;
}

// REQUIRES: a.size() == b.size().
std::string XorOf(std::string_view a, std::string_view b) {
  CHECK_EQ(a.size(), b.size());
  std::string out(a.size(), '\0');
  for (size_t i = 0; i < a.size(); ++i) out[i] = static_cast<char>(a[i] ^ b[i]);
  return out;
}

// Overwrites a secret before its memory is released.
void Wipe(std::string* secret) { explicit_bzero(secret->data(), secret->size()); }

// ---------------------------------------------------------------------------
// Key derivation (RFC 5802 §3)

struct ScramKeys {
  ScramKeys() = default;
  ScramKeys(ScramKeys&&) = default;
  ScramKeys& operator=(ScramKeys&&) = default;
  ~ScramKeys() { Wipe(&client_key); }

  std::string client_key;  // HMAC(SaltedPassword, "Client Key"): what proves the client
  std::string stored_key;  // H(ClientKey)
  std::string server_key;  // HMAC(SaltedPassword, "Server Key")
};

// REQUIRES: 1 <= iteration_count <= INT_MAX.
ScramKeys DeriveScramKeys(ScramMechanism mechanism, std::string_view prepared_password,
                          std::string_view salt, uint32_t iteration_count) {
  CHECK_GE(iteration_count, 1u);
  CHECK_LE(iteration_count, static_cast<uint32_t>(INT_MAX));
  const size_t key_bytes = ScramKeyBytes(mechanism);
  std::string salted_password(key_bytes, '\0');
  CHECK_EQ(wc_PBKDF2(reinterpret_cast<byte*>(salted_password.data()),
                     reinterpret_cast<const byte*>(prepared_password.data()),
                     static_cast<int>(prepared_password.size()),
                     reinterpret_cast<const byte*>(salt.data()), static_cast<int>(salt.size()),
                     static_cast<int>(iteration_count), static_cast<int>(key_bytes),
                     WolfHashType(mechanism)),
           0);
  ScramKeys keys;
  keys.client_key = HmacOf(mechanism, salted_password, "Client Key");
  keys.stored_key = HashOf(mechanism, keys.client_key);
  keys.server_key = HmacOf(mechanism, salted_password, "Server Key");
  Wipe(&salted_password);
  return keys;
}

// ---------------------------------------------------------------------------
// The grammar of RFC 5802 §7

// Well-formed UTF-8 without NUL (value-char and saslname exclude it), within the limit.
absl::Status CheckMessageText(std::string_view message) {
  if (message.empty()) return absl::InvalidArgumentError("message is empty");
  if (message.size() > kScramMessageBytesMax) {
    return absl::InvalidArgumentError(
        Concat("message is longer than ", std::to_string(kScramMessageBytesMax), " bytes"));
  }
  if (message.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("message contains a NUL byte");
  }
  if (!IsValidUtf8(message)) return absl::InvalidArgumentError("message is not valid UTF-8");
  return absl::OkStatus();
}

// No value holds ',' (saslnames escape it; nonces, base64 and extension values exclude
// it), so splitting at ',' finds the attributes exactly.
std::vector<std::string_view> SplitAttributes(std::string_view text) {
  std::vector<std::string_view> fields;
  size_t begin = 0;
  while (true) {
    const size_t comma = text.find(',', begin);
    if (comma == std::string_view::npos) {
      fields.push_back(text.substr(begin));
      return fields;
    }
    fields.push_back(text.substr(begin, comma - begin));
    begin = comma + 1;
  }
}

// The value of `field` if it is "<name>=<value>"; nullopt otherwise. The value may be
// empty: callers check what their attribute needs.
std::optional<std::string_view> AttributeValue(std::string_view field, char name) {
  if (field.size() < 2 || field[0] != name || field[1] != '=') return std::nullopt;
  return field.substr(2);
}

bool IsAsciiAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// An optional extension (RFC 5802 §7 "extensions"): ALPHA "=" 1*value-char, with a name
// that is none of SCRAM's own attributes (a second "r=" is not an extension). The caller
// has checked for NUL and UTF-8.
bool IsExtension(std::string_view field) {
  if (field.size() < 3 || !IsAsciiAlpha(field[0]) || field[1] != '=') return false;
  static constexpr std::string_view kScramAttributes = "acemnprsiv";
  return kScramAttributes.find(field[0]) == std::string_view::npos;
}

// printable = %x21-2B / %x2D-7E: printable ASCII without ','.
bool IsValidNonce(std::string_view nonce) {
  if (nonce.empty() || nonce.size() > kScramNonceBytesMax) return false;
  for (char c : nonce) {
    if (c < 0x21 || c > 0x7E || c == ',') return false;
  }
  return true;
}

// saslname = 1*(value-safe-char / "=2C" / "=3D"): the name with "=2C" and "=3D" turned
// back into ',' and '='; nullopt for any other '=' or an empty name.
std::optional<std::string> DecodeSaslname(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::string name;
  name.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '=') {
      name.push_back(text[i]);
      continue;
    }
    const std::string_view escape = text.substr(i, 3);
    if (escape == "=2C") {
      name.push_back(',');
    } else if (escape == "=3D") {
      name.push_back('=');
    } else {
      return std::nullopt;
    }
    i += 2;
  }
  return name;
}

std::string EncodeSaslname(std::string_view name) {
  std::string text;
  text.reserve(name.size());
  for (char c : name) {
    if (c == ',') {
      text.append("=2C");
    } else if (c == '=') {
      text.append("=3D");
    } else {
      text.push_back(c);
    }
  }
  return text;
}

// posit-number = %x31-39 *DIGIT, read as a uint32; nullopt if malformed or too large.
std::optional<uint32_t> ParseIterationCount(std::string_view text) {
  if (text.starts_with('0')) return std::nullopt;
  return ParseDecimal<uint32_t>(text);
}

}  // namespace

// ---------------------------------------------------------------------------
// Mechanisms and credentials

std::string_view ScramMechanismName(ScramMechanism mechanism) {
  return mechanism == ScramMechanism::kSha1 ? "SCRAM-SHA-1" : "SCRAM-SHA-256";
}

std::optional<ScramMechanism> ScramMechanismFromName(std::string_view name) {
  if (name == "SCRAM-SHA-1") return ScramMechanism::kSha1;
  if (name == "SCRAM-SHA-256") return ScramMechanism::kSha256;
  return std::nullopt;
}

size_t ScramKeyBytes(ScramMechanism mechanism) {
  return mechanism == ScramMechanism::kSha1 ? config::kSha1Bytes : config::kSha256Bytes;
}

std::string MakeScramNonce(std::string_view random_bytes) {
  CHECK_GE(random_bytes.size(), 12u);
  return Base64Encode(random_bytes);
}

config::ScramSecret DeriveScramSecret(ScramMechanism mechanism, std::string_view prepared_password,
                                      std::string_view salt, uint32_t iteration_count) {
  ScramKeys keys = DeriveScramKeys(mechanism, prepared_password, salt, iteration_count);
  config::ScramSecret secret;
  secret.salt = std::string(salt);
  secret.iteration_count = iteration_count;
  secret.stored_key = std::move(keys.stored_key);
  secret.server_key = std::move(keys.server_key);
  return secret;
}

absl::StatusOr<config::ScramSecret> MakeScramCredentials(ScramMechanism mechanism,
                                                         std::string_view password,
                                                         std::string_view salt,
                                                         uint32_t iteration_count) {
  if (salt.size() < config::kScramSaltBytesMin || salt.size() > config::kScramSaltBytesMax) {
    return absl::InvalidArgumentError("SCRAM salt must be 8..128 bytes");
  }
  if (iteration_count < config::kScramIterationsMin ||
      iteration_count > config::kScramIterationsMax) {
    return absl::InvalidArgumentError("SCRAM iteration count must be 4096..10000000");
  }
  absl::StatusOr<std::string> prepared = SaslPrep(password, SaslPrepMode::kStored);
  if (!prepared.ok()) {
    return absl::InvalidArgumentError(
        Concat("password: ", std::string(prepared.status().message())));
  }
  if (prepared->empty()) return absl::InvalidArgumentError("password is empty after SASLprep");
  config::ScramSecret secret = DeriveScramSecret(mechanism, *prepared, salt, iteration_count);
  Wipe(&*prepared);
  return secret;
}

// ---------------------------------------------------------------------------
// ScramServer

ScramServer::ScramServer(Params params) : params_(std::move(params)) {
  CHECK_MSG(params_.lookup != nullptr, "ScramServer needs a credentials lookup");
  CHECK_MSG(
      IsValidNonce(params_.server_nonce) && params_.server_nonce.size() >= kScramNonceBytesMin,
      "server nonce must be 16..512 printable ASCII characters without ','");
  CHECK_MSG(params_.unknown_user_salt_key.size() >= kUnknownUserSaltKeyBytesMin,
            "unknown_user_salt_key must be at least 16 bytes");
}

SaslStep ScramServer::Fail(SaslCondition condition, std::string reason) {
  state_ = State::kFinished;
  return SaslStep::Failure(condition, Concat(ScramMechanismName(params_.mechanism), ": ", reason));
}

SaslStep ScramServer::Step(std::string_view client_message) {
  switch (state_) {
    case State::kAwaitingClientFirst:
      return HandleClientFirst(client_message);
    case State::kAwaitingClientFinal:
      return HandleClientFinal(client_message);
    case State::kFinished:
      break;
  }
  return Fail(SaslCondition::kMalformedRequest, "message after the exchange ended");
}

SaslStep ScramServer::HandleClientFirst(std::string_view message) {
  if (absl::Status text = CheckMessageText(message); !text.ok()) {
    return Fail(SaslCondition::kMalformedRequest,
                Concat("client-first ", std::string(text.message())));
  }
  // gs2-header = gs2-cbind-flag "," [authzid] ","
  if (message.substr(0, 2) == "p=") {
    return Fail(SaslCondition::kMalformedRequest,
                "client asks for channel binding (gs2 flag 'p'), which only the -PLUS "
                "mechanisms do, and this server offers none");
  }
  if (message.size() < 2 || (message[0] != 'n' && message[0] != 'y') || message[1] != ',') {
    return Fail(SaslCondition::kMalformedRequest,
                "client-first does not start with gs2 flag 'n' or 'y' and ','");
  }
  const size_t authzid_end = message.find(',', 2);
  if (authzid_end == std::string_view::npos) {
    return Fail(SaslCondition::kMalformedRequest, "client-first has no complete gs2 header");
  }
  const std::string_view authzid_field = message.substr(2, authzid_end - 2);
  if (!authzid_field.empty()) {
    const std::optional<std::string_view> value = AttributeValue(authzid_field, 'a');
    std::optional<std::string> authzid;
    if (value.has_value()) authzid = DecodeSaslname(*value);
    if (!authzid.has_value()) {
      return Fail(SaslCondition::kMalformedRequest,
                  "gs2 header authzid is not \"a=\" and a properly escaped name");
    }
    if (authzid->size() > kAuthzidBytesMax) {
      return Fail(SaslCondition::kMalformedRequest, "authzid is too long");
    }
    authzid_ = std::move(*authzid);
  }
  const std::string_view bare = message.substr(authzid_end + 1);

  // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
  const std::vector<std::string_view> fields = SplitAttributes(bare);
  if (AttributeValue(fields[0], 'm').has_value()) {
    return Fail(SaslCondition::kMalformedRequest,
                "client requires a mandatory extension (\"m=\"), and none is supported");
  }
  if (fields.size() < 2) {
    return Fail(SaslCondition::kMalformedRequest, "client-first lacks username or nonce");
  }
  const std::optional<std::string_view> username_value = AttributeValue(fields[0], 'n');
  std::optional<std::string> username;
  if (username_value.has_value()) username = DecodeSaslname(*username_value);
  if (!username.has_value()) {
    return Fail(SaslCondition::kMalformedRequest,
                "client-first username is not \"n=\" and a properly escaped name");
  }
  const std::optional<std::string_view> client_nonce = AttributeValue(fields[1], 'r');
  if (!client_nonce.has_value() || !IsValidNonce(*client_nonce)) {
    return Fail(SaslCondition::kMalformedRequest,
                "client-first nonce is not \"r=\" and 1..512 printable characters");
  }
  for (size_t i = 2; i < fields.size(); ++i) {
    if (!IsExtension(fields[i])) {
      return Fail(SaslCondition::kMalformedRequest,
                  "client-first has an attribute out of order or malformed");
    }
  }
  absl::StatusOr<std::string> prepared = SaslPrep(*username, SaslPrepMode::kQuery);
  if (!prepared.ok()) {
    return Fail(SaslCondition::kMalformedRequest,
                Concat("username: ", std::string(prepared.status().message())));
  }
  if (prepared->empty() || prepared->size() > config::kUserNameBytesMax) {
    return Fail(SaslCondition::kMalformedRequest,
                "username is empty or longer than 1023 bytes after SASLprep");
  }
  username_ = std::move(*prepared);

  const std::optional<config::UserCredentials> credentials = params_.lookup(username_);
  const std::optional<config::ScramSecret>* secret = nullptr;
  if (credentials.has_value()) {
    if (!config::ValidateUserCredentials(*credentials).ok()) {
      return Fail(SaslCondition::kTemporaryAuthFailure, "stored credentials are invalid");
    }
    secret = params_.mechanism == ScramMechanism::kSha1 ? &credentials->scram_sha1
                                                        : &credentials->scram_sha256;
  }
  user_known_ = secret != nullptr && secret->has_value();
  if (user_known_) {
    secret_ = **secret;
  } else {
    // Salt and iteration count stable per name, as a real user's; keys that never match.
    std::string salt =
        HmacOf(ScramMechanism::kSha256, params_.unknown_user_salt_key,
               Concat(ScramMechanismName(params_.mechanism), std::string_view("\0", 1), username_));
    salt.resize(kUnknownUserSaltBytes);
    secret_.salt = std::move(salt);
    secret_.iteration_count = kScramIterationsDefault;
    secret_.stored_key.assign(ScramKeyBytes(params_.mechanism), '\0');
    secret_.server_key.assign(ScramKeyBytes(params_.mechanism), '\0');
  }

  gs2_header_ = std::string(message.substr(0, authzid_end + 1));
  client_first_bare_ = std::string(bare);
  nonce_ = Concat(*client_nonce, params_.server_nonce);
  server_first_ = Concat("r=", nonce_, ",s=", Base64Encode(secret_.salt),
                         ",i=", std::to_string(secret_.iteration_count));
  state_ = State::kAwaitingClientFinal;
  return SaslStep::Challenge(server_first_);
}

SaslStep ScramServer::HandleClientFinal(std::string_view message) {
  if (absl::Status text = CheckMessageText(message); !text.ok()) {
    return Fail(SaslCondition::kMalformedRequest,
                Concat("client-final ", std::string(text.message())));
  }
  // client-final-message = channel-binding "," nonce ["," extensions] "," proof
  const std::vector<std::string_view> fields = SplitAttributes(message);
  if (fields.size() < 3) {
    return Fail(SaslCondition::kMalformedRequest,
                "client-final lacks channel binding, nonce or proof");
  }
  const std::optional<std::string_view> channel_binding = AttributeValue(fields[0], 'c');
  std::optional<std::string> gs2_header;
  if (channel_binding.has_value()) gs2_header = Base64Decode(*channel_binding);
  if (!gs2_header.has_value()) {
    return Fail(SaslCondition::kMalformedRequest,
                "client-final channel binding is not \"c=\" and base64");
  }
  const std::optional<std::string_view> nonce = AttributeValue(fields[1], 'r');
  if (!nonce.has_value() || !IsValidNonce(*nonce)) {
    return Fail(SaslCondition::kMalformedRequest,
                "client-final nonce is not \"r=\" and 1..512 printable characters");
  }
  for (size_t i = 2; i + 1 < fields.size(); ++i) {
    if (!IsExtension(fields[i])) {
      return Fail(SaslCondition::kMalformedRequest,
                  "client-final has an attribute out of order or malformed");
    }
  }
  const std::string_view proof_field = fields.back();
  const std::optional<std::string_view> proof_value = AttributeValue(proof_field, 'p');
  std::optional<std::string> proof;
  if (proof_value.has_value()) proof = Base64Decode(*proof_value);
  if (!proof.has_value() || proof->size() != ScramKeyBytes(params_.mechanism)) {
    return Fail(SaslCondition::kMalformedRequest,
                "client-final does not end with \"p=\" and a base64 proof of the hash's size");
  }
  // Both are public values: comparing them in ordinary time leaks nothing.
  if (*gs2_header != gs2_header_) {
    return Fail(SaslCondition::kNotAuthorized,
                "client-final channel binding differs from the client-first gs2 header");
  }
  if (*nonce != nonce_) {
    return Fail(SaslCondition::kNotAuthorized, "client-final nonce differs from the server's");
  }

  const std::string_view without_proof = message.substr(0, message.size() - proof_field.size() - 1);
  const std::string auth_message =
      Concat(client_first_bare_, ",", server_first_, ",", without_proof);
  const ScramMechanism mechanism = params_.mechanism;
  std::string client_key = XorOf(*proof, HmacOf(mechanism, secret_.stored_key, auth_message));
  const bool proof_matches =
      xmpp::ConstantTimeEquals(HashOf(mechanism, client_key), secret_.stored_key);
  Wipe(&client_key);
  if (!proof_matches || !user_known_) {
    return Fail(SaslCondition::kNotAuthorized, "wrong password or unknown user");
  }
  if (!authzid_.empty() &&
      !(params_.authorize != nullptr && params_.authorize(username_, authzid_))) {
    return Fail(SaslCondition::kInvalidAuthzid, "user may not act as the authzid it gave");
  }
  state_ = State::kFinished;
  succeeded_ = true;
  return SaslStep::Success(
      Concat("v=", Base64Encode(HmacOf(mechanism, secret_.server_key, auth_message))));
}

// ---------------------------------------------------------------------------
// ScramClient

ScramClient::ScramClient(Params params, std::string prepared_password, std::string client_first,
                         size_t gs2_header_bytes)
    : params_(std::move(params)),
      prepared_password_(std::move(prepared_password)),
      client_first_(std::move(client_first)),
      gs2_header_bytes_(gs2_header_bytes) {}

absl::StatusOr<ScramClient> ScramClient::Create(Params params) {
  if (!IsValidNonce(params.client_nonce) || params.client_nonce.size() < kScramNonceBytesMin) {
    return absl::InvalidArgumentError(
        "client nonce must be 16..512 printable ASCII characters without ','");
  }
  if (params.iteration_count_min < 1 || params.iteration_count_min > params.iteration_count_max ||
      params.iteration_count_max > static_cast<uint32_t>(INT_MAX)) {
    return absl::InvalidArgumentError("iteration count bounds are not a valid range");
  }
  if (params.authzid.size() > kAuthzidBytesMax || params.authzid.find('\0') != std::string::npos ||
      !IsValidUtf8(params.authzid)) {
    return absl::InvalidArgumentError("authzid is too long or not UTF-8 without NUL");
  }
  absl::StatusOr<std::string> username = SaslPrep(params.username, SaslPrepMode::kQuery);
  if (!username.ok()) {
    return absl::InvalidArgumentError(
        Concat("username: ", std::string(username.status().message())));
  }
  absl::StatusOr<std::string> password = SaslPrep(params.password, SaslPrepMode::kQuery);
  if (!password.ok()) {
    return absl::InvalidArgumentError(
        Concat("password: ", std::string(password.status().message())));
  }
  if (username->empty() || password->empty()) {
    return absl::InvalidArgumentError("username and password must not be empty after SASLprep");
  }
  std::string gs2_header =
      params.authzid.empty() ? "n,," : Concat("n,a=", EncodeSaslname(params.authzid), ",");
  std::string client_first =
      Concat(gs2_header, "n=", EncodeSaslname(*username), ",r=", params.client_nonce);
  if (client_first.size() > kScramMessageBytesMax) {
    return absl::InvalidArgumentError("client-first would be too long");
  }
  const size_t gs2_header_bytes = gs2_header.size();
  return ScramClient(std::move(params), std::move(*password), std::move(client_first),
                     gs2_header_bytes);
}

absl::StatusOr<std::string> ScramClient::HandleServerFirst(std::string_view server_first) {
  if (state_ != State::kAwaitingServerFirst) {
    return absl::FailedPreconditionError("server-first is not expected now");
  }
  state_ = State::kFinished;  // unless everything below holds
  if (absl::Status text = CheckMessageText(server_first); !text.ok()) {
    return absl::InvalidArgumentError(Concat("server-first ", std::string(text.message())));
  }
  // server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count
  //                        ["," extensions]
  const std::vector<std::string_view> fields = SplitAttributes(server_first);
  if (AttributeValue(fields[0], 'm').has_value()) {
    return absl::InvalidArgumentError("server requires a mandatory extension (\"m=\")");
  }
  if (fields.size() < 3) return absl::InvalidArgumentError("server-first lacks attributes");
  const std::optional<std::string_view> nonce = AttributeValue(fields[0], 'r');
  if (!nonce.has_value() || !IsValidNonce(*nonce)) {
    return absl::InvalidArgumentError("server-first nonce is malformed");
  }
  if (nonce->size() <= params_.client_nonce.size() ||
      nonce->substr(0, params_.client_nonce.size()) != params_.client_nonce) {
    return absl::InvalidArgumentError("server-first nonce does not extend the client nonce");
  }
  const std::optional<std::string_view> salt_value = AttributeValue(fields[1], 's');
  std::optional<std::string> salt;
  if (salt_value.has_value()) salt = Base64Decode(*salt_value);
  if (!salt.has_value() || salt->empty() || salt->size() > config::kScramSaltBytesMax) {
    return absl::InvalidArgumentError("server-first salt is not 1..128 bytes in base64");
  }
  const std::optional<std::string_view> count_value = AttributeValue(fields[2], 'i');
  std::optional<uint32_t> iteration_count;
  if (count_value.has_value()) iteration_count = ParseIterationCount(*count_value);
  if (!iteration_count.has_value()) {
    return absl::InvalidArgumentError("server-first iteration count is malformed");
  }
  if (*iteration_count < params_.iteration_count_min ||
      *iteration_count > params_.iteration_count_max) {
    return absl::InvalidArgumentError(
        Concat("server-first iteration count ", std::to_string(*iteration_count),
               " is outside the accepted ", std::to_string(params_.iteration_count_min), "..",
               std::to_string(params_.iteration_count_max)));
  }
  for (size_t i = 3; i < fields.size(); ++i) {
    if (!IsExtension(fields[i])) {
      return absl::InvalidArgumentError("server-first has an attribute out of order or malformed");
    }
  }

  const ScramMechanism mechanism = params_.mechanism;
  const ScramKeys keys = DeriveScramKeys(mechanism, prepared_password_, *salt, *iteration_count);
  const std::string without_proof =
      Concat("c=", Base64Encode(std::string_view(client_first_).substr(0, gs2_header_bytes_)),
             ",r=", *nonce);
  const std::string auth_message = Concat(std::string_view(client_first_).substr(gs2_header_bytes_),
                                          ",", server_first, ",", without_proof);
  const std::string client_proof =
      XorOf(keys.client_key, HmacOf(mechanism, keys.stored_key, auth_message));
  expected_server_signature_ = HmacOf(mechanism, keys.server_key, auth_message);
  state_ = State::kAwaitingServerFinal;
  return Concat(without_proof, ",p=", Base64Encode(client_proof));
}

absl::Status ScramClient::HandleServerFinal(std::string_view server_final) {
  if (state_ != State::kAwaitingServerFinal) {
    return absl::FailedPreconditionError("server-final is not expected now");
  }
  state_ = State::kFinished;
  if (absl::Status text = CheckMessageText(server_final); !text.ok()) {
    return absl::InvalidArgumentError(Concat("server-final ", std::string(text.message())));
  }
  // server-final-message = (server-error / verifier) ["," extensions]
  const std::vector<std::string_view> fields = SplitAttributes(server_final);
  for (size_t i = 1; i < fields.size(); ++i) {
    if (!IsExtension(fields[i])) {
      return absl::InvalidArgumentError("server-final has an attribute out of order or malformed");
    }
  }
  if (const std::optional<std::string_view> error = AttributeValue(fields[0], 'e')) {
    return absl::PermissionDeniedError(Concat("server refused authentication: ", *error));
  }
  const std::optional<std::string_view> verifier = AttributeValue(fields[0], 'v');
  std::optional<std::string> signature;
  if (verifier.has_value()) signature = Base64Decode(*verifier);
  if (!signature.has_value() || signature->size() != ScramKeyBytes(params_.mechanism)) {
    return absl::InvalidArgumentError(
        "server-final is not \"v=\" and a base64 signature of the hash's size");
  }
  if (!xmpp::ConstantTimeEquals(*signature, expected_server_signature_)) {
    return absl::UnauthenticatedError(
        "server signature is wrong: the server does not know "
        "the credentials");
  }
  return absl::OkStatus();
}

}  // namespace stanzad::sasl
