// tests/test_trainer.cpp: the MQAR trainer (train/trainer.h): a tiny model learns Standard MQAR,
// checkpoints round-trip, a resumed run repeats an uninterrupted one bit for bit, and bad configs
// and CLI calls fail with one line naming the key.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numbers>

#include "tests/helpers.h"
#include "tests/train_helpers.h"
#include "train/generate.h"
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

const data::Tokenizer& bytes_tokenizer() {
    static const std::unique_ptr<data::Tokenizer> t = data::load_tokenizer("");
    return *t;
}

std::vector<double> host(const Tensor& t) { return t.detach().to(DType::f64).to(Device::cpu()).to_vector<double>(); }

} // namespace

TEST_CASE("trainer: a tiny model learns Standard MQAR", "[trainer]") {
    // Keys and values from 7 and 8 tokens, 2 pairs in 16 tokens: the validation query accuracy
    // passes 99% after 384-512 steps (lr 1e-2; seeds 0-5 all did, 2026-11-30) of the 1024 allowed,
    // and the run stops early there. A smaller model (d_model 32, d_state 8) was fragile: where it
    // crossed 99% moved with float rounding (a different GEMM split left it at 97% after its 768
    // steps) and one seed in six stalled at 75%. Under AddressSanitizer (several times slower)
    // one pair per sequence, learnt in far fewer steps.
#if defined(__SANITIZE_ADDRESS__)
    const char* cells = "16x1";
#else
    const char* cells = "16x2";
#endif
    TrainConfig cfg = tiny_config(fmt::format(
        R"({{"model": {{"preset": "zoology", "d_model": 64, "n_layer": 2, "d_state": 16, "vocab_size": "auto"}},
            "task": {{"grid": "{}", "train_examples": 8192, "valid_examples": 100}},
            "batch_size": 32, "epochs": 4, "lr": 1e-2, "eval_every": 32, "target_accuracy": 0.99, "log_every": 32}})",
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

