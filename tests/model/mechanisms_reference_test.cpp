// The softmax baselines (spec §3: full, sliding, xl, bswa) plugged into the whole model, against
// the float64 PyTorch reference (tests/reference/infini_ref.py make-case --type ...): logits,
// loss, the gradient of every parameter (one pass over the sequence from position 0, gradients
// flowing through attention across segments, xl's stop-gradient included) and the KV cache rows
// left after the stream (state.k / state.v). Then streaming: the same stream fed in chunks of
// 1, 3 and N + 5 tokens, and through the Decoder (prompt + 1-token steps), gives the one-pass
// logits; `infini ppl` matches the reference's per-token NLLs; and the model-level equivalences
// sliding(W >= T) == full, bswa(MB covering T) == full, xl forward == bswa(MB = 1) forward.
//
// Tolerance 1e-4 relative (max-norm), as in model_reference_test.cpp: fp32 rounding of dot
// products of length <= 64 through 2 layers (worst-case ~K u = 4e-6 per product), while a
// missing or wrong term (a key too many or too few, a wrong RoPE position, a gradient through
// xl's stop-gradient) changes a tensor by O(1e-2) or more relative. Streaming vs one pass: the
// same arithmetic in a different blocking (GEMM row splits, key-buffer offsets), 1e-5.
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

using test::read_case_tokens;

// max |a - b| / max |b| over float vectors
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<double> wide(b.begin(), b.end());
  return test::relative_error(a.data(), wide);
}

struct Case {
  std::string name;
  std::string args;  // for make-case
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"full", "--type full"},
      {"sliding", "--type sliding --window 5"},
      {"xl", "--type xl"},
      {"bswa1", "--type bswa --memory-blocks 1"},
      {"bswa2", "--type bswa --memory-blocks 2"},
  };
  return all;
}

// make-case once per type and test program run
std::string case_dir(const Case& c) {
  const std::string dir = test::scratch_dir("mechanisms_reference_" + c.name);
  if (!std::ifstream(dir + "/reference.safetensors").good())
    test::run_reference("make-case --out " + dir + " --seed 11 --batch " + std::to_string(kB) +
                        " --seq-len " + std::to_string(kT) +
                        " --vocab 256 --heads 4 --kv-heads 2 --segment " + std::to_string(kN) +
                        " --untied " + c.args);
  return dir;
}

// logits [B*T, V] and every parameter's gradient of the mean loss, one pass from position 0
struct Pass {
  std::vector<float> logits, grads;
  double loss = 0;
};

Pass one_pass(const Model& model, const std::vector<int32_t>& inputs,
              const std::vector<int32_t>& targets, int64_t B, int64_t T,
              StreamState* final_state = nullptr) {
  StreamState state = stream_state_create(model.config, B);
  StreamState dstate = stream_state_create(model.config, B, false);
  Activations act = activations_create(model.config, B, T, true);
  Arena grad_storage(model.storage.used());
  Parameters grads = parameters_layout(model.config, grad_storage);
  model_forward(model, state, act, inputs.data(), T);
  Pass r;
  r.logits.assign(act.logits, act.logits + B * T * model.config.vocab_size);
  r.loss = model_loss(act, targets.data(), T, model.config.vocab_size) / double(B * T);
  model_backward(model, grads, dstate, act, inputs.data(), targets.data(), T, 1.0f / float(B * T));
  r.grads.assign(grads.all, grads.all + grads.count);
  if (final_state) {
    *final_state = stream_state_create(model.config, B);
    stream_state_copy(*final_state, state);
  }
  return r;
}

class Mechanisms : public ::testing::TestWithParam<Case> {};

