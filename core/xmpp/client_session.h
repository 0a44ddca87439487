// The server side of one client-to-server connection (RFC 6120), as a pure
// state machine: bytes in, calls on a Delegate out. No sockets, clocks, threads
// or randomness: the engine feeds it what it reads (decrypted, once TLS is up),
// runs TLS when told to, and supplies random bytes.
//
// The exchange, one stream header per stage (RFC 6120 §4.3.3 restarts):
//   1. client → <stream:stream to='DOMAIN' version='1.0' xmlns='jabber:client'>
//      server → header (fresh stream id) + features: <starttls><required/></starttls>
//      client → <starttls/>; server → <proceed/>, Delegate::StartTls(). The engine
//      runs the TLS handshake and calls TlsEstablished().
//   2. client → new header; server → header + features: <mechanisms> SCRAM-SHA-256,
//      SCRAM-SHA-1, PLAIN. <auth/>, <challenge/>, <response/>, <abort/> until
//      <success/> (the stream restarts) or <failure/> (the client may try again).
//   3. client → new header; server → header + features: <bind/>.
//      client → <iq type='set'><bind><resource>R</resource></bind></iq>; the
//      session asks the delegate for user@domain/R (RequestBind) and reads no
//      further input until the delegate answers with BindDone (at once or
//      later); server → the result with the full JID, or a stanza error
//      (conflict, resource-constraint, bad-request).
//      Instead of binding, a client may resume an earlier stream (XEP-0198):
//      <resume previd h/> → Delegate::RequestResume, answered with ResumeDone
//      (<resumed/> and the earlier session's JID, or <failed/> and a bind).
//      A <resume/> after bind is answered <failed/> with unexpected-request.
//   4. Every stanza (message, presence, iq) goes to Delegate::OnStanza with its
//      `from` set by the server to the bound full JID (a client's own `from` is
//      replaced); `to` is kept. Whitespace keepalives are read and ignored.
//
// Stream management (XEP-0198, urn:xmpp:sm:3), offered with <bind/>: after
// bind the client may <enable/> it (Delegate::EnableStreamManagement gives the
// resumption id); the session then passes the client's <r/> to
// Delegate::OnAckRequested and its <a h/> to Delegate::OnAcknowledged. The
// counts of both directions are the delegate's (xmpp::StreamManagement): it
// sends the routed stanzas, and gets every stanza the client sends (OnStanza).
// The session answers the negotiation: <enabled/>, <resumed/>, <failed/>.
//
// Stream errors (fatal: the session sends the error, </stream:stream>, and calls
// OnStreamClosed; later input is ignored):
//   invalid-namespace       header not in jabber:client, or a stanza in another namespace
//   host-unknown            header `to` missing or not our domain
//   unsupported-version     header without version='1.x'
//   policy-violation        any element but <starttls/> before TLS (TLS is required,
//                           RFC 6120 §5.3.1: we do not let a client skip it or go on
//                           in the clear); failures_max failed SASL or bind attempts;
//                           an <auth/> or <response/> the delegate refused to have
//                           checked (RefuseAuthentication)
//   not-authorized          a stanza (or any non-SASL element) before SASL success;
//                           any stanza but the bind IQ before bind (RFC 6120 §4.9.3.12)
//   unsupported-stanza-type an element other than message, presence or iq after bind
//   internal-server-error   Options::tls_unavailable is set: right after our header,
//                           with that text (the server cannot offer the TLS it requires)
//   the tokenizer's         any XML problem (restricted-xml, not-well-formed, ...)
//
// SASL (RFC 6120 §6.4): base64 is decoded strictly (incorrect-encoding
// otherwise); "=" is an empty initial response; an <auth/> without data is
// answered with an empty <challenge/>. Unknown mechanism: invalid-mechanism.
// The authzid, if any, must be the user's own bare JID. The username the
// client authenticates with becomes the localpart of its JID.
//
// Bytes after <starttls/> in the same OnBytes call, and any OnBytes call before
// TlsEstablished(), are discarded: they arrived in the clear and must not be
// read as if they came over TLS (the STARTTLS command-injection attack).
//
// Thread safety: none; one session belongs to one connection on one shard.
// The delegate must not destroy the session from inside a callback: defer it
// (OnStreamClosed is the last callback of a session).
#ifndef STANZAD_CORE_XMPP_CLIENT_SESSION_H_
#define STANZAD_CORE_XMPP_CLIENT_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "core/config/config.h"
#include "core/jid/jid.h"
#include "core/sasl/plain.h"
#include "core/sasl/scram.h"
#include "core/xml/tokenizer.h"
#include "core/xmpp/stanza.h"
#include "core/xmpp/stream_error.h"

