// fathom logits: one forward pass over the ids; writes F32 [T, vocab] `logits` to a safetensors file.
#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "io/safetensors.h"

namespace fathom::cli {

void add_logits(CLI::App& app) {
  struct Args {
    ModelArgs m;
    std::string ids, out;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("logits", "write the logits of one forward pass to a safetensors file");
  a->m.add(sub);
  sub->add_option("--ids", a->ids, "comma-separated token ids")->required();
  sub->add_option("--out", a->out, "output .safetensors file")->required();
  sub->callback([a] {
    const std::vector<int32_t> ids = parse_ids(a->ids);
    auto model = load_model(a->m.model, a->m.load_opts());
    const int64_t T = int64_t(ids.size()), V = model->config().vocab_size;
    KvCache cache = model->make_cache(1, T);
    std::vector<float> logits(size_t(T * V));  // [T, V]
    ForwardOpts fo;
    fo.attn = parse_attn(a->m.attn);
    model->forward({SeqChunk{0, 0, ids.data(), T, true}}, cache, logits.data(), fo);
    write_safetensors_f32(a->out, {{"logits", {{T, V}, logits.data()}}});
  });
}

}  // namespace fathom::cli
