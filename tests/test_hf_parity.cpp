// tests/test_hf_parity.cpp: our models against implementations we did not write. The fixtures
// (tests/fixtures/hf_*.safetensors, made by tools/make_hf_fixtures.py with the torch and
// transformers versions recorded in their metadata) hold a tiny random GPTNeoXForCausalLM and
// MambaForCausalLM in float64: weights under transformers' names, a batch of ids, the logits,
// the next-token loss and every parameter's gradient. Here, on the CPU and with no Python, our
// TransformerLM and MambaLM load those weights (the Mamba's names mapped by
// nn::from_transformers_mamba) and must reproduce the logits and the loss to 1e-5 relative and
// the gradients to 1e-4, on every device (each relative to the tensor's largest element). Not tighter: even in a
// float64 model transformers computes GPT-NeoX's rotary cos/sin and Mamba's RMSNorm in float32.
#include "nn/hf_names.h"
#include "nn/mamba.h"
#include "nn/transformer.h"
#include "tests/helpers.h"
#include "train/checkpoint.h"

using namespace mg;
using namespace mg::nn;

namespace {

Tensor abs_of(const Tensor& t) { return sqrt(t * t); }

const std::string kDir = "tests/fixtures/";

struct Fixture {
    StateDict weights, grads;
    Tensor ids, logits, loss;
};

Fixture load_fixture(const std::string& file) {
    Fixture f;
    for (auto& [name, t] : train::load_safetensors(kDir + file).tensors) {
        if (name == "fixture.input_ids") f.ids = t;
        else if (name == "fixture.logits") f.logits = t;
        else if (name == "fixture.loss") f.loss = t;
        else if (name.rfind("grad.", 0) == 0) f.grads[name.substr(5)] = t;
        else f.weights[name] = t;
    }
    REQUIRE(f.ids.defined());
    REQUIRE(f.logits.defined());
    REQUIRE(f.loss.defined());
    return f;
}

// Next-token loss as the fixture computed it: cross-entropy of logits[:, :-1] against ids[:, 1:].
Tensor next_token_loss(const Tensor& logits, const Tensor& ids) {
    const int64_t B = ids.size(0), L = ids.size(1);
    return cross_entropy(logits.narrow(1, 0, L - 1), ids.narrow(1, 1, L - 1).contiguous().reshape({B, L - 1}));
}

// The largest |x|: tolerances are relative to a tensor's scale (a logit or a gradient element
// near 0 has no meaningful relative error).
double scale_of(const Tensor& t) { return max(abs_of(t)).item(); }

// Logits and loss within `rel` of their scale, gradients within 10 rel of each tensor's scale.
void check_model(Module& model, const std::function<Tensor(const Tensor&)>& forward, const Fixture& f, double rel,
                 const std::function<std::string(const std::string&)>& our_name) {
    const Tensor ids = f.ids.to(model.parameters().front().device());
    Tensor logits = forward(ids);
    // our padded vocabulary may be wider than theirs: compare their columns
    Tensor ours = logits.narrow(2, 0, f.logits.size(2));
    mg::test::require_close(ours, f.logits, 0, rel * scale_of(f.logits), "logits");
    Tensor loss = next_token_loss(ours, ids);
    mg::test::require_close(loss.reshape({1}), f.loss, rel, 0, "loss");
    loss.backward();
    auto params = model.named_parameters();
    std::map<std::string, Tensor> mine(params.begin(), params.end());
    REQUIRE(f.grads.size() == params.size());
    for (const auto& [theirs, g] : f.grads) {
        INFO("parameter " << theirs);
        REQUIRE(mine.count(our_name(theirs)) == 1);
        mg::test::require_close(mine[our_name(theirs)].grad(), g, 0, 10 * rel * scale_of(g), "gradient of " + theirs);
    }
}

} // namespace

TEST_CASE("hf parity: TransformerLM reproduces transformers' GPTNeoXForCausalLM", "[transformer][parity]") {
    Fixture f = load_fixture("hf_gpt_neox.safetensors");
    TransformerConfig cfg;
    cfg.d_model = 32, cfg.n_layer = 2, cfg.n_head = 4, cfg.d_ff = 64, cfg.vocab_size = 64, cfg.rotary_pct = 0.25;
    for (Device dev : mg::test::devices()) {
        SECTION(dev.str()) {
            TransformerLM model(cfg, {DType::f64, dev});
            model.load_state_dict(from_transformers_gpt_neox(f.weights)); // transformers' names (lm_head: embed_out)
            // transformers computes the rotary angles, cos and sin in float32 even in a float64
            // model (measured: logits within 2e-7 of their scale)
            check_model(model, [&](const Tensor& ids) { return model.forward(ids); }, f, 1e-5,
                        [](const std::string& n) { return gpt_neox_name_from_transformers(n); });
        }
    }
}

TEST_CASE("hf parity: MambaLM reproduces transformers' MambaForCausalLM", "[nn][parity]") {
    Fixture f = load_fixture("hf_mamba.safetensors");
    MambaConfig cfg;
    cfg.d_model = 16, cfg.n_layer = 2, cfg.vocab_size = 64, cfg.d_state = 4, cfg.d_conv = 4, cfg.expand = 2;
    cfg.dt_rank = 2;
    for (Device dev : mg::test::devices()) {
        SECTION(dev.str()) {
            MambaLM model(cfg, {DType::f64, dev});
            model.load_state_dict(from_transformers_mamba(f.weights));
            // transformers' MambaRMSNorm rounds through float32 even in a float64 model: agreement
            // to float32's precision
            check_model(model, [&](const Tensor& ids) { return model.forward(ids); }, f, 1e-5,
                        [](const std::string& n) { return mamba_name_from_transformers(n); });
        }
    }
}
