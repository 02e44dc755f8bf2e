// prepare_corpus: exact split sizes, shards that decode back to the input, dataset.json contents,
// streaming across read blocks, and every refusal happening before anything is written.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/random.h"
#include "data/prepare.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "io/atomic_file.h"
#include "test_support.h"

namespace infini {
namespace {

using test::error_of;

using test::read_bytes;

namespace fs = std::filesystem;

std::string text_of(const std::string& path, const Tokenizer& tokenizer) {
  const TokenShard shard = TokenShard::open(path);
  std::vector<int32_t> ids(static_cast<size_t>(shard.size()));
  shard.read(0, shard.size(), ids.data());
  return tokenizer.decode(ids.data(), shard.size());
}

std::string words(int64_t bytes, uint64_t seed) {
  const char* vocabulary[] = {"light ",  "darkness ",     "w\xc3\xa4ter ", "day\n",
                              "night. ", "\xe6\x97\xa5 ", "firmament ",    "and "};
  Rng rng(seed);
  std::string text;
  while (int64_t(text.size()) < bytes) text += vocabulary[rng.below(8)];
  return text;
}

std::string hex(uint64_t v) {
  char text[20];
  std::snprintf(text, sizeof text, "%016llx", (unsigned long long)v);
  return text;
}

TEST(Prepare, Fnv1a64MatchesPublishedVectors) {
  EXPECT_EQ(fnv1a64("", 0), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a", 1), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar", 6), 0x85944171f73967e8ull);
  EXPECT_EQ(fnv1a64("bar", 3, fnv1a64("foo", 3)), 0x85944171f73967e8ull);  // streaming
}

TEST(Prepare, ValidationTokensRule) {
  EXPECT_EQ(validation_tokens(100, 0.05), 5);
  EXPECT_EQ(validation_tokens(1000, 0.0004), 1);  // rounds to 0: at least 1
  EXPECT_EQ(validation_tokens(2, 0.99), 1);       // at least 1 left to train on
  EXPECT_EQ(validation_tokens(11, 0.5), 6);       // 5.5 rounds away from zero
  EXPECT_EQ(validation_tokens(1, 0.5), 0);
}

TEST(Prepare, ByteSplitSizesAreExactAndShardsSpellTheInput) {
  const std::string dir = test::scratch_dir("prepare_bytes");
  const std::string a = words(3000, 1), b = words(1001, 2);
  write_file_atomic(dir + "/a.txt", a);
  write_file_atomic(dir + "/b.txt", b);
  PrepareOptions o;
  o.inputs = {dir + "/a.txt", dir + "/b.txt"};
  o.out_dir = dir + "/out";
  o.val_fraction = 0.1;
  o.separator = "\n--\n";
  const PrepareResult r = prepare_corpus(o);

  const std::string all = a + o.separator + b;
  const int64_t total = int64_t(all.size());  // bytes = tokens
  EXPECT_EQ(r.val_tokens, std::llround(total * 0.1));
  EXPECT_EQ(r.train_tokens + r.val_tokens, total);
  EXPECT_EQ(r.total_bytes, total);
  EXPECT_EQ(r.tokenizer, "byte");
  EXPECT_EQ(r.vocab_size, 256);
  const auto bytes = byte_tokenizer();
  EXPECT_EQ(text_of(r.train_path, *bytes), all.substr(0, size_t(r.train_tokens)));
  EXPECT_EQ(text_of(r.val_path, *bytes), all.substr(size_t(r.train_tokens)));
  EXPECT_FALSE(fs::exists(o.out_dir + "/tokenizer.model"));

  const nlohmann::json j = nlohmann::json::parse(read_bytes(o.out_dir + "/dataset.json"));
  EXPECT_EQ(j["format"], "infini-dataset");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["tokenizer"], nlohmann::json({{"type", "byte"}}));
  EXPECT_EQ(j["vocab_size"], 256);
  EXPECT_EQ(j["val_fraction"], 0.1);
  EXPECT_EQ(j["separator"], "\n--\n");
  EXPECT_EQ(j["train"]["file"], "train.tokens");
  EXPECT_EQ(j["train"]["tokens"], r.train_tokens);
  EXPECT_EQ(j["val"]["file"], "val.tokens");
  EXPECT_EQ(j["val"]["tokens"], r.val_tokens);
  EXPECT_EQ(j["text_bytes"], total);
  ASSERT_EQ(j["inputs"].size(), 2u);
  EXPECT_EQ(j["inputs"][0]["path"], fs::absolute(dir + "/a.txt").lexically_normal().string());
  EXPECT_EQ(j["inputs"][0]["bytes"], a.size());
  EXPECT_EQ(j["inputs"][0]["fnv1a64"], hex(fnv1a64(a.data(), a.size())));
  EXPECT_EQ(j["inputs"][1]["bytes"], b.size());
  EXPECT_EQ(j["inputs"][1]["fnv1a64"], hex(fnv1a64(b.data(), b.size())));
}

