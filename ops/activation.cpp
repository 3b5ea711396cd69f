// ops/activation.cpp: see ops/activation.h for shapes and derivatives.
#include "ops/activation.h"

#include "autograd/node.h"
#include "cuda/activation.h"
#include "cuda/runtime.h"
#include "ops/checks.h"
#include "ops/dispatch.h"
#include "ops/vec_math.h"

#include <type_traits>

namespace mg {

// ---- CPU kernels ----------------------------------------------------------------------------
// In float, SiLU, softplus and sigmoid use ops/vec_math.h's branch-free functions, one loop per
// activation, so the loops vectorise; the rest (and double) use common/activation.h's formulas.
template <typename T> void activation_forward_cpu(T* out, const T* x, int64_t n, Activation act) {
    if constexpr (std::is_same_v<T, float>) {
        auto each = [&](auto f) {
#pragma omp parallel for simd if (n > kParallelGrain)
            for (int64_t i = 0; i < n; ++i) out[i] = f(x[i]);
        };
        switch (act) {
        case Activation::silu: return each([](float v) { return vm::silu(v); });
        case Activation::softplus: return each([](float v) { return vm::softplus(v); });
        case Activation::sigmoid: return each([](float v) { return vm::sigmoid(v); });
        default: break;
        }
    }
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) out[i] = activation_apply(act, x[i]);
}

// d act(x) / dx = see the table in ops/activation.h; the formulas live in activation_grad.
template <typename T>
void activation_backward_cpu(T* dx, const T* dy, const T* x, int64_t n, Activation act) {
    if constexpr (std::is_same_v<T, float>) {
        auto each = [&](auto f) {
#pragma omp parallel for simd if (n > kParallelGrain)
            for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * f(x[i]);
        };
        switch (act) {
        case Activation::silu: return each([](float v) { return vm::silu_grad(v); });
        case Activation::softplus: return each([](float v) { return vm::softplus_grad(v); });
        case Activation::sigmoid: return each([](float v) {
            float s = vm::sigmoid(v);
            return s * (1.f - s);
        });
        default: break;
        }
    }
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) dx[i] = activation_grad(act, dy[i], x[i]);
}

template <typename T>
void dropout_cpu(T* out, const T* x, int64_t n, double p, T scale, uint64_t seed, uint64_t offset) {
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) out[i] = dropout_keep(seed, offset, i, p) ? x[i] * scale : T(0);
}

// ---- references -----------------------------------------------------------------------------
template <typename T> void activation_ref(double* out, const T* x, int64_t n, Activation act) {
    const double pi = 3.14159265358979323846;
    for (int64_t i = 0; i < n; ++i) {
        double v = double(x[i]);
        switch (act) {
        case Activation::silu: out[i] = v / (1.0 + std::exp(-v)); break;
        case Activation::softplus: out[i] = v > 20.0 ? v : std::log1p(std::exp(v)); break;
        case Activation::sigmoid: out[i] = 1.0 / (1.0 + std::exp(-v)); break;
        // x Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2, and x/2 (1 + tanh u) = x / (1 + exp(-2u)):
        // the same functions as the textbook (1 + erf) and (1 + tanh) forms, without their
        // cancellation at negative x
        case Activation::gelu: out[i] = 0.5 * v * std::erfc(-v / std::sqrt(2.0)); break;
        case Activation::gelu_tanh:
            out[i] = v / (1.0 + std::exp(-2.0 * std::sqrt(2.0 / pi) * (v + 0.044715 * v * v * v)));
            break;
        }
    }
}

template <typename T>
void dropout_ref(double* out, const T* x, int64_t n, double p, uint64_t seed, uint64_t offset) {
    for (int64_t i = 0; i < n; ++i) {
        bool keep = rng::uniform01(seed, offset + uint64_t(i)) >= p;
        out[i] = keep ? double(x[i]) / (1.0 - p) : 0.0;
    }
}

