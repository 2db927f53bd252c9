#pragma once
// The exp-based elementwise ops of the model code (softmax, SwiGLU). One exp serves both: a
// degree-6 polynomial after reduction by ln 2 (the classic single-precision scheme), within
// 2 ulp of the exact value over the normal range, with denormal and infinite results where
// expf has them and NaN passed through. AVX2 lanes where the CPU has it, else a scalar
// mirror of the same operations (FMAs included), so the two give the same bits: a decode
// step's thousands of exps per layer cost ~2 cycles each instead of libm's ~15.
#include <cstdint>

namespace fathom::cpu {

// The scalar mirror of one lane.
float exp_lane(float x);

// x[i] = exp(x[i] - max) / Σ exp(x[j] - max), in place. The sum runs in 8 lanes (element i
// in lane i mod 8) added in a fixed order, then the tail, on every path.
void softmax(float* x, int64_t n);

// g[i] = (g[i] / (1 + exp(-g[i]))) · u[i]: silu(gate) · up.
void swiglu(float* g, const float* u, int64_t n);

namespace detail {  // the scalar mirrors, for tests
void softmax_scalar(float* x, int64_t n);
void swiglu_scalar(float* g, const float* u, int64_t n);
}  // namespace detail

}  // namespace fathom::cpu
