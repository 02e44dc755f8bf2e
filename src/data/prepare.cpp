// prepare_corpus (prepare.h): read, check, tokenize, split, write. The order of the steps is the
// point: every error a user can cause is found before the first output file is written.
#include "data/prepare.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/progress.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "data/utf8.h"
#include "io/atomic_file.h"

namespace infini {

namespace fs = std::filesystem;

namespace {

constexpr size_t kReadBlockBytes = size_t(1) << 20;
// Text is handed to the tokenizer in pieces of about this size, cut where it may be cut
// (text_chunk_end), so memory stays bounded whatever the line lengths.
constexpr size_t kEncodeBlockBytes = size_t(1) << 20;

std::string hex64(uint64_t v) {
  char text[20];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(v));
  return text;
}

void check_options(const PrepareOptions& o) {
  if (o.inputs.empty())
    throw Error("--input", "no input files given", "name one or more text files");
  if (!std::isfinite(o.val_fraction) || o.val_fraction <= 0 || o.val_fraction >= 1)
    throw Error("--val-fraction", str(o.val_fraction, " is not strictly between 0 and 1"),
                "e.g. 0.05 keeps the last 5% of the tokens for validation");
  if (o.out_dir.empty()) throw Error("--out", "no output directory given", "e.g. --out data/kjv");
}

std::vector<PrepareInput> check_inputs(const std::vector<std::string>& inputs) {
  std::vector<PrepareInput> out;
  for (const std::string& path : inputs) {
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (!fs::exists(status)) throw Error(path, "no such input file", "check the --input path");
    if (!fs::is_regular_file(status))
      throw Error(path, "not a regular file", "--input takes text files, not directories");
    if (!std::ifstream(path, std::ios::binary))
      throw Error(path, "cannot open for reading", "check the file's permissions");
    const int64_t size = int64_t(fs::file_size(path, ec));
    if (ec) throw Error(path, str("cannot read the size: ", ec.message()));
    if (size == 0)
      throw Error(path, "the input file is empty", "remove it from --input or give it some text");
    out.push_back({path, size, 0});
  }
  return out;
}

std::unique_ptr<Tokenizer> open_tokenizer(const std::string& spec) {
  if (spec == "byte") return byte_tokenizer();
  std::error_code ec;
  if (!fs::exists(spec, ec))
    throw Error("--tokenizer", str("\"", spec, "\" is neither \"byte\" nor an existing file"),
                "give \"byte\" or a SentencePiece .model from `infini tokenizer train`");
  return sentencepiece_tokenizer(spec);
}

// Creates the directory if missing and proves that a file can be written there. Returns whether
// the directory was created (so that a failed run can remove it again).
bool prepare_out_dir(const std::string& dir) {
  std::error_code ec;
  const bool existed = fs::exists(dir, ec);
  if (existed && !fs::is_directory(dir, ec))
    throw Error(dir, "exists and is not a directory", "give --out a directory path");
  if (!existed && !fs::create_directories(dir, ec))
    throw Error(dir, str("cannot create the output directory: ", ec.message()),
                "check the --out path and the permissions of its parent");
  const std::string probe = (fs::path(dir) / ".prepare-probe").string();
  if (!std::ofstream(probe, std::ios::binary)) {
    if (!existed) fs::remove(dir, ec);
    throw Error(dir, "cannot write files in the output directory",
                "check its permissions and free space");
  }
  fs::remove(probe, ec);
  return !existed;
}

// Reads every input once: checksums, the UTF-8 check (SentencePiece) and the token stream.
std::vector<int32_t> tokenize_inputs(const PrepareOptions& o, const Tokenizer& tokenizer,
                                     std::vector<PrepareInput>& inputs) {
  const bool check_utf8 = tokenizer.name() == "sentencepiece";
  const char* utf8_hint =
      "SentencePiece would not give this text back exactly; convert the file to UTF-8 "
      "(e.g. iconv -f latin1 -t utf-8), remove the character, or use --tokenizer byte";
  if (check_utf8) {
    Utf8Checker separator;
    if (!separator.feed(o.separator.data(), o.separator.size()) || !separator.finish())
      throw Error("--separator", separator.problem(), utf8_hint);
  }
  int64_t total = 0, done = 0;
  for (const PrepareInput& input : inputs) total += input.bytes;
  if (o.progress) o.progress->update(0);

  std::vector<int32_t> tokens;
  tokens.reserve(size_t(total / (check_utf8 ? 3 : 1)));
  std::string pending;  // text read and not yet tokenized
  std::vector<char> block(kReadBlockBytes);
  auto drain = [&](bool all) {
    std::string_view text(pending);
    // Not at the end, only text longer than a block is cut: what fits might end mid-word.
    while (!text.empty() && (all || text.size() > kEncodeBlockBytes)) {
      const size_t end = all ? text.size() : text_chunk_end(text, kEncodeBlockBytes);
      const std::vector<int32_t> ids = tokenizer.encode(text.substr(0, end));
      tokens.insert(tokens.end(), ids.begin(), ids.end());
      text.remove_prefix(end);
    }
    pending.erase(0, pending.size() - text.size());
  };

  for (size_t f = 0; f < inputs.size(); ++f) {
    PrepareInput& input = inputs[f];
    if (f > 0) pending += o.separator;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(input.path.c_str(), "rb"),
                                                         std::fclose);
    if (!file) throw Error(input.path, "cannot open for reading");
    Utf8Checker utf8;
    uint64_t hash = fnv1a64(nullptr, 0);
    int64_t bytes = 0;
    size_t got;
    while ((got = std::fread(block.data(), 1, block.size(), file.get())) > 0) {
      hash = fnv1a64(block.data(), got, hash);
      if (check_utf8 && !utf8.feed(block.data(), got))
        throw Error(str(input.path, ":", utf8.line(), ":", utf8.column()),
                    str(utf8.problem(), " (byte offset ", utf8.offset(), ")"), utf8_hint);
      bytes += int64_t(got);
      pending.append(block.data(), got);
      drain(false);
      if (o.progress) o.progress->update(done + bytes);
    }
    if (std::ferror(file.get())) throw Error(input.path, "read error", "check the disk");
    if (check_utf8 && !utf8.finish())
      throw Error(str(input.path, ":", utf8.line(), ":", utf8.column()),
                  str(utf8.problem(), " (byte offset ", utf8.offset(), ")"), utf8_hint);
    if (bytes != input.bytes)
      throw Error(
          input.path,
          str("changed while being read: ", input.bytes, " bytes expected, ", bytes, " read"),
          "run prepare again once the file is complete");
    input.fnv1a64 = hash;
    done += bytes;
  }
  drain(true);
  return tokens;
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) throw Error(path, "cannot read the file");
  return text.str();
}

}  // namespace

