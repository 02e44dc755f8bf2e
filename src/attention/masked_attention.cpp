// Masked softmax attention of one head. Query rows are processed in blocks of kRowBlock: each
// block multiplies only against the span of keys that some row of the block can see, so a causal
// mask costs about half of the full n x m product instead of all of it.
#include "attention/masked_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/kernel_support.h"
#include "kernels/matmul.h"

namespace infini {

namespace {

using kernel_detail::exp_f32;
using kernel_detail::sum_double;

constexpr int64_t kRowBlock = 64;

// Keys [first, last] that rows [r0, r1) can see between them (first > last: none).
struct KeySpan {
  int64_t first, last;
  int64_t count() const { return last >= first ? last - first + 1 : 0; }
};
KeySpan block_keys(const AttentionMask& mask, int64_t r0, int64_t r1, int64_t m) {
  return {std::max<int64_t>(mask.first_key(r0), 0),
          std::min<int64_t>(mask.last_key(r1 - 1), m - 1)};
}

}  // namespace

void masked_attention_forward(float* out, int64_t out_stride, float* probs, const float* q,
                              int64_t q_stride, const float* k, int64_t k_stride, const float* v,
                              int64_t v_stride, int64_t n, int64_t m, int64_t d, float scale,
                              AttentionMask mask) {
  for (int64_t r0 = 0; r0 < n; r0 += kRowBlock) {
    const int64_t r1 = std::min(n, r0 + kRowBlock), rows = r1 - r0;
    const KeySpan span = block_keys(mask, r0, r1, m);
    float* p = probs + r0 * m;  // [rows, m]
    if (span.count() == 0) {
      std::fill(p, p + rows * m, 0.0f);
      for (int64_t i = r0; i < r1; ++i)
        std::fill(out + i * out_stride, out + i * out_stride + d, 0.0f);
      continue;
    }
    // scores of the block against its key span, then the masked, scaled softmax of each row
    matmul_nt(p + span.first, q + r0 * q_stride, k + span.first * k_stride, rows, span.count(), d,
              false, {q_stride, k_stride, m});
    for (int64_t i = r0; i < r1; ++i) {
      float* row = probs + i * m;
      const int64_t first = std::max<int64_t>(mask.first_key(i), 0);
      const int64_t last = std::min<int64_t>(mask.last_key(i), m - 1);
      if (first > last) {
        std::fill(row, row + m, 0.0f);
        continue;
      }
      // the max is exact in any order; exp is exp_f32 (<= 1.02 ulp, vectorised) and the sum is
      // accumulated in double in a fixed order (kernel_detail::sum_double)
      float max_score = -std::numeric_limits<float>::infinity();
      const int64_t count = last - first + 1;
      float* __restrict span_row = row + first;
#pragma omp simd reduction(max : max_score)
      for (int64_t j = 0; j < count; ++j)
        max_score = span_row[j] > max_score ? span_row[j] : max_score;
      const double sum = sum_double(count, [&](int64_t j) {
        const float e = exp_f32((span_row[j] - max_score) * scale);
        span_row[j] = e;
        return e;
      });
      const float inv = float(1.0 / sum);
#pragma omp simd
      for (int64_t j = 0; j < count; ++j) span_row[j] *= inv;
      std::fill(row, row + first, 0.0f);
      std::fill(row + last + 1, row + m, 0.0f);
    }
    // out[block] = probs[block, span] v[span]
    matmul_nn(out + r0 * out_stride, p + span.first, v + span.first * v_stride, rows, d,
              span.count(), false, {m, v_stride, out_stride});
  }
}

void masked_attention_backward(float* dq, int64_t dq_stride, float* dk, int64_t dk_stride,
                               float* dv, int64_t dv_stride, const float* dout, int64_t dout_stride,
                               const float* probs, const float* q, int64_t q_stride, const float* k,
                               int64_t k_stride, const float* v, int64_t v_stride, int64_t n,
                               int64_t m, int64_t d, float scale, float* scratch,
                               AttentionMask mask) {
  for (int64_t r0 = 0; r0 < n; r0 += kRowBlock) {
    const int64_t r1 = std::min(n, r0 + kRowBlock), rows = r1 - r0;
    const KeySpan span = block_keys(mask, r0, r1, m);
    const int64_t c = span.count();
    if (c == 0) continue;
    const float* p = probs + r0 * m + span.first;  // [rows, c] with row stride m
    float* g = scratch + r0 * m + span.first;      // d scores, same layout
    const float* dO = dout + r0 * dout_stride;
    // dv[span] += p^T dout ;  dp = dout v[span]^T
    matmul_tn(dv + span.first * dv_stride, p, dO, c, d, rows, true, {m, dout_stride, dv_stride});
    matmul_nt(g, dO, v + span.first * v_stride, rows, c, d, false, {dout_stride, v_stride, m});
    // d scores = scale * p * (dp - sum_j p dp); masked entries have p = 0 and get 0
    for (int64_t i = 0; i < rows; ++i) {
      const float* pi = p + i * m;
      float* gi = g + i * m;
      const float dot = float(sum_double(c, [&](int64_t j) { return double(pi[j]) * gi[j]; }));
      for (int64_t j = 0; j < c; ++j) gi[j] = scale * pi[j] * (gi[j] - dot);
    }
    // dq[block] += d scores k[span] ;  dk[span] += d scores^T q[block]
    matmul_nn(dq + r0 * dq_stride, g, k + span.first * k_stride, rows, d, c, true,
              {m, k_stride, dq_stride});
    matmul_tn(dk + span.first * dk_stride, g, q + r0 * q_stride, c, d, rows, true,
              {m, q_stride, dk_stride});
  }
}

}  // namespace infini
