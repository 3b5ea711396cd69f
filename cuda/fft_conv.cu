// cuda/fft_conv.cu: the causal long conv on the GPU (formulas in ops/fft_conv.h), two paths.
//
// Fused path (f32, n <= 16384; the default for n <= 8192, where it measured faster than cuFFT). A tiled transpose packs x (and dy) into
// time-major rows (D, B, L), unpadded; fused kernels then do each row's whole convolution in one
// thread block with our own block FFT (cuda/fft_block.cuh: Stockham, radix 16, points in
// registers, shared memory only between passes), and a transpose back (+ bias, silu) writes y or
// dx. The zero padding to n is implicit (points t >= L are zeros in registers).
// - spectrum: Hh (D, n/2+1) = FFT(h_d)/n, one block per channel (h_d[j] = w[d, K-1-j]);
// - forward: one block per (pair of rows b, b+1, channel d): IFFT(FFT(x_b + i x_{b+1}) H) =
//   y_b + i y_{b+1}, because h is real;
// - backward: one block per channel, rows b in order; z = x_b + i gp_b; from Z = FFT(z) the two
//   real spectra X and G; W = G conj(H) + i G conj(X)/n; IFFT(W) = dx_b + i dh_b, and dh is summed
//   over b in shared memory in that fixed order; dbias by a fixed tree. With silu, pre is first
//   recomputed per row by one more transform pair. No atomics: deterministic.
// Scratch: B*L*D floats (forward) or 2 B*L*D (backward) for the packed rows (the kernels write
// their outputs over their inputs), D (n/2+1) complex for Hh and n complex twiddles.
//
// cuFFT path (f64, f32 with n > 8192, or asked for). Layout: cuFFT is fastest on unit-stride rows, and x
// (B, L, D) is channels-last, so a tiled transpose kernel packs x into time-major rows,
// zero-padded to n: xp (D, B, n), row r = d*B + b. Rows of one channel are adjacent, so the
// weight-gradient sum over b and the bias-gradient sum over (b, t) read contiguous memory (the
// latter is cuda::reduce_rows over D rows of B*n).
// Forward: pack x -> xp; R2C (batch B*D) -> Xf; pack the flipped kernel -> wp; R2C (batch D) -> Wf;
// Xf *= Wf / n; C2R -> xp; unpack (transpose back, first L steps, + bias, silu) -> y.
// Backward: Xf, Wf as above; with silu, pre = C2R(Xf Wf / n) recomputed into xp and
// gp = dy dsilu(pre + bias) packed over it in place (else gp = packed dy); dbias = row sums of gp;
// Gf = R2C(gp); S = sum_b Gf conj(Xf) (a loop over b, fixed order); dx = unpack C2R(Gf conj(Wf)/n);
// dw[d,k] = C2R(S)[d, K-1-k] / n. cuFFT's own results are deterministic for a fixed plan.
//
// Memory (scratch, from the caching allocator through the op's Tensor::empty): forward
// B*D*n reals + B*D*(n/2+1) complex + the same for the kernel's D rows, about 2 B*D*n reals;
// backward adds a second B*D spectrum and a D spectrum, about 3 B*D*n reals; plus cuFFT's work
// area. n is the power of two >= L + K - 1, so up to about 2(L + K).
//
// Plans: cufftMakePlanMany64 with auto-allocation off, cached per (device, type, n, batch) in a
// small LRU cache (16 plans); the work area is the caller's scratch, bound with cufftSetWorkArea
// before each execution. (cuFFT still allocates its own small plan data, e.g. twiddles, when a
// plan is made.) The C2R transforms overwrite their complex input; every such input is dead
// afterwards.
#include <cufft.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>
#include <mutex>
#include <type_traits>

#include "cuda/fft_block.cuh"
#include "cuda/fft_conv.h"
#include "cuda/launch.h"
#include "cuda/reduce.h"
#include "cuda/runtime.h"
#include "ops/conv1d.h"
#include "ops/fft_conv.h"
#include "ops/reduce.h"

