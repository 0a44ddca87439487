#include "core/config/xep0227.h"

#include <expat.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <deque>
#include <utility>

#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/base/decimal.h"
#include "core/sasl/base64.h"
#include "core/xml/escape.h"

namespace stanzad::config {
namespace {

// expat joins a namespace URI and a local name with this byte. A newline cannot be in a
// name, and expat refuses a namespace URI that holds it.
constexpr char kNamespaceSeparator = '\n';
// The namespace of XEP-0227 before version 1.0 (old ejabberd files).
constexpr std::string_view kOldNamespace = "http://www.xmpp.org/extensions/xep-0227.html#ns";
constexpr std::string_view kXIncludeNamespace = "http://www.w3.org/2001/XInclude";
// Bytes handed to expat at once, so a token longer than token_bytes_max is caught soon
// after it passes the bound rather than after the whole of a large Feed().
constexpr size_t kParseSliceBytes = 64 * 1024;

struct ExpandedName {
  std::string_view uri;    // empty: no namespace
  std::string_view local;  // the name without prefix
};

ExpandedName SplitName(const char* name) {
  const std::string_view whole(name);
  const size_t separator = whole.find(kNamespaceSeparator);
  if (separator == std::string_view::npos) return {{}, whole};
  return {whole.substr(0, separator), whole.substr(separator + 1)};
}

bool IsPieNamespace(std::string_view uri) {
  return uri == kXep0227Namespace || uri == kOldNamespace;
}

// The value of an unprefixed attribute, or nullptr.
const char* FindAttribute(const char** attributes, std::string_view name) {
  for (size_t i = 0; attributes[i] != nullptr; i += 2) {
    if (name == attributes[i]) return attributes[i + 1];
  }
  return nullptr;
}

bool EqualsIgnoringAsciiCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
           return lower(x) == lower(y);
         });
}

std::string_view MessageOf(const absl::Status& status) {
  return std::string_view(status.message().data(), status.message().size());
}

std::string_view TrimAsciiWhitespace(std::string_view text) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!text.empty() && space(text.front())) text.remove_prefix(1);
  while (!text.empty() && space(text.back())) text.remove_suffix(1);
  return text;
}

// A name as shown in an error: quoted, printable ASCII only, at most 80 bytes.
std::string Quoted(std::string_view text) {
  constexpr size_t kShownBytesMax = 80;
  constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < kShownBytesMax; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out.append({'\\', 'x', kHex[c >> 4], kHex[c & 0xf]});
    }
  }
  if (text.size() > kShownBytesMax) out.append("...");
  out.push_back('"');
  return out;
}

enum class ScramValue { kIterationCount, kSalt, kServerKey, kStoredKey };

std::string_view ScramValueName(ScramValue value) {
  switch (value) {
    case ScramValue::kIterationCount:
      return "iter-count";
    case ScramValue::kSalt:
      return "salt";
    case ScramValue::kServerKey:
      return "server-key";
    case ScramValue::kStoredKey:
      return "stored-key";
  }
  return "?";
}

std::optional<ScramValue> ScramValueFromName(std::string_view name) {
  for (ScramValue value : {ScramValue::kIterationCount, ScramValue::kSalt, ScramValue::kServerKey,
                           ScramValue::kStoredKey}) {
    if (ScramValueName(value) == name) return value;
  }
  return std::nullopt;
}

// What an open element is to the reader.
enum class Kind {
  kServerData,
  kHost,
  kUser,
  kScram,       // <scram-credentials/> of a mechanism we use
  kScramValue,  // one of its four children
  kSkipped,     // anything else, with all it holds
};

// One <scram-credentials/> being read.
struct PendingScram {
  std::string mechanism;  // "SCRAM-SHA-1" or "SCRAM-SHA-256"
  size_t key_bytes = 0;
  std::optional<std::string> values[4];  // by ScramValue, trimmed text
};

}  // namespace

struct Xep0227Reader::Parser {
  explicit Parser(Xep0227ReaderOptions reader_options);
  ~Parser() { XML_ParserFree(expat); }

