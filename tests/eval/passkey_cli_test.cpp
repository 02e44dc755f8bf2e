// `infini eval passkey` and `infini data passkey` as a user runs them: the table and the JSON
// (whose cells must agree with its own trials, and whose trials with their keys), keys that
// depend only on their cell, the fine-tuning data lined up with `infini prepare` + `infini train
// --data-order sequential`, and clear refusals of bad input.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/token_shard.h"
#include "eval/passkey.h"
#include "test_support.h"

namespace infini {
namespace {

class PasskeyCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = test::scratch_dir("passkey_cli");
    const auto init = test::run_command(test::cli() + " init --config " + INFINI_SOURCE_DIR +
                                        "/configs/infini-tiny.json --out " + dir + "/m --seed 4");
    ASSERT_EQ(init.exit_code, 0) << init.output;
  }
  static nlohmann::json run_json(const std::string& args) {
    const auto r = test::run_command(test::cli() + " eval passkey --model " + dir + "/m " + args +
                                     " --json --threads 1");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return nlohmann::json::parse(r.output.substr(r.output.find('{')));
  }
  static std::string dir;
};
std::string PasskeyCli::dir;

TEST_F(PasskeyCli, JsonCellsAgreeWithTheirTrials) {
  const nlohmann::json j =
      run_json("--lengths 300,1K --positions start,0.5,end --trials 3 --seed 7");
  ASSERT_EQ(j["cells"].size(), 6u);
  ASSERT_EQ(j["trials"].size(), 18u);
  EXPECT_EQ(j["lengths"], nlohmann::json({300, 1024}));
  EXPECT_EQ(j["positions"][1]["fraction"], 0.5);
  EXPECT_EQ(j["digits"], 5);
  const int64_t head = int64_t(std::string(kPasskeyHead).size());
  const int64_t question = int64_t(std::string(kPasskeyQuestion).size());
  int64_t tokens = 0;
  std::map<std::pair<int64_t, std::string>, std::pair<double, double>> sums;  // exact, accuracy
  for (const auto& t : j["trials"]) {
    const std::string key = t["key"], answer = t["answer"];
    const int64_t length = t["length"];
    EXPECT_EQ(key.size(), 5u);
    EXPECT_EQ(std::stoll(key) % 3, 0) << "evaluation keys are multiples of 3";
    // bytes: " KEY" (6 tokens) + 2 more; the generated ids are the answer's bytes
    ASSERT_EQ(t["generated"].size(), 8u);
    ASSERT_EQ(answer.size(), 8u);
    int right = 0;
    for (int i = 0; i < 8; ++i) {
      EXPECT_EQ(t["generated"][i].get<int>(), int(static_cast<unsigned char>(answer[i])));
      if (i >= 1 && i <= 5) right += answer[i] == key[i - 1];
    }
    EXPECT_DOUBLE_EQ(t["token_accuracy"].get<double>(), right / 5.0);
    const size_t digit = answer.find_first_of("0123456789");
    const std::string number =
        digit == std::string::npos
            ? ""
            : answer.substr(digit, answer.find_first_not_of("0123456789", digit) - digit);
    EXPECT_EQ(t["first_number"], number);
    EXPECT_EQ(t["exact"], number == key);
    const int64_t key_token = t["key_token"];
    EXPECT_GE(key_token, head);
    EXPECT_LE(key_token, length - question - 55);
    if (t["position"] == "start") {
      EXPECT_EQ(key_token, head);
    }
    auto& sum = sums[{length, t["position"]}];
    sum.first += t["exact"].get<bool>() ? 1 : 0;
    sum.second += t["token_accuracy"].get<double>();
    tokens += length + 8;
  }
  for (const auto& c : j["cells"]) {
    const auto& sum = sums.at({c["length"].get<int64_t>(), c["position"].get<std::string>()});
    EXPECT_EQ(c["trials"], 3);
    EXPECT_NEAR(c["exact_match"].get<double>(), sum.first / 3, 1e-12);
    EXPECT_NEAR(c["token_accuracy"].get<double>(), sum.second / 3, 1e-12);
  }
  EXPECT_EQ(j["tokens"], tokens);
  EXPECT_GT(j["tokens_per_second"].get<double>(), 0);
  EXPECT_GT(j["peak_rss_bytes"].get<int64_t>(), 0);

  // a cell's keys depend on the seed, its length, position and trial only
  const nlohmann::json alone = run_json("--lengths 1K --positions end --trials 3 --seed 7");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(alone["trials"][i]["key"], j["trials"][15 + i]["key"]);
  const nlohmann::json other = run_json("--lengths 1K --positions end --trials 3 --seed 8");
  EXPECT_NE(other["trials"][0]["key"], alone["trials"][0]["key"]);
}

