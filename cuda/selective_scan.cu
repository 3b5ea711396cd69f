// cuda/selective_scan.cu: the selective scan on the GPU.
//
// Mapping. A block owns kChannels = 32 channels (b fixed) and walks time sequentially. Each
// channel's 16 states are split over kLanes = 4 threads (4 states each): at B·D = 12288 channels
// that is 1536 warps, enough to hide the latency of the sequential recurrence (with one thread
// per channel, the first version ran 2.9 warps per SM and stalled 88% of cycles: see
// bench/RESULTS.md). N > 16 runs the time loop once per group of 16 states, adding each group's
// part of y, du and ddelta into the outputs in group order. Channels are token-major (D
// contiguous), so staging a tile reads 32 consecutive floats per step: coalesced.
//
// Lane layout inside a warp: lane = q·8 + c (q = which 4 states, c = one of 8 channels), so the
// 4 lanes of a channel differ in lane bits 3 and 4 and the 8 channels of a warp in bits 0..2.
//
// Time is processed in tiles of kScanChunk = 16 steps: the block stages Δ (bias and softplus
// applied once per element), u, and the tile's B_t, C_t in shared memory, then each thread runs
// its 4 states through the tile; y_t sums the 4 lanes with two xor-shuffles.
//
// Forward also saves the state at the end of every tile (ckpt, (B, L/16, D, N): O(B·L·D) for
// N = 16). Backward walks tiles from last to first: it reloads the state before the tile from
// ckpt, recomputes the tile's states into shared memory, then runs the adjoint recurrence
// g_t = C_t dy_t + exp(Δ_{t+1} A) g_{t+1} backwards through the tile.
//
// Determinism (no atomics anywhere). du_t, dΔ_t sum over a channel's 4 lanes by a butterfly
// all-reduce (every lane gets the bitwise-same sum). dB_t, dC_t sum over channels: the 8
// channels of a warp by a butterfly reduce-scatter (lane c ends with the total of value c, fixed
// order), the block's 4 warps in warp order through shared memory, then the blocks' partials in
// block order by a second kernel. dA, dD and ddelta_bias are summed over time in registers and
// over the batch in order by that second pass.
#include "cuda/launch.h"
#include "cuda/selective_scan.h"
#include "ops/scan_math.h"

