// train/sweep.cpp: see train/sweep.h.
#include "train/sweep.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "data/atomic_file.h"
#include "data/read_file.h"
#include "tensor/check.h"
#include "tensor/json.h"
#include "tensor/runtime.h"
#include "train/build_info.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/metrics.h"
#include "train/process.h"
#include "train/stop_signals.h"

namespace mg::train {

using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxExperimentBytes = 16 << 20;
constexpr uint64_t kMaxResultsBytes = uint64_t(1) << 32;

bool good_label(const std::string& s) {
    return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    });
}

} // namespace

SweepSpec SweepSpec::from_json(const ojson& j, const std::string& where) {
    MG_CHECK(j.is_object(), "{}: the experiment is {}, expected a JSON object", where, json_excerpt(j));
    const std::vector<std::string> keys = {"name", "description", "base", "axes", "jobs", "paper"};
    for (const auto& [k, v] : j.items())
        MG_CHECK(std::find(keys.begin(), keys.end(), k) != keys.end(), "{}: unknown key '{}'; allowed keys: {}", where,
                 text_excerpt(k, 40), fmt::join(keys, ", "));
    SweepSpec s;
    MG_CHECK(j.contains("name") && j["name"].is_string() && good_label(j["name"].get<std::string>()),
             "{}: name is {}, expected a name of letters, digits, '.', '_' or '-'", where,
             j.contains("name") ? json_excerpt(j["name"]) : std::string("missing"));
    s.name = j["name"].get<std::string>();
    s.description = json_string_at(j, "description", "");
    MG_CHECK(j.contains("base") && j["base"].is_object(), "{}: base is {}, expected a train config (a JSON object)", where,
             j.contains("base") ? json_excerpt(j["base"]) : std::string("missing"));
    s.base = j["base"];
    if (j.contains("jobs")) {
        MG_CHECK(j["jobs"].is_number_integer() && j["jobs"].get<int64_t>() >= 1 && j["jobs"].get<int64_t>() <= 64,
                 "{}: jobs is {}, expected an integer in [1, 64]", where, json_excerpt(j["jobs"]));
        s.jobs = j["jobs"].get<int64_t>();
    }
    if (j.contains("paper")) s.paper = j["paper"];
    MG_CHECK(j.contains("axes") && j["axes"].is_array(), "{}: axes is {}, expected a list of {{\"name\", \"values\"}}",
             where, j.contains("axes") ? json_excerpt(j["axes"]) : std::string("missing"));
    std::set<std::string> names;
    for (size_t i = 0; i < j["axes"].size(); ++i) {
        const ojson& a = j["axes"][i];
        const std::string at = fmt::format("{}: axes[{}]", where, i);
        MG_CHECK(a.is_object() && a.contains("name") && a["name"].is_string() && good_label(a["name"].get<std::string>()) &&
                     a.contains("values") && a.size() == 2,
                 "{} is {}, expected {{\"name\": NAME, \"values\": {{LABEL: {{KEY: VALUE}}}} or [VALUE, ...]}}", at,
                 json_excerpt(a));
        SweepAxis axis;
        axis.name = a["name"].get<std::string>();
        MG_CHECK(names.insert(axis.name).second, "{}: the axis name '{}' appears twice", at, axis.name);
        const ojson& v = a["values"];
        if (v.is_array()) { // the axis name is the config key it sets
            for (const ojson& x : v) {
                MG_CHECK(x.is_primitive() && !x.is_null(), "{}: values holds {}, expected numbers or strings", at,
                         json_excerpt(x));
                const std::string label = x.is_string() ? x.get<std::string>() : x.dump();
                MG_CHECK(good_label(label), "{}: the value {} cannot name a run (letters, digits, '.', '_', '-')", at,
                         json_excerpt(x));
                axis.values.emplace_back(label, ojson{{axis.name, x}});
            }
        } else {
            MG_CHECK(v.is_object(), "{}: values is {}, expected an object of labels or a list", at, json_excerpt(v));
            for (const auto& [label, keys] : v.items()) {
                MG_CHECK(good_label(label), "{}: the label '{}' cannot name a run (letters, digits, '.', '_', '-')", at,
                         text_excerpt(label, 40));
                MG_CHECK(keys.is_object(), "{}: values.{} is {}, expected an object of config keys", at, label,
                         json_excerpt(keys));
                axis.values.emplace_back(label, keys);
            }
        }
        MG_CHECK(!axis.values.empty(), "{}: values is empty", at);
        std::set<std::string> labels;
        for (const auto& [label, keys] : axis.values)
            MG_CHECK(labels.insert(label).second, "{}: the label '{}' appears twice", at, label);
        s.axes.push_back(std::move(axis));
    }
    return s;
}

