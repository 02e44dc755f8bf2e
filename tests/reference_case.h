// Helpers of the tests that compare against the float64 reference (tests/reference/infini_ref.py):
// a make-case's tokens, and `infini ppl` against the reference's `ppl`, token by token.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "infer/decoder.h"
#include "model/model.h"
#include "test_support.h"

namespace infini::test {

// A make-case's tokens [B, T + 1] as inputs [B, T] and next-token targets [B, T].
inline std::pair<std::vector<int32_t>, std::vector<int32_t>> read_case_tokens(
    const std::string& dir, int64_t B, int64_t T) {
  const SafetensorsFile file = SafetensorsFile::open(dir + "/tokens.safetensors");
  std::vector<int32_t> tokens(B * (T + 1)), inputs(B * T), targets(B * T);
  read_i32(file.require("tokens", {B, T + 1}), tokens.data(), B * (T + 1), "tokens");
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      inputs[b * T + t] = tokens[b * (T + 1) + t];
      targets[b * T + t] = tokens[b * (T + 1) + t + 1];
    }
  return {inputs, targets};
}

// Whitespace-separated numbers of a file.
inline std::vector<double> read_numbers(const std::string& path) {
  std::ifstream in(path);
  std::vector<double> v;
  double x;
  while (in >> x) v.push_back(x);
  return v;
}

// `infini ppl --per-token` on input_file against the reference's `ppl` on the same model: every
// token's NLL within 2e-4 nats (fp32 against float64 through a few layers), with reference NLLs
// that vary (else the comparison proves little). Returns `infini ppl`'s command-line output.
inline std::string expect_ppl_matches_reference(const std::string& model_dir,
                                                const std::string& input_file,
                                                size_t expected_tokens) {
  const std::string ours_file = input_file + ".ours.txt", ref_file = input_file + ".ref.txt";
  const CommandResult ours = run_command(cli() + " ppl --model " + model_dir + " --input " +
                                         input_file + " --per-token " + ours_file + " --json");
  EXPECT_EQ(ours.exit_code, 0) << ours.output;
  run_reference("ppl --model " + model_dir + " --input " + input_file + " --per-token " +
                ref_file);
  const std::vector<double> a = read_numbers(ours_file), b = read_numbers(ref_file);
  EXPECT_EQ(a.size(), expected_tokens);
  EXPECT_EQ(b.size(), expected_tokens);
  if (a.size() != b.size() || a.empty()) return ours.output;
  double worst = 0, spread = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::fabs(a[i] - b[i]));
    spread = std::max(spread, std::fabs(b[i] - b[0]));
  }
  EXPECT_LT(worst, 2e-4) << "nats";
  EXPECT_GT(spread, 0.5) << "the reference NLLs should vary, or the comparison proves little";
  std::printf("worst per-token difference: %.3g nats\n", worst);
  return ours.output;
}

// Logits [B, T, V] of streams inputs [B, T] fed to model_forward from `state`'s start in chunks
// of `chunk` tokens (the last one shorter); `state` is left at the streams' end.
inline std::vector<float> logits_in_chunks(const Model& model, StreamState& state,
                                           const std::vector<int32_t>& inputs, int64_t B,
                                           int64_t T, int64_t chunk) {
  const int64_t V = model.config.vocab_size;
  Activations act = activations_create(model.config, B, chunk, false);
  std::vector<float> logits(B * T * V);
  std::vector<int32_t> piece(B * chunk);
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t n = std::min(chunk, T - t0);
    for (int64_t b = 0; b < B; ++b) std::copy_n(inputs.data() + b * T + t0, n, piece.data() + b * n);
    model_forward(model, state, act, piece.data(), n);
    for (int64_t b = 0; b < B; ++b)
      std::copy_n(act.logits + b * n * V, n * V, logits.data() + (b * T + t0) * V);
  }
  return logits;
}

// Worst relative error (max-norm) of a fresh Decoder's logits against expected [T, V] of one
// stream: the first `prompt` tokens fed at once, then 1-token steps to the stream's end.
inline double decoder_worst_error(Decoder& decoder, const int32_t* stream, int64_t T,
                                  int64_t prompt, const float* expected) {
  const int64_t V = decoder.model->config.vocab_size;
  double worst = 0;
  auto compare = [&](int64_t t) {
    std::vector<double> want(expected + t * V, expected + (t + 1) * V);
    worst = std::max(worst, relative_error(decoder.logits.data(), want));
  };
  decoder_feed(decoder, stream, prompt);
  compare(prompt - 1);
  for (int64_t t = prompt; t < T; ++t) {
    decoder_step(decoder, stream[t]);
    compare(t);
  }
  return worst;
}

}  // namespace infini::test
