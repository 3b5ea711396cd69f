// tests/test_conv1d.cpp: causal depthwise conv1d. The orientation of the weight by hand; the CPU
// and CUDA kernels (called directly, outputs poisoned with NaN) against the double reference at
// awkward sizes (L = 1, L prime, L not a multiple of the 64-step tile, odd channel counts, K > L,
// K beyond the fused backward and beyond one 32-tap chunk); gradcheck; CUDA-vs-CPU parity;
// deterministic CUDA backward; the recurrent step against the parallel forward; bad inputs.
#include <cmath>

#include "cuda/conv1d.h"
#include "ops/conv1d.h"
#include "tests/conv_case.h"
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;
using mg::test::require_close;

namespace {

using mg::test::ConvCase;
using mg::test::ConvSize;

// Awkward sizes for every CUDA path. The streaming kernels (K <= 4, D a multiple of 4 floats or 2
// doubles) cover 128 steps (in 16-step segments) x 128 (f32) or 64 (f64) channels per block: L = 1,
// L prime, a last block of steps or channels partly outside, K = 1..4, D whose vectors end mid-block.
// The tiled kernels (the rest) use 64 steps x 32 channels, the fused backward takes K <= 8, the
// window kernel loads 32 taps per pass.
const ConvSize kSizes[] = {
    {1, 1, 1, 1},   {2, 1, 3, 4},   {2, 37, 5, 4},   {1, 64, 32, 4},  {3, 67, 33, 4},  {1, 5, 3, 9},
    {2, 41, 7, 8},  {2, 70, 9, 9},  {1, 129, 3, 40}, {2, 13, 35, 64}, {1, 3, 2, 5},    {2, 1, 4, 4},
    {3, 131, 36, 4}, {1, 300, 8, 3}, {2, 17, 132, 2}, {1, 40, 2, 1},  {2, 257, 64, 4}, {1, 20, 6, 4},
};

// Runs the forward and backward kernels of `dev` directly on poisoned outputs and compares them with
// causal_conv1d_ref / causal_conv1d_backward_ref.
template <typename T> void check_kernels(const ConvSize& s, bool has_bias, bool silu, Device dev) {
    const auto [B, L, D, K] = s;
    ConvCase<T> c(s, has_bias, silu, dev, static_cast<uint64_t>(B * 1000003 + L * 1009 + D * 31 + K));
    const Tensor &x = c.x, &w = c.w, &dy = c.dy, &y = c.y, &dx = c.dx, &dw = c.dw;
    if (dev.is_cpu()) {
        causal_conv1d_forward_cpu<T>(y.data<T>(), x.data<T>(), w.data<T>(), c.pbias(), B, L, D, K, silu);
        causal_conv1d_backward_cpu<T>(dx.data<T>(), dw.data<T>(), c.pdbias(), dy.data<T>(), x.data<T>(), w.data<T>(),
                                      c.pbias(), B, L, D, K, silu);
    } else {
#ifdef MG_CUDA
        Tensor work = Tensor::full({cuda::causal_conv1d_backward_work(B, L, D, K, silu)}, NAN, x.options());
        cuda::causal_conv1d_forward<T>(y.data<T>(), x.data<T>(), w.data<T>(), c.pbias(), B, L, D, K, silu);
        cuda::causal_conv1d_backward<T>(dx.data<T>(), dw.data<T>(), c.pdbias(), work.data<T>(), dy.data<T>(),
                                        x.data<T>(), w.data<T>(), c.pbias(), B, L, D, K, silu);
#endif
    }
    std::string what = fmt::format("conv1d(B={}, L={}, D={}, K={}, bias={}, silu={}, {}, {})", B, L, D, K, has_bias,
                                   silu, dev.str(), dtype_name(dtype_of<T>));
    // y and dx are sums of K products of N(0,1) values, dw and dbias of B*L of them; f32 rounding
    // grows at most linearly with the number of terms (the CPU adds dw in double, CUDA in f32).
    bool f32 = std::is_same_v<T, float>;
    double tol_k = (f32 ? 1e-6 : 1e-13) * double(K + 8), tol_bl = (f32 ? 1e-6 : 1e-13) * double(B * L + 8);
    c.check(what, tol_k, tol_bl);
}

} // namespace