SweepSpec SweepSpec::load(const std::string& path) {
    const std::string text = data::read_regular_file(path, "sweep: the experiment file", kMaxExperimentBytes);
    SweepSpec s = from_json(parse_json<ojson>(text, fmt::format("sweep: '{}'", path)), fmt::format("sweep: '{}'", path));
    s.path = path;
    return s;
}

std::vector<SweepRun> expand_sweep(const SweepSpec& spec, const std::string& runs_root) {
    std::vector<SweepRun> runs(1);
    for (const SweepAxis& axis : spec.axes) {
        std::vector<SweepRun> next;
        for (const SweepRun& r : runs)
            for (const auto& [label, keys] : axis.values) {
                SweepRun n = r;
                n.labels.emplace_back(axis.name, label);
                next.push_back(std::move(n));
            }
        runs = std::move(next);
    }
    for (SweepRun& r : runs) {
        for (const auto& [axis, label] : r.labels) r.id += fmt::format("{}{}={}", r.id.empty() ? "" : ",", axis, label);
        if (r.id.empty()) r.id = "run";
        nlohmann::json config = nlohmann::json::parse(spec.base.dump()); // set_config_key works on json
        for (size_t a = 0; a < spec.axes.size(); ++a) {
            const auto& keys = std::find_if(spec.axes[a].values.begin(), spec.axes[a].values.end(),
                                            [&](const auto& v) { return v.first == r.labels[a].second; })->second;
            for (const auto& [key, value] : keys.items()) set_config_key(config, key, nlohmann::json::parse(value.dump()));
        }
        r.run_dir = (fs::path(runs_root) / spec.name / r.id).string();
        config["run_dir"] = r.run_dir;
        try {
            (void)TrainConfig::from_json(config);
        } catch (const Error& e) {
            throw Error(fmt::format("sweep '{}': run {}: {}", spec.name, r.id, e.what()));
        }
        r.config = ojson::parse(config.dump());
    }
    return runs;
}

std::string sweep_results_path(const SweepSpec& spec, const std::string& results_dir) {
    const fs::path dir = !results_dir.empty() ? fs::path(results_dir) : fs::path(spec.path).parent_path() / "results";
    return (dir / (spec.name + ".jsonl")).string();
}

std::vector<ojson> read_result_rows(const std::string& results_path, int64_t* skipped) {
    std::vector<ojson> rows;
    int64_t bad = 0;
    if (fs::exists(results_path)) {
        std::istringstream in(data::read_regular_file(results_path, "sweep: the results file", kMaxResultsBytes));
        for (std::string line; std::getline(in, line);) {
            if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
            ojson row = parse_json_or_discard<ojson>(line);
            if (row.is_discarded() || !row.is_object()) ++bad;
            else rows.push_back(std::move(row));
        }
    }
    if (skipped) *skipped = bad;
    return rows;
}

std::map<std::string, ojson> recorded_runs(const std::string& results_path) {
    std::map<std::string, ojson> runs;
    for (const ojson& row : read_result_rows(results_path))
        if (json_string_at(row, "status", "") == "ok" && row.contains("run") && row["run"].is_string())
            runs[row["run"].get<std::string>()] = row.contains("config") ? row["config"] : ojson();
    return runs;
}

