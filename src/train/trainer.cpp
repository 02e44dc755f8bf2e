#include "train/trainer.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "io/atomic_file.h"
#include "model/checkpoint.h"
#include "model/training_pass.h"
#include "train/optimizer.h"
#include "train/run_checkpoint.h"
#include "train/schedule.h"
#include "train/train_data.h"
#include "train/train_log.h"

namespace infini {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// ---- SIGINT / SIGTERM: finish the step, save, exit 0 (a second signal kills at once) -----------
//
// No signal handler ever runs on a computing thread: the signals are blocked in the main thread
// and in every thread of the OpenMP team (oneDNN's too), and one watcher thread takes them with
// sigtimedwait. (With a plain handler, a SIGTERM landing on a thread in the middle of a oneDNN
// GEMM corrupted its heap: observed as "corrupted size vs. prev_size" in 3 of 20 runs.)

std::atomic<int> g_stop_signal{0};

class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, &old_mask_);  // threads created later inherit it
    parallel_for(threads_count(), [&](int64_t) { pthread_sigmask(SIG_BLOCK, &signals_, nullptr); });
    watcher_ = std::thread([this] { watch(); });
  }
  ~StopSignals() {
    closing_ = true;
    watcher_.join();
    const timespec now{0, 0};
    while (sigtimedwait(&signals_, nullptr, &now) > 0) {  // one that came at the very end
    }
    parallel_for(threads_count(),
                 [&](int64_t) { pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr); });
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  void watch() {
    const timespec tick{0, 50 * 1000 * 1000};
    while (!closing_) {
      const int signal = sigtimedwait(&signals_, nullptr, &tick);
      if (signal <= 0 || closing_) continue;
      if (g_stop_signal == 0) {
        g_stop_signal = signal;
        first_at_ = std::chrono::steady_clock::now();
        continue;
      }
      // The same request again within a second: coreutils `timeout` sends its SIGTERM to the
      // child and then to the child's whole process group, so the child gets two at once.
      if (std::chrono::steady_clock::now() - first_at_ < std::chrono::seconds(1)) continue;
      // a second one later: stop now, as the signal would without us (the last checkpoint is whole)
      std::fprintf(stderr, "\ninfini train: second %s, stopping at once\n",
                   signal == SIGINT ? "SIGINT" : "SIGTERM");
      std::signal(signal, SIG_DFL);
      sigset_t just_this;
      sigemptyset(&just_this);
      sigaddset(&just_this, signal);
      pthread_sigmask(SIG_UNBLOCK, &just_this, nullptr);
      raise(signal);
    }
  }
  sigset_t signals_{}, old_mask_{};
  std::chrono::steady_clock::time_point first_at_{};
  std::atomic<bool> closing_{false};
  std::thread watcher_;
};

// A step count used until --steps 0 --time-limit has measured how many steps fit.
constexpr int64_t kStepsNotYetFitted = std::numeric_limits<int64_t>::max() / 4;
constexpr int64_t kStepsTimedBeforeFitting = 3;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Everything one run holds.
struct Trainer {
  TrainOptions options;
  std::string run_dir;
  std::string resumed_from;  // the checkpoint a resumed run continues ("" otherwise)
  std::string weights_from;  // --init / --resume checkpoint ("" for a new model)
  bool fit_steps_to_time = false;

  TrainData data;
  std::string tokenizer_model;  // copied into every checkpoint (SentencePiece only)
  Model model;
  Arena grad_storage;
  Parameters grads;
  AdamW opt;
  TrainingPass pass;
  LearningRateSchedule schedule;
  BatchReader reader;
  TrainerState state;

  std::vector<int32_t> inputs, targets;  // [B, T]
  std::vector<int64_t> eval_starts;      // [eval_batches * B] windows of the val shard
  TargetCount eval_targets;              // their scored targets and the text bytes of those
  double train_bytes_per_token = 1;      // for the bits per byte of the training loss
  std::string sample_prompt;
  std::string last_checkpoint;
};

