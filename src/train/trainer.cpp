// The training loop. One optimizer step: this rank's micro-batches forward and backward
// (gradients scaled by the whole step's target counts), the gradients and statistics summed
// over ranks, clipping, AdamW at the schedule's lr, then the router-bias rule on the step's
// loads. Everything a step depends on is a function of the step index and the saved state,
// so a resumed run continues bit for bit.
#include "train/trainer.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>

#include <fmt/format.h>

#include "core/error.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/blas.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/metrics.h"

namespace fathom::train {

Batch read_ids_file(const std::string& path) {
  const TensorStore store = TensorStore::open(path);
  const TensorView* t = store.find("input_ids");
  if (!t) fail("{}: no tensor input_ids", path);
  if (t->dtype != DType::I64 || t->shape.size() != 2)
    fail("{}: input_ids must be I64 [B, T], not {} {}", path, dtype_name(t->dtype), t->shape_str());
  if (t->shape[0] < 1 || t->shape[1] < 2) fail("{}: input_ids {} needs a sequence of two tokens or more", path, t->shape_str());
  std::vector<int32_t> ids(size_t(t->numel()));
  for (size_t i = 0; i < ids.size(); ++i) {
    int64_t v;
    std::memcpy(&v, static_cast<const uint8_t*>(t->data) + 8 * i, 8);
    if (v < 0 || v > INT32_MAX) fail("{}: input_ids holds {}, not a token id", path, v);
    ids[i] = int32_t(v);
  }
  return batch_from_ids(ids, t->shape[0], t->shape[1]);
}

namespace {

Batch slice_rows(const Batch& b, int64_t r0, int64_t r1) {
  Batch s;
  s.B = r1 - r0;
  s.T = b.T;
  s.ids.assign(b.ids.begin() + r0 * b.T, b.ids.begin() + r1 * b.T);
  s.target.assign(b.target.begin() + r0 * b.T, b.target.begin() + r1 * b.T);
  return s;
}

// The step's statistics over every micro-batch and rank, as one flat vector to all-reduce.
struct StepTotals {
  PassStats st;
  void add(const PassStats& p) {
    if (st.load.empty()) {
      st = p;
      return;
    }
    st.main_sum += p.main_sum;
    st.main_count += p.main_count;
    st.main_correct += p.main_correct;
    for (size_t k = 0; k < p.mtp_sum.size(); ++k) {
      st.mtp_sum[k] += p.mtp_sum[k];
      st.mtp_count[k] += p.mtp_count[k];
    }
    st.balance_sum += p.balance_sum;
    for (size_t l = 0; l < p.load.size(); ++l)
      for (size_t e = 0; e < p.load[l].size(); ++e) st.load[l][e] += p.load[l][e];
  }
  void reduce(const Dist& d) {
    std::vector<double> v{st.main_sum, double(st.main_count), double(st.main_correct), st.balance_sum};
    for (size_t k = 0; k < st.mtp_sum.size(); ++k) v.insert(v.end(), {st.mtp_sum[k], double(st.mtp_count[k])});
    for (auto& l : st.load) v.insert(v.end(), l.begin(), l.end());
    d.sum(v.data(), int64_t(v.size()));
    size_t i = 0;
    st.main_sum = v[i++];
    st.main_count = int64_t(v[i++]);
    st.main_correct = int64_t(v[i++]);
    st.balance_sum = v[i++];
    for (size_t k = 0; k < st.mtp_sum.size(); ++k) {
      st.mtp_sum[k] = v[i++];
      st.mtp_count[k] = int64_t(v[i++]);
    }
    for (auto& l : st.load)
      for (double& x : l) x = v[i++];
  }
};

struct Losses {
  double total = 0, main = 0, mtp = 0, balance = 0;
};

Losses losses(const PassStats& st, const LossScale& sc, const Objective& obj) {
  Losses l;
  l.main = st.main_sum / double(std::max<int64_t>(sc.main_targets, 1));
  for (size_t k = 0; k < st.mtp_sum.size(); ++k)
    l.mtp += st.mtp_sum[k] / double(std::max<int64_t>(sc.mtp_targets[k], 1)) / double(st.mtp_sum.size());
  l.balance = st.balance_sum / double(std::max<int64_t>(sc.sequences, 1));
  l.total = l.main + obj.mtp_weight * l.mtp + l.balance;
  return l;
}

void sum_grads(const std::vector<Param*>& ps, const Dist& d, std::vector<float>& flat) {
  if (d.size() <= 1) return;
  size_t n = 0;
  for (const Param* p : ps) n += p->g.size();
  flat.resize(n);
  size_t off = 0;
  for (const Param* p : ps) {
    std::copy(p->g.begin(), p->g.end(), flat.begin() + ptrdiff_t(off));
    off += p->g.size();
  }
  d.sum(flat.data(), int64_t(n));
  off = 0;
  for (Param* p : ps) {
    std::copy_n(flat.begin() + ptrdiff_t(off), p->g.size(), p->g.begin());
    off += p->g.size();
  }
}

std::string duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = int64_t(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, t / 60 % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;
}

}  // namespace

void run_training(const TrainOpts& o, const Dist& dist) {
  using clock = std::chrono::steady_clock;
  if (o.model.empty() == o.config.empty()) fail("train: give exactly one of --model DIR and --config config.json");
  if (o.data.empty() == o.ids_file.empty()) fail("train: give exactly one of --data FILE and --ids-file FILE");
  if (o.steps < 1) fail("--steps: {} is out of range: must be at least 1", o.steps);
  if (o.accum < 1) fail("--accum: {} is out of range: must be at least 1", o.accum);
  const bool root = dist.root();
  std::unique_ptr<TrainModel> m =
      o.model.empty() ? TrainModel::init(read_config_json(o.config), o.seed) : TrainModel::load(o.model);
  ThreadPool pool(o.threads);
  blas_threads(1);  // matmuls are split over the pool instead
  const Compute cx(&pool, o.bf16);

  // Data.
  std::optional<Dataset> data;
  Batch fixed;
  const std::string tok_dir = !o.tokenizer.empty() ? o.tokenizer : o.model;
  if (!o.ids_file.empty()) {
    fixed = read_ids_file(o.ids_file);
  } else {
    if (tok_dir.empty()) fail("train: --data needs a tokenizer: give --tokenizer DIR");
    const Tokenizer tok = Tokenizer::load(tok_dir);
    std::optional<ChatTemplate> tmpl;
    try {
      tmpl = ChatTemplate::load(tok_dir);
    } catch (const Error&) {
      if (o.sft) throw;  // SFT needs the template; plain text does not
    }
    DataOpts d;
    d.path = o.data;
    d.seq_len = o.seq_len;
    d.batch = o.batch;
    d.seed = o.seed;
    d.val_frac = o.val_frac;
    d.mode = o.sft ? DataOpts::Chat : DataOpts::Auto;
    data = Dataset::load(d, tok, tmpl ? &*tmpl : nullptr);
  }
  const int64_t B = data ? o.batch : fixed.B;
  const int64_t parts = int64_t(dist.size()) * o.accum;
  if (B % parts != 0)
    fail("train: the batch of {} sequences does not split into {} ranks × {} micro-batches", B, dist.size(), o.accum);
  const int64_t T = data ? data->seq_len() : fixed.T;
  const int64_t K = o.objective.mtp_weight != 0 ? m->mtp_modules() : 0;

  AdamW opt(m->params(), o.adam);
  Schedule sch = o.schedule;
  sch.lr = o.adam.lr;
  sch.total = o.steps;
  sch.check();
  const std::vector<Param*> trainable = m->trainable();
  // Checkpoints go beside the model, step-N each; the two latest are kept.
  const std::string ckpt_root = o.out.empty() ? std::string() : o.out + "-checkpoints";
  auto checkpoint = [&](int64_t next_step) {
    TrainState s;
    s.data_pos = uint64_t(next_step);
    s.rng_seed = o.seed;
    std::filesystem::create_directories(ckpt_root);
    save_train_state(fmt::format("{}/step-{:06}", ckpt_root, next_step), opt, s);
    std::vector<std::filesystem::path> old;
    for (const auto& e : std::filesystem::directory_iterator(ckpt_root))
      if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0 &&
          e.path().extension().empty())
        old.push_back(e.path());
    std::sort(old.begin(), old.end());
    for (size_t i = 0; i + 2 < old.size(); ++i) std::filesystem::remove_all(old[i]);
  };
  int64_t start = 0;
  if (!o.resume.empty()) {
    const TrainState s = load_train_state(o.resume, opt);
    start = int64_t(s.data_pos);
    if (s.rng_seed != o.seed) fail("--resume: the checkpoint was made with --seed {}, not {}", s.rng_seed, o.seed);
    if (start >= o.steps) fail("--resume: the checkpoint is at step {}, and --steps is {}", start, o.steps);
  }
  std::optional<MetricsLog> log;
  if (root && !o.log.empty()) log.emplace(o.log, !o.resume.empty());
  const bool tty = isatty(2);

