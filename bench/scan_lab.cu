// bench/scan_lab.cu: the kernel lab of the GPU selective scan (STYLE.md #11).
//
//     make lab && build/scan_lab                    # B=8, D=1536, N=16, L = 512, 2048, 8192
//     build/scan_lab --L 2048 --versions 3,4 --reps 20
//
// The numbered versions, oldest first, each kept as it landed (bench/RESULTS.md, "Kernel lab: the
// selective scan on the GPU", has their story and profiles):
//   v1  bench/scan_lab/v1.cuh   one thread per channel, 32-step tiles
//   v2  bench/scan_lab/v2.cuh   4 lanes per channel (4 states each), 32-step tiles
//   v3  bench/scan_lab/v2.cuh   v2 with 16-step tiles, softplus gradient recomputed: 4 blocks per SM
//   v4  cuda/selective_scan.cu  the winner, the kernel the library ships: the recomputed states in
//                               registers, elementwise math staged once per element, prefetched tiles
// (v1b and v5 were measured and lost before they landed; RESULTS.md keeps their figures.)
//
// First the lab checks every version against the references at awkward sizes (L = 1, a prime L,
// odd D, N past one 16-state group, with and without the optional inputs and softplus): the
// forward against selective_scan_ref (mamba_ssm's reference, loop by loop, in double), the
// backward against the CPU kernel in double (which the suite gradchecks by finite differences),
// with every output poisoned with NaN first so an unwritten element fails, and the backward run
// twice to show bit-identical gradients. Then, per L, it times each version's forward (writing the
// checkpoints and the pre-gate y, as in training) and backward (with its reductions), cross-checks
// each version's outputs and gradients against v4's at that size (and batch 0 of the forward
// against the double reference), and prints the floor bytes (each input read once, each output
// written once: bench_ops' accounting) as GB/s and as a share of the copy bandwidth measured at
// the start of the same run.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/lab.cuh"
#include "bench/scan_lab/v1.cuh"
#include "bench/scan_lab/v2.cuh"
#include "ops/selective_scan.h"

namespace {

using namespace mg;
using lab::download;
using lab::time_ms;

struct Version {
    int id;
    void (*fwd)(const ScanFwdArgs<float>&);
    void (*bwd)(const ScanBwdArgs<float>&, float*);
    int64_t (*ckpt_elems)(int64_t B, int64_t L, int64_t D, int64_t N);
    int64_t (*work_elems)(int64_t B, int64_t L, int64_t D, int64_t N);
};

int64_t v4_ckpt_elems(int64_t B, int64_t L, int64_t D, int64_t N) { return B * cuda::scan_n_chunks(L) * D * N; }

const Version kVersions[] = {
    {1, scanlab::v1::fwd<float>, scanlab::v1::bwd<float>, scanlab::v1::ckpt_elems, scanlab::workspace_elems},
    {2, scanlab::v2::fwd<float>, scanlab::v2::bwd<float>, scanlab::v2::ckpt_elems, scanlab::workspace_elems},
    {3, scanlab::v3::fwd<float>, scanlab::v3::bwd<float>, scanlab::v3::ckpt_elems, scanlab::workspace_elems},
    {4, cuda::selective_scan_fwd<float>, cuda::selective_scan_bwd<float>, v4_ckpt_elems, cuda::scan_bwd_workspace_elems},
};

struct ScanShape {
    int64_t B, L, D, N;
    bool optional; // D skip, z gate and Δ bias given
    bool softplus;
};

// The op's inputs on the host, drawn as the suite draws them (tests/test_selective_scan.cpp).
struct HostInputs {
    std::vector<float> u, delta, A, Bm, Cm, Dk, z, bias, dout;
};

HostInputs make_inputs(const ScanShape& s, uint64_t seed) {
    std::mt19937_64 rng(seed);
    auto fill = [&](int64_t n, auto dist) {
        std::vector<float> v(static_cast<size_t>(n));
        for (float& x : v) x = float(dist(rng));
        return v;
    };
    using U = std::uniform_real_distribution<double>;
    using G = std::normal_distribution<double>;
    const int64_t bld = s.B * s.L * s.D, bln = s.B * s.L * s.N;
    HostInputs h;
    h.u = fill(bld, G());
    h.delta = fill(bld, s.softplus ? U(-3.0, 1.0) : U(0.01, 0.3));
    h.A = fill(s.D * s.N, U(-4.0, -0.2));
    h.Bm = fill(bln, G());
    h.Cm = fill(bln, G());
    h.dout = fill(bld, G());
    if (s.optional) {
        h.Dk = fill(s.D, G());
        h.z = fill(bld, G());
        // without softplus, Δ = delta + bias must stay positive (a decaying recurrence)
        h.bias = fill(s.D, s.softplus ? U(-1.0, 0.5) : U(0.0, 0.2));
    }
    return h;
}

template <typename T> T* dev_alloc(int64_t n) {
    T* p = nullptr;
    LAB_CHECK(cudaMalloc(&p, size_t(n > 0 ? n : 1) * sizeof(T)));
    return p;
}
float* upload(const std::vector<float>& v) {
    if (v.empty()) return nullptr;
    float* p = dev_alloc<float>(int64_t(v.size()));
    LAB_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
    return p;
}
void poison(float* p, int64_t n) { LAB_CHECK(cudaMemset(p, 0xff, size_t(n) * sizeof(float))); } // NaN

// Every device buffer of one shape, sized for the version with the largest checkpoints/workspace.
struct DeviceRun {
    ScanShape s;
    ScanFwdArgs<float> f;
    ScanBwdArgs<float> g;
    float* work = nullptr;
    std::vector<float*> owned;

