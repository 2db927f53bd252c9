#include "backend/cpu/packed.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <sys/mman.h>

#include "backend/cpu/kernels.h"
#include "core/error.h"

namespace fathom::cpu {

using detail::kQBlock;

PackedGeometry packed_geometry(DType t, int64_t rows, int64_t cols) {
  FATHOM_CHECK(t == DType::Q8_0 || t == DType::Q4_0, "packed layout: dtype {} is not Q8_0/Q4_0", dtype_name(t));
  FATHOM_CHECK(cols % kQBlock == 0, "packed layout: {} columns (not a multiple of 32)", cols);
  PackedGeometry g;
  g.nb = cols / kQBlock;
  g.quant_bytes = t == DType::Q8_0 ? 512 : 256;
  g.unit_bytes = 2 * g.quant_bytes + 2 * kPackRows * 2;
  g.group_bytes = (g.nb + 1) / 2 * g.unit_bytes;
  g.groups = (rows + kPackRows - 1) / kPackRows;
  g.offset = t == DType::Q8_0 ? 128 : 8;
  return g;
}

size_t packed_bytes(DType t, int64_t rows, int64_t cols) {
  const PackedGeometry g = packed_geometry(t, rows, cols);
  return size_t(g.groups * g.group_bytes);
}

void AlignedFree::operator()(uint8_t* p) const { std::free(p); }

AlignedBytes alloc_huge(size_t bytes) {
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t n = (std::max<size_t>(bytes, 1) + kHuge - 1) / kHuge * kHuge;
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(kHuge, n));
  FATHOM_CHECK(p != nullptr, "cannot allocate {} bytes", n);
#ifdef MADV_HUGEPAGE
  madvise(p, n, MADV_HUGEPAGE);  // advice only: without THP the memory works the same
#endif
  return AlignedBytes(p);
}

AlignedBytes alloc_aligned(size_t bytes) {
  const size_t n = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(64, n));
  FATHOM_CHECK(p != nullptr, "cannot allocate {} bytes", n);
  return AlignedBytes(p);
}

bool packing_pays(DType t) { return (t == DType::Q8_0 || t == DType::Q4_0) && cpu_has_avx2(); }

namespace {

// Byte of (group row c, k) inside a block's quants, and whether it is the high nibble (Q4_0).
struct Slot {
  int64_t byte;
  bool high;
};
inline Slot slot(bool q4, int64_t c, int64_t e) {  // e: 0..31 within the block
  if (!q4) return {(e / 4) * 64 + c * 4 + e % 4, false};
  const int64_t e16 = e % 16;
  return {(e16 / 4) * 64 + c * 4 + e16 % 4, e >= 16};
}

}  // namespace

WeightView pack16(const WeightView& w, AlignedBytes& out, ThreadPool* pool) {
  FATHOM_CHECK(w.layout == Layout::Rows, "pack16: weight is already packed");
  out = alloc_aligned(packed_bytes(w.dtype, w.rows, w.cols));
  return pack16(w, out.get(), pool);
}

