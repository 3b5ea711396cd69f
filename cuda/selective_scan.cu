// cuda/selective_scan.cu: the selective scan on the GPU (version v4 of the kernel lab in bench/RESULTS.md).
//
// Mapping. A block owns kChannels = 32 channels (b fixed) and walks time sequentially. Each
// channel's 16 states are split over kLanes = 4 threads (4 states each): at B·D = 12288 channels
// that is 1536 warps (with one thread per channel, the first version ran 2.9 warps per SM and
// stalled 88% of cycles: see bench/RESULTS.md). N > 16 runs the time loop once per group of 16
// states, adding each group's part of y, du and ddelta into the outputs in group order.
//
// Lane layout inside a warp: lane = q·8 + c (q = which 4 states, c = one of 8 channels).
//
// Time is processed in tiles of kScanChunk = 16 steps. Staging: thread tid stages the elements
// (tt, cc) = (tid/32 + 4k, tid % 32), k = 0..3 (coalesced: 32 consecutive channels per step),
// applies Δ's bias and softplus once per element, and keeps u, z (and in the backward dy, the
// softplus derivative) in registers for the write-out of the same elements. The next tile's
// global loads are issued right after the barrier, so they are in flight while the tile computes.
// The time loops are unrolled over the tile: every step's shared loads, exponentials and
// reductions are independent of the previous step except for the recurrence itself (one FMA per
// state), so the scheduler overlaps steps.
//
// Forward: h_t = 2^(Δ_t A log2 e) h_{t-1} + (Δ_t u_t) B_t per state; each lane writes its 4
// states' share of y_t = C_t·h_t to shared memory and the write-out sums the 4 shares in lane
// order (no shuffles). It saves the state at the end of every tile (ckpt, (B, L/16, D, N)).
//
// Backward walks tiles from last to first: it reloads the state before the tile from ckpt,
// recomputes the tile's 16 states × 4 into registers (64 per thread, never shared memory), then
// runs the adjoint g_t = C_t dy_t + exp(Δ_{t+1} A) g_{t+1} backwards through the tile:
//   du_t  = Δ_t Σ_n g_t,n B_t,n            dΔ_t = u_t Σ_n g_t,n B_t,n + Σ_n A_n w_t,n
//   dA_n += Δ_t w_t,n,  w_t,n = exp(Δ_t A_n) g_t,n h_{t-1},n
//   dB_t,n = Σ_d g_t,n Δ_t u_t              dC_t,n = Σ_d dy_t h_t,n
// du and dΔ: each lane writes its 4 states' share, the write-out sums the 4 in lane order. dB
// and dC: each thread writes its 8 values per step to shared memory; every 8 steps the block sums
// them over its 32 channels (two threads per 4 values, 16 channels each, then one shuffle) and
// writes one partial per block; a second kernel sums the blocks in order.
//
// Determinism: no atomics anywhere; every sum runs in a fixed order, so the same inputs give
// bit-identical gradients. dA, dD and ddelta_bias are summed over time in registers and over the
// batch in order by the second pass.
#include "cuda/launch.h"
#include "cuda/selective_scan.h"
#include "cuda/warp.h"
#include "common/activation.h"
#include "common/selective_scan.h"

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
constexpr int kRows = kTile * kChannels / kThreads;  // tile elements each thread stages (4)
constexpr int kBCRows = kTile * kStates / kThreads;  // B (and C) values each thread stages (2)
constexpr int kSub = 8;                      // backward: steps between dB/dC block reductions
constexpr int kBCVals = 2 * kStates;         // dB and dC values per channel and step
constexpr int kBCStride = kBCVals + 4;       // padded: a quarter-warp's 16-byte stores hit distinct banks
constexpr int kDDStride = kChannels + 8;     // padded: the two lane quarters of a half-warp hit distinct banks
constexpr double kLn2 = 0.6931471805599453;

static_assert(kPer == 4, "one 4-vector of states per thread");
static_assert(kTile % kSub == 0 && kSub * kChannels * kBCVals / 4 == kThreads * 16, "dB/dC reduction: 2 threads per 4 values");

template <typename T> struct alignas(4 * sizeof(T)) Quad { T v[4]; };
// One time step's input to the recurrence h = exp(Δ A) h + (Δ u) B: Δ sets the decay, Δ u the input.
template <typename T> struct alignas(2 * sizeof(T)) StepIn { T delta, delta_u; };
// One lane's share of a step's gradients with respect to Δ and u.
template <typename T> struct alignas(2 * sizeof(T)) StepGrad { T ddelta, du; };