TEST_F(PasskeyCli, PrintsAMarkdownTable) {
  const auto r =
      test::run_command(test::cli() + " eval passkey --model " + dir +
                        "/m --lengths 512,2K --positions start,end --trials 1 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("| length | start | end |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("|---:|---:|---:|"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\n| 512 | "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\n| 2K | "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tokens/s"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("peak memory"), std::string::npos) << r.output;
}

TEST_F(PasskeyCli, UsesTheFillerFile) {
  std::ofstream(dir + "/book.txt") << "In the beginning God created the heaven and the earth. "
                                      "And the earth was without form, and void.";
  const nlohmann::json j =
      run_json("--lengths 600 --positions middle --trials 1 --filler " + dir + "/book.txt");
  EXPECT_EQ(j["filler"], dir + "/book.txt");
  EXPECT_EQ(j["trials"].size(), 1u);
}

TEST_F(PasskeyCli, BadInputsAreRefusedClearly) {
  const std::string eval = test::cli() + " eval passkey --model " + dir + "/m ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {eval + "--lengths 12X", "--lengths: \"12X\" is not a length"},
      {eval + "--lengths 0", "a length must be positive"},
      {eval + "--lengths 100", "cannot hold the passkey prompt"},
      {eval + "--lengths 1K --positions left", "--positions: \"left\" is not a position"},
      {eval + "--lengths 1K --positions 1.5", "outside [0, 1]"},
      {eval + "--lengths 1K --trials 0", "--trials: 0"},
      {eval + "--lengths 1K --digits 19", "--digits"},
      {eval + "--lengths 1K --filler " + dir + "/nothing.txt", "cannot open the filler file"},
      {test::cli() + " eval passkey --model " + dir + "/missing --lengths 1K", dir + "/missing"},
      {test::cli() + " data passkey --out " + dir + "/d --count 3 --min-length 2K --max-length 1K",
       "--min-length"},
      {test::cli() + " data passkey --out " + dir +
           "/d --count 3 --min-length 1K --max-length 2K "
           "--seq-len 1K",
       "more than --seq-len"},
      {test::cli() + " data passkey --out " + dir + "/d --count 3 --min-length 100 --max-length 1K",
       "cannot hold an example"},
      {test::cli() + " data passkey --out " + dir + "/d --count 3 --max-length 1000 --model " +
           dir + "/m",
       "not a multiple of the model's segment length (64)"},
      {test::cli() + " data passkey --out " + dir + "/d --count 0", "--count"},
  };
  for (const auto& [command, message] : cases) {
    const auto r = test::run_command(command);
    EXPECT_NE(r.exit_code, 0) << command;
    EXPECT_NE(r.output.find(message), std::string::npos) << command << "\n" << r.output;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/d/passkey.txt")) << "nothing written on error";
}

// The fine-tuning data: exactly seq-len tokens per example, each a prompt with a training key
// and its answer; `infini prepare` with the printed fraction keeps every training window on an
// example, and `infini train --data-order sequential` takes it.
TEST_F(PasskeyCli, DataLinesUpWithPrepareAndSequentialTraining) {
  const std::string out = dir + "/pk";
  const int64_t T = 512, count = 10;
  const auto r = test::run_command(test::cli() + " data passkey --out " + out +
                                   " --count 10 --min-length 300 --max-length 500 --seq-len 512 "
                                   "--seed 3 --model " +
                                   dir + "/m --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(j["tokens"], count * T + 2);
  EXPECT_EQ(j["val_examples"], 2);
  const std::string text = test::read_bytes(out + "/passkey.txt");
  ASSERT_EQ(int64_t(text.size()), count * T + 2);
  const TokenShard mask = TokenShard::open(out + "/passkey.mask");
  ASSERT_EQ(mask.size(), count * T + 2);
  int64_t scored = 0;
  std::istringstream index(test::read_bytes(out + "/examples.jsonl"));
  std::string line;
  int64_t i = 0;
  for (; std::getline(index, line); ++i) {
    const nlohmann::json e = nlohmann::json::parse(line);
    const std::string key = e["key"];
    // the two held-out examples come after a newline of their own
    const int64_t first = i * T + (i >= count - 2 ? 1 : 0);
    const std::string example = text.substr(size_t(first), size_t(T));
    EXPECT_EQ(e["first_token"], first);
    EXPECT_NE(std::stoll(key) % 3, 0) << "training keys are never evaluation keys";
    EXPECT_EQ(example.rfind(kPasskeyHead, 0), 0u);
    const std::string qa = std::string(kPasskeyQuestion) + " " + key + ".\n";
    const size_t answer = example.find(qa);
    ASSERT_NE(answer, std::string::npos) << example;
    EXPECT_EQ(int64_t(answer + qa.size()) - 1, e["prompt_tokens"].get<int64_t>() + 7);
    EXPECT_LE(int64_t(answer + qa.size()), 500);
    EXPECT_GE(int64_t(answer + qa.size()), 300 - 22);
    EXPECT_EQ(example.find_first_not_of('\n', answer + qa.size()), std::string::npos);
    EXPECT_EQ(example.substr(size_t(e["key_token"].get<int64_t>()), 18),
              " The pass key is " + key.substr(0, 1));
    // the loss mask scores the needle's copy of the key and the whole answer, nothing else
    std::string marked;
    std::vector<int64_t> at;
    for (int64_t t = 0; t < T; ++t)
      if (mask.at(first + t)) marked += example[size_t(t)], at.push_back(t);
    EXPECT_EQ(marked, key + " " + key + ".");
    ASSERT_EQ(at.size(), 2 * key.size() + 2);
    EXPECT_EQ(at[0], e["key_token"].get<int64_t>() + 17 + int64_t(key.size()) + 15);
    EXPECT_EQ(at[key.size()], e["prompt_tokens"].get<int64_t>());
    scored += int64_t(at.size());
  }
  EXPECT_EQ(i, count);
  EXPECT_EQ(text[size_t((count - 2) * T)], '\n');
  EXPECT_EQ(text[size_t(count * T + 1)], '\n');
  EXPECT_EQ(mask.at((count - 2) * T), 0);
  EXPECT_EQ(mask.at(count * T + 1), 0);
  EXPECT_EQ(j["scored_tokens"], scored);

  const std::string prepare = j["prepare"];  // "infini prepare --input ... --loss-mask ..."
  ASSERT_EQ(prepare.rfind("infini prepare ", 0), 0u) << prepare;
  EXPECT_NE(prepare.find(" --loss-mask " + out + "/passkey.mask"), std::string::npos) << prepare;
  const auto prep = test::run_command(test::cli() + prepare.substr(6));
  ASSERT_EQ(prep.exit_code, 0) << prep.output;
  const TokenShard train = TokenShard::open(out + "/data/train.tokens");
  ASSERT_EQ(train.size(), (count - 2) * T + 1);
  const TokenShard train_mask = TokenShard::open(out + "/data/train.mask"),
                   val_mask = TokenShard::open(out + "/data/val.mask");
  ASSERT_EQ(train_mask.size(), train.size());
  ASSERT_EQ(val_mask.size(), 2 * T + 1);
  const TokenShard val = TokenShard::open(out + "/data/val.tokens");
  for (int64_t w = 0; w < 2; ++w)
    EXPECT_EQ(val.at(w * T), 'T') << "held-out windows start examples";
  for (int64_t t = 0; t < mask.size(); ++t)
    ASSERT_EQ(t < train.size() ? train_mask.at(t) : val_mask.at(t - train.size()), mask.at(t))
        << "token " << t;
  const int64_t windows = (train.size() - 1) / T;
  EXPECT_EQ(windows, count - 2) << "every training example is one sequential window";
  for (int64_t w = 0; w < windows; ++w) EXPECT_EQ(train.at(w * T), 'T');
  const auto run = test::run_command(
      test::cli() + " train --init " + dir + "/m --data " + out + "/data --out " + out +
      "/run --seq-len 512 --data-order sequential --batch 2 --steps 2 --eval-batches 1 "
      "--sample-tokens 0 --threads 1");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("loss mask    train.mask"), std::string::npos) << run.output;
}

// --aligned-fraction: those examples' prompts are a multiple of the segment length (the model's,
// 64 for the tiny config), as the evaluation's 32K..1M prompts are, and still hold their key and
// answer; the others keep whole sentences; a fraction outside [0, 1] is refused.
TEST_F(PasskeyCli, AlignedExamplesEndTheirPromptAtASegmentBoundary) {
  const std::string out = dir + "/aligned";
  const int64_t T = 512;
  const auto r = test::run_command(test::cli() + " data passkey --out " + out +
                                   " --count 40 --min-length 300 --max-length 500 --seq-len 512 "
                                   "--seed 5 --aligned-fraction 0.5 --model " +
                                   dir + "/m");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string text = test::read_bytes(out + "/passkey.txt");
  std::istringstream index(test::read_bytes(out + "/examples.jsonl"));
  std::string line;
  int64_t aligned = 0, i = 0;
  for (; std::getline(index, line); ++i) {
    const nlohmann::json e = nlohmann::json::parse(line);
    const int64_t prompt = e["prompt_tokens"];
    const std::string example = text.substr(size_t(e["first_token"].get<int64_t>()), size_t(T));
    const std::string key = e["key"];
    EXPECT_EQ(example.substr(size_t(prompt) - kPasskeyQuestion.size(), kPasskeyQuestion.size() + 8),
              std::string(kPasskeyQuestion) + " " + key + ".\n");
    EXPECT_NE(example.find(passkey_needle_text(key)), std::string::npos);
    if (prompt % 64 == 0) {
      ++aligned;
    } else {  // whole sentences: the filler ends with a sentence's full stop
      EXPECT_EQ(example[size_t(prompt) - kPasskeyQuestion.size() - 1], '.') << example;
    }
  }
  EXPECT_EQ(i, 40);
  EXPECT_GE(aligned, 10);
  EXPECT_LE(aligned, 30);
  const auto bad = test::run_command(test::cli() + " data passkey --out " + out +
                                     "/bad --count 4 --min-length 300 --max-length 500 "
                                     "--aligned-fraction 1.5 --align 64");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("--aligned-fraction"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace infini