    DeviceRun(const ScanShape& shape, const HostInputs& h) : s(shape) {
        const int64_t bld = s.B * s.L * s.D, bln = s.B * s.L * s.N;
        int64_t ckpt = 0, work_n = 0;
        for (const Version& v : kVersions) {
            ckpt = std::max(ckpt, v.ckpt_elems(s.B, s.L, s.D, s.N));
            work_n = std::max(work_n, v.work_elems(s.B, s.L, s.D, s.N));
        }
        auto out = [&](int64_t n) { return own(dev_alloc<float>(n)); };
        auto in = [&](const std::vector<float>& v) { return own(upload(v)); };
        f.u = g.u = in(h.u);
        f.delta = g.delta = in(h.delta);
        f.A = g.A = in(h.A);
        f.Bm = g.Bm = in(h.Bm);
        f.Cm = g.Cm = in(h.Cm);
        f.Dskip = g.Dskip = in(h.Dk);
        f.z = g.z = in(h.z);
        f.delta_bias = g.delta_bias = in(h.bias);
        g.dout = in(h.dout);
        f.out = out(bld);
        f.last_state = out(s.B * s.D * s.N);
        f.ckpt = out(ckpt);
        g.ckpt = f.ckpt;
        if (s.optional) {
            f.y = out(bld);
            g.y = f.y;
            g.dz = out(bld);
            g.dD = out(s.D);
            g.ddelta_bias = out(s.D);
        }
        g.du = out(bld);
        g.ddelta = out(bld);
        g.dA = out(s.D * s.N);
        g.dB = out(bln);
        g.dC = out(bln);
        work = out(work_n);
        f.softplus = g.softplus = s.softplus;
        f.B = g.B = s.B;
        f.L = g.L = s.L;
        f.D = g.D = s.D;
        f.N = g.N = s.N;
    }
    ~DeviceRun() {
        for (float* p : owned) cudaFree(p);
    }
    DeviceRun(const DeviceRun&) = delete;
    DeviceRun& operator=(const DeviceRun&) = delete;
    float* own(float* p) {
        if (p) owned.push_back(p);
        return p;
    }

