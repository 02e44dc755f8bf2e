#include "plot/nll_position.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "data/prepare.h"
#include "io/json_strict.h"
#include "plot/chart.h"

namespace infini {

namespace fs = std::filesystem;

namespace {

constexpr size_t kEncodeBlockBytes = size_t(1) << 20;

std::string read_whole_file(const std::string& path, const char* what) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(path, str("no such ", what));
  if (fs::is_directory(path, ec)) throw Error(path, str("is a directory, not a ", what));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, str("cannot open the ", what));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) throw Error(path, "read error");
  return out.str();
}

std::string fixed(double v, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, v);
  return buffer;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (const char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

// The tokenizer a model names, as `infini generate` loads it.
std::string tokenizer_file(const Model& model, const std::string& dir) {
  const TokenizerConfig& t = model.config.tokenizer;
  return t.type == "sentencepiece" ? (fs::path(dir) / t.model_file).string() : std::string();
}

}  // namespace

void TokenSource::read(int64_t begin, int64_t count, int32_t* out) const {
  INFINI_CHECK(begin >= 0 && count >= 0 && begin + count <= size(), "tokens [", begin, ", ",
               begin + count, ") of ", size());
  if (shard) return shard->read(begin, count, out);
  std::copy_n(ids.data() + begin, count, out);
}

TokenSource token_source_text(const std::string& path, const Tokenizer& tokenizer) {
  const std::string text = read_whole_file(path, "text file");
  TokenSource s;
  s.where = path;
  s.vocab = tokenizer.vocab_size();
  std::string_view rest = text;
  while (!rest.empty()) {
    const size_t end = text_chunk_end(rest, kEncodeBlockBytes);
    const std::vector<int32_t> ids = tokenizer.encode(rest.substr(0, end));
    s.ids.insert(s.ids.end(), ids.begin(), ids.end());
    rest.remove_prefix(end);
  }
  return s;
}

TokenSource token_source_shard(const std::string& path, std::string* tokenizer_type) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw Error(path, "no such token shard",
                "write one with `infini prepare --input FILES --out DIR` (DIR/val.tokens)");
  TokenSource s;
  s.where = path;
  s.shard = TokenShard::open(path);
  s.vocab = s.shard->vocab_size();
  if (tokenizer_type) {
    tokenizer_type->clear();
    const std::string dataset = (fs::path(path).parent_path() / "dataset.json").string();
    if (fs::exists(dataset, ec)) {
      const nlohmann::json j = json_parse_strict(read_whole_file(dataset, "file"), dataset);
      const nlohmann::json* t =
          j.is_object() && j.contains("tokenizer") ? &j.at("tokenizer") : nullptr;
      if (!t || t->is_null())
        *tokenizer_type = "byte";
      else if (t->is_string())
        *tokenizer_type = t->get<std::string>();
      else if (t->is_object() && t->contains("type") && t->at("type").is_string())
        *tokenizer_type = t->at("type").get<std::string>();
    }
  }
  return s;
}

std::unique_ptr<Tokenizer> shared_tokenizer(const std::vector<const Model*>& models,
                                            const std::vector<std::string>& dirs) {
  INFINI_CHECK(!models.empty() && models.size() == dirs.size(), models.size(), " models, ",
               dirs.size(), " directories");
  const ModelConfig& first = models[0]->config;
  const std::string first_file = tokenizer_file(*models[0], dirs[0]);
  std::unique_ptr<Tokenizer> tokenizer = tokenizer_load(first.tokenizer.type, first_file);
  if (tokenizer->vocab_size() > first.vocab_size)
    throw Error(dirs[0],
                str("its tokenizer has ", tokenizer->vocab_size(), " ids, more than vocab_size (",
                    first.vocab_size, ")"),
                "the checkpoint's tokenizer does not belong to it");
  uint64_t first_hash = 0;
  if (!first_file.empty()) {
    const std::string bytes = read_whole_file(first_file, "tokenizer model");
    first_hash = fnv1a64(bytes.data(), bytes.size());
  }
  const std::string hint =
      "models compared on one input must share a tokenizer: plot models trained on the same "
      "tokenizer, or run `infini plot nll` once per tokenizer";
  for (size_t i = 1; i < models.size(); ++i) {
    const ModelConfig& c = models[i]->config;
    if (c.tokenizer.type != first.tokenizer.type || c.vocab_size != first.vocab_size)
      throw Error(dirs[i],
                  str("uses the ", c.tokenizer.type, " tokenizer with vocab_size ", c.vocab_size,
                      ", the first model (", dirs[0], ") the ", first.tokenizer.type,
                      " tokenizer with vocab_size ", first.vocab_size),
                  hint);
    const std::string file = tokenizer_file(*models[i], dirs[i]);
    if (!file.empty()) {
      const std::string bytes = read_whole_file(file, "tokenizer model");
      if (fnv1a64(bytes.data(), bytes.size()) != first_hash)
        throw Error(file, str("differs from the first model's tokenizer (", first_file, ")"), hint);
    }
  }
  return tokenizer;
}