// 2^x. Float: the hardware's approximate exp2 (relative error about 2^-22; −inf gives 0, NaN
// stays NaN; results below 2^-126 flush to 0, i.e. full decay).
__device__ __forceinline__ float ex2(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}
__device__ __forceinline__ double ex2(double x) { return exp2(x); }

MG_HD int64_t n_groups(int64_t N) { return (N + kStates - 1) / kStates; }

struct ThreadPos {
    int q, c;  // state quarter, channel in block (compute mapping)
    int cc, r; // staged channel, first staged step (staging mapping: steps r + 4k)
};
__device__ __forceinline__ ThreadPos thread_pos() {
    ThreadPos p;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    p.q = lane / kWarpChannels;
    p.c = warp * kWarpChannels + lane % kWarpChannels;
    p.cc = threadIdx.x % kChannels;
    p.r = threadIdx.x / kChannels;
    return p;
}

// The loads, the staging and the write-out loops each spell out the staging mapping (element k
// is step r + 4k of the tile, channel d0 + cc) rather than call a helper: with the mapping in one
// inline function nvcc allocated the forward kernel 80 registers instead of 96 (and the backward
// 32 more bytes of spills; a helper returning just r + 4k still moved the forward to 80 with a
// spill), and the scan ran 5-7% slower (H200, 2026-11-30, bench/RESULTS.md kernel lab).

// B_t,n and C_t,n of one tile and state group, as registers (zeros outside the sequence and
// past N); thread i holds values i and i + 128 of the tile's 16×16.
template <typename T> struct BCRegs { T B[kBCRows], C[kBCRows]; };
template <typename T>
__device__ __forceinline__ void load_bc(BCRegs<T>& r, const T* Bm, const T* Cm, int64_t b, int64_t t0, int64_t grp,
                                        int64_t L, int64_t N) {
#pragma unroll
    for (int k = 0; k < kBCRows; ++k) {
        int i = threadIdx.x + k * kThreads, tt = i / kStates, s = i % kStates;
        int64_t t = t0 + tt, n = grp * kStates + s;
        bool ok = t < L && n < N;
        int64_t idx = (b * L + t) * N + n;
        r.B[k] = ok ? Bm[idx] : T(0);
        r.C[k] = ok ? Cm[idx] : T(0);
    }
}
template <typename T> __device__ __forceinline__ void store_bc(T (*sB)[kStates], T (*sC)[kStates], const BCRegs<T>& r) {
#pragma unroll
    for (int k = 0; k < kBCRows; ++k) {
        int i = threadIdx.x + k * kThreads;
        sB[i / kStates][i % kStates] = r.B[k];
        sC[i / kStates][i % kStates] = r.C[k];
    }
}

// This thread's 4 states of a (b, d, group) state vector in a (…, D, N) array: one 16-byte
// access when N allows it.
template <typename T> __device__ __forceinline__ void load_states(T (&h)[kPer], const T* p, int64_t n0, int64_t N, bool ok) {
    if (ok && N % kPer == 0 && n0 + kPer <= N) {
        Quad<T> v = *reinterpret_cast<const Quad<T>*>(p + n0);
#pragma unroll
        for (int j = 0; j < kPer; ++j) h[j] = v.v[j];
    } else {
#pragma unroll
        for (int j = 0; j < kPer; ++j) h[j] = ok && n0 + j < N ? p[n0 + j] : T(0);
    }
}
template <typename T> __device__ __forceinline__ void store_states(T* p, const T (&h)[kPer], int64_t n0, int64_t N) {
    if (N % kPer == 0 && n0 + kPer <= N) {
        Quad<T> v;
#pragma unroll
        for (int j = 0; j < kPer; ++j) v.v[j] = h[j];
        *reinterpret_cast<Quad<T>*>(p + n0) = v;
    } else {
#pragma unroll
        for (int j = 0; j < kPer; ++j)
            if (n0 + j < N) p[n0 + j] = h[j];
    }
}