// ---- 1. where the model and the options come from ---------------------------------------------

// A checkpoint folder (holding config.json) or a run directory (its `latest`).
std::string weights_dir_of(const std::string& path) {
  if (fs::exists(fs::path(path) / "config.json")) return path;
  const std::string latest = run_latest_checkpoint(path);
  return latest.empty() ? path : latest;  // model_load names `path` when it is neither
}

ModelConfig choose_start(Trainer& t, const TrainOptions& given,
                         const std::set<std::string>& set_flags) {
  const int sources = int(!given.config_path.empty()) + int(!given.init_dir.empty()) +
                      int(!given.resume_dir.empty());
  if (sources != 1)
    throw Error("infini train", sources == 0 ? "no model to train" : "more than one starting point",
                "give exactly one of --config FILE (a new model), --init DIR (start from a "
                "checkpoint's weights) or --resume DIR (continue a run)");
  if (!given.resume_dir.empty()) {
    t.resumed_from = run_checkpoint_resolve(given.resume_dir);
    t.weights_from = t.resumed_from;
    t.state = trainer_state_load(t.resumed_from);
    t.options = train_options_for_resume(t.state.options, given, set_flags);
    if (!set_flags.count("--out"))
      t.options.out_dir = fs::path(t.resumed_from).parent_path().string();
    return config_load(t.resumed_from);
  }
  t.options = given;
  if (!given.init_dir.empty()) {
    t.weights_from = weights_dir_of(given.init_dir);
    if (!fs::exists(t.weights_from))
      throw Error(given.init_dir, "no such checkpoint directory",
                  "--init takes a folder with "
                  "config.json and model.safetensors, or a run directory");
    return config_load(t.weights_from);
  }
  if (!fs::exists(given.config_path))
    throw Error(given.config_path, "no such config file", "see configs/ for examples");
  return config_load(given.config_path);
}

// True when both paths name the same existing directory.
bool same_directory(const std::string& a, const std::string& b) {
  std::error_code ec;
  return fs::equivalent(a, b, ec) && !ec;
}

bool same_file_contents(const std::string& a, const std::string& b) {
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  if (!fa || !fb) return false;
  return std::equal(std::istreambuf_iterator<char>(fa), std::istreambuf_iterator<char>(),
                    std::istreambuf_iterator<char>(fb), std::istreambuf_iterator<char>());
}

// ---- 2. every check before any work -----------------------------------------------------------

void check_inputs(Trainer& t, ModelConfig& config) {
  TrainOptions& o = t.options;
  if (o.out_dir.empty()) throw Error("--out", "is required", "the run directory to write");
  train_options_resolve(o, config);
  train_options_validate(o, config);
  t.data = train_data_open(o.data_dir, o.eval_batches > 0);
  if (t.weights_from.empty()) {  // a new model speaks the data's tokenizer
    config.tokenizer.type = t.data.tokenizer_type;
    config.tokenizer.model_file = t.data.tokenizer_type == "sentencepiece" ? "tokenizer.model" : "";
  }
  train_data_check(t.data, o.seq_len, config.vocab_size, config.tokenizer.type);
  if (config.tokenizer.type == "sentencepiece") {
    t.tokenizer_model = t.data.tokenizer_model;
    if (!t.weights_from.empty() &&
        !same_file_contents((fs::path(t.weights_from) / config.tokenizer.model_file).string(),
                            t.data.tokenizer_model))
      throw Error(t.data.tokenizer_model, "differs from the tokenizer of " + t.weights_from,
                  "prepare the data with the checkpoint's tokenizer.model");
    config.tokenizer.model_file = "tokenizer.model";
  }
  const bool same_run = !t.resumed_from.empty() &&
                        same_directory(fs::path(t.resumed_from).parent_path().string(), o.out_dir);
  if (!same_run && fs::exists(o.out_dir) && run_dir_has_checkpoints(o.out_dir))
    throw Error(o.out_dir, "already holds a training run",
                "continue it with --resume " + o.out_dir + ", or choose another --out");
  if (!t.resumed_from.empty() && t.state.step >= o.steps && o.steps != 0)
    throw Error(t.resumed_from,
                str("is at step ", t.state.step, ", and the run has --steps ", o.steps),
                str("pass --steps N with N > ", t.state.step, " to train further"));
  t.run_dir = o.out_dir;
}

