// bench/bench_ops.cpp: times mambagrad's kernels through the public ops (what a user gets: the
// caching allocator, validation and autograd included) and prints one JSON line per (op, shape):
//   {"op": ..., "device": ..., "shape": ..., "fwd_ms": ..., "fwdbwd_ms": ..., "bytes_fwd": ...,
//    "bytes_fwdbwd": ...}
// bench/bench_ops.py runs it beside the PyTorch baselines and prints the side-by-side table.
//
//   build/bench_ops --device cuda [--L 512,2048,8192] [--reps 20]
//   build/bench_ops --device cpu --B 4 --D 256 --L 1024
//   build/bench_ops --ops attention --B 8 --H 12 --Dh 64   (bench/bench_attention.py adds PyTorch)
//
// GPU times are medians of CUDA-event intervals after warm-up; CPU times are medians of wall
// time; both also report the minimum. On the CPU the scan row also times the naive double
// reference forward (ref_fwd_ms, one run). bytes_* are the fewest bytes the op must move (each input read once, each output written
// once): the floor the achieved GB/s is measured against.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <sstream>

#ifdef MG_CUDA
#include <cuda_runtime.h>
#endif

#include "mambagrad.h"
#include "ops/conv1d.h"
#include "ops/fft_conv.h"

using namespace mg;

