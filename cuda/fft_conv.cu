// cuda/fft_conv.cu: the causal long conv by cuFFT (formulas in ops/fft_conv.h).
//
// Layout. cuFFT is fastest on unit-stride rows, and x (B, L, D) is channels-last, so a tiled
// transpose kernel packs x into time-major rows, zero-padded to n: xp (D, B, n), row r = d*B + b.
// Rows of one channel are adjacent, so the weight-gradient sum over b and the bias-gradient sum
// over (b, t) read contiguous memory (the latter is cuda::reduce_rows over D rows of B*n).
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
#include <map>
#include <mutex>
#include <type_traits>

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

} // namespace

template <typename T> int64_t fft_conv_work(int64_t B, int64_t L, int64_t D, int64_t K, bool backward) {
    if (B * L * D == 0) return 0;
    size_t bytes = make_layout<T>(B, L, D, K, backward).total;
    return int64_t((bytes + sizeof(T) - 1) / sizeof(T));
}

template <typename T>
void fft_conv_forward(T* y, T* work, const T* x, const T* weight, const T* bias, int64_t B, int64_t L, int64_t D,
                      int64_t K, bool silu) {
    if (B * L * D == 0) return;
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
                       const T* bias, int64_t B, int64_t L, int64_t D, int64_t K, bool silu) {
    if (B * L * D == 0) return;
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
    template int64_t fft_conv_work<T>(int64_t, int64_t, int64_t, int64_t, bool);                              \
    template void fft_conv_forward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                      bool);                                                                \
    template void fft_conv_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, int64_t,      \
                                       int64_t, int64_t, int64_t, bool);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
