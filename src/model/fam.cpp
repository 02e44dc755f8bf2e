// TransformerFAM's layer logic (spec §4): the FAM recurrence, the block rows' attention over
// [older blocks ; FAM ; own block], the initial pass, and their backward passes. See fam.h.
//
// Key buffers. For kv head g of stream b and block tau the block rows' keys are laid out as
// [older blocks (`older` rows) ; FAM rows (fl) ; own block up to the last query (`own`)], so one
// masked-attention call sees them with key_offset = older + fl + (offset of its first query in
// the block): everything before the own block is visible, the own block causally. RoPE positions
// are rebased to base = min(first older key, tau*N - fl). The FAM update's keys are
// [FAM rows (fl) ; the block's N rows] at rebased positions 0 .. fl + N - 1, all visible.
#include "model/fam.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "attention/masked_attention.h"
#include "core/error.h"
#include "core/parallel.h"
#include "kernels/activations.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "model/model.h"

namespace infini {

namespace {

void copy_floats(float* to, const float* from, int64_t n) {
  if (to != from && n > 0) std::memcpy(to, from, size_t(n) * sizeof(float));
}

// Raw K or V rows of kv head g at stream positions, from the chunk's qkv or the cache before it.
struct RawKeys {
  const float* qkv;
  const KvCache* cache;
  const FamDims* dims;
  const float* row(int64_t b, int64_t g, int64_t p, bool value) const {
    const FamDims& m = *dims;
    if (p >= m.position)
      return qkv + (b * m.tokens + p - m.position) * m.W() + (m.H + g + (value ? m.Hkv : 0)) * m.d;
    const int64_t r = cache->rows - (m.position - p);
    INFINI_CHECK(r >= 0, "fam: position ", p, " is no longer in the KV cache");
    return (value ? cache->values : cache->keys) + ((b * cache->capacity + r) * m.Hkv + g) * m.d;
  }
};

// The block rows of block tau that a chunk holds, and their key buffer.
struct BlockPlan {
  int64_t tau, t0, t1;  // chunk rows [t0, t1)
  int64_t first;        // stream position of the oldest older-block key
  int64_t older, own, m, base;
};

BlockPlan block_plan(const FamDims& m, int64_t tau) {
  BlockPlan bp;
  bp.tau = tau;
  bp.t0 = std::max<int64_t>(0, tau * m.N - m.position);
  bp.t1 = std::min<int64_t>(m.tokens, (tau + 1) * m.N - m.position);
  bp.first = std::max<int64_t>(0, (tau - m.memory_blocks) * m.N);
  bp.older = tau * m.N - bp.first;
  bp.own = m.position + bp.t1 - tau * m.N;
  bp.m = bp.older + m.fam_length + bp.own;
  bp.base = std::min(bp.first, tau * m.N - m.fam_length);
  return bp;
}

// Thread scratch: k [K, d], v [K, d], q [N, d], probs [N K]; backward: dk, dv [K, d], dq [N, d],
// g [N K].
struct Scratch {
  float *k, *v, *q, *probs, *dk, *dv, *dq, *g;
};
Scratch thread_scratch(FamActivations& act, const FamDims& m) {
  const int64_t K = m.key_rows(), d = m.d, N = m.N;
  Scratch s;
  s.k = act.scratch.data() + thread_index() * act.per_thread;
  s.v = s.k + K * d;
  s.q = s.v + K * d;
  s.probs = s.q + N * d;
  s.dk = s.probs + N * K;
  s.dv = s.dk + K * d;
  s.dq = s.dv + K * d;
  s.g = s.dq + N * d;
  return s;
}

// rope rows of x (row stride x_stride) at rebased positions p0 .. p0 + n - 1 into out [n, d]
void rope_rows(float* out, const float* x, int64_t x_stride, int64_t p0, int64_t n,
               const FamActivations& act, int64_t d) {
  if (n <= 0) return;
  INFINI_CHECK(p0 >= 0 && p0 + n <= act.rope_rows, "fam: RoPE position ", p0 + n,
               " beyond the table of ", act.rope_rows);
  rope_forward(out, x, act.rope_cos.data() + p0 * d / 2, act.rope_sin.data() + p0 * d / 2, n, 1, d,
               x_stride, d);
}
void rope_rows_backward(float* dx, int64_t dx_stride, const float* dout, int64_t p0, int64_t n,
                        const FamActivations& act, int64_t d) {
  if (n <= 0) return;
  rope_backward(dx, dout, act.rope_cos.data() + p0 * d / 2, act.rope_sin.data() + p0 * d / 2, n, 1,
                d, dx_stride, d);
}

// Fills s.k (rotated) and s.v of block bp for stream b, kv head g.
void load_block_keys(const Scratch& s, const BlockPlan& bp, const RawKeys& keys, const FamStep& fam,
                     const FamActivations& act, const FamDims& m, int64_t b, int64_t g) {
  const int64_t d = m.d, fl = m.fam_length, W = m.W();
  for (int64_t i = 0; i < bp.older + fl + bp.own; ++i) {
    const float *k, *v;
    int64_t p;
    if (i < bp.older) {
      p = bp.first + i;
      k = keys.row(b, g, p, false);
      v = keys.row(b, g, p, true);
    } else if (i < bp.older + fl) {
      const int64_t j = i - bp.older;
      p = bp.tau * m.N - fl + j;
      k = fam.qkv + (b * fl + j) * W + (m.H + g) * d;
      v = k + m.Hkv * d;
    } else {
      p = bp.tau * m.N + i - bp.older - fl;
      k = keys.row(b, g, p, false);
      v = keys.row(b, g, p, true);
    }
    rope_rows(s.k + i * d, k, d, p - bp.base, 1, act, d);
    std::memcpy(s.v + i * d, v, size_t(d) * sizeof(float));
  }
}

// The keys (RoPE applied) and values that the FAM queries of step st see, for stream b and kv
// head g, into the thread's scratch: s.k, s.v [fam_length + block_rows, d] = [FAM rows ; block].
void load_step_keys(const Scratch& s, const FamStep& st, FamActivations& act, const FamDims& m,
                    int64_t b, int64_t g) {
  const int64_t fl = m.fam_length, nb = st.block_rows, H = m.H, Hkv = m.Hkv, d = m.d, W = m.W(),
                N = m.N;
  const float* fk = st.qkv + b * fl * W + (H + g) * d;
  const float* bk = st.block_kv + b * 2 * N * Hkv * d + g * d;  // [nb, d] stride Hkv d
  rope_rows(s.k, fk, W, 0, fl, act, d);
  rope_rows(s.k + fl * d, bk, Hkv * d, fl, nb, act, d);
  for (int64_t j = 0; j < fl; ++j)
    std::memcpy(s.v + j * d, fk + j * W + Hkv * d, size_t(d) * sizeof(float));
  for (int64_t j = 0; j < nb; ++j)
    std::memcpy(s.v + (fl + j) * d, bk + (N + j) * Hkv * d, size_t(d) * sizeof(float));
}

// The FAM queries of step st over [FAM keys ; block keys], no mask: st.att, st.probs.
void step_attention_forward(FamStep& st, FamActivations& act, const FamDims& m) {
  const int64_t fl = m.fam_length, nb = st.block_rows, M = fl + nb, H = m.H, Hkv = m.Hkv, d = m.d,
                W = m.W(), G = H / Hkv, HD = H * d;
  const float scale = 1.0f / std::sqrt(float(d));
  parallel_for(st.batch * Hkv, [&](int64_t task) {
    const int64_t b = task / Hkv, g = task % Hkv;
    const Scratch s = thread_scratch(act, m);
    load_step_keys(s, st, act, m, b, g);
    for (int64_t h = g * G; h < (g + 1) * G; ++h) {
      rope_rows(s.q, st.qkv + b * fl * W + h * d, W, 0, fl, act, d);
      masked_attention_forward(st.att + b * fl * HD + h * d, HD, st.probs + (b * H + h) * fl * M,
                               s.q, d, s.k, d, s.v, d, fl, M, d, scale, AttentionMask{M, 0});
    }
  });
}

// Backward of step_attention_forward: dst [R, W] += d Q/K/V of the FAM rows; dchunk rows
// row0 .. row0 + nb - 1 of each stream ([B, T, W]) += d K/V of the block rows.
void step_attention_backward(float* dst, float* dchunk, int64_t row0, const float* datt,
                             const FamStep& st, FamActivations& act, const FamDims& m) {
  const int64_t fl = m.fam_length, nb = st.block_rows, M = fl + nb, H = m.H, Hkv = m.Hkv, d = m.d,
                W = m.W(), G = H / Hkv, HD = H * d;
  const float scale = 1.0f / std::sqrt(float(d));
  parallel_for(st.batch * Hkv, [&](int64_t task) {
    const int64_t b = task / Hkv, g = task % Hkv;
    const Scratch s = thread_scratch(act, m);
    load_step_keys(s, st, act, m, b, g);
    std::fill(s.dk, s.dk + M * d, 0.0f);
    std::fill(s.dv, s.dv + M * d, 0.0f);
    for (int64_t h = g * G; h < (g + 1) * G; ++h) {
      rope_rows(s.q, st.qkv + b * fl * W + h * d, W, 0, fl, act, d);
      std::fill(s.dq, s.dq + fl * d, 0.0f);
      masked_attention_backward(s.dq, d, s.dk, d, s.dv, d, datt + b * fl * HD + h * d, HD,
                                st.probs + (b * H + h) * fl * M, s.q, d, s.k, d, s.v, d, fl, M, d,
                                scale, s.g, AttentionMask{M, 0});
      rope_rows_backward(dst + b * fl * W + h * d, W, s.dq, 0, fl, act, d);
    }
    rope_rows_backward(dst + b * fl * W + (H + g) * d, W, s.dk, 0, fl, act, d);
    for (int64_t j = 0; j < fl; ++j)
      for (int64_t c = 0; c < d; ++c)
        dst[(b * fl + j) * W + (H + Hkv + g) * d + c] += s.dv[j * d + c];
    if (nb > 0) {
      float* rows = dchunk + (b * m.tokens + row0) * W;
      rope_rows_backward(rows + (H + g) * d, W, s.dk + fl * d, fl, nb, act, d);
      for (int64_t j = 0; j < nb; ++j)
        for (int64_t c = 0; c < d; ++c)
          rows[j * W + (H + Hkv + g) * d + c] += s.dv[(fl + j) * d + c];
    }
  });
}

// Layer p on the FAM rows of st (x_in set): norm + QKV always; attention, residual and MLP when
// `attend` (the block is complete, or the initial pass).
void step_forward(FamStep& st, FamActivations& act, const LayerParameters& p, const FamDims& m,
                  bool attend) {
  const int64_t R = st.batch * m.fam_length, D = m.D, W = m.W(), HD = m.H * m.d, F = m.ffn;
  st.updated = attend;
  rmsnorm_forward(st.xn1, st.rstd1, st.x_in, p.input_norm, R, D, m.eps);
  model_linear(st.qkv, st.xn1, p.qkv, R, W, D);
  if (!attend) return;
  step_attention_forward(st, act, m);
  copy_floats(st.x_mid, st.x_in, R * D);
  model_linear(st.x_mid, st.att, p.out, R, D, HD, true);
  rmsnorm_forward(st.xn2, st.rstd2, st.x_mid, p.post_norm, R, D, m.eps);
  model_linear(st.gate_up, st.xn2, p.gate_up, R, 2 * F, D);
  swiglu_forward(st.mlp, st.gate_up, R, F);
  copy_floats(st.x_out, st.x_mid, R * D);
  model_linear(st.x_out, st.mlp, p.down, R, D, F, true);
}

// Backward of step_forward: act.dx holds d loss / d x_out on entry (ignored when the step did not
// attend), d loss / d x_in on return. dst [R, W]: d loss / d qkv of the FAM rows from elsewhere
// (the block rows' attention) on entry; used up. dchunk / row0: see step_attention_backward.
void step_backward(FamStep& st, FamActivations& act, LayerParameters& gp, const LayerParameters& p,
                   const FamDims& m, float* dst, float* dchunk, int64_t row0) {
  const int64_t R = st.batch * m.fam_length, D = m.D, W = m.W(), HD = m.H * m.d, F = m.ffn;
  if (st.updated) {
    matmul_nn(act.dmlp, act.dx, p.down, R, F, D);
    matmul_tn(gp.down, act.dx, st.mlp, D, F, R, true);
    swiglu_backward(act.dgate_up, act.dmlp, st.gate_up, R, F);
    matmul_nn(act.dnormed, act.dgate_up, p.gate_up, R, D, 2 * F);
    matmul_tn(gp.gate_up, act.dgate_up, st.xn2, 2 * F, D, R, true);
    copy_floats(act.dx_mid, act.dx, R * D);
    rmsnorm_backward(act.dx_mid, gp.post_norm, act.dnormed, st.x_mid, p.post_norm, st.rstd2, R, D);
    matmul_nn(act.datt, act.dx_mid, p.out, R, HD, D);
    matmul_tn(gp.out, act.dx_mid, st.att, D, HD, R, true);
    step_attention_backward(dst, dchunk, row0, act.datt, st, act, m);
    copy_floats(act.dx, act.dx_mid, R * D);
  } else {
    std::fill(act.dx, act.dx + R * D, 0.0f);
  }
  matmul_nn(act.dnormed, dst, p.qkv, R, D, W);
  matmul_tn(gp.qkv, dst, st.xn1, W, D, R, true);
  rmsnorm_backward(act.dx, gp.input_norm, act.dnormed, st.x_in, p.input_norm, st.rstd1, R, D);
}

// Block rows' attention over [older ; FAM ; own block]. probs: training [B, H, T, K] or null.
void block_attention_forward(float* out, float* probs, const FamLayerActivations& la,
                             FamActivations& act, const RawKeys& keys, const FamDims& m) {
  const int64_t H = m.H, Hkv = m.Hkv, d = m.d, W = m.W(), G = H / Hkv, HD = H * d, K = m.key_rows(),
                T = m.tokens, tau0 = m.position / m.N, tau1 = (m.position + T - 1) / m.N;
  const float scale = 1.0f / std::sqrt(float(d));
  parallel_for(m.batch * Hkv, [&](int64_t task) {
    const int64_t b = task / Hkv, g = task % Hkv;
    const Scratch s = thread_scratch(act, m);
    for (int64_t tau = tau0; tau <= tau1; ++tau) {
      const BlockPlan bp = block_plan(m, tau);
      const int64_t n = bp.t1 - bp.t0;
      load_block_keys(s, bp, keys, la.steps[tau - tau0], act, m, b, g);
      const AttentionMask mask{bp.older + m.fam_length + m.position + bp.t0 - tau * m.N, 0};
      for (int64_t h = g * G; h < (g + 1) * G; ++h) {
        rope_rows(s.q, keys.qkv + (b * T + bp.t0) * W + h * d, W, m.position + bp.t0 - bp.base, n,
                  act, d);
        float* p = probs ? probs + ((b * H + h) * T + bp.t0) * K : s.probs;
        masked_attention_forward(out + (b * T + bp.t0) * HD + h * d, HD, p, s.q, d, s.k, d, s.v, d,
                                 n, bp.m, d, scale, mask);
      }
    }
  });
}

// Backward of block_attention_forward for a training chunk (position 0): dqkv [B, T, W] and
// act.dstep_qkv[i] [B fl, W] accumulate.
void block_attention_backward(float* dqkv, const float* dout, const float* probs,
                              const FamLayerActivations& la, FamActivations& act,
                              const RawKeys& keys, const FamDims& m) {
  const int64_t H = m.H, Hkv = m.Hkv, d = m.d, W = m.W(), G = H / Hkv, HD = H * d, K = m.key_rows(),
                T = m.tokens, fl = m.fam_length, tau0 = m.position / m.N,
                tau1 = (m.position + T - 1) / m.N;
  const float scale = 1.0f / std::sqrt(float(d));
  parallel_for(m.batch * Hkv, [&](int64_t task) {
    const int64_t b = task / Hkv, g = task % Hkv;
    const Scratch s = thread_scratch(act, m);
    for (int64_t tau = tau0; tau <= tau1; ++tau) {
      const BlockPlan bp = block_plan(m, tau);
      const int64_t n = bp.t1 - bp.t0, M = bp.m;
      load_block_keys(s, bp, keys, la.steps[tau - tau0], act, m, b, g);
      const AttentionMask mask{bp.older + fl + m.position + bp.t0 - tau * m.N, 0};
      std::fill(s.dk, s.dk + M * d, 0.0f);
      std::fill(s.dv, s.dv + M * d, 0.0f);
      for (int64_t h = g * G; h < (g + 1) * G; ++h) {
        const int64_t q0 = m.position + bp.t0 - bp.base;
        rope_rows(s.q, keys.qkv + (b * T + bp.t0) * W + h * d, W, q0, n, act, d);
        std::fill(s.dq, s.dq + n * d, 0.0f);
        masked_attention_backward(s.dq, d, s.dk, d, s.dv, d, dout + (b * T + bp.t0) * HD + h * d,
                                  HD, probs + ((b * H + h) * T + bp.t0) * K, s.q, d, s.k, d, s.v, d,
                                  n, M, d, scale, s.g, mask);
        rope_rows_backward(dqkv + (b * T + bp.t0) * W + h * d, W, s.dq, q0, n, act, d);
      }
      // scatter: older rows and own rows live in the chunk (training starts at position 0)
      auto scatter = [&](float* rows, int64_t stride, int64_t i0, int64_t count, int64_t p0) {
        rope_rows_backward(rows + (H + g) * d, stride, s.dk + i0 * d, p0, count, act, d);
        for (int64_t j = 0; j < count; ++j)
          for (int64_t c = 0; c < d; ++c)
            rows[j * stride + (H + Hkv + g) * d + c] += s.dv[(i0 + j) * d + c];
      };
      scatter(dqkv + (b * T + bp.first - m.position) * W, W, 0, bp.older, bp.first - bp.base);
      scatter(act.dstep_qkv[tau - tau0] + b * fl * W, W, bp.older, fl, tau * m.N - fl - bp.base);
      scatter(dqkv + (b * T + tau * m.N - m.position) * W, W, bp.older + fl, bp.own,
              tau * m.N - bp.base);
    }
  });
}

}  // namespace

FamDims fam_dims(const ModelConfig& c, int64_t batch, int64_t tokens, int64_t position) {
  FamDims m;
  m.batch = batch;
  m.tokens = tokens;
  m.position = position;
  m.N = c.attention.segment_length;
  m.fam_length = c.attention.fam_length;
  m.memory_blocks = c.attention.memory_blocks;
  m.D = c.hidden_size;
  m.H = c.num_attention_heads;
  m.Hkv = c.num_key_value_heads;
  m.d = c.head_dim;
  m.ffn = c.intermediate_size;
  m.eps = float(c.rms_norm_eps);
  return m;
}

namespace {

// Carves the buffers of `a` from `base` (null: measuring); returns the floats used.
int64_t fam_layout(FamActivations& a, const ModelConfig& c, int64_t B, int64_t T, bool training,
                   float* base) {
  const FamDims m = fam_dims(c, B, T, 0);
  const int64_t fl = m.fam_length, D = m.D, W = m.W(), HD = m.H * m.d, F = m.ffn, N = m.N,
                L = c.num_hidden_layers;
  int64_t used = 0;
  auto take = [&](int64_t n) {
    float* at = base ? base + used : nullptr;
    used += n;
    return at;
  };
  auto step = [&](int64_t batch) {
    const int64_t R = batch * fl;
    FamStep s;
    s.batch = batch;
    s.x_in = take(R * D);
    s.xn1 = take(R * D);
    s.rstd1 = take(R);
    s.qkv = take(R * W);
    s.block_kv = take(batch * 2 * N * m.Hkv * m.d);
    s.probs = take(batch * m.H * fl * (fl + N));
    s.att = take(R * HD);
    s.x_mid = take(R * D);
    s.xn2 = take(R * D);
    s.rstd2 = take(R);
    s.gate_up = take(R * 2 * F);
    s.mlp = take(R * F);
    s.x_out = take(R * D);
    return s;
  };
  a.max_blocks = (T + N - 1) / N + 1;
  a.layers.assign(size_t(training ? L : 1), FamLayerActivations{});
  for (FamLayerActivations& la : a.layers) {
    la.steps.clear();
    for (int64_t i = 0; i < a.max_blocks; ++i) la.steps.push_back(step(B));
    la.block_probs = training ? take(B * m.H * T * m.key_rows()) : nullptr;
  }
  a.initial.clear();
  for (int64_t l = 0; l < (training ? std::max<int64_t>(L - 1, 0) : 1); ++l)
    a.initial.push_back(step(1));
  const int64_t R = B * fl;
  a.dx = training ? take(R * D) : nullptr;
  a.dx_mid = training ? take(R * D) : nullptr;
  a.dnormed = training ? take(R * D) : nullptr;
  a.datt = training ? take(R * HD) : nullptr;
  a.dgate_up = training ? take(R * 2 * F) : nullptr;
  a.dmlp = training ? take(R * F) : nullptr;
  a.dstep_qkv.assign(size_t(training ? a.max_blocks : 0), nullptr);
  for (float*& p : a.dstep_qkv) p = take(R * W);
  return used;
}

}  // namespace

FamActivations fam_activations_create(const ModelConfig& c, int64_t batch, int64_t tokens,
                                      bool training) {
  FamActivations a;
  if (c.attention.type != "fam") return a;
  a.training = training;
  const int64_t floats = fam_layout(a, c, batch, tokens, training, nullptr);
  a.storage.assign(size_t(std::max<int64_t>(floats, 1)), 0.0f);
  fam_layout(a, c, batch, tokens, training, a.storage.data());
  const FamDims m = fam_dims(c, batch, tokens, 0);
  a.rope_rows = (m.memory_blocks + 1) * m.N + m.fam_length;
  a.rope_cos.assign(size_t(a.rope_rows * m.d / 2), 0.0f);
  a.rope_sin.assign(size_t(a.rope_rows * m.d / 2), 0.0f);
  rope_tables(a.rope_cos.data(), a.rope_sin.data(), a.rope_rows, m.d, c.rope_theta, 0);
  const int64_t K = m.key_rows();
  a.per_thread = 4 * K * m.d + 2 * m.N * m.d + 2 * m.N * K;
  a.scratch.assign(size_t(threads_count() * a.per_thread), 0.0f);
  a.dinitial.assign(size_t(training ? c.num_hidden_layers * m.fam_length * m.D : 0), 0.0f);
  return a;
}

int64_t fam_activations_floats(const ModelConfig& c, int64_t batch, int64_t tokens, bool training) {
  if (c.attention.type != "fam") return 0;
  FamActivations a;
  const FamDims m = fam_dims(c, batch, tokens, 0);
  const int64_t K = m.key_rows();
  return fam_layout(a, c, batch, tokens, training, nullptr) +
         ((m.memory_blocks + 1) * m.N + m.fam_length) * m.d +
         threads_count() * (4 * K * m.d + 2 * m.N * m.d + 2 * m.N * K) +
         (training ? c.num_hidden_layers * m.fam_length * m.D : 0);
}

void fam_initial_forward(float* fam_all, FamActivations& act, const ModelConfig& c,
                         const Parameters& w, int64_t batch) {
  const FamDims m = fam_dims(c, 1, 1, 0);
  const int64_t fl = m.fam_length, D = m.D, L = c.num_hidden_layers;
  if (fl == 0) return;
  const bool training = act.training;
  const float* x = w.fam_embeddings;  // [fl, D]
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t b = 0; b < batch; ++b) copy_floats(fam_all + (l * batch + b) * fl * D, x, fl * D);
    if (l + 1 == L) break;
    FamStep& st = act.initial[training ? size_t(l) : 0];
    st.batch = 1;
    st.block_rows = 0;
    copy_floats(st.x_in, x, fl * D);
    step_forward(st, act, w.layers[l], m, true);
    x = st.x_out;
  }
}