namespace {

const char* activation_name(Activation act) {
    switch (act) {
    case Activation::silu: return "silu";
    case Activation::softplus: return "softplus";
    case Activation::sigmoid: return "sigmoid";
    default: return "gelu";
    }
}

struct ActivationBackward : autograd::Node {
    Activation act;
    Tensor x; // contiguous, detached
    std::string name() const override {
        static const char* names[] = {"SiluBackward", "SoftplusBackward", "SigmoidBackward",
                                      "GeluBackward", "GeluTanhBackward"};
        return names[int(act)];
    }
    void release() override { x = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        Tensor dy = grads[0].contiguous();
        Tensor dx = Tensor::empty(x.shape(), x.options());
        int64_t n = dx.numel();
        dispatch_float(x.dtype(), activation_name(act), [&]<typename T>() {
            if (x.device().is_cpu()) {
                activation_backward_cpu<T>(dx.data<T>(), dy.data<T>(), x.data<T>(), n, act);
            } else {
                MG_CUDA_ONLY(cuda::DeviceGuard g(x.device().index);
                             cuda::activation_backward<T>(dx.data<T>(), dy.data<T>(), x.data<T>(), n, act));
            }
        });
        return {dx};
    }
};

Tensor activation(const Tensor& x_in, Activation act) {
    const char* name = activation_name(act);
    check_float(name, "x", x_in);
    Tensor x = x_in.detach().contiguous();
    Tensor out = Tensor::empty(x.shape(), x.options());
    int64_t n = out.numel();
    dispatch_float(x.dtype(), name, [&]<typename T>() {
        if (x.device().is_cpu()) {
            activation_forward_cpu<T>(out.data<T>(), x.data<T>(), n, act);
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(x.device().index);
                         cuda::activation_forward<T>(out.data<T>(), x.data<T>(), n, act));
        }
    });
    autograd::record<ActivationBackward>({x_in}, {out}, [&](ActivationBackward& node) {
        node.act = act;
        node.x = x;
    });
    return out;
}

// out = mask(seed, offset) * x / (1 - p), no graph. Used by the forward (on x) and the
// backward (on dy): the map is linear and diagonal, so it is its own adjoint.
Tensor dropout_raw(const Tensor& x_in, double p, uint64_t seed, uint64_t offset) {
    Tensor x = x_in.detach().contiguous();
    Tensor out = Tensor::empty(x.shape(), x.options());
    int64_t n = out.numel();
    double scale = p < 1.0 ? 1.0 / (1.0 - p) : 0.0; // p = 1 keeps nothing, so scale is unused
    dispatch_float(x.dtype(), "dropout", [&]<typename T>() {
        if (x.device().is_cpu()) {
            dropout_cpu<T>(out.data<T>(), x.data<T>(), n, p, T(scale), seed, offset);
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(x.device().index);
                         cuda::dropout<T>(out.data<T>(), x.data<T>(), n, p, T(scale), seed, offset));
        }
    });
    return out;
}

struct DropoutBackward : autograd::Node {
    double p = 0;
    uint64_t seed = 0, offset = 0; // the mask is regenerated from these, never stored
    std::string name() const override { return "DropoutBackward"; }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        return {dropout_raw(grads[0], p, seed, offset)};
    }
};

} // namespace

Tensor silu(const Tensor& x) { return activation(x, Activation::silu); }
Tensor softplus(const Tensor& x) { return activation(x, Activation::softplus); }
Tensor sigmoid(const Tensor& x) { return activation(x, Activation::sigmoid); }
Tensor gelu(const Tensor& x, GeluApprox approx) {
    return activation(x, approx == GeluApprox::tanh ? Activation::gelu_tanh : Activation::gelu);
}

Tensor dropout(const Tensor& x, double p, Generator& gen, bool training) {
    check_float("dropout", "x", x);
    MG_CHECK(p >= 0.0 && p <= 1.0, "dropout: p = {} for x {}, expected 0 <= p <= 1", p, x.desc());
    if (!training || p == 0.0) return x;
    uint64_t seed = gen.seed(), offset = gen.take(uint64_t(x.numel()));
    Tensor out = dropout_raw(x, p, seed, offset);
    autograd::record<DropoutBackward>({x}, {out}, [&](DropoutBackward& n) {
        n.p = p;
        n.seed = seed;
        n.offset = offset;
    });
    return out;
}

#define MG_INST(T)                                                                                \
    template void activation_forward_cpu<T>(T*, const T*, int64_t, Activation);                   \
    template void activation_backward_cpu<T>(T*, const T*, const T*, int64_t, Activation);        \
    template void dropout_cpu<T>(T*, const T*, int64_t, double, T, uint64_t, uint64_t);            \
    template void activation_ref<T>(double*, const T*, int64_t, Activation);                      \
    template void dropout_ref<T>(double*, const T*, int64_t, double, uint64_t, uint64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg
