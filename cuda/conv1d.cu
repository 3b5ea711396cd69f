// cuda/conv1d.cu: causal depthwise conv1d, channels-last (B, L, D), any kernel width K.
//
// Tiling. A block of kTileD x kRowsY = 32 x 8 threads owns a tile of kTileL = 64 time steps by
// kTileD = 32 channels of one batch row (grid x: B * ceil(L / 64) tiles, grid y: channel tiles).
// Lane = channel, so every global load and store of a warp is one coalesced row segment along D
// (128 bytes in f32). The block first stages the x window it needs (the tile plus the K-1 step
// halo before it) in shared memory, so each x is read from global memory once per tile; each
// thread then computes 8 outputs (rows ty, ty+8, ...) of its channel from shared memory.
// Long kernels are processed in chunks of kChunkK taps (the window holds 64 + 31 rows), so any K
// works with a fixed 16 KB (f32) / 32 KB (f64) of shared memory.
//
// K <= 4 with whole 16-byte vectors of channels (the Mamba short conv) takes the streaming kernels
// further down instead: registers, not shared memory, and 16 bytes a lane.
//
// Backward. K <= kFusedMaxK (the Mamba short conv, K = 4): one fused kernel per tile stages x
// (tile + 2(K-1) halo) and dy (tile + K-1), recomputes pre = conv(x) + bias in shared memory to
// form gp = dy * dsilu(pre) (nothing saved from the forward), then writes dx (a correlation of gp
// with the kernel) and the tile's partial sums of dweight/dbias. Larger K: the window kernel
// computes gp into a scratch buffer (silu only), then dx (the window kernel in reverse), then a
// partials kernel for dweight/dbias over groups of tiles. Either way a last kernel adds the
// partials in a fixed order: deterministic, no atomics.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "cuda/conv1d.h"
#include "cuda/launch.h"
#include "common/conv1d.h"

