// fathom logits: one forward pass over the ids; writes F32 [T, vocab] `logits` to a safetensors file.
// With --mtp also `mtp_logits`, F32 [T-1, vocab]: the first MTP module's row i predicts t_{i+2}.
#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "io/safetensors.h"

namespace fathom::cli {

void add_logits(CLI::App& app) {
  struct Args {
    ModelArgs m;
    std::string ids, out;
    bool mtp = false;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("logits", "write the logits of one forward pass to a safetensors file");
  a->m.add(sub);
  sub->add_option("--ids", a->ids, "comma-separated token ids")->required();
  sub->add_option("--out", a->out, "output .safetensors file")->required();
  sub->add_flag("--mtp", a->mtp, "also write mtp_logits [T-1, vocab] from the first multi-token prediction module");
  sub->callback([a] {
    const std::vector<int32_t> ids = parse_ids(a->ids);
    auto model = load_model(a->m.model, a->m.load_opts());
    const int64_t T = int64_t(ids.size()), V = model->config().vocab_size;
    KvCache cache = model->make_cache(1, T);
    std::vector<float> logits(size_t(T * V));  // [T, V]
    ForwardOpts fo;
    fo.attn = parse_attn(a->m.attn);
    if (!a->mtp) {
      model->forward({SeqChunk{0, 0, ids.data(), T, true}}, cache, logits.data(), fo);
      write_safetensors_f32(a->out, {{"logits", {{T, V}, logits.data()}}});
      return;
    }
    if (model->mtp_modules() == 0) fail("--mtp: {} has no multi-token prediction module", a->m.model);
    if (T < 2) fail("--mtp needs at least 2 ids");
    const int64_t D = model->config().hidden_size;
    std::vector<float> hidden(size_t(T * D));  // [T, D] after the final norm
    fo.final_hidden = hidden.data();
    model->forward({SeqChunk{0, 0, ids.data(), T, true}}, cache, logits.data(), fo);
    fo.final_hidden = nullptr;
    KvCache mtp_cache = model->make_mtp_cache(1, T);
    std::vector<float> mtp_logits(size_t((T - 1) * V));  // [T-1, V]
    model->mtp_forward(0, {MtpChunk{0, 0, hidden.data(), ids.data() + 1, T - 1, true}}, mtp_cache, mtp_logits.data(),
                       nullptr, fo);
    write_safetensors_f32(a->out, {{"logits", {{T, V}, logits.data()}}, {"mtp_logits", {{T - 1, V}, mtp_logits.data()}}});
  });
}

}  // namespace fathom::cli
