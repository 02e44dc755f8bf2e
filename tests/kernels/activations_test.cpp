// activations (src/kernels/activations.h) and the vectorised exp behind them.
//
// Tolerances are running error bounds: k roundings, each of an intermediate of magnitude at most
// M, give |err| <= gamma(k) M; exp_f32 counts as 2.04 u relative (1.02 ulp, an ulp <= 2u),
// written gamma(3) where it is followed by nothing else. Where exp(-x) overflows to +inf
// (x < -88.72) silu returns -0 while |silu(x)| < 89 e^-88.72 < 2^-120: an absolute 2^-120 covers
// it. Results in the denormal range carry an absolute error up to half the smallest denormal.
//   silu        exp (2.04 u), 1 + e, x / (.)                       k = 5,  M = |silu|
//   silu'       s as above (k = 5), 1 - s, x (.), 1 + (.), s (.), dout (.), +=
//                                                                  k = 11, M = |dout| s (1 + |x| (1
//                                                                  + s)) + |dx0|
//   swiglu      silu (5), * up                                     k = 6,  M = |out|
//   swiglu'     dgate: like silu' without +=, plus dout*up         k = 11; dup: silu (5) and *
//   dout: k = 6 elu1        x + 1 (1) or exp (2.04 u)                           k = 3,  M = |out|
//   elu1'       exp, dout (.), +=                                  k = 4,  M = |dout| elu1'(x) +
//   |dx0|
#include <cmath>
#include <limits>

#include "core/error.h"
#include "kernel_test_util.h"
#include "kernels/activations.h"
#include "kernels/kernel_support.h"

namespace infini {
namespace {

using test::all_within;
using test::gamma;

constexpr double kUnderflowAbs = 0x1p-120;

// ---- exp_f32 -----------------------------------------------------------------------------------

// A sample of every 211th float in [-106, 90] (about 10 million values) against the exact exp:
// within 1.02 ulp of the result (an ulp of a denormal is 2^-149). The header's claim was measured
// over every float in the range.
TEST(ActivationsTest, ExpWithinDocumentedUlps) {
  const uint32_t lo_neg = std::bit_cast<uint32_t>(-106.0f), hi_pos = std::bit_cast<uint32_t>(90.0f);
  std::vector<float> xs;
  xs.reserve(11'000'000);
  for (uint32_t b = 0x80000000u; b <= lo_neg; b += 211) xs.push_back(std::bit_cast<float>(b));
  for (uint32_t b = 0; b <= hi_pos; b += 211) xs.push_back(std::bit_cast<float>(b));
  std::vector<float> ys(xs.size());
  const int64_t n = int64_t(xs.size());
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) ys[i] = kernel_detail::exp_f32(xs[i]);
  double worst = 0;
  float worst_x = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double exact = std::exp(double(xs[i]));
    if (exact > double(std::numeric_limits<float>::max())) {
      ASSERT_TRUE(std::isinf(ys[i]) || ys[i] == std::numeric_limits<float>::max()) << xs[i];
      continue;
    }
    int e = 0;
    std::frexp(exact, &e);
    const double ulp = std::ldexp(1.0, std::max(e - 24, -149));
    const double err = std::fabs(double(ys[i]) - exact) / ulp;
    if (err > worst) worst = err, worst_x = xs[i];
  }
  EXPECT_LE(worst, 1.02) << "at x = " << worst_x;
}

