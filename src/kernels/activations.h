// Element-wise activations: SiLU and the SwiGLU product (Shazeer 2020), ELU+1 (the feature map
// s(x) of linear attention, Katharopoulos et al. 2020, used by Infini-attention's memory).
#pragma once

#include <cstdint>

namespace infini {

// silu(x) = x * sigmoid(x)
void silu_forward(float* out, const float* x, int64_t n);
void silu_backward(float* dx, const float* dout, const float* x, int64_t n);  // dx += ...

// SwiGLU on a fused buffer: gate_up[R, 2F] holds gate in columns [0, F) and up in [F, 2F)
// (one GEMM against the stacked [W_gate; W_up] weights). out[R,F] = silu(gate) * up.
void swiglu_forward(float* out, const float* gate_up, int64_t rows, int64_t ffn);
// dgate_up[R, 2F] = d out / d gate_up applied to dout[R,F] (overwrites; dgate_up may not alias
// gate_up).
void swiglu_backward(float* dgate_up, const float* dout, const float* gate_up, int64_t rows,
                     int64_t ffn);

// elu1(x) = ELU(x) + 1 = x + 1 for x > 0, exp(x) otherwise (always > 0).
void elu1_forward(float* out, const float* x, int64_t n);
// dx += dout * elu1'(x), elu1'(x) = 1 for x > 0, exp(x) otherwise.
void elu1_backward(float* dx, const float* dout, const float* x, int64_t n);

// The same two on a block of rows, serially on the calling thread (for callers inside a parallel
// task, e.g. one attention head): x[rows, cols] with row stride x_stride, and so on. Element for
// element the results are those of elu1_forward / elu1_backward.
void elu1_forward_rows(float* out, int64_t out_stride, const float* x, int64_t x_stride,
                       int64_t rows, int64_t cols);
void elu1_backward_rows(float* dx, int64_t dx_stride, const float* dout, int64_t dout_stride,
                        const float* x, int64_t x_stride, int64_t rows, int64_t cols);

}  // namespace infini
