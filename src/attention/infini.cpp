// Infini-attention, forward and backward. See infini.h for the equations.
//
// Work is split across (stream b, kv head g) pairs: each task owns the memory M_g of its stream,
// runs over the chunk's segments in order (the memory is a recurrence) and handles the query
// heads of its group. Inside a task every product is a small single-threaded GEMM.
#include "attention/infini.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "attention/masked_attention.h"
#include "core/error.h"
#include "core/parallel.h"
#include "kernels/activations.h"
#include "kernels/kernel_support.h"
#include "kernels/matmul.h"
#include "kernels/rope.h"

namespace infini {

namespace {

constexpr float kMemoryEps = 1e-6f;

float sigmoid(float x) {
  return 1.0f / (1.0f + std::exp(-x));
}

// sum a_i b_i in double, in kernel_detail::sum_double's fixed, vectorised order
double dot(const float* a, const float* b, int64_t n) {
  return kernel_detail::sum_double(n, [&](int64_t i) { return double(a[i]) * b[i]; });
}

// out[n, d] (packed) = elu1(x[n, d]) with x rows `stride` apart.
void elu1_rows(float* out, const float* x, int64_t n, int64_t d, int64_t stride) {
  elu1_forward_rows(out, d, x, stride, n, d);
}

// Per-thread scratch of one task. The forward pass uses sq, sk, rows_a and, for a piece that
// continues a cached segment, keys_rope / values / keys_raw (which alias backward-only buffers).
struct TaskScratch {
  float *sq, *sk, *rows_a, *rows_b, *dsq, *dsk, *da_dot, *da_mem, *dq_rope, *dk_rope;  // [N, d]
  float *den, *den_k;                                                                  // [N]
  float* square;                                                                       // [N, N]
  float *keys_rope, *values;  // [N, d] the segment's rotated keys and raw values, cached rows first

