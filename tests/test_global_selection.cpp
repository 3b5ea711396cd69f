// tests/test_global_selection.cpp: the guard against global selection's divergence
// (docs/global_selection.md), and the gate of checkpoints written before the gate key existed.
#include "nn/mamba.h"
#include "ops/copy.h"
#include "tests/helpers.h"
#include "train/clip.h"
#include "train/optim.h"
#include "train/trainer.h"

using namespace mg;
using namespace mg::train;
using namespace mg::test;

namespace {

struct Curve {
    std::vector<double> loss, grad_norm; // per step; the norm before clipping
    double delta_max = 0;                // the largest Δ of the last step's forward, over layers
};

// Trains a small GS model on a K4V8-Shuffle-like task with the trainer's recipe (AdamW, clip by
// value 1) for `steps` steps, from an init whose gate pre-activation g is shifted by `g0` in every
// layer (long_conv.bias += g0): the state Adam grows the gate into at the tiny size.
Curve train_gs(nn::GateFunction gate, double g0, int64_t steps, double lr, double dt_scale = 1.0) {
    TrainConfig cfg;
    cfg.model = nn::MambaConfig::preset("zoology", 32);
    cfg.model.n_layer = 4;
    cfg.model.d_state = 8;
    cfg.model.global_selection.enabled = true;
    cfg.model.global_selection.k_long = 32;
    cfg.model.global_selection.gate = gate;
    cfg.task.variant = data::MqarVariant::K4V8Shuffle;
    cfg.task.grid = {{64, 2}};
    cfg.task.vocab_size = 256;
    cfg.model.vocab_size = cfg.task.model_vocab();
    Generator gen(5);
    nn::MambaLM model(cfg.model, {DType::f32}, gen);
    for (auto& layer : model.backbone.layers) {
        Tensor& b = layer->mixer.long_conv_as<nn::LongConv>().bias;
        NoGrad ng;
        copy_into(b, b + g0);
        Tensor& w = layer->mixer.dt_proj.weight;
        copy_into(w, w * dt_scale);
    }
    std::vector<data::MqarExample> ex = cfg.task.generate(cfg.task.variant, data::Split::Train, 64).examples;
    AdamWOptions o;
    o.lr = lr;
    o.beta2 = 0.95;
    o.eps = 1e-6;
    o.weight_decay = 0.1;
    AdamW opt(model.named_parameters(), o);
    Curve c;
    for (int64_t s = 0; s < steps; ++s) {
        std::vector<int64_t> idx;
        for (int64_t i = 0; i < 16; ++i) idx.push_back((s * 16 + i) % int64_t(ex.size()));
        data::MqarBatch b = data::make_batch(ex, idx);
        opt.zero_grad();
        std::vector<nn::MixerTrace> trace;
        Tensor h = model.hidden_states(b.inputs, &trace);
        Tensor loss = cross_entropy_indexed(h, model.lm_head_weight(), b.positions, b.targets);
        loss.backward();
        std::vector<Tensor> grads = grads_of(model.named_parameters());
        c.loss.push_back(loss.item());
        c.grad_norm.push_back(global_norm(grads));
        clip_grad_value(grads, 1.0);
        opt.step();
        c.delta_max = 0;
        for (const auto& t : trace) c.delta_max = std::max(c.delta_max, max(t.delta).item());
    }
    return c;
}

} // namespace

TEST_CASE("global selection: a grown gate cannot blow delta up; training stays bounded and learns",
          "[nn][global_selection]") {
    // At the paper's tiny size (8 layers, d_inner 512, L 512) Adam grows the silu gate to 27-68 by
    // step 400 and delta in the last layer to 150, then 7e4 by step 800, and the run dies
    // (docs/global_selection.md). That size takes minutes of GPU time; this test starts a small
    // model (4 layers, d_inner 64, L 64, k_long 32) in that state instead: gate pre-activation
    // shifted by +30 and dt_proj scaled 10x, then trains 100 steps at lr 3e-3. With the silu gate
    // delta reaches 143 (the default before the fix); the default gate keeps it near its ungated
    // range (sigmoid: 3.0).
    const nn::GateFunction gate = nn::GlobalSelection{}.gate; // the default
    Curve grown = train_gs(gate, 30.0, 100, 3e-3, 10.0);
    INFO("default gate " << nn::gate_function_name(gate) << ": delta max " << grown.delta_max);
    CHECK(grown.delta_max < 10.0);
    // and from the ordinary init: the gradient norm stays within 20x its first value and the loss
    // falls by at least 1 nat (measured: 1.63 -> at most 9.7; 5.65 -> 2.35)
    Curve c = train_gs(gate, 0.0, 100, 3e-3);
    const double first = c.grad_norm.front();
    const double worst = *std::max_element(c.grad_norm.begin(), c.grad_norm.end());
    INFO("grad norm first " << first << ", max " << worst << "; loss " << c.loss.front() << " -> " << c.loss.back());
    CHECK(worst < 20 * first);
    CHECK(c.loss.back() < c.loss.front() - 1.0);
    // the authors' silu gate, in the same state, lets delta grow 50x past that bound: the test
    // above fails when the default goes back to silu
    Curve silu = train_gs(nn::GateFunction::silu, 30.0, 100, 3e-3, 10.0);
    CHECK(silu.delta_max > 50.0);
}

