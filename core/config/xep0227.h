// XEP-0227 (Portable Import/Export Format for XMPP-IM Servers, v1.1): the users of a file
// that Prosody or ejabberd exported, read one at a time from a byte stream, and the file
// stanzad writes of its own users. Only accounts travel: rosters, vCards, offline messages
// and the rest of a <user/> are skipped, since stanzad keeps none of them.
//
// What a <user/> becomes (ImportedUser):
//   <scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>   (and -256)
//     <iter-count>4096</iter-count> <salt>b64</salt>
//     <server-key>b64</server-key> <stored-key>b64</stored-key>
//   </scram-credentials>
//       → credentials, kept exactly (salt, iteration count, StoredKey, ServerKey), so the
//         user logs in with the old password without anyone knowing it. Children in any
//         order (Prosody writes server-key first), surrounding whitespace allowed.
//   password='…' (a plain password, XEP-0227 §4.2; ejabberd and Prosody write it when
//   they store plain passwords)
//       → password. The caller hashes it into credentials (sasl::MakeUserCredentials with
//         fresh salts): this module draws no random bytes and runs no PBKDF2.
//   SCRAM-SHA-512 or another mechanism stanzad cannot use
//       → ignored_mechanisms; if nothing usable remains (no SHA-1, no SHA-256, no password),
//         the file is refused at that user, with its line and name.
// ejabberd 23.01 (Debian 12) writes each base64 value of <scram-credentials/> base64-encoded
// a second time (its database holds them as base64 text, and the exporter encodes that
// text again), and its import expects the same (tests/unit/testdata/xep0227/README.md). The reader
// recognises this by the size of the keys — a 20- or 32-byte key never decodes to base64 text of a
// key's size — and decodes once more; ImportedUser::double_base64 says so. The writer can write
// either form (ScramEncoding).
//
// What the reader accepts: one XML document whose root is <server-data/> (holding <host/>s)
// or <host jid='…'/> (holding <user/>s; ejabberd writes one such file per host and includes
// them from the main file), in namespace urn:xmpp:pie:0 or the pre-1.0
// http://www.xmpp.org/extensions/xep-0227.html#ns. <xi:include href='…'/> is not followed
// (this code opens no files): each is reported in includes(), with the host it appeared in,
// for the caller to read with a new reader. Users of other hosts than
// ReaderOptions::domain are skipped and counted in skipped_users().
//
// Errors: any malformed input — bad XML, a DOCTYPE (refused, so no entity can expand), a
// user without a name or with a name that is not a canonical localpart, bad base64, a salt,
// iteration count or key outside what config::ValidateUserCredentials allows, a user with
// nothing usable, a limit exceeded — is InvalidArgumentError naming the line and column
// (and byte offset), and the user when inside one: e.g.
//   "line 12, column 40 (byte 1017): user \"alice\" (line 9): SCRAM-SHA-1: <salt/> is not base64"
// After an error the reader is finished: every later call returns the same error. Users
// yielded before it stay valid; nothing after it is yielded.
//
// Streaming: the reader holds one user at a time plus the users whose end tag lay in the
// last Feed() (drain them with Next() after each Feed), and expat's buffer for a token not
// yet complete, bounded by ReaderOptions::token_bytes_max. So a 1,000,000-user file is read
// in constant memory, in chunks of whatever size the caller reads.
//
// Why expat and not core/xml/tokenizer.h: the tokenizer frames an XMPP stream (it wants a
// <stream:stream> header and returns whole top-level elements, up to 256 KiB), while here
// the users are at depth 2 or 3 of one document-sized element, and files from other
// servers may hold comments or processing instructions, which the tokenizer rightly
// refuses on a stream. expat is a streaming parser with line numbers, already a dependency
// of bench/, and is what ejabberd's fast_xml and Prosody's lua-expat parse these files with.
//
// Thread safety: a Xep0227Reader is a single-threaded object; the writer functions are pure.
#ifndef STANZAD_CORE_CONFIG_XEP0227_H_
#define STANZAD_CORE_CONFIG_XEP0227_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "core/config/config.h"

