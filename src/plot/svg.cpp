#include "plot/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>

#include "core/error.h"

namespace infini {

namespace {

// A coordinate: 2 decimals, trailing zeros dropped ("12.5", "3", never "-0").
std::string num(double v) {
  if (!std::isfinite(v)) v = 0;
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.2f", v);
  std::string s = buffer;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

// out += each piece, in order (also sidesteps GCC 12's false -Wrestrict on "literal" + string).
void append(std::string& out, std::initializer_list<std::string_view> pieces) {
  for (const std::string_view piece : pieces) out.append(piece);
}

double clamp01(double v) {
  return std::isfinite(v) ? std::min(1.0, std::max(0.0, v)) : 0;
}

}  // namespace

std::string rgb_hex(Rgb c) {
  char buffer[8];
  std::snprintf(buffer, sizeof buffer, "#%02x%02x%02x", int(std::lround(clamp01(c.r) * 255)),
                int(std::lround(clamp01(c.g) * 255)), int(std::lround(clamp01(c.b) * 255)));
  return buffer;
}

double rgb_luminance(Rgb c) {
  auto linear = [](double v) {
    v = clamp01(v);
    return v <= 0.04045 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * linear(c.r) + 0.7152 * linear(c.g) + 0.0722 * linear(c.b);
}

Rgb colour_scale(double t) {
  // viridis at t = 0, 1/8, ..., 1 (matplotlib's table, 8-bit)
  static const int anchors[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                    {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                    {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
  const double x = clamp01(t) * 8;
  const int i = std::min(7, int(x));
  const double f = x - i;
  auto mix = [&](int k) { return ((1 - f) * anchors[i][k] + f * anchors[i + 1][k]) / 255.0; };
  return {mix(0), mix(1), mix(2)};
}

Rgb series_colour(int64_t i) {
  static const int palette[10][3] = {
      {31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
      {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  const int* p = palette[((i % 10) + 10) % 10];
  return {p[0] / 255.0, p[1] / 255.0, p[2] / 255.0};
}

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20 && ch != '\t' && ch != '\n') break;
        out += ch;
    }
  }
  return out;
}

Svg svg_create(double width, double height) {
  INFINI_CHECK(width > 0 && height > 0, "an SVG of ", width, " x ", height);
  Svg svg;
  svg.width = width;
  svg.height = height;
  return svg;
}

void svg_rect(Svg& svg, double x, double y, double w, double h, const std::string& fill,
              const std::string& stroke, double stroke_width) {
  append(svg.body, {"<rect x=\"", num(x), "\" y=\"", num(y), "\" width=\"", num(w), "\" height=\"",
                    num(h), "\" fill=\"", xml_escape(fill), "\""});
  if (stroke != "none")
    append(svg.body,
           {" stroke=\"", xml_escape(stroke), "\" stroke-width=\"", num(stroke_width), "\""});
  svg.body += "/>\n";
}

void svg_line(Svg& svg, double x1, double y1, double x2, double y2, const std::string& stroke,
              double stroke_width, const std::string& dash) {
  append(svg.body,
         {"<line x1=\"", num(x1), "\" y1=\"", num(y1), "\" x2=\"", num(x2), "\" y2=\"", num(y2),
          "\" stroke=\"", xml_escape(stroke), "\" stroke-width=\"", num(stroke_width), "\""});
  if (!dash.empty()) append(svg.body, {" stroke-dasharray=\"", xml_escape(dash), "\""});
  svg.body += "/>\n";
}

void svg_polyline(Svg& svg, const std::vector<double>& x, const std::vector<double>& y,
                  const std::string& stroke, double stroke_width) {
  INFINI_CHECK(x.size() == y.size(), x.size(), " x values, ", y.size(), " y values");
  append(svg.body, {"<polyline fill=\"none\" stroke=\"", xml_escape(stroke), "\" stroke-width=\"",
                    num(stroke_width), "\" stroke-linejoin=\"round\" points=\""});
  for (size_t i = 0; i < x.size(); ++i) append(svg.body, {i ? " " : "", num(x[i]), ",", num(y[i])});
  svg.body += "\"/>\n";
}

void svg_circle(Svg& svg, double cx, double cy, double r, const std::string& fill) {
  append(svg.body, {"<circle cx=\"", num(cx), "\" cy=\"", num(cy), "\" r=\"", num(r), "\" fill=\"",
                    xml_escape(fill), "\"/>\n"});
}

void svg_text(Svg& svg, double x, double y, std::string_view text, const TextStyle& style) {
  append(svg.body, {"<text x=\"", num(x), "\" y=\"", num(y), "\" font-size=\"", num(style.size),
                    "\" text-anchor=\"", xml_escape(style.anchor), "\" fill=\"",
                    xml_escape(style.fill), "\""});
  if (style.weight != "normal")
    append(svg.body, {" font-weight=\"", xml_escape(style.weight), "\""});
  if (style.baseline != "auto")
    append(svg.body, {" dominant-baseline=\"", xml_escape(style.baseline), "\""});
  if (style.rotate != 0)
    append(svg.body, {" transform=\"rotate(", num(style.rotate), " ", num(x), " ", num(y), ")\""});
  append(svg.body, {">", xml_escape(text), "</text>\n"});
}

void svg_vertical_gradient(Svg& svg, const std::string& id, const std::vector<Rgb>& stops) {
  INFINI_CHECK(stops.size() >= 2, "a gradient needs 2 stops or more, got ", stops.size());
  append(svg.defs,
         {"<linearGradient id=\"", xml_escape(id), "\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">\n"});
  for (size_t i = 0; i < stops.size(); ++i)
    append(svg.defs, {"<stop offset=\"", num(100.0 * double(i) / double(stops.size() - 1)),
                      "%\" stop-color=\"", rgb_hex(stops[i]), "\"/>\n"});
  svg.defs += "</linearGradient>\n";
}

std::string svg_document(const Svg& svg) {
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  append(out, {"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", num(svg.width), "\" height=\"",
               num(svg.height), "\" viewBox=\"0 0 ", num(svg.width), " ", num(svg.height),
               "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"});
  if (!svg.defs.empty()) append(out, {"<defs>\n", svg.defs, "</defs>\n"});
  append(out, {"<rect x=\"0\" y=\"0\" width=\"", num(svg.width), "\" height=\"", num(svg.height),
               "\" fill=\"#ffffff\"/>\n"});
  out += svg.body;
  out += "</svg>\n";
  return out;
}

double nice_step(double lo, double hi, int target) {
  INFINI_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi, "axis range ", lo, " .. ", hi);
  const double rough = (hi - lo) / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(rough)));
  const double f = rough / magnitude;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * magnitude;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  const double step = nice_step(lo, hi, target), margin = 1e-9 * (hi - lo) / step;
  std::vector<double> ticks;
  for (double k = std::ceil(lo / step - margin); k <= std::floor(hi / step + margin); k += 1) {
    const double v = k * step;
    ticks.push_back(v == 0 ? 0.0 : v);  // no -0
  }
  return ticks;
}

void nice_range(double& lo, double& hi, int target) {
  const double step = nice_step(lo, hi, target), margin = 1e-9 * (hi - lo) / step;
  lo = std::floor(lo / step + margin) * step;
  hi = std::ceil(hi / step - margin) * step;
}

std::vector<double> log_ticks(double lo, double hi) {
  INFINI_CHECK(lo > 0 && lo < hi && std::isfinite(hi), "log axis range ", lo, " .. ", hi);
  const double margin = 1e-9;
  auto inside = [&](double v) { return v >= lo * (1 - margin) && v <= hi * (1 + margin); };
  std::vector<double> powers, ticks;
  for (int e = int(std::floor(std::log10(lo))); e <= int(std::ceil(std::log10(hi))); ++e)
    if (inside(std::pow(10.0, e))) powers.push_back(std::pow(10.0, e));
  ticks = powers;
  if (powers.size() < 3)
    for (int e = int(std::floor(std::log10(lo))); e <= int(std::ceil(std::log10(hi))); ++e)
      for (double m : {2.0, 5.0})
        if (inside(m * std::pow(10.0, e))) ticks.push_back(m * std::pow(10.0, e));
  std::sort(ticks.begin(), ticks.end());
  return ticks;
}

std::string tick_label(double value, double step) {
  int decimals = 0;
  step = std::fabs(step);
  while (decimals < 6 && step > 0) {
    const double scaled = step * std::pow(10.0, decimals);
    if (std::fabs(scaled - std::round(scaled)) < 1e-6 * std::max(1.0, scaled)) break;
    ++decimals;
  }
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  std::string s = buffer;
  if (s.find_first_not_of("-0.") == std::string::npos && s[0] == '-') s.erase(0, 1);  // "-0.0"
  return s;
}

}  // namespace infini
