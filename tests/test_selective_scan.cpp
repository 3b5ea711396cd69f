// tests/test_selective_scan.cpp: the selective scan against mamba_ssm's reference (in double),
// every gradient against the backward's double reference (selective_scan_bwd_ref), gradcheck on
// each device, CUDA-vs-CPU parity of outputs and all gradients, determinism,
// the recurrent step against the parallel forward, long sequences, and bad inputs.
#include <omp.h>

#include <cmath>

#include "ops/dispatch.h"
#include "ops/vec_math.h"
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

namespace {

struct ScanCase {
    int64_t B, L, D, N;
    bool optional, softplus;
};

std::vector<Tensor> make_inputs(const ScanCase& c, Options o, uint64_t seed) {
    Generator g(seed);
    std::vector<Tensor> v = {
        Tensor::randn({c.B, c.L, c.D}, o, g),
        Tensor::uniform({c.B, c.L, c.D}, c.softplus ? -3.0 : 0.01, c.softplus ? 1.0 : 0.3, o, g),
        Tensor::uniform({c.D, c.N}, -4.0, -0.2, o, g),
        Tensor::randn({c.B, c.L, c.N}, o, g),
        Tensor::randn({c.B, c.L, c.N}, o, g),
    };
    if (c.optional) {
        v.push_back(Tensor::randn({c.D}, o, g));
        v.push_back(Tensor::randn({c.B, c.L, c.D}, o, g));
        // without softplus, Δ = delta + bias must stay positive (a decaying recurrence)
        v.push_back(c.softplus ? Tensor::uniform({c.D}, -1.0, 0.5, o, g) : Tensor::uniform({c.D}, 0.0, 0.2, o, g));
    } else {
        v.resize(8);
    }
    return v;
}

ScanResult run(const std::vector<Tensor>& v, bool softplus, bool last = false) {
    return selective_scan(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], {softplus, last});
}

std::string name(const ScanCase& c) {
    return fmt::format("selective_scan(B={}, L={}, D={}, N={}, {}{})", c.B, c.L, c.D, c.N,
                       c.optional ? "D+z+bias" : "bare", c.softplus ? ", softplus" : "");
}

// Sizes that straddle the CUDA kernel's 16-step chunks, 16-state groups and 32-channel blocks,
// and a batch past the 32 lanes of the CUDA parameter reduction (B = 37).
const ScanCase kCases[] = {
    {2, 37, 5, 16, true, true}, {1, 1, 3, 4, true, true},  {3, 64, 33, 16, false, false},
    {1, 100, 7, 17, true, true}, {2, 31, 65, 8, true, false}, {1, 129, 2, 33, true, true},
    {37, 9, 3, 5, true, true},
};

} // namespace

TEST_CASE("selective_scan: forward and last state against the double reference", "[scan]") {
    for (Device dev : devices())
        for (const ScanCase& c : kCases) {
            SECTION(name(c) + " on " + dev.str()) {
                auto v = make_inputs(c, {DType::f32, Device::cpu()}, 101);
                ScanFwdArgs<float> a;
                a.u = v[0].data<float>(); a.delta = v[1].data<float>(); a.A = v[2].data<float>();
                a.Bm = v[3].data<float>(); a.Cm = v[4].data<float>();
                if (c.optional) { a.Dskip = v[5].data<float>(); a.z = v[6].data<float>(); a.delta_bias = v[7].data<float>(); }
                a.softplus = c.softplus; a.B = c.B; a.L = c.L; a.D = c.D; a.N = c.N;
                std::vector<double> ref(size_t(c.B * c.L * c.D)), ref_last(size_t(c.B * c.D * c.N));
                selective_scan_ref<float>(ref.data(), ref_last.data(), a);
                std::vector<Tensor> vd;
                for (auto& t : v) vd.push_back(t.defined() ? t.to(dev) : t);
                ScanResult r = run(vd, c.softplus, true);
                // f32 recurrence over L steps with |h| = O(1): errors grow like L·eps, far below 1e-4
                mg::test::require_close(r.out, Tensor::from_vector(ref, {c.B, c.L, c.D}), 1e-4, 1e-4, "out");
                mg::test::require_close(r.last_state, Tensor::from_vector(ref_last, {c.B, c.D, c.N}), 1e-4, 1e-4, "last_state");
            }
        }
}

