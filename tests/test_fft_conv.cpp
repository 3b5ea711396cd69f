// tests/test_fft_conv.cpp: the FFT long convolution. Our radix-2 FFT against the O(n^2) DFT; the
// CPU and CUDA kernels (called directly, outputs poisoned) against the direct double reference
// causal_conv1d_ref at awkward sizes (L = 1, K = L, K > L, L not a power of two, odd B for the
// paired-row trick, odd D); on CUDA both paths, the fused block FFT (f32, every n from 2 to
// 16384, the last as two half transforms) and cuFFT; gradcheck; parity; deterministic CUDA backward on both paths; causal_conv's
// direct and FFT paths agree in values and gradients; bad inputs.
#include <cmath>
#include <complex>

#include "cuda/fft_conv.h"
#include "ops/conv1d.h"
#include "ops/fft_conv.h"
#include "ops/vec_math.h"
#include "tests/conv_case.h"
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;
using mg::test::require_close;

namespace {

using mg::test::ConvCase;
using mg::test::ConvSize;

const ConvSize kSizes[] = {
    {1, 1, 1, 1}, {2, 8, 3, 8}, {3, 13, 5, 5}, {1, 37, 33, 37}, {2, 100, 7, 128}, {1, 300, 3, 128}, {2, 64, 2, 1},
    {1, 5, 4, 3},
};

// Sizes whose n = fft_conv_size(L, K) covers the fused kernels' larger instantiations: n = 2048,
// 4096 (K = L), 8192 (a radix-2 first pass) and 16384 (two transforms of 8192: K > L, and odd B
// with L, K near the 8192 limit).
const ConvSize kLongSizes[] = {{2, 700, 3, 400}, {3, 2048, 2, 2048}, {2, 2500, 3, 2500}, {1, 5000, 2, 6000},
                               {3, 8000, 2, 7000}};

using cuda::FftConvPath;

// The CUDA paths to test for type T: both for f32 (where the fused kernels cover n), cuFFT only for f64.
template <typename T> std::vector<FftConvPath> cuda_paths(int64_t L, int64_t K) {
#ifdef MG_CUDA
    if (cuda::fft_conv_fused_supported<T>(L, K)) return {FftConvPath::fused, FftConvPath::cufft};
#endif
    (void)L, (void)K;
    return {FftConvPath::cufft};
}

const char* path_name(FftConvPath p) { return p == FftConvPath::fused ? "fused" : p == FftConvPath::cufft ? "cufft" : "auto"; }

template <typename T>
void check_kernels(const ConvSize& s, bool has_bias, bool silu, Device dev, FftConvPath path = FftConvPath::automatic) {
    const auto [B, L, D, K] = s;
    ConvCase<T> c(s, has_bias, silu, dev, static_cast<uint64_t>(B * 7919 + L * 104729 + D * 13 + K));
    const Tensor &x = c.x, &w = c.w, &dy = c.dy, &y = c.y, &dx = c.dx, &dw = c.dw;
    if (dev.is_cpu()) {
        fft_conv_forward_cpu<T>(y.data<T>(), x.data<T>(), w.data<T>(), c.pbias(), B, L, D, K, silu);
        fft_conv_backward_cpu<T>(dx.data<T>(), dw.data<T>(), c.pdbias(), dy.data<T>(), x.data<T>(), w.data<T>(),
                                 c.pbias(), B, L, D, K, silu);
    } else {
#ifdef MG_CUDA
        Tensor wf = Tensor::full({cuda::fft_conv_work<T>(B, L, D, K, false, path)}, NAN, x.options());
        Tensor wb = Tensor::full({cuda::fft_conv_work<T>(B, L, D, K, true, path)}, NAN, x.options());
        cuda::fft_conv_forward<T>(y.data<T>(), wf.data<T>(), x.data<T>(), w.data<T>(), c.pbias(), B, L, D, K, silu,
                                  path);
        cuda::fft_conv_backward<T>(dx.data<T>(), dw.data<T>(), c.pdbias(), wb.data<T>(), dy.data<T>(), x.data<T>(),
                                   w.data<T>(), c.pbias(), B, L, D, K, silu, path);
#endif
    }
    std::string what = fmt::format("fft_conv(B={}, L={}, D={}, K={}, bias={}, silu={}, {}, {}, path {})", B, L, D, K,
                                   has_bias, silu, dev.str(), dtype_name(dtype_of<T>), path_name(path));
    // The FFT spreads rounding over the whole row: errors scale with eps log2(n) times the size of
    // the sums (about sqrt(K) for y and dx, sqrt(B L) for dw and dbias, inputs N(0,1)). Every
    // path transforms in the tensor's precision: f32 in float (CPU, cuFFT, fused), f64 in double.
    bool f32 = std::is_same_v<T, float>;
    double eps = f32 ? 1e-6 : 1e-13, logn = std::log2(double(fft_conv_size(L, K)));
    double tol_k = eps * 4 * logn * std::sqrt(double(K) + 1), tol_bl = eps * 4 * logn * std::sqrt(double(B * L * K) + 1);
    c.check(what, tol_k, tol_bl);
}

} // namespace

