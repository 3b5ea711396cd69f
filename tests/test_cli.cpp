// tests/test_cli.cpp: the `mambagrad` program (built beside the test binary): it works, and a bad
// call prints exactly one `error:` line and exits with status 2; `info` prints a model's parameter
// table (train/info.h).
#include <functional>
#include <set>

#include "nn/mamba.h"
#include "tests/helpers.h"
#include "train/build_info.h"
#include "train/checkpoint.h"
#include "train/command_line.h"
#include "train/info.h"
#include "train/trainer.h"

using namespace mg;

using mg::test::require_one_error_line;
using mg::test::run_cli;
using mg::test::Run;
using mg::test::TempDir;

TEST_CASE("cli: info and gradcheck run", "[cli]") {
    Run info = run_cli("info");
    INFO(info.out);
    CHECK(info.status == 0);
    CHECK(info.out.find("CPU GEMM") != std::string::npos);
    // the build's commit, as result rows record it (train/build_info.h)
    CHECK(info.out.rfind("mambagrad (commit " + mg::train::build_commit() + ")\n", 0) == 0);
    Run gc = run_cli("gradcheck --op div --device cpu");
    INFO(gc.out);
    CHECK(gc.status == 0);
    CHECK(gc.out.find("ok    div") != std::string::npos);
    Run list = run_cli("gradcheck --list");
    CHECK(list.out.find("matmul") != std::string::npos);
}

TEST_CASE("cli: bad calls print one error line and exit 2", "[cli][errors]") {
    require_one_error_line(run_cli("gradcheck --op nosuchop"), {"unknown op 'nosuchop'"});
    require_one_error_line(run_cli("gradcheck --op add --device tpu"), {"unknown device 'tpu'"});
    require_one_error_line(run_cli("gradcheck --op add --device cuda:9"), {"cuda:9"});
    require_one_error_line(run_cli("gradcheck --bogus"), {"--bogus"});
    require_one_error_line(run_cli("frobnicate"), {"frobnicate"});
}

// ---- info: a model's parameter table ---------------------------------------------------------------

TEST_CASE("cli: info prints a model's parameter table and totals", "[cli][info]") {
    // mamba-130m without building it: the published count, and the paper's "+4M" global selection
    Run m = run_cli("info --model.preset 130m");
    INFO(m.out);
    REQUIRE(m.status == 0);
    CHECK(m.out.find("parameters: 129,135,360 (516,541,440 bytes in fp32)") != std::string::npos);
    CHECK(m.out.find("global selection adds 0") != std::string::npos);
    const size_t row = m.out.find("backbone.layers.23.mixer.dt_proj.weight");
    REQUIRE(row != std::string::npos);
    const std::string line = m.out.substr(row, m.out.find('\n', row) - row);
    CHECK(line.find(" (1536,48) ") != std::string::npos);
    CHECK(line.find(" 73,728  f32") != std::string::npos);
    Run gs = run_cli("info --model.preset 130m --model.global_selection.enabled true --model.global_selection.k_long 128");
    INFO(gs.out);
    REQUIRE(gs.status == 0);
    CHECK(gs.out.find("without global selection: 129,135,360; global selection adds 4,755,456") != std::string::npos);
    CHECK(gs.out.find("in 24 of 24 layers") != std::string::npos);

    // --json: the table equals a built model's named_parameters (a small config, global selection in layer 1)
    Run js = run_cli("info --json --model.d_model 24 --model.n_layer 3 --model.global_selection "
                     "'{\"enabled\": true, \"k_long\": 7, \"layers\": [1]}'");
    INFO(js.out);
    REQUIRE(js.status == 0);
    const nlohmann::json j = nlohmann::json::parse(js.out);
    const train::TrainConfig cfg = train::parse_train_args(
        {"--model.d_model", "24", "--model.n_layer", "3", "--model.global_selection", R"({"enabled": true, "k_long": 7, "layers": [1]})"});
    Generator g(0);
    nn::MambaLM model(cfg.model, {}, g);
    const nn::NamedTensors np = model.named_parameters();
    REQUIRE(j["parameters"].size() == np.size());
    for (size_t i = 0; i < np.size(); ++i) {
        CHECK(j["parameters"][i]["name"] == np[i].first);
        CHECK(j["parameters"][i]["shape"].get<Shape>() == np[i].second.shape());
        CHECK(j["parameters"][i]["count"] == np[i].second.numel());
        CHECK(j["parameters"][i]["dtype"] == "f32");
    }
    CHECK(j["total"] == model.num_parameters());
    CHECK(j["global_selection"] == 48 * 8); // D (k_long + 1) in one layer, D = 2 * 24
    CHECK(j["bytes_fp32"] == 4 * model.num_parameters());
    CHECK(j["config"]["n_layer"] == 3);
}

