#include "plot/gates.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "plot/svg.h"

namespace infini {

namespace {

std::string fixed(double v, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, v);
  return buffer;
}

}  // namespace

const char* gate_class_name(GateClass c) {
  switch (c) {
    case GateClass::local:
      return "local";
    case GateClass::memory:
      return "memory";
    case GateClass::mixer:
      return "mixer";
  }
  return "mixer";
}

char gate_class_letter(GateClass c) {
  switch (c) {
    case GateClass::local:
      return 'L';
    case GateClass::memory:
      return 'M';
    case GateClass::mixer:
      return 'X';
  }
  return 'X';
}

double gate_sigmoid(double beta) {
  if (beta >= 0) return 1 / (1 + std::exp(-beta));
  const double e = std::exp(beta);
  return e / (1 + e);
}

GateClass gate_classify(double gate, double local_below, double memory_above) {
  if (gate < local_below) return GateClass::local;
  if (gate > memory_above) return GateClass::memory;
  return GateClass::mixer;
}

void gate_thresholds_check(double local_below, double memory_above) {
  const std::string hint = "give 0 <= --local-below <= --memory-above <= 1, e.g. 0.25 and 0.75";
  if (!(local_below >= 0 && local_below <= 1))
    throw Error("--local-below", str("is ", local_below, ", outside [0, 1]"), hint);
  if (!(memory_above >= 0 && memory_above <= 1))
    throw Error("--memory-above", str("is ", memory_above, ", outside [0, 1]"), hint);
  if (local_below > memory_above)
    throw Error("--local-below",
                str("is ", local_below, ", above --memory-above (", memory_above, ")"), hint);
}

GateAnalysis gate_analysis(const Model& model, const std::string& name, double local_below,
                           double memory_above) {
  gate_thresholds_check(local_below, memory_above);
  const ModelConfig& c = model.config;
  if (c.attention.type != "infini")
    throw Error(name,
                "is a '" + c.attention.type +
                    "' model: it has no memory gates (only Infini-attention mixes a compressive "
                    "memory and local attention through sigmoid(beta))",
                "give a checkpoint whose config.json has \"attention\": {\"type\": \"infini\"}");
  GateAnalysis a;
  a.model = name;
  a.layers = c.num_hidden_layers;
  a.heads = c.num_attention_heads;
  a.local_below = local_below;
  a.memory_above = memory_above;
  for (int64_t l = 0; l < a.layers; ++l) {
    const float* beta = model.weights.layers[size_t(l)].memory_gate;  // [H]
    INFINI_CHECK(beta != nullptr, "layer ", l, " of an infini model has no memory_gate");
    GateLayer summary;
    summary.layer = l;
    for (int64_t h = 0; h < a.heads; ++h) {
      GateHead g;
      g.layer = l;
      g.head = h;
      g.beta = double(beta[h]);
      if (!std::isfinite(g.beta))
        throw Error(name, str("model.layers.", l, ".self_attn.memory_gate[", h, "] is ", g.beta),
                    "the checkpoint is damaged (a diverged training run?)");
      g.gate = gate_sigmoid(g.beta);
      g.type = gate_classify(g.gate, local_below, memory_above);
      (g.type == GateClass::local    ? summary.local
       : g.type == GateClass::memory ? summary.memory
                                     : summary.mixer) += 1;
      a.gates.push_back(g);
    }
    summary.keeps_local = summary.local > 0;
    a.layer.push_back(summary);
  }
  return a;
}

std::string gate_markdown(const GateAnalysis& a) {
  std::string out = "memory gates of " + a.model + ": local if sigmoid(beta) < " +
                    fixed(a.local_below, 2) + ", memory if > " + fixed(a.memory_above, 2) +
                    ", mixer otherwise\n\n";
  out += "| layer | head | beta | sigmoid(beta) | class |\n";
  out += "|---:|---:|---:|---:|:---|\n";
  for (const GateHead& g : a.gates)
    out += str("| ", g.layer, " | ", g.head, " | ", fixed(g.beta, 4), " | ", fixed(g.gate, 4),
               " | ", gate_class_name(g.type), " |\n");
  out += "\n";
  int64_t keeping = 0;
  for (const GateLayer& l : a.layer) {
    keeping += l.keeps_local;
    out += str("layer ", l.layer, ": ", l.local, " local, ", l.memory, " memory, ", l.mixer,
               " mixer; keeps a local head: ", l.keeps_local ? "yes" : "no", "\n");
  }
  out += str(keeping, " of ", a.layers, " layers keep at least one local head",
             keeping == a.layers ? " (as the paper observed)" : "", "\n");
  return out;
}

nlohmann::json gate_json(const GateAnalysis& a) {
  nlohmann::json heads = nlohmann::json::array(), layers = nlohmann::json::array();
  for (const GateHead& g : a.gates)
    heads.push_back({{"layer", g.layer},
                     {"head", g.head},
                     {"beta", g.beta},
                     {"sigmoid_beta", g.gate},
                     {"class", gate_class_name(g.type)}});
  int64_t keeping = 0;
  for (const GateLayer& l : a.layer) {
    keeping += l.keeps_local;
    layers.push_back({{"layer", l.layer},
                      {"local", l.local},
                      {"memory", l.memory},
                      {"mixer", l.mixer},
                      {"keeps_local_head", l.keeps_local}});
  }
  return {{"model", a.model},
          {"layers", a.layers},
          {"heads", a.heads},
          {"local_below", a.local_below},
          {"memory_above", a.memory_above},
          {"gates", heads},
          {"per_layer", layers},
          {"layers_keeping_local_head", keeping}};
}

