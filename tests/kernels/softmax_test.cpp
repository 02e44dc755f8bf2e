// softmax (src/kernels/softmax.h) against a double reference, finite differences and PyTorch.
//
// Forward, y_i = e_i / S with d_i = fl(x_i - m), e_i = exp_f32(d_i), S = sum e_j (double):
//   d_i is rounded once: an absolute u |d_i| in the exponent, i.e. relative u |d_i| in e_i;
//   exp adds 2.04 u; S (a weighted mean of the e_j's errors) is off by at most
//   u (2.04 + D), D = max_j |d_j|, plus n 2^-53 for the double sum; 1/S rounded to float (u)
//   and the product (u). So |y_i - y_ref_i| <= y_i u (6.04 + |d_i| + D) (1 + O(u)) + n 2^-53 y_i.
// Backward, dx += y (dy - <dy, y>): the dot is in double and rounded once, then the difference,
//   the product and the += round: gamma(4) (|y_i| (|dy_i| + sum_j |dy_j y_j|) + |dx0_i|).
#include <cmath>
#include <limits>

#include "core/error.h"
#include "kernel_test_util.h"
#include "kernels/softmax.h"

namespace infini {
namespace {

using test::all_within;
using test::gamma;
using test::kU;

struct SoftmaxRef {
  std::vector<double> y, tol_y;
};

SoftmaxRef softmax_reference(const std::vector<float>& x, int64_t R, int64_t C,
                             double k_extra = 0) {
  SoftmaxRef ref{std::vector<double>(R * C), std::vector<double>(R * C)};
  for (int64_t r = 0; r < R; ++r) {
    const float* xr = x.data() + r * C;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t c = 0; c < C; ++c) m = std::max(m, xr[c]);
    double sum = 0, D = 0;
    for (int64_t c = 0; c < C; ++c) {
      sum += std::exp(double(xr[c]) - double(m));
      D = std::max(D, std::fabs(double(xr[c]) - double(m)));
    }
    for (int64_t c = 0; c < C; ++c) {
      const double y = std::exp(double(xr[c]) - double(m)) / sum;
      const double d = std::fabs(double(xr[c]) - double(m));
      ref.y[r * C + c] = y;
      ref.tol_y[r * C + c] =
          y * (gamma(6.04 + d + D + k_extra) + double(C) * 0x1p-53) + test::kDenormMin;
    }
  }
  return ref;
}

// dx_ref = dx0 + y (dy - <dy, y>) and its tolerance, for the given (float) y.
void softmax_backward_reference(std::vector<double>& dx, std::vector<double>& tol,
                                const std::vector<float>& dy, const std::vector<float>& y,
                                const std::vector<float>& dx0, int64_t R, int64_t C, double k) {
  dx.resize(R * C), tol.resize(R * C);
  for (int64_t r = 0; r < R; ++r) {
    double dot = 0, dot_abs = 0;
    for (int64_t c = 0; c < C; ++c) {
      dot += double(dy[r * C + c]) * y[r * C + c];
      dot_abs += std::fabs(double(dy[r * C + c]) * y[r * C + c]);
    }
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = r * C + c;
      const double d0 = dx0.empty() ? 0.0 : dx0[i];
      dx[i] = d0 + y[i] * (dy[i] - dot);
      tol[i] = gamma(k) * (std::fabs(y[i]) * (std::fabs(dy[i]) + dot_abs) + std::fabs(d0));
    }
  }
}

TEST(SoftmaxTest, ForwardBackwardMatchDoubleReference) {
  for (auto [R, C, scale] : {std::tuple<int64_t, int64_t, float>{1, 1, 1.0f},
                             {4, 19, 3.0f},
                             {1, 1000, 10.0f},
                             {33, 17, 1.0f},
                             {200, 256, 4.0f}}) {
    const std::vector<float> x = test::random_normal(R * C, uint64_t(R * C), scale),
                             dy = test::random_normal(R * C, 5);
    std::vector<float> y(R * C), dx = test::random_normal(R * C, 6);
    const std::vector<float> dx0 = dx;
    softmax_forward(y.data(), x.data(), R, C);
    softmax_backward(dx.data(), dy.data(), y.data(), R, C);
    const SoftmaxRef ref = softmax_reference(x, R, C);
    EXPECT_TRUE(all_within(y, ref.y, ref.tol_y)) << R << "x" << C;
    std::vector<double> ref_dx, tol_dx;
    softmax_backward_reference(ref_dx, tol_dx, dy, y, dx0, R, C, 4);
    EXPECT_TRUE(all_within(dx, ref_dx, tol_dx)) << R << "x" << C;
  }
}

// Logits offset by +-10^4 (and a row at the float limit's scale): no overflow, same accuracy.
TEST(SoftmaxTest, LargeOffsetsDoNotOverflow) {
  const int64_t R = 4, C = 50;
  std::vector<float> x = test::random_normal(R * C, 9, 3.0f);
  const float offsets[] = {1e4f, -1e4f, 3e4f, 1e30f};
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) x[r * C + c] += offsets[r];
  std::vector<float> y(R * C);
  softmax_forward(y.data(), x.data(), R, C);
  const SoftmaxRef ref = softmax_reference(x, R, C);
  EXPECT_TRUE(all_within(y, ref.y, ref.tol_y));
}

