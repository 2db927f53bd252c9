#pragma once
// A GGUF file seen as an HF checkpoint: its tensors under the safetensors names of the
// family's role table, in the layout the HF names imply, so the checked loader takes them
// like any other checkpoint.
#include <string>

#include "io/config.h"
#include "io/safetensors.h"
#include "model/roles.h"

namespace fathom {

// F32, F16, BF16, Q8_0 and Q4_0 tensors are used in place (their GGML blocks are fathom's);
// other GGML types are dequantized to F32 at load. Converted on the way: stacked experts
// (`ffn_*_exps`, `ffn_gate_up_exps`) are cut per expert; DeepSeek's split `attn_k_b` +
// `attn_v_b` are joined into kv_b; Llama's permuted Q/K rows are put back in HF order.
TensorStore gguf_tensor_store(const std::string& path, const ModelConfig& cfg, const RoleTable& table);

}  // namespace fathom