// n random complex points in T's precision: (re, im) and the same values as complex doubles.
template <typename T> struct Signal {
    std::vector<T> re, im;
    std::vector<std::complex<double>> z;
    Signal(int64_t n, uint64_t seed) {
        Generator gen(seed);
        const Options o{std::is_same_v<T, float> ? DType::f32 : DType::f64};
        re = Tensor::randn({n}, o, gen).to_vector<T>();
        im = Tensor::randn({n}, o, gen).to_vector<T>();
        for (size_t i = 0; i < re.size(); ++i) z.emplace_back(re[i], im[i]);
    }
};

TEST_CASE("fft_conv: the CPU FFT against the O(n^2) DFT", "[fft_conv]") {
    // both builds of the passes: the baseline one, and AVX2 + FMA where the CPU has them
    std::vector<bool> isas{false};
    if (vm::use_avx2()) isas.push_back(true);
    for (bool avx2 : isas) {
      for (int64_t n : {1, 2, 4, 8, 16, 32, 64, 512, 2048}) { // odd and even log2 n: a radix-2 pass or none
        vm::set_avx2(avx2);
        INFO("avx2 " << avx2 << ", n = " << n);
        const std::vector<std::complex<double>> a = Signal<double>(n, 5 + uint64_t(n)).z;
        std::vector<std::complex<double>> ref(static_cast<size_t>(n));
        for (bool inverse : {false, true}) {
            std::vector<std::complex<double>> f = a;
            fft_cpu(f.data(), fft_plan(n), inverse);
            dft_ref(ref.data(), a.data(), n, inverse);
            for (size_t i = 0; i < a.size(); ++i) {
                INFO("inverse " << inverse << " bin " << i);
                // n log n roundings of values of size sqrt(n)
                CHECK(std::abs(f[i] - ref[i]) <= 1e-13 * double(n));
            }
        }
        // inverse(forward(a)) = n a
        std::vector<std::complex<double>> f = a;
        fft_cpu(f.data(), fft_plan(n), false);
        fft_cpu(f.data(), fft_plan(n), true);
        for (size_t i = 0; i < a.size(); ++i) CHECK(std::abs(f[i] / double(n) - a[i]) <= 1e-14 * std::log2(double(n) + 1));
        vm::set_avx2(true);
      }
    }
    // the float build (f32 tensors' transforms): the error of an FFT grows like eps log2 n in the
    // 2-norm relative to the result (Higham, "Accuracy and Stability", section 24.1); bound it by eps log2 n
    for (bool avx2 : isas) {
        vm::set_avx2(avx2);
        for (int64_t n : {2, 4, 8, 16, 32, 64, 512, 2048, 8192}) {
            INFO("float, avx2 " << avx2 << ", n = " << n);
            const Signal<float> a(n, 11 + uint64_t(n));
            std::vector<std::complex<double>> ref(static_cast<size_t>(n));
            for (bool inverse : {false, true}) {
                std::vector<float> fr = a.re, fi = a.im, tmp(static_cast<size_t>(2 * n));
                fft_split<float>(fr.data(), fi.data(), fft_plan(n), inverse, tmp.data());
                dft_ref(ref.data(), a.z.data(), n, inverse);
                double err = 0, mag = 0;
                for (size_t i = 0; i < ref.size(); ++i) {
                    err += std::norm(std::complex<double>(fr[i], fi[i]) - ref[i]);
                    mag += std::norm(ref[i]);
                }
                INFO("inverse " << inverse << ": relative 2-norm error " << std::sqrt(err / mag));
                CHECK(std::sqrt(err / mag) <= 6e-8 * std::log2(double(n))); // eps = 2^-24
            }
        }
        vm::set_avx2(true);
    }
    CHECK(fft_conv_size(1, 1) == 2);
    CHECK(fft_conv_size(8, 8) == 16);
    CHECK(fft_conv_size(1000, 512) == 2048);
    CHECK(fft_conv_size(300, 1) == 512);
}