TEST_CASE("conv1d: weight orientation is PyTorch's (w[d,K-1] multiplies the current token)", "[conv1d]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Options o{DType::f64, dev};
            // x = 1, 2, 3 and w = (10, 1): y[t] = 10 x[t-1] + 1 x[t] = 1, 12, 23 (+ bias 0.5)
            Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3}, {1, 3, 1}, o);
            Tensor w = Tensor::from_vector(std::vector<double>{10, 1}, {1, 2}, o);
            Tensor b = Tensor::from_vector(std::vector<double>{0.5}, {1}, o);
            CHECK(causal_conv1d(x, w, b).to_vector<double>() == std::vector<double>{1.5, 12.5, 23.5});
            CHECK(causal_conv1d(x, w).to_vector<double>() == std::vector<double>{1, 12, 23});
            double s = causal_conv1d(x, w, Tensor(), true).to_vector<double>()[1];
            CHECK(s == Approx(12.0 / (1.0 + std::exp(-12.0))).epsilon(1e-15));
        }
    }
}

TEST_CASE("conv1d: kernels against the double reference at awkward sizes", "[conv1d]") {
    for (Device dev : devices())
        for (const ConvSize& s : kSizes)
            for (bool has_bias : {false, true})
                for (bool silu : {false, true}) {
                    check_kernels<float>(s, has_bias, silu, dev);
                    check_kernels<double>(s, has_bias, silu, dev);
                }
}

TEST_CASE("conv1d: cuda matches cpu in f32 across many tiles", "[conv1d][parity][cuda]") {
    MG_REQUIRE_CUDA();
    // Many tiles plus ragged edges on every path: streaming (K=4, D=72), tiled fused (K=4, D=70)
    // and tiled unfused (K=40).
    for (auto [K, D] : {std::pair<int64_t, int64_t>{4, 72}, {4, 70}, {40, 70}}) {
        SECTION(fmt::format("B=2, L=150, D={}, K={}, bias, silu", D, K)) {
            Generator gen(static_cast<uint64_t>(K + D));
            Options o{DType::f32};
            Tensor x = Tensor::randn({2, 150, D}, o, gen), w = Tensor::randn({D, K}, o, gen) * (1.0 / std::sqrt(double(K)));
            Tensor b = Tensor::randn({D}, o, gen), dy = Tensor::randn({2, 150, D}, o, gen);
            Device gpu = Device::cuda(0);
            std::vector<Tensor> cpu_in = {x, w, b}, gpu_in = {x.to(gpu), w.to(gpu), b.to(gpu)};
            for (auto* v : {&cpu_in, &gpu_in})
                for (Tensor& t : *v) t.set_requires_grad(true);
            Tensor yc = causal_conv1d(cpu_in[0], cpu_in[1], cpu_in[2], true);
            Tensor yg = causal_conv1d(gpu_in[0], gpu_in[1], gpu_in[2], true);
            yc.backward(dy);
            yg.backward(dy.to(gpu));
            // f32 sums in different orders; dw/dbias add 300 terms of size ~1.
            require_close(yg, yc, 1e-5, 1e-5, "y");
            require_close(gpu_in[0].grad(), cpu_in[0].grad(), 1e-5, 1e-5, "dx");
            require_close(gpu_in[1].grad(), cpu_in[1].grad(), 1e-5, 1e-4, "dweight");
            require_close(gpu_in[2].grad(), cpu_in[2].grad(), 1e-5, 1e-4, "dbias");
        }
    }
}

TEST_CASE("conv1d: cuda backward is deterministic (bit-identical runs)", "[conv1d][cuda]") {
    MG_REQUIRE_CUDA();
    for (int64_t K : {4, 8, 40}) { // streaming, tiled fused, tiled unfused
        SECTION(fmt::format("B=3, L=300, D=100, K={}", K)) {
            Generator gen(99);
            Options o{DType::f32, Device::cuda(0)};
            Tensor x = Tensor::randn({3, 300, 100}, o, gen), w = Tensor::randn({100, K}, o, gen);
            Tensor b = Tensor::randn({100}, o, gen), dy = Tensor::randn({3, 300, 100}, o, gen);
            auto grads = [&]() {
                Tensor xr = x.detach().set_requires_grad(true), wr = w.detach().set_requires_grad(true);
                Tensor br = b.detach().set_requires_grad(true);
                causal_conv1d(xr, wr, br, true).backward(dy);
                return std::vector<std::vector<float>>{xr.grad().to_vector<float>(), wr.grad().to_vector<float>(),
                                                       br.grad().to_vector<float>()};
            };
            auto g1 = grads(), g2 = grads();
            CHECK(g1[0] == g2[0]);
            CHECK(g1[1] == g2[1]);
            CHECK(g1[2] == g2[2]);
        }
    }
}

