#include "cmd/bulk_commands.h"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "admin/node_commands.h"
#include "admin/node_config.h"
#include "cluster/config_state_machine.h"
#include "core/base/concat.h"
#include "core/base/decimal.h"
#include "core/config/config.h"
#include "core/config/xep0227.h"
#include "core/jid/jid.h"
#include "core/sasl/credentials.h"

namespace stanzad {
namespace {

using Clock = std::chrono::steady_clock;

std::string MessageOf(const absl::Status& status) { return std::string(status.message()); }

std::string_view Trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r' ||
                           text.back() == '\n')) {
    text.remove_suffix(1);
  }
  return text;
}

// A file read once, front to back, as a pipe must be: its first bytes may be looked at
// before the rest is read, and lines are bounded.
class Input {
 public:
  explicit Input(std::istream& in) : buffer_(in.rdbuf()) {}

  // The first byte that is not whitespace or part of a byte order mark (0 at the end); the
  // bytes up to it stay to be read.
  char Peek() {
    for (size_t at = 0;; ++at) {
      if (at == head_.size()) {
        const int c = buffer_->sbumpc();
        if (c == EOF) return 0;
        head_.push_back(static_cast<char>(c));
      }
      const unsigned char c = static_cast<unsigned char>(head_[at]);
      if (c != ' ' && c != '\n' && c != '\r' && c != '\t' && c < 0x80) return head_[at];
    }
  }

  // Up to `n` bytes; 0 at the end.
  size_t Read(char* out, size_t n) {
    size_t got = std::min(n, head_.size() - at_);
    std::memcpy(out, head_.data() + at_, got);
    at_ += got;
    if (got < n)
      got += static_cast<size_t>(buffer_->sgetn(out + got, static_cast<std::streamsize>(n - got)));
    return got;
  }

  // The next line without its '\n' (false at the end). A line longer than `max` bytes is
  // cut there, the rest of it read and dropped, and *too_long set.
  bool ReadLine(std::string* line, size_t max, bool* too_long) {
    line->clear();
    *too_long = false;
    bool any = false;
    for (int c = Get(); c != EOF; c = Get()) {
      any = true;
      if (c == '\n') return true;
      if (line->size() < max) {
        line->push_back(static_cast<char>(c));
      } else {
        *too_long = true;
      }
    }
    return any;
  }

 private:
  int Get() {
    if (at_ < head_.size()) return static_cast<unsigned char>(head_[at_++]);
    return buffer_->sbumpc();
  }

  std::streambuf* buffer_;
  std::string head_;  // bytes Peek read, not yet consumed
  size_t at_ = 0;
};

// Longest line of an import file (a bridge line is under 330 bytes, a user's password at
// most 1 KiB): a longer one is an error naming it, not a process that grows until killed.
constexpr size_t kLineBytesMax = 64 << 10;

// Progress on `err`: a bar redrawn in place on a terminal, else a line every 5 s.
class Progress {
 public:
  Progress(BulkIo& io, std::string what, uint64_t total_bytes)
      : io_(io),
        what_(std::move(what)),
        total_bytes_(total_bytes),
        terminal_(isatty(fileno(io.err)) == 1) {}

  void Update(uint64_t bytes_done, uint64_t items) {
    if (!io_.progress) return;
    const Clock::time_point now = Clock::now();
    if (now - last_ < (terminal_ ? std::chrono::milliseconds(200) : std::chrono::seconds(5))) {
      return;
    }
    last_ = now;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const int percent =
        total_bytes_ == 0
            ? 100
            : static_cast<int>(std::min<uint64_t>(100, bytes_done * 100 / total_bytes_));
    const int filled = percent / 5;
    std::fprintf(io_.err, "%s[%s%s] %3d%%  %llu %s  %.0f/s%s", terminal_ ? "\r" : "",
                 std::string(static_cast<size_t>(filled), '#').c_str(),
                 std::string(static_cast<size_t>(20 - filled), '.').c_str(), percent,
                 static_cast<unsigned long long>(items), what_.c_str(),
                 seconds > 0 ? static_cast<double>(items) / seconds : 0.0, terminal_ ? "" : "\n");
    std::fflush(io_.err);
    drawn_ = true;
  }

  // Ends a bar drawn in place.
  void Done() {
    if (drawn_ && terminal_) std::fputc('\n', io_.err);
    drawn_ = false;
  }

  double Seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  BulkIo& io_;
  const std::string what_;
  const uint64_t total_bytes_;
  const bool terminal_;
  const Clock::time_point start_ = Clock::now();
  Clock::time_point last_ = start_;  // the first line once the import has run a while
  bool drawn_ = false;
};

