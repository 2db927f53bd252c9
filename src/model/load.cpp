#include "core/error.h"
#include "model/transformer.h"

namespace fathom {

std::unique_ptr<Model> load_model(const std::string& dir, const LoadOpts& opts) {
  return load_model(ModelConfig::load(dir), dir, opts);
}

std::unique_ptr<Model> load_model(ModelConfig cfg, const std::string& dir, const LoadOpts& opts) {
  switch (cfg.arch) {
    case Arch::DeepseekV3:
    case Arch::DeepseekV2: return build_deepseek(dir, std::move(cfg), opts);
    case Arch::Qwen2: return build_qwen2(dir, std::move(cfg), opts);
    case Arch::Llama: return build_llama(dir, std::move(cfg), opts);
  }
  fail("unsupported architecture");
}

void Model::mtp_forward(int64_t, const std::vector<MtpChunk>&, KvCache&, float*, float*, const ForwardOpts&) {
  fail("this model has no multi-token prediction module");
}

}  // namespace fathom
