// libFuzzer target for reading a reward program's stdout (fathom grpo --reward-cmd): the first
// byte is the number of completions, the rest is what the program printed. The reader must
// return at most that many finite rewards, or throw fathom::Error.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/error.h"
#include "train/reward_cmd.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t n = data[0];
  const std::string_view out(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const auto r = fathom::train::parse_reward_output(out, n, "fuzz");
    if (r.size() > n) std::abort();
    for (double v : r)
      if (!std::isfinite(v)) std::abort();
  } catch (const fathom::Error&) {
  }
  return 0;
}
