#include "infer/stream_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/progress.h"
#include "infer/sampling.h"

namespace infini {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Feeds `stream` from its position up to `length`, in calls that end at multiples of C stream
// positions (so the chunk cuts are those of one decoder_feed over the whole stream); returns the
// feeding time. `buffer` holds C tokens.
double feed_to(Decoder& stream, const BenchTokens& tokens, int64_t length,
               std::vector<int32_t>& buffer, int64_t& done, const StreamBenchHooks& hooks) {
  const int64_t V = stream.model->config.vocab_size, C = stream.chunk_tokens;
  double seconds = 0;
  while (stream.state.position < length) {
    const int64_t at = stream.state.position, n = std::min(length - at, C - at % C);
    bench_tokens_fill(tokens, V, at, buffer.data(), n);
    const auto start = Clock::now();
    decoder_feed(stream, buffer.data(), n);
    seconds += seconds_since(start);
    done += n;
    if (hooks.progress) hooks.progress(done);
  }
  return seconds;
}

// Decodes `count` tokens greedily in `probe` from a copy of `stream`'s state; returns the time
// of the picks and steps (the copy excluded). decoded: [count], already sized.
double decode_from_copy(Decoder& probe, const Decoder& stream, Sampler& greedy, int64_t count,
                        std::vector<int32_t>& decoded) {
  if (count == 0) return 0;
  stream_state_copy(probe.state, stream.state);
  const auto start = Clock::now();
  int32_t token = sampler_pick(greedy, stream.logits.data());
  for (int64_t i = 0; i < count; ++i) {
    decoded[size_t(i)] = token;
    decoder_step(probe, token);
    if (i + 1 < count) token = sampler_pick(greedy, probe.logits.data());
  }
  return seconds_since(start);
}

}  // namespace

void bench_tokens_fill(const BenchTokens& tokens, int64_t vocab, int64_t position, int32_t* out,
                       int64_t n) {
  if (!tokens.cycle.empty()) {
    const int64_t size = int64_t(tokens.cycle.size());
    for (int64_t i = 0; i < n; ++i) out[i] = tokens.cycle[size_t((position + i) % size)];
    return;
  }
  const uint64_t key = splitmix64(tokens.seed);
  for (int64_t i = 0; i < n; ++i)
    out[i] = int32_t(splitmix64(key ^ uint64_t(position + i)) % uint64_t(vocab));
}

double StreamBenchPoint::prefill_tokens_per_second() const {
  return prefill_seconds > 0 ? double(prefill_tokens) / prefill_seconds : 0;
}
double StreamBenchPoint::prefill_total_tokens_per_second() const {
  return prefill_total_seconds > 0 ? double(length) / prefill_total_seconds : 0;
}
double StreamBenchPoint::decode_ms_per_token() const {
  return decode_tokens > 0 ? 1e3 * decode_seconds / double(decode_tokens) : 0;
}
double StreamBenchPoint::decode_tokens_per_second() const {
  return decode_seconds > 0 ? double(decode_tokens) / decode_seconds : 0;
}

void stream_bench_check(const StreamBenchOptions& o) {
  if (o.lengths.empty()) throw Error("--lengths", "no length given", "e.g. --lengths 4K,64K,1M");
  for (size_t i = 0; i < o.lengths.size(); ++i) {
    if (o.lengths[i] < 1)
      throw Error("--lengths", str("length ", o.lengths[i], " is not positive"));
    if (i > 0 && o.lengths[i] <= o.lengths[i - 1])
      throw Error("--lengths",
                  str("lengths must increase: ", o.lengths[i], " after ", o.lengths[i - 1]));
  }
  if (o.reps < 1) throw Error("--reps", str("is ", o.reps, ", must be >= 1"));
  if (o.decode < 0) throw Error("--decode", str("is ", o.decode, ", must be >= 0"));
  if (o.chunk < 1) throw Error("--chunk", str("is ", o.chunk, ", must be >= 1"));
  const int64_t most = std::numeric_limits<int64_t>::max() / 4;
  if (o.lengths.back() > most / o.reps || o.decode > most / o.reps / int64_t(o.lengths.size()))
    throw Error("bench", "the run is too long to count its tokens");
}

