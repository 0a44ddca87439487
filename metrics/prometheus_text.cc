#include "metrics/prometheus_text.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>

namespace stanzad::metrics {

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void PrometheusText::Family(std::string_view name, std::string_view help, std::string_view type) {
  text_ += "# HELP ";
  text_ += name;
  text_ += ' ';
  for (const char c : help) {
    if (c == '\\') {
      text_ += "\\\\";
    } else if (c == '\n') {
      text_ += "\\n";
    } else {
      text_ += c;
    }
  }
  text_ += "\n# TYPE ";
  text_ += name;
  text_ += ' ';
  text_ += type;
  text_ += '\n';
}

void PrometheusText::Name(std::string_view name, const Labels& labels) {
  text_ += name;
  if (labels.empty()) return;
  text_ += '{';
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) text_ += ',';
    text_ += labels[i].first;
    text_ += "=\"";
    text_ += EscapeLabelValue(labels[i].second);
    text_ += '"';
  }
  text_ += '}';
}

void PrometheusText::Sample(std::string_view name, const Labels& labels, uint64_t value) {
  Name(name, labels);
  char number[32];
  std::snprintf(number, sizeof(number), " %" PRIu64 "\n", value);
  text_ += number;
}

void PrometheusText::Sample(std::string_view name, const Labels& labels, double value) {
  Name(name, labels);
  char number[48];
  if (std::isnan(value)) {
    std::snprintf(number, sizeof(number), " NaN\n");
  } else if (std::isinf(value)) {
    std::snprintf(number, sizeof(number), value > 0 ? " +Inf\n" : " -Inf\n");
  } else {
    std::snprintf(number, sizeof(number), " %.17g\n", value);
  }
  text_ += number;
}

}  // namespace stanzad::metrics
