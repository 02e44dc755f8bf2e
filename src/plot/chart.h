// A line chart on top of the SVG writer (svg.h): a framed plot area with grid lines, ticks and
// tick labels on both axes (x linear or log 10), axis titles, a title and a legend to the right
// naming each line in its colour. One <polyline> per series, in the order given.
#pragma once

#include <string>
#include <vector>

namespace infini {

struct ChartSeries {
  std::string name;       // the legend's text
  std::vector<double> x;  // > 0 on a log axis
  std::vector<double> y;  // same length as x, finite
};

struct LineChart {
  std::string title;
  std::string subtitle;  // a smaller line under the title (may be empty)
  std::string x_title, y_title;
  bool log_x = false;
  double x_min = 0, x_max = 0;      // the x axis' range when x_min < x_max (else from the data)
  std::vector<ChartSeries> series;  // at least one, each with at least one point
};

// The SVG document of the chart. Throws infini::Error on an empty chart or a point that cannot
// be drawn (non-finite, x <= 0 on a log axis).
std::string line_chart_svg(const LineChart& chart);

}  // namespace infini
