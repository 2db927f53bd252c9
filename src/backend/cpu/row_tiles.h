#pragma once
// Internal to the AVX2 kernels on row-major weights (float_avx2.cpp, quant_avx2.cpp): the
// walk over a column range in tiles of rows of x × weight rows. Include after simd.h: the
// walk is compiled for AVX2 like the kernels whose tiles it inlines.
#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "backend/cpu/kernels.h"
#include "backend/cpu/simd.h"

FATHOM_AVX2_BEGIN
namespace fathom::cpu::detail {

// Computes y[:, n0:n1] in tiles of r ≤ kR rows of x × c weight rows, each by
// table[(r - 1)·kW + c - 1](make(i0, c0)), the tile whose first row of x is i0 and first
// weight row c0. Column panels sized so a panel of weights (~256 KiB of rows of `row_bytes`)
// stays in L2 while every row tile passes over it; c ≤ kC, or ≤ kGemvC with one row of x
// left (decode).
template <int kR, int kC, int kGemvC, int kW, class Tile, class Make>
inline void run_row_tiles(const Job& job, int64_t n0, int64_t n1, size_t row_bytes,
                          const std::array<void (*)(const Tile&), size_t(kR * kW)>& table, const Make& make) {
  const int64_t m = job.m;
  const int64_t panel = std::max<int64_t>(16, (256 << 10) / std::max<int64_t>(1, int64_t(row_bytes)));
  for (int64_t p0 = n0; p0 < n1; p0 += panel) {
    const int64_t p1 = std::min(n1, p0 + panel);
    for (int64_t i0 = 0; i0 < m; i0 += kR) {
      const int r = int(std::min<int64_t>(kR, m - i0));
      const int cmax = r == 1 ? kGemvC : kC;
      for (int64_t c0 = p0; c0 < p1; c0 += cmax) {
        const int c = int(std::min<int64_t>(cmax, p1 - c0));
        table[(r - 1) * kW + (c - 1)](make(i0, c0));
      }
    }
  }
}

// A kernel's tile table for run_row_tiles: entry (r - 1)·kW + c - 1 is
// pick.template operator()<r, c>(), the tile function for r rows of x × c weight rows.
template <int kR, int kW, class Pick>
constexpr auto row_tile_table(Pick pick) {
  return [&]<size_t... I>(std::index_sequence<I...>) {
    return std::array{pick.template operator()<int(I / kW) + 1, int(I % kW) + 1>()...};
  }(std::make_index_sequence<size_t(kR * kW)>{});
}

}  // namespace fathom::cpu::detail
FATHOM_AVX2_END