std::vector<int64_t> nll_window_starts(int64_t total_tokens, int64_t length, int64_t windows,
                                       const std::string& where) {
  if (length < 1) throw Error("--length", str("is ", length, ", must be >= 1"));
  if (windows < 1) throw Error("--windows", str("is ", windows, ", must be >= 1"));
  if (total_tokens < length + 1)
    throw Error(where,
                str("holds ", total_tokens, " tokens, fewer than --length + 1 = ", length + 1,
                    " (a window predicts --length tokens, each from the ones before it)"),
                "use a longer input or a smaller --length");
  const int64_t span = total_tokens - (length + 1);
  std::vector<int64_t> starts(size_t(windows), 0);
  if (windows > 1)
    for (int64_t w = 0; w < windows; ++w)
      starts[size_t(w)] = int64_t((__int128)span * w / (windows - 1));
  return starts;
}

std::vector<PositionBin> nll_position_bins(int64_t length, int64_t bins, bool log_spaced) {
  if (bins < 1) throw Error("--bins", str("is ", bins, ", must be >= 1"));
  INFINI_CHECK(length >= 1, "length ", length);
  std::vector<int64_t> edges{0};
  const int64_t K = std::min(bins, length);
  for (int64_t k = 1; k <= K; ++k) {
    int64_t e =
        log_spaced
            ? int64_t(std::ceil(std::pow(double(length + 1), double(k) / double(K)) - 1e-9)) - 1
            : int64_t((__int128)length * k / K);
    if (k == K) e = length;
    e = std::min(length, std::max(e, int64_t(0)));
    if (e > edges.back()) edges.push_back(e);
  }
  std::vector<PositionBin> out;
  for (size_t i = 0; i + 1 < edges.size(); ++i) out.push_back({edges[i], edges[i + 1]});
  return out;
}

std::vector<double> nll_bin_means(const std::vector<double>& per_position,
                                  const std::vector<PositionBin>& bins) {
  std::vector<double> means;
  for (const PositionBin& b : bins) {
    INFINI_CHECK(b.begin >= 0 && b.begin < b.end && b.end <= int64_t(per_position.size()), "bin [",
                 b.begin, ", ", b.end, ") of ", per_position.size(), " positions");
    double sum = 0;
    for (int64_t p = b.begin; p < b.end; ++p) sum += per_position[size_t(p)];
    means.push_back(sum / double(b.end - b.begin));
  }
  return means;
}

std::vector<double> nll_by_position(const Model& model, const TokenSource& tokens,
                                    const std::vector<int64_t>& starts, int64_t length,
                                    int64_t chunk_tokens, Progress* progress,
                                    int64_t progress_done) {
  const ModelConfig& c = model.config;
  const int64_t N = c.attention.segment_length, V = c.vocab_size;
  INFINI_CHECK(length >= 1 && !starts.empty(), "length ", length, ", ", starts.size(), " windows");
  if (tokens.vocab > V)
    throw Error(tokens.where,
                str("holds token ids up to ", tokens.vocab - 1, ", beyond the model's vocab_size (",
                    V, ")"),
                "tokenise the input with the model's tokenizer");
  // the chunking of `infini ppl`: whole segments, so that the numbers are those of ppl
  const int64_t chunk = N * std::max<int64_t>(1, chunk_tokens / N);
  const int64_t T = std::min(chunk, length);
  Activations act = activations_create(c, 1, T, false);
  StreamState state = stream_state_create(c, 1);
  std::vector<int32_t> window(size_t(T + 1));    // inputs [0, n), targets [1, n]
  std::vector<double> sum(size_t(length), 0.0);  // [length] nats, summed over windows
  int64_t done = progress_done;
  for (const int64_t start : starts) {
    INFINI_CHECK(start >= 0 && start + length + 1 <= tokens.size(), "window at ", start);
    stream_state_reset(state);
    for (int64_t t0 = 0; t0 < length; t0 += T) {
      const int64_t n = std::min(T, length - t0);
      tokens.read(start + t0, n + 1, window.data());
      model_forward(model, state, act, window.data(), n);
      model_loss(act, window.data() + 1, n, V);
      for (int64_t i = 0; i < n; ++i) sum[size_t(t0 + i)] += double(act.losses[i]);
      done += n;
      if (progress) progress->update(done);
    }
  }
  for (double& s : sum) s /= double(starts.size());
  return sum;
}

