// infini tokenizer train|encode|decode: train a SentencePiece BPE model on a corpus, and look at
// what a tokenizer does to a piece of text (src/data/tokenizer.h).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "data/tokenizer.h"

namespace infini::cli {
namespace {

struct TrainFlags {
  std::vector<std::string> inputs;
  std::string out;
  int64_t vocab_size = 0;
  bool verbose = false, json = false;
};

struct EncodeFlags {
  std::string model, text, input;
  bool pieces = false, json = false;
};

struct DecodeFlags {
  std::string model;
  std::vector<int64_t> ids;
};

std::unique_ptr<Tokenizer> open_model(const std::string& model) {
  return model == "byte" ? byte_tokenizer() : sentencepiece_tokenizer(model);
}

// A token's bytes, readable and on one line: printable ASCII and whole UTF-8 characters as they
// are, \n \t \\ for those, \xHH for any other byte (control bytes, pieces of a character).
std::string visible(const std::string& bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size();) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    size_t length = c < 0x80                 ? 1
                    : c >= 0xc2 && c <= 0xdf ? 2
                    : c >= 0xe0 && c <= 0xef ? 3
                    : c >= 0xf0 && c <= 0xf4 ? 4
                                             : 0;
    for (size_t k = 1; k < length; ++k)
      if (i + k >= bytes.size() || (static_cast<unsigned char>(bytes[i + k]) & 0xc0) != 0x80)
        length = 0;
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (length == 0 || c < 0x20 || c == 0x7f) {
      out += str("\\x", "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]);
      length = 1;
    } else {
      out.append(bytes, i, length);
      i += length;
      continue;
    }
    ++i;
  }
  return out;
}

void run_train(const TrainFlags& f) {
  const auto start = std::chrono::steady_clock::now();
  sentencepiece_train(f.inputs, f.out, f.vocab_size, f.verbose);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (f.json) {
    const nlohmann::json j = {{"model", f.out + ".model"},
                              {"vocab", f.out + ".vocab"},
                              {"vocab_size", f.vocab_size},
                              {"inputs", f.inputs},
                              {"seconds", seconds}};
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("wrote %s.model and %s.vocab (%lld pieces) in %.2f s\n", f.out.c_str(),
                f.out.c_str(), (long long)f.vocab_size, seconds);
  }
}

void run_encode(const EncodeFlags& f) {
  const std::unique_ptr<Tokenizer> tokenizer = open_model(f.model);
  std::string text = f.text;
  if (!f.input.empty()) {
    std::ifstream in(f.input, std::ios::binary);
    if (!in) throw Error(f.input, "cannot open for reading", "check the --input path");
    std::ostringstream all;
    all << in.rdbuf();
    text = all.str();
  }
  const std::vector<int32_t> ids = tokenizer->encode(text);
  if (f.json) {
    nlohmann::json j = {{"tokenizer", tokenizer->name()},
                        {"vocab_size", tokenizer->vocab_size()},
                        {"bytes", text.size()},
                        {"tokens", ids.size()},
                        {"ids", ids}};
    if (f.pieces) {
      nlohmann::json pieces = nlohmann::json::array();
      for (int32_t id : ids) pieces.push_back(visible(tokenizer->token_bytes(id)));
      j["pieces"] = pieces;
    }
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += f.pieces ? "[" + visible(tokenizer->token_bytes(ids[i])) + "]" : std::to_string(ids[i]);
  }
  std::printf("%s\n", line.c_str());
}

void run_decode(const DecodeFlags& f) {
  const std::unique_ptr<Tokenizer> tokenizer = open_model(f.model);
  std::vector<int32_t> ids;
  for (size_t i = 0; i < f.ids.size(); ++i) {
    if (f.ids[i] < 0 || f.ids[i] >= tokenizer->vocab_size())
      throw Error("--ids", str("id ", f.ids[i], " (number ", i + 1,
                               ") is outside the vocabulary [0, ", tokenizer->vocab_size(), ")"));
    ids.push_back(int32_t(f.ids[i]));
  }
  const std::string text = tokenizer->decode(ids.data(), int64_t(ids.size()));
  std::fwrite(text.data(), 1, text.size(), stdout);
}

void add_tokenizer(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "tokenizer",
      "Train a SentencePiece BPE tokenizer on a corpus, or see what a tokenizer does to text.\n"
      "Examples:\n"
      "  bible gen1:1-rev22:21 > kjv.txt\n"
      "  infini tokenizer train --input kjv.txt --vocab-size 4000 --out tok/kjv\n"
      "  infini tokenizer encode --model tok/kjv.model --text \"In the beginning\" --pieces\n"
      "  infini tokenizer decode --model tok/kjv.model --ids 3955 3934 262 2267");
  cmd->require_subcommand(1);

  auto t = std::make_shared<TrainFlags>();
  CLI::App* train = cmd->add_subcommand(
      "train",
      "Train a SentencePiece BPE model on the lines of text files and write PREFIX.model and\n"
      "PREFIX.vocab. Byte fallback (any text encodes), no normalization and no dummy prefix, so\n"
      "decoding gives the text back exactly; the newline is a piece of its own. Every line is\n"
      "used, in order, on one thread: the same files and size give the same .model bytes.\n"
      "ids 0..259 are <unk>, <s>, </s>, newline and the 256 bytes. Example:\n"
      "  infini tokenizer train --input kjv.txt --vocab-size 4000 --out tok/kjv");
  train->add_option("--input", t->inputs, "training text files")->required()->expected(1, -1);
  train->add_option("--vocab-size", t->vocab_size, "number of pieces, more than 260")->required();
  train->add_option("--out", t->out, "output prefix: writes PREFIX.model and PREFIX.vocab")
      ->required();
  train->add_flag("--verbose", t->verbose, "show SentencePiece's training log");
  train->add_flag("--json", t->json, "print the result as JSON");
  train->callback([t] { run_train(*t); });

  auto e = std::make_shared<EncodeFlags>();
  CLI::App* encode = cmd->add_subcommand(
      "encode",
      "Print the token ids of a text (or, with --pieces, the bytes of each token). Example:\n"
      "  infini tokenizer encode --model tok/kjv.model --text \"And God said\" --pieces");
  encode->add_option("--model", e->model, "a SentencePiece .model file, or \"byte\"")->required();
  CLI::Option* text = encode->add_option("--text", e->text, "the text to encode");
  CLI::Option* input = encode->add_option("--input", e->input, "encode this file's contents");
  text->excludes(input);
  input->excludes(text);
  encode->add_flag("--pieces", e->pieces, "show each token's text instead of its id");
  encode->add_flag("--json", e->json, "print ids (and pieces) as JSON");
  encode->callback([e, text, input] {
    if (text->count() == 0 && input->count() == 0)
      throw Error("tokenizer encode", "nothing to encode", "give --text \"...\" or --input FILE");
    run_encode(*e);
  });

  auto d = std::make_shared<DecodeFlags>();
  CLI::App* decode = cmd->add_subcommand(
      "decode",
      "Write the text of a list of token ids to stdout, byte for byte (no newline added).\n"
      "Example:\n"
      "  infini tokenizer decode --model tok/kjv.model --ids 3955 3934 262 2267");
  decode->add_option("--model", d->model, "a SentencePiece .model file, or \"byte\"")->required();
  decode->add_option("--ids", d->ids, "token ids")->required()->expected(1, -1);
  decode->callback([d] { run_decode(*d); });
}

Registration registration{add_tokenizer};

}  // namespace
}  // namespace infini::cli
