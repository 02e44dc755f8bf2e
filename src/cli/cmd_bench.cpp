// infini bench: prefill and decode speed and memory of one stream at lengths such as 4K, 64K and
// 1M tokens, llama-bench style (mean ± sd over repetitions; markdown, CSV or JSON). The measuring
// loop is infer/stream_bench.h; this file parses options, picks the tokens and prints.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "data/tokenizer.h"
#include "infer/stream_bench.h"
#include "model/checkpoint.h"

namespace infini::cli {
namespace {

struct BenchCliOptions {
  std::string model, lengths = "4K,64K,1M", output = "md", input;
  int64_t decode = 128, reps = 3, chunk = 4096;
  uint64_t seed = 1;
  int threads = 0;
};

// "4K,64K,1M" -> 4096, 65536, 1048576 (K = 1024, M = 1024^2; k and m too), sorted, no repeats.
std::vector<int64_t> parse_lengths(const std::string& text) {
  const std::string hint =
      "a comma-separated list of positive token counts, each with an optional "
      "K (x1024) or M (x1048576) suffix, e.g. 4K,64K,1M";
  std::vector<int64_t> lengths;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto bad = [&](const std::string& why) {
      return Error("--lengths", str("'", item, "' ", why), hint);
    };
    if (item.empty()) throw bad("is empty");
    int64_t scale = 1;
    std::string digits = item;
    const char last = item.back();
    if (last == 'K' || last == 'k') scale = 1024;
    if (last == 'M' || last == 'm') scale = 1024 * 1024;
    if (scale != 1) digits.pop_back();
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
      throw bad("is not a token count");
    if (digits.size() > 15) throw bad("is too large");
    const int64_t value = std::stoll(digits);
    if (value == 0) throw bad("is zero");
    if (value > (int64_t(1) << 50) / scale) throw bad("is too large");
    lengths.push_back(value * scale);
  }
  if (lengths.empty() || text.back() == ',')
    throw Error("--lengths", "is empty or ends in ','", hint);
  std::sort(lengths.begin(), lengths.end());
  lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  return lengths;
}

std::string length_label(int64_t n) {
  if (n % (1024 * 1024) == 0) return str(n / (1024 * 1024), "M");
  if (n % 1024 == 0) return str(n / 1024, "K");
  return str(n);
}

// "AMD EPYC (family 25, model 17)": the model name, and the family and model numbers (hosts of
// the same name differ: bench/README.md).
std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, name, family, model;
  const auto value = [&](const std::string& key) -> std::string {
    if (line.rfind(key, 0) != 0) return "";
    const size_t colon = line.find(':');
    if (colon == std::string::npos || line.find_first_not_of(" \t", key.size()) != colon) return "";
    const size_t start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? "" : line.substr(start);
  };
  while (std::getline(in, line) && !line.empty()) {
    if (name.empty()) name = value("model name");
    if (family.empty()) family = value("cpu family");
    if (model.empty()) model = value("model");
  }
  if (name.empty()) name = "unknown";
  return family.empty() || model.empty() ? name
                                         : str(name, " (family ", family, ", model ", model, ")");
}

// stderr: a redrawn bar on a terminal, otherwise a plain line every 10 s (logs, pipes).
class BenchProgress {
 public:
  explicit BenchProgress(int64_t total) : bar_("bench", total), total_(total) {}
  void update(int64_t done) {
    bar_.update(done);
    const auto now = std::chrono::steady_clock::now();
    if (bar_.interactive() || now - last_line_ < std::chrono::seconds(10)) return;
    last_line_ = now;
    const double elapsed = bar_.seconds(), rate = elapsed > 0 ? double(done) / elapsed : 0;
    std::fprintf(stderr, "bench: %lld/%lld tokens, %.0f tokens/s, ETA %.0f s\n", (long long)done,
                 (long long)total_, rate, rate > 0 ? double(total_ - done) / rate : 0.0);
  }
  void finish() { bar_.finish(); }

 private:
  Progress bar_;
  int64_t total_;
  std::chrono::steady_clock::time_point last_line_ = std::chrono::steady_clock::now();
};

// One length's statistics over the repetitions.
struct Row {
  int64_t length = 0, prefill_tokens = 0, decode_tokens = 0;
  MeanSd prefill, prefill_total, decode_ms, decode_rate;
  int64_t peak_rss_first = 0, peak_rss_max = 0;
};