TEST_CASE("conv1d: a tensor at an unaligned address takes the tiled path and agrees", "[conv1d][cuda]") {
    MG_REQUIRE_CUDA();
    // x one float past a 16-byte boundary (a view at storage offset 1) cannot take the streaming
    // kernels' 16-byte loads; the op must fall back to the tiled kernels, and agree with the aligned run.
    const int64_t B = 2, L = 70, D = 64, K = 4;
    Generator gen(7);
    Options o{DType::f32, Device::cuda(0)};
    Tensor buf = Tensor::randn({B * L * D + 1}, o, gen);
    Tensor x_off = buf.narrow(0, 1, B * L * D).reshape({B, L, D}), x_al = x_off.clone();
    Tensor w = Tensor::randn({D, K}, o, gen), b = Tensor::randn({D}, o, gen), dy = Tensor::randn({B, L, D}, o, gen);
    std::vector<Tensor> res[2];
    int i = 0;
    for (const Tensor& x : {x_off, x_al}) {
        Tensor xr = x.detach().set_requires_grad(true), wr = w.detach().set_requires_grad(true);
        Tensor br = b.detach().set_requires_grad(true);
        Tensor y = causal_conv1d(xr, wr, br, true);
        y.backward(dy);
        res[i++] = {y, xr.grad(), wr.grad(), br.grad()};
    }
    REQUIRE(reinterpret_cast<uintptr_t>(x_off.raw_data()) % 16 != 0);
    require_close(res[0][0], res[1][0], 0, 0, "y (the same sums in the same order)");
    require_close(res[0][1], res[1][1], 1e-6, 1e-6, "dx");
    require_close(res[0][2], res[1][2], 1e-5, 1e-5, "dweight");
    require_close(res[0][3], res[1][3], 1e-5, 1e-5, "dbias");
}

TEST_CASE("conv1d: stepping through a sequence equals the parallel forward", "[conv1d]") {
    for (Device dev : devices())
        for (int64_t K : {1, 2, 4, 9})
            for (bool silu : {false, true}) {
                SECTION(fmt::format("B=2, L=13, D=5, K={}, silu={}, {}", K, silu, dev.str())) {
                    for (DType dt : {DType::f32, DType::f64}) {
                        Generator gen(static_cast<uint64_t>(K * 7 + silu));
                        Options o{dt, dev};
                        int64_t B = 2, L = 13, D = 5;
                        Tensor x = Tensor::randn({B, L, D}, o, gen), w = Tensor::randn({D, K}, o, gen);
                        Tensor b = Tensor::randn({D}, o, gen);
                        Tensor y = causal_conv1d(x, w, b, silu);
                        Tensor state = Tensor::zeros({B, D, K - 1}, o);
                        for (int64_t t = 0; t < L; ++t) {
                            Tensor yt = causal_conv1d_update(state, x.narrow(1, t, 1).reshape({B, D}), w, b, silu);
                            // Same taps, same order as the parallel kernel: rounding differences only.
                            double tol = dt == DType::f32 ? 1e-5 : 1e-13;
                            require_close(yt, y.narrow(1, t, 1).reshape({B, D}), tol, tol,
                                          fmt::format("step t={} {}", t, dtype_name(dt)));
                        }
                        // The state now holds the last K-1 inputs, oldest first.
                        if (K > 1)
                            require_close(state, x.narrow(1, L - (K - 1), K - 1).permute({0, 2, 1}), 0, 0, "final state");
                    }
                }
            }
}

// The checks shared with fft_causal_conv are tested for both ops in tests/test_fft_conv.cpp.
TEST_CASE("conv1d: bad inputs to the step name the op and the shapes", "[conv1d][errors]") {
    Tensor xt = Tensor::zeros({2, 16}), w = Tensor::zeros({16, 4});
    REQUIRE_ERROR_WITH(causal_conv1d_update(Tensor::zeros({2, 16, 4}), xt, w), "causal_conv1d_update",
                       "conv_state is (2,16,4) f32 cpu", "(B, D, K-1) = (2,16,3)");
    REQUIRE_ERROR_WITH(causal_conv1d_update(Tensor::zeros({2, 3, 16}).permute({0, 2, 1}), xt, w),
                       "causal_conv1d_update", "must be contiguous");
    REQUIRE_ERROR_WITH(causal_conv1d_update(Tensor::zeros({2, 8, 3}), Tensor::zeros({2, 8}), w),
                       "causal_conv1d_update", "weight is (16,4) f32 cpu", "x_t (2,8) f32 cpu");
}
