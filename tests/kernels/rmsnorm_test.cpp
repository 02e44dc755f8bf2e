// rmsnorm (src/kernels/rmsnorm.h) against a double reference, finite differences and PyTorch.
//
// Forward, with r = 1/sqrt(mean(x^2) + eps):
//   rstd: the kernel squares in float (u relative each), sums in double (C 2^-53) and rounds
//         the double formula once to float: u/2 + u + C 2^-53 relative, within gamma(2) |r|.
//   out = (x * r_f) * w: r_f carries gamma(2), two float products add 2: gamma(4) |out|.
// Backward, with g = dout * w, given the float rstd r:
//   s = sum_j g_j x_j with the products in float (2 roundings) and the sum in double: off by
//   gamma(2) S, S = sum_j |g_j x_j|. dx = r g - (r^3 s / C) x: the coefficient r^3 s / C adds
//   one rounding, g one, the two products and the difference three more, the += one more on
//   the final value: |err| <= gamma(6) (r |g| + r^3 S |x| / C) + gamma(1) |dx0 + dx|.
//   dw = sum_r fl(dout x) r in double (1 rounding each term), rounded once, then +=:
//   gamma(3) (|dw0| + sum_r |dout x r|).
#include <cmath>

#include "core/error.h"
#include "core/parallel.h"
#include "kernel_test_util.h"
#include "kernels/rmsnorm.h"

namespace infini {
namespace {

using test::all_within;
using test::gamma;

struct RmsRef {
  std::vector<double> out, rstd, dx, dw;
  std::vector<double> out_mag, dx_mag, dw_mag;  // magnitudes M for the tolerances
};

// Double forward, and the analytic backward for the given rstd (the kernel's float rstd in the
// float comparisons, the exact one in the finite-difference check).
RmsRef rms_reference(const std::vector<double>& x, const std::vector<double>& w,
                     const std::vector<double>& dout, int64_t R, int64_t C, double eps,
                     const std::vector<double>* rstd_given = nullptr) {
  RmsRef ref;
  ref.out.resize(R * C), ref.rstd.resize(R), ref.dx.resize(R * C), ref.dw.assign(C, 0.0);
  ref.out_mag.resize(R * C), ref.dx_mag.resize(R * C), ref.dw_mag.assign(C, 0.0);
  for (int64_t r = 0; r < R; ++r) {
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += x[r * C + c] * x[r * C + c];
    ref.rstd[r] = 1.0 / std::sqrt(ss / double(C) + eps);
    const double rs = rstd_given ? (*rstd_given)[r] : ref.rstd[r];
    double s = 0, s_abs = 0;  // sum_j g_j x_j and sum_j |g_j x_j|
    for (int64_t c = 0; c < C; ++c) {
      s += dout[r * C + c] * w[c] * x[r * C + c];
      s_abs += std::fabs(dout[r * C + c] * w[c] * x[r * C + c]);
    }
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = r * C + c;
      ref.out[i] = x[i] * ref.rstd[r] * w[c];
      ref.out_mag[i] = std::fabs(ref.out[i]);
      const double g = dout[i] * w[c];
      ref.dx[i] = rs * g - rs * rs * rs * s / double(C) * x[i];
      ref.dx_mag[i] = rs * std::fabs(g) + rs * rs * rs * s_abs / double(C) * std::fabs(x[i]);
      ref.dw[c] += dout[i] * x[i] * rs;
      ref.dw_mag[c] += std::fabs(dout[i] * x[i] * rs);
    }
  }
  return ref;
}

struct Case {
  int64_t R, C;
};

void check_against_double(int64_t R, int64_t C, uint64_t seed) {
  const float eps = 1e-5f;
  const std::vector<float> x = test::random_normal(R * C, seed, 2.0f);
  std::vector<float> w = test::random_normal(C, seed + 1, 0.1f);
  for (float& v : w) v += 1.0f;
  const std::vector<float> dout = test::random_normal(R * C, seed + 2);
  std::vector<float> out(R * C), rstd(R);
  rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), R, C, eps);

  const std::vector<double> rstd_f = test::to_double(rstd);
  const RmsRef ref = rms_reference(test::to_double(x), test::to_double(w), test::to_double(dout), R,
                                   C, double(eps), &rstd_f);
  std::vector<double> tol_out(R * C), tol_rstd(R);
  for (int64_t i = 0; i < R * C; ++i) tol_out[i] = gamma(4) * ref.out_mag[i];
  for (int64_t r = 0; r < R; ++r) tol_rstd[r] = gamma(2) * ref.rstd[r];
  EXPECT_TRUE(all_within(rstd, ref.rstd, tol_rstd)) << R << "x" << C;
  EXPECT_TRUE(all_within(out, ref.out, tol_out)) << R << "x" << C;

  // Backward accumulates into existing gradients.
  std::vector<float> dx = test::random_normal(R * C, seed + 3),
                     dw = test::random_normal(C, seed + 4);
  const std::vector<float> dx0 = dx, dw0 = dw;
  rmsnorm_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), R, C);
  std::vector<double> dx_ref(R * C), tol_dx(R * C), dw_ref(C), tol_dw(C);
  for (int64_t i = 0; i < R * C; ++i) {
    dx_ref[i] = dx0[i] + ref.dx[i];
    tol_dx[i] = gamma(6) * ref.dx_mag[i] + gamma(1) * std::fabs(dx_ref[i]);
  }
  for (int64_t c = 0; c < C; ++c) {
    dw_ref[c] = dw0[c] + ref.dw[c];
    tol_dw[c] = gamma(3) * (std::fabs(dw0[c]) + ref.dw_mag[c]);
  }
  EXPECT_TRUE(all_within(dx, dx_ref, tol_dx)) << R << "x" << C;
  EXPECT_TRUE(all_within(dw, dw_ref, tol_dw)) << R << "x" << C;
}

