// libFuzzer target for GRPO's --prompts file (JSON lines with "prompt", "answer" and other
// keys). The first byte's low bit says whether the built-in accuracy reward needs integer
// answers; the rest is the file. Reading must give at least one prompt (with an integer value
// for every answer when asked), or throw fathom::Error.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "train/grpo.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/fathom-fuzz-grpo-prompts-" + std::to_string(::getpid()) + ".jsonl";
  if (size < 1) return 0;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(data + 1, 1, size - 1, f);
  std::fclose(f);
  const bool need_value = data[0] & 1;
  try {
    const auto items = fathom::train::read_prompts(path, need_value);
    if (items.empty()) std::abort();
    for (const auto& it : items) {
      if (need_value && !it.value) std::abort();
      if (!it.extra.is_object() || it.extra.contains("prompt") || it.extra.contains("answer")) std::abort();
    }
  } catch (const fathom::Error&) {
  }
  return 0;
}
