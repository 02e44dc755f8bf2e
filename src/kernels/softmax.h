// Row softmax, numerically stable (max subtracted), and its backward.
#pragma once

#include <cstdint>

namespace infini {

// out[r, :] = softmax(x[r, :]) for r < rows over the first `cols` entries. out may alias x.
void softmax_forward(float* out, const float* x, int64_t rows, int64_t cols);
// dx[r, :] += y * (dy - sum(dy * y)), y the forward output. dx may not alias dy.
void softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols);

// Single-row versions for use inside other kernels (attention); not parallel.
void softmax_row(float* out, const float* x, int64_t n);
void softmax_row_backward(float* dx, const float* dy, const float* y, int64_t n);  // dx = (overwrites)

}  // namespace infini