// The paper's contrast in miniature (issue "A Transformer baseline"): attention recalls a key
// wherever its pair sits, the Mamba learns where the pairs were during training. Both learn
// Standard MQAR (2 pairs in 16 tokens, vocab 32) to 99% validation accuracy and stop; then both
// are scored on Shuffle (the pairs at random slots of the first half). Measured 2026-12-07 on the
// CPU, seeds 0-2: the Transformer 86.5-87.5% on Shuffle after 448-512 steps, the Mamba
// 51.5-66.5% after 608-736 steps: a gap of 20-36 points; the test asks for 10. Each model at the
// learning rate it trains well at (the Transformer diverges from 1e-2 and stalls near 50%, as
// small attention models do at that rate). About 15 s; skipped under AddressSanitizer, where the
// suite's other transformer tests cover the same code at small sizes.
#if !defined(__SANITIZE_ADDRESS__)
TEST_CASE("trainer: a small Transformer learns Standard MQAR and, unlike the Mamba, keeps it on Shuffle", "[trainer][transformer]") {
    auto run = [](const std::string& model, double lr) {
        TrainConfig cfg = tiny_config(fmt::format(
            R"({{"model": {},
                "task": {{"grid": "16x2", "vocab_size": 32, "train_examples": 8192, "valid_examples": 100,
                          "test_examples": 200}},
                "batch_size": 32, "epochs": 4, "lr": {}, "eval_every": 32, "target_accuracy": 0.99, "log_every": 64}})",
            model, lr));
        Trainer t(cfg, nullptr);
        TrainSummary s = t.train();
        REQUIRE(s.last_valid);
        return std::pair{s.last_valid->score.query_acc_mean,
                         t.evaluate(data::MqarVariant::Shuffle, data::Split::Test).score.query_acc_mean};
    };
    const auto [tr_std, tr_shuffle] =
        run(R"({"arch": "transformer", "preset": "zoology", "d_model": 64, "n_layer": 2, "d_state": null, "vocab_size": "auto"})", 1e-3);
    const auto [mb_std, mb_shuffle] =
        run(R"({"preset": "zoology", "d_model": 64, "n_layer": 2, "d_state": 16, "vocab_size": "auto"})", 1e-2);
    INFO("transformer: standard " << tr_std << ", shuffle " << tr_shuffle << "; mamba: standard " << mb_std
                                  << ", shuffle " << mb_shuffle);
    CHECK(tr_std > 0.95);
    CHECK(mb_std > 0.95);
    CHECK(tr_shuffle > 0.75);
    CHECK(tr_shuffle > mb_shuffle + 0.10);
}
#endif

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
    // model.arch picks which keys the model section may hold
    REQUIRE_ERROR_WITH(parse(R"({"model": {"arch": "rnn"}})"), "model.arch is \"rnn\"", "mamba, transformer");
    REQUIRE_ERROR_WITH(parse(R"({"model": {"arch": "transformer", "d_state": 16}})"), "train config",
                       "unknown key 'model.d_state'", "n_head");
    REQUIRE_ERROR_WITH(parse(R"({"model": {"n_head": 4}})"), "unknown key 'model.n_head'");
    REQUIRE_ERROR_WITH(parse(R"({"model": {"arch": "transformer", "preset": "tiny"}})"), "preset", "pythia-70m");
    REQUIRE_ERROR_WITH(parse(R"({"model": {"arch": "transformer", "n_head": 3}})"), "model.d_model = 512",
                       "model.n_head = 3");
    REQUIRE_ERROR_WITH(parse(R"({"lr_scale": {"long_conv": -1}})"), "lr_scale", "multipliers >= 0");
    REQUIRE_ERROR_WITH(parse(R"({"lr_scale": 0.1})"), "lr_scale is 0.1", "long_conv");
    REQUIRE_ERROR_WITH(parse(R"({"lr_scale": {".long_conv": 0.1}})"), "lr_scale");
    REQUIRE_ERROR_WITH(parse(R"({"precision": "bf16"})"), "precision", "fp32 or tf32", "not available yet");
    REQUIRE_ERROR_WITH(parse(R"({"precision": "fp16"})"), "precision", "fp32", "tf32");
    CHECK(parse(R"({"precision": "tf32", "device": "cuda"})").precision == "tf32");
    // refused where the device is known: "cpu", or "auto" on a machine without a GPU
    REQUIRE_ERROR_WITH(Trainer(tiny_config(R"({"precision": "tf32"})")), "train: precision is \"tf32\"",
                       "CUDA devices only", "device \"cpu\" resolved to the CPU");
    if (cuda_device_count() == 0)
        REQUIRE_ERROR_WITH(Trainer(tiny_config(R"({"precision": "tf32", "device": "auto"})")), "train: precision is "
                           "\"tf32\"", "resolved to the CPU");
    REQUIRE_ERROR_WITH(parse_train_args({"--lr"}), "--lr needs a value");
    REQUIRE_ERROR_WITH(parse_train_args({"lr", "1"}), "unexpected argument 'lr'");
}

