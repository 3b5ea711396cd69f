// ops/reduce.cpp: sum / mean / max over dims.
//
// Method: permute the reduced dims to the end and make the result contiguous, so every
// reduction is over the rows of an (outer, inner) matrix; one kernel serves all dim choices.
//
// Derivatives (g has the keepdim shape):
//   y = sum_R x    dx = expand(g)
//   y = mean_R x   dx = expand(g) / |R|
//   y = max_R x    dx = g at the first argmax of each group, 0 elsewhere
#include "ops/reduce.h"

#include <algorithm>
#include <limits>

#include "autograd/node.h"
#include "cuda/reduce.h"
#include "cuda/runtime.h"
#include "ops/checks.h"
#include "ops/dispatch.h"

namespace mg {

// ---- CPU kernels ----------------------------------------------------------------------------
template <typename T>
void reduce_rows_cpu(T* out, int32_t* argmax, const T* x, int64_t outer, int64_t inner, ReduceOp op) {
#pragma omp parallel for if (outer * inner > kParallelGrain)
    for (int64_t o = 0; o < outer; ++o) {
        const T* row = x + o * inner;
        if (op == ReduceOp::max) {
            T best = row[0];
            int32_t bi = 0;
            for (int64_t k = 1; k < inner; ++k)
                if (row[k] > best) { best = row[k]; bi = int32_t(k); }
            out[o] = best;
            if (argmax) argmax[o] = bi;
        } else {
            double acc = 0; // a double accumulator on the CPU: sums of many f32 stay exact-ish
            for (int64_t k = 0; k < inner; ++k) acc += double(row[k]);
            out[o] = T(op == ReduceOp::mean ? acc / double(inner) : acc);
        }
    }
}

// The naive reference: the most obvious loop, in double.
template <typename T>
void reduce_rows_ref(double* out, const T* x, int64_t outer, int64_t inner, ReduceOp op) {
    for (int64_t o = 0; o < outer; ++o) {
        double acc = op == ReduceOp::max ? -std::numeric_limits<double>::infinity() : 0.0;
        for (int64_t k = 0; k < inner; ++k) {
            double v = double(x[o * inner + k]);
            acc = op == ReduceOp::max ? std::max(acc, v) : acc + v;
        }
        out[o] = op == ReduceOp::mean ? acc / double(inner) : acc;
    }
}

template <typename T>
void max_rows_backward_cpu(T* dx, const T* dout, const int32_t* argmax, int64_t outer, int64_t inner) {
#pragma omp parallel for if (outer * inner > kParallelGrain)
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t k = 0; k < inner; ++k) dx[o * inner + k] = k == argmax[o] ? dout[o] : T(0);
}

namespace {

const char* reduce_name(ReduceOp op) {
    return op == ReduceOp::sum ? "sum" : op == ReduceOp::mean ? "mean" : "max";
}

// The geometry of one reduction.
struct Plan {
    std::vector<int64_t> perm;     // kept dims, then reduced dims
    std::vector<bool> reduced;     // per input dim
    Shape keep_shape;              // x.shape with reduced dims set to 1
    Shape out_shape;               // keep_shape, or with reduced dims dropped
    int64_t outer = 1, inner = 1;
};

Plan make_plan(const Tensor& x, std::vector<int64_t> dims, bool keepdim, const char* op) {
    Plan p;
    int64_t nd = x.dim();
    p.reduced.assign(size_t(nd), dims.empty());
    for (int64_t d : dims) {
        int64_t w = wrap_dim(d, nd, op);
        if (nd == 0) continue;
        MG_CHECK(!p.reduced[size_t(w)], "{}: dim {} appears twice in ({})", op, w, fmt::join(dims, ","));
        p.reduced[size_t(w)] = true;
    }
    for (int64_t d = 0; d < nd; ++d)
        if (!p.reduced[size_t(d)]) { p.perm.push_back(d); p.outer *= x.shape()[size_t(d)]; }
    for (int64_t d = 0; d < nd; ++d)
        if (p.reduced[size_t(d)]) { p.perm.push_back(d); p.inner *= x.shape()[size_t(d)]; }
    for (int64_t d = 0; d < nd; ++d) {
        bool r = p.reduced[size_t(d)];
        p.keep_shape.push_back(r ? 1 : x.shape()[size_t(d)]);
        if (!r || keepdim) p.out_shape.push_back(r ? 1 : x.shape()[size_t(d)]);
    }
    return p;
}

struct SumBackward : autograd::Node {
    Shape in_shape, keep_shape;
    double scale = 1; // 1 for sum, 1/|R| for mean
    bool mean = false;
    std::string name() const override { return mean ? "MeanBackward" : "SumBackward"; }
    std::vector<Tensor> apply(std::vector<Tensor>& g) override {
        Tensor dx = g[0].reshape(keep_shape).expand(in_shape).contiguous();
        if (mean) dx = dx * scale;
        return {dx};
    }
};

struct MaxBackward : autograd::Node {
    Tensor argmax; // (outer) i32
    Shape in_shape, permuted_shape;
    std::vector<int64_t> inverse;
    int64_t outer = 0, inner = 0;
    std::string name() const override { return "MaxBackward"; }
    void release() override { argmax = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& g) override {
        Tensor dout = g[0].contiguous();
        Tensor dxp = Tensor::empty(permuted_shape, dout.options());
        dispatch_float(dout.dtype(), "max", [&]<typename T>() {
            if (dout.device().is_cpu()) {
                max_rows_backward_cpu<T>(dxp.data<T>(), dout.data<T>(), argmax.data<int32_t>(), outer, inner);
            } else {
                MG_CUDA_ONLY(cuda::DeviceGuard guard(dout.device().index);
                             cuda::max_rows_backward<T>(dxp.data<T>(), dout.data<T>(),
                                                        argmax.data<int32_t>(), outer, inner));
            }
        });
        return {dxp.permute(inverse).contiguous()};
    }
};

// The reduction without a graph: the values, and for max the first argmax of each group (i32,
// one per output element). x is permuted so the reduced dims are innermost and contiguous.
struct Reduced {
    Tensor out, argmax, xp;
    Plan p;
};
Reduced reduce_raw(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, ReduceOp op, const char* name) {
    check_float(name, "x", x);
    Reduced r;
    r.p = make_plan(x, dims, keepdim, name);
    const Plan& p = r.p;
    MG_CHECK(op != ReduceOp::max || p.inner > 0 || p.outer == 0,
             "{}: cannot reduce {} over dims ({}): a reduced dim is empty", name, x.desc(), fmt::join(dims, ","));
    MG_CHECK(p.inner <= std::numeric_limits<int32_t>::max(), "{}: {} elements per reduced group in "
             "{} exceed the 2^31 limit", name, p.inner, x.desc());
    r.xp = x.detach().permute(p.perm).contiguous();
    r.out = Tensor::empty(p.out_shape, x.options());
    if (op == ReduceOp::max) r.argmax = Tensor::empty({p.outer}, {DType::i32, x.device()});
    int32_t* am = r.argmax.defined() ? r.argmax.data<int32_t>() : nullptr;
    dispatch_float(x.dtype(), name, [&]<typename T>() {
        if (x.device().is_cpu()) {
            if (p.inner == 0) std::fill_n(r.out.data<T>(), p.outer, T(0));
            else reduce_rows_cpu<T>(r.out.data<T>(), am, r.xp.data<T>(), p.outer, p.inner, op);
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(x.device().index);
                         cuda::reduce_rows<T>(r.out.data<T>(), am, r.xp.data<T>(), p.outer, p.inner, op));
        }
    });
    return r;
}

