#include "train/metrics.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/files.h"

namespace fathom::train {
using nlohmann::json;

namespace {

// Replaces non-finite numbers (anywhere in the object) by null.
json finite_only(const json& j) {
  if (j.is_number_float()) return std::isfinite(j.get<double>()) ? j : json(nullptr);
  if (!j.is_structured()) return j;
  json out = j;
  for (auto& v : out) v = finite_only(v);
  return out;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, bool append)
    : path_(path), out_(path, append ? std::ios::app : std::ios::trunc) {
  if (!out_) fail("{}: cannot open the metrics log for writing", path);
}

void MetricsLog::write(const json& row) {
  if (!row.is_object()) fail("{}: a metrics row must be a JSON object, not {}", path_, row.type_name());
  out_ << finite_only(row).dump() << "\n";
  out_.flush();
  if (!out_) fail("{}: cannot write the metrics log", path_);
}

// --- SVG ---

namespace {

constexpr double kWidth = 860, kPanelH = 320;
constexpr double kLeft = 80, kRight = 170, kTop = 34, kBottom = 46;  // margins of a plot area in its panel
constexpr double kTitleH = 36;
constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"};

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&apos;"; break;
      default: o += c;
    }
  }
  return o;
}

// A "nice" number near x (1, 2, 5 or 10 times a power of ten): rounded when `round`, else at least x.
double nice(double x, bool round) {
  const double e = std::floor(std::log10(x)), f = x / std::pow(10, e);
  double n;
  if (round) n = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  else n = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return n * std::pow(10, e);
}

struct Axis {
  double lo, hi, step;  // range covering the data, and the tick spacing
};

Axis make_axis(double lo, double hi) {
  if (!(hi > lo)) {  // one value (or none): a small range around it
    const double pad = lo != 0 ? std::abs(lo) * 0.1 : 1;
    lo -= pad;
    hi += pad;
  }
  const double step = nice(nice(hi - lo, false) / 5, true);
  return {std::floor(lo / step) * step, std::ceil(hi / step) * step, step};
}

std::string tick_label(double v, double step) {
  if (std::abs(v) < step * 1e-9) v = 0;  // -0 and 1e-17 print as 0
  return fmt::format("{:.4g}", v);
}

void draw_panel(std::string& s, const Panel& p, double y0) {
  const double px = kLeft, py = y0 + kTop, pw = kWidth - kLeft - kRight, ph = kPanelH - kTop - kBottom;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (const Series& se : p.series)
    for (size_t i = 0; i < se.x.size() && i < se.y.size(); ++i) {
      if (!std::isfinite(se.x[i]) || !std::isfinite(se.y[i])) continue;
      xmin = std::min(xmin, se.x[i]), xmax = std::max(xmax, se.x[i]);
      ymin = std::min(ymin, se.y[i]), ymax = std::max(ymax, se.y[i]);
    }
  if (!std::isfinite(xmin)) xmin = xmax = ymin = ymax = 0;
  const Axis ax = make_axis(xmin, xmax), ay = make_axis(ymin, ymax);
  auto sx = [&](double x) { return px + (x - ax.lo) / (ax.hi - ax.lo) * pw; };
  auto sy = [&](double y) { return py + ph - (y - ay.lo) / (ay.hi - ay.lo) * ph; };

  s += fmt::format("<g class=\"panel\">\n<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"14\" text-anchor=\"middle\">{}</text>\n",
                   px + pw / 2, y0 + 20, esc(p.title));
  // Grid and tick labels.
  for (double v = ax.lo; v <= ax.hi + ax.step * 1e-6; v += ax.step)
    s += fmt::format("<line x1=\"{0:.2f}\" y1=\"{1:.2f}\" x2=\"{0:.2f}\" y2=\"{2:.2f}\" stroke=\"#e0e0e0\"/>"
                     "<text x=\"{0:.2f}\" y=\"{3:.2f}\" font-size=\"11\" text-anchor=\"middle\">{4}</text>\n",
                     sx(v), py, py + ph, py + ph + 16, tick_label(v, ax.step));
  for (double v = ay.lo; v <= ay.hi + ay.step * 1e-6; v += ay.step)
    s += fmt::format("<line x1=\"{0:.2f}\" y1=\"{1:.2f}\" x2=\"{2:.2f}\" y2=\"{1:.2f}\" stroke=\"#e0e0e0\"/>"
                     "<text x=\"{3:.2f}\" y=\"{4:.2f}\" font-size=\"11\" text-anchor=\"end\">{5}</text>\n",
                     px, sy(v), px + pw, px - 6, sy(v) + 4, tick_label(v, ay.step));
  // Axes and the x label.
  s += fmt::format("<rect x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" fill=\"none\" stroke=\"#333\"/>\n",
                   px, py, pw, ph);
  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"12\" text-anchor=\"middle\">step</text>\n", px + pw / 2,
                   py + ph + 36);
  // Lines, then the legend beside the plot area.
  for (size_t k = 0; k < p.series.size(); ++k) {
    const Series& se = p.series[k];
    const char* color = kColors[k % std::size(kColors)];
    std::string pts;
    size_t n = 0;
    double cx = 0, cy = 0;
    for (size_t i = 0; i < se.x.size() && i < se.y.size(); ++i) {
      if (!std::isfinite(se.x[i]) || !std::isfinite(se.y[i])) continue;
      cx = sx(se.x[i]), cy = sy(se.y[i]);
      pts += fmt::format("{}{:.2f},{:.2f}", n++ ? " " : "", cx, cy);
    }
    s += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\n", color, pts);
    if (n == 1)  // a lone point draws no line: mark it
      s += fmt::format("<circle cx=\"{:.2f}\" cy=\"{:.2f}\" r=\"3\" fill=\"{}\"/>\n", cx, cy, color);
    const double ly = py + 10 + 18 * double(k);
    s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"{3}\" stroke-width=\"2\"/>"
                     "<text x=\"{4:.1f}\" y=\"{5:.1f}\" font-size=\"12\">{6}</text>\n",
                     px + pw + 12, ly, px + pw + 36, color, px + pw + 42, ly + 4, esc(se.name));
  }
  s += "</g>\n";
}

}  // namespace

