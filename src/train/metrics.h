#pragma once
// What a training run reports: a JSONL log, one object per step ({"step": 10, "loss": 3.2,
// "lr": 3e-4, ...}), and SVG line charts drawn from it without any plotting library.
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fathom::train {

// Appends one JSON object per line and flushes each, so a killed run keeps every finished
// step and `tail -f` follows along. Non-finite numbers are written as null (JSON has no NaN).
class MetricsLog {
 public:
  // append: continue an existing log (a resumed run); otherwise the file is started afresh.
  explicit MetricsLog(const std::string& path, bool append = false);
  void write(const nlohmann::json& row);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

// One line of a chart: y against x, in order.
struct Series {
  std::string name;
  std::vector<double> x, y;  // [points]
};

// One chart: axes, ticks and a legend around its series.
struct Panel {
  std::string title;
  std::vector<Series> series;
};

// An SVG document with the panels stacked top to bottom under `title`. Each series is one
// <polyline>; points whose x or y is not finite are left out.
std::string render_svg(const std::vector<Panel>& panels, const std::string& title);

// One chart of `series`, written to `path`.
void plot_svg(const std::vector<Series>& series, const std::string& title, const std::string& path);

// The series of each key in a metrics log: y = the key's value, x = the row's "step" (its
// position among the rows when it has none). Rows without the key as a number are skipped.
// A malformed line is an Error naming it, except an unfinished last line (a run killed mid-write).
std::vector<Series> read_metrics(const std::string& path, const std::vector<std::string>& keys);

struct PlotMetricsOpts {
  std::string log;   // metrics JSONL
  std::string out;   // SVG written here
  std::vector<std::string> keys = {"loss", "val_loss"};
  std::string title;  // default: the log's file name
};
// Plots the keys of a metrics log: the keys naming a loss share one chart, each other key
// (lr, grad_norm, ...) gets its own. Returns the keys the log never has, which are left out;
// an Error when none of them has any value.
std::vector<std::string> plot_metrics(const PlotMetricsOpts& o);

}  // namespace fathom::train
