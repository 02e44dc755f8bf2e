#include "eval/passkey_data.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/token_shard.h"

namespace infini {

namespace {

struct Example {
  PasskeyPrompt prompt;
  std::vector<int32_t> answer;  // " KEY."
  int64_t padding = 0;          // newlines after the answer (>= 1)
};

// Positions within the needle's tokens of those that overlap the bytes of its second KEY.
std::vector<int64_t> second_key_tokens(const Tokenizer& tok, const PasskeyPrompt& p) {
  const std::string before = " The pass key is " + p.key + ". Remember it. ";
  INFINI_CHECK(passkey_needle_text(p.key).compare(before.size(), p.key.size(), p.key) == 0,
               "the needle text changed: update second_key_tokens");
  const size_t first = before.size(), last = first + p.key.size();  // bytes [first, last)
  std::vector<int64_t> out;
  size_t at = 0;
  for (size_t i = 0; i < p.needle.size(); ++i) {
    const size_t end = at + tok.token_bytes(p.needle[i]).size();
    if (end > first && at < last) out.push_back(int64_t(i));
    at = end;
  }
  return out;
}

// A file written under a temporary name and renamed into place by commit().
class PendingFile {
 public:
  explicit PendingFile(std::string path)
      : path_(std::move(path)),
        tmp_(path_ + ".tmp"),
        file_(std::fopen(tmp_.c_str(), "wb"), std::fclose) {
    if (!file_) throw Error(tmp_, "cannot open for writing", "check that --out is writable");
  }
  ~PendingFile() {
    if (file_) {
      file_.reset();
      std::remove(tmp_.c_str());
    }
  }
  void write(const std::string& bytes) {
    if (std::fwrite(bytes.data(), 1, bytes.size(), file_.get()) != bytes.size())
      throw Error(tmp_, "write failed (disk full?)");
  }
  void commit() {
    if (std::fflush(file_.get()) != 0 || std::fclose(file_.release()) != 0)
      throw Error(tmp_, "write failed (disk full?)");
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) throw Error(path_, "cannot be written: " + ec.message());
  }

 private:
  std::string path_, tmp_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_;
};

}  // namespace