// ---- forward --------------------------------------------------------------------------------
template <typename T> struct FwdRegs {
    T raw[kRows], u[kRows], z[kRows], prev[kRows];
    BCRegs<T> bc;
};
// Global loads of one tile (issued a tile ahead). Element k is (t0 + r + 4k, d0 + cc).
template <typename T>
__device__ __forceinline__ void load_fwd(FwdRegs<T>& x, const ScanFwdArgs<T>& a, const ThreadPos& p, int64_t b, int64_t d0,
                                         int64_t t0, int64_t grp) {
    const int64_t L = a.L, D = a.D, dd = d0 + p.cc;
#pragma unroll
    for (int k = 0; k < kRows; ++k) {
        int64_t t = t0 + p.r + k * (kThreads / kChannels);
        bool ok = t < L && dd < D;
        int64_t idx = (b * L + t) * D + dd;
        x.raw[k] = ok ? a.delta[idx] : T(0);
        x.u[k] = ok ? a.u[idx] : T(0);
        x.z[k] = ok && a.z ? a.z[idx] : T(0);
        x.prev[k] = ok && grp > 0 ? a.out[idx] : T(0);
    }
    load_bc(x.bc, a.Bm, a.Cm, b, t0, grp, L, a.N);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) scan_fwd_kernel(ScanFwdArgs<T> a) {
    __shared__ StepIn<T> s_in[kTile][kChannels];
    __shared__ Quad<T> s_B[kTile][kLanes], s_C[kTile][kLanes];
    __shared__ T s_yp[kTile][kLanes][kChannels];      // each lane's share of y
    const ThreadPos p = thread_pos();
    const int64_t b = blockIdx.y, d0 = int64_t(blockIdx.x) * kChannels, d = d0 + p.c, ds = d0 + p.cc;
    const bool active = d < a.D, sactive = ds < a.D;
    const int64_t L = a.L, D = a.D, N = a.N, groups = n_groups(N), n_chunks = scan_n_chunks(L);
    const T bias = sactive && a.delta_bias ? a.delta_bias[ds] : T(0);
    const T Dd = sactive && a.Dskip ? a.Dskip[ds] : T(0);

    for (int64_t grp = 0; grp < groups; ++grp) {
        const bool last_group = grp == groups - 1;
        const int64_t n0 = grp * kStates + p.q * kPer;
        T h[kPer], A2[kPer];
        load_states(A2, a.A + d * N, n0, N, active);
#pragma unroll
        for (int j = 0; j < kPer; ++j) A2[j] = T(double(A2[j]) * scan::kLog2e);
        load_states(h, a.h0 ? a.h0 + (b * D + d) * N : nullptr, n0, N, active && a.h0);
        FwdRegs<T> x;
        load_fwd(x, a, p, b, d0, 0, grp);
        for (int64_t t0 = 0; t0 < L; t0 += kTile) {
            // stage: Δ (bias, softplus; 0 on padded steps, the scan's identity) and Δ u
            T u_c[kRows], z_c[kRows], prev_c[kRows];
#pragma unroll
            for (int k = 0; k < kRows; ++k) {
                int tt = p.r + k * (kThreads / kChannels);
                bool ok = t0 + tt < L && sactive;
                T dt = x.raw[k] + bias;
                if (a.softplus) dt = softplus_of(dt);
                dt = ok ? dt : T(0);
                s_in[tt][p.cc] = StepIn<T>{dt, dt * x.u[k]};
                u_c[k] = x.u[k];
                z_c[k] = x.z[k];
                prev_c[k] = x.prev[k];
            }
            store_bc(reinterpret_cast<T(*)[kStates]>(s_B), reinterpret_cast<T(*)[kStates]>(s_C), x.bc);
            __syncthreads();
            if (t0 + kTile < L) load_fwd(x, a, p, b, d0, t0 + kTile, grp); // in flight during the tile
#pragma unroll
            for (int tt = 0; tt < kTile; ++tt) {
                const StepIn<T> in = s_in[tt][p.c];
                const Quad<T> Bq = s_B[tt][p.q], Cq = s_C[tt][p.q];
                T y = 0;
#pragma unroll
                for (int j = 0; j < kPer; ++j) {
                    h[j] = ex2(in.delta * A2[j]) * h[j] + in.delta_u * Bq.v[j];
                    y += Cq.v[j] * h[j];
                }
                s_yp[tt][p.q][p.c] = y;
            }
            if (a.ckpt && active) store_states(a.ckpt + ((b * n_chunks + t0 / kTile) * D + d) * N, h, n0, N);
            __syncthreads();
            // write the tile's outputs (the last group adds D u and applies the gate)
#pragma unroll
            for (int k = 0; k < kRows; ++k) {
                int tt = p.r + k * (kThreads / kChannels);
                int64_t t = t0 + tt;
                T y = ((s_yp[tt][0][p.cc] + s_yp[tt][1][p.cc]) + s_yp[tt][2][p.cc]) + s_yp[tt][3][p.cc];
                if (grp > 0) y = prev_c[k] + y;
                if (t >= L || !sactive) continue;
                int64_t idx = (b * L + t) * D + ds;
                if (last_group) {
                    y += Dd * u_c[k];
                    if (a.z) {
                        if (a.y) a.y[idx] = y;
                        T zz = z_c[k];
                        y *= zz * sigmoid_of(zz);
                    }
                }
                a.out[idx] = y;
            }
        }
        if (a.last_state && active) store_states(a.last_state + (b * D + d) * N, h, n0, N);
    }
}