  absl::Status Feed(std::string_view bytes, bool final);
  void Fail(std::string_view what);
  absl::Status ExpatError();

  void OnStart(const char* name, const char** attributes);
  void OnEnd();
  void OnText(std::string_view text);

  void StartHost(const char** attributes);
  void StartUser(const char** attributes);
  void StartScram(const char** attributes);
  void FinishScram();
  void FinishUser();
  // The bytes of one value, base64 once or (double_base64) twice; nullopt if not.
  std::optional<std::string> DecodeScramValue(std::string_view text, bool double_base64) const;

  struct Callbacks;

  Xep0227ReaderOptions options;
  XML_Parser expat;
  absl::Status error;
  uint64_t bytes_since_event = 0;

  std::vector<Kind> open;  // open elements, the root first
  bool root_seen = false;
  std::string host;  // of the open <host/>
  bool host_wanted = false;

  bool in_user = false;
  ImportedUser user;
  PendingScram scram;
  std::optional<ScramValue> value_open;
  std::string value_text;

  std::deque<ImportedUser> ready;
  std::vector<Xep0227Include> includes;
  uint64_t skipped_users = 0;
  uint64_t users = 0;
};

// expat's callbacks, each handing over to the Parser in its user data.
struct Xep0227Reader::Parser::Callbacks {
  static void XMLCALL StartElement(void* data, const XML_Char* name, const XML_Char** attributes) {
    static_cast<Parser*>(data)->OnStart(name, attributes);
  }
  static void XMLCALL EndElement(void* data, const XML_Char* /*name*/) {
    static_cast<Parser*>(data)->OnEnd();
  }
  static void XMLCALL CharacterData(void* data, const XML_Char* text, int length) {
    static_cast<Parser*>(data)->OnText(std::string_view(text, static_cast<size_t>(length)));
  }
  static void XMLCALL Comment(void* data, const XML_Char* /*text*/) {
    static_cast<Parser*>(data)->bytes_since_event = 0;  // progress; nothing to keep
  }
  static void XMLCALL ProcessingInstruction(void* data, const XML_Char* /*target*/,
                                            const XML_Char* /*text*/) {
    static_cast<Parser*>(data)->bytes_since_event = 0;
  }
  static void XMLCALL Doctype(void* data, const XML_Char* /*name*/, const XML_Char* /*system_id*/,
                              const XML_Char* /*public_id*/, int /*has_internal_subset*/) {
    // No DTD, so no entity declarations and nothing to expand: "billion laughs" cannot start.
    static_cast<Parser*>(data)->Fail("a DOCTYPE is not allowed");
  }
};

Xep0227Reader::Parser::Parser(Xep0227ReaderOptions reader_options)
    : options(std::move(reader_options)), expat(XML_ParserCreateNS(nullptr, kNamespaceSeparator)) {
  CHECK(expat != nullptr);
  XML_SetUserData(expat, this);
  XML_SetElementHandler(expat, Callbacks::StartElement, Callbacks::EndElement);
  XML_SetCharacterDataHandler(expat, Callbacks::CharacterData);
  XML_SetCommentHandler(expat, Callbacks::Comment);
  XML_SetProcessingInstructionHandler(expat, Callbacks::ProcessingInstruction);
  XML_SetStartDoctypeDeclHandler(expat, Callbacks::Doctype);
  XML_SetParamEntityParsing(expat, XML_PARAM_ENTITY_PARSING_NEVER);
}

void Xep0227Reader::Parser::Fail(std::string_view what) {
  if (!error.ok()) return;
  std::string where =
      Concat("line ", std::to_string(XML_GetCurrentLineNumber(expat)), ", column ",
             std::to_string(XML_GetCurrentColumnNumber(expat) + 1), " (byte ",
             // -1 before the first byte (an empty file)
             std::to_string(std::max<XML_Index>(XML_GetCurrentByteIndex(expat), 0)), "): ");
  if (in_user) {
    where.append(Concat("user ", Quoted(user.name), " (line ", std::to_string(user.line), "): "));
  }
  error = absl::InvalidArgumentError(Concat(where, what));
  XML_StopParser(expat, XML_FALSE);
}

