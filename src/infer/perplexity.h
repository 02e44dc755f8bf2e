// Streaming perplexity: a text of any length goes through the model one segment at a time with
// the memory carried, in memory that does not grow with the text.
#pragma once

#include <cstdint>
#include <cstdio>
#include <istream>

#include "core/progress.h"
#include "model/model.h"

namespace infini {

struct PerplexityResult {
  int64_t tokens = 0;    // predicted tokens (the input's tokens minus one)
  int64_t bytes = 0;     // bytes of those predicted tokens
  double total_nll = 0;  // nats
  double seconds = 0;

  double mean_nll() const { return tokens ? total_nll / double(tokens) : 0; }
  double perplexity() const;
  double bits_per_byte() const;
};

// Reads bytes from `in` (byte tokenizer: token id = byte value, nothing added), predicts every
// token from the ones before it, and returns the totals. When per_token is not null it receives
// the NLL of each predicted token, one per line, 10 significant digits. progress may be null.
// chunk_tokens (rounded down to whole segments, at least one) bounds the tokens processed at once
// and so the memory used.
PerplexityResult perplexity_stream(const Model& model, std::istream& in, std::FILE* per_token,
                                   Progress* progress, int64_t chunk_tokens = 4096);

}  // namespace infini
