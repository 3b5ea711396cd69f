// cuda/optim.cu: fused AdamW step, clip-by-value and the NaN/Inf probe, each over many tensors per
// launch (cuda/multi_tensor.h); elementwise, no floating-point reductions.
#include <cmath>

#include "cuda/multi_tensor.h"
#include "cuda/optim.h"

namespace mg::cuda {

template <typename T> __global__ void adamw_step_kernel(TensorBatch<AdamWSlot<T>> b, const unsigned long long* skip) {
    if (skip && *skip) return;
    int64_t chunk;
    const AdamWSlot<T>& s = b.slot[slot_of_block(b, int(blockIdx.x), chunk)];
    MG_CHUNK_LOOP(i, s, chunk) {
        T p = s.p[i], m = s.m[i], v = s.v[i];
        adamw_update(p, m, v, s.g[i], s.c);
        s.p[i] = p;
        s.m[i] = m;
        s.v[i] = v;
    }
}
template <typename T> void adamw_step(const std::vector<AdamWSlot<T>>& slots, const unsigned long long* skip) {
    for_each_batch(slots, adamw_step_kernel<T>, skip);
}

template <typename T> __global__ void clip_value_kernel(TensorBatch<TensorSlot<T>> b, T c) {
    int64_t chunk;
    const TensorSlot<T>& s = b.slot[slot_of_block(b, int(blockIdx.x), chunk)];
    MG_CHUNK_LOOP(i, s, chunk) s.x[i] = clip_value_apply(s.x[i], c);
}
template <typename T> void clip_value(const std::vector<TensorSlot<T>>& slots, T c) {
    for_each_batch(slots, clip_value_kernel<T>, c);
}

void probe_init(unsigned long long* words, int64_t count) {
    CUDA_CHECK(cudaMemsetAsync(words, 0, size_t(1 + count) * sizeof(unsigned long long), 0));
    CUDA_CHECK(cudaMemsetAsync(words + 1 + count, 0xff, size_t(count) * sizeof(unsigned long long), 0));
}

// Each thread counts its non-finite values and keeps the smallest code; the warp combines them
// with shuffles, and one lane per warp that saw any adds the count and takes the min.
template <typename T> __global__ void nonfinite_probe_kernel(TensorBatch<ProbeSlot<T>> b) {
    int64_t chunk;
    const ProbeSlot<T>& s = b.slot[slot_of_block(b, int(blockIdx.x), chunk)];
    unsigned long long count = 0, first = ~0ull;
    MG_CHUNK_LOOP(i, s, chunk) {
        const T x = s.x[i];
        if (!isfinite(x)) {
            ++count;
            const int kind = isnan(x) ? kProbeNan : x > 0 ? kProbePosInf : kProbeNegInf;
            first = min(first, (unsigned long long)(i) << 2 | (unsigned long long)(kind));
        }
    }
    if (!__any_sync(0xffffffffu, count != 0)) return;
    for (int o = 16; o > 0; o >>= 1) {
        count += __shfl_xor_sync(0xffffffffu, count, o);
        first = min(first, __shfl_xor_sync(0xffffffffu, first, o));
    }
    if ((threadIdx.x & 31) == 0) {
        atomicAdd(s.count, count);
        atomicMin(s.first, first);
        atomicOr(s.any, 1ull);
    }
}
template <typename T> void nonfinite_probe(const std::vector<ProbeSlot<T>>& slots) {
    for_each_batch(slots, nonfinite_probe_kernel<T>);
}

#define MG_INST(T)                                                                               \
    template void adamw_step<T>(const std::vector<AdamWSlot<T>>&, const unsigned long long*);     \
    template void clip_value<T>(const std::vector<TensorSlot<T>>&, T);                           \
    template void nonfinite_probe<T>(const std::vector<ProbeSlot<T>>&);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
