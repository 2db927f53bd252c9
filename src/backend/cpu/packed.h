#pragma once
// Layout::Packed16: Q8_0/Q4_0 weights rearranged at load for vpdpbusd-style instructions,
// which multiply 4 unsigned weight bytes by 4 signed activation bytes in each of 16 int32
// lanes. One 64-byte load then covers 4 k-values of 16 output rows, the activation bytes are
// a broadcast, and a block's 16 int32 sums come out in one register, so one convert and one
// FMA finish 16 outputs (the row-major kernels spend those per output). The values are the
// same as in the row-major block format; only their order and an offset change. AVX2 has no
// vpdpbusd but gets the same int32 lanes from vpmaddubsw + vpmaddwd (quant_packed_avx2.cpp).
//
// Rows are taken in groups of 16 (the last group padded with zero rows, scale 0). Group g
// (rows 16g..16g+15) starts at g·group_bytes and holds its K/32 blocks in pairs ("units"):
//   unit u = blocks 2u, 2u+1:  quants [2][steps][16][4] bytes, then scales [2][16] f16
// (an odd last block leaves its unit's second half as padding). Scales next to their quants
// keep a GEMV on one forward stream: with all of a group's scales after its quants, the two
// interleaved streams measured ~25% slower per core than a plain read loop.
// Q8_0: 8 steps; byte [b][s][c][i] = w[16g+c][32b+4s+i] + 128, as uint8.
// Q4_0: 4 steps; byte [b][s][c][i] = nib(32b+4s+i) | nib(32b+16+4s+i) << 4 (the stored
//       nibbles, w + 8), so the low nibbles are steps 0..3 and the high ones 4..7.
// With offset = 128 (Q8_0) or 8 (Q4_0): Σ byte·x = Σ w·x + offset·Σx over a block, and the
// kernels start each block's sum at -offset·Σx, which the activation quantizer precomputes.
#include <cstdint>
#include <memory>

#include "backend/cpu/matmul.h"
#include "core/thread_pool.h"

namespace fathom::cpu {

constexpr int64_t kPackRows = 16;

struct PackedGeometry {
  int64_t nb = 0;            // blocks per row (K/32)
  int64_t quant_bytes = 0;   // per block per group: 512 (Q8_0) or 256 (Q4_0)
  int64_t unit_bytes = 0;    // 2·quant_bytes + 64: one pair of blocks, a multiple of 64
  int64_t group_bytes = 0;   // ceil(nb/2)·unit_bytes
  int64_t groups = 0;        // ceil(rows/16)
  int32_t offset = 0;        // 128 (Q8_0) or 8 (Q4_0)
};
PackedGeometry packed_geometry(DType t, int64_t rows, int64_t cols);

// Offsets inside a group of block b's quants and of its 16 f16 scales.
inline int64_t packed_quant_off(const PackedGeometry& g, int64_t b) {
  return (b >> 1) * g.unit_bytes + (b & 1) * g.quant_bytes;
}
inline int64_t packed_scale_off(const PackedGeometry& g, int64_t b) {
  return (b >> 1) * g.unit_bytes + 2 * g.quant_bytes + (b & 1) * kPackRows * 2;
}

// Bytes of w in Layout::Packed16.
size_t packed_bytes(DType t, int64_t rows, int64_t cols);

// 64-byte aligned heap bytes.
struct AlignedFree {
  void operator()(uint8_t* p) const;
};
using AlignedBytes = std::unique_ptr<uint8_t, AlignedFree>;
AlignedBytes alloc_aligned(size_t bytes);
// 2 MiB aligned, asking the kernel for transparent huge pages: weights streamed once per token
// then cross a page (TLB entry) every 2 MiB instead of every 4 KiB.
AlignedBytes alloc_huge(size_t bytes);

// True when matmul has a faster kernel for Packed16 than for Rows on this CPU (AVX2 or
// AVX-512 VNNI), i.e. when loading should pack a weight of this dtype.
bool packing_pays(DType t);

// Repacks a Rows Q8_0/Q4_0 weight (cols % 32 == 0) on `pool` (nullptr: this thread) into
// `out` (64-byte aligned, packed_bytes() long). The view points into `out`.
WeightView pack16(const WeightView& w, uint8_t* out, ThreadPool* pool);
// The same into a new allocation.
WeightView pack16(const WeightView& w, AlignedBytes& out, ThreadPool* pool);

// Writes row r of w (either layout) in the dtype's row-major block encoding (row_bytes()).
void copy_row_blocks(const WeightView& w, int64_t r, uint8_t* dst);

}  // namespace fathom::cpu
