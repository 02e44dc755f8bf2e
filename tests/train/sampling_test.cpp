// The sampler (src/infer/sampling.h). The end-of-training sample is exact: with temperature 0
// every token it picks is the argmax of the logits a single forward pass over the whole text
// gives at that position, across segment boundaries (where the memory takes over) and for prompts
// longer than a segment. Sampling with a temperature is repeatable for a seed. top-k and top-p
// keep exactly the tokens they should, and draw them with the renormalised probabilities
// (frequencies over 40,000 draws within 5 binomial standard deviations).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "infer/sampling.h"
#include "model/checkpoint.h"
#include "train_test_support.h"

namespace infini {
namespace {

class Sampling : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = test::scratch_dir("sampling");
    // the reference's random model has O(1) logits, so the argmax is well separated
    test::run_reference("make-case --out " + dir +
                        " --seed 5 --batch 1 --seq-len 4 --vocab 256 "
                        "--hidden 32 --layers 2 --heads 4 --kv-heads 2 --head-dim 8 --ffn 48 "
                        "--segment 8 --update delta");
  }
  static std::string dir;
};
std::string Sampling::dir;

// Argmax of every row of one forward pass over `tokens` (batch 1).
std::vector<int32_t> argmax_rows(const Model& model, const std::vector<int32_t>& tokens) {
  const int64_t T = int64_t(tokens.size()), V = model.config.vocab_size;
  Activations act = activations_create(model.config, 1, T, false);
  StreamState state = stream_state_create(model.config, 1);
  model_forward(model, state, act, tokens.data(), T);
  std::vector<int32_t> best(T);
  for (int64_t t = 0; t < T; ++t) {
    const float* row = act.logits + t * V;
    best[t] = int32_t(std::max_element(row, row + V) - row);
  }
  return best;
}

TEST_F(Sampling, GreedyEqualsArgmaxOfOneForwardPass) {
  const Model model = model_load(dir);
  for (const int64_t prompt_length : {1, 5, 8, 19}) {  // segment 8: shorter, equal, longer
    std::vector<int32_t> tokens(test::text_tokens(prompt_length, 7));
    sample_tokens(model, tokens, 30, 0.0f, 1);  // crosses 3-4 segment boundaries
    ASSERT_EQ(tokens.size(), size_t(prompt_length + 30));
    const std::vector<int32_t> best = argmax_rows(model, tokens);
    for (size_t t = size_t(prompt_length); t < tokens.size(); ++t)
      EXPECT_EQ(tokens[t], best[t - 1]) << "prompt " << prompt_length << ", position " << t;
  }
}

TEST_F(Sampling, TemperatureSamplingIsRepeatableAndUsesTheSeed) {
  const Model model = model_load(dir);
  const auto tokenizer = byte_tokenizer();
  const std::string a = sample_text(model, *tokenizer, "the memory ", 40, 1.0f, 3);
  const std::string b = sample_text(model, *tokenizer, "the memory ", 40, 1.0f, 3);
  const std::string c = sample_text(model, *tokenizer, "the memory ", 40, 1.0f, 4);
  EXPECT_EQ(a.size(), 40u);  // bytes: one per token, the prompt not included
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_THROW(sample_text(model, *tokenizer, "", 5, 1.0f, 1), Error);
}

// Draws `n` tokens from `logits` and returns each id's frequency.
std::vector<double> frequencies(const std::vector<float>& logits, SamplingOptions o, int64_t n) {
  Sampler s = sampler_create(o, int64_t(logits.size()));
  std::vector<int64_t> count(logits.size(), 0);
  for (int64_t i = 0; i < n; ++i) ++count[size_t(sampler_pick(s, logits.data()))];
  std::vector<double> f(logits.size());
  for (size_t v = 0; v < f.size(); ++v) f[v] = double(count[v]) / double(n);
  return f;
}

// p_v ∝ exp(logit_v / temperature) over `kept`, 0 elsewhere.
std::vector<double> expected(const std::vector<float>& logits, double temperature,
                             const std::vector<int>& kept) {
  std::vector<double> p(logits.size(), 0.0);
  double total = 0;
  for (int v : kept) total += p[size_t(v)] = std::exp(double(logits[size_t(v)]) / temperature);
  for (double& x : p) x /= total;
  return p;
}

