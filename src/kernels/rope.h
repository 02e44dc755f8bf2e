// Rotary position embedding, HF "rotate_half" convention (../shared/spec/memory-mechanisms.md §1):
// for i < d/2, inv_i = theta^(-2i/d), angle a = pos * inv_i; with x = [x1 | x2],
// rope(x) = [x1*cos - x2*sin | x2*cos + x1*sin].
#pragma once

#include <cstdint>

namespace infini {

// cos, sin: [n_positions, d/2] for positions first_position .. first_position + n_positions - 1.
// Angles are computed in double so that they stay exact at stream positions near 10^6 and beyond.
void rope_tables(float* cos, float* sin, int64_t n_positions, int64_t head_dim, double theta,
                 int64_t first_position);

// out[t, h, :] = rope(x[t, h, :]) with the table row t, for t < rows, h < heads, d = head_dim.
// Row strides (in elements) let x and out be column slices of a fused QKV buffer; head h of row t
// starts at t * stride + h * head_dim. out may alias x.
void rope_forward(float* out, const float* x, const float* cos, const float* sin, int64_t rows,
                  int64_t heads, int64_t head_dim, int64_t x_row_stride, int64_t out_row_stride);

// dx[t, h, :] += rope^T(dout[t, h, :]) (the inverse rotation). Same strides convention.
void rope_backward(float* dx, const float* dout, const float* cos, const float* sin, int64_t rows,
                   int64_t heads, int64_t head_dim, int64_t dx_row_stride,
                   int64_t dout_row_stride);

}  // namespace infini
