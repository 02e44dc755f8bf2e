// `infini train` as a library call: the whole training run, from options to the last checkpoint.
//
// One optimizer step, top to bottom (trainer.cpp):
//   1. zero the gradients;
//   2. for each of the A micro-batches: read B rows of T + 1 tokens, run forward + backward over
//      the B x T tokens with backpropagation through time through every layer's memory across
//      all T / N segments (model/training_pass.h; per-chunk recomputation with
//      --recompute-chunk), gradients scaled by 1 / (A B T) so that they are those of the mean loss;
//   3. stop with a clear error when the loss or the gradient norm is not finite (nothing of the
//      step is applied or saved; the last checkpoint stays the latest);
//   4. clip the gradients to the global norm --clip;
//   5. AdamW update with the schedule's learning rate (train/optimizer.h, train/schedule.h);
//   6. log the step; evaluate, save and sample when due; stop on SIGINT/SIGTERM (after saving)
//      or at the time limit.
// Everything that decides the numbers (weights, moments, step, data cursor, RNG state) is saved
// in each checkpoint, so `--resume` continues bit for bit with the same thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "data/tokenizer.h"
#include "model/model.h"
#include "train/options.h"

namespace infini {

// Text generation lives above this layer (infer/sampling.h); the command passes it in.
using SampleFunction = std::function<std::string(const Model& model, const Tokenizer& tokenizer,
                                                 const std::string& prompt, int64_t max_new,
                                                 float temperature, uint64_t seed)>;

struct TrainResult {
  int64_t step = 0;      // optimizer steps done (over every invocation)
  double loss = 0;       // mean loss of the last step
  double val_loss = -1;  // last held-out evaluation; < 0: none
  double val_bits_per_byte = -1;
  double tokens_per_second = 0;  // this invocation, training steps only
  std::string checkpoint;        // the last checkpoint saved
  bool interrupted = false;      // SIGINT / SIGTERM
  bool time_limit_reached = false;
};

// Runs a training run. set_flags: the command-line flags the user set explicitly (e.g.
// "--steps"), which decide what a resume may change. Every check of the options, the data and the
// output directory happens before any work; problems throw infini::Error.
TrainResult train_run(const TrainOptions& options, const std::set<std::string>& set_flags,
                      const SampleFunction& sample);

}  // namespace infini
