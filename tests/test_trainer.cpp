// tests/test_trainer.cpp: the MQAR trainer (train/trainer.h): a tiny model learns Standard MQAR,
// checkpoints round-trip, a resumed run repeats an uninterrupted one bit for bit, and bad configs
// and CLI calls fail with one line naming the key.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/helpers.h"
#include "train/trainer.h"

using namespace mg;
using namespace mg::train;
using nlohmann::json;
using mg::test::require_one_error_line;
using mg::test::Run;
using mg::test::run_cli;
using mg::test::TempDir;

namespace {

namespace fs = std::filesystem;

// A small, fast config on the CPU: no files unless a run_dir is set, no test variants.
TrainConfig tiny_config(const std::string& extra = "{}") {
    json j = {{"model", {{"preset", "zoology"}, {"d_model", 16}, {"n_layer", 1}, {"d_state", 4}, {"vocab_size", "auto"}}},
              {"task", {{"grid", "16x2"}, {"vocab_size", 16}, {"train_examples", 24}, {"valid_examples", 8},
                        {"test_examples", 8}, {"test_variants", json::array()}}},
              {"batch_size", 8}, {"epochs", 4}, {"eval_every", 0}, {"target_accuracy", 0}, {"device", "cpu"},
              {"run_dir", ""}, {"log_every", 1}};
    j.merge_patch(json::parse(extra));
    return TrainConfig::from_json(j);
}

std::vector<double> host(const Tensor& t) { return t.detach().to(DType::f64).to(Device::cpu()).to_vector<double>(); }

} // namespace

TEST_CASE("trainer: a tiny model learns Standard MQAR", "[trainer]") {
    // Keys and values from 7 and 8 tokens, 2 pairs in 16 tokens: the validation query accuracy
    // passes 99% after about 500 steps (lr 1e-2) and the run stops early there. Under
    // AddressSanitizer (several times slower) one pair per sequence, learnt in far fewer steps.
#if defined(__SANITIZE_ADDRESS__)
    const char* cells = "16x1";
#else
    const char* cells = "16x2";
#endif
    TrainConfig cfg = tiny_config(fmt::format(
        R"({{"model": {{"preset": "zoology", "d_model": 32, "n_layer": 2, "d_state": 8, "vocab_size": "auto"}},
            "task": {{"grid": "{}", "train_examples": 8192, "valid_examples": 100}},
            "batch_size": 32, "epochs": 3, "lr": 1e-2, "eval_every": 32, "target_accuracy": 0.99, "log_every": 32}})",
        cells));
    Trainer t(cfg, nullptr);
    TrainSummary s = t.train();
    REQUIRE(s.last_valid);
    INFO("steps " << s.steps << ", valid query accuracy " << s.last_valid->score.query_acc_mean);
    CHECK(s.early_stopped);
    CHECK(s.last_valid->score.query_acc_mean > 0.95);
    // the trained model is scored the same way by a fresh evaluation of the validation split
    EvalResult again = t.evaluate(cfg.task.variant, data::Split::Valid);
    CHECK(again.score.query_acc_mean == s.last_valid->score.query_acc_mean);
}

TEST_CASE("trainer: config JSON round trip and overrides", "[trainer]") {
    TrainConfig a = tiny_config(R"({"lr": 0.004, "betas": [0.8, 0.9], "task": {"seed": 7, "grid": [[16, 2], [32, 4]]}})");
    TrainConfig b = TrainConfig::from_json(a.to_json());
    CHECK(a.to_json().dump() == b.to_json().dump());
    CHECK(b.lr == 0.004);
    CHECK(b.beta1 == 0.8);
    CHECK(b.task.seed == 7u);
    CHECK(b.task.grid == std::vector<data::GridCell>{{16, 2}, {32, 4}});
    // "auto" vocabulary: every token id of the task (W + 20 noise tokens), padded to 8
    CHECK(b.model.vocab_size == 36);

    json j = a.to_json();
    apply_override(j, "task.grid", "64x4,128x8");
    apply_override(j, "task.vocab_size", "64");
    apply_override(j, "model.vocab_size", "auto"); // to_json wrote the resolved 36
    apply_override(j, "model.d_model", "32");
    apply_override(j, "device", "cpu");
    apply_override(j, "task.test_variants", R"(["last"])");
    TrainConfig c = TrainConfig::from_json(j);
    CHECK(c.task.grid == std::vector<data::GridCell>{{64, 4}, {128, 8}});
    CHECK(c.model.d_model == 32);
    CHECK(c.task.test_variants == std::vector<data::MqarVariant>{data::MqarVariant::Last});
}

