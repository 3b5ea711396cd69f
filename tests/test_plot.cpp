// tests/test_plot.cpp: train/plot.h: the PNG writer (checked by an independent decoder here, and
// by Python's zlib when python3 is there), the chart rasteriser (a known line's pixels), the SVG
// (well formed), a run's plots from metrics.jsonl (empty, one row, a torn last line) and
// `mambagrad plot`.
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

// A PNG decoder for what encode_png writes (RGB8, stored deflate blocks, filter 0): checks the
// signature, every chunk's CRC, IHDR, the zlib header, each block's LEN/NLEN and the Adler-32.
Image decode_png(const std::string& png, int* idat_blocks = nullptr) {
    REQUIRE(png.size() > 8);
    REQUIRE(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
    size_t at = 8;
    int w = 0, h = 0;
    std::string zlib;
    std::vector<std::string> types;
    while (at < png.size()) {
        REQUIRE(at + 12 <= png.size());
        const uint32_t len = be32(png, at);
        const std::string type = png.substr(at + 4, 4), data = png.substr(at + 8, len);
        REQUIRE(at + 12 + len <= png.size());
        CHECK(be32(png, at + 8 + len) == crc32(png.substr(at + 4, 4 + len)));
        types.push_back(type);
        if (type == "IHDR") {
            REQUIRE(len == 13);
            w = int(be32(data, 0));
            h = int(be32(data, 4));
            CHECK(data.substr(8) == std::string("\x08\x02\x00\x00\x00", 5)); // 8-bit RGB, no interlace
        } else if (type == "IDAT") {
            zlib += data;
        }
        at += 12 + len;
    }
    CHECK(types.front() == "IHDR");
    CHECK(types.back() == "IEND");
    // zlib: CMF/FLG, stored blocks, Adler-32
    REQUIRE(zlib.size() >= 6);
    CHECK((uint8_t(zlib[0]) * 256 + uint8_t(zlib[1])) % 31 == 0);
    CHECK((uint8_t(zlib[0]) & 0x0F) == 8); // deflate
    std::string raw;
    size_t z = 2;
    int blocks = 0;
    for (bool final = false; !final; ++blocks) {
        REQUIRE(z + 5 <= zlib.size());
        const uint8_t hdr = uint8_t(zlib[z]);
        final = hdr & 1;
        REQUIRE(((hdr >> 1) & 3) == 0); // stored
        const uint32_t len = uint8_t(zlib[z + 1]) | uint32_t(uint8_t(zlib[z + 2])) << 8;
        const uint32_t nlen = uint8_t(zlib[z + 3]) | uint32_t(uint8_t(zlib[z + 4])) << 8;
        REQUIRE((len ^ 0xFFFF) == nlen);
        REQUIRE(z + 5 + len <= zlib.size());
        raw += zlib.substr(z + 5, len);
        z += 5 + len;
    }
    REQUIRE(z + 4 == zlib.size());
    CHECK(be32(zlib, z) == adler32(raw));
    if (idat_blocks) *idat_blocks = blocks;
    REQUIRE(raw.size() == size_t(h) * (1 + size_t(w) * 3));
    Image img(w, h);
    for (int y = 0; y < h; ++y) {
        const size_t row = size_t(y) * (1 + size_t(w) * 3);
        REQUIRE(raw[row] == 0); // filter: none
        std::copy(raw.begin() + int64_t(row) + 1, raw.begin() + int64_t(row) + 1 + int64_t(w) * 3,
                  img.rgb.begin() + int64_t(y) * w * 3);
    }
    return img;
}

// Well-formed XML for what render_svg writes: every element closed in order, attributes quoted,
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

TEST_CASE("plot: PNG writer: checksums, stored blocks, signature, chunks", "[plot]") {
    // the standard check values
    CHECK(crc32("123456789") == 0xCBF43926u);
    CHECK(crc32("") == 0u);
    CHECK(adler32("Wikipedia") == 0x11E60398u);
    CHECK(adler32("") == 1u);
    // an empty stream is one final empty block
    CHECK(zlib_stored("") == std::string("\x78\x01\x01\x00\x00\xff\xff\x00\x00\x00\x01", 11));

    // 211 x 107 random pixels: 107 * (1 + 633) = 67838 raw bytes, two stored blocks
    Image img(211, 107);
    Generator g(7);
    const std::vector<double> u = Tensor::uniform({int64_t(img.rgb.size())}, 0.0, 256.0, {DType::f64}, g).to_vector<double>();
    for (size_t i = 0; i < u.size(); ++i) img.rgb[i] = uint8_t(std::min(255.0, u[i]));
    int blocks = 0;
    Image back = decode_png(encode_png(img), &blocks);
    CHECK(blocks == 2);
    CHECK(back.width == 211);
    CHECK(back.height == 107);
    CHECK(back.rgb == img.rgb);
}

TEST_CASE("plot: a known line's pixels, axes, and a one-point series", "[plot]") {
    const Chart c = line_chart();
    const ChartLayout l = layout_chart(c, 640, 400);
    CHECK(l.x0 == 0);
    CHECK(l.x1 == 10);
    CHECK(l.y0 == 0);
    CHECK(l.y1 == 10);
    CHECK(l.x_ticks.size() == 6); // 0, 2, ..., 10
    const Image img = decode_png(encode_png(render_png_image(c, 640, 400)));
    REQUIRE(img.width == 640);
    const Rgb red = c.series[0].color, white{255, 255, 255};
    // the line passes within a pixel of every exact point on it (Bresenham rounds each step)
    auto near = [&](const Image& im, double x, double y, Rgb c) {
        const int cx = int(std::lround(l.px(x))), cy = int(std::lround(l.py(y)));
        for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx)
                if (im.at(cx + dx, cy + dy) == c) return true;
        return false;
    };
    for (double t = 0; t <= 10; t += 0.25) {
        INFO("x = y = " << t);
        CHECK(near(img, t, t, red));
    }
    // off the line: background (or grid), never the line's colour
    CHECK(img.at(int(std::lround(l.px(7.3))), int(std::lround(l.py(2.1)))) == white);
    CHECK(img.at(int(std::lround(l.px(2.1))), int(std::lround(l.py(7.3)))) == white);
    // the axes box is black at its corners, the legend swatch has the series' colour
    CHECK(img.at(l.left, l.top) == Rgb{0, 0, 0});
    CHECK(img.at(l.right, l.bottom) == Rgb{0, 0, 0});
    CHECK(img.at(l.right + 15, l.top + 4) == red);

    // one point: a marker where it lies, the range widened around it
    Chart one = c;
    one.series[0].points = {{5, 3}};
    one.y_min = one.y_max = 0;
    const ChartLayout l1 = layout_chart(one, 640, 400);
    CHECK(l1.x0 < 5);
    CHECK(l1.x1 > 5);
    const Image img1 = render_png_image(one, 640, 400);
    for (int dy = -2; dy <= 2; ++dy)
        for (int dx = -2; dx <= 2; ++dx)
            CHECK(img1.at(int(std::lround(l1.px(5))) + dx, int(std::lround(l1.py(3))) + dy) == red);

    REQUIRE_ERROR_WITH(layout_chart(c, 10, 10), "plot: chart size 10x10");
}

