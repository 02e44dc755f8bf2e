// Token embedding: a row gather, and its backward, a scatter-add.
// The backward is split over the D columns: each thread owns a column range of the whole table
// and scans the rows in order, so rows that share an id are added in row order for any thread
// count (no atomics, no per-thread copies of the table).
#include "kernels/embedding.h"

#include <cstring>

#include "core/error.h"
#include "kernels/kernel_support.h"

namespace infini {

using kernel_detail::for_ranges;
using kernel_detail::grain_rows;
using kernel_detail::kGrainElements;

void embedding_forward(float* out, const float* table, const int32_t* ids, int64_t rows,
                       int64_t dim) {
  INFINI_CHECK(rows >= 0 && dim >= 0, "embedding: negative size ", rows, "x", dim);
  for (int64_t r = 0; r < rows; ++r)
    INFINI_CHECK(ids[r] >= 0, "embedding: negative token id ", ids[r], " in row ", r);
  for_ranges(rows, grain_rows(dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      std::memcpy(out + r * dim, table + int64_t(ids[r]) * dim, size_t(dim) * sizeof(float));
  });
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t rows,
                        int64_t dim, int64_t vocab) {
  INFINI_CHECK(rows >= 0 && dim >= 0 && vocab >= 0, "embedding: negative size ", rows, "x", dim,
               " vocab ", vocab);
  for (int64_t r = 0; r < rows; ++r)
    INFINI_CHECK(ids[r] >= 0 && ids[r] < vocab, "embedding: token id ", ids[r], " in row ", r,
                 " is outside the vocabulary [0, ", vocab, ")");
  if (rows == 0) return;
  // Parallel over columns once there is enough work (and more than 16 columns).
  const int64_t grain = rows * dim < kGrainElements ? dim : 16;
  for_ranges(dim, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = dout + r * dim;            // (D)
      float* dst = dtable + int64_t(ids[r]) * dim;  // (D)
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  });
}

}  // namespace infini
