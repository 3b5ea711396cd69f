// cuda/fft_conv.cu: the causal long conv on the GPU (formulas in ops/fft_conv.h), two paths.
//
// Fused path (f32, n <= 8192, and n = 16384 with L, K <= 8192; the default wherever it applies: it
// measured faster than cuFFT at every benchmark size, bench/RESULTS.md). A tiled transpose packs x
// (and dy) into time-major rows; fused kernels (cuda/fft_conv_kernels.cuh) then do each row's whole
// convolution in one thread block with our own block FFT (cuda/fft_block.cuh: Stockham, radix 16,
// points in registers, shared memory only between passes), and a transpose back (+ bias, silu)
// writes y or dx. The zero padding to n is implicit (points t >= L are zeros in registers).
// - spectrum: the kernel's spectrum row, FFT(h_d)/n, one block per pair of channels (one complex
//   transform of h_d + i h_{d+1}, separated by symmetry; h_d[j] = w[d, K-1-j]);
// - forward: one block per (pair of rows b, b+1, channel d): IFFT(FFT(x_b + i x_{b+1}) H) =
//   y_b + i y_{b+1}, because h is real;
// - backward: z = x_b + i gp_b; from Z = FFT(z) the two real spectra X and G; W = G conj(H) +
//   i G conj(X)/n; IFFT(W) = dx_b + i dh_b. Up to n = 8192 one block per channel loops over the rows
//   b in order and sums dh in shared memory; at n = 16384 one block per row writes its dh_b, and a
//   second kernel sums over b in order. dbias by fixed trees. No atomics: deterministic.
// - n = 16384 runs as two transforms of 8192 (the even and odd bins; cuda/fft_conv_kernels.cuh),
//   on rows zero-padded to 8192 (and to an even row count), so one block of 512 threads holds them.
// Scratch: the packed rows (B*L*D floats forward, twice that backward; padded at n = 16384, plus
// the per-row dh sums there), D (n/2+1) complex for the spectra and n complex twiddles.
//
// cuFFT path (f64, f32 sizes beyond the fused kernels, or asked for). Layout: cuFFT is fastest on unit-stride rows, and x
#include <cufft.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>
#include <mutex>
#include <type_traits>

#include "cuda/fft_conv.h"
#include "cuda/fft_conv_kernels.cuh"
#include "cuda/launch.h"
#include "cuda/reduce.h"
#include "cuda/runtime.h"
#include "common/conv1d.h"
#include "common/fft_conv.h"
#include "common/reduce.h"

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
// Transpose tiles: 64 time steps x 32 channels, 32 x 8 threads, 8 elements per thread (32 x 32
// tiles with 4 per thread moved 3.1 TB/s packing and 2.5 unpacking on the H200, against a copy's
// 4.2: too few loads in flight, and the unpack's reads of 32 rows far apart got 128 bytes a row).
// The loops run a fixed, unrolled count, so a thread's loads are in flight together.
constexpr int kTileT = 64, kTileD = 32, kTileRows = 8;

// out (D,R,n)[d*R+b, t] = in (B,L,D)[b,t,d] for b < B and t < L, 0 elsewhere (t >= L, rows
// B <= b < R); with pre (same layout as out, may alias it), times dsilu(pre + bias[d]).
// Grid: (ceil(n/64) * R, ceil(D/32)).
template <typename T>
__global__ void pack_time_major_kernel(T* out, const T* in, const T* pre, const T* bias, int64_t B, int64_t L,
                                       int64_t D, int64_t n, int64_t R) {
    __shared__ T tile[kTileT][kTileD + 1]; // [t][d]
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t nT = ceil_div(n, kTileT);
    const int64_t b = blockIdx.x / nT, t0 = (blockIdx.x % nT) * kTileT, d0 = int64_t(blockIdx.y) * kTileD;
#pragma unroll
    for (int i = 0; i < kTileT / kTileRows; ++i) {
        const int j = ty + i * kTileRows; // read along d (coalesced)
        const int64_t t = t0 + j, d = d0 + tx;
        tile[j][tx] = (t < L && d < D && b < B) ? in[(b * L + t) * D + d] : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kTileD / kTileRows; ++i)
#pragma unroll
        for (int h = 0; h < kTileT / 32; ++h) {
            const int j = ty + i * kTileRows, tl = tx + 32 * h; // write along t (coalesced)
            const int64_t d = d0 + j, t = t0 + tl;
            if (d >= D || t >= n) continue;
            const int64_t idx = (d * R + b) * n + t;
            T v = tile[tl][j];
            if (pre && t < L) v *= conv_dsilu(pre[idx] + (bias ? bias[d] : T(0)));
            out[idx] = v;
        }
}

