// A user's stored SASL credentials (config::UserCredentials: SCRAM-SHA-1 and/or
// SCRAM-SHA-256 salt, iteration count, StoredKey and ServerKey) made from a password, and
// their text form for the node configuration and for operators.
//
// The text form is the "authPassword" syntax of RFC 5803 §3, one value per mechanism,
// SCRAM-SHA-1 first, separated by one space. For the RFC 5802 user ("pencil"), on one line:
//
//   SCRAM-SHA-1$4096:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:D+CSWLOshSulAsxiupA+qs2/fTE=
//   SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:
//   wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=
//
// mechanism "$" iteration count ":" base64(salt) "$" base64(StoredKey) ":"
// base64(ServerKey). ParseUserCredentials accepts exactly what EncodeUserCredentials
// writes of valid credentials: canonical base64, an iteration count in decimal without
// leading zeros, each mechanism at most once and in that order, at least one, and values
// that pass config::ValidateUserCredentials (salt 8..128 bytes, 4096..10000000
// iterations, keys of the hash's size). It returns InvalidArgumentError, never crashes,
// for any other text.
//
// Thread safety: pure functions.
#ifndef STANZAD_CORE_SASL_CREDENTIALS_H_
#define STANZAD_CORE_SASL_CREDENTIALS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/config/config.h"
#include "core/sasl/scram.h"

namespace stanzad::sasl {

// Longer text is refused unread. Two values with the longest salt take about 600 bytes.
inline constexpr size_t kUserCredentialsTextBytesMax = 1024;

// Credentials for both mechanisms from `password` (MakeScramCredentials, so SASLprep in
// stored mode), each with its own salt (8..128 random bytes from the caller: core draws
// none). InvalidArgumentError as MakeScramCredentials.
absl::StatusOr<config::UserCredentials> MakeUserCredentials(
    std::string_view password, std::string_view sha1_salt, std::string_view sha256_salt,
    uint32_t iteration_count = kScramIterationsDefault);

// The text form. REQUIRES: config::ValidateUserCredentials(credentials) is OK.
std::string EncodeUserCredentials(const config::UserCredentials& credentials);

// The inverse of EncodeUserCredentials, validated.
absl::StatusOr<config::UserCredentials> ParseUserCredentials(std::string_view text);

}  // namespace stanzad::sasl

#endif  // STANZAD_CORE_SASL_CREDENTIALS_H_
