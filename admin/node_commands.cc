#include "admin/node_commands.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <set>
#include <type_traits>
#include <utility>
#include <variant>

#include "core/base/concat.h"
#include "core/base/decimal.h"
#include "core/config/config.h"
#include "core/jid/jid.h"
#include "core/sasl/credentials.h"
#include "core/sasl/scram.h"

namespace stanzad {
namespace {

using admin::AdminRequest;
using admin::AdminResponse;

CommandResult Ok(std::string output, std::optional<NodeChange> change = std::nullopt) {
  const bool changed = change.has_value();
  return {AdminResponse{0, std::move(output)}, changed, std::move(change)};
}
CommandResult Fail(std::string message) {
  return {AdminResponse{1, Concat("error: ", message, "\n")}, false, std::nullopt};
}
CommandResult Usage(std::string message) {
  return {AdminResponse{2, Concat("usage: ", message, "\n")}, false, std::nullopt};
}

// The change a command makes when `changes` (a command that sets what is already set
// changes nothing), for Ok. Commands only read the configuration: the caller applies the
// change (a copy per command would cost the whole configuration).
std::optional<NodeChange> Made(NodeChange change, bool changes = true) {
  if (!changes) return std::nullopt;
  return change;
}

std::string Count(uint64_t value) { return std::to_string(value); }
// "1 call bridge", "2 call bridges".
std::string CountOf(uint64_t value, std::string_view thing) {
  return Concat(Count(value), " ", thing, value == 1 ? "" : "s");
}

// As the seed's status page: "1 day, 17 hours, 41 minutes", "24 minutes, 26 seconds".
std::string Uptime(uint64_t seconds) {
  const uint64_t values[] = {seconds / 86400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60};
  const char* units[] = {"day", "hour", "minute", "second"};
  int first = 0;
  while (first < 3 && values[first] == 0) ++first;
  std::string out;
  for (int i = first; i < std::min(first + 3, 4); ++i) {
    if (!out.empty()) out += ", ";
    out += std::to_string(values[i]) + " " + units[i] + (values[i] == 1 ? "" : "s");
  }
  return out;
}

std::string JsonList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out.append(",");
    out.append(JsonString(items[i]));
  }
  return out + "]";
}

// Splits the words after the command into positional arguments and --flags.
struct Words {
  std::vector<std::string> positional;
  bool force = false;
  std::string secret;
  std::optional<std::string> after;  // --after=NAME: a page of a bulk list
  std::optional<size_t> limit;       // --limit=N
  std::string unknown_flag;
};

// `payload_last`: the last word is data (an import batch's LINES), whatever it starts with.
Words SplitWords(const AdminRequest& request, size_t skip, bool payload_last = false) {
  Words words;
  for (size_t i = skip; i < request.args.size(); ++i) {
    const std::string& word = request.args[i];
    if (payload_last && i + 1 == request.args.size()) {
      words.positional.push_back(word);
      continue;
    }
    if (word == "--force") {
      words.force = true;
    } else if (word.starts_with("--secret=")) {
      words.secret = word.substr(9);
    } else if (word.starts_with("--after=")) {
      words.after = word.substr(8);
    } else if (word.starts_with("--limit=")) {
      const std::optional<size_t> limit = ParseDecimal<size_t>(std::string_view(word).substr(8));
      if (!limit || *limit == 0 || *limit > kPageItemsMax) {
        words.unknown_flag = word;
      } else {
        words.limit = limit;
      }
    } else if (word.starts_with("--")) {
      words.unknown_flag = word.substr(0, 64);  // echoed in the usage line: never long
    } else {
      words.positional.push_back(word);
    }
  }
  return words;
}

std::string CallbridgeBlock(const std::string& name, const std::string& secret,
                            const NodeConfig& config) {
  return Concat("***\nCallbridge : ", name, "\nDomain     : ", config.domain,
                "\nSecret     : ", secret, "\n");
}

std::string CallbridgeJson(const std::string& name, const std::string& secret,
                           const NodeConfig& config) {
  return Concat("{\"name\":", JsonString(name), ",\"domain\":", JsonString(config.domain),
                ",\"component\":", JsonString(Concat(name, ".", config.domain)),
                ",\"secret\":", JsonString(secret), "}");
}

