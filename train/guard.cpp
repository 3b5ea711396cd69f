// train/guard.cpp: see guard.h.
#include "train/guard.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "autograd/grad_mode.h"
#include "cuda/optim.h"
#include "ops/dispatch.h"
#include "tensor/check.h"

namespace mg::train {

namespace {

template <typename T> bool all_finite_cpu(const T* x, int64_t n) {
    bool ok = true;
#pragma omp parallel for reduction(&& : ok) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) ok = ok && std::isfinite(x[i]);
    return ok;
}

// The count of non-finite values of a CPU tensor, the first one's flat index and value.
template <typename T> void first_nonfinite_cpu(const T* x, int64_t n, int64_t& count, int64_t& first, double& value) {
    count = 0;
    first = -1;
    for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(x[i])) {
            if (first < 0) first = i, value = double(x[i]);
            ++count;
        }
}

} // namespace

FiniteProbe::FiniteProbe(int64_t step, const NamedTensors& tensors, std::string_view what, const Tensor& loss)
    : step_(step), what_(what) {
    autograd::NoGrad no_grad;
    std::vector<std::pair<Entry, Tensor>> list;
    if (loss.defined()) {
        MG_CHECK(loss.numel() >= 1 && is_floating(loss.dtype()),
                 "FiniteProbe: the loss is {}, expected a float tensor (its parts, e.g. one per micro-batch)",
                 loss.desc());
        list.push_back({Entry{"loss", loss.desc(), loss.shape(), true}, loss});
    }
    for (const auto& [name, t] : tensors)
        if (t.defined() && is_floating(t.dtype())) list.push_back({Entry{name, t.desc(), t.shape(), false}, t});

    cpu_bad_ = list.size();
    std::vector<Tensor> keep; // contiguous copies of strided tensors, alive until the launches
    struct Slots {
        std::vector<cuda::ProbeSlot<float>> f32;
        std::vector<cuda::ProbeSlot<double>> f64;
    };
    std::vector<Slots> slots;
    for (size_t i = 0; i < list.size(); ++i) {
        Tensor t = list[i].second;
        entries_.push_back(list[i].first);
        if (!t.is_contiguous()) keep.push_back(t = t.contiguous());
        if (t.device().is_cpu()) {
            if (cpu_bad_ < list.size()) continue; // an earlier CPU tensor already failed
            dispatch_float(t.dtype(), "FiniteProbe", [&]<typename T>() {
                if (!all_finite_cpu(t.data<T>(), t.numel())) {
                    cpu_bad_ = i;
                    first_nonfinite_cpu(t.data<T>(), t.numel(), cpu_count_, cpu_first_, cpu_value_);
                }
            });
            continue;
        }
        auto it = std::find_if(groups_.begin(), groups_.end(),
                               [&](const CudaGroup& q) { return q.device == t.device().index; });
        if (it == groups_.end()) {
            groups_.emplace_back();
            groups_.back().device = t.device().index;
            slots.emplace_back();
            it = groups_.end() - 1;
        }
        it->which.push_back(i);
        Slots& s = slots[size_t(it - groups_.begin())];
        dispatch_float(t.dtype(), "FiniteProbe", [&]<typename T>() {
            cuda::ProbeSlot<T> slot{t.data<T>(), t.numel(), nullptr, nullptr, nullptr};
            if constexpr (std::is_same_v<T, float>) s.f32.push_back(slot);
            else s.f64.push_back(slot);
        });
    }
    for (size_t g = 0; g < groups_.size(); ++g) {
        CudaGroup& q = groups_[g];
        const int64_t K = int64_t(q.which.size());
        // (there is no 64-bit integer dtype: the words live in an i32 tensor of twice the length)
        q.words = Tensor::empty({2 * (1 + 2 * K)}, {DType::i32, Device::cuda(q.device)});
        auto* w = reinterpret_cast<unsigned long long*>(q.words.data<int32_t>());
        // slot order within the group: the f32 slots, then the f64 slots; which[] follows suit
        Slots& s = slots[g];
        std::vector<size_t> w32, w64;
        for (size_t k = 0; k < q.which.size(); ++k)
            (list[q.which[k]].second.dtype() == DType::f32 ? w32 : w64).push_back(q.which[k]);
        q.which = w32;
        q.which.insert(q.which.end(), w64.begin(), w64.end());
        int64_t k = 0;
        for (auto& slot : s.f32) slot.count = w + 1 + k, slot.first = w + 1 + K + k, slot.any = w, ++k;
        for (auto& slot : s.f64) slot.count = w + 1 + k, slot.first = w + 1 + K + k, slot.any = w, ++k;
        MG_CUDA_ONLY(cuda::DeviceGuard dg(q.device); cuda::probe_init(w, K); cuda::nonfinite_probe(s.f32);
                     cuda::nonfinite_probe(s.f64));
        q.read = cuda::PendingRead(w, size_t(1 + 2 * K) * sizeof(unsigned long long), q.device);
    }
}

void FiniteProbe::check() {
    if (checked_) return;
    // The first offending entry in list order, over the CPU finding and every device's.
    size_t bad = cpu_bad_;
    int64_t count = cpu_count_, first = cpu_first_;
    double value = cpu_value_;
    for (CudaGroup& q : groups_) {
        const auto* w = static_cast<const unsigned long long*>(q.read.wait());
        const size_t K = q.which.size();
        if (w[0] == 0) continue;
        for (size_t k = 0; k < K; ++k) {
            if (w[1 + k] == 0 || q.which[k] >= bad) continue;
            bad = q.which[k];
            count = int64_t(w[1 + k]);
            first = int64_t(w[1 + K + k] >> 2);
            const int kind = int(w[1 + K + k] & 3);
            value = kind == cuda::kProbeNan ? double(NAN) : kind == cuda::kProbePosInf ? double(INFINITY) : -double(INFINITY);
        }
    }
    checked_ = true;
    if (bad >= entries_.size()) return;
    const Entry& e = entries_[bad];
    if (e.is_loss) throw Error(fmt::format("NaN/Inf guard: step {}: the loss is {}", step_, value));
    std::vector<int64_t> index(e.shape.size());
    for (int64_t d = int64_t(index.size()) - 1, rest = first; d >= 0; --d) {
        index[size_t(d)] = rest % e.shape[size_t(d)];
        rest /= e.shape[size_t(d)];
    }
    throw Error(fmt::format("NaN/Inf guard: step {}: {} '{}' ({}) has {} non-finite value{}; the first is {} at "
                            "index ({}) (flat {})",
                            step_, what_, e.name, e.desc, count, count == 1 ? "" : "s", value, fmt::join(index, ","),
                            first));
}

std::vector<Tensor> FiniteProbe::skip_words() const {
    std::vector<Tensor> out;
    for (const CudaGroup& q : groups_) out.push_back(q.words);
    return out;
}

void check_finite(int64_t step, const NamedTensors& tensors, std::string_view what) {
    FiniteProbe(step, tensors, what).check();
}

NamedTensors named_grads(const NamedTensors& params) {
    NamedTensors grads;
    grads.reserve(params.size());
    for (const auto& [name, p] : params) grads.emplace_back(name, p.grad());
    return grads;
}

void check_finite(int64_t step, double loss, const NamedTensors& params) {
    MG_CHECK(std::isfinite(loss), "NaN/Inf guard: step {}: the loss is {}", step, loss);
    check_finite(step, named_grads(params), "gradient");
}

} // namespace mg::train
