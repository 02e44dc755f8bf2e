// safetensors files: a hardened reader (mmap, everything validated before use) and an atomic,
// deterministic writer.
//
// Layout (https://github.com/huggingface/safetensors): u64 little-endian N; N bytes of UTF-8 JSON
// mapping each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (byte offsets into
// the data section that follows the header), plus an optional "__metadata__" object of
// string -> string; then the raw little-endian tensor data. A file comes from anywhere, so the
// reader checks every field, every size and every range (overflow, truncation, overlap, duplicate
// names) before a single tensor is exposed; any problem is an infini::Error naming the file and
// the tensor. Gaps between tensors and trailing bytes after the last one are allowed (and ignored).
//
// The writer sorts tensors by name, packs them contiguously, pads the header with spaces to a
// multiple of 8 bytes (so that every tensor written by us starts 8-byte aligned in the file) and
// produces the same bytes for the same inputs. write() is atomic: the file appears complete at
// `path` or not at all (temporary file, fsync, rename, fsync of the directory).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace infini {

// Size in bytes of one element of a safetensors dtype ("F32", "BF16", "F16", "F64", "I8", "I16",
// "I32", "I64", "U8", "U16", "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2"); 0 for an unknown name.
int64_t safetensors_dtype_size(const std::string& dtype);

struct SafetensorsEntry {
  std::string name;
  std::string dtype;              // one of the names above
  std::vector<int64_t> shape;     // row-major; [] is a scalar
  int64_t numel = 0;              // product of shape
  const uint8_t* data = nullptr;  // into the file's mapping: valid while its SafetensorsFile lives;
                                  // may be unaligned (files written by others)
  size_t bytes = 0;               // numel * dtype size

  std::string shape_string() const;  // "[4, 256]"
};

class SafetensorsFile {
 public:
  // Maps `path` read-only and validates it. Throws infini::Error naming the path (and tensor).
  static SafetensorsFile open(const std::string& path);
  // The same checks on bytes in memory; `where` names them in errors.
  static SafetensorsFile from_bytes(std::vector<uint8_t> bytes, const std::string& where);

  // nullptr when there is no tensor of that name.
  const SafetensorsEntry* find(const std::string& name) const;
  // The tensor `name` with exactly this shape; otherwise an Error naming the file and tensor.
  const SafetensorsEntry& require(const std::string& name, const std::vector<int64_t>& shape) const;
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // sorted by name
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  void parse(const uint8_t* base, size_t size);

  std::string path_;
  std::shared_ptr<const uint8_t> storage_;  // the mapping (or owned bytes); entries point into it
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Converts a F32, BF16 or F16 tensor to float (exact: every such value is a float, F16 subnormals,
// infinities, NaN payloads and -0 included). `count` must equal the tensor's element count;
// `where` (usually the file path) names the tensor's origin in errors.
void read_f32(const SafetensorsEntry& entry, float* out, int64_t count, const std::string& where);
// Converts an integer tensor (I8, I16, I32, I64, U8, U16, U32) to int32, refusing values that do
// not fit.
void read_i32(const SafetensorsEntry& entry, int32_t* out, int64_t count, const std::string& where);

// IEEE binary16 -> float, exact.
float f16_to_f32(uint16_t h);

class SafetensorsWriter {
 public:
  // Records a tensor; `data` (numel * dtype size bytes, native = little-endian order) is not
  // copied and must stay valid until write() / to_bytes() returns. Throws on a duplicate or
  // reserved name, an unknown dtype, a negative dimension or an element count that overflows.
  void add(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
           const void* data);
  void set_metadata(const std::string& key, const std::string& value);

  // Writes the file atomically (io/atomic_file.h): `path`.tmp.<pid>, fsync, rename over `path`,
  // fsync of the directory. On failure the temporary file is removed, `path` is untouched, and
  // an Error naming `path` is thrown.
  void write(const std::string& path) const;
  // The same bytes in memory.
  std::vector<uint8_t> to_bytes() const;

 private:
  struct Pending {
    std::string dtype;
    std::vector<int64_t> shape;
    const void* data;
    size_t bytes;
  };
  std::string header() const;  // u64 length + padded JSON

  std::map<std::string, Pending> tensors_;  // sorted by name: deterministic layout
  std::map<std::string, std::string> metadata_;
};

}  // namespace infini
