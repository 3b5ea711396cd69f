// ops/cross_entropy.cpp: see ops/cross_entropy.h for shapes and derivatives.
#include "ops/cross_entropy.h"

#include <cmath>
#include <limits>
#include <vector>

#include "autograd/node.h"
#include "cuda/cross_entropy.h"
#include "cuda/index_check.h"
#include "cuda/runtime.h"
#include "ops/checks.h"
#include "ops/dispatch.h"
#include "ops/embedding.h"
#include "ops/linear.h"

namespace mg {

// ---- CPU kernels ----------------------------------------------------------------------------
template <typename T>
void cross_entropy_forward_cpu(T* loss, T* count, T* lse, const T* logits, const int32_t* targets, int64_t R,
                               int64_t V, int32_t ignore_index) {
    std::vector<double> row_loss(static_cast<size_t>(R), 0.0);
#pragma omp parallel for if (R * V > kParallelGrain)
    for (int64_t r = 0; r < R; ++r) {
        const T* z = logits + r * V;
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t v = 0; v < V; ++v) m = std::max(m, double(z[v]));
        double s = 0;
        if (m != -std::numeric_limits<double>::infinity())
            for (int64_t v = 0; v < V; ++v) s += std::exp(double(z[v]) - m);
        lse[r] = T(m + std::log(s));
        // (m - z_t) + log s: exact 0 + log s when z_t is the max (see cuda/cross_entropy.cu)
        if (targets[r] != ignore_index) row_loss[size_t(r)] = (m - double(z[targets[r]])) + std::log(s);
    }
    double total = 0;
    int64_t n = 0;
    for (int64_t r = 0; r < R; ++r) { // in row order: the sum does not depend on the threads
        if (targets[r] == ignore_index) continue;
        total += row_loss[size_t(r)];
        ++n;
    }
    loss[0] = T(n > 0 ? total / double(n) : 0.0);
    count[0] = T(n);
}

// dz_rv = g/n (exp(z_rv - lse_r) - [v = t_r]) for labelled rows, 0 otherwise.
template <typename T>
void cross_entropy_backward_cpu(T* dlogits, const T* dloss, const T* logits, const int32_t* targets, const T* lse,
                                const T* count, int64_t R, int64_t V, int32_t ignore_index) {
    T n = count[0];
    T scale = n > T(0) ? dloss[0] / n : T(0);
#pragma omp parallel for if (R * V > kParallelGrain)
    for (int64_t r = 0; r < R; ++r) {
        int32_t t = targets[r];
        T* d = dlogits + r * V;
        const T* z = logits + r * V;
        if (t == ignore_index || n == T(0)) {
            for (int64_t v = 0; v < V; ++v) d[v] = T(0);
            continue;
        }
        for (int64_t v = 0; v < V; ++v) d[v] = scale * (std::exp(z[v] - lse[r]) - (v == t ? T(1) : T(0)));
    }
}

template <typename T>
void cross_entropy_ref(double* loss, double* dlogits, const T* logits, const int32_t* targets, int64_t R, int64_t V,
                       int32_t ignore_index) {
    int64_t n = 0;
    for (int64_t r = 0; r < R; ++r) n += targets[r] != ignore_index;
    double total = 0;
    std::vector<double> p(static_cast<size_t>(V));
    for (int64_t r = 0; r < R; ++r) {
        bool labelled = targets[r] != ignore_index;
        double m = -INFINITY, s = 0;
        for (int64_t v = 0; v < V; ++v) m = std::max(m, double(logits[r * V + v]));
        for (int64_t v = 0; v < V; ++v) s += (p[size_t(v)] = std::exp(double(logits[r * V + v]) - m));
        if (labelled) total += std::log(s) + m - double(logits[r * V + targets[r]]);
        if (!dlogits) continue;
        for (int64_t v = 0; v < V; ++v)
            dlogits[r * V + v] = labelled ? (p[size_t(v)] / s - (v == targets[r] ? 1.0 : 0.0)) / double(n) : 0.0;
    }
    *loss = n > 0 ? total / double(n) : 0.0;
}