void nll_curve_finish(NllCurve& curve, const std::vector<PositionBin>& bins) {
  curve.bin_nll = nll_bin_means(curve.per_position, bins);
  double total = 0;
  for (const double x : curve.per_position) total += x;
  curve.mean_nll = curve.per_position.empty() ? 0 : total / double(curve.per_position.size());
}

namespace {

std::string bin_text(const PositionBin& b) {
  return b.end - b.begin == 1 ? std::to_string(b.begin) : str(b.begin, "-", b.end - 1);
}

std::string unit_name(bool bits) {
  return bits ? "bits/token" : "nats/token";
}

// "1 window", "3 windows"
std::string count_of(int64_t n, const char* noun) {
  return str(n, " ", noun, n == 1 ? "" : "s");
}

// "2 windows of 1024 tokens from FILE"
std::string windows_text(const NllPlot& plot, const std::string& input) {
  return count_of(plot.windows, "window") + " of " + count_of(plot.length, "token") + " from " +
         input;
}

}  // namespace

std::string nll_markdown(const NllPlot& plot) {
  INFINI_CHECK(!plot.bins.empty(), "no bins");
  const double scale = plot.bits ? 1 / std::log(2.0) : 1;
  std::string out = "mean NLL (" + unit_name(plot.bits) +
                    ") by position: " + windows_text(plot, plot.input) + ", " +
                    count_of(int64_t(plot.bins.size()), "bin") +
                    (plot.log_x ? " (log-spaced)" : "") + "\n\n";
  out += "| model | type | first bin (" + bin_text(plot.bins.front()) + ") | last bin (" +
         bin_text(plot.bins.back()) + ") | mean |\n";
  out += "|:---|:---|---:|---:|---:|\n";
  for (const NllCurve& c : plot.curves)
    out += "| " + c.model + " | " + c.type + " | " + fixed(c.bin_nll.front() * scale, 6) + " | " +
           fixed(c.bin_nll.back() * scale, 6) + " | " + fixed(c.mean_nll * scale, 6) + " |\n";
  return out;
}

std::string nll_csv(const NllPlot& plot) {
  std::string out = "bin_start,bin_end,model,mean_nll\n";
  for (const NllCurve& c : plot.curves)
    for (size_t k = 0; k < plot.bins.size(); ++k)
      out += str(plot.bins[k].begin, ",", plot.bins[k].end - 1, ",", csv_field(c.model), ",",
                 fixed(c.bin_nll[k], 9), "\n");
  return out;
}

nlohmann::json nll_json(const NllPlot& plot) {
  nlohmann::json bins = nlohmann::json::array(), models = nlohmann::json::array();
  for (const PositionBin& b : plot.bins) bins.push_back({{"start", b.begin}, {"end", b.end - 1}});
  for (const NllCurve& c : plot.curves)
    models.push_back({{"model", c.model},
                      {"type", c.type},
                      {"label", c.label()},
                      {"mean_nll", c.mean_nll},
                      {"first_bin_nll", c.bin_nll.front()},
                      {"last_bin_nll", c.bin_nll.back()},
                      {"bin_nll", c.bin_nll}});
  return {{"input", plot.input},   {"length", plot.length}, {"windows", plot.windows},
          {"starts", plot.starts}, {"log_x", plot.log_x},   {"unit", "nats"},
          {"bins", bins},          {"models", models}};
}

std::string nll_svg(const NllPlot& plot) {
  const double scale = plot.bits ? 1 / std::log(2.0) : 1;
  LineChart chart;
  chart.title = "NLL by position in the stream";
  chart.subtitle = windows_text(plot, fs::path(plot.input).filename().string()) +
                   ", fresh state per window, mean over " +
                   count_of(int64_t(plot.bins.size()), "bin") + " of positions";
  chart.x_title = plot.log_x ? "position + 1 in the stream (tokens, log scale)"
                             : "position in the stream (tokens)";
  chart.y_title = "mean NLL (" + unit_name(plot.bits) + ")";
  chart.log_x = plot.log_x;
  chart.x_min = plot.log_x ? 1 : 0;  // the whole window: positions 0 .. length - 1
  chart.x_max = double(plot.length);
  for (const NllCurve& c : plot.curves) {
    ChartSeries s;
    s.name = c.label();
    for (size_t k = 0; k < plot.bins.size(); ++k) {
      const PositionBin& b = plot.bins[k];
      // the bin's middle: arithmetic in position, geometric in position + 1 on a log axis
      s.x.push_back(plot.log_x ? std::sqrt(double(b.begin + 1) * double(b.end))
                               : 0.5 * double(b.begin + b.end - 1));
      s.y.push_back(c.bin_nll[k] * scale);
    }
    chart.series.push_back(std::move(s));
  }
  return line_chart_svg(chart);
}

}  // namespace infini
