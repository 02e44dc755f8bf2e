// Streaming inference for one stream: its state and scratch, sized once, and the two ways tokens
// go in. A prompt of any length is fed in chunks of several segments (the projections and the MLP
// run as GEMMs over the whole chunk, only the last row's logits are computed); decoding feeds one
// token at a time. Either way model_forward continues the stream from wherever it stands: the
// memory (M, z) holds every completed segment and the KV cache the unfinished one, so the logits
// equal those of one forward pass over the whole stream (spec §2, streaming rule) and the work per
// decoded token does not grow with the stream (the cache never holds more than N rows).
//
// Nothing is allocated after decoder_create: feeding and stepping reuse the same buffers.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model.h"

namespace infini {

struct Decoder {
  const Model* model = nullptr;
  int64_t chunk_tokens = 0;   // C: prompt tokens run at once (whole segments)
  StreamState state;          // batch 1
  Activations chunk;          // [1, C], last-row logits only
  Activations step;           // [1, 1]
  std::vector<float> logits;  // [V] the logits after the last token fed (when state.position > 0)
};

// chunk_tokens is rounded down to whole segments (at least one).
Decoder decoder_create(const Model& model, int64_t chunk_tokens = 4096);
// Back to an empty stream at position 0.
void decoder_reset(Decoder& decoder);

// Feeds `count` tokens (any count >= 0) and leaves the logits of the last one in decoder.logits.
// Chunks are cut at multiples of C stream positions, so a stream's cuts do not depend on how its
// tokens were handed over, except around the point where one call ends and the next begins.
// Throws (before touching the state) when an id is outside the model's vocabulary.
void decoder_feed(Decoder& decoder, const int32_t* tokens, int64_t count);
// Feeds one token through the 1-token path (decoding).
void decoder_step(Decoder& decoder, int32_t token);

}  // namespace infini
