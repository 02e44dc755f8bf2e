// infini prepare: text files -> train.tokens + val.tokens + dataset.json (src/data/prepare.h).
#include <cstdio>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "data/prepare.h"

namespace infini::cli {
namespace {

struct PrepareFlags {
  std::vector<std::string> inputs;
  std::string out, tokenizer = "byte", separator;
  double val_fraction = 0.05;
  std::string loss_mask;
  bool json = false;
};

// --separator takes C-style escapes so that a newline can be typed: \n \t \r \0 \\ \xHH.
std::string unescape(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out += text[i];
      continue;
    }
    if (++i == text.size())
      throw Error("--separator", "ends with a lone backslash", "write \\\\ for a backslash");
    switch (text[i]) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case '0':
        out += '\0';
        break;
      case '\\':
        out += '\\';
        break;
      case 'x': {
        const std::string hex = text.substr(i + 1, 2);
        if (hex.size() != 2 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
          throw Error("--separator", "\\x needs two hex digits", "e.g. \\x0a for a newline");
        out += char(std::stoi(hex, nullptr, 16));
        i += 2;
        break;
      }
      default:
        throw Error("--separator", str("unknown escape \\", text[i]),
                    "use \\n \\t \\r \\0 \\\\ or \\xHH");
    }
  }
  return out;
}

void run_prepare(const PrepareFlags& f) {
  PrepareOptions o;
  o.inputs = f.inputs;
  o.out_dir = f.out;
  o.tokenizer = f.tokenizer;
  o.val_fraction = f.val_fraction;
  o.separator = unescape(f.separator);
  o.loss_mask = f.loss_mask;
  int64_t total = 0;
  for (const std::string& path : f.inputs) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (!ec) total += int64_t(size);
  }
  Progress progress("prepare", total, "B");
  o.progress = &progress;
  const PrepareResult r = prepare_corpus(o);

  const int64_t tokens = r.train_tokens + r.val_tokens;
  const double bytes_per_token = tokens > 0 ? double(r.total_bytes) / double(tokens) : 0;
  if (f.json) {
    nlohmann::json inputs = nlohmann::json::array();
    for (const PrepareInput& input : r.inputs) {
      char hash[20];
      std::snprintf(hash, sizeof hash, "%016llx", (unsigned long long)input.fnv1a64);
      inputs.push_back({{"path", input.path}, {"bytes", input.bytes}, {"fnv1a64", hash}});
    }
    const nlohmann::json j = {{"out", f.out},
                              {"tokenizer", r.tokenizer},
                              {"vocab_size", r.vocab_size},
                              {"train_tokens", r.train_tokens},
                              {"val_tokens", r.val_tokens},
                              {"text_bytes", r.total_bytes},
                              {"bytes_per_token", bytes_per_token},
                              {"train", r.train_path},
                              {"val", r.val_path},
                              {"dataset", r.dataset_path},
                              {"inputs", inputs},
                              {"seconds", r.seconds}};
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::printf("tokenizer       %s, vocabulary %lld\n", r.tokenizer.c_str(),
              (long long)r.vocab_size);
  std::printf("text            %zu file%s, %s (%.3f bytes per token)\n", r.inputs.size(),
              r.inputs.size() == 1 ? "" : "s", human_bytes(double(r.total_bytes)).c_str(),
              bytes_per_token);
  std::printf("train tokens    %lld -> %s\n", (long long)r.train_tokens, r.train_path.c_str());
  std::printf("val tokens      %lld -> %s (the last %.2f%%)\n", (long long)r.val_tokens,
              r.val_path.c_str(), 100.0 * double(r.val_tokens) / double(tokens));
  std::printf("dataset         %s\n", r.dataset_path.c_str());
  std::printf("time            %.2f s (%s/s)\n", r.seconds,
              human_bytes(r.seconds > 0 ? double(r.total_bytes) / r.seconds : 0).c_str());
}

void add_prepare(CLI::App& app) {
  auto f = std::make_shared<PrepareFlags>();
  CLI::App* cmd = app.add_subcommand(
      "prepare",
      "Tokenize text files into training data: DIR/train.tokens and DIR/val.tokens (token\n"
      "shards), DIR/dataset.json (tokenizer, token counts, input sizes and FNV-1a checksums) and,\n"
      "with a SentencePiece tokenizer, a copy of it as DIR/tokenizer.model. The files are read\n"
      "in order and tokenized as one stream; its last --val-fraction of tokens is the validation\n"
      "split. Nothing is written unless every input is readable and the text can be tokenized\n"
      "exactly. Examples:\n"
      "  bible gen1:1-rev22:21 > kjv.txt\n"
      "  infini prepare --input kjv.txt --out data/kjv-bytes\n"
      "  infini tokenizer train --input kjv.txt --vocab-size 4000 --out tok/kjv\n"
      "  infini prepare --input kjv.txt --out data/kjv-bpe --tokenizer tok/kjv.model --json");
  cmd->add_option("--input", f->inputs, "text files, tokenized in this order as one stream")
      ->required()
      ->expected(1, -1);
  cmd->add_option("--out", f->out, "output directory (created if missing)")->required();
  cmd->add_option("--tokenizer", f->tokenizer,
                  "\"byte\" (one token per byte, vocabulary 256) or a SentencePiece .model file")
      ->capture_default_str();
  cmd->add_option("--loss-mask", f->loss_mask,
                  "a 0/1 token shard with one id per token of the text (as `infini data passkey`\n"
                  "writes): split into DIR/train.mask and DIR/val.mask, so that `infini train`\n"
                  "scores only the targets marked 1");
  cmd->add_option("--val-fraction", f->val_fraction,
                  "share of the tokens, taken from the end of the stream, for validation; "
                  "strictly between 0 and 1")
      ->capture_default_str();
  cmd->add_option("--separator", f->separator,
                  "text put between consecutive files (escapes \\n \\t \\r \\0 \\\\ \\xHH); "
                  "default: none, the files' bytes are joined as they are");
  cmd->add_flag("--json", f->json, "print the summary as JSON");
  cmd->callback([f] { run_prepare(*f); });
}

Registration registration{add_prepare};

}  // namespace
}  // namespace infini::cli
