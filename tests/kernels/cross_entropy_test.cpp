// cross_entropy (src/kernels/cross_entropy.h) against a double reference, finite differences and
// PyTorch, including logits offset by up to 3 10^4 (exp of the raw logits would overflow).
//
// Forward: loss = m + log S - l_t, S = sum_v exp_f32(fl(l_v - m)) in double. Each term of S is
// off by a relative u (2.04 + |d_v|) (d_v rounded once, then exp), so log S is off by at most
// u (2.04 + D) absolute, D = max_v |d_v| (plus V 2^-53 from the double sum); the rest is in
// double ((m - l_t) exactly, then + log S) and one final rounding to float:
// |loss - ref| <= u (3.04 + D) (1 + O(u)) + gamma(2) |ref| + V 2^-53.
// Backward: p_v = e_v / S as in softmax (relative u (6.04 + |d_v| + D)), times scale (u); for the
// target (p_t - 1) scale: the same absolute error plus two roundings of |p_t - 1| |scale|.
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/parallel.h"
#include "kernel_test_util.h"
#include "kernels/cross_entropy.h"

namespace infini {
namespace {

using test::all_within;
using test::gamma;
using test::kU;

struct CeRef {
  std::vector<double> loss, tol_loss, grad, tol_grad;
  double total = 0;
};

CeRef ce_reference(const std::vector<float>& logits, const std::vector<int32_t>& targets, int64_t R,
                   int64_t V, double scale, double k_extra = 0) {
  CeRef ref;
  ref.loss.resize(R), ref.tol_loss.resize(R), ref.grad.resize(R * V), ref.tol_grad.resize(R * V);
  for (int64_t r = 0; r < R; ++r) {
    const float* l = logits.data() + r * V;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t v = 0; v < V; ++v) m = std::max(m, l[v]);
    double sum = 0, D = 0;
    for (int64_t v = 0; v < V; ++v) {
      sum += std::exp(double(l[v]) - double(m));
      D = std::max(D, std::fabs(double(l[v]) - double(m)));
    }
    const int32_t t = targets[r];
    ref.loss[r] = (double(m) - double(l[t])) + std::log(sum);  // exact difference first
    ref.total += ref.loss[r];
    ref.tol_loss[r] =
        gamma(3.04 + D + k_extra) + gamma(2) * std::fabs(ref.loss[r]) + double(V) * 0x1p-53;
    for (int64_t v = 0; v < V; ++v) {
      const double d = std::fabs(double(l[v]) - double(m));
      const double p = std::exp(double(l[v]) - double(m)) / sum;
      const double p_err = p * (gamma(7.04 + d + D + k_extra) + double(V) * 0x1p-53);
      ref.grad[r * V + v] = scale * (p - (v == t ? 1.0 : 0.0));
      ref.tol_grad[r * V + v] =
          std::fabs(scale) * (p_err + (v == t ? gamma(2 + k_extra) * std::fabs(p - 1.0) : 0.0)) +
          test::kDenormMin;
    }
  }
  return ref;
}

void check_case(const std::vector<float>& logits, const std::vector<int32_t>& targets, int64_t R,
                int64_t V) {
  std::vector<float> losses(R);
  const double total = cross_entropy_forward(losses.data(), logits.data(), targets.data(), R, V);
  const double scale = 1.0 / double(R);
  const CeRef ref = ce_reference(logits, targets, R, V, double(float(scale)));
  EXPECT_TRUE(all_within(losses, ref.loss, ref.tol_loss)) << R << "x" << V;
  double sum_of_losses = 0;  // the documented sum: of the float losses, in double, in row order
  for (float l : losses) sum_of_losses += l;
  EXPECT_EQ(total, sum_of_losses);
  std::vector<float> dlogits(R * V, std::numeric_limits<float>::quiet_NaN());  // overwritten
  cross_entropy_backward(dlogits.data(), logits.data(), targets.data(), R, V, float(scale));
  EXPECT_TRUE(all_within(dlogits, ref.grad, ref.tol_grad)) << R << "x" << V;
  // Aliased: the logits buffer becomes its gradient, bit for bit the same.
  std::vector<float> inplace = logits;
  cross_entropy_backward(inplace.data(), inplace.data(), targets.data(), R, V, float(scale));
  EXPECT_TRUE(test::bitwise_equal(inplace, dlogits));
}

std::vector<int32_t> random_targets(int64_t R, int64_t V, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(R);
  for (int32_t& x : t) x = int32_t(rng() % uint64_t(V));
  return t;
}

TEST(CrossEntropyTest, MatchesDoubleReference) {
  for (auto [R, V] :
       {std::pair<int64_t, int64_t>{1, 1}, {1, 2}, {7, 13}, {33, 65}, {64, 256}, {4, 32000}}) {
    check_case(test::random_normal(R * V, uint64_t(R + V), 3.0f), random_targets(R, V, 5), R, V);
  }
}

// Offsets of +-10^4 .. 3 10^4 (and 10^30): exp(l) would overflow; the max-shifted form must not,
// and the loss keeps its accuracy.
TEST(CrossEntropyTest, HugeLogitsDoNotOverflow) {
  const int64_t R = 6, V = 50;
  std::vector<float> logits = test::random_normal(R * V, 77, 3.0f);
  const float offsets[] = {1e4f, -1e4f, 3e4f, -3e4f, 1e30f, 0.0f};
  for (int64_t r = 0; r < R; ++r)
    for (int64_t v = 0; v < V; ++v) logits[r * V + v] += offsets[r];
  logits[5 * V + 3] = 1e4f;  // one dominant logit: p ~ 1, loss ~ 0 or ~ 1e4
  std::vector<int32_t> targets = random_targets(R, V, 3);
  targets[5] = 3;
  check_case(logits, targets, R, V);
  std::vector<float> losses(R);
  cross_entropy_forward(losses.data(), logits.data(), targets.data(), R, V);
  for (float l : losses) EXPECT_TRUE(std::isfinite(l) && l >= 0.0f) << l;
  EXPECT_LT(losses[5], 1e-6f);
}

TEST(CrossEntropyTest, ResultsIndependentOfThreadCount) {
  const int64_t R = 300, V = 301;
  const std::vector<float> logits = test::random_normal(R * V, 1, 2.0f);
  const std::vector<int32_t> targets = random_targets(R, V, 2);
  std::vector<std::vector<float>> losses, grads;
  std::vector<double> totals;
  for (int threads : {1, 2}) {
    threads_init(threads);
    std::vector<float> l(R), g(R * V);
    totals.push_back(cross_entropy_forward(l.data(), logits.data(), targets.data(), R, V));
    cross_entropy_backward(g.data(), logits.data(), targets.data(), R, V, 1.0f / R);
    losses.push_back(l), grads.push_back(g);
  }
  threads_init(0);
  EXPECT_EQ(totals[0], totals[1]);
  EXPECT_TRUE(test::bitwise_equal(losses[0], losses[1]));
  EXPECT_TRUE(test::bitwise_equal(grads[0], grads[1]));
}

TEST(CrossEntropyTest, RejectsTargetsOutsideTheVocabulary) {
  std::vector<float> logits(6), losses(2);
  const std::vector<int32_t> bad_high = {0, 3}, bad_low = {-2, 0};
  EXPECT_THROW(cross_entropy_forward(losses.data(), logits.data(), bad_high.data(), 2, 3), Error);
  EXPECT_THROW(cross_entropy_backward(logits.data(), logits.data(), bad_low.data(), 2, 3, 1.0f),
               Error);
  try {
    cross_entropy_forward(losses.data(), logits.data(), bad_high.data(), 2, 3);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target 3 of row 1"), std::string::npos) << e.what();
  }
}

// A loss mask's ignored rows (kIgnoredTarget): loss 0 and a zero gradient row; the other rows are
// exactly what they are without the ignored ones.
TEST(CrossEntropyTest, IgnoredTargetsScoreNothingAndLeaveTheOtherRowsAlone) {
  const int64_t R = 5, V = 9;
  const std::vector<float> logits = test::random_normal(R * V, 61, 2.0f);
  std::vector<int32_t> targets = random_targets(R, V, 62);
  targets[1] = kIgnoredTarget;
  targets[4] = kIgnoredTarget;
  std::vector<float> losses(R, 7.0f), dlogits(R * V, 7.0f);
  const double total = cross_entropy_forward(losses.data(), logits.data(), targets.data(), R, V);
  cross_entropy_backward(dlogits.data(), logits.data(), targets.data(), R, V, 0.25f);
  double kept = 0;
  for (int64_t r : {0, 2, 3}) {
    float one_loss = 0;
    std::vector<float> one_grad(V);
    kept += cross_entropy_forward(&one_loss, logits.data() + r * V, &targets[r], 1, V);
    cross_entropy_backward(one_grad.data(), logits.data() + r * V, &targets[r], 1, V, 0.25f);
    EXPECT_EQ(losses[r], one_loss) << r;
    for (int64_t v = 0; v < V; ++v) EXPECT_EQ(dlogits[r * V + v], one_grad[v]) << r << "," << v;
  }
  EXPECT_EQ(total, kept);
  for (int64_t r : {1, 4}) {
    EXPECT_EQ(losses[r], 0.0f);
    for (int64_t v = 0; v < V; ++v) EXPECT_EQ(dlogits[r * V + v], 0.0f);
  }
}

// The analytic gradient scale (softmax - onehot) of the mean loss, against central differences
// of the double forward.
TEST(CrossEntropyTest, BackwardMatchesFiniteDifferences) {
  const int64_t R = 3, V = 7;
  const std::vector<float> logits = test::random_normal(R * V, 51, 2.0f);
  const std::vector<int32_t> targets = random_targets(R, V, 52);
  auto mean_loss = [&](std::vector<double>& l) {
    double total = 0;
    for (int64_t r = 0; r < R; ++r) {
      double m = l[r * V], sum = 0;
      for (int64_t v = 0; v < V; ++v) m = std::max(m, l[r * V + v]);
      for (int64_t v = 0; v < V; ++v) sum += std::exp(l[r * V + v] - m);
      total += m + std::log(sum) - l[r * V + targets[r]];
    }
    return total / double(R);
  };
  const CeRef ref = ce_reference(logits, targets, R, V, 1.0 / double(R));
  const std::vector<double> g = test::finite_difference(mean_loss, test::to_double(logits));
  EXPECT_TRUE(all_within(ref.grad, g, test::fd_tolerance(g)));
}

// PyTorch's log_softmax sums exp in float: a further gamma(V) relative in S (absolute in log S),
// plus its own exp and a few more roundings: our bound with k + V + 6 (and the same again on
// the gradient).
TEST(CrossEntropyTest, MatchesPyTorch) {
  for (auto [R, V] : {std::pair<int64_t, int64_t>{6, 50}, {1, 1}, {3, 257}}) {
    const std::string name = "cross_entropy_" + std::to_string(R) + "x" + std::to_string(V);
    const test::Golden logits = test::load_golden(name + "_logits"),
                       targets = test::load_golden(name + "_targets"),
                       losses_t = test::load_golden(name + "_losses"),
                       dlogits_t = test::load_golden(name + "_dlogits");
    ASSERT_EQ(logits.numel(), R * V);
    ASSERT_EQ(targets.numel(), R);
    std::vector<float> losses(R), dlogits(R * V);
    const double total =
        cross_entropy_forward(losses.data(), logits.f.data(), targets.i.data(), R, V);
    cross_entropy_backward(dlogits.data(), logits.f.data(), targets.i.data(), R, V, 1.0f / R);
    const CeRef ref = ce_reference(logits.f, targets.i, R, V, 1.0 / double(R), double(V) + 6 + 3);
    EXPECT_TRUE(all_within(losses, test::to_double(losses_t.f), ref.tol_loss)) << name;
    double tol_total = 0, torch_total = 0;
    for (int64_t r = 0; r < R; ++r) tol_total += ref.tol_loss[r], torch_total += losses_t.f[r];
    EXPECT_NEAR(total, torch_total, tol_total) << name;
    EXPECT_TRUE(all_within(dlogits, test::to_double(dlogits_t.f), ref.tol_grad)) << name;
  }
}

}  // namespace
}  // namespace infini
