#pragma once
// Linear layers on the CPU: y = x · Wᵀ for a weight in any storage format.
//
// Batch invariance: y[i] depends only on x[i] and W, bit for bit, whatever the number of
// rows m or threads. The server relies on it so that a sequence's logits do not depend on
// what else is in the batch. Parallelism therefore splits the output columns, never the
// reduction.
#include <cstdint>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace fathom::cpu {

// How a matrix's bytes are arranged.
enum class Layout : uint8_t {
  Rows,      // row-major, each row in its dtype's own encoding (HF Linear layout)
  Packed16,  // Q8_0/Q4_0 only: groups of 16 rows interleaved for int8 dot-product
             // instructions that multiply 4 bytes of 16 outputs at once (packed.h)
};

// A weight matrix: `rows` outputs × `cols` inputs.
struct WeightView {
  DType dtype = DType::F32;  // F32, F16, BF16, F8_E4M3, Q8_0, Q4_0
  int64_t rows = 0;          // N (out features)
  int64_t cols = 0;          // K (in features); a multiple of 32 for Q8_0/Q4_0
  const void* data = nullptr;
  // F8_E4M3 only: scale_inv [ceil(rows/block), ceil(cols/block)], w = fp8 * scale_inv.
  const float* block_scale = nullptr;
  int64_t block = 128;
  Layout layout = Layout::Rows;

  // Bytes of one row in its dtype's encoding, and row r itself (Layout::Rows only).
  size_t row_bytes() const { return dtype_bytes(dtype, cols); }
  const uint8_t* row(int64_t r) const { return static_cast<const uint8_t*>(data) + r * row_bytes(); }
  // Bytes of the whole matrix in its layout (FP8 scales not included).
  size_t bytes() const;
};

// Rows [r0, r0+n) of w as a view. Packed16 needs r0 % 16 == 0 and n % 16 == 0 (or r0+n == rows).
WeightView slice_rows(const WeightView& w, int64_t r0, int64_t n);

// Which implementation runs. Auto picks the best the CPU has: Packed16 weights run the
// AVX-512 VNNI kernel (else a scalar mirror of it, bit-identical), Rows weights the AVX2
// kernels (else scalar ones), GGML block formats the AVX-512 VNNI kernel where present (all
// three GGML kernels are bit-identical). Avx512 asks for the VNNI kernels on Packed16 and GGML
// weights (and AVX2 for the rest); Avx2 and Scalar run Packed16 weights on the scalar mirror. Implementations
// agree up to rounding (float formats: fused vs unfused multiply-add; Q8_0/Q4_0: identical
// int32 block sums), and each is batch- and thread-invariant on its own.
// Q8_0/Q4_0 weights quantize each row of x to Q8 blocks of 32 (d = amax/127, round to
// nearest even) and run int8 dot products; float formats use exact fp32 math.
enum class Isa { Auto, Scalar, Avx2, Avx512 };

struct MatmulOpts {
  Isa isa = Isa::Auto;
};

// y[m, rows] = x[m, cols] · Wᵀ.
void matmul(const WeightView& w, const float* x, int64_t m, float* y, ThreadPool& pool,
            const MatmulOpts& opts = {});

// Several independent products y_j = x_j · W_jᵀ in one parallel section (one pool wake-up
// instead of one per product, e.g. every routed expert of a decode step). Each y_j is bit
// identical to matmul(*w, x, m, y). Outputs must not overlap inputs.
struct MatmulTask {
  const WeightView* w = nullptr;
  const float* x = nullptr;  // [m, w->cols]
  int64_t m = 0;
  float* y = nullptr;        // [m, w->rows]
};
void matmul_many(const MatmulTask* tasks, size_t n, ThreadPool& pool, const MatmulOpts& opts = {});

// Dequantizes row r of w into out[cols] (exact for F32/F16/BF16/F8; block formats as defined).
void dequantize_row(const WeightView& w, int64_t r, float* out);

// True when this CPU can run the AVX2 kernels (AVX2, FMA and F16C).
bool cpu_has_avx2();
// True when this CPU has AVX-512 F and VL (and the OS saves zmm state).
bool cpu_has_avx512();
// True when this CPU can run the AVX-512 VNNI kernels (F, BW, VL, VNNI; the OS saves zmm state).
bool cpu_has_avx512_vnni();

}  // namespace fathom::cpu
