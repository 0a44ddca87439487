// c2s-bench: XMPP clients over TLS (RFC 6120: STARTTLS, SASL, bind) on one epoll
// thread, driving a server on loopback, and call bridges (XEP-0114 components) that
// count what the clients send them.
//
//   c2s-bench --server=127.0.0.1:5222 --domain=example.com --user_prefix=u
//       --users=2000 --password=PASSWORD --mode=logins --logins=2000 --concurrency=50
//
// Modes (--mode):
//   logins   --logins logins in all, --concurrency at a time, each on a new connection:
//            TCP connect, stream, STARTTLS, TLS handshake, SASL (--mechanism), stream
//            restart, bind, then a clean close (our </stream:stream>, the server's, our
//            close_notify). Logins/s over the whole run, p50/p99 login latency (connect
//            to the bind result) and the failures by reason.
//   stanzas  --clients logged in (--concurrency at a time) and --bridges components on
//            --component_server; each client sends messages to the bridges in turn
//            (client i starts at bridge i % B), with at most --window sent and not yet
//            arrived (closed loop). Stanzas/s arriving at the bridges over --seconds after
//            --warmup_s, then a drain of at most --drain_s and the ids lost, duplicated
//            and bounced.
//   idle     --clients logged in, then held for --hold_s (answering the server's pings).
//            When all are in it prints "idle: N clients logged in" on stdout, so that a
//            script can read the server's memory then; with --server_pid it also reads
//            the server's VmRSS before the first connects and 1 s after that line.
//
// Users are PREFIX0 .. PREFIX{--users - 1}, all with --password; login k (or client k)
// is user k % --users with resource "rK". Set them up with the credentials text that
// --print_credentials=PASSWORD prints (what `stanzactl user add` stores, with fixed
// salts: fine for a benchmark, never for real accounts).
//
// Message ids are "CLIENT-SEQ". A bridge marks each in its sender's bitmap, so a second
// arrival is a duplicate, and one that never arrived (and was not bounced back to its
// sender) is lost, whatever the order.
//
// SCRAM: by default the client keeps the keys it derived from the password, per salt and
// iteration count, as RFC 5802 §5.1 allows a client to, so that 4096 PBKDF2 rounds per
// login do not make this one thread the bottleneck; each cached key is checked against
// core/sasl's DeriveScramSecret when made. --scram_key_cache=false runs core/sasl's
// ScramClient, PBKDF2 included, for every login. TLS: our tls::TlsSession, as a client
// that does not verify the server's certificate (a lab's self-signed one).
//
// Prints one JSON line, with the client thread's CPU use over the measured time
// (bench_was_bottleneck when it was >= 90% busy: the figures then measure this client).
// Every run is bounded: --connect_timeout_s for logging the clients in (stanzas, idle),
// --login_timeout_s for each login, and --seconds, --drain_s and --hold_s.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/pwdbased.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "core/sasl/base64.h"
#include "core/sasl/credentials.h"
#include "core/sasl/saslprep.h"
#include "core/sasl/scram.h"
#include "core/xml/start_tag.h"
#include "core/xml/tokenizer.h"
#include "core/xmpp/component_handshake.h"
#include "tls/tls_session.h"

namespace {

namespace sasl = stanzad::sasl;
namespace tls = stanzad::tls;
namespace xml = stanzad::xml;

enum class Mode { kLogins, kStanzas, kIdle };
enum class Mechanism { kScramSha1, kScramSha256, kPlain };

struct Options {
  std::string server = "127.0.0.1:5222";
  std::string domain = "example.com";
  std::string user_prefix = "u";
  int users = 0;  // 0: as many as logins (logins mode) or clients
  std::string password = "bench-password";
  Mechanism mechanism = Mechanism::kScramSha1;
  bool scram_key_cache = true;
  Mode mode = Mode::kLogins;
  int logins = 1000;
  int concurrency = 50;
  int clients = 100;
  int bridges = 10;
  std::string component_server = "127.0.0.1:5223";
  std::string bridge_prefix = "b";
  std::string bridge_secret;
  std::string secrets_json;
  int window = 8;
  int payload_bytes = 100;
  double seconds = 10;
  double warmup_s = 1;
  double drain_s = 3;
  double hold_s = 0;
  double connect_timeout_s = 300;
  double login_timeout_s = 30;
  int server_pid = 0;
};

// Bounds on what one connection may hold in this client, so a misbehaving server
// cannot make it grow without end.
constexpr size_t kOutBytesMax = 16 << 20;
constexpr size_t kRecvBufferBytes = 64 * 1024;
// Failure reasons kept verbatim; more distinct ones are counted as "other".
constexpr size_t kFailureReasonsMax = 50;

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "c2s-bench: %s\n", message.c_str());
  std::exit(1);
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t SecondsToNs(double s) { return static_cast<int64_t>(s * 1e9); }

double ThreadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

sockaddr_in ParseAddress(const std::string& flag, const std::string& text) {
  const size_t colon = text.rfind(':');
  sockaddr_in address{};
  address.sin_family = AF_INET;
  if (colon == std::string::npos ||
      inet_pton(AF_INET, text.substr(0, colon).c_str(), &address.sin_addr) != 1) {
    Die(flag + " must be an IPv4 address and port, e.g. 127.0.0.1:5222");
  }
  address.sin_port = htons(static_cast<uint16_t>(std::atoi(text.c_str() + colon + 1)));
  return address;
}

int64_t ReadRssBytes(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  Die("cannot read VmRSS of --server_pid " + std::to_string(pid));
}

double PercentileUs(const std::vector<int64_t>& sorted_ns, double p) {
  if (sorted_ns.empty()) return 0;
  const size_t index = std::min(sorted_ns.size() - 1,
                                static_cast<size_t>(p * static_cast<double>(sorted_ns.size())));
  return static_cast<double>(sorted_ns[index]) / 1000.0;
}

uint64_t ParseUnsigned(std::string_view text, size_t* used = nullptr) {
  uint64_t value = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    value = value * 10 + static_cast<uint64_t>(text[i] - '0');
  }
  if (used != nullptr) *used = i;
  return value;
}

// The character data of a simple element such as <challenge xmlns='…'>DATA</challenge>:
// between the end of its start tag and its end tag ("" for an empty element).
std::string_view ElementText(std::string_view element) {
  const size_t open_end = element.find('>');
  if (open_end == std::string_view::npos || element[open_end - 1] == '/') return {};
  const size_t close = element.rfind("</");
  if (close == std::string_view::npos || close < open_end) return {};
  return element.substr(open_end + 1, close - open_end - 1);
}

// The local name of the first child element of `element` ("" if none): the condition
// of a SASL <failure/>, a stream error or a stanza error.
std::string FirstChildName(std::string_view element) {
  size_t at = element.find('>');
  while (at != std::string_view::npos) {
    at = element.find('<', at);
    if (at == std::string_view::npos || at + 1 >= element.size() || element[at + 1] == '/') {
      return {};
    }
    std::string_view name = xml::ElementName(element.substr(at));
    if (const size_t colon = name.find(':'); colon != std::string_view::npos) {
      name.remove_prefix(colon + 1);
    }
    if (name != "text") return std::string(name);
    at = element.find('>', at);
  }
  return {};
}

bool IsNamed(std::string_view qualified, std::string_view local) {
  if (qualified == local) return true;
  return qualified.size() > local.size() && qualified[qualified.size() - local.size() - 1] == ':' &&
         qualified.substr(qualified.size() - local.size()) == local;
}

// --------------------------------------------------------------------------- SCRAM

int WolfHash(sasl::ScramMechanism mechanism) {
  if (mechanism == sasl::ScramMechanism::kSha1) return WC_SHA;
  return WC_SHA256;
}