TEST_CASE("fft_conv: kernels against the direct double reference at awkward sizes", "[fft_conv]") {
    for (Device dev : devices())
        for (const ConvSize& s : kSizes)
            for (bool has_bias : {false, true})
                for (bool silu : {false, true}) {
                    if (dev.is_cpu()) {
                        check_kernels<float>(s, has_bias, silu, dev);
                        check_kernels<double>(s, has_bias, silu, dev);
                        continue;
                    }
                    for (FftConvPath p : cuda_paths<float>(s.L, s.K)) check_kernels<float>(s, has_bias, silu, dev, p);
                    for (FftConvPath p : cuda_paths<double>(s.L, s.K)) check_kernels<double>(s, has_bias, silu, dev, p);
                }
}

TEST_CASE("fft_conv: the CPU kernels at long sizes, f32 and f64, against the double reference", "[fft_conv]") {
    // n = 2048 (odd log2 n: a radix-2 pass last) and 16384, odd B, channel tiles of 1 to 3
    for (const ConvSize& s : {ConvSize{3, 700, 3, 400}, ConvSize{1, 5000, 2, 6000}})
        for (bool silu : {false, true}) {
            check_kernels<float>(s, true, silu, Device::cpu());
            check_kernels<double>(s, true, silu, Device::cpu());
        }
}

TEST_CASE("fft_conv: cuda fused and cuFFT paths at long sizes, against the double reference", "[fft_conv][cuda]") {
    MG_REQUIRE_CUDA();
#ifdef MG_CUDA
    for (const ConvSize& s : kLongSizes)
        for (bool silu : {false, true}) {
            REQUIRE(cuda::fft_conv_fused_supported<float>(s.L, s.K));
            for (FftConvPath p : cuda_paths<float>(s.L, s.K)) check_kernels<float>(s, true, silu, Device::cuda(0), p);
        }
    // sizes beyond the fused kernels: automatic goes to cuFFT, a forced fused path or f64 throws
    CHECK(cuda::fft_conv_fused_supported<float>(8192, 8192));    // n = 16384, both halves fit
    CHECK_FALSE(cuda::fft_conv_fused_supported<float>(8193, 8)); // n = 16384, but x longer than 8192
    CHECK_FALSE(cuda::fft_conv_fused_supported<float>(100, 8193));
    CHECK_FALSE(cuda::fft_conv_fused_supported<float>(8193, 8193));
    CHECK_FALSE(cuda::fft_conv_fused_supported<double>(100, 100));
    REQUIRE_THROWS(cuda::fft_conv_work<double>(1, 100, 1, 100, false, FftConvPath::fused));
    REQUIRE_THROWS(cuda::fft_conv_work<float>(1, 9000, 1, 9000, false, FftConvPath::fused));
    REQUIRE_THROWS_WITH(cuda::fft_conv_work<float>(1, 8193, 1, 8, true, FftConvPath::fused),
                        Catch::Contains("L = 8193"));
#endif
}

