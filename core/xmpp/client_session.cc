#include "core/xmpp/client_session.h"

#include <utility>

#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/base/decimal.h"
#include "core/base/hex.h"
#include "core/sasl/base64.h"
#include "core/xml/escape.h"
#include "core/xml/start_tag.h"

namespace stanzad::xmpp {
namespace {

// Random bytes per stream id and per generated resource.
constexpr size_t kStreamIdRandomBytes = 16;
constexpr size_t kResourceRandomBytes = 8;

std::string_view LocalName(std::string_view qualified_name) {
  const size_t colon = qualified_name.find(':');
  return colon == std::string_view::npos ? qualified_name : qualified_name.substr(colon + 1);
}

// The offset of the '>' that ends the start tag `element` begins with (a '>' may
// appear inside attribute values), or npos.
size_t StartTagEnd(std::string_view element) {
  for (size_t i = 1; i < element.size(); ++i) {
    const char c = element[i];
    if (c == '\'' || c == '"') {
      i = element.find(c, i + 1);
      if (i == std::string_view::npos) return i;
    } else if (c == '>') {
      return i;
    }
  }
  return std::string_view::npos;
}

// The raw character data of a simple element (<x>TEXT</x>): "" when it is empty
// (<x/> or <x></x>).
std::string_view ContentOf(std::string_view element) {
  const size_t tag_end = StartTagEnd(element);
  if (tag_end == std::string_view::npos || element[tag_end - 1] == '/') return {};
  const size_t close = element.rfind("</");
  if (close == std::string_view::npos || close <= tag_end) return {};
  return element.substr(tag_end + 1, close - tag_end - 1);
}

// The first child element of `element` (from its '<' to the end of `element`), or "".
std::string_view FirstChild(std::string_view element) {
  const size_t tag_end = StartTagEnd(element);
  if (tag_end == std::string_view::npos || element[tag_end - 1] == '/') return {};
  size_t i = tag_end + 1;
  while (i < element.size() && xml::IsXmlWhitespace(element[i])) ++i;
  if (i + 1 >= element.size() || element[i] != '<' || element[i + 1] == '/') return {};
  return element.substr(i);
}

// The raw text of <resource>…</resource> inside `bind`, "" if absent or empty;
// nullopt if it holds markup.
std::optional<std::string_view> ResourceOf(std::string_view bind) {
  size_t at = 0;
  while ((at = bind.find("<resource", at)) != std::string_view::npos) {
    const size_t after = at + 9;
    if (after < bind.size() &&
        (bind[after] == '>' || bind[after] == '/' || xml::IsXmlWhitespace(bind[after]))) {
      break;
    }
    at = after;
  }
  if (at == std::string_view::npos) return std::string_view();
  const std::string_view resource = bind.substr(at);
  const size_t tag_end = StartTagEnd(resource);
  if (tag_end == std::string_view::npos) return std::nullopt;
  if (resource[tag_end - 1] == '/') return std::string_view();
  const size_t close = resource.find("</", tag_end);
  if (close == std::string_view::npos) return std::nullopt;
  const std::string_view text = resource.substr(tag_end + 1, close - tag_end - 1);
  if (text.find('<') != std::string_view::npos) return std::nullopt;
  return text;
}

std::string SaslElement(std::string_view name, std::string_view data) {
  if (data.empty()) return Concat("<", name, " xmlns='", kSaslNamespace, "'/>");
  return Concat("<", name, " xmlns='", kSaslNamespace, "'>", sasl::Base64Encode(data), "</", name,
                ">");
}

}  // namespace

ClientSession::ClientSession(Delegate* delegate, Options options)
    : delegate_(delegate), options_(std::move(options)) {
  CHECK(delegate_ != nullptr);
  CHECK(!options_.domain.empty());
  tokenizer_.emplace(options_.limits);
  tls_established_ = options_.direct_tls;
}

void ClientSession::OnBytes(std::string_view bytes) {
  if (state_ == State::kClosed || state_ == State::kAwaitingTls) return;
  tokenizer_->Feed(bytes);
  ProcessTokens();
}

void ClientSession::ProcessTokens() {
  // kAwaitingTls: the rest of these bytes came in the clear after <starttls/>.
  while (state_ != State::kClosed && state_ != State::kAwaitingTls) {
    const xml::Token token = tokenizer_->Next();
    if (token.type == xml::TokenType::kNeedMoreData) return;
    if (state_ == State::kBinding || state_ == State::kResuming) {
      // Kept (copied: the tokenizer's views end with this call) for BindDone().
      held_bytes_ += token.bytes.size();
      if (held_bytes_ > options_.limits.stanza_bytes_max) {
        CloseWithError(StreamErrorCondition::kPolicyViolation,
                       "too much sent before the resource was bound");
        return;
      }
      held_.push_back({token.type, std::string(token.bytes),
                       token.type == xml::TokenType::kError ? tokenizer_->error() : StreamError{}});
      if (token.type == xml::TokenType::kError) return;
      continue;
    }
    Dispatch(token.type, token.bytes,
             token.type == xml::TokenType::kError ? tokenizer_->error() : StreamError{});
  }
}

void ClientSession::Dispatch(xml::TokenType type, std::string_view bytes,
                             const StreamError& error) {
  switch (type) {
    case xml::TokenType::kNeedMoreData:
      return;
    case xml::TokenType::kStreamHeader:
      HandleHeader();
      return;
    case xml::TokenType::kElement:
      HandleElement(bytes);
      return;
    case xml::TokenType::kStreamEnd:
      Close();
      return;
    case xml::TokenType::kError:
      CloseWithError(error.condition, error.text);
      return;
  }
}

void ClientSession::TlsEstablished() {
  if (state_ != State::kAwaitingTls) return;
  tokenizer_.emplace(options_.limits);
  tls_established_ = true;
  state_ = State::kAwaitingHeader;
  header_sent_ = false;
}

void ClientSession::RestartStream() {
  // RFC 6120 §6.4.6: the client opens a new stream at once; its header may
  // already be in the bytes fed, so the tokenizer keeps them.
  tokenizer_->Restart();
  state_ = State::kAwaitingHeader;
  header_sent_ = false;
}

void ClientSession::SendHeaderIfNeeded() {
  if (header_sent_) return;
  header_sent_ = true;
  // RFC 6120 §4.7.3: a fresh id for every stream, restarts included.
  stream_id_ = HexOf(delegate_->RandomBytes(kStreamIdRandomBytes));
  std::string header =
      "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
      "xmlns:stream='http://etherx.jabber.org/streams' id='";
  header.append(stream_id_).append("' from='");
  xml::AppendEscaped(options_.domain, &header);
  header.append("' version='1.0' xml:lang='en'>");
  delegate_->Send(header);
}

void ClientSession::SendFeatures() {
  if (!tls_established_) {
    delegate_->Send(Concat("<stream:features><starttls xmlns='", kTlsNamespace,
                           "'><required/></starttls></stream:features>"));
  } else if (!authenticated_) {
    delegate_->Send(Concat("<stream:features><mechanisms xmlns='", kSaslNamespace,
                           "'><mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1"
                           "</mechanism><mechanism>PLAIN</mechanism></mechanisms>"
                           "</stream:features>"));
  } else {
    delegate_->Send(Concat("<stream:features><bind xmlns='", kBindNamespace, "'/><sm xmlns='",
                           kSmNamespace, "'/></stream:features>"));
  }
}

void ClientSession::HandleHeader() {
  const xml::StreamHeader& header = tokenizer_->header();
  const std::string* content_namespace = header.FindNamespace("");
  if (content_namespace == nullptr || *content_namespace != kClientNamespace) {
    CloseWithError(StreamErrorCondition::kInvalidNamespace,
                   "a client stream must use the namespace jabber:client");
    return;
  }
  const std::string* to = header.Find("to");
  std::string address = to == nullptr ? std::string() : *to;
  for (char& c : address) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (!address.empty() && address.back() == '.') address.pop_back();
  if (address != options_.domain) {
    CloseWithError(StreamErrorCondition::kHostUnknown,
                   Concat("this server serves ", options_.domain, ", not '", address, "'"));
    return;
  }
  const std::string* version = header.Find("version");
  if (version == nullptr || version->rfind("1.", 0) != 0) {
    CloseWithError(StreamErrorCondition::kUnsupportedVersion, "XMPP version 1.0 is required");
    return;
  }
  if (!tls_established_ && !options_.tls_unavailable.empty()) {
    // RFC 6120 §4.9.3.11: internal-server-error is "a misconfiguration or other
    // internal error that prevents it from servicing the stream", which a server
    // without a certificate is. Not policy-violation or unsupported-feature: those
    // say the client did something wrong, and it did not.
    CloseWithError(StreamErrorCondition::kInternalServerError, options_.tls_unavailable);
    return;
  }
  SendHeaderIfNeeded();
  SendFeatures();
  if (!tls_established_) {
    state_ = State::kAwaitingStartTls;
  } else if (!authenticated_) {
    state_ = State::kAwaitingAuth;
  } else {
    state_ = State::kAwaitingBind;
  }
}

std::string_view ClientSession::NamespaceOf(std::string_view element) const {
  const std::string_view name = xml::ElementName(element);
  const size_t colon = name.find(':');
  if (colon == std::string_view::npos) {
    if (std::optional<std::string_view> xmlns = xml::FindRawAttribute(element, "xmlns")) {
      return *xmlns;
    }
    const std::string* uri = tokenizer_->header().FindNamespace("");
    return uri == nullptr ? std::string_view() : std::string_view(*uri);
  }
  const std::string_view prefix = name.substr(0, colon);
  const std::string attribute = Concat("xmlns:", prefix);
  if (std::optional<std::string_view> xmlns = xml::FindRawAttribute(element, attribute)) {
    return *xmlns;
  }
  const std::string* uri = tokenizer_->header().FindNamespace(prefix);
  return uri == nullptr ? std::string_view() : std::string_view(*uri);
}

void ClientSession::HandleElement(std::string_view element) {
  const std::string_view local_name = LocalName(xml::ElementName(element));
  switch (state_) {
    case State::kAwaitingStartTls:
      if (local_name != "starttls" || NamespaceOf(element) != kTlsNamespace) {
        CloseWithError(StreamErrorCondition::kPolicyViolation,
                       "TLS is required: send <starttls/> first");
        return;
      }
      delegate_->Send(Concat("<proceed xmlns='", kTlsNamespace, "'/>"));
      state_ = State::kAwaitingTls;
      delegate_->StartTls();  // last: `element` may not outlive a new tokenizer
      return;
    case State::kAwaitingAuth:
      if (NamespaceOf(element) != kSaslNamespace) {
        CloseWithError(StreamErrorCondition::kNotAuthorized,
                       "authenticate (SASL) before sending anything else");
        return;
      }
      HandleSasl(element, local_name);
      return;
    case State::kAwaitingBind:
      if (HandleStreamManagement(element)) return;
      HandleBind(element);
      return;
    case State::kBound:
      if (HandleStreamManagement(element)) return;
      HandleStanza(element);
      return;
    case State::kAwaitingHeader:
    case State::kAwaitingTls:
    case State::kBinding:
    case State::kResuming:
    case State::kClosed:
      return;  // no element is read before a header, or while waiting
  }
}

void ClientSession::HandleSasl(std::string_view element, std::string_view local_name) {
  const std::string_view content = ContentOf(element);
  if (local_name == "abort") {
    SaslFailure("aborted", "");
    return;
  }
  if (std::optional<std::string> refusal = delegate_->RefuseAuthentication()) {
    mechanism_.emplace<std::monostate>();
    CloseWithError(StreamErrorCondition::kPolicyViolation, std::move(*refusal));
    return;
  }
  std::string message;
  if (local_name == "auth") {
    const std::string_view mechanism = xml::FindRawAttribute(element, "mechanism").value_or("");
    sasl::CredentialsLookup lookup = [this](std::string_view username) {
      return delegate_->CredentialsFor(username);
    };
    // RFC 6120 §6.3.8: a client may act only as its own bare JID.
    sasl::AuthorizationCheck authorize = [this](std::string_view username,
                                                std::string_view authzid) {
      absl::StatusOr<jid::Jid> own = jid::Jid::Parse(Concat(username, "@", options_.domain));
      absl::StatusOr<jid::Jid> asked = jid::Jid::Parse(authzid);
      return own.ok() && asked.ok() && asked->IsBare() && *asked == *own;
    };
    if (const std::optional<sasl::ScramMechanism> scram = sasl::ScramMechanismFromName(mechanism)) {
      mechanism_.emplace<sasl::ScramServer>(sasl::ScramServer::Params{
          *scram, std::move(lookup), std::move(authorize),
          sasl::MakeScramNonce(delegate_->RandomBytes(sasl::kScramNonceRandomBytes)),
          options_.unknown_user_salt_key});
    } else if (mechanism == "PLAIN") {
      mechanism_.emplace<sasl::PlainServer>(
          sasl::PlainServer::Params{std::move(lookup), std::move(authorize)});
    } else {
      SaslFailure("invalid-mechanism", "");
      return;
    }
    if (content.empty()) {
      // No initial response: ask for it with an empty challenge (RFC 6120 §6.4.2).
      delegate_->Send(SaslElement("challenge", ""));
      return;
    }
    if (content != "=") {  // "=": an empty initial response
      std::optional<std::string> decoded = sasl::Base64Decode(content);
      if (!decoded) {
        SaslFailure("incorrect-encoding", "");
        return;
      }
      message = std::move(*decoded);
    }
  } else if (local_name == "response" && !std::holds_alternative<std::monostate>(mechanism_)) {
    std::optional<std::string> decoded = sasl::Base64Decode(content);
    if (!decoded) {
      SaslFailure("incorrect-encoding", "");
      return;
    }
    message = std::move(*decoded);
  } else {
    SaslFailure("malformed-request", "");
    return;
  }
  if (auto* scram = std::get_if<sasl::ScramServer>(&mechanism_)) {
    HandleSaslStep(scram->Step(message));
  } else {
    HandleSaslStep(std::get<sasl::PlainServer>(mechanism_).Step(message));
  }
}

void ClientSession::HandleSaslStep(const sasl::SaslStep& step) {
  std::string username;
  if (auto* scram = std::get_if<sasl::ScramServer>(&mechanism_)) {
    username = std::string(scram->claimed_username());
  } else if (auto* plain = std::get_if<sasl::PlainServer>(&mechanism_)) {
    username = std::string(plain->claimed_username());
  }
  switch (step.kind) {
    case sasl::SaslStep::Kind::kChallenge:
      delegate_->Send(SaslElement("challenge", step.data));
      return;
    case sasl::SaslStep::Kind::kFailure:
      SaslFailure(sasl::SaslConditionName(step.condition), std::move(username));
      return;
    case sasl::SaslStep::Kind::kSuccess: {
      // The username becomes the JID's localpart; one that cannot be is refused
      // before the client is told it succeeded.
      absl::StatusOr<jid::Jid> bare = jid::Jid::Parse(Concat(username, "@", options_.domain));
      if (!bare.ok() || !bare->IsBare() || bare->domainpart() != options_.domain) {
        SaslFailure("not-authorized", std::move(username));
        return;
      }
      mechanism_.emplace<std::monostate>();
      delegate_->Send(SaslElement("success", step.data));
      authenticated_ = true;
      username_ = std::move(username);
      bare_jid_ = *std::move(bare);
      delegate_->OnAuthentication(username_, true, "");
      if (state_ == State::kClosed) return;
      RestartStream();
      return;
    }
  }
}

void ClientSession::SaslFailure(std::string_view condition, std::string username) {
  mechanism_.emplace<std::monostate>();
  delegate_->Send(Concat("<failure xmlns='", kSaslNamespace, "'><", condition, "/></failure>"));
  delegate_->OnAuthentication(username, false, condition);
  if (CountFailure()) {
    CloseWithError(StreamErrorCondition::kPolicyViolation,
                   "too many failed authentication attempts");
  }
}

bool ClientSession::CountFailure() {
  ++failures_;
  return failures_ >= options_.failures_max;
}

void ClientSession::HandleBind(std::string_view element) {
  const Stanza stanza = InspectStanza(element);
  const std::string_view bind = FirstChild(element);
  if (stanza.kind != StanzaKind::kIq || (stanza.xmlns && *stanza.xmlns != kClientNamespace) ||
      bind.empty() || LocalName(xml::ElementName(bind)) != "bind" ||
      NamespaceOf(bind) != kBindNamespace) {
    CloseWithError(StreamErrorCondition::kNotAuthorized, "bind a resource before sending stanzas");
    return;
  }
  if (stanza.is_error() || (stanza.type && *stanza.type == "result")) return;
  if (!stanza.type || *stanza.type != "set") {
    delegate_->Send(MakeErrorReply(stanza, StanzaErrorCondition::kBadRequest, options_.domain,
                                   "resource binding is an IQ of type 'set'"));
    return;
  }
  const std::optional<std::string_view> raw_resource = ResourceOf(bind);
  std::optional<std::string> resource;
  if (raw_resource) resource = xml::Unescape(*raw_resource);
  if (!resource) {
    delegate_->Send(MakeErrorReply(stanza, StanzaErrorCondition::kBadRequest, options_.domain,
                                   "malformed <resource/>"));
    return;
  }
  if (resource->empty()) *resource = HexOf(delegate_->RandomBytes(kResourceRandomBytes));
  absl::StatusOr<jid::Jid> full = jid::Jid::Parse(Concat(bare_jid_->Full(), "/", *resource));
  if (!full.ok()) {
    // RFC 6120 §7.7.2.1: a resource that fails the profile is bad-request.
    delegate_->Send(MakeErrorReply(stanza, StanzaErrorCondition::kBadRequest, options_.domain,
                                   std::string(full.status().message())));
    return;
  }
  pending_bind_iq_ = std::string(element);
  pending_full_jid_ = *std::move(full);
  state_ = State::kBinding;
  delegate_->RequestBind(*pending_full_jid_);
}

void ClientSession::BindDone(const absl::Status& status) {
  if (state_ != State::kBinding) return;
  const std::string element = std::move(pending_bind_iq_);
  pending_bind_iq_.clear();
  std::optional<jid::Jid> full = std::move(pending_full_jid_);
  pending_full_jid_.reset();
  const Stanza stanza = InspectStanza(element);
  if (!status.ok()) {
    state_ = State::kAwaitingBind;
    StanzaErrorCondition condition = StanzaErrorCondition::kInternalServerError;
    if (absl::IsAlreadyExists(status)) condition = StanzaErrorCondition::kConflict;
    if (absl::IsResourceExhausted(status)) condition = StanzaErrorCondition::kResourceConstraint;
    delegate_->Send(MakeErrorReply(stanza, condition, options_.domain));
    if (CountFailure()) {
      CloseWithError(StreamErrorCondition::kPolicyViolation, "too many failed bind attempts");
      return;
    }
  } else {
    std::string payload = Concat("<bind xmlns='", kBindNamespace, "'><jid>");
    xml::AppendEscaped(full->Full(), &payload);
    payload.append("</jid></bind>");
    Bound(*std::move(full));
    delegate_->Send(MakeIqResult(stanza, options_.domain, payload));
  }
  ReplayHeld();
}

void ClientSession::Bound(jid::Jid full) {
  from_attribute_ = " from='";
  xml::AppendEscaped(full.Full(), &from_attribute_);
  from_attribute_.append("'");
  full_jid_ = std::move(full);
  state_ = State::kBound;
}

void ClientSession::ReplayHeld() {
  // What arrived while waiting, in order; it may start another wait.
  std::vector<HeldToken> held = std::move(held_);
  held_.clear();
  held_bytes_ = 0;
  for (size_t i = 0; i < held.size(); ++i) {
    if (state_ == State::kClosed) return;
    if (state_ == State::kBinding || state_ == State::kResuming) {
      for (size_t j = i; j < held.size(); ++j) {
        held_bytes_ += held[j].bytes.size();
        held_.push_back(std::move(held[j]));
      }
      return;
    }
    Dispatch(held[i].type, held[i].bytes, held[i].error);
  }
}

bool ClientSession::HandleStreamManagement(std::string_view element) {
  if (NamespaceOf(element) != kSmNamespace) return false;
  const std::string_view name = LocalName(xml::ElementName(element));
  const auto failed = [this](std::string_view condition) {
    delegate_->Send(Concat("<failed xmlns='", kSmNamespace, "'><", condition,
                           " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"));
  };
  const auto count = [&element](std::string_view attribute) -> std::optional<uint32_t> {
    const std::optional<std::string_view> text = xml::FindRawAttribute(element, attribute);
    if (!text || text->size() > 10) return std::nullopt;
    return ParseDecimal<uint32_t>(*text);
  };
  if (state_ == State::kAwaitingBind) {
    if (name != "resume") {
      failed("unexpected-request");  // <enable/> comes after bind (XEP-0198 §3)
      return true;
    }
    if (!options_.resumption) {
      failed("feature-not-implemented");  // XEP-0198 §5: no resumption here
      return true;
    }
    const std::optional<std::string_view> previd = xml::FindRawAttribute(element, "previd");
    const std::optional<uint32_t> h = count("h");
    if (!previd || previd->empty() || !h) {
      failed("bad-request");
      return true;
    }
    state_ = State::kResuming;
    delegate_->RequestResume(*previd, *h);
    return true;
  }
  if (name == "resume") {
    failed("unexpected-request");  // a bound stream cannot become an earlier one
    return true;
  }
  if (name == "enable") {
    if (sm_enabled_) {
      failed("unexpected-request");
      return true;
    }
    const std::string_view resume = xml::FindRawAttribute(element, "resume").value_or("");
    const std::string id = delegate_->EnableStreamManagement(options_.resumption &&
                                                             (resume == "true" || resume == "1"));
    sm_enabled_ = true;
    std::string enabled = Concat("<enabled xmlns='", kSmNamespace, "'");
    if (!id.empty()) {
      enabled.append(" id='");
      xml::AppendEscaped(id, &enabled);
      enabled.append("' resume='true'");
    }
    enabled.append("/>");
    delegate_->Send(enabled);
    return true;
  }
  if (!sm_enabled_) {
    failed("unexpected-request");
    return true;
  }
  if (name == "r") {
    delegate_->OnAckRequested();
    return true;
  }
  if (name == "a") {
    const std::optional<uint32_t> h = count("h");
    if (!h) {
      CloseWithError(StreamErrorCondition::kBadFormat, "<a/> needs h, a count of stanzas");
      return true;
    }
    delegate_->OnAcknowledged(*h);
    return true;
  }
  failed("feature-not-implemented");
  return true;
}

void ClientSession::ResumeDone(const std::optional<jid::Jid>& full_jid, uint32_t handled_inbound,
                               std::string_view previd) {
  if (state_ != State::kResuming) return;
  if (!full_jid) {
    state_ = State::kAwaitingBind;
    delegate_->Send(Concat("<failed xmlns='", kSmNamespace,
                           "'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                           "</failed>"));
  } else {
    Bound(*full_jid);
    sm_enabled_ = true;
    std::string resumed = Concat("<resumed xmlns='", kSmNamespace, "' previd='");
    xml::AppendEscaped(previd, &resumed);
    resumed.append("' h='").append(std::to_string(handled_inbound)).append("'/>");
    delegate_->Send(resumed);
  }
  ReplayHeld();
}

void ClientSession::HandleStanza(std::string_view element) {
  const std::string_view name = xml::ElementName(element);
  if (name != "message" && name != "presence" && name != "iq") {
    CloseWithError(StreamErrorCondition::kUnsupportedStanzaType,
                   Concat("<", name, "> is not a stanza (message, presence or iq)"));
    return;
  }
  // RFC 6120 §8.1.2.1: the server stamps `from` with the full JID it bound,
  // replacing whatever the client wrote. One copy into a reused buffer.
  std::string_view skip;  // the client's own from='…', with the space before it
  xml::ForEachAttribute(element, [&](std::string_view attribute, std::string_view value) {
    if (attribute != "from") return true;
    const char* begin = attribute.data() - 1;
    skip = std::string_view(begin, static_cast<size_t>(value.data() + value.size() + 1 - begin));
    return false;
  });
  const size_t name_end = 1 + name.size();
  stamped_.clear();
  stamped_.reserve(element.size() + from_attribute_.size());
  stamped_.append(element.substr(0, name_end)).append(from_attribute_);
  if (skip.empty()) {
    stamped_.append(element.substr(name_end));
  } else {
    const size_t skip_begin = static_cast<size_t>(skip.data() - element.data());
    stamped_.append(element.substr(name_end, skip_begin - name_end))
        .append(element.substr(skip_begin + skip.size()));
  }
  const Stanza stanza = InspectStanza(stamped_);
  if (stanza.xmlns && *stanza.xmlns != kClientNamespace) {
    CloseWithError(StreamErrorCondition::kInvalidNamespace,
                   Concat("stanza in namespace ", *stanza.xmlns));
    return;
  }
  delegate_->OnStanza(stanza);
}

void ClientSession::ReleaseIdleMemory() {
  std::string().swap(stamped_);
  if (held_.empty()) std::vector<HeldToken>().swap(held_);
}

void ClientSession::CloseWithError(StreamErrorCondition condition, std::string text) {
  CloseWithError(StreamError(condition, std::move(text)));
}

void ClientSession::CloseWithError(StreamError error) {
  if (state_ == State::kClosed) return;
  SendHeaderIfNeeded();
  state_ = State::kClosed;
  EndStream(delegate_, &error);
}

void ClientSession::Close() {
  if (state_ == State::kClosed) return;
  SendHeaderIfNeeded();
  state_ = State::kClosed;
  EndStream(delegate_, nullptr);
}

}  // namespace stanzad::xmpp
