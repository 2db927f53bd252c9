#include "train/grpo.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>

#include <fmt/format.h>

#include "core/error.h"
#include "core/random.h"
#include "runtime/batch_generate.h"
#include "train/blas.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/metrics.h"
#include "train/model.h"

namespace fathom::train {

namespace {

using clock_t_ = std::chrono::steady_clock;

double since(clock_t_::time_point t) { return std::chrono::duration<double>(clock_t_::now() - t).count(); }

std::optional<int64_t> parse_int(const std::string& s) {
  int64_t v = 0;
  const char* e = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), e, v);
  if (ec != std::errc() || p != e || s.empty()) return std::nullopt;
  return v;
}

// The prompts a run visits: the arithmetic task's problems in order, or a file's lines in a
// seeded shuffled order (a new permutation each pass).
class PromptSource {
 public:
  PromptSource(const GrpoOpts& o) : o_(o) {
    if (!o.prompts.empty()) items_ = read_prompts(o.prompts, o.reward_cmd.command.empty());
  }

  PromptItem at(int64_t k) const {
    if (items_.empty()) {
      const tasks::Problem p = tasks::generate(o_.task_seed, k, o_.difficulty);
      PromptItem it;
      it.prompt = p.prompt;
      it.answer = p.answer;
      it.value = p.value;
      it.extra = {{"difficulty", p.difficulty}};
      return it;
    }
    const int64_t n = int64_t(items_.size()), pass = k / n;
    // Position k % n of pass `pass`: a Fisher-Yates permutation seeded by (seed, pass).
    std::vector<int64_t> perm(static_cast<size_t>(n));
    std::iota(perm.begin(), perm.end(), 0);
    uint64_t s = splitmix64(o_.seed ^ splitmix64(uint64_t(pass) + 0x5eed));
    for (int64_t i = n - 1; i > 0; --i) {
      s = splitmix64(s);
      std::swap(perm[size_t(i)], perm[size_t(s % uint64_t(i + 1))]);
    }
    return items_[size_t(perm[size_t(k % n)])];
  }

 private:
  const GrpoOpts& o_;
  std::vector<PromptItem> items_;
};

// The policy's main-model tensors as a store inference loads from (MTP layers are left out:
// sampling does not draft).
TensorStore policy_store(const TrainModel& m) {
  const int64_t L = m.config().num_hidden_layers;
  std::vector<TensorView> views;
  for (const Param* p : m.params()) {
    int64_t layer = -1;
    if (p->name.rfind("model.layers.", 0) == 0) layer = std::atoll(p->name.c_str() + 13);
    if (layer >= L) continue;
    TensorView v;
    v.name = p->name;
    v.dtype = DType::F32;
    v.shape = p->shape;
    v.data = p->w.data();
    v.nbytes = p->w.size() * sizeof(float);
    views.push_back(std::move(v));
  }
  return TensorStore::from_views(std::move(views), nullptr);
}

std::unique_ptr<Model> sampling_model(const TrainModel& m, int threads) {
  LoadOpts lo;
  lo.threads = threads;
  lo.store = [&m] { return policy_store(m); };
  return load_model(m.config(), "the policy", lo);
}

// One sampled completion and its score.
struct Rollout {
  int64_t prompt = 0;  // index in the step's prompts
  std::vector<int32_t> ids;
  double reward = 0, correct = 0, formatted = 0, advantage = 0;
};

// A training pass's batch: completions with their prompts, padded to the longest.
struct Micro {
  Batch b;
  std::vector<GrpoSeq> seqs;     // [B]
  std::vector<float> old, ref;   // [B*T] old and reference log-probabilities
};

