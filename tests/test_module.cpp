// tests/test_module.cpp: nn/module.h: the state dict (round trip and every load error) and
// Module's bookkeeping (to, zero_grad, train/eval, buffers, tied weights).
#include <cmath>
#include <set>

#include "nn/config.h"
#include "nn/layers.h"
#include "nn/mamba.h"
#include "nn/module.h"
#include "tensor/check.h"
#include "tests/helpers.h"
#include "tests/nn_helpers.h"

using namespace mg;
using namespace mg::nn;
using namespace mg::test;

namespace {

// A toy module with a buffer and a child, for Module's bookkeeping.
struct Toy : Module {
    Linear lin;
    Tensor scale, steps;
    Toy(Generator& g) : lin(3, 2, true, {}, g) {
        scale = Tensor::full({2}, 0.5);
        steps = Tensor::zeros({1}, {DType::i32});
        register_parameter("scale", scale);
        register_buffer("steps", steps);
        register_module("lin", lin);
    }
};

// Two layers sharing one weight (a tie made after registration, as a model would).
struct Tied : Module {
    Linear a, b;
    Tied(Generator& g) : a(4, 4, false, {}, g), b(4, 4, false, {}, g) {
        b.weight = a.weight;
        register_module("a", a);
        register_module("b", b);
    }
};

} // namespace

// ---- state dict and Module bookkeeping ----------------------------------------------------------

TEST_CASE("nn: state dict round trip makes two models compute the same function", "[nn]") {
    MambaConfig cfg = small_config(true);
    Generator g1(1), g2(2);
    MambaLM a(cfg, {}, g1), b(cfg, {}, g2);
    Tensor ids = random_ids(2, 6, cfg.vocab_size, 3);
    CHECK(a.forward(ids).to_vector<float>() != b.forward(ids).to_vector<float>());
    b.load_state_dict(a.state_dict());
    CHECK(a.forward(ids).to_vector<float>() == b.forward(ids).to_vector<float>());
    // the loaded values are copies: b's tensors are still its own
    CHECK(b.backbone.embedding.weight.impl_ptr()->storage != a.backbone.embedding.weight.impl_ptr()->storage);
    CHECK(b.backbone.embedding.weight.requires_grad());
    // loading a model's own dict is a no-op
    std::vector<float> before = a.forward(ids).to_vector<float>();
    a.load_state_dict(a.state_dict());
    CHECK(a.forward(ids).to_vector<float>() == before);
    // mamba_ssm's torch dicts carry the tied head as lm_head.weight: accepted when it is the embedding
    StateDict sd = a.state_dict();
    sd["lm_head.weight"] = sd["backbone.embedding.weight"].clone();
    b.load_state_dict(sd);
    sd["lm_head.weight"] = Tensor::zeros(sd["backbone.embedding.weight"].shape());
    REQUIRE_ERROR_WITH(b.load_state_dict(sd), "lm_head.weight", "differs from backbone.embedding.weight", "ties");
}

TEST_CASE("nn: load_state_dict names missing, unexpected and mismatched keys and changes nothing", "[nn][errors]") {
    MambaConfig cfg = small_config(false);
    Generator g(1);
    MambaLM model(cfg, {}, g);
    Tensor ids = random_ids(1, 4, cfg.vocab_size, 3);
    std::vector<float> before = model.forward(ids).to_vector<float>();
    StateDict good = model.state_dict();
    for (auto& [n, t] : good) t = t.clone();
    {
        StateDict sd = good;
        sd.erase("backbone.layers.1.mixer.A_log");
        sd["backbone.layers.0.mixer.bogus"] = Tensor::zeros({3});
        REQUIRE_ERROR_WITH(model.load_state_dict(sd), "load_state_dict", "missing keys: backbone.layers.1.mixer.A_log",
                           "unexpected keys: backbone.layers.0.mixer.bogus");
    }
    {
        StateDict sd = good;
        sd["backbone.layers.0.mixer.A_log"] = Tensor::zeros({32, 5});
        REQUIRE_ERROR_WITH(model.load_state_dict(sd), "backbone.layers.0.mixer.A_log has shape (32,5)",
                           "expected (32,4)");
    }
    {
        StateDict sd = good;
        sd["backbone.norm_f.weight"] = Tensor::ones({16}, {DType::f64});
        REQUIRE_ERROR_WITH(model.load_state_dict(sd), "backbone.norm_f.weight has dtype f64", "expected f32");
    }
    {   // a global-selection checkpoint into a model without it
        Generator g2(2);
        MambaLM gs(small_config(true), {}, g2);
        REQUIRE_ERROR_WITH(model.load_state_dict(gs.state_dict()), "unexpected keys",
                           "backbone.layers.0.mixer.long_conv.weight", "backbone.layers.1.mixer.long_conv.bias");
    }
    // every failed load above left the model as it was
    CHECK(model.forward(ids).to_vector<float>() == before);
}

