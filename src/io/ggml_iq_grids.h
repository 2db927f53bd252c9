#pragma once
// The lattice codebooks of GGML's IQ1/IQ2/IQ3 formats, and the sign table they share.
#include <array>
#include <cstdint>

namespace fathom::ggml::iq {

// Point i of a grid: byte j (little-endian) is its value j. The IQ2 grids hold magnitudes
// {8, 25, 43}, IQ3_XXS {4, 12, ..., 52, 62}, IQ3_S {1, 3, ..., 15}; IQ1_S/IQ1_M points are
// int8 values in {-1, 0, 1}.
extern const std::array<uint64_t, 256> kIq2xxsGrid;
extern const std::array<uint64_t, 512> kIq2xsGrid;
extern const std::array<uint64_t, 1024> kIq2sGrid;
extern const std::array<uint32_t, 256> kIq3xxsGrid;
extern const std::array<uint32_t, 512> kIq3sGrid;
extern const std::array<uint64_t, 2048> kIq1sGrid;

// IQ2_XXS/IQ2_XS/IQ3_XXS store the signs of 8 values in 7 bits: the eighth makes the count
// of negatives even. Bit j of the result is set when value j is negative.
constexpr uint8_t signs_from7(uint32_t s7) {
  const uint32_t s = s7 & 127;
  return uint8_t(s | ((uint32_t(__builtin_popcount(s)) & 1u) << 7));
}

// IQ1_S/IQ1_M shift every value of a group of 8 by ±1/8 (the format's delta).
inline constexpr float kIq1Delta = 0.125f;

}  // namespace fathom::ggml::iq
