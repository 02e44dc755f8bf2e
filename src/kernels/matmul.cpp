// Matrix products through oneDNN's fp32 GEMM (dnnl_sgemm, row-major).
//
// Threading: oneDNN (Debian's build) runs on OpenMP, the process pool (core/parallel.h). Called
// outside a parallel region, dnnl_sgemm splits one product over omp_get_max_threads() threads;
// called inside parallel_for it sees omp_in_parallel() and runs on the calling thread (and
// threads_init() caps active levels at 1, so no nested team can oversubscribe the cores).
// tests/kernels/matmul_test.cpp checks both.
#include "kernels/matmul.h"

#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"

namespace infini {

namespace {

const char* status_name(dnnl_status_t s) {
  switch (s) {
    case dnnl_success:
      return "success";
    case dnnl_out_of_memory:
      return "out of memory";
    case dnnl_invalid_arguments:
      return "invalid arguments";
    case dnnl_unimplemented:
      return "unimplemented";
    case dnnl_iterator_ends:
      return "iterator ends";
    case dnnl_runtime_error:
      return "runtime error";
    case dnnl_not_required:
      return "not required";
    default:
      return "unknown status";
  }
}

// dnnl_sgemm's 'N','T' path is slower than its 'N','N' path at some LM shapes on these machines
// (bench/README.md: 2048x512x512 at 169 against 213 GFLOP/s, 8192x256x1024 at 155 against 206).
// For a large product B[N,K] is therefore transposed into B^T[K,N] in a scratch buffer and the
// product run as 'N','N': N*K copies against 2*M*N*K flops, well under 1% of the time for
// M >= 512. Small products (and those inside parallel regions: one head, one stream) go direct.
constexpr int64_t kTransposeMinRows = 512;
constexpr int64_t kTransposeMaxElements = int64_t(4) << 20;  // at most 16 MiB of scratch

// bt[K,N] = b[N,K]^T (b with row stride ldb), in 64 x 64 tiles, parallel over tile columns.
void transpose_into(float* bt, const float* b, int64_t n, int64_t k, int64_t ldb) {
  constexpr int64_t kTile = 64;
  const int64_t tiles = (n + kTile - 1) / kTile;
  parallel_for(tiles, [&](int64_t tile) {
    const int64_t j0 = tile * kTile, j1 = std::min(n, j0 + kTile);
    for (int64_t k0 = 0; k0 < k; k0 += kTile) {
      const int64_t k1 = std::min(k, k0 + kTile);
      for (int64_t q = k0; q < k1; ++q)
        for (int64_t j = j0; j < j1; ++j) bt[q * n + j] = b[j * ldb + q];
    }
  });
}

}  // namespace

void matmul(float* c, const float* a, const float* b, int64_t m, int64_t n, int64_t k,
            bool transpose_a, bool transpose_b, bool accumulate, MatmulStrides strides) {
  INFINI_CHECK(m >= 0 && n >= 0 && k >= 0, "matmul sizes must be non-negative, got M=", m, " N=", n,
               " K=", k);
  // Row lengths of the operands as stored: A is [M,K] or [K,M], B is [K,N] or [N,K], C [M,N].
  const int64_t a_row = transpose_a ? m : k, b_row = transpose_b ? k : n;
  const int64_t lda = strides.lda < 0 ? a_row : strides.lda;
  const int64_t ldb = strides.ldb < 0 ? b_row : strides.ldb;
  const int64_t ldc = strides.ldc < 0 ? n : strides.ldc;
  INFINI_CHECK(lda >= a_row, "matmul lda=", lda, " is shorter than a row of A (", a_row,
               transpose_a ? ", A stored [K,M])" : ", A stored [M,K])");
  INFINI_CHECK(ldb >= b_row, "matmul ldb=", ldb, " is shorter than a row of B (", b_row,
               transpose_b ? ", B stored [N,K])" : ", B stored [K,N])");
  INFINI_CHECK(ldc >= n, "matmul ldc=", ldc, " is shorter than a row of C (", n, ")");
  if (m == 0 || n == 0) return;
  INFINI_CHECK(c != nullptr, "matmul: null C for a ", m, "x", n, " product");
  if (k == 0) {  // an empty sum: C = 0, or C unchanged when accumulating
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::memset(c + i * ldc, 0, size_t(n) * sizeof(float));
    return;
  }
  INFINI_CHECK(a != nullptr && b != nullptr, "matmul: null A or B for M=", m, " N=", n, " K=", k);

  int64_t ldb_used = ldb;
  if (transpose_b && !transpose_a && m >= kTransposeMinRows && n * k <= kTransposeMaxElements &&
      !in_parallel_region()) {
    thread_local std::vector<float> scratch;  // grows to the largest B seen, then is reused
    if (scratch.size() < size_t(n * k)) scratch.resize(size_t(n * k));
    transpose_into(scratch.data(), b, n, k, ldb);
    b = scratch.data();
    transpose_b = false;
    ldb_used = n;
  }
  // dnnl also requires leading dimensions >= 1 (they can be 0 only for an empty dimension).
  dnnl_status_t status = dnnl_sgemm(transpose_a ? 'T' : 'N', transpose_b ? 'T' : 'N', m, n, k, 1.0f,
                                    a, std::max<int64_t>(lda, 1), b, std::max<int64_t>(ldb_used, 1),
                                    accumulate ? 1.0f : 0.0f, c, std::max<int64_t>(ldc, 1));
  if (status != dnnl_success)
    throw Error("matmul", str("dnnl_sgemm failed (", status_name(status), ") for M=", m, " N=", n,
                              " K=", k, " transa=", transpose_a, " transb=", transpose_b,
                              " lda=", lda, " ldb=", ldb_used, " ldc=", ldc));
}

}  // namespace infini
