// stanzactl: the operator's command line for a local stanzad, modelled on
// Cisco Meeting Server's `xmpp ...` commands. It sends the command words to the
// daemon over the admin socket in the state dir and prints the answer; the
// daemon does the work, so every node speaks the same language.
//
//   stanzactl --state_dir=/var/lib/stanzad callbridge add cb1
//   STANZAD_STATE_DIR=/var/lib/stanzad stanzactl xmpp callbridge list --json
//
// Exit status: 0 success; 1 the command failed (the message says why); 2 usage
// error; 3 the daemon could not be reached.
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "cmd/admin/admin_socket.h"
#include "cmd/dns_doctor.h"
#include "cmd/pki_commands.h"

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
    "  cluster enable | disable    open or close this node's cluster port\n"
    "  cluster initialize          make a one-node cluster the others join\n"
    "  cluster join HOST[:PORT]    join the cluster through any member\n"
    "  cluster remove NODE         take a member out (its address or node id)\n"
    "  cluster status              state, peers and leader, in the seed's layout\n"
    "  cluster trust BUNDLE        the cluster's trust bundle: with certs set, every\n"
    "                              cluster link is mutual TLS against it\n"
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

// Reads the secret for `callbridge add-secret`: prompted without echo on a
// terminal, otherwise the first line of standard input.
bool ReadSecret(std::string* secret) {
  const bool terminal = isatty(STDIN_FILENO) == 1;
  termios saved{};
  if (terminal) {
    std::fprintf(stderr, "Enter callbridge secret\n");
    tcgetattr(STDIN_FILENO, &saved);
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  const bool got = static_cast<bool>(std::getline(std::cin, *secret));
  if (terminal) {
    tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    std::fprintf(stderr, "\n");
  }
  while (!secret->empty() && (secret->back() == '\r' || secret->back() == ' ')) {
    secret->pop_back();
  }
  return got;
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
  // "listeners":["127.0.0.1:5223 (call bridges)"]
  const std::string& json = status->output;
  const size_t listeners = json.find("\"listeners\":[\"");
  if (listeners != std::string::npos) {
    const size_t paren = json.find(" (call bridges)", listeners);
    const size_t colon = json.rfind(':', paren);
    if (paren != std::string::npos && colon != std::string::npos && colon > listeners) {
      facts.component_port = static_cast<uint16_t>(std::atoi(json.c_str() + colon + 1));
    }
  }
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
    } else if (arg.starts_with("--") && arg != "--force") {
      std::fprintf(stderr, "stanzactl: unknown option %s (see stanzactl --help)\n", arg.c_str());
      return 2;
    } else {
      request.args.push_back(arg);
    }
  }
  if (!request.args.empty() && request.args.front() == "xmpp") {
    request.args.erase(request.args.begin());
  }
  if (request.args.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (request.args[0] == "certs") {
    // The daemon reads the files: it gets absolute paths.
    for (size_t i = 1; i < request.args.size(); ++i) {
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
