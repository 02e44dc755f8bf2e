#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/parallel.h"
#include "io/safetensors.h"

namespace infini {

namespace {

constexpr int64_t kNormBlock = 1 << 16;  // floats per partial sum of the gradient norm

}  // namespace

AdamW adamw_create(const ModelConfig& config, const Parameters& weights,
                   const AdamWSettings& settings) {
  AdamW opt;
  opt.settings = settings;
  Arena measure = Arena::measuring();
  parameters_layout(config, measure);
  parameters_layout(config, measure);
  opt.storage = Arena(measure.used());  // zero-filled: m = v = 0
  opt.exp_avg = parameters_layout(config, opt.storage);
  opt.exp_avg_sq = parameters_layout(config, opt.storage);

  int64_t covered = 0;
  for (const ParameterInfo& p : parameter_table(config, weights)) {
    ParameterGroup g;
    g.name = p.name;
    g.offset = p.data - weights.all;
    g.count = p.numel();
    switch (p.kind) {
      case ParameterKind::Matrix:
        g.decay = true;
        break;
      case ParameterKind::Embedding:
        // TransformerFAM's learned memory prompt is never decayed (tests/reference/adam_steps.py)
        g.decay = settings.decay_embeddings && p.name != "model.fam_embeddings";
        break;
      case ParameterKind::Norm:
        break;
      case ParameterKind::Gate:
        g.lr_mult = settings.gate_lr_mult;
        break;
    }
    covered += g.count;
    opt.groups.push_back(g);
  }
  INFINI_CHECK(covered == weights.count, "parameter table covers ", covered, " of ", weights.count,
               " floats");
  return opt;
}

void adamw_update(AdamW& opt, Parameters& weights, const Parameters& grads, double lr) {
  opt.step += 1;
  const AdamWSettings& s = opt.settings;
  const double bias_correction1 = 1.0 - std::pow(s.beta1, double(opt.step));
  const double bias_correction2 = 1.0 - std::pow(s.beta2, double(opt.step));
  const float beta1 = float(s.beta1), beta2 = float(s.beta2), eps = float(s.eps);
  const float one_minus_beta1 = float(1.0 - s.beta1), one_minus_beta2 = float(1.0 - s.beta2);
  const float inv_sqrt_bc2 = float(1.0 / std::sqrt(bias_correction2));
  for (const ParameterGroup& g : opt.groups) {
    const double group_lr = lr * g.lr_mult;
    const float step_size = float(group_lr / bias_correction1);
    const float keep = g.decay ? float(1.0 - group_lr * s.weight_decay) : 1.0f;
    float* p = weights.all + g.offset;
    float* m = opt.exp_avg.all + g.offset;
    float* v = opt.exp_avg_sq.all + g.offset;
    const float* grad = grads.all + g.offset;
    parallel_ranges(g.count, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float gi = grad[i];
        m[i] = beta1 * m[i] + one_minus_beta1 * gi;
        v[i] = beta2 * v[i] + one_minus_beta2 * gi * gi;
        const float denom = std::sqrt(v[i]) * inv_sqrt_bc2 + eps;
        p[i] = p[i] * keep - step_size * (m[i] / denom);
      }
    });
  }
}

void adamw_save(const AdamW& opt, const ModelConfig& config, const std::string& path) {
  SafetensorsWriter writer;
  writer.set_metadata("format", "infini-adamw");
  writer.set_metadata("step", std::to_string(opt.step));
  for (const ParameterInfo& p : parameter_table(config, opt.exp_avg))
    writer.add("exp_avg." + p.name, "F32", p.shape, p.data);
  for (const ParameterInfo& p : parameter_table(config, opt.exp_avg_sq))
    writer.add("exp_avg_sq." + p.name, "F32", p.shape, p.data);
  writer.write(path);
}

void adamw_load(AdamW& opt, const ModelConfig& config, const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  const auto step = file.metadata().find("step");
  if (step == file.metadata().end())
    throw Error(path, "no \"step\" in the metadata", "not an optimizer state written by infini");
  try {
    opt.step = std::stoll(step->second);
  } catch (const std::exception&) {
    throw Error(path, "metadata \"step\" is '" + step->second + "', not a number");
  }
  for (const ParameterInfo& p : parameter_table(config, opt.exp_avg))
    read_f32(file.require("exp_avg." + p.name, p.shape), p.data, p.numel(), path);
  for (const ParameterInfo& p : parameter_table(config, opt.exp_avg_sq))
    read_f32(file.require("exp_avg_sq." + p.name, p.shape), p.data, p.numel(), path);
}

double gradient_norm(const Parameters& grads) {
  const int64_t blocks = (grads.count + kNormBlock - 1) / kNormBlock;
  std::vector<double> partial(blocks);
  parallel_for(blocks, [&](int64_t b) {
    const int64_t begin = b * kNormBlock, end = std::min(grads.count, begin + kNormBlock);
    double sum = 0;
    for (int64_t i = begin; i < end; ++i) sum += double(grads.all[i]) * double(grads.all[i]);
    partial[b] = sum;
  });
  double total = 0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

void gradients_scale(Parameters& grads, float factor) {
  float* g = grads.all;
  parallel_ranges(grads.count, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) g[i] *= factor;
  });
}

double gradients_clip(Parameters& grads, double max_norm) {
  const double norm = gradient_norm(grads);
  if (max_norm > 0 && std::isfinite(norm) && norm > max_norm)
    gradients_scale(grads, float(max_norm / (norm + 1e-6)));
  return norm;
}

}  // namespace infini