Micro make_micro(const std::vector<const Rollout*>& rs, const std::vector<std::vector<int32_t>>& prompts, int32_t pad) {
  Micro m;
  m.b.B = int64_t(rs.size());
  for (const Rollout* r : rs)
    m.b.T = std::max<int64_t>(m.b.T, int64_t(prompts[size_t(r->prompt)].size() + r->ids.size()));
  m.b.ids.assign(size_t(m.b.B * m.b.T), pad);
  m.b.target.assign(size_t(m.b.B * m.b.T), 0);
  for (int64_t b = 0; b < m.b.B; ++b) {
    const auto& p = prompts[size_t(rs[size_t(b)]->prompt)];
    const auto& c = rs[size_t(b)]->ids;
    std::copy(p.begin(), p.end(), m.b.ids.begin() + b * m.b.T);
    std::copy(c.begin(), c.end(), m.b.ids.begin() + b * m.b.T + int64_t(p.size()));
    for (size_t t = 0; t < c.size(); ++t) m.b.target[size_t(b * m.b.T) + p.size() + t] = 1;
    m.seqs.push_back(GrpoSeq{b, rs[size_t(b)]->advantage, int64_t(c.size())});
  }
  m.old.assign(size_t(m.b.B * m.b.T), 0.f);
  m.ref.assign(size_t(m.b.B * m.b.T), 0.f);
  return m;
}

std::string duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = int64_t(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, t / 60 % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

}  // namespace

std::vector<PromptItem> read_prompts(const std::string& path, bool need_value) {
  std::ifstream in(path);
  if (!in) fail("--prompts: cannot open {}", path);
  std::vector<PromptItem> items;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail("{}:{}: not valid JSON", path, n);
    if (!j.is_object() || !j.contains("prompt") || !j["prompt"].is_string())
      fail("{}:{}: each line must be an object with a string \"prompt\"", path, n);
    PromptItem it;
    it.prompt = j["prompt"].get<std::string>();
    if (j.contains("answer"))
      it.answer = j["answer"].is_string() ? j["answer"].get<std::string>()
                                          : j["answer"].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    it.value = parse_int(it.answer);
    if (need_value && !it.value)
      fail("{}:{}: the built-in accuracy reward needs an integer \"answer\" (or give --reward-cmd)", path, n);
    for (auto& [k, v] : j.items())
      if (k != "prompt" && k != "answer") it.extra[k] = v;
    items.push_back(std::move(it));
  }
  if (items.empty()) fail("--prompts: {} holds no prompts", path);
  return items;
}

