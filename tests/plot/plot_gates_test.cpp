// `infini plot gates` as a user runs it: a checkpoint with known memory gates beta (written here
// from configs/infini-tiny.json), the printed and JSON sigmoid(beta) against the formula in double
// precision, the classes at the thresholds, the per-layer summary, the heatmap's content and
// layout, and clear refusals (a model without gates, bad thresholds, a missing checkpoint).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "plot/plot_test_util.h"

namespace infini {
namespace {

namespace fs = std::filesystem;

// beta per layer x head of the tiny config (2 layers x 4 heads)
const float kBetas[2][4] = {{-3.0f, 2.5f, 0.1f, -0.5f}, {1.2f, 0.0f, 3.0f, -0.4f}};

double sigmoid(double beta) {
  return 1 / (1 + std::exp(-beta));
}

std::string expected_class(double g, double local_below, double memory_above) {
  return g < local_below ? "local" : g > memory_above ? "memory" : "mixer";
}

std::string write_gated_model(const std::string& dir, const float (*betas)[4]) {
  const ModelConfig config = test::tiny_config();
  EXPECT_EQ(config.num_hidden_layers, 2);
  EXPECT_EQ(config.num_attention_heads, 4);
  Model model = model_create(config);
  model_init_random(model, 3);
  for (int l = 0; l < 2; ++l)
    for (int h = 0; h < 4; ++h) model.weights.layers[size_t(l)].memory_gate[h] = betas[l][h];
  model_save(model, dir);
  return dir;
}

nlohmann::json run_json(const std::string& args) {
  const auto r = test::run_command(test::cli() + " plot gates " + args + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const size_t brace = r.output.find('{');
  if (r.exit_code != 0 || brace == std::string::npos) return {};
  // stderr's "wrote ..." line comes after the JSON (or before it): cut at the outer braces
  return nlohmann::json::parse(r.output.substr(brace, r.output.rfind('}') - brace + 1));
}

TEST(PlotGates, JsonGivesSigmoidOfTheStoredBetasAndTheirClasses) {
  const std::string dir = test::scratch_dir("plot_gates_json");
  const std::string model = write_gated_model(dir + "/m", kBetas);
  const nlohmann::json j = run_json("--model " + model + " --out " + dir + "/g.svg");
  ASSERT_FALSE(j.is_null());
  EXPECT_EQ(j["layers"], 2);
  EXPECT_EQ(j["heads"], 4);
  EXPECT_EQ(j["local_below"], 0.25);
  EXPECT_EQ(j["memory_above"], 0.75);
  ASSERT_EQ(j["gates"].size(), 8u);
  for (int l = 0; l < 2; ++l)
    for (int h = 0; h < 4; ++h) {
      const nlohmann::json& g = j["gates"][size_t(l * 4 + h)];
      EXPECT_EQ(g["layer"], l);
      EXPECT_EQ(g["head"], h);
      EXPECT_EQ(g["beta"].get<double>(), double(kBetas[l][h]));  // the float stored, exactly
      const double want = sigmoid(double(kBetas[l][h]));
      EXPECT_NEAR(g["sigmoid_beta"].get<double>(), want, 1e-14) << l << "," << h;
      EXPECT_EQ(g["class"], expected_class(want, 0.25, 0.75)) << l << "," << h;
    }
  // layer 0: -3 -> 0.047 local, 2.5 -> 0.924 memory, 0.1 -> 0.525 and -0.5 -> 0.378 mixers;
  // layer 1: 1.2 -> 0.769 and 3 -> 0.953 memory, 0 -> 0.5 and -0.4 -> 0.401 mixers, no local head
  const nlohmann::json& per_layer = j["per_layer"];
  ASSERT_EQ(per_layer.size(), 2u);
  EXPECT_EQ(per_layer[0]["local"], 1);
  EXPECT_EQ(per_layer[0]["memory"], 1);
  EXPECT_EQ(per_layer[0]["mixer"], 2);
  EXPECT_EQ(per_layer[0]["keeps_local_head"], true);
  EXPECT_EQ(per_layer[1]["local"], 0);
  EXPECT_EQ(per_layer[1]["memory"], 2);
  EXPECT_EQ(per_layer[1]["mixer"], 2);
  EXPECT_EQ(per_layer[1]["keeps_local_head"], false);
  EXPECT_EQ(j["layers_keeping_local_head"], 1);
}

TEST(PlotGates, MarkdownTableAndPerLayerSummary) {
  const std::string dir = test::scratch_dir("plot_gates_markdown");
  const std::string model = write_gated_model(dir + "/m", kBetas);
  const auto r =
      test::run_command(test::cli() + " plot gates --model " + model + " --out " + dir + "/g.svg");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* row :
       {"| layer | head | beta | sigmoid(beta) | class |", "| 0 | 0 | -3.0000 | 0.0474 | local |",
        "| 0 | 1 | 2.5000 | 0.9241 | memory |", "| 0 | 2 | 0.1000 | 0.5250 | mixer |",
        "| 0 | 3 | -0.5000 | 0.3775 | mixer |", "| 1 | 0 | 1.2000 | 0.7685 | memory |",
        "| 1 | 1 | 0.0000 | 0.5000 | mixer |", "| 1 | 2 | 3.0000 | 0.9526 | memory |",
        "| 1 | 3 | -0.4000 | 0.4013 | mixer |",
        "layer 0: 1 local, 1 memory, 2 mixer; keeps a local head: yes",
        "layer 1: 0 local, 2 memory, 2 mixer; keeps a local head: no",
        "1 of 2 layers keep at least one local head\n"})
    EXPECT_NE(r.output.find(row), std::string::npos) << row << "\n" << r.output;
}

TEST(PlotGates, ThresholdsAreStrict) {
  const std::string dir = test::scratch_dir("plot_gates_thresholds");
  const std::string model = write_gated_model(dir + "/m", kBetas);
  // at 0.5 / 0.5: a gate of exactly 0.5 (beta 0) is neither below nor above: a mixer
  const nlohmann::json j = run_json("--model " + model + " --out " + dir +
                                    "/g.svg --local-below 0.5 --memory-above 0.5");
  ASSERT_FALSE(j.is_null());
  for (int l = 0; l < 2; ++l)
    for (int h = 0; h < 4; ++h)
      EXPECT_EQ(j["gates"][size_t(l * 4 + h)]["class"],
                expected_class(sigmoid(kBetas[l][h]), 0.5, 0.5));
  EXPECT_EQ(j["gates"][5]["class"], "mixer");              // layer 1 head 1, beta 0
  EXPECT_EQ(j["gates"][3]["class"], "local");              // 0.378
  EXPECT_EQ(j["gates"][2]["class"], "memory");             // 0.525
  EXPECT_EQ(j["per_layer"][1]["keeps_local_head"], true);  // 0.401 is local now
}

TEST(PlotGates, ExtremeBetasDoNotOverflow) {
  const std::string dir = test::scratch_dir("plot_gates_extreme");
  const float betas[2][4] = {{-100.0f, 100.0f, -30.0f, 30.0f}, {-0.0f, 1e-3f, -1e-3f, 88.0f}};
  const std::string model = write_gated_model(dir + "/m", betas);
  const nlohmann::json j = run_json("--model " + model + " --out " + dir + "/g.svg");
  ASSERT_FALSE(j.is_null());
  for (int l = 0; l < 2; ++l)
    for (int h = 0; h < 4; ++h) {
      const double beta = betas[l][h];
      const double want = beta < 0 ? std::exp(beta) / (1 + std::exp(beta)) : sigmoid(beta);
      const double got = j["gates"][size_t(l * 4 + h)]["sigmoid_beta"].get<double>();
      EXPECT_NEAR(got, want, 1e-13 * want) << beta;  // relative: 3.7e-44 too
    }
}

TEST(PlotGates, HeatmapShowsEveryCellInItsPlace) {
  const std::string dir = test::scratch_dir("plot_gates_svg");
  const std::string model = write_gated_model(dir + "/m", kBetas);
  const auto r =
      test::run_command(test::cli() + " plot gates --model " + model + " --out " + dir + "/g.svg");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const test::SvgSummary s = test::svg_summary(test::read_bytes(dir + "/g.svg"));
  ASSERT_TRUE(s.well_formed) << s.problem;
  // title, axis titles, colour bar and its labels
  EXPECT_TRUE(test::svg_has_text(s, "Memory gates sigmoid(beta) per layer and head"));
  EXPECT_TRUE(test::svg_has_text(s, "layer"));
  EXPECT_TRUE(test::svg_has_text(s, "head"));
  EXPECT_TRUE(test::svg_has_text(s, "sigmoid(beta)"));
  EXPECT_TRUE(test::svg_has_text(s, "0.00 local only"));
  EXPECT_TRUE(test::svg_has_text(s, "1.00 memory only"));
  EXPECT_TRUE(test::svg_has_text(s, "0.50"));
  EXPECT_EQ(s.tags.at("linearGradient"), 1);
  // every cell: its value with 2 decimals, its letter below it; layer 0 on top, heads left to
  // right, on a regular grid
  const char* values[2][4] = {{"0.05", "0.92", "0.52", "0.38"}, {"0.77", "0.50", "0.95", "0.40"}};
  const char* letters[2][4] = {{"L", "M", "X", "X"}, {"M", "X", "M", "X"}};
  std::vector<std::vector<test::SvgText>> cells(2, std::vector<test::SvgText>(4));
  for (int l = 0; l < 2; ++l)
    for (int h = 0; h < 4; ++h) {
      const auto found = test::svg_texts(s, values[l][h]);
      ASSERT_FALSE(found.empty()) << values[l][h];
      cells[size_t(l)][size_t(h)] =
          found.front();  // "0.50" is also a colour bar label, drawn later
    }
  for (int l = 0; l < 2; ++l)
    for (int h = 0; h < 4; ++h) {
      const test::SvgText& c = cells[size_t(l)][size_t(h)];
      EXPECT_DOUBLE_EQ(c.y, cells[size_t(l)][0].y);  // a row
      EXPECT_DOUBLE_EQ(c.x, cells[0][size_t(h)].x);  // a column
      if (h > 0) {
        EXPECT_GT(c.x, cells[size_t(l)][size_t(h - 1)].x);
      }
      if (l > 0) {
        EXPECT_GT(c.y, cells[size_t(l - 1)][size_t(h)].y);  // layer 0 at the top
      }
      bool letter_below = false;
      for (const test::SvgText& t : test::svg_texts(s, letters[l][h]))
        letter_below |= t.x == c.x && t.y > c.y && t.y < c.y + 30;
      EXPECT_TRUE(letter_below) << letters[l][h] << " under " << values[l][h];
    }
  EXPECT_EQ(test::svg_texts(s, "L").size(), 1u);
  EXPECT_EQ(test::svg_texts(s, "M").size(), 3u);
  EXPECT_EQ(test::svg_texts(s, "X").size(), 4u);
}

TEST(PlotGates, RefusesModelsWithoutGatesAndBadFlags) {
  const std::string dir = test::scratch_dir("plot_gates_errors");
  ModelConfig xl = test::tiny_config();
  xl.attention.type = "xl";
  Model model = model_create(xl);
  model_init_random(model, 1);
  model_save(model, dir + "/xl");
  const std::string gated = write_gated_model(dir + "/m", kBetas);
  struct Case {
    std::string args, expected;
  } cases[] = {
      {"--model " + dir + "/xl --out " + dir + "/xl.svg", "no memory gates"},
      {"--model " + dir + "/missing --out " + dir + "/x.svg", "missing"},
      {"--model " + gated + " --out " + dir + "/x.svg --local-below 0.8 --memory-above 0.6",
       "--local-below"},
      {"--model " + gated + " --out " + dir + "/x.svg --memory-above 1.5", "--memory-above"},
      {"--model " + gated + " --out " + dir + "/no_such_dir/x.svg", "no_such_dir"},
      {"--model " + gated, "--out"},
  };
  for (const Case& c : cases) {
    const auto r = test::run_command(test::cli() + " plot gates " + c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
  }
  EXPECT_FALSE(fs::exists(dir + "/xl.svg"));
}

}  // namespace
}  // namespace infini