TEST_CASE("nn: Module moves and converts its tensors, zeroes grads, sets train/eval, keeps buffers", "[nn]") {
    Generator g(4);
    Toy toy(g);
    CHECK(names_of(toy.named_parameters()) == std::vector<std::string>{"scale", "lin.weight", "lin.bias"});
    CHECK(names_of(toy.named_buffers()) == std::vector<std::string>{"steps"});
    CHECK(toy.num_parameters() == 2 + 6 + 2);
    CHECK(toy.state_dict().count("steps") == 1);
    // a gradient, then zero_grad
    Tensor x = Tensor::randn({4, 3}, {}, g);
    sum(toy.lin.forward(x) * toy.scale).backward();
    for (const Tensor& p : toy.parameters()) CHECK(p.grad().defined());
    toy.zero_grad();
    for (const Tensor& p : toy.parameters()) CHECK_FALSE(p.grad().defined());
    // to() where the tensors already are changes nothing (an optimizer's handles stay valid)
    Tensor w_before = toy.lin.weight;
    toy.to(Device::cpu()).to(DType::f32);
    CHECK(toy.lin.weight.same(w_before));
    // to(f64): the members themselves are replaced; parameters stay leaves requiring grad; the
    // i32 buffer keeps its dtype
    std::vector<float> w = toy.lin.weight.to_vector<float>();
    toy.to(DType::f64);
    CHECK(toy.lin.weight.dtype() == DType::f64);
    CHECK(toy.scale.dtype() == DType::f64);
    CHECK(toy.steps.dtype() == DType::i32);
    for (const Tensor& p : toy.parameters()) {
        CHECK(p.is_leaf());
        CHECK(p.requires_grad());
    }
    std::vector<double> w64 = toy.lin.weight.to_vector<double>();
    for (size_t i = 0; i < w.size(); ++i) CHECK(w64[i] == double(w[i]));
    REQUIRE_ERROR_WITH(toy.to(DType::i32), "Module::to", "i32");
    // train / eval reach the children
    CHECK(toy.is_training());
    toy.eval();
    CHECK_FALSE(toy.is_training());
    CHECK_FALSE(toy.lin.is_training());
    toy.train();
    CHECK(toy.lin.is_training());
    // a tied weight is listed and counted once, and stays tied through to()
    Tied tied(g);
    CHECK(names_of(tied.named_parameters()) == std::vector<std::string>{"a.weight"});
    CHECK(tied.num_parameters() == 16);
    CHECK(tied.state_dict().size() == 2);
    tied.to(DType::f64);
    CHECK(tied.a.weight.same(tied.b.weight));
    CHECK(tied.a.weight.dtype() == DType::f64);
    // devices: every tensor moves, the model still computes the same function
    for (Device dev : devices()) {
        Generator g1(9);
        MambaLM m(small_config(true), {DType::f64}, g1);
        Tensor ids = random_ids(2, 5, 13, 1);
        Tensor ref = m.forward(ids);
        m.to(dev);
        for (const Tensor& p : m.parameters()) CHECK(p.device() == dev);
        mg::test::require_close(m.forward(ids.to(dev)), ref, 1e-12, 1e-12, "forward after to(" + dev.str() + ")");
        m.to(Device::cpu());
    }
}