// ---- 3. model, optimizer, data readers --------------------------------------------------------

void build(Trainer& t, const ModelConfig& config) {
  const TrainOptions& o = t.options;
  if (t.weights_from.empty()) {
    t.model = model_create(config);
    model_init_random(t.model, o.seed);
  } else {
    t.model = model_load(t.weights_from);
    t.model.config.tokenizer = config.tokenizer;
  }
  t.grad_storage = Arena(t.model.storage.used());
  t.grads = parameters_layout(t.model.config, t.grad_storage);
  AdamWSettings settings;
  settings.beta1 = o.beta1;
  settings.beta2 = o.beta2;
  settings.eps = o.eps;
  settings.weight_decay = o.weight_decay;
  settings.gate_lr_mult = o.gate_lr_mult;
  settings.decay_embeddings = o.decay_embeddings;
  t.opt = adamw_create(t.model.config, t.model.weights, settings);
  t.pass = training_pass_create(t.model.config, o.batch, o.seq_len, o.recompute_chunk);

  t.fit_steps_to_time = o.steps == 0;
  if (t.fit_steps_to_time) t.options.steps = kStepsNotYetFitted;  // until fit_steps
  t.schedule = {o.schedule, o.lr, o.min_lr, o.warmup, t.options.steps};
  t.reader.order = o.data_order;
  t.reader.batch = o.batch;
  t.reader.seq_len = o.seq_len;
  if (t.resumed_from.empty()) {
    t.reader.rng = Rng(o.seed ^ 0xda7a0de7da7a0de7ull);
    t.state = TrainerState{};
  } else {
    adamw_load(t.opt, t.model.config,
               (fs::path(t.resumed_from) / "optimizer.safetensors").string());
    t.reader.rows_read = t.state.rows_read;
    t.reader.rng.set_state(t.state.rng_state);
  }
  t.inputs.resize(o.batch * o.seq_len);
  t.targets.resize(o.batch * o.seq_len);

  if (t.data.has_val && o.eval_batches > 0) {
    t.eval_starts = eval_window_starts(t.data.val, o.eval_batches * o.batch, o.seq_len);
    t.eval_targets = count_targets(t.data.val, *t.data.tokenizer, t.eval_starts, o.seq_len,
                                   t.data.has_mask ? &t.data.val_mask : nullptr);
    if (t.eval_targets.tokens == 0)
      throw Error(t.data.val_mask.path(),
                  "scores no target in the held-out windows: there is nothing to evaluate",
                  "use more validation data or --eval-batches 0");
  }
  if (t.data.tokenizer_type != "byte" || t.data.has_mask) {
    const std::vector<int64_t> probe = eval_window_starts(t.data.train, 16, o.seq_len);
    const TargetCount c = count_targets(t.data.train, *t.data.tokenizer, probe, o.seq_len,
                                        t.data.has_mask ? &t.data.train_mask : nullptr);
    if (c.tokens > 0) t.train_bytes_per_token = double(c.bytes) / double(c.tokens);
  }
  t.sample_prompt = o.sample_prompt;
  if (t.sample_prompt.empty()) {  // the held-out text from its first line break, 48 tokens
    const TokenShard& shard = t.data.has_val ? t.data.val : t.data.train;
    std::vector<int32_t> ids(std::min<int64_t>(176, shard.size()));
    shard.read(0, int64_t(ids.size()), ids.data());
    size_t first = 0;
    for (size_t i = 0; i + 48 < ids.size() && first == 0; ++i)
      if (t.data.tokenizer->token_bytes(ids[i]).find('\n') != std::string::npos) first = i + 1;
    for (size_t i = first; i < std::min(ids.size(), first + 48); ++i)
      t.sample_prompt += t.data.tokenizer->token_bytes(ids[i]);
  }
}

