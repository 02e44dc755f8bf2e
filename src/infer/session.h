// Stream sessions: a decoder's whole state in a file, so that a stream can be continued later
// (read a book today, ask about it tomorrow) in another process, with the numbers it would have
// had if never interrupted.
//
// A state file holds every layer's memory (M, z), the unfinished segment's KV cache, the stream
// position, the logits after the last token consumed (so that the next token can be drawn
// without feeding anything new) and the sampler's random generator. It is versioned, carries a
// checksum of its payload and the fingerprint of the model that wrote it, and is written
// atomically (io/atomic_file.h). The byte layout is in docs/formats.md ("Stream state files").
#pragma once

#include <cstdint>
#include <string>

#include "core/random.h"
#include "infer/decoder.h"

namespace infini {

// FNV-1a 64 over the model's config (config_to_json, compact) and then its weights' bytes
// (little-endian F32, the Parameters block): two models with the same fingerprint compute the
// same numbers. It reads every weight once (~10 ms for 4M weights): compute it once per model.
uint64_t model_fingerprint(const Model& model);

// Writes the decoder's stream (and the generator `rng`) to `path`, atomically.
void session_save(const std::string& path, const Decoder& decoder, const Rng& rng,
                  uint64_t model_fingerprint);

// Restores a stream written by session_save into `decoder` (and its generator into `rng`).
// Refuses, with an infini::Error naming `path` and what is wrong, a file that is missing,
// truncated, not a state file, of another format version, corrupted (checksum), written by
// another model (fingerprint) or inconsistent; the decoder and rng are then left unchanged.
void session_load(const std::string& path, Decoder& decoder, Rng& rng, uint64_t model_fingerprint);

}  // namespace infini
