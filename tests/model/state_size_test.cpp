// model/state_size.h: the spec's state formulas (§2-§4) against numbers worked out by hand for
// every attention type, the rows a stream holds against the attention policies' own count
// (kv_cache_rows_needed), overflow at absurd stream lengths, the effective context, and the live
// measurement of a StreamState after streaming through a Decoder against the formula.
#include <gtest/gtest.h>

#include <limits>

#include "attention/attention_policy.h"
#include "infer/decoder.h"
#include "model/model.h"
#include "model/state_size.h"

namespace infini {
namespace {

constexpr int64_t kHuge = std::numeric_limits<int64_t>::max();

// L 2, H 4, Hkv 2, d 8, D 32, F 48, V 256, N 16; window 20, memory_blocks 3, fam_length 4.
ModelConfig small(const std::string& type) {
  ModelConfig c;
  c.vocab_size = 256;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.intermediate_size = 48;
  c.attention.type = type;
  c.attention.segment_length = 16;
  if (type == "sliding") c.attention.window = 20;
  if (type == "bswa" || type == "fam") c.attention.memory_blocks = 3;
  if (type == "fam") c.attention.fam_length = 4;
  config_validate(c, "small " + type);
  return c;
}

const char* const kTypes[] = {"infini", "full", "sliding", "xl", "bswa", "fam"};

int64_t floats_at(const ModelConfig& c, int64_t T) {
  int64_t n = -1;
  EXPECT_TRUE(state_floats(c, T, &n)) << c.attention.type << " T " << T;
  return n;
}

TEST(StateSize, SpecFormulasOnTheBaselineConfig) {
  ModelConfig c = config_load(std::string(INFINI_SOURCE_DIR) + "/configs/infini-base.json");
  ASSERT_EQ(c.attention.type, "infini");
  // L 4, Hkv 4, d 64: 4 * 4 * 64 * 65, whatever the stream length
  for (int64_t T : {int64_t(1), int64_t(256), int64_t(1) << 20, kHuge})
    EXPECT_EQ(floats_at(c, T), 66560) << T;
  EXPECT_EQ(state_formula(c), "L*Hkv*d*(d+1)");
  EXPECT_EQ(state_formula(c, 1 << 20), "L*Hkv*d*(d+1) = 4*4*64*65");
  // per layer q,o 2*256*256 + k,v 2*256*256 + mlp 3*1024*256 + norms 2*256 + gates 4 = 1049092;
  // 4 layers + embeddings + lm_head + final norm
  int64_t params = 0;
  ASSERT_TRUE(count_parameters(c, &params));
  EXPECT_EQ(params, 4 * 1049092 + 256 * 256 * 2 + 256);
  EXPECT_EQ(params, config_parameter_count(c));

  // full attention on the same sizes at 1M tokens: 2 * 4 * 4 * 64 * 2^20
  c.attention.type = "full";
  EXPECT_EQ(floats_at(c, 1 << 20), int64_t(2147483648));
  EXPECT_EQ(state_formula(c, 1 << 20), "2*L*Hkv*d*T = 2*4*4*64*1048576");
}

// The Infini-attention paper's Table 2 model (12 layers, 8 heads of 128, segment 2048): "memory
// (floats)" 1.6M for Infini-Transformer (Table 1: d (d + 1) H l) and 50M for Transformer-XL with
// a 2048-token cache ((d_key + d_value) H N l).
TEST(StateSize, ThePapersTable2MemoryColumn) {
  ModelConfig c = small("infini");
  c.hidden_size = 1024;
  c.num_hidden_layers = 12;
  c.num_attention_heads = c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.intermediate_size = 4096;
  c.attention.segment_length = 2048;
  EXPECT_EQ(floats_at(c, 32768), 1585152);  // 12 * 8 * 128 * 129 = 1.6M
  c.attention.type = "xl";
  EXPECT_EQ(floats_at(c, 32768), 50331648);  // 2 * 12 * 8 * 128 * 2048 = 50M
}

TEST(StateSize, SpecFormulasForEveryTypeOnASmallConfig) {
  // 2 L Hkv d = 2 * 2 * 2 * 8 = 64 floats per cached row
  EXPECT_EQ(floats_at(small("infini"), 100), 288);    // 2 * 2 * 8 * 9
  EXPECT_EQ(floats_at(small("full"), 100), 6400);     // 64 * 100
  EXPECT_EQ(floats_at(small("full"), 7), 448);        // 64 * 7
  EXPECT_EQ(floats_at(small("sliding"), 100), 1280);  // 64 * 20
  EXPECT_EQ(floats_at(small("xl"), 100), 1024);       // 64 * 16
  EXPECT_EQ(floats_at(small("bswa"), 100), 3072);     // 64 * 16 * 3
  EXPECT_EQ(floats_at(small("fam"), 100), 3328);      // 3072 + 2 * 4 * 32
  EXPECT_EQ(state_formula(small("fam"), 100),
            "2*L*Hkv*d*N*memory_blocks + L*fam_length*D = 2*2*2*8*16*3 + 2*4*32");
  // parameters: per layer q,o 2*32*32 + k,v 2*16*32 + mlp 3*48*32 + norms 64 = 7744 (+ 4 gates
  // for infini); 2 layers + embeddings 2 * 256 * 32 + final norm 32 (+ fam rows 4 * 32)
  int64_t params = 0;
  ASSERT_TRUE(count_parameters(small("xl"), &params));
  EXPECT_EQ(params, 2 * 7744 + 2 * 8192 + 32);
  ASSERT_TRUE(count_parameters(small("infini"), &params));
  EXPECT_EQ(params, 2 * 7748 + 2 * 8192 + 32);
  ASSERT_TRUE(count_parameters(small("fam"), &params));
  EXPECT_EQ(params, 2 * 7744 + 2 * 8192 + 32 + 128);
}

TEST(StateSize, StateHeldAtAStreamLength) {
  struct Case {
    const char* type;
    int64_t T, rows, total;
  } cases[] = {
      // T = 100 = 6 N + 4: four tokens into segment 6
      {"infini", 100, 4, 288 + 64 * 4},  // memories + the unfinished segment
      {"full", 100, 100, 6400},
      {"sliding", 100, 19, 64 * 19},    // window - 1
      {"xl", 100, 20, 64 * 20},         // the previous segment + 4
      {"bswa", 100, 52, 64 * 52},       // 3 blocks + 4
      {"fam", 100, 52, 64 * 52 + 256},  // + L fam_length D
      // T = 48: a segment boundary
      {"infini", 48, 0, 288},
      {"sliding", 48, 19, 64 * 19},
      {"xl", 48, 16, 64 * 16},
      {"bswa", 48, 48, 64 * 48},
      // T = 5: before any window fills
      {"infini", 5, 5, 288 + 64 * 5},
      {"sliding", 5, 5, 64 * 5},
      {"xl", 5, 5, 64 * 5},
      {"bswa", 5, 5, 64 * 5},
      {"fam", 0, 0, 256},
  };
  for (const Case& k : cases) {
    const ModelConfig c = small(k.type);
    const std::optional<StateInUse> s = state_in_use(c, k.T);
    ASSERT_TRUE(s) << k.type;
    EXPECT_EQ(s->cache_rows, k.rows) << k.type << " T " << k.T;
    EXPECT_EQ(s->cache_floats, 64 * k.rows) << k.type << " T " << k.T;
    EXPECT_EQ(s->total_floats, k.total) << k.type << " T " << k.T;
    EXPECT_EQ(s->bytes(), 4 * k.total) << k.type;
  }
}

// The rows a stream holds agree with what the attention policies say the next token attends to.
TEST(StateSize, CacheRowsAgreeWithTheAttentionPolicies) {
  for (const char* type : {"full", "sliding", "xl", "bswa", "fam"}) {
    const ModelConfig c = small(type);
    const AttentionConfig& a = c.attention;
    // fam's block rows attend as bswa's (spec §4); its FAM rows live outside the cache
    const KvPolicy policy =
        kv_policy(a.type == "fam" ? "bswa" : a.type, a.segment_length, a.window, a.memory_blocks);
    for (int64_t T = 0; T <= 300; ++T) {
      ASSERT_EQ(cache_rows_in_use(c, T), kv_cache_rows_needed(policy, T)) << type << " T " << T;
      if (a.type != "full") {
        ASSERT_LE(cache_rows_in_use(c, T), kv_cache_max_rows(policy));
      }
    }
  }
  for (int64_t T = 0; T <= 100; ++T) EXPECT_EQ(cache_rows_in_use(small("infini"), T), T % 16);
}

TEST(StateSize, HugeStreamLengthsAndSizesReportOverflowInsteadOfWrapping) {
  const ModelConfig full = small("full");
  int64_t n = 0;
  // 64 * T overflows beyond 2^57
  EXPECT_TRUE(state_floats(full, int64_t(1) << 56, &n));
  EXPECT_EQ(n, int64_t(1) << 62);
  EXPECT_FALSE(state_floats(full, int64_t(1) << 57, &n));
  EXPECT_FALSE(state_floats(full, kHuge, &n));
  EXPECT_FALSE(state_in_use(full, kHuge));
  EXPECT_FALSE(state_in_use(full, int64_t(1) << 55));  // 2^61 floats: its bytes overflow
  const std::optional<StateInUse> big = state_in_use(full, int64_t(1) << 54);
  ASSERT_TRUE(big);
  EXPECT_EQ(big->total_floats, int64_t(1) << 60);
  EXPECT_EQ(big->bytes(), int64_t(1) << 62);
  for (const char* type : kTypes) {
    const ModelConfig c = small(type);
    if (c.attention.type != "full") {
      EXPECT_TRUE(state_floats(c, kHuge, &n)) << type;  // bounded state: T does not matter
      ASSERT_TRUE(state_in_use(c, kHuge)) << type;
    }
    const EffectiveContext e = effective_context(c, kHuge);
    EXPECT_GE(e.stack.max, e.stack.min);
    EXPECT_GE(e.stack.min, 1);
  }
  ModelConfig absurd = small("bswa");
  absurd.attention.memory_blocks = int64_t(1) << 60;
  EXPECT_FALSE(state_floats(absurd, 1, &n));
  absurd = small("xl");
  absurd.vocab_size = int64_t(1) << 40;
  absurd.hidden_size = int64_t(1) << 30;
  EXPECT_FALSE(count_parameters(absurd, &n));
}

TEST(StateSize, EffectiveContext) {
  struct Case {
    const char* type;
    int64_t T;
    bool unbounded;
    ContextSpan layer, stack;
  } cases[] = {
      {"infini", 1000, true, {1, 16}, {1, 16}},
      {"full", 1000, false, {1000, 1000}, {1000, 1000}},
      {"sliding", 1000, false, {20, 20}, {39, 39}},  // L (window - 1) + 1
      {"xl", 1000, false, {17, 32}, {33, 48}},       // N + 1 .. 2N; L N + 1 .. (L + 1) N
      {"bswa", 1000, false, {49, 64}, {97, 112}},    // MB N + 1 .. (MB + 1) N; L MB N + 1 ..
      {"fam", 1000, true, {49, 64}, {97, 112}},
      {"bswa", 50, false, {49, 50}, {50, 50}},  // capped by the stream
      {"sliding", 10, false, {10, 10}, {10, 10}},
  };
  for (const Case& k : cases) {
    const EffectiveContext e = effective_context(small(k.type), k.T);
    EXPECT_EQ(e.unbounded, k.unbounded) << k.type;
    EXPECT_EQ(e.layer.min, k.layer.min) << k.type << " T " << k.T;
    EXPECT_EQ(e.layer.max, k.layer.max) << k.type << " T " << k.T;
    EXPECT_EQ(e.stack.min, k.stack.min) << k.type << " T " << k.T;
    EXPECT_EQ(e.stack.max, k.stack.max) << k.type << " T " << k.T;
    EXPECT_FALSE(e.note.empty());
  }
}

// The live state after streaming T tokens through the decoder holds what the formula says, for
// every type the model code accepts; a fixed-size state is exactly stream_state_bytes.
TEST(StateSize, LiveStateAfterStreamingMatchesTheFormula) {
  int accepted = 0;
  for (const char* type : kTypes) {
    const ModelConfig c = small(type);
    Model model;
    try {
      model = model_create(c);
    } catch (const Error& e) {
      // TransformerFAM may not be implemented yet; every softmax baseline must be
      EXPECT_EQ(std::string(type), "fam") << e.what();
      continue;
    }
    ++accepted;
    model_init_random(model, 7);
    Decoder decoder = decoder_create(model, 32);
    std::vector<int32_t> tokens(300);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 37 + 11) % 256);
    int64_t fed = 0;
    for (int64_t T : {1, 5, 16, 48, 100, 300}) {
      decoder_feed(decoder, tokens.data() + fed, T - fed);
      fed = T;
      const StateMeasured m = stream_state_measure(c, decoder.state);
      const std::optional<StateInUse> f = state_in_use(c, T);
      ASSERT_TRUE(f);
      EXPECT_EQ(m.position, T) << type;
      EXPECT_EQ(m.memory_floats, f->memory_floats) << type << " T " << T;
      EXPECT_EQ(m.cache_rows, f->cache_rows) << type << " T " << T;
      EXPECT_EQ(m.cache_floats, f->cache_floats) << type << " T " << T;
      EXPECT_EQ(m.fam_floats, f->fam_floats) << type << " T " << T;
      EXPECT_EQ(m.in_use_bytes, f->bytes()) << type << " T " << T;
      const int64_t fresh = int64_t(stream_state_bytes(c, 1));
      if (c.attention.type == "full") {
        EXPECT_GE(m.cache_capacity_rows, T);
        EXPECT_GE(m.allocated_bytes, m.in_use_bytes);
      } else {
        EXPECT_EQ(m.allocated_bytes, fresh) << type;
        EXPECT_EQ(m.cache_capacity_rows, kv_cache_capacity(c)) << type;
      }
    }
  }
  EXPECT_GE(accepted, 5);
}

}  // namespace
}  // namespace infini
