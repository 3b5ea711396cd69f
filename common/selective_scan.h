// common/selective_scan.h: the selective scan's argument blocks, shared by the CPU kernels
// (ops/selective_scan.cpp) and the CUDA kernels (cuda/selective_scan.cu), and its one constant.
// Plain types only (no Tensor, no fmt), so nvcc and the CPU build include the same header.
//
// Layout (token-major, as the model produces it): u, delta, z, out: (B, L, D); A: (D, N);
// Bm, Cm: (B, L, N); Dskip, delta_bias: (D). All contiguous.
#pragma once
#include <cstdint>

namespace mg {

namespace scan {
// log2(e): the kernels fold it into A once, so exp(Δ A) is computed as exp2(Δ (A log2 e)).
constexpr double kLog2e = 1.4426950408889634;
} // namespace scan

template <typename T> struct ScanFwdArgs {
    T* out = nullptr;        // (B, L, D) written (=)
    T* y = nullptr;          // (B, L, D) pre-gate output, written when z is given (for backward)
    T* last_state = nullptr; // (B, D, N) written when non-null
    T* ckpt = nullptr;       // CUDA: (B, n_chunks, D, N) states at chunk ends, written when non-null
    const T* u = nullptr;
    const T* delta = nullptr;
    const T* A = nullptr;
    const T* Bm = nullptr;
    const T* Cm = nullptr;
    const T* Dskip = nullptr;      // optional
    const T* z = nullptr;          // optional
    const T* delta_bias = nullptr; // optional
    const T* h0 = nullptr;         // (B, D, N) initial state, optional (zeros); may alias last_state
    bool softplus = false;
    int64_t B = 0, L = 0, D = 0, N = 0;
};

template <typename T> struct ScanBwdArgs {
    // outputs (all written with =)
    T* du = nullptr;      // (B, L, D)
    T* ddelta = nullptr;  // (B, L, D): gradient w.r.t. the raw delta (before bias and softplus)
    T* dA = nullptr;      // (D, N)
    T* dB = nullptr;      // (B, L, N)
    T* dC = nullptr;      // (B, L, N)
    T* dD = nullptr;      // (D), when Dskip is given
    T* dz = nullptr;      // (B, L, D), when z is given
    T* ddelta_bias = nullptr; // (D), when delta_bias is given
    // inputs
    const T* dout = nullptr;  // (B, L, D)
    const T* y = nullptr;     // (B, L, D) pre-gate output saved by forward (when z is given)
    const T* ckpt = nullptr;  // CUDA: checkpoints saved by forward
    const T* u = nullptr;
    const T* delta = nullptr;
    const T* A = nullptr;
    const T* Bm = nullptr;
    const T* Cm = nullptr;
    const T* Dskip = nullptr;
    const T* z = nullptr;
    const T* delta_bias = nullptr;
    bool softplus = false;
    int64_t B = 0, L = 0, D = 0, N = 0;
};

} // namespace mg
