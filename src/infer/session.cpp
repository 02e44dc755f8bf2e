// Stream state files (docs/formats.md, "Stream state files"). All integers little-endian:
//
//   header (32 bytes)  magic "INFSTATE" | u32 version (1) | u32 reserved (0) |
//                      u64 payload bytes | u64 FNV-1a 64 of the payload
//   payload            u64 model fingerprint | i64 layers, kv_heads, head_dim, segment_length,
//                      vocab_size, batch, position, cache_rows | u64 rng[4] | i64 logits_rows |
//                      f32 memories [L][B, Hkv, d, d + 1] (StreamState::all; infini only) |
//                      f32 FAM rows [L][B, fam_length, D] (StreamState::fam_all; fam only) |
//                      f32 per layer: keys [B, cache_rows, Hkv, d], values [B, cache_rows, Hkv, d]
//                      | f32 logits [logits_rows, V]
#include "infer/session.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <vector>

#include "core/error.h"
#include "data/prepare.h"  // fnv1a64
#include "io/atomic_file.h"

namespace infini {

static_assert(std::endian::native == std::endian::little,
              "state files are written in the host's byte order, which must be little-endian");

namespace {

constexpr char kMagic[8] = {'I', 'N', 'F', 'S', 'T', 'A', 'T', 'E'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 32;

// The shape fields of a payload, in file order.
struct StateShape {
  int64_t layers, kv_heads, head_dim, segment_length, vocab_size, batch;
  bool operator==(const StateShape&) const = default;
};

StateShape shape_of(const ModelConfig& c, int64_t batch) {
  return {c.num_hidden_layers,        c.num_key_value_heads, c.head_dim,
          c.attention.segment_length, c.vocab_size,          batch};
}

std::string describe(const StateShape& s) {
  return str(s.layers, " layers, ", s.kv_heads, " kv heads of ", s.head_dim, ", segment ",
             s.segment_length, ", vocab ", s.vocab_size, ", batch ", s.batch);
}

std::string hex(uint64_t x) {
  char out[19];
  std::snprintf(out, sizeof out, "0x%016llx", (unsigned long long)x);
  return out;
}

void put(std::string& out, const void* data, size_t bytes) {
  out.append(static_cast<const char*>(data), bytes);
}
template <typename T>
void put_value(std::string& out, T value) {
  put(out, &value, sizeof value);
}

// Reads the payload front to back; every read is bounds-checked.
class PayloadReader {
 public:
  PayloadReader(const std::string& path, const char* data, size_t size)
      : path_(path), data_(data), size_(size) {}
  template <typename T>
  T value(const char* what) {
    T v;
    take(&v, sizeof v, what);
    return v;
  }
  void take(void* out, size_t bytes, const char* what) {
    if (bytes > size_ - at_)
      throw Error(path_,
                  str("inconsistent: the payload ends inside ", what, " (", bytes,
                      " bytes needed at offset ", at_, ", ", size_ - at_, " left)"),
                  "the file was not written by this program");
    std::memcpy(out, data_ + at_, bytes);
    at_ += bytes;
  }
  size_t left() const { return size_ - at_; }

 private:
  const std::string& path_;
  const char* data_;
  size_t size_, at_ = 0;
};

}  // namespace

uint64_t model_fingerprint(const Model& model) {
  const std::string config = config_to_json(model.config).dump();
  const uint64_t h = fnv1a64(config.data(), config.size());
  return fnv1a64(model.weights.all, size_t(model.weights.count) * sizeof(float), h);
}

void session_save(const std::string& path, const Decoder& d, const Rng& rng, uint64_t fingerprint) {
  const StreamState& s = d.state;
  const StateShape shape = shape_of(d.model->config, s.batch);
  const int64_t rows = s.layers.empty() ? 0 : s.layers[0].cache.rows;
  const int64_t row_floats = shape.kv_heads * shape.head_dim;
  const int64_t cap = s.layers.empty() ? 0 : s.layers[0].cache.capacity;  // rows per stream
  std::string payload;
  payload.reserve(
      size_t(s.count + s.fam_count + 2 * shape.layers * shape.batch * rows * row_floats + shape.vocab_size) *
          sizeof(float) +
      256);
  put_value(payload, fingerprint);
  for (int64_t field : {shape.layers, shape.kv_heads, shape.head_dim, shape.segment_length,
                        shape.vocab_size, shape.batch, s.position, rows})
    put_value(payload, field);
  for (uint64_t word : rng.state()) put_value(payload, word);
  const int64_t logits_rows = s.position > 0 ? 1 : 0;
  put_value(payload, logits_rows);
  put(payload, s.all, size_t(s.count) * sizeof(float));
  put(payload, s.fam_all, size_t(s.fam_count) * sizeof(float));  // TransformerFAM's rows
  for (const LayerState& layer : s.layers) {
    INFINI_CHECK(layer.cache.rows == rows && layer.cache.capacity == cap,
                 "layers with different cache rows");
    for (const float* block : {layer.cache.keys, layer.cache.values})
      for (int64_t b = 0; b < s.batch; ++b)
        put(payload, block + b * cap * row_floats, size_t(rows * row_floats) * sizeof(float));
  }
  if (logits_rows) put(payload, d.logits.data(), d.logits.size() * sizeof(float));

  std::string header;
  put(header, kMagic, sizeof kMagic);
  put_value(header, kVersion);
  put_value(header, uint32_t(0));
  put_value(header, uint64_t(payload.size()));
  put_value(header, fnv1a64(payload.data(), payload.size()));
  write_file_atomic(
      path, {ByteRange{header.data(), header.size()}, ByteRange{payload.data(), payload.size()}});
}

void session_load(const std::string& path, Decoder& d, Rng& rng, uint64_t fingerprint) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, "cannot open the state file", "check the path given to --load-state");
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(path, "read error on the state file");

