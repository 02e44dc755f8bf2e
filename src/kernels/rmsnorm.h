// RMSNorm (Zhang & Sennrich 2019), Llama style: out = x / sqrt(mean(x^2) + eps) * w.
#pragma once

#include <cstdint>

namespace infini {

// out[R,C] = x[R,C] * rstd[r] * w[C];  rstd[R] = 1 / sqrt(mean_c x[r,c]^2 + eps) is kept for
// the backward pass. out may alias x.
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t rows,
                     int64_t cols, float eps);

// dx[R,C] += d out / d x applied to dout;  dw[C] += sum_r dout[r,c] * x[r,c] * rstd[r].
// dw is reduced in a fixed order (deterministic for a given thread count).
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                      const float* rstd, int64_t rows, int64_t cols);

}  // namespace infini