namespace stanzad::xmpp {

inline constexpr std::string_view kClientNamespace = "jabber:client";
inline constexpr std::string_view kTlsNamespace = "urn:ietf:params:xml:ns:xmpp-tls";
inline constexpr std::string_view kSaslNamespace = "urn:ietf:params:xml:ns:xmpp-sasl";
inline constexpr std::string_view kBindNamespace = "urn:ietf:params:xml:ns:xmpp-bind";
inline constexpr std::string_view kSmNamespace = "urn:xmpp:sm:3";

class ClientSession {
 public:
  enum class State {
    kAwaitingHeader,    // before a stream header (at the start or after a restart)
    kAwaitingStartTls,  // header done, TLS not yet asked for
    kAwaitingTls,       // <proceed/> sent: waiting for TlsEstablished()
    kAwaitingAuth,      // over TLS, not yet authenticated (SASL)
    kAwaitingBind,      // authenticated, no resource bound yet
    kBinding,           // RequestBind() called, BindDone() not yet
    kResuming,          // RequestResume() called, ResumeDone() not yet
    kBound,             // stanzas flow
    kClosed,
  };

  struct Options {
    // Our XMPP domain, in canonical form (lowercase, no trailing dot).
    std::string domain;
    // A server secret (>= 16 bytes, the same on every node and across restarts):
    // ScramServer derives the salt it shows for an unknown user from it.
    std::string unknown_user_salt_key;
    // Failed SASL attempts plus refused binds the stream tolerates: the one that
    // reaches this count is answered and the stream closes with policy-violation.
    // RFC 6120 §6.4.5 suggests allowing 2 to 5 retries.
    uint32_t failures_max = 3;
    // The server resumes streams (XEP-0198 §5). Off: <enable resume/> gets no
    // id, and a <resume/> is answered at once with <failed/> and
    // feature-not-implemented, as §5 says for a server without resumption.
    bool resumption = true;
    // The connection has been TLS from its first byte (XEP-0368 direct TLS):
    // no STARTTLS is offered; the first stream goes straight to SASL.
    bool direct_tls = false;
    // Non-empty: the server has no usable certificate, so STARTTLS (required) cannot
    // be offered. A client's first valid header is answered with our header and an
    // <internal-server-error/> stream error carrying this text, instead of features.
    std::string tls_unavailable;
    xml::TokenizerLimits limits;
  };

  class Delegate {
   public:
    virtual ~Delegate() = default;
    // Bytes for the peer, in order (the engine encrypts them once TLS is up).
    virtual void Send(std::string_view bytes) = 0;
    // `count` bytes from a cryptographic random source: stream ids, SCRAM nonces,
    // generated resources.
    virtual std::string RandomBytes(size_t count) = 0;
    // <proceed/> has been sent: flush it, then run the TLS handshake as server and
    // call TlsEstablished() when it completes (or close the connection if it fails).
    virtual void StartTls() = 0;
    // The stored credentials of SASL user `username` (SASLprep'd, as the client
    // gave it), or nullopt if there is no such user.
    virtual std::optional<config::UserCredentials> CredentialsFor(std::string_view username) = 0;
    // A SASL attempt ended: `username` authenticated (`ok`) or failed with `condition`
    // (for logs and metrics; `username` may be empty or unknown when it failed).
    virtual void OnAuthentication(std::string_view username, bool ok,
                                  std::string_view condition) = 0;
    // Asked before each <auth/> and <response/> is processed: the text of a
    // <policy-violation/> that ends the stream instead (the peer failed too
    // often: an answer would tell it whether its guess was right), or nullopt
    // to go on.
    virtual std::optional<std::string> RefuseAuthentication() { return std::nullopt; }
    // The client asks to bind `full_jid`. The delegate answers with BindDone(),
    // from inside this call or later (after asking other shards, say).
    virtual void RequestBind(const jid::Jid& full_jid) = 0;
    // The bound client enables stream management; `resume`: it asks for
    // resumption. Returns the resumption id for <enabled/>, or "" to offer none.
    virtual std::string EnableStreamManagement(bool resume) = 0;
    // The client acknowledged the first `h` stanzas it received (mod 2^32).
    virtual void OnAcknowledged(uint32_t h) = 0;
    // The client asks (<r/>, after <enable/>) how many of its stanzas were handled:
    // send it the <a h/> (StreamManagement::Acknowledgement) now.
    virtual void OnAckRequested() = 0;
    // The client (authenticated, not bound) asks to resume stream `previd`,
    // having handled `h` of its stanzas. Answer with ResumeDone (now or later).
    virtual void RequestResume(std::string_view previd, uint32_t h) = 0;
    // A stanza from the bound client, `from` stamped with its full JID; views
    // valid during the call. With stream management on it counts as handled
    // (StreamManagement::OnReceived), whatever the delegate does with it.
    virtual void OnStanza(const Stanza& stanza) = 0;
    // The stream is over (after a stream error or either side's </stream:stream>):
    // flush what was sent and close the connection.
    virtual void OnStreamClosed(const StreamError* error) = 0;
  };

