// The trainer's data: the token shards of an `infini prepare` directory and the windows read
// from them.
//
// A data directory holds train.tokens and val.tokens (data/token_shard.h) and dataset.json, which
// names the tokenizer ({"tokenizer": {"type": "byte"}} or {"type": "sentencepiece", "model_file":
// "tokenizer.model"}, the file relative to the directory) and the vocabulary size.
//
// A training row is a window of T + 1 consecutive tokens: inputs its first T, targets its last T.
//   sequential  the i-th row read since the start of the run (i = (step * A + a) * B + b for
//               micro-batch a of A and row b of B) starts at token (i mod W) * T, where
//               W = (count - 1) / T whole windows fit in the shard: an exact, repeatable order;
//   random      each row starts at a uniformly random token in [0, count - T - 1] (a seeded Rng
//               whose state is saved with every checkpoint).
// Held-out evaluation reads fixed windows of the validation shard, spread evenly over it.
//
// Loss masks (optional): train.mask and val.mask, token shards of the same length as the token
// shards whose ids are 0 or 1 (vocab_size 2). A target token whose mask is 0 is not scored: its
// target becomes kIgnoredTarget, so the loss is the mean over the scored targets only (e.g. the
// answers of `infini data passkey`, not the text they answer). Without them every target counts.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/random.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"

namespace infini {

struct TrainData {
  std::string dir;
  TokenShard train;
  TokenShard val;  // empty (size 0) when not needed
  bool has_val = false;
  bool has_mask = false;                // train.mask (and val.mask when has_val) are open
  TokenShard train_mask, val_mask;      // 0/1 per token of train / val
  std::string tokenizer_type = "byte";  // dataset.json's tokenizer
  std::string tokenizer_model;          // sentencepiece: path of the .model file
  std::unique_ptr<Tokenizer> tokenizer;
};

// Opens `dir`'s shards (val.tokens only when need_val) and tokenizer; errors name the file.
TrainData train_data_open(const std::string& dir, bool need_val);

// Checks, before any work, that the shards hold at least one window of seq_len + 1 tokens and
// that their token ids fit the model's vocabulary. Errors name the file and the flag to change.
void train_data_check(const TrainData& data, int64_t seq_len, int64_t model_vocab,
                      const std::string& model_tokenizer);

struct BatchReader {
  std::string order = "random";  // random | sequential
  int64_t batch = 0, seq_len = 0;
  int64_t rows_read = 0;  // rows handed out since the run started (the data cursor)
  Rng rng;                // random order only
};

// Fills inputs and targets [B, T] with the next B rows of `shard`; with a `mask` (the shard's loss
// mask), unscored targets are kIgnoredTarget.
void batch_next(BatchReader& reader, const TokenShard& shard, int32_t* inputs, int32_t* targets,
                const TokenShard* mask = nullptr);

// Start tokens of `windows` evaluation windows of seq_len + 1 tokens, spread evenly over the
// shard (repeating windows when it holds fewer).
std::vector<int64_t> eval_window_starts(const TokenShard& shard, int64_t windows, int64_t seq_len);

// Fills inputs and targets [B, T] from the windows starting at starts[0, B).
void batch_from_windows(const TokenShard& shard, const int64_t* starts, int64_t batch,
                        int64_t seq_len, int32_t* inputs, int32_t* targets,
                        const TokenShard* mask = nullptr);

// The scored target tokens of these windows (all of them without a mask) and the bytes of text
// they stand for (for bits per byte).
struct TargetCount {
  int64_t tokens = 0, bytes = 0;
};
TargetCount count_targets(const TokenShard& shard, const Tokenizer& tokenizer,
                          const std::vector<int64_t>& starts, int64_t seq_len,
                          const TokenShard* mask = nullptr);

}  // namespace infini