// A page of a bulk list or export (node_commands.h): "page TOTAL [LAST]" and the
// items after `after`, each shown by `show`; `commas` separates them with commas (JSON).
template <typename Map, typename Show>
CommandResult Page(const Map& items, const std::string& after, size_t limit, Show show,
                   bool commas) {
  std::string body;
  auto it = after.empty() ? items.begin() : items.upper_bound(after);
  std::string last;
  for (size_t n = 0; n < limit && it != items.end(); ++n, ++it) {
    if (commas && n > 0) body.push_back(',');
    body.append(show(*it));
    last = it->first;
  }
  const std::string head = it == items.end()
                               ? Concat("page ", Count(items.size()), "\n")
                               : Concat("page ", Count(items.size()), " ", last, "\n");
  return Ok(head + body + (commas && !body.empty() ? "\n" : ""));
}

// "imported ADDED REPLACED SAME": the import-batch answer.
std::string Imported(size_t added, size_t replaced, size_t same) {
  return Concat("imported ", Count(added), " ", Count(replaced), " ", Count(same), "\n");
}

// A line of a batch refused: "error: item K: WHY".
CommandResult ItemFailed(size_t index, std::string_view why) {
  return Fail(Concat("item ", Count(index + 1), ": ", why));
}

// Splits LINES into "NAME REST" pairs (REST may hold spaces); an empty line is refused.
std::vector<std::pair<std::string_view, std::string_view>> BatchLines(std::string_view lines) {
  std::vector<std::pair<std::string_view, std::string_view>> out;
  while (!lines.empty()) {
    const size_t end = lines.find('\n');
    const std::string_view line = lines.substr(0, end);
    lines = end == std::string_view::npos ? std::string_view() : lines.substr(end + 1);
    const size_t space = line.find(' ');
    out.emplace_back(line.substr(0, space),
                     space == std::string_view::npos ? std::string_view() : line.substr(space + 1));
  }
  return out;
}

// `callbridge import-batch`: decided against this node's configuration, as the cluster's
// state machine decides it again (cluster::ImportCallbridges).
CommandResult ImportCallbridgeBatch(std::string_view lines, bool force, const NodeConfig& config) {
  const auto pairs = BatchLines(lines);
  if (pairs.empty() || pairs.size() > cluster::kImportBatchItemsMax) {
    return Fail("an import batch holds 1 to 10000 call bridges");
  }
  cluster::ImportCallbridges batch;
  batch.bridges.reserve(pairs.size());
  std::set<std::string_view> names;
  size_t added = 0, replaced = 0, same = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto [name, secret] = pairs[i];
    if (absl::Status valid = ValidateCallbridgeName(name); !valid.ok()) {
      return ItemFailed(i, std::string(valid.message()));
    }
    if (absl::Status valid = ValidateSecret(secret); !valid.ok()) {
      return ItemFailed(i, Concat("call bridge ", name, ": ", std::string(valid.message())));
    }
    if (!names.insert(name).second) {
      return ItemFailed(i, Concat("call bridge ", name, " appears twice in the batch"));
    }
    auto it = config.callbridges.find(std::string(name));
    if (it == config.callbridges.end()) {
      if (config.callbridges.size() + ++added > config::kCallbridgesMax) {
        return ItemFailed(i, Concat("cannot add call bridge ", name,
                                    ": the node already has 100000, the most it holds"));
      }
      if (name.size() + 1 + config.domain.size() > config::kDomainBytesMax) {
        return ItemFailed(i, Concat("call bridge address ", name, ".", config.domain,
                                    " would be longer than 253 bytes"));
      }
    } else if (it->second == secret) {
      ++same;
    } else if (!force) {
      return ItemFailed(i, Concat("call bridge ", name,
                                  " already has a different secret; use --force to replace it"));
    } else {
      ++replaced;
    }
    batch.bridges.push_back({std::string(name), std::string(secret), force});
  }

  return Ok(Imported(added, replaced, same), Made(std::move(batch), added + replaced > 0));
}

