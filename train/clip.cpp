// train/clip.cpp: see train/clip.h.
#include "train/clip.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>

#include "autograd/grad_mode.h"
#include "ops/cat.h"
#include "ops/checks.h"
#include "ops/copy.h"
#include "ops/multi_tensor.h"
#include "ops/reduce.h"

namespace mg::train {

std::vector<Tensor> grads_of(const NamedTensors& params) {
    std::vector<Tensor> out;
    for (const auto& np : params)
        if (np.second.grad().defined()) out.push_back(np.second.grad());
    return out;
}

void clip_grad_value(const std::vector<Tensor>& grads, double clip) {
    MG_CHECK(clip > 0 && !std::isnan(clip), "clip_grad_value: clip is {}, expected > 0", clip);
    std::vector<Tensor> xs;                         // the gradients, or contiguous copies of strided ones
    std::vector<std::pair<Tensor, Tensor>> strided; // (gradient, its copy): copied back after
    for (size_t i = 0; i < grads.size(); ++i) {
        const Tensor& g = grads[i];
        if (!g.defined()) continue;
        check_float("clip_grad_value", fmt::format("grads[{}]", i).c_str(), g);
        xs.push_back(g.contiguous()); // g itself when contiguous
        if (!xs.back().same(g)) strided.emplace_back(g, xs.back());
    }
    clamp_(xs, clip);
    for (const auto& [g, x] : strided) copy_into(g, x);
}

std::vector<double> tensor_norms(const std::vector<Tensor>& grads) {
    autograd::NoGrad no_grad;
    std::vector<Tensor> partial; // one f64 sum of squares per defined tensor, shape (1)
    for (size_t i = 0; i < grads.size(); ++i) {
        const Tensor& g = grads[i];
        if (!g.defined()) continue;
        check_float("clip_grad_norm", fmt::format("grads[{}]", i).c_str(), g);
        if (!partial.empty())
            MG_CHECK(g.device() == partial[0].device(), "clip_grad_norm: grads[{}] is {}, but earlier gradients are on {}",
                     i, g.desc(), partial[0].device().str());
        partial.push_back(sum(g * g).to(DType::f64).reshape({1}));
    }
    std::vector<double> out(grads.size(), 0.0);
    if (partial.empty()) return out;
    const std::vector<double> sq = cat(partial, 0).to_vector<double>(); // the one read back
    for (size_t i = 0, k = 0; i < grads.size(); ++i)
        if (grads[i].defined()) out[i] = std::sqrt(sq[k++]);
    return out;
}

double global_norm(const std::vector<Tensor>& grads) {
    double sq = 0;
    for (double n : tensor_norms(grads)) sq += n * n;
    return std::sqrt(sq);
}

double clip_grad_norm(const std::vector<Tensor>& grads, double max_norm) {
    MG_CHECK(max_norm > 0 && !std::isnan(max_norm), "clip_grad_norm: max_norm is {}, expected > 0", max_norm);
    const double norm = global_norm(grads);
    if (norm > max_norm) { // a NaN norm is left for the NaN guard to report
        autograd::NoGrad no_grad;
        const double coef = max_norm / (norm + 1e-6);
        for (const Tensor& g : grads)
            if (g.defined()) copy_into(g, g * coef);
    }
    return norm;
}

} // namespace mg::train