TEST_CASE("trainer: lr_scale reaches the optimizer by name component; a key that selects nothing is refused by the config", "[trainer]") {
    TrainConfig cfg = tiny_config(R"({"lr_scale": {"x_proj": 0, "mixer": 0.5}})");
    CHECK(cfg.lr_scale_of("backbone.layers.0.mixer.x_proj.weight") == 0.0);
    CHECK(cfg.lr_scale_of("backbone.layers.0.mixer.dt_proj.weight") == 0.5);
    CHECK(cfg.lr_scale_of("backbone.embedding.weight") == 1.0);
    CHECK(cfg.lr_scale_of("backbone.layers.0.mixer.x_proj_extra.weight") == 0.5); // components, not prefixes
    CHECK(TrainConfig::from_json(json(cfg.to_json())).lr_scale == cfg.lr_scale);
    cfg.epochs = 1;
    Trainer t(cfg);
    Tensor frozen;
    for (const auto& [name, p] : t.model().named_parameters())
        if (name.find("x_proj") != std::string::npos) frozen = p;
    REQUIRE(frozen.defined());
    const std::vector<double> before = host(frozen);
    t.train();
    CHECK(host(frozen) == before); // scale 0: frozen through a whole run
    // refused when the config is read, before a model exists
    REQUIRE_ERROR_WITH(tiny_config(R"({"lr_scale": {"long_conv": 0.1}})"), "train config", "lr_scale key 'long_conv'",
                       "selects no parameter");
    REQUIRE_ERROR_WITH(tiny_config(R"({"lr_scale": {"mixer.x": 0.1}})"), "lr_scale key 'mixer.x'");
    // a key (or a device) of control characters or of any length is quoted as a short excerpt: the fuzzer
    // found the key printed raw, so one key could make a message of megabytes or of several lines
    for (const std::string& cfg_text : {fmt::format(R"({{"lr_scale": {{"a\nb{}": 0.1}}}})", std::string(5000, 'x')),
                                        fmt::format(R"({{"device": "c\u0001{}"}})", std::string(5000, 'y'))}) {
        std::string message;
        try {
            (void)tiny_config(cfg_text);
        } catch (const Error& e) {
            message = e.what();
        }
        INFO(message.substr(0, 300));
        REQUIRE(!message.empty());
        CHECK(message.size() < 400);
        CHECK(std::none_of(message.begin(), message.end(), [](char ch) { return ch >= 0 && ch < 0x20; }));
    }
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
    std::vector<StepLoss> ref;
    {
        Trainer full(cfg, nullptr); // ended before a resume reuses its run directory (one run per directory)
        full.train();
        ref = full.losses();
    }
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

TEST_CASE("trainer: precision tf32 trains on the GPU like fp32 and is restored when the Trainer ends", "[trainer][cuda]") {
    MG_REQUIRE_CUDA();
    // the same run in fp32 and in tf32: TF32's input rounding (2^-11 relative) perturbs each
    // step a little, so the curves stay close (not equal) while the loss falls as far
    const char* extra = R"({"model": {"preset": "zoology", "d_model": 32, "n_layer": 2, "d_state": 8, "vocab_size": "auto"},
        "task": {"grid": "32x4", "train_examples": 1024}, "batch_size": 16, "max_steps": 40, "lr": 1e-2, "device": "cuda"})";
    TrainConfig fp32_cfg = tiny_config(extra), tf32_cfg = tiny_config(extra);
    tf32_cfg.precision = "tf32";
    std::vector<StepLoss> a, b;
    {
        Trainer t(fp32_cfg, nullptr);
        t.train();
        a = t.losses();
    }
    {
        Trainer t(tf32_cfg, nullptr);
        CHECK(matmul_precision() == MatmulPrecision::tf32);
        t.train();
        b = t.losses();
    }
    CHECK(matmul_precision() == MatmulPrecision::fp32);
    REQUIRE(a.size() == 40);
    REQUIRE(b.size() == 40);
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i].loss - b[i].loss) / std::abs(a[i].loss));
    INFO("worst relative loss difference fp32 vs tf32 over 40 steps: " << worst);
    CHECK(worst > 0);    // it did run differently
    CHECK(worst <= 0.05);
    CHECK(b.back().loss < 0.8 * b.front().loss);
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

// flashlongconv's dropout (p 0.2, one mask per (b, d)) is on in training mode only.
TEST_CASE("trainer: evaluation turns dropout off; a run with dropout resumes exactly", "[trainer][flash]") {
    TempDir dir("flash");
    const std::string gs = R"("model": {"preset": "zoology", "d_model": 16, "n_layer": 1, "d_state": 4,
        "vocab_size": "auto", "global_selection": {"enabled": true, "kind": "flashlongconv", "k_long": 8}})";
    TrainConfig cfg = tiny_config(fmt::format(R"({{{}, "run_dir": "{}", "max_steps": 6, "checkpoint_every": 3,
        "keep_checkpoints": 0}})", gs, dir.file("full")));
    Trainer full(cfg, nullptr);
    const auto ex = cfg.task.generate(data::MqarVariant::Standard, data::Split::Test, 8).examples;

    SECTION("evaluation: the same loss every call, as in eval mode, and the training flag restored") {
        REQUIRE(full.model().is_training());
        const double a = evaluate_mqar(full.model(), ex, 8).loss, b = evaluate_mqar(full.model(), ex, 8).loss;
        CHECK(a == b);
        CHECK(full.model().is_training());
        full.model().eval();
        CHECK(evaluate_mqar(full.model(), ex, 8).loss == a);
        full.model().train();
        // the training forward does draw masks: two calls differ
        autograd::NoGrad no_grad;
        const data::MqarBatch batch = data::make_batch(ex, {0, 1, 2, 3}, Device::cpu());
        CHECK(host(full.model().hidden_states(batch.inputs)) != host(full.model().hidden_states(batch.inputs)));
    }
    SECTION("resume: the dropout generator's state travels in the checkpoint") {
        full.train();
        const std::vector<StepLoss> ref = full.losses();
        REQUIRE(ref.size() == 6);
        const NamedTensors p = full.model().named_parameters();
        const TrainerState s3 = load_checkpoint(dir.file("full/checkpoints/step_0000003.safetensors"), p, nullptr).state;
        const TrainerState s6 = load_checkpoint(dir.file("full/checkpoints/step_0000006.safetensors"), p, nullptr).state;
        CHECK(s3.rng_offset < s6.rng_offset); // masks were drawn from it between the saves
        TrainConfig r = cfg;
        r.run_dir = dir.file("resumed");
        r.resume = dir.file("full/checkpoints/step_0000003.safetensors");
        Trainer t(r, nullptr);
        t.train();
        REQUIRE(t.losses().size() == 3);
        for (size_t i = 0; i < 3; ++i) {
            INFO("step " << t.losses()[i].step);
            CHECK(t.losses()[i].loss == ref[3 + i].loss); // bit-exact
        }
    }
}

