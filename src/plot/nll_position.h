// NLL by position in the stream (issue 7; the Infini-attention paper's long-context curves): how
// well a model predicts a token as a function of how far into a stream it is. A model that uses
// its memory (or cache) predicts later tokens better; a model that forgets plateaus.
//
// For each model: W windows of N + 1 consecutive tokens, their start offsets spread evenly over
// the input (window w of W > 1 starts at floor(w (T - N - 1) / (W - 1)) of T tokens; W = 1
// starts at 0), each streamed from a fresh state through model_forward in chunks of whole
// segments, exactly as `infini ppl` does. The NLL at position p (0 <= p < N) is the loss of
// predicting token p + 1 of the window from tokens 0..p (line p + 1 of `infini ppl --per-token`
// on the window's N + 1 tokens), averaged over the W windows; then averaged within K bins of
// positions, linear (bin k = [floor(k N / K), floor((k + 1) N / K))) or log-spaced in position+1.
//
// Reports: markdown (per model: first bin, last bin, overall mean), CSV, JSON and an SVG line
// chart with one line per model. Text is tokenised once with the first model's tokenizer; every
// model must share it (type, vocab_size and, for SentencePiece, the same .model bytes).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/progress.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "model/model.h"

namespace infini {

// The token stream windows are read from: a text file's tokens in memory (4 bytes per token), or
// a token shard of `infini prepare` (memory-mapped).
struct TokenSource {
  std::string where;                // the file, for errors
  std::vector<int32_t> ids;         // text input
  std::optional<TokenShard> shard;  // shard input
  int64_t vocab = 0;                // every id is < vocab

  int64_t size() const { return shard ? shard->size() : int64_t(ids.size()); }
  void read(int64_t begin, int64_t count, int32_t* out) const;  // tokens [begin, begin + count)
};

// A text file tokenised with `tokenizer` (in pieces of about 1 MiB cut where the tokenizer allows,
// text_chunk_end, so the ids equal one encode of the whole text).
TokenSource token_source_text(const std::string& path, const Tokenizer& tokenizer);
// A token shard; when a dataset.json sits next to it, the tokenizer type it names is kept in
// `tokenizer_type` ("" when there is none) so that it can be checked against the models.
TokenSource token_source_shard(const std::string& path, std::string* tokenizer_type);

// The tokenizer every model shares: models[0]'s, after checking that each other model has the same
// tokenizer type, vocab_size and (SentencePiece) .model bytes. dirs[i] is models[i]'s checkpoint
// directory (the .model file is relative to it); errors name the model that differs.
std::unique_ptr<Tokenizer> shared_tokenizer(const std::vector<const Model*>& models,
                                            const std::vector<std::string>& dirs);

// Start offsets of `windows` windows of length + 1 tokens over total_tokens tokens (rule above).
// Throws (naming `where`) when total_tokens < length + 1.
std::vector<int64_t> nll_window_starts(int64_t total_tokens, int64_t length, int64_t windows,
                                       const std::string& where);

struct PositionBin {
  int64_t begin = 0, end = 0;  // positions [begin, end)
};
// Up to `bins` bins covering positions [0, length) in order, none empty: linear as above (bins
// above length are clamped to length), or log-spaced: edges ceil((length + 1)^(k / bins)) - 1,
// repeated edges dropped (so fewer bins near position 0 when length is small).
std::vector<PositionBin> nll_position_bins(int64_t length, int64_t bins, bool log_spaced);

// The mean of per_position over each bin.
std::vector<double> nll_bin_means(const std::vector<double>& per_position,
                                  const std::vector<PositionBin>& bins);

// NLL (nats) [length] at each position, averaged over the windows starting at `starts` (each of
// length + 1 tokens, from a fresh state). chunk_tokens: tokens per model_forward, rounded down to
// whole segments (at least one), as `infini ppl --chunk`. progress (may be null) is advanced by
// one per predicted token, from progress_done.
std::vector<double> nll_by_position(const Model& model, const TokenSource& tokens,
                                    const std::vector<int64_t>& starts, int64_t length,
                                    int64_t chunk_tokens, Progress* progress = nullptr,
                                    int64_t progress_done = 0);

struct NllCurve {
  std::string model;                 // the checkpoint directory, as given
  std::string type;                  // attention.type
  std::vector<double> per_position;  // [length] nats
  std::vector<double> bin_nll;       // [bins] nats
  double mean_nll = 0;               // over every position and window, nats
  std::string label() const { return model + " (" + type + ")"; }
};

struct NllPlot {
  std::string input;  // the text or shard file
  int64_t length = 0, windows = 0;
  std::vector<int64_t> starts;
  std::vector<PositionBin> bins;
  bool log_x = false;
  bool bits = false;  // the figure and the markdown table in bits per token (CSV, JSON: nats)
  std::vector<NllCurve> curves;
};

// Fills curve.bin_nll and curve.mean_nll from curve.per_position and the plot's bins.
void nll_curve_finish(NllCurve& curve, const std::vector<PositionBin>& bins);

std::string nll_markdown(const NllPlot& plot);
// bin_start,bin_end,model,mean_nll rows (bin_end inclusive; nats; model = the checkpoint
// directory, quoted when it holds a comma or a quote).
std::string nll_csv(const NllPlot& plot);
nlohmann::json nll_json(const NllPlot& plot);
std::string nll_svg(const NllPlot& plot);

}  // namespace infini
