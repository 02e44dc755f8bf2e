// config.json: the spec's example, defaults, round trips, one test per invalid case (the message
// names the file and the key), parameter counts.
#include "model/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "core/error.h"

namespace infini {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const char* kWhere = "ckpt/config.json";

// Spec section 5's example.
json spec_example() {
  return json::parse(R"({ "model_type": "infini-transformer", "vocab_size": 256, "hidden_size": 256,
    "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 64,
    "intermediate_size": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "tie_word_embeddings": false,
    "attention": { "type": "infini", "segment_length": 256, "memory_update": "delta" },
    "tokenizer": { "type": "byte" } })");
}

json minimal() {
  return json::parse(R"({"vocab_size": 256, "hidden_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "intermediate_size": 512, "attention": {"segment_length": 64}})");
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no infini::Error thrown; expected one mentioning " << parts.front();
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message \"" << e.what() << "\" does not mention \"" << p << "\"";
  }
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "infini_config_XXXXXX").string();
    INFINI_CHECK(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

TEST(config, ReadsTheSpecExample) {
  ModelConfig c = config_from_json(spec_example(), kWhere);
  EXPECT_EQ(c.model_type, "infini-transformer");
  EXPECT_EQ(c.vocab_size, 256);
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.num_hidden_layers, 4);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.intermediate_size, 1024);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.attention.type, "infini");
  EXPECT_EQ(c.attention.segment_length, 256);
  EXPECT_EQ(c.attention.memory_update, "delta");
  EXPECT_EQ(c.attention.gate_init, 0.0);
  EXPECT_EQ(c.tokenizer.type, "byte");
}

TEST(config, Defaults) {
  ModelConfig c = config_from_json(minimal(), kWhere);
  EXPECT_EQ(c.model_type, "infini-transformer");
  EXPECT_EQ(c.head_dim, 32);  // hidden_size / num_attention_heads
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.attention.type, "infini");
  EXPECT_EQ(c.attention.memory_update, "delta");
  EXPECT_EQ(c.attention.gate_init, 0.0);
  EXPECT_EQ(c.tokenizer.type, "byte");
  EXPECT_EQ(c.tokenizer.model_file, "");
}

TEST(config, NullMeansDefaultAndUnknownKeysAreIgnored) {
  json j = minimal();
  j["head_dim"] = nullptr;
  j["num_key_value_heads"] = nullptr;
  j["architectures"] = {"LlamaForCausalLM"};
  j["torch_dtype"] = "bfloat16";
  j["attention"]["some_future_option"] = {{"x", 1}};
  ModelConfig c = config_from_json(j, kWhere);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.num_key_value_heads, 4);
}

TEST(config, ReadsAHuggingFaceLlamaConfig) {
  json j = json::parse(R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false,
    "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 5632, "max_position_embeddings": 2048,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 22,
    "num_key_value_heads": 4, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null,
    "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.35.0", "use_cache": true, "vocab_size": 32000,
    "attention": {"type": "full", "segment_length": 2048},
    "tokenizer": {"type": "sentencepiece", "model_file": "tokenizer.model"}})");
  ModelConfig c = config_from_json(j, kWhere);
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.tokenizer.model_file, "tokenizer.model");
  // TinyLlama-1.1B: the published parameter count.
  EXPECT_EQ(config_parameter_count(c), 1100048384);
}

