// src/core: checked tensor views, the arena, bf16 conversion, the thread pool.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/arena.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/tensor.h"

namespace infini {
namespace {

// ---- TensorView -------------------------------------------------------------------------------

TEST(TensorViewTest, ContiguousShapeAndStrides) {
  std::vector<float> buf(2 * 3 * 4);
  const TensorView v = TensorView::f32(buf.data(), {2, 3, 4});
  EXPECT_EQ(v.ndim, 3);
  EXPECT_EQ(v.numel(), 24);
  EXPECT_EQ(v.strides[0], 12);
  EXPECT_EQ(v.strides[1], 4);
  EXPECT_EQ(v.strides[2], 1);
  EXPECT_TRUE(v.is_contiguous());
  EXPECT_EQ(v.shape_string(), "[2, 3, 4]");
  EXPECT_EQ(v.offset({1, 2, 3}), 23);
  buf[23] = 5.0f;
  EXPECT_EQ(v.get({1, 2, 3}), 5.0f);
}

TEST(TensorViewTest, BadConstructionThrows) {
  std::vector<float> buf(16);
  EXPECT_THROW(TensorView::f32(buf.data(), {2, -1}), Error);             // negative size
  EXPECT_THROW(TensorView::f32(buf.data(), {1, 1, 1, 1, 1, 1}), Error);  // too many dims
  EXPECT_THROW(TensorView::f32(nullptr, {2, 2}), Error);                 // null, non-empty
  EXPECT_NO_THROW(TensorView::f32(nullptr, {0, 5}));                     // null, empty: fine
  EXPECT_THROW(TensorView::f32(buf.data(), {INT64_MAX / 2, 4}), Error);  // too large
}

TEST(TensorViewTest, SliceAndIndexChecks) {
  std::vector<float> buf(4 * 6);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = float(i);
  const TensorView v = TensorView::f32(buf.data(), {4, 6});
  const TensorView cols = v.slice(1, 2, 5);  // a column slice: strided rows
  EXPECT_EQ(cols.shape[1], 3);
  EXPECT_EQ(cols.strides[0], 6);
  EXPECT_FALSE(cols.is_contiguous());
  EXPECT_EQ(cols.get({1, 0}), 8.0f);
  const TensorView rows = v.slice(0, 1, 3);
  EXPECT_TRUE(rows.is_contiguous());
  EXPECT_EQ(rows.get({0, 0}), 6.0f);
  EXPECT_EQ(v.slice(0, 4, 4).numel(), 0);  // empty slice at the end is fine

  EXPECT_THROW(v.slice(2, 0, 1), Error);  // no such dimension
  EXPECT_THROW(v.slice(-1, 0, 1), Error);
  EXPECT_THROW(v.slice(0, 3, 5), Error);   // past the end
  EXPECT_THROW(v.slice(0, -1, 2), Error);  // negative begin
  EXPECT_THROW(v.slice(1, 4, 2), Error);   // begin > end
  EXPECT_THROW(v.offset({4, 0}), Error);   // index out of range
  EXPECT_THROW(v.offset({0, -1}), Error);
  EXPECT_THROW(v.offset({0}), Error);     // wrong number of coordinates
  EXPECT_THROW(cols.get({0, 3}), Error);  // checked against the slice's own shape
  EXPECT_THROW(v.size(2), Error);

  std::vector<bf16> half(4);
  EXPECT_THROW(TensorView::bf16s(half.data(), {4}).f32_data(), Error);  // wrong dtype
  try {
    v.slice(0, 3, 5);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside dimension 0 of size 4"), std::string::npos)
        << e.what();
  }
}

// ---- Arena ------------------------------------------------------------------------------------

TEST(ArenaTest, MeasuringCountsAlignedBytesAndHandsOutNull) {
  Arena m = Arena::measuring();
  EXPECT_TRUE(m.is_measuring());
  EXPECT_EQ(m.take<float>(3), nullptr);  // 12 bytes -> 64
  EXPECT_EQ(m.used(), 64u);
  EXPECT_EQ(m.take<float>(17), nullptr);  // 68 bytes -> 128
  EXPECT_EQ(m.used(), 192u);
  EXPECT_EQ(m.take<float>(0), nullptr);
  EXPECT_EQ(m.used(), 192u);
}

TEST(ArenaTest, SameLayoutFitsExactlyAndIsAlignedAndZeroed) {
  auto layout = [](Arena& a, std::vector<void*>& out) {
    out.push_back(a.take<float>(3));
    out.push_back(a.take<bf16>(101));
    out.push_back(a.take<double>(1));
    out.push_back(a.take<int32_t>(1000));
  };
  Arena m = Arena::measuring();
  std::vector<void*> ptrs;
  layout(m, ptrs);
  Arena arena(m.used());
  ptrs.clear();
  layout(arena, ptrs);
  EXPECT_EQ(arena.used(), m.used());
  for (void* p : ptrs) {
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % Arena::kAlignment, 0u) << p;
  }
  const auto* bytes = static_cast<const unsigned char*>(ptrs[0]);
  for (size_t i = 0; i < arena.used(); ++i) ASSERT_EQ(bytes[i], 0) << "byte " << i;
  // Buffers do not overlap: each starts after the previous one's end.
  EXPECT_GE(static_cast<char*>(ptrs[1]) - static_cast<char*>(ptrs[0]), 12);
  EXPECT_GE(static_cast<char*>(ptrs[2]) - static_cast<char*>(ptrs[1]), 202);
  // A big arena (huge-page path) is aligned too.
  Arena big(size_t(5) << 20);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big.take<float>(1)) % Arena::kAlignment, 0u);
}

