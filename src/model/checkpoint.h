// Checkpoint directories (spec §5, docs/formats.md): config.json + model.safetensors.
#pragma once

#include <string>

#include "model/model.h"

namespace infini {

// Reads and validates `dir`/config.json and `dir`/model.safetensors (F32, BF16 or F16 tensors).
// Every expected tensor must be present with its exact shape, and nothing else may be there;
// a Llama-layout checkpoint without any self_attn.memory_gate tensor gets its gates from
// attention.gate_init. Errors name the file and the tensor.
Model model_load(const std::string& dir);

// Writes `dir`/config.json and `dir`/model.safetensors (F32), each atomically; creates `dir`.
// The same model always gives the same bytes.
void model_save(const Model& model, const std::string& dir);

}  // namespace infini