// ---- 4. what the run prints and records at the start ------------------------------------------

nlohmann::json resolved_json(const Trainer& t) {
  const TrainOptions& o = t.options;
  return {{"options", train_options_to_json(o)},
          {"model", config_to_json(t.model.config)},
          {"parameters", t.model.weights.count},
          {"start", t.resumed_from.empty() ? (t.weights_from.empty() ? "new" : "init") : "resume"},
          {"weights_from", t.weights_from},
          {"resumed_at_step", t.state.step},
          {"data",
           {{"dir", t.data.dir},
            {"tokenizer", t.data.tokenizer_type},
            {"train_tokens", t.data.train.size()},
            {"val_tokens", t.data.has_val ? t.data.val.size() : 0},
            {"loss_mask", t.data.has_mask}}},
          {"threads", threads_count()},
          {"memory_bytes",
           {{"parameters_gradients_moments", 4 * 4 * t.model.weights.count},
            {"activations",
             training_pass_bytes(t.model.config, o.batch, o.seq_len, o.recompute_chunk)}}}};
}

void print_resolved(const Trainer& t) {
  const TrainOptions& o = t.options;
  const ModelConfig& c = t.model.config;
  const int64_t N = c.attention.segment_length,
                tokens_per_step = o.batch * o.seq_len * o.accumulate;
  std::printf("infini train -> %s\n", t.run_dir.c_str());
  std::printf(
      "  model        %s: %.2fM parameters, d %lld, %lld layers, %lld heads x %lld, "
      "%s %s memory, segment %lld, %s tokenizer\n",
      t.resumed_from.empty()
          ? (t.weights_from.empty() ? str("new from ", o.config_path, " (seed ", o.seed, ")")
                                    : "weights of " + t.weights_from)
                .c_str()
          : str("resumed from ", t.resumed_from, " at step ", t.state.step).c_str(),
      double(t.model.weights.count) / 1e6, (long long)c.hidden_size, (long long)c.num_hidden_layers,
      (long long)c.num_attention_heads, (long long)c.head_dim, c.attention.type.c_str(),
      c.attention.memory_update.c_str(), (long long)N, c.tokenizer.type.c_str());
  std::printf("  data         %s: %lld train tokens, %lld val tokens, %s order\n",
              t.data.dir.c_str(), (long long)t.data.train.size(),
              (long long)(t.data.has_val ? t.data.val.size() : 0), o.data_order.c_str());
  if (t.data.has_mask)
    std::printf("  loss mask    train.mask: the loss is the mean over the targets it scores\n");
  std::printf(
      "  batch        %lld x %lld tokens (%lld segments, backpropagation through the memory "
      "across all of them) x %lld accumulated = %lld tokens/step\n",
      (long long)o.batch, (long long)o.seq_len, (long long)(o.seq_len / N), (long long)o.accumulate,
      (long long)tokens_per_step);
  if (t.fit_steps_to_time)
    std::printf("  steps        as many as fit in %.1f minutes (measured after %lld steps)\n",
                o.time_limit_minutes, (long long)kStepsTimedBeforeFitting);
  else
    std::printf("  steps        %lld (%.1fM tokens, %.2f passes over the train shard)%s\n",
                (long long)o.steps, double(o.steps * tokens_per_step) / 1e6,
                double(o.steps * tokens_per_step) / double(t.data.train.size()),
                o.time_limit_minutes > 0
                    ? str(", at most ", o.time_limit_minutes, " minutes").c_str()
                    : "");
  std::printf(
      "  optimizer    AdamW lr %g%s, warmup %lld, betas %g/%g, eps %g, weight decay %g "
      "(matrices%s), gate lr x%g, clip %s\n",
      o.lr, o.schedule == "cosine" ? str(" -> ", o.min_lr, " cosine").c_str() : " constant",
      (long long)o.warmup, o.beta1, o.beta2, o.eps, o.weight_decay,
      o.decay_embeddings ? " and embeddings" : "", o.gate_lr_mult,
      o.clip > 0 ? str(o.clip).c_str() : "off");
  const size_t act = training_pass_bytes(c, o.batch, o.seq_len, o.recompute_chunk);
  std::printf("  memory       %s activations (%s), %s weights + gradients + moments\n",
              human_bytes(double(act)).c_str(),
              o.recompute_chunk > 0 && o.recompute_chunk < o.seq_len
                  ? str("recomputed in chunks of ", o.recompute_chunk, " tokens").c_str()
                  : "all kept",
              human_bytes(16.0 * double(t.model.weights.count)).c_str());
  std::printf(
      "  evaluation   %s\n",
      o.eval_batches > 0
          ? str(o.eval_batches, " batches of val windows (", o.eval_batches * o.batch * o.seq_len,
                " tokens) ", o.eval_every > 0 ? str("every ", o.eval_every, " steps and ") : "",
                "at the end")
                .c_str()
          : "off");
  std::printf("  checkpoints  %sat the end, keeping %lld; threads %d\n",
              o.save_every > 0 ? str("every ", o.save_every, " steps and ").c_str() : "",
              (long long)o.keep, threads_count());
  std::fflush(stdout);
}