TEST_CASE("cli: info reads a checkpoint's header", "[cli][info]") {
    TempDir dir("cli_info");
    const train::TrainConfig cfg = train::parse_train_args(
        {"--model.d_model", "16", "--model.n_layer", "2", "--run_dir", "", "--device", "cpu"});
    train::Trainer t(cfg, nullptr);
    const std::string ckpt = dir.file("c.safetensors");
    t.save_checkpoint(ckpt);
    Run r = run_cli("info --checkpoint " + ckpt);
    INFO(r.out);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("model (" + ckpt + ")") != std::string::npos);
    CHECK(r.out.find(fmt::format("parameters: {} ", train::group_thousands(t.model().num_parameters()))) !=
          std::string::npos);
    CHECK(r.out.find("checkpoint at step 0 (epoch 0, batch 0), " + std::to_string(2 * t.model().named_parameters().size()) +
                     " optimizer tensors") != std::string::npos);
    Run js = run_cli("info --json --checkpoint=" + ckpt);
    REQUIRE(js.status == 0);
    CHECK(nlohmann::json::parse(js.out)["total"] == t.model().num_parameters());

    // a file whose tensors do not match its config: the parameter is named
    train::save_checkpoint(dir.file("bad.safetensors"), {{"backbone.embedding.weight", Tensor::zeros({3, 16})}}, nullptr,
                           {}, cfg.to_json().dump());
    require_one_error_line(run_cli("info --checkpoint " + dir.file("bad.safetensors")),
                           {"backbone.embedding.weight", "is (3,16) f32 in the file"});
}

TEST_CASE("cli: info errors name the key or file", "[cli][info][errors]") {
    require_one_error_line(run_cli("info --model.preset 7b"), {"preset", "7b"});
    require_one_error_line(run_cli("info --checkpoint /nonexistent/x.safetensors"), {"/nonexistent/x.safetensors", "does not exist"});
    require_one_error_line(run_cli("info --checkpoint"), {"info: --checkpoint needs a value"});
    require_one_error_line(run_cli("info --model.d_modl 3"), {"d_modl"});
    require_one_error_line(run_cli("info --json"), {"--json needs a model"});
    require_one_error_line(run_cli("info --checkpoint x.safetensors --lr 1"), {"takes no config keys", "--lr 1"});
}

TEST_CASE("cli: --help names every command, train included", "[cli]") {
    mg::test::Run r = mg::test::run_cli("--help");
    INFO(r.out);
    CHECK(r.status == 0);
    for (const char* c : {"train", "sweep", "info", "gradcheck", "eval", "generate", "data", "plot", "probe"})
        CHECK(r.out.find(std::string("  ") + c + " ") != std::string::npos);
}

TEST_CASE("cli: every command's --help has one shape: usage, what it does, one option per line with its default",
          "[cli]") {
    for (const char* c : {"train", "sweep", "info", "gradcheck", "eval", "generate", "data", "plot", "probe"}) {
        INFO(c);
        mg::test::Run r = run_cli(std::string(c) + " --help");
        CHECK(r.status == 0);
        CHECK(r.out.rfind(std::string("usage: mambagrad ") + c, 0) == 0);
        CHECK((r.out.find("\noptions:\n") != std::string::npos || r.out.find("\nconfig keys (") != std::string::npos));
    }
    // the config keys: one line each, with type, meaning and the compact default; no JSON tree
    mg::test::Run t = run_cli("train --help");
    CHECK(t.out.find("  --task.grid list|text") != std::string::npos);
    CHECK(t.out.find("(default [[16,2],[32,2]])") != std::string::npos);
    CHECK(t.out.find("  --lr num") != std::string::npos);
    CHECK(t.out.find("(default 0.01)") != std::string::npos);
    CHECK(t.out.find("  --model.global_selection.gate text") != std::string::npos);
    CHECK(t.out.find("\n  [\n") == std::string::npos);
    for (const mg::train::ConfigKeyDoc& d : mg::train::config_key_docs()) {
        INFO(d.key);
        CHECK(t.out.find("  --" + d.key + " " + d.type) != std::string::npos);
    }
    // data lists the task keys without their prefix
    mg::test::Run d = run_cli("data --help");
    CHECK(d.out.find("  --grid list|text") != std::string::npos);
    CHECK(d.out.find("--task.grid") == std::string::npos);
}

TEST_CASE("cli: the config key table documents exactly the keys the config reads", "[cli]") {
    // every leaf key of a full MQAR config and of an LM task section, and every object key, has a
    // line; every line is such a key
    std::set<std::string> keys;
    std::function<void(const nlohmann::json&, const std::string&)> walk = [&](const nlohmann::json& j,
                                                                              const std::string& prefix) {
        for (auto it = j.begin(); it != j.end(); ++it) {
            const std::string k = prefix + it.key();
            keys.insert(k);
            if (it.value().is_object()) walk(it.value(), k + ".");
        }
    };
    mg::train::TrainConfig mqar;
    walk(nlohmann::json(mqar.to_json()), "");
    mg::train::TrainConfig lm;
    lm.task.kind = mg::train::TaskKind::Lm;
    walk(nlohmann::json(lm.to_json()), "");
    mg::train::TrainConfig transformer;
    transformer.arch = mg::train::ModelArch::transformer;
    walk(nlohmann::json(transformer.to_json()), "");
    keys.insert("model.preset");
    keys.erase("model");
    keys.erase("task");
    std::set<std::string> documented;
    for (const mg::train::ConfigKeyDoc& d : mg::train::config_key_docs()) documented.insert(d.key);
    CHECK(keys == documented);
}

