#pragma once
// A progress line on stderr for long jobs (loading, quantizing, writing checkpoints):
//   "<label> <done>/<total> (<pct>%)[, <GB> GB]"
// redrawn in place, at most ~10 times a second, and ended with a newline when done reaches
// total. Shown only when asked for and stderr is a terminal; otherwise every call is a no-op,
// so callers need no checks of their own.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace fathom {

class Progress {
 public:
  // `label` names the job and its items, e.g. "loading tensors"; `total` items are expected.
  Progress(bool want, std::string label, uint64_t total);
  // A line left unfinished (an error unwound the job) still gets its newline, so what is
  // printed next starts a line of its own.
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // One more item done; `bytes`, where given, is the running total of bytes to show.
  void step(std::optional<uint64_t> bytes = std::nullopt);
  bool shown() const { return on_; }

 private:
  void draw();

  bool on_;
  std::string label_;
  uint64_t total_, done_ = 0;
  std::optional<uint64_t> bytes_;
  bool drawn_ = false, ended_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace fathom