TEST_CASE("selective_scan: every gradient against the double backward reference", "[scan]") {
    // selective_scan_bwd_ref is the derivatives of ops/selective_scan.h written as loops; the
    // kernels' backward (CPU and CUDA, f32 and f64) must match it at every awkward size.
    for (Device dev : devices())
        for (DType dt : {DType::f32, DType::f64})
            for (const ScanCase& c : kCases) {
                SECTION(name(c) + " " + std::string(dtype_name(dt)) + " on " + dev.str()) {
                    auto v = make_inputs(c, {DType::f64, Device::cpu()}, 202);
                    Generator g(203);
                    Tensor dout = Tensor::randn({c.B, c.L, c.D}, {DType::f64}, g);
                    ScanFwdArgs<double> a;
                    a.u = v[0].data<double>(); a.delta = v[1].data<double>(); a.A = v[2].data<double>();
                    a.Bm = v[3].data<double>(); a.Cm = v[4].data<double>();
                    if (c.optional) { a.Dskip = v[5].data<double>(); a.z = v[6].data<double>(); a.delta_bias = v[7].data<double>(); }
                    a.softplus = c.softplus; a.B = c.B; a.L = c.L; a.D = c.D; a.N = c.N;
                    const ScanGradsRef ref = selective_scan_bwd_ref<double>(a, dout.data<double>());
                    std::vector<Tensor> x;
                    for (auto& t : v) {
                        x.push_back(t.defined() ? t.to(dt).to(dev).detach() : t);
                        if (x.back().defined()) x.back().set_requires_grad(true);
                    }
                    run(x, c.softplus).out.backward(dout.to(dt).to(dev));
                    // f32: sums of up to B·L terms of size O(1) carry ~L·eps relative error
                    const double tol = dt == DType::f32 ? 2e-3 : 1e-10;
                    auto check = [&](const Tensor& got, const std::vector<double>& want, const char* what) {
                        double scale = 0;
                        for (double w : want) scale = std::max(scale, std::abs(w));
                        mg::test::require_close(got, Tensor::from_vector(want, got.shape()), tol, tol * scale, what);
                    };
                    check(x[0].grad(), ref.du, "du");
                    check(x[1].grad(), ref.ddelta, "ddelta");
                    check(x[2].grad(), ref.dA, "dA");
                    check(x[3].grad(), ref.dB, "dB");
                    check(x[4].grad(), ref.dC, "dC");
                    if (c.optional) {
                        check(x[5].grad(), ref.dD, "dD");
                        check(x[6].grad(), ref.dz, "dz");
                        check(x[7].grad(), ref.ddelta_bias, "ddelta_bias");
                    }
                }
            }
}

TEST_CASE("selective_scan: cuda matches cpu in f32, outputs and every gradient", "[scan][parity][cuda]") {
    MG_REQUIRE_CUDA();
    for (const ScanCase& c : kCases) {
        SECTION(name(c)) {
            auto cpu = make_inputs(c, {DType::f32, Device::cpu()}, 202);
            std::vector<Tensor> gpu;
            for (auto& t : cpu) {
                gpu.push_back(t.defined() ? t.to(Device::cuda(0)).set_requires_grad(true) : t);
                if (t.defined()) t.set_requires_grad(true);
            }
            Tensor oc = run(cpu, c.softplus).out, og = run(gpu, c.softplus).out;
            mg::test::require_close(og, oc, 1e-4, 1e-4, "out");
            Generator g(9);
            Tensor dy = Tensor::randn(oc.shape(), {}, g);
            oc.backward(dy);
            og.backward(dy.to(Device::cuda(0)));
            const char* names[] = {"du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias"};
            for (size_t i = 0; i < cpu.size(); ++i) {
                if (!cpu[i].defined()) continue;
                // Sums over L (dA, dD, dbias) and over D (dB, dC) in different orders on the two
                // devices: relative differences of a few 1e-6 times sqrt(terms).
                mg::test::require_close(gpu[i].grad(), cpu[i].grad(), 2e-4, 2e-4, names[i]);
            }
        }
    }
}