void fam_layer_forward(float* out, FamLayerActivations& la, FamActivations& act, float* fam,
                       const KvCache& cache, const float* qkv, const LayerParameters& p,
                       const FamDims& m) {
  const int64_t N = m.N, fl = m.fam_length, B = m.batch, D = m.D, T = m.tokens, pos = m.position,
                tau0 = pos / N, tau1 = (pos + T - 1) / N;
  const RawKeys keys{qkv, &cache, &m};
  const float* current = fam;  // F_l for block tau, [B, fl, D]
  for (int64_t tau = tau0; tau <= tau1 && fl > 0; ++tau) {
    FamStep& st = la.steps[size_t(tau - tau0)];
    st.batch = B;
    st.block_rows = N;
    copy_floats(st.x_in, current, B * fl * D);
    const bool complete = (tau + 1) * N <= pos + T;
    if (complete) {
      const int64_t row = m.Hkv * m.d;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < N; ++j)
          for (int64_t g = 0; g < m.Hkv; ++g) {
            float* kv = st.block_kv + (b * 2 * N + j) * row + g * m.d;
            std::memcpy(kv, keys.row(b, g, tau * N + j, false), size_t(m.d) * sizeof(float));
            std::memcpy(kv + N * row, keys.row(b, g, tau * N + j, true),
                        size_t(m.d) * sizeof(float));
          }
    }
    step_forward(st, act, p, m, complete);
    if (complete) current = st.x_out;
  }
  block_attention_forward(out, la.block_probs, la, act, keys, m);
  copy_floats(fam, current, B * fl * D);
}