// ---- 5. evaluation, checkpoints, samples ------------------------------------------------------

// Mean loss (nats per token) and bits per byte over the fixed validation windows.
std::pair<double, double> evaluate(Trainer& t) {
  const int64_t B = t.options.batch, T = t.options.seq_len, C = t.pass.chunk_tokens,
                V = t.model.config.vocab_size;
  double total = 0;
  for (size_t first = 0; first < t.eval_starts.size(); first += size_t(B)) {
    batch_from_windows(t.data.val, t.eval_starts.data() + first, B, T, t.inputs.data(),
                       t.targets.data(), t.data.has_mask ? &t.data.val_mask : nullptr);
    stream_state_reset(t.pass.state);
    for (int64_t c = 0; c < T / C; ++c) {
      for (int64_t b = 0; b < B; ++b) {
        std::copy_n(t.inputs.data() + b * T + c * C, C, t.pass.chunk_inputs.data() + b * C);
        std::copy_n(t.targets.data() + b * T + c * C, C, t.pass.chunk_targets.data() + b * C);
      }
      model_forward(t.model, t.pass.state, t.pass.act, t.pass.chunk_inputs.data(), C);
      total += model_loss(t.pass.act, t.pass.chunk_targets.data(), C, V);
    }
  }
  const double tokens = double(t.eval_targets.tokens);
  return {total / tokens,
          total / std::log(2.0) / double(std::max<int64_t>(1, t.eval_targets.bytes))};
}

nlohmann::json memory_gates(const Model& model) {
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerParameters& l : model.weights.layers) {
    if (!l.memory_gate) continue;
    nlohmann::json heads = nlohmann::json::array();
    for (int64_t h = 0; h < model.config.num_attention_heads; ++h)
      heads.push_back(1.0 / (1.0 + std::exp(-double(l.memory_gate[h]))));
    layers.push_back(heads);
  }
  return layers;
}

