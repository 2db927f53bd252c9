#include "model/gguf_store.h"

#include <cstring>

#include "core/error.h"
#include "io/ggml_quants.h"
#include "io/gguf.h"

namespace fathom {

namespace {

// GGML type ids whose blocks fathom reads as they are: plain floats, and every block format
// (Q8_0 and Q4_0 are fathom's own layouts too; the others run on the GGML kernels).
std::optional<DType> direct_dtype(uint32_t ggml_type) {
  switch (ggml_type) {
    case uint32_t(ggml::Type::F32): return DType::F32;
    case uint32_t(ggml::Type::F16): return DType::F16;
    case uint32_t(ggml::Type::BF16): return DType::BF16;
    default: return ggml::block_dtype(ggml::Type(ggml_type));
  }
}

// The mapped file and every buffer converted from it.
struct Holder {
  GgufModel file;
  std::vector<std::vector<float>> buffers;
  float* alloc(size_t bytes) { return buffers.emplace_back((bytes + 3) / 4).data(); }
};

class Builder {
 public:
  Builder(Holder& h, const ModelConfig& cfg) : h_(h), cfg_(cfg) {}

  // `t`'s values from `data` on (a whole tensor or one expert's slice) as the tensor `name`.
  void place(const std::string& name, const GgufTensor& t, const uint8_t* data, std::vector<int64_t> shape,
             WeightKind kind) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    TensorView v;
    v.name = name;
    v.shape = std::move(shape);
    auto dt = direct_dtype(t.type);
    // Block formats stay as stored for matrices whose rows hold whole blocks: linear layers
    // run on the block kernels, embeddings decode the rows they look up. Norms and biases
    // become f32 vectors.
    const bool block = dt && dtype_block_values(*dt) > 1;
    const bool whole_blocks = v.shape.size() == 2 && v.shape.back() % (dt ? dtype_block_values(*dt) : 1) == 0;
    if (dt && !(block && (kind == WeightKind::Vector || !whole_blocks))) {
      v.dtype = *dt;
      v.data = data;
      v.nbytes = dtype_bytes(*dt, n);
    } else {
      const GgufTypeLayout* lay = gguf_type_layout(t.type);
      if (!lay || n % lay->block_values)
        fail("{}: tensor '{}': {} values do not fill whole blocks of type {}", h_.file.files().front(), t.name, n,
             t.type_name());
      float* out = h_.alloc(size_t(n) * 4);
      gguf_dequantize(t.type, data, out, n);
      v.dtype = DType::F32;
      v.data = out;
      v.nbytes = size_t(n) * 4;
    }
    views.push_back(std::move(v));
  }

  void whole(const WeightSpec& s, const GgufTensor& t) { place(s.name, t, t.data, t.shape(), s.kind); }

  // Expert `e` of a stacked [E, out, in] tensor; `part`/`parts` picks gate or up of a fused one.
  void expert(const WeightSpec& s, const GgufTensor& t, int64_t part, int64_t parts) {
    if (t.ne.size() != 3 || t.ne[2] != cfg_.n_routed_experts || t.ne[1] % parts)
      fail("{}: tensor '{}' has shape {} (expected [{}, out, in])", h_.file.files().front(), t.name,
           shape_str(t.shape()), cfg_.n_routed_experts);
    const size_t per_expert = t.nbytes / size_t(t.ne[2]);
    const int64_t out = t.ne[1] / parts;
    const size_t offset = size_t(s.expert) * per_expert + size_t(part) * (per_expert / size_t(parts));
    place(s.name, t, t.data + offset, {out, t.ne[0]}, s.kind);
  }

  // GGML rotates adjacent pairs, so the converter interleaved each head's two rotary halves:
  // stored row h*hd + 2j + s holds HF row h*hd + s*hd/2 + j.
  void unpermute(const WeightSpec& s, const GgufTensor& t, int64_t heads) {
    const int64_t rows = t.ne.size() == 1 ? t.ne[0] : t.rows();
    if (heads <= 0 || rows % heads || (rows / heads) % 2)
      fail("{}: tensor '{}': {} rows do not split into {} heads of rotary pairs", h_.file.files().front(), t.name,
           rows, heads);
    const int64_t hd = rows / heads, half = hd / 2;
    const size_t row_bytes = t.nbytes / size_t(rows);
    auto* out = reinterpret_cast<uint8_t*>(h_.alloc(t.nbytes));
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t j = 0; j < half; ++j)
        for (int64_t p = 0; p < 2; ++p)
          std::memcpy(out + size_t(h * hd + p * half + j) * row_bytes, t.data + size_t(h * hd + 2 * j + p) * row_bytes,
                      row_bytes);
    place(s.name, t, out, t.shape(), s.kind);
  }

