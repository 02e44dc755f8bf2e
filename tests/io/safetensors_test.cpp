// safetensors reader and writer: round trips, exact dtype conversion, interop with a Python
// implementation of the format, one test per malformed-file case, fuzzed corruption, atomic write.
#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>

#include "core/error.h"
#include "core/tensor.h"

namespace infini {
namespace {

namespace fs = std::filesystem;

// A fresh directory, removed with its contents at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "infini_safetensors_XXXXXX").string();
    INFINI_CHECK(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

// A file made by hand: u64 length, header text as given, then `data_bytes` bytes 0, 1, 2, ...
std::vector<uint8_t> raw_file(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> out(8 + header.size() + data_bytes);
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  if (!header.empty()) std::memcpy(out.data() + 8, header.data(), header.size());
  for (size_t i = 0; i < data_bytes; ++i) out[8 + header.size() + i] = uint8_t(i);
  return out;
}

// Runs `f`, which must throw infini::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no infini::Error thrown; expected one mentioning " << parts.front();
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message \"" << e.what() << "\" does not mention \"" << p << "\"";
  }
}

uint32_t bits(float f) {
  return std::bit_cast<uint32_t>(f);
}

// Tensors of every common dtype, an empty one and a scalar, with metadata.
struct Sample {
  std::vector<float> f32 = {1.5f, -2.25f, 0.0f, -0.0f, 3.0e38f, 1e-40f};
  std::vector<uint16_t> bf16 = {0x3f80, 0xc000, 0x7f80, 0x0001};
  std::vector<uint16_t> f16 = {0x3c00, 0x0001, 0xfc00, 0x7e00};
  std::vector<int32_t> i32 = {-7, 0, 2147483647};
  std::vector<int64_t> i64 = {-1, 1ll << 40};
  std::vector<uint8_t> u8 = {0, 255, 17};
  std::vector<double> f64 = {3.141592653589793};
  float scalar = 42.0f;

  SafetensorsWriter writer() const {
    SafetensorsWriter w;
    w.add("model.layers.0.weight", "F32", {2, 3}, f32.data());  // added out of order on purpose
    w.add("a.bf16", "BF16", {4}, bf16.data());
    w.add("b.f16", "F16", {2, 2}, f16.data());
    w.add("c.i32", "I32", {3}, i32.data());
    w.add("d.i64", "I64", {2}, i64.data());
    w.add("e.u8", "U8", {3, 1}, u8.data());
    w.add("f.f64", "F64", {1}, f64.data());
    w.add("g.scalar", "F32", {}, &scalar);
    w.add("h.empty", "F32", {0, 3}, nullptr);
    w.set_metadata("format", "pt");
    w.set_metadata("note", "h\u00e9llo \"quoted\"");
    return w;
  }
};

// ---- round trips ------------------------------------------------------------------------------

TEST(safetensors, RoundTripKeepsEveryByte) {
  TempDir dir;
  Sample s;
  const std::string path = dir.file("model.safetensors");
  s.writer().write(path);
  SafetensorsFile f = SafetensorsFile::open(path);

  std::vector<std::string> names;
  for (const auto& e : f.entries()) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"a.bf16", "b.f16", "c.i32", "d.i64", "e.u8", "f.f64",
                                             "g.scalar", "h.empty", "model.layers.0.weight"}));
  auto same = [&](const char* name, const char* dtype, std::vector<int64_t> shape, const void* data,
                  size_t bytes) {
    const SafetensorsEntry* e = f.find(name);
    ASSERT_NE(e, nullptr) << name;
    EXPECT_EQ(e->dtype, dtype) << name;
    EXPECT_EQ(e->shape, shape) << name;
    ASSERT_EQ(e->bytes, bytes) << name;
    if (bytes) {
      EXPECT_EQ(std::memcmp(e->data, data, bytes), 0) << name;
    }
  };
  same("model.layers.0.weight", "F32", {2, 3}, s.f32.data(), 24);
  same("a.bf16", "BF16", {4}, s.bf16.data(), 8);
  same("b.f16", "F16", {2, 2}, s.f16.data(), 8);
  same("c.i32", "I32", {3}, s.i32.data(), 12);
  same("d.i64", "I64", {2}, s.i64.data(), 16);
  same("e.u8", "U8", {3, 1}, s.u8.data(), 3);
  same("f.f64", "F64", {1}, s.f64.data(), 8);
  same("g.scalar", "F32", {}, &s.scalar, 4);
  same("h.empty", "F32", {0, 3}, nullptr, 0);
  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"},
                                                              {"note", "h\u00e9llo \"quoted\""}}));

  // Header padded with spaces to a multiple of 8; the file is the in-memory serialization.
  const std::vector<uint8_t> bytes = read_bytes(path);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes, s.writer().to_bytes());

  // Read -> write again gives the identical file.
  SafetensorsWriter again;
  for (const auto& e : f.entries()) again.add(e.name, e.dtype, e.shape, e.data);
  for (const auto& [k, v] : f.metadata()) again.set_metadata(k, v);
  again.write(dir.file("again.safetensors"));
  EXPECT_EQ(read_bytes(dir.file("again.safetensors")), bytes);
}

