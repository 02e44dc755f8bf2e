// rope (src/kernels/rope.h): tables against long double angles up to stream positions near 10^8,
// forward/backward on column slices of wider buffers, finite differences, PyTorch.
//
// Tolerances. Tables: the kernel rounds cos(angle_d) to float, angle_d = pos * inv_d in double
// with inv_d = pow(theta, -2i/d) within 2 ulp (glibc pow is correctly rounded to < 1 ulp; the
// product adds half): |angle_d - angle| <= 3 * 2^-53 * angle, and cos/sin in double add 2^-53.
// So |table - exact| <= 2^-25 (half a float ulp below 1) + 3 * 2^-53 * angle + 2^-53.
// Forward: o1 = x1 c - x2 s is two products and a difference: gamma(2) (|x1 c| + |x2 s|).
// Backward: dx1 += d1 c + d2 s: gamma(2) on the products' magnitudes, one more rounding for +=:
// gamma(3) (|d1 c| + |d2 s| + |dx0|).
#include <cmath>

#include "core/error.h"
#include "kernel_test_util.h"
#include "kernels/rope.h"

namespace infini {
namespace {

using test::all_within;
using test::gamma;

constexpr double kTheta = 10000.0;

double table_tolerance(double angle) {
  return 0x1p-25 + 3 * 0x1p-53 * angle + 0x1p-53;
}

void check_tables(int64_t first, int64_t T, int64_t d) {
  const int64_t half = d / 2;
  std::vector<float> cos(T * half), sin(T * half);
  rope_tables(cos.data(), sin.data(), T, d, kTheta, first);
  std::vector<double> ref_c(T * half), ref_s(T * half), tol(T * half);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const long double angle =
          (long double)(first + t) * std::pow((long double)kTheta, -2.0L * i / (long double)d);
      ref_c[t * half + i] = double(std::cos(angle));
      ref_s[t * half + i] = double(std::sin(angle));
      tol[t * half + i] = table_tolerance(double(angle));
    }
  EXPECT_TRUE(all_within(cos, ref_c, tol)) << "cos from " << first;
  EXPECT_TRUE(all_within(sin, ref_s, tol)) << "sin from " << first;
}

TEST(RopeTest, TablesMatchLongDoubleAngles) {
  check_tables(0, 17, 64);
  check_tables(0, 3, 2);
  check_tables(999'990, 20, 64);    // stream positions near 10^6
  check_tables(123'456'700, 5, 8);  // and far beyond
}

// Why the angles are in double: in float, pos * inv loses about pos * 2^-24 radians, 0.06 at
// pos = 10^6: far outside the table tolerance above.
TEST(RopeTest, FloatAnglesWouldFailNearAMillion) {
  const int64_t first = 999'990, T = 20, d = 64, half = d / 2;
  double worst = 0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const float inv = std::pow(float(kTheta), -2.0f * float(i) / float(d));
      const float angle_f = float(first + t) * inv;
      const long double angle =
          (long double)(first + t) * std::pow((long double)kTheta, -2.0L * i / (long double)d);
      worst = std::max(worst, std::fabs(double(std::cos(angle_f)) - double(std::cos(angle))));
    }
  EXPECT_GT(worst, 100 * table_tolerance(1e6));
}

// Rotation of x (row stride xs) into out (row stride os), in double, with the given tables.
void rope_ref(std::vector<double>& out, const std::vector<double>& x, const std::vector<double>& c,
              const std::vector<double>& s, int64_t T, int64_t H, int64_t d, int64_t xs, int64_t os,
              int64_t x_off, int64_t o_off, bool inverse) {
  const int64_t half = d / 2;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const double x1 = x[x_off + t * xs + h * d + i], x2 = x[x_off + t * xs + h * d + half + i];
        const double cc = c[t * half + i], ss = inverse ? -s[t * half + i] : s[t * half + i];
        out[o_off + t * os + h * d + i] = x1 * cc - x2 * ss;
        out[o_off + t * os + h * d + half + i] = x2 * cc + x1 * ss;
      }
}