[[noreturn]] void stop_not_finite(const Trainer& t, const char* what, double value, double lr) {
  const char* words = std::isnan(value) ? "NaN" : value > 0 ? "+inf" : "-inf";
  throw Error(
      str("step ", t.state.step + 1), str("the ", what, " is ", words, ": training stopped"),
      str("nothing of this step was applied or saved; ",
          t.last_checkpoint.empty()
              ? std::string("no checkpoint of this run was saved yet")
              : "the last good checkpoint is " + t.last_checkpoint + " and `latest` points to it",
          ". Lower --lr (this step used ", lr, "), keep --clip on, or check the data"));
}

void save_checkpoint(Trainer& t, ProgressLine& line) {
  TrainerState s = t.state;
  s.options = t.options;
  if (t.fit_steps_to_time) s.options.steps = 0;
  s.threads = threads_count();
  t.last_checkpoint =
      run_checkpoint_save(t.run_dir, t.model, t.opt, s, t.tokenizer_model, t.options.keep);
  progress_line_message(line, str("saved ", t.last_checkpoint));
}

void write_sample(const Trainer& t, const SampleFunction& sample, ProgressLine& line) {
  const TrainOptions& o = t.options;
  if (!sample || o.sample_tokens <= 0) return;
  const std::string text = sample(t.model, *t.data.tokenizer, t.sample_prompt, o.sample_tokens,
                                  float(o.sample_temperature), o.seed + uint64_t(t.state.step));
  const std::string block =
      str("--- sample at step ", t.state.step, " (temperature ", o.sample_temperature, ") ---\n",
          printable_text(t.sample_prompt + text), "\n");
  progress_line_message(line, block);
  std::FILE* f = std::fopen((fs::path(t.run_dir) / "samples.txt").c_str(), "a");
  if (!f || std::fputs((block + "\n").c_str(), f) < 0)
    progress_line_message(line, "warning: could not append to samples.txt");
  if (f) std::fclose(f);
}

// After kStepsTimedBeforeFitting steps: the step count that fits the time limit, counting the
// evaluations (a forward pass costs about a third of a training step).
void fit_steps(Trainer& t, double seconds_per_step, double seconds_used) {
  const TrainOptions& o = t.options;
  const double eval_seconds =
      double(o.eval_batches) * seconds_per_step / (3.0 * double(o.accumulate));
  const double per_step =
      seconds_per_step +
      (o.eval_every > 0 && o.eval_batches > 0 ? eval_seconds / double(o.eval_every) : 0);
  const double left = o.time_limit_minutes * 60 - seconds_used - eval_seconds;
  const int64_t steps = t.state.step + std::max<int64_t>(1, int64_t(left / per_step));
  t.options.steps = steps;
  t.schedule.total_steps = steps;
  t.fit_steps_to_time = false;
}

// ---- 6. one optimizer step (trainer.h, steps 1-5) ---------------------------------------------

struct StepResult {
  double lr = 0, loss = 0, grad_norm = 0;  // grad_norm: before clipping
  double seconds = 0;
};

