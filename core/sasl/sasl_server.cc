#include "core/sasl/sasl_server.h"

namespace stanzad::sasl {

std::string_view SaslConditionName(SaslCondition condition) {
  switch (condition) {
    case SaslCondition::kAborted:
      return "aborted";
    case SaslCondition::kAccountDisabled:
      return "account-disabled";
    case SaslCondition::kCredentialsExpired:
      return "credentials-expired";
    case SaslCondition::kEncryptionRequired:
      return "encryption-required";
    case SaslCondition::kIncorrectEncoding:
      return "incorrect-encoding";
    case SaslCondition::kInvalidAuthzid:
      return "invalid-authzid";
    case SaslCondition::kInvalidMechanism:
      return "invalid-mechanism";
    case SaslCondition::kMalformedRequest:
      return "malformed-request";
    case SaslCondition::kMechanismTooWeak:
      return "mechanism-too-weak";
    case SaslCondition::kNotAuthorized:
      return "not-authorized";
    case SaslCondition::kTemporaryAuthFailure:
      return "temporary-auth-failure";
  }
  return "not-authorized";
}

}  // namespace stanzad::sasl