std::string HmacOf(sasl::ScramMechanism mechanism, std::string_view key, std::string_view data) {
  Hmac hmac;
  std::string mac(sasl::ScramKeyBytes(mechanism), '\0');
  if (wc_HmacInit(&hmac, nullptr, INVALID_DEVID) != 0 ||
      wc_HmacSetKey(&hmac, WolfHash(mechanism), reinterpret_cast<const byte*>(key.data()),
                    static_cast<word32>(key.size())) != 0 ||
      wc_HmacUpdate(&hmac, reinterpret_cast<const byte*>(data.data()),
                    static_cast<word32>(data.size())) != 0 ||
      wc_HmacFinal(&hmac, reinterpret_cast<byte*>(mac.data())) != 0) {
    Die("wolfSSL HMAC failed");
  }
  wc_HmacFree(&hmac);
  return mac;
}

std::string XorOf(std::string a, std::string_view b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<char>(a[i] ^ b[i]);
  return a;
}

// A client's SCRAM keys for one password, salt and iteration count (RFC 5802 §3).
struct ScramKeys {
  std::string client_key;
  std::string stored_key;
  std::string server_key;
};

class ScramKeyCache {
 public:
  // The keys for `prepared_password`, derived once per (mechanism, salt, iterations)
  // and checked against what core/sasl derives.
  const ScramKeys& Get(sasl::ScramMechanism mechanism, std::string_view prepared_password,
                       const std::string& salt, uint32_t iterations) {
    const auto key = std::make_tuple(static_cast<int>(mechanism), salt, iterations);
    auto found = keys_.find(key);
    if (found != keys_.end()) return found->second;
    if (keys_.size() >= kEntriesMax) keys_.clear();  // a server that varies salts per user
    const size_t bytes = sasl::ScramKeyBytes(mechanism);
    std::string salted(bytes, '\0');
    if (wc_PBKDF2(reinterpret_cast<byte*>(salted.data()),
                  reinterpret_cast<const byte*>(prepared_password.data()),
                  static_cast<int>(prepared_password.size()),
                  reinterpret_cast<const byte*>(salt.data()), static_cast<int>(salt.size()),
                  static_cast<int>(iterations), static_cast<int>(bytes),
                  WolfHash(mechanism)) != 0) {
      Die("wolfSSL PBKDF2 failed");
    }
    ScramKeys keys;
    keys.client_key = HmacOf(mechanism, salted, "Client Key");
    keys.server_key = HmacOf(mechanism, salted, "Server Key");
    std::string stored(bytes, '\0');
    wc_HashType hash_type =
        mechanism == sasl::ScramMechanism::kSha1 ? WC_HASH_TYPE_SHA : WC_HASH_TYPE_SHA256;
    if (wc_Hash(hash_type, reinterpret_cast<const byte*>(keys.client_key.data()),
                static_cast<word32>(keys.client_key.size()), reinterpret_cast<byte*>(stored.data()),
                static_cast<word32>(stored.size())) != 0) {
      Die("wolfSSL hash failed");
    }
    keys.stored_key = std::move(stored);
    const stanzad::config::ScramSecret reference =
        sasl::DeriveScramSecret(mechanism, prepared_password, salt, iterations);
    if (reference.stored_key != keys.stored_key || reference.server_key != keys.server_key) {
      Die("the cached SCRAM keys differ from core/sasl's DeriveScramSecret");
    }
    ++derivations_;
    return keys_.emplace(key, std::move(keys)).first->second;
  }

  uint64_t derivations() const { return derivations_; }

 private:
  static constexpr size_t kEntriesMax = 1024;
  std::map<std::tuple<int, std::string, uint32_t>, ScramKeys> keys_;
  uint64_t derivations_ = 0;
};

// One SCRAM exchange on the client side: core/sasl's ScramClient, or the same messages
// made with cached keys.
class ScramExchange {
 public:
  // The client-first message, or an error.
  static std::optional<ScramExchange> Start(sasl::ScramMechanism mechanism,
                                            const std::string& username,
                                            const std::string& password, bool use_cache,
                                            std::string* error) {
    unsigned char random[sasl::kScramNonceRandomBytes];
    if (getrandom(random, sizeof(random), 0) != static_cast<ssize_t>(sizeof(random))) {
      Die("getrandom failed");
    }
    ScramExchange exchange;
    exchange.mechanism_ = mechanism;
    exchange.nonce_ =
        sasl::MakeScramNonce(std::string_view(reinterpret_cast<char*>(random), sizeof(random)));
    if (!use_cache) {
      sasl::ScramClient::Params params;
      params.mechanism = mechanism;
      params.username = username;
      params.password = password;
      params.client_nonce = exchange.nonce_;
      absl::StatusOr<sasl::ScramClient> client = sasl::ScramClient::Create(std::move(params));
      if (!client.ok()) {
        *error = std::string(client.status().message());
        return std::nullopt;
      }
      exchange.client_first_ = client->client_first();
      exchange.client_.emplace(*std::move(client));
    } else {
      // Usernames are checked to need no SASLprep or escaping (see main).
      exchange.client_first_bare_ = "n=" + username + ",r=" + exchange.nonce_;
      exchange.client_first_ = "n,," + exchange.client_first_bare_;
    }
    return exchange;
  }

  const std::string& client_first() const { return client_first_; }

  // server-first in, client-final out (or an error).
  std::optional<std::string> HandleServerFirst(std::string_view server_first,
                                               std::string_view prepared_password,
                                               ScramKeyCache* cache, std::string* error) {
    if (client_.has_value()) {
      absl::StatusOr<std::string> final_message = client_->HandleServerFirst(server_first);
      if (!final_message.ok()) {
        *error = "scram: " + std::string(final_message.status().message());
        return std::nullopt;
      }
      return *final_message;
    }
    std::string_view nonce, salt64, iterations_text;
    size_t at = 0;
    while (at <= server_first.size()) {
      size_t comma = server_first.find(',', at);
      if (comma == std::string_view::npos) comma = server_first.size();
      const std::string_view field = server_first.substr(at, comma - at);
      if (field.size() >= 2 && field[1] == '=') {
        if (field[0] == 'r') nonce = field.substr(2);
        if (field[0] == 's') salt64 = field.substr(2);
        if (field[0] == 'i') iterations_text = field.substr(2);
      }
      at = comma + 1;
    }
    const std::optional<std::string> salt = sasl::Base64Decode(salt64);
    size_t used = 0;
    const uint64_t iterations = ParseUnsigned(iterations_text, &used);
    if (nonce.size() <= nonce_.size() || nonce.substr(0, nonce_.size()) != nonce_ ||
        !salt.has_value() || salt->empty() || used == 0 || used != iterations_text.size() ||
        iterations < sasl::kScramIterationsDefault ||
        iterations > stanzad::config::kScramIterationsMax) {
      *error = "scram: malformed server-first";
      return std::nullopt;
    }
    const ScramKeys& keys =
        cache->Get(mechanism_, prepared_password, *salt, static_cast<uint32_t>(iterations));
    const std::string without_proof = "c=biws,r=" + std::string(nonce);
    const std::string auth_message =
        client_first_bare_ + "," + std::string(server_first) + "," + without_proof;
    const std::string proof =
        XorOf(keys.client_key, HmacOf(mechanism_, keys.stored_key, auth_message));
    expected_signature_ = HmacOf(mechanism_, keys.server_key, auth_message);
    return without_proof + ",p=" + sasl::Base64Encode(proof);
  }

