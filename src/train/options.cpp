#include "train/options.h"

#include <cmath>

#include "core/error.h"

namespace infini {

namespace {

using json = nlohmann::json;

void require(bool ok, const char* flag, const std::string& what, const std::string& hint = {}) {
  if (!ok) throw Error(flag, what, hint);
}

// One field read back from JSON with its type checked.
template <typename T>
void read_field(const json& j, const char* key, T& into, const std::string& where) {
  if (!j.contains(key)) return;  // an older file: keep the default
  try {
    into = j.at(key).get<T>();
  } catch (const json::exception&) {
    throw Error(str(where, ": key \"", key, "\""), str("has the wrong type: ", j.at(key).dump()),
                "the trainer state was edited or written by another program");
  }
}

}  // namespace

void train_options_resolve(TrainOptions& o, const ModelConfig& model) {
  if (o.seq_len == 0) o.seq_len = 8 * model.attention.segment_length;
  if (o.min_lr < 0) o.min_lr = o.lr / 10;
}

void train_options_validate(const TrainOptions& o, const ModelConfig& model) {
  const int64_t N = model.attention.segment_length;
  require(o.steps >= 1 || (o.steps == 0 && o.time_limit_minutes > 0), "--steps",
          str("is ", o.steps, ", must be at least 1"),
          "or 0 together with --time-limit to fit the steps into the time");
  require(o.time_limit_minutes >= 0 && std::isfinite(o.time_limit_minutes), "--time-limit",
          str("is ", o.time_limit_minutes, " minutes, must be >= 0"));
  require(o.batch >= 1, "--batch", str("is ", o.batch, ", must be at least 1"));
  require(o.seq_len >= 1 && o.seq_len % N == 0, "--seq-len",
          str(o.seq_len, " tokens is not a multiple of the model's segment length (", N, ")"),
          str("use a multiple of ", N, ", e.g. ", N * std::max<int64_t>(1, o.seq_len / N),
              ": each sequence is cut into whole segments and the memory is trained through "
              "all of them"));
  require(o.accumulate >= 1, "--accumulate", str("is ", o.accumulate, ", must be at least 1"));
  require(o.data_order == "random" || o.data_order == "sequential", "--data-order",
          "is '" + o.data_order + "'", "use random or sequential");
  if (o.recompute_chunk != 0 && o.recompute_chunk != o.seq_len)
    require(
        o.recompute_chunk > 0 && o.recompute_chunk % N == 0 && o.seq_len % o.recompute_chunk == 0,
        "--recompute-chunk",
        str(o.recompute_chunk, " tokens must be a multiple of the segment length (", N,
            ") that divides --seq-len (", o.seq_len, ")"));
  require(o.lr > 0 && std::isfinite(o.lr), "--lr", str("is ", o.lr, ", must be positive"));
  require(o.min_lr >= 0 && o.min_lr <= o.lr, "--min-lr",
          str("is ", o.min_lr, ", must be between 0 and --lr (", o.lr, ")"));
  require(o.warmup >= 0, "--warmup", str("is ", o.warmup, ", must be >= 0"));
  require(o.schedule == "cosine" || o.schedule == "constant", "--schedule",
          "is '" + o.schedule + "'", "use cosine or constant");
  require(o.weight_decay >= 0 && std::isfinite(o.weight_decay), "--weight-decay",
          str("is ", o.weight_decay, ", must be >= 0"));
  require(o.gate_lr_mult >= 0 && std::isfinite(o.gate_lr_mult), "--gate-lr-mult",
          str("is ", o.gate_lr_mult, ", must be >= 0"));
  require(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "--betas",
          str("are ", o.beta1, ", ", o.beta2, "; each must be in [0, 1)"));
  require(o.eps > 0, "--eps", str("is ", o.eps, ", must be positive"));
  require(o.clip >= 0 && std::isfinite(o.clip), "--clip", str("is ", o.clip, ", must be >= 0"),
          "0 turns clipping off");
  require(o.eval_every >= 0, "--eval-every", str("is ", o.eval_every, ", must be >= 0"));
  require(o.eval_batches >= 0, "--eval-batches", str("is ", o.eval_batches, ", must be >= 0"));
  require(o.save_every >= 0, "--save-every", str("is ", o.save_every, ", must be >= 0"));
  require(o.keep >= 1, "--keep", str("is ", o.keep, ", must be at least 1"));
  require(o.log_every >= 1, "--log-every", str("is ", o.log_every, ", must be at least 1"));
  require(o.sample_every >= 0, "--sample-every", str("is ", o.sample_every, ", must be >= 0"));
  require(o.sample_tokens >= 0, "--sample-tokens", str("is ", o.sample_tokens, ", must be >= 0"));
  require(o.sample_temperature >= 0, "--temperature",
          str("is ", o.sample_temperature, ", must be >= 0"), "0 samples greedily");
  require(o.threads >= 0, "--threads", str("is ", o.threads, ", must be >= 0"));
}

json train_options_to_json(const TrainOptions& o) {
  return json{{"config", o.config_path},
              {"init", o.init_dir},
              {"resume", o.resume_dir},
              {"data", o.data_dir},
              {"out", o.out_dir},
              {"steps", o.steps},
              {"time_limit_minutes", o.time_limit_minutes},
              {"batch", o.batch},
              {"seq_len", o.seq_len},
              {"accumulate", o.accumulate},
              {"data_order", o.data_order},
              {"recompute_chunk", o.recompute_chunk},
              {"lr", o.lr},
              {"min_lr", o.min_lr},
              {"warmup", o.warmup},
              {"schedule", o.schedule},
              {"weight_decay", o.weight_decay},
              {"decay_embeddings", o.decay_embeddings},
              {"gate_lr_mult", o.gate_lr_mult},
              {"beta1", o.beta1},
              {"beta2", o.beta2},
              {"eps", o.eps},
              {"clip", o.clip},
              {"eval_every", o.eval_every},
              {"eval_batches", o.eval_batches},
              {"save_every", o.save_every},
              {"keep", o.keep},
              {"log_every", o.log_every},
              {"sample_every", o.sample_every},
              {"sample_tokens", o.sample_tokens},
              {"sample_prompt", o.sample_prompt},
              {"sample_temperature", o.sample_temperature},
              {"seed", o.seed},
              {"threads", o.threads}};
}

TrainOptions train_options_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw Error(where, "the training options are not a JSON object");
  TrainOptions o;
  read_field(j, "config", o.config_path, where);
  read_field(j, "init", o.init_dir, where);
  read_field(j, "resume", o.resume_dir, where);
  read_field(j, "data", o.data_dir, where);
  read_field(j, "out", o.out_dir, where);
  read_field(j, "steps", o.steps, where);
  read_field(j, "time_limit_minutes", o.time_limit_minutes, where);
  read_field(j, "batch", o.batch, where);
  read_field(j, "seq_len", o.seq_len, where);
  read_field(j, "accumulate", o.accumulate, where);
  read_field(j, "data_order", o.data_order, where);
  read_field(j, "recompute_chunk", o.recompute_chunk, where);
  read_field(j, "lr", o.lr, where);
  read_field(j, "min_lr", o.min_lr, where);
  read_field(j, "warmup", o.warmup, where);
  read_field(j, "schedule", o.schedule, where);
  read_field(j, "weight_decay", o.weight_decay, where);
  read_field(j, "decay_embeddings", o.decay_embeddings, where);
  read_field(j, "gate_lr_mult", o.gate_lr_mult, where);
  read_field(j, "beta1", o.beta1, where);
  read_field(j, "beta2", o.beta2, where);
  read_field(j, "eps", o.eps, where);
  read_field(j, "clip", o.clip, where);
  read_field(j, "eval_every", o.eval_every, where);
  read_field(j, "eval_batches", o.eval_batches, where);
  read_field(j, "save_every", o.save_every, where);
  read_field(j, "keep", o.keep, where);
  read_field(j, "log_every", o.log_every, where);
  read_field(j, "sample_every", o.sample_every, where);
  read_field(j, "sample_tokens", o.sample_tokens, where);
  read_field(j, "sample_prompt", o.sample_prompt, where);
  read_field(j, "sample_temperature", o.sample_temperature, where);
  read_field(j, "seed", o.seed, where);
  read_field(j, "threads", o.threads, where);
  return o;
}

