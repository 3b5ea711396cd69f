// train/plot.cpp: see train/plot.h.
#include "train/plot.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "tensor/json.h"
#include "data/atomic_file.h"
#include "tensor/check.h"

namespace mg::train {

// ---- image -----------------------------------------------------------------------------------------

Image::Image(int w, int h, Rgb background) : width(w), height(h), rgb(size_t(w) * size_t(h) * 3) {
    MG_CHECK(w > 0 && h > 0, "plot: image size {}x{}, expected positive sizes", w, h);
    for (size_t i = 0; i < rgb.size(); i += 3) {
        rgb[i] = background.r;
        rgb[i + 1] = background.g;
        rgb[i + 2] = background.b;
    }
}

Rgb Image::at(int x, int y) const {
    MG_CHECK(x >= 0 && y >= 0 && x < width && y < height, "plot: pixel ({}, {}) is outside the {}x{} image", x, y,
             width, height);
    const size_t i = (size_t(y) * size_t(width) + size_t(x)) * 3;
    return {rgb[i], rgb[i + 1], rgb[i + 2]};
}

void Image::set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const size_t i = (size_t(y) * size_t(width) + size_t(x)) * 3;
    rgb[i] = c.r;
    rgb[i + 1] = c.g;
    rgb[i + 2] = c.b;
}

// ---- PNG ---------------------------------------------------------------------------------------------