TEST(safetensors, OutputDoesNotDependOnInsertionOrder) {
  std::vector<float> a = {1, 2}, b = {3};
  SafetensorsWriter w1, w2;
  w1.add("x", "F32", {2}, a.data());
  w1.add("y", "F32", {1}, b.data());
  w1.set_metadata("k1", "v1");
  w1.set_metadata("k2", "v2");
  w2.set_metadata("k2", "v2");
  w2.add("y", "F32", {1}, b.data());
  w2.set_metadata("k1", "v1");
  w2.add("x", "F32", {2}, a.data());
  EXPECT_EQ(w1.to_bytes(), w2.to_bytes());
}

TEST(safetensors, FromBytesMatchesOpen) {
  Sample s;
  SafetensorsFile f = SafetensorsFile::from_bytes(s.writer().to_bytes(), "memory");
  ASSERT_EQ(f.entries().size(), 9u);
  std::vector<float> out(6);
  read_f32(*f.find("model.layers.0.weight"), out.data(), 6, f.path());
  for (int i = 0; i < 6; ++i) EXPECT_EQ(bits(out[i]), bits(s.f32[i]));
}

TEST(safetensors, RequireChecksNameAndShape) {
  TempDir dir;
  Sample s;
  const std::string path = dir.file("m.safetensors");
  s.writer().write(path);
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(&f.require("c.i32", {3}), f.find("c.i32"));
  expect_error([&] { f.require("model.norm.weight", {4}); },
               {path, "model.norm.weight", "missing"});
  expect_error([&] { f.require("c.i32", {3, 1}); }, {path, "c.i32", "[3]", "[3, 1]"});
}

// ---- conversions ------------------------------------------------------------------------------

TEST(safetensors, F16ConversionIsExact) {
  struct Case {
    uint16_t half;
    uint32_t float_bits;
  };
  const Case cases[] = {
      {0x0000, 0x00000000},  // +0
      {0x8000, 0x80000000},  // -0
      {0x3c00, bits(1.0f)},
      {0xc000, bits(-2.0f)},
      {0x3555, bits(0.333251953125f)},
      {0x7bff, bits(65504.0f)},                  // largest finite
      {0x0400, bits(std::ldexp(1.0f, -14))},     // smallest normal
      {0x0001, bits(std::ldexp(1.0f, -24))},     // smallest subnormal
      {0x03ff, bits(std::ldexp(1023.0f, -24))},  // largest subnormal
      {0x8001, bits(-std::ldexp(1.0f, -24))},
      {0x7c00, 0x7f800000},  // +inf
      {0xfc00, 0xff800000},  // -inf
      {0x7e00, 0x7fc00000},  // quiet NaN
      {0x7c01, 0x7f802000},  // signalling NaN, payload kept
  };
  std::vector<uint16_t> halves;
  for (const Case& c : cases) {
    EXPECT_EQ(bits(f16_to_f32(c.half)), c.float_bits) << std::hex << c.half;
    halves.push_back(c.half);
  }
  // The same through a file and read_f32.
  SafetensorsWriter w;
  w.add("h", "F16", {int64_t(halves.size())}, halves.data());
  SafetensorsFile f = SafetensorsFile::from_bytes(w.to_bytes(), "mem");
  std::vector<float> out(halves.size());
  read_f32(f.entries()[0], out.data(), int64_t(out.size()), "mem");
  for (size_t i = 0; i < halves.size(); ++i) EXPECT_EQ(bits(out[i]), cases[i].float_bits) << i;

  // Every finite half against an independent formula: (-1)^s * m * 2^(e-25) in double.
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint32_t e = (h >> 10) & 31, m = h & 1023;
    if (e == 31) {
      EXPECT_TRUE(m ? std::isnan(f16_to_f32(uint16_t(h))) : std::isinf(f16_to_f32(uint16_t(h))));
      continue;
    }
    double v = e ? std::ldexp(double(m + 1024), int(e) - 25) : std::ldexp(double(m), -24);
    if (h & 0x8000) v = -v;
    ASSERT_EQ(bits(f16_to_f32(uint16_t(h))), bits(float(v))) << std::hex << h;
  }
}

