// infini generate: continue a text (or a saved stream) with a model, streaming the output.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "infer/generate.h"
#include "infer/session.h"
#include "model/checkpoint.h"

namespace infini::cli {
namespace {

struct GenerateCliOptions {
  std::string model, prompt, prompt_file, save_state, load_state;
  bool prompt_given = false;
  int64_t max_new = 128, chunk = 4096;
  SamplingOptions sampling;
  bool seed_given = false;
  std::vector<std::string> stop;
  int threads = 0;
  bool json = false;
};

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The prompt's progress on stderr: a redrawn bar on a terminal, otherwise a plain line every
// 10 seconds (so that a long prompt read in a log or a pipe still shows it is moving).
class PromptProgress {
 public:
  explicit PromptProgress(int64_t total_bytes, bool bytes_are_tokens)
      : bar_("prompt", total_bytes, bytes_are_tokens ? "tok" : "B"),
        start_(Clock::now()),
        last_line_(start_) {}
  void update(int64_t bytes, int64_t tokens) {
    bar_.update(bytes);
    if (bar_.interactive() || Clock::now() - last_line_ < std::chrono::seconds(10)) return;
    last_line_ = Clock::now();
    std::fprintf(stderr, "prompt: %lld tokens read, %.0f tokens/s\n", (long long)tokens,
                 double(tokens) / since(start_));
  }
  void finish() { bar_.finish(); }

