// tests/test_sweep.cpp: experiments as grids of runs (train/sweep.h): the file's checks, the grid's
// expansion, a sweep of real `mambagrad train` processes that records one row per run, skips what
// is recorded, retries what failed, and goes on from checkpoints after an interrupt.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/helpers.h"
#include "tests/train_helpers.h"
#include "train/process.h"
#include "train/report.h"
#include "train/sweep.h"

using namespace mg;
using namespace mg::train;
using namespace mg::test;
using ojson = nlohmann::ordered_json;

namespace {

ojson tiny_experiment(const std::string& name) {
    return ojson::parse(R"({
      "name": ")" + name + R"(",
      "base": {"model": {"preset": "zoology", "d_model": 16, "n_layer": 1, "d_state": 4, "vocab_size": "auto"},
               "task": {"grid": "32x2", "vocab_size": 16, "train_examples": 32, "valid_examples": 8,
                        "test_examples": 8, "test_variants": ["standard", "last"]},
               "batch_size": 8, "epochs": 2, "eval_every": 0, "target_accuracy": 0, "device": "cpu",
               "checkpoint_every": 2},
      "axes": [{"name": "model", "values": {"mamba": {}, "gs": {"model.global_selection": {"enabled": true, "k_long": 8}}}},
               {"name": "seed", "values": [0, 1]}],
      "jobs": 2})");
}

SweepSpec write_spec(const TempDir& dir, const ojson& j) {
    std::filesystem::create_directories(dir.file("experiments"));
    const std::string path = dir.file("experiments/" + j["name"].get<std::string>() + ".json");
    std::ofstream(path) << j.dump(2);
    return SweepSpec::load(path);
}

SweepOptions options_in(const TempDir& dir) {
    SweepOptions o;
    o.runs_root = dir.file("runs");
    o.program = cli_binary();
    o.status_every_s = 1e9;
    return o;
}

} // namespace

TEST_CASE("sweep: an experiment file is checked key by key, and every run's config before any runs", "[sweep]") {
    const ojson good = tiny_experiment("t");
    auto with = [&](const char* key, const ojson& v) {
        ojson j = good;
        j[key] = v;
        return j;
    };
    REQUIRE_ERROR_WITH(SweepSpec::from_json(with("colour", 1), "x"), "x: unknown key 'colour'");
    REQUIRE_ERROR_WITH(SweepSpec::from_json(with("name", "a b"), "x"), "x: name is \"a b\"");
    REQUIRE_ERROR_WITH(SweepSpec::from_json(with("base", 3), "x"), "base is 3, expected a train config");
    REQUIRE_ERROR_WITH(SweepSpec::from_json(with("jobs", 0), "x"), "jobs is 0, expected an integer in [1, 64]");
    REQUIRE_ERROR_WITH(SweepSpec::from_json(with("axes", ojson::parse(R"([{"name": "m", "values": {"a/b": {}}}])")), "x"),
                       "x: axes[0]: the label 'a/b' cannot name a run");
    REQUIRE_ERROR_WITH(SweepSpec::from_json(with("axes", ojson::parse(R"([{"name": "seed", "values": [1, 1]}])")), "x"),
                       "the label '1' appears twice");
    REQUIRE_ERROR_WITH(SweepSpec::from_json(with("axes", ojson::parse(R"([{"name": "m", "values": []}])")), "x"),
                       "x: axes[0]: values is empty");
    // a bad key in one run's overrides names that run and the key, before anything starts
    const SweepSpec bad = SweepSpec::from_json(
        with("axes", ojson::parse(R"([{"name": "lr", "values": [0.001, -1]}])")), "x");
    REQUIRE_ERROR_WITH(expand_sweep(bad, "runs"), "sweep 't': run lr=-1:", "lr is -1");
}

TEST_CASE("sweep: the grid is the product of the axes, last axis fastest, each run its own directory", "[sweep]") {
    const SweepSpec s = SweepSpec::from_json(tiny_experiment("grid"), "x");
    const std::vector<SweepRun> runs = expand_sweep(s, "R");
    REQUIRE(runs.size() == 4);
    CHECK(runs[0].id == "model=mamba,seed=0");
    CHECK(runs[1].id == "model=mamba,seed=1");
    CHECK(runs[3].id == "model=gs,seed=1");
    CHECK(runs[3].run_dir == "R/grid/model=gs,seed=1");
    CHECK(runs[3].config["run_dir"] == "R/grid/model=gs,seed=1");
    CHECK(runs[3].config["seed"] == 1);
    CHECK(runs[3].config["model"]["global_selection"]["k_long"] == 8);
    CHECK(runs[3].config["model"]["d_model"] == 16); // the base stays under the overrides
    CHECK_FALSE(runs[0].config["model"].contains("global_selection"));
    CHECK(runs[2].labels == std::vector<std::pair<std::string, std::string>>{{"model", "gs"}, {"seed", "0"}});
    SweepStatus st;
    st.done = 2;
    st.left = 1;
    st.running = {{"model=gs,seed=1", 12}};
    st.eta_s = 75;
    CHECK(format_sweep_status("grid", st) == "sweep grid: 2 done, 1 running (model=gs,seed=1 @ step 12), 1 left | ETA 1:15");
}

