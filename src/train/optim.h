#pragma once
// The optimizer side of training: AdamW with decoupled weight decay, global gradient-norm
// clipping and the learning-rate schedule. All of it follows torch.optim.AdamW,
// torch.nn.utils.clip_grad_norm_ and the usual warmup/cosine/WSD schedules, so a run can be
// checked step for step against a PyTorch one.
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "train/param.h"

namespace fathom::train {

struct AdamWConfig {
  double lr = 1e-3;  // peak learning rate; step() takes each step's own from the schedule
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;  // decoupled: p *= 1 - lr * weight_decay, only where Param::decay
};

// AdamW over a fixed list of parameters. Every parameter is held (so saving and loading see
// them all), but only those with trainable == true are stepped and have moment buffers.
class AdamW {
 public:
  AdamW(std::vector<Param*> params, AdamWConfig cfg);

  // One update from each trainable parameter's gradient `g`, at learning rate `lr`. The
  // gradients are left as they are (the caller zeroes them).
  // With a pool, parameters are updated on its threads (elementwise: the same bits).
  // grad_scale multiplies each gradient as it is read (clipping folded into the update, one
  // pass over the gradients fewer); 1 reads them as they are.
  void step(double lr, ThreadPool* pool = nullptr, float grad_scale = 1.0f);

  const std::vector<Param*>& params() const { return params_; }
  const AdamWConfig& config() const { return cfg_; }
  // Steps taken so far (torch's `step` state: the t of the bias corrections 1 - beta^t).
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }
  // Moment buffers of params()[i], [numel] fp32; empty for a parameter that is not trainable.
  std::vector<float>& m(size_t i) { return m_[i]; }  // exp_avg
  std::vector<float>& v(size_t i) { return v_[i]; }  // exp_avg_sq
  const std::vector<float>& m(size_t i) const { return m_[i]; }
  const std::vector<float>& v(size_t i) const { return v_[i]; }

 private:
  std::vector<Param*> params_;
  AdamWConfig cfg_;
  std::vector<std::vector<float>> m_, v_;  // [params][numel]
  int64_t t_ = 0;
};

// sqrt of the sum of squares of every trainable parameter's gradient, summed in double.
// Each tensor's sum is taken on one thread and the sums are added in parameter order, so
// the pool changes nothing in the result.
double grad_norm(const std::vector<Param*>& params, ThreadPool* pool = nullptr);

// Scales every trainable gradient by max_norm / (norm + 1e-6) when that is below 1 (as
// clip_grad_norm_ does); max_norm <= 0 turns clipping off. Returns the norm before clipping.
// A non-finite norm leaves the gradients as they are: the caller sees it and skips the step.
double clip_grad_norm(const std::vector<Param*>& params, double max_norm, ThreadPool* pool = nullptr);
// The factor clip_grad_norm scales by for this norm: max_norm / (norm + 1e-6) when below 1,
// else 1 (also when max_norm <= 0 or the norm is not finite).
float clip_coefficient(double norm, double max_norm);

enum class ScheduleKind { Constant, Cosine, Wsd };
// "constant", "cosine", "wsd"; anything else throws an Error naming the choices.
ScheduleKind parse_schedule_kind(const std::string& s);
const char* schedule_name(ScheduleKind k);

// Learning rate per optimizer step (step 0 is the first). Warmup is linear,
// lr * (step + 1) / warmup, for step < warmup (warmup 0: the full lr from step 0). After it:
//   constant  lr
//   cosine    from lr down to min_lr_ratio * lr along half a cosine, reached at step `total`
//   wsd       warmup-stable-decay: lr until the last decay_frac of the `total` steps, then a
//             straight line down to min_lr_ratio * lr, reached at step `total`
// Steps past `total` keep the final value.
struct Schedule {
  ScheduleKind kind = ScheduleKind::Constant;
  double lr = 1e-3;    // peak
  int64_t warmup = 0;  // steps
  int64_t total = 0;   // steps of the whole run (cosine, wsd)
  double min_lr_ratio = 0.1;
  double decay_frac = 0.2;  // wsd: the share of `total` spent decaying

  // Throws an Error naming the field that is out of range.
  void check() const;
  double lr_at(int64_t step) const;
  // wsd: the first step of the decay.
  int64_t decay_start() const;
};

}  // namespace fathom::train