absl::Status Xep0227Reader::Parser::ExpatError() {
  if (error.ok()) {
    Fail(Concat("not well-formed XML: ", XML_ErrorString(XML_GetErrorCode(expat))));
  }
  return error;
}

absl::Status Xep0227Reader::Parser::Feed(std::string_view bytes, bool final) {
  if (!error.ok()) return error;
  do {
    const size_t slice = std::min(bytes.size(), kParseSliceBytes);
    const bool last = final && slice == bytes.size();
    if (XML_Parse(expat, bytes.data(), static_cast<int>(slice), last ? XML_TRUE : XML_FALSE) !=
        XML_STATUS_OK) {
      return ExpatError();
    }
    if (!error.ok()) return error;
    bytes_since_event += slice;
    if (bytes_since_event > options.token_bytes_max) {
      Fail(Concat("a tag or text longer than ", std::to_string(options.token_bytes_max), " bytes"));
      return error;
    }
    bytes.remove_prefix(slice);
  } while (!bytes.empty());
  return absl::OkStatus();
}

void Xep0227Reader::Parser::OnStart(const char* name, const char** attributes) {
  bytes_since_event = 0;
  if (!error.ok()) return;
  if (open.size() >= options.depth_max) {
    Fail(Concat("elements nested deeper than ", std::to_string(options.depth_max)));
    return;
  }
  const ExpandedName element = SplitName(name);
  const Kind parent = open.empty() ? Kind::kSkipped : open.back();
  Kind kind = Kind::kSkipped;
  if (open.empty()) {
    if (root_seen) return Fail("a second root element");  // expat refuses this first
    root_seen = true;
    if (IsPieNamespace(element.uri) && element.local == "server-data") {
      kind = Kind::kServerData;
    } else if (IsPieNamespace(element.uri) && element.local == "host") {
      kind = Kind::kHost;
      StartHost(attributes);
    } else {
      return Fail(Concat("the root element <", element.local, "> in namespace ",
                         Quoted(element.uri), " is not XEP-0227's <server-data/> or <host/> in ",
                         kXep0227Namespace));
    }
  } else if (parent == Kind::kServerData || parent == Kind::kHost) {
    if (element.uri == kXIncludeNamespace && element.local == "include") {
      if (parent == Kind::kServerData || host_wanted) {
        const char* href = FindAttribute(attributes, "href");
        if (href == nullptr) return Fail("an <xi:include/> without href");
        if (includes.size() >= options.includes_max) {
          return Fail(
              Concat("more than ", std::to_string(options.includes_max), " <xi:include/>s"));
        }
        includes.push_back(
            {href, parent == Kind::kHost ? host : std::string(), XML_GetCurrentLineNumber(expat)});
      }
    } else if (parent == Kind::kServerData && IsPieNamespace(element.uri) &&
               element.local == "host") {
      kind = Kind::kHost;
      StartHost(attributes);
    } else if (parent == Kind::kServerData && IsPieNamespace(element.uri) &&
               element.local == "user") {
      return Fail("a <user/> outside a <host/>: its domain is unknown");
    } else if (parent == Kind::kHost && IsPieNamespace(element.uri) && element.local == "user") {
      if (host_wanted) {
        kind = Kind::kUser;
        StartUser(attributes);
      } else {
        ++skipped_users;
      }
    }
  } else if (parent == Kind::kUser) {
    if (element.uri == kXep0227ScramNamespace && element.local == "scram-credentials") {
      StartScram(attributes);
      if (!scram.mechanism.empty()) kind = Kind::kScram;
    }
  } else if (parent == Kind::kScram) {
    const std::optional<ScramValue> value =
        element.uri == kXep0227ScramNamespace ? ScramValueFromName(element.local) : std::nullopt;
    if (value.has_value()) {
      if (scram.values[static_cast<int>(*value)].has_value()) {
        return Fail(Concat(scram.mechanism, ": <", ScramValueName(*value), "/> twice"));
      }
      kind = Kind::kScramValue;
      value_open = value;
      value_text.clear();
    }
  } else if (parent == Kind::kScramValue) {
    return Fail(
        Concat(scram.mechanism, ": an element inside <", ScramValueName(*value_open), "/>"));
  }
  if (!error.ok()) return;
  open.push_back(kind);
}