// out (B,L,D)[b,t,d] = act(in (D,R,n)[d*R+b, t] + bias[d]). Grid: (ceil(L/64) * B, ceil(D/32)).
template <typename T>
__global__ void unpack_time_major_kernel(T* out, const T* in, const T* bias, int64_t B, int64_t L, int64_t D,
                                         int64_t n, int64_t R, bool silu) {
    __shared__ T tile[kTileT][kTileD + 1]; // [t][d]
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t nT = ceil_div(L, kTileT);
    const int64_t b = blockIdx.x / nT, t0 = (blockIdx.x % nT) * kTileT, d0 = int64_t(blockIdx.y) * kTileD;
#pragma unroll
    for (int i = 0; i < kTileD / kTileRows; ++i)
#pragma unroll
        for (int h = 0; h < kTileT / 32; ++h) {
            const int j = ty + i * kTileRows, tl = tx + 32 * h; // read along t (coalesced)
            const int64_t d = d0 + j, t = t0 + tl;
            tile[tl][j] = (d < D && t < L) ? in[(d * R + b) * n + t] : T(0);
        }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kTileT / kTileRows; ++i) {
        const int j = ty + i * kTileRows; // write along d (coalesced)
        const int64_t t = t0 + j, d = d0 + tx;
        if (t >= L || d >= D) continue;
        const T v = tile[j][tx] + (bias ? bias[d] : T(0));
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
    int64_t nD = ceil_div(D, kTileD);
    if (nD > 65535) throw Error("fft_causal_conv: D = " + std::to_string(D) + " channels exceed the CUDA grid limit");
    return dim3(unsigned(ceil_div(steps, kTileT) * B), unsigned(nD));
}

// Rows of n per (d, b), R >= B rows per channel (the last R - B zero).
template <typename T>
void pack(T* out, const T* in, const T* pre, const T* bias, int64_t B, int64_t L, int64_t D, int64_t n,
          int64_t R = 0) {
    if (R == 0) R = B;
    pack_time_major_kernel<T><<<transpose_grid(n, R, D), dim3(kTileD, kTileRows)>>>(out, in, pre, bias, B, L, D, n, R);
    CUDA_CHECK_LAUNCH();
}
template <typename T>
void unpack(T* out, const T* in, const T* bias, int64_t B, int64_t L, int64_t D, int64_t n, bool silu,
            int64_t R = 0) {
    if (R == 0) R = B;
    unpack_time_major_kernel<T><<<transpose_grid(L, B, D), dim3(kTileD, kTileRows)>>>(out, in, bias, B, L, D, n, R,
                                                                                    silu);
    CUDA_CHECK_LAUNCH();
}

// ---- the fused path (fp32, n <= kFusedMaxN; kernels in cuda/fft_conv_kernels.cuh) -------------
constexpr int kFusedMaxN = 16384;
constexpr int kWholeMaxN = 8192; // the largest n done as one transform per block; above, two of n/2

// The launch configuration per n, chosen in bench/fft_lab.cu (bench/RESULTS.md has the table):
// E points per thread, MINB blocks per SM asked of the register allocator, and whether the n-point
// transforms are split into two of n/2 (cuda/fft_conv_kernels.cuh). 16 points per thread and
// registers for 512 threads per SM (up to 128 each, no spills); at n = 16384 one block of 1024
// threads would get 64 registers and spill, so that size runs as two transforms of 8192.
template <int N> struct FusedConfig {
    static constexpr bool SPLIT = N > kWholeMaxN; // make_fused_layout pads the rows to match
    static constexpr int M = SPLIT ? N / 2 : N;
    static constexpr int E = M < 16 ? M : 16;
    static constexpr int MINB = [] {
        constexpr int b = 512 / (M / E);
        return b < 1 ? 1 : b > 16 ? 16 : b;
    }();
};

