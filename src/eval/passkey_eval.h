// Passkey evaluation (`infini eval passkey`): every trial streams its prompt (eval/passkey.h)
// through the model in chunks of whole segments, with the memory carried, then decodes the answer
// greedily (one 1-token forward pass per answer token, the unfinished segment in the KV cache) and
// scores it. Memory does not grow with the prompt's length: the prompt is generated
// chunk by chunk, and the model holds one chunk's activations and one stream state.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "eval/passkey.h"
#include "infer/decoder.h"
#include "model/model.h"

namespace infini {

// The tokenizer a checkpoint directory's config names (its tokenizer.model for SentencePiece).
std::unique_ptr<Tokenizer> tokenizer_of_model(const std::string& dir, const ModelConfig& config);

// Scratch for trials: one stream decoder (state + prompt-chunk and 1-token activations), reused.
struct PasskeyRunner {
  Decoder decoder;
  std::vector<int32_t> tokens;  // [decoder.chunk_tokens] the prompt tokens of one chunk
};
// chunk_tokens is rounded down to whole segments (at least one).
PasskeyRunner passkey_runner_create(const Model& model, int64_t chunk_tokens);

// Streams prompt p from a fresh stream and returns `count` greedily decoded tokens. on_tokens
// (may be empty) is called with the number of tokens consumed after each model_forward.
std::vector<int32_t> passkey_generate(PasskeyRunner& runner, const PasskeyTemplate& t,
                                      const PasskeyPrompt& p, int64_t count,
                                      const std::function<void(int64_t)>& on_tokens = {});

struct PasskeyEvalOptions {
  std::vector<int64_t> lengths;
  std::vector<PasskeyPosition> positions;
  int64_t trials = 1;
  uint64_t seed = 0;
  int digits = 5;
  int64_t chunk = 4096;
};

struct PasskeyTrial {
  int64_t length = 0;
  std::string position;  // its name
  double fraction = 0;
  int64_t trial = 0;
  std::string key;
  int64_t key_token = 0;  // where the needle starts in the prompt
  std::vector<int32_t> generated;
  PasskeyScore score;
};

struct PasskeyCell {
  int64_t length = 0;
  std::string position;
  double fraction = 0;
  int64_t trials = 0;
  double exact_match = 0;     // fraction of trials whose first number is the key
  double token_accuracy = 0;  // mean over trials
};

struct PasskeyEvalResult {
  std::vector<PasskeyTrial> trials;  // length-major, then position, then trial
  std::vector<PasskeyCell> cells;    // length-major, then position
  int64_t tokens = 0;                // prompt and generated tokens streamed in all
  double seconds = 0;
};

// The total tokens an evaluation streams (for a progress bar); checks every length first, so a
// length too short for the prompt is reported before any work.
int64_t passkey_eval_tokens(const PasskeyTemplate& t, const PasskeyEvalOptions& o);

// Runs every length x position x trial. on_tokens (may be empty) gets the running token total.
PasskeyEvalResult passkey_evaluate(const Model& model, const PasskeyTemplate& t,
                                   const PasskeyEvalOptions& o,
                                   const std::function<void(int64_t)>& on_tokens = {});

}  // namespace infini