TEST_CASE("trainer: the NaN guard names the step", "[trainer][errors]") {
    TrainConfig cfg = tiny_config(R"({"lr": 1e200, "max_steps": 4, "clip_value": 0, "weight_decay": 0})");
    Trainer t(cfg, nullptr);
    REQUIRE_ERROR_WITH(t.train(), "NaN/Inf guard: step ");
    if (cuda::available()) {
        // the CUDA run checks each step one step late (train/guard.h) but names the same step
        std::string cpu_msg, cuda_msg;
        try { Trainer(cfg, nullptr).train(); } catch (const Error& e) { cpu_msg = e.what(); }
        cfg.device = "cuda";
        try { Trainer(cfg, nullptr).train(); } catch (const Error& e) { cuda_msg = e.what(); }
        INFO(cpu_msg << " | " << cuda_msg);
        REQUIRE(cpu_msg.find("NaN/Inf guard: step ") == 0);
        CHECK(cuda_msg.substr(0, cuda_msg.find(':', 16)) == cpu_msg.substr(0, cpu_msg.find(':', 16)));
    }
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

// ---- language modelling (task.kind lm) -------------------------------------------------------------

namespace {

// About 6 KB of plain English, the same every time: sentences built from short word lists.
std::string tiny_text() {
    const std::vector<std::string> who = {"The king", "A shepherd", "His servant", "The people", "My brother"};
    const std::vector<std::string> did = {"went up to", "came down from", "looked upon", "dwelt in", "spake unto"};
    const std::vector<std::string> what = {"the city.", "the mountain.", "the house of the Lord.", "the river.",
                                           "the land of Egypt."};
    std::string text;
    for (int i = 0; text.size() < 6000; ++i)
        text += who[size_t(i % 5)] + " " + did[size_t((i / 5) % 5)] + " " + what[size_t((i * 3 + i / 25) % 5)] +
                (i % 4 == 3 ? "\n" : " ");
    return text;
}

// A tiny LM config on `corpus` (CPU, no files unless a run_dir is set).
TrainConfig tiny_lm_config(const std::string& corpus, const std::string& extra = "{}") {
    json j = {{"model", {{"preset", "zoology"}, {"d_model", 32}, {"n_layer", 1}, {"d_state", 4}, {"vocab_size", "auto"}}},
              {"task", {{"kind", "lm"}, {"corpus", corpus}, {"seq_len", 32}, {"valid_fraction", 0.1},
                        {"test_fraction", 0.1}}},
              {"batch_size", 8}, {"max_steps", 60}, {"lr", 1e-2}, {"eval_every", 0}, {"device", "cpu"},
              {"run_dir", ""}, {"log_every", 1}};
    j.merge_patch(json::parse(extra));
    return TrainConfig::from_json(j);
}

struct LmFixture {
    TempDir dir{"lm"};
    std::string corpus = dir.file("tiny.txt");
    LmFixture() { std::ofstream(corpus, std::ios::binary) << tiny_text(); }
};

} // namespace

TEST_CASE("trainer lm: a tiny byte-level model learns a small text", "[trainer][lm]") {
    LmFixture fx;
    TrainConfig cfg = tiny_lm_config(fx.corpus);
    CHECK(cfg.model.vocab_size == data::kTextVocab); // "auto"
    CHECK(cfg.model.padded_vocab() == 264);
    Trainer t(cfg, nullptr);
    // 6025 bytes + BOS + EOS: 4823 train tokens, 8 x 32 per batch: 18 steps per epoch
    CHECK(t.batches_per_epoch() == 18);
    const EvalResult before = t.evaluate_lm_split(data::Split::Valid);
    // an untrained model is close to uniform over the 264 logits: ln 264 = 5.58 nats
    CHECK(before.loss > 5.0);
    TrainSummary s = t.train();
    CHECK(s.steps == 60);
    REQUIRE(s.last_valid);
    const std::vector<StepLoss>& l = t.losses();
    double first = 0, last = 0;
    for (size_t i = 0; i < 5; ++i) first += l[i].loss / 5, last += l[l.size() - 1 - i].loss / 5;
    INFO("train loss " << first << " -> " << last << ", valid bpb " << before.bits_per_byte() << " -> "
                       << s.last_valid->bits_per_byte());
    CHECK(last < first - 1.5);
    CHECK(s.last_valid->bits_per_byte() < before.bits_per_byte() - 2.5);
    // the reported numbers are one quantity: bpb = loss / ln 2, perplexity = e^loss; the
    // valid split (602 tokens) in stride-32 windows: 18 windows of 32 targets
    CHECK(s.last_valid->labelled == 18 * 32);
    CHECK(s.last_valid->bits_per_byte() == s.last_valid->loss / std::numbers::ln2);
    CHECK(s.last_valid->perplexity() == std::exp(s.last_valid->loss));
    // evaluation is deterministic
    CHECK(t.evaluate_lm_split(data::Split::Valid).loss == s.last_valid->loss);
}

TEST_CASE("trainer lm: a resumed run repeats the uninterrupted run's losses exactly", "[trainer][lm]") {
    LmFixture fx;
    const std::string run = fx.dir.file("full");
    TrainConfig cfg = tiny_lm_config(fx.corpus, fmt::format(R"({{"run_dir": "{}", "max_steps": 24, "checkpoint_every": 4,
                                                                "keep_checkpoints": 0}})", run));
    Trainer full(cfg, nullptr);
    full.train();
    const std::vector<StepLoss> ref = full.losses();
    REQUIRE(ref.size() == 24);
    for (int64_t at : {4, 20}) { // step 20 is past the first epoch's 18 steps
        {
            TrainConfig b = parse_train_args({"--resume", run + fmt::format("/checkpoints/step_{:07}.safetensors", at),
                                              "--run_dir=" + fx.dir.file(fmt::format("resumed{}", at))});
            CHECK(b.task.is_lm());
            Trainer t(b, nullptr);
            INFO("resumed from the checkpoint at step " << at);
            CHECK(t.state().step == at);
            t.train();
            REQUIRE(t.losses().size() == size_t(24 - at));
            for (size_t i = 0; i < t.losses().size(); ++i) {
                INFO("step " << t.losses()[i].step);
                CHECK(t.losses()[i].step == ref[size_t(at) + i].step);
                CHECK(t.losses()[i].loss == ref[size_t(at) + i].loss); // bit-exact
            }
        }
    }
    // metrics rows: train rows carry bpb, eval rows loss / bpb / perplexity
    std::ifstream in(run + "/metrics.jsonl");
    int evals = 0, trains = 0;
    for (std::string line; std::getline(in, line);) {
        json row = json::parse(line);
        if (row["kind"] == "train") {
            ++trains;
            CHECK(row["bpb"].get<double>() == data::bits_per_byte(row["loss"].get<double>()));
        } else if (row["kind"] == "eval") {
            ++evals;
            CHECK(row["split"] == "valid");
            CHECK(row["bpb"].get<double>() == data::bits_per_byte(row["loss"].get<double>()));
            CHECK(row["perplexity"].get<double>() == std::exp(row["loss"].get<double>()));
            CHECK(row["tokens"].get<int64_t>() == 18 * 32);
        }
    }
    CHECK(trains == 24);
    CHECK(evals == 2); // eval_every 0: at the end of the first epoch and at the end
}

