// Config: the cluster-wide configuration of stanzad, as one value.
//
// It holds what every node must agree on: the XMPP domain, the addresses to listen on, the
// TLS file paths, the call bridges and their shared secrets, the users (as SCRAM
// credentials, never passwords) and the cluster members. The cluster keeps it replicated:
// cluster/config_state_machine.h changes it only by applying committed Raft entries, so every
// node holds the same Config for the same log.
//
// Pure: no I/O, no clock, no randomness. EncodeConfig is deterministic (the same Config
// always gives the same bytes: maps are ordered, fields have one fixed order), so encodings
// can be compared and hashed across nodes. DecodeConfig accepts exactly the encodings that
// EncodeConfig makes of a valid Config, and returns InvalidArgument, never crashes, for any
// other bytes.
//
// The Validate* functions check one field each and return InvalidArgument with a sentence an
// operator can act on; Config::Validate() checks the whole value, including the rules that
// join fields (a bridge's address "<name>.<domain>" must itself be a valid DNS name).
//
// Thread safety: a value type; const access from many threads is safe.
#ifndef STANZAD_CORE_CONFIG_CONFIG_H_
#define STANZAD_CORE_CONFIG_CONFIG_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/config/inline_bytes.h"

namespace stanzad::config {

// Limits. Each keeps a snapshot and a decode of untrusted bytes bounded.
inline constexpr size_t kDomainBytesMax = 253;         // RFC 1035, without the final dot
inline constexpr size_t kDnsLabelBytesMax = 63;        // RFC 1035
inline constexpr size_t kCallbridgeNameBytesMax = 63;  // one DNS label
inline constexpr size_t kCallbridgeSecretBytesMax = 256;
inline constexpr size_t kCallbridgesMax = 100'000;
inline constexpr size_t kUserNameBytesMax = 1023;  // a JID localpart (RFC 7622 §3.3)
inline constexpr size_t kUsersMax = 1'000'000;
inline constexpr size_t kListenAddressesMax = 16;
inline constexpr size_t kInterfaceNameBytesMax = 15;   // Linux IFNAMSIZ - 1
inline constexpr size_t kPathBytesMax = 4096;          // Linux PATH_MAX
inline constexpr size_t kMembersMax = 1024;            // as the Raft storage's bound
inline constexpr size_t kMemberAddressBytesMax = 300;  // as raft::kMemberAddressBytesMax
inline constexpr size_t kScramSaltBytesMin = 8;
inline constexpr size_t kScramSaltBytesMax = 128;
inline constexpr uint32_t kScramIterationsMin = 4096;  // RFC 7677 §4
inline constexpr uint32_t kScramIterationsMax = 10'000'000;
inline constexpr size_t kSaltKeyBytesMax = 128;
inline constexpr size_t kJoinTokensMax = 64;
inline constexpr size_t kMemberIdentityBytes = 32;   // SHA-256
inline constexpr size_t kJoinTokenSecretBytes = 16;  // as cluster::kJoinTokenSecretBytes
inline constexpr size_t kSha1Bytes = 20;
inline constexpr size_t kSha256Bytes = 32;

// What the server keeps of a password for one SCRAM hash (RFC 5802 §3): enough to check a
// client's proof and to prove itself, not enough to log in as the user.
// Its parts are held inline (inline_bytes.h): a user's credentials are copied without an
// allocation.
struct ScramSecret {
  InlineBytes<kScramSaltBytesMax> salt;  // kScramSaltBytesMin..kScramSaltBytesMax bytes
  uint32_t iteration_count = 0;          // kScramIterationsMin..kScramIterationsMax
  InlineBytes<kSha256Bytes> stored_key;  // H(ClientKey): the hash's size
  InlineBytes<kSha256Bytes> server_key;  // HMAC(SaltedPassword, "Server Key"): the hash's size

