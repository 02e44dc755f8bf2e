// How big a model is and how much it carries between segments, from its config alone
// (../shared/spec/memory-mechanisms.md §2-§4; the papers' memory-footprint formulas,
// ../shared/spec/evaluation.md), plus the same numbers read off a live StreamState.
//
//   parameters        the weights of model.safetensors (spec §5), memory gates and FAM rows
//   included spec state        the "state between segments" column of spec §3 (floats, for one
//   stream):
//                       infini   L Hkv d (d + 1)             M [d, d] and z [d] per layer, kv head
//                       full     2 L Hkv d T                 grows with the stream
//                       sliding  2 L Hkv d window
//                       xl       2 L Hkv d N
//                       bswa     2 L Hkv d N memory_blocks
//                       fam      bswa + L fam_length D       + the feedback rows
//   state in use      exactly what a stream holds after T tokens: the memories, the KV cache rows
//                     later tokens still attend to (attention_policy.h's kv_cache_rows_needed;
//                     infini: the unfinished segment, T mod N rows) and the FAM rows. It differs
//                     from the spec column where the spec counts the steady state or leaves the
//                     cache out (infini: memories only; sliding keeps window - 1 rows, since the
//                     next token itself is the window's last; xl and bswa also keep the rows of
//                     the unfinished block; every type holds fewer rows before its window fills).
//   effective context how many tokens (itself included) a token's prediction can depend on: per
//                     layer through its attention, and through the stack of L layers (each layer
//                     reaches back from the keys the layer below could see); the compressive
//                     memory (infini) and the feedback loop (fam) make it unbounded.
//
// Every count is an int64 number of floats (fp32: 4 bytes each); a size that would overflow int64
// is reported as such (false / nullopt), never wrapped.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>

#include "model/config.h"

namespace infini {

struct StreamState;

// a * b * ..., or false when the product overflows int64.
bool checked_product(std::initializer_list<int64_t> factors, int64_t* out);
// Number of weights (config_parameter_count); false when it, or its fp32 bytes, overflows int64.
bool count_parameters(const ModelConfig& config, int64_t* out);
// Floats of state carried between segments at stream length T by spec §2-§3 (the table above);
// only `full` depends on T. False when it overflows int64.
bool state_floats(const ModelConfig& config, int64_t stream_length, int64_t* out);
// The formula of state_floats for the config's type: "L*Hkv*d*(d+1)", ...; with a stream length
// T >= 0, followed by the numbers: "L*Hkv*d*(d+1) = 4*4*64*65".
std::string state_formula(const ModelConfig& config, int64_t stream_length = -1);

// What one stream holds after `stream_length` tokens (the next token is at that position).
struct StateInUse {
  int64_t stream_length = 0;  // T
  int64_t memory_floats = 0;  // infini: M and z, L Hkv d (d + 1); 0 for the others
  int64_t cache_rows = 0;     // K/V rows per layer (each layer alike)
  int64_t cache_floats = 0;   // 2 L Hkv d cache_rows (keys and values)
  int64_t fam_floats = 0;     // fam: L fam_length D feedback rows; 0 for the others
  int64_t total_floats = 0;   // the sum
  int64_t bytes() const { return 4 * total_floats; }
};
// KV cache rows per layer after `stream_length` tokens: infini T mod N, full T, sliding
// min(T, window - 1), xl T - first_key, bswa and fam T - first_key (first_key: the oldest position
// the next token attends to).
int64_t cache_rows_in_use(const ModelConfig& config, int64_t stream_length);
// nullopt when a count overflows int64 (full at absurd T).
std::optional<StateInUse> state_in_use(const ModelConfig& config, int64_t stream_length);

// Tokens back a token can be influenced by, itself included: `min` for the token placed worst
// (the first of a segment or block), `max` for the one placed best (its last); every figure is at
// most the stream length T.
struct ContextSpan {
  int64_t min = 0, max = 0;
};
struct EffectiveContext {
  bool unbounded = false;  // infini: the compressive memory; fam: the feedback memory
  ContextSpan layer;       // one layer's attention (infini, fam: the exact softmax part only)
  ContextSpan stack;       // through all L layers (idem)
  std::string note;        // how the figures come about, in words
};
EffectiveContext effective_context(const ModelConfig& config, int64_t stream_length);

// A live state, measured: the same fields as StateInUse (from the state's own counts, rows and
// pointers: batch streams together), plus the bytes its arenas hold.
struct StateMeasured {
  int64_t batch = 0;
  int64_t position = 0;
  int64_t memory_floats = 0;        // StreamState::count
  int64_t cache_rows = 0;           // rows in use per layer and stream (-1 when the layers differ)
  int64_t cache_floats = 0;         // rows in use, keys and values, every layer and stream
  int64_t cache_capacity_rows = 0;  // rows the cache can hold per layer and stream
  int64_t fam_floats = 0;           // feedback rows (layers with a non-null LayerState::fam)
  int64_t total_floats = 0;
  int64_t in_use_bytes = 0;     // 4 total_floats
  int64_t allocated_bytes = 0;  // the buffers laid out in the memory and cache arenas (64-byte
                                // aligned): stream_state_bytes of a fresh state; more once a
                                // growing (full) cache has doubled
};
StateMeasured stream_state_measure(const ModelConfig& config, const StreamState& state);

}  // namespace infini
