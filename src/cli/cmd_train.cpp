// infini train: train a model on a prepared data directory (src/train/trainer.h does the work).
#include <cstdio>
#include <memory>
#include <set>

#include "cli/commands.h"
#include "core/error.h"
#include "infer/sampling.h"
#include "train/trainer.h"

namespace infini::cli {
namespace {

const char* const kDescription =
    "Train an Infini-Transformer on a data directory from `infini prepare`, with backpropagation\n"
    "through time through the compressive memory across every segment of a training sequence.\n"
    "Writes a run directory: checkpoints (checkpoint-STEP/, `latest` -> the newest complete\n"
    "one; each is a model directory that `infini ppl --model` reads), metrics.jsonl (one line\n"
    "per step), train_config.json and samples.txt. Ctrl-C (SIGINT) or SIGTERM finishes the\n"
    "step, saves and exits 0; --resume continues bit for bit (same --threads). docs/training.md\n"
    "explains every option.\n"
    "\n"
    "Examples:\n"
    "  infini prepare --input kjv.txt --out data/kjv\n"
    "  infini train --config configs/infini-tiny.json --data data/kjv --out runs/tiny --steps 500\n"
    "  infini train --config configs/infini-base.json --data data/kjv --out runs/base \\\n"
    "               --steps 0 --time-limit 5            # as many steps as fit in 5 minutes\n"
    "  infini train --resume runs/base --steps 4000     # continue (or extend) a run\n"
    "  infini train --init runs/base --data data/other --out runs/finetune --lr 3e-4 --warmup 20\n"
    "  infini train --config configs/infini-base.json --data data/kjv --out runs/long \\\n"
    "               --seq-len 8192 --recompute-chunk 1024   # long sequences, bounded memory";

void add_train(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  CLI::App* cmd = app.add_subcommand("train", kDescription);
  cmd->option_defaults()->always_capture_default();
  std::vector<CLI::Option*> options;
  auto add = [&](CLI::Option* option) {
    options.push_back(option);
    return option;
  };

  add(cmd->add_option("--config", o->config_path, "start a new model from this config.json")
          ->group("Starting point (one of)"));
  add(cmd->add_option("--init", o->init_dir,
                      "start from the weights of a checkpoint or run directory, with a fresh "
                      "optimizer (a Llama checkpoint without memory gates gets "
                      "attention.gate_init)")
          ->group("Starting point (one of)"));
  add(cmd->add_option("--resume", o->resume_dir,
                      "continue a run exactly: a run directory (its latest checkpoint) or one of "
                      "its checkpoint-STEP folders; only --steps, --time-limit, --data, --out, "
                      "--threads and the eval/save/log/sample options may change")
          ->group("Starting point (one of)"));

  add(cmd->add_option("--data", o->data_dir,
                      "data directory from `infini prepare` (train.tokens, val.tokens, "
                      "dataset.json)")
          ->group("Data and output"));
  add(cmd->add_option("--out", o->out_dir,
                      "run directory to write (a resumed run defaults to its own)")
          ->group("Data and output"));
  add(cmd->add_option("--steps", o->steps,
                      "optimizer steps in total; 0 with --time-limit: as many as fit")
          ->group("Length"));
  add(cmd->add_option("--time-limit", o->time_limit_minutes,
                      "minutes; stop cleanly, evaluate and save when reached (0: none)")
          ->group("Length"));

  add(cmd->add_option("--batch", o->batch, "B: sequences per micro-batch")->group("Batch"));
  add(cmd->add_option("--seq-len", o->seq_len,
                      "T: tokens per sequence, a multiple of the segment length; 0: 8 segments")
          ->group("Batch"));
  add(cmd->add_option("--accumulate", o->accumulate,
                      "micro-batches per optimizer step (gradient accumulation)")
          ->group("Batch"));
  add(cmd->add_option("--data-order", o->data_order,
                      "random: windows at seeded random offsets; sequential: step s, row b reads "
                      "tokens [(s*B+b)*T, (s*B+b)*T+T+1) (for exact comparisons)")
          ->check(CLI::IsMember({"random", "sequential"}))
          ->group("Batch"));
  add(cmd->add_option("--recompute-chunk", o->recompute_chunk,
                      "keep only the memory state every this many tokens and recompute each "
                      "chunk's activations in the backward pass (a multiple of the segment "
                      "length dividing --seq-len): memory of one chunk for one extra forward; 0: "
                      "keep everything")
          ->group("Batch"));

  add(cmd->add_option("--lr", o->lr, "peak learning rate")->group("Optimizer (AdamW)"));
  add(cmd->add_option("--min-lr", o->min_lr, "end of the cosine decay; default --lr / 10")
          ->group("Optimizer (AdamW)"));
  add(cmd->add_option("--warmup", o->warmup, "linear warm-up steps")->group("Optimizer (AdamW)"));
  add(cmd->add_option("--schedule", o->schedule,
                      "cosine (warm-up, then down to --min-lr) or constant")
          ->check(CLI::IsMember({"cosine", "constant"}))
          ->group("Optimizer (AdamW)"));
  add(cmd->add_option("--weight-decay", o->weight_decay,
                      "decoupled weight decay, on matrices only (never norms or gates)")
          ->group("Optimizer (AdamW)"));
  add(cmd->add_flag("--decay-embeddings", o->decay_embeddings,
                    "apply the weight decay to the embeddings too")
          ->group("Optimizer (AdamW)"));
  add(cmd->add_option("--gate-lr-mult", o->gate_lr_mult,
                      "learning-rate multiplier of the memory gates beta_h (one scalar per head "
                      "with a small gradient: with the global rate they barely move)")
          ->group("Optimizer (AdamW)"));
  add(cmd->add_option("--beta1", o->beta1, "Adam beta1")->group("Optimizer (AdamW)"));
  add(cmd->add_option("--beta2", o->beta2, "Adam beta2")->group("Optimizer (AdamW)"));
  add(cmd->add_option("--eps", o->eps, "Adam epsilon")->group("Optimizer (AdamW)"));
  add(cmd->add_option("--clip", o->clip, "clip the global gradient norm to this (0: off)")
          ->group("Optimizer (AdamW)"));

  add(cmd->add_option("--eval-every", o->eval_every,
                      "held-out evaluation every K steps and at the end (0: only at the end)")
          ->group("Evaluation, checkpoints, output"));
  add(cmd->add_option("--eval-batches", o->eval_batches,
                      "batches of B x T validation tokens per evaluation (fixed windows; 0: no "
                      "evaluation, val.tokens not needed)")
          ->group("Evaluation, checkpoints, output"));
  add(cmd->add_option("--save-every", o->save_every,
                      "checkpoint every K steps and at the end (0: only at the end)")
          ->group("Evaluation, checkpoints, output"));
  add(cmd->add_option("--keep", o->keep, "checkpoints kept in the run directory")
          ->group("Evaluation, checkpoints, output"));
  add(cmd->add_option("--log-every", o->log_every,
                      "a plain progress line every K steps when the output is not a terminal")
          ->group("Evaluation, checkpoints, output"));
  add(cmd->add_option("--sample-every", o->sample_every,
                      "print a text sample every K steps (0: only at the end)")
          ->group("Evaluation, checkpoints, output"));
  add(cmd->add_option("--sample-tokens", o->sample_tokens, "tokens per sample (0: no sample)")
          ->group("Evaluation, checkpoints, output"));
  add(cmd->add_option("--sample-prompt", o->sample_prompt,
                      "prompt of the samples (default: the start of the validation text)")
          ->group("Evaluation, checkpoints, output"));
  add(cmd->add_option("--temperature", o->sample_temperature, "sampling temperature (0: greedy)")
          ->group("Evaluation, checkpoints, output"));
  add(cmd->add_option("--seed", o->seed, "initialisation and data-order seed"));
  add(cmd->add_option("--threads", o->threads,
                      "threads (0: one per core); a bit-exact resume needs the same count"));

  cmd->callback([o, options] {
    std::set<std::string> set_flags;
    for (CLI::Option* option : options)
      if (option->count() > 0) set_flags.insert(option->get_name());
    const TrainResult r = train_run(*o, set_flags, sample_text);
    std::printf("done: step %lld, loss %.4f", (long long)r.step, r.loss);
    if (r.val_loss >= 0)
      std::printf(", held-out loss %.4f = %.4f bits/byte", r.val_loss, r.val_bits_per_byte);
    std::printf(", %.0f tokens/s\n", r.tokens_per_second);
    if (!r.checkpoint.empty()) std::printf("checkpoint: %s\n", r.checkpoint.c_str());
  });
}

Registration registration{add_train};

}  // namespace
}  // namespace infini::cli
