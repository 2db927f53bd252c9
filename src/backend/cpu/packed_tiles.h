#pragma once
// Internal to the Packed16 kernels (quant_vnni.cpp, quant_packed_avx2.cpp): one tile of
// activation rows × groups of 16 outputs, and the walk over a column range in tiles.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "backend/cpu/kernels.h"
#include "backend/cpu/packed.h"

namespace fathom::cpu::detail {

struct PackedTile {
  const uint8_t* w;       // first group of the tile
  int64_t gstride;        // bytes between groups
  const int8_t* xq;       // activation row i0, stride K
  const float* xd;        // its block scales, stride nb
  const int32_t* ncorr;   // its -offset·Σq per block, stride nb
  int64_t K;
  PackedGeometry geo;
  float* y;               // y[i0, 16·g0], stride ldy
  int64_t ldy;
  int last_cols;          // valid outputs of the tile's last group (1..16)

  // Block b's quants and 16 f16 scales in the tile's first group.
  const uint8_t* quants(int64_t b) const { return w + packed_quant_off(geo, b); }
  const uint8_t* scales(int64_t b) const { return w + packed_scale_off(geo, b); }
};

using PackedTileFn = void (*)(const PackedTile&);

// Computes y[:, n0:n1] in tiles of r ≤ kR rows × g ≤ kG groups, each by
// table[(r - 1)·kG + g - 1]. Weight panels of ~256 KiB stay in L2 while every row of x
// passes over them; a single row (decode) goes one group at a time, one sequential stream.
template <int kR, int kG>
void run_packed_tiles(const Job& job, int64_t n0, int64_t n1, const std::array<PackedTileFn, kR * kG>& table) {
  const WeightView& w = *job.w;
  const PackedGeometry geo = packed_geometry(w.dtype, w.rows, w.cols);
  const int64_t K = w.cols, N = w.rows, m = job.m;
  const int64_t g0 = n0 / kPackRows, g1 = (n1 + kPackRows - 1) / kPackRows;
  const int64_t panel = std::max<int64_t>(kG, (256 << 10) / geo.group_bytes);
  const auto* base = static_cast<const uint8_t*>(w.data);
  for (int64_t p0 = g0; p0 < g1; p0 += panel) {
    const int64_t p1 = std::min(g1, p0 + panel);
    for (int64_t i0 = 0; i0 < m; i0 += kR) {
      const int r = int(std::min<int64_t>(kR, m - i0));
      const int gmax = r == 1 ? 1 : kG;
      for (int64_t gg = p0; gg < p1; gg += gmax) {
        const int g = int(std::min<int64_t>(gmax, p1 - gg));
        const int64_t last_col0 = (gg + g - 1) * kPackRows;
        const PackedTile t{base + gg * geo.group_bytes, geo.group_bytes, job.qa.q + i0 * K, job.qa.d + i0 * geo.nb,
                           job.qa.ncorr + i0 * geo.nb, K, geo, job.y + i0 * N + gg * kPackRows, N,
                           int(std::min<int64_t>(kPackRows, std::min(n1, N) - last_col0))};
        table[size_t((r - 1) * kG + (g - 1))](t);
      }
    }
  }
}

// A Packed16 kernel: Tile<Q4, r, g>::run computes one tile of r ≤ kR rows × g ≤ kG groups.
// The tile table, the walk and the dtype dispatch are the same for every kernel.
template <template <bool, int, int> class Tile, bool Q4, int kR, int kG, size_t... I>
constexpr std::array<PackedTileFn, kR * kG> packed_tile_table(std::index_sequence<I...>) {
  return {&Tile<Q4, int(I / kG) + 1, int(I % kG) + 1>::run...};
}

template <template <bool, int, int> class Tile, int kR, int kG>
void run_packed_kernel(const Job& job, int64_t n0, int64_t n1, const char* kernel) {
  static constexpr auto q8 = packed_tile_table<Tile, false, kR, kG>(std::make_index_sequence<kR * kG>{});
  static constexpr auto q4 = packed_tile_table<Tile, true, kR, kG>(std::make_index_sequence<kR * kG>{});
  switch (job.w->dtype) {
    case DType::Q8_0: return run_packed_tiles<kR, kG>(job, n0, n1, q8);
    case DType::Q4_0: return run_packed_tiles<kR, kG>(job, n0, n1, q4);
    default: fail_no_kernel(kernel, job.w->dtype);
  }
}

// 4 activation bytes as one int32, for a broadcast.
inline int32_t act4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace fathom::cpu::detail