// `user import-batch`, as ImportCallbridgeBatch (cluster::ImportUsers).
CommandResult ImportUserBatch(std::string_view lines, bool replace, const NodeConfig& config) {
  const auto pairs = BatchLines(lines);
  if (pairs.empty() || pairs.size() > cluster::kImportBatchItemsMax) {
    return Fail("an import batch holds 1 to 10000 users");
  }
  cluster::ImportUsers batch;
  batch.replace = replace;
  batch.users.reserve(pairs.size());
  std::set<std::string_view> names;
  size_t added = 0, replaced = 0, same = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto [name, text] = pairs[i];
    if (absl::Status valid = config::ValidateUserName(name); !valid.ok()) {
      return ItemFailed(i, std::string(valid.message()));
    }
    absl::StatusOr<config::UserCredentials> credentials = sasl::ParseUserCredentials(text);
    if (!credentials.ok()) {
      return ItemFailed(i,
                        Concat("user ", name, ": ", std::string(credentials.status().message())));
    }
    if (!names.insert(name).second) {
      return ItemFailed(i, Concat("user ", name, " appears twice in the batch"));
    }
    auto it = config.users.find(std::string(name));
    if (it == config.users.end()) {
      if (config.users.size() + ++added > config::kUsersMax) {
        return ItemFailed(i, Concat("cannot add user ", name,
                                    ": the node already has 1000000, the most it holds"));
      }
    } else if (it->second == *credentials) {
      ++same;
    } else if (!replace) {
      return ItemFailed(i, Concat("user ", name,
                                  " already exists with another password; use --force to "
                                  "replace it"));
    } else {
      ++replaced;
    }
    batch.users.push_back({std::string(name), *std::move(credentials)});
  }

  return Ok(Imported(added, replaced, same), Made(std::move(batch), added + replaced > 0));
}

CommandResult Status(const AdminRequest& request, const NodeConfig& config,
                     const NodeRuntimeStatus& status) {
  const std::string state = !config.enabled ? "disabled"
                            : status.serving
                                ? "enabled, serving"
                                : Concat("enabled, not serving: ", status.not_serving_reason);
  if (request.json) {
    return Ok(Concat(
        "{\"state\":", JsonString(config.enabled ? "enabled" : "disabled"),
        ",\"serving\":", status.serving ? "true" : "false",
        ",\"not_serving_reason\":", JsonString(status.not_serving_reason),
        ",\"version\":", JsonString(status.version), ",\"uptime_s\":", Count(status.uptime_s),
        ",\"domain\":", JsonString(config.domain), ",\"listeners\":", JsonList(status.listeners),
        ",\"callbridges_configured\":", Count(config.callbridges.size()),
        ",\"callbridges_connected\":", Count(status.bridges_connected), ",\"users_configured\":",
        Count(config.users.size()), ",\"connections_open\":", Count(status.connections_open),
        ",\"stanzas_routed\":", Count(status.stanzas_routed), ",\"stanzas_answered\":",
        Count(status.stanzas_answered), ",\"stanzas_bounced\":", Count(status.stanzas_bounced),
        ",\"auth_failures\":", Count(status.auth_failures), ",\"stream_errors\":",
        Count(status.stream_errors), ",\"clients_connected\":", Count(status.clients_connected),
        ",\"tls_refused_reason\":", JsonString(status.tls_refused_reason),
        ",\"cluster\":", JsonString(status.cluster),
        ",\"recent_problems\":", JsonList(status.recent_problems), "}\n"));
  }
  std::string listeners;
  for (const std::string& listener : status.listeners) {
    listeners.append(listeners.empty() ? "" : ", ").append(listener);
  }
  std::string problems;
  for (const std::string& line : status.recent_problems) problems.append("  ").append(line) += '\n';
  return Ok(Concat(
      "XMPP state    : ", state, "\nBuild version : ", status.version,
      "\nUptime        : ", Uptime(status.uptime_s),
      "\nDomain        : ", config.domain.empty() ? "(not set)" : config.domain,
      "\nListening on  : ", listeners.empty() ? "(nothing)" : listeners, "\nCall bridges  : ",
      Count(config.callbridges.size()), " configured, ", Count(status.bridges_connected),
      " connected", "\nUsers         : ", Count(config.users.size()), " configured",
      "\nClients       : ", Count(status.clients_connected), " connected",
      status.tls_refused_reason.empty()
          ? std::string()
          : Concat("; refused until a certificate is set with stanzactl certs KEY CERT "
                   "[BUNDLE] (",
                   status.tls_refused_reason, ")"),
      "\nCluster       : ", status.cluster, "\nConnections   : ", Count(status.connections_open),
      " open", "\nStanzas       : ", Count(status.stanzas_routed), " routed, ",
      Count(status.stanzas_answered), " answered by the server, ", Count(status.stanzas_bounced),
      " bounced with an error", "\nProblems      : ", Count(status.auth_failures),
      " failed handshakes, ", Count(status.stream_errors), " streams closed with an error\n",
      "Recent errors and warnings:", problems.empty() ? std::string(" none\n") : "\n" + problems));
}