TEST_CASE("selective_scan: the backward is deterministic (bit-identical gradients)", "[scan]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            ScanCase c{2, 300, 96, 16, true, true};
            auto v = make_inputs(c, {DType::f32, dev}, 303);
            std::vector<std::vector<float>> first;
            for (int rep = 0; rep < 2; ++rep) {
                for (auto& t : v) if (t.defined()) { t.zero_grad(); t.set_requires_grad(true); }
                Tensor o = run(v, true).out;
                sum(o * o).backward();
                for (size_t i = 0; i < v.size(); ++i) {
                    auto g = v[i].grad().to_vector<float>();
                    if (rep == 0) first.push_back(g);
                    else CHECK(g == first[i]);
                }
            }
        }
    }
}

TEST_CASE("selective_scan: CPU results are bit-identical on 1 and 2 threads, on each instruction set", "[scan]") {
    // 3 chunks of kCpuScanChunk (the last partial) and 3 channel blocks (the last partial), large
    // enough to run in parallel; both CPU code paths (baseline x86-64 and AVX2 + FMA, when this CPU
    // has them) against the double reference, and each path against itself on 1 and 2 threads.
    ScanCase c{2, 2 * kCpuScanChunk + 22, 37, 16, true, true};
    REQUIRE(c.B * c.L * c.D * c.N > kParallelGrain);
    auto v = make_inputs(c, {DType::f32, Device::cpu()}, 606);
    ScanFwdArgs<float> a;
    a.u = v[0].data<float>(); a.delta = v[1].data<float>(); a.A = v[2].data<float>();
    a.Bm = v[3].data<float>(); a.Cm = v[4].data<float>(); a.Dskip = v[5].data<float>();
    a.z = v[6].data<float>(); a.delta_bias = v[7].data<float>();
    a.softplus = true; a.B = c.B; a.L = c.L; a.D = c.D; a.N = c.N;
    std::vector<double> ref(size_t(c.B * c.L * c.D));
    selective_scan_ref<float>(ref.data(), nullptr, a);
    Generator g(7);
    Tensor dy = Tensor::randn({c.B, c.L, c.D}, {}, g);
    // out, then the gradients of all eight inputs
    auto results = [&](int threads) {
        const int saved = omp_get_max_threads();
        omp_set_num_threads(threads);
        for (auto& t : v) { t.zero_grad(); t.set_requires_grad(true); }
        Tensor o = run(v, true).out;
        o.backward(dy);
        omp_set_num_threads(saved);
        std::vector<std::vector<float>> r = {o.to_vector<float>()};
        for (auto& t : v) r.push_back(t.grad().to_vector<float>());
        return r;
    };
    std::vector<bool> isas = {false};
    if (vm::use_avx2()) isas.push_back(true);
    std::vector<std::vector<std::vector<float>>> per_isa;
    for (bool avx2 : isas) {
        vm::set_avx2(avx2);
        auto one = results(1), two = results(2);
        vm::set_avx2(true);
        INFO((avx2 ? "AVX2 + FMA" : "baseline"));
        mg::test::require_close(Tensor::from_vector(std::vector<double>(one[0].begin(), one[0].end()), {c.B, c.L, c.D}),
                                Tensor::from_vector(ref, {c.B, c.L, c.D}), 1e-4, 1e-4, "out vs reference");
        for (size_t i = 0; i < one.size(); ++i) CHECK(one[i] == two[i]);
        per_isa.push_back(one);
    }
    if (per_isa.size() == 2) // the two paths round differently (FMA), but compute the same values
        for (size_t i = 0; i < per_isa[0].size(); ++i)
            for (size_t j = 0; j < per_isa[0][i].size(); ++j)
                REQUIRE(std::fabs(per_isa[0][i][j] - per_isa[1][i][j]) <= 2e-4 * (1 + std::fabs(per_isa[1][i][j])));
}