TEST_CASE("fft_conv: cuda backward is deterministic (bit-identical runs)", "[fft_conv][cuda]") {
    MG_REQUIRE_CUDA();
    Generator gen(17);
    Options o{DType::f32, Device::cuda(0)};
    Tensor x = Tensor::randn({3, 200, 40}, o, gen), w = Tensor::randn({40, 128}, o, gen);
    Tensor b = Tensor::randn({40}, o, gen), dy = Tensor::randn({3, 200, 40}, o, gen);
    auto grads = [&]() {
        Tensor xr = x.detach().set_requires_grad(true), wr = w.detach().set_requires_grad(true);
        Tensor br = b.detach().set_requires_grad(true);
        fft_causal_conv(xr, wr, br, true).backward(dy);
        return std::vector<std::vector<float>>{xr.grad().to_vector<float>(), wr.grad().to_vector<float>(),
                                               br.grad().to_vector<float>()};
    };
    auto g1 = grads(), g2 = grads();
    CHECK(g1[0] == g2[0]);
    CHECK(g1[1] == g2[1]);
    CHECK(g1[2] == g2[2]);
#ifdef MG_CUDA
    // the launchers on each path, at a size where the fused backward loops over 5 rows per channel
    const int64_t B = 5, L = 1500, D = 3, K = 1500;
    Tensor x2 = Tensor::randn({B, L, D}, o, gen), w2 = Tensor::randn({D, K}, o, gen);
    Tensor b2 = Tensor::randn({D}, o, gen), dy2 = Tensor::randn({B, L, D}, o, gen);
    for (FftConvPath p : {FftConvPath::fused, FftConvPath::cufft}) {
        auto run = [&]() {
            Tensor dx = Tensor::empty({B, L, D}, o), dw = Tensor::empty({D, K}, o), db = Tensor::empty({D}, o);
            Tensor work = Tensor::empty({cuda::fft_conv_work<float>(B, L, D, K, true, p)}, o);
            cuda::fft_conv_backward<float>(dx.data<float>(), dw.data<float>(), db.data<float>(), work.data<float>(),
                                           dy2.data<float>(), x2.data<float>(), w2.data<float>(), b2.data<float>(), B,
                                           L, D, K, true, p);
            return std::vector<std::vector<float>>{dx.to_vector<float>(), dw.to_vector<float>(), db.to_vector<float>()};
        };
        auto r1 = run(), r2 = run();
        INFO("path " << path_name(p));
        CHECK(r1 == r2);
    }
#endif
}

TEST_CASE("fft_conv: causal_conv's direct and FFT paths agree in values and gradients", "[fft_conv]") {
    CHECK_FALSE(causal_conv_uses_fft(2048, 4, CausalConvMode::automatic));
    CHECK_FALSE(causal_conv_uses_fft(37, 128, CausalConvMode::automatic));
    CHECK(causal_conv_uses_fft(1000, 512, CausalConvMode::automatic));
    CHECK(causal_conv_uses_fft(37, 4, CausalConvMode::fft));
    CHECK_FALSE(causal_conv_uses_fft(1000, 512, CausalConvMode::direct));
    for (Device dev : devices())
        for (int64_t K : {4, 128, 512})
            for (int64_t L : {1, 37, 300, 1000}) {
                SECTION(fmt::format("B=2, L={}, D=3, K={}, bias, silu, {} f32", L, K, dev.str())) {
                    Generator gen(static_cast<uint64_t>(K * 10000 + L));
                    Options o{DType::f32, dev};
                    // kernel scaled by 1/sqrt(K) so pre-activations stay O(1) at every K
                    Tensor x = Tensor::randn({2, L, 3}, o, gen), w = Tensor::randn({3, K}, o, gen) * (1.0 / std::sqrt(double(K)));
                    Tensor b = Tensor::randn({3}, o, gen), dy = Tensor::randn({2, L, 3}, o, gen);
                    std::vector<Tensor> grads[2];
                    Tensor ys[2];
                    for (int path = 0; path < 2; ++path) {
                        Tensor xr = x.detach().set_requires_grad(true), wr = w.detach().set_requires_grad(true);
                        Tensor br = b.detach().set_requires_grad(true);
                        ys[path] = causal_conv(xr, wr, br, path == 0 ? CausalConvMode::direct : CausalConvMode::fft, true);
                        ys[path].backward(dy);
                        grads[path] = {xr.grad(), wr.grad(), br.grad()};
                    }
                    // f32 on both paths; dw and dbias are sums over B*L = up to 2000 terms.
                    require_close(ys[1], ys[0], 1e-5, 1e-5, "y");
                    require_close(grads[1][0], grads[0][0], 1e-5, 1e-5, "dx");
                    require_close(grads[1][1], grads[0][1], 1e-4, 1e-4, "dweight");
                    require_close(grads[1][2], grads[0][2], 1e-4, 1e-4, "dbias");
                }
            }
}