uint32_t crc32(std::string_view bytes) {
    static const std::array<uint32_t, 256> table = [] {
        std::array<uint32_t, 256> t{};
        for (uint32_t n = 0; n < 256; ++n) {
            uint32_t c = n;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }();
    uint32_t c = 0xFFFFFFFFu;
    for (unsigned char b : bytes) c = table[(c ^ b) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t adler32(std::string_view bytes) {
    uint32_t a = 1, b = 0;
    for (unsigned char x : bytes) {
        a = (a + x) % 65521;
        b = (b + a) % 65521;
    }
    return (b << 16) | a;
}

namespace {

void put_be32(std::string& out, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out += char((v >> s) & 0xFF);
}

void put_chunk(std::string& out, const char type[5], std::string_view data) {
    put_be32(out, uint32_t(data.size()));
    std::string body = std::string(type, 4) + std::string(data);
    out += body;
    put_be32(out, crc32(body));
}

} // namespace

std::string zlib_stored(std::string_view raw) {
    std::string out = {char(0x78), char(0x01)}; // deflate, 32 KiB window, no dictionary, (78 01) % 31 == 0
    size_t at = 0;
    do {
        const size_t n = std::min<size_t>(65535, raw.size() - at);
        const bool final = at + n == raw.size();
        out += char(final ? 1 : 0); // BFINAL, BTYPE 00 (stored)
        out += char(n & 0xFF);
        out += char(n >> 8);
        out += char(~n & 0xFF);
        out += char((~n >> 8) & 0xFF);
        out.append(raw.substr(at, n));
        at += n;
    } while (at < raw.size());
    put_be32(out, adler32(raw));
    return out;
}

std::string encode_png(const Image& img) {
    std::string raw;
    raw.reserve(size_t(img.height) * (1 + size_t(img.width) * 3));
    for (int y = 0; y < img.height; ++y) {
        raw += char(0); // filter: none
        raw.append(reinterpret_cast<const char*>(img.rgb.data()) + size_t(y) * size_t(img.width) * 3,
                   size_t(img.width) * 3);
    }
    std::string png = "\x89PNG\r\n\x1a\n";
    std::string ihdr;
    put_be32(ihdr, uint32_t(img.width));
    put_be32(ihdr, uint32_t(img.height));
    ihdr += std::string{char(8), char(2), char(0), char(0), char(0)}; // 8 bits, RGB, deflate, filter 0, no interlace
    put_chunk(png, "IHDR", ihdr);
    put_chunk(png, "IDAT", zlib_stored(raw));
    put_chunk(png, "IEND", "");
    return png;
}

// ---- font: 5x7 glyphs, '#' = ink; upper case is drawn as lower case, unknown characters as '?' ---------

namespace {

struct Glyph {
    char c;
    const char* rows[7];
};

constexpr Glyph kFont[] = {
    {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
    {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
    {'3', {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}},
    {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
    {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
    {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
    {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
    {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
    {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
    {'a', {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"}},
    {'b', {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."}},
    {'c', {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."}},
    {'d', {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"}},
    {'e', {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."}},
    {'f', {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."}},
    {'g', {".....", ".####", "#...#", "#...#", ".####", "....#", ".###."}},
    {'h', {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"}},
    {'i', {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."}},
    {'j', {"...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."}},
    {'k', {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."}},
    {'l', {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'m', {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"}},
    {'n', {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"}},
    {'o', {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."}},
    {'p', {".....", ".....", "####.", "#...#", "####.", "#....", "#...."}},
    {'q', {".....", ".....", ".####", "#...#", ".####", "....#", "....#"}},
    {'r', {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."}},
    {'s', {".....", ".....", ".###.", "#....", ".###.", "....#", "####."}},
    {'t', {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."}},
    {'u', {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"}},
    {'v', {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
    {'w', {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."}},
    {'x', {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"}},
    {'y', {".....", ".....", "#...#", "#...#", ".####", "....#", ".###."}},
    {'z', {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"}},
    {' ', {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
    {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
    {',', {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}},
    {'-', {".....", ".....", ".....", "#####", ".....", ".....", "....."}},
    {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
    {'%', {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}},
    {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
    {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
    {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
    {'/', {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}},
    {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
    {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
    {'?', {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}},
};

const Glyph& glyph(char c) {
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    for (const Glyph& g : kFont)
        if (g.c == c) return g;
    return kFont[std::size(kFont) - 1]; // '?'
}

constexpr int kGlyphW = 5, kGlyphH = 7, kAdvance = 6;

int text_width(std::string_view s, int scale = 1) { return int(s.size()) * kAdvance * scale; }

// Draws `s` with its top-left corner at (x, y).
void draw_text(Image& img, int x, int y, std::string_view s, Rgb c, int scale = 1) {
    for (char ch : s) {
        const Glyph& g = glyph(ch);
        for (int r = 0; r < kGlyphH; ++r)
            for (int col = 0; col < kGlyphW; ++col)
                if (g.rows[r][col] == '#')
                    for (int dy = 0; dy < scale; ++dy)
                        for (int dx = 0; dx < scale; ++dx) img.set(x + col * scale + dx, y + r * scale + dy, c);
        x += kAdvance * scale;
    }
}

// ---- axes ----------------------------------------------------------------------------------------------

// A "nice" step (1, 2 or 5 times a power of ten) giving about `target` intervals over `range`.
double nice_step(double range, int target) {
    const double raw = range / target, p = std::pow(10.0, std::floor(std::log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

// [lo, hi] widened to whole steps, with the ticks.
void nice_range(double lo, double hi, double& a, double& b, std::vector<double>& ticks) {
    if (!(hi > lo)) { // empty or one value
        const double pad = std::max(1.0, std::abs(lo) * 0.5);
        lo -= pad;
        hi += pad;
    }
    const double step = nice_step(hi - lo, 5);
    a = std::floor(lo / step + 1e-9) * step;
    b = std::ceil(hi / step - 1e-9) * step;
    ticks.clear();
    for (int i = 0; a + i * step <= b + step * 1e-9; ++i) ticks.push_back(a + i * step);
}

std::string tick_label(double v, const std::vector<double>& ticks) {
    const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1.0;
    if (std::abs(v) < step * 1e-9) v = 0;
    if (std::max(std::abs(ticks.front()), std::abs(ticks.back())) >= 1e6) return fmt::format("{:.3g}", v);
    const int decimals = step >= 1 ? 0 : int(std::ceil(-std::log10(step) - 1e-9));
    return fmt::format("{:.{}f}", v, decimals);
}

constexpr Rgb kBlack{0, 0, 0}, kGrid{225, 225, 225}, kText{40, 40, 40};
constexpr int kLegendRowH = 12;

bool has_points(const Chart& c) {
    return std::any_of(c.series.begin(), c.series.end(), [](const Series& s) { return !s.points.empty(); });
}

bool show_markers(const Series& s) { return s.markers || s.points.size() == 1; }

// How many series the legend lists, given the height.
size_t legend_rows(const Chart& c, const ChartLayout& l) {
    const size_t fit = size_t(std::max(1, (l.bottom - l.top) / kLegendRowH));
    return std::min(c.series.size(), c.series.size() > fit ? fit - 1 : fit);
}

std::string hex(Rgb c) { return fmt::format("#{:02x}{:02x}{:02x}", c.r, c.g, c.b); }

std::string xml_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += c;
        }
    }
    return out;
}

} // namespace

const std::vector<Rgb>& plot_palette() {
    static const std::vector<Rgb> p = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                                       {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
    return p;
}

double ChartLayout::px(double x) const { return left + (x - x0) / (x1 - x0) * (right - left); }
double ChartLayout::py(double y) const { return bottom - (y - y0) / (y1 - y0) * (bottom - top); }

ChartLayout layout_chart(const Chart& chart, int width, int height) {
    MG_CHECK(width >= 200 && height >= 120, "plot: chart size {}x{}, expected at least 200x120", width, height);
    ChartLayout l;
    l.width = width;
    l.height = height;
    l.left = 64;
    l.top = 40;
    l.right = width - 1 - (chart.series.empty() ? 16 : 160);
    l.bottom = height - 1 - 40;
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (const Series& s : chart.series)
        for (const Point& p : s.points) {
            xlo = std::min(xlo, p.x);
            xhi = std::max(xhi, p.x);
            ylo = std::min(ylo, p.y);
            yhi = std::max(yhi, p.y);
        }
    if (!has_points(chart)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
    nice_range(xlo, xhi, l.x0, l.x1, l.x_ticks);
    if (chart.y_min < chart.y_max) ylo = chart.y_min, yhi = chart.y_max;
    nice_range(ylo, yhi, l.y0, l.y1, l.y_ticks);
    return l;
}

// ---- raster ---------------------------------------------------------------------------------------------

Image render_png_image(const Chart& chart, int width, int height) {
    const ChartLayout l = layout_chart(chart, width, height);
    Image img(width, height);
    auto inside = [&](int x, int y) { return x >= l.left && x <= l.right && y >= l.top && y <= l.bottom; };
    auto plot = [&](int x, int y, Rgb c) {
        if (inside(x, y)) img.set(x, y, c);
    };
    // grid, axes box, ticks and their labels
    for (double t : l.x_ticks) {
        const int x = int(std::lround(l.px(t)));
        for (int y = l.top; y <= l.bottom; ++y) img.set(x, y, kGrid);
        for (int y = l.bottom; y <= l.bottom + 4; ++y) img.set(x, y, kBlack);
        const std::string s = tick_label(t, l.x_ticks);
        draw_text(img, x - text_width(s) / 2, l.bottom + 7, s, kText);
    }
    for (double t : l.y_ticks) {
        const int y = int(std::lround(l.py(t)));
        for (int x = l.left; x <= l.right; ++x) img.set(x, y, kGrid);
        for (int x = l.left - 4; x <= l.left; ++x) img.set(x, y, kBlack);
        const std::string s = tick_label(t, l.y_ticks);
        draw_text(img, l.left - 7 - text_width(s), y - kGlyphH / 2, s, kText);
    }
    for (int x = l.left; x <= l.right; ++x) img.set(x, l.top, kBlack), img.set(x, l.bottom, kBlack);
    for (int y = l.top; y <= l.bottom; ++y) img.set(l.left, y, kBlack), img.set(l.right, y, kBlack);
    draw_text(img, (l.left + l.right - text_width(chart.title, 2)) / 2, 10, chart.title, kBlack, 2);
    draw_text(img, l.left - text_width(chart.y_label) / 2 < 2 ? 2 : l.left - text_width(chart.y_label) / 2, l.top - 12,
              chart.y_label, kText);
    draw_text(img, (l.left + l.right - text_width(chart.x_label)) / 2, l.bottom + 22, chart.x_label, kText);
    if (!has_points(chart)) draw_text(img, (l.left + l.right - text_width("no data", 2)) / 2, (l.top + l.bottom) / 2 - 7,
                                      "no data", kText, 2);

    // series: 2-pixel polylines (Bresenham), markers as 5x5 squares, clipped to the plot area
    for (const Series& s : chart.series) {
        for (size_t i = 1; i < s.points.size(); ++i) {
            int x0 = int(std::lround(l.px(s.points[i - 1].x))), y0 = int(std::lround(l.py(s.points[i - 1].y)));
            const int x1 = int(std::lround(l.px(s.points[i].x))), y1 = int(std::lround(l.py(s.points[i].y)));
            const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
            int err = dx + dy;
            while (true) {
                plot(x0, y0, s.color);
                plot(x0, y0 + 1, s.color);
                if (x0 == x1 && y0 == y1) break;
                const int e2 = 2 * err;
                if (e2 >= dy) err += dy, x0 += sx;
                if (e2 <= dx) err += dx, y0 += sy;
            }
        }
        if (show_markers(s))
            for (const Point& p : s.points) {
                const int cx = int(std::lround(l.px(p.x))), cy = int(std::lround(l.py(p.y)));
                for (int y = cy - 2; y <= cy + 2; ++y)
                    for (int x = cx - 2; x <= cx + 2; ++x) plot(x, y, s.color);
            }
    }
    // legend
    const size_t rows = legend_rows(chart, l);
    for (size_t i = 0; i < rows; ++i) {
        const int y = l.top + int(i) * kLegendRowH;
        for (int yy = y + 1; yy < y + 8; ++yy)
            for (int xx = l.right + 10; xx < l.right + 22; ++xx) img.set(xx, yy, chart.series[i].color);
        draw_text(img, l.right + 26, y + 1, chart.series[i].label, kText);
    }
    if (rows < chart.series.size())
        draw_text(img, l.right + 26, l.top + int(rows) * kLegendRowH + 1,
                  fmt::format("+{} more", chart.series.size() - rows), kText);
    return img;
}

// ---- SVG ------------------------------------------------------------------------------------------------

std::string render_svg(const Chart& chart, int width, int height) {
    const ChartLayout l = layout_chart(chart, width, height);
    std::string o;
    auto it = std::back_inserter(o);
    fmt::format_to(it, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fmt::format_to(it, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
                       "font-family=\"monospace\" font-size=\"11\">\n", width, height);
    fmt::format_to(it, "<rect width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>\n", width, height);
    fmt::format_to(it, "<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">{}</text>\n",
                   (l.left + l.right) / 2, xml_escape(chart.title));
    for (double t : l.x_ticks) {
        const double x = l.px(t);
        fmt::format_to(it, "<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"{3}\"/>\n", x, l.top,
                       l.bottom, hex(kGrid));
        fmt::format_to(it, "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x, l.bottom + 16,
                       tick_label(t, l.x_ticks));
    }
    for (double t : l.y_ticks) {
        const double y = l.py(t);
        fmt::format_to(it, "<line x1=\"{1}\" y1=\"{0:.1f}\" x2=\"{2}\" y2=\"{0:.1f}\" stroke=\"{3}\"/>\n", y, l.left,
                       l.right, hex(kGrid));
        fmt::format_to(it, "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", l.left - 7, y + 4,
                       tick_label(t, l.y_ticks));
    }
    fmt::format_to(it, "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#000000\"/>\n", l.left,
                   l.top, l.right - l.left, l.bottom - l.top);
    fmt::format_to(it, "<text x=\"{}\" y=\"{}\">{}</text>\n", 2, l.top - 8, xml_escape(chart.y_label));
    fmt::format_to(it, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (l.left + l.right) / 2,
                   l.bottom + 32, xml_escape(chart.x_label));
    if (!has_points(chart))
        fmt::format_to(it, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"16\">no data</text>\n",
                       (l.left + l.right) / 2, (l.top + l.bottom) / 2);
    fmt::format_to(it, "<clipPath id=\"plot\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/></clipPath>\n", l.left,
                   l.top, l.right - l.left, l.bottom - l.top);
    fmt::format_to(it, "<g clip-path=\"url(#plot)\">\n");
    for (const Series& s : chart.series) {
        if (s.points.size() > 1) {
            fmt::format_to(it, "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"", hex(s.color));
            for (size_t i = 0; i < s.points.size(); ++i)
                fmt::format_to(it, "{}{:.1f},{:.1f}", i ? " " : "", l.px(s.points[i].x), l.py(s.points[i].y));
            fmt::format_to(it, "\"><title>{}</title></polyline>\n", xml_escape(s.label));
        }
        if (show_markers(s))
            for (const Point& p : s.points)
                fmt::format_to(it, "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"5\" height=\"5\" fill=\"{}\"/>\n",
                               l.px(p.x) - 2.5, l.py(p.y) - 2.5, hex(s.color));
    }
    fmt::format_to(it, "</g>\n");
    const size_t rows = legend_rows(chart, l);
    for (size_t i = 0; i < rows; ++i) {
        const int y = l.top + int(i) * kLegendRowH;
        fmt::format_to(it, "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"7\" fill=\"{}\"/>\n", l.right + 10, y + 1,
                       hex(chart.series[i].color));
        fmt::format_to(it, "<text x=\"{}\" y=\"{}\">{}</text>\n", l.right + 26, y + 9, xml_escape(chart.series[i].label));
    }
    if (rows < chart.series.size())
        fmt::format_to(it, "<text x=\"{}\" y=\"{}\">+{} more</text>\n", l.right + 26, l.top + int(rows) * kLegendRowH + 9,
                       chart.series.size() - rows);
    o += "</svg>\n";
    return o;
}

// ---- a run's charts ---------------------------------------------------------------------------------------

std::vector<Chart> run_charts(const std::string& text, int64_t* skipped_lines) {
    using nlohmann::json;
    auto named = [](const char* label) {
        Series s;
        s.label = label;
        return s;
    };
    Series train_loss = named("train loss"), valid_loss = named("valid loss"), train_acc = named("train acc (tokens)"),
           valid_mean = named("valid mean");
    std::map<std::pair<int64_t, int64_t>, Series> cells; // (L, N) -> valid query accuracy
    std::map<std::string, Series> tests;                 // variant -> test query accuracy
    valid_loss.markers = valid_mean.markers = true;
    int64_t skipped = 0;
    auto num = [](const json& row, const char* key, double& out) {
        auto it = row.find(key);
        if (it == row.end() || !it->is_number()) return false;
        out = it->get<double>();
        return std::isfinite(out);
    };
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        const json row = parse_json_or_discard(line);
        if (row.is_discarded() || !row.is_object()) {
            ++skipped;
            continue;
        }
        double step, v;
        if (!num(row, "step", step)) continue;
        const std::string kind = json_string_at(row, "kind", "");
        if (kind == "train") {
            if (num(row, "loss", v)) train_loss.points.push_back({step, v});
            if (num(row, "acc", v)) train_acc.points.push_back({step, 100 * v});
        } else if (kind == "eval") {
            if (num(row, "loss", v)) valid_loss.points.push_back({step, v});
            if (num(row, "query_acc", v)) valid_mean.points.push_back({step, 100 * v});
            if (auto st = row.find("subtasks"); st != row.end() && st->is_array())
                for (const json& c : *st) {
                    if (!c.is_object() || !num(c, "query_acc", v)) continue;
                    const auto L_at = c.find("L"), N_at = c.find("N");
                    if (L_at == c.end() || N_at == c.end() || !L_at->is_number_integer() || !N_at->is_number_integer())
                        continue;
                    const int64_t L = L_at->get<int64_t>(), N = N_at->get<int64_t>();
                    Series& s = cells[{L, N}];
                    s.label = fmt::format("valid {}x{}", L, N);
                    s.points.push_back({step, 100 * v});
                }
        } else if (kind == "test") {
            if (num(row, "query_acc", v)) {
                const std::string variant = json_string_at(row, "variant", "?");
                Series& s = tests[variant];
                s.label = "test " + variant;
                s.markers = true;
                s.points.push_back({step, 100 * v});
            }
        }
    }
    if (skipped_lines) *skipped_lines = skipped;

    auto finish = [](Chart& c, std::vector<Series> all) {
        for (Series& s : all)
            if (!s.points.empty()) {
                s.color = plot_palette()[c.series.size() % plot_palette().size()];
                c.series.push_back(std::move(s));
            }
    };
    Chart loss;
    loss.title = "loss";
    loss.x_label = "step";
    loss.y_label = "cross-entropy";
    finish(loss, {train_loss, valid_loss});
    Chart acc;
    acc.title = "query accuracy";
    acc.x_label = "step";
    acc.y_label = "accuracy (%)";
    acc.y_min = 0;
    acc.y_max = 100;
    std::vector<Series> a = {valid_mean};
    for (auto& [k, s] : cells) a.push_back(s);
    for (auto& [k, s] : tests) a.push_back(s);
    a.push_back(train_acc);
    finish(acc, a);
    return {loss, acc};
}

RunPlots write_run_plots(const std::string& run_dir) {
    namespace fs = std::filesystem;
    MG_CHECK(fs::is_directory(run_dir), "plot: run directory '{}' does not exist", run_dir);
    const fs::path metrics = fs::path(run_dir) / "metrics.jsonl";
    MG_CHECK(fs::is_regular_file(metrics), "plot: '{}' does not exist (is '{}' a run directory of `mambagrad train`?)",
             metrics.string(), run_dir);
    std::ifstream in(metrics, std::ios::binary);
    MG_CHECK(in.good(), "plot: cannot read '{}'", metrics.string());
    std::stringstream ss;
    ss << in.rdbuf();
    RunPlots out;
    const std::string text = ss.str();
    out.rows = std::count(text.begin(), text.end(), '\n');
    const std::vector<Chart> charts = run_charts(text, &out.skipped_lines);
    const char* names[] = {"loss", "accuracy"};
    for (size_t i = 0; i < charts.size(); ++i) {
        const std::string base = (fs::path(run_dir) / names[i]).string();
        data::write_file_atomic(base + ".png", encode_png(render_png_image(charts[i])));
        data::write_file_atomic(base + ".svg", render_svg(charts[i]));
        out.files.push_back(base + ".png");
        out.files.push_back(base + ".svg");
    }
    return out;
}

} // namespace mg::train
