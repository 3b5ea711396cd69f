// cuda/fft_conv_kernels.cuh: the fused path's kernels (the causal long conv by our own block FFT,
// cuda/fft_block.cuh), templated on the transform size N, the points per thread E, MINB, the
// blocks per SM asked of the register allocator (__launch_bounds__: at most 65536 / (MINB * threads)
// registers per thread), and SPLIT (N = 2M done as two M-point transforms, below; the kernels then
// run M/E threads instead of N/E). cuda/fft_conv.cu launches them with the measured configuration
// (FusedConfig there); bench/fft_lab.cu checks and times other configurations beside it.
//
// Layout: time-major rows, xt[(d*R + b)*S + t] = x[b,t,d]: unsplit R = B rows of S = L points,
// unpadded (the zero padding to N is implicit: points t >= L are zero in registers); split, rows
// padded (below). Kernel spectra: one row of N/2+1 complex per channel, FFT(h_d)/N.
// One block of N/E (split: M/E) threads per transform; thread tid owns the points tid + i*T, i < E,
// in time and in frequency alike, so loads, pointwise products and stores all happen in registers
// and each transform crosses shared memory only between its passes.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/fft_block.cuh"
#include "cuda/launch.h"
#include "cuda/reduce.h"
#include "common/conv1d.h"
#include "common/reduce.h"

