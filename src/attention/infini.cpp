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
#include "kernels/matmul.h"
#include "kernels/rope.h"

namespace infini {

namespace {

constexpr float kMemoryEps = 1e-6f;

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

double dot(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(a[i]) * b[i];
  return s;
}

// out[n, d] = elu1(x[n, d]) with x rows `stride` apart.
void elu1_rows(float* out, const float* x, int64_t n, int64_t d, int64_t stride) {
  for (int64_t i = 0; i < n; ++i) elu1_forward(out + i * d, x + i * stride, d);
}

// Per-thread scratch of one task.
struct TaskScratch {
  float *sq, *sk, *rows_a, *rows_b, *dsq, *dsk, *da_dot, *da_mem, *dq_rope, *dk_rope;  // [N, d]
  float *den, *den_k;                                                                  // [N]
  float* square;                                                                       // [N, N]

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
  }
};

// Rotates Q and K of every segment with positions restarting at 0.
void rope_chunk(const InfiniActivations& act, const float* qkv, const float* cos, const float* sin,
                const InfiniShape& s) {
  const int64_t T = s.tokens, N = s.segment_length, H = s.heads, Hkv = s.kv_heads,
                d = s.head_dim, W = s.qkv_width();
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t t0 = 0; t0 < T; t0 += N) {
      const int64_t n = std::min(N, T - t0), row0 = b * T + t0;
      rope_forward(act.q_rope + row0 * H * d, qkv + row0 * W, cos, sin, n, H, d, W, H * d);
      rope_forward(act.k_rope + row0 * Hkv * d, qkv + row0 * W + H * d, cos, sin, n, Hkv, d, W,
                   Hkv * d);
    }
}

}  // namespace

int64_t InfiniShape::scratch_floats() const {
  return 10 * segment_length * head_dim + 2 * segment_length + segment_length * segment_length;
}

void infini_attention_forward(float* out, const InfiniActivations& act, InfiniMemory state,
                              const float* qkv, const float* gate_logits, const float* rope_cos,
                              const float* rope_sin, const InfiniShape& shape, float* scratch) {
  const int64_t T = shape.tokens, N = shape.segment_length, H = shape.heads,
                Hkv = shape.kv_heads, d = shape.head_dim, W = shape.qkv_width(),
                G = shape.group_size(), S = shape.segments(), HD = H * d;
  const float scale = 1.0f / std::sqrt(float(d));
  rope_chunk(act, qkv, rope_cos, rope_sin, shape);

  parallel_for(shape.batch * Hkv, [&](int64_t task) {
    const int64_t b = task / Hkv, g = task % Hkv;
    TaskScratch w(scratch + thread_index() * shape.scratch_floats(), shape);
    float* M = state.memory + (b * Hkv + g) * d * d;  // [d, d]
    float* z = state.norm + (b * Hkv + g) * d;        // [d]
    for (int64_t s = 0; s < S; ++s) {
      const int64_t t0 = s * N, n = std::min(N, T - t0), row0 = b * T + t0;
      const float* K = qkv + row0 * W + (H + g) * d;        // [n, d] stride W
      const float* V = qkv + row0 * W + (H + Hkv + g) * d;  // [n, d] stride W
      if (act.memory_before) {
        std::memcpy(act.memory_before + ((b * S + s) * Hkv + g) * d * d, M, d * d * sizeof(float));
        std::memcpy(act.norm_before + ((b * S + s) * Hkv + g) * d, z, d * sizeof(float));
      }
      for (int64_t h = g * G; h < (g + 1) * G; ++h) {
        const float* Q = qkv + row0 * W + h * d;  // [n, d] stride W
        float* a_dot = act.a_dot + (row0 * H + h) * d;
        float* a_mem = act.a_mem + (row0 * H + h) * d;
        float* probs = act.probs + ((b * H + h) * T + t0) * N;
        // local causal attention over the segment, RoPE positions 0..n-1
        masked_attention_forward(a_dot, HD, probs, act.q_rope + (row0 * H + h) * d, HD,
                                 act.k_rope + (row0 * Hkv + g) * d, Hkv * d, V, W, n, n, d, scale,
                                 AttentionMask{});
        // retrieval from the memory as it was before this segment
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
      // memory update from the raw K and V
      elu1_rows(w.sk, K, n, d, W);
      if (shape.delta) {
        float* U = w.rows_a;  // V - s(K) M / max(s(K) z, eps)
        matmul_nn(U, w.sk, M, n, d, d);
        for (int64_t i = 0; i < n; ++i) {
          const float inv = 1.0f / std::max(float(dot(w.sk + i * d, z, d)), kMemoryEps);
          for (int64_t j = 0; j < d; ++j) U[i * d + j] = V[i * W + j] - U[i * d + j] * inv;
        }
        matmul_tn(M, w.sk, U, d, d, n, true);
      } else {
        matmul_tn(M, w.sk, V, d, d, n, true, {d, W, d});
      }
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < d; ++j) z[j] += w.sk[i * d + j];
    }
  });
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

      // ---- update: M_{s+1} = M_s + s(K)^T U,  z_{s+1} = z_s + sum_t s(K_t)
      elu1_rows(w.sk, K, n, d, W);
      for (int64_t i = 0; i < n; ++i) std::memcpy(w.dsk + i * d, dz, d * sizeof(float));
      if (shape.delta) {
        float* R = w.rows_a;    // s(K) M_s / max(s(K) z_s, eps), then U = V - R
        float* dU = w.rows_b;   // s(K) dM, then d numerator of R
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
          const float dden = w.den_k[i] > kMemoryEps ? float(dot(dU + i * d, R + i * d, d)) / c : 0;
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
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < d; ++j) {
            const float go = dO[i * HD + j];
            dgate += double(go) * (a_mem[i * HD + j] - a_dot[i * HD + j]);
            w.da_mem[i * d + j] = gm * go;
            w.da_dot[i * d + j] = gl * go;
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
        for (int64_t i = 0; i < n; ++i) elu1_backward(dQ + i * W, w.dsq + i * d, Q + i * W, d);

        // local attention
        std::fill(w.dq_rope, w.dq_rope + n * d, 0.0f);
        masked_attention_backward(w.dq_rope, d, w.dk_rope, d, dV, W, w.da_dot, d,
                                  act.probs + ((b * H + h) * T + t0) * N,
                                  act.q_rope + (row0 * H + h) * d, HD,
                                  act.k_rope + (row0 * Hkv + g) * d, Hkv * d, V, W, n, n, d,
                                  scale, w.square, AttentionMask{});
        rope_backward(dQ, w.dq_rope, rope_cos, rope_sin, n, 1, d, W, d);
      }
      rope_backward(dK, w.dk_rope, rope_cos, rope_sin, n, 1, d, W, d);
      for (int64_t i = 0; i < n; ++i) elu1_backward(dK + i * W, w.dsk + i * d, K + i * W, d);
    }
  });
  for (int64_t h = 0; h < H; ++h)
    for (int64_t b = 0; b < B; ++b) dgate_logits[h] += dgate_partial[b * H + h];
}

}  // namespace infini
