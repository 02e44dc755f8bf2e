// `infini bench` as a user runs it, on the tiny configuration with lengths of a few segments:
// the markdown table has a row per length, the CSV parses with its header and one row per
// length, the JSON's mean / sample sd agree with the repetitions it lists (recomputed here), and
// bad options get a clear message and a non-zero exit.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/config.h"
#include "model/model.h"
#include "test_support.h"

namespace infini {
namespace {

std::string g_dir;  // scratch folder with the tiny model in g_dir/m

class BenchCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g_dir = test::scratch_dir("bench_cli");
    const auto init = test::run_command(test::cli() + " init --config " + INFINI_SOURCE_DIR +
                                        "/configs/infini-tiny.json --out " + g_dir + "/m --seed 1");
    ASSERT_EQ(init.exit_code, 0) << init.output;
  }
};

// stdout only (the progress line goes to stderr, kept in g_dir/stderr.txt)
test::CommandResult bench(const std::string& args) {
  return test::run_command("{ " + test::cli() + " bench --model " + g_dir + "/m --threads 1 " +
                           args + " 2>" + g_dir + "/stderr.txt; }");
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// One CSV record (RFC 4180 quoting, no newlines inside fields).
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
      fields.back() += '"';
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

// Bytes of one stream's state of the tiny config, counted from the config: per layer M [Hkv, d, d]
// and z [Hkv, d], and the KV cache of one segment [2, N, Hkv, d] (plus up to 2 x 63 alignment).
int64_t tiny_state_floats() {
  const ModelConfig c = config_load(std::string(INFINI_SOURCE_DIR) + "/configs/infini-tiny.json");
  const int64_t Hkv = c.num_key_value_heads, d = c.head_dim, N = c.attention.segment_length;
  return c.num_hidden_layers * (Hkv * d * d + Hkv * d + 2 * N * Hkv * d);
}

TEST_F(BenchCli, MarkdownHasARowPerLength) {
  // unsorted, repeated lengths: measured once each, in increasing order
  const auto r = bench("--lengths 1K,64,256,64 --reps 2 --decode 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::vector<std::string> lines = lines_of(r.output);
  std::vector<std::string> rows;
  size_t header = lines.size();
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].rfind("| model | type | params | threads | length | prefill tok/s", 0) == 0)
      header = i;
    if (header < lines.size() && i > header + 1 && lines[i].rfind("| m |", 0) == 0)
      rows.push_back(lines[i]);
  }
  ASSERT_LT(header, lines.size()) << r.output;
  EXPECT_EQ(lines[header + 1].rfind("|---|", 0), 0u) << r.output;
  ASSERT_EQ(rows.size(), 3u) << r.output;
  const char* labels[] = {"64", "256", "1K"};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(
        rows[i].rfind(std::string("| m | infini-delta | 0.12 M | 1 | ") + labels[i] + " |", 0), 0u)
        << rows[i];
    // prefill, decode ms, decode tok/s: mean ± sd
    size_t pms = 0;
    for (size_t at = rows[i].find("±"); at != std::string::npos; at = rows[i].find("±", at + 1))
      ++pms;
    EXPECT_EQ(pms, 3u) << rows[i];
    EXPECT_NE(rows[i].find("MB |"), std::string::npos) << rows[i];
  }
  EXPECT_NE(r.output.find("1 threads, CPU "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2 repetitions"), std::string::npos) << r.output;
}

TEST_F(BenchCli, CsvParsesWithItsHeaderAndARowPerLength) {
  const auto r = bench("--lengths 64,256,1K --reps 2 --decode 4 --output csv");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::vector<std::string> lines = lines_of(r.output);
  ASSERT_EQ(lines.size(), 4u) << r.output;
  const std::vector<std::string> header = csv_fields(lines[0]);
  const std::vector<std::string> expected = {"model",
                                             "type",
                                             "params",
                                             "threads",
                                             "cpu",
                                             "chunk",
                                             "reps",
                                             "length",
                                             "prefill_tokens",
                                             "prefill_tokens_per_second_mean",
                                             "prefill_tokens_per_second_sd",
                                             "prefill_total_tokens_per_second_mean",
                                             "prefill_total_tokens_per_second_sd",
                                             "decode_tokens",
                                             "decode_ms_per_token_mean",
                                             "decode_ms_per_token_sd",
                                             "decode_tokens_per_second_mean",
                                             "decode_tokens_per_second_sd",
                                             "state_bytes",
                                             "peak_rss_bytes"};
  ASSERT_EQ(header, expected);
  const auto column = [&](const std::vector<std::string>& row, const std::string& name) {
    const size_t i = size_t(std::find(header.begin(), header.end(), name) - header.begin());
    return row.at(i);
  };
  const ModelConfig c = config_load(std::string(INFINI_SOURCE_DIR) + "/configs/infini-tiny.json");
  const int64_t lengths[] = {64, 256, 1024}, stretches[] = {64, 192, 768};
  for (size_t i = 0; i < 3; ++i) {
    const std::vector<std::string> row = csv_fields(lines[i + 1]);
    ASSERT_EQ(row.size(), header.size()) << lines[i + 1];
    EXPECT_EQ(column(row, "model"), "m");
    EXPECT_EQ(column(row, "type"), "infini-delta");
    EXPECT_EQ(std::stoll(column(row, "params")), config_parameter_count(c));
    EXPECT_EQ(column(row, "threads"), "1");
    EXPECT_EQ(column(row, "reps"), "2");
    EXPECT_EQ(std::stoll(column(row, "length")), lengths[i]);
    EXPECT_EQ(std::stoll(column(row, "prefill_tokens")), stretches[i]);
    EXPECT_EQ(column(row, "decode_tokens"), "4");
    for (const char* name : {"prefill_tokens_per_second_mean", "prefill_tokens_per_second_sd",
                             "prefill_total_tokens_per_second_mean", "decode_ms_per_token_mean",
                             "decode_ms_per_token_sd", "decode_tokens_per_second_mean",
                             "decode_tokens_per_second_sd"}) {
      const double x = std::stod(column(row, name));
      EXPECT_TRUE(std::isfinite(x) && x >= 0) << name << " = " << x;
    }
    EXPECT_GT(std::stod(column(row, "prefill_tokens_per_second_mean")), 0);
    const int64_t state = std::stoll(column(row, "state_bytes"));
    EXPECT_GE(state, 4 * tiny_state_floats());
    EXPECT_LT(state, 4 * tiny_state_floats() + 128);
    EXPECT_GT(std::stoll(column(row, "peak_rss_bytes")), state);
  }
}

void expect_mean_sd(const nlohmann::json& stats, const std::vector<double>& values,
                    const std::string& what) {
  double mean = 0, squares = 0;
  for (double v : values) mean += v;
  mean /= double(values.size());
  for (double v : values) squares += (v - mean) * (v - mean);
  const double sd = std::sqrt(squares / double(values.size() - 1));
  EXPECT_NEAR(stats["mean"].get<double>(), mean, 1e-12 * std::fabs(mean)) << what;
  EXPECT_NEAR(stats["sd"].get<double>(), sd, 1e-9 * std::fabs(mean) + 1e-300) << what;
}

TEST_F(BenchCli, JsonMeanAndSdAgreeWithItsRepetitions) {
  const auto r = bench("--lengths 64,200 --reps 3 --decode 3 --output json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["options"]["lengths"], nlohmann::json({64, 200}));
  EXPECT_EQ(j["options"]["reps"], 3);
  EXPECT_EQ(j["environment"]["threads"], 1);
  EXPECT_EQ(j["type"], "infini-delta");
  EXPECT_GE(j["state_bytes"].get<int64_t>(), 4 * tiny_state_floats());
  ASSERT_EQ(j["results"].size(), 2u);
  int64_t previous = 0;
  for (const nlohmann::json& row : j["results"]) {
    const int64_t length = row["length"];
    EXPECT_EQ(row["prefill_tokens"], length - previous);
    previous = length;
    const nlohmann::json& reps = row["repetitions"];
    ASSERT_EQ(reps.size(), 3u);
    std::vector<double> prefill, total, ms, rate;
    int64_t rss_max = 0;
    for (const nlohmann::json& p : reps) {
      const double s = p["prefill_seconds"], ds = p["decode_seconds"];
      const double expected = double(row["prefill_tokens"].get<int64_t>()) / s;
      EXPECT_NEAR(p["prefill_tokens_per_second"].get<double>(), expected, 1e-12 * expected);
      EXPECT_NEAR(p["decode_ms_per_token"].get<double>(), 1e3 * ds / 3, 1e-12);
      EXPECT_GE(p["prefill_total_seconds"].get<double>(), s);
      prefill.push_back(p["prefill_tokens_per_second"]);
      total.push_back(p["prefill_total_tokens_per_second"]);
      ms.push_back(p["decode_ms_per_token"]);
      rate.push_back(p["decode_tokens_per_second"]);
      rss_max = std::max(rss_max, p["peak_rss_bytes"].get<int64_t>());
    }
    expect_mean_sd(row["prefill_tokens_per_second"], prefill, "prefill");
    expect_mean_sd(row["prefill_total_tokens_per_second"], total, "prefill total");
    expect_mean_sd(row["decode_ms_per_token"], ms, "decode ms");
    expect_mean_sd(row["decode_tokens_per_second"], rate, "decode rate");
    EXPECT_EQ(row["peak_rss_bytes"], reps[0]["peak_rss_bytes"]);
    EXPECT_EQ(row["peak_rss_bytes_max"], rss_max);
  }
  // the first length's stretch is the whole way from 0
  for (const nlohmann::json& p : j["results"][0]["repetitions"])
    EXPECT_EQ(p["prefill_total_seconds"], p["prefill_seconds"]);
}

TEST_F(BenchCli, OneRepetitionHasNoSdAndDecodeZeroNoDecodeColumns) {
  const auto json = bench("--lengths 64 --reps 1 --decode 0 --output json");
  ASSERT_EQ(json.exit_code, 0) << json.output;
  const nlohmann::json j = nlohmann::json::parse(json.output);
  EXPECT_TRUE(j["results"][0]["prefill_tokens_per_second"]["sd"].is_null()) << json.output;
  EXPECT_GT(j["results"][0]["prefill_tokens_per_second"]["mean"].get<double>(), 0);
  EXPECT_TRUE(j["results"][0]["decode_ms_per_token"].is_null()) << json.output;
  const auto md = bench("--lengths 64 --reps 1 --decode 0");
  ASSERT_EQ(md.exit_code, 0) << md.output;
  EXPECT_EQ(md.output.find("| m | infini-delta | 0.12 M | 1 | 64 | ") != std::string::npos, true)
      << md.output;
  EXPECT_NE(md.output.find(" | - | - | "), std::string::npos) << md.output;
}

TEST_F(BenchCli, InputFileTokensAreRepeatedAsNeeded) {
  std::ofstream(g_dir + "/text.txt") << std::string(100, 'a');
  const auto r =
      bench("--lengths 300 --reps 1 --decode 2 --output json --input " + g_dir + "/text.txt");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  const std::string tokens = j["options"]["tokens"];
  EXPECT_NE(tokens.find("text.txt (100 byte tokens"), std::string::npos) << tokens;
}

TEST_F(BenchCli, BadOptionsGetAClearMessageAndNonZeroExit) {
  // a sentencepiece model whose tokenizer has more ids (300) than the model (280)
  std::ostringstream words;
  const char* vocabulary[] = {"stream ", "memory ",      "segment ",  "token ",   "attention ",
                              "the ",    "compressive ", "infinite ", "context ", "and\n"};
  for (int i = 0; i < 3000; ++i) words << vocabulary[(i * 7 + i / 3) % 10];
  std::ofstream(g_dir + "/words.txt") << words.str();
  const auto train = test::run_command(test::cli() + " tokenizer train --input " + g_dir +
                                       "/words.txt --vocab-size 300 --out " + g_dir + "/sp/tok");
  ASSERT_EQ(train.exit_code, 0) << train.output;
  nlohmann::json config = nlohmann::json::parse(
      test::read_bytes(std::string(INFINI_SOURCE_DIR) + "/configs/infini-tiny.json"));
  config["vocab_size"] = 280;
  config["tokenizer"] = {{"type", "sentencepiece"}, {"model_file", "tok.model"}};
  std::ofstream(g_dir + "/sp.json") << config.dump();
  const auto init = test::run_command(test::cli() + " init --config " + g_dir + "/sp.json --out " +
                                      g_dir + "/sp --seed 1");
  ASSERT_EQ(init.exit_code, 0) << init.output;
  std::ofstream(g_dir + "/empty.txt");
  std::ofstream(g_dir + "/text.txt") << "some text";

  const std::string m = " --model " + g_dir + "/m";
  struct Case {
    std::string args, expected;
  } cases[] = {
      {m + " --lengths 4G", "--lengths: '4G' is not a token count"},
      {m + " --lengths 1.5K", "'1.5K' is not a token count"},
      {m + " --lengths=-5", "'-5' is not a token count"},
      {m + " --lengths 0", "'0' is zero"},
      {m + " --lengths 64,,128", "'' is empty"},
      {m + " --lengths 64,", "ends in ','"},
      {m + " --lengths 99999999999M", "is too large"},
      {m + " --reps 0", "--reps: is 0, must be >= 1"},
      {m + " --decode -1", "--decode: is -1, must be >= 0"},
      {m + " --chunk 0", "--chunk: is 0, must be >= 1"},
      {m + " --output xml", "--output"},
      {" --model " + g_dir + "/missing", "missing: not a checkpoint directory"},
      {m + " --input " + g_dir + "/no_such.txt", "no_such.txt: cannot open the input file"},
      {m + " --input " + g_dir + "/empty.txt", "empty.txt: gives no tokens"},
      {" --model " + g_dir + "/sp --input " + g_dir + "/text.txt",
       "the sentencepiece tokenizer has 300 ids but the model only 280"},
  };
  for (const Case& c : cases) {
    std::string args = c.args;
    for (const char* flag : {"--lengths", "--reps", "--decode"})
      if (args.find(flag) == std::string::npos) args += std::string(" ") + flag + " 1";
    const auto r = test::run_command(test::cli() + " bench --threads 1" + args);
    EXPECT_NE(r.exit_code, 0) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
  }
  // the tokenizer is only needed for --input: pseudo-random ids run on the same model
  const auto random_ids = test::run_command(test::cli() + " bench --model " + g_dir +
                                            "/sp --lengths 64 --reps 1 --decode 1 --threads 1");
  EXPECT_EQ(random_ids.exit_code, 0) << random_ids.output;
}

}  // namespace
}  // namespace infini