namespace stanzad::config {

inline constexpr std::string_view kXep0227Namespace = "urn:xmpp:pie:0";
inline constexpr std::string_view kXep0227ScramNamespace = "urn:xmpp:pie:0#scram";

// One account of the file. At least one of credentials and password is set.
struct ImportedUser {
  std::string name;  // passes ValidateUserName
  std::string host;  // the <host jid='…'/> it was in
  // The SCRAM-SHA-1 and/or SCRAM-SHA-256 credentials of the file, validated with
  // ValidateUserCredentials. Use them as they are when set.
  std::optional<UserCredentials> credentials;
  // The plain password of the file, if it had one (1..kImportedPasswordBytesMax bytes of
  // UTF-8; not SASLprep'd). When credentials are unset it is the only way in: hash it.
  std::optional<std::string> password;
  // Mechanisms of <scram-credentials/> that were skipped, e.g. "SCRAM-SHA-512".
  std::vector<std::string> ignored_mechanisms;
  // The file wrote the SCRAM values base64-encoded twice (ejabberd 23.01).
  bool double_base64 = false;
  uint64_t line = 0;  // of the <user> start tag, from 1

  friend bool operator==(const ImportedUser&, const ImportedUser&) = default;
};

inline constexpr size_t kImportedPasswordBytesMax = 1024;

struct Xep0227Include {
  std::string href;  // as written
  std::string host;  // the host it appeared in; empty at <server-data/> level
  uint64_t line = 0;

  friend bool operator==(const Xep0227Include&, const Xep0227Include&) = default;
};

struct Xep0227ReaderOptions {
  // The domain whose users are wanted; users of other hosts are skipped (and counted).
  // Empty: users of every host are yielded.
  std::string domain;
  // A single token (a start tag with its attributes, a run of text) that expat has to buffer
  // whole. Real files have tags of a few hundred bytes; offline messages can be long.
  size_t token_bytes_max = 1 << 20;
  // Elements nested inside one another, the root being depth 1.
  uint32_t depth_max = 64;
  // Text kept for one child of <scram-credentials/> (a 128-byte salt, twice base64: 232).
  size_t scram_value_bytes_max = 1024;
  // <xi:include/>s remembered.
  size_t includes_max = 4096;
};

class Xep0227Reader {
 public:
  explicit Xep0227Reader(Xep0227ReaderOptions options = Xep0227ReaderOptions());
  ~Xep0227Reader();

  Xep0227Reader(const Xep0227Reader&) = delete;
  Xep0227Reader& operator=(const Xep0227Reader&) = delete;

  // Parses the next bytes of the file, split anywhere. The users whose end tag they hold
  // are then available from Next(). InvalidArgumentError as described above.
  absl::Status Feed(std::string_view bytes);

  // The end of the file: InvalidArgumentError if the document is incomplete (no root, or
  // elements still open) or an error happened before.
  absl::Status Finish();

  // The next complete user in file order, or nullopt until more is fed.
  std::optional<ImportedUser> Next();

  const std::vector<Xep0227Include>& includes() const;
  // Users of other hosts than options.domain, skipped.
  uint64_t skipped_users() const;
  // Users yielded or waiting in Next().
  uint64_t users() const;

 private:
  struct Parser;
  std::unique_ptr<Parser> parser_;
};

// How the writer encodes SCRAM values.
enum class ScramEncoding {
  kXep0227,      // base64 of the bytes, as XEP-0227 §4.2.1 and Prosody
  kDoubleBase64  // base64 of that base64, as ejabberd 23.01 writes and reads it
};

// The writer: Xep0227Header(domain), then AppendXep0227User for each user, then
// Xep0227Footer(), each appended to a buffer the caller writes out as it grows. The file
// has one <host/> in a <server-data/>, and per user one <scram-credentials/> per mechanism
// it has (SCRAM-SHA-1 first). No passwords: stanzad has none.
// REQUIRES: domain passes ValidateDomain; name passes ValidateUserName; credentials pass
// ValidateUserCredentials.
void AppendXep0227Header(std::string_view domain, std::string* out);
void AppendXep0227User(std::string_view name, const UserCredentials& credentials,
                       ScramEncoding encoding, std::string* out);
void AppendXep0227Footer(std::string* out);

}  // namespace stanzad::config

#endif  // STANZAD_CORE_CONFIG_XEP0227_H_
