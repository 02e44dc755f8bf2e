// `infini plot nll` as a user runs it: the curve's numbers against `infini ppl --per-token` and
// against perplexity_stream's per-token NLLs of each window computed separately (window offsets,
// averaging over windows, the positions each bin averages, linear and log bins), text and token
// shard inputs giving the same numbers, the SVG (well-formed, one line per model, axis titles,
// legend, points in the order of the values), the markdown and CSV outputs, and clear refusals of
// bad input (too short, mismatched tokenizers, missing files, bad flags).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "infer/perplexity.h"
#include "plot/plot_test_util.h"
#include "reference_case.h"

namespace infini {
namespace {

namespace fs = std::filesystem;

nlohmann::json json_of(const test::CommandResult& r) {
  const size_t brace = r.output.find('{');
  if (r.exit_code != 0 || brace == std::string::npos) return {};
  return nlohmann::json::parse(r.output.substr(brace, r.output.rfind('}') - brace + 1));
}

test::CommandResult plot_nll(const std::string& args) {
  return test::run_command(test::cli() + " plot nll " + args);
}

// perplexity_stream's per-token NLLs of the bytes `text` (the existing streaming code, run
// separately from `infini plot`).
std::vector<double> per_token_nll(const Model& model, const std::string& text) {
  std::istringstream in(text);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::tmpfile(), std::fclose);
  EXPECT_TRUE(file != nullptr);
  perplexity_stream(model, in, file.get(), nullptr, 4096);
  std::rewind(file.get());
  std::vector<double> out;
  double x;
  while (std::fscanf(file.get(), "%lf", &x) == 1) out.push_back(x);
  return out;
}

double mean_of(const std::vector<double>& v, int64_t begin, int64_t end) {
  double s = 0;
  for (int64_t i = begin; i < end; ++i) s += v[size_t(i)];
  return s / double(end - begin);
}

// bin_start,bin_end,model,mean_nll rows of a CSV file (after its header).
struct CsvRow {
  int64_t start, end;
  std::string model;
  double nll;
};
std::vector<CsvRow> read_csv(const std::string& path) {
  std::istringstream in(test::read_bytes(path));
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "bin_start,bin_end,model,mean_nll");
  std::vector<CsvRow> rows;
  while (std::getline(in, line)) {
    CsvRow r;
    const size_t a = line.find(','), b = line.find(',', a + 1), c = line.rfind(',');
    r.start = std::stoll(line.substr(0, a));
    r.end = std::stoll(line.substr(a + 1, b - a - 1));
    r.model = line.substr(b + 1, c - b - 1);
    r.nll = std::stod(line.substr(c + 1));
    rows.push_back(r);
  }
  return rows;
}

class PlotNll : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::scratch_dir("plot_nll");
    model_dir_ = dir_ + "/m";
    model_save(test::sharp_model(test::tiny_config(), 5), model_dir_);
    text_ = test::plot_text(2000, 7);
    write_file_atomic(dir_ + "/text.txt", text_);
  }
  std::string dir_, model_dir_, text_;
};