  auto save = [&](const std::string& dir, DType dtype) {
    SaveOpts so;
    so.dir = dir;
    so.config = m->config_json();
    // The weights are written in bf16 or f32: a source's FP8 quantization no longer applies.
    so.config.erase("quantization_config");
    so.params = m->params();
    so.dtype = dtype;
    // A model trained from ids alone may have no tokenizer to copy.
    if (!tok_dir.empty() && std::filesystem::exists(std::filesystem::path(tok_dir) / "tokenizer.json"))
      so.tokenizer_dir = tok_dir;
    so.lookup = [&](const WeightSpec& s) -> const float* {
      const Param* p = m->source_of(s);
      return p ? p->w.data() : nullptr;
    };
    save_model(so);
  };
  const DType save_dtype = o.save_dtype == "f32" ? DType::F32 : DType::BF16;
  if (o.save_dtype != "f32" && o.save_dtype != "bf16") fail("--save-dtype: {} is not one of bf16, f32", o.save_dtype);

  auto validate = [&]() -> double {
    if (!data || data->val_sequences() == 0) return NAN;
    double sum = 0;
    int64_t count = 0;
    for (const Batch& vb : data->val_batches()) {
      const LossScale sc = count_targets(vb, 0);
      const PassStats st = m->step(vb, Objective{}, sc, false, cx);
      sum += st.main_sum;
      count += st.main_count;
    }
    return count ? sum / double(count) : NAN;
  };

