// The whole model against the PyTorch reference of the spec (tests/reference/infini_ref.py):
// logits, loss, the gradient of every parameter (full backpropagation through time through the
// memory M, z) and the memory after the sequence, on random weights with gates spread over
// [-3, 3], for linear and delta updates, MHA and GQA, tied and untied heads, several segments and
// a sequence length that is not a multiple of the segment length.
//
// Tolerance: 1e-4 in max-norm relative to each reference tensor. The reference runs in float64,
// so the difference is the fp32 rounding of this engine. Each value is a composition of a few
// dozen dot products of length <= 64 per layer (unit roundoff u = 6e-8, a length-K sum errs by at
// most ~K u in the worst case, ~sqrt(K) u typically) through 2 layers and a memory recurrence
// over 5 segments whose normalisation divides by s(Q).z; 1e-4 leaves the worst-case bound of
// ~K u = 4e-6 per product a margin for that depth while still catching any wrong term (a missing
// or wrong term changes a tensor by O(1) relative).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "model/checkpoint.h"
#include "model/training_pass.h"
#include "reference_case.h"

namespace infini {
namespace {

using test::read_case_tokens;

struct Case {
  std::string name;
  std::string args;  // for make-case
  int64_t batch, seq_len;
};

class ModelReference : public ::testing::TestWithParam<Case> {};

TEST_P(ModelReference, LogitsLossGradientsAndMemoryMatch) {
  const Case& c = GetParam();
  const std::string dir = test::scratch_dir("model_reference_" + c.name);
  ASSERT_NO_FATAL_FAILURE(test::run_reference("make-case --out " + dir + " --seed 7 --batch " +
                                              std::to_string(c.batch) + " --seq-len " +
                                              std::to_string(c.seq_len) + " " + c.args));

  const Model model = model_load(dir);
  const SafetensorsFile ref = SafetensorsFile::open(dir + "/reference.safetensors");
  const int64_t B = c.batch, T = c.seq_len, V = model.config.vocab_size;
  const auto [inputs, targets] = read_case_tokens(dir, B, T);

  StreamState state = stream_state_create(model.config, B);
  StreamState dstate = stream_state_create(model.config, B);
  Activations act = activations_create(model.config, B, T, true);
  Arena grad_storage(model.storage.used());
  Parameters grads = parameters_layout(model.config, grad_storage);

  model_forward(model, state, act, inputs.data(), T);
  EXPECT_LT(test::relative_error(act.logits, test::read_f64(ref, "logits")), 1e-4) << "logits";
  const double loss = model_loss(act, targets.data(), T, V) / double(B * T);
  EXPECT_NEAR(loss, test::read_f64(ref, "loss")[0], 1e-4 * loss) << "loss";

  // final memory, [B, L, Hkv, d, d] in the reference; per layer [B, Hkv, d, d] here. The
  // reference writes a last, partial segment into the memory as the stream ends; here its rows
  // wait in the KV cache, so they are written into a copy of the memory first (spec §2 step 6).
  const std::vector<double> M = test::read_f64(ref, "state.M"), z = test::read_f64(ref, "state.z");
  const int64_t L = model.config.num_hidden_layers, Hkv = model.config.num_key_value_heads,
                d = model.config.head_dim, N = model.config.attention.segment_length;
  ASSERT_EQ(state.position, T);
  std::vector<float> ours_M(M.size()), ours_z(z.size()), scratch(2 * N * d);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t l = 0; l < L; ++l) {
      const LayerState& layer = state.layers[l];
      ASSERT_EQ(layer.cache.rows, T % N);
      float* m_out = ours_M.data() + (b * L + l) * Hkv * d * d;
      float* z_out = ours_z.data() + (b * L + l) * Hkv * d;
      std::copy_n(layer.memory.memory + b * Hkv * d * d, Hkv * d * d, m_out);
      std::copy_n(layer.memory.norm + b * Hkv * d, Hkv * d, z_out);
      for (int64_t g = 0; g < Hkv; ++g) {
        const int64_t first = (b * layer.cache.capacity * Hkv + g) * d;  // row 0 of head g
        infini_memory_update(m_out + g * d * d, z_out + g * d, layer.cache.keys + first, Hkv * d,
                             layer.cache.values + first, Hkv * d, layer.cache.rows, d,
                             model.config.attention.memory_update == "delta", scratch.data());
      }
    }
  EXPECT_LT(test::relative_error(ours_M.data(), M), 1e-4) << "memory M";
  EXPECT_LT(test::relative_error(ours_z.data(), z), 1e-4) << "memory z";

  model_backward(model, grads, dstate, act, inputs.data(), targets.data(), T, 1.0f / float(B * T));
  double worst = 0;
  for (const ParameterInfo& p : parameter_table(model.config, grads)) {
    const double err = test::relative_error(p.data, test::read_f64(ref, "grad." + p.name));
    EXPECT_LT(err, 1e-4) << "gradient of " << p.name;
    worst = std::max(worst, err);
  }
  std::printf("worst relative error of a gradient: %.3g\n", worst);
}

INSTANTIATE_TEST_SUITE_P(
    Spec, ModelReference,
    ::testing::Values(
        Case{"delta_gqa_untied", "--vocab 256 --update delta --heads 4 --kv-heads 2 --untied", 2,
             37},
        Case{"linear_gqa_untied", "--vocab 256 --update linear --heads 4 --kv-heads 2 --untied", 2,
             37},
        Case{"delta_mha_tied", "--vocab 256 --update delta --heads 2 --kv-heads 2 --tied", 2, 33},
        Case{"linear_mha_tied", "--vocab 256 --update linear --heads 2 --kv-heads 2 --tied", 1, 40},
        Case{"delta_mqa_one_segment_partial",
             "--vocab 256 --update delta --heads 4 --kv-heads 1 --untied", 3, 5}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace infini

namespace infini {
namespace {

// Gradient checkpointing (per-chunk recomputation) gives the gradients of the full pass.
class RecomputeReference : public ::testing::TestWithParam<int64_t> {};

TEST_P(RecomputeReference, GradientsMatchReference) {
  const int64_t chunk = GetParam(), B = 2, T = 32;  // segment 8: 4 segments
  const std::string dir = test::scratch_dir("recompute_reference_" + std::to_string(chunk));
  ASSERT_NO_FATAL_FAILURE(
      test::run_reference("make-case --out " + dir +
                          " --seed 9 --batch 2 --seq-len 32 --vocab 256 --update delta "
                          "--heads 4 --kv-heads 2 --untied"));
  const Model model = model_load(dir);
  const SafetensorsFile ref = SafetensorsFile::open(dir + "/reference.safetensors");
  const auto [inputs, targets] = read_case_tokens(dir, B, T);
  TrainingPass pass = training_pass_create(model.config, B, T, chunk);
  Arena grad_storage(model.storage.used());
  Parameters grads = parameters_layout(model.config, grad_storage);
  const double loss =
      training_pass_run(model, grads, pass, inputs.data(), targets.data(), 1.0f / float(B * T)) /
      double(B * T);
  EXPECT_NEAR(loss, test::read_f64(ref, "loss")[0], 1e-4 * loss);
  for (const ParameterInfo& p : parameter_table(model.config, grads))
    EXPECT_LT(test::relative_error(p.data, test::read_f64(ref, "grad." + p.name)), 1e-4)
        << "gradient of " << p.name << " with chunks of " << chunk;
}

INSTANTIATE_TEST_SUITE_P(Chunks, RecomputeReference, ::testing::Values(0, 8, 16));

}  // namespace
}  // namespace infini
