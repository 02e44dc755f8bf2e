// `infini train` against PyTorch: three optimizer steps on the same checkpoint and the same rows
// (--data-order sequential) give the same losses, gradient norms and final weights as
// torch.optim.AdamW in float64 (tests/reference/adam_steps.py). The loss of step 2 and 3 depends
// on every gradient of the steps before (through the update), so this checks the gradients end
// to end, the Adam equations (bias correction, eps placement), the gate learning-rate
// multiplier, and, in the second case, decoupled weight decay on matrices only, clipping by
// global norm and gradient accumulation. And --init from a Llama-layout checkpoint without gates.
//
// Tolerances: the losses agree to 1e-5 relative (the model alone agrees with the float64
// reference to ~1e-6, tests/model/model_reference_test.cpp; three small Adam steps move the
// weights by ~3 lr and do not amplify that). The weights: Adam's update of one element is
// lr * m / (sqrt(v) + eps), about +-lr whatever the gradient's size, so a gradient element whose
// float32 rounding error is comparable to itself could move differently; we compare each
// element's movement (w_final - w_initial) to the reference's, relative to the largest movement
// (~3 lr), and require 5e-3: far below a wrong term (O(1)), above float32 noise (measured: 1e-5
// for most tensors, up to 8e-4 for a tensor holding an element whose gradient nearly cancels).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/checkpoint.h"
#include "train_test_support.h"

