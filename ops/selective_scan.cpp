// ops/selective_scan.cpp: the selective scan's references in double (forward and backward, the
// math of ops/selective_scan.h written as loops), the autograd op and the recurrent step. The
// vectorised CPU kernels are ops/selective_scan_cpu.cpp; docs/selective_scan.md is a tour.
#include "ops/selective_scan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "common/activation.h"
#include "common/selective_scan.h"
#include "cuda/runtime.h"
#include "ops/checks.h"
#include "ops/dispatch.h"

namespace mg {

// ---- reference ------------------------------------------------------------------------------
template <typename T> void selective_scan_ref(double* out, double* last_state, const ScanFwdArgs<T>& a) {
    for (int64_t b = 0; b < a.B; ++b)
        for (int64_t d = 0; d < a.D; ++d) {
            std::vector<double> h(size_t(a.N), 0.0);
            for (int64_t t = 0; t < a.L; ++t) {
                int64_t i = (b * a.L + t) * a.D + d;
                double dt = double(a.delta[i]) + (a.delta_bias ? double(a.delta_bias[d]) : 0.0);
                if (a.softplus) dt = dt <= 20 ? std::log1p(std::exp(dt)) : dt;
                double y = 0;
                for (int64_t n = 0; n < a.N; ++n) {
                    double A = double(a.A[d * a.N + n]);
                    double Bv = double(a.Bm[(b * a.L + t) * a.N + n]), Cv = double(a.Cm[(b * a.L + t) * a.N + n]);
                    h[size_t(n)] = std::exp(dt * A) * h[size_t(n)] + dt * Bv * double(a.u[i]);
                    y += Cv * h[size_t(n)];
                }
                if (a.Dskip) y += double(a.Dskip[d]) * double(a.u[i]);
                if (a.z) {
                    double zz = double(a.z[i]);
                    y *= zz / (1 + std::exp(-zz));
                }
                out[i] = y;
            }
            if (last_state)
                for (int64_t n = 0; n < a.N; ++n) last_state[(b * a.D + d) * a.N + n] = h[size_t(n)];
        }
}

template <typename T> ScanGradsRef selective_scan_bwd_ref(const ScanFwdArgs<T>& a, const T* dout) {
    const int64_t B = a.B, L = a.L, D = a.D, N = a.N;
    ScanGradsRef g;
    g.du.assign(size_t(B * L * D), 0.0);
    g.ddelta.assign(size_t(B * L * D), 0.0);
    g.dA.assign(size_t(D * N), 0.0);
    g.dB.assign(size_t(B * L * N), 0.0);
    g.dC.assign(size_t(B * L * N), 0.0);
    if (a.Dskip) g.dD.assign(size_t(D), 0.0);
    if (a.z) g.dz.assign(size_t(B * L * D), 0.0);
    if (a.delta_bias) g.ddelta_bias.assign(size_t(D), 0.0);
    auto at = [&](const T* p, int64_t i) { return double(p[i]); };
    for (int64_t b = 0; b < B; ++b)
        for (int64_t d = 0; d < D; ++d) {
            // forward, keeping Δ_t and every state h_t (h[t + 1], with h[0] = h_{-1} = 0)
            std::vector<double> delta(static_cast<size_t>(L)), h(static_cast<size_t>((L + 1) * N), 0.0),
                y(static_cast<size_t>(L));
            for (int64_t t = 0; t < L; ++t) {
                const int64_t i = (b * L + t) * D + d, r = (b * L + t) * N;
                double x = at(a.delta, i) + (a.delta_bias ? at(a.delta_bias, d) : 0.0);
                delta[size_t(t)] = a.softplus && x <= 20 ? std::log1p(std::exp(x)) : x;
                double acc = a.Dskip ? at(a.Dskip, d) * at(a.u, i) : 0.0;
                for (int64_t n = 0; n < N; ++n) {
                    const double dA = std::exp(delta[size_t(t)] * at(a.A, d * N + n));
                    double& ht = h[size_t((t + 1) * N + n)];
                    ht = dA * h[size_t(t * N + n)] + delta[size_t(t)] * at(a.Bm, r + n) * at(a.u, i);
                    acc += at(a.Cm, r + n) * ht;
                }
                y[size_t(t)] = acc; // pre-gate
            }
            // backward in time: g_t,n = C_t,n dy_t + exp(Δ_{t+1} A_n) g_{t+1},n
            std::vector<double> gs(static_cast<size_t>(N), 0.0);
            for (int64_t t = L - 1; t >= 0; --t) {
                const int64_t i = (b * L + t) * D + d, r = (b * L + t) * N;
                double dy = at(dout, i);
                if (a.z) { // out = y silu(z): dy = dout silu(z), dz = dout y σ(z)(1 + z(1 − σ(z)))
                    const double z = at(a.z, i), s = 1 / (1 + std::exp(-z));
                    g.dz[size_t(i)] = dy * y[size_t(t)] * s * (1 + z * (1 - s));
                    dy *= z * s;
                }
                const double dt = delta[size_t(t)], u = at(a.u, i);
                double du = a.Dskip ? at(a.Dskip, d) * dy : 0.0, ddt = 0;
                if (a.Dskip) g.dD[size_t(d)] += dy * u;
                for (int64_t n = 0; n < N; ++n) {
                    const double An = at(a.A, d * N + n), decay = std::exp(dt * An);
                    if (t + 1 < L) gs[size_t(n)] *= std::exp(delta[size_t(t + 1)] * An);
                    gs[size_t(n)] += at(a.Cm, r + n) * dy;
                    const double gn = gs[size_t(n)], hprev = h[size_t(t * N + n)];
                    du += gn * dt * at(a.Bm, r + n);
                    ddt += gn * (at(a.Bm, r + n) * u + An * decay * hprev);
                    g.dA[size_t(d * N + n)] += gn * dt * decay * hprev;
                    g.dB[size_t(r + n)] += gn * dt * u;
                    g.dC[size_t(r + n)] += dy * h[size_t((t + 1) * N + n)];
                }
                g.du[size_t(i)] = du;
                // through Δ = softplus(x), x = delta + bias: dx = dΔ σ(x) (x <= 20), dΔ above
                const double x = at(a.delta, i) + (a.delta_bias ? at(a.delta_bias, d) : 0.0);
                const double dx = a.softplus && x <= 20 ? ddt / (1 + std::exp(-x)) : ddt;
                g.ddelta[size_t(i)] = dx;
                if (a.delta_bias) g.ddelta_bias[size_t(d)] += dx;
            }
        }
    return g;
}

// ---- the op ---------------------------------------------------------------------------------
namespace {

struct ScanInputs {
    Tensor u, delta, A, Bm, Cm, Dskip, z, delta_bias; // contiguous
};

ScanInputs check_and_prepare(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& Bm,
                             const Tensor& Cm, const Tensor& Dskip, const Tensor& z, const Tensor& delta_bias) {
    const char* op = "selective_scan";
    check_float(op, "u", u);
    MG_CHECK(u.dim() == 3, "{}: u is {}, expected (B, L, D)", op, u.desc());
    int64_t B = u.size(0), L = u.size(1), D = u.size(2);
    check_dim(op, "A", A, 2);
    int64_t N = A.size(1);
    auto want = [&](const char* name, const Tensor& t, const Shape& s, const char* form) {
        check_same(op, "u", u, name, t);
        MG_CHECK(t.shape() == s, "{}: {} is {}, expected {} = {} to match u {}", op, name, t.desc(), form,
                 shape_str(s), u.desc());
    };
    want("delta", delta, {B, L, D}, "(B, L, D)");
    want("A", A, {D, N}, "(D, N)");
    want("B", Bm, {B, L, N}, "(B, L, N)");
    want("C", Cm, {B, L, N}, "(B, L, N)");
    if (Dskip.defined()) want("D", Dskip, {D}, "(D)");
    if (z.defined()) want("z", z, {B, L, D}, "(B, L, D)");
    if (delta_bias.defined()) want("delta_bias", delta_bias, {D}, "(D)");
    MG_CHECK(N >= 1, "{}: A is {}; the state size N must be at least 1", op, A.desc());
    auto c = [](const Tensor& t) { return t.defined() ? t.detach().contiguous() : Tensor(); };
    return {c(u), c(delta), c(A), c(Bm), c(Cm), c(Dskip), c(z), c(delta_bias)};
}

template <typename T> const T* ptr(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }
template <typename T> T* mptr(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }

struct SelectiveScanBackward : autograd::Node {
    ScanInputs in;
    Tensor y, ckpt;
    bool softplus = true;
    std::string name() const override { return "SelectiveScanBackward"; }
    void release() override { in = {}; y = Tensor(); ckpt = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        Tensor dout = grads[0].contiguous();
        const Tensor& u = in.u;
        int64_t B = u.size(0), L = u.size(1), D = u.size(2), N = in.A.size(1);
        Options o = u.options();
        Tensor du = Tensor::empty(u.shape(), o), ddelta = Tensor::empty(u.shape(), o);
        Tensor dA = Tensor::empty({D, N}, o), dB = Tensor::empty({B, L, N}, o), dC = Tensor::empty({B, L, N}, o);
        Tensor dD = in.Dskip.defined() ? Tensor::empty({D}, o) : Tensor();
        Tensor dz = in.z.defined() ? Tensor::empty(u.shape(), o) : Tensor();
        Tensor dbias = in.delta_bias.defined() ? Tensor::empty({D}, o) : Tensor();
        dispatch_float(u.dtype(), "selective_scan", [&]<typename T>() {
            ScanBwdArgs<T> a;
            a.du = du.data<T>(); a.ddelta = ddelta.data<T>(); a.dA = dA.data<T>();
            a.dB = dB.data<T>(); a.dC = dC.data<T>(); a.dD = mptr<T>(dD); a.dz = mptr<T>(dz);
            a.ddelta_bias = mptr<T>(dbias);
            a.dout = dout.data<T>(); a.y = ptr<T>(y); a.ckpt = ptr<T>(ckpt);
            a.u = u.data<T>(); a.delta = in.delta.data<T>(); a.A = in.A.data<T>();
            a.Bm = in.Bm.data<T>(); a.Cm = in.Cm.data<T>(); a.Dskip = ptr<T>(in.Dskip);
            a.z = ptr<T>(in.z); a.delta_bias = ptr<T>(in.delta_bias);
            a.softplus = softplus; a.B = B; a.L = L; a.D = D; a.N = N;
            if (u.device().is_cpu()) {
                selective_scan_bwd_cpu(a);
            } else {
                MG_CUDA_ONLY(cuda::DeviceGuard g(u.device().index);
                             Tensor work = Tensor::empty({cuda::scan_bwd_workspace_elems(B, L, D, N)}, o);
                             cuda::selective_scan_bwd(a, work.data<T>()));
            }
        });
        return {du, ddelta, dA, dB, dC, dD, dz, dbias};
    }
};

} // namespace

ScanResult selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& Bm,
                          const Tensor& Cm, const Tensor& Dskip, const Tensor& z, const Tensor& delta_bias,
                          ScanOptions opts) {
    ScanInputs in = check_and_prepare(u, delta, A, Bm, Cm, Dskip, z, delta_bias);
    int64_t B = u.size(0), L = u.size(1), D = u.size(2), N = A.size(1);
    std::vector<Tensor> inputs = {u, delta, A, Bm, Cm, Dskip, z, delta_bias};
    bool grad = autograd::needs_grad(inputs);
    Options o = u.options();
    ScanResult r;
    r.out = Tensor::empty({B, L, D}, o);
    if (opts.return_last_state) r.last_state = Tensor::empty({B, D, N}, o);
    Tensor y = grad && z.defined() ? Tensor::empty({B, L, D}, o) : Tensor();
    // the states at chunk ends, from which the backward recomputes one chunk at a time
    Tensor ckpt = grad ? Tensor::empty({B, u.is_cuda() ? cuda::scan_n_chunks(L) : cpu_scan_n_chunks(L), D, N}, o)
                       : Tensor();
    dispatch_float(u.dtype(), "selective_scan", [&]<typename T>() {
        ScanFwdArgs<T> a;
        a.out = r.out.data<T>(); a.y = mptr<T>(y); a.last_state = mptr<T>(r.last_state); a.ckpt = mptr<T>(ckpt);
        a.u = in.u.data<T>(); a.delta = in.delta.data<T>(); a.A = in.A.data<T>();
        a.Bm = in.Bm.data<T>(); a.Cm = in.Cm.data<T>(); a.Dskip = ptr<T>(in.Dskip);
        a.z = ptr<T>(in.z); a.delta_bias = ptr<T>(in.delta_bias);
        a.softplus = opts.delta_softplus; a.B = B; a.L = L; a.D = D; a.N = N;
        if (u.device().is_cpu()) {
            selective_scan_fwd_cpu(a);
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(u.device().index); cuda::selective_scan_fwd(a));
        }
    });
    if (grad) {
        auto node = std::make_shared<SelectiveScanBackward>();
        node->in = in;
        node->y = y;
        node->ckpt = ckpt;
        node->softplus = opts.delta_softplus;
        autograd::connect(node, inputs, {r.out});
    }
    return r;
}

