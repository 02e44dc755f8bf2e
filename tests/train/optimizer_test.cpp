// The trainer's small parts on their own: AdamW against the equations written out in double, the
// treatment of each parameter kind, the gradient norm (the same bits for any thread count),
// clipping, the schedules, the data windows, the options (validation, saving, resume rules) and
// what the log prints.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/parallel.h"
#include "model/model.h"
#include "train/optimizer.h"
#include "train/options.h"
#include "train/schedule.h"
#include "train/train_data.h"
#include "train/train_log.h"
#include "train_test_support.h"

namespace infini {
namespace {

ModelConfig small_config() {
  ModelConfig c;
  c.vocab_size = 256;  // the byte tokenizer's
  c.hidden_size = 8;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 4;
  c.intermediate_size = 12;
  c.attention.segment_length = 4;
  return c;
}

struct Reference {  // one element of AdamW, in double
  double p, m = 0, v = 0;
  void step(double g, double lr, int t, double b1, double b2, double eps, double decay) {
    p *= 1 - lr * decay;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    p -= lr * (m / (1 - std::pow(b1, t))) / (std::sqrt(v / (1 - std::pow(b2, t))) + eps);
  }
};

TEST(AdamW, MatchesTheEquationsPerParameterKind) {
  const ModelConfig c = small_config();
  Model model = model_create(c);
  model_init_random(model, 3);
  Arena grad_storage(model.storage.used());
  Parameters grads = parameters_layout(c, grad_storage);
  AdamWSettings s;
  s.weight_decay = 0.1;
  s.gate_lr_mult = 10;
  AdamW opt = adamw_create(c, model.weights, s);
  std::vector<Reference> ref(model.weights.count);
  for (int64_t i = 0; i < model.weights.count; ++i) ref[i].p = model.weights.all[i];

  Rng rng(5);
  const double lr = 1e-2;
  for (int t = 1; t <= 4; ++t) {
    for (int64_t i = 0; i < grads.count; ++i) grads.all[i] = float(rng.normal());
    adamw_update(opt, model.weights, grads, lr);
    for (const ParameterGroup& g : opt.groups)
      for (int64_t i = g.offset; i < g.offset + g.count; ++i)
        ref[i].step(grads.all[i], lr * g.lr_mult, t, 0.9, 0.95, 1e-8, g.decay ? 0.1 : 0.0);
  }
  EXPECT_EQ(opt.step, 4);
  for (const ParameterGroup& g : opt.groups) {
    double worst = 0;
    for (int64_t i = g.offset; i < g.offset + g.count; ++i)
      worst = std::max(worst, std::fabs(model.weights.all[i] - ref[i].p));
    // float32 arithmetic on values of size ~1 and steps of size ~lr: a few ulps
    EXPECT_LT(worst, 1e-6) << g.name;
  }
  // decay on matrices only; the gates take the multiplier
  for (const ParameterGroup& g : opt.groups) {
    const bool matrix = g.name.ends_with("proj.weight") || g.name == "lm_head.weight";
    EXPECT_EQ(g.decay, matrix) << g.name;
    EXPECT_EQ(g.lr_mult, g.name.ends_with("memory_gate") ? 10.0 : 1.0) << g.name;
  }
}

TEST(AdamW, DecayEmbeddingsOnlyWhenAsked) {
  const ModelConfig c = small_config();
  Model model = model_create(c);
  AdamWSettings s;
  s.decay_embeddings = true;
  const AdamW opt = adamw_create(c, model.weights, s);
  for (const ParameterGroup& g : opt.groups) {
    if (g.name == "model.embed_tokens.weight") {
      EXPECT_TRUE(g.decay);
    }
  }
}

TEST(AdamW, SavesAndLoadsTheMomentsExactly) {
  const ModelConfig c = small_config();
  Model model = model_create(c);
  model_init_random(model, 1);
  Arena grad_storage(model.storage.used());
  Parameters grads = parameters_layout(c, grad_storage);
  AdamW a = adamw_create(c, model.weights, {});
  for (int64_t i = 0; i < grads.count; ++i) grads.all[i] = float(i % 7) - 3.1f;
  adamw_update(a, model.weights, grads, 1e-3);
  adamw_update(a, model.weights, grads, 1e-3);
  const std::string dir = test::scratch_dir("adamw_save");
  adamw_save(a, c, dir + "/optimizer.safetensors");
  AdamW b = adamw_create(c, model.weights, {});
  adamw_load(b, c, dir + "/optimizer.safetensors");
  EXPECT_EQ(b.step, 2);
  EXPECT_EQ(std::memcmp(a.exp_avg.all, b.exp_avg.all, sizeof(float) * a.exp_avg.count), 0);
  EXPECT_EQ(std::memcmp(a.exp_avg_sq.all, b.exp_avg_sq.all, sizeof(float) * a.exp_avg_sq.count), 0);
}

TEST(GradientNorm, SameBitsForAnyThreadCountAndClipsLikePyTorch) {
  const ModelConfig c = small_config();
  Arena measure = Arena::measuring();
  parameters_layout(c, measure);
  Arena storage(measure.used());
  Parameters grads = parameters_layout(c, storage);
  Rng rng(9);
  double exact = 0;
  for (int64_t i = 0; i < grads.count; ++i) {
    grads.all[i] = float(rng.normal());
    exact += double(grads.all[i]) * grads.all[i];
  }
  threads_init(1);
  const double one = gradient_norm(grads);
  threads_init(2);
  const double two = gradient_norm(grads);
  threads_init(0);
  EXPECT_EQ(one, two);
  EXPECT_NEAR(one, std::sqrt(exact), 1e-12 * std::sqrt(exact));

  const double before = gradients_clip(grads, one / 4);
  EXPECT_EQ(before, one);
  EXPECT_NEAR(gradient_norm(grads), one / 4 * one / (one + 1e-6), 1e-5 * one);
  EXPECT_EQ(gradients_clip(grads, 0), gradient_norm(grads));  // 0: no clipping
}

TEST(Schedule, WarmupCosineAndConstant) {
  LearningRateSchedule s{"cosine", 1.0, 0.1, 10, 110};
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 0), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 9), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 10), 1.0);
  EXPECT_NEAR(learning_rate_at(s, 60), 0.55, 1e-12);  // half way down
  EXPECT_NEAR(learning_rate_at(s, 110), 0.1, 1e-12);
  EXPECT_NEAR(learning_rate_at(s, 500), 0.1, 1e-12);  // past the end: the floor
  s.kind = "constant";
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 5), 0.6);
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 100), 1.0);
  s.warmup = 0;
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 0), 1.0);
}

