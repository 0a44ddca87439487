// One line per event on standard error:
//   2026-11-24T22:51:03.123Z info event=bridge_authenticated bridge=cb1.example.com peer=127.0.0.1
// Fields are key=value; values with spaces are quoted by the caller
// (LogQuote). Thread-safe: each line is one write(2).
//
// Rate-limited per event name, so a flood (an attacker failing handshakes in a
// loop) cannot fill the disk: a burst of kLogBurst lines, then kLogPerSecond
// lines a second. The first line let through after some were dropped carries
// suppressed=N. Warnings and errors are also kept in memory (the last
// kRecentProblemsMax) for `stanzactl status`.
#ifndef STANZAD_CORE_BASE_LOG_H_
#define STANZAD_CORE_BASE_LOG_H_

#include <string>
#include <string_view>
#include <vector>

namespace stanzad {

enum class LogLevel { kInfo = 0, kWarning = 1, kError = 2 };

// Lines below `level` are dropped. Default: kInfo.
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

// Writes "<time> <level> event=<event> <fields>".
void LogEvent(LogLevel level, std::string_view event, std::string_view fields = "");

inline constexpr int kLogBurst = 50;
inline constexpr int kLogPerSecond = 10;
inline constexpr size_t kRecentProblemsMax = 10;

// The last warning and error lines (oldest first), as printed, without the newline.
std::vector<std::string> RecentProblems();

// For tests: forgets the rate limits and the recent problems.
void ResetLogStateForTest();

// `"text"` with quotes and backslashes escaped, for values that may hold spaces.
std::string LogQuote(std::string_view text);

}  // namespace stanzad

#endif  // STANZAD_CORE_BASE_LOG_H_