TEST_CASE("trainer lm: bad LM configs name the key", "[trainer][lm][errors]") {
    LmFixture fx;
    auto parse = [](const std::string& text) { return TrainConfig::from_json(json::parse(text)); };
    REQUIRE_ERROR_WITH(parse(R"({"task": {"kind": "chat"}})"), "task.kind is \"chat\"", "mqar, lm");
    REQUIRE_ERROR_WITH(parse(R"({"task": {"kind": "lm", "grid": "16x2"}})"), "unknown key 'task.grid'", "seq_len",
                       "corpus");
    REQUIRE_ERROR_WITH(parse(R"({"task": {"kind": "lm", "seq_len": 0}})"), "task.seq_len is 0", "an integer >= 1");
    REQUIRE_ERROR_WITH(parse(R"({"task": {"kind": "lm", "valid_fraction": 0.9}})"), "task.valid_fraction is 0.9",
                       "in [0, 0.5]");
    REQUIRE_ERROR_WITH(parse(R"({"task": {"kind": "lm"}, "model": {"preset": "zoology", "vocab_size": 256}})"),
                       "model.vocab_size is 256", "258");
    REQUIRE_ERROR_WITH(Trainer(tiny_lm_config(fx.dir.file("nope.txt")), nullptr), "cannot read", "nope.txt");
    REQUIRE_ERROR_WITH(Trainer(tiny_lm_config(fx.corpus, R"({"task": {"seq_len": 5000}})"), nullptr), "train split",
                       "task.seq_len + 1 = 5001");
    REQUIRE_ERROR_WITH(Trainer(tiny_lm_config(fx.corpus, R"({"task": {"valid_fraction": 0.001}})"), nullptr),
                       "task.valid_fraction gives 6 tokens", "set it to 0");
    // --task.kind on the command line switches the whole task section (and the default run_dir)
    TrainConfig c = parse_train_args({"--task.kind", "lm", "--task.corpus", fx.corpus});
    CHECK(c.task.is_lm());
    CHECK(c.run_dir == "runs/lm");
    CHECK(TrainConfig::from_json(c.to_json()).to_json() == c.to_json());
}