TEST(ActivationsTest, ExpSpecialValues) {
  using kernel_detail::exp_f32;
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(exp_f32(0.0f), 1.0f);
  EXPECT_EQ(exp_f32(-0.0f), 1.0f);
  EXPECT_EQ(exp_f32(inf), inf);
  EXPECT_EQ(exp_f32(89.0f), inf);
  EXPECT_EQ(exp_f32(-inf), 0.0f);
  EXPECT_EQ(exp_f32(-104.0f), 0.0f);
  EXPECT_GT(exp_f32(-103.0f), 0.0f);  // gradual underflow
  EXPECT_TRUE(std::isnan(exp_f32(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_FLOAT_EQ(exp_f32(88.0f), std::exp(88.0f));
}

// ---- double references ----------------------------------------------------------------------

double sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}
double silu(double x) {
  return x * sigmoid(x);
}
double silu_grad(double x) {
  const double s = sigmoid(x);
  return s * (1.0 + x * (1.0 - s));
}
double elu1(double x) {
  return x > 0 ? x + 1.0 : std::exp(x);
}
double elu1_grad(double x) {
  return x > 0 ? 1.0 : std::exp(x);
}

// Inputs over the whole useful range plus edge values.
std::vector<float> test_inputs(int64_t n, uint64_t seed) {
  std::vector<float> x = test::random_normal(n, seed, 6.0f);
  const float edges[] = {0.0f,   -0.0f, 1e-30f, -1e-30f, 30.0f,   -30.0f, 88.0f,
                         -88.0f, 89.5f, -89.5f, 100.0f,  -100.0f, -104.5f};
  for (size_t i = 0; i < std::size(edges) && i < x.size(); ++i) x[i] = edges[i];
  return x;
}

// ---- silu -------------------------------------------------------------------------------------

TEST(ActivationsTest, SiluMatchesDoubleReference) {
  for (int64_t n : {int64_t(1), int64_t(13), int64_t(1001), int64_t(70'001)}) {
    const std::vector<float> x = test_inputs(n, uint64_t(n)), dout = test::random_normal(n, 7);
    std::vector<float> out(n), dx = test::random_normal(n, 8);
    const std::vector<float> dx0 = dx;
    silu_forward(out.data(), x.data(), n);
    silu_backward(dx.data(), dout.data(), x.data(), n);
    std::vector<double> ref(n), tol(n), ref_dx(n), tol_dx(n);
    for (int64_t i = 0; i < n; ++i) {
      const double xi = x[i], s = sigmoid(xi);
      ref[i] = silu(xi);
      tol[i] = gamma(5) * std::fabs(ref[i]) + kUnderflowAbs;
      ref_dx[i] = dx0[i] + double(dout[i]) * silu_grad(xi);
      tol_dx[i] =
          gamma(11) * (std::fabs(dout[i]) * s * (1 + std::fabs(xi) * (1 + s)) + std::fabs(dx0[i])) +
          kUnderflowAbs;
    }
    EXPECT_TRUE(all_within(out, ref, tol)) << "n=" << n;
    EXPECT_TRUE(all_within(dx, ref_dx, tol_dx)) << "n=" << n;
  }
}

TEST(ActivationsTest, SiluIsElementwiseInPlace) {
  const int64_t n = 50'000;
  const std::vector<float> x = test_inputs(n, 3);
  std::vector<float> out(n), inplace = x;
  silu_forward(out.data(), x.data(), n);
  silu_forward(inplace.data(), inplace.data(), n);
  EXPECT_TRUE(test::bitwise_equal(out, inplace));
}

// ---- swiglu ---------------------------------------------------------------------------------

TEST(ActivationsTest, SwigluMatchesDoubleReference) {
  for (auto [R, F] : {std::pair<int64_t, int64_t>{1, 1}, {5, 13}, {3, 64}, {40, 1000}}) {
    const std::vector<float> gu = test_inputs(R * 2 * F, uint64_t(R * F)),
                             dout = test::random_normal(R * F, 9);
    std::vector<float> out(R * F), dgu(R * 2 * F, std::numeric_limits<float>::quiet_NaN());
    swiglu_forward(out.data(), gu.data(), R, F);
    swiglu_backward(dgu.data(), dout.data(), gu.data(), R, F);  // overwrites the NaNs
    std::vector<double> ref(R * F), tol(R * F), ref_d(R * 2 * F), tol_d(R * 2 * F);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t f = 0; f < F; ++f) {
        const double g = gu[r * 2 * F + f], u = gu[r * 2 * F + F + f], d = dout[r * F + f];
        const double s = sigmoid(g);
        ref[r * F + f] = silu(g) * u;
        tol[r * F + f] = gamma(6) * std::fabs(ref[r * F + f]) + kUnderflowAbs * std::fabs(u);
        ref_d[r * 2 * F + f] = d * u * silu_grad(g);
        tol_d[r * 2 * F + f] = gamma(11) * std::fabs(d * u) * s * (1 + std::fabs(g) * (1 + s)) +
                               kUnderflowAbs * std::fabs(d * u);
        ref_d[r * 2 * F + F + f] = d * silu(g);
        tol_d[r * 2 * F + F + f] = gamma(6) * std::fabs(d * silu(g)) + kUnderflowAbs * std::fabs(d);
      }
    EXPECT_TRUE(all_within(out, ref, tol)) << R << "x" << F;
    EXPECT_TRUE(all_within(dgu, ref_d, tol_d)) << R << "x" << F;
  }
}

TEST(ActivationsTest, SwigluBackwardRejectsAliasing) {
  std::vector<float> gu(8), d(4);
  EXPECT_THROW(swiglu_backward(gu.data(), d.data(), gu.data(), 2, 2), Error);
}

// ---- elu1 --------------------------------------------------------------------------------------

TEST(ActivationsTest, Elu1MatchesDoubleReference) {
  for (int64_t n : {int64_t(1), int64_t(17), int64_t(40'000)}) {
    const std::vector<float> x = test_inputs(n, uint64_t(n + 5)), dout = test::random_normal(n, 2);
    std::vector<float> out(n), dx = test::random_normal(n, 3);
    const std::vector<float> dx0 = dx;
    elu1_forward(out.data(), x.data(), n);
    elu1_backward(dx.data(), dout.data(), x.data(), n);
    std::vector<double> ref(n), tol(n), ref_dx(n), tol_dx(n);
    for (int64_t i = 0; i < n; ++i) {
      ref[i] = elu1(x[i]);
      tol[i] = gamma(3) * ref[i] + test::kDenormMin;
      ref_dx[i] = dx0[i] + double(dout[i]) * elu1_grad(x[i]);
      tol_dx[i] =
          gamma(4) * (std::fabs(dout[i]) * elu1_grad(x[i]) + std::fabs(dx0[i])) + test::kDenormMin;
    }
    EXPECT_TRUE(all_within(out, ref, tol)) << "n=" << n;
    EXPECT_TRUE(all_within(dx, ref_dx, tol_dx)) << "n=" << n;
  }
}

// The row-block variants compute element for element what the flat ones compute, on strided rows,
// and leave the gaps between rows alone.
TEST(ActivationsTest, Elu1RowsMatchFlatOnStridedBlocks) {
  const int64_t rows = 7, cols = 67, xs = 80, os = 71;
  const std::vector<float> x = test_inputs(rows * xs, 21),
                           dout = test::random_normal(rows * os, 22);
  std::vector<float> out(rows * os, -7.0f), dx = test::random_normal(rows * os, 23);
  const std::vector<float> dx0 = dx;
  elu1_forward_rows(out.data(), os, x.data(), xs, rows, cols);
  elu1_backward_rows(dx.data(), os, dout.data(), os, x.data(), xs, rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> o(cols), g(dx0.begin() + r * os, dx0.begin() + r * os + cols);
    elu1_forward(o.data(), x.data() + r * xs, cols);
    elu1_backward(g.data(), dout.data() + r * os, x.data() + r * xs, cols);
    for (int64_t i = 0; i < os; ++i) {
      if (i < cols) {
        EXPECT_EQ(out[r * os + i], o[i]) << r << "," << i;
        EXPECT_EQ(dx[r * os + i], g[i]) << r << "," << i;
      } else {
        EXPECT_EQ(out[r * os + i], -7.0f) << r << "," << i;
        EXPECT_EQ(dx[r * os + i], dx0[r * os + i]) << r << "," << i;
      }
    }
  }
}

// ---- finite differences of the analytic derivatives ---------------------------------------

TEST(ActivationsTest, DerivativesMatchFiniteDifferences) {
  const std::vector<double> x = test::to_double(test::random_uniform(40, 11, -8.0f, 8.0f));
  // Each function is elementwise, so one gradient vector of L = sum(f(x_i)) checks all of them.
  auto sum_of = [](double (*f)(double)) {
    return [f](std::vector<double>& v) {
      double l = 0;
      for (double e : v) l += f(e);
      return l;
    };
  };
  auto derivs = [&](double (*df)(double)) {
    std::vector<double> g(x.size());
    for (size_t i = 0; i < x.size(); ++i) g[i] = df(x[i]);
    return g;
  };
  const std::vector<double> g_silu = test::finite_difference(sum_of(silu), x);
  EXPECT_TRUE(all_within(derivs(silu_grad), g_silu, test::fd_tolerance(g_silu)));
  // elu1 has a kink at 0; the inputs avoid |x| < 1e-3 there (h = 1e-5).
  std::vector<double> xe = x;
  for (double& v : xe)
    if (std::fabs(v) < 1e-3) v = 0.5;
  const std::vector<double> g_elu = test::finite_difference(sum_of(elu1), xe);
  std::vector<double> d_elu(xe.size());
  for (size_t i = 0; i < xe.size(); ++i) d_elu[i] = elu1_grad(xe[i]);
  EXPECT_TRUE(all_within(d_elu, g_elu, test::fd_tolerance(g_elu)));
  // SwiGLU: L = sum(dout * silu(g) * u) over a 2 x 3 block, both halves.
  const int64_t R = 2, F = 3;
  const std::vector<double> gu = test::to_double(test::random_normal(R * 2 * F, 12, 2.0f)),
                            dout = test::to_double(test::random_normal(R * F, 13));
  auto loss = [&](std::vector<double>& v) {
    double l = 0;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t f = 0; f < F; ++f)
        l += dout[r * F + f] * silu(v[r * 2 * F + f]) * v[r * 2 * F + F + f];
    return l;
  };
  std::vector<double> analytic(R * 2 * F);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t f = 0; f < F; ++f) {
      analytic[r * 2 * F + f] =
          dout[r * F + f] * gu[r * 2 * F + F + f] * silu_grad(gu[r * 2 * F + f]);
      analytic[r * 2 * F + F + f] = dout[r * F + f] * silu(gu[r * 2 * F + f]);
    }
  const std::vector<double> g_swiglu = test::finite_difference(loss, gu);
  EXPECT_TRUE(all_within(analytic, g_swiglu, test::fd_tolerance(g_swiglu)));
}

// ---- PyTorch ----------------------------------------------------------------------------------

// PyTorch evaluates the same formulas (silu = x / (1 + exp(-x)), its backward
// dout s (1 + x (1 - s))) with its own exp (a few ulp: counted like ours), so the difference is
// within twice our bounds. elu1 in PyTorch is elu(x) + 1 = expm1(x) + 1 for x <= 0, whose final
// addition rounds at the scale of 1: an absolute u on top (so tiny exp(x) may come out as 0).
TEST(ActivationsTest, MatchesPyTorch) {
  {
    const test::Golden x = test::load_golden("silu_x"), dout = test::load_golden("silu_dout"),
                       out_t = test::load_golden("silu_out"), dx_t = test::load_golden("silu_dx");
    const int64_t n = x.numel();
    std::vector<float> out(n), dx(n, 0.0f);
    silu_forward(out.data(), x.f.data(), n);
    silu_backward(dx.data(), dout.f.data(), x.f.data(), n);
    std::vector<double> tol(n), tol_dx(n);
    for (int64_t i = 0; i < n; ++i) {
      const double s = sigmoid(x.f[i]);
      tol[i] = 2 * (gamma(5) * std::fabs(silu(x.f[i])) + kUnderflowAbs);
      tol_dx[i] = 2 * (gamma(11) * std::fabs(dout.f[i]) * s * (1 + std::fabs(x.f[i]) * (1 + s)) +
                       kUnderflowAbs);
    }
    EXPECT_TRUE(all_within(out, test::to_double(out_t.f), tol)) << "silu";
    EXPECT_TRUE(all_within(dx, test::to_double(dx_t.f), tol_dx)) << "silu backward";
  }
  {
    const test::Golden x = test::load_golden("elu1_x"), dout = test::load_golden("elu1_dout"),
                       out_t = test::load_golden("elu1_out"), dx_t = test::load_golden("elu1_dx");
    const int64_t n = x.numel();
    std::vector<float> out(n), dx(n, 0.0f);
    elu1_forward(out.data(), x.f.data(), n);
    elu1_backward(dx.data(), dout.f.data(), x.f.data(), n);
    std::vector<double> tol(n), tol_dx(n);
    for (int64_t i = 0; i < n; ++i) {
      tol[i] = 2 * gamma(3) * elu1(x.f[i]) + gamma(1) + test::kDenormMin;
      tol_dx[i] = 2 * gamma(4) * std::fabs(dout.f[i]) * elu1_grad(x.f[i]) + test::kDenormMin;
    }
    EXPECT_TRUE(all_within(out, test::to_double(out_t.f), tol)) << "elu1";
    EXPECT_TRUE(all_within(dx, test::to_double(dx_t.f), tol_dx)) << "elu1 backward";
  }
  {
    const test::Golden gu = test::load_golden("swiglu_5x13_gate_up"),
                       dout = test::load_golden("swiglu_5x13_dout"),
                       out_t = test::load_golden("swiglu_5x13_out"),
                       dgu_t = test::load_golden("swiglu_5x13_dgate_up");
    const int64_t R = 5, F = 13;
    ASSERT_EQ(gu.numel(), R * 2 * F);
    std::vector<float> out(R * F), dgu(R * 2 * F);
    swiglu_forward(out.data(), gu.f.data(), R, F);
    swiglu_backward(dgu.data(), dout.f.data(), gu.f.data(), R, F);
    std::vector<double> tol(R * F), tol_d(R * 2 * F);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t f = 0; f < F; ++f) {
        const double g = gu.f[r * 2 * F + f], u = gu.f[r * 2 * F + F + f], d = dout.f[r * F + f];
        const double s = sigmoid(g);
        tol[r * F + f] = 2 * (gamma(6) * std::fabs(silu(g) * u) + kUnderflowAbs * std::fabs(u));
        tol_d[r * 2 * F + f] =
            2 * (gamma(11) * std::fabs(d * u) * s * (1 + std::fabs(g) * (1 + s)) +
                 kUnderflowAbs * std::fabs(d * u));
        tol_d[r * 2 * F + F + f] =
            2 * (gamma(6) * std::fabs(d * silu(g)) + kUnderflowAbs * std::fabs(d));
      }
    EXPECT_TRUE(all_within(out, test::to_double(out_t.f), tol)) << "swiglu";
    EXPECT_TRUE(all_within(dgu, test::to_double(dgu_t.f), tol_d)) << "swiglu backward";
  }
}

}  // namespace
}  // namespace infini