// Q and K heads are column slices of a fused [T, 3 H d + 5] buffer: rope Q out of place into a
// strided output, K in place; every other column must stay untouched.
TEST(RopeTest, ColumnSlicesOfAFusedBufferMatchDoubleReference) {
  for (auto [T, H, d, first] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{5, 3, 8, 0},
                                {1, 1, 2, 7},
                                {9, 2, 22, 999'995},
                                {300, 4, 64, 0}}) {
    const int64_t half = d / 2, W = 3 * H * d + 5, OW = H * d + 3;
    std::vector<float> cos(T * half), sin(T * half);
    rope_tables(cos.data(), sin.data(), T, d, kTheta, first);
    const std::vector<float> qkv0 = test::random_normal(T * W, uint64_t(T * 100 + d));
    std::vector<float> qkv = qkv0, out(T * OW, -7.0f);
    rope_forward(out.data(), qkv.data(), cos.data(), sin.data(), T, H, d, W, OW);  // Q
    rope_forward(qkv.data() + H * d, qkv.data() + H * d, cos.data(), sin.data(), T, H, d, W,
                 W);  // K

    const std::vector<double> x = test::to_double(qkv0), c = test::to_double(cos),
                              s = test::to_double(sin);
    std::vector<double> ref_q(T * OW, -7.0), ref_qkv = x;
    rope_ref(ref_q, x, c, s, T, H, d, W, OW, 0, 0, false);
    rope_ref(ref_qkv, x, c, s, T, H, d, W, W, H * d, H * d, false);
    auto tolerance = [&](const std::vector<double>& ref, int64_t stride, int64_t off) {
      std::vector<double> tol(ref.size(), 0.0);  // 0: untouched columns must be exact
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t i = 0; i < half; ++i) {
            const double x1 = x[off + t * W + h * d + i], x2 = x[off + t * W + h * d + half + i];
            const double m = std::fabs(x1 * c[t * half + i]) + std::fabs(x2 * s[t * half + i]) +
                             std::fabs(x2 * c[t * half + i]) + std::fabs(x1 * s[t * half + i]);
            tol[off + t * stride + h * d + i] = tol[off + t * stride + h * d + half + i] =
                gamma(2) * m;
          }
      return tol;
    };
    EXPECT_TRUE(all_within(out, ref_q, tolerance(ref_q, OW, 0))) << "Q, d=" << d;
    EXPECT_TRUE(all_within(qkv, ref_qkv, tolerance(ref_qkv, W, H * d))) << "K in place, d=" << d;

    // In place equals out of place, bit for bit.
    std::vector<float> q_inplace = qkv0, k_out(T * OW);
    rope_forward(q_inplace.data(), q_inplace.data(), cos.data(), sin.data(), T, H, d, W, W);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < H * d; ++j)
        ASSERT_EQ(q_inplace[t * W + j], out[t * OW + j]) << t << "," << j;

    // Backward on the same slices, accumulating.
    const std::vector<float> dout = test::random_normal(T * OW, 5);
    std::vector<float> dqkv = test::random_normal(T * W, 6);
    const std::vector<float> dqkv0 = dqkv;
    rope_backward(dqkv.data() + H * d, dout.data(), cos.data(), sin.data(), T, H, d, W, OW);
    std::vector<double> rot(T * W, 0.0), ref_d = test::to_double(dqkv0), tol_d(T * W, 0.0);
    rope_ref(rot, test::to_double(dout), c, s, T, H, d, OW, W, 0, H * d, true);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const double d1 = dout[t * OW + h * d + i], d2 = dout[t * OW + h * d + half + i];
          const double m =
              std::fabs(d1) * (std::fabs(c[t * half + i]) + std::fabs(s[t * half + i])) +
              std::fabs(d2) * (std::fabs(c[t * half + i]) + std::fabs(s[t * half + i]));
          for (int64_t j : {i, half + i}) {
            const int64_t at = t * W + H * d + h * d + j;
            ref_d[at] += rot[at];
            tol_d[at] = gamma(3) * (m + std::fabs(dqkv0[at]));
          }
        }
    EXPECT_TRUE(all_within(dqkv, ref_d, tol_d)) << "backward, d=" << d;
  }
}

// The backward is the transposed rotation: checked in double against central differences of
// L = sum(dout * rope(x)).
TEST(RopeTest, BackwardMatchesFiniteDifferences) {
  const int64_t T = 3, H = 2, d = 6, half = d / 2;
  std::vector<double> c(T * half), s(T * half);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double angle = double(t + 5) * std::pow(kTheta, -2.0 * double(i) / double(d));
      c[t * half + i] = std::cos(angle), s[t * half + i] = std::sin(angle);
    }
  const std::vector<double> x = test::to_double(test::random_normal(T * H * d, 31)),
                            dout = test::to_double(test::random_normal(T * H * d, 32));
  auto loss = [&](std::vector<double>& xv) {
    std::vector<double> out(T * H * d);
    rope_ref(out, xv, c, s, T, H, d, H * d, H * d, 0, 0, false);
    double l = 0;
    for (int64_t i = 0; i < T * H * d; ++i) l += dout[i] * out[i];
    return l;
  };
  std::vector<double> dx(T * H * d);
  rope_ref(dx, dout, c, s, T, H, d, H * d, H * d, 0, 0, true);
  const std::vector<double> g = test::finite_difference(loss, x);
  EXPECT_TRUE(all_within(dx, g, test::fd_tolerance(g)));
}

