// bench/scan_lab/v1.cuh: version 1 of the GPU selective scan (commit e432e00), kept for the lab.
//
// Mapping. One thread owns one (b, d) channel and walks time sequentially, holding 16 states in
// registers; a block is one warp of 32 channels. Time runs in tiles of 32 steps: per tile the
// block stages Δ (bias and softplus applied), u and the tile's B_t, C_t in shared memory, then
// each thread runs the recurrence. The forward saves the state at the end of every tile
// (checkpoints (B, tiles, N, D)); the backward walks tiles from last to first, recomputes the
// tile's states into shared memory from the checkpoint, and runs the adjoint recurrence
// g_t = C_t dy_t + exp(Δ_{t+1} A) g_{t+1} backwards through it. dB_t and dC_t sum the warp's 32
// channels with a butterfly reduce-scatter (lane l ends with value l's total), deterministic.
//
// Why it lost (bench/RESULTS.md, "Kernel lab: the selective scan"): B·D = 12288 threads are 2.9
// warps per SM, one per scheduler; 88% of cycles had no eligible warp. Latency-bound.
#pragma once
#include "bench/scan_lab/common.cuh"

namespace mg::scanlab::v1 {

constexpr int kTile = 32; // time steps per tile (and between checkpoints)
MG_HD int64_t n_chunks_of(int64_t L) { return (L + kTile - 1) / kTile; }
inline int64_t ckpt_elems(int64_t B, int64_t L, int64_t D, int64_t N) { return B * n_chunks_of(L) * D * N; }

// ---- forward --------------------------------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(kChannels) scan_fwd_kernel(ScanFwdArgs<T> a) {
    __shared__ T s_dt[kTile][kChannels], s_u[kTile][kChannels];
    __shared__ T s_B[kTile][kStates], s_C[kTile][kStates];
    const int64_t b = blockIdx.y, d0 = int64_t(blockIdx.x) * kChannels;
    const int c = threadIdx.x;
    const int64_t d = d0 + c;
    const bool active = d < a.D;
    const int64_t L = a.L, D = a.D, N = a.N, groups = n_groups(N), n_chunks = n_chunks_of(L);

    for (int64_t grp = 0; grp < groups; ++grp) {
        const bool last_group = grp == groups - 1;
        T h[kStates], A2[kStates];
#pragma unroll
        for (int s = 0; s < kStates; ++s) {
            int64_t n = grp * kStates + s;
            bool ok = active && n < N;
            A2[s] = ok ? T(double(a.A[d * N + n]) * scan::kLog2e) : T(0);
            h[s] = ok && a.h0 ? a.h0[(b * D + d) * N + n] : T(0);
        }
        for (int64_t t0 = 0; t0 < L; t0 += kTile) {
            // stage the tile: Δ (bias + softplus applied once per element) and u; B_t, C_t
            for (int i = c; i < kTile * kChannels; i += kChannels) {
                int tt = i / kChannels, cc = i % kChannels;
                int64_t t = t0 + tt, dd = d0 + cc;
                T dt = 0, uu = 0;
                if (t < L && dd < D) {
                    int64_t idx = (b * L + t) * D + dd;
                    dt = a.delta[idx] + (a.delta_bias ? a.delta_bias[dd] : T(0));
                    if (a.softplus) dt = softplus_of(dt);
                    uu = a.u[idx];
                }
                s_dt[tt][cc] = dt;
                s_u[tt][cc] = uu;
            }
            for (int i = c; i < kTile * kStates; i += kChannels) {
                int tt = i / kStates, s = i % kStates;
                int64_t t = t0 + tt, n = grp * kStates + s;
                bool ok = t < L && n < N;
                s_B[tt][s] = ok ? a.Bm[(b * L + t) * N + n] : T(0);
                s_C[tt][s] = ok ? a.Cm[(b * L + t) * N + n] : T(0);
            }
            __syncthreads();
            const int steps = int(L - t0 < kTile ? L - t0 : kTile);
            for (int tt = 0; tt < steps; ++tt) {
                T dt = s_dt[tt][c], du = dt * s_u[tt][c], y = 0;
#pragma unroll
                for (int s = 0; s < kStates; ++s) {
                    h[s] = exp2_dev(dt * A2[s]) * h[s] + du * s_B[tt][s];
                    y += s_C[tt][s] * h[s];
                }
                if (!active) continue;
                int64_t idx = (b * L + t0 + tt) * D + d;
                if (grp > 0) y += a.out[idx]; // earlier groups' part, written by this thread
                if (last_group) {
                    if (a.Dskip) y += a.Dskip[d] * s_u[tt][c];
                    if (a.z) {
                        if (a.y) a.y[idx] = y;
                        T zz = a.z[idx];
                        y *= zz * sigmoid_of(zz);
                    }
                }
                a.out[idx] = y;
            }
            if (a.ckpt && active) {
                int64_t chunk = t0 / kTile;
#pragma unroll
                for (int s = 0; s < kStates; ++s) {
                    int64_t n = grp * kStates + s;
                    if (n < N) a.ckpt[((b * n_chunks + chunk) * N + n) * D + d] = h[s];
                }
            }
            __syncthreads();
        }
        if (a.last_state && active)
#pragma unroll
            for (int s = 0; s < kStates; ++s) {
                int64_t n = grp * kStates + s;
                if (n < N) a.last_state[(b * D + d) * N + n] = h[s];
            }
    }
}

