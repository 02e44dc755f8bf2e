// `infini generate` as a user runs it: a stream saved in the middle of a segment and continued in
// a new process gives the uninterrupted run's output byte for byte (temperature > 0, fixed seed);
// a book read today and a question asked tomorrow give the answer of one run over both; stop
// strings; the JSON summary; stdin; and clear refusals of bad state files and bad options.
//
// The model is the PyTorch reference's random one (tests/reference/infini_ref.py make-case:
// segment 8, 2 layers, O(1) logits, so that greedy choices are well separated) and the byte
// tokenizer. The CLI's stderr (progress, speed line) goes to a file so that the output compared
// is stdout alone.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace infini {
namespace {

class GenerateCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = test::scratch_dir("generate_cli");
    test::run_reference("make-case --out " + dir + "/model --seed 31 --batch 1 --seq-len 4 " +
                        "--vocab 256 --segment 8 --update delta --heads 4 --kv-heads 2");
  }

  // Runs `infini generate --model <model> <args>`: exit code and stdout (stderr to a file).
  static test::CommandResult generate(const std::string& args, const std::string& model = "") {
    const std::string err = dir + "/stderr.txt";
    test::CommandResult r = test::run_command("( " + test::cli() + " generate --model " +
                                              (model.empty() ? dir + "/model" : model) + " " +
                                              args + " 2> " + err + " )");
    last_stderr = test::read_bytes(err);
    return r;
  }
  // The output of a run that must succeed.
  static std::string output_of(const std::string& args) {
    const test::CommandResult r = generate(args);
    EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.output << last_stderr;
    return r.output;
  }
  static void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
  }

  static std::string dir, last_stderr;
};
std::string GenerateCli::dir, GenerateCli::last_stderr;

const std::string kPrompt = "the memory of a stream keeps";  // 28 bytes: 3 segments and 4 rows

TEST_F(GenerateCli, SavedMidSegmentAndContinuedInANewProcessGivesTheUninterruptedOutput) {
  for (const std::string threads : {"1", "2"}) {
    const std::string common = " --temperature 0.9 --top-k 50 --seed 5 --threads " + threads;
    const std::string state = dir + "/mid.state";
    const std::string whole = output_of("--prompt '" + kPrompt + "' --max-new 41" + common);
    ASSERT_EQ(whole.size(), 41u);
    // 28 + 17 = 45 tokens: the state is saved 5 rows into the sixth segment
    const std::string first =
        output_of("--prompt '" + kPrompt + "' --max-new 17 --save-state " + state + common);
    const std::string rest = output_of("--load-state " + state +
                                       " --prompt '' --max-new 24 --temperature 0.9 --top-k 50 "
                                       "--threads " +
                                       threads);  // the saved generator goes on
    EXPECT_EQ(first + rest, whole) << threads << " threads";
    // a different seed gives different text (the comparison above is not vacuous)
    EXPECT_NE(output_of("--prompt '" + kPrompt +
                        "' --max-new 41 --temperature 0.9 --top-k 50 "
                        "--seed 6 --threads " +
                        threads),
              whole);
  }
}

TEST_F(GenerateCli, BookTodayQuestionTomorrowGivesTheAnswerOfOneRun) {
  std::string book;
  for (int i = 0; i < 12; ++i) book += "And it came to pass that the stream was read. ";
  const std::string question = "\nWhat was read? ";
  write_file(dir + "/book.txt", book);
  write_file(dir + "/book_and_question.txt", book + question);
  const std::string state = dir + "/book.state", common = " --chunk 16 --threads 1";
  EXPECT_EQ(
      output_of("--prompt-file " + dir + "/book.txt --max-new 0 --save-state " + state + common),
      "");
  const std::string later = output_of("--load-state " + state + " --prompt '" + question +
                                      "' --max-new 30 --temperature 0" + common);
  const std::string once = output_of(
      "--prompt-file " + dir + "/book_and_question.txt --max-new 30 --temperature 0" + common);
  EXPECT_EQ(later.size(), 30u);
  EXPECT_EQ(later, once);
}

TEST_F(GenerateCli, StopStringsEndTheOutputAndAreNotPrinted) {
  const std::string args = "--prompt '" + kPrompt + "' --max-new 60 --temperature 0 --threads 1";
  const std::string full = output_of(args);
  ASSERT_EQ(full.size(), 60u);
  size_t pick = 20;  // two bytes that survive the shell's $(cat ...): no NUL, no newline
  while (pick + 2 < full.size() && (full.substr(pick, 2).find('\0') != std::string::npos ||
                                    full.substr(pick, 2).find('\n') != std::string::npos))
    ++pick;
  const std::string stop = full.substr(pick, 2);  // stops at its first occurrence
  const size_t at = full.find(stop);
  write_file(dir + "/stop.txt", stop);
  const std::string stopped = output_of(args + " --stop \"$(cat " + dir + "/stop.txt)\"");
  EXPECT_EQ(stopped, full.substr(0, at));

  const test::CommandResult json =
      generate(args + " --stop \"$(cat " + dir + "/stop.txt)\" --stop never-seen --json");
  ASSERT_EQ(json.exit_code, 0) << json.output << last_stderr;
  const auto j = nlohmann::json::parse(json.output);
  // "text" is UTF-8 (invalid bytes become U+FFFD); token_ids are exact (bytes here)
  std::string drawn;
  for (const int32_t id : j["token_ids"].get<std::vector<int32_t>>()) drawn += char(id);
  EXPECT_EQ(drawn, full.substr(0, drawn.size()));
  EXPECT_EQ(drawn.substr(0, at + stop.size()), full.substr(0, at) + stop);
  EXPECT_EQ(j["stopped_by"].get<std::string>(), stop);
  EXPECT_EQ(j["prompt_tokens"].get<int64_t>(), int64_t(kPrompt.size()));
  EXPECT_EQ(j["position"].get<int64_t>(), int64_t(kPrompt.size()) + j["tokens"].get<int64_t>());
  EXPECT_GE(j["tokens"].get<int64_t>(), int64_t(at + stop.size()));
  EXPECT_EQ(j["tokens"].get<int64_t>(), int64_t(drawn.size()));
  EXPECT_GT(j["peak_rss_bytes"].get<int64_t>(), 0);
  EXPECT_GT(j["decode_tokens_per_second"].get<double>(), 0);

  // a stop string that never comes: the whole output
  EXPECT_EQ(output_of(args + " --stop never-seen"), full);
}

