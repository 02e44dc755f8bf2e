// Row softmax, stable form y = e^(x - max x) / sum e^(x - max x), and its backward
// (the Jacobian diag(y) - y y^T applied to dy): dx = y * (dy - sum(dy * y)).
// Sums are accumulated in double (kernel_detail::sum_double), vectorised in a fixed order:
// deterministic, and the rows' results do not depend on how rows are split across threads.
#include "kernels/softmax.h"

#include <limits>

#include "core/error.h"
#include "kernels/kernel_support.h"

namespace infini {

using kernel_detail::exp_f32;
using kernel_detail::for_ranges;
using kernel_detail::grain_rows;
using kernel_detail::sum_double;

void softmax_row(float* out, const float* x, int64_t n) {
  if (n <= 0) return;
  float max = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : max)
  for (int64_t i = 0; i < n; ++i) max = x[i] > max ? x[i] : max;
  // (A row that is all -inf has no softmax: it comes out NaN, as in PyTorch.)
  const double sum = sum_double(n, [&](int64_t i) {
    const float e = exp_f32(x[i] - max);
    out[i] = e;  // out may be x: the same slot is read, then written
    return e;
  });
  const float inv = float(1.0 / sum);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] *= inv;
}

void softmax_row_backward(float* dx, const float* dy, const float* y, int64_t n) {
  if (n <= 0) return;
  const double dot = sum_double(n, [&](int64_t i) { return double(dy[i]) * double(y[i]); });
  const float d = float(dot);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] * (dy[i] - d);
}

void softmax_forward(float* out, const float* x, int64_t rows, int64_t cols) {
  INFINI_CHECK(rows >= 0 && cols >= 0, "softmax: negative size ", rows, "x", cols);
  for_ranges(rows, grain_rows(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) softmax_row(out + r * cols, x + r * cols, cols);
  });
}

void softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols) {
  INFINI_CHECK(rows >= 0 && cols >= 0, "softmax: negative size ", rows, "x", cols);
  INFINI_CHECK(rows == 0 || cols == 0 || dx != dy, "softmax_backward: dx may not alias dy");
  for_ranges(rows, grain_rows(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* dyr = dy + r * cols;  // (C)
      const float* yr = y + r * cols;    // (C)
      float* dxr = dx + r * cols;        // (C)
      const double dot =
          sum_double(cols, [&](int64_t c) { return double(dyr[c]) * double(yr[c]); });
      const float d = float(dot);
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) dxr[c] += yr[c] * (dyr[c] - d);
    }
  });
}

}  // namespace infini