TEST(safetensors, Bf16AndF32ConversionIsExact) {
  const std::vector<uint16_t> bf = {0x3f80, 0x8000, 0x0000, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0xc2f7};
  const std::vector<uint32_t> expect = {bits(1.0f), 0x80000000, 0,          0x7f800000,
                                        0xff800000, 0x7fc00000, 0x00010000, 0xc2f70000};
  const std::vector<uint32_t> f32 = {bits(-0.0f), 0x7f800001, 0x00000001, bits(1e30f)};
  SafetensorsWriter w;
  w.add("bf", "BF16", {int64_t(bf.size())}, bf.data());
  w.add("f", "F32", {2, 2}, f32.data());
  SafetensorsFile f = SafetensorsFile::from_bytes(w.to_bytes(), "mem");
  std::vector<float> out(bf.size());
  read_f32(*f.find("bf"), out.data(), int64_t(out.size()), "mem");
  for (size_t i = 0; i < bf.size(); ++i) {
    EXPECT_EQ(bits(out[i]), expect[i]) << i;
    EXPECT_EQ(bits(out[i]), bits(bf16_to_f32(bf[i])));
  }
  read_f32(*f.find("f"), out.data(), 4, "mem");
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(bits(out[i]), f32[i]) << i;  // NaN payloads too
}

TEST(safetensors, ReadChecksCountAndDtype) {
  Sample s;
  SafetensorsFile f = SafetensorsFile::from_bytes(s.writer().to_bytes(), "ckpt/model.safetensors");
  std::vector<float> out(16);
  expect_error([&] { read_f32(*f.find("c.i32"), out.data(), 3, f.path()); },
               {"ckpt/model.safetensors", "c.i32", "I32", "cannot be read as float"});
  expect_error([&] { read_f32(*f.find("a.bf16"), out.data(), 5, f.path()); },
               {"ckpt/model.safetensors", "a.bf16", "4 elements, expected 5"});
  std::vector<int32_t> ints(4);
  read_i32(*f.find("c.i32"), ints.data(), 3, f.path());
  EXPECT_EQ(ints[2], 2147483647);
  read_i32(*f.find("e.u8"), ints.data(), 3, f.path());
  EXPECT_EQ(ints[1], 255);
  expect_error([&] { read_i32(*f.find("d.i64"), ints.data(), 2, f.path()); },
               {"ckpt/model.safetensors", "d.i64", "does not fit in int32"});
  expect_error([&] { read_i32(*f.find("f.f64"), ints.data(), 1, f.path()); },
               {"f.f64", "cannot be read as int32"});
}

// ---- interop with an independent Python implementation (numpy + struct + json) -----------------

const char* kPythonScript = R"PY(
import json, struct, sys
import numpy as np

DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I32": np.int32, "I64": np.int64,
      "U8": np.uint8, "U16": np.uint16, "BF16": np.uint16}