TEST_CASE("sweep: runs record one row each, a second sweep skips them, a failed run is retried", "[sweep][cli]") {
    TempDir dir("sweep");
    ojson j = tiny_experiment("two");
    j["axes"] = ojson::parse(R"([{"name": "train_on", "values": {"standard": {"task.variant": "standard"},
                                                                   "broken": {"resume": "none.safetensors"}}}])");
    const SweepSpec spec = write_spec(dir, j);
    std::FILE* out = std::tmpfile();
    SweepSummary s = run_sweep(spec, options_in(dir), out);
    CHECK(s.total == 2);
    CHECK(s.done == 1);
    CHECK(s.failed == 1);
    const std::string results = dir.file("experiments/results/two.jsonl");
    std::vector<ojson> rows = read_result_rows(results);
    REQUIRE(rows.size() == 1);
    const ojson& r = rows[0];
    CHECK(r["run"] == "train_on=standard");
    CHECK(r["status"] == "ok");
    CHECK(r["labels"]["train_on"] == "standard");
    for (const char* v : {"standard", "last"}) {
        INFO(v);
        REQUIRE(r["test"].contains(v));
        CHECK(r["test"][v]["query_acc"].is_number());
        CHECK(r["test"][v]["loss"].is_number());
        CHECK(r["test"][v]["subtasks"].size() == 1);
    }
    CHECK(r["steps"] == 8);
    CHECK(r["epochs"] == 2);
    CHECK(r["resumed"] == false);
    CHECK(r["device"] == "cpu");
    CHECK(r["commit"].is_string());
    CHECK(r["config"]["task"]["variant"] == "standard");
    CHECK(r["valid"]["query_acc"].is_number());
    // the failure was reported with its log's end
    std::rewind(out);
    std::string text(1 << 16, '\0');
    text.resize(std::fread(text.data(), 1, text.size(), out));
    std::fclose(out);
    CHECK(text.find("FAILED train_on=broken (exit 2)") != std::string::npos);
    CHECK(text.find("none.safetensors") != std::string::npos);
    // again: the recorded run is skipped, the failed one tried again (and fails again)
    out = std::tmpfile();
    s = run_sweep(spec, options_in(dir), out);
    std::fclose(out);
    CHECK(s.skipped == 1);
    CHECK(s.done == 0);
    CHECK(s.failed == 1);
    CHECK(read_result_rows(results).size() == 1);
    const auto recorded = recorded_runs(results);
    REQUIRE(recorded.size() == 1);
    CHECK(recorded.begin()->first == "train_on=standard");
    CHECK(recorded.begin()->second["task"]["variant"] == "standard");
    // a file edited after a run was recorded: the row stands, and the sweep says so
    ojson edited = j;
    edited["base"]["lr"] = 0.005;
    const SweepSpec spec2 = write_spec(dir, edited);
    out = std::tmpfile();
    (void)run_sweep(spec2, options_in(dir), out);
    std::rewind(out);
    text.assign(1 << 16, '\0');
    text.resize(std::fread(text.data(), 1, text.size(), out));
    std::fclose(out);
    CHECK(text.find("note: train_on=standard is recorded with a config other than the file's now") != std::string::npos);
    CHECK(read_result_rows(results).size() == 1);
}

TEST_CASE("sweep: an interrupted sweep passes the signal on, and the next one goes on from the checkpoints",
          "[sweep][cli]") {
    TempDir dir("sweepint");
    ojson j = tiny_experiment("long");
    j["base"]["task"]["train_examples"] = 4096;
    j["base"]["epochs"] = 1;
    j["base"]["checkpoint_every"] = 5;
    j["axes"] = ojson::parse(R"([{"name": "seed", "values": [0]}])");
    const SweepSpec spec = write_spec(dir, j);
    // the sweep as a process, interrupted once its run has logged a few steps
    const std::string log = dir.file("sweep.log");
    const pid_t pid = spawn_logged(cli_binary(), {"sweep", spec.path, "--runs", dir.file("runs")}, log,
                                   /*append=*/false, /*own_group=*/false);
    const std::string run_dir = dir.file("runs/long/seed=0");
    for (int i = 0; i < 600 && newest_checkpoint(run_dir).empty(); ++i) ::usleep(50'000);
    REQUIRE_FALSE(newest_checkpoint(run_dir).empty());
    ::kill(pid, SIGINT);
    int status = 0;
    ::waitpid(pid, &status, 0);
    INFO(read_all(log));
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 130);
    CHECK(read_all(log).find("passing it to the 1 run(s) in flight") != std::string::npos);
    const std::string results = dir.file("experiments/results/long.jsonl");
    CHECK(read_result_rows(results).empty());
    // the run wrote a checkpoint on the signal; the next sweep resumes it and records it
    const std::string ckpt = newest_checkpoint(run_dir);
    REQUIRE_FALSE(ckpt.empty());
    std::FILE* out = std::tmpfile();
    const SweepSummary s = run_sweep(spec, options_in(dir), out);
    std::fclose(out);
    CHECK(s.done == 1);
    const std::vector<ojson> rows = read_result_rows(results);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0]["resumed"] == true);
    CHECK(rows[0]["steps"] == 4096 / 8);
}

