#pragma once
// The named intermediate tensors of a forward pass, one struct per layer kind, in backend
// memory (R: rows of the batch). Inference shares one set between all layers; training keeps
// one per layer for the backward pass.
#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace fathom {

struct StackActs {
  Buf x;        // [R, D] residual stream
  Buf h;        // [R, D] normed input of a sublayer
  Buf out;      // [R, D] sublayer output
  Buf head_in;  // [NL, D] final-normed rows whose logits are wanted
};

struct MlaActs {
  Buf q;       // [R, H, nope + rope]
  Buf q_a;     // [R, q_lora] (q-LoRA)
  Buf kv;      // [R, latent + rope] normed latent | roped k_pe
  Buf attn;    // [R, H·v]
  // absorbed
  Buf q_nope;  // [H, R, nope]
  Buf q_lat;   // [H, R, latent] W_UKᵀ q_nope
  Buf q_full;  // [H, R, latent + rope] q_lat | q_pe
  Buf ctx;     // [H, R, latent] Σ p·c
  Buf o_heads; // [H, R, v] W_UV · ctx
  // naive
  Buf lat;     // [P, latent] a chunk's cached latents
  Buf kv_full; // [P, H, nope + v] k_nope | v expanded from them
};

struct GqaActs {
  Buf q;     // [R, H, hd]
  Buf k;     // [R, KVH, hd]
  Buf v;     // [R, KVH, hd]
  Buf attn;  // [R, H·hd]
};

struct MlpActs {
  Buf gate;  // [R, I] gate, then silu(gate)·up
  Buf up;    // [R, I]
};

struct MoeActs {
  Buf logits;    // [R, E] router logits
  Buf x_routed;  // [NR, D] rows gathered by expert (NR = R·K dispatched rows)
  Buf gate;      // [NR, I] then [R, SI]: routed then shared gate products (one SwiGLU pass)
  Buf up;        // [NR, I] then [R, SI]
  Buf y;         // [NR, D] expert outputs
  Buf shared_y;  // [R, D] shared experts' output
  std::vector<int32_t> ids;    // [R, K] host: selected experts
  std::vector<float> weights;  // [R, K] host: their weights
  MoePlan plan;                // host: the dispatch
  std::vector<MatmulTask> tasks;
};

struct Activations {
  StackActs stack;
  MlaActs mla;
  GqaActs gqa;
  MlpActs mlp;
  MoeActs moe;
};

}  // namespace fathom