namespace mg::cuda {

namespace {

constexpr int kTileL = 64;    // time steps per tile
constexpr int kTileD = 32;    // channels per tile = threadIdx.x
constexpr int kRowsY = 8;     // threadIdx.y
constexpr int kPer = kTileL / kRowsY; // outputs per thread
constexpr int kChunkK = 32;   // taps per shared-memory pass of the window kernel
constexpr int kFusedMaxK = 8; // the fused backward handles K up to this
constexpr int64_t kMaxGroups = 16; // tile groups (partials) of the unfused weight gradient

enum class Window : int {
    forward,      // out[t] = sum_k w[k] in[t-(K-1)+k] + bias
    forward_silu, // silu of the above
    grad_silu,    // out[t] = dy[t] * dsilu(sum_k w[k] in[t-(K-1)+k] + bias)
    reverse,      // out[s] = sum_k w[k] in[s+(K-1)-k]   (dx from gp; no bias)
};

// Stages `rows` time steps of one channel column into sh[r][lane] = col[(t_first + r) D] (0 outside
// [0, L) and for lanes past D); col points at [b, 0, d]. Every load of a thread is issued before
// any store (a fixed, unrolled trip count), so each warp keeps up to kMaxRows / 8 coalesced row
// loads in flight instead of waiting on them one by one.
template <int kMaxRows, typename T>
__device__ __forceinline__ void stage_rows(T (*sh)[kTileD], const T* col, int64_t D, int64_t t_first, int rows,
                                           int64_t L, bool dok) {
    constexpr int kIters = (kMaxRows + kRowsY - 1) / kRowsY;
    T v[kIters];
#pragma unroll
    for (int j = 0; j < kIters; ++j) {
        int r = threadIdx.y + j * kRowsY;
        int64_t t = t_first + r;
        v[j] = (dok && r < rows && t >= 0 && t < L) ? col[t * D] : T(0);
    }
#pragma unroll
    for (int j = 0; j < kIters; ++j) {
        int r = threadIdx.y + j * kRowsY;
        if (r < rows) sh[r][threadIdx.x] = v[j];
    }
}

// One tile of a windowed correlation: out[t] = sum_c w'(c) in[t + base + c], c = 0..K-1, with
// base = -(K-1), w'(c) = w[c] (causal) or base = 0, w'(c) = w[K-1-c] (reverse).
template <typename T>
__global__ void __launch_bounds__(kTileD * kRowsY)
conv_window_kernel(T* out, const T* in, const T* w, const T* bias, const T* dy, int64_t L, int64_t D, int K,
                   Window mode) {
    __shared__ T win[kTileL + kChunkK - 1][kTileD];
    __shared__ T ws[kChunkK][kTileD];
    const int lane = threadIdx.x, ty = threadIdx.y;
    const int64_t nL = ceil_div(L, kTileL);
    const int64_t b = blockIdx.x / nL, t0 = (blockIdx.x % nL) * kTileL;
    const int64_t d = int64_t(blockIdx.y) * kTileD + lane;
    const bool dok = d < D;
    const bool rev = mode == Window::reverse;
    const int64_t base = rev ? 0 : -(K - 1);
    const T* col = in + b * L * D + d; // dereferenced only when dok
    T acc[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) acc[i] = T(0);
    for (int c0 = 0; c0 < K; c0 += kChunkK) {
        const int kc = min(kChunkK, K - c0);
        __syncthreads(); // the previous chunk is consumed
        stage_rows<kTileL + kChunkK - 1>(win, col, D, t0 + base + c0, kTileL + kc - 1, L, dok);
        for (int c = ty; c < kc; c += kRowsY) {
            int tap = rev ? K - 1 - (c0 + c) : c0 + c;
            ws[c][lane] = dok ? w[d * K + tap] : T(0);
        }
        __syncthreads();
        for (int c = 0; c < kc; ++c) {
            T wc = ws[c][lane];
#pragma unroll
            for (int i = 0; i < kPer; ++i) acc[i] += wc * win[ty + i * kRowsY + c][lane];
        }
    }
    if (!dok) return;
    const T bv = bias ? bias[d] : T(0);
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
        int64_t t = t0 + ty + i * kRowsY;
        if (t >= L) continue;
        int64_t idx = (b * L + t) * D + d;
        T v = acc[i] + bv;
        switch (mode) {
        case Window::forward_silu: out[idx] = conv_silu(v); break;
        case Window::grad_silu: out[idx] = dy[idx] * conv_dsilu(v); break;
        default: out[idx] = v; break;
        }
    }
}

// The fused backward for K <= kFusedMaxK; writes dx for its tile and partial[tile][0..K][d]
// (rows 0..K-1: dweight taps, row K: dbias) for tile = blockIdx.x.
template <typename T>
__global__ void __launch_bounds__(kTileD * kRowsY)
conv_backward_fused_kernel(T* dx, T* partial, const T* dy, const T* x, const T* w, const T* bias, int64_t L,
                           int64_t D, int K, bool silu) {
    constexpr int kXRows = kTileL + 2 * (kFusedMaxK - 1); // x at s0-(K-1) ... s0+kTileL+K-2
    constexpr int kGRows = kTileL + kFusedMaxK - 1;       // gp at s0 ... s0+kTileL+K-2
    __shared__ T xs[kXRows][kTileD];
    __shared__ T gs[kGRows][kTileD];
    __shared__ T ws[kFusedMaxK][kTileD];
    const int lane = threadIdx.x, ty = threadIdx.y;
    const int64_t nL = ceil_div(L, kTileL);
    const int64_t b = blockIdx.x / nL, s0 = (blockIdx.x % nL) * kTileL;
    const int64_t d = int64_t(blockIdx.y) * kTileD + lane;
    const bool dok = d < D;
    const int64_t row0 = b * L; // first (b, t) row of this batch entry

    stage_rows<kXRows>(xs, x + row0 * D + d, D, s0 - (K - 1), kTileL + 2 * (K - 1), L, dok);
    stage_rows<kGRows>(gs, dy + row0 * D + d, D, s0, kTileL + K - 1, L, dok);
    for (int k = ty; k < K; k += kRowsY) ws[k][lane] = dok ? w[d * K + k] : T(0);
    __syncthreads();

    // gp = dy * dsilu(pre), pre = sum_k w[k] x[u-(K-1)+k] + bias (x row of time u-(K-1)+k is j+k).
    if (silu) {
        const T bv = (bias && dok) ? bias[d] : T(0);
        for (int j = ty; j < kTileL + K - 1; j += kRowsY) {
            if (s0 + j >= L) continue; // gp stays 0 past the end
            T pre = T(0);
            for (int k = 0; k < K; ++k) pre += ws[k][lane] * xs[j + k][lane];
            gs[j][lane] *= conv_dsilu(pre + bv);
        }
        __syncthreads();
    }

    // dx[s] = sum_k w[k] gp[s+(K-1)-k]
#pragma unroll
    for (int m = 0; m < kPer; ++m) {
        int i = ty + m * kRowsY;
        T v = T(0);
        for (int k = 0; k < K; ++k) v += ws[k][lane] * gs[i + K - 1 - k][lane];
        int64_t s = s0 + i;
        if (dok && s < L) dx[(row0 + s) * D + d] = v;
    }

    // This tile's dw[k] = sum_s gp[s] x[s-(K-1)+k] (x row i+k) and dbias = sum_s gp[s]: each
    // thread sums rows ty, ty+8, ...; then the 8 row groups are added in order.
    T p[kFusedMaxK], pb = T(0);
#pragma unroll
    for (int k = 0; k < kFusedMaxK; ++k) p[k] = T(0);
#pragma unroll
    for (int m = 0; m < kPer; ++m) {
        int i = ty + m * kRowsY;
        T gi = gs[i][lane];
        pb += gi;
#pragma unroll
        for (int k = 0; k < kFusedMaxK; ++k)
            if (k < K) p[k] += gi * xs[i + k][lane];
    }
    __syncthreads(); // xs is reused below
    static_assert(kRowsY * (kFusedMaxK + 1) <= kXRows, "the reduction buffer must fit in xs");
    T (*red)[kFusedMaxK + 1][kTileD] = reinterpret_cast<T (*)[kFusedMaxK + 1][kTileD]>(&xs[0][0]);
#pragma unroll
    for (int k = 0; k < kFusedMaxK; ++k)
        if (k < K) red[ty][k][lane] = p[k];
    red[ty][K][lane] = pb;
    __syncthreads();
    if (!dok) return;
    T* out = partial + int64_t(blockIdx.x) * (K + 1) * D;
    for (int k = ty; k <= K; k += kRowsY) {
        T s = T(0);
        for (int y = 0; y < kRowsY; ++y) s += red[y][k][lane];
        out[int64_t(k) * D + d] = s;
    }
}

// Unfused weight gradient for any K: block (group, channel tile) sums over its group of tiles of
// every batch entry; partial[group][k][d] = sum gp[b,t,d] x[b,t-(K-1)+k,d], row K = sum gp.
template <typename T>
__global__ void __launch_bounds__(kTileD * kRowsY)
conv_dweight_partial_kernel(T* partial, const T* g, const T* x, int64_t B, int64_t L, int64_t D, int K,
                            int64_t tiles_per_group) {
    constexpr int kTapsPer = kChunkK / kRowsY; // taps ty, ty+8, ... of the chunk
    __shared__ T gs[kTileL][kTileD];
    __shared__ T xs[kTileL + kChunkK - 1][kTileD];
    const int lane = threadIdx.x, ty = threadIdx.y;
    const int64_t nL = ceil_div(L, kTileL);
    const int64_t tile_begin = int64_t(blockIdx.x) * tiles_per_group;
    const int64_t tile_end = min(nL, tile_begin + tiles_per_group);
    const int64_t d = int64_t(blockIdx.y) * kTileD + lane;
    const bool dok = d < D;
    T* out = partial + int64_t(blockIdx.x) * (K + 1) * D;
    T bsum = T(0);
    for (int c0 = 0; c0 < K; c0 += kChunkK) {
        const int kc = min(kChunkK, K - c0);
        T acc[kTapsPer];
#pragma unroll
        for (int j = 0; j < kTapsPer; ++j) acc[j] = T(0);
        for (int64_t b = 0; b < B; ++b) {
            for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
                const int64_t t0 = tile * kTileL;
                __syncthreads();
                stage_rows<kTileL>(gs, g + b * L * D + d, D, t0, kTileL, L, dok);
                stage_rows<kTileL + kChunkK - 1>(xs, x + b * L * D + d, D, t0 - (K - 1) + c0, kTileL + kc - 1, L, dok);
                __syncthreads();
                for (int i = 0; i < kTileL; ++i) {
                    T gi = gs[i][lane];
#pragma unroll
                    for (int j = 0; j < kTapsPer; ++j) acc[j] += gi * xs[i + ty + j * kRowsY][lane];
                }
                if (c0 == 0 && ty == 0)
                    for (int i = 0; i < kTileL; ++i) bsum += gs[i][lane];
            }
        }
        if (dok) {
#pragma unroll
            for (int j = 0; j < kTapsPer; ++j) {
                int c = ty + j * kRowsY;
                if (c < kc) out[int64_t(c0 + c) * D + d] = acc[j];
            }
        }
    }
    if (dok && ty == 0) out[int64_t(K) * D + d] = bsum;
}

