// cuda/attention.cu: fused causal attention, forward and backward (flash attention, fp32/fp64 on
// the CUDA cores, no tensor cores). See ops/attention.h for the math.
//
// Two paths. f32 (the one that is timed) is register-tiled like an SGEMM; f64 (gradcheck only)
// keeps the simpler scalar kernels further down.
//
// f32 layout. A block of 128 threads works on tiles of 64 rows (queries or keys) kept in shared
// memory row-major, a 64 x Dh operand tile with row stride D + 4 (D = Dh rounded up to 16, 32, 64
// or 128, the columns past Dh zero) and a 64 x 64 block of probabilities with stride 68: strides
// of an odd number of float4s, so the float4 reads below are free of bank conflicts. The threads
// form an 8 x 16 grid, ty = tid / 16, tx = tid % 16; a half-warp is the 16 tx of one ty, and warp
// w holds ty = 2w, 2w + 1. Every product is one of two register-tiled forms:
//   - NT, C = A B^T over the head dim (S = Q K^T, dP = dO V^T): thread (ty, tx) owns the 8 x 4
//     block of rows ty + 8a, columns tx + 16b; per 4 steps of k it reads 8 float4 of A (2 rows
//     per warp: broadcast) and 4 float4 of B and does 128 FMAs.
//   - NN, C += A B over the 64 rows of a tile (O += P V, dV += P^T dO, dK += dS^T Q, dQ += dS K):
//     rows ty + 8a again, and DC = D / 16 head columns (`out_col`: tx * 4 + c, and 64 + tx * 4 + c
//     for D = 128; tx * DC + c for D < 64), read from B as one float4 (float2, float) per group;
//     8 float4 of A per 4 steps of k, 128 FMAs per 4 steps at D = 64.
//   A thread's rows of a probability block are written and read by its own warp (__syncwarp), so a
//   key tile costs two __syncthreads. A row's max across its 16 owners is a butterfly over the
//   half-warp (fixed order); the running sum stays per thread until the end. Softmax runs in base
//   2 (scores times scale log2 e, exp2f). Only tiles that cross the causal diagonal or the ends of
//   the sequences test the mask. Blocks with the most key tiles start first (a causal grid's work
//   per block grows with the query tile). Occupancy at D = 64: forward 68 KiB of shared memory and
//   <= 168 registers, 3 blocks (12 warps) per SM; dK/dV 102.5 KiB, dQ 85 KiB, <= 255 registers,
//   2 blocks per SM.
//
// Floors, B = 8, H = 12 (BH = 96), Dh = 64, L = 2048, causal forward on an H100 SXM:
//   FLOPs: 2 matmuls x 2 BH L^2 Dh / 2 = 51.5 GFLOP (53.2 GFLOP as computed: the 32 diagonal tiles
//     of each head's 528 are done whole). At the 8192^3 SGEMM rate (~51 TFLOP/s) 1.01 ms; at the
//     FMA peak (132 SMs x 128 lanes x 2 x 1.755 GHz = 59 TFLOP/s) 0.87 ms.
//   Bytes: q, k, v read and out written once, 4 x 96 x 2048 x 64 x 4 B = 201 MB, at 3.35 TB/s
//     0.06 ms (the re-reads of k, v by every query tile come from L2: 1.6 GB). exp2: 201 M at
//     16 per SM per clock, 0.05 ms. So compute-bound.
//   Prediction: per key tile a thread issues 4096 FFMA and ~850 other instructions (shared loads,
//     softmax, shuffles, tile loads): at most 83% FMA issue; expecting ~70% of the FMA peak,
//     ~41 TFLOP/s: forward ~1.3 ms (SDPA memory-efficient fp32: 1.76 ms). Backward: 7 products
//     (dK/dV kernel: S, dP, dV, dK; dQ kernel: S, dP, dQ) = 186 GFLOP at ~40 TFLOP/s ~4.7 ms;
//     forward + backward ~6.0 ms (SDPA 6.1 ms).
//
// Kernels (both paths).
//   forward: one block per (bh, query tile); keys in tiles, online softmax (running max m,
//     running sum l, the unnormalised output in registers); writes out and lse.
//   backward: D_i = dout_i . out_i (a warp per row); then dk, dv with one block per (bh, key
//     tile) walking the query tiles that see it, and dq with one block per (bh, query tile)
//     walking its key tiles. Both recompute P_ij = exp(S_ij - lse_i); every output element has
//     one owner, so there are no atomics and the gradients are bit-identical run to run.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "cuda/attention.h"
#include "cuda/launch.h"
#include "cuda/warp.h"

