// Softmax attention of one head over a block of keys under a mask policy: the one kernel that
// every mechanism's local attention uses (the FlashInfer idea: variants are small mask policies
// plugged into one shared routine, tested by equivalences).
//
// Query row i (0 <= i < n) may see key j (0 <= j < m) when
//     j <= i + key_offset                      (causal, with key_offset earlier keys in front)
//     j >  i + key_offset - window             (only when window > 0: a sliding window)
// Examples: a segment attending to itself causally: m = n, key_offset = 0. A block that also sees
// the previous block (Transformer-XL, block sliding window): keys = [previous ; own], m = 2n,
// key_offset = n. Rows that see every key (TransformerFAM's memory rows): key_offset >= m.
#pragma once

#include <cstdint>

namespace infini {

struct AttentionMask {
  int64_t key_offset = 0;
  int64_t window = 0;  // 0: no lower bound
  // [first, last] visible keys of query row i, clamped to [0, m - 1]; empty when first > last.
  int64_t first_key(int64_t i) const { return window > 0 ? i + key_offset - window + 1 : 0; }
  int64_t last_key(int64_t i) const { return i + key_offset; }
};

// One head: out[n, d] = softmax(scale * q k^T, masked) v.
// q [n, d] (row stride q_stride), k and v [m, d] (strides k_stride, v_stride), out [n, d]
// (out_stride). probs [n, m] (packed) receives the attention weights, zero where masked; the
// backward pass needs them. A query row that sees no key gets zero output.
void masked_attention_forward(float* out, int64_t out_stride, float* probs, const float* q,
                              int64_t q_stride, const float* k, int64_t k_stride, const float* v,
                              int64_t v_stride, int64_t n, int64_t m, int64_t d, float scale,
                              AttentionMask mask);

// Gradients of the above, accumulated (+=) into dq [n, d], dk [m, d], dv [m, d] (strides as
// given). dout [n, d]; scratch: n * m floats; mask: the forward pass's.
void masked_attention_backward(float* dq, int64_t dq_stride, float* dk, int64_t dk_stride,
                               float* dv, int64_t dv_stride, const float* dout,
                               int64_t dout_stride, const float* probs, const float* q,
                               int64_t q_stride, const float* k, int64_t k_stride, const float* v,
                               int64_t v_stride, int64_t n, int64_t m, int64_t d, float scale,
                               float* scratch, AttentionMask mask);

}  // namespace infini