void Xep0227Reader::Parser::StartHost(const char** attributes) {
  const char* jid = FindAttribute(attributes, "jid");
  if (jid == nullptr || *jid == '\0') return Fail("a <host/> without jid");
  host = jid;
  host_wanted = options.domain.empty() || EqualsIgnoringAsciiCase(host, options.domain);
}

void Xep0227Reader::Parser::StartUser(const char** attributes) {
  user = ImportedUser();
  user.host = host;
  user.line = XML_GetCurrentLineNumber(expat);
  const char* name = FindAttribute(attributes, "name");
  if (name == nullptr) return Fail("a <user/> without name");
  user.name = name;
  in_user = true;
  if (absl::Status valid = ValidateUserName(user.name); !valid.ok()) {
    return Fail(MessageOf(valid));
  }
  if (const char* password = FindAttribute(attributes, "password"); password != nullptr) {
    const std::string_view text(password);
    if (text.empty()) return Fail("an empty password");
    if (text.size() > kImportedPasswordBytesMax) {
      return Fail(
          Concat("a password longer than ", std::to_string(kImportedPasswordBytesMax), " bytes"));
    }
    // ejabberd before 21.12 put SCRAM values in this attribute; hashing that text as a
    // password would lock the user out without a word.
    if (text.starts_with("scram:")) {
      return Fail(
          "the password attribute holds SCRAM values in the format of ejabberd before 21.12, "
          "which stanzad does not read; export again with a newer ejabberd");
    }
    user.password = password;
  }
}

void Xep0227Reader::Parser::StartScram(const char** attributes) {
  scram = PendingScram();
  const char* mechanism = FindAttribute(attributes, "mechanism");
  if (mechanism == nullptr) return Fail("a <scram-credentials/> without mechanism");
  const std::string_view name(mechanism);
  if (name == "SCRAM-SHA-1") {
    if (user.credentials.has_value() && user.credentials->scram_sha1.has_value()) {
      return Fail("SCRAM-SHA-1 credentials twice");
    }
    scram.key_bytes = kSha1Bytes;
  } else if (name == "SCRAM-SHA-256") {
    if (user.credentials.has_value() && user.credentials->scram_sha256.has_value()) {
      return Fail("SCRAM-SHA-256 credentials twice");
    }
    scram.key_bytes = kSha256Bytes;
  } else {
    // SCRAM-SHA-512 and others: stanzad cannot check them; the user may have more.
    constexpr size_t kIgnoredMechanismsMax = 8;
    constexpr size_t kMechanismNameBytesMax = 64;
    if (user.ignored_mechanisms.size() >= kIgnoredMechanismsMax ||
        name.size() > kMechanismNameBytesMax) {
      return Fail("too many or too long <scram-credentials/> mechanisms");
    }
    user.ignored_mechanisms.emplace_back(name);
    return;
  }
  scram.mechanism = name;
}

std::optional<std::string> Xep0227Reader::Parser::DecodeScramValue(std::string_view text,
                                                                   bool double_base64) const {
  std::optional<std::string> once = sasl::Base64Decode(text);
  if (!once.has_value() || !double_base64) return once;
  return sasl::Base64Decode(*once);
}

