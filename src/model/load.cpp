#include "core/error.h"
#include "model/transformer.h"

namespace fathom {

std::vector<WeightSpec> qwen2_weight_table(const ModelConfig& c);
std::vector<WeightSpec> llama_weight_table(const ModelConfig& c);

std::vector<WeightSpec> weight_table(const ModelConfig& c) {
  switch (c.arch) {
    case Arch::DeepseekV3:
    case Arch::DeepseekV2: return deepseek_weight_table(c);
    case Arch::Qwen2: return qwen2_weight_table(c);
    case Arch::Llama: return llama_weight_table(c);
  }
  fail("unsupported architecture");
}

std::unique_ptr<Model> load_model(const std::string& dir, const LoadOpts& opts) {
  ModelConfig cfg = ModelConfig::load(dir);
  switch (cfg.arch) {
    case Arch::DeepseekV3:
    case Arch::DeepseekV2: return build_deepseek(dir, std::move(cfg), opts);
    case Arch::Qwen2: return build_qwen2(dir, std::move(cfg), opts);
    case Arch::Llama: return build_llama(dir, std::move(cfg), opts);
  }
  fail("unsupported architecture");
}

}  // namespace fathom
