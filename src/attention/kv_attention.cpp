// Softmax attention over a KV cache, forward and backward. See kv_attention.h for the equations
// and attention_policy.h for the mechanisms.
//
// Work is split across (stream b, kv head g) pairs: each task rotates its kv head's keys once
// into a key buffer [the cache's newest rows ; the chunk's rows] with RoPE positions rebased to
// that buffer's first row, then runs the query heads of its group through the chunk plan's
// blocks, each block one single-threaded call of the masked-attention kernel. The forward pass
// keeps only the attention probabilities; backward recomputes the rotations (O(T d) work).
#include "attention/kv_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "attention/masked_attention.h"
#include "core/error.h"
#include "core/parallel.h"
#include "kernels/rope.h"

namespace infini {

namespace {

int64_t forward_scratch(const KvChunkPlan& plan, const KvShape& s) {
  return 2 * plan.keys * s.head_dim + s.tokens * s.head_dim + plan.max_block_floats;
}

int64_t backward_scratch(const KvChunkPlan& plan, const KvShape& s) {
  return 4 * plan.keys * s.head_dim + 2 * s.tokens * s.head_dim + plan.max_block_floats +
         2 * plan.max_block_keys * s.head_dim;
}

// Everything a call relies on, checked before any thread starts.
void check_call(const KvChunkPlan& plan, const KvCache& cache, const RopeTable& rope,
                const KvShape& s, const char* where) {
  INFINI_CHECK(s.batch >= 1 && s.tokens >= 1 && s.kv_heads >= 1 && s.heads >= s.kv_heads &&
                   s.heads % s.kv_heads == 0,
               where, ": bad shape B ", s.batch, ", T ", s.tokens, ", H ", s.heads, ", Hkv ",
               s.kv_heads);
  INFINI_CHECK(s.head_dim >= 2 && s.head_dim % 2 == 0, where,
               ": head_dim must be even and >= 2, got ", s.head_dim);
  if (cache.rows < plan.cached_keys || cache.rows > s.position)
    throw Error(where,
                str("the KV cache holds ", cache.rows, " rows but the chunk at stream position ",
                    s.position, " needs its last ", plan.cached_keys, " (and at most ", s.position,
                    " can exist)"),
                "advance the cache with kv_cache_advance after every chunk");
  INFINI_CHECK(
      plan.cached_keys == 0 || (cache.keys && cache.values && cache.capacity >= cache.rows), where,
      ": the KV cache has no buffers for its ", cache.rows, " rows");
  if (!rope.cos || !rope.sin || rope.positions < plan.keys)
    throw Error(
        where,
        str("the RoPE tables cover ", rope.positions, " positions, the chunk needs ", plan.keys),
        "size them with kv_rope_positions");
}

// V of one kv head over the key buffer: a pointer and its row stride.
struct Values {
  const float* v;
  int64_t stride;
};

// k_rope[M, d] = rope(K) of kv head g of stream b over the key buffer (positions 0..M-1). V: the
// chunk's columns of qkv when no cache row is used (no copy), else a packed copy in v_keys[M, d].
Values load_keys(float* k_rope, float* v_keys, const float* qkv, const KvCache& cache,
                 const RopeTable& rope, const KvChunkPlan& plan, const KvShape& s, int64_t b,
                 int64_t g) {
  const int64_t T = s.tokens, H = s.heads, Hkv = s.kv_heads, d = s.head_dim, W = s.qkv_width(),
                o = plan.cached_keys, half = d / 2;
  const float* K = qkv + b * T * W + (H + g) * d;  // [T, d] stride W
  const float* V = K + Hkv * d;                    // [T, d] stride W
  rope_forward(k_rope + o * d, K, rope.cos + o * half, rope.sin + o * half, T, 1, d, W, d);
  if (o == 0) return {V, W};
  const int64_t first = b * cache.capacity + cache.rows - o;     // cache row of key 0
  const float* cached_k = cache.keys + (first * Hkv + g) * d;    // [o, d] stride Hkv d
  const float* cached_v = cache.values + (first * Hkv + g) * d;  // [o, d] stride Hkv d
  rope_forward(k_rope, cached_k, rope.cos, rope.sin, o, 1, d, Hkv * d, d);
  for (int64_t i = 0; i < o; ++i)
    std::memcpy(v_keys + i * d, cached_v + i * Hkv * d, d * sizeof(float));
  for (int64_t t = 0; t < T; ++t) std::memcpy(v_keys + (o + t) * d, V + t * W, d * sizeof(float));
  return {v_keys, d};
}

// The plan of a chunk, built into this thread's reusable plan: decoding plans every token, and
// must not allocate. The reference is valid until the thread's next call.
const KvChunkPlan& plan_of(const KvPolicy& policy, const KvShape& shape) {
  thread_local KvChunkPlan plan;
  kv_chunk_plan_into(plan, policy, shape.position, shape.tokens);
  return plan;
}

}  // namespace

int64_t kv_rope_positions(const KvPolicy& policy, const KvShape& shape) {
  return plan_of(policy, shape).keys;
}

int64_t kv_probs_floats(const KvPolicy& policy, const KvShape& shape) {
  return plan_of(policy, shape).probs_floats;
}

int64_t kv_forward_scratch_floats(const KvPolicy& policy, const KvShape& shape) {
  return forward_scratch(plan_of(policy, shape), shape);
}

int64_t kv_backward_scratch_floats(const KvPolicy& policy, const KvShape& shape) {
  return backward_scratch(plan_of(policy, shape), shape);
}

void kv_attention_forward(float* out, float* probs, const float* qkv, const KvCache& cache,
                          RopeTable rope, const KvPolicy& policy, const KvShape& shape,
                          float* scratch) {
  const KvChunkPlan& plan = plan_of(policy, shape);
  check_call(plan, cache, rope, shape, "kv_attention_forward");
  const int64_t T = shape.tokens, H = shape.heads, Hkv = shape.kv_heads, d = shape.head_dim,
                W = shape.qkv_width(), G = shape.group_size(), HD = H * d, M = plan.keys,
                o = plan.cached_keys, half = d / 2, per_thread = forward_scratch(plan, shape);
  const float scale = 1.0f / std::sqrt(float(d));

  parallel_for(shape.batch * Hkv, [&](int64_t task) {
    const int64_t b = task / Hkv, g = task % Hkv;
    float* k_rope = scratch + thread_index() * per_thread;  // [M, d]
    float* v_keys = k_rope + M * d;                         // [M, d]
    float* q_rope = v_keys + M * d;                         // [T, d]
    float* block_probs = q_rope + T * d;                    // [max_block_floats]
    const Values v = load_keys(k_rope, v_keys, qkv, cache, rope, plan, shape, b, g);
    for (int64_t h = g * G; h < (g + 1) * G; ++h) {
      rope_forward(q_rope, qkv + b * T * W + h * d, rope.cos + o * half, rope.sin + o * half, T, 1,
                   d, W, d);
      for (const KvQueryBlock& blk : plan.blocks) {
        float* p = probs ? probs + (b * H + h) * plan.probs_floats + blk.probs_offset
                         : block_probs;  // [t1 - t0, keys]
        masked_attention_forward(out + (b * T + blk.t0) * HD + h * d, HD, p, q_rope + blk.t0 * d, d,
                                 k_rope + blk.key_start * d, d, v.v + blk.key_start * v.stride,
                                 v.stride, blk.t1 - blk.t0, blk.keys, d, scale, blk.mask);
      }
    }
  });
}

void kv_attention_backward(float* dqkv, const float* dout, const float* probs, const float* qkv,
                           const KvCache& cache, RopeTable rope, const KvPolicy& policy,
                           const KvShape& shape, float* scratch) {
  const KvChunkPlan& plan = plan_of(policy, shape);
  check_call(plan, cache, rope, shape, "kv_attention_backward");
  INFINI_CHECK(probs, "kv_attention_backward needs the forward pass's probabilities");
  const int64_t B = shape.batch, T = shape.tokens, H = shape.heads, Hkv = shape.kv_heads,
                d = shape.head_dim, W = shape.qkv_width(), G = shape.group_size(), HD = H * d,
                M = plan.keys, o = plan.cached_keys, half = d / 2,
                per_thread = backward_scratch(plan, shape);
  const float scale = 1.0f / std::sqrt(float(d));
  std::fill(dqkv, dqkv + B * T * W, 0.0f);

  parallel_for(B * Hkv, [&](int64_t task) {
    const int64_t b = task / Hkv, g = task % Hkv;
    float* k_rope = scratch + thread_index() * per_thread;  // [M, d]
    float* v_keys = k_rope + M * d;                         // [M, d]
    float* dk_rope = v_keys + M * d;                        // [M, d]  d loss / d rope(K)
    float* dv_keys = dk_rope + M * d;                       // [M, d]  d loss / d V (with cache)
    float* q_rope = dv_keys + M * d;                        // [T, d]
    float* dq_rope = q_rope + T * d;                        // [T, d]
    float* block_scratch = dq_rope + T * d;                 // [max_block_floats]
    float* sink_k = block_scratch + plan.max_block_floats;  // [max_block_keys, d]
    float* sink_v = sink_k + plan.max_block_keys * d;       // [max_block_keys, d]
    const Values v = load_keys(k_rope, v_keys, qkv, cache, rope, plan, shape, b, g);
    // d V over the key buffer: straight into dqkv's V columns when the buffer is the chunk
    float* dv = o == 0 ? dqkv + b * T * W + (H + Hkv + g) * d : dv_keys;
    const int64_t dv_stride = o == 0 ? W : d;
    if (o > 0) std::fill(dv_keys, dv_keys + M * d, 0.0f);
    std::fill(dk_rope, dk_rope + M * d, 0.0f);

    for (int64_t h = g * G; h < (g + 1) * G; ++h) {
      rope_forward(q_rope, qkv + b * T * W + h * d, rope.cos + o * half, rope.sin + o * half, T, 1,
                   d, W, d);
      std::fill(dq_rope, dq_rope + T * d, 0.0f);
      for (const KvQueryBlock& blk : plan.blocks) {
        const int64_t n = blk.t1 - blk.t0, m = blk.keys, ks = blk.key_start,
                      gs = blk.gradient_start;
        // keys before gs get no gradient from these rows: the kernel writes them to a sink
        float* dk = gs > 0 ? sink_k : dk_rope + ks * d;
        float* dvb = gs > 0 ? sink_v : dv + ks * dv_stride;
        const int64_t dvb_stride = gs > 0 ? d : dv_stride;
        if (gs > 0) {
          std::fill(sink_k, sink_k + m * d, 0.0f);
          std::fill(sink_v, sink_v + m * d, 0.0f);
        }
        masked_attention_backward(dq_rope + blk.t0 * d, d, dk, d, dvb, dvb_stride,
                                  dout + (b * T + blk.t0) * HD + h * d, HD,
                                  probs + (b * H + h) * plan.probs_floats + blk.probs_offset,
                                  q_rope + blk.t0 * d, d, k_rope + ks * d, d, v.v + ks * v.stride,
                                  v.stride, n, m, d, scale, block_scratch, blk.mask);
        for (int64_t j = gs; gs > 0 && j < m; ++j)
          for (int64_t c = 0; c < d; ++c) {
            dk_rope[(ks + j) * d + c] += sink_k[j * d + c];
            dv[(ks + j) * dv_stride + c] += sink_v[j * d + c];
          }
      }
      rope_backward(dqkv + b * T * W + h * d, dq_rope, rope.cos + o * half, rope.sin + o * half, T,
                    1, d, W, d);
    }
    // the chunk's rows of the key buffer; cached rows are constants
    rope_backward(dqkv + b * T * W + (H + g) * d, dk_rope + o * d, rope.cos + o * half,
                  rope.sin + o * half, T, 1, d, W, d);
    if (o > 0) {
      float* dV = dqkv + b * T * W + (H + Hkv + g) * d;  // [T, d] stride W
      for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < d; ++c) dV[t * W + c] += dv_keys[(o + t) * d + c];
    }
  });
}