namespace mg::cuda {

namespace {

// ---- shared by both paths -------------------------------------------------------------------

// Max and sum over the 16 lanes of a half-warp (all 32 lanes call; fixed order).
template <typename T> __device__ T half_warp_max(T v) {
#pragma unroll
    for (int off = 8; off > 0; off /= 2) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}
template <typename T> __device__ T half_warp_sum(T v) {
#pragma unroll
    for (int off = 8; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// Query i sees key j: j < Lk and, when causal, j <= i + shift (shift = Lk - Lq).
__device__ bool visible(int64_t i, int64_t j, int64_t Lk, int64_t shift, bool causal) {
    return j < Lk && (!causal || j <= i + shift);
}

// Keys [0, key_end) are seen by some query of the tile ending at query `last`.
__device__ int64_t key_end(int64_t last, int64_t Lk, int64_t shift, bool causal) {
    return causal ? (last + shift + 1 < Lk ? last + shift + 1 : Lk) : Lk;
}

// Every pair of (query tile [i0, i0 + rows), key tile [j0, j0 + rows)) is visible, queries and
// keys all inside their sequences: the tile needs no mask.
__device__ bool whole_tile(int64_t i0, int64_t j0, int rows, int64_t Lq, int64_t Lk, int64_t shift, bool causal) {
    return i0 + rows <= Lq && j0 + rows <= Lk && (!causal || j0 + rows - 1 <= i0 + shift);
}

// delta[r] = sum_d dout[r, d] out[r, d]: one warp per row, lanes in order then a butterfly.
template <typename T>
__global__ void attention_delta_kernel(T* delta, const T* dout, const T* out, int64_t rows, int Dh) {
    const int64_t r = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (r >= rows) return; // whole warps leave together
    T s = T(0);
    for (int d = lane; d < Dh; d += 32) s += dout[r * Dh + d] * out[r * Dh + d];
    s = warp_sum(s);
    if (lane == 0) delta[r] = s;
}

// ---- f32: register-tiled kernels ------------------------------------------------------------
namespace f32 {

constexpr int kThreads = 128;  // 8 x 16
constexpr int kRows = 64;      // rows of every tile, queries or keys
constexpr int TM = 8;          // rows per thread: ty + 8a
constexpr int TN = 4;          // score columns per thread: tx + 16b
constexpr int kLdP = kRows + 4; // row stride of a 64 x 64 probability block
template <int D> constexpr int ld_of() { return D + 4; } // row stride of a 64 x D operand tile
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

// Bytes of shared memory: `tiles` operand tiles of 64 x (D + 4), `blocks` 64 x 68 blocks of
// probabilities and `vectors` vectors of 64.
template <int D> constexpr size_t smem_bytes(int tiles, int blocks, int vectors) {
    return sizeof(float) * (size_t(tiles) * kRows * ld_of<D>() + size_t(blocks) * kRows * kLdP + size_t(vectors) * kRows);
}

__device__ __forceinline__ float lane4(const float4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// The head column of a thread's NN output column c (c < DC = D / 16): float4 groups tx * 4 (and
// 64 + tx * 4 for D = 128); for D < 64, tx * DC + c.
template <int DC> __device__ __forceinline__ int out_col(int tx, int c) {
    constexpr int W = DC < 4 ? DC : 4;
    return (c / W) * 16 * W + tx * W + c % W;
}

// Rows [r0, r0 + 64) of a (rows, Dh) matrix into a tile of stride D + 4; rows past `rows` and
// columns past Dh (up to D) are zero. `vec`: Dh % 4 == 0 and src 16-byte aligned (float4 reads).
template <int D>
__device__ __forceinline__ void load_rows(float* tile, const float* src, int64_t r0, int64_t rows, int Dh, bool vec) {
    constexpr int ld = ld_of<D>(), V4 = D / 4;
    if (vec) {
#pragma unroll 4
        for (int e = threadIdx.x; e < kRows * V4; e += kThreads) {
            const int r = e / V4, d = e % V4 * 4;
            float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
            if (r0 + r < rows && d < Dh) x = *reinterpret_cast<const float4*>(src + (r0 + r) * Dh + d);
            *reinterpret_cast<float4*>(tile + r * ld + d) = x;
        }
    } else {
        for (int e = threadIdx.x; e < kRows * D; e += kThreads) {
            const int r = e / D, d = e % D;
            tile[r * ld + d] = r0 + r < rows && d < Dh ? src[(r0 + r) * Dh + d] : 0.f;
        }
    }
}

// NT: c[a][b] = sum_{k < K} A[(ty + 8a) LDA + k] B[(tx + 16b) LDB + k]   (writes =)
template <int K, int LDA, int LDB>
__device__ __forceinline__ void mm_nt(float (&c)[TM][TN], const float* A, const float* B) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    A += ty * LDA;
    B += tx * LDB;
#pragma unroll
    for (int a = 0; a < TM; ++a)
#pragma unroll
        for (int b = 0; b < TN; ++b) c[a][b] = 0.f;
#pragma unroll
    for (int k = 0; k < K; k += 4) {
        float4 bv[TN];
#pragma unroll
        for (int b = 0; b < TN; ++b) bv[b] = *reinterpret_cast<const float4*>(B + 16 * b * LDB + k);
#pragma unroll
        for (int a = 0; a < TM; ++a) {
            const float4 av = *reinterpret_cast<const float4*>(A + 8 * a * LDA + k);
#pragma unroll
            for (int b = 0; b < TN; ++b) {
                c[a][b] = fmaf(av.x, bv[b].x, c[a][b]);
                c[a][b] = fmaf(av.y, bv[b].y, c[a][b]);
                c[a][b] = fmaf(av.z, bv[b].z, c[a][b]);
                c[a][b] = fmaf(av.w, bv[b].w, c[a][b]);
            }
        }
    }
}

// NN: c[a][c] += sum_{k < K} A[(ty + 8a) LDA + k] B[k LDB + out_col(tx, c)]   (adds +=)
template <int K, int DC, int LDA, int LDB>
__device__ __forceinline__ void mm_nn(float (&c)[TM][DC], const float* A, const float* B) {
    constexpr int W = DC < 4 ? DC : 4;
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    A += ty * LDA;
    B += tx * W;
#pragma unroll
    for (int k = 0; k < K; k += 4) {
        float4 av[TM];
#pragma unroll
        for (int a = 0; a < TM; ++a) av[a] = *reinterpret_cast<const float4*>(A + 8 * a * LDA + k);
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            const float* row = B + (k + kk) * LDB;
            float bv[DC];
#pragma unroll
            for (int h = 0; h < DC / W; ++h) {
                if constexpr (W == 4) {
                    const float4 x = *reinterpret_cast<const float4*>(row + 64 * h);
                    bv[4 * h] = x.x, bv[4 * h + 1] = x.y, bv[4 * h + 2] = x.z, bv[4 * h + 3] = x.w;
                } else if constexpr (W == 2) {
                    const float2 x = *reinterpret_cast<const float2*>(row);
                    bv[0] = x.x, bv[1] = x.y;
                } else {
                    bv[0] = row[0];
                }
            }
#pragma unroll
            for (int a = 0; a < TM; ++a)
#pragma unroll
                for (int j = 0; j < DC; ++j) c[a][j] = fmaf(lane4(av[a], kk), bv[j], c[a][j]);
        }
    }
}

// Rows [r0, r0 + 64) of a (rows, Dh) output from acc times `mul`: rows < `rows`, columns < Dh.
template <int DC>
__device__ void store_rows(float* dst, const float (&acc)[TM][DC], float mul, int64_t r0, int64_t rows, int Dh) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
    for (int a = 0; a < TM; ++a) {
        const int64_t r = r0 + ty + 8 * a;
        if (r >= rows) continue;
#pragma unroll
        for (int c = 0; c < DC; ++c) {
            const int d = out_col<DC>(tx, c);
            if (d < Dh) dst[r * Dh + d] = acc[a][c] * mul;
        }
    }
}

// Forward, one block per (bh, query tile [i0, i0 + 64)); thread (ty, tx) owns queries
// i = i0 + ty + 8a (a < 8). Per key tile [j0, j0 + 64), in registers:
//   s[a][b] = scale log2(e) q_i . k_j for keys j = j0 + tx + 16b (NT over sQ, sK; -inf where
//     query i does not see key j),
//   m_i' = max(m_i, max_j s_ij) (butterfly over the half-warp), alpha = 2^(m_i - m_i'),
//   p_ij = 2^(s_ij - m_i') into the thread's places in sP, l_i = alpha l_i + sum_b p_ib (this
//     thread's 4 keys only), o_i = alpha o_i + sum_j p_ij v_j (NN over sP, sV; DC head columns).
// At the end l_i is summed over the half-warp; out_i = o_i / l_i, lse_i = (m_i + log2 l_i) ln 2.
// Shared: sQ, sK, sV (64 x (D + 4)) and sP (64 x 68): smem_bytes<D>(3, 1, 0).
template <int D>
__global__ void __launch_bounds__(kThreads, D <= 64 ? 3 : 1)
fwd_kernel(float* out, float* lse, const float* q, const float* k, const float* v, int64_t BH, int64_t tiles,
           int64_t Lq, int64_t Lk, int Dh, bool causal, float scale_log2, bool vec) {
    constexpr int ld = ld_of<D>(), DC = D / 16;
    extern __shared__ float4 smem4[];
    float* sQ = reinterpret_cast<float*>(smem4);
    float* sK = sQ + kRows * ld;
    float* sV = sK + kRows * ld;
    float* sP = sV + kRows * ld;
    // block t * BH + bh takes query tile tiles - 1 - t: the blocks with the most keys go first
    const int64_t bh = blockIdx.x % BH, i0 = (tiles - 1 - int64_t(blockIdx.x / BH)) * kRows, shift = Lk - Lq;
    q += bh * Lq * Dh;
    k += bh * Lk * Dh;
    v += bh * Lk * Dh;
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    load_rows<D>(sQ, q, i0, Lq, Dh, vec);
    float m[TM], l[TM], o[TM][DC];
#pragma unroll
    for (int a = 0; a < TM; ++a) {
        m[a] = -INFINITY;
        l[a] = 0.f;
#pragma unroll
        for (int c = 0; c < DC; ++c) o[a][c] = 0.f;
    }
    const int64_t last = (i0 + kRows < Lq ? i0 + kRows : Lq) - 1;
    const int64_t kend = key_end(last, Lk, shift, causal);
    for (int64_t j0 = 0; j0 < kend; j0 += kRows) {
        __syncthreads(); // every warp is done with the previous sK, sV
        load_rows<D>(sK, k, j0, Lk, Dh, vec);
        load_rows<D>(sV, v, j0, Lk, Dh, vec);
        __syncthreads();
        float s[TM][TN];
        mm_nt<D, ld, ld>(s, sQ, sK);
        const bool masked = !whole_tile(i0, j0, kRows, Lq, Lk, shift, causal);
#pragma unroll
        for (int a = 0; a < TM; ++a) {
            const int64_t i = i0 + ty + 8 * a;
            float mx = m[a];
#pragma unroll
            for (int b = 0; b < TN; ++b) {
                s[a][b] *= scale_log2;
                if (masked && !visible(i, j0 + tx + 16 * b, Lk, shift, causal)) s[a][b] = -INFINITY;
                mx = fmaxf(mx, s[a][b]);
            }
            mx = half_warp_max(mx);
            const float ref = mx == -INFINITY ? 0.f : mx; // nothing visible yet: keep exp2 finite
            const float alpha = exp2f(m[a] - ref);
            float rowsum = 0.f;
#pragma unroll
            for (int b = 0; b < TN; ++b) {
                const float p = exp2f(s[a][b] - ref);
                sP[(ty + 8 * a) * kLdP + tx + 16 * b] = p;
                rowsum += p;
            }
            l[a] = l[a] * alpha + rowsum;
            m[a] = mx;
#pragma unroll
            for (int c = 0; c < DC; ++c) o[a][c] *= alpha;
        }
        __syncwarp(); // this warp's rows of sP are written; only this warp reads them
        mm_nn<kRows, DC, kLdP, ld>(o, sP, sV);
    }
    out += bh * Lq * Dh;
    lse += bh * Lq;
#pragma unroll
    for (int a = 0; a < TM; ++a) {
        const float lsum = half_warp_sum(l[a]); // every query sees key 0: lsum > 0
        const int64_t i = i0 + ty + 8 * a;
        if (i >= Lq) continue;
        const float inv = 1.f / lsum;
#pragma unroll
        for (int c = 0; c < DC; ++c) {
            const int d = out_col<DC>(tx, c);
            if (d < Dh) out[i * Dh + d] = o[a][c] * inv;
        }
        if (tx == 0) lse[i] = (m[a] + log2f(lsum)) * kLn2;
    }
}

// dk, dv, one block per (bh, key tile [j0, j0 + 64)), walking the query tiles [i0, i0 + 64) that
// see it; thread (ty, tx) owns keys j = j0 + ty + 8a. Per query tile, in registers (transposed
// scores: rows are keys, columns queries i = i0 + tx + 16b):
//   s[a][b] = k_j . q_i (NT over sK, sQ), dp[a][b] = v_j . dout_i (NT over sV, sdO),
//   P_ij = 2^(scale log2(e) s - lse_i log2(e)) (0 where query i does not see key j),
//   dS_ij = P_ij (dp - D_i), both into the thread's places of sP, sdS (rows j, columns i);
//   dv_j += sum_i P_ij dout_i (NN over sP, sdO), dk_j += sum_i dS_ij q_i (NN over sdS, sQ).
// Stores dk = scale dk_acc, dv = dv_acc. Shared: sK, sV, sQ, sdO, sP, sdS, the query tile's
// lse log2(e) and D: smem_bytes<D>(4, 2, 2).
template <int D>
__global__ void __launch_bounds__(kThreads, D <= 64 ? 2 : 1)
bwd_dkdv_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                const float* lse, const float* delta, int64_t BH, int64_t Lq, int64_t Lk, int Dh, bool causal,
                float scale, float scale_log2, bool vec) {
    constexpr int ld = ld_of<D>(), DC = D / 16;
    extern __shared__ float4 smem4[];
    float* sK = reinterpret_cast<float*>(smem4);
    float* sV = sK + kRows * ld;
    float* sQ = sV + kRows * ld;
    float* sdO = sQ + kRows * ld;
    float* sP = sdO + kRows * ld;
    float* sdS = sP + kRows * kLdP;
    float* sL = sdS + kRows * kLdP;
    float* sD = sL + kRows;
    // block t * BH + bh takes key tile t: key tile 0 is seen by the most queries, so it goes first
    const int64_t bh = blockIdx.x % BH, j0 = int64_t(blockIdx.x / BH) * kRows, shift = Lk - Lq;
    q += bh * Lq * Dh;
    dout += bh * Lq * Dh;
    lse += bh * Lq;
    delta += bh * Lq;
    k += bh * Lk * Dh;
    v += bh * Lk * Dh;
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    load_rows<D>(sK, k, j0, Lk, Dh, vec);
    load_rows<D>(sV, v, j0, Lk, Dh, vec);
    float dk_acc[TM][DC], dv_acc[TM][DC];
#pragma unroll
    for (int a = 0; a < TM; ++a)
#pragma unroll
        for (int c = 0; c < DC; ++c) dk_acc[a][c] = dv_acc[a][c] = 0.f;
    int64_t first = causal ? j0 - shift : 0; // the first query that sees key j0
    first = first < 0 ? 0 : first / kRows * kRows;
    for (int64_t i0 = first; i0 < Lq; i0 += kRows) {
        __syncthreads(); // every warp is done with the previous sQ, sdO, sL, sD
        load_rows<D>(sQ, q, i0, Lq, Dh, vec);
        load_rows<D>(sdO, dout, i0, Lq, Dh, vec);
        for (int e = threadIdx.x; e < kRows; e += kThreads) {
            sL[e] = i0 + e < Lq ? lse[i0 + e] * kLog2e : 0.f;
            sD[e] = i0 + e < Lq ? delta[i0 + e] : 0.f;
        }
        __syncthreads();
        float s[TM][TN], dp[TM][TN];
        mm_nt<D, ld, ld>(s, sK, sQ);
        mm_nt<D, ld, ld>(dp, sV, sdO);
        const bool masked = !whole_tile(i0, j0, kRows, Lq, Lk, shift, causal);
#pragma unroll
        for (int a = 0; a < TM; ++a)
#pragma unroll
            for (int b = 0; b < TN; ++b) {
                const int r = ty + 8 * a, col = tx + 16 * b;
                const int64_t i = i0 + col;
                float p = exp2f(s[a][b] * scale_log2 - sL[col]);
                if (masked && !(i < Lq && visible(i, j0 + r, Lk, shift, causal))) p = 0.f;
                sP[r * kLdP + col] = p;
                sdS[r * kLdP + col] = p * (dp[a][b] - sD[col]);
            }
        __syncwarp(); // this warp's rows of sP, sdS are written; only this warp reads them
        mm_nn<kRows, DC, kLdP, ld>(dv_acc, sP, sdO);
        mm_nn<kRows, DC, kLdP, ld>(dk_acc, sdS, sQ);
    }
    store_rows<DC>(dk + bh * Lk * Dh, dk_acc, scale, j0, Lk, Dh);
    store_rows<DC>(dv + bh * Lk * Dh, dv_acc, 1.f, j0, Lk, Dh);
}

// dq, one block per (bh, query tile [i0, i0 + 64)), walking its key tiles; thread (ty, tx) owns
// queries i = i0 + ty + 8a, with lse_i log2(e) and D_i in registers. Per key tile, keys
// j = j0 + tx + 16b:
//   s[a][b] = q_i . k_j (NT over sQ, sK), dp[a][b] = dout_i . v_j (NT over sdO, sV),
//   P_ij = 2^(scale log2(e) s - lse_i log2(e)) (0 where not visible), dS_ij = P_ij (dp - D_i)
//   into the thread's places of sdS; dq_i += sum_j dS_ij k_j (NN over sdS, sK).
// Stores dq = scale dq_acc. Shared: sQ, sdO, sK, sV and sdS: smem_bytes<D>(4, 1, 0).
template <int D>
__global__ void __launch_bounds__(kThreads, D <= 64 ? 2 : 1)
bwd_dq_kernel(float* dq, const float* dout, const float* q, const float* k, const float* v, const float* lse,
              const float* delta, int64_t BH, int64_t tiles, int64_t Lq, int64_t Lk, int Dh, bool causal, float scale,
              float scale_log2, bool vec) {
    constexpr int ld = ld_of<D>(), DC = D / 16;
    extern __shared__ float4 smem4[];
    float* sQ = reinterpret_cast<float*>(smem4);
    float* sdO = sQ + kRows * ld;
    float* sK = sdO + kRows * ld;
    float* sV = sK + kRows * ld;
    float* sdS = sV + kRows * ld;
    // block t * BH + bh takes query tile tiles - 1 - t: the blocks with the most keys go first
    const int64_t bh = blockIdx.x % BH, i0 = (tiles - 1 - int64_t(blockIdx.x / BH)) * kRows, shift = Lk - Lq;
    q += bh * Lq * Dh;
    dout += bh * Lq * Dh;
    lse += bh * Lq;
    delta += bh * Lq;
    k += bh * Lk * Dh;
    v += bh * Lk * Dh;
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    load_rows<D>(sQ, q, i0, Lq, Dh, vec);
    load_rows<D>(sdO, dout, i0, Lq, Dh, vec);
    float lse2[TM], dd[TM], dq_acc[TM][DC];
#pragma unroll
    for (int a = 0; a < TM; ++a) {
        const int64_t i = i0 + ty + 8 * a;
        lse2[a] = i < Lq ? lse[i] * kLog2e : 0.f;
        dd[a] = i < Lq ? delta[i] : 0.f;
#pragma unroll
        for (int c = 0; c < DC; ++c) dq_acc[a][c] = 0.f;
    }
    const int64_t last = (i0 + kRows < Lq ? i0 + kRows : Lq) - 1;
    const int64_t kend = key_end(last, Lk, shift, causal);
    for (int64_t j0 = 0; j0 < kend; j0 += kRows) {
        __syncthreads(); // every warp is done with the previous sK, sV
        load_rows<D>(sK, k, j0, Lk, Dh, vec);
        load_rows<D>(sV, v, j0, Lk, Dh, vec);
        __syncthreads();
        float s[TM][TN], dp[TM][TN];
        mm_nt<D, ld, ld>(s, sQ, sK);
        mm_nt<D, ld, ld>(dp, sdO, sV);
        const bool masked = !whole_tile(i0, j0, kRows, Lq, Lk, shift, causal);
#pragma unroll
        for (int a = 0; a < TM; ++a)
#pragma unroll
            for (int b = 0; b < TN; ++b) {
                const int r = ty + 8 * a, col = tx + 16 * b;
                float p = exp2f(s[a][b] * scale_log2 - lse2[a]);
                if (masked && !(i0 + r < Lq && visible(i0 + r, j0 + col, Lk, shift, causal))) p = 0.f;
                sdS[r * kLdP + col] = p * (dp[a][b] - dd[a]);
            }
        __syncwarp(); // this warp's rows of sdS are written; only this warp reads them
        mm_nn<kRows, DC, kLdP, ld>(dq_acc, sdS, sK);
    }
    store_rows<DC>(dq + bh * Lq * Dh, dq_acc, scale, i0, Lq, Dh);
}

// Calls f.template operator()<D>() with D = Dh rounded up to 16, 32, 64 or 128.
template <typename F> void dispatch_head_dim(int64_t Dh, F&& f) {
    if (Dh <= 16) f.template operator()<16>();
    else if (Dh <= 32) f.template operator()<32>();
    else if (Dh <= 64) f.template operator()<64>();
    else f.template operator()<128>();
}

// float4 reads of (rows, Dh) matrices: Dh % 4 == 0 and every base 16-byte aligned.
bool vectorisable(int64_t Dh, std::initializer_list<const float*> ptrs) {
    if (Dh % 4 != 0) return false;
    for (const float* p : ptrs)
        if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
    return true;
}

template <typename Kernel, typename... Args>
void launch(Kernel kernel, int64_t blocks, size_t smem, Args... args) {
    if (blocks == 0) return;
    allow_dynamic_smem(kernel, smem);
    // several blocks of 70-110 KiB per SM need the largest shared-memory carveout
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                    int(cudaSharedmemCarveoutMaxShared)));
    kernel<<<unsigned(blocks), kThreads, smem>>>(args...);
    CUDA_CHECK_LAUNCH();
}

} // namespace f32

