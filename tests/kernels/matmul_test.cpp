// matmul (src/kernels/matmul.h): every layout, with and without accumulation, packed and strided,
// degenerate sizes, argument checks, threading, and agreement with PyTorch.
//
// Tolerance: a dot product of K terms evaluated in any order, with or without FMA, satisfies
// |fl(sum) - sum| <= gamma(K) sum |a_i b_i| (Higham, Thm 3.1 / eq. 3.5). Accumulating into C adds
// one more term, so every test here checks
//   |C - C_ref|_ij <= gamma(K + 1) (|op(A)| |op(B)| + |C0|)_ij.
// Against PyTorch (whose GEMM obeys the same bound) the difference may be twice that.
#include <omp.h>
#include <pthread.h>
#include <time.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "core/parallel.h"
#include "kernel_test_util.h"
#include "kernels/matmul.h"

namespace infini {
namespace {

using test::all_within;
using test::gamma;

struct Problem {
  int64_t m, n, k;
  bool ta, tb;
  int64_t lda, ldb, ldc;  // actual leading dimensions of the stored buffers
};

// Element (i, p) of op(A) and (p, j) of op(B) as stored.
inline double a_at(const Problem& p, const std::vector<float>& a, int64_t i, int64_t q) {
  return p.ta ? a[q * p.lda + i] : a[i * p.lda + q];
}
inline double b_at(const Problem& p, const std::vector<float>& b, int64_t q, int64_t j) {
  return p.tb ? b[j * p.ldb + q] : b[q * p.ldb + j];
}

// Fills the stored buffers (with padding columns) and checks the kernel against a double
// reference, including that padding columns of C are untouched.
void check_problem(const Problem& p, bool accumulate, uint64_t seed) {
  const int64_t a_rows = p.ta ? p.k : p.m, b_rows = p.tb ? p.n : p.k;
  std::vector<float> a = test::random_normal(a_rows * p.lda, seed);
  std::vector<float> b = test::random_normal(b_rows * p.ldb, seed + 1);
  std::vector<float> c = test::random_normal(p.m * p.ldc, seed + 2);
  // Without accumulation C's old contents must not matter, not even NaN (beta = 0 semantics).
  if (!accumulate)
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t j = 0; j < p.n; ++j) c[i * p.ldc + j] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> c0 = c;

  MatmulStrides strides{p.lda, p.ldb, p.ldc};
  matmul(c.data(), a.data(), b.data(), p.m, p.n, p.k, p.ta, p.tb, accumulate, strides);

  std::vector<double> got, ref, tol;
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.ldc; ++j) {
      const int64_t at = i * p.ldc + j;
      if (j >= p.n) {  // padding: untouched, bit for bit
        ASSERT_EQ(std::memcmp(&c[at], &c0[at], sizeof(float)), 0)
            << "padding (" << i << ", " << j << ") was written";
        continue;
      }
      double sum = 0, abs_sum = 0;
      for (int64_t q = 0; q < p.k; ++q) {
        const double prod = a_at(p, a, i, q) * b_at(p, b, q, j);
        sum += prod;
        abs_sum += std::fabs(prod);
      }
      if (accumulate) sum += c0[at], abs_sum += std::fabs(c0[at]);
      got.push_back(c[at]);
      ref.push_back(sum);
      tol.push_back(gamma(double(p.k + 1)) * abs_sum);
    }
  }
  EXPECT_TRUE(all_within(got, ref, tol))
      << "M=" << p.m << " N=" << p.n << " K=" << p.k << " ta=" << p.ta << " tb=" << p.tb
      << " lda=" << p.lda << " ldb=" << p.ldb << " ldc=" << p.ldc << " accumulate=" << accumulate;
}

Problem packed(int64_t m, int64_t n, int64_t k, bool ta, bool tb) {
  return {m, n, k, ta, tb, ta ? m : k, tb ? k : n, n};
}

TEST(MatmulTest, AllLayoutsOddShapesMatchDoubleReference) {
  const int64_t shapes[][3] = {
      {7, 13, 5},  {1, 1, 1},      {33, 17, 65}, {1, 64, 3}, {64, 1, 33},
      {19, 23, 1}, {130, 70, 257}, {600, 33, 70}};  // M >= 512: nt goes through a transposed copy
                                                    // of B
  uint64_t seed = 1;
  for (const auto& s : shapes)
    for (int layout = 0; layout < 4; ++layout)  // nn, nt, tn, tt
      for (bool accumulate : {false, true})
        check_problem(packed(s[0], s[1], s[2], layout & 2, layout & 1), accumulate, seed += 3);
}

