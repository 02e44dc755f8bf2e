// Stream state and activation buffers: sizes and layouts (the two-pass Arena idiom).
#include <algorithm>
#include <cstring>

#include "core/parallel.h"
#include "kernels/rope.h"
#include "model/model.h"

namespace infini {

namespace {

void layout_state(StreamState& s, const ModelConfig& c, Arena& arena, int64_t capacity) {
  const int64_t L = c.num_hidden_layers, Hkv = c.num_key_value_heads, d = c.head_dim, B = s.batch,
                memory_floats = B * Hkv * (d * d + d), cache_floats = B * capacity * Hkv * d;
  s.count = L * memory_floats;
  s.all = arena.take<float>(s.count);
  s.cache_count = L * 2 * cache_floats;
  s.cache_all = arena.take<float>(s.cache_count);
  s.layers.resize(L);
  for (int64_t l = 0; l < L; ++l) {
    LayerState& layer = s.layers[l];
    float* memory = s.all ? s.all + l * memory_floats : nullptr;
    float* cache = s.cache_all ? s.cache_all + l * 2 * cache_floats : nullptr;
    layer.memory = {memory, memory ? memory + B * Hkv * d * d : nullptr};
    layer.cache = {0, capacity, cache, cache ? cache + cache_floats : nullptr};
    layer.fam = nullptr;
  }
}

void layout_activations(Activations& a, const ModelConfig& c, Arena& arena) {
  const int64_t B = a.batch, T = a.tokens, R = B * T, D = c.hidden_size, V = c.vocab_size,
                H = c.num_attention_heads, Hkv = c.num_key_value_heads, d = c.head_dim,
                F = c.intermediate_size, N = c.attention.segment_length, W = (H + 2 * Hkv) * d,
                S = (T + N - 1) / N;
  const int64_t kept_layers = a.training ? c.num_hidden_layers : 1;
  a.layers.resize(kept_layers);
  for (LayerActivations& l : a.layers) {
    l.x_in = arena.take<float>(R * D);
    l.xn1 = arena.take<float>(R * D);
    l.rstd1 = arena.take<float>(R);
    l.qkv = arena.take<float>(R * W);
    l.attn.q_rope = arena.take<float>(R * H * d);
    l.attn.k_rope = arena.take<float>(R * Hkv * d);
    l.attn.probs = arena.take<float>(B * H * T * N);
    l.attn.a_mem = arena.take<float>(R * H * d);
    l.attn.a_dot = arena.take<float>(R * H * d);
    l.attn.memory_before = a.training ? arena.take<float>(B * S * Hkv * d * d) : nullptr;
    l.attn.norm_before = a.training ? arena.take<float>(B * S * Hkv * d) : nullptr;
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
  a.rope_cos = arena.take<float>(N * d / 2);
  a.rope_sin = arena.take<float>(N * d / 2);
  InfiniShape shape{B, T, N, H, Hkv, d, true};
  a.attn_scratch = arena.take<float>(threads_count() * shape.scratch_floats());
  const bool bw = a.training;
  a.dx = bw ? arena.take<float>(R * D) : nullptr;
  a.dnormed = bw ? arena.take<float>(R * D) : nullptr;
  a.dqkv = bw ? arena.take<float>(R * W) : nullptr;
  a.datt = bw ? arena.take<float>(R * H * d) : nullptr;
  a.dgate_up = bw ? arena.take<float>(R * 2 * F) : nullptr;
  a.dmlp = bw ? arena.take<float>(R * F) : nullptr;
  a.dgate_partial = bw ? arena.take<float>(B * H) : nullptr;
}

}  // namespace

int64_t kv_cache_capacity(const ModelConfig& config) {
  return config.attention.segment_length;  // infini: the unfinished segment
}

size_t stream_state_bytes(const ModelConfig& config, int64_t batch, bool with_cache) {
  StreamState s;
  s.batch = batch;
  Arena measure = Arena::measuring();
  layout_state(s, config, measure, with_cache ? kv_cache_capacity(config) : 0);
  return measure.used();
}

StreamState stream_state_create(const ModelConfig& config, int64_t batch, bool with_cache) {
  INFINI_CHECK(batch >= 1, "batch must be positive, got ", batch);
  StreamState s;
  s.batch = batch;
  s.storage = Arena(stream_state_bytes(config, batch, with_cache));
  layout_state(s, config, s.storage, with_cache ? kv_cache_capacity(config) : 0);
  return s;
}

void stream_state_reset(StreamState& state) {
  std::fill(state.all, state.all + state.count, 0.0f);
  for (LayerState& l : state.layers) l.cache.rows = 0;
  state.position = 0;
}

void stream_state_copy(StreamState& to, const StreamState& from) {
  INFINI_CHECK(
      to.count == from.count && to.batch == from.batch && to.layers.size() == from.layers.size(),
      "stream states of different sizes");
  std::memcpy(to.all, from.all, from.count * sizeof(float));
  for (size_t l = 0; l < from.layers.size(); ++l) {
    const KvCache& src = from.layers[l].cache;
    KvCache& dst = to.layers[l].cache;
    INFINI_CHECK(dst.capacity >= src.rows, "a state with ", src.rows,
                 " cached rows copied into a cache of ", dst.capacity);
    // [B, capacity, Hkv, d]: the rows in use are the first src.rows of each stream
    if (src.rows > 0) {
      const int64_t L = int64_t(from.layers.size()),
                    row = from.cache_count / (2 * L * from.batch * src.capacity);  // Hkv d
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
  return measure.used();
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
  // Infini-attention's local attention restarts positions every segment: one table, 0..N-1.
  rope_tables(a.rope_cos, a.rope_sin, config.attention.segment_length, config.head_dim,
              config.rope_theta, 0);
  return a;
}

}  // namespace infini
