// `infini info` as a user runs it: the text lines, the JSON numbers against the spec's formulas
// worked out by hand, the live state measured after streaming against the formula and
// stream_state_bytes, a hand-written non-infini config.json (formulas from the config alone; the
// live part when the model code loads it), and clear refusals of bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "model/state_size.h"
#include "test_support.h"

namespace infini {
namespace {

using json = nlohmann::json;

std::string tiny_config() {
  return std::string(INFINI_SOURCE_DIR) + "/configs/infini-tiny.json";
}

// The tiny infini model (configs/infini-tiny.json), written once per test process.
const std::string& tiny_model() {
  static const std::string dir = [] {
    const std::string d = test::scratch_dir("info_cli") + "/tiny";
    const auto r =
        test::run_command(test::cli() + " init --config " + tiny_config() + " --out " + d);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return d;
  }();
  return dir;
}

json info_json(const std::string& args) {
  const auto r = test::run_command(test::cli() + " info " + args + " --json");
  EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.output;
  const size_t brace = r.output.find('{');
  if (r.exit_code != 0 || brace == std::string::npos) return json();
  return json::parse(r.output.substr(brace));
}

// Tiny: L 2, H 4, Hkv 2, d 16, D 64, F 192, V 256, N 64, tied embeddings.
TEST(InfoCli, InfiniModelJsonMatchesTheFormulasAndTheLiveState) {
  // T = 1000 = 15 N + 40: the stream stops 40 tokens into a segment
  const json j = info_json("--model " + tiny_model() + " --stream-length 1000");
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["type"], "infini");
  EXPECT_EQ(j["sizes"]["L"], 2);
  EXPECT_EQ(j["sizes"]["Hkv"], 2);
  EXPECT_EQ(j["sizes"]["d"], 16);
  EXPECT_EQ(j["attention"]["segment_length"], 64);
  EXPECT_EQ(j["attention"]["memory_update"], "delta");
  // per layer q,o 2*64*64 + k,v 2*32*64 + mlp 3*192*64 + norms 128 + gates 4 = 49284;
  // 2 layers + tied embeddings 256*64 + final norm 64
  EXPECT_EQ(j["parameters"]["count"], 2 * 49284 + 16384 + 64);
  EXPECT_EQ(j["parameters"]["bytes_fp32"], 4 * (2 * 49284 + 16384 + 64));
  EXPECT_EQ(j["stream_length"], 1000);

  const json& s = j["state"];
  EXPECT_EQ(s["formula"], "L*Hkv*d*(d+1)");
  EXPECT_EQ(s["formula_numbers"], "L*Hkv*d*(d+1) = 2*2*16*17");
  EXPECT_EQ(s["floats"], 1088);  // 2 * 2 * 16 * 17
  EXPECT_EQ(s["bytes"], 4352);
  EXPECT_EQ(s["full_attention_floats"], 128000);  // 2 * 2 * 2 * 16 * 1000
  EXPECT_NEAR(s["compression_vs_full"].get<double>(), 128000.0 / 1088.0, 1e-9);
  // held at T: the memories + 40 rows of K and V per layer: 2 * 2 * 2 * 16 * 40 = 5120
  EXPECT_EQ(s["in_use"]["memory_floats"], 1088);
  EXPECT_EQ(s["in_use"]["cache_rows_per_layer"], 40);
  EXPECT_EQ(s["in_use"]["cache_floats"], 5120);
  EXPECT_EQ(s["in_use"]["bytes"], 4 * 6208);

  // growth: 1000, 4K, 64K, 1M in order; the infini state is the same at each
  const json& g = j["growth"];
  ASSERT_EQ(g.size(), 4u);
  const int64_t lengths[] = {1000, 4096, 65536, 1048576};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(g[i]["stream_length"], lengths[i]);
    EXPECT_EQ(g[i]["floats"], 1088);
    EXPECT_EQ(g[i]["full_attention_floats"], 128 * lengths[i]);
  }
  EXPECT_NEAR(g[3]["compression_vs_full"].get<double>(), 128.0 * 1048576 / 1088, 1e-6);

  const json& e = j["effective_context"];
  EXPECT_EQ(e["unbounded"], true);
  EXPECT_EQ(e["per_layer"]["min"], 1);
  EXPECT_EQ(e["per_layer"]["max"], 64);

