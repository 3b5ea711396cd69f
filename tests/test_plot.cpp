// tests/test_plot.cpp: train/plot.h through cairo: a known line's pixels, the axes and legend, a
// one-point series, PNG (compressed, checked by a chunk walk here and by Python's zlib when
// python3 is there), SVG (well formed) and PDF from the same drawing, the heatmap, a run's
// charts from metrics.jsonl (empty, one row, a torn last line) and `mambagrad plot`.
#include <cstdlib>
#include <fstream>

#include "data/mqar.h"
#include "tests/helpers.h"
#include "train/plot.h"

using namespace mg;
using namespace mg::train;
using mg::test::require_one_error_line;
using mg::test::Run;
using mg::test::run_cli;
using mg::test::TempDir;

namespace {

uint32_t be32(const std::string& s, size_t at) {
    return uint32_t(uint8_t(s[at])) << 24 | uint32_t(uint8_t(s[at + 1])) << 16 | uint32_t(uint8_t(s[at + 2])) << 8 |
           uint32_t(uint8_t(s[at + 3]));
}

struct PngInfo {
    int width = 0, height = 0, color_type = -1;
    size_t idat_bytes = 0;
};

// Walks a PNG's chunks: signature, IHDR first, IEND last, lengths within the file.
PngInfo png_info(const std::string& png) {
    REQUIRE(png.size() > 8);
    REQUIRE(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
    PngInfo info;
    std::vector<std::string> types;
    for (size_t at = 8; at < png.size();) {
        REQUIRE(at + 12 <= png.size());
        const uint32_t len = be32(png, at);
        REQUIRE(at + 12 + len <= png.size());
        const std::string type = png.substr(at + 4, 4);
        types.push_back(type);
        if (type == "IHDR") {
            info.width = int(be32(png, at + 8));
            info.height = int(be32(png, at + 12));
            info.color_type = uint8_t(png[at + 8 + 9]);
        }
        if (type == "IDAT") info.idat_bytes += len;
        at += 12 + len;
    }
    CHECK(types.front() == "IHDR");
    CHECK(types.back() == "IEND");
    return info;
}

struct Pixels {
    std::vector<uint8_t> rgb;
    int width = 0;
    Rgb at(int x, int y) const {
        const size_t o = (size_t(y) * size_t(width) + size_t(x)) * 3;
        return {rgb[o], rgb[o + 1], rgb[o + 2]};
    }
};

// Anti-aliased drawing blends edges with the background: "close" within `tol` per channel.
bool close_to(Rgb a, Rgb b, int tol = 40) {
    return std::abs(a.r - b.r) <= tol && std::abs(a.g - b.g) <= tol && std::abs(a.b - b.b) <= tol;
}

// Well-formed XML (cairo's SVG): every element closed in order, attributes quoted,
// text without a raw '<' or '&' (other than entities).
void require_well_formed_svg(const std::string& svg) {
    std::vector<std::string> open;
    size_t at = 0;
    int elements = 0;
    while ((at = svg.find('<', at)) != std::string::npos) {
        const size_t end = svg.find('>', at);
        REQUIRE(end != std::string::npos);
        const std::string tag = svg.substr(at + 1, end - at - 1);
        if (tag.starts_with("?")) CHECK(tag.ends_with("?"));
        else if (tag.starts_with("!")) { /* a comment or a doctype */ }
        else if (tag.starts_with("/")) {
            REQUIRE(!open.empty());
            CHECK(tag.substr(1) == open.back());
            open.pop_back();
        } else {
            ++elements;
            CHECK(std::count(tag.begin(), tag.end(), '"') % 2 == 0);
            const std::string name = tag.substr(0, tag.find_first_of(" /"));
            if (!tag.ends_with("/")) open.push_back(name);
        }
        const size_t next = svg.find('<', end);
        const std::string text = svg.substr(end + 1, (next == std::string::npos ? svg.size() : next) - end - 1);
        for (size_t amp = text.find('&'); amp != std::string::npos; amp = text.find('&', amp + 1))
            CHECK(text.find(';', amp) != std::string::npos);
        at = end + 1;
    }
    CHECK(open.empty());
    CHECK(elements > 3);
}

Chart line_chart() {
    Chart c;
    c.title = "a line";
    c.x_label = "x";
    c.y_label = "y";
    Series s;
    s.label = "y = x";
    s.color = {214, 39, 40};
    s.points = {{0, 0}, {10, 10}};
    c.series.push_back(s);
    c.y_min = 0;
    c.y_max = 10;
    return c;
}

} // namespace

TEST_CASE("plot: a known line's pixels, axes, legend, and a one-point series", "[plot]") {
    REQUIRE(cairo_available()); // CI installs libcairo2 (.ci/run)
    const Chart c = line_chart();
    const ChartLayout l = layout_chart(c, 640, 400);
    CHECK(l.x0 == 0);
    CHECK(l.x1 == 10);
    CHECK(l.y0 == 0);
    CHECK(l.y1 == 10);
    CHECK(l.x_ticks.size() == 6); // 0, 2, ..., 10
    const Pixels img{chart_pixels(c, 640, 400), 640};
    const Rgb red = c.series[0].color, white{255, 255, 255};
    // the 2-pixel line passes through every exact point on it
    auto near = [&](const Pixels& im, const ChartLayout& lay, double x, double y, Rgb col) {
        const int cx = int(std::lround(lay.px(x))), cy = int(std::lround(lay.py(y)));
        for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx)
                if (close_to(im.at(cx + dx, cy + dy), col)) return true;
        return false;
    };
    for (double t = 0.25; t <= 9.75; t += 0.25) {
        INFO("x = y = " << t);
        CHECK(near(img, l, t, t, red));
    }
    // off the line: background, never the line's colour
    CHECK(img.at(int(std::lround(l.px(7.3))), int(std::lround(l.py(2.1)))) == white);
    CHECK(img.at(int(std::lround(l.px(2.1))), int(std::lround(l.py(7.3)))) == white);
    // the axes box is dark (a 1-pixel line, anti-aliased over two pixels), the legend swatch is
    // filled with the series' colour, and the title puts ink above the plot
    auto dark = [&](int x, int y) {
        for (int d = -1; d <= 1; ++d)
            if (img.at(x + d, y).r < 140) return true;
        return false;
    };
    CHECK(dark(l.left, l.top + 20));
    CHECK(dark(l.right, l.bottom - 20));
    CHECK(img.at(l.right + 17, l.top + 7) == red);
    int ink = 0;
    for (int y = 0; y < l.top - 4; ++y)
        for (int x = l.left; x < l.right; ++x) ink += img.at(x, y).r < 128;
    CHECK(ink > 50);