TEST_P(Mechanisms, LogitsLossGradientsAndCacheMatchReference) {
  const std::string dir = case_dir(GetParam());
  const Model model = model_load(dir);
  const SafetensorsFile ref = SafetensorsFile::open(dir + "/reference.safetensors");
  const auto [inputs, targets] = read_case_tokens(dir, kB, kT);
  StreamState state;
  const Pass pass = one_pass(model, inputs, targets, kB, kT, &state);

  EXPECT_LT(test::relative_error(pass.logits.data(), test::read_f64(ref, "logits")), 1e-4);
  const double ref_loss = test::read_f64(ref, "loss")[0];
  EXPECT_NEAR(pass.loss, ref_loss, 1e-4 * ref_loss);

  // gradients, parameter by parameter (the same layout as the model's weights)
  Arena grad_storage(model.storage.used());
  Parameters grads = parameters_layout(model.config, grad_storage);
  std::copy(pass.grads.begin(), pass.grads.end(), grads.all);
  double worst = 0;
  for (const ParameterInfo& p : parameter_table(model.config, grads)) {
    const double err = test::relative_error(p.data, test::read_f64(ref, "grad." + p.name));
    EXPECT_LT(err, 1e-4) << "gradient of " << p.name;
    worst = std::max(worst, err);
  }
  std::printf("%s: worst relative error of a gradient: %.3g\n", GetParam().name.c_str(), worst);

  // the cache after the stream: [B, L, r, Hkv, d] in the reference, per layer [B, cap, Hkv, d]
  const std::vector<double> K = test::read_f64(ref, "state.k"), V = test::read_f64(ref, "state.v");
  const int64_t L = model.config.num_hidden_layers,
                row = model.config.num_key_value_heads * model.config.head_dim,
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
}

// The same stream in chunks of 1, 3 and N + 5 tokens (inference activations, cache carried)
// and through the Decoder gives the logits of one pass.
TEST_P(Mechanisms, StreamingEqualsOnePass) {
  const std::string dir = case_dir(GetParam());
  const Model model = model_load(dir);
  const int64_t V = model.config.vocab_size;
  const auto [inputs, targets] = read_case_tokens(dir, kB, kT);
  StreamState state = stream_state_create(model.config, kB);
  Activations whole = activations_create(model.config, kB, kT, false);
  model_forward(model, state, whole, inputs.data(), kT);
  const std::vector<float> expected(whole.logits, whole.logits + kB * kT * V);

  for (const int64_t chunk : {int64_t(1), int64_t(3), kN + 5}) {
    stream_state_reset(state);
    const std::vector<float> got = test::logits_in_chunks(model, state, inputs, kB, kT, chunk);
    EXPECT_LT(relative_error(got, expected), 1e-5) << "chunks of " << chunk;
  }

  // Decoder, stream 1: a prompt of 11 tokens (fed in chunks of one segment), then 1-token steps
  Decoder dec = decoder_create(model, kN);
  const int32_t* stream = inputs.data() + kT;
  const int64_t prompt = 11;
  const double worst =
      test::decoder_worst_error(dec, stream, kT, prompt, expected.data() + kT * V);
  EXPECT_LT(worst, 1e-5) << "decoder";
  // a copy of the decoder's state continues identically (the full cache grows in the copy)
  StreamState copy = stream_state_create(model.config, 1);
  stream_state_copy(copy, dec.state);
  EXPECT_EQ(copy.position, kT);
  EXPECT_EQ(copy.layers[0].cache.rows, dec.state.layers[0].cache.rows);
}

// `infini ppl` (chunks of many segments, batch 1) against the reference's ppl (one segment at a
// time), per token, on text-like bytes longer than every window.
TEST_P(Mechanisms, PplCliMatchesReferencePerToken) {
  const std::string dir = case_dir(GetParam());
  const char* words[] = {"the ",   "cache ", "of ", "a ",    "stream ",
                         "keeps ", "what ",  "it ", "read\n"};
  Rng rng(3);
  std::string text;
  while (text.size() < 300) text += words[rng.below(9)];
  text.resize(300);
  std::ofstream(dir + "/input.txt", std::ios::binary) << text;
  test::expect_ppl_matches_reference(dir, dir + "/input.txt", 299);
}

INSTANTIATE_TEST_SUITE_P(Spec, Mechanisms, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

// The same weights under another attention type (the baselines share one weight layout).
Model with_type(const Model& from, const std::string& type, int64_t window, int64_t blocks) {
  ModelConfig c = from.config;
  c.attention.type = type;
  c.attention.window = window;
  c.attention.memory_blocks = blocks;
  Model m = model_create(c);
  EXPECT_EQ(m.weights.count, from.weights.count);
  std::copy_n(from.weights.all, from.weights.count, m.weights.all);
  return m;
}

double vector_relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  return relative_error(a, b);
}

