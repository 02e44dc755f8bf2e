// Rotary position embedding (Su et al. 2021, RoFormer eq. 34), HF "rotate_half" layout: the
// pair rotated by angle pos * theta^(-2i/d) is (x[i], x[i + d/2]), i < d/2.
//   forward   [o1 | o2] = [x1 cos - x2 sin | x2 cos + x1 sin]
//   backward  the transposed (inverse) rotation: [d1 cos + d2 sin | d2 cos - d1 sin]
// The tables hold cos/sin of angles computed in double: pos * inv_i in float loses about
// pos * 2^-24 radians (0.06 at pos = 10^6), in double it stays below 10^-9.
#include "kernels/rope.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/kernel_support.h"

namespace infini {

using kernel_detail::for_ranges;
using kernel_detail::grain_rows;

void rope_tables(float* cos, float* sin, int64_t n_positions, int64_t head_dim, double theta,
                 int64_t first_position) {
  INFINI_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope head_dim must be positive and even, got ",
               head_dim);
  INFINI_CHECK(n_positions >= 0 && first_position >= 0, "rope positions must be >= 0, got ",
               n_positions, " positions from ", first_position);
  INFINI_CHECK(theta > 1, "rope theta must be > 1, got ", theta);
  const int64_t half = head_dim / 2;
  std::vector<double> inv(static_cast<size_t>(half));  // (d/2) theta^(-2i/d)
  for (int64_t i = 0; i < half; ++i) inv[i] = std::pow(theta, -2.0 * double(i) / double(head_dim));
  // cos and sin in double cost ~100 ns a pair: parallel from a few rows on.
  for_ranges(n_positions, std::max<int64_t>(1, 512 / half), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const double pos = double(first_position + t);
      for (int64_t i = 0; i < half; ++i) {
        const double angle = pos * inv[i];
        cos[t * half + i] = float(std::cos(angle));
        sin[t * half + i] = float(std::sin(angle));
      }
    }
  });
}

namespace {

void check_rope_args(int64_t rows, int64_t heads, int64_t head_dim, int64_t stride_a,
                     int64_t stride_b) {
  INFINI_CHECK(rows >= 0 && heads >= 0, "rope needs rows, heads >= 0, got ", rows, ", ", heads);
  INFINI_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope head_dim must be positive and even, got ",
               head_dim);
  INFINI_CHECK(stride_a >= heads * head_dim && stride_b >= heads * head_dim, "rope row strides ",
               stride_a, ", ", stride_b, " are shorter than heads * head_dim = ", heads * head_dim);
}

}  // namespace

void rope_forward(float* out, const float* x, const float* cos, const float* sin, int64_t rows,
                  int64_t heads, int64_t head_dim, int64_t x_row_stride, int64_t out_row_stride) {
  check_rope_args(rows, heads, head_dim, x_row_stride, out_row_stride);
  const int64_t half = head_dim / 2;
  for_ranges(rows, grain_rows(heads * head_dim), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* ct = cos + t * half;  // (d/2)
      const float* st = sin + t * half;  // (d/2)
      for (int64_t h = 0; h < heads; ++h) {
        const float* xh = x + t * x_row_stride + h * head_dim;  // (d)
        float* oh = out + t * out_row_stride + h * head_dim;    // (d), may be xh
        // Each i reads x[i], x[i + d/2] and writes the same two slots: safe in place.
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          const float x1 = xh[i], x2 = xh[i + half];
          oh[i] = x1 * ct[i] - x2 * st[i];
          oh[i + half] = x2 * ct[i] + x1 * st[i];
        }
      }
    }
  });
}

void rope_backward(float* dx, const float* dout, const float* cos, const float* sin, int64_t rows,
                   int64_t heads, int64_t head_dim, int64_t dx_row_stride,
                   int64_t dout_row_stride) {
  check_rope_args(rows, heads, head_dim, dx_row_stride, dout_row_stride);
  const int64_t half = head_dim / 2;
  for_ranges(rows, grain_rows(heads * head_dim), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* ct = cos + t * half;  // (d/2)
      const float* st = sin + t * half;  // (d/2)
      for (int64_t h = 0; h < heads; ++h) {
        const float* dh = dout + t * dout_row_stride + h * head_dim;  // (d)
        float* dxh = dx + t * dx_row_stride + h * head_dim;           // (d)
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          const float d1 = dh[i], d2 = dh[i + half];
          dxh[i] += d1 * ct[i] + d2 * st[i];
          dxh[i + half] += d2 * ct[i] - d1 * st[i];
        }
      }
    }
  });
}

}  // namespace infini
