#include "core/sasl/plain.h"

#include <string.h>

#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/sasl/saslprep.h"
#include "core/sasl/scram.h"
#include "core/xmpp/component_handshake.h"

namespace stanzad::sasl {
namespace {

// What an unknown user's attempt derives, so that it costs what a known user's does.
constexpr std::string_view kUnknownUserSalt = "stanzad-plain-unknown-user";

void Wipe(std::string* secret) { explicit_bzero(secret->data(), secret->size()); }

}  // namespace

absl::StatusOr<PlainMessage> ParsePlainMessage(std::string_view message) {
  if (message.size() > kPlainMessageBytesMax) {
    return absl::InvalidArgumentError("PLAIN message is too long");
  }
  const size_t first_nul = message.find('\0');
  if (first_nul == std::string_view::npos) {
    return absl::InvalidArgumentError("PLAIN message has no NUL separator");
  }
  const size_t second_nul = message.find('\0', first_nul + 1);
  if (second_nul == std::string_view::npos) {
    return absl::InvalidArgumentError("PLAIN message has one NUL separator, not two");
  }
  if (message.find('\0', second_nul + 1) != std::string_view::npos) {
    return absl::InvalidArgumentError("PLAIN message has more than two NUL separators");
  }
  PlainMessage fields;
  fields.authzid = message.substr(0, first_nul);
  fields.authcid = message.substr(first_nul + 1, second_nul - first_nul - 1);
  fields.password = message.substr(second_nul + 1);
  if (fields.authcid.empty()) return absl::InvalidArgumentError("PLAIN authcid is empty");
  if (fields.password.empty()) return absl::InvalidArgumentError("PLAIN password is empty");
  if (fields.authzid.size() > kPlainFieldBytesMax || fields.authcid.size() > kPlainFieldBytesMax ||
      fields.password.size() > kPlainFieldBytesMax) {
    return absl::InvalidArgumentError("PLAIN field is longer than 1023 bytes");
  }
  if (!IsValidUtf8(message)) return absl::InvalidArgumentError("PLAIN message is not UTF-8");
  return fields;
}

bool PlainPasswordMatches(const config::UserCredentials& credentials,
                          std::string_view prepared_password) {
  const bool use_sha256 = credentials.scram_sha256.has_value();
  CHECK(use_sha256 || credentials.scram_sha1.has_value());
  const config::ScramSecret& stored =
      use_sha256 ? *credentials.scram_sha256 : *credentials.scram_sha1;
  const config::ScramSecret derived =
      DeriveScramSecret(use_sha256 ? ScramMechanism::kSha256 : ScramMechanism::kSha1,
                        prepared_password, stored.salt, stored.iteration_count);
  return xmpp::ConstantTimeEquals(derived.stored_key, stored.stored_key);
}

PlainServer::PlainServer(Params params) : params_(std::move(params)) {
  CHECK_MSG(params_.lookup != nullptr, "PlainServer needs a credentials lookup");
}

SaslStep PlainServer::Fail(SaslCondition condition, std::string reason) {
  finished_ = true;
  return SaslStep::Failure(condition, Concat("PLAIN: ", reason));
}

SaslStep PlainServer::Step(std::string_view client_message) {
  if (finished_) return Fail(SaslCondition::kMalformedRequest, "message after the exchange ended");
  absl::StatusOr<PlainMessage> message = ParsePlainMessage(client_message);
  if (!message.ok()) {
    return Fail(SaslCondition::kMalformedRequest, std::string(message.status().message()));
  }
  absl::StatusOr<std::string> username = SaslPrep(message->authcid, SaslPrepMode::kQuery);
  if (!username.ok()) {
    return Fail(SaslCondition::kMalformedRequest,
                Concat("authcid: ", std::string(username.status().message())));
  }
  if (username->empty() || username->size() > config::kUserNameBytesMax) {
    return Fail(SaslCondition::kMalformedRequest, "authcid is empty after SASLprep");
  }
  username_ = std::move(*username);
  authzid_ = std::string(message->authzid);

  absl::StatusOr<std::string> password = SaslPrep(message->password, SaslPrepMode::kQuery);
  const std::optional<config::UserCredentials> credentials = params_.lookup(username_);
  if (credentials.has_value() && !config::ValidateUserCredentials(*credentials).ok()) {
    return Fail(SaslCondition::kTemporaryAuthFailure, "stored credentials are invalid");
  }
  bool matches = false;
  if (credentials.has_value() && password.ok() && !password->empty()) {
    matches = PlainPasswordMatches(*credentials, *password);
  } else {
    // The same work as a real check, whose result is thrown away.
    (void)DeriveScramSecret(ScramMechanism::kSha256, client_message, kUnknownUserSalt,
                            kScramIterationsDefault);
  }
  if (password.ok()) Wipe(&*password);
  if (!matches) return Fail(SaslCondition::kNotAuthorized, "wrong password or unknown user");
  if (!authzid_.empty() &&
      !(params_.authorize != nullptr && params_.authorize(username_, authzid_))) {
    return Fail(SaslCondition::kInvalidAuthzid, "user may not act as the authzid it gave");
  }
  finished_ = true;
  succeeded_ = true;
  return SaslStep::Success(std::string());
}

}  // namespace stanzad::sasl
