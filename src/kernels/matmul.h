// Matrix products through oneDNN's fp32 GEMM, row-major, in the three layouts a Linear layer's
// forward and backward passes need:
//
//   forward        y[M,N]  = x[M,K] · W[N,K]^T        matmul_nt
//   input grad     dx[M,K] (+)= dy[M,N] · W[N,K]      matmul_nn
//   weight grad    dW[N,K] (+)= dy[M,N]^T · x[M,K]    matmul_tn
//
// `accumulate` adds into C instead of overwriting it. Leading dimensions (row strides, in
// elements) default to packed rows; pass them to work on column slices such as one head of a
// fused QKV buffer. Called inside parallel_for, a product runs on the calling thread only.
#pragma once

#include <cstdint>

namespace infini {

struct MatmulStrides {
  int64_t lda = -1, ldb = -1, ldc = -1;  // -1: packed (the row length of that operand)
};

// C[M,N] (+)= op(A) · op(B), op(A) = A or A^T (A stored [M,K] or [K,M]), op(B) = B or B^T
// (B stored [K,N] or [N,K]).
void matmul(float* c, const float* a, const float* b, int64_t m, int64_t n, int64_t k,
            bool transpose_a, bool transpose_b, bool accumulate, MatmulStrides strides = {});

// C[M,N] (+)= A[M,K] · B[K,N]
inline void matmul_nn(float* c, const float* a, const float* b, int64_t m, int64_t n, int64_t k,
                      bool accumulate = false, MatmulStrides s = {}) {
  matmul(c, a, b, m, n, k, false, false, accumulate, s);
}
// C[M,N] (+)= A[M,K] · B[N,K]^T
inline void matmul_nt(float* c, const float* a, const float* b, int64_t m, int64_t n, int64_t k,
                      bool accumulate = false, MatmulStrides s = {}) {
  matmul(c, a, b, m, n, k, false, true, accumulate, s);
}
// C[M,N] (+)= A[K,M]^T · B[K,N]
inline void matmul_tn(float* c, const float* a, const float* b, int64_t m, int64_t n, int64_t k,
                      bool accumulate = false, MatmulStrides s = {}) {
  matmul(c, a, b, m, n, k, true, false, accumulate, s);
}

}  // namespace infini
