// ops/multi_tensor.cpp: see ops/multi_tensor.h.
#include "ops/multi_tensor.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>

#include "autograd/grad_mode.h"
#include "cuda/optim.h"
#include "ops/dispatch.h"
#include "tensor/check.h"


namespace mg {

namespace {

// The one grouping helper of the three ops: calls fn.template operator()<T>(device, which) once
// per (CUDA device, dtype) among the defined CUDA tensors that `pick(i)` admits, `which` holding
// their indices in list order; groups come in order of first appearance.
template <typename Pick, typename Fn>
void for_each_cuda_group(size_t count, const char* op, Pick&& pick, Fn&& fn) {
    struct Group {
        int device;
        DType dtype;
        std::vector<size_t> which;
    };
    std::vector<Group> groups;
    for (size_t i = 0; i < count; ++i) {
        const Tensor* t = pick(i);
        if (!t || !t->defined() || !t->device().is_cuda()) continue;
        auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) {
            return g.device == t->device().index && g.dtype == t->dtype();
        });
        if (it == groups.end()) it = groups.insert(groups.end(), Group{t->device().index, t->dtype(), {}});
        it->which.push_back(i);
    }
    for (const Group& g : groups)
        dispatch_float(g.dtype, op, [&]<typename T>() { fn.template operator()<T>(g.device, g.which); });
}

void check_member(const char* op, const char* role, size_t i, const Tensor& t) {
    MG_CHECK(is_differentiable(t.dtype()), "{}: {}[{}] is {}, expected f32 or f64", op, role, i, t.desc());
    MG_CHECK(t.is_contiguous(), "{}: {}[{}] ({}) is not contiguous", op, role, i, t.desc());
}

} // namespace

// ---- AdamW ------------------------------------------------------------------------------------
void adamw_step_(const std::vector<AdamWTensors>& items, const std::vector<Tensor>& skip_words) {
    autograd::NoGrad no_grad;
    for (size_t i = 0; i < items.size(); ++i) {
        const AdamWTensors& a = items[i];
        check_member("adamw_step_", "p", i, a.p);
        for (const Tensor* t : {&a.m, &a.v, &a.g}) {
            MG_CHECK(t->defined() && t->shape() == a.p.shape() && t->dtype() == a.p.dtype() &&
                         t->device() == a.p.device() && t->is_contiguous(),
                     "adamw_step_: item {}: p is {}, but {} is {}; expected m, v and g contiguous and like p", i,
                     a.p.desc(), t == &a.m ? "m" : t == &a.v ? "v" : "g", t->defined() ? t->desc() : "undefined");
        }
        if (a.p.device().is_cpu())
            dispatch_float(a.p.dtype(), "adamw_step_", [&]<typename T>() {
                T *p = a.p.data<T>(), *m = a.m.data<T>(), *v = a.v.data<T>();
                const T* g = a.g.data<T>();
                const int64_t n = a.p.numel();
#pragma omp parallel for if (n > kParallelGrain)
                for (int64_t k = 0; k < n; ++k) adamw_update(p[k], m[k], v[k], g[k], a.c);
            });
    }
    for (const Tensor& w : skip_words)
        MG_CHECK(w.device().is_cuda() && w.dtype() == DType::i32 && w.numel() >= 2 && w.is_contiguous(),
                 "adamw_step_: skip word is {}, expected a contiguous CUDA i32 tensor of at least 2 elements (one "
                 "64-bit word)", w.desc());
    for_each_cuda_group(items.size(), "adamw_step_", [&](size_t i) { return &items[i].p; },
                        [&]<typename T>([[maybe_unused]] int device, const std::vector<size_t>& which) {
        [[maybe_unused]] const unsigned long long* skip = nullptr;
        for (const Tensor& w : skip_words)
            if (w.device().index == device) skip = reinterpret_cast<const unsigned long long*>(w.data<int32_t>());
        std::vector<cuda::AdamWSlot<T>> slots;
        for (size_t i : which) {
            const AdamWTensors& a = items[i];
            slots.push_back({a.p.data<T>(), a.m.data<T>(), a.v.data<T>(), a.g.data<T>(), a.p.numel(), a.c});
        }
        MG_CUDA_ONLY(cuda::DeviceGuard dg(device); cuda::adamw_step(slots, skip));
    });
}

// ---- clamp ------------------------------------------------------------------------------------
void clamp_(const std::vector<Tensor>& xs, double c) {
    MG_CHECK(c > 0 && !std::isnan(c), "clamp_: c is {}, expected > 0", c);
    autograd::NoGrad no_grad;
    for (size_t i = 0; i < xs.size(); ++i) {
        const Tensor& x = xs[i];
        if (!x.defined()) continue;
        check_member("clamp_", "xs", i, x);
        if (x.device().is_cpu())
            dispatch_float(x.dtype(), "clamp_", [&]<typename T>() {
                T* p = x.data<T>();
                const int64_t n = x.numel();
#pragma omp parallel for if (n > kParallelGrain)
                for (int64_t k = 0; k < n; ++k) p[k] = clip_value_apply(p[k], T(c));
            });
    }
    for_each_cuda_group(xs.size(), "clamp_", [&](size_t i) { return &xs[i]; },
                        [&]<typename T>([[maybe_unused]] int device, const std::vector<size_t>& which) {
        std::vector<cuda::TensorSlot<T>> slots;
        for (size_t i : which) slots.push_back({xs[i].data<T>(), xs[i].numel()});
        MG_CUDA_ONLY(cuda::DeviceGuard dg(device); cuda::clip_value(slots, T(c)));
    });
}