  // server-final (the data of <success/>): OK if it proves the server knows our keys.
  bool HandleServerFinal(std::string_view server_final, std::string* error) {
    if (client_.has_value()) {
      const absl::Status status = client_->HandleServerFinal(server_final);
      if (!status.ok()) *error = "scram: " + std::string(status.message());
      return status.ok();
    }
    const std::optional<std::string> signature = server_final.substr(0, 2) == "v="
                                                     ? sasl::Base64Decode(server_final.substr(2))
                                                     : std::nullopt;
    if (!signature.has_value() || *signature != expected_signature_) {
      *error = "scram: the server's signature is wrong";
      return false;
    }
    return true;
  }

 private:
  sasl::ScramMechanism mechanism_ = sasl::ScramMechanism::kSha1;
  std::string nonce_;
  std::string client_first_;
  std::string client_first_bare_;
  std::string expected_signature_;
  std::optional<sasl::ScramClient> client_;
};

// --------------------------------------------------------------------------- connections

enum class ClientPhase {
  kFree,             // slot unused
  kConnecting,       // waiting for connect() to finish
  kPlainFeatures,    // stream opened; waiting for features with <starttls/>
  kAwaitingProceed,  // <starttls/> sent
  kSaslFeatures,     // TLS started, stream opened again; waiting for the mechanisms
  kSasl,             // <auth/> sent; challenges until <success/> or <failure/>
  kBindFeatures,     // stream opened a third time; waiting for <bind/>
  kAwaitingBind,     // bind request sent
  kReady,            // logged in (stanzas and idle modes)
  kClosing,          // </stream:stream> sent; waiting for the server's
};

struct Client {
  ClientPhase phase = ClientPhase::kFree;
  int fd = -1;
  uint32_t generation = 0;  // tells a stale epoll event from one for this connection
  uint64_t number = 0;      // login number (logins mode) or client number
  int64_t started_ns = 0;
  int64_t deadline_ns = 0;  // of the login, or of the clean close
  std::unique_ptr<xml::Tokenizer> tokenizer;
  std::unique_ptr<tls::TlsSession> tls;
  std::optional<ScramExchange> scram;
  std::string pending;  // XML to send, not yet given to TLS
  std::string out;      // bytes for the socket
  size_t out_begin = 0;
  bool dirty = false;  // on the list of clients with `pending` to send
  // stanzas mode
  int in_flight = 0;
  uint64_t sent = 0;
  uint64_t bounced = 0;
  uint64_t next_bridge = 0;
  std::vector<uint64_t> arrived;  // bitmap over sequence numbers
  uint64_t arrived_count = 0;
  uint64_t duplicated = 0;
};

enum class BridgePhase { kAwaitingHeader, kAwaitingHandshake, kReady };

struct Bridge {
  int fd = -1;
  std::string component;
  std::string secret;
  BridgePhase phase = BridgePhase::kAwaitingHeader;
  std::unique_ptr<xml::Tokenizer> tokenizer;
  std::string out;
  size_t out_begin = 0;
  uint64_t received = 0;
  uint64_t received_in_window = 0;
};

// "component" and "secret" fields of `stanzactl --json callbridge list`.
std::vector<std::pair<std::string, std::string>> ReadSecrets(const std::string& path) {
  std::ifstream in(path);
  if (!in) Die("cannot read --secrets_json " + path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string json = buffer.str();
  const auto field = [&](const std::string& name, size_t from, size_t* end) {
    const std::string key = "\"" + name + "\":\"";
    const size_t start = json.find(key, from);
    if (start == std::string::npos) return std::string();
    const size_t value = start + key.size();
    *end = json.find('"', value);
    return json.substr(value, *end - value);
  };
  std::vector<std::pair<std::string, std::string>> accounts;
  size_t at = 0;
  while (true) {
    size_t component_end = 0, secret_end = 0;
    std::string component = field("component", at, &component_end);
    if (component.empty()) break;
    std::string secret = field("secret", component_end, &secret_end);
    if (secret.empty()) Die("no secret after component " + component + " in " + path);
    accounts.emplace_back(std::move(component), std::move(secret));
    at = secret_end;
  }
  return accounts;
}

class Bench {
 public:
  explicit Bench(Options options) : options_(std::move(options)) {}
  int Run();

 private:
  static constexpr uint64_t kBridgeTag = 1ull << 31;

  void Setup();
  // Logins mode: starts logins while slots are free and logins remain.
  void StartLogins(int64_t now);
  void StartClient(size_t slot, uint64_t number, int64_t now);
  void OnClientEvent(Client& client, uint32_t events, int64_t now);
  void OnClientReadable(Client& client, int64_t now);
  // Hands the tokenizer the bytes in `data` and acts on each element.
  void Parse(Client& client, std::string_view data, int64_t now);
  void OnElement(Client& client, const xml::Token& token, int64_t now);
  void OnFeatures(Client& client, std::string_view element);
  void OnLoggedIn(Client& client, int64_t now);
  void OnReadyElement(Client& client, const xml::Token& token);
  void Queue(Client& client, std::string_view xml_text);
  // Moves `pending` through TLS to the socket.
  void Pump(Client& client);
  void PumpDirty();
  bool FlushClient(Client& client);
  void Fail(Client& client, const std::string& reason);
  void Release(Client& client);
  void FinishClose(Client& client, int64_t now);
  void CheckDeadlines(int64_t now);
  void QueueMessage(Client& client);

  void ConnectBridges();
  void OnBridgeReadable(Bridge& bridge, int64_t now);
  void OnBridgeElement(Bridge& bridge, const xml::Token& token, int64_t now);
  bool FlushBridge(Bridge& bridge);

  bool Measuring(int64_t now) const { return now >= window_start_ && now < window_end_; }
  // Counts `reason` in the report's "failures" (the first kFailureReasonsMax kinds).
  void AddReason(const std::string& reason);
  void Report(double cpu_seconds, double wall_seconds, int64_t rss_before, int64_t rss_after);

  Options options_;
  sockaddr_in server_{};
  std::shared_ptr<const tls::TlsContext> tls_context_;
  std::string prepared_password_;
  std::string stream_header_;
  ScramKeyCache scram_keys_;
  int epoll_fd_ = -1;
  std::vector<Client> clients_;
  std::vector<Bridge> bridges_;
  std::vector<size_t> dirty_;
  std::string payload_;
  std::string scratch_;  // ciphertext taken from a TLS session
  std::string plain_;    // plaintext read from one, being parsed

  uint64_t logins_started_ = 0;
  uint64_t logins_done_ = 0;  // succeeded or failed, and closed
  uint64_t logged_in_ = 0;
  uint64_t failed_ = 0;               // logins that did not reach the bind result
  uint64_t dropped_after_login_ = 0;  // logged in, then lost before the end
  uint64_t close_failures_ = 0;       // logged in, but the clean close went wrong
  uint64_t active_ = 0;
  std::vector<int64_t> login_ns_;
  std::map<std::string, uint64_t> failures_;
  bool stopping_ = false;  // stanzas mode: the window is over, send no more
  int64_t window_start_ = 0, window_end_ = 0;
  uint64_t bridges_ready_ = 0;
  uint64_t stray_ = 0;  // messages a bridge got that no client of ours sent
};

void Bench::AddReason(const std::string& reason) {
  if (failures_.size() < kFailureReasonsMax || failures_.count(reason) > 0) {
    ++failures_[reason];
  } else {
    ++failures_["other"];
  }
}

void Bench::Setup() {
  server_ = ParseAddress("--server", options_.server);
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::Client("", /*verify_peer=*/false);
  if (!context.ok()) Die("TLS client context: " + std::string(context.status().message()));
  tls_context_ = *std::move(context);
  absl::StatusOr<std::string> prepared =
      sasl::SaslPrep(options_.password, sasl::SaslPrepMode::kQuery);
  if (!prepared.ok() || prepared->empty()) Die("--password: SASLprep refuses it");
  prepared_password_ = *std::move(prepared);
  stream_header_ = "<?xml version='1.0'?><stream:stream to='" + options_.domain +
                   "' version='1.0' xml:lang='en' xmlns='jabber:client' "
                   "xmlns:stream='http://etherx.jabber.org/streams'>";
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) Die("epoll_create1: " + std::string(std::strerror(errno)));
  payload_.assign(static_cast<size_t>(std::max(1, options_.payload_bytes)), 'x');
  const size_t slots = options_.mode == Mode::kLogins ? static_cast<size_t>(options_.concurrency)
                                                      : static_cast<size_t>(options_.clients);
  clients_.resize(slots);
}