TEST_F(GenerateCli, ReadsThePromptFromStdin) {
  const std::string expected = output_of("--prompt '" + kPrompt + "' --max-new 20 --temperature 0");
  write_file(dir + "/prompt.txt", kPrompt);
  EXPECT_EQ(output_of("--max-new 20 --temperature 0 < " + dir + "/prompt.txt"), expected);
  EXPECT_EQ(output_of("--prompt-file - --max-new 20 --temperature 0 < " + dir + "/prompt.txt"),
            expected);
}

TEST_F(GenerateCli, RefusesBadStateFilesClearly) {
  const std::string good = dir + "/good.state";
  output_of("--prompt '" + kPrompt + "' --max-new 5 --save-state " + good);
  const std::string bytes = test::read_bytes(good);
  ASSERT_GT(bytes.size(), 1000u);
  const std::string bad = dir + "/bad.state";
  auto refused = [&](const std::string& content, const std::string& words) {
    write_file(bad, content);
    const test::CommandResult r = generate("--load-state " + bad + " --max-new 3 < /dev/null");
    EXPECT_NE(r.exit_code, 0) << words;
    EXPECT_NE(last_stderr.find(bad), std::string::npos) << last_stderr;
    EXPECT_NE(last_stderr.find(words), std::string::npos) << "expected '" << words << "' in\n"
                                                          << last_stderr;
  };
  // the good file itself loads
  EXPECT_EQ(generate("--load-state " + good + " --max-new 3 < /dev/null").exit_code, 0)
      << last_stderr;

  for (const size_t length : {size_t(0), size_t(7), size_t(31)})
    refused(bytes.substr(0, length), "shorter than the 32-byte header");
  for (const size_t length : {size_t(32), size_t(100), bytes.size() / 2, bytes.size() - 1})
    refused(bytes.substr(0, length), "truncated");
  refused(bytes + "x", "unexpected bytes after the payload");

  auto flipped = [&](size_t at) {
    std::string b = bytes;
    b[at] = char(b[at] ^ 0x10);
    return b;
  };
  refused(flipped(0), "not an infini stream state file");
  refused(flipped(8), "version");
  refused(flipped(16), "payload");  // the announced length
  refused(flipped(24), "checksum");
  for (const size_t at : {size_t(32), size_t(40), bytes.size() / 2, bytes.size() - 1})
    refused(flipped(at), "corrupted: the payload's checksum");

  std::string version_2 = bytes;
  version_2[8] = 2;
  refused(version_2, "format version 2; this build reads version 1");

  // a state from another model (same shapes, other weights)
  const std::string other = dir + "/other_model";
  ASSERT_EQ(test::run_command(test::cli() + " init --config " + dir + "/model/config.json --out " +
                              other + " --seed 9")
                .exit_code,
            0);
  const std::string foreign = dir + "/foreign.state";
  ASSERT_EQ(generate("--prompt abc --max-new 2 --save-state " + foreign, other).exit_code, 0);
  refused(test::read_bytes(foreign), "written by another model");

  const test::CommandResult missing = generate("--load-state " + dir + "/nothing.state");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(last_stderr.find("cannot open the state file"), std::string::npos) << last_stderr;
}

TEST_F(GenerateCli, RefusesBadOptionsClearly) {
  auto refused = [&](const std::string& args, const std::string& words,
                     const std::string& model = "") {
    const test::CommandResult r = generate(args, model);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE((r.output + last_stderr).find(words), std::string::npos)
        << args << ": expected '" << words << "' in\n"
        << r.output << last_stderr;
  };
  refused("--prompt ''", "the prompt is empty and no state was loaded");
  refused("--max-new 3 < /dev/null", "the prompt is empty and no state was loaded");
  refused("--prompt a --top-p 0", "--top-p");
  refused("--prompt a --top-p 1.5", "--top-p");
  refused("--prompt a --temperature -1", "--temperature");
  refused("--prompt a --top-k -2", "--top-k");
  refused("--prompt a --max-new -1", "--max-new");
  refused("--prompt a --prompt-file x", "excludes");
  refused("--prompt-file " + dir + "/no_such_prompt.txt", "cannot open the prompt file");
  refused("--prompt a", "no_such_model", dir + "/no_such_model");
}

}  // namespace
}  // namespace infini