// Whether the fused kernels cover (L, K): n up to kWholeMaxN as one transform; above, up to
// kFusedMaxN, as two of n/2, which needs x and the kernel inside the first half (L, K <= n/2).
bool fused_fits(int64_t L, int64_t K) {
    const int64_t n = fft_conv_size(L, K);
    return n <= kWholeMaxN || (n <= kFusedMaxN && L <= n / 2 && K <= n / 2);
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

// The rows xt (and gt) hold R rows of S points per channel: unsplit (D, B, L); split (D,
// split_rows(B), n/2), zero-padded (cuda/fft_conv_kernels.cuh). part: the split backward's per-row
// partial sums.
struct FusedLayout {
    size_t xt = 0, gt = 0, part = 0, Hh = 0, tw = 0, total = 0;
    int64_t R = 0, S = 0;
};
FusedLayout make_fused_layout(int64_t B, int64_t L, int64_t D, int64_t K, bool backward) {
    const int64_t n = fft_conv_size(L, K);
    FusedLayout l;
    const bool split = n > kWholeMaxN; // FusedConfig<n>::SPLIT
    l.R = split ? fftconv::split_rows(B) : B;
    l.S = split ? n / 2 : L;
    size_t at = 0;
    auto take = [&](size_t bytes) {
        size_t o = at;
        at += (bytes + 255) / 256 * 256;
        return o;
    };
    l.xt = take(size_t(D * l.R * l.S) * sizeof(float));
    if (backward) l.gt = take(size_t(D * l.R * l.S) * sizeof(float));
    if (backward && split) l.part = take(size_t(fftconv::backward_partials<kFusedMaxN, FusedConfig<kFusedMaxN>::E, true>(B, D)) * sizeof(float));
    l.Hh = take(size_t(D * (n / 2 + 1)) * sizeof(float2));
    l.tw = take(size_t(n) * sizeof(float2));
    l.total = at;
    return l;
}

// The kernels' spectra and twiddles for n: tw, then Hh.
void fused_prepare(float2* Hh, float2* tw, const float* w, int64_t D, int64_t K, int64_t n) {
    with_fused_n(n, [&]<int N>() {
        using C = FusedConfig<N>;
        fftconv::launch_spectrum<N, C::E, C::MINB, C::SPLIT>(Hh, tw, w, D, K);
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

bool use_fused(FftConvPath path, bool is_float, int64_t L, int64_t K) {
    const bool ok = is_float && fused_fits(L, K);
    if (path == FftConvPath::automatic && ok) path = env_path();
    if (path == FftConvPath::fused && !ok)
        throw Error("fft_causal_conv: the fused path takes f32 and n <= " + std::to_string(kWholeMaxN) + ", or n = " +
                    std::to_string(kFusedMaxN) +
                    " with L and K <= " + std::to_string(kFusedMaxN / 2) + " (got " + (is_float ? "f32" : "f64") +
                    ", L = " + std::to_string(L) + ", K = " + std::to_string(K) +
                    ", n = " + std::to_string(fft_conv_size(L, K)) + ")");
    return path == FftConvPath::fused || (path == FftConvPath::automatic && ok);
}

void fused_forward(float* y, void* work, const float* x, const float* weight, const float* bias, int64_t B,
                   int64_t L, int64_t D, int64_t K, bool silu) {
    const int64_t n = fft_conv_size(L, K);
    const FusedLayout l = make_fused_layout(B, L, D, K, false);
    float* xt = at<float>(work, l.xt);
    float2* Hh = at<float2>(work, l.Hh);
    float2* tw = at<float2>(work, l.tw);
    pack<float>(xt, x, nullptr, nullptr, B, L, D, l.S, l.R);
    fused_prepare(Hh, tw, weight, D, K, n);
    with_fused_n(n, [&]<int N>() {
        using C = FusedConfig<N>;
        fftconv::launch_forward<N, C::E, C::MINB, C::SPLIT>(xt, xt, Hh, tw, B, L, D);
    });
    unpack<float>(y, xt, bias, B, L, D, l.S, silu, l.R);
}

void fused_backward(float* dx, float* dweight, float* dbias, void* work, const float* dy, const float* x,
                    const float* weight, const float* bias, int64_t B, int64_t L, int64_t D, int64_t K, bool silu) {
    const int64_t n = fft_conv_size(L, K);
    const FusedLayout l = make_fused_layout(B, L, D, K, true);
    float* xt = at<float>(work, l.xt);
    float* gt = at<float>(work, l.gt);
    float2* Hh = at<float2>(work, l.Hh);
    float2* tw = at<float2>(work, l.tw);
    pack<float>(xt, x, nullptr, nullptr, B, L, D, l.S, l.R);
    pack<float>(gt, dy, nullptr, nullptr, B, L, D, l.S, l.R);
    fused_prepare(Hh, tw, weight, D, K, n);
    with_fused_n(n, [&]<int N>() {
        using C = FusedConfig<N>;
        fftconv::launch_backward<N, C::E, C::MINB, C::SPLIT>(gt, dweight, dbias, gt, xt, Hh, tw, bias, B, L, D, K, silu,
                                                             at<float>(work, l.part));
    });
    unpack<float>(dx, gt, nullptr, B, L, D, l.S, false, l.R);
}
} // namespace

template <typename T> bool fft_conv_fused_supported(int64_t L, int64_t K) {
    return std::is_same_v<T, float> && fused_fits(L, K);
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
