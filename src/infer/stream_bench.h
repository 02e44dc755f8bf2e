// The measuring loop of `infini bench` (llama-bench style, issue 5): prefill speed, decode speed
// and memory of one stream as it grows to lengths such as 4K, 64K and 1M tokens.
//
// Each repetition resets one stream (a Decoder) and feeds it, in chunks of `chunk` tokens cut at
// multiples of `chunk` stream positions, up to every length in increasing order, so the longest
// length costs one pass and the shorter ones are points on the way:
//   prefill   the time of the stretch from the previous length (0 for the first) to this one,
//             feeding only (token generation and progress reports are outside the timed calls);
//             tokens/s of the stretch, and of the whole way from 0 (cumulative), are reported.
//   decode    at each length the stream's state is copied (stream_state_copy) into a second
//             decoder, the probe, and `decode` tokens are decoded greedily there, one
//             decoder_step each: the first from the stream's logits, each next from the probe's
//             (sampler_pick at temperature 0, ties to the lowest id). The timed loop is
//             pick + step per token; the copy is not timed. The measured stream itself is never
//             touched by decoding, so the next stretch continues exactly as without it, and
//             decoding at length L sees exactly L tokens of context.
//   memory    the process's peak RSS after each length (decode included) and the stream state's
//             size (memories + KV cache of one segment: the same at every length by design).
// Warm-up (untimed, before the first repetition): min(chunk, smallest length) tokens fed and
// min(decode, 16) tokens decoded, then the stream is reset; it pays oneDNN's JIT, the OpenMP
// threads' start and the first touch of every scratch page.
//
// Nothing here grows with the length: the tokens are produced one chunk at a time (a seeded hash
// of the position, or a cycle over a fixed token list), so the peak RSS of a 1M-token run is that
// of a 64K-token one.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "infer/decoder.h"
#include "model/model.h"

namespace infini {

// The bench's token stream: the token at stream position p is cycle[p % cycle.size()], or, when
// `cycle` is empty, a pseudo-random id in [0, vocab) from a hash of (seed, p) (uniform like the
// PyTorch baseline's torch.randint; the speed of this model does not depend on the ids).
struct BenchTokens {
  std::vector<int32_t> cycle;
  uint64_t seed = 1;
};

// Fills out[0, n) with the tokens at positions [position, position + n).
void bench_tokens_fill(const BenchTokens& tokens, int64_t vocab, int64_t position, int32_t* out,
                       int64_t n);

struct StreamBenchOptions {
  std::vector<int64_t> lengths;  // strictly increasing, >= 1
  int64_t decode = 128;          // tokens decoded at each length (0: no decode measurement)
  int64_t reps = 3;              // >= 1
  int64_t chunk = 4096;          // tokens per prefill call (rounded down to whole segments)
  bool warmup = true;
};

// One length in one repetition.
struct StreamBenchPoint {
  int64_t length = 0;
  int64_t prefill_tokens = 0;        // the stretch ending at `length`
  double prefill_seconds = 0;        // its feeding time
  double prefill_total_seconds = 0;  // feeding time from position 0 to `length`
  int64_t decode_tokens = 0;
  double decode_seconds = 0;   // pick + step for each of the decode_tokens
  int64_t peak_rss_bytes = 0;  // of the process, after this length's prefill and decode

  double prefill_tokens_per_second() const;        // of the stretch
  double prefill_total_tokens_per_second() const;  // from 0
  double decode_ms_per_token() const;              // 0 when nothing was decoded
  double decode_tokens_per_second() const;
};

struct StreamBenchResult {
  std::vector<std::vector<StreamBenchPoint>> reps;  // [reps][lengths]
  int64_t chunk_tokens = 0;                         // the chunk actually used (whole segments)
  size_t state_bytes = 0;                           // one stream's StreamState
  size_t decoder_bytes = 0;  // the stream's and the probe's state + scratch, all allocated once
  double warmup_seconds = 0;
};

// Optional observers (each may be empty). progress: tokens fed + decoded so far over the whole
// run (warm-up excluded), after every chunk and every decoded token block. after_prefill: the
// measured stream when it reaches a length (before the decode measurement there). after_decode:
// the probe after decoding at a length, and the ids it decoded.
struct StreamBenchHooks {
  std::function<void(int64_t done)> progress;
  std::function<void(int64_t rep, int64_t length, const Decoder& stream)> after_prefill;
  std::function<void(int64_t rep, int64_t length, const Decoder& probe,
                     const std::vector<int32_t>& decoded)>
      after_decode;
};

// Throws infini::Error naming the option when one is out of range.
void stream_bench_check(const StreamBenchOptions& options);
// Tokens the run feeds and decodes in all (what `progress` counts up to).
int64_t stream_bench_total_tokens(const StreamBenchOptions& options);

StreamBenchResult stream_bench_run(const Model& model, const StreamBenchOptions& options,
                                   const BenchTokens& tokens, const StreamBenchHooks& hooks = {});

// Mean and sample standard deviation (n - 1); sd is NaN for fewer than 2 values.
struct MeanSd {
  double mean = 0, sd = 0;
};
MeanSd mean_sd(const std::vector<double>& values);

}  // namespace infini