std::string gate_heatmap_svg(const GateAnalysis& a) {
  const double cell_w = 64, cell_h = 44, gx = 92, gy = 90;
  const double grid_w = cell_w * double(a.heads), grid_h = cell_h * double(a.layers);
  const double bar_x = gx + grid_w + 36, bar_w = 18, bar_h = std::max(grid_h, 176.0);
  const std::string subtitle = a.model + ": 0 = local attention only, 1 = compressive memory " +
                               "only (L < " + fixed(a.local_below, 2) + " < X < " +
                               fixed(a.memory_above, 2) + " < M)";
  const double width = std::max({bar_x + bar_w + 150, 560.0, 40 + 6.8 * double(subtitle.size())});
  const double height = gy + std::max(grid_h + 40, bar_h) + 48;
  Svg svg = svg_create(width, height);

  TextStyle title;
  title.size = 16;
  title.weight = "bold";
  svg_text(svg, 16, 28, "Memory gates sigmoid(beta) per layer and head", title);
  TextStyle sub;
  sub.size = 12;
  sub.fill = "#555555";
  svg_text(svg, 16, 48, subtitle, sub);

  // the cells
  for (const GateHead& g : a.gates) {
    const double x = gx + cell_w * double(g.head), y = gy + cell_h * double(g.layer);
    const Rgb fill = colour_scale(g.gate);
    svg_rect(svg, x, y, cell_w, cell_h, rgb_hex(fill), "#ffffff", 1);
    TextStyle value;
    value.size = 13;
    value.anchor = "middle";
    value.fill = rgb_luminance(fill) > 0.3 ? "#000000" : "#ffffff";
    svg_text(svg, x + cell_w / 2, y + cell_h / 2 - 2, fixed(g.gate, 2), value);
    value.size = 11;
    value.weight = "bold";
    svg_text(svg, x + cell_w / 2, y + cell_h / 2 + 13, std::string(1, gate_class_letter(g.type)),
             value);
  }
  svg_rect(svg, gx, gy, grid_w, grid_h, "none", "#444444", 1);

  // axes: layers down the left (layer 0 at the top), heads along the bottom
  TextStyle tick;
  tick.size = 11;
  tick.fill = "#444444";
  tick.anchor = "end";
  tick.baseline = "middle";
  for (int64_t l = 0; l < a.layers; ++l)
    svg_text(svg, gx - 8, gy + cell_h * (double(l) + 0.5), std::to_string(l), tick);
  tick.anchor = "middle";
  tick.baseline = "auto";
  for (int64_t h = 0; h < a.heads; ++h)
    svg_text(svg, gx + cell_w * (double(h) + 0.5), gy + grid_h + 16, std::to_string(h), tick);
  TextStyle axis;
  axis.size = 13;
  axis.anchor = "middle";
  svg_text(svg, gx + grid_w / 2, gy + grid_h + 38, "head", axis);
  axis.rotate = -90;
  svg_text(svg, gx - 40, gy + grid_h / 2, "layer", axis);

  // colour bar: 0 (local only) at the bottom, 1 (memory only) at the top, thresholds dashed
  std::vector<Rgb> stops;
  for (int i = 0; i <= 16; ++i) stops.push_back(colour_scale(i / 16.0));
  svg_vertical_gradient(svg, "gate_scale", stops);
  svg_rect(svg, bar_x, gy, bar_w, bar_h, "url(#gate_scale)", "#444444", 1);
  auto bar_y = [&](double g) { return gy + (1 - g) * bar_h; };
  TextStyle label;
  label.size = 11;
  label.fill = "#444444";
  label.baseline = "middle";
  for (const double g : {0.0, 0.25, 0.5, 0.75, 1.0}) {
    svg_line(svg, bar_x + bar_w, bar_y(g), bar_x + bar_w + 4, bar_y(g), "#444444");
    std::string text = fixed(g, 2);
    if (g == 0) text += " local only";
    if (g == 1) text += " memory only";
    svg_text(svg, bar_x + bar_w + 7, bar_y(g), text, label);
  }
  for (const double g : {a.local_below, a.memory_above})
    svg_line(svg, bar_x - 4, bar_y(g), bar_x + bar_w, bar_y(g), "#d62728", 1.5, "3,2");
  TextStyle bar_title;
  bar_title.size = 12;
  bar_title.anchor = "middle";
  svg_text(svg, bar_x + bar_w / 2, gy - 12, "sigmoid(beta)", bar_title);

  // what the letters mean
  TextStyle key;
  key.size = 12;
  svg_text(svg, 16, height - 14,
           "L: local (< " + fixed(a.local_below, 2) + ");  X: mixer;  M: memory (> " +
               fixed(a.memory_above, 2) + ");  red dashes: the thresholds",
           key);
  return svg_document(svg);
}

}  // namespace infini