// ---- f64: the scalar kernels (gradcheck; speed is not their point) ---------------------------
// A block of 256 threads works on tiles of R = 32 rows in shared memory with a row stride of
// Dh + 1 (odd: the 16 rows a half-warp reads at one column fall in 16 different banks). The
// threads form a 16 x 16 grid, ty = tid / 16 and tx = tid % 16.
//   - For an R x R block of scores, thread (ty, tx) owns rows ty + 16a and columns tx + 16b
//     (a, b < R / 16): `tile_dot` computes them from two tiles, and a row's max and sum across
//     its 16 owners are butterflies over the half-warp.
//   - For an R x Dh block of outputs, thread (ty, tx) owns rows ty + 16a and columns
//     d = tx + 16c (c < DC = ceil(Dh / 16) <= 8): `tile_accumulate` adds P X to them.
// Same kernels as the f32 path: forward; dk, dv per key tile; dq per query tile.
namespace f64 {

constexpr int kThreads = 256;
template <typename T> struct TileRows { static constexpr int value = 32; };

// Bytes of shared memory per kernel: `tiles` tiles of R x (Dh + 1), `squares` R x R blocks and
// `vectors` vectors of R.
template <typename T> size_t smem_bytes(int Dh, int tiles, int squares, int vectors) {
    constexpr int R = TileRows<T>::value;
    return sizeof(T) * (size_t(tiles) * R * (Dh + 1) + size_t(squares) * R * R + size_t(vectors) * R);
}

// Rows [r0, r0 + R) of a (rows, Dh) matrix into a tile of stride ld; rows past `rows` are zero.
template <typename T, int R>
__device__ void load_tile(T* tile, const T* src, int64_t r0, int64_t rows, int Dh, int ld) {
    for (int e = threadIdx.x; e < R * Dh; e += kThreads) {
        const int r = e / Dh, d = e % Dh;
        tile[r * ld + d] = r0 + r < rows ? src[(r0 + r) * Dh + d] : T(0);
    }
}

// s[a][b] = sum_d A[(ty + 16a) ld + d] B[(tx + 16b) ld + d]
template <typename T, int TM>
__device__ void tile_dot(T (&s)[TM][TM], const T* A, const T* B, int Dh, int ld) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
    for (int a = 0; a < TM; ++a)
#pragma unroll
        for (int b = 0; b < TM; ++b) s[a][b] = T(0);
    for (int d = 0; d < Dh; ++d) {
        T av[TM], bv[TM];
#pragma unroll
        for (int a = 0; a < TM; ++a) av[a] = A[(ty + 16 * a) * ld + d];
#pragma unroll
        for (int b = 0; b < TM; ++b) bv[b] = B[(tx + 16 * b) * ld + d];
#pragma unroll
        for (int a = 0; a < TM; ++a)
#pragma unroll
            for (int b = 0; b < TM; ++b) s[a][b] += av[a] * bv[b];
    }
}