// Where a line of an import came from, for its error.
struct Origin {
  std::string file;
  uint64_t line = 0;
};

std::string At(const Origin& origin) {
  return Concat(origin.file, ":", std::to_string(origin.line));
}

// Exit status 3 when the daemon cannot be reached, after saying so.
int Unreachable(BulkIo& io, const absl::Status& status) {
  std::fprintf(io.err, "stanzactl: %s\n", MessageOf(status).c_str());
  return 3;
}

// The cluster could not take a change for want of a leader, or lost its leader before the
// change committed (cluster/node/cluster_node.cc's words): worth sending again. A chunk sent
// again is the same bytes (passwords were hashed once), so one that did commit is a no-op.
bool NoLeader(std::string_view output) {
  return output.find("no leader") != std::string_view::npos ||
         output.find("no answer from") != std::string_view::npos ||
         output.find("the leader changed") != std::string_view::npos ||
         output.find("try again") != std::string_view::npos;
}

// One import's chunks, sent as `WHAT import-batch [--force] LINES` (node_commands.h).
class ChunkSender {
 public:
  ChunkSender(BulkIo& io, std::string what, bool force)
      : io_(io), what_(std::move(what)), force_(force) {}

  // Queues one line ("NAME REST", no newline). False (after printing why) when a chunk
  // sent on the way was refused or the daemon is unreachable: stop then, with status().
  bool Add(std::string line, Origin origin) {
    if (failed_) return false;
    if (!lines_.empty() &&
        (bytes_ + line.size() + 1 > kChunkBytes || lines_.size() >= kChunkLines)) {
      if (!Flush()) return false;
    }
    bytes_ += line.size() + 1;
    lines_.push_back(std::move(line));
    origins_.push_back(std::move(origin));
    return true;
  }
  size_t queued() const { return lines_.size(); }

  // Sends what is queued. False as Add.
  bool Flush() {
    if (failed_) return false;
    if (lines_.empty()) return true;
    const size_t refused = Send(lines_.size());
    if (refused == lines_.size()) {
      Clear();
      return true;
    }
    // Everything before the refused line is imported: its lines alone, once more.
    const std::string why = why_;
    const int status = status_;
    if (refused > 0 && Send(refused) != refused) {
      std::fprintf(io_.err, "stanzactl: %s: the lines before it were not imported either: %s\n",
                   At(origins_[refused]).c_str(), why_.c_str());
    }
    std::fprintf(io_.err, "stanzactl: %s: %s\n", At(origins_[refused]).c_str(), why.c_str());
    status_ = status;
    failed_ = true;
    Clear();
    return false;
  }

  uint64_t added() const { return added_; }
  uint64_t replaced() const { return replaced_; }
  uint64_t same() const { return same_; }
  uint64_t imported() const { return added_ + replaced_ + same_; }
  int status() const { return status_; }

 private:
  // Sends the first `count` lines; returns `count` when they were imported, else the index
  // of the line refused (why_ and status_ say why).
  size_t Send(size_t count) {
    std::string payload;
    payload.reserve(bytes_);
    for (size_t i = 0; i < count; ++i) payload.append(lines_[i]).push_back('\n');
    payload.pop_back();
    admin::AdminRequest request{{what_, "import-batch"}, false};
    if (force_) request.args.push_back("--force");
    request.args.push_back(std::move(payload));
    absl::StatusOr<admin::AdminResponse> response = io_.send(request);
    for (int retry = 0; retry < kChunkRetries && response.ok() && response->exit_code == 1 &&
                        NoLeader(response->output);
         ++retry) {
      const uint64_t wait_ms = io_.retry_wait_ms << retry;
      std::string why = response->output;
      while (!why.empty() && why.back() == '\n') why.pop_back();
      std::fprintf(io_.err, "stanzactl: %s: %s; sending it again in %.1f s\n",
                   At(origins_[0]).c_str(), why.c_str(), static_cast<double>(wait_ms) / 1000);
      std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
      response = io_.send(request);
    }
    if (!response.ok()) {
      why_ = Concat(MessageOf(response.status()),
                    " (the lines from this one on may or may not have been imported; importing "
                    "again is safe: what was imported stays as it is)");
      status_ = 3;
      return 0;
    }
    std::string_view output = response->output;
    if (response->exit_code == 0) {
      // "imported ADDED REPLACED SAME"
      std::vector<uint64_t> counts;
      for (std::string_view rest = Trimmed(output.substr(std::min<size_t>(9, output.size())));
           !rest.empty();) {
        const size_t space = rest.find(' ');
        counts.push_back(ParseDecimal<uint64_t>(Trimmed(rest.substr(0, space))).value_or(0));
        rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
      }
      counts.resize(3);
      added_ += counts[0];
      replaced_ += counts[1];
      same_ += counts[2];
      return count;
    }
    while (!output.empty() && output.back() == '\n') output.remove_suffix(1);
    if (output.starts_with("error: ")) output.remove_prefix(7);
    size_t refused = 0;
    if (output.starts_with("item ")) {
      const size_t colon = output.find(':');
      const std::optional<uint64_t> item = ParseDecimal<uint64_t>(output.substr(5, colon - 5));
      if (item && *item >= 1 && *item <= count && colon != std::string_view::npos) {
        refused = static_cast<size_t>(*item - 1);
        output.remove_prefix(colon + 1);
        output = Trimmed(output);
      }
    }
    why_ = std::string(output);
    status_ = response->exit_code == 0 ? 1 : response->exit_code;
    return refused;
  }

