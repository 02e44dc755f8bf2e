// Text generation on a stream (`infini generate`, docs/inference.md): read a prompt of any length
// chunk by chunk into a Decoder, then draw new tokens one at a time, each fed back into the
// stream, with stop strings and the text handed out as it is produced.
#pragma once

#include <cstdint>
#include <functional>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"
#include "infer/decoder.h"
#include "infer/sampling.h"

namespace infini {

// Reads text from `in` to its end, in blocks of about decoder.chunk_tokens tokens, encodes each
// block with `tokenizer` (cut where the encoding is unchanged: data/tokenizer.h text_chunk_end)
// and feeds the tokens, in chunks that end at multiples of chunk_tokens stream positions. Memory
// stays flat whatever the length. on_progress (may be empty) gets the bytes and tokens consumed
// so far after each chunk. Returns the number of tokens fed. Throws when the tokenizer has more
// ids than the model.
int64_t prompt_feed(Decoder& decoder, const Tokenizer& tokenizer, std::istream& in,
                    const std::function<void(int64_t bytes, int64_t tokens)>& on_progress = {});

struct GenerateOptions {
  int64_t max_new = 0;            // tokens to draw at most
  std::vector<std::string> stop;  // generation ends when the output contains one (not printed)
};

struct GenerateResult {
  std::string text;          // what was handed out: the new text, cut before a stop string
  std::string stopped_by;    // the stop string that ended generation, "" when max_new did
  std::vector<int32_t> ids;  // every token drawn (each one also fed into the stream)
  int64_t tokens = 0;        // ids.size()
  double seconds = 0;
};

// Draws up to options.max_new tokens from the decoder's current logits (decoder.state.position
// must be > 0), feeding each back so that the stream, its logits and `sampler`'s generator end
// after the last token drawn. emit (may be empty) receives the output bytes as soon as they are
// known not to begin a stop string: each token's bytes at once when there are no stop strings.
GenerateResult generate(Decoder& decoder, Sampler& sampler, const Tokenizer& tokenizer,
                        const GenerateOptions& options,
                        const std::function<void(std::string_view)>& emit = {});

}  // namespace infini
