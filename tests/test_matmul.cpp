// tests/test_matmul.cpp: the GEMM kernels (blocked, OpenBLAS when built, cuBLAS) against the
// naive reference at awkward sizes with transposes, then the op: gradcheck, parity, bad inputs.
#include <cmath>
#include <cstring>

#include "cuda/matmul.h"
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

namespace {

// Runs one GEMM configuration through every available kernel and compares with gemm_ref.
template <typename T> void check_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t batch) {
    GemmArgs g;
    g.ta = ta; g.tb = tb; g.M = M; g.N = N; g.K = K; g.batch = batch;
    g.lda = ta ? M : K;
    g.ldb = tb ? K : N;
    g.ldc = N;
    g.stride_a = M * K; g.stride_b = K * N; g.stride_c = M * N;
    Generator gen(uint64_t(M * 1000 + N * 10 + K));
    Options o{dtype_of<T>};
    Tensor A = Tensor::randn({batch * M * K}, o, gen), B = Tensor::randn({batch * K * N}, o, gen);
    std::vector<double> ref(size_t(batch * M * N));
    gemm_ref<T>(g, 1.0, A.data<T>(), B.data<T>(), 0.0, ref.data());
    Tensor expect = Tensor::from_vector(ref, {batch * M * N});
    // f32: each output is a K-term dot product; |error| <= K eps sum|a b| ~ K eps sqrt(K) here.
    double tol = std::is_same_v<T, float> ? 2e-6 * double(K) : 1e-13 * double(K);
    std::string what = fmt::format("gemm(ta={}, tb={}, M={}, N={}, K={}, batch={}, {})", ta, tb, M, N, K, batch,
                                   dtype_name(dtype_of<T>));
    Tensor C = Tensor::full({batch * M * N}, NAN, o); // poisoned: every element must be written
    gemm_blocked<T>(g, T(1), A.data<T>(), B.data<T>(), T(0), C.data<T>());
    mg::test::require_close(C, expect, tol, tol, what + " blocked");
    Tensor C2 = Tensor::full({batch * M * N}, NAN, o);
    gemm_cpu<T>(g, T(1), A.data<T>(), B.data<T>(), T(0), C2.data<T>());
    mg::test::require_close(C2, expect, tol, tol, what + (gemm_cpu_uses_openblas() ? " openblas" : " cpu"));
#ifdef MG_CUDA
    if (cuda::available()) {
        Device d = Device::cuda(0);
        Tensor Ad = A.to(d), Bd = B.to(d), Cd = Tensor::full({batch * M * N}, NAN, {dtype_of<T>, d});
        cuda::gemm<T>(g, T(1), Ad.data<T>(), Bd.data<T>(), T(0), Cd.data<T>(), 0);
        mg::test::require_close(Cd, expect, tol, tol, what + " cublas");
    }
#endif
}

} // namespace

TEST_CASE("matmul: gemm kernels against gemm_ref at awkward sizes and transposes", "[matmul]") {
    // sizes that straddle the blocked kernel's 64 / 256 / 512 blocks, primes, and ones
    const int64_t sizes[][3] = {{1, 1, 1}, {1, 7, 3}, {5, 1, 9}, {67, 13, 259}, {65, 517, 31}, {3, 5, 300}};
    for (auto& s : sizes)
        for (bool ta : {false, true})
            for (bool tb : {false, true}) {
                check_gemm<float>(ta, tb, s[0], s[1], s[2], 1);
                check_gemm<double>(ta, tb, s[0], s[1], s[2], 2);
            }
}

TEST_CASE("matmul: op values, batch broadcasting", "[matmul]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}, {DType::f64, dev});
            Tensor b = Tensor::from_vector(std::vector<double>{1, 0, 0, 1, 1, 1}, {3, 2}, {DType::f64, dev});
            CHECK(matmul(a, b).to_vector<double>() == std::vector<double>{4, 5, 10, 11});
            Generator g(31);
            Tensor x = Tensor::randn({2, 1, 3, 4}, {DType::f64, dev}, g), y = Tensor::randn({5, 4, 2}, {DType::f64, dev}, g);
            Tensor z = matmul(x, y);
            REQUIRE(z.shape() == Shape{2, 5, 3, 2});
            // each batch (i, j) equals the 2-D product of x[i, 0] and y[j]
            for (int64_t i = 0; i < 2; ++i)
                for (int64_t j = 0; j < 5; ++j)
                    mg::test::require_close(z.narrow(0, i, 1).narrow(1, j, 1).reshape({3, 2}),
                                            matmul(x.narrow(0, i, 1).reshape({3, 4}), y.narrow(0, j, 1).reshape({4, 2})),
                                            1e-14, 1e-14, fmt::format("batch ({},{})", i, j));
            CHECK(matmul(Tensor::zeros({3, 0}, {DType::f32, dev}), Tensor::zeros({0, 2}, {DType::f32, dev})).shape() == Shape{3, 2});
        }
    }
}

