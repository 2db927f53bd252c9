// fathom grad: one fp32 forward and backward of DeepSeek-V3's training objective over the
// batch in an ids file; writes the losses and every gradient (outside harnesses compare
// them with references, so the names and layout are fixed).
#include <cstring>

#include "cli/commands.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "train/blas.h"
#include "train/model.h"
#include "train/trainer.h"

namespace fathom::cli {


void add_grad(CLI::App& app) {
  struct Args {
    std::string model, ids, out;
    double mtp = 0, alpha = 0, gamma = 0;
    bool has_gamma = false;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("grad", "one fp32 forward and backward of the training loss; writes the losses and every gradient");
  sub->add_option("--model", a->model, "HF-layout checkpoint directory")->required();
  sub->add_option("--ids-file", a->ids, "safetensors file with input_ids (I64 [B, T]); other tensors are ignored")->required();
  sub->add_option("--out", a->out, "output .safetensors: loss, loss_main, loss_mtp, loss_balance, grad.<tensor>")->required();
  sub->add_option("--mtp-weight", a->mtp, "λ: weight of the multi-token-prediction loss");
  sub->add_option("--balance-alpha", a->alpha, "α of the sequence-wise balance loss");
  auto* g = sub->add_option("--bias-update", a->gamma, "γ of the router-bias rule: also writes load.<bias> and bias_after_step.<bias>");
  sub->add_option("--threads", a->threads, "threads (0: all cores)");
  sub->callback([a, g] {
    train::Batch b = train::read_ids_file(a->ids);
    auto m = train::TrainModel::load(a->model);
    ThreadPool pool(a->threads);
    train::blas_threads(1);  // matmuls are split over the pool instead
    const train::Objective obj{a->mtp, a->alpha, {}};
    const int64_t K = obj.mtp_weight != 0 ? m->mtp_modules() : 0;
    const train::LossScale sc = train::count_targets(b, K);
    m->zero_grad();
    const train::PassStats st = m->step(b, obj, sc, true, &pool);
    const float main = float(st.main_sum / double(std::max<int64_t>(sc.main_targets, 1)));
    double mtp_mean = 0;
    for (int64_t k = 0; k < K; ++k) mtp_mean += st.mtp_sum[size_t(k)] / double(std::max<int64_t>(sc.mtp_targets[size_t(k)], 1));
    const float mtp = K ? float(mtp_mean / double(K)) : 0.0f;
    const float bal = float(st.balance_sum / double(sc.sequences));
    const float total = float(double(main) + a->mtp * double(mtp) + double(bal));
    std::vector<std::pair<std::string, std::pair<std::vector<int64_t>, const float*>>> out;
    out.push_back({"loss", {{1}, &total}});
    out.push_back({"loss_main", {{1}, &main}});
    out.push_back({"loss_mtp", {{1}, &mtp}});
    out.push_back({"loss_balance", {{1}, &bal}});
    for (const train::Param* p : m->params())
      if (p->trainable) out.push_back({"grad." + p->name, {p->shape, p->g.data()}});
    std::vector<std::vector<float>> keep;  // loads and updated biases, alive until written
    if (g->count()) {
      m->update_biases(st.load, a->gamma);
      for (size_t i = 0; i < m->moe_layers().size(); ++i) {
        const train::Param* bias = m->moe_layers()[i].bias;
        if (!bias) continue;
        keep.emplace_back(st.load[i].begin(), st.load[i].end());
        out.push_back({"load." + bias->name, {bias->shape, keep.back().data()}});
        out.push_back({"bias_after_step." + bias->name, {bias->shape, bias->w.data()}});
      }
    }
    // `keep` may reallocate while filling: take the pointers after.
    size_t li = 0;
    for (auto& e : out)
      if (e.first.rfind("load.", 0) == 0) e.second.second = keep[li++].data();
    write_safetensors_f32(a->out, out);
  });
}

}  // namespace fathom::cli
