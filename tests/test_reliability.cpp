// tests/test_reliability.cpp: inputs that crashed the program (issue "Reliability"): a trainer
// state that points outside the data, and JSON nested deep enough to overflow the stack when an
// error message printed it; and a run directory after kills: stale temp files, the checkpoints
// that keep_checkpoints counts.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

#include "data/dir_lock.h"
#include "data/mqar.h"
#include "data/text.h"
#include "tensor/json.h"
#include "tests/helpers.h"
#include "tests/train_helpers.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/plot.h"
#include "train/process.h"
#include "train/trainer.h"

using namespace mg;
using namespace mg::train;
using namespace mg::test;
using nlohmann::json;

namespace {

TrainConfig small_run(const std::string& run_dir) {
    json j = {{"model", {{"preset", "zoology"}, {"d_model", 16}, {"n_layer", 1}, {"d_state", 4}, {"vocab_size", "auto"}}},
              {"task", {{"grid", "16x2"}, {"vocab_size", 16}, {"train_examples", 24}, {"valid_examples", 8},
                        {"test_examples", 8}, {"test_variants", json::array()}}},
              {"batch_size", 8}, {"epochs", 4}, {"eval_every", 0}, {"target_accuracy", 0}, {"device", "cpu"},
              {"run_dir", run_dir}, {"log_every", 1}};
    return TrainConfig::from_json(j);
}

// small_run trained for one step: its run directory holds final.safetensors. Returns its config.
TrainConfig one_step_run(const std::string& run_dir) {
    TrainConfig cfg = small_run(run_dir);
    cfg.max_steps = 1;
    Trainer t(cfg, nullptr);
    t.train();
    return cfg;
}

// A copy of `src` at `dst` whose "mambagrad.trainer" metadata is `state` (JSON text).
void with_trainer_state(const std::string& src, const std::string& dst, const std::string& state) {
    SafetensorsFile f = load_safetensors(src);
    f.metadata["mambagrad.trainer"] = state;
    save_safetensors(dst, f.tensors, f.metadata);
}

std::string nested(int depth, const std::string& inner = "1") {
    return std::string(size_t(depth), '[') + inner + std::string(size_t(depth), ']');
}

} // namespace

TEST_CASE("reliability: a trainer state outside the data is refused before it is used", "[reliability]") {
    TempDir dir("state");
    TrainConfig cfg = small_run(dir.file("run"));
    cfg.max_steps = 5; // 3 batches per epoch: epoch 1, cursor 2 at step 5
    Trainer(cfg, nullptr).train();
    const std::string good = dir.file("run/final.safetensors"), bad = dir.file("bad.safetensors");
    auto resume = [&](const std::string& state) {
        with_trainer_state(good, bad, state);
        TrainConfig r = cfg;
        r.max_steps = 8;
        r.resume = bad;
        r.run_dir = dir.file("resumed");
        Trainer t(r, nullptr);
        t.train();
    };
    const std::string seeds = R"("rng_seed": 1, "rng_offset": 0)";
    // the crash: a negative cursor was only checked from above, then indexed the batch plan
    REQUIRE_ERROR_WITH(resume(R"({"epoch": 1, "step": 5, "cursor": -3, )" + seeds + "}"), bad, "'cursor' is -3",
                       "expected an integer >= 0");
    REQUIRE_ERROR_WITH(resume(R"({"epoch": -1, "step": 5, "cursor": 2, )" + seeds + "}"), "'epoch' is -1");
    REQUIRE_ERROR_WITH(resume(R"({"epoch": 1, "step": -5, "cursor": 2, )" + seeds + "}"), "'step' is -5");
    REQUIRE_ERROR_WITH(resume(R"({"epoch": 1, "step": 5, "cursor": 2.5, )" + seeds + "}"), "'cursor' is 2.5");
    REQUIRE_ERROR_WITH(resume(R"({"epoch": 1, "step": 5, "cursor": 2, "rng_seed": -1, "rng_offset": 0})"),
                       "'rng_seed' is -1");
    REQUIRE_ERROR_WITH(resume(R"({"epoch": 1, "step": 5, "cursor": 2})"), "has no 'rng_seed'");
    REQUIRE_ERROR_WITH(resume(R"([1, 2])"), "expected a JSON object");
    REQUIRE_ERROR_WITH(resume(R"({"epoch": 1, "step": 1, "cursor": 2, )" + seeds + "}"), "step should be epoch * 3 + batch = 5");
    // each field in range but not a position of this plan: 3 batches per epoch, so step 5 is
    // epoch 1 batch 2, not epoch 0 batch 2
    REQUIRE_ERROR_WITH(resume(R"({"epoch": 0, "step": 5, "cursor": 2, )" + seeds + "}"), "step should be epoch * 3 + batch = 2");
    // the true state resumes
    const std::string ok = R"({"epoch": 1, "step": 5, "cursor": 2, )" + seeds + "}";
    CHECK(read_trainer_state({{"mambagrad.trainer", ok}}, "x").cursor == 2);
}