TEST(RmsnormTest, MatchesDoubleReference) {
  const Case cases[] = {{1, 1}, {1, 64}, {7, 13}, {33, 17}, {5, 256}, {64, 200}, {300, 77}};
  uint64_t seed = 10;
  for (const Case& c : cases) check_against_double(c.R, c.C, seed += 5);
}

TEST(RmsnormTest, InPlaceForwardIsBitwiseEqual) {
  const int64_t R = 9, C = 45;
  const std::vector<float> x = test::random_normal(R * C, 1), w = test::random_normal(C, 2);
  std::vector<float> out(R * C), rstd(R), inplace = x, rstd2(R);
  rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), R, C, 1e-6f);
  rmsnorm_forward(inplace.data(), rstd2.data(), inplace.data(), w.data(), R, C, 1e-6f);
  EXPECT_TRUE(test::bitwise_equal(out, inplace));
  EXPECT_TRUE(test::bitwise_equal(rstd, rstd2));
}

TEST(RmsnormTest, WeightGradientIndependentOfThreadCount) {
  // Large enough for the parallel paths.
  const int64_t R = 700, C = 300;
  const std::vector<float> x = test::random_normal(R * C, 1), w = test::random_normal(C, 2),
                           dout = test::random_normal(R * C, 3);
  std::vector<float> out(R * C), rstd(R);
  rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), R, C, 1e-5f);
  std::vector<std::vector<float>> dws, dxs;
  for (int threads : {1, 2, 3}) {
    threads_init(threads);
    std::vector<float> dx(R * C, 0.0f), dw(C, 0.0f);
    rmsnorm_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), R, C);
    dws.push_back(dw), dxs.push_back(dx);
  }
  threads_init(0);
  EXPECT_TRUE(test::bitwise_equal(dws[0], dws[1]));
  EXPECT_TRUE(test::bitwise_equal(dws[0], dws[2]));
  EXPECT_TRUE(test::bitwise_equal(dxs[0], dxs[1]));
}

