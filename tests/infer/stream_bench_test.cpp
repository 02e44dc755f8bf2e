// The measuring loop of `infini bench` (infer/stream_bench.h):
//   - decoding at a length happens on a copy of the state: the measured stream reaches the next
//     length with bit-identical logits, memories and cache whether or not decode measurements
//     (crossing a segment boundary in the probe) happened on the way;
//   - the decode at length L sees exactly the first L tokens: its greedy ids and final logits equal
//     those of a fresh decoder fed the same L tokens and stepped by an independent argmax;
//   - every repetition (after the warm-up) is the same stream;
//   - the token stream is a function of the position only; the bookkeeping adds up; mean / sd.
// All comparisons between runs of the engine are bit-exact: the same tokens go through the same
// chunk cuts on the same thread count, and the kernels are deterministic (core/parallel.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <vector>

#include "core/parallel.h"
#include "infer/stream_bench.h"
#include "test_support.h"

namespace infini {
namespace {

ModelConfig tiny_config() {
  ModelConfig c = config_load(std::string(INFINI_SOURCE_DIR) + "/configs/infini-tiny.json");
  c.attention.gate_init = 0.5;  // memory and local attention both in the output
  return c;
}

// What the measured stream looked like when it reached a length.
struct Snapshot {
  std::vector<float> logits, memory, cache;
  int64_t position = 0;
  std::vector<int64_t> rows;
};

Snapshot snapshot(const Decoder& d) {
  Snapshot s;
  s.logits = d.logits;
  s.memory.assign(d.state.all, d.state.all + d.state.count);
  s.cache.assign(d.state.cache_all, d.state.cache_all + d.state.cache_count);
  s.position = d.state.position;
  for (const LayerState& l : d.state.layers) s.rows.push_back(l.cache.rows);
  return s;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

int32_t argmax_lowest(const std::vector<float>& logits) {
  int32_t best = 0;
  for (size_t v = 1; v < logits.size(); ++v)
    if (logits[v] > logits[size_t(best)]) best = int32_t(v);
  return best;
}

class StreamBench : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    threads_init(1);  // bit-exactness holds for any fixed count; 1 keeps a loaded host fast
    model = new Model(model_create(tiny_config()));
    model_init_random(*model, 7);
  }
  static void TearDownTestSuite() { delete model; }
  static Model* model;
};
Model* StreamBench::model = nullptr;

// lengths 100, 300, 520 with segment 64 and chunks of 128: stretches start and end inside
// segments and chunks; 70 decoded tokens cross a segment boundary in the probe (a memory write).
StreamBenchOptions small_options(int64_t decode, int64_t reps) {
  StreamBenchOptions o;
  o.lengths = {100, 300, 520};
  o.decode = decode;
  o.reps = reps;
  o.chunk = 128;
  return o;
}

TEST_F(StreamBench, DecodingFromACopyLeavesTheStreamBitIdentical) {
  const BenchTokens tokens;
  std::map<int64_t, Snapshot> quiet, measured;
  StreamBenchHooks hooks;
  hooks.after_prefill = [&](int64_t, int64_t length, const Decoder& d) {
    quiet[length] = snapshot(d);
  };
  stream_bench_run(*model, small_options(0, 1), tokens, hooks);
  int64_t decodes = 0;
  hooks.after_prefill = [&](int64_t, int64_t length, const Decoder& d) {
    measured[length] = snapshot(d);
  };
  hooks.after_decode = [&](int64_t, int64_t, const Decoder& probe, const std::vector<int32_t>&) {
    ++decodes;
    EXPECT_GT(probe.state.position, 100);
  };
  stream_bench_run(*model, small_options(70, 1), tokens, hooks);
  EXPECT_EQ(decodes, 3);
  ASSERT_EQ(quiet.size(), 3u);
  for (const auto& [length, a] : quiet) {
    const Snapshot& b = measured.at(length);
    EXPECT_EQ(a.position, length);
    EXPECT_EQ(b.position, length);
    EXPECT_EQ(a.rows, b.rows);
    EXPECT_EQ(b.rows.front(), length % 64);
    EXPECT_TRUE(same_bits(a.logits, b.logits)) << "logits at " << length;
    EXPECT_TRUE(same_bits(a.memory, b.memory)) << "memories at " << length;
    EXPECT_TRUE(same_bits(a.cache, b.cache)) << "KV cache at " << length;
  }
  // the check can fail: the stream's logits do change along the stream
  EXPECT_FALSE(same_bits(quiet.at(300).logits, quiet.at(520).logits));
}

TEST_F(StreamBench, DecodeAtALengthSeesExactlyThatContext) {
  const BenchTokens tokens;
  const int64_t decode = 70;
  std::map<std::pair<int64_t, int64_t>, std::pair<std::vector<int32_t>, std::vector<float>>> got;
  StreamBenchHooks hooks;
  hooks.after_decode = [&](int64_t rep, int64_t length, const Decoder& probe,
                           const std::vector<int32_t>& ids) {
    EXPECT_EQ(probe.state.position, length + decode);
    got[{rep, length}] = {ids, probe.logits};
  };
  stream_bench_run(*model, small_options(decode, 2), tokens, hooks);
  ASSERT_EQ(got.size(), 6u);

  for (int64_t length : {100, 300, 520}) {
    // a fresh stream fed the same tokens, one decoder_feed per stretch (so the chunks are cut
    // where the bench cuts them: at the lengths and at multiples of 128), then greedy steps
    Decoder fresh = decoder_create(*model, 128);
    std::vector<int32_t> prompt(static_cast<size_t>(length));
    bench_tokens_fill(tokens, 256, 0, prompt.data(), length);
    for (int64_t at = 0; at < length;) {
      const int64_t next = at < 100 ? 100 : at < 300 ? 300 : 520;
      decoder_feed(fresh, prompt.data() + at, next - at);
      at = next;
    }
    std::vector<int32_t> ids;
    for (int64_t i = 0; i < decode; ++i) {
      ids.push_back(argmax_lowest(fresh.logits));
      decoder_step(fresh, ids.back());
    }
    for (int64_t rep : {0, 1}) {
      const auto& [bench_ids, bench_logits] = got.at({rep, length});
      EXPECT_EQ(bench_ids, ids) << "length " << length << " rep " << rep;
      EXPECT_TRUE(same_bits(bench_logits, fresh.logits)) << "length " << length << " rep " << rep;
    }
  }
}

TEST_F(StreamBench, BookkeepingAddsUp) {
  const StreamBenchOptions o = small_options(5, 3);
  std::vector<int64_t> progress;
  StreamBenchHooks hooks;
  hooks.progress = [&](int64_t done) { progress.push_back(done); };
  const StreamBenchResult r = stream_bench_run(*model, o, BenchTokens{}, hooks);
  ASSERT_EQ(r.reps.size(), 3u);
  EXPECT_EQ(r.chunk_tokens, 128);
  EXPECT_EQ(r.state_bytes, stream_state_bytes(model->config, 1));
  EXPECT_GT(r.warmup_seconds, 0);
  ASSERT_FALSE(progress.empty());
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_EQ(progress.back(), stream_bench_total_tokens(o));
  EXPECT_EQ(stream_bench_total_tokens(o), 3 * (520 + 3 * 5));
  int64_t last_rss = 0;
  for (const auto& rep : r.reps) {
    ASSERT_EQ(rep.size(), 3u);
    int64_t fed = 0;
    double total = 0;
    for (const StreamBenchPoint& p : rep) {
      fed += p.prefill_tokens;
      total += p.prefill_seconds;
      EXPECT_EQ(fed, p.length);
      EXPECT_DOUBLE_EQ(p.prefill_total_seconds, total);
      EXPECT_GT(p.prefill_seconds, 0);
      EXPECT_EQ(p.decode_tokens, 5);
      EXPECT_GT(p.decode_seconds, 0);
      EXPECT_DOUBLE_EQ(p.decode_ms_per_token(), 1e3 * p.decode_seconds / 5);
      EXPECT_DOUBLE_EQ(p.prefill_tokens_per_second(), double(p.prefill_tokens) / p.prefill_seconds);
      EXPECT_GE(p.peak_rss_bytes, last_rss);  // a process peak only grows
      last_rss = p.peak_rss_bytes;
    }
  }
}

TEST(StreamBenchTokens, AFunctionOfThePositionOnly) {
  BenchTokens random;
  std::vector<int32_t> whole(4000), parts(4000);
  bench_tokens_fill(random, 256, 1000, whole.data(), 4000);
  bench_tokens_fill(random, 256, 1000, parts.data(), 1234);
  bench_tokens_fill(random, 256, 2234, parts.data() + 1234, 2766);
  EXPECT_EQ(whole, parts);
  // uniform over [0, 256): 100,000 draws, each id expected 390.6 times (sd 19.7)
  std::vector<int32_t> many(100000);
  bench_tokens_fill(random, 256, 0, many.data(), int64_t(many.size()));
  std::vector<int> counts(256, 0);
  for (int32_t id : many) {
    ASSERT_GE(id, 0);
    ASSERT_LT(id, 256);
    ++counts[size_t(id)];
  }
  EXPECT_GT(*std::min_element(counts.begin(), counts.end()), 300);
  EXPECT_LT(*std::max_element(counts.begin(), counts.end()), 480);
  BenchTokens other;
  other.seed = 2;
  std::vector<int32_t> reseeded(4000);
  bench_tokens_fill(other, 256, 1000, reseeded.data(), 4000);
  EXPECT_NE(whole, reseeded);

  BenchTokens text;
  text.cycle = {5, 6, 7};
  std::vector<int32_t> cycled(5);
  bench_tokens_fill(text, 256, 4, cycled.data(), 5);
  EXPECT_EQ(cycled, (std::vector<int32_t>{6, 7, 5, 6, 7}));
}

TEST(StreamBenchStats, MeanAndSampleSd) {
  const MeanSd m = mean_sd({2, 4, 4, 4, 5, 5, 7, 9});
  EXPECT_DOUBLE_EQ(m.mean, 5);
  EXPECT_NEAR(m.sd, std::sqrt(32.0 / 7.0), 1e-12);  // n - 1 in the denominator
  const MeanSd one = mean_sd({3});
  EXPECT_DOUBLE_EQ(one.mean, 3);
  EXPECT_TRUE(std::isnan(one.sd));
}

TEST(StreamBenchOptionsCheck, RefusesBadOptions) {
  StreamBenchOptions o = small_options(1, 1);
  const auto message = [&] { return test::error_of([&] { stream_bench_check(o); }); };
  EXPECT_EQ(message(), "");
  o.lengths = {};
  EXPECT_NE(message().find("--lengths: no length"), std::string::npos) << message();
  o.lengths = {300, 100};
  EXPECT_NE(message().find("lengths must increase"), std::string::npos) << message();
  o.lengths = {0};
  EXPECT_NE(message().find("not positive"), std::string::npos) << message();
  o.lengths = {100};
  o.reps = 0;
  EXPECT_NE(message().find("--reps: is 0, must be >= 1"), std::string::npos) << message();
  o.reps = 1;
  o.decode = -1;
  EXPECT_NE(message().find("--decode: is -1, must be >= 0"), std::string::npos) << message();
  o.decode = 0;
  o.chunk = 0;
  EXPECT_NE(message().find("--chunk: is 0"), std::string::npos) << message();
}

TEST_F(StreamBench, RefusesTokensOutsideTheVocabulary) {
  BenchTokens bad;
  bad.cycle = {1, 2, 256};
  const std::string m = test::error_of([&] { stream_bench_run(*model, small_options(0, 1), bad); });
  EXPECT_NE(m.find("token id 256 is outside the model's vocabulary of 256 ids"), std::string::npos)
      << m;
}

}  // namespace
}  // namespace infini
