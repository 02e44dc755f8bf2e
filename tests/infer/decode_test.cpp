// Streaming decode (spec §2, streaming rule): a stream fed in chunks of any sizes, one token at a
// time included, gives the logits of one forward pass over the whole stream and those of the
// float64 PyTorch reference, across several segment boundaries, for linear and delta memory
// updates, MHA and GQA. The model is the reference's random model (segment 8, 2 layers, gates
// spread over [-3, 3]); the stream has 45 tokens: 5 whole segments and 5 tokens of a sixth.
//
// Tolerances:
//   vs the reference (float64): 1e-4 relative to the largest |logit|, as in
//     tests/model/model_reference_test.cpp (the fp32 rounding of the engine through 2 layers and
//     a memory recurrence over 5 segments).
//   vs one pass (both fp32): the two compute the same expressions; only the summation order
//     inside GEMMs of different shapes differs (a 1-row product against a 45-row one, attention
//     over the segment's cached rows assembled into one block). Reordering a sum of K fp32 terms
//     moves it by at most ~K u sum|terms| (u = 6e-8); K <= 48 here and errors pass through 2
//     layers and the memory's normalisation, which amplifies them by the ratio |M s(q)| / (s(q).z)
//     of O(1-10): 1e-5 relative to the largest |logit| bounds that with margin, while a wrong
//     position, a missing cached row or a memory written twice changes logits by O(1) relative.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "infer/decoder.h"
#include "model/checkpoint.h"
#include "test_support.h"

namespace infini {
namespace {

constexpr int64_t kTokens = 45;  // segment 8: 5 segments and 5 rows of a sixth

double max_relative_difference(const float* a, const float* b, int64_t n) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < n; ++i) {
    diff = std::max(diff, double(std::fabs(a[i] - b[i])));
    scale = std::max(scale, double(std::fabs(b[i])));
  }
  return diff / scale;
}

struct Case {
  std::string name, args;
};

class StreamingDecode : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const Case& c = GetParam();
    dir = test::scratch_dir("decode_" + c.name);
    ASSERT_NO_FATAL_FAILURE(test::run_reference("make-case --out " + dir + " --seed 21 --batch 2 " +
                                                "--seq-len " + std::to_string(kTokens) +
                                                " --vocab 256 --segment 8 " + c.args));
    model = std::make_unique<Model>(model_load(dir));
    const SafetensorsFile file = SafetensorsFile::open(dir + "/tokens.safetensors");
    std::vector<int32_t> all(2 * (kTokens + 1));
    read_i32(file.require("tokens", {2, kTokens + 1}), all.data(), int64_t(all.size()), "tokens");
    for (int64_t b = 0; b < 2; ++b)
      tokens.insert(tokens.end(), all.begin() + b * (kTokens + 1),
                    all.begin() + b * (kTokens + 1) + kTokens);  // [2, T]
    reference = test::read_f64(SafetensorsFile::open(dir + "/reference.safetensors"), "logits");
  }

  // Logits [B, T, V] of the streams fed in chunks of the given sizes (cycled).
  std::vector<float> chunked(int64_t B, const std::vector<int64_t>& sizes) const {
    const int64_t V = model->config.vocab_size,
                  largest = *std::max_element(sizes.begin(), sizes.end());
    StreamState state = stream_state_create(model->config, B);
    Activations act = activations_create(model->config, B, largest, false);
    std::vector<float> logits(B * kTokens * V);
    std::vector<int32_t> piece(B * largest);
    for (int64_t t0 = 0, i = 0; t0 < kTokens; ++i) {
      const int64_t n = std::min(sizes[i % sizes.size()], kTokens - t0);
      for (int64_t b = 0; b < B; ++b)
        std::copy_n(tokens.begin() + b * kTokens + t0, n, piece.begin() + b * n);
      model_forward(*model, state, act, piece.data(), n);
      EXPECT_EQ(state.position, t0 + n);
      for (const LayerState& l : state.layers) EXPECT_EQ(l.cache.rows, (t0 + n) % 8);
      for (int64_t b = 0; b < B; ++b)
        std::copy_n(act.logits + b * n * V, n * V, logits.begin() + (b * kTokens + t0) * V);
      t0 += n;
    }
    return logits;
  }

  void chunks_of_any_size() const;
  void token_by_token_after_a_prompt() const;
  void copied_state_continues_like_the_original() const;

  std::string dir;
  std::unique_ptr<Model> model;
  std::vector<int32_t> tokens;    // [2, T]
  std::vector<double> reference;  // [2, T, V]
};

