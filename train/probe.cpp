// train/probe.cpp: see train/probe.h.
#include "train/probe.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "autograd/grad_mode.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tensor/check.h"

namespace mg::train {

TensorStats tensor_stats(const Tensor& t) {
    TensorStats s;
    if (!t.defined() || t.numel() == 0) return s;
    std::vector<double> v = t.detach().to(DType::f64).to_vector<double>();
    s.min = *std::min_element(v.begin(), v.end());
    s.max = *std::max_element(v.begin(), v.end());
    double sum = 0, abs_sum = 0;
    for (double x : v) {
        sum += x;
        abs_sum += std::fabs(x);
    }
    s.mean = sum / double(v.size());
    s.abs_mean = abs_sum / double(v.size());
    for (double& x : v) x = std::fabs(x);
    const size_t k = std::min(v.size() - 1, size_t(0.99 * double(v.size())));
    std::nth_element(v.begin(), v.begin() + int64_t(k), v.end());
    s.p99_abs = v[k];
    return s;
}

ProbeResult probe_model(nn::MambaLM& model, const TrainConfig& cfg, const ProbeOptions& opts) {
    MG_CHECK(!cfg.task.is_lm(), "probe: task.kind lm is not supported; probe an MQAR run");
    MG_CHECK(opts.batch >= 1, "probe: --batch is {}, expected >= 1", opts.batch);
    MG_CHECK(opts.dtype == DType::f32 || opts.dtype == DType::f64, "probe: --dtype {}, expected f32 or f64",
             dtype_name(opts.dtype));
    int64_t L = opts.seq_len;
    if (L == 0)
        for (const auto& c : cfg.task.grid) L = std::max<int64_t>(L, c.first);
    model.to(opts.dtype);
    const Device device = model.backbone.embedding.weight.device();

    // the first `batch` training examples of length L, in generation order
    std::vector<data::MqarExample> examples = cfg.task.generate(cfg.task.variant, data::Split::Train, opts.batch).examples;
    std::vector<int64_t> index;
    for (size_t i = 0; i < examples.size() && int64_t(index.size()) < opts.batch; ++i)
        if (examples[i].seq_len == L) index.push_back(int64_t(i));
    MG_CHECK(int64_t(index.size()) == opts.batch,
             "probe: the task's grid gives {} training example(s) of length {} for --batch {} (task.grid holds the "
             "lengths; --seq_len picks one)", index.size(), L, opts.batch);

    ProbeResult r;
    r.batch = opts.batch;
    r.seq_len = L;
    r.data = data::make_batch(examples, index, device);
    r.labelled = r.data.positions.size(0);
    model.zero_grad();
    std::vector<nn::MixerTrace> trace;
    Tensor h = model.hidden_states(r.data.inputs, &trace);
    Tensor loss = cross_entropy_indexed(h, model.lm_head_weight(), r.data.positions, r.data.targets);
    loss.backward();
    r.loss = loss.item();
    for (const auto& [name, p] : model.named_parameters()) {
        Tensor g = p.grad().defined() ? p.grad() : Tensor::zeros(p.shape(), p.options());
        r.grads.emplace_back(name, g);
        r.params.emplace_back(name, p.detach());
        r.grad_norms.emplace_back(name, std::sqrt(sum(g * g).item()));
    }

    NoGrad ng;
    for (size_t i = 0; i < trace.size(); ++i) {
        const nn::MixerTrace& t = trace[i];
        const nn::MambaMixer& mixer = model.backbone.layers[i]->mixer;
        LayerProbe lp;
        lp.dt = tensor_stats(t.dt);
        lp.delta = tensor_stats(t.delta);
        lp.has_gate = t.gate.defined();
        lp.gate = tensor_stats(t.gate);
        lp.out_rms = std::sqrt(mean(t.out * t.out).item());
        // exp(Δ A_slow) per (b, t, d), A_slow = -exp(min_n A_log[d, n])
        std::vector<double> A_log = mixer.A_log.to(DType::f64).to_vector<double>();
        std::vector<double> delta = t.delta.to(DType::f64).to_vector<double>();
        const int64_t D = mixer.d_inner, N = mixer.d_state;
        std::vector<double> a_slow(size_t(D), 0.0);
        for (int64_t d = 0; d < D; ++d) {
            double m = A_log[size_t(d * N)];
            for (int64_t n = 1; n < N; ++n) m = std::min(m, A_log[size_t(d * N + n)]);
            a_slow[size_t(d)] = -std::exp(m);
        }
        int64_t below = 0, above = 0;
        for (size_t k = 0; k < delta.size(); ++k) {
            const double decay = std::exp(delta[k] * a_slow[k % size_t(D)]);
            below += decay < 1e-3;
            above += decay > 0.999;
        }
        lp.slow_decay_below_1e3 = double(below) / double(delta.size());
        lp.slow_decay_above_0999 = double(above) / double(delta.size());
        r.layers.push_back(lp);
    }
    return r;
}

std::string format_probe(const ProbeResult& r) {
    std::string out = fmt::format("batch: {} examples of length {}, {} labelled positions; loss {:.6f}\n", r.batch,
                                  r.seq_len, r.labelled, r.loss);
    // gradient norms, the per-layer parameters grouped under "layers.*"
    std::vector<std::string> order;
    std::map<std::string, std::vector<double>> groups;
    double total = 0;
    for (const auto& [name, n] : r.grad_norms) {
        total += n * n;
        std::string key = name;
        const std::string pre = "backbone.layers.";
        if (name.starts_with(pre)) {
            const size_t dot = name.find('.', pre.size());
            key = "layers.*" + name.substr(dot);
        }
        if (!groups.count(key)) order.push_back(key);
        groups[key].push_back(n);
    }
    out += fmt::format("gradient norms (global {:.4g}); per layer where the name repeats:\n", std::sqrt(total));
    for (const std::string& k : order) {
        std::string vals;
        for (double v : groups[k]) vals += fmt::format(" {:9.3g}", v);
        out += fmt::format("  {:<34}{}\n", k, vals);
    }
    out += "per layer (|x| p99 is the 99th percentile of |x|; decay = exp(delta A) of the slowest state):\n";
    out += fmt::format("  {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10}\n", "layer", "dt mean",
                       "dt |p99|", "gate min", "gate mean", "gate max", "delta mean", "delta max", "decay<1e-3",
                       "decay>0.999", "out rms");
    for (size_t i = 0; i < r.layers.size(); ++i) {
        const LayerProbe& l = r.layers[i];
        auto g = [&](double v) { return l.has_gate ? fmt::format("{:10.4g}", v) : fmt::format("{:>10}", "-"); };
        out += fmt::format("  {:>5} {:10.4g} {:10.4g} {} {} {} {:10.4g} {:10.4g} {:11.2f}% {:11.2f}% {:10.4g}\n", i, l.dt.mean,
                           l.dt.p99_abs, g(l.gate.min), g(l.gate.mean), g(l.gate.max), l.delta.mean, l.delta.max,
                           100 * l.slow_decay_below_1e3, 100 * l.slow_decay_above_0999, l.out_rms);
    }
    return out;
}

void save_probe(const std::string& path, const ProbeResult& r, const TrainConfig& cfg) {
    NamedTensors t = {{"batch.inputs", r.data.inputs},
                      {"batch.positions", r.data.positions},
                      {"batch.targets", r.data.targets},
                      {"loss", Tensor::from_vector(std::vector<double>{r.loss}, Shape{})}};
    for (const auto& [name, g] : r.grads) t.emplace_back("grad." + name, g);
    for (const auto& [name, p] : r.params) t.emplace_back("param." + name, p);
    save_safetensors(path, t, {{"format", "pt"}, {kCheckpointConfigKey, cfg.to_json().dump(2)}});
}

} // namespace mg::train
