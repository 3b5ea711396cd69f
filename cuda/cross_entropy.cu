// cuda/cross_entropy.cu: fused, stable cross-entropy.
//
// Forward, one block per row, one pass over the logits: each thread keeps a running max m and
// a sum s of exp(z - m), rescaling s when m grows; the block merges the (m, s) pairs in a fixed
// tree order, giving lse = m + log s without ever exponentiating a positive number. A second,
// single-block kernel sums the row losses and counts the labelled rows in a fixed order and
// divides on the device, so the host never waits. Backward: one block per row again.
#include <limits>

#include "cuda/cross_entropy.h"
#include "cuda/index_check.h"
#include "cuda/launch.h"

namespace mg::cuda {

namespace {

constexpr int kRowThreads = 256;
constexpr int kSumThreads = 1024;

// (m, s) <- the merge of (m, s) and (m2, s2): both describe sum exp(z) = s exp(m).
template <typename T> __device__ void merge(T& m, T& s, T m2, T s2) {
    T M = m > m2 ? m : m2;
    if (M == -std::numeric_limits<T>::infinity()) return; // both empty
    s = s * exp(m - M) + s2 * exp(m2 - M);
    m = M;
}

// (m, s) <- the same with one more logit z: one exp per logit.
template <typename T> __device__ void push(T& m, T& s, T z) {
    if (z > m) { // the running max grows (from -inf: s = 0 exp(-inf) + 1)
        s = s * exp(m - z) + T(1);
        m = z;
    } else if (z != -std::numeric_limits<T>::infinity()) { // exp(-inf) adds nothing; NaN propagates
        s += exp(z - m);
    }
}

} // namespace

template <typename T>
__global__ void cross_entropy_rows_kernel(T* lse, T* row_loss, const T* logits, const int32_t* targets, int64_t V,
                                          int32_t ignore_index, unsigned long long* error_word) {
    __shared__ T sm[kRowThreads], ss[kRowThreads];
    const T* z = logits + int64_t(blockIdx.x) * V;
    T m = -std::numeric_limits<T>::infinity(), s = T(0);
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) push(m, s, z[v]);
    sm[threadIdx.x] = m;
    ss[threadIdx.x] = s;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) {
            T a = sm[threadIdx.x], b = ss[threadIdx.x];
            merge(a, b, sm[threadIdx.x + k], ss[threadIdx.x + k]);
            sm[threadIdx.x] = a;
            ss[threadIdx.x] = b;
        }
        __syncthreads();
    }
    if (threadIdx.x != 0) return;
    T row_max = sm[0], log_s = log(ss[0]);
    lse[blockIdx.x] = row_max + log_s;
    int32_t t = targets[blockIdx.x];
    if (t == ignore_index) {
        row_loss[blockIdx.x] = T(0);
    } else if (t >= 0 && t < V) {
        // (m - z_t) + log s, not lse - z_t: when z_t is the max the first term is exactly 0,
        // so a huge logit (1e4) does not cost the loss its f32 ulp at 1e4 (~1e-3)
        row_loss[blockIdx.x] = (row_max - z[t]) + log_s;
    } else {
        row_loss[blockIdx.x] = std::numeric_limits<T>::quiet_NaN();
        record_index_error(error_word, blockIdx.x, t);
    }
}

// loss = sum of row_loss / n over labelled rows (0 when n = 0); one block, fixed order.
template <typename T>
__global__ void cross_entropy_mean_kernel(T* loss, T* count, const T* row_loss, const int32_t* targets, int64_t R,
                                          int32_t ignore_index) {
    __shared__ T s_sum[kSumThreads];
    __shared__ int64_t s_n[kSumThreads];
    T acc = T(0);
    int64_t n = 0;
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x) {
        if (targets[r] == ignore_index) continue;
        acc += row_loss[r];
        ++n;
    }
    s_sum[threadIdx.x] = acc;
    s_n[threadIdx.x] = n;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) {
            s_sum[threadIdx.x] += s_sum[threadIdx.x + k];
            s_n[threadIdx.x] += s_n[threadIdx.x + k];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        loss[0] = s_n[0] > 0 ? s_sum[0] / T(s_n[0]) : T(0);
        count[0] = T(s_n[0]);
    }
}

template <typename T>
void cross_entropy_forward(T* loss, T* count, T* lse, T* row_loss, const T* logits, const int32_t* targets, int64_t R,
                           int64_t V, int32_t ignore_index, unsigned long long* error_word) {
    if (R > 0) {
        cross_entropy_rows_kernel<T><<<unsigned(R), kRowThreads>>>(lse, row_loss, logits, targets, V, ignore_index,
                                                                   error_word);
        CUDA_CHECK_LAUNCH();
    }
    cross_entropy_mean_kernel<T><<<1, kSumThreads>>>(loss, count, row_loss, targets, R, ignore_index);
    CUDA_CHECK_LAUNCH();
}

// dz_rv = g/n (exp(z_rv - lse_r) - [v = t_r]) for labelled rows, 0 for ignored rows or n = 0.
// One block per row (the row's target, lse and the scale are read once; no index division).
template <typename T>
__global__ void cross_entropy_backward_kernel(T* dlogits, const T* dloss, const T* logits, const int32_t* targets,
                                              const T* lse, const T* count, int64_t V, int32_t ignore_index) {
    int64_t r = blockIdx.x;
    T n = count[0];
    T scale = n > T(0) ? dloss[0] / n : T(0);
    int32_t t = targets[r];
    T l = lse[r];
    bool zero = t == ignore_index || n == T(0), bad = !zero && (t < 0 || t >= V);
    const T* z = logits + r * V;
    T* d = dlogits + r * V;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        if (zero) d[v] = T(0);
        else if (bad) d[v] = std::numeric_limits<T>::quiet_NaN();
        else d[v] = scale * (exp(z[v] - l) - (v == t ? T(1) : T(0)));
    }
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* dloss, const T* logits, const int32_t* targets, const T* lse,
                            const T* count, int64_t R, int64_t V, int32_t ignore_index) {
    if (R == 0 || V == 0) return;
    cross_entropy_backward_kernel<T><<<unsigned(R), kRowThreads>>>(dlogits, dloss, logits, targets, lse, count, V,
                                                                   ignore_index);
    CUDA_CHECK_LAUNCH();
}

#define MG_INST(T)                                                                                            \
    template void cross_entropy_forward<T>(T*, T*, T*, T*, const T*, const int32_t*, int64_t, int64_t, int32_t, \
                                           unsigned long long*);                                             \
    template void cross_entropy_backward<T>(T*, const T*, const T*, const int32_t*, const T*, const T*, int64_t, \
                                            int64_t, int32_t);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
