// The costs of a Raft snapshot of the replicated configuration at size, in one process:
// encoding the state, decoding it, the Raft message around it, and writing it to a file
// with fsync (what a node's control thread paid for each before the snapshot was made in
// steps and written by another thread; see docs/configuration-storage.md).
//
//   config_snapshot_bench [--users=1000000] [--bridges=100000] [--dir=/tmp]
//
// Users get SCRAM-SHA-1 and SCRAM-SHA-256 credentials with random salts and keys (what an
// import of XEP-0227 files leaves). Prints one line per step: milliseconds and bytes.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "absl/strings/numbers.h"
#include "cluster/config_state_machine.h"
#include "cluster/raft/message_codec.h"
#include "core/config/config.h"

namespace stanzad {
namespace {

struct Flags {
  uint64_t users = 1000000;
  uint64_t bridges = 100000;
  std::string dir = "/tmp";
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&](const char* name) -> const char* {
      const size_t n = std::strlen(name);
      return arg.compare(0, n, name) == 0 ? arg.c_str() + n : nullptr;
    };
    if (const char* v = value("--users=")) {
      if (!absl::SimpleAtoi(v, &flags->users)) return false;
    } else if (const char* b = value("--bridges=")) {
      if (!absl::SimpleAtoi(b, &flags->bridges)) return false;
    } else if (const char* d = value("--dir=")) {
      flags->dir = d;
    } else {
      return false;
    }
  }
  return flags->users <= config::kUsersMax && flags->bridges <= config::kCallbridgesMax;
}

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

config::ScramSecret Secret(std::mt19937_64& rng, size_t key_bytes) {
  return config::ScramSecret{RandomBytes(rng, 16), 4096, RandomBytes(rng, key_bytes),
                             RandomBytes(rng, key_bytes)};
}

class Timer {
 public:
  double Ms() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_)
        .count();
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

int Run(const Flags& flags) {
  std::mt19937_64 rng(1);
  config::Config config;
  config.version = 7;
  config.domain = "example.com";
  config.members = {{1, "127.0.0.1:5999"}, {2, "127.0.0.2:5999"}, {3, "127.0.0.3:5999"}};
  char name[32];
  for (uint64_t i = 0; i < flags.bridges; ++i) {
    std::snprintf(name, sizeof(name), "cb%07llu", static_cast<unsigned long long>(i));
    config.callbridges[name].secret = "s3cr3t-" + std::to_string(rng() % 1000000);
  }
  for (uint64_t i = 0; i < flags.users; ++i) {
    std::snprintf(name, sizeof(name), "user%07llu", static_cast<unsigned long long>(i));
    config::UserCredentials credentials;
    credentials.scram_sha1 = Secret(rng, config::kSha1Bytes);
    credentials.scram_sha256 = Secret(rng, config::kSha256Bytes);
    config.users[name] = std::move(credentials);
  }
  std::printf("%llu bridges, %llu users\n", static_cast<unsigned long long>(flags.bridges),
              static_cast<unsigned long long>(flags.users));

  Timer encode;
  const std::string bytes = config::EncodeConfig(config);
  std::printf("EncodeConfig          %8.1f ms  %zu bytes\n", encode.Ms(), bytes.size());

  Timer decode;
  absl::StatusOr<config::Config> decoded = config::DecodeConfig(bytes);
  std::printf("DecodeConfig          %8.1f ms  %s\n", decode.Ms(), decoded.ok() ? "ok" : "FAILED");
  if (!decoded.ok()) return 1;

  auto snapshot = std::make_shared<raft::Snapshot>();
  snapshot->metadata = {7, 1, {{1, "127.0.0.1:5999"}}};
  snapshot->data = bytes;
  raft::Message message;
  message.type = raft::MessageType::kSnapshot;
  message.from = 1;
  message.to = 2;
  message.term = 1;
  message.snapshot = snapshot;
  Timer encode_message;
  std::string frame;
  raft::EncodeMessage(message, &frame);
  std::printf("EncodeMessage         %8.1f ms  %zu bytes\n", encode_message.Ms(), frame.size());

  Timer write_file;
  const std::string path = flags.dir + "/config_snapshot_bench.tmp";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return 1;
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) return 1;
    done += static_cast<size_t>(n);
  }
  const double written_ms = write_file.Ms();
  ::fdatasync(fd);
  ::close(fd);
  ::unlink(path.c_str());
  std::printf("write / +fdatasync    %8.1f ms  %8.1f ms\n", written_ms, write_file.Ms());
  return 0;
}

}  // namespace
}  // namespace stanzad

int main(int argc, char** argv) {
  stanzad::Flags flags;
  if (!stanzad::ParseFlags(argc, argv, &flags)) {
    std::fprintf(stderr, "usage: config_snapshot_bench [--users=N] [--bridges=N] [--dir=DIR]\n");
    return 2;
  }
  return stanzad::Run(flags);
}
