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

namespace {

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
constexpr int kLegendRowH = 16;
constexpr double kTickFont = 11, kLabelFont = 12, kTitleFont = 15, kLegendFont = 11;

Color color_of(Rgb c) { return {c.r / 255.0, c.g / 255.0, c.b / 255.0}; }

bool has_points(const Chart& c) {
    return std::any_of(c.series.begin(), c.series.end(), [](const Series& s) { return !s.points.empty(); });
}

bool show_markers(const Series& s) { return s.markers || s.points.size() == 1; }

// How many series the legend lists, given the height.
size_t legend_rows(const Chart& c, const ChartLayout& l) {
    const size_t fit = size_t(std::max(1, (l.bottom - l.top) / kLegendRowH));
    return std::min(c.series.size(), c.series.size() > fit ? fit - 1 : fit);
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
    l.left = 72;
    l.top = 44;
    size_t longest = 0; // the legend's column: room for its longest label (about 6.5 px a character)
    for (const Series& s : chart.series) longest = std::max(longest, s.label.size());
    const int legend = chart.series.empty() ? 16 : std::min(std::max(170, 40 + int(6.5 * double(longest))), width / 2);
    l.right = width - 1 - legend;
    l.bottom = height - 1 - 48;
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

// ---- drawing (one code for every surface) -------------------------------------------------------------

namespace {

void draw_chart(Canvas& cv, const Chart& chart) {
    const ChartLayout l = layout_chart(chart, cv.width, cv.height);
    const double w = l.right - l.left, h = l.bottom - l.top;
    for (double t : l.x_ticks) { // grid, ticks and their labels
        const double x = l.px(t);
        cv.line(x, l.top, x, l.bottom, color_of(kGrid));
        cv.line(x, l.bottom, x, l.bottom + 4, color_of(kBlack));
        cv.text(x, l.bottom + 17, tick_label(t, l.x_ticks), kTickFont, color_of(kText), Anchor::center);
    }
    for (double t : l.y_ticks) {
        const double y = l.py(t);
        cv.line(l.left, y, l.right, y, color_of(kGrid));
        cv.line(l.left - 4, y, l.left, y, color_of(kBlack));
        cv.text(l.left - 7, y + 4, tick_label(t, l.y_ticks), kTickFont, color_of(kText), Anchor::right);
    }
    cv.stroke_rect(l.left, l.top, w, h, color_of(kBlack));
    cv.text((l.left + l.right) / 2.0, 26, chart.title, kTitleFont, color_of(kBlack), Anchor::center, true);
    cv.text((l.left + l.right) / 2.0, l.bottom + 38, chart.x_label, kLabelFont, color_of(kText), Anchor::center);
    cv.text(18, (l.top + l.bottom) / 2.0, chart.y_label, kLabelFont, color_of(kText), Anchor::center, false, -M_PI / 2);
    if (!has_points(chart))
        cv.text((l.left + l.right) / 2.0, (l.top + l.bottom) / 2.0, "no data", kTitleFont, color_of(kText),
                Anchor::center);
    // series: 2-pixel anti-aliased polylines, markers as 5x5 squares, clipped to the plot area
    cv.clip_rect(l.left - 3, l.top - 3, w + 6, h + 6); // markers on the edge show whole
    for (const Series& s : chart.series) {
        std::vector<std::pair<double, double>> pts;
        for (const Point& p : s.points) pts.emplace_back(l.px(p.x), l.py(p.y));
        cv.polyline(pts, color_of(s.color), 2);
        if (show_markers(s))
            for (const auto& [x, y] : pts) cv.fill_rect(x - 2.5, y - 2.5, 5, 5, color_of(s.color));
    }
    cv.unclip();
    const size_t rows = legend_rows(chart, l);
    for (size_t i = 0; i < rows; ++i) {
        const double y = l.top + double(i) * kLegendRowH;
        cv.fill_rect(l.right + 10, y + 3, 14, 8, color_of(chart.series[i].color));
        cv.text(l.right + 30, y + 11, chart.series[i].label, kLegendFont, color_of(kText));
    }
    if (rows < chart.series.size())
        cv.text(l.right + 30, l.top + double(rows) * kLegendRowH + 11,
                fmt::format("+{} more", chart.series.size() - rows), kLegendFont, color_of(kText));
}

// Heatmap geometry: margins around a grid of kCellW x kCellH cells, a colour bar on the right.
constexpr int kCellW = 56, kCellH = 30, kMapLeft = 80, kMapTop = 48, kMapRight = 90, kMapBottom = 52;

// White (lo) to a deep blue (hi), linear in the value.
Color heat(double v, double lo, double hi) {
    const double t = std::clamp((v - lo) / (hi > lo ? hi - lo : 1.0), 0.0, 1.0);
    return {1.0 - t * (1.0 - 0.03), 1.0 - t * (1.0 - 0.19), 1.0 - t * (1.0 - 0.42)};
}

void draw_heatmap(Canvas& cv, const Heatmap& m) {
    const int cols = int(m.columns.size()), rows = int(m.rows.size());
    const double x0 = kMapLeft, y0 = kMapTop;
    cv.text(cv.width / 2.0, 28, m.title, kTitleFont, color_of(kBlack), Anchor::center, true);
    for (int r = 0; r < rows; ++r) {
        cv.text(x0 - 8, y0 + (r + 0.5) * kCellH + 4, m.rows[size_t(r)], kTickFont, color_of(kText), Anchor::right);
        for (int c = 0; c < cols; ++c) {
            const double v = r < int(m.values.size()) && c < int(m.values[size_t(r)].size())
                                 ? m.values[size_t(r)][size_t(c)] : NAN;
            const double x = x0 + c * kCellW, y = y0 + r * kCellH;
            const bool has = std::isfinite(v);
            const Color bg = has ? heat(v, m.lo, m.hi) : Color{0.85, 0.85, 0.85};
            cv.fill_rect(x, y, kCellW, kCellH, bg);
            cv.stroke_rect(x, y, kCellW, kCellH, {1, 1, 1});
            const bool dark = has && (v - m.lo) / (m.hi > m.lo ? m.hi - m.lo : 1.0) > 0.55;
            cv.text(x + kCellW / 2.0, y + kCellH / 2.0 + 4, has ? fmt::format("{:.1f}", v) : "-", kTickFont,
                    dark ? Color{1, 1, 1} : color_of(kText), Anchor::center);
        }
    }
    for (int c = 0; c < cols; ++c)
        cv.text(x0 + (c + 0.5) * kCellW, y0 + rows * kCellH + 16, m.columns[size_t(c)], kTickFont, color_of(kText),
                Anchor::center);
    cv.text(x0 + cols * kCellW / 2.0, y0 + rows * kCellH + 38, m.x_label, kLabelFont, color_of(kText), Anchor::center);
    cv.text(18, y0 + rows * kCellH / 2.0, m.y_label, kLabelFont, color_of(kText), Anchor::center, false, -M_PI / 2);
    // the colour bar: lo at the bottom, hi at the top
    const double bx = x0 + cols * kCellW + 24, bh = std::max(rows * kCellH, 60);
    for (int i = 0; i < 50; ++i)
        cv.fill_rect(bx, y0 + bh * (1 - (i + 1) / 50.0), 14, bh / 50.0 + 0.5, heat(m.lo + (m.hi - m.lo) * (i + 0.5) / 50, m.lo, m.hi));
    cv.stroke_rect(bx, y0, 14, bh, color_of(kText));
    cv.text(bx + 20, y0 + 9, fmt::format("{:g}", m.hi), kTickFont, color_of(kText));
    cv.text(bx + 20, y0 + bh, fmt::format("{:g}", m.lo), kTickFont, color_of(kText));
}

} // namespace

std::string render_chart(const Chart& chart, ImageFormat format, int width, int height) {
    layout_chart(chart, width, height); // size checks before a surface is made
    Canvas cv(format, width, height);
    draw_chart(cv, chart);
    return cv.finish();
}

std::vector<uint8_t> chart_pixels(const Chart& chart, int width, int height) {
    layout_chart(chart, width, height);
    Canvas cv(ImageFormat::png, width, height);
    draw_chart(cv, chart);
    return cv.rgb_pixels();
}

void heatmap_size(const Heatmap& m, int* width, int* height) {
    MG_CHECK(!m.columns.empty() && !m.rows.empty(), "plot: heatmap '{}' has {} columns and {} rows, expected both >= 1",
             m.title, m.columns.size(), m.rows.size());
    // room for the grid and for the title (about 9 px a character at its size)
    *width = std::max({kMapLeft + int(m.columns.size()) * kCellW + kMapRight, 320, 40 + int(9.0 * double(m.title.size()))});
    *height = kMapTop + std::max(int(m.rows.size()) * kCellH, 60) + kMapBottom;
}

std::string render_heatmap(const Heatmap& m, ImageFormat format) {
    int w = 0, h = 0;
    heatmap_size(m, &w, &h);
    Canvas cv(format, w, h);
    draw_heatmap(cv, m);
    return cv.finish();
}

std::vector<uint8_t> heatmap_pixels(const Heatmap& m, int* width, int* height) {
    heatmap_size(m, width, height);
    Canvas cv(ImageFormat::png, *width, *height);
    draw_heatmap(cv, m);
    return cv.rgb_pixels();
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
    if (!cairo_available()) {
        out.skipped = cairo_unavailable_reason();
        return out;
    }
    const char* names[] = {"loss", "accuracy"};
    for (size_t i = 0; i < charts.size(); ++i)
        for (ImageFormat f : {ImageFormat::png, ImageFormat::svg}) {
            const std::string file = (fs::path(run_dir) / names[i]).string() + "." + std::string(image_format_extension(f));
            data::write_file_atomic(file, render_chart(charts[i], f));
            out.files.push_back(file);
        }
    return out;
}

} // namespace mg::train