TEST(config, JsonRoundTripForEveryAttentionType) {
  const char* attentions[] = {
      R"({"type": "infini", "segment_length": 64, "memory_update": "linear", "gate_init": -1.5})",
      R"({"type": "full", "segment_length": 64})",
      R"({"type": "sliding", "segment_length": 64, "window": 100})",
      R"({"type": "xl", "segment_length": 64})",
      R"({"type": "bswa", "segment_length": 64, "memory_blocks": 2})",
      R"({"type": "fam", "segment_length": 64, "memory_blocks": 1, "fam_length": 8})",
  };
  for (const char* a : attentions) {
    json j = minimal();
    j["attention"] = json::parse(a);
    j["tie_word_embeddings"] = true;
    j["rms_norm_eps"] = 1e-6;
    ModelConfig c = config_from_json(j, kWhere);
    json out = config_to_json(c);
    EXPECT_EQ(out["attention"], json::parse(a)) << a;  // exactly the fields the type uses
    ModelConfig back = config_from_json(out, kWhere);
    EXPECT_EQ(config_to_json(back), out) << a;
    EXPECT_EQ(back.attention.window, c.attention.window);
    EXPECT_EQ(back.attention.memory_blocks, c.attention.memory_blocks);
    EXPECT_EQ(back.attention.fam_length, c.attention.fam_length);
    EXPECT_EQ(back.attention.gate_init, c.attention.gate_init);
    EXPECT_EQ(back.rms_norm_eps, 1e-6);
    EXPECT_TRUE(back.tie_word_embeddings);
  }
}

TEST(config, SaveAndLoadFileOrDirectory) {
  TempDir dir;
  ModelConfig c = config_from_json(spec_example(), kWhere);
  c.attention.gate_init = 0.25;
  const std::string path = dir.file("config.json");
  config_save(c, path);
  EXPECT_EQ(config_to_json(config_load(path)), config_to_json(c));
  EXPECT_EQ(config_to_json(config_load(dir.path.string())), config_to_json(c));
  EXPECT_EQ(config_to_json(config_load(dir.path.string() + "/")), config_to_json(c));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()), 1);
}

TEST(config, LoadReportsFileProblems) {
  TempDir dir;
  const std::string path = dir.file("config.json");
  expect_error([&] { config_load(path); }, {path, "cannot open"});
  std::ofstream(path) << R"({"vocab_size": 256, "hidden_size": 64,)";
  expect_error([&] { config_load(path); }, {path, "invalid JSON"});
  std::ofstream(path) << R"({"vocab_size": 256, "vocab_size": 512})";
  expect_error([&] { config_load(path); }, {path, "duplicate key \"vocab_size\""});
  std::ofstream(path) << minimal().dump();
  EXPECT_EQ(config_load(path).hidden_size, 128);
  std::ofstream(path) << "[]";
  expect_error([&] { config_load(path); }, {path, "expected a JSON object"});
}

TEST(config, ParameterCount) {
  // Spec example, per layer: q,o 2*256*256 + k,v 2*256*256 + mlp 3*1024*256 + norms 2*256 +
  // gates 4 = 1049092; times 4 layers, plus embeddings, lm_head and the final norm.
  ModelConfig c = config_from_json(spec_example(), kWhere);
  EXPECT_EQ(config_parameter_count(c), 4 * 1049092 + 256 * 256 * 2 + 256);
  c.tie_word_embeddings = true;
  EXPECT_EQ(config_parameter_count(c), 4 * 1049092 + 256 * 256 + 256);
  c.attention.type = "fam";  // no gates; model.fam_embeddings [fam_length, D]
  c.attention.memory_blocks = 1;
  c.attention.fam_length = 8;
  EXPECT_EQ(config_parameter_count(c), 4 * 1049088 + 256 * 256 + 256 + 8 * 256);
}

// ---- invalid configs: one case each; the message names the file and the key ------------------

struct Invalid {
  const char* name;
  std::function<void(json&)> edit;
  std::vector<std::string> mentions;  // besides the file
};
void PrintTo(const Invalid& c, std::ostream* os) {
  *os << c.name;
}