WeightView pack16(const WeightView& w, uint8_t* base, ThreadPool* pool) {
  FATHOM_CHECK(w.layout == Layout::Rows, "pack16: weight is already packed");
  FATHOM_CHECK(reinterpret_cast<uintptr_t>(base) % 64 == 0, "pack16: output is not 64-byte aligned");
  const PackedGeometry g = packed_geometry(w.dtype, w.rows, w.cols);
  const bool q4 = w.dtype == DType::Q4_0;
  const int64_t bb = q4 ? 18 : 34;  // row-major block bytes
  auto groups = [&](int64_t g0, int64_t g1) {
    for (int64_t gi = g0; gi < g1; ++gi) {
      uint8_t* grp = base + gi * g.group_bytes;
      // Padding rows: value 0 (byte = offset) with scale 0; an odd last block's empty half too.
      for (int64_t b = 0; b < (g.nb + 1) / 2 * 2; ++b) {
        std::memset(grp + packed_quant_off(g, b), q4 ? 0x88 : 0x80, size_t(g.quant_bytes));
        std::memset(grp + packed_scale_off(g, b), 0, size_t(kPackRows * 2));
      }
      for (int64_t c = 0; c < kPackRows && gi * kPackRows + c < w.rows; ++c) {
        const uint8_t* row = w.row(gi * kPackRows + c);
        for (int64_t b = 0; b < g.nb; ++b) {
          const uint8_t* blk = row + b * bb;
          uint8_t* q = grp + packed_quant_off(g, b);
          std::memcpy(grp + packed_scale_off(g, b) + c * 2, blk, 2);
          // Four bytes (k = 4s..4s+3) per step; Q4_0's stored bytes already pair element e
          // (low nibble) with e+16 (high), and Q8_0's get the +128 offset (xor of the sign bit).
          for (int64_t st = 0; st < g.quant_bytes / 64; ++st) {
            uint32_t v;
            std::memcpy(&v, blk + 2 + 4 * st, 4);
            if (!q4) v ^= 0x80808080u;
            std::memcpy(q + st * 64 + c * 4, &v, 4);
          }
        }
      }
    }
  };
  if (pool) pool->parallel_for(g.groups, 4, [&](int64_t g0, int64_t g1, int) { groups(g0, g1); });
  else groups(0, g.groups);
  WeightView p = w;
  p.layout = Layout::Packed16;
  p.data = base;
  return p;
}

void copy_row_blocks(const WeightView& w, int64_t r, uint8_t* dst) {
  if (w.layout == Layout::Rows) {
    std::memcpy(dst, w.row(r), w.row_bytes());
    return;
  }
  const PackedGeometry g = packed_geometry(w.dtype, w.rows, w.cols);
  const bool q4 = w.dtype == DType::Q4_0;
  const int64_t bb = q4 ? 18 : 34, c = r % kPackRows;
  const uint8_t* grp = static_cast<const uint8_t*>(w.data) + (r / kPackRows) * g.group_bytes;
  for (int64_t b = 0; b < g.nb; ++b) {
    uint8_t* blk = dst + b * bb;
    const uint8_t* q = grp + packed_quant_off(g, b);
    std::memcpy(blk, grp + packed_scale_off(g, b) + c * 2, 2);
    if (q4)
      for (int64_t e = 0; e < 16; ++e) blk[2 + e] = q[slot(true, c, e).byte];
    else
      for (int64_t e = 0; e < kQBlock; ++e) blk[2 + e] = uint8_t(q[slot(false, c, e).byte] ^ 0x80);
  }
}

namespace detail {

// The VNNI kernel's arithmetic, one output at a time: per block the exact int32 Σ w·x, then
// acc = fma(float(Σ), d_w·d_x, acc) in block order.
void run_cols_packed_scalar(const Job& job, int64_t n0, int64_t n1) {
  const WeightView& w = *job.w;
  const PackedGeometry g = packed_geometry(w.dtype, w.rows, w.cols);
  const bool q4 = w.dtype == DType::Q4_0;
  const int64_t K = w.cols, N = w.rows;
  for (int64_t n = n0; n < n1; ++n) {
    const int64_t c = n % kPackRows;
    const uint8_t* grp = static_cast<const uint8_t*>(w.data) + (n / kPackRows) * g.group_bytes;
    for (int64_t i = 0; i < job.m; ++i) {
      const int8_t* xq = job.qa.q + i * K;
      const float* xd = job.qa.d + i * g.nb;
      float acc = 0.0f;
      for (int64_t b = 0; b < g.nb; ++b) {
        const uint8_t* q = grp + packed_quant_off(g, b);
        int32_t sum = 0;
        for (int64_t e = 0; e < kQBlock; ++e) {
          const Slot s = slot(q4, c, e);
          const int32_t v = q4 ? int32_t(s.high ? q[s.byte] >> 4 : q[s.byte] & 15) - 8 : int32_t(q[s.byte]) - 128;
          sum += v * xq[b * kQBlock + e];
        }
        uint16_t h;
        std::memcpy(&h, grp + packed_scale_off(g, b) + c * 2, 2);
        acc = std::fma(float(sum), f16_to_f32(h) * xd[b], acc);
      }
      job.y[i * N + n] = acc;
    }
  }
}

}  // namespace detail
}  // namespace fathom::cpu
