// cuda/optim.cu: fused AdamW step, clip-by-value and the NaN/Inf probe, each over many tensors per
// launch (cuda/multi_tensor.h); elementwise, no floating-point reductions.
#include <cmath>

#include "cuda/multi_tensor.h"
#include "cuda/optim.h"

namespace mg::cuda {

template <typename T> __global__ void adamw_step_kernel(TensorBatch<AdamWSlot<T>> b) {
    int64_t chunk;
    const AdamWSlot<T>& s = b.slot[slot_of_block(b, int(blockIdx.x), chunk)];
    MG_CHUNK_LOOP(i, s, chunk) {
        T p = s.p[i], m = s.m[i], v = s.v[i];
        train::adamw_update(p, m, v, s.g[i], s.c);
        s.p[i] = p;
        s.m[i] = m;
        s.v[i] = v;
    }
}
template <typename T> void adamw_step(const std::vector<AdamWSlot<T>>& slots) {
    for_each_batch(slots, adamw_step_kernel<T>);
}

template <typename T> __global__ void clip_value_kernel(TensorBatch<TensorSlot<T>> b, T c) {
    int64_t chunk;
    const TensorSlot<T>& s = b.slot[slot_of_block(b, int(blockIdx.x), chunk)];
    MG_CHUNK_LOOP(i, s, chunk) s.x[i] = train::clip_value_apply(s.x[i], c);
}
template <typename T> void clip_value(const std::vector<TensorSlot<T>>& slots, T c) {
    for_each_batch(slots, clip_value_kernel<T>, c);
}

// Each warp votes; one lane per warp that saw a non-finite value sets the flag (an integer
// store of the same value from any writer: the result does not depend on the order).
template <typename T> __global__ void nonfinite_kernel(TensorBatch<FlagSlot<T>> b) {
    int64_t chunk;
    const FlagSlot<T>& s = b.slot[slot_of_block(b, int(blockIdx.x), chunk)];
    bool bad = false;
    MG_CHUNK_LOOP(i, s, chunk) bad |= !isfinite(s.x[i]);
    if (__any_sync(0xffffffffu, bad) && (threadIdx.x & 31) == 0) atomicOr(s.flag, 1);
}
template <typename T> void nonfinite_flags(const std::vector<FlagSlot<T>>& slots) {
    for_each_batch(slots, nonfinite_kernel<T>);
}

#define MG_INST(T)                                                                               \
    template void adamw_step<T>(const std::vector<AdamWSlot<T>>&);                               \
    template void clip_value<T>(const std::vector<TensorSlot<T>>&, T);                           \
    template void nonfinite_flags<T>(const std::vector<FlagSlot<T>>&);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
