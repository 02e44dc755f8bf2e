#include "infer/decoder.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace infini {

namespace {

void check_ids(const int32_t* tokens, int64_t count, int64_t V) {
  for (int64_t i = 0; i < count; ++i)
    if (tokens[i] < 0 || tokens[i] >= V)
      throw Error("decoder",
                  str("token id ", tokens[i], " (input token ", i,
                      ") is outside the model's vocabulary of ", V, " ids"),
                  "the tokenizer does not match this model");
}

}  // namespace

Decoder decoder_create(const Model& model, int64_t chunk_tokens) {
  const ModelConfig& c = model.config;
  const int64_t N = c.attention.segment_length;
  Decoder d;
  d.model = &model;
  d.chunk_tokens = N * std::max<int64_t>(1, chunk_tokens / N);
  d.state = stream_state_create(c, 1);
  d.chunk = activations_create(c, 1, d.chunk_tokens, false);
  d.step = activations_create(c, 1, 1, false);
  d.logits.assign(size_t(c.vocab_size), 0.0f);
  return d;
}

void decoder_reset(Decoder& d) {
  stream_state_reset(d.state);
  std::fill(d.logits.begin(), d.logits.end(), 0.0f);
}

void decoder_step(Decoder& d, int32_t token) {
  const int64_t V = d.model->config.vocab_size;
  check_ids(&token, 1, V);
  model_forward(*d.model, d.state, d.step, &token, 1);
  std::memcpy(d.logits.data(), d.step.logits, size_t(V) * sizeof(float));
}

void decoder_feed(Decoder& d, const int32_t* tokens, int64_t count) {
  const int64_t V = d.model->config.vocab_size, C = d.chunk_tokens;
  INFINI_CHECK(count >= 0, "negative token count ", count);
  check_ids(tokens, count, V);
  for (int64_t at = 0; at < count;) {
    // up to the next multiple of C in stream positions
    const int64_t n = std::min(count - at, C - d.state.position % C);
    if (n == 1) {
      decoder_step(d, tokens[at]);
    } else {
      model_forward(*d.model, d.state, d.chunk, tokens + at, n, LogitRows::last);
      std::memcpy(d.logits.data(), d.chunk.logits, size_t(V) * sizeof(float));
    }
    at += n;
  }
}

}  // namespace infini