  void Clear() {
    lines_.clear();
    origins_.clear();
    bytes_ = 0;
  }

  BulkIo& io_;
  const std::string what_;
  const bool force_;
  std::vector<std::string> lines_;
  std::vector<Origin> origins_;
  size_t bytes_ = 0;
  uint64_t added_ = 0, replaced_ = 0, same_ = 0;
  std::string why_;
  int status_ = 0;
  bool failed_ = false;  // a chunk was refused: nothing more is sent
};

// Remembers the first line of each name, so a name twice in the files is refused here.
class SeenNames {
 public:
  // The line that had `name` before, or nullopt (and remembers this one).
  std::optional<Origin> Seen(const std::string& name, const Origin& origin) {
    auto [it, inserted] = lines_.try_emplace(name, files_.size(), origin.line);
    if (inserted) {
      if (files_.empty() || files_.back() != origin.file) files_.push_back(origin.file);
      it->second.first = files_.size() - 1;
      return std::nullopt;
    }
    return Origin{files_[it->second.first], it->second.second};
  }

 private:
  std::vector<std::string> files_;
  absl::flat_hash_map<std::string, std::pair<size_t, uint64_t>> lines_;
};

uint64_t FileBytes(const std::string& path) {
  std::error_code error;
  const uintmax_t size = std::filesystem::file_size(path, error);
  return error ? 0 : static_cast<uint64_t>(size);
}