def tensors():
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    f32 = (np.arange(12, dtype=np.float32) * 0.25 - 1.5).reshape(3, 4)
    f32[0, 0] = -0.0
    bf = (np.array([1.0, -2.5, 2.0**-130, 3.0e38, np.inf], np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return {
        "f16.all": ("F16", halves.view(np.float16)),
        "f16.all_as_f32": ("F32", halves.view(np.float16).astype(np.float32)),
        "w.f32": ("F32", f32),
        "w.bf16": ("BF16", bf),
        "w.i32": ("I32", np.array([[-5, 7], [2**31 - 1, -2**31]], np.int32)),
        "w.i64": ("I64", np.array([-(2**40), 3], np.int64)),
        "w.u8": ("U8", np.array([0, 200, 255], np.uint8)),
        "w.u16": ("U16", np.array([65535], np.uint16)),
        "w.f64": ("F64", np.array([[0.1]], np.float64)),
        "w.empty": ("F32", np.zeros((0, 4), np.float32)),
    }

def write(path):
    t = tensors()
    header, offset, blobs = {"__metadata__": {"writer": "python"}}, 0, []
    for name in sorted(t):
        dtype, a = t[name]
        data = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

def read(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        assert 0 <= b <= e <= len(data), name
        a = np.frombuffer(data[b:e], dtype=np.dtype(DT[info["dtype"]]).newbyteorder("<"))
        out[name] = (info["dtype"], a.reshape(info["shape"]))
    return out, meta

def check(path):
    got, meta = read(path)
    want = tensors()
    assert meta == {"writer": "c++"}, meta
    assert sorted(got) == sorted(want), sorted(got)
    for name, (dtype, a) in want.items():
        g_dtype, g = got[name]
        assert g_dtype == dtype, (name, g_dtype)
        assert g.shape == a.shape, (name, g.shape, a.shape)
        assert g.tobytes() == a.tobytes(), name
    print("python check ok")

def rewrite(src, dst):
    # Re-encode the C++ file with this implementation: the bytes must be identical.
    got, meta = read(src)
    header, offset, blobs = {"__metadata__": meta}, 0, []
    for name in sorted(got):
        dtype, a = got[name]
        data = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    open(dst, "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

if sys.argv[1] == "write": write(sys.argv[2])
elif sys.argv[1] == "check": check(sys.argv[2])
elif sys.argv[1] == "rewrite": rewrite(sys.argv[2], sys.argv[3])
)PY";

bool have_python() {
  return ::access(INFINI_PYTHON, X_OK) == 0 &&
         std::system((std::string(INFINI_PYTHON) + " -c 'import numpy' 2>/dev/null").c_str()) == 0;
}

int run_python(const TempDir& dir, const std::string& args) {
  const std::string script = dir.file("st.py");
  std::ofstream(script) << kPythonScript;
  return std::system((std::string(INFINI_PYTHON) + " " + script + " " + args).c_str());
}

TEST(safetensors, PythonInterop) {
  if (!have_python()) GTEST_SKIP() << INFINI_PYTHON << " with numpy not found";
  TempDir dir;
  const std::string py_file = dir.file("py.safetensors");
  ASSERT_EQ(run_python(dir, "write " + py_file), 0);

  // Read Python's file; every half converts exactly as numpy converts it.
  SafetensorsFile f = SafetensorsFile::open(py_file);
  EXPECT_EQ(f.metadata().at("writer"), "python");
  ASSERT_EQ(f.entries().size(), 10u);
  std::vector<float> halves(65536), numpy(65536);
  read_f32(f.require("f16.all", {65536}), halves.data(), 65536, py_file);
  read_f32(f.require("f16.all_as_f32", {65536}), numpy.data(), 65536, py_file);
  for (int i = 0; i < 65536; ++i) ASSERT_EQ(bits(halves[i]), bits(numpy[i])) << std::hex << i;
  std::vector<float> w(12);
  read_f32(f.require("w.f32", {3, 4}), w.data(), 12, py_file);
  EXPECT_EQ(bits(w[0]), 0x80000000u);
  for (int i = 1; i < 12; ++i) EXPECT_EQ(w[i], float(i) * 0.25f - 1.5f);
  std::vector<float> bf(5);
  read_f32(f.require("w.bf16", {5}), bf.data(), 5, py_file);
  EXPECT_EQ(bf[0], 1.0f);
  EXPECT_EQ(bf[1], -2.5f);
  EXPECT_EQ(bf[2], std::ldexp(1.0f, -130));  // a float subnormal
  EXPECT_TRUE(std::isinf(bf[4]));
  std::vector<int32_t> ints(4);
  read_i32(f.require("w.i32", {2, 2}), ints.data(), 4, py_file);
  EXPECT_EQ(ints, (std::vector<int32_t>{-5, 7, 2147483647, -2147483647 - 1}));
  EXPECT_EQ(f.require("w.empty", {0, 4}).bytes, 0u);

  // Write the same tensors from C++: Python reads them back equal, and Python's own encoding of
  // them is byte-identical to ours (so the layout is the plain, documented one).
  SafetensorsWriter writer;
  for (const auto& e : f.entries()) writer.add(e.name, e.dtype, e.shape, e.data);
  writer.set_metadata("writer", "c++");
  const std::string cpp_file = dir.file("cpp.safetensors");
  writer.write(cpp_file);
  EXPECT_EQ(run_python(dir, "check " + cpp_file), 0);
  const std::string py_again = dir.file("py_again.safetensors");
  ASSERT_EQ(run_python(dir, "rewrite " + cpp_file + " " + py_again), 0);
  EXPECT_EQ(read_bytes(py_again), read_bytes(cpp_file));
}

// ---- malformed files: one case each, the message names the file and the tensor / key ----------

struct Malformed {
  const char* name;
  std::string header;  // JSON header text ("" when `bytes` is given)
  size_t data_bytes;
  std::vector<std::string> mentions;          // besides the file path
  std::optional<std::vector<uint8_t>> bytes;  // the whole file, when not built from the header
};

Malformed from_bytes(const char* name, std::vector<uint8_t> bytes,
                     std::vector<std::string> mentions) {
  return Malformed{name, "", 0, std::move(mentions), std::move(bytes)};
}
Malformed from_header(const char* name, std::string header, size_t data_bytes,
                      std::vector<std::string> mentions) {
  return Malformed{name, std::move(header), data_bytes, std::move(mentions), std::nullopt};
}
// A u64 header length followed by `extra` spaces.
std::vector<uint8_t> u64_prefix(uint64_t n, size_t extra) {
  std::vector<uint8_t> out(8 + extra, ' ');
  std::memcpy(out.data(), &n, 8);
  return out;
}

const std::string kF32 = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";

std::vector<Malformed> malformed_cases() {
  return {
      from_bytes("Empty", {}, {"0 bytes", "shorter than the 8-byte header"}),
      from_bytes("FiveBytes", {1, 2, 3, 4, 5}, {"5 bytes, shorter"}),
      from_bytes("HeaderBeyondFile", u64_prefix(100, 10), {"header length 100", "beyond the end"}),
      from_bytes("HeaderAbsurd", u64_prefix(uint64_t(1) << 62, 10), {"absurd"}),
      from_bytes("HeaderMaxU64", u64_prefix(~uint64_t(0), 10), {"absurd"}),
      from_header("InvalidJson", R"({"w": {"dtype": "F32",)", 0, {"invalid JSON"}),
      from_header("InvalidUtf8", "{\"w\xff\": 1}", 0, {"invalid JSON"}),
      from_header("HeaderNotObject", "[1, 2]", 0, {"header is an array", "expected a JSON object"}),
      from_header("DeepNesting", std::string(100000, '[') + std::string(100000, ']'), 0,
                  {"nested deeper"}),
      from_header("EntryNotObject", R"({"layer.w": 3})", 0, {"\"layer.w\"", "an integer"}),
      from_header("MissingDtype", R"({"layer.w": {"shape":[2],"data_offsets":[0,8]}})", 8,
                  {"\"layer.w\"", "no \"dtype\""}),
      from_header("MissingShape", R"({"layer.w": {"dtype":"F32","data_offsets":[0,8]}})", 8,
                  {"\"layer.w\"", "no \"shape\""}),
      from_header("MissingOffsets", R"({"layer.w": {"dtype":"F32","shape":[2]}})", 8,
                  {"\"layer.w\"", "no \"data_offsets\""}),
      from_header("DtypeNotString", R"({"layer.w": {"dtype":4,"shape":[2],"data_offsets":[0,8]}})",
                  8, {"\"layer.w\"", "\"dtype\" is an integer"}),
      from_header("UnknownDtype",
                  R"({"layer.w": {"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8,
                  {"\"layer.w\"", "unknown dtype \"F33\""}),
      from_header("ShapeNotArray", R"({"layer.w": {"dtype":"F32","shape":2,"data_offsets":[0,8]}})",
                  8, {"\"layer.w\"", "\"shape\" is an integer"}),
      from_header("ShapeNegative",
                  R"({"layer.w": {"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8,
                  {"\"layer.w\"", "dimension 0", "non-negative integer"}),
      from_header("ShapeFloat",
                  R"({"layer.w": {"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8,
                  {"\"layer.w\"", "floating-point"}),
      from_header("ShapeString",
                  R"({"layer.w": {"dtype":"F32","shape":[1,"2"],"data_offsets":[0,8]}})", 8,
                  {"\"layer.w\"", "dimension 1", "a string"}),
      from_header("ShapeHuge",
                  R"({"layer.w": {"dtype":"F32","shape":[18446744073709551615],)"
                  R"("data_offsets":[0,8]}})",
                  8, {"\"layer.w\"", "non-negative integer"}),
      from_header("ShapeOverflow",
                  R"({"layer.w": {"dtype":"F32","shape":[4294967296,4294967296],)"
                  R"("data_offsets":[0,8]}})",
                  8, {"\"layer.w\"", "64 bits"}),
      from_header("ShapeBytesOverflow",
                  R"({"layer.w": {"dtype":"F64","shape":[2305843009213693952],)"
                  R"("data_offsets":[0,8]}})",
                  8, {"\"layer.w\"", "64 bits"}),
      from_header("OffsetsNotArray", R"({"layer.w": {"dtype":"F32","shape":[2],"data_offsets":8}})",
                  8, {"\"layer.w\"", "\"data_offsets\" is an integer"}),
      from_header("OffsetsOneValue",
                  R"({"layer.w": {"dtype":"F32","shape":[2],"data_offsets":[8]}})", 8,
                  {"\"layer.w\"", "[begin, end]"}),
      from_header("OffsetsThreeValues",
                  R"({"layer.w": {"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}})", 9,
                  {"\"layer.w\"", "[begin, end]"}),
      from_header("OffsetsNegative",
                  R"({"layer.w": {"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8,
                  {"\"layer.w\"", "non-negative"}),
      from_header("OffsetsReversed",
                  R"({"layer.w": {"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8,
                  {"\"layer.w\"", "begin > end"}),
      from_header("Truncated", "{\"layer.w\": {" + kF32 + "}}", 5,
                  {"\"layer.w\"", "beyond the data section (5 bytes)", "truncated"}),
      from_header("OffsetsHuge",
                  R"({"layer.w": {"dtype":"F32","shape":[2],)"
                  R"("data_offsets":[18446744073709551608,18446744073709551615]}})",
                  8, {"\"layer.w\"", "beyond the data section"}),
      from_header("SizeMismatch",
                  R"({"layer.w": {"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8,
                  {"\"layer.w\"", "hold 8 bytes", "needs 12"}),
      from_header("Overlap",
                  "{\"layer.a\": {" + kF32 +
                      R"(}, "layer.b": {"dtype":"I32","shape":[2],)"
                      R"("data_offsets":[4,12]}})",
                  12, {"\"layer.b\"", "overlaps tensor \"layer.a\""}),
      from_header("DuplicateName", "{\"layer.w\": {" + kF32 + "}, \"layer.w\": {" + kF32 + "}}", 8,
                  {"duplicate key \"layer.w\""}),
      from_header("DuplicateField",
                  R"({"layer.w": {"dtype":"F32","dtype":"I32","shape":[2],)"
                  R"("data_offsets":[0,8]}})",
                  8, {"duplicate key \"dtype\"", "layer.w"}),
      from_header("MetadataNotObject", "{\"__metadata__\": [\"a\"], \"layer.w\": {" + kF32 + "}}",
                  8, {"\"__metadata__\"", "an array"}),
      from_header("MetadataNotString",
                  "{\"__metadata__\": {\"step\": 5}, \"layer.w\": {" + kF32 + "}}", 8,
                  {"\"__metadata__\" key \"step\"", "an integer"}),
  };
}