TEST_F(PlotNll, OneWindowMeanIsTheMeanOfPplPerToken) {
  const int64_t N = 150;  // two full segments of 64 and a partial one
  write_file_atomic(dir_ + "/window.txt", text_.substr(0, N + 1));
  const auto ppl = test::run_command(test::cli() + " ppl --model " + model_dir_ + " --input " +
                                     dir_ + "/window.txt --per-token " + dir_ + "/pt.txt");
  ASSERT_EQ(ppl.exit_code, 0) << ppl.output;
  const std::vector<double> pt = test::read_numbers(dir_ + "/pt.txt");
  ASSERT_EQ(pt.size(), size_t(N));
  EXPECT_GT(*std::max_element(pt.begin(), pt.end()) - *std::min_element(pt.begin(), pt.end()), 1)
      << "per-token NLLs should vary, or the comparison proves little";

  // --chunk 64: one segment per forward pass, where ppl ran the 150 tokens at once
  const auto r = plot_nll("--model " + model_dir_ + " --text " + dir_ + "/text.txt --length " +
                          std::to_string(N) + " --bins 7 --chunk 64 --json --out " + dir_ +
                          "/a.svg --csv " + dir_ + "/a.csv");
  const nlohmann::json j = json_of(r);
  ASSERT_FALSE(j.is_null()) << r.output;
  EXPECT_EQ(j["starts"], nlohmann::json::array({0}));
  ASSERT_EQ(j["models"].size(), 1u);
  EXPECT_NEAR(j["models"][0]["mean_nll"].get<double>(), mean_of(pt, 0, N), 1e-5);

  // linear bins of 150 positions into 7: edges floor(150 k / 7)
  const int64_t edges[] = {0, 21, 42, 64, 85, 107, 128, 150};
  const std::vector<CsvRow> rows = read_csv(dir_ + "/a.csv");
  ASSERT_EQ(rows.size(), 7u);
  for (size_t k = 0; k < 7; ++k) {
    EXPECT_EQ(rows[k].start, edges[k]);
    EXPECT_EQ(rows[k].end, edges[k + 1] - 1);
    EXPECT_EQ(rows[k].model, model_dir_);
    EXPECT_NEAR(rows[k].nll, mean_of(pt, edges[k], edges[k + 1]), 1e-5) << "bin " << k;
    EXPECT_NEAR(j["models"][0]["bin_nll"][k].get<double>(), rows[k].nll, 1e-8);
  }
  EXPECT_NEAR(j["models"][0]["first_bin_nll"].get<double>(), rows.front().nll, 1e-8);
  EXPECT_NEAR(j["models"][0]["last_bin_nll"].get<double>(), rows.back().nll, 1e-8);
}

TEST_F(PlotNll, WindowsAreSpreadEvenlyAndBinsAverageTheirPositions) {
  const Model model = model_load(model_dir_);
  const int64_t N = 200, W = 3, T = int64_t(text_.size());
  // window w starts at floor(w (T - N - 1) / (W - 1)): 0, 899, 1799
  const std::vector<int64_t> starts = {0, (T - N - 1) / 2, T - N - 1};
  std::vector<double> expected(size_t(N), 0.0);  // per position, averaged over the windows
  for (const int64_t s : starts) {
    const std::vector<double> pt = per_token_nll(model, text_.substr(size_t(s), size_t(N + 1)));
    ASSERT_EQ(pt.size(), size_t(N));
    for (int64_t p = 0; p < N; ++p) expected[size_t(p)] += pt[size_t(p)] / double(W);
  }

  for (const bool log_x : {false, true}) {
    SCOPED_TRACE(log_x ? "log-spaced bins" : "linear bins");
    const auto r = plot_nll("--model " + model_dir_ + " --text " + dir_ + "/text.txt --length " +
                            std::to_string(N) + " --windows 3 --bins 9 --json --out " + dir_ +
                            "/b.svg" + (log_x ? " --log-x" : ""));
    const nlohmann::json j = json_of(r);
    ASSERT_FALSE(j.is_null()) << r.output;
    EXPECT_EQ(j["starts"], nlohmann::json(starts));
    EXPECT_NEAR(j["models"][0]["mean_nll"].get<double>(), mean_of(expected, 0, N), 1e-5);
    const nlohmann::json& bins = j["bins"];
    const nlohmann::json& nll = j["models"][0]["bin_nll"];
    ASSERT_EQ(bins.size(), nll.size());
    ASSERT_GE(bins.size(), log_x ? 5u : 9u);
    int64_t next = 0;  // bins tile positions 0 .. N - 1 in order
    for (size_t k = 0; k < bins.size(); ++k) {
      const int64_t b = bins[k]["start"], e = bins[k]["end"];
      EXPECT_EQ(b, next);
      EXPECT_GE(e, b);
      next = e + 1;
      EXPECT_NEAR(nll[k].get<double>(), mean_of(expected, b, e + 1), 1e-5) << "bin " << k;
      if (log_x && k > 0) {  // log-spaced: each bin at least as wide as the one before
        EXPECT_GE(e - b, int64_t(bins[k - 1]["end"]) - int64_t(bins[k - 1]["start"]));
      }
      if (!log_x) {
        EXPECT_EQ(b, N * int64_t(k) / 9);
      }
    }
    EXPECT_EQ(next, N);
    if (log_x) {
      EXPECT_EQ(bins[0]["end"], 0);  // position 0 alone: (N + 1)^(1/9) < 2
    }

    // the figure: one line whose points go left to right, higher NLL drawn higher (smaller y)
    const test::SvgSummary s = test::svg_summary(test::read_bytes(dir_ + "/b.svg"));
    ASSERT_TRUE(s.well_formed) << s.problem;
    ASSERT_EQ(s.polylines.size(), 1u);
    const auto& points = s.polylines[0];
    ASSERT_EQ(points.size(), nll.size());
    for (size_t k = 1; k < points.size(); ++k) EXPECT_GT(points[k].first, points[k - 1].first);
    for (size_t a = 0; a < points.size(); ++a)
      for (size_t b = 0; b < points.size(); ++b)
        if (nll[a].get<double>() > nll[b].get<double>() + 1e-3) {
          EXPECT_LT(points[a].second, points[b].second) << a << " vs " << b;
        }
    EXPECT_TRUE(test::svg_has_text(s, log_x ? "position + 1 in the stream (tokens, log scale)"
                                            : "position in the stream (tokens)"));
  }
}