void kv_cache_advance(KvCache& cache, const float* qkv, const KvPolicy& policy,
                      const KvShape& shape) {
  const int64_t T = shape.tokens, H = shape.heads, Hkv = shape.kv_heads, d = shape.head_dim,
                W = shape.qkv_width(), row = Hkv * d;
  INFINI_CHECK(T >= 1 && cache.rows >= 0 && cache.rows <= shape.position,
               "kv_cache_advance: a chunk of ", T, " tokens at position ", shape.position, " with ",
               cache.rows, " cached rows");
  const int64_t rows = kv_cache_rows_needed(policy, shape.position + T);
  if (rows > cache.capacity)
    throw Error("kv_cache_advance",
                str("the ", kv_policy_name(policy), " KV cache needs ", rows,
                    " rows after stream position ", shape.position + T, ", its capacity is ",
                    cache.capacity),
                "grow the cache to kv_cache_rows_needed(policy, position + tokens) rows first");
  INFINI_CHECK(cache.keys && cache.values, "kv_cache_advance: the KV cache has no buffers");
  const int64_t take = std::min(T, rows), keep = rows - take;  // rows from the chunk, the cache
  INFINI_CHECK(keep <= cache.rows, "kv_cache_advance: the cache holds ", cache.rows,
               " rows, the stream at ", shape.position + T, " needs ", keep, " of them");
  for (int64_t b = 0; b < shape.batch; ++b)
    for (float* buffer : {cache.keys, cache.values}) {
      float* stream = buffer + b * cache.capacity * row;  // [capacity, Hkv, d]
      if (keep > 0 && keep < cache.rows)
        std::memmove(stream, stream + (cache.rows - keep) * row, keep * row * sizeof(float));
      const int64_t column = buffer == cache.keys ? H * d : (H + Hkv) * d;
      for (int64_t i = 0; i < take; ++i)
        std::memcpy(stream + (keep + i) * row, qkv + (b * T + T - take + i) * W + column,
                    row * sizeof(float));
    }
  cache.rows = rows;
}

}  // namespace infini