void PrintTo(const Malformed& c, std::ostream* os) {
  *os << c.name;
}  // ctest names

class safetensors_malformed : public testing::TestWithParam<Malformed> {};

TEST_P(safetensors_malformed, ThrowsNamingFileAndTensor) {
  const Malformed& c = GetParam();
  TempDir dir;
  const std::string path = dir.file(std::string(c.name) + ".safetensors");
  const std::vector<uint8_t> bytes = c.bytes ? *c.bytes : raw_file(c.header, c.data_bytes);
  write_bytes(path, bytes);
  std::vector<std::string> mentions = c.mentions;
  mentions.push_back(path);
  expect_error([&] { SafetensorsFile::open(path); }, mentions);
  // The same checks apply to bytes in memory.
  mentions.back() = "in-memory";
  expect_error([&] { SafetensorsFile::from_bytes(bytes, "in-memory"); }, mentions);
}

INSTANTIATE_TEST_SUITE_P(Cases, safetensors_malformed, testing::ValuesIn(malformed_cases()),
                         [](const testing::TestParamInfo<Malformed>& p) { return p.param.name; });

TEST(safetensors, OpenReportsMissingFileAndDirectory) {
  TempDir dir;
  expect_error([&] { SafetensorsFile::open(dir.file("nope.safetensors")); },
               {dir.file("nope.safetensors"), "cannot open", "No such file"});
  expect_error([&] { SafetensorsFile::open(dir.path.string()); },
               {dir.path.string(), "not a regular file"});
}

