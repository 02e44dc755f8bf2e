// The keys and values a layer keeps between chunks of a stream: the one piece of stream state
// that every softmax-attention mechanism shares (spec §2 streaming rule, §3, §4).
//
//   infini   the current, unfinished segment (0 .. N-1 rows); written into M, z and cleared when
//            the segment completes
//   xl       the previous segment (its K/V used with gradient stopped) + the unfinished one
//   bswa     the previous memory_blocks blocks + the unfinished one
//   fam      as bswa (the FAM rows themselves live in the layer state, not here)
//   sliding  the last window - 1 tokens
//   full     every token of the stream so far (the only cache that grows)
//
// Rows hold the RAW projections (before RoPE), oldest first, so that a mechanism can rotate them
// with positions rebased to the oldest cached row: RoPE only sees position differences, and small
// rebased positions keep the angles exact however long the stream (spec §3).
#pragma once

#include <cstdint>

namespace infini {

struct KvCache {
  int64_t rows = 0;          // rows held per stream (every stream of a state advances together)
  int64_t capacity = 0;      // rows allocated per stream
  float* keys = nullptr;     // [B, capacity, Hkv, d]  raw K, row r of stream b at (b * capacity + r)
  float* values = nullptr;   // [B, capacity, Hkv, d]  V
};

}  // namespace infini