// One test per case: the reference case is made once per test process.
TEST_P(StreamingDecode, ChunksAndTokenByTokenEqualOnePassAndReference) {
  {
    SCOPED_TRACE("chunks of any size");
    chunks_of_any_size();
  }
  {
    SCOPED_TRACE("token by token after a prompt");
    token_by_token_after_a_prompt();
  }
  {
    SCOPED_TRACE("a copied state continues like the original");
    copied_state_continues_like_the_original();
  }
}

void StreamingDecode::chunks_of_any_size() const {
  const int64_t V = model->config.vocab_size;
  const std::vector<float> one_pass = chunked(2, {kTokens});
  EXPECT_LT(test::relative_error(one_pass.data(), reference), 1e-4) << "one pass vs reference";
  for (const std::vector<int64_t>& sizes :
       std::vector<std::vector<int64_t>>{{1}, {3}, {13}, {5, 1, 13, 2, 7}, {8, 3, 16}}) {
    const std::vector<float> logits = chunked(2, sizes);
    std::string label = "chunks";
    for (int64_t s : sizes) label += str(" ", s);
    const double diff = max_relative_difference(logits.data(), one_pass.data(), 2 * kTokens * V);
    std::printf("%s: %.3g relative to one pass\n", label.c_str(), diff);
    EXPECT_LT(diff, 1e-5) << label;
    EXPECT_LT(test::relative_error(logits.data(), reference), 1e-4) << label << " vs reference";
  }
}

void StreamingDecode::token_by_token_after_a_prompt() const {
  const int64_t V = model->config.vocab_size;
  const std::vector<float> one_pass = chunked(1, {kTokens});
  const std::vector<double> ref(reference.begin(), reference.begin() + kTokens * V);
  for (const int64_t prompt : {1, 11, 16}) {  // inside, across and at segment boundaries
    Decoder decoder = decoder_create(*model, 16);
    decoder_feed(decoder, tokens.data(), prompt);
    std::vector<float> logits(kTokens * V);
    std::copy(decoder.logits.begin(), decoder.logits.end(), logits.begin() + (prompt - 1) * V);
    for (int64_t t = prompt; t < kTokens; ++t) {
      decoder_step(decoder, tokens[t]);
      ASSERT_LE(decoder.state.layers[0].cache.rows, 7);
      std::copy(decoder.logits.begin(), decoder.logits.end(), logits.begin() + t * V);
    }
    EXPECT_EQ(decoder.state.position, kTokens);
    const int64_t first = (prompt - 1) * V, n = (kTokens - prompt + 1) * V;
    const double diff = max_relative_difference(logits.data() + first, one_pass.data() + first, n);
    std::printf("prompt %lld then one token at a time: %.3g relative to one pass\n",
                (long long)prompt, diff);
    EXPECT_LT(diff, 1e-5) << "prompt " << prompt;
    EXPECT_LT(test::relative_error(logits.data() + first,
                                   std::vector<double>(ref.begin() + first, ref.end())),
              1e-4)
        << "prompt " << prompt << " vs reference";
  }
}

void StreamingDecode::copied_state_continues_like_the_original() const {
  // stream_state_copy carries memories, cache rows and position: a copy taken mid-segment
  // continues bit for bit like the stream it was copied from
  const int64_t V = model->config.vocab_size;
  StreamState a = stream_state_create(model->config, 1), b = stream_state_create(model->config, 1);
  Activations act = activations_create(model->config, 1, kTokens, false);
  model_forward(*model, a, act, tokens.data(), 19);
  stream_state_copy(b, a);
  EXPECT_EQ(b.position, 19);
  EXPECT_EQ(b.layers[1].cache.rows, 3);
  model_forward(*model, a, act, tokens.data() + 19, kTokens - 19);
  const std::vector<float> from_a(act.logits, act.logits + (kTokens - 19) * V);
  model_forward(*model, b, act, tokens.data() + 19, kTokens - 19);
  EXPECT_TRUE(std::equal(from_a.begin(), from_a.end(), act.logits));
}

INSTANTIATE_TEST_SUITE_P(
    Updates, StreamingDecode,
    ::testing::Values(Case{"delta_gqa", "--update delta --heads 4 --kv-heads 2"},
                      Case{"linear_gqa", "--update linear --heads 4 --kv-heads 2"},
                      Case{"delta_mha", "--update delta --heads 2 --kv-heads 2"},
                      Case{"linear_mha", "--update linear --heads 2 --kv-heads 2"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace infini