void Xep0227Reader::Parser::FinishScram() {
  const std::string& mechanism = scram.mechanism;
  for (ScramValue value : {ScramValue::kIterationCount, ScramValue::kSalt, ScramValue::kServerKey,
                           ScramValue::kStoredKey}) {
    if (!scram.values[static_cast<int>(value)].has_value()) {
      return Fail(Concat(mechanism, ": no <", ScramValueName(value), "/>"));
    }
  }
  const std::string& iterations_text = *scram.values[static_cast<int>(ScramValue::kIterationCount)];
  const std::optional<uint32_t> iterations =
      iterations_text.size() <= 10 ? ParseDecimal<uint32_t>(iterations_text) : std::nullopt;
  if (!iterations.has_value()) {
    return Fail(
        Concat(mechanism, ": <iter-count/> ", Quoted(iterations_text), " is not a decimal number"));
  }
  if (*iterations < kScramIterationsMin || *iterations > kScramIterationsMax) {
    return Fail(Concat(mechanism, ": ", std::to_string(*iterations),
                       " iterations; stanzad accepts ", std::to_string(kScramIterationsMin), " to ",
                       std::to_string(kScramIterationsMax)));
  }
  // Single or double base64 is told by the stored key: a key of the hash's size never
  // decodes to base64 text of a key (20 bytes of text → 15 bytes, 32 → 24).
  const std::string& stored_text = *scram.values[static_cast<int>(ScramValue::kStoredKey)];
  bool double_base64 = false;
  std::optional<std::string> stored_key = DecodeScramValue(stored_text, false);
  if (stored_key.has_value() && stored_key->size() != scram.key_bytes) {
    std::optional<std::string> inner = sasl::Base64Decode(*stored_key);
    if (inner.has_value() && inner->size() == scram.key_bytes) {
      double_base64 = true;
      stored_key = std::move(inner);
    }
  }
  if (!stored_key.has_value()) return Fail(Concat(mechanism, ": <stored-key/> is not base64"));
  if (stored_key->size() != scram.key_bytes) {
    return Fail(Concat(mechanism, ": <stored-key/> has ", std::to_string(stored_key->size()),
                       " bytes, not ", std::to_string(scram.key_bytes)));
  }
  const char* const encoding =
      double_base64 ? " is not base64 of base64, as <stored-key/> is" : " is not base64";
  std::optional<std::string> server_key =
      DecodeScramValue(*scram.values[static_cast<int>(ScramValue::kServerKey)], double_base64);
  if (!server_key.has_value()) return Fail(Concat(mechanism, ": <server-key/>", encoding));
  if (server_key->size() != scram.key_bytes) {
    return Fail(Concat(mechanism, ": <server-key/> has ", std::to_string(server_key->size()),
                       " bytes, not ", std::to_string(scram.key_bytes)));
  }
  std::optional<std::string> salt =
      DecodeScramValue(*scram.values[static_cast<int>(ScramValue::kSalt)], double_base64);
  if (!salt.has_value()) return Fail(Concat(mechanism, ": <salt/>", encoding));
  if (salt->size() < kScramSaltBytesMin || salt->size() > kScramSaltBytesMax) {
    return Fail(Concat(mechanism, ": a salt of ", std::to_string(salt->size()),
                       " bytes; stanzad accepts ", std::to_string(kScramSaltBytesMin), " to ",
                       std::to_string(kScramSaltBytesMax)));
  }
  ScramSecret secret{.salt = std::move(*salt),
                     .iteration_count = *iterations,
                     .stored_key = std::move(*stored_key),
                     .server_key = std::move(*server_key)};
  if (!user.credentials.has_value()) user.credentials.emplace();
  (scram.key_bytes == kSha1Bytes ? user.credentials->scram_sha1 : user.credentials->scram_sha256) =
      std::move(secret);
  user.double_base64 = user.double_base64 || double_base64;
}

void Xep0227Reader::Parser::FinishUser() {
  if (!user.credentials.has_value() && !user.password.has_value()) {
    if (!user.ignored_mechanisms.empty()) {
      std::string mechanisms;
      for (const std::string& mechanism : user.ignored_mechanisms) {
        mechanisms.append(mechanisms.empty() ? "" : ", ").append(mechanism);
      }
      return Fail(Concat("only ", mechanisms,
                         " credentials, which stanzad cannot use (it needs SCRAM-SHA-1, "
                         "SCRAM-SHA-256 or a password)"));
    }
    return Fail("neither SCRAM-SHA-1 or SCRAM-SHA-256 credentials nor a password");
  }
  if (user.credentials.has_value()) {
    // Each value was checked above; this is the one rule that decides what Raft accepts.
    absl::Status valid = ValidateUserCredentials(*user.credentials);
    if (!valid.ok()) return Fail(MessageOf(valid));
  }
  in_user = false;
  ++users;
  ready.push_back(std::move(user));
  user = ImportedUser();
}