    // The results of one version, each tensor as (name, device pointer, elements).
    struct Named {
        const char* name;
        float* p;
        int64_t n;
    };
    std::vector<Named> fwd_outputs() const {
        return {{"out", f.out, s.B * s.L * s.D}, {"last_state", f.last_state, s.B * s.D * s.N}};
    }
    std::vector<Named> grads() const {
        const int64_t bld = s.B * s.L * s.D, bln = s.B * s.L * s.N;
        std::vector<Named> v = {{"du", g.du, bld}, {"ddelta", g.ddelta, bld}, {"dA", g.dA, s.D * s.N},
                                {"dB", g.dB, bln},  {"dC", g.dC, bln}};
        if (s.optional) {
            v.push_back({"dz", g.dz, bld});
            v.push_back({"dD", g.dD, s.D});
            v.push_back({"ddelta_bias", g.ddelta_bias, s.D});
        }
        return v;
    }
    void run_fwd(const Version& v) {
        for (const Named& t : fwd_outputs()) poison(t.p, t.n);
        if (f.y) poison(f.y, s.B * s.L * s.D);
        v.fwd(f);
    }
    void run_bwd(const Version& v) {
        for (const Named& t : grads()) poison(t.p, t.n);
        v.bwd(g, work);
    }
};

// Largest |got − ref| over the largest |ref| of one tensor; a NaN (an unwritten, poisoned element)
// or an infinity makes it infinite. `worst` gets the index of the largest difference.
template <typename R> double rel_err(const std::vector<float>& got, const R* ref, size_t n, size_t& worst) {
    double err = 0, mag = 0;
    worst = 0;
    for (size_t i = 0; i < n; ++i) {
        const double d = std::isfinite(got[i]) ? std::fabs(double(got[i]) - double(ref[i])) : INFINITY;
        if (d > err || (std::isinf(d) && !std::isinf(err))) {
            err = d;
            worst = i;
        }
        mag = std::max(mag, std::fabs(double(ref[i])));
    }
    return mag > 0 ? err / mag : err;
}

// Prints one comparison when it fails; returns whether it passed. `max_err` keeps the largest error seen.
template <typename R>
bool compare(const char* what, const char* name, const float* dev, const R* ref, int64_t n, double tol,
             double& max_err) {
    std::vector<float> got = download(dev, size_t(n));
    size_t worst = 0;
    const double e = rel_err(got, ref, size_t(n), worst);
    max_err = std::max(max_err, e);
    const bool ok = e <= tol;
    if (!ok)
        std::printf("    WRONG %s %s: max error %.2e of the largest value (tolerance %.0e) at element %zu: got %.8g, "
                    "expected %.8g\n",
                    what, name, e, tol, worst, double(got[worst]), double(ref[worst]));
    return ok;
}

// float values widened to double, so the CPU kernels run the reference in double
std::vector<double> widen(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// The double references of one shape: the forward by selective_scan_ref, the gradients by the CPU
// kernels in double (its forward supplies the checkpoints and y that its backward reads).
struct Reference {
    std::vector<double> out, last;
    std::vector<std::vector<double>> grads; // in DeviceRun::grads() order
};

Reference reference(const ScanShape& s, const HostInputs& h) {
    const int64_t bld = s.B * s.L * s.D, bln = s.B * s.L * s.N;
    auto ptr = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
    Reference r;
    r.out.resize(size_t(bld));
    r.last.resize(size_t(s.B * s.D * s.N));
    ScanFwdArgs<float> a;
    a.u = h.u.data(); a.delta = h.delta.data(); a.A = h.A.data(); a.Bm = h.Bm.data(); a.Cm = h.Cm.data();
    a.Dskip = ptr(h.Dk); a.z = ptr(h.z); a.delta_bias = ptr(h.bias);
    a.softplus = s.softplus; a.B = s.B; a.L = s.L; a.D = s.D; a.N = s.N;
    selective_scan_ref<float>(r.out.data(), r.last.data(), a);

    std::vector<double> u = widen(h.u), delta = widen(h.delta), A = widen(h.A), Bm = widen(h.Bm), Cm = widen(h.Cm),
                        Dk = widen(h.Dk), z = widen(h.z), bias = widen(h.bias), dout = widen(h.dout);
    auto dptr = [](std::vector<double>& v) { return v.empty() ? nullptr : v.data(); };
    std::vector<double> out(static_cast<size_t>(bld)), y(s.optional ? static_cast<size_t>(bld) : 0),
        ckpt(static_cast<size_t>(s.B * cpu_scan_n_chunks(s.L) * s.D * s.N));
    ScanFwdArgs<double> f;
    f.out = out.data(); f.y = dptr(y); f.ckpt = ckpt.data();
    f.u = u.data(); f.delta = delta.data(); f.A = A.data(); f.Bm = Bm.data(); f.Cm = Cm.data();
    f.Dskip = dptr(Dk); f.z = dptr(z); f.delta_bias = dptr(bias);
    f.softplus = s.softplus; f.B = s.B; f.L = s.L; f.D = s.D; f.N = s.N;
    selective_scan_fwd_cpu<double>(f);

    r.grads = {std::vector<double>(size_t(bld)), std::vector<double>(size_t(bld)), std::vector<double>(size_t(s.D * s.N)),
               std::vector<double>(size_t(bln)), std::vector<double>(size_t(bln))};
    if (s.optional) {
        r.grads.emplace_back(size_t(bld));
        r.grads.emplace_back(size_t(s.D));
        r.grads.emplace_back(size_t(s.D));
    }
    ScanBwdArgs<double> g;
    g.du = r.grads[0].data(); g.ddelta = r.grads[1].data(); g.dA = r.grads[2].data();
    g.dB = r.grads[3].data(); g.dC = r.grads[4].data();
    if (s.optional) {
        g.dz = r.grads[5].data(); g.dD = r.grads[6].data(); g.ddelta_bias = r.grads[7].data();
    }
    g.dout = dout.data(); g.y = dptr(y); g.ckpt = ckpt.data();
    g.u = u.data(); g.delta = delta.data(); g.A = A.data(); g.Bm = Bm.data(); g.Cm = Cm.data();
    g.Dskip = dptr(Dk); g.z = dptr(z); g.delta_bias = dptr(bias);
    g.softplus = s.softplus; g.B = s.B; g.L = s.L; g.D = s.D; g.N = s.N;
    selective_scan_bwd_cpu<double>(g);
    return r;
}

constexpr double kTol = 1e-4; // fp32 against double: errors of about 1e-6 of the largest value

std::string shape_str(const ScanShape& s) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "B=%lld L=%lld D=%lld N=%lld %s%s", (long long)s.B, (long long)s.L, (long long)s.D,
                  (long long)s.N, s.optional ? "D+z+bias" : "bare", s.softplus ? " softplus" : "");
    return buf;
}