// dweight[d,k] = sum_p partial[p][k][d]; dbias[d] = sum_p partial[p][K][d]. Thread ty adds
// p = ty, ty+8, ... in order, then the 8 sums are added in order: a fixed order for every run.
template <typename T>
__global__ void __launch_bounds__(kTileD * kRowsY)
conv_reduce_partials_kernel(T* dweight, T* dbias, const T* partial, int64_t P, int64_t D, int K) {
    __shared__ T red[kRowsY][kTileD];
    const int lane = threadIdx.x, ty = threadIdx.y;
    const int64_t d = int64_t(blockIdx.x) * kTileD + lane;
    const bool dok = d < D;
    for (int k = blockIdx.y; k <= K; k += gridDim.y) {
        T s = T(0);
        if (dok) {
#pragma unroll 8
            for (int64_t p = ty; p < P; p += kRowsY) s += partial[(p * (K + 1) + k) * D + d];
        }
        __syncthreads(); // red of the previous k is consumed
        red[ty][lane] = s;
        __syncthreads();
        if (ty == 0 && dok) {
            T tot = T(0);
            for (int y = 0; y < kRowsY; ++y) tot += red[y][lane];
            if (k < K) dweight[d * K + k] = tot;
            else if (dbias) dbias[d] = tot;
        }
    }
}

