// What a training run does: every option of `infini train`, as plain data.
//
// The options are resolved once (defaults filled in from the model: the sequence length, the
// minimum learning rate), validated before any work, printed at the start, saved in the run
// directory (train_config.json) and in every checkpoint (trainer_state.json). A resumed run takes
// them from its checkpoint, so that it continues with exactly the numbers it started with; only
// the options that do not change the training numbers (how long, how often to save or evaluate,
// where the data lies) may be changed on resume.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "model/config.h"

namespace infini {

struct TrainOptions {
  // where the model comes from: exactly one of the three
  std::string config_path;  // new model from a config.json, initialised with `seed`
  std::string init_dir;     // weights of a checkpoint (or run directory), fresh optimizer
  std::string resume_dir;   // a run directory or one of its checkpoints: continue exactly

  std::string data_dir;  // from `infini prepare`: train.tokens, val.tokens, dataset.json
  std::string out_dir;   // the run directory

  // length
  int64_t steps = 1000;           // optimizer steps in total (0 with time_limit: fit the time)
  double time_limit_minutes = 0;  // stop cleanly (and save) after this long; 0: no limit

  // batch
  int64_t batch = 4;       // B sequences per micro-batch
  int64_t seq_len = 0;     // T tokens per sequence, a multiple of the segment; 0: 8 segments
  int64_t accumulate = 1;  // micro-batches per optimizer step
  std::string data_order = "random";  // random | sequential
  int64_t recompute_chunk = 0;        // 0: keep all activations; else tokens per recomputed chunk

  // optimizer (AdamW)
  double lr = 1e-3;
  double min_lr = -1;               // cosine floor; < 0: lr / 10
  int64_t warmup = 100;             // linear warm-up steps
  std::string schedule = "cosine";  // cosine | constant
  double weight_decay = 0.1;        // decoupled, on matrices only
  bool decay_embeddings = false;
  double gate_lr_mult = 10;  // learning-rate multiplier of the memory gates
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double clip = 1.0;  // max global gradient norm; 0: no clipping

  // evaluation, checkpoints, output
  int64_t eval_every =
      100;  // held-out evaluation every K steps (and at the end); 0: only at the end
  int64_t eval_batches = 8;     // batches of B x T validation tokens per evaluation
  int64_t save_every = 500;     // checkpoint every K steps (and at the end); 0: only at the end
  int64_t keep = 3;             // checkpoints kept in the run directory
  int64_t log_every = 10;       // plain progress lines every K steps when not on a terminal
  int64_t sample_every = 0;     // sample text every K steps; 0: only at the end
  int64_t sample_tokens = 200;  // tokens sampled; 0: no sample
  std::string sample_prompt;    // empty: the start of the validation text
  double sample_temperature = 0.8;

  uint64_t seed = 0;  // initialisation (with config_path) and data order
  int threads = 0;    // 0: one per core
};

// Fills in the options that default from the model (seq_len, min_lr).
void train_options_resolve(TrainOptions& o, const ModelConfig& model);
// Every constraint on the options alone and against the model; throws infini::Error naming the
// flag (e.g. "--seq-len") and what to do.
void train_options_validate(const TrainOptions& o, const ModelConfig& model);

// JSON of every option (what is saved and printed); the inverse reads it back.
nlohmann::json train_options_to_json(const TrainOptions& o);
TrainOptions train_options_from_json(const nlohmann::json& j, const std::string& where);

// The options of a resumed run: those saved in the checkpoint, with the ones the user may change
// on resume taken from `given` when they were set on the command line (`set_flags`, e.g.
// "--steps"). Setting a flag that would change the training numbers is an error.
TrainOptions train_options_for_resume(const TrainOptions& saved, const TrainOptions& given,
                                      const std::set<std::string>& set_flags);

// Flags that may change on resume (they change neither the data read nor the numbers).
const std::set<std::string>& train_flags_allowed_on_resume();

}  // namespace infini
