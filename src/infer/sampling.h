// Picking the next token from a row of logits, and the end-of-training sample built on it.
//
// temperature 0 is greedy: the most likely token (ties: the lowest id), no randomness used.
// Otherwise, from p_v ∝ exp(logit_v / temperature):
//   top_k > 0   keep the k most likely tokens (ties broken by the lower id);
//   top_p < 1   keep the smallest set of the most likely tokens whose probability (after top_k)
//               reaches top_p (nucleus sampling; at least one token);
// then draw one token from what is kept, renormalised, with one uniform number from a seeded Rng
// (core/random.h): u * total walked through the kept tokens (in id order when nothing is cut,
// in order of probability otherwise). The same seed, logits and options give the same tokens on
// every machine; the Rng's state can be saved and restored (infer/session.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/random.h"
#include "data/tokenizer.h"
#include "model/model.h"

namespace infini {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // 0: no cut
  double top_p = 1.0;        // 1: no cut; (0, 1]
  uint64_t seed = 0;
};

// Throws infini::Error naming the option when one is out of range.
void sampling_options_check(const SamplingOptions& options);

struct Sampler {
  SamplingOptions options;
  Rng rng;
  std::vector<double> weights;  // [V] unnormalised probabilities
  std::vector<int32_t> order;   // [V] candidate ids
};

Sampler sampler_create(const SamplingOptions& options, int64_t vocab);
// The next token from logits [V]; allocates nothing.
int32_t sampler_pick(Sampler& sampler, const float* logits);

// Continues `prompt` (encoded with `tokenizer`; it must give at least one token) by `max_new`
// tokens and returns the text of the new tokens only (used for the samples written during
// training). temperature 0: greedy; otherwise plain sampling with `seed`.
std::string sample_text(const Model& model, const Tokenizer& tokenizer, const std::string& prompt,
                        int64_t max_new, float temperature, uint64_t seed);

// The same on token ids: appends max_new sampled ids to `tokens` (which must not be empty).
void sample_tokens(const Model& model, std::vector<int32_t>& tokens, int64_t max_new,
                   float temperature, uint64_t seed);

}  // namespace infini
