#include "infer/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace infini {

double PerplexityResult::perplexity() const {
  return std::exp(mean_nll());
}
double PerplexityResult::bits_per_byte() const {
  return bytes ? total_nll / std::log(2.0) / double(bytes) : 0;
}

PerplexityResult perplexity_stream(const Model& model, std::istream& in, std::FILE* per_token,
                                   Progress* progress, int64_t chunk_tokens) {
  const ModelConfig& c = model.config;
  if (c.tokenizer.type != "byte")
    throw Error("ppl", "tokenizer '" + c.tokenizer.type + "' is not supported by ppl yet",
                "use a byte-level model");
  if (c.vocab_size < 256)
    throw Error("ppl",
                str("a byte-level model needs vocab_size >= 256, this one has ", c.vocab_size));
  // Several segments per chunk: each layer then runs its projections and MLP as GEMMs over all
  // of them at once (the memory recurrence still goes segment by segment). The buffers are sized
  // for one chunk, so memory stays flat whatever the input's length.
  const int64_t N = c.attention.segment_length, V = c.vocab_size;
  const int64_t chunk = N * std::max<int64_t>(1, chunk_tokens / N);
  const auto start = std::chrono::steady_clock::now();
  Activations act = activations_create(c, 1, chunk, false);
  StreamState state = stream_state_create(c, 1);
  std::vector<int32_t> tokens(chunk + 1);  // inputs [0, n), targets [1, n]
  std::vector<char> bytes(chunk + 1);

  auto read_into = [&](int64_t at, int64_t count) {
    in.read(bytes.data(), count);
    const int64_t got = in.gcount();
    for (int64_t i = 0; i < got; ++i)
      tokens[at + i] = int32_t(static_cast<unsigned char>(bytes[i]));
    if (in.bad()) throw Error("ppl", "read error on the input");
    return got;
  };

  PerplexityResult r;
  int64_t have = read_into(0, chunk + 1);
  while (have >= 2) {
    const int64_t n = have - 1;  // a full segment when the input goes on
    model_forward(model, state, act, tokens.data(), n);
    r.total_nll += model_loss(act, tokens.data() + 1, n, V);
    r.tokens += n;
    if (per_token)
      for (int64_t i = 0; i < n; ++i) std::fprintf(per_token, "%.10g\n", double(act.losses[i]));
    if (progress) progress->update(r.tokens + 1);
    tokens[0] = tokens[n];
    have = 1 + read_into(1, chunk);
  }
  r.bytes = r.tokens;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace infini
