// The server side of one XEP-0114 component connection (a call bridge), as a
// pure state machine: bytes in, calls on a Delegate out. No sockets, clocks or
// threads: the engine feeds it what it reads and carries out what it asks.
//
// The exchange (XEP-0114 §3):
//   bridge → <stream:stream xmlns='jabber:component:accept' to='cb1.example.com'>
//   server → <stream:stream ... from='cb1.example.com' id='STREAM_ID'>
//   bridge → <handshake>hex(SHA-1(STREAM_ID ‖ secret))</handshake>
//   server → <handshake/> (when the delegate says the bridge is routable), and
//            from then on the bridge exchanges stanzas.
//
// Failures end the stream with the RFC 6120 / XEP-0114 condition:
//   invalid-namespace       header not jabber:component:accept (or a stanza in
//                           another namespace)
//   host-unknown            no call bridge configured for the header's `to`
//   not-authorized          wrong handshake, or a stanza before the handshake
//   policy-violation        the delegate refused to have the header's bridge or
//                           the handshake checked (RefuseAuthentication)
//   invalid-from            a stanza whose `from` is not in the bridge's domain
//   unsupported-stanza-type an element other than message, presence or iq
//   the tokenizer's         any XML problem (restricted-xml, not-well-formed, ...)
// A stanza without a usable `to` is answered with a jid-malformed stanza error
// and the stream stays up. After a stream error the session sends
// </stream:stream> and asks the delegate to close; later input is ignored.
//
// Thread safety: none; one session belongs to one connection on one shard.
// The delegate must not destroy the session from inside a callback: defer it
// (OnStreamClosed is the last callback of a session).
#ifndef STANZAD_CORE_XMPP_COMPONENT_SESSION_H_
#define STANZAD_CORE_XMPP_COMPONENT_SESSION_H_

#include <optional>
#include <string>
#include <string_view>

#include "core/xml/tokenizer.h"
#include "core/xmpp/stanza.h"
#include "core/xmpp/stream_error.h"

namespace stanzad::xmpp {

inline constexpr std::string_view kComponentNamespace = "jabber:component:accept";

class ComponentSession {
 public:
  enum class State { kAwaitingHeader, kAwaitingHandshake, kAuthenticated, kClosed };

  class Delegate {
   public:
    virtual ~Delegate() = default;
    // The shared secret of the call bridge whose component address (e.g.
    // "cb1.example.com") is given, or nullopt if there is no such bridge.
    virtual std::optional<std::string> SecretFor(std::string_view component_address) = 0;
    // Bytes for the peer, in order.
    virtual void Send(std::string_view bytes) = 0;
    // The handshake succeeded: the connection now speaks for `component_address`.
    // The bridge is told (<handshake/>) only when the delegate calls
    // AcknowledgeHandshake(): once the bridge can be reached, so that a bridge
    // that saw <handshake/> is never reported unreachable.
    virtual void OnAuthenticated(std::string_view component_address) = 0;
    // A handshake failed (wrong secret), or the header named an unknown bridge.
    virtual void OnAuthenticationFailed(std::string_view component_address,
                                        StreamErrorCondition condition) = 0;
    // Asked before the header's bridge is looked up and before a handshake is
    // checked: the text of a <policy-violation/> that ends the stream instead
    // (the peer failed too often: an answer would tell it whether its guess was
    // right), or nullopt to go on.
    virtual std::optional<std::string> RefuseAuthentication() { return std::nullopt; }
    // A stanza from the authenticated bridge, checked: message, presence or
    // iq, `from` in the bridge's domain, `to` present. Views valid during the call.
    virtual void OnStanza(const Stanza& stanza) = 0;
    // The stream is over (after a stream error or either side's </stream:stream>):
    // flush what was sent and close the connection.
    virtual void OnStreamClosed(const StreamError* error) = 0;
  };

  // `stream_id`: a fresh unpredictable id for this stream (the handshake's salt).
  ComponentSession(Delegate* delegate, std::string stream_id,
                   const xml::TokenizerLimits& limits = xml::TokenizerLimits());

  ComponentSession(const ComponentSession&) = delete;
  ComponentSession& operator=(const ComponentSession&) = delete;

  // Processes bytes read from the connection.
  void OnBytes(std::string_view bytes);

  // Ends the stream from the server's side with `condition` (conflict when a
  // newer connection of the same bridge authenticated, system-shutdown,
  // connection-timeout, policy-violation...). No-op once closed.
  void CloseWithError(StreamErrorCondition condition, std::string text);

  // Ends the stream cleanly with </stream:stream>. No-op once closed.
  void Close();

  // Sends <handshake/> (once) after OnAuthenticated. No-op in other states.
  void AcknowledgeHandshake();

  State state() const { return state_; }
  // The bridge's component address once the header named a known bridge.
  const std::string& component_address() const { return component_address_; }
  const std::string& stream_id() const { return stream_id_; }

 private:
  void HandleHeader();
  void HandleElement(const xml::Token& token);
  void HandleHandshake(std::string_view element);
  void HandleStanza(std::string_view element);
  void SendHeaderIfNeeded();
  bool FromIsValid(std::string_view raw_from) const;

  Delegate* delegate_;
  std::string stream_id_;
  xml::Tokenizer tokenizer_;
  State state_ = State::kAwaitingHeader;
  bool header_sent_ = false;
  bool handshake_acknowledged_ = false;
  std::string component_address_;
  std::string secret_;
};

}  // namespace stanzad::xmpp

#endif  // STANZAD_CORE_XMPP_COMPONENT_SESSION_H_