TEST(safetensors, AcceptsGapsEmptyTensorsAndNoMetadata) {
  // Written by someone else: unsorted offsets, a gap, trailing bytes, an empty tensor anywhere.
  const std::string header = R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                             R"("a":{"dtype":"U8","shape":[3],"data_offsets":[4,7]},)"
                             R"("z":{"dtype":"F32","shape":[0,5],"data_offsets":[1,1]}})";
  SafetensorsFile f = SafetensorsFile::from_bytes(raw_file(header, 9), "mem");
  ASSERT_EQ(f.entries().size(), 3u);
  EXPECT_EQ(f.entries()[0].name, "a");
  EXPECT_EQ(f.find("a")->data[0], 4);
  EXPECT_EQ(f.find("b")->data[1], 1);
  EXPECT_TRUE(f.metadata().empty());
}

// ---- fuzzing: corrupt files load or throw infini::Error, never crash --------------------------

// Touches every loaded tensor's bytes so that the sanitizers see any out-of-range pointer.
void consume(const SafetensorsFile& f) {
  for (const auto& e : f.entries()) {
    std::vector<float> floats(size_t(e.numel));  // <= file size: validated
    std::vector<int32_t> ints(floats.size());
    try {
      read_f32(e, floats.data(), e.numel, f.path());
    } catch (const Error&) {
    }
    try {
      read_i32(e, ints.data(), e.numel, f.path());
    } catch (const Error&) {
    }
    unsigned sum = 0;
    for (size_t i = 0; i < e.bytes; ++i) sum += e.data[i];
    (void)sum;
  }
}