// --loss-mask: split with the tokens, named in dataset.json; a mask of another length or with
// ids other than 0/1 is refused before anything is written.
TEST(Prepare, LossMaskIsSplitWithTheTokens) {
  const std::string dir = test::scratch_dir("prepare_mask");
  const std::string text = words(2000, 3);
  write_file_atomic(dir + "/a.txt", text);
  std::vector<int32_t> mask(text.size());
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = text[i] == ' ' ? 1 : 0;
  token_shard_write(dir + "/a.mask", mask, 2);
  PrepareOptions o;
  o.inputs = {dir + "/a.txt"};
  o.out_dir = dir + "/out";
  o.val_fraction = 0.25;
  o.loss_mask = dir + "/a.mask";
  const PrepareResult r = prepare_corpus(o);
  const TokenShard train = TokenShard::open(o.out_dir + "/train.mask"),
                   val = TokenShard::open(o.out_dir + "/val.mask");
  ASSERT_EQ(train.size(), r.train_tokens);
  ASSERT_EQ(val.size(), r.val_tokens);
  for (int64_t i = 0; i < int64_t(mask.size()); ++i)
    ASSERT_EQ(i < r.train_tokens ? train.at(i) : val.at(i - r.train_tokens), mask[size_t(i)]) << i;
  const nlohmann::json j = nlohmann::json::parse(read_bytes(o.out_dir + "/dataset.json"));
  EXPECT_EQ(j["loss_mask"]["train"], "train.mask");
  EXPECT_EQ(j["loss_mask"]["val"], "val.mask");

  // without --loss-mask a rewrite removes the old masks (they would no longer fit)
  o.loss_mask.clear();
  prepare_corpus(o);
  EXPECT_FALSE(fs::exists(o.out_dir + "/train.mask"));
  EXPECT_TRUE(
      nlohmann::json::parse(read_bytes(o.out_dir + "/dataset.json"))["loss_mask"].is_null());

  o.out_dir = dir + "/refused";
  o.loss_mask = dir + "/short.mask";
  token_shard_write(o.loss_mask, std::vector<int32_t>(text.size() - 1, 1), 2);
  EXPECT_NE(error_of([&] { prepare_corpus(o); }).find("the text makes 2"), std::string::npos);
  o.loss_mask = dir + "/wide.mask";
  token_shard_write(o.loss_mask, std::vector<int32_t>(text.size(), 2), 3);
  EXPECT_NE(error_of([&] { prepare_corpus(o); }).find("not 0/1"), std::string::npos);
  EXPECT_FALSE(fs::exists(o.out_dir));
}