StepResult train_step(Trainer& t) {
  const TrainOptions& o = t.options;
  const int64_t tokens_per_step = o.accumulate * o.batch * o.seq_len;
  const Clock::time_point start = Clock::now();
  StepResult r;
  r.lr = learning_rate_at(t.schedule, t.state.step);
  // 1. zero the gradients
  std::fill_n(t.grads.all, t.grads.count, 0.0f);
  // 2. forward + backward over every micro-batch, through the memory across all segments
  //    (with a loss mask: the mean over each micro-batch's scored targets, averaged over the
  //    micro-batches; without one every target is scored and this is the mean over the step)
  double loss_sum = 0;
  const TokenShard* mask = t.data.has_mask ? &t.data.train_mask : nullptr;
  for (int64_t a = 0; a < o.accumulate; ++a) {
    batch_next(t.reader, t.data.train, t.inputs.data(), t.targets.data(), mask);
    const int64_t scored =
        mask ? std::max<int64_t>(1, std::count_if(t.targets.begin(), t.targets.end(),
                                                  [](int32_t id) { return id >= 0; }))
             : o.batch * o.seq_len;
    const double micro_loss =
        training_pass_run(t.model, t.grads, t.pass, t.inputs.data(), t.targets.data(),
                          1.0f / float(o.accumulate * scored));
    loss_sum += mask ? micro_loss * double(o.batch * o.seq_len) / double(scored) : micro_loss;
  }
  r.loss = loss_sum / double(tokens_per_step);
  // 3. nothing is applied when the numbers are not finite
  if (!std::isfinite(r.loss)) stop_not_finite(t, "loss", r.loss, r.lr);
  // 4. clip to the global norm
  r.grad_norm = gradients_clip(t.grads, o.clip);
  if (!std::isfinite(r.grad_norm)) stop_not_finite(t, "gradient norm", r.grad_norm, r.lr);
  // 5. update
  adamw_update(t.opt, t.model.weights, t.grads, r.lr);

  t.state.step += 1;
  t.state.rows_read = t.reader.rows_read;
  t.state.rng_state = t.reader.rng.state();
  t.state.tokens_seen += tokens_per_step;
  t.state.learning_rate = r.lr;
  t.state.loss = r.loss;
  r.seconds = seconds_since(start);
  t.state.elapsed_seconds += r.seconds;
  return r;
}

// The metrics.jsonl line of a step (train_log.h).
nlohmann::json step_record(const Trainer& t, const StepResult& r) {
  const double tokens = double(t.options.accumulate * t.options.batch * t.options.seq_len);
  return {{"step", t.state.step},
          {"loss", r.loss},
          {"bits_per_byte", r.loss / std::log(2.0) / t.train_bytes_per_token},
          {"lr", r.lr},
          {"grad_norm", r.grad_norm},
          {"tokens", t.state.tokens_seen},
          {"tokens_per_second", tokens / std::max(r.seconds, 1e-9)},
          {"elapsed_seconds", t.state.elapsed_seconds},
          {"memory_gates", memory_gates(t.model)}};
}

}  // namespace

