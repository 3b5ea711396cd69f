// cuda/fft_block.cuh: a complex FFT of N points (a power of two, 2..16384) computed by one thread
// block, fp32, for the fused long convolution (cuda/fft_conv.cu). The pieces are __host__
// __device__ so that a host program can replay a block thread by thread (tests of the index
// arithmetic without a GPU); block_fft strings them together with barriers on the device.
//
// Layout. T = N / E threads each hold E points in registers. On entry and on exit thread `tid`
// holds the points tid + i*T, i < E, in natural order (v[i]); the shared buffer s (N points) is
// only the exchange between passes.
//
// Method: the Stockham autosort FFT (no bit reversal), radix R per pass, Ns = the product of the
// radices of the passes before. In a pass, butterfly j (< N/R) reads the points j + r N/R
// (r < R), multiplies point r by w^(r k), w = exp(-+2 pi i / (Ns R)), k = j mod Ns, takes their
// R-point DFT, and writes output r to (j - k) R + k + r Ns. Each thread does E/R butterflies,
// j = tid + q T. In the first pass (Ns = 1) butterfly j reads exactly the thread's own points
// tid + (q + r E/R) T, and in the last (Ns = N/R) writes exactly them, so the first pass reads
// registers and the last writes registers: an FFT of P passes crosses shared memory P-1 times.
// Radices: as many passes of min(E, 16) as fit, and one smaller first pass for the rest.
// The R-point DFTs are in registers (radix-2 decimation in frequency, constant twiddles); the
// pass twiddles come from a table tw[m] = exp(-2 pi i m / N), m < N, computed in double.
#pragma once
#include <cuda_runtime.h>

