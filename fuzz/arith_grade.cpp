// libFuzzer target for nano-R1's answer checker (tasks/arith.h, grade): it reads any text a
// model writes and never throws. The first byte picks the expected value and whether the
// prompt opened the think block; the rest is the completion. A correct grade must carry the
// expected answer, and formatting must not depend on the expected value.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "tasks/arith.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int64_t expected = int64_t(data[0] >> 1) - 20;
  const fathom::tasks::GradeOpts opts{.think_opened = (data[0] & 1) != 0};
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const fathom::tasks::Graded g = fathom::tasks::grade(text, expected, opts);
  if (g.correct && (!g.answer || *g.answer != expected)) std::abort();
  if (!g.correct && g.answer && *g.answer == expected) std::abort();
  const fathom::tasks::Graded other = fathom::tasks::grade(text, expected + 1, opts);
  if (other.formatted != g.formatted || other.answer != g.answer) std::abort();
  return 0;
}
