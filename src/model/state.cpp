// Stream state and activation buffers: sizes and layouts (the two-pass Arena idiom).
#include <algorithm>
#include <cstring>

#include "attention/kv_attention.h"
#include "core/parallel.h"
#include "kernels/rope.h"
#include "model/model.h"

namespace infini {

namespace {

// The memories (infini only): M then z per layer.
void layout_memories(StreamState& s, const ModelConfig& c, Arena& arena) {
  const bool infini = c.attention.type == "infini";
  const int64_t L = c.num_hidden_layers, Hkv = c.num_key_value_heads, d = c.head_dim, B = s.batch,
                memory_floats = infini ? B * Hkv * (d * d + d) : 0;
  s.count = L * memory_floats;
  s.all = s.count ? arena.take<float>(s.count) : nullptr;
  const int64_t fam_floats =
      c.attention.type == "fam" ? B * c.attention.fam_length * c.hidden_size : 0;
  s.fam_count = L * fam_floats;
  s.fam_all = s.fam_count ? arena.take<float>(s.fam_count) : nullptr;
  s.cache_row_floats = Hkv * d;
  s.layers.resize(L);
  for (int64_t l = 0; l < L; ++l) {
    float* memory = s.all ? s.all + l * memory_floats : nullptr;
    s.layers[l].memory = {memory, memory ? memory + B * Hkv * d * d : nullptr};
    s.layers[l].fam = s.fam_all ? s.fam_all + l * fam_floats : nullptr;
  }
}

// The caches: [L][2][B, capacity, Hkv, d]; rows are left as they are.
void layout_caches(StreamState& s, Arena& arena, int64_t capacity) {
  const int64_t L = int64_t(s.layers.size()),
                cache_floats = s.batch * capacity * s.cache_row_floats;
  s.cache_count = L * 2 * cache_floats;
  s.cache_all = s.cache_count ? arena.take<float>(s.cache_count) : nullptr;
  for (int64_t l = 0; l < L; ++l) {
    KvCache& cache = s.layers[l].cache;
    float* block = s.cache_all ? s.cache_all + l * 2 * cache_floats : nullptr;
    cache.capacity = capacity;
    cache.keys = block;
    cache.values = block ? block + cache_floats : nullptr;
  }
}

// Rows a new state's cache gets: the mechanism's capacity, N to start with for full.
int64_t initial_capacity(const ModelConfig& c, bool with_cache) {
  if (!with_cache) return 0;
  const int64_t capacity = kv_cache_capacity(c);
  return capacity >= 0 ? capacity : c.attention.segment_length;
}

size_t floats_bytes(int64_t n) {
  Arena measure = Arena::measuring();
  if (n) measure.take<float>(n);
  return measure.used();
}

void layout_activations(Activations& a, const ModelConfig& c, Arena& arena) {
  const int64_t B = a.batch, T = a.tokens, R = B * T, D = c.hidden_size, V = c.vocab_size,
                H = c.num_attention_heads, Hkv = c.num_key_value_heads, d = c.head_dim,
                F = c.intermediate_size, N = c.attention.segment_length, W = (H + 2 * Hkv) * d,
                S = (T + N - 1) / N;
  const int64_t kept_layers = a.training ? c.num_hidden_layers : 1;
  const std::optional<KvPolicy> policy = model_kv_policy(c);
  const bool infini = !policy;
  // the baselines keep probabilities for backward: training chunks start at position 0
  const int64_t kv_probs = policy && a.training && c.attention.type != "fam"
                               ? kv_probs_floats(*policy, KvShape{B, T, H, Hkv, d, 0}) * B * H
                               : 0;
  a.layers.resize(kept_layers);
  for (LayerActivations& l : a.layers) {
    l.x_in = arena.take<float>(R * D);
    l.xn1 = arena.take<float>(R * D);
    l.rstd1 = arena.take<float>(R);
    l.qkv = arena.take<float>(R * W);
    l.attn = {};
    if (infini) {
      l.attn.q_rope = arena.take<float>(R * H * d);
      l.attn.k_rope = arena.take<float>(R * Hkv * d);
      l.attn.probs = arena.take<float>(B * H * T * N);
      l.attn.a_mem = arena.take<float>(R * H * d);
      l.attn.a_dot = arena.take<float>(R * H * d);
      l.attn.memory_before = a.training ? arena.take<float>(B * S * Hkv * d * d) : nullptr;
      l.attn.norm_before = a.training ? arena.take<float>(B * S * Hkv * d) : nullptr;
    }
    l.kv_probs = kv_probs ? arena.take<float>(kv_probs) : nullptr;
    l.att = arena.take<float>(R * H * d);
    l.x_mid = a.training ? arena.take<float>(R * D) : l.x_in;
    l.xn2 = a.training ? arena.take<float>(R * D) : l.xn1;
    l.rstd2 = arena.take<float>(R);
    l.gate_up = arena.take<float>(R * 2 * F);
    l.mlp = arena.take<float>(R * F);
  }
  a.x_final = a.training ? arena.take<float>(R * D) : a.layers[0].x_in;
  a.xn_final = arena.take<float>(R * D);
  a.rstd_final = arena.take<float>(R);
  a.logits = arena.take<float>(R * V);
  a.losses = arena.take<float>(R);
  if (infini) {
    a.rope_cos = arena.take<float>(N * d / 2);
    a.rope_sin = arena.take<float>(N * d / 2);
    InfiniShape shape{B, T, N, H, Hkv, d, true};
    a.attn_scratch = arena.take<float>(threads_count() * shape.scratch_floats());
  } else {
    a.rope_cos = a.rope_sin = a.attn_scratch = nullptr;
  }
  const bool bw = a.training;
  a.dx = bw ? arena.take<float>(R * D) : nullptr;
  a.dnormed = bw ? arena.take<float>(R * D) : nullptr;
  a.dqkv = bw ? arena.take<float>(R * W) : nullptr;
  a.datt = bw ? arena.take<float>(R * H * d) : nullptr;
  a.dgate_up = bw ? arena.take<float>(R * 2 * F) : nullptr;
  a.dmlp = bw ? arena.take<float>(R * F) : nullptr;
  a.dgate_partial = bw && infini ? arena.take<float>(B * H) : nullptr;
}

// What a baseline's chunk needs: RoPE rows and per-thread scratch floats.
struct KvNeeds {
  int64_t rope_rows = 0, scratch = 0;
};

KvNeeds kv_needs(const KvPolicy& policy, const KvShape& shape, bool training) {
  return {kv_rope_positions(policy, shape),
          std::max(kv_forward_scratch_floats(policy, shape),
                   training ? kv_backward_scratch_floats(policy, shape) : int64_t(0))};
}

// The worst chunk of act.tokens tokens: at position 0 for training and for full (whose needs
// grow with the stream: model_forward grows them); over every position up to one period past
// the largest cache otherwise (beyond it the plans repeat with period N).
KvNeeds kv_worst_needs(const KvPolicy& policy, const ModelConfig& c, int64_t B, int64_t T,
                       bool training) {
  KvShape shape{B, T, c.num_attention_heads, c.num_key_value_heads, c.head_dim, 0};
  KvNeeds worst = kv_needs(policy, shape, training);
  const int64_t max_rows = kv_cache_max_rows(policy);
  if (training || max_rows < 0) return worst;
  for (shape.position = 1; shape.position <= max_rows + c.attention.segment_length;
       ++shape.position) {
    const KvNeeds n = kv_needs(policy, shape, training);
    worst.rope_rows = std::max(worst.rope_rows, n.rope_rows);
    worst.scratch = std::max(worst.scratch, n.scratch);
  }
  return worst;
}

}  // namespace

std::optional<KvPolicy> model_kv_policy(const ModelConfig& c) {
  if (c.attention.type == "infini") return std::nullopt;
  // fam: its block rows attend as bswa's (the FAM rows are fam.h's)
  return kv_policy(c.attention.type == "fam" ? "bswa" : c.attention.type,
                   c.attention.segment_length, c.attention.window, c.attention.memory_blocks);
}

int64_t kv_cache_capacity(const ModelConfig& config) {
  const std::optional<KvPolicy> policy = model_kv_policy(config);
  if (!policy) return config.attention.segment_length;  // infini: the unfinished segment
  return kv_cache_max_rows(*policy);                    // -1: full grows
}

size_t stream_state_bytes(const ModelConfig& config, int64_t batch, bool with_cache) {
  StreamState s;
  s.batch = batch;
  Arena measure = Arena::measuring();
  layout_memories(s, config, measure);
  const size_t memories = measure.used();
  measure.reset();
  layout_caches(s, measure, initial_capacity(config, with_cache));
  return memories + measure.used();
}

StreamState stream_state_create(const ModelConfig& config, int64_t batch, bool with_cache) {
  INFINI_CHECK(batch >= 1, "batch must be positive, got ", batch);
  StreamState s;
  s.batch = batch;
  Arena measure = Arena::measuring();
  layout_memories(s, config, measure);
  s.storage = Arena(measure.used());
  layout_memories(s, config, s.storage);
  const int64_t capacity = initial_capacity(config, with_cache);
  s.cache_storage =
      Arena(floats_bytes(2 * config.num_hidden_layers * batch * capacity * s.cache_row_floats));
  layout_caches(s, s.cache_storage, capacity);
  for (LayerState& l : s.layers) l.cache.rows = 0;
  return s;
}

void stream_state_reserve(StreamState& s, int64_t rows) {
  if (s.layers.empty() || s.layers[0].cache.capacity >= rows) return;
  const int64_t old_capacity = s.layers[0].cache.capacity,
                capacity = std::max(rows, 2 * old_capacity), row = s.cache_row_floats;
  std::vector<KvCache> old(s.layers.size());
  for (size_t l = 0; l < s.layers.size(); ++l) old[l] = s.layers[l].cache;
  Arena fresh(floats_bytes(2 * int64_t(s.layers.size()) * s.batch * capacity * row));
  layout_caches(s, fresh, capacity);
  for (size_t l = 0; l < s.layers.size(); ++l) {
    KvCache& dst = s.layers[l].cache;
    dst.rows = old[l].rows;
    for (int64_t b = 0; b < s.batch && dst.rows > 0; ++b) {
      std::memcpy(dst.keys + b * capacity * row, old[l].keys + b * old_capacity * row,
                  dst.rows * row * sizeof(float));
      std::memcpy(dst.values + b * capacity * row, old[l].values + b * old_capacity * row,
                  dst.rows * row * sizeof(float));
    }
  }
  s.cache_storage = std::move(fresh);
}

void stream_state_reset(StreamState& state) {
  std::fill(state.all, state.all + state.count, 0.0f);
  std::fill(state.fam_all, state.fam_all + state.fam_count, 0.0f);  // recomputed at position 0
  for (LayerState& l : state.layers) l.cache.rows = 0;
  state.position = 0;
}

void stream_state_copy(StreamState& to, const StreamState& from) {
  INFINI_CHECK(to.count == from.count && to.fam_count == from.fam_count && to.batch == from.batch &&
                   to.layers.size() == from.layers.size() &&
                   to.cache_row_floats == from.cache_row_floats,
               "stream states of different sizes");
  if (from.count) std::memcpy(to.all, from.all, from.count * sizeof(float));
  if (from.fam_count) std::memcpy(to.fam_all, from.fam_all, from.fam_count * sizeof(float));
  // a growing (full) cache grows to fit; a fixed one has its mechanism's capacity already
  if (!from.layers.empty() && to.cache_count > 0 &&
      to.layers[0].cache.capacity < from.layers[0].cache.rows)
    stream_state_reserve(to, from.layers[0].cache.rows);
  const int64_t row = from.cache_row_floats;  // Hkv d
  for (size_t l = 0; l < from.layers.size(); ++l) {
    const KvCache& src = from.layers[l].cache;
    KvCache& dst = to.layers[l].cache;
    INFINI_CHECK(dst.capacity >= src.rows, "a state with ", src.rows,
                 " cached rows copied into a cache of ", dst.capacity);
    // [B, capacity, Hkv, d]: the rows in use are the first src.rows of each stream
    if (src.rows > 0) {
      for (int64_t b = 0; b < from.batch; ++b) {
        std::memcpy(dst.keys + b * dst.capacity * row, src.keys + b * src.capacity * row,
                    src.rows * row * sizeof(float));
        std::memcpy(dst.values + b * dst.capacity * row, src.values + b * src.capacity * row,
                    src.rows * row * sizeof(float));
      }
    }
    dst.rows = src.rows;
  }
  to.position = from.position;
}

size_t activations_bytes(const ModelConfig& config, int64_t batch, int64_t tokens, bool training) {
  Activations a;
  a.batch = batch;
  a.tokens = tokens;
  a.training = training;
  Arena measure = Arena::measuring();
  layout_activations(a, config, measure);
  size_t bytes = measure.used();
  const std::optional<KvPolicy> policy = model_kv_policy(config);
  if (policy && config.attention.type != "fam") {
    const KvNeeds n = kv_worst_needs(*policy, config, batch, tokens, training);
    bytes += sizeof(float) * size_t(n.rope_rows * config.head_dim + threads_count() * n.scratch);
  }
  return bytes + sizeof(float) * size_t(fam_activations_floats(config, batch, tokens, training));
}

Activations activations_create(const ModelConfig& config, int64_t batch, int64_t tokens,
                               bool training) {
  INFINI_CHECK(batch >= 1 && tokens >= 1, "chunk of ", batch, " x ", tokens, " tokens");
  Activations a;
  a.batch = batch;
  a.tokens = tokens;
  a.training = training;
  a.storage = Arena(activations_bytes(config, batch, tokens, training));
  layout_activations(a, config, a.storage);
  a.fam = fam_activations_create(config, batch, tokens, training);
  const std::optional<KvPolicy> policy = model_kv_policy(config);
  if (!policy) {
    // Infini-attention's local attention restarts positions every segment: one table, 0..N-1.
    rope_tables(a.rope_cos, a.rope_sin, config.attention.segment_length, config.head_dim,
                config.rope_theta, 0);
  } else if (config.attention.type != "fam") {  // fam: fam.h's tables and scratch
    const KvNeeds n = kv_worst_needs(*policy, config, batch, tokens, training);
    activations_reserve_kv(a, config, n.rope_rows, n.scratch);
  }
  return a;
}

void activations_reserve_kv(Activations& a, const ModelConfig& c, int64_t rope_rows,
                            int64_t scratch_per_thread) {
  if (rope_rows > a.kv_rope_rows) {
    a.kv_rope_rows = std::max(rope_rows, 2 * a.kv_rope_rows);
    const size_t floats = size_t(a.kv_rope_rows * c.head_dim / 2);
    a.kv_rope_cos.assign(floats, 0.0f);
    a.kv_rope_sin.assign(floats, 0.0f);
    rope_tables(a.kv_rope_cos.data(), a.kv_rope_sin.data(), a.kv_rope_rows, c.head_dim,
                c.rope_theta, 0);
  }
  const int64_t scratch = threads_count() * scratch_per_thread;
  if (scratch > int64_t(a.kv_scratch.size()))
    a.kv_scratch.assign(size_t(std::max(scratch, 2 * int64_t(a.kv_scratch.size()))), 0.0f);
}

}  // namespace infini