void run_grpo(const GrpoOpts& o) {
  if (o.model.empty()) fail("grpo: --model is required (the starting policy, also the KL reference)");
  if (o.steps < 1 || o.mu < 1 || o.group < 1 || o.prompts_per_step < 1 || o.micro_batch < 1)
    fail("grpo: --steps, --mu, --group, --prompts-per-step and --micro-batch must be at least 1");
  const DType save_dtype = o.save_dtype == "f32" ? DType::F32 : DType::BF16;
  if (o.save_dtype != "f32" && o.save_dtype != "bf16") fail("--save-dtype: {} is not one of bf16, f32", o.save_dtype);
  const std::string tok_dir = o.tokenizer.empty() ? o.model : o.tokenizer;
  const Tokenizer tok = Tokenizer::load(tok_dir);
  const ChatTemplate tmpl = ChatTemplate::load(tok_dir);
  std::unique_ptr<TrainModel> policy = TrainModel::load(o.model);
  std::unique_ptr<TrainModel> ref = o.loss.beta != 0 ? TrainModel::load(o.model) : nullptr;
  const ModelConfig& cfg = policy->config();
  const std::vector<int32_t> stops = stop_ids(tok, cfg);
  const int32_t pad = stops.empty() ? 0 : stops[0];
  ThreadPool pool(o.threads);
  blas_threads(1);
  const Compute cx(&pool, o.bf16);
  const PromptSource source(o);
  if (!o.prompts.empty() && o.eval_every > 0) fail("--eval-every evaluates the arithmetic task; it needs no --prompts");

  AdamW opt(policy->params(), o.adam);
  Schedule sch = o.schedule;
  sch.lr = o.adam.lr;
  sch.total = o.steps;
  sch.check();
  const std::vector<Param*> trainable = policy->trainable();
  int64_t start = 0;
  if (!o.resume.empty()) {
    const TrainState s = load_train_state(o.resume, opt);
    start = int64_t(s.data_pos);
    if (s.rng_seed != o.seed) fail("--resume: the checkpoint was made with --seed {}, not {}", s.rng_seed, o.seed);
    if (start >= o.steps) fail("--resume: the checkpoint is at step {}, and --steps is {}", start, o.steps);
  }
  std::optional<MetricsLog> log;
  if (!o.log.empty()) log.emplace(o.log, !o.resume.empty());
  const bool tty = isatty(2);
  const std::string ckpt_root = o.out.empty() ? std::string() : o.out + "-checkpoints";

  auto save = [&](const std::string& dir, DType dtype) {
    SaveOpts so;
    so.dir = dir;
    so.config = policy->config_json();
    so.config.erase("quantization_config");
    so.params = policy->params();
    so.dtype = dtype;
    so.tokenizer_dir = tok_dir;
    so.lookup = [&](const WeightSpec& s) -> const float* {
      const Param* p = policy->source_of(s);
      return p ? p->w.data() : nullptr;
    };
    save_model(so);
  };
  auto checkpoint = [&](int64_t next_step) {
    TrainState s;
    s.data_pos = uint64_t(next_step);
    s.rng_seed = o.seed;
    std::filesystem::create_directories(ckpt_root);
    save_train_state(fmt::format("{}/step-{:06}", ckpt_root, next_step), opt, s);
    std::vector<std::filesystem::path> old;
    for (const auto& e : std::filesystem::directory_iterator(ckpt_root))
      if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0 && e.path().extension().empty())
        old.push_back(e.path());
    std::sort(old.begin(), old.end());
    for (size_t i = 0; i + 2 < old.size(); ++i) std::filesystem::remove_all(old[i]);
  };
  auto evaluate = [&](int64_t step) {
    std::unique_ptr<Model> pm = sampling_model(*policy, o.threads);
    EvalOpts eo;
    eo.n = o.eval_n;
    eo.seed = o.eval_seed;
    eo.difficulty = o.difficulty;
    eo.max_new_tokens = o.max_new_tokens;
    eo.max_slots = std::max<int64_t>(64, o.prompts_per_step * o.group);
    const EvalResult r = evaluate_arith(*pm, tok, tmpl, eo);
    const nlohmann::json row = {{"step", step}, {"eval_accuracy", r.accuracy()}, {"eval_n", r.n},
                                {"eval_format", double(r.formatted) / double(std::max<int64_t>(r.n, 1))}};
    if (log) log->write(row);
    if (o.json) fmt::print("{}\n", row.dump());
    fmt::print(stderr, "{}eval at step {}: accuracy {:.1f}% on {} held-out problems ({:.1f} s)\n", tty ? "\r\033[K" : "",
               step, 100.0 * r.accuracy(), r.n, r.seconds);
  };

  const auto t_start = clock_t_::now();
  double timed_s = 0, sample_tok = 0, sample_s = 0, train_tok = 0, train_s = 0;
  if (o.eval_every > 0 && start == 0) evaluate(0);
  for (int64_t step = start; step < o.steps; ++step) {
    const auto t0 = clock_t_::now();
    const int64_t P = o.prompts_per_step, G = o.group;
    // 1. Prompts.
    std::vector<PromptItem> items;
    std::vector<std::vector<int32_t>> prompt_ids;
    std::vector<bool> opened;  // the prompt's generation cue opens the thinking
    for (int64_t i = 0; i < P; ++i) {
      items.push_back(source.at(step * P + i));
      const std::string text = chat_prompt(tmpl, items.back().prompt);
      opened.push_back(text.size() >= 8 && text.compare(text.size() - 8, 8, "<think>\n") == 0);
      prompt_ids.push_back(tok.encode(text));
    }
    // 2. Sampling from the current policy.
    std::vector<std::vector<Completion>> comps;
    BatchGenStats gs;
    {
      std::unique_ptr<Model> pm = sampling_model(*policy, o.threads);
      BatchGenOpts g;
      g.group = G;
      g.max_new_tokens = o.max_new_tokens;
      g.sampling.temperature = o.temperature;
      g.sampling.top_p = o.top_p;
      g.sampling.seed = splitmix64(o.seed ^ splitmix64(uint64_t(step) + 0x9e37));
      g.stop_ids = stops;
      g.max_slots = P * G;
      comps = generate_groups(*pm, prompt_ids, g, &gs);
    }
    sample_tok += double(gs.generated);
    sample_s += gs.seconds;
    // 3. Rewards.
    std::vector<Rollout> rolls;
    std::vector<std::string> texts;
    for (int64_t i = 0; i < P; ++i)
      for (int64_t j = 0; j < G; ++j) {
        Rollout r;
        r.prompt = i;
        r.ids = comps[size_t(i)][size_t(j)].ids;
        texts.push_back(tok.decode(r.ids, /*skip_special=*/true));
        const tasks::GradeOpts go{.think_opened = opened[size_t(i)]};
        r.formatted = tasks::format_reward(texts.back(), go);
        if (items[size_t(i)].value) r.correct = tasks::grade(texts.back(), *items[size_t(i)].value, go).correct;
        r.reward = r.correct + o.format_weight * r.formatted;
        rolls.push_back(std::move(r));
      }
    if (!o.reward_cmd.command.empty()) {
      std::vector<RewardItem> ri;
      for (size_t k = 0; k < rolls.size(); ++k) {
        const PromptItem& it = items[size_t(rolls[k].prompt)];
        ri.push_back(RewardItem{it.prompt, texts[k], it.answer, it.extra});
      }
      const std::vector<double> rw = run_reward_cmd(o.reward_cmd, ri);
      for (size_t k = 0; k < rolls.size(); ++k) rolls[k].reward = rw[k];
    }
    // 4. Group-relative advantages.
    std::vector<const Rollout*> kept;
    int64_t groups_kept = 0;
    for (int64_t i = 0; i < P; ++i) {
      std::vector<double> rw;
      for (int64_t j = 0; j < G; ++j) rw.push_back(rolls[size_t(i * G + j)].reward);
      const bool equal = std::all_of(rw.begin(), rw.end(), [&](double v) { return v == rw[0]; });
      if (o.drop_equal && equal) continue;
      ++groups_kept;
      const std::vector<double> a = group_advantages(rw, o.scale_std);
      for (int64_t j = 0; j < G; ++j) {
        rolls[size_t(i * G + j)].advantage = a[size_t(j)];
        if (!rolls[size_t(i * G + j)].ids.empty()) kept.push_back(&rolls[size_t(i * G + j)]);
      }
    }
    // 5. Micro-batches of similar lengths, the reference's log-probabilities, μ updates.
    const auto t_train = clock_t_::now();
    std::stable_sort(kept.begin(), kept.end(), [](const Rollout* a, const Rollout* b) { return a->ids.size() < b->ids.size(); });
    std::vector<Micro> micro;
    for (size_t k = 0; k < kept.size(); k += size_t(o.micro_batch))
      micro.push_back(make_micro({kept.begin() + std::ptrdiff_t(k),
                                  kept.begin() + std::ptrdiff_t(std::min(kept.size(), k + size_t(o.micro_batch)))},
                                 prompt_ids, pad));
    GrpoPass base;
    base.step_seqs = int64_t(kept.size());
    base.step_tokens = 0;
    for (const Rollout* r : kept) base.step_tokens += int64_t(r->ids.size());
    GrpoLossOpts lo = o.loss;
    lo.max_len = o.max_new_tokens;
    LossScale sc;
    sc.sequences = std::max<int64_t>(1, int64_t(kept.size()));
    Objective obj;
    // Log-probabilities of the tempered distribution that sampled (greedy: the plain one).
    obj.token_temperature = o.temperature > 0 ? o.temperature : 1.0f;
    int64_t passes_tokens = 0;
    if (ref)
      for (Micro& m : micro) {
        obj.token_loss = [&](const TokenTerms& t) { std::copy(t.logp, t.logp + t.rows, m.ref.begin()); };
        ref->step(m.b, obj, sc, false, cx);
        passes_tokens += m.b.B * m.b.T;
      }
    GrpoSums first, all;
    double gnorm = 0, lr = sch.lr_at(step);
    std::vector<std::vector<double>> load;
    for (int64_t it = 0; it < o.mu && !micro.empty(); ++it) {
      policy->zero_grad();
      for (Micro& m : micro) {
        GrpoPass p = base;
        p.T = m.b.T;
        p.seqs = &m.seqs;
        p.old_logp = m.old.data();
        p.ref_logp = ref ? m.ref.data() : nullptr;
        obj.token_loss = [&](const TokenTerms& t) {
          // The first update's policy is the one that sampled: its log-probabilities are the
          // "old" ones, so the ratio is exactly 1 there.
          if (it == 0) std::copy(t.logp, t.logp + t.rows, m.old.begin());
          const GrpoSums s = grpo_token_loss(t, p, lo);
          for (GrpoSums* d : {it == 0 ? &first : nullptr, &all}) {
            if (!d) continue;
            d->loss += s.loss, d->kl += s.kl, d->entropy += s.entropy, d->ratio += s.ratio;
            d->clipped += s.clipped, d->tokens += s.tokens;
          }
        };
        const PassStats ps = policy->step(m.b, obj, sc, true, cx);
        if (o.bias_update != 0 && it == 0) {
          if (load.empty()) load = ps.load;
          else
            for (size_t l = 0; l < load.size(); ++l)
              for (size_t e = 0; e < load[l].size(); ++e) load[l][e] += ps.load[l][e];
        }
        passes_tokens += m.b.B * m.b.T;
      }
      gnorm = grad_norm(trainable, &pool);
      if (!std::isfinite(gnorm)) fail("step {}: the gradient norm is not finite; the last checkpoint is left as it was", step + 1);
      opt.step(lr, &pool, clip_coefficient(gnorm, o.clip));
      if (o.bias_update != 0 && it == 0 && !load.empty()) policy->update_biases(load, o.bias_update);
    }
    train_tok += double(passes_tokens);
    train_s += since(t_train);

    // 6. Logs.
    double reward = 0, acc = 0, fmt_ = 0, len = 0;
    for (const Rollout& r : rolls) {
      reward += r.reward;
      acc += r.correct;
      fmt_ += r.formatted;
      len += double(r.ids.size());
    }
    // A step whose groups were all dropped trained on nothing: its per-token terms are unknown (null).
    const double n = double(rolls.size()), toks = first.tokens ? double(first.tokens) : NAN;
    const double dt = since(t0);
    timed_s += dt;
    nlohmann::json row = {{"step", step + 1},
                          {"reward", reward / n},
                          {"accuracy", acc / n},
                          {"format", fmt_ / n},
                          {"completion_tokens", len / n},
                          {"kl", first.kl / toks},
                          {"entropy", first.entropy / toks},
                          {"clip_fraction", all.tokens ? double(all.clipped) / double(all.tokens) : NAN},
                          {"groups_kept", groups_kept},
                          {"loss", first.tokens ? first.loss : NAN},
                          {"lr", lr},
                          {"grad_norm", gnorm},
                          {"sample_tokens_per_s", double(gs.generated) / std::max(gs.seconds, 1e-9)},
                          {"train_tokens_per_s", double(passes_tokens) / std::max(since(t_train), 1e-9)},
                          {"step_s", dt}};
    if (log) log->write(row);
    if (o.json) fmt::print("{}\n", row.dump());
    std::fflush(stdout);
    const bool last = step + 1 == o.steps;
    const double eta = timed_s / double(step + 1 - start) * double(o.steps - step - 1);
    const std::string line =
        fmt::format("step {}/{}  reward {:.3f}  acc {:.1f}%  len {:.0f}  kl {:.4f}  ent {:.3f}  sample {:.0f} tok/s  train {:.0f} tok/s  ETA {}",
                    step + 1, o.steps, reward / n, 100.0 * acc / n, len / n, first.kl / toks, first.entropy / toks,
                    double(gs.generated) / std::max(gs.seconds, 1e-9), double(passes_tokens) / std::max(since(t_train), 1e-9),
                    duration(eta));
    if (tty) fmt::print(stderr, "\r\033[K{}{}", line, last ? "\n" : "");
    else if (!o.json) fmt::print(stderr, "{}\n", line);
    if (o.eval_every > 0 && ((step + 1) % o.eval_every == 0 || last)) evaluate(step + 1);
    if (o.save_every > 0 && (step + 1) % o.save_every == 0 && !ckpt_root.empty()) checkpoint(step + 1);
  }
  if (!o.out.empty()) save(o.out, save_dtype);
  if (!o.log.empty()) {
    PlotMetricsOpts p;
    p.log = o.log;
    p.out = std::filesystem::path(o.log).replace_extension(".svg").string();
    p.keys = {"reward", "accuracy", "eval_accuracy", "completion_tokens", "kl", "clip_fraction", "entropy"};
    plot_metrics(p);
  }
  if (!o.json)
    fmt::print(stderr, "GRPO: {} steps in {}: sampling {:.0f} tok/s, training {:.0f} tok/s\n", o.steps - start,
               duration(since(t_start)), sample_tok / std::max(sample_s, 1e-9), train_tok / std::max(train_s, 1e-9));
}

}  // namespace fathom::train
