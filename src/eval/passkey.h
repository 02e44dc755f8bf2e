// Passkey retrieval (Infini-attention, arXiv 2404.07143, Appendix B; ../shared/spec/evaluation.md):
// the prompt, the keys and the score. The decoding loop is in eval/passkey_eval.h, the fine-tuning
// data in eval/passkey_data.h; docs/evaluation.md describes all three for users.
//
// The prompt, as pieces (every piece after the first starts with a space, so no token of a
// byte or `infini tokenizer train` SentencePiece model spans two pieces and the prompt's tokens
// are the concatenation of the pieces' tokens):
//
//   head      "There is an important info hidden inside a lot of irrelevant text. Find it and
//              memorize them. I will quiz you about the important information there."
//   filler    " The grass is green. The sky is blue. The sun is yellow. Here we go. There and
//              back again." repeated (or " " + the text of --filler FILE, whitespace-trimmed)
//   needle    " The pass key is KEY. Remember it. KEY is the pass key."
//   question  " What is the pass key? The pass key is"
//
//   prompt = head + filler[0, b) + needle + filler[b, F) + question
//
// where filler[i, j) are tokens i..j-1 of the filler repeated without end, F is what is left of
// the requested length after head, needle and question, and b is the sentence start of the
// filler nearest to fraction * F. With the default filler, x whole repetitions, the needle and
// y whole repetitions give the paper's text exactly (with "(repeat x times)" left out); a length
// that is not a whole number of sentences ends the filler mid-sentence, at a token, just before
// the question (whole-sentence prompts, used for training data, instead stop at the last sentence
// start that fits and come out shorter than asked).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/random.h"
#include "data/tokenizer.h"

namespace infini {

// The paper's haystack: one repetition, without the leading space the prompt puts before it.
inline constexpr std::string_view kPasskeyDefaultFiller =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
inline constexpr std::string_view kPasskeyHead =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
    "them. I will quiz you about the important information there.";
inline constexpr std::string_view kPasskeyQuestion = " What is the pass key? The pass key is";
// " The pass key is KEY. Remember it. KEY is the pass key."
std::string passkey_needle_text(const std::string& key);

// The fixed pieces, tokenised once for a tokenizer and a filler text.
struct PasskeyTemplate {
  const Tokenizer* tokenizer = nullptr;
  std::vector<int32_t> head;             // [head tokens]
  std::vector<int32_t> question;         // [question tokens]
  std::vector<int32_t> filler;           // [U] one repetition of " " + filler text
  std::vector<int64_t> sentence_starts;  // token offsets within filler, ascending, the first 0
  std::string filler_name;               // "default" or the file's path
};

// filler_text: the haystack text; leading and trailing whitespace is removed and one space put
// before it. A sentence starts at a space or newline after '.', '!' or '?' (or after one of those
// and a closing quote or bracket). Throws when the text is empty or (SentencePiece) when its
// tokens are not the concatenation of its sentences' tokens.
PasskeyTemplate passkey_template(const Tokenizer& tokenizer,
                                 std::string_view filler_text = kPasskeyDefaultFiller,
                                 const std::string& filler_name = "default");
// The same with the text of `path` (errors name the file).
PasskeyTemplate passkey_template_from_file(const Tokenizer& tokenizer, const std::string& path);

// One prompt: where its tokens come from.
struct PasskeyPrompt {
  std::string key;              // the digits
  int64_t length = 0;           // tokens of the prompt
  int64_t filler_tokens = 0;    // F
  int64_t key_offset = 0;       // b: filler tokens before the needle
  int64_t key_token = 0;        // position of the needle's first token in the prompt
  std::vector<int32_t> needle;  // [needle tokens]
  std::vector<int32_t> answer;  // [A] tokens of " KEY": the continuation that is scored
  int64_t answer_skip = 0;      // leading answer tokens that are whitespace only (not scored)
};

// The length of a prompt with no filler for `key`.
int64_t passkey_min_length(const PasskeyTemplate& t, const std::string& key);

// Lays out a prompt of exactly `length` tokens with `key` at the filler's sentence start nearest
// to fraction `position` in [0, 1] of the filler (0: right after the head; 1: the last sentence
// start that fits; ties go to the earlier one). With whole_sentences the filler stops at the last
// sentence start that fits (length is then at most the one asked for). Throws when length cannot
// hold head, needle and question.
PasskeyPrompt passkey_prompt(const PasskeyTemplate& t, const std::string& key, int64_t length,
                             double position, bool whole_sentences = false);

// out[0, count) = tokens [begin, begin + count) of the prompt, generated on the fly: a prompt of
// any length is read chunk by chunk in memory that does not depend on its length.
void passkey_prompt_tokens(const PasskeyTemplate& t, const PasskeyPrompt& p, int64_t begin,
                           int64_t count, int32_t* out);
// The prompt's text (the bytes of its tokens): for tests, examples and training data.
std::string passkey_prompt_text(const PasskeyTemplate& t, const PasskeyPrompt& p);

// Keys: `digits` decimal digits (1..18), the first not 0, uniform over the key set. Evaluation
// keys are the multiples of 3 and training keys (`infini data passkey`) all the others, so a
// model is always evaluated on keys it was not trained on while every digit takes every value
// at every place in both sets.
enum class PasskeyKeySet { eval, train };
std::string passkey_random_key(Rng& rng, int digits, PasskeyKeySet set);
bool passkey_key_in_set(const std::string& key, PasskeyKeySet set);
// The generator seed of one evaluation trial: a function of the run's seed, the length, the
// position and the trial index only, so a cell's keys do not depend on the other cells asked for.
uint64_t passkey_trial_seed(uint64_t seed, int64_t length, double position, int64_t trial);

// The score of one generated continuation against p.answer.
struct PasskeyScore {
  double token_accuracy = 0;  // matching tokens / scored tokens, position by position
  bool exact = false;         // first number == key
  std::string text;           // what was generated
  std::string first_number;   // the first run of digits in text ("" when none)
};
PasskeyScore passkey_score(const Tokenizer& tokenizer, const PasskeyPrompt& p,
                           const std::vector<int32_t>& generated);
// Tokens to generate for a prompt: the answer's and two more, to see where the number ends.
int64_t passkey_answer_tokens(const PasskeyPrompt& p);

// Command-line values. "32K" = 32768 tokens, "1M" = 1048576 (K = 1024), plain numbers too.
int64_t parse_token_count(const std::string& text, const std::string& where);
struct PasskeyPosition {
  std::string name;  // "start", "middle", "end" or the fraction as given
  double fraction = 0;
};
// "start" (0), "middle" (0.5), "end" (1) or a fraction in [0, 1].
PasskeyPosition parse_passkey_position(const std::string& text, const std::string& where);
// 32768 -> "32K", 1048576 -> "1M", others as plain numbers.
std::string format_token_count(int64_t tokens);

}  // namespace infini
