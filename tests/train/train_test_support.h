// Helpers shared by the training tests: small data directories, metrics files, snapshots of a
// run directory (to prove that a failed run left it untouched).
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/random.h"
#include "data/token_shard.h"
#include "test_support.h"

namespace infini::test {

// Text-like byte tokens: words from a small vocabulary, so that a model can learn something.
inline std::vector<int32_t> text_tokens(int64_t count, uint64_t seed) {
  const char* words[] = {"the ", "memory ", "of ",   "a ",    "stream ", "keeps ", "what ",
                         "it ",  "read ",   "long ", "ago. ", "And ",    "then\n"};
  Rng rng(seed);
  std::vector<int32_t> tokens;
  while (int64_t(tokens.size()) < count)
    for (const char* c = words[rng.below(13)]; *c && int64_t(tokens.size()) < count; ++c)
      tokens.push_back(int32_t(static_cast<unsigned char>(*c)));
  return tokens;
}

// A data directory as `infini prepare` writes it (byte tokenizer).
inline void write_dataset(const std::string& dir, const std::vector<int32_t>& train,
                          const std::vector<int32_t>& val, int64_t vocab = 256) {
  std::filesystem::create_directories(dir);
  token_shard_write(dir + "/train.tokens", train, vocab);
  token_shard_write(dir + "/val.tokens", val, vocab);
  const nlohmann::json dataset = {{"format", "infini-dataset"},
                                  {"version", 1},
                                  {"tokenizer", {{"type", "byte"}}},
                                  {"vocab_size", vocab}};
  std::ofstream(dir + "/dataset.json") << dataset.dump(2) << "\n";
}

inline std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every file under `dir` (symlinks as "-> target") with its bytes.
inline std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    const std::string rel = std::filesystem::relative(e.path(), dir).string();
    if (e.is_symlink())
      files[rel] = "-> " + std::filesystem::read_symlink(e.path()).string();
    else if (e.is_regular_file())
      files[rel] = read_file(e.path().string());
  }
  return files;
}

inline CommandResult train(const std::string& args) {
  return run_command(cli() + " train " + args);
}

}  // namespace infini::test
