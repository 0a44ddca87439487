// Jid: an XMPP address (RFC 7622), validated and held in canonical form.
//
// A JID is [localpart "@"] domainpart ["/" resourcepart]. Jid::Parse splits the
// text at the separators before any transformation (RFC 7622 §3.1: the first
// '/' starts the resourcepart; an '@' before that '/' ends the localpart), then
// enforces the rules of each part and keeps the canonical text:
//
//   localpart     PRECIS UsernameCaseMapped (RFC 8265 §3.3): fullwidth and
//                 halfwidth forms mapped to their plain forms, lowercased
//                 (Unicode toLower), NFC, Bidi rule. Allowed: letters, digits and
//                 printable ASCII except " & ' / : < > @ (RFC 7622 §3.3.1); no
//                 spaces, controls, symbols or compatibility characters (PRECIS
//                 IdentifierClass, with the contextual rules of RFC 5892).
//   domainpart    One trailing '.' removed first (RFC 7622 §3.2). Then one of:
//                 an IPv6 literal in brackets, rewritten as RFC 5952 text
//                 ("[2001:DB8:0::1]" becomes "[2001:db8::1]"); a dotted-quad IPv4
//                 address; or a domain name. A name goes through UTS #46
//                 nontransitional processing (lowercased, A-labels turned into
//                 U-labels) with the IDNA2008 repertoire, Bidi and contextual
//                 rules; its ASCII is letters, digits and '-'; no label is empty,
//                 starts or ends with '-' or has "--" in its third and fourth
//                 positions; every label is at most 63 bytes in A-label form.
//                 IPvFuture literals and zone ids are refused.
//   resourcepart  PRECIS OpaqueString (RFC 8265 §4.2): case kept, non-ASCII
//                 spaces become U+0020, NFC. Any printable text (FreeformClass):
//                 no control, unassigned, private-use or default-ignorable code
//                 points. A leading space is allowed, although RFC 7622 §3.6
//                 lists "juliet@example.com/ foo" as invalid: no rule of the
//                 profile forbids it, and refusing it would lose stanzas other
//                 servers accept.
//
// Every part present is 1..1023 bytes in canonical form (RFC 7622 §3.1). Two
// JIDs that address the same entity have the same canonical text, so equality,
// ordering and hashing compare that text. (Addresses are not resolved: a name
// and its IP address, or "127.0.0.1" and "[::ffff:127.0.0.1]", stay distinct.)
//
// Cost: a part made of ASCII (and no "xn--" label) is checked and lowercased
// with no allocation but the result's string and no call into ICU, in about
// 100 ns for a typical full JID; a part with other characters goes through ICU
// (normalisation, case mapping, UTS #46) and costs a few allocations.
//
// Untrusted input is safe: Parse returns InvalidArgumentError with a message
// naming the part and the problem ("JID localpart contains '@'") for any bytes
// that are not a valid JID, and never aborts. It returns InternalError only if
// ICU's data cannot be loaded.
//
// Thread safety: a Jid is an immutable value. Parse may run on any thread.
//
//   absl::StatusOr<jid::Jid> to = jid::Jid::Parse("Juliet@Example.COM/Balcony");
//   if (!to.ok()) return ReplyJidMalformed(to.status().message());
//   to->ToString();          // "juliet@example.com/Balcony"
//   to->Bare().ToString();   // "juliet@example.com"
//   to->domainpart();        // "example.com"
#ifndef STANZAD_CORE_JID_JID_H_
#define STANZAD_CORE_JID_JID_H_

#include <compare>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"

namespace stanzad::jid {

// Bytes one part of a JID may hold, in canonical form (RFC 7622 §3.1).
inline constexpr size_t kJidPartBytesMax = 1023;

// A valid JID in canonical form. There is no empty Jid: a JID that may be
// absent is a std::optional<Jid>. Copying copies one string.
class Jid {
 public:
  // Validates `text` (the address as it appears in a 'to' or 'from' attribute,
  // after XML entity references are replaced) and returns it in canonical
  // form, or InvalidArgumentError saying what is wrong with it.
  static absl::StatusOr<Jid> Parse(std::string_view text);

  Jid(const Jid&) = default;
  Jid& operator=(const Jid&) = default;
  Jid(Jid&&) noexcept = default;
  Jid& operator=(Jid&&) noexcept = default;

  // The parts in canonical form, without separators. Empty when absent; the
  // domainpart is never empty.
  std::string_view localpart() const {
    return domain_begin_ == 0 ? std::string_view()
                              : std::string_view(canonical_).substr(0, domain_begin_ - 1);
  }
  std::string_view domainpart() const {
    return std::string_view(canonical_).substr(domain_begin_, domain_end_ - domain_begin_);
  }
  std::string_view resourcepart() const {
    return has_resource() ? std::string_view(canonical_).substr(domain_end_ + 1)
                          : std::string_view();
  }

  bool has_localpart() const { return domain_begin_ != 0; }
  bool has_resource() const { return domain_end_ != canonical_.size(); }

  // True for a JID without resourcepart ("juliet@example.com", "example.com").
  bool IsBare() const { return !has_resource(); }

  // This JID without its resourcepart; a copy of *this if it has none.
  Jid Bare() const;

  // The canonical text, "localpart@domainpart/resourcepart" with absent parts
  // and their separators left out. Parse(Full()) returns an equal Jid.
  const std::string& Full() const { return canonical_; }

  // The same text as Full(), under the name logging and test output expect.
  const std::string& ToString() const { return canonical_; }

  // The offsets are a function of the canonical text, so the text alone
  // decides equality and order. The order is byte order of that text.
  friend bool operator==(const Jid& a, const Jid& b) { return a.canonical_ == b.canonical_; }
  friend std::strong_ordering operator<=>(const Jid& a, const Jid& b) {
    return a.canonical_.compare(b.canonical_) <=> 0;
  }

  // Lets a Jid key absl::flat_hash_map and absl::flat_hash_set.
  template <typename HashState>
  friend HashState AbslHashValue(HashState state, const Jid& jid) {
    return HashState::combine(std::move(state), jid.canonical_);
  }

  // Writes ToString(); gtest uses it to print failed expectations.
  friend std::ostream& operator<<(std::ostream& stream, const Jid& jid);

 private:
  // REQUIRES: `canonical` is the canonical text of a valid JID whose
  // domainpart occupies [domain_begin, domain_end).
  Jid(std::string canonical, uint16_t domain_begin, uint16_t domain_end)
      : canonical_(std::move(canonical)), domain_begin_(domain_begin), domain_end_(domain_end) {}

  std::string canonical_;
  // The localpart, if any, is [0, domain_begin_ - 1) and the '@' follows it;
  // the resourcepart, if any, is (domain_end_, size) after a '/'. Three parts of
  // at most 1023 bytes and two separators fit in 16 bits.
  uint16_t domain_begin_;
  uint16_t domain_end_;
};

}  // namespace stanzad::jid

#endif  // STANZAD_CORE_JID_JID_H_
