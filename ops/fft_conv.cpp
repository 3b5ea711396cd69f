// ops/fft_conv.cpp: the FFT convolution op (autograd through ops/causal_conv_op.h) and
// causal_conv, which picks the direct or the FFT path. The CPU kernels are ops/fft_conv_cpu.cpp,
// the CPU FFT ops/fft_cpu.cpp; ops/fft_conv.h documents the method and the derivatives.
#include "ops/fft_conv.h"

#include "cuda/fft_conv.h"
#include "cuda/runtime.h"
#include "ops/causal_conv_op.h"
#include "ops/conv1d.h"
#include "ops/dispatch.h"

namespace mg {

// ---- the op ---------------------------------------------------------------------------------
namespace {

struct FftConvKernels {
    static constexpr const char* op = "fft_causal_conv";
    static constexpr const char* node = "FftCausalConvBackward";
    template <typename T>
    static void forward(Device dev, T* y, const T* x, const T* w, const T* bias, int64_t B, int64_t L, int64_t D,
                        int64_t K, bool silu) {
        if (dev.is_cpu()) return fft_conv_forward_cpu<T>(y, x, w, bias, B, L, D, K, silu);
        MG_CUDA_ONLY(
            cuda::DeviceGuard g(dev.index);
            Tensor work = Tensor::empty({cuda::fft_conv_work<T>(B, L, D, K, false)}, Options{dtype_of<T>, dev});
            cuda::fft_conv_forward<T>(y, work.data<T>(), x, w, bias, B, L, D, K, silu));
    }
    template <typename T>
    static void backward(Device dev, T* dx, T* dw, T* dbias, const T* dy, const T* x, const T* w, const T* bias,
                         int64_t B, int64_t L, int64_t D, int64_t K, bool silu) {
        if (dev.is_cpu()) return fft_conv_backward_cpu<T>(dx, dw, dbias, dy, x, w, bias, B, L, D, K, silu);
        MG_CUDA_ONLY(
            cuda::DeviceGuard g(dev.index);
            Tensor work = Tensor::empty({cuda::fft_conv_work<T>(B, L, D, K, true)}, Options{dtype_of<T>, dev});
            cuda::fft_conv_backward<T>(dx, dw, dbias, work.data<T>(), dy, x, w, bias, B, L, D, K, silu));
    }
};

} // namespace

Tensor fft_causal_conv(const Tensor& x, const Tensor& weight, const Tensor& bias, bool silu) {
    return detail::causal_conv_op<FftConvKernels>(x, weight, bias, silu);
}

bool causal_conv_uses_fft(int64_t L, int64_t K, CausalConvMode mode) {
    switch (mode) {
    case CausalConvMode::direct: return false;
    case CausalConvMode::fft: return true;
    default: return !(K <= 64 || K * L <= 32768);
    }
}

Tensor causal_conv(const Tensor& x, const Tensor& weight, const Tensor& bias, CausalConvMode mode, bool silu) {
    check_causal_conv_args("causal_conv", x, weight, bias);
    if (causal_conv_uses_fft(x.size(1), weight.size(1), mode)) return fft_causal_conv(x, weight, bias, silu);
    return causal_conv1d(x, weight, bias, silu);
}

} // namespace mg
