#include "eval/passkey.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "data/utf8.h"

namespace infini {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

// Does a sentence end just before unit[i] (a space or newline)?
bool sentence_ends_before(const std::string& unit, size_t i) {
  size_t j = i - 1;
  if (std::strchr("\"')]", unit[j]) && j > 0) --j;
  return unit[j] == '.' || unit[j] == '!' || unit[j] == '?';
}

std::vector<int32_t> concat(std::initializer_list<const std::vector<int32_t>*> parts) {
  std::vector<int32_t> out;
  for (const auto* p : parts) out.insert(out.end(), p->begin(), p->end());
  return out;
}

// The largest sentence start of the endless filler that is <= x.
int64_t sentence_start_at_or_below(const PasskeyTemplate& t, int64_t x) {
  const int64_t U = int64_t(t.filler.size()), m = x / U, r = x % U;
  const auto it = std::upper_bound(t.sentence_starts.begin(), t.sentence_starts.end(), r);
  return m * U + *(it - 1);  // sentence_starts[0] == 0 <= r
}

// The smallest sentence start of the endless filler that is >= x.
int64_t sentence_start_at_or_above(const PasskeyTemplate& t, int64_t x) {
  const int64_t U = int64_t(t.filler.size()), m = x / U, r = x % U;
  const auto it = std::lower_bound(t.sentence_starts.begin(), t.sentence_starts.end(), r);
  return it == t.sentence_starts.end() ? (m + 1) * U : m * U + *it;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

std::string passkey_needle_text(const std::string& key) {
  return " The pass key is " + key + ". Remember it. " + key + " is the pass key.";
}

PasskeyTemplate passkey_template(const Tokenizer& tokenizer, std::string_view filler_text,
                                 const std::string& filler_name) {
  const std::string_view body = trim(filler_text);
  if (body.empty())
    throw Error(filler_name, "the filler text is empty (nothing but whitespace)",
                "give a text file with a few sentences");
  const bool bytes = tokenizer.name() == "byte";
  if (!bytes) {  // SentencePiece gives back only valid UTF-8 without U+2581 (utf8.h)
    Utf8Checker check;
    if (!check.feed(body.data(), body.size()) || !check.finish())
      throw Error(filler_name,
                  str(check.problem(), " at line ", check.line(), ", column ", check.column()),
                  "a SentencePiece model needs valid UTF-8 text without U+2581");
  }
  std::string unit(1, ' ');  // (not " " + ...: GCC 12 warns wrongly about that, -Wrestrict)
  unit += body;
  std::vector<size_t> starts = {0};  // byte offsets of the sentences in unit
  for (size_t i = 1; i < unit.size(); ++i)
    if ((unit[i] == ' ' || unit[i] == '\n') && !is_space(unit[i - 1]) &&
        sentence_ends_before(unit, i))
      starts.push_back(i);

  PasskeyTemplate t;
  t.tokenizer = &tokenizer;
  t.filler_name = filler_name;
  t.head = tokenizer.encode(kPasskeyHead);
  t.question = tokenizer.encode(kPasskeyQuestion);
  std::vector<std::vector<int32_t>> sentences;
  for (size_t k = 0; k < starts.size(); ++k) {
    const size_t end = k + 1 < starts.size() ? starts[k + 1] : unit.size();
    sentences.push_back(
        tokenizer.encode(std::string_view(unit).substr(starts[k], end - starts[k])));
    if (sentences.back().empty()) continue;  // cannot happen for non-empty text; be safe
    t.sentence_starts.push_back(int64_t(t.filler.size()));
    t.filler.insert(t.filler.end(), sentences.back().begin(), sentences.back().end());
  }
  INFINI_CHECK(!t.filler.empty() && t.sentence_starts[0] == 0, "filler without tokens");

  if (!bytes) {
    // The prompt is assembled from separately encoded pieces; with SentencePiece that is exact
    // only if no token spans a piece boundary. Check every boundary the prompt can have.
    const std::string needle = passkey_needle_text("12345");
    const std::vector<int32_t> needle_tokens = tokenizer.encode(needle);
    const std::string first(unit.substr(0, starts.size() > 1 ? starts[1] : unit.size()));
    const std::string last(unit.substr(starts.back()));
    const std::vector<int32_t> first_tokens = tokenizer.encode(first);
    const std::vector<int32_t> last_tokens = tokenizer.encode(last);
    const bool whole = tokenizer.encode(unit) == t.filler;
    const bool joins = tokenizer.encode(std::string(kPasskeyHead) + first + needle + last + first +
                                        needle + std::string(kPasskeyQuestion)) ==
                       concat({&t.head, &first_tokens, &needle_tokens, &last_tokens, &first_tokens,
                               &needle_tokens, &t.question});
    if (!whole || !joins)
      throw Error(filler_name,
                  "with this SentencePiece model a token spans the boundary between two "
                  "sentences of the prompt, so the prompt cannot be built piece by piece",
                  "use a tokenizer made by `infini tokenizer train` (its pieces never cross a "
                  "space) or the byte tokenizer");
  }
  return t;
}

PasskeyTemplate passkey_template_from_file(const Tokenizer& tokenizer, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, "cannot open the filler file", "check the path given to --filler");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw Error(path, "read error");
  return passkey_template(tokenizer, text.str(), path);
}

int64_t passkey_min_length(const PasskeyTemplate& t, const std::string& key) {
  return int64_t(t.head.size() + t.tokenizer->encode(passkey_needle_text(key)).size() +
                 t.question.size());
}

PasskeyPrompt passkey_prompt(const PasskeyTemplate& t, const std::string& key, int64_t length,
                             double position, bool whole_sentences) {
  if (key.empty() || key.find_first_not_of("0123456789") != std::string::npos)
    throw Error("passkey", "the key \"" + key + "\" is not a number");
  if (!(position >= 0 && position <= 1))
    throw Error("passkey", str("position ", position, " is not a fraction in [0, 1]"));
  PasskeyPrompt p;
  p.key = key;
  p.needle = t.tokenizer->encode(passkey_needle_text(key));
  const int64_t fixed = int64_t(t.head.size() + p.needle.size() + t.question.size());
  if (length < fixed)
    throw Error("length",
                str(length,
                    " tokens cannot hold the passkey prompt: its instructions, "
                    "key sentence and question alone take ",
                    fixed, " tokens"),
                str("ask for at least ", fixed, " tokens"));
  int64_t F = length - fixed;
  if (whole_sentences) F = sentence_start_at_or_below(t, F);
  const double target = position * double(F);
  const int64_t lower = sentence_start_at_or_below(t, int64_t(std::floor(target)));
  const int64_t upper = sentence_start_at_or_above(t, int64_t(std::ceil(target)));
  p.key_offset = (upper <= F && double(upper) - target < target - double(lower)) ? upper : lower;
  p.filler_tokens = F;
  p.length = fixed + F;
  p.key_token = int64_t(t.head.size()) + p.key_offset;
  p.answer = t.tokenizer->encode(" " + key);
  while (p.answer_skip < int64_t(p.answer.size())) {
    const std::string piece = t.tokenizer->token_bytes(p.answer[p.answer_skip]);
    if (!std::all_of(piece.begin(), piece.end(), is_space)) break;
    ++p.answer_skip;
  }
  INFINI_CHECK(p.answer_skip < int64_t(p.answer.size()), "the key's tokens are all whitespace");
  return p;
}

void passkey_prompt_tokens(const PasskeyTemplate& t, const PasskeyPrompt& p, int64_t begin,
                           int64_t count, int32_t* out) {
  INFINI_CHECK(begin >= 0 && count >= 0 && begin + count <= p.length, "tokens [", begin, ", ",
               begin + count, ") of a prompt of ", p.length);
  const int64_t end = begin + count, U = int64_t(t.filler.size());
  int64_t at = 0;  // prompt position where the current piece starts
  // Copies the part of piece [at, at + size) that falls in [begin, end); token(i) gives the
  // piece's i-th token. Pieces are walked in order, so this is O(pieces + count).
  auto piece = [&](int64_t size, auto&& copy_range) {
    const int64_t lo = std::max(begin, at), hi = std::min(end, at + size);
    if (lo < hi) copy_range(lo - at, hi - lo, out + (lo - begin));
    at += size;
  };
  auto literal = [&](const std::vector<int32_t>& v) {
    piece(int64_t(v.size()),
          [&](int64_t from, int64_t n, int32_t* to) { std::copy_n(v.data() + from, n, to); });
  };
  auto filler = [&](int64_t filler_from, int64_t size) {
    piece(size, [&](int64_t from, int64_t n, int32_t* to) {
      int64_t s = (filler_from + from) % U;
      while (n > 0) {
        const int64_t run = std::min(n, U - s);
        std::copy_n(t.filler.data() + s, run, to);
        to += run;
        n -= run;
        s = 0;
      }
    });
  };
  literal(t.head);
  filler(0, p.key_offset);
  literal(p.needle);
  filler(p.key_offset, p.filler_tokens - p.key_offset);
  literal(t.question);
  INFINI_CHECK(at == p.length, "prompt pieces add up to ", at, " tokens, not ", p.length);
}

std::string passkey_prompt_text(const PasskeyTemplate& t, const PasskeyPrompt& p) {
  std::string text;
  std::vector<int32_t> chunk(4096);
  for (int64_t at = 0; at < p.length; at += int64_t(chunk.size())) {
    const int64_t n = std::min<int64_t>(int64_t(chunk.size()), p.length - at);
    passkey_prompt_tokens(t, p, at, n, chunk.data());
    for (int64_t i = 0; i < n; ++i) text += t.tokenizer->token_bytes(chunk[i]);
  }
  return text;
}

std::string passkey_random_key(Rng& rng, int digits, PasskeyKeySet set) {
  if (digits < 1 || digits > 18)
    throw Error("--digits", str(digits, " digits: keys have 1 to 18 digits"));
  uint64_t lo = 1;
  for (int i = 1; i < digits; ++i) lo *= 10;
  const uint64_t hi = lo * 10;
  for (;;) {  // rejection: each draw is in the set with probability 1/3 or 2/3
    const std::string key = std::to_string(lo + rng.below(hi - lo));
    if (passkey_key_in_set(key, set)) return key;
  }
}

bool passkey_key_in_set(const std::string& key, PasskeyKeySet set) {
  int residue = 0;  // key mod 3 = digit sum mod 3
  for (char c : key) residue = (residue + (c - '0')) % 3;
  return (residue == 0) == (set == PasskeyKeySet::eval);
}

uint64_t passkey_trial_seed(uint64_t seed, int64_t length, double position, int64_t trial) {
  uint64_t bits;
  std::memcpy(&bits, &position, sizeof bits);
  uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ uint64_t(length));
  h = splitmix64(h ^ bits);
  return splitmix64(h ^ uint64_t(trial));
}