TEST(TrainData, SequentialWindowsFollowTheDocumentedFormula) {
  const std::string dir = test::scratch_dir("train_data_windows");
  std::vector<int32_t> ids(100);
  for (int i = 0; i < 100; ++i) ids[i] = i;
  token_shard_write(dir + "/s.tokens", ids, 256);
  const TokenShard shard = TokenShard::open(dir + "/s.tokens");
  BatchReader reader;
  reader.order = "sequential";
  reader.batch = 3;
  reader.seq_len = 16;  // W = 99 / 16 = 6 windows
  std::vector<int32_t> inputs(48), targets(48);
  for (int step = 0; step < 3; ++step) {
    batch_next(reader, shard, inputs.data(), targets.data());
    for (int b = 0; b < 3; ++b) {
      const int start = ((step * 3 + b) % 6) * 16;
      EXPECT_EQ(inputs[b * 16], start) << "step " << step << " row " << b;
      EXPECT_EQ(inputs[b * 16 + 15], start + 15);
      EXPECT_EQ(targets[b * 16], start + 1);
      EXPECT_EQ(targets[b * 16 + 15], start + 16);
    }
  }
  EXPECT_EQ(reader.rows_read, 9);

  reader.order = "random";
  for (int i = 0; i < 200; ++i) {
    batch_next(reader, shard, inputs.data(), targets.data());
    for (int b = 0; b < 3; ++b) EXPECT_LE(targets[b * 16 + 15], 99);
    for (int b = 0; b < 3; ++b) EXPECT_EQ(targets[b * 16], inputs[b * 16] + 1);
  }
  const std::vector<int64_t> eval = eval_window_starts(shard, 3, 16);
  EXPECT_EQ(eval, (std::vector<int64_t>{0, 32, 64}));
  EXPECT_EQ(eval_window_starts(shard, 8, 16).back(), 16);  // more windows than fit: repeats
}