TEST(ArenaTest, OverflowAndBadCountsThrow) {
  Arena arena(128);
  EXPECT_NE(arena.take<float>(16), nullptr);  // 64 bytes
  EXPECT_NE(arena.take<float>(16), nullptr);  // 128
  EXPECT_THROW(arena.take<float>(1), Error);
  EXPECT_THROW(arena.take<float>(-1), Error);
  arena.reset();
  EXPECT_EQ(arena.used(), 0u);
  EXPECT_NE(arena.take<float>(32), nullptr);  // the memory is reusable after reset
  try {
    arena.take<float>(1);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of space"), std::string::npos) << e.what();
  }
}

TEST(ArenaTest, MoveTransfersOwnership) {
  Arena a(256);
  float* p = a.take<float>(4);
  Arena b = std::move(a);
  EXPECT_EQ(b.capacity(), 256u);
  EXPECT_EQ(b.used(), 64u);
  EXPECT_EQ(a.capacity(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
  p[3] = 1.0f;                  // still valid: b owns it
  Arena c;
  c = std::move(b);
  EXPECT_EQ(c.capacity(), 256u);
}

// ---- bf16 -------------------------------------------------------------------------------------

TEST(Bf16Test, EveryBf16RoundTripsExactly) {
  for (uint32_t b = 0; b <= 0xffffu; ++b) {
    const float f = bf16_to_f32(bf16(b));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f)))) << std::hex << b;
      continue;
    }
    ASSERT_EQ(f32_to_bf16(f), bf16(b)) << std::hex << b;
  }
}

TEST(Bf16Test, RoundsToNearestEven) {
  // bf16 keeps 8 significant bits: near 1 its spacing is 2^-7.
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 0x1p-8f)), 1.0f);                // tie -> even (down)
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3 * 0x1p-8f)), 1.0f + 0x1p-6f);  // tie -> even (up)
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f)), 1.0f + 0x1p-7f);  // above tie
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(-2.5f)), -2.5f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::infinity())),
            std::numeric_limits<float>::infinity());
  // The largest float rounds up to infinity (past bf16's largest finite value).
  EXPECT_TRUE(std::isinf(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::max()))));
  // Relative error of rounding is at most 2^-9 for normal values.
  for (float f : {3.14159265f, 1e-20f, 6.02e23f, -0.1f}) {
    EXPECT_LE(std::fabs(bf16_to_f32(f32_to_bf16(f)) - f), std::fabs(f) * 0x1p-9f) << f;
  }
}

// ---- thread pool ------------------------------------------------------------------------------

TEST(ParallelTest, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3}) {
    threads_init(threads);
    EXPECT_EQ(threads_count(), threads);
    for (int64_t n :
         {int64_t(0), int64_t(1), int64_t(2), int64_t(3), int64_t(1000), int64_t(100'003)}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> bad_thread{0};
      parallel_for(n, [&](int64_t i) {
        hits[size_t(i)].fetch_add(1);
        if (thread_index() < 0 || thread_index() >= threads) bad_thread = 1;
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "index " << i;
      EXPECT_EQ(bad_thread.load(), 0);
    }
  }
  threads_init(0);
}

TEST(ParallelTest, ParallelRangesAreContiguousDisjointAndComplete) {
  threads_init(2);
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(5), int64_t(1001)}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    std::atomic<int> calls{0};
    parallel_ranges(n, [&](int64_t begin, int64_t end) {
      ++calls;
      EXPECT_TRUE(in_parallel_region());
      EXPECT_LT(begin, end);
      for (int64_t i = begin; i < end; ++i) hits[size_t(i)].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "index " << i;
    EXPECT_LE(calls.load(), 2);
  }
  EXPECT_FALSE(in_parallel_region());
  EXPECT_EQ(thread_index(), 0);
  threads_init(0);
}

TEST(ParallelTest, NestedParallelForRunsOnTheCallingThread) {
  threads_init(2);
  std::atomic<int> inner_teams_bigger_than_one{0};
  parallel_for(2, [&](int64_t) {
    parallel_ranges(100, [&](int64_t begin, int64_t end) {
      if (begin != 0 || end != 100) inner_teams_bigger_than_one = 1;
    });
  });
  EXPECT_EQ(inner_teams_bigger_than_one.load(), 0);
  threads_init(0);
}

// The split is static: the same thread gets the same indices in every run.
TEST(ParallelTest, StaticSplitIsReproducible) {
  threads_init(2);
  const int64_t n = 1000;
  std::vector<int> first(n), second(n);
  parallel_for(n, [&](int64_t i) { first[i] = thread_index(); });
  parallel_for(n, [&](int64_t i) { second[i] = thread_index(); });
  EXPECT_EQ(first, second);
  threads_init(0);
}

}  // namespace
}  // namespace infini