CommandResult Callbridge(const AdminRequest& request, const NodeConfig* config) {
  if (request.args.size() < 2) {
    return Usage("callbridge add NAME | add-secret NAME | del NAME | list");
  }
  const std::string& verb = request.args[1];
  const Words words = SplitWords(request, 2, verb == "import-batch");
  if (!words.unknown_flag.empty()) return Usage(Concat("unknown option ", words.unknown_flag));
  if ((verb == "list" || verb == "export") && words.limit) {
    return Page(
        config->callbridges, words.after.value_or(""), *words.limit,
        [&](const auto& entry) {
          const auto& [name, secret] = entry;
          if (verb == "export") return Concat(name, " ", secret, "\n");
          return request.json ? CallbridgeJson(name, secret, *config)
                              : CallbridgeBlock(name, secret, *config);
        },
        request.json && verb == "list");
  }
  if (verb == "import-batch") {
    if (config->domain.empty())
      return Fail("set the XMPP domain first: stanzactl domain example.com");
    if (words.positional.size() != 1 || !words.secret.empty()) {
      return Usage("callbridge import-batch [--force] LINES");
    }
    return ImportCallbridgeBatch(words.positional[0], words.force, *config);
  }
  if (verb == "list") {
    if (request.json) {
      std::string out = "[";
      for (const auto& [name, secret] : config->callbridges) {
        if (out.size() > 1) out.append(",");
        out.append(CallbridgeJson(name, secret, *config));
      }
      return Ok(out + "]\n");
    }
    if (config->callbridges.empty()) {
      return Ok("No call bridges configured. Add one with: stanzactl callbridge add NAME\n");
    }
    std::string out;
    for (const auto& [name, secret] : config->callbridges)
      out.append(CallbridgeBlock(name, secret, *config));
    return Ok(out);
  }
  if (words.positional.size() != 1) return Usage(Concat("callbridge ", verb, " NAME"));
  const std::string& name = words.positional[0];
  if (absl::Status valid = ValidateCallbridgeName(name); !valid.ok()) {
    return Fail(std::string(valid.message()));
  }
  if (config->domain.empty() && (verb == "add" || verb == "add-secret")) {
    return Fail("set the XMPP domain first: stanzactl domain example.com");
  }
  if ((verb == "add" || verb == "add-secret") &&
      name.size() + 1 + config->domain.size() > config::kDomainBytesMax) {
    return Fail(Concat("call bridge address ", name, ".", config->domain,
                       " would be longer than 253 bytes; use a shorter name"));
  }
  // What the bridge is once the command is done.
  const auto show = [&](const std::string& secret) {
    return request.json ? CallbridgeJson(name, secret, *config) + "\n"
                        : CallbridgeBlock(name, secret, *config);
  };
  if (verb == "add") {
    if (config->callbridges.contains(name)) {
      return Fail(
          Concat("call bridge ", name,
                 " already exists; its secret is unchanged (see: stanzactl callbridge list)"));
    }
    const std::string secret = GenerateCallbridgeSecret();
    return Ok(show(secret), Made(cluster::AddCallbridge{name, secret, words.force}));
  }
  if (verb == "add-secret") {
    if (absl::Status valid = ValidateSecret(words.secret); !valid.ok()) {
      return Fail(std::string(valid.message()));
    }
    auto it = config->callbridges.find(name);
    if (it != config->callbridges.end()) {
      if (it->second == words.secret) {  // the same secret: nothing to do, and it says so
        return Ok(request.json ? show(it->second)
                               : Concat("Call bridge ", name,
                                        ": secret unchanged (it is the one "
                                        "configured)\n"));
      }
      if (!words.force) {
        return Fail(Concat("call bridge ", name,
                           " already has a different secret; bridges using the old one will be "
                           "refused. Use --force to replace it"));
      }
    }
    return Ok(show(words.secret), Made(cluster::AddCallbridge{name, words.secret, words.force}));
  }
  if (verb == "del") {
    if (!config->callbridges.contains(name)) {
      return Fail(Concat("no call bridge named ", name, " (see: stanzactl callbridge list)"));
    }
    return Ok(Concat("Call bridge ", name, " removed; its connection, if any, is closed\n"),
              Made(cluster::DeleteCallbridge{name}));
  }
  return Usage("callbridge add NAME | add-secret NAME | del NAME | list");
}

