// cuda/rope.cu: rotary position embedding, one thread per output element (grid-stride); the
// element's math is common/rope.h's, shared with the CPU loop.
#include "common/rope.h"
#include "cuda/launch.h"
#include "cuda/rope.h"

namespace mg::cuda {

template <typename T>
__global__ void rope_kernel(int64_t n, T* out, const T* x, int64_t L, int64_t Dh, int64_t rotary_dims, double base,
                           int64_t pos_offset, double sign) {
    MG_GRID_LOOP(e, n) {
        const int64_t j = e % Dh, row = e / Dh, t = pos_offset + row % L;
        out[e] = rope_element(x + row * Dh, j, t, rotary_dims, base, sign);
    }
}

template <typename T>
void rope(T* out, const T* x, int64_t N, int64_t L, int64_t Dh, int64_t rotary_dims, double base, int64_t pos_offset,
          double sign) {
    launch_linear(rope_kernel<T>, N * L * Dh, out, x, L, Dh, rotary_dims, base, pos_offset, sign);
}

template void rope<float>(float*, const float*, int64_t, int64_t, int64_t, int64_t, double, int64_t, double);
template void rope<double>(double*, const double*, int64_t, int64_t, int64_t, int64_t, double, int64_t, double);

} // namespace mg::cuda