// acc[a][c] += sum_{j < R} P[(ty + 16a) p_row + j p_col] X[j ld + tx + 16c]   (columns < Dh).
// p_row = R, p_col = 1 reads P by rows; p_row = 1, p_col = R reads it transposed.
template <typename T, int TM, int DC, int R>
__device__ void tile_accumulate(T (&acc)[TM][DC], const T* P, int p_row, int p_col, const T* X, int ld, int Dh) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    for (int j = 0; j < R; ++j) {
        T pv[TM], xv[DC];
#pragma unroll
        for (int a = 0; a < TM; ++a) pv[a] = P[(ty + 16 * a) * p_row + j * p_col];
#pragma unroll
        for (int c = 0; c < DC; ++c) xv[c] = tx + 16 * c < Dh ? X[j * ld + tx + 16 * c] : T(0);
#pragma unroll
        for (int a = 0; a < TM; ++a)
#pragma unroll
            for (int c = 0; c < DC; ++c) acc[a][c] += pv[a] * xv[c];
    }
}

// forward --------------------------------------------------------------------------------
template <typename T, int DC>
__global__ void __launch_bounds__(kThreads)
attention_fwd_kernel(T* out, T* lse, const T* q, const T* k, const T* v, int64_t tiles, int64_t Lq, int64_t Lk, int Dh,
                     bool causal, T scale) {
    constexpr int R = TileRows<T>::value, TM = R / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int ld = Dh + 1;
    T* sQ = reinterpret_cast<T*>(smem_raw);
    T* sK = sQ + R * ld;
    T* sV = sK + R * ld;
    T* sP = sV + R * ld; // R x R
    const int64_t bh = blockIdx.x / tiles, i0 = int64_t(blockIdx.x % tiles) * R, shift = Lk - Lq;
    q += bh * Lq * Dh;
    k += bh * Lk * Dh;
    v += bh * Lk * Dh;
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    load_tile<T, R>(sQ, q, i0, Lq, Dh, ld);
    T m[TM], l[TM], acc[TM][DC];
#pragma unroll
    for (int a = 0; a < TM; ++a) {
        m[a] = -INFINITY;
        l[a] = T(0);
#pragma unroll
        for (int c = 0; c < DC; ++c) acc[a][c] = T(0);
    }
    const int64_t last = (i0 + R < Lq ? i0 + R : Lq) - 1;
    const int64_t kend = key_end(last, Lk, shift, causal);
    for (int64_t j0 = 0; j0 < kend; j0 += R) {
        __syncthreads(); // the previous tile's sK, sV, sP are read
        load_tile<T, R>(sK, k, j0, Lk, Dh, ld);
        load_tile<T, R>(sV, v, j0, Lk, Dh, ld);
        __syncthreads();
        T s[TM][TM];
        tile_dot<T, TM>(s, sQ, sK, Dh, ld);
#pragma unroll
        for (int a = 0; a < TM; ++a) {
            const int64_t i = i0 + ty + 16 * a;
            T mx = m[a];
#pragma unroll
            for (int b = 0; b < TM; ++b) {
                s[a][b] = visible(i, j0 + tx + 16 * b, Lk, shift, causal) ? s[a][b] * scale : T(-INFINITY);
                mx = fmax(mx, s[a][b]);
            }
            mx = half_warp_max(mx);
            const T ref = mx == T(-INFINITY) ? T(0) : mx; // nothing visible yet: keep exp() finite
            const T alpha = exp(m[a] - ref);
            T rowsum = T(0);
#pragma unroll
            for (int b = 0; b < TM; ++b) {
                const T p = exp(s[a][b] - ref);
                sP[(ty + 16 * a) * R + tx + 16 * b] = p;
                rowsum += p;
            }
            l[a] = l[a] * alpha + half_warp_sum(rowsum);
            m[a] = mx;
#pragma unroll
            for (int c = 0; c < DC; ++c) acc[a][c] *= alpha;
        }
        __syncthreads();
        tile_accumulate<T, TM, DC, R>(acc, sP, R, 1, sV, ld, Dh);
    }
    out += bh * Lq * Dh;
    lse += bh * Lq;
#pragma unroll
    for (int a = 0; a < TM; ++a) {
        const int64_t i = i0 + ty + 16 * a;
        if (i >= Lq) continue;
        const T inv = T(1) / l[a]; // every query sees key 0: l > 0
#pragma unroll
        for (int c = 0; c < DC; ++c)
            if (tx + 16 * c < Dh) out[i * Dh + tx + 16 * c] = acc[a][c] * inv;
        if (tx == 0) lse[i] = m[a] + log(l[a]);
    }
}