int64_t stream_bench_total_tokens(const StreamBenchOptions& o) {
  return o.reps * (o.lengths.back() + o.decode * int64_t(o.lengths.size()));
}

StreamBenchResult stream_bench_run(const Model& model, const StreamBenchOptions& o,
                                   const BenchTokens& tokens, const StreamBenchHooks& hooks) {
  stream_bench_check(o);
  const ModelConfig& c = model.config;
  const int64_t V = c.vocab_size, N = c.attention.segment_length;
  for (int32_t id : tokens.cycle)
    if (id < 0 || id >= V)
      throw Error("bench",
                  str("token id ", id, " is outside the model's vocabulary of ", V, " ids"),
                  "the tokenizer does not match this model");

  // everything is allocated here, before anything is timed
  Decoder stream = decoder_create(model, o.chunk);
  Decoder probe = decoder_create(model, N);  // decodes from a copy of `stream`'s state
  SamplingOptions greedy_options;
  greedy_options.temperature = 0;
  Sampler greedy = sampler_create(greedy_options, V);
  std::vector<int32_t> buffer(size_t(stream.chunk_tokens)), decoded(size_t(o.decode));

  StreamBenchResult r;
  r.chunk_tokens = stream.chunk_tokens;
  r.state_bytes = stream_state_bytes(c, 1);
  r.decoder_bytes = 2 * r.state_bytes + activations_bytes(c, 1, stream.chunk_tokens, false) +
                    activations_bytes(c, 1, probe.chunk_tokens, false) +
                    2 * activations_bytes(c, 1, 1, false);

  if (o.warmup) {
    const auto start = Clock::now();
    int64_t ignored = 0;
    feed_to(stream, tokens, std::min(stream.chunk_tokens, o.lengths.front()), buffer, ignored, {});
    decode_from_copy(probe, stream, greedy, std::min<int64_t>(o.decode, 16), decoded);
    r.warmup_seconds = seconds_since(start);
  }

  int64_t done = 0;
  for (int64_t rep = 0; rep < o.reps; ++rep) {
    decoder_reset(stream);
    std::vector<StreamBenchPoint> points;
    double total = 0;
    int64_t previous = 0;
    for (int64_t length : o.lengths) {
      StreamBenchPoint p;
      p.length = length;
      p.prefill_tokens = length - previous;
      p.prefill_seconds = feed_to(stream, tokens, length, buffer, done, hooks);
      total += p.prefill_seconds;
      p.prefill_total_seconds = total;
      if (hooks.after_prefill) hooks.after_prefill(rep, length, stream);
      p.decode_tokens = o.decode;
      p.decode_seconds = decode_from_copy(probe, stream, greedy, o.decode, decoded);
      if (o.decode > 0) {
        done += o.decode;
        if (hooks.progress) hooks.progress(done);
        if (hooks.after_decode) hooks.after_decode(rep, length, probe, decoded);
      }
      p.peak_rss_bytes = peak_rss_bytes();
      points.push_back(p);
      previous = length;
    }
    r.reps.push_back(std::move(points));
  }
  return r;
}

MeanSd mean_sd(const std::vector<double>& values) {
  MeanSd m;
  const size_t n = values.size();
  if (n == 0) return {std::nan(""), std::nan("")};
  for (double v : values) m.mean += v;
  m.mean /= double(n);
  if (n < 2) {
    m.sd = std::nan("");
    return m;
  }
  double squares = 0;
  for (double v : values) squares += (v - m.mean) * (v - m.mean);
  m.sd = std::sqrt(squares / double(n - 1));
  return m;
}

}  // namespace infini