// ---- backward -------------------------------------------------------------------------------
// Shared memory of the backward block, as offsets into one dynamic buffer.
template <typename T> struct BwdSmem {
    Quad<T> (*in)[kChannels];              // [kTile] (Δ, u, dy, Δ u), dy = dout·silu(z)
    Quad<T> (*B)[kLanes];                  // [kTile]
    Quad<T> (*C)[kLanes];                  // [kTile]
    StepGrad<T> (*dd)[kLanes][kDDStride];  // [kTile] each lane's share of (dΔ, du)
    T (*bc)[kChannels][kBCStride];         // [kSub] per channel: 16 dB then 16 dC values
    T (*fin)[kWarps][kChannels];           // [2] dD, dbias partials of the 4 staging rows
    static constexpr size_t elems() {
        return size_t(kTile) * kChannels * 4 + 2 * size_t(kTile) * kStates + size_t(kTile) * kLanes * kDDStride * 2 +
               size_t(kSub) * kChannels * kBCStride + 2 * size_t(kWarps) * kChannels;
    }
    __device__ explicit BwdSmem(T* p) {
        in = reinterpret_cast<Quad<T>(*)[kChannels]>(p); p += kTile * kChannels * 4;
        B = reinterpret_cast<Quad<T>(*)[kLanes]>(p); p += kTile * kStates;
        C = reinterpret_cast<Quad<T>(*)[kLanes]>(p); p += kTile * kStates;
        dd = reinterpret_cast<StepGrad<T>(*)[kLanes][kDDStride]>(p); p += kTile * kLanes * kDDStride * 2;
        bc = reinterpret_cast<T(*)[kChannels][kBCStride]>(p); p += kSub * kChannels * kBCStride;
        fin = reinterpret_cast<T(*)[kWarps][kChannels]>(p);
    }
};

// Workspace: partial dB/dC per (b, channel block, t, group, 32 values); dA per (b, d, N); dD and
// dbias per (b, d).
struct BwdWork {
    int64_t n_blocks, groups, part, dA, dD, dbias, total;
    MG_HD BwdWork(int64_t B, int64_t L, int64_t D, int64_t N) {
        n_blocks = (D + kChannels - 1) / kChannels;
        groups = n_groups(N);
        part = 0;
        dA = part + B * n_blocks * L * groups * kBCVals;
        dD = dA + B * D * N;
        dbias = dD + B * D;
        total = dbias + B * D;
    }
};

template <typename T> struct BwdRegs {
    T raw[kRows], u[kRows], dout[kRows], z[kRows], y[kRows];
    T h0[kPer]; // the state before the tile (checkpoint)
    BCRegs<T> bc;
};
template <typename T>
__device__ __forceinline__ void load_bwd(BwdRegs<T>& x, const ScanBwdArgs<T>& a, const ThreadPos& p, int64_t b, int64_t d0,
                                         int64_t chunk, int64_t grp) {
    const int64_t L = a.L, D = a.D, N = a.N, dd = d0 + p.cc, t0 = chunk * kTile;
#pragma unroll
    for (int k = 0; k < kRows; ++k) {
        int64_t t = t0 + p.r + k * (kThreads / kChannels);
        bool ok = t < L && dd < D;
        int64_t idx = (b * L + t) * D + dd;
        x.raw[k] = ok ? a.delta[idx] : T(0);
        x.u[k] = ok ? a.u[idx] : T(0);
        x.dout[k] = ok ? a.dout[idx] : T(0);
        x.z[k] = ok && a.z ? a.z[idx] : T(0);
        x.y[k] = ok && a.z ? a.y[idx] : T(0);
    }
    const int64_t d = d0 + p.c;
    load_states(x.h0, chunk > 0 ? a.ckpt + ((b * scan_n_chunks(L) + chunk - 1) * D + d) * N : nullptr,
                grp * kStates + p.q * kPer, N, chunk > 0 && d < D);
    load_bc(x.bc, a.Bm, a.Cm, b, t0, grp, L, N);
}