TEST(Prepare, SentencePieceStreamsAcrossReadBlocksAndCopiesTheModel) {
  const std::string dir = test::scratch_dir("prepare_sentencepiece");
  write_file_atomic(dir + "/train.txt", words(60000, 3));
  sentencepiece_train({dir + "/train.txt"}, dir + "/tok", 300);
  // 1.2 MB: crosses the 1 MiB read block, with multi-byte characters on the way
  const std::string text = words(1200000, 4);
  write_file_atomic(dir + "/big.txt", text);
  PrepareOptions o;
  o.inputs = {dir + "/big.txt"};
  o.out_dir = dir + "/out";
  o.tokenizer = dir + "/tok.model";
  const PrepareResult r = prepare_corpus(o);

  const auto sp = sentencepiece_tokenizer(dir + "/tok.model");
  EXPECT_EQ(r.tokenizer, "sentencepiece");
  EXPECT_EQ(r.vocab_size, 300);
  EXPECT_EQ(r.train_tokens + r.val_tokens, int64_t(sp->encode(text).size()));
  EXPECT_EQ(r.val_tokens, validation_tokens(r.train_tokens + r.val_tokens, 0.05));
  EXPECT_EQ(text_of(r.train_path, *sp) + text_of(r.val_path, *sp), text);
  EXPECT_EQ(read_bytes(o.out_dir + "/tokenizer.model"), read_bytes(dir + "/tok.model"));
  const nlohmann::json j = nlohmann::json::parse(read_bytes(o.out_dir + "/dataset.json"));
  EXPECT_EQ(j["tokenizer"]["type"], "sentencepiece");
  EXPECT_EQ(j["tokenizer"]["model_file"], "tokenizer.model");
  const std::string model = read_bytes(dir + "/tok.model");
  EXPECT_EQ(j["tokenizer"]["fnv1a64"], hex(fnv1a64(model.data(), model.size())));
  EXPECT_EQ(j["vocab_size"], 300);
  EXPECT_EQ(TokenShard::open(r.val_path).vocab_size(), 300);

  // Prepared again with bytes into the same directory: the stale model copy goes away.
  o.tokenizer = "byte";
  prepare_corpus(o);
  EXPECT_FALSE(fs::exists(o.out_dir + "/tokenizer.model"));
  EXPECT_EQ(nlohmann::json::parse(read_bytes(o.out_dir + "/dataset.json"))["vocab_size"], 256);
}

TEST(Prepare, RefusesBadInputBeforeWritingAnything) {
  const std::string dir = test::scratch_dir("prepare_refusals");
  write_file_atomic(dir + "/good.txt", "some text\n");
  write_file_atomic(dir + "/empty.txt", "");
  write_file_atomic(dir + "/one.txt", "x");
  write_file_atomic(dir + "/latin1.txt", "line one\nna\xefve\n");
  write_file_atomic(dir + "/blocker", "a file where a directory should go");
  write_file_atomic(dir + "/train.txt", words(20000, 5));
  sentencepiece_train({dir + "/train.txt"}, dir + "/tok", 280);
  const std::string out = dir + "/out";

  struct Case {
    const char* name;
    std::function<void(PrepareOptions&)> set;
    std::string message;
  };
  const Case cases[] = {
      {"no inputs", [](PrepareOptions& o) { o.inputs.clear(); }, "--input: no input files given"},
      {"empty file",
       [&](PrepareOptions& o) {
         o.inputs = {dir + "/good.txt", dir + "/empty.txt"};
       },
       dir + "/empty.txt: the input file is empty"},
      {"missing file", [&](PrepareOptions& o) { o.inputs = {dir + "/nope.txt"}; },
       dir + "/nope.txt: no such input file"},
      {"directory", [&](PrepareOptions& o) { o.inputs = {dir}; }, dir + ": not a regular file"},
      {"one token", [&](PrepareOptions& o) { o.inputs = {dir + "/one.txt"}; },
       "the text makes only 1 token(s)"},
      {"val 0", [](PrepareOptions& o) { o.val_fraction = 0; },
       "--val-fraction: 0 is not strictly between 0 and 1"},
      {"val 1", [](PrepareOptions& o) { o.val_fraction = 1; }, "--val-fraction: 1 is not"},
      {"val negative", [](PrepareOptions& o) { o.val_fraction = -0.5; }, "--val-fraction: -0.5"},
      {"val nan", [](PrepareOptions& o) { o.val_fraction = std::nan(""); }, "--val-fraction: nan"},
      {"no tokenizer", [&](PrepareOptions& o) { o.tokenizer = dir + "/none.model"; },
       "--tokenizer: \"" + dir + "/none.model\" is neither \"byte\" nor an existing file"},
      {"out under a file", [&](PrepareOptions& o) { o.out_dir = dir + "/blocker/out"; },
       dir + "/blocker/out: cannot create the output directory"},
      {"not utf-8",
       [&](PrepareOptions& o) {
         o.inputs = {dir + "/latin1.txt"};
         o.tokenizer = dir + "/tok.model";
       },
       dir +
           "/latin1.txt:2:3: invalid UTF-8: byte 0xef starts a 3-byte character but 0x76 follows"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    PrepareOptions o;
    o.inputs = {dir + "/good.txt"};
    o.out_dir = out;
    c.set(o);
    const std::string message = error_of([&] { prepare_corpus(o); });
    EXPECT_NE(message.find(c.message), std::string::npos) << message;
    EXPECT_FALSE(fs::exists(out)) << "wrote something despite the error";
  }
}

}  // namespace
}  // namespace infini