uint64_t fnv1a64(const void* data, size_t size, uint64_t hash) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    hash ^= p[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}

int64_t validation_tokens(int64_t total_tokens, double val_fraction) {
  if (total_tokens < 2) return 0;
  const int64_t v = std::llround(double(total_tokens) * val_fraction);
  return std::clamp<int64_t>(v, 1, total_tokens - 1);
}

PrepareResult prepare_corpus(const PrepareOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  check_options(o);
  PrepareResult r;
  r.inputs = check_inputs(o.inputs);
  const std::unique_ptr<Tokenizer> tokenizer = open_tokenizer(o.tokenizer);
  r.tokenizer = tokenizer->name();
  r.vocab_size = tokenizer->vocab_size();
  const bool created = prepare_out_dir(o.out_dir);

  std::vector<int32_t> tokens;
  TokenShard loss_mask;
  try {
    if (!o.loss_mask.empty()) {
      loss_mask = TokenShard::open(o.loss_mask);
      if (loss_mask.vocab_size() > 2)
        throw Error(o.loss_mask, str("holds ids below ", loss_mask.vocab_size(), ", not 0/1"),
                    "a loss mask holds one 0/1 id per token of the inputs, in order");
    }
    tokens = tokenize_inputs(o, *tokenizer, r.inputs);
    if (tokens.size() < 2)
      throw Error("--input",
                  str("the text makes only ", tokens.size(),
                      " token(s); a train and a validation split need at least 2"),
                  "give more text");
    if (!o.loss_mask.empty() && loss_mask.size() != int64_t(tokens.size()))
      throw Error(o.loss_mask,
                  str("is not a loss mask of this text: it holds ", loss_mask.size(),
                      " ids, the text makes ", tokens.size(), " tokens"),
                  "a loss mask holds one 0/1 id per token of the inputs, in order");
  } catch (...) {
    std::error_code ec;
    if (created) fs::remove(o.out_dir, ec);  // only removes it if still empty
    throw;
  }
  const int64_t total = int64_t(tokens.size());
  r.val_tokens = validation_tokens(total, o.val_fraction);
  r.train_tokens = total - r.val_tokens;
  for (const PrepareInput& input : r.inputs) r.total_bytes += input.bytes;
  r.total_bytes += int64_t(o.separator.size()) * int64_t(r.inputs.size() - 1);

  const fs::path dir(o.out_dir);
  r.train_path = (dir / "train.tokens").string();
  r.val_path = (dir / "val.tokens").string();
  r.dataset_path = (dir / "dataset.json").string();
  const std::string model_copy = (dir / "tokenizer.model").string();
  // An old dataset.json must not vouch for files that are about to change.
  std::error_code ec;
  fs::remove(r.dataset_path, ec);
  fs::remove(model_copy, ec);

  token_shard_write(r.train_path, tokens.data(), r.train_tokens, r.vocab_size);
  token_shard_write(r.val_path, tokens.data() + r.train_tokens, r.val_tokens, r.vocab_size);
  fs::remove(dir / "train.mask", ec);
  fs::remove(dir / "val.mask", ec);
  if (!o.loss_mask.empty()) {
    std::vector<int32_t> mask(tokens.size());
    loss_mask.read(0, total, mask.data());
    token_shard_write((dir / "train.mask").string(), mask.data(), r.train_tokens, 2);
    token_shard_write((dir / "val.mask").string(), mask.data() + r.train_tokens, r.val_tokens, 2);
  }

  nlohmann::json tokenizer_json = {{"type", r.tokenizer}};
  if (r.tokenizer == "sentencepiece") {
    const std::string model = read_whole_file(o.tokenizer);
    write_file_atomic(model_copy, model);
    tokenizer_json["model_file"] = "tokenizer.model";
    tokenizer_json["source"] = fs::absolute(o.tokenizer).lexically_normal().string();
    tokenizer_json["fnv1a64"] = hex64(fnv1a64(model.data(), model.size()));
  }
  nlohmann::json inputs = nlohmann::json::array();
  for (const PrepareInput& input : r.inputs)
    inputs.push_back({{"path", fs::absolute(input.path).lexically_normal().string()},
                      {"bytes", input.bytes},
                      {"fnv1a64", hex64(input.fnv1a64)}});
  const nlohmann::json dataset = {
      {"format", "infini-dataset"},
      {"version", 1},
      {"tokenizer", tokenizer_json},
      {"vocab_size", r.vocab_size},
      {"val_fraction", o.val_fraction},
      {"separator", o.separator},
      {"train", {{"file", "train.tokens"}, {"tokens", r.train_tokens}}},
      {"val", {{"file", "val.tokens"}, {"tokens", r.val_tokens}}},
      {"loss_mask", o.loss_mask.empty() ? nlohmann::json(nullptr)
                                        : nlohmann::json({{"train", "train.mask"},
                                                          {"val", "val.mask"},
                                                          {"source", o.loss_mask}})},
      {"text_bytes", r.total_bytes},
      {"inputs", inputs},
  };
  write_file_atomic(r.dataset_path,
                    dataset.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  if (o.progress) o.progress->finish();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace infini