// `user list` stops adding users past this many bytes of output, well under the admin
// channel's 16 MiB response limit (a million users with long names would not fit).
constexpr size_t kUserListBytesMax = 8 << 20;

constexpr char kUserUsage[] =
    "user add NAME CREDENTIALS | passwd NAME CREDENTIALS | del NAME | list "
    "(stanzactl derives CREDENTIALS from a password)";

// The canonical localpart of the user the operator named: "alice" or
// "alice@DOMAIN", DOMAIN being the node's domain (any case).
absl::StatusOr<std::string> UserLocalpart(std::string_view typed, const NodeConfig& config) {
  if (config.domain.empty()) {
    return absl::FailedPreconditionError(
        "set the domain first (stanzactl domain example.com): a user is NAME@DOMAIN");
  }
  const bool has_domain = typed.find('@') != std::string_view::npos;
  absl::StatusOr<jid::Jid> address =
      jid::Jid::Parse(has_domain ? std::string(typed) : Concat(typed, "@", config.domain));
  if (!address.ok()) {
    return absl::InvalidArgumentError(
        Concat("'", typed, "' is not a valid user address (NAME or NAME@", config.domain,
               "): ", std::string(address.status().message())));
  }
  if (!address->has_localpart() || !address->IsBare()) {
    return absl::InvalidArgumentError(
        Concat("'", typed, "' is not a user address: use NAME or NAME@", config.domain));
  }
  // Compared as JID domainparts, so that case and IDNA forms do not matter.
  absl::StatusOr<jid::Jid> domain = jid::Jid::Parse(config.domain);
  if (!domain.ok() || address->domainpart() != domain->domainpart()) {
    return absl::InvalidArgumentError(Concat("'", typed, "' is not in this node's domain ",
                                             config.domain, ": use NAME or NAME@", config.domain));
  }
  std::string localpart(address->localpart());
  if (absl::Status valid = config::ValidateUserName(localpart); !valid.ok()) return valid;
  return localpart;
}

std::vector<std::string> MechanismNames(const config::UserCredentials& credentials) {
  std::vector<std::string> names;
  if (credentials.scram_sha1) {
    names.emplace_back(sasl::ScramMechanismName(sasl::ScramMechanism::kSha1));
  }
  if (credentials.scram_sha256) {
    names.emplace_back(sasl::ScramMechanismName(sasl::ScramMechanism::kSha256));
  }
  return names;
}

std::string Joined(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const std::string& item : items) out.append(out.empty() ? "" : separator).append(item);
  return out;
}

std::string UserJson(const std::string& name, const config::UserCredentials& credentials,
                     const NodeConfig& config) {
  return Concat("{\"jid\":", JsonString(Concat(name, "@", config.domain)),
                ",\"name\":", JsonString(name),
                ",\"mechanisms\":", JsonList(MechanismNames(credentials)), "}");
}

CommandResult UserList(const AdminRequest& request, const NodeConfig& config) {
  const std::string total = Count(config.users.size());
  std::string out;
  size_t shown = 0;
  for (const auto& [name, credentials] : config.users) {
    if (out.size() >= kUserListBytesMax) break;
    if (request.json) {
      out.append(out.empty() ? "" : ",").append(UserJson(name, credentials, config));
    } else {
      out.append(
          Concat(name, "@", config.domain, " ", Joined(MechanismNames(credentials), " "), "\n"));
    }
    ++shown;
  }
  if (request.json) return Ok(Concat("{\"total\":", total, ",\"users\":[", out, "]}\n"));
  if (config.users.empty()) {
    return Ok("No users. Add one with: stanzactl user add NAME (it asks for the password)\n");
  }
  if (shown < config.users.size()) {
    out.append(Concat("… and ", Count(config.users.size() - shown), " more (", total,
                      " users; the list is cut at 8 MiB)\n"));
  }
  return Ok(out);
}

