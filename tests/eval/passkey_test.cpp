// The passkey prompt, keys and score (src/eval/passkey.h): the paper's text of
// ../shared/spec/evaluation.md byte for byte, exact lengths at every position, the key where it
// was asked for, --filler text, reproducible and disjoint key sets, the score on handmade
// answers, SentencePiece prompts that are exactly the tokens of their text, and greedy decoding
// that equals the argmax of one forward pass over prompt and answer.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "core/parallel.h"
#include "eval/passkey.h"
#include "eval/passkey_eval.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "test_support.h"

namespace infini {
namespace {

// The input of Appendix B as ../shared/spec/evaluation.md prints it, literally.
const std::string kPaper =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
    "them. I will quiz you about the important information there. The grass is green. The sky is "
    "blue. The sun is yellow. Here we go. There and back again. (repeat x times) The pass key is "
    "9054. Remember it. 9054 is the pass key. The grass is green. The sky is blue. The sun is "
    "yellow. Here we go. There and back again. (repeat y times) What is the pass key? The pass "
    "key is";

struct PaperParts {
  std::string head, filler, needle, question;
};

// Cuts kPaper into its pieces: head + filler (repeat x) + needle + filler (repeat y) + question.
PaperParts paper_parts() {
  const size_t x = kPaper.find(" (repeat x times)"), y = kPaper.find(" (repeat y times)");
  const std::string a = kPaper.substr(0, x);                // head + one filler
  const std::string b = kPaper.substr(x + 17, y - x - 17);  // needle + one filler
  PaperParts p;
  p.head = a.substr(0, a.find(" The grass"));
  p.filler = a.substr(p.head.size());
  p.needle = b.substr(0, b.find(" The grass"));
  EXPECT_EQ(b.substr(p.needle.size()), p.filler);
  p.question = kPaper.substr(y + 17);
  return p;
}

std::string repeat(const std::string& s, int64_t n) {
  std::string out;
  for (int64_t i = 0; i < n; ++i) out += s;
  return out;
}

std::vector<int32_t> all_tokens(const PasskeyTemplate& t, const PasskeyPrompt& p) {
  std::vector<int32_t> out(size_t(p.length));
  passkey_prompt_tokens(t, p, 0, p.length, out.data());
  return out;
}

TEST(PasskeyPrompt, IsThePapersTextForWholeRepetitions) {
  const auto bytes = byte_tokenizer();
  const PasskeyTemplate t = passkey_template(*bytes);
  const PaperParts paper = paper_parts();
  EXPECT_EQ(paper.question, std::string(kPasskeyQuestion));
  EXPECT_EQ(paper.needle, passkey_needle_text("9054"));
  for (const auto& [x, y] :
       std::vector<std::pair<int, int>>{{1, 1}, {3, 2}, {0, 2}, {2, 0}, {0, 0}}) {
    const std::string expected = paper.head + repeat(paper.filler, x) + paper.needle +
                                 repeat(paper.filler, y) + paper.question;
    const double position = x + y ? double(x) / double(x + y) : 0.5;
    const PasskeyPrompt p = passkey_prompt(t, "9054", int64_t(expected.size()), position);
    EXPECT_EQ(p.length, int64_t(expected.size()));
    EXPECT_EQ(passkey_prompt_text(t, p), expected) << "x " << x << ", y " << y;
    EXPECT_EQ(p.key_token, int64_t(paper.head.size() + x * paper.filler.size()));
    // byte tokenizer: the tokens are the bytes
    const std::vector<int32_t> tokens = all_tokens(t, p);
    ASSERT_EQ(tokens.size(), expected.size());
    for (size_t i = 0; i < tokens.size(); ++i)
      ASSERT_EQ(tokens[i], int32_t(static_cast<unsigned char>(expected[i]))) << i;
  }
  EXPECT_EQ(t.filler.size(), paper.filler.size());
  EXPECT_EQ(t.sentence_starts, (std::vector<int64_t>{0, 20, 37, 56, 68}));
}

// Every length and position: exactly the length asked for, head + filler stream with the needle
// spliced in at a sentence start + question, the key near where it was asked for, and the same
// tokens whichever chunks they are read in.
TEST(PasskeyPrompt, HasExactlyTheLengthAskedForAndTheKeyWhereAsked) {
  const auto bytes = byte_tokenizer();
  const PasskeyTemplate t = passkey_template(*bytes);
  const std::string head(kPasskeyHead), question(kPasskeyQuestion), key = "31415";
  const std::string needle = passkey_needle_text(key);
  const std::string stream = repeat(" " + std::string(kPasskeyDefaultFiller), 400);
  const int64_t min = passkey_min_length(t, key);
  EXPECT_EQ(min, int64_t(head.size() + needle.size() + question.size()));
  const int64_t longest_sentence = 22;  // " There and back again."
  Rng rng(3);
  for (int64_t length :
       {min, min + 1, min + 7, int64_t(500), int64_t(1000), int64_t(4097), int64_t(32768)}) {
    for (double position : {0.0, 0.25, 0.5, 0.9, 1.0}) {
      const PasskeyPrompt p = passkey_prompt(t, key, length, position);
      ASSERT_EQ(p.length, length);
      const int64_t F = length - min, b = p.key_offset;
      EXPECT_EQ(p.filler_tokens, F);
      const std::string text = passkey_prompt_text(t, p);
      ASSERT_EQ(int64_t(text.size()), length);
      EXPECT_EQ(text.substr(0, head.size()), head);
      EXPECT_EQ(text.substr(text.size() - question.size()), question);
      EXPECT_EQ(text.substr(size_t(p.key_token), needle.size()), needle);
      // without the needle: head + the filler stream's first F bytes + question
      const std::string rest = text.substr(head.size(), size_t(b)) +
                               text.substr(size_t(p.key_token) + needle.size(), size_t(F - b));
      EXPECT_EQ(rest, stream.substr(0, size_t(F)));
      // b is a sentence start, nearest to position * F
      EXPECT_TRUE(b == 0 || (stream[size_t(b) - 1] == '.' && stream[size_t(b)] == ' ')) << b;
      // (the nearer of the two sentence starts around it, unless the later one is past F)
      const double distance = std::abs(double(b) - position * double(F));
      EXPECT_LE(distance, position * double(F) + double(longest_sentence) <= double(F)
                              ? double(longest_sentence) / 2
                              : double(longest_sentence));
      if (position == 0) {
        EXPECT_EQ(b, 0);
      }
      if (position == 1) {
        EXPECT_LT(F - b, longest_sentence + 1);
      }
      // read in random chunks: the same tokens
      const std::vector<int32_t> whole = all_tokens(t, p);
      std::vector<int32_t> pieces(whole.size());
      for (int64_t at = 0; at < length;) {
        const int64_t n = std::min<int64_t>(length - at, 1 + int64_t(rng.below(200)));
        passkey_prompt_tokens(t, p, at, n, pieces.data() + at);
        at += n;
      }
      EXPECT_EQ(pieces, whole);
    }
  }
  // start / middle / end of a long prompt
  const PasskeyPrompt middle = passkey_prompt(t, key, 1 << 20, 0.5);
  EXPECT_NEAR(double(middle.key_token) / double(1 << 20), 0.5, 1e-4);
  const PasskeyPrompt end = passkey_prompt(t, key, 1 << 20, 1.0);
  EXPECT_GT(end.key_token,
            (1 << 20) - int64_t(needle.size() + question.size()) - longest_sentence - 1);
}

TEST(PasskeyPrompt, WholeSentencesStopAtASentenceStart) {
  const auto bytes = byte_tokenizer();
  const PasskeyTemplate t = passkey_template(*bytes);
  for (int64_t length : {300, 1000, 5000}) {
    const PasskeyPrompt p = passkey_prompt(t, "123", length, 0.5, true);
    EXPECT_LE(p.length, length);
    EXPECT_GT(p.length, length - 22);
    const std::string text = passkey_prompt_text(t, p);
    EXPECT_EQ(text.substr(text.size() - std::string(kPasskeyQuestion).size() - 1, 2), ". ")
        << "the filler ends with a whole sentence";
  }
}

TEST(PasskeyPrompt, TooShortALengthIsRefusedWithTheMinimum) {
  const auto bytes = byte_tokenizer();
  const PasskeyTemplate t = passkey_template(*bytes);
  const int64_t min = passkey_min_length(t, "12345");
  const std::string message = test::error_of([&] { passkey_prompt(t, "12345", min - 1, 0.5); });
  EXPECT_NE(message.find("cannot hold the passkey prompt"), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(min)), std::string::npos) << message;
  EXPECT_NE(test::error_of([&] { passkey_prompt(t, "12a", 400, 0.5); }), "");
  EXPECT_NE(test::error_of([&] { passkey_prompt(t, "12", 400, 1.5); }), "");
}

TEST(PasskeyPrompt, UsesTheFillerFile) {
  const std::string dir = test::scratch_dir("passkey_filler");
  const std::string text = "  Alpha beta. Gamma delta!\nEpsilon \"zeta.\" Eta theta\n\n";
  std::ofstream(dir + "/filler.txt") << text;
  const auto bytes = byte_tokenizer();
  const PasskeyTemplate t = passkey_template_from_file(*bytes, dir + "/filler.txt");
  const std::string unit = " Alpha beta. Gamma delta!\nEpsilon \"zeta.\" Eta theta";
  EXPECT_EQ(t.filler.size(), unit.size());
  EXPECT_EQ(t.filler_name, dir + "/filler.txt");
  EXPECT_EQ(t.sentence_starts,
            (std::vector<int64_t>{0, int64_t(unit.find(" Gamma")), int64_t(unit.find("\nEpsilon")),
                                  int64_t(unit.find(" Eta"))}));
  const PasskeyPrompt p = passkey_prompt(t, "777", 600, 0.5);
  const std::string prompt = passkey_prompt_text(t, p);
  EXPECT_EQ(prompt.find("grass"), std::string::npos);
  EXPECT_NE(prompt.find(unit + unit), std::string::npos);
  EXPECT_EQ(int64_t(prompt.size()), 600);

  std::ofstream(dir + "/blank.txt") << " \n\t\n";
  EXPECT_NE(
      test::error_of([&] { passkey_template_from_file(*bytes, dir + "/blank.txt"); }).find("empty"),
      std::string::npos);
  EXPECT_NE(test::error_of([&] {
              passkey_template_from_file(*bytes, dir + "/none.txt");
            }).find("cannot open"),
            std::string::npos);
}

TEST(PasskeyKeys, AreReproducibleAndTheSetsDisjoint) {
  // the same trial gives the same key; other trials, lengths, positions or seeds give others
  auto key_of = [](uint64_t seed, int64_t length, double position, int64_t trial) {
    Rng rng(passkey_trial_seed(seed, length, position, trial));
    return passkey_random_key(rng, 5, PasskeyKeySet::eval);
  };
  EXPECT_EQ(key_of(1, 32768, 0.5, 3), key_of(1, 32768, 0.5, 3));
  std::set<std::string> keys;
  for (uint64_t seed : {1, 2})
    for (int64_t length : {1024, 32768})
      for (double position : {0.0, 0.5, 1.0})
        for (int64_t trial = 0; trial < 5; ++trial)
          keys.insert(key_of(seed, length, position, trial));
  EXPECT_GT(keys.size(), 55u) << "of 60 keys drawn from 30000, nearly all differ";

  // eval keys are multiples of 3, training keys are not; every digit at every place in both
  Rng rng(9);
  for (const PasskeyKeySet set : {PasskeyKeySet::eval, PasskeyKeySet::train}) {
    std::set<std::pair<int, char>> seen;
    for (int i = 0; i < 3000; ++i) {
      const std::string key = passkey_random_key(rng, 5, set);
      ASSERT_EQ(key.size(), 5u);
      ASSERT_NE(key[0], '0');
      ASSERT_EQ(std::stoll(key) % 3 == 0, set == PasskeyKeySet::eval) << key;
      for (int d = 0; d < 5; ++d) seen.insert({d, key[d]});
    }
    EXPECT_EQ(seen.size(), 4u * 10u + 9u);
  }
  // every 2-digit number is in exactly one set
  for (int k = 10; k < 100; ++k)
    EXPECT_NE(passkey_key_in_set(std::to_string(k), PasskeyKeySet::eval),
              passkey_key_in_set(std::to_string(k), PasskeyKeySet::train));
  Rng one(1);
  EXPECT_EQ(passkey_random_key(one, 1, PasskeyKeySet::eval).find_first_not_of("369"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { passkey_random_key(one, 0, PasskeyKeySet::eval); }), "");
  EXPECT_NE(test::error_of([&] { passkey_random_key(one, 19, PasskeyKeySet::eval); }), "");
}

std::vector<int32_t> byte_ids(const std::string& s) {
  std::vector<int32_t> out;
  for (char c : s) out.push_back(int32_t(static_cast<unsigned char>(c)));
  return out;
}

TEST(PasskeyScore, CountsKeyTokensAndTheFirstNumber) {
  const auto bytes = byte_tokenizer();
  const PasskeyTemplate t = passkey_template(*bytes);
  const PasskeyPrompt p = passkey_prompt(t, "12345", 400, 0.5);
  EXPECT_EQ(p.answer, byte_ids(" 12345"));
  EXPECT_EQ(p.answer_skip, 1) << "the space before the key is not scored";
  EXPECT_EQ(passkey_answer_tokens(p), 8);
  struct Case {
    std::string generated;
    double accuracy;
    bool exact;
    std::string number;
  };
  for (const Case& c : std::vector<Case>{{" 12345.\n", 1.0, true, "12345"},
                                         {" 12395. ", 0.8, false, "12395"},
                                         {" 123456.", 1.0, false, "123456"},
                                         {" 2345.  ", 0.0, false, "2345"},
                                         {"x12345 i", 1.0, true, "12345"},
                                         {" one two", 0.0, false, ""},
                                         {" 1", 0.2, false, "1"},
                                         {"", 0.0, false, ""}}) {
    const PasskeyScore s = passkey_score(*bytes, p, byte_ids(c.generated));
    EXPECT_DOUBLE_EQ(s.token_accuracy, c.accuracy) << c.generated;
    EXPECT_EQ(s.exact, c.exact) << c.generated;
    EXPECT_EQ(s.first_number, c.number) << c.generated;
    EXPECT_EQ(s.text, c.generated);
  }
}

TEST(PasskeyOptions, ParseLengthsAndPositions) {
  EXPECT_EQ(parse_token_count("32K", "x"), 32768);
  EXPECT_EQ(parse_token_count("1M", "x"), 1048576);
  EXPECT_EQ(parse_token_count("5k", "x"), 5120);
  EXPECT_EQ(parse_token_count("4097", "x"), 4097);
  for (const char* bad : {"", "K", "12X", "-5", "0", "1.5K", "99999999999999M"})
    EXPECT_NE(test::error_of([&] { parse_token_count(bad, "--lengths"); }).find("--lengths"),
              std::string::npos)
        << bad;
  EXPECT_EQ(parse_passkey_position("start", "x").fraction, 0.0);
  EXPECT_EQ(parse_passkey_position("middle", "x").fraction, 0.5);
  EXPECT_EQ(parse_passkey_position("end", "x").fraction, 1.0);
  EXPECT_EQ(parse_passkey_position("0.25", "x").fraction, 0.25);
  for (const char* bad : {"left", "1.5", "-0.1", "0.5x", "nan", ""})
    EXPECT_NE(test::error_of([&] { parse_passkey_position(bad, "--positions"); }), "") << bad;
  EXPECT_EQ(format_token_count(32768), "32K");
  EXPECT_EQ(format_token_count(1 << 20), "1M");
  EXPECT_EQ(format_token_count(1000), "1000");
}

// SentencePiece: the prompt, built from separately encoded pieces, is exactly the tokens of its
// text, and the answer's first token carries the space.
TEST(PasskeyPrompt, SentencePiecePromptsAreTheTokensOfTheirText) {
  const std::string dir = test::scratch_dir("passkey_sp");
  {
    std::ofstream corpus(dir + "/corpus.txt");
    Rng rng(4);
    for (int i = 0; i < 300; ++i)
      corpus << kPasskeyHead << " " << kPasskeyDefaultFiller
             << passkey_needle_text(passkey_random_key(rng, 5, PasskeyKeySet::train))
             << kPasskeyQuestion << " And the earth was without form, and void.\n";
  }
  sentencepiece_train({dir + "/corpus.txt"}, dir + "/tok", 400);
  const auto sp = sentencepiece_tokenizer(dir + "/tok.model");
  const PasskeyTemplate t = passkey_template(*sp);
  EXPECT_LT(t.filler.size(), std::string(kPasskeyDefaultFiller).size() * 3 / 4)
      << "pieces of several bytes, so the test proves something";
  for (int64_t length : {200, 517, 2000})
    for (double position : {0.0, 0.5, 1.0}) {
      const PasskeyPrompt p = passkey_prompt(t, "36912", length, position, true);
      const std::string text = passkey_prompt_text(t, p);
      EXPECT_EQ(sp->encode(text), all_tokens(t, p)) << length << " " << position;
      const PasskeyPrompt exact = passkey_prompt(t, "36912", length, position);
      EXPECT_EQ(exact.length, length);
    }
  const PasskeyPrompt p = passkey_prompt(t, "36912", 500, 0.5);
  EXPECT_EQ(p.answer, sp->encode(" 36912"));
  EXPECT_EQ(p.answer_skip, sp->token_bytes(p.answer[0]) == " " ? 1 : 0);
  std::vector<int32_t> right = p.answer;
  right.push_back(sp->encode(".")[0]);
  const PasskeyScore s = passkey_score(*sp, p, right);
  EXPECT_TRUE(s.exact);
  EXPECT_DOUBLE_EQ(s.token_accuracy, 1.0);
}

// Greedy decoding after a chunked prefill gives exactly the argmax continuation of one forward
// pass over prompt + answer: for tails of 1 and N tokens, and answers that cross boundaries.
TEST(PasskeyGreedy, EqualsTheArgmaxOfOneForwardPass) {
  threads_init(1);  // each test runs as its own process; one thread is steadier on a busy host
  const std::string dir = test::scratch_dir("passkey_greedy");
  // the reference's random model has O(1) logits, so the argmax is well separated
  ASSERT_NO_FATAL_FAILURE(test::run_reference(
      "make-case --out " + dir +
      " --seed 5 --batch 1 --seq-len 4 --vocab 256 --hidden 32 "
      "--layers 2 --heads 4 --kv-heads 2 --head-dim 8 --ffn 48 --segment 16 --update delta"));
  const Model model = model_load(dir);
  const int64_t N = 16, V = 256;
  const auto bytes = byte_tokenizer();
  const PasskeyTemplate t = passkey_template(*bytes);
  PasskeyRunner runner = passkey_runner_create(model, 40);  // 2 segments per chunk
  ASSERT_EQ(runner.decoder.chunk_tokens, 32);
  double smallest_gap = 1e9;
  for (int64_t length : {int64_t(16 * 16), int64_t(16 * 16 + 1), int64_t(300), int64_t(333)})
    for (double position : {0.0, 1.0}) {
      const PasskeyPrompt p = passkey_prompt(t, "12345", length, position);
      const int64_t count = 2 * N + 3;  // crosses two segment boundaries
      int64_t seen = 0;
      const std::vector<int32_t> answer =
          passkey_generate(runner, t, p, count, [&](int64_t n) { seen += n; });
      ASSERT_EQ(int64_t(answer.size()), count);
      EXPECT_EQ(seen, length + count);
      std::vector<int32_t> all = all_tokens(t, p);
      all.insert(all.end(), answer.begin(), answer.end() - 1);
      const int64_t T = int64_t(all.size());
      Activations act = activations_create(model.config, 1, T, false);
      StreamState state = stream_state_create(model.config, 1);
      model_forward(model, state, act, all.data(), T);
      for (int64_t i = 0; i < count; ++i) {
        const float* row = act.logits + (length - 1 + i) * V;
        std::vector<float> sorted(row, row + V);
        std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
        smallest_gap = std::min(smallest_gap, double(sorted[0] - sorted[1]));
        EXPECT_EQ(answer[size_t(i)], int32_t(std::max_element(row, row + V) - row))
            << "length " << length << ", position " << position << ", token " << i;
      }
    }
  std::printf("smallest top-2 logit gap: %.3g\n", smallest_gap);
}

// A SentencePiece model runs end to end: prompt streamed, answer decoded and scored.
TEST(PasskeyGreedy, RunsWithASentencePieceModel) {
  threads_init(1);
  const std::string dir = test::scratch_dir("passkey_sp_model");
  {
    std::ofstream corpus(dir + "/corpus.txt");
    for (int i = 0; i < 200; ++i)
      corpus << kPasskeyHead << " " << kPasskeyDefaultFiller << kPasskeyQuestion << " " << i * 37
             << ".\n";
  }
  sentencepiece_train({dir + "/corpus.txt"}, dir + "/tok", 360);
  const auto sp = sentencepiece_tokenizer(dir + "/tok.model");
  ModelConfig config = config_load(std::string(INFINI_SOURCE_DIR) + "/configs/infini-tiny.json");
  config.vocab_size = 384;
  Model model = model_create(config);
  model_init_random(model, 2);
  const PasskeyTemplate t = passkey_template(*sp);
  PasskeyEvalOptions o;
  o.lengths = {300, 700};
  o.positions = {{"start", 0.0}, {"end", 1.0}};
  o.trials = 2;
  const int64_t total = passkey_eval_tokens(t, o);
  const PasskeyEvalResult r = passkey_evaluate(model, t, o);
  EXPECT_EQ(r.tokens, total);
  ASSERT_EQ(r.trials.size(), 8u);
  ASSERT_EQ(r.cells.size(), 4u);
  for (const PasskeyTrial& trial : r.trials) {
    EXPECT_EQ(std::stoll(trial.key) % 3, 0);
    Rng rng(passkey_trial_seed(0, trial.length, trial.fraction, trial.trial));
    EXPECT_EQ(trial.key, passkey_random_key(rng, 5, PasskeyKeySet::eval));
    const PasskeyPrompt p = passkey_prompt(t, trial.key, trial.length, trial.fraction);
    EXPECT_EQ(int64_t(trial.generated.size()), passkey_answer_tokens(p));
    const PasskeyScore again = passkey_score(*sp, p, trial.generated);
    EXPECT_EQ(again.token_accuracy, trial.score.token_accuracy);
  }
}

}  // namespace
}  // namespace infini