TEST(MatmulTest, LongReductionMatchesDoubleReference) {
  // K large enough for oneDNN to split the reduction into blocks.
  for (bool accumulate : {false, true}) {
    check_problem(packed(9, 11, 3000, false, true), accumulate, 100);
    check_problem(packed(9, 11, 3000, true, false), accumulate, 200);
  }
}

TEST(MatmulTest, StridedLeadingDimensions) {
  // Column slices of wider buffers (one head of a fused QKV buffer): ld > row length.
  uint64_t seed = 300;
  for (int layout = 0; layout < 4; ++layout) {
    const bool ta = layout & 2, tb = layout & 1;
    for (bool accumulate : {false, true}) {
      Problem p = packed(7, 13, 5, ta, tb);
      p.lda += 3, p.ldb += 11, p.ldc += 6;
      check_problem(p, accumulate, seed += 3);
      Problem q = packed(33, 17, 65, ta, tb);
      q.lda += 64, q.ldb += 1, q.ldc += 17;
      check_problem(q, accumulate, seed += 3);
      Problem big = packed(520, 17, 65, ta, tb);  // the transposed-copy path of nt
      big.lda += 5, big.ldb += 3, big.ldc += 2;
      check_problem(big, accumulate, seed += 3);
    }
  }
}

TEST(MatmulTest, EmptyDimensions) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> a(64, 1.0f), b(64, 1.0f);
  // K = 0: the empty sum. Overwrite zeroes C (inside the ldc rows only); accumulate keeps it.
  std::vector<float> c(3 * 5, nan);
  matmul_nn(c.data(), a.data(), b.data(), 3, 4, 0, false, {-1, -1, 5});
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 5; ++j) {
      if (j < 4)
        EXPECT_EQ(c[i * 5 + j], 0.0f) << i << "," << j;
      else
        EXPECT_TRUE(std::isnan(c[i * 5 + j])) << "padding written at " << i;
    }
  std::vector<float> d(12, 2.5f);
  matmul_nt(d.data(), a.data(), b.data(), 3, 4, 0, true);
  for (float v : d) EXPECT_EQ(v, 2.5f);
  // M = 0 or N = 0: nothing to do, nothing touched, null C allowed.
  matmul_nn(nullptr, a.data(), b.data(), 0, 4, 3, false);
  matmul_tn(nullptr, a.data(), b.data(), 4, 0, 3, true);
  std::vector<float> e(4, nan);
  matmul_nn(e.data(), nullptr, nullptr, 0, 4, 3, false);
  for (float v : e) EXPECT_TRUE(std::isnan(v));
}

TEST(MatmulTest, RejectsBadArguments) {
  std::vector<float> a(100), b(100), c(100);
  EXPECT_THROW(matmul_nn(c.data(), a.data(), b.data(), -1, 2, 2), Error);
  EXPECT_THROW(matmul_nn(c.data(), a.data(), b.data(), 2, -1, 2), Error);
  EXPECT_THROW(matmul_nn(c.data(), a.data(), b.data(), 2, 2, -1), Error);
  // Leading dimensions shorter than a stored row: A [M,K] needs lda >= K, A^T stored [K,M]
  // needs lda >= M; likewise B; C needs ldc >= N.
  EXPECT_THROW(matmul_nn(c.data(), a.data(), b.data(), 3, 4, 5, false, {4, -1, -1}), Error);
  EXPECT_THROW(matmul_tn(c.data(), a.data(), b.data(), 3, 4, 5, false, {2, -1, -1}), Error);
  EXPECT_THROW(matmul_nn(c.data(), a.data(), b.data(), 3, 4, 5, false, {-1, 3, -1}), Error);
  EXPECT_THROW(matmul_nt(c.data(), a.data(), b.data(), 3, 4, 5, false, {-1, 4, -1}), Error);
  EXPECT_THROW(matmul_nn(c.data(), a.data(), b.data(), 3, 4, 5, false, {-1, -1, 3}), Error);
  EXPECT_THROW(matmul_nn(nullptr, a.data(), b.data(), 3, 4, 5), Error);
  EXPECT_THROW(matmul_nn(c.data(), nullptr, b.data(), 3, 4, 5), Error);
  // The message names the problem.
  try {
    matmul_nn(c.data(), a.data(), b.data(), 3, 4, 5, false, {-1, -1, 3});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ldc=3"), std::string::npos) << e.what();
  }
}