namespace {

struct Timing {
    double median = 0, min = 0; // ms
};

// Median and minimum time in ms of fn() on `dev`, after `warmup` untimed calls. On a shared
// machine the minimum is the run least disturbed by other processes; report both.
Timing time_ms(Device dev, int reps, const std::function<void()>& fn, int warmup = 3) {
    for (int i = 0; i < warmup; ++i) fn();
    std::vector<double> ts;
    for (int i = 0; i < reps; ++i) {
        if (dev.is_cuda()) {
#ifdef MG_CUDA
            cudaEvent_t a, b;
            cudaEventCreate(&a);
            cudaEventCreate(&b);
            cudaEventRecord(a);
            fn();
            cudaEventRecord(b);
            cudaEventSynchronize(b);
            float ms = 0;
            cudaEventElapsedTime(&ms, a, b);
            cudaEventDestroy(a);
            cudaEventDestroy(b);
            ts.push_back(ms);
#endif
        } else {
            auto t0 = std::chrono::steady_clock::now();
            fn();
            ts.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
    }
    std::sort(ts.begin(), ts.end());
    return {ts[ts.size() / 2], ts.front()};
}

// One JSON line; `extra` is appended as more fields (", \"key\": value").
void emit(const std::string& op, Device dev, const std::string& shape, Timing fwd, Timing fwdbwd, double bytes_fwd,
          double bytes_fwdbwd, const std::string& extra = "") {
    fmt::print("{{\"op\": \"{}\", \"device\": \"{}\", \"shape\": \"{}\", \"threads\": {}, \"fwd_ms\": {:.5f}, "
               "\"fwdbwd_ms\": {:.5f}, \"fwd_min_ms\": {:.5f}, \"fwdbwd_min_ms\": {:.5f}, \"bytes_fwd\": {:.0f}, "
               "\"bytes_fwdbwd\": {:.0f}{}}}\n",
               op, dev.str(), shape, omp_get_max_threads(), fwd.median, fwdbwd.median, fwd.min, fwdbwd.min, bytes_fwd,
               bytes_fwdbwd, extra);
    std::fflush(stdout);
}

// The selective scan as the Mamba mixer calls it: D skip, z gate, delta bias, softplus.
void bench_scan(Device dev, int64_t B, int64_t D, int64_t N, int64_t L, int reps) {
    Generator g(1);
    Options o{DType::f32, dev};
    Tensor u = Tensor::randn({B, L, D}, o, g), delta = Tensor::uniform({B, L, D}, -3, 0, o, g);
    Tensor A = Tensor::uniform({D, N}, -8, -1, o, g), Bm = Tensor::randn({B, L, N}, o, g), Cm = Tensor::randn({B, L, N}, o, g);
    Tensor Dk = Tensor::randn({D}, o, g), z = Tensor::randn({B, L, D}, o, g), bias = Tensor::uniform({D}, -4, -2, o, g);
    Tensor dout = Tensor::randn({B, L, D}, o, g);
    std::vector<Tensor> params = {u, delta, A, Bm, Cm, Dk, z, bias};
    Timing fwd = time_ms(dev, reps, [&] {
        NoGrad ng;
        selective_scan(u, delta, A, Bm, Cm, Dk, z, bias);
    });
    // On the CPU, also the naive reference (selective_scan_ref: scalar loops in double, forward only)
    std::string extra;
    if (dev.is_cpu()) {
        ScanFwdArgs<float> a;
        a.u = u.data<float>(); a.delta = delta.data<float>(); a.A = A.data<float>(); a.Bm = Bm.data<float>();
        a.Cm = Cm.data<float>(); a.Dskip = Dk.data<float>(); a.z = z.data<float>(); a.delta_bias = bias.data<float>();
        a.softplus = true; a.B = B; a.L = L; a.D = D; a.N = N;
        std::vector<double> ref_out(size_t(B * L * D));
        Timing ref = time_ms(dev, 1, [&] { selective_scan_ref<float>(ref_out.data(), nullptr, a); }, 0);
        extra = fmt::format(", \"ref_fwd_ms\": {:.5f}", ref.median);
    }
    for (Tensor& t : params) t.set_requires_grad(true);
    Timing fwdbwd = time_ms(dev, reps, [&] {
        Tensor out = selective_scan(u, delta, A, Bm, Cm, Dk, z, bias).out;
        out.backward(dout);
        for (Tensor& t : params) t.zero_grad();
    });
    double bld = double(B * L * D) * 4, bln = double(B * L * N) * 4;
    // fwd: read u, delta, z, B, C; write out.  bwd: read u, delta, z, dout, B, C; write du, ddelta, dz, dB, dC.
    emit("selective_scan", dev, fmt::format("B={} D={} N={} L={}", B, D, N, L), fwd, fwdbwd, 4 * bld + 2 * bln,
         4 * bld + 2 * bln + 7 * bld + 4 * bln, extra);
}

// On the CPU, the naive reference of both convolutions (causal_conv1d_ref: the direct sum in
// double, forward only, one run) as a JSON field; nothing on the GPU.
std::string conv_ref_extra(Device dev, const Tensor& x, const Tensor& w, const Tensor& bias, bool silu) {
    if (!dev.is_cpu()) return "";
    const int64_t B = x.shape()[0], L = x.shape()[1], D = x.shape()[2], K = w.shape()[1];
    std::vector<double> y(size_t(B * L * D));
    Timing ref = time_ms(dev, 1, [&] {
        causal_conv1d_ref<float>(y.data(), x.data<float>(), w.data<float>(), bias.data<float>(), B, L, D, K, silu);
    }, 0);
    return fmt::format(", \"ref_fwd_ms\": {:.5f}", ref.median);
}

// Causal depthwise conv, K = 4, bias, fused SiLU: the mixer's short conv. x (B, L, D).
void bench_conv(Device dev, int64_t B, int64_t D, int64_t L, int reps) {
    Generator g(2);
    Options o{DType::f32, dev};
    const int64_t K = 4;
    Tensor x = Tensor::randn({B, L, D}, o, g), w = Tensor::randn({D, K}, o, g), bias = Tensor::randn({D}, o, g);
    Tensor dout = Tensor::randn({B, L, D}, o, g);
    Timing fwd = time_ms(dev, reps, [&] {
        NoGrad ng;
        causal_conv1d(x, w, bias, true);
    });
    const std::string extra = conv_ref_extra(dev, x, w, bias, true);
    for (Tensor* t : {&x, &w, &bias}) t->set_requires_grad(true);
    Timing fwdbwd = time_ms(dev, reps, [&] {
        causal_conv1d(x, w, bias, true).backward(dout);
        for (Tensor* t : {&x, &w, &bias}) t->zero_grad();
    });
    double bld = double(B * L * D) * 4;
    emit("conv1d_k4_silu", dev, fmt::format("B={} D={} L={}", B, D, L), fwd, fwdbwd, 2 * bld, 2 * bld + 3 * bld, extra);
}

// The global-selection long convolution by FFT with a kernel as long as the sequence.
void bench_fft_conv(Device dev, int64_t B, int64_t D, int64_t L, int reps) {
    Generator g(3);
    Options o{DType::f32, dev};
    Tensor x = Tensor::randn({B, L, D}, o, g), w = Tensor::randn({D, L}, o, g), bias = Tensor::randn({D}, o, g);
    Tensor dout = Tensor::randn({B, L, D}, o, g);
    Timing fwd = time_ms(dev, reps, [&] {
        NoGrad ng;
        fft_causal_conv(x, w, bias);
    });
    const std::string extra = conv_ref_extra(dev, x, w, bias, false);
    for (Tensor* t : {&x, &w, &bias}) t->set_requires_grad(true);
    Timing fwdbwd = time_ms(dev, reps, [&] {
        fft_causal_conv(x, w, bias).backward(dout);
        for (Tensor* t : {&x, &w, &bias}) t->zero_grad();
    });
    double bld = double(B * L * D) * 4, dl = double(D * L) * 4;
    emit("fft_conv_k=L", dev, fmt::format("B={} D={} L={}", B, D, L), fwd, fwdbwd, 2 * bld + dl, 5 * bld + 2 * dl, extra);
}

// Causal attention over (B, H, L, Dh), fp32: the Transformer's core. `useful` FLOPs as flash
// attention counts them: forward 2 matmuls of L x L x Dh, halved by the causal mask; backward
// 2.5x the forward. Peak memory: the allocator's high-water mark above what the inputs hold.
void bench_attention(Device dev, int64_t B, int64_t H, int64_t Dh, int64_t L, int reps) {
    Generator g(4);
    Options o{DType::f32, dev};
    Tensor q = Tensor::randn({B, H, L, Dh}, o, g), k = Tensor::randn({B, H, L, Dh}, o, g),
           v = Tensor::randn({B, H, L, Dh}, o, g), dout = Tensor::randn({B, H, L, Dh}, o, g);
    Timing fwd = time_ms(dev, reps, [&] {
        NoGrad ng;
        attention(q, k, v);
    });
    for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
    auto fb = [&] {
        attention(q, k, v).backward(dout);
        for (Tensor* t : {&q, &k, &v}) t->zero_grad();
    };
    Timing fwdbwd = time_ms(dev, reps, fb);
    std::string extra;
#ifdef MG_CUDA
    if (dev.is_cuda()) {
        cuda::synchronize(dev.index);
        const size_t base = memory_stats(dev).allocated;
        cuda::reset_peak_memory(dev.index);
        fb();
        cuda::synchronize(dev.index);
        extra += fmt::format(", \"peak_extra_bytes\": {}", memory_stats(dev).peak_allocated - base);
    }
#endif
    const double flops_fwd = 4.0 * double(B * H) * double(L) * double(L) * double(Dh) / 2;
    extra += fmt::format(", \"flops_fwd\": {:.0f}, \"flops_fwdbwd\": {:.0f}", flops_fwd, 3.5 * flops_fwd);
    const double bhld = double(B * H * L * Dh) * 4;
    emit("attention", dev, fmt::format("B={} H={} Dh={} L={}", B, H, Dh, L), fwd, fwdbwd, 4 * bhld, 4 * bhld + 7 * bhld,
         extra);
}

std::vector<int64_t> parse_list(const std::string& s) {
    std::vector<int64_t> v;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) v.push_back(std::stoll(item));
    return v;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"mambagrad kernel benchmarks (JSON lines)"};
    std::string device = "cuda", Ls = "512,2048,8192", ops = "scan";
    int64_t B = 8, D = 1536, N = 16, H = 12, Dh = 64;
    int reps = 20;
    app.add_option("--device", device);
    app.add_option("--L", Ls, "comma-separated sequence lengths");
    app.add_option("--B", B);
    app.add_option("--D", D);
    app.add_option("--N", N);
    app.add_option("--H", H, "attention heads");
    app.add_option("--Dh", Dh, "attention head dim");
    app.add_option("--reps", reps);
    app.add_option("--ops", ops, "comma-separated: scan, conv, fft, attention");
    CLI11_PARSE(app, argc, argv);
    try {
        Device dev = Device::parse(device);
        for (int64_t L : parse_list(Ls)) {
            if (ops.find("scan") != std::string::npos) bench_scan(dev, B, D, N, L, reps);
            if (ops.find("conv") != std::string::npos) bench_conv(dev, B, D, L, reps);
            if (ops.find("fft") != std::string::npos) bench_fft_conv(dev, B, D, L, reps);
            if (ops.find("attention") != std::string::npos) bench_attention(dev, B, H, Dh, L, reps);
        }
    } catch (const mg::Error& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return 2;
    }
    return 0;
}
