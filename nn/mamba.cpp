// nn/mamba.cpp: see mamba.h.
#include "nn/mamba.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "ops/activation.h"
#include "ops/cat.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/rmsnorm.h"
#include "ops/selective_scan.h"
#include "tensor/check.h"

namespace mg::nn {

namespace {

// The config a model can be built from.
const MambaConfig& checked(const MambaConfig& cfg) {
    cfg.validate();
    return cfg;
}

// A host vector as a tensor of the model's dtype on its device.
Tensor from_host(const std::vector<double>& v, const Shape& shape, Options o) {
    return Tensor::from_vector(v, shape).to(o.dtype).to(o.device).detach();
}

// mamba_ssm's dt_proj.bias: softplus^-1(dt), dt = exp(U(log dt_min, log dt_max)) floored.
Tensor dt_bias_init(int64_t D, Options o, Generator& gen) {
    const double dt_min = 1e-3, dt_max = 1e-1, dt_floor = 1e-4;
    std::vector<double> u = Tensor::uniform({D}, 0.0, 1.0, {DType::f64}, gen).to_vector<double>();
    std::vector<double> bias(u.size());
    for (size_t i = 0; i < u.size(); ++i) {
        double dt = std::exp(u[i] * (std::log(dt_max) - std::log(dt_min)) + std::log(dt_min));
        dt = std::max(dt, dt_floor);
        bias[i] = dt + std::log(-std::expm1(-dt)); // softplus(bias) = log(1 + e^bias) = dt
    }
    return from_host(bias, {D}, o);
}

// The layer's global-selection branch of the configured kind, or null where it does not apply.
std::unique_ptr<GlobalSelectionConv> make_global_selection(const GlobalSelection& gs, int64_t layer_idx,
                                                           int64_t d_inner, Options o, Generator& gen) {
    if (!gs.applies_to(layer_idx)) return nullptr;
    if (gs.kind == GlobalSelectionKind::flashlongconv)
        return std::make_unique<FlashLongConv>(d_inner, gs.k_long, o, gen, gs.mode);
    return std::make_unique<LongConv>(d_inner, gs.k_long, o, gen, gs.mode);
}

} // namespace

// ---- MambaMixer -----------------------------------------------------------------------------------
MambaMixer::MambaMixer(const MambaConfig& cfg, int64_t layer_idx, Options o, Generator& gen)
    : d_model(checked(cfg).d_model),
      d_inner(cfg.d_inner()),
      d_state(cfg.d_state),
      dt_rank(cfg.resolved_dt_rank()),
      gate_function(cfg.global_selection.gate),
      gate_input(cfg.global_selection.gate_input),
      norm_eps(cfg.norm_eps),
      in_proj(d_model, 2 * d_inner, false, o, gen),
      conv1d(d_inner, cfg.d_conv, true, o, gen),
      long_conv(make_global_selection(cfg.global_selection, layer_idx, d_inner, o, gen)),
      x_proj(d_inner, dt_rank + 2 * d_state, false, o, gen),
      dt_proj(dt_rank, d_inner, true, o, gen), // weight U(±R^-0.5): the default bound for fan_in R
      out_proj(d_inner, d_model, false, o, gen) {
    NoGrad ng;
    if (cfg.init == InitScheme::mamba) {
        dt_proj.bias = dt_bias_init(d_inner, o, gen);
        out_proj.weight = (out_proj.weight * (1.0 / std::sqrt(double(cfg.n_layer)))).detach();
    } else {
        dt_proj.bias = Tensor::zeros({d_inner}, {o.dtype, o.device});
    }
    dt_proj.bias.set_requires_grad(true);
    out_proj.weight.set_requires_grad(true);
    // S4D-real: A_log[d, n] = log(n + 1), so A = -exp(A_log) = -(1, 2, ..., N) in every channel.
    std::vector<double> a(size_t(d_inner * d_state));
    for (int64_t d = 0; d < d_inner; ++d)
        for (int64_t n = 0; n < d_state; ++n) a[size_t(d * d_state + n)] = std::log(double(n + 1));
    A_log = from_host(a, {d_inner, d_state}, o);
    D = Tensor::ones({d_inner}, {o.dtype, o.device});
    // PyTorch order: own parameters first, then the children in registration order.
    register_parameter("A_log", A_log);
    register_parameter("D", D);
    register_module("in_proj", in_proj);
    register_module("conv1d", conv1d);
    if (long_conv) register_module("long_conv", long_conv->module());
    register_module("x_proj", x_proj);
    register_module("dt_proj", dt_proj);
    register_module("out_proj", out_proj);
}

Tensor MambaMixer::gate_of(const Tensor& g_raw) const {
    // normalized: g / rms over the channels at each position (no weight: ones)
    const Tensor g = gate_input == GateInput::normalized
                         ? rmsnorm(g_raw, Tensor::ones({g_raw.size(-1)}, g_raw.options()), norm_eps)
                         : g_raw;
    return gate_function == GateFunction::sigmoid ? sigmoid(g) : silu(g);
}

Tensor MambaMixer::gate_source(const Tensor& x) const { return gate_input == GateInput::detached ? x.detach() : x; }

Tensor MambaMixer::forward(const Tensor& u, MixerTrace* trace) const {
    MG_CHECK(u.dim() == 3 && u.size(2) == d_model, "MambaMixer: u is {}, expected (B, L, d_model) with d_model = {}",
             u.desc(), d_model);
    std::vector<Tensor> xz = in_proj.forward_split(u, {d_inner, d_inner}); // x, z: (B, L, D) each, contiguous
    const Tensor &x = xz[0], &z = xz[1];
    Tensor xc = conv1d.forward(x, /*silu=*/true);                         // (B, L, D)
    std::vector<Tensor> dbc = split(x_proj.forward(xc), {dt_rank, d_state, d_state}, 2);
    Tensor dt = linear(dbc[0], dt_proj.weight);                           // (B, L, D), no bias
    Tensor gate;                                                          // global selection gate
    if (long_conv) gate = gate_of(long_conv->branch(gate_source(x)));     // f(g), g from either kind
    if (gate.defined()) dt = dt * gate;
    Tensor A = -exp(A_log);                                               // (D, N)
    if (trace) {
        NoGrad ng;
        *trace = {x.detach(), gate.defined() ? gate.detach() : Tensor(), dt.detach(),
                  softplus(dt.detach() + dt_proj.bias.detach()), Tensor()};
    }
    Tensor y = selective_scan(xc, dt, A, dbc[1], dbc[2], D, z, dt_proj.bias).out; // softplus(dt + bias)
    Tensor out = out_proj.forward(y);
    if (trace) trace->out = out.detach();
    return out;
}

Tensor MambaMixer::step(const Tensor& u_t, LayerState& st) const {
    MG_CHECK(u_t.dim() == 2 && u_t.size(1) == d_model, "MambaMixer::step: u_t is {}, expected (B, d_model) with "
             "d_model = {}", u_t.desc(), d_model);
    std::vector<Tensor> xz = in_proj.forward_split(u_t, {d_inner, d_inner}); // x, z: (B, D) each
    const Tensor &x = xz[0], &z = xz[1];
    Tensor xc = conv1d.step(st.conv_state, x, /*silu=*/true);             // (B, D)
    std::vector<Tensor> dbc = split(x_proj.forward(xc), {dt_rank, d_state, d_state}, 1);
    Tensor dt = linear(dbc[0], dt_proj.weight);                           // (B, D)
    if (long_conv) dt = dt * gate_of(long_conv->branch_step(st.long_conv_state, gate_source(x)));
    Tensor A = -exp(A_log);
    Tensor y = selective_state_update(st.ssm_state, xc, dt, A, dbc[1], dbc[2], D, z, dt_proj.bias, true);
    return out_proj.forward(y);
}

LayerState MambaMixer::make_state(int64_t batch) const {
    Options o = A_log.options();
    LayerState s;
    s.conv_state = Tensor::zeros({batch, d_inner, conv1d.kernel_size - 1}, o);
    s.ssm_state = Tensor::zeros({batch, d_inner, d_state}, o);
    if (long_conv) s.long_conv_state = Tensor::zeros({batch, d_inner, long_conv->kernel_length() - 1}, o);
    return s;
}

// ---- MambaBlock -----------------------------------------------------------------------------------
MambaBlock::MambaBlock(const MambaConfig& cfg, int64_t layer_idx, Options o, Generator& gen)
    : mixer(cfg, layer_idx, o, gen), norm(cfg.d_model, cfg.norm_eps, o) {
    register_module("mixer", mixer);
    register_module("norm", norm);
}

MambaBlock::Out MambaBlock::forward(const Tensor& hidden, const Tensor& residual, MixerTrace* trace) const {
    RMSNorm::Result r = norm.forward(hidden, residual);
    return {mixer.forward(r.normed, trace), r.residual};
}

MambaBlock::Out MambaBlock::step(const Tensor& hidden, const Tensor& residual, LayerState& state) const {
    RMSNorm::Result r = norm.forward(hidden, residual);
    return {mixer.step(r.normed, state), r.residual};
}

// ---- MambaBackbone --------------------------------------------------------------------------------
MambaBackbone::MambaBackbone(const MambaConfig& cfg, Options o, Generator& gen)
    : embedding(checked(cfg).padded_vocab(), cfg.d_model, cfg.init == InitScheme::mamba ? 0.02 : 0.1, o, gen),
      norm_f(cfg.d_model, cfg.norm_eps, o) {
    register_module("embedding", embedding);
    for (int64_t i = 0; i < cfg.n_layer; ++i) {
        layers.push_back(std::make_unique<MambaBlock>(cfg, i, o, gen));
        register_module(fmt::format("layers.{}", i), *layers.back());
    }
    register_module("norm_f", norm_f);
}

Tensor MambaBackbone::forward(const Tensor& ids, std::vector<MixerTrace>* trace) const {
    MG_CHECK(ids.dim() == 2, "MambaLM: ids is {}, expected (B, L) i32 token ids", ids.desc());
    Tensor h = embedding.forward(ids), residual;
    if (trace) trace->assign(layers.size(), {});
    for (size_t i = 0; i < layers.size(); ++i) {
        MambaBlock::Out o = layers[i]->forward(h, residual, trace ? &(*trace)[i] : nullptr);
        h = o.hidden;
        residual = o.residual;
    }
    return norm_f.forward(h, residual).normed;
}

// ---- MambaLM --------------------------------------------------------------------------------------
MambaLM::MambaLM(const MambaConfig& cfg, Options o, Generator& gen) : cfg_(checked(cfg)), backbone(cfg, o, gen) {
    register_module("backbone", backbone);
}

Tensor MambaLM::hidden_states(const Tensor& ids, std::vector<MixerTrace>* trace) const {
    return backbone.forward(ids, trace);
}

Tensor MambaLM::forward(const Tensor& ids) const { return linear(hidden_states(ids), lm_head_weight()); }

void MambaLM::set_dropout_generator(Generator* gen) {
    for (const auto& layer : backbone.layers)
        if (layer->mixer.long_conv) layer->mixer.long_conv->set_dropout_generator(gen);
}

InferenceState MambaLM::make_state(int64_t batch) const {
    MG_CHECK(batch >= 0, "MambaLM::make_state: batch = {}, expected >= 0", batch);
    InferenceState s;
    s.batch = batch;
    for (const auto& layer : backbone.layers) s.layers.push_back(layer->mixer.make_state(batch));
    return s;
}

std::unique_ptr<RecurrentState> MambaLM::make_recurrent_state(int64_t batch) const {
    return std::make_unique<InferenceState>(make_state(batch));
}

Tensor MambaLM::step(const Tensor& ids, RecurrentState& state) const {
    auto* s = dynamic_cast<InferenceState*>(&state);
    MG_CHECK(s, "MambaLM::step: the recurrent state was made by another kind of model; make it with "
             "make_recurrent_state()");
    return step(ids, *s);
}

Tensor MambaLM::step(const Tensor& ids, InferenceState& state) const {
    MG_CHECK(ids.dim() == 1 && ids.dtype() == DType::i32 && ids.size(0) == state.batch,
             "MambaLM::step: ids is {}, expected (B) i32 with B = {} as in the inference state", ids.desc(),
             state.batch);
    MG_CHECK(state.layers.size() == backbone.layers.size(),
             "MambaLM::step: the inference state has {} layers, the model {}; make it with make_state()",
             state.layers.size(), backbone.layers.size());
    NoGrad ng;
    Tensor h = backbone.embedding.forward(ids), residual; // (B, d)
    for (size_t i = 0; i < backbone.layers.size(); ++i) {
        MambaBlock::Out o = backbone.layers[i]->step(h, residual, state.layers[i]);
        h = o.hidden;
        residual = o.residual;
    }
    Tensor normed = backbone.norm_f.forward(h, residual).normed;
    state.position += 1;
    return linear(normed, lm_head_weight()); // (B, V)
}

void MambaLM::load_state_dict(const StateDict& dict) {
    auto head = dict.find("lm_head.weight");
    if (head == dict.end()) return Module::load_state_dict(dict);
    auto emb = dict.find("backbone.embedding.weight");
    if (emb != dict.end() && head->second.defined() && emb->second.defined()) {
        const Tensor &h = head->second, &e = emb->second;
        bool same = h.same(e) || (h.shape() == e.shape() && is_floating(h.dtype()) && is_floating(e.dtype()) &&
                                  h.to(DType::f64).to_vector<double>() == e.to(DType::f64).to_vector<double>());
        MG_CHECK(same, "load_state_dict: lm_head.weight {} differs from backbone.embedding.weight {}; this model "
                 "ties lm_head to the embedding", h.desc(), e.desc());
    }
    StateDict rest = dict;
    rest.erase("lm_head.weight");
    Module::load_state_dict(rest);
}

} // namespace mg::nn