// ---- the streaming kernels: K <= kVecMaxK, D a multiple of kVec<T>, 16-byte aligned rows ----
// The short conv (K = 4) is pure data movement: 2 loads and 1 store per element forward, 2 loads
// (x, dy) and 1 store (dx) backward, against a handful of FMAs. The tiled kernels above move it
// through shared memory 4 bytes a lane; these keep it in registers and move 16 bytes a lane.
// Thread (threadIdx.x, y) owns kVec adjacent channels (one 16-byte vector: 4 floats or 2 doubles)
// and kSeg consecutive steps of one batch row; a warp's 32 vectors are one 512-byte row segment.
// The thread walks its steps in order, holding the last K inputs (and, backward, the last K values
// of gp) in a register ring, so each input row is loaded once per thread and the K-1 halo rows a
// second time (by the neighbouring segment, from L2). A block is 32 vector columns x kSegs
// segments: 32·kVec channels x kSegs·kSeg steps; grid x runs over (batch row, block of steps),
// grid y over channel blocks. The sums run in the tiled kernels' order (taps k ascending, bias
// last), so the forward's values and dx are bit-identical to theirs; dweight and dbias add in
// another fixed order. (A version that loaded all of a thread's rows before computing, 19-25
// loads in flight, ran slower at 126-170 registers: see bench/RESULTS.md.)
template <typename T> constexpr int kVec = 16 / int(sizeof(T));
constexpr int kSeg = 16;      // steps per thread
constexpr int kSegs = 8;      // threadIdx.y: segments per block
constexpr int kVecMaxK = 4;   // the streaming kernels' widest kernel
constexpr int kVecSteps = kSeg * kSegs;