void fam_layer_backward(float* dqkv, LayerParameters& gp, const float* dout,
                        FamLayerActivations& la, FamActivations& act, const float* qkv,
                        const LayerParameters& p, const FamDims& m, int64_t layer) {
  INFINI_CHECK(m.position == 0 && la.block_probs, "fam backward needs a training chunk at 0");
  const int64_t N = m.N, fl = m.fam_length, B = m.batch, D = m.D, T = m.tokens, W = m.W(),
                blocks = (T + N - 1) / N;
  std::fill(dqkv, dqkv + B * T * W, 0.0f);
  for (int64_t i = 0; i < blocks; ++i)
    std::fill(act.dstep_qkv[size_t(i)], act.dstep_qkv[size_t(i)] + B * fl * W, 0.0f);
  const KvCache none;
  const RawKeys keys{qkv, &none, &m};
  block_attention_backward(dqkv, dout, la.block_probs, la, act, keys, m);
  if (fl == 0) return;
  std::fill(act.dx, act.dx + B * fl * D, 0.0f);  // F after the last block: not carried
  for (int64_t i = blocks - 1; i >= 0; --i)
    step_backward(la.steps[size_t(i)], act, gp, p, m, act.dstep_qkv[size_t(i)], dqkv, i * N);
  float* dinit = act.dinitial.data() + layer * fl * D;  // summed over the streams
  std::fill(dinit, dinit + fl * D, 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < fl * D; ++i) dinit[i] += act.dx[b * fl * D + i];
}

void fam_initial_backward(Parameters& g, FamActivations& act, const ModelConfig& c,
                          const Parameters& w) {
  const FamDims m = fam_dims(c, 1, 1, 0);
  const int64_t fl = m.fam_length, D = m.D, L = c.num_hidden_layers, W = m.W();
  if (fl == 0) return;
  std::vector<float> acc(act.dinitial.end() - fl * D, act.dinitial.end());  // d F_{L-1}(0)
  for (int64_t l = L - 2; l >= 0; --l) {
    copy_floats(act.dx, acc.data(), fl * D);
    std::fill(act.dstep_qkv[0], act.dstep_qkv[0] + fl * W, 0.0f);
    step_backward(act.initial[size_t(l)], act, g.layers[size_t(l)], w.layers[size_t(l)], m,
                  act.dstep_qkv[0], nullptr, 0);
    for (int64_t i = 0; i < fl * D; ++i) acc[i] = act.dx[i] + act.dinitial[l * fl * D + i];
  }
  for (int64_t i = 0; i < fl * D; ++i) g.fam_embeddings[i] += acc[i];
}

}  // namespace infini
