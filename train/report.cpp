// train/report.cpp: see train/report.h.
#include "train/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <filesystem>
#include <map>
#include <set>

#include "data/atomic_file.h"
#include "tensor/check.h"
#include "tensor/json.h"
#include "train/plot.h"

namespace mg::train {

using ojson = nlohmann::ordered_json;

namespace {

constexpr const char* kSeedAxis = "seed";

struct Stat {
    std::vector<double> xs;
    double mean() const {
        double s = 0;
        for (double x : xs) s += x;
        return s / double(xs.size());
    }
    double sd() const { // sample standard deviation (0 for one value)
        if (xs.size() < 2) return 0;
        const double m = mean();
        double s = 0;
        for (double x : xs) s += (x - m) * (x - m);
        return std::sqrt(s / double(xs.size() - 1));
    }
    std::string str(int digits) const {
        if (xs.empty()) return "–";
        if (xs.size() == 1) return fmt::format("{:.{}f}", mean(), digits);
        return fmt::format("{:.{}f} ± {:.{}f}", mean(), digits, sd(), digits);
    }
};

// The group id of a row: its labels without the seed axis, in the spec's axis order.
std::string group_of(const SweepSpec& spec, const ojson& labels) {
    std::string id;
    for (const SweepAxis& a : spec.axes)
        if (a.name != kSeedAxis && labels.is_object() && labels.contains(a.name) && labels[a.name].is_string())
            id += fmt::format("{}{}={}", id.empty() ? "" : ",", a.name, labels[a.name].get<std::string>());
    return id.empty() ? "all" : id;
}

// Every group of the grid, in the grid's order.
std::vector<std::string> grid_groups(const SweepSpec& spec) {
    std::vector<std::string> ids = {""};
    for (const SweepAxis& a : spec.axes) {
        if (a.name == kSeedAxis) continue;
        std::vector<std::string> next;
        for (const std::string& id : ids)
            for (const auto& [label, keys] : a.values) next.push_back(fmt::format("{}{}{}={}", id, id.empty() ? "" : ",", a.name, label));
        ids = std::move(next);
    }
    if (ids.size() == 1 && ids[0].empty()) ids[0] = "all";
    return ids;
}

// j[key], or null when j is not an object holding key (operator[] on a const JSON must not miss).
const ojson& member(const ojson& j, const std::string& key) {
    static const ojson none;
    if (!j.is_object()) return none;
    const auto it = j.find(key);
    return it == j.end() ? none : *it;
}

double number_at(const ojson& j, const char* key) {
    return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN;
}

} // namespace

std::string experiment_report(const SweepSpec& spec, const std::vector<ojson>& rows, const std::string& image_dir) {
    // an image: written when image_dir is given, linked either way
    auto image = [&](const std::string& name, const std::function<std::string()>& draw) {
        std::string file;
        for (char c : name) file += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_';
        file += ".png";
        if (!image_dir.empty()) {
            std::filesystem::create_directories(image_dir);
            data::write_file_atomic((std::filesystem::path(image_dir) / file).string(), draw());
        }
        return fmt::format("![{}](results/{})\n\n", name, file);
    };
    // group id -> its rows
    std::map<std::string, std::vector<const ojson*>> groups;
    std::vector<std::string> variants; // test variants in order of first appearance
    std::set<std::string> devices, commits, dates;
    int64_t used = 0;
    for (const ojson& r : rows) {
        if (json_string_at(r, "experiment", "") != spec.name || json_string_at(r, "status", "") != "ok") continue;
        groups[group_of(spec, member(r, "labels"))].push_back(&r);
        ++used;
        if (member(r, "test").is_object())
            for (const auto& item : r["test"].items())
                if (std::find(variants.begin(), variants.end(), item.key()) == variants.end()) variants.push_back(item.key());
        devices.insert(json_string_at(r, "device", "?"));
        commits.insert(json_string_at(r, "commit", "?"));
        dates.insert(json_string_at(r, "date", "?").substr(0, 10));
    }
    std::string out = fmt::format("## {}\n\n", spec.name);
    if (!spec.description.empty()) out += spec.description + "\n\n";
    if (used == 0) return out + "No result rows yet.\n\n";
    const bool lm = variants == std::vector<std::string>{"test"} && !groups.empty() &&
                    std::isfinite(number_at(member(member(*groups.begin()->second.front(), "test"), "test"), "bpb"));
    const std::vector<std::string> order = grid_groups(spec);
    std::vector<std::string> axes;
    for (const SweepAxis& a : spec.axes)
        if (a.name != kSeedAxis) axes.push_back(a.name);
    const bool paper = spec.paper.is_object() && !spec.paper.empty();

    // the summary table
    std::string head = "|", rule = "|";
    for (const std::string& a : axes) head += " " + a + " |", rule += "---|";
    head += " seeds |", rule += "---:|";
    for (const std::string& v : variants) head += lm ? " test bits per byte |" : " " + v + " |", rule += "---:|";
    if (paper) head += " paper |", rule += "---:|";
    out += (lm ? "Held-out bits per byte" : "Query accuracy (%) on the test split") +
           std::string(", mean ± standard deviation over seeds.\n\n") + head + "\n" + rule + "\n";
    for (const std::string& g : order) {
        auto it = groups.find(g);
        if (it == groups.end()) continue;
        const auto& rs = it->second;
        std::string line = "|";
        const ojson& labels = member(*rs.front(), "labels");
        for (const std::string& a : axes) line += " " + json_string_at(labels, a, "?") + " |";
        line += fmt::format(" {} |", rs.size());
        for (const std::string& v : variants) {
            Stat s;
            for (const ojson* r : rs) {
                const double x = number_at(member(member(*r, "test"), v), lm ? "bpb" : "query_acc");
                if (std::isfinite(x)) s.xs.push_back(lm ? x : 100 * x);
            }
            line += " " + s.str(lm ? 3 : 2) + " |";
        }
        if (paper) {
            std::string p;
            if (member(spec.paper, g).is_object()) {
                for (const std::string& v : variants) {
                    const double x = number_at(member(spec.paper, g), v.c_str());
                    p += (p.empty() ? "" : " / ") + (std::isfinite(x) ? fmt::format("{:.2f}", x) : std::string("–"));
                }
            } else {
                p = "–";
            }
            line += " " + p + " |";
        }
        out += line + "\n";
    }
    out += "\n";
    if (!lm) { // a task no model learned: say so, with the token accuracy that still tells them apart
        double best = 0;
        std::string tokens;
        for (const std::string& g : order) {
            auto it = groups.find(g);
            if (it == groups.end()) continue;
            for (const std::string& v : variants) {
                Stat q, t;
                for (const ojson* r : it->second) {
                    const ojson& s = member(member(*r, "test"), v);
                    if (std::isfinite(number_at(s, "query_acc"))) q.xs.push_back(100 * number_at(s, "query_acc"));
                    if (std::isfinite(number_at(s, "token_acc"))) t.xs.push_back(100 * number_at(s, "token_acc"));
                }
                if (!q.xs.empty()) best = std::max(best, q.mean());
                if (!t.xs.empty()) tokens += fmt::format("{}{} on {} {:.2f}%", tokens.empty() ? "" : "; ", g, v, t.mean());
            }
        }
        if (best < 1.0)
            out += fmt::format("No group reaches 1% query accuracy: at this scale no model learns the task, so this table "
                               "cannot show a difference between them. Token accuracy (value tokens right, mean over "
                               "seeds): {}.\n\n", tokens);
    }

    // per group and variant: accuracy per (L, N) cell
    if (!lm)
        for (const std::string& g : order) {
            auto it = groups.find(g);
            if (it == groups.end()) continue;
            for (const std::string& v : variants) {
                std::map<std::pair<int64_t, int64_t>, Stat> cells;
                std::set<int64_t> Ls, Ns;
                for (const ojson* r : it->second) {
                    const ojson& st = member(member(member(*r, "test"), v), "subtasks");
                    if (!st.is_array()) continue;
                    for (const ojson& c : st) {
                        const double acc = number_at(c, "query_acc");
                        if (!c.is_object() || !c.contains("L") || !c.contains("N") || !c["L"].is_number_integer() ||
                            !c["N"].is_number_integer() || !std::isfinite(acc))
                            continue;
                        const int64_t L = c["L"].get<int64_t>(), N = c["N"].get<int64_t>();
                        cells[{L, N}].xs.push_back(100 * acc);
                        Ls.insert(L);
                        Ns.insert(N);
                    }
                }
                if (cells.size() <= 1) continue; // one cell: the summary table says it all
                out += fmt::format("{} → tested on {}: query accuracy (%) per cell (L down, N across)\n\n", g, v);
                out += "| L \\ N |";
                std::string r2 = "|---|";
                for (int64_t N : Ns) out += fmt::format(" {} |", N), r2 += "---:|";
                out += "\n" + r2 + "\n";
                for (int64_t L : Ls) {
                    out += fmt::format("| {} |", L);
                    for (int64_t N : Ns) {
                        auto c = cells.find({L, N});
                        out += c == cells.end() ? " · |" : fmt::format(" {:.1f} |", c->second.mean());
                    }
                    out += "\n";
                }
                out += "\n";
                Heatmap m;
                m.title = fmt::format("{}: {} → tested on {}", spec.name, g, v);
                m.x_label = "N (key-value pairs)";
                m.y_label = "L (sequence length)";
                for (int64_t N : Ns) m.columns.push_back(std::to_string(N));
                for (int64_t L : Ls) {
                    m.rows.push_back(std::to_string(L));
                    m.values.emplace_back();
                    for (int64_t N : Ns) {
                        auto c = cells.find({L, N});
                        m.values.back().push_back(c == cells.end() ? NAN : c->second.mean());
                    }
                }
                out += image(fmt::format("{}__{}__{}", spec.name, g, v), [&] { return render_heatmap(m, ImageFormat::png); });
            }
        }
    // the runs' validation curves, one line per run
    Chart curves;
    curves.title = fmt::format("{}: validation during training", spec.name);
    curves.x_label = "step";
    curves.y_label = lm ? "bits per byte" : "query accuracy (%)";
    if (!lm) curves.y_min = 0, curves.y_max = 100;
    for (const std::string& g : order) {
        auto it = groups.find(g);
        if (it == groups.end()) continue;
        for (const ojson* r : it->second) {
            const ojson& c = member(*r, "curve");
            if (!c.is_array() || c.empty()) continue;
            Series s;
            s.label = json_string_at(*r, "run", g);
            for (const ojson& p : c) {
                const double x = number_at(p, "step"), y = number_at(p, lm ? "bpb" : "query_acc");
                if (std::isfinite(x) && std::isfinite(y)) s.points.push_back({x, lm ? y : 100 * y});
            }
            if (s.points.empty()) continue;
            s.color = plot_palette()[curves.series.size() % plot_palette().size()];
            curves.series.push_back(std::move(s));
        }
    }
    if (!curves.series.empty())
        out += image(spec.name + "__curves", [&] { return render_chart(curves, ImageFormat::png, 800, 420); });
    out += fmt::format("Rows: {} runs; device{} {}; commit{} {}; date{} {}.\n\n", used, devices.size() > 1 ? "s" : "",
                       fmt::join(devices, ", "), commits.size() > 1 ? "s" : "", fmt::join(commits, ", "),
                       dates.size() > 1 ? "s" : "", fmt::join(dates, ", "));
    return out;
}

std::string results_document(const std::vector<std::string>& experiment_files, const std::string& results_dir,
                             const std::string& image_dir) {
    std::string out = "# Results\n\nGenerated by `make results` (`mambagrad report` over every experiments/*.json) from the "
                      "committed result rows in experiments/results/; do not edit by hand. How each experiment differs "
                      "from the paper: experiments/README.md.\n\n";
    for (const std::string& f : experiment_files) {
        const SweepSpec spec = SweepSpec::load(f);
        out += experiment_report(spec, read_result_rows(sweep_results_path(spec, results_dir)), image_dir);
    }
    return out;
}

} // namespace mg::train
