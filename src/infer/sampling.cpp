#include "infer/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "infer/decoder.h"

namespace infini {

void sampling_options_check(const SamplingOptions& o) {
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature))
    throw Error("--temperature", str("is ", o.temperature, ", must be a finite number >= 0"),
                "0 picks the most likely token");
  if (o.top_k < 0)
    throw Error("--top-k", str("is ", o.top_k, ", must be >= 0"), "0 keeps every token");
  if (!(o.top_p > 0 && o.top_p <= 1))
    throw Error("--top-p", str("is ", o.top_p, ", must be in (0, 1]"), "1 keeps every token");
}

Sampler sampler_create(const SamplingOptions& options, int64_t vocab) {
  sampling_options_check(options);
  INFINI_CHECK(vocab >= 1, "a vocabulary of ", vocab, " ids");
  Sampler s;
  s.options = options;
  s.rng = Rng(options.seed);
  s.weights.resize(size_t(vocab));
  s.order.resize(size_t(vocab));
  return s;
}

int32_t sampler_pick(Sampler& s, const float* logits) {
  const SamplingOptions& o = s.options;
  const int64_t V = int64_t(s.weights.size());
  int64_t best = 0;
  for (int64_t v = 1; v < V; ++v)
    if (logits[v] > logits[best]) best = v;
  if (o.temperature <= 0) return int32_t(best);

  const double top = logits[best], inv_t = 1.0 / o.temperature;
  auto weight = [&](int64_t v) { return std::exp((double(logits[v]) - top) * inv_t); };
  const bool cut_k = o.top_k > 0 && o.top_k < V, cut_p = o.top_p < 1;
  if (!cut_k && !cut_p) {  // every token, in id order
    double total = 0;
    for (int64_t v = 0; v < V; ++v) total += s.weights[v] = weight(v);
    double target = s.rng.uniform() * total;
    for (int64_t v = 0; v < V; ++v) {
      target -= s.weights[v];
      if (target < 0) return int32_t(v);
    }
    return int32_t(best);  // rounding left a sliver past the end
  }

  // candidates sorted by probability (ties: lower id first), cut to top_k, then to top_p
  int32_t* order = s.order.data();
  std::iota(order, order + V, 0);
  auto more_likely = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  int64_t kept = V;
  if (cut_k) {
    kept = o.top_k;
    std::nth_element(order, order + kept, order + V, more_likely);
  }
  std::sort(order, order + kept, more_likely);
  double total = 0;
  for (int64_t i = 0; i < kept; ++i) total += s.weights[i] = weight(order[i]);
  if (cut_p) {
    const double needed = o.top_p * total;
    double sum = 0;
    int64_t i = 0;
    while (i < kept && (i == 0 || sum < needed)) sum += s.weights[i++];
    kept = i;
    total = sum;
  }
  double target = s.rng.uniform() * total;
  for (int64_t i = 0; i < kept; ++i) {
    target -= s.weights[i];
    if (target < 0) return order[i];
  }
  return order[0];
}

void sample_tokens(const Model& model, std::vector<int32_t>& tokens, int64_t max_new,
                   float temperature, uint64_t seed) {
  if (tokens.empty())
    throw Error("sample", "the prompt gives no tokens", "give a prompt of at least one token");
  // scratch for the prompt's length (rounded to whole segments), at most the default chunk
  Decoder decoder = decoder_create(model, std::min<int64_t>(4096, int64_t(tokens.size())));
  Sampler sampler = sampler_create({double(temperature), 0, 1.0, seed}, model.config.vocab_size);
  decoder_feed(decoder, tokens.data(), int64_t(tokens.size()));
  for (int64_t i = 0; i < max_new; ++i) {
    tokens.push_back(sampler_pick(sampler, decoder.logits.data()));
    if (i + 1 < max_new) decoder_step(decoder, tokens.back());
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
