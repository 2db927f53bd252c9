// GGUF files written by llama.cpp's converter and quantizer: metadata and tensor infos against
// each file's manifest, BF16 weights bit for bit against the HF checkpoints they came from (with
// the converter's permutation and kv_b split undone in the test), Q8_0 within its rounding of
// the BF16 values, and the small model's 3-file split set.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/dtype.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_dequantize.h"
#include "io/safetensors.h"

namespace fathom {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kShared = fs::path(FATHOM_SOURCE_DIR) / ".." / "shared" / "fixtures";
const fs::path kLocal = fs::path(FATHOM_TEST_DATA) / "gguf";

// Every tiny-* GGUF: the copies in tests/data/gguf, and the others when ../shared is present.
std::vector<std::string> gguf_fixtures() {
  std::map<std::string, std::string> by_name;
  if (fs::is_directory(kShared / "gguf"))
    for (auto& d : fs::directory_iterator(kShared / "gguf"))
      if (d.is_directory() && d.path().filename().string().rfind("tiny-", 0) == 0)
        for (auto& f : fs::directory_iterator(d.path()))
          if (f.path().extension() == ".gguf") by_name[f.path().filename().string()] = f.path().string();
  for (auto& f : fs::directory_iterator(kLocal))
    if (f.path().extension() == ".gguf") by_name[f.path().filename().string()] = f.path().string();
  std::vector<std::string> out;
  for (auto& [n, p] : by_name) out.push_back(p);
  return out;
}

json manifest_of(const std::string& gguf) {
  std::string p = gguf.substr(0, gguf.size() - 5) + ".manifest.json";
  std::ifstream in(p);
  if (!in) throw Error(p + ": missing");
  return json::parse(in);
}

std::vector<float> dequantized(const GgufTensor& t) {
  std::vector<float> v(size_t(t.numel()));
  gguf_dequantize(t.type, t.data, v.data(), t.numel());
  return v;
}

std::vector<float> hf_values(const TensorView& t) {
  std::vector<float> v(size_t(t.numel()));
  const auto* p = static_cast<const uint8_t*>(t.data);
  for (size_t k = 0; k < v.size(); ++k) {
    if (t.dtype == DType::BF16)
      v[k] = bf16_to_f32(uint16_t(p[2 * k] | (p[2 * k + 1] << 8)));
    else if (t.dtype == DType::F32)
      std::memcpy(&v[k], p + 4 * k, 4);
    else
      throw Error("unexpected HF dtype");
  }
  return v;
}

class GgufFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufFixture, MetadataAndTensorsMatchTheManifest) {
  const json man = manifest_of(GetParam());
  const GgufModel m = GgufModel::open(GetParam());
  const GgufMetadata& md = m.metadata();
  const json& meta = man["metadata"];
  ASSERT_EQ(meta["GGUF.tensor_count"].get<size_t>(), m.tensors().size());
  // The manifest lists the scalar keys; the file also holds the tokenizer's arrays and strings.
  size_t checked = 0;
  for (auto it = meta.begin(); it != meta.end(); ++it) {
    const std::string& k = it.key();
    if (k.rfind("GGUF.", 0) == 0) continue;
    ASSERT_TRUE(md.has(k)) << k;
    const json& v = it.value();
    if (v.is_boolean()) {
      EXPECT_EQ(md.get_bool(k), v.get<bool>()) << k;
    } else if (v.is_number_integer()) {
      EXPECT_EQ(md.get_i64(k), v.get<int64_t>()) << k;
    } else if (v.is_number_float()) {
      EXPECT_EQ(md.get_f64(k), v.get<double>()) << k;
    } else if (v.is_string()) {
      EXPECT_EQ(md.get_str(k), v.get<std::string>()) << k;
    }
    ++checked;
  }
  EXPECT_GT(checked, 10u);
  EXPECT_EQ(md.all().size(), meta["GGUF.kv_count"].get<size_t>());

