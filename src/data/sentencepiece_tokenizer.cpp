// SentencePiece BPE (Kudo & Richardson 2018, https://github.com/google/sentencepiece): loading a
// .model file as a Tokenizer, and training one on a corpus with settings that make it exact and
// reproducible (tokenizer.h, docs/formats.md "Tokenizers").
//
// Exactness: with byte fallback every byte sequence has pieces; with the identity normalization,
// no extra-whitespace removal and no dummy prefix, decoding gives the input back byte for byte
// (except malformed UTF-8 and U+2581, which SentencePiece cannot represent; `infini prepare`
// refuses them, see utf8.h). No trained piece contains a newline or has a space after its first
// character, so text cut after a newline or before a space encodes to the same ids piece by piece
// as whole; encode() cuts long text that way (SentencePiece's BPE slows down and needs ~100 bytes
// of memory per input byte on one long string).
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "data/tokenizer.h"
#include "io/atomic_file.h"

namespace infini {

namespace {

// Encode pieces of about this many bytes (measured fastest for BPE on English text).
constexpr size_t kEncodeChunkBytes = 16 * 1024;
// Training sentences longer than this are cut (before a space) rather than dropped.
constexpr size_t kMaxSentenceBytes = 64 * 1024;
// <unk>, <s>, </s>, "\n" and the 256 byte pieces.
constexpr int64_t kReservedPieces = 260;

const char* kUnkSurface = " \xe2\x81\x87 ";  // U+2047, what SentencePiece decodes <unk> as
const char* kSpaceMark = "\xe2\x96\x81";     // U+2581, SentencePiece's space

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
      throw Error(
          path, "no such SentencePiece model file",
          "train one with `infini tokenizer train --input FILE --vocab-size N --out PREFIX`");
    const sentencepiece::util::Status status = sp_.Load(path);
    if (!status.ok())
      throw Error(path, str("not a loadable SentencePiece model: ", status.ToString()),
                  "pass the .model file written by `infini tokenizer train` (not the .vocab)");
    check_exact();
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> out;
    out.reserve(text.size() / 3);
    std::vector<int> ids;
    while (!text.empty()) {
      const size_t end = text_chunk_end(text, kEncodeChunkBytes);
      const sentencepiece::util::Status status = sp_.Encode(text.substr(0, end), &ids);
      if (!status.ok()) throw Error(path_, str("SentencePiece cannot encode: ", status.ToString()));
      out.insert(out.end(), ids.begin(), ids.end());
      text.remove_prefix(end);
    }
    return out;
  }

  std::string decode(const int32_t* ids, int64_t count) const override {
    std::vector<int> list(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      check_id(ids[i], i);
      list[size_t(i)] = ids[i];
    }
    std::string text;
    const sentencepiece::util::Status status = sp_.Decode(list, &text);
    if (!status.ok()) throw Error(path_, str("SentencePiece cannot decode: ", status.ToString()));
    return text;
  }

  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  std::string name() const override { return "sentencepiece"; }

  std::string token_bytes(int32_t id) const override {
    check_id(id, 0);
    if (sp_.IsControl(id)) return {};
    if (sp_.IsUnknown(id)) return kUnkSurface;
    const std::string& piece = sp_.IdToPiece(id);
    if (sp_.IsByte(id)) {  // "<0xAB>"
      return std::string(1, char(std::stoi(piece.substr(3, 2), nullptr, 16)));
    }
    std::string out;
    for (size_t i = 0; i < piece.size();) {
      if (piece.compare(i, 3, kSpaceMark) == 0) {
        out += ' ';
        i += 3;
      } else {
        out += piece[i++];
      }
    }
    return out;
  }

 private:
  void check_id(int32_t id, int64_t index) const {
    if (id < 0 || id >= sp_.GetPieceSize())
      throw Error(path_,
                  str("id ", id, " at position ", index, " is outside the vocabulary [0, ",
                      sp_.GetPieceSize(), ")"),
                  "the ids come from a different tokenizer or model");
  }

  // Text must come back exactly, also when encoded in pieces (encode() above, `infini prepare`):
  // piece by piece, the pieces' bytes must spell the input.
  void check_exact() const {
    const std::string probe = "a  b\n\tc\xef\xac\x81\xc3\xa9 ";  // "ﬁ" is changed by NFKC
    std::string spelled;
    for (int32_t id : encode(probe)) spelled += token_bytes(id);
    if (spelled != probe)
      throw Error(path_,
                  "this SentencePiece model does not give text back exactly (it was trained "
                  "without byte_fallback, or with add_dummy_prefix, whitespace removal or a "
                  "normalization rule such as NFKC)",
                  "train one with `infini tokenizer train`, which uses exact settings");
  }

  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
};

