#include "core/progress.h"

#include <unistd.h>

#include <cstdio>
#include <utility>

namespace fathom {

Progress::Progress(bool want, std::string label, uint64_t total)
    : on_(want && isatty(STDERR_FILENO)), label_(std::move(label)), total_(total) {}

Progress::~Progress() {
  if (drawn_ && !ended_) std::fputc('\n', stderr);
}

void Progress::step(std::optional<uint64_t> bytes) {
  ++done_;
  if (bytes) bytes_ = bytes;
  if (!on_ || ended_) return;
  const auto now = std::chrono::steady_clock::now();
  const bool last = done_ >= total_;
  if (!last && drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  draw();
  if (last) {
    std::fputc('\n', stderr);
    ended_ = true;
  }
}

void Progress::draw() {
  const unsigned pct = total_ ? unsigned(100 * done_ / total_) : 100;
  std::fprintf(stderr, "\r%s %llu/%llu (%u%%)", label_.c_str(), (unsigned long long)done_,
               (unsigned long long)total_, pct);
  if (bytes_) std::fprintf(stderr, ", %.2f GB", double(*bytes_) / 1e9);
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace fathom