TEST_CASE("selective_scan: stepping token by token equals the parallel forward", "[scan]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            ScanCase c{2, 19, 6, 5, true, true};
            auto v = make_inputs(c, {DType::f64, dev}, 404);
            ScanResult par = run(v, true, true);
            Tensor state = Tensor::zeros({c.B, c.D, c.N}, {DType::f64, dev});
            std::vector<Tensor> outs;
            for (int64_t t = 0; t < c.L; ++t) {
                auto at = [&](const Tensor& x) { return x.narrow(1, t, 1).squeeze(1); };
                outs.push_back(selective_state_update(state, at(v[0]), at(v[1]), v[2], at(v[3]), at(v[4]), v[5],
                                                      at(v[6]), v[7]).unsqueeze(1));
            }
            mg::test::require_close(cat(outs, 1), par.out, 1e-12, 1e-12, "stepped vs parallel");
            mg::test::require_close(state, par.last_state, 1e-12, 1e-12, "final state");
        }
    }
}

TEST_CASE("selective_scan: a long sequence (L = 16384) stays finite and matches the reference", "[scan]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            ScanCase c{1, 16384, 2, 16, true, true};
            auto v = make_inputs(c, {DType::f32, Device::cpu()}, 505);
            ScanFwdArgs<float> a;
            a.u = v[0].data<float>(); a.delta = v[1].data<float>(); a.A = v[2].data<float>();
            a.Bm = v[3].data<float>(); a.Cm = v[4].data<float>(); a.Dskip = v[5].data<float>();
            a.z = v[6].data<float>(); a.delta_bias = v[7].data<float>();
            a.softplus = true; a.B = c.B; a.L = c.L; a.D = c.D; a.N = c.N;
            std::vector<double> ref(size_t(c.L * c.D));
            selective_scan_ref<float>(ref.data(), nullptr, a);
            std::vector<Tensor> vd;
            for (auto& t : v) vd.push_back(t.to(dev));
            mg::test::require_close(run(vd, true).out, Tensor::from_vector(ref, {1, c.L, c.D}), 1e-4, 1e-4, "L=16384");
        }
    }
}

TEST_CASE("selective_scan: bad inputs name the argument and the shapes", "[scan][errors]") {
    Options o;
    Tensor u = Tensor::zeros({2, 16, 8}, o), dl = Tensor::zeros({2, 16, 8}, o), A = Tensor::zeros({8, 4}, o);
    Tensor Bm = Tensor::zeros({2, 16, 4}, o), Cm = Tensor::zeros({2, 16, 4}, o);
    REQUIRE_ERROR_WITH(selective_scan(u, dl, A, Tensor::zeros({2, 16, 5}), Cm), "selective_scan", "B is (2,16,5) f32 cpu",
                       "expected (B, L, N) = (2,16,4)", "u (2,16,8) f32 cpu");
    REQUIRE_ERROR_WITH(selective_scan(u, Tensor::zeros({2, 15, 8}), A, Bm, Cm), "delta is (2,15,8)", "(2,16,8)");
    REQUIRE_ERROR_WITH(selective_scan(u, dl, Tensor::zeros({7, 4}), Bm, Cm), "A is (7,4)", "(D, N) = (8,4)");
    REQUIRE_ERROR_WITH(selective_scan(Tensor::zeros({16, 8}), dl, A, Bm, Cm), "u is (16,8) f32 cpu", "(B, L, D)");
    REQUIRE_ERROR_WITH(selective_scan(u, dl, A, Bm, Cm, Tensor::zeros({8}, {DType::f64})), "D is (8) f64 cpu", "same dtype");
    REQUIRE_ERROR_WITH(selective_scan(u, dl, A, Bm, Cm, {}, Tensor::zeros({2, 16, 7})), "z is (2,16,7)");
    REQUIRE_ERROR_WITH(selective_scan(u.to(DType::i32), dl, A, Bm, Cm), "selective_scan", "i32");
    REQUIRE_ERROR_WITH(selective_state_update(Tensor::zeros({2, 8, 4}), Tensor::zeros({2, 8}), Tensor::zeros({2, 8}), A,
                                              Tensor::zeros({2, 3}), Tensor::zeros({2, 4})),
                       "selective_state_update", "B is (2,3)", "(B, N) = (2,4)");
}
