#include "model/state_size.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "model/model.h"

namespace infini {

namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

// a * b, saturating at int64's maximum (spans are capped by T afterwards).
int64_t saturating_product(std::initializer_list<int64_t> factors) {
  int64_t p;
  return checked_product(factors, &p) ? p : kMax;
}

int64_t saturating_sum(int64_t a, int64_t b) {
  int64_t s;
  return __builtin_add_overflow(a, b, &s) ? kMax : s;
}

bool is_block_type(const std::string& type) {
  return type == "bswa" || type == "fam";
}

}  // namespace

bool checked_product(std::initializer_list<int64_t> factors, int64_t* out) {
  int64_t p = 1;
  for (int64_t f : factors)
    if (__builtin_mul_overflow(p, f, &p)) return false;
  *out = p;
  return true;
}

bool count_parameters(const ModelConfig& c, int64_t* out) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads, Hkv = c.num_key_value_heads;
  const int64_t d = c.head_dim, F = c.intermediate_size, V = c.vocab_size, L = c.num_hidden_layers;
  int64_t embed, q, kv, mlp, layer = 0, total = 0;
  if (!checked_product({V, D}, &embed) || !checked_product({H, d, D, 2}, &q) ||  // q and o
      !checked_product({Hkv, d, D, 2}, &kv) || !checked_product({F, D, 3}, &mlp))
    return false;
  for (int64_t part : {q, kv, mlp, 2 * D, c.attention.type == "infini" ? H : int64_t(0)})
    if (__builtin_add_overflow(layer, part, &layer)) return false;
  if (!checked_product({layer, L}, &total)) return false;
  int64_t fam = 0;
  if (c.attention.type == "fam" && !checked_product({c.attention.fam_length, D}, &fam))
    return false;
  for (int64_t part : {embed, c.tie_word_embeddings ? int64_t(0) : embed, D, fam})
    if (__builtin_add_overflow(total, part, &total)) return false;
  int64_t bytes;
  if (!checked_product({total, 4}, &bytes)) return false;
  *out = total;
  return true;
}

bool state_floats(const ModelConfig& c, int64_t T, int64_t* out) {
  const AttentionConfig& a = c.attention;
  const int64_t L = c.num_hidden_layers, Hkv = c.num_key_value_heads, d = c.head_dim;
  if (a.type == "infini") return checked_product({L, Hkv, d, d + 1}, out);
  int64_t kv_rows = T;  // full
  if (a.type == "sliding") kv_rows = a.window;
  if (a.type == "xl") kv_rows = a.segment_length;
  if (is_block_type(a.type) && !checked_product({a.segment_length, a.memory_blocks}, &kv_rows))
    return false;
  int64_t floats;
  if (!checked_product({2, L, Hkv, d, kv_rows}, &floats)) return false;
  if (a.type == "fam") {
    int64_t fam;
    if (!checked_product({L, a.fam_length, c.hidden_size}, &fam) ||
        __builtin_add_overflow(floats, fam, &floats))
      return false;
  }
  *out = floats;
  return true;
}

std::string state_formula(const ModelConfig& c, int64_t T) {
  const AttentionConfig& a = c.attention;
  const std::string kv =
      str("2*", c.num_hidden_layers, "*", c.num_key_value_heads, "*", c.head_dim);
  std::string words, numbers;
  if (a.type == "infini") {
    words = "L*Hkv*d*(d+1)";
    numbers =
        str(c.num_hidden_layers, "*", c.num_key_value_heads, "*", c.head_dim, "*", c.head_dim + 1);
  } else if (a.type == "full") {
    words = "2*L*Hkv*d*T";
    numbers = str(kv, "*", T);
  } else if (a.type == "sliding") {
    words = "2*L*Hkv*d*window";
    numbers = str(kv, "*", a.window);
  } else if (a.type == "xl") {
    words = "2*L*Hkv*d*N";
    numbers = str(kv, "*", a.segment_length);
  } else {
    words = "2*L*Hkv*d*N*memory_blocks";
    numbers = str(kv, "*", a.segment_length, "*", a.memory_blocks);
    if (a.type == "fam") {
      words += " + L*fam_length*D";
      numbers += str(" + ", c.num_hidden_layers, "*", a.fam_length, "*", c.hidden_size);
    }
  }
  return T < 0 ? words : words + " = " + numbers;
}

int64_t cache_rows_in_use(const ModelConfig& c, int64_t T) {
  INFINI_CHECK(T >= 0, "a stream length is >= 0, got ", T);
  const AttentionConfig& a = c.attention;
  const int64_t N = a.segment_length;
  if (a.type == "infini") return T % N;
  if (a.type == "full") return T;
  if (a.type == "sliding") return std::min(T, a.window - 1);
  const int64_t blocks_back = a.type == "xl" ? 1 : a.memory_blocks;
  // the next token (position T) attends from the start of the block blocks_back before its own
  const int64_t block = T / N;
  return block < blocks_back ? T : T - (block - blocks_back) * N;
}