TEST(RopeTest, RejectsBadArguments) {
  float v[8] = {};
  EXPECT_THROW(rope_tables(v, v, 1, 3, kTheta, 0), Error);       // odd head_dim
  EXPECT_THROW(rope_tables(v, v, 1, 4, kTheta, -1), Error);      // negative position
  EXPECT_THROW(rope_forward(v, v, v, v, 1, 2, 4, 7, 8), Error);  // stride < heads * d
  EXPECT_THROW(rope_backward(v, v, v, v, 1, 1, 0, 8, 8), Error);
}

// PyTorch builds the same tables from double angles (make_kernel_golden.py) and rotates with
// x * cos + rotate_half(x) * sin: the same operations, so each side is within the bounds above
// and the difference within twice them. Tables: both round nearly the same double (the pow and
// the product may differ by the 3 * 2^-53 * angle above), so they differ by at most one float ulp
// below 1 (2^-24) plus twice that.
TEST(RopeTest, MatchesPyTorch) {
  for (auto [T, H, d, first] :
       {std::tuple<int64_t, int64_t, int64_t, int64_t>{6, 3, 8, 0}, {5, 2, 64, 999'998}}) {
    const int64_t half = d / 2;
    const std::string name = "rope_" + std::to_string(T) + "x" + std::to_string(H) + "x" +
                             std::to_string(d) + "_at" + std::to_string(first);
    const test::Golden cos_t = test::load_golden(name + "_cos"),
                       sin_t = test::load_golden(name + "_sin"), x = test::load_golden(name + "_x"),
                       dout = test::load_golden(name + "_dout"),
                       out_t = test::load_golden(name + "_out"),
                       dx_t = test::load_golden(name + "_dx");
    ASSERT_EQ(x.numel(), T * H * d);
    std::vector<float> cos(T * half), sin(T * half);
    rope_tables(cos.data(), sin.data(), T, d, kTheta, first);
    std::vector<double> tol_tab(T * half);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < half; ++i)
        tol_tab[t * half + i] =
            0x1p-24 + 6 * 0x1p-53 * double(first + t) * std::pow(kTheta, -2.0 * i / double(d));
    EXPECT_TRUE(all_within(cos, test::to_double(cos_t.f), tol_tab)) << name;
    EXPECT_TRUE(all_within(sin, test::to_double(sin_t.f), tol_tab)) << name;

    std::vector<float> out(T * H * d), dx(T * H * d, 0.0f);
    rope_forward(out.data(), x.f.data(), cos.data(), sin.data(), T, H, d, H * d, H * d);
    rope_backward(dx.data(), dout.f.data(), cos.data(), sin.data(), T, H, d, H * d, H * d);
    std::vector<double> tol_o(T * H * d), tol_dx(T * H * d);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const double c = std::fabs(cos[t * half + i]), s = std::fabs(sin[t * half + i]);
          const int64_t a = t * H * d + h * d + i, b = a + half;
          // Table differences (tol_tab) enter multiplied by |x|.
          const double mx =
              (std::fabs(x.f[a]) + std::fabs(x.f[b])) * (c + s + tol_tab[t * half + i]);
          const double md =
              (std::fabs(dout.f[a]) + std::fabs(dout.f[b])) * (c + s + tol_tab[t * half + i]);
          tol_o[a] = tol_o[b] =
              2 * gamma(2) * mx + (std::fabs(x.f[a]) + std::fabs(x.f[b])) * tol_tab[t * half + i];
          tol_dx[a] = tol_dx[b] =
              2 * gamma(3) * md +
              (std::fabs(dout.f[a]) + std::fabs(dout.f[b])) * tol_tab[t * half + i];
        }
    EXPECT_TRUE(all_within(out, test::to_double(out_t.f), tol_o)) << name;
    EXPECT_TRUE(all_within(dx, test::to_double(dx_t.f), tol_dx)) << name;
  }
}

}  // namespace
}  // namespace infini