// Every chosen version against the double references, with poisoned outputs and a repeated backward.
bool check_small(const std::vector<int64_t>& versions) {
    const ScanShape shapes[] = {
        {2, 1, 37, 16, true, true},   {1, 509, 64, 16, true, true}, {3, 100, 33, 20, true, true},
        {2, 77, 40, 16, false, false}, {2, 1000, 96, 16, true, true},
    };
    bool all = true;
    for (const ScanShape& s : shapes) {
        const HostInputs h = make_inputs(s, uint64_t(s.L * 131 + s.D));
        const Reference r = reference(s, h);
        DeviceRun run(s, h);
        for (const Version& v : kVersions) {
            if (std::find(versions.begin(), versions.end(), v.id) == versions.end()) continue;
            bool ok = true;
            double err = 0;
            run.run_fwd(v);
            LAB_CHECK(cudaDeviceSynchronize());
            const auto fo = run.fwd_outputs();
            ok &= compare("forward", fo[0].name, fo[0].p, r.out.data(), fo[0].n, kTol, err);
            ok &= compare("forward", fo[1].name, fo[1].p, r.last.data(), fo[1].n, kTol, err);
            run.run_bwd(v);
            LAB_CHECK(cudaDeviceSynchronize());
            const auto gr = run.grads();
            std::vector<std::vector<float>> first;
            for (size_t i = 0; i < gr.size(); ++i) {
                ok &= compare("backward", gr[i].name, gr[i].p, r.grads[i].data(), gr[i].n, kTol, err);
                first.push_back(download(gr[i].p, size_t(gr[i].n)));
            }
            run.run_bwd(v); // again, into poisoned buffers: the same bits?
            LAB_CHECK(cudaDeviceSynchronize());
            bool same = true;
            for (size_t i = 0; i < gr.size(); ++i)
                same &= std::memcmp(first[i].data(), download(gr[i].p, size_t(gr[i].n)).data(),
                                    first[i].size() * sizeof(float)) == 0;
            if (!same) std::printf("    WRONG: v%d's two backward runs differ in their bits\n", v.id);
            std::printf("check v%d %-34s max error %.1e of the largest value: %s\n", v.id, shape_str(s).c_str(), err,
                        ok && same ? "ok (forward, every gradient, bit-identical backward)" : "WRONG");
            all &= ok && same;
        }
    }
    return all;
}

