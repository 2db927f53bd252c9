#include "checkpoint/random_checkpoint.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/cpu/quantize.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/random.h"
#include "core/thread_pool.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "io/sharded_writer.h"
#include "model/transformer.h"

namespace fathom {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Uniform with standard deviation `std`. Counter-based: value i of tensor t depends only on
// (seed, t, i), so the output is the same whatever the chunking or thread count.
inline float rnd(uint64_t key, uint64_t i, float std) {
  const double u = double(splitmix64(key ^ splitmix64(i)) >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
  return float((2.0 * u - 1.0) * std * std::sqrt(3.0));
}

struct Planned {
  SafetensorsWriter::Entry entry;
  const WeightSpec* spec;
  bool fp8_weight = false, fp8_scale = false;
};

}  // namespace

uint64_t write_random_checkpoint(const RandomCheckpointOpts& o) {
  json cj = read_config_json(o.config_path);
  const bool fp8 = o.dtype == "fp8";
  if (!fp8 && o.dtype != "bf16") fail("--dtype must be bf16 or fp8, not '{}'", o.dtype);
  if (fp8)
    cj["quantization_config"] = {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                                 {"weight_block_size", {128, 128}}};
  else
    cj.erase("quantization_config");
  cj["torch_dtype"] = "bfloat16";
  const ModelConfig cfg = ModelConfig::from_json(cj);
  const std::vector<WeightSpec> table = weight_table(cfg);
  const int64_t blk = cfg.fp8_block_rows;

  std::vector<Planned> plan;
  for (const WeightSpec& s : table) {
    Planned p{{s.name, DType::BF16, s.shape}, &s};
    if (s.kind == WeightKind::Vector && s.name.find("e_score_correction_bias") != std::string::npos)
      p.entry.dtype = DType::F32;
    // DeepSeek-V3's FP8 checkpoints keep embeddings, router and lm_head in bf16.
    if (fp8 && s.kind == WeightKind::Linear && s.name != "lm_head.weight") {
      p.entry.dtype = DType::F8_E4M3;
      p.fp8_weight = true;
      plan.push_back(p);
      Planned sc{{s.name + "_scale_inv", DType::F32, {(s.shape[0] + blk - 1) / blk, (s.shape[1] + blk - 1) / blk}},
                 &s};
      sc.fp8_scale = true;
      plan.push_back(sc);
      continue;
    }
    plan.push_back(p);
  }

  fs::create_directories(o.out_dir);
  {
    std::ofstream out(fs::path(o.out_dir) / "config.json");
    out << cj.dump(1) << "\n";
  }
  ThreadPool pool(o.threads);
  std::vector<SafetensorsWriter::Entry> entries;
  for (const Planned& p : plan) entries.push_back(p.entry);
  ShardedWriter out(o.out_dir, std::move(entries), o.shard_bytes, {{"format", "pt"}});
  uint64_t total = 0;
  Progress progress(o.progress, "writing tensors", plan.size());
  std::vector<float> scales;  // the current FP8 weight's scale_inv, written right after it
  for (size_t i = 0; i < plan.size(); ++i) {
    SafetensorsWriter& w = out.at(i);
    const Planned& p = plan[i];
    const uint64_t key = splitmix64(o.seed * 1000003 + i);
    const WeightSpec& s = *p.spec;
    if (p.fp8_scale) {
      w.write(scales.data(), scales.size() * 4);
      total += SafetensorsWriter::entry_bytes(p.entry);
      progress.step(total);
      continue;
    }
    const int64_t cols = s.shape.size() > 1 ? s.shape[1] : s.shape[0];
    const int64_t rows = s.shape.size() > 1 ? s.shape[0] : 1;
    const bool is_norm = s.kind == WeightKind::Vector && s.name.find("norm") != std::string::npos;
    const float std = is_norm ? 0.0f : (s.kind == WeightKind::Vector ? 0.02f : 0.02f);
    const float base = is_norm ? 1.0f : 0.0f;
    // Strips of rows, generated in parallel, written in order.
    const int64_t strip = p.fp8_weight ? blk : std::max<int64_t>(1, (int64_t(1) << 22) / cols);
    std::vector<float> f(size_t(std::min(rows, strip) * cols));
    std::vector<uint8_t> bytes(f.size() * 4);
    if (p.fp8_weight) scales.assign(size_t(((rows + blk - 1) / blk) * ((cols + blk - 1) / blk)), 0.f);
    for (int64_t r0 = 0; r0 < rows; r0 += strip) {
      const int64_t nr = std::min(strip, rows - r0), n = nr * cols;
      pool.parallel_for(n, 1 << 14, [&](int64_t b, int64_t e, int) {
        for (int64_t k = b; k < e; ++k) f[size_t(k)] = base + rnd(key, uint64_t(r0 * cols + k), std);
      });
      if (p.fp8_weight) {
        cpu::quantize_fp8_blocks(f.data(), nr, cols, bytes.data(), scales.data() + (r0 / blk) * ((cols + blk - 1) / blk),
                                 blk, &pool);
        w.write(bytes.data(), size_t(n));
      } else if (p.entry.dtype == DType::F32) {
        w.write(f.data(), size_t(n) * 4);
      } else {
        auto* h = reinterpret_cast<uint16_t*>(bytes.data());
        for (int64_t k = 0; k < n; ++k) h[k] = f32_to_bf16(f[size_t(k)]);
        w.write(h, size_t(n) * 2);
      }
    }
    total += SafetensorsWriter::entry_bytes(p.entry);
    progress.step(total);
  }
  out.finish();
  return out.bytes();
}

}  // namespace fathom