TEST_CASE("global selection: checkpoints written before the gate key existed load with the silu gate they ran",
          "[nn][global_selection]") {
    TempDir dir("gate");
    nlohmann::json j = {{"model", {{"preset", "zoology"}, {"d_model", 16}, {"n_layer", 1}, {"d_state", 4},
                                   {"vocab_size", "auto"}, {"global_selection", {{"enabled", true}, {"k_long", 4}}}}},
                        {"task", {{"grid", "16x2"}, {"vocab_size", 16}, {"train_examples", 8},
                                  {"test_variants", nlohmann::json::array()}}},
                        {"max_steps", 1}, {"eval_every", 0}, {"device", "cpu"}, {"run_dir", dir.file("run")}};
    Trainer(TrainConfig::from_json(j), nullptr).train();
    SafetensorsFile f = load_safetensors(dir.file("run/final.safetensors"));
    nlohmann::json cfg = nlohmann::json::parse(f.metadata.at(kCheckpointConfigKey));
    CHECK(cfg["model"]["global_selection"]["gate"] == "sigmoid"); // today's default, written out
    cfg["model"]["global_selection"].erase("gate");                // as written before 2026-12-06
    f.metadata[kCheckpointConfigKey] = cfg.dump();
    save_safetensors(dir.file("old.safetensors"), f.tensors, f.metadata);
    CHECK(checkpoint_config(dir.file("old.safetensors"))["model"]["global_selection"]["gate"] == "silu");
    LoadedModel m = load_model(dir.file("old.safetensors"), "cpu");
    CHECK(m.mamba().backbone.layers[0]->mixer.gate_function == nn::GateFunction::silu);
    CHECK(load_model(dir.file("run/final.safetensors"), "cpu").mamba().backbone.layers[0]->mixer.gate_function ==
          nn::GateFunction::sigmoid);
}

TEST_CASE("global selection: gate_input normalized is scale-free; detached stops the gradient into x",
          "[nn][global_selection]") {
    nn::MambaConfig cfg;
    cfg.d_model = 8, cfg.n_layer = 1, cfg.vocab_size = 11, cfg.d_state = 4;
    cfg.global_selection.enabled = true;
    cfg.global_selection.k_long = 4;
    auto mixer_of = [&](nn::GateInput in) {
        nn::MambaConfig c = cfg;
        c.global_selection.gate_input = in;
        Generator g(3);
        return std::make_unique<nn::MambaMixer>(c, 0, Options{DType::f64}, g);
    };
    Generator gen(8);
    const Tensor u = Tensor::randn({2, 6, 8}, {DType::f64}, gen);
    // normalized: g / rms_D(g) at each position, so the gate is the same for g and 1000 g (up to eps)
    auto norm = mixer_of(nn::GateInput::normalized);
    const Tensor g = Tensor::randn({2, 6, 16}, {DType::f64}, gen);
    const Tensor rms = sqrt(mean(g * g, {-1}, true) + 1e-5);
    mg::test::require_close(norm->gate_of(g), sigmoid(g / rms), 1e-12, 1e-12, "sigmoid(g / rms(g))");
    // 1000 g: the same as g but for eps, which now weighs 1e-6 as much
    const Tensor rms_scaled = sqrt(mean(g * g, {-1}, true) + 1e-11);
    mg::test::require_close(norm->gate_of(g * 1000.0), sigmoid(g / rms_scaled), 1e-12, 1e-12, "scale-free");
    // detached: the same forward as raw, the same long-conv gradient, a different gradient into x
    auto raw = mixer_of(nn::GateInput::raw), det = mixer_of(nn::GateInput::detached);
    const Tensor out_raw = raw->forward(u), out_det = det->forward(u);
    mg::test::require_close(out_det, out_raw, 0, 0, "forward");
    sum(out_raw * out_raw).backward();
    sum(out_det * out_det).backward();
    mg::test::require_close(det->long_conv->module().named_parameters()[0].second.grad(),
                            raw->long_conv->module().named_parameters()[0].second.grad(), 1e-12, 1e-12,
                            "the long conv's own gradient");
    const std::vector<double> a = raw->in_proj.weight.grad().to_vector<double>(),
                              b = det->in_proj.weight.grad().to_vector<double>();
    CHECK(a != b); // the gate's path into x (and in_proj) is cut
    // the config key: round trip, and a bad value names the choices
    nn::MambaConfig with = cfg;
    with.global_selection.gate_input = nn::GateInput::normalized;
    nn::MambaConfig rt = nn::MambaConfig::from_json(nlohmann::json(with.to_json()));
    CHECK(rt.global_selection.gate_input == nn::GateInput::normalized);
    REQUIRE_ERROR_WITH(nn::MambaConfig::parse(R"({"global_selection": {"gate_input": "clipped"}})"),
                       "global_selection.gate_input", "normalized", "detached");
}
