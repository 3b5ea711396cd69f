// train/plot.h: a run's loss and accuracy curves as images, with no plotting library: a small
// rasteriser (axes, ticks, polylines, markers, a built-in 5x7 bitmap font) written out as PNG, and
// the same chart as SVG (vector, readable as text).
//
// ---- PNG, as written here (RFC 2083 / ISO 15948) ------------------------------------------------
//   the 8-byte signature 89 50 4E 47 0D 0A 1A 0A, then chunks: length (4 bytes, big-endian), type
//   (4 ASCII letters), data, CRC-32 of type + data (the zlib/PNG polynomial 0xEDB88320, reflected).
//   IHDR  width, height (4 bytes each), bit depth 8, colour type 2 (RGB), compression 0, filter 0,
//         interlace 0
//   IDAT  a zlib stream (RFC 1950): header 78 01, then DEFLATE (RFC 1951) "stored" blocks (no
//         compression): per block a byte holding BFINAL (bit 0) and BTYPE 00, LEN and ~LEN (2 bytes
//         each, little-endian), LEN raw bytes (at most 65535); then the Adler-32 of the raw data,
//         big-endian. The raw data are the rows top to bottom, each a filter byte 0 and RGB
//         triples.
//   IEND  empty.
// Stored blocks keep the writer short and obviously right; a 640x400 chart is ~770 KB.
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

namespace mg::train {

// ---- the raster and its PNG -----------------------------------------------------------------------
struct Rgb {
    uint8_t r = 0, g = 0, b = 0;
    bool operator==(const Rgb&) const = default;
};

struct Image {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb; // row-major, 3 bytes per pixel
    Image(int w, int h, Rgb background = {255, 255, 255});
    Rgb at(int x, int y) const;
    void set(int x, int y, Rgb c); // ignores pixels outside the image
};

uint32_t crc32(std::string_view bytes);   // PNG's CRC (also zlib's crc32)
uint32_t adler32(std::string_view bytes); // zlib's checksum
// A zlib stream of `raw` in stored (uncompressed) DEFLATE blocks of at most 65535 bytes.
std::string zlib_stored(std::string_view raw);
// The image as PNG bytes (RGB8, no interlace, filter 0 on every row).
std::string encode_png(const Image& img);

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

Image render_png_image(const Chart& chart, int width = 640, int height = 400);
std::string render_svg(const Chart& chart, int width = 640, int height = 400);

// The palette series are coloured from, in order.
const std::vector<Rgb>& plot_palette();

// ---- a run's plots -------------------------------------------------------------------------------
struct RunPlots {
    std::vector<std::string> files; // written, in the run directory
    int64_t rows = 0, skipped_lines = 0;
};
// The two charts of <run_dir>/metrics.jsonl (see above), built from its lines.
std::vector<Chart> run_charts(const std::string& metrics_jsonl_text, int64_t* skipped_lines = nullptr);
// Reads <run_dir>/metrics.jsonl and writes loss.{png,svg} and accuracy.{png,svg} there, each
// atomically. Throws mg::Error naming the file when the run directory or its metrics are missing.
RunPlots write_run_plots(const std::string& run_dir);

} // namespace mg::train