void Xep0227Reader::Parser::OnEnd() {
  bytes_since_event = 0;
  if (!error.ok()) return;
  CHECK(!open.empty());  // expat matches end tags to start tags
  const Kind kind = open.back();
  switch (kind) {
    case Kind::kScramValue:
      scram.values[static_cast<int>(*value_open)] = std::string(TrimAsciiWhitespace(value_text));
      value_open.reset();
      value_text.clear();
      break;
    case Kind::kScram:
      FinishScram();
      break;
    case Kind::kUser:
      FinishUser();
      break;
    case Kind::kHost:
      host.clear();
      host_wanted = false;
      break;
    case Kind::kServerData:
    case Kind::kSkipped:
      break;
  }
  open.pop_back();
}

void Xep0227Reader::Parser::OnText(std::string_view text) {
  bytes_since_event = 0;
  if (!error.ok() || open.empty() || open.back() != Kind::kScramValue) return;
  if (value_text.size() + text.size() > options.scram_value_bytes_max) {
    return Fail(Concat(scram.mechanism, ": <", ScramValueName(*value_open), "/> longer than ",
                       std::to_string(options.scram_value_bytes_max), " bytes"));
  }
  value_text.append(text);
}

Xep0227Reader::Xep0227Reader(Xep0227ReaderOptions options)
    : parser_(std::make_unique<Parser>(std::move(options))) {}

Xep0227Reader::~Xep0227Reader() = default;

absl::Status Xep0227Reader::Feed(std::string_view bytes) { return parser_->Feed(bytes, false); }

absl::Status Xep0227Reader::Finish() { return parser_->Feed(std::string_view("", 0), true); }

std::optional<ImportedUser> Xep0227Reader::Next() {
  if (parser_->ready.empty()) return std::nullopt;
  ImportedUser next = std::move(parser_->ready.front());
  parser_->ready.pop_front();
  return next;
}

const std::vector<Xep0227Include>& Xep0227Reader::includes() const { return parser_->includes; }
uint64_t Xep0227Reader::skipped_users() const { return parser_->skipped_users; }
uint64_t Xep0227Reader::users() const { return parser_->users; }

namespace {

void AppendScram(std::string_view mechanism, const ScramSecret& secret, ScramEncoding encoding,
                 std::string* out) {
  auto encode = [encoding](std::string_view bytes) {
    std::string once = sasl::Base64Encode(bytes);
    return encoding == ScramEncoding::kDoubleBase64 ? sasl::Base64Encode(once) : once;
  };
  out->append("<scram-credentials xmlns='")
      .append(kXep0227ScramNamespace)
      .append("' mechanism='")
      .append(mechanism)
      .append("'><iter-count>")
      .append(std::to_string(secret.iteration_count))
      .append("</iter-count><salt>")
      .append(encode(secret.salt))
      .append("</salt><server-key>")
      .append(encode(secret.server_key))
      .append("</server-key><stored-key>")
      .append(encode(secret.stored_key))
      .append("</stored-key></scram-credentials>");
}

}  // namespace

void AppendXep0227Header(std::string_view domain, std::string* out) {
  out->append("<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='")
      .append(kXep0227Namespace)
      .append("'>\n<host jid='");
  xml::AppendEscaped(domain, out);
  out->append("'>\n");
}

void AppendXep0227User(std::string_view name, const UserCredentials& credentials,
                       ScramEncoding encoding, std::string* out) {
  out->append("<user name='");
  xml::AppendEscaped(name, out);
  out->append("'>");
  if (credentials.scram_sha1.has_value()) {
    AppendScram("SCRAM-SHA-1", *credentials.scram_sha1, encoding, out);
  }
  if (credentials.scram_sha256.has_value()) {
    AppendScram("SCRAM-SHA-256", *credentials.scram_sha256, encoding, out);
  }
  out->append("</user>\n");
}

void AppendXep0227Footer(std::string* out) { out->append("</host>\n</server-data>\n"); }

}  // namespace stanzad::config