// A Linear layer y = x W^T: matmul_nn and matmul_tn are its input and weight gradients.
// Checked against central differences of L = sum(dy * (x W^T)) in double.
TEST(MatmulTest, LinearLayerGradientsMatchFiniteDifferences) {
  const int64_t M = 4, N = 3, K = 5;
  const std::vector<float> x = test::random_normal(M * K, 7), w = test::random_normal(N * K, 8),
                           dy = test::random_normal(M * N, 9);
  auto loss = [&](const std::vector<double>& xd, const std::vector<double>& wd) {
    double l = 0;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double y = 0;
        for (int64_t q = 0; q < K; ++q) y += xd[i * K + q] * wd[j * K + q];
        l += dy[i * N + j] * y;
      }
    return l;
  };
  const std::vector<double> xd = test::to_double(x), wd = test::to_double(w);
  const std::vector<double> gx =
      test::finite_difference([&](std::vector<double>& v) { return loss(v, wd); }, xd);
  const std::vector<double> gw =
      test::finite_difference([&](std::vector<double>& v) { return loss(xd, v); }, wd);
  std::vector<float> dx(M * K), dw(N * K);
  matmul_nn(dx.data(), dy.data(), w.data(), M, K, N);  // dx[M,K] = dy[M,N] W[N,K]
  matmul_tn(dw.data(), dy.data(), x.data(), N, K, M);  // dW[N,K] = dy^T[N,M] x[M,K]
  // float GEMM error (gamma(N) resp. gamma(M) times |dy||W| <= 100 u) is far below kFdTol.
  EXPECT_TRUE(all_within(dx, gx, test::fd_tolerance(gx)));
  EXPECT_TRUE(all_within(dw, gw, test::fd_tolerance(gw)));
}

// ---- threading ---------------------------------------------------------------------------------

double cpu_seconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

int64_t process_threads() {
  int64_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    (void)entry;
    ++n;
  }
  return n;
}

// The OpenMP worker thread of a 2-thread team, identified by its CPU-time clock.
clockid_t worker_clock() {
  clockid_t clock{};
  std::atomic<int> found{0};
  parallel_ranges(2, [&](int64_t, int64_t) {
    if (team_index() == 1 && pthread_getcpuclockid(pthread_self(), &clock) == 0) found = 1;
  });
  EXPECT_EQ(found.load(), 1) << "no second OpenMP thread";
  return clock;
}

bool idle_threads_sleep() {  // spinning idle threads would burn CPU time by design
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  return !std::getenv("GOMP_SPINCOUNT") &&
         (!policy || std::string(policy) == "passive" || std::string(policy) == "PASSIVE");
}

// Outside a parallel region one product is split over the pool: the worker thread spends a
// good share of the CPU time the calling thread spends. (Not a timing test: CPU-time shares.)
TEST(MatmulTest, RunsOnThePoolOutsideParallelRegions) {
  threads_init(2);
  const clockid_t worker = worker_clock();
  const int64_t n = 768;
  std::vector<float> a = test::random_normal(n * n, 1), b = test::random_normal(n * n, 2), c(n * n);
  matmul_nt(c.data(), a.data(), b.data(), n, n, n);  // warm-up
  const double w0 = cpu_seconds(worker), m0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
  for (int rep = 0; rep < 6; ++rep) matmul_nt(c.data(), a.data(), b.data(), n, n, n);
  const double w1 = cpu_seconds(worker), m1 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
  // An even split gives a ratio near 1; a single-threaded GEMM leaves the worker asleep
  // (ratio near 0, plus a short spin before it sleeps).
  EXPECT_GT((w1 - w0) / (m1 - m0), 0.4)
      << "worker CPU " << (w1 - w0) << " s, caller CPU " << (m1 - m0) << " s";
  threads_init(0);
}