namespace mg::cuda {

namespace {

constexpr int kStates = 16;                  // states per pass (one group)
constexpr int kLanes = 4;                    // threads per channel
constexpr int kPer = kStates / kLanes;       // states per thread
constexpr int kChannels = 32;                // channels per block
constexpr int kThreads = kChannels * kLanes; // 128
constexpr int kWarpChannels = 32 / kLanes;   // channels per warp (8)
constexpr int kWarps = kThreads / 32;
constexpr int kTile = kScanChunk;            // time steps per tile
constexpr int kHistStride = kChannels + 2;   // padding: the 4 lanes of a channel hit distinct banks
constexpr double kLn2 = 0.6931471805599453;

static_assert(kPer * 2 == kWarpChannels, "the dB/dC reduce-scatter needs 2·states-per-thread values per channel lane");

__device__ __forceinline__ float exp2_dev(float x) { return exp2f(x); }
__device__ __forceinline__ double exp2_dev(double x) { return exp2(x); }

MG_HD int64_t n_groups(int64_t N) { return (N + kStates - 1) / kStates; }

struct ThreadPos {
    int q, c;      // state quarter, channel in block
    int lane, warp;
};
__device__ __forceinline__ ThreadPos thread_pos() {
    ThreadPos p;
    p.lane = threadIdx.x % 32;
    p.warp = threadIdx.x / 32;
    p.q = p.lane / kWarpChannels;
    p.c = p.warp * kWarpChannels + p.lane % kWarpChannels;
    return p;
}

// Sum over the 4 lanes of a channel (lane bits 3 and 4); bitwise-identical on all 4.
template <typename T> __device__ __forceinline__ T channel_sum(T v) {
    v += __shfl_xor_sync(0xffffffffu, v, kWarpChannels);
    v += __shfl_xor_sync(0xffffffffu, v, 2 * kWarpChannels);
    return v;
}

// Over the 8 channel lanes of the warp (lane bits 0..2): lane c ends with the sum of v[c].
template <int OFF, typename T> __device__ __forceinline__ void reduce_scatter_stage(T (&v)[kWarpChannels], int lane) {
    if constexpr (OFF >= 1) {
        const bool upper = lane & OFF;
#pragma unroll
        for (int i = 0; i < OFF; ++i) {
            T send = upper ? v[i] : v[i + OFF];
            T keep = upper ? v[i + OFF] : v[i];
            v[i] = keep + __shfl_xor_sync(0xffffffffu, send, OFF);
        }
        reduce_scatter_stage<OFF / 2>(v, lane);
    }
}

// Stages B_t,n and C_t,n of one tile and one 16-state group (zeros outside the sequence and past
// N). Cooperative, branch-free loads.
template <typename T>
__device__ __forceinline__ void stage_bc(T (*sB)[kStates], T (*sC)[kStates], const T* Bm, const T* Cm, int64_t b,
                                         int64_t t0, int64_t grp, int64_t L, int64_t N) {
#pragma unroll
    for (int k = 0; k < kTile * kStates / kThreads; ++k) {
        int i = threadIdx.x + k * kThreads;
        int tt = i / kStates, s = i % kStates;
        int64_t t = t0 + tt, n = grp * kStates + s;
        bool ok = t < L && n < N;
        int64_t idx = ok ? (b * L + t) * N + n : 0;
        T bv = Bm[idx], cv = Cm[idx];
        sB[tt][s] = ok ? bv : T(0);
        sC[tt][s] = ok ? cv : T(0);
    }
}

// ---- forward --------------------------------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(kThreads) scan_fwd_kernel(ScanFwdArgs<T> a) {
    __shared__ T s_dt[kTile][kChannels], s_u[kTile][kChannels], s_y[kTile][kChannels];
    __shared__ T s_B[kTile][kStates], s_C[kTile][kStates];
    const ThreadPos p = thread_pos();
    const int64_t b = blockIdx.y, d0 = int64_t(blockIdx.x) * kChannels, d = d0 + p.c;
    const bool active = d < a.D;
    const int64_t L = a.L, D = a.D, N = a.N, groups = n_groups(N), n_chunks = scan_n_chunks(L);

