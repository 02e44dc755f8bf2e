// Internal helpers shared by the kernel .cpp files; not part of any kernel contract.
//
// exp_f32: a branch-free exp that GCC vectorises (glibc's expf stays scalar without fast-math).
// Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, then Cephes' degree-7 expf polynomial
// (exp(r) = 1 + r + r^2 P(r)), then the exact scaling by 2^n. Every operation is an explicit
// IEEE operation (std::fma, no fast-math), so results are identical in every run and for every
// vector width. Error against the exact exp: at most 1.02 ulp over every float in [-106, 90]
// (measured exhaustively; tests/kernels/activations_test.cpp re-checks a sample against 2 ulp).
// Overflow gives +inf (x > 88.72...), underflow gives gradual denormals and then 0
// (x < -103.97...), NaN stays NaN. The polynomial is degree 5 in P, i.e. degree 7 in exp(r).
//
// for_ranges: serial below a grain size (a parallel region costs microseconds), else the
// process thread pool's static split. Kernels use it only where every output element is computed
// independently of the split, so results never depend on the thread count.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "core/parallel.h"

namespace infini::kernel_detail {

inline float exp_f32(float x) {
  // Clamp with comparisons (a NaN fails both and passes through). Outside [-105, 89] exp(x) is
  // 0 or +inf in float, and the clamped value yields exactly that below.
  float xc = x < -105.0f ? -105.0f : x;
  xc = xc > 89.0f ? 89.0f : xc;
  // n = round(x / ln2) by the 1.5 * 2^23 trick (exact for |x / ln2| < 2^22, round to nearest).
  const float shifter = 12582912.0f;
  float n = std::fma(xc, 1.44269504088896341f, shifter) - shifter;
  // r = x - n ln2 with ln2 split in two so that n * ln2_hi is exact (Cody-Waite).
  float r = std::fma(n, -0.693359375f, xc);
  r = std::fma(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  float er = std::fma(p, r * r, r) + 1.0f;  // exp(r) in [0.7, 1.42]
  // 2^n with n in [-152, 128], applied as two factors 2^n1 2^n2 that are normal floats, so that
  // overflow and gradual underflow happen only in the last multiplication, correctly rounded.
  int32_t ni = int32_t(n);
  int32_t n1 = ni >> 1, n2 = ni - n1;
  float s1 = std::bit_cast<float>(uint32_t(n1 + 127) << 23);
  float s2 = std::bit_cast<float>(uint32_t(n2 + 127) << 23);
  return er * s1 * s2;
}

// 1 / (1 + exp(-x)), and silu(x) = x / (1 + exp(-x)) written as PyTorch writes it.
inline float sigmoid_f32(float x) {
  return 1.0f / (1.0f + exp_f32(-x));
}

template <typename Body>
void for_ranges(int64_t n, int64_t grain, Body&& body) {
  if (n <= 0) return;
  if (n <= grain || in_parallel_region()) {
    body(int64_t(0), n);
  } else {
    parallel_ranges(n, body);
  }
}

// sum over i < n of term(i), in double, in a fixed order: 16 interleaved partial sums (lane j
// takes i = j mod 16), then the lanes added 0..15. Deterministic for a given n, and vectorised
// without relying on `omp simd reduction` (whose accumulators GCC 12 can leave on the stack).
template <typename Term>
inline double sum_double(int64_t n, Term&& term) {
  constexpr int kLanes = 16;
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += double(term(i + j));
  for (int j = 0; i + j < n; ++j) acc[j] += double(term(i + j));
  double s = 0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

// Work below about this many elements runs serially.
constexpr int64_t kGrainElements = 16384;
// The grain in rows for rows of `cols` elements.
inline int64_t grain_rows(int64_t cols) {
  return cols > 0 ? std::max<int64_t>(1, kGrainElements / cols) : 1;
}

}  // namespace infini::kernel_detail