// backward -------------------------------------------------------------------------------
// lse and D of queries [i0, i0 + R) into sL, sD (zero past Lq).
template <typename T, int R>
__device__ void load_row_stats(T* sL, T* sD, const T* lse, const T* delta, int64_t i0, int64_t Lq) {
    for (int e = threadIdx.x; e < R; e += kThreads) {
        sL[e] = i0 + e < Lq ? lse[i0 + e] : T(0);
        sD[e] = i0 + e < Lq ? delta[i0 + e] : T(0);
    }
}

// Rows [r0, r0 + R) of a (rows, Dh) output from acc (times `mul`), rows < `rows` only.
template <typename T, int TM, int DC>
__device__ void store_rows(T* dst, const T (&acc)[TM][DC], T mul, int64_t r0, int64_t rows, int Dh) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
    for (int a = 0; a < TM; ++a) {
        const int64_t r = r0 + ty + 16 * a;
        if (r >= rows) continue;
#pragma unroll
        for (int c = 0; c < DC; ++c)
            if (tx + 16 * c < Dh) dst[r * Dh + tx + 16 * c] = acc[a][c] * mul;
    }
}

// One head's backward operands: the pointers advanced to head bh.
template <typename T> struct HeadOperands {
    const T *q, *dout, *lse, *delta, *k, *v;
    __device__ HeadOperands(const T* q_, const T* dout_, const T* lse_, const T* delta_, const T* k_, const T* v_,
                            int64_t bh, int64_t Lq, int64_t Lk, int Dh)
        : q(q_ + bh * Lq * Dh), dout(dout_ + bh * Lq * Dh), lse(lse_ + bh * Lq), delta(delta_ + bh * Lq),
          k(k_ + bh * Lk * Dh), v(v_ + bh * Lk * Dh) {}
};

