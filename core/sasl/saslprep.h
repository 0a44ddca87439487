// SASLprep (RFC 4013): the stringprep profile SCRAM (RFC 5802 §2.2, §5.1) and PLAIN
// (RFC 4616 §2) apply to user names and passwords before they are compared or hashed.
//
// Why RFC 4013 and not its PRECIS successor (RFC 8265 OpaqueString): what a SCRAM client
// hashes must be byte for byte what the server hashed when it stored the credentials, and
// SCRAM (RFC 5802 §2.2, RFC 7677) specifies SASLprep, which is what clients that prepare
// passwords at all (slixmpp, for one) apply. The two profiles agree on printable ASCII,
// which passes through both unchanged; they differ only on some non-ASCII text (SASLprep
// applies NFKC, OpaqueString NFC, and they forbid different code points).
//
// The profile (ICU's USPREP_RFC4013_SASLPREP): non-ASCII spaces become U+0020, soft hyphens
// and other "mapped to nothing" code points vanish, then NFKC; controls, private use,
// non-characters, surrogates and the other prohibited code points of RFC 4013 §2.3 are
// refused, as is text that breaks the bidirectional rule (RFC 3454 §6). Unicode 3.2
// (stringprep's version) decides what is assigned:
//
//   kQuery   unassigned code points pass (RFC 3454 §7): for what a peer sends.
//   kStored  unassigned code points are refused: for what the server stores (a password
//            turned into credentials), so a later Unicode version cannot change its
//            meaning.
//
// Printable ASCII (U+0020..U+007E) is returned unchanged without calling ICU.
//
// Thread safety: any thread.
#ifndef STANZAD_CORE_SASL_SASLPREP_H_
#define STANZAD_CORE_SASL_SASLPREP_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace stanzad::sasl {

// Input longer than this is refused before any Unicode work, which bounds the cost of
// one call.
inline constexpr size_t kSaslPrepInputBytesMax = 4096;

enum class SaslPrepMode { kQuery, kStored };

// The prepared form of the UTF-8 `text`, or InvalidArgumentError saying why it has none
// (not UTF-8, too long, a prohibited or unassigned code point, the bidi rule). The result
// may be empty (for instance, from a lone soft hyphen): callers that need a non-empty
// string check. InternalError only if ICU's stringprep data cannot be loaded.
absl::StatusOr<std::string> SaslPrep(std::string_view text, SaslPrepMode mode);

// True if `text` is well-formed UTF-8 (Unicode §3.9): no overlong forms, surrogates,
// code points past U+10FFFF or truncated sequences.
bool IsValidUtf8(std::string_view text);

}  // namespace stanzad::sasl

#endif  // STANZAD_CORE_SASL_SASLPREP_H_
