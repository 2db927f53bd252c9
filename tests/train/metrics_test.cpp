// The metrics log's lines, reading them back, and the SVG charts' structure.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "train/metrics.h"

namespace fathom::train {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

// This process's scratch directory, removed when the tests end.
struct ScratchRoot {
  fs::path dir = fs::temp_directory_path() / ("fathom-metrics-" + std::to_string(getpid()));
  ~ScratchRoot() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};
const ScratchRoot kScratch;

fs::path scratch(const std::string& name) {
  const fs::path d = kScratch.dir;
  fs::create_directories(d);
  fs::remove(d / name);
  return d / name;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t k = s.find(what); k != std::string::npos; k = s.find(what, k + 1)) ++n;
  return n;
}

// Each opened element is closed: "<x ...>" pairs with "</x>", unless it closes itself ("/>").
void expect_well_formed(const std::string& svg) {
  ASSERT_EQ(svg.rfind("<?xml", 0), 0u);
  std::vector<std::string> open;
  for (size_t k = svg.find('<'); k != std::string::npos; k = svg.find('<', k + 1)) {
    const size_t end = svg.find('>', k);
    ASSERT_NE(end, std::string::npos);
    const std::string tag = svg.substr(k + 1, end - k - 1);
    if (tag[0] == '?') continue;
    if (tag[0] == '/') {
      ASSERT_FALSE(open.empty()) << tag;
      EXPECT_EQ(open.back(), tag.substr(1));
      open.pop_back();
    } else if (tag.back() != '/') {
      open.push_back(tag.substr(0, tag.find(' ')));
    }
    // Text between elements holds no raw markup characters.
    const size_t next = svg.find('<', end);
    const std::string text = svg.substr(end + 1, next == std::string::npos ? std::string::npos : next - end - 1);
    EXPECT_EQ(text.find('>'), std::string::npos) << text;
  }
  EXPECT_TRUE(open.empty());
}

TEST(MetricsLog, OneFlushedObjectPerLineAndNullForNaN) {
  const fs::path p = scratch("log.jsonl");
  {
    MetricsLog log(p.string());
    log.write({{"step", 0}, {"loss", 5.5}, {"lr", 1e-4}});
    // Flushed: the line is on disk while the log is still open.
    EXPECT_EQ(slurp(p), "{\"loss\":5.5,\"lr\":0.0001,\"step\":0}\n");
    log.write({{"step", 1}, {"loss", NAN}, {"grad_norm", INFINITY}});
    EXPECT_THROW(log.write(json::array({1, 2})), Error);
  }
  EXPECT_EQ(slurp(p), "{\"loss\":5.5,\"lr\":0.0001,\"step\":0}\n{\"grad_norm\":null,\"loss\":null,\"step\":1}\n");
  {
    MetricsLog log(p.string(), /*append=*/true);
    log.write({{"step", 2}, {"loss", 4.0}});
  }
  const auto s = read_metrics(p.string(), {"loss", "lr", "absent"});
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].x, (std::vector<double>{0, 2}));  // the null loss at step 1 is skipped
  EXPECT_EQ(s[0].y, (std::vector<double>{5.5, 4.0}));
  EXPECT_EQ(s[1].y, (std::vector<double>{1e-4}));
  EXPECT_TRUE(s[2].x.empty());
}

TEST(ReadMetrics, UnfinishedLastLineIsDroppedOtherBadLinesAreErrors) {
  const fs::path p = scratch("cut.jsonl");
  std::ofstream(p) << "{\"step\":1,\"loss\":2}\n\n{\"loss\":3}\n{\"step\":3,\"lo";
  const auto s = read_metrics(p.string(), {"loss"});
  EXPECT_EQ(s[0].x, (std::vector<double>{1, 1}));  // no "step": the row's index (1) stands in
  EXPECT_EQ(s[0].y, (std::vector<double>{2, 3}));
  std::ofstream(p) << "{\"step\":1}\nnot json\n{\"step\":2}\n";
  try {
    read_metrics(p.string(), {"loss"});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cut.jsonl:2: not a JSON object"), std::string::npos) << e.what();
  }
}

TEST(Svg, OnePolylinePerSeriesWithAxesAndLegend) {
  std::vector<Series> series(2);
  series[0].name = "loss";
  series[1].name = "val_loss <&>";
  for (int i = 0; i <= 100; ++i) series[0].x.push_back(i), series[0].y.push_back(5.0 * std::exp(-0.02 * i));
  for (int i = 0; i <= 100; i += 25) series[1].x.push_back(i), series[1].y.push_back(5.2 * std::exp(-0.02 * i));
  series[1].y[2] = NAN;  // left out, not drawn as garbage
  const fs::path p = scratch("plot.svg");
  plot_svg(series, "tiny run \"A\"", p.string());
  const std::string svg = slurp(p);
  expect_well_formed(svg);
  EXPECT_EQ(count(svg, "<svg"), 1u);
  EXPECT_EQ(count(svg, "<polyline"), 2u);
  EXPECT_NE(svg.find("val_loss &lt;&amp;&gt;"), std::string::npos);
  EXPECT_NE(svg.find("tiny run &quot;A&quot;"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  // The first polyline has all 101 points, the second the 4 finite ones.
  const size_t a = svg.find("points=\""), b = svg.find("points=\"", a + 1);
  EXPECT_EQ(count(svg.substr(a, svg.find('"', a + 8) - a), ","), 101u);
  EXPECT_EQ(count(svg.substr(b, svg.find('"', b + 8) - b), ","), 4u);
  // Ticks at nice values: 0 to 100 by 20 on x, 0 to 6 by 1 on y (loss spans ~0.7 to 5.2).
  for (const char* t : {">0<", ">20<", ">100<", ">1<", ">6<", ">step<"}) EXPECT_NE(svg.find(t), std::string::npos) << t;
}

TEST(Svg, EmptyAndSinglePointSeriesStillRender) {
  const std::string svg = render_svg({Panel{"p", {Series{"one", {5}, {2.5}}, Series{"none", {}, {}}}}}, "t");
  expect_well_formed(svg);
  EXPECT_EQ(count(svg, "<polyline"), 2u);
  EXPECT_EQ(count(svg, "<circle"), 1u);  // the lone point is marked
}

TEST(PlotMetrics, LossesShareAChartOtherKeysGetTheirOwn) {
  const fs::path log = scratch("run.jsonl"), out = scratch("run.svg");
  {
    MetricsLog m(log.string());
    for (int s = 0; s < 20; ++s) {
      json row = {{"step", s}, {"loss", 4.0 - 0.1 * s}, {"lr", 1e-3 * s / 20}, {"grad_norm", 1.0 + s % 3}};
      if (s % 5 == 4) row["val_loss"] = 4.1 - 0.1 * s;
      m.write(row);
    }
  }
  const auto missing = plot_metrics({.log = log.string(), .out = out.string(), .keys = {"loss", "lr", "val_loss", "tokens"}, .title = ""});
  EXPECT_EQ(missing, std::vector<std::string>{"tokens"});
  const std::string svg = slurp(out);
  expect_well_formed(svg);
  EXPECT_EQ(count(svg, "class=\"panel\""), 2u);  // loss + val_loss, then lr
  EXPECT_EQ(count(svg, "<polyline"), 3u);
  EXPECT_LT(svg.find(">val_loss<"), svg.find(">lr<"));
  EXPECT_NE(svg.find(">run.jsonl<"), std::string::npos);  // default title
  EXPECT_THROW(plot_metrics({.log = log.string(), .out = out.string(), .keys = {"nothing"}, .title = ""}), Error);
}

}  // namespace
}  // namespace fathom::train
