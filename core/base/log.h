// One line per event on standard error:
//   2026-11-24T22:51:03.123Z info event=bridge_authenticated bridge=cb1.example.com peer=127.0.0.1
// Fields are key=value; values with spaces are quoted by the caller
// (LogQuote). Thread-safe: each line is one write(2).
#ifndef STANZAD_CORE_BASE_LOG_H_
#define STANZAD_CORE_BASE_LOG_H_

#include <string>
#include <string_view>

namespace stanzad {

enum class LogLevel { kInfo = 0, kWarning = 1, kError = 2 };

// Lines below `level` are dropped. Default: kInfo.
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

// Writes "<time> <level> event=<event> <fields>".
void LogEvent(LogLevel level, std::string_view event, std::string_view fields = "");

// `"text"` with quotes and backslashes escaped, for values that may hold spaces.
std::string LogQuote(std::string_view text);

}  // namespace stanzad

#endif  // STANZAD_CORE_BASE_LOG_H_
