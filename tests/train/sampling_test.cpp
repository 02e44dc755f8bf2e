// The end-of-training sampler (src/infer/sampling.h) is exact: with temperature 0 every token it
// picks is the argmax of the logits a single forward pass over the whole text gives at that
// position, across segment boundaries (where the memory takes over) and for prompts longer than
// a segment. Sampling with a temperature is repeatable for a seed.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace infini
