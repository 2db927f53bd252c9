#include "model/quantize_checkpoint.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "backend/cpu/matmul.h"
#include "backend/cpu/quantize.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "io/sharded_writer.h"
#include "model/transformer.h"

namespace fathom {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// One output tensor and where its bytes come from.
struct Planned {
  SafetensorsWriter::Entry entry;
  const TensorView* src = nullptr;
  std::optional<cpu::WeightView> requant;  // set: requantize this source view row by row
};

DType parse_block_format(const std::string& q) {
  if (q == "q8_0") return DType::Q8_0;
  if (q == "q4_0") return DType::Q4_0;
  fail("--quant must be q8_0 or q4_0, not '{}'", q);
}

// The source view of a 2-D weight as the loader builds it (FP8 carries its block scales),
// so dequantize_row gives exactly the values the loader would requantize.
cpu::WeightView source_view(const TensorStore& store, const ModelConfig& cfg, const WeightSpec& spec,
                            const TensorView& t) {
  cpu::WeightView w;
  w.dtype = t.dtype;
  w.rows = spec.shape[0];
  w.cols = spec.shape[1];
  w.data = t.data;
  if (t.dtype == DType::F8_E4M3) {
    const TensorView& s = store.get(spec.name + "_scale_inv");
    const int64_t blk = cfg.fp8_block_rows;
    if (cfg.fp8_block_rows != cfg.fp8_block_cols)
      fail("tensor '{}': non-square FP8 blocks {}x{} are not supported", spec.name, cfg.fp8_block_rows,
           cfg.fp8_block_cols);
    const std::vector<int64_t> want = {(w.rows + blk - 1) / blk, (w.cols + blk - 1) / blk};
    if (s.dtype != DType::F32 || s.shape != want)
      fail("tensor '{}': expected F32 {} scales, found {} {}", s.name, fmt::format("[{}, {}]", want[0], want[1]),
           dtype_name(s.dtype), s.shape_str());
    w.block_scale = static_cast<const float*>(s.data);
    w.block = blk;
  }
  return w;
}

void write_config(const fs::path& src_dir, const fs::path& out_dir, bool keeps_fp8) {
  json cj;
  {
    std::ifstream in(src_dir / "config.json");
    if (!in) fail("{}: cannot open", (src_dir / "config.json").string());
    try {
      cj = json::parse(in);
    } catch (const json::exception& e) {
      fail("{}: malformed JSON: {}", (src_dir / "config.json").string(), e.what());
    }
  }
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

// Drops the source's mapped pages of a tensor already written from this process's resident
// set (they stay in the page cache and fault back in if touched): without it, streaming a
// checkpoint would leave the whole source resident.
void release_pages(const void* data, size_t n) {
  const auto page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t b = reinterpret_cast<uintptr_t>(data) / page * page;
  const uintptr_t e = reinterpret_cast<uintptr_t>(data) + n;
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);  // advisory: failure is harmless
}

}  // namespace

QuantizeCheckpointResult quantize_checkpoint(const QuantizeCheckpointOpts& o) {
  const DType fmt = parse_block_format(o.quant);
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
    // As at load: a matrix whose rows do not split into 32-value blocks keeps its format.
    if (spec.kind == WeightKind::Linear && t->dtype != fmt && spec.shape[1] % 32 == 0) {
      p.entry.dtype = fmt;
      p.requant = source_view(store, cfg, spec, *t);
      plan.push_back(std::move(p));
      continue;
    }
    plan.push_back(std::move(p));
    if (t->dtype == DType::F8_E4M3) {  // kept as stored: its scales come with it
      keeps_fp8 = true;
      const TensorView& s = store.get(spec.name + "_scale_inv");
      plan.push_back(Planned{{s.name, s.dtype, s.shape}, &s, std::nullopt});
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
  const bool show = o.progress && isatty(2);
  for (size_t i = 0; i < plan.size(); ++i) {
    SafetensorsWriter& w = out.at(i);
    const Planned& p = plan[i];
    if (p.requant) {
      write_requantized(*p.requant, fmt, w, pool);
      ++res.quantized;
    } else {
      w.write(p.src->data, p.src->nbytes);
    }
    release_pages(p.src->data, p.src->nbytes);
    if (p.requant && p.requant->block_scale) release_pages(p.requant->block_scale, 4);
    res.bytes_in += p.src->nbytes;
    res.bytes_out += SafetensorsWriter::entry_bytes(p.entry);
    ++res.tensors;
    if (show)
      std::fprintf(stderr, "\rquantizing %zu/%zu tensors, %.2f GB written", i + 1, plan.size(),
                   double(res.bytes_out) / 1e9);
  }
  out.finish();
  if (show) std::fprintf(stderr, "\n");
  return res;
}

}  // namespace fathom