    for (int64_t grp = 0; grp < groups; ++grp) {
        const bool last_group = grp == groups - 1;
        T h[kPer], A2[kPer];
#pragma unroll
        for (int j = 0; j < kPer; ++j) {
            int64_t n = grp * kStates + p.q * kPer + j;
            bool ok = active && n < N;
            A2[j] = ok ? T(double(a.A[d * N + n]) * scan::kLog2e) : T(0);
            h[j] = ok && a.h0 ? a.h0[(b * D + d) * N + n] : T(0);
        }
        for (int64_t t0 = 0; t0 < L; t0 += kTile) {
            // stage Δ, u and earlier groups' part of y: element (tt, cc), cc fastest (coalesced)
#pragma unroll
            for (int k = 0; k < kTile * kChannels / kThreads; ++k) {
                int i = threadIdx.x + k * kThreads, tt = i / kChannels, cc = i % kChannels;
                int64_t t = t0 + tt, dd = d0 + cc;
                bool ok = t < L && dd < D;
                int64_t idx = ok ? (b * L + t) * D + dd : 0;
                T raw = a.delta[idx], uu = a.u[idx];
                T yp = grp > 0 ? a.out[idx] : T(0);
                T dt = raw + (a.delta_bias && ok ? a.delta_bias[dd] : T(0));
                if (a.softplus) dt = scan::softplus(dt);
                s_dt[tt][cc] = ok ? dt : T(0); // padded steps: Δ = 0, the scan's identity
                s_u[tt][cc] = ok ? uu : T(0);
                s_y[tt][cc] = ok ? yp : T(0);
            }
            stage_bc(s_B, s_C, a.Bm, a.Cm, b, t0, grp, L, N);
            __syncthreads();
            for (int tt = 0; tt < kTile; ++tt) {
                T dt = s_dt[tt][p.c], du = dt * s_u[tt][p.c], y = 0;
#pragma unroll
                for (int j = 0; j < kPer; ++j) {
                    int s = p.q * kPer + j;
                    h[j] = exp2_dev(dt * A2[j]) * h[j] + du * s_B[tt][s];
                    y += s_C[tt][s] * h[j];
                }
                y = channel_sum(y);
                if (p.q == 0) s_y[tt][p.c] += y;
            }
            if (a.ckpt && active) {
                int64_t chunk = t0 / kTile;
#pragma unroll
                for (int j = 0; j < kPer; ++j) {
                    int64_t n = grp * kStates + p.q * kPer + j;
                    if (n < N) a.ckpt[((b * n_chunks + chunk) * D + d) * N + n] = h[j];
                }
            }
            __syncthreads();
            // write the tile's outputs (the last group adds D u and applies the gate)
#pragma unroll
            for (int k = 0; k < kTile * kChannels / kThreads; ++k) {
                int i = threadIdx.x + k * kThreads, tt = i / kChannels, cc = i % kChannels;
                int64_t t = t0 + tt, dd = d0 + cc;
                bool ok = t < L && dd < D;
                int64_t idx = ok ? (b * L + t) * D + dd : 0;
                T y = s_y[tt][cc];
                if (last_group) {
                    if (a.Dskip && ok) y += a.Dskip[dd] * s_u[tt][cc];
                    if (a.z) {
                        if (a.y && ok) a.y[idx] = y;
                        T zz = a.z[idx];
                        y *= zz * scan::sigmoid(zz);
                    }
                }
                if (ok) a.out[idx] = y;
            }
            __syncthreads();
        }
        if (a.last_state && active)
#pragma unroll
            for (int j = 0; j < kPer; ++j) {
                int64_t n = grp * kStates + p.q * kPer + j;
                if (n < N) a.last_state[(b * D + d) * N + n] = h[j];
            }
    }
}

// ---- backward -------------------------------------------------------------------------------
// Shared memory of the backward block, as offsets into one dynamic buffer.
template <typename T> struct BwdSmem {
    T (*dt)[kChannels];   // [kTile] Δ
    T (*u)[kChannels];    // [kTile]
    T (*dy)[kChannels];   // [kTile] dout·silu(z)
    T (*du)[kChannels];   // [kTile] du accumulated over state groups
    T (*dd)[kChannels];   // [kTile] ddelta accumulated over state groups
    T (*B)[kStates];      // [kTile]
    T (*C)[kStates];      // [kTile]
    T (*hist)[kStates][kHistStride]; // [kTile] h_t per state and channel
    T (*red)[kTile][32];  // [kWarps] warp sums of g Δ u (dB) and dy h (dC), 32 values per step
    static constexpr size_t elems() {
        return size_t(kTile) * (5 * kChannels + 2 * kStates + kStates * kHistStride) + size_t(kWarps) * kTile * 32;
    }
    __device__ explicit BwdSmem(T* p) {
        dt = reinterpret_cast<T(*)[kChannels]>(p); p += kTile * kChannels;
        u = reinterpret_cast<T(*)[kChannels]>(p); p += kTile * kChannels;
        dy = reinterpret_cast<T(*)[kChannels]>(p); p += kTile * kChannels;
        du = reinterpret_cast<T(*)[kChannels]>(p); p += kTile * kChannels;
        dd = reinterpret_cast<T(*)[kChannels]>(p); p += kTile * kChannels;
        B = reinterpret_cast<T(*)[kStates]>(p); p += kTile * kStates;
        C = reinterpret_cast<T(*)[kStates]>(p); p += kTile * kStates;
        hist = reinterpret_cast<T(*)[kStates][kHistStride]>(p); p += kTile * kStates * kHistStride;
        red = reinterpret_cast<T(*)[kTile][32]>(p);
    }
};

// Workspace: partial dB/dC per (b, channel block, t, 2N); dA per (b, d, N); dD and dbias per (b, d).
struct BwdWork {
    int64_t n_blocks, part, dA, dD, dbias, total;
    MG_HD BwdWork(int64_t B, int64_t L, int64_t D, int64_t N) {
        n_blocks = (D + kChannels - 1) / kChannels;
        part = 0;
        dA = part + B * n_blocks * L * 2 * N;
        dD = dA + B * D * N;
        dbias = dD + B * D;
        total = dbias + B * D;
    }
};

template <typename T>
__global__ void __launch_bounds__(kThreads) scan_bwd_kernel(ScanBwdArgs<T> a, T* work) {
    extern __shared__ unsigned char smem_raw[];
    BwdSmem<T> sm(reinterpret_cast<T*>(smem_raw));
    const ThreadPos p = thread_pos();
    const int cl = p.lane % kWarpChannels; // channel lane within the warp
    const int64_t b = blockIdx.y, blk = blockIdx.x, d0 = blk * kChannels, d = d0 + p.c;
    const bool active = d < a.D;
    const int64_t L = a.L, D = a.D, N = a.N, groups = n_groups(N), n_chunks = scan_n_chunks(L);
    const BwdWork w(a.B, L, D, N);
    T* part = work + w.part + (b * w.n_blocks + blk) * L * 2 * N;
    const T Dd = active && a.Dskip ? a.Dskip[d] : T(0);
    T dD_acc = 0, dbias_acc = 0; // meaningful on the q == 0 lane of each channel

    for (int64_t grp = 0; grp < groups; ++grp) {
        T A2[kPer], g_next[kPer], dA_acc[kPer];
#pragma unroll
        for (int j = 0; j < kPer; ++j) {
            int64_t n = grp * kStates + p.q * kPer + j;
            A2[j] = active && n < N ? T(double(a.A[d * N + n]) * scan::kLog2e) : T(0);
            g_next[j] = 0;
            dA_acc[j] = 0;
        }
        for (int64_t chunk = n_chunks - 1; chunk >= 0; --chunk) {
            const int64_t t0 = chunk * kTile;
            // 1. stage the tile (element (tt, cc), cc fastest); the first group also writes dz
#pragma unroll 4
            for (int k = 0; k < kTile * kChannels / kThreads; ++k) {
                int i = threadIdx.x + k * kThreads, tt = i / kChannels, cc = i % kChannels;
                int64_t t = t0 + tt, dd = d0 + cc;
                bool ok = t < L && dd < D;
                int64_t idx = ok ? (b * L + t) * D + dd : 0;
                T raw = a.delta[idx] + (a.delta_bias && ok ? a.delta_bias[dd] : T(0));
                T uu = a.u[idx], dy = a.dout[idx];
                T du0 = grp > 0 ? a.du[idx] : T(0), dd0 = grp > 0 ? a.ddelta[idx] : T(0);
                if (a.z) {
                    T zz = a.z[idx], yy = a.y[idx], sz = scan::sigmoid(zz);
                    if (grp == 0 && ok) a.dz[idx] = dy * yy * sz * (T(1) + zz * (T(1) - sz));
                    dy *= zz * sz;
                }
                sm.dt[tt][cc] = ok ? (a.softplus ? scan::softplus(raw) : raw) : T(0);
                sm.u[tt][cc] = ok ? uu : T(0);
                sm.dy[tt][cc] = ok ? dy : T(0);
                sm.du[tt][cc] = ok ? du0 : T(0);
                sm.dd[tt][cc] = ok ? dd0 : T(0);
            }
            stage_bc(sm.B, sm.C, a.Bm, a.Cm, b, t0, grp, L, N);
            // 2. the state before the tile, then recompute the tile's states
            T h0[kPer], h[kPer];
#pragma unroll
            for (int j = 0; j < kPer; ++j) {
                int64_t n = grp * kStates + p.q * kPer + j;
                bool ok = chunk > 0 && active && n < N;
                h0[j] = ok ? a.ckpt[((b * n_chunks + chunk - 1) * D + d) * N + n] : T(0);
                h[j] = h0[j];
            }
            __syncthreads();
            for (int tt = 0; tt < kTile; ++tt) { // padded steps (t >= L) have Δ = 0: identity
                T dt = sm.dt[tt][p.c], du = dt * sm.u[tt][p.c];
#pragma unroll
                for (int j = 0; j < kPer; ++j) {
                    int s = p.q * kPer + j;
                    h[j] = exp2_dev(dt * A2[j]) * h[j] + du * sm.B[tt][s];
                    sm.hist[tt][s][p.c] = h[j];
                }
            }
            // 3. the adjoint recurrence, backwards through the tile (each thread reads back only
            //    the history it wrote itself: no barrier needed between 2 and 3)
            for (int tt = kTile - 1; tt >= 0; --tt) {
                T dt = sm.dt[tt][p.c], uu = sm.u[tt][p.c], dy = sm.dy[tt][p.c];
                T ddt = 0, du = 0, v[kWarpChannels];
#pragma unroll
                for (int j = 0; j < kPer; ++j) {
                    int s = p.q * kPer + j;
                    T hp = tt > 0 ? sm.hist[tt - 1][s][p.c] : h0[j];
                    T ea = exp2_dev(dt * A2[j]);
                    T g = sm.C[tt][s] * dy + g_next[j];
                    T A = A2[j] * T(kLn2);
                    ddt += g * (sm.B[tt][s] * uu + A * ea * hp);
                    dA_acc[j] += g * dt * ea * hp;
                    du += g * dt * sm.B[tt][s];
                    v[j] = g * dt * uu;
                    v[kPer + j] = dy * sm.hist[tt][s][p.c];
                    g_next[j] = ea * g;
                }
                ddt = channel_sum(ddt);
                du = channel_sum(du);
                reduce_scatter_stage<kWarpChannels / 2>(v, p.lane);
                sm.red[p.warp][tt][p.q * kWarpChannels + cl] = v[0];
                if (p.q == 0) {
                    // d softplus(raw)/d raw = sigmoid(raw) = 1 − exp(−Δ) (exactly, from Δ =
                    // log1p(e^raw)); −expm1(−Δ) keeps it accurate for small Δ. Recomputed here
                    // rather than staged: the smaller shared footprint fits 4 blocks per SM.
                    using std::expm1;
                    T dd = ddt * (a.softplus ? -expm1(-dt) : T(1));
                    if (grp == 0) {
                        du += Dd * dy;
                        dD_acc += dy * uu;
                    }
                    sm.du[tt][p.c] += du;
                    sm.dd[tt][p.c] += dd;
                    if (t0 + tt < L) dbias_acc += dd;
                }
            }
            __syncthreads();
            // 4. write du, ddelta (coalesced), and this block's partial dB/dC: value index
            //    q·8 + cl of warp w is state q·4 + cl (dB) for cl < 4, state q·4 + cl − 4 (dC) else
#pragma unroll 4
            for (int k = 0; k < kTile * kChannels / kThreads; ++k) {
                int i = threadIdx.x + k * kThreads, tt = i / kChannels, cc = i % kChannels;
                int64_t t = t0 + tt, dd = d0 + cc;
                if (t >= L || dd >= D) continue;
                int64_t idx = (b * L + t) * D + dd;
                a.du[idx] = sm.du[tt][cc];
                a.ddelta[idx] = sm.dd[tt][cc];
            }
            for (int i = threadIdx.x; i < kTile * 32; i += kThreads) {
                int tt = i / 32, vi = i % 32, q = vi / kWarpChannels, r = vi % kWarpChannels;
                int64_t t = t0 + tt, n = grp * kStates + q * kPer + (r < kPer ? r : r - kPer);
                if (t >= L || n >= N) continue;
                T s = 0;
                for (int wi = 0; wi < kWarps; ++wi) s += sm.red[wi][tt][vi];
                part[t * 2 * N + (r < kPer ? 0 : N) + n] = s;
            }
            __syncthreads();
        }
        if (active)
#pragma unroll
            for (int j = 0; j < kPer; ++j) {
                int64_t n = grp * kStates + p.q * kPer + j;
                if (n < N) work[w.dA + (b * D + d) * N + n] = dA_acc[j];
            }
    }
    if (active && p.q == 0) {
        work[w.dD + b * D + d] = dD_acc;
        work[w.dbias + b * D + d] = dbias_acc;
    }
}

// dB[b,t,n] = Σ_blocks part[b, blk, t, n]; dC likewise (blocks in order).
template <typename T>
__global__ void scan_reduce_dbc_kernel(int64_t total, T* dB, T* dC, const T* work, int64_t n_blocks, int64_t L, int64_t N) {
    MG_GRID_LOOP(j, total) { // j over (b, t, col) with col in [0, 2N)
        int64_t col = j % (2 * N), bt = j / (2 * N), b = bt / L, t = bt % L;
        T s = 0;
        for (int64_t blk = 0; blk < n_blocks; ++blk) s += work[((b * n_blocks + blk) * L + t) * 2 * N + col];
        if (col < N) dB[bt * N + col] = s;
        else dC[bt * N + col - N] = s;
    }
}

// dA[d,n] = Σ_b dA_part[b,d,n]; dD[d], dbias[d] likewise (batch in order).
template <typename T>
__global__ void scan_reduce_params_kernel(int64_t total, T* dA, T* dD, T* dbias, const T* work, BwdWork w,
                                          int64_t B, int64_t D, int64_t N) {
    MG_GRID_LOOP(j, total) { // j over (d, n)
        int64_t d = j / N, n = j % N;
        T s = 0;
        for (int64_t b = 0; b < B; ++b) s += work[w.dA + (b * D + d) * N + n];
        dA[j] = s;
        if (n == 0) {
            T sD = 0, sb = 0;
            for (int64_t b = 0; b < B; ++b) {
                sD += work[w.dD + b * D + d];
                sb += work[w.dbias + b * D + d];
            }
            if (dD) dD[d] = sD;
            if (dbias) dbias[d] = sb;
        }
    }
}

} // namespace

