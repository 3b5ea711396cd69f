// ops/factory.cpp: zeros, ones, full, arange, uniform, randn, scalar. Random factories draw
// element i from (seed, offset + i) (tensor/random.h), so CPU and CUDA give the same stream.
#include "cuda/copy.h"
#include "cuda/runtime.h"
#include "ops/dispatch.h"
#include "tensor/random.h"

namespace mg {

namespace {

// Fills a fresh tensor: cpu_value(i) on the CPU, the matching CUDA kernel on the GPU.
template <typename CpuFn, typename CudaFn>
Tensor make_filled(const Shape& shape, Options o, CpuFn cpu_value, [[maybe_unused]] CudaFn cuda_fill) {
    bool rg = o.requires_grad;
    o.requires_grad = false;
    Tensor t = Tensor::empty(shape, o);
    int64_t n = t.numel();
    dispatch_all(o.dtype, [&]<typename T>() {
        T* p = t.data<T>();
        if (o.device.is_cpu()) {
#pragma omp parallel for if (n > kParallelGrain)
            for (int64_t i = 0; i < n; ++i) p[i] = T(cpu_value(i));
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(o.device.index); cuda_fill(p, n));
        }
    });
    if (rg) t.set_requires_grad(true);
    return t;
}

} // namespace

Tensor Tensor::full(const Shape& shape, double value, Options o) {
    return make_filled(shape, o, [&](int64_t) { return value; },
                       [&]<typename T>(T* p, int64_t n) { MG_CUDA_ONLY(cuda::fill<T>(p, n, T(value))); });
}
Tensor Tensor::zeros(const Shape& shape, Options o) { return full(shape, 0.0, o); }
Tensor Tensor::ones(const Shape& shape, Options o) { return full(shape, 1.0, o); }
Tensor Tensor::scalar(double v, Options o) { return full({}, v, o); }

Tensor Tensor::arange(int64_t n, Options o) {
    MG_CHECK(n >= 0, "arange: n = {}, expected n >= 0", n);
    return make_filled({n}, o, [](int64_t i) { return double(i); },
                       [&]<typename T>(T* p, int64_t m) { MG_CUDA_ONLY(cuda::arange<T>(p, m)); });
}

Tensor Tensor::uniform(const Shape& shape, double lo, double hi, Options o, Generator& gen) {
    MG_CHECK(lo <= hi, "uniform: lo = {} > hi = {}", lo, hi);
    MG_CHECK(is_floating(o.dtype), "uniform: dtype {} is not supported, expected f32, f64 or bf16",
             dtype_name(o.dtype));
    uint64_t seed = gen.seed(), off = gen.take(uint64_t(numel_of(shape)));
    return make_filled(shape, o,
                       [&](int64_t i) { return lo + (hi - lo) * rng::uniform01(seed, off + uint64_t(i)); },
                       [&]<typename T>(T* p, int64_t n) { MG_CUDA_ONLY(cuda::uniform<T>(p, n, seed, off, lo, hi)); });
}

Tensor Tensor::randn(const Shape& shape, Options o, Generator& gen) {
    MG_CHECK(is_floating(o.dtype), "randn: dtype {} is not supported, expected f32, f64 or bf16",
             dtype_name(o.dtype));
    uint64_t seed = gen.seed(), off = gen.take(uint64_t(numel_of(shape)));
    return make_filled(shape, o, [&](int64_t i) { return rng::normal(seed, off + uint64_t(i)); },
                       [&]<typename T>(T* p, int64_t n) { MG_CUDA_ONLY(cuda::normal<T>(p, n, seed, off)); });
}

} // namespace mg