// ---- backward -------------------------------------------------------------------------------
// Lane l of the warp ends with the sum over the 32 lanes of v[l] (values 0..31). Five butterfly
// stages; at each, a lane keeps the half of its values selected by its lane bit and adds the
// partner's copy of that half. The order of additions is fixed: deterministic.
template <typename T> __device__ __forceinline__ T reduce_scatter32(T (&v)[32], int lane) {
#pragma unroll
    for (int off = 16; off >= 1; off >>= 1) {
        const bool upper = lane & off;
#pragma unroll
        for (int i = 0; i < off; ++i) {
            T send = upper ? v[i] : v[i + off];
            T keep = upper ? v[i + off] : v[i];
            v[i] = keep + __shfl_xor_sync(0xffffffffu, send, off);
        }
    }
    return v[0];
}

// Shared memory of the backward block, as offsets into one dynamic buffer.
template <typename T> struct BwdSmem {
    T (*dt)[kChannels];             // [kTile] Δ
    T (*u)[kChannels];              // [kTile]
    T (*dy)[kChannels];             // [kTile] dout·silu(z)
    T (*sig)[kChannels];            // [kTile] d softplus (1 without softplus)
    T (*B)[kStates];                // [kTile]
    T (*C)[kStates];                // [kTile]
    T (*hist)[kStates][kChannels];  // [kTile] h_t of every channel and state
    T (*red)[2 * kStates];          // [kTile] warp sums of g Δ u and dy h
    static constexpr size_t bytes() {
        return sizeof(T) * kTile * (4 * kChannels + 2 * kStates + kStates * kChannels + 2 * kStates);
    }
    __device__ explicit BwdSmem(T* p) {
        dt = reinterpret_cast<T(*)[kChannels]>(p); p += kTile * kChannels;
        u = reinterpret_cast<T(*)[kChannels]>(p); p += kTile * kChannels;
        dy = reinterpret_cast<T(*)[kChannels]>(p); p += kTile * kChannels;
        sig = reinterpret_cast<T(*)[kChannels]>(p); p += kTile * kChannels;
        B = reinterpret_cast<T(*)[kStates]>(p); p += kTile * kStates;
        C = reinterpret_cast<T(*)[kStates]>(p); p += kTile * kStates;
        hist = reinterpret_cast<T(*)[kStates][kChannels]>(p); p += kTile * kStates * kChannels;
        red = reinterpret_cast<T(*)[2 * kStates]>(p);
    }
};

