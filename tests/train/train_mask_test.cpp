// Loss masks (train.mask / val.mask, train_data.h): the trainer's loss is the mean over the scored
// targets only, checked against a forward pass of the same weights; an all-ones mask is the same
// run as no mask, bit for bit; a mask that does not fit its shard is refused before any work.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cross_entropy.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "train_test_support.h"

namespace infini {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kT = 128, kB = 2;  // 2 segments of the tiny config

class TrainMask : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test::scratch_dir(std::string("train_mask_") +
                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    train = test::text_tokens(20000, 1);
    val = test::text_tokens(2000, 2);
    const auto init = test::run_command(test::cli() + " init --config " + INFINI_SOURCE_DIR +
                                        "/configs/infini-tiny.json --out " + dir + "/m --seed 4");
    ASSERT_EQ(init.exit_code, 0) << init.output;
  }

  // A data directory whose masks score the targets for which keep(i) is true.
  std::string dataset(const std::string& name, bool (*keep)(int64_t)) {
    const std::string data = dir + "/" + name;
    test::write_dataset(data, train, val);
    if (!keep) return data;
    for (const auto& [file, n] :
         {std::pair{"/train.mask", train.size()}, {"/val.mask", val.size()}}) {
      std::vector<int32_t> mask(n);
      for (size_t i = 0; i < n; ++i) mask[i] = keep(int64_t(i)) ? 1 : 0;
      token_shard_write(data + file, mask, 2);
    }
    return data;
  }

  std::vector<nlohmann::json> run(const std::string& data, const std::string& name) {
    const auto r =
        test::train("--init " + dir + "/m --data " + data + " --out " + dir + "/" + name +
                    " --steps 2 --batch 2 --seq-len 128 --data-order sequential"
                    " --eval-batches 1 --sample-tokens 0 --threads 2 --warmup 0");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return test::read_metrics(dir + "/" + name + "/metrics.jsonl");
  }

  std::string dir;
  std::vector<int32_t> train, val;
};

bool every_third(int64_t i) {
  return i % 3 == 1;
}
bool all_ones(int64_t) {
  return true;
}

// Step 1's loss is taken before the first update: the mean, over the targets the mask scores, of
// the per-token losses of the initial weights on the first two sequential windows.
TEST_F(TrainMask, LossIsTheMeanOverTheScoredTargets) {
  const std::vector<nlohmann::json> m = run(dataset("masked", every_third), "masked");
  ASSERT_GE(m.size(), 1u);
  const Model model = model_load(dir + "/m");
  Activations act = activations_create(model.config, kB, kT, false);
  StreamState state = stream_state_create(model.config, kB);
  std::vector<int32_t> inputs(kB * kT), targets(kB * kT);
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t t = 0; t < kT; ++t) {
      const int64_t at = b * kT + t;  // window b starts at token b T
      inputs[at] = train[size_t(at)];
      targets[at] = every_third(at + 1) ? train[size_t(at + 1)] : kIgnoredTarget;
    }
  model_forward(model, state, act, inputs.data(), kT);
  double sum = 0, all = 0;
  int64_t scored = 0;
  model_loss(act, targets.data(), kT, model.config.vocab_size);
  for (int64_t r = 0; r < kB * kT; ++r)
    if (targets[r] >= 0) sum += act.losses[r], ++scored;
  std::vector<int32_t> every(kB * kT);
  for (int64_t r = 0; r < kB * kT; ++r) every[r] = train[size_t(r + 1)];
  all = model_loss(act, every.data(), kT, model.config.vocab_size) / double(kB * kT);
  ASSERT_EQ(scored, 86);  // targets 1..256 with i % 3 == 1
  const double expected = sum / double(scored);
  EXPECT_NEAR(m[0]["loss"].get<double>(), expected, 1e-5 * expected);
  EXPECT_GT(std::abs(expected - all), 1e-3) << "the scored subset must differ from the whole";
}

TEST_F(TrainMask, AllOnesIsTheSameRunAsNoMask) {
  const std::vector<nlohmann::json> plain = run(dataset("plain", nullptr), "plain");
  const std::vector<nlohmann::json> ones = run(dataset("ones", all_ones), "ones");
  ASSERT_EQ(plain.size(), ones.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_EQ(plain[i]["loss"].get<double>(), ones[i]["loss"].get<double>()) << i;
    EXPECT_EQ(plain[i]["grad_norm"].get<double>(), ones[i]["grad_norm"].get<double>()) << i;
  }
}

TEST_F(TrainMask, MasksThatDoNotFitAreRefused) {
  const std::string data = dataset("bad", every_third);
  token_shard_write(data + "/train.mask", std::vector<int32_t>(train.size() - 1, 1), 2);
  auto r = test::train("--init " + dir + "/m --data " + data + " --out " + dir + "/r1 --steps 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("train.mask: is not a loss mask of"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/r1/latest"));

  dataset("bad", every_third);
  fs::remove(data + "/val.mask");
  r = test::train("--init " + dir + "/m --data " + data + " --out " + dir + "/r2 --steps 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("val.mask: missing"), std::string::npos) << r.output;

  dataset("bad", every_third);
  token_shard_write(data + "/train.mask", std::vector<int32_t>(train.size(), 2), 3);
  r = test::train("--init " + dir + "/m --data " + data + " --out " + dir + "/r3 --steps 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("ids below 3"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace infini