 private:
  Progress bar_;
  Clock::time_point start_, last_line_;
};

nlohmann::json string_or_null(const std::string& s) {
  return s.empty() ? nlohmann::json() : nlohmann::json(s);
}

void run_generate(const GenerateCliOptions& o) {
  threads_init(o.threads);
  if (o.max_new < 0) throw Error("--max-new", str("is ", o.max_new, ", must be >= 0"));
  sampling_options_check(o.sampling);
  const Model model = model_load(o.model);
  const ModelConfig& c = model.config;
  const std::string tokenizer_file =
      c.tokenizer.type == "sentencepiece"
          ? (std::filesystem::path(o.model) / c.tokenizer.model_file).string()
          : std::string();
  const std::unique_ptr<Tokenizer> tokenizer = tokenizer_load(c.tokenizer.type, tokenizer_file);
  const bool sessions = !o.save_state.empty() || !o.load_state.empty();
  const uint64_t fingerprint = sessions ? model_fingerprint(model) : 0;

  Decoder decoder = decoder_create(model, o.chunk);
  Sampler sampler = sampler_create(o.sampling, c.vocab_size);
  if (!o.load_state.empty()) {
    session_load(o.load_state, decoder, sampler.rng, fingerprint);
    if (o.seed_given) sampler.rng.reseed(o.sampling.seed);  // else the saved generator goes on
  }

  // the prompt: --prompt, --prompt-file (- for stdin), or stdin when it is not a terminal
  std::unique_ptr<std::istream> file;
  std::istream* in = nullptr;
  int64_t total_bytes = 0;
  if (o.prompt_given) {
    file = std::make_unique<std::istringstream>(o.prompt);
    total_bytes = int64_t(o.prompt.size());
  } else if (!o.prompt_file.empty() && o.prompt_file != "-") {
    file = std::make_unique<std::ifstream>(o.prompt_file, std::ios::binary);
    if (!*file) throw Error(o.prompt_file, "cannot open the prompt file");
    std::error_code ec;
    const auto size = std::filesystem::file_size(o.prompt_file, ec);
    total_bytes = ec ? 0 : int64_t(size);
  } else if (o.prompt_file == "-" || !isatty(STDIN_FILENO)) {
    in = &std::cin;
  }
  if (file) in = file.get();
  const auto prompt_start = Clock::now();
  int64_t prompt_tokens = 0;
  if (in) {
    PromptProgress progress(total_bytes, tokenizer->name() == "byte");
    prompt_tokens = prompt_feed(decoder, *tokenizer, *in, [&](int64_t bytes, int64_t tokens) {
      progress.update(bytes, tokens);
    });
    progress.finish();
  }
  const double prompt_seconds = since(prompt_start);
  if (decoder.state.position == 0)
    throw Error(o.prompt_given           ? "--prompt"
                : !o.prompt_file.empty() ? o.prompt_file
                                         : "generate",
                "the prompt is empty and no state was loaded: nothing to continue",
                "give --prompt TEXT, --prompt-file FILE, text on stdin or --load-state FILE");

  GenerateOptions g;
  g.max_new = o.max_new;
  g.stop = o.stop;
  auto write = [](std::string_view bytes) {
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
    std::fflush(stdout);
  };
  const GenerateResult r =
      generate(decoder, sampler, *tokenizer, g,
               o.json ? std::function<void(std::string_view)>() : std::function(write));
  if (!o.save_state.empty()) session_save(o.save_state, decoder, sampler.rng, fingerprint);

  const double prompt_rate = prompt_seconds > 0 ? double(prompt_tokens) / prompt_seconds : 0;
  const double decode_rate = r.seconds > 0 ? double(r.tokens) / r.seconds : 0;
  if (o.json) {
    nlohmann::json j = {{"model", o.model},
                        {"text", r.text},
                        {"tokens", r.tokens},
                        {"token_ids", r.ids},
                        {"stopped_by", string_or_null(r.stopped_by)},
                        {"prompt_tokens", prompt_tokens},
                        {"position", decoder.state.position},
                        {"prompt_seconds", prompt_seconds},
                        {"prompt_tokens_per_second", prompt_rate},
                        {"decode_seconds", r.seconds},
                        {"decode_tokens_per_second", decode_rate},
                        {"decode_ms_per_token", r.tokens ? 1e3 * r.seconds / double(r.tokens) : 0},
                        {"loaded_state", string_or_null(o.load_state)},
                        {"saved_state", string_or_null(o.save_state)},
                        {"peak_rss_bytes", peak_rss_bytes()},
                        {"threads", threads_count()}};
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::fprintf(stderr,
                 "\n[prompt %lld tokens, %.0f tokens/s; %lld new tokens, %.1f tokens/s; stream at "
                 "%lld tokens; peak memory %s]\n",
                 (long long)prompt_tokens, prompt_rate, (long long)r.tokens, decode_rate,
                 (long long)decoder.state.position, human_bytes(double(peak_rss_bytes())).c_str());
  }
}

void add_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "generate",
      "Continue a text with a model, streaming the new text to stdout as it is produced.\n"
      "The prompt, of any length, is read chunk by chunk in flat memory; decoding keeps only\n"
      "the unfinished segment's KV cache. --save-state / --load-state carry a stream over to a\n"
      "later run (docs/inference.md). Examples:\n"
      "  infini generate --model runs/base --prompt 'In the beginning' --max-new 200\n"
      "  infini generate --model runs/base --prompt-file book.txt --max-new 0 --save-state "
      "book.st\n"
      "  infini generate --model runs/base --load-state book.st --prompt 'Q: ...' --max-new 100");
  cmd->add_option("--model", o->model, "checkpoint directory")->required();
  CLI::Option* prompt =
      cmd->add_option("--prompt", o->prompt, "the prompt text (may be \"\" after --load-state)");
  cmd->add_option("--prompt-file", o->prompt_file,
                  "read the prompt from this file (- for stdin); without --prompt or "
                  "--prompt-file the prompt is read from stdin unless it is a terminal")
      ->excludes(prompt);
  cmd->add_option("--max-new", o->max_new, "new tokens to generate at most (0: only read)")
      ->capture_default_str();
  cmd->add_option("--temperature", o->sampling.temperature, "0: greedy (the most likely token)")
      ->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "keep the k most likely tokens (0: all)")
      ->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p,
                  "keep the most likely tokens up to this probability mass (1: all)")
      ->capture_default_str();
  cmd->add_option("--seed", o->sampling.seed,
                  "random seed; after --load-state without --seed the saved generator goes on")
      ->capture_default_str();
  cmd->add_option("--stop", o->stop,
                  "stop when the output contains this string, which is not printed (repeatable)");
  cmd->add_option("--save-state", o->save_state,
                  "after the run, write the whole stream state here (atomically)");
  cmd->add_option("--load-state", o->load_state,
                  "continue the stream saved in this file (by the same model)");
  cmd->add_option("--chunk", o->chunk,
                  "prompt tokens processed at once (whole segments): bounds memory")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--threads", o->threads, "threads (0: one per core)")->capture_default_str();
  cmd->add_flag("--json", o->json,
                "print a JSON summary (text, tokens, speeds, peak memory) instead of the raw text");
  cmd->callback([o, cmd, prompt] {
    o->prompt_given = prompt->count() > 0;
    o->seed_given = cmd->count("--seed") > 0;
    run_generate(*o);
  });
}

Registration registration{add_generate};

}  // namespace
}  // namespace infini::cli