TEST(safetensors, EveryTruncationThrows) {
  TempDir dir;
  Sample s;
  const std::vector<uint8_t> full = s.writer().to_bytes();
  const std::string path = dir.file("t.safetensors");
  for (size_t n = 0; n < full.size(); ++n) {
    write_bytes(path, std::vector<uint8_t>(full.begin(), full.begin() + long(n)));
    try {
      SafetensorsFile::open(path);
      ADD_FAILURE() << "a file truncated to " << n << " of " << full.size() << " bytes loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  write_bytes(path, full);
  EXPECT_EQ(SafetensorsFile::open(path).entries().size(), 9u);
}

TEST(safetensors, RandomCorruptionLoadsOrThrows) {
  Sample s;
  const std::vector<uint8_t> full = s.writer().to_bytes();
  uint64_t header_bytes;
  std::memcpy(&header_bytes, full.data(), 8);
  std::mt19937_64 rng(1234);
  const char interesting[] = "0123456789-.e[]{}\",: \\";
  int loaded = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::vector<uint8_t> bytes = full;
    const int edits = 1 + int(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      // Mostly inside the header, where the structure is.
      const size_t at = rng() % 4 ? 8 + rng() % header_bytes : rng() % bytes.size();
      switch (rng() % 4) {
        case 0:
          bytes[at] ^= uint8_t(1u << (rng() % 8));
          break;
        case 1:
          bytes[at] = uint8_t(rng());
          break;
        case 2:
          bytes[at] = uint8_t(interesting[rng() % (sizeof(interesting) - 1)]);
          break;
        case 3:
          bytes.resize(at);
          break;
      }
      if (bytes.size() <= 8) break;
    }
    try {
      SafetensorsFile f = SafetensorsFile::from_bytes(bytes, "fuzz");
      consume(f);
      ++loaded;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("fuzz"), std::string::npos) << e.what();
    }
  }
  EXPECT_GT(loaded, 0);  // some edits (e.g. inside tensor data) leave a valid file
}

// ---- writer -----------------------------------------------------------------------------------