namespace {

// Raises the error a CUDA cross-entropy kernel recorded since the last check on this device.
void raise_pending_cuda_error([[maybe_unused]] Device dev) {
    MG_CUDA_ONLY(int64_t row = 0; int64_t t = 0;
                 if (!cuda::take_index_error(dev.index, cuda::IndexCheck::cross_entropy, &row, &t)) return;
                 throw Error(fmt::format(
                     "cross_entropy: an earlier cross_entropy call on {} met target {} at row {}, neither "
                     "ignore_index nor in [0, V) for its logits; that call's loss was NaN. (On CUDA the "
                     "targets are checked by the kernel without synchronising the host, so the error is raised "
                     "by the next cross_entropy call on the device.)", dev.str(), t, row)));
}

struct CrossEntropyBackward : autograd::Node {
    Tensor logits, targets, lse, count; // logits contiguous (R, V)
    int64_t R = 0, V = 0;
    int32_t ignore_index = kIgnoreIndex;
    std::string name() const override { return "CrossEntropyBackward"; }
    void release() override { logits = Tensor(); targets = Tensor(); lse = Tensor(); count = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        Tensor dloss = grads[0].contiguous();
        Device dev = logits.device();
        Tensor dlogits = Tensor::empty(logits.shape(), logits.options());
        dispatch_float(logits.dtype(), "cross_entropy", [&]<typename T>() {
            if (dev.is_cpu()) {
                cross_entropy_backward_cpu<T>(dlogits.data<T>(), dloss.data<T>(), logits.data<T>(),
                                              targets.data<int32_t>(), lse.data<T>(), count.data<T>(), R, V,
                                              ignore_index);
            } else {
                MG_CUDA_ONLY(cuda::DeviceGuard g(dev.index);
                             cuda::cross_entropy_backward<T>(dlogits.data<T>(), dloss.data<T>(), logits.data<T>(),
                                                             targets.data<int32_t>(), lse.data<T>(), count.data<T>(),
                                                             R, V, ignore_index));
            }
        });
        return {dlogits, Tensor()};
    }
};

} // namespace

Tensor cross_entropy(const Tensor& logits_in, const Tensor& targets_in, int32_t ignore_index) {
    check_float("cross_entropy", "logits", logits_in);
    check_defined("cross_entropy", "targets", targets_in);
    MG_CHECK(targets_in.dtype() == DType::i32, "cross_entropy: targets is {}, expected dtype i32 (class ids)",
             targets_in.desc());
    MG_CHECK(logits_in.device() == targets_in.device(), "cross_entropy: logits is {} but targets is {}; expected "
             "both on the same device", logits_in.desc(), targets_in.desc());
    MG_CHECK(logits_in.dim() >= 1 && logits_in.size(-1) >= 1, "cross_entropy: logits is {}, expected (..., V) with "
             "V >= 1 classes", logits_in.desc());
    Shape lead(logits_in.shape().begin(), logits_in.shape().end() - 1);
    MG_CHECK(targets_in.shape() == lead, "cross_entropy: targets is {} but logits is {}; expected targets {} "
             "(logits' shape without the class dim)", targets_in.desc(), logits_in.desc(), shape_str(lead));
    int64_t V = logits_in.size(-1), R = numel_of(lead);
    MG_CHECK(V <= std::numeric_limits<int32_t>::max() && R <= std::numeric_limits<int32_t>::max(),
             "cross_entropy: logits {} exceeds the 2^31 limit on rows and classes", logits_in.desc());
    Tensor logits = logits_in.detach().contiguous(), targets = targets_in.contiguous();
    Device dev = logits.device();
    if (dev.is_cpu()) {
        const int32_t* t = targets.data<int32_t>();
        for (int64_t r = 0; r < R; ++r)
            MG_CHECK(t[r] == ignore_index || (t[r] >= 0 && t[r] < V), "cross_entropy: targets {} holds {} at flat "
                     "position {}, expected ignore_index ({}) or a class in [0, V) = [0, {}) for logits {}",
                     targets.desc(), t[r], r, ignore_index, V, logits.desc());
    } else {
        raise_pending_cuda_error(dev);
    }
    Tensor loss = Tensor::empty({}, logits.options());
    Tensor count = Tensor::empty({1}, logits.options());
    Tensor lse = Tensor::empty({R}, logits.options());
    dispatch_float(logits.dtype(), "cross_entropy", [&]<typename T>() {
        if (dev.is_cpu()) {
            cross_entropy_forward_cpu<T>(loss.data<T>(), count.data<T>(), lse.data<T>(), logits.data<T>(),
                                         targets.data<int32_t>(), R, V, ignore_index);
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(dev.index);
                         Tensor row_loss = Tensor::empty({R}, logits.options());
                         cuda::cross_entropy_forward<T>(loss.data<T>(), count.data<T>(), lse.data<T>(),
                                                        row_loss.data<T>(), logits.data<T>(), targets.data<int32_t>(),
                                                        R, V, ignore_index,
                                                        cuda::index_error_word(dev.index, cuda::IndexCheck::cross_entropy)));
        }
    });
    autograd::record<CrossEntropyBackward>({logits_in, targets_in}, {loss}, [&](CrossEntropyBackward& n) {
        n.logits = logits;
        n.targets = targets;
        n.lse = lse;
        n.count = count;
        n.R = R;
        n.V = V;
        n.ignore_index = ignore_index;
    });
    return loss;
}

