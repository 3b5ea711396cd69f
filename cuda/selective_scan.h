// cuda/selective_scan.h: the CUDA launchers of the selective scan. Their argument blocks
// (ScanFwdArgs, ScanBwdArgs) are in common/selective_scan.h, shared with the CPU kernels.
//
// Layout (token-major, as the model produces it): u, delta, z, out: (B, L, D); A: (D, N);
// Bm, Cm: (B, L, N); Dskip, delta_bias: (D). All contiguous.
#pragma once
#include <cstdint>

#include "common/selective_scan.h"
#include "tensor/indexing.h"

namespace mg {

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
