// libFuzzer target: the GGML block kernels on arbitrary block bytes. Byte 0 picks the format,
// byte 1 the rows of x (1..8); the rest fills whole rows of two blocks each. The scalar, AVX2
// and AVX-512 VNNI kernels must agree bit for bit (NaN with NaN), and the row dequantizer must
// not fault, whatever the bytes (grid indices, scales, f16 fields) say.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <vector>

#include "backend/cpu/matmul.h"
#include "core/thread_pool.h"

namespace {

bool same(float a, float b) { return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, 4) == 0; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fathom;
  if (size < 2) return 0;
  const DType t = kGgmlBlocks[data[0] % std::size(kGgmlBlocks)].dtype;
  const int64_t m = 1 + data[1] % 8;
  const int64_t K = 2 * dtype_block_values(t);
  const size_t row = dtype_bytes(t, K);
  const int64_t N = int64_t((size - 2) / row);
  if (N == 0) return 0;
  std::vector<uint8_t> w(data + 2, data + 2 + size_t(N) * row);
  cpu::WeightView v{t, N, K, w.data(), nullptr, 128};
  std::vector<float> x(size_t(m * K));  // [m, K]
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(data[2 + i % (size - 2)]) - 128) / 16.0f;
  static ThreadPool pool(1);
  std::vector<float> ys(size_t(m * N)), yv(size_t(m * N));
  cpu::matmul(v, x.data(), m, ys.data(), pool, {cpu::Isa::Scalar});
  for (cpu::Isa isa : {cpu::Isa::Avx2, cpu::Isa::Avx512}) {
    if (isa == cpu::Isa::Avx2 ? !cpu::cpu_has_avx2() : !cpu::cpu_has_avx512_vnni()) continue;
    cpu::matmul(v, x.data(), m, yv.data(), pool, {isa});
    for (size_t i = 0; i < ys.size(); ++i)
      if (!same(ys[i], yv[i])) __builtin_trap();
  }
  std::vector<float> r(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) cpu::dequantize_row(v, n, r.data());
  return 0;
}