TEST(SoftmaxTest, RowHelpersEqualRowsBitwise) {
  const int64_t R = 6, C = 37;
  const std::vector<float> x = test::random_normal(R * C, 1, 2.0f),
                           dy = test::random_normal(R * C, 2);
  std::vector<float> y(R * C), dx(R * C, 0.0f);
  softmax_forward(y.data(), x.data(), R, C);
  softmax_backward(dx.data(), dy.data(), y.data(), R, C);
  for (int64_t r = 0; r < R; ++r) {
    std::vector<float> yr(C), dxr(C, std::numeric_limits<float>::quiet_NaN());  // overwritten
    softmax_row(yr.data(), x.data() + r * C, C);
    softmax_row_backward(dxr.data(), dy.data() + r * C, y.data() + r * C, C);
    EXPECT_TRUE(
        test::bitwise_equal(yr, std::vector<float>(y.begin() + r * C, y.begin() + (r + 1) * C)));
    EXPECT_TRUE(
        test::bitwise_equal(dxr, std::vector<float>(dx.begin() + r * C, dx.begin() + (r + 1) * C)));
  }
  // In place (out == x) equals out of place.
  std::vector<float> inplace = x;
  softmax_forward(inplace.data(), inplace.data(), R, C);
  EXPECT_TRUE(test::bitwise_equal(inplace, y));
  // A large case runs on the pool and still equals the row helper.
  const int64_t R2 = 300, C2 = 129;
  const std::vector<float> x2 = test::random_normal(R2 * C2, 3);
  std::vector<float> y2(R2 * C2), row(C2);
  softmax_forward(y2.data(), x2.data(), R2, C2);
  softmax_row(row.data(), x2.data() + 299 * C2, C2);
  EXPECT_TRUE(test::bitwise_equal(row, std::vector<float>(y2.end() - C2, y2.end())));
}

TEST(SoftmaxTest, BackwardMatchesFiniteDifferences) {
  const int64_t C = 9;
  const std::vector<double> x = test::to_double(test::random_normal(C, 41, 2.0f)),
                            dy = test::to_double(test::random_normal(C, 42));
  auto softmax_d = [&](const std::vector<double>& v) {
    double m = v[0], sum = 0;
    for (double e : v) m = std::max(m, e);
    std::vector<double> y(v.size());
    for (size_t i = 0; i < v.size(); ++i) sum += (y[i] = std::exp(v[i] - m));
    for (double& e : y) e /= sum;
    return y;
  };
  auto loss = [&](std::vector<double>& v) {
    const std::vector<double> y = softmax_d(v);
    double l = 0;
    for (int64_t i = 0; i < C; ++i) l += dy[i] * y[i];
    return l;
  };
  const std::vector<double> y = softmax_d(x);
  double dot = 0;
  for (int64_t i = 0; i < C; ++i) dot += dy[i] * y[i];
  std::vector<double> analytic(C);
  for (int64_t i = 0; i < C; ++i) analytic[i] = y[i] * (dy[i] - dot);
  const std::vector<double> g = test::finite_difference(loss, x);
  EXPECT_TRUE(all_within(analytic, g, test::fd_tolerance(g)));
}

TEST(SoftmaxTest, RejectsAliasedBackward) {
  std::vector<float> a(6), b(6);
  EXPECT_THROW(softmax_backward(a.data(), a.data(), b.data(), 2, 3), Error);
  EXPECT_THROW(softmax_forward(a.data(), b.data(), -1, 3), Error);
}

// PyTorch sums exp in float (a further gamma(C) relative in S, hence in y) and uses its own exp:
// the difference is within our bound with k + C + 3 more roundings.
TEST(SoftmaxTest, MatchesPyTorch) {
  for (auto [R, C] : {std::pair<int64_t, int64_t>{4, 19}, {1, 1}, {3, 300}}) {
    const std::string name = "softmax_" + std::to_string(R) + "x" + std::to_string(C);
    const test::Golden x = test::load_golden(name + "_x"), dy = test::load_golden(name + "_dy"),
                       out_t = test::load_golden(name + "_out"),
                       dx_t = test::load_golden(name + "_dx");
    ASSERT_EQ(x.numel(), R * C);
    std::vector<float> y(R * C), dx(R * C, 0.0f);
    softmax_forward(y.data(), x.f.data(), R, C);
    softmax_backward(dx.data(), dy.f.data(), y.data(), R, C);
    const SoftmaxRef ref = softmax_reference(x.f, R, C, double(C) + 3 + 6.04);
    EXPECT_TRUE(all_within(y, test::to_double(out_t.f), ref.tol_y)) << name;
    // Backward: ours vs the exact backward at our y, PyTorch's at its y (y differs by tol_y,
    // which enters scaled by |dy_i| + |<dy, y>| + sum_j |dy_j| tol_y_j), float dot of length C.
    std::vector<double> ref_dx, tol_dx;
    softmax_backward_reference(ref_dx, tol_dx, dy.f, y, {}, R, C, 4 + double(C) + 4);
    for (int64_t r = 0; r < R; ++r) {
      double dot_abs = 0, dy_tol = 0;
      for (int64_t c = 0; c < C; ++c) {
        dot_abs += std::fabs(dy.f[r * C + c] * y[r * C + c]);
        dy_tol += std::fabs(dy.f[r * C + c]) * ref.tol_y[r * C + c];
      }
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = r * C + c;
        tol_dx[i] += ref.tol_y[i] * (std::fabs(dy.f[i]) + dot_abs) + std::fabs(y[i]) * dy_tol;
      }
    }
    EXPECT_TRUE(all_within(dx, test::to_double(dx_t.f), tol_dx)) << name;
  }
}

}  // namespace
}  // namespace infini