TEST_CASE("generate: greedy recurrent generation is the parallel model's argmax, token by token", "[trainer][lm]") {
    // f64, so the recurrent and parallel logits agree to ~1e-12 and no argmax can flip
    nn::MambaConfig mc = nn::MambaConfig::preset("zoology", 16);
    mc.n_layer = 2;
    mc.d_state = 4;
    mc.vocab_size = data::kTextVocab;
    Generator gen(11);
    nn::MambaLM model(mc, {DType::f64, Device::cpu()}, gen);
    const std::string prompt = "The king ";
    GenerateOptions o;
    o.temperature = 0;
    o.max_new_tokens = 24;
    std::vector<int32_t> streamed;
    const std::vector<int32_t> out = generate_ids(model, bytes_tokenizer(), data::encode_bytes(prompt), o,
                                                  [&](int32_t id) { streamed.push_back(id); });
    CHECK(streamed == out);
    std::vector<int32_t> ids = {data::kTextBos};
    for (int32_t c : data::encode_bytes(prompt)) ids.push_back(c);
    const size_t prompt_len = ids.size();
    for (size_t i = 0; i <= out.size() && i < size_t(o.max_new_tokens); ++i) {
        const int64_t n = int64_t(ids.size());
        const std::vector<double> z = host(model.forward(Tensor::from_vector(ids, {1, n})).narrow(1, n - 1, 1));
        int32_t best = 0; // argmax over the bytes and EOS
        for (int32_t v = 1; v < data::kTextVocab; ++v)
            if (v != data::kTextBos && z[size_t(v)] > z[size_t(best)]) best = v;
        INFO("generated token " << i);
        if (i == out.size()) {
            CHECK(best == data::kTextEos); // generation stopped early: EOS was the argmax
        } else {
            CHECK(out[i] == best);
            ids.push_back(best);
        }
    }
    CHECK(ids.size() - prompt_len == out.size());
}

