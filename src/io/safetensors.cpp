#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/error.h"
#include "core/tensor.h"
#include "io/atomic_file.h"
#include "io/json_strict.h"

namespace infini {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this reader copies it as-is");

namespace {

using json = nlohmann::json;

// The reference implementation's limit; real headers are kilobytes to a few megabytes.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kCorrupt = "the file is truncated, corrupt or not a safetensors file";

std::string tensor_where(const std::string& where, const std::string& name) {
  return str(where, ": tensor \"", name, "\"");
}

std::string shape_words(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

uint64_t load_u64_le(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// A JSON integer as uint64 / int64, or false when it is not a non-negative integer.
bool json_to_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = uint64_t(v.get<int64_t>());
    return true;
  }
  return false;
}

std::string describe(const json& v) {
  std::string text = v.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return json_type_words(v) + " (" + text + ")";
}

// Validates one header entry; fills everything but `data`. `data_bytes`: size of the data section.
SafetensorsEntry parse_entry(const std::string& name, const json& info, uint64_t data_bytes,
                             uint64_t* begin_out, const std::string& path) {
  const std::string where = tensor_where(path, name);
  if (!info.is_object())
    throw Error(where,
                str("header entry is ", describe(info),
                    ", expected an object with "
                    "\"dtype\", \"shape\" and \"data_offsets\""),
                kCorrupt);
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!info.contains(key)) throw Error(where, str("header entry has no \"", key, "\""), kCorrupt);

  SafetensorsEntry e;
  e.name = name;
  const json& dtype = info["dtype"];
  if (!dtype.is_string())
    throw Error(where, str("\"dtype\" is ", describe(dtype), ", expected a string such as \"F32\""),
                kCorrupt);
  e.dtype = dtype.get<std::string>();
  const int64_t element_size = safetensors_dtype_size(e.dtype);
  if (element_size == 0)
    throw Error(where, str("unknown dtype \"", e.dtype, "\""),
                "known: F32, F16, BF16, F64, I8, I16, I32, I64, U8, U16, U32, U64, BOOL, F8_E4M3, "
                "F8_E5M2");

  const json& shape = info["shape"];
  if (!shape.is_array())
    throw Error(where, str("\"shape\" is ", describe(shape), ", expected an array of integers"),
                kCorrupt);
  e.numel = 1;
  bool overflow = false;
  for (size_t d = 0; d < shape.size(); ++d) {
    uint64_t size;
    if (!json_to_u64(shape[d], &size) || size > uint64_t(std::numeric_limits<int64_t>::max()))
      throw Error(where,
                  str("shape ", shape.dump(), ": dimension ", d, " is ", describe(shape[d]),
                      ", expected a non-negative integer"),
                  kCorrupt);
    e.shape.push_back(int64_t(size));
    overflow = overflow || __builtin_mul_overflow(e.numel, int64_t(size), &e.numel);
  }
  int64_t bytes = 0;
  if (overflow || __builtin_mul_overflow(e.numel, element_size, &bytes))
    throw Error(where,
                str("shape ", shape_words(e.shape), " has more elements than fit in 64 bits"),
                kCorrupt);
  e.bytes = size_t(bytes);