// The analytic double backward against central differences of the double forward,
// L = sum(dout * out(x, w)).
TEST(RmsnormTest, BackwardMatchesFiniteDifferences) {
  const int64_t R = 3, C = 7;
  const double eps = 1e-5;
  const std::vector<double> x = test::to_double(test::random_normal(R * C, 21, 2.0f)),
                            w = test::to_double(test::random_normal(C, 22)),
                            dout = test::to_double(test::random_normal(R * C, 23));
  auto loss = [&](const std::vector<double>& xv, const std::vector<double>& wv) {
    const RmsRef f = rms_reference(xv, wv, dout, R, C, eps);
    double l = 0;
    for (int64_t i = 0; i < R * C; ++i) l += dout[i] * f.out[i];
    return l;
  };
  const RmsRef ref = rms_reference(x, w, dout, R, C, eps);
  const std::vector<double> gx =
      test::finite_difference([&](std::vector<double>& v) { return loss(v, w); }, x);
  const std::vector<double> gw =
      test::finite_difference([&](std::vector<double>& v) { return loss(x, v); }, w);
  EXPECT_TRUE(all_within(ref.dx, gx, test::fd_tolerance(gx)));
  EXPECT_TRUE(all_within(ref.dw, gw, test::fd_tolerance(gw)));
}

TEST(RmsnormTest, RejectsBadSizes) {
  float v = 1, r = 1;
  EXPECT_THROW(rmsnorm_forward(&v, &r, &v, &v, 1, 0, 1e-5f), Error);
  EXPECT_THROW(rmsnorm_forward(&v, &r, &v, &v, -1, 1, 1e-5f), Error);
  EXPECT_THROW(rmsnorm_forward(&v, &r, &v, &v, 1, 1, -1.0f), Error);
}

// PyTorch computes mean(x^2) with float sums: relative error up to gamma(C + 2) in the mean,
// half of it in rsqrt, plus 3 roundings: gamma(C/2 + 4) on out. Ours is within gamma(4); the
// difference is bounded by the sum. For the gradients, autograd forms float dot products of
// length C: gamma(C + 6) on the same magnitudes, plus ours.
TEST(RmsnormTest, MatchesPyTorch) {
  const Case cases[] = {{5, 37}, {1, 64}, {3, 1}};
  for (const Case& cs : cases) {
    const int64_t R = cs.R, C = cs.C;
    const std::string name = "rmsnorm_" + std::to_string(R) + "x" + std::to_string(C);
    const test::Golden x = test::load_golden(name + "_x"), w = test::load_golden(name + "_w"),
                       dout = test::load_golden(name + "_dout"),
                       out_t = test::load_golden(name + "_out"),
                       rstd_t = test::load_golden(name + "_rstd"),
                       dx_t = test::load_golden(name + "_dx"),
                       dw_t = test::load_golden(name + "_dw");
    ASSERT_EQ(x.numel(), R * C);
    std::vector<float> out(R * C), rstd(R), dx(R * C, 0.0f), dw(C, 0.0f);
    rmsnorm_forward(out.data(), rstd.data(), x.f.data(), w.f.data(), R, C, 1e-5f);
    rmsnorm_backward(dx.data(), dw.data(), dout.f.data(), x.f.data(), w.f.data(), rstd.data(), R,
                     C);
    const RmsRef ref = rms_reference(test::to_double(x.f), test::to_double(w.f),
                                     test::to_double(dout.f), R, C, 1e-5);
    const double k_fwd = 4 + (double(C) / 2 + 4), k_bwd = 6 + (double(C) + 6);
    std::vector<double> tol_out(R * C), tol_rstd(R), tol_dx(R * C), tol_dw(C);
    for (int64_t i = 0; i < R * C; ++i) {
      tol_out[i] = gamma(k_fwd) * ref.out_mag[i];
      tol_dx[i] = gamma(k_bwd) * ref.dx_mag[i];
    }
    for (int64_t r = 0; r < R; ++r) tol_rstd[r] = gamma(k_fwd) * ref.rstd[r];
    for (int64_t c = 0; c < C; ++c) tol_dw[c] = gamma(3 + double(R) + 2) * ref.dw_mag[c];
    EXPECT_TRUE(all_within(out, test::to_double(out_t.f), tol_out)) << name;
    EXPECT_TRUE(all_within(rstd, test::to_double(rstd_t.f), tol_rstd)) << name;
    EXPECT_TRUE(all_within(dx, test::to_double(dx_t.f), tol_dx)) << name;
    EXPECT_TRUE(all_within(dw, test::to_double(dw_t.f), tol_dw)) << name;
  }
}

}  // namespace
}  // namespace infini
