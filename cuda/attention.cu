// cuda/attention.cu: fused causal attention, forward and backward (flash attention, fp32/fp64 on
// the CUDA cores). See ops/attention.h for the math.
//
// Layout. A block of 256 threads works on tiles of R rows (R = 64 for float, 32 for double) held
// in shared memory with a row stride of Dh + 1 (odd: the 16 rows a half-warp reads at one
// column fall in 16 different banks). The threads form a 16 x 16 grid, ty = tid / 16 and
// tx = tid % 16; a lane's half-warp is its 16 tx values.
//   - For an R x R block of scores, thread (ty, tx) owns rows ty + 16a and columns tx + 16b
//     (a, b < R / 16): `tile_dot` computes them from two tiles, and a row's max and sum across
//     its 16 owners are butterflies over the half-warp (fixed order: deterministic).
//   - For an R x Dh block of outputs, thread (ty, tx) owns rows ty + 16a and columns
//     d = tx + 16c (c < DC = ceil(Dh / 16) <= 8): `tile_accumulate` adds P X to them.
// Kernels.
//   forward: one block per (bh, query tile); keys in tiles, online softmax (running max m,
//     running sum l, the unnormalised output in registers); writes out and lse.
//   backward: D_i = dout_i . out_i (a warp per row); then dk, dv with one block per (bh, key
//     tile) walking the query tiles that see it, and dq with one block per (bh, query tile)
//     walking its key tiles. Both recompute P_ij = exp(S_ij - lse_i); every output element has
//     one owner, so there are no atomics and the gradients are bit-identical run to run.
#include <cfloat>
#include <cmath>

#include "cuda/attention.h"
#include "cuda/launch.h"
#include "cuda/warp.h"

namespace mg::cuda {

namespace {

constexpr int kThreads = 256;
template <typename T> struct TileRows { static constexpr int value = 64; };
template <> struct TileRows<double> { static constexpr int value = 32; };

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

// ---- forward --------------------------------------------------------------------------------
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

// ---- backward -------------------------------------------------------------------------------
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

} // namespace

template <typename T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t BH, int64_t Lq, int64_t Lk,
                       int64_t Dh, bool causal, double scale) {
    constexpr int R = TileRows<T>::value;
    const int64_t tiles = ceil_div(Lq, R);
    dispatch_columns(Dh, [&]<int DC>() {
        launch(attention_fwd_kernel<T, DC>, BH * tiles, smem_bytes<T>(int(Dh), 3, 1, 0), out, lse, q, k, v, tiles, Lq,
               Lk, int(Dh), causal, T(scale));
    });
}

size_t attention_backward_workspace(int64_t BH, int64_t Lq, size_t elem_size) { return size_t(BH * Lq) * elem_size; }

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                        const T* lse, void* workspace, int64_t BH, int64_t Lq, int64_t Lk, int64_t Dh, bool causal,
                        double scale) {
    constexpr int R = TileRows<T>::value;
    T* delta = static_cast<T*>(workspace);
    if (BH * Lq > 0) {
        attention_delta_kernel<T><<<unsigned(ceil_div(BH * Lq * 32, kThreads)), kThreads>>>(delta, dout, out, BH * Lq,
                                                                                            int(Dh));
        CUDA_CHECK_LAUNCH();
    }
    const int64_t qtiles = ceil_div(Lq, R), ktiles = ceil_div(Lk, R);
    dispatch_columns(Dh, [&]<int DC>() {
        launch(attention_bwd_dkdv_kernel<T, DC>, BH * ktiles, smem_bytes<T>(int(Dh), 4, 2, 2), dk, dv, dout, q, k, v,
               lse, delta, ktiles, Lq, Lk, int(Dh), causal, T(scale));
        launch(attention_bwd_dq_kernel<T, DC>, BH * qtiles, smem_bytes<T>(int(Dh), 4, 1, 2), dq, dout, q, k, v, lse,
               delta, qtiles, Lq, Lk, int(Dh), causal, T(scale));
    });
}

#define MG_INST(T)                                                                                                 \
    template void attention_forward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t,     \
                                       bool, double);                                                            \
    template void attention_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, const T*,     \
                                        void*, int64_t, int64_t, int64_t, int64_t, bool, double);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