template <typename T> struct alignas(16) VecT {
    T v[kVec<T>];
};
template <typename T> __device__ __forceinline__ VecT<T> load_vec(const T* p) {
    return *reinterpret_cast<const VecT<T>*>(p);
}
template <typename T> __device__ __forceinline__ VecT<T> zero_vec() {
    VecT<T> r;
#pragma unroll
    for (int c = 0; c < kVec<T>; ++c) r.v[c] = T(0);
    return r;
}

// The thread's taps and biases in registers: wr[c][k] = w[d0+c, k], bv[c] = bias[d0+c] (0 without).
template <typename T, int K>
__device__ __forceinline__ void load_taps(T (&wr)[kVec<T>][K], T (&bv)[kVec<T>], const T* w, const T* bias,
                                          int64_t d0) {
#pragma unroll
    for (int c = 0; c < kVec<T>; ++c) {
#pragma unroll
        for (int k = 0; k < K; ++k) wr[c][k] = w[(d0 + c) * K + k];
        bv[c] = bias ? bias[d0 + c] : T(0);
    }
}

// y[t] = [silu](sum_k w[k] x[t-(K-1)+k] + bias) for the thread's kSeg steps.
template <typename T, int K>
__global__ void __launch_bounds__(32 * kSegs)
conv_fwd_vec_kernel(T* y, const T* x, const T* w, const T* bias, int64_t L, int64_t D, bool silu) {
    constexpr int V = kVec<T>;
    const int64_t nT = ceil_div(L, kVecSteps);
    const int64_t b = blockIdx.x / nT;
    const int64_t s0 = (blockIdx.x % nT) * kVecSteps + int64_t(threadIdx.y) * kSeg;
    const int64_t d0 = (int64_t(blockIdx.y) * 32 + threadIdx.x) * V;
    if (d0 >= D || s0 >= L) return;
    T wr[V][K], bv[V];
    load_taps<T, K>(wr, bv, w, bias, d0);
    const T* xb = x + b * L * D + d0;
    T* yb = y + b * L * D + d0;
    VecT<T> ring[K]; // ring[j] = x[t - (K-1) + j] when step t is computed
#pragma unroll
    for (int j = 0; j < K - 1; ++j) {
        int64_t t = s0 - (K - 1) + j;
        ring[j + 1] = t >= 0 ? load_vec(xb + t * D) : zero_vec<T>();
    }
#pragma unroll
    for (int i = 0; i < kSeg; ++i) {
        const int64_t t = s0 + i;
        if (t >= L) break;
#pragma unroll
        for (int j = 0; j < K - 1; ++j) ring[j] = ring[j + 1];
        ring[K - 1] = load_vec(xb + t * D);
        VecT<T> out;
#pragma unroll
        for (int c = 0; c < V; ++c) {
            T acc = T(0);
#pragma unroll
            for (int k = 0; k < K; ++k) acc += wr[c][k] * ring[k].v[c];
            T v = acc + bv[c];
            out.v[c] = silu ? conv_silu(v) : v;
        }
        *reinterpret_cast<VecT<T>*>(yb + t * D) = out;
    }
}

