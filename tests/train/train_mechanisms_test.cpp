// Every attention type trains with `infini train` end to end: the loss falls on learnable data,
// the held-out loss is evaluated, the checkpoint records the type and loads, and `infini ppl`
// streams text through it. (The gradients themselves are checked against the float64 reference
// in tests/model/mechanisms_reference_test.cpp; this is the command-line path around them.)
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "model/checkpoint.h"
#include "train/train_test_support.h"

namespace infini {
namespace {

struct Mechanism {
  std::string type, fields;  // fields: the type's own attention keys, as JSON
};

std::string tiny_config(const Mechanism& m) {
  return R"({"model_type": "infini-transformer", "vocab_size": 256, "hidden_size": 32,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
  "intermediate_size": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
  "tie_word_embeddings": false,
  "attention": {"type": ")" +
         m.type + R"(", "segment_length": 16)" + m.fields + R"(},
  "tokenizer": {"type": "byte"}})";
}

TEST(TrainMechanisms, EveryTypeTrainsEvaluatesSavesAndStreams) {
  const std::string dir = test::scratch_dir("train_mechanisms");
  test::write_dataset(dir + "/data", test::text_tokens(20000, 1), test::text_tokens(3000, 2));
  {
    std::ofstream text(dir + "/text.txt");
    for (int32_t t : test::text_tokens(700, 3)) text << char(t);
  }
  const std::vector<Mechanism> mechanisms = {{"infini", R"(, "memory_update": "delta")"},
                                             {"full", ""},
                                             {"sliding", R"(, "window": 24)"},
                                             {"xl", ""},
                                             {"bswa", R"(, "memory_blocks": 2)"},
                                             {"fam", R"(, "memory_blocks": 1, "fam_length": 4)"}};
  for (const Mechanism& m : mechanisms) {
    SCOPED_TRACE(m.type);
    const std::string config = dir + "/" + m.type + ".json", run = dir + "/run-" + m.type;
    std::ofstream(config) << tiny_config(m);
    const test::CommandResult r =
        test::train("--config " + config + " --data " + dir + "/data --out " + run +
                    " --steps 30 --batch 2 --seq-len 64 --lr 3e-3 --warmup 2 --schedule constant"
                    " --eval-every 30 --eval-batches 2 --save-every 0 --sample-tokens 0"
                    " --threads 1 --seed 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::vector<nlohmann::json> metrics = test::read_metrics(run + "/metrics.jsonl");
    std::vector<double> losses;
    double held_out = NAN;
    for (const nlohmann::json& line : metrics) {
      if (line.contains("loss") && line.contains("step"))
        losses.push_back(line["loss"].get<double>());
      if (line.contains("val_loss")) held_out = line["val_loss"].get<double>();
    }
    ASSERT_GE(losses.size(), 20u) << r.output;
    // bytes start near ln 256 = 5.55; the word data is learnable: the loss must fall well below
    EXPECT_GT(losses.front(), 5.0);
    EXPECT_LT(losses.back(), 3.5) << "no learning";
    ASSERT_TRUE(std::isfinite(held_out)) << "no held-out evaluation";
    EXPECT_LT(held_out, 3.5);

    const Model model = model_load(run + "/latest");
    EXPECT_EQ(model.config.attention.type, m.type);
    const test::CommandResult ppl =
        test::run_command(test::cli() + " ppl --model " + run + "/latest --input " + dir +
                          "/text.txt --json --threads 1");
    ASSERT_EQ(ppl.exit_code, 0) << ppl.output;
    const nlohmann::json result = nlohmann::json::parse(ppl.output.substr(ppl.output.find('{')));
    EXPECT_EQ(result["tokens"].get<int64_t>(), 699);
    EXPECT_LT(result["mean_nll"].get<double>(), 3.5);
  }
}

}  // namespace
}  // namespace infini
