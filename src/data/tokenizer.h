// Tokenizers: byte-level (id = byte value, vocab 256, nothing added) and SentencePiece BPE trained
// on the corpus (`infini tokenizer train`), saved inside the checkpoint directory and named in
// config.json ("tokenizer": {"type": "sentencepiece", "model_file": "tokenizer.model"}).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace infini {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(const int32_t* ids, int64_t count) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::string name() const = 0;  // "byte" or "sentencepiece"
};

std::unique_ptr<Tokenizer> byte_tokenizer();
// type: "byte" or "sentencepiece" (config.json's tokenizer.type); model_path: the SentencePiece
// .model file (ignored for bytes). Errors name the file.
std::unique_ptr<Tokenizer> tokenizer_load(const std::string& type, const std::string& model_path);

}  // namespace infini
