// Tokenizers: the byte tokenizer on every byte value; SentencePiece trained here on a small
// generated corpus: exact round trips (unseen characters through byte fallback), reproducible
// training, piece-wise encoding equal to SentencePiece's own whole-text encoding, refusals.
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>
#include <functional>
#include <sstream>

#include "core/error.h"
#include "core/random.h"
#include "data/tokenizer.h"
#include "data/utf8.h"
#include "io/atomic_file.h"
#include "test_support.h"

namespace infini {
namespace {

using test::error_of;

using test::read_bytes;


// About `bytes` of English-like lines from a small vocabulary (so BPE finds merges).
std::string corpus_text(int64_t bytes, uint64_t seed) {
  const char* words[] = {"the",  "memory", "of",    "a",   "stream", "keeps", "what",
                         "it",   "read",   "long",  "ago", "and",    "then",  "God",
                         "said", "Let",    "there", "be",  "light",  "in",    "beginning"};
  const char* ends[] = {" ", " ", " ", " ", ", ", ". ", ".\n", ":\n", "; "};
  Rng rng(seed);
  std::string text;
  while (int64_t(text.size()) < bytes)
    text += std::string(words[rng.below(21)]) + ends[rng.below(9)];
  return text;
}

std::string write_corpus(const std::string& dir, int64_t bytes, uint64_t seed) {
  const std::string path = dir + "/corpus.txt";
  write_file_atomic(path, corpus_text(bytes, seed));
  return path;
}


// Text the corpus never showed: other scripts, emoji, control bytes, runs of spaces, CRLF.
const std::string kUnseen =
    "  Leading spaces,\ttabs\t\tand   runs.\r\nZ\xc3\xa9ro \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
    "\xf0\x9f\x98\x80 x\x01y\x7f\n\n\nQ~^|{}` 12345 ";

// A model trained once for the tests of this file.
class SentencePieceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(test::scratch_dir("sentencepiece"));
    corpus_ = new std::string(write_corpus(*dir_, 100000, 7));
    sentencepiece_train({*corpus_}, *dir_ + "/a", 400);
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete corpus_;
  }
  static std::string* dir_;
  static std::string* corpus_;
};
std::string* SentencePieceTest::dir_ = nullptr;
std::string* SentencePieceTest::corpus_ = nullptr;

TEST(ByteTokenizer, RoundTripsAll256ByteValues) {
  const std::unique_ptr<Tokenizer> t = byte_tokenizer();
  EXPECT_EQ(t->vocab_size(), 256);
  EXPECT_EQ(t->name(), "byte");
  std::string text;
  for (int b = 0; b < 256; ++b) text += char(b);
  text += text;  // and every byte again after every other
  const std::vector<int32_t> ids = t->encode(text);
  ASSERT_EQ(ids.size(), 512u);
  for (int i = 0; i < 512; ++i) EXPECT_EQ(ids[size_t(i)], i % 256);
  EXPECT_EQ(t->decode(ids.data(), int64_t(ids.size())), text);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(t->token_bytes(b), std::string(1, char(b)));
  EXPECT_TRUE(t->encode("").empty());

  const int32_t bad[] = {65, 256};
  EXPECT_NE(error_of([&] { t->decode(bad, 2); }).find("id 256 at position 1 is not a byte"),
            std::string::npos);
  EXPECT_THROW(t->token_bytes(-1), Error);
  EXPECT_EQ(tokenizer_load("byte", "")->name(), "byte");
}

TEST_F(SentencePieceTest, DecodeOfEncodeIsExactIncludingUnseenCharacters) {
  const std::unique_ptr<Tokenizer> t = tokenizer_load("sentencepiece", *dir_ + "/a.model");
  EXPECT_EQ(t->name(), "sentencepiece");
  EXPECT_EQ(t->vocab_size(), 400);
  const std::string corpus = read_bytes(*corpus_);
  for (const std::string& text : {kUnseen, corpus.substr(0, 5000), std::string(), std::string("\n"),
                                  std::string(" "), std::string("a\0b", 3)}) {
    const std::vector<int32_t> ids = t->encode(text);
    EXPECT_EQ(t->decode(ids.data(), int64_t(ids.size())), text);
    std::string spelled;  // token by token, as generation decodes
    for (int32_t id : ids) spelled += t->token_bytes(id);
    EXPECT_EQ(spelled, text);
  }
  // BPE learned something: the corpus takes far fewer tokens than bytes.
  EXPECT_LT(double(t->encode(corpus).size()), 0.5 * double(corpus.size()));
}