  TaskScratch(float* base, const InfiniShape& s) {
    const int64_t nd = s.segment_length * s.head_dim;
    float** rows[] = {&sq, &sk, &rows_a, &rows_b, &dsq, &dsk, &da_dot, &da_mem, &dq_rope, &dk_rope};
    for (float** p : rows) {
      *p = base;
      base += nd;
    }
    den = base;
    base += s.segment_length;
    den_k = base;
    base += s.segment_length;
    square = base;
    keys_rope = dq_rope;
    values = dk_rope;
  }
};

// A run of rows of one stream inside one segment: chunk rows [t0, t0 + n), segment positions
// [first, first + n). The chunk's first piece continues the cached segment (first = cached rows).
struct Piece {
  int64_t t0, n, first;
  bool completes(int64_t N) const { return first + n == N; }
};

// Calls f(piece) for the pieces of a chunk of T rows that starts `cached` rows into a segment.
template <typename F>
void for_each_piece(int64_t T, int64_t N, int64_t cached, F&& f) {
  for (int64_t t0 = 0, first = cached; t0 < T; first = 0) {
    const int64_t n = std::min(N - first, T - t0);
    f(Piece{t0, n, first});
    t0 += n;
  }
}

// Rotates the piece's rows of kv head g and of its group's query heads into act.k_rope and
// act.q_rope, positions counted from the start of the segment. Runs inside the (stream, kv head)
// task, serially and right before the rows are used: no parallel region per piece.
void rope_piece(const InfiniActivations& act, const float* qkv, const float* cos, const float* sin,
                const InfiniShape& s, int64_t b, int64_t g, const Piece& p) {
  const int64_t T = s.tokens, H = s.heads, Hkv = s.kv_heads, d = s.head_dim, W = s.qkv_width(),
                G = s.group_size(), half = d / 2, row0 = b * T + p.t0;
  const float *c = cos + p.first * half, *sn = sin + p.first * half;
  for (int64_t h = g * G; h < (g + 1) * G; ++h)
    rope_forward(act.q_rope + (row0 * H + h) * d, qkv + row0 * W + h * d, c, sn, p.n, 1, d, W,
                 H * d);
  rope_forward(act.k_rope + (row0 * Hkv + g) * d, qkv + row0 * W + (H + g) * d, c, sn, p.n, 1, d, W,
               Hkv * d);
}

// C[n, d] = A[n, d] B[d, d] and B[d, d] += A[n, d]^T C[n, d] as plain loops (vectorised over a
// row of d): the memory update of a decoding step. oneDNN's sgemm takes a scratch buffer from
// malloc at every call of these shapes; decoding must allocate nothing (docs/inference.md).
void rows_times_square(float* __restrict c, const float* __restrict a, const float* __restrict b,
                       int64_t n, int64_t d) {
  for (int64_t i = 0; i < n; ++i) {
    float* __restrict ci = c + i * d;
    std::fill(ci, ci + d, 0.0f);
    for (int64_t k = 0; k < d; ++k) {
      const float aik = a[i * d + k];
      const float* __restrict bk = b + k * d;
      for (int64_t j = 0; j < d; ++j) ci[j] += aik * bk[j];
    }
  }
}
void add_transposed_product(float* __restrict b, const float* __restrict a,
                            const float* __restrict c, int64_t c_stride, int64_t n, int64_t d) {
  for (int64_t k = 0; k < d; ++k) {
    float* __restrict bk = b + k * d;
    for (int64_t i = 0; i < n; ++i) {
      const float aik = a[i * d + k];
      const float* __restrict ci = c + i * c_stride;
      for (int64_t j = 0; j < d; ++j) bk[j] += aik * ci[j];
    }
  }
}

// Step 6 with the keys already mapped: sk = s(K) [n, d] packed, V [n, d] rows v_stride apart.
// U: [n, d] scratch (delta only). plain: the allocation-free loops instead of oneDNN (decoding).
void update_memory(float* M, float* z, const float* sk, const float* V, int64_t v_stride, int64_t n,
                   int64_t d, bool delta, float* U, bool plain = false) {
  if (delta) {  // U = V - s(K) M / max(s(K) z, eps), with M, z before the update
    if (plain)
      rows_times_square(U, sk, M, n, d);
    else
      matmul_nn(U, sk, M, n, d, d);
    for (int64_t i = 0; i < n; ++i) {
      const float inv = 1.0f / std::max(float(dot(sk + i * d, z, d)), kMemoryEps);
      for (int64_t j = 0; j < d; ++j) U[i * d + j] = V[i * v_stride + j] - U[i * d + j] * inv;
    }
    V = U, v_stride = d;
  }
  if (plain)
    add_transposed_product(M, sk, V, v_stride, n, d);
  else
    matmul_tn(M, sk, V, d, d, n, true, {d, v_stride, d});
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) z[j] += sk[i * d + j];
}

}  // namespace

int64_t InfiniShape::scratch_floats() const {
  return 10 * segment_length * head_dim + 2 * segment_length + segment_length * segment_length;
}

void infini_memory_update(float* memory, float* norm, const float* keys, int64_t key_stride,
                          const float* values, int64_t value_stride, int64_t rows, int64_t head_dim,
                          bool delta, float* scratch) {
  const int64_t d = head_dim;
  float* sk = scratch;  // [rows, d]
  elu1_rows(sk, keys, rows, d, key_stride);
  update_memory(memory, norm, sk, values, value_stride, rows, d, delta, scratch + rows * d);
}

