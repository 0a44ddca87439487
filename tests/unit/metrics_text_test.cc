// The Prometheus text writer and the HTTP request-line parser of /metrics.
#include <gtest/gtest.h>

#include <limits>

#include "metrics/http_server.h"
#include "metrics/prometheus_text.h"

namespace stanzad::metrics {
namespace {

TEST(PrometheusTextTest, FamilyAndSamples) {
  PrometheusText text;
  text.Family("x_total", "Things.", "counter");
  text.Sample("x_total", {{"shard", "0"}}, uint64_t{7});
  text.Sample("x_total", {{"shard", "1"}, {"kind", "component"}}, uint64_t{18446744073709551615u});
  EXPECT_EQ(text.text(),
            "# HELP x_total Things.\n"
            "# TYPE x_total counter\n"
            "x_total{shard=\"0\"} 7\n"
            "x_total{shard=\"1\",kind=\"component\"} 18446744073709551615\n");
}

TEST(PrometheusTextTest, EscapesLabelValuesAndHelp) {
  PrometheusText text;
  text.Family("g", "a \\ b\nc \"q\"", "gauge");
  text.Sample("g", {{"v", "a\"b\\c\nd"}}, 1.5);
  EXPECT_EQ(text.text(),
            "# HELP g a \\\\ b\\nc \"q\"\n"
            "# TYPE g gauge\n"
            "g{v=\"a\\\"b\\\\c\\nd\"} 1.5\n");
}

TEST(PrometheusTextTest, SpecialFloats) {
  PrometheusText text;
  text.Sample("a", {}, std::numeric_limits<double>::infinity());
  text.Sample("b", {}, -std::numeric_limits<double>::infinity());
  text.Sample("c", {}, std::numeric_limits<double>::quiet_NaN());
  text.Sample("d", {}, 0.1);
  EXPECT_EQ(text.text(), "a +Inf\nb -Inf\nc NaN\nd 0.10000000000000001\n");
}

TEST(HttpRequestLineTest, Parses) {
  std::string_view method, path;
  ASSERT_TRUE(ParseRequestLine("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &method, &path));
  EXPECT_EQ(method, "GET");
  EXPECT_EQ(path, "/metrics");
  ASSERT_TRUE(ParseRequestLine("HEAD /healthz?verbose=1 HTTP/1.0\r\n\r\n", &method, &path));
  EXPECT_EQ(method, "HEAD");
  EXPECT_EQ(path, "/healthz");
}

TEST(HttpRequestLineTest, RejectsWhatIsNotARequestLine) {
  std::string_view method, path;
  for (const char* bad :
       {"", "\r\n\r\n", "GET\r\n\r\n", "GET /metrics\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
        " /metrics HTTP/1.1\r\n\r\n", "GET  HTTP/1.1\r\n\r\n", "GET /metrics SPDY/3\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"}) {
    EXPECT_FALSE(ParseRequestLine(bad, &method, &path)) << bad;
  }
}

}  // namespace
}  // namespace stanzad::metrics
