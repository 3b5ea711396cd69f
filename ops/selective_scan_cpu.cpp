// ops/selective_scan_cpu.cpp: the CPU kernels of the selective scan (selective_scan_fwd_cpu,
// selective_scan_bwd_cpu), vectorised and blocked; the plain loops they are tested against are
// selective_scan_ref and selective_scan_bwd_ref in ops/selective_scan.cpp.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/activation.h"
#include "common/selective_scan.h"
#include "ops/dispatch.h"
#include "ops/selective_scan.h"
#include "ops/vec_math.h"

namespace mg {

// ---- CPU kernels ----------------------------------------------------------------------------
// Both kernels give an OpenMP task one batch element and a block of kCpuBlock consecutive
// channels (contiguous in the (B, L, D) layout). A block at the end of D is padded with channels
// whose u (and dout) are 0: their states and gradients stay 0, so every state loop runs over
// exactly kCpuBlock lanes with no branch (packed SIMD), and the padded lanes add exact zeros to
// the sums over channels. Time is cut into chunks of kCpuScanChunk steps. Per chunk the task
// copies its rows of the (B, L, D) inputs into [chunk][kCpuBlock] buffers (and prefetches the next
// chunk's rows: a task reads 64 bytes of every 4·D-byte row, which the hardware prefetchers do not
// follow), runs the per-element math (softplus of Δ, the gate) as flat vectorised loops, then the
// state recurrence, and writes its output rows back. The transcendental functions are
// ops/vec_math.h's for float (branch-free, so the loops vectorise) and libm for double. The float
// tasks are compiled twice, for baseline x86-64 and for AVX2 + FMA (vm::use_avx2() picks).
namespace {

constexpr int64_t kCpuBlock = 16;

// The state loops work on whole vectors of 32 bytes (8 floats or 4 doubles; GCC's vector
// extension: one AVX register in the AVX2 build, two SSE registers in the baseline build), so
// that their per-step accumulators stay in registers across the loop over states: written as
// `omp simd` loops over arrays, GCC kept them in memory, a store-to-load chain per state.
#pragma GCC diagnostic ignored "-Wpsabi" // vectors by value, always inlined: see ops/vec_math.h
template <typename T> struct Packed {
    typedef T type __attribute__((vector_size(32)));
};
template <typename T> using Vec = typename Packed<T>::type;
template <typename T> constexpr int kLanes = int(sizeof(Vec<T>) / sizeof(T));
template <typename T> constexpr int kVecs = int(kCpuBlock) / kLanes<T>; // vectors per block of channels
template <typename T> inline Vec<T> vload(const T* p) {
    Vec<T> v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
template <typename T> inline void vstore(T* p, Vec<T> v) { std::memcpy(p, &v, sizeof v); }
template <typename T> inline Vec<T> splat(T x) { // x in every lane: one broadcast
    Vec<T> v;
    for (int i = 0; i < kLanes<T>; ++i) v[i] = x;
    return v;
}

// The decay 2^x: vm::exp2_decay for float (range-limited, cheap), libm for double.
inline Vec<float> exp2_c(Vec<float> x) { return vm::exp2_decay(x); }
inline Vec<double> exp2_c(Vec<double> x) {
    for (int i = 0; i < kLanes<double>; ++i) x[i] = std::exp2(x[i]);
    return x;
}
inline float softplus_c(float x) { return vm::softplus(x); }
inline double softplus_c(double x) { return softplus_of(x); }
inline float softplus_grad_c(float x) { return vm::softplus_grad(x); }
inline double softplus_grad_c(double x) { return softplus_grad_of(x); }
inline float silu_c(float x) { return vm::silu(x); }
inline double silu_c(double x) { return x * sigmoid_of(x); }
inline float silu_grad_c(float x) { return vm::silu_grad(x); }
inline double silu_grad_c(double x) {
    double s = sigmoid_of(x);
    return s * (1 + x * (1 - s));
}

// Working memory kept between calls in `buf`, a thread_local of the calling function: each layer's
// backward runs on the same thread, so a model's layers share it. A fresh buffer per call (8 MB
// of dB/dC partials at B=4, L=1024, D=256) was zeroed by std::vector on one thread before the
// parallel region, and its pages faulted in again every call: milliseconds of a 30 ms
// forward+backward. Grows to the largest call seen, never shrinks; the contents are not
// initialised (every element used is written first).
template <typename T> T* reuse(std::vector<T>& buf, int64_t elems) {
    if (int64_t(buf.size()) < elems) {
        buf.clear();
        buf.shrink_to_fit();
        buf.resize(size_t(elems));
    }
    return buf.data();
}

// Per-thread scratch, allocated before the parallel region (so a failed allocation throws where
// it can be caught) and 64-byte aligned per thread: whatever the vectoriser does about alignment
// it then does in every thread alike, so results cannot depend on which thread ran a task.
template <typename T> struct Scratch {
    int64_t per = 0;
    T* base = nullptr;
    Scratch(std::vector<T>& buf, int threads, int64_t elems)
        : per((elems * int64_t(sizeof(T)) + 63) / 64 * 64 / int64_t(sizeof(T))) {
        T* mem = reuse(buf, threads * per + 64 / int64_t(sizeof(T)));
        auto addr = reinterpret_cast<uintptr_t>(mem);
        base = mem + ((64 - addr % 64) % 64) / sizeof(T);
    }
    T* thread() { return base + omp_get_thread_num() * per; }
};

// A task's rows: batch element b, channels d0 .. d0 + nd - 1 (nd <= kCpuBlock), of a (B, L, D)
// array, and the chunk [t0, t0 + len) being worked on.
struct Block {
    int64_t b, d0, nd, L, D;
    Block(int64_t task, int64_t L_, int64_t D_) : L(L_), D(D_) {
        int64_t n_blocks = (D + kCpuBlock - 1) / kCpuBlock;
        b = task / n_blocks;
        d0 = (task % n_blocks) * kCpuBlock;
        nd = std::min(kCpuBlock, D - d0);
    }
    int64_t row(int64_t t) const { return (b * L + t) * D + d0; }

    // rows t0 .. t0+len-1 of src into dst [len][kCpuBlock], zeros in the padded lanes. A full
    // block (every block but perhaps the last) copies a fixed kCpuBlock values per row: a few
    // vector moves, where the loop over nd channels costs its loop control and tail per row.
    template <typename T> void load(const T* src, int64_t t0, int64_t len, T* dst) const {
        if (nd == kCpuBlock) {
            for (int64_t tt = 0; tt < len; ++tt)
                std::memcpy(dst + tt * kCpuBlock, src + row(t0 + tt), sizeof(T) * kCpuBlock);
            return;
        }
        for (int64_t tt = 0; tt < len; ++tt) {
            const T* s = src + row(t0 + tt);
            T* d = dst + tt * kCpuBlock;
#pragma omp simd
            for (int64_t j = 0; j < nd; ++j) d[j] = s[j];
            for (int64_t j = nd; j < kCpuBlock; ++j) d[j] = 0;
        }
    }
    template <typename T> void store(const T* src, int64_t t0, int64_t len, T* dst) const {
        if (nd == kCpuBlock) {
            for (int64_t tt = 0; tt < len; ++tt)
                std::memcpy(dst + row(t0 + tt), src + tt * kCpuBlock, sizeof(T) * kCpuBlock);
            return;
        }
        for (int64_t tt = 0; tt < len; ++tt) {
            T* d = dst + row(t0 + tt);
            const T* s = src + tt * kCpuBlock;
#pragma omp simd
            for (int64_t j = 0; j < nd; ++j) d[j] = s[j];
        }
    }
    // the first and last cache line of each row, ahead of the load that will need them
    template <typename T> void prefetch(const T* src, int64_t t0, int64_t len) const {
        for (int64_t tt = 0; tt < len; ++tt) {
            __builtin_prefetch(src + row(t0 + tt));
            __builtin_prefetch(src + row(t0 + tt) + nd - 1);
        }
    }
};

// The per-channel constants of a block: A (N·K, when Av is given) and A·log2 e (N·K, for exp2),
// delta_bias and D (K each); zeros in the padded lanes.
template <typename T>
void load_constants(const T* A, const T* delta_bias, const T* Dskip, int64_t N, const Block& k, T* Av, T* A2,
                    T* bias, T* Dsk) {
    const int64_t K = kCpuBlock;
    for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < K; ++j) {
            T v = j < k.nd ? A[(k.d0 + j) * N + n] : T(0);
            if (Av) Av[n * K + j] = v;
            A2[n * K + j] = T(double(v) * scan::kLog2e);
        }
    for (int64_t j = 0; j < K; ++j) {
        bias[j] = j < k.nd && delta_bias ? delta_bias[k.d0 + j] : T(0);
        Dsk[j] = j < k.nd && Dskip ? Dskip[k.d0 + j] : T(0);
    }
}

// Δ for a chunk: dt holds delta rows; adds the bias and applies the softplus (and, when spg is
// given, writes the softplus's gradient there: 1 without softplus).
template <typename T> void chunk_delta(const T* bias, bool softplus, int64_t len, T* dt, T* spg) {
    const int64_t K = kCpuBlock;
    for (int64_t tt = 0; tt < len; ++tt)
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) dt[tt * K + k] += bias[k];
    if (softplus) {
#pragma omp simd
        for (int64_t i = 0; i < len * K; ++i) {
            if (spg) spg[i] = softplus_grad_c(dt[i]);
            dt[i] = softplus_c(dt[i]);
        }
    } else if (spg) {
        for (int64_t i = 0; i < len * K; ++i) spg[i] = 1;
    }
}

// The sum of the kCpuBlock values v[0..15] as a fixed tree (halves, then quarters, ...), which
// vectorises and gives the same bits on every instruction set.
template <typename T> inline T sum_block(const T* v) {
    static_assert(kCpuBlock == 16);
    T a[8], b[4];
    for (int j = 0; j < 8; ++j) a[j] = v[j] + v[j + 8];
    for (int j = 0; j < 4; ++j) b[j] = a[j] + a[j + 4];
    return (b[0] + b[2]) + (b[1] + b[3]);
}

// out[n] = sum_block(v + n·kCpuBlock) for n < count. Floats go eight blocks at a time, transposing
// as they add: after the halves are added (a_n, 8 lanes each), the quarters of four pairs of
// blocks are swapped so that one addition does the next level of the tree for two blocks, and so
// on, ending with the eight sums in one vector. It is the same tree as sum_block, so the same
// bits, in about a third of the instructions of eight separate sums.
template <typename T> void sum_blocks(const T* v, int64_t count, T* out) {
    int64_t n = 0;
    if constexpr (std::is_same_v<T, float>) {
        static_assert(kLanes<float> == 8 && kCpuBlock == 16);
        using V = Vec<float>;
        for (; n + 8 <= count; n += 8) {
            V a[8], z[4];
#pragma GCC unroll 8
            for (int i = 0; i < 8; ++i) a[i] = vload(v + (n + i) * kCpuBlock) + vload(v + (n + i) * kCpuBlock + 8);
            // z_i = [b_i | b_{i+4}], b_i[j] = a_i[j] + a_i[j + 4]
#pragma GCC unroll 4
            for (int i = 0; i < 4; ++i)
                z[i] = __builtin_shufflevector(a[i], a[i + 4], 0, 1, 2, 3, 8, 9, 10, 11) +
                       __builtin_shufflevector(a[i], a[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
            // w = [c_0 c_1 | c_4 c_5] and [c_2 c_3 | c_6 c_7], c_i = (b_i[0] + b_i[2], b_i[1] + b_i[3])
            V w01 = __builtin_shufflevector(z[0], z[1], 0, 1, 8, 9, 4, 5, 12, 13) +
                    __builtin_shufflevector(z[0], z[1], 2, 3, 10, 11, 6, 7, 14, 15);
            V w23 = __builtin_shufflevector(z[2], z[3], 0, 1, 8, 9, 4, 5, 12, 13) +
                    __builtin_shufflevector(z[2], z[3], 2, 3, 10, 11, 6, 7, 14, 15);
            // s_i = c_i[0] + c_i[1], in order 0..7
            vstore(out + n, __builtin_shufflevector(w01, w23, 0, 2, 8, 10, 4, 6, 12, 14) +
                                __builtin_shufflevector(w01, w23, 1, 3, 9, 11, 5, 7, 13, 15));
        }
    }
    for (; n < count; ++n) out[n] = sum_block(v + n * kCpuBlock);
}

// Scratch per thread for the forward: h, A2 (N·K); dt, du, y, z (TC·K); bias, D skip (K).
int64_t fwd_scratch(int64_t N) { return 2 * N * kCpuBlock + 4 * kCpuScanChunk * kCpuBlock + 2 * kCpuBlock; }

template <typename T> void fwd_task(const ScanFwdArgs<T>& a, int64_t task, T* w) {
    const int64_t L = a.L, D = a.D, N = a.N, K = kCpuBlock, TC = kCpuScanChunk, n_chunks = cpu_scan_n_chunks(L);
    using V = Vec<T>;
    constexpr int W = kLanes<T>, NV = kVecs<T>;
    T *h = w, *A2 = h + N * K, *dt = A2 + N * K, *du = dt + TC * K, *y = du + TC * K, *zb = y + TC * K;
    T *bias = zb + TC * K, *Dsk = bias + K;
    const Block blk(task, L, D);
    const int64_t b = blk.b, d0 = blk.d0, nd = blk.nd;
    load_constants<T>(a.A, a.delta_bias, a.Dskip, N, blk, nullptr, A2, bias, Dsk);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) h[n * K + k] = k < nd && a.h0 ? a.h0[(b * D + d0 + k) * N + n] : T(0);
    for (int64_t c = 0; c < n_chunks; ++c) {
        const int64_t t0 = c * TC, len = std::min(TC, L - t0);
        blk.load(a.delta, t0, len, dt);
        blk.load(a.u, t0, len, du);
        if (a.z) blk.load(a.z, t0, len, zb);
        if (c + 1 < n_chunks) {
            const int64_t t1 = t0 + TC, len1 = std::min(TC, L - t1);
            blk.prefetch(a.delta, t1, len1);
            blk.prefetch(a.u, t1, len1);
            if (a.z) blk.prefetch(a.z, t1, len1);
        }
        chunk_delta<T>(bias, a.softplus, len, dt, nullptr);
        for (int64_t tt = 0; tt < len; ++tt)
#pragma omp simd
            for (int64_t k = 0; k < K; ++k) {
                y[tt * K + k] = Dsk[k] * du[tt * K + k]; // y starts as the skip D·u
                du[tt * K + k] *= dt[tt * K + k];        // Δ·u
            }
        for (int64_t tt = 0; tt < len; ++tt) {
            const T* Bt = a.Bm + (b * L + t0 + tt) * N;
            const T* Ct = a.Cm + (b * L + t0 + tt) * N;
            V dtt[NV], dut[NV], yt[NV];
#pragma GCC unroll 4
            for (int i = 0; i < NV; ++i) {
                dtt[i] = vload(dt + tt * K + i * W);
                dut[i] = vload(du + tt * K + i * W);
                yt[i] = vload(y + tt * K + i * W);
            }
            for (int64_t n = 0; n < N; ++n) {
                const V Bn = splat(Bt[n]), Cn = splat(Ct[n]);
                T* hn = h + n * K;
                const T* A2n = A2 + n * K;
#pragma GCC unroll 4
                for (int i = 0; i < NV; ++i) {
                    V hv = exp2_c(dtt[i] * vload(A2n + i * W)) * vload(hn + i * W) + dut[i] * Bn;
                    vstore(hn + i * W, hv);
                    yt[i] += Cn * hv;
                }
            }
#pragma GCC unroll 4
            for (int i = 0; i < NV; ++i) vstore(y + tt * K + i * W, yt[i]);
        }
        if (a.ckpt)
            for (int64_t k = 0; k < nd; ++k)
                for (int64_t n = 0; n < N; ++n) a.ckpt[((b * n_chunks + c) * D + d0 + k) * N + n] = h[n * K + k];
        if (a.z) {
            if (a.y) blk.store(y, t0, len, a.y);
#pragma omp simd
            for (int64_t i = 0; i < len * K; ++i) y[i] *= silu_c(zb[i]);
        }
        blk.store(y, t0, len, a.out);
    }
    if (a.last_state)
        for (int64_t k = 0; k < nd; ++k)
            for (int64_t n = 0; n < N; ++n) a.last_state[(b * D + d0 + k) * N + n] = h[n * K + k];
}

// Each task's share of the sums over channels, batch and time; added in a fixed order afterwards.
template <typename T> struct BwdPartials {
    T* dB; // (B·n_blocks, L, N): per task, summed over its channels
    T* dC;
    T* dA;    // (B, D, N): per batch element, summed over time
    T* dD;    // (B, D)
    T* dbias; // (B, D)
};

// Scratch per thread for the backward: hb ((TC+1)·N·K), ea (TC·N·K), A2, Av, g, dA, and one
// step's dB and dC terms (N·K each); dt, spg, uu, dy, zb, yb (TC·K); bias, D skip, dD, dbias (K).
int64_t bwd_scratch(int64_t N) {
    const int64_t K = kCpuBlock, TC = kCpuScanChunk;
    return (2 * TC + 7) * N * K + 6 * TC * K + 4 * K;
}

// Chunks from the last to the first: start from the state the forward saved at the end of the
// previous chunk (ckpt), recompute the chunk's states h_t and decays exp(Δ_t A) into
// [len+1][N][K] and [len][N][K] buffers, then walk t backwards carrying g'_n = exp(Δ_{t+1} A_n)
// g_{t+1},n per channel.
template <typename T> void bwd_task(const ScanBwdArgs<T>& a, int64_t task, T* w, const BwdPartials<T>& part) {
    const int64_t L = a.L, D = a.D, N = a.N, K = kCpuBlock, TC = kCpuScanChunk, NK = N * K;
    using V = Vec<T>;
    constexpr int W = kLanes<T>, NV = kVecs<T>;
    const int64_t n_chunks = cpu_scan_n_chunks(L);
    T *hb = w, *ea = hb + (TC + 1) * NK, *A2 = ea + TC * NK, *Av = A2 + NK, *g_all = Av + NK, *dA = g_all + NK;
    T *vB = dA + NK, *vC = vB + NK;
    T *dt = vC + NK, *spg = dt + TC * K, *uu = spg + TC * K, *dy = uu + TC * K, *zb = dy + TC * K, *yb = zb + TC * K;
    T *bias = yb + TC * K, *Dsk = bias + K, *dD_acc = Dsk + K, *dbias_acc = dD_acc + K;
    const Block blk(task, L, D);
    const int64_t b = blk.b, d0 = blk.d0, nd = blk.nd;
    T* dBg = part.dB + task * L * N;
    T* dCg = part.dC + task * L * N;
    load_constants<T>(a.A, a.delta_bias, a.Dskip, N, blk, Av, A2, bias, Dsk);
    for (int64_t i = 0; i < NK; ++i) g_all[i] = dA[i] = 0;
    for (int64_t k = 0; k < K; ++k) dD_acc[k] = dbias_acc[k] = 0;
    for (int64_t c = n_chunks - 1; c >= 0; --c) {
        const int64_t t0 = c * TC, len = std::min(TC, L - t0);
        // per element: Δ and its softplus gradient, u, and dy through the gate (dz here)
        blk.load(a.delta, t0, len, dt);
        blk.load(a.u, t0, len, uu);
        blk.load(a.dout, t0, len, dy);
        if (a.z) {
            blk.load(a.z, t0, len, zb);
            blk.load(a.y, t0, len, yb);
        }
        if (c > 0) {
            const int64_t t1 = t0 - TC;
            for (const T* p : {a.delta, a.u, a.dout, a.z, a.y})
                if (p) blk.prefetch(p, t1, TC);
        }
        chunk_delta<T>(bias, a.softplus, len, dt, spg);
        if (a.z) {
#pragma omp simd
            for (int64_t i = 0; i < len * K; ++i) {
                T zz = zb[i];
                yb[i] = dy[i] * yb[i] * silu_grad_c(zz); // dz
                dy[i] *= silu_c(zz);
            }
            blk.store(yb, t0, len, a.dz);
        }
        // recompute the chunk's states from the checkpoint: hb[0] = h_{t0-1}, hb[tt+1] = h_{t0+tt}
        for (int64_t n = 0; n < N; ++n)
            for (int64_t k = 0; k < K; ++k)
                hb[n * K + k] = c > 0 && k < nd ? a.ckpt[((b * n_chunks + c - 1) * D + d0 + k) * N + n] : T(0);
        for (int64_t tt = 0; tt < len; ++tt) {
            const T* Bt = a.Bm + (b * L + t0 + tt) * N;
            V dtt[NV], dut[NV];
#pragma GCC unroll 4
            for (int i = 0; i < NV; ++i) {
                dtt[i] = vload(dt + tt * K + i * W);
                dut[i] = vload(uu + tt * K + i * W) * dtt[i]; // as the forward's Δ·u
            }
            for (int64_t n = 0; n < N; ++n) {
                const V Bn = splat(Bt[n]);
                const T* A2n = A2 + n * K;
                const T* hp = hb + (tt * N + n) * K;
                T* ht = hb + ((tt + 1) * N + n) * K;
                T* en = ea + (tt * N + n) * K;
#pragma GCC unroll 4
                for (int i = 0; i < NV; ++i) {
                    V e = exp2_c(dtt[i] * vload(A2n + i * W));
                    vstore(en + i * W, e);
                    vstore(ht + i * W, e * vload(hp + i * W) + dut[i] * Bn);
                }
            }
        }
        // the reverse walk through the chunk; du and dΔ go to zb and yb (free again)
        T* dub = zb;
        T* ddb = yb;
        for (int64_t tt = len - 1; tt >= 0; --tt) {
            const int64_t t = t0 + tt;
            const T* ut = uu + tt * K;
            const T* dyt = dy + tt * K;
            V dtv[NV], uv[NV], dyv[NV], ddtv[NV], dusv[NV];
#pragma GCC unroll 4
            for (int i = 0; i < NV; ++i) {
                dtv[i] = vload(dt + tt * K + i * W);
                uv[i] = vload(ut + i * W);
                dyv[i] = vload(dyt + i * W);
                ddtv[i] = dusv[i] = V{};
            }
            const T* Bt = a.Bm + (b * L + t) * N;
            const T* Ct = a.Cm + (b * L + t) * N;
            for (int64_t n = 0; n < N; ++n) {
                const V Bn = splat(Bt[n]), Cn = splat(Ct[n]);
                const T* en = ea + (tt * N + n) * K;
                const T* hp = hb + (tt * N + n) * K;
                const T* ht = hb + ((tt + 1) * N + n) * K;
                const T* An = Av + n * K;
                T* gn = g_all + n * K;
                T* dAn = dA + n * K;
#pragma GCC unroll 4
                for (int i = 0; i < NV; ++i) {
                    const int o = i * W;
                    V e = vload(en + o), g = Cn * dyv[i] + vload(gn + o), eh = e * vload(hp + o), gdt = g * dtv[i];
                    ddtv[i] += g * (Bn * uv[i] + vload(An + o) * eh);
                    vstore(dAn + o, vload(dAn + o) + gdt * eh);
                    dusv[i] += gdt * Bn;
                    vstore(vB + n * K + o, gdt * uv[i]);
                    vstore(vC + n * K + o, dyv[i] * vload(ht + o));
                    vstore(gn + o, e * g);
                }
            }
            // the step's dB and dC: each term summed over the block's channels
            sum_blocks(vB, N, dBg + t * N);
            sum_blocks(vC, N, dCg + t * N);
            T ddt[kCpuBlock], dus[kCpuBlock];
#pragma GCC unroll 4
            for (int i = 0; i < NV; ++i) {
                vstore(ddt + i * W, ddtv[i]);
                vstore(dus + i * W, dusv[i]);
            }
            const T* spgt = spg + tt * K;
#pragma omp simd
            for (int64_t k = 0; k < K; ++k) {
                dub[tt * K + k] = dus[k] + Dsk[k] * dyt[k];
                T dd = ddt[k] * spgt[k];
                ddb[tt * K + k] = dd;
                dbias_acc[k] += dd;
                dD_acc[k] += dyt[k] * ut[k];
            }
        }
        blk.store(dub, t0, len, a.du);
        blk.store(ddb, t0, len, a.ddelta);
    }
    for (int64_t k = 0; k < nd; ++k) {
        for (int64_t n = 0; n < N; ++n) part.dA[(b * D + d0 + k) * N + n] = dA[n * K + k];
        part.dD[b * D + d0 + k] = dD_acc[k];
        part.dbias[b * D + d0 + k] = dbias_acc[k];
    }
}

// The task functions as called: every helper inlined into one function per instruction set.
template <typename T> [[gnu::flatten]] void fwd_task_base(const ScanFwdArgs<T>& a, int64_t task, T* w) {
    fwd_task(a, task, w);
}
template <typename T>
[[gnu::flatten]] void bwd_task_base(const ScanBwdArgs<T>& a, int64_t task, T* w, const BwdPartials<T>& p) {
    bwd_task(a, task, w, p);
}
#if MG_VM_HAVE_AVX2
MG_VM_AVX2_FN void fwd_task_avx2(const ScanFwdArgs<float>& a, int64_t task, float* w) { fwd_task(a, task, w); }
MG_VM_AVX2_FN void bwd_task_avx2(const ScanBwdArgs<float>& a, int64_t task, float* w, const BwdPartials<float>& p) {
    bwd_task(a, task, w, p);
}
#endif

} // namespace

template <typename T> void selective_scan_fwd_cpu(const ScanFwdArgs<T>& a) {
    const int64_t n_tasks = a.B * ((a.D + kCpuBlock - 1) / kCpuBlock);
    auto run = &fwd_task_base<T>;
#if MG_VM_HAVE_AVX2
    if constexpr (std::is_same_v<T, float>)
        if (vm::use_avx2()) run = &fwd_task_avx2;
#endif
    const bool par = a.B * a.D * a.L * a.N > kParallelGrain;
    thread_local std::vector<T> buf;
    Scratch<T> scratch(buf, par ? omp_get_max_threads() : 1, fwd_scratch(a.N));
#pragma omp parallel if (par)
    {
        T* w = scratch.thread();
#pragma omp for schedule(static)
        for (int64_t task = 0; task < n_tasks; ++task) run(a, task, w);
    }
}

// Memory: the forward's (B, L/kCpuScanChunk, D, N) checkpoints, O(B·L·D), plus per-thread buffers
// of O(kCpuScanChunk·N·kCpuBlock) and the per-task partial sums of dB and dC.
template <typename T> void selective_scan_bwd_cpu(const ScanBwdArgs<T>& a) {
    const int64_t B = a.B, L = a.L, D = a.D, N = a.N, n_blocks = (D + kCpuBlock - 1) / kCpuBlock;
    MG_CHECK(a.ckpt || cpu_scan_n_chunks(L) == 1, "selective_scan backward: L = {} needs the forward's state checkpoints",
             L);
    thread_local std::vector<T> part_buf, scratch_buf;
    const int64_t n_bc = B * n_blocks * L * N;
    T* dBp = reuse(part_buf, 2 * n_bc + B * D * N + 2 * B * D);
    T *dCp = dBp + n_bc, *dA_part = dCp + n_bc, *dD_part = dA_part + B * D * N, *dbias_part = dD_part + B * D;
    const BwdPartials<T> part{dBp, dCp, dA_part, dD_part, dbias_part};
    auto run = &bwd_task_base<T>;
#if MG_VM_HAVE_AVX2
    if constexpr (std::is_same_v<T, float>)
        if (vm::use_avx2()) run = &bwd_task_avx2;
#endif
    const bool par = B * D * L * N > kParallelGrain;
    Scratch<T> scratch(scratch_buf, par ? omp_get_max_threads() : 1, bwd_scratch(N));
#pragma omp parallel if (par)
    {
        T* w = scratch.thread();
#pragma omp for schedule(static)
        for (int64_t task = 0; task < B * n_blocks; ++task) run(a, task, w, part);
        // fixed-order reductions over tasks and over the batch
        // dB and dC by tiles of (b, t, n): each tile runs through the blocks' partials in order,
        // a contiguous stream added into the tile (the same order of additions as one element at
        // a time, but streaming, where n_blocks partials 4·L·N bytes apart defeat the prefetchers)
        const int64_t LN = L * N, tile = 1024, n_tiles = (LN + tile - 1) / tile;
#pragma omp for schedule(static)
        for (int64_t bt = 0; bt < B * n_tiles; ++bt) {
            const int64_t b = bt / n_tiles, j0 = bt % n_tiles * tile, len = std::min(tile, LN - j0);
            T* sb = a.dB + b * LN + j0;
            T* sc = a.dC + b * LN + j0;
            for (int64_t i = 0; i < len; ++i) sb[i] = sc[i] = 0;
            for (int64_t blk = 0; blk < n_blocks; ++blk) {
                const T* pb = dBp + (b * n_blocks + blk) * LN + j0;
                const T* pc = dCp + (b * n_blocks + blk) * LN + j0;
#pragma omp simd
                for (int64_t i = 0; i < len; ++i) {
                    sb[i] += pb[i];
                    sc[i] += pc[i];
                }
            }
        }
#pragma omp for schedule(static)
        for (int64_t d = 0; d < D; ++d) {
            for (int64_t n = 0; n < N; ++n) {
                T s = 0;
                for (int64_t b = 0; b < B; ++b) s += dA_part[size_t((b * D + d) * N + n)];
                a.dA[d * N + n] = s;
            }
            T sD = 0, sbias = 0;
            for (int64_t b = 0; b < B; ++b) {
                sD += dD_part[size_t(b * D + d)];
                sbias += dbias_part[size_t(b * D + d)];
            }
            if (a.dD) a.dD[d] = sD;
            if (a.ddelta_bias) a.ddelta_bias[d] = sbias;
        }
    }
}

#define MG_INST(T)                                                          \
    template void selective_scan_fwd_cpu<T>(const ScanFwdArgs<T>&);         \
    template void selective_scan_bwd_cpu<T>(const ScanBwdArgs<T>&);
MG_INST(float)
MG_INST(double)
#undef MG_INST

} // namespace mg
