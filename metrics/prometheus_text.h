// Writes the Prometheus text exposition format (version 0.0.4): one HELP and
// TYPE line per family, then its samples. Label values and help text are
// escaped as the format requires (backslash, double quote, newline).
//
//   PrometheusText text;
//   text.Family("stanzad_stanzas_routed_total", "Stanzas delivered to a bridge.", "counter");
//   text.Sample("stanzad_stanzas_routed_total", {{"shard", "0"}}, 1234);
//   std::string body = text.Take();
#ifndef STANZAD_METRICS_PROMETHEUS_TEXT_H_
#define STANZAD_METRICS_PROMETHEUS_TEXT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stanzad::metrics {

using Labels = std::vector<std::pair<std::string_view, std::string>>;

class PrometheusText {
 public:
  // type: "counter", "gauge", "histogram" or "untyped". Each family once,
  // before its samples.
  void Family(std::string_view name, std::string_view help, std::string_view type);
  void Sample(std::string_view name, const Labels& labels, double value);
  void Sample(std::string_view name, const Labels& labels, uint64_t value);

  const std::string& text() const { return text_; }
  std::string Take() { return std::move(text_); }

 private:
  void Name(std::string_view name, const Labels& labels);

  std::string text_;
};

// "a\"b" for a"b, with \\ and \n as well.
std::string EscapeLabelValue(std::string_view value);

// Content-Type of the format.
inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

}  // namespace stanzad::metrics

#endif  // STANZAD_METRICS_PROMETHEUS_TEXT_H_
