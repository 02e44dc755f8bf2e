// Cross entropy fused with log-softmax:
//   loss = logsumexp(l) - l[t],  logsumexp(l) = m + log sum_v e^(l_v - m),  m = max_v l_v
//   dloss/dl = softmax(l) - onehot(t)
// Subtracting the row maximum keeps every exponent <= 0: logits offset by 10^4 or more neither
// overflow nor lose the loss (l_v - m is exact for nearby floats; the sum is in double and the
// final (m - l[t]) + log(sum) is formed in double).
#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "kernels/kernel_support.h"

namespace infini {

using kernel_detail::exp_f32;
using kernel_detail::for_ranges;
using kernel_detail::grain_rows;
using kernel_detail::sum_double;

namespace {

// Checked before any parallel region (an exception may not leave one).
void check_targets(const int32_t* targets, int64_t rows, int64_t vocab) {
  for (int64_t r = 0; r < rows; ++r)
    if ((targets[r] < 0 && targets[r] != kIgnoredTarget) || targets[r] >= vocab)
      throw Error(
          "cross_entropy",
          str("target ", targets[r], " of row ", r, " is outside the vocabulary [0, ", vocab, ")"),
          "the tokenizer and the model disagree on the vocabulary size");
}

float row_max(const float* l, int64_t n) {
  float max = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : max)
  for (int64_t i = 0; i < n; ++i) max = l[i] > max ? l[i] : max;
  return max;
}

}  // namespace

double cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                             int64_t rows, int64_t vocab) {
  INFINI_CHECK(rows >= 0 && vocab > 0, "cross_entropy needs rows >= 0 and vocab > 0, got ", rows,
               "x", vocab);
  check_targets(targets, rows, vocab);
  for_ranges(rows, grain_rows(vocab), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (targets[r] == kIgnoredTarget) {
        losses[r] = 0.0f;
        continue;
      }
      const float* l = logits + r * vocab;  // (V)
      const float m = row_max(l, vocab);
      const double sum = sum_double(vocab, [&](int64_t v) { return exp_f32(l[v] - m); });
      // (m - l_t) first: exact in double for any two floats within 2^29 of each other, so a
      // huge common offset cancels before log(sum) is added.
      losses[r] = float((double(m) - double(l[targets[r]])) + std::log(sum));
    }
  });
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += double(losses[r]);
  return total;
}

void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            int64_t rows, int64_t vocab, float scale) {
  INFINI_CHECK(rows >= 0 && vocab > 0, "cross_entropy needs rows >= 0 and vocab > 0, got ", rows,
               "x", vocab);
  check_targets(targets, rows, vocab);
  for_ranges(rows, grain_rows(vocab), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* l = logits + r * vocab;  // (V)
      float* dl = dlogits + r * vocab;      // (V), may be l: each slot is read, then written
      if (targets[r] == kIgnoredTarget) {
        std::fill_n(dl, vocab, 0.0f);
        continue;
      }
      const float m = row_max(l, vocab);
      const double sum = sum_double(vocab, [&](int64_t v) {
        const float e = exp_f32(l[v] - m);
        dl[v] = e;
        return e;
      });
      const float inv = float(1.0 / sum);
      const int32_t t = targets[r];
      const float p_target = dl[t] * inv;
#pragma omp simd
      for (int64_t v = 0; v < vocab; ++v) dl[v] = (dl[v] * inv) * scale;
      dl[t] = (p_target - 1.0f) * scale;  // as PyTorch: (softmax - onehot) * scale
    }
  });
}

}  // namespace infini
