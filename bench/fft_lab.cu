// bench/fft_lab.cu: the kernel lab of the fused FFT long convolution (cuda/fft_conv_kernels.cuh).
//
//     make lab && build/fft_lab                     # B=8, D=1536, L = 512, 2048, 4096, 8192
//     build/fft_lab --L 2048 --reps 50
//
// Each version is one launch configuration of the same kernels: E points per thread (N/E
// threads per block) and the threads per SM asked of the register allocator (__launch_bounds__'s
// minimum blocks = that / (N/E), so at most 65536 / that registers per thread). For every L the
// lab builds K = L causal kernels and time-major rows (the layout the fused path works on; the
// transposes around it are bench_ops' business), checks every version against a double-precision
// direct convolution on a few rows (forward: y; backward: dx and the kernel gradient of one
// channel), then times the spectrum, forward and backward kernels (CUDA events, median) and prints
// the rate of FFT work (5 N log2 N flops per complex transform of N points) and the bytes each
// kernel must move at least, as GB/s and as a share of the copy bandwidth measured at the start of
// the run. Version 0 is the configuration cuda/fft_conv.cu ships.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/lab.cuh"
#include "cuda/fft_conv_kernels.cuh"

namespace {

using namespace mg::cuda;
using mg::lab::download;
using mg::lab::time_ms;

struct Shape {
    int64_t B, L, D, K, n;
    double copy_gbs; // the copy bandwidth measured at the start of the run
};

// y_b[t] = sum_{j <= t, j < K} h[j] x_b[t-j], h[j] = w[K-1-j] (the causal conv of ops/fft_conv.h, no bias).
double ref_y(const std::vector<float>& xrow, const float* w, int64_t K, int64_t t) {
    double acc = 0;
    for (int64_t j = 0; j <= t && j < K; ++j) acc += double(w[K - 1 - j]) * double(xrow[size_t(t - j)]);
    return acc;
}

struct Buffers {
    float *xt = nullptr, *gt = nullptr, *yt = nullptr, *dxt = nullptr, *w = nullptr, *dw = nullptr, *dbias = nullptr;
    float* part = nullptr; // the split backward's partial sums
    float2 *Hh = nullptr, *tw = nullptr;
};

// One version: N, E, threads per SM, split (two transforms of N/2; cuda/fft_conv_kernels.cuh).
template <int N, int E, int TPS, bool SPLIT> struct Version {
    static constexpr int T = fftconv::fft_m<N, SPLIT>() / E, MINB = TPS / T < 1 ? 1 : TPS / T;
};

struct Reference {
    std::vector<int64_t> rows;               // (d*B + b) rows checked in the forward
    std::vector<std::vector<double>> y;      // their outputs
    int64_t dchan = 0;                       // the channel checked in the backward
    std::vector<std::vector<double>> dx;     // its rows' dx
    std::vector<double> dw;                  // its kernel gradient (K)
};

template <int N, int E, int TPS, bool SPLIT>
void run_version(int id, const Shape& s, Buffers& b, const Reference& ref, int reps, double& base_fwd, double& base_bwd) {
    using V = Version<N, E, TPS, SPLIT>;
    const int64_t rows = s.B * s.D, bld = rows * s.L;
    // forward into yt (not in place, so the input survives for the next version)
    LAB_CHECK(cudaMemset(b.yt, 0xff, size_t(bld) * sizeof(float))); // poison: NaN where unwritten
    fftconv::launch_spectrum<N, E, V::MINB, SPLIT>(b.Hh, b.tw, b.w, s.D, s.K);
    fftconv::launch_forward<N, E, V::MINB, SPLIT>(b.yt, b.xt, b.Hh, b.tw, s.B, s.L, s.D);
    LAB_CHECK(cudaMemset(b.dxt, 0xff, size_t(bld) * sizeof(float)));
    fftconv::launch_backward<N, E, V::MINB, SPLIT>(b.dxt, b.dw, b.dbias, b.gt, b.xt, b.Hh, b.tw, nullptr, s.B, s.L, s.D, s.K,
                                           false, b.part);
    LAB_CHECK(cudaDeviceSynchronize());
    // errors relative to the largest reference value of each check
    double ey = 0, my = 0, edx = 0, mdx = 0, edw = 0, mdw = 0;
    for (size_t r = 0; r < ref.rows.size(); ++r) {
        std::vector<float> got = download(b.yt + ref.rows[r] * s.L, size_t(s.L));
        for (int64_t t = 0; t < s.L; ++t) {
            ey = std::max(ey, std::fabs(double(got[size_t(t)]) - ref.y[r][size_t(t)]));
            my = std::max(my, std::fabs(ref.y[r][size_t(t)]));
        }
    }
    for (int64_t bb = 0; bb < s.B; ++bb) {
        std::vector<float> got = download(b.dxt + (ref.dchan * s.B + bb) * s.L, size_t(s.L));
        for (int64_t t = 0; t < s.L; ++t) {
            edx = std::max(edx, std::fabs(double(got[size_t(t)]) - ref.dx[size_t(bb)][size_t(t)]));
            mdx = std::max(mdx, std::fabs(ref.dx[size_t(bb)][size_t(t)]));
        }
    }
    std::vector<float> gdw = download(b.dw + ref.dchan * s.K, size_t(s.K));
    for (int64_t k = 0; k < s.K; ++k) {
        edw = std::max(edw, std::fabs(double(gdw[size_t(k)]) - ref.dw[size_t(k)]));
        mdw = std::max(mdw, std::fabs(ref.dw[size_t(k)]));
    }
    const double tol = 2e-5; // fp32 FFT of 2^14 points: errors of a few 1e-6 of the largest value
    const bool ok = ey <= tol * my && edx <= tol * mdx && edw <= tol * mdw;

    const float t_spec = time_ms(reps, [&] { fftconv::launch_spectrum<N, E, V::MINB, SPLIT>(b.Hh, b.tw, b.w, s.D, s.K); });
    const float t_fwd =
        time_ms(reps, [&] { fftconv::launch_forward<N, E, V::MINB, SPLIT>(b.yt, b.xt, b.Hh, b.tw, s.B, s.L, s.D); });
    const float t_bwd = time_ms(reps, [&] {
        fftconv::launch_backward<N, E, V::MINB, SPLIT>(b.dxt, b.dw, b.dbias, b.gt, b.xt, b.Hh, b.tw, nullptr, s.B, s.L, s.D,
                                               s.K, false, b.part);
    });
    if (id == 0) {
        base_fwd = t_fwd;
        base_bwd = t_bwd;
    }
    // FFT work: forward 2 transforms per pair of rows, backward 2 per row; 5 N log2 N flops each.
    const double fft = 5.0 * N * std::log2(double(N));
    const double fwd_flop = double((s.B + 1) / 2 * s.D) * 2 * fft, bwd_flop = double(rows) * 2 * fft;
    // bytes at least: forward reads x, writes y, reads the spectra; backward reads x, dy, writes dx.
    const double fwd_bytes = 2.0 * bld * 4 + double(s.D) * (N / 2 + 1) * 8, bwd_bytes = 3.0 * bld * 4;
    int regs_fwd = 0, regs_bwd = 0, spill_fwd = 0, spill_bwd = 0;
    cudaFuncAttributes fa{};
    LAB_CHECK(cudaFuncGetAttributes(&fa, fftconv::fused_forward_kernel<N, E, V::MINB, SPLIT>));
    regs_fwd = fa.numRegs;
    spill_fwd = int(fa.localSizeBytes);
    if constexpr (SPLIT) LAB_CHECK(cudaFuncGetAttributes(&fa, fftconv::fused_backward_split_kernel<N, E, V::MINB, false>));
    else LAB_CHECK(cudaFuncGetAttributes(&fa, fftconv::fused_backward_kernel<N, E, V::MINB, false>));
    regs_bwd = fa.numRegs;
    spill_bwd = int(fa.localSizeBytes);
    std::printf("v%-2d N=%-5d %s E=%-2d thr/SM=%-4d minB=%-2d regs f/b %3d/%3d local f/b %4d/%4d B | spectrum %8.1f us | "
                "fwd %8.1f us %5.1f TFLOP/s %6.0f GB/s (%4.1f%% of copy) x%.2f | bwd %8.1f us %5.1f TFLOP/s %6.0f GB/s "
                "(%4.1f%% of copy) x%.2f | err y %.1e dx %.1e dw %.1e %s\n",
                id, N, SPLIT ? "split" : "whole", E, TPS, V::MINB, regs_fwd, regs_bwd, spill_fwd, spill_bwd, t_spec * 1e3, t_fwd * 1e3,
                fwd_flop / (t_fwd * 1e-3) / 1e12, fwd_bytes / (t_fwd * 1e-3) / 1e9,
                100 * fwd_bytes / (t_fwd * 1e-3) / 1e9 / s.copy_gbs, base_fwd / t_fwd, t_bwd * 1e3,
                bwd_flop / (t_bwd * 1e-3) / 1e12, bwd_bytes / (t_bwd * 1e-3) / 1e9,
                100 * bwd_bytes / (t_bwd * 1e-3) / 1e9 / s.copy_gbs, base_bwd / t_bwd, ey / my, edx / mdx, edw / mdw,
                ok ? "ok" : "WRONG");
    std::fflush(stdout);
    if (!ok) std::exit(1);
}

template <int N> void run_size(const Shape& s, int reps) {
    const int64_t rows = s.B * s.D, bld = rows * s.L;
    std::mt19937 rng(7);
    std::normal_distribution<float> nd;
    std::vector<float> hx(static_cast<size_t>(bld)), hg(static_cast<size_t>(bld)), hw(static_cast<size_t>(s.D * s.K));
    for (float& v : hx) v = nd(rng);
    for (float& v : hg) v = nd(rng);
    for (float& v : hw) v = nd(rng) / std::sqrt(float(s.K));
    Buffers b;
    LAB_CHECK(cudaMalloc(&b.xt, size_t(bld) * 4));
    LAB_CHECK(cudaMalloc(&b.gt, size_t(bld) * 4));
    LAB_CHECK(cudaMalloc(&b.yt, size_t(bld) * 4));
    LAB_CHECK(cudaMalloc(&b.dxt, size_t(bld) * 4));
    LAB_CHECK(cudaMalloc(&b.w, size_t(s.D * s.K) * 4));
    LAB_CHECK(cudaMalloc(&b.dw, size_t(s.D * s.K) * 4));
    LAB_CHECK(cudaMalloc(&b.dbias, size_t(s.D) * 4));
    LAB_CHECK(cudaMalloc(&b.Hh, size_t(s.D * (N / 2 + 1)) * 8));
    LAB_CHECK(cudaMalloc(&b.tw, size_t(N) * 8));
    LAB_CHECK(cudaMalloc(&b.part, size_t(fftconv::backward_partials<N, 16, true>(s.B, s.D)) * 4));
    LAB_CHECK(cudaMemcpy(b.xt, hx.data(), size_t(bld) * 4, cudaMemcpyHostToDevice));
    LAB_CHECK(cudaMemcpy(b.gt, hg.data(), size_t(bld) * 4, cudaMemcpyHostToDevice));
    LAB_CHECK(cudaMemcpy(b.w, hw.data(), size_t(s.D * s.K) * 4, cudaMemcpyHostToDevice));

    // the double reference: forward on the first and last rows and one in between, backward on one channel
    Reference ref;
    ref.rows = {0, rows / 2 + 1, rows - 1};
    for (int64_t r : ref.rows) {
        std::vector<float> xr(hx.begin() + r * s.L, hx.begin() + (r + 1) * s.L);
        const float* w = hw.data() + (r / s.B) * s.K;
        std::vector<double> y(size_t(s.L));
        for (int64_t t = 0; t < s.L; ++t) y[size_t(t)] = ref_y(xr, w, s.K, t);
        ref.y.push_back(y);
    }
    ref.dchan = s.D / 3;
    const float* w = hw.data() + ref.dchan * s.K;
    ref.dw.assign(size_t(s.K), 0.0);
    for (int64_t bb = 0; bb < s.B; ++bb) {
        const float* x = hx.data() + (ref.dchan * s.B + bb) * s.L;
        const float* g = hg.data() + (ref.dchan * s.B + bb) * s.L;
        std::vector<double> dx(size_t(s.L), 0.0);
        // y[t] = sum_j w[K-1-j] x[t-j]: dx[t] = sum_j w[K-1-j] g[t+j]; dw[K-1-j] = sum_t g[t] x[t-j]
        for (int64_t t = 0; t < s.L; ++t)
            for (int64_t j = 0; j < s.K && t + j < s.L; ++j) dx[size_t(t)] += double(w[s.K - 1 - j]) * double(g[t + j]);
        for (int64_t j = 0; j < s.K; ++j) {
            double acc = 0;
            for (int64_t t = j; t < s.L; ++t) acc += double(g[t]) * double(x[t - j]);
            ref.dw[size_t(s.K - 1 - j)] += acc;
        }
        ref.dx.push_back(dx);
    }

    std::printf("L=%lld K=%lld B=%lld D=%lld n=%d\n", (long long)s.L, (long long)s.K, (long long)s.B, (long long)s.D, N);
    double base_fwd = 0, base_bwd = 0;
    // v0: what cuda/fft_conv.cu ships (16 points per thread, registers for 512 threads per SM; split at 16384)
    if constexpr (N == 16384) {
        // the split kernels read rows of N/2 points and an even row count (cuda/fft_conv_kernels.cuh);
        // the lab's rows are (D, B, L), which is that layout only when L = N/2 and B is even
        if (s.L != N / 2 || s.B % 2 != 0) {
            std::fprintf(stderr, "error: at n = %d the lab needs L = %d and an even B (got L = %lld, B = %lld)\n", N,
                         N / 2, (long long)s.L, (long long)s.B);
            std::exit(2);
        }
        run_version<N, 16, 512, true>(0, s, b, ref, reps, base_fwd, base_bwd);
        run_version<N, 16, 1024, false>(1, s, b, ref, reps, base_fwd, base_bwd); // 1024 threads, 64 registers
    } else {
        run_version<N, (N < 16 ? N : 16), 512, false>(0, s, b, ref, reps, base_fwd, base_bwd);
        if constexpr (N >= 256) {
            run_version<N, 16, 768, false>(1, s, b, ref, reps, base_fwd, base_bwd);
            run_version<N, 16, 1024, false>(2, s, b, ref, reps, base_fwd, base_bwd);
        }
    }
    for (void* p : {(void*)b.xt, (void*)b.gt, (void*)b.yt, (void*)b.dxt, (void*)b.w, (void*)b.dw, (void*)b.dbias,
                    (void*)b.Hh, (void*)b.tw, (void*)b.part})
        LAB_CHECK(cudaFree(p));
}

} // namespace