TEST_CASE("matmul: bad inputs name both shapes", "[matmul][errors]") {
    REQUIRE_ERROR_WITH(matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})), "matmul", "(2,3) f32 cpu",
                       "(4,5) f32 cpu", "last dim (3)", "second-to-last dim (4)");
    REQUIRE_ERROR_WITH(matmul(Tensor::zeros({3}), Tensor::zeros({3, 2})), "matmul", "(3) f32 cpu", "at least 2-D");
    REQUIRE_ERROR_WITH(matmul(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 2})), "matmul", "(2)", "(3)", "broadcast");
    REQUIRE_ERROR_WITH(matmul(Tensor::zeros({2, 3}), Tensor::zeros({3, 2}, {DType::f64})), "matmul", "same dtype");
}

namespace {
bool host_equal(const Tensor& x, const Tensor& y) {
    return x.to(Device::cpu()).to(DType::f64).to_vector<double>() == y.to(Device::cpu()).to(DType::f64).to_vector<double>();
}
} // namespace

TEST_CASE("matmul: precision tf32 runs f32 GEMMs on tensor cores within TF32's error; the CPU and f64 are untouched",
          "[matmul][cuda]") {
    const int64_t M = 96, N = 80, K = 515; // K not a multiple of any tile
    Generator gen(2012);
    Tensor a = Tensor::randn({M, K}, {DType::f32}, gen), b = Tensor::randn({K, N}, {DType::f32}, gen);
    // the exact product and, per element, sum_k |a_ik b_kj| (the scale of its rounding error)
    const std::vector<double> av = a.to(DType::f64).to_vector<double>(), bv = b.to(DType::f64).to_vector<double>();
    std::vector<double> exact(size_t(M * N)), scale(size_t(M * N));
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j)
            for (int64_t k = 0; k < K; ++k) {
                exact[size_t(i * N + j)] += av[size_t(i * K + k)] * bv[size_t(k * N + j)];
                scale[size_t(i * N + j)] += std::fabs(av[size_t(i * K + k)] * bv[size_t(k * N + j)]);
            }
    // the largest error relative to the element's scale
    auto worst = [&](const Tensor& c) {
        const std::vector<double> cv = c.to(Device::cpu()).to(DType::f64).to_vector<double>();
        double w = 0;
        for (size_t i = 0; i < cv.size(); ++i) w = std::max(w, std::fabs(cv[i] - exact[i]) / scale[i]);
        return w;
    };
    const Tensor cpu_fp32 = matmul(a, b);
    {
        ScopedMatmulPrecision tf32(MatmulPrecision::tf32);
        CHECK(host_equal(matmul(a, b), cpu_fp32)); // the CPU ignores it
        CHECK(host_equal(matmul(a.to(DType::f64), b.to(DType::f64)), matmul(a.to(DType::f64), b.to(DType::f64))));
    }
    if (cuda_device_count() == 0) return;
    const Device d = Device::cuda(0);
    const Tensor ad = a.to(d), bd = b.to(d);
    const double fp32_err = worst(matmul(ad, bd));
    const Tensor f64_fp32 = matmul(ad.to(DType::f64), bd.to(DType::f64));
    double tf32_err = 0;
    {
        ScopedMatmulPrecision tf32(MatmulPrecision::tf32);
        tf32_err = worst(matmul(ad, bd));
        CHECK(host_equal(matmul(ad.to(DType::f64), bd.to(DType::f64)), f64_fp32)); // f64 stays f64
        // the transposed geometries (linear's backward) too
        const Tensor at = ad.transpose(0, 1).contiguous().transpose(0, 1);
        CHECK(worst(matmul(at, bd)) <= std::ldexp(1.0, -9) + 1e-6);
    }
    INFO("worst error / sum|ab|: fp32 " << fp32_err << ", tf32 " << tf32_err);
    // fp32: K-term sums in fp32 (cuBLAS's order), far below TF32's input rounding
    CHECK(fp32_err <= 1e-6);
    // tf32: each input cut to a 10-bit mantissa (relative error < 2^-10 each when truncated, half
    // that when rounded; so < 2^-9 a product), accumulated in fp32; and visibly coarser than fp32,
    // or it did not run in TF32
    CHECK(tf32_err <= std::ldexp(1.0, -9) + 1e-6);
    CHECK(tf32_err > 20 * fp32_err);
    CHECK(matmul_precision() == MatmulPrecision::fp32);
}

// ---- bf16 inputs, fp32 accumulation (matmul_bf16, gemm_tensors with bf16 A and B) -----------