  const json& ts = man["tensors"];
  ASSERT_EQ(ts.size(), m.tensors().size());
  for (size_t k = 0; k < ts.size(); ++k) {
    const GgufTensor& t = m.tensors()[k];
    EXPECT_EQ(t.name, ts[k]["name"].get<std::string>());
    EXPECT_EQ(t.type_name(), ts[k]["type"].get<std::string>()) << t.name;
    EXPECT_EQ(t.ne, ts[k]["ne"].get<std::vector<int64_t>>()) << t.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 32, 0u) << t.name;
  }

  // The tokenizer, as the fixtures' README describes it.
  EXPECT_EQ(md.get_str("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(md.get_str("tokenizer.ggml.pre"), "deepseek-v3");
  const auto& tokens = md.get_array_str("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 1024u);
  EXPECT_EQ(tokens[0], "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(tokens[1], "<｜end▁of▁sentence｜>");
  EXPECT_EQ(tokens[3], "!");  // the first byte-level symbol
  const std::vector<int64_t> types = md.get_array_i64("tokenizer.ggml.token_type");
  ASSERT_EQ(types.size(), 1024u);
  for (size_t k = 0; k < types.size(); ++k) ASSERT_EQ(types[k], k < 3 ? 3 : 1) << k;
  EXPECT_EQ(md.get_array_str("tokenizer.ggml.merges").size(), 765u);
  EXPECT_EQ(md.get_u32("tokenizer.ggml.bos_token_id"), 0u);
  EXPECT_EQ(md.get_u32("tokenizer.ggml.eos_token_id"), 1u);
  EXPECT_TRUE(md.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_NE(md.get_str("tokenizer.chat_template").find("Assistant"), std::string::npos);
}

// The HF tensor a GGUF tensor holds as is ("" when there is none).
std::string hf_name(const std::string& g) {
  static const std::map<std::string, std::string> global = {{"token_embd.weight", "model.embed_tokens.weight"},
                                                            {"output.weight", "lm_head.weight"},
                                                            {"output_norm.weight", "model.norm.weight"}};
  static const std::map<std::string, std::string> layer = {
      {"attn_norm.weight", "input_layernorm.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"}, {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"}, {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.bias", "self_attn.v_proj.bias"}, {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"}, {"ffn_down.weight", "mlp.down_proj.weight"},
      {"attn_q_a.weight", "self_attn.q_a_proj.weight"}, {"attn_q_b.weight", "self_attn.q_b_proj.weight"},
      {"attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight"},
      {"attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight"},
      {"attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight"},
      {"attn_kv_b.weight", "self_attn.kv_b_proj.weight"}, {"ffn_gate_inp.weight", "mlp.gate.weight"},
      {"exp_probs_b.bias", "mlp.gate.e_score_correction_bias"},
      {"ffn_gate_shexp.weight", "mlp.shared_experts.gate_proj.weight"},
      {"ffn_up_shexp.weight", "mlp.shared_experts.up_proj.weight"},
      {"ffn_down_shexp.weight", "mlp.shared_experts.down_proj.weight"}};
  if (auto it = global.find(g); it != global.end()) return it->second;
  if (g.rfind("blk.", 0) != 0) return "";
  const size_t dot = g.find('.', 4);
  auto it = layer.find(g.substr(dot + 1));
  return it == layer.end() ? "" : "model.layers." + g.substr(4, dot - 4) + "." + it->second;
}

// BF16 GGUFs hold the HF checkpoint's values exactly. Tensors the converter reshapes are
// rebuilt here from the HF ones, following the fixtures' README.
TEST_P(GgufFixture, Bf16EqualsTheHfCheckpoint) {
  const json man = manifest_of(GetParam());
  if (man["requested_type"] != "BF16") GTEST_SKIP() << "quantized";
  const std::string fixture = man["fixture"].get<std::string>();
  fs::path hf = fs::path(FATHOM_TEST_DATA) / "fixtures" / fixture / "model.safetensors";
  if (!fs::exists(hf)) hf = kShared / fixture / "model.safetensors";
  if (!fs::exists(hf)) GTEST_SKIP() << "no HF checkpoint for " << fixture;
  const TensorStore st = TensorStore::open(hf.string());
  const GgufModel m = GgufModel::open(GetParam());
  const GgufMetadata& md = m.metadata();
  const std::string arch = m.architecture();
  std::set<std::string> unmatched;
  for (const GgufTensor& t : m.tensors()) {
    const std::vector<float> got = dequantized(t);
    const std::string name = hf_name(t.name);
    const size_t dot = t.name.find('.', 4);
    const std::string L = t.name.rfind("blk.", 0) == 0 ? t.name.substr(4, dot - 4) : "";
    const std::string role = L.empty() ? t.name : t.name.substr(dot + 1);
    const std::string pre = "model.layers." + L + ".";
    std::vector<float> want;
    if (!name.empty() && !(arch == "llama" && (role == "attn_q.weight" || role == "attn_k.weight"))) {
      const TensorView* h = st.find(name);
      ASSERT_TRUE(h) << t.name << " -> " << name;
      EXPECT_EQ(h->shape, t.shape()) << t.name;
      want = hf_values(*h);
    } else if (role == "attn_q.weight" || role == "attn_k.weight") {
      const bool q = role == "attn_q.weight";
      const TensorView& h = st.get(pre + (q ? "self_attn.q_proj.weight" : "self_attn.k_proj.weight"));
      const std::vector<float> w = hf_values(h);
      if (arch != "llama") {
        want = w;  // qwen2 and deepseek2 keep HF's rows
      } else {
        // llama: rows of each head reordered from [2, hd/2] to [hd/2, 2] (rotate-half pairs
        // made adjacent).
        const int64_t heads = md.get_i64(q ? "llama.attention.head_count" : "llama.attention.head_count_kv");
        const int64_t in = h.shape[1], hd = h.shape[0] / heads;
        want.resize(w.size());
        for (int64_t hh = 0; hh < heads; ++hh)
          for (int64_t i = 0; i < hd / 2; ++i)
            for (int64_t j = 0; j < 2; ++j)
              std::copy_n(&w[size_t((hh * hd + j * (hd / 2) + i) * in)], in, &want[size_t((hh * hd + 2 * i + j) * in)]);
      }
    } else if (role == "attn_k_b.weight" || role == "attn_v_b.weight") {
      // kv_b_proj [H * (nope + v), kv_lora]; k_b[h] = K half transposed [kv_lora, nope], v_b[h] = V half [v, kv_lora].
      const std::vector<float> kvb = hf_values(st.get(pre + "self_attn.kv_b_proj.weight"));
      const int64_t H = md.get_i64("deepseek2.attention.head_count"), R = md.get_i64("deepseek2.attention.kv_lora_rank");
      const int64_t nope = md.get_i64("deepseek2.attention.key_length_mla") - md.get_i64("deepseek2.rope.dimension_count");
      const int64_t v = md.get_i64("deepseek2.attention.value_length_mla");
      const bool k = role == "attn_k_b.weight";
      for (int64_t hh = 0; hh < H; ++hh)
        if (k) {
          for (int64_t c = 0; c < R; ++c)
            for (int64_t n = 0; n < nope; ++n) want.push_back(kvb[size_t((hh * (nope + v) + n) * R + c)]);
        } else {
          for (int64_t r = 0; r < v; ++r)
            for (int64_t c = 0; c < R; ++c) want.push_back(kvb[size_t((hh * (nope + v) + nope + r) * R + c)]);
        }
    } else if (role == "ffn_gate_exps.weight" || role == "ffn_up_exps.weight" || role == "ffn_down_exps.weight") {
      const std::string proj = role.substr(4, role.find('_', 4) - 4) + "_proj.weight";
      for (int64_t e = 0; e < t.ne[2]; ++e) {
        const std::vector<float> w = hf_values(st.get(pre + "mlp.experts." + std::to_string(e) + "." + proj));
        want.insert(want.end(), w.begin(), w.end());
      }
    } else if (t.name == "rope_freqs.weight") {
      // Llama-3's per-frequency divisors: derived from config.json's rope_scaling, not stored in
      // HF. Low frequencies are divided by the scaling factor, high ones kept.
      EXPECT_EQ(t.ne, (std::vector<int64_t>{md.get_i64("llama.rope.dimension_count") / 2}));
      EXPECT_EQ(got.front(), 1.0f);
      EXPECT_GT(got.back(), 1.0f);
      continue;
    } else {
      unmatched.insert(t.name);
      continue;
    }
    ASSERT_EQ(want.size(), got.size()) << t.name;
    size_t bad = 0;
    for (size_t k = 0; k < got.size(); ++k) bad += std::memcmp(&got[k], &want[k], 4) != 0;
    EXPECT_EQ(bad, 0u) << t.name << ": " << bad << " of " << got.size() << " values differ";
  }
  EXPECT_TRUE(unmatched.empty()) << "no HF counterpart for " << *unmatched.begin();
}

// Q8_0 tensors are the BF16 file's values rounded to 32-value blocks with scale amax/127.
TEST_P(GgufFixture, Q8_0IsTheBf16ValuesRounded) {
  const std::string path = GetParam();
  if (path.find(".Q8_0.") == std::string::npos) GTEST_SKIP() << "not Q8_0";
  std::string bf16 = path;
  bf16.replace(bf16.find(".Q8_0."), 6, ".BF16.");
  if (!fs::exists(bf16)) bf16 = (kShared / "gguf" / manifest_of(path)["fixture"].get<std::string>() /
                                 fs::path(bf16).filename()).string();
  if (!fs::exists(bf16)) GTEST_SKIP() << "no BF16 file beside " << path;
  const GgufModel q = GgufModel::open(path), b = GgufModel::open(bf16);
  int q8 = 0;
  for (const GgufTensor& t : q.tensors()) {
    const std::vector<float> got = dequantized(t), ref = dequantized(b.get(t.name));
    ASSERT_EQ(got.size(), ref.size()) << t.name;
    if (std::string(t.type_name()) != "Q8_0") continue;
    ++q8;
    for (size_t b0 = 0; b0 < got.size(); b0 += 32) {
      float amax = 0;
      for (size_t k = b0; k < b0 + 32; ++k) amax = std::max(amax, std::fabs(ref[k]));
      const float d = amax / 127;  // q within 1/2 of x/d; d stored as f16 (2^-11 relative)
      for (size_t k = b0; k < b0 + 32; ++k)
        ASSERT_LE(std::fabs(got[k] - ref[k]), d * (0.5f + 127.f / 1024.f) + 1e-30f) << t.name << " [" << k << "]";
    }
  }
  EXPECT_GT(q8, 10);
}

std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = fs::path(info.param).stem().string();
  for (char& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Files, GgufFixture, ::testing::ValuesIn(gguf_fixtures()), test_name);

TEST(GgufSmallSplit, ThreeShardsHoldEveryTensorOfTheManifest) {
  const fs::path dir = kShared / "gguf" / "small-deepseek-v3";
  const fs::path first = dir / "small-deepseek-v3.BF16-split-00001-of-00003.gguf";
  if (!fs::exists(first)) GTEST_SKIP() << "needs shared/fixtures/gguf/small-deepseek-v3";
  std::ifstream in(dir / "small-deepseek-v3.BF16-split.manifest.json");
  const json man = json::parse(in);
  const GgufModel m = GgufModel::open(first.string());
  ASSERT_EQ(m.files().size(), 3u);
  EXPECT_EQ(m.metadata().get_u64("split.tensors.count"), m.tensors().size());
  EXPECT_EQ(m.tensors().size(), man["metadata"]["GGUF.tensor_count"].get<size_t>());
  EXPECT_EQ(m.architecture(), "deepseek2");
  EXPECT_EQ(m.metadata().get_u32("deepseek2.attention.kv_lora_rank"), 256u);
  EXPECT_EQ(m.metadata().get_f32("deepseek2.expert_weights_scale"), 2.5f);
  for (const json& t : man["tensors"]) {
    const GgufTensor& g = m.get(t["name"].get<std::string>());
    EXPECT_EQ(g.type_name(), t["type"].get<std::string>()) << g.name;
    EXPECT_EQ(g.ne, t["ne"].get<std::vector<int64_t>>()) << g.name;
  }
  for (size_t s = 0; s < man["shards"].size(); ++s)
    for (const json& n : man["shards"][s]["tensors"]) EXPECT_EQ(m.get(n.get<std::string>()).shard, int(s));
  // Opened from a later shard, the same model.
  const GgufModel m2 = GgufModel::open((dir / "small-deepseek-v3.BF16-split-00002-of-00003.gguf").string());
  ASSERT_EQ(m2.tensors().size(), m.tensors().size());
  for (size_t k = 0; k < m.tensors().size(); ++k) EXPECT_EQ(m2.tensors()[k].name, m.tensors()[k].name);

  // The token embedding is N(0, 1) bf16: spot-check it is not garbage (finite, unit scale).
  const std::vector<float> e = dequantized(m.get("token_embd.weight"));
  double ss = 0;
  for (float x : e) ss += double(x) * x;
  EXPECT_NEAR(std::sqrt(ss / double(e.size())), 1.0, 0.05);
}

TEST(GgufSmallQuantized, EveryFileParsesPerItsManifest) {
  const fs::path dir = kShared / "gguf" / "small-deepseek-v3";
  if (!fs::is_directory(dir)) GTEST_SKIP() << "needs shared/fixtures/gguf/small-deepseek-v3";
  int files = 0;
  for (auto& f : fs::directory_iterator(dir)) {
    const std::string p = f.path().string();
    if (f.path().extension() != ".gguf" || p.find("-split-") != std::string::npos || p.find("imatrix") != std::string::npos)
      continue;
    const json man = manifest_of(p);
    const GgufModel m = GgufModel::open(p);
    ASSERT_EQ(m.tensors().size(), man["tensors"].size()) << p;
    for (size_t k = 0; k < m.tensors().size(); ++k) {
      EXPECT_EQ(m.tensors()[k].type_name(), man["tensors"][k]["type"].get<std::string>()) << p;
      EXPECT_EQ(m.tensors()[k].ne, man["tensors"][k]["ne"].get<std::vector<int64_t>>()) << p;
    }
    ++files;
  }
  EXPECT_EQ(files, 20);
}

}  // namespace
}  // namespace fathom