// The backward of the kernel above: gp[t] = dy[t] dsilu(pre[t]) (pre recomputed from x), dx[s] =
// sum_k w[k] gp[s+(K-1)-k], and the block's partial sums partial[blockIdx.x][k][d] of dweight (k < K)
// and dbias (k = K) over its kSegs·kSeg steps, added over threadIdx.y in order (deterministic).
// The thread streams t over [s0, s0 + kSeg + K - 1): gp[t] is formed when x[t] and dy[t] arrive
// (it needs x[t-(K-1)..t], the x ring), enters the weight sums when t is one of the thread's own
// steps, and completes dx[t-(K-1)], which needs gp[t-(K-1)..t] (the gp ring).
template <typename T, int K>
__global__ void __launch_bounds__(32 * kSegs)
conv_bwd_vec_kernel(T* dx, T* partial, const T* dy, const T* x, const T* w, const T* bias, int64_t L, int64_t D,
                    bool silu) {
    constexpr int V = kVec<T>;
    __shared__ VecT<T> red[kSegs][K + 1][32];
    const int64_t nT = ceil_div(L, kVecSteps);
    const int64_t b = blockIdx.x / nT;
    const int64_t s0 = (blockIdx.x % nT) * kVecSteps + int64_t(threadIdx.y) * kSeg;
    const int64_t d0 = (int64_t(blockIdx.y) * 32 + threadIdx.x) * V;
    const bool active = d0 < D && s0 < L;
    VecT<T> pw[K + 1]; // this thread's sums: pw[k] for dweight tap k, pw[K] for dbias
#pragma unroll
    for (int k = 0; k <= K; ++k) pw[k] = zero_vec<T>();
    if (active) {
        T wr[V][K], bv[V];
        load_taps<T, K>(wr, bv, w, bias, d0);
        const T* xb = x + b * L * D + d0;
        const T* dyb = dy + b * L * D + d0;
        T* dxb = dx + b * L * D + d0;
        VecT<T> xr[K], gr[K]; // xr[j] = x[t-(K-1)+j], gr[j] = gp[t-(K-1)+j] once step t is done
#pragma unroll
        for (int j = 0; j < K - 1; ++j) {
            int64_t t = s0 - (K - 1) + j;
            xr[j + 1] = t >= 0 ? load_vec(xb + t * D) : zero_vec<T>();
            gr[j + 1] = zero_vec<T>(); // gp before s0 is never used: dx[s] needs gp[s..s+K-1]
        }
#pragma unroll
        for (int i = 0; i < kSeg + K - 1; ++i) {
            const int64_t t = s0 + i;
#pragma unroll
            for (int j = 0; j < K - 1; ++j) {
                xr[j] = xr[j + 1];
                gr[j] = gr[j + 1];
            }
            const bool in = t < L;
            xr[K - 1] = in ? load_vec(xb + t * D) : zero_vec<T>();
            VecT<T> g = in ? load_vec(dyb + t * D) : zero_vec<T>();
            if (silu && in) {
#pragma unroll
                for (int c = 0; c < V; ++c) {
                    T pre = T(0);
#pragma unroll
                    for (int k = 0; k < K; ++k) pre += wr[c][k] * xr[k].v[c];
                    g.v[c] *= conv_dsilu(pre + bv[c]);
                }
            }
            gr[K - 1] = g;
            if (i < kSeg && in) { // one of this thread's steps: the weight sums
#pragma unroll
                for (int c = 0; c < V; ++c) {
#pragma unroll
                    for (int k = 0; k < K; ++k) pw[k].v[c] += g.v[c] * xr[k].v[c];
                    pw[K].v[c] += g.v[c];
                }
            }
            const int64_t s = t - (K - 1); // dx[s] is complete
            if (i >= K - 1 && s < L) {
                VecT<T> o;
#pragma unroll
                for (int c = 0; c < V; ++c) {
                    T v = T(0);
#pragma unroll
                    for (int k = 0; k < K; ++k) v += wr[c][k] * gr[K - 1 - k].v[c];
                    o.v[c] = v;
                }
                *reinterpret_cast<VecT<T>*>(dxb + s * D) = o;
            }
        }
    }
#pragma unroll
    for (int k = 0; k <= K; ++k) red[threadIdx.y][k][threadIdx.x] = pw[k];
    __syncthreads();
    if (d0 >= D) return;
    T* out = partial + int64_t(blockIdx.x) * (K + 1) * D + d0;
    for (int k = threadIdx.y; k <= K; k += kSegs) {
        VecT<T> sum = red[0][k][threadIdx.x];
#pragma unroll
        for (int y = 1; y < kSegs; ++y)
#pragma unroll
            for (int c = 0; c < V; ++c) sum.v[c] += red[y][k][threadIdx.x].v[c];
        *reinterpret_cast<VecT<T>*>(out + int64_t(k) * D) = sum;
    }
}