// ---- recurrent step -------------------------------------------------------------------------
Tensor selective_state_update(const Tensor& state, const Tensor& u_t, const Tensor& delta_t, const Tensor& A,
                              const Tensor& B_t, const Tensor& C_t, const Tensor& Dskip, const Tensor& z_t,
                              const Tensor& delta_bias, bool delta_softplus) {
    const char* op = "selective_state_update";
    check_float(op, "state", state);
    MG_CHECK(state.dim() == 3 && state.is_contiguous(), "{}: state is {}, expected a contiguous (B, D, N) tensor",
             op, state.desc());
    int64_t B = state.size(0), D = state.size(1), N = state.size(2);
    auto want = [&](const char* name, const Tensor& t, const Shape& s, const char* form) {
        check_same(op, "state", state, name, t);
        MG_CHECK(t.shape() == s, "{}: {} is {}, expected {} = {} to match state {}", op, name, t.desc(), form,
                 shape_str(s), state.desc());
    };
    want("u", u_t, {B, D}, "(B, D)");
    want("delta", delta_t, {B, D}, "(B, D)");
    want("A", A, {D, N}, "(D, N)");
    want("B", B_t, {B, N}, "(B, N)");
    want("C", C_t, {B, N}, "(B, N)");
    if (Dskip.defined()) want("D", Dskip, {D}, "(D)");
    if (z_t.defined()) want("z", z_t, {B, D}, "(B, D)");
    if (delta_bias.defined()) want("delta_bias", delta_bias, {D}, "(D)");
    // One step is the sequence scan with L = 1 started from `state` and writing its last state
    // back into `state`: the same kernels, so stepping reproduces the parallel forward.
    NoGrad ng;
    auto c = [](const Tensor& t) { return t.defined() ? t.detach().contiguous() : Tensor(); };
    Tensor u = c(u_t), dl = c(delta_t), Ac = c(A), Bc = c(B_t), Cc = c(C_t), Dc = c(Dskip), zc = c(z_t), bc = c(delta_bias);
    Tensor out = Tensor::empty({B, D}, state.options());
    dispatch_float(state.dtype(), op, [&]<typename T>() {
        ScanFwdArgs<T> a;
        a.out = out.data<T>(); a.last_state = state.data<T>(); a.h0 = state.data<T>();
        a.u = u.data<T>(); a.delta = dl.data<T>(); a.A = Ac.data<T>(); a.Bm = Bc.data<T>();
        a.Cm = Cc.data<T>(); a.Dskip = ptr<T>(Dc); a.z = ptr<T>(zc); a.delta_bias = ptr<T>(bc);
        a.softplus = delta_softplus; a.B = B; a.L = 1; a.D = D; a.N = N;
        if (state.device().is_cpu()) {
            selective_scan_fwd_cpu(a);
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(state.device().index); cuda::selective_scan_fwd(a));
        }
    });
    return out;
}

#define MG_INST(T)                                                                   \
    template void selective_scan_ref<T>(double*, double*, const ScanFwdArgs<T>&);     \
    template ScanGradsRef selective_scan_bwd_ref<T>(const ScanFwdArgs<T>&, const T*);
MG_INST(float)
MG_INST(double)

} // namespace mg
