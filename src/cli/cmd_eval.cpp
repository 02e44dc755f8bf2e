// infini eval: the papers' evaluations. `infini eval passkey`: passkey retrieval
// (src/eval/passkey_eval.h, docs/evaluation.md).
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "eval/passkey_eval.h"
#include "model/checkpoint.h"

namespace infini::cli {
namespace {

struct PasskeyFlags {
  std::string model, filler;
  std::vector<std::string> lengths = {"32K", "128K", "256K", "512K", "1M"};
  std::vector<std::string> positions = {"start", "middle", "end"};
  int64_t trials = 5;
  uint64_t seed = 0;
  int digits = 5;
  int64_t chunk = 4096;
  int threads = 0;
  bool json = false;
};

std::string percent(double fraction) {
  char out[16];
  std::snprintf(out, sizeof out, "%.1f%%", 100 * fraction);
  return out;
}

void print_table(const PasskeyFlags& f, const PasskeyEvalOptions& o, const PasskeyEvalResult& r,
                 const std::string& filler) {
  std::printf(
      "passkey retrieval: %s, filler %s, %d-digit keys, %lld trial%s per cell, seed %llu\n\n",
      f.model.c_str(), filler.c_str(), o.digits, (long long)o.trials, o.trials == 1 ? "" : "s",
      (unsigned long long)o.seed);
  std::printf("| length |");
  for (const PasskeyPosition& p : o.positions) std::printf(" %s |", p.name.c_str());
  std::printf("\n|---:|");
  for (size_t i = 0; i < o.positions.size(); ++i) std::printf("---:|");
  std::printf("\n");
  size_t cell = 0;
  for (int64_t length : o.lengths) {
    std::printf("| %s |", format_token_count(length).c_str());
    for (size_t i = 0; i < o.positions.size(); ++i, ++cell)
      std::printf(" %s (%s) |", percent(r.cells[cell].exact_match).c_str(),
                  percent(r.cells[cell].token_accuracy).c_str());
    std::printf("\n");
  }
  std::printf(
      "\ncells: exact match of the first number generated (token-level accuracy of the key)\n");
  const double rate = r.seconds > 0 ? double(r.tokens) / r.seconds : 0;
  std::printf("tokens %lld, %.0f tokens/s (%.1f s, %d threads), peak memory %s\n",
              (long long)r.tokens, rate, r.seconds, threads_count(),
              human_bytes(double(peak_rss_bytes())).c_str());
}

void print_json(const PasskeyFlags& f, const PasskeyEvalOptions& o, const PasskeyEvalResult& r,
                const std::string& filler) {
  nlohmann::json positions = nlohmann::json::array(), cells = nlohmann::json::array(),
                 trials = nlohmann::json::array();
  for (const PasskeyPosition& p : o.positions)
    positions.push_back({{"name", p.name}, {"fraction", p.fraction}});
  for (const PasskeyCell& c : r.cells)
    cells.push_back({{"length", c.length},
                     {"position", c.position},
                     {"fraction", c.fraction},
                     {"trials", c.trials},
                     {"exact_match", c.exact_match},
                     {"token_accuracy", c.token_accuracy}});
  for (const PasskeyTrial& t : r.trials)
    trials.push_back({{"length", t.length},
                      {"position", t.position},
                      {"fraction", t.fraction},
                      {"trial", t.trial},
                      {"key", t.key},
                      {"key_token", t.key_token},
                      {"generated", t.generated},
                      {"answer", t.score.text},
                      {"first_number", t.score.first_number},
                      {"exact", t.score.exact},
                      {"token_accuracy", t.score.token_accuracy}});
  const nlohmann::json j = {{"model", f.model},
                            {"filler", filler},
                            {"digits", o.digits},
                            {"seed", o.seed},
                            {"trials_per_cell", o.trials},
                            {"lengths", o.lengths},
                            {"positions", positions},
                            {"cells", cells},
                            {"trials", trials},
                            {"tokens", r.tokens},
                            {"seconds", r.seconds},
                            {"tokens_per_second", r.seconds > 0 ? double(r.tokens) / r.seconds : 0},
                            {"peak_rss_bytes", peak_rss_bytes()},
                            {"threads", threads_count()}};
  std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

void run_passkey(const PasskeyFlags& f) {
  PasskeyEvalOptions o;
  for (const std::string& text : f.lengths)
    o.lengths.push_back(parse_token_count(text, "--lengths"));
  for (const std::string& text : f.positions)
    o.positions.push_back(parse_passkey_position(text, "--positions"));
  if (f.trials < 1) throw Error("--trials", str(f.trials, ": at least one trial per cell"));
  if (f.digits < 1 || f.digits > 18)
    throw Error("--digits", str(f.digits, ": keys have 1 to 18 digits"));
  if (f.chunk < 1) throw Error("--chunk", str(f.chunk, ": must be positive"));
  o.trials = f.trials;
  o.seed = f.seed;
  o.digits = f.digits;
  o.chunk = f.chunk;

  threads_init(f.threads);
  const Model model = model_load(f.model);
  const std::unique_ptr<Tokenizer> tokenizer = tokenizer_of_model(f.model, model.config);
  const PasskeyTemplate t = f.filler.empty() ? passkey_template(*tokenizer)
                                             : passkey_template_from_file(*tokenizer, f.filler);
  const int64_t total = passkey_eval_tokens(t, o);  // checks every length before any work
  Progress progress("passkey", total);
  const PasskeyEvalResult r =
      passkey_evaluate(model, t, o, [&](int64_t done) { progress.update(done); });
  progress.finish();
  if (f.json)
    print_json(f, o, r, f.filler.empty() ? "default" : f.filler);
  else
    print_table(f, o, r, f.filler.empty() ? "default (the paper's)" : f.filler);
}

void add_eval(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "eval",
      "Evaluations of the papers (docs/evaluation.md). Example:\n"
      "  infini eval passkey --model runs/pk/latest --lengths 32K,1M --trials 20");
  cmd->require_subcommand(1);

  auto f = std::make_shared<PasskeyFlags>();
  CLI::App* passkey = cmd->add_subcommand(
      "passkey",
      "Passkey retrieval (Infini-attention, Appendix B): a random key hidden in filler text at\n"
      "each --positions of prompts of each --lengths tokens, streamed through the model in\n"
      "constant memory, then the answer decoded greedily. Prints a table of exact match of the\n"
      "first number generated (and token-level accuracy of the key) per length x position;\n"
      "--json adds every trial. Keys are multiples of 3, which `infini data passkey` never uses.\n"
      "Examples:\n"
      "  infini eval passkey --model runs/pk/latest --lengths 32K,128K,256K,512K,1M --trials 20\n"
      "  infini eval passkey --model runs/pk/latest --lengths 4K --positions 0,0.25,0.5,0.75,1 \\\n"
      "      --filler book.txt --json");
  passkey->add_option("--model", f->model, "checkpoint directory")->required();
  passkey->add_option("--lengths", f->lengths, "prompt lengths in tokens (K = 1024, M = 1024 K)")
      ->delimiter(',')
      ->capture_default_str();
  passkey
      ->add_option("--positions", f->positions,
                   "where the key goes in the filler: start, middle, end or a fraction in [0, 1]")
      ->delimiter(',')
      ->capture_default_str();
  passkey->add_option("--trials", f->trials, "trials (random keys) per length x position")
      ->capture_default_str();
  passkey->add_option("--seed", f->seed, "seed of the keys")->capture_default_str();
  passkey->add_option("--digits", f->digits, "digits of a key (1 to 18)")->capture_default_str();
  passkey->add_option("--filler", f->filler,
                      "a text file to use as the haystack instead of the paper's sentences "
                      "(repeated as needed)");
  passkey
      ->add_option("--chunk", f->chunk,
                   "prompt tokens per forward pass (whole segments): bounds memory")
      ->capture_default_str();
  passkey->add_option("--threads", f->threads, "threads (0: one per core)")->capture_default_str();
  passkey->add_flag("--json", f->json, "print the result, every trial included, as JSON");
  passkey->callback([f] { run_passkey(*f); });
}

Registration registration{add_eval};

}  // namespace
}  // namespace infini::cli