TEST_CASE("generate: seeded sampling is deterministic; top_k and temperature do what they say", "[trainer][lm]") {
    // sample_token on hand-made logits: three live candidates with probabilities 0.5, 0.3, 0.2
    std::vector<double> z(264, -1e30);
    z['a'] = std::log(0.5), z['b'] = std::log(0.3), z[data::kTextEos] = std::log(0.2);
    z[data::kTextBos] = 100;      // never drawn: not a candidate
    z[data::kTextVocab + 1] = 100; // padding: never drawn
    GenerateOptions o;
    CHECK(sample_token(z, bytes_tokenizer(), {.temperature = 0}, 0) == 'a');
    std::map<int32_t, int> counts;
    const int draws = 20000;
    for (int i = 0; i < draws; ++i) ++counts[sample_token(z, bytes_tokenizer(), o, uint64_t(i))];
    CHECK(counts.size() == 3);
    CHECK(std::abs(counts['a'] / double(draws) - 0.5) < 0.015);
    CHECK(std::abs(counts['b'] / double(draws) - 0.3) < 0.015);
    CHECK(std::abs(counts[data::kTextEos] / double(draws) - 0.2) < 0.015);
    counts.clear();
    for (int i = 0; i < 2000; ++i) ++counts[sample_token(z, bytes_tokenizer(), {.temperature = 1, .top_k = 2}, uint64_t(i))];
    CHECK((counts.size() == 2 && counts.count('a') && counts.count('b')));
    CHECK(std::abs(counts['a'] / 2000.0 - 0.625) < 0.04); // 0.5 / (0.5 + 0.3)
    counts.clear();
    for (int i = 0; i < 2000; ++i) ++counts[sample_token(z, bytes_tokenizer(), {.temperature = 0.25}, uint64_t(i))];
    CHECK(std::abs(counts['a'] / 2000.0 - 0.8657) < 0.03); // p^(1/T): 0.5^4 / (0.5^4 + 0.3^4 + 0.2^4)

    nn::MambaConfig mc = nn::MambaConfig::preset("zoology", 16);
    mc.n_layer = 1;
    mc.vocab_size = data::kTextVocab;
    Generator gen(3);
    nn::MambaLM model(mc, {DType::f32, Device::cpu()}, gen);
    const std::vector<int32_t> prompt = data::encode_bytes("And ");
    GenerateOptions s{.max_new_tokens = 40, .temperature = 1.0, .top_k = 0, .seed = 5};
    const std::vector<int32_t> a = generate_ids(model, bytes_tokenizer(), prompt, s), b = generate_ids(model, bytes_tokenizer(), prompt, s);
    CHECK(a == b);
    s.seed = 6;
    CHECK(generate_ids(model, bytes_tokenizer(), prompt, s) != a);
    GenerateOptions k1{.max_new_tokens = 20, .temperature = 1.0, .top_k = 1, .seed = 9};
    GenerateOptions greedy{.max_new_tokens = 20, .temperature = 0};
    CHECK(generate_ids(model, bytes_tokenizer(), prompt, k1) == generate_ids(model, bytes_tokenizer(), prompt, greedy));
    CHECK(generate_ids(model, bytes_tokenizer(), prompt, {.max_new_tokens = 0}).empty());
    // a batch of samples: sample b is generate_ids with seed + b, drawn in one batch through the model
    const auto batch = generate_batch(model, bytes_tokenizer(), prompt, s, 3);
    REQUIRE(batch.size() == 3);
    for (uint64_t b = 0; b < 3; ++b) {
        GenerateOptions sb = s;
        sb.seed = s.seed + b;
        CHECK(batch[b] == generate_ids(model, bytes_tokenizer(), prompt, sb));
    }
    const auto greedy3 = generate_batch(model, bytes_tokenizer(), prompt, greedy, 3);
    CHECK((greedy3[0] == greedy3[1] && greedy3[1] == greedy3[2]));
    REQUIRE_ERROR_WITH(generate_batch(model, bytes_tokenizer(), prompt, greedy, 0), "--num_samples is 0");

    REQUIRE_ERROR_WITH(generate_ids(model, bytes_tokenizer(), prompt, {.temperature = -1}), "--temperature is -1");
    REQUIRE_ERROR_WITH(generate_ids(model, bytes_tokenizer(), prompt, {.top_k = -2}), "--top_k is -2");
    std::vector<int32_t> bad_prompt = {'a', 300};
    REQUIRE_ERROR_WITH(generate_ids(model, bytes_tokenizer(), bad_prompt, greedy), "prompt id 300 at index 1", "not a token");
    mc.vocab_size = 64;
    nn::MambaLM small(mc, {DType::f32, Device::cpu()}, gen);
    REQUIRE_ERROR_WITH(generate_ids(small, bytes_tokenizer(), prompt, greedy), "vocab_size is 64", "258 ids",
                       "this model's tokenizer");
}

