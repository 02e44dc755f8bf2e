#include "attention/masked_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/matmul.h"

namespace infini {

void masked_attention_forward(float* out, int64_t out_stride, float* probs, const float* q,
                              int64_t q_stride, const float* k, int64_t k_stride, const float* v,
                              int64_t v_stride, int64_t n, int64_t m, int64_t d, float scale,
                              AttentionMask mask) {
  // scores[n, m] = q k^T, then masked, scaled softmax row by row (in place in probs)
  matmul_nt(probs, q, k, n, m, d, false, {q_stride, k_stride, m});
  for (int64_t i = 0; i < n; ++i) {
    float* row = probs + i * m;
    int64_t first = std::max<int64_t>(mask.first_key(i), 0);
    int64_t last = std::min<int64_t>(mask.last_key(i), m - 1);
    if (first > last) {
      std::fill(row, row + m, 0.0f);
      continue;
    }
    float max_score = -std::numeric_limits<float>::infinity();
    for (int64_t j = first; j <= last; ++j) max_score = std::max(max_score, row[j]);
    double sum = 0;
    for (int64_t j = first; j <= last; ++j) {
      row[j] = std::exp((row[j] - max_score) * scale);
      sum += row[j];
    }
    float inv = float(1.0 / sum);
    for (int64_t j = 0; j < first; ++j) row[j] = 0.0f;
    for (int64_t j = first; j <= last; ++j) row[j] *= inv;
    for (int64_t j = last + 1; j < m; ++j) row[j] = 0.0f;
  }
  // out[n, d] = probs[n, m] v[m, d]
  matmul_nn(out, probs, v, n, d, m, false, {m, v_stride, out_stride});
}

void masked_attention_backward(float* dq, int64_t dq_stride, float* dk, int64_t dk_stride,
                               float* dv, int64_t dv_stride, const float* dout,
                               int64_t dout_stride, const float* probs, const float* q,
                               int64_t q_stride, const float* k, int64_t k_stride, const float* v,
                               int64_t v_stride, int64_t n, int64_t m, int64_t d, float scale,
                               float* scratch) {
  // dv[m, d] += probs^T dout
  matmul_tn(dv, probs, dout, m, d, n, true, {m, dout_stride, dv_stride});
  // dprobs[n, m] = dout v^T
  float* dscores = scratch;
  matmul_nt(dscores, dout, v, n, m, d, false, {dout_stride, v_stride, m});
  // dscores = scale * p * (dp - sum_j p dp); masked entries have p = 0 and get 0
  for (int64_t i = 0; i < n; ++i) {
    const float* p = probs + i * m;
    float* g = dscores + i * m;
    double dot = 0;
    for (int64_t j = 0; j < m; ++j) dot += double(p[j]) * g[j];
    float dotf = float(dot);
    for (int64_t j = 0; j < m; ++j) g[j] = scale * p[j] * (g[j] - dotf);
  }
  // dq[n, d] += dscores k ;  dk[m, d] += dscores^T q
  matmul_nn(dq, dscores, k, n, d, m, true, {m, k_stride, dq_stride});
  matmul_tn(dk, dscores, q, m, d, n, true, {m, q_stride, dk_stride});
}

}  // namespace infini