  const json& offsets = info["data_offsets"];
  uint64_t begin = 0, end = 0;
  if (!offsets.is_array() || offsets.size() != 2 || !json_to_u64(offsets[0], &begin) ||
      !json_to_u64(offsets[1], &end))
    throw Error(where,
                str("\"data_offsets\" is ", describe(offsets),
                    ", expected [begin, end] with non-negative integers"),
                kCorrupt);
  if (begin > end)
    throw Error(where, str("data_offsets [", begin, ", ", end, "] has begin > end"), kCorrupt);
  if (end > data_bytes)
    throw Error(where,
                str("data_offsets [", begin, ", ", end, "] reach beyond the data section (",
                    data_bytes, " bytes)"),
                "the file is truncated; write it again");
  if (end - begin != uint64_t(bytes))
    throw Error(where,
                str("data_offsets [", begin, ", ", end, "] hold ", end - begin, " bytes, but ",
                    e.dtype, " ", shape_words(e.shape), " needs ", bytes),
                kCorrupt);
  *begin_out = begin;
  return e;
}

// munmap on release of the last reference.
std::shared_ptr<const uint8_t> map_file(const std::string& path, size_t* size_out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    throw Error(path, str("cannot open: ", std::strerror(err)),
                err == ENOENT ? "check the path" : "check the file's permissions");
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path, "not a regular file", "give the path of a .safetensors file");
  }
  const size_t size = size_t(st.st_size);
  *size_out = size;
  if (size < 8) {
    ::close(fd);
    throw Error(path, str("file is ", size, " bytes, shorter than the 8-byte header length"),
                kCorrupt);
  }
  // Read-only private mapping: tensors are read in place. (Truncating the file while it is mapped
  // would make reads fault: do not rewrite a checkpoint in place; SafetensorsWriter never does.)
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);
  if (addr == MAP_FAILED)
    throw Error(path, str("cannot map ", size, " bytes: ", std::strerror(err)),
                "check free memory and address space (ulimit -v)");
  return std::shared_ptr<const uint8_t>(
      static_cast<const uint8_t*>(addr),
      [size](const uint8_t* p) { ::munmap(const_cast<uint8_t*>(p), size); });
}

}  // namespace

int64_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, int64_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U64", 8},     {"U32", 4},
      {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

std::string SafetensorsEntry::shape_string() const {
  return shape_words(shape);
}

// ---- reader -----------------------------------------------------------------------------------

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile file;
  file.path_ = path;
  size_t size = 0;
  file.storage_ = map_file(path, &size);
  file.parse(file.storage_.get(), size);
  return file;
}

SafetensorsFile SafetensorsFile::from_bytes(std::vector<uint8_t> bytes, const std::string& where) {
  SafetensorsFile file;
  file.path_ = where;
  auto owned = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  file.storage_ = std::shared_ptr<const uint8_t>(owned, owned->data());
  file.parse(owned->data(), owned->size());
  return file;
}

