// Token shards: write/read round trips for both id widths, and every malformed file refused with
// a message that names the file and says what is wrong.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/random.h"
#include "data/token_shard.h"
#include "io/atomic_file.h"
#include "test_support.h"

namespace infini {
namespace {

using test::read_bytes;

std::vector<int32_t> random_ids(int64_t count, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(count));
  for (auto& id : ids) id = int32_t(rng.below(uint64_t(vocab)));
  ids.front() = 0;
  ids.back() = int32_t(vocab - 1);  // both ends of the range
  return ids;
}


void write_bytes(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, bytes);
}

// The message of the Error that opening `path` throws ("" if it opens).
std::string open_error(const std::string& path) {
  try {
    TokenShard::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

template <typename T>
void put(std::string& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof value);
}

void expect_round_trip(int64_t vocab, int64_t count, size_t width, uint64_t seed) {
  const std::string dir = test::scratch_dir("shard_round_trip_" + std::to_string(vocab));
  const std::string path = dir + "/a.tokens";
  const std::vector<int32_t> ids = random_ids(count, vocab, seed);
  token_shard_write(path, ids, vocab);
  EXPECT_EQ(read_bytes(path).size(), 64 + ids.size() * width);

  const TokenShard shard = TokenShard::open(path);
  EXPECT_EQ(shard.size(), count);
  EXPECT_EQ(shard.vocab_size(), vocab);
  EXPECT_EQ(shard.path(), path);
  std::vector<int32_t> back(ids.size());
  shard.read(0, count, back.data());
  EXPECT_EQ(back, ids);
  std::vector<int32_t> middle(10);
  shard.read(count / 2, 10, middle.data());
  EXPECT_TRUE(std::equal(middle.begin(), middle.end(), ids.begin() + count / 2));
  EXPECT_EQ(shard.at(count - 1), vocab - 1);
}

TEST(TokenShard, RoundTripUint16) {
  expect_round_trip(256, 1000, 2, 1);
  expect_round_trip(65536, 5000, 2, 2);  // the largest vocabulary stored as uint16
}

TEST(TokenShard, RoundTripUint32) {
  expect_round_trip(65537, 5000, 4, 3);  // the smallest stored as uint32
  expect_round_trip(int64_t(1) << 31, 1000, 4, 4);
}

TEST(TokenShard, HeaderLayout) {
  const std::string path = test::scratch_dir("shard_header") + "/h.tokens";
  token_shard_write(path, std::vector<int32_t>{1, 2, 3}, 300);
  const std::string bytes = read_bytes(path);
  ASSERT_EQ(bytes.size(), 70u);
  EXPECT_EQ(bytes.substr(0, 8), "INFTOKEN");
  uint32_t version, dtype;
  uint64_t count, vocab;
  std::memcpy(&version, bytes.data() + 8, 4);
  std::memcpy(&dtype, bytes.data() + 12, 4);
  std::memcpy(&count, bytes.data() + 16, 8);
  std::memcpy(&vocab, bytes.data() + 24, 8);
  EXPECT_EQ(version, 1u);
  EXPECT_EQ(dtype, 2u);
  EXPECT_EQ(count, 3u);
  EXPECT_EQ(vocab, 300u);
  EXPECT_EQ(bytes.substr(32, 32), std::string(32, '\0'));
  uint16_t second;
  std::memcpy(&second, bytes.data() + 66, 2);
  EXPECT_EQ(second, 2);
}

TEST(TokenShard, EmptyShardIsValid) {
  const std::string path = test::scratch_dir("shard_empty") + "/e.tokens";
  token_shard_write(path, std::vector<int32_t>{}, 256);
  const TokenShard shard = TokenShard::open(path);
  EXPECT_EQ(shard.size(), 0);
  shard.read(0, 0, nullptr);
}

TEST(TokenShard, WriteRefusesIdsOutsideTheVocabularyAndKeepsTheOldFile) {
  const std::string path = test::scratch_dir("shard_refuse") + "/r.tokens";
  token_shard_write(path, std::vector<int32_t>{7}, 256);
  const std::string before = read_bytes(path);
  for (const std::vector<int32_t>& bad : {std::vector<int32_t>{1, 256}, std::vector<int32_t>{-1}}) {
    try {
      token_shard_write(path, bad, 256);
      ADD_FAILURE() << "accepted an id outside [0, 256)";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("outside the vocabulary"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(token_shard_write(path, std::vector<int32_t>{0}, 0), Error);
  EXPECT_EQ(read_bytes(path), before);
}

TEST(TokenShard, ReadIsChecked) {
  const std::string path = test::scratch_dir("shard_read_checked") + "/c.tokens";
  token_shard_write(path, std::vector<int32_t>{1, 2, 3, 4}, 256);
  const TokenShard shard = TokenShard::open(path);
  int32_t out[8];
  EXPECT_THROW(shard.read(2, 3, out), Error);
  EXPECT_THROW(shard.read(-1, 1, out), Error);
  EXPECT_THROW(shard.read(0, -1, out), Error);
  EXPECT_THROW(shard.at(4), Error);
  try {
    shard.read(3, 2, out);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("outside the shard's 4 tokens"), std::string::npos)
        << e.what();
  }
}

struct Malformed {
  const char* name;
  void (*damage)(std::string& bytes);
  const char* message;  // a piece of the expected message
};

TEST(TokenShard, MalformedFilesAreRefusedByName) {
  const std::string dir = test::scratch_dir("shard_malformed");
  const std::string good = dir + "/good.tokens";
  token_shard_write(good, std::vector<int32_t>{5, 6, 7, 8}, 256);  // 64 + 8 bytes
  const std::string original = read_bytes(good);
  ASSERT_EQ(open_error(good), "");

  const Malformed cases[] = {
      {"empty_file", [](std::string& b) { b.clear(); }, "truncated: 0 bytes"},
      {"header_cut", [](std::string& b) { b.resize(40); }, "truncated: 40 bytes"},
      {"payload_cut", [](std::string& b) { b.resize(b.size() - 1); },
       "truncated: the header announces 4 tokens"},
      {"trailing_garbage", [](std::string& b) { b += "xyz"; }, "3 unexpected trailing bytes"},
      {"wrong_magic", [](std::string& b) { b.replace(0, 8, "GGUF\x03\0\0\0", 8); },
       "not a token shard: the file starts with \"GGUF\\x03\\x00\\x00\\x00\""},
      {"version_2", [](std::string& b) { put<uint32_t>(b, 8, 2); }, "version 2 is not supported"},
      {"dtype_3", [](std::string& b) { put<uint32_t>(b, 12, 3); }, "bad dtype 3"},
      {"dtype_4_short", [](std::string& b) { put<uint32_t>(b, 12, 4); },
       "truncated: the header announces 4 tokens"},
      {"vocab_0", [](std::string& b) { put<uint64_t>(b, 24, 0); }, "bad vocab_size 0"},
      {"vocab_too_big_for_uint16", [](std::string& b) { put<uint64_t>(b, 24, 65537); },
       "vocab_size 65537 does not fit dtype 2"},
      {"count_huge", [](std::string& b) { put<uint64_t>(b, 16, ~uint64_t(0)); },
       "truncated: the header announces 18446744073709551615 tokens"},
      {"reserved_set", [](std::string& b) { b[40] = 1; }, "reserved header bytes"},
  };
  for (const Malformed& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir + "/" + c.name + ".tokens";
    std::string bytes = original;
    c.damage(bytes);
    write_bytes(path, bytes);
    const std::string message = open_error(path);
    EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
    EXPECT_NE(message.find(c.message), std::string::npos) << message;
  }

  // An id at or above vocab_size is caught when read, naming the token.
  std::string bytes = original;
  put<uint16_t>(bytes, 64 + 2 * 2, 300);
  const std::string bad_id = dir + "/bad_id.tokens";
  write_bytes(bad_id, bytes);
  const TokenShard shard = TokenShard::open(bad_id);
  int32_t out[4];
  try {
    shard.read(0, 4, out);
    ADD_FAILURE() << "read an id outside the vocabulary";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find(bad_id + ": token 2 is id 300, outside the vocabulary [0, 256)"),
        std::string::npos)
        << e.what();
  }
  EXPECT_EQ(shard.at(1), 6);

  EXPECT_NE(open_error(dir + "/missing.tokens").find("cannot open token shard"), std::string::npos);
  EXPECT_NE(open_error(dir).find("not a regular file"), std::string::npos);
}

}  // namespace
}  // namespace infini
