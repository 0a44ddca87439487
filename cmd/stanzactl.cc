// stanzactl: the operator's command line for a local stanzad, modelled on
// Cisco Meeting Server's `xmpp ...` commands. It sends the command words to the
// daemon over the admin socket in the state dir and prints the answer; the
// daemon does the work, so every node speaks the same language.
//
//   stanzactl --state_dir=/var/lib/stanzad callbridge add cb1
//   stanzactl user add alice@example.com     # asks for the password; sends only keys
//   STANZAD_STATE_DIR=/var/lib/stanzad stanzactl xmpp callbridge list --json
//
// Exit status: 0 success; 1 the command failed (the message says why); 2 usage
// error; 3 the daemon could not be reached.
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "admin/admin_socket.h"
#include "admin/cluster_address.h"
#include "cmd/bulk_commands.h"
#include "cmd/dns_doctor.h"
#include "cmd/pki_commands.h"
#include "core/base/decimal.h"
#include "core/config/config.h"
#include "core/sasl/credentials.h"
#include "core/sasl/scram.h"

namespace {

constexpr char kUsage[] =
    "usage: stanzactl [--state_dir=DIR] [--json] [xmpp] COMMAND...\n"
    "\n"
    "Talks to the stanzad whose state dir is DIR (default: $STANZAD_STATE_DIR,\n"
    "else /var/lib/stanzad). The leading word 'xmpp' may be typed or left out.\n"
    "\n"
    "Commands:\n"
    "  status                      uptime, version, listeners, bridges, stanzas routed\n"
    "  domain [DOMAIN]             show or set the XMPP domain\n"
    "  listen [ADDRESS...]         show or set the listen addresses (IPv4 or IPv6)\n"
    "  enable | disable            start or stop serving XMPP on this node\n"
    "  reset [--force]             forget the whole configuration of this node\n"
    "  callbridge add NAME         add a call bridge with a generated secret\n"
    "  callbridge add-secret NAME [--force]\n"
    "                              add a call bridge with a secret you type (prompted\n"
    "                              without echo, or read from standard input)\n"
    "  callbridge del NAME         remove a call bridge and disconnect it\n"
    "  callbridge list             list call bridges, their domain and secret\n"
    "  callbridge import FILE [--force]\n"
    "                              add the call bridges of FILE: lines 'NAME SECRET', or\n"
    "                              the JSON lines of export --json; --force replaces the\n"
    "                              secret of a bridge that has another (sent in chunks,\n"
    "                              with progress; a bad line stops it, naming the line)\n"
    "  callbridge export [--json]  every call bridge as 'NAME SECRET' lines (or JSON)\n"
    "  user add NAME[@DOMAIN] [--iterations=N]\n"
    "                              add a client user; asks for the password twice (no\n"
    "                              echo) or reads it from standard input, and sends only\n"
    "                              SCRAM-SHA-1/-256 keys (4096 iterations, or N up to\n"
    "                              10000000)\n"
    "  user passwd NAME[@DOMAIN] [--iterations=N]\n"
    "                              set a user's password, as user add\n"
    "  user del NAME[@DOMAIN]      remove a user\n"
    "  user list                   users and their SASL mechanisms (no keys)\n"
    "  user import FILE [--force] [--iterations=N]\n"
    "                              add the users of FILE: XEP-0227 as Prosody and\n"
    "                              ejabberd export it (SCRAM keys kept, so old passwords\n"
    "                              work), or lines 'NAME PASSWORD' (hashed here on every\n"
    "                              core); --force replaces a user's credentials\n"
    "  user export                 the users as XEP-0227 (SCRAM keys; no passwords)\n"
    "  cluster enable | disable    open or close this node's cluster port\n"
    "  cluster initialize          make a one-node cluster the others join (it makes the\n"
    "                              cluster key and prints the first join command)\n"
    "  cluster token [--ttl=SECONDS]\n"
    "                              on a member: a single-use token that lets one node\n"
    "                              join (default: valid 3600 s)\n"
    "  cluster join HOST[:PORT] --token=TOKEN\n"
    "                              join the cluster through any member, with a token\n"
    "                              made there; the node gets the cluster key\n"
    "                              (--token=- reads it from stdin, out of the process list)\n"
    "  cluster remove NODE         take a member out (its address or node id)\n"
    "  cluster status              state, peers and leader, in the seed's layout\n"
    "  cluster trust BUNDLE        the cluster's trust bundle: with certs set, every\n"
    "                              cluster link is mutual TLS against it\n"
    "  cluster isolate IP... | off a drill: cut this node's cluster and data links to and\n"
    "                              from those hosts (a partition) until 'off' or a restart\n"
    "  certs [KEY CERT [BUNDLE]]   show, or check and set, this node's TLS key and\n"
    "                              certificate (must cover the domain; bundle: the chain)\n"
    "  doctor dns DOMAIN [--dns_server=IP[:PORT]]\n"
    "                              check the SRV, A and AAAA records bridges and clients\n"
    "                              use to find the cluster; each problem with its fix\n"
    "  pki csr NAME CN:NAME [subjectAltName:A,B] [O:ORG] [OU:UNIT]\n"
    "                              write NAME.key and NAME.csr (here; no daemon needed)\n"
    "  pki selfsigned NAME CN:NAME [subjectAltName:A,B] [days:N]\n"
    "                              write NAME.key and a self-signed NAME.crt (labs)\n"
    "  pki list                    keys and certificates here, with their names and expiry\n"
    "\n"
    "Options:\n"
    "  --state_dir=DIR             the daemon's state directory\n"
    "  --json                      machine-readable output\n"
    "  -h, --help                  this text\n";

// Reads one line: after `prompt` without echo on a terminal, otherwise the next
// line of standard input. A final '\r' is dropped.
bool ReadHidden(const char* prompt, std::string* line) {
  const bool terminal = isatty(STDIN_FILENO) == 1;
  termios saved{};
  if (terminal) {
    std::fprintf(stderr, "%s\n", prompt);
    tcgetattr(STDIN_FILENO, &saved);
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  const bool got = static_cast<bool>(std::getline(std::cin, *line));
  if (terminal) {
    tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    std::fprintf(stderr, "\n");
  }
  if (!line->empty() && line->back() == '\r') line->pop_back();
  return got;
}

// Reads the secret for `callbridge add-secret`: prompted without echo on a
// terminal, otherwise the first line of standard input.
bool ReadSecret(std::string* secret) {
  const bool got = ReadHidden("Enter callbridge secret", secret);
  while (!secret->empty() && secret->back() == ' ') secret->pop_back();
  return got;
}

// Overwrites `text` before it is freed (best effort: earlier copies in stdio's
// buffers or reallocated strings are out of reach).
void Wipe(std::string* text) {
  explicit_bzero(text->data(), text->size());
  text->clear();
}

// Reads the password for `user add` and `user passwd`: on a terminal asked twice
// without echo, and the two must match; otherwise the first line of standard
// input, as is (spaces are part of a password). Prints why and returns false if
// there is none.
bool ReadPassword(std::string* password) {
  // Room for any password typed, so getline does not leave copies behind in
  // buffers it outgrew.
  password->reserve(4096);
  if (!ReadHidden("Enter password", password) || password->empty()) {
    std::fprintf(stderr, "stanzactl: no password given (type it at the prompt or pipe it in)\n");
    return false;
  }
  if (isatty(STDIN_FILENO) != 1) return true;
  std::string again;
  again.reserve(4096);
  const bool same = ReadHidden("Confirm password", &again) && again == *password;
  Wipe(&again);
  if (!same) std::fprintf(stderr, "stanzactl: the passwords do not match; nothing changed\n");
  return same;
}

// Replaces the password the operator types for `user add|passwd NAME` with the
// credentials derived from it (args become {"user", VERB, NAME, CREDENTIALS}), so
// the password never leaves this process. Returns an exit status, or -1 on success.
int DeriveUserCredentials(uint32_t iterations, std::vector<std::string>* args) {
  if (args->size() != 3) {
    std::fprintf(stderr, "usage: stanzactl user %s NAME[@DOMAIN] [--iterations=N]\n",
                 (*args)[1].c_str());
    return 2;
  }
  std::string password;
  if (!ReadPassword(&password)) {
    Wipe(&password);
    return 2;
  }
  absl::StatusOr<stanzad::config::UserCredentials> credentials =
      stanzad::CredentialsFromPassword(password, iterations);
  Wipe(&password);
  if (!credentials.ok()) {
    std::fprintf(stderr, "stanzactl: %s\n", std::string(credentials.status().message()).c_str());
    return 1;
  }
  args->push_back(stanzad::sasl::EncodeUserCredentials(*credentials));
  return -1;
}

// "--iterations=N": a decimal in the range SCRAM credentials allow; 0 if not.
uint32_t ParseIterations(const std::string& text) {
  const std::optional<uint32_t> value =
      text.size() <= 8 ? stanzad::ParseDecimal<uint32_t>(text) : std::nullopt;
  if (!value || *value < stanzad::config::kScramIterationsMin ||
      *value > stanzad::config::kScramIterationsMax) {
    return 0;
  }
  return *value;
}

// `callbridge|user import|export|list` (cmd/bulk_commands.h).
int RunBulkCommand(const stanzad::admin::AdminRequest& request, uint32_t iterations,
                   const std::string& state_dir) {
  const std::string socket = stanzad::admin::AdminSocketPath(state_dir);
  stanzad::BulkIo io;
  io.send = [&socket](const stanzad::admin::AdminRequest& r) {
    return stanzad::admin::SendAdminRequest(socket, r);
  };
  const std::string& what = request.args[0];
  const std::string& verb = request.args[1];
  std::vector<std::string> words(request.args.begin() + 2, request.args.end());
  const bool force = std::erase(words, "--force") > 0;
  if (verb == "import") {
    if (words.size() != 1 || words[0].starts_with("--")) {
      std::fprintf(stderr, "usage: stanzactl %s import FILE [--force]%s\n", what.c_str(),
                   what == "user" ? " [--iterations=N]" : "");
      return 2;
    }
    return what == "user"
               ? stanzad::ImportUsers(
                     words[0], force,
                     iterations != 0 ? iterations : stanzad::sasl::kScramIterationsDefault, io)
               : stanzad::ImportCallbridges(words[0], force, io);
  }
  if (!words.empty() || force) {
    std::fprintf(stderr, "usage: stanzactl [--json] %s %s\n", what.c_str(), verb.c_str());
    return 2;
  }
  if (verb == "list") return stanzad::ListPaged(what, request.json, io);
  return what == "user" ? stanzad::ExportUsers(io) : stanzad::ExportCallbridges(request.json, io);
}

// The node's ports and the cluster's members, from the local daemon when it runs.
stanzad::NodeFacts AskNode(const std::string& state_dir, std::string* note) {
  stanzad::NodeFacts facts;
  const std::string socket = stanzad::admin::AdminSocketPath(state_dir);
  auto status = stanzad::admin::SendAdminRequest(socket, {{"status"}, true});
  if (!status.ok() || status->exit_code != 0) {
    *note = "note: no stanzad answers at " + socket +
            "; checking against the default ports and no cluster members\n";
    return facts;
  }
  facts = stanzad::NodeFactsFromStatusJson(status->output);
  auto cluster = stanzad::admin::SendAdminRequest(socket, {{"cluster", "status"}, true});
  if (cluster.ok() && cluster->exit_code == 0) {
    const std::string& text = cluster->output;
    for (size_t at = text.find("\"address\":\"", text.find("\"members\"")); at != std::string::npos;
         at = text.find("\"address\":\"", at + 1)) {
      const size_t start = at + 11;
      const size_t end = text.find('"', start);
      std::string address = text.substr(start, end - start);
      const size_t colon = address.rfind(':');
      std::string ip = address.substr(0, colon);
      if (!ip.empty() && ip.front() == '[') ip = ip.substr(1, ip.size() - 2);
      facts.member_ips.push_back(ip);
    }
  }
  return facts;
}

int DoctorDns(const std::string& state_dir, const std::string& domain,
              const std::string& dns_server) {
  std::string note;
  const stanzad::NodeFacts facts = AskNode(state_dir, &note);
  auto answers = stanzad::LookupXmppDns(domain, dns_server);
  if (!answers.ok()) {
    std::fprintf(stderr, "stanzactl: %s\n", std::string(answers.status().message()).c_str());
    return 1;
  }
  const stanzad::Diagnosis diagnosis = stanzad::Diagnose(domain, *answers, facts);
  std::fputs(note.c_str(), stdout);
  std::fputs(diagnosis.Text().c_str(), stdout);
  return diagnosis.problems.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string state_dir;
  if (const char* from_env = std::getenv("STANZAD_STATE_DIR")) state_dir = from_env;
  if (state_dir.empty()) state_dir = "/var/lib/stanzad";
  stanzad::admin::AdminRequest request;
  std::string dns_server;
  uint32_t iterations = 0;  // 0: not given
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help" || arg == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--json") {
      request.json = true;
    } else if (arg.starts_with("--state_dir=")) {
      state_dir = arg.substr(12);
    } else if (arg == "--state_dir" && i + 1 < argc) {
      state_dir = argv[++i];
    } else if (arg.starts_with("--dns_server=")) {
      dns_server = arg.substr(13);
    } else if (arg.starts_with("--iterations=")) {
      iterations = ParseIterations(arg.substr(13));
      if (iterations == 0) {
        std::fprintf(stderr, "stanzactl: --iterations must be a number from %u to %u\n",
                     stanzad::config::kScramIterationsMin, stanzad::config::kScramIterationsMax);
        return 2;
      }
    } else if (arg.starts_with("--") && arg != "--force" && !arg.starts_with("--token=") &&
               !arg.starts_with("--ttl=")) {
      std::fprintf(stderr, "stanzactl: unknown option %s (see stanzactl --help)\n", arg.c_str());
      return 2;
    } else {
      request.args.push_back(arg);
    }
  }
  if (!request.args.empty() && request.args.front() == "xmpp") {
    request.args.erase(request.args.begin());
  }
  // --token=- reads the join token from stdin, so that it is not in the process list.
  for (std::string& arg : request.args) {
    if (arg != "--token=-") continue;
    char line[256] = "";
    if (std::fgets(line, sizeof(line), stdin) == nullptr) {
      std::fputs("stanzactl: --token=-: no token on stdin\n", stderr);
      return 2;
    }
    std::string token(line);
    while (!token.empty() &&
           (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
      token.pop_back();
    }
    arg = "--token=" + token;
  }
  if (request.args.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  // `cluster join HOST` and `cluster remove HOST`: a name is resolved here, never by the
  // daemon (its control thread runs Raft: admin/cluster_address.h). A node id stays as it is.
  if (request.args.size() >= 3 && request.args[0] == "cluster" &&
      (request.args[1] == "join" || request.args[1] == "remove")) {
    for (size_t i = 2; i < request.args.size(); ++i) {
      std::string& host = request.args[i];
      if (host.starts_with("--")) continue;
      if (host.find_first_not_of("0123456789") == std::string::npos) break;  // a node id
      absl::StatusOr<std::string> resolved = stanzad::ResolveNameIn(host);
      if (!resolved.ok()) {
        std::fprintf(stderr, "stanzactl: %s\n", std::string(resolved.status().message()).c_str());
        return 1;
      }
      host = *resolved;
      break;
    }
  }
  // The daemon reads the files: it gets absolute paths (one rule for every command
  // that names a file: relative to where stanzactl runs).
  const bool trust =
      request.args.size() == 3 && request.args[0] == "cluster" && request.args[1] == "trust";
  if (request.args[0] == "certs" || trust) {
    for (size_t i = trust ? 2 : 1; i < request.args.size(); ++i) {
      char resolved[4096];
      if (realpath(request.args[i].c_str(), resolved) == nullptr) {
        std::fprintf(stderr, "stanzactl: cannot read %s: %s\n", request.args[i].c_str(),
                     std::strerror(errno));
        return 1;
      }
      request.args[i] = resolved;
    }
  }
  if (request.args[0] == "doctor") {
    if (request.args.size() != 3 || request.args[1] != "dns") {
      std::fputs("usage: stanzactl doctor dns DOMAIN [--dns_server=IP[:PORT]]\n", stderr);
      return 2;
    }
    return DoctorDns(state_dir, request.args[2], dns_server);
  }
  if (request.args[0] == "pki") {
    // Local: keys and certificates are made here, not by the daemon.
    char cwd[4096];
    const std::string dir = getcwd(cwd, sizeof(cwd)) != nullptr ? cwd : ".";
    const stanzad::PkiResult result = stanzad::RunPkiCommand(
        std::vector<std::string>(request.args.begin() + 1, request.args.end()), dir);
    std::fputs(result.output.c_str(), result.exit_code == 0 ? stdout : stderr);
    return result.exit_code;
  }
  const bool sets_password = request.args.size() >= 2 && request.args[0] == "user" &&
                             (request.args[1] == "add" || request.args[1] == "passwd");
  const bool bulk =
      request.args.size() >= 2 && (request.args[0] == "user" || request.args[0] == "callbridge") &&
      (request.args[1] == "import" || request.args[1] == "export" || request.args[1] == "list");
  if (iterations != 0 && !sets_password && !(bulk && request.args[1] == "import")) {
    std::fprintf(stderr,
                 "stanzactl: --iterations is for user add, user passwd and user import only\n");
    return 2;
  }
  if (bulk) {
    return RunBulkCommand(request, iterations, state_dir);
  }
  if (sets_password) {
    const int failed = DeriveUserCredentials(
        iterations != 0 ? iterations : stanzad::sasl::kScramIterationsDefault, &request.args);
    if (failed >= 0) return failed;
  }
  if (request.args.size() >= 3 && request.args[0] == "callbridge" &&
      request.args[1] == "add-secret") {
    std::string secret;
    if (!ReadSecret(&secret) || secret.empty()) {
      std::fprintf(stderr, "stanzactl: no secret given (type it at the prompt or pipe it in)\n");
      return 2;
    }
    request.args.push_back("--secret=" + secret);
  }
  absl::StatusOr<stanzad::admin::AdminResponse> response =
      stanzad::admin::SendAdminRequest(stanzad::admin::AdminSocketPath(state_dir), request);
  if (!response.ok()) {
    std::fprintf(stderr, "stanzactl: %s\n", std::string(response.status().message()).c_str());
    return 3;
  }
  std::FILE* out = response->exit_code == 0 ? stdout : stderr;
  std::fwrite(response->output.data(), 1, response->output.size(), out);
  return response->exit_code;
}