template <typename T>
__global__ void __launch_bounds__(kChannels) scan_bwd_kernel(ScanBwdArgs<T> a, T* work) {
    extern __shared__ unsigned char smem_raw[];
    BwdSmem<T> sm(reinterpret_cast<T*>(smem_raw));
    const int64_t b = blockIdx.y, blk = blockIdx.x, d0 = blk * kChannels;
    const int c = threadIdx.x;
    const int64_t d = d0 + c;
    const bool active = d < a.D;
    const int64_t L = a.L, D = a.D, N = a.N, groups = n_groups(N), n_chunks = n_chunks_of(L);
    const BwdWork w(a.B, L, D, N);
    T* part = work + w.part + (b * w.n_blocks + blk) * L * 2 * N;
    T dD_acc = 0, dbias_acc = 0;

    for (int64_t grp = 0; grp < groups; ++grp) {
        T A2[kStates], g_next[kStates], dA_acc[kStates];
#pragma unroll
        for (int s = 0; s < kStates; ++s) {
            int64_t n = grp * kStates + s;
            A2[s] = active && n < N ? T(double(a.A[d * N + n]) * scan::kLog2e) : T(0);
            g_next[s] = 0;
            dA_acc[s] = 0;
        }
        for (int64_t chunk = n_chunks - 1; chunk >= 0; --chunk) {
            const int64_t t0 = chunk * kTile;
            // 1. stage the tile; the first group also writes dz
            for (int i = c; i < kTile * kChannels; i += kChannels) {
                int tt = i / kChannels, cc = i % kChannels;
                int64_t t = t0 + tt, dd = d0 + cc;
                T dt = 0, uu = 0, dy = 0, sg = 1;
                if (t < L && dd < D) {
                    int64_t idx = (b * L + t) * D + dd;
                    T raw = a.delta[idx] + (a.delta_bias ? a.delta_bias[dd] : T(0));
                    dt = a.softplus ? softplus_of(raw) : raw;
                    sg = a.softplus ? softplus_grad_of(raw) : T(1);
                    uu = a.u[idx];
                    dy = a.dout[idx];
                    if (a.z) {
                        T zz = a.z[idx], sz = sigmoid_of(zz);
                        if (grp == 0) a.dz[idx] = dy * a.y[idx] * sz * (T(1) + zz * (T(1) - sz));
                        dy *= zz * sz;
                    }
                }
                sm.dt[tt][cc] = dt;
                sm.u[tt][cc] = uu;
                sm.dy[tt][cc] = dy;
                sm.sig[tt][cc] = sg;
            }
            for (int i = c; i < kTile * kStates; i += kChannels) {
                int tt = i / kStates, s = i % kStates;
                int64_t t = t0 + tt, n = grp * kStates + s;
                bool ok = t < L && n < N;
                sm.B[tt][s] = ok ? a.Bm[(b * L + t) * N + n] : T(0);
                sm.C[tt][s] = ok ? a.Cm[(b * L + t) * N + n] : T(0);
            }
            // 2. the state before the tile, then recompute the tile's states
            T h0[kStates], h[kStates];
#pragma unroll
            for (int s = 0; s < kStates; ++s) {
                int64_t n = grp * kStates + s;
                h0[s] = chunk > 0 && active && n < N ? a.ckpt[((b * n_chunks + chunk - 1) * N + n) * D + d] : T(0);
                h[s] = h0[s];
            }
            __syncthreads();
            for (int tt = 0; tt < kTile; ++tt) { // padded steps (t >= L) have Δ = 0: identity
                T dt = sm.dt[tt][c], du = dt * sm.u[tt][c];
#pragma unroll
                for (int s = 0; s < kStates; ++s) {
                    h[s] = exp2_dev(dt * A2[s]) * h[s] + du * sm.B[tt][s];
                    sm.hist[tt][s][c] = h[s];
                }
            }
            // 3. the adjoint recurrence, backwards through the tile
            for (int tt = kTile - 1; tt >= 0; --tt) {
                T dt = sm.dt[tt][c], uu = sm.u[tt][c], dy = sm.dy[tt][c];
                T ddt = 0, du = 0, v[2 * kStates];
#pragma unroll
                for (int s = 0; s < kStates; ++s) {
                    T hp = tt > 0 ? sm.hist[tt - 1][s][c] : h0[s];
                    T ea = exp2_dev(dt * A2[s]);
                    T g = sm.C[tt][s] * dy + g_next[s];
                    T A = A2[s] * T(kLn2);
                    ddt += g * (sm.B[tt][s] * uu + A * ea * hp);
                    dA_acc[s] += g * dt * ea * hp;
                    du += g * dt * sm.B[tt][s];
                    v[s] = g * dt * uu;
                    v[kStates + s] = dy * sm.hist[tt][s][c];
                    g_next[s] = ea * g;
                }
                T total = reduce_scatter32(v, c);
                sm.red[tt][c] = total;
                int64_t t = t0 + tt;
                if (active && t < L) {
                    int64_t idx = (b * L + t) * D + d;
                    T dd = ddt * sm.sig[tt][c];
                    if (grp == 0) {
                        if (a.Dskip) du += a.Dskip[d] * dy;
                        dD_acc += dy * uu;
                        a.du[idx] = du;
                        a.ddelta[idx] = dd;
                    } else {
                        a.du[idx] += du;
                        a.ddelta[idx] += dd;
                    }
                    dbias_acc += dd;
                }
            }
            __syncwarp();
            // 4. this block's partial dB (lanes 0..15) and dC (lanes 16..31) for the tile
            {
                int s = c % kStates;
                int64_t n = grp * kStates + s;
                int64_t col = (c < kStates ? 0 : N) + n;
                if (n < N)
                    for (int tt = 0; tt < kTile && t0 + tt < L; ++tt) part[(t0 + tt) * 2 * N + col] = sm.red[tt][c];
            }
            __syncthreads();
        }
        if (active)
#pragma unroll
            for (int s = 0; s < kStates; ++s) {
                int64_t n = grp * kStates + s;
                if (n < N) work[w.dA + (b * D + d) * N + n] = dA_acc[s];
            }
    }
    if (active) {
        work[w.dD + b * D + d] = dD_acc;
        work[w.dbias + b * D + d] = dbias_acc;
    }
}

template <typename T> void fwd(const ScanFwdArgs<T>& a) {
    if (a.B == 0 || a.D == 0 || a.L == 0) return;
    dim3 grid(unsigned(ceil_div(a.D, kChannels)), unsigned(a.B));
    scan_fwd_kernel<T><<<grid, kChannels>>>(a);
    CUDA_CHECK_LAUNCH();
}

template <typename T> void bwd(const ScanBwdArgs<T>& a, T* work) {
    if (a.B == 0 || a.D == 0 || a.L == 0) return;
    const BwdWork w(a.B, a.L, a.D, a.N);
    const size_t smem = BwdSmem<T>::bytes();
    allow_dynamic_smem(scan_bwd_kernel<T>, smem);
    dim3 grid(unsigned(w.n_blocks), unsigned(a.B));
    scan_bwd_kernel<T><<<grid, kChannels, smem>>>(a, work);
    CUDA_CHECK_LAUNCH();
    finish_bwd(a, work);
}

} // namespace mg::scanlab::v1