template <typename T> constexpr int bwd_min_blocks() { return sizeof(T) == 4 ? 3 : 1; }

template <typename T>
__global__ void __launch_bounds__(kThreads, bwd_min_blocks<T>()) scan_bwd_kernel(ScanBwdArgs<T> a, T* work) {
    extern __shared__ unsigned char smem_raw[];
    BwdSmem<T> sm(reinterpret_cast<T*>(smem_raw));
    const ThreadPos p = thread_pos();
    const int64_t b = blockIdx.y, blk = blockIdx.x, d0 = blk * kChannels, d = d0 + p.c, ds = d0 + p.cc;
    const bool active = d < a.D, sactive = ds < a.D;
    const int64_t L = a.L, D = a.D, N = a.N, groups = n_groups(N), n_chunks = scan_n_chunks(L);
    const BwdWork w(a.B, L, D, N);
    T* part = work + w.part + (b * w.n_blocks + blk) * L * groups * kBCVals;
    const T bias = sactive && a.delta_bias ? a.delta_bias[ds] : T(0);
    const T Dd = sactive && a.Dskip ? a.Dskip[ds] : T(0);
    T dD_acc = 0, dbias_acc = 0; // this thread's staged elements
    // dB/dC reduction mapping: 4 values (vq) of one step (s8), over channels of one parity half
    const int r_vq = threadIdx.x % 8, r_half = (threadIdx.x / 8) % 2, r_s8 = threadIdx.x / 16;

    for (int64_t grp = 0; grp < groups; ++grp) {
        const bool last_group = grp == groups - 1;
        const int64_t n0 = grp * kStates + p.q * kPer;
        T A2[kPer], gn[kPer], dA[kPer];
        load_states(A2, a.A + d * N, n0, N, active);
#pragma unroll
        for (int j = 0; j < kPer; ++j) {
            A2[j] = T(double(A2[j]) * scan::kLog2e);
            gn[j] = 0;
            dA[j] = 0;
        }
        BwdRegs<T> x;
        load_bwd(x, a, p, b, d0, n_chunks - 1, grp);
        for (int64_t chunk = n_chunks - 1; chunk >= 0; --chunk) {
            const int64_t t0 = chunk * kTile;
            // 1. stage the tile; the first group also writes dz and sums dD
            T sp[kRows], du_c[kRows];
#pragma unroll
            for (int k = 0; k < kRows; ++k) {
                int tt = p.r + k * (kThreads / kChannels);
                int64_t t = t0 + tt;
                bool ok = t < L && sactive;
                T dt = x.raw[k] + bias, dy = x.dout[k], uu = x.u[k];
                sp[k] = T(1);
                if (a.softplus) {
                    dt = softplus_of(dt);
                    // d softplus(raw)/d raw = sigmoid(raw) = 1 − exp(−Δ) exactly, as Δ = log1p(e^raw);
                    // −expm1(−Δ) keeps it accurate for small Δ
                    using std::expm1;
                    sp[k] = -expm1(-dt);
                }
                if (a.z) {
                    T zz = x.z[k], sz = sigmoid_of(zz);
                    if (grp == 0 && ok) a.dz[(b * L + t) * D + ds] = dy * x.y[k] * sz * (T(1) + zz * (T(1) - sz));
                    dy *= zz * sz;
                }
                dt = ok ? dt : T(0);
                uu = ok ? uu : T(0);
                dy = ok ? dy : T(0);
                if (grp == 0) dD_acc += dy * uu;
                du_c[k] = last_group ? Dd * dy : T(0);
                sm.in[tt][p.cc] = Quad<T>{{dt, uu, dy, dt * uu}};
            }
            store_bc(reinterpret_cast<T(*)[kStates]>(sm.B), reinterpret_cast<T(*)[kStates]>(sm.C), x.bc);
            T h0[kPer];
#pragma unroll
            for (int j = 0; j < kPer; ++j) h0[j] = x.h0[j];
            __syncthreads();
            if (chunk > 0) load_bwd(x, a, p, b, d0, chunk - 1, grp); // in flight during the tile
            // 2. recompute the tile's states into registers
            T hist[kTile][kPer];
#pragma unroll
            for (int tt = 0; tt < kTile; ++tt) {
                const Quad<T> in = sm.in[tt][p.c], Bq = sm.B[tt][p.q];
#pragma unroll
                for (int j = 0; j < kPer; ++j)
                    hist[tt][j] = ex2(in.v[0] * A2[j]) * (tt > 0 ? hist[tt - 1][j] : h0[j]) + in.v[3] * Bq.v[j];
            }
            // 3. the adjoint recurrence, backwards through the tile
#pragma unroll
            for (int tt = kTile - 1; tt >= 0; --tt) {
                const Quad<T> in = sm.in[tt][p.c], Bq = sm.B[tt][p.q], Cq = sm.C[tt][p.q];
                const T dt = in.v[0], uu = in.v[1], dy = in.v[2], dtu = in.v[3];
                T sB = 0, sAw = 0;
                Quad<T> vB, vC;
#pragma unroll
                for (int j = 0; j < kPer; ++j) {
                    const T ea = ex2(dt * A2[j]);
                    const T g = Cq.v[j] * dy + gn[j];
                    sB += g * Bq.v[j];
                    gn[j] = ea * g;
                    const T wv = gn[j] * (tt > 0 ? hist[tt - 1][j] : h0[j]);
                    sAw += A2[j] * wv;
                    dA[j] += dt * wv;
                    vB.v[j] = g * dtu;
                    vC.v[j] = dy * hist[tt][j];
                }
                sm.dd[tt][p.q][p.c] = StepGrad<T>{uu * sB + T(kLn2) * sAw, dt * sB};
                *reinterpret_cast<Quad<T>*>(&sm.bc[tt % kSub][p.c][p.q * kPer]) = vB;
                *reinterpret_cast<Quad<T>*>(&sm.bc[tt % kSub][p.c][kStates + p.q * kPer]) = vC;
                if (tt % kSub == 0) {
                    // dB/dC of steps tt .. tt+7 over the block's 32 channels (fixed order)
                    __syncthreads();
                    Quad<T> s{};
#pragma unroll 4
                    for (int i = 0; i < kChannels / 2; ++i) {
                        const Quad<T> v = *reinterpret_cast<const Quad<T>*>(&sm.bc[r_s8][2 * i + r_half][r_vq * 4]);
#pragma unroll
                        for (int j = 0; j < 4; ++j) s.v[j] += v.v[j];
                    }
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        const T o = __shfl_xor_sync(0xffffffffu, s.v[j], 8);
                        s.v[j] += o; // a + b == b + a: both lanes hold the same sum
                    }
                    const int64_t t = t0 + tt + r_s8;
                    if (r_half == 0 && t < L)
                        *reinterpret_cast<Quad<T>*>(part + (t * groups + grp) * kBCVals + r_vq * 4) = s;
                    __syncthreads();
                }
            }
            // 4. write du, ddelta (coalesced): the 4 lanes' shares in lane order
#pragma unroll
            for (int k = 0; k < kRows; ++k) {
                int tt = p.r + k * (kThreads / kChannels);
                int64_t t = t0 + tt;
                T ddt = ((sm.dd[tt][0][p.cc].ddelta + sm.dd[tt][1][p.cc].ddelta) + sm.dd[tt][2][p.cc].ddelta) + sm.dd[tt][3][p.cc].ddelta;
                T du = ((sm.dd[tt][0][p.cc].du + sm.dd[tt][1][p.cc].du) + sm.dd[tt][2][p.cc].du) + sm.dd[tt][3][p.cc].du;
                if (t >= L || !sactive) continue;
                int64_t idx = (b * L + t) * D + ds;
                if (grp > 0) { // earlier groups' shares (raw dΔ, before the softplus derivative)
                    ddt = a.ddelta[idx] + ddt;
                    du = a.du[idx] + du;
                }
                if (last_group) {
                    ddt *= sp[k];
                    dbias_acc += ddt;
                }
                a.du[idx] = du_c[k] + du;
                a.ddelta[idx] = ddt;
            }
            // (the next tile's staging writes sm.in/B/C only after every thread has passed the
            //  last barrier of step 3, and sm.dd after the next staging barrier)
        }
        if (active) store_states(work + w.dA + (b * D + d) * N, dA, n0, N);
    }
    // dD and dbias: the 4 staging rows of each channel, summed in row order
    sm.fin[0][p.r][p.cc] = dD_acc;
    sm.fin[1][p.r][p.cc] = dbias_acc;
    __syncthreads();
    if (threadIdx.x < kChannels && sactive) {
        T sD = 0, sb = 0;
        for (int r = 0; r < kWarps; ++r) {
            sD += sm.fin[0][r][p.cc];
            sb += sm.fin[1][r][p.cc];
        }
        work[w.dD + b * D + ds] = sD;
        work[w.dbias + b * D + ds] = sb;
    }
}