void expect_frequencies(const std::vector<double>& f, const std::vector<double>& p, int64_t n,
                        const std::string& what) {
  for (size_t v = 0; v < p.size(); ++v) {
    if (p[v] == 0) {
      EXPECT_EQ(f[v], 0.0) << what << ": id " << v << " should never be drawn";
    } else {
      const double sd = std::sqrt(p[v] * (1 - p[v]) / double(n));
      EXPECT_NEAR(f[v], p[v], 5 * sd) << what << ": id " << v;
    }
  }
}

TEST(Sampler, GreedyPicksTheArgmaxWithoutDrawing) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.5f};
  Sampler s = sampler_create({0.0, 0, 1.0, 9}, 5);
  const auto before = s.rng.state();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(sampler_pick(s, logits.data()), 1);  // ties: lower id
  EXPECT_EQ(s.rng.state(), before);
  // top_k = 1 or a tiny top_p leave only the most likely token, whatever the temperature
  Sampler k1 = sampler_create({5.0, 1, 1.0, 9}, 5), p0 = sampler_create({5.0, 0, 1e-9, 9}, 5);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(sampler_pick(k1, logits.data()), 1);
    EXPECT_EQ(sampler_pick(p0, logits.data()), 1);
  }
}

TEST(Sampler, TopKAndTopPDrawTheRenormalisedProbabilities) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f, 0.4f, -1.0f, 3.0f};
  const int64_t n = 40000;
  const double t = 0.8;
  expect_frequencies(frequencies(logits, {t, 0, 1.0, 1}, n),
                     expected(logits, t, {0, 1, 2, 3, 4, 5}), n, "no cut");
  expect_frequencies(frequencies(logits, {t, 3, 1.0, 2}, n), expected(logits, t, {5, 0, 1}), n,
                     "top-k 3");
  // top-p: the smallest most-likely prefix whose probability reaches p
  const std::vector<double> all = expected(logits, t, {0, 1, 2, 3, 4, 5});
  const std::vector<int> by_probability = {5, 0, 1, 2, 3, 4};
  for (const double top_p : {0.5, 0.8, 0.95}) {
    std::vector<int> kept;
    double mass = 0;
    for (int v : by_probability)
      if (kept.empty() || mass < top_p) kept.push_back(v), mass += all[size_t(v)];
    expect_frequencies(frequencies(logits, {t, 0, top_p, 3}, n), expected(logits, t, kept), n,
                       str("top-p ", top_p));
  }
  // both: top-k first, then top-p within what is left (renormalised)
  const std::vector<double> k4 = expected(logits, t, {5, 0, 1, 2});
  ASSERT_LT(k4[5] + k4[0], 0.95);
  ASSERT_GT(k4[5] + k4[0] + k4[1], 0.95);
  expect_frequencies(frequencies(logits, {t, 4, 0.95, 4}, n), expected(logits, t, {5, 0, 1}), n,
                     "top-k 4, top-p 0.95");
  // equal logits: top-k keeps the lower ids
  const std::vector<float> tied = {1.0f, 1.0f, 1.0f, 0.0f};
  expect_frequencies(frequencies(tied, {1.0, 2, 1.0, 5}, n), expected(tied, 1.0, {0, 1}), n,
                     "ties");
}

TEST(Sampler, RefusesBadOptions) {
  EXPECT_NE(test::error_of([] {
              sampler_create({-0.5, 0, 1.0, 0}, 4);
            }).find("--temperature"),
            std::string::npos);
  EXPECT_NE(test::error_of([] {
              sampler_create({1.0, -1, 1.0, 0}, 4);
            }).find("--top-k"),
            std::string::npos);
  EXPECT_NE(test::error_of([] {
              sampler_create({1.0, 0, 0.0, 0}, 4);
            }).find("--top-p"),
            std::string::npos);
  EXPECT_NE(test::error_of([] {
              sampler_create({1.0, 0, 1.01, 0}, 4);
            }).find("--top-p"),
            std::string::npos);
}

}  // namespace
}  // namespace infini