std::vector<Row> summarize(const StreamBenchResult& r) {
  std::vector<Row> rows;
  for (size_t i = 0; i < r.reps.front().size(); ++i) {
    std::vector<double> prefill, total, ms, rate;
    Row row;
    row.length = r.reps.front()[i].length;
    row.prefill_tokens = r.reps.front()[i].prefill_tokens;
    row.decode_tokens = r.reps.front()[i].decode_tokens;
    row.peak_rss_first = r.reps.front()[i].peak_rss_bytes;
    for (const auto& rep : r.reps) {
      const StreamBenchPoint& p = rep[i];
      prefill.push_back(p.prefill_tokens_per_second());
      total.push_back(p.prefill_total_tokens_per_second());
      ms.push_back(p.decode_ms_per_token());
      rate.push_back(p.decode_tokens_per_second());
      row.peak_rss_max = std::max(row.peak_rss_max, p.peak_rss_bytes);
    }
    row.prefill = mean_sd(prefill);
    row.prefill_total = mean_sd(total);
    row.decode_ms = mean_sd(ms);
    row.decode_rate = mean_sd(rate);
    rows.push_back(row);
  }
  return rows;
}

struct Facts {
  std::string model_name, type, params, cpu, tokens;
  int64_t parameter_count = 0;
  int threads = 0;
};

std::string pm(const MeanSd& m, int decimals) {
  if (std::isnan(m.sd)) return str(std::fixed, std::setprecision(decimals), m.mean);
  return str(std::fixed, std::setprecision(decimals), m.mean, " ± ", m.sd);
}

void print_markdown(const Facts& f, const BenchCliOptions& o, const StreamBenchResult& r,
                    const std::vector<Row>& rows) {
  std::printf(
      "infini bench: %s threads, CPU %s, chunk %lld, %lld repetition%s, decode %lld "
      "tokens per length (greedy, from a copy of the stream's state), tokens: %s; "
      "warm-up %.2f s untimed\n\n",
      str(f.threads).c_str(), f.cpu.c_str(), (long long)r.chunk_tokens, (long long)o.reps,
      o.reps == 1 ? "" : "s", (long long)o.decode, f.tokens.c_str(), r.warmup_seconds);
  std::printf(
      "| model | type | params | threads | length | prefill tok/s | decode ms/tok | "
      "decode tok/s | state | peak RSS |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& row : rows) {
    const bool decoded = row.decode_tokens > 0;
    std::printf("| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s |\n", f.model_name.c_str(),
                f.type.c_str(), f.params.c_str(), f.threads, length_label(row.length).c_str(),
                pm(row.prefill, 0).c_str(), decoded ? pm(row.decode_ms, 3).c_str() : "-",
                decoded ? pm(row.decode_rate, 1).c_str() : "-",
                human_bytes(double(r.state_bytes)).c_str(),
                human_bytes(double(row.peak_rss_first)).c_str());
  }
  std::printf(
      "\nprefill tok/s: the stretch from the previous length (from 0 for the first); "
      "mean ± sample sd over the repetitions. peak RSS: the process's peak when the first "
      "repetition had reached the length. state: one stream's memories + KV cache.\n");
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char ch : s) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return quoted + "\"";
}

std::string csv_number(double x) {
  return std::isnan(x) ? std::string() : str(std::setprecision(10), x);
}

void print_csv(const Facts& f, const StreamBenchResult& r, const std::vector<Row>& rows) {
  std::printf(
      "model,type,params,threads,cpu,chunk,reps,length,prefill_tokens,"
      "prefill_tokens_per_second_mean,prefill_tokens_per_second_sd,"
      "prefill_total_tokens_per_second_mean,prefill_total_tokens_per_second_sd,"
      "decode_tokens,decode_ms_per_token_mean,decode_ms_per_token_sd,"
      "decode_tokens_per_second_mean,decode_tokens_per_second_sd,state_bytes,"
      "peak_rss_bytes\n");
  for (const Row& row : rows) {
    const bool d = row.decode_tokens > 0;
    const double none = std::nan("");
    std::printf("%s,%s,%lld,%d,%s,%lld,%zu,%lld,%lld,%s,%s,%s,%s,%lld,%s,%s,%s,%s,%zu,%lld\n",
                csv_field(f.model_name).c_str(), csv_field(f.type).c_str(),
                (long long)f.parameter_count, f.threads, csv_field(f.cpu).c_str(),
                (long long)r.chunk_tokens, r.reps.size(), (long long)row.length,
                (long long)row.prefill_tokens, csv_number(row.prefill.mean).c_str(),
                csv_number(row.prefill.sd).c_str(), csv_number(row.prefill_total.mean).c_str(),
                csv_number(row.prefill_total.sd).c_str(), (long long)row.decode_tokens,
                csv_number(d ? row.decode_ms.mean : none).c_str(),
                csv_number(d ? row.decode_ms.sd : none).c_str(),
                csv_number(d ? row.decode_rate.mean : none).c_str(),
                csv_number(d ? row.decode_rate.sd : none).c_str(), r.state_bytes,
                (long long)row.peak_rss_first);
  }
}