Tensor reduce(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, ReduceOp op) {
    Reduced r = reduce_raw(x, dims, keepdim, op, reduce_name(op));
    const Plan& p = r.p;
    Tensor out = r.out, argmax = r.argmax, xp = r.xp;
    if (op == ReduceOp::max) {
        autograd::record<MaxBackward>({x}, {out}, [&](MaxBackward& n) {
            n.argmax = argmax;
            n.in_shape = x.shape();
            n.permuted_shape = xp.shape();
            n.inverse.resize(p.perm.size());
            for (size_t i = 0; i < p.perm.size(); ++i) n.inverse[size_t(p.perm[i])] = int64_t(i);
            n.outer = p.outer;
            n.inner = p.inner;
        });
    } else {
        autograd::record<SumBackward>({x}, {out}, [&](SumBackward& n) {
            n.in_shape = x.shape();
            n.keep_shape = p.keep_shape;
            n.mean = op == ReduceOp::mean;
            n.scale = p.inner > 0 ? 1.0 / double(p.inner) : 0.0;
        });
    }
    return out;
}

} // namespace

Tensor sum(const Tensor& x, std::vector<int64_t> dims, bool keepdim) { return reduce(x, dims, keepdim, ReduceOp::sum); }
Tensor mean(const Tensor& x, std::vector<int64_t> dims, bool keepdim) { return reduce(x, dims, keepdim, ReduceOp::mean); }
Tensor max(const Tensor& x, std::vector<int64_t> dims, bool keepdim) { return reduce(x, dims, keepdim, ReduceOp::max); }
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
    Reduced r = reduce_raw(x, {dim}, keepdim, ReduceOp::max, "argmax");
    return r.argmax.reshape(r.p.out_shape);
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
    if (g.shape() == shape) return g;
    MG_CHECK(g.dim() >= int64_t(shape.size()), "sum_to: cannot sum {} down to {}", g.desc(), shape_str(shape));
    size_t lead = size_t(g.dim()) - shape.size();
    std::vector<int64_t> dims;
    for (size_t d = 0; d < size_t(g.dim()); ++d) {
        if (d < lead) { dims.push_back(int64_t(d)); continue; }
        int64_t want = shape[d - lead];
        MG_CHECK(want == g.shape()[d] || want == 1, "sum_to: cannot sum {} down to {}", g.desc(), shape_str(shape));
        if (want == 1 && g.shape()[d] != 1) dims.push_back(int64_t(d));
    }
    if (dims.empty()) return g.reshape(shape);
    return sum(g, dims, true).reshape(shape);
}

#define MG_INST(T)                                                                            \
    template void reduce_rows_cpu<T>(T*, int32_t*, const T*, int64_t, int64_t, ReduceOp);      \
    template void reduce_rows_ref<T>(double*, const T*, int64_t, int64_t, ReduceOp);           \
    template void max_rows_backward_cpu<T>(T*, const T*, const int32_t*, int64_t, int64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg
