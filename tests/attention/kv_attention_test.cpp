// Softmax attention over a KV cache (full, sliding, xl, bswa) against a naive double-precision
// implementation written here from spec §3: explicit loops over stream positions, an explicit
// visibility predicate per type, RoPE at absolute stream positions. Backward against central
// finite differences of that double implementation (for xl on a function that reads the previous
// segment's K/V from a frozen copy: the stop-gradient). Then streaming == one pass, the
// equivalences between types, and rebasing (a chunk 10^6 tokens into the stream).
//
// Tolerances. Forward: outputs are softmax-weighted sums over m <= 300 keys of O(1) values after
// d-term dot products and a rotation; fp32 errs by <= ~(m + d) u |terms| (u = 6e-8), so 2e-5 of
// the largest reference value is above the worst case and far below any wrong term (O(1e-1)).
// Backward: the same sums, one more level deep (dp, the softmax Jacobian, the inverse rotation):
// 5e-5. Finite differences in double with h = 1e-5 on O(1) inputs err by ~h^2 + 1e-16/h ~ 1e-10.
// Streaming vs one pass: two fp32 evaluations of the same sums split into different GEMM
// blocks: 1e-5.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "attention/kv_attention.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/random.h"
#include "kernels/rope.h"
#include "test_support.h"

namespace infini {
namespace {

using test::relative_error;

constexpr double kTheta = 10000.0;

struct Mechanism {
  const char* type;
  int64_t N = 0, W = 0, MB = 0;  // segment length, window, memory blocks
};

KvPolicy policy_of(const Mechanism& m) {
  return kv_policy(m.type, m.N, m.W, m.MB);
}

// Spec §3 as written: may the token at stream position q attend to the one at k?
bool visible(const Mechanism& m, int64_t q, int64_t k) {
  if (k > q) return false;
  const std::string type = m.type;
  if (type == "full") return true;
  if (type == "sliding") return k > q - m.W;
  if (type == "xl") return k / m.N >= q / m.N - 1;
  if (type == "bswa") return k / m.N >= q / m.N - m.MB;
  ADD_FAILURE() << "unknown type " << type;
  return false;
}
// Transformer-XL caches the previous segment's K/V with the gradient stopped.
bool stopped(const Mechanism& m, int64_t q, int64_t k) {
  return std::string(m.type) == "xl" && k / m.N < q / m.N;
}

// One chunk of B streams at stream `position`, with the cache of the rows before it.
struct Problem {
  Mechanism mech;
  int64_t B = 2, T = 0, H = 2, Hkv = 2, d = 8, position = 0;
  int64_t rows = 0, capacity = 0;
  std::vector<float> qkv;               // [B, T, (H + 2 Hkv) d]
  std::vector<float> cache_k, cache_v;  // [B, capacity, Hkv, d]

  int64_t width() const { return (H + 2 * Hkv) * d; }
  KvShape shape() const { return KvShape{B, T, H, Hkv, d, position}; }
  KvCache cache() { return KvCache{rows, capacity, cache_k.data(), cache_v.data()}; }
};

std::vector<float> random_vector(Rng& rng, int64_t n, double sd = 1.0) {
  std::vector<float> x(n);
  for (auto& e : x) e = float(sd * rng.normal());
  return x;
}

// A chunk of T tokens at `position`, its cache holding the rows the policy needs plus up to
// `extra` older ones (which the attention must ignore), random data, different for each stream.
Problem make_problem(Mechanism mech, int64_t T, int64_t H, int64_t Hkv, int64_t d, int64_t position,
                     int64_t extra = 0, uint64_t seed = 1) {
  Problem p;
  p.mech = mech;
  p.T = T;
  p.H = H;
  p.Hkv = Hkv;
  p.d = d;
  p.position = position;
  p.rows = std::min(position, kv_cache_rows_needed(policy_of(mech), position) + extra);
  p.capacity = p.rows + 3;
  Rng rng(seed);
  p.qkv = random_vector(rng, p.B * T * p.width());
  p.cache_k = random_vector(rng, p.B * p.capacity * Hkv * d);
  p.cache_v = random_vector(rng, p.B * p.capacity * Hkv * d);
  return p;
}

// ---- the naive double implementation ----------------------------------------------------------

void rope_naive(double* out, const double* x, int64_t d, int64_t position) {
  for (int64_t i = 0; i < d / 2; ++i) {
    const double angle = double(position) * std::pow(kTheta, -2.0 * double(i) / double(d));
    const double c = std::cos(angle), s = std::sin(angle);
    out[i] = x[i] * c - x[i + d / 2] * s;
    out[i + d / 2] = x[i + d / 2] * c + x[i] * s;
  }
}

// out[B, T, H*d]. The chunk's projections come from `live`, except the K/V that a query reads
// with the gradient stopped, which come from `frozen` (same values; finite differences perturb
// only `live`). Cached rows are constants read from the cache.
std::vector<double> naive_forward(const Problem& p, const std::vector<double>& live,
                                  const std::vector<double>& frozen) {
  const int64_t B = p.B, T = p.T, H = p.H, Hkv = p.Hkv, d = p.d, Wc = p.width(), G = H / Hkv;
  const int64_t oldest = p.position - p.rows;  // stream position of cache row 0
  if (oldest > 0) {
    EXPECT_FALSE(visible(p.mech, p.position, oldest - 1)) << "test set-up";
  }
  std::vector<double> out(B * T * H * d, 0.0), x(d), kc(p.rows * d), kl(T * d), kf(T * d), q(d),
      score(p.rows + T);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < Hkv; ++g) {
      // rotated keys at absolute stream positions: cached, live, frozen
      for (int64_t r = 0; r < p.rows; ++r) {
        for (int64_t c = 0; c < d; ++c) x[c] = p.cache_k[((b * p.capacity + r) * Hkv + g) * d + c];
        rope_naive(&kc[r * d], x.data(), d, oldest + r);
      }
      for (int64_t t = 0; t < T; ++t) {
        rope_naive(&kl[t * d], &live[(b * T + t) * Wc + (H + g) * d], d, p.position + t);
        rope_naive(&kf[t * d], &frozen[(b * T + t) * Wc + (H + g) * d], d, p.position + t);
      }
      auto key = [&](int64_t qp, int64_t kp) {
        if (kp < p.position) return &kc[(kp - oldest) * d];
        return stopped(p.mech, qp, kp) ? &kf[(kp - p.position) * d] : &kl[(kp - p.position) * d];
      };
      auto value = [&](int64_t qp, int64_t kp, int64_t c) {
        if (kp < p.position)
          return double(p.cache_v[((b * p.capacity + kp - oldest) * Hkv + g) * d + c]);
        const auto& src = stopped(p.mech, qp, kp) ? frozen : live;
        return src[(b * T + kp - p.position) * Wc + (H + Hkv + g) * d + c];
      };
      for (int64_t h = g * G; h < (g + 1) * G; ++h)
        for (int64_t t = 0; t < T; ++t) {
          const int64_t qp = p.position + t;
          rope_naive(q.data(), &live[(b * T + t) * Wc + h * d], d, qp);
          double mx = -INFINITY, sum = 0;
          for (int64_t kp = oldest; kp <= qp; ++kp) {
            if (!visible(p.mech, qp, kp)) continue;
            const double* k = key(qp, kp);
            double s = 0;
            for (int64_t c = 0; c < d; ++c) s += q[c] * k[c];
            score[kp - oldest] = s / std::sqrt(double(d));
            mx = std::max(mx, score[kp - oldest]);
          }
          for (int64_t kp = oldest; kp <= qp; ++kp)
            if (visible(p.mech, qp, kp))
              sum += (score[kp - oldest] = std::exp(score[kp - oldest] - mx));
          double* o = &out[((b * T + t) * H + h) * d];
          for (int64_t kp = oldest; kp <= qp; ++kp) {
            if (!visible(p.mech, qp, kp)) continue;
            const double w = score[kp - oldest] / sum;
            for (int64_t c = 0; c < d; ++c) o[c] += w * value(qp, kp, c);
          }
        }
    }
  return out;
}

std::vector<double> to_double(const std::vector<float>& x) {
  return {x.begin(), x.end()};
}

double loss_of(const std::vector<double>& out, const std::vector<float>& weights) {
  double loss = 0;
  for (size_t i = 0; i < out.size(); ++i) loss += out[i] * weights[i];
  return loss;
}

// Central differences of sum(out * weights) in double at `count` coordinates of the chunk's qkv
// (all of them when count is 0; else every stride-th), the stopped K/V held constant.
std::vector<std::pair<int64_t, double>> fd_gradient(const Problem& p,
                                                    const std::vector<float>& weights,
                                                    int64_t count = 0) {
  const double h = 1e-5;
  std::vector<double> live = to_double(p.qkv);
  const std::vector<double> frozen = live;
  const int64_t n = int64_t(live.size()), stride = count > 0 ? std::max<int64_t>(1, n / count) : 1;
  std::vector<std::pair<int64_t, double>> grad;
  for (int64_t i = (count > 0 ? 7 % stride : 0); i < n; i += stride) {
    const double x = live[i];
    live[i] = x + h;
    const double plus = loss_of(naive_forward(p, live, frozen), weights);
    live[i] = x - h;
    const double minus = loss_of(naive_forward(p, live, frozen), weights);
    live[i] = x;
    grad.push_back({i, (plus - minus) / (2 * h)});
  }
  return grad;
}

// ---- running the engine ------------------------------------------------------------------------

struct Tables {
  std::vector<float> cos, sin;
  RopeTable table(int64_t positions) const { return RopeTable{cos.data(), sin.data(), positions}; }
};
Tables rope_for(const KvPolicy& policy, const KvShape& shape) {
  const int64_t n = kv_rope_positions(policy, shape);
  Tables t{std::vector<float>(n * shape.head_dim / 2), std::vector<float>(n * shape.head_dim / 2)};
  rope_tables(t.cos.data(), t.sin.data(), n, shape.head_dim, kTheta, 0);
  return t;
}

// out [B, T, H d]; probs [B, H, kv_probs_floats] kept in `probs` when given.
std::vector<float> engine_forward(Problem& p, std::vector<float>* probs = nullptr) {
  const KvPolicy policy = policy_of(p.mech);
  const KvShape shape = p.shape();
  const Tables rope = rope_for(policy, shape);
  std::vector<float> out(p.B * p.T * p.H * p.d, NAN);
  std::vector<float> scratch(threads_count() * kv_forward_scratch_floats(policy, shape));
  if (probs) probs->assign(p.B * p.H * kv_probs_floats(policy, shape), NAN);
  kv_attention_forward(out.data(), probs ? probs->data() : nullptr, p.qkv.data(), p.cache(),
                       rope.table(kv_rope_positions(policy, shape)), policy, shape, scratch.data());
  return out;
}

// dqkv [B, T, (H + 2 Hkv) d] for loss = sum(out * weights).
std::vector<float> engine_backward(Problem& p, const std::vector<float>& weights) {
  const KvPolicy policy = policy_of(p.mech);
  const KvShape shape = p.shape();
  const Tables rope = rope_for(policy, shape);
  std::vector<float> probs;
  engine_forward(p, &probs);
  std::vector<float> dqkv(p.qkv.size(), NAN);
  std::vector<float> scratch(threads_count() * kv_backward_scratch_floats(policy, shape));
  kv_attention_backward(dqkv.data(), weights.data(), probs.data(), p.qkv.data(), p.cache(),
                        rope.table(kv_rope_positions(policy, shape)), policy, shape,
                        scratch.data());
  return dqkv;
}

std::vector<float> loss_weights(const Problem& p, uint64_t seed = 99) {
  Rng rng(seed);
  return random_vector(rng, p.B * p.T * p.H * p.d);
}

// ---- forward against the naive implementation ---------------------------------------------

struct ForwardCase {
  const char* name;
  Mechanism mech;
  int64_t T, H, Hkv, d, position, extra;
};

void PrintTo(const ForwardCase& c, std::ostream* os) {
  *os << c.name;
}

class KvForward : public ::testing::TestWithParam<ForwardCase> {};

TEST_P(KvForward, MatchesNaiveDouble) {
  const ForwardCase c = GetParam();
  Problem p = make_problem(c.mech, c.T, c.H, c.Hkv, c.d, c.position, c.extra);
  const std::vector<float> out = engine_forward(p);
  const std::vector<double> live = to_double(p.qkv);
  const std::vector<double> ref = naive_forward(p, live, live);
  EXPECT_LT(relative_error(out.data(), ref), 2e-5);
  // keeping the probabilities for backward changes nothing; each row of them sums to 1
  std::vector<float> probs;
  EXPECT_EQ(engine_forward(p, &probs), out);
  const KvChunkPlan plan = kv_chunk_plan(policy_of(p.mech), p.position, p.T);
  for (int64_t bh = 0; bh < p.B * p.H; ++bh)
    for (const KvQueryBlock& blk : plan.blocks)
      for (int64_t i = 0; i < blk.t1 - blk.t0; ++i) {
        double sum = 0;
        for (int64_t j = 0; j < blk.keys; ++j)
          sum += probs[bh * plan.probs_floats + blk.probs_offset + i * blk.keys + j];
        ASSERT_NEAR(sum, 1.0, 1e-5);
      }
  // the two streams hold different data and give different outputs
  const size_t half = out.size() / 2;
  EXPECT_NE(std::vector<float>(out.begin(), out.begin() + half),
            std::vector<float>(out.begin() + half, out.end()));
}

INSTANTIATE_TEST_SUITE_P(
    Types, KvForward,
    ::testing::Values(ForwardCase{"full_start_mha", {"full"}, 13, 2, 2, 8, 0, 0},
                      ForwardCase{"full_cache_gqa", {"full"}, 7, 4, 2, 16, 9, 0},
                      ForwardCase{"full_long_chunk", {"full"}, 150, 2, 1, 8, 5, 0},
                      ForwardCase{"sliding_start_gqa", {"sliding", 0, 5}, 13, 4, 2, 8, 0, 0},
                      ForwardCase{"sliding_cache_extra", {"sliding", 0, 5}, 6, 2, 2, 16, 11, 2},
                      ForwardCase{"sliding_long_chunk", {"sliding", 0, 70}, 150, 3, 1, 8, 100, 4},
                      ForwardCase{"xl_start", {"xl", 4}, 11, 2, 2, 8, 0, 0},
                      ForwardCase{"xl_mid_segment_gqa", {"xl", 4}, 9, 4, 2, 8, 6, 1},
                      ForwardCase{"xl_mid_segment_mqa", {"xl", 4}, 9, 3, 1, 16, 13, 0},
                      ForwardCase{"xl_long_chunk", {"xl", 50}, 130, 2, 2, 8, 75, 0},
                      ForwardCase{"bswa_start", {"bswa", 4, 0, 2}, 13, 2, 2, 8, 0, 0},
                      ForwardCase{"bswa_mid_block_gqa", {"bswa", 4, 0, 2}, 9, 4, 2, 16, 10, 3},
                      ForwardCase{"bswa_long_chunk", {"bswa", 37, 0, 2}, 150, 2, 1, 8, 20, 0}),
    [](const auto& info) { return std::string(info.param.name); });

// ---- backward against finite differences ----------------------------------------------------

struct BackwardCase {
  const char* name;
  Mechanism mech;
  int64_t T, H, Hkv, d, position, samples;  // samples: coordinates checked (0: all)
};

void PrintTo(const BackwardCase& c, std::ostream* os) {
  *os << c.name;
}

class KvBackward : public ::testing::TestWithParam<BackwardCase> {};

TEST_P(KvBackward, MatchesFiniteDifferences) {
  const BackwardCase c = GetParam();
  Problem p = make_problem(c.mech, c.T, c.H, c.Hkv, c.d, c.position);
  const std::vector<float> weights = loss_weights(p);
  const std::vector<float> dqkv = engine_backward(p, weights);
  const auto fd = fd_gradient(p, weights, c.samples);
  std::vector<double> ref;
  std::vector<float> got;
  for (const auto& [i, g] : fd) {
    ref.push_back(g);
    got.push_back(dqkv[i]);
  }
  EXPECT_LT(relative_error(got.data(), ref), 5e-5);
  if (c.samples == 0) {
    ASSERT_EQ(fd.size(), dqkv.size());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Types, KvBackward,
    ::testing::Values(BackwardCase{"full_mha", {"full"}, 11, 2, 2, 8, 0, 0},
                      BackwardCase{"full_gqa", {"full"}, 11, 4, 2, 8, 0, 0},
                      BackwardCase{"full_cache", {"full"}, 6, 2, 1, 8, 5, 0},
                      BackwardCase{"sliding_mha", {"sliding", 0, 4}, 11, 2, 2, 8, 0, 0},
                      BackwardCase{"sliding_gqa", {"sliding", 0, 5}, 11, 4, 2, 16, 0, 0},
                      BackwardCase{"sliding_cache", {"sliding", 0, 4}, 7, 2, 1, 8, 9, 0},
                      BackwardCase{"xl_mha", {"xl", 4}, 11, 2, 2, 8, 0, 0},
                      BackwardCase{"xl_gqa", {"xl", 4}, 12, 4, 2, 8, 0, 0},
                      BackwardCase{"xl_cache", {"xl", 4}, 9, 2, 1, 8, 6, 0},
                      BackwardCase{"xl_long", {"xl", 50}, 130, 2, 1, 8, 0, 60},
                      BackwardCase{"bswa_mha", {"bswa", 4, 0, 2}, 11, 2, 2, 8, 0, 0},
                      BackwardCase{"bswa_gqa", {"bswa", 3, 0, 1}, 11, 4, 2, 16, 0, 0},
                      BackwardCase{"bswa_cache", {"bswa", 4, 0, 2}, 9, 2, 1, 8, 10, 0},
                      BackwardCase{"bswa_long", {"bswa", 37, 0, 2}, 150, 2, 1, 8, 0, 60}),
    [](const auto& info) { return std::string(info.param.name); });

// The xl check above must not pass for a backward without the stop-gradient: finite
// differences of the attached function (frozen = live, perturbed together) differ from it.
TEST(KvBackwardXl, StopGradientIsObservable) {
  Problem p = make_problem({"xl", 4}, 12, 2, 2, 8, 0);
  const std::vector<float> weights = loss_weights(p);
  const std::vector<float> dqkv = engine_backward(p, weights);
  std::vector<double> live = to_double(p.qkv), attached(live.size());
  for (size_t i = 0; i < live.size(); ++i) {
    const double x = live[i];
    live[i] = x + 1e-5;
    const double plus = loss_of(naive_forward(p, live, live), weights);
    live[i] = x - 1e-5;
    const double minus = loss_of(naive_forward(p, live, live), weights);
    live[i] = x;
    attached[i] = (plus - minus) / 2e-5;
  }
  EXPECT_GT(relative_error(dqkv.data(), attached), 1e-2);
}

// ---- streaming equals one pass -----------------------------------------------------------------

// Feeds the chunk `p` (a whole stream from position 0) in pieces of `sizes` (cycled), advancing
// the cache in between; returns the concatenated outputs and leaves the final cache in `cache`.
std::vector<float> stream_in_pieces(const Problem& whole, const std::vector<int64_t>& sizes,
                                    Problem& state) {
  const KvPolicy policy = policy_of(whole.mech);
  const int64_t L = whole.T, Wc = whole.width(), Hd = whole.H * whole.d;
  const int64_t max_rows = kv_cache_max_rows(policy);
  state = whole;
  state.rows = 0;
  state.capacity = max_rows < 0 ? L : max_rows;
  state.cache_k.assign(whole.B * state.capacity * whole.Hkv * whole.d, NAN);
  state.cache_v = state.cache_k;
  std::vector<float> out(whole.B * L * Hd, NAN);
  for (int64_t start = 0, k = 0; start < L; ++k) {
    Problem chunk = state;
    chunk.position = start;
    chunk.T = std::min(sizes[k % sizes.size()], L - start);
    chunk.qkv.assign(whole.B * chunk.T * Wc, 0.0f);
    for (int64_t b = 0; b < whole.B; ++b)
      std::copy_n(&whole.qkv[(b * L + start) * Wc], chunk.T * Wc, &chunk.qkv[b * chunk.T * Wc]);
    const std::vector<float> piece = engine_forward(chunk);
    for (int64_t b = 0; b < whole.B; ++b)
      std::copy_n(&piece[b * chunk.T * Hd], chunk.T * Hd, &out[(b * L + start) * Hd]);
    KvCache cache = chunk.cache();
    kv_cache_advance(cache, chunk.qkv.data(), policy, chunk.shape());
    EXPECT_EQ(cache.rows, kv_cache_rows_needed(policy, start + chunk.T));
    state.cache_k = chunk.cache_k;
    state.cache_v = chunk.cache_v;
    state.rows = cache.rows;
    start += chunk.T;
  }
  return out;
}

void PrintTo(const Mechanism& m, std::ostream* os) {
  *os << m.type;
}

class KvStreaming : public ::testing::TestWithParam<Mechanism> {};

TEST_P(KvStreaming, PiecesEqualOnePass) {
  const Mechanism mech = GetParam();
  const int64_t N = 5, L = 41;
  Problem whole = make_problem(mech, L, 4, 2, 8, 0);
  const std::vector<float> one_pass = engine_forward(whole);
  const std::vector<double> reference(one_pass.begin(), one_pass.end());
  for (const std::vector<int64_t>& sizes :
       {std::vector<int64_t>{1}, {3}, {N}, {N + 5}, {2, 7, 1, 13}}) {
    Problem state;
    const std::vector<float> streamed = stream_in_pieces(whole, sizes, state);
    EXPECT_LT(relative_error(streamed.data(), reference), 1e-5) << "pieces of " << sizes[0];
    // the cache holds the raw K/V of the stream's last rows, bit for bit
    const int64_t row = whole.Hkv * whole.d, Wc = whole.width();
    for (int64_t b = 0; b < whole.B; ++b)
      for (int64_t r = 0; r < state.rows; ++r) {
        const int64_t t = L - state.rows + r;
        for (int64_t c = 0; c < row; ++c) {
          ASSERT_EQ(state.cache_k[(b * state.capacity + r) * row + c],
                    whole.qkv[(b * L + t) * Wc + whole.H * whole.d + c]);
          ASSERT_EQ(state.cache_v[(b * state.capacity + r) * row + c],
                    whole.qkv[(b * L + t) * Wc + (whole.H + whole.Hkv) * whole.d + c]);
        }
      }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, KvStreaming,
                         ::testing::Values(Mechanism{"full"}, Mechanism{"sliding", 0, 6},
                                           Mechanism{"xl", 5}, Mechanism{"bswa", 5, 0, 2}),
                         [](const auto& info) { return std::string(info.param.type); });

// ---- equivalences between types ----------------------------------------------------------------

Problem with_mechanism(const Problem& p, Mechanism m) {
  Problem q = p;
  q.mech = m;
  return q;
}

TEST(KvEquivalence, SlidingCoveringTheStreamIsFull) {
  Problem full = make_problem({"full"}, 90, 4, 2, 8, 0);
  Problem sliding = with_mechanism(full, {"sliding", 0, 90});
  EXPECT_EQ(engine_forward(sliding), engine_forward(full));  // the same kernel calls: bit-exact
  const std::vector<float> weights = loss_weights(full);
  EXPECT_EQ(engine_backward(sliding, weights), engine_backward(full, weights));
}

TEST(KvEquivalence, BswaCoveringTheStreamIsFull) {
  Problem full = make_problem({"full"}, 90, 4, 2, 8, 0);
  Problem bswa = with_mechanism(full, {"bswa", 8, 0, 12});
  const std::vector<float> out = engine_forward(full);
  EXPECT_LT(relative_error(engine_forward(bswa).data(), {out.begin(), out.end()}), 1e-5);
  const std::vector<float> weights = loss_weights(full);
  const std::vector<float> grad = engine_backward(full, weights);
  EXPECT_LT(relative_error(engine_backward(bswa, weights).data(), {grad.begin(), grad.end()}),
            1e-5);
}

TEST(KvEquivalence, XlForwardIsBswaWithOneBlockButNotItsGradient) {
  Problem xl = make_problem({"xl", 6}, 40, 4, 2, 8, 0);
  Problem bswa = with_mechanism(xl, {"bswa", 6, 0, 1});
  EXPECT_EQ(engine_forward(xl), engine_forward(bswa));
  const std::vector<float> weights = loss_weights(xl);
  const std::vector<float> dxl = engine_backward(xl, weights),
                           dbswa = engine_backward(bswa, weights);
  // the stop-gradient touches only K/V: the queries' gradients agree
  EXPECT_GT(relative_error(dxl.data(), {dbswa.begin(), dbswa.end()}), 1e-2);
  const int64_t Wc = xl.width(), Hd = xl.H * xl.d;
  std::vector<double> q_bswa;
  std::vector<float> q_xl;
  for (int64_t r = 0; r < xl.B * xl.T; ++r)
    for (int64_t c = 0; c < Hd; ++c) {
      q_bswa.push_back(dbswa[r * Wc + c]);
      q_xl.push_back(dxl[r * Wc + c]);
    }
  EXPECT_LT(relative_error(q_xl.data(), q_bswa), 1e-6);
}

// ---- rebasing: exact at a million tokens ----------------------------------------------------

class KvRebasing : public ::testing::TestWithParam<Mechanism> {};

// The same recent context and chunk near the stream's start and 10^6 tokens later (shifted by a
// whole number of segments): the windowed types see identical key buffers and rebased positions,
// so the outputs are identical bit for bit; both match the naive double at absolute positions.
TEST_P(KvRebasing, SameRecentContextSameOutput) {
  const Mechanism mech = GetParam();
  const int64_t near = 23, shift = (1000000 / 8 + 1) * 8;  // a multiple of every N used here
  Problem a = make_problem(mech, 9, 4, 2, 8, near);
  Problem b = a;
  b.position = near + shift;
  ASSERT_EQ(kv_cache_rows_needed(policy_of(mech), b.position), a.rows);
  const std::vector<float> out_a = engine_forward(a), out_b = engine_forward(b);
  EXPECT_EQ(out_a, out_b);
  const std::vector<double> live = to_double(b.qkv);
  EXPECT_LT(relative_error(out_b.data(), naive_forward(b, live, live)), 2e-5);
}

INSTANTIATE_TEST_SUITE_P(Types, KvRebasing,
                         ::testing::Values(Mechanism{"sliding", 0, 7}, Mechanism{"xl", 8},
                                           Mechanism{"bswa", 4, 0, 3}),
                         [](const auto& info) { return std::string(info.param.type); });

// full keeps every row: at stream position 10^6 its key buffer starts at position 0, so the
// angles are the stream's own. Old rows have K = V = 0 (score 0); recent rows and the chunk have
// entries of sd 4.5, i.e. scores of sd 20, so the best of them (~40) outweighs the 10^6 zeros
// (e^-40 10^6 ~ 4e-12) and the output is decided by angle differences at ~10^6: a float angle
// (error ~0.06 rad there) would move the scores by units. Tolerance: the fp32 scores err by
// ~u sum |q_c k_c| ~ 1e-5, which exp turns into ~1e-5 relative.
TEST(KvRebasingFull, ExactAtAMillionTokens) {
  const int64_t position = 1000000, recent = 24;
  Problem p = make_problem({"full"}, 4, 2, 1, 8, 0);
  p.B = 1;
  p.position = position;
  p.rows = p.capacity = position;
  Rng rng(5);
  p.qkv = random_vector(rng, p.T * p.width(), 4.5);
  p.cache_k.assign(p.capacity * p.d, 0.0f);
  p.cache_v.assign(p.capacity * p.d, 0.0f);
  for (int64_t r = position - recent; r < position; ++r)
    for (int64_t c = 0; c < p.d; ++c) {
      p.cache_k[r * p.d + c] = float(4.5 * rng.normal());
      p.cache_v[r * p.d + c] = float(rng.normal());
    }
  const std::vector<float> out = engine_forward(p);
  const std::vector<double> live = to_double(p.qkv);
  EXPECT_LT(relative_error(out.data(), naive_forward(p, live, live)), 1e-4);
}

// ---- cache sizes and policy errors -------------------------------------------------------------

TEST(KvCacheRows, FollowTheSpec) {
  const KvPolicy full = kv_policy("full", 8, 0, 0), sliding = kv_policy("sliding", 8, 5, 0),
                 xl = kv_policy("xl", 8, 0, 0), bswa = kv_policy("bswa", 8, 0, 3);
  for (int64_t k = 0; k < 6; ++k) {
    const int64_t boundary = 8 * k;  // between segments: spec §3's state
    EXPECT_EQ(kv_cache_rows_needed(full, boundary), boundary);
    EXPECT_EQ(kv_cache_rows_needed(sliding, boundary), std::min<int64_t>(boundary, 4));
    EXPECT_EQ(kv_cache_rows_needed(xl, boundary), std::min<int64_t>(boundary, 8));
    EXPECT_EQ(kv_cache_rows_needed(bswa, boundary), std::min<int64_t>(boundary, 24));
    EXPECT_EQ(kv_cache_rows_needed(xl, boundary + 3), std::min<int64_t>(boundary, 8) + 3);
  }
  EXPECT_EQ(kv_cache_max_rows(full), -1);
  EXPECT_EQ(kv_cache_max_rows(sliding), 4);
  EXPECT_EQ(kv_cache_max_rows(xl), 15);
  EXPECT_EQ(kv_cache_max_rows(bswa), 31);
  EXPECT_STREQ(kv_policy_name(bswa), "bswa");
}

TEST(KvCacheRows, AdvanceRefusesASmallCache) {
  Problem p = make_problem({"full"}, 5, 2, 2, 8, 4);  // 4 rows, capacity 7; 9 needed after
  ASSERT_EQ(p.capacity, 7);
  KvCache cache = p.cache();
  const std::string error =
      test::error_of([&] { kv_cache_advance(cache, p.qkv.data(), policy_of(p.mech), p.shape()); });
  EXPECT_NE(error.find("needs 9 rows"), std::string::npos) << error;
  EXPECT_NE(error.find("capacity is 7"), std::string::npos) << error;
  EXPECT_EQ(cache.rows, 4);
}

TEST(KvPolicyErrors, NameTheField) {
  EXPECT_NE(test::error_of([] { kv_policy("sliding", 8, 0, 0); }).find("window"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { kv_policy("bswa", 8, 0, 0); }).find("memory_blocks"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { kv_policy("infini", 8, 0, 0); }).find("infini"), std::string::npos);
}

TEST(KvForwardErrors, CacheTooShort) {
  Problem p = make_problem({"xl", 4}, 3, 2, 2, 8, 6);  // needs 6 rows
  p.rows = 5;
  EXPECT_NE(test::error_of([&] { engine_forward(p); }).find("needs its last 6"), std::string::npos);
}

}  // namespace
}  // namespace infini
