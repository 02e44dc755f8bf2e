// `infini init` and `infini ppl` as a user runs them: per-token agreement with an independent
// double-precision implementation of the spec (tests/reference/infini_ref.py ppl), JSON output,
// and clear refusals of bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/random.h"
#include "reference_case.h"

namespace infini {
namespace {

// Text-like bytes: words from a small vocabulary, so the model sees repeats across segments.
void write_text(const std::string& path, int64_t bytes, uint64_t seed) {
  const char* words[] = {"the ", "memory ", "of ", "a ", "stream ", "keeps ", "what ",
                         "it ", "read ", "long ", "ago. ", "And ", "then\n"};
  Rng rng(seed);
  std::string text;
  while (int64_t(text.size()) < bytes) text += words[rng.below(13)];
  text.resize(bytes);
  std::ofstream(path, std::ios::binary) << text;
}

TEST(PplCli, PerTokenNllMatchesDoublePrecisionReference) {
  const std::string dir = test::scratch_dir("ppl_reference");
  // the reference's random model has O(1) logits (unlike a fresh init), so per-token NLLs vary
  ASSERT_NO_FATAL_FAILURE(test::run_reference(
      "make-case --out " + dir + "/model --seed 3 --batch 1 --seq-len 4 --vocab 256 --hidden 32 "
      "--layers 2 --heads 4 --kv-heads 2 --head-dim 8 --ffn 48 --segment 16 --update delta"));
  write_text(dir + "/input.txt", 1000, 5);  // 62 full segments and a partial one
  const std::string output =
      test::expect_ppl_matches_reference(dir + "/model", dir + "/input.txt", 999);

  const auto json = nlohmann::json::parse(output.substr(output.find('{')));
  EXPECT_EQ(json["tokens"], 999);
  const std::vector<double> b = test::read_numbers(dir + "/input.txt.ref.txt");  // the reference's
  double mean = 0;
  for (double x : b) mean += x;
  mean /= double(b.size());
  EXPECT_NEAR(json["mean_nll"].get<double>(), mean, 1e-5);
  EXPECT_NEAR(json["perplexity"].get<double>(), std::exp(mean), 1e-4 * std::exp(mean));
  EXPECT_NEAR(json["bits_per_byte"].get<double>(), mean / std::log(2.0), 1e-5);
}

TEST(PplCli, InitWritesALoadableCheckpoint) {
  const std::string dir = test::scratch_dir("init_cli");
  const auto init = test::run_command(test::cli() + " init --config " + INFINI_SOURCE_DIR +
                                      "/configs/infini-tiny.json --out " + dir + "/m --seed 4");
  ASSERT_EQ(init.exit_code, 0) << init.output;
  write_text(dir + "/input.txt", 300, 1);
  const auto ppl = test::run_command(test::cli() + " ppl --model " + dir + "/m --input " + dir +
                                     "/input.txt");
  ASSERT_EQ(ppl.exit_code, 0) << ppl.output;
  EXPECT_NE(ppl.output.find("perplexity"), std::string::npos);
  // a fresh init predicts close to uniform: NLL near ln 256 = 5.545
  EXPECT_NE(ppl.output.find("mean NLL        5.5"), std::string::npos) << ppl.output;
}

TEST(PplCli, BadInputGetsAClearMessageAndNonZeroExit) {
  const std::string dir = test::scratch_dir("ppl_errors");
  std::ofstream(dir + "/one_byte.txt") << "x";
  std::ofstream(dir + "/bad_config.json") << R"({"vocab_size": 256, "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 3, "intermediate_size": 64,
    "attention": {"type": "infini", "segment_length": 16}})";
  ASSERT_EQ(test::run_command(test::cli() + " init --config " + INFINI_SOURCE_DIR +
                              "/configs/infini-tiny.json --out " + dir + "/m").exit_code, 0);
  struct Case {
    std::string args, expected;
  } cases[] = {
      {"ppl --model " + dir + "/missing --input " + dir + "/one_byte.txt", "missing"},
      {"ppl --model " + dir + "/m --input " + dir + "/no_such_file.txt", "no_such_file.txt"},
      {"ppl --model " + dir + "/m --input " + dir + "/one_byte.txt", "at least 2 bytes"},
      {"init --config " + dir + "/bad_config.json --out " + dir + "/x", "bad_config.json"},
      {"init --config " + dir + "/no_config.json --out " + dir + "/x", "no_config.json"},
      {"ppl --model " + dir + "/m", "--input"},
  };
  for (const Case& c : cases) {
    const auto r = test::run_command(test::cli() + " " + c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace infini
