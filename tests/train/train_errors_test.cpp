// Bad inputs get a clear message, a non-zero exit, and leave existing checkpoints untouched:
// empty or too-short data, a vocabulary the model does not have, a sequence length that is not a
// multiple of the segment, missing files, conflicting or changed options; a loss that becomes
// NaN/inf stops the run with the last good checkpoint still the latest; a full disk while saving
// leaves the previous checkpoint complete and `latest` on it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>

#include "io/safetensors.h"
#include "train_test_support.h"

namespace infini {
namespace {

namespace fs = std::filesystem;

std::string tiny_config() {
  return std::string(INFINI_SOURCE_DIR) + "/configs/infini-tiny.json";
}

// seq-len 128 = 2 segments of the tiny config; eval on, no samples
const std::string kRunFlags =
    " --batch 2 --seq-len 128 --eval-batches 1 --sample-tokens 0 --threads 2 --warmup 0";

class TrainErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test::scratch_dir(std::string("train_errors_") +
                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    data = dir + "/data";
    test::write_dataset(data, test::text_tokens(20000, 1), test::text_tokens(2000, 2));
    run = dir + "/run";
    const auto r = test::train("--config " + tiny_config() + " --data " + data + " --out " + run +
                               " --steps 2 --save-every 1" + kRunFlags);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::string dir, data, run;
};

TEST_F(TrainErrors, EachBadInputGetsItsMessageAndChangesNothing) {
  // data directories that are wrong in one way each
  test::write_dataset(dir + "/empty", {}, test::text_tokens(2000, 2));
  test::write_dataset(dir + "/short", test::text_tokens(100, 1), test::text_tokens(2000, 2));
  test::write_dataset(dir + "/vocab300", test::text_tokens(20000, 1), test::text_tokens(2000, 2),
                      300);
  test::write_dataset(dir + "/no_val", test::text_tokens(20000, 1), {});
  fs::remove(dir + "/no_val/val.tokens");
  test::write_dataset(dir + "/no_json", test::text_tokens(20000, 1), test::text_tokens(2000, 2));
  fs::remove(dir + "/no_json/dataset.json");

  const std::string fresh = dir + "/fresh";  // must not be created by a failed start
  const std::string new_run = " --data " + data + " --out " + fresh;
  struct Case {
    std::string args, expected;
  } cases[] = {
      {"--resume " + run + " --data " + dir + "/empty", "holds no tokens"},
      {"--resume " + run + " --data " + dir + "/short", "fewer than one training window"},
      {"--resume " + run + " --data " + dir + "/vocab300",
       "vocabulary of 300 ids, more than the model's vocab_size (256)"},
      {"--resume " + run + " --data " + dir + "/no_val", "val.tokens: missing"},
      {"--resume " + run + " --data " + dir + "/no_json", "dataset.json: missing"},
      {"--resume " + run + " --data " + dir + "/nothing_here", "no such data directory"},
      {"--resume " + run + " --lr 1", "--lr: cannot be changed when resuming"},
      {"--resume " + run + " --seq-len 64", "--seq-len: cannot be changed when resuming"},
      {"--resume " + run + " --steps 2", "is at step 2, and the run has --steps 2"},
      {"--resume " + dir + "/no_such_run", "no such run or checkpoint directory"},
      {"--resume " + data, "holds no training checkpoint"},
      {"--config " + tiny_config() + " --data " + data + " --out " + run + kRunFlags,
       "already holds a training run"},
      {"--config " + tiny_config() + new_run + " --seq-len 100",
       "100 tokens is not a multiple of the model's segment length (64)"},
      {"--init " + run + new_run + " --seq-len 96",
       "is not a multiple of the model's segment length"},
      {"--config " + tiny_config() + new_run + " --recompute-chunk 96", "--recompute-chunk"},
      {"--config " + tiny_config() + " --data " + dir + "/empty --out " + fresh, "holds no tokens"},
      {"--config " + dir + "/no_config.json" + new_run, "no_config.json: no such config file"},
      {"--init " + dir + "/no_checkpoint" + new_run, "no such checkpoint directory"},
      {"--config " + tiny_config() + " --init " + run + new_run, "more than one starting point"},
      {"--data " + data + " --out " + fresh, "no model to train"},
      {"--config " + tiny_config() + " --data " + data, "--out: is required"},
      {"--config " + tiny_config() + new_run + " --lr -1", "--lr: is -1"},
      {"--config " + tiny_config() + new_run + " --steps 0", "--steps"},
  };
  const auto before = test::snapshot(run);
  for (const Case& c : cases) {
    const auto r = test::train(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(fresh)) << c.args << ": a failed start created its run directory";
    EXPECT_TRUE(test::snapshot(run) == before) << c.args << ": the existing run was modified";
  }
}

TEST_F(TrainErrors, NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint) {
  // a huge learning rate: step 1 (loss from the initial weights) is fine and saved, its update
  // blows the weights up, and the loss of step 2 is not finite
  const std::string blown = dir + "/blown";
  const auto r = test::train("--init " + run + " --data " + data + " --out " + blown +
                             " --steps 5 --save-every 1 --lr 1e30 --clip 0" + kRunFlags);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  // a blown-up step shows as a non-finite loss or, when the loss is still finite, gradient norm
  EXPECT_TRUE(r.output.find("step 2: the loss is") != std::string::npos ||
              r.output.find("step 2: the gradient norm is") != std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("training stopped"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("the last good checkpoint is " + blown + "/checkpoint-1"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(fs::read_symlink(blown + "/latest").string(), "checkpoint-1");
  EXPECT_FALSE(fs::exists(blown + "/checkpoint-2"));

  // an infinite weight planted in a checkpoint: the very first loss is not finite
  const std::string planted = dir + "/planted";
  fs::create_directories(planted);
  fs::copy_file(run + "/checkpoint-2/config.json", planted + "/config.json");
  {
    const SafetensorsFile file = SafetensorsFile::open(run + "/checkpoint-2/model.safetensors");
    std::vector<std::vector<float>> copies;
    SafetensorsWriter writer;
    for (const SafetensorsEntry& e : file.entries()) {
      copies.emplace_back(e.numel);
      read_f32(e, copies.back().data(), e.numel, file.path());
      if (e.name == "model.layers.1.mlp.down_proj.weight") copies.back()[7] = INFINITY;
      writer.add(e.name, "F32", e.shape, copies.back().data());
    }
    writer.write(planted + "/model.safetensors");
  }
  const auto p = test::train("--init " + planted + " --data " + data + " --out " + dir +
                             "/planted_run --steps 3" + kRunFlags);
  EXPECT_EQ(p.exit_code, 1) << p.output;
  EXPECT_NE(p.output.find("step 1: the loss is"), std::string::npos) << p.output;
  EXPECT_NE(p.output.find("no checkpoint of this run was saved yet"), std::string::npos)
      << p.output;
  EXPECT_FALSE(fs::exists(dir + "/planted_run/latest"));
}

// A full disk while saving: on a small tmpfs when we may mount one (root), else with a file-size
// limit (ulimit -f: writes past it fail with EFBIG, like a full disk, with SIGXFSZ ignored).
TEST_F(TrainErrors, FullDiskKeepsThePreviousCheckpoint) {
  const std::string small = dir + "/small";
  fs::create_directories(small);
  // one checkpoint of the tiny model (~1.4 MB) fits in 2.5 MB, a second one does not
  const bool tmpfs =
      geteuid() == 0 &&
      test::run_command("mount -t tmpfs -o size=2500k tmpfs " + small).exit_code == 0;
  struct Unmount {
    bool mounted;
    std::string path;
    ~Unmount() {
      if (mounted) test::run_command("umount " + path);
    }
  } unmount{tmpfs, small};
  std::printf("simulating a full disk with %s\n", tmpfs ? "a 2.5 MB tmpfs" : "ulimit -f");
  const std::string target = small + "/run";
  const auto first = test::train("--config " + tiny_config() + " --data " + data + " --out " +
                                 target + " --steps 1 --keep 5" + kRunFlags);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const auto before = test::snapshot(target + "/checkpoint-1");
  const std::string resume = test::cli() + " train --resume " + target + " --steps 2";
  const auto full =
      tmpfs ? test::run_command(resume)
            : test::run_command("sh -c \"trap '' XFSZ; ulimit -f 1000; exec " + resume + "\"");
  EXPECT_EQ(full.exit_code, 1) << full.output;
  EXPECT_NE(full.output.find("checkpoint-2: could not be saved"), std::string::npos) << full.output;
  EXPECT_NE(full.output.find(tmpfs ? "No space left on device" : "File too large"),
            std::string::npos)
      << full.output;
  EXPECT_NE(full.output.find("checkpoint-1 is intact and `latest` still points to it"),
            std::string::npos)
      << full.output;
  EXPECT_EQ(fs::read_symlink(target + "/latest").string(), "checkpoint-1");
  EXPECT_TRUE(test::snapshot(target + "/checkpoint-1") == before);
  EXPECT_FALSE(fs::exists(target + "/checkpoint-2"));
  EXPECT_FALSE(fs::exists(target + "/.checkpoint-2.tmp")) << "a half-written checkpoint was left";
}

}  // namespace
}  // namespace infini