namespace {

// One GEMM of bf16 A and B into an f32 C on `dev`, against gemm_ref in double on the same bf16
// values (widened exactly): the only error left is fp32 accumulation's. Leading dimensions are
// padded by `pad` (the padding of C must not be written), beta = 0 poisons C with NaN (it must
// not be read).
void check_gemm_bf16(Device dev, bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t batch, int64_t pad,
                     double alpha, double beta) {
    GemmArgs g;
    g.ta = ta; g.tb = tb; g.M = M; g.N = N; g.K = K; g.batch = batch;
    const int64_t rows_a = ta ? K : M, rows_b = tb ? N : K;
    g.lda = (ta ? M : K) + pad;
    g.ldb = (tb ? K : N) + pad;
    g.ldc = N + pad;
    g.stride_a = rows_a * g.lda; g.stride_b = rows_b * g.ldb; g.stride_c = M * g.ldc;
    const std::string what = fmt::format("gemm_bf16(ta={}, tb={}, M={}, N={}, K={}, batch={}, pad={}, alpha={}, beta={}, {})",
                                         ta, tb, M, N, K, batch, pad, alpha, beta, dev.str());
    INFO(what);
    Generator gen(uint64_t(M * 7919 + N * 104729 + K * 13 + batch + pad));
    const Tensor A = Tensor::randn({batch * g.stride_a}, {DType::f32}, gen).to(DType::bf16);
    const Tensor B = Tensor::randn({batch * g.stride_b}, {DType::f32}, gen).to(DType::bf16);
    std::vector<float> c0 = Tensor::randn({batch * g.stride_c}, {DType::f32}, gen).to_vector<float>();
    for (int64_t b = 0; b < batch; ++b) // poison what beta = 0 must not read
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j)
                if (beta == 0) c0[size_t(b * g.stride_c + i * g.ldc + j)] = NAN;
    // the reference on the bf16 values, and per element sum_k |alpha a_ik b_kj| + |beta c|, the
    // scale of fp32 accumulation's error
    const Tensor Af = A.to(DType::f32), Bf = B.to(DType::f32);
    std::vector<double> ref(c0.begin(), c0.end()), scale(c0.size(), 0.0);
    for (double& r : ref) r = std::isnan(r) ? 0.0 : r;
    gemm_ref<float>(g, alpha, Af.data<float>(), Bf.data<float>(), beta, ref.data());
    std::vector<float> a_abs = Af.to_vector<float>(), b_abs = Bf.to_vector<float>();
    for (float& x : a_abs) x = std::fabs(x);
    for (float& x : b_abs) x = std::fabs(x);
    gemm_ref<float>(g, std::fabs(alpha), a_abs.data(), b_abs.data(), 0.0, scale.data());
    Tensor C = Tensor::from_vector(c0, {batch * g.stride_c}, {DType::f32, dev});
    gemm_tensors(g, alpha, A.to(dev), B.to(dev), beta, C);
    const std::vector<float> got = C.to(Device::cpu()).to_vector<float>();
    int64_t bad = 0;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < g.ldc; ++j) {
                const size_t at = size_t(b * g.stride_c + i * g.ldc + j);
                if (j >= N) { // padding: untouched, bit for bit
                    if (std::memcmp(&got[at], &c0[at], 4) != 0 && bad++ < 5)
                        FAIL_CHECK(fmt::format("padding C[{}] was written: {}", at, got[at]));
                    continue;
                }
                // K-term fp32 sums: |error| <= K u sum|ab| with u = 2^-24 (round to nearest); 4x
                // that for tensor cores, which align and truncate partial sums, plus beta c's rounding
                const double c_term = beta == 0 ? 0.0 : std::fabs(beta * c0[at]); // c0 is NaN when beta = 0
                const double tol = 4.0 * double(K + 1) * 0x1p-24 * (scale[at] + c_term) + 1e-30;
                if (!(std::fabs(double(got[at]) - ref[at]) <= tol) && bad++ < 5)
                    FAIL_CHECK(fmt::format("C[{}] (batch {}, row {}, col {}) = {}, reference {}, tolerance {}", at, b, i, j,
                                           got[at], ref[at], tol));
            }
    CHECK(bad == 0);
}

} // namespace

TEST_CASE("matmul_bf16: gemm against gemm_ref on the bf16 values at awkward sizes, transposes, batch, padded ld",
          "[matmul][bf16]") {
    // ones, primes and sizes that are not multiples of 8 (tensor-core tiles), K past the
    // blocked kernel's 256, and K = 0 (C = beta C)
    const int64_t sizes[][3] = {{1, 1, 1}, {1, 7, 3}, {5, 1, 9}, {67, 13, 259}, {3, 5, 300}, {17, 33, 8}, {4, 5, 0}};
    for (Device dev : devices())
        for (auto& s : sizes)
            for (bool ta : {false, true})
                for (bool tb : {false, true}) {
                    check_gemm_bf16(dev, ta, tb, s[0], s[1], s[2], 1, 0, 1.0, 0.0);
                    check_gemm_bf16(dev, ta, tb, s[0], s[1], s[2], 3, 0, 1.0, 0.0);
                    check_gemm_bf16(dev, ta, tb, s[0], s[1], s[2], 2, 3, 0.5, 1.0); // padded, accumulating
                }
}

