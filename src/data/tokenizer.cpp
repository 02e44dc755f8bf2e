// The byte tokenizer (id = byte value, 256 ids, nothing added or removed), the choice between it
// and SentencePiece (tokenizer_load), and the rule for cutting long text into pieces that encode
// independently (text_chunk_end). SentencePiece itself lives in sentencepiece_tokenizer.cpp.
#include "data/tokenizer.h"

#include "core/error.h"

namespace infini {

namespace {

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = int32_t(static_cast<unsigned char>(text[i]));
    return ids;
  }
  std::string decode(const int32_t* ids, int64_t count) const override {
    std::string text(size_t(count), '\0');
    for (int64_t i = 0; i < count; ++i) {
      check(ids[i], i);
      text[size_t(i)] = char(static_cast<unsigned char>(ids[i]));
    }
    return text;
  }
  int64_t vocab_size() const override { return 256; }
  std::string name() const override { return "byte"; }
  std::string token_bytes(int32_t id) const override {
    check(id, 0);
    return std::string(1, char(static_cast<unsigned char>(id)));
  }

 private:
  static void check(int32_t id, int64_t index) {
    if (id < 0 || id > 255)
      throw Error("byte tokenizer",
                  str("id ", id, " at position ", index, " is not a byte (0..255)"),
                  "the ids come from a model or file with a larger vocabulary");
  }
};

}  // namespace

std::unique_ptr<Tokenizer> byte_tokenizer() {
  return std::make_unique<ByteTokenizer>();
}

std::unique_ptr<Tokenizer> tokenizer_load(const std::string& type, const std::string& model_path) {
  if (type == "byte") return byte_tokenizer();
  if (type == "sentencepiece") {
    if (model_path.empty())
      throw Error("tokenizer", "type \"sentencepiece\" needs a .model file and none was given",
                  "name it in config.json as \"tokenizer\": {\"type\": \"sentencepiece\", "
                  "\"model_file\": \"tokenizer.model\"}");
    return sentencepiece_tokenizer(model_path);
  }
  throw Error("tokenizer", str("unknown tokenizer type \"", type, "\""),
              "use \"byte\" or \"sentencepiece\"");
}

size_t text_chunk_end(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text.size();
  const std::string_view window = text.substr(0, max_bytes);
  const size_t newline = window.rfind('\n');
  if (newline != std::string_view::npos) return newline + 1;
  const size_t space = window.rfind(' ');
  if (space != std::string_view::npos && space > 0) return space;
  // No newline or space: cut before the last character that starts within the window (a UTF-8
  // continuation byte is 10xxxxxx). Going back more than 3 bytes means the text is not UTF-8.
  size_t cut = max_bytes;
  for (int back = 0; back < 4 && cut > 1; ++back, --cut)
    if ((static_cast<unsigned char>(text[cut]) & 0xc0) != 0x80) return cut;
  return max_bytes;
}

}  // namespace infini
