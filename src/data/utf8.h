// Streaming check that text is something SentencePiece gives back byte for byte.
//
// SentencePiece replaces every malformed UTF-8 sequence with U+FFFD and turns U+2581 ("▁", its
// own stand-in for the space) into a space when decoding; either would make decode(encode(x))
// differ from x without a word. Utf8Checker finds the first such character in text fed to it in
// pieces of any size and says where it is (byte offset, line, column), so that `infini prepare`
// can refuse the file by name instead. Valid means RFC 3629: no overlong forms, no surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace infini {

class Utf8Checker {
 public:
  // Feeds the next bytes of the text; false at the first offending byte (and from then on).
  bool feed(const char* data, size_t size);
  // The end of the text: false if it stops inside a character.
  bool finish();
  bool ok() const { return problem_.empty(); }
  // Where the offending character starts: byte offset, 1-based line and column (in bytes).
  int64_t offset() const { return char_offset_; }
  int64_t line() const { return char_line_; }
  int64_t column() const { return char_offset_ - char_line_start_ + 1; }
  // What is wrong, in words ("invalid UTF-8 byte 0xff", ...); empty while ok().
  const std::string& problem() const { return problem_; }

 private:
  bool fail(std::string what);
  int64_t offset_ = 0, line_ = 1, line_start_ = 0;                 // the next byte
  int64_t char_offset_ = 0, char_line_ = 1, char_line_start_ = 0;  // the current character
  int need_ = 0;                      // continuation bytes still expected
  uint8_t low_ = 0x80, high_ = 0xbf;  // allowed range of the next continuation byte
  uint32_t code_ = 0;
  uint8_t lead_ = 0;  // first byte of the current character
  int length_ = 0;    // its length in bytes
  std::string problem_;
};

}  // namespace infini