// Inside parallel_for each product runs on its calling thread: no nested team (the process keeps
// its thread count), and with one busy iteration the other pool thread stays idle.
TEST(MatmulTest, RunsOnCallingThreadInsideParallelFor) {
  threads_init(2);
  const clockid_t worker = worker_clock();
  const int64_t n = 512;
  std::vector<float> a = test::random_normal(n * n, 3), b = test::random_normal(n * n, 4);
  std::vector<float> c_outside(n * n), c_inside(2 * n * n);
  matmul_nn(c_outside.data(), a.data(), b.data(), n, n, n);
  const int64_t threads_before = process_threads();
  parallel_for(2, [&](int64_t i) {
    EXPECT_TRUE(in_parallel_region());
    for (int rep = 0; rep < 3; ++rep)
      matmul_nn(c_inside.data() + i * n * n, a.data(), b.data(), n, n, n);
  });
  EXPECT_EQ(process_threads(), threads_before) << "a GEMM inside parallel_for started threads";
  // Same values as outside up to the GEMM bound (the split may differ, so not bit for bit).
  std::vector<double> got(c_inside.begin(), c_inside.begin() + n * n);
  std::vector<double> ref(c_outside.begin(), c_outside.end()), tol(size_t(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double abs_sum = 0;
      for (int64_t q = 0; q < n; ++q) abs_sum += std::fabs(a[i * n + q] * b[q * n + j]);
      tol[i * n + j] = 2 * gamma(double(n)) * abs_sum;
    }
  EXPECT_TRUE(all_within(got, ref, tol));

  if (idle_threads_sleep()) {
    const double w0 = cpu_seconds(worker), m0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
    parallel_for(1, [&](int64_t) {  // iteration 0 on the calling thread, the worker waits
      for (int rep = 0; rep < 30; ++rep) matmul_nn(c_inside.data(), a.data(), b.data(), n, n, n);
    });
    const double w1 = cpu_seconds(worker), m1 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
    EXPECT_LT((w1 - w0) / (m1 - m0), 0.25)
        << "worker CPU " << (w1 - w0) << " s, caller CPU " << (m1 - m0) << " s";
  }
  threads_init(0);
}

// ---- PyTorch -----------------------------------------------------------------------------------

TEST(MatmulTest, MatchesPyTorch) {
  const int64_t shapes[][3] = {{7, 13, 5}, {1, 1, 1}, {33, 17, 65}};
  for (const auto& s : shapes) {
    const int64_t m = s[0], n = s[1], k = s[2];
    for (const char* layout : {"nn", "nt", "tn"}) {
      const std::string name = std::string("matmul_") + layout + "_" + std::to_string(m) + "x" +
                               std::to_string(n) + "x" + std::to_string(k);
      const bool ta = layout[0] == 't', tb = layout[1] == 't';
      const test::Golden a = test::load_golden(name + "_a"), b = test::load_golden(name + "_b"),
                         c0 = test::load_golden(name + "_c0"),
                         out = test::load_golden(name + "_out"),
                         out_acc = test::load_golden(name + "_out_acc");
      ASSERT_EQ(a.numel(), m * k);
      ASSERT_EQ(b.numel(), n * k);
      ASSERT_EQ(out.numel(), m * n);
      const Problem p = packed(m, n, k, ta, tb);
      std::vector<double> tol(m * n), tol_acc(m * n);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double abs_sum = 0;
          for (int64_t q = 0; q < k; ++q)
            abs_sum += std::fabs(a_at(p, a.f, i, q) * b_at(p, b.f, q, j));
          tol[i * n + j] = 2 * gamma(double(k + 1)) * abs_sum;
          tol_acc[i * n + j] = 2 * gamma(double(k + 1)) * (abs_sum + std::fabs(c0.f[i * n + j]));
        }
      std::vector<float> c(m * n);
      matmul(c.data(), a.f.data(), b.f.data(), m, n, k, ta, tb, false);
      EXPECT_TRUE(all_within(c, test::to_double(out.f), tol)) << name;
      c = c0.f;
      matmul(c.data(), a.f.data(), b.f.data(), m, n, k, ta, tb, true);
      EXPECT_TRUE(all_within(c, test::to_double(out_acc.f), tol_acc)) << name << " accumulate";
    }
  }
}

}  // namespace
}  // namespace infini