  // live: 1000 tokens streamed through the decoder; memories + the unfinished segment in use,
  // the allocation is stream_state_bytes: memories 2 * 2 * 16 * 17 floats + a cache of N rows,
  // 2 * 2 * 64 * 2 * 16 floats: 4352 + 32768 bytes
  const json& live = j["live"];
  ASSERT_EQ(live["available"], true) << live.dump();
  EXPECT_EQ(live["stream_length"], 1000);
  EXPECT_EQ(live["memory_floats"], 1088);
  EXPECT_EQ(live["cache_rows_per_layer"], 40);
  EXPECT_EQ(live["cache_capacity_rows"], 64);
  EXPECT_EQ(live["cache_floats"], 5120);
  EXPECT_EQ(live["fam_floats"], 0);
  EXPECT_EQ(live["in_use_bytes"], 4 * (1088 + 5120));
  EXPECT_EQ(live["matches_formula"], true);
  const int64_t state_bytes = int64_t(stream_state_bytes(config_load(tiny_config()), 1));
  EXPECT_EQ(state_bytes, 4352 + 32768);
  EXPECT_EQ(live["allocated_bytes"], state_bytes);
  EXPECT_EQ(live["stream_state_bytes"], state_bytes);
}

TEST(InfoCli, TextOutputAtTheDefaultLength) {
  const auto r = test::run_command(test::cli() + " info --model " + tiny_model());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* line :
       {"attention        infini, segment_length N 64, memory_update delta",
        "sizes            D 64, L 2, H 4, Hkv 2, d 16, F 192, V 256, tied embeddings",
        "parameters       115,016 (", "state between segments at T = 1,048,576 tokens",
        "formula        L*Hkv*d*(d+1) = 2*2*16*17", "state          1,088 floats",
        "full attention 134,217,728 floats", "compression    123361.9x (full attention",
        "| 4K | 1,088 |", "| 1M | 1,088 |", "live state (batch 1)",
        // auto: 8K tokens (T = 1M is a whole number of segments, so is 8K)
        "streamed       8,192 tokens", "KV cache       0 rows per layer in use (capacity 64)",
        "in use         4,352 bytes", "allocated      37,120 bytes",
        "formula        1,088 floats held at 8,192 tokens: matches", "effective context",
        "through stack  unbounded"})
    EXPECT_NE(r.output.find(line), std::string::npos) << "missing: " << line << "\n" << r.output;
}

TEST(InfoCli, LongStreamsAreMeasuredAtALengthWithTheSamePartialSegment) {
  // T = 1M + 10; measured at most 1000 tokens with T mod N = 10: 960 + 10 = 970
  const json j =
      info_json("--model " + tiny_model() + " --stream-length 1048586 --measure-length 1000");
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["live"]["stream_length"], 970);
  EXPECT_EQ(j["live"]["cache_rows_per_layer"], 10);
  EXPECT_EQ(j["state"]["in_use"]["cache_rows_per_layer"], 10);
  const json skipped = info_json("--model " + tiny_model() + " --measure-length 0");
  EXPECT_EQ(skipped["live"]["available"], false);
  EXPECT_NE(skipped["live"]["reason"].get<std::string>().find("skipped"), std::string::npos);
}

// Writes a config.json by hand: D 64, L 2, H 4, Hkv 2, d 16, F 192, V 256, N 32, untied.
std::string write_config(const std::string& dir, const std::string& attention) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << R"({"vocab_size": 256, "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "intermediate_size": 192, "attention": )"
                                      << attention << "}";
  return dir + "/config.json";
}

// The formula numbers of a hand-written bswa / fam config at T = 1000 = 31 N + 8.
void expect_block_formulas(const json& j, const std::string& type) {
  const bool fam = type == "fam";
  EXPECT_EQ(j["type"], type);
  // per layer q,o 2*64*64 + k,v 2*32*64 + mlp 3*192*64 + norms 128 = 49280, no gates; 2 layers,
  // embeddings and lm_head 2*256*64, final norm 64 (fam: + fam_embeddings 8*64)
  EXPECT_EQ(j["parameters"]["count"], 2 * 49280 + 32768 + 64 + (fam ? 512 : 0));
  // 2 L Hkv d N memory_blocks = 2*2*2*16*32*2 (fam: + L fam_length D = 2*8*64)
  const int64_t floats = 8192 + (fam ? 1024 : 0);
  EXPECT_EQ(j["state"]["floats"], floats);
  EXPECT_EQ(j["state"]["bytes"], 4 * floats);
  EXPECT_EQ(j["state"]["full_attention_floats"], 128000);  // 2*2*2*16*1000
  EXPECT_NEAR(j["state"]["compression_vs_full"].get<double>(), 128000.0 / double(floats), 1e-9);
  // held at T: the 2 previous blocks + 8 rows of the unfinished one, 128 floats per row
  EXPECT_EQ(j["state"]["in_use"]["cache_rows_per_layer"], 72);
  EXPECT_EQ(j["state"]["in_use"]["floats"], 128 * 72 + (fam ? 1024 : 0));
  for (const json& g : j["growth"]) EXPECT_EQ(g["floats"], floats);
  const json& e = j["effective_context"];
  EXPECT_EQ(e["unbounded"], fam);
  EXPECT_EQ(e["per_layer"]["min"], 65);  // MB N + 1
  EXPECT_EQ(e["per_layer"]["max"], 96);  // (MB + 1) N
  EXPECT_EQ(e["stack"]["min"], 129);     // L MB N + 1
  EXPECT_EQ(e["stack"]["max"], 160);     // (L MB + 1) N
}

