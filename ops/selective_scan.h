// ops/selective_scan.h: the selective scan, Mamba's SSM, fused with its bias, softplus, D skip
// and SiLU(z) gate. docs/selective_scan.md explains it from the recurrence to the kernels.
//
// Shapes (glossary: B batch, L length, D channels (d_inner), N state size), token-major:
//   u, delta, z, out: (B, L, D)     A: (D, N)     Bm, Cm: (B, L, N)     Dskip, delta_bias: (D)
// For every (b, d) and state n, with h_{-1} = 0:
//   Δ_t   = softplus(delta_t + delta_bias)        (softplus(x) = log1p(exp x), x for x > 20)
//   h_t,n = exp(Δ_t A_n) h_{t-1},n + Δ_t B_t,n u_t
//   y_t   = Σ_n C_t,n h_t,n + D u_t
//   out_t = y_t · silu(z_t)                        (out = y when z is not given)
// last_state = h_{L-1} (B, D, N), when asked for; it carries no gradient (as in mamba_ssm).
//
// Derivatives (per (b, d); g is the adjoint of h; reverse recurrence, g_L = 0):
//   dy_t  = dout_t silu(z_t)          dz_t = dout_t y_t σ(z_t)(1 + z_t(1 − σ(z_t)))
//   g_t,n = C_t,n dy_t + exp(Δ_{t+1} A_n) g_{t+1},n
//   du_t  = D dy_t + Σ_n g_t,n Δ_t B_t,n
//   dΔ_t  = Σ_n g_t,n (B_t,n u_t + A_n exp(Δ_t A_n) h_{t-1},n)
//   dA_n  = Σ_{b,t} g_t,n Δ_t exp(Δ_t A_n) h_{t-1},n
//   dB_t,n = Σ_d g_t,n Δ_t u_t        dC_t,n = Σ_d dy_t h_t,n
//   dD    = Σ_{b,t} dy_t u_t          ddelta_t = dΔ_t σ(delta_t + bias) (dΔ_t above 20)
//   ddelta_bias = Σ_{b,t} ddelta_t
// Backward recomputes the states (memory O(B·L·D), never O(B·L·D·N)) and is deterministic:
// every sum over channels, batch or time is taken in a fixed order, with no atomics.
#pragma once
#include <vector>

#include "cuda/selective_scan.h"
#include "tensor/tensor.h"

namespace mg {

struct ScanOptions {
    bool delta_softplus = true;
    bool return_last_state = false;
};

struct ScanResult {
    Tensor out;        // (B, L, D)
    Tensor last_state; // (B, D, N) when asked for, else undefined
};

// Dskip, z and delta_bias may be undefined Tensors (absent).
ScanResult selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& Bm,
                          const Tensor& Cm, const Tensor& Dskip = {}, const Tensor& z = {},
                          const Tensor& delta_bias = {}, ScanOptions opts = {});

// One generation step: advances state (B, D, N) in place by one token and returns out (B, D).
// u_t, delta_t, z_t: (B, D); B_t, C_t: (B, N). The same recurrence as selective_scan, so stepping
// through a sequence reproduces the parallel forward.
Tensor selective_state_update(const Tensor& state, const Tensor& u_t, const Tensor& delta_t, const Tensor& A,
                              const Tensor& B_t, const Tensor& C_t, const Tensor& Dskip = {},
                              const Tensor& z_t = {}, const Tensor& delta_bias = {}, bool delta_softplus = true);

// ---- kernels --------------------------------------------------------------------------------
// CPU forward/backward (OpenMP over batch × blocks of channels); args as in cuda/selective_scan.h.
// The CPU checkpoints `ckpt` are (B, cpu_scan_n_chunks(L), D, N): the states at the end of every
// kCpuScanChunk steps, written by the forward when non-null, needed by the backward when L is
// longer than one chunk.
constexpr int64_t kCpuScanChunk = 64;
inline int64_t cpu_scan_n_chunks(int64_t L) { return (L + kCpuScanChunk - 1) / kCpuScanChunk; }
template <typename T> void selective_scan_fwd_cpu(const ScanFwdArgs<T>& a);
template <typename T> void selective_scan_bwd_cpu(const ScanBwdArgs<T>& a);
// The reference: mamba_ssm's selective_scan_ref, loop by loop, in double. out (B, L, D) and
// last_state (B, D, N) (nullable) are written.
template <typename T> void selective_scan_ref(double* out, double* last_state, const ScanFwdArgs<T>& a);

// The backward's reference, in double: the derivatives at the top of this file, loop by loop, for
// one (b, d) at a time. It stores the whole state history h (L × N per (b, d)) rather than
// recomputing it, and is the oracle the kernels' backward is tested against (gradcheck checks
// it in turn). Every vector is written (=), sized as the tensor it stands for; dD, dz and
// ddelta_bias stay empty when Dskip, z or delta_bias is absent. a.out/a.y/a.ckpt are not read.
struct ScanGradsRef {
    std::vector<double> du, ddelta, dA, dB, dC, dD, dz, ddelta_bias;
};
template <typename T> ScanGradsRef selective_scan_bwd_ref(const ScanFwdArgs<T>& a, const T* dout);

} // namespace mg
