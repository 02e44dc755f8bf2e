#include "core/arena.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <utility>

namespace infini {

namespace {
size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }
constexpr size_t kHugePage = size_t(2) << 20;
}  // namespace

Arena::Arena(size_t capacity_bytes) {
  capacity_ = round_up(capacity_bytes == 0 ? kAlignment : capacity_bytes, kAlignment);
  // Large blocks are aligned to 2 MiB so that transparent huge pages can back them.
  size_t alignment = capacity_ >= kHugePage ? kHugePage : kAlignment;
  size_t bytes = round_up(capacity_, alignment);
  base_ = static_cast<char*>(std::aligned_alloc(alignment, bytes));
  if (!base_)
    throw Error("arena", str("cannot allocate ", bytes, " bytes"),
                "free memory or choose a smaller model, batch or sequence length");
  if (alignment == kHugePage) madvise(base_, bytes, MADV_HUGEPAGE);  // a hint; failure is fine
  std::memset(base_, 0, bytes);
}

Arena Arena::measuring() {
  Arena a;
  a.measuring_ = true;
  return a;
}

Arena::~Arena() { std::free(base_); }

Arena::Arena(Arena&& other) noexcept { *this = std::move(other); }

Arena& Arena::operator=(Arena&& other) noexcept {
  if (this != &other) {
    std::free(base_);
    base_ = std::exchange(other.base_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    used_ = std::exchange(other.used_, 0);
    measuring_ = std::exchange(other.measuring_, false);
  }
  return *this;
}

void* Arena::take_bytes(size_t bytes) {
  size_t start = used_;
  used_ = round_up(used_ + bytes, kAlignment);
  if (measuring_) return nullptr;
  if (used_ > capacity_)
    throw Error("arena", str("out of space: needs ", used_, " bytes, has ", capacity_),
                "the buffer layout changed between measuring and allocating");
  return base_ + start;
}

}  // namespace infini
