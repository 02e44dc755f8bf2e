// Passkey fine-tuning data (`infini data passkey`): examples in the evaluation's format
// (eval/passkey.h) followed by their answer, laid out so that `infini prepare` + `infini train
// --data-order sequential --seq-len T` trains on exactly one example per row.
//
// Example i = prompt (key from the training key set, length and key position drawn at random)
//             + " KEY." + newlines up to exactly T tokens (T = seq_len; at least one newline).
// The content (prompt, answer and the first newline) has a length drawn uniformly in
// [min_length, max_length] tokens, rounded down to a whole sentence of filler so that the text
// tokenises back to the same tokens. DIR/passkey.txt holds the examples one after the other,
// with a newline before the m held-out ones (the last 5%, at least 2; none below 5 examples) and
// one at the end: count * T + 2 tokens. Split by `infini prepare --val-fraction (m T + 1) /
// (count T + 2)` (the fraction the CLI prints), the training shard is (count - m) T + 1 tokens and
// the validation shard m T + 1, so that in both the windows of T + 1 tokens start at tokens k T,
// the starts of the examples. DIR/examples.jsonl says what each holds.
//
// DIR/passkey.mask is the loss mask for `infini prepare --loss-mask` (a 0/1 token shard, one id
// per token of passkey.txt): 1 on the tokens that can be told from the example, that is the
// needle's second KEY (a copy of the first) and the whole answer " KEY."; 0 on the rest (the
// filler, learnt in pre-training, the first KEY, random, and the padding). `infini train` then
// learns from the retrieval alone.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "eval/passkey.h"

namespace infini {

struct PasskeyDataOptions {
  std::string out_dir;
  int64_t count = 0;
  int64_t min_length = 0, max_length = 0;  // tokens of an example's content
  int64_t seq_len = 0;                     // tokens of an example, padding included (0: max_length)
  int digits = 5;
  uint64_t seed = 0;
  // This fraction of the examples (drawn per example; no draw at all when 0) get a prompt whose
  // length is a multiple of `align` tokens, cut mid-sentence as the evaluation's prompts are:
  // with align = the segment length, the answer starts a fresh segment, as it does after every
  // evaluation prompt of 32K, 128K, ... 1M tokens, and has only the memory to read the question
  // and the key from.
  double aligned_fraction = 0;
  int64_t align = 0;
};

struct PasskeyDataResult {
  std::string text_path, examples_path, mask_path;
  int64_t examples = 0, seq_len = 0;
  int64_t tokens = 0;         // in passkey.txt: examples * seq_len + 2
  int64_t answer_tokens = 0;  // over all examples
  int64_t scored_tokens = 0;  // ones in passkey.mask
  int64_t val_examples = 0;   // m: held out by `infini prepare --val-fraction (m T + 1) / tokens`
  double seconds = 0;
};

// Checks every option and lays out every example before writing; the files appear complete or
// not at all (written to temporary names, then renamed). on_example (may be empty) gets the
// number of examples written so far.
PasskeyDataResult passkey_write_data(const PasskeyTemplate& t, const PasskeyDataOptions& o,
                                     const std::function<void(int64_t)>& on_example = {});

}  // namespace infini