void infini_attention_forward(float* out, const InfiniActivations& act, InfiniMemory memory,
                              KvCache& cache, const float* qkv, const float* gate_logits,
                              const float* rope_cos, const float* rope_sin,
                              const InfiniShape& shape, float* scratch) {
  const int64_t T = shape.tokens, N = shape.segment_length, H = shape.heads, Hkv = shape.kv_heads,
                d = shape.head_dim, W = shape.qkv_width(), G = shape.group_size(),
                S = shape.segments(), HD = H * d;
  const int64_t cached = cache.rows, rows_after = (cached + T) % N, cap = cache.capacity;
  INFINI_CHECK(cached >= 0 && cached < N, "the cache holds ", cached, " rows of a segment of ", N);
  INFINI_CHECK(cap >= N || (cached == 0 && rows_after == 0), "a chunk of ", T,
               " tokens from segment row ", cached, " needs a KV cache of ", N,
               " rows; this state has ", cap);
  INFINI_CHECK(cached == 0 || !act.memory_before,
               "activations for training need a chunk that starts at a segment boundary");
  const float scale = 1.0f / std::sqrt(float(d));
  // a chunk of a few rows (decoding) updates the memory with loops that allocate nothing
  const bool decoding = shape.batch * T <= kDecodingRows;

  parallel_for(shape.batch * Hkv, [&](int64_t task) {
    const int64_t b = task / Hkv, g = task % Hkv;
    TaskScratch w(scratch + thread_index() * shape.scratch_floats(), shape);
    float* M = memory.memory + (b * Hkv + g) * d * d;                       // [d, d]
    float* z = memory.norm + (b * Hkv + g) * d;                             // [d]
    float* cache_k = cap ? cache.keys + (b * cap * Hkv + g) * d : nullptr;  // [cap, d] stride Hkv d
    float* cache_v =
        cap ? cache.values + (b * cap * Hkv + g) * d : nullptr;  // [cap, d] stride Hkv d
    int64_t s = 0;
    for_each_piece(T, N, cached, [&](const Piece& p) {
      const int64_t n = p.n, c = p.first, m = c + n, row0 = b * T + p.t0;
      rope_piece(act, qkv, rope_cos, rope_sin, shape, b, g, p);
      const float* K = qkv + row0 * W + (H + g) * d;        // [n, d] stride W
      const float* V = qkv + row0 * W + (H + Hkv + g) * d;  // [n, d] stride W
      // the keys and values the piece attends to: [m, d], the segment's cached rows first
      const float* keys = act.k_rope + (row0 * Hkv + g) * d;
      const float* values = V;
      int64_t k_stride = Hkv * d, v_stride = W;
      if (c > 0) {
        rope_forward(w.keys_rope, cache_k, rope_cos, rope_sin, c, 1, d, Hkv * d, d);
        for (int64_t i = 0; i < c; ++i)
          std::memcpy(w.values + i * d, cache_v + i * Hkv * d, d * sizeof(float));
        for (int64_t i = 0; i < n; ++i) {
          std::memcpy(w.keys_rope + (c + i) * d, keys + i * k_stride, d * sizeof(float));
          std::memcpy(w.values + (c + i) * d, V + i * W, d * sizeof(float));
        }
        keys = w.keys_rope, values = w.values, k_stride = d, v_stride = d;
      }
      if (act.memory_before) {
        std::memcpy(act.memory_before + ((b * S + s) * Hkv + g) * d * d, M, d * d * sizeof(float));
        std::memcpy(act.norm_before + ((b * S + s) * Hkv + g) * d, z, d * sizeof(float));
      }
      for (int64_t h = g * G; h < (g + 1) * G; ++h) {
        const float* Q = qkv + row0 * W + h * d;  // [n, d] stride W
        float* a_dot = act.a_dot + (row0 * H + h) * d;
        float* a_mem = act.a_mem + (row0 * H + h) * d;
        float* probs = act.probs + ((b * H + h) * T + p.t0) * N;  // [n, m] packed
        // local causal attention over the segment so far, RoPE positions c..c+n-1
        masked_attention_forward(a_dot, HD, probs, act.q_rope + (row0 * H + h) * d, HD, keys,
                                 k_stride, values, v_stride, n, m, d, scale, AttentionMask{c});
        // retrieval from the memory as it was at the segment's start
        elu1_rows(w.sq, Q, n, d, W);
        matmul_nn(a_mem, w.sq, M, n, d, d, false, {d, d, HD});
        for (int64_t i = 0; i < n; ++i) {
          const float inv = 1.0f / std::max(float(dot(w.sq + i * d, z, d)), kMemoryEps);
          for (int64_t j = 0; j < d; ++j) a_mem[i * HD + j] *= inv;
        }
        // gate
        const float gm = sigmoid(gate_logits[h]), gl = 1.0f - gm;
        float* o = out + (row0 * H + h) * d;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < d; ++j)
            o[i * HD + j] = gm * a_mem[i * HD + j] + gl * a_dot[i * HD + j];
      }
      if (p.completes(N)) {  // the whole segment's raw K and V go into the memory
        elu1_rows(w.sk, cache_k, c, d, Hkv * d);
        elu1_rows(w.sk + c * d, K, n, d, W);
        update_memory(M, z, w.sk, values, v_stride, m, d, shape.delta, w.rows_a, decoding);
      } else {  // an unfinished segment: its raw rows wait in the cache
        for (int64_t i = 0; i < n; ++i) {
          std::memcpy(cache_k + (c + i) * Hkv * d, K + i * W, d * sizeof(float));
          std::memcpy(cache_v + (c + i) * Hkv * d, V + i * W, d * sizeof(float));
        }
      }
      ++s;
    });
  });
  cache.rows = rows_after;
}

