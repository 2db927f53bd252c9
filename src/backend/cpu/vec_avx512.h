#pragma once
// AVX-512F latent-cache loops behind vec.h (see vec_avx512.cpp); call only where
// cpu_has_avx512() holds.
#include <cstdint>

#include "backend/cpu/vec.h"

namespace fathom::cpu::avx512 {

void latent_scores_heads(const float* q, int64_t qs, int64_t nh, const LatentCache& c, int64_t T, int64_t dim,
                         float* scores, int64_t ss);
void latent_weighted_sum_heads(const float* p, int64_t ps, int64_t nh, const LatentCache& c, int64_t T, int64_t dim,
                               float* out, int64_t os);

}  // namespace fathom::cpu::avx512