// The backward kernels' shared memory: tiles of q, dout, k, v (R x ld), dS and, for dk/dv, P
// (R x R), and the query tile's lse and D. `smem_bytes<T>(Dh, 4, with_p ? 2 : 1, 2)` bytes.
template <typename T, int R> struct BackwardSmem {
    T *sQ, *sdO, *sK, *sV, *sdS, *sP, *sL, *sD;
    __device__ BackwardSmem(unsigned char* raw, int ld, bool with_p) {
        sQ = reinterpret_cast<T*>(raw);
        sdO = sQ + R * ld;
        sK = sdO + R * ld;
        sV = sK + R * ld;
        sdS = sV + R * ld;
        sP = with_p ? sdS + R * R : nullptr;
        sL = sdS + (with_p ? 2 : 1) * R * R;
        sD = sL + R;
    }
};

// For the score block of query tile i0 and key tile j0 (tiles sQ, sK, sdO, sV; the queries' lse
// and D in sL, sD): P into sP (when there is one) and dS = P (dP - D) into sdS.
template <typename T, int TM, int R>
__device__ void probs_and_dscores(const BackwardSmem<T, R>& sm, int64_t i0, int64_t j0, int64_t Lq, int64_t Lk,
                                  int64_t shift, bool causal, T scale, int Dh, int ld) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    T s[TM][TM], dp[TM][TM];
    tile_dot<T, TM>(s, sm.sQ, sm.sK, Dh, ld);
    tile_dot<T, TM>(dp, sm.sdO, sm.sV, Dh, ld);
