#include "plot/chart.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "plot/svg.h"

namespace infini {

std::string line_chart_svg(const LineChart& chart) {
  if (chart.series.empty()) throw Error("plot", "a line chart needs at least one series");
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  size_t longest_name = 0;
  for (const ChartSeries& s : chart.series) {
    if (s.x.empty() || s.x.size() != s.y.size())
      throw Error("plot", str("series '", s.name, "' has ", s.x.size(), " x and ", s.y.size(),
                              " y values"));
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (chart.log_x && s.x[i] <= 0))
        throw Error("plot", str("series '", s.name, "' has a point that cannot be drawn: (", s.x[i],
                                ", ", s.y[i], ")"));
      x_lo = std::min(x_lo, s.x[i]);
      x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]);
      y_hi = std::max(y_hi, s.y[i]);
    }
    longest_name = std::max(longest_name, s.name.size());
  }
  // axis ranges: linear axes end on ticks; the log axis spans the data
  if (chart.x_min < chart.x_max) {
    if (chart.log_x && chart.x_min <= 0)
      throw Error("plot", str("a log x axis cannot start at ", chart.x_min));
    x_lo = chart.x_min;
    x_hi = chart.x_max;
  } else if (chart.log_x) {
    if (x_hi <= x_lo) x_lo /= 2, x_hi *= 2;
  } else {
    if (x_hi <= x_lo) x_lo -= 1, x_hi += 1;
    nice_range(x_lo, x_hi, 8);
  }
  const double y_pad = y_hi > y_lo ? 0.05 * (y_hi - y_lo) : std::max(0.5, 0.05 * std::fabs(y_lo));
  y_lo -= y_pad;
  y_hi += y_pad;
  nice_range(y_lo, y_hi, 6);

  // layout (px): title on top, y axis title and labels to the left, legend to the right
  const double left = 84, top = chart.subtitle.empty() ? 52 : 70, plot_w = 560, plot_h = 360;
  const double legend_w = std::max(120.0, 6.2 * double(longest_name) + 52);
  const double width = left + plot_w + 24 + legend_w + 12, height = top + plot_h + 64;
  Svg svg = svg_create(width, height);
  auto px = [&](double x) {
    const double f =
        chart.log_x ? std::log(x / x_lo) / std::log(x_hi / x_lo) : (x - x_lo) / (x_hi - x_lo);
    return left + f * plot_w;
  };
  auto py = [&](double y) { return top + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h; };

  // grid and ticks
  TextStyle tick_style;
  tick_style.size = 11;
  tick_style.fill = "#444444";
  const std::vector<double> x_ticks =
      chart.log_x ? log_ticks(x_lo, x_hi) : nice_ticks(x_lo, x_hi, 8);
  const double x_step = chart.log_x ? 0 : nice_step(x_lo, x_hi, 8);
  for (const double x : x_ticks) {
    svg_line(svg, px(x), top, px(x), top + plot_h, "#e4e4e4");
    svg_line(svg, px(x), top + plot_h, px(x), top + plot_h + 5, "#444444");
    TextStyle s = tick_style;
    s.anchor = "middle";
    svg_text(svg, px(x), top + plot_h + 18, tick_label(x, chart.log_x ? x : x_step), s);
  }
  const double y_step = nice_step(y_lo, y_hi, 6);
  for (const double y : nice_ticks(y_lo, y_hi, 6)) {
    svg_line(svg, left, py(y), left + plot_w, py(y), "#e4e4e4");
    svg_line(svg, left - 5, py(y), left, py(y), "#444444");
    TextStyle s = tick_style;
    s.anchor = "end";
    s.baseline = "middle";
    svg_text(svg, left - 8, py(y), tick_label(y, y_step), s);
  }
  svg_rect(svg, left, top, plot_w, plot_h, "none", "#444444", 1);

  // the lines
  for (size_t i = 0; i < chart.series.size(); ++i) {
    const ChartSeries& s = chart.series[i];
    std::vector<double> x(s.x.size()), y(s.y.size());
    for (size_t k = 0; k < s.x.size(); ++k) x[k] = px(s.x[k]), y[k] = py(s.y[k]);
    const std::string colour = rgb_hex(series_colour(int64_t(i)));
    svg_polyline(svg, x, y, colour, 2);
    if (x.size() <= 40)  // few points: mark them (a single point would not show otherwise)
      for (size_t k = 0; k < x.size(); ++k) svg_circle(svg, x[k], y[k], 3, colour);
  }

  // titles
  TextStyle title;
  title.size = 16;
  title.weight = "bold";
  title.anchor = "middle";
  svg_text(svg, left + plot_w / 2, 28, chart.title, title);
  if (!chart.subtitle.empty()) {
    TextStyle sub;
    sub.size = 12;
    sub.anchor = "middle";
    sub.fill = "#555555";
    svg_text(svg, left + plot_w / 2, 48, chart.subtitle, sub);
  }
  TextStyle axis;
  axis.size = 13;
  axis.anchor = "middle";
  svg_text(svg, left + plot_w / 2, top + plot_h + 44, chart.x_title, axis);
  axis.rotate = -90;
  svg_text(svg, 22, top + plot_h / 2, chart.y_title, axis);

  // legend
  const double lx = left + plot_w + 24, ly = top;
  const double lh = 22 * double(chart.series.size()) + 12;
  svg_rect(svg, lx, ly, legend_w, lh, "#ffffff", "#bbbbbb", 1);
  for (size_t i = 0; i < chart.series.size(); ++i) {
    const double y = ly + 17 + 22 * double(i);
    svg_line(svg, lx + 8, y, lx + 32, y, rgb_hex(series_colour(int64_t(i))), 3);
    TextStyle s;
    s.size = 12;
    s.baseline = "middle";
    svg_text(svg, lx + 40, y, chart.series[i].name, s);
  }
  return svg_document(svg);
}

}  // namespace infini
