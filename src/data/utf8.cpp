#include "data/utf8.h"

#include <cstdio>

namespace infini {

namespace {
std::string hex_byte(uint8_t b) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%02x", b);
  return text;
}
}  // namespace

bool Utf8Checker::fail(std::string what) {
  problem_ = std::move(what);
  return false;
}

bool Utf8Checker::feed(const char* data, size_t size) {
  if (!ok()) return false;
  for (size_t i = 0; i < size; ++i, ++offset_) {
    const uint8_t b = uint8_t(data[i]);
    if (need_ == 0) {
      char_offset_ = offset_;
      char_line_ = line_;
      char_line_start_ = line_start_;
      if (b < 0x80) {
        if (b == '\n') {
          ++line_;
          line_start_ = offset_ + 1;
        }
        continue;
      }
      // The ranges of the second byte that rule out overlong forms, surrogates and > U+10FFFF
      // (RFC 3629 section 4).
      low_ = 0x80;
      high_ = 0xbf;
      lead_ = b;
      if (b >= 0xc2 && b <= 0xdf) {
        need_ = 1;
        code_ = b & 0x1f;
      } else if (b >= 0xe0 && b <= 0xef) {
        need_ = 2;
        code_ = b & 0x0f;
        if (b == 0xe0) low_ = 0xa0;
        if (b == 0xed) high_ = 0x9f;
      } else if (b >= 0xf0 && b <= 0xf4) {
        need_ = 3;
        code_ = b & 0x07;
        if (b == 0xf0) low_ = 0x90;
        if (b == 0xf4) high_ = 0x8f;
      } else {
        return fail("invalid UTF-8: byte " + hex_byte(b) + " cannot start a character");
      }
      length_ = need_ + 1;
      continue;
    }
    if (b < low_ || b > high_)
      return fail("invalid UTF-8: byte " + hex_byte(lead_) + " starts a " +
                  std::to_string(length_) + "-byte character but " + hex_byte(b) + " follows");
    low_ = 0x80;
    high_ = 0xbf;
    code_ = (code_ << 6) | (b & 0x3f);
    if (--need_ == 0 && code_ == 0x2581)
      return fail(
          "U+2581 (\xe2\x96\x81), which SentencePiece uses for the space and would decode as one");
  }
  return true;
}

bool Utf8Checker::finish() {
  if (!ok()) return false;
  if (need_ != 0)
    return fail("invalid UTF-8: the text ends inside the " + std::to_string(length_) +
                "-byte character that byte " + hex_byte(lead_) + " starts");
  return true;
}

}  // namespace infini