TEST_CASE("trainer: bad configs name the key and what is allowed", "[trainer][errors]") {
    auto parse = [](const std::string& text) { return TrainConfig::from_json(json::parse(text)); };
    REQUIRE_ERROR_WITH(parse(R"({"lrr": 1})"), "train config", "unknown key 'lrr'", "allowed keys", "lr");
    REQUIRE_ERROR_WITH(parse(R"({"task": {"gird": "64x4"}})"), "unknown key 'task.gird'", "grid");
    REQUIRE_ERROR_WITH(parse(R"({"lr": "fast"})"), "lr is \"fast\"", "expected a number");
    REQUIRE_ERROR_WITH(parse(R"({"batch_size": 0})"), "batch_size is 0", "an integer >= 1");
    REQUIRE_ERROR_WITH(parse(R"({"task": {"variant": "sideways"}})"), "task.variant is \"sideways\"", "standard",
                       "last", "shuffle");
    REQUIRE_ERROR_WITH(parse(R"({"task": {"grid": "64y4"}})"), "task.grid", "64x4,128x8");
    REQUIRE_ERROR_WITH(parse(R"({"task": {"grid": "16x9"}})"), "task.grid cell (16, 9)", "standard");
    REQUIRE_ERROR_WITH(parse(R"({"schedule": "linear"})"), "schedule is \"linear\"", "cosine", "constant");
    REQUIRE_ERROR_WITH(parse(R"({"device": "tpu"})"), "device is \"tpu\"", "auto, cpu, cuda");
    REQUIRE_ERROR_WITH(parse(R"({"betas": [0.9]})"), "betas", "[beta1, beta2]");
    REQUIRE_ERROR_WITH(parse(R"({"model": {"preset": "tiny", "vocab_size": 40}})"), "model.vocab_size is 40",
                       "\"auto\"");
    REQUIRE_ERROR_WITH(parse(R"({"epochs": 0})"), "epochs and max_steps are both 0");
    REQUIRE_ERROR_WITH(parse_train_args({"--lr"}), "--lr needs a value");
    REQUIRE_ERROR_WITH(parse_train_args({"lr", "1"}), "unexpected argument 'lr'");
}

TEST_CASE("trainer: checkpoint round trip", "[trainer]") {
    TempDir dir("ckpt");
    TrainConfig cfg = tiny_config(fmt::format(R"({{"run_dir": "{}", "max_steps": 5}})", dir.file("run")));
    Trainer t(cfg, nullptr);
    TrainSummary s = t.train();
    REQUIRE(s.steps == 5);
    REQUIRE(fs::exists(s.final_checkpoint));
    CHECK(fs::exists(dir.file("run/config.json")));
    CHECK(fs::exists(dir.file("run/metrics.jsonl")));
    for (const char* f : {"run/loss.png", "run/loss.svg", "run/accuracy.png", "run/accuracy.svg"}) CHECK(fs::exists(dir.file(f)));

    // mamba_ssm names, the config and the trainer state in the metadata, AdamW state beside
    SafetensorsFile f = load_safetensors(s.final_checkpoint);
    std::map<std::string, Tensor> by_name = f.by_name();
    CHECK(by_name.count("backbone.embedding.weight"));
    CHECK(by_name.count("backbone.layers.0.mixer.A_log"));
    CHECK(by_name.count("optimizer.exp_avg.backbone.norm_f.weight"));
    CHECK(TrainConfig::from_json(json::parse(f.metadata.at(kCheckpointConfigKey))).to_json() == cfg.to_json());

    LoadedModel m = load_model(s.final_checkpoint, "cpu");
    CHECK(m.state.step == 5);
    const auto trained = t.model().named_parameters(), loaded = m.model->named_parameters();
    REQUIRE(trained.size() == loaded.size());
    for (size_t i = 0; i < trained.size(); ++i) {
        INFO(trained[i].first);
        CHECK(trained[i].first == loaded[i].first);
        CHECK(host(trained[i].second) == host(loaded[i].second)); // bit for bit
    }
    const auto ex = cfg.task.generate(data::MqarVariant::Standard, data::Split::Test, 8).examples;
    CHECK(evaluate_mqar(*m.model, ex, 8).loss == evaluate_mqar(t.model(), ex, 8).loss);
}