// Times the chosen versions at one benchmark shape and cross-checks them against v4.
bool bench_size(const ScanShape& s, const std::vector<int64_t>& versions, int reps, double copy_gbs) {
    const HostInputs h = make_inputs(s, 7);
    DeviceRun run(s, h);
    const double bld = double(s.B * s.L * s.D) * 4, bln = double(s.B * s.L * s.N) * 4;
    // forward: read u, delta, z, B, C; write out. backward: read u, delta, z, dout, B, C; write
    // du, ddelta, dz, dB, dC (bench/bench_ops.cpp counts the same).
    const double fwd_bytes = 4 * bld + 2 * bln, bwd_bytes = 7 * bld + 4 * bln;
    std::printf("\nL=%lld (B=%lld D=%lld N=%lld, D skip + z gate + Δ bias + softplus, fp32): floors at %.0f GB/s: "
                "fwd %.3f ms, bwd %.3f ms, fwd+bwd %.3f ms\n",
                (long long)s.L, (long long)s.B, (long long)s.D, (long long)s.N, copy_gbs, fwd_bytes / copy_gbs / 1e6,
                bwd_bytes / copy_gbs / 1e6, (fwd_bytes + bwd_bytes) / copy_gbs / 1e6);

    // v4 first: its results are what the other versions are checked against at this size
    const Version& v4 = kVersions[3];
    run.run_fwd(v4);
    run.run_bwd(v4);
    LAB_CHECK(cudaDeviceSynchronize());
    std::vector<std::vector<float>> ref;
    for (const auto& t : run.fwd_outputs()) ref.push_back(download(t.p, size_t(t.n)));
    for (const auto& t : run.grads()) ref.push_back(download(t.p, size_t(t.n)));
    // and v4's forward of batch 0 against the double reference
    bool all = true;
    {
        std::vector<double> out0(static_cast<size_t>(s.L * s.D));
        ScanFwdArgs<float> a;
        a.u = h.u.data(); a.delta = h.delta.data(); a.A = h.A.data(); a.Bm = h.Bm.data(); a.Cm = h.Cm.data();
        a.Dskip = h.Dk.data(); a.z = h.z.data(); a.delta_bias = h.bias.data();
        a.softplus = true; a.B = 1; a.L = s.L; a.D = s.D; a.N = s.N;
        selective_scan_ref<float>(out0.data(), nullptr, a);
        double err = 0;
        all &= compare("v4 forward, batch 0 vs double", "out", run.f.out, out0.data(), s.L * s.D, kTol, err);
        std::printf("v4 forward, batch 0, against the double reference: max error %.1e of the largest value\n", err);
    }

    double t4f = 0, t4b = 0;
    for (int pass = 0; pass < 2; ++pass) // v4 first, to print every version's ratio to it
        for (const Version& v : kVersions) {
            if ((pass == 0) != (v.id == 4)) continue;
            if (std::find(versions.begin(), versions.end(), v.id) == versions.end()) continue;
            const float tf = time_ms(reps, [&] { v.fwd(run.f); });
            const float tb = time_ms(reps, [&] { v.bwd(run.g, run.work); });
            if (v.id == 4) {
                t4f = tf;
                t4b = tb;
            }
            bool ok = true;
            double err = 0;
            if (v.id != 4) {
                run.run_fwd(v);
                run.run_bwd(v);
                LAB_CHECK(cudaDeviceSynchronize());
                size_t k = 0;
                for (const auto& t : run.fwd_outputs()) ok &= compare("vs v4", t.name, t.p, ref[k++].data(), t.n, kTol, err);
                for (const auto& t : run.grads()) ok &= compare("vs v4", t.name, t.p, ref[k++].data(), t.n, kTol, err);
            }
            all &= ok;
            const double tfb = double(tf) + tb;
            auto gbs = [](double bytes, double ms) { return bytes / (ms * 1e-3) / 1e9; };
            std::printf("v%lld fwd %8.3f ms %6.0f GB/s %5.1f%% | bwd %8.3f ms %6.0f GB/s %5.1f%% | fwd+bwd %8.3f ms "
                        "%6.0f GB/s %5.1f%% of copy | %5.2fx v4's time | %s %.0e\n",
                        (long long)v.id, tf, gbs(fwd_bytes, tf), 100 * gbs(fwd_bytes, tf) / copy_gbs, tb,
                        gbs(bwd_bytes, tb), 100 * gbs(bwd_bytes, tb) / copy_gbs, tfb, gbs(fwd_bytes + bwd_bytes, tfb),
                        100 * gbs(fwd_bytes + bwd_bytes, tfb) / copy_gbs, t4f > 0 ? tfb / (t4f + t4b) : 1.0,
                        v.id == 4 ? "the reference at this size" : ok ? "matches v4, max error" : "WRONG, max error", err);
            std::fflush(stdout);
        }
    return all;
}

} // namespace

