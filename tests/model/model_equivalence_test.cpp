// Equivalences that must hold whatever the weights (the FlashInfer way of testing variants):
//   - the gate forced to local (beta -> -inf) gives segment-local causal attention: the same
//     logits as feeding every segment as a fresh stream;
//   - streaming segment by segment gives the logits of one pass over the sequence;
//   - a batch gives the logits of a loop over single streams;
//   - segment 0 reaches the last segment only through the memory.
// (Chunks of any size, decoding included, against one pass and the reference: tests/infer.)
// And the training path's preconditions: a chunk from a segment boundary with an empty cache.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "core/random.h"
#include "model/model.h"

namespace infini {
namespace {

ModelConfig small_config(const std::string& update, int64_t kv_heads) {
  ModelConfig c;
  c.vocab_size = 256;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = kv_heads;
  c.head_dim = 8;
  c.intermediate_size = 40;
  c.attention.type = "infini";
  c.attention.segment_length = 8;
  c.attention.memory_update = update;
  return c;
}

Model random_model(const ModelConfig& c, uint64_t seed) {
  Model m = model_create(c);
  model_init_random(m, seed);
  // larger weights than the training init so that every path matters, gates spread around 0
  Rng rng(seed + 1);
  for (const ParameterInfo& p : parameter_table(c, m.weights)) {
    for (int64_t i = 0; i < p.numel(); ++i) {
      if (p.kind == ParameterKind::Gate)
        p.data[i] = float(rng.uniform() * 6 - 3);
      else if (p.kind == ParameterKind::Norm)
        p.data[i] = 1.0f + 0.1f * float(rng.normal());
      else
        p.data[i] = 0.3f * float(rng.normal());
    }
  }
  return m;
}

void set_gates(Model& m, float value) {
  for (LayerParameters& l : m.weights.layers)
    for (int64_t h = 0; h < m.config.num_attention_heads; ++h) l.memory_gate[h] = value;
}

std::string test_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = int32_t(rng.below(vocab));
  return t;
}

// Logits [B*T, V] of one forward pass from a fresh state, fed in chunks of `chunk` tokens.
std::vector<float> run(const Model& m, const std::vector<int32_t>& tokens, int64_t B, int64_t T,
                       int64_t chunk) {
  const int64_t V = m.config.vocab_size;
  StreamState state = stream_state_create(m.config, B);
  Activations act = activations_create(m.config, B, chunk, false);
  std::vector<float> logits(B * T * V);
  std::vector<int32_t> piece(B * chunk);
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t n = std::min(chunk, T - t0);
    for (int64_t b = 0; b < B; ++b)
      std::copy_n(tokens.begin() + b * T + t0, n, piece.begin() + b * n);
    model_forward(m, state, act, piece.data(), n);
    for (int64_t b = 0; b < B; ++b)
      std::copy_n(act.logits + b * n * V, n * V, logits.begin() + (b * T + t0) * V);
  }
  return logits;
}

double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, double(std::fabs(a[i] - b[i])));
    scale = std::max(scale, double(std::fabs(b[i])));
  }
  return diff / scale;
}

class Equivalence : public ::testing::TestWithParam<std::tuple<std::string, int64_t>> {};

TEST_P(Equivalence, LocalGateEqualsSegmentLocalAttention) {
  const auto [update, kv] = GetParam();
  Model m = random_model(small_config(update, kv), 3);
  set_gates(m, -std::numeric_limits<float>::infinity());  // sigmoid = 0 exactly
  const int64_t N = m.config.attention.segment_length, T = 5 * N, V = m.config.vocab_size;
  const std::vector<int32_t> tokens = random_tokens(T, V, 11);
  const std::vector<float> stream = run(m, tokens, 1, T, N);
  for (int64_t s = 0; s < 5; ++s) {  // every segment on its own, from an empty memory
    std::vector<int32_t> segment(tokens.begin() + s * N, tokens.begin() + (s + 1) * N);
    const std::vector<float> alone = run(m, segment, 1, N, N);
    for (int64_t i = 0; i < N * V; ++i)
      ASSERT_EQ(stream[s * N * V + i], alone[i]) << "segment " << s << " element " << i;
  }
}