namespace mg::cuda::fftconv {

// ---- the split transform (N = 16384) ------------------------------------------------------------
// One block cannot hold N = 16384 points without spilling (1024 threads get 64 registers each), but
// the convolutions here never need all of them: x and h are zero at t >= N/2 = M, and only the
// outputs t < M are kept. Then the even and odd bins of the N-point spectrum are M-point transforms,
//   Z(2k) = FFT_M(z)(k),  Z(2k+1) = FFT_M(z psi^t)(k),  psi = exp(-2 pi i / N) (the "twist"),
// and the inverse splits the same way: IFFT_N(W)(t) = IFFT_M(W_even)(t) + psi^-t IFFT_M(W_odd)(t)
// (unnormalised inverses; the 1/N sits in the spectra). A convolution is then two M-point ones: the
// cyclic (even) and the negacyclic (odd) convolution of length M, whose sum is the linear one for
// t < M. Each is done by a block of M/E threads as below, so N = 16384 runs on the M = 8192 kernels'
// configuration (512 threads, up to 128 registers) at the same number of flops.
//
// Spectrum row layout (N/2 + 1 complex per channel either way):
//   unsplit: H(f), f <= N/2 (h real: H(N-f) = conj H(f));
//   split:   He(k) = H(2k), k <= M/2, then Ho(k) = H(2k+1), k < M/2. He is the spectrum of a real
//            signal (He(M-k) = conj He(k)) and H(N-2k-1) = conj H(2k+1) gives Ho(M-1-k) = conj Ho(k).
// Twiddle table (N complex): unsplit tw[m] = w_N^m; split tw[m] = w_M^m for m < M, then the twist
// tw[M + t] = psi^t for t < M.
// Rows: unsplit, (D, B, L) unpadded (loads and stores test t < L); split, (D, split_rows(B), M) with
// zeros at t >= L and a zero row after an odd B, so the kernels load and store without conditions
// (at M = 8192 the conditions cost the registers that made the kernels spill: 850 bytes a thread).
constexpr int64_t split_rows(int64_t B) { return B + (B & 1); }

// The transform size of a kernel for N: M = N/2 when split.
template <int N, bool SPLIT> constexpr int fft_m() { return SPLIT ? N / 2 : N; }

// The spectrum at bin f < M of the even (or unsplit, M = N) or odd half, from a row as above.
template <int M, bool ODD> __device__ __forceinline__ float2 spectrum_at(const float2* Hrow, int f) {
    if constexpr (!ODD) {
        const bool low = f <= M / 2;
        const float2 h = fftb::load_pinned(Hrow + (low ? f : M - f));
        return low ? h : make_float2(h.x, -h.y);
    } else {
        const bool low = f < M / 2;
        const float2 h = fftb::load_pinned(Hrow + (M / 2 + 1) + (low ? f : M - 1 - f));
        return low ? h : make_float2(h.x, -h.y);
    }
}

// tw as above for a table of n entries (split: M = n/2).
static __global__ void twiddle_kernel(int64_t total, float2* tw, bool split) {
    MG_GRID_LOOP(m, total) {
        const int64_t e = !split ? m : m < total / 2 ? 2 * m : m - total / 2; // the power of w_n
        double sn, cs;
        sincospi(-2.0 * double(e) / double(total), &sn, &cs);
        tw[m] = make_float2(float(cs), float(sn));
    }
}

// v <- v psi^t (INV: psi^-t) for the thread's points t = tid + i T.
template <int M, int E, bool INV> __device__ __forceinline__ void twist(float2 (&v)[E], const float2* tw) {
    constexpr int T = M / E;
    const int tid = fftb::fresh_tid();
#pragma unroll
    for (int i = 0; i < E; ++i) {
        const float2 p = fftb::load_pinned(tw + M + tid + i * T);
        v[i] = INV ? fftb::cmulc(v[i], p) : fftb::cmul(v[i], p);
    }
}

// Hh[d] = the spectrum row of h_d / N (layout above), h_d[j] = w[d, K-1-j] (j < K). Two channels a
// block: h_d and h_{d+1} are real, so one complex transform of z = h_d + i h_{d+1} gives both. With
// Z' the mirrored bin (Z(M-f mod M) for the unsplit or even half, Z(M-1-f) for the odd half: the
// bins a real signal's spectrum conjugates), H_d = (Z + conj Z')/2 and H_{d+1} = (Z - conj Z')/(2i).
// Grid: ceil(D/2) blocks of M/E threads (the last one alone when D is odd).
template <int N, int E, int MINB, bool SPLIT>
__global__ void __launch_bounds__(fft_m<N, SPLIT>() / E, MINB) fused_spectrum_kernel(float2* Hh, const float* w,
                                                                                     const float2* tw, int K,
                                                                                     int64_t D) {
    constexpr int M = fft_m<N, SPLIT>(), T = M / E;
    extern __shared__ float2 s[];
    const int tid = int(threadIdx.x);
    const int64_t d = 2 * int64_t(blockIdx.x);
    const bool two = d + 1 < D;
    const float half_inv_n = 0.5f / float(N);
    float2 *row0 = Hh + d * (N / 2 + 1), *row1 = row0 + (N / 2 + 1);
    float2 v[E];
#pragma unroll
    for (int half = 0; half < (SPLIT ? 2 : 1); ++half) {
#pragma unroll
        for (int i = 0; i < E; ++i) {
            const int j = tid + i * T;
            v[i] = make_float2(j < K ? w[d * K + K - 1 - j] : 0.0f, two && j < K ? w[(d + 1) * K + K - 1 - j] : 0.0f);
        }
        if (half == 1) twist<M, E, false>(v, tw);
        fftb::block_fft<M, E, false>(v, s, tw);
        __syncthreads(); // the transform's last reads of s are done
#pragma unroll
        for (int i = 0; i < E; ++i) s[tid + i * T] = v[i];
        __syncthreads();
#pragma unroll
        for (int i = 0; i < E; ++i) {
            const int f = tid + i * T;
            const bool keep = half == 0 ? f <= M / 2 : f < M / 2;
            if (!keep) continue;
            const float2 z = v[i], zm = s[half == 0 ? (M - f) % M : M - 1 - f];
            const int at = half == 0 ? f : M / 2 + 1 + f;
            row0[at] = make_float2((z.x + zm.x) * half_inv_n, (z.y - zm.y) * half_inv_n);
            if (two) row1[at] = make_float2((z.y + zm.y) * half_inv_n, (zm.x - z.x) * half_inv_n);
        }
        // the next half's transform writes s only behind a barrier of its own
    }
}

// v <- the block's points (E per thread, natural order, zero at t >= M when split) convolved with the
// kernel whose spectrum row is Hrow: IFFT(FFT(v) H), or when split the even and odd halves summed.
// keep: M points of shared memory, each thread's own slots (split only). The forward, and the
// backward's recomputed pre-activation.
template <int N, int E, bool SPLIT>
__device__ __forceinline__ void convolve_block(float2 (&v)[E], float2* s, float2* keep, const float2* tw,
                                               const float2* Hrow) {
    constexpr int M = fft_m<N, SPLIT>(), T = M / E;
    if constexpr (SPLIT) {
        const int tid = fftb::fresh_tid();
#pragma unroll
        for (int i = 0; i < E; ++i) keep[tid + i * T] = v[i]; // z, for the odd half
    }
    fftb::block_fft<M, E, false>(v, s, tw);
    {
        const int tid = fftb::fresh_tid();
#pragma unroll
        for (int i = 0; i < E; ++i) v[i] = fftb::cmul(v[i], spectrum_at<M, false>(Hrow, tid + i * T));
    }
    fftb::block_fft<M, E, true>(v, s, tw);
    if constexpr (SPLIT) {
        const int tid = fftb::fresh_tid();
#pragma unroll
        for (int i = 0; i < E; ++i) { // keep <- the even half's result, v <- z
            const float2 z = keep[tid + i * T];
            keep[tid + i * T] = v[i];
            v[i] = z;
        }
        twist<M, E, false>(v, tw);
        fftb::block_fft<M, E, false>(v, s, tw);
        {
            const int tid2 = fftb::fresh_tid();
#pragma unroll
            for (int i = 0; i < E; ++i) v[i] = fftb::cmul(v[i], spectrum_at<M, true>(Hrow, tid2 + i * T));
        }
        fftb::block_fft<M, E, true>(v, s, tw);
        twist<M, E, true>(v, tw);
#pragma unroll
        for (int i = 0; i < E; ++i) v[i] = fftb::cadd(v[i], keep[tid + i * T]);
    }
}

// Shared memory of the forward: the transform's scratch, then (split) the kept points.
template <int N, bool SPLIT> constexpr size_t forward_smem_bytes() {
    constexpr int M = fft_m<N, SPLIT>();
    return (size_t(fftb::smem_points(M)) + (SPLIT ? size_t(M) : 0)) * sizeof(float2);
}

// Forward, two rows b, b+1 of channel d per block as one complex signal z = x_b + i x_(b+1):
// h is real, so IFFT(FFT(z) H) = y_b + i y_(b+1). yt may alias xt (each block reads its two rows
// whole before it writes them). Grid: ceil(B/2) * D blocks, pairs of one channel adjacent (they
// share Hh's row in L2).
template <int N, int E, int MINB, bool SPLIT>
__global__ void __launch_bounds__(fft_m<N, SPLIT>() / E, MINB) fused_forward_kernel(float* yt, const float* xt,
                                                                                    const float2* Hh, const float2* tw,
                                                                                    int B, int L) {
    constexpr int M = fft_m<N, SPLIT>(), T = M / E;
    extern __shared__ float2 s[];
    float2* keep = s + fftb::smem_points(M);
    const int64_t R = SPLIT ? split_rows(B) : B, stride = SPLIT ? M : L; // rows per channel, row length
    const int tid = int(threadIdx.x), P = int((R + 1) / 2);
    const int64_t d = blockIdx.x / P;
    const int b0 = 2 * int(blockIdx.x % P);
    const bool two = b0 + 1 < B;
    const int64_t row0 = (d * R + b0) * stride, row1 = row0 + stride;
    float2 v[E];
#pragma unroll
    for (int i = 0; i < E; ++i) {
        const int t = tid + i * T;
        if constexpr (SPLIT) v[i] = make_float2(xt[row0 + t], xt[row1 + t]);
        else v[i] = t < L ? make_float2(xt[row0 + t], two ? xt[row1 + t] : 0.0f) : make_float2(0.0f, 0.0f);
    }
    convolve_block<N, E, SPLIT>(v, s, keep, tw, Hh + d * (N / 2 + 1));
#pragma unroll
    for (int i = 0; i < E; ++i) {
        const int t = tid + i * T;
        if constexpr (SPLIT) { // the padding (t >= L, the zero row) takes values nobody reads
            yt[row0 + t] = v[i].x;
            yt[row1 + t] = v[i].y;
        } else if (t < L) {
            yt[row0 + t] = v[i].x;
            if (two) yt[row1 + t] = v[i].y;
        }
    }
}

// One transform pair of the backward (below) on the block's points v = z = x_b + i gp_b (or, for the
// odd half, z psi^t): Z = FFT_M(v); the spectra X, G of the two real signals from Z(f) and its
// partner Z(N-f) (bin (M-f) mod M of the same half; M-1-f of the odd half); W = G conj(H) + i G conj(X)/N;
// v <- IFFT_M(W).
template <int M, int E, bool ODD>
__device__ __forceinline__ void backward_pair(float2 (&v)[E], float2* s, const float2* tw, const float2* Hrow,
                                              float inv_n) {
    constexpr int T = M / E;
    fftb::block_fft<M, E, false>(v, s, tw);
    const int tid = fftb::fresh_tid();
    __syncthreads(); // the transform's last readers of s are done
#pragma unroll
    for (int i = 0; i < E; ++i) s[tid + i * T] = v[i];
    __syncthreads();
#pragma unroll
    for (int i = 0; i < E; ++i) {
        const int f = tid + i * T;
        const float2 zf = v[i], zm = s[ODD ? M - 1 - f : (M - f) & (M - 1)];
        const float2 X = make_float2(0.5f * (zf.x + zm.x), 0.5f * (zf.y - zm.y));
        const float2 G = make_float2(0.5f * (zf.y + zm.y), -0.5f * (zf.x - zm.x));
        const float2 DX = fftb::cmulc(G, spectrum_at<M, ODD>(Hrow, f));
        const float2 DK = fftb::cscale(fftb::cmulc(G, X), inv_n);
        v[i] = make_float2(DX.x - DK.y, DX.y + DK.x);
    }
    fftb::block_fft<M, E, true>(v, s, tw); // its first write to s is behind a barrier
}

// z = x_b + i gp_b at the thread's points t = tid + i T of one row (xrow, grow: its x and dy):
// gp = dy, or with silu dy dsilu(pre + bias), pre = the row of x convolved again (the forward's
// pre-activation). Split rows are zero at t >= L, so their loads need no test (gp is zero there too).
template <int N, int E, bool SILU, bool SPLIT>
__device__ __forceinline__ void load_z(float2 (&v)[E], const float* xrow, const float* grow, int L, float bv,
                                       float2* s, float2* keep, const float2* tw, const float2* Hrow) {
    constexpr int T = fft_m<N, SPLIT>() / E;
    const int tid = fftb::fresh_tid(); // not hoisted out of a loop over rows: addresses are not kept across rows
    const auto in = [&](const float* p, int t) { return SPLIT || t < L ? p[t] : 0.0f; };
    if constexpr (SILU) {
#pragma unroll
        for (int i = 0; i < E; ++i) v[i] = make_float2(in(xrow, tid + i * T), 0.0f);
        convolve_block<N, E, SPLIT>(v, s, keep, tw, Hrow);
#pragma unroll
        for (int i = 0; i < E; ++i) {
            const int t = tid + i * T;
            v[i] = make_float2(in(xrow, t), in(grow, t) * conv_dsilu(v[i].x + bv));
        }
    } else {
#pragma unroll
        for (int i = 0; i < E; ++i) v[i] = make_float2(in(xrow, tid + i * T), in(grow, tid + i * T));
    }
}

// The block's sum of one float per thread (T threads, a power of two) by a fixed tree in s:
// deterministic; every thread gets it. All threads must call it; s is free on entry.
template <int T> __device__ __forceinline__ float block_sum(float x, float2* s) {
    const int tid = int(threadIdx.x);
    float* red = reinterpret_cast<float*>(s);
    __syncthreads(); // s is free
    red[tid] = x;
    __syncthreads();
    for (int stride = T / 2; stride > 0; stride /= 2) {
        if (tid < stride) red[tid] += red[tid + stride];
        __syncthreads();
    }
    return red[0];
}

// Backward, one block per channel d, rows b = 0..B-1 in order (so the sums over b are in a fixed
// order, no atomics). Per row, one complex signal z = x_b + i gp_b (both real):
//   Z = FFT(z);  X(f) = (Z(f) + conj Z(N-f)) / 2,  G(f) = (Z(f) - conj Z(N-f)) / 2i;
//   DX = G conj(H) (H holds 1/N),  DK = G conj(X) / N;  both spectra of real signals, so
//   W(f) = DX(f) + i DK(f) transforms back to IFFT(W) = dx_b + i dh_b (dh_b: row b's share of
//   the kernel gradient, the correlation of gp_b with x_b).
// dxt may alias gt (row b of g is read whole before row b of dx is written, by the same threads).
// Shared memory: the transform's scratch, then K floats of the dh sum.
template <int N, int E, int MINB, bool SILU>
__global__ void __launch_bounds__(N / E, MINB)
    fused_backward_kernel(float* dxt, float* dw, float* dbias, const float* gt, const float* xt, const float2* Hh,
                          const float2* tw, const float* bias, int B, int L, int K) {
    constexpr int T = N / E;
    extern __shared__ float2 s[];
    float* acc = reinterpret_cast<float*>(s + fftb::smem_points(N)); // dh_d[j], j < K
    const int tid = int(threadIdx.x);
    const int64_t d = blockIdx.x;
    const float2* Hrow = Hh + d * (N / 2 + 1);
    const float bv = bias ? bias[d] : 0.0f, inv_n = 1.0f / float(N);
    for (int j = tid; j < K; j += T) acc[j] = 0.0f;
    float bsum = 0.0f;
    for (int b = 0; b < B; ++b) {
        const int64_t row = (d * B + b) * int64_t(L);
        float2 v[E];
        load_z<N, E, SILU, false>(v, xt + row, gt + row, L, bv, s, nullptr, tw, Hrow);
#pragma unroll
        for (int i = 0; i < E; ++i) bsum += v[i].y;
        backward_pair<N, E, false>(v, s, tw, Hrow, inv_n);
        const int tid2 = fftb::fresh_tid();
#pragma unroll
        for (int i = 0; i < E; ++i) {
            const int t = tid2 + i * T;
            if (t < L) dxt[row + t] = v[i].x;
            if (t < K) acc[t] += v[i].y; // each j has one owner thread: no race, fixed order
        }
    }
    // dw[d, k] = dh_d[K-1-k]; acc[j] was last written by this same thread
    for (int j = tid; j < K; j += T) dw[d * K + (K - 1 - j)] = acc[j];
    if (dbias) {
        const float total = block_sum<T>(bsum, s);
        if (tid == 0) dbias[d] = total;
    }
}

// The split backward (N = 2M; rows as for the split forward): one block per row (d, b), grid
// D * B, straight-line code (a loop over rows made the M = 8192 kernel spill: ~900 bytes a
// thread). The even and odd halves each give their part of dx_b + i dh_b (backward_pair), summed;
// row b's dh_b goes to part (D, B, M) and each thread's share of dbias to part_bias (D, B, M/E);
// reduce_partials_kernel and reduce_rows sum them in a fixed order: no atomics, deterministic.
// Shared memory: the transform's scratch, M points of z kept for the odd half, and the even half's
// dx and dh (M floats each). (Register pressure decided this shape: a block-wide tree sum for
// dbias anywhere in this kernel made ptxas spill 600-900 bytes a thread, so each thread writes
// its own share of it instead.)
template <int N, int E, int MINB, bool SILU>
__global__ void __launch_bounds__(N / 2 / E, MINB)
    fused_backward_split_kernel(float* dxt, float* part, float* part_bias, const float* gt, const float* xt,
                                const float2* Hh, const float2* tw, const float* bias, int B, int L) {
    constexpr int M = N / 2, T = M / E;
    extern __shared__ float2 s[];
    float2* keep = s + fftb::smem_points(M);
    float* dx_even = reinterpret_cast<float*>(keep + M);
    float* dh_even = dx_even + M;
    const int64_t d = blockIdx.x / B, b = blockIdx.x % B;
    const int64_t row = (d * split_rows(B) + b) * M;
    const float2* Hrow = Hh + d * (N / 2 + 1);
    const float inv_n = 1.0f / float(N);
    float2 v[E];
    load_z<N, E, SILU, true>(v, xt + row, gt + row, L, bias ? bias[d] : 0.0f, s, keep, tw, Hrow);
    {
        const int tid = fftb::fresh_tid();
        float bsum = 0.0f; // the row's sum of gp (zero in the padding), for dbias
#pragma unroll
        for (int i = 0; i < E; ++i) {
            keep[tid + i * T] = v[i]; // z, for the odd half
            bsum += v[i].y;
        }
        part_bias[(d * B + b) * T + tid] = bsum; // (a block sum here made ptxas spill the kernel)
    }
    backward_pair<M, E, false>(v, s, tw, Hrow, inv_n);
    {
        const int tid = fftb::fresh_tid();
#pragma unroll
        for (int i = 0; i < E; ++i) {
            const int t = tid + i * T;
            dx_even[t] = v[i].x;
            dh_even[t] = v[i].y;
            v[i] = keep[t];
        }
    }
    twist<M, E, false>(v, tw);
    backward_pair<M, E, true>(v, s, tw, Hrow, inv_n);
    twist<M, E, true>(v, tw);
    const int tid = fftb::fresh_tid();
#pragma unroll
    for (int i = 0; i < E; ++i) { // rows of M: the padding takes values nobody reads
        const int t = tid + i * T;
        dxt[row + t] = dx_even[t] + v[i].x;
        part[(d * B + b) * M + t] = dh_even[t] + v[i].y;
    }
}

// dw[d, k] = sum_b part[d, b, K-1-k], b in order.
static __global__ void reduce_partials_kernel(int64_t total, float* dw, const float* part, int B, int K, int M) {
    MG_GRID_LOOP(i, total) {
        const int64_t d = i / K, k = i % K;
        float sum = 0.0f;
        for (int b = 0; b < B; ++b) sum += part[(d * B + b) * M + (K - 1 - k)];
        dw[i] = sum;
    }
}

// ---- launchers (the fused path's and the lab's one way to start these kernels) -------------------
// SPLIT: N = 2M points by two M-point transforms (above); needs L <= M and K <= M.

// tw (N) then Hh (D, N/2+1) for the kernel w (D, K).
template <int N, int E, int MINB, bool SPLIT>
void launch_spectrum(float2* Hh, float2* tw, const float* w, int64_t D, int64_t K) {
    constexpr int M = fft_m<N, SPLIT>();
    launch_linear(twiddle_kernel, N, tw, SPLIT);
    const size_t smem = size_t(fftb::smem_points(M)) * sizeof(float2);
    allow_dynamic_smem(fused_spectrum_kernel<N, E, MINB, SPLIT>, smem);
    fused_spectrum_kernel<N, E, MINB, SPLIT><<<unsigned((D + 1) / 2), M / E, smem>>>(Hh, w, tw, int(K), D);
    CUDA_CHECK_LAUNCH();
}

// yt = the rows xt convolved (yt may alias xt; rows as described above).
template <int N, int E, int MINB, bool SPLIT>
void launch_forward(float* yt, const float* xt, const float2* Hh, const float2* tw, int64_t B, int64_t L, int64_t D) {
    constexpr int M = fft_m<N, SPLIT>();
    constexpr size_t smem = forward_smem_bytes<N, SPLIT>();
    allow_dynamic_smem(fused_forward_kernel<N, E, MINB, SPLIT>, smem);
    const int64_t pairs = ((SPLIT ? split_rows(B) : B) + 1) / 2;
    fused_forward_kernel<N, E, MINB, SPLIT><<<unsigned(pairs * D), M / E, smem>>>(yt, xt, Hh, tw, int(B), int(L));
    CUDA_CHECK_LAUNCH();
}

// Floats of scratch the split backward needs for its per-row partial sums (0 unsplit).
template <int N, int E, bool SPLIT> constexpr int64_t backward_partials(int64_t B, int64_t D) {
    return SPLIT ? D * B * (N / 2) + D * B * (N / 2 / E) : 0;
}

// dxt (may alias gt), dw, dbias (may be null) from the rows gt (dy) and xt; part: the scratch of
// backward_partials floats.
template <int N, int E, int MINB, bool SPLIT>
void launch_backward(float* dxt, float* dw, float* dbias, const float* gt, const float* xt, const float2* Hh,
                     const float2* tw, const float* bias, int64_t B, int64_t L, int64_t D, int64_t K, bool silu,
                     float* part) {
    if constexpr (SPLIT) {
        constexpr int M = N / 2;
        const size_t smem = (size_t(fftb::smem_points(M)) + M) * sizeof(float2) + 2 * size_t(M) * sizeof(float);
        float* part_bias = part + D * B * M;
        auto launch = [&](auto kernel) {
            allow_dynamic_smem(kernel, smem);
            kernel<<<unsigned(D * B), M / E, smem>>>(dxt, part, part_bias, gt, xt, Hh, tw, bias, int(B), int(L));
            CUDA_CHECK_LAUNCH();
        };
        if (silu) launch(fused_backward_split_kernel<N, E, MINB, true>);
        else launch(fused_backward_split_kernel<N, E, MINB, false>);
        launch_linear(reduce_partials_kernel, D * K, dw, part, int(B), int(K), M);
        if (dbias) reduce_rows<float>(dbias, nullptr, part_bias, D, B * (M / E), ReduceOp::sum);
    } else {
        const size_t smem = size_t(fftb::smem_points(N)) * sizeof(float2) + size_t(K) * sizeof(float);
        auto launch = [&](auto kernel) {
            allow_dynamic_smem(kernel, smem);
            kernel<<<unsigned(D), N / E, smem>>>(dxt, dw, dbias, gt, xt, Hh, tw, bias, int(B), int(L), int(K));
            CUDA_CHECK_LAUNCH();
        };
        if (silu) launch(fused_backward_kernel<N, E, MINB, true>);
        else launch(fused_backward_kernel<N, E, MINB, false>);
    }
}

} // namespace mg::cuda::fftconv