int main(int argc, char** argv) {
    std::string Ls = "512,2048,8192", vs = "1,2,3,4";
    ScanShape s{8, 0, 1536, 16, true, true};
    int reps = 10;
    lab::parse_args(argc, argv, "--L list, --B, --D, --N, --reps, --versions list of 1-4",
                    [&](const std::string& a, const std::string& v) {
                        if (a == "--L") Ls = v;
                        else if (a == "--versions") vs = v;
                        else if (a == "--B") s.B = lab::parse_list(a, v).at(0);
                        else if (a == "--D") s.D = lab::parse_list(a, v).at(0);
                        else if (a == "--N") s.N = lab::parse_list(a, v).at(0);
                        else if (a == "--reps") reps = int(lab::parse_list(a, v).at(0));
                        else return false;
                        return true;
                    });
    const std::vector<int64_t> versions = lab::parse_list("--versions", vs), lengths = lab::parse_list("--L", Ls);
    for (int64_t v : versions)
        if (v < 1 || v > 4) {
            std::fprintf(stderr, "error: --versions: there is no v%lld (the lab keeps v1 to v4)\n", (long long)v);
            return 2;
        }
    cudaDeviceProp prop{};
    LAB_CHECK(cudaGetDeviceProperties(&prop, 0));
    const double copy_gbs = lab::copy_bandwidth_gbs();
    std::printf("scan lab on %s: copy bandwidth %.0f GB/s (read + write, 1 GiB device-to-device)\n", prop.name, copy_gbs);
    bool ok = check_small(versions);
    for (int64_t L : lengths) {
        s.L = L;
        ok &= bench_size(s, versions, reps, copy_gbs);
    }
    if (!ok) std::printf("\nsome check FAILED (lines marked WRONG above)\n");
    return ok ? 0 : 1;
}