CommandResult User(const AdminRequest& request, const NodeConfig* config) {
  if (request.args.size() < 2) return Usage(kUserUsage);
  const std::string& verb = request.args[1];
  const bool bulk = verb == "list" || verb == "export" || verb == "import-batch";
  // No other user command takes an option (stanzactl keeps --iterations to itself).
  for (size_t i = 2; i < request.args.size() && !bulk; ++i) {
    if (request.args[i].starts_with("--")) return Usage(Concat("unknown option ", request.args[i]));
  }
  const Words words = SplitWords(request, 2, verb == "import-batch");
  if (!words.unknown_flag.empty() || !words.secret.empty()) {
    return Usage(Concat("unknown option ", words.unknown_flag));
  }
  if ((verb == "list" || verb == "export") && words.limit) {
    return Page(
        config->users, words.after.value_or(""), *words.limit,
        [&](const auto& entry) {
          const auto& [name, credentials] = entry;
          if (verb == "export")
            return Concat(name, " ", sasl::EncodeUserCredentials(credentials), "\n");
          return request.json ? UserJson(name, credentials, *config)
                              : Concat(name, "@", config->domain, " ",
                                       Joined(MechanismNames(credentials), " "), "\n");
        },
        request.json && verb == "list");
  }
  if (verb == "import-batch") {
    if (config->domain.empty()) {
      return Fail("set the domain first (stanzactl domain example.com): a user is NAME@DOMAIN");
    }
    if (words.positional.size() != 1) return Usage("user import-batch [--force] LINES");
    return ImportUserBatch(words.positional[0], words.force, *config);
  }
  if (verb == "list") {
    if (!words.positional.empty()) return Usage("user list");
    return UserList(request, *config);
  }
  if (verb != "add" && verb != "passwd" && verb != "del") return Usage(kUserUsage);
  const bool takes_credentials = verb != "del";
  if (words.positional.empty() ||
      (takes_credentials ? words.positional.size() < 2 : words.positional.size() != 1)) {
    return Usage(takes_credentials ? Concat("user ", verb, " NAME CREDENTIALS") : "user del NAME");
  }
  absl::StatusOr<std::string> name = UserLocalpart(words.positional[0], *config);
  if (!name.ok()) return Fail(std::string(name.status().message()));
  const std::string address = Concat(*name, "@", config->domain);
  const auto existing = config->users.find(*name);
  if (verb == "del") {
    if (existing == config->users.end()) {
      return Fail(Concat("no user ", address, " (see: stanzactl user list)"));
    }
    return Ok(Concat("User ", address, " removed\n"), Made(cluster::DeleteUser{*name}));
  }
  // The text holds a space between its two mechanisms: words after NAME are rejoined.
  const std::vector<std::string> pieces(words.positional.begin() + 1, words.positional.end());
  absl::StatusOr<config::UserCredentials> credentials =
      sasl::ParseUserCredentials(Joined(pieces, " "));
  if (!credentials.ok()) {
    return Fail(Concat("bad credentials text (", std::string(credentials.status().message()),
                       "); let stanzactl make it: stanzactl user ", verb, " ", address));
  }
  const std::string mechanisms = Joined(MechanismNames(*credentials), ", ");
  if (verb == "add") {
    if (existing != config->users.end()) {
      return Fail(Concat("user ", address,
                         " already exists; to change the password use: stanzactl user passwd ",
                         address));
    }
    if (config->users.size() >= config::kUsersMax) {
      return Fail(Concat("there are already ", Count(config::kUsersMax),
                         " users, the most a node holds; delete one first (stanzactl user del)"));
    }
    return Ok(Concat("User ", address, " added (", mechanisms, ")\n"),
              Made(cluster::AddUser{*name, *std::move(credentials)}));
  }
  if (existing == config->users.end()) {
    return Fail(Concat("no user ", address, "; add it with: stanzactl user add ", address));
  }
  const bool changed = !(existing->second == *credentials);
  return Ok(Concat("Password of ", address, " changed (", mechanisms, ")\n"),
            Made(cluster::SetUserCredentials{*name, *std::move(credentials)}, changed));
}

}  // namespace