int main(int argc, char** argv) {
    Shape s{8, 0, 1536, 0, 0, 0.0};
    std::string Ls = "512,2048,4096,8192";
    int reps = 20;
    mg::lab::parse_args(argc, argv, "--L list, --B, --D, --reps", [&](const std::string& a, const std::string& v) {
        if (a == "--L") Ls = v;
        else if (a == "--B") s.B = mg::lab::parse_list(a, v).at(0);
        else if (a == "--D") s.D = mg::lab::parse_list(a, v).at(0);
        else if (a == "--reps") reps = int(mg::lab::parse_list(a, v).at(0));
        else return false;
        return true;
    });
    const std::vector<int64_t> lengths = mg::lab::parse_list("--L", Ls);
    cudaDeviceProp prop{};
    LAB_CHECK(cudaGetDeviceProperties(&prop, 0));
    s.copy_gbs = mg::lab::copy_bandwidth_gbs();
    std::printf("fft lab on %s: copy bandwidth %.0f GB/s (read + write, 1 GiB device-to-device)\n", prop.name, s.copy_gbs);
    for (int64_t L : lengths) {
        s.L = L;
        s.K = s.L;
        int64_t n = 1;
        while (n < s.L + s.K - 1) n *= 2;
        s.n = n;
        switch (n) {
        case 1024: run_size<1024>(s, reps); break;
        case 4096: run_size<4096>(s, reps); break;
        case 8192: run_size<8192>(s, reps); break;
        case 16384: run_size<16384>(s, reps); break;
        default: std::fprintf(stderr, "error: the lab has no versions for n = %lld (L = %lld)\n", (long long)n,
                              (long long)s.L);
            return 2;
        }
    }
    return 0;
}