TEST_CASE("reliability: deeply nested JSON gives one short error, never a stack overflow", "[reliability]") {
    TempDir dir("json");
    const std::string deep = nested(100000);
    CHECK(json_nesting_depth(deep) == kMaxJsonDepth + 1); // stops counting past the limit
    CHECK(json_nesting_depth(R"({"a": "[[[[", "b": [[1]]})") == 3); // brackets in strings do not count
    CHECK(json_nesting_depth(nested(kMaxJsonDepth)) == kMaxJsonDepth);
    CHECK_NOTHROW(parse_json(nested(kMaxJsonDepth), "x"));
    REQUIRE_ERROR_WITH(parse_json(nested(kMaxJsonDepth + 1), "where"), "where", "nested more than 64 levels");

    // a config file
    {
        std::ofstream f(dir.file("deep.json"));
        f << R"({"lr": )" << deep << "}";
    }
    REQUIRE_ERROR_WITH(parse_train_args({"--config", dir.file("deep.json")}), "deep.json", "nested more than 64");
    // a flag value
    REQUIRE_ERROR_WITH(parse_train_args({"--lr", deep}), "--lr", "nested more than 64");
    // a checkpoint's config metadata and its header (a tensor's shape)
    TrainConfig cfg = small_run(dir.file("run"));
    cfg.max_steps = 1;
    Trainer(cfg, nullptr).train();
    SafetensorsFile f = load_safetensors(dir.file("run/final.safetensors"));
    f.metadata[kCheckpointConfigKey] = R"({"lr": )" + deep + "}";
    save_safetensors(dir.file("deep_config.safetensors"), f.tensors, f.metadata);
    REQUIRE_ERROR_WITH(checkpoint_config(dir.file("deep_config.safetensors")), "deep_config.safetensors",
                       "nested more than 64");
    {
        const std::string header = R"({"t": {"dtype": "F32", "shape": )" + deep + R"(, "data_offsets": [0, 4]}})";
        std::ofstream out(dir.file("deep_header.safetensors"), std::ios::binary);
        const uint64_t n = header.size();
        out.write(reinterpret_cast<const char*>(&n), 8);
        out << header << "abcd";
    }
    REQUIRE_ERROR_WITH(load_safetensors(dir.file("deep_header.safetensors")), "deep_header.safetensors",
                       "nested more than 64");

    // a large but shallow bad value is echoed as a short prefix, not 140 KB
    std::string wide = "[1";
    for (int i = 0; i < 70000; ++i) wide += ",1";
    wide += "]";
    try {
        parse_train_args({"--lr", wide});
        FAIL("expected an error");
    } catch (const Error& e) {
        const std::string msg = e.what();
        INFO(msg);
        CHECK(msg.find("lr") != std::string::npos);
        CHECK(msg.find("characters)") != std::string::npos);
        CHECK(msg.size() < 400);
    }
    // and the CLI: one error line, exit 2
    require_one_error_line(run_cli("train --lr '" + nested(5000) + "'"), {"--lr", "nested more than 64"});
}

TEST_CASE("reliability: a start or resume removes temp files of dead writers; keep_checkpoints counts the run's "
          "earlier checkpoints", "[reliability]") {
    TempDir dir("stale");
    TrainConfig cfg = small_run(dir.file("run"));
    cfg.max_steps = 5;
    cfg.checkpoint_every = 1;
    cfg.keep_checkpoints = 10;
    {
        Trainer t(cfg, nullptr);
        t.train(3); // "killed" after step 3: step_1 .. step_3 on disk
    }
    // a dead writer's temp files (a reaped child's pid) and a live one's (our parent's)
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    ::waitpid(child, nullptr, 0);
    const std::string dead_ckpt = dir.file(fmt::format("run/checkpoints/step_0000004.safetensors.tmp.{}", child));
    const std::string dead_log = dir.file(fmt::format("run/metrics.jsonl.tmp.{}", child));
    const std::string live = dir.file(fmt::format("run/checkpoints/step_0000009.safetensors.tmp.{}", ::getppid()));
    for (const std::string& f : {dead_ckpt, dead_log, live}) std::ofstream(f) << "partial";
    TrainConfig r = cfg;
    r.resume = dir.file("run/checkpoints/step_0000003.safetensors");
    r.keep_checkpoints = 2;
    Trainer t(r, nullptr);
    CHECK_FALSE(std::filesystem::exists(dead_ckpt));
    CHECK_FALSE(std::filesystem::exists(dead_log));
    CHECK(std::filesystem::exists(live));
    t.train();
    std::vector<std::string> left;
    for (const auto& e : std::filesystem::directory_iterator(dir.file("run/checkpoints")))
        if (e.path().extension() == ".safetensors") left.push_back(e.path().filename().string());
    std::sort(left.begin(), left.end());
    CHECK(left == std::vector<std::string>{"step_0000004.safetensors", "step_0000005.safetensors"});
}

TEST_CASE("reliability: a missing flag value and non-positive counts are named, not misread", "[reliability][cli]") {
    REQUIRE_ERROR_WITH(parse_train_args({"--lr", "--seed", "1"}), "--lr needs a value", "the flag --seed");
    // a negative number is a value, judged as one (not taken for a flag)
    REQUIRE_ERROR_WITH(parse_train_args({"--lr", "-1e-3"}), "lr is -0.001");
    TempDir dir("counts");
    require_one_error_line(run_cli("data --out " + dir.file("x.jsonl") + " --examples -5"), {"--examples is -5", ">= 1"});
    require_one_error_line(run_cli("data --out " + dir.file("x.jsonl") + " --examples 0"), {"--examples is 0"});
    CHECK_FALSE(std::filesystem::exists(dir.file("x.jsonl")));
    require_one_error_line(run_cli("eval --checkpoint " + dir.file("none.safetensors") + " --examples -1"),
                           {"--examples is -1"});
}

TEST_CASE("reliability: a run directory is one run's: a second run is refused naming the holder", "[reliability]") {
    TempDir dir("lock");
    std::filesystem::create_directories(dir.file("run"));
    {
        // in one process: the lock belongs to an open file, so a second lock conflicts
        data::DirLock first(dir.file("run"));
        REQUIRE_ERROR_WITH(data::DirLock(dir.file("run")), "run directory", dir.file("run"),
                           fmt::format("in use by process {}", ::getpid()), "/.lock");
        // a training on that directory is refused before it writes or removes anything there
        std::ofstream(dir.file("run/metrics.jsonl")) << "{\"step\": 1}\n";
        REQUIRE_ERROR_WITH(Trainer(small_run(dir.file("run")), nullptr), "train: run directory",
                           fmt::format("in use by process {}", ::getpid()));
        CHECK(std::filesystem::exists(dir.file("run/metrics.jsonl")));
        CHECK_FALSE(std::filesystem::exists(dir.file("run/config.json")));
    }
    // released: the next run takes it, and nothing is reported as left behind
    {
        data::DirLock again(dir.file("run"));
        CHECK(again.held());
        CHECK(again.previous_holder() == 0);
    }
    // another process holds it: refused with that process's id; killed (-9), the kernel drops its
    // lock, and the next run takes it, reporting the process that died holding it
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    const pid_t child = ::fork();
    if (child == 0) {
        ::close(ready[0]);
        data::DirLock held(dir.file("run"));
        (void)!::write(ready[1], "x", 1);
        ::pause();
        ::_exit(0);
    }
    ::close(ready[1]);
    char c;
    REQUIRE(::read(ready[0], &c, 1) == 1);
    ::close(ready[0]);
    REQUIRE_ERROR_WITH(data::DirLock(dir.file("run")), fmt::format("in use by process {}", child));
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    data::DirLock after(dir.file("run"));
    CHECK(after.previous_holder() == long(child));
}

TEST_CASE("reliability: a trainer holds its run directory for its lifetime and says when the last user died",
          "[reliability]") {
    TempDir dir("lock2");
    TrainConfig cfg = small_run(dir.file("run"));
    cfg.max_steps = 2;
    {
        Trainer t(cfg, nullptr);
        REQUIRE_ERROR_WITH(Trainer(cfg, nullptr), "train: run directory", "is in use by process");
        t.train();
    }
    Trainer again(cfg, nullptr); // released when the first one ended
    (void)again;
    // a lock file naming a dead process (left by a crash) is taken, with a note
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    ::waitpid(child, nullptr, 0);
    TempDir dir2("lock3");
    std::filesystem::create_directories(dir2.file("run"));
    std::ofstream(dir2.file("run/.lock")) << child << "\n";
    std::FILE* out = std::tmpfile();
    {
        Trainer t(small_run(dir2.file("run")), out);
    }
    std::rewind(out);
    std::string text(4096, '\0');
    text.resize(std::fread(text.data(), 1, text.size(), out));
    std::fclose(out);
    CHECK(text.find(fmt::format("last user (process {}) ended without releasing it", child)) != std::string::npos);
}

namespace {

// Starts `mambagrad ARGS` (the program beside the test binary) in the background, its stdout and
// stderr into `log`; returns its pid.
pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log) {
    return spawn_logged(mg::test::cli_binary(), args, log, /*append=*/false, /*own_group=*/false);
}

// Train rows in a metrics file (0 when it does not exist yet).
int train_rows(const std::string& metrics) {
    std::ifstream in(metrics);
    int n = 0;
    for (std::string line; std::getline(in, line);)
        if (line.find("\"kind\":\"train\"") != std::string::npos) ++n;
    return n;
}

} // namespace

TEST_CASE("reliability: SIGINT finishes the step, checkpoints and says how to resume; a second signal ends at once",
          "[reliability][cli]") {
    TempDir dir("signal");
    const std::vector<std::string> run = {"train", "--device", "cpu", "--model.d_model", "16", "--model.n_layer", "1",
                                          "--model.d_state", "4", "--task.grid", "32x4", "--task.train_examples",
                                          "4096", "--task.test_variants", "[]", "--batch_size", "8", "--max_steps",
                                          "100000", "--log_every", "1", "--eval_every", "0", "--target_accuracy", "0"};
    auto with_dir = [&](const std::string& d) {
        std::vector<std::string> a = run;
        a.insert(a.end(), {"--run_dir", d});
        return a;
    };
    auto wait_for_rows = [&](const std::string& metrics, int rows) {
        for (int i = 0; i < 600 && train_rows(metrics) < rows; ++i) ::usleep(50'000);
        REQUIRE(train_rows(metrics) >= rows);
    };
    // one signal: the run stops after the step in flight with a checkpoint and exit status 130
    const pid_t pid = spawn_cli(with_dir(dir.file("run")), dir.file("log"));
    wait_for_rows(dir.file("run/metrics.jsonl"), 3);
    ::kill(pid, SIGINT);
    int status = 0;
    ::waitpid(pid, &status, 0);
    const std::string log = read_all(dir.file("log"));
    INFO(log);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 130);
    const std::string said = "interrupted (SIGINT) after step ";
    const size_t at = log.find(said);
    REQUIRE(at != std::string::npos);
    const int64_t step = std::stoll(log.substr(at + said.size()));
    CHECK(step >= 3);
    const std::string ckpt = dir.file(fmt::format("run/checkpoints/step_{:07}.safetensors", step));
    CHECK(log.find("checkpoint " + ckpt + "; go on with `mambagrad train --resume " + ckpt + "`") != std::string::npos);
    REQUIRE(std::filesystem::exists(ckpt));
    CHECK(read_trainer_state(load_safetensors(ckpt).metadata, ckpt).step == step);
    // the run goes on from it, to the next interrupt
    const pid_t again = spawn_cli({"train", "--resume", ckpt}, dir.file("log2"));
    wait_for_rows(dir.file("run/metrics.jsonl"), int(step) + 3);
    // two signals: the second ends the process at once, by a signal (which of the two counts as
    // second is the kernel's choice when both arrive together)
    ::kill(again, SIGINT);
    ::kill(again, SIGTERM);
    ::waitpid(again, &status, 0);
    INFO(read_all(dir.file("log2")));
    REQUIRE(WIFSIGNALED(status));
    CHECK((WTERMSIG(status) == SIGINT || WTERMSIG(status) == SIGTERM));
}

TEST_CASE("reliability: eval, generate and resume refuse a checkpoint with a NaN weight or a damaged byte",
          "[reliability][cli]") {
    TempDir dir("nanckpt");
    const TrainConfig cfg = one_step_run(dir.file("run")); // run/final.safetensors
    const std::string good = dir.file("run/final.safetensors");
    SafetensorsFile f = load_safetensors(good);
    for (auto& [name, t] : f.tensors)
        if (name == "backbone.layers.0.mixer.D") {
            std::vector<float> v = t.to_vector<float>();
            v[1] = NAN;
            t = Tensor::from_vector(v, t.shape());
        }
    save_safetensors(dir.file("nan.safetensors"), f.tensors, f.metadata);
    require_one_error_line(run_cli("eval --checkpoint " + dir.file("nan.safetensors") + " --device cpu"),
                           {"tensor 'backbone.layers.0.mixer.D'", "non-finite", "nan at index (1)"});
    TrainConfig r = cfg;
    r.resume = dir.file("nan.safetensors");
    r.run_dir = dir.file("run2");
    REQUIRE_ERROR_WITH(Trainer(r, nullptr), "tensor 'backbone.layers.0.mixer.D'", "non-finite");
    // one flipped byte in the data section of a good checkpoint
    std::string bytes = read_all(good);
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    bytes[8 + size_t(n) + 100] = char(bytes[8 + size_t(n) + 100] ^ 0x40);
    write_all(dir.file("flip.safetensors"), bytes);
    require_one_error_line(run_cli("eval --checkpoint " + dir.file("flip.safetensors") + " --device cpu"),
                           {"flip.safetensors", "does not match the file's checksum"});
}

TEST_CASE("reliability: a checkpoint whose header disagrees with its config is refused before allocation, by every "
          "command alike", "[reliability][cli]") {
    TempDir dir("hdr");
    const TrainConfig cfg = one_step_run(dir.file("run")); // run/final.safetensors
    // the config claims d_model 8192 (a 4 GB embedding), the file holds the small model's tensors
    SafetensorsFile f = load_safetensors(dir.file("run/final.safetensors"));
    json c = json::parse(f.metadata.at("mambagrad.config"));
    c["model"]["d_model"] = 8192;
    f.metadata["mambagrad.config"] = c.dump();
    save_safetensors(dir.file("big.safetensors"), f.tensors, f.metadata);
    for (const std::string cmd : {"eval --device cpu --checkpoint ", "info --checkpoint ", "probe --device cpu --checkpoint "}) {
        INFO(cmd);
        require_one_error_line(run_cli(cmd + dir.file("big.safetensors")),
                               {"big.safetensors", "tensor 'backbone.embedding.weight'", "its config says (40,8192)"});
    }
    TrainConfig r = cfg;
    r.resume = dir.file("big.safetensors");
    r.model.d_model = 8192;
    r.run_dir = dir.file("run2");
    REQUIRE_ERROR_WITH(Trainer(r, nullptr), "train --resume", "its config says (40,8192)");
    // and a tensor the config does not know is refused by info as by eval
    f = load_safetensors(dir.file("run/final.safetensors"));
    f.tensors.emplace_back("backbone.extra", Tensor::zeros({2}));
    save_safetensors(dir.file("extra.safetensors"), f.tensors, f.metadata);
    for (const std::string cmd : {"eval --device cpu --checkpoint ", "info --checkpoint "})
        require_one_error_line(run_cli(cmd + dir.file("extra.safetensors")),
                               {"tensor 'backbone.extra' (2) is neither a parameter of its config nor optimizer state"});
}

TEST_CASE("reliability: a directory, a pipe or a device where a file is expected is refused before reading",
          "[reliability][cli]") {
    TempDir dir("notfile");
    const std::string fifo = dir.file("fifo");
    REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0); // reading it would block forever: never opened
    for (const auto& [path, says] : std::vector<std::pair<std::string, std::string>>{
             {dir.path.string(), "is a directory, expected a file"},
             {fifo, "is not a regular file (a pipe, socket or device)"},
             {"/dev/urandom", "is not a regular file (a pipe, socket or device)"}}) {
        INFO(path);
        REQUIRE_ERROR_WITH(data::load_text_corpus(path, 0.1, 0.1), "text corpus", "'" + path + "'", says);
        require_one_error_line(run_cli("train --config " + path), {"train: --config", "'" + path + "'", says});
    }
    require_one_error_line(run_cli("train --config " + dir.file("missing.json")),
                           {"train: --config", "missing.json", "No such file"});
}

TEST_CASE("reliability: what a run will write is checked before the first step", "[reliability]") {
    TempDir dir("outputs");
    std::filesystem::create_directories(dir.file("a"));
    std::ofstream(dir.file("a/checkpoints")) << "a file where the checkpoint folder goes";
    REQUIRE_ERROR_WITH(Trainer(small_run(dir.file("a")), nullptr), "train: cannot use", "a/checkpoints",
                       "for checkpoints");
    std::filesystem::create_directories(dir.file("b/final.safetensors"));
    REQUIRE_ERROR_WITH(Trainer(small_run(dir.file("b")), nullptr), "b/final.safetensors",
                       "exists and is not a file");
    std::filesystem::create_directories(dir.file("c/metrics.jsonl"));
    REQUIRE_ERROR_WITH(Trainer(small_run(dir.file("c")), nullptr), "c/metrics.jsonl", "exists and is not a file");
    // a good directory leaves no trace of the check
    { Trainer ok(small_run(dir.file("d")), nullptr); }
    CHECK(std::filesystem::is_directory(dir.file("d/checkpoints")));
    CHECK(std::filesystem::is_empty(dir.file("d/checkpoints")));
}

TEST_CASE("reliability: a kill -9 at a random moment, then --resume, gives the uninterrupted run's log and weights",
          "[reliability][cli]") {
    TempDir dir("kill9");
    // log_every 3 and eval_every 5 against checkpoint_every 1: a resume lands between log and eval
    // rows, so the running sums in the checkpoint are exercised
    auto run = [&](const std::string& run_dir) {
        return std::vector<std::string>{
            "train", "--device", "cpu", "--model.d_model", "16", "--model.n_layer", "1", "--model.d_state", "4",
            "--task.grid", "32x4", "--task.train_examples", "96", "--task.valid_examples", "16",
            "--task.test_variants", "[\"standard\"]", "--task.test_examples", "16", "--batch_size", "8", "--epochs", "3",
            "--log_every", "3", "--eval_every", "5",
            "--target_accuracy", "0", "--checkpoint_every", "1", "--run_dir", run_dir};
    };
    auto finish = [&](pid_t pid, const std::string& log) {
        int status = 0;
        ::waitpid(pid, &status, 0);
        INFO(read_all(log));
        REQUIRE(WIFEXITED(status));
        REQUIRE(WEXITSTATUS(status) == 0);
    };
    const auto t0 = std::chrono::steady_clock::now();
    finish(spawn_cli(run(dir.file("full")), dir.file("full.log")), dir.file("full.log"));
    const double full_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::vector<json> want = metrics_rows_without_timing(dir.file("full/metrics.jsonl"));
    const SafetensorsFile want_final = load_safetensors(dir.file("full/final.safetensors"));
    REQUIRE(want.size() > 10);

    const uint64_t seed = std::random_device{}();
    std::mt19937_64 rng(seed);
    for (int trial = 0; trial < 3; ++trial) {
        const std::string name = fmt::format("cut{}", trial);
        const double at_s = std::uniform_real_distribution<double>(0.0, full_s)(rng);
        INFO("seed " << seed << ", trial " << trial << ": SIGKILL after " << at_s << " s of a " << full_s << " s run");
        const pid_t pid = spawn_cli(run(dir.file(name)), dir.file(name + ".log"));
        ::usleep(useconds_t(at_s * 1e6));
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        // resume from the newest checkpoint (a fresh start when the kill came before the first)
        std::vector<std::string> ckpts;
        if (std::filesystem::is_directory(dir.file(name + "/checkpoints")))
            for (const auto& e : std::filesystem::directory_iterator(dir.file(name + "/checkpoints")))
                if (e.path().extension() == ".safetensors") ckpts.push_back(e.path().string());
        std::sort(ckpts.begin(), ckpts.end());
        INFO("resumed from " << (ckpts.empty() ? std::string("nothing") : ckpts.back()));
        const std::vector<std::string> again =
            ckpts.empty() ? run(dir.file(name)) : std::vector<std::string>{"train", "--resume", ckpts.back()};
        finish(spawn_cli(again, dir.file(name + ".log2")), dir.file(name + ".log2"));
        const std::vector<json> got = metrics_rows_without_timing(dir.file(name + "/metrics.jsonl"));
        REQUIRE(got.size() == want.size());
        for (size_t i = 0; i < want.size(); ++i) {
            INFO("row " << i << "\n  want " << want[i].dump() << "\n  got  " << got[i].dump());
            CHECK(got[i] == want[i]);
        }
        const SafetensorsFile got_final = load_safetensors(dir.file(name + "/final.safetensors"));
        REQUIRE(got_final.tensors.size() == want_final.tensors.size());
        for (size_t i = 0; i < want_final.tensors.size(); ++i) {
            INFO(want_final.tensors[i].first);
            CHECK(got_final.tensors[i].first == want_final.tensors[i].first);
            CHECK(same_bits(got_final.tensors[i].second, want_final.tensors[i].second));
        }
        CHECK(read_trainer_state(got_final.metadata, "got") == read_trainer_state(want_final.metadata, "want"));
    }
}

TEST_CASE("reliability: bytes that are not UTF-8 are named and shown escaped, never an internal error",
          "[reliability][cli]") {
    SECTION("utf8_invalid_at follows RFC 3629") {
        const size_t ok = std::string_view::npos;
        for (const auto& [text, at] : std::vector<std::pair<std::string, size_t>>{
                 {"", ok}, {"plain", ok}, {"h\xC3\xA9llo", ok}, {"\xE2\x82\xAC", ok}, {"\xF0\x9F\x98\x80", ok},
                 {"\xFF", 0}, {"a\xC0\x80", 1},            // overlong NUL
                 {"\xED\xA0\x80", 0},                       // a UTF-16 surrogate
                 {"\xF4\x90\x80\x80", 0},                   // above U+10FFFF
                 {"ab\xE2\x82", 2}, {"\xC3", 0},            // cut short
                 {"\xE2\x28\xA1", 0}, {"ok\x80", 2}}) {     // a bad continuation, a lone one
            INFO(text_excerpt(text));
            CHECK(utf8_invalid_at(text) == at);
        }
    }
    SECTION("echoes escape bad bytes and control characters") {
        CHECK(text_excerpt("a\xFF\x01" "b\xC3\xA9") == "a\\xFF\\x01b\xC3\xA9");
        CHECK(text_excerpt(std::string(100, 'x'), 10) == "xxxxxxxxxx... (100 characters)");
        CHECK(json_excerpt(json(std::string("r\xFF"))) == "\"r\xEF\xBF\xBD\""); // U+FFFD, no throw
    }
    SECTION("a config string that is not UTF-8 is refused by key") {
        TempDir dir("utf8");
        require_one_error_line(run_cli("train --device cpu --run_dir '" + dir.file("r\xFF") + "'"),
                               {"train config: run_dir is", "expected UTF-8 text", "0xFF"});
        require_one_error_line(run_cli("train --device cpu --task.kind lm --task.corpus 'a\xFE.txt'"),
                               {"task.corpus is", "expected UTF-8 text", "0xFE"});
        require_one_error_line(run_cli("train --device cpu --task '{\"corpus\": \"\xFF\"}'"),
                               {"train config: task is", "expected a JSON object"});
        const Run r = run_cli("train --device cpu '--se\xFF" "ed' 3");
        require_one_error_line(r, {"unknown key 'se\\xFFed'"});
        CHECK(r.out.find('\xFF') == std::string::npos);
    }
}

TEST_CASE("reliability: an example count beyond this machine's memory is refused by name before allocating",
          "[reliability][cli]") {
    TempDir dir("huge");
    require_one_error_line(run_cli("data --out " + dir.file("x.jsonl") + " --examples 999999999999"),
                           {"999999999999 examples per grid cell", "of host memory, more than this machine's"});
    CHECK_FALSE(std::filesystem::exists(dir.file("x.jsonl")));
    require_one_error_line(run_cli("train --device cpu --task.train_examples 999999999999 --run_dir " + dir.file("r")),
                           {"999999999999 examples per grid cell", "host memory"});
    data::MqarConfig c = data::zoology_config(64, 4);
    c.num_examples = 1000;
    const uint64_t small = data::mqar_grid_bytes(c, data::zoology_grid());
    CHECK(small > 1000 * 3 * 8 * 64);    // at least the inputs and labels
    CHECK(small < 1000 * 3 * 16 * 512);  // and not wildly more
}

TEST_CASE("reliability: JSON of the wrong kind in a checkpoint's config, its optimizer state or a metrics row",
          "[reliability][cli]") {
    TempDir dir("kinds");
    (void)one_step_run(dir.file("run")); // run/final.safetensors
    const SafetensorsFile f = load_safetensors(dir.file("run/final.safetensors"));
    for (const auto& [config, says] : std::vector<std::pair<std::string, std::string>>{
             {"[1]", "is [1], expected a JSON object"},
             {"{\"task\": 5}", "task is 5, expected a JSON object"},
             {"{\"model\": \"x\"}", "model is \"x\", expected a JSON object"},
             {"{\"task\": {\"kind\": 7}}", "task.kind is 7"}}) {
        Metadata m = f.metadata;
        m["mambagrad.config"] = config;
        save_safetensors(dir.file("bad.safetensors"), f.tensors, m);
        for (const std::string cmd : {"eval --device cpu --checkpoint ", "generate --device cpu --checkpoint ",
                                      "info --checkpoint "}) {
            INFO(cmd << config);
            const Run r = run_cli(cmd + dir.file("bad.safetensors"));
            require_one_error_line(r, {says});
            CHECK(r.out.find("internal") == std::string::npos);
        }
    }
    // the optimizer state and the trainer state, as --resume reads them
    AdamW opt({{"w", Tensor::zeros({3})}});
    REQUIRE_ERROR_WITH(opt.load_state({}, "{\"type\": 5}"), "AdamW::load_state", "\"type\": \"adamw\"");
    REQUIRE_ERROR_WITH(opt.load_state({}, "{\"type\": \"adamw\", \"steps\"}"), "not valid JSON", "parse error");
    try {
        (void)parse_json("{\"a\" 1}", "a test");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("json.exception") == std::string::npos);
    }
    // metrics rows: a resume keeps objects whose step is an integer <= the checkpoint's, drops the rest
    const std::string log = "{\"kind\":\"train\",\"step\":3}\n[1]\n{\"step\":\"x\"}\n{\"step\":9}\nnot json\n"
                            "{\"kind\":\"start\"}\n{\"step\":2.5}\n{\"step\":5";
    int64_t kept = 0;
    CHECK(metrics_kept_on_resume(log, 5, -1, &kept) == "{\"kind\":\"train\",\"step\":3}\n{\"kind\":\"start\"}\n");
    CHECK(kept == 2);
    // a checkpoint that counted its rows: the first that many JSON objects, whatever their step
    CHECK(metrics_kept_on_resume(log, 5, 3, &kept) == "{\"kind\":\"train\",\"step\":3}\n{\"step\":\"x\"}\n{\"step\":9}\n");
    CHECK(kept == 3);
    // and the charts skip what they cannot read
    int64_t skipped = 0;
    const auto charts = run_charts("{\"kind\":5,\"step\":1}\n{\"kind\":\"eval\",\"step\":1,\"query_acc\":0.5,"
                                   "\"subtasks\":[{\"L\":\"a\",\"N\":2,\"query_acc\":0.3},{\"L\":64,\"N\":4,\"query_acc\":0.25}]}\n"
                                   "{\"kind\":\"test\",\"step\":2,\"variant\":3,\"query_acc\":0.5}\n",
                                   &skipped);
    CHECK_FALSE(charts.empty());
}