namespace infini {
namespace {

struct Case {
  std::string name;
  std::string ours, reference;  // extra flags for infini train / adam_steps.py
  int64_t batch;                // rows per micro-batch
};
void PrintTo(const Case& c, std::ostream* out) {
  *out << c.name;
}

class TrainReference : public ::testing::TestWithParam<Case> {};

TEST_P(TrainReference, ThreeStepsMatchPyTorch) {
  const Case& c = GetParam();
  const std::string dir = test::scratch_dir("train_reference_" + c.name);
  ASSERT_NO_FATAL_FAILURE(test::run_reference(
      "make-case --out " + dir +
      "/model --seed 21 --batch 1 --seq-len 4 --vocab 256 --hidden 32 "
      "--layers 2 --heads 4 --kv-heads 2 --head-dim 8 --ffn 48 --segment 8 --update delta "
      "--untied"));
  test::write_dataset(dir + "/data", test::text_tokens(400, 1), test::text_tokens(100, 2));

  const std::string common = "--steps 3 --seq-len 16 --lr 2e-3 --gate-lr-mult 10 ";
  const auto ours = test::train("--init " + dir + "/model --data " + dir + "/data --out " + dir +
                                "/run --data-order sequential --schedule constant --warmup 0 "
                                "--eval-batches 0 --sample-tokens 0 --threads 2 --batch " +
                                std::to_string(c.batch) + " " + common + c.ours);
  ASSERT_EQ(ours.exit_code, 0) << ours.output;
  const std::string script = std::string(INFINI_PYTHON) + " " + INFINI_SOURCE_DIR +
                             "/tests/reference/adam_steps.py --model " + dir + "/model --shard " +
                             dir + "/data/train.tokens --out " + dir + "/ref " + common +
                             c.reference;
  const auto ref = test::run_command(script);
  ASSERT_EQ(ref.exit_code, 0) << script << "\n" << ref.output;

  const std::vector<nlohmann::json> metrics = test::read_metrics(dir + "/run/metrics.jsonl");
  const nlohmann::json expected =
      nlohmann::json::parse(test::read_file(dir + "/ref/adam_steps.json"));
  ASSERT_EQ(metrics.size(), 3u);
  for (size_t s = 0; s < 3; ++s) {
    const double loss = metrics[s]["loss"], want = expected["losses"][s];
    const double norm = metrics[s]["grad_norm"], want_norm = expected["grad_norms"][s];
    EXPECT_NEAR(loss, want, 1e-5 * want) << "loss of step " << s + 1;
    EXPECT_NEAR(norm, want_norm, 1e-4 * want_norm) << "gradient norm of step " << s + 1;
    std::printf("step %zu: loss %.9f (PyTorch %.9f), grad norm %.6f (PyTorch %.6f)\n", s + 1, loss,
                want, norm, want_norm);
  }
  // the losses must move, or the comparison proves little
  EXPECT_GT(std::fabs(double(expected["losses"][0]) - double(expected["losses"][2])), 1e-3);

  const Model initial = model_load(dir + "/model");
  const Model trained = model_load(dir + "/run/checkpoint-3");
  const SafetensorsFile final_ref = SafetensorsFile::open(dir + "/ref/final.safetensors");
  double worst = 0;
  for (const ParameterInfo& p : parameter_table(trained.config, trained.weights)) {
    const std::vector<double> want = test::read_f64(final_ref, p.name);
    const float* before = initial.weights.all + (p.data - trained.weights.all);
    std::vector<float> moved(want.size());
    std::vector<double> want_moved(want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      moved[i] = p.data[i] - before[i];
      want_moved[i] = want[i] - double(before[i]);
    }
    const double err = test::relative_error(moved.data(), want_moved);
    EXPECT_LT(err, 5e-3) << "update of " << p.name;
    worst = std::max(worst, err);
  }
  std::printf("worst relative error of a tensor's update: %.3g\n", worst);
}

INSTANTIATE_TEST_SUITE_P(
    Adam, TrainReference,
    ::testing::Values(
        // the case: Adam, constant lr, no weight decay, no clipping
        Case{"adam", "--weight-decay 0 --clip 0", "--batch 2", 2},
        // AdamW on matrices only, clipping (the norms here are > 0.05), accumulation of 2 x 1 rows
        Case{"adamw_clip_accumulate", "--weight-decay 0.1 --clip 0.05 --accumulate 2",
             "--batch 1 --accumulate 2 --weight-decay 0.1 --clip 0.05", 1}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace infini

namespace infini {
namespace {

namespace fs = std::filesystem;

// --init from a Llama-layout checkpoint (no memory_gate tensors): the gates start at the
// config's attention.gate_init (the papers' plug-and-play continual pre-training), train, and
// are saved with the run's checkpoints.
TEST(TrainInit, LlamaCheckpointWithoutGatesStartsFromGateInit) {
  const std::string dir = test::scratch_dir("train_init_llama");
  ASSERT_EQ(test::run_command(test::cli() + " init --config " + INFINI_SOURCE_DIR +
                              "/configs/infini-tiny.json --out " + dir + "/infini --seed 2")
                .exit_code,
            0);
  // the same weights without gates, and gate_init -2 in the config
  fs::create_directories(dir + "/llama");
  nlohmann::json config = nlohmann::json::parse(test::read_file(dir + "/infini/config.json"));
  config["attention"]["gate_init"] = -2.0;
  std::ofstream(dir + "/llama/config.json") << config.dump(2);
  {
    const SafetensorsFile file = SafetensorsFile::open(dir + "/infini/model.safetensors");
    SafetensorsWriter writer;
    for (const SafetensorsEntry& e : file.entries())
      if (!e.name.ends_with("memory_gate")) writer.add(e.name, e.dtype, e.shape, e.data);
    writer.write(dir + "/llama/model.safetensors");
  }
  test::write_dataset(dir + "/data", test::text_tokens(5000, 1), test::text_tokens(1000, 2));
  const auto r = test::train("--init " + dir + "/llama --data " + dir + "/data --out " + dir +
                             "/run --steps 1 --seq-len 128 --batch 1 --lr 1e-4 --warmup 0 "
                             "--eval-batches 0 --sample-tokens 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::vector<nlohmann::json> metrics = test::read_metrics(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 1u);
  const double start = 1 / (1 + std::exp(2.0));  // sigmoid(-2)
  // one Adam step moves a gate by at most lr x gate multiplier = 1e-3 (sigmoid' <= 1/4)
  for (const auto& layer : metrics[0]["memory_gates"])
    for (const auto& gate : layer) EXPECT_NEAR(gate.get<double>(), start, 1e-3 / 4 + 1e-6);
  const Model trained = model_load(dir + "/run/latest");
  EXPECT_NE(trained.weights.layers[0].memory_gate[0], -2.0f) << "the gates did not train";
}

}  // namespace
}  // namespace infini