int64_t scan_bwd_workspace_elems(int64_t B, int64_t L, int64_t D, int64_t N) { return BwdWork(B, L, D, N).total; }

template <typename T> void selective_scan_fwd(const ScanFwdArgs<T>& a) {
    if (a.B == 0 || a.D == 0 || a.L == 0) return;
    dim3 grid(unsigned(ceil_div(a.D, kChannels)), unsigned(a.B));
    scan_fwd_kernel<T><<<grid, kThreads>>>(a);
    CUDA_CHECK_LAUNCH();
}

template <typename T> void selective_scan_bwd(const ScanBwdArgs<T>& a, T* work) {
    if (a.B == 0 || a.D == 0 || a.L == 0) return;
    const BwdWork w(a.B, a.L, a.D, a.N);
    size_t smem = BwdSmem<T>::elems() * sizeof(T);
    static bool attr_set = false; // once per instantiation: allow more than 48 KiB of shared memory
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(scan_bwd_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
        attr_set = true;
    }
    dim3 grid(unsigned(w.n_blocks), unsigned(a.B));
    scan_bwd_kernel<T><<<grid, kThreads, smem>>>(a, work);
    CUDA_CHECK_LAUNCH();
    launch_linear(scan_reduce_dbc_kernel<T>, a.B * a.L * 2 * a.N, a.dB, a.dC, (const T*)work, w.n_blocks, a.L, a.N);
    launch_linear(scan_reduce_params_kernel<T>, a.D * a.N, a.dA, a.dD, a.ddelta_bias, (const T*)work, w, a.B, a.D, a.N);
}

template void selective_scan_fwd<float>(const ScanFwdArgs<float>&);
template void selective_scan_fwd<double>(const ScanFwdArgs<double>&);
template void selective_scan_bwd<float>(const ScanBwdArgs<float>&, float*);
template void selective_scan_bwd<double>(const ScanBwdArgs<double>&, double*);

} // namespace mg::cuda
