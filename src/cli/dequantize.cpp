// fathom dequantize: every tensor of a GGUF model as F32 safetensors, for comparing weights
// with other tools. The output layout is relied on by outside scripts: keep it stable.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "io/gguf_dequantize.h"

namespace fathom::cli {

void add_dequantize(CLI::App& app) {
  auto o = std::make_shared<GgufDequantizeOpts>();
  auto* sub = app.add_subcommand("dequantize", "write every tensor of a GGUF model as F32 safetensors");
  sub->add_option("--model", o->model, "GGUF file (or the first shard of a split set)")->required();
  sub->add_option("--out", o->out_dir, "output directory: gets model.safetensors, tensors under their GGUF names")
      ->required();
  sub->callback([o] {
    const GgufDequantizeResult r = dequantize_gguf(*o);
    std::fprintf(stderr, "%s: %lld tensors, %.3f GB -> %.3f GB F32\n", r.path.c_str(), (long long)r.tensors,
                 double(r.bytes_in) / 1e9, double(r.bytes_out) / 1e9);
  });
}

}  // namespace fathom::cli
