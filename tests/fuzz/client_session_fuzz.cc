// libFuzzer target for the client (c2s) session: depending on the first byte it
// starts from a fresh stream, after STARTTLS, or authenticated (PLAIN) and bound;
// then arbitrary bytes in input-sized chunks must never crash it, every stanza it
// hands on must carry the stamped `from`, and once it reports the stream closed
// it must stay silent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "core/sasl/base64.h"
#include "core/sasl/credentials.h"
#include "core/xmpp/client_session.h"

namespace {

using stanzad::xmpp::ClientSession;

const stanzad::config::UserCredentials& Credentials() {
  static const stanzad::config::UserCredentials credentials =
      *stanzad::sasl::MakeUserCredentials("pencil", "salt-sha1-16byte", "salt-sha256-16byt");
  return credentials;
}

class Delegate : public ClientSession::Delegate {
 public:
  ClientSession* session = nullptr;
  bool closed = false;
  bool bound = false;
  void Send(std::string_view) override {
    if (closed) std::abort();  // nothing may be sent after the stream closed
  }
  std::string RandomBytes(size_t count) override { return std::string(count, '\x42'); }
  void StartTls() override { session->TlsEstablished(); }
  std::optional<stanzad::config::UserCredentials> CredentialsFor(
      std::string_view username) override {
    if (username == "user") return Credentials();
    return std::nullopt;
  }
  void OnAuthentication(std::string_view, bool, std::string_view) override {}
  void RequestBind(const stanzad::jid::Jid&) override {
    bound = true;
    session->BindDone(absl::OkStatus());
  }
  std::string EnableStreamManagement(bool resume) override { return resume ? "id" : ""; }
  void OnAcknowledged(uint32_t) override {}
  void OnAckRequested() override { Send("<a xmlns='urn:xmpp:sm:3' h='0'/>"); }
  void RequestResume(std::string_view previd, uint32_t h) override {
    // Resume fails for odd counts, succeeds for even ones, as the data says.
    if (h % 2 == 0 && previd.size() < 1000) {
      auto full = stanzad::jid::Jid::Parse("user@example.com/resumed");
      bound = true;
      session->ResumeDone(*full, h, previd);
    } else {
      session->ResumeDone(std::nullopt, 0, previd);
    }
  }
  void OnStanza(const stanzad::xmpp::Stanza& stanza) override {
    if (!bound || !stanza.from || !session->full_jid() ||
        *stanza.from != session->full_jid()->Full()) {
      std::abort();  // every stanza carries the full JID the server stamped
    }
  }
  void OnStreamClosed(const stanzad::xmpp::StreamError*) override {
    if (closed) std::abort();  // exactly once
    closed = true;
  }
};

constexpr char kHeader[] =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    "to='example.com' version='1.0'>";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Delegate delegate;
  ClientSession::Options options;
  options.domain = "example.com";
  options.unknown_user_salt_key = "0123456789abcdef0123456789abcdef";
  ClientSession session(&delegate, options);
  delegate.session = &session;
  // 0: from the first byte; 1: over TLS; 2: bound; 3: authenticated, not bound
  // (so <resume/> and bind race with what follows).
  const int start = data[0] % 4;
  if (start >= 1) {
    session.OnBytes(std::string(kHeader) + "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    session.OnBytes(kHeader);
  }
  if (start >= 2) {
    const std::string plain = stanzad::sasl::Base64Encode(std::string("\0user\0pencil", 12));
    session.OnBytes("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + plain +
                    "</auth>");
    session.OnBytes(kHeader);
  }
  if (start == 2) {
    session.OnBytes(
        "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        "<resource>fuzz</resource></bind></iq>");
  }
  size_t at = 1;
  while (at < size) {
    const size_t chunk = 1 + (data[at] % 64);
    const size_t end = std::min(size, at + 1 + chunk);
    session.OnBytes(std::string(reinterpret_cast<const char*>(data + at + 1), end - at - 1));
    at = end;
  }
  return 0;
}
