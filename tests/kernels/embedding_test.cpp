// embedding (src/kernels/embedding.h): the gather is exact; the scatter-add is checked against a
// double reference, against the same float additions done serially in row order (bit for bit),
// for independence of the thread count, with finite differences and with PyTorch.
//
// Tolerance of the backward: each table entry receives its old value plus n_id float additions
// (n_id = rows with that id), a sum of n_id + 1 terms: gamma(n_id) (|dtable0| + sum |dout|).
#include <cmath>
#include <map>

#include "core/error.h"
#include "core/parallel.h"
#include "kernel_test_util.h"
#include "kernels/embedding.h"

namespace infini {
namespace {

using test::all_within;
using test::gamma;

std::vector<int32_t> ids_with_repeats(int64_t R, int64_t V, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(R);
  for (int32_t& x : ids) x = int32_t(rng() % uint64_t(V));
  for (int64_t r = 0; r < std::min<int64_t>(R, 5); ++r) ids[r] = int32_t(V / 2);  // repeated
  return ids;
}

struct EmbRef {
  std::vector<double> dtable, tol;
  std::vector<float> serial;  // the same float additions, one thread, row order
};

EmbRef embedding_reference(const std::vector<float>& dtable0, const std::vector<float>& dout,
                           const std::vector<int32_t>& ids, int64_t R, int64_t D, int64_t V,
                           double k_extra = 0) {
  EmbRef ref{test::to_double(dtable0), std::vector<double>(V * D), dtable0};
  std::vector<double> mag(V * D), count(V, 0.0);
  for (int64_t i = 0; i < V * D; ++i) mag[i] = std::fabs(dtable0[i]);
  for (int64_t r = 0; r < R; ++r) {
    count[ids[r]] += 1;
    for (int64_t c = 0; c < D; ++c) {
      ref.dtable[ids[r] * D + c] += dout[r * D + c];
      ref.serial[ids[r] * D + c] += dout[r * D + c];
      mag[ids[r] * D + c] += std::fabs(dout[r * D + c]);
    }
  }
  for (int64_t v = 0; v < V; ++v)
    for (int64_t c = 0; c < D; ++c) ref.tol[v * D + c] = gamma(count[v] + k_extra) * mag[v * D + c];
  return ref;
}

TEST(EmbeddingTest, ForwardGathersRowsExactly) {
  const int64_t V = 11, D = 9, R = 20;
  const std::vector<float> table = test::random_normal(V * D, 1);
  const std::vector<int32_t> ids = ids_with_repeats(R, V, 2);
  std::vector<float> out(R * D);
  embedding_forward(out.data(), table.data(), ids.data(), R, D);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < D; ++c)
      ASSERT_EQ(out[r * D + c], table[ids[r] * D + c]) << r << "," << c;
}

TEST(EmbeddingTest, BackwardMatchesReferenceBitwiseAndWithinBound) {
  for (auto [V, D, R] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                         {11, 9, 20},
                         {13, 77, 600},
                         {256, 256, 2048}}) {
    const std::vector<int32_t> ids = ids_with_repeats(R, V, uint64_t(V * R));
    const std::vector<float> dout = test::random_normal(R * D, 3);
    std::vector<float> dtable = test::random_normal(V * D, 4);
    const EmbRef ref = embedding_reference(dtable, dout, ids, R, D, V);
    embedding_backward(dtable.data(), dout.data(), ids.data(), R, D, V);
    EXPECT_TRUE(test::bitwise_equal(dtable, ref.serial)) << V << "x" << D << " rows " << R;
    EXPECT_TRUE(all_within(dtable, ref.dtable, ref.tol)) << V << "x" << D << " rows " << R;
  }
}

// Rows sharing an id are added in row order whatever the thread count: 1, 2 and 3 threads give
// the same bits (large enough for the parallel path, with heavily repeated ids).
TEST(EmbeddingTest, BackwardIndependentOfThreadCount) {
  const int64_t V = 7, D = 300, R = 1000;
  const std::vector<int32_t> ids = ids_with_repeats(R, V, 9);
  const std::vector<float> dout = test::random_normal(R * D, 10, 100.0f);
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 3}) {
    threads_init(threads);
    std::vector<float> dtable(V * D, 0.5f);
    embedding_backward(dtable.data(), dout.data(), ids.data(), R, D, V);
    results.push_back(dtable);
  }
  threads_init(0);
  EXPECT_TRUE(test::bitwise_equal(results[0], results[1]));
  EXPECT_TRUE(test::bitwise_equal(results[0], results[2]));
}

TEST(EmbeddingTest, RejectsIdsOutsideTheVocabulary) {
  std::vector<float> table(20), out(10);
  const std::vector<int32_t> negative = {1, -1}, too_big = {0, 4};
  EXPECT_THROW(embedding_forward(out.data(), table.data(), negative.data(), 2, 5), Error);
  EXPECT_THROW(embedding_backward(table.data(), out.data(), too_big.data(), 2, 5, 4), Error);
  EXPECT_THROW(embedding_backward(table.data(), out.data(), negative.data(), 2, 5, 4), Error);
}

// L = sum(dout * table[ids]) is linear in the table; central differences in double recover the
// scatter-add exactly up to rounding.
TEST(EmbeddingTest, BackwardMatchesFiniteDifferences) {
  const int64_t V = 5, D = 3, R = 8;
  const std::vector<int32_t> ids = ids_with_repeats(R, V, 61);
  const std::vector<float> dout = test::random_normal(R * D, 62);
  auto loss = [&](std::vector<double>& table) {
    double l = 0;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < D; ++c) l += dout[r * D + c] * table[ids[r] * D + c];
    return l;
  };
  const std::vector<double> g =
      test::finite_difference(loss, test::to_double(test::random_normal(V * D, 63)));
  std::vector<float> dtable(V * D, 0.0f);
  embedding_backward(dtable.data(), dout.data(), ids.data(), R, D, V);
  EXPECT_TRUE(all_within(dtable, g, test::fd_tolerance(g)));
}

// PyTorch's embedding backward may add rows sharing an id in another order: both sides are
// within gamma(n_id) of the exact sum, so within twice that of each other.
TEST(EmbeddingTest, MatchesPyTorch) {
  const test::Golden table = test::load_golden("embedding_11x9_table"),
                     ids = test::load_golden("embedding_11x9_ids"),
                     dout = test::load_golden("embedding_11x9_dout"),
                     out_t = test::load_golden("embedding_11x9_out"),
                     dtable_t = test::load_golden("embedding_11x9_dtable");
  const int64_t V = table.shape.at(0), D = table.shape.at(1), R = ids.numel();
  std::vector<float> out(R * D), dtable(V * D, 0.0f);
  embedding_forward(out.data(), table.f.data(), ids.i.data(), R, D);
  EXPECT_TRUE(test::bitwise_equal(out, out_t.f));
  embedding_backward(dtable.data(), dout.f.data(), ids.i.data(), R, D, V);
  EmbRef ref = embedding_reference(std::vector<float>(V * D, 0.0f), dout.f, ids.i, R, D, V);
  for (double& t : ref.tol) t *= 2;
  EXPECT_TRUE(all_within(dtable, test::to_double(dtable_t.f), ref.tol));
}

}  // namespace
}  // namespace infini