  std::vector<float> flat;
  const auto t_start = clock::now();
  double timed_s = 0;
  int64_t timed_steps = 0;
  for (int64_t step = start; step < o.steps; ++step) {
    const auto t0 = clock::now();
    const Batch mine = data ? data->train_batch(step, dist.rank(), dist.size())
                            : slice_rows(fixed, dist.rank() * B / dist.size(), (dist.rank() + 1) * B / dist.size());
    std::vector<Batch> micro;
    const int64_t mb = mine.B / o.accum;
    for (int64_t a = 0; a < o.accum; ++a) micro.push_back(slice_rows(mine, a * mb, (a + 1) * mb));
    LossScale sc;
    sc.mtp_targets.assign(size_t(K), 0);
    sc.main_targets = 0;
    sc.sequences = 0;
    for (const Batch& b : micro) {
      const LossScale c = count_targets(b, K);
      sc.main_targets += c.main_targets;
      sc.sequences += c.sequences;
      for (int64_t k = 0; k < K; ++k) sc.mtp_targets[size_t(k)] += c.mtp_targets[size_t(k)];
    }
    std::vector<int64_t> counts{sc.main_targets, sc.sequences};
    counts.insert(counts.end(), sc.mtp_targets.begin(), sc.mtp_targets.end());
    dist.sum(counts.data(), int64_t(counts.size()));
    sc.main_targets = counts[0];
    sc.sequences = counts[1];
    for (int64_t k = 0; k < K; ++k) sc.mtp_targets[size_t(k)] = counts[size_t(2 + k)];

    m->zero_grad();
    StepTotals tot;
    for (const Batch& b : micro) tot.add(m->step(b, o.objective, sc, true, cx));
    tot.reduce(dist);
    sum_grads(trainable, dist, flat);
    const Losses L = losses(tot.st, sc, o.objective);
    const double gnorm = grad_norm(trainable, &pool);
    if (!std::isfinite(gnorm) || !std::isfinite(L.total))
      fail("step {}: the loss ({}) or gradient norm ({}) is not finite; the last checkpoint is left as it was",
           step + 1, L.total, gnorm);
    const double lr = sch.lr_at(step);
    opt.step(lr, &pool, clip_coefficient(gnorm, o.clip));  // clipping folded into the update
    if (o.bias_update != 0) m->update_biases(tot.st.load, o.bias_update);
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    timed_s += dt;
    ++timed_steps;
    const double tok_s = double(B * T) / dt;

    const bool last = step + 1 == o.steps;
    double val = NAN;
    if (root && data && ((o.val_every > 0 && (step + 1) % o.val_every == 0) || last)) val = validate();
    if (root) {
      nlohmann::json row = {{"step", step + 1},          {"loss", L.total},   {"loss_main", L.main},
                            {"lr", lr},                  {"grad_norm", gnorm}, {"tokens_per_s", tok_s},
                            {"accuracy", double(tot.st.main_correct) / double(std::max<int64_t>(sc.main_targets, 1))}};
      if (K) row["loss_mtp"] = L.mtp;
      if (o.objective.balance_alpha != 0) row["loss_balance"] = L.balance;
      if (std::isfinite(val)) row["val_loss"] = val;
      if (log) log->write(row);
      if (o.json) fmt::print("{}\n", row.dump());
      std::fflush(stdout);
      const double eta = timed_s / double(timed_steps) * double(o.steps - step - 1);
      const std::string line = fmt::format("step {}/{}  loss {:.4f}  lr {:.2e}  grad norm {:.3f}  {:.0f} tok/s  ETA {}{}",
                                           step + 1, o.steps, L.total, lr, gnorm, tok_s, duration(eta),
                                           std::isfinite(val) ? fmt::format("  val {:.4f}", val) : "");
      if (tty) fmt::print(stderr, "\r\033[K{}{}", line, last ? "\n" : "");
      else if (!o.json && ((step + 1) % 10 == 0 || last || step == start)) fmt::print(stderr, "{}\n", line);
    }
    if (root && o.save_every > 0 && (step + 1) % o.save_every == 0 && !ckpt_root.empty()) checkpoint(step + 1);
  }
  if (root && !o.out.empty()) {
    save(o.out, save_dtype);
  }
  if (root) {
    const std::string svg = !o.plot.empty() ? o.plot
                            : !o.log.empty() ? std::filesystem::path(o.log).replace_extension(".svg").string()
                                             : std::string();
    if (!svg.empty() && !o.log.empty()) {
      PlotMetricsOpts p;
      p.log = o.log;
      p.out = svg;
      p.keys = {"loss", "loss_main", "loss_mtp", "val_loss"};
      plot_metrics(p);
    }
    const double total_s = std::chrono::duration<double>(clock::now() - t_start).count();
    if (!o.json)
      fmt::print(stderr, "trained {} steps in {}: {:.0f} tok/s, peak RSS {:.0f} MB\n", o.steps - start, duration(total_s),
                 double((o.steps - start) * B * T) / timed_s, peak_rss_mb());
  }
  dist.barrier();
}

}  // namespace fathom::train
