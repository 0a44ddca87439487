// stanzad: the XMPP stanza router daemon.
//
//   stanzad --state_dir=/var/lib/stanzad
//   stanzad --state_dir=/tmp/n1 --domain=example.com --listen=127.0.0.1   (new state dir)
//
// The main thread is the control plane: it serves the admin socket, keeps the
// node's configuration durable in the state dir, and starts, restarts or stops
// the io_uring engine (one shard thread per core) as the configuration says.
// Call bridges connect on --component_port of every listen address.
//
// This file reads the flags and assembles the node from its parts in server/ (each
// header says what the part promises); the control loop (server/control_loop.h) runs it.
#include <malloc.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/parse.h"
#include "admin/admin_socket.h"
#include "core/base/log.h"
#include "server/admin_dispatcher.h"
#include "server/control_loop.h"
#include "server/daemon_options.h"
#include "server/engine_supervisor.h"
#include "server/flags_usage.h"
#include "server/metrics_publisher.h"
#include "server/node_state.h"
#include "server/open_files.h"
#include "server/state_dir.h"

namespace stanzad {
namespace {

std::atomic<bool> g_stop_requested{false};

void OnSignal(int) { g_stop_requested.store(true); }

// Assembles the node, runs it until SIGINT or SIGTERM, then stops it. The exit status.
int RunNode(const DaemonOptions& options, NodeConfig config) {
  server::EngineSupervisor engine(options);
  std::string salt_key = server::LoadOrCreateSaltKey(options.state_dir);
  const auto started = std::chrono::steady_clock::now();
  server::MetricsPublisher metrics(engine, options.metrics_addr, started);
  server::NodeState node(options, std::move(config), std::move(salt_key), &engine, &metrics);
  server::AdminDispatcher dispatcher(options, node, engine, started);
  absl::StatusOr<std::unique_ptr<admin::AdminServer>> admin =
      admin::AdminServer::Listen(admin::AdminSocketPath(options.state_dir));
  if (!admin.ok()) {
    LogEvent(LogLevel::kError, "admin_socket_failed",
             "reason=" + LogQuote(std::string(admin.status().message())));
    return 1;
  }
  LogEvent(LogLevel::kInfo, "started",
           "version=" + std::string(kStanzadVersion) + " state_dir=" + options.state_dir +
               " shards=" + std::to_string(options.shards));
  if (absl::Status opened = node.OpenCluster(); !opened.ok()) {
    LogEvent(LogLevel::kError, "cluster_open_failed",
             "reason=" + LogQuote(std::string(opened.message())));
    if (node.cluster() == nullptr) return 1;  // the store itself failed
  }
  node.ApplyEngineState();
  metrics.Start(node);
  server::ControlLoop(**admin, dispatcher, node, engine, metrics).Run(g_stop_requested);
  LogEvent(LogLevel::kInfo, "stopping");
  metrics.Stop();
  node.StopEngine();
  return 0;
}

}  // namespace
}  // namespace stanzad

int main(int argc, char** argv) {
  // Freed memory stays in the process for the next allocation: returned to the kernel (a
  // trimmed heap top, an mmap'd block of 128 KiB or more), it is faulted in again, page by
  // page, by the next configuration change — tens of microseconds a page on a virtual
  // machine, and a chunk of an import allocates megabytes on the control thread.
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  static constexpr char kUsage[] =
      "The stanzad XMPP stanza router.\n"
      "Usage: stanzad --state_dir=DIR [flags]\n"
      "Configure it with stanzactl --state_dir=DIR (domain, listen, callbridge add, enable).";
  // --help in the terms an operator thinks in (server/daemon_options.cc names every flag).
  if (stanzad::PrintGroupedHelpIfAsked(argc, argv, kUsage, stanzad::DaemonFlagGroups())) return 0;
  stanzad::ConfigureFlagsUsage(kUsage, "stanzad");
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<stanzad::DaemonOptions> options = stanzad::ReadDaemonOptions();
  if (!options.ok()) {
    std::fprintf(stderr, "stanzad: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  stanzad::SetLogLevel(options->log_level);
  // Past the open files limit, connections would wait unaccepted: raise it (as far as the
  // hard limit allows) before any is opened, and say so when even that falls short.
  const uint64_t open_files_needed = stanzad::server::OpenFilesNeeded(*options);
  uint64_t open_files = 0;
  if (absl::Status files = stanzad::server::RaiseOpenFilesLimit(
          open_files_needed, stanzad::server::OpenFilesWanted(*options), &open_files);
      !files.ok()) {
    stanzad::LogEvent(stanzad::LogLevel::kError, "open_files_limit_too_low",
                      "limit=" + std::to_string(open_files) +
                          " needed=" + std::to_string(open_files_needed) +
                          " reason=" + stanzad::LogQuote(std::string(files.message())));
  }
  absl::StatusOr<stanzad::NodeConfig> config = stanzad::server::LoadOrSeedNodeConfig(*options);
  if (!config.ok()) {
    std::fprintf(stderr, "stanzad: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  struct sigaction action {};
  action.sa_handler = stanzad::OnSignal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return stanzad::RunNode(*options, std::move(*config));
}