// ---- the non-finite scan ----------------------------------------------------------------------
namespace {

template <typename T> bool all_finite_cpu(const T* x, int64_t n) {
    bool ok = true;
#pragma omp parallel for reduction(&& : ok) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) ok = ok && std::isfinite(x[i]);
    return ok;
}

// Only for a tensor known to hold a non-finite value: a plain sequential pass.
template <typename T> NonfiniteScan::Finding first_nonfinite_cpu(const T* x, int64_t n) {
    NonfiniteScan::Finding f;
    for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(x[i])) {
            if (f.first < 0) f.first = i, f.value = double(x[i]);
            ++f.count;
        }
    return f;
}

} // namespace

NonfiniteScan::NonfiniteScan(const std::vector<Tensor>& xs) : findings_(xs.size()), done_(false) {
    autograd::NoGrad no_grad;
    std::vector<int64_t> slot(xs.size(), -1); // a CUDA tensor's position among its device's tensors
    for (size_t i = 0; i < xs.size(); ++i) {
        const Tensor& x = xs[i];
        if (!x.defined()) continue;
        check_member("NonfiniteScan", "xs", i, x);
        if (x.device().is_cpu()) {
            dispatch_float(x.dtype(), "NonfiniteScan", [&]<typename T>() {
                if (!all_finite_cpu(x.data<T>(), x.numel())) findings_[i] = first_nonfinite_cpu(x.data<T>(), x.numel());
            });
            continue;
        }
        auto it = std::find_if(devices_.begin(), devices_.end(),
                               [&](const DeviceWords& d) { return d.device == x.device().index; });
        if (it == devices_.end()) it = devices_.insert(devices_.end(), DeviceWords{x.device().index, {}, {}, {}});
        slot[i] = int64_t(it->which.size());
        it->which.push_back(i);
    }
    // Per device, the words of cuda/optim.h: "any", then a count and a first code per tensor.
    // (There is no 64-bit integer dtype: they live in an i32 tensor of twice the length.)
    for (DeviceWords& d : devices_) {
        const int64_t K = int64_t(d.which.size());
        d.words = Tensor::empty({2 * (1 + 2 * K)}, {DType::i32, Device::cuda(d.device)});
        MG_CUDA_ONLY(cuda::DeviceGuard dg(d.device);
                     cuda::probe_init(reinterpret_cast<unsigned long long*>(d.words.data<int32_t>()), K));
    }
    for_each_cuda_group(xs.size(), "NonfiniteScan", [&](size_t i) { return &xs[i]; },
                        [&]<typename T>([[maybe_unused]] int device, const std::vector<size_t>& which) {
        DeviceWords& d = *std::find_if(devices_.begin(), devices_.end(),
                                       [&](const DeviceWords& w) { return w.device == device; });
        auto* w = reinterpret_cast<unsigned long long*>(d.words.data<int32_t>());
        const int64_t K = int64_t(d.which.size());
        std::vector<cuda::ProbeSlot<T>> slots;
        for (size_t i : which) {
            const int64_t k = slot[i];
            slots.push_back({xs[i].data<T>(), xs[i].numel(), w + 1 + k, w + 1 + K + k, w});
        }
        MG_CUDA_ONLY(cuda::DeviceGuard dg(device); cuda::nonfinite_probe(slots));
    });
    for (DeviceWords& d : devices_) d.read = AsyncRead(d.words);
}

std::string NonfiniteScan::Finding::describe(const Shape& shape) const {
    return fmt::format("has {} non-finite value{}; the first is {} at index ({}) (flat {})", count,
                       count == 1 ? "" : "s", value, fmt::join(unravel_index(first, shape), ","), first);
}

const std::vector<NonfiniteScan::Finding>& NonfiniteScan::findings() {
    if (done_) return findings_;
    for (DeviceWords& d : devices_) {
        const auto* w = static_cast<const unsigned long long*>(d.read.wait());
        const size_t K = d.which.size();
        if (w[0] == 0) continue;
        for (size_t k = 0; k < K; ++k) {
            if (w[1 + k] == 0) continue;
            Finding& f = findings_[d.which[k]];
            f.count = int64_t(w[1 + k]);
            f.first = int64_t(w[1 + K + k] >> 2);
            const int kind = int(w[1 + K + k] & 3);
            f.value = kind == cuda::kProbeNan ? double(NAN) : kind == cuda::kProbePosInf ? double(INFINITY) : -double(INFINITY);
        }
    }
    done_ = true;
    return findings_;
}

std::vector<Tensor> NonfiniteScan::skip_words() const {
    std::vector<Tensor> out;
    for (const DeviceWords& d : devices_) out.push_back(d.words);
    return out;
}

} // namespace mg
