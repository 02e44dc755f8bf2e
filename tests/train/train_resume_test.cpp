// Checkpoints that lose nothing: a run killed with SIGKILL in the middle and resumed from its last
// checkpoint, or stopped with SIGTERM and resumed, produces the same losses, gradient norms,
// held-out losses and final weights and optimizer moments as an uninterrupted run, bit for bit
// (same thread count). The runs use random data order, gradient accumulation, warm-up + cosine,
// clipping, weight decay and evaluations in between, so that everything a checkpoint must carry
// (weights, moments, step, schedule position, RNG state, data cursor) is exercised.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "train_test_support.h"

extern char** environ;

namespace infini {
namespace {

namespace fs = std::filesystem;

const int64_t kSteps = 60;

std::string run_args(const std::string& data, const std::string& out) {
  return "--config " + std::string(INFINI_SOURCE_DIR) + "/configs/infini-tiny.json --data " + data +
         " --out " + out +
         " --steps 60 --batch 2 --seq-len 128 --accumulate 2 --lr 3e-3 --warmup 5 --clip 1 "
         "--weight-decay 0.1 --save-every 4 --keep 2 --eval-every 6 --eval-batches 1 "
         "--sample-tokens 0 --threads 2 --seed 5";
}

// Starts `infini train ARGS` in the background (output to `log`); returns its pid.
pid_t spawn_train(const std::string& args, const std::string& log) {
  const std::string command = "exec " + test::cli() + " train " + args + " > " + log + " 2>&1";
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = -1;
  EXPECT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  return pid;
}

int64_t count_lines(const std::string& path) {
  std::ifstream in(path);
  int64_t lines = 0;
  std::string line;
  while (std::getline(in, line)) ++lines;
  return lines;
}

// Waits until `path` has at least `lines` lines; false if the process ended first.
bool wait_for_lines(pid_t pid, const std::string& path, int64_t lines) {
  for (int i = 0; i < 60000; ++i) {
    if (count_lines(path) >= lines) return true;
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// Same numbers step by step, and the same final weights and moments.
void expect_same_run(const std::string& a, const std::string& b) {
  const std::vector<nlohmann::json> ma = test::read_metrics(a + "/metrics.jsonl");
  const std::vector<nlohmann::json> mb = test::read_metrics(b + "/metrics.jsonl");
  ASSERT_EQ(ma.size(), size_t(kSteps));
  ASSERT_EQ(mb.size(), size_t(kSteps)) << "the resumed run's metrics must read as one run";
  for (size_t i = 0; i < ma.size(); ++i) {
    EXPECT_EQ(mb[i]["step"], ma[i]["step"]);
    for (const char* key : {"loss", "grad_norm", "lr", "val_loss", "memory_gates"})
      EXPECT_EQ(mb[i].value(key, nlohmann::json()), ma[i].value(key, nlohmann::json()))
          << key << " at step " << ma[i]["step"];
  }
  const std::string last = "/checkpoint-" + std::to_string(kSteps);
  for (const char* file : {"/model.safetensors", "/optimizer.safetensors", "/config.json"})
    EXPECT_TRUE(test::read_file(a + last + file) == test::read_file(b + last + file)) << file;
  const auto sa = nlohmann::json::parse(test::read_file(a + last + "/trainer_state.json"));
  const auto sb = nlohmann::json::parse(test::read_file(b + last + "/trainer_state.json"));
  for (const char* key : {"step", "rows_read", "rng_state", "tokens_seen", "learning_rate", "loss"})
    EXPECT_EQ(sa[key], sb[key]) << key;
}

class TrainResume : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test::scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    test::write_dataset(dir + "/data", test::text_tokens(40000, 3), test::text_tokens(2000, 4));
    const auto uninterrupted = test::train(run_args(dir + "/data", dir + "/a"));
    ASSERT_EQ(uninterrupted.exit_code, 0) << uninterrupted.output;
  }
  std::string dir;
};

TEST_F(TrainResume, KilledWithSigkillResumesBitExact) {
  const pid_t pid = spawn_train(run_args(dir + "/data", dir + "/b"), dir + "/b.log");
  ASSERT_TRUE(wait_for_lines(pid, dir + "/b/metrics.jsonl", 11))
      << "the run ended before it could be killed:\n"
      << test::read_file(dir + "/b.log");
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  const int64_t logged = count_lines(dir + "/b/metrics.jsonl");
  ASSERT_LT(logged, kSteps) << "killed too late to test anything";
  const std::string latest = fs::read_symlink(dir + "/b/latest").string();
  std::printf("killed after %lld logged steps; latest -> %s\n", (long long)logged, latest.c_str());
  EXPECT_GE(std::stoll(latest.substr(latest.find('-') + 1)), 8);

  const auto resumed = test::train("--resume " + dir + "/b");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
  expect_same_run(dir + "/a", dir + "/b");
  // keep 2: only the two newest checkpoints remain
  EXPECT_TRUE(fs::exists(dir + "/b/checkpoint-60") && fs::exists(dir + "/b/checkpoint-56"));
  EXPECT_FALSE(fs::exists(dir + "/b/checkpoint-52"));
}

TEST_F(TrainResume, SigtermFinishesTheStepSavesAndExitsZeroEvenSentTwiceAtOnce) {
  const pid_t pid = spawn_train(run_args(dir + "/data", dir + "/b"), dir + "/b.log");
  ASSERT_TRUE(wait_for_lines(pid, dir + "/b/metrics.jsonl", 7))
      << "the run ended before it could be stopped:\n"
      << test::read_file(dir + "/b.log");
  // twice at once, as coreutils `timeout` sends it (to the child, then to its process group):
  // still one request to finish the step and save
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  const std::string log = test::read_file(dir + "/b.log");
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "exit " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << ", signal "
      << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << "\n"
      << log;
  EXPECT_NE(log.find("stopped by SIGTERM"), std::string::npos) << log;
  // the checkpoint is of the last step logged: nothing done was lost
  const int64_t logged = count_lines(dir + "/b/metrics.jsonl");
  ASSERT_LT(logged, kSteps);
  EXPECT_EQ(fs::read_symlink(dir + "/b/latest").string(), "checkpoint-" + std::to_string(logged));

  const auto resumed = test::train("--resume " + dir + "/b/latest");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  expect_same_run(dir + "/a", dir + "/b");
}

// coreutils `timeout` sends SIGTERM to the child and again to its process group. Sent back to back,
// two signals merge into one pending signal, so the test above cannot tell; here the steps are
// slow (~0.5 s on 2 cores) and the second SIGTERM lands 50 ms after the first, mid-step. Before
// the one-second window the trainer took it as "stop at once" and died without saving.
TEST(TrainStop, ASecondSigtermWithinASecondMidStepIsTheSameRequest) {
  const std::string dir = test::scratch_dir("train_two_sigterms");
  test::write_dataset(dir + "/data", test::text_tokens(40000, 1), test::text_tokens(4000, 2));
  const pid_t pid =
      spawn_train("--config " + std::string(INFINI_SOURCE_DIR) +
                      "/configs/infini-tiny.json --data " + dir + "/data --out " + dir +
                      "/run --steps 1000 --batch 16 --seq-len 4096 --warmup 0 "
                      "--eval-batches 0 --save-every 0 --sample-tokens 0 --threads 2 --log-every 1",
                  dir + "/log");
  ASSERT_TRUE(wait_for_lines(pid, dir + "/run/metrics.jsonl", 2)) << test::read_file(dir + "/log");
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, WNOHANG), 0) << "the run stopped within 50 ms: too fast to test";
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  const std::string log = test::read_file(dir + "/log");
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "exit " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << ", signal "
      << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << "\n"
      << log;
  EXPECT_NE(log.find("stopped by SIGTERM"), std::string::npos) << log;
  EXPECT_EQ(fs::read_symlink(dir + "/run/latest").string(),
            "checkpoint-" + std::to_string(count_lines(dir + "/run/metrics.jsonl")));
}

TEST_F(TrainResume, ResumeFromAnOlderCheckpointRedoesTheSameSteps) {
  // the uninterrupted run kept checkpoint-56 and -60; resuming from 56 redoes 57..60 exactly and
  // replaces checkpoint-60 with the same bytes
  const std::vector<nlohmann::json> before = test::read_metrics(dir + "/a/metrics.jsonl");
  const std::string weights_before = test::read_file(dir + "/a/checkpoint-60/model.safetensors");
  const auto resumed = test::train("--resume " + dir + "/a/checkpoint-56");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const std::vector<nlohmann::json> after = test::read_metrics(dir + "/a/metrics.jsonl");
  ASSERT_EQ(after.size(), size_t(kSteps));
  for (size_t i = 0; i < after.size(); ++i) EXPECT_EQ(after[i]["loss"], before[i]["loss"]);
  EXPECT_EQ(fs::read_symlink(dir + "/a/latest").string(), "checkpoint-60");
  EXPECT_TRUE(test::read_file(dir + "/a/checkpoint-60/model.safetensors") == weights_before);
}

}  // namespace
}  // namespace infini