void SafetensorsFile::parse(const uint8_t* base, size_t size) {
  const std::string& path = path_;
  if (size < 8)
    throw Error(path, str("file is ", size, " bytes, shorter than the 8-byte header length"),
                kCorrupt);
  const uint64_t header_bytes = load_u64_le(base);
  if (header_bytes > kMaxHeaderBytes)
    throw Error(
        path, str("header length ", header_bytes, " is absurd (limit ", kMaxHeaderBytes, " bytes)"),
        kCorrupt);
  if (header_bytes > size - 8)
    throw Error(path,
                str("header length ", header_bytes, " reaches beyond the end of the file (", size,
                    " bytes)"),
                kCorrupt);

  const char* text = reinterpret_cast<const char*>(base + 8);
  const json header = json_parse_strict(std::string_view(text, header_bytes), path + ": header");
  if (!header.is_object())
    throw Error(path, str("header is ", json_type_words(header), ", expected a JSON object"),
                kCorrupt);

  const uint8_t* data = base + 8 + header_bytes;
  const uint64_t data_bytes = size - 8 - header_bytes;
  std::vector<std::pair<uint64_t, size_t>> starts;   // (begin offset, index into entries)
  for (const auto& [name, info] : header.items()) {  // std::map order: sorted by name
    if (name == "__metadata__") {
      if (info.is_null()) continue;
      if (!info.is_object())
        throw Error(path + ": \"__metadata__\"",
                    str("is ", json_type_words(info), ", expected an object of strings"), kCorrupt);
      for (const auto& [key, value] : info.items()) {
        if (!value.is_string())
          throw Error(str(path, ": \"__metadata__\" key \"", key, "\""),
                      str("value is ", describe(value), ", expected a string"), kCorrupt);
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    uint64_t begin = 0;
    SafetensorsEntry e = parse_entry(name, info, data_bytes, &begin, path);
    e.data = data + begin;
    if (e.bytes > 0) starts.emplace_back(begin, entries_.size());
    entries_.push_back(std::move(e));
  }

  // Non-empty ranges must not overlap (empty tensors occupy no bytes and may sit anywhere).
  std::sort(starts.begin(), starts.end());
  for (size_t i = 1; i < starts.size(); ++i) {
    const SafetensorsEntry& prev = entries_[starts[i - 1].second];
    const SafetensorsEntry& cur = entries_[starts[i].second];
    if (starts[i - 1].first + prev.bytes > starts[i].first)
      throw Error(tensor_where(path, cur.name),
                  str("data [", starts[i].first, ", ", starts[i].first + cur.bytes,
                      ") overlaps tensor \"", prev.name, "\" at [", starts[i - 1].first, ", ",
                      starts[i - 1].first + prev.bytes, ")"),
                  kCorrupt);
  }
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it =
      std::lower_bound(entries_.begin(), entries_.end(), name,
                       [](const SafetensorsEntry& e, const std::string& n) { return e.name < n; });
  return it != entries_.end() && it->name == name ? &*it : nullptr;
}

const SafetensorsEntry& SafetensorsFile::require(const std::string& name,
                                                 const std::vector<int64_t>& shape) const {
  const SafetensorsEntry* e = find(name);
  if (!e)
    throw Error(tensor_where(path_, name), "missing",
                str("the checkpoint has ", entries_.size(),
                    " tensors; check that it was written for this model configuration"));
  if (e->shape != shape)
    throw Error(tensor_where(path_, name),
                str("has shape ", e->shape_string(), ", expected ", shape_words(shape)),
                "the checkpoint and config.json do not match");
  return *e;
}

// ---- conversions ------------------------------------------------------------------------------

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf, or NaN keeping its payload
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);  // rebias 15 -> 127
  } else {
    // zero or subnormal: mantissa * 2^-24, exact in float
    bits = sign | std::bit_cast<uint32_t>(float(mantissa) * 0x1p-24f);
  }
  return std::bit_cast<float>(bits);
}

namespace {
void check_count(const SafetensorsEntry& e, int64_t count, const std::string& where) {
  if (count != e.numel)
    throw Error(
        tensor_where(where, e.name),
        str(e.dtype, " ", e.shape_string(), " has ", e.numel, " elements, expected ", count),
        "the checkpoint and config.json do not match");
}

template <typename T>
T load(const uint8_t* p, int64_t i) {
  T v;
  std::memcpy(&v, p + i * int64_t(sizeof(T)), sizeof(T));  // data may be unaligned
  return v;
}

template <typename T>
void to_i32(const SafetensorsEntry& e, int32_t* out, int64_t n, const std::string& where) {
  for (int64_t i = 0; i < n; ++i) {
    const T v = load<T>(e.data, i);
    bool fits = true;
    if constexpr (std::is_same_v<T, int64_t>) fits = v >= INT32_MIN && v <= INT32_MAX;
    if constexpr (std::is_same_v<T, uint32_t>) fits = v <= uint32_t(INT32_MAX);
    if (!fits)
      throw Error(tensor_where(where, e.name),
                  str("element ", i, " = ", v, " does not fit in int32"),
                  "the tensor holds values out of range for token ids / indices");
    out[i] = int32_t(v);
  }
}
}  // namespace