std::string render_svg(const std::vector<Panel>& panels, const std::string& title) {
  const double h = kTitleH + kPanelH * double(std::max<size_t>(panels.size(), 1));
  std::string s = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"24\" font-size=\"16\" font-weight=\"bold\" text-anchor=\"middle\">{3}</text>\n",
      kWidth, h, kWidth / 2, esc(title));
  for (size_t i = 0; i < panels.size(); ++i) draw_panel(s, panels[i], kTitleH + kPanelH * double(i));
  s += "</svg>\n";
  return s;
}

void plot_svg(const std::vector<Series>& series, const std::string& title, const std::string& path) {
  const std::string svg = render_svg({Panel{"", series}}, title);
  std::ofstream out(path);
  out << svg;
  if (!out) fail("{}: cannot write", path);
}

// --- reading a log ---

std::vector<Series> read_metrics(const std::string& path, const std::vector<std::string>& keys) {
  const std::string text = read_file(path);
  std::vector<Series> out;
  for (const std::string& k : keys) out.push_back({k, {}, {}});
  size_t pos = 0, line_no = 0, rows = 0;
  while (pos < text.size()) {
    const size_t nl = text.find('\n', pos);
    const bool last = nl == std::string::npos;
    const std::string line = text.substr(pos, last ? std::string::npos : nl - pos);
    pos = last ? text.size() : nl + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json row = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (row.is_discarded() || !row.is_object()) {
      if (last) break;  // the line a killed run was writing
      fail("{}:{}: not a JSON object", path, line_no);
    }
    const double x = row.contains("step") && row["step"].is_number() ? row["step"].get<double>() : double(rows);
    ++rows;
    for (Series& se : out) {
      auto it = row.find(se.name);
      if (it == row.end() || !it->is_number()) continue;
      se.x.push_back(x);
      se.y.push_back(it->get<double>());
    }
  }
  return out;
}

std::vector<std::string> plot_metrics(const PlotMetricsOpts& o) {
  if (o.keys.empty()) fail("plot: no keys to plot");
  std::vector<Series> all = read_metrics(o.log, o.keys);
  std::vector<std::string> missing;
  std::vector<Panel> panels;
  Panel losses{"loss", {}};
  size_t loss_at = SIZE_MAX;  // where the shared loss chart goes among the panels
  for (Series& se : all) {
    if (se.y.empty()) {
      missing.push_back(se.name);
      continue;
    }
    if (se.name.find("loss") != std::string::npos) {
      if (loss_at == SIZE_MAX) {
        loss_at = panels.size();
        panels.push_back({});
      }
      losses.series.push_back(std::move(se));
    } else {
      panels.push_back({se.name, {std::move(se)}});
    }
  }
  if (panels.empty()) fail("{}: no row has any of the keys {}", o.log, fmt::join(o.keys, ", "));
  if (loss_at != SIZE_MAX) panels[loss_at] = std::move(losses);
  const std::string title = o.title.empty() ? std::filesystem::path(o.log).filename().string() : o.title;
  std::ofstream out(o.out);
  out << render_svg(panels, title);
  if (!out) fail("{}: cannot write", o.out);
  return missing;
}

}  // namespace fathom::train