TEST(MechanismEquivalences, SlidingAndBswaCoveringTheSequenceEqualFullXlForwardEqualsBswa1) {
  const Model full = model_load(case_dir(cases()[0]));
  const auto [inputs, targets] = read_case_tokens(case_dir(cases()[0]), kB, kT);
  const Pass f = one_pass(full, inputs, targets, kB, kT);
  for (const Model& m : {with_type(full, "sliding", kT, 0), with_type(full, "sliding", kT + 9, 0),
                         with_type(full, "bswa", 0, (kT + kN - 1) / kN)}) {
    const Pass p = one_pass(m, inputs, targets, kB, kT);
    EXPECT_LT(vector_relative_error(p.logits, f.logits), 1e-5) << m.config.attention.type;
    EXPECT_LT(vector_relative_error(p.grads, f.grads), 1e-5) << m.config.attention.type;
  }
  // a window shorter than the sequence differs (the comparison can fail)
  const Pass narrow = one_pass(with_type(full, "sliding", kT - 1, 0), inputs, targets, kB, kT);
  EXPECT_GT(vector_relative_error(narrow.logits, f.logits), 1e-4);

  const Pass xl = one_pass(with_type(full, "xl", 0, 0), inputs, targets, kB, kT);
  const Pass bswa = one_pass(with_type(full, "bswa", 0, 1), inputs, targets, kB, kT);
  EXPECT_LT(vector_relative_error(xl.logits, bswa.logits), 1e-5);
  EXPECT_NEAR(xl.loss, bswa.loss, 1e-6 * bswa.loss);
  // the stop-gradient: same forward, different gradients
  EXPECT_GT(vector_relative_error(xl.grads, bswa.grads), 1e-3);
}

// Long positions stay exact (spec §3, issue 6 item 4): RoPE positions are rebased to the oldest
// key a chunk sees, so a segment gives the same logits, bit for bit, whether the stream started 2
// blocks or 2^20 + 2 blocks earlier, given the same recent context (the same cached K/V rows and,
// for fam, the same feedback rows). Only the position differs between the two states.
TEST(MechanismRebasing, SameRecentContextSameLogitsAtAMillionTokens) {
  const Model full = model_load(case_dir(cases()[0]));
  ModelConfig fam_config = full.config;
  fam_config.attention.type = "fam";
  fam_config.attention.memory_blocks = 1;
  fam_config.attention.fam_length = 3;
  std::vector<Model> models;
  models.push_back(with_type(full, "sliding", 5, 0));
  models.push_back(with_type(full, "xl", 0, 0));
  models.push_back(with_type(full, "bswa", 0, 2));
  models.push_back(model_create(fam_config));
  model_init_random(models.back(), 9);
  const auto [inputs, targets] = read_case_tokens(case_dir(cases()[0]), kB, kT);
  for (const Model& model : models) {
    const Model* m = &model;
    SCOPED_TRACE(m->config.attention.type);
    StreamState near = stream_state_create(m->config, kB);
    Activations act = activations_create(m->config, kB, 3 * kN, false);
    std::vector<int32_t> first(kB * 2 * kN), last(kB * kN);
    for (int64_t b = 0; b < kB; ++b) {
      std::copy_n(inputs.begin() + b * kT, 2 * kN, first.begin() + b * 2 * kN);
      std::copy_n(inputs.begin() + b * kT + 2 * kN, kN, last.begin() + b * kN);
    }
    model_forward(*m, near, act, first.data(), 2 * kN);  // two blocks: the recent context
    StreamState far = stream_state_create(m->config, kB);
    stream_state_copy(far, near);
    far.position += int64_t(1) << 20;  // the same recent context, 2^20 tokens further on
    model_forward(*m, near, act, last.data(), kN);
    const std::vector<float> at_near(act.logits, act.logits + kB * kN * m->config.vocab_size);
    model_forward(*m, far, act, last.data(), kN);
    const std::vector<float> at_far(act.logits, act.logits + kB * kN * m->config.vocab_size);
    EXPECT_EQ(at_near, at_far);
  }
}

TEST(MechanismErrors, RecomputeAndMidStreamTrainingAreRefusedClearly) {
  const Model full = model_load(case_dir(cases()[0]));
  EXPECT_NE(
      test::error_of([&] { training_pass_create(full.config, 1, 32, 16); }).find("infini only"),
      std::string::npos);
  // training activations need the stream's start for the baselines
  StreamState state = stream_state_create(full.config, 1);
  Activations infer = activations_create(full.config, 1, 4, false);
  Activations train = activations_create(full.config, 1, 8, true);
  const std::vector<int32_t> tokens(8, 65);
  model_forward(full, state, infer, tokens.data(), 4);
  EXPECT_NE(test::error_of([&] {
              model_forward(full, state, train, tokens.data(), 8);
            }).find("position 0"),
            std::string::npos);
}

}  // namespace
}  // namespace infini