void Bench::StartClient(size_t slot, uint64_t number, int64_t now) {
  Client& client = clients_[slot];
  client.phase = ClientPhase::kConnecting;
  client.number = number;
  ++client.generation;
  client.started_ns = now;
  client.deadline_ns = now + SecondsToNs(options_.login_timeout_s);
  client.tokenizer = std::make_unique<xml::Tokenizer>();
  client.tls.reset();
  client.scram.reset();
  client.pending.clear();
  client.out.clear();
  client.out_begin = 0;
  ++active_;
  client.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (client.fd < 0) {
    Fail(client, "socket: " + std::string(std::strerror(errno)));
    return;
  }
  const int one = 1;
  setsockopt(client.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(client.fd, reinterpret_cast<const sockaddr*>(&server_), sizeof(server_)) != 0 &&
      errno != EINPROGRESS) {
    Fail(client, "connect: " + std::string(std::strerror(errno)));
    return;
  }
  epoll_event event{};
  event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  event.data.u64 = (static_cast<uint64_t>(client.generation) << 32) | slot;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, client.fd, &event) != 0) {
    Fail(client, "epoll_ctl: " + std::string(std::strerror(errno)));
  }
}

void Bench::StartLogins(int64_t now) {
  if (options_.mode != Mode::kLogins) {
    // Clients are numbered by slot; --concurrency of them connect at a time.
    while (logins_started_ < clients_.size() &&
           active_ < static_cast<uint64_t>(options_.concurrency)) {
      const size_t slot = logins_started_++;
      StartClient(slot, slot, now);
    }
    return;
  }
  for (size_t slot = 0; slot < clients_.size(); ++slot) {
    if (logins_started_ >= static_cast<uint64_t>(options_.logins)) return;
    if (clients_[slot].phase != ClientPhase::kFree) continue;
    StartClient(slot, logins_started_++, now);
  }
}

void Bench::Release(Client& client) {
  if (client.phase != ClientPhase::kReady) --active_;  // a ready client no longer counts
  if (client.fd >= 0) close(client.fd);                // also removes it from the epoll set
  client.fd = -1;
  client.phase = ClientPhase::kFree;
  client.tls.reset();
  client.tokenizer.reset();
  client.scram.reset();
  client.pending.clear();
  client.out.clear();
  client.out.shrink_to_fit();
  client.out_begin = 0;
  ++logins_done_;
}

void Bench::Fail(Client& client, const std::string& reason) {
  if (client.phase == ClientPhase::kFree) return;
  // Logged in and lost afterwards, or a close that went wrong: not a failed login.
  if (client.phase == ClientPhase::kReady) {
    ++dropped_after_login_;
    AddReason("after login: " + reason);
  } else if (client.phase == ClientPhase::kClosing) {
    ++close_failures_;
    AddReason("close: " + reason);
  } else {
    ++failed_;
    AddReason(reason);
  }
  Release(client);
}

void Bench::Queue(Client& client, std::string_view xml_text) {
  client.pending.append(xml_text);
  if (!client.dirty) {
    client.dirty = true;
    dirty_.push_back(static_cast<size_t>(&client - clients_.data()));
  }
}

void Bench::PumpDirty() {
  for (size_t i = 0; i < dirty_.size(); ++i) {
    Client& client = clients_[dirty_[i]];
    client.dirty = false;
    if (client.phase != ClientPhase::kFree) Pump(client);
  }
  dirty_.clear();
}

void Bench::Pump(Client& client) {
  if (client.tls != nullptr) {
    if (!client.pending.empty()) {
      const absl::Status written = client.tls->Write(client.pending);
      client.pending.clear();
      if (!written.ok()) {
        Fail(client, "tls write: " + std::string(written.message()));
        return;
      }
    }
    if (client.tls->has_output()) {
      client.tls->TakeOutput(&scratch_);
      client.out.append(scratch_);
    }
  } else if (!client.pending.empty()) {
    client.out.append(client.pending);
    client.pending.clear();
  }
  if (client.out.size() - client.out_begin > kOutBytesMax) {
    Fail(client, "more than 16 MiB waiting to be sent");
    return;
  }
  if (!FlushClient(client)) Fail(client, "send: " + std::string(std::strerror(errno)));
}

