// TransformerFAM (spec §4, src/model/fam.h) against the float64 PyTorch reference
// (tests/reference/infini_ref.py make-case --type fam): logits, loss, the gradient of every
// parameter (model.fam_embeddings included: BPTT through the FAM recurrence over 4 full blocks and
// the initial pass), the KV cache rows and the FAM rows F_l left after the stream (state.fam), and
// the initial F_l (fam.initial). Then streaming: chunks of 1, 3 and N + 5 tokens and the Decoder
// give the one-pass logits and FAM state; `infini ppl` matches the reference per token; and
// fam_length 0 equals bswa on the same weights.
//
// Tolerances as in mechanisms_reference_test.cpp: 1e-4 relative (max-norm) against the reference
// (fp32 rounding through 2 layers and a 4-step recurrence, while a wrong key, position or FAM
// step moves a tensor by O(1e-2)); streaming vs one pass 1e-5 (the same arithmetic, blocked
// differently).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <string>

#include "core/random.h"
#include "infer/decoder.h"
#include "model/checkpoint.h"
#include "model/training_pass.h"
#include "reference_case.h"

namespace infini {
namespace {

constexpr int64_t kB = 2, kT = 37, kN = 8;

struct Case {
  std::string name;
  int64_t memory_blocks, fam_length;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {{"mb1_f3", 1, 3}, {"mb2_f3", 2, 3}, {"mb1_f0", 1, 0}};
  return all;
}

std::string case_dir(const Case& c) {
  const std::string dir = test::scratch_dir("fam_reference_" + c.name);
  if (!std::ifstream(dir + "/reference.safetensors").good())
    test::run_reference("make-case --out " + dir + " --seed 11 --batch " + std::to_string(kB) +
                        " --seq-len " + std::to_string(kT) +
                        " --vocab 256 --heads 4 --kv-heads 2 --segment " + std::to_string(kN) +
                        " --untied --type fam --memory-blocks " + std::to_string(c.memory_blocks) +
                        " --fam-length " + std::to_string(c.fam_length));
  return dir;
}

std::pair<std::vector<int32_t>, std::vector<int32_t>> read_case_tokens(const std::string& dir) {
  return test::read_case_tokens(dir, kB, kT);
}

double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<double> wide(b.begin(), b.end());
  return test::relative_error(a.data(), wide);
}

struct Pass {
  std::vector<float> logits, grads, fam;  // fam: the final F_l, [L, B, fl, D]
  double loss = 0;
};

Pass one_pass(const Model& model, const std::vector<int32_t>& inputs,
              const std::vector<int32_t>& targets, StreamState* final_state = nullptr) {
  StreamState state = stream_state_create(model.config, kB);
  StreamState dstate = stream_state_create(model.config, kB, false);
  Activations act = activations_create(model.config, kB, kT, true);
  Arena grad_storage(model.storage.used());
  Parameters grads = parameters_layout(model.config, grad_storage);
  model_forward(model, state, act, inputs.data(), kT);
  Pass r;
  r.logits.assign(act.logits, act.logits + kB * kT * model.config.vocab_size);
  r.loss = model_loss(act, targets.data(), kT, model.config.vocab_size) / double(kB * kT);
  model_backward(model, grads, dstate, act, inputs.data(), targets.data(), kT, 1.0f / (kB * kT));
  r.grads.assign(grads.all, grads.all + grads.count);
  r.fam.assign(state.fam_all, state.fam_all + state.fam_count);
  if (final_state) {
    *final_state = stream_state_create(model.config, kB);
    stream_state_copy(*final_state, state);
  }
  return r;
}

// [L, B, fl, D] (ours) as the reference's [B, L, fl, D]
std::vector<float> fam_batch_major(const std::vector<float>& fam, int64_t L, int64_t rows) {
  std::vector<float> out(fam.size());
  for (int64_t l = 0; l < L; ++l)
    for (int64_t b = 0; b < kB; ++b)
      std::copy_n(fam.data() + (l * kB + b) * rows, rows, out.data() + (b * L + l) * rows);
  return out;
}

class Fam : public ::testing::TestWithParam<Case> {};

TEST_P(Fam, LogitsLossGradientsAndStateMatchReference) {
  const std::string dir = case_dir(GetParam());
  const Model model = model_load(dir);
  const ModelConfig& c = model.config;
  const SafetensorsFile ref = SafetensorsFile::open(dir + "/reference.safetensors");
  const auto [inputs, targets] = read_case_tokens(dir);
  StreamState state;
  const Pass pass = one_pass(model, inputs, targets, &state);

  EXPECT_LT(test::relative_error(pass.logits.data(), test::read_f64(ref, "logits")), 1e-4);
  const double ref_loss = test::read_f64(ref, "loss")[0];
  EXPECT_NEAR(pass.loss, ref_loss, 1e-4 * ref_loss);

  Arena grad_storage(model.storage.used());
  Parameters grads = parameters_layout(c, grad_storage);
  std::copy(pass.grads.begin(), pass.grads.end(), grads.all);
  double worst = 0;
  bool saw_fam = false;
  for (const ParameterInfo& p : parameter_table(c, grads)) {
    if (p.numel() == 0) continue;
    const double err = test::relative_error(p.data, test::read_f64(ref, "grad." + p.name));
    EXPECT_LT(err, 1e-4) << "gradient of " << p.name;
    worst = std::max(worst, err);
    saw_fam |= p.name == "model.fam_embeddings";
  }
  EXPECT_EQ(saw_fam, c.attention.fam_length > 0);
  std::printf("%s: worst relative error of a gradient: %.3g\n", GetParam().name.c_str(), worst);

  // the KV cache rows: [B, L, r, Hkv, d] in the reference
  const std::vector<double> K = test::read_f64(ref, "state.k"), V = test::read_f64(ref, "state.v");
  const int64_t L = c.num_hidden_layers, row = c.num_key_value_heads * c.head_dim,
                r = int64_t(K.size()) / (kB * L * row);
  ASSERT_EQ(state.position, kT);
  std::vector<float> ours_k(K.size()), ours_v(V.size());
  for (int64_t l = 0; l < L; ++l) {
    const KvCache& cache = state.layers[l].cache;
    ASSERT_EQ(cache.rows, r) << "layer " << l;
    for (int64_t b = 0; b < kB; ++b) {
      std::copy_n(cache.keys + b * cache.capacity * row, r * row,
                  ours_k.data() + (b * L + l) * r * row);
      std::copy_n(cache.values + b * cache.capacity * row, r * row,
                  ours_v.data() + (b * L + l) * r * row);
    }
  }
  EXPECT_LT(test::relative_error(ours_k.data(), K), 1e-4) << "cached keys";
  EXPECT_LT(test::relative_error(ours_v.data(), V), 1e-4) << "cached values";

  const int64_t rows = c.attention.fam_length * c.hidden_size;
  if (rows == 0) return;
  // the FAM rows after the stream (F_l of block 4, after 4 updates)
  const std::vector<float> fam = fam_batch_major(pass.fam, L, rows);
  EXPECT_LT(test::relative_error(fam.data(), test::read_f64(ref, "state.fam")), 1e-4);
  // the initial F_l: a fresh stream after one token (block 0 not complete: F_l(0) unchanged)
  StreamState fresh = stream_state_create(c, kB);
  Activations one = activations_create(c, kB, 1, false);
  const int32_t first[kB] = {inputs[0], inputs[kT]};
  model_forward(model, fresh, one, first, 1);
  const std::vector<double> initial = test::read_f64(ref, "fam.initial");  // [L, fl, D]
  for (int64_t b = 0; b < kB; ++b) {
    std::vector<float> ours(L * rows);
    for (int64_t l = 0; l < L; ++l)
      std::copy_n(fresh.layers[l].fam + b * rows, rows, ours.data() + l * rows);
    EXPECT_LT(test::relative_error(ours.data(), initial), 1e-4) << "initial FAM, stream " << b;
  }
}

TEST_P(Fam, StreamingEqualsOnePass) {
  const std::string dir = case_dir(GetParam());
  const Model model = model_load(dir);
  const int64_t V = model.config.vocab_size;
  const auto [inputs, targets] = read_case_tokens(dir);
  StreamState state = stream_state_create(model.config, kB);
  Activations whole = activations_create(model.config, kB, kT, false);
  model_forward(model, state, whole, inputs.data(), kT);
  const std::vector<float> expected(whole.logits, whole.logits + kB * kT * V);
  const std::vector<float> expected_fam(state.fam_all, state.fam_all + state.fam_count);

  for (const int64_t chunk : {int64_t(1), int64_t(3), kN + 5}) {
    stream_state_reset(state);
    const std::vector<float> got = test::logits_in_chunks(model, state, inputs, kB, kT, chunk);
    EXPECT_LT(relative_error(got, expected), 1e-5) << "chunks of " << chunk;
    if (!expected_fam.empty()) {
      const std::vector<float> fam(state.fam_all, state.fam_all + state.fam_count);
      EXPECT_LT(relative_error(fam, expected_fam), 1e-5) << "FAM rows, chunks of " << chunk;
    }
  }

  // Decoder, stream 1: a prompt of 11 tokens, then 1-token steps over 3 more blocks
  Decoder dec = decoder_create(model, kN);
  const int32_t* stream = inputs.data() + kT;
  const int64_t prompt = 11;
  const double worst =
      test::decoder_worst_error(dec, stream, kT, prompt, expected.data() + kT * V);
  EXPECT_LT(worst, 1e-5) << "decoder";
  // a copy of the state continues identically
  StreamState copy = stream_state_create(model.config, 1);
  stream_state_copy(copy, dec.state);
  Activations step = activations_create(model.config, 1, 1, false);
  model_forward(model, copy, step, stream, 1);
  decoder_step(dec, stream[0]);
  std::vector<float> a(step.logits, step.logits + V);
  EXPECT_EQ(relative_error(a, dec.logits), 0.0);
}

// `infini ppl` (batch 1, chunks of many blocks) against the reference's ppl (one block at a time),
// for the cases with FAM rows (fam_length 0 is bswa, whose ppl mechanisms_reference_test checks).
class FamPpl : public ::testing::TestWithParam<Case> {};

TEST_P(FamPpl, PplCliMatchesReferencePerToken) {
  const std::string dir = case_dir(GetParam());
  const char* words[] = {"the ",   "feedback ", "of ", "a ",    "block ",
                         "keeps ", "what ",     "it ", "read\n"};
  Rng rng(3);
  std::string text;
  while (text.size() < 300) text += words[rng.below(9)];
  text.resize(300);
  std::ofstream(dir + "/input.txt", std::ios::binary) << text;
  test::expect_ppl_matches_reference(dir, dir + "/input.txt", 299);
}

INSTANTIATE_TEST_SUITE_P(Spec, Fam, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });
INSTANTIATE_TEST_SUITE_P(Spec, FamPpl, ::testing::Values(cases()[0], cases()[1]),
                         [](const auto& info) { return info.param.name; });

// fam_length 0 is bswa: the same weights give the same logits and gradients; with FAM rows the
// logits differ (the comparison can fail).
TEST(FamEquivalences, FamLengthZeroEqualsBswa) {
  const Model fam0 = model_load(case_dir(cases()[2]));
  const auto [inputs, targets] = read_case_tokens(case_dir(cases()[2]));
  ModelConfig c = fam0.config;
  c.attention.type = "bswa";
  c.attention.fam_length = 0;
  Model bswa = model_create(c);
  ASSERT_EQ(bswa.weights.count, fam0.weights.count);
  std::copy_n(fam0.weights.all, fam0.weights.count, bswa.weights.all);
  const Pass a = one_pass(fam0, inputs, targets), b = one_pass(bswa, inputs, targets);
  EXPECT_LT(relative_error(a.logits, b.logits), 1e-6);
  EXPECT_LT(relative_error(a.grads, b.grads), 1e-6);
  const Model fam3 = model_load(case_dir(cases()[0]));
  const Pass f = one_pass(fam3, inputs, targets);
  EXPECT_GT(relative_error(f.logits, b.logits), 1e-3);
}

}  // namespace
}  // namespace infini