#pragma unroll
    for (int a = 0; a < TM; ++a)
#pragma unroll
        for (int b = 0; b < TM; ++b) {
            const int r = ty + 16 * a, col = tx + 16 * b;
            const int64_t i = i0 + r;
            const T p = i < Lq && visible(i, j0 + col, Lk, shift, causal) ? exp(s[a][b] * scale - sm.sL[r]) : T(0);
            if (sm.sP) sm.sP[r * R + col] = p;
            sm.sdS[r * R + col] = p * (dp[a][b] - sm.sD[r]);
        }
}

// dk, dv for one (bh, key tile): walks the query tiles that see the key tile.
template <typename T, int DC>
__global__ void __launch_bounds__(kThreads)
attention_bwd_dkdv_kernel(T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* lse,
                          const T* delta, int64_t tiles, int64_t Lq, int64_t Lk, int Dh, bool causal, T scale) {
    constexpr int R = TileRows<T>::value, TM = R / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int ld = Dh + 1;
    const BackwardSmem<T, R> sm(smem_raw, ld, true);
    const int64_t bh = blockIdx.x / tiles, j0 = int64_t(blockIdx.x % tiles) * R, shift = Lk - Lq;
    const HeadOperands<T> h(q, dout, lse, delta, k, v, bh, Lq, Lk, Dh);
    load_tile<T, R>(sm.sK, h.k, j0, Lk, Dh, ld);
    load_tile<T, R>(sm.sV, h.v, j0, Lk, Dh, ld);
    T dk_acc[TM][DC], dv_acc[TM][DC];
#pragma unroll
    for (int a = 0; a < TM; ++a)
#pragma unroll
        for (int c = 0; c < DC; ++c) dk_acc[a][c] = dv_acc[a][c] = T(0);
    int64_t first = causal ? j0 - shift : 0; // the first query that sees key j0
    first = first < 0 ? 0 : first / R * R;
    for (int64_t i0 = first; i0 < Lq; i0 += R) {
        __syncthreads(); // the previous query tile is read
        load_tile<T, R>(sm.sQ, h.q, i0, Lq, Dh, ld);
        load_tile<T, R>(sm.sdO, h.dout, i0, Lq, Dh, ld);
        load_row_stats<T, R>(sm.sL, sm.sD, h.lse, h.delta, i0, Lq);
        __syncthreads();
        probs_and_dscores<T, TM, R>(sm, i0, j0, Lq, Lk, shift, causal, scale, Dh, ld);
        __syncthreads();
        // this thread now owns key rows ty + 16a: dv_j += sum_i P_ij dout_i, dk_j += sum_i dS_ij q_i
        tile_accumulate<T, TM, DC, R>(dv_acc, sm.sP, 1, R, sm.sdO, ld, Dh);
        tile_accumulate<T, TM, DC, R>(dk_acc, sm.sdS, 1, R, sm.sQ, ld, Dh);
    }
    store_rows<T, TM, DC>(dk + bh * Lk * Dh, dk_acc, scale, j0, Lk, Dh);
    store_rows<T, TM, DC>(dv + bh * Lk * Dh, dv_acc, T(1), j0, Lk, Dh);
}

