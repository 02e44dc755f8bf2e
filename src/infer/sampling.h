// Text generation for the end-of-training sample: simple and exact, not fast.
//
// The model is causal within a segment and carries the memory (M, z) from one segment to the
// next (spec §2). The sampler keeps the stream state at the start of the current, unfinished
// segment; for each new token it runs the forward pass over the unfinished segment's tokens from
// a copy of that state and takes the last row's logits. When the segment reaches segment_length
// tokens, the state after it becomes the saved state and a new segment starts. Every token thus
// sees exactly what a forward pass over the whole text would give it, at a cost of O(N) tokens of
// forward pass per generated token (a KV-cache decoder is a later issue).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/model.h"

namespace infini {

// Continues `prompt` (encoded with `tokenizer`; it must give at least one token) by `max_new`
// tokens and returns the text of the new tokens only. temperature 0: the most likely token
// (greedy); otherwise sampled from softmax(logits / temperature) with a generator seeded by
// `seed` (the same seed, model and prompt give the same text).
std::string sample_text(const Model& model, const Tokenizer& tokenizer, const std::string& prompt,
                        int64_t max_new, float temperature, uint64_t seed);

// The same on token ids: appends max_new sampled ids to `tokens` (which must not be empty).
void sample_tokens(const Model& model, std::vector<int32_t>& tokens, int64_t max_new,
                   float temperature, uint64_t seed);

}  // namespace infini