std::vector<Invalid> invalid_cases() {
  auto set = [](const char* key, json value) { return [key, value](json& j) { j[key] = value; }; };
  auto erase = [](const char* key) { return [key](json& j) { j.erase(key); }; };
  auto attention = [](json value) {
    return [value](json& j) {
      for (const auto& [k, v] : value.items()) j["attention"][k] = v;
    };
  };
  return {
      {"NotAnObject", [](json& j) { j = json::array(); }, {"expected a JSON object"}},
      {"StringSize", set("hidden_size", "256"), {"\"hidden_size\"", "a string", "an integer"}},
      {"FloatSize", set("hidden_size", 256.0), {"\"hidden_size\"", "floating-point"}},
      {"BoolTie", set("tie_word_embeddings", "yes"), {"\"tie_word_embeddings\"", "true or false"}},
      {"StringEps", set("rms_norm_eps", "1e-5"), {"\"rms_norm_eps\"", "a number"}},
      {"HugeUnsigned",
       set("vocab_size", 18446744073709551615ull),
       {"\"vocab_size\"", "does not fit in int64"}},
      {"MissingVocab", erase("vocab_size"), {"\"vocab_size\"", "missing"}},
      {"MissingHidden", erase("hidden_size"), {"\"hidden_size\"", "missing"}},
      {"MissingLayers", erase("num_hidden_layers"), {"\"num_hidden_layers\"", "missing"}},
      {"MissingHeads", erase("num_attention_heads"), {"\"num_attention_heads\"", "missing"}},
      {"MissingIntermediate", erase("intermediate_size"), {"\"intermediate_size\"", "missing"}},
      {"MissingAttention", erase("attention"), {"\"attention\"", "missing", "segment_length"}},
      {"AttentionNotObject", set("attention", "infini"), {"\"attention\"", "an object"}},
      {"MissingSegmentLength",
       [](json& j) { j["attention"].erase("segment_length"); },
       {"\"attention.segment_length\"", "missing"}},
      {"ZeroHidden", set("hidden_size", 0), {"\"hidden_size\"", "is 0, must be >= 1"}},
      {"NegativeLayers", set("num_hidden_layers", -1), {"\"num_hidden_layers\"", "is -1"}},
      {"ZeroIntermediate", set("intermediate_size", 0), {"\"intermediate_size\"", "is 0"}},
      {"ZeroKvHeads", set("num_key_value_heads", 0), {"\"num_key_value_heads\"", "is 0"}},
      {"ZeroHeadDim", set("head_dim", 0), {"\"head_dim\"", "is 0"}},
      {"ZeroSegment", attention({{"segment_length", 0}}), {"\"attention.segment_length\"", "is 0"}},
      {"HeadsNotDivisible",
       set("num_key_value_heads", 3),
       {"\"num_key_value_heads\"", "3 does not divide num_attention_heads 4"}},
      {"HiddenNotDivisible",
       set("num_attention_heads", 3),
       {"\"head_dim\"", "128 is not divisible by num_attention_heads 3"}},
      {"OddHeadDim", set("head_dim", 33), {"\"head_dim\"", "must be even"}},
      {"ZeroEps", set("rms_norm_eps", 0), {"\"rms_norm_eps\"", "must be finite and > 0"}},
      {"NegativeEps", set("rms_norm_eps", -1e-5), {"\"rms_norm_eps\"", "> 0"}},
      {"ZeroTheta", set("rope_theta", 0.0), {"\"rope_theta\"", "> 0"}},
      {"UnknownModelType", set("model_type", "gpt2"), {"\"model_type\"", "\"gpt2\""}},
      {"UnknownAttention",
       attention({{"type", "ring"}}),
       {"\"attention.type\"", "unknown attention type \"ring\"", "\"sliding\""}},
      {"UnknownMemoryUpdate",
       attention({{"memory_update", "hebbian"}}),
       {"\"attention.memory_update\"", "\"hebbian\"", "\"linear\", \"delta\""}},
      {"SlidingWithoutWindow",
       attention({{"type", "sliding"}}),
       {"\"attention.window\"", "missing", "\"sliding\""}},
      {"SlidingZeroWindow",
       attention({{"type", "sliding"}, {"window", 0}}),
       {"\"attention.window\"", "is 0"}},
      {"BswaWithoutBlocks",
       attention({{"type", "bswa"}}),
       {"\"attention.memory_blocks\"", "missing", "\"bswa\""}},
      {"FamZeroBlocks",
       attention({{"type", "fam"}, {"memory_blocks", 0}, {"fam_length", 4}}),
       {"\"attention.memory_blocks\"", "is 0", "\"fam\""}},
      {"FamWithoutLength",
       attention({{"type", "fam"}, {"memory_blocks", 1}}),
       {"\"attention.fam_length\"", "missing"}},
      {"FamNegativeLength",
       attention({{"type", "fam"}, {"memory_blocks", 1}, {"fam_length", -1}}),
       {"\"attention.fam_length\"", "is -1"}},
      {"FamLengthTooLong",
       attention({{"type", "fam"}, {"memory_blocks", 1}, {"fam_length", 64}}),
       {"\"attention.fam_length\"", "< segment_length 64"}},
      {"UnknownTokenizer",
       set("tokenizer", {{"type", "bpe"}}),
       {"\"tokenizer.type\"", "\"bpe\"", "\"sentencepiece\""}},
      {"TokenizerNotObject", set("tokenizer", "byte"), {"\"tokenizer\"", "an object"}},
      {"SentencepieceWithoutModel",
       set("tokenizer", {{"type", "sentencepiece"}}),
       {"\"tokenizer.model_file\"", "missing"}},
      {"ByteVocabTooSmall", set("vocab_size", 100), {"\"vocab_size\"", "byte tokenizer"}},
      {"AbsurdHidden", set("hidden_size", int64_t(1) << 40), {"overflows int64"}},
      {"AbsurdVocab",
       [](json& j) {
         j["vocab_size"] = int64_t(1) << 50;
         j["hidden_size"] = 1 << 16;
       },
       {"overflows int64"}},
      {"AbsurdWindow",
       attention({{"type", "sliding"}, {"window", int64_t(1) << 62}}),
       {"\"attention\"", "state size overflows"}},
      {"GeluActivation", set("hidden_act", "gelu"), {"\"hidden_act\"", "\"gelu\""}},
      {"AttentionBias", set("attention_bias", true), {"\"attention_bias\"", "biases"}},
      {"RopeScaling",
       set("rope_scaling", {{"type", "linear"}, {"factor", 2.0}}),
       {"\"rope_scaling\"", "not supported"}},
  };
}

