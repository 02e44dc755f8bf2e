// Corpus preparation (`infini prepare`): text files -> one token stream -> train and validation
// shards plus a dataset.json that says what they hold and where they came from.
//
// The input files are read in the order given and joined with `separator` between consecutive
// files (default: nothing, so the stream is exactly the concatenated bytes), tokenized as one
// stream, and split at a token boundary: the last round(count * val_fraction) tokens (at least 1,
// and at least 1 left for training) go to val.tokens, the rest to train.tokens. The split is by
// position, not sampled, so validation text is text the model never saw during training and
// stays in reading order for long-context evaluation.
//
// Output directory (docs/formats.md "Token shards"):
//   train.tokens     token shard (token_shard.h)
//   val.tokens       token shard
//   tokenizer.model  a copy of the SentencePiece model (only with a SentencePiece tokenizer)
//   train.mask       with loss_mask only: its first train_tokens ids (a loss mask, train_data.h)
//   val.mask         the rest of the loss mask
//   dataset.json     what is in the directory, written last: its presence means the rest is whole
//
// Every check that can fail (inputs, tokenizer, val_fraction, output directory, and with
// SentencePiece that the text is valid UTF-8 without U+2581) runs before anything is written.
// Files are read in 1 MiB blocks; the token stream is held in memory (4 bytes per token, plus 2
// or 4 per token while a shard is written).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace infini {

class Progress;

struct PrepareOptions {
  std::vector<std::string> inputs;  // text files, in order
  std::string out_dir;              // created if missing
  std::string tokenizer = "byte";   // "byte", or the path of a SentencePiece .model file
  double val_fraction = 0.05;       // in (0, 1)
  std::string separator;            // bytes inserted between consecutive input files
  std::string loss_mask;            // a 0/1 token shard, one id per token of the stream (optional)
  Progress* progress = nullptr;     // updated with bytes read (total: sum of the input sizes)
};

struct PrepareInput {
  std::string path;
  int64_t bytes = 0;
  uint64_t fnv1a64 = 0;  // FNV-1a 64 of the file's bytes
};

struct PrepareResult {
  std::string tokenizer;  // "byte" or "sentencepiece"
  int64_t vocab_size = 0;
  int64_t train_tokens = 0, val_tokens = 0;
  int64_t total_bytes = 0;  // input bytes, separators included
  std::vector<PrepareInput> inputs;
  std::string train_path, val_path, dataset_path;
  double seconds = 0;
};

PrepareResult prepare_corpus(const PrepareOptions& options);

// FNV-1a 64: hash = (hash ^ byte) * 0x100000001b3 for each byte, from 0xcbf29ce484222325.
uint64_t fnv1a64(const void* data, size_t size, uint64_t hash = 0xcbf29ce484222325ull);

// How many of `total_tokens` go to validation for a given fraction (the rule above).
int64_t validation_tokens(int64_t total_tokens, double val_fraction);

}  // namespace infini