TEST(safetensors_writer, RefusesBadTensors) {
  float x[2] = {1, 2};
  SafetensorsWriter w;
  w.add("x", "F32", {2}, x);
  expect_error([&] { w.add("x", "F32", {2}, x); }, {"\"x\"", "added twice"});
  expect_error([&] { w.add("y", "F31", {2}, x); }, {"\"y\"", "unknown dtype"});
  expect_error([&] { w.add("y", "F32", {-2}, x); }, {"\"y\"", "negative"});
  expect_error([&] { w.add("y", "F32", {1ll << 62, 1ll << 62}, x); }, {"\"y\"", "overflows"});
  expect_error([&] { w.add("y", "F32", {2}, nullptr); }, {"\"y\"", "null data"});
  expect_error([&] { w.add("__metadata__", "F32", {2}, x); }, {"reserved"});
}

TEST(safetensors_writer, MissingDirectoryThrowsAndLeavesNothing) {
  TempDir dir;
  float x[2] = {1, 2};
  SafetensorsWriter w;
  w.add("x", "F32", {2}, x);
  const std::string path = dir.file("no/such/dir/model.safetensors");
  expect_error([&] { w.write(path); }, {path, "cannot create temporary file"});
  EXPECT_TRUE(dir.names().empty());
}

TEST(safetensors_writer, UnwritableDirectoryThrowsAndLeavesNothing) {
  float x[2] = {1, 2};
  SafetensorsWriter w;
  w.add("x", "F32", {2}, x);
  TempDir dir;
  // A "directory" that is a regular file: refused even to root.
  std::ofstream(dir.file("plain_file")) << "x";
  const std::string under_file = dir.file("plain_file/m.safetensors");
  expect_error([&] { w.write(under_file); }, {under_file, "Not a directory"});
  EXPECT_EQ(dir.names(), std::vector<std::string>{"plain_file"});

  if (::geteuid() != 0) {
    fs::permissions(dir.path, fs::perms::owner_read | fs::perms::owner_exec);
    expect_error([&] { w.write(dir.file("m.safetensors")); },
                 {dir.file("m.safetensors"), "Permission denied"});
    fs::permissions(dir.path, fs::perms::owner_all);
    EXPECT_EQ(dir.names(), std::vector<std::string>{"plain_file"});
  } else if (fs::is_directory("/sys")) {
    // root ignores permission bits; sysfs refuses new files even to root.
    expect_error([&] { w.write("/sys/infini_test.safetensors"); },
                 {"/sys/infini_test.safetensors", "cannot create temporary file"});
    EXPECT_FALSE(fs::exists("/sys/infini_test.safetensors"));
  }
}

// Disk full in the middle of the data: RLIMIT_FSIZE makes write() fail with EFBIG (the same path
// as ENOSPC). The old file must stay intact and no temporary file may remain.
TEST(safetensors_writer, FailedWriteKeepsOldFileAndRemovesTemporary) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  Sample s;
  s.writer().write(path);
  const std::vector<uint8_t> old_bytes = read_bytes(path);

  std::vector<float> big(1 << 18, 0.5f);  // 1 MiB
  SafetensorsWriter w;
  w.add("big", "F32", {int64_t(big.size())}, big.data());
  rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit small = saved;
  small.rlim_cur = 64 * 1024;
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  try {
    w.write(path);
    ADD_FAILURE() << "write past RLIMIT_FSIZE succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("free disk space"), std::string::npos) << e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);

  EXPECT_EQ(read_bytes(path), old_bytes);
  EXPECT_EQ(dir.names(), std::vector<std::string>{"model.safetensors"});

  // Without the limit the new file replaces the old one, complete.
  w.write(path);
  SafetensorsFile f = SafetensorsFile::open(path);
  ASSERT_EQ(f.entries().size(), 1u);
  EXPECT_EQ(std::memcmp(f.entries()[0].data, big.data(), big.size() * 4), 0);
  EXPECT_EQ(dir.names(), std::vector<std::string>{"model.safetensors"});
}

TEST(safetensors_writer, ReplacingAnOpenFileKeepsTheOldMappingValid) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  float a[2] = {1, 2}, b[3] = {7, 8, 9};
  SafetensorsWriter wa, wb;
  wa.add("x", "F32", {2}, a);
  wb.add("x", "F32", {3}, b);
  wa.write(path);
  SafetensorsFile old_file = SafetensorsFile::open(path);
  wb.write(path);  // rename: the old inode lives on under the mapping
  float out[2];
  read_f32(old_file.require("x", {2}), out, 2, path);
  EXPECT_EQ(out[1], 2.0f);
  EXPECT_EQ(SafetensorsFile::open(path).require("x", {3}).bytes, 12u);
}

}  // namespace
}  // namespace infini