TrainResult train_run(const TrainOptions& given, const std::set<std::string>& set_flags,
                      const SampleFunction& sample) {
  const Clock::time_point run_start = Clock::now();
  Trainer t;

  // starting point, options, data, model: every check before any work
  ModelConfig config = choose_start(t, given, set_flags);
  threads_init(t.options.threads);
  StopSignals signals;  // before any parallel region: the team must block them
  check_inputs(t, config);
  build(t, config);
  const TrainOptions& o = t.options;

  // the run directory and what it records at the start
  std::error_code ec;
  fs::create_directories(t.run_dir, ec);
  if (ec) throw Error(t.run_dir, "cannot create the run directory: " + ec.message());
  for (const fs::directory_entry& e : fs::directory_iterator(t.run_dir, ec))
    if (const std::string name = e.path().filename().string();
        name[0] == '.' && (name.ends_with(".tmp") || name.ends_with(".old")))
      fs::remove_all(e.path(), ec);  // a save that was killed half-way
  write_file_atomic((fs::path(t.run_dir) / "train_config.json").string(),
                    resolved_json(t).dump(2) + "\n");
  print_resolved(t);
  if (!t.resumed_from.empty() && t.state.threads != threads_count())
    std::printf(
        "warning: the run was trained with %d threads and continues with %d: the numbers "
        "will differ in the last bits from an uninterrupted run (--threads %d continues "
        "exactly)\n",
        t.state.threads, threads_count(), t.state.threads);
  const bool same_run_dir =
      !t.resumed_from.empty() &&
      same_directory(fs::path(t.resumed_from).parent_path().string(), t.run_dir);
  MetricsFile metrics =
      metrics_open((fs::path(t.run_dir) / "metrics.jsonl").string(), t.state.step, same_run_dir);
  t.last_checkpoint = same_run_dir ? t.resumed_from : "";

  // the loop: one optimizer step, then what is due after it
  const int64_t tokens_per_step = o.accumulate * o.batch * o.seq_len;
  ProgressLine line = progress_line_create();
  TrainResult result;
  const Clock::time_point loop_start = Clock::now();
  double train_seconds = 0, seconds_after_first_step = 0;
  int64_t steps_this_run = 0;
  bool last = false;
  while (!last) {
    const StepResult step = train_step(t);
    train_seconds += step.seconds;
    steps_this_run += 1;
    if (t.fit_steps_to_time && steps_this_run == 1) seconds_after_first_step = train_seconds;
    if (t.fit_steps_to_time && steps_this_run == kStepsTimedBeforeFitting) {
      const double seconds_per_step =
          (train_seconds - seconds_after_first_step) / double(kStepsTimedBeforeFitting - 1);
      fit_steps(t, seconds_per_step, seconds_since(run_start));
      progress_line_message(line, str("fitting the time limit: ", o.steps, " steps"));
    }

    const bool time_up =
        o.time_limit_minutes > 0 && seconds_since(run_start) >= o.time_limit_minutes * 60;
    const bool signalled = g_stop_signal != 0;
    last = t.state.step >= o.steps || time_up || signalled;

    // record the step, with a held-out evaluation when due
    nlohmann::json record = step_record(t, step);
    if (!t.eval_starts.empty() &&
        ((o.eval_every > 0 && t.state.step % o.eval_every == 0) || (last && !signalled))) {
      const auto [val_loss, val_bpb] = evaluate(t);
      record["val_loss"] = val_loss;
      record["val_bits_per_byte"] = val_bpb;
      result.val_loss = val_loss;
      result.val_bits_per_byte = val_bpb;
      progress_line_message(
          line, str("step ", t.state.step, ": val loss ", val_loss, ", ", val_bpb, " bits/byte"));
    }
    metrics_write(metrics, record);

    StepReport report;
    report.step = t.state.step;
    report.total_steps = t.fit_steps_to_time ? 0 : o.steps;
    report.loss = step.loss;
    report.bits_per_byte = record["bits_per_byte"];
    report.lr = step.lr;
    report.grad_norm = step.grad_norm;
    report.last = last;
    report.tokens_per_second = double(steps_this_run * tokens_per_step) / train_seconds;
    report.elapsed_seconds = seconds_since(run_start);
    if (!t.fit_steps_to_time) {
      report.eta_seconds =
          double(o.steps - t.state.step) * seconds_since(loop_start) / double(steps_this_run);
      if (o.time_limit_minutes > 0)
        report.eta_seconds =
            std::min(report.eta_seconds, o.time_limit_minutes * 60 - report.elapsed_seconds);
    }
    progress_line_show(line, report, o.log_every);

    // checkpoint, then a sample (a failing sample cannot cost the checkpoint)
    if (last || (o.save_every > 0 && t.state.step % o.save_every == 0)) save_checkpoint(t, line);
    if ((o.sample_every > 0 && t.state.step % o.sample_every == 0) || (last && !signalled))
      write_sample(t, sample, line);
    if (signalled)
      progress_line_message(
          line, str("stopped by ", g_stop_signal == SIGINT ? "SIGINT" : "SIGTERM", " after step ",
                    t.state.step, "; continue with --resume ", t.run_dir));
    else if (time_up && t.state.step < o.steps)
      progress_line_message(line, str("time limit of ", o.time_limit_minutes,
                                      " minutes reached at step ", t.state.step, " of ", o.steps));
    result.interrupted = signalled;
    result.time_limit_reached = time_up && t.state.step < o.steps;
  }
  progress_line_finish(line);
  metrics_close(metrics);

  result.step = t.state.step;
  result.loss = t.state.loss;
  result.tokens_per_second =
      double(steps_this_run * tokens_per_step) / std::max(train_seconds, 1e-9);
  result.checkpoint = t.last_checkpoint;
  return result;
}

}  // namespace infini
