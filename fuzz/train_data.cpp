// libFuzzer target for the training data reader: the input is a data file (text, JSONL of
// {"text"} documents and {"messages"} chat examples, or a mix). Loading it with the tiny
// 1024-token tokenizer and its chat template must either succeed, giving batches whose
// ids are in the vocabulary and whose shapes agree, or throw fathom::Error.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"

namespace {

std::string tiny_dir() {
  std::string here = __FILE__;
  return here.substr(0, here.rfind("/fuzz/")) + "/tests/data/tokenizers/tiny";
}

struct Env {
  fathom::Tokenizer tok = fathom::Tokenizer::load(tiny_dir());
  fathom::ChatTemplate tmpl = fathom::ChatTemplate::load(tiny_dir());
  std::string path = "/tmp/fathom-fuzz-train-data-" + std::to_string(::getpid()) + ".jsonl";
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env env;
  if (size < 1) return 0;
  FILE* f = std::fopen(env.path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(data + 1, 1, size - 1, f);
  std::fclose(f);
  fathom::train::DataOpts o;
  o.path = env.path;
  o.seq_len = 2 + data[0] % 30;  // the first byte picks the shape and the held-out share
  o.batch = 1 + (data[0] >> 5);
  o.val_frac = (data[0] & 16) ? 0.25 : 0.0;
  o.seed = data[0];
  o.threads = 1;
  try {
    const fathom::train::Dataset d = fathom::train::Dataset::load(o, env.tok, &env.tmpl);
    const int32_t V = env.tok.vocab_size();
    for (int64_t i = 0; i < 3 && d.train_sequences() > 0; ++i) {
      const fathom::train::Batch b = d.train_batch(i);
      if (int64_t(b.ids.size()) != b.B * b.T || b.target.size() != b.ids.size()) std::abort();
      for (int32_t id : b.ids)
        if (id < 0 || id >= V) std::abort();
    }
    for (const auto& b : d.val_batches())
      if (int64_t(b.ids.size()) != b.B * b.T) std::abort();
  } catch (const fathom::Error&) {
  }
  return 0;
}
