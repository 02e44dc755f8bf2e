// Gate analysis of an Infini-attention model (issue 7; the paper's Figure 3, left): every layer's
// per-head memory gate g = sigmoid(beta_h) of spec §2 step 4,
//   A = g A_mem + (1 - g) A_dot,
// so g = 0 is a head that only attends locally (its own segment, softmax) and g = 1 a head that
// only reads the compressive memory. The paper found specialised heads (g near 0 or 1) and
// "mixer" heads in between, with at least one local head in every layer.
//
// A head is `local` when g < local_below, `memory` when g > memory_above, a `mixer` otherwise.
// Reports: a markdown table (one row per head, then one line per layer), JSON, and an SVG heatmap
// (rows = layers, layer 0 at the top; columns = heads; viridis from 0 to 1 with a colour bar; each
// cell shows g with 2 decimals and its class letter L, M or X).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"

namespace infini {

enum class GateClass { local, memory, mixer };

const char* gate_class_name(GateClass c);  // "local", "memory", "mixer"
char gate_class_letter(GateClass c);       // 'L', 'M', 'X'
// sigmoid(beta) in double precision, without overflow for any finite beta.
double gate_sigmoid(double beta);
GateClass gate_classify(double gate, double local_below, double memory_above);

struct GateHead {
  int64_t layer = 0, head = 0;
  double beta = 0;  // the stored parameter
  double gate = 0;  // sigmoid(beta)
  GateClass type = GateClass::mixer;
};

struct GateLayer {
  int64_t layer = 0;
  int64_t local = 0, memory = 0, mixer = 0;  // heads of each class
  bool keeps_local = false;                  // local >= 1, as the paper observed in every layer
};

struct GateAnalysis {
  std::string model;  // the checkpoint directory, as given
  int64_t layers = 0, heads = 0;
  double local_below = 0.25, memory_above = 0.75;
  std::vector<GateHead> gates;   // [layers * heads], layer-major
  std::vector<GateLayer> layer;  // [layers]
};

// Checks 0 <= local_below <= memory_above <= 1 (errors name the flags).
void gate_thresholds_check(double local_below, double memory_above);
// The gates of `model` (attention.type must be "infini": the other mechanisms have no gates, an
// infini::Error says so). `name` labels the reports.
GateAnalysis gate_analysis(const Model& model, const std::string& name, double local_below,
                           double memory_above);

// | layer | head | beta | sigmoid(beta) | class | rows, then per layer "layer l: a local,
// b memory, c mixer; keeps a local head: yes/no", then how many layers keep one.
std::string gate_markdown(const GateAnalysis& a);
nlohmann::json gate_json(const GateAnalysis& a);
std::string gate_heatmap_svg(const GateAnalysis& a);

}  // namespace infini