TEST_CASE("trainer lm: the CLI trains, evaluates and generates; bad calls print one error line", "[trainer][lm][cli]") {
    LmFixture fx;
    const std::string run = fx.dir.file("run"), cfg = fx.dir.file("lm.json");
    std::ofstream(cfg) << tiny_lm_config(fx.corpus, R"({"max_steps": 6})").to_json().dump();
    Run tr = run_cli(fmt::format("train --config {} --run_dir {}", cfg, run));
    INFO(tr.out);
    REQUIRE(tr.status == 0);
    CHECK(tr.out.find("LM on ") != std::string::npos);
    CHECK(tr.out.find("through bytes") != std::string::npos);
    CHECK(tr.out.find("bits/byte") != std::string::npos);
    CHECK(tr.out.find("test split after 6 steps") != std::string::npos);
    CHECK(tr.out.find("sample (temperature 0.8") != std::string::npos);
    const std::string ckpt = run + "/final.safetensors";

    Run ev = run_cli(fmt::format("eval --checkpoint {} --device cpu", ckpt));
    INFO(ev.out);
    CHECK(ev.status == 0);
    CHECK(ev.out.find("valid split of") != std::string::npos);
    CHECK(ev.out.find("bits/byte") != std::string::npos);
    CHECK(ev.out.find("(576 bytes)") != std::string::npos); // 18 windows of 32
    Run ev_test = run_cli(fmt::format("eval --checkpoint {} --split test --device cpu", ckpt));
    CHECK(ev_test.status == 0);
    CHECK(ev_test.out.find("test split of") != std::string::npos);

    // generation: the prompt, then the sample; the same seed gives the same text
    const std::string gen = fmt::format("generate --checkpoint {} --prompt 'The king' --max_new_tokens 30 --seed 3", ckpt);
    Run g1 = run_cli(gen), g2 = run_cli(gen + " --device cpu");
    INFO(g1.out);
    CHECK(g1.status == 0);
    CHECK(g1.out.rfind("The king", 0) == 0);
    CHECK(g1.out.size() <= 8 + 30 + 1);
    CHECK(g1.out == g2.out);
    Run greedy = run_cli(fmt::format("generate --checkpoint {} --temperature 0 --max_new_tokens 10", ckpt));
    CHECK(greedy.status == 0);

    // an MQAR checkpoint for the error paths
    const std::string mqar_run = fx.dir.file("mqar");
    TrainConfig m = tiny_config(fmt::format(R"({{"run_dir": "{}", "max_steps": 1}})", mqar_run));
    Trainer(m, nullptr).train();
    const std::string mqar_ckpt = mqar_run + "/final.safetensors";
    require_one_error_line(run_cli("generate --checkpoint " + mqar_ckpt), {"task.kind mqar", "not a language model"});
    require_one_error_line(run_cli("generate --checkpoint /nonexistent.safetensors"), {"/nonexistent.safetensors"});
    require_one_error_line(run_cli("generate"), {"--checkpoint"});
    require_one_error_line(run_cli(fmt::format("generate --checkpoint {} --temperature -1", ckpt)),
                           {"--temperature is -1"});
    require_one_error_line(run_cli(fmt::format("eval --checkpoint {} --variant standard", ckpt)),
                           {"language model", "--variant"});
    require_one_error_line(run_cli(fmt::format("eval --checkpoint {} --corpus {}", mqar_ckpt, fx.corpus)),
                           {"--corpus", "MQAR"});
    require_one_error_line(run_cli(fmt::format("eval --checkpoint {} --corpus /nonexistent.txt", ckpt)),
                           {"cannot read", "/nonexistent.txt"});
    require_one_error_line(run_cli(fmt::format("train --task.kind lm --task.corpus {} --task.grid 16x2", fx.corpus)),
                           {"unknown key 'task.grid'"});
}

TEST_CASE("trainer: a resumed run writes the uninterrupted run's metrics file, row for row", "[trainer]") {
    // log_every 4 with a pause at step 6 and again at 13: resumes inside a logging window, whose
    // loss sum and count (and the gradient-norm monitor's memory) come back from the checkpoint
    TempDir dir("resume_log");
    auto cfg_for = [&](const std::string& name) {
        return tiny_config(fmt::format(R"({{"run_dir": "{}", "max_steps": 20, "log_every": 4, "eval_every": 5,
                                            "log_grad_norms": true}})", dir.file(name)));
    };
    {
        Trainer full(cfg_for("full"), nullptr);
        full.train();
    }
    {
        Trainer part(cfg_for("part"), nullptr);
        part.train(6);
    }
    for (int64_t at : {6, 13}) {
        TrainConfig r = cfg_for("part");
        r.resume = dir.file(fmt::format("part/checkpoints/step_{:07}.safetensors", at));
        Trainer t(r, nullptr);
        if (at == 6) t.train(13);
        else t.train();
    }
    const std::vector<json> want = mg::test::metrics_rows_without_timing(dir.file("full/metrics.jsonl")),
                            got = mg::test::metrics_rows_without_timing(dir.file("part/metrics.jsonl"));
    REQUIRE(want.size() > 6);
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        INFO("row " << i << "\n  want " << want[i].dump() << "\n  got  " << got[i].dump());
        CHECK(got[i] == want[i]);
    }
}
