// tls_session_bench: what one TLS session costs the server, measured in memory
// through tls::TlsSession, with the wolfSSL stanzad is linked with (bundled or system:
// build both and run each; the figures are comparable within one run of both).
//
// A server and a client context (EC P-256 certificate from tls/pki.h, as `stanzactl
// certs` makes), then --handshakes handshakes over memory, one at a time:
//   - server_cpu_us / client_cpu_us: thread CPU time inside each side's TlsSession
//     calls, per handshake (X25519 key share, ECDSA P-256 signature and its check),
//     less the cost of reading the clock around each call (timing_overhead_us);
//   - held: --held server sessions kept after their handshake and one message each,
//     idle (ReleaseIdleMemory), and the bytes wolfSSL holds for them, counted through
//     wolfSSL_SetAllocators (every block wolfSSL allocates, while the server's calls
//     run, minus what it frees), divided by --held: wolfSSL's part of an idle TLS
//     client's memory. stanzad's own part is not in it (bench/idle_rss.py measures
//     the whole server).
// One line of key=value results.
//
//   tls_session_bench --handshakes=300 --held=1000 --tls=1.3
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/memory.h>

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/base/check.h"
#include "tls/pki.h"
#include "tls/tls_session.h"

namespace {

using stanzad::tls::TlsContext;
using stanzad::tls::TlsSession;

// Which side's call is running; blocks are charged to it.
enum Side { kOther = 0, kServer = 1, kClient = 2 };
Side g_side = kOther;
long long g_live_bytes[3] = {0, 0, 0};
long long g_live_blocks[3] = {0, 0, 0};
// The handshake running (its index); with --list_blocks, the server's blocks made in
// handshake g_listed_handshake and not freed (block -> size): where an idle session's
// bytes are.
int g_handshake = -1;
int g_listed_handshake = -2;
std::unordered_map<void*, size_t> g_listed;

// Every block carries a 16-byte header: its size, the side it is charged to and the
// handshake that made it.
struct Header {
  size_t size;
  int side;
  int handshake;
};
constexpr size_t kHeaderBytes = 16;
static_assert(sizeof(Header) <= kHeaderBytes);

void* CountedMalloc(size_t size) {
  auto* block = static_cast<unsigned char*>(std::malloc(size + kHeaderBytes));
  if (block == nullptr) return nullptr;
  Header header{size, g_side, g_handshake};
  std::memcpy(block, &header, sizeof(header));
  g_live_bytes[g_side] += static_cast<long long>(size);
  ++g_live_blocks[g_side];
  if (g_handshake == g_listed_handshake && g_side == kServer) g_listed[block] = size;
  return block + kHeaderBytes;
}

void CountedFree(void* pointer) {
  if (pointer == nullptr) return;
  unsigned char* block = static_cast<unsigned char*>(pointer) - kHeaderBytes;
  Header header;
  std::memcpy(&header, block, sizeof(header));
  g_live_bytes[header.side] -= static_cast<long long>(header.size);
  --g_live_blocks[header.side];
  if (header.handshake == g_listed_handshake) g_listed.erase(block);
  std::free(block);
}

void* CountedRealloc(void* pointer, size_t size) {
  if (pointer == nullptr) return CountedMalloc(size);
  void* fresh = CountedMalloc(size);
  if (fresh == nullptr) return nullptr;
  unsigned char* block = static_cast<unsigned char*>(pointer) - kHeaderBytes;
  Header header;
  std::memcpy(&header, block, sizeof(header));
  std::memcpy(fresh, pointer, header.size < size ? header.size : size);
  CountedFree(pointer);
  return fresh;
}

double ThreadCpuSeconds() {
  timespec now;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

// Calls timed per side: reading the thread's CPU clock is a system call (~1 µs),
// and each timed call carries about one read's cost, which main() measures and
// takes off (so it does not make the two builds look more alike than they are).
long long g_timed_calls[3] = {0, 0, 0};

// Runs `call` charged to `side`, adding its thread CPU time to *seconds.
template <typename Call>
void OnSide(Side side, double* seconds, Call call) {
  const Side before = g_side;
  g_side = side;
  const double start = ThreadCpuSeconds();
  call();
  *seconds += ThreadCpuSeconds() - start;
  ++g_timed_calls[side];
  g_side = before;
}

struct Flags {
  int handshakes = 300;
  int held = 1000;
  std::string tls = "1.3";
  bool list_blocks = false;
};

bool ParseFlag(std::string_view argument, std::string_view name, std::string* value) {
  const std::string prefix = "--" + std::string(name) + "=";
  if (argument.substr(0, prefix.size()) != prefix) return false;
  *value = std::string(argument.substr(prefix.size()));
  return true;
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string_view argument = argv[i];
    std::string value;
    if (argument == "--help") {
      std::printf(
          "tls_session_bench: a TLS session's cost to the server, over memory.\n"
          "  --handshakes=N  handshakes timed (default 300)\n"
          "  --held=N        idle server sessions held for the memory figure (default 1000)\n"
          "  --tls=1.3|1.2   highest version both sides offer (default 1.3)\n"
          "  --list_blocks   also list the sizes of the wolfSSL blocks the last idle\n"
          "                  server session holds, largest first\n");
      std::exit(0);
    } else if (ParseFlag(argument, "handshakes", &value)) {
      flags.handshakes = std::atoi(value.c_str());
    } else if (ParseFlag(argument, "held", &value)) {
      flags.held = std::atoi(value.c_str());
    } else if (argument == "--list_blocks") {
      flags.list_blocks = true;
    } else if (ParseFlag(argument, "tls", &value) && (value == "1.3" || value == "1.2")) {
      flags.tls = value;
    } else {
      std::fprintf(stderr, "tls_session_bench: unknown or bad flag %s (try --help)\n", argv[i]);
      std::exit(2);
    }
  }
  if (flags.handshakes < 1 || flags.held < 1) {
    std::fprintf(stderr, "tls_session_bench: --handshakes and --held must be at least 1\n");
    std::exit(2);
  }
  return flags;
}

std::string Must(absl::StatusOr<std::string> value, const char* what) {
  CHECK_MSG(value.ok(), what);
  return *std::move(value);
}

struct Pair {
  std::unique_ptr<TlsSession> server;
  std::unique_ptr<TlsSession> client;
};

// Handshakes over memory, then one message from the client, read by the server;
// the server's calls are charged to kServer, the client's to kClient.
Pair Handshake(const std::shared_ptr<const TlsContext>& server_context,
               const std::shared_ptr<const TlsContext>& client_context, double* server_cpu,
               double* client_cpu) {
  Pair pair;
  OnSide(kServer, server_cpu, [&] {
    auto session = TlsSession::NewServer(server_context);
    CHECK_MSG(session.ok(), "server session");
    pair.server = *std::move(session);
  });
  OnSide(kClient, client_cpu, [&] {
    auto session = TlsSession::NewClient(client_context, "xmpp.example.com");
    CHECK_MSG(session.ok(), "client session");
    pair.client = *std::move(session);
    CHECK(pair.client->Write("<presence/>").ok());
  });
  std::string bytes, plaintext;
  for (int turn = 0; turn < 20; ++turn) {
    OnSide(kClient, client_cpu, [&] { pair.client->TakeOutput(&bytes); });
    OnSide(kServer, server_cpu, [&] {
      if (!bytes.empty()) CHECK(pair.server->Feed(bytes).ok());
      CHECK(pair.server->Read(&plaintext).ok());
      pair.server->TakeOutput(&bytes);
    });
    OnSide(kClient, client_cpu, [&] {
      std::string ignored;
      if (!bytes.empty()) CHECK(pair.client->Feed(bytes).ok());
      CHECK(pair.client->Read(&ignored).ok());
    });
    if (plaintext == "<presence/>" && !pair.client->has_output()) break;
  }
  CHECK_MSG(pair.server->handshake_done() && plaintext == "<presence/>", "handshake");
  OnSide(kServer, server_cpu, [&] { pair.server->ReleaseIdleMemory(); });
  return pair;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  CHECK(wolfSSL_SetAllocators(CountedMalloc, CountedFree, CountedRealloc) == 0);

  const std::string key = Must(stanzad::tls::GeneratePrivateKeyPem(), "key");
  stanzad::tls::CertificateSpec spec;
  spec.subject.common_name = "xmpp.example.com";
  spec.subject.subject_alt_names = {"xmpp.example.com"};
  const std::string certificate =
      Must(stanzad::tls::MakeSelfSignedCertificatePem(key, spec), "certificate");
  const auto version =
      flags.tls == "1.2" ? stanzad::tls::TlsVersion::kTls12 : stanzad::tls::TlsVersion::kTls13;
  stanzad::tls::TlsServerOptions server_options;
  server_options.max_version = version;
  auto server_context = TlsContext::Server(certificate, key, server_options);
  CHECK_MSG(server_context.ok(), "server context");
  stanzad::tls::TlsClientOptions client_options;
  client_options.max_version = version;
  auto client_context = TlsContext::Client("", /*verify_peer=*/false, client_options);
  CHECK_MSG(client_context.ok(), "client context");

  // Warm up: wolfSSL's per-thread caches (FP_ECC in the system build) fill here,
  // not inside the figures.
  double ignored_server = 0, ignored_client = 0;
  for (int i = 0; i < 20; ++i) {
    Handshake(*server_context, *client_context, &ignored_server, &ignored_client);
  }

  // What timing an empty call costs, per call.
  constexpr int kCalibrationCalls = 20000;
  double empty_cpu = 0;
  for (int i = 0; i < kCalibrationCalls; ++i) OnSide(kOther, &empty_cpu, [] {});
  const double timing_overhead = empty_cpu / kCalibrationCalls;

  double server_cpu = 0, client_cpu = 0;
  const long long server_calls_before = g_timed_calls[kServer];
  const long long client_calls_before = g_timed_calls[kClient];
  for (int i = 0; i < flags.handshakes; ++i) {
    Handshake(*server_context, *client_context, &server_cpu, &client_cpu);
  }
  server_cpu -= static_cast<double>(g_timed_calls[kServer] - server_calls_before) * timing_overhead;
  client_cpu -= static_cast<double>(g_timed_calls[kClient] - client_calls_before) * timing_overhead;

  const long long bytes_before = g_live_bytes[kServer];
  const long long blocks_before = g_live_blocks[kServer];
  std::vector<Pair> held;
  held.reserve(static_cast<size_t>(flags.held));
  double unused_server = 0, unused_client = 0;
  if (flags.list_blocks) g_listed_handshake = flags.held - 1;
  for (int i = 0; i < flags.held; ++i) {
    g_handshake = i;
    held.push_back(Handshake(*server_context, *client_context, &unused_server, &unused_client));
  }
  g_handshake = -1;
  // The clients' memory is not the server's: let them go first.
  for (Pair& pair : held) pair.client.reset();
  const double bytes_per_session =
      static_cast<double>(g_live_bytes[kServer] - bytes_before) / flags.held;
  const double blocks_per_session =
      static_cast<double>(g_live_blocks[kServer] - blocks_before) / flags.held;

  std::printf(
      "tls=%s handshakes=%d timing_overhead_us=%.2f server_cpu_us=%.1f client_cpu_us=%.1f "
      "server_handshakes_per_cpu_s=%.0f "
      "held=%d wolfssl_bytes_per_idle_session=%.0f wolfssl_blocks_per_idle_session=%.1f "
      "protocol=%s cipher=%s\n",
      flags.tls.c_str(), flags.handshakes, timing_overhead * 1e6,
      server_cpu / flags.handshakes * 1e6, client_cpu / flags.handshakes * 1e6,
      flags.handshakes / server_cpu, flags.held, bytes_per_session, blocks_per_session,
      std::string(held[0].server->protocol_version()).c_str(),
      std::string(held[0].server->cipher_suite()).c_str());
  if (flags.list_blocks) {
    std::vector<size_t> sizes;
    for (const auto& [block, size] : g_listed) sizes.push_back(size);
    std::sort(sizes.rbegin(), sizes.rend());
    std::printf("blocks of the last idle server session (bytes):");
    for (size_t size : sizes) std::printf(" %zu", size);
    std::printf("\n");
  }
  return 0;
}