TEST_CASE("cli: the parser's mistakes are one error line naming the command and the option", "[cli][errors]") {
    require_one_error_line(run_cli(""), {"no command given"});
    require_one_error_line(run_cli("eval"), {"eval: --checkpoint FILE is required"});
    require_one_error_line(run_cli("eval --checkpoint"), {"eval: --checkpoint needs a value"});
    require_one_error_line(run_cli("eval --checkpoint x --bogus 1"), {"eval: unknown option --bogus"});
    require_one_error_line(run_cli("gradcheck --list=yes"), {"gradcheck: --list takes no value"});
    require_one_error_line(run_cli("generate --checkpoint x --top_k many"), {"generate: --top_k 'many' is not an integer"});
    require_one_error_line(run_cli("generate --checkpoint x --seed -1"), {"generate: --seed '-1' is not an integer >= 0"});
    require_one_error_line(run_cli("generate --checkpoint x --temperature hot"), {"generate: --temperature 'hot'",
                                                                                  "not a number"});
    require_one_error_line(run_cli("plot"), {"plot: RUN_DIR is required"});
    require_one_error_line(run_cli("plot a b"), {"plot: unexpected argument 'b'"});
    // a config key goes to the config reader: the same message as from a file
    require_one_error_line(run_cli("data --out /tmp/x.jsonl --grdi 64x4"), {"train config: unknown key 'task.grdi'"});
    require_one_error_line(run_cli("train --model.d_model big"), {"train config: model.d_model is \"big\"",
                                                                  "an integer >= 1"});
}

TEST_CASE("cli: eval --data scores a JSONL file, with the loss, as eval scores the same examples it generates",
          "[cli][eval]") {
    TempDir dir("cli_evaldata");
    train::TrainConfig cfg = train::parse_train_args(
        {"--model.d_model", "16", "--model.n_layer", "1", "--model.d_state", "4", "--task.grid", "32x2",
         "--task.vocab_size", "16", "--task.train_examples", "32", "--task.test_examples", "12",
         "--task.test_variants", "[\"last\"]", "--task.variant", "last", "--max_steps", "3", "--eval_every", "0",
         "--device", "cpu", "--run_dir", dir.file("run")});
    {
        train::Trainer t(cfg, nullptr);
        t.train();
    }
    const std::string ckpt = dir.file("run/final.safetensors");
    // the test split the checkpoint's config generates, written as JSONL, then scored from the file
    Run d = run_cli("data --config " + dir.file("run/config.json") + " --split test --out " + dir.file("test.jsonl"));
    REQUIRE(d.status == 0);
    Run gen = run_cli("eval --device cpu --checkpoint " + ckpt);
    Run file = run_cli("eval --device cpu --checkpoint " + ckpt + " --data " + dir.file("test.jsonl"));
    INFO(gen.out << "\n" << file.out);
    REQUIRE(gen.status == 0);
    REQUIRE(file.status == 0);
    CHECK(file.out.find("on " + dir.file("test.jsonl") + " (12 examples)") != std::string::npos);
    // the same examples give the same row of accuracies and the same loss
    auto after = [](const std::string& text, const std::string& mark) {
        const size_t at = text.find(mark);
        if (at == std::string::npos) return std::string();
        const std::string rest = text.substr(at + mark.size(), text.find('\n', at) - at - mark.size());
        return rest.substr(std::min(rest.size(), rest.find_first_not_of(' ')));
    };
    CHECK_FALSE(after(gen.out, "   32    2  ").empty());
    CHECK(after(gen.out, "   32    2  ") == after(file.out, "   32    2  "));
    CHECK(after(gen.out, "loss (mean cross-entropy per labelled token, nats): last ") ==
          after(file.out, "loss (mean cross-entropy per labelled token, nats): test.jsonl "));
    // what does not apply, and data for a larger vocabulary, are one error line each
    require_one_error_line(run_cli("eval --checkpoint " + ckpt + " --data " + dir.file("test.jsonl") + " --split valid"),
                           {"eval: --data scores the file's examples", "--split"});
    Run big = run_cli("data --out " + dir.file("big.jsonl") + " --grid 32x2 --vocab_size 4000 --examples 2 --split test");
    REQUIRE(big.status == 0);
    require_one_error_line(run_cli("eval --device cpu --checkpoint " + ckpt + " --data " + dir.file("big.jsonl")),
                           {"big.jsonl", "holds token id", "model.vocab_size"});
}