    // one point: a marker where it lies, the range widened around it
    Chart one = c;
    one.series[0].points = {{5, 3}};
    one.y_min = one.y_max = 0;
    const ChartLayout l1 = layout_chart(one, 640, 400);
    CHECK(l1.x0 < 5);
    CHECK(l1.x1 > 5);
    const Pixels img1{chart_pixels(one, 640, 400), 640};
    CHECK(close_to(img1.at(int(std::floor(l1.px(5))), int(std::floor(l1.py(3)))), red, 10));

    REQUIRE_ERROR_WITH(layout_chart(c, 10, 10), "plot: chart size 10x10");
}

TEST_CASE("plot: PNG (compressed), SVG and PDF from the same drawing", "[plot]") {
    REQUIRE(cairo_available());
    Chart c = line_chart();
    c.series[0].label = "a < b & \"c\"";
    const std::string png = render_chart(c, ImageFormat::png, 640, 400);
    const PngInfo info = png_info(png);
    CHECK(info.width == 640);
    CHECK(info.height == 400);
    CHECK(png.size() < 100000); // deflate-compressed: the raw RGB would be 768,000 bytes
    const std::string svg = render_chart(c, ImageFormat::svg, 640, 400);
    require_well_formed_svg(svg);
    CHECK(svg.find("<svg") != std::string::npos);
    CHECK(svg.find("width=\"640") != std::string::npos);
    const std::string pdf = render_chart(c, ImageFormat::pdf, 640, 400);
    CHECK(pdf.starts_with("%PDF-"));
    CHECK(pdf.find("%%EOF") != std::string::npos);
}

TEST_CASE("plot: a heatmap colours each cell by its value and marks missing ones", "[plot]") {
    REQUIRE(cairo_available());
    Heatmap m;
    m.title = "query accuracy (%)";
    m.x_label = "N (pairs)";
    m.y_label = "L";
    m.columns = {"2", "4", "8"};
    m.rows = {"64", "128"};
    m.values = {{100, 50, NAN}, {0, 75, 25}};
    int w = 0, h = 0;
    Pixels p{heatmap_pixels(m, &w, &h), 0};
    p.width = w;
    // cell (row, col) starts at (80 + 56 col, 48 + 30 row); sample near its corner, off the text
    auto cell = [&](int r, int c) { return p.at(80 + 56 * c + 6, 48 + 30 * r + 6); };
    const Rgb hi = cell(0, 0), lo = cell(1, 0), missing = cell(0, 2), mid = cell(1, 1);
    CHECK(close_to(hi, {8, 48, 107}, 8));           // 100: deep blue
    CHECK(close_to(lo, {255, 255, 255}, 8));        // 0: white
    CHECK(close_to(missing, {217, 217, 217}, 8));   // NaN: grey
    CHECK(mid.r < lo.r);
    CHECK(mid.r > hi.r);
    CHECK(png_info(render_heatmap(m, ImageFormat::png)).width == w);
    Heatmap empty;
    REQUIRE_ERROR_WITH(render_heatmap(empty, ImageFormat::png), "heatmap", "0 columns and 0 rows");
}

