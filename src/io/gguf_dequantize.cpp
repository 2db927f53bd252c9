#include "io/gguf_dequantize.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "io/safetensors.h"

namespace fathom {
namespace fs = std::filesystem;

namespace {

void write_tensors(const GgufModel& model, const std::string& path, std::vector<SafetensorsWriter::Entry> entries) {
  SafetensorsWriter w(path, std::move(entries), {{"format", "pt"}});
  constexpr int64_t kChunkValues = int64_t(1) << 22;  // 16 MB of F32 per write
  std::vector<float> buf;
  for (const GgufTensor& t : model.tensors()) {
    const GgufTypeLayout& l = *gguf_type_layout(t.type);  // the parser checked the id
    const int64_t row = t.row_length();
    const size_t row_bytes = size_t(row / l.block_values * l.block_bytes);
    // Whole rows per chunk, at least one (a row is a multiple of the block).
    const int64_t rows_per_chunk = row ? std::max<int64_t>(1, kChunkValues / row) : 1;
    for (int64_t r0 = 0; r0 < t.rows(); r0 += rows_per_chunk) {
      const int64_t nr = std::min(rows_per_chunk, t.rows() - r0);
      buf.resize(size_t(nr * row));  // [nr, row]
      gguf_dequantize(t.type, t.data + size_t(r0) * row_bytes, buf.data(), nr * row);
      w.write(buf.data(), buf.size() * sizeof(float));
    }
  }
  w.finish();
}

}  // namespace

GgufDequantizeResult dequantize_gguf(const GgufDequantizeOpts& o) {
  const GgufModel model = GgufModel::open(o.model);
  const fs::path out_file = fs::path(o.out_dir) / "model.safetensors";
  if (fs::exists(o.out_dir) && !fs::is_directory(o.out_dir)) fail("{}: exists and is not a directory", o.out_dir);
  if (fs::exists(out_file)) fail("{}: already exists; choose an empty directory", out_file.string());

  std::vector<SafetensorsWriter::Entry> entries;
  for (const GgufTensor& t : model.tensors()) {
    // Checked before anything is written, so an unsupported type leaves no partial output.
    if (!gguf_type_layout(t.type)->supported)
      fail("{}: tensor '{}': dequantizing GGML type {} is not supported", o.model, t.name, t.type_name());
    entries.push_back({t.name, DType::F32, t.shape()});
  }
  fs::create_directories(o.out_dir);
  // Written under a temporary name and renamed when complete, so a failure midway (a full
  // disk) never leaves a model.safetensors that looks whole.
  const fs::path partial = fs::path(o.out_dir) / "model.safetensors.partial";
  try {
    write_tensors(model, partial.string(), std::move(entries));
  } catch (...) {
    std::error_code ec;
    fs::remove(partial, ec);
    throw;
  }
  fs::rename(partial, out_file);

  GgufDequantizeResult res;
  res.path = out_file.string();
  for (const GgufTensor& t : model.tensors()) {
    res.bytes_in += t.nbytes;
    res.bytes_out += uint64_t(t.numel()) * 4;
    ++res.tensors;
  }
  return res;
}

}  // namespace fathom
