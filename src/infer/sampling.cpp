#include "infer/sampling.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/random.h"

namespace infini {

namespace {

// The next token from one row of logits [V].
int32_t pick_token(const float* logits, int64_t V, float temperature, Rng& rng) {
  int64_t best = 0;
  for (int64_t v = 1; v < V; ++v)
    if (logits[v] > logits[best]) best = v;
  if (temperature <= 0) return int32_t(best);
  std::vector<double> weights(V);  // softmax(logits / temperature), unnormalised
  double total = 0;
  for (int64_t v = 0; v < V; ++v) {
    weights[v] = std::exp((double(logits[v]) - double(logits[best])) / double(temperature));
    total += weights[v];
  }
  double target = rng.uniform() * total;
  for (int64_t v = 0; v < V; ++v) {
    target -= weights[v];
    if (target < 0) return int32_t(v);
  }
  return int32_t(best);  // rounding left a sliver past the end
}

}  // namespace

void sample_tokens(const Model& model, std::vector<int32_t>& tokens, int64_t max_new,
                   float temperature, uint64_t seed) {
  const ModelConfig& c = model.config;
  const int64_t N = c.attention.segment_length, V = c.vocab_size;
  if (tokens.empty())
    throw Error("sample", "the prompt gives no tokens", "give a prompt of at least one token");
  for (int32_t id : tokens)
    if (id < 0 || id >= V)
      throw Error("sample", str("prompt token ", id, " is outside the vocabulary (", V, ")"));

  Activations act = activations_create(c, 1, N, false);
  StreamState saved = stream_state_create(c, 1);  // the state at the start of the segment
  StreamState work = stream_state_create(c, 1);
  Rng rng(seed);

  // whole segments of the prompt go into the saved state; at least one token stays unfinished
  int64_t segment_start = 0;
  while (int64_t(tokens.size()) - segment_start > N) {
    model_forward(model, saved, act, tokens.data() + segment_start, N);
    segment_start += N;
  }
  for (int64_t i = 0; i < max_new; ++i) {
    const int64_t n = int64_t(tokens.size()) - segment_start;  // 1..N tokens of this segment
    stream_state_copy(work, saved);
    model_forward(model, work, act, tokens.data() + segment_start, n);
    tokens.push_back(pick_token(act.logits + (n - 1) * V, V, temperature, rng));
    if (n == N) {  // the segment is complete: its memory update becomes the saved state
      stream_state_copy(saved, work);
      segment_start += N;
    }
  }
}

std::string sample_text(const Model& model, const Tokenizer& tokenizer, const std::string& prompt,
                        int64_t max_new, float temperature, uint64_t seed) {
  std::vector<int32_t> tokens = tokenizer.encode(prompt);
  const size_t prompt_tokens = tokens.size();
  sample_tokens(model, tokens, max_new, temperature, seed);
  std::string text;
  for (size_t i = prompt_tokens; i < tokens.size(); ++i) text += tokenizer.token_bytes(tokens[i]);
  return text;
}

}  // namespace infini
