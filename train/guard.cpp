// train/guard.cpp: see guard.h.
#include "train/guard.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "autograd/grad_mode.h"
#include "tensor/check.h"

namespace mg::train {

FiniteProbe::FiniteProbe(int64_t step, const NamedTensors& tensors, std::string_view what, const Tensor& loss)
    : step_(step), what_(what) {
    autograd::NoGrad no_grad;
    std::vector<Tensor> list;
    if (loss.defined()) {
        MG_CHECK(loss.numel() >= 1 && is_floating(loss.dtype()),
                 "FiniteProbe: the loss is {}, expected a float tensor (its parts, e.g. one per micro-batch)",
                 loss.desc());
        entries_.push_back(Entry{"loss", loss.desc(), loss.shape(), true});
        list.push_back(loss.contiguous());
    }
    for (const auto& [name, t] : tensors)
        if (t.defined() && is_floating(t.dtype())) {
            entries_.push_back(Entry{name, t.desc(), t.shape(), false});
            list.push_back(t.dtype() == DType::bf16 ? t.to(DType::f32) : t.contiguous()); // the scan reads f32/f64
        }
    scan_ = NonfiniteScan(list);
}

void FiniteProbe::check() {
    if (checked_) return;
    const std::vector<NonfiniteScan::Finding>& found = scan_.findings();
    checked_ = true;
    auto bad = std::find_if(found.begin(), found.end(), [](const NonfiniteScan::Finding& f) { return f.count > 0; });
    if (bad == found.end()) return;
    const Entry& e = entries_[size_t(bad - found.begin())];
    if (e.is_loss) throw Error(fmt::format("NaN/Inf guard: step {}: the loss is {}", step_, bad->value));
    throw Error(fmt::format("NaN/Inf guard: step {}: {} '{}' ({}) {}", step_, what_, e.name, e.desc,
                            bad->describe(e.shape)));
}

std::vector<Tensor> FiniteProbe::skip_words() const { return scan_.skip_words(); }

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
