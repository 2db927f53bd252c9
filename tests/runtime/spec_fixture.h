#pragma once
// Models with an MTP module for the speculative decoding tests: the reference fixture, a random
// DeepSeek-V3 from init-random with a 12-token vocabulary, and "echo": the same shape, built
// here so the MTP module agrees with the main model most of the time. Its main layers add
// only a little to the embedding (attention and FFN outputs scaled down), so the next token
// depends mostly on the current one; its MTP layer adds nothing and eh_proj keeps only the
// embedding half, so the module predicts from the next token alone with the main head. Both
// accepting and rejecting drafts then happen often, and a sampled token's distribution can
// be enumerated over the 12 tokens.
#include <cmath>
#include <filesystem>
#include <random>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>

#include "checkpoint/random_checkpoint.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "model/roles.h"

namespace fathom::test {

inline const std::string kMtpFixture = std::string(FATHOM_TEST_DATA) + "/fixtures/tiny-deepseek-v3-mtp";
constexpr int64_t kSmallVocab = 12;

// Written once per test binary into a temporary directory.
inline const std::string& small_mtp_model_dir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    const fs::path d = fs::temp_directory_path() / ("fathom-spec-" + std::to_string(::getpid()));
    fs::create_directories(d);
    std::ifstream in(fs::path(FATHOM_SOURCE_DIR) / "tests/server/tiny-v3-full.config.json");
    auto cfg = nlohmann::json::parse(in);
    cfg["vocab_size"] = kSmallVocab;
    cfg["num_nextn_predict_layers"] = 1;
    cfg["bos_token_id"] = 0;
    cfg["eos_token_id"] = 1;
    std::ofstream(d / "config.in.json") << cfg.dump();
    RandomCheckpointOpts o;
    o.config_path = (d / "config.in.json").string();
    o.out_dir = d.string();
    o.seed = 7;
    o.threads = 1;
    write_random_checkpoint(o);
    std::atexit([] { fs::remove_all(fs::temp_directory_path() / ("fathom-spec-" + std::to_string(::getpid()))); });
    return d.string();
  }();
  return dir;
}

inline nlohmann::json small_config() {
  std::ifstream in(std::filesystem::path(FATHOM_SOURCE_DIR) / "tests/server/tiny-v3-full.config.json");
  auto cfg = nlohmann::json::parse(in);
  cfg["vocab_size"] = kSmallVocab;
  cfg["num_nextn_predict_layers"] = 1;
  cfg["bos_token_id"] = 0;
  cfg["eos_token_id"] = 1;
  return cfg;
}

inline const std::string& echo_model_dir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    const fs::path d = fs::temp_directory_path() / ("fathom-spec-echo-" + std::to_string(::getpid()));
    fs::create_directories(d);
    const auto cj = small_config();
    std::ofstream(d / "config.json") << cj.dump();
    const ModelConfig cfg = ModelConfig::from_json(cj);
    std::mt19937_64 rng(11);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    std::vector<std::vector<float>> data;
    std::vector<std::pair<std::string, std::pair<std::vector<int64_t>, const float*>>> tensors;
    for (const WeightSpec& w : weight_table(cfg)) {
      if (w.row_optional && w.mtp) continue;  // the MTP module shares the main embedding and head
      const int64_t rows = w.shape[0], cols = w.shape.size() > 1 ? w.shape[1] : 1;
      std::vector<float> v(size_t(rows * cols));
      const bool out_proj = w.role == Role::AttnO || w.role == Role::FfnDown || w.role == Role::ExpertDown ||
                            w.role == Role::SharedDown;
      if (w.kind == WeightKind::Vector) {
        std::fill(v.begin(), v.end(), w.role == Role::MoeRouterBias ? 0.0f : 1.0f);
      } else if (w.role == Role::MtpEhProj) {
        for (int64_t r = 0; r < rows; ++r) v[size_t(r * cols + r)] = 1.0f;  // [I | 0]: the embedding half
      } else if (!(out_proj && w.mtp)) {
        const float scale = (w.role == Role::Embed ? 1.0f : 1.0f / std::sqrt(float(cols))) * (out_proj ? 0.35f : 1.0f);
        for (float& x : v) x = n01(rng) * scale;
      }
      data.push_back(std::move(v));
      tensors.push_back({w.name, {w.shape, data.back().data()}});
    }
    write_safetensors_f32((d / "model.safetensors").string(), tensors);
    std::atexit([] { fs::remove_all(fs::temp_directory_path() / ("fathom-spec-echo-" + std::to_string(::getpid()))); });
    return d.string();
  }();
  return dir;
}

inline std::unique_ptr<Model> load_echo(int threads = 1) {
  LoadOpts lo;
  lo.threads = threads;
  return load_model(echo_model_dir(), lo);
}

inline std::unique_ptr<Model> load_small(int threads = 1) {
  LoadOpts lo;
  lo.threads = threads;
  return load_model(small_mtp_model_dir(), lo);
}

}  // namespace fathom::test