// The causal convs share their argument checks and their autograd op (ops/causal_conv_op.h): both
// are tested here, each error naming its op.
using ConvFn = Tensor (*)(const Tensor&, const Tensor&, const Tensor&, bool);
const std::pair<const char*, ConvFn> kConvOps[] = {{"causal_conv1d", causal_conv1d}, {"fft_causal_conv", fft_causal_conv}};

TEST_CASE("causal convs (direct, FFT): bad inputs name the op and the shapes", "[conv1d][fft_conv][errors]") {
    Tensor x = Tensor::zeros({2, 37, 16}), none;
    for (const auto& [op, conv] : kConvOps) {
        INFO(op);
        REQUIRE_ERROR_WITH(conv(x, Tensor::zeros({8, 3}), none, false), op, "weight is (8,3) f32 cpu",
                           "(D, K) = (16, K)", "x (2,37,16) f32 cpu");
        REQUIRE_ERROR_WITH(conv(x, Tensor::zeros({16, 0}), none, false), op, "(16,0) f32 cpu", "K >= 1");
        REQUIRE_ERROR_WITH(conv(x, Tensor::zeros({16, 4, 1}), none, false), op, "(16,4,1) f32 cpu", "(D, K)");
        REQUIRE_ERROR_WITH(conv(Tensor::zeros({37, 16}), Tensor::zeros({16, 4}), none, false), op,
                           "x is (37,16) f32 cpu", "3-D");
        REQUIRE_ERROR_WITH(conv(x, Tensor::zeros({16, 4}, {DType::f64}), none, false), op, "(2,37,16) f32 cpu",
                           "(16,4) f64 cpu", "same dtype");
        REQUIRE_ERROR_WITH(conv(x, Tensor::zeros({16, 4}), Tensor::zeros({15}), false), op, "bias is (15) f32 cpu",
                           "(D) = (16)");
        REQUIRE_ERROR_WITH(conv(x, Tensor::zeros({16, 4}), Tensor::zeros({16, 1}), false), op,
                           "bias is (16,1) f32 cpu", "(D) = (16)");
        REQUIRE_ERROR_WITH(conv(Tensor::zeros({2, 3, 4}, {DType::i32}), Tensor::zeros({4, 4}), none, false), op, "i32",
                           "f32 or f64");
        if (cuda::available()) {
            Tensor wg = Tensor::zeros({16, 4}, {DType::f32, Device::cuda(0)});
            REQUIRE_ERROR_WITH(conv(x, wg, none, false), op, "(2,37,16) f32 cpu", "(16,4) f32 cuda:0", "same device");
        }
    }
    REQUIRE_ERROR_WITH(causal_conv(x, Tensor::zeros({15, 128})), "causal_conv", "weight is (15,128) f32 cpu",
                       "x (2,37,16) f32 cpu");
    if (cuda::available())
        REQUIRE_ERROR_WITH(causal_conv(x, Tensor::zeros({16, 4}, {DType::f32, Device::cuda(0)})), "causal_conv",
                           "(2,37,16) f32 cpu", "(16,4) f32 cuda:0", "same device");
}

TEST_CASE("causal convs (direct, FFT): an empty batch or sequence gives empty outputs and zero weight gradients",
          "[conv1d][fft_conv]") {
    for (const auto& [op, conv] : kConvOps)
        for (Device dev : devices())
            for (Shape s : {Shape{2, 0, 3}, Shape{0, 5, 3}}) {
                SECTION(fmt::format("{}: x ({}) {}", op, fmt::join(s, ","), dev.str())) {
                    Options o{DType::f64, dev};
                    Tensor x = Tensor::zeros(s, o).set_requires_grad(true);
                    Tensor w = Tensor::ones({3, 4}, o).set_requires_grad(true);
                    Tensor b = Tensor::ones({3}, o).set_requires_grad(true);
                    Tensor y = conv(x, w, b, true);
                    REQUIRE(y.shape() == s);
                    y.backward(Tensor::zeros(s, o));
                    CHECK(x.grad().shape() == s);
                    CHECK(w.grad().to_vector<double>() == std::vector<double>(12, 0.0));
                    CHECK(b.grad().to_vector<double>() == std::vector<double>(3, 0.0));
                }
            }
}