// Reads a JSON string literal at the start of `text` (after its opening quote has been
// checked), consuming it. Escapes: \" \\ \/ \b \f \n \r \t \uXXXX (as UTF-8; no
// surrogate pairs: names and secrets are ASCII).
std::optional<std::string> JsonStringAt(std::string_view* text) {
  if (text->empty() || text->front() != '"') return std::nullopt;
  text->remove_prefix(1);
  std::string out;
  while (!text->empty()) {
    const char c = text->front();
    text->remove_prefix(1);
    if (c == '"') return out;
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (text->empty()) return std::nullopt;
    const char e = text->front();
    text->remove_prefix(1);
    static constexpr std::string_view kFrom = "\"\\/bfnrt", kTo = "\"\\/\b\f\n\r\t";
    if (const size_t at = kFrom.find(e); at != std::string_view::npos) {
      out.push_back(kTo[at]);
    } else if (e == 'u' && text->size() >= 4) {
      unsigned value = 0;
      for (int i = 0; i < 4; ++i) {
        const char h = (*text)[static_cast<size_t>(i)];
        const int digit =
            std::isxdigit(static_cast<unsigned char>(h))
                ? (std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (h | 0x20) - 'a' + 10)
                : -1;
        if (digit < 0) return std::nullopt;
        value = value * 16 + static_cast<unsigned>(digit);
      }
      text->remove_prefix(4);
      if (value >= 0xD800 && value <= 0xDFFF) return std::nullopt;
      if (value < 0x80) {
        out.push_back(static_cast<char>(value));
      } else if (value < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (value >> 6)));
        out.push_back(static_cast<char>(0x80 | (value & 0x3F)));
      } else {
        out.push_back(static_cast<char>(0xE0 | (value >> 12)));
        out.push_back(static_cast<char>(0x80 | ((value >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (value & 0x3F)));
      }
    } else {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// {"name":"…","secret":"…"} with string members only.
absl::StatusOr<std::pair<std::string, std::string>> ParseJsonBridge(std::string_view text) {
  const auto bad = [] {
    return absl::InvalidArgumentError(
        "not a JSON object of strings like {\"name\":\"cb1\",\"secret\":\"…\"}");
  };
  text = Trimmed(text);
  if (!text.starts_with('{') || !text.ends_with('}')) return bad();
  text = Trimmed(text.substr(1, text.size() - 2));
  std::optional<std::string> name, secret;
  while (!text.empty()) {
    std::optional<std::string> key = JsonStringAt(&text);
    text = Trimmed(text);
    if (!key || !text.starts_with(':')) return bad();
    text = Trimmed(text.substr(1));
    std::optional<std::string> value = JsonStringAt(&text);
    text = Trimmed(text);
    if (!value) return bad();
    if (*key == "name") name = std::move(value);
    if (*key == "secret") secret = std::move(value);
    if (text.starts_with(',')) {
      text = Trimmed(text.substr(1));
      if (text.empty()) return bad();
    } else if (!text.empty()) {
      return bad();
    }
  }
  if (!name || !secret)
    return absl::InvalidArgumentError("the object needs \"name\" and \"secret\"");
  return std::pair<std::string, std::string>(*std::move(name), *std::move(secret));
}

// The node's XMPP domain, from the daemon ("" with a message when it has none).
absl::StatusOr<std::string> NodeDomain(BulkIo& io) {
  absl::StatusOr<admin::AdminResponse> response = io.send({{"domain"}, true});
  if (!response.ok()) return response.status();
  const std::string& text = response->output;
  const size_t start = text.find("\"domain\":\"");
  const size_t end = start == std::string::npos ? start : text.find('"', start + 10);
  if (response->exit_code != 0 || end == std::string::npos) {
    return absl::FailedPreconditionError(Concat("cannot read the node's domain: ", text));
  }
  std::string domain = text.substr(start + 10, end - start - 10);
  if (domain.empty()) {
    return absl::FailedPreconditionError(
        "set the domain first (stanzactl domain example.com): a user is NAME@DOMAIN");
  }
  return domain;
}

// A user read from a file, with credentials or a password still to hash.
struct PendingUser {
  std::string name;
  std::string credentials;  // sasl::EncodeUserCredentials text, or empty
  std::string password;     // when credentials is empty
  Origin origin;
};

// Hashes the passwords of `users` on every core (16-byte salts, `iterations`). Returns the
// index of the first user that failed (users->size() if none) and why.
std::pair<size_t, std::string> HashPasswords(std::vector<PendingUser>* users, uint32_t iterations) {
  const size_t threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1,
                                            std::max<size_t>(users->size(), 1));
  std::vector<std::string> failures(users->size());
  std::vector<std::thread> workers;
  for (size_t t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (size_t i = t; i < users->size(); i += threads) {
        PendingUser& user = (*users)[i];
        if (!user.credentials.empty()) continue;
        absl::StatusOr<config::UserCredentials> made =
            CredentialsFromPassword(user.password, iterations);
        explicit_bzero(user.password.data(), user.password.size());
        user.password.clear();
        if (!made.ok()) {
          failures[i] = MessageOf(made.status());
        } else {
          user.credentials = sasl::EncodeUserCredentials(*made);
        }
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  for (size_t i = 0; i < failures.size(); ++i) {
    if (!failures[i].empty()) return {i, Concat(At((*users)[i].origin), ": ", failures[i])};
  }
  return {users->size(), ""};
}

// Users on their way to the daemon: hashed a chunk at a time, then sent in order.
class UserImport {
 public:
  UserImport(BulkIo& io, bool force, uint32_t iterations)
      : io_(io), sender_(io, "user", force), iterations_(iterations) {}

  // False when the import stops (the message printed; status() says how).
  bool Add(PendingUser user) {
    if (std::optional<Origin> before = seen_.Seen(user.name, user.origin)) {
      return Stop(1, Concat(At(user.origin), ": user ", user.name, " is also on line ",
                            std::to_string(before->line),
                            before->file == user.origin.file ? "" : Concat(" of ", before->file)));
    }
    to_hash_ += user.credentials.empty() ? 1 : 0;
    pending_.push_back(std::move(user));
    if (to_hash_ >= kHashedUsersPerChunk || pending_.size() >= cluster::kImportBatchItemsMax) {
      return Drain();
    }
    return true;
  }

  // Hashes and sends what waits, then the last chunk.
  bool Finish() { return Drain() && (sender_.Flush() || Stop(sender_.status(), "")); }

  bool Stop(int status, const std::string& message) {
    if (!message.empty()) std::fprintf(io_.err, "stanzactl: %s\n", message.c_str());
    status_ = status;
    return false;
  }

  uint64_t read() const { return seen_count_ + pending_.size(); }
  const ChunkSender& sender() const { return sender_; }
  int status() const { return status_ != 0 ? status_ : sender_.status(); }

 private:
  bool Drain() {
    std::pair<size_t, std::string> failed = {pending_.size(), ""};
    if (to_hash_ > 0) failed = HashPasswords(&pending_, iterations_);
    // The users before one that could not be hashed are imported; none after it.
    pending_.resize(failed.first);
    for (PendingUser& user : pending_) {
      if (!sender_.Add(Concat(user.name, " ", user.credentials), std::move(user.origin))) {
        return Stop(sender_.status(), "");
      }
    }
    seen_count_ += pending_.size();
    pending_.clear();
    to_hash_ = 0;
    if (!failed.second.empty()) {
      return sender_.Flush() ? Stop(1, failed.second) : Stop(sender_.status(), failed.second);
    }
    return true;
  }

  BulkIo& io_;
  ChunkSender sender_;
  const uint32_t iterations_;
  SeenNames seen_;
  std::vector<PendingUser> pending_;
  size_t to_hash_ = 0;
  uint64_t seen_count_ = 0;
  int status_ = 0;
};

// The summary line of an import.
void PrintImported(BulkIo& io, const ChunkSender& sender, std::string_view things,
                   const std::string& path, double seconds, bool stopped) {
  std::fprintf(io.out, "%s %llu %s from %s: %llu added, %llu replaced, %llu unchanged (%.1f s)\n",
               stopped ? "Stopped after importing" : "Imported",
               static_cast<unsigned long long>(sender.imported()), std::string(things).c_str(),
               path.c_str(), static_cast<unsigned long long>(sender.added()),
               static_cast<unsigned long long>(sender.replaced()),
               static_cast<unsigned long long>(sender.same()), seconds);
}

// Reads `path` with a XEP-0227 reader into `import`, then the files it includes (relative
// to its directory; `depth` levels at most). False when the import stops.
// `input`: the file already open (the one named on the command line, which may be a pipe);
// null for an included file, opened here.
bool ReadXep0227(const std::string& path, Input* input, const std::string& domain, int depth,
                 UserImport& import, Progress& progress, uint64_t* bytes_done, uint64_t* skipped,
                 std::set<std::string>* visited) {
  std::error_code ignored;
  const std::string canonical = std::filesystem::weakly_canonical(path, ignored).string();
  if (!visited->insert(canonical).second) return true;  // included twice: read once
  std::ifstream file;
  std::optional<Input> opened;
  if (input == nullptr) {
    file.open(path, std::ios::binary);
    if (!file) return import.Stop(1, Concat("cannot read ", path, ": ", std::strerror(errno)));
    input = &opened.emplace(file);
  }
  config::Xep0227ReaderOptions options;
  options.domain = domain;
  config::Xep0227Reader reader(options);
  std::vector<char> buffer(1 << 16);
  absl::Status status = absl::OkStatus();
  const auto drain = [&]() -> bool {
    while (std::optional<config::ImportedUser> user = reader.Next()) {
      PendingUser pending{user->name, "", "", {path, user->line}};
      if (user->credentials) {
        pending.credentials = sasl::EncodeUserCredentials(*user->credentials);
      } else {
        pending.password = *std::move(user->password);
      }
      if (!import.Add(std::move(pending))) return false;
    }
    return true;
  };
  while (status.ok()) {
    const size_t got = input->Read(buffer.data(), buffer.size());
    if (got == 0) break;
    *bytes_done += got;
    status = reader.Feed(std::string_view(buffer.data(), got));
    if (!drain()) return false;
    progress.Update(*bytes_done, import.read());
  }
  if (status.ok()) status = reader.Finish();
  if (!drain()) return false;
  if (!status.ok()) return import.Stop(1, Concat(path, ": ", MessageOf(status)));
  *skipped += reader.skipped_users();
  for (const config::Xep0227Include& include : reader.includes()) {
    if (!include.host.empty() && include.host != domain) continue;
    if (depth == 0) {
      return import.Stop(1, Concat(path, ":", std::to_string(include.line),
                                   ": includes nested too deep (", include.href, ")"));
    }
    // Beside the file or below it, as ejabberd writes them: a file that names
    // "/etc/shadow" or "../x" is not followed (stanzactl often runs as root).
    const std::filesystem::path href(include.href);
    if (include.href.empty() || href.is_absolute() ||
        std::find(href.begin(), href.end(), "..") != href.end()) {
      return import.Stop(
          1, Concat(path, ":", std::to_string(include.line), ": include '", include.href,
                    "' is not a file beside this one; import it by itself"));
    }
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    const std::string included = (dir / href).string();
    // Nor through a symbolic link out of it, nor into a device or a pipe.
    const std::string inside = std::filesystem::weakly_canonical(included, ignored).string();
    const std::string base =
        std::filesystem::weakly_canonical(dir.empty() ? "." : dir, ignored).string() + "/";
    if (!inside.starts_with(base) || !std::filesystem::is_regular_file(inside, ignored)) {
      return import.Stop(
          1, Concat(path, ":", std::to_string(include.line), ": include '", include.href,
                    "' is not a file beside this one; import it by itself"));
    }
    if (!ReadXep0227(included, nullptr, domain, depth - 1, import, progress, bytes_done, skipped,
                     visited)) {
      return false;
    }
  }
  return true;
}

// "NAME PASSWORD" lines (NAME or NAME@DOMAIN; the password is the rest of the line).
bool ReadPasswordLines(const std::string& path, Input& input, const std::string& domain,
                       UserImport& import, Progress& progress) {
  std::string line;
  uint64_t number = 0, bytes = 0;
  for (bool too_long = false; input.ReadLine(&line, kLineBytesMax, &too_long);) {
    ++number;
    bytes += line.size() + 1;
    if (too_long) {
      return import.Stop(1, Concat(path, ":", std::to_string(number), ": a line longer than ",
                                   std::to_string(kLineBytesMax), " bytes"));
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string_view trimmed = Trimmed(line);
    if (trimmed.empty() || trimmed.front() == '#') continue;
    const size_t space = trimmed.find_first_of(" \t");
    std::string name(trimmed.substr(0, space));
    const Origin origin{path, number};
    if (const size_t at = name.find('@'); at != std::string::npos) {
      std::string host = name.substr(at + 1);
      std::transform(host.begin(), host.end(), host.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (host != domain) {
        return import.Stop(
            1, Concat(At(origin), ": ", name, " is not in this node's domain ", domain));
      }
      name.resize(at);
    }
    // The canonical localpart, as `user add` stores it ("Bob" is bob).
    absl::StatusOr<jid::Jid> address = jid::Jid::Parse(Concat(name, "@", domain));
    if (!address.ok() || !address->has_localpart() || !address->IsBare()) {
      return import.Stop(1, Concat(At(origin), ": '", name, "' is not a valid user name",
                                   address.ok() ? "" : Concat(": ", MessageOf(address.status()))));
    }
    name = std::string(address->localpart());
    if (absl::Status valid = config::ValidateUserName(name); !valid.ok()) {
      return import.Stop(1, Concat(At(origin), ": ", MessageOf(valid)));
    }
    // The password: after the one separator, as typed (it may hold spaces).
    const std::string_view password =
        space == std::string_view::npos
            ? std::string_view()
            : std::string_view(line).substr(static_cast<size_t>(trimmed.data() - line.data()) +
                                            space + 1);
    if (password.empty()) {
      return import.Stop(1,
                         Concat(At(origin), ": user ", name, " has no password (NAME PASSWORD)"));
    }
    if (!import.Add({name, "", std::string(password), origin})) return false;
    progress.Update(bytes, import.read());
  }
  explicit_bzero(line.data(), line.size());
  return true;
}

// Pages of `WHAT VERB --limit`, each handed to `page` (the header line removed) with the
// total; false after printing why when a request fails.
template <typename OnPage>
int ForEachPage(BulkIo& io, std::string_view what, std::string_view verb, bool json,
                OnPage on_page) {
  std::string after;
  for (bool first = true;; first = false) {
    admin::AdminRequest request{{std::string(what), std::string(verb), "--after=" + after,
                                 Concat("--limit=", std::to_string(kPageItems))},
                                json};
    absl::StatusOr<admin::AdminResponse> response = io.send(request);
    if (!response.ok()) return Unreachable(io, response.status());
    if (response->exit_code != 0) {
      std::fwrite(response->output.data(), 1, response->output.size(), io.err);
      return response->exit_code;
    }
    std::string_view output = response->output;
    const size_t newline = output.find('\n');
    std::string_view head = output.substr(0, newline);
    output = newline == std::string_view::npos ? std::string_view() : output.substr(newline + 1);
    if (!head.starts_with("page ")) {
      std::fprintf(io.err, "stanzactl: the daemon answered a page with \"%s\"\n",
                   std::string(head).c_str());
      return 1;
    }
    head.remove_prefix(5);
    const size_t space = head.find(' ');
    const uint64_t total = ParseDecimal<uint64_t>(head.substr(0, space)).value_or(0);
    on_page(output, total, first);
    if (space == std::string_view::npos) return 0;
    after = std::string(head.substr(space + 1));
  }
}

}  // namespace

absl::StatusOr<config::UserCredentials> CredentialsFromPassword(std::string_view password,
                                                                uint32_t iterations) {
  constexpr size_t kSaltBytes = 16;
  std::string salts(2 * kSaltBytes, '\0');
  for (size_t filled = 0; filled < salts.size();) {
    const ssize_t got = getrandom(salts.data() + filled, salts.size() - filled, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      return absl::UnavailableError(Concat("cannot draw random salt: ", std::strerror(errno)));
    }
    filled += static_cast<size_t>(got);
  }
  absl::StatusOr<config::UserCredentials> made =
      sasl::MakeUserCredentials(password, std::string_view(salts).substr(0, kSaltBytes),
                                std::string_view(salts).substr(kSaltBytes), iterations);
  if (!made.ok())
    return absl::InvalidArgumentError(Concat("password refused: ", MessageOf(made.status())));
  return made;
}

absl::StatusOr<std::pair<std::string, std::string>> ParseCallbridgeLine(std::string_view line) {
  line = Trimmed(line);
  if (line.starts_with('{')) return ParseJsonBridge(line);
  const size_t space = line.find_first_of(" \t");
  if (space == std::string_view::npos) {
    return absl::InvalidArgumentError("expected NAME SECRET (or a JSON object)");
  }
  const std::string_view secret = Trimmed(line.substr(space + 1));
  if (secret.find_first_of(" \t") != std::string_view::npos) {
    return absl::InvalidArgumentError("expected NAME SECRET: a secret holds no spaces");
  }
  return std::pair<std::string, std::string>(std::string(line.substr(0, space)),
                                             std::string(secret));
}

// Opens an import file (a pipe too); false after saying why.
bool OpenImport(const std::string& path, std::ifstream* file, BulkIo& io) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored)) {
    std::fprintf(io.err, "stanzactl: %s is a directory, not a file to import\n", path.c_str());
    return false;
  }
  file->open(path, std::ios::binary);
  if (!*file) {
    std::fprintf(io.err, "stanzactl: cannot read %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  return true;
}

int ImportCallbridges(const std::string& path, bool force, BulkIo& io) {
  std::ifstream file;
  if (!OpenImport(path, &file, io)) return 1;
  Progress progress(io, "call bridges", FileBytes(path));
  ChunkSender sender(io, "callbridge", force);
  SeenNames seen;
  Input input(file);
  std::string line;
  uint64_t number = 0, bytes = 0;
  int status = 0;
  for (bool too_long = false; status == 0 && input.ReadLine(&line, kLineBytesMax, &too_long);) {
    ++number;
    bytes += line.size() + 1;
    if (too_long) {
      progress.Done();
      std::fprintf(io.err, "stanzactl: %s:%llu: a line longer than %zu bytes\n", path.c_str(),
                   static_cast<unsigned long long>(number), kLineBytesMax);
      status = 1;
      break;
    }
    const std::string_view trimmed = Trimmed(line);
    if (trimmed.empty() || trimmed.front() == '#') continue;
    const Origin origin{path, number};
    absl::StatusOr<std::pair<std::string, std::string>> bridge = ParseCallbridgeLine(trimmed);
    absl::Status valid = bridge.status();
    if (valid.ok()) valid = ValidateCallbridgeName(bridge->first);
    if (valid.ok()) valid = ValidateSecret(bridge->second);
    if (!valid.ok()) {
      progress.Done();
      std::fprintf(io.err, "stanzactl: %s: %s\n", At(origin).c_str(), MessageOf(valid).c_str());
      status = 1;
      break;
    }
    if (std::optional<Origin> before = seen.Seen(bridge->first, origin)) {
      progress.Done();
      std::fprintf(io.err, "stanzactl: %s: call bridge %s is also on line %llu\n",
                   At(origin).c_str(), bridge->first.c_str(),
                   static_cast<unsigned long long>(before->line));
      status = 1;
      break;
    }
    if (!sender.Add(Concat(bridge->first, " ", bridge->second), origin)) status = sender.status();
    progress.Update(bytes, sender.imported() + sender.queued());
  }
  // What was read before a bad line is imported, as the contract says.
  if (sender.queued() > 0 && !sender.Flush() && status == 0) status = sender.status();
  progress.Done();
  PrintImported(io, sender, "call bridges", path, progress.Seconds(), status != 0);
  return status;
}

int ImportUsers(const std::string& path, bool force, uint32_t iterations, BulkIo& io) {
  absl::StatusOr<std::string> domain = NodeDomain(io);
  if (!domain.ok()) {
    if (absl::IsFailedPrecondition(domain.status())) {
      std::fprintf(io.err, "stanzactl: %s\n", MessageOf(domain.status()).c_str());
      return 1;
    }
    return Unreachable(io, domain.status());
  }
  // Opened once: it may be a pipe. XEP-0227 begins with '<' (after any whitespace or a byte
  // order mark); lines do not.
  std::ifstream file;
  if (!OpenImport(path, &file, io)) return 1;
  Input input(file);
  const bool xml = input.Peek() == '<';
  Progress progress(io, "users", FileBytes(path));
  UserImport import(io, force, iterations);
  uint64_t bytes = 0, skipped = 0;
  std::set<std::string> visited;
  bool ok =
      xml ? ReadXep0227(path, &input, *domain, 4, import, progress, &bytes, &skipped, &visited)
          : ReadPasswordLines(path, input, *domain, import, progress);
  // What was read before a bad line is imported, as the contract says.
  const bool sent = import.Finish();
  ok = ok && sent;
  progress.Done();
  PrintImported(io, import.sender(), "users", path, progress.Seconds(), !ok);
  if (skipped > 0) {
    std::fprintf(io.out, "Skipped %llu users of other hosts than %s\n",
                 static_cast<unsigned long long>(skipped), domain->c_str());
  }
  return ok ? 0 : std::max(import.status(), 1);
}

int ExportCallbridges(bool json, BulkIo& io) {
  return ForEachPage(io, "callbridge", "export", false, [&](std::string_view page, uint64_t, bool) {
    if (!json) {
      std::fwrite(page.data(), 1, page.size(), io.out);
      return;
    }
    while (!page.empty()) {
      const size_t end = page.find('\n');
      const std::string_view line = page.substr(0, end);
      page = end == std::string_view::npos ? "" : page.substr(end + 1);
      const size_t space = line.find(' ');
      std::fprintf(io.out, "{\"name\":%s,\"secret\":%s}\n",
                   JsonString(line.substr(0, space)).c_str(),
                   JsonString(line.substr(space + 1)).c_str());
    }
  });
}

int ExportUsers(BulkIo& io) {
  absl::StatusOr<std::string> domain = NodeDomain(io);
  if (!domain.ok()) {
    std::fprintf(io.err, "stanzactl: %s\n", MessageOf(domain.status()).c_str());
    return absl::IsFailedPrecondition(domain.status()) ? 1 : 3;
  }
  std::string out;
  config::AppendXep0227Header(*domain, &out);
  const int status =
      ForEachPage(io, "user", "export", false, [&](std::string_view page, uint64_t, bool) {
        while (!page.empty()) {
          const size_t end = page.find('\n');
          const std::string_view line = page.substr(0, end);
          page = end == std::string_view::npos ? "" : page.substr(end + 1);
          const size_t space = line.find(' ');
          absl::StatusOr<config::UserCredentials> credentials =
              sasl::ParseUserCredentials(line.substr(space + 1));
          if (space == std::string_view::npos || !credentials.ok())
            continue;  // never from a daemon
          config::AppendXep0227User(line.substr(0, space), *credentials,
                                    config::ScramEncoding::kXep0227, &out);
        }
        std::fwrite(out.data(), 1, out.size(), io.out);
        out.clear();
      });
  if (status != 0) return status;
  config::AppendXep0227Footer(&out);
  std::fwrite(out.data(), 1, out.size(), io.out);
  return 0;
}

int ListPaged(std::string_view what, bool json, BulkIo& io) {
  bool empty = true;
  uint64_t total_seen = 0;
  const int status =
      ForEachPage(io, what, "list", json, [&](std::string_view page, uint64_t total, bool first) {
        total_seen = total;
        if (json && first) {
          std::fputs(what == "user"
                         ? Concat("{\"total\":", std::to_string(total), ",\"users\":[").c_str()
                         : "[",
                     io.out);
        }
        if (json && !page.empty() && page.back() == '\n') page.remove_suffix(1);
        if (json && !empty && !page.empty()) std::fputc(',', io.out);
        empty = empty && page.empty();
        std::fwrite(page.data(), 1, page.size(), io.out);
      });
  if (status != 0) return status;
  if (json) {
    std::fputs(what == "user" ? "]}\n" : "]\n", io.out);
  } else if (total_seen == 0) {
    // The daemon's own words for an empty list (and how to add the first).
    absl::StatusOr<admin::AdminResponse> response = io.send({{std::string(what), "list"}, false});
    if (!response.ok()) return Unreachable(io, response.status());
    std::fwrite(response->output.data(), 1, response->output.size(), io.out);
  }
  return 0;
}

}  // namespace stanzad
