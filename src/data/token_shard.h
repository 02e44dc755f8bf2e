// Token shards: the trainer's input, a flat array of token ids behind a small header, memory-mapped.
//
// Layout (little-endian; docs/formats.md):
//   offset 0   8 bytes  magic "INFTOKEN"
//   offset 8   u32      version (1)
//   offset 12  u32      dtype: 2 = uint16 (vocab_size <= 65536), 4 = uint32
//   offset 16  u64      count: number of tokens
//   offset 24  u64      vocab_size: every id is < vocab_size
//   offset 32  32 bytes reserved (zero)
//   offset 64  count * dtype bytes of token ids
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace infini {

class TokenShard {
 public:
  // Maps `path` and validates the header and size (errors name the file).
  static TokenShard open(const std::string& path);

  int64_t size() const { return count_; }
  int64_t vocab_size() const { return vocab_size_; }
  const std::string& path() const { return path_; }
  int32_t at(int64_t i) const;
  // out[0, count) = tokens [begin, begin + count); checked against size().
  void read(int64_t begin, int64_t count, int32_t* out) const;

 private:
  std::string path_;
  std::shared_ptr<const uint8_t> mapping_;
  const uint8_t* tokens_ = nullptr;
  int64_t count_ = 0, vocab_size_ = 0, width_ = 2;
};

// Writes a shard atomically; ids must be in [0, vocab_size).
void token_shard_write(const std::string& path, const std::vector<int32_t>& tokens,
                       int64_t vocab_size);
// The same for tokens[0, count), so that one token stream can be written as several shards
// without copies. The ids are stored as uint16 when vocab_size <= 65536, as uint32 otherwise.
void token_shard_write(const std::string& path, const int32_t* tokens, int64_t count,
                       int64_t vocab_size);

}  // namespace infini
