// train/guard.cpp: see guard.h.
#include "train/guard.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "autograd/grad_mode.h"
#include "cuda/optim.h"
#include "cuda/runtime.h"
#include "ops/dispatch.h"
#include "tensor/check.h"

namespace mg::train {

namespace {

// The offending tensor's count of non-finite values, and the first one (row-major).
[[noreturn]] void report(int64_t step, std::string_view what, const std::string& name, const Tensor& t) {
    const std::vector<double> v = t.detach().to(DType::f64).to(Device::cpu()).to_vector<double>();
    int64_t count = 0, first = -1;
    for (size_t i = 0; i < v.size(); ++i)
        if (!std::isfinite(v[i])) {
            if (first < 0) first = int64_t(i);
            ++count;
        }
    MG_ASSERT(first >= 0);
    std::vector<int64_t> index(t.shape().size());
    for (int64_t d = int64_t(index.size()) - 1, rest = first; d >= 0; --d) {
        index[size_t(d)] = rest % t.shape()[size_t(d)];
        rest /= t.shape()[size_t(d)];
    }
    throw Error(fmt::format("NaN/Inf guard: step {}: {} '{}' ({}) has {} non-finite value{}; the first is {} at "
                            "index ({}) (flat {})",
                            step, what, name, t.desc(), count, count == 1 ? "" : "s", v[size_t(first)],
                            fmt::join(index, ","), first));
}

template <typename T> bool all_finite_cpu(const T* x, int64_t n) {
    bool ok = true;
#pragma omp parallel for reduction(&& : ok) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) ok = ok && std::isfinite(x[i]);
    return ok;
}

} // namespace

void check_finite(int64_t step, const NamedTensors& tensors, std::string_view what) {
    autograd::NoGrad no_grad;
    struct CudaGroup {
        int device;
        std::vector<cuda::FlagSlot<float>> f32;
        std::vector<cuda::FlagSlot<double>> f64;
        std::vector<size_t> which32, which64; // the tensors' indices, per slot
        Tensor flags; // i32 (which.size()) on the device
    };
    std::vector<CudaGroup> groups;
    std::vector<Tensor> keep; // contiguous copies of strided tensors, alive until the launches
    size_t bad = tensors.size(); // the first offending tensor in list order, over all devices
    for (size_t i = 0; i < tensors.size(); ++i) {
        Tensor t = tensors[i].second;
        if (!t.defined() || !is_floating(t.dtype())) continue;
        if (!t.is_contiguous()) keep.push_back(t = t.contiguous());
        dispatch_float(t.dtype(), "check_finite", [&]<typename T>() {
            if (t.device().is_cpu()) {
                if (i < bad && !all_finite_cpu(t.data<T>(), t.numel())) bad = i;
                return;
            }
            auto it = std::find_if(groups.begin(), groups.end(),
                                   [&](const CudaGroup& q) { return q.device == t.device().index; });
            if (it == groups.end()) it = groups.insert(groups.end(), CudaGroup{t.device().index, {}, {}, {}, {}, {}});
            cuda::FlagSlot<T> slot{t.data<T>(), t.numel(), nullptr};
            if constexpr (std::is_same_v<T, float>) {
                it->f32.push_back(slot);
                it->which32.push_back(i);
            } else {
                it->f64.push_back(slot);
                it->which64.push_back(i);
            }
        });
    }
    for (CudaGroup& q : groups) {
        q.flags = Tensor::zeros({int64_t(q.f32.size() + q.f64.size())}, {DType::i32, Device::cuda(q.device)});
        int* flag = q.flags.data<int32_t>();
        for (auto& s : q.f32) s.flag = flag++;
        for (auto& s : q.f64) s.flag = flag++;
        MG_CUDA_ONLY(cuda::DeviceGuard dg(q.device); cuda::nonfinite_flags(q.f32); cuda::nonfinite_flags(q.f64));
    }
    for (const CudaGroup& q : groups) {
        const std::vector<int32_t> f = q.flags.to(Device::cpu()).to_vector<int32_t>();
        // the flags are in slot order: the f32 slots, then the f64 slots
        for (size_t k = 0; k < f.size(); ++k) {
            const size_t i = k < q.which32.size() ? q.which32[k] : q.which64[k - q.which32.size()];
            if (f[k] && i < bad) bad = i;
        }
    }
    if (bad < tensors.size()) report(step, what, tensors[bad].first, tensors[bad].second);
}

void check_finite(int64_t step, double loss, const NamedTensors& params) {
    MG_CHECK(std::isfinite(loss), "NaN/Inf guard: step {}: the loss is {}", step, loss);
    NamedTensors grads;
    grads.reserve(params.size());
    for (const auto& [name, p] : params) grads.emplace_back(name, p.grad());
    check_finite(step, grads, "gradient");
}

} // namespace mg::train