Tensor cross_entropy_indexed(const Tensor& hidden, const Tensor& head_weight, const Tensor& positions,
                             const Tensor& targets, int32_t ignore_index) {
    const char* op = "cross_entropy_indexed";
    check_float(op, "hidden", hidden);
    check_float(op, "head_weight", head_weight);
    check_same(op, "hidden", hidden, "head_weight", head_weight);
    check_defined(op, "positions", positions);
    check_defined(op, "targets", targets);
    MG_CHECK(hidden.dim() >= 1 && head_weight.dim() == 2 && head_weight.size(1) == hidden.size(-1),
             "{}: hidden is {} and head_weight is {}; expected hidden (..., Dm) and head_weight (V, Dm)", op,
             hidden.desc(), head_weight.desc());
    MG_CHECK(positions.dtype() == DType::i32 && positions.dim() == 1, "{}: positions is {}, expected (P) i32", op,
             positions.desc());
    MG_CHECK(targets.dtype() == DType::i32 && targets.shape() == positions.shape(), "{}: targets is {} and positions "
             "is {}; expected targets (P) i32 with P = {}", op, targets.desc(), positions.desc(), positions.numel());
    MG_CHECK(positions.device() == hidden.device() && targets.device() == hidden.device(), "{}: hidden is {}, "
             "positions {}, targets {}; expected all on the same device", op, hidden.desc(), positions.desc(),
             targets.desc());
    int64_t Dm = hidden.size(-1), Ntot = numel_of(Shape(hidden.shape().begin(), hidden.shape().end() - 1));
    Tensor hidden2d = hidden.reshape({Ntot, Dm});
    if (positions.device().is_cpu()) {
        Tensor p = positions.contiguous();
        const int32_t* pp = p.data<int32_t>();
        for (int64_t i = 0; i < p.numel(); ++i)
            MG_CHECK(pp[i] >= 0 && pp[i] < Ntot, "{}: positions {} holds {} at index {}, outside [0, {}) = the rows "
                     "of hidden {}", op, positions.desc(), pp[i], i, Ntot, hidden.desc());
    }
    Tensor rows = embedding(positions, hidden2d);            // (P, Dm)
    Tensor logits = linear(rows, head_weight);               // (P, V)
    return cross_entropy(logits, targets, ignore_index);     // ()
}

#define MG_INST(T)                                                                                             \
    template void cross_entropy_forward_cpu<T>(T*, T*, T*, const T*, const int32_t*, int64_t, int64_t, int32_t); \
    template void cross_entropy_backward_cpu<T>(T*, const T*, const T*, const int32_t*, const T*, const T*,     \
                                                int64_t, int64_t, int32_t);                                   \
    template void cross_entropy_ref<T>(double*, double*, const T*, const int32_t*, int64_t, int64_t, int32_t);
MG_INST(float)
MG_INST(double)

} // namespace mg