TEST_F(PlotNll, TwoModelsTwoLinesLegendTableAndCsv) {
  ModelConfig xl = test::tiny_config();
  xl.attention.type = "xl";
  model_save(test::sharp_model(xl, 6), dir_ + "/xl");
  const std::string args = "--model " + model_dir_ + " --model " + dir_ + "/xl/ --text " + dir_ +
                           "/text.txt --length 256 --windows 2 --bins 16 --out " + dir_ +
                           "/two.svg --csv " + dir_ + "/two.csv";
  const nlohmann::json j = json_of(plot_nll(args + " --json"));
  ASSERT_FALSE(j.is_null());
  const auto r = plot_nll(args + " --bits");  // its figure is the one checked below
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(j["models"].size(), 2u);
  EXPECT_EQ(j["models"][0]["type"], "infini");
  EXPECT_EQ(j["models"][1]["type"], "xl");
  EXPECT_EQ(j["models"][1]["model"], dir_ + "/xl");  // the trailing slash dropped
  EXPECT_NE(j["models"][0]["mean_nll"], j["models"][1]["mean_nll"]);

  // markdown in bits per token: nats / ln 2
  EXPECT_NE(r.output.find("| model | type | first bin (0-15) | last bin (240-255) | mean |"),
            std::string::npos)
      << r.output;
  for (size_t m = 0; m < 2; ++m) {
    const nlohmann::json& model = j["models"][m];
    const std::string prefix =
        "| " + model["model"].get<std::string>() + " | " + model["type"].get<std::string>() + " | ";
    const size_t at = r.output.find(prefix);
    ASSERT_NE(at, std::string::npos) << prefix << "\n" << r.output;
    double first, last, mean;
    ASSERT_EQ(
        std::sscanf(r.output.c_str() + at + prefix.size(), "%lf | %lf | %lf", &first, &last, &mean),
        3);
    EXPECT_NEAR(first, model["first_bin_nll"].get<double>() / std::log(2.0), 2e-6);
    EXPECT_NEAR(last, model["last_bin_nll"].get<double>() / std::log(2.0), 2e-6);
    EXPECT_NEAR(mean, model["mean_nll"].get<double>() / std::log(2.0), 2e-6);
  }

  // CSV: 16 bins per model, in nats
  const std::vector<CsvRow> rows = read_csv(dir_ + "/two.csv");
  ASSERT_EQ(rows.size(), 32u);
  for (size_t k = 0; k < 32; ++k) {
    EXPECT_EQ(rows[k].model, j["models"][k / 16]["model"]);
    EXPECT_EQ(rows[k].start, int64_t(k % 16) * 16);
    EXPECT_EQ(rows[k].end, int64_t(k % 16) * 16 + 15);
    EXPECT_NEAR(rows[k].nll, j["models"][k / 16]["bin_nll"][k % 16].get<double>(), 1e-8);
  }

  // SVG: one polyline per model, axis titles, title, legend "dir (type)"
  const test::SvgSummary s = test::svg_summary(test::read_bytes(dir_ + "/two.svg"));
  ASSERT_TRUE(s.well_formed) << s.problem;
  EXPECT_EQ(s.polylines.size(), 2u);
  for (const auto& line : s.polylines) EXPECT_EQ(line.size(), 16u);
  EXPECT_TRUE(test::svg_has_text(s, "NLL by position in the stream"));
  EXPECT_TRUE(test::svg_has_text(s, "position in the stream (tokens)"));
  EXPECT_TRUE(test::svg_has_text(s, "mean NLL (bits/token)"));
  EXPECT_TRUE(test::svg_has_text(s, model_dir_ + " (infini)"));
  EXPECT_TRUE(test::svg_has_text(s, dir_ + "/xl (xl)"));
  EXPECT_TRUE(test::svg_has_text(s, "0")) << "x tick labels";
}