  // header
  if (file.size() < kHeaderBytes)
    throw Error(path, str("truncated: ", file.size(), " bytes, shorter than the ", kHeaderBytes,
                          "-byte header of a state file"));
  if (std::memcmp(file.data(), kMagic, sizeof kMagic) != 0)
    throw Error(path, "not an infini stream state file (its first 8 bytes are not \"INFSTATE\")",
                "give a file written by infini generate --save-state");
  uint32_t version;
  uint64_t payload_bytes, checksum;
  std::memcpy(&version, file.data() + 8, 4);
  std::memcpy(&payload_bytes, file.data() + 16, 8);
  std::memcpy(&checksum, file.data() + 24, 8);
  if (version != kVersion)
    throw Error(path,
                str("state file format version ", version, "; this build reads version ", kVersion),
                "continue the stream with the infini build that wrote it");
  const size_t have = file.size() - kHeaderBytes;
  if (payload_bytes > have)
    throw Error(path,
                str("truncated: the header announces ", payload_bytes,
                    " payload bytes, the file holds ", have),
                "the file was cut short (disk full? interrupted copy?)");
  if (payload_bytes < have)
    throw Error(path, str("corrupted: ", have - payload_bytes,
                          " unexpected bytes after the payload of ", payload_bytes));
  const char* payload = file.data() + kHeaderBytes;
  const uint64_t actual = fnv1a64(payload, payload_bytes);
  if (actual != checksum)
    throw Error(path,
                str("corrupted: the payload's checksum is ", hex(actual), ", the header says ",
                    hex(checksum)),
                "the file was damaged after it was written");

  // payload
  PayloadReader r(path, payload, payload_bytes);
  const uint64_t saved_fingerprint = r.value<uint64_t>("the model fingerprint");
  StateShape saved;
  for (int64_t* field : {&saved.layers, &saved.kv_heads, &saved.head_dim, &saved.segment_length,
                         &saved.vocab_size, &saved.batch})
    *field = r.value<int64_t>("the shape");
  const StateShape expected = shape_of(d.model->config, d.state.batch);
  if (saved_fingerprint != fingerprint)
    throw Error(path,
                str("written by another model (fingerprint ", hex(saved_fingerprint),
                    saved == expected ? "" : ", " + describe(saved), "); this model's is ",
                    hex(fingerprint), saved == expected ? "" : " (" + describe(expected) + ")"),
                "continue a stream with the checkpoint that wrote it: the fingerprint is a "
                "hash of config.json and the weights");
  if (!(saved == expected))
    throw Error(path, str("inconsistent: a state for ", describe(saved), ", this model needs ",
                          describe(expected)));
  const int64_t position = r.value<int64_t>("the position"), rows = r.value<int64_t>("the rows");
  std::array<uint64_t, 4> rng_state;
  for (uint64_t& word : rng_state) word = r.value<uint64_t>("the generator");
  const int64_t logits_rows = r.value<int64_t>("the logits flag");
  const int64_t N = expected.segment_length, row_floats = expected.kv_heads * expected.head_dim;
  // the cache holds what the mechanism keeps at this position: infini the unfinished segment,
  // the softmax baselines their window / blocks (attention_policy.h), full the whole stream
  const std::optional<KvPolicy> policy = model_kv_policy(d.model->config);
  const int64_t rows_needed =
      position < 0 ? -1 : policy ? kv_cache_rows_needed(*policy, position) : position % N;
  if (position < 0 || rows != rows_needed || logits_rows != (position > 0 ? 1 : 0))
    throw Error(path, str("inconsistent: position ", position, " with ", rows, " cached rows and ",
                          logits_rows, " rows of logits (segment ", N, ")"));
  const size_t expected_left =
      sizeof(float) *
      size_t(d.state.count + d.state.fam_count + 2 * expected.layers * expected.batch * rows * row_floats +
             logits_rows * expected.vocab_size);
  if (r.left() != expected_left)
    throw Error(path, str("inconsistent: ", r.left(), " bytes of tensors, ", expected_left,
                          " expected for position ", position));

  // every check passed: now the decoder changes
  StreamState& s = d.state;
  stream_state_reserve(s, rows);  // full attention's cache grows with the stream
  r.take(s.all, size_t(s.count) * sizeof(float), "the memories");
  r.take(s.fam_all, size_t(s.fam_count) * sizeof(float), "the FAM rows");
  for (LayerState& layer : s.layers) {
    for (float* block : {layer.cache.keys, layer.cache.values})
      for (int64_t b = 0; b < s.batch; ++b)
        r.take(block + b * layer.cache.capacity * row_floats,
               size_t(rows * row_floats) * sizeof(float), "the KV cache");
    layer.cache.rows = rows;
  }
  if (logits_rows)
    r.take(d.logits.data(), d.logits.size() * sizeof(float), "the logits");
  else
    std::fill(d.logits.begin(), d.logits.end(), 0.0f);
  s.position = position;
  rng.set_state(rng_state);
}

}  // namespace infini