// dB[b,t,n] = Σ_blocks part[b, blk, t, n]; dC likewise (blocks in order).
template <typename T>
__global__ void scan_reduce_dbc_kernel(int64_t total, T* dB, T* dC, const T* work, BwdWork w, int64_t L, int64_t N) {
    MG_GRID_LOOP(j, total) { // j over (b, t, col) with col in [0, 2N)
        int64_t col = j % (2 * N), bt = j / (2 * N), b = bt / L, t = bt % L;
        int64_t n = col < N ? col : col - N, v = (n % kStates) + (col < N ? 0 : kStates);
        const T* src = work + w.part + ((b * w.n_blocks * L + t) * w.groups + n / kStates) * kBCVals + v;
        const int64_t stride = L * w.groups * kBCVals;
        T s = 0;
#pragma unroll 8
        for (int64_t blk = 0; blk < w.n_blocks; ++blk) s += src[blk * stride];
        if (col < N) dB[bt * N + col] = s;
        else dC[bt * N + col - N] = s;
    }
}

// dA[d,n] = Σ_b dA_part[b,d,n]; dD[d], dbias[d] likewise. A warp per output value (outputs q <
// D·N are dA, then D of dD, then D of dbias): lane l sums batches l, l + 32, ... in order, then
// a butterfly over the lanes (a + b == b + a: every lane ends with the same bits; the same inputs
// always give the same result). A thread per value (the first version) ran 16 blocks at the
// zoology shape and waited on 64 dependent loads each: 19 µs for 1 MB.
template <typename T>
__global__ void scan_reduce_params_kernel(int64_t total, T* dA, T* dD, T* dbias, const T* work, BwdWork w,
                                          int64_t B, int64_t D, int64_t N) {
    const int lane = threadIdx.x % 32;
    const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
    for (int64_t q = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; q < total; q += warps) {
        T* out;
        const T* src;
        int64_t stride;
        if (q < D * N) {
            out = dA + q, src = work + w.dA + q, stride = D * N;
        } else if (q < D * N + D) {
            out = dD ? dD + (q - D * N) : nullptr, src = work + w.dD + (q - D * N), stride = D;
        } else {
            out = dbias ? dbias + (q - D * N - D) : nullptr, src = work + w.dbias + (q - D * N - D), stride = D;
        }
        if (!out) continue; // the whole warp skips together
        T s = 0;
        for (int64_t b = lane; b < B; b += 32) s += src[b * stride];
        s = warp_sum(s);
        if (lane == 0) *out = s;
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
    const size_t smem = BwdSmem<T>::elems() * sizeof(T);
    allow_dynamic_smem(scan_bwd_kernel<T>, smem);
    dim3 grid(unsigned(w.n_blocks), unsigned(a.B));
    scan_bwd_kernel<T><<<grid, kThreads, smem>>>(a, work);
    CUDA_CHECK_LAUNCH();
    launch_linear(scan_reduce_dbc_kernel<T>, a.B * a.L * 2 * a.N, a.dB, a.dC, (const T*)work, w, a.L, a.N);
    const int64_t n_params = a.D * a.N + 2 * a.D;
    scan_reduce_params_kernel<T><<<blocks_for(n_params * 32), kBlock>>>(n_params, a.dA, a.dD, a.ddelta_bias,
                                                                         (const T*)work, w, a.B, a.D, a.N);
    CUDA_CHECK_LAUNCH();
}

template void selective_scan_fwd<float>(const ScanFwdArgs<float>&);
template void selective_scan_fwd<double>(const ScanFwdArgs<double>&);
template void selective_scan_bwd<float>(const ScanBwdArgs<float>&, float*);
template void selective_scan_bwd<double>(const ScanBwdArgs<double>&, double*);

} // namespace mg::cuda