TEST_CASE("trainer: a resumed run repeats the uninterrupted run's losses exactly", "[trainer]") {
    TempDir dir("resume");
    // 3 batches per epoch, 10 steps: the checkpoints at steps 3 and 6 sit on epoch ends (the
    // cursor at the end of the plan), step 4 in the middle of an epoch; shuffled epochs.
    const std::string run = dir.file("full");
    TrainConfig cfg = tiny_config(fmt::format(
        R"({{"run_dir": "{}", "max_steps": 10, "checkpoint_every": 3, "keep_checkpoints": 0, "eval_every": 0}})", run));
    REQUIRE(Trainer(cfg, nullptr).batches_per_epoch() == 3);
    Trainer full(cfg, nullptr);
    full.train();
    const std::vector<StepLoss> ref = full.losses();
    REQUIRE(ref.size() == 10);

    auto check_tail = [&](const std::vector<StepLoss>& got, int64_t from_step) {
        REQUIRE(got.size() == size_t(10 - from_step));
        for (size_t i = 0; i < got.size(); ++i) {
            INFO("step " << got[i].step);
            CHECK(got[i].step == ref[size_t(from_step) + i].step);
            CHECK(got[i].loss == ref[size_t(from_step) + i].loss); // bit-exact
        }
    };
    SECTION("from the uninterrupted run's checkpoint at an epoch end") {
        TrainConfig r = cfg;
        r.run_dir = dir.file("resumed");
        r.resume = run + "/checkpoints/step_0000006.safetensors";
        Trainer t(r, nullptr);
        CHECK(t.state().step == 6);
        t.train();
        check_tail(t.losses(), 6);
    }
    SECTION("into the same run directory: metrics.jsonl keeps the rows up to the checkpoint") {
        TrainConfig r = cfg;
        r.resume = run + "/checkpoints/step_0000003.safetensors";
        Trainer t(r, nullptr);
        t.train();
        check_tail(t.losses(), 3);
        std::ifstream in(run + "/metrics.jsonl");
        std::vector<int64_t> steps;
        std::vector<double> losses;
        for (std::string line; std::getline(in, line);) {
            json row = json::parse(line);
            if (row["kind"] == "train") {
                steps.push_back(row["step"].get<int64_t>());
                losses.push_back(row["last_loss"].get<double>());
            }
        }
        CHECK(steps == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
        REQUIRE(losses.size() == ref.size());
        for (size_t i = 0; i < ref.size(); ++i) CHECK(losses[i] == ref[i].loss); // JSON keeps every bit
    }
    SECTION("interrupted mid-epoch, resumed from its own checkpoint through the CLI's argument parser") {
        TrainConfig a = cfg;
        a.run_dir = dir.file("part");
        a.checkpoint_every = 0;
        Trainer first(a, nullptr);
        first.train(/*stop_after_step=*/4);
        REQUIRE(first.losses().size() == 4);
        for (size_t i = 0; i < 4; ++i) CHECK(first.losses()[i].loss == ref[i].loss);
        const std::string ckpt = a.run_dir + "/checkpoints/step_0000004.safetensors";
        REQUIRE(fs::exists(ckpt));
        // no --config: the checkpoint's own config, with the run_dir overridden
        TrainConfig b = parse_train_args({"--resume", ckpt, "--run_dir=" + dir.file("part2")});
        Trainer second(b, nullptr);
        second.train();
        check_tail(second.losses(), 4);
    }
}

TEST_CASE("trainer: a CUDA run follows the CPU run's loss curve", "[trainer][cuda]") {
    MG_REQUIRE_CUDA();
    // The same config, seeds and batch order on both devices: the models start from identical
    // parameters (the counter-based RNG draws the same numbers on CPU and CUDA) and see the same
    // batches, so the curves differ only by float rounding (different summation orders in the
    // kernels), which training amplifies slowly. Over the first 40 steps of a 2-layer model the
    // per-step losses must agree to 1e-3 relative, while the loss itself falls well below its
    // starting value (so the curves are compared where they move).
    const char* extra = R"({"model": {"preset": "zoology", "d_model": 32, "n_layer": 2, "d_state": 8, "vocab_size": "auto"},
        "task": {"grid": "32x4", "train_examples": 1024}, "batch_size": 16, "max_steps": 40, "lr": 1e-2})";
    TrainConfig cpu_cfg = tiny_config(extra);
    TrainConfig gpu_cfg = tiny_config(extra);
    gpu_cfg.device = "cuda";
    Trainer cpu(cpu_cfg, nullptr), gpu(gpu_cfg, nullptr);
    cpu.train();
    gpu.train();
    const std::vector<StepLoss>&a = cpu.losses(), &b = gpu.losses();
    REQUIRE(a.size() == 40);
    REQUIRE(b.size() == 40);
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        INFO("step " << a[i].step << ": cpu " << a[i].loss << ", cuda " << b[i].loss);
        REQUIRE(b[i].step == a[i].step);
        const double rel = std::abs(a[i].loss - b[i].loss) / std::abs(a[i].loss);
        worst = std::max(worst, rel);
        CHECK(rel <= 1e-3);
    }
    WARN("worst relative loss difference over 40 steps: " << worst << " (first loss " << a.front().loss
                                                           << ", last " << a.back().loss << ")");
    CHECK(a.back().loss < 0.8 * a.front().loss);
}