  // kv_b [H*(nope+v), kv_lora] from attn_k_b (per head [kv_lora, nope], the K half transposed)
  // and attn_v_b (per head [v, kv_lora]).
  void join_kv_b(const WeightSpec& s, const GgufTensor& k_b, const GgufTensor& v_b) {
    const int64_t H = cfg_.num_attention_heads, nope = cfg_.qk_nope_head_dim, vd = cfg_.v_head_dim,
                  kvl = cfg_.kv_lora_rank;
    if (k_b.ne != std::vector<int64_t>{nope, kvl, H} || v_b.ne != std::vector<int64_t>{kvl, vd, H})
      fail("{}: '{}' {} and '{}' {} disagree with the metadata (heads {}, nope {}, v {}, kv_lora {})",
           h_.file.files().front(), k_b.name, shape_str(k_b.shape()), v_b.name, shape_str(v_b.shape()), H, nope, vd,
           kvl);
    std::vector<float> k(size_t(k_b.numel())), v(size_t(v_b.numel()));
    gguf_dequantize(k_b.type, k_b.data, k.data(), k_b.numel());  // [H, kv_lora, nope]
    gguf_dequantize(v_b.type, v_b.data, v.data(), v_b.numel());  // [H, v, kv_lora]
    const int64_t rows = H * (nope + vd);
    float* out = h_.alloc(size_t(rows * kvl) * 4);  // [H*(nope+v), kv_lora]
    for (int64_t h = 0; h < H; ++h) {
      float* head = out + h * (nope + vd) * kvl;
      for (int64_t n = 0; n < nope; ++n)
        for (int64_t c = 0; c < kvl; ++c) head[n * kvl + c] = k[size_t((h * kvl + c) * nope + n)];
      std::memcpy(head + nope * kvl, v.data() + h * vd * kvl, size_t(vd * kvl) * 4);
    }
    TensorView t;
    t.name = s.name;
    t.dtype = DType::F32;
    t.shape = {rows, kvl};
    t.data = out;
    t.nbytes = size_t(rows * kvl) * 4;
    views.push_back(std::move(t));
  }

  std::vector<TensorView> views;

 private:
  Holder& h_;
  const ModelConfig& cfg_;
};

}  // namespace

TensorStore gguf_tensor_store(const std::string& path, const ModelConfig& cfg, const RoleTable& table) {
  auto holder = std::make_shared<Holder>(Holder{GgufModel::open(path), {}});
  const GgufModel& f = holder->file;
  Builder b(*holder, cfg);
  const std::vector<WeightSpec> hf = expand(table, cfg, NameFormat::Hf), gg = expand(table, cfg, NameFormat::Gguf);
  for (size_t i = 0; i < hf.size(); ++i) {
    const WeightSpec& s = hf[i];
    const std::string& name = gg[i].name;
    const std::string blk = "blk." + std::to_string(s.layer) + ".";
    if (s.expert >= 0) {
      if (const GgufTensor* t = f.find(name)) {
        b.expert(s, *t, 0, 1);
      } else if (const GgufTensor* fused = f.find(blk + "ffn_gate_up_exps.weight");
                 fused && (s.role == Role::ExpertGate || s.role == Role::ExpertUp)) {
        b.expert(s, *fused, s.role == Role::ExpertUp ? 1 : 0, 2);  // gate rows first, then up
      }
      continue;
    }
    const GgufTensor* t = f.find(name);
    if (s.role == Role::AttnKvB && !t) {
      const GgufTensor *k_b = f.find(blk + "attn_k_b.weight"), *v_b = f.find(blk + "attn_v_b.weight");
      if (k_b && v_b) b.join_kv_b(s, *k_b, *v_b);
      continue;
    }
    if (!t) continue;  // the loader reports missing tensors by their role
    if (s.role == Role::AttnUkT || s.role == Role::AttnUv) {  // [H, rows, cols] as one matrix per layer
      if (t->numel() != s.shape[0] * s.shape[1])
        fail("{}: '{}' has shape {} (expected {} values for [{}, {}])", f.files().front(), name, shape_str(t->shape()),
             s.shape[0] * s.shape[1], s.shape[0], s.shape[1]);
      b.place(s.name, *t, t->data, s.shape, s.kind);
      continue;
    }
    const bool rotary_q = s.role == Role::AttnQ || s.role == Role::AttnQBias;
    const bool rotary_k = s.role == Role::AttnK || s.role == Role::AttnKBias;
    if (cfg.arch == Arch::Llama && (rotary_q || rotary_k))
      b.unpermute(s, *t, rotary_q ? cfg.num_attention_heads : cfg.num_key_value_heads);
    else
      b.whole(s, *t);
  }
  return TensorStore::from_views(std::move(b.views), std::move(holder));
}

}  // namespace fathom