const std::set<std::string>& train_flags_allowed_on_resume() {
  static const std::set<std::string> allowed = {
      "--resume",       "--data",          "--out",           "--steps",       "--time-limit",
      "--eval-every",   "--eval-batches",  "--save-every",    "--keep",        "--log-every",
      "--sample-every", "--sample-tokens", "--sample-prompt", "--temperature", "--threads"};
  return allowed;
}

TrainOptions train_options_for_resume(const TrainOptions& saved, const TrainOptions& given,
                                      const std::set<std::string>& set_flags) {
  for (const std::string& flag : set_flags)
    if (!train_flags_allowed_on_resume().count(flag))
      throw Error(flag, "cannot be changed when resuming",
                  "--resume continues with the options saved in the checkpoint, so that the run "
                  "goes on exactly as it would have; to train with other settings start a new run "
                  "from its weights with --init");
  TrainOptions o = saved;
  o.resume_dir = given.resume_dir;
  o.config_path.clear();
  o.init_dir.clear();
  auto take = [&](const char* flag, auto member) {
    if (set_flags.count(flag)) o.*member = given.*member;
  };
  take("--data", &TrainOptions::data_dir);
  take("--out", &TrainOptions::out_dir);
  take("--steps", &TrainOptions::steps);
  take("--eval-every", &TrainOptions::eval_every);
  take("--eval-batches", &TrainOptions::eval_batches);
  take("--save-every", &TrainOptions::save_every);
  take("--keep", &TrainOptions::keep);
  take("--log-every", &TrainOptions::log_every);
  take("--sample-every", &TrainOptions::sample_every);
  take("--sample-tokens", &TrainOptions::sample_tokens);
  take("--sample-prompt", &TrainOptions::sample_prompt);
  take("--temperature", &TrainOptions::sample_temperature);
  take("--threads", &TrainOptions::threads);
  // the time limit belongs to one invocation: never inherited
  o.time_limit_minutes = set_flags.count("--time-limit") ? given.time_limit_minutes : 0;
  return o;
}

}  // namespace infini