TEST_F(PlotNll, TokenShardGivesTheNumbersOfTheText) {
  std::vector<int32_t> ids(text_.begin(), text_.end());
  for (int32_t& id : ids) id &= 0xff;
  fs::create_directories(dir_ + "/data");
  token_shard_write(dir_ + "/data/val.tokens", ids, 256);
  const std::string common = "--model " + model_dir_ + " --length 300 --windows 4 --bins 10 " +
                             "--json --out " + dir_ + "/c.svg ";
  const nlohmann::json a = json_of(plot_nll(common + "--text " + dir_ + "/text.txt"));
  const nlohmann::json b = json_of(plot_nll(common + "--tokens " + dir_ + "/data/val.tokens"));
  ASSERT_FALSE(a.is_null());
  ASSERT_FALSE(b.is_null());
  EXPECT_EQ(a["starts"], b["starts"]);
  EXPECT_EQ(a["models"][0]["bin_nll"], b["models"][0]["bin_nll"]);  // bit for bit
  EXPECT_EQ(a["models"][0]["mean_nll"], b["models"][0]["mean_nll"]);

  // a dataset.json that names another tokenizer is refused
  write_file_atomic(dir_ + "/data/dataset.json",
                    R"({"tokenizer": {"type": "sentencepiece", "model_file": "tokenizer.model"}})");
  const auto r = plot_nll(common + "--tokens " + dir_ + "/data/val.tokens");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("prepared with the sentencepiece tokenizer"), std::string::npos)
      << r.output;
}

TEST_F(PlotNll, BadInputGetsAClearMessageAndNonZeroExit) {
  ModelConfig wide = test::tiny_config();
  wide.vocab_size = 300;  // still bytes, but another vocabulary
  model_save(test::sharp_model(wide, 2), dir_ + "/wide");
  write_file_atomic(dir_ + "/short.txt", text_.substr(0, 100));
  const std::string out = " --out " + dir_ + "/e.svg";
  // exactly length + 1 tokens is enough
  const auto fits =
      plot_nll("--model " + model_dir_ + " --text " + dir_ + "/short.txt --length 99" + out);
  EXPECT_EQ(fits.exit_code, 0) << fits.output;
  struct Case {
    std::string args, expected;
  } cases[] = {
      {"--model " + model_dir_ + " --text " + dir_ + "/short.txt --length 100", "fewer than"},
      {"--model " + model_dir_ + " --model " + dir_ + "/wide --text " + dir_ +
           "/text.txt --length 10",
       "vocab_size 300"},
      {"--model " + model_dir_ + " --text " + dir_ + "/no_such.txt --length 10", "no_such.txt"},
      {"--model " + dir_ + "/no_model --text " + dir_ + "/text.txt --length 10", "no_model"},
      {"--model " + model_dir_ + " --tokens " + dir_ + "/no_such.tokens --length 10",
       "no_such.tokens"},
      {"--model " + model_dir_ + " --text " + dir_ + "/text.txt --tokens " + dir_ +
           "/x.tokens --length 10",
       "exactly one input"},
      {"--model " + model_dir_ + " --length 10", "exactly one input"},
      {"--model " + model_dir_ + " --text " + dir_ + "/text.txt --length ten", "--length"},
      {"--model " + model_dir_ + " --text " + dir_ + "/text.txt --length 10 --windows 0",
       "--windows"},
      {"--model " + model_dir_ + " --text " + dir_ + "/text.txt --length 10 --bins 0", "--bins"},
  };
  for (const Case& c : cases) {
    const auto r = plot_nll(c.args + out);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
  }
}

