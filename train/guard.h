// train/guard.h: the NaN/Inf guard. After backward, check the loss and the gradients (or any
// named tensors) and stop the run with an mg::Error that says where the first non-finite value is:
//
//   NaN/Inf guard: step 12: gradient 'layers.0.mixer.A_log' ((8,16) f32 cpu) has 3 non-finite
//   values; the first is nan at index (0,5)
//
// Cost: per tensor one elementwise op and one sum (x - x is 0 for every finite x and NaN for
// NaN/Inf, so sum(x - x) is NaN exactly when x holds a non-finite value); the per-tensor probes
// are concatenated and read back with ONE host sync per device. Only on failure is the offending
// tensor copied to the host to find the index.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "autograd/grad_mode.h"
#include "ops/cat.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tensor/check.h"
#include "train/optim.h"

namespace mg::train {

namespace guard_detail {

// The offending tensor's count of non-finite values, and the first one (row-major).
[[noreturn]] inline void report(int64_t step, std::string_view what, const std::string& name, const Tensor& t) {
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

} // namespace guard_detail

// Throws when any floating tensor in `tensors` holds NaN or Inf (undefined and i32 tensors are
// skipped). `what` names the kind in the message ("gradient", "parameter").
inline void check_finite(int64_t step, const NamedTensors& tensors, std::string_view what = "gradient") {
    autograd::NoGrad no_grad;
    struct Group {
        Device device;
        std::vector<size_t> which;
        std::vector<Tensor> probes;
    };
    std::vector<Group> groups;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const Tensor& t = tensors[i].second;
        if (!t.defined() || !is_floating(t.dtype())) continue;
        Tensor x = t.detach();
        Tensor probe = sum(x - x).to(DType::f64).reshape({1});
        size_t g = 0;
        while (g < groups.size() && !(groups[g].device == t.device())) ++g;
        if (g == groups.size()) groups.push_back({t.device(), {}, {}});
        groups[g].which.push_back(i);
        groups[g].probes.push_back(probe);
    }
    // The first offending tensor in list order, over all devices.
    size_t bad = tensors.size();
    for (const Group& g : groups) {
        const std::vector<double> s = cat(g.probes, 0).to(Device::cpu()).to_vector<double>();
        for (size_t k = 0; k < s.size(); ++k)
            if (!std::isfinite(s[k]) && g.which[k] < bad) bad = g.which[k];
    }
    if (bad < tensors.size()) guard_detail::report(step, what, tensors[bad].first, tensors[bad].second);
}

// The loss first, then the gradients of `params` (their .grad()).
inline void check_finite(int64_t step, double loss, const NamedTensors& params) {
    MG_CHECK(std::isfinite(loss), "NaN/Inf guard: step {}: the loss is {}", step, loss);
    NamedTensors grads;
    grads.reserve(params.size());
    for (const auto& [name, p] : params) grads.emplace_back(name, p.grad());
    check_finite(step, grads, "gradient");
}

} // namespace mg::train