PasskeyDataResult passkey_write_data(const PasskeyTemplate& t, const PasskeyDataOptions& o,
                                     const std::function<void(int64_t)>& on_example) {
  const auto start = std::chrono::steady_clock::now();
  const Tokenizer& tok = *t.tokenizer;
  const int64_t T = o.seq_len > 0 ? o.seq_len : o.max_length;
  if (o.count < 1) throw Error("--count", str(o.count, ": at least one example"));
  if (o.min_length < 1 || o.min_length > o.max_length)
    throw Error("--min-length", str(o.min_length, " tokens with --max-length ", o.max_length),
                "need 1 <= --min-length <= --max-length");
  if (o.aligned_fraction < 0 || o.aligned_fraction > 1 || (o.aligned_fraction > 0 && o.align < 1))
    throw Error("--aligned-fraction",
                str(o.aligned_fraction, " with alignment ", o.align, " tokens"),
                "a fraction in [0, 1], and a positive --align (or --model: its segment length)");
  if (o.max_length > T)
    throw Error("--max-length", str(o.max_length, " tokens is more than --seq-len (", T, ")"),
                "examples are padded to --seq-len tokens: make it at least --max-length");
  const std::vector<int32_t> newline = tok.encode("\n");
  if (newline.size() != 1 || tok.encode("\n\n") != std::vector<int32_t>{newline[0], newline[0]})
    throw Error("passkey data", "the tokenizer does not encode a newline as one token of its own",
                "use the byte tokenizer or one made by `infini tokenizer train`");

  // Every example is laid out first, so that a bad option fails before anything is written.
  Rng rng(o.seed);
  std::vector<Example> examples(size_t(o.count));
  for (Example& e : examples) {
    const std::string key = passkey_random_key(rng, o.digits, PasskeyKeySet::train);
    const int64_t content =
        o.min_length + int64_t(rng.below(uint64_t(o.max_length - o.min_length + 1)));
    const double position = rng.uniform();
    e.answer = tok.encode(" " + key + ".");
    const int64_t prompt_length = content - int64_t(e.answer.size()) - 1;
    const int64_t needed = passkey_min_length(t, key) + int64_t(e.answer.size()) + 1;
    if (o.min_length < needed)
      throw Error("--min-length",
                  str(o.min_length, " tokens cannot hold an example with a ", o.digits,
                      "-digit key: the prompt without filler, the answer and a newline take ",
                      needed, " tokens"),
                  str("use --min-length ", needed, " or more"));
    const bool aligned = o.aligned_fraction > 0 && rng.uniform() < o.aligned_fraction;
    int64_t length = prompt_length;
    if (aligned) {
      const int64_t shortest = passkey_min_length(t, key);
      length = prompt_length / o.align * o.align;
      if (length < shortest) length = (shortest + o.align - 1) / o.align * o.align;
      if (length + int64_t(e.answer.size()) + 1 > T)
        throw Error("--aligned-fraction",
                    str("no prompt of a multiple of ", o.align, " tokens fits in --seq-len ", T,
                        " with its answer"),
                    "use a longer --seq-len or --max-length");
    }
    e.prompt = passkey_prompt(t, key, length, position, /*whole_sentences=*/!aligned);
    e.padding = T - e.prompt.length - int64_t(e.answer.size());
  }

  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) throw Error(o.out_dir, "cannot create the output folder: " + ec.message());
  PasskeyDataResult r;
  r.text_path = (std::filesystem::path(o.out_dir) / "passkey.txt").string();
  r.examples_path = (std::filesystem::path(o.out_dir) / "examples.jsonl").string();
  r.seq_len = T;
  r.mask_path = (std::filesystem::path(o.out_dir) / "passkey.mask").string();
  PendingFile text(r.text_path), index(r.examples_path);
  std::vector<int32_t> mask(size_t(o.count * T + 2), 0);  // [count * T + 2] 0/1
  const bool check_tokens = tok.name() != "byte";         // bytes: the text is the tokens
  // m held-out examples at the end, after a newline of their own (passkey_data.h)
  r.val_examples = o.count >= 5 ? std::max<int64_t>(2, std::llround(0.05 * double(o.count))) : 0;
  const int64_t first_val = o.count - r.val_examples;
  for (size_t i = 0; i < examples.size(); ++i) {
    const int64_t first_token = int64_t(i) * T + (int64_t(i) >= first_val ? 1 : 0);
    if (int64_t(i) == first_val) text.write("\n");
    const Example& e = examples[i];
    std::string example = passkey_prompt_text(t, e.prompt);
    for (int32_t id : e.answer) example += tok.token_bytes(id);
    example.append(size_t(e.padding), '\n');
    if (check_tokens && int64_t(tok.encode(example).size()) != T)
      throw Error(r.text_path, str("example ", i, " does not tokenise back to ", T, " tokens"),
                  "use the byte tokenizer or one made by `infini tokenizer train`");
    text.write(example);
    const PasskeyPrompt& p = e.prompt;
    const nlohmann::json line = {
        {"index", i},
        {"key", p.key},
        {"first_token", first_token},
        {"prompt_tokens", p.length},
        {"answer_tokens", e.answer.size()},
        {"padding_tokens", e.padding},
        {"key_token", p.key_token},
        {"key_position", p.filler_tokens ? double(p.key_offset) / double(p.filler_tokens) : 0.0}};
    index.write(line.dump() + "\n");
    r.answer_tokens += int64_t(e.answer.size());
    int32_t* example_mask = mask.data() + first_token;
    for (int64_t k : second_key_tokens(tok, p)) example_mask[p.key_token + k] = 1;
    std::fill_n(example_mask + p.length, e.answer.size(), 1);
    if (on_example) on_example(int64_t(i) + 1);
  }
  // the last held-out window's last target (without held-out examples: the newline before them
  // was never written, and this one is the last training window's)
  text.write(r.val_examples ? "\n" : "\n\n");
  token_shard_write(r.mask_path, mask, 2);
  text.commit();
  index.commit();
  for (int32_t m : mask) r.scored_tokens += m;
  r.examples = o.count;
  r.tokens = o.count * T + 2;
  // prepare puts the last round(tokens * f) tokens in val.tokens: with f = (m T + 1) / tokens
  // that is the m held-out examples and the final newline (the held-out windows need two)
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace infini
