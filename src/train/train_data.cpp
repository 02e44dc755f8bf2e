#include "train/train_data.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/json_strict.h"
#include "kernels/cross_entropy.h"

namespace infini {

namespace fs = std::filesystem;

namespace {

const char* const kPrepareHint =
    "prepare a data directory with `infini prepare --input FILES --out DIR` and pass --data DIR";

// dataset.json's tokenizer: {"tokenizer": {"type": T, "model_file": F}} or {"tokenizer": T}.
void read_dataset_json(TrainData& data) {
  const std::string path = (fs::path(data.dir) / "dataset.json").string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, "missing", kPrepareHint);
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = json_parse_strict(text.str(), path);
  if (!j.is_object()) throw Error(path, "is not a JSON object", kPrepareHint);
  const nlohmann::json* tokenizer = j.contains("tokenizer") ? &j.at("tokenizer") : nullptr;
  if (!tokenizer || tokenizer->is_null()) return;  // bytes
  if (tokenizer->is_string()) {
    data.tokenizer_type = tokenizer->get<std::string>();
  } else if (tokenizer->is_object() && tokenizer->contains("type") &&
             tokenizer->at("type").is_string()) {
    data.tokenizer_type = tokenizer->at("type").get<std::string>();
    if (tokenizer->contains("model_file") && tokenizer->at("model_file").is_string())
      data.tokenizer_model =
          (fs::path(data.dir) / tokenizer->at("model_file").get<std::string>()).string();
  } else {
    throw Error(
        path + ": key \"tokenizer\"", "is " + tokenizer->dump(),
        "expected {\"type\": \"byte\"} or {\"type\": \"sentencepiece\", \"model_file\": ...}");
  }
  if (data.tokenizer_type == "sentencepiece" && data.tokenizer_model.empty())
    data.tokenizer_model = (fs::path(data.dir) / "tokenizer.model").string();
  if (data.tokenizer_type != "byte" && data.tokenizer_type != "sentencepiece")
    throw Error(path + ": key \"tokenizer\"", "names tokenizer '" + data.tokenizer_type + "'",
                "expected byte or sentencepiece");
}

TokenShard open_shard(const std::string& dir, const char* name) {
  const std::string path = (fs::path(dir) / name).string();
  if (!fs::exists(path)) throw Error(path, "missing", kPrepareHint);
  return TokenShard::open(path);
}

// A loss mask: 0/1 ids, one per token of `tokens`.
TokenShard open_mask(const std::string& dir, const char* name, const TokenShard& tokens) {
  const std::string path = (fs::path(dir) / name).string();
  if (!fs::exists(path))
    throw Error(path, "missing: the directory has train.mask, so each shard needs its loss mask",
                "rewrite the directory with the command that made it (`infini data passkey`)");
  TokenShard mask = TokenShard::open(path);
  if (mask.size() != tokens.size() || mask.vocab_size() > 2)
    throw Error(path,
                str("is not a loss mask of ", tokens.path(), ": ", mask.size(), " ids below ",
                    mask.vocab_size(), ", expected ", tokens.size(), " ids below 2"),
                "rewrite the directory with the command that made it (`infini data passkey`)");
  return mask;
}

void check_shard(const TokenShard& shard, int64_t seq_len, int64_t model_vocab, bool validation) {
  const std::string or_no_eval = validation ? "; or --eval-batches 0 to train without held-out "
                                              "evaluation"
                                            : "";
  if (shard.size() == 0)
    throw Error(shard.path(), "holds no tokens",
                "the text it was prepared from was empty" + or_no_eval);
  if (shard.size() < seq_len + 1)
    throw Error(shard.path(),
                str("holds ", shard.size(),
                    " tokens, fewer than one training window of --seq-len + 1 = ", seq_len + 1),
                "use more text or a shorter --seq-len" + or_no_eval);
  if (shard.vocab_size() > model_vocab)
    throw Error(shard.path(),
                str("was tokenized with a vocabulary of ", shard.vocab_size(),
                    " ids, more than the model's vocab_size (", model_vocab, ")"),
                "the data and the model must use the same tokenizer: prepare the data with the "
                "model's tokenizer, or start a model whose vocab_size fits");
}

}  // namespace