TEST_CASE("plot: SVG is well formed and carries the series", "[plot]") {
    Chart c = line_chart();
    c.series[0].label = "a < b & \"c\"";
    const std::string svg = render_svg(c, 640, 400);
    require_well_formed_svg(svg);
    CHECK(svg.find("a &lt; b &amp; &quot;c&quot;") != std::string::npos);
    const ChartLayout l = layout_chart(c, 640, 400);
    CHECK(svg.find(fmt::format("points=\"{:.1f},{:.1f} {:.1f},{:.1f}\"", l.px(0), l.py(0), l.px(10), l.py(10))) !=
          std::string::npos);
    CHECK(svg.find("stroke=\"#d62728\"") != std::string::npos);
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
    decode_png(encode_png(render_png_image(none[0])));
    const std::string svg = render_svg(none[1]);
    require_well_formed_svg(svg);
    CHECK(svg.find("no data") != std::string::npos);
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
    CHECK(decode_png(png).width == 640);

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
    TempDir dir("plot_python");
    const Chart c = line_chart();
    const ChartLayout l = layout_chart(c, 640, 400);
    data::write_file_atomic(dir.file("c.png"), encode_png(render_png_image(c, 640, 400)));
    data::write_file_atomic(dir.file("c.svg"), render_svg(c, 640, 400));
    // Python inflates the IDAT data with zlib and prints the pixel on the line at x = y = 5.
    const std::string script = fmt::format(
        "import struct, zlib, xml.etree.ElementTree as ET\n"
        "d = open('{}', 'rb').read(); at = 8; idat = b''\n"
        "while at < len(d):\n"
        "    n, = struct.unpack('>I', d[at:at + 4]); t = d[at + 4:at + 8]\n"
        "    if t == b'IHDR': w, h = struct.unpack('>II', d[at + 8:at + 16])\n"
        "    if t == b'IDAT': idat += d[at + 8:at + 8 + n]\n"
        "    at += 12 + n\n"
        "raw = zlib.decompress(idat); x, y = {}, {}; o = y * (1 + 3 * w) + 1 + 3 * x\n"
        "ET.parse('{}')\n"
        "print(w, h, raw[o], raw[o + 1], raw[o + 2])\n",
        dir.file("c.png"), std::lround(l.px(5)), std::lround(l.py(5)), dir.file("c.svg"));
    data::write_file_atomic(dir.file("check.py"), script);
    FILE* p = popen(("python3 " + dir.file("check.py") + " 2>&1").c_str(), "r");
    REQUIRE(p);
    char buf[256] = {};
    const size_t n = fread(buf, 1, sizeof(buf) - 1, p);
    CHECK(pclose(p) == 0);
    CHECK(std::string(buf, n) == "640 400 214 39 40\n");
}
