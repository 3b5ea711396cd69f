// bench/bench_step.cpp: where one training step's time goes, on the CPU or the GPU.
//
//   build/bench_step --device cuda --d_model 128 --n_layer 2 --vocab 8192 --B 64 --L 256 --labels 16
//
// The step is the trainer's (train/trainer.cpp): forward to the final hidden states, the loss
// from logits at the labelled positions only (cross_entropy_indexed), backward, the NaN/Inf
// probe, clipping by value and AdamW with its skip word. One fixed batch, after warm-up.
//  1. queued: `steps` steps with no sync inside (CUDA: the host runs ahead of the GPU), then one
//     sync. wall/step is the training throughput; the host's time in each phase is what it
//     costs to queue that phase. If the host's total is close to wall/step, the step is bound
//     by the host (launch and framework overhead), not by the GPU.
//  2. synced: a sync after each phase, so each phase's wall time includes its GPU work.
//  3. backward by node: a sync before and after each autograd node (autograd::NodeObserver),
//     total time per node type per step: the backward's GPU + host cost, op by op.
// Prints plain text; the figures go into bench/RESULTS.md by hand.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <map>

#include "mambagrad.h"
#include "nn/mamba.h"
#include "ops/cross_entropy.h"
#include "train/clip.h"
#include "train/guard.h"

using namespace mg;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

struct Profile : autograd::NodeObserver {
    Device device;
    Clock::time_point t0;
    std::map<std::string, std::pair<double, int64_t>> by_node; // total ms, count
    void sync() {
        if (device.is_cuda()) cuda::synchronize(device.index);
    }
    void before(const autograd::Node&) override {
        sync();
        t0 = Clock::now();
    }
    void after(const autograd::Node& n) override {
        sync();
        auto& e = by_node[n.name()];
        e.first += ms_since(t0);
        ++e.second;
    }
};

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"mambagrad: the time of one training step, by phase and by backward node"};
    std::string device_s = "cuda";
    int64_t d_model = 128, n_layer = 2, vocab = 8192, B = 64, L = 256, labels = 16, steps = 200, d_state = 16, warmup = 20;
    app.add_option("--device", device_s, "cpu or cuda");
    app.add_option("--d_model", d_model);
    app.add_option("--n_layer", n_layer);
    app.add_option("--d_state", d_state);
    app.add_option("--vocab", vocab);
    app.add_option("--B", B);
    app.add_option("--L", L);
    app.add_option("--labels", labels, "labelled positions per sequence");
    app.add_option("--steps", steps);
    app.add_option("--warmup", warmup, "untimed steps first (allocator, plans, cuBLAS); fewer when profiling with ncu");
    CLI11_PARSE(app, argc, argv);
    try {
        const Device dev = Device::parse(device_s);
        nn::MambaConfig c;
        c.d_model = d_model;
        c.n_layer = n_layer;
        c.d_state = d_state;
        c.vocab_size = vocab;
        Generator gen(1);
        nn::MambaLM model(c, {DType::f32, dev}, gen);
        const train::NamedTensors params = model.named_parameters();
        train::AdamW opt(params);
        std::vector<int32_t> ids(size_t(B * L)), pos, tgt;
        for (int64_t i = 0; i < B * L; ++i) ids[size_t(i)] = int32_t((i * 7919) % vocab);
        for (int64_t b = 0; b < B; ++b)
            for (int64_t k = 0; k < labels; ++k) {
                pos.push_back(int32_t(b * L + L - 1 - k));
                tgt.push_back(int32_t((b * 31 + k) % vocab));
            }
        const int64_t P = int64_t(pos.size());
        Profile prof;
        prof.device = dev;

        double h_batch = 0, h_fwd = 0, h_bwd = 0, h_opt = 0;
        auto step = [&](bool sync_phases) {
            auto t = Clock::now();
            Tensor x = Tensor::from_vector(ids, {B, L}).to(dev);
            Tensor p = Tensor::from_vector(pos, {P}).to(dev);
            Tensor y = Tensor::from_vector(tgt, {P}).to(dev);
            if (sync_phases) prof.sync();
            h_batch += ms_since(t);
            t = Clock::now();
            opt.zero_grad();
            Tensor h = model.hidden_states(x);
            Tensor loss = cross_entropy_indexed(h, model.lm_head_weight(), p, y);
            if (sync_phases) prof.sync();
            h_fwd += ms_since(t);
            t = Clock::now();
            loss.backward();
            if (sync_phases) prof.sync();
            h_bwd += ms_since(t);
            t = Clock::now();
            train::FiniteProbe probe(1, train::named_grads(params), "gradient", loss.detach().reshape({1}));
            train::clip_grad_value(train::grads_of(params), 1.0);
            opt.step(probe.skip_words());
            if (sync_phases) prof.sync();
            h_opt += ms_since(t);
            return probe;
        };
        for (int64_t i = 0; i < warmup; ++i) step(false).check(); // warm-up: allocator, plans, cuBLAS
        prof.sync();

        fmt::print("bench_step: {} d_model {} n_layer {} d_state {} vocab {} B {} L {} ({} tokens), {} labels\n",
                   dev.str(), d_model, n_layer, d_state, vocab, B, L, B * L, P);
        h_batch = h_fwd = h_bwd = h_opt = 0;
        auto t0 = Clock::now();
        train::FiniteProbe last;
        for (int64_t i = 0; i < steps; ++i) last = step(false); // each probe waits only for its copy when dropped
        prof.sync();
        last.check();
        double wall = ms_since(t0) / double(steps);
        fmt::print("queued: {:.3f} ms/step wall ({:.2f} M tokens/s); host per step: batch {:.3f}, forward {:.3f}, "
                   "backward {:.3f}, optimizer {:.3f}, total {:.3f} ms\n",
                   wall, double(B * L) / wall / 1e3, h_batch / steps, h_fwd / steps, h_bwd / steps, h_opt / steps,
                   (h_batch + h_fwd + h_bwd + h_opt) / steps);

        const int64_t s2 = std::max<int64_t>(steps / 4, 1);
        h_batch = h_fwd = h_bwd = h_opt = 0;
        for (int64_t i = 0; i < s2; ++i) step(true).check();
        fmt::print("synced: batch {:.3f}, forward {:.3f}, backward {:.3f}, optimizer {:.3f}, total {:.3f} ms per step\n",
                   h_batch / s2, h_fwd / s2, h_bwd / s2, h_opt / s2, (h_batch + h_fwd + h_bwd + h_opt) / s2);

        autograd::set_node_observer(&prof);
        for (int64_t i = 0; i < s2; ++i) step(true).check();
        autograd::set_node_observer(nullptr);
        std::vector<std::pair<double, std::string>> rows;
        double total = 0;
        for (const auto& [name, e] : prof.by_node) {
            rows.push_back({e.first / double(s2), name});
            total += e.first / double(s2);
        }
        std::sort(rows.rbegin(), rows.rend());
        fmt::print("backward by node (synced around each; ms per step, nodes per step):\n");
        for (const auto& [ms, name] : rows)
            fmt::print("  {:<28} {:8.3f} ms  {:4}x\n", name, ms, prof.by_node[name].second / s2);
        fmt::print("  {:<28} {:8.3f} ms\n", "total", total);
    } catch (const std::exception& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return 2;
    }
    return 0;
}