void expect_block_live(const json& live, const std::string& type) {
  ASSERT_EQ(live["available"], true) << live.dump();
  EXPECT_EQ(live["stream_length"], 1000);
  EXPECT_EQ(live["memory_floats"], 0);
  EXPECT_EQ(live["cache_rows_per_layer"], 72);
  EXPECT_EQ(live["cache_floats"], 128 * 72);
  EXPECT_EQ(live["fam_floats"], type == "fam" ? 1024 : 0);
  EXPECT_EQ(live["matches_formula"], true);
  EXPECT_EQ(live["cache_capacity_rows"], 95);  // (MB + 1) N - 1
  EXPECT_EQ(live["allocated_bytes"], live["stream_state_bytes"]);
}

TEST(InfoCli, HandWrittenBlockConfigsGiveTheFormulasAndTheLiveStateWhenTheyLoad) {
  const std::string dir = test::scratch_dir("info_cli_block");
  const char* attentions[][2] = {
      {"bswa", R"({"type": "bswa", "segment_length": 32, "memory_blocks": 2})"},
      {"fam", R"({"type": "fam", "segment_length": 32, "memory_blocks": 2, "fam_length": 8})"}};
  for (const auto& [type, attention] : attentions) {
    SCOPED_TRACE(type);
    // config.json only: formulas, and the reason why nothing could be measured
    const std::string config = write_config(dir + "/" + type, attention);
    const json formulas = info_json("--model " + dir + "/" + type + " --stream-length 1000");
    expect_block_formulas(formulas, type);
    EXPECT_EQ(formulas["live"]["available"], false);
    EXPECT_FALSE(formulas["live"]["reason"].get<std::string>().empty());
    const auto text = test::run_command(test::cli() + " info --model " + dir + "/" + type);
    EXPECT_EQ(text.exit_code, 0) << text.output;
    EXPECT_NE(text.output.find("live measurement unavailable: "), std::string::npos) << text.output;

    // a checkpoint, when the model code accepts the type: the live state too
    const std::string model = dir + "/" + type + "_model";
    const auto init =
        test::run_command(test::cli() + " init --config " + config + " --out " + model);
    if (init.exit_code != 0) {
      EXPECT_EQ(std::string(type), "fam") << "bswa must load: " << init.output;
      continue;
    }
    const json j = info_json("--model " + model + " --stream-length 1000");
    expect_block_formulas(j, type);
    expect_block_live(j["live"], type);
  }
}

TEST(InfoCli, StreamLengthSuffixes) {
  const struct {
    const char* text;
    int64_t tokens;
  } cases[] = {{"4K", 4096}, {"4k", 4096}, {"2M", 2097152}, {"1000", 1000}};
  for (const auto& c : cases) {
    const json j = info_json("--model " + tiny_model() + " --measure-length 0 --stream-length " +
                             std::string(c.text));
    EXPECT_EQ(j["stream_length"], c.tokens) << c.text;
  }
}

TEST(InfoCli, BadInputGetsAClearMessageAndNonZeroExit) {
  const std::string dir = test::scratch_dir("info_cli_errors");
  const std::string m = " --model " + tiny_model();
  const struct {
    std::string args, expected;
  } cases[] = {
      {"--model " + dir + "/missing", dir + "/missing: cannot open"},
      {m + " --stream-length 0", "--stream-length: '0' is zero"},
      {m + " --stream-length=-5", "--stream-length: '-5' is negative"},
      {m + " --stream-length abc", "--stream-length: 'abc' is not a token count"},
      {m + " --stream-length 12Q", "'12Q' is not a token count"},
      {m + " --stream-length K", "'K' is not a token count"},
      {m + " --stream-length 99999999999999M", "is too large"},
      {m + " --measure-length lots", "--measure-length: 'lots' is not a token count"},
      {"--stream-length 4K", "--model"},
  };
  for (const auto& c : cases) {
    const auto r = test::run_command(test::cli() + " info " + c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace infini