void ApplyNodeChange(const NodeChange& change, NodeConfig* config) {
  struct Apply {
    NodeConfig* config;
    void operator()(const cluster::SetDomain& c) const { config->domain = c.domain; }
    void operator()(const cluster::SetListen& c) const { config->listen = c.addresses; }
    void operator()(const SetEnabled& c) const { config->enabled = c.enabled; }
    void operator()(const cluster::AddCallbridge& c) const {
      config->callbridges[c.name] = c.secret;
    }
    void operator()(const cluster::DeleteCallbridge& c) const { config->callbridges.erase(c.name); }
    void operator()(const cluster::AddUser& c) const {
      config->users.emplace(c.name, c.credentials);
    }
    void operator()(const cluster::SetUserCredentials& c) const {
      config->users[c.name] = c.credentials;
    }
    void operator()(const cluster::DeleteUser& c) const { config->users.erase(c.name); }
    void operator()(const ResetConfig&) const { *config = NodeConfig(); }
    void operator()(const cluster::ImportCallbridges& c) const {
      for (const cluster::AddCallbridge& bridge : c.bridges) (*this)(bridge);
    }
    void operator()(const cluster::ImportUsers& c) const {
      for (const cluster::AddUser& user : c.users) config->users[user.name] = user.credentials;
    }
  };
  std::visit(Apply{config}, change);
}

namespace {

// Appends the journal records of one change; false for a kind that has none.
struct EditsOf {
  using Kind = NodeConfigEdit::Kind;
  std::vector<NodeConfigEdit>* edits;

  bool operator()(const cluster::AddCallbridge& c) const {
    edits->push_back({Kind::kSetCallbridge, c.name, c.secret, {}});
    return true;
  }
  bool operator()(const cluster::DeleteCallbridge& c) const {
    edits->push_back({Kind::kDeleteCallbridge, c.name, "", {}});
    return true;
  }
  bool operator()(const cluster::AddUser& c) const {
    edits->push_back({Kind::kSetUser, c.name, "", c.credentials});
    return true;
  }
  bool operator()(const cluster::SetUserCredentials& c) const {
    edits->push_back({Kind::kSetUser, c.name, "", c.credentials});
    return true;
  }
  bool operator()(const cluster::DeleteUser& c) const {
    edits->push_back({Kind::kDeleteUser, c.name, "", {}});
    return true;
  }
  bool operator()(const cluster::ImportCallbridges& c) const {
    for (const cluster::AddCallbridge& bridge : c.bridges) (*this)(bridge);
    return true;
  }
  bool operator()(const cluster::ImportUsers& c) const {
    for (const cluster::AddUser& user : c.users) (*this)(user);
    return true;
  }
  bool operator()(const auto&) const { return false; }
};

}  // namespace

bool JournalEdits(const NodeChange& change, std::vector<NodeConfigEdit>* edits) {
  return std::visit(EditsOf{edits}, change);
}

bool JournalEdits(const cluster::ConfigCommand& command, std::vector<NodeConfigEdit>* edits) {
  return std::visit(EditsOf{edits}, command);
}

std::optional<cluster::ConfigCommand> ReplicatedCommand(const NodeChange& change) {
  return std::visit(
      [](const auto& c) -> std::optional<cluster::ConfigCommand> {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, cluster::SetDomain> ||
                      std::is_same_v<T, cluster::AddCallbridge> ||
                      std::is_same_v<T, cluster::DeleteCallbridge> ||
                      std::is_same_v<T, cluster::AddUser> ||
                      std::is_same_v<T, cluster::SetUserCredentials> ||
                      std::is_same_v<T, cluster::DeleteUser> ||
                      std::is_same_v<T, cluster::ImportCallbridges> ||
                      std::is_same_v<T, cluster::ImportUsers>) {
          return cluster::ConfigCommand(c);
        } else {
          return std::nullopt;
        }
      },
      change);
}

std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
          out.append(escaped);
        } else {
          out.push_back(c);
        }
    }
  }
  return out + "\"";
}

