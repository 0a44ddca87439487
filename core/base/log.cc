#include "core/base/log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <string>

namespace stanzad {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

struct Bucket {
  double tokens = kLogBurst;
  std::chrono::steady_clock::time_point refilled = std::chrono::steady_clock::now();
  uint64_t suppressed = 0;
};

// Guards the buckets and the recent problems; taken once per line logged,
// never on the per-stanza path.
std::mutex g_mutex;
std::map<std::string, Bucket, std::less<>> g_buckets;
std::deque<std::string> g_recent;

}  // namespace

std::vector<std::string> RecentProblems() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return {g_recent.begin(), g_recent.end()};
}

void ResetLogStateForTest() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_buckets.clear();
  g_recent.clear();
}

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

void LogEvent(LogLevel level, std::string_view event, std::string_view fields) {
  if (!LogEnabled(level)) return;
  uint64_t suppressed = 0;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_buckets.find(event);
    if (it == g_buckets.end()) it = g_buckets.emplace(std::string(event), Bucket{}).first;
    Bucket& bucket = it->second;
    const auto steady = std::chrono::steady_clock::now();
    bucket.tokens = std::min<double>(
        kLogBurst, bucket.tokens + std::chrono::duration<double>(steady - bucket.refilled).count() *
                                       kLogPerSecond);
    bucket.refilled = steady;
    if (bucket.tokens < 1) {
      ++bucket.suppressed;
      return;
    }
    bucket.tokens -= 1;
    suppressed = bucket.suppressed;
    bucket.suppressed = 0;
  }
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const int millis = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);
  std::string line;
  line.reserve(64 + event.size() + fields.size());
  char head[64];
  std::snprintf(head, sizeof(head), "%s.%03dZ %s event=", stamp, millis, LevelName(level));
  line.append(head).append(event);
  if (!fields.empty()) line.append(" ").append(fields);
  if (suppressed != 0) line.append(" suppressed=").append(std::to_string(suppressed));
  if (level >= LogLevel::kWarning) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_recent.push_back(line);
    if (g_recent.size() > kRecentProblemsMax) g_recent.pop_front();
  }
  line.push_back('\n');
  // One write per line so lines from different threads never interleave.
  [[maybe_unused]] ssize_t written = write(STDERR_FILENO, line.data(), line.size());
}

std::string LogQuote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c == '\n' ? ' ' : c);
  }
  return out + "\"";
}

}  // namespace stanzad
