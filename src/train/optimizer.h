// AdamW (Loshchilov & Hutter) with per-parameter-kind treatment, gradient clipping by global norm.
//
// One update, for every parameter p with gradient g, at optimizer step t (1, 2, ...), with the
// group's learning rate lr_g = lr * lr_mult (PyTorch's torch.optim.AdamW, float32):
//
//   p  = p * (1 - lr_g * weight_decay)          only where the group decays
//   m  = beta1 m + (1 - beta1) g
//   v  = beta2 v + (1 - beta2) g^2
//   p  = p - (lr_g / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// Groups follow ParameterKind (model/parameters.h):
//   Matrix     decay, lr x 1;
//   Norm       no decay (pulling RMSNorm gains towards 0 only shrinks the signal), lr x 1;
//   Embedding  no decay unless decay_embeddings (a row is only updated when its token occurs,
//              decay would shrink rare tokens every step), lr x 1;
//   Gate       no decay, lr x gate_lr_mult: the memory gate beta_h is one scalar per head whose
//              gradient is an average over every token and feature of the head, so it is small
//              and with the global rate the gates barely move from their initial value (a
//              reported pitfall of Infini-attention, ../shared/spec/evaluation.md); decay would
//              pull every gate towards sigmoid(0) = 0.5, i.e. towards mixing, which is exactly
//              the choice the model has to learn.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/arena.h"
#include "model/config.h"
#include "model/parameters.h"

namespace infini {

struct AdamWSettings {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.0;
  double gate_lr_mult = 1.0;
  bool decay_embeddings = false;
};

// How the optimizer treats one contiguous range of the parameter block.
struct ParameterGroup {
  std::string name;  // the checkpoint tensor
  int64_t offset = 0, count = 0;
  double lr_mult = 1;
  bool decay = false;
};

struct AdamW {
  AdamWSettings settings;
  std::vector<ParameterGroup> groups;  // cover [0, weights.count) exactly once
  Arena storage;
  Parameters exp_avg;     // m, the weights' layout
  Parameters exp_avg_sq;  // v, the weights' layout
  int64_t step = 0;       // updates applied so far (bias correction)
};

AdamW adamw_create(const ModelConfig& config, const Parameters& weights,
                   const AdamWSettings& settings);

// One update with learning rate `lr` (before the group multipliers); increments opt.step.
void adamw_update(AdamW& opt, Parameters& weights, const Parameters& grads, double lr);

// optimizer.safetensors: the moments as "exp_avg.<tensor>" / "exp_avg_sq.<tensor>" (F32, the
// checkpoint's tensor names and shapes) and the step count in the metadata. Atomic write.
void adamw_save(const AdamW& opt, const ModelConfig& config, const std::string& path);
// Reads what adamw_save wrote; every tensor must be there with its shape. Errors name the file.
void adamw_load(AdamW& opt, const ModelConfig& config, const std::string& path);

// Global L2 norm of every gradient, accumulated in double over fixed blocks summed in order:
// the same bits for any thread count. NaN or inf when a gradient is.
double gradient_norm(const Parameters& grads);
// Multiplies every gradient by `factor`.
void gradients_scale(Parameters& grads, float factor);
// PyTorch's clip_grad_norm_: when norm > max_norm, scales by max_norm / (norm + 1e-6).
// max_norm 0: no clipping. Returns the norm before clipping.
double gradients_clip(Parameters& grads, double max_norm);

}  // namespace infini
