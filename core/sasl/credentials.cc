#include "core/sasl/credentials.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/base/decimal.h"
#include "core/sasl/base64.h"

namespace stanzad::sasl {
namespace {

absl::Status Invalid(std::string_view message) {
  return absl::InvalidArgumentError(Concat("SASL credentials: ", message));
}

void AppendSecret(ScramMechanism mechanism, const config::ScramSecret& secret, std::string* out) {
  out->append(Concat(ScramMechanismName(mechanism), "$", std::to_string(secret.iteration_count),
                     ":", Base64Encode(secret.salt), "$", Base64Encode(secret.stored_key), ":",
                     Base64Encode(secret.server_key)));
}

// Decimal without sign or leading zeros ("0" itself allowed), fitting 32 bits.
std::optional<uint32_t> ParseIterationCount(std::string_view text) {
  if (text.size() > 1 && text[0] == '0') return std::nullopt;
  return ParseDecimal<uint32_t>(text);
}

// Splits `text` at the first `separator`; nullopt if there is none.
std::optional<std::pair<std::string_view, std::string_view>> SplitOnce(std::string_view text,
                                                                       char separator) {
  const size_t at = text.find(separator);
  if (at == std::string_view::npos) return std::nullopt;
  return std::make_pair(text.substr(0, at), text.substr(at + 1));
}

// One authPassword value: "<mechanism>$<iterations>:<salt>$<stored key>:<server key>".
absl::Status ParseSecret(std::string_view text, ScramMechanism* mechanism,
                         config::ScramSecret* secret) {
  const auto scheme = SplitOnce(text, '$');
  if (!scheme) return Invalid("a value has no '$' after the mechanism");
  const std::optional<ScramMechanism> parsed_mechanism = ScramMechanismFromName(scheme->first);
  if (!parsed_mechanism) {
    return Invalid("a value names no supported mechanism (SCRAM-SHA-1 or SCRAM-SHA-256)");
  }
  *mechanism = *parsed_mechanism;
  const auto info = SplitOnce(scheme->second, '$');
  if (!info) return Invalid("a value has no '$' between salt and keys");
  const auto count_and_salt = SplitOnce(info->first, ':');
  const auto keys = SplitOnce(info->second, ':');
  if (!count_and_salt || !keys) return Invalid("a value lacks the ':' of RFC 5803");
  const std::optional<uint32_t> iteration_count = ParseIterationCount(count_and_salt->first);
  if (!iteration_count) return Invalid("iteration count is not a decimal number");
  std::optional<std::string> salt = Base64Decode(count_and_salt->second);
  std::optional<std::string> stored_key = Base64Decode(keys->first);
  std::optional<std::string> server_key = Base64Decode(keys->second);
  if (!salt || !stored_key || !server_key) return Invalid("salt or a key is not base64");
  // Bounded before they are held (config::ScramSecret keeps them inline); Validate then
  // checks the exact sizes.
  if (salt->size() > config::kScramSaltBytesMax) return Invalid("a salt longer than 128 bytes");
  if (stored_key->size() > config::kSha256Bytes || server_key->size() > config::kSha256Bytes) {
    return Invalid("a key longer than 32 bytes");
  }
  secret->iteration_count = *iteration_count;
  secret->salt = std::move(*salt);
  secret->stored_key = std::move(*stored_key);
  secret->server_key = std::move(*server_key);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<config::UserCredentials> MakeUserCredentials(std::string_view password,
                                                            std::string_view sha1_salt,
                                                            std::string_view sha256_salt,
                                                            uint32_t iteration_count) {
  absl::StatusOr<config::ScramSecret> sha1 =
      MakeScramCredentials(ScramMechanism::kSha1, password, sha1_salt, iteration_count);
  if (!sha1.ok()) return sha1.status();
  absl::StatusOr<config::ScramSecret> sha256 =
      MakeScramCredentials(ScramMechanism::kSha256, password, sha256_salt, iteration_count);
  if (!sha256.ok()) return sha256.status();
  config::UserCredentials credentials;
  credentials.scram_sha1 = std::move(*sha1);
  credentials.scram_sha256 = std::move(*sha256);
  return credentials;
}

std::string EncodeUserCredentials(const config::UserCredentials& credentials) {
  CHECK(config::ValidateUserCredentials(credentials).ok());
  std::string text;
  if (credentials.scram_sha1) AppendSecret(ScramMechanism::kSha1, *credentials.scram_sha1, &text);
  if (credentials.scram_sha256) {
    if (!text.empty()) text.push_back(' ');
    AppendSecret(ScramMechanism::kSha256, *credentials.scram_sha256, &text);
  }
  return text;
}

absl::StatusOr<config::UserCredentials> ParseUserCredentials(std::string_view text) {
  if (text.empty()) return Invalid("text is empty");
  if (text.size() > kUserCredentialsTextBytesMax) return Invalid("text is too long");
  config::UserCredentials credentials;
  std::optional<ScramMechanism> previous;
  size_t begin = 0;
  while (true) {
    const size_t space = text.find(' ', begin);
    const std::string_view value =
        text.substr(begin, space == std::string_view::npos ? space : space - begin);
    ScramMechanism mechanism = ScramMechanism::kSha1;
    config::ScramSecret secret;
    if (absl::Status status = ParseSecret(value, &mechanism, &secret); !status.ok()) {
      return status;
    }
    // Only SCRAM-SHA-1 then SCRAM-SHA-256, so that each value has one text.
    if (previous.has_value() &&
        (*previous == ScramMechanism::kSha256 || mechanism == ScramMechanism::kSha1)) {
      return Invalid("mechanisms repeat or are not in the order SCRAM-SHA-1, SCRAM-SHA-256");
    }
    previous = mechanism;
    (mechanism == ScramMechanism::kSha1 ? credentials.scram_sha1 : credentials.scram_sha256) =
        std::move(secret);
    if (space == std::string_view::npos) break;
    begin = space + 1;
  }
  if (absl::Status valid = config::ValidateUserCredentials(credentials); !valid.ok()) {
    return Invalid(std::string(valid.message()));
  }
  return credentials;
}

}  // namespace stanzad::sasl