nlohmann::json number_or_null(double x) {
  return std::isnan(x) ? nlohmann::json() : nlohmann::json(x);
}
nlohmann::json stats(const MeanSd& m, bool present = true) {
  if (!present) return nlohmann::json();
  return {{"mean", number_or_null(m.mean)}, {"sd", number_or_null(m.sd)}};
}

void print_json(const Facts& f, const BenchCliOptions& o, const Model& model,
                const StreamBenchResult& r, const std::vector<Row>& rows) {
  nlohmann::json results = nlohmann::json::array(), lengths = nlohmann::json::array();
  for (const Row& row : rows) lengths.push_back(row.length);
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    const bool d = row.decode_tokens > 0;
    nlohmann::json raw = nlohmann::json::array();
    for (const auto& rep : r.reps) {
      const StreamBenchPoint& p = rep[i];
      raw.push_back(
          {{"prefill_seconds", p.prefill_seconds},
           {"prefill_tokens_per_second", p.prefill_tokens_per_second()},
           {"prefill_total_seconds", p.prefill_total_seconds},
           {"prefill_total_tokens_per_second", p.prefill_total_tokens_per_second()},
           {"decode_seconds", p.decode_seconds},
           {"decode_ms_per_token", d ? nlohmann::json(p.decode_ms_per_token()) : nullptr},
           {"decode_tokens_per_second", d ? nlohmann::json(p.decode_tokens_per_second()) : nullptr},
           {"peak_rss_bytes", p.peak_rss_bytes}});
    }
    results.push_back({{"length", row.length},
                       {"prefill_tokens", row.prefill_tokens},
                       {"prefill_tokens_per_second", stats(row.prefill)},
                       {"prefill_total_tokens_per_second", stats(row.prefill_total)},
                       {"decode_tokens", row.decode_tokens},
                       {"decode_ms_per_token", stats(row.decode_ms, d)},
                       {"decode_tokens_per_second", stats(row.decode_rate, d)},
                       {"peak_rss_bytes", row.peak_rss_first},
                       {"peak_rss_bytes_max", row.peak_rss_max},
                       {"repetitions", raw}});
  }
  nlohmann::json j = {{"model", o.model},
                      {"type", f.type},
                      {"params", f.parameter_count},
                      {"config", config_to_json(model.config)},
                      {"environment", {{"threads", f.threads}, {"cpu", f.cpu}}},
                      {"options",
                       {{"lengths", lengths},
                        {"decode", o.decode},
                        {"reps", o.reps},
                        {"chunk", o.chunk},
                        {"chunk_used", r.chunk_tokens},
                        {"tokens", f.tokens},
                        {"decode_tokens_from", "greedy, from a copy of the stream's state"}}},
                      {"warmup_seconds", r.warmup_seconds},
                      {"state_bytes", r.state_bytes},
                      {"decoder_bytes", r.decoder_bytes},
                      {"results", results}};
  std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