TEST_F(PlotNll, SentencePieceModelsMustShareTheirTokenizer) {
  // two SentencePiece vocabularies of the same size trained on different text
  write_file_atomic(dir_ + "/corpus_a.txt", test::plot_text(30000, 1));
  write_file_atomic(dir_ + "/corpus_b.txt", test::plot_text(30000, 2) + "zebra quiz jog vex ");
  sentencepiece_train({dir_ + "/corpus_a.txt"}, dir_ + "/tok_a", 300);
  sentencepiece_train({dir_ + "/corpus_b.txt"}, dir_ + "/tok_b", 300);
  ASSERT_NE(test::read_bytes(dir_ + "/tok_a.model"), test::read_bytes(dir_ + "/tok_b.model"));
  ModelConfig c = test::tiny_config();
  c.vocab_size = 300;
  c.tokenizer.type = "sentencepiece";
  c.tokenizer.model_file = "tokenizer.model";
  const std::pair<const char*, const char*> models[] = {
      {"sp_a", "tok_a"}, {"sp_a2", "tok_a"}, {"sp_b", "tok_b"}};
  uint64_t seed = 10;
  for (const auto& [name, tok] : models) {
    model_save(test::sharp_model(c, seed++), dir_ + "/" + name);
    fs::copy_file(dir_ + "/" + tok + ".model", dir_ + "/" + name + "/tokenizer.model");
  }
  const std::string tail =
      " --text " + dir_ + "/text.txt --length 64 --windows 2 --out " + dir_ + "/sp.svg --json";
  const nlohmann::json ok =
      json_of(plot_nll("--model " + dir_ + "/sp_a --model " + dir_ + "/sp_a2" + tail));
  ASSERT_FALSE(ok.is_null());
  EXPECT_EQ(ok["models"].size(), 2u);
  // the text is read as SentencePiece tokens: fewer tokens than bytes, so the last window starts
  // before the last byte window would
  const std::unique_ptr<Tokenizer> sp = sentencepiece_tokenizer(dir_ + "/tok_a.model");
  const int64_t tokens = int64_t(sp->encode(text_).size());
  EXPECT_LT(tokens, int64_t(text_.size()));
  EXPECT_EQ(ok["starts"], nlohmann::json::array({0, tokens - 65}));

  const auto differs = plot_nll("--model " + dir_ + "/sp_a --model " + dir_ + "/sp_b" + tail);
  EXPECT_NE(differs.exit_code, 0);
  EXPECT_NE(differs.output.find("differs from the first model's tokenizer"), std::string::npos)
      << differs.output;
  const auto bytes = plot_nll("--model " + dir_ + "/sp_a --model " + model_dir_ + tail);
  EXPECT_NE(bytes.exit_code, 0);
  EXPECT_NE(bytes.output.find("uses the byte tokenizer"), std::string::npos) << bytes.output;
}

TEST_F(PlotNll, OddDirectoryNamesAreEscapedInTheSvgAndQuotedInTheCsv) {
  const std::string odd = dir_ + "/a,b & <c>";
  fs::create_directories(odd);
  fs::copy(model_dir_, odd, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  const auto r = plot_nll("--model \"" + odd + "\" --text " + dir_ + "/text.txt --length 64 " +
                          "--bins 4 --out " + dir_ + "/odd.svg --csv " + dir_ + "/odd.csv");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const test::SvgSummary s = test::svg_summary(test::read_bytes(dir_ + "/odd.svg"));
  ASSERT_TRUE(s.well_formed) << s.problem;
  EXPECT_TRUE(test::svg_has_text(s, dir_ + "/a,b &amp; &lt;c&gt; (infini)"));
  const std::string csv = test::read_bytes(dir_ + "/odd.csv");
  EXPECT_NE(csv.find("\n0,15,\"" + odd + "\","), std::string::npos) << csv;
}

}  // namespace
}  // namespace infini