class config_invalid : public testing::TestWithParam<Invalid> {};

TEST_P(config_invalid, ThrowsNamingFileAndKey) {
  json j = minimal();
  GetParam().edit(j);
  std::vector<std::string> mentions = GetParam().mentions;
  mentions.push_back(kWhere);
  expect_error([&] { config_from_json(j, kWhere); }, mentions);
}

INSTANTIATE_TEST_SUITE_P(Cases, config_invalid, testing::ValuesIn(invalid_cases()),
                         [](const testing::TestParamInfo<Invalid>& p) { return p.param.name; });

TEST(config, ValidateRejectsNonFiniteValues) {
  // JSON cannot spell inf or nan; a config built in code can.
  ModelConfig c = config_from_json(minimal(), kWhere);
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ModelConfig bad = c;
  bad.rms_norm_eps = nan;
  expect_error([&] { config_validate(bad, kWhere); }, {kWhere, "\"rms_norm_eps\"", "finite"});
  bad = c;
  bad.rope_theta = inf;
  expect_error([&] { config_validate(bad, kWhere); }, {kWhere, "\"rope_theta\"", "finite"});
  bad = c;
  bad.attention.gate_init = nan;
  expect_error([&] { config_validate(bad, kWhere); },
               {kWhere, "\"attention.gate_init\"", "finite"});
  bad = c;
  bad.attention.type = "linear";
  expect_error([&] { config_validate(bad, kWhere); }, {kWhere, "\"attention.type\""});
  EXPECT_NO_THROW(config_validate(c, kWhere));
  expect_error([&] { config_save(bad, "/nonexistent/config.json"); },
               {"/nonexistent/config.json", "\"attention.type\""});
}

}  // namespace
}  // namespace infini
