// `infini tokenizer` and `infini prepare` as a user runs them, on a slice of the King James Bible
// (Debian's bible-kjv, installed by scripts/setup.sh): exit codes, outputs, error messages.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/prepare.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "io/atomic_file.h"
#include "test_support.h"

namespace infini {
namespace {

using test::read_bytes;


nlohmann::json json_of(const test::CommandResult& r) {
  const size_t start = r.output.find('{');
  if (start == std::string::npos) return {};
  return nlohmann::json::parse(r.output.substr(start));
}

test::CommandResult infini(const std::string& args) {
  return test::run_command(test::cli() + " " + args);
}

TEST(DataCli, TrainEncodeDecodePrepareOnGenesis) {
  const std::string dir = test::scratch_dir("data_cli_genesis");
  const std::string text_path = dir + "/genesis.txt";
  const auto bible = test::run_command("bible gen1:1-gen50:26 > " + text_path);
  ASSERT_EQ(bible.exit_code, 0) << "the bible-kjv package is needed: " << bible.output;
  const std::string text = read_bytes(text_path);
  ASSERT_GT(text.size(), 100000u);

  const auto train = infini("tokenizer train --input " + text_path + " --vocab-size 500 --out " +
                            dir + "/tok/gen --json");
  ASSERT_EQ(train.exit_code, 0) << train.output;
  EXPECT_EQ(json_of(train)["vocab_size"], 500);
  EXPECT_TRUE(std::filesystem::exists(dir + "/tok/gen.model"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/tok/gen.vocab"));

  const auto encode = infini("tokenizer encode --model " + dir +
                             "/tok/gen.model --text 'In the beginning God' --pieces --json");
  ASSERT_EQ(encode.exit_code, 0) << encode.output;
  const nlohmann::json e = json_of(encode);
  EXPECT_EQ(e["tokenizer"], "sentencepiece");
  EXPECT_EQ(e["bytes"], 20);
  std::string spelled, ids;
  for (const auto& piece : e["pieces"]) spelled += piece.get<std::string>();
  EXPECT_EQ(spelled, "In the beginning God");
  EXPECT_LT(e["tokens"].get<int>(), 10) << encode.output;
  for (const auto& id : e["ids"]) ids.append(" ").append(std::to_string(id.get<int>()));

  const auto plain = infini("tokenizer encode --model " + dir + "/tok/gen.model --text 'In the'");
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_EQ(plain.output.find_first_not_of("0123456789 \n"), std::string::npos) << plain.output;

  const auto decode = infini("tokenizer decode --model " + dir + "/tok/gen.model --ids" + ids);
  ASSERT_EQ(decode.exit_code, 0) << decode.output;
  EXPECT_EQ(decode.output, "In the beginning God");

  const auto prepare =
      infini("prepare --input " + text_path + " --out " + dir + "/data --tokenizer " + dir +
             "/tok/gen.model --val-fraction 0.1 --json");
  ASSERT_EQ(prepare.exit_code, 0) << prepare.output;
  const nlohmann::json p = json_of(prepare);
  const int64_t total = p["train_tokens"].get<int64_t>() + p["val_tokens"].get<int64_t>();
  EXPECT_EQ(p["val_tokens"], validation_tokens(total, 0.1));
  EXPECT_EQ(TokenShard::open(dir + "/data/train.tokens").size(), p["train_tokens"]);
  EXPECT_EQ(TokenShard::open(dir + "/data/val.tokens").size(), p["val_tokens"]);
  EXPECT_EQ(int64_t(sentencepiece_tokenizer(dir + "/tok/gen.model")->encode(text).size()), total);
  EXPECT_GT(p["bytes_per_token"].get<double>(), 2.0) << "BPE should compress English";
  EXPECT_EQ(read_bytes(dir + "/data/tokenizer.model"), read_bytes(dir + "/tok/gen.model"));

  // Human-readable summary, byte tokenizer, two files joined by a newline.
  const auto bytes = infini("prepare --input " + text_path + " " + text_path + " --out " + dir +
                            "/bytes --separator '\\n'");
  ASSERT_EQ(bytes.exit_code, 0) << bytes.output;
  EXPECT_NE(bytes.output.find("train tokens"), std::string::npos) << bytes.output;
  EXPECT_EQ(TokenShard::open(dir + "/bytes/train.tokens").size() +
                TokenShard::open(dir + "/bytes/val.tokens").size(),
            int64_t(2 * text.size() + 1));
}

TEST(DataCli, ErrorsExitNonZeroWithAMessage) {
  const std::string dir = test::scratch_dir("data_cli_errors");
  write_file_atomic(dir + "/a.txt", "a few words of text\n");

  auto r = infini("prepare --input " + dir + "/a.txt --out " + dir + "/o --val-fraction 1.5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("infini: error: --val-fraction: 1.5 is not strictly between 0 and 1"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/o"));

  r = infini("prepare --input " + dir + "/missing.txt --out " + dir + "/o");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("missing.txt: no such input file"), std::string::npos) << r.output;

  r = infini("prepare --input " + dir + "/a.txt --out " + dir + "/o --separator '\\q'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--separator: unknown escape \\q"), std::string::npos) << r.output;

  r = infini("prepare --input " + dir + "/a.txt");  // no --out
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--out"), std::string::npos) << r.output;

  r = infini("tokenizer");
  EXPECT_NE(r.exit_code, 0);

  r = infini("tokenizer train --input " + dir + "/a.txt --vocab-size 100 --out " + dir + "/t");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--vocab-size: 100 is out of range"), std::string::npos) << r.output;

  r = infini("tokenizer encode --model byte");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("nothing to encode"), std::string::npos) << r.output;

  r = infini("tokenizer encode --model " + dir + "/none.model --text hi");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("none.model: no such SentencePiece model file"), std::string::npos)
      << r.output;

  r = infini("tokenizer decode --model byte --ids 104 105 300");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--ids: id 300 (number 3) is outside the vocabulary [0, 256)"),
            std::string::npos)
      << r.output;

  r = infini("tokenizer encode --model byte --text hi");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, "104 105\n");

  r = infini("prepare --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("infini prepare --input kjv.txt"), std::string::npos) << r.output;
  r = infini("tokenizer train --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("--vocab-size"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace infini
