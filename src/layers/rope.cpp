#include "layers/rope.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace fathom {

static double yarn_get_mscale(double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; }

Rope::Rope(const ModelConfig& cfg, int64_t dim, bool interleaved) : dim_(dim), interleaved_(interleaved) {
  const int64_t half = dim / 2;
  const RopeScaling& rs = cfg.rope_scaling;
  const float base = float(cfg.rope_theta);
  // transformers computes base ** (arange(0, dim, 2) / dim) in fp32; so do we.
  std::vector<float> pos_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) pos_freq[i] = std::pow(base, float(2 * i) / float(dim));
  inv_freq_.resize(size_t(half));
  for (int64_t i = 0; i < half; ++i) inv_freq_[i] = 1.0f / pos_freq[i];

  switch (rs.type) {
    case RopeScaling::Type::None: break;
    case RopeScaling::Type::Linear:
      for (auto& f : inv_freq_) f /= float(rs.factor);
      break;
    case RopeScaling::Type::Yarn: {
      const double factor = rs.factor;
      if (rs.attention_factor != 0) attn_factor_ = float(rs.attention_factor);
      else if (rs.mscale != 0 && rs.mscale_all_dim != 0)
        attn_factor_ = float(yarn_get_mscale(factor, rs.mscale) / yarn_get_mscale(factor, rs.mscale_all_dim));
      else attn_factor_ = float(yarn_get_mscale(factor, 1.0));
      const double orig = double(rs.original_max_position_embeddings);
      auto corr_dim = [&](double rot) {
        return (double(dim) * std::log(orig / (rot * 2 * M_PI))) / (2 * std::log(double(cfg.rope_theta)));
      };
      double low = corr_dim(rs.beta_fast), high = corr_dim(rs.beta_slow);
      if (rs.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, double(dim - 1));
      if (low == high) high += 0.001;
      for (int64_t i = 0; i < half; ++i) {
        float ramp = std::clamp((float(i) - float(low)) / (float(high) - float(low)), 0.0f, 1.0f);
        float extra = 1.0f - ramp;  // share of the original (extrapolated) frequency
        float interp = 1.0f / (float(factor) * pos_freq[i]);
        inv_freq_[i] = interp * (1.0f - extra) + inv_freq_[i] * extra;
      }
      break;
    }
    case RopeScaling::Type::Llama3: {
      const double factor = rs.factor, old_ctx = double(rs.original_max_position_embeddings);
      const double low_wl = old_ctx / rs.low_freq_factor, high_wl = old_ctx / rs.high_freq_factor;
      for (auto& f : inv_freq_) {
        const double wl = 2 * M_PI / double(f);
        if (wl < high_wl) continue;
        if (wl > low_wl) {
          f = float(double(f) / factor);
          continue;
        }
        const double smooth = (old_ctx / wl - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = float((1 - smooth) * double(f) / factor + smooth * double(f));
      }
      break;
    }
  }
  if (!rs.freq_divisors.empty()) {
    if (int64_t(rs.freq_divisors.size()) != half)
      fail("rope: {} frequency divisors for {} rotary pairs", rs.freq_divisors.size(), half);
    for (int64_t i = 0; i < half; ++i) inv_freq_[i] /= rs.freq_divisors[i];
  }
}

}  // namespace fathom
