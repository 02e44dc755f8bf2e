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
  // The bytes one id stands for, so that text can be decoded a token at a time (generation):
  // concatenating token_bytes over ids gives decode(ids) byte for byte, even where decode of a
  // single id could not (a byte-fallback piece holding half of a UTF-8 character).
  // SentencePiece control ids (<s>, </s>) give "", <unk> gives " \u2047 " as decode does.
  virtual std::string token_bytes(int32_t id) const = 0;
};

std::unique_ptr<Tokenizer> byte_tokenizer();
// type: "byte" or "sentencepiece" (config.json's tokenizer.type); model_path: the SentencePiece
// .model file (ignored for bytes). Errors name the file.
std::unique_ptr<Tokenizer> tokenizer_load(const std::string& type, const std::string& model_path);

// Loads a SentencePiece .model file. The model must give text back exactly
// (decode(encode(x)) == x): models from sentencepiece_train always do; a model trained with
// add_dummy_prefix or a normalization rule (NFKC) is refused with an explanation.
std::unique_ptr<Tokenizer> sentencepiece_tokenizer(const std::string& model_path);

// Trains a SentencePiece BPE model on the lines of `input_files` (read in order; a line is the
// text between newlines, the newline itself becomes the user-defined piece "\n") and writes
// `model_prefix`.model and `model_prefix`.vocab (one "piece<TAB>score" line per id; control
// characters in pieces are written escaped, e.g. "\n"), each atomically.
// Settings (docs/formats.md "Tokenizers"): model_type=bpe, byte_fallback (any bytes encode),
// character_coverage=1, normalization identity, no extra-whitespace removal, no dummy prefix
// (so decode(encode(x)) == x and encoding may be split at newlines), every line used in file
// order with no sampling or shuffling, one thread: the same files and vocab_size give the same
// .model bytes on every run, wherever the output goes. ids 0, 1, 2, 3 are <unk>, <s>, </s>, "\n";
// 4..259 are the bytes <0x00>..<0xFF>. verbose: let SentencePiece log its progress to stderr.
void sentencepiece_train(const std::vector<std::string>& input_files,
                         const std::string& model_prefix, int64_t vocab_size, bool verbose = false);

// Where the first piece of `text` may end so that it can be encoded on its own with the same ids
// as within the whole text (for models from sentencepiece_train; any cut is exact for bytes):
// text.size() if it fits in max_bytes, else just after the last '\n' within max_bytes, else just
// before the last ' ', else at the last UTF-8 character boundary (always > 0 for max_bytes >= 4).
size_t text_chunk_end(std::string_view text, size_t max_bytes);

}  // namespace infini
