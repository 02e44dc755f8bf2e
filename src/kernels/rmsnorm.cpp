// RMSNorm, Llama style (Zhang & Sennrich 2019, eq. 4 with a learned gain and no bias):
//   y = x * rstd * w,  rstd = 1 / sqrt(mean(x^2) + eps).
// Backward, with g = dout * w and s = sum_c g_c x_c:
//   dx = rstd * g - rstd^3 / C * s * x,   dw = sum over rows of dout * x * rstd.
// Row sums are accumulated in double (vectorised; fixed order), so rstd is the correctly
// rounded value of the float inputs' exact formula up to the final conversion.
#include "kernels/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/error.h"
#include "kernels/kernel_support.h"

namespace infini {

using kernel_detail::for_ranges;
using kernel_detail::grain_rows;
using kernel_detail::sum_double;

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t rows,
                     int64_t cols, float eps) {
  INFINI_CHECK(rows >= 0 && cols > 0, "rmsnorm needs rows >= 0 and cols > 0, got ", rows, "x",
               cols);
  INFINI_CHECK(eps >= 0, "rmsnorm eps must be >= 0, got ", eps);
  for_ranges(rows, grain_rows(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;  // (C)
      float* outr = out + r * cols;    // (C), may be xr
      const double ss = sum_double(cols, [&](int64_t c) { return xr[c] * xr[c]; });  // u each
      const float rs = float(1.0 / std::sqrt(ss / double(cols) + double(eps)));
      rstd[r] = rs;
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) outr[c] = xr[c] * rs * w[c];
    }
  });
}

void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                      const float* rstd, int64_t rows, int64_t cols) {
  INFINI_CHECK(rows >= 0 && cols > 0, "rmsnorm needs rows >= 0 and cols > 0, got ", rows, "x",
               cols);
  if (rows == 0) return;
  // dx: rows are independent.
  for_ranges(rows, grain_rows(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;      // (C)
      const float* dor = dout + r * cols;  // (C)
      float* dxr = dx + r * cols;          // (C)
      // sum_c g_c x_c: products in float (two roundings), the sum in double
      const double s = sum_double(cols, [&](int64_t c) { return dor[c] * w[c] * xr[c]; });
      const double rs = rstd[r];
      const float a = float(rs);
      const float b = float(rs * rs * rs * s / double(cols));
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) dxr[c] += a * (dor[c] * w[c]) - b * xr[c];
    }
  });
  // dw: blocks of columns, each scanning every row in order, so the sum for a column never
  // depends on the thread count. Partial sums in double.
  constexpr int64_t kBlock = 16;  // one vector of floats: the 16 double sums stay in registers
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
  auto dw_block = [&](int64_t blk) {
    const int64_t c0 = blk * kBlock, width = std::min(kBlock, cols - c0);
    double acc[kBlock] = {};  // (16)
    auto add_rows = [&](auto block_width) {
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols + c0;
        const float* dor = dout + r * cols + c0;
        const double rs = rstd[r];
#pragma omp simd
        for (int64_t c = 0; c < int64_t(block_width); ++c) acc[c] += double(dor[c] * xr[c]) * rs;
      }
    };
    if (width == kBlock)
      add_rows(std::integral_constant<int64_t, kBlock>{});
    else
      add_rows(width);
    for (int64_t c = 0; c < width; ++c) dw[c0 + c] += float(acc[c]);
  };
  if (blocks == 1 || rows * cols < 8192 || in_parallel_region()) {
    for (int64_t blk = 0; blk < blocks; ++blk) dw_block(blk);
  } else {
    parallel_for(blocks, dw_block);
  }
}

}  // namespace infini
