// One large allocation, carved into named buffers: the llm.c way of owning memory.
//
// Big buffers (weights, gradients, optimizer moments, activations, scratch) are allocated once,
// 64-byte aligned, from a single block that asks the kernel for transparent huge pages. Nothing
// is allocated in hot loops: page faults and mmap/munmap churn cost PyTorch a third of its
// training time on these machines (../shared/machine.md).
//
// Two-pass use: an Arena built with Arena::measuring() hands out no memory but counts the bytes
// a layout needs; then Arena(bytes) allocates exactly that and the same layout code runs again.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/error.h"

namespace infini {

class Arena {
 public:
  static constexpr size_t kAlignment = 64;

  Arena() = default;                      // empty arena: allocates nothing
  explicit Arena(size_t capacity_bytes);  // one block, zero-filled
  static Arena measuring();               // counts bytes, hands out nullptr
  ~Arena();
  Arena(Arena&& other) noexcept;
  Arena& operator=(Arena&& other) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // A 64-byte aligned array of n elements of T. Throws if the arena is full.
  template <typename T>
  T* take(int64_t n) {
    INFINI_CHECK(n >= 0, "negative element count ", n);
    return static_cast<T*>(take_bytes(size_t(n) * sizeof(T)));
  }
  void* take_bytes(size_t bytes);

  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }
  bool is_measuring() const { return measuring_; }
  void reset() { used_ = 0; }  // forget every buffer; the memory stays

 private:
  char* base_ = nullptr;
  size_t capacity_ = 0;
  size_t used_ = 0;
  bool measuring_ = false;
};

}  // namespace infini