  // REQUIRES: delegate outlives the session; options.domain is not empty.
  ClientSession(Delegate* delegate, Options options);

  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  // Processes bytes read from the connection (decrypted, once TLS is up).
  void OnBytes(std::string_view bytes);

  // The TLS handshake that StartTls() asked for completed: the client now opens a
  // new stream over TLS. No-op unless state() is kAwaitingTls. Call it after
  // StartTls() has returned (the handshake needs I/O), not from inside it.
  void TlsEstablished();

  // The answer to RequestBind(): OK to accept; AlreadyExistsError for a resource
  // in use (answered with conflict); ResourceExhaustedError for too many sessions
  // (resource-constraint); anything else is internal-server-error. Input that
  // arrived meanwhile is processed now. No-op unless state() is kBinding.
  void BindDone(const absl::Status& status);

  // The answer to RequestResume(). With `full_jid` the stream continues as that
  // earlier session's (<resumed h=handled_inbound/>: the delegate counts on from
  // there); with nullopt the client gets <failed/> with item-not-found and may
  // bind instead. No-op unless state() is kResuming.
  void ResumeDone(const std::optional<jid::Jid>& full_jid, uint32_t handled_inbound,
                  std::string_view previd);

  // Gives back the memory of buffers that hold nothing now (an idle client).
  void ReleaseIdleMemory();

  // Stream management is enabled (or resumed) on this stream.
  bool stream_management() const { return sm_enabled_; }

  // Ends the stream from the server's side with `condition` (conflict when the same
  // full JID bound elsewhere, system-shutdown, connection-timeout...). No-op once closed.
  void CloseWithError(StreamErrorCondition condition, std::string text);
  // The same with a complete error (an application-specific condition, say).
  void CloseWithError(StreamError error);

  // Ends the stream cleanly with </stream:stream>. No-op once closed.
  void Close();

  State state() const { return state_; }
  // The id of the current stream (a new one after each restart).
  const std::string& stream_id() const { return stream_id_; }
  // The SASL username once authenticated; empty before.
  const std::string& username() const { return username_; }
  // The bound full JID once state() is kBound.
  const std::optional<jid::Jid>& full_jid() const { return full_jid_; }

 private:
  // Handles the tokens the tokenizer holds until it needs more bytes, TLS must
  // start or the session is closed; while kBinding they are held (copied).
  void ProcessTokens();
  void Dispatch(xml::TokenType type, std::string_view bytes, const StreamError& error);
  void HandleHeader();
  void HandleElement(std::string_view element);
  void HandleSasl(std::string_view element, std::string_view local_name);
  void HandleSaslStep(const sasl::SaslStep& step);
  void SaslFailure(std::string_view condition, std::string username);
  void HandleBind(std::string_view element);
  void HandleStanza(std::string_view element);
  // <enable/>, <r/>, <a/> after bind; <resume/> before. False if `element` is
  // not stream management's.
  bool HandleStreamManagement(std::string_view element);
  // Hands the held tokens to Dispatch once a wait (bind, resume) ends.
  void ReplayHeld();
  void Bound(jid::Jid full);
  bool CountFailure();
  void SendHeaderIfNeeded();
  void SendFeatures();
  void RestartStream();
  std::string_view NamespaceOf(std::string_view element) const;

  Delegate* delegate_;
  Options options_;
  // Replaced by a fresh one when TLS starts, so nothing read in the clear survives.
  std::optional<xml::Tokenizer> tokenizer_;
  State state_ = State::kAwaitingHeader;
  bool header_sent_ = false;
  bool tls_established_ = false;
  bool authenticated_ = false;
  bool sm_enabled_ = false;
  uint32_t failures_ = 0;
  std::string stream_id_;
  // The SASL exchange in progress, if any.
  std::variant<std::monostate, sasl::ScramServer, sasl::PlainServer> mechanism_;
  std::string username_;
  std::optional<jid::Jid> bare_jid_;
  std::optional<jid::Jid> full_jid_;
  // While kBinding: the bind IQ being answered, and the JID asked for.
  std::string pending_bind_iq_;
  std::optional<jid::Jid> pending_full_jid_;
  // Tokens read while kBinding, handled once BindDone() is called; their bytes
  // are bounded by limits.stanza_bytes_max.
  struct HeldToken {
    xml::TokenType type;
    std::string bytes;
    StreamError error;
  };
  std::vector<HeldToken> held_;
  size_t held_bytes_ = 0;
  // " from='<escaped full JID>'", made once at bind.
  std::string from_attribute_;
  // Reused for each stanza whose `from` is stamped: no allocation once warm.
  std::string stamped_;
};

}  // namespace stanzad::xmpp

#endif  // STANZAD_CORE_XMPP_CLIENT_SESSION_H_
