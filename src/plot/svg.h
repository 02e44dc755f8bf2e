// A small SVG writer for the figures of `infini plot` (no plotting library): shapes and text
// appended to a document string, plus what every chart needs around them: "nice" axis ticks
// (steps of 1, 2 or 5 times a power of ten), tick labels, a perceptually uniform colour scale
// (viridis, for heatmaps) and a categorical palette (one colour per line of a line chart).
//
// Coordinates are SVG user units (pixels), y pointing down. Every text is XML-escaped; numbers
// are written with a fixed precision so that the same figure always gives the same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace infini {

struct Rgb {
  double r = 0, g = 0, b = 0;  // each in [0, 1]
};

// "#rrggbb".
std::string rgb_hex(Rgb c);
// Relative luminance in [0, 1] (sRGB weights), to choose black or white text on a fill.
double rgb_luminance(Rgb c);
// Viridis at t in [0, 1] (clamped): dark purple at 0, green at 0.5, yellow at 1; linear
// interpolation between 9 anchors of the matplotlib table.
Rgb colour_scale(double t);
// The i-th colour of a 10-colour categorical palette (Tableau 10), cycling.
Rgb series_colour(int64_t i);

// &, <, >, " and ' as entities; bytes below 0x20 other than tab and newline dropped (not allowed
// in XML 1.0).
std::string xml_escape(std::string_view text);

struct TextStyle {
  double size = 12;              // font size (px)
  std::string anchor = "start";  // start | middle | end
  std::string fill = "#222222";
  std::string weight = "normal";  // normal | bold
  double rotate = 0;              // degrees, around the text's anchor point
  std::string baseline = "auto";  // auto | middle | hanging (dominant-baseline)
};

struct Svg {
  double width = 0, height = 0;
  std::string defs;  // inside <defs> (gradients)
  std::string body;  // the shapes, in drawing order
};

Svg svg_create(double width, double height);
void svg_rect(Svg& svg, double x, double y, double w, double h, const std::string& fill,
              const std::string& stroke = "none", double stroke_width = 1);
void svg_line(Svg& svg, double x1, double y1, double x2, double y2, const std::string& stroke,
              double stroke_width = 1, const std::string& dash = "");
// One <polyline> through the points (x[i], y[i]).
void svg_polyline(Svg& svg, const std::vector<double>& x, const std::vector<double>& y,
                  const std::string& stroke, double stroke_width = 2);
void svg_circle(Svg& svg, double cx, double cy, double r, const std::string& fill);
void svg_text(Svg& svg, double x, double y, std::string_view text, const TextStyle& style = {});
// A vertical linear gradient `id` (to fill a rect with "url(#id)"): stops[i] at offset
// i / (stops.size() - 1) from the BOTTOM (stops[0]) to the top.
void svg_vertical_gradient(Svg& svg, const std::string& id, const std::vector<Rgb>& stops);
// The whole document: XML declaration, <svg> with width/height/viewBox, a white background,
// <defs>, the body.
std::string svg_document(const Svg& svg);

// Axis ticks between lo and hi (lo < hi): multiples of a step of 1, 2 or 5 x 10^k chosen so that
// about `target` ticks fall inside [lo, hi]; every returned tick lies in [lo, hi] (within a
// rounding margin of 1e-9 of the range).
std::vector<double> nice_ticks(double lo, double hi, int target = 6);
// The step nice_ticks uses.
double nice_step(double lo, double hi, int target = 6);
// lo and hi widened outwards to multiples of nice_step (an axis range that ends on ticks).
void nice_range(double& lo, double& hi, int target = 6);
// Ticks of a log-10 axis over [lo, hi] (0 < lo < hi): the powers of ten inside, plus 2 and 5
// times them when fewer than 3 powers fall inside.
std::vector<double> log_ticks(double lo, double hi);
// A tick value as text with as many decimals as `step` needs (step 0.25 -> "0.75", step 5 ->
// "15"); never "-0".
std::string tick_label(double value, double step);

}  // namespace infini