std::string newest_checkpoint(const std::string& run_dir) {
    const fs::path dir = fs::path(run_dir) / "checkpoints";
    std::string newest;
    if (!fs::is_directory(dir)) return newest;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string f = e.path().filename().string();
        if (f.starts_with("step_") && f.ends_with(".safetensors") && e.path().string() > newest) newest = e.path().string();
    }
    return newest; // step_<7 digits>: the names sort by step
}

ojson result_row(const SweepSpec& spec, const SweepRun& run, double wall_s, bool resumed) {
    const std::string metrics = (fs::path(run.run_dir) / "metrics.jsonl").string();
    std::istringstream in(data::read_regular_file(metrics, "sweep: a run's metrics log", kMaxResultsBytes));
    ojson test = ojson::object(), valid, train_loss, curve = ojson::array();
    auto score = [](const ojson& row) {
        ojson s = ojson::object();
        for (const auto& [k, v] : row.items())
            if (k != "kind" && k != "split" && k != "variant" && k != "step" && k != "epoch" && !k.ends_with("_s"))
                s[k] = v;
        return s;
    };
    for (std::string line; std::getline(in, line);) {
        const ojson row = parse_json_or_discard<ojson>(line);
        if (row.is_discarded() || !row.is_object()) continue;
        const std::string kind = json_string_at(row, "kind", "");
        if (kind == "test") test[json_string_at(row, "variant", "test")] = score(row);
        else if (kind == "eval") {
            valid = score(row);
            ojson point = {{"step", row.value("step", 0)}};
            for (const char* k : {"loss", "query_acc", "bpb"})
                if (row.contains(k)) point[k] = row[k];
            curve.push_back(point);
        }
        else if (kind == "train" && row.contains("loss")) train_loss = row["loss"];
    }
    const std::string final_ckpt = (fs::path(run.run_dir) / "final.safetensors").string();
    const TrainerState st = read_trainer_state(read_safetensors_header(final_ckpt).metadata, final_ckpt);
    ojson labels = ojson::object();
    for (const auto& [axis, label] : run.labels) labels[axis] = label;
    const TrainConfig cfg = TrainConfig::from_json(nlohmann::json::parse(run.config.dump()));
    const std::time_t now = std::time(nullptr);
    char date[32];
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    return ojson{{"experiment", spec.name},
                 {"run", run.id},
                 {"labels", labels},
                 {"status", "ok"},
                 {"test", test},
                 {"valid", valid},
                 {"train_loss", train_loss},
                 {"curve", curve},
                 {"steps", st.step},
                 {"epochs", st.epoch},
                 {"wall_s", std::round(wall_s * 10) / 10},
                 {"resumed", resumed},
                 {"device", device_name(cfg.resolved_device())},
                 {"commit", build_commit()},
                 {"date", date},
                 {"config", run.config}};
}

