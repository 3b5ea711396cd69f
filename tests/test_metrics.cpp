// tests/test_metrics.cpp: the run directory, metrics.jsonl and the progress line (train/metrics.h).
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "tests/helpers.h"
#include "tests/train_helpers.h"
#include "train/checkpoint.h"
#include "train/clip.h"
#include "train/guard.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/schedule.h"

using namespace mg;
using namespace mg::train;
using namespace mg::test;
namespace fs = std::filesystem;

// ==== run directory, metrics, progress =========================================================

TEST_CASE("metrics: run directory, config.json and metrics.jsonl", "[train]") {
    TempDir dir("metrics");
    nlohmann::json config = {{"model", {{"d_model", 64}}}, {"lr", 1e-3}};
    const std::string run = make_run_dir(dir.file("runs"), "mqar-64", config);
    CHECK(run == dir.file("runs/mqar-64"));
    CHECK(nlohmann::json::parse(read_all(run + "/config.json")) == config);
    // again (a resumed run): the directory is kept, config.json replaced
    config["lr"] = 2e-3;
    make_run_dir(dir.file("runs"), "mqar-64", config);
    CHECK(nlohmann::json::parse(read_all(run + "/config.json"))["lr"] == 2e-3);
    REQUIRE_ERROR_WITH(make_run_dir(dir.file("runs"), "a/b", config), "run directory", "'a/b'");
    REQUIRE_ERROR_WITH(make_run_dir(dir.file("runs"), "", config), "run directory");

    const std::string path = run + "/metrics.jsonl";
    {
        MetricsLog log(path);
        log.write({{"step", 1}, {"loss", 2.5}, {"split", "train"}});
        log.write({{"step", 2}, {"loss", 2.25}, {"note", "multi\nline"}});
        // flushed: readable while the log is still open
        const std::string text = read_all(path);
        CHECK(std::count(text.begin(), text.end(), '\n') == 2);
        REQUIRE_ERROR_WITH(log.write(nlohmann::json::array({1, 2})), "metrics", "JSON object");
    }
    {
        MetricsLog log(path); // appends
        log.write({{"step", 3}, {"accuracy", 0.5}});
    }
    std::ifstream in(path);
    std::vector<nlohmann::json> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    REQUIRE(lines.size() == 3);
    CHECK(lines[1]["note"] == "multi\nline");
    CHECK(lines[2]["step"] == 3);
    REQUIRE_ERROR_WITH(MetricsLog(dir.file("no/such/metrics.jsonl")), "metrics", "cannot open");
}

TEST_CASE("metrics: progress line formatting", "[train]") {
    Progress p;
    p.epoch = 3;
    p.epochs = 30;
    p.step = 120;
    p.total = 1000;
    p.loss = 1.23456;
    p.accuracy = 0.456;
    p.tokens_per_s = 12345;
    p.eta_s = 5025;
    CHECK(format_progress(p, 10) ==
          "epoch 3/30 | step 120/1000 [=>        ]  12.0% | loss 1.2346 | acc 45.6% | 12.3k tok/s | ETA 1:23:45");
    Progress q;
    q.step = 7;
    CHECK(format_progress(q) == "step 7 | ETA --");
    q.total = 7;
    CHECK(format_progress(q, 4) == "step 7/7 [====] 100.0% | ETA --");
    q.step = 0;
    CHECK(format_progress(q, 4) == "step 0/7 [>   ]   0.0% | ETA --");
    CHECK(format_duration(9.4) == "0:09");
    CHECK(format_duration(723) == "12:03");
    CHECK(format_duration(3723) == "1:02:03");
    CHECK(format_duration(NAN) == "--");
    CHECK(format_duration(-1) == "--");
    CHECK(format_si(950) == "950");
    CHECK(format_si(4.56e6) == "4.56M");
    CHECK(format_si(2.5e9) == "2.50G");
}

TEST_CASE("metrics: progress bar writes plain lines to a file and redraws on a terminal", "[train]") {
    Progress p;
    p.total = 10;
    {
        std::FILE* f = std::tmpfile();
        REQUIRE(f);
        {
            ProgressBar bar(f, 0.0, 3600.0); // not a TTY: a line per hour at most
            CHECK_FALSE(bar.is_tty());
            for (int s = 1; s <= 10; ++s) {
                p.step = s;
                bar.update(p);
            }
            bar.finish();
        }
        std::rewind(f);
        std::string out;
        for (int c; (c = std::fgetc(f)) != EOF;) out.push_back(char(c));
        std::fclose(f);
        // the first update and the final state, each on its own line, no carriage returns
        CHECK(out == format_progress({0, 0, 1, 10}) + "\n" + format_progress({0, 0, 10, 10}) + "\n");
    }
    // a pseudo-terminal: "\r" + line + clear-to-end-of-line, one newline at the end
    int master = ::posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) {
        WARN("skipped the terminal half: no pseudo-terminal available");
        if (master >= 0) ::close(master);
        return;
    }
    std::FILE* tty = std::fopen(::ptsname(master), "w");
    REQUIRE(tty);
    {
        ProgressBar bar(tty, 0.0); // redraw on every update
        CHECK(bar.is_tty());
        p.step = 1;
        bar.update(p);
        p.step = 2;
        bar.update(p);
        bar.finish();
    }
    std::fclose(tty);
    std::string out;
    ::fcntl(master, F_SETFL, O_NONBLOCK);
    char buf[4096];
    for (ssize_t k; (k = ::read(master, buf, sizeof buf)) > 0;) out.append(buf, size_t(k));
    ::close(master);
    // the terminal's output processing may turn "\n" into "\r\n"
    const std::string l1 = format_progress({0, 0, 1, 10}), l2 = format_progress({0, 0, 2, 10});
    CHECK(out.rfind("\r" + l1 + "\x1b[K\r" + l2 + "\x1b[K", 0) == 0);
    CHECK(out.back() == '\n');
}
