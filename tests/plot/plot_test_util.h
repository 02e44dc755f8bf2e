// Helpers of the `infini plot` tests: a tiny checkpoint written from configs/infini-tiny.json,
// text-like input, and a small checker of the SVG files (well-formed tags, the <text> elements
// with their positions, the polylines' points).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/random.h"
#include "io/atomic_file.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "test_support.h"

namespace infini::test {

inline ModelConfig tiny_config() {
  return config_load(std::string(INFINI_SOURCE_DIR) + "/configs/infini-tiny.json");
}

// A random model of `config` whose tied embeddings are scaled by `sharpen`: a fresh init predicts
// close to uniform (every NLL near ln 256); larger logits make per-token NLLs differ, so that a
// position mix-up shows in the numbers.
inline Model sharp_model(const ModelConfig& config, uint64_t seed, float sharpen = 30) {
  Model model = model_create(config);
  model_init_random(model, seed);
  const int64_t n = config.vocab_size * config.hidden_size;  // [V, D]
  for (int64_t i = 0; i < n; ++i) model.weights.embed[i] *= sharpen;
  return model;
}

// Text-like bytes: words from a small vocabulary, so the model sees repeats across segments.
inline std::string plot_text(int64_t bytes, uint64_t seed) {
  const char* words[] = {"the ", "memory ", "of ",   "a ",    "stream ", "keeps ", "what ",
                         "it ",  "read ",   "long ", "ago. ", "And ",    "then\n"};
  Rng rng(seed);
  std::string text;
  while (int64_t(text.size()) < bytes) text += words[rng.below(13)];
  text.resize(size_t(bytes));
  return text;
}

struct SvgText {
  double x = 0, y = 0;
  std::string content;  // as written (entities not decoded)
};

struct SvgSummary {
  bool well_formed = false;
  std::string problem;                                            // why not, when not
  std::map<std::string, int> tags;                                // element name -> count
  std::vector<SvgText> texts;                                     // every <text>, in order
  std::vector<std::vector<std::pair<double, double>>> polylines;  // points of each <polyline>
};

// The value of attribute `name` in a start tag's text ("" when absent).
inline std::string svg_attribute(const std::string& tag, const std::string& name) {
  const std::string key = " " + name + "=\"";
  const size_t at = tag.find(key);
  if (at == std::string::npos) return "";
  const size_t begin = at + key.size(), end = tag.find('"', begin);
  return end == std::string::npos ? "" : tag.substr(begin, end - begin);
}

// Checks the document: one XML declaration, then elements whose start and end tags balance, the
// root <svg> with width, height and viewBox, quoted attributes, text without raw '<' and with
// only the five XML entities after '&'.
inline SvgSummary svg_summary(const std::string& doc) {
  SvgSummary s;
  auto fail = [&](const std::string& why) {
    s.well_formed = false;
    s.problem = why;
    return s;
  };
  if (doc.rfind("<?xml ", 0) != 0) return fail("no XML declaration");
  size_t at = doc.find("?>");
  if (at == std::string::npos) return fail("unterminated declaration");
  at += 2;
  std::vector<std::string> open;
  bool root_seen = false;
  std::string pending_text;  // content of the <text> being read
  while (at < doc.size()) {
    const size_t lt = doc.find('<', at);
    const std::string between = doc.substr(at, (lt == std::string::npos ? doc.size() : lt) - at);
    for (size_t i = 0; i < between.size(); ++i) {
      if (between[i] == '>') return fail("raw '>' in text");
      if (between[i] == '&') {
        const size_t semi = between.find(';', i);
        const std::string entity = semi == std::string::npos ? "" : between.substr(i, semi - i + 1);
        if (entity != "&amp;" && entity != "&lt;" && entity != "&gt;" && entity != "&quot;" &&
            entity != "&apos;")
          return fail("bad entity in text: " + between.substr(i, 10));
      }
    }
    if (!open.empty() && open.back() == "text")
      pending_text += between;
    else if (between.find_first_not_of(" \n\t") != std::string::npos)
      return fail("text outside <text>: " + between.substr(0, 40));
    if (lt == std::string::npos) break;
    const size_t gt = doc.find('>', lt);
    if (gt == std::string::npos) return fail("unterminated tag");
    const std::string tag = doc.substr(lt, gt - lt + 1);
    if (std::count(tag.begin(), tag.end(), '"') % 2 != 0) return fail("unbalanced quotes: " + tag);
    if (tag.rfind("</", 0) == 0) {
      const std::string name = tag.substr(2, tag.size() - 3);
      if (open.empty() || open.back() != name) return fail("unexpected </" + name + ">");
      if (name == "text") s.texts.back().content = pending_text;
      open.pop_back();
    } else {
      const size_t name_end = tag.find_first_of(" />\n", 1);
      const std::string name = tag.substr(1, name_end - 1);
      if (name.empty()) return fail("empty tag name");
      if (open.empty() && root_seen) return fail("a second root element <" + name + ">");
      if (open.empty()) {
        if (name != "svg") return fail("root is <" + name + ">");
        root_seen = true;
        if (svg_attribute(tag, "width").empty() || svg_attribute(tag, "height").empty() ||
            svg_attribute(tag, "viewBox").empty())
          return fail("<svg> without width, height or viewBox");
      }
      s.tags[name] += 1;
      if (name == "text") {
        s.texts.push_back({std::atof(svg_attribute(tag, "x").c_str()),
                           std::atof(svg_attribute(tag, "y").c_str()), ""});
        pending_text.clear();
      }
      if (name == "polyline") {
        std::vector<std::pair<double, double>> points;
        std::istringstream in(svg_attribute(tag, "points"));
        std::string pair;
        while (in >> pair) {
          const size_t comma = pair.find(',');
          if (comma == std::string::npos) return fail("bad point " + pair);
          points.push_back({std::atof(pair.substr(0, comma).c_str()),
                            std::atof(pair.substr(comma + 1).c_str())});
        }
        s.polylines.push_back(points);
      }
      if (tag[tag.size() - 2] != '/') open.push_back(name);
    }
    at = gt + 1;
  }
  if (!root_seen) return fail("no <svg> element");
  if (!open.empty()) return fail("<" + open.back() + "> never closed");
  s.well_formed = true;
  return s;
}

// The <text> elements whose content is exactly `content`.
inline std::vector<SvgText> svg_texts(const SvgSummary& s, const std::string& content) {
  std::vector<SvgText> out;
  for (const SvgText& t : s.texts)
    if (t.content == content) out.push_back(t);
  return out;
}

inline bool svg_has_text(const SvgSummary& s, const std::string& content) {
  return !svg_texts(s, content).empty();
}

}  // namespace infini::test