// Whether the streaming kernels take this call: K small, whole vectors of channels, and every
// row pointer 16-byte aligned (a tensor at an odd storage offset is not).
template <typename T> bool vec_path(int64_t D, int64_t K, std::initializer_list<const void*> ptrs) {
    if (K > kVecMaxK || D % kVec<T> != 0) return false;
    for (const void* p : ptrs)
        if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
    return true;
}

dim3 vec_grid(int64_t B, int64_t L, int64_t D, int vec) {
    int64_t nD = ceil_div(D, 32 * int64_t(vec));
    if (nD > 65535) throw Error("causal_conv1d: D = " + std::to_string(D) + " channels exceed the CUDA grid limit");
    return dim3(unsigned(B * ceil_div(L, kVecSteps)), unsigned(nD));
}

// f(std::integral_constant<int, K>) for K = 1 .. kVecMaxK
template <typename F> void with_small_k(int64_t K, F&& f) {
    static_assert(kVecMaxK == 4);
    switch (K) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    default: f(std::integral_constant<int, 4>{}); break;
    }
}

template <typename T>
__global__ void conv_update_kernel(int64_t n, T* y, T* state, const T* x, const T* w, const T* bias, int64_t D,
                                   int K, bool silu) {
    MG_GRID_LOOP(i, n) {
        int64_t d = i % D;
        y[i] = conv_step_channel(state + i * (K - 1), x[i], w + d * K, bias ? bias[d] : T(0), K, silu);
    }
}

// Grid of tiles: x = B * ceil(L / kTileL) (fits 2^31 - 1 for any realistic B, L), y = channel tiles.
dim3 tile_grid(int64_t B, int64_t L, int64_t D) {
    int64_t nD = ceil_div(D, kTileD);
    if (nD > 65535) throw Error("causal_conv1d: D = " + std::to_string(D) + " channels exceed the CUDA grid limit");
    return dim3(unsigned(B * ceil_div(L, kTileL)), unsigned(nD));
}

int64_t weight_groups(int64_t L) { return std::min<int64_t>(ceil_div(L, kTileL), kMaxGroups); }

template <typename T>
void launch_window(T* out, const T* in, const T* w, const T* bias, const T* dy, int64_t B, int64_t L, int64_t D,
                   int64_t K, Window mode) {
    conv_window_kernel<T><<<tile_grid(B, L, D), dim3(kTileD, kRowsY)>>>(out, in, w, bias, dy, L, D, int(K), mode);
    CUDA_CHECK_LAUNCH();
}

} // namespace

