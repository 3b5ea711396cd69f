// train/cairo.h: the few calls of cairo (the 2D graphics library: anti-aliased paths, real fonts,
// PNG, SVG and PDF surfaces) that the charts need, loaded at run time with dlopen from
// libcairo.so.2 (Debian's libcairo2). Nothing links against cairo, so the program runs where it is
// missing (the GPU machine has no package manager): the charts are then skipped, saying why.
//
// A Canvas is one drawing in pixels (origin top left, y down) onto a PNG, SVG or PDF surface of
// width x height; the same drawing code makes all three. Text is DejaVu Sans (fontconfig picks a
// substitute when it is not installed).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mg::train {

enum class ImageFormat { png, svg, pdf };
std::string_view image_format_extension(ImageFormat f); // "png", "svg", "pdf"

// Whether cairo could be loaded; if not, why (for "plots: skipped (...)").
bool cairo_available();
std::string cairo_unavailable_reason();

struct Color {
    double r = 0, g = 0, b = 0; // 0..1
};

enum class Anchor { left, center, right };

class Canvas {
public:
    // Throws mg::Error (naming cairo_unavailable_reason()) when cairo is missing.
    Canvas(ImageFormat format, int width, int height);
    ~Canvas();
    Canvas(const Canvas&) = delete;
    Canvas& operator=(const Canvas&) = delete;

    void fill_rect(double x, double y, double w, double h, Color c);
    void stroke_rect(double x, double y, double w, double h, Color c, double line_width = 1);
    void line(double x0, double y0, double x1, double y1, Color c, double line_width = 1);
    void polyline(const std::vector<std::pair<double, double>>& pts, Color c, double line_width = 2);
    // Text with its baseline at y, anchored at x; `angle` in radians (-pi/2: reading upwards).
    void text(double x, double y, std::string_view s, double size, Color c, Anchor a = Anchor::left, bool bold = false,
              double angle = 0);
    double text_width(std::string_view s, double size, bool bold = false);
    void clip_rect(double x, double y, double w, double h); // until unclip()
    void unclip();

    // The finished file's bytes (PNG compressed by cairo; SVG; PDF). Call once, last.
    std::string finish();
    // PNG canvases only: the pixels so far as RGB8 rows (for tests), before finish().
    std::vector<uint8_t> rgb_pixels();

    int width, height;

private:
    ImageFormat format_;
    void* surface_ = nullptr;
    void* cr_ = nullptr;
    std::string bytes_; // what a vector surface has written so far
};

} // namespace mg::train