void append_result_row(const std::string& results_path, const ojson& row) {
    const fs::path parent = fs::path(results_path).parent_path();
    if (!parent.empty()) fs::create_directories(parent);
    const std::string line = row.dump() + "\n";
    const int fd = ::open(results_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    MG_CHECK(fd >= 0, "sweep: cannot open '{}' for appending: {}", results_path, std::strerror(errno));
    const ssize_t n = ::write(fd, line.data(), line.size());
    const bool ok = n == ssize_t(line.size()) && ::fsync(fd) == 0;
    const int err = errno;
    ::close(fd);
    MG_CHECK(ok, "sweep: appending to '{}' failed: {}", results_path, std::strerror(err));
}

std::string format_sweep_status(const std::string& name, const SweepStatus& s) {
    std::string running;
    for (const auto& [id, step] : s.running)
        running += fmt::format("{}{} @ step {}", running.empty() ? "" : "; ", id, step);
    return fmt::format("sweep {}: {} done{}, {} running{}, {} left | ETA {}", name, s.done,
                       s.failed > 0 ? fmt::format(" ({} failed)", s.failed) : "", s.running.size(),
                       running.empty() ? "" : " (" + running + ")", s.left,
                       s.eta_s < 0 ? std::string("--") : format_duration(s.eta_s));
}

namespace {

// The step of the last row of a metrics log (reads its last 4 KB), 0 when there is none yet.
int64_t last_logged_step(const std::string& metrics) {
    std::ifstream in(metrics, std::ios::binary);
    if (!in) return 0;
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    const std::streamoff from = std::max<std::streamoff>(0, size - 4096);
    in.seekg(from);
    std::string tail(size_t(size - from), '\0');
    in.read(tail.data(), std::streamsize(tail.size()));
    int64_t step = 0;
    std::istringstream lines(tail);
    for (std::string line; std::getline(lines, line);) {
        const nlohmann::json row = parse_json_or_discard(line);
        if (!row.is_discarded() && row.is_object() && row.contains("step") && row["step"].is_number_integer())
            step = row["step"].get<int64_t>();
    }
    return step;
}

struct Child {
    pid_t pid = -1;
    size_t run = 0;
    bool resumed = false;
    std::chrono::steady_clock::time_point t0;
};

std::string log_tail(const std::string& log, size_t lines) {
    std::ifstream in(log);
    std::vector<std::string> all;
    for (std::string line; std::getline(in, line);) {
        all.push_back(line);
        if (all.size() > lines) all.erase(all.begin());
    }
    std::string out;
    for (const std::string& l : all) out += "    " + text_excerpt(l, 200) + "\n";
    return out;
}

} // namespace

SweepSummary run_sweep(const SweepSpec& spec, const SweepOptions& options, std::FILE* out) {
    const std::vector<SweepRun> runs = expand_sweep(spec, options.runs_root);
    const std::string results = sweep_results_path(spec, options.results_dir);
    const std::map<std::string, ojson> recorded = recorded_runs(results); // id -> the config its row ran
    const int64_t jobs = options.jobs > 0 ? options.jobs : spec.jobs;
    SweepSummary sum;
    sum.total = int64_t(runs.size());
    std::vector<size_t> todo;
    for (size_t i = 0; i < runs.size(); ++i) {
        auto it = recorded.find(runs[i].id);
        if (it == recorded.end()) {
            todo.push_back(i);
            continue;
        }
        ++sum.skipped;
        // rows are never edited: a run recorded under another config stays recorded, but say so
        if (nlohmann::json::parse(it->second.dump()) != nlohmann::json::parse(runs[i].config.dump()))
            fmt::print(out, "sweep {}: note: {} is recorded with a config other than the file's now; its row stands "
                            "(move the results file aside to run the experiment afresh)\n",
                       spec.name, runs[i].id);
    }
    fmt::print(out, "sweep {}: {} runs, {} recorded in {}, {} to run, {} at once\n", spec.name, sum.total, sum.skipped,
               results, todo.size(), jobs);
    if (options.dry_run) {
        for (size_t i : todo) {
            const std::string ckpt = newest_checkpoint(runs[i].run_dir);
            fmt::print(out, "  {}: {}\n", runs[i].id, ckpt.empty() ? "start" : "resume from " + ckpt);
        }
        return sum;
    }
    const std::string program = options.program.empty() ? self_program() : options.program;
    StopSignals signals;
    std::vector<Child> running;
    size_t next = 0;
    double done_wall = 0;
    int64_t done_timed = 0;
    const bool tty = ::isatty(::fileno(out));
    auto last_status = std::chrono::steady_clock::now() - std::chrono::hours(1);
    auto status = [&](bool force) {
        const auto now = std::chrono::steady_clock::now();
        const double since = std::chrono::duration<double>(now - last_status).count();
        if (!force && since < (tty ? 1.0 : options.status_every_s)) return;
        last_status = now;
        SweepStatus s;
        s.done = sum.done;
        s.failed = sum.failed;
        s.left = int64_t(todo.size() - next);
        for (const Child& c : running)
            s.running.emplace_back(runs[c.run].id, last_logged_step((fs::path(runs[c.run].run_dir) / "metrics.jsonl").string()));
        if (done_timed > 0) {
            const double per_run = done_wall / double(done_timed);
            s.eta_s = per_run * std::ceil(double(s.left + int64_t(running.size())) / double(jobs));
        }
        const std::string line = format_sweep_status(spec.name, s);
        if (tty) fmt::print(out, "\r{}\x1b[K", line);
        else fmt::print(out, "{}\n", line);
        std::fflush(out);
    };
    auto say = [&](const std::string& line) {
        fmt::print(out, "{}{}\n", tty ? "\r\x1b[K" : "", line);
        std::fflush(out);
    };
    int stop = 0;
    while (next < todo.size() || !running.empty()) {
        if (!stop && (stop = signals.pending())) {
            say(fmt::format("sweep {}: {} received: passing it to the {} run(s) in flight (each writes a checkpoint); "
                            "run the same command again to go on",
                            spec.name, stop == SIGINT ? "SIGINT" : "SIGTERM", running.size()));
            for (const Child& c : running) ::kill(c.pid, stop);
            sum.interrupted = true;
        }
        while (!stop && next < todo.size() && int64_t(running.size()) < jobs) {
            const SweepRun& r = runs[todo[next]];
            fs::create_directories(fs::path(r.run_dir).parent_path());
            const std::string ckpt = newest_checkpoint(r.run_dir);
            std::vector<std::string> args;
            if (ckpt.empty()) {
                const std::string cfg = r.run_dir + ".json";
                data::write_file_atomic(cfg, r.config.dump(2) + "\n");
                args = {"train", "--config", cfg};
            } else {
                args = {"train", "--resume", ckpt};
            }
            Child c;
            c.pid = spawn_logged(program, args, r.run_dir + ".log", /*append=*/true, /*own_group=*/true);
            c.run = todo[next];
            c.resumed = !ckpt.empty();
            c.t0 = std::chrono::steady_clock::now();
            say(fmt::format("sweep {}: start {}{} (log {}.log)", spec.name, r.id,
                            ckpt.empty() ? "" : " from " + fs::path(ckpt).filename().string(), r.run_dir));
            running.push_back(c);
            ++next;
        }
        int st = 0;
        const pid_t pid = ::waitpid(-1, &st, WNOHANG);
        if (pid > 0) {
            auto it = std::find_if(running.begin(), running.end(), [&](const Child& c) { return c.pid == pid; });
            if (it == running.end()) continue;
            const Child c = *it;
            running.erase(it);
            const SweepRun& r = runs[c.run];
            const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - c.t0).count();
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
                append_result_row(results, result_row(spec, r, wall, c.resumed));
                ++sum.done;
                if (!c.resumed) done_wall += wall, ++done_timed;
                say(fmt::format("sweep {}: done {} in {}", spec.name, r.id, format_duration(wall)));
            } else if (stop) {
                say(fmt::format("sweep {}: {} stopped ({}); it goes on from its checkpoint next time", spec.name, r.id,
                                WIFEXITED(st) ? fmt::format("exit {}", WEXITSTATUS(st))
                                              : fmt::format("signal {}", WTERMSIG(st))));
            } else {
                ++sum.failed;
                say(fmt::format("sweep {}: FAILED {} ({}); the end of {}.log:\n{}", spec.name, r.id,
                                WIFEXITED(st) ? fmt::format("exit {}", WEXITSTATUS(st))
                                              : fmt::format("signal {}", WTERMSIG(st)),
                                r.run_dir, log_tail(r.run_dir + ".log", 8)));
            }
            continue;
        }
        status(false);
        ::usleep(200'000);
    }
    if (tty) fmt::print(out, "\n");
    fmt::print(out, "sweep {}: {} of {} runs recorded in {}{}{}\n", spec.name, sum.skipped + sum.done, sum.total, results,
               sum.failed > 0 ? fmt::format("; {} failed (run again to retry them)", sum.failed) : "",
               sum.interrupted ? "; interrupted" : "");
    return sum;
}

} // namespace mg::train