// dq for one (bh, query tile): walks its key tiles.
template <typename T, int DC>
__global__ void __launch_bounds__(kThreads)
attention_bwd_dq_kernel(T* dq, const T* dout, const T* q, const T* k, const T* v, const T* lse, const T* delta,
                        int64_t tiles, int64_t Lq, int64_t Lk, int Dh, bool causal, T scale) {
    constexpr int R = TileRows<T>::value, TM = R / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int ld = Dh + 1;
    const BackwardSmem<T, R> sm(smem_raw, ld, false);
    const int64_t bh = blockIdx.x / tiles, i0 = int64_t(blockIdx.x % tiles) * R, shift = Lk - Lq;
    const HeadOperands<T> h(q, dout, lse, delta, k, v, bh, Lq, Lk, Dh);
    load_tile<T, R>(sm.sQ, h.q, i0, Lq, Dh, ld);
    load_tile<T, R>(sm.sdO, h.dout, i0, Lq, Dh, ld);
    load_row_stats<T, R>(sm.sL, sm.sD, h.lse, h.delta, i0, Lq);
    T dq_acc[TM][DC];
#pragma unroll
    for (int a = 0; a < TM; ++a)
#pragma unroll
        for (int c = 0; c < DC; ++c) dq_acc[a][c] = T(0);
    const int64_t last = (i0 + R < Lq ? i0 + R : Lq) - 1;
    const int64_t kend = key_end(last, Lk, shift, causal);
    for (int64_t j0 = 0; j0 < kend; j0 += R) {
        __syncthreads(); // the previous key tile and sdS are read
        load_tile<T, R>(sm.sK, h.k, j0, Lk, Dh, ld);
        load_tile<T, R>(sm.sV, h.v, j0, Lk, Dh, ld);
        __syncthreads();
        probs_and_dscores<T, TM, R>(sm, i0, j0, Lq, Lk, shift, causal, scale, Dh, ld);
        __syncthreads();
        tile_accumulate<T, TM, DC, R>(dq_acc, sm.sdS, R, 1, sm.sK, ld, Dh); // dq_i += sum_j dS_ij k_j
    }
    store_rows<T, TM, DC>(dq + bh * Lq * Dh, dq_acc, scale, i0, Lq, Dh);
}

// Calls f.template operator()<DC>() with DC = ceil(Dh / 16) rounded up to 1, 2, 4 or 8.
template <typename F> void dispatch_columns(int64_t Dh, F&& f) {
    if (Dh <= 16) f.template operator()<1>();
    else if (Dh <= 32) f.template operator()<2>();
    else if (Dh <= 64) f.template operator()<4>();
    else f.template operator()<8>();
}

template <typename Kernel, typename... Args>
void launch(Kernel kernel, int64_t blocks, size_t smem, Args... args) {
    if (blocks == 0) return;
    allow_dynamic_smem(kernel, smem);
    kernel<<<unsigned(blocks), kThreads, smem>>>(args...);
    CUDA_CHECK_LAUNCH();
}

} // namespace f64

} // namespace

template <typename T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t BH, int64_t Lq, int64_t Lk,
                       int64_t Dh, bool causal, double scale) {
    if constexpr (std::is_same_v<T, float>) {
        const int64_t tiles = ceil_div(Lq, f32::kRows);
        const bool vec = f32::vectorisable(Dh, {q, k, v});
        const float scale_log2 = float(scale * 1.4426950408889634);
        f32::dispatch_head_dim(Dh, [&]<int D>() {
            f32::launch(f32::fwd_kernel<D>, BH * tiles, f32::smem_bytes<D>(3, 1, 0), out, lse, q, k, v, BH, tiles,
                        Lq, Lk, int(Dh), causal, scale_log2, vec);
        });
    } else {
        constexpr int R = f64::TileRows<T>::value;
        const int64_t tiles = ceil_div(Lq, R);
        f64::dispatch_columns(Dh, [&]<int DC>() {
            f64::launch(f64::attention_fwd_kernel<T, DC>, BH * tiles, f64::smem_bytes<T>(int(Dh), 3, 1, 0), out, lse,
                        q, k, v, tiles, Lq, Lk, int(Dh), causal, T(scale));
        });
    }
}

size_t attention_backward_workspace(int64_t BH, int64_t Lq, size_t elem_size) { return size_t(BH * Lq) * elem_size; }

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                        const T* lse, void* workspace, int64_t BH, int64_t Lq, int64_t Lk, int64_t Dh, bool causal,
                        double scale) {
    T* delta = static_cast<T*>(workspace);
    if (BH * Lq > 0) {
        attention_delta_kernel<T><<<unsigned(ceil_div(BH * Lq * 32, kBlock)), kBlock>>>(delta, dout, out, BH * Lq,
                                                                                        int(Dh));
        CUDA_CHECK_LAUNCH();
    }
    if constexpr (std::is_same_v<T, float>) {
        const int64_t qtiles = ceil_div(Lq, f32::kRows), ktiles = ceil_div(Lk, f32::kRows);
        const bool vec = f32::vectorisable(Dh, {q, k, v, dout});
        const float scale_log2 = float(scale * 1.4426950408889634);
        f32::dispatch_head_dim(Dh, [&]<int D>() {
            f32::launch(f32::bwd_dkdv_kernel<D>, BH * ktiles, f32::smem_bytes<D>(4, 2, 2), dk, dv, dout, q, k, v, lse,
                        delta, BH, Lq, Lk, int(Dh), causal, float(scale), scale_log2, vec);
            f32::launch(f32::bwd_dq_kernel<D>, BH * qtiles, f32::smem_bytes<D>(4, 1, 0), dq, dout, q, k, v, lse,
                        delta, BH, qtiles, Lq, Lk, int(Dh), causal, float(scale), scale_log2, vec);
        });
    } else {
        constexpr int R = f64::TileRows<T>::value;
        const int64_t qtiles = ceil_div(Lq, R), ktiles = ceil_div(Lk, R);
        f64::dispatch_columns(Dh, [&]<int DC>() {
            f64::launch(f64::attention_bwd_dkdv_kernel<T, DC>, BH * ktiles, f64::smem_bytes<T>(int(Dh), 4, 2, 2), dk,
                        dv, dout, q, k, v, lse, delta, ktiles, Lq, Lk, int(Dh), causal, T(scale));
            f64::launch(f64::attention_bwd_dq_kernel<T, DC>, BH * qtiles, f64::smem_bytes<T>(int(Dh), 4, 1, 2), dq,
                        dout, q, k, v, lse, delta, qtiles, Lq, Lk, int(Dh), causal, T(scale));
        });
    }
}

#define MG_INST(T)                                                                                                 \
    template void attention_forward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t,     \
                                       bool, double);                                                            \
    template void attention_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, const T*,     \
                                        void*, int64_t, int64_t, int64_t, int64_t, bool, double);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
