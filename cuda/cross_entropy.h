// cuda/cross_entropy.h: CUDA launchers for ops/cross_entropy.h (logits contiguous (R, V)).
#pragma once
#include <cstdint>

namespace mg::cuda {

// loss[0] = mean over labelled rows of (lse_r - z_r,t_r) (0 when none), count[0] = n, lse[r]
// for every row. row_loss (R) is scratch. A target that is neither ignore_index nor in [0, V)
// makes its row's loss NaN and is recorded in `error_word` (cuda/index_check.h). Writes (=).
template <typename T>
void cross_entropy_forward(T* loss, T* count, T* lse, T* row_loss, const T* logits, const int32_t* targets, int64_t R,
                           int64_t V, int32_t ignore_index, unsigned long long* error_word);
// dlogits_rv = dloss/n (exp(z_rv - lse_r) - [v = t_r]) for labelled rows, 0 otherwise; dloss and
// n = count are read on the device. Writes (=).
template <typename T>
void cross_entropy_backward(T* dlogits, const T* dloss, const T* logits, const int32_t* targets, const T* lse,
                            const T* count, int64_t R, int64_t V, int32_t ignore_index);

} // namespace mg::cuda
