// A tensor view: a pointer plus shape and strides (in elements), fp32 or bf16 storage.
//
// Views never own memory; buffers come from an Arena (arena.h) or a mapped file. Construction is
// checked (non-negative sizes, at most kMaxDims dimensions, strides that fit) so that a wrong shape
// is reported where it is made rather than as a wild read later.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>

#include "core/error.h"

namespace infini {

enum class DType : uint8_t { F32, BF16 };

inline const char* dtype_name(DType t) { return t == DType::F32 ? "F32" : "BF16"; }
inline int64_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

// bf16 <-> fp32: bf16 is the top 16 bits of an fp32; rounding to nearest even.
using bf16 = uint16_t;
inline float bf16_to_f32(bf16 x) { return std::bit_cast<float>(uint32_t(x) << 16); }
inline bf16 f32_to_bf16(float f) {
  uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return bf16((bits >> 16) | 0x40u);  // NaN stays NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return bf16(bits >> 16);
}

struct TensorView {
  static constexpr int kMaxDims = 5;

  void* data = nullptr;
  DType dtype = DType::F32;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};
  std::array<int64_t, kMaxDims> strides{};  // in elements

  // A contiguous row-major view of `shape` over `data`.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape) {
    TensorView v;
    INFINI_CHECK(shape.size() <= kMaxDims, "at most ", kMaxDims, " dimensions, got ", shape.size());
    v.data = data;
    v.dtype = dtype;
    v.ndim = int(shape.size());
    int i = 0;
    for (int64_t s : shape) {
      INFINI_CHECK(s >= 0, "dimension ", i, " has negative size ", s);
      v.shape[i++] = s;
    }
    int64_t stride = 1;
    for (int d = v.ndim - 1; d >= 0; --d) {
      v.strides[d] = stride;
      INFINI_CHECK(v.shape[d] == 0 || stride <= INT64_MAX / v.shape[d], "tensor too large");
      stride *= v.shape[d];
    }
    INFINI_CHECK(data != nullptr || stride == 0, "null data for a non-empty tensor");
    return v;
  }
  static TensorView f32(float* data, std::initializer_list<int64_t> shape) {
    return contiguous(data, DType::F32, shape);
  }
  static TensorView bf16s(bf16* data, std::initializer_list<int64_t> shape) {
    return contiguous(data, DType::BF16, shape);
  }

  int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= shape[d];
    return n;
  }
  int64_t size(int dim) const {
    INFINI_CHECK(dim >= 0 && dim < ndim, "dimension ", dim, " of a ", ndim, "-d tensor");
    return shape[dim];
  }
  bool is_contiguous() const {
    int64_t stride = 1;
    for (int d = ndim - 1; d >= 0; --d) {
      if (shape[d] != 1 && strides[d] != stride) return false;
      stride *= shape[d];
    }
    return true;
  }

  // The sub-view [begin, end) along `dim` (same number of dimensions).
  TensorView slice(int dim, int64_t begin, int64_t end) const {
    INFINI_CHECK(dim >= 0 && dim < ndim, "slice of dimension ", dim, " of a ", ndim, "-d tensor");
    INFINI_CHECK(0 <= begin && begin <= end && end <= shape[dim], "slice [", begin, ", ", end,
                 ") outside dimension ", dim, " of size ", shape[dim]);
    TensorView v = *this;
    v.data = static_cast<char*>(data) + begin * strides[dim] * dtype_size(dtype);
    v.shape[dim] = end - begin;
    return v;
  }

  // Element offset of an index, checked against the shape.
  int64_t offset(std::initializer_list<int64_t> index) const {
    INFINI_CHECK(int(index.size()) == ndim, "index with ", index.size(), " coordinates for a ",
                 ndim, "-d tensor");
    int64_t off = 0;
    int d = 0;
    for (int64_t i : index) {
      INFINI_CHECK(0 <= i && i < shape[d], "index ", i, " outside dimension ", d, " of size ",
                   shape[d]);
      off += i * strides[d++];
    }
    return off;
  }
  float get(std::initializer_list<int64_t> index) const {
    int64_t off = offset(index);
    return dtype == DType::F32 ? static_cast<const float*>(data)[off]
                               : bf16_to_f32(static_cast<const bf16*>(data)[off]);
  }
  float* f32_data() const {
    INFINI_CHECK(dtype == DType::F32, "expected an F32 tensor, got ", dtype_name(dtype));
    return static_cast<float*>(data);
  }

  std::string shape_string() const {
    std::string s = "[";
    for (int d = 0; d < ndim; ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
    return s + "]";
  }
};

}  // namespace infini
