// Element-wise activations.
//   silu(x)   = x sigmoid(x) = x / (1 + e^-x),   silu'(x) = s (1 + x (1 - s)), s = sigmoid(x)
//   SwiGLU    (Shazeer 2020, "GLU Variants Improve Transformer", eq. 5 without biases):
//             out = silu(gate) * up,  dgate = dout * up * silu'(gate),  dup = dout * silu(gate)
//   elu1(x)   = ELU(x) + 1 (Katharopoulos et al. 2020, eq. 7: the feature map of linear
//             attention), elu1'(x) = 1 for x > 0, e^x otherwise.
// Formulas are written in the order PyTorch evaluates them; exp is kernel_detail::exp_f32
// (<= 1.02 ulp), so every loop vectorises.
#include "kernels/activations.h"

#include "core/error.h"
#include "kernels/kernel_support.h"

namespace infini {

using kernel_detail::exp_f32;
using kernel_detail::for_ranges;
using kernel_detail::grain_rows;
using kernel_detail::kGrainElements;

void silu_forward(float* out, const float* x, int64_t n) {
  INFINI_CHECK(n >= 0, "silu: negative size ", n);
  for_ranges(n, kGrainElements, [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) out[i] = x[i] / (1.0f + exp_f32(-x[i]));
  });
}

void silu_backward(float* dx, const float* dout, const float* x, int64_t n) {
  INFINI_CHECK(n >= 0, "silu: negative size ", n);
  for_ranges(n, kGrainElements, [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) {
      const float s = 1.0f / (1.0f + exp_f32(-x[i]));
      dx[i] += dout[i] * (s * (1.0f + x[i] * (1.0f - s)));
    }
  });
}

void swiglu_forward(float* out, const float* gate_up, int64_t rows, int64_t ffn) {
  INFINI_CHECK(rows >= 0 && ffn >= 0, "swiglu: negative size ", rows, "x", ffn);
  for_ranges(rows, grain_rows(2 * ffn), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* g = gate_up + r * 2 * ffn;  // (F) gate
      const float* u = g + ffn;                // (F) up
      float* o = out + r * ffn;                // (F)
#pragma omp simd
      for (int64_t f = 0; f < ffn; ++f) o[f] = (g[f] / (1.0f + exp_f32(-g[f]))) * u[f];
    }
  });
}

void swiglu_backward(float* dgate_up, const float* dout, const float* gate_up, int64_t rows,
                     int64_t ffn) {
  INFINI_CHECK(rows >= 0 && ffn >= 0, "swiglu: negative size ", rows, "x", ffn);
  INFINI_CHECK(rows == 0 || ffn == 0 || dgate_up != gate_up,
               "swiglu_backward: dgate_up may not alias gate_up");
  for_ranges(rows, grain_rows(2 * ffn), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* g = gate_up + r * 2 * ffn;  // (F)
      const float* u = g + ffn;                // (F)
      const float* d = dout + r * ffn;         // (F)
      float* dg = dgate_up + r * 2 * ffn;      // (F)
      float* du = dg + ffn;                    // (F)
#pragma omp simd
      for (int64_t f = 0; f < ffn; ++f) {
        const float denom = 1.0f + exp_f32(-g[f]);
        const float s = 1.0f / denom, silu = g[f] / denom;  // silu as in the forward pass
        dg[f] = (d[f] * u[f]) * (s * (1.0f + g[f] * (1.0f - s)));
        du[f] = d[f] * silu;
      }
    }
  });
}

void elu1_forward(float* out, const float* x, int64_t n) {
  INFINI_CHECK(n >= 0, "elu1: negative size ", n);
  for_ranges(n, kGrainElements, [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) out[i] = x[i] > 0.0f ? x[i] + 1.0f : exp_f32(x[i]);
  });
}

void elu1_backward(float* dx, const float* dout, const float* x, int64_t n) {
  INFINI_CHECK(n >= 0, "elu1: negative size ", n);
  for_ranges(n, kGrainElements, [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) dx[i] += x[i] > 0.0f ? dout[i] : dout[i] * exp_f32(x[i]);
  });
}

void elu1_forward_rows(float* out, int64_t out_stride, const float* x, int64_t x_stride,
                       int64_t rows, int64_t cols) {
  INFINI_CHECK(rows >= 0 && cols >= 0, "elu1: negative size ", rows, "x", cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float* __restrict xr = x + r * x_stride;  // (cols)
    float* __restrict o = out + r * out_stride;     // (cols)
#pragma omp simd
    for (int64_t i = 0; i < cols; ++i) o[i] = xr[i] > 0.0f ? xr[i] + 1.0f : exp_f32(xr[i]);
  }
}

void elu1_backward_rows(float* dx, int64_t dx_stride, const float* dout, int64_t dout_stride,
                        const float* x, int64_t x_stride, int64_t rows, int64_t cols) {
  INFINI_CHECK(rows >= 0 && cols >= 0, "elu1: negative size ", rows, "x", cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float* __restrict xr = x + r * x_stride;        // (cols)
    const float* __restrict dr = dout + r * dout_stride;  // (cols)
    float* __restrict g = dx + r * dx_stride;             // (cols)
#pragma omp simd
    for (int64_t i = 0; i < cols; ++i) g[i] += xr[i] > 0.0f ? dr[i] : dr[i] * exp_f32(xr[i]);
  }
}

}  // namespace infini