TEST_CASE("report: groups over seeds, mean ± sd, the paper beside, each cell; says when nothing was learned",
          "[sweep][report]") {
    SweepSpec spec = SweepSpec::from_json(tiny_experiment("rep"), "x");
    spec.paper = ojson::parse(R"({"model=mamba": {"standard": 99.72, "last": 15.44}})");
    spec.description = "A test.";
    auto row = [](const char* model, int seed, double standard, double last) {
        ojson cells = ojson::array();
        cells.push_back({{"L", 32}, {"N", 2}, {"query_acc", standard}, {"token_acc", standard}});
        cells.push_back({{"L", 64}, {"N", 4}, {"query_acc", standard / 2}, {"token_acc", standard / 2}});
        return ojson{{"experiment", "rep"}, {"run", fmt::format("model={},seed={}", model, seed)},
                     {"labels", {{"model", model}, {"seed", std::to_string(seed)}}}, {"status", "ok"},
                     {"test", {{"standard", {{"query_acc", standard}, {"token_acc", standard}, {"subtasks", cells}}},
                               {"last", {{"query_acc", last}, {"token_acc", last}}}}},
                     {"device", "cpu"}, {"commit", "abc1234"}, {"date", "2026-12-07T00:00:00Z"}};
    };
    const std::vector<ojson> rows = {row("mamba", 0, 0.90, 0.10), row("mamba", 1, 0.80, 0.20), row("gs", 0, 0.5, 0.5),
                                     ojson{{"experiment", "other"}, {"status", "ok"}}, ojson{{"status", "failed"}}};
    const std::string md = experiment_report(spec, rows);
    INFO(md);
    CHECK(md.find("## rep\n\nA test.\n") != std::string::npos);
    CHECK(md.find("| model | seeds | standard | last | paper |") != std::string::npos);
    CHECK(md.find("| mamba | 2 | 85.00 ± 7.07 | 15.00 ± 7.07 | 99.72 / 15.44 |") != std::string::npos);
    CHECK(md.find("| gs | 1 | 50.00 | 50.00 | – |") != std::string::npos);
    CHECK(md.find("model=mamba → tested on standard: query accuracy (%) per cell") != std::string::npos);
    CHECK(md.find("| 32 | 85.0 | · |") != std::string::npos);
    CHECK(md.find("| 64 | · | 42.5 |") != std::string::npos);
    CHECK(md.find("Rows: 3 runs; device cpu; commit abc1234; date 2026-12-07.") != std::string::npos);
    CHECK(md.find("No group reaches 1%") == std::string::npos);
    // the cell table's heatmap and the runs' validation curves are linked, and drawn when a
    // directory is given (the markdown is the same)
    CHECK(md.find("![rep__model=mamba__standard](results/rep__model_mamba__standard.png)") != std::string::npos);
    CHECK(md.find("__curves") == std::string::npos); // these rows carry no curves
    std::vector<ojson> with_curves = rows;
    with_curves[0]["curve"] = ojson::parse(R"([{"step": 10, "query_acc": 0.2}, {"step": 20, "query_acc": 0.6}])");
    TempDir images("report_images");
    const std::string drawn = experiment_report(spec, with_curves, images.path.string());
    CHECK(drawn.find("![rep__curves](results/rep__curves.png)") != std::string::npos);
    CHECK(images.listing() ==
          std::vector<std::string>{"rep__curves.png", "rep__model_gs__standard.png", "rep__model_mamba__standard.png"});
    CHECK(read_all(images.file("rep__curves.png")).substr(1, 3) == "PNG");
    CHECK(experiment_report(spec, with_curves) == drawn);
    const std::string none = experiment_report(spec, {row("mamba", 0, 0.0, 0.001)});
    CHECK(none.find("No group reaches 1% query accuracy") != std::string::npos);
    CHECK(experiment_report(spec, {}).find("No result rows yet.") != std::string::npos);
}

TEST_CASE("report: docs/RESULTS.md is what `make results` writes from the committed rows", "[sweep][report]") {
    std::vector<std::string> files;
    for (const auto& e : std::filesystem::directory_iterator("experiments"))
        if (e.path().extension() == ".json") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    REQUIRE(files.size() >= 6);
    const std::string want = results_document(files), have = read_all("docs/RESULTS.md");
    INFO("docs/RESULTS.md is out of date: run `make results` and commit it");
    CHECK(have == want);
}
