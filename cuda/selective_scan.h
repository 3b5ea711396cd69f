// cuda/selective_scan.h: the argument blocks of the selective-scan kernels (CPU and CUDA share
// them) and the CUDA launchers. Plain types only: included by .cu files.
//
// Layout (token-major, as the model produces it): u, delta, z, out: (B, L, D); A: (D, N);
// Bm, Cm: (B, L, N); Dskip, delta_bias: (D). All contiguous.
#pragma once
#include <cstdint>

#include "tensor/indexing.h"

namespace mg {

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

namespace cuda {

// Time steps between saved states; the backward recomputes one chunk at a time from them.
constexpr int kScanChunk = 16;
MG_HD int64_t scan_n_chunks(int64_t L) { return (L + kScanChunk - 1) / kScanChunk; }
// Bytes of scratch the backward needs (partials for dB/dC/dA/dD/dbias), in elements of T.
int64_t scan_bwd_workspace_elems(int64_t B, int64_t L, int64_t D, int64_t N);

template <typename T> void selective_scan_fwd(const ScanFwdArgs<T>& a);
// `work` holds scan_bwd_workspace_elems(...) elements of scratch.
template <typename T> void selective_scan_bwd(const ScanBwdArgs<T>& a, T* work);

} // namespace cuda
} // namespace mg
