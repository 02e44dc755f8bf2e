// Token shards (token_shard.h, docs/formats.md "Token shards"): a 64-byte header and a flat array
// of uint16 or uint32 token ids, read through a read-only memory mapping.
//
// Everything in the header is checked against the file size when a shard is opened, so a
// truncated copy, a file of another kind or one with bytes appended is refused by name before the
// trainer reads a single token. Ids are checked against vocab_size as they are read (read(), at()),
// which costs nothing next to the copy and keeps open() O(1) for shards of any size.
#include "data/token_shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "io/atomic_file.h"

namespace infini {

static_assert(std::endian::native == std::endian::little,
              "token shards are little-endian; this reader maps them as they are");

namespace {

constexpr char kMagic[8] = {'I', 'N', 'F', 'T', 'O', 'K', 'E', 'N'};
constexpr uint32_t kVersion = 1;
constexpr int64_t kHeaderBytes = 64;
// Token ids are int32_t in memory, so a vocabulary may not exceed 2^31 ids.
constexpr int64_t kMaxVocab = int64_t(std::numeric_limits<int32_t>::max()) + 1;
constexpr int64_t kMaxUint16Vocab = 65536;

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t dtype;
  uint64_t count;
  uint64_t vocab_size;
  uint8_t reserved[32];
};
static_assert(sizeof(Header) == kHeaderBytes);

const char* kRewriteHint = "the file is damaged or not a token shard; run `infini prepare` again";

std::string describe_magic(const char* magic) {
  std::string out;
  for (int i = 0; i < 8; ++i) {
    const unsigned char c = static_cast<unsigned char>(magic[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += char(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out;
}

int32_t load_id(const uint8_t* tokens, int64_t width, int64_t i) {
  if (width == 2) {
    uint16_t v;
    std::memcpy(&v, tokens + i * 2, 2);
    return int32_t(v);
  }
  uint32_t v;
  std::memcpy(&v, tokens + i * 4, 4);
  return int32_t(v);  // values >= 2^31 are caught by the vocabulary check (vocab <= 2^31)
}

}  // namespace

TokenShard TokenShard::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    throw Error(path, str("cannot open token shard: ", std::strerror(err)),
                "check the path; `infini prepare` writes train.tokens and val.tokens");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path, "not a regular file", "pass a .tokens file written by `infini prepare`");
  }
  const int64_t file_size = int64_t(st.st_size);
  if (file_size < kHeaderBytes) {
    ::close(fd);
    throw Error(path,
                str("truncated: ", file_size, " bytes, shorter than the ", kHeaderBytes,
                    "-byte token shard header"),
                kRewriteHint);
  }
  void* mapped = ::mmap(nullptr, size_t(file_size), PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (mapped == MAP_FAILED)
    throw Error(path, str("cannot memory-map the file: ", std::strerror(map_err)));
  std::shared_ptr<const uint8_t> mapping(
      static_cast<const uint8_t*>(mapped),
      [file_size](const uint8_t* p) { ::munmap(const_cast<uint8_t*>(p), size_t(file_size)); });

  Header h;
  std::memcpy(&h, mapping.get(), sizeof h);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
    throw Error(path,
                str("not a token shard: the file starts with \"", describe_magic(h.magic),
                    "\", expected the magic \"INFTOKEN\""),
                "pass a .tokens file written by `infini prepare`");
  if (h.version != kVersion)
    throw Error(path,
                str("token shard version ", h.version, " is not supported (this build reads ",
                    kVersion, ")"),
                "rewrite the shard with this version of `infini prepare`");
  if (h.dtype != 2 && h.dtype != 4)
    throw Error(path,
                str("bad dtype ", h.dtype, " in the header: expected 2 (uint16) or 4 (uint32)"),
                kRewriteHint);
  if (h.vocab_size == 0 || h.vocab_size > uint64_t(kMaxVocab))
    throw Error(path,
                str("bad vocab_size ", h.vocab_size, " in the header: expected 1 to ", kMaxVocab),
                kRewriteHint);
  if (h.dtype == 2 && h.vocab_size > uint64_t(kMaxUint16Vocab))
    throw Error(path,
                str("vocab_size ", h.vocab_size, " does not fit dtype 2 (uint16 ids, at most ",
                    kMaxUint16Vocab, ")"),
                kRewriteHint);
  for (uint8_t byte : h.reserved)
    if (byte != 0) throw Error(path, "the reserved header bytes 32..63 are not zero", kRewriteHint);

  const int64_t width = h.dtype;
  const uint64_t capacity = uint64_t(file_size - kHeaderBytes) / uint64_t(width);
  if (h.count > capacity)
    throw Error(path,
                str("truncated: the header announces ", h.count, " tokens (", kHeaderBytes, " + ",
                    h.count, " x ", width, " bytes) but the file has ", file_size, " bytes"),
                "the copy is incomplete; copy it again or run `infini prepare` again");
  const int64_t expected = kHeaderBytes + int64_t(h.count) * width;
  if (file_size != expected)
    throw Error(path,
                str(file_size - expected, " unexpected trailing bytes: ", h.count, " tokens of ",
                    width, " bytes make ", expected, " bytes, the file has ", file_size),
                kRewriteHint);

  TokenShard shard;
  shard.path_ = path;
  shard.mapping_ = std::move(mapping);
  shard.tokens_ = shard.mapping_.get() + kHeaderBytes;
  shard.count_ = int64_t(h.count);
  shard.vocab_size_ = int64_t(h.vocab_size);
  shard.width_ = width;
  return shard;
}

int32_t TokenShard::at(int64_t i) const {
  int32_t id;
  read(i, 1, &id);
  return id;
}

void TokenShard::read(int64_t begin, int64_t count, int32_t* out) const {
  if (begin < 0 || count < 0 || begin > count_ || count > count_ - begin)
    throw Error(path_, str("read of tokens [", begin, ", ", begin + count,
                           ") is outside the shard's ", count_, " tokens"));
  for (int64_t i = 0; i < count; ++i) {
    const int32_t id = load_id(tokens_, width_, begin + i);
    if (id < 0 || id >= vocab_size_)
      throw Error(path_,
                  str("token ", begin + i, " is id ", uint32_t(id), ", outside the vocabulary [0, ",
                      vocab_size_, ")"),
                  kRewriteHint);
    out[i] = id;
  }
}

void token_shard_write(const std::string& path, const int32_t* tokens, int64_t count,
                       int64_t vocab_size) {
  if (vocab_size < 1 || vocab_size > kMaxVocab)
    throw Error(path, str("vocab_size ", vocab_size, " is outside 1 to ", kMaxVocab));
  if (count < 0) throw Error(path, str("negative token count ", count));
  const int64_t width = vocab_size <= kMaxUint16Vocab ? 2 : 4;
  std::vector<uint8_t> payload(size_t(count * width));
  for (int64_t i = 0; i < count; ++i) {
    const int32_t id = tokens[i];
    if (id < 0 || id >= vocab_size)
      throw Error(path,
                  str("token ", i, " is id ", id, ", outside the vocabulary [0, ", vocab_size, ")"),
                  "every id must be below vocab_size; nothing was written");
    if (width == 2) {
      const uint16_t v = uint16_t(id);
      std::memcpy(payload.data() + i * 2, &v, 2);
    } else {
      const uint32_t v = uint32_t(id);
      std::memcpy(payload.data() + i * 4, &v, 4);
    }
  }
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kVersion;
  h.dtype = uint32_t(width);
  h.count = uint64_t(count);
  h.vocab_size = uint64_t(vocab_size);
  write_file_atomic(path, {ByteRange{&h, sizeof h}, ByteRange{payload.data(), payload.size()}});
}

void token_shard_write(const std::string& path, const std::vector<int32_t>& tokens,
                       int64_t vocab_size) {
  token_shard_write(path, tokens.data(), int64_t(tokens.size()), vocab_size);
}

}  // namespace infini
