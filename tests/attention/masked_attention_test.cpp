// The shared masked-attention kernel against a naive double-precision implementation, for the
// mask policies the mechanisms use (causal, causal with a previous block in front, sliding
// window, everything visible), at sizes that span several row blocks.
//
// Tolerance: outputs and gradients are sums of at most m products of O(1) terms after a softmax;
// fp32 accumulation errs by <= ~m u |terms| (u = 6e-8), so 2e-5 relative to the largest
// reference value is ~2x the worst case for m <= 300 and far below any wrong term.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "attention/masked_attention.h"
#include "core/random.h"

namespace infini {
namespace {

struct Naive {
  std::vector<double> out, dq, dk, dv;
};

bool visible(const AttentionMask& mask, int64_t i, int64_t j) {
  return j <= mask.last_key(i) && j >= mask.first_key(i);
}

// Forward and analytic backward in double for loss = sum(out * g).
Naive naive(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
            const std::vector<float>& g, int64_t n, int64_t m, int64_t d, double scale,
            AttentionMask mask) {
  Naive r{std::vector<double>(n * d), std::vector<double>(n * d), std::vector<double>(m * d),
          std::vector<double>(m * d)};
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> s(m, -INFINITY), p(m, 0.0), dp(m, 0.0);
    double mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < m; ++j)
      if (visible(mask, i, j)) {
        s[j] = 0;
        for (int64_t t = 0; t < d; ++t) s[j] += double(q[i * d + t]) * k[j * d + t];
        s[j] *= scale;
        mx = std::max(mx, s[j]);
      }
    if (mx == -INFINITY) continue;
    for (int64_t j = 0; j < m; ++j)
      if (visible(mask, i, j)) sum += (p[j] = std::exp(s[j] - mx));
    for (int64_t j = 0; j < m; ++j) p[j] /= sum;
    double dot = 0;
    for (int64_t j = 0; j < m; ++j) {
      for (int64_t t = 0; t < d; ++t) {
        r.out[i * d + t] += p[j] * v[j * d + t];
        dp[j] += double(g[i * d + t]) * v[j * d + t];
        r.dv[j * d + t] += p[j] * g[i * d + t];
      }
      dot += p[j] * dp[j];
    }
    for (int64_t j = 0; j < m; ++j) {
      const double ds = p[j] * (dp[j] - dot) * scale;
      for (int64_t t = 0; t < d; ++t) {
        r.dq[i * d + t] += ds * k[j * d + t];
        r.dk[j * d + t] += ds * q[i * d + t];
      }
    }
  }
  return r;
}

double rel(const std::vector<float>& a, const std::vector<double>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return diff / std::max(scale, 1e-30);
}

struct Case {
  const char* name;
  int64_t n, m, d;
  AttentionMask mask;
};

class MaskedAttention : public ::testing::TestWithParam<Case> {};

TEST_P(MaskedAttention, MatchesNaiveDouble) {
  const Case c = GetParam();
  Rng rng(1);
  auto random = [&](int64_t count) {
    std::vector<float> x(count);
    for (auto& e : x) e = float(rng.normal());
    return x;
  };
  const std::vector<float> q = random(c.n * c.d), k = random(c.m * c.d), v = random(c.m * c.d),
                           g = random(c.n * c.d);
  const float scale = 1.0f / std::sqrt(float(c.d));
  std::vector<float> out(c.n * c.d), probs(c.n * c.m), scratch(c.n * c.m);
  masked_attention_forward(out.data(), c.d, probs.data(), q.data(), c.d, k.data(), c.d, v.data(),
                           c.d, c.n, c.m, c.d, scale, c.mask);
  std::vector<float> dq(c.n * c.d, 0.f), dk(c.m * c.d, 0.f), dv(c.m * c.d, 0.f);
  masked_attention_backward(dq.data(), c.d, dk.data(), c.d, dv.data(), c.d, g.data(), c.d,
                            probs.data(), q.data(), c.d, k.data(), c.d, v.data(), c.d, c.n, c.m,
                            c.d, scale, scratch.data(), c.mask);
  const Naive ref = naive(q, k, v, g, c.n, c.m, c.d, scale, c.mask);
  EXPECT_LT(rel(out, ref.out), 2e-5);
  EXPECT_LT(rel(dq, ref.dq), 2e-5);
  EXPECT_LT(rel(dk, ref.dk), 2e-5);
  EXPECT_LT(rel(dv, ref.dv), 2e-5);
  for (int64_t i = 0; i < c.n; ++i)
    for (int64_t j = 0; j < c.m; ++j)
      if (!visible(c.mask, i, j)) {
        ASSERT_EQ(probs[i * c.m + j], 0.0f) << i << "," << j;
      }
}

INSTANTIATE_TEST_SUITE_P(
    Masks, MaskedAttention,
    ::testing::Values(Case{"causal_one_row", 1, 1, 8, {0, 0}},
                      Case{"causal_odd", 150, 150, 24, {0, 0}},
                      Case{"causal_blocks", 256, 256, 64, {0, 0}},
                      Case{"previous_block", 100, 200, 16, {100, 0}},
                      Case{"sliding_window", 130, 130, 8, {0, 37}},
                      Case{"window_with_cache", 70, 170, 8, {100, 65}},
                      Case{"all_visible", 33, 77, 8, {77, 0}}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace infini