namespace mg::cuda {

namespace {

template <typename T> using Complex = std::conditional_t<std::is_same_v<T, float>, cufftComplex, cufftDoubleComplex>;

// a * b or a * conj(b), times s.
template <typename C, typename T> __device__ __forceinline__ C cmul(C a, C b, bool conj_b, T s) {
    T bi = conj_b ? -b.y : b.y;
    C r;
    r.x = (a.x * b.x - a.y * bi) * s;
    r.y = (a.x * bi + a.y * b.x) * s;
    return r;
}

// ---- plan cache -----------------------------------------------------------------------------
struct PlanKey {
    int device, type;
    int64_t n, batch;
    auto operator<=>(const PlanKey&) const = default;
};
struct Plan {
    cufftHandle handle = 0;
    size_t work_bytes = 0;
    uint64_t last_use = 0;
};

class PlanCache {
public:
    static constexpr size_t kCapacity = 16;
    Plan get(cufftType type, int64_t n, int64_t batch) {
        PlanKey key{current_device(), int(type), n, batch};
        std::lock_guard<std::mutex> lock(mu_);
        ++clock_;
        if (auto it = plans_.find(key); it != plans_.end()) {
            it->second.last_use = clock_;
            return it->second;
        }
        if (plans_.size() >= kCapacity) evict_oldest();
        Plan p;
        p.last_use = clock_;
        CUFFT_CHECK(cufftCreate(&p.handle));
        CUFFT_CHECK(cufftSetAutoAllocation(p.handle, 0));
        long long len = n;
        // Null embeds: rows of n reals and n/2+1 complex values, one after another.
        CUFFT_CHECK(cufftMakePlanMany64(p.handle, 1, &len, nullptr, 1, 0, nullptr, 1, 0, type, batch, &p.work_bytes));
        plans_[key] = p;
        return p;
    }

private:
    void evict_oldest() {
        auto oldest = plans_.begin();
        for (auto it = plans_.begin(); it != plans_.end(); ++it)
            if (it->second.last_use < oldest->second.last_use) oldest = it;
        {
            DeviceGuard g(oldest->first.device);
            CUDA_CHECK(cudaDeviceSynchronize()); // no queued transform may still use it
        }
        CUFFT_CHECK(cufftDestroy(oldest->second.handle));
        plans_.erase(oldest);
    }
    std::mutex mu_;
    std::map<PlanKey, Plan> plans_;
    uint64_t clock_ = 0;
};

PlanCache& plan_cache() {
    static PlanCache* c = new PlanCache(); // never destroyed: plans may outlive static teardown order
    return *c;
}

template <typename T> constexpr cufftType r2c_type() { return std::is_same_v<T, float> ? CUFFT_R2C : CUFFT_D2Z; }
template <typename T> constexpr cufftType c2r_type() { return std::is_same_v<T, float> ? CUFFT_C2R : CUFFT_Z2D; }

template <typename T> void exec_r2c(int64_t n, int64_t batch, const T* in, Complex<T>* out, void* work) {
    Plan p = plan_cache().get(r2c_type<T>(), n, batch);
    CUFFT_CHECK(cufftSetWorkArea(p.handle, work));
    if constexpr (std::is_same_v<T, float>) CUFFT_CHECK(cufftExecR2C(p.handle, const_cast<T*>(in), out));
    else CUFFT_CHECK(cufftExecD2Z(p.handle, const_cast<T*>(in), out));
}
// Overwrites `in`.
template <typename T> void exec_c2r(int64_t n, int64_t batch, Complex<T>* in, T* out, void* work) {
    Plan p = plan_cache().get(c2r_type<T>(), n, batch);
    CUFFT_CHECK(cufftSetWorkArea(p.handle, work));
    if constexpr (std::is_same_v<T, float>) CUFFT_CHECK(cufftExecC2R(p.handle, in, out));
    else CUFFT_CHECK(cufftExecZ2D(p.handle, in, out));
}

// ---- scratch layout -------------------------------------------------------------------------
// Byte offsets into the caller's scratch, each buffer 256-byte aligned.
struct Layout {
    size_t xp = 0, Xf = 0, Gf = 0, wp = 0, Wf = 0, S = 0, work = 0, total = 0;
};

template <typename T> Layout make_layout(int64_t B, int64_t L, int64_t D, int64_t K, bool backward) {
    const int64_t n = fft_conv_size(L, K), nf = n / 2 + 1, rows = B * D;
    size_t work = std::max({plan_cache().get(r2c_type<T>(), n, rows).work_bytes,
                            plan_cache().get(r2c_type<T>(), n, D).work_bytes,
                            plan_cache().get(c2r_type<T>(), n, rows).work_bytes});
    if (backward) work = std::max(work, plan_cache().get(c2r_type<T>(), n, D).work_bytes);
    Layout l;
    size_t at = 0;
    auto take = [&](size_t bytes) {
        size_t o = at;
        at += (bytes + 255) / 256 * 256;
        return o;
    };
    l.xp = take(size_t(rows * n) * sizeof(T));
    l.Xf = take(size_t(rows * nf) * sizeof(Complex<T>));
    if (backward) l.Gf = take(size_t(rows * nf) * sizeof(Complex<T>));
    l.wp = take(size_t(D * n) * sizeof(T));
    l.Wf = take(size_t(D * nf) * sizeof(Complex<T>));
    if (backward) l.S = take(size_t(D * nf) * sizeof(Complex<T>));
    l.work = take(work);
    l.total = at;
    return l;
}

template <typename P> P* at(void* base, size_t offset) { return reinterpret_cast<P*>(static_cast<char*>(base) + offset); }

// ---- kernels --------------------------------------------------------------------------------
constexpr int kTile = 32, kTileRows = 8; // transpose tiles: 32 x 32 elements, 32 x 8 threads
constexpr int kTileIters = kTile / kTileRows; // rows j = ty + 8 i of a tile per thread: a fixed,
                                               // unrolled count, so their loads are in flight together

// out (D,B,n)[d*B+b, t] = in (B,L,D)[b,t,d] for t < L, 0 for L <= t < n; with pre (same layout as
// out, may alias it), times dsilu(pre + bias[d]). Grid: (ceil(n/32) * B, ceil(D/32)).
template <typename T>
__global__ void pack_time_major_kernel(T* out, const T* in, const T* pre, const T* bias, int64_t B, int64_t L,
                                       int64_t D, int64_t n) {
    __shared__ T tile[kTile][kTile + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t nT = ceil_div(n, kTile);
    const int64_t b = blockIdx.x / nT, t0 = (blockIdx.x % nT) * kTile, d0 = int64_t(blockIdx.y) * kTile;
#pragma unroll
    for (int i = 0; i < kTileIters; ++i) {
        const int j = ty + i * kTileRows; // read along d (coalesced)
        int64_t t = t0 + j, d = d0 + tx;
        tile[j][tx] = (t < L && d < D) ? in[(b * L + t) * D + d] : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kTileIters; ++i) {
        const int j = ty + i * kTileRows; // write along t (coalesced)
        int64_t d = d0 + j, t = t0 + tx;
        if (d >= D || t >= n) continue;
        int64_t idx = (d * B + b) * n + t;
        T v = tile[tx][j];
        if (pre && t < L) v *= conv_dsilu(pre[idx] + (bias ? bias[d] : T(0)));
        out[idx] = v;
    }
}

// out (B,L,D)[b,t,d] = act(in (D,B,n)[d*B+b, t] + bias[d]). Grid: (ceil(L/32) * B, ceil(D/32)).
template <typename T>
__global__ void unpack_time_major_kernel(T* out, const T* in, const T* bias, int64_t B, int64_t L, int64_t D,
                                         int64_t n, bool silu) {
    __shared__ T tile[kTile][kTile + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t nT = ceil_div(L, kTile);
    const int64_t b = blockIdx.x / nT, t0 = (blockIdx.x % nT) * kTile, d0 = int64_t(blockIdx.y) * kTile;
#pragma unroll
    for (int i = 0; i < kTileIters; ++i) {
        const int j = ty + i * kTileRows; // read along t
        int64_t d = d0 + j, t = t0 + tx;
        tile[j][tx] = (d < D && t < L) ? in[(d * B + b) * n + t] : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kTileIters; ++i) {
        const int j = ty + i * kTileRows; // write along d
        int64_t t = t0 + j, d = d0 + tx;
        if (t >= L || d >= D) continue;
        T v = tile[tx][j] + (bias ? bias[d] : T(0));
        out[(b * L + t) * D + d] = silu ? conv_silu(v) : v;
    }
}

// wp (D,n)[d,j] = w[d, K-1-j] for j < K, else 0 (the flipped, padded kernel).
template <typename T> __global__ void pack_weight_kernel(int64_t total, T* wp, const T* w, int64_t K, int64_t n) {
    MG_GRID_LOOP(i, total) {
        int64_t d = i / n, j = i % n;
        wp[i] = j < K ? w[d * K + K - 1 - j] : T(0);
    }
}

// out[r,f] = a[r,f] * (conj) wf[r / B, f] * s, rows r = d*B + b. out may alias a.
template <typename T>
__global__ void spectrum_mul_kernel(int64_t total, Complex<T>* out, const Complex<T>* a, const Complex<T>* wf,
                                    int64_t B, int64_t nf, bool conj_w, T s) {
    MG_GRID_LOOP(i, total) {
        int64_t r = i / nf, f = i % nf;
        out[i] = cmul(a[i], wf[(r / B) * nf + f], conj_w, s);
    }
}

// S[d,f] = sum_{b=0}^{B-1} G[d*B+b, f] conj(X[d*B+b, f]), added in order of b.
template <typename T>
__global__ void cross_spectrum_kernel(int64_t total, Complex<T>* S, const Complex<T>* G, const Complex<T>* X,
                                      int64_t B, int64_t nf) {
    MG_GRID_LOOP(i, total) {
        int64_t d = i / nf, f = i % nf;
        Complex<T> s;
        s.x = T(0);
        s.y = T(0);
        for (int64_t b = 0; b < B; ++b) {
            int64_t idx = (d * B + b) * nf + f;
            Complex<T> p = cmul(G[idx], X[idx], true, T(1));
            s.x += p.x;
            s.y += p.y;
        }
        S[i] = s;
    }
}

// dw[d,k] = hp[d, K-1-k] * s (hp: the inverse transform of S, rows of n).
template <typename T>
__global__ void unpack_weight_kernel(int64_t total, T* dw, const T* hp, int64_t K, int64_t n, T s) {
    MG_GRID_LOOP(i, total) {
        int64_t d = i / K, k = i % K;
        dw[i] = hp[d * n + (K - 1 - k)] * s;
    }
}

dim3 transpose_grid(int64_t steps, int64_t B, int64_t D) {
    int64_t nD = ceil_div(D, kTile);
    if (nD > 65535) throw Error("fft_causal_conv: D = " + std::to_string(D) + " channels exceed the CUDA grid limit");
    return dim3(unsigned(ceil_div(steps, kTile) * B), unsigned(nD));
}

template <typename T>
void pack(T* out, const T* in, const T* pre, const T* bias, int64_t B, int64_t L, int64_t D, int64_t n) {
    pack_time_major_kernel<T><<<transpose_grid(n, B, D), dim3(kTile, kTileRows)>>>(out, in, pre, bias, B, L, D, n);
    CUDA_CHECK_LAUNCH();
}
template <typename T>
void unpack(T* out, const T* in, const T* bias, int64_t B, int64_t L, int64_t D, int64_t n, bool silu) {
    unpack_time_major_kernel<T><<<transpose_grid(L, B, D), dim3(kTile, kTileRows)>>>(out, in, bias, B, L, D, n, silu);
    CUDA_CHECK_LAUNCH();
}


// ---- the fused path (fp32, n <= kFusedMaxN) -------------------------------------------------
// Time-major rows (D, B, L), unpadded: xt[(d*B + b)*L + t] = x[b,t,d] (the zero padding to n is
// implicit: points t >= L are zero in registers). Kernel spectra Hh (D, n/2+1) = FFT(h_d) / n.
// One block of n/E threads per transform (cuda/fft_block.cuh); thread tid owns the points
// tid + i*T, i < E, in time and in frequency alike, so loads, pointwise products and stores all
// happen in registers and each transform crosses shared memory only between its passes.
constexpr int kFusedMaxN = 16384; // n (+ n/16 padding) points of float2 = 136 KiB of shared memory per block

// Points per thread: 16, so n/16 threads (1024 at n = 16384, capped at 64 registers; 32 points
// and 512 threads spilled 3x more there). Blocks per SM asked of the register allocator: enough
// for about 512 threads, so a thread gets up to 128 registers (fewer spill).
template <int N> constexpr int fused_e() { return N < 16 ? N : 16; }
template <int N> constexpr int fused_min_blocks() {
    constexpr int T = N / fused_e<N>(), b = 512 / T;
    return b < 1 ? 1 : b > 16 ? 16 : b;
}

// H(f) for any f < N from the half spectrum (h real: H(N-f) = conj H(f)).
template <int N> __device__ __forceinline__ float2 spectrum_at(const float2* Hrow, int f) {
    if (f <= N / 2) return __ldg(Hrow + f);
    float2 h = __ldg(Hrow + (N - f));
    return make_float2(h.x, -h.y);
}

// tw[m] = exp(-2 pi i m / n), m < n, rounded from double.
__global__ void twiddle_kernel(int64_t total, float2* tw) {
    MG_GRID_LOOP(m, total) {
        double sn, cs;
        sincospi(-2.0 * double(m) / double(total), &sn, &cs);
        tw[m] = make_float2(float(cs), float(sn));
    }
}

// Hh[d, f] = FFT(h_d)[f] / N for f <= N/2, h_d[j] = w[d, K-1-j] (j < K). Grid: D blocks.
template <int N>
__global__ void __launch_bounds__(N / fused_e<N>(), fused_min_blocks<N>()) fused_spectrum_kernel(float2* Hh, const float* w, const float2* tw,
                                                                          int K) {
    constexpr int E = fused_e<N>(), T = N / E;
    extern __shared__ float2 s[];
    const int tid = int(threadIdx.x);
    const int64_t d = blockIdx.x;
    float2 v[E];
#pragma unroll
    for (int i = 0; i < E; ++i) {
        const int j = tid + i * T;
        v[i] = make_float2(j < K ? w[d * K + K - 1 - j] : 0.0f, 0.0f);
    }
    fftb::block_fft<N, E, false>(v, s, tw);
    const float inv_n = 1.0f / float(N);
#pragma unroll
    for (int i = 0; i < E; ++i) {
        const int f = tid + i * T;
        if (f <= N / 2) Hh[d * (N / 2 + 1) + f] = fftb::cscale(v[i], inv_n);
    }
}

// v <- IFFT(FFT(v) · H): the block's points (E per thread, natural order) convolved with the
// kernel whose half spectrum is Hrow (the forward, and the backward's recomputed pre-activation).
template <int N, int E>
__device__ __forceinline__ void convolve_block(float2 (&v)[E], float2* s, const float2* tw, const float2* Hrow) {
    constexpr int T = N / E;
    const int tid = int(threadIdx.x);
    fftb::block_fft<N, E, false>(v, s, tw);
#pragma unroll
    for (int i = 0; i < E; ++i) v[i] = fftb::cmul(v[i], spectrum_at<N>(Hrow, tid + i * T));
    fftb::block_fft<N, E, true>(v, s, tw);
}

// Forward, two rows b, b+1 of channel d per block as one complex signal z = x_b + i x_(b+1):
// h is real, so IFFT(FFT(z) H) = y_b + i y_(b+1). yt may alias xt (each block reads its two rows
// whole before it writes them). Grid: ceil(B/2) * D blocks, pairs of one channel adjacent (they
// share Hh's row in L2).
template <int N>
__global__ void __launch_bounds__(N / fused_e<N>(), fused_min_blocks<N>()) fused_forward_kernel(float* yt, const float* xt, const float2* Hh,
                                                                         const float2* tw, int B, int L) {
    constexpr int E = fused_e<N>(), T = N / E;
    extern __shared__ float2 s[];
    const int tid = int(threadIdx.x), P = (B + 1) / 2;
    const int64_t d = blockIdx.x / P;
    const int b0 = 2 * int(blockIdx.x % P);
    const bool two = b0 + 1 < B;
    const int64_t row0 = (d * B + b0) * int64_t(L), row1 = row0 + L;
    float2 v[E];
#pragma unroll
    for (int i = 0; i < E; ++i) {
        const int t = tid + i * T;
        v[i] = t < L ? make_float2(xt[row0 + t], two ? xt[row1 + t] : 0.0f) : make_float2(0.0f, 0.0f);
    }
    convolve_block<N, E>(v, s, tw, Hh + d * (N / 2 + 1));
#pragma unroll
    for (int i = 0; i < E; ++i) {
        const int t = tid + i * T;
        if (t < L) {
            yt[row0 + t] = v[i].x;
            if (two) yt[row1 + t] = v[i].y;
        }
    }
}

// Backward, one block per channel d, rows b = 0..B-1 in order (so the sums over b are in a fixed
// order, no atomics). Per row, one complex signal z = x_b + i gp_b (both real):
//   Z = FFT(z);  X(f) = (Z(f) + conj Z(N-f)) / 2,  G(f) = (Z(f) - conj Z(N-f)) / 2i;
//   DX = G conj(H) (H holds 1/N),  DK = G conj(X) / N;  both spectra of real signals, so
//   W(f) = DX(f) + i DK(f) transforms back to IFFT(W) = dx_b + i dh_b (dh_b: row b's share of
//   the kernel gradient, the correlation of gp_b with x_b).
// With silu, pre = IFFT(FFT(x_b) H) first (one more transform pair), gp = dy dsilu(pre + bias).
// dxt may alias gt (row b of g is read whole before row b of dx is written, by the same threads).
// Shared memory: smem_points(N) points of scratch, then K floats of the dh sum.
template <int N>
__global__ void __launch_bounds__(N / fused_e<N>(), fused_min_blocks<N>()) fused_backward_kernel(float* dxt, float* dw, float* dbias,
                                                                          const float* gt, const float* xt,
                                                                          const float2* Hh, const float2* tw,
                                                                          const float* bias, int B, int L, int K,
                                                                          bool silu) {
    constexpr int E = fused_e<N>(), T = N / E;
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
        if (silu) {
#pragma unroll
            for (int i = 0; i < E; ++i) {
                const int t = tid + i * T;
                v[i] = make_float2(t < L ? xt[row + t] : 0.0f, 0.0f);
            }
            convolve_block<N, E>(v, s, tw, Hrow);
#pragma unroll
            for (int i = 0; i < E; ++i) {
                const int t = tid + i * T;
                v[i] = t < L ? make_float2(xt[row + t], gt[row + t] * conv_dsilu(v[i].x + bv)) : make_float2(0.0f, 0.0f);
            }
        } else {
#pragma unroll
            for (int i = 0; i < E; ++i) {
                const int t = tid + i * T;
                v[i] = t < L ? make_float2(xt[row + t], gt[row + t]) : make_float2(0.0f, 0.0f);
            }
        }
#pragma unroll
        for (int i = 0; i < E; ++i) bsum += v[i].y;
        fftb::block_fft<N, E, false>(v, s, tw);
        __syncthreads(); // the transform's last readers of s are done
#pragma unroll
        for (int i = 0; i < E; ++i) s[tid + i * T] = v[i];
        __syncthreads();
#pragma unroll
        for (int i = 0; i < E; ++i) {
            const int f = tid + i * T;
            const float2 zf = v[i], zm = s[(N - f) & (N - 1)];
            const float2 X = make_float2(0.5f * (zf.x + zm.x), 0.5f * (zf.y - zm.y));
            const float2 G = make_float2(0.5f * (zf.y + zm.y), -0.5f * (zf.x - zm.x));
            const float2 DX = fftb::cmulc(G, spectrum_at<N>(Hrow, f));
            const float2 DK = fftb::cscale(fftb::cmulc(G, X), inv_n);
            v[i] = make_float2(DX.x - DK.y, DX.y + DK.x);
        }
        fftb::block_fft<N, E, true>(v, s, tw); // its first write to s is behind a barrier
#pragma unroll
        for (int i = 0; i < E; ++i) {
            const int t = tid + i * T;
            if (t < L) dxt[row + t] = v[i].x;
            if (t < K) acc[t] += v[i].y; // each j has one owner thread: no race, fixed order
        }
    }
    // dw[d, k] = dh_d[K-1-k]; acc[j] was last written by this same thread
    for (int j = tid; j < K; j += T) dw[d * K + (K - 1 - j)] = acc[j];
    if (dbias) { // tree sum of the threads' partials, fixed order
        __syncthreads();
        float* red = reinterpret_cast<float*>(s);
        red[tid] = bsum;
        __syncthreads();
        for (int stride = T / 2; stride > 0; stride /= 2) {
            if (tid < stride) red[tid] += red[tid + stride];
            __syncthreads();
        }
        if (tid == 0) dbias[d] = red[0];
    }
}

template <typename Kernel> void allow_smem(Kernel k, size_t bytes) {
    if (bytes > 48 * 1024) CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

// Runs fn.template operator()<N>() for the compile-time N = n (a power of two, 2..kFusedMaxN).
template <typename Fn> void with_fused_n(int64_t n, Fn&& fn) {
    switch (n) {
    case 2: fn.template operator()<2>(); break;
    case 4: fn.template operator()<4>(); break;
    case 8: fn.template operator()<8>(); break;
    case 16: fn.template operator()<16>(); break;
    case 32: fn.template operator()<32>(); break;
    case 64: fn.template operator()<64>(); break;
    case 128: fn.template operator()<128>(); break;
    case 256: fn.template operator()<256>(); break;
    case 512: fn.template operator()<512>(); break;
    case 1024: fn.template operator()<1024>(); break;
    case 2048: fn.template operator()<2048>(); break;
    case 4096: fn.template operator()<4096>(); break;
    case 8192: fn.template operator()<8192>(); break;
    case 16384: fn.template operator()<16384>(); break;
    default: throw Error("fft_causal_conv: fused path has no kernel for n = " + std::to_string(n));
    }
}

struct FusedLayout {
    size_t xt = 0, gt = 0, Hh = 0, tw = 0, total = 0;
};
FusedLayout make_fused_layout(int64_t B, int64_t L, int64_t D, int64_t K, bool backward) {
    const int64_t n = fft_conv_size(L, K);
    FusedLayout l;
    size_t at = 0;
    auto take = [&](size_t bytes) {
        size_t o = at;
        at += (bytes + 255) / 256 * 256;
        return o;
    };
    l.xt = take(size_t(B * L * D) * sizeof(float));
    if (backward) l.gt = take(size_t(B * L * D) * sizeof(float));
    l.Hh = take(size_t(D * (n / 2 + 1)) * sizeof(float2));
    l.tw = take(size_t(n) * sizeof(float2));
    l.total = at;
    return l;
}

// The kernels' spectra and twiddles for n: tw, then Hh.
void fused_prepare(float2* Hh, float2* tw, const float* w, int64_t D, int64_t K, int64_t n) {
    launch_linear(twiddle_kernel, n, tw);
    with_fused_n(n, [&]<int N>() {
        constexpr int T = N / fused_e<N>();
        const size_t smem = fftb::smem_points(N) * sizeof(float2);
        allow_smem(fused_spectrum_kernel<N>, smem);
        fused_spectrum_kernel<N><<<unsigned(D), T, smem>>>(Hh, w, tw, int(K));
        CUDA_CHECK_LAUNCH();
    });
}

// MG_FFT_CONV_PATH=cufft|fused overrides `automatic` (benchmarks of one path against the other).
FftConvPath env_path() {
    static const FftConvPath p = [] {
        const char* e = std::getenv("MG_FFT_CONV_PATH");
        std::string v = e ? e : "";
        return v == "cufft" ? FftConvPath::cufft : v == "fused" ? FftConvPath::fused : FftConvPath::automatic;
    }();
    return p;
}

// automatic takes the fused path up to this n: at n = 16384 (L = K = 8192, B = 8, D = 1536, H200)
// the fused kernels measured 2.73 / 8.38 ms fwd / fwd+bwd against cuFFT's 2.64 / 7.25 (1024 threads
// capped at 64 registers spill, one block per SM), so cuFFT stays the default there.
constexpr int64_t kAutoFusedMaxN = 8192;

bool use_fused(FftConvPath path, bool is_float, int64_t L, int64_t K) {
    const bool ok = is_float && fft_conv_size(L, K) <= kFusedMaxN;
    if (path == FftConvPath::automatic && ok) {
        path = env_path();
        if (path == FftConvPath::automatic && fft_conv_size(L, K) > kAutoFusedMaxN) path = FftConvPath::cufft;
    }
    if (path == FftConvPath::fused && !ok)
        throw Error("fft_causal_conv: the fused path takes f32 and n <= " + std::to_string(kFusedMaxN) +
                    " (n = " + std::to_string(fft_conv_size(L, K)) + ")");
    return path == FftConvPath::fused || (path == FftConvPath::automatic && ok);
}

void fused_forward(float* y, void* work, const float* x, const float* weight, const float* bias, int64_t B,
                   int64_t L, int64_t D, int64_t K, bool silu) {
    const int64_t n = fft_conv_size(L, K);
    const FusedLayout l = make_fused_layout(B, L, D, K, false);
    float* xt = at<float>(work, l.xt);
    float2* Hh = at<float2>(work, l.Hh);
    float2* tw = at<float2>(work, l.tw);
    pack<float>(xt, x, nullptr, nullptr, B, L, D, L);
    fused_prepare(Hh, tw, weight, D, K, n);
    with_fused_n(n, [&]<int N>() {
        constexpr int T = N / fused_e<N>();
        const size_t smem = fftb::smem_points(N) * sizeof(float2);
        allow_smem(fused_forward_kernel<N>, smem);
        fused_forward_kernel<N><<<unsigned((B + 1) / 2 * D), T, smem>>>(xt, xt, Hh, tw, int(B), int(L));
        CUDA_CHECK_LAUNCH();
    });
    unpack<float>(y, xt, bias, B, L, D, L, silu);
}

void fused_backward(float* dx, float* dweight, float* dbias, void* work, const float* dy, const float* x,
                    const float* weight, const float* bias, int64_t B, int64_t L, int64_t D, int64_t K, bool silu) {
    const int64_t n = fft_conv_size(L, K);
    const FusedLayout l = make_fused_layout(B, L, D, K, true);
    float* xt = at<float>(work, l.xt);
    float* gt = at<float>(work, l.gt);
    float2* Hh = at<float2>(work, l.Hh);
    float2* tw = at<float2>(work, l.tw);
    pack<float>(xt, x, nullptr, nullptr, B, L, D, L);
    pack<float>(gt, dy, nullptr, nullptr, B, L, D, L);
    fused_prepare(Hh, tw, weight, D, K, n);
    with_fused_n(n, [&]<int N>() {
        constexpr int T = N / fused_e<N>();
        const size_t smem = fftb::smem_points(N) * sizeof(float2) + size_t(K) * sizeof(float);
        allow_smem(fused_backward_kernel<N>, smem);
        fused_backward_kernel<N><<<unsigned(D), T, smem>>>(gt, dweight, dbias, gt, xt, Hh, tw, bias, int(B), int(L),
                                                           int(K), silu);
        CUDA_CHECK_LAUNCH();
    });
    unpack<float>(dx, gt, nullptr, B, L, D, L, false);
}
} // namespace

template <typename T> bool fft_conv_fused_supported(int64_t L, int64_t K) {
    return std::is_same_v<T, float> && fft_conv_size(L, K) <= kFusedMaxN;
}

template <typename T>
int64_t fft_conv_work(int64_t B, int64_t L, int64_t D, int64_t K, bool backward, FftConvPath path) {
    if (B * L * D == 0) return 0;
    size_t bytes = use_fused(path, std::is_same_v<T, float>, L, K) ? make_fused_layout(B, L, D, K, backward).total
                                                                   : make_layout<T>(B, L, D, K, backward).total;
    return int64_t((bytes + sizeof(T) - 1) / sizeof(T));
}

template <typename T>
void fft_conv_forward(T* y, T* work, const T* x, const T* weight, const T* bias, int64_t B, int64_t L, int64_t D,
                      int64_t K, bool silu, FftConvPath path) {
    if (B * L * D == 0) return;
    if constexpr (std::is_same_v<T, float>) {
        if (use_fused(path, true, L, K)) return fused_forward(y, work, x, weight, bias, B, L, D, K, silu);
    } else {
        use_fused(path, false, L, K); // throws when the fused path is asked for
    }
    using C = Complex<T>;
    const int64_t n = fft_conv_size(L, K), nf = n / 2 + 1, rows = B * D;
    const Layout l = make_layout<T>(B, L, D, K, false);
    T* xp = at<T>(work, l.xp);
    T* wp = at<T>(work, l.wp);
    C* Xf = at<C>(work, l.Xf);
    C* Wf = at<C>(work, l.Wf);
    void* cw = at<char>(work, l.work);

    pack<T>(xp, x, nullptr, nullptr, B, L, D, n);
    exec_r2c<T>(n, rows, xp, Xf, cw);
    launch_linear(pack_weight_kernel<T>, D * n, wp, weight, K, n);
    exec_r2c<T>(n, D, wp, Wf, cw);
    launch_linear(spectrum_mul_kernel<T>, rows * nf, Xf, Xf, Wf, B, nf, false, T(1) / T(n));
    exec_c2r<T>(n, rows, Xf, xp, cw);
    unpack<T>(y, xp, bias, B, L, D, n, silu);
}

template <typename T>
void fft_conv_backward(T* dx, T* dweight, T* dbias, T* work, const T* dy, const T* x, const T* weight,
                       const T* bias, int64_t B, int64_t L, int64_t D, int64_t K, bool silu, FftConvPath path) {
    if (B * L * D == 0) return;
    if constexpr (std::is_same_v<T, float>) {
        if (use_fused(path, true, L, K))
            return fused_backward(dx, dweight, dbias, work, dy, x, weight, bias, B, L, D, K, silu);
    } else {
        use_fused(path, false, L, K);
    }
    using C = Complex<T>;
    const int64_t n = fft_conv_size(L, K), nf = n / 2 + 1, rows = B * D;
    const Layout l = make_layout<T>(B, L, D, K, true);
    T* xp = at<T>(work, l.xp);
    T* wp = at<T>(work, l.wp);
    C* Xf = at<C>(work, l.Xf);
    C* Gf = at<C>(work, l.Gf);
    C* Wf = at<C>(work, l.Wf);
    C* S = at<C>(work, l.S);
    void* cw = at<char>(work, l.work);
    const T inv_n = T(1) / T(n);

    pack<T>(xp, x, nullptr, nullptr, B, L, D, n);
    exec_r2c<T>(n, rows, xp, Xf, cw);
    launch_linear(pack_weight_kernel<T>, D * n, wp, weight, K, n);
    exec_r2c<T>(n, D, wp, Wf, cw);
    if (silu) { // pre (without bias) = IFFT(Xf Wf) / n into xp, then gp = dy dsilu(pre + bias) over it
        launch_linear(spectrum_mul_kernel<T>, rows * nf, Gf, Xf, Wf, B, nf, false, inv_n);
        exec_c2r<T>(n, rows, Gf, xp, cw);
        pack<T>(xp, dy, xp, bias, B, L, D, n);
    } else {
        pack<T>(xp, dy, nullptr, nullptr, B, L, D, n);
    }
    if (dbias) reduce_rows<T>(dbias, nullptr, xp, D, B * n, ReduceOp::sum); // rows d of (B, n), zero-padded
    exec_r2c<T>(n, rows, xp, Gf, cw);
    launch_linear(cross_spectrum_kernel<T>, D * nf, S, Gf, Xf, B, nf);
    launch_linear(spectrum_mul_kernel<T>, rows * nf, Gf, Gf, Wf, B, nf, true, inv_n);
    exec_c2r<T>(n, rows, Gf, xp, cw);
    unpack<T>(dx, xp, nullptr, B, L, D, n, false);
    exec_c2r<T>(n, D, S, wp, cw);
    launch_linear(unpack_weight_kernel<T>, D * K, dweight, wp, K, n, inv_n);
}

#define MG_INST(T)                                                                                          \
    template bool fft_conv_fused_supported<T>(int64_t, int64_t);                                              \
    template int64_t fft_conv_work<T>(int64_t, int64_t, int64_t, int64_t, bool, FftConvPath);                 \
    template void fft_conv_forward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                      bool, FftConvPath);                                                   \
    template void fft_conv_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, int64_t,      \
                                       int64_t, int64_t, int64_t, bool, FftConvPath);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
