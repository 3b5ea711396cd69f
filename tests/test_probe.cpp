// tests/test_probe.cpp: train/probe.h (`mambagrad probe`), nn::MixerTrace, and the trainer's
// per-parameter gradient norms in metrics.jsonl.
#include <fstream>

#include "ops/activation.h"
#include "ops/cross_entropy.h"
#include "tests/helpers.h"
#include "train/probe.h"
#include "train/trainer.h"

using namespace mg;
using namespace mg::train;
using namespace mg::test;
using nlohmann::json;

namespace {

TrainConfig probe_config(bool gs) {
    json j = {{"model", {{"preset", "zoology"}, {"d_model", 16}, {"n_layer", 2}, {"d_state", 4}, {"vocab_size", "auto"},
                         {"global_selection", {{"enabled", gs}, {"k_long", 8}, {"layers", json::array({1})}}}}},
              {"task", {{"variant", "k4v8-shuffle"}, {"grid", "32x1,64x2"}, {"vocab_size", 64}, {"train_examples", 8},
                        {"test_variants", json::array()}}},
              {"device", "cpu"}, {"run_dir", ""}};
    return TrainConfig::from_json(j);
}

} // namespace

TEST_CASE("probe: loss, gradients and per-layer traces of one training batch", "[probe]") {
    TrainConfig cfg = probe_config(true);
    Generator gen(cfg.seed);
    nn::MambaLM model(cfg.model, {DType::f32}, gen);
    ProbeOptions o;
    o.batch = 3;
    o.dtype = DType::f64;
    ProbeResult r = probe_model(model, cfg, o);
    CHECK(r.seq_len == 64); // the longest L of the grid
    CHECK(r.batch == 3);
    REQUIRE(r.data.inputs.shape() == Shape{3, 64});
    CHECK(model.backbone.embedding.weight.dtype() == DType::f64);
    // the same loss and gradients as a direct forward/backward of the converted model
    model.zero_grad();
    Tensor loss = cross_entropy_indexed(model.hidden_states(r.data.inputs), model.lm_head_weight(), r.data.positions,
                                        r.data.targets);
    loss.backward();
    CHECK(r.loss == loss.item());
    const NamedTensors params = model.named_parameters();
    REQUIRE(r.grads.size() == params.size());
    for (size_t i = 0; i < params.size(); ++i) {
        INFO(params[i].first);
        CHECK(r.grads[i].first == params[i].first);
        require_close(r.grads[i].second, params[i].second.grad(), 0, 0, params[i].first);
    }
    // global selection in layer 1 only: a gate there, none in layer 0; delta is softplus(dt + bias)
    REQUIRE(r.layers.size() == 2);
    CHECK_FALSE(r.layers[0].has_gate);
    CHECK(r.layers[1].has_gate);
    CHECK(r.layers[1].gate.min > 0); // the default gate is a sigmoid
    CHECK(r.layers[1].gate.max < 1);
    std::vector<nn::MixerTrace> trace;
    model.hidden_states(r.data.inputs, &trace);
    REQUIRE(trace.size() == 2);
    require_close(trace[1].delta, softplus(trace[1].dt + model.backbone.layers[1]->mixer.dt_proj.bias), 1e-12, 0, "delta");
    CHECK(r.layers[1].delta.max == Approx(max(trace[1].delta).item()));
    const std::string text = format_probe(r);
    CHECK_THAT(text, Catch::Contains("layers.*.mixer.long_conv.weight") && Catch::Contains("delta max"));

    // the file: batch, loss, weights and gradients, readable back
    TempDir dir("probe");
    save_probe(dir.file("p.safetensors"), r, cfg);
    auto f = load_safetensors(dir.file("p.safetensors")).by_name();
    CHECK(f.count("batch.inputs"));
    CHECK(f.count("grad.backbone.layers.1.mixer.long_conv.weight"));
    CHECK(f.count("param.backbone.embedding.weight"));
    CHECK(f.at("loss").item() == r.loss);

    REQUIRE_ERROR_WITH(probe_model(model, cfg, {3, 48, DType::f64}), "probe", "length 48");
    REQUIRE_ERROR_WITH(probe_model(model, cfg, {0, 0, DType::f64}), "probe", "--batch is 0");
}

TEST_CASE("probe: the CLI prints the report and writes the file; bad calls print one error line", "[probe][cli]") {
    TempDir dir("probecli");
    const std::string model = "--model.d_model 16 --model.n_layer 1 --model.d_state 4 --task.grid 16x2 "
                              "--model.global_selection '{\"enabled\": true, \"k_long\": 4}'";
    Run r = run_cli("probe " + model + " --batch 2 --dtype f64 --device cpu --out " + dir.file("p.safetensors"));
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK_THAT(r.out, Catch::Contains("gradient norms") && Catch::Contains("wrote"));
    require_one_error_line(run_cli("probe " + model + " --dtype f16"), {"--dtype f16", "f32 or f64"});
    require_one_error_line(run_cli("probe " + model + " --batch two"), {"--batch", "not an integer"});
    require_one_error_line(run_cli("probe --checkpoint " + dir.file("missing.safetensors")), {"missing.safetensors"});
}

TEST_CASE("trainer: log_grad_norms writes every parameter's norm before clipping", "[trainer][probe]") {
    TempDir dir("gradnorms");
    TrainConfig cfg = probe_config(true);
    cfg.run_dir = dir.file("run");
    cfg.max_steps = 4;
    cfg.log_every = 2;
    cfg.eval_every = 0;
    cfg.target_accuracy = 0;
    cfg.log_grad_norms = true;
    cfg.clip_value = 1e-6; // clipping every element: the logged norms must be the unclipped ones
    Trainer t(cfg, nullptr);
    t.train();
    std::ifstream in(dir.file("run/metrics.jsonl"));
    int rows = 0;
    for (std::string line; std::getline(in, line);) {
        json row = json::parse(line);
        if (row["kind"] != "train") continue;
        ++rows;
        const json& per = row["grad_norms"];
        REQUIRE(per.size() == t.model().named_parameters().size());
        double sq = 0;
        for (const auto& [name, v] : per.items()) sq += v.get<double>() * v.get<double>();
        CHECK(row["grad_norm"].get<double>() == Approx(std::sqrt(sq)).epsilon(1e-12));
        CHECK(row["grad_norm"].get<double>() > 1e-3); // far above what 1e-6 per element would allow
    }
    CHECK(rows == 2);
}