void read_f32(const SafetensorsEntry& e, float* out, int64_t count, const std::string& where) {
  check_count(e, count, where);
  if (e.dtype == "F32") {
    if (e.bytes) std::memcpy(out, e.data, e.bytes);
  } else if (e.dtype == "BF16") {
    for (int64_t i = 0; i < count; ++i) out[i] = bf16_to_f32(load<uint16_t>(e.data, i));
  } else if (e.dtype == "F16") {
    for (int64_t i = 0; i < count; ++i) out[i] = f16_to_f32(load<uint16_t>(e.data, i));
  } else {
    throw Error(tensor_where(where, e.name), str("dtype ", e.dtype, " cannot be read as float"),
                "expected F32, BF16 or F16; convert the checkpoint");
  }
}

void read_i32(const SafetensorsEntry& e, int32_t* out, int64_t count, const std::string& where) {
  check_count(e, count, where);
  if (e.dtype == "I32")
    to_i32<int32_t>(e, out, count, where);
  else if (e.dtype == "I64")
    to_i32<int64_t>(e, out, count, where);
  else if (e.dtype == "I16")
    to_i32<int16_t>(e, out, count, where);
  else if (e.dtype == "I8")
    to_i32<int8_t>(e, out, count, where);
  else if (e.dtype == "U32")
    to_i32<uint32_t>(e, out, count, where);
  else if (e.dtype == "U16")
    to_i32<uint16_t>(e, out, count, where);
  else if (e.dtype == "U8")
    to_i32<uint8_t>(e, out, count, where);
  else
    throw Error(tensor_where(where, e.name), str("dtype ", e.dtype, " cannot be read as int32"),
                "expected an integer dtype (I8, I16, I32, I64, U8, U16, U32)");
}

// ---- writer -----------------------------------------------------------------------------------

void SafetensorsWriter::add(const std::string& name, const std::string& dtype,
                            const std::vector<int64_t>& shape, const void* data) {
  const std::string where = tensor_where("safetensors writer", name);
  if (name.empty() || name == "__metadata__")
    throw Error(where, "reserved or empty tensor name", "choose another name");
  if (tensors_.count(name)) throw Error(where, "added twice", "each tensor name must be unique");
  const int64_t element_size = safetensors_dtype_size(dtype);
  if (element_size == 0)
    throw Error(where, str("unknown dtype \"", dtype, "\""), "use F32, BF16, ...");
  int64_t numel = 1, bytes = 0;
  for (int64_t d : shape) {
    if (d < 0) throw Error(where, str("shape ", shape_words(shape), " has a negative dimension"));
    if (__builtin_mul_overflow(numel, d, &numel))
      throw Error(where, str("shape ", shape_words(shape), " overflows int64"));
  }
  if (__builtin_mul_overflow(numel, element_size, &bytes))
    throw Error(where, str("shape ", shape_words(shape), " overflows int64 bytes"));
  if (bytes > 0 && data == nullptr) throw Error(where, "null data for a non-empty tensor");
  tensors_[name] = Pending{dtype, shape, data, size_t(bytes)};
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

std::string SafetensorsWriter::header() const {
  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors_) {
    header[name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes}}};
    offset += t.bytes;
  }
  // Invalid UTF-8 in a name or metadata string is refused here (json::type_error 316).
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw Error("safetensors writer", str("cannot encode the header: ", e.what()),
                "tensor names and metadata must be valid UTF-8");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  return out + text;
}

std::vector<uint8_t> SafetensorsWriter::to_bytes() const {
  const std::string head = header();
  std::vector<uint8_t> out(head.begin(), head.end());
  for (const auto& [name, t] : tensors_) {
    const uint8_t* p = static_cast<const uint8_t*>(t.data);
    if (t.bytes) out.insert(out.end(), p, p + t.bytes);
  }
  return out;
}

void SafetensorsWriter::write(const std::string& path) const {
  const std::string head = header();
  std::vector<ByteRange> pieces{{head.data(), head.size()}};
  for (const auto& [name, t] : tensors_)
    if (t.bytes) pieces.push_back({t.data, t.bytes});
  write_file_atomic(path, pieces);
}

}  // namespace infini