bool Bench::FlushClient(Client& client) {
  if (client.phase == ClientPhase::kConnecting) return true;  // sent once connected
  while (client.out_begin < client.out.size()) {
    const ssize_t n = send(client.fd, client.out.data() + client.out_begin,
                           client.out.size() - client.out_begin, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (n <= 0) return false;
    client.out_begin += static_cast<size_t>(n);
  }
  if (client.out_begin == client.out.size()) {
    client.out.clear();
    client.out_begin = 0;
  } else if (client.out_begin > (1u << 20)) {
    client.out.erase(0, client.out_begin);
    client.out_begin = 0;
  }
  return true;
}

void Bench::OnClientEvent(Client& client, uint32_t events, int64_t now) {
  if (client.phase == ClientPhase::kConnecting) {
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    int error = 0;
    socklen_t size = sizeof(error);
    getsockopt(client.fd, SOL_SOCKET, SO_ERROR, &error, &size);
    if (error != 0) {
      Fail(client, "connect: " + std::string(std::strerror(error)));
      return;
    }
    client.phase = ClientPhase::kPlainFeatures;
    Queue(client, stream_header_);
  }
  if (events & EPOLLOUT) {
    if (!FlushClient(client)) {
      Fail(client, "send: " + std::string(std::strerror(errno)));
      return;
    }
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) OnClientReadable(client, now);
}

void Bench::OnClientReadable(Client& client, int64_t now) {
  char buffer[kRecvBufferBytes];
  const uint32_t generation = client.generation;
  while (client.phase != ClientPhase::kFree && client.generation == generation) {
    const ssize_t n = recv(client.fd, buffer, sizeof(buffer), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
      if (client.phase == ClientPhase::kClosing) {
        FinishClose(client, now);
      } else {
        Fail(client, n == 0 ? "connection closed by the server"
                            : "recv: " + std::string(std::strerror(errno)));
      }
      return;
    }
    const std::string_view data(buffer, static_cast<size_t>(n));
    if (client.tls == nullptr) {
      Parse(client, data, now);
    } else {
      absl::Status status = client.tls->Feed(data);
      plain_.clear();
      if (status.ok()) status = client.tls->Read(&plain_);
      if (!status.ok()) {
        Fail(client, "tls: " + std::string(status.message()));
        return;
      }
      if (!plain_.empty()) Parse(client, plain_, now);
      if (client.phase == ClientPhase::kFree || client.generation != generation) return;
      if (client.tls != nullptr && client.tls->peer_closed() &&
          client.phase == ClientPhase::kClosing) {
        FinishClose(client, now);
        return;
      }
      Pump(client);  // handshake records, answers
    }
    if (static_cast<size_t>(n) < sizeof(buffer)) return;  // drained; ET brings the next
  }
}

void Bench::Parse(Client& client, std::string_view data, int64_t now) {
  const uint32_t generation = client.generation;
  xml::Tokenizer* tokenizer = client.tokenizer.get();
  tokenizer->Feed(data);
  while (client.phase != ClientPhase::kFree && client.generation == generation &&
         client.tokenizer.get() == tokenizer) {
    const xml::Token token = tokenizer->Next();
    switch (token.type) {
      case xml::TokenType::kNeedMoreData:
        return;
      case xml::TokenType::kStreamHeader:
        break;
      case xml::TokenType::kElement:
        OnElement(client, token, now);
        break;
      case xml::TokenType::kStreamEnd:
        if (client.phase == ClientPhase::kClosing) {
          FinishClose(client, now);
        } else {
          Fail(client, "the server ended the stream");
        }
        return;
      case xml::TokenType::kError:
        Fail(client, "bad XML from the server: " + tokenizer->error().text);
        return;
    }
  }
}

void Bench::OnElement(Client& client, const xml::Token& token, int64_t now) {
  const std::string_view element = token.bytes;
  if (IsNamed(token.name, "error") && token.name != "error") {  // <stream:error>
    Fail(client, "stream error: " + FirstChildName(element));
    return;
  }
  switch (client.phase) {
    case ClientPhase::kPlainFeatures:
    case ClientPhase::kSaslFeatures:
    case ClientPhase::kBindFeatures:
      if (IsNamed(token.name, "features")) OnFeatures(client, element);
      return;
    case ClientPhase::kAwaitingProceed: {
      if (token.name != "proceed") {
        Fail(client, "starttls: " + std::string(token.name));
        return;
      }
      absl::StatusOr<std::unique_ptr<tls::TlsSession>> session =
          tls::TlsSession::NewClient(tls_context_, options_.domain);
      if (!session.ok()) {
        Fail(client, "tls: " + std::string(session.status().message()));
        return;
      }
      client.tls = *std::move(session);
      client.phase = ClientPhase::kSaslFeatures;
      // A new stream inside TLS; what was fed in the clear is over. (Last: `token`
      // may point into the old tokenizer.)
      Queue(client, stream_header_);
      client.tokenizer = std::make_unique<xml::Tokenizer>();
      return;
    }
    case ClientPhase::kSasl: {
      std::string error;
      if (token.name == "challenge") {
        if (!client.scram.has_value()) {
          Fail(client, "sasl: a challenge for PLAIN");
          return;
        }
        const std::optional<std::string> server_first = sasl::Base64Decode(ElementText(element));
        std::optional<std::string> response;
        if (server_first.has_value()) {
          response = client.scram->HandleServerFirst(*server_first, prepared_password_,
                                                     &scram_keys_, &error);
        } else {
          error = "sasl: challenge is not base64";
        }
        if (!response.has_value()) {
          Fail(client, error);
          return;
        }
        Queue(client, "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" +
                          sasl::Base64Encode(*response) + "</response>");
        return;
      }
      if (token.name == "success") {
        if (client.scram.has_value()) {
          const std::optional<std::string> server_final = sasl::Base64Decode(ElementText(element));
          if (!server_final.has_value() ||
              !client.scram->HandleServerFinal(*server_final, &error)) {
            Fail(client, error.empty() ? "sasl: success data is not base64" : error);
            return;
          }
        }
        client.scram.reset();
        client.phase = ClientPhase::kBindFeatures;
        Queue(client, stream_header_);
        client.tokenizer->Restart();
        return;
      }
      if (token.name == "failure") {
        Fail(client, "sasl failure: " + FirstChildName(element));
        return;
      }
      Fail(client, "sasl: unexpected <" + std::string(token.name) + ">");
      return;
    }
    case ClientPhase::kAwaitingBind: {
      if (token.name != "iq") return;
      if (xml::FindRawAttribute(element, "id") != std::optional<std::string_view>("bind_1")) {
        return;
      }
      if (xml::FindRawAttribute(element, "type") != std::optional<std::string_view>("result")) {
        const size_t error = element.find("<error");
        Fail(client,
             "bind: " + (error == std::string_view::npos ? std::string("not a result")
                                                         : FirstChildName(element.substr(error))));
        return;
      }
      OnLoggedIn(client, now);
      return;
    }
    case ClientPhase::kReady:
      OnReadyElement(client, token);
      return;
    default:
      return;
  }
}

void Bench::OnFeatures(Client& client, std::string_view element) {
  switch (client.phase) {
    case ClientPhase::kPlainFeatures:
      if (element.find("<starttls") == std::string_view::npos) {
        Fail(client, "no <starttls/> offered");
        return;
      }
      Queue(client, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
      client.phase = ClientPhase::kAwaitingProceed;
      return;
    case ClientPhase::kSaslFeatures: {
      const char* name = options_.mechanism == Mechanism::kScramSha1     ? "SCRAM-SHA-1"
                         : options_.mechanism == Mechanism::kScramSha256 ? "SCRAM-SHA-256"
                                                                         : "PLAIN";
      if (element.find(">" + std::string(name) + "<") == std::string_view::npos) {
        Fail(client, std::string(name) + " not offered");
        return;
      }
      const std::string username =
          options_.user_prefix +
          std::to_string(client.number % static_cast<uint64_t>(options_.users));
      std::string initial;
      if (options_.mechanism == Mechanism::kPlain) {
        initial = std::string(1, '\0') + username + std::string(1, '\0') + options_.password;
      } else {
        std::string error;
        client.scram = ScramExchange::Start(
            options_.mechanism == Mechanism::kScramSha1 ? sasl::ScramMechanism::kSha1
                                                        : sasl::ScramMechanism::kSha256,
            username, options_.password, options_.scram_key_cache, &error);
        if (!client.scram.has_value()) {
          Fail(client, "scram: " + error);
          return;
        }
        initial = client.scram->client_first();
      }
      Queue(client, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" +
                        std::string(name) + "'>" + sasl::Base64Encode(initial) + "</auth>");
      client.phase = ClientPhase::kSasl;
      return;
    }
    case ClientPhase::kBindFeatures:
      if (element.find("<bind") == std::string_view::npos) {
        Fail(client, "no <bind/> offered");
        return;
      }
      Queue(client,
            "<iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<resource>r" +
                std::to_string(client.number) + "</resource></bind></iq>");
      client.phase = ClientPhase::kAwaitingBind;
      return;
    default:
      return;
  }
}

void Bench::OnLoggedIn(Client& client, int64_t now) {
  ++logged_in_;
  login_ns_.push_back(now - client.started_ns);
  if (options_.mode == Mode::kLogins) {
    client.phase = ClientPhase::kClosing;
    client.deadline_ns = now + SecondsToNs(options_.login_timeout_s);
    Queue(client, "</stream:stream>");
    return;
  }
  client.phase = ClientPhase::kReady;
  client.deadline_ns = INT64_MAX;
  --active_;  // no longer connecting: the next client may start
}

void Bench::FinishClose(Client& client, int64_t /*now*/) {
  // The server has ended its stream: our close_notify, then the socket.
  if (client.tls != nullptr && client.tls->Shutdown().ok() && client.tls->has_output()) {
    client.tls->TakeOutput(&scratch_);
    client.out.append(scratch_);
    FlushClient(client);
  }
  Release(client);
}

void Bench::OnReadyElement(Client& client, const xml::Token& token) {
  const std::string_view element = token.bytes;
  if (token.name == "iq") {
    // Answer a ping (or anything asked of us) so the server keeps us.
    const std::optional<std::string_view> type = xml::FindRawAttribute(element, "type");
    if (type == "get" || type == "set") {
      const std::optional<std::string_view> id = xml::FindRawAttribute(element, "id");
      const std::optional<std::string_view> from = xml::FindRawAttribute(element, "from");
      std::string answer = "<iq type='result' id='" + std::string(id.value_or("")) + "'";
      if (from.has_value()) answer += " to='" + std::string(*from) + "'";
      Queue(client, answer + "/>");
    }
    return;
  }
  if (token.name != "message") return;
  if (xml::FindRawAttribute(element, "type") != std::optional<std::string_view>("error")) return;
  // One of ours, bounced.
  ++client.bounced;
  --client.in_flight;
  if (!stopping_) QueueMessage(client);
}

void Bench::QueueMessage(Client& client) {
  const size_t index = static_cast<size_t>(&client - clients_.data());
  const Bridge& bridge = bridges_[(index + client.next_bridge++) % bridges_.size()];
  Queue(client, "<message to='" + bridge.component + "' id='" + std::to_string(index) + "-" +
                    std::to_string(client.sent) + "'><body>" + payload_ + "</body></message>");
  ++client.sent;
  ++client.in_flight;
}

void Bench::CheckDeadlines(int64_t now) {
  for (Client& client : clients_) {
    if (client.phase == ClientPhase::kFree || now < client.deadline_ns) continue;
    Fail(client, "timeout: no progress after --login_timeout_s (phase " +
                     std::to_string(static_cast<int>(client.phase)) + ")");
  }
}

// --------------------------------------------------------------------------- bridges

void Bench::ConnectBridges() {
  std::vector<std::pair<std::string, std::string>> accounts;
  if (!options_.secrets_json.empty()) {
    accounts = ReadSecrets(options_.secrets_json);
  } else {
    if (options_.bridge_secret.empty()) Die("--bridges need --secrets_json or --bridge_secret");
    for (int i = 0; i < options_.bridges; ++i) {
      accounts.emplace_back(options_.bridge_prefix + std::to_string(i) + "." + options_.domain,
                            options_.bridge_secret);
    }
  }
  if (options_.bridges < 1 || options_.bridges > static_cast<int>(accounts.size())) {
    Die("--bridges must be between 1 and the " + std::to_string(accounts.size()) +
        " bridges known");
  }
  const sockaddr_in address = ParseAddress("--component_server", options_.component_server);
  bridges_.resize(static_cast<size_t>(options_.bridges));
  for (size_t i = 0; i < bridges_.size(); ++i) {
    Bridge& bridge = bridges_[i];
    bridge.component = accounts[i].first;
    bridge.secret = accounts[i].second;
    bridge.tokenizer = std::make_unique<xml::Tokenizer>();
    bridge.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(bridge.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bridge.fd < 0 ||
        (connect(bridge.fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 &&
         errno != EINPROGRESS)) {
      Die("bridge " + bridge.component + ": connect: " + std::strerror(errno));
    }
    epoll_event event{};
    event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    event.data.u64 = kBridgeTag | i;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, bridge.fd, &event);
    bridge.out =
        "<stream:stream xmlns='jabber:component:accept' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='" +
        bridge.component + "'>";
  }
}

bool Bench::FlushBridge(Bridge& bridge) {
  while (bridge.out_begin < bridge.out.size()) {
    const ssize_t n = send(bridge.fd, bridge.out.data() + bridge.out_begin,
                           bridge.out.size() - bridge.out_begin, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR || errno == ENOTCONN)) return true;
    if (n <= 0) return false;
    bridge.out_begin += static_cast<size_t>(n);
  }
  bridge.out.clear();
  bridge.out_begin = 0;
  return true;
}

void Bench::OnBridgeReadable(Bridge& bridge, int64_t now) {
  char buffer[kRecvBufferBytes];
  while (true) {
    const ssize_t n = recv(bridge.fd, buffer, sizeof(buffer), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) Die("bridge " + bridge.component + ": connection closed by the server");
    bridge.tokenizer->Feed(std::string_view(buffer, static_cast<size_t>(n)));
    while (true) {
      const xml::Token token = bridge.tokenizer->Next();
      if (token.type == xml::TokenType::kNeedMoreData) break;
      if (token.type == xml::TokenType::kError) {
        Die("bridge " + bridge.component + ": bad XML: " + bridge.tokenizer->error().text);
      }
      if (token.type == xml::TokenType::kStreamEnd) {
        Die("bridge " + bridge.component + ": the server ended the stream");
      }
      if (token.type == xml::TokenType::kStreamHeader) {
        const std::string* id = bridge.tokenizer->header().Find("id");
        if (id == nullptr) Die("bridge " + bridge.component + ": no stream id");
        bridge.out += "<handshake>" + stanzad::xmpp::ComponentHandshakeDigest(*id, bridge.secret) +
                      "</handshake>";
        bridge.phase = BridgePhase::kAwaitingHandshake;
        if (!FlushBridge(bridge)) Die("bridge " + bridge.component + ": send failed");
        continue;
      }
      OnBridgeElement(bridge, token, now);
    }
    if (static_cast<size_t>(n) < sizeof(buffer)) return;
  }
}

void Bench::OnBridgeElement(Bridge& bridge, const xml::Token& token, int64_t now) {
  if (IsNamed(token.name, "error") && token.name != "error") {
    Die("bridge " + bridge.component + ": stream error: " + FirstChildName(token.bytes));
  }
  if (bridge.phase == BridgePhase::kAwaitingHandshake) {
    if (token.name == "handshake") {
      bridge.phase = BridgePhase::kReady;
      ++bridges_ready_;
    }
    return;
  }
  if (token.name != "message") return;
  const std::optional<std::string_view> id = xml::FindRawAttribute(token.bytes, "id");
  size_t used = 0;
  const std::string_view text = id.value_or("");
  const uint64_t sender = ParseUnsigned(text, &used);
  if (used == 0 || used >= text.size() || text[used] != '-' || sender >= clients_.size()) {
    ++stray_;
    return;
  }
  const uint64_t sequence = ParseUnsigned(text.substr(used + 1));
  Client& client = clients_[sender];
  if (sequence >= client.sent) {
    ++stray_;
    return;
  }
  const size_t word = sequence / 64;
  if (word >= client.arrived.size())
    client.arrived.resize(std::max(word + 1, client.arrived.size() * 2));
  const uint64_t bit = 1ull << (sequence % 64);
  if (client.arrived[word] & bit) {
    ++client.duplicated;
    return;
  }
  client.arrived[word] |= bit;
  ++client.arrived_count;
  ++bridge.received;
  --client.in_flight;
  if (Measuring(now)) ++bridge.received_in_window;
  if (!stopping_ && client.phase == ClientPhase::kReady) QueueMessage(client);
}

// --------------------------------------------------------------------------- run

int Bench::Run() {
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;
  setrlimit(RLIMIT_NOFILE, &files);
  const uint64_t fds_needed =
      static_cast<uint64_t>(options_.mode == Mode::kLogins ? options_.concurrency
                                                           : options_.clients) +
      (options_.mode == Mode::kStanzas ? static_cast<uint64_t>(options_.bridges) : 0) + 64;
  if (files.rlim_cur < fds_needed) {
    Die("needs " + std::to_string(fds_needed) + " file descriptors; the limit is " +
        std::to_string(files.rlim_cur) + " (raise ulimit -n)");
  }
  Setup();
  const int64_t rss_before = options_.server_pid > 0 ? ReadRssBytes(options_.server_pid) : 0;
  int64_t rss_after = 0;

  const int64_t run_start = NowNs();
  if (options_.mode == Mode::kStanzas) ConnectBridges();
  const int64_t connect_deadline = run_start + SecondsToNs(options_.connect_timeout_s);
  // What the report's rate and CPU use are over: logins, the whole run; stanzas, the
  // measured window; idle, logging the clients in.
  int64_t measured_from = run_start, measured_to = 0;
  double cpu_from = ThreadCpuSeconds(), cpu_to = 0;
  bool all_in = false;  // stanzas, idle: every client has logged in (or failed)
  bool window_started = false;
  int64_t all_in_at = 0;
  int64_t end = 0;  // idle: the end of the hold; stanzas: the end of the drain
  bool rss_read = false;
  int64_t last_deadline_check = run_start;
  std::vector<epoll_event> events(1024);
  while (true) {
    const int64_t now = NowNs();
    if (options_.mode == Mode::kLogins) {
      StartLogins(now);
      if (logins_done_ >= static_cast<uint64_t>(options_.logins)) {
        measured_to = now;
        cpu_to = ThreadCpuSeconds();
        break;
      }
    } else if (!all_in) {
      if (options_.mode != Mode::kStanzas || bridges_ready_ == bridges_.size()) StartLogins(now);
      if (now > connect_deadline) {
        Die("timed out after --connect_timeout_s with " + std::to_string(logged_in_) + " of " +
            std::to_string(clients_.size()) + " clients and " + std::to_string(bridges_ready_) +
            " of " + std::to_string(bridges_.size()) + " bridges in");
      }
      if (logins_started_ == clients_.size() && active_ == 0) {
        all_in = true;
        all_in_at = now;
        std::fprintf(stderr,
                     "c2s-bench: %" PRIu64 " clients logged in in %.1f s, %" PRIu64 " failed\n",
                     logged_in_, static_cast<double>(now - run_start) / 1e9, failed_);
        for (const auto& [reason, count] : failures_) {
          std::fprintf(stderr, "c2s-bench:   %" PRIu64 " × %s\n", count, reason.c_str());
        }
        if (options_.mode == Mode::kIdle) {
          measured_to = now;
          cpu_to = ThreadCpuSeconds();
          std::printf("idle: %" PRIu64 " clients logged in\n", logged_in_);
          std::fflush(stdout);
          end = now + SecondsToNs(options_.hold_s);
        } else {
          if (logged_in_ == 0) Die("no client logged in");
          window_start_ = now + SecondsToNs(options_.warmup_s);
          window_end_ = window_start_ + SecondsToNs(options_.seconds);
          end = window_end_ + SecondsToNs(options_.drain_s);
          for (Client& client : clients_) {
            if (client.phase != ClientPhase::kReady) continue;
            for (int k = 0; k < options_.window; ++k) QueueMessage(client);
          }
        }
      }
    } else if (options_.mode == Mode::kIdle) {
      if (!rss_read && now >= all_in_at + SecondsToNs(1)) {
        rss_read = true;
        if (options_.server_pid > 0) rss_after = ReadRssBytes(options_.server_pid);
      }
      if (rss_read && now >= end) break;
    } else {
      if (!window_started && now >= window_start_) {
        window_started = true;
        measured_from = now;
        cpu_from = ThreadCpuSeconds();
      }
      if (!stopping_ && now >= window_end_) {
        stopping_ = true;
        measured_to = now;
        cpu_to = ThreadCpuSeconds();
      }
      if (stopping_) {
        bool drained = true;
        for (const Client& client : clients_) {
          drained = drained && (client.phase != ClientPhase::kReady || client.in_flight <= 0);
        }
        if (drained || now >= end) break;
      }
    }
    if (now - last_deadline_check > 100'000'000) {
      last_deadline_check = now;
      CheckDeadlines(now);
    }
    PumpDirty();
    const int count = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 10);
    const int64_t after = NowNs();
    for (int e = 0; e < count; ++e) {
      const uint64_t tag = events[e].data.u64;
      if (tag & kBridgeTag) {
        Bridge& bridge = bridges_[tag & (kBridgeTag - 1)];
        if (events[e].events & EPOLLOUT) {
          if (!FlushBridge(bridge)) Die("bridge " + bridge.component + ": send failed");
        }
        if (events[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
          OnBridgeReadable(bridge, after);
        }
        continue;
      }
      Client& client = clients_[tag & 0xffffffffu];
      if (client.phase == ClientPhase::kFree || client.generation != (tag >> 32)) continue;
      OnClientEvent(client, events[e].events, after);
    }
  }
  Report(cpu_to - cpu_from, static_cast<double>(measured_to - measured_from) / 1e9, rss_before,
         rss_after);
  for (Client& client : clients_) {
    if (client.fd >= 0) close(client.fd);
  }
  for (Bridge& bridge : bridges_) close(bridge.fd);
  return 0;
}

std::string JsonEscape(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

void Bench::Report(double cpu_seconds, double wall_seconds, int64_t rss_before, int64_t rss_after) {
  const char* mode = options_.mode == Mode::kLogins    ? "logins"
                     : options_.mode == Mode::kStanzas ? "stanzas"
                                                       : "idle";
  const char* mechanism = options_.mechanism == Mechanism::kScramSha1     ? "SCRAM-SHA-1"
                          : options_.mechanism == Mechanism::kScramSha256 ? "SCRAM-SHA-256"
                                                                          : "PLAIN";
  std::sort(login_ns_.begin(), login_ns_.end());
  std::printf("{\"mode\":\"%s\",\"server\":\"%s\",\"mechanism\":\"%s\",\"scram_key_cache\":%s",
              mode, options_.server.c_str(), mechanism,
              options_.scram_key_cache ? "true" : "false");
  std::printf(",\"logged_in\":%" PRIu64 ",\"failed\":%" PRIu64
              ",\"login_p50_ms\":%.2f,\"login_p99_ms\":%.2f,\"login_max_ms\":%.2f",
              logged_in_, failed_, PercentileUs(login_ns_, 0.5) / 1000,
              PercentileUs(login_ns_, 0.99) / 1000,
              login_ns_.empty() ? 0.0 : static_cast<double>(login_ns_.back()) / 1e6);
  std::printf(",\"failures\":{");
  bool first = true;
  for (const auto& [reason, count] : failures_) {
    std::printf("%s\"%s\":%" PRIu64, first ? "" : ",", JsonEscape(reason).c_str(), count);
    first = false;
  }
  std::printf("}");
  if (options_.mode == Mode::kLogins) {
    std::printf(",\"logins\":%d,\"concurrency\":%d,\"seconds\":%.2f,\"logins_per_s\":%.1f",
                options_.logins, options_.concurrency, wall_seconds,
                wall_seconds > 0 ? static_cast<double>(logged_in_) / wall_seconds : 0.0);
  } else if (options_.mode == Mode::kIdle) {
    std::printf(",\"clients\":%d,\"hold_s\":%.1f,\"server_pid\":%d,\"rss_before_bytes\":%" PRId64
                ",\"rss_after_bytes\":%" PRId64 ",\"per_client_bytes\":%.0f",
                options_.clients, options_.hold_s, options_.server_pid, rss_before, rss_after,
                options_.server_pid > 0 && logged_in_ > 0
                    ? static_cast<double>(rss_after - rss_before) / static_cast<double>(logged_in_)
                    : 0.0);
  } else {
    uint64_t sent = 0, arrived = 0, bounced = 0, duplicated = 0, in_window = 0;
    uint64_t bridge_min = UINT64_MAX, bridge_max = 0;
    for (const Client& client : clients_) {
      sent += client.sent;
      arrived += client.arrived_count;
      bounced += client.bounced;
      duplicated += client.duplicated;
    }
    for (const Bridge& bridge : bridges_) {
      in_window += bridge.received_in_window;
      bridge_min = std::min(bridge_min, bridge.received_in_window);
      bridge_max = std::max(bridge_max, bridge.received_in_window);
    }
    const uint64_t accounted = arrived + bounced;
    std::printf(
        ",\"clients\":%d,\"bridges\":%d,\"window\":%d,\"payload_bytes\":%d,\"seconds\":%.1f"
        ",\"stanzas_per_s\":%.0f,\"per_bridge_min_per_s\":%.0f,\"per_bridge_max_per_s\":%.0f"
        ",\"sent\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"bounced\":%" PRIu64 ",\"lost\":%" PRIu64
        ",\"duplicated\":%" PRIu64 ",\"stray\":%" PRIu64,
        options_.clients, options_.bridges, options_.window, options_.payload_bytes,
        options_.seconds, static_cast<double>(in_window) / options_.seconds,
        static_cast<double>(bridge_min) / options_.seconds,
        static_cast<double>(bridge_max) / options_.seconds, sent, arrived, bounced,
        sent > accounted ? sent - accounted : 0, duplicated, stray_);
  }
  const double busy = wall_seconds > 0 ? cpu_seconds / wall_seconds : 0;
  std::printf(",\"scram_key_derivations\":%" PRIu64
              ",\"client_cpu_busy_fraction\":%.2f,\"bench_was_bottleneck\":%s}\n",
              scram_keys_.derivations(), busy, busy >= 0.9 ? "true" : "false");
  std::fflush(stdout);
  if (busy >= 0.9) {
    std::fprintf(stderr,
                 "c2s-bench: warning: the client thread was %.0f%% busy; the figures may measure "
                 "c2s-bench, not the server\n",
                 busy * 100);
  }
}

// The credentials text `stanzactl user add` stores for `password` (RFC 5803), with fixed
// salts so that every benchmark user gets the same keys and a server can be seeded fast.
int PrintCredentials(const std::string& password) {
  absl::StatusOr<stanzad::config::UserCredentials> credentials =
      sasl::MakeUserCredentials(password, "c2s-bench-salt-sha1", "c2s-bench-salt-sha256");
  if (!credentials.ok()) Die(std::string(credentials.status().message()));
  std::printf("%s\n", sasl::EncodeUserCredentials(*credentials).c_str());
  return 0;
}

void Usage() {
  std::fprintf(
      stderr,
      "usage: c2s-bench --mode=logins|stanzas|idle [flags]\n"
      "       c2s-bench --print_credentials=PASSWORD\n"
      "  --server=127.0.0.1:5222     the server's client port (STARTTLS)\n"
      "  --domain=example.com        the XMPP domain (stream 'to', SNI)\n"
      "  --user_prefix=u             users PREFIX0 .. PREFIX{--users - 1} ...\n"
      "  --users=N                   ... (default: --logins, or --clients)\n"
      "  --password=bench-password   ... all with this password\n"
      "  --mechanism=SCRAM-SHA-1     or SCRAM-SHA-256, PLAIN\n"
      "  --scram_key_cache=true      keep the keys derived per salt (false: PBKDF2 per login)\n"
      "  --logins=1000               logins mode: logins in all ...\n"
      "  --concurrency=50            ... at a time (all modes: logins in progress at once)\n"
      "  --login_timeout_s=30        a login (or its clean close) taking longer fails\n"
      "  --clients=100               stanzas, idle modes: clients logged in\n"
      "  --connect_timeout_s=300     stanzas, idle: bound on logging them all in\n"
      "  --bridges=10                stanzas mode: XEP-0114 components receiving ...\n"
      "  --component_server=127.0.0.1:5223\n"
      "  --secrets_json=FILE         `stanzactl --json callbridge list` output, or ...\n"
      "  --bridge_prefix=b --bridge_secret=S   ... components PREFIXi.DOMAIN sharing S\n"
      "  --window=8                  messages per client sent and not yet arrived\n"
      "  --payload_bytes=100         body size\n"
      "  --seconds=10 --warmup_s=1 --drain_s=3\n"
      "  --hold_s=0                  idle mode: how long to hold the clients\n"
      "  --server_pid=PID            idle mode: report the server's VmRSS growth per client\n"
      "  --print_credentials=PW      print the credentials text for `user add` and exit\n");
}

bool ParseBool(const std::string& value) {
  return value.empty() || value == "true" || value == "1";
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t equals = arg.find('=');
    const std::string name = arg.substr(0, equals);
    const std::string value = equals == std::string::npos ? "" : arg.substr(equals + 1);
    const auto number = [&](int minimum) { return std::max(minimum, std::atoi(value.c_str())); };
    const auto seconds = [&](double minimum) {
      return std::max(minimum, std::atof(value.c_str()));
    };
    if (name == "--print_credentials") {
      return PrintCredentials(value);
    } else if (name == "--server") {
      options.server = value;
    } else if (name == "--domain") {
      options.domain = value;
    } else if (name == "--user_prefix") {
      options.user_prefix = value;
    } else if (name == "--users") {
      options.users = number(1);
    } else if (name == "--password") {
      options.password = value;
    } else if (name == "--mechanism" &&
               (value == "SCRAM-SHA-1" || value == "SCRAM-SHA-256" || value == "PLAIN")) {
      options.mechanism = value == "SCRAM-SHA-1"     ? Mechanism::kScramSha1
                          : value == "SCRAM-SHA-256" ? Mechanism::kScramSha256
                                                     : Mechanism::kPlain;
    } else if (name == "--scram_key_cache") {
      options.scram_key_cache = ParseBool(value);
    } else if (name == "--mode" && (value == "logins" || value == "stanzas" || value == "idle")) {
      options.mode = value == "logins"    ? Mode::kLogins
                     : value == "stanzas" ? Mode::kStanzas
                                          : Mode::kIdle;
    } else if (name == "--logins") {
      options.logins = number(1);
    } else if (name == "--concurrency") {
      options.concurrency = number(1);
    } else if (name == "--clients") {
      options.clients = number(1);
    } else if (name == "--bridges") {
      options.bridges = number(1);
    } else if (name == "--component_server") {
      options.component_server = value;
    } else if (name == "--bridge_prefix") {
      options.bridge_prefix = value;
    } else if (name == "--bridge_secret") {
      options.bridge_secret = value;
    } else if (name == "--secrets_json") {
      options.secrets_json = value;
    } else if (name == "--window") {
      options.window = number(1);
    } else if (name == "--payload_bytes") {
      options.payload_bytes = number(1);
    } else if (name == "--seconds") {
      options.seconds = seconds(0.1);
    } else if (name == "--warmup_s") {
      options.warmup_s = seconds(0);
    } else if (name == "--drain_s") {
      options.drain_s = seconds(0);
    } else if (name == "--hold_s") {
      options.hold_s = seconds(0);
    } else if (name == "--connect_timeout_s") {
      options.connect_timeout_s = seconds(1);
    } else if (name == "--login_timeout_s") {
      options.login_timeout_s = seconds(0.1);
    } else if (name == "--server_pid") {
      options.server_pid = std::atoi(value.c_str());
    } else {
      if (name != "--help") std::fprintf(stderr, "c2s-bench: bad flag %s\n", arg.c_str());
      Usage();
      return name == "--help" ? 0 : 2;
    }
  }
  // Usernames go into SCRAM messages as they are: no SASLprep, nothing to escape.
  for (const char c : options.user_prefix) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      Die("--user_prefix: letters, digits, '.', '_' and '-' only");
    }
  }
  if (options.users == 0) {
    options.users = options.mode == Mode::kLogins ? options.logins : options.clients;
  }
  if (options.clients > (1 << 30) || options.concurrency > (1 << 30)) Die("too many clients");
  return Bench(std::move(options)).Run();
}
