// tests/test_nn_config.cpp: nn/config.h: parameter counts and names against mamba_ssm's (from the
// config alone and from built models), the config's JSON, presets and errors.
#include <cmath>
#include <set>

#include "nn/config.h"
#include "nn/layers.h"
#include "nn/mamba.h"
#include "nn/module.h"
#include "tensor/check.h"
#include "tests/helpers.h"
#include "tests/nn_helpers.h"
#include "train/config.h"

using namespace mg;
using namespace mg::nn;
using namespace mg::test;

// ---- parameter counts and names -------------------------------------------------------------------

TEST_CASE("nn: parameter counts of mamba-130m and tiny, and of built models", "[nn]") {
    // paper-code.md §1.3: HF mamba-130m-hf (vocab 50280, a multiple of 8, so no padding)
    MambaConfig m130 = MambaConfig::preset("130m");
    REQUIRE(m130.padded_vocab() == 50280);
    REQUIRE(count_parameters(m130) == 129'135'360);
    MambaConfig gs = m130;
    gs.global_selection.enabled = true; // k_long 128, all 24 layers: the paper's "+4M"
    REQUIRE(count_parameters(gs) - count_parameters(m130) == 4'755'456);
    // tiny: d_model 256, 8 layers, vocab 20480, dt_rank 32 (≈ 8.9M); +0.53M with k_long 128
    MambaConfig tiny = MambaConfig::preset("tiny");
    REQUIRE(count_parameters(tiny) == 8'878'336);
    tiny.global_selection.enabled = true;
    REQUIRE(count_parameters(tiny) - count_parameters(MambaConfig::preset("tiny")) == 528'384);

    // flashlongconv, by hand: per layer D K + D + 2 D^2 + 2 D (kernel, D, output_linear)
    MambaConfig f130 = MambaConfig::preset("130m"); // the authors' 1.4B setting on 130m: K 512 at 7, 15, 23
    f130.global_selection = {true, GlobalSelectionKind::flashlongconv, 512, {7, 15, 23}};
    // 1536*512 + 1536 + 2*1536^2 + 2*1536 = 786,432 + 1,536 + 4,718,592 + 3,072 = 5,509,632
    REQUIRE(count_parameters(f130) - count_parameters(m130) == 3 * 5'509'632);
    MambaConfig ftiny = MambaConfig::preset("tiny"); // D 512, K 128, all 8 layers
    ftiny.global_selection = {true, GlobalSelectionKind::flashlongconv, 128, {}};
    // 512*128 + 512 + 2*512^2 + 2*512 = 65,536 + 512 + 524,288 + 1,024 = 591,360
    REQUIRE(count_parameters(ftiny) - count_parameters(MambaConfig::preset("tiny")) == 8 * 591'360);

    // The closed form equals what construction allocates, over configs that exercise every term.
    std::vector<MambaConfig> cfgs;
    cfgs.push_back(small_config(false));
    cfgs.push_back(small_config(true));
    MambaConfig c = small_config(true, 7);
    c.global_selection.layers = {1};
    c.dt_rank = 3;
    c.d_conv = 2;
    c.expand = 3;
    c.vocab_size = 17; // padded to 24
    c.pad_vocab_size_multiple = 8;
    cfgs.push_back(c);
    MambaConfig z = MambaConfig::preset("zoology", 64);
    z.vocab_size = 100;
    cfgs.push_back(z);
    cfgs.push_back(small_config(true, 6));
    cfgs.back().global_selection.kind = GlobalSelectionKind::flashlongconv;
    cfgs.back().global_selection.layers = {0};
    for (const MambaConfig& cfg : cfgs) {
        Generator g(1);
        MambaLM model(cfg, {}, g);
        INFO(cfg.to_json());
        CHECK(model.num_parameters() == count_parameters(cfg));
        std::vector<ParameterSpec> built;
        for (const auto& [name, t] : model.named_parameters()) built.push_back({name, t.shape()});
        CHECK(parameter_specs(cfg) == built); // names, order and shapes, without building
        int64_t sum = 0;
        for (const Tensor& p : model.parameters()) sum += p.numel();
        CHECK(sum == model.num_parameters());
    }
    REQUIRE(MambaLM(cfgs[2]).backbone.embedding.weight.size(0) == 24);
}

TEST_CASE("nn: parameter names and shapes are mamba_ssm's", "[nn]") {
    MambaConfig cfg = small_config(true, 5);
    cfg.global_selection.layers = {1}; // global selection in the second layer only
    Generator g(3);
    MambaLM model(cfg, {}, g);
    std::vector<std::string> want = {"backbone.embedding.weight"};
    for (int i = 0; i < 2; ++i) {
        std::string p = fmt::format("backbone.layers.{}.", i);
        for (const char* n : {"mixer.A_log", "mixer.D", "mixer.in_proj.weight", "mixer.conv1d.weight", "mixer.conv1d.bias"})
            want.push_back(p + n);
        if (i == 1) {
            want.push_back(p + "mixer.long_conv.weight");
            want.push_back(p + "mixer.long_conv.bias");
        }
        for (const char* n : {"mixer.x_proj.weight", "mixer.dt_proj.weight", "mixer.dt_proj.bias",
                              "mixer.out_proj.weight", "norm.weight"})
            want.push_back(p + n);
    }
    want.push_back("backbone.norm_f.weight");
    NamedTensors np = model.named_parameters();
    REQUIRE(names_of(np) == want);
    // shapes (d = 16, D = 32, R = 1, N = 4, K = 4, K_long = 5, V = 16)
    std::map<std::string, Shape> shapes;
    for (auto& [n, t] : np) shapes[n] = t.shape();
    CHECK(shapes["backbone.embedding.weight"] == Shape{16, 16});
    CHECK(shapes["backbone.layers.0.mixer.in_proj.weight"] == Shape{64, 16});
    CHECK(shapes["backbone.layers.0.mixer.conv1d.weight"] == Shape{32, 1, 4});
    CHECK(shapes["backbone.layers.0.mixer.conv1d.bias"] == Shape{32});
    CHECK(shapes["backbone.layers.1.mixer.long_conv.weight"] == Shape{32, 1, 5});
    CHECK(shapes["backbone.layers.1.mixer.long_conv.bias"] == Shape{32});
    CHECK(shapes["backbone.layers.0.mixer.x_proj.weight"] == Shape{1 + 2 * 4, 32});
    CHECK(shapes["backbone.layers.0.mixer.dt_proj.weight"] == Shape{32, 1});
    CHECK(shapes["backbone.layers.0.mixer.dt_proj.bias"] == Shape{32});
    CHECK(shapes["backbone.layers.0.mixer.A_log"] == Shape{32, 4});
    CHECK(shapes["backbone.layers.0.mixer.D"] == Shape{32});
    CHECK(shapes["backbone.layers.0.mixer.out_proj.weight"] == Shape{16, 32});
    CHECK(shapes["backbone.layers.0.norm.weight"] == Shape{16});
    CHECK(shapes["backbone.norm_f.weight"] == Shape{16});
    for (auto& [n, t] : np) {
        CHECK(t.requires_grad());
        CHECK(t.is_leaf());
        CHECK(t.dtype() == DType::f32);
    }
    // lm_head is the embedding itself, not a parameter of its own
    CHECK(model.lm_head_weight().same(model.backbone.embedding.weight));
    CHECK(model.state_dict().size() == want.size());

    // flashlongconv: the same place, the authors' FlashLongconv names in their order
    cfg.global_selection.kind = GlobalSelectionKind::flashlongconv;
    MambaLM flash(cfg, {}, g);
    std::map<std::string, Shape> fshapes;
    std::vector<std::string> fnames;
    for (auto& [n, t] : flash.named_parameters())
        if (n.find("long_conv") != std::string::npos) fnames.push_back(n), fshapes[n] = t.shape();
    const std::string p = "backbone.layers.1.mixer.long_conv.";
    REQUIRE(fnames == std::vector<std::string>{p + "D", p + "kernel", p + "output_linear.weight", p + "output_linear.bias"});
    CHECK(fshapes[p + "D"] == Shape{1, 32});
    CHECK(fshapes[p + "kernel"] == Shape{1, 32, 5});
    CHECK(fshapes[p + "output_linear.weight"] == Shape{64, 32});
    CHECK(fshapes[p + "output_linear.bias"] == Shape{64});
    CHECK(flash.backbone.layers[1]->mixer.global_selection());
    CHECK_FALSE(flash.backbone.layers[0]->mixer.global_selection());
}

// ---- config ---------------------------------------------------------------------------------------

TEST_CASE("nn: config JSON round trip, presets and overrides", "[nn]") {
    MambaConfig c = MambaConfig::preset("tiny");
    c.global_selection.enabled = true;
    c.global_selection.k_long = 512;
    c.global_selection.layers = {0, 5};
    c.global_selection.mode = CausalConvMode::fft;
    c.init = InitScheme::paper_code;
    MambaConfig r = MambaConfig::from_json(c.to_json());
    CHECK(r.to_json() == c.to_json());
    CHECK(r.dt_rank == 32);
    CHECK(r.global_selection.layers == std::vector<int64_t>{0, 5});
    CHECK(r.init == InitScheme::paper_code);
    // defaults and "auto"
    MambaConfig d = MambaConfig::parse("{}");
    CHECK(d.to_json() == MambaConfig().to_json());
    CHECK(d.resolved_dt_rank() == 48);
    MambaConfig z = MambaConfig::parse(R"({"preset": "zoology", "d_model": 96, "dt_rank": "auto",
        "global_selection": {"enabled": true, "layers": "all", "mode": "direct"}})");
    CHECK(z.n_layer == 2);
    CHECK(z.vocab_size == 8192);
    CHECK(z.d_model == 96);
    CHECK(z.resolved_dt_rank() == 6);
    CHECK(z.global_selection.applies_to(0));
    CHECK(z.global_selection.applies_to(1));
    CHECK(MambaConfig::preset("zoology", 256).d_model == 256);
    CHECK(MambaConfig::preset("130m").d_inner() == 1536);
}

TEST_CASE("nn: config errors name the key and what is allowed", "[nn][errors]") {
    REQUIRE_ERROR_WITH(MambaConfig::parse(R"({"d_modle": 64})"), "unknown key 'd_modle'", "allowed keys:",
                       "d_model");
    REQUIRE_ERROR_WITH(MambaConfig::parse(R"({"global_selection": {"k": 3}})"), "unknown key 'global_selection.k'",
                       "global_selection", "k_long");
    REQUIRE_ERROR_WITH(MambaConfig::parse(R"({"init": "xavier"})"), "model config: init is \"xavier\"", "one of: mamba, paper-code");
    REQUIRE_ERROR_WITH(MambaConfig::parse(R"({"global_selection": {"mode": "FFT"}})"), "global_selection.mode",
                       "\"FFT\"", "auto, direct, fft");
    REQUIRE_ERROR_WITH(MambaConfig::parse(R"({"global_selection": {"kind": "hyena"}})"), "longconv, flashlongconv");
    REQUIRE_ERROR_WITH(MambaConfig::parse(R"({"d_model": "big"})"), "d_model is \"big\"", "integer");
    REQUIRE_ERROR_WITH(MambaConfig::parse(R"({"d_model": 0})"), "d_model is 0", "an integer >= 1");
    REQUIRE_ERROR_WITH(MambaConfig::parse(R"({"dt_rank": "max"})"), "dt_rank", "\"auto\"");
    REQUIRE_ERROR_WITH(MambaConfig::parse(R"({"preset": "1.4b"})"), "preset is \"1.4b\"", "zoology, tiny, 130m");
    REQUIRE_ERROR_WITH(MambaConfig::parse(R"({"n_layer": 2, "global_selection": {"layers": [0, 2]}})"),
                       "global_selection.layers holds 2", "[0, 2)");
    REQUIRE_ERROR_WITH(MambaConfig::parse(R"({"global_selection": {"layers": []}})"), "global_selection.layers",
                       "\"all\"");
    REQUIRE_ERROR_WITH(MambaConfig::parse(R"({"global_selection": {"enabled": 1}})"), "enabled", "true or false");
    REQUIRE_ERROR_WITH(MambaConfig::parse("{\"d_model\": 64,"), "model config: not valid JSON");
    REQUIRE_ERROR_WITH(MambaConfig::parse("[1, 2]"), "expected a JSON object");
    // one reader: the same bad key gives the same message inside a training config, with its path
    REQUIRE_ERROR_WITH(mg::train::TrainConfig::from_json(nlohmann::json::parse(R"({"model": {"d_model": "big"}})")),
                       "train config: model.d_model is \"big\", expected an integer >= 1");
    REQUIRE_ERROR_WITH(MambaConfig::parse(R"({"d_model": "big"})"), "model config: d_model is \"big\", expected an integer >= 1");
    REQUIRE_ERROR_WITH(mg::train::TrainConfig::from_json(
                           nlohmann::json::parse(R"({"model": {"global_selection": {"gate": "tanh"}}})")),
                       "train config: model.global_selection.gate is \"tanh\", expected one of: silu, sigmoid");
    REQUIRE_ERROR_WITH(mg::train::TrainConfig::from_json(
                           nlohmann::json::parse(R"({"model": {"n_layer": 2, "global_selection": {"layers": [3]}}})")),
                       "train config: model.global_selection.layers holds 3");
    REQUIRE_ERROR_WITH(MambaConfig::preset("tiny", 128), "only the zoology preset takes a d_model");
    REQUIRE_ERROR_WITH(FlashLongConv(4, 3, {}, default_generator(), CausalConvMode::direct, 1.0), "FlashLongConv",
                       "dropout = 1", "[0, 1)");
    REQUIRE_ERROR_WITH(FlashLongConv(4, 0, {}, default_generator()), "FlashLongConv", "k_long = 0");
    Generator g(2);
    FlashLongConv f(4, 3, {}, g);
    REQUIRE_ERROR_WITH(f.forward(Tensor::zeros({1, 5, 3})), "FlashLongConv", "(1,5,3) f32 cpu", "D = 4");
}