TEST_CASE("plot: a run's charts from metrics.jsonl, empty, one row and a torn line", "[plot]") {
    const std::string rows =
        R"({"kind":"train","step":10,"epoch":0,"loss":2.5,"acc":0.25})" "\n"
        R"({"kind":"eval","split":"valid","variant":"standard","step":10,"loss":2.0,"query_acc":0.5,"subtasks":[{"L":16,"N":2,"query_acc":0.75,"token_acc":0.8},{"L":32,"N":2,"query_acc":0.25,"token_acc":0.3}]})" "\n"
        R"({"kind":"train","step":20,"epoch":0,"loss":1.5,"acc":0.5})" "\n"
        R"({"kind":"test","split":"test","variant":"last","step":20,"query_acc":0.125})" "\n"
        R"({"kind":"train","step":30,"lo)";
    int64_t skipped = -1;
    const std::vector<Chart> charts = run_charts(rows, &skipped);
    CHECK(skipped == 1);
    REQUIRE(charts.size() == 2);
    const Chart& loss = charts[0];
    REQUIRE(loss.series.size() == 2);
    CHECK(loss.series[0].label == "train loss");
    CHECK(loss.series[0].points.size() == 2);
    CHECK(loss.series[0].points[1].x == 20);
    CHECK(loss.series[0].points[1].y == 1.5);
    CHECK(loss.series[1].label == "valid loss");
    const Chart& acc = charts[1];
    std::vector<std::string> labels;
    for (const Series& s : acc.series) labels.push_back(s.label);
    CHECK(labels == std::vector<std::string>{"valid mean", "valid 16x2", "valid 32x2", "test last", "train acc (tokens)"});
    CHECK(acc.series[1].points[0].y == 75);
    CHECK(acc.series[0].color != acc.series[1].color);

    // nothing to plot: axes and "no data", still a valid PNG and SVG
    const std::vector<Chart> none = run_charts("", nullptr);
    REQUIRE(none.size() == 2);
    CHECK(none[0].series.empty());
    CHECK(png_info(render_chart(none[0], ImageFormat::png)).width == 640);
    require_well_formed_svg(render_chart(none[1], ImageFormat::svg));
}

TEST_CASE("plot: write_run_plots and `mambagrad plot` write the images atomically; errors name the file", "[plot][cli]") {
    TempDir dir("plot");
    data::write_file_atomic(dir.file("metrics.jsonl"), R"({"kind":"train","step":1,"loss":3.0,"acc":0.1})" "\n");
    RunPlots p = write_run_plots(dir.path.string());
    CHECK(p.rows == 1);
    CHECK(p.files.size() == 4);
    CHECK(dir.listing() == std::vector<std::string>{"accuracy.png", "accuracy.svg", "loss.png", "loss.svg", "metrics.jsonl"});
    std::ifstream in(dir.file("loss.png"), std::ios::binary);
    const std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(png_info(png).width == 640);

    std::filesystem::remove(dir.file("loss.png"));
    Run r = run_cli("plot " + dir.path.string());
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(r.out.find("loss.png") != std::string::npos);
    CHECK(std::filesystem::exists(dir.file("loss.png")));

    REQUIRE_ERROR_WITH(write_run_plots(dir.file("nope")), "run directory", "nope");
    std::filesystem::remove(dir.file("metrics.jsonl"));
    require_one_error_line(run_cli("plot " + dir.path.string()), {"metrics.jsonl", "does not exist"});
    require_one_error_line(run_cli("plot"), {"RUN_DIR"});
}

TEST_CASE("plot: Python's zlib and XML parser read our PNG and SVG", "[plot][python]") {
    if (std::system("python3 -c 'import zlib, xml.etree.ElementTree' >/dev/null 2>&1") != 0) {
        WARN("skipped: python3 is not installed");
        return;
    }
    REQUIRE(cairo_available());
    TempDir dir("plot_python");
    const Chart c = line_chart();
    data::write_file_atomic(dir.file("c.png"), render_chart(c, ImageFormat::png, 640, 400));
    data::write_file_atomic(dir.file("c.svg"), render_chart(c, ImageFormat::svg, 640, 400));
    // Python inflates the IDAT data with zlib: a filter byte and 3 (RGB) or 4 (RGBA) bytes per
    // pixel per row (cairo writes an opaque image as RGB)
    const std::string script = fmt::format(
        "import struct, zlib, xml.etree.ElementTree as ET\n"
        "d = open('{}', 'rb').read(); at = 8; idat = b''\n"
        "while at < len(d):\n"
        "    n, = struct.unpack('>I', d[at:at + 4]); t = d[at + 4:at + 8]\n"
        "    if t == b'IHDR': w, h, depth, ctype = struct.unpack('>IIBB', d[at + 8:at + 18])\n"
        "    if t == b'IDAT': idat += d[at + 8:at + 8 + n]\n"
        "    at += 12 + n\n"
        "raw = zlib.decompress(idat)\n"
        "ET.parse('{}')\n"
        "bpp = {{2: 3, 6: 4}}[ctype]\n"
        "print(w, h, depth, len(raw) == h * (1 + bpp * w))\n",
        dir.file("c.png"), dir.file("c.svg"));
    data::write_file_atomic(dir.file("check.py"), script);
    FILE* p = popen(("python3 " + dir.file("check.py") + " 2>&1").c_str(), "r");
    REQUIRE(p);
    char buf[256] = {};
    const size_t n = fread(buf, 1, sizeof(buf) - 1, p);
    CHECK(pclose(p) == 0);
    CHECK(std::string(buf, n) == "640 400 8 True\n");
}