  friend bool operator==(const ScramSecret&, const ScramSecret&) = default;
};

// A user's credentials: at least one of the two mechanisms.
struct UserCredentials {
  std::optional<ScramSecret> scram_sha1;    // SCRAM-SHA-1: keys of 20 bytes
  std::optional<ScramSecret> scram_sha256;  // SCRAM-SHA-256: keys of 32 bytes

  friend bool operator==(const UserCredentials&, const UserCredentials&) = default;
};

// A user's credentials as every configuration holds them: one immutable object, shared by
// the replicated state, the node's mirror, the Raft command that set them and the routers'
// tables. At a million users each copy of those maps was a copy of every user's ~400 bytes
// (what a node had to fault in and copy when it joined, and 4 times the memory); shared, a
// copy of a map copies a pointer per user. Compares by value.
//
// Thread safety: the object is never changed once made, so copies may be read and dropped
// on any thread (the routers' shards drop theirs).
class SharedCredentials {
 public:
  // Credentials without a mechanism (invalid until set; ValidateUserCredentials says so).
  SharedCredentials();
  SharedCredentials(UserCredentials credentials)  // NOLINT: implicit on purpose, as a value
      : credentials_(std::make_shared<const UserCredentials>(std::move(credentials))) {}
  // A copy shares the object. Declared, so that a move is a copy too: no handle is ever
  // left without one.
  SharedCredentials(const SharedCredentials&) = default;
  SharedCredentials& operator=(const SharedCredentials&) = default;

  const UserCredentials& get() const { return *credentials_; }
  const UserCredentials& operator*() const { return *credentials_; }
  const UserCredentials* operator->() const { return credentials_.get(); }
  operator const UserCredentials&() const { return *credentials_; }  // NOLINT: implicit

  // Whether two handles hold the very same object (their maps share it).
  bool SharesWith(const SharedCredentials& other) const {
    return credentials_ == other.credentials_;
  }
  friend bool operator==(const SharedCredentials& a, const SharedCredentials& b) {
    return a.SharesWith(b) || *a.credentials_ == *b.credentials_;
  }
  friend bool operator==(const SharedCredentials& a, const UserCredentials& b) {
    return *a.credentials_ == b;
  }

 private:
  std::shared_ptr<const UserCredentials> credentials_;  // never null
};

struct Callbridge {
  // The XEP-0114 shared secret: printable ASCII without spaces, 1..kCallbridgeSecretBytesMax.
  std::string secret;

  friend bool operator==(const Callbridge&, const Callbridge&) = default;
};

// Paths of the TLS files on each node (the seed's `certs KEY CERT [BUNDLE]`); empty: unset.
struct TlsFiles {
  std::string key_path;
  std::string certificate_path;
  std::string bundle_path;  // optional even when the others are set

  friend bool operator==(const TlsFiles&, const TlsFiles&) = default;
};

// A single-use approval for one node to join the cluster (`stanzactl cluster token`).
struct JoinTokenGrant {
  std::string secret;           // kJoinTokenSecretBytes
  uint64_t expires_unix_s = 0;  // refused from then on

  friend bool operator==(const JoinTokenGrant&, const JoinTokenGrant&) = default;
};

struct Config {
  // The Raft index of the last entry that changed this configuration (0: never changed).
  // The same on every node that applied the same log, so `version` names a configuration.
  uint64_t version = 0;
  // The XMPP domain (a lowercase DNS name); empty until `domain D` is applied.
  std::string domain;
  // Where to listen: IP address literals or network interface names, each once, in the
  // order given. Empty: every address.
  std::vector<std::string> listen;
  TlsFiles tls;
  // Call bridges by name: a bridge "cb1" connects as component "cb1.<domain>".
  std::map<std::string, Callbridge> callbridges;
  // Users by canonical localpart.
  std::map<std::string, SharedCredentials> users;
  // Cluster members: node id (never 0) → cluster address "host:port" (unique).
  std::map<uint64_t, std::string> members;
  // The key SCRAM derives the salts of unknown users from (core/sasl/scram.h): one value
  // for the whole cluster, so that no node's answer tells an existing user from another.
  // Empty until set; 32..kSaltKeyBytesMax bytes.
  std::string unknown_user_salt_key;
  // Join tokens not used yet, by id (never 0); at most kJoinTokensMax.
  std::map<uint64_t, JoinTokenGrant> join_tokens;
  // With TLS on the cluster links: node id → SHA-256 of the public key of the certificate
  // it presented when it joined (tls::PublicKeyDigest). Its links must present that key.
  std::map<uint64_t, std::string> member_identities;

