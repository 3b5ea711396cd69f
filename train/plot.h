// train/plot.h: charts of a run (loss and accuracy curves) and of an experiment (accuracy per
// (L, N) cell as a heatmap), drawn once through cairo (train/cairo.h: anti-aliased lines, real
// fonts) onto PNG (compressed), SVG and PDF surfaces alike. Where cairo is missing, writing them
// is skipped with the reason; nothing else depends on it.
//
// ---- The charts (write_run_plots) ----------------------------------------------------------------
//   loss.png / loss.svg          train loss vs step (metrics.jsonl "train" rows' "loss", the mean
//                                since the previous row) and the validation loss ("eval" rows)
//   accuracy.png / accuracy.svg  query accuracy (%) vs step: the validation mean and each subtask
//                                (LxN) from "eval" rows, the train rows' labelled-token accuracy, and
//                                the "test" rows (one point per variant, at the last step)
// Series with few points are drawn with markers, so a one-row log still shows its point; an empty
// log gives the axes and "no data". Lines that are not JSON objects (a run killed mid-write) are
// skipped and counted.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "train/cairo.h"

namespace mg::train {

struct Rgb {
    uint8_t r = 0, g = 0, b = 0;
    bool operator==(const Rgb&) const = default;
};

// ---- charts --------------------------------------------------------------------------------------
struct Point {
    double x = 0, y = 0;
};
struct Series {
    std::string label;
    std::vector<Point> points; // drawn in this order
    Rgb color;
    bool markers = false; // squares at the points (always for a one-point series)
};
struct Chart {
    std::string title, x_label, y_label;
    std::vector<Series> series;
    // Fixed y range when y_min < y_max (e.g. 0..100 for accuracy); otherwise from the data.
    double y_min = 0, y_max = 0;
};

// Where the plot area lies and how data map to pixels; the PNG and the SVG share it.
struct ChartLayout {
    int width = 0, height = 0;
    int left = 0, top = 0, right = 0, bottom = 0; // the plot area, pixels (right, bottom inclusive)
    double x0 = 0, x1 = 1, y0 = 0, y1 = 1;        // data range of the plot area (nice tick bounds)
    std::vector<double> x_ticks, y_ticks;
    double px(double x) const; // data x -> pixel column
    double py(double y) const; // data y -> pixel row
};
ChartLayout layout_chart(const Chart& chart, int width, int height);

// The chart as a file of the given format: one drawing, any surface.
std::string render_chart(const Chart& chart, ImageFormat format, int width = 640, int height = 400);
// The same drawing's pixels, RGB8 rows top to bottom (what the tests look at).
std::vector<uint8_t> chart_pixels(const Chart& chart, int width = 640, int height = 400);

// Accuracy per cell of a grid: columns (e.g. N) by rows (e.g. L), each cell coloured on a
// white-to-blue scale over [lo, hi] with its value written in it; NaN: no value (grey, "-").
struct Heatmap {
    std::string title, x_label, y_label;
    std::vector<std::string> columns, rows;
    std::vector<std::vector<double>> values; // [row][column]
    double lo = 0, hi = 100;
};
std::string render_heatmap(const Heatmap& map, ImageFormat format);
std::vector<uint8_t> heatmap_pixels(const Heatmap& map, int* width, int* height);
// Its pixel size: cells of 56 x 30 plus margins for the labels and the colour bar.
void heatmap_size(const Heatmap& map, int* width, int* height);

// The palette series are coloured from, in order.
const std::vector<Rgb>& plot_palette();

// ---- a run's plots -------------------------------------------------------------------------------
struct RunPlots {
    std::vector<std::string> files; // written, in the run directory
    int64_t rows = 0, skipped_lines = 0;
    std::string skipped; // why nothing was drawn (cairo missing), else empty
};
// The two charts of <run_dir>/metrics.jsonl (see above), built from its lines.
std::vector<Chart> run_charts(const std::string& metrics_jsonl_text, int64_t* skipped_lines = nullptr);
// Reads <run_dir>/metrics.jsonl and writes loss.{png,svg} and accuracy.{png,svg} there, each
// atomically. Throws mg::Error naming the file when the run directory or its metrics are missing;
// without cairo it writes nothing and says why in `skipped`.
RunPlots write_run_plots(const std::string& run_dir);

} // namespace mg::train
