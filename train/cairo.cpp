// train/cairo.cpp: see cairo.h. The function types are cairo's C API (cairo.h, cairo-svg.h,
// cairo-pdf.h of cairo 1.16): opaque cairo_t and cairo_surface_t pointers, enums as int.
#include "train/cairo.h"

#include <dlfcn.h>

#include <cmath>
#include <cstring>
#include <type_traits>

#include "tensor/check.h"

namespace mg::train {

namespace {

using WriteFn = int (*)(void* closure, const unsigned char* data, unsigned int length);
struct TextExtents {
    double x_bearing, y_bearing, width, height, x_advance, y_advance;
};
constexpr int kFormatArgb32 = 0, kStatusSuccess = 0, kStatusWriteError = 11;

struct Api {
    void* (*image_surface_create)(int, int, int);
    void* (*svg_surface_create_for_stream)(WriteFn, void*, double, double);
    void* (*pdf_surface_create_for_stream)(WriteFn, void*, double, double);
    int (*surface_write_to_png_stream)(void*, WriteFn, void*);
    void (*surface_flush)(void*);
    void (*surface_finish)(void*);
    void (*surface_destroy)(void*);
    int (*surface_status)(void*);
    unsigned char* (*image_surface_get_data)(void*);
    int (*image_surface_get_stride)(void*);
    void* (*create)(void*);
    void (*destroy)(void*);
    int (*status)(void*);
    void (*save)(void*);
    void (*restore)(void*);
    void (*set_source_rgb)(void*, double, double, double);
    void (*set_line_width)(void*, double);
    void (*move_to)(void*, double, double);
    void (*line_to)(void*, double, double);
    void (*rectangle)(void*, double, double, double, double);
    void (*stroke)(void*);
    void (*fill)(void*);
    void (*paint)(void*);
    void (*clip)(void*);
    void (*reset_clip)(void*);
    void (*translate)(void*, double, double);
    void (*rotate)(void*, double);
    void (*select_font_face)(void*, const char*, int, int);
    void (*set_font_size)(void*, double);
    void (*show_text)(void*, const char*);
    void (*text_extents)(void*, const char*, TextExtents*);
};

struct Loaded {
    Api api{};
    std::string error; // empty when loaded
};

const Loaded& loaded() {
    static const Loaded l = [] {
        Loaded out;
        void* lib = dlopen("libcairo.so.2", RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            const char* e = dlerror();
            out.error = std::string("libcairo.so.2 could not be loaded: ") + (e ? e : "unknown error") +
                        " (Debian package libcairo2)";
            return out;
        }
        auto get = [&](auto& fn, const char* name) {
            fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
            if (!fn && out.error.empty()) out.error = std::string("libcairo.so.2 lacks ") + name;
        };
        Api& a = out.api;
        get(a.image_surface_create, "cairo_image_surface_create");
        get(a.svg_surface_create_for_stream, "cairo_svg_surface_create_for_stream");
        get(a.pdf_surface_create_for_stream, "cairo_pdf_surface_create_for_stream");
        get(a.surface_write_to_png_stream, "cairo_surface_write_to_png_stream");
        get(a.surface_flush, "cairo_surface_flush");
        get(a.surface_finish, "cairo_surface_finish");
        get(a.surface_destroy, "cairo_surface_destroy");
        get(a.surface_status, "cairo_surface_status");
        get(a.image_surface_get_data, "cairo_image_surface_get_data");
        get(a.image_surface_get_stride, "cairo_image_surface_get_stride");
        get(a.create, "cairo_create");
        get(a.destroy, "cairo_destroy");
        get(a.status, "cairo_status");
        get(a.save, "cairo_save");
        get(a.restore, "cairo_restore");
        get(a.set_source_rgb, "cairo_set_source_rgb");
        get(a.set_line_width, "cairo_set_line_width");
        get(a.move_to, "cairo_move_to");
        get(a.line_to, "cairo_line_to");
        get(a.rectangle, "cairo_rectangle");
        get(a.stroke, "cairo_stroke");
        get(a.fill, "cairo_fill");
        get(a.paint, "cairo_paint");
        get(a.clip, "cairo_clip");
        get(a.reset_clip, "cairo_reset_clip");
        get(a.translate, "cairo_translate");
        get(a.rotate, "cairo_rotate");
        get(a.select_font_face, "cairo_select_font_face");
        get(a.set_font_size, "cairo_set_font_size");
        get(a.show_text, "cairo_show_text");
        get(a.text_extents, "cairo_text_extents");
        return out;
    }();
    return l;
}

const Api& api() {
    MG_CHECK(cairo_available(), "plot: {}", cairo_unavailable_reason());
    return loaded().api;
}

int append_bytes(void* closure, const unsigned char* data, unsigned int length) {
    try {
        static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
        return kStatusSuccess;
    } catch (...) {
        return kStatusWriteError;
    }
}

} // namespace

std::string_view image_format_extension(ImageFormat f) {
    return f == ImageFormat::png ? "png" : f == ImageFormat::svg ? "svg" : "pdf";
}

bool cairo_available() { return loaded().error.empty(); }
std::string cairo_unavailable_reason() { return loaded().error; }

Canvas::Canvas(ImageFormat format, int w, int h) : width(w), height(h), format_(format) {
    const Api& a = api();
    if (format == ImageFormat::png) surface_ = a.image_surface_create(kFormatArgb32, w, h);
    else if (format == ImageFormat::svg) surface_ = a.svg_surface_create_for_stream(append_bytes, &bytes_, w, h);
    else surface_ = a.pdf_surface_create_for_stream(append_bytes, &bytes_, w, h);
    MG_CHECK(surface_ && a.surface_status(surface_) == kStatusSuccess, "plot: cairo could not make a {}x{} {} surface",
             w, h, image_format_extension(format));
    cr_ = a.create(surface_);
    a.set_source_rgb(cr_, 1, 1, 1); // white background
    a.paint(cr_);
}

Canvas::~Canvas() {
    if (!cairo_available()) return;
    const Api& a = loaded().api;
    if (cr_) a.destroy(cr_);
    if (surface_) a.surface_destroy(surface_);
}

void Canvas::fill_rect(double x, double y, double w, double h, Color c) {
    const Api& a = api();
    a.set_source_rgb(cr_, c.r, c.g, c.b);
    a.rectangle(cr_, x, y, w, h);
    a.fill(cr_);
}

void Canvas::stroke_rect(double x, double y, double w, double h, Color c, double lw) {
    const Api& a = api();
    a.set_source_rgb(cr_, c.r, c.g, c.b);
    a.set_line_width(cr_, lw);
    a.rectangle(cr_, x, y, w, h);
    a.stroke(cr_);
}

void Canvas::line(double x0, double y0, double x1, double y1, Color c, double lw) { polyline({{x0, y0}, {x1, y1}}, c, lw); }

void Canvas::polyline(const std::vector<std::pair<double, double>>& pts, Color c, double lw) {
    if (pts.size() < 2) return;
    const Api& a = api();
    a.set_source_rgb(cr_, c.r, c.g, c.b);
    a.set_line_width(cr_, lw);
    a.move_to(cr_, pts[0].first, pts[0].second);
    for (size_t i = 1; i < pts.size(); ++i) a.line_to(cr_, pts[i].first, pts[i].second);
    a.stroke(cr_);
}

double Canvas::text_width(std::string_view s, double size, bool bold) {
    const Api& a = api();
    a.select_font_face(cr_, "DejaVu Sans", 0, bold ? 1 : 0);
    a.set_font_size(cr_, size);
    TextExtents e{};
    const std::string str(s);
    a.text_extents(cr_, str.c_str(), &e);
    return e.x_advance;
}

void Canvas::text(double x, double y, std::string_view s, double size, Color c, Anchor anchor, bool bold, double angle) {
    const Api& a = api();
    const double w = text_width(s, size, bold);
    const double dx = anchor == Anchor::left ? 0 : anchor == Anchor::center ? -w / 2 : -w;
    a.save(cr_);
    a.translate(cr_, x, y);
    a.rotate(cr_, angle);
    a.set_source_rgb(cr_, c.r, c.g, c.b);
    a.move_to(cr_, dx, 0);
    const std::string str(s);
    a.show_text(cr_, str.c_str());
    a.restore(cr_);
}

void Canvas::clip_rect(double x, double y, double w, double h) {
    const Api& a = api();
    a.save(cr_);
    a.rectangle(cr_, x, y, w, h);
    a.clip(cr_);
}

void Canvas::unclip() { api().restore(cr_); }

std::vector<uint8_t> Canvas::rgb_pixels() {
    MG_CHECK(format_ == ImageFormat::png, "plot: rgb_pixels of a {} canvas", image_format_extension(format_));
    const Api& a = api();
    a.surface_flush(surface_);
    const unsigned char* data = a.image_surface_get_data(surface_);
    const int stride = a.image_surface_get_stride(surface_);
    std::vector<uint8_t> rgb(size_t(width) * size_t(height) * 3);
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x) {
            uint32_t px; // ARGB32, native endian; opaque here, so no un-premultiplying
            std::memcpy(&px, data + size_t(y) * size_t(stride) + size_t(x) * 4, 4);
            uint8_t* o = rgb.data() + (size_t(y) * size_t(width) + size_t(x)) * 3;
            o[0] = uint8_t(px >> 16), o[1] = uint8_t(px >> 8), o[2] = uint8_t(px);
        }
    return rgb;
}

std::string Canvas::finish() {
    const Api& a = api();
    MG_CHECK(a.status(cr_) == kStatusSuccess, "plot: cairo reported an error while drawing (status {})", a.status(cr_));
    if (format_ == ImageFormat::png) {
        std::string png;
        MG_CHECK(a.surface_write_to_png_stream(surface_, append_bytes, &png) == kStatusSuccess,
                 "plot: cairo could not encode the PNG");
        return png;
    }
    a.surface_finish(surface_); // flushes the SVG / PDF into bytes_
    MG_CHECK(a.surface_status(surface_) == kStatusSuccess, "plot: cairo could not write the {}",
             image_format_extension(format_));
    return bytes_;
}

} // namespace mg::train