  // OK, or InvalidArgument naming the first field that breaks a rule.
  absl::Status Validate() const;

  friend bool operator==(const Config&, const Config&) = default;
};

// A DNS name: lowercase ASCII labels of letters, digits and '-', 1..63 bytes each, not
// starting or ending with '-', joined by single dots, at most 253 bytes, no final dot, and a
// last label that is not all digits (so it cannot be read as an IPv4 address).
absl::Status ValidateDomain(std::string_view domain);
// A call bridge name: one DNS label, lowercase (letters, digits, '-', 1..63 bytes, no '-' at
// either end).
absl::Status ValidateCallbridgeName(std::string_view name);
absl::Status ValidateCallbridgeSecret(std::string_view secret);
// A canonical ASCII JID localpart: 1..1023 bytes of printable ASCII, no uppercase letter, no
// space and none of " & ' / : < > @ (RFC 7622 §3.3.1).
absl::Status ValidateUserName(std::string_view name);
absl::Status ValidateUserCredentials(const UserCredentials& credentials);
// An IPv4 or IPv6 address literal (no brackets, no port), or a Linux interface name (1..15
// bytes, not "." or "..", no '/', ':', space or control character).
absl::Status ValidateListenAddress(std::string_view address);
absl::Status ValidateListenAddresses(const std::vector<std::string>& addresses);
// Each path empty or absolute; key and certificate both set or both empty; a bundle only
// with them.
absl::Status ValidateTlsFiles(const TlsFiles& files);
// A member's cluster address ("host:port"): 1..kMemberAddressBytesMax bytes. No stricter, so
// that every membership entry Raft accepts can be mirrored here.
absl::Status ValidateMemberAddress(std::string_view address);

// "cb1" in "example.com" → "cb1.example.com": the address a bridge authenticates as.
std::string CallbridgeAddress(std::string_view name, std::string_view domain);

// The deterministic binary form of a Config (format version 1), for disk and snapshots.
// REQUIRES: config.Validate() is OK.
std::string EncodeConfig(const Config& config);

// EncodeConfig's bytes made in steps, so that a large configuration (a Raft snapshot at a
// million users) is encoded a slice at a time between other work. The config must not
// change between the first Step and the last (the encoder walks its maps).
class ConfigEncoder {
 public:
  // REQUIRES: config.Validate() is OK; `config` outlives the encoder.
  explicit ConfigEncoder(const Config& config);
  ConfigEncoder(const ConfigEncoder&) = delete;
  ConfigEncoder& operator=(const ConfigEncoder&) = delete;

  // Appends the next part to *out: what precedes the bridges, then up to `entries` call
  // bridges and users, then what follows them. True once everything is out.
  // REQUIRES: entries > 0 (CHECKed: a step of none would never end).
  bool Step(size_t entries, std::string* out);
  bool done() const { return part_ == Part::kDone; }

 private:
  enum class Part { kHead, kCallbridges, kUsers, kTail, kDone };

  const Config& config_;
  Part part_ = Part::kHead;
  std::map<std::string, Callbridge>::const_iterator next_callbridge_;
  std::map<std::string, SharedCredentials>::const_iterator next_user_;
};

// The inverse of EncodeConfig. InvalidArgument for bytes it could not have made: an unknown
// format version, truncation, trailing bytes, keys out of order or repeated, or a value that
// fails Validate().
absl::StatusOr<Config> DecodeConfig(std::string_view bytes);

}  // namespace stanzad::config

#endif  // STANZAD_CORE_CONFIG_CONFIG_H_