template <typename T>
void causal_conv1d_forward(T* y, const T* x, const T* weight, const T* bias, int64_t B, int64_t L, int64_t D,
                           int64_t K, bool silu) {
    if (B * L * D == 0) return;
    if (vec_path<T>(D, K, {y, x})) {
        with_small_k(K, [&](auto k) {
            conv_fwd_vec_kernel<T, k()><<<vec_grid(B, L, D, kVec<T>), dim3(32, kSegs)>>>(y, x, weight, bias, L, D, silu);
        });
        CUDA_CHECK_LAUNCH();
        return;
    }
    launch_window<T>(y, x, weight, bias, nullptr, B, L, D, K, silu ? Window::forward_silu : Window::forward);
}

int64_t causal_conv1d_backward_work(int64_t B, int64_t L, int64_t D, int64_t K, bool silu) {
    // partials of either fused backward: one row per (batch row, block of kTileL or kVecSteps steps)
    if (K <= kFusedMaxK) return B * ceil_div(L, std::min<int64_t>(kTileL, kVecSteps)) * (K + 1) * D;
    return (silu ? B * L * D : 0) + weight_groups(L) * (K + 1) * D;
}

template <typename T>
void causal_conv1d_backward(T* dx, T* dweight, T* dbias, T* work, const T* dy, const T* x, const T* weight,
                            const T* bias, int64_t B, int64_t L, int64_t D, int64_t K, bool silu) {
    if (B * L * D == 0) return;
    const dim3 block(kTileD, kRowsY);
    const int64_t nL = ceil_div(L, kTileL);
    T* partial = work;
    int64_t P = 0;
    if (vec_path<T>(D, K, {dx, dy, x, work})) {
        with_small_k(K, [&](auto k) {
            conv_bwd_vec_kernel<T, k()><<<vec_grid(B, L, D, kVec<T>), dim3(32, kSegs)>>>(dx, partial, dy, x, weight,
                                                                                         bias, L, D, silu);
        });
        CUDA_CHECK_LAUNCH();
        P = B * ceil_div(L, kVecSteps);
    } else if (K <= kFusedMaxK) {
        conv_backward_fused_kernel<T><<<tile_grid(B, L, D), block>>>(dx, partial, dy, x, weight, bias, L, D,
                                                                     int(K), silu);
        CUDA_CHECK_LAUNCH();
        P = B * nL;
    } else {
        const T* g = dy;
        if (silu) {
            T* gp = work;
            partial = work + B * L * D;
            launch_window<T>(gp, x, weight, bias, dy, B, L, D, K, Window::grad_silu);
            g = gp;
        }
        launch_window<T>(dx, g, weight, nullptr, nullptr, B, L, D, K, Window::reverse);
        int64_t tpg = ceil_div(nL, weight_groups(L));
        P = ceil_div(nL, tpg); // <= weight_groups(L), every group non-empty
        conv_dweight_partial_kernel<T><<<dim3(unsigned(P), unsigned(ceil_div(D, kTileD))), block>>>(
            partial, g, x, B, L, D, int(K), tpg);
        CUDA_CHECK_LAUNCH();
    }
    dim3 rgrid(unsigned(ceil_div(D, kTileD)), unsigned(std::min<int64_t>(K + 1, 65535)));
    conv_reduce_partials_kernel<T><<<rgrid, block>>>(dweight, dbias, partial, P, D, int(K));
    CUDA_CHECK_LAUNCH();
}

template <typename T>
void causal_conv1d_update(T* y, T* conv_state, const T* x, const T* weight, const T* bias, int64_t B, int64_t D,
                          int64_t K, bool silu) {
    launch_linear(conv_update_kernel<T>, B * D, y, conv_state, x, weight, bias, D, int(K), silu);
}

#define MG_INST(T)                                                                                          \
    template void causal_conv1d_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t,      \
                                           int64_t, bool);                                                  \
    template void causal_conv1d_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, int64_t,  \
                                            int64_t, int64_t, int64_t, bool);                               \
    template void causal_conv1d_update<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t,    \
                                          bool);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