// Feeds the trainer the lines of the input files in order, without their newlines; a line longer
// than kMaxSentenceBytes is handed over in pieces cut before a space.
class LineIterator final : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>& files) : files_(files) { Next(); }

  bool done() const override { return done_; }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override {
    if (error_.empty()) return {};
    return sentencepiece::util::Status(sentencepiece::util::StatusCode::kDataLoss, error_);
  }
  void Next() override {
    while (!done_) {
      if (rest_.empty() && !next_line()) continue;
      if (rest_.empty()) continue;  // SentencePiece has no use for empty lines
      std::string_view rest(rest_);
      const size_t end = text_chunk_end(rest, kMaxSentenceBytes);
      value_.assign(rest.substr(0, end));
      rest_.erase(0, end);
      return;
    }
  }
  int64_t lines() const { return lines_; }

 private:
  // Loads the next line into rest_; false when it moved on to the next file or finished.
  bool next_line() {
    if (!in_.is_open()) {
      if (file_ == files_.size()) {
        done_ = true;
        return false;
      }
      in_.open(files_[file_], std::ios::binary);
      if (!in_) {
        error_ = files_[file_] + ": cannot open";
        done_ = true;
        return false;
      }
    }
    if (std::getline(in_, rest_)) {
      ++lines_;
      return true;
    }
    if (in_.bad()) {
      error_ = files_[file_] + ": read error";
      done_ = true;
      return false;
    }
    in_.close();
    in_.clear();
    rest_.clear();
    ++file_;
    return false;
  }

  const std::vector<std::string>& files_;
  size_t file_ = 0;
  std::ifstream in_;
  std::string rest_, value_, error_;
  int64_t lines_ = 0;
  bool done_ = false;
};

// What SentencePiece's own .vocab writer prints, with control characters escaped so that every
// piece stays on its line.
std::string vocab_text(const sentencepiece::SentencePieceProcessor& sp) {
  std::ostringstream out;
  for (int id = 0; id < sp.GetPieceSize(); ++id) {
    for (char c : sp.IdToPiece(id)) {
      const unsigned char u = static_cast<unsigned char>(c);
      if (c == '\n')
        out << "\\n";
      else if (c == '\t')
        out << "\\t";
      else if (c == '\\')
        out << "\\\\";
      else if (u < 0x20 || u == 0x7f)
        out << str("\\x", "0123456789abcdef"[u >> 4], "0123456789abcdef"[u & 15]);
      else
        out << c;
    }
    out << '\t' << sp.GetScore(id) << '\n';
  }
  return out.str();
}

}  // namespace

std::unique_ptr<Tokenizer> sentencepiece_tokenizer(const std::string& model_path) {
  return std::make_unique<SentencePieceTokenizer>(model_path);
}

void sentencepiece_train(const std::vector<std::string>& input_files,
                         const std::string& model_prefix, int64_t vocab_size, bool verbose) {
  namespace fs = std::filesystem;
  if (input_files.empty())
    throw Error("--input", "no training text given", "name one or more text files");
  int64_t total_bytes = 0;
  for (const std::string& file : input_files) {
    std::error_code ec;
    if (!fs::is_regular_file(file, ec))
      throw Error(file, fs::exists(file, ec) ? "not a regular file" : "no such file",
                  "check the --input path");
    if (!std::ifstream(file, std::ios::binary))
      throw Error(file, "cannot open for reading", "check the file's permissions");
    total_bytes += int64_t(fs::file_size(file, ec));
  }
  if (total_bytes == 0)
    throw Error("--input", "the training text is empty", "give files that contain text");
  if (vocab_size <= kReservedPieces || vocab_size > (int64_t(1) << 30))
    throw Error("--vocab-size",
                str(vocab_size, " is out of range: ids 0..", kReservedPieces - 1,
                    " are <unk>, <s>, </s>, newline and the 256 bytes, so it must be more than ",
                    kReservedPieces, " (and at most 2^30)"),
                "typical values: 1000 to 32000");
  if (model_prefix.empty() || model_prefix.back() == '/')
    throw Error("--out", str("\"", model_prefix, "\" is not a file name prefix"),
                "give a prefix such as tok/kjv (writes tok/kjv.model and tok/kjv.vocab)");

  // Check that the outputs can be written before the (possibly long) training.
  const std::string model_path = model_prefix + ".model", vocab_path = model_prefix + ".vocab";
  fs::path dir = fs::path(model_path).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir, ec))
    throw Error(model_path, str("cannot create the directory ", dir.string()),
                "check the --out path and its permissions");
  const std::string probe = model_path + ".probe";
  if (!std::ofstream(probe, std::ios::binary))
    throw Error(model_path, str("cannot write to the directory ", dir.string()),
                "check its permissions and free space");
  fs::remove(probe, ec);

  const std::unordered_map<std::string, std::string> settings = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(vocab_size)},
      {"byte_fallback", "true"},
      {"character_coverage", "1.0"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "false"},
      {"user_defined_symbols", "\n"},
      {"split_digits", "false"},
      {"max_sentence_length", std::to_string(kMaxSentenceBytes)},
      {"input_sentence_size", "0"},  // every line: no sampling
      {"shuffle_input_sentence", "false"},
      {"num_threads", "1"},
      {"minloglevel", verbose ? "0" : "1"},
  };
  LineIterator lines(input_files);
  std::string serialized;
  const sentencepiece::util::Status status =
      sentencepiece::SentencePieceTrainer::Train(settings, &lines, &serialized);
  if (!lines.status().ok()) throw Error("--input", lines.status().message());
  if (!status.ok()) {
    const std::string message = status.message();
    std::string hint = "check the training text and --vocab-size";
    if (message.find("too high") != std::string::npos ||
        message.find("smaller than required") != std::string::npos)
      hint = "the vocabulary size does not fit this corpus; pick the value SentencePiece suggests";
    throw Error("sentencepiece training", message, hint);
  }

  sentencepiece::SentencePieceProcessor trained;
  const sentencepiece::util::Status loaded = trained.LoadFromSerializedProto(serialized);
  if (!loaded.ok())
    throw Error("sentencepiece training",
                str("the trained model does not load: ", loaded.ToString()));
  const std::string vocab = vocab_text(trained);
  write_file_atomic(model_path, serialized);
  write_file_atomic(vocab_path, vocab);
}

}  // namespace infini
