#pragma once
// Counter-based pseudo-random numbers: the same input always gives the same output, so
// values can be generated in any order, in parallel, and reproduced from a seed.
#include <cstdint>

namespace fathom {

// SplitMix64 (Steele, Lea, Flood 2014): one step of its sequence, i.e. a bijective 64-bit
// mix of x. splitmix64(seed ^ i) or splitmix64(splitmix64(seed) ^ i) gives value i.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace fathom