// ---- gradient accumulation ---------------------------------------------------------------------------

namespace {
// 28 examples in each of two lengths (16x2, 32x4), shuffled: with 16 examples per step each
// length gives a step of 16 and one of 12, so with micro-batches of 8 the last step of a length is
// 8 + 4 (unequal: the mean of the two micro-batch means would weight the 4 twice as much).
TrainConfig accum_config(int64_t batch_size, int64_t grad_accum_steps, const std::string& extra = "{}") {
    json j = json::parse(fmt::format(R"({{"task": {{"grid": "16x2,32x4", "train_examples": 28}}, "max_steps": 8,
        "batch_size": {}, "grad_accum_steps": {}}})", batch_size, grad_accum_steps));
    j.merge_patch(json::parse(extra));
    return tiny_config(j.dump());
}
} // namespace

TEST_CASE("trainer: k accumulated micro-batches of B are one batch of kB", "[trainer][accum]") {
    Trainer one(accum_config(16, 1), nullptr);
    REQUIRE(one.batches_per_epoch() == 4);
    one.train();
    for (auto [B, k] : {std::pair<int64_t, int64_t>{8, 2}, {4, 4}, {16, 1}}) {
        INFO("batch_size " << B << ", grad_accum_steps " << k);
        Trainer acc(accum_config(B, k), nullptr);
        REQUIRE(acc.batches_per_epoch() == 4); // the same 16-example steps in the same order
        acc.train();
        REQUIRE(acc.losses().size() == one.losses().size());
        for (size_t i = 0; i < one.losses().size(); ++i) {
            INFO("step " << one.losses()[i].step);
            CHECK(std::abs(acc.losses()[i].loss - one.losses()[i].loss) <= 1e-5 * std::abs(one.losses()[i].loss));
            if (k == 1) CHECK(acc.losses()[i].loss == one.losses()[i].loss); // the plain path is untouched
        }
        const auto pa = acc.model().named_parameters(), po = one.model().named_parameters();
        for (size_t i = 0; i < po.size(); ++i) mg::test::require_close(pa[i].second, po[i].second, 1e-4, 1e-5, po[i].first);
    }
    REQUIRE_ERROR_WITH(accum_config(8, 0), "grad_accum_steps is 0", "an integer >= 1");
}

