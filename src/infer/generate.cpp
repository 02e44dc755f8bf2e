#include "infer/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace infini {

namespace {

// The longest suffix of text[from, end) that is a proper prefix of one of the stop strings.
size_t stop_prefix_at_end(const std::string& text, size_t from,
                          const std::vector<std::string>& stop) {
  size_t longest = 0;
  for (const std::string& s : stop)
    for (size_t k = std::min(s.size() - 1, text.size() - from); k > longest; --k)
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        longest = k;
        break;
      }
  return longest;
}

}  // namespace

int64_t prompt_feed(Decoder& d, const Tokenizer& tokenizer, std::istream& in,
                    const std::function<void(int64_t, int64_t)>& on_progress) {
  const int64_t V = d.model->config.vocab_size, C = d.chunk_tokens;
  if (tokenizer.vocab_size() > V)
    throw Error("prompt",
                str("the ", tokenizer.name(), " tokenizer has ", tokenizer.vocab_size(),
                    " ids, more than the model's vocab_size (", V, ")"),
                "the checkpoint's tokenizer does not belong to this model");
  // about C tokens of text per block; SentencePiece encodes pieces of at most 16 KiB (its BPE
  // slows down on long strings, docs/formats.md "Tokenizers")
  const size_t block = size_t(tokenizer.name() == "byte" ? C : std::min<int64_t>(4 * C, 16384));
  std::string text;
  std::vector<char> buffer(block);
  std::vector<int32_t> tokens;  // encoded, not yet fed
  int64_t fed = 0, bytes = 0;
  bool at_end = false;

  // feeds the tokens up to the last multiple of C in stream positions (all of them at the end)
  auto feed = [&](bool all) {
    size_t at = 0;
    while (at < tokens.size()) {
      const int64_t room = C - d.state.position % C, left = int64_t(tokens.size() - at);
      if (left < room && !all) break;
      const int64_t n = std::min(left, room);
      decoder_feed(d, tokens.data() + at, n);
      at += size_t(n);
      fed += n;
      if (on_progress) on_progress(bytes, fed);
    }
    tokens.erase(tokens.begin(), tokens.begin() + ptrdiff_t(at));
  };

  for (;;) {
    while (!at_end && text.size() <= block) {
      in.read(buffer.data(), std::streamsize(block));
      if (in.bad()) throw Error("prompt", "read error on the prompt's input");
      const size_t got = size_t(in.gcount());
      text.append(buffer.data(), got);
      at_end = got < block;
    }
    if (text.empty()) break;
    const size_t cut = text_chunk_end(text, block);  // all of it only at the end of the input
    const std::vector<int32_t> ids = tokenizer.encode(std::string_view(text).substr(0, cut));
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    bytes += int64_t(cut);
    text.erase(0, cut);
    feed(false);
  }
  feed(true);
  return fed;
}

GenerateResult generate(Decoder& d, Sampler& sampler, const Tokenizer& tokenizer,
                        const GenerateOptions& o,
                        const std::function<void(std::string_view)>& emit) {
  INFINI_CHECK(d.state.position > 0, "generation needs a stream that holds at least one token");
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> stop;
  for (const std::string& s : o.stop)
    if (!s.empty()) stop.push_back(s);
  GenerateResult r;
  size_t emitted = 0;  // r.text[0, emitted) has been handed out
  auto release = [&](size_t end) {
    if (end <= emitted) return;
    if (emit) emit(std::string_view(r.text).substr(emitted, end - emitted));
    emitted = end;
  };

  for (int64_t i = 0; i < o.max_new; ++i) {
    const int32_t token = sampler_pick(sampler, d.logits.data());
    r.text += tokenizer.token_bytes(token);
    r.ids.push_back(token);
    ++r.tokens;
    // No stop string starts before `emitted` (those bytes were released only once they could
    // not begin one), so the search starts there.
    size_t stop_at = std::string::npos;
    for (const std::string& s : stop) {
      const size_t at = r.text.find(s, emitted);
      if (at < stop_at) stop_at = at, r.stopped_by = s;
    }
    if (stop_at != std::string::npos) {
      r.text.resize(stop_at);
      release(stop_at);
    } else {
      release(r.text.size() - stop_prefix_at_end(r.text, emitted, stop));
    }
    decoder_step(d, token);  // every token drawn joins the stream, a stop string's included
    if (stop_at != std::string::npos) break;
  }
  release(r.text.size());
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace infini