TrainData train_data_open(const std::string& dir, bool need_val) {
  if (dir.empty()) throw Error("--data", "is required", kPrepareHint);
  if (!fs::is_directory(dir)) throw Error(dir, "no such data directory", kPrepareHint);
  TrainData data;
  data.dir = dir;
  read_dataset_json(data);
  data.train = open_shard(dir, "train.tokens");
  if (need_val) {
    data.val = open_shard(dir, "val.tokens");
    data.has_val = true;
  }
  data.has_mask = fs::exists(fs::path(dir) / "train.mask");
  if (data.has_mask) {
    data.train_mask = open_mask(dir, "train.mask", data.train);
    if (need_val) data.val_mask = open_mask(dir, "val.mask", data.val);
  }
  data.tokenizer = tokenizer_load(data.tokenizer_type, data.tokenizer_model);
  return data;
}

void train_data_check(const TrainData& data, int64_t seq_len, int64_t model_vocab,
                      const std::string& model_tokenizer) {
  if (model_tokenizer != data.tokenizer_type)
    throw Error(data.dir,
                "was tokenized with the " + data.tokenizer_type +
                    " tokenizer, the model uses the " + model_tokenizer + " tokenizer",
                "prepare the data with the model's tokenizer");
  check_shard(data.train, seq_len, model_vocab, false);
  if (data.has_val) check_shard(data.val, seq_len, model_vocab, true);
  if (data.tokenizer->vocab_size() > model_vocab)
    throw Error(data.dir,
                str("the data's tokenizer has ", data.tokenizer->vocab_size(),
                    " ids, the model's vocab_size is ", model_vocab),
                "prepare the data with the model's tokenizer");
}

void batch_next(BatchReader& reader, const TokenShard& shard, int32_t* inputs, int32_t* targets,
                const TokenShard* mask) {
  const int64_t B = reader.batch, T = reader.seq_len;
  std::vector<int64_t> starts(B);
  const int64_t windows = (shard.size() - 1) / T;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t row = reader.rows_read++;
    starts[b] = reader.order == "sequential"
                    ? (row % windows) * T
                    : int64_t(reader.rng.below(uint64_t(shard.size() - T)));
  }
  batch_from_windows(shard, starts.data(), B, T, inputs, targets, mask);
}

std::vector<int64_t> eval_window_starts(const TokenShard& shard, int64_t windows, int64_t seq_len) {
  const int64_t available = (shard.size() - 1) / seq_len;
  std::vector<int64_t> starts(windows);
  for (int64_t i = 0; i < windows; ++i)
    starts[i] = (windows <= available ? i * available / windows : i % available) * seq_len;
  return starts;
}

void batch_from_windows(const TokenShard& shard, const int64_t* starts, int64_t batch,
                        int64_t seq_len, int32_t* inputs, int32_t* targets,
                        const TokenShard* mask) {
  const int64_t T = seq_len;
  std::vector<int32_t> window(T + 1), scored(mask ? T : 0);
  for (int64_t b = 0; b < batch; ++b) {
    shard.read(starts[b], T + 1, window.data());
    std::copy_n(window.data(), T, inputs + b * T);
    std::copy_n(window.data() + 1, T, targets + b * T);
    if (!mask) continue;
    mask->read(starts[b] + 1, T, scored.data());
    for (int64_t t = 0; t < T; ++t)
      if (!scored[t]) targets[b * T + t] = kIgnoredTarget;
  }
}

TargetCount count_targets(const TokenShard& shard, const Tokenizer& tokenizer,
                          const std::vector<int64_t>& starts, int64_t seq_len,
                          const TokenShard* mask) {
  std::vector<int32_t> window(seq_len + 1), scored(seq_len + 1, 1);
  TargetCount count;
  for (int64_t start : starts) {
    shard.read(start, seq_len + 1, window.data());
    if (mask) mask->read(start, seq_len + 1, scored.data());
    for (int64_t t = 1; t <= seq_len; ++t) {
      if (!scored[t]) continue;
      count.tokens += 1;
      count.bytes += int64_t(tokenizer.token_bytes(window[t]).size());
    }
  }
  return count;
}

}  // namespace infini