CommandResult ExecuteNodeCommand(const AdminRequest& request, NodeConfig* config,
                                 const NodeRuntimeStatus& status) {
  CommandResult result = DecideNodeCommand(request, *config, status);
  if (result.change) ApplyNodeChange(*result.change, config);
  return result;
}

CommandResult DecideNodeCommand(const AdminRequest& request, const NodeConfig& current,
                                const NodeRuntimeStatus& status) {
  if (request.args.empty()) return Usage("stanzactl COMMAND (see stanzactl --help)");
  const std::string& command = request.args[0];
  const NodeConfig* config = &current;
  CommandResult result;
  if (command == "status") {
    return Status(request, *config, status);
  } else if (command == "callbridge") {
    result = Callbridge(request, config);
  } else if (command == "user") {
    result = User(request, config);
  } else if (command == "domain") {
    const Words words = SplitWords(request, 1);
    if (words.positional.empty()) {
      return Ok(request.json ? Concat("{\"domain\":", JsonString(config->domain), "}\n")
                             : Concat(config->domain.empty() ? "(not set)" : config->domain, "\n"));
    }
    if (words.positional.size() != 1) return Usage("domain [DOMAIN]");
    std::string domain = words.positional[0];
    for (char& c : domain) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (absl::Status valid = ValidateDomain(domain); !valid.ok()) {
      return Fail(std::string(valid.message()));
    }
    result = Ok(Concat("Domain set to ", domain, "\n"),
                Made(cluster::SetDomain{domain}, domain != config->domain));
  } else if (command == "listen") {
    const Words words = SplitWords(request, 1);
    if (words.positional.empty()) {
      return Ok(request.json ? Concat("{\"listen\":", JsonList(config->listen), "}\n")
                             : Concat(
                                   config->listen.empty() ? "(none)" : "",
                                   [&] {
                                     std::string all;
                                     for (const auto& a : config->listen) {
                                       all.append(all.empty() ? "" : " ").append(a);
                                     }
                                     return all;
                                   }(),
                                   "\n"));
    }
    for (const std::string& address : words.positional) {
      if (absl::Status valid = ValidateListenAddress(address); !valid.ok()) {
        return Fail(std::string(valid.message()));
      }
    }
    result = Ok("Listen addresses set\n",
                Made(cluster::SetListen{words.positional}, words.positional != config->listen));
  } else if (command == "enable" || command == "disable") {
    if (request.args.size() != 1) return Usage(command);
    const bool enabled = command == "enable";
    std::optional<NodeChange> change = Made(SetEnabled{enabled}, enabled != config->enabled);
    std::string note;
    if (enabled && config->domain.empty()) note = " (set a domain to start serving)";
    if (enabled && !config->domain.empty() && config->listen.empty()) {
      note = " (set listen addresses to start serving)";
    }
    result = Ok(Concat("XMPP ", enabled ? "enabled" : "disabled", note, "\n"), std::move(change));
  } else if (command == "reset") {
    const Words words = SplitWords(request, 1);
    if (!words.positional.empty()) return Usage("reset [--force]");
    if ((!config->callbridges.empty() || !config->users.empty()) && !words.force) {
      return Fail(Concat("reset forgets the domain, the listen addresses, ",
                         CountOf(config->callbridges.size(), "call bridge"),
                         " with their secrets and ", CountOf(config->users.size(), "user"),
                         "; run 'stanzactl reset --force' to do it"));
    }
    std::string forgotten;
    if (!config->tls_certificate.empty()) {
      forgotten += Concat("the certificate settings (", config->tls_key, ", ",
                          config->tls_certificate, "; the files stay on disk)");
    }
    if (!config->cluster_trust.empty()) {
      forgotten += Concat(forgotten.empty() ? "" : " and ", "the cluster trust bundle setting (",
                          config->cluster_trust, ")");
    }
    result = Ok(Concat("Configuration reset; XMPP disabled\n",
                       forgotten.empty() ? "" : Concat("Also forgotten: ", forgotten, "\n")),
                Made(ResetConfig{}, !(NodeConfig() == *config)));
  } else {
    return Usage(Concat("unknown command '", command, "' (see stanzactl --help)"));
  }
  return result;
}

}  // namespace stanzad