void infini_attention_backward(float* dqkv, float* dgate_logits, InfiniMemory dstate,
                               const float* dout, const InfiniActivations& act, const float* qkv,
                               const float* gate_logits, const float* rope_cos,
                               const float* rope_sin, const InfiniShape& shape, float* scratch,
                               float* dgate_partial) {
  const int64_t B = shape.batch, T = shape.tokens, N = shape.segment_length, H = shape.heads,
                Hkv = shape.kv_heads, d = shape.head_dim, W = shape.qkv_width(),
                G = shape.group_size(), S = shape.segments(), HD = H * d;
  const float scale = 1.0f / std::sqrt(float(d));
  INFINI_CHECK(act.memory_before && act.norm_before, "backward needs the saved memory states");
  std::fill(dqkv, dqkv + B * T * W, 0.0f);
  std::fill(dgate_partial, dgate_partial + B * H, 0.0f);

  parallel_for(B * Hkv, [&](int64_t task) {
    const int64_t b = task / Hkv, g = task % Hkv;
    TaskScratch w(scratch + thread_index() * shape.scratch_floats(), shape);
    float* dM = dstate.memory + (b * Hkv + g) * d * d;  // [d, d] d loss / d M (after segment s)
    float* dz = dstate.norm + (b * Hkv + g) * d;        // [d]
    for (int64_t s = S - 1; s >= 0; --s) {
      const int64_t t0 = s * N, n = std::min(N, T - t0), row0 = b * T + t0;
      const float* M = act.memory_before + ((b * S + s) * Hkv + g) * d * d;  // M_s [d, d]
      const float* z = act.norm_before + ((b * S + s) * Hkv + g) * d;        // z_s [d]
      const float* K = qkv + row0 * W + (H + g) * d;
      const float* V = qkv + row0 * W + (H + Hkv + g) * d;
      float* dK = dqkv + row0 * W + (H + g) * d;
      float* dV = dqkv + row0 * W + (H + Hkv + g) * d;

      // ---- update: M_{s+1} = M_s + s(K)^T U,  z_{s+1} = z_s + sum_t s(K_t); a last segment
      // shorter than N went to the cache instead and has no update to differentiate
      if (n < N) {
        std::fill(w.dsk, w.dsk + n * d, 0.0f);
      } else {
        elu1_rows(w.sk, K, n, d, W);
        for (int64_t i = 0; i < n; ++i) std::memcpy(w.dsk + i * d, dz, d * sizeof(float));
        if (shape.delta) {
          float* R = w.rows_a;   // s(K) M_s / max(s(K) z_s, eps), then U = V - R
          float* dU = w.rows_b;  // s(K) dM, then d numerator of R
          matmul_nn(R, w.sk, M, n, d, d);
          for (int64_t i = 0; i < n; ++i) {
            w.den_k[i] = float(dot(w.sk + i * d, z, d));
            const float inv = 1.0f / std::max(w.den_k[i], kMemoryEps);
            for (int64_t j = 0; j < d; ++j) R[i * d + j] *= inv;
          }
          matmul_nn(dU, w.sk, dM, n, d, d);
          // dV += dU ; dR = -dU ; U = V - R used for d s(K)
          float* U = w.dsq;  // borrowed: [n, d]
          for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < d; ++j) {
              dV[i * W + j] += dU[i * d + j];
              U[i * d + j] = V[i * W + j] - R[i * d + j];
            }
          matmul_nt(w.dsk, U, dM, n, d, d, true);  // d s(K) += U dM^T
          // R = num / c with c = max(den, eps): dnum = dR / c, dden = -(dR . R) / c where den > eps
          for (int64_t i = 0; i < n; ++i) {
            const float c = std::max(w.den_k[i], kMemoryEps);
            const float dden =
                w.den_k[i] > kMemoryEps ? float(dot(dU + i * d, R + i * d, d)) / c : 0;
            // (dR = -dU, so -(dR . R) / c = (dU . R) / c)
            for (int64_t j = 0; j < d; ++j) dU[i * d + j] = -dU[i * d + j] / c;
            w.den_k[i] = dden;
            for (int64_t j = 0; j < d; ++j) w.dsk[i * d + j] += dden * z[j];
          }
          matmul_nt(w.dsk, dU, M, n, d, d, true);  // d s(K) += dnum M_s^T
          matmul_tn(dM, w.sk, dU, d, d, n, true);  // dM_s += s(K)^T dnum
          for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < d; ++j) dz[j] += w.den_k[i] * w.sk[i * d + j];
        } else {
          matmul_nn(dV, w.sk, dM, n, d, d, true, {d, d, W});  // dV += s(K) dM
          matmul_nt(w.dsk, V, dM, n, d, d, true, {W, d, d});  // d s(K) += V dM^T
        }
      }

      // ---- retrieval, local attention and gate, per query head of the group
      std::fill(w.dk_rope, w.dk_rope + n * d, 0.0f);
      for (int64_t h = g * G; h < (g + 1) * G; ++h) {
        const float* Q = qkv + row0 * W + h * d;
        float* dQ = dqkv + row0 * W + h * d;
        const float* a_mem = act.a_mem + (row0 * H + h) * d;
        const float* a_dot = act.a_dot + (row0 * H + h) * d;
        const float* dO = dout + (row0 * H + h) * d;
        const float gm = sigmoid(gate_logits[h]), gl = 1.0f - gm;
        double dgate = 0;
        for (int64_t i = 0; i < n; ++i) {
          const float *go = dO + i * HD, *am = a_mem + i * HD, *ad = a_dot + i * HD;
          dgate += kernel_detail::sum_double(
              d, [&](int64_t j) { return double(go[j]) * (am[j] - ad[j]); });
          for (int64_t j = 0; j < d; ++j) {
            w.da_mem[i * d + j] = gm * go[j];
            w.da_dot[i * d + j] = gl * go[j];
          }
        }
        dgate_partial[b * H + h] += float(dgate * gm * gl);

        // A_mem = num / c, num = s(Q) M_s, c = max(s(Q) z_s, eps)
        elu1_rows(w.sq, Q, n, d, W);
        float* dnum = w.rows_a;
        for (int64_t i = 0; i < n; ++i) {
          const float den = float(dot(w.sq + i * d, z, d)), c = std::max(den, kMemoryEps);
          w.den[i] = den > kMemoryEps ? -float(dot(w.da_mem + i * d, a_mem + i * HD, d)) / c : 0;
          for (int64_t j = 0; j < d; ++j) dnum[i * d + j] = w.da_mem[i * d + j] / c;
        }
        matmul_nt(w.dsq, dnum, M, n, d, d);  // d s(Q) = dnum M_s^T + dden z_s
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < d; ++j) w.dsq[i * d + j] += w.den[i] * z[j];
        matmul_tn(dM, w.sq, dnum, d, d, n, true);  // dM_s += s(Q)^T dnum
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < d; ++j) dz[j] += w.den[i] * w.sq[i * d + j];
        elu1_backward_rows(dQ, W, w.dsq, d, Q, W, n, d);

        // local attention
        std::fill(w.dq_rope, w.dq_rope + n * d, 0.0f);
        masked_attention_backward(
            w.dq_rope, d, w.dk_rope, d, dV, W, w.da_dot, d, act.probs + ((b * H + h) * T + t0) * N,
            act.q_rope + (row0 * H + h) * d, HD, act.k_rope + (row0 * Hkv + g) * d, Hkv * d, V, W,
            n, n, d, scale, w.square, AttentionMask{});
        rope_backward(dQ, w.dq_rope, rope_cos, rope_sin, n, 1, d, W, d);
      }
      rope_backward(dK, w.dk_rope, rope_cos, rope_sin, n, 1, d, W, d);
      elu1_backward_rows(dK, W, w.dsk, d, K, W, n, d);
    }
  });
  for (int64_t h = 0; h < H; ++h)
    for (int64_t b = 0; b < B; ++b) dgate_logits[h] += dgate_partial[b * H + h];
}

}  // namespace infini
