#pragma once
// GGML block formats (Q2_K..Q6_K, IQ4_XS, the IQ1/IQ2/IQ3 lattices, Q4_1, Q5_0, Q5_1, IQ4_NL)
// as the int8 kernels consume them. A block of 32 or 256 values decodes to int8 quants and
// one float scale and min per 16 values:
//   value k = a[k/16] · q[k] − mn[k/16]
// (ggml's dequantized value, up to the rounding of that expression). Every format fits:
// the K-quants' sub-block scales and mins, the lattices' signed grid points (IQ1's ±1/8 shift
// folds in as q = 8·grid ± 1 with a = dl/8). |q| ≤ 127, so vpmaddubsw with |q| never
// saturates.
//
// The kernels (ggml_matmul.cpp) compute y[i, n] in one fixed sequence of operations:
//   f[0..7] = 0, mins = 0; for each 32-value group g of the row, activation block g:
//     lane j: f[j] = fma(float(Σ_{e<4} q[32g+4j+e]·xq[32g+4j+e]), xd[g]·a[2g + j/4], f[j])
//     if the format has mins: for h in 0, 1: mins = fma(xd[g]·mn[2g+h], float(Σ16 xq), mins)
//   y = hsum8(f) − mins
// so the scalar, AVX2 and AVX-512 versions agree bit for bit.
#include <cstdint>

#include "core/dtype.h"

namespace fathom::cpu::detail {

struct alignas(64) DecodedBlock {
  int8_t q[256];   // [values]
  float a[16];     // [values / 16]
  float mn[16];    // [values / 16], zero for formats without mins
};

// True for the formats whose decoded blocks carry mins (Q2_K, Q4_K, Q5_K, Q4_1, Q5_1).
bool ggml_has_mins(DType t);

// Decodes one block (dtype_block_values(t) values) at `blk`: q[values], a and mn[values/16].
// Scalar reference.
void decode_block_scalar(DType t, const uint8_t* blk, int8_t* q, float* a, float* mn);
inline void decode_block_scalar(DType t, const uint8_t* blk, DecodedBlock& out) {
  decode_block_scalar(t, blk, out.q, out.a, out.mn);
}

// The scales and mins of a block, shared by every decoder so they round identically.
void decode_scales(DType t, const uint8_t* blk, float* a, float* mn);

}  // namespace fathom::cpu::detail