namespace mg::cuda::fftb {

#define FB_HD __host__ __device__ __forceinline__
#ifdef __CUDA_ARCH__
#define FB_UNROLL _Pragma("unroll")
#else
#define FB_UNROLL
#endif

FB_HD float2 cadd(float2 a, float2 b) { return make_float2(a.x + b.x, a.y + b.y); }
FB_HD float2 csub(float2 a, float2 b) { return make_float2(a.x - b.x, a.y - b.y); }
FB_HD float2 cmul(float2 a, float2 b) { return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }
// a * conj(b)
FB_HD float2 cmulc(float2 a, float2 b) { return make_float2(a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y); }
FB_HD float2 cscale(float2 a, float s) { return make_float2(a.x * s, a.y * s); }

constexpr int ilog2(int n) { return n <= 1 ? 0 : 1 + ilog2(n / 2); }
// i with its `bits` low bits reversed
constexpr int bitrev(int i, int bits) { return bits == 0 ? 0 : ((i & 1) << (bits - 1)) | bitrev(i >> 1, bits - 1); }

// a * exp(-+2 pi i j / 16) (INV: +), j < 8 a compile-time constant after unrolling.
template <bool INV> FB_HD float2 rot16(float2 a, int j) {
    constexpr float c[8] = {1.0f, 0.92387953251128674f, 0.70710678118654752f, 0.38268343236508977f,
                            0.0f, -0.38268343236508977f, -0.70710678118654752f, -0.92387953251128674f};
    constexpr float s[8] = {0.0f, 0.38268343236508977f, 0.70710678118654752f, 0.92387953251128674f,
                            1.0f, 0.92387953251128674f, 0.70710678118654752f, 0.38268343236508977f};
    if (j == 0) return a;
    if (j == 4) return INV ? make_float2(-a.y, a.x) : make_float2(a.y, -a.x); // times +-i
    return cmul(a, make_float2(c[j], INV ? s[j] : -s[j]));
}

// One radix-2 decimation-in-frequency stage of an in-register DFT: sub-blocks of 2 HALF points.
template <int R, int HALF, bool INV> FB_HD void dft_stage(float2 (&a)[R]) {
FB_UNROLL
    for (int s0 = 0; s0 < R; s0 += 2 * HALF)
FB_UNROLL
        for (int j = 0; j < HALF; ++j) {
            float2 u = a[s0 + j], v = a[s0 + j + HALF];
            a[s0 + j] = cadd(u, v);
            a[s0 + j + HALF] = rot16<INV>(csub(u, v), j * (8 / HALF)); // w_(2 HALF)^j
        }
    if constexpr (HALF > 1) dft_stage<R, HALF / 2, INV>(a);
}

// In-register R-point DFT (R = 1, 2, 4, 8, 16): a[f] = sum_r a[r] exp(-+2 pi i f r / R).
template <int R, bool INV> FB_HD void dft(float2 (&a)[R]) {
    static_assert(R >= 1 && R <= 16 && (R & (R - 1)) == 0, "radix");
    if constexpr (R > 1) {
        dft_stage<R, R / 2, INV>(a);
        float2 t[R]; // decimation in frequency leaves X[f] at bitrev(f)
FB_UNROLL
        for (int f = 0; f < R; ++f) t[f] = a[bitrev(f, ilog2(R))];
FB_UNROLL
        for (int f = 0; f < R; ++f) a[f] = t[f];
    }
}

// Shared-memory index of point i: one float2 of padding after every 16, so that the first pass's
// stores (stride R points between lanes) do not all fall in one bank. The buffer needs
// smem_points(N) float2.
FB_HD int spad(int i) { return i + (i >> 4); }
constexpr int smem_points(int n) { return n + n / 16 + 1; }

// A read-only global load (twiddles, kernel spectra) that the compiler may not move: plain __ldg
// loads of a kernel's spectrum were hoisted above the transform before it (their addresses do not
// depend on it), which kept 16 more points live through it and made the forward kernel spill.
FB_HD float2 load_pinned(const float2* p) {
#ifdef __CUDA_ARCH__
    float2 w;
    asm volatile("ld.global.nc.v2.f32 {%0, %1}, [%2];" : "=f"(w.x), "=f"(w.y) : "l"(p));
    return w;
#else
    return *p;
#endif
}

// The radix schedule: R0 (the first pass), then NP passes of RM = min(E, 16).
template <int N, int E> struct Schedule {
    static constexpr int T = N / E, RM = E < 16 ? E : 16;
    static constexpr int NP = ilog2(N) / ilog2(RM) - ((ilog2(N) % ilog2(RM)) == 0 ? 1 : 0);
    static constexpr int R0 = N >> (NP * ilog2(RM)); // 2..RM
    static_assert(E >= 2 && (E & (E - 1)) == 0 && E <= 32 && N >= E && (N & (N - 1)) == 0, "sizes");
};

// First pass (Ns = 1, no twiddles), radix R: from the thread's registers v into a (pass order:
// a[q R + r] is output r of butterfly q).
template <int N, int E, int R, bool INV> FB_HD void pass_first(float2 (&a)[E], const float2 (&v)[E]) {
    constexpr int NB = E / R;
FB_UNROLL
    for (int q = 0; q < NB; ++q) {
        float2 b[R];
FB_UNROLL
        for (int r = 0; r < R; ++r) b[r] = v[q + r * NB];
        dft<R, INV>(b);
FB_UNROLL
        for (int r = 0; r < R; ++r) a[q * R + r] = b[r];
    }
}

// Writes a pass's outputs (radix R, its Ns) to s.
template <int N, int E, int R, int NS> FB_HD void pass_store(float2* s, const float2 (&a)[E], int tid) {
    constexpr int NB = E / R, T = N / E;
FB_UNROLL
    for (int q = 0; q < NB; ++q) {
        const int j = tid + q * T, k = j & (NS - 1), base = (j - k) * R + k;
FB_UNROLL
        for (int r = 0; r < R; ++r) s[spad(base + r * NS)] = a[q * R + r];
    }
}

// A later pass (radix R, Ns = NS > 1): reads s, twiddles, DFT, into a.
template <int N, int E, int R, int NS, bool INV>
FB_HD void pass_load(float2 (&a)[E], const float2* s, const float2* tw, int tid) {
    constexpr int NB = E / R, T = N / E, STEP = N / (NS * R);
FB_UNROLL
    for (int q = 0; q < NB; ++q) {
        const int j = tid + q * T, k = j & (NS - 1);
        float2 b[R];
FB_UNROLL
        for (int r = 0; r < R; ++r) b[r] = s[spad(j + r * (N / R))];
        // w^r for r < R from the table entries w^1, w^2, w^4, w^8 (products at most 3 deep)
        float2 wp[R];
        wp[0] = make_float2(1.0f, 0.0f);
FB_UNROLL
        for (int r = 1; r < R; r *= 2) {
            wp[r] = load_pinned(tw + r * k * STEP);
            if (INV) wp[r].y = -wp[r].y;
        }
FB_UNROLL
        for (int r = 3; r < R; ++r)
            if (r & (r - 1)) wp[r] = cmul(wp[r & (r - 1)], wp[r & -r]); // (r minus its lowest bit) times (its lowest bit)
FB_UNROLL
        for (int r = 1; r < R; ++r) b[r] = cmul(b[r], wp[r]);
        dft<R, INV>(b);
FB_UNROLL
        for (int r = 0; r < R; ++r) a[q * R + r] = b[r];
    }
}

// The last pass's outputs (radix R, Ns = N/R) are the thread's own points: a into v.
template <int N, int E, int R> FB_HD void pass_last(float2 (&v)[E], const float2 (&a)[E]) {
    constexpr int NB = E / R;
FB_UNROLL
    for (int q = 0; q < NB; ++q)
FB_UNROLL
        for (int r = 0; r < R; ++r) v[q + r * NB] = a[q * R + r];
}

#ifdef __CUDACC__
// Passes after the first: RP, NSP are the previous pass's radix and Ns; LEFT passes of RM remain.
template <int N, int E, bool INV, int RP, int NSP, int LEFT>
__device__ __forceinline__ void passes_rest(float2 (&v)[E], float2 (&a)[E], float2* s, const float2* tw, int tid) {
    if constexpr (LEFT == 0) {
        pass_last<N, E, RP>(v, a);
    } else {
        constexpr int NS = NSP * RP, RM = Schedule<N, E>::RM;
        __syncthreads(); // everyone is done reading s
        pass_store<N, E, RP, NSP>(s, a, tid);
        __syncthreads();
        pass_load<N, E, RM, NS, INV>(a, s, tw, tid);
        passes_rest<N, E, INV, RM, NS, LEFT - 1>(v, a, s, tw, tid);
    }
}

// In-place FFT of the block's N points held as v[i] = point tid + i*T (see the top). s:
// smem_points(N) points of shared scratch, free on entry (the first write is behind a barrier); on exit other
// threads may still read s until the caller's next barrier. All T threads must call it.
// threadIdx.x read by a volatile instruction, so that each transform computes its own shared-memory
// and twiddle addresses: with a plain threadIdx.x the compiler kept one transform's addresses live
// through the next (or hoisted them out of a loop over rows), which cost registers and spills.
__device__ __forceinline__ int fresh_tid() {
    int t;
    asm volatile("mov.u32 %0, %%tid.x;" : "=r"(t));
    return t;
}

template <int N, int E, bool INV> __device__ __forceinline__ void block_fft(float2 (&v)[E], float2* s, const float2* tw) {
    using S = Schedule<N, E>;
    const int tid = fresh_tid();
    float2 a[E];
    pass_first<N, E, S::R0, INV>(a, v);
    passes_rest<N, E, INV, S::R0, 1, S::NP>(v, a, s, tw, tid);
}
#endif

} // namespace mg::cuda::fftb