std::optional<StateInUse> state_in_use(const ModelConfig& c, int64_t T) {
  const int64_t L = c.num_hidden_layers, Hkv = c.num_key_value_heads, d = c.head_dim;
  StateInUse s;
  s.stream_length = T;
  s.cache_rows = cache_rows_in_use(c, T);
  if (c.attention.type == "infini" && !checked_product({L, Hkv, d, d + 1}, &s.memory_floats))
    return std::nullopt;
  if (c.attention.type == "fam" &&
      !checked_product({L, c.attention.fam_length, c.hidden_size}, &s.fam_floats))
    return std::nullopt;
  if (!checked_product({2, L, Hkv, d, s.cache_rows}, &s.cache_floats) ||
      __builtin_add_overflow(s.memory_floats, s.cache_floats, &s.total_floats) ||
      __builtin_add_overflow(s.total_floats, s.fam_floats, &s.total_floats) ||
      s.total_floats > kMax / 4)
    return std::nullopt;
  return s;
}

EffectiveContext effective_context(const ModelConfig& c, int64_t T) {
  const AttentionConfig& a = c.attention;
  const int64_t L = c.num_hidden_layers, N = a.segment_length;
  EffectiveContext e;
  // Block-shaped types: a token at offset o in its block attends to `back` whole blocks plus its
  // own block up to itself: back N + o + 1 tokens per layer. Through the stack each layer reaches
  // `back` blocks further: L back N + o + 1. o = 0 is the worst placed token, o = N - 1 the best.
  auto blocks = [&](int64_t back) {
    const int64_t layer_reach = saturating_product({back, N}),
                  stack_reach = saturating_product({L, back, N});
    e.layer = {saturating_sum(layer_reach, 1), saturating_sum(layer_reach, N)};
    e.stack = {saturating_sum(stack_reach, 1), saturating_sum(stack_reach, N)};
  };
  if (a.type == "infini") {
    e.unbounded = true;
    e.layer = e.stack = {1, N};
    e.note = str("local softmax attention within the segment (1 to N = ", N,
                 " tokens, at every layer alike) + the compressive memory of every earlier "
                 "segment: unbounded");
  } else if (a.type == "full") {
    e.layer = e.stack = {T, T};
    e.note = "every earlier token of the stream: the whole stream, T tokens";
  } else if (a.type == "sliding") {
    const int64_t reach = saturating_product({L, a.window - 1});
    e.layer = {a.window, a.window};
    e.stack = {saturating_sum(reach, 1), saturating_sum(reach, 1)};
    e.note = str("window = ", a.window, " tokens per layer; L (window - 1) + 1 through the stack");
  } else if (a.type == "xl") {
    blocks(1);
    e.note =
        str("its own segment + the previous one per layer (N + 1 to 2N tokens); one segment "
            "further per layer: L N + 1 to (L + 1) N through the stack, N = ",
            N);
  } else {
    blocks(a.memory_blocks);
    e.note = str("its own block + ", a.memory_blocks,
                 " previous blocks per layer (MB N + 1 to (MB + 1) N tokens); L MB N + 1 to "
                 "(L MB + 1) N through the stack, N = ",
                 N);
    if (a.type == "fam") {
      e.unbounded = true;
      e.note += str("; plus the feedback memory (", a.fam_length,
                    " rows per layer, carried block to block): unbounded");
    }
  }
  for (ContextSpan* s : {&e.layer, &e.stack}) {
    s->min = std::min(s->min, T);
    s->max = std::min(s->max, T);
  }
  return e;
}

StateMeasured stream_state_measure(const ModelConfig& c, const StreamState& s) {
  StateMeasured m;
  m.batch = s.batch;
  m.position = s.position;
  m.memory_floats = s.count;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const LayerState& layer = s.layers[l];
    const int64_t rows = layer.cache.rows;
    if (l == 0) {
      m.cache_rows = rows;
      m.cache_capacity_rows = layer.cache.capacity;
    } else if (rows != m.cache_rows) {
      m.cache_rows = -1;  // layers disagree (never expected: every layer advances together)
    }
    m.cache_floats += 2 * s.batch * rows * s.cache_row_floats;  // keys and values
    if (layer.fam) m.fam_floats += s.batch * c.attention.fam_length * c.hidden_size;
  }
  m.total_floats = m.memory_floats + m.cache_floats + m.fam_floats;
  m.in_use_bytes = 4 * m.total_floats;
  m.allocated_bytes = int64_t(s.storage.used() + s.cache_storage.used());
  return m;
}

}  // namespace infini
