#pragma once
// GGML block formats (Q2_K..Q6_K, IQ4_XS, the IQ1/IQ2/IQ3 lattices, Q4_1, Q5_0, Q5_1, IQ4_NL)
// as the int8 kernels consume them. A block of 32 or 256 values decodes to int8 quants,
// integer scales and mins per 16 values, and two float factors:
//   value k = d · sc[k/16] · q[k] − dmin · mi[k/16]
// which is ggml's dequantized value up to float rounding. Every format fits: the K-quants'
// sub-block scales and mins; the lattices' signed grid points with their odd scales 2s+1
// (IQ1's ±1/8 shift folds in as q = 8·grid ± 1 with d/8); the 32-value formats with sc = 1
// (Q4_1/Q5_1: dmin = −m, mi = 1); Q6_K keeps its 6-bit quants unsigned, its −32 offset
// becomes a min (mi = 32·sc, dmin = d). |q| ≤ 127, so vpmaddubsw with |q| never saturates.
//
// Activations are quantized per block of the weight format (amax/127, round to nearest even),
// so each weight block meets one activation scale dx and its sums stay in integers:
//   lane j (0..7) of a block: S[j] = Σ_g sc[2g + j/4] · Σ_{e<4} q[32g+4j+e]·xq[32g+4j+e]
//                             M[j] = mi[2j]·xs[2j] + mi[2j+1]·xs[2j+1]   (xs: Σ xq per 16)
//   f[j] = fma(float(S[j]), dx·d, f[j]);  mf[j] = fma(float(M[j]), dx·dmin, mf[j])
//   y = hsum8(f) − hsum8(mf)   (mf only for formats with mins)
// The scalar, AVX2 and AVX-512 kernels all compute exactly this, so they agree bit for bit.
#include <cstdint>
#include <iterator>
#include <type_traits>
#include <utility>

#include "core/dtype.h"

namespace fathom::cpu::detail {

struct alignas(64) DecodedBlock {
  int8_t q[256];    // [values]
  int16_t sc[16];   // [values / 16]
  int16_t mi[16];   // [values / 16], zero for formats without mins
  float d = 0.0f, dmin = 0.0f;
};

// True for the formats whose decoded blocks carry mins (Q2_K, Q4_K, Q5_K, Q6_K, Q4_1, Q5_1);
// exactly these have quants ≥ 0 (the mins hold their offsets), which the kernels rely on.
constexpr bool ggml_mins(DType t) {
  return t == DType::Q2_K || t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K || t == DType::Q4_1 ||
         t == DType::Q5_1;
}

// Decodes one block (dtype_block_values(t) values) at `blk`. Scalar reference.
void decode_block_scalar(DType t, const uint8_t* blk, DecodedBlock& out);

// The scales, mins and factors of a block (everything but q), shared by every decoder.
void decode_scales(DType t, const uint8_t* blk, DecodedBlock& out);

// Quantizes one activation row of K values to blocks of `nv` (32 or 256): q[K], d[K/nv] and
// s16[K/16] = Σq per 16 values. The one quantizer of every GGML kernel.
void quantize_acts_ggml(const float* x, int64_t K, int nv, int8_t* q, float* d, int16_t* s16);
// The same bytes with AVX2 (ggml_avx2.cpp).
void quantize_acts_ggml_avx2(const float* x, int64_t K, int nv, int8_t* q, float* d, int16_t* s16);

// Decodes nblk consecutive blocks of one row with the AVX2 decoders (ggml_avx2.cpp), bit for
// bit decode_block_scalar's output; the AVX-512 kernel builds its panels with it.
void decode_blocks_avx2(DType t, const uint8_t* row, int64_t nblk, DecodedBlock* out);

// Calls f(std::integral_constant<DType, t>{}) for a GGML block format t (core's kGgmlBlocks),
// so that a kernel is instantiated per format; `other` handles every other dtype.
template <class F, class G, size_t... I>
void dispatch_ggml(DType t, F&& f, G&& other, std::index_sequence<I...>) {
  const bool found = ((t == kGgmlBlocks[I].dtype && (f(std::integral_constant<DType, kGgmlBlocks[I].dtype>{}), true)) || ...);
  if (!found) other();
}
template <class F, class G>
void dispatch_ggml(DType t, F&& f, G&& other) {
  dispatch_ggml(t, f, other, std::make_index_sequence<std::size(kGgmlBlocks)>{});
}

}  // namespace fathom::cpu::detail