TEST_CASE("matmul_bf16: shapes, broadcasting and views; the f32 GEMM of the widened inputs", "[matmul][bf16]") {
    Generator gen(77);
    auto bf = [&](const Shape& s) { return Tensor::randn(s, {DType::f32}, gen).to(DType::bf16); };
    struct Case {
        Tensor a, b;
        std::string name;
    };
    const Tensor at = bf({9, 13}), bt = bf({11, 9});
    const std::vector<Case> cases = {
        {bf({1, 1}), bf({1, 1}), "M=N=K=1"},
        {bf({9, 13}), bf({13, 11}), "odd sizes"},
        {bf({2, 1, 3, 4}), bf({5, 4, 2}), "batch broadcast"},
        {bf({3, 5, 7}), bf({7, 4}), "a 2-D b shared by the batch"},
        {at.transpose(0, 1), bt.transpose(0, 1), "transposed views"},
        {bf({6, 0}), bf({0, 5}), "K=0"},
    };
    for (Device dev : devices())
        for (const Case& c : cases) {
            INFO(c.name << " on " << dev.str());
            const Tensor a = c.a.to(dev), b = c.b.to(dev);
            const Tensor y = matmul_bf16(a, b);
            const Tensor want = matmul(a.to(DType::f32), b.to(DType::f32));
            REQUIRE(y.dtype() == DType::f32);
            REQUIRE(y.device() == dev);
            REQUIRE(y.shape() == want.shape());
            CHECK(!y.requires_grad());
            if (dev.is_cpu()) CHECK(host_equal(y, want)); // the CPU runs exactly that GEMM
            else mg::test::require_close(y, want, 1e-5, 1e-5, c.name + " cuda vs the f32 GEMM");
        }
}

TEST_CASE("matmul_bf16: mixed dtypes, devices and shapes are refused naming both tensors", "[matmul][bf16][errors]") {
    const Tensor a = Tensor::zeros({2, 3}, {DType::bf16}), b = Tensor::zeros({3, 4}, {DType::bf16});
    REQUIRE_ERROR_WITH(matmul_bf16(a.to(DType::f32), b), "matmul_bf16", "(2,3) f32 cpu", "(3,4) bf16 cpu", "expected both bf16");
    REQUIRE_ERROR_WITH(matmul_bf16(a, b.to(DType::f64)), "matmul_bf16", "(2,3) bf16 cpu", "(3,4) f64 cpu");
    REQUIRE_ERROR_WITH(matmul_bf16(a, Tensor::zeros({4, 3}, {DType::bf16})), "matmul_bf16", "(2,3) bf16 cpu",
                       "(4,3) bf16 cpu", "last dim (3)", "second-to-last dim (4)");
    REQUIRE_ERROR_WITH(matmul_bf16(Tensor::zeros({3}, {DType::bf16}), b), "matmul_bf16", "(3) bf16 cpu", "at least 2-D");
    REQUIRE_ERROR_WITH(matmul_bf16(Tensor::zeros({2, 2, 3}, {DType::bf16}), Tensor::zeros({3, 3, 4}, {DType::bf16})),
                       "matmul_bf16", "broadcast");
    REQUIRE_ERROR_WITH(matmul_bf16(a, Tensor()), "matmul_bf16", "b is an undefined tensor");
    // the GEMM itself: bf16 A and B need an f32 C; otherwise one dtype
    GemmArgs g;
    g.M = 2; g.N = 4; g.K = 3; g.lda = 3; g.ldb = 4; g.ldc = 4;
    REQUIRE_ERROR_WITH(gemm_tensors(g, 1, a, b, 0, Tensor::zeros({2, 4}, {DType::bf16})), "gemm", "(2,4) bf16 cpu",
                       "bf16 A and B with an f32 C");
    REQUIRE_ERROR_WITH(gemm_tensors(g, 1, a, b.to(DType::f32), 0, Tensor::zeros({2, 4})), "gemm", "(2,3) bf16 cpu",
                       "(3,4) f32 cpu");
    if (cuda_device_count() > 0)
        REQUIRE_ERROR_WITH(matmul_bf16(a, b.to(Device::cuda(0))), "matmul_bf16", "(2,3) bf16 cpu", "(3,4) bf16 cuda:0",
                           "same device");
}
