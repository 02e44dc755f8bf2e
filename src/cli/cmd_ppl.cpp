// infini ppl: stream a text file through a model and report its perplexity.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "infer/perplexity.h"
#include "model/checkpoint.h"

namespace infini::cli {
namespace {

struct PplOptions {
  std::string model, input, per_token;
  bool json = false;
  int threads = 0;
  int64_t chunk = 4096;
};

void run_ppl(const PplOptions& o) {
  threads_init(o.threads);
  std::ifstream in(o.input, std::ios::binary);
  if (!in) throw Error(o.input, "cannot open the input file");
  std::error_code ec;
  const auto size = std::filesystem::file_size(o.input, ec);
  const Model model = model_load(o.model);

  std::unique_ptr<std::FILE, int (*)(std::FILE*)> per_token(nullptr, std::fclose);
  if (!o.per_token.empty()) {
    per_token.reset(std::fopen(o.per_token.c_str(), "w"));
    if (!per_token) throw Error(o.per_token, "cannot open for writing");
  }
  Progress progress("ppl", ec ? 0 : int64_t(size));
  const PerplexityResult r = perplexity_stream(model, in, per_token.get(), &progress, o.chunk);
  progress.finish();
  if (per_token && std::fflush(per_token.get()) != 0)
    throw Error(o.per_token, "write failed (disk full?)");
  if (r.tokens == 0)
    throw Error(o.input, "needs at least 2 bytes: nothing to predict");

  const double rate = r.seconds > 0 ? double(r.tokens) / r.seconds : 0;
  if (o.json) {
    nlohmann::json j = {{"model", o.model},
                        {"input", o.input},
                        {"tokens", r.tokens},
                        {"mean_nll", r.mean_nll()},
                        {"perplexity", r.perplexity()},
                        {"bits_per_byte", r.bits_per_byte()},
                        {"seconds", r.seconds},
                        {"tokens_per_second", rate},
                        {"peak_rss_bytes", peak_rss_bytes()},
                        {"threads", threads_count()}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("tokens          %lld\n", (long long)r.tokens);
    std::printf("mean NLL        %.6f nats\n", r.mean_nll());
    std::printf("perplexity      %.4f\n", r.perplexity());
    std::printf("bits per byte   %.4f\n", r.bits_per_byte());
    std::printf("speed           %.0f tokens/s (%.2f s, %d threads)\n", rate, r.seconds,
                threads_count());
    std::printf("peak memory     %s\n", human_bytes(double(peak_rss_bytes())).c_str());
  }
}

void add_ppl(CLI::App& app) {
  auto o = std::make_shared<PplOptions>();
  CLI::App* cmd = app.add_subcommand(
      "ppl", "Stream a text file of any length through a model, segment by segment with the memory\n"
             "carried, in constant memory; print token count, mean NLL (nats), perplexity and\n"
             "bits per byte. Example:\n"
             "  infini ppl --model runs/base --input book.txt --json");
  cmd->add_option("--model", o->model, "checkpoint directory")->required();
  cmd->add_option("--input", o->input, "text file (byte tokenizer: one token per byte)")
      ->required();
  cmd->add_option("--per-token", o->per_token,
                  "write the NLL of every predicted token (token t+1 given 0..t) to this file, "
                  "one per line");
  cmd->add_flag("--json", o->json, "print the result as JSON");
  cmd->add_option("--chunk", o->chunk,
                  "tokens processed at once (whole segments): bounds memory; larger is faster")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--threads", o->threads, "threads (0: one per core)")->capture_default_str();
  cmd->callback([o] { run_ppl(*o); });
}

Registration registration{add_ppl};

}  // namespace
}  // namespace infini::cli