// The tokens of --input (the model's tokenizer), or none (seeded pseudo-random ids).
BenchTokens bench_tokens(const BenchCliOptions& o, const std::string& model_dir,
                         const ModelConfig& c, std::string& description) {
  BenchTokens t;
  t.seed = o.seed;
  if (o.input.empty()) {
    description = str("pseudo-random ids in [0, ", c.vocab_size, ") (seed ", o.seed, ")");
    return t;
  }
  const std::string tokenizer_file =
      c.tokenizer.type == "sentencepiece"
          ? (std::filesystem::path(model_dir) / c.tokenizer.model_file).string()
          : std::string();
  const std::unique_ptr<Tokenizer> tokenizer = tokenizer_load(c.tokenizer.type, tokenizer_file);
  if (tokenizer->vocab_size() > c.vocab_size)
    throw Error(o.model,
                str("the ", tokenizer->name(), " tokenizer has ", tokenizer->vocab_size(),
                    " ids but the model only ", c.vocab_size),
                "the tokenizer does not belong to this model");
  std::ifstream in(o.input, std::ios::binary);
  if (!in) throw Error(o.input, "cannot open the input file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw Error(o.input, "read failed");
  t.cycle = tokenizer->encode(text.str());
  if (t.cycle.empty()) throw Error(o.input, "gives no tokens", "give a non-empty text file");
  description = str(o.input, " (", t.cycle.size(), " ", tokenizer->name(),
                    " tokens, repeated from the start as needed)");
  return t;
}

void run_bench(const BenchCliOptions& o) {
  StreamBenchOptions b;
  b.lengths = parse_lengths(o.lengths);
  b.decode = o.decode;
  b.reps = o.reps;
  b.chunk = o.chunk;
  stream_bench_check(b);  // before the model is loaded: fail fast on bad options
  threads_init(o.threads);
  const Model model = model_load(o.model);
  const ModelConfig& c = model.config;

  Facts f;
  const BenchTokens tokens = bench_tokens(o, o.model, c, f.tokens);
  f.model_name = std::filesystem::path(o.model).lexically_normal().filename().string();
  if (f.model_name.empty())
    f.model_name =
        std::filesystem::path(o.model).lexically_normal().parent_path().filename().string();
  f.type = c.attention.type == "infini" ? "infini-" + c.attention.memory_update : c.attention.type;
  f.parameter_count = config_parameter_count(c);
  f.params = str(std::fixed, std::setprecision(2), double(f.parameter_count) / 1e6, " M");
  f.cpu = cpu_model_name();
  f.threads = threads_count();

  BenchProgress progress(stream_bench_total_tokens(b));
  StreamBenchHooks hooks;
  hooks.progress = [&](int64_t done) { progress.update(done); };
  const StreamBenchResult r = stream_bench_run(model, b, tokens, hooks);
  progress.finish();

  const std::vector<Row> rows = summarize(r);
  if (o.output == "csv")
    print_csv(f, r, rows);
  else if (o.output == "json")
    print_json(f, o, model, r, rows);
  else
    print_markdown(f, o, r, rows);
}

void add_bench(CLI::App& app) {
  auto o = std::make_shared<BenchCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Measure one stream growing to each length (llama-bench style): prefill tokens/s over each\n"
      "stretch, decode ms/token at each length (greedy, from a copy of the state, so the stream\n"
      "is undisturbed), the stream state's size and peak RSS; mean ± sd over repetitions\n"
      "(bench/README.md). Examples:\n"
      "  infini bench --model runs/base\n"
      "  infini bench --model runs/base --lengths 4K,64K --reps 2 --output json");
  cmd->add_option("--model", o->model, "checkpoint directory")->required();
  cmd->add_option("--lengths", o->lengths,
                  "stream lengths in tokens, comma-separated, K = 1024, M = 1048576")
      ->capture_default_str();
  cmd->add_option("--decode", o->decode, "tokens decoded one by one at each length (0: none)")
      ->capture_default_str();
  cmd->add_option("--reps", o->reps, "repetitions (each one stream from position 0)")
      ->capture_default_str();
  cmd->add_option("--chunk", o->chunk, "prefill tokens run at once (rounded to whole segments)")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "threads (0: one per core)")->capture_default_str();
  cmd->add_option("--output", o->output,
                  "md (markdown table), csv, or json (with every "
                  "repetition's numbers)")
      ->capture_default_str()
      ->check(CLI::IsMember({"md", "csv", "json"}));
  cmd->add_option("--input", o->input,
                  "read the tokens from this text file (the model's tokenizer; repeated as "
                  "needed) instead of pseudo-random ids");
  cmd->add_option("--seed", o->seed, "seed of the pseudo-random ids")->capture_default_str();
  cmd->callback([o] { run_bench(*o); });
}

Registration registration{add_bench};

}  // namespace
}  // namespace infini::cli
