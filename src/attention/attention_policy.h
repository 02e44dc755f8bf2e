// Which keys each token attends to, for the softmax-attention baselines of spec §3
// (../shared/spec/memory-mechanisms.md): full attention, a sliding window, Transformer-XL (Dai et
// al. 2019, arXiv 1901.02860, §3.2: the previous segment's states reused with the gradient
// stopped, SG(.)) and block sliding window attention (the baseline of the TransformerFAM paper,
// arXiv 2404.09173: the previous memory_blocks blocks plus the own block causally).
//
// The FlashInfer idea: each mechanism is a small policy struct; one planner turns a policy and a
// chunk of the stream into calls of the one masked-attention kernel (masked_attention.h), so no
// switch over mechanisms appears anywhere else. Positions p count tokens from the stream's first
// token (p = 0); segments and blocks of N tokens are cut from there. Every policy answers:
//
//   first_key(p)      the oldest position that the token at p attends to: it sees [first_key(p), p]
//   run_end(p)        tokens p .. run_end(p) - 1 share one mask shape: keys from first_key(p),
//                     causal, limited by mask_window() (0: no window)
//   gradient_from(p)  the oldest position whose K/V receive gradient from p's attention (XL: its
//                     own segment's start; every other type: all it sees)
//   max_cache_rows()  the most rows a KV cache keeps between chunks; -1: it grows (full)
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string_view>
#include <variant>
#include <vector>

#include "attention/masked_attention.h"

namespace infini {

inline constexpr int64_t kNoRunEnd = std::numeric_limits<int64_t>::max();

// every earlier token of the stream and itself
struct FullPolicy {
  int64_t first_key(int64_t) const { return 0; }
  int64_t run_end(int64_t) const { return kNoRunEnd; }
  int64_t mask_window() const { return 0; }
  int64_t gradient_from(int64_t p) const { return first_key(p); }
  int64_t max_cache_rows() const { return -1; }
};

// the last `window` tokens, itself included
struct SlidingPolicy {
  int64_t window = 1;
  int64_t first_key(int64_t p) const { return std::max<int64_t>(0, p - window + 1); }
  int64_t run_end(int64_t) const { return kNoRunEnd; }
  int64_t mask_window() const { return window; }
  int64_t gradient_from(int64_t p) const { return first_key(p); }
  int64_t max_cache_rows() const { return window - 1; }
};

// its own segment causally + all N tokens of the previous segment, gradient stopped there
struct XlPolicy {
  int64_t segment_length = 1;  // N
  int64_t first_key(int64_t p) const {
    return std::max<int64_t>(0, (p / segment_length - 1) * segment_length);
  }
  int64_t run_end(int64_t p) const { return (p / segment_length + 1) * segment_length; }
  int64_t mask_window() const { return 0; }
  int64_t gradient_from(int64_t p) const { return p / segment_length * segment_length; }
  int64_t max_cache_rows() const { return 2 * segment_length - 1; }
};

// its own block causally + all tokens of the previous memory_blocks blocks
struct BswaPolicy {
  int64_t block_length = 1;   // N
  int64_t memory_blocks = 1;  // MB
  int64_t first_key(int64_t p) const {
    return std::max<int64_t>(0, (p / block_length - memory_blocks) * block_length);
  }
  int64_t run_end(int64_t p) const { return (p / block_length + 1) * block_length; }
  int64_t mask_window() const { return 0; }
  int64_t gradient_from(int64_t p) const { return first_key(p); }
  int64_t max_cache_rows() const { return (memory_blocks + 1) * block_length - 1; }
};

using KvPolicy = std::variant<FullPolicy, SlidingPolicy, XlPolicy, BswaPolicy>;

// The policy of attention.type `type` ("full", "sliding", "xl", "bswa"), validated: throws
// infini::Error naming the field when a value its type uses is out of range.
KvPolicy kv_policy(std::string_view type, int64_t segment_length, int64_t window,
                   int64_t memory_blocks);
const char* kv_policy_name(const KvPolicy& policy);

// Rows a KV cache must hold after `position` tokens of a stream: the keys the token at
// `position` (the next one) attends to, besides itself. kv_cache_max_rows: the most over all
// positions, -1 when the cache grows with the stream (full: rows = position).
int64_t kv_cache_rows_needed(const KvPolicy& policy, int64_t position);
int64_t kv_cache_max_rows(const KvPolicy& policy);

// One kernel call: query rows [t0, t1) of the chunk against keys [key_start, key_start + keys)
// of the chunk's key buffer, under `mask` (relative to key_start). Keys before
// key_start + gradient_start get no gradient from these rows (Transformer-XL's stop-gradient).
// Their probabilities, [t1 - t0, keys] packed, sit at probs_offset in one (stream, head)'s
// probabilities.
struct KvQueryBlock {
  int64_t t0 = 0, t1 = 0;
  int64_t key_start = 0, keys = 0;
  AttentionMask mask;
  int64_t gradient_start = 0;
  int64_t probs_offset = 0;
};

// How a chunk of `tokens` tokens starting at stream position `position` runs. Its key buffer is
// [the cache's newest cached_keys rows ; the chunk's rows], index i holding stream position
// key_position + i: RoPE positions are these indices, i.e. rebased to the oldest key the chunk
// uses, so that angles stay small and exact however long the stream (spec §3).
struct KvChunkPlan {
  int64_t key_position = 0;          // stream position of key index 0: first_key(position)
  int64_t cached_keys = 0;           // keys taken from the cache: position - key_position
  int64_t keys = 0;                  // cached_keys + tokens
  int64_t probs_floats = 0;          // sum of (t1 - t0) * keys over blocks: one (stream, head)
  int64_t max_block_floats = 0;      // largest (t1 - t0) * keys of a block
  int64_t max_block_keys = 0;        // largest keys of a block
  std::vector<KvQueryBlock> blocks;  // in order of t0, at most kKvBlockRows rows each
};

inline constexpr int64_t kKvBlockRows = 64;

KvChunkPlan kv_chunk_plan(const KvPolicy& policy, int64_t position, int64_t tokens);
// The same into an existing plan, reusing its blocks' storage: no allocation once the plan has
// held a chunk of as many blocks (the decode path plans every token).
void kv_chunk_plan_into(KvChunkPlan& plan, const KvPolicy& policy, int64_t position,
                        int64_t tokens);

}  // namespace infini
