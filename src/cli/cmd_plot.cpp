// infini plot: the analysis figures of issue 7 (Infini-attention paper, Figure 3) as SVG files
// (docs/analysis.md):
//   gates  every layer x head's memory gate sigmoid(beta) as a heatmap, each head classified as
//          local, memory or mixer (plot/gates.h);
//   nll    mean NLL by position in the stream, one line per model (plot/nll_position.h).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "io/atomic_file.h"
#include "model/checkpoint.h"
#include "plot/gates.h"
#include "plot/nll_position.h"

namespace infini::cli {
namespace {

namespace fs = std::filesystem;

struct GatesOptions {
  std::string model, out;
  double local_below = 0.25, memory_above = 0.75;
  bool json = false;
};

struct NllOptions {
  std::vector<std::string> models;
  std::string text, tokens, out, csv, length;
  int64_t windows = 1, bins = 32, chunk = 4096;
  bool log_x = false, bits = false, json = false;
  int threads = 0;
};

// A checkpoint directory as given, without trailing slashes ("runs/xl/" -> "runs/xl").
std::string display_name(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

// "4096", "4K" (x1024), "1M" (x1048576) -> a positive token count; errors name --length.
int64_t parse_length(const std::string& text) {
  const std::string hint = "give a positive whole number of tokens, e.g. 2048, 4K or 1M";
  std::string digits = text;
  int64_t scale = 1;
  if (!digits.empty() && (digits.back() == 'K' || digits.back() == 'k')) scale = 1024;
  if (!digits.empty() && (digits.back() == 'M' || digits.back() == 'm')) scale = 1024 * 1024;
  if (scale != 1) digits.pop_back();
  if (digits.empty() || digits.size() > 12 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    throw Error("--length", "'" + text + "' is not a token count", hint);
  const int64_t value = std::stoll(digits) * scale;
  if (value < 1) throw Error("--length", "'" + text + "' is not positive", hint);
  return value;
}

void write_output(const std::string& path, const std::string& content, const char* what) {
  write_file_atomic(path, content);
  std::fprintf(stderr, "wrote %s (%s)\n", path.c_str(), what);
}

void run_gates(const GatesOptions& o) {
  gate_thresholds_check(o.local_below, o.memory_above);
  const Model model = model_load(o.model);
  const GateAnalysis a = gate_analysis(model, display_name(o.model), o.local_below, o.memory_above);
  write_output(o.out, gate_heatmap_svg(a), "gate heatmap");
  if (o.json)
    std::printf("%s\n", gate_json(a).dump(2).c_str());
  else
    std::printf("%s", gate_markdown(a).c_str());
}

void run_nll(const NllOptions& o) {
  threads_init(o.threads);
  if (o.text.empty() == o.tokens.empty())
    throw Error("plot nll", "needs exactly one input: --text FILE or --tokens FILE.tokens");
  if (o.windows < 1) throw Error("--windows", str("is ", o.windows, ", must be >= 1"));
  if (o.bins < 1) throw Error("--bins", str("is ", o.bins, ", must be >= 1"));
  const int64_t length = parse_length(o.length);

  std::vector<Model> models;
  std::vector<std::string> dirs;
  models.reserve(o.models.size());
  for (const std::string& dir : o.models) {
    models.push_back(model_load(dir));
    dirs.push_back(display_name(dir));
  }
  std::vector<const Model*> pointers;
  for (const Model& m : models) pointers.push_back(&m);
  // every model must read the same tokens: one tokenizer for all
  const std::unique_ptr<Tokenizer> tokenizer = shared_tokenizer(pointers, o.models);

  TokenSource tokens;
  if (!o.text.empty()) {
    tokens = token_source_text(o.text, *tokenizer);
  } else {
    std::string data_tokenizer;
    tokens = token_source_shard(o.tokens, &data_tokenizer);
    const std::string& model_tokenizer = models[0].config.tokenizer.type;
    if (!data_tokenizer.empty() && data_tokenizer != model_tokenizer)
      throw Error(o.tokens,
                  "was prepared with the " + data_tokenizer +
                      " tokenizer (its dataset.json), the "
                      "models use the " +
                      model_tokenizer + " tokenizer",
                  "prepare the data with the models' tokenizer");
  }

  NllPlot plot;
  plot.input = tokens.where;
  plot.length = length;
  plot.windows = o.windows;
  plot.log_x = o.log_x;
  plot.bits = o.bits;
  plot.starts = nll_window_starts(tokens.size(), length, o.windows, tokens.where);
  plot.bins = nll_position_bins(length, o.bins, o.log_x);

  Progress progress("plot nll", int64_t(models.size()) * o.windows * length);
  for (size_t i = 0; i < models.size(); ++i) {
    NllCurve curve;
    curve.model = dirs[i];
    curve.type = models[i].config.attention.type;
    curve.per_position = nll_by_position(models[i], tokens, plot.starts, length, o.chunk, &progress,
                                         int64_t(i) * o.windows * length);
    nll_curve_finish(curve, plot.bins);
    plot.curves.push_back(std::move(curve));
  }
  progress.finish();

  write_output(o.out, nll_svg(plot), "NLL by position");
  if (!o.csv.empty()) write_output(o.csv, nll_csv(plot), "CSV");
  if (o.json)
    std::printf("%s\n", nll_json(plot).dump(2).c_str());
  else
    std::printf("%s", nll_markdown(plot).c_str());
}

void add_plot(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "plot",
      "Analysis figures as SVG files (docs/analysis.md): the memory gates of an Infini-attention\n"
      "model, and NLL by position in the stream for one or more models. Examples:\n"
      "  infini plot gates --model runs/base --out gates.svg\n"
      "  infini plot nll --model runs/base --model runs/xl --text book.txt --length 4K \\\n"
      "      --windows 8 --out nll.svg --csv nll.csv");
  cmd->require_subcommand(1);

  auto g = std::make_shared<GatesOptions>();
  CLI::App* gates = cmd->add_subcommand(
      "gates",
      "Heatmap of every layer x head's memory gate sigmoid(beta) (0: local attention only,\n"
      "1: compressive memory only), each head classified local (L), memory (M) or mixer (X);\n"
      "prints a markdown table (or --json) with a summary per layer. Infini models only.\n"
      "Example:\n"
      "  infini plot gates --model runs/base --out gates.svg --local-below 0.25 "
      "--memory-above 0.75");
  gates->add_option("--model", g->model, "checkpoint directory (attention.type infini)")
      ->required();
  gates->add_option("--out", g->out, "SVG file to write")->required();
  gates->add_option("--local-below", g->local_below, "a head is local when sigmoid(beta) < this")
      ->capture_default_str();
  gates
      ->add_option("--memory-above", g->memory_above,
                   "a head is a memory head when sigmoid(beta) > this")
      ->capture_default_str();
  gates->add_flag("--json", g->json, "print the table as JSON instead of markdown");
  gates->callback([g] { run_gates(*g); });

  auto n = std::make_shared<NllOptions>();
  CLI::App* nll = cmd->add_subcommand(
      "nll",
      "Mean NLL by position in the stream: --windows windows of --length tokens (evenly spaced\n"
      "over the input, each from a fresh state), per-token NLL averaged over the windows, then\n"
      "over --bins bins of positions; one line per --model (all sharing one tokenizer). Writes\n"
      "the SVG, optionally a CSV, and prints a markdown table (or --json). Example:\n"
      "  infini plot nll --model runs/base --model runs/xl --tokens data/kjv/val.tokens \\\n"
      "      --length 4K --windows 8 --bins 32 --out nll.svg --csv nll.csv");
  nll->add_option("--model", n->models, "checkpoint directory (repeat for several models)")
      ->required();
  nll->add_option("--text", n->text, "text file, tokenised with the first model's tokenizer");
  nll->add_option("--tokens", n->tokens, "token shard written by `infini prepare`");
  nll->add_option("--length", n->length,
                  "tokens predicted per window (K = 1024, M = 1024 K); a window reads one more")
      ->required();
  nll->add_option("--windows", n->windows, "windows averaged per model")->capture_default_str();
  nll->add_option("--bins", n->bins, "bins of positions on the x axis")->capture_default_str();
  nll->add_flag("--log-x", n->log_x, "log-spaced bins and a log x axis");
  nll->add_flag("--bits", n->bits, "the figure and table in bits per token (CSV, JSON: nats)");
  nll->add_option("--out", n->out, "SVG file to write")->required();
  nll->add_option("--csv", n->csv, "also write bin_start,bin_end,model,mean_nll rows (nats)");
  nll->add_flag("--json", n->json, "print the result as JSON instead of markdown");
  nll->add_option("--chunk", n->chunk,
                  "tokens per forward pass (whole segments): bounds memory; larger is faster")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  nll->add_option("--threads", n->threads, "threads (0: one per core)")->capture_default_str();
  nll->callback([n] { run_nll(*n); });
}

Registration registration{add_plot};

}  // namespace
}  // namespace infini::cli
