// infini info: what a model is and what a stream of it carries (issue 6, docs/mechanisms.md).
//
// From config.json alone: the mechanism, the sizes, the parameter count, the state carried
// between segments by the formulas of spec §2-§4 at stream length T and at 4K, 64K, 1M (with the
// compression relative to full attention, as the Infini-attention paper's Table 2 reports it),
// what a stream really holds at T (state_in_use) and the effective context. Then, when the model
// loads, a live measurement: T tokens (at most --measure-length, keeping T mod N) are streamed
// through a Decoder and its StreamState is measured (model/state_size.h), next to the formula.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iomanip>
#include <memory>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "infer/decoder.h"
#include "infer/stream_bench.h"
#include "model/checkpoint.h"
#include "model/state_size.h"

namespace infini::cli {
namespace {

using json = nlohmann::json;

struct InfoOptions {
  std::string model, stream_length = "1M", measure_length = "auto";
  bool json = false;
  int threads = 0;
};

constexpr int64_t kK = 1024, kM = 1024 * 1024;

// "4096", "4K", "1M" (K = 1024, M = 1048576; k and m too) -> a token count >= 1 (>= 0 with
// allow_zero). Throws naming `flag`.
int64_t parse_token_count(const std::string& text, const char* flag, bool allow_zero) {
  const std::string hint = str("give a ", allow_zero ? "" : "positive ",
                               "whole number of tokens, optionally with a K (x1024) or M "
                               "(x1048576) suffix, e.g. 65536, 64K or 1M");
  const auto bad = [&](const std::string& why) {
    return Error(flag, str("'", text, "' ", why), hint);
  };
  if (text.empty()) throw bad("is empty");
  int64_t scale = 1;
  std::string digits = text;
  const char last = text.back();
  if (last == 'K' || last == 'k') scale = kK;
  if (last == 'M' || last == 'm') scale = kM;
  if (scale != 1) digits.pop_back();
  if (!digits.empty() && digits[0] == '-') throw bad("is negative");
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
    throw bad("is not a token count");
  if (digits.size() > 18) throw bad("is too large");
  const int64_t value = std::stoll(digits);
  int64_t tokens;
  if (__builtin_mul_overflow(value, scale, &tokens)) throw bad("is too large");
  if (tokens == 0 && !allow_zero) throw bad("is zero");
  return tokens;
}

std::string grouped(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string length_label(int64_t n) {
  if (n % kM == 0) return str(n / kM, "M");
  if (n % kK == 0) return str(n / kK, "K");
  return grouped(n);
}

// The spec's state at one stream length, with what a stream really holds there.
struct StatePoint {
  int64_t stream_length = 0;
  std::optional<int64_t> floats, full_floats;  // nullopt: overflows int64
  std::optional<StateInUse> in_use;
  std::optional<int64_t> bytes() const {
    if (!floats || *floats > INT64_MAX / 4) return std::nullopt;
    return 4 * *floats;
  }
  std::optional<double> compression() const {
    if (!floats || !full_floats || *floats == 0) return std::nullopt;
    return double(*full_floats) / double(*floats);
  }
};

StatePoint state_point(const ModelConfig& c, int64_t T) {
  StatePoint p;
  p.stream_length = T;
  int64_t n;
  if (state_floats(c, T, &n)) p.floats = n;
  ModelConfig full = c;
  full.attention.type = "full";
  if (state_floats(full, T, &n)) p.full_floats = n;
  p.in_use = state_in_use(c, T);
  return p;
}

// Why the spec's column and the rows a stream holds differ, for this type.
std::string state_note(const ModelConfig& c) {
  const std::string& t = c.attention.type;
  if (t == "infini")
    return "the spec counts the memories M, z only; a stream that stops inside a segment also "
           "holds that segment's K/V (T mod N rows per layer), written into M, z when the "
           "segment completes";
  if (t == "full") return "the KV cache holds every token of the stream: it grows with T";
  if (t == "sliding")
    return "the cache keeps window - 1 rows: the next token itself is the window's last (fewer "
           "before the window fills)";
  if (t == "xl")
    return "at a segment boundary the cache holds the previous segment (N rows), as the spec "
           "counts; inside a segment it also holds the unfinished one (N + T mod N rows)";
  return str(
      "at a block boundary the cache holds memory_blocks N rows, as the spec counts; inside "
      "a block it also holds the unfinished one (+ T mod N rows)",
      t == "fam" ? "; the FAM rows (L fam_length D floats) are always there" : "");
}

// Smallest stream length from which the state's size repeats with period N.
int64_t steady_length(const ModelConfig& c) {
  const AttentionConfig& a = c.attention;
  if (a.type == "sliding") return a.window - 1;
  if (a.type == "bswa" || a.type == "fam") return a.segment_length * a.memory_blocks;
  return a.segment_length;  // infini, xl (full never settles)
}

// Tokens to stream for the live measurement: T, or when T is longer than the limit the largest
// length within it that leaves the same partial segment (T mod N) as T; 0: none.
int64_t measure_length(const ModelConfig& c, int64_t T, const std::string& option) {
  const int64_t N = c.attention.segment_length;
  int64_t limit;
  if (option == "auto") {
    // quick: 8K tokens (full: 4K, its cost grows with the square), or as many as the cache needs
    // to reach its steady size, at most 64K
    limit = c.attention.type == "full" ? 4 * kK
                                       : std::min(std::max(8 * kK, steady_length(c) + N), 64 * kK);
  } else {
    limit = parse_token_count(option, "--measure-length", true);
  }
  if (limit == 0 || T <= limit) return std::min(T, limit);
  int64_t m = limit / N * N + T % N;
  if (m > limit) m -= N;
  return m > 0 ? m : limit;  // a limit shorter than T mod N: no such length, take the limit
}

struct Live {
  bool available = false;
  std::string reason;
  int64_t streamed = 0;
  double seconds = 0;
  StateMeasured measured;
  size_t state_bytes = 0;  // stream_state_bytes(config, 1) of a fresh state
  std::optional<StateInUse> formula;
};

Live measure_live(const std::string& dir, const ModelConfig& c, int64_t tokens) {
  Live live;
  if (tokens == 0) {
    live.reason = "skipped (--measure-length 0)";
    return live;
  }
  std::unique_ptr<Model> model;
  try {
    model = std::make_unique<Model>(model_load(dir));
  } catch (const Error& e) {
    live.reason = e.what();
    return live;
  }
  const auto start = std::chrono::steady_clock::now();
  Decoder decoder = decoder_create(*model);
  const BenchTokens ids;  // pseudo-random ids, seed 1: the state's size does not depend on them
  std::vector<int32_t> buffer(size_t(decoder.chunk_tokens));
  Progress progress("info", tokens);
  while (decoder.state.position < tokens) {
    const int64_t at = decoder.state.position,
                  n = std::min(tokens - at, decoder.chunk_tokens - at % decoder.chunk_tokens);
    bench_tokens_fill(ids, c.vocab_size, at, buffer.data(), n);
    decoder_feed(decoder, buffer.data(), n);
    progress.update(decoder.state.position);
  }
  progress.finish();
  live.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  live.available = true;
  live.streamed = tokens;
  live.measured = stream_state_measure(c, decoder.state);
  live.state_bytes = stream_state_bytes(c, 1);
  live.formula = state_in_use(c, tokens);
  return live;
}

struct Info {
  std::string dir;
  ModelConfig config;
  int64_t parameters = 0, stream_length = 0;
  StatePoint at_t;
  std::vector<StatePoint> growth;
  EffectiveContext context;
  Live live;
};

json optional_number(const std::optional<int64_t>& x) {
  return x ? json(*x) : json();
}

json span_json(const ContextSpan& s) {
  return {{"min", s.min}, {"max", s.max}};
}

json in_use_json(const std::optional<StateInUse>& s) {
  if (!s) return json();
  return {{"stream_length", s->stream_length},
          {"memory_floats", s->memory_floats},
          {"cache_rows_per_layer", s->cache_rows},
          {"cache_floats", s->cache_floats},
          {"fam_floats", s->fam_floats},
          {"floats", s->total_floats},
          {"bytes", s->bytes()}};
}

json point_json(const StatePoint& p) {
  const std::optional<double> ratio = p.compression();
  return {{"stream_length", p.stream_length},
          {"floats", optional_number(p.floats)},
          {"bytes", optional_number(p.bytes())},
          {"full_attention_floats", optional_number(p.full_floats)},
          {"compression_vs_full", ratio ? json(*ratio) : json()},
          {"in_use", in_use_json(p.in_use)}};
}

void print_json(const Info& info) {
  const ModelConfig& c = info.config;
  json live;
  if (info.live.available) {
    const StateMeasured& m = info.live.measured;
    live = {{"available", true},
            {"stream_length", info.live.streamed},
            {"seconds", info.live.seconds},
            {"memory_floats", m.memory_floats},
            {"cache_rows_per_layer", m.cache_rows},
            {"cache_capacity_rows", m.cache_capacity_rows},
            {"cache_floats", m.cache_floats},
            {"fam_floats", m.fam_floats},
            {"floats", m.total_floats},
            {"in_use_bytes", m.in_use_bytes},
            {"allocated_bytes", m.allocated_bytes},
            {"stream_state_bytes", info.live.state_bytes},
            {"formula", in_use_json(info.live.formula)},
            {"matches_formula", info.live.formula &&
                                    info.live.formula->total_floats == m.total_floats &&
                                    info.live.formula->cache_rows == m.cache_rows}};
  } else {
    live = {{"available", false}, {"reason", info.live.reason}};
  }
  json growth = json::array();
  for (const StatePoint& p : info.growth) growth.push_back(point_json(p));
  json state = point_json(info.at_t);
  state["formula"] = state_formula(c);
  state["formula_numbers"] = state_formula(c, info.stream_length);
  state["note"] = state_note(c);
  const EffectiveContext& e = info.context;
  const json j = {{"model", info.dir},
                  {"type", c.attention.type},
                  {"attention", config_to_json(c)["attention"]},
                  {"sizes",
                   {{"D", c.hidden_size},
                    {"L", c.num_hidden_layers},
                    {"H", c.num_attention_heads},
                    {"Hkv", c.num_key_value_heads},
                    {"d", c.head_dim},
                    {"F", c.intermediate_size},
                    {"V", c.vocab_size},
                    {"tie_word_embeddings", c.tie_word_embeddings}}},
                  {"parameters", {{"count", info.parameters}, {"bytes_fp32", 4 * info.parameters}}},
                  {"stream_length", info.stream_length},
                  {"state", state},
                  {"growth", growth},
                  {"effective_context",
                   {{"unbounded", e.unbounded},
                    {"per_layer", span_json(e.layer)},
                    {"stack", span_json(e.stack)},
                    {"note", e.note}}},
                  {"live", live},
                  {"config", config_to_json(c)}};
  std::printf("%s\n", j.dump(2).c_str());
}

std::string floats_words(const std::optional<int64_t>& floats) {
  if (!floats) return "overflows int64";
  return str(grouped(*floats), " floats (", human_bytes(4.0 * double(*floats)), ")");
}

std::string span_words(const ContextSpan& s) {
  return s.min == s.max ? grouped(s.min) : str(grouped(s.min), " to ", grouped(s.max));
}

void print_text(const Info& info) {
  const ModelConfig& c = info.config;
  const AttentionConfig& a = c.attention;
  std::printf("model            %s\n", info.dir.c_str());
  std::string mechanism = str(a.type, ", segment_length N ", a.segment_length);
  if (a.type == "infini") mechanism += str(", memory_update ", a.memory_update);
  if (a.type == "sliding") mechanism += str(", window ", a.window);
  if (a.type == "bswa" || a.type == "fam") mechanism += str(", memory_blocks ", a.memory_blocks);
  if (a.type == "fam") mechanism += str(", fam_length ", a.fam_length);
  std::printf("attention        %s\n", mechanism.c_str());
  std::printf("sizes            D %lld, L %lld, H %lld, Hkv %lld, d %lld, F %lld, V %lld%s\n",
              (long long)c.hidden_size, (long long)c.num_hidden_layers,
              (long long)c.num_attention_heads, (long long)c.num_key_value_heads,
              (long long)c.head_dim, (long long)c.intermediate_size, (long long)c.vocab_size,
              c.tie_word_embeddings ? ", tied embeddings" : "");
  std::printf("parameters       %s (%s fp32)\n", grouped(info.parameters).c_str(),
              human_bytes(4.0 * double(info.parameters)).c_str());

  const StatePoint& p = info.at_t;
  std::printf("\nstate between segments at T = %s tokens (spec, one stream)\n",
              grouped(info.stream_length).c_str());
  std::printf("  formula        %s\n", state_formula(c, info.stream_length).c_str());
  std::printf("  state          %s\n", floats_words(p.floats).c_str());
  std::printf("  full attention %s\n", floats_words(p.full_floats).c_str());
  if (p.compression())
    std::printf("  compression    %.1fx (full attention's state / this one's, at T)\n",
                *p.compression());
  if (p.in_use)
    std::printf("  held at T      %s: memories %s + KV cache %s rows per layer + FAM %s\n",
                floats_words(p.in_use->total_floats).c_str(),
                grouped(p.in_use->memory_floats).c_str(), grouped(p.in_use->cache_rows).c_str(),
                grouped(p.in_use->fam_floats).c_str());
  std::printf("  note           %s\n", state_note(c).c_str());

  std::printf("\ngrowth with the stream (formula)\n\n");
  std::printf("| T | state (spec) | bytes | held at T | full attention | compression |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|\n");
  for (const StatePoint& g : info.growth) {
    const std::optional<int64_t> bytes = g.bytes();
    std::printf("| %s | %s | %s | %s | %s | %s |\n", length_label(g.stream_length).c_str(),
                g.floats ? grouped(*g.floats).c_str() : "overflow",
                bytes ? human_bytes(double(*bytes)).c_str() : "overflow",
                g.in_use ? grouped(g.in_use->total_floats).c_str() : "overflow",
                g.full_floats ? grouped(*g.full_floats).c_str() : "overflow",
                g.compression()
                    ? str(std::fixed, std::setprecision(1), *g.compression(), "x").c_str()
                    : "-");
  }

  std::printf("\nlive state (batch 1)\n");
  const Live& live = info.live;
  if (!live.available) {
    std::printf("  live measurement unavailable: %s\n", live.reason.c_str());
  } else {
    const StateMeasured& m = live.measured;
    std::printf("  streamed       %s tokens through the decoder (%.2f s)\n",
                grouped(live.streamed).c_str(), live.seconds);
    std::printf("  memories       %s floats (M, z)\n", grouped(m.memory_floats).c_str());
    std::printf("  KV cache       %s rows per layer in use (capacity %s): %s floats\n",
                grouped(m.cache_rows).c_str(), grouped(m.cache_capacity_rows).c_str(),
                grouped(m.cache_floats).c_str());
    std::printf("  FAM rows       %s floats\n", grouped(m.fam_floats).c_str());
    std::printf("  in use         %s bytes (%s)\n", grouped(m.in_use_bytes).c_str(),
                human_bytes(double(m.in_use_bytes)).c_str());
    std::printf("  allocated      %s bytes (stream_state_bytes of a fresh state: %s)\n",
                grouped(m.allocated_bytes).c_str(), grouped(int64_t(live.state_bytes)).c_str());
    const bool match = live.formula && live.formula->total_floats == m.total_floats &&
                       live.formula->cache_rows == m.cache_rows;
    std::printf("  formula        %s floats held at %s tokens: %s\n",
                live.formula ? grouped(live.formula->total_floats).c_str() : "overflow",
                grouped(live.streamed).c_str(), match ? "matches" : "DIFFERS");
    if (live.streamed < info.stream_length)
      std::printf("  note           measured at %s tokens, not T = %s (--measure-length)%s\n",
                  grouped(live.streamed).c_str(), grouped(info.stream_length).c_str(),
                  a.type == "full" ? "; full attention's state keeps growing with T" : "");
  }

  const EffectiveContext& e = info.context;
  std::printf("\neffective context (tokens a prediction can depend on, itself included)\n");
  std::printf("  per layer      %s%s\n", span_words(e.layer).c_str(),
              e.unbounded ? " exact (softmax) + unbounded" : "");
  std::printf("  through stack  %s\n", e.unbounded ? "unbounded" : span_words(e.stack).c_str());
  std::printf("  note           %s\n", e.note.c_str());
}

void run_info(const InfoOptions& o) {
  const int64_t T = parse_token_count(o.stream_length, "--stream-length", false);
  if (o.measure_length != "auto") parse_token_count(o.measure_length, "--measure-length", true);
  Info info;
  info.dir = o.model;
  info.config = config_load(o.model);
  info.stream_length = T;
  info.parameters = config_parameter_count(info.config);
  info.at_t = state_point(info.config, T);
  std::vector<int64_t> lengths = {4 * kK, 64 * kK, kM, T};
  std::sort(lengths.begin(), lengths.end());
  lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  for (int64_t n : lengths) info.growth.push_back(state_point(info.config, n));
  info.context = effective_context(info.config, T);
  threads_init(o.threads);
  info.live = measure_live(o.model, info.config, measure_length(info.config, T, o.measure_length));
  if (o.json)
    print_json(info);
  else
    print_text(info);
}

void add_info(CLI::App& app) {
  auto o = std::make_shared<InfoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "info",
      "Describe a model: its mechanism and sizes, the parameter count, the state a stream\n"
      "carries between segments (spec formulas at T and at 4K, 64K, 1M; compression relative to\n"
      "full attention; and measured from a live stream state after streaming T tokens, at most\n"
      "--measure-length), and the effective context (docs/mechanisms.md). Examples:\n"
      "  infini info --model runs/base\n"
      "  infini info --model runs/base --stream-length 100K --json");
  cmd->add_option("--model", o->model, "checkpoint directory (or its config.json: formulas only)")
      ->required();
  cmd->add_option("--stream-length", o->stream_length,
                  "stream length T in tokens, K = 1024, M = 1048576")
      ->capture_default_str();
  cmd->add_option(
         "--measure-length", o->measure_length,
         "stream at most this many tokens for the live measurement, keeping T mod N "
         "(0: none; auto: 8K (full: 4K), or as many as the cache needs to fill, at most 64K)")
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "print everything as JSON");
  cmd->add_option("--threads", o->threads, "threads (0: one per core)")->capture_default_str();
  cmd->callback([o] { run_info(*o); });
}

Registration registration{add_info};

}  // namespace
}  // namespace infini::cli