TEST_F(SentencePieceTest, ReservedIdsAreUnkBosEosNewlineThenBytes) {
  const std::unique_ptr<Tokenizer> t = sentencepiece_tokenizer(*dir_ + "/a.model");
  EXPECT_EQ(t->token_bytes(0), " \xe2\x81\x87 ");  // <unk> decodes as " ⁇ "
  EXPECT_EQ(t->token_bytes(1), "");
  EXPECT_EQ(t->token_bytes(2), "");
  EXPECT_EQ(t->token_bytes(3), "\n");
  EXPECT_EQ(t->encode("\n"), std::vector<int32_t>{3});
  for (int b = 0; b < 256; ++b) EXPECT_EQ(t->token_bytes(4 + b), std::string(1, char(b)));
  EXPECT_EQ(t->encode("\x01"), std::vector<int32_t>{5});
  const int32_t bad = 400;
  EXPECT_NE(
      error_of([&] { t->decode(&bad, 1); }).find("id 400 at position 0 is outside the vocabulary"),
      std::string::npos);
}

TEST_F(SentencePieceTest, TrainingTwiceGivesIdenticalFiles) {
  const std::string other = test::scratch_dir("sentencepiece_again");
  sentencepiece_train({*corpus_}, other + "/nested/b", 400);  // another path: same bytes
  EXPECT_EQ(read_bytes(other + "/nested/b.model"), read_bytes(*dir_ + "/a.model"));
  const std::string vocab = read_bytes(other + "/nested/b.vocab");
  EXPECT_EQ(vocab, read_bytes(*dir_ + "/a.vocab"));
  EXPECT_EQ(std::count(vocab.begin(), vocab.end(), '\n'), 400);
  EXPECT_EQ(vocab.rfind("<unk>\t0\n<s>\t0\n</s>\t0\n\\n\t0\n<0x00>\t0\n", 0), 0u)
      << vocab.substr(0, 80);
}

TEST_F(SentencePieceTest, PiecewiseEncodingMatchesSentencePieceOnTheWholeText) {
  // encode() cuts text after newlines (16 KiB pieces); SentencePiece itself sees it whole.
  const std::string text = read_bytes(*corpus_) + kUnseen;
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(*dir_ + "/a.model").ok());
  std::vector<int> whole;
  ASSERT_TRUE(sp.Encode(text, &whole).ok());
  const std::vector<int32_t> ours = sentencepiece_tokenizer(*dir_ + "/a.model")->encode(text);
  EXPECT_EQ(std::vector<int>(ours.begin(), ours.end()), whole);

  // One 40 KB line without newlines: cut before spaces, still the same ids.
  std::string line = text;
  std::replace(line.begin(), line.end(), '\n', ' ');
  line.resize(40000);
  ASSERT_TRUE(sp.Encode(line, &whole).ok());
  const std::vector<int32_t> ours_line = sentencepiece_tokenizer(*dir_ + "/a.model")->encode(line);
  EXPECT_EQ(std::vector<int>(ours_line.begin(), ours_line.end()), whole);
}

