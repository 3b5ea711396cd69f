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
// Backward. K <= kFusedMaxK (the Mamba short conv, K = 4): one fused kernel per tile stages x
// (tile + 2(K-1) halo) and dy (tile + K-1), recomputes pre = conv(x) + bias in shared memory to
// form gp = dy * dsilu(pre) (nothing saved from the forward), then writes dx (a correlation of gp
// with the kernel) and the tile's partial sums of dweight/dbias. Larger K: the window kernel
// computes gp into a scratch buffer (silu only), then dx (the window kernel in reverse), then a
// partials kernel for dweight/dbias over groups of tiles. Either way a last kernel adds the
// partials in a fixed order: deterministic, no atomics.
#include <algorithm>

#include "cuda/conv1d.h"
#include "cuda/launch.h"
#include "ops/conv1d.h"

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
    launch_window<T>(y, x, weight, bias, nullptr, B, L, D, K, silu ? Window::forward_silu : Window::forward);
}

int64_t causal_conv1d_backward_work(int64_t B, int64_t L, int64_t D, int64_t K, bool silu) {
    if (K <= kFusedMaxK) return B * ceil_div(L, kTileL) * (K + 1) * D;
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
    if (K <= kFusedMaxK) {
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