TEST(TrainOptions, ValidationNamesTheFlag) {
  const ModelConfig c = small_config();
  TrainOptions o;
  train_options_resolve(o, c);
  EXPECT_EQ(o.seq_len, 32);  // 8 segments
  EXPECT_DOUBLE_EQ(o.min_lr, o.lr / 10);
  EXPECT_NO_THROW(train_options_validate(o, c));
  auto message = [&](TrainOptions bad) {
    try {
      train_options_validate(bad, c);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  TrainOptions bad = o;
  bad.seq_len = 30;
  EXPECT_NE(message(bad).find("--seq-len: 30 tokens is not a multiple"), std::string::npos);
  bad = o;
  bad.recompute_chunk = 12;
  EXPECT_NE(message(bad).find("--recompute-chunk"), std::string::npos);
  bad = o;
  bad.min_lr = 1;
  EXPECT_NE(message(bad).find("--min-lr"), std::string::npos);
  bad = o;
  bad.schedule = "linear";
  EXPECT_NE(message(bad).find("--schedule"), std::string::npos);
}

TEST(TrainOptions, JsonRoundTripAndResumeRules) {
  TrainOptions o;
  o.lr = 3e-4;
  o.seed = 0xfedcba9876543210ull;
  o.data_order = "sequential";
  o.sample_prompt = "In the beginning";
  const TrainOptions back = train_options_from_json(train_options_to_json(o), "test");
  EXPECT_EQ(train_options_to_json(back), train_options_to_json(o));

  TrainOptions given;
  given.steps = 5000;
  given.lr = 1;  // not set on the command line: ignored
  given.threads = 1;
  const TrainOptions resumed = train_options_for_resume(o, given, {"--steps", "--threads"});
  EXPECT_EQ(resumed.steps, 5000);
  EXPECT_EQ(resumed.threads, 1);
  EXPECT_EQ(resumed.lr, 3e-4);
  EXPECT_EQ(resumed.seed, o.seed);
  EXPECT_THROW(train_options_for_resume(o, given, {"--lr"}), Error);
  EXPECT_THROW(train_options_for_resume(o, given, {"--batch"}), Error);
}

}  // namespace
}  // namespace infini

namespace infini {
namespace {

TEST(TrainLog, PrintableTextKeepsUtf8AndReplacesTheRest) {
  EXPECT_EQ(printable_text("In the beginning\n\tGod"), "In the beginning\n\tGod");
  EXPECT_EQ(printable_text("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");  // é €
  EXPECT_EQ(printable_text("a\xff"
                           "b"),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(printable_text("\x1b[2J"), "\xef\xbf\xbd[2J");  // no terminal escapes
  EXPECT_EQ(printable_text("\xc3"), "\xef\xbf\xbd");        // cut in the middle
  EXPECT_EQ(printable_text("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // surrogate
  EXPECT_EQ(duration_words(42), "42s");
  EXPECT_EQ(duration_words(192), "3m12s");
  EXPECT_EQ(duration_words(3720), "1h02m");
}

}  // namespace
}  // namespace infini