TEST_F(SentencePieceTest, LoadRefusesMissingWrongAndInexactModels) {
  EXPECT_NE(error_of([&] {
              sentencepiece_tokenizer(*dir_ + "/missing.model");
            }).find("missing.model: no such SentencePiece model file"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              sentencepiece_tokenizer(*dir_ + "/a.vocab");
            }).find("a.vocab: not a loadable SentencePiece model"),
            std::string::npos);
  EXPECT_NE(error_of([] { tokenizer_load("wordpiece", ""); }).find("unknown tokenizer type"),
            std::string::npos);
  EXPECT_NE(error_of([] { tokenizer_load("sentencepiece", ""); }).find("needs a .model file"),
            std::string::npos);

  // SentencePiece's defaults (NFKC, dummy prefix, whitespace removal) do not give text back.
  const std::string prefix = *dir_ + "/defaults";
  ASSERT_TRUE(sentencepiece::SentencePieceTrainer::Train(
                  "--input=" + *corpus_ + " --model_prefix=" + prefix +
                  " --vocab_size=100 --model_type=bpe --minloglevel=1")
                  .ok());
  EXPECT_NE(error_of([&] {
              sentencepiece_tokenizer(prefix + ".model");
            }).find("does not give text back exactly"),
            std::string::npos);
}

TEST_F(SentencePieceTest, TrainRefusesBadArguments) {
  const std::string dir = test::scratch_dir("sentencepiece_refusals");
  EXPECT_NE(error_of([&] {
              sentencepiece_train({*corpus_}, dir + "/t", 260);
            }).find("--vocab-size: 260 is out of range"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              sentencepiece_train({*corpus_}, dir + "/t", 100000);
            }).find("Vocabulary size too high"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              sentencepiece_train({dir + "/nothing.txt"}, dir + "/t", 300);
            }).find("nothing.txt: no such file"),
            std::string::npos);
  write_file_atomic(dir + "/empty.txt", "");
  EXPECT_NE(error_of([&] {
              sentencepiece_train({dir + "/empty.txt"}, dir + "/t", 300);
            }).find("the training text is empty"),
            std::string::npos);
  EXPECT_NE(error_of([&] { sentencepiece_train({}, dir + "/t", 300); }).find("no training text"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir + "/t.model"));
}

TEST(TextChunkEnd, CutsAfterNewlineElseBeforeSpaceElseAtACharacterBoundary) {
  EXPECT_EQ(text_chunk_end("short", 10), 5u);
  EXPECT_EQ(text_chunk_end("ab\ncd ef\ngh", 7), 3u);               // after the last newline in 7
  EXPECT_EQ(text_chunk_end("abc def ghi", 9), 7u);                 // before the last space
  EXPECT_EQ(text_chunk_end(" abcdefgh", 5), 5u);                   // a space at 0 is no cut
  EXPECT_EQ(text_chunk_end("ab\xe6\x97\xa5\xe6\x9c\xac", 4), 2u);  // not inside a character
  EXPECT_EQ(text_chunk_end("ab\xe6\x97\xa5\xe6\x9c\xac", 5), 5u);
  EXPECT_EQ(text_chunk_end("abcdefgh", 4), 4u);
}

TEST(Utf8Checker, FindsWhatSentencePieceCannotGiveBack) {
  struct Case {
    std::string text;
    int64_t offset;  // -1: fine
  };
  const Case cases[] = {
      {"plain ascii\n", -1},
      {"\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", -1},
      {"ab\xff", 2},
      {"a\xc0\x80", 1},            // overlong NUL
      {"a\xe0\x80\x80", 1},        // overlong
      {"\xed\xa0\x80", 0},         // surrogate
      {"\xf4\x90\x80\x80", 0},     // above U+10FFFF
      {"xy\xc3", 2},               // ends inside a character
      {"ok\nno \xe2\x96\x81", 6},  // U+2581
  };
  for (const Case& c : cases) {
    Utf8Checker check;
    for (char byte : c.text) check.feed(&byte, 1);  // one byte at a time: state carries
    const bool ok = check.finish();
    EXPECT_EQ(ok, c.offset < 0) << c.text;
    if (!ok) {
      EXPECT_EQ(check.offset(), c.offset) << c.text << ": " << check.problem();
    }
  }
  Utf8Checker lines;
  const std::string text = "one\ntwo\nth\xffree";
  EXPECT_FALSE(lines.feed(text.data(), text.size()));
  EXPECT_EQ(lines.line(), 3);
  EXPECT_EQ(lines.column(), 3);
}

}  // namespace
}  // namespace infini
