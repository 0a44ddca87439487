// libFuzzer target for the XEP-0114 component session: after a valid header
// and handshake (when the first byte says so), arbitrary bytes must never
// crash it, and once it reports the stream closed it must stay silent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "core/xmpp/component_handshake.h"
#include "core/xmpp/component_session.h"

namespace {

using stanzad::xmpp::ComponentSession;

class Delegate : public ComponentSession::Delegate {
 public:
  ComponentSession* session = nullptr;
  bool closed = false;
  std::optional<std::string> SecretFor(std::string_view address) override {
    if (address == "cb1.example.com") return std::string("secret");
    return std::nullopt;
  }
  void Send(std::string_view) override {
    if (closed) std::abort();  // nothing may be sent after the stream closed
  }
  void OnAuthenticated(std::string_view) override { session->AcknowledgeHandshake(); }
  void OnAuthenticationFailed(std::string_view, stanzad::xmpp::StreamErrorCondition) override {}
  void OnStanza(const stanzad::xmpp::Stanza& stanza) override {
    if (!stanza.to || !stanza.from) std::abort();  // the session promised both
  }
  void OnStreamClosed(const stanzad::xmpp::StreamError*) override {
    if (closed) std::abort();  // exactly once
    closed = true;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Delegate delegate;
  ComponentSession session(&delegate, "0123456789abcdef");
  delegate.session = &session;
  if (data[0] & 1) {
    session.OnBytes(
        "<stream:stream xmlns='jabber:component:accept' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.com'><handshake>" +
        stanzad::xmpp::ComponentHandshakeDigest("0123456789abcdef", "secret") + "</handshake>");
  }
  // Feed the rest in chunks whose sizes come from the input.
  size_t at = 1;
  while (at < size) {
    const size_t chunk = 1 + (data[at] % 64);
    const size_t end = std::min(size, at + 1 + chunk);
    const std::string piece(reinterpret_cast<const char*>(data + at + 1), end - at - 1);
    session.OnBytes(piece);
    at = end;
  }
  return 0;
}