TEST_CASE("trainer: a run with gradient accumulation resumes exactly", "[trainer][accum]") {
    TempDir dir("accum_resume");
    TrainConfig cfg = accum_config(8, 2, fmt::format(R"({{"run_dir": "{}"}})", dir.file("full")));
    Trainer full(cfg, nullptr);
    full.train();
    const std::vector<StepLoss> ref = full.losses();
    REQUIRE(ref.size() == 8);
    TrainConfig a = cfg;
    a.run_dir = dir.file("part");
    Trainer first(a, nullptr);
    first.train(/*stop_after_step=*/5); // mid-epoch: the cursor counts 16-example steps, not micro-batches
    REQUIRE(first.state().epoch == 1);
    REQUIRE(first.state().cursor == 1);
    const std::string ckpt = a.run_dir + "/checkpoints/step_0000005.safetensors";
    TrainConfig b = parse_train_args({"--resume", ckpt, "--run_dir=" + dir.file("part2")});
    CHECK(b.grad_accum_steps == 2);
    Trainer second(b, nullptr);
    second.train();
    REQUIRE(second.losses().size() == 3);
    for (size_t i = 0; i < 3; ++i) {
        CHECK(second.losses()[i].step == ref[5 + i].step);
        CHECK(second.losses()[i].loss == ref[5 + i].loss); // bit-exact
    }
    const auto pr = second.model().named_parameters(), pf = full.model().named_parameters();
    for (size_t i = 0; i < pf.size(); ++i) CHECK(host(pr[i].second) == host(pf[i].second));
}

TEST_CASE("trainer: the NaN guard names the step", "[trainer][errors]") {
    TrainConfig cfg = tiny_config(R"({"lr": 1e200, "max_steps": 4, "clip_value": 0, "weight_decay": 0})");
    Trainer t(cfg, nullptr);
    REQUIRE_ERROR_WITH(t.train(), "NaN/Inf guard: step ");
}

TEST_CASE("trainer: the CLI trains, evaluates and writes data; bad calls print one error line", "[trainer][cli]") {
    TempDir dir("cli");
    const std::string run = dir.file("run");
    Run tr = run_cli(fmt::format("train --config {} --max_steps 3 --run_dir {} --task.test_variants '[\"standard\",\"last\"]'",
                                 [&] {
                                     std::ofstream(dir.file("cfg.json")) << tiny_config().to_json().dump();
                                     return dir.file("cfg.json");
                                 }(),
                                 run));
    INFO(tr.out);
    REQUIRE(tr.status == 0);
    CHECK(tr.out.find("standard") != std::string::npos);
    CHECK(tr.out.find("mean") != std::string::npos);

    Run ev = run_cli(fmt::format("eval --checkpoint {}/final.safetensors --variant standard,last,shuffle --device cpu", run));
    INFO(ev.out);
    CHECK(ev.status == 0);
    CHECK(ev.out.find("shuffle") != std::string::npos);
    CHECK(ev.out.find("   16    2") != std::string::npos);

    const std::string jsonl = dir.file("d.jsonl");
    Run da = run_cli(fmt::format("data --out {} --variant last --grid 16x2,32x4 --examples 3 --vocab_size 64", jsonl));
    INFO(da.out);
    CHECK(da.status == 0);
    auto examples = data::load_jsonl(jsonl);
    CHECK(examples.size() == 6);

    require_one_error_line(run_cli("train --lrr 1"), {"unknown key 'lrr'", "allowed keys"});
    require_one_error_line(run_cli("train --lr fast"), {"lr is \"fast\"", "expected a number"});
    require_one_error_line(run_cli("train --task.variant sideways"), {"task.variant", "standard, last, shuffle"});
    require_one_error_line(run_cli("train --config /nonexistent.json"), {"/nonexistent.json"});
    require_one_error_line(run_cli("eval --checkpoint /nonexistent.safetensors"), {"/nonexistent.safetensors"});
    require_one_error_line(run_cli(fmt::format("eval --checkpoint {}/final.safetensors --variant nope", run)),
                           {"task.test_variants", "standard"});
    require_one_error_line(run_cli(fmt::format("data --out {} --grid 64x", jsonl)), {"task.grid"});
    require_one_error_line(run_cli("data"), {"--out"});
}