TEST_P(Equivalence, StreamingEqualsOnePass) {
  const auto [update, kv] = GetParam();
  const Model m = random_model(small_config(update, kv), 5);
  const int64_t N = m.config.attention.segment_length, T = 4 * N + 3;
  const std::vector<int32_t> tokens = random_tokens(T, m.config.vocab_size, 12);
  // GEMMs of different heights may sum in different orders: equal to fp32 rounding.
  EXPECT_LT(max_relative_difference(run(m, tokens, 1, T, N), run(m, tokens, 1, T, T)), 2e-6);
  EXPECT_LT(max_relative_difference(run(m, tokens, 1, T, 2 * N), run(m, tokens, 1, T, T)), 2e-6);
}

TEST_P(Equivalence, BatchEqualsLoopOfStreams) {
  const auto [update, kv] = GetParam();
  const Model m = random_model(small_config(update, kv), 6);
  const int64_t N = m.config.attention.segment_length, T = 3 * N + 5, B = 3,
                V = m.config.vocab_size;
  const std::vector<int32_t> tokens = random_tokens(B * T, V, 13);
  const std::vector<float> batch = run(m, tokens, B, T, T);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> one(tokens.begin() + b * T, tokens.begin() + (b + 1) * T);
    const std::vector<float> single = run(m, one, 1, T, T);
    std::vector<float> part(batch.begin() + b * T * V, batch.begin() + (b + 1) * T * V);
    EXPECT_LT(max_relative_difference(part, single), 2e-6) << "stream " << b;
  }
}

TEST_P(Equivalence, FirstSegmentReachesLastOnlyThroughMemory) {
  const auto [update, kv] = GetParam();
  Model m = random_model(small_config(update, kv), 8);
  const int64_t N = m.config.attention.segment_length, T = 4 * N, V = m.config.vocab_size;
  std::vector<int32_t> tokens = random_tokens(T, V, 14), perturbed = tokens;
  for (int64_t i = 0; i < N; ++i) perturbed[i] = (perturbed[i] + 1 + int32_t(i)) % int32_t(V);
  auto last_segment = [&](const std::vector<float>& logits) {
    return std::vector<float>(logits.end() - N * V, logits.end());
  };
  // with the memory in use, the last segment sees the change
  const double with_memory = max_relative_difference(last_segment(run(m, tokens, 1, T, T)),
                                                     last_segment(run(m, perturbed, 1, T, T)));
  EXPECT_GT(with_memory, 1e-3);
  // with every gate closed to the memory, it sees nothing at all
  set_gates(m, -std::numeric_limits<float>::infinity());
  EXPECT_EQ(last_segment(run(m, tokens, 1, T, T)), last_segment(run(m, perturbed, 1, T, T)));
}

TEST(TrainingChunks, MustStartAtASegmentBoundary) {
  const Model m = random_model(small_config("delta", 2), 9);
  const int64_t N = m.config.attention.segment_length;
  const std::vector<int32_t> tokens = random_tokens(3 * N, m.config.vocab_size, 15);
  StreamState state = stream_state_create(m.config, 1);
  StreamState dstate = stream_state_create(m.config, 1, /*with_cache=*/false);
  Activations inference = activations_create(m.config, 1, 2 * N, false);
  Activations training = activations_create(m.config, 1, 2 * N, true);
  Arena grad_storage(m.storage.used());
  Parameters grads = parameters_layout(m.config, grad_storage);

  model_forward(m, state, inference, tokens.data(), 3);  // the stream is now inside a segment
  EXPECT_NE(test_error([&] {
              model_forward(m, state, training, tokens.data() + 3, N);
            }).find("segment boundary"),
            std::string::npos);
  // a chunk from a boundary that stops inside a segment: backward only with a zero dstate
  stream_state_reset(state);
  model_forward(m, state, training, tokens.data(), N + 3);
  model_loss(training, tokens.data() + 1, N + 3, m.config.vocab_size);
  dstate.all[0] = 1.0f;
  EXPECT_NE(test_error([&] {
              model_backward(m, grads, dstate, training, tokens.data(), tokens.data() + 1, N + 3,
                             1.0f);
            }).find("must end its training sequence"),
            std::string::npos);
  training.chunk_start = 3;  // as if the forward pass had started inside a segment
  EXPECT_NE(test_error([&] {
              model_backward(m, grads, dstate, training, tokens.data(), tokens.data() + 1, N + 3,
                             1.0f);
            }).find("started at a segment boundary"),
            std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Updates, Equivalence,
                         ::testing::Combine(::testing::Values("linear", "delta"),
                                            ::testing::Values(int64_t(4), int64_t(2))),
                         [](const auto& info) {
                           return std::get<0>(info.param) +
                                  (std::get<1>(info.param) == 4 ? "_mha" : "_gqa");
                         });

}  // namespace
}  // namespace infini
