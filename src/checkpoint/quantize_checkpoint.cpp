#include "checkpoint/quantize_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/quantize.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "io/sharded_writer.h"
#include "io/stored_matrix.h"
#include "model/transformer.h"

namespace fathom {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// One output tensor and where its bytes come from.
struct Planned {
  SafetensorsWriter::Entry entry;
  const TensorView* src = nullptr;
  std::optional<StoredMatrix> requant;  // set: requantize this matrix row by row
};

// The kernels' view of a stored matrix: dequantize_row then gives exactly the values the
// loader would requantize (FP8 with its block scales).
void write_config(const fs::path& src_dir, const fs::path& out_dir, bool keeps_fp8) {
  json cj = read_config_json((src_dir / "config.json").string());
  // With every FP8 weight requantized, an fp8 quantization_config would describe tensors
  // that are no longer there.
  if (!keeps_fp8) cj.erase("quantization_config");
  std::ofstream out(out_dir / "config.json");
  out << cj.dump(2) << "\n";
  if (!out) fail("{}: write failed", (out_dir / "config.json").string());
}

// Requantizes w into strips of rows written in order; rows of a strip run in parallel.
void write_requantized(const cpu::WeightView& w, DType fmt, SafetensorsWriter& out, ThreadPool& pool) {
  const size_t rb = dtype_bytes(fmt, w.cols);
  // ~8 MB of output per strip: small memory, enough rows to keep every thread busy.
  const int64_t strip = std::max<int64_t>(1, int64_t((size_t(8) << 20) / rb));
  std::vector<uint8_t> buf(rb * size_t(std::min(strip, w.rows)));  // [strip, rb]
  std::vector<std::vector<float>> row(size_t(pool.size()), std::vector<float>(size_t(w.cols)));  // per thread
  for (int64_t r0 = 0; r0 < w.rows; r0 += strip) {
    const int64_t nr = std::min(strip, w.rows - r0);
    pool.parallel_for(nr, 16, [&](int64_t b, int64_t e, int t) {
      float* f = row[size_t(t)].data();
      for (int64_t r = b; r < e; ++r) {
        cpu::dequantize_row(w, r0 + r, f);
        cpu::quantize_row(fmt, f, w.cols, buf.data() + rb * size_t(r));
      }
    });
    out.write(buf.data(), rb * size_t(nr));
  }
}

}  // namespace

QuantizeCheckpointResult quantize_checkpoint(const QuantizeCheckpointOpts& o) {
  const std::optional<DType> quant = parse_block_quant(o.quant);
  if (!quant) fail("quantize: a block format is required (q8_0 or q4_0)");
  const DType fmt = *quant;
  const ModelConfig cfg = ModelConfig::load(o.model_dir);
  const TensorStore store = TensorStore::open(o.model_dir);
  const std::vector<WeightSpec> table = weight_table(cfg);

  if (fs::exists(o.out_dir)) {
    if (!fs::is_directory(o.out_dir)) fail("{}: exists and is not a directory", o.out_dir);
    for (auto& e : fs::directory_iterator(o.out_dir))
      if (e.path().extension() == ".safetensors" || e.path().filename() == "model.safetensors.index.json")
        fail("{}: already holds a checkpoint ({}); choose an empty directory", o.out_dir,
             e.path().filename().string());
  }

  // Every tensor the model needs, in table order; tensors the model never reads are dropped.
  std::vector<Planned> plan;
  bool keeps_fp8 = false;
  for (const WeightSpec& spec : table) {
    const TensorView* t = store.find(spec.name);
    if (!t) {
      if (spec.optional) continue;
      fail("{}: missing tensor '{}'", o.model_dir, spec.name);
    }
    if (t->shape != spec.shape)
      fail("tensor '{}': shape {} disagrees with config.json", spec.name, t->shape_str());
    Planned p{{spec.name, t->dtype, t->shape}, t, std::nullopt};
    if (spec.kind != WeightKind::Linear) {
      plan.push_back(std::move(p));
      continue;
    }
    const StoredMatrix m = stored_matrix(store, cfg, *t);
    if (requantizes_to(m.dtype, m.cols, fmt)) {
      p.entry.dtype = fmt;
      p.requant = m;
      plan.push_back(std::move(p));
      continue;
    }
    plan.push_back(std::move(p));
    if (m.scale) {  // FP8 kept as stored: its scales come with it
      keeps_fp8 = true;
      plan.push_back(Planned{{m.scale->name, m.scale->dtype, m.scale->shape}, m.scale, std::nullopt});
    }
  }

  fs::create_directories(o.out_dir);
  write_config(o.model_dir, o.out_dir, keeps_fp8);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"})
    if (fs::exists(fs::path(o.model_dir) / f))
      fs::copy_file(fs::path(o.model_dir) / f, fs::path(o.out_dir) / f, fs::copy_options::overwrite_existing);

  ThreadPool pool(o.threads);
  QuantizeCheckpointResult res;
  std::vector<SafetensorsWriter::Entry> entries;
  for (const Planned& p : plan) entries.push_back(p.entry);
  ShardedWriter out(o.out_dir, std::move(entries), o.shard_bytes, {{"format", "pt"}, {"fathom_quant", o.quant}});
  res.shards = int64_t(out.shards());
  Progress progress(o.progress, "quantizing tensors", plan.size());
  for (size_t i = 0; i < plan.size(); ++i) {
    SafetensorsWriter& w = out.at(i);
    const Planned& p = plan[i];
    if (p.requant) {
      write_requantized(cpu::view_of(*p.requant), fmt, w, pool);
      ++res.quantized;
    } else {
      w.write(p.src->data, p.src->nbytes);
    }
    // Without this, streaming a checkpoint would leave the whole source resident.
    store.release(*p.src, TensorStore::Edges::Drop);
    if (p.requant && p.requant->scale) store.release(*p.requant->scale, TensorStore::Edges::Drop);
    res.bytes_in += p.src->nbytes;
    res.bytes_out += SafetensorsWriter::entry_bytes(p.entry);
    ++res.tensors;
    progress.step(res.bytes_out);
  }
  out.finish();
  return res;
}

}  // namespace fathom
