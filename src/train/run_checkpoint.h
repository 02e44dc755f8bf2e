// A run directory and its checkpoints, which lose nothing: a resumed run continues bit for bit.
//
//   RUN/train_config.json             the resolved options of the latest invocation
//   RUN/metrics.jsonl                 one JSON object per step
//   RUN/samples.txt                   text sampled during and at the end of training
//   RUN/latest -> checkpoint-STEP     symlink to the newest complete checkpoint
//   RUN/checkpoint-STEP/
//       config.json, model.safetensors    a model checkpoint (`infini ppl --model` loads it)
//       optimizer.safetensors             Adam moments exp_avg.<tensor>, exp_avg_sq.<tensor>
//       trainer_state.json                step, data cursor, RNG state, schedule, options
//       tokenizer.model                   SentencePiece models only
//
// Saving is atomic at the level of the whole checkpoint: the files are written (each fsynced)
// into RUN/.checkpoint-STEP.tmp, the folder is renamed to checkpoint-STEP, and only then is
// `latest` replaced (a new symlink renamed over the old one). A crash or a full disk at any point
// leaves `latest` on the previous complete checkpoint. Then all but the newest `keep`
// checkpoints are removed (and any newer than the one just saved: left over from the
// abandoned future of a run resumed from an older checkpoint).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "model/model.h"
#include "train/optimizer.h"
#include "train/options.h"

namespace infini {

// Everything besides weights and moments that a resumed run needs to continue exactly.
struct TrainerState {
  int64_t step = 0;                     // optimizer steps done
  int64_t rows_read = 0;                // data cursor: training rows read so far
  std::array<uint64_t, 4> rng_state{};  // the data-order generator after `step` steps
  int64_t tokens_seen = 0;
  double elapsed_seconds = 0;  // training time over every invocation
  double learning_rate = 0;    // the rate of the last step taken (schedule position)
  double loss = 0;             // the mean loss of the last step taken
  int threads = 0;             // thread count of the run (bit-exactness needs the same)
  TrainOptions options;        // resolved
};

nlohmann::json trainer_state_to_json(const TrainerState& s);
TrainerState trainer_state_from_json(const nlohmann::json& j, const std::string& where);
TrainerState trainer_state_load(const std::string& checkpoint_dir);

// Saves a checkpoint of `step` = state.step into `run_dir` as described above and returns its
// directory. tokenizer_model: a SentencePiece .model file to copy in ("" for bytes). On failure
// nothing changes and the Error says which checkpoint is still the latest.
std::string run_checkpoint_save(const std::string& run_dir, const Model& model, const AdamW& opt,
                                const TrainerState& state, const std::string& tokenizer_model,
                                int64_t keep);

// The checkpoint directory `path` names: a checkpoint itself (it holds trainer_state.json), or a
// run directory (its `latest`). Throws naming `path` when it is neither.
std::string run_checkpoint_resolve(const std::string& path);
// The checkpoint `latest` points to in run_dir, or "" when there is none.
std::string run_latest_checkpoint(const std::string& run_dir);
// True when run_dir already holds a run (a `latest` link or any checkpoint-* folder).
bool run_dir_has_checkpoints(const std::string& run_dir);

}  // namespace infini