PasskeyScore passkey_score(const Tokenizer& tokenizer, const PasskeyPrompt& p,
                           const std::vector<int32_t>& generated) {
  PasskeyScore s;
  const int64_t A = int64_t(p.answer.size());
  int64_t right = 0;
  for (int64_t i = p.answer_skip; i < A && i < int64_t(generated.size()); ++i)
    right += generated[i] == p.answer[i];
  s.token_accuracy = double(right) / double(A - p.answer_skip);
  for (int32_t id : generated) s.text += tokenizer.token_bytes(id);
  const size_t digit = s.text.find_first_of("0123456789");
  if (digit != std::string::npos) {
    const size_t stop = s.text.find_first_not_of("0123456789", digit);
    s.first_number =
        s.text.substr(digit, stop == std::string::npos ? std::string::npos : stop - digit);
  }
  s.exact = s.first_number == p.key;
  return s;
}

int64_t passkey_answer_tokens(const PasskeyPrompt& p) {
  return int64_t(p.answer.size()) + 2;
}

int64_t parse_token_count(const std::string& text, const std::string& where) {
  const std::string hint = "write a number of tokens, e.g. 4096, 32K or 1M (K = 1024)";
  if (text.empty()) throw Error(where, "empty length", hint);
  int64_t scale = 1;
  std::string digits = text;
  const char last = text.back();
  if (last == 'K' || last == 'k') scale = 1024;
  if (last == 'M' || last == 'm') scale = 1024 * 1024;
  if (scale != 1) digits.pop_back();
  if (digits.empty() || digits.size() > 12 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    throw Error(where, "\"" + text + "\" is not a length", hint);
  const int64_t value = std::stoll(digits) * scale;
  if (value <= 0) throw Error(where, "\"" + text + "\": a length must be positive", hint);
  if (value > (int64_t(1) << 40))
    throw Error(where, "\"" + text + "\" is too long (more than 2^40 tokens)", hint);
  return value;
}

PasskeyPosition parse_passkey_position(const std::string& text, const std::string& where) {
  if (text == "start") return {text, 0.0};
  if (text == "middle") return {text, 0.5};
  if (text == "end") return {text, 1.0};
  const std::string hint = "use start, middle, end or a fraction between 0 and 1";
  double value = 0;
  size_t used = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    throw Error(where, "\"" + text + "\" is not a position", hint);
  }
  if (used != text.size()) throw Error(where, "\"" + text + "\" is not a position", hint);
  if (!(value >= 0 && value <= 1)) throw Error(where, "\"" + text + "\" is outside [0, 1]", hint);
  return {text, value};
}

std::string format_token_count(int64_t tokens) {
  if (tokens > 0 && tokens % (1024 * 1024) == 0) return str(tokens / (1024 * 1024), "M");
  if (tokens > 0 && tokens % 1024 == 0) return str(tokens / 1024, "K");
  return std::to_string(tokens);
}

}  // namespace infini
